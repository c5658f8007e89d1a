"""The appointment lifecycle: which action each status allows, and the one way a change is made.

`TRANSITIONS` is the table (status × action → the status it leads to, or the
error code that refuses it). `transition()` is the one helper every action goes
through: lock the patient, lock the appointment, consult the table, apply the
change, save, audit and notify the rooms above (reminders, webhooks) through
scheduler.notifications, all in one transaction. `EVENT_FOR_ACTION` is the one
list of events that webhooks, reminders and the audit trail read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.db.models.expressions import RawSQL

from clinic.models import Appointment, AppointmentStatus, AuditAction, AuditEvent, Patient
from clinic.services import appointment_version, live_patient, lock_live_patient, unchanged_since
from core.compiled import CompiledQuery, columns, insert_rows, instances
from core.errors import ErrorCode, InvalidTransition, NotFound
from core.ids import parse_uuid
from scheduler import notifications, versioned

Status = AppointmentStatus
Action = AuditAction

# Every action an existing appointment can take, per status. `None`: refused with the action's code.
# Booking is not here: it creates the appointment (pending clearance or confirmed) rather than moving one.
TRANSITIONS: dict[tuple[str, str], str | ErrorCode] = {}
_REFUSAL = {
    Action.RESCHEDULED: ErrorCode.NOT_RESCHEDULABLE,
    Action.CANCELLED: ErrorCode.NOT_CANCELLABLE,
    Action.CLEARED: ErrorCode.NOT_PENDING_CLEARANCE,
    Action.COMPLETED: ErrorCode.NOT_COMPLETABLE,
    Action.NO_SHOW: ErrorCode.NOT_NO_SHOW,
    Action.CHECKED_IN: ErrorCode.NOT_CHECKABLE_IN,
}
_ALLOWED = {
    # A reschedule re-checks the rules, so it may land in either active status.
    (Status.PENDING_CLEARANCE, Action.RESCHEDULED): Status.PENDING_CLEARANCE,
    (Status.CONFIRMED, Action.RESCHEDULED): Status.CONFIRMED,
    (Status.PENDING_CLEARANCE, Action.CANCELLED): Status.CANCELLED,
    (Status.CONFIRMED, Action.CANCELLED): Status.CANCELLED,
    (Status.PENDING_CLEARANCE, Action.CLEARED): Status.CONFIRMED,
    (Status.CONFIRMED, Action.COMPLETED): Status.COMPLETED,
    (Status.PENDING_CLEARANCE, Action.COMPLETED): ErrorCode.CLEARANCE_REQUIRED,
    (Status.PENDING_CLEARANCE, Action.NO_SHOW): Status.NO_SHOW,
    (Status.CONFIRMED, Action.NO_SHOW): Status.NO_SHOW,
    # Flagged after booking: it leaves needs_review only by being moved (re-checked) or cancelled, or by the record
    # being corrected (api-contract, v1 additions); never treated as it stands, nor closed as missed.
    (Status.NEEDS_REVIEW, Action.RESCHEDULED): Status.CONFIRMED,
    (Status.NEEDS_REVIEW, Action.CANCELLED): Status.CANCELLED,
    (Status.NEEDS_REVIEW, Action.COMPLETED): ErrorCode.REVIEW_REQUIRED,
    # Arriving changes no status: a booking still pending clearance or review is checked in and waits.
    (Status.CONFIRMED, Action.CHECKED_IN): Status.CONFIRMED,
    (Status.PENDING_CLEARANCE, Action.CHECKED_IN): Status.PENDING_CLEARANCE,
    (Status.NEEDS_REVIEW, Action.CHECKED_IN): Status.NEEDS_REVIEW,
}
for _status in Status:
    for _action in _REFUSAL:
        TRANSITIONS[(_status, _action)] = _ALLOWED.get((_status, _action), _REFUSAL[_action])

_VERB = {
    Action.RESCHEDULED: "moved",
    Action.CANCELLED: "cancelled",
    Action.COMPLETED: "completed",
    Action.NO_SHOW: "a no-show",
    Action.CHECKED_IN: "checked in",
}
_FIXED_MESSAGES = {
    ErrorCode.NOT_PENDING_CLEARANCE: "Only a booking pending clearance can be cleared.",
    ErrorCode.CLEARANCE_REQUIRED: "A clinician must clear this booking before treatment.",
    ErrorCode.REVIEW_REQUIRED: "A change to the patient's record means this booking now breaks a rule: "
    "move or cancel it first (see its review reasons).",
}

# The events the outside world hears of (webhooks), one per action.
EVENT_FOR_ACTION: dict[str, str] = {
    Action.BOOKED: "appointment.created",
    Action.RESCHEDULED: "appointment.rescheduled",
    Action.CANCELLED: "appointment.cancelled",
    Action.COMPLETED: "appointment.completed",
    Action.CLEARED: "appointment.cleared",
    Action.NO_SHOW: "appointment.no_show",
    Action.NEEDS_REVIEW: "appointment.needs_review",
    Action.CLEARANCE_REQUESTED: "appointment.clearance_requested",
    Action.RELEASED: "appointment.released",
    Action.CHECKED_IN: "appointment.checked_in",
    Action.PATIENT_MERGED: "appointment.patient_merged",
}
EVENTS: tuple[str, ...] = tuple(EVENT_FOR_ACTION.values())


@dataclass(frozen=True)
class Actor:
    """Who is acting: a staff user or an API client, and whether they hold the clinician's right."""

    label: str
    user: object | None = None
    clinical: bool = False


def refusal(status: str, action: str) -> ErrorCode | None:
    """The code that refuses `action` in `status`, or None when the table allows it."""
    outcome = TRANSITIONS[(status, action)]
    return outcome if isinstance(outcome, ErrorCode) else None


# Refusals whose words depend on the status, not only the code.
_STATUS_MESSAGES = {
    (Status.NEEDS_REVIEW, Action.NO_SHOW): "A booking that needs review leaves it only by being moved or cancelled "
    "(or by the patient's record being corrected): cancel it if the patient did not come.",
}


def require_allowed(appointment: Appointment, action: str) -> None:
    code = refusal(appointment.status, action)
    if code is not None:
        message = (
            _STATUS_MESSAGES.get((appointment.status, action))
            or _FIXED_MESSAGES.get(code)
            or (f"A {appointment.get_status_display().lower()} appointment cannot be {_VERB[action]}.")
        )
        raise InvalidTransition(code, message)


@dataclass
class Change:
    """What an action did, for the audit trail and the subscribers: set by the action's `apply`."""

    update_fields: list[str]
    reason: str = ""
    details: dict = field(default_factory=dict)
    previous: dict | None = None
    # How to write the row when a plain save will not do (a reschedule turns a lost slot race into a refusal).
    save: Callable[[Callable[[], None]], None] | None = None
    # Nothing to do: the appointment is already as asked (a move to the time, practitioner and status it has,
    # e.g. a form sent twice). Nothing is written, audited or announced.
    unchanged: bool = False


# The patient's lock and the configuration version in one statement (core.compiled), for a service call whose
# snapshot has not read the version yet (a booking, a reschedule): one round trip fewer. The statement's snapshot
# is taken before any wait for the row, so an edit committed during that wait is the next call's: the booking is
# taken as made before the edit (docs/rules.md, "Cache": a rule change's re-check run, which waits for older
# transactions, checks it again; a catalogue edit holds from the next call). A separate read after the lock would
# have seen the edit, at a statement more for every booking.
_LOCK_PATIENT_WITH_VERSION = CompiledQuery(
    lambda pk: (
        Patient.objects.select_for_update(of=("self",))
        .filter(pk=pk)
        .annotate(config_version=RawSQL(versioned.VERSION_SUBQUERY, ()))
        .values_list(*columns(Patient, "clinic"), "config_version")
    )
)


def lock_patient(patient_id) -> Patient:
    """Locked; a record merged away meanwhile is refused (a 400 `patient_merged`), so nothing is booked on it.
    Inside a snapshot that has not read the configuration version yet, the same statement reads it."""
    if not versioned.wants_version():
        return lock_live_patient(patient_id)
    pk = parse_uuid(patient_id)
    rows = _LOCK_PATIENT_WITH_VERSION.rows(pk) if pk else []
    if rows:
        versioned.offer(rows[0][-1])
    return live_patient(instances([row[:-1] for row in rows], Patient, "clinic"))


def lock_appointment(appointment_id) -> Appointment:
    pk = parse_uuid(appointment_id)
    appointment = (
        Appointment.objects.select_for_update(of=("self",)).select_related("clinic").filter(pk=pk).first()
        if pk
        else None
    )
    if appointment is None:
        raise NotFound(ErrorCode.UNKNOWN_APPOINTMENT, "There is no such appointment.")
    return appointment


def record(
    appointment: Appointment,
    action: str,
    actor: Actor,
    now: datetime,
    *,
    reason: str = "",
    details: dict | None = None,
    previous: dict | None = None,
) -> None:
    """Audit the change and tell the subscribers, inside the caller's transaction."""
    event = AuditEvent(
        appointment=appointment,
        action=action,
        at=now,
        actor_user=actor.user if actor.user else None,
        actor_label=actor.label,
        reason=reason,
        details=details or {},
    )
    insert_rows([event])  # its INSERT's SQL kept (core.compiled): every booking and change writes one
    notifications.appointment_changed(appointment=appointment, change=action, now=now, previous=previous)


def appointments_merged(*, appointment_ids, merged, into, now: datetime, actor_label: str, actor_user) -> None:
    """A merge moved these active appointments from `merged` to the survivor `into` (clinic.merging, in its
    transaction): each is audited and announced (`appointment.patient_merged`, `previous.patient` the old record),
    in start order, before the joined record is re-checked (whose moves come after, as later events)."""
    actor = Actor(label=actor_label, user=actor_user)
    details = {"merged": str(merged.pk), "into": str(into.pk)}
    for appointment in (
        Appointment.objects.filter(pk__in=appointment_ids).select_related("clinic").order_by("start_at", "pk")
    ):
        record(appointment, Action.PATIENT_MERGED, actor, now, details=details, previous={"patient": merged.pk})


# What a change to one appointment means for the patient's others: a booking cancelled, moved or missed may free the
# bookings it flagged (too soon after it). scheduler.recheck subscribes (SchedulerConfig.ready), so that the writes
# (booking.py), which the re-check reads the rules through, never import it.
_freed_subscribers: list[Callable[..., object]] = []


def subscribe_freed(subscriber: Callable[..., object]) -> None:
    """Call `subscriber(appointment=, now=, what=)` when an appointment is cancelled, moved or missed (once, however
    often registered), under the patient's lock, in the change's transaction."""
    if subscriber not in _freed_subscribers:
        _freed_subscribers.append(subscriber)


def appointment_freed(*, appointment: Appointment, now: datetime, what: str) -> None:
    """`appointment` was cancelled, moved or missed (`what`): the patient's other bookings it flagged may be free."""
    for subscriber in _freed_subscribers:
        subscriber(appointment=appointment, now=now, what=what)


def transition(
    *,
    appointment: Appointment,
    action: str,
    actor: Actor,
    now: datetime,
    apply: Callable[[Appointment, Patient], Change],
    after: Callable[[Appointment], object] | None = None,
    made_from: Iterable[str] | None = None,
) -> Appointment:
    """Lock, check the table, apply, save, audit, notify: the one path for an existing appointment.

    `apply(current, patient)` runs with both rows locked and the table's consent; it sets the
    fields (and may refuse with a domain error, which rolls everything back). `after(current)` runs once the
    change is recorded, still under the patient's lock (what the change means for the patient's other
    appointments).
    """
    with transaction.atomic():
        patient = lock_patient(appointment.patient_id)
        current = lock_appointment(appointment.pk)
        # Race condition: the status is checked only now that the row is locked.
        require_allowed(current, action)
        # What an API caller's If-Match accepts (`made_from`): the appointment as it is now must be one of them
        # (clinic.services.appointment_version), or nothing changes (412 record_changed). Every status change passes
        # its caller's here; a move compares in its own `apply` instead (its 400s first: booking.appointment_reschedule).
        unchanged_since(
            lambda: appointment_version(current),
            made_from,
            "This appointment changed since it was read (the ETag If-Match names): nothing changed. Read it again.",
        )
        change = apply(current, patient)
        if change.unchanged:
            return current

        def write() -> None:
            current.save(update_fields=[*change.update_fields, "updated_at"])

        if change.save is not None:
            change.save(write)
        else:
            write()
        record(current, action, actor, now, reason=change.reason, details=change.details, previous=change.previous)
        if after is not None:
            after(current)
    return current
