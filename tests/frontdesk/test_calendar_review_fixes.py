"""The calendar's review fixes (probe tests/qa/test_review_dec5q_calendar_day.py), at their edges: cancelled visits
shown beside live ones, a practitioner no longer active, bad query fields, time off over part of a quarter hour,
'Practitioner away' on a card, and a course session's card in one statement."""

import re
from datetime import date, timedelta

import pytest

from clinic.models import AppointmentStatus, TimeOff
from frontdesk import selectors
from plans.defaults import plan_templates_load
from plans.models import PlanKind, PlanSession, PlanTemplate, TreatmentPlan
from tests.factories import PatientFactory
from tests.frontdesk.conftest import at_london, book, url
from tests.frontdesk.html import squash

pytestmark = pytest.mark.django_db

TUESDAY = "2026-03-03"


@pytest.fixture
def grace(clinic):
    return PatientFactory(clinic=clinic, first_name="Grace", last_name="Turner")


def grid(receptionist, clinic, now, **extra):
    return selectors.day_grid(user=receptionist, clinic=clinic, day=date(2026, 3, 3), now=now, **extra)


def card_of(the_grid, appointment):
    return next(c for row in the_grid.rows for c in row.cells if c.kind == "appt" and c.appointment == appointment)


# --- Cancelled ones shown never hide a live one ---------------------------------------------------------------------


def test_a_cancelled_hour_shown_keeps_only_the_rows_before_a_live_visit_booked_in_it(
    receptionist, clinic, practitioner, patient, grace, now, frozen
):
    """A cancelled 10:00-11:00 and a live 10:30: the live card is its own (two rows), the cancelled one spans 10:00
    and 10:15 only and lists nobody."""
    cancelled = book(patient, practitioner, "botox", at_london(2026, 3, 3, 10), status=AppointmentStatus.CANCELLED)
    cancelled.end_at = cancelled.start_at + timedelta(hours=1)
    cancelled.save(update_fields=["end_at"])
    live = book(grace, practitioner, "botox", at_london(2026, 3, 3, 10, 30))
    shown = grid(receptionist, clinic, now, include_cancelled=True)
    assert (card_of(shown, cancelled).rows, card_of(shown, cancelled).extra) == (2, [])
    assert card_of(shown, live).rows == 2 and card_of(shown, live).extra == []
    assert shown.total == 2


def test_a_cancelled_visit_at_the_same_time_as_a_live_one_is_listed_in_the_live_card_saying_cancelled(
    reception, clinic, practitioner, patient, grace, frozen
):
    """Cancelled and rebooked at the very same 10:00: the card is the live one's; the cancelled one is an 'Also'
    line that says it is cancelled."""
    cancelled = book(patient, practitioner, "botox", at_london(2026, 3, 3, 10), status=AppointmentStatus.CANCELLED)
    live = book(grace, practitioner, "botox", at_london(2026, 3, 3, 10))
    page = squash(reception.get(url("calendar", clinic), {"date": TUESDAY, "cancelled": "on"}))
    assert f'data-appointment="{live.pk}"' in page and f'data-appointment="{cancelled.pk}"' not in page
    assert "Also 10:00 Olivia Bennett, Cancelled</a>" in page


# --- A practitioner no longer active ---------------------------------------------------------------------------------


@pytest.fixture
def gone(clinic, practitioner, second_practitioner, patient):
    """Priya Shah, deactivated, with one visit on Tuesday 3 March at 10:00 and a cancelled one on Wednesday."""
    visit = book(patient, second_practitioner, "botox", at_london(2026, 3, 3, 10))
    book(patient, second_practitioner, "botox", at_london(2026, 3, 4, 10), status=AppointmentStatus.CANCELLED)
    second_practitioner.is_active = False
    second_practitioner.save(update_fields=["is_active"])
    return second_practitioner, visit


def test_a_practitioner_no_longer_active_appears_only_on_days_with_their_live_visits(reception, clinic, gone, frozen):
    """Wednesday holds only their cancelled visit: no column, no resource, no sheet page."""
    who, _ = gone
    for name, query in (
        ("calendar", {"date": "2026-03-04"}),
        ("calendar_events", {"start": "2026-03-04", "end": "2026-03-05"}),
        ("day_sheet", {"date": "2026-03-04"}),
    ):
        assert "Priya Shah" not in reception.get(url(name, clinic), query).content.decode(), name
    assert (
        "Priya Shah"
        in reception.get(url("calendar_events", clinic), {"start": TUESDAY, "end": "2026-03-04"}).json()["resources"][
            1
        ]["title"]
    )


def test_a_cell_step_naming_a_practitioner_no_longer_active_does_not_offer_them(reception, clinic, patient, gone):
    """The booking steps take active practitioners only: an address naming Priya Shah offers her nowhere (a guard:
    the grid no longer links her cells, and this keeps a hand-made address from reaching her)."""
    who, _ = gone
    cell = {"practitioner": who.pk, "start_at": at_london(2026, 3, 3, 9).isoformat()}
    step = reception.get(url("calendar_book_patient", clinic, patient.pk), cell, HTTP_HX_REQUEST="true")
    assert step.status_code == 200
    assert str(who.pk) not in step.content.decode() and "Priya Shah" not in step.content.decode()


def test_the_day_sheet_of_one_practitioner_leaves_a_deactivated_ones_page_out(
    reception, clinic, practitioner, gone, frozen
):
    """A guard: the pages of practitioners no longer active are added to everyone's sheet, not to one's."""
    sheet = squash(reception.get(url("day_sheet", clinic), {"date": TUESDAY, "practitioner": practitioner.pk}))
    assert "Dr Amelia Hart · Tuesday 3 March 2026" in sheet and "Priya Shah" not in sheet


# --- Bad query fields --------------------------------------------------------------------------------------------------


def test_an_impossible_date_on_the_calendar_is_said_and_the_other_fields_stand(
    reception, clinic, practitioner, second_practitioner, frozen
):
    """date=2026-02-30 with the week of one practitioner: the page says the date was left out and shows that
    practitioner's week (this week: there is no other day to keep)."""
    response = reception.get(
        url("calendar", clinic), {"date": "2026-02-30", "view": "week", "practitioner": second_practitioner.pk}
    )
    page = squash(response)
    assert response.status_code == 200
    assert "Left out, date “2026-02-30”" in page
    assert "Priya Shah, week of 2 March 2026" in page


def test_a_day_sheet_asked_with_a_view_it_does_not_have_prints_nothing(reception, clinic, practitioner, frozen):
    response = reception.get(url("day_sheet", clinic), {"date": TUESDAY, "view": "month"})
    assert response.status_code == 400
    assert 'class="day-sheet"' not in response.content.decode()


# --- Time off over part of a quarter hour -----------------------------------------------------------------------------


def test_time_off_ending_on_the_quarter_hour_leaves_that_quarter_hour_bookable(
    receptionist, clinic, practitioner, now, frozen
):
    """10:50-11:00 closes 10:45 only; 11:00 is bookable."""
    TimeOff.objects.create(
        practitioner=practitioner, start_at=at_london(2026, 3, 3, 10, 50), end_at=at_london(2026, 3, 3, 11)
    )
    cells = {c.local_time: c for row in grid(receptionist, clinic, now).rows for c in row.cells}
    assert (cells["10:30"].time_off, cells["10:45"].time_off, cells["11:00"].time_off) == (None, "Time off", None)


# --- 'Practitioner away' on a card ------------------------------------------------------------------------------------


def test_only_a_live_visit_overlapping_time_off_says_practitioner_away(
    reception, clinic, practitioner, patient, grace, frozen
):
    """Time off 10:00-11:00: the live 10:30 says so; a no-show inside it and a live 11:00 (just after) do not."""
    TimeOff.objects.create(
        practitioner=practitioner, start_at=at_london(2026, 3, 3, 10), end_at=at_london(2026, 3, 3, 11), reason=""
    )
    inside = book(patient, practitioner, "botox", at_london(2026, 3, 3, 10, 30))
    after = book(grace, practitioner, "botox", at_london(2026, 3, 3, 11))
    third = PatientFactory(clinic=clinic, first_name="Ivy", last_name="Held")
    book(third, practitioner, "botox", at_london(2026, 3, 3, 10), status=AppointmentStatus.NO_SHOW)
    page = squash(reception.get(url("calendar", clinic), {"date": TUESDAY}))
    assert page.count("Practitioner away") == 1
    card = page[page.index(f'data-appointment="{inside.pk}"') :]
    assert card.index("Practitioner away: Time off") < card.index("</div>")
    assert f'data-appointment="{after.pk}"' in page


# --- A course session's card -------------------------------------------------------------------------------------------


def _session(patient, clinic, appointment, template, index=1, size=None):
    """`appointment` as session `index` of a new plan of `template` with `size` sessions (the template's by default;
    the others not booked)."""
    plan = TreatmentPlan.objects.create(
        patient=patient, template=template, clinic=clinic, created_at=appointment.start_at
    )
    day = appointment.start_at.date()
    for other in range(1, (size or template.sessions) + 1):
        if other != index:
            PlanSession.objects.create(plan=plan, index=other, earliest_on=day, ideal_on=day, latest_on=day)
    return PlanSession.objects.create(
        plan=plan, index=index, appointment=appointment, earliest_on=day, ideal_on=day, latest_on=day
    )


def test_course_session_cards_take_no_query_each(
    reception, clinic, practitioner, second_practitioner, django_assert_max_num_queries, frozen
):
    """One session card, then nine: the grid reads as many queries; a maintenance plan's says no 'of'."""
    plan_templates_load()
    course = PlanTemplate.objects.filter(kind=PlanKind.COURSE).order_by("code").first()
    upkeep = PlanTemplate.objects.filter(kind=PlanKind.MAINTENANCE).order_by("code").first()

    def fill(first: int, count: int) -> None:
        for n in range(first, first + count):
            who = PatientFactory(clinic=clinic, first_name=f"P{n}", last_name="Course")
            doctor = (practitioner, second_practitioner)[n % 2]
            made = book(who, doctor, "botox", at_london(2026, 3, 3, 9) + timedelta(minutes=30 * (n // 2)))
            _session(who, clinic, made, course if n else upkeep, index=1)

    fill(0, 1)
    reception.get(url("calendar", clinic), {"date": TUESDAY})
    with django_assert_max_num_queries(100) as one:
        reception.get(url("calendar", clinic), {"date": TUESDAY})
    fill(1, 8)
    with django_assert_max_num_queries(len(one.captured_queries)):
        page = squash(reception.get(url("calendar", clinic), {"date": TUESDAY}))
    assert page.count(f"Session 1 of {course.sessions} · {course.name}") == 8
    assert page.count(f"Session 1 · {upkeep.name}") == 1


def test_the_calendars_links_leave_a_bad_field_out(reception, clinic, practitioner, other_practitioner, frozen):
    """Next day, previous day, today and the views go on from the fields that stood, not the one said as bad."""
    response = reception.get(
        url("calendar", clinic), {"date": TUESDAY, "view": "week", "practitioner": other_practitioner.pk}
    )
    page = response.content.decode()
    assert "Left out" in page
    assert not re.search(rf'href="\?[^"]*practitioner={other_practitioner.pk}', page)
    assert f"practitioner={practitioner.pk}" in page  # the week's links name the practitioner shown


def test_a_course_booked_with_more_sessions_than_its_template_says_its_own_number(
    reception, clinic, practitioner, frozen
):
    """A plan may be booked with another number of sessions than its template's (`sessions`), and a template is
    edited later: the card and the feed count the plan's own sessions."""
    plan_templates_load()
    course = PlanTemplate.objects.filter(kind=PlanKind.COURSE).order_by("code").first()
    who = PatientFactory(clinic=clinic, first_name="Five", last_name="Sessions")
    made = book(who, practitioner, "botox", at_london(2026, 3, 3, 10))
    _session(who, clinic, made, course, index=2, size=course.sessions + 2)
    page = squash(reception.get(url("calendar", clinic), {"date": TUESDAY}))
    assert f"Session 2 of {course.sessions + 2} · {course.name}" in page
    feed = reception.get(
        url("calendar_events", clinic), {"start": "2026-03-03T00:00:00+00:00", "end": "2026-03-04T00:00:00+00:00"}
    ).json()
    [event] = [e for e in feed["events"] if e["id"] == str(made.pk)]
    assert event["course"] == f"Session 2 of {course.sessions + 2} · {course.name}"
