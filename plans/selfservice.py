"""A course's session moved by the patient on their own page (docs/portal.md, "A course's session").

The scheduler's self-service (scheduler/selfservice.py) knows nothing of plans; this adds the course's rule on top
of it: online, a plan's session moves only to the local days `plans.selectors.session_move_bounds` gives (its window
as the course stands, at least the course's minimum gap from its neighbours' bookings). The desk and the API are not
held to it: they see the rules' warnings and may re-plan. Each function takes the bounds the caller read once (None:
no plan's session).
"""

from __future__ import annotations

from datetime import date, datetime

from django.db import transaction

from clinic.models import Appointment
from plans.selectors import SessionMoveBounds, session_move_bounds
from scheduler.availability import Slot
from scheduler.booking import MAX_AVAILABILITY_DAYS, BookingResult
from scheduler.lifecycle import lock_patient
from scheduler.selfservice import (
    DEFAULT_MOVE_DAYS,
    DEFAULT_MOVE_LIMIT,
    appointment_reschedule_by_patient,
    patient_move_options,
)


def course_session_move_allowed(
    *, appointment: Appointment, bounds: SessionMoveBounds | None, start_at: datetime
) -> bool:
    """Whether the course lets the patient move `appointment` to `start_at` online: its local day (in the clinic's
    zone) is within `bounds`, both ends allowed. Any time is, for an appointment of no plan (`bounds` None); the
    scheduler's own checks (rules, window, free time) still apply to every move."""
    return bounds is None or bounds.first_day <= start_at.astimezone(appointment.clinic.tz).date() <= bounds.last_day


def course_session_move_options(
    *, appointment: Appointment, bounds: SessionMoveBounds | None, now: datetime
) -> list[Slot]:
    """The times the patient is offered for moving `appointment` (`patient_move_options`, whose refusal,
    InvalidTransition, passes through).

    An appointment of no plan gets the scheduler's usual offer. A course's session keeps only its own days, which may
    begin weeks from now: the search then reaches its last day, but no further than four weeks of it (nor than one
    search may ask), and keeps at most as many times as for any appointment."""
    if bounds is None:
        return patient_move_options(appointment=appointment, now=now)
    today = now.astimezone(appointment.clinic.tz).date()
    reach = (bounds.last_day - today).days + 1
    opens = max(bounds.first_day, today)  # a window opened days ago is searched from today
    days = max(1, min(reach, (opens - today).days + DEFAULT_MOVE_DAYS, MAX_AVAILABILITY_DAYS))
    options = patient_move_options(appointment=appointment, now=now, days=days, limit=None)
    allowed = [
        slot
        for slot in options
        if course_session_move_allowed(appointment=appointment, bounds=bounds, start_at=slot.start_at)
    ]
    return allowed[:DEFAULT_MOVE_LIMIT]


def _long_date(day: date) -> str:
    return f"{day:%A} {day.day} {day:%B %Y}"


def course_session_move_text(*, appointment: Appointment, bounds: SessionMoveBounds, now: datetime) -> str:
    """Where the course lets its session go online, in the patient's words: the move page's note, and the refusal of
    a time outside (docs/portal.md, "A course's session"). The days named start today at the earliest (the clinic's
    today): a window that opened in the past is told from today, one that has closed, or that the sessions around it
    leave no day, is told to call."""
    clinic = appointment.clinic
    call = (
        f"please call {clinic.name} on {clinic.phone_national}." if clinic.phone else f"please contact {clinic.name}."
    )
    first_day = max(bounds.first_day, now.astimezone(clinic.tz).date())
    if first_day > bounds.last_day:  # no day of its window is left to move it to
        return f"This is session {bounds.index} of your course: online it cannot be moved. To move it, {call}"
    if first_day == bounds.last_day:
        return (
            f"This is session {bounds.index} of your course: online it can be moved only within "
            f"{_long_date(first_day)}. To move it to another day, {call}"
        )
    return (
        f"This is session {bounds.index} of your course: online it can be moved between "
        f"{_long_date(first_day)} and {_long_date(bounds.last_day)}. To move it further, {call}"
    )


class CourseMoveRefused(Exception):
    """A course's session asked online for a day its course does not allow; `message` is
    `course_session_move_text`'s, the patient's words (the page answers 409)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def course_session_move(
    *,
    appointment: Appointment,
    start_at: datetime,
    practitioner_id,
    now: datetime,
    drawn: tuple[datetime, str | None] | None = None,
) -> BookingResult:
    """Move `appointment` on the patient's own request (`appointment_reschedule_by_patient`, `drawn` passed on: where
    the patient's page showed it), held to its course's days when it is a plan's session. The days are read under the
    patient's lock, in the move's transaction.

    # Race condition: two tabs moving neighbouring sessions of one course (session 2 later, session 3 earlier) would
    each check against the other's booking as it was and could cross, or break the course's gap. The first to take
    the patient's lock moves; the second reads the days once it has moved."""
    with transaction.atomic():
        lock_patient(appointment.patient_id)
        bounds = session_move_bounds(appointment)
        if not course_session_move_allowed(appointment=appointment, bounds=bounds, start_at=start_at):
            raise CourseMoveRefused(course_session_move_text(appointment=appointment, bounds=bounds, now=now))
        return appointment_reschedule_by_patient(
            appointment=appointment, start_at=start_at, practitioner_id=practitioner_id, now=now, drawn=drawn
        )
