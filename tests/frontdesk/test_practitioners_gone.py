"""A practitioner who no longer works at a clinic, with visits still booked with them there (the review probe
tests/qa/test_review_dec6z_clinic_settings_changes.py, mended).

Switched off in the admin, or moved to a sister site (their clinic changed), they keep their bookings at the old
site: Today lists those still to come under "Practitioner no longer here" (one statement, however many), and the old
site's calendar shows them as it shows a practitioner no longer active (a column only for their visits, headed with
why, no booking link, `active: false` in the feed, the day sheet saying so), and never offers them for a booking
there. A practitioner of the clinic who works there is unaffected; the one who moved is an ordinary column at their
new site (docs/frontdesk.md, Today and "The calendar").
"""

import re
from datetime import date

import pytest
from django.test import Client

from clinic.models import AppointmentStatus, StaffRole
from frontdesk import selectors
from scheduler.booking import appointment_slots
from tests.factories import ClinicFactory, PatientFactory
from tests.frontdesk.conftest import at_london, book, make_staff, url
from tests.frontdesk.html import squash

pytestmark = pytest.mark.django_db

TUESDAY = "2026-03-03"
ON_TUESDAY = date(2026, 3, 3)
LINK = "?practitioner={}&amp;start_at="


@pytest.fixture
def sister(clinic):
    """A second site of the London clinic's organisation."""
    return ClinicFactory(code="london-west", name="London West", organisation=clinic.organisation)


@pytest.fixture
def visits(patient, practitioner, second_practitioner, frozen):
    """Tuesday 3 March 10:00 with Priya Shah and 11:00 with Dr Amelia Hart; a cancelled one with Priya on Wednesday
    and one with her last Friday, over."""
    return {
        "priya": book(patient, second_practitioner, "botox", at_london(2026, 3, 3, 10)),
        "amelia": book(patient, practitioner, "botox", at_london(2026, 3, 3, 11)),
        "cancelled": book(
            patient, second_practitioner, "botox", at_london(2026, 3, 4, 10), status=AppointmentStatus.CANCELLED
        ),
        "over": book(patient, second_practitioner, "botox", at_london(2026, 2, 27, 10)),
    }


def switch_off(practitioner):
    practitioner.is_active = False
    practitioner.save(update_fields=["is_active"])


def move(practitioner, clinic):
    practitioner.clinic = clinic
    practitioner.save(update_fields=["clinic"])


def gone_section(page: str) -> str:
    """Today's "Practitioner no longer here" panel in a squashed page; "" when the page has none."""
    found = re.search(r'<section[^>]*aria-labelledby="gone-heading".*?</section>', page, re.S)
    return found.group(0) if found else ""


def desk_at(clinic, username: str) -> Client:
    """A receptionist of `clinic`, signed in."""
    desk = Client()
    desk.force_login(make_staff(clinic, StaffRole.RECEPTIONIST, username))
    return desk


def today(client, clinic) -> str:
    response = client.get(url("today", clinic))
    assert response.status_code == 200
    return squash(response)


# --- Today ---------------------------------------------------------------------------------------------------------


def test_today_lists_the_visits_to_come_of_a_practitioner_switched_off(reception, clinic, second_practitioner, visits):
    switch_off(second_practitioner)
    panel = gone_section(today(reception, clinic))
    assert 'Practitioner no longer here <span class="count">1</span>' in panel
    assert str(visits["priya"].pk) in panel and "Priya Shah is no longer active." in panel
    assert "Tue 3 Mar, 10:00 · Priya Shah" in panel
    for other in ("amelia", "cancelled", "over"):  # works here; cancelled; already over
        assert str(visits[other].pk) not in panel, other


def test_today_lists_the_visits_to_come_of_a_practitioner_moved_to_another_site(
    reception, clinic, sister, second_practitioner, visits
):
    move(second_practitioner, sister)
    panel = gone_section(today(reception, clinic))
    assert 'Practitioner no longer here <span class="count">1</span>' in panel
    assert str(visits["priya"].pk) in panel and "Priya Shah works at another site now." in panel
    assert str(visits["amelia"].pk) not in panel


def test_today_says_nothing_while_every_practitioner_works_here(reception, clinic, visits):
    assert "Practitioner no longer here" not in today(reception, clinic)


def test_the_new_sites_today_does_not_list_the_visits_of_one_who_works_there(
    reception, clinic, sister, second_practitioner, visits, frozen
):
    """Priya's visit booked at London West since she moved there is hers to keep: not listed there, nor at London."""
    move(second_practitioner, sister)
    there = PatientFactory(clinic=sister, first_name="Nina", last_name="Cole")
    theirs = book(there, second_practitioner, "botox", at_london(2026, 3, 5, 10))
    assert "Practitioner no longer here" not in today(desk_at(sister, "west-desk"), sister)
    assert str(theirs.pk) not in gone_section(today(reception, clinic))


def test_the_list_costs_the_same_statements_however_long(
    reception, clinic, sister, patient, second_practitioner, frozen, django_assert_max_num_queries
):
    book(patient, second_practitioner, "botox", at_london(2026, 3, 3, 10))
    move(second_practitioner, sister)
    with django_assert_max_num_queries(60) as one:
        reception.get(url("today", clinic))
    for day in range(4, 14):
        book(patient, second_practitioner, "botox", at_london(2026, 3, day, 10))
    with django_assert_max_num_queries(len(one.captured_queries)):
        page = today(reception, clinic)
    assert 'Practitioner no longer here <span class="count">11</span>' in page


# --- The old site's calendar ---------------------------------------------------------------------------------------


def test_the_old_sites_calendar_shows_one_who_moved_for_their_visits_with_nothing_to_book(
    reception, clinic, sister, practitioner, second_practitioner, visits, frozen
):
    move(second_practitioner, sister)
    page = reception.get(url("calendar", clinic), {"date": TUESDAY}).content.decode()
    assert (
        '<th scope="col" class="cal-head cal-head--inactive">Priya Shah <span class="tag">Works at another site now'
        "</span></th>" in page
    )
    assert f'data-appointment="{visits["priya"].pk}"' in page  # the visit is still shown
    assert LINK.format(second_practitioner.pk) not in page
    # Dr Amelia Hart works here: her column is as before, her free cells links, her hours shaded.
    assert '<th scope="col" class="cal-head">Dr Amelia Hart</th>' in page
    assert LINK.format(practitioner.pk) in page


def test_the_grid_marks_the_column_of_one_who_moved_as_not_bookable(
    receptionist, clinic, sister, practitioner, second_practitioner, visits, frozen
):
    move(second_practitioner, sister)
    grid = selectors.day_grid(user=receptionist, clinic=clinic, day=ON_TUESDAY, now=frozen)
    by_name = {c.practitioner.name: c for c in grid.columns}
    assert by_name["Priya Shah"].gone == "Works at another site now" and by_name["Dr Amelia Hart"].gone is None
    n = list(by_name).index("Priya Shah")
    hers = [row.cells[n] for row in grid.rows if row.cells[n].kind == "free"]
    assert hers and not any(c.bookable or c.working for c in hers)
    ours = [row.cells[list(by_name).index("Dr Amelia Hart")] for row in grid.rows]
    assert any(c.working for c in ours) and all(c.bookable for c in ours if c.kind == "free")


def test_one_switched_off_and_moved_is_said_no_longer_active(reception, clinic, sister, second_practitioner, visits):
    move(second_practitioner, sister)
    switch_off(second_practitioner)
    page = squash(reception.get(url("calendar", clinic), {"date": TUESDAY}))
    assert 'Priya Shah <span class="tag">No longer active</span>' in page
    assert "Priya Shah is no longer active." in gone_section(today(reception, clinic))


def test_the_feed_and_day_sheet_of_the_old_site_say_they_take_no_bookings_there(
    reception, clinic, sister, practitioner, second_practitioner, visits, frozen
):
    move(second_practitioner, sister)
    feed = reception.get(url("calendar_events", clinic), {"start": TUESDAY, "end": "2026-03-04"}).json()
    active = {r["title"]: r["active"] for r in feed["resources"]}
    assert active == {"Dr Amelia Hart": True, "Priya Shah": False}
    assert str(visits["priya"].pk) in {e["id"] for e in feed["events"]}
    sheet = squash(reception.get(url("day_sheet", clinic), {"date": TUESDAY}))
    assert "Priya Shah (works at another site now) · Tuesday 3 March 2026" in sheet
    assert "Dr Amelia Hart · Tuesday 3 March 2026" in sheet


def test_the_new_site_shows_one_who_moved_as_an_ordinary_column(clinic, sister, second_practitioner, frozen):
    move(second_practitioner, sister)
    desk = desk_at(sister, "west-desk")
    page = desk.get(url("calendar", sister), {"date": TUESDAY}).content.decode()
    assert '<th scope="col" class="cal-head">Priya Shah</th>' in page
    assert LINK.format(second_practitioner.pk) in page
    feed = desk.get(url("calendar_events", sister), {"start": TUESDAY, "end": "2026-03-04"}).json()
    assert feed["resources"] == [{"id": str(second_practitioner.pk), "title": "Priya Shah", "active": True}]


# --- Never offered for a booking at the old site -------------------------------------------------------------------


def test_the_old_site_never_offers_one_who_moved_for_a_booking(
    reception, clinic, sister, patient, practitioner, second_practitioner, visits, frozen
):
    """Not in the booking form's choices, nor reached by a cell's address naming them, nor in the free times."""
    move(second_practitioner, sister)
    form = reception.get(url("book", clinic, patient.pk)).content.decode()
    assert "Dr Amelia Hart" in form and str(second_practitioner.pk) not in form
    cell = {"practitioner": second_practitioner.pk, "start_at": at_london(2026, 3, 3, 9).isoformat()}
    step = reception.get(url("calendar_book_patient", clinic, patient.pk), cell, HTTP_HX_REQUEST="true")
    assert step.status_code == 200 and str(second_practitioner.pk) not in step.content.decode()
    slots = appointment_slots(
        patient=patient,
        procedure_code="botox",
        window_start=at_london(2026, 3, 5, 9),
        window_end=at_london(2026, 3, 5, 12),
        now=frozen,
        clinic_id=clinic.pk,
    )
    assert slots and {s.practitioner_id for s in slots} == {str(practitioner.pk)}
