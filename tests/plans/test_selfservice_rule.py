"""The course's rule for a patient moving a session online (plans/selfservice.py), called as a service, and the shape
checks of the desk's merge-warning check form (frontdesk.forms.MergeWarningCheckForm) on bad input.

The course: the shipped microneedling course (4 / 4 / 6 weeks) booked from Monday 9 March 2026 at the London clinic,
sessions on 9 March, 6 April and 4 May at 09:00 (session 2's window 6-20 April), with the suite's clock (Monday
2 March 2026, 09:00 London). The pure parts (the day check, the patient's sentence) use a stand-in appointment.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from clinic.models import Appointment, AppointmentStatus
from frontdesk.forms import MergeWarningCheckForm
from plans.models import PlanTemplate
from plans.selectors import SessionMoveBounds, session_move_bounds
from plans.selfservice import course_session_move_allowed, course_session_move_options, course_session_move_text
from plans.services import plan_book
from scheduler.booking import Actor, appointment_book, appointment_reschedule
from scheduler.selfservice import DEFAULT_MOVE_LIMIT, patient_move_options

LONDON = ZoneInfo("Europe/London")
RECEPTION = Actor("reception@test")
APRIL = SessionMoveBounds(2, date(2026, 4, 6), date(2026, 4, 20))
BEFORE_APRIL = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def stand_in(phone: str = "") -> SimpleNamespace:
    """An appointment as the pure parts read it: its clinic's zone, name and number."""
    clinic = SimpleNamespace(tz=LONDON, name="Bloom Clinic", phone=phone, phone_national="020 7946 0958")
    return SimpleNamespace(clinic=clinic)


# --- Whether a start is within the course's days ---------------------------------------------------------------


def test_no_plan_holds_a_time_to_nothing():
    assert course_session_move_allowed(appointment=stand_in(), bounds=None, start_at=datetime(2030, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("start_at", "allowed"),
    [
        (datetime(2026, 4, 5, 22, 59, tzinfo=UTC), False),  # 23:59 BST on 5 April, the day before
        (datetime(2026, 4, 5, 23, 0, tzinfo=UTC), True),  # midnight BST on 6 April, the first day
        (datetime(2026, 4, 20, 22, 59, tzinfo=UTC), True),  # 23:59 BST on 20 April, the last day
        (datetime(2026, 4, 20, 23, 30, tzinfo=UTC), False),  # 00:30 BST on 21 April: UTC's date would say the 20th
    ],
    ids=["day before", "first day", "last day", "after, by the local day"],
)
def test_a_start_is_allowed_by_its_local_day_both_ends_included(start_at, allowed):
    assert course_session_move_allowed(appointment=stand_in(), bounds=APRIL, start_at=start_at) is allowed


# --- What the patient is told ----------------------------------------------------------------------------------


def test_the_text_names_the_session_its_days_and_the_clinics_number():
    told = course_session_move_text(appointment=stand_in(phone="+442079460958"), bounds=APRIL, now=BEFORE_APRIL)
    assert told == (
        "This is session 2 of your course: online it can be moved between Monday 6 April 2026 and Monday 20 April "
        "2026. To move it further, please call Bloom Clinic on 020 7946 0958."
    )


def test_a_session_left_no_day_is_told_to_get_in_touch():
    no_day = SessionMoveBounds(2, date(2026, 4, 7), date(2026, 4, 6))
    told = course_session_move_text(appointment=stand_in(), bounds=no_day, now=BEFORE_APRIL)
    assert (
        told == "This is session 2 of your course: online it cannot be moved. To move it, please contact Bloom Clinic."
    )


@pytest.mark.parametrize(
    ("now", "told"),
    [
        # 00:30 BST on 10 April: the clinic's today is the 10th (UTC's date is the 9th)
        (
            datetime(2026, 4, 9, 23, 30, tzinfo=UTC),
            "online it can be moved between Friday 10 April 2026 and Monday 20 April 2026. To move it further,",
        ),
        (datetime(2026, 4, 20, 8, 0, tzinfo=UTC), "online it can be moved only within Monday 20 April 2026. To move"),
        (datetime(2026, 4, 20, 23, 30, tzinfo=UTC), "online it cannot be moved. To move it, please contact"),
    ],
    ids=["window opened in the past", "its last day", "closed, by the local day"],
)
def test_the_days_named_start_at_the_clinics_today(now, told):
    """A window that opened days ago is not offered from a day gone by (the times offered start now anyway)."""
    assert told in course_session_move_text(appointment=stand_in(), bounds=APRIL, now=now)


# --- The times offered -------------------------------------------------------------------------------------------


@pytest.fixture
def sessions(templates, patient, practitioner, clinic, now) -> list:
    plan = plan_book(
        patient=patient,
        clinic=clinic,
        template=PlanTemplate.objects.get(code="microneedling-course", organisation=None),
        start_at=datetime(2026, 3, 9, tzinfo=LONDON),
        actor=RECEPTION,
        now=now,
        practitioner_id=practitioner.pk,
    )
    return [row.appointment for row in plan.sessions.select_related("appointment").order_by("index")]


def local_days(slots) -> list[date]:
    return sorted({slot.start_at.astimezone(LONDON).date() for slot in slots})


def test_a_later_session_is_offered_its_own_days_beyond_the_usual_four_weeks(sessions, now):
    """Changed 6 December (online a session keeps the course's minimum gap to its neighbours' bookings): with session 3
    four weeks after it, session 2 keeps its own day online; the desk moves session 3 to 18 May (the last day of its
    window), and session 2 may use its whole window again, weeks beyond the usual four."""
    second, third = sessions[1], sessions[2]
    assert session_move_bounds(second) == SessionMoveBounds(2, date(2026, 4, 6), date(2026, 4, 6))
    appointment_reschedule(
        appointment=third, start_at=datetime(2026, 5, 18, 9, tzinfo=LONDON), actor=RECEPTION, now=now
    )
    bounds = session_move_bounds(second)
    assert bounds == APRIL

    offered = course_session_move_options(appointment=second, bounds=bounds, now=now)

    days = local_days(offered)
    assert days[0] == date(2026, 4, 6) and days[-1] == date(2026, 4, 20), days
    # The scheduler's usual offer stops four weeks after tomorrow, before the session's window begins.
    assert not {date(2026, 4, 6), date(2026, 4, 20)} & set(
        local_days(patient_move_options(appointment=second, now=now))
    )


def test_the_first_session_keeps_to_its_days_and_the_cap(sessions, now):
    """Changed 6 December (online a session keeps the course's gaps to its neighbours' bookings): with session 2
    four weeks after it, session 1 keeps its own day online; the desk (not bound) moves session 3 to 1 June and
    session 2 to 4 May, which leaves session 1 23 March (six weeks, the maximum, before session 2) to 6 April (four,
    the minimum): every quarter hour of those days is offered, under the cap."""
    first, second, third = sessions
    assert session_move_bounds(first) == SessionMoveBounds(1, date(2026, 3, 9), date(2026, 3, 9))
    appointment_reschedule(appointment=third, start_at=datetime(2026, 6, 1, 9, tzinfo=LONDON), actor=RECEPTION, now=now)
    appointment_reschedule(
        appointment=second, start_at=datetime(2026, 5, 4, 9, tzinfo=LONDON), actor=RECEPTION, now=now
    )
    bounds = session_move_bounds(first)
    assert bounds == SessionMoveBounds(1, date(2026, 3, 23), date(2026, 4, 6))

    offered = course_session_move_options(appointment=first, bounds=bounds, now=now)

    assert len(offered) <= DEFAULT_MOVE_LIMIT
    assert local_days(offered)[0] == bounds.first_day and local_days(offered)[-1] == bounds.last_day
    assert all(bounds.first_day <= day <= bounds.last_day for day in local_days(offered))
    assert [slot.start_at for slot in offered] == sorted(slot.start_at for slot in offered)


def test_an_appointment_of_no_plan_is_offered_what_the_scheduler_offers(patient, practitioner, now):
    appointment = appointment_book(
        patient=patient,
        procedure_code="microneedling",
        start_at=datetime(2026, 3, 10, 10, tzinfo=LONDON),
        actor=RECEPTION,
        now=now,
    ).appointment
    assert session_move_bounds(appointment) is None

    offered = course_session_move_options(appointment=appointment, bounds=None, now=now)

    assert offered and offered == patient_move_options(appointment=appointment, now=now)


# --- The merge-warning check form's bad input ------------------------------------------------------------------

MERGE, BOOKING = (
    "6f1c2a52-0b7e-4c1e-9d3a-2f4b8e7c9a10",
    "0d9e8f7a-6b5c-4d3e-8f2a-1b0c9d8e7f6a",
)  # fixed: xdist collects alike
SAY_WHICH = "Say which warning was checked, as it was shown."


def check_form(**changed) -> MergeWarningCheckForm:
    return MergeWarningCheckForm({"merge": MERGE, "appointment": BOOKING, "message": "Botox again ...", **changed})


def test_well_formed_input_is_taken_as_sent():
    form = check_form(note="  both intended  ", message="Two lines,\r\nas the browser sends them")
    assert form.is_valid(), form.errors
    assert form.cleaned_data == {
        "merge": uuid.UUID(MERGE),
        "appointment": uuid.UUID(BOOKING),
        "message": "Two lines,\nas the browser sends them",  # as the page drew it
        "note": "both intended",
    }


@pytest.mark.parametrize("field", ["merge", "appointment"])
@pytest.mark.parametrize("bad", ["", "not-a-uuid", "123", "\x00", MERGE + "0"])
def test_a_malformed_id_is_no_such_warning(field, bad):
    form = check_form(**{field: bad})
    assert not form.is_valid()
    assert form.bad_id and form.error_texts() == []  # the view's 404, no message of the note's kind


@pytest.mark.parametrize(
    ("changed", "texts"),
    [
        ({"note": "x" * 501}, ["Keep the note to 500 characters or fewer."]),
        ({"note": "fine\x00"}, ["Remove the NUL character from the note."]),
        ({"message": ""}, [SAY_WHICH]),
        ({"message": " \r\n\t"}, [SAY_WHICH]),
        ({"message": "y" * 2001}, [SAY_WHICH]),
        ({"message": "words\x00"}, [SAY_WHICH]),
        ({"message": "", "note": "x" * 501}, [SAY_WHICH, "Keep the note to 500 characters or fewer."]),
    ],
    ids=[
        "note too long",
        "NUL in the note",
        "no message",
        "blank message",
        "message too long",
        "NUL in message",
        "both",
    ],
)
def test_a_malformed_message_or_note_says_what_is_wrong(changed, texts):
    form = check_form(**changed)
    assert not form.is_valid()
    assert not form.bad_id and form.error_texts() == texts


def test_lengths_are_measured_as_the_service_measures_them():
    """The note after trimming, the message after CR LF became LF (as clinic.merging.merge_warning_check does)."""
    padded = check_form(note="  " + "x" * 500 + "  ")
    assert padded.is_valid() and len(padded.cleaned_data["note"]) == 500
    long_lines = check_form(message="ab\r\n" * 600)  # 2400 characters sent, 1800 as drawn
    assert long_lines.is_valid(), long_lines.errors
    assert long_lines.cleaned_data["message"] == "ab\n" * 600
    too_long = check_form(message="abcd\r\n" * 401)  # 2406 sent, 2005 as drawn
    assert too_long.error_texts() == [SAY_WHICH]


def test_a_window_that_opened_weeks_ago_is_searched_from_today_to_its_end(sessions, now):
    """Review (6 December): the search's length was counted from the window's first day even when that was long past,
    so a window opened 27 days or more ago was searched for one day. From today, to its last day. (Session 1 is
    cancelled first: the made-up window lies within the four weeks after it that the repeat rule warns about, and
    a patient is offered online only times no rule warns about.)"""
    Appointment.objects.filter(pk=sessions[0].pk).update(status=AppointmentStatus.CANCELLED)
    today = now.astimezone(LONDON).date()
    bounds = SessionMoveBounds(2, today - timedelta(days=30), today + timedelta(days=12))  # a Saturday, worked
    offered = course_session_move_options(appointment=sessions[1], bounds=bounds, now=now)
    days = local_days(offered)
    assert days[0] <= today + timedelta(days=1) and days[-1] == bounds.last_day, days  # (not within 24 hours)
