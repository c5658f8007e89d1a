"""The rules keep holding after booking: re-check a patient's booked appointments when their record changes.

Subscribed to clinic.record_changes, so it runs inside the record change's transaction with the
patient row locked (as every booking locks it first): a booking and a record change of the same
patient never interleave, and no booking stays confirmed and unsafe. For each appointment that still
holds its slot and is to come or under way (its end not passed: an intake taken at the chair, the patient
checked in, is checked against the visit about to be treated), the rules as they stand now decide:

- a block rule or an absolute contraindication now stands → `needs_review` (reasons kept,
  reminders held, webhook `appointment.needs_review`); one that needs review already and now breaks other
  rules (one more, or one fewer) is flagged again with the new reasons (audit `needs_review` from and to
  `needs_review`, the same webhook);
- a relative contraindication not already cleared → back to `pending_clearance`;
- nothing stands any more (the record was corrected, a rule switched off) → `released`, back to confirmed, from
  needing review or from waiting for a clearance nothing asks for any more (or to pending clearance when a relative
  contraindication not cleared for still stands).

Nothing changes silently: every move is audited with its cause and sent to the subscribers.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import F, Q

from clinic.merging import same_warning
from clinic.models import (
    ACTIVE_APPOINTMENT_STATUSES,
    Appointment,
    AppointmentStatus,
    AuditAction,
    Organisation,
    PatientMerge,
)
from core.redact import masked_logger
from scheduler import booking, rules, versioned
from scheduler.lifecycle import Actor, lock_patient, record
from scheduler.models import IntervalRule, RecheckRun

SYSTEM = Actor("system: record re-check")


def violation_record(violation: rules.Violation) -> dict:
    """A violation as stored on the appointment (times in UTC), the shape of a refusal's."""
    ref = violation.conflicts_with
    at = None if ref is None else (ref.at or ref.on)
    return {
        "code": str(violation.code),
        "kind": violation.kind,
        "severity": str(violation.severity),
        "message": violation.message,
        "rule": violation.rule_id or None,
        "source": violation.source or None,
        "conflicts_with": None
        if ref is None
        else {
            "id": ref.id,
            "kind": ref.kind,
            "code": ref.code,
            "at": at.isoformat() if at else None,
            "clinic": ref.clinic,
        },
        "earliest_allowed": violation.earliest_allowed.isoformat() if violation.earliest_allowed else None,
    }


def review_reasons_in_zone(appointment: Appointment) -> list[dict]:
    """The appointment's stored reasons (UTC) with their times in its clinic's offset, as every API time is (the
    API's appointments and the webhooks' bodies)."""
    return violation_records_in_zone(appointment.review_reasons or [], appointment.clinic.tz)


def violation_records_in_zone(records: list[dict], tz) -> list[dict]:
    """Stored violations (`violation_record`, UTC) with their times in the offset of `tz`."""

    def local(value):
        return datetime.fromisoformat(value).astimezone(tz).isoformat() if value and "T" in value else value

    def in_zone(reason: dict) -> dict:
        conflict = reason.get("conflicts_with")
        return {
            **reason,
            "earliest_allowed": local(reason.get("earliest_allowed")),
            "conflicts_with": None if conflict is None else {**conflict, "at": local(conflict.get("at"))},
        }

    return [in_zone(reason) for reason in records]


def _verdict(appointment: Appointment, check: booking.BookingCheck, now: datetime) -> tuple[str, list[dict]]:
    """(status the rules give now, the reasons when it needs review). A visit under way (its start passed) is
    weighed against what it follows (the history, medications, intake, visits before it), not against a booking
    after it: that booking is flagged itself, and is the one to move (the treatment under way has begun)."""
    evaluation = check.evaluation
    blocking = evaluation.blocking
    if appointment.start_at <= now:
        blocking = [v for v in blocking if v.code != rules.ViolationCode.TOO_CLOSE_BEFORE]
    if blocking:
        return AppointmentStatus.NEEDS_REVIEW, [violation_record(v) for v in blocking]
    cleared = booking.cleared_rules(appointment)
    waits = any(not booking.is_cleared(v, cleared) for v in evaluation.needs_clearance)
    return (AppointmentStatus.PENDING_CLEARANCE if waits else AppointmentStatus.CONFIRMED), []


def _substance(reasons: list[dict] | None) -> list[dict]:
    """The reasons as staff and platforms read them: an intake line is named by its condition (and area), not by the
    row that holds it, which a merge joining two records' same line, or an intake saved again, may replace; a
    treatment by what and when, not by which of two copies of it (the same one entered twice, one copy removed). The
    same reasons held by another row are no new flag (the stored ones are brought up to date silently)."""

    def plain(reason: dict) -> dict:
        conflict = reason.get("conflicts_with")
        if conflict:
            return {**reason, "conflicts_with": {**conflict, "id": None}}
        return reason

    # In no order: the rules list reasons by the id of what they conflict with, which a copy removed may reorder.
    return sorted((plain(reason) for reason in reasons or []), key=lambda reason: json.dumps(reason, sort_keys=True))


def _action(before: str, after: str, reasons_changed: bool = False) -> str | None:
    if after == before:
        # Still needing review, for other reasons (a second rule now breaks, or one of two no longer does):
        # nothing changes silently, so staff and platforms hear the new reasons as a new flag.
        return AuditAction.NEEDS_REVIEW if after == AppointmentStatus.NEEDS_REVIEW and reasons_changed else None
    if after == AppointmentStatus.NEEDS_REVIEW:
        return AuditAction.NEEDS_REVIEW
    if before == AppointmentStatus.NEEDS_REVIEW:
        return AuditAction.RELEASED
    if after == AppointmentStatus.PENDING_CLEARANCE:
        return AuditAction.CLEARANCE_REQUESTED
    # Pending clearance, and a correction (or a rule switched off) left nothing for a clinician to clear: confirmed,
    # as a booking made now would be and as a move of it is, its held messages let go (docs/rules.md).
    return AuditAction.RELEASED


@versioned.within_snapshot
def patient_appointments_recheck(
    *, patient_id, now: datetime, cause: str, versions: set[tuple[str, str]] | None = None
) -> list[Appointment]:
    """Re-check the patient's booked appointments to come or under way (`end_at` after `now`); return those whose
    status changed.

    The caller holds the patient row lock (a record service or a merge); appointments are
    locked here before they change. `versions`, when given, gains (organisation id, rule book version) of every
    check made, those that change nothing included (a run records them: domain 6, every decision records its
    version).
    """
    changed = []
    future = (
        Appointment.objects.select_for_update(of=("self",))
        .select_related("patient__clinic", "clinic", "procedure", "area", "practitioner")
        .filter(
            patient_id=patient_id,
            end_at__gt=now,  # under way too: a contraindication learned at the chair stops the treatment
            status__in=[
                AppointmentStatus.CONFIRMED,
                AppointmentStatus.PENDING_CLEARANCE,
                AppointmentStatus.NEEDS_REVIEW,
            ],
        )
        .order_by("start_at")
    )
    for appointment in future:
        check = booking.appointment_recheck(appointment=appointment)
        if versions is not None:
            versions.add((str(appointment.patient.organisation_id), check.rulebook_version))
        status, reasons = _verdict(appointment, check, now)
        action = _action(
            appointment.status, status, reasons_changed=_substance(reasons) != _substance(appointment.review_reasons)
        )
        if action is None and reasons == appointment.review_reasons:
            continue
        before = appointment.status
        if action is not None:
            appointment.status = status
        appointment.review_reasons = reasons
        appointment.save(update_fields=["status", "review_reasons", "updated_at"])
        if action is not None:
            record(
                appointment,
                action,
                SYSTEM,
                now,
                reason=cause,
                details={
                    "from": before,
                    "to": status,
                    "cause": cause,
                    "violations": [{"code": r["code"], "rule": r["rule"]} for r in reasons],
                    "rulebook_version": check.rulebook_version,
                },
            )
            changed.append(appointment)
    return changed


def flagged_appointments_recheck(*, appointment: Appointment, now: datetime, what: str) -> list[Appointment]:
    """`appointment` was cancelled, moved or missed (`what`), under the patient's lock: a booking of theirs that it
    flagged (needs review, or waits for clearance) may be free now, and is checked again (domain 2: cancelling
    frees). Nothing else can change: a move was checked against the others both ways before it was made."""
    flagged = (
        Appointment.objects.filter(
            patient_id=appointment.patient_id,
            end_at__gt=now,  # as patient_appointments_recheck reads them
            status__in=[AppointmentStatus.PENDING_CLEARANCE, AppointmentStatus.NEEDS_REVIEW],
        )
        .exclude(pk=appointment.pk)
        .exists()
    )
    if not flagged:
        return []
    cause = f"{appointment.procedure.name} appointment {what}"
    return patient_appointments_recheck(patient_id=appointment.patient_id, now=now, cause=cause)


def on_record_changed(*, patient_id, now: datetime, cause: str) -> None:
    """clinic.record_changes subscriber."""
    patient_appointments_recheck(patient_id=patient_id, now=now, cause=cause)


@versioned.within_snapshot
def appointments_warnings(*, patient_id, now: datetime) -> list[dict]:
    """The warn-level rules the patient's future active appointments break as the record stands now, by start:
    each a stored violation (`violation_record`) with its "appointment" (id). A warning changes no status, so the
    re-check keeps none; a merge records those its two records bring together (clinic.merging subscriber)."""
    future = (
        Appointment.objects.select_related("patient__clinic", "clinic", "procedure", "area", "practitioner")
        .filter(patient_id=patient_id, start_at__gt=now, status__in=ACTIVE_APPOINTMENT_STATUSES)
        .order_by("start_at")
    )
    return [
        {"appointment": str(appointment.pk), **violation_record(warning)}
        for appointment in future
        for warning in booking.appointment_recheck(appointment=appointment).warnings
    ]


def merge_warnings_standing(*, patient, appointments: list[Appointment], now: datetime) -> list[tuple]:
    """The warnings of the merges into `patient` (and into the records merged into it since) that still stand, as
    (appointment, the rule's words of now, when it was merged, the merge's id), `appointments` being the patient's
    (read by the caller). Each warned booking, active and to come, is checked again as it stands (one timeline read
    a warned booking, none when there is none), and a warning stands while the same rule still warns against the
    same event: the same rule, or one of the same kind saying the same of that pair (the organisation's own version
    of the default that warned, tightened or relaxed, whose id is its own). A visit of the pair cancelled, missed or
    moved clear, a course whose end was recorded long enough ago, a rule relaxed or switched off since: it is gone; a
    move that still warns keeps it (whoever moved it through the API saw it, no desk did). One statement for the
    merges."""
    live = {str(a.pk): a for a in appointments if a.status in ACTIVE_APPOINTMENT_STATUSES and a.start_at > now}
    if not live:
        return []
    merges = PatientMerge.objects.filter(Q(into=patient) | Q(into__merged_into=patient)).order_by("at")
    standing = [
        (at, merge_id, warning)
        for merge_id, at, details in merges.values_list("pk", "at", "details")
        for warning in (details or {}).get("warnings", [])
        if warning.get("appointment") in live
    ]
    said_now: dict[str, list[dict]] = {}
    for pk in dict.fromkeys(warning["appointment"] for _, _, warning in standing):
        said_now[pk] = [violation_record(v) for v in booking.appointment_recheck(appointment=live[pk]).warnings]

    found, told = [], set()
    for at, merge_id, warning in standing:
        said = said_now[warning["appointment"]]
        # The same rule first; a version of it only when the rule itself says nothing of the pair now.
        match = next((v for v in said if v["rule"] == warning.get("rule") and same_warning(v, warning)), None) or next(
            (v for v in said if same_warning(v, warning)), None
        )
        if match is not None and (merge_id, warning["appointment"], match["message"]) not in told:
            told.add((merge_id, warning["appointment"], match["message"]))
            found.append((live[warning["appointment"]], match["message"], at, merge_id))
    return found


# --- After a rule change: every affected patient, in chunks ---------------------------------------------------

CHUNK = 100


def _affected(procedures: list[str], now: datetime, organisation_id=None):
    """Patients with an active booking of the procedures to come or under way (only the organisation's, when given)."""
    booked = Appointment.objects.filter(
        # To come or under way, as a record change re-checks them (patient_appointments_recheck); the bound on the
        # start keeps the (procedure, start) index in use: no visit lasts a day.
        procedure_id__in=procedures,
        start_at__gt=now - timedelta(days=1),
        end_at__gt=now,
        status__in=ACTIVE_APPOINTMENT_STATUSES,
    )
    if organisation_id is not None:
        booked = booked.filter(patient__organisation_id=organisation_id)
    return booked.values_list("patient_id", flat=True).distinct()


def procedures_of_rule(rule) -> list[str]:
    """The procedures whose bookings a rule (interval or contraindication) can change."""
    if isinstance(rule, IntervalRule):
        return sorted({code for code in (rule.later_procedure_id, rule.earlier_procedure_id) if code})
    return [rule.procedure_id]


log = masked_logger(__name__)

# How long a run's first step waits for the transactions in progress when it starts (below): under
# gunicorn's timeout, for the embedded dispatcher that runs the steps in the request.
OLDER_TRANSACTIONS_WAIT = timedelta(seconds=25)

# The clients' transactions of this database in progress (not this one's; not autovacuum's or replication's).
_IN_PROGRESS = """
    SELECT coalesce(array_agg(l.virtualxid), '{}') FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'virtualxid' AND l.pid <> pg_backend_pid() AND a.datname = current_database()
      AND a.backend_type = 'client backend'
"""


def _transactions_in_progress() -> set[str]:
    if connection.vendor != "postgresql":
        return set()
    with connection.cursor() as cursor:
        cursor.execute(_IN_PROGRESS)
        return set(cursor.fetchone()[0])


def wait_for_older_transactions(timeout: timedelta = OLDER_TRANSACTIONS_WAIT) -> bool:
    """Wait until every transaction of this database in progress now has ended; False if some outlast
    `timeout` (then logged).

    # Race condition: a booking checked against the rules as they were may still be committing when a rule
    change commits. The run that re-checks the affected patients reads only what has committed, so it would
    miss that booking, which would stay confirmed and unsafe. Called after the rule change has committed,
    this waits for every transaction that could have read the old rules (each holds its virtual transaction
    id's lock until it ends); once they have ended, their bookings are visible. A booking that starts after
    the change reads the new rules. PostgreSQL only: SQLite's booking holds the write lock from its BEGIN, so a
    rule change cannot commit while one is in progress."""
    deadline = time.monotonic() + timeout.total_seconds()
    older = _transactions_in_progress()
    while older:
        if time.monotonic() >= deadline:
            log.warning("re-check: %d transactions still in progress after %s; re-checking anyway", len(older), timeout)
            return False
        time.sleep(0.05)
        older &= _transactions_in_progress()
    return True


def recheck_run_start(*, cause: str, procedures: list[str], now: datetime, organisation_id=None) -> RecheckRun | None:
    """A run for a rule change (of one organisation's rule book, or of the defaults when None), or None when
    no booked appointment can be affected. Called after the change has committed. While other transactions
    are in progress, one may be a booking checked against the rules as they were, not yet visible: the run is
    made anyway, and its first step waits for them (`wait_for_older_transactions`), in the worker, not in the
    request that saved the rule."""
    if not _transactions_in_progress() and not _affected(procedures, now, organisation_id).exists():
        return None
    return RecheckRun.objects.create(
        cause=cause[:300], procedures=procedures, created_at=now, organisation_id=organisation_id
    )


ISOLATE_AFTER = 2  # steps failed at one place before its patients are re-checked each on its own


def recheck_run_step(*, run_id, now: datetime, chunk: int = CHUNK) -> bool:
    """Re-check the next chunk of patients; return True when the run is finished (or not ours to do).

    A chunk is one transaction: a step that fails (a lock that waited too long, a worker's database gone) changes
    nothing and is tried again (the task's caller, or the beat's `resume_rechecks`). One that fails ISOLATE_AFTER
    times at the same place is taken patient by patient, each in its own savepoint: a patient whose re-check
    keeps failing is recorded on the run (`failures`, shown in the admin) and left as it was, and the rest of the
    organisation is re-checked rather than waiting behind it for ever."""
    if RecheckRun.objects.filter(pk=run_id, progressed_at__isnull=True, finished_at__isnull=True).exists():
        # The first step, outside any transaction (two runs starting together must not wait for each other).
        wait_for_older_transactions()
    try:
        return _step(run_id, now, chunk)
    except Exception:
        _step_failed(run_id)
        raise


def _step(run_id, now: datetime, chunk: int) -> bool:
    with transaction.atomic():
        # Race condition: one step at a time per run; another worker holding it skips.
        run = (
            RecheckRun.objects.select_for_update(skip_locked=True).filter(pk=run_id).first()
            if connection.features.has_select_for_update_skip_locked
            else RecheckRun.objects.filter(pk=run_id).first()
        )
        if run is None or run.finished_at is not None:
            return True
        patients = _affected(run.procedures, now, run.organisation_id).order_by("patient_id")
        if run.cursor is not None:
            patients = patients.filter(patient_id__gt=run.cursor)
        batch = list(patients[:chunk])
        isolate = run.failed_steps >= ISOLATE_AFTER
        versions: set[tuple[str, str]] = set()
        for patient_id in batch:
            if not isolate:
                run.appointments_changed += len(_recheck_patient(patient_id, now, run.cause, versions))
                continue
            try:
                with transaction.atomic():  # a savepoint: this patient's changes, or none
                    run.appointments_changed += len(_recheck_patient(patient_id, now, run.cause, versions))
            except Exception as exc:  # one patient that cannot be re-checked must not stop the others'
                log.exception("re-check %s: patient %s could not be re-checked; left as it was", run.pk, patient_id)
                error = f"{exc.__class__.__name__}: {exc}"[:300]
                run.failures = [*run.failures, {"patient": str(patient_id), "error": error, "at": now.isoformat()}]
        run.rulebook_versions = _versions_record(run.rulebook_versions, versions)
        run.failed_steps = 0
        run.patients_done += len(batch)
        run.cursor = batch[-1] if batch else run.cursor
        run.progressed_at = now
        if len(batch) < chunk:
            run.finished_at = now
        run.save()
        return run.finished_at is not None


def _versions_record(recorded: list[str], checked: set[tuple[str, str]]) -> list[str]:
    """The run's record of the versions it checked against, with this step's: "<organisation code>: <version>",
    once each, by organisation and then version number (d2.o9 before d2.o10)."""
    ids = {org for org, _ in checked}
    codes = (
        {str(pk): code for pk, code in Organisation.objects.filter(pk__in=ids).values_list("pk", "code")} if ids else {}
    )
    entries = set(recorded) | {f"{codes.get(org, org)}: {version}" for org, version in checked}

    def order(entry: str) -> tuple:
        code, _, version = entry.rpartition(": ")
        return code, [int(n) for n in re.findall(r"\d+", version)]

    return sorted(entries, key=order)


def _recheck_patient(patient_id, now: datetime, cause: str, versions: set[tuple[str, str]]) -> list:
    lock_patient(patient_id)
    return patient_appointments_recheck(patient_id=patient_id, now=now, cause=cause, versions=versions)


def _step_failed(run_id) -> None:
    """Count a failed step at the run's place (the step's own transaction is gone); never hides why it failed."""
    try:
        with transaction.atomic():
            RecheckRun.objects.filter(pk=run_id, finished_at__isnull=True).update(failed_steps=F("failed_steps") + 1)
    except Exception:
        log.exception("re-check %s: the failed step could not be counted", run_id)


STALLED_AFTER = timedelta(minutes=2)


def recheck_runs_stalled(*, now: datetime) -> list:
    """Unfinished runs that have not moved for a while (or never started)."""
    return list(
        RecheckRun.objects.filter(finished_at__isnull=True)
        .filter(
            Q(progressed_at__lt=now - STALLED_AFTER) | Q(progressed_at__isnull=True, created_at__lt=now - STALLED_AFTER)
        )
        .values_list("id", flat=True)
    )
