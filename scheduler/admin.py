"""Admin for the clinical rules: the defaults (superusers only) and each organisation's own rules.

An organisation's administrator (clinic_admin of the organisation or of one of its clinics) with the
rule permission, signed in with a code, adds, changes and deletes their organisation's rules: a rule
that stands in for a default tightens, relaxes or disables it. Every save and delete needs a reason
and makes the next version of the rule book (scheduler/rulebooks.py); versions are read-only here.
The defaults stay read-only to everyone but superusers.
"""

from django import forms
from django.conf import settings
from django.contrib import admin
from django.utils import timezone

from clinic.models import Organisation
from scheduler import rulebooks
from scheduler.models import ContraindicationRule, IntervalRule, RecheckRun, RuleBookVersion


class RuleForm(forms.ModelForm):
    change_reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why (recorded with the new version of the rule book; required for every change).",
    )


class RuleAdmin(admin.ModelAdmin):
    """Superusers: every rule. An organisation's administrators: their organisations' rules (the defaults
    read-only, for reference)."""

    form = RuleForm
    # What the change list shows of each row; get_queryset selects them itself (a queryset that already selects
    # related rows gets none added by the change list), one query for any number of rules.
    list_select_related = ["organisation", "replaces"]
    actions = None  # a bulk delete would change the rule book without a version
    exclude = ["reason"]
    readonly_fields = ["recorded_reason"]

    @admin.display(description="reason recorded")
    def recorded_reason(self, obj) -> str:
        return obj.reason if obj else ""

    def _organisations(self, request) -> list:
        return rulebooks.administered_organisations(request.user)

    def _may_edit(self, request, obj=None, action: str = "change") -> bool:
        user = request.user
        if not user.is_active:
            return False
        if user.is_superuser:
            return True
        if settings.STAFF_TWO_FACTOR_REQUIRED and not user.is_verified():
            return False
        if not user.has_perm(f"scheduler.{action}_{self.opts.model_name}"):
            return False
        organisations = self._organisations(request)
        if obj is None:
            return bool(organisations)
        return obj.organisation_id is not None and obj.organisation_id in organisations

    def has_add_permission(self, request) -> bool:
        return self._may_edit(request, action="add")

    def has_change_permission(self, request, obj=None) -> bool:
        return self._may_edit(request, obj, "change")

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._may_edit(request, obj, "delete")

    def get_queryset(self, request):
        rows = super().get_queryset(request).select_related(*self.list_select_related)
        if request.user.is_superuser:
            return rows
        return rows.filter(organisation__isnull=True) | rows.filter(organisation_id__in=self._organisations(request))

    def get_readonly_fields(self, request, obj=None):
        # A rule stays in its organisation's rule book (rulebooks.rule_save refuses a move).
        return [*super().get_readonly_fields(request, obj), *(["organisation"] if obj is not None else [])]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "organisation" and not request.user.is_superuser:
            kwargs["queryset"] = Organisation.objects.filter(pk__in=self._organisations(request))
            kwargs["required"] = True
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change) -> None:
        rulebooks.rule_save(rule=obj, user=request.user, reason=form.cleaned_data["change_reason"], now=timezone.now())

    def delete_model(self, request, obj) -> None:
        reason = f"deleted in the admin by {request.user.get_username()}"
        rulebooks.rule_delete(rule=obj, user=request.user, reason=reason, now=timezone.now())


@admin.register(IntervalRule)
class IntervalRuleAdmin(RuleAdmin):
    list_display = ["__str__", "organisation", "replaces", "severity", "scope", "basis", "source", "is_active"]
    list_filter = [
        ("organisation", admin.RelatedOnlyFieldListFilter),
        "later_procedure",
        "severity",
        "basis",
        "is_active",
    ]
    search_fields = ["source", "note"]


@admin.register(ContraindicationRule)
class ContraindicationRuleAdmin(RuleAdmin):
    list_display = ["__str__", "organisation", "replaces", "procedure", "severity", "applies_to", "is_active"]
    list_select_related = ["organisation", "replaces", "procedure"]
    list_filter = [("organisation", admin.RelatedOnlyFieldListFilter), "procedure", "severity", "is_active"]
    search_fields = ["condition__name", "medication__name", "source"]


class OwnOrganisations:
    """Superusers: every row. An organisation's administrators: the defaults' rows (no organisation) and their
    own organisations', never another's (who changed its rules, when and why)."""

    def get_queryset(self, request):
        rows = super().get_queryset(request)
        if request.user.is_superuser:
            return rows
        return rows.filter(organisation__isnull=True) | rows.filter(
            organisation_id__in=rulebooks.administered_organisations(request.user)
        )


@admin.register(RuleBookVersion)
class RuleBookVersionAdmin(OwnOrganisations, admin.ModelAdmin):
    """Every version of every rule book the administrator may see: who, when, why, what changed. Read-only."""

    list_display = ["__str__", "created_at", "created_by", "reason"]
    list_select_related = ["organisation", "created_by"]  # its name and who made it, for every row
    list_filter = [("organisation", admin.RelatedOnlyFieldListFilter)]
    readonly_fields = ["organisation", "number", "created_at", "created_by", "reason", "changes"]
    exclude = ["diff"]

    @admin.display(description="changes")
    def changes(self, obj) -> str:
        return "\n".join(rulebooks.diff_text(obj.diff or []))

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RecheckRun)
class RecheckRunAdmin(OwnOrganisations, admin.ModelAdmin):
    """Progress of the re-checks a rule change started: read-only, for the administrator to watch."""

    list_display = [
        "cause",
        "organisation",
        "created_at",
        "patients_done",
        "appointments_changed",
        "progressed_at",
        "finished_at",
        "checked_against",
        "could_not_recheck",
    ]
    list_select_related = ["organisation"]
    readonly_fields = [f.name for f in RecheckRun._meta.fields]

    @admin.display(description="checked against")
    def checked_against(self, obj: RecheckRun) -> str:
        return "; ".join(obj.rulebook_versions)

    @admin.display(description="could not be re-checked")
    def could_not_recheck(self, obj: RecheckRun) -> str:
        return "; ".join(f"patient {f['patient']}: {f['error']}" for f in obj.failures[:3]) + (
            f" (and {len(obj.failures) - 3} more)" if len(obj.failures) > 3 else ""
        )

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
