"""A review probe of the front desk's calendar as a receptionist lives in it all day (docs/frontdesk.md, "The
calendar", the feed, the day sheet, booking from a cell): the grid and the events JSON on the days London's
clocks change, a New York sister site seen from London's desk, split hours, time off over part of a day, a
practitioner who left with bookings still to come, cancelled, no-show, held and course visits, a merged-away
patient, booking from a cell (refused, twice from two tabs, in the past, out of hours), bad query parameters,
the printed day sheet of a busy day, and another organisation's desk.

Server-side only (Django's test client). Tenants: organisation A's `cq-london` (Europe/London) and its sister
site `cq-ny` (America/New_York); organisation B's `cq-other`. The clock stands at the suite's Monday, 2 March
2026, 09:00 UTC (`clock`, tests/qa/conftest.py).

A defect is a strict xfail whose reason starts "DEFECT:", an undecided product question "QUESTION:". Found, and
mended the same day: ten DEFECTs (a live booking in a cancelled visit's freed slot swallowed by the cancelled card
with "Show cancelled"; a deactivated practitioner's visits missing from the printed day sheet, their events naming
a resource the feed did not list, and their column offering cells that then booked "Any practitioner"; one bad
calendar field drawing today; the day sheet printing today's sheet for a bad query; time off over the later part
of a quarter hour leaving it bookable; the fall-back night's repeated hour having one set of rows, a visit across
the change drawn by wall clock, and a cell there not bookable from the dialog: the grid now steps its rows by
instants, "01:15 BST" then "01:15 GMT", and the dialog's time carries that reading) and two QUESTIONs decided, yes
(a visit under time off entered later says "Practitioner away" on its card; a course's booked session's card and
feed title name the session and the course). None left.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

import pytest
from django.test import Client

from clinic.merging import patient_merge
from clinic.models import (
    Appointment,
    AppointmentStatus,
    AuditEvent,
    MedicationCourse,
    StaffMembership,
    StaffRole,
    TimeOff,
    WorkingHours,
)
from plans.defaults import plan_templates_load
from plans.models import PlanKind, PlanSession, PlanTemplate, TreatmentPlan
from reminders.models import OutboxMessage
from tests.factories import AppointmentFactory, ClinicFactory, PatientFactory, PractitionerFactory
from tests.frontdesk.conftest import url
from tests.qa.helpers import ldn, nyc, squash, staff_client, words

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock")]

HTMX = {"HTTP_HX_REQUEST": "true"}
EVERY_DAY = list(range(7))


# --- Tenants, people ---------------------------------------------------------------------------------------------


@pytest.fixture
def london(catalogue):
    return ClinicFactory(code="cq-london", name="CQ London", timezone="Europe/London")


@pytest.fixture
def ny(london):
    """London's sister site in New York: the same organisation, its own clock."""
    return ClinicFactory(
        code="cq-ny", name="CQ New York", timezone="America/New_York", organisation=london.organisation
    )


@pytest.fixture
def other_org(catalogue):
    return ClinicFactory(code="cq-other", name="CQ Elsewhere", timezone="Europe/London")


@pytest.fixture
def hart(london):
    """London's practitioner, every day 09:00-17:00 (Sundays too: the clocks change on a Sunday)."""
    doctor = PractitionerFactory(clinic=london, name="Dr Hart", hours=[])
    WorkingHours.objects.bulk_create(
        WorkingHours(practitioner=doctor, weekday=d, start_time=time(9), end_time=time(17)) for d in EVERY_DAY
    )
    return doctor


@pytest.fixture
def night(london):
    """A practitioner of the small hours, every day 00:00-06:00 (the clocks change at 01:00 and 02:00)."""
    doctor = PractitionerFactory(clinic=london, name="Dr Night", hours=[])
    WorkingHours.objects.bulk_create(
        WorkingHours(practitioner=doctor, weekday=d, start_time=time(0), end_time=time(6)) for d in EVERY_DAY
    )
    return doctor


@pytest.fixture
def olivia(london):
    return PatientFactory(clinic=london, first_name="Olivia", last_name="Bennett", phone="+447911123101")


@pytest.fixture
def grace(london):
    return PatientFactory(clinic=london, first_name="Grace", last_name="Turner", phone="+447911123102")


@pytest.fixture
def desk(london):
    return staff_client(london, StaffRole.RECEPTIONIST, "cq-desk")


def written(patient, practitioner, start, code="botox", minutes=30, **extra) -> Appointment:
    """An appointment row as the database holds it (no rules, no messages): for pages that only show it."""
    return AppointmentFactory(
        patient=patient,
        clinic=practitioner.clinic,
        practitioner=practitioner,
        procedure_id=code,
        start_at=start,
        end_at=start + timedelta(minutes=minutes),
        **extra,
    )


def feed(client, clinic, start: str, end: str):
    return client.get(url("calendar_events", clinic), {"start": start, "end": end})


def free_cells(response) -> dict[tuple[str, str, str], str]:
    """The grid's empty cells: (practitioner id, local day, local time) -> the cell's inner HTML."""
    return {
        (p, d, t): inner
        for d, t, p, inner in re.findall(
            r'<td class="cal-cell[^"]*" data-date="([^"]+)" data-time="([^"]+)" data-practitioner="([^"]+)">(.*?)</td>',
            response.content.decode(),
            flags=re.S,
        )
    }


def cell_instant(inner: str) -> datetime | None:
    found = re.search(r"start_at=([^\"&]+)", inner)
    return datetime.fromisoformat(found.group(1).replace("%3A", ":").replace("%2B", "+")) if found else None


def card(response, appointment) -> str:
    """The card of `appointment` on the grid (its words), or "" when it has none."""
    found = re.search(
        rf'<div class="cal-appt [^"]*" draggable="true" data-appointment="{appointment.pk}".*?</div>',
        response.content.decode(),
        flags=re.S,
    )
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(0)).split()) if found else ""


# === The days the clocks change ===================================================================================


def test_on_the_spring_forward_sunday_a_nine_to_five_day_is_nine_to_five_in_summer_time(london, hart, olivia, desk):
    """Sunday 29 March 2026 London goes to BST at 01:00. Dr Hart's 09:00-17:00 is 32 white quarter hours from
    09:00 BST (08:00 UTC) to 16:45 BST; 08:45 and 17:00 are grey; a 09:00 visit is fed at 09:00+01:00."""
    made = written(olivia, hart, ldn(2026, 3, 29, 9))
    response = desk.get(url("calendar", london), {"date": "2026-03-29"})
    assert response.status_code == 200
    cells = {key: inner for key, inner in free_cells(response).items() if key[0] == str(hart.pk)}
    page = response.content.decode()
    working = re.findall(
        rf'<td class="cal-cell cal-cell--working" data-date="2026-03-29" data-time="([^"]+)" '
        rf'data-practitioner="{hart.pk}"',
        page,
    )
    assert working[0] == "09:30" and working[-1] == "16:45" and len(working) == 30  # 09:00-09:30 is the visit
    assert cell_instant(cells[(str(hart.pk), "2026-03-29", "09:30")]) == datetime(2026, 3, 29, 8, 30, tzinfo=UTC)
    assert "outside working hours" in cells[(str(hart.pk), "2026-03-29", "17:00")]
    assert "outside working hours" in cells[(str(hart.pk), "2026-03-29", "08:45")]
    assert "09:00–09:30" in card(response, made)
    events = feed(desk, london, "2026-03-29", "2026-03-30").json()["events"]
    assert [(e["start"], e["end"]) for e in events] == [("2026-03-29T09:00:00+01:00", "2026-03-29T09:30:00+01:00")]


def test_the_week_of_the_spring_change_books_each_days_nine_oclock_at_that_days_offset(london, hart, desk):
    """The week of Monday 23 March: nine o'clock is 09:00 UTC Monday to Saturday and 08:00 UTC on Sunday 29th."""
    response = desk.get(url("calendar", london), {"date": "2026-03-25", "view": "week", "practitioner": hart.pk})
    assert response.status_code == 200
    cells = free_cells(response)
    for day in range(23, 29):
        assert cell_instant(cells[(str(hart.pk), f"2026-03-{day}", "09:00")]) == datetime(2026, 3, day, 9, tzinfo=UTC)
    assert cell_instant(cells[(str(hart.pk), "2026-03-29", "09:00")]) == datetime(2026, 3, 29, 8, tzinfo=UTC)


def test_a_visit_at_half_past_one_on_the_fall_back_night_is_drawn_and_fed_at_its_real_instant(
    london, night, olivia, desk
):
    """Sunday 25 October 2026 London reads 01:00-01:59 twice (BST, then GMT). A visit at 01:30 GMT (01:30 UTC) is on
    the grid at 01:30 and in the feed at 01:30+00:00, never 01:30+01:00 (which is an hour earlier)."""
    made = written(olivia, night, datetime(2026, 10, 25, 1, 30, tzinfo=UTC))
    response = desk.get(url("calendar", london), {"date": "2026-10-25"})
    assert response.status_code == 200
    assert "01:30–02:00" in card(response, made)
    events = feed(desk, london, "2026-10-25", "2026-10-26").json()["events"]
    assert [(e["id"], e["start"], e["end"]) for e in events] == [
        (str(made.pk), "2026-10-25T01:30:00+00:00", "2026-10-25T02:00:00+00:00")
    ]


def test_the_repeated_hour_of_the_fall_back_night_keeps_both_of_its_half_past_ones(london, night, olivia, desk):
    """docs/frontdesk.md: 'a row per quarter hour of clinic time'. On 25 October 01:30 BST (00:30 UTC) and 01:30
    GMT (01:30 UTC) are two quarter hours an hour apart. With a visit at the second, the first is still free to
    book, and the visit's card is not where the first is. (Was a strict-xfail DEFECT.)"""
    written(olivia, night, datetime(2026, 10, 25, 1, 30, tzinfo=UTC))
    response = desk.get(url("calendar", london), {"date": "2026-10-25"})
    instants = {cell_instant(inner) for key, inner in free_cells(response).items() if key[0] == str(night.pk)}
    assert datetime(2026, 10, 25, 0, 30, tzinfo=UTC) in instants  # 01:30 BST, free


def test_an_hour_long_visit_across_the_fall_back_change_keeps_its_hour_on_the_grid(london, night, olivia, desk):
    """01:30 BST to 01:30 GMT (00:30-01:30 UTC) is an hour: its card spans the four quarter hours of that hour (no
    free cell inside it) and says "01:30 BST–01:30 GMT", never "01:30–01:30". (Was a strict-xfail DEFECT.)"""
    made = written(olivia, night, datetime(2026, 10, 25, 0, 30, tzinfo=UTC), minutes=60)
    response = desk.get(url("calendar", london), {"date": "2026-10-25"})
    instants = {cell_instant(inner) for key, inner in free_cells(response).items() if key[0] == str(night.pk)}
    assert not [i for i in instants if i and made.start_at <= i < made.end_at]
    assert "01:30–01:30" not in card(response, made)
    assert "01:30 BST–01:30 GMT" in card(response, made)


def test_a_cell_in_the_repeated_hour_can_be_booked_from_the_dialog(london, night, olivia, desk):
    """The 01:15 BST cell (00:15 UTC) opens the dialog with its time as the grid reads it ("01:15 BST"), and the live
    check of what the form carries is possible at that instant, never "happens twice". (Was a strict-xfail
    DEFECT.)"""
    cells = free_cells(desk.get(url("calendar", london), {"date": "2026-10-25"}))
    cell = cells[(str(night.pk), "2026-10-25", "01:15")]
    assert cell_instant(cell) == datetime(2026, 10, 25, 0, 15, tzinfo=UTC)  # the grid offers 01:15 BST
    step = desk.get(
        url("calendar_book_patient", london, olivia.pk),
        {"practitioner": night.pk, "start_at": "2026-10-25T00:15:00+00:00"},
        **HTMX,
    )
    form = step.content.decode()
    carried = dict(
        re.findall(r'<input type="(?:date|text|time|hidden)" name="(date|time|start_at)" value="([^"]*)"', form)
    )
    assert carried["time"] == "01:15 BST"
    check = desk.get(
        url("book", london, olivia.pk), {"procedure": "botox", "practitioner": night.pk, **carried}, **HTMX
    )
    assert "happens twice" not in words(check)
    assert "Possible" in words(check)


# === A sister site in another zone ================================================================================


def test_a_new_york_sister_sites_visits_are_on_its_own_calendar_in_its_own_clock_not_londons(london, ny, hart, olivia):
    """docs/frontdesk.md: 'One clinic per calendar, switch clinics'; 'times in clinic time and an offset'. Olivia
    (London's patient) has Botox at the New York site on Tuesday 10 March 10:00 EDT (New York changed on 8 March,
    London not yet: 14:00 UTC, 14:00 in London). A member of staff of the whole organisation sees it on New York's
    grid, sheet and feed at 10:00 -04:00, and nowhere on London's (neither at 10:00 nor at 14:00)."""
    dr_ny = PractitionerFactory(clinic=ny, name="Dr Chen")
    made = written(olivia, dr_ny, nyc(2026, 3, 10, 10))
    assert made.start_at == datetime(2026, 3, 10, 14, tzinfo=UTC)
    user = staff_client(london, StaffRole.RECEPTIONIST, "cq-org-desk")
    StaffMembership.objects.filter(user__username="cq-org-desk").update(clinic=None, organisation=london.organisation)

    ours = user.get(url("calendar", london), {"date": "2026-03-10"})
    assert ours.status_code == 200
    assert card(ours, made) == "" and "Dr Chen" not in words(ours) and "Olivia" not in words(ours)
    assert feed(user, london, "2026-03-10", "2026-03-11").json()["events"] == []
    assert "Olivia" not in words(user.get(url("day_sheet", london), {"date": "2026-03-10"}))

    theirs = user.get(url("calendar", ny), {"date": "2026-03-10"})
    assert "All times are clinic time, America/New_York" in words(theirs)
    assert "10:00–10:30" in card(theirs, made)
    body = feed(user, ny, "2026-03-10", "2026-03-11").json()
    assert body["timeZone"] == "America/New_York"
    assert [(e["start"], e["patient"]) for e in body["events"]] == [("2026-03-10T10:00:00-04:00", "Olivia Bennett")]
    sheet = words(user.get(url("day_sheet", ny), {"date": "2026-03-10"}))
    assert "10:00–10:30" in sheet and "times in America/New_York" in sheet


# === Working hours and time off ====================================================================================


def test_split_hours_leave_the_lunch_gap_grey_and_a_booking_there_is_refused_with_free_times(london, olivia, desk):
    """Dr Split works Tuesdays 09:00-12:00 and 14:00-18:00. On the grid 11:45 and 14:00 are working, 12:00-13:45 are
    grey and say 'outside working hours'; booking Botox at 12:30 from the cell is refused (409), offers free times,
    and writes nothing."""
    split = PractitionerFactory(clinic=london, name="Dr Split", hours=[])
    WorkingHours.objects.create(practitioner=split, weekday=1, start_time=time(9), end_time=time(12))
    WorkingHours.objects.create(practitioner=split, weekday=1, start_time=time(14), end_time=time(18))
    response = desk.get(url("calendar", london), {"date": "2026-03-03"})
    cells = free_cells(response)
    pk = str(split.pk)
    for wall in ("09:00", "11:45", "14:00", "17:45"):
        assert "outside working hours" not in cells[(pk, "2026-03-03", wall)], wall
    for wall in ("12:00", "12:30", "13:45", "18:00"):
        assert "outside working hours" in cells[(pk, "2026-03-03", wall)], wall
    refused = desk.post(
        url("book_submit", london, olivia.pk),
        {"procedure": "botox", "practitioner": pk, "start_at": ldn(2026, 3, 3, 12, 30).isoformat()},
        **HTMX,
    )
    assert refused.status_code == 409
    assert "Not booked." in squash(refused)
    assert "Dr Split does not work at 12:30 on Tuesday 3 March 2026" in words(refused)
    assert "Tue 3 Mar 14:00 Dr Split Book" in words(refused)
    assert not Appointment.objects.exists()


def test_time_off_from_ten_past_ten_closes_the_ten_oclock_quarter_hour(london, hart, desk):
    """docs/frontdesk.md: each cell knows whether it is 'in time off (hatched, with the reason)'. Time off
    10:10-10:50 on Tuesday 3 March: 10:00, 10:15, 10:30 and 10:45 each hold some of it; 09:45 and 11:00 none.
    (Was a strict-xfail DEFECT.)"""
    TimeOff.objects.create(
        practitioner=hart, start_at=ldn(2026, 3, 3, 10, 10), end_at=ldn(2026, 3, 3, 10, 50), reason="Dentist"
    )
    cells = free_cells(desk.get(url("calendar", london), {"date": "2026-03-03"}))
    pk = str(hart.pk)
    assert "Dentist" not in cells[(pk, "2026-03-03", "09:45")] and "Dentist" not in cells[(pk, "2026-03-03", "11:00")]
    for wall in ("10:15", "10:30", "10:45"):
        assert "Dentist" in cells[(pk, "2026-03-03", wall)], wall
    assert "Dentist" in cells[(pk, "2026-03-03", "10:00")]


def test_a_visit_inside_time_off_entered_later_says_so_on_its_card(london, hart, olivia, desk):
    """A visit booked before time off was entered over it says 'Practitioner away: <reason>' on its card, as Today
    does. (Was a strict-xfail QUESTION, decided: yes.)"""
    made = written(olivia, hart, ldn(2026, 3, 3, 11))
    TimeOff.objects.create(
        practitioner=hart, start_at=ldn(2026, 3, 3, 10), end_at=ldn(2026, 3, 3, 13), reason="Sick leave"
    )
    response = desk.get(url("calendar", london), {"date": "2026-03-03"})
    assert "11:00–11:30" in card(response, made)
    assert "Practitioner away: Sick leave" in card(response, made)


# === A practitioner who left =======================================================================================


@pytest.fixture
def left(london, olivia, grace):
    """Dr Gone, deactivated with two visits still to come on Tuesday 10 March (10:00 and 11:00)."""
    gone = PractitionerFactory(clinic=london, name="Dr Gone")
    visits = [written(olivia, gone, ldn(2026, 3, 10, 10)), written(grace, gone, ldn(2026, 3, 10, 11))]
    gone.is_active = False
    gone.save(update_fields=["is_active"])
    return gone, visits


def test_a_deactivated_practitioners_bookings_still_show_on_the_grid(london, hart, left, desk):
    """docs/frontdesk.md (day_grid): 'a booking with a practitioner no longer active still shows', in their column,
    whose heading says they are no longer active."""
    gone, visits = left
    response = desk.get(url("calendar", london), {"date": "2026-03-10"})
    assert re.search(
        r'<th scope="col" class="cal-head[^"]*">Dr Gone <span class="tag">No longer active</span></th>',
        response.content.decode(),
    )
    assert all(card(response, v) for v in visits)


def test_the_feed_lists_a_resource_for_every_events_practitioner(london, hart, left, desk):
    """Dr Gone's events have their resource, marked `active: false`; a day without their visits lists them not.
    (Was a strict-xfail DEFECT.)"""
    gone, _ = left
    body = feed(desk, london, "2026-03-10", "2026-03-11").json()
    assert len(body["events"]) == 2
    assert {e["resourceId"] for e in body["events"]} <= {r["id"] for r in body["resources"]}
    assert {"id": str(gone.pk), "title": "Dr Gone", "active": False} in body["resources"]
    assert str(gone.pk) not in {r["id"] for r in feed(desk, london, "2026-03-11", "2026-03-12").json()["resources"]}


def test_the_day_sheet_prints_the_visits_of_a_deactivated_practitioner(london, hart, left, desk):
    """Patients still coming to Dr Gone are on the sheet, on a page of theirs marked 'no longer active'.
    (Was a strict-xfail DEFECT.)"""
    sheet = words(desk.get(url("day_sheet", london), {"date": "2026-03-10"}))
    assert "Dr Gone (no longer active) · Tuesday 10 March 2026" in sheet
    assert "Olivia Bennett" in sheet and "Grace Turner" in sheet


def test_a_deactivated_practitioners_column_offers_no_booking(london, hart, left, desk):
    """Dr Gone's column has no link to book and no white cell; Dr Hart's still has. (Was a strict-xfail DEFECT.)"""
    gone, _ = left
    response = desk.get(url("calendar", london), {"date": "2026-03-10"})
    cells = free_cells(response)
    gone_cells = [inner for key, inner in cells.items() if key[0] == str(gone.pk)]
    assert gone_cells and not any("href" in inner for inner in gone_cells)
    page = response.content.decode()
    assert (
        f'class="cal-cell cal-cell--working" data-date="2026-03-10" data-time="09:00" data-practitioner="{gone.pk}"'
        not in page
    )
    assert any("href" in inner for key, inner in cells.items() if key[0] == str(hart.pk))


# === Statuses on the card ==========================================================================================


def test_cancelled_visits_are_hidden_unless_asked_and_then_say_cancelled(london, hart, olivia, desk):
    """docs/frontdesk.md: the grid takes `cancelled=on`; the feed leaves cancelled ones out."""
    made = written(olivia, hart, ldn(2026, 3, 3, 10), status=AppointmentStatus.CANCELLED)
    plain = desk.get(url("calendar", london), {"date": "2026-03-03"})
    assert card(plain, made) == ""
    assert cell_instant(free_cells(plain)[(str(hart.pk), "2026-03-03", "10:00")]) == ldn(2026, 3, 3, 10)
    shown = desk.get(url("calendar", london), {"date": "2026-03-03", "cancelled": "on"})
    assert "Cancelled" in card(shown, made) and "Move" not in card(shown, made)
    assert feed(desk, london, "2026-03-03", "2026-03-04").json()["events"] == []
    assert "Olivia" not in words(desk.get(url("day_sheet", london), {"date": "2026-03-03"}))


def test_with_cancelled_shown_a_live_booking_in_the_freed_slot_keeps_its_own_card(london, hart, olivia, grace, desk):
    """The live 10:15 has its own card (status, Move); the cancelled 10:00 keeps only the row before it and lists
    nobody. (Was a strict-xfail DEFECT.)"""
    cancelled = written(olivia, hart, ldn(2026, 3, 3, 10), status=AppointmentStatus.CANCELLED)
    live = written(grace, hart, ldn(2026, 3, 3, 10, 15))
    shown = desk.get(url("calendar", london), {"date": "2026-03-03", "cancelled": "on"})
    assert "Confirmed" in card(shown, live) and "Grace Turner" in card(shown, live) and "Move" in card(shown, live)
    assert "Cancelled" in card(shown, cancelled) and "Grace" not in card(shown, cancelled)


def test_no_show_pending_and_needs_review_say_so_in_words_on_the_grid_the_sheet_and_the_feed(
    london, hart, olivia, grace, desk
):
    """docs/frontdesk.md: 'Statuses are always words with an icon'; the feed gives `status` and `statusLabel`. A
    no-show has no Move link; a booking held for clearance or for review has one."""
    third = PatientFactory(clinic=london, first_name="Ivy", last_name="Held")
    no_show = written(olivia, hart, ldn(2026, 3, 2, 9), status=AppointmentStatus.NO_SHOW)
    pending = written(grace, hart, ldn(2026, 3, 2, 10), status=AppointmentStatus.PENDING_CLEARANCE)
    review = written(third, hart, ldn(2026, 3, 2, 11), status=AppointmentStatus.NEEDS_REVIEW)
    response = desk.get(url("calendar", london), {"date": "2026-03-02"})
    assert "No-show" in card(response, no_show) and "Move" not in card(response, no_show)
    assert "Pending clearance" in card(response, pending) and "Move" in card(response, pending)
    assert "Needs review" in card(response, review) and "Move" in card(response, review)
    events = feed(desk, london, "2026-03-02", "2026-03-03").json()["events"]
    assert [(e["status"], e["statusLabel"]) for e in events] == [
        ("no_show", "No-show"),
        ("pending_clearance", "Pending clearance"),
        ("needs_review", "Needs review"),
    ]
    sheet = words(desk.get(url("day_sheet", london), {"date": "2026-03-02"}))
    assert "No-show" in sheet and "Pending clearance" in sheet and "Needs review" in sheet


def test_a_course_session_is_marked_as_one_on_the_card_and_in_the_feed(london, hart, olivia, desk):
    """The card and the feed's title name the session and the course: 'Session 1 of <n> · <course>'.
    (Was a strict-xfail QUESTION, decided: yes.)"""
    plan_templates_load()
    template = PlanTemplate.objects.filter(kind=PlanKind.COURSE).order_by("code").first()
    made = written(olivia, hart, ldn(2026, 3, 3, 10), code="microneedling", minutes=60)
    plan = TreatmentPlan.objects.create(patient=olivia, template=template, clinic=london, created_at=ldn(2026, 3, 2))
    for index in range(1, template.sessions + 1):  # the plan's own sessions, the later ones not booked yet
        PlanSession.objects.create(
            plan=plan,
            index=index,
            appointment=made if index == 1 else None,
            earliest_on=date(2026, 3, 3),
            ideal_on=date(2026, 3, 3),
            latest_on=date(2026, 3, 3),
        )
    named = f"Session 1 of {template.sessions} · {template.name}"
    response = desk.get(url("calendar", london), {"date": "2026-03-03"})
    assert named in card(response, made)
    [event] = feed(desk, london, "2026-03-03", "2026-03-04").json()["events"]
    assert named in event["title"] and event["course"] == named


def test_a_merged_away_patients_visit_carries_the_survivors_name(london, hart, olivia, desk):
    """docs/frontdesk.md: 'A merged record's page redirects to the survivor's'. A visit booked for the duplicate
    'Liv Bennett' is, after the merge into Olivia, Olivia's on the grid, the sheet and the feed."""
    duplicate = PatientFactory(clinic=london, first_name="Liv", last_name="Bennet", phone="+447911123101")
    made = written(duplicate, hart, ldn(2026, 3, 4, 10))
    patient_merge(merged=duplicate, into=olivia, now=datetime.now(UTC), actor_label="qa", clinical=True)
    response = desk.get(url("calendar", london), {"date": "2026-03-04"})
    assert "Olivia Bennett" in card(response, made) and "Liv" not in card(response, made)
    [event] = feed(desk, london, "2026-03-04", "2026-03-05").json()["events"]
    assert event["patient"] == "Olivia Bennett"
    sheet = words(desk.get(url("day_sheet", london), {"date": "2026-03-04"}))
    assert "Olivia Bennett" in sheet and "Liv Bennet" not in sheet


# === Booking from a cell ===========================================================================================


def test_a_refused_booking_from_a_cell_names_the_earliest_date_and_writes_nothing(london, hart, olivia, desk):
    """docs/frontdesk.md (booking from a cell): 'a refusal answers 409 with the form and panel again'. Olivia is on
    isotretinoin (ended 1 March): microneedling from the 10:00 cell on Tuesday 3 March, posted as the dialog posts
    the cell's date and time, is refused with the earliest eligible start; no appointment, audit or message."""
    MedicationCourse.objects.create(
        patient=olivia, drug_id="isotretinoin", started_on=date(2025, 9, 1), ended_on=date(2026, 3, 1)
    )
    step = desk.get(
        url("calendar_book_patient", london, olivia.pk),
        {"practitioner": hart.pk, "start_at": ldn(2026, 3, 3, 10).isoformat()},
        **HTMX,
    )
    assert step.status_code == 200 and 'value="2026-03-03"' in step.content.decode()
    refused = desk.post(
        url("book_submit", london, olivia.pk),
        {"procedure": "microneedling", "practitioner": hart.pk, "date": "2026-03-03", "time": "10:00"},
        **HTMX,
    )
    page = squash(refused)
    assert refused.status_code == 409 and "<html" not in page
    assert "Not booked." in page and "Earliest eligible start" in page
    assert not Appointment.objects.exists()
    assert not AuditEvent.objects.exists()
    assert not OutboxMessage.objects.exists()


def test_the_same_cell_booked_from_two_tabs_one_wins_the_other_is_told_it_went(london, hart, olivia, grace, desk):
    """Two receptionists (two tabs) book Dr Hart's 10:00 Tuesday for two patients: the first is booked, the second
    answers 409 saying the time is no longer free, and only one appointment exists."""
    other_tab = staff_client(london, StaffRole.RECEPTIONIST, "cq-desk-2")
    start = ldn(2026, 3, 3, 10).isoformat()
    first = desk.post(
        url("book_submit", london, olivia.pk),
        {"procedure": "botox", "practitioner": hart.pk, "start_at": start},
        **HTMX,
    )
    second = other_tab.post(
        url("book_submit", london, grace.pk), {"procedure": "botox", "practitioner": hart.pk, "start_at": start}, **HTMX
    )
    assert first.status_code == 200 and "data-done" in first.content.decode()
    assert second.status_code == 409
    assert "Not booked." in squash(second)
    assert re.search(r"already has an appointment at that time", words(second), flags=re.I), words(second)[:600]
    assert list(Appointment.objects.values_list("patient__first_name", flat=True)) == ["Olivia"]


def test_the_same_patient_booked_twice_from_two_tabs_is_not_booked_with_two_practitioners(london, hart, olivia, desk):
    """The same patient, the same time, from two tabs: one names Dr Hart, the other 'Any practitioner' (a double
    click on two forms). The patient cannot be in two rooms: one appointment stands, and the second form is told it
    is already booked (since 6 December a booking form sent twice goes to the booking made, docs/frontdesk.md)."""
    PractitionerFactory(clinic=london, name="Dr Other")
    start = ldn(2026, 3, 3, 10).isoformat()
    first = desk.post(
        url("book_submit", london, olivia.pk),
        {"procedure": "botox", "practitioner": hart.pk, "start_at": start},
        **HTMX,
    )
    second = desk.post(url("book_submit", london, olivia.pk), {"procedure": "botox", "start_at": start}, **HTMX)
    assert first.status_code == 200
    assert second.status_code == 200 and "Already booked" in words(second), words(second)[:600]
    assert Appointment.objects.filter(patient=olivia).count() == 1


def test_a_cell_in_the_past_books_nothing(london, hart, olivia, desk):
    """A cell earlier today (08:00, the clock at 09:00) and one yesterday: a post of it is refused with 'That time
    has already passed' beside the time (a field error, as docs/frontdesk.md maps InvalidInput: the form again, not
    a redirect, never a 500), nothing is written."""
    for start in (ldn(2026, 3, 2, 8), ldn(2026, 3, 1, 10)):
        step = desk.get(
            url("calendar_book_patient", london, olivia.pk),
            {"practitioner": hart.pk, "start_at": start.isoformat()},
            **HTMX,
        )
        assert step.status_code == 200
        posted = desk.post(
            url("book_submit", london, olivia.pk),
            {"procedure": "botox", "practitioner": hart.pk, "start_at": start.isoformat()},
            **HTMX,
        )
        assert posted.status_code in (200, 400, 409), (start, posted.status_code)
        assert "data-done" not in posted.content.decode()
        assert "That time has already passed; choose a time in the future." in words(posted)
    assert not Appointment.objects.exists()


def test_a_cell_outside_working_hours_is_refused_with_free_times(london, hart, olivia, desk):
    """docs/frontdesk.md: empty cells outside working hours stay links; 'the dialog then says why not and offers
    the next free times'. 07:00 on Tuesday 3 March with Dr Hart (09:00-17:00)."""
    start = ldn(2026, 3, 3, 7).isoformat()
    cells = free_cells(desk.get(url("calendar", london), {"date": "2026-03-03"}))
    assert "outside working hours" in cells[(str(hart.pk), "2026-03-03", "08:00")]
    check = desk.get(
        url("book", london, olivia.pk),
        {"procedure": "botox", "practitioner": hart.pk, "date": "2026-03-03", "time": "07:00"},
        **HTMX,
    )
    assert "Not possible" in words(check) and "09:00" in words(check)
    refused = desk.post(
        url("book_submit", london, olivia.pk),
        {"procedure": "botox", "practitioner": hart.pk, "start_at": start},
        **HTMX,
    )
    assert refused.status_code == 409
    assert not Appointment.objects.exists()


# === Bad query parameters ==========================================================================================


ODD_FEEDS = [
    ("2026-03-02T09:00:00+25:00", "2026-03-03"),
    ("2026-03-02T24:00:00+00:00", "2026-03-03"),
    ("2026-13-01", "2026-03-03"),
    ("2026-03-02", "2026-04-13T00:00:01+00:00"),  # 42 days and a second
    ("1899-12-31", "1900-01-02"),
    ("2026-03-02" * 50, "2026-03-03"),
    ("+002026-03-02", "2026-03-03"),
    ("2026-03-02T09:00:00-24:00", "2026-03-03"),
]


@pytest.mark.parametrize(("start", "end"), ODD_FEEDS, ids=[repr(s)[:40] for s, _ in ODD_FEEDS])
def test_an_odd_range_on_the_feed_is_a_clear_400(london, hart, desk, start, end):
    response = feed(desk, london, start, end)
    assert response.status_code == 400, response.content[:300]
    assert response.json()["title"] == "Bad date range"


def test_the_feed_takes_exactly_42_days_across_a_clock_change(london, hart, olivia, desk):
    """42 local days from 1 March include the spring change (a 23-hour day): still 42 days, so allowed."""
    written(olivia, hart, ldn(2026, 4, 11, 10))
    response = feed(desk, london, "2026-03-01", "2026-04-12")
    assert response.status_code == 200
    assert [e["start"] for e in response.json()["events"]] == ["2026-04-11T10:00:00+01:00"]


@pytest.mark.parametrize(
    ("odd", "shown"),
    [
        pytest.param({}, "Tuesday 10 March 2026", id="control"),
        pytest.param({"view": "week", "practitioner": "stranger"}, "Dr Hart, week of 9 March 2026", id="stranger"),
        pytest.param({"view": "month"}, "Tuesday 10 March 2026", id="month"),
    ],
)
def test_a_bad_field_keeps_the_day_asked_for_on_the_calendar(london, hart, other_org, desk, odd, shown):
    """The valid fields stand (the day, the week view: the week of 10 March, of the first practitioner when the one
    named is not this clinic's) and the bad one is said above the grid. (Was a strict-xfail DEFECT.)"""
    stranger = PractitionerFactory(clinic=other_org, name="Dr Stranger")
    query = {"date": "2026-03-10", **odd}
    if query.get("practitioner") == "stranger":
        query["practitioner"] = str(stranger.pk)
    response = desk.get(url("calendar", london), query)
    assert response.status_code == 200
    assert "Dr Stranger" not in words(response)
    assert "Monday 2 March 2026" not in words(response) and shown in words(response)
    assert ("Left out" in words(response)) == bool(odd)


@pytest.mark.parametrize(
    ("query", "status"),
    [
        pytest.param({"date": "2026-03-10"}, 200, id="control"),
        pytest.param({"date": "2026-02-30"}, 400, id="impossible-date"),
        pytest.param({"date": "2026-03-10", "practitioner": "nope"}, 400, id="bad-practitioner"),
    ],
)
def test_a_bad_day_sheet_query_is_said_not_printed_as_today(london, hart, olivia, desk, query, status):
    """A bad query answers 400 with the page saying what is wrong and no sheet to print (neither today's nor
    everyone's). (Was a strict-xfail DEFECT.)"""
    written(olivia, hart, ldn(2026, 3, 10, 10))
    response = desk.get(url("day_sheet", london), query)
    assert response.status_code == status
    assert "Monday 2 March 2026" not in words(response)
    assert ("Olivia Bennett" in words(response)) == (status == 200)
    assert ("Nothing to print" in words(response)) == (status == 400)


def test_bad_ids_and_dates_in_the_booking_steps_are_never_a_500(london, hart, olivia, other_org, desk):
    """The cell steps with another organisation's practitioner and patient, a made-up patient, impossible and
    offset-less instants: 200 with nothing of theirs, or 404; never 500, nothing written."""
    stranger = PractitionerFactory(clinic=other_org, name="Dr Stranger")
    theirs = PatientFactory(clinic=other_org, first_name="Zed", last_name="Stranger")
    odd_cells = [
        {"practitioner": stranger.pk, "start_at": ldn(2026, 3, 3, 10).isoformat()},
        {"practitioner": "1; DROP TABLE", "start_at": "2026-02-30T10:00:00+00:00"},
        {"practitioner": hart.pk, "start_at": "2026-03-29T01:30:00"},
        {"practitioner": hart.pk, "start_at": "9999-12-31T23:59:59-14:00"},
    ]
    for query in odd_cells:
        for name, args in (("calendar_book", ()), ("calendar_book_patient", (olivia.pk,)), ("calendar_register", ())):
            response = desk.get(url(name, london, *args), query, **HTMX)
            assert response.status_code == 200, (name, query, response.status_code)
            assert "Dr Stranger" not in words(response)
    nul = desk.get(url("calendar_book", london), {"practitioner": "\x00", "start_at": "\x00"}, **HTMX)
    assert nul.status_code == 400  # config/request_guards.py refuses a NUL anywhere in the query
    for patient_id in (theirs.pk, "00000000-0000-0000-0000-000000000000"):
        response = desk.get(url("calendar_book_patient", london, patient_id), {"practitioner": hart.pk}, **HTMX)
        assert response.status_code == 404 and "Zed" not in words(response)
    assert not Appointment.objects.exists()


# === The day sheet of a busy day ===================================================================================


def test_the_day_sheet_and_the_grid_of_forty_visits_take_as_many_queries_as_of_four(
    london, desk, django_assert_max_num_queries
):
    """docs/frontdesk.md: 'as fast as one query per table'. Four practitioners with one visit each, then forty
    visits over them (with notes, areas, arrivals): the day sheet and the grid read no more queries."""
    doctors = [PractitionerFactory(clinic=london, name=f"Dr {n}") for n in range(4)]

    def fill(count: int) -> None:
        for n in range(count):
            who = PatientFactory(clinic=london, first_name=f"P{n:02d}", last_name="Busy")
            written(
                who,
                doctors[n % 4],
                ldn(2026, 3, 3, 9) + timedelta(minutes=30 * (n // 4)),
                area_id="face",
                notes=f"note {n}",
                checked_in_at=ldn(2026, 3, 2, 8) if n % 3 == 0 else None,
            )

    fill(4)
    desk.get(url("day_sheet", london), {"date": "2026-03-03"})  # warm the session and content types
    with django_assert_max_num_queries(100) as few:
        desk.get(url("day_sheet", london), {"date": "2026-03-03"})
    with django_assert_max_num_queries(100) as few_grid:
        desk.get(url("calendar", london), {"date": "2026-03-03"})
    Appointment.objects.all().delete()
    fill(40)
    with django_assert_max_num_queries(len(few.captured_queries)):
        sheet = desk.get(url("day_sheet", london), {"date": "2026-03-03"})
    with django_assert_max_num_queries(len(few_grid.captured_queries)):
        grid = desk.get(url("calendar", london), {"date": "2026-03-03"})
    assert words(sheet).count("Busy") == 40
    assert "40 appointments" in grid.content.decode()


# === Another organisation ==========================================================================================


def test_another_organisations_desk_sees_nothing_of_this_calendar(london, hart, olivia, other_org):
    """docs/frontdesk.md: another clinic's staff get 404, 'exactly like one that does not exist'; their own calendar,
    feed and sheet on the same day show nothing of ours; our ids in their addresses are ignored or 404."""
    made = written(olivia, hart, ldn(2026, 3, 3, 10))
    PractitionerFactory(clinic=other_org, name="Dr Theirs")
    outsider = staff_client(other_org, StaffRole.CLINIC_ADMIN, "cq-outsider")
    for name, query in (
        ("calendar", {"date": "2026-03-03"}),
        ("calendar_events", {"start": "2026-03-03", "end": "2026-03-04"}),
        ("day_sheet", {"date": "2026-03-03"}),
        ("calendar_book", {"practitioner": hart.pk, "start_at": ldn(2026, 3, 3, 10).isoformat()}),
    ):
        response = outsider.get(url(name, london), query)
        assert response.status_code == 404, name
        assert "Olivia" not in words(response) and "Dr Hart" not in words(response)
    own = [
        outsider.get(url("calendar", other_org), {"date": "2026-03-03", "practitioner": hart.pk}),
        outsider.get(url("calendar_events", other_org), {"start": "2026-03-03", "end": "2026-03-04"}),
        outsider.get(url("day_sheet", other_org), {"date": "2026-03-03", "practitioner": hart.pk}),
        outsider.get(url("calendar_book_patient", other_org, olivia.pk), {"practitioner": hart.pk}),
        outsider.get(url("reschedule", other_org, made.pk), {"date": "2026-03-04", "time": "10:00"}, **HTMX),
    ]
    assert own[2].status_code == 400  # our practitioner is not one of theirs: said, nothing printed
    for response in own:
        assert response.status_code in (200, 400, 404)
        assert (
            "Olivia" not in words(response) and "Dr Hart" not in words(response) and str(made.pk) not in words(response)
        )
    assert own[1].json()["events"] == []
    assert Client().get(url("calendar_events", london), {"start": "2026-03-03", "end": "2026-03-04"}).status_code == 302
