"""A course's session on the patient's own page (docs/portal.md, "A course's session"): online it moves only within
its window as the course stands and at least the course's minimum gap from its neighbours' bookings (decided
6 December; `plans.selectors.session_move_bounds`): the times
offered leave out the other days, a time outside is refused in the patient's words and changes nothing, the staff
are not held to it, and an appointment of no plan is offered and moved as before.

The clock is frozen at Monday 2 March 2026, 09:00 London. The microneedling course (4 / 4 / 6 weeks) is planned from
Monday 9 March: sessions on 9 March, 6 April and 4 May at 09:00 (session 2's window 6-20 April, session 3's 4-18 May).
"""

import re
from datetime import UTC, date, datetime

import pytest
from django.test import Client

from clinic.models import Appointment, AuditAction, AuditEvent
from plans.defaults import plan_templates_load
from plans.models import PlanSession, PlanTemplate
from plans.selectors import plan_sessions, session_move_bounds
from plans.services import plan_book
from scheduler.booking import appointment_reschedule
from scheduler.selfservice import patient_move_options
from tests.portal.conftest import LONDON, RECEPTION, london, page_url
from tests.races import race

pytestmark = pytest.mark.usefixtures("frozen")

CALL = "please call Bloom Clinic on 020 7946 0958."


@pytest.fixture
def sessions(patient, practitioner, clinic, now) -> list:
    """The course's three appointments, in order."""
    plan_templates_load()
    plan = plan_book(
        patient=patient,
        clinic=clinic,
        template=PlanTemplate.objects.get(code="microneedling-course", organisation=None),
        start_at=london(2026, 3, 9, 0),
        actor=RECEPTION,
        now=now,
        practitioner_id=practitioner.pk,
    )
    found = [row.appointment for row in plan.sessions.select_related("appointment").order_by("index")]
    assert [a.start_at for a in found] == [london(2026, 3, 9, 9), london(2026, 4, 6, 9), london(2026, 5, 4, 9)]
    return found


def text(response) -> str:
    """The page's words, without tags, with runs of whitespace made one space."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", response.content.decode(), flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)).strip()


def fresh(appointment) -> Appointment:
    return Appointment.objects.get(pk=appointment.pk)


def key(appointment, at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y%m%dT%H%MZ}_{appointment.practitioner_id}"


def offered_days(response) -> list[date]:
    """The local days of the times the move page offers."""
    stamps = re.findall(r'name="slot" value="(\d{8}T\d{4}Z)_', response.content.decode())
    days = {datetime.strptime(s, "%Y%m%dT%H%MZ").replace(tzinfo=UTC).astimezone(LONDON).date() for s in stamps}
    return sorted(days)


def move(appointment, at: datetime):
    return Client().post(page_url(appointment, "move_confirm"), {"slot": key(appointment, at)})


def between(index: int, first: str, last: str) -> str:
    return (
        f"This is session {index} of your course: online it can be moved between {first} and {last}. "
        f"To move it further, {CALL}"
    )


def spread(sessions, now) -> None:
    """The desk (not bound) moves session 3 to Monday 18 May, the last day of its window: session 2 may then use its
    whole window online (6-20 April, at least four weeks before session 3)."""
    appointment_reschedule(appointment=sessions[2], start_at=london(2026, 5, 18, 9), actor=RECEPTION, now=now)


def assert_refused(response, appointment, told: str) -> None:
    """Refused with the move page and the patient's words; the booking is where it was, nothing recorded."""
    assert response.status_code == 409
    assert told in text(response) and "Choose a new time" in text(response)
    assert fresh(appointment).start_at == appointment.start_at
    assert not AuditEvent.objects.filter(appointment=appointment, action=AuditAction.RESCHEDULED).exists()


def test_the_times_offered_are_the_sessions_own_days_only(client, sessions, now):
    """Changed 6 December (online a session keeps the course's minimum gap to its neighbours' bookings): session 3 is
    moved to 18 May at the desk first (`spread`), else session 2 could not leave its own day."""
    second = sessions[1]
    spread(sessions, now)

    response = client.get(page_url(second, "move"))

    assert response.status_code == 200
    days = offered_days(response)
    # Its window, 6-20 April, weeks beyond the usual four: searched to its last day, and nothing outside it.
    assert days[0] == date(2026, 4, 6) and days[-1] == date(2026, 4, 20), days
    assert between(2, "Monday 6 April 2026", "Monday 20 April 2026") in text(response)


def test_a_time_outside_the_window_is_refused_in_the_patients_words_and_changes_nothing(sessions, now):
    """Changed 6 December: session 3 is moved to 18 May at the desk first (`spread`), so the bounds are session 2's
    window and not the course's minimum gap to session 3."""
    second = sessions[1]
    spread(sessions, now)
    told = between(2, "Monday 6 April 2026", "Monday 20 April 2026")

    assert_refused(move(second, london(2026, 4, 21, 14)), second, told)
    assert_refused(move(second, london(2026, 3, 9, 14)), second, told)  # the day of session 1
    # The confirm step says it too, before anything is asked.
    shown = Client().get(page_url(second, "move_confirm"), {"slot": key(second, london(2026, 4, 21, 14))})
    assert_refused(shown, second, told)


def test_a_session_is_not_moved_past_the_next_one_even_inside_its_window(sessions, now):
    """Changed 6 December: not past the next session, nor closer to it than the course's minimum gap (four weeks),
    even inside its window. Session 3 was moved to 15 April (no day left: see the test below); now the desk moves it
    to 12 May, which leaves session 2 6-14 April: 15 April, inside its window and before session 3, is refused."""
    second, third = sessions[1], sessions[2]
    appointment_reschedule(appointment=third, start_at=london(2026, 5, 12, 9), actor=RECEPTION, now=now)

    response = Client().get(page_url(second, "move"))

    assert offered_days(response)[-1] == date(2026, 4, 14)
    assert_refused(
        move(second, london(2026, 4, 15, 14)), second, between(2, "Monday 6 April 2026", "Tuesday 14 April 2026")
    )


def test_a_time_inside_is_moved(sessions, now):
    """Changed 6 December: session 3 is moved to 18 May at the desk first (`spread`), so 15 April keeps four weeks
    before it."""
    second = sessions[1]
    spread(sessions, now)

    response = move(second, london(2026, 4, 15, 14))

    assert response.status_code == 303
    assert fresh(second).start_at == london(2026, 4, 15, 14)


def test_the_bounds_follow_a_moved_previous_session(sessions, now):
    second, third = sessions[1], sessions[2]
    appointment_reschedule(appointment=second, start_at=london(2026, 4, 15, 9), actor=RECEPTION, now=now)
    told = between(3, "Wednesday 13 May 2026", "Wednesday 27 May 2026")  # 4 to 6 weeks after 15 April

    page = Client().get(page_url(third, "move"))
    assert offered_days(page)[0] == date(2026, 5, 13) and offered_days(page)[-1] == date(2026, 5, 27)
    assert told in text(page)
    assert_refused(move(third, london(2026, 5, 12, 14)), third, told)
    assert move(third, london(2026, 5, 26, 14)).status_code == 303  # past the window the plan stored (18 May)
    assert fresh(third).start_at == london(2026, 5, 26, 14)


def test_session_1_is_bounded_by_the_next_session_and_its_own_window(sessions, now):
    """Changed 6 December (the course's minimum gap to the next session's booking, not merely before it): with
    session 2 four weeks after it, session 1 keeps its own day online. The desk (not bound) moves session 3 to 1 June
    and session 2 to 4 May: session 1 may then go from 23 March (six weeks, the course's maximum gap, before session
    2) to 6 April (four weeks, its minimum, before it)."""
    first, second, third = sessions
    assert "online it can be moved only within Monday 9 March 2026." in text(Client().get(page_url(first, "move")))
    appointment_reschedule(appointment=third, start_at=london(2026, 6, 1, 9), actor=RECEPTION, now=now)
    appointment_reschedule(appointment=second, start_at=london(2026, 5, 4, 9), actor=RECEPTION, now=now)
    told = between(1, "Monday 23 March 2026", "Monday 6 April 2026")

    page = Client().get(page_url(first, "move"))
    days = offered_days(page)
    assert days[0] == date(2026, 3, 23) and days[-1] == date(2026, 4, 6), days
    assert told in text(page)
    assert_refused(move(first, london(2026, 4, 7, 14)), first, told)
    assert_refused(move(first, london(2026, 3, 20, 14)), first, told)  # session 2 would be over six weeks after
    assert move(first, london(2026, 4, 6, 14)).status_code == 303


def test_the_last_session_is_bounded_by_the_previous_one_and_its_own_window(sessions):
    third = sessions[2]
    told = between(3, "Monday 4 May 2026", "Monday 18 May 2026")

    page = Client().get(page_url(third, "move"))
    assert offered_days(page)[0] == date(2026, 5, 4) and offered_days(page)[-1] == date(2026, 5, 18)
    assert_refused(move(third, london(2026, 5, 19, 14)), third, told)
    assert_refused(move(third, london(2026, 5, 1, 14)), third, told)
    assert move(third, london(2026, 5, 18, 14)).status_code == 303


def test_a_session_the_others_leave_no_day_is_told_to_call(sessions, now):
    second, third = sessions[1], sessions[2]
    appointment_reschedule(appointment=third, start_at=london(2026, 4, 6, 14), actor=RECEPTION, now=now)
    told = f"This is session 2 of your course: online it cannot be moved. To move it, {CALL}"

    page = Client().get(page_url(second, "move"))
    assert offered_days(page) == [] and told in text(page)
    assert "no free times we can offer online on those days" in text(page)
    assert_refused(move(second, london(2026, 4, 8, 14)), second, told)


def test_the_staff_are_not_held_to_the_course(sessions, now):
    second = sessions[1]

    moved = appointment_reschedule(appointment=second, start_at=london(2026, 5, 12, 9), actor=RECEPTION, now=now)

    assert moved.appointment.start_at == london(2026, 5, 12, 9)  # after session 3: a warning, not a refusal
    assert moved.check.warnings


def test_an_appointment_of_no_plan_is_offered_and_moved_as_before(client, appointment, now):
    assert session_move_bounds(appointment) is None
    page = client.get(page_url(appointment, "move"))
    expected = {s.start_at.astimezone(LONDON).date() for s in patient_move_options(appointment=appointment, now=now)}
    assert offered_days(page) == sorted(expected) and "of your course" not in text(page)

    response = move(appointment, london(2026, 3, 27, 14))

    assert response.status_code == 303
    assert fresh(appointment).start_at == london(2026, 3, 27, 14)


def test_a_session_moved_earlier_does_not_leave_the_next_one_past_its_window(sessions, now):
    """The desk moves session 3 to 1 June and session 2 to 20 April (session 3's window then 18 May - 1 June). Online
    session 2 may go back to 6 April (its window 6-20 April, four weeks before 1 June and more): session 3's window
    would then be 4-18 May, and 1 June outside it. Was a QUESTION; decided on 6 December: online a session also stays
    within the course's maximum gap before the next one's booking (plans.planner.Gap.earliest_before)."""
    second, third = sessions[1], sessions[2]
    appointment_reschedule(appointment=third, start_at=london(2026, 6, 1, 9), actor=RECEPTION, now=now)
    appointment_reschedule(appointment=second, start_at=london(2026, 4, 20, 9), actor=RECEPTION, now=now)
    plan = PlanSession.objects.get(appointment=third).plan
    assert plan_sessions(plan, date(2026, 3, 2))[2].window.latest == date(2026, 6, 1)

    moved = move(second, london(2026, 4, 6, 14))

    assert moved.status_code == 409, plan_sessions(plan, date(2026, 3, 2))[2].window


@pytest.mark.postgres
def test_two_tabs_moving_neighbouring_sessions_at_once_cannot_break_the_course(sessions, now, transactional_db):
    """Review (6 December): the course's days were read before the move's lock, so two tabs could each move a
    neighbour as the other stood. Session 3 at 18 May (the desk): alone, session 2 may go to 20 April and session 3
    to 4 May; both together would leave them two weeks apart. The first to lock the patient moves; the other reads the
    days again under the lock and is refused in the patient's words."""
    second, third = sessions[1], sessions[2]
    spread(sessions, now)
    answers = race(lambda: move(second, london(2026, 4, 20, 14)), lambda: move(third, london(2026, 5, 4, 14)))
    assert sorted(a.status_code for a in answers) == [303, 409], answers
    starts = (fresh(second).start_at.astimezone(LONDON).date(), fresh(third).start_at.astimezone(LONDON).date())
    assert starts in {(date(2026, 4, 20), date(2026, 5, 18)), (date(2026, 4, 6), date(2026, 5, 4))}, starts
    refused = next(a for a in answers if a.status_code == 409)
    assert "This is session" in text(refused)
