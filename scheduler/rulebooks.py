"""Changing a rule book: each change of a rule is validated, saved and recorded as a new version.

An organisation's administrators (clinic_admin of the organisation or one of its clinics, with the
rule permission and a two-factor sign-in: the admin, scheduler/admin.py) tighten, relax or disable a
default by saving a rule of their organisation that `replaces` it, or add a rule of their own; the
defaults (no organisation) change only by superusers or a release. Every change has a reason and
becomes the next `RuleBookVersion` of its rule book, with a readable diff. The re-check of the
affected patients follows the commit (scheduler/signals.py).
"""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, Q

from clinic.models import Clinic, Organisation, StaffMembership, StaffRole
from scheduler.models import ConfigVersion, ContraindicationRule, GapUnit, IntervalRule, RuleBookVersion

# The fields a diff shows, per kind of rule (everything an administrator can change).
DIFF_FIELDS = {
    IntervalRule: [
        "earlier_procedure",
        "earlier_medication",
        "later_procedure",
        "gap_value",
        "gap_unit",
        "severity",
        "scope",
        "source",
        "basis",
        "note",
        "is_active",
    ],
    ContraindicationRule: [
        "condition",
        "medication",
        "procedure",
        "severity",
        "applies_to",
        "area_specific",
        "source",
        "note",
        "is_active",
    ],
}
# Approximate lengths, only to say whether a changed gap is longer (tightened) or shorter (relaxed).
_UNIT_DAYS = {GapUnit.HOURS: 1 / 24, GapUnit.DAYS: 1, GapUnit.WEEKS: 7, GapUnit.MONTHS: 30.44}
_STRICTNESS = {"warn": 0, "block": 1, "relative": 0, "absolute": 1}


def rule_kind(rule) -> str:
    return "interval" if isinstance(rule, IntervalRule) else "contraindication"


def rule_state(rule) -> dict:
    """A rule's fields as a diff shows them (codes for catalogue entries)."""
    state = {}
    for name in DIFF_FIELDS[type(rule)]:
        field = rule._meta.get_field(name)
        state[name] = getattr(rule, field.attname)
    return state


def _strictness(rule_state_: dict, kind: str) -> tuple:
    severity = _STRICTNESS.get(rule_state_.get("severity"), 0)
    if kind == "interval":
        days = rule_state_["gap_value"] * _UNIT_DAYS.get(rule_state_["gap_unit"], 1)
        return (severity, days)
    return (severity,)


def change_kind(before: dict | None, after: dict | None, kind: str) -> str:
    """added, removed, disabled, enabled, tightened, relaxed or changed (what a reader of the diff wants first)."""
    if before is None:
        return "added" if after and after.get("is_active", True) else "disabled"
    if after is None:
        return "removed"
    if before.get("is_active") and not after.get("is_active"):
        return "disabled"
    if not before.get("is_active") and after.get("is_active"):
        return "enabled"
    old, new = _strictness(before, kind), _strictness(after, kind)
    if new == old:
        return "changed"
    # Stricter on one axis and looser on the other reads as a change, not a tightening.
    if all(n >= o for n, o in zip(new, old, strict=True)):
        return "tightened"
    if all(n <= o for n, o in zip(new, old, strict=True)):
        return "relaxed"
    return "changed"


def diff_entry(rule, before: dict | None, after: dict | None) -> dict:
    """One line of a version's diff: which rule, what kind of change, field by field."""
    kind = rule_kind(rule)
    fields = {
        name: {"from": (before or {}).get(name), "to": (after or {}).get(name)}
        for name in DIFF_FIELDS[type(rule)]
        if (before or {}).get(name) != (after or {}).get(name)
    }
    return {
        "kind": kind,
        "rule": str(rule),
        "rule_id": rule.pk,
        "replaces": rule.replaces_id,
        "change": change_kind(before, after, kind),
        "fields": fields,
    }


def diff_text(diff: list[dict]) -> list[str]:
    """The diff as sentences ("tightened isotretinoin course end → microneedling: gap_value 6 → 9"; a change of the
    default a rule stands in for as "replaces default 17 → nothing")."""
    lines = []
    for entry in diff:
        parts = ", ".join(
            f"{name} {_replaced(change['from'])} → {_replaced(change['to'])}"
            if name == "replaces"
            else f"{name} {change['from']} → {change['to']}"
            for name, change in entry["fields"].items()
        )
        lines.append(f"{entry['change']} {entry['rule']}" + (f": {parts}" if parts else ""))
    return lines


def _replaced(rule_id) -> str:
    return "nothing" if rule_id is None else f"default {rule_id}"


def _lock_book(organisation_id) -> None:
    """One change of a rule book at a time, so version numbers never clash."""
    if organisation_id is not None:
        list(Organisation.objects.select_for_update().filter(pk=organisation_id).values_list("pk"))
    else:
        list(ConfigVersion.objects.select_for_update().filter(pk=1).values_list("pk"))


def version_record(*, organisation_id, user, reason: str, diff: list[dict], now: datetime) -> RuleBookVersion:
    """The next version of a rule book (the caller's transaction; `organisation_id` None: the defaults)."""
    _lock_book(organisation_id)
    latest = RuleBookVersion.objects.filter(
        Q(organisation_id=organisation_id) if organisation_id else Q(organisation__isnull=True)
    ).aggregate(n=Max("number"))["n"]
    return RuleBookVersion.objects.create(
        organisation_id=organisation_id,
        number=(latest or 1) + 1,
        created_at=now,
        created_by=user if user is not None and user.is_authenticated else None,
        reason=reason,
        diff=diff,
    )


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why the rule book changes: the version records it."})
    return reason


@transaction.atomic
def rule_save(*, rule, user, reason: str, now: datetime) -> RuleBookVersion | None:
    """Validate and save a rule (new or changed), as the next version of its rule book; None when a stored rule is
    saved as it was (no new version: every later decision would name a version that changed nothing).

    A gap of zero or less, longer than ten years (scheduler.rules.MAX_GAP_VALUE), or an unknown unit is refused
    with the field named (ValidationError): `full_clean` below is the check every path that edits rules (the
    admin, a script) goes through, and the database refuses such a gap too.
    """
    reason = _require_reason(reason)
    if rule.organisation_id:
        rule.reason = reason
    rule.full_clean()
    stored = type(rule).objects.filter(pk=rule.pk).first() if rule.pk else None
    if stored is not None and stored.organisation_id != rule.organisation_id:
        # Two rule books would change under one version, and the first one's bookings would not be re-checked.
        raise ValidationError(
            {
                "organisation": "A rule stays in its organisation's rule book. Add it to the other organisation's, "
                "and delete it here if it should no longer apply."
            }
        )
    before = rule_state(stored) if stored is not None else None
    replaced_before = stored.replaces_id if stored is not None else None
    replaces_changed = stored is not None and replaced_before != rule.replaces_id
    if before is not None and before == rule_state(rule) and not replaces_changed:
        return None  # nothing changed (its reason for a change that is none is not kept either)
    if rule.replaces_id and (stored is None or replaces_changed):
        # An override is read against the default it stands in for, also when an edit makes a rule one: that
        # default no longer applies, so what the organisation's bookings are checked against goes from it to this.
        before = rule_state(rule.replaces)
    rule.save()
    entry = diff_entry(rule, before, rule_state(rule))
    if replaces_changed:
        # Which default the rule stands in for decides which rules a booking is checked against: the version says.
        entry["fields"]["replaces"] = {"from": replaced_before, "to": rule.replaces_id}
        if rule.replaces_id is None:
            # The default it stood in for applies again, beside this rule (now one of the organisation's own).
            entry["change"] = "default restored"
    return version_record(organisation_id=rule.organisation_id, user=user, reason=reason, diff=[entry], now=now)


@transaction.atomic
def rule_delete(*, rule, user, reason: str, now: datetime) -> RuleBookVersion:
    """Delete a rule: an organisation's override gives the default back; an added rule goes."""
    reason = _require_reason(reason)
    entry = diff_entry(rule, rule_state(rule), rule_state(rule.replaces) if rule.replaces_id else None)
    if rule.replaces_id:
        entry["change"] = "reverted to the default"
    organisation_id = rule.organisation_id
    rule.delete()
    return version_record(organisation_id=organisation_id, user=user, reason=reason, diff=[entry], now=now)


def administered_organisations(user) -> list:
    """Ids of the organisations whose rule books the user administers: clinic_admin of the organisation
    or of one of its clinics (the Django permission and two-factor sign-in are checked by the caller)."""
    if not getattr(user, "is_authenticated", False):
        return []
    memberships = StaffMembership.objects.filter(user=user, role=StaffRole.CLINIC_ADMIN)
    direct = memberships.filter(organisation__isnull=False).values_list("organisation_id", flat=True)
    via_clinic = Clinic.objects.filter(
        pk__in=memberships.filter(clinic__isnull=False).values_list("clinic_id", flat=True)
    ).values_list("organisation_id", flat=True)
    return sorted(set(direct) | set(via_clinic), key=str)
