"""A practitioner who no longer works at a clinic, after the review probe dec7e
(tests/qa/test_review_dec7e_desk_and_plans_followups.py, mended): what the desks and the admin read of them.

- One list says what to do: a visit still to come whose practitioner was switched off or moved to another site is
  listed under "Practitioner no longer here" only, never also under "Practitioner away" or "Outside working hours"
  (their time off and hours are another site's now, perhaps another organisation's, whose words the old desk never
  reads, on Today or on the calendar's card).
- The new site's calendar closes the quarter hours its practitioner still spends on a live visit at the site they
  left ("Booked at another site", no link to book: the booking service would refuse it as taken), saying nothing more
  of that visit (no patient, procedure or clinic), in one statement however many practitioners and visits.
- The admin's warnings on saving a practitioner weigh time off and working hours against the visits at the clinic
  they work at now only (read in its zone), and none of one switched off.

docs/frontdesk.md, Today and "The calendar". The clock: Monday 2 March 2026, 09:00 London.
"""

import re
from urllib.parse import quote

import pytest
from django.contrib import messages
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from clinic.models import AppointmentStatus, StaffRole, TimeOff, WorkingHours
from frontdesk import selectors
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory
from tests.frontdesk.conftest import at_london, book, make_staff, url
from tests.frontdesk.html import squash
from tests.qa.helpers import practitioner_admin_post

pytestmark = pytest.mark.django_db

TUESDAY = "2026-03-03"
ON_TUESDAY = at_london(2026, 3, 3, 0).date()
ELSEWHERE = "Booked at another site"


@pytest.fixture
def sister(clinic):
    """A second site of the London clinic's organisation."""
    return ClinicFactory(code="london-west", name="London West", organisation=clinic.organisation)


@pytest.fixture
def visit(patient, practitioner, frozen):
    """Olivia Bennett's Botox with Dr Amelia Hart on Tuesday 3 March, 10:00-10:30 London."""
    return book(patient, practitioner, "botox", at_london(2026, 3, 3, 10))


def move(practitioner, clinic):
    practitioner.clinic = clinic
    practitioner.save(update_fields=["clinic"])


def switch_off(practitioner):
    practitioner.is_active = False
    practitioner.save(update_fields=["is_active"])


def desk_at(clinic, username: str) -> Client:
    desk = Client()
    desk.force_login(make_staff(clinic, StaffRole.RECEPTIONIST, username))
    return desk


def shown(client, name: str, clinic, **query) -> str:
    response = client.get(url(name, clinic), query)
    assert response.status_code == 200
    return squash(response)


def panel(page: str, heading_id: str) -> str:
    """A Today panel by its heading's id, in a squashed page; "" when the page has none."""
    found = re.search(rf'<section[^>]*aria-labelledby="{heading_id}".*?</section>', page, re.S)
    return found.group(0) if found else ""


def cells(grid, name: str, *instants) -> list:
    """The cells of `name`'s column (the first one so named) starting at `instants`, in that order."""
    n = [c.practitioner.name for c in grid.columns].index(name)
    by_start = {row.cells[n].starts_at: row.cells[n] for row in grid.rows}
    return [by_start[at] for at in instants]


def book_link(practitioner, instant) -> str:
    return f"?practitioner={practitioner.pk}&amp;start_at={quote(instant.isoformat(), safe='')}"


# --- Today: one list says what to do ---------------------------------------------------------------------------------


def test_time_off_another_organisation_gives_one_who_moved_there_is_not_read_at_the_old_desk(
    reception, receptionist, clinic, other_clinic, practitioner, visit, frozen
):
    move(practitioner, other_clinic)
    TimeOff.objects.create(
        practitioner=practitioner,
        start_at=at_london(2026, 3, 3, 8),
        end_at=at_london(2026, 3, 3, 18),
        reason="Induction at Manhattan Skin",
    )

    today = shown(reception, "today", clinic)
    calendar = shown(reception, "calendar", clinic, date=TUESDAY)

    assert str(visit.pk) in panel(today, "gone-heading")
    assert panel(today, "away-heading") == ""
    assert "Manhattan" not in today and "Manhattan" not in calendar and "Practitioner away" not in calendar
    grid = selectors.day_grid(user=receptionist, clinic=clinic, day=ON_TUESDAY, now=frozen)
    column = [row.cells[0] for row in grid.rows]
    assert grid.columns[0].gone == selectors.AT_ANOTHER_SITE
    assert [c.appointment.away for c in column if c.kind == "appt"] == [None]
    assert not any(c.time_off for c in column)


def test_a_switched_off_practitioners_visit_in_time_off_is_listed_only_as_no_longer_here(
    reception, clinic, practitioner, visit
):
    switch_off(practitioner)
    TimeOff.objects.create(
        practitioner=practitioner, start_at=at_london(2026, 3, 3, 8), end_at=at_london(2026, 3, 3, 18), reason="Gone"
    )

    today = shown(reception, "today", clinic)

    assert "Dr Amelia Hart is no longer active." in panel(today, "gone-heading")
    assert panel(today, "away-heading") == ""


def test_the_visit_of_one_who_works_here_in_their_time_off_is_still_listed_as_away(
    reception, clinic, sister, practitioner, second_practitioner, visit, frozen
):
    """Priya Shah moved to the sister site on the same day: only Dr Amelia Hart's visit is "away"."""
    hers = book(visit.patient, second_practitioner, "botox", at_london(2026, 3, 3, 11))
    move(second_practitioner, sister)
    for who in (practitioner, second_practitioner):
        TimeOff.objects.create(
            practitioner=who, start_at=at_london(2026, 3, 3, 8), end_at=at_london(2026, 3, 3, 18), reason="Congress"
        )

    today = shown(reception, "today", clinic)
    away = panel(today, "away-heading")

    assert 'Practitioner away <span class="count">1</span>' in away and str(visit.pk) in away
    assert "Dr Amelia Hart is off then (Congress)." in away
    assert str(hers.pk) in panel(today, "gone-heading") and str(hers.pk) not in away
    calendar = shown(reception, "calendar", clinic, date=TUESDAY)
    assert calendar.count("Practitioner away: Congress") == 1


def test_the_visit_of_one_who_moved_is_not_also_listed_outside_working_hours(
    reception, clinic, sister, practitioner, visit
):
    move(practitioner, sister)
    WorkingHours.objects.filter(practitioner=practitioner, weekday=1).update(start_time="13:00")  # the new site's

    today = shown(reception, "today", clinic)

    assert "Dr Amelia Hart works at another site now." in panel(today, "gone-heading")
    assert panel(today, "off-hours-heading") == ""


def test_the_visit_of_one_switched_off_is_not_also_listed_outside_working_hours(reception, clinic, practitioner, visit):
    switch_off(practitioner)
    WorkingHours.objects.filter(practitioner=practitioner).delete()

    today = shown(reception, "today", clinic)

    assert str(visit.pk) in panel(today, "gone-heading")
    assert panel(today, "off-hours-heading") == ""


def test_the_visit_of_one_who_works_here_is_still_listed_outside_working_hours(reception, clinic, practitioner, visit):
    WorkingHours.objects.filter(practitioner=practitioner, weekday=1).update(start_time="13:00")

    today = shown(reception, "today", clinic)

    assert str(visit.pk) in panel(today, "off-hours-heading")
    assert panel(today, "gone-heading") == ""


def test_todays_lists_cost_the_same_statements_however_many_visits_of_one_who_moved(
    reception, clinic, sister, patient, practitioner, frozen
):
    """Each visit is in time off and outside the hours as well: listed once each, at no cost per visit."""
    book(patient, practitioner, "botox", at_london(2026, 3, 3, 10))
    move(practitioner, sister)
    TimeOff.objects.create(
        practitioner=practitioner, start_at=at_london(2026, 3, 3, 0), end_at=at_london(2026, 3, 20, 0)
    )
    WorkingHours.objects.filter(practitioner=practitioner).delete()
    with CaptureQueriesContext(connection) as one:
        shown(reception, "today", clinic)
    for day in range(4, 10):
        book(patient, practitioner, "botox", at_london(2026, 3, day, 10))

    with CaptureQueriesContext(connection) as seven:
        today = shown(reception, "today", clinic)

    assert len(seven.captured_queries) == len(one.captured_queries)
    assert 'Practitioner no longer here <span class="count">7</span>' in today
    assert panel(today, "away-heading") == "" and panel(today, "off-hours-heading") == ""


# --- The new site's calendar: no cell the practitioner spends at the old site -----------------------------------------


@pytest.fixture
def both_sites(patient, practitioner, sister, visit):
    """Dr Amelia Hart moved to London West after the London visit (Tuesday 10:00-10:30) was booked; a West patient
    booked with her at 12:00 there; a cancelled London visit at 11:00."""
    cancelled = book(patient, practitioner, "botox", at_london(2026, 3, 3, 11), status=AppointmentStatus.CANCELLED)
    move(practitioner, sister)
    there = PatientFactory(clinic=sister, first_name="Wendy", last_name="West")
    return visit, book(there, practitioner, "botox", at_london(2026, 3, 3, 12)), cancelled


def test_the_new_sites_grid_closes_the_quarter_hours_spent_at_the_old_site(sister, practitioner, both_sites, frozen):
    user = make_staff(sister, StaffRole.RECEPTIONIST, "west-desk")
    grid = selectors.day_grid(user=user, clinic=sister, day=ON_TUESDAY, now=frozen)
    ten, quarter_past, half_past, eleven = cells(
        grid,
        "Dr Amelia Hart",
        at_london(2026, 3, 3, 10),
        at_london(2026, 3, 3, 10, 15),
        at_london(2026, 3, 3, 10, 30),
        at_london(2026, 3, 3, 11),
    )

    for closed in (ten, quarter_past):
        assert closed.kind == "free" and closed.elsewhere and not closed.bookable and closed.gone is None
    for free in (half_past, eleven):  # after the visit; a cancelled one there takes nothing
        assert free.kind == "free" and free.bookable and not free.elsewhere
    assert grid.columns[0].gone is None and grid.total == 1  # her own column, her West visit its only card


def test_the_new_sites_week_closes_those_quarter_hours_too(sister, practitioner, both_sites, frozen):
    user = make_staff(sister, StaffRole.RECEPTIONIST, "west-desk")
    grid = selectors.day_grid(
        user=user, clinic=sister, day=ON_TUESDAY, now=frozen, week=True, practitioner_id=practitioner.pk
    )
    n = [c.day for c in grid.columns].index(ON_TUESDAY)
    closed = [row.cells[n].starts_at for row in grid.rows if row.cells[n].elsewhere]
    assert closed == [at_london(2026, 3, 3, 10), at_london(2026, 3, 3, 10, 15)]
    assert not any(row.cells[m].elsewhere for row in grid.rows for m in range(7) if m != n)


def test_the_new_sites_page_shows_the_cells_taken_with_no_link_and_nothing_of_the_visit(
    clinic, sister, practitioner, both_sites
):
    desk = desk_at(sister, "west-desk")
    page = shown(desk, "calendar", sister, date=TUESDAY)

    assert page.count(ELSEWHERE) == 2
    assert book_link(practitioner, at_london(2026, 3, 3, 10)) not in page
    assert book_link(practitioner, at_london(2026, 3, 3, 10, 15)) not in page
    assert book_link(practitioner, at_london(2026, 3, 3, 10, 30)) in page
    assert "Wendy West" in page  # her own visit there
    assert "Olivia Bennett" not in page and str(both_sites[0].pk) not in page and clinic.name not in page


def test_a_visit_left_at_another_organisations_clinic_closes_the_cells_and_says_nothing_of_it(
    reception, receptionist, clinic, other_clinic, other_patient, other_practitioner, frozen
):
    """Dr Maya Chen moved from New York (another organisation) to London, with a New York visit still booked on
    Tuesday at 10:00 London: London's calendar offers nothing then and reads nothing of it."""
    theirs = book(other_patient, other_practitioner, "botox", at_london(2026, 3, 3, 10))
    move(other_practitioner, clinic)

    grid = selectors.day_grid(user=receptionist, clinic=clinic, day=ON_TUESDAY, now=frozen)
    ten, half_past = cells(grid, "Dr Maya Chen", at_london(2026, 3, 3, 10), at_london(2026, 3, 3, 10, 30))
    page = shown(reception, "calendar", clinic, date=TUESDAY)

    assert ten.elsewhere and not ten.bookable and half_past.bookable
    assert book_link(other_practitioner, at_london(2026, 3, 3, 10)) not in page and ELSEWHERE in page
    for text in ("Nora Jones", "New York", other_clinic.code, other_clinic.organisation.name, str(theirs.pk)):
        assert text not in page, text


def test_the_other_practitioners_and_the_old_sites_column_have_no_cell_booked_elsewhere(
    receptionist, clinic, sister, patient, practitioner, second_practitioner, both_sites, frozen
):
    """At London, Priya Shah (who works there) is free at 10:00; Dr Amelia Hart's column there is not bookable for
    having moved, not for her West visit at 12:00 (nothing of another site is read for a column no longer here)."""
    grid = selectors.day_grid(user=receptionist, clinic=clinic, day=ON_TUESDAY, now=frozen)
    (priya,) = cells(grid, "Priya Shah", at_london(2026, 3, 3, 10))
    (amelia,) = cells(grid, "Dr Amelia Hart", at_london(2026, 3, 3, 12))

    assert priya.bookable and not priya.elsewhere
    assert not amelia.bookable and not amelia.elsewhere and amelia.gone == selectors.AT_ANOTHER_SITE


def test_the_grids_statements_do_not_grow_with_practitioners_or_visits_elsewhere(clinic, sister, frozen):
    """One practitioner who moved to West with one London visit that day, then six with three each: the same
    statements for West's day, week and calendar page (one for every practitioner's visits elsewhere)."""
    user = make_staff(sister, StaffRole.RECEPTIONIST, "west-desk")
    desk = Client()
    desk.force_login(user)

    def moved_with_visits(name: str, hours: list[int]):
        who = PractitionerFactory(clinic=clinic, name=name)
        theirs = PatientFactory(clinic=clinic)  # a patient each: one patient is never in two places at once
        for hour in hours:
            book(theirs, who, "botox", at_london(2026, 3, 3, hour))
        move(who, sister)
        return who

    first = moved_with_visits("Dr A", [10])

    def statements() -> list[int]:
        counts = []
        for week in (False, True):
            with CaptureQueriesContext(connection) as read:
                selectors.day_grid(
                    user=user,
                    clinic=sister,
                    day=ON_TUESDAY,
                    now=frozen,
                    week=week,
                    practitioner_id=first.pk if week else None,
                )
            counts.append(len(read.captured_queries))
        with CaptureQueriesContext(connection) as read:
            shown(desk, "calendar", sister, date=TUESDAY)
        return [*counts, len(read.captured_queries)]

    few = statements()
    for n in range(5):
        moved_with_visits(f"Dr {'BCDEF'[n]}", [9, 11, 14])
    for hour in (12, 15):
        book(PatientFactory(clinic=clinic), first, "botox", at_london(2026, 3, 3, hour))

    assert statements() == few
    grid = selectors.day_grid(user=user, clinic=sister, day=ON_TUESDAY, now=frozen)
    assert len(grid.columns) == 6
    closed = sum(cell.elsewhere for row in grid.rows for cell in row.cells)
    assert closed == 6 * 3 * 2  # three half-hour visits each, two quarter hours apiece
    assert shown(desk, "calendar", sister, date=TUESDAY).count(ELSEWHERE) == closed


# --- The admin's warnings after a move -------------------------------------------------------------------------------


@pytest.fixture
def new_york_site(clinic):
    """A New York site of the London clinic's organisation (EDT from 8 March: 10:00 London is 06:00 there)."""
    return ClinicFactory(
        code="london-ny", name="London NY", timezone="America/New_York", organisation=clinic.organisation
    )


def save_practitioner(admin_client, practitioner, *, clinic, active=True) -> list[str]:
    """The practitioner's admin form saved with `clinic`, their hours kept; the warnings said."""
    response = practitioner_admin_post(admin_client, practitioner, clinic=clinic, active=active)
    assert response.status_code == 200
    return [str(m) for m in get_messages(response.wsgi_request) if m.level == messages.WARNING]


def test_after_a_move_the_admin_weighs_the_hours_against_the_new_sites_visits_only(
    admin_client, clinic, new_york_site, patient, practitioner, frozen
):
    """The London visit (Tue 10 Mar, 10:00 London: 06:00 in New York) is not "outside their working hours" at the
    new site; a New York visit at 20:00 there is, and is the one named."""
    book(patient, practitioner, "botox", at_london(2026, 3, 10, 10))
    there = PatientFactory(clinic=new_york_site, first_name="Ned", last_name="York")
    book(there, practitioner, "botox", at_london(2026, 3, 12, 0))  # Wed 11 Mar, 20:00 New York

    warned = save_practitioner(admin_client, practitioner, clinic=new_york_site)

    outside = [w for w in warned if "outside their working hours" in w]
    assert outside == [
        "Dr Amelia Hart has 1 booked appointment still to come outside their working hours (the first on Wed 11 Mar "
        "2026, 20:00). They stay booked until moved or cancelled: the front desk's Today page lists them under "
        '"Outside working hours".'
    ]
    assert [w for w in warned if "now works at London NY" in w and "at London Clinic" in w]


def test_after_a_move_the_admin_counts_the_time_off_over_the_new_sites_visits_only(
    admin_client, clinic, sister, patient, practitioner, frozen
):
    book(patient, practitioner, "botox", at_london(2026, 3, 10, 10))
    there = PatientFactory(clinic=sister, first_name="Wendy", last_name="West")
    book(there, practitioner, "botox", at_london(2026, 3, 11, 10))
    TimeOff.objects.create(
        practitioner=practitioner, start_at=at_london(2026, 3, 9, 0), end_at=at_london(2026, 3, 14, 0)
    )

    warned = save_practitioner(admin_client, practitioner, clinic=sister)

    assert [w for w in warned if "in their time off" in w] == [
        "Dr Amelia Hart has 1 booked appointment still to come in their time off. They stay booked until moved or "
        'cancelled: the front desk\'s Today page lists them under "Practitioner away".'
    ]


def test_switching_off_warns_only_that_they_are_no_longer_active(admin_client, clinic, patient, practitioner, frozen):
    book(patient, practitioner, "botox", at_london(2026, 3, 8, 10))  # a Sunday: outside their hours
    TimeOff.objects.create(
        practitioner=practitioner, start_at=at_london(2026, 3, 8, 0), end_at=at_london(2026, 3, 9, 0)
    )

    warned = save_practitioner(admin_client, practitioner, clinic=clinic, active=False)

    assert len(warned) == 1 and "Dr Amelia Hart is no longer active" in warned[0]
    assert '"Practitioner no longer here"' in warned[0]
