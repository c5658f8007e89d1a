"""Merge two records of one patient: everything moves to the survivor, the other becomes a tombstone.

History, medication courses, appointments (with their audit trail and outbox rows), intake,
opt-outs and every other row that names the patient move to the survivor; consent takes the
stricter of the two; the merged record keeps its id as a tombstone (`merged_into`, `merged_at`)
that interfaces redirect. The survivor's booked appointments are re-checked in the same
transaction (clinic.record_changes), and a `PatientMerge` row says who merged what, when, and which
warnings the two records brought together (they change no status, so staff must be told).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime

from django.db import models, transaction
from django.db.models import Q

from clinic.models import (
    ACTIVE_APPOINTMENT_STATUSES,
    MERGE_CHECK_NOTE_MAX,
    Appointment,
    ConditionStatus,
    MergeWarningCheck,
    Patient,
    PatientCondition,
    PatientMerge,
)
from clinic.record_changes import patient_record_changed
from core.errors import ErrorCode, InvalidInput, NotAllowed, NotFound, PreconditionFailed, Refused

# Reverse relations to Patient that are not simply re-pointed: the intake (merged line by line), the
# tombstones of earlier merges (re-pointed through `merged_into` below) and the merge records themselves.
_HANDLED_APART = {"conditions", "merged_from", "merges_away", "merges_in"}
# Overlapping active appointments of one patient break PostgreSQL's exclusion constraint (migration 0005):
# every status that holds its slot, needs_review included (it was left out, and such a merge failed there).
_OVERLAP_STATUSES = ACTIVE_APPOINTMENT_STATUSES

IntakeKey = tuple[str, str | None]  # (condition code, area code or None)

# A warn-level rule never changes a booking's status, so the re-check leaves two bookings that now break one (two
# Botox on one day, one on each record) as they were; the merge must say so (domain 6: nothing is changed
# silently). The rules are the scheduler's, a room above: it subscribes a finder (its AppConfig.ready), called
# as `finder(patient_id=, now=)` inside the merge; it returns the warnings of the patient's future active
# appointments, each a violation as stored (scheduler.recheck.violation_record) with its "appointment" (id).
WarningFinder = Callable[..., list[dict]]
_warning_finders: list[WarningFinder] = []


def same_warning(now_said: dict, stored: dict) -> bool:
    """Whether a warning the rules say now (a stored violation: `rule`, `code`, `kind`, `conflicts_with`) is one a
    merge recorded (`stored`): the same rule, or one of the same kind and code (the organisation's version of the
    default that warned, whose id is its own), against the same event, by its id or by its time (a visit completed
    since is its history record now, at the visit's start)."""
    same_rule = now_said.get("rule") == stored.get("rule")
    if not same_rule and (now_said.get("code"), now_said.get("kind")) != (stored.get("code"), stored.get("kind")):
        return False
    then, said = stored.get("conflicts_with") or {}, now_said.get("conflicts_with") or {}
    return str(said.get("id")) == str(then.get("id")) or (said.get("at") is not None and said["at"] == then.get("at"))


def subscribe_warnings(finder: WarningFinder) -> None:
    """Register the finder of a merged record's warnings (once, however often registered)."""
    if finder not in _warning_finders:
        _warning_finders.append(finder)


# What each record's consent rests on is the reminders' (a room above): they subscribe (their AppConfig.ready), called
# as `subscriber(merged=, into=, now=)` inside the merge, both rows locked, before anything moves (each record's own
# opt-outs still its own).
MergeSubscriber = Callable[..., None]
_merge_subscribers: list[MergeSubscriber] = []


# Told, after a merge moved them, of the merged record's active appointments, now the survivor's (`appointment_ids`,
# with `merged`, `into`, `now`, `actor_label`, `actor_user`): scheduler audits each and tells the platforms, in the
# merge's transaction, before the joined record is re-checked.
_moved_subscribers: list[Callable[..., object]] = []


def subscribe_moved(subscriber: Callable[..., object]) -> None:
    if subscriber not in _moved_subscribers:
        _moved_subscribers.append(subscriber)


def subscribe_merge(subscriber: MergeSubscriber) -> None:
    """Register a subscriber called as two records are merged, before any row moves (once, however often)."""
    if subscriber not in _merge_subscribers:
        _merge_subscribers.append(subscriber)


class MergeConflict(Refused):
    """The two records disagree in a way only a person can settle; `conflicts` lists each point."""

    def __init__(self, conflicts: list[dict]) -> None:
        super().__init__(
            ErrorCode.MERGE_CONFLICT,
            "The two records disagree: decide each intake line in `conflicts` (send `intake`), and cancel or "
            "move one of each pair of overlapping appointments, then merge again.",
            data={"conflicts": conflicts},
        )
        self.conflicts = conflicts


def _lock_both(first_id, second_id) -> dict:
    """Both rows locked, always in primary-key order, so two merges of the same pair cannot deadlock."""
    return {pk: Patient.objects.select_for_update().get(pk=pk) for pk in sorted([first_id, second_id], key=str)}


def intake_conflicts(merged: Patient, into: Patient) -> list[dict]:
    """Intake lines (same condition and area) to which the two records give different statuses."""
    rows = {(row.condition_id, row.area_id): row.status for row in PatientCondition.objects.filter(patient=into)}
    conflicts = []
    for row in PatientCondition.objects.filter(patient=merged).order_by("condition_id", "area_id"):
        key = (row.condition_id, row.area_id)
        if key in rows and rows[key] != row.status:
            conflicts.append(
                {
                    "kind": "intake",
                    "condition": row.condition_id,
                    "area": row.area_id,
                    "statuses": {str(into.pk): rows[key], str(merged.pk): row.status},
                }
            )
    return conflicts


def _appointment_overlaps(merged: Patient, into: Patient) -> list[dict]:
    mine = merged.appointments.filter(status__in=_OVERLAP_STATUSES).order_by("start_at")
    theirs = list(into.appointments.filter(status__in=_OVERLAP_STATUSES).order_by("start_at"))
    return [
        {"kind": "appointment_overlap", "appointments": [str(other.pk), str(own.pk)]}
        for own in mine
        for other in theirs
        if own.start_at < other.end_at and other.start_at < own.end_at
    ]


def _merge_intake(merged: Patient, into: Patient, decisions: Mapping[IntakeKey, str]) -> dict:
    kept = {(row.condition_id, row.area_id): row for row in PatientCondition.objects.filter(patient=into)}
    moved = decided = 0
    for row in PatientCondition.objects.filter(patient=merged):
        key = (row.condition_id, row.area_id)
        survivor_row = kept.get(key)
        if survivor_row is None:
            row.patient = into
            row.save(update_fields=["patient"])
            moved += 1
            continue
        if survivor_row.status != row.status:
            survivor_row.status = decisions[key]
            decided += 1
        survivor_row.noted_on = survivor_row.noted_on or row.noted_on
        survivor_row.save(update_fields=["status", "noted_on"])
        row.delete()
    return {"moved": moved, "decided": decided}


def _stricter_consent(merged: Patient, into: Patient) -> dict:
    """A channel stays on only if both records had it on (an opt-out on either wins); SMS consent only if
    both gave it; a topic switched off on either stays off. Contact details the survivor lacks are taken."""
    before = {
        "into": {"reminder_channels": into.reminder_channels, "sms_consent": into.sms_consent},
        "merged": {"reminder_channels": merged.reminder_channels, "sms_consent": merged.sms_consent},
    }
    other_channels = set(merged.reminder_channels or [])
    into.reminder_channels = [channel for channel in into.reminder_channels or [] if channel in other_channels]
    into.sms_consent = into.sms_consent and merged.sms_consent
    into.muted_topics = sorted({*(into.muted_topics or []), *(merged.muted_topics or [])})
    for name in ("email", "phone", "date_of_birth"):
        if not getattr(into, name) and getattr(merged, name):
            setattr(into, name, getattr(merged, name))
    into.save()
    return {**before, "after": {"reminder_channels": into.reminder_channels, "sms_consent": into.sms_consent}}


def _move_related_rows(merged: Patient, into: Patient) -> dict[str, int]:
    """Every row that names the merged record (in any app) now names the survivor; counts by relation."""
    moved = {}
    for relation in Patient._meta.related_objects:
        if relation.get_accessor_name() in _HANDLED_APART or not isinstance(relation.field, models.ForeignKey):
            continue
        count = relation.related_model._base_manager.filter(**{relation.field.name: merged}).update(
            **{relation.field.name: into}
        )
        if count:
            moved[relation.related_model._meta.label_lower] = count
    return moved


def _warnings_of(patient_ids, now: datetime) -> list[dict]:
    return [warning for pk in patient_ids for finder in _warning_finders for warning in finder(patient_id=pk, now=now)]


def _warning_key(warning: dict) -> str:
    """A warning as staff read it: its appointment, rule and what it conflicts with, by what and when, not by which
    copy of it (the same course on both records: the rules name it by one copy, scheduler.rules.evaluate)."""
    conflict = warning.get("conflicts_with")
    plain = {**warning, "conflicts_with": {**conflict, "id": None} if conflict else None}
    return json.dumps(plain, sort_keys=True, default=str)


def _warnings_brought_together(patient_id, now: datetime, before: set[str]) -> list[dict]:
    """The warnings of the survivor's future active appointments the merge brought: its pair joins the two records
    (the appointment from one, the event it conflicts with from the other). `before`: the two records' own warnings
    (`_warning_key`), which were there before the merge and are not its to report, whichever copy of an event both
    held the rules name now."""
    return [
        warning
        for warning in _warnings_of([patient_id], now)
        if warning.get("conflicts_with") and _warning_key(warning) not in before
    ]


def patient_merge(
    *,
    merged: Patient,
    into: Patient,
    now: datetime,
    actor_label: str,
    actor_user=None,
    clinical: bool,
    intake: Mapping[IntakeKey, str] | None = None,
) -> PatientMerge:
    """Merge `merged` into `into` (the survivor); return the merge record.

    Only a clinician or clinic administrator (`clinical`) may merge, two live records of one
    organisation. Intake lines the two disagree on need a decision in `intake` ((condition, area) ->
    status), and overlapping active appointments must be settled first; otherwise `MergeConflict`.
    The record's `details["warnings"]` lists the warn-level rules the survivor's future active appointments now
    break against an event of the other record (each a stored violation with its "appointment"); they change no
    status, so the interfaces show them to staff.
    """
    if not clinical:
        raise NotAllowed(ErrorCode.CLINICIAN_REQUIRED, "Only a clinician or clinic administrator may merge records.")
    if merged.pk == into.pk:
        raise InvalidInput(ErrorCode.MERGE_INTO_SELF, "A record cannot be merged into itself.", field="into")
    if merged.organisation_id != into.organisation_id:
        raise NotFound(ErrorCode.UNKNOWN_PATIENT, "There is no such patient in this organisation.")
    decisions = dict(intake or {})
    for key, status in decisions.items():
        if status not in ConditionStatus.values:
            raise InvalidInput(
                ErrorCode.UNKNOWN_STATUS, f"{key[0]}: status must be 'active' or 'history'.", field="intake"
            )
    with transaction.atomic():
        locked = _lock_both(merged.pk, into.pk)
        merged, into = locked[merged.pk], locked[into.pk]
        # Race condition: either may have been merged away while we waited for the locks.
        if merged.merged_into_id is not None:
            raise InvalidInput(
                ErrorCode.PATIENT_MERGED, f"This record was already merged into {merged.merged_into_id}."
            )
        if into.merged_into_id is not None:
            raise InvalidInput(
                ErrorCode.PATIENT_MERGED,
                f"That record was merged into {into.merged_into_id}; merge into that one.",
                field="into",
            )
        disputed = intake_conflicts(merged, into)
        conflicts = [c for c in disputed if (c["condition"], c["area"]) not in decisions]
        conflicts += _appointment_overlaps(merged, into)
        if conflicts:
            raise MergeConflict(conflicts)
        # A decision for a line the two agree on (or neither has) would be dropped without a word.
        extra = sorted(set(decisions) - {(c["condition"], c["area"]) for c in disputed}, key=str)
        if extra:
            condition, area = extra[0]
            raise InvalidInput(
                ErrorCode.UNKNOWN_CONDITION,
                f"{condition}{f' ({area})' if area else ''} is not a line the two records disagree on: "
                "decide only the lines in `conflicts`.",
                field="intake",
            )
        before = {_warning_key(warning) for warning in _warnings_of([merged.pk, into.pk], now)}
        for subscriber in _merge_subscribers:
            subscriber(merged=merged, into=into, now=now)
        active = list(
            Appointment._base_manager.filter(patient=merged, status__in=ACTIVE_APPOINTMENT_STATUSES)
            .order_by("start_at", "pk")
            .values_list("pk", flat=True)
        )
        intake_result = _merge_intake(merged, into, decisions)
        moved = _move_related_rows(merged, into)
        for subscriber in _moved_subscribers:
            subscriber(
                appointment_ids=active,
                merged=merged,
                into=into,
                now=now,
                actor_label=actor_label[:200],
                actor_user=actor_user,
            )
        Patient.objects.filter(merged_into=merged).update(merged_into=into)  # older tombstones: one hop
        consent = _stricter_consent(merged, into)
        merged.merged_into, merged.merged_at = into, now
        merged.save(update_fields=["merged_into", "merged_at", "updated_at"])
        patient_record_changed(patient_id=into.pk, now=now, cause=f"merge: record {merged.pk} merged in")
        record = PatientMerge.objects.create(
            merged=merged,
            into=into,
            at=now,
            actor_user=actor_user,
            actor_label=actor_label[:200],
            details={
                "moved": moved,
                "intake": {
                    **intake_result,
                    "decisions": [
                        {"condition": key[0], "area": key[1], "status": status} for key, status in decisions.items()
                    ],
                },
                "consent": consent,
                # After the re-check: it is the rules as they stand on the joined record that warn.
                "warnings": _warnings_brought_together(into.pk, now, before),
            },
        )
    return record


# Longer than any rule's words: a longer text is not a warning the page showed.
MERGE_CHECK_MESSAGE_MAX = 2000


def merge_warning_check(
    *, patient: Patient, merge_id, appointment_id, message: str, note: str = "", checked_by, now: datetime
) -> tuple[MergeWarningCheck, bool]:
    """Record that `checked_by` looked at a warning the merge `merge_id` brought together on the booking
    `appointment_id` of `patient` (the survivor), as it was shown (`message`, the rule's words when the page was
    drawn); return the check and whether it is new. Checking the same warning again changes nothing.

    A merge that is not into this record (or into one merged into it since), a booking that is not the patient's or
    that the merge did not warn of: `NotFound`. A warning the rules no longer say in these words (it changed, or
    ended, since the page was drawn): `PreconditionFailed`, nothing recorded, since the check would cover something
    nobody saw."""
    # The interfaces' forms check the shape; this keeps a malformed value from reaching the database (PostgreSQL
    # refuses a NUL character in text) whoever calls.
    if (
        not isinstance(message, str)
        or not message.strip()
        or "\x00" in message
        or len(message) > MERGE_CHECK_MESSAGE_MAX
    ):
        raise InvalidInput(ErrorCode.UNKNOWN_FIELD, "Say which warning was checked, as it was shown.", field="message")
    note = note.strip() if isinstance(note, str) else ""
    if "\x00" in note:
        raise InvalidInput(ErrorCode.UNKNOWN_FIELD, "Remove the NUL character from the note.", field="note")
    if len(note) > MERGE_CHECK_NOTE_MAX:
        raise InvalidInput(
            ErrorCode.REASON_TOO_LONG, f"Keep the note to {MERGE_CHECK_NOTE_MAX} characters or fewer.", field="note"
        )
    merge = (
        PatientMerge.objects.filter(Q(into=patient) | Q(into__merged_into=patient), pk=merge_id).first()
        if merge_id is not None
        else None
    )
    warned = {str(w.get("appointment")) for w in (merge.details or {}).get("warnings", [])} if merge else set()
    appointment = (
        Appointment.objects.filter(patient=patient, pk=appointment_id).first()
        if str(appointment_id) in warned
        else None
    )
    if appointment is None:
        raise NotFound(ErrorCode.UNKNOWN_APPOINTMENT, "That merge has no warning on such a booking of this patient.")
    checked = {"merge": merge, "appointment": appointment, "message": message}
    if (existing := MergeWarningCheck.objects.filter(**checked).first()) is not None:
        return existing, False
    # Only what the rules say now of the warnings this merge recorded on this booking: the words of another warning of
    # the booking (against the patient's own history, say) check nothing of the merge's.
    recorded = [w for w in (merge.details or {}).get("warnings", []) if w.get("appointment") == str(appointment.pk)]
    said = {
        warning["message"]
        for finder in _warning_finders
        for warning in finder(patient_id=patient.pk, now=now)
        if warning.get("appointment") == str(appointment.pk) and any(same_warning(warning, w) for w in recorded)
    }
    if message not in said:
        raise PreconditionFailed(
            ErrorCode.RECORD_CHANGED,
            "That warning has changed or no longer stands since the page was drawn, so nothing was recorded: "
            "read it as it is now.",
        )
    name = (checked_by.get_full_name() or checked_by.get_username()) if checked_by is not None else ""
    # Race condition: two desks (or a double click) checking it at once: the unique constraint keeps one.
    return MergeWarningCheck.objects.get_or_create(
        **checked,
        defaults={"checked_at": now, "checked_by": checked_by, "checked_by_name": name[:200], "note": note},
    )
