"""The hour the clocks go back over (London, Sunday 25 October 2026, 01:00-01:59 BST then GMT) at the desk: every
calendar cell of it names its instant, whatever it holds; a move's time, like a booking's, may say which reading
("01:15 GMT"); an exact start at local midnight is written with its time; bad input to a booking or a move POST is a
400; today's list says which reading a visit's time is (docs/frontdesk.md, "The calendar", "Move by dragging")."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from clinic.models import Appointment, TimeOff, WorkingHours
from frontdesk.templatetags.frontdesk import moment, when
from tests.factories import PractitionerFactory
from tests.frontdesk.conftest import at_london, book, url

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen")]

HTMX = {"HTTP_HX_REQUEST": "true"}
LONDON = ZoneInfo("Europe/London")
CELL = re.compile(
    r'<td class="[^"]*" data-date="(?P<date>[^"]+)" data-time="(?P<time>[^"]+)" '
    r'data-practitioner="(?P<who>[^"]+)">(?P<inner>.*?)</td>',
    re.S,
)


def night_worker(clinic, name: str):
    """A practitioner of the small hours, every day 00:00-06:00 (the clocks change at 01:00-02:00)."""
    doctor = PractitionerFactory(clinic=clinic, name=name, hours=[])
    WorkingHours.objects.bulk_create(
        WorkingHours(practitioner=doctor, weekday=d, start_time=time(0), end_time=time(6)) for d in range(7)
    )
    return doctor


def instants(response, doctor) -> dict[tuple[str, str], str | None]:
    """Each empty cell of `doctor`: (date, data-time) -> its data-start-at, or None."""
    found = {}
    for cell in CELL.finditer(response.content.decode()):
        if cell["who"] == str(doctor.pk):
            exact = re.search(r'\sdata-start-at="([^"]+)"', cell["inner"])
            found[(cell["date"], cell["time"])] = exact.group(1) if exact else None
    return found


def words(response) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", response.content.decode()).split())


def test_every_cell_of_the_repeated_hour_names_its_instant_free_off_or_inactive(clinic, patient, reception):
    """A free cell, a time off's cell and an inactive practitioner's cell of either reading carry the instant a card
    dropped there is checked at; a cell outside that hour, and a week's other days' hatched second reading (no such
    time that day), carry none."""
    free, away, gone = (night_worker(clinic, n) for n in ("Dr Free", "Dr Away", "Dr Gone"))
    TimeOff.objects.create(
        practitioner=away,
        start_at=datetime(2026, 10, 25, 0, tzinfo=UTC),
        end_at=datetime(2026, 10, 25, 2, tzinfo=UTC),
        reason="Dentist",
    )
    book(patient, gone, "botox", datetime(2026, 10, 25, 4, tzinfo=UTC))
    gone.is_active = False
    gone.save()

    grid = reception.get(url("calendar", clinic), {"date": "2026-10-25"})
    for doctor in (free, away, gone):
        cells = instants(grid, doctor)
        assert cells[("2026-10-25", "01:15")] == "2026-10-25T00:15:00+00:00", doctor
        assert cells[("2026-10-25", "01:15 GMT")] == "2026-10-25T01:15:00+00:00", doctor
        assert cells[("2026-10-25", "03:00")] is None, doctor
    assert 'data-start-at="2026-10-25T01:15:00+00:00">Dentist</span>' in grid.content.decode()

    week = reception.get(url("calendar", clinic), {"date": "2026-10-25", "view": "week", "practitioner": free.pk})
    cells = instants(week, free)
    assert cells[("2026-10-25", "01:15 GMT")] == "2026-10-25T01:15:00+00:00"
    assert cells[("2026-10-24", "01:15 GMT")] is None  # Saturday: no second 01:15 that day
    assert cells[("2026-10-24", "01:15")] is None  # Saturday's one 01:15 happens once


@pytest.mark.parametrize(
    ("typed", "instant"),
    [
        pytest.param("01:15 BST", datetime(2026, 10, 25, 0, 15, tzinfo=UTC), id="bst"),
        pytest.param("01:15 GMT", datetime(2026, 10, 25, 1, 15, tzinfo=UTC), id="gmt"),
        pytest.param("01:15+00:00", datetime(2026, 10, 25, 1, 15, tzinfo=UTC), id="offset"),
    ],
)
def test_a_move_takes_a_time_that_names_its_reading_as_a_booking_does(clinic, patient, reception, typed, instant):
    """The move page's time, like the booking page's, may say which reading: the check is at that instant, the time
    stays a text box showing what was typed, and "Move to …" moves there."""
    doctor = night_worker(clinic, "Dr Night")
    visit = book(patient, doctor, "botox", datetime(2026, 10, 25, 4, tzinfo=UTC))
    query = {"date": "2026-10-25", "time": typed, "practitioner": str(doctor.pk)}
    page = reception.get(url("reschedule", clinic, visit.pk), query)
    assert page.status_code == 200
    html = page.content.decode()
    assert re.search(rf'<input type="text" name="time" value="{re.escape(typed)}"', html), "not a text box"
    reading = "BST" if instant.hour == 0 else "GMT"
    assert f"Possible at Sun 25 Oct 2026, 01:15 {reading}" in words(page)
    assert f'name="start_at" value="{instant.isoformat()}"' in html

    moved = reception.post(url("reschedule", clinic, visit.pk), query, **HTMX)
    assert moved.status_code == 200 and f'data-done="{visit.pk}"' in moved.content.decode()
    assert Appointment.objects.get(pk=visit.pk).start_at == instant


def test_a_move_at_a_reading_the_day_does_not_have_is_bad_input(clinic, patient, reception):
    """'01:15 CET' is no time in London; '01:15' alone happens twice that night: each is said beside the time, nothing
    moves, and the POST answers 400."""
    doctor = night_worker(clinic, "Dr Night")
    visit = book(patient, doctor, "botox", datetime(2026, 10, 25, 4, tzinfo=UTC))
    for typed, said in [
        ("01:15 CET", "2026-10-25 01:15 CET is not a time in Europe/London"),
        ("01:15", "2026-10-25 01:15 happens twice in Europe/London"),
    ]:
        query = {"date": "2026-10-25", "time": typed, "practitioner": str(doctor.pk)}
        assert said in words(reception.get(url("reschedule", clinic, visit.pk), query, **HTMX))
        posted = reception.post(url("reschedule", clinic, visit.pk), query, **HTMX)
        assert posted.status_code == 400 and said in words(posted), typed
    assert Appointment.objects.get(pk=visit.pk).start_at == datetime(2026, 10, 25, 4, tzinfo=UTC)


def test_booking_and_move_posts_answer_bad_input_400(clinic, practitioner, patient, reception):
    """No time, or a day gone by: the form again with the error and 400, in place (HX-Request) as on the page; a
    refusal stays a 409 (tests/frontdesk/test_calendar_in_place.py)."""
    visit = book(patient, practitioner, "botox", at_london(2026, 3, 10, 10))
    move = reception.post(url("reschedule", clinic, visit.pk), {"date": "2026-03-12", "time": ""}, **HTMX)
    assert move.status_code == 400 and "Choose a new time, or one of the free times offered." in words(move)
    booking = {"procedure": "botox", "date": "2026-03-01", "time": "10:00", "practitioner": str(practitioner.pk)}
    for extra in ({}, HTMX):
        made = reception.post(url("book_submit", clinic, patient.pk), booking, **extra)
        assert made.status_code == 400 and "That day has passed" in words(made)
    assert Appointment.objects.filter(patient=patient).count() == 1


def test_an_exact_start_at_midnight_is_written_with_its_time_a_calendar_bound_as_its_day():
    with timezone.override(LONDON):
        assert moment(datetime(2026, 3, 10, 0, tzinfo=UTC)) == "Tue 10 Mar 2026, 00:00"
        assert when(datetime(2026, 3, 10, 0, tzinfo=UTC)) == "Tue 10 Mar 2026"
        assert when(datetime(2026, 3, 10, 9, 30, tzinfo=UTC)) == "Tue 10 Mar 2026, 09:30"
        assert moment(datetime(2026, 10, 25, 1, 30, tzinfo=UTC)) == "Sun 25 Oct 2026, 01:30 GMT"
        assert moment(None) == when(None) == ""


def test_todays_list_on_the_night_the_clocks_go_back_says_which_reading(clinic, patient, reception, receptionist):
    """Two visits at 01:30 on Sunday 25 October 2026, an hour apart: today's list and its "Check in" buttons tell them
    apart ("01:30 BST", "01:30 GMT"), as the calendar does; an ordinary time reads as before."""
    import time_machine

    doctor = night_worker(clinic, "Dr Night")
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 01:30 BST
    book(patient, doctor, "botox", first)
    book(patient, doctor, "botox", datetime(2026, 10, 25, 1, 30, tzinfo=UTC))  # 01:30 GMT
    book(patient, doctor, "botox", datetime(2026, 10, 25, 4, 0, tzinfo=UTC))  # 04:00 GMT, no second reading
    with time_machine.travel(datetime(2026, 10, 24, 23, 5, tzinfo=UTC), tick=False):
        reception.force_login(receptionist)  # signed in that night (a session from March would have expired)
        page = reception.get(url("today", clinic))
    text = words(page)
    assert text.index("01:30 BST") < text.index("01:30 GMT")
    assert "04:00" in text and "04:00 GMT" not in text
    html = page.content.decode()
    assert f"Check in {patient} (01:30 BST)" in html and f"Check in {patient} (01:30 GMT)" in html


def test_todays_visits_with_no_outcome_from_the_repeated_hour_are_told_apart(clinic, patient, clinician):
    """The next day's list of visits nobody closed: the two 01:30 visits, and their "Mark completed" and "No-show"
    buttons as a screen reader names them, say which reading (a clinician must not close the wrong one)."""
    import time_machine
    from django.test import Client

    doctor = night_worker(clinic, "Dr Night")
    book(patient, doctor, "botox", datetime(2026, 10, 25, 0, 30, tzinfo=UTC))  # 01:30 BST
    book(patient, doctor, "botox", datetime(2026, 10, 25, 1, 30, tzinfo=UTC))  # 01:30 GMT
    desk = Client()
    with time_machine.travel(datetime(2026, 10, 26, 9, 0, tzinfo=UTC), tick=False):
        desk.force_login(clinician)
        html = desk.get(url("today", clinic)).content.decode()
    for reading in ("BST", "GMT"):
        assert re.search(rf'aria-label="Mark completed: [^"]*\(25 Oct, 01:30 {reading}\)"', html), reading
        assert re.search(rf'aria-label="Mark no-show: [^"]*\(25 Oct, 01:30 {reading}\)"', html), reading
    assert "Sun 25 Oct, 01:30 BST" in words_of(html) and "Sun 25 Oct, 01:30 GMT" in words_of(html)


def words_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())
