"""Admin: plan templates (editable like the rules: superusers change them, clinic staff may look) and plans (read-only)."""

from django.contrib import admin
from django.db.models import Q

from clinic.admin import ClinicScopedAdmin, admin_clinic_ids
from clinic.models import Clinic
from plans.models import PlanSession, PlanTemplate, TreatmentPlan


def templates_shown(request) -> Q | None:
    """The templates a user sees here: the defaults and those of the organisations they administer, as the API lists
    the caller's organisations' and the defaults (None: every one, for a superuser)."""
    ids = admin_clinic_ids(request)
    if ids is None:
        return None
    organisations = Clinic.objects.filter(pk__in=ids).values("organisation_id")
    return Q(organisation__isnull=True) | Q(organisation__in=organisations)


class TemplateListFilter(admin.RelatedFieldListFilter):
    """The plans' template filter, offering only the templates the user may see (`templates_shown`)."""

    def field_choices(self, field, request, model_admin):
        shown = templates_shown(request)
        ordering = self.field_admin_ordering(field, request, model_admin)
        return field.get_choices(include_blank=False, ordering=ordering, limit_choices_to=shown or Q())


@admin.register(PlanTemplate)
class PlanTemplateAdmin(admin.ModelAdmin):
    """Superusers add, change and delete templates (the defaults and every organisation's); staff with the
    view permission see the defaults and their organisations' (those they administer), read-only. A template plans use is not deleted (its plans protect it), nor given
    another procedure, organisation or kind: the form says so on that field (`PlanTemplate.clean`), and a course
    of another procedure, organisation or kind is a new template."""

    def has_add_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    list_display = ["name", "code", "organisation", "procedure", "kind", "sessions", "gaps", "source", "is_active"]
    list_select_related = ["organisation", "procedure"]  # the defaults' organisation is NULL: named, not followed
    list_filter = ["procedure", "kind", ("organisation", admin.RelatedOnlyFieldListFilter), "is_active"]
    search_fields = ["name", "code", "note"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        shown = templates_shown(request)
        return queryset if shown is None else queryset.filter(shown)

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
    list_filter = [("template", TemplateListFilter)]
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
