"""Patients cancelling or moving their own appointment, from the signed link in their messages (portal/).

The same booking services the front desk uses, with the patient as the actor, so every rule, lock,
reminder and webhook applies; plus the clinic's own: nothing changes online once its cancellation window
(`Clinic.cancellation_window_hours` before the start) has begun or the patient has checked in, and no time a rule
warns about is offered or taken online (the desk weighs a warning with the patient before it books one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction

from clinic.models import Appointment, AppointmentStatus, AuditAction, Clinic
from core.errors import ErrorCode, InvalidTransition
from core.ids import parse_uuid
from core.timeutils import require_aware
from scheduler import rules, selectors
from scheduler.availability import Slot
from scheduler.booking import (
    BookingCheck,
    BookingResult,
    UnableToBook,
    appointment_cancel,
    appointment_reschedule,
    appointment_reschedule_check,
    appointment_slots,
    moved_since,
)
from scheduler.lifecycle import Actor, lock_appointment, lock_patient, refusal

# What a patient is told when their appointment's status rules a change out (the lifecycle's own
# messages are written for staff: "A completed appointment cannot be cancelled.").
_STATUS_REFUSAL = {
    AppointmentStatus.CANCELLED: "This appointment is already cancelled.",
    AppointmentStatus.COMPLETED: "This appointment has already taken place.",
    AppointmentStatus.NO_SHOW: "This appointment has already passed.",
}
DEFAULT_MOVE_DAYS = 28
DEFAULT_MOVE_LIMIT = 500  # a safety cap: 28 days of one practitioner's 15-minute grid is under 1000


def patient_actor(appointment: Appointment) -> Actor:
    """The patient, as the audit trail names them when they act through their own link."""
    return Actor(label=f"patient {appointment.patient_id}")


def change_deadline(appointment: Appointment) -> datetime:
    """Until when the patient may cancel or move the appointment online."""
    return appointment.start_at - timedelta(hours=appointment.clinic.cancellation_window_hours)


def _call_us(clinic: Clinic) -> str:
    if clinic.phone:
        return f"Please call {clinic.name} on {clinic.phone_national}."
    return f"Please contact {clinic.name}."


def _hours(clinic: Clinic) -> str:
    hours = clinic.cancellation_window_hours
    return f"{hours} hour" if hours == 1 else f"{hours} hours"


def _require_changeable(appointment: Appointment, now: datetime, *actions: str) -> None:
    """Refuse an action the status rules out (the lifecycle's table), then any inside the cancellation window."""
    for action in actions:
        code = refusal(appointment.status, action)
        if code is not None:
            raise InvalidTransition(
                code,
                _STATUS_REFUSAL.get(appointment.status)
                or f"This appointment cannot be changed online. {_call_us(appointment.clinic)}",
            )
    if appointment.checked_in_at is not None:  # the patient has arrived: the visit is under way, the desk's to change
        raise InvalidTransition(
            ErrorCode.OUTSIDE_CANCELLATION_WINDOW,
            f"You have checked in for this appointment, so it can no longer be cancelled or moved online. "
            f"{_call_us(appointment.clinic)}",
        )
    if appointment.start_at <= now:  # not yet marked completed, but its time has come
        raise InvalidTransition(
            ErrorCode.OUTSIDE_CANCELLATION_WINDOW,
            f"The time of this appointment has come, so it can no longer be changed online. "
            f"{_call_us(appointment.clinic)}",
        )
    if appointment.start_at - now < timedelta(hours=appointment.clinic.cancellation_window_hours):
        raise InvalidTransition(
            ErrorCode.OUTSIDE_CANCELLATION_WINDOW,
            f"Your appointment starts in less than {_hours(appointment.clinic)}, so it can no longer be "
            f"cancelled or moved online. {_call_us(appointment.clinic)}",
        )


def _require_far_enough(appointment: Appointment, start_at: datetime, now: datetime) -> None:
    """A new time inside the window is refused too: the clinic plans the coming hours itself."""
    if start_at - now < timedelta(hours=appointment.clinic.cancellation_window_hours):
        raise InvalidTransition(
            ErrorCode.OUTSIDE_CANCELLATION_WINDOW,
            f"That time is less than {_hours(appointment.clinic)} away, so it cannot be booked online. "
            f"Please choose a later time. {_call_us(appointment.clinic)}",
        )


class AdvisedAgainst(UnableToBook):
    """A time a rule warns about (Botox again within 12 weeks): the desk books one having weighed the warning with
    the patient; online no one would, so it is neither offered nor taken (409), and the patient is asked to call.
    The rule's own words are not shown: one measured from a medication course names the medicine."""

    def __init__(self, check: BookingCheck, clinic: Clinic) -> None:
        super().__init__(check)
        self.message = (
            "Sorry, that time cannot be booked online: the clinic would like to talk it through with you first. "
            f"Please choose another time, or call us. {_call_us(clinic)}"
        )
        self.args = (self.message,)


def _already_there(appointment: Appointment, start_at: datetime, practitioner_id) -> bool:
    """The visit is already where, and with whom, the move asks (scheduler.booking's own test, which answers it)."""
    asked = parse_uuid(practitioner_id) if practitioner_id else appointment.practitioner_id
    return start_at == appointment.start_at and asked == appointment.practitioner_id


def _require_unwarned(appointment: Appointment, check: BookingCheck, practitioner_id) -> None:
    """Refuse a time a rule warns about (AdvisedAgainst); a time refused outright is the caller's to refuse, and the
    visit's own time (the same move sent again) is not a move."""
    if check.eligible and check.warnings and not _already_there(appointment, check.start_at, practitioner_id):
        raise AdvisedAgainst(check, appointment.clinic)


def _locked(appointment: Appointment) -> Appointment:
    """The appointment re-read under the locks transition() takes, in the same order (patient first)."""
    lock_patient(appointment.patient_id)
    return lock_appointment(appointment.pk)


@dataclass(frozen=True)
class SelfService:
    """What the patient may do with their appointment now, and why not."""

    can_change: bool
    change_until: datetime
    refusal: InvalidTransition | None = None


def appointment_self_service(*, appointment: Appointment, now: datetime) -> SelfService:
    """Whether the patient may cancel or move `appointment` online now (for the page; the writes re-check)."""
    try:
        _require_changeable(appointment, now, AuditAction.CANCELLED, AuditAction.RESCHEDULED)
    except InvalidTransition as error:
        return SelfService(False, change_deadline(appointment), error)
    return SelfService(True, change_deadline(appointment))


def appointment_cancel_by_patient(
    *, appointment: Appointment, now: datetime, reason: str = "", drawn: tuple[datetime, str | None] | None = None
) -> Appointment:
    """Cancel on the patient's own request; refused inside the cancellation window. `drawn`: where the visit was,
    and with whom, on the page the patient pressed "cancel" on; if it has moved since (the clinic moved it, or the
    patient's own other tab), nothing is cancelled (412 `record_changed`, compared by `appointment_cancel` under its
    locks): the patient is shown the new time first."""
    with transaction.atomic():
        current = _locked(appointment)
        # Race condition: status and start time are checked only now that the rows are locked.
        _require_changeable(current, now, AuditAction.CANCELLED)
        return appointment_cancel(
            appointment=current, actor=patient_actor(current), now=now, reason=reason.strip(), drawn=drawn
        )


def patient_move_options(
    *, appointment: Appointment, now: datetime, days: int = DEFAULT_MOVE_DAYS, limit: int | None = DEFAULT_MOVE_LIMIT
) -> list[Slot]:
    """The times the patient may move to: every rule passes for them (none blocks, none warns), none inside the window.

    One option per start time, with the appointment's own practitioner when they are free then;
    the current time is not offered. The search covers `days` days from the earliest allowed start.
    """
    _require_changeable(appointment, now, AuditAction.RESCHEDULED)
    earliest = now + timedelta(hours=appointment.clinic.cancellation_window_hours)
    slots = appointment_slots(
        patient=appointment.patient,
        procedure_code=appointment.procedure_id,
        area_code=appointment.area_id,
        window_start=earliest,
        window_end=earliest + timedelta(days=days),
        now=now,
        ignore_appointment=appointment,
        clinic_id=appointment.clinic_id,  # a move stays at its clinic, as staff's does
    )
    own = str(appointment.practitioner_id)
    by_start: dict[datetime, Slot] = {}
    for slot in slots:
        if slot.start_at == appointment.start_at:
            continue
        kept = by_start.get(slot.start_at)
        if kept is None or (slot.practitioner_id == own and kept.practitioner_id != own):
            by_start[slot.start_at] = slot
    warned = _warned(appointment, list(by_start))
    options = sorted((slot for start, slot in by_start.items() if start not in warned), key=lambda slot: slot.start_at)
    return options if limit is None else options[:limit]


def _warned(appointment: Appointment, starts: list[datetime]) -> set[datetime]:
    """The starts a rule warns about for this patient's move (`appointment_slots` leaves out only those a rule
    refuses): the timeline and rule book read once, the rules weighed per start in memory, as a booking's check
    weighs them (the appointment itself left out)."""
    if not starts:
        return set()
    timeline = selectors.timeline_for_patient(appointment.patient_id)
    rulebook = selectors.rulebook_load(appointment.patient.organisation_id)
    ignore = frozenset({str(appointment.pk)})
    tz = appointment.clinic.tz
    return {
        start
        for start in starts
        if rules.evaluate(
            timeline, rulebook, rules.Proposal(appointment.procedure_id, start, appointment.area_id, ignore), tz
        ).warnings
    }


def patient_move_check(*, appointment: Appointment, start_at: datetime, practitioner_id, now: datetime) -> BookingCheck:
    """A dry run of the patient's move (for the confirm step): UnableToBook if it would be refused now (AdvisedAgainst
    for a time a rule warns about)."""
    start = require_aware(start_at, field="start")
    _require_changeable(appointment, now, AuditAction.RESCHEDULED)
    _require_far_enough(appointment, start, now)
    check = appointment_reschedule_check(
        appointment=appointment, start_at=start, now=now, practitioner_id=practitioner_id
    )
    if not check.eligible:
        raise UnableToBook(check)
    _require_unwarned(appointment, check, practitioner_id)
    return check


def appointment_reschedule_by_patient(
    *,
    appointment: Appointment,
    start_at: datetime,
    practitioner_id,
    now: datetime,
    drawn: tuple[datetime, str | None] | None = None,
) -> BookingResult:
    """Move on the patient's own request, through the same reschedule as staff use, as the patient. `drawn`: where
    the visit was on the page the patient confirmed from (refused, 412, if it has moved since, whoever moved it). A
    time a rule warns about is refused (AdvisedAgainst), weighed under the patient's lock, as the move is."""
    start = require_aware(start_at, field="start")
    with transaction.atomic():
        current = _locked(appointment)
        # Race condition: the window is checked against the start time as it is under the lock.
        _require_changeable(current, now, AuditAction.RESCHEDULED)
        _require_far_enough(current, start, now)
        if drawn is None or not moved_since(current, drawn):  # moved since: the reschedule refuses it (412) first
            check = appointment_reschedule_check(
                appointment=current, start_at=start, now=now, practitioner_id=practitioner_id
            )
            _require_unwarned(current, check, practitioner_id)
        return appointment_reschedule(
            appointment=current,
            start_at=start,
            practitioner_id=practitioner_id,
            actor=patient_actor(current),
            now=now,
            drawn=drawn,
        )
