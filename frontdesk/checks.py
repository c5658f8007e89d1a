"""The live booking panel: is this allowed, why not, from when, and which slots.

Booking and moving are one request type, `SlotRequest` (for a move it names
the appointment), asked of scheduler.booking through one path: `panel` for
the check, `SlotRequest.submit` for the write. The verdict is always
scheduler.booking's `BookingCheck`, wrapped for the templates and never
re-derived here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.conf import settings

from clinic.models import Appointment, Patient
from scheduler import rules
from scheduler.availability import Slot
from scheduler.booking import (
    MAX_AVAILABILITY_DAYS,
    Actor,
    BookingCheck,
    BookingResult,
    appointment_book,
    appointment_check,
    appointment_recheck,
    appointment_reschedule,
    appointment_reschedule_check,
    appointment_slots,
)

SLOT_COUNT = 6


@dataclass(frozen=True)
class SlotRequest:
    """What the desk asks for: `procedure` for `patient`, or, with `appointment`, moving that appointment."""

    patient: Patient
    procedure_code: str
    area_code: str | None = None
    practitioner_id: str | None = None
    appointment: Appointment | None = None
    clinic_id: object = None  # where a new booking takes place: the desk's clinic (None: the patient's home)

    @classmethod
    def booking(
        cls,
        *,
        patient: Patient,
        procedure_code: str,
        area_code: str | None = None,
        practitioner_id: str | None = None,
        clinic_id=None,
    ) -> SlotRequest:
        return cls(patient, procedure_code, area_code or None, practitioner_id or None, clinic_id=clinic_id)

    @classmethod
    def move(cls, *, appointment: Appointment, practitioner_id: str | None = None) -> SlotRequest:
        # No practitioner named keeps the current one, as the service does.
        return cls(
            appointment.patient,
            appointment.procedure_id,
            appointment.area_id,
            practitioner_id or str(appointment.practitioner_id),
            appointment,
        )

    @property
    def is_move(self) -> bool:
        return self.appointment is not None

    def check(self, *, start_at: datetime, now: datetime) -> BookingCheck:
        if self.appointment is not None:
            return appointment_reschedule_check(
                appointment=self.appointment, start_at=start_at, now=now, practitioner_id=self.practitioner_id
            )
        return appointment_check(
            patient=self.patient,
            procedure_code=self.procedure_code,
            start_at=start_at,
            now=now,
            area_code=self.area_code,
            practitioner_id=self.practitioner_id,
            clinic_id=self.clinic_id,
        )

    def submit(self, *, start_at: datetime, actor: Actor, now: datetime, reason: str = "", drawn=None) -> BookingResult:
        """Book, or move (`drawn`: where the visit was when the page was drawn; the service refuses the move with
        PreconditionFailed if someone has moved it since)."""
        if self.appointment is not None:
            return appointment_reschedule(
                appointment=self.appointment,
                start_at=start_at,
                actor=actor,
                now=now,
                practitioner_id=self.practitioner_id,
                reason=reason,
                drawn=drawn,
            )
        return appointment_book(
            patient=self.patient,
            procedure_code=self.procedure_code,
            start_at=start_at,
            actor=actor,
            now=now,
            area_code=self.area_code,
            practitioner_id=self.practitioner_id,
            clinic_id=self.clinic_id,
        )

    def slots(self, *, anchor: datetime | None, now: datetime) -> list[Slot]:
        """The first free, eligible times from `anchor` on: one per time (the first practitioner free at it)."""
        if anchor is None:
            return []
        days = min(settings.BOOKING_SEARCH_DAYS, MAX_AVAILABILITY_DAYS)
        found = appointment_slots(
            patient=self.patient,
            procedure_code=self.procedure_code,
            window_start=anchor,
            window_end=anchor + timedelta(days=days),
            now=now,
            area_code=self.area_code,
            practitioner_id=self.practitioner_id,
            limit=SLOT_COUNT * 4,
            ignore_appointment=self.appointment,
            clinic_id=self.clinic_id if self.appointment is None else self.appointment.clinic_id,
        )
        distinct: dict[datetime, Slot] = {}
        for slot in found:
            # A move is not offered the time it already has.
            if self.appointment is None or slot.start_at != self.appointment.start_at:
                distinct.setdefault(slot.start_at, slot)
        return list(distinct.values())[:SLOT_COUNT]


@dataclass(frozen=True)
class Panel:
    """What the check panel shows: scheduler.booking's verdict on one start, and the times to offer.

    Without an exact time the start checked is the first minute from the day (or
    now) on, and the calendar is left out of the verdict: "nobody works at 21:07"
    is noise when no time was asked for, and the slots offered are free by
    construction.
    """

    check: BookingCheck
    exact: bool  # an exact time was asked for
    from_day: bool = False  # no exact time, but a day to start from
    slots: list[Slot] = field(default_factory=list)

    @property
    def checked_at(self) -> datetime:
        return self.check.start_at

    @property
    def outcome(self) -> rules.Outcome:
        return self.check.outcome

    @property
    def allowed(self) -> bool:
        return self.check.eligible

    @property
    def blocking(self) -> tuple[rules.Violation, ...]:
        return self.check.blocking

    @property
    def needs_clearance(self) -> tuple[rules.Violation, ...]:
        return self.check.needs_clearance  # a move keeps the clearance given: those rules do not ask again

    @property
    def kept_clearance(self) -> tuple[rules.Violation, ...]:
        return self.check.kept_clearance

    @property
    def warnings(self) -> tuple[rules.Violation, ...]:
        return self.check.warnings

    @property
    def earliest(self) -> datetime | None:
        return self.check.earliest_eligible_start

    @property
    def rules_allow(self) -> bool:
        """The interval rules and contraindications allow this start (the calendar may still not)."""
        return self.check.evaluation.eligible

    @property
    def no_date_possible(self) -> bool:
        return not self.rules_allow and self.earliest is None

    @property
    def slots_need_clearance(self) -> bool:
        # A condition stands at any date, so every slot offered would be held too.
        return any(v.conflicts_with is not None and v.conflicts_with.kind == "condition" for v in self.needs_clearance)


def panel(
    want: SlotRequest, *, now: datetime, start: datetime | None = None, day_start: datetime | None = None
) -> Panel:
    """Check the exact start if there is one, else the first moment from the day (or now) on."""
    exact = start is not None
    probe = start if exact else max(rules.ceil_minute(now), day_start or now)
    check = want.check(start_at=probe, now=now)
    if not exact:
        check = replace(check, availability=())
    # Offer slots from the earliest start the rules allow; when the exact time is fine, the next ones after it.
    anchor = check.earliest_eligible_start
    if exact and check.eligible:
        anchor = probe + timedelta(minutes=settings.BOOKING_SLOT_STEP_MINUTES)
    return Panel(
        check=check, exact=exact, from_day=day_start is not None and not exact, slots=want.slots(anchor=anchor, now=now)
    )


def rules_only(*, evaluation: rules.Evaluation, duration: timedelta, tz) -> BookingCheck:
    """A verdict on the rules alone (no practitioner, no calendar), as the patient's outlook shows it."""
    start = evaluation.proposal.start_at
    return BookingCheck(evaluation, (), None, start, start + duration, tz)


def clearance_reasons(appointment: Appointment, check: BookingCheck | None = None) -> list[rules.Violation]:
    """What a clinician is asked to clear: the relative contraindications (and any new block) standing now (`check`:
    the appointment's `appointment_recheck`, when the caller has it)."""
    check = check if check is not None else appointment_recheck(appointment=appointment)
    return list(check.evaluation.needs_clearance) + list(check.evaluation.blocking)


def standing_warnings(appointment: Appointment, check: BookingCheck | None = None) -> list[rules.Violation]:
    """The warn-level rules a booking still to come breaks as the patient's record stands now. A warning never
    blocks nor changes a booking's status, so one a record change brings after the booking (a course or a treatment
    entered since, history imported) is shown on the visit, for whoever treats the patient to weigh, as the
    booking's own answer showed those standing then to whoever booked it."""
    check = check if check is not None else appointment_recheck(appointment=appointment)
    return list(check.warnings)


@dataclass(frozen=True)
class StoredReason:
    """A reason a booking was flagged with, as stored with it (scheduler.recheck): shown like a violation."""

    severity: str
    message: str
    source: str = ""
    conflicts_with: None = None


def review_reasons(appointment: Appointment, check: BookingCheck | None = None) -> list[rules.Violation | StoredReason]:
    """Why a booking needs review: the block rules and absolute contraindications it breaks now (a record change
    re-checks it in the change's own transaction, so these are the reasons it was flagged with, as they stand); the
    reasons stored when it was flagged where the check now finds none (a started visit is not re-checked: a record
    corrected after its start leaves it flagged)."""
    live = list((check if check is not None else appointment_recheck(appointment=appointment)).evaluation.blocking)
    if live:
        return live
    return [
        StoredReason(str(reason.get("severity", "")), str(reason.get("message", "")), str(reason.get("source") or ""))
        for reason in appointment.review_reasons or []
    ]
