"""Admin: plan templates (editable like the rules: superusers change them, clinic staff may look) and plans (read-only)."""

from django.contrib import admin

from clinic.admin import ClinicScopedAdmin
from plans.models import PlanSession, PlanTemplate, TreatmentPlan


@admin.register(PlanTemplate)
class PlanTemplateAdmin(admin.ModelAdmin):
    """Superusers add, change and delete templates (the defaults and every organisation's); staff with the
    view permission see them, read-only. A template plans use is not deleted (its plans protect it), nor given
    another procedure, organisation or kind: the form says so on that field (`PlanTemplate.clean`), and a course
    of another procedure, organisation or kind is a new template."""

    def has_add_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    list_display = ["name", "code", "organisation", "procedure", "kind", "sessions", "gaps", "source", "is_active"]
    list_filter = ["procedure", "kind", "organisation", "is_active"]
    search_fields = ["name", "code", "note"]

    @admin.display(description="gap (min / ideal / max)")
    def gaps(self, obj: PlanTemplate) -> str:
        return f"{obj.min_gap.describe()} / {obj.ideal_gap.describe()} / {obj.max_gap.describe()}"


class PlanSessionInline(admin.TabularInline):
    model = PlanSession
    extra = 0
    fields = ["index", "earliest_on", "ideal_on", "latest_on", "appointment"]
    readonly_fields = fields
    can_delete = False

    def get_queryset(self, request):
        # A row is named after its plan (the plan's template and patient) and shows its appointment (named after
        # its procedure and patient): read with the rows, not once per row.
        return (
            super()
            .get_queryset(request)
            .select_related("plan__template", "plan__patient", "appointment__procedure", "appointment__patient")
        )


@admin.register(TreatmentPlan)
class TreatmentPlanAdmin(ClinicScopedAdmin):
    """Read-only; a clinic administrator sees only the plans that take place at their clinics."""

    list_display = ["template", "patient", "clinic", "created_at", "cancelled_at"]
    list_filter = ["template"]
    readonly_fields = [
        "patient",
        "template",
        "clinic",
        "area",
        "created_at",
        "cancelled_at",
        "cancelled_by",
        "cancel_reason",
    ]
    inlines = [PlanSessionInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
