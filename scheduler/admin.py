"""Admin for the clinical rules, which every clinic shares: superusers edit them, clinic staff may look."""

from django.contrib import admin

from scheduler.models import ContraindicationRule, IntervalRule, RecheckRun


class SharedRuleAdmin(admin.ModelAdmin):
    """The rules belong to no clinic yet, so a change by one clinic's administrator would decide what every
    other clinic may book. Until rules belong to an organisation only superusers add, change or delete them;
    anyone with the view (or change) permission still sees them, read-only (Django's has_view_permission)."""

    def has_add_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser


@admin.register(IntervalRule)
class IntervalRuleAdmin(SharedRuleAdmin):
    list_display = ["__str__", "severity", "scope", "source", "is_active"]
    list_filter = ["later_procedure", "severity", "is_active"]
    search_fields = ["source", "note"]


@admin.register(ContraindicationRule)
class ContraindicationRuleAdmin(SharedRuleAdmin):
    list_display = ["__str__", "procedure", "severity", "applies_to", "area_specific", "is_active"]
    list_filter = ["procedure", "severity", "is_active"]
    search_fields = ["condition__name", "medication__name", "source"]


@admin.register(RecheckRun)
class RecheckRunAdmin(admin.ModelAdmin):
    """Progress of the re-checks a rule change started: read-only, for the administrator to watch."""

    list_display = ["cause", "created_at", "patients_done", "appointments_changed", "progressed_at", "finished_at"]
    readonly_fields = [f.name for f in RecheckRun._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
