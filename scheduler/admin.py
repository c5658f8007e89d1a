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

from clinic.admin import ReadOnly
from clinic.models import Organisation, Patient
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
class RuleBookVersionAdmin(ReadOnly, OwnOrganisations, admin.ModelAdmin):
    """Every version of every rule book the administrator may see: who, when, why, what changed. Read-only."""

    list_display = ["__str__", "created_at", "created_by", "reason"]
    list_select_related = ["organisation", "created_by"]  # its name and who made it, for every row
    list_filter = [("organisation", admin.RelatedOnlyFieldListFilter)]
    readonly_fields = ["organisation", "number", "created_at", "created_by", "reason", "changes"]
    exclude = ["diff"]

    @admin.display(description="changes")
    def changes(self, obj) -> str:
        return "\n".join(rulebooks.diff_text(obj.diff or []))


_UNREAD = object()  # a request whose reader's organisations are not read yet


@admin.register(RecheckRun)
class RecheckRunAdmin(ReadOnly, OwnOrganisations, admin.ModelAdmin):
    """Progress of the re-checks a rule change started: read-only, for the administrator to watch (to everyone,
    superusers too: a run is the record of the versions its checks used, and a run still to do is how the bookings
    get re-checked; the beat takes it up until it is done). A run of the defaults re-checks every organisation's
    patients: an organisation's administrator sees in it only their own organisations' versions and failures."""

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
    actions = None  # no bulk delete: runs are read-only
    # The raw records are shown through `checked_against` and `could_not_recheck`, scoped to the reader.
    readonly_fields = [
        *(f.name for f in RecheckRun._meta.fields if f.name not in ("rulebook_versions", "failures")),
        "checked_against",
        "could_not_recheck",
    ]

    _SCOPED = ("checked_against", "could_not_recheck")

    def get_list_display(self, request):
        return [self._scoped(request, name) if name in self._SCOPED else name for name in self.list_display]

    def get_readonly_fields(self, request, obj=None):
        # `cursor` is the last patient done, of whichever organisation: the operator's to read, not an administrator's.
        shown = [name for name in self.readonly_fields if name != "cursor" or request.user.is_superuser]
        return [self._scoped(request, name) if name in self._SCOPED else name for name in shown]

    def _scoped(self, request, name: str):
        """`name`'s column for this request's reader: everything for a superuser; for an organisation's
        administrator, the entries of the organisations they administer (read once per request)."""
        scope = getattr(request, "_recheck_run_scope", _UNREAD)
        if scope is _UNREAD:
            scope = None
            if not request.user.is_superuser:
                ids = rulebooks.administered_organisations(request.user)
                codes = set(Organisation.objects.filter(pk__in=ids).values_list("code", flat=True))
                scope = (codes, ids)
            request._recheck_run_scope = scope
        method = getattr(self, name)

        def column(obj: RecheckRun) -> str:
            return method(obj, scope)

        column.__name__ = name
        column.short_description = method.short_description
        return column

    @admin.display(description="checked against")
    def checked_against(self, obj: RecheckRun, scope=None) -> str:
        entries = obj.rulebook_versions
        if scope is not None:
            codes, _ = scope
            entries = [entry for entry in entries if entry.rpartition(": ")[0] in codes]
        return "; ".join(entries)

    @admin.display(description="could not be re-checked")
    def could_not_recheck(self, obj: RecheckRun, scope=None) -> str:
        failures = obj.failures
        if scope is not None and failures:
            _, ids = scope
            theirs = {
                str(pk)
                for pk in Patient.objects.filter(
                    pk__in=[f["patient"] for f in failures], organisation_id__in=ids
                ).values_list("pk", flat=True)
            }
            failures = [f for f in failures if f["patient"] in theirs]
        return "; ".join(f"patient {f['patient']}: {f['error']}" for f in failures[:3]) + (
            f" (and {len(failures) - 3} more)" if len(failures) > 3 else ""
        )
