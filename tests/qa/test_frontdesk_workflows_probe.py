"""A probe of the front desk as its users live in it (docs/frontdesk.md; domain brief section 5, "Who uses it"):
receptionists book, move and cancel, see why a booking is refused and the earliest date that works, and take the
medical-history intake; clinicians record completion and clear relative contraindications with a reason.

Server-side only (Django's test client). Tenants:
* organisation A: `fdq-london` (Europe/London), its sister site `fdq-west`, and `fdq-akl` (Pacific/Auckland);
* organisation B: `fdq-ny` (America/New_York), alone.
The clock stands at the suite's Monday, 2 March 2026, 09:00 UTC (`clock`, tests/qa/conftest.py) unless a test
travels.

Every form is also sent bad input (missing fields, wrong types, impossible dates, huge strings, another clinic's
or another organisation's ids in hidden fields and URLs): the desk must say what is wrong, change nothing, and
never answer 500.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from clinic.models import (
    Appointment,
    AppointmentStatus,
    AuditAction,
    AuditEvent,
    ConditionStatus,
    HistorySource,
    MedicationCourse,
    Patient,
    PatientCondition,
    ProcedureRecord,
    StaffMembership,
    StaffRole,
    WorkingHours,
)
from plans.defaults import plan_templates_load
from plans.models import TreatmentPlan
from reminders.models import OutboxMessage
from scheduler.booking import Actor, appointment_book
from tests.factories import AppointmentFactory, ClinicFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import NOW, words

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock")]

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
AUCKLAND = ZoneInfo("Pacific/Auckland")
EVERY_DAY = list(range(7))
DESK = Actor("desk@fdq")
HUGE = "x" * 100_000


# --- Tenants, people ---------------------------------------------------------------------------------------------


@pytest.fixture
def london(catalogue):
    return ClinicFactory(code="fdq-london", name="FDQ London", timezone="Europe/London")


@pytest.fixture
def west(london):
    return ClinicFactory(code="fdq-west", name="FDQ West", timezone="Europe/London", organisation=london.organisation)


@pytest.fixture
def akl(london):
    return ClinicFactory(
        code="fdq-akl", name="FDQ Auckland", timezone="Pacific/Auckland", organisation=london.organisation
    )


@pytest.fixture
def ny(catalogue):
    return ClinicFactory(code="fdq-ny", name="FDQ New York", timezone="America/New_York")


@pytest.fixture
def hart(london):
    """London's practitioner, Monday to Saturday 09:00-18:00."""
    return PractitionerFactory(clinic=london, name="Dr Hart")


@pytest.fixture
def dr_west(west):
    return PractitionerFactory(clinic=west, name="Dr Westley")


@pytest.fixture
def dr_ny(ny):
    """New York's practitioner, every day 09:00-23:00 (late evenings included)."""
    doctor = PractitionerFactory(clinic=ny, name="Dr Chen", hours=[])
    WorkingHours.objects.bulk_create(
        WorkingHours(practitioner=doctor, weekday=d, start_time=time(9), end_time=time(23)) for d in EVERY_DAY
    )
    return doctor


@pytest.fixture
def olivia(london):
    return PatientFactory(
        clinic=london, first_name="Olivia", last_name="Bennett", phone="+447911123101", date_of_birth=date(1985, 6, 18)
    )


@pytest.fixture
def wendy(west):
    """A patient registered at the sister site (one record for the organisation)."""
    return PatientFactory(clinic=west, first_name="Wendy", last_name="Westcott", phone="+447911123202")


@pytest.fixture
def nora(ny):
    return PatientFactory(clinic=ny, first_name="Zebedee", last_name="Quuxley", phone="+12125550199")


def staff(username, role, *, clinic=None, organisation=None, csrf=False) -> Client:
    user = get_user_model().objects.create_user(username=username, password="fdq-pw-for-tests-only")
    StaffMembership.objects.create(user=user, clinic=clinic, organisation=organisation, role=role)
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    client.user = user  # to sign in again after travelling past the session's age
    return client


@pytest.fixture
def desk(london):
    return staff("fdq-reception", StaffRole.RECEPTIONIST, clinic=london)


@pytest.fixture
def doc(london):
    return staff("fdq-clinician", StaffRole.CLINICIAN, clinic=london)


@pytest.fixture
def ny_desk(ny):
    return staff("fdq-ny-reception", StaffRole.RECEPTIONIST, clinic=ny)


@pytest.fixture
def ny_doc(ny):
    return staff("fdq-ny-clinician", StaffRole.CLINICIAN, clinic=ny)


@pytest.fixture
def west_desk(west):
    return staff("fdq-west-reception", StaffRole.RECEPTIONIST, clinic=west)


# --- Reading and writing pages -----------------------------------------------------------------------------------


def url(name: str, clinic, *args) -> str:
    return reverse(f"frontdesk:{name}", args=[clinic.code, *[str(getattr(a, "pk", a)) for a in args]])


def text(response) -> str:
    """The page's visible words, entities read (what a receptionist reads)."""
    return html.unescape(words(response))


def says_what_is_wrong(response) -> bool:
    body = response.content.decode()
    return "field-error__text" in body or "alert--error" in body or "errorlist" in body


def state() -> tuple:
    """Everything a desk form may write, to show that a refused one wrote nothing."""
    return (
        sorted(
            (str(a[0]), *a[1:])
            for a in Appointment.objects.values_list(
                "id", "status", "start_at", "end_at", "practitioner_id", "clearance_reason", "cancel_reason", "notes"
            )
        ),
        sorted(
            map(
                str, PatientCondition.objects.values_list("patient_id", "condition_id", "status", "area_id", "noted_on")
            )
        ),
        sorted(map(str, MedicationCourse.objects.values_list("id", "drug_id", "started_on", "ended_on", "notes"))),
        sorted(map(str, ProcedureRecord.objects.values_list("id", "procedure_id", "performed_at", "notes"))),
        sorted(
            map(
                str,
                Patient.objects.values_list(
                    "id", "first_name", "last_name", "date_of_birth", "phone", "email", "reminder_channels"
                ),
            )
        ),
        TreatmentPlan.objects.count(),
        AuditEvent.objects.count(),
    )


def slot_starts(response) -> list[str]:
    """The `start_at` of every one-click slot form on a booking or move page, in page order."""
    return re.findall(r'name="start_at" value="([^"]+)"', response.content.decode())


def slot_forms(response) -> list[dict]:
    """Every one-click form on a booking or move page: its hidden fields, in page order."""
    forms = []
    for form in re.findall(r"<form method=\"post\"[^>]*>(.*?)</form>", response.content.decode(), flags=re.S):
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))
        if "start_at" in fields:
            forms.append(fields)
    return forms


def desk_book(client, clinic, patient, **fields):
    return client.post(url("book_submit", clinic, patient), fields)


def booked(patient, when, code="microneedling", **kwargs) -> Appointment:
    return appointment_book(
        patient=patient, procedure_code=code, start_at=when, actor=DESK, now=NOW, **kwargs
    ).appointment


def reported(patient, code, when, area="face") -> ProcedureRecord:
    return ProcedureRecord.objects.create(
        patient=patient, procedure_id=code, performed_at=when, area_id=area, source=HistorySource.REPORTED
    )


def ldn(y, m, d, hh=10, mm=0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=LONDON)


def nyc(y, m, d, hh=10, mm=0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=NEW_YORK)


def intake(*lines, version=None, extra=0) -> dict:
    """The conditions form as the page posts it: each line (condition, status, area, noted_on)."""
    data = {
        "conditions-TOTAL_FORMS": str(len(lines) + extra),
        "conditions-INITIAL_FORMS": "0",
        "conditions-MIN_NUM_FORMS": "0",
        "conditions-MAX_NUM_FORMS": "60",
    }
    for n, (condition, status, area, noted) in enumerate(lines):
        data.update(
            {
                f"conditions-{n}-condition": condition,
                f"conditions-{n}-status": status,
                f"conditions-{n}-area": area,
                f"conditions-{n}-noted_on": noted,
            }
        )
    if version is not None:
        data["intake_version"] = version
    return data


# === The calendar and the day views show clinic time ==============================================================


def test_a_new_york_clinics_calendar_schedule_sheet_and_feed_show_new_york_wall_time(ny, dr_ny, nora, ny_desk):
    """docs/frontdesk.md: 'All times on the pages are the clinic's local time'. Botox at 10:00 EST on Wed 4 March
    (15:00 UTC) reads 10:00 on the grid, the schedule, the day sheet and the feed (with its -05:00), never 15:00."""
    made = booked(nora, nyc(2026, 3, 4), "botox")
    calendar = ny_desk.get(url("calendar", ny), {"date": "2026-03-04"})
    assert calendar.status_code == 200
    assert "All times are clinic time, America/New_York" in text(calendar)
    assert "10:00–10:30" in text(calendar) and "15:00–15:30" not in text(calendar)
    schedule = ny_desk.get(url("schedule", ny), {"date": "2026-03-04"})
    assert "10:00–10:30" in text(schedule) and "15:00" not in text(schedule)
    sheet = ny_desk.get(url("day_sheet", ny), {"date": "2026-03-04"})
    assert "10:00–10:30" in text(sheet) and "times in America/New_York" in text(sheet)
    feed = ny_desk.get(url("calendar_events", ny), {"start": "2026-03-04", "end": "2026-03-05"}).json()
    assert [(e["id"], e["start"], e["end"]) for e in feed["events"]] == [
        (str(made.pk), "2026-03-04T10:00:00-05:00", "2026-03-04T10:30:00-05:00")
    ]
    detail = ny_desk.get(url("appointment", ny, made))
    assert "Wednesday 4 March 2026, 10:00–10:30 (America/New_York)" in text(detail)


@pytest.mark.parametrize(
    ("clinic_name", "zone", "day", "offset"),
    [
        ("london", LONDON, date(2026, 3, 29), "+01:00"),  # the clocks go forward at 01:00 GMT
        ("london", LONDON, date(2026, 10, 25), "+00:00"),  # and back at 02:00 BST
        ("ny", NEW_YORK, date(2026, 3, 8), "-04:00"),  # forward at 02:00 EST
        ("ny", NEW_YORK, date(2026, 11, 1), "-05:00"),  # back at 02:00 EDT
    ],
)
def test_on_the_day_the_clocks_change_a_ten_oclock_visit_reads_ten_oclock(request, clinic_name, zone, day, offset):
    """The day of a DST change: a visit at 10:00 local is drawn in the 10:00 row of the grid, listed at 10:00 on the
    schedule, the day sheet and Today, and fed with the offset in force that day; the day before and after too."""
    clinic = request.getfixturevalue(clinic_name)
    doctor = PractitionerFactory(clinic=clinic, name="Dr Sunday", hours=EVERY_DAY)
    patient = PatientFactory(clinic=clinic, first_name="Dana", last_name="Daylight")
    client = staff(f"fdq-dst-{clinic_name}", StaffRole.RECEPTIONIST, clinic=clinic)
    visits = {}
    for shift in (-1, 0, 1):
        on = day + timedelta(days=shift)
        start = datetime.combine(on, time(10), tzinfo=zone)
        visits[on] = AppointmentFactory(
            patient=patient, clinic=clinic, practitioner=doctor, start_at=start, end_at=start + timedelta(minutes=30)
        )
    calendar = client.get(url("calendar", clinic), {"date": day.isoformat()})
    body = calendar.content.decode()
    row = re.search(r'<tr class="cal-row[^"]*">\s*<th scope="row" class="cal-time">10:00.*?</tr>', body, flags=re.S)
    assert row is not None and "10:00–10:30" in row.group(0), "the visit is not in the 10:00 row"
    assert text(calendar).count("10:00–10:30") == 1
    schedule = client.get(url("schedule", clinic), {"date": day.isoformat(), "view": "week"})
    assert text(schedule).count("10:00–10:30") == sum(
        1 for on in visits if on - timedelta(days=on.weekday()) == day - timedelta(days=day.weekday())
    )
    sheet = client.get(url("day_sheet", clinic), {"date": day.isoformat()})
    assert text(sheet).count("10:00–10:30") == 1
    feed = client.get(
        url("calendar_events", clinic), {"start": day.isoformat(), "end": (day + timedelta(days=1)).isoformat()}
    )
    assert [e["start"] for e in feed.json()["events"]] == [f"{day.isoformat()}T10:00:00{offset}"]
    with time_machine.travel(datetime.combine(day, time(8), tzinfo=zone), tick=False):
        client.force_login(client.user)
        today = client.get(url("today", clinic))
    arrivals = text(today).split("Arrivals today", 1)[1].split("Needs attention", 1)[0]
    assert "10:00" in arrivals and "Dana Daylight" in arrivals


def test_a_late_new_york_visit_stays_on_its_local_day_everywhere(ny, dr_ny, nora, ny_desk):
    """A late visit: 21:30 EST on Wednesday 4 March is 02:30 UTC on Thursday. It belongs to Wednesday on the grid,
    the schedule's week, the day sheet, the feed and Today's arrivals (at 20:00 that evening), and can be checked in
    that evening; Thursday's grid and sheet do not show it."""
    made = booked(nora, nyc(2026, 3, 4, 21, 30), "botox")
    assert made.start_at == datetime(2026, 3, 5, 2, 30, tzinfo=UTC)
    wednesday = ny_desk.get(url("calendar", ny), {"date": "2026-03-04"})
    assert "21:30–22:00" in text(wednesday)
    thursday = ny_desk.get(url("calendar", ny), {"date": "2026-03-05"})
    assert "21:30–22:00" not in text(thursday) and "02:30–03:00" not in text(thursday)
    week = ny_desk.get(url("schedule", ny), {"date": "2026-03-04", "view": "week"})
    wed_column = text(week).split("Wed 4 Mar", 1)[1].split("Thu 5 Mar", 1)[0]
    assert "21:30–22:00" in wed_column
    assert "Zebedee Quuxley" in text(ny_desk.get(url("day_sheet", ny), {"date": "2026-03-04"}))
    assert "Zebedee Quuxley" not in text(ny_desk.get(url("day_sheet", ny), {"date": "2026-03-05"}))
    evening = nyc(2026, 3, 4, 20)
    with time_machine.travel(evening, tick=False):
        ny_desk.force_login(ny_desk.user)
        today = ny_desk.get(url("today", ny))
        arrivals = text(today).split("Arrivals today", 1)[1].split("Needs attention", 1)[0]
        assert "21:30" in arrivals and "Zebedee Quuxley" in arrivals
        checked = ny_desk.post(url("check_in", ny, made))
    assert checked.status_code == 302
    made.refresh_from_db()
    assert made.checked_in_at == evening


def test_booking_a_late_new_york_cell_without_javascript_books_that_evening(ny, dr_ny, nora, ny_desk):
    """Booking from an empty cell, each step a page: the 21:30 cell of Wed 4 March, the patient found, the booking
    page filled in with that evening (clinic time), 'Book' books 21:30 EST (02:30 UTC on the 5th); the card is on
    Wednesday's grid, and Today does not list it as outside working hours (09:00-23:00 New York)."""
    grid = ny_desk.get(url("calendar", ny), {"date": "2026-03-04"}).content.decode()
    cell = re.search(
        r'<a class="cal-free" href="([^"]+)"><span class="visually-hidden">Book 21:30 with Dr Chen</span>', grid
    )
    assert cell is not None
    find = ny_desk.get(html.unescape(cell.group(1)) + "&q=Quuxley")
    assert find.status_code == 200
    pick = re.search(r'<a class="btn btn--secondary pick" href="([^"]+)"', find.content.decode())
    assert pick is not None
    page = ny_desk.get(html.unescape(pick.group(1)) + "&procedure=botox")
    assert "Possible at Wed 4 Mar 2026, 21:30" in text(page)
    [book_now] = [f for f in slot_forms(page) if datetime.fromisoformat(f["start_at"]) == nyc(2026, 3, 4, 21, 30)]
    assert ny_desk.post(url("book_submit", ny, nora), book_now).status_code == 302
    made = Appointment.objects.get(patient=nora)
    assert (made.start_at, made.practitioner_id) == (datetime(2026, 3, 5, 2, 30, tzinfo=UTC), dr_ny.pk)
    assert "21:30–22:00" in text(ny_desk.get(url("calendar", ny), {"date": "2026-03-04"}))
    with time_machine.travel(nyc(2026, 3, 4, 12), tick=False):
        ny_desk.force_login(ny_desk.user)
        today = text(ny_desk.get(url("today", ny)))
    assert "Outside working hours" not in today and "Practitioner away" not in today


def test_a_visit_running_past_midnight_is_drawn_on_its_first_day_and_breaks_no_page(ny, dr_ny, nora, ny_desk):
    """Not expected, but written by an integration: 23:30 to 00:15 local. Its day's grid shows it, to the end of the
    day; the next day's grid, schedule and sheet answer 200."""
    start = nyc(2026, 3, 4, 23, 30)
    AppointmentFactory(
        patient=nora,
        clinic=ny,
        practitioner=dr_ny,
        procedure_id="filler",
        start_at=start,
        end_at=start + timedelta(minutes=45),
    )
    first = ny_desk.get(url("calendar", ny), {"date": "2026-03-04"})
    assert first.status_code == 200 and "23:30–00:15" in text(first)
    for name in ("calendar", "schedule", "day_sheet"):
        assert ny_desk.get(url(name, ny), {"date": "2026-03-05"}).status_code == 200
    assert (
        ny_desk.get(url("calendar", ny), {"date": "2026-03-04", "view": "week", "practitioner": dr_ny.pk}).status_code
        == 200
    )


def test_a_visit_at_a_sister_site_in_another_zone_reads_in_that_sites_time(london, akl, olivia, desk):
    doctor = PractitionerFactory(clinic=akl, name="Dr Kiwi", hours=[])
    WorkingHours.objects.bulk_create(
        WorkingHours(practitioner=doctor, weekday=d, start_time=time(6), end_time=time(18)) for d in EVERY_DAY
    )
    start = datetime(2026, 3, 10, 7, tzinfo=AUCKLAND)
    booked(olivia, start, "botox", clinic_id=akl.pk)
    page = text(desk.get(url("patient", london, olivia)))
    assert "at FDQ Auckland, its local time (NZDT)" in page
    assert "Tue 10 Mar 2026, 07:00" in page
    # A rule's conflict names it in that site's clock too (the rule's own message reckons in this desk's zone).
    assert "on Tue 10 Mar 2026, 07:00 (confirmed) at FDQ Auckland, its local time (NZDT)" in page
    assert "on Mon 9 Mar 2026, 18:00 (confirmed)" not in page  # London's clock for it, unnamed, as it read before


def test_the_patients_page_and_the_booking_page_agree_on_the_earliest_date(london, hart, akl, desk):
    kiwi = PatientFactory(clinic=akl, first_name="Aroha", last_name="Kiwi")
    ProcedureRecord.objects.create(
        patient=kiwi, procedure_id="botox", performed_at=ldn(2026, 2, 25), area_id="face", source=HistorySource.CLINIC
    )
    booking = text(
        desk.get(url("book", london, kiwi), {"procedure": "microneedling", "date": "2026-03-10", "time": "14:00"})
    )
    assert "Not possible at Tue 10 Mar 2026, 14:00" in booking
    assert "Earliest eligible start: Wed 11 Mar 2026" in booking
    outlook = text(desk.get(url("patient", london, kiwi)))
    row = outlook.split("Microneedling (collagen induction therapy)", 1)[1][:200]
    assert "Not before Wed 11 Mar 2026" in row, row


# === Booking at the desk: a refusal says why and from when, and that date books ===================================


def test_a_refused_booking_says_why_and_the_earliest_date_which_then_books(london, hart, olivia, desk):
    """Domain brief section 5: receptionists 'see why a booking is refused and the earliest date that works'.
    Botox done on Wed 25 Feb: microneedling on Thu 5 March is refused (2 weeks, rule 001), the earliest eligible
    start is Wed 11 March; the POST of the refused time books nothing (409, same reason); the first free time
    offered is on 11 March and one click books it, confirmed."""
    ProcedureRecord.objects.create(
        patient=olivia, procedure_id="botox", performed_at=ldn(2026, 2, 25), area_id="face", source=HistorySource.CLINIC
    )
    check = desk.get(url("book", london, olivia), {"procedure": "microneedling", "date": "2026-03-05", "time": "10:00"})
    page = text(check)
    assert "Not possible at Thu 5 Mar 2026, 10:00" in page
    assert "Botox" in page and "2 weeks" in page
    assert "Earliest eligible start: Wed 11 Mar 2026" in page
    assert "Rule source: [001]" in page
    before = state()
    refused = desk_book(desk, london, olivia, procedure="microneedling", date="2026-03-05", time="10:00")
    assert refused.status_code == 409
    assert "Not booked." in text(refused) and "Earliest eligible start: Wed 11 Mar 2026" in text(refused)
    assert state() == before
    [first, *_] = slot_forms(refused)
    assert datetime.fromisoformat(first["start_at"]).astimezone(LONDON).date() == date(2026, 3, 11)
    done = desk.post(url("book_submit", london, olivia), first)
    assert done.status_code == 302, text(done)[:400]
    made = Appointment.objects.get(patient=olivia)
    assert made.status == AppointmentStatus.CONFIRMED
    assert made.start_at == datetime.fromisoformat(first["start_at"])
    assert made.start_at.astimezone(LONDON).date() == date(2026, 3, 11)


def test_the_earliest_date_at_a_new_york_clinic_counts_new_york_days(ny, dr_ny, nora, ny_desk):
    """domain.md: gaps in weeks are calendar gaps in the clinic's local time. Botox at 23:00 EST on Fri 20 Feb (04:00
    UTC on the 21st): microneedling is possible from Fri 6 March (New York), not Sat 7; the desk says so and the
    first free time it offers, 09:00 on 6 March, books."""
    ProcedureRecord.objects.create(
        patient=nora,
        procedure_id="botox",
        performed_at=nyc(2026, 2, 20, 23),
        area_id="face",
        source=HistorySource.CLINIC,
    )
    check = ny_desk.get(url("book", ny, nora), {"procedure": "microneedling", "date": "2026-03-05", "time": "10:00"})
    assert "Earliest eligible start: Fri 6 Mar 2026" in text(check)
    [first, *_] = slot_forms(check)
    assert datetime.fromisoformat(first["start_at"]) == nyc(2026, 3, 6, 9)
    assert ny_desk.post(url("book_submit", ny, nora), first).status_code == 302
    assert Appointment.objects.get(patient=nora).start_at == nyc(2026, 3, 6, 9)


def test_an_isotretinoin_wait_ending_across_the_clocks_change_offers_its_first_day(london, hart, olivia, desk):
    """domain.md: 6 months after the end of an isotretinoin course (calendar months, clinic time). A course ended on
    Wed 30 September 2025: microneedling on Fri 27 March 2026 is refused, the earliest eligible start is Mon 30 March
    (the day after the clocks go forward), and its first free time, 09:00 BST (08:00 UTC), books; the 12-month
    caution still shows."""
    MedicationCourse.objects.create(
        patient=olivia, drug_id="isotretinoin", started_on=date(2025, 3, 1), ended_on=date(2025, 9, 30)
    )
    refused = desk_book(desk, london, olivia, procedure="microneedling", date="2026-03-27", time="10:00")
    assert refused.status_code == 409
    assert "Earliest eligible start: Mon 30 Mar 2026" in text(refused)
    [first, *_] = slot_forms(refused)
    assert datetime.fromisoformat(first["start_at"]) == datetime(2026, 3, 30, 8, tzinfo=UTC)
    assert "Mon 30 Mar" in text(refused) and "09:00" in text(refused)
    assert desk.post(url("book_submit", london, olivia), first).status_code == 302
    made = Appointment.objects.get(patient=olivia)
    assert made.start_at.astimezone(LONDON) == ldn(2026, 3, 30, 9)
    assert made.status == AppointmentStatus.CONFIRMED
    page = text(desk.get(url("appointment", london, made)))
    assert "Monday 30 March 2026, 09:00–10:00 (Europe/London)" in page


def test_a_booking_typed_as_a_date_and_time_is_read_in_clinic_time_on_a_dst_day(ny, dr_ny, nora, ny_desk):
    """The booking form's date and time are clinic time: 10:00 on Sun 8 March in New York (clocks forward at 02:00)
    is 14:00 UTC; 02:30 that night does not exist and is an error next to the time, nothing booked."""
    skipped = desk_book(ny_desk, ny, nora, procedure="botox", date="2026-03-08", time="02:30")
    assert skipped.status_code != 500 and says_what_is_wrong(skipped)
    assert not Appointment.objects.exists()
    made = desk_book(ny_desk, ny, nora, procedure="botox", date="2026-03-08", time="10:00", practitioner=str(dr_ny.pk))
    assert made.status_code == 302, text(made)[:400]
    assert Appointment.objects.get(patient=nora).start_at == datetime(2026, 3, 8, 14, tzinfo=UTC)


def test_a_booking_forward_that_would_crowd_a_later_one_is_refused_with_a_date(london, hart, olivia, desk):
    """domain.md: rules are checked in both directions. Microneedling booked on Fri 20 March: Botox on Mon 16 March
    (microneedling must be 2 weeks after Botox) is refused; the desk names the booked microneedling."""
    later = booked(olivia, ldn(2026, 3, 20))
    refused = desk_book(desk, london, olivia, procedure="botox", date="2026-03-16", time="10:00")
    assert refused.status_code == 409
    page = text(refused)
    assert "Not booked." in page and "Microneedling" in page
    assert reverse("frontdesk:appointment", args=[london.code, later.pk]) in refused.content.decode()
    assert Appointment.objects.filter(patient=olivia).count() == 1


# === Move and cancel ============================================================================================


def test_a_refused_move_changes_nothing_and_an_allowed_one_moves(london, hart, olivia, desk):
    """Reschedule re-checks: microneedling on Wed 11 March after Botox on 25 Feb cannot move to Tue 10 March (409,
    unchanged, why and the earliest date shown); it moves to Thu 12 March 11:00 and the move is audited."""
    reported(olivia, "botox", ldn(2026, 2, 25))
    made = booked(olivia, ldn(2026, 3, 11))
    before = state()
    refused = desk.post(url("reschedule", london, made), {"date": "2026-03-10", "time": "10:00"})
    assert refused.status_code == 409
    assert "Not moved." in text(refused) and "Earliest eligible start: Wed 11 Mar 2026" in text(refused)
    assert state() == before
    moved = desk.post(url("reschedule", london, made), {"date": "2026-03-12", "time": "11:00", "reason": "asked"})
    assert moved.status_code == 302
    made.refresh_from_db()
    assert made.start_at == ldn(2026, 3, 12, 11)
    assert made.audit_events.filter(action=AuditAction.RESCHEDULED, reason="asked").exists()


def test_a_cancelled_booking_stops_counting_for_the_intervals(london, hart, olivia, desk):
    """domain.md: 'Rescheduling re-checks; cancelling frees.' Botox booked Tue 10 March keeps microneedling off Mon 16
    March; cancelled at the desk, the same microneedling books, and the grid no longer shows the Botox (unless
    cancelled ones are asked for)."""
    botox = booked(olivia, ldn(2026, 3, 10), "botox")
    assert (
        desk_book(desk, london, olivia, procedure="microneedling", date="2026-03-16", time="10:00").status_code == 409
    )
    cancelled = desk.post(url("cancel", london, botox), {"reason": "patient asked"})
    assert cancelled.status_code == 302
    botox.refresh_from_db()
    assert botox.status == AppointmentStatus.CANCELLED and botox.cancel_reason == "patient asked"
    check = desk.get(url("book", london, olivia), {"procedure": "microneedling", "date": "2026-03-16", "time": "10:00"})
    assert "Possible at Mon 16 Mar 2026, 10:00" in text(check)
    assert (
        desk_book(desk, london, olivia, procedure="microneedling", date="2026-03-16", time="10:00").status_code == 302
    )
    grid = text(desk.get(url("calendar", london), {"date": "2026-03-10"}))
    assert "Olivia Bennett" not in grid
    assert "Olivia Bennett" in text(desk.get(url("calendar", london), {"date": "2026-03-10", "cancelled": "on"}))


def test_a_cancelled_booking_frees_its_slot_for_another_patient(london, hart, olivia, desk):
    """The slot is free again: another patient books Dr Hart at the same time once it is cancelled."""
    first = booked(olivia, ldn(2026, 3, 10), "botox", practitioner_id=hart.pk)
    other = PatientFactory(clinic=london, first_name="Second", last_name="Patient")
    taken = desk_book(
        desk, london, other, procedure="botox", date="2026-03-10", time="10:00", practitioner=str(hart.pk)
    )
    assert taken.status_code == 409 and not Appointment.objects.filter(patient=other).exists()
    assert desk.post(url("cancel", london, first), {}).status_code == 302
    again = desk_book(
        desk, london, other, procedure="botox", date="2026-03-10", time="10:00", practitioner=str(hart.pk)
    )
    assert again.status_code == 302
    assert Appointment.objects.get(patient=other).start_at == ldn(2026, 3, 10)


def test_cancelling_twice_or_moving_a_cancelled_booking_is_refused_not_a_500(london, hart, olivia, desk):
    made = booked(olivia, ldn(2026, 3, 10), "botox")
    assert desk.post(url("cancel", london, made), {}).status_code == 302
    before = state()
    again = desk.post(url("cancel", london, made), {"reason": "again"})
    assert again.status_code == 409 and says_what_is_wrong(again)
    move = desk.post(url("reschedule", london, made), {"date": "2026-03-12", "time": "10:00"})
    assert move.status_code == 409 and says_what_is_wrong(move)
    assert state() == before


# === Intake at the desk: contraindications ========================================================================


def test_an_absolute_contraindication_taken_at_the_desk_refuses_with_no_date(london, hart, olivia, desk):
    """Scleroderma recorded in the intake: microneedling is refused at any date ('No date is possible'), and the POST
    books nothing; Botox is unaffected."""
    page = desk.get(url("patient_history", london, olivia))
    version = re.search(r'name="intake_version" value="([^"]*)"', page.content.decode()).group(1)
    saved = desk.post(
        url("patient_history", london, olivia), intake(("scleroderma", "active", "", ""), version=version)
    )
    assert saved.status_code == 302
    assert PatientCondition.objects.filter(patient=olivia, condition_id="scleroderma").exists()
    check = desk.get(url("book", london, olivia), {"procedure": "microneedling", "date": "2026-03-10", "time": "10:00"})
    assert "Not possible" in text(check) and "No date is possible" in text(check)
    refused = desk_book(desk, london, olivia, procedure="microneedling", date="2026-03-10", time="10:00")
    assert refused.status_code == 409 and not Appointment.objects.exists()
    assert desk_book(desk, london, olivia, procedure="botox", date="2026-03-10", time="10:00").status_code == 302


def test_a_relative_contraindication_holds_the_booking_for_a_clinician(london, hart, olivia, desk, doc):
    """Psoriasis (active) taken at the desk: microneedling is possible 'held pending clearance' and is booked Pending
    clearance; Today lists it as waiting; a receptionist cannot clear it (403); a clinician must give a reason
    (an empty one is refused, nothing changes); with one it is confirmed and the reason and clinician are audited."""
    assert desk.post(url("patient_history", london, olivia), intake(("psoriasis", "active", "", ""))).status_code == 302
    check = desk.get(url("book", london, olivia), {"procedure": "microneedling", "date": "2026-03-10", "time": "10:00"})
    assert "held pending clearance" in text(check)
    assert (
        desk_book(desk, london, olivia, procedure="microneedling", date="2026-03-10", time="10:00").status_code == 302
    )
    made = Appointment.objects.get(patient=olivia)
    assert made.status == AppointmentStatus.PENDING_CLEARANCE
    assert "Waiting for clearance 1" in text(desk.get(url("today", london)))
    before = state()
    refused = desk.post(url("clear", london, made), {"reason": "Looks fine to me"})
    assert refused.status_code == 403 and state() == before
    empty = doc.post(url("clear", london, made), {"reason": "   "})
    assert empty.status_code == 400 and says_what_is_wrong(empty) and state() == before
    too_long = doc.post(url("clear", london, made), {"reason": "y" * 2001})
    assert too_long.status_code == 400 and says_what_is_wrong(too_long) and state() == before
    cleared = doc.post(url("clear", london, made), {"reason": "Psoriasis quiescent; test patch done"})
    assert cleared.status_code == 302
    made.refresh_from_db()
    assert made.status == AppointmentStatus.CONFIRMED
    event = made.audit_events.get(action=AuditAction.CLEARED)
    assert event.reason == "Psoriasis quiescent; test patch done"
    assert event.actor_user.username == "fdq-clinician"
    assert "Waiting for clearance 0" in text(desk.get(url("today", london)))


def test_clearing_a_booking_that_is_not_pending_is_refused(london, hart, olivia, doc):
    made = booked(olivia, ldn(2026, 3, 10), "botox")
    before = state()
    response = doc.post(url("clear", london, made), {"reason": "why not"})
    assert response.status_code == 409 and says_what_is_wrong(response)
    assert state() == before


def test_an_ongoing_anticoagulant_course_added_at_the_desk_refuses_microneedling(london, hart, olivia, desk):
    added = desk.post(
        url("medication_add", london, olivia), {"course-drug": "anticoagulant", "course-started_on": "2026-02-01"}
    )
    assert added.status_code == 302
    check = desk.get(url("book", london, olivia), {"procedure": "microneedling", "date": "2026-03-10", "time": "10:00"})
    assert "Not possible" in text(check)
    assert (
        desk_book(desk, london, olivia, procedure="microneedling", date="2026-03-10", time="10:00").status_code == 409
    )
    assert not Appointment.objects.exists()


# === Clinician's acts and the receptionist's limits ===============================================================


def started(patient, clinic, practitioner, minutes_ago=60, status=AppointmentStatus.CONFIRMED):
    start = NOW - timedelta(minutes=minutes_ago)
    return AppointmentFactory(
        patient=patient,
        clinic=clinic,
        practitioner=practitioner,
        start_at=start,
        end_at=start + timedelta(minutes=30),
        status=status,
    )


@pytest.mark.parametrize("action", ["complete", "no_show", "clear"])
def test_a_receptionist_cannot_do_a_clinicians_act(london, hart, olivia, desk, action):
    status = AppointmentStatus.PENDING_CLEARANCE if action == "clear" else AppointmentStatus.CONFIRMED
    made = started(olivia, london, hart, status=status)
    before = state()
    response = desk.post(url(action, london, made), {"reason": "a reason"})
    assert response.status_code == 403 and "You can't do that" in text(response)
    assert state() == before


def test_a_clinician_completes_a_started_visit_and_it_enters_the_history(london, hart, olivia, doc):
    made = started(olivia, london, hart)
    response = doc.post(url("complete", london, made))
    assert response.status_code == 302
    made.refresh_from_db()
    assert made.status == AppointmentStatus.COMPLETED
    assert ProcedureRecord.objects.filter(patient=olivia, appointment=made, performed_at=made.start_at).exists()
    aftercare = doc.get(url("aftercare", london, made))
    assert aftercare.status_code == 200
    again = doc.post(url("complete", london, made))
    assert again.status_code == 409 and ProcedureRecord.objects.filter(appointment=made).count() == 1


def test_a_visit_still_to_come_cannot_be_completed_or_marked_missed(london, hart, olivia, doc):
    made = booked(olivia, ldn(2026, 3, 10), "botox")
    before = state()
    for action in ("complete", "no_show"):
        response = doc.post(url(action, london, made))
        assert response.status_code == 409 and says_what_is_wrong(response), action
    assert state() == before


def test_a_pending_booking_cannot_be_completed_before_it_is_cleared(london, hart, olivia, doc):
    made = started(olivia, london, hart, status=AppointmentStatus.PENDING_CLEARANCE)
    before = state()
    response = doc.post(url("complete", london, made))
    assert response.status_code == 409
    assert "A clinician must clear this booking before treatment." in text(response)
    assert state() == before


def test_a_completed_visit_counts_for_the_intervals_and_a_missed_one_does_not(london, hart, olivia, doc, desk):
    """A treatment done enters the timeline (microneedling 2 weeks after the Botox done today: not before Mon 16
    March); a Botox visit marked a no-show is no procedure event, so it holds nothing back."""
    done = started(olivia, london, hart)
    assert doc.post(url("complete", london, done)).status_code == 302
    refused = desk_book(desk, london, olivia, procedure="microneedling", date="2026-03-09", time="10:00")
    assert refused.status_code == 409 and "Earliest eligible start: Mon 16 Mar 2026" in text(refused)
    other = PatientFactory(clinic=london, first_name="Missy", last_name="Absent")
    missed = started(other, london, hart, minutes_ago=120)
    assert doc.post(url("no_show", london, missed)).status_code == 302
    missed.refresh_from_db()
    assert missed.status == AppointmentStatus.NO_SHOW
    assert desk_book(desk, london, other, procedure="microneedling", date="2026-03-09", time="10:00").status_code == 302


def test_a_cleared_booking_moved_at_the_desk_keeps_its_clearance(london, hart, olivia, desk, doc):
    """docs/frontdesk.md: 'Cleared already ... the move keeps that clearance'. Eczema history: microneedling is held,
    a clinician clears it; the receptionist moves it two days later and it stays confirmed."""
    PatientCondition.objects.create(patient=olivia, condition_id="eczema", status=ConditionStatus.HISTORY)
    made = booked(olivia, ldn(2026, 3, 10))
    assert made.status == AppointmentStatus.PENDING_CLEARANCE
    assert doc.post(url("clear", london, made), {"reason": "Eczema quiescent for 2 years"}).status_code == 302
    check = desk.get(url("reschedule", london, made), {"date": "2026-03-12", "time": "10:00"})
    assert "Cleared already" in text(check) and "will be confirmed" in text(check)
    assert desk.post(url("reschedule", london, made), {"date": "2026-03-12", "time": "10:00"}).status_code == 302
    made.refresh_from_db()
    assert (made.start_at, made.status) == (ldn(2026, 3, 12), AppointmentStatus.CONFIRMED)


@pytest.mark.parametrize(
    ("area", "held"),
    [("face", True), ("neck", False), ("", True)],
    ids=["same-area", "other-area", "area-not-given"],
)
def test_a_tattoo_in_the_area_holds_microneedling_there_and_when_no_area_is_given(
    london, hart, olivia, desk, area, held
):
    """domain.md: 'tattoo or permanent makeup in the treatment area: relative, area-specific'. Recorded on the face at
    the desk: microneedling on the face is held for clearance, on the neck it is not; with no area given the safer
    reading holds it too."""
    assert (
        desk.post(url("patient_history", london, olivia), intake(("tattoo_in_area", "active", "face", ""))).status_code
        == 302
    )
    response = desk_book(desk, london, olivia, procedure="microneedling", area=area, date="2026-03-10", time="10:00")
    assert response.status_code == 302
    made = Appointment.objects.get(patient=olivia)
    assert (made.status == AppointmentStatus.PENDING_CLEARANCE) is held


# === A booking that needs review after a record change =============================================================


def test_a_procedure_reported_at_the_desk_flags_a_booking_which_a_move_resolves(london, hart, olivia, desk):
    """docs/frontdesk.md, Today: 'the bookings a record change made unsafe (needs attention)'. Microneedling booked
    Thu 12 March; the desk records Botox done elsewhere on Sun 1 March: the booking needs review and Today lists it
    with why; moving it to the earliest date the move page offers confirms it and clears the list."""
    made = booked(olivia, ldn(2026, 3, 12))
    recorded = desk.post(
        url("procedure_add", london, olivia),
        {"record-procedure": "botox", "record-performed_on": "2026-03-01", "record-area": "face"},
    )
    assert recorded.status_code == 302
    made.refresh_from_db()
    assert made.status == AppointmentStatus.NEEDS_REVIEW
    today = text(desk.get(url("today", london)))
    attention = today.split("Needs attention", 1)[1].split("Waiting for clearance", 1)[0]
    assert "Olivia Bennett" in attention and "Thu 12 Mar, 10:00" in attention
    page = desk.get(url("reschedule", london, made), {"date": "2026-03-12", "time": "10:00"})
    assert "Earliest eligible start: Sun 15 Mar 2026" in text(page)
    [first, *_] = slot_forms(page)
    assert datetime.fromisoformat(first["start_at"]).astimezone(LONDON).date() >= date(2026, 3, 15)
    moved = desk.post(url("reschedule", london, made), first)
    assert moved.status_code == 302, text(moved)[:300]
    made.refresh_from_db()
    assert made.status == AppointmentStatus.CONFIRMED
    assert (
        "Olivia Bennett"
        not in text(desk.get(url("today", london))).split("Needs attention", 1)[1].split("Waiting for clearance", 1)[0]
    )


def test_a_booking_needing_review_has_a_move_link_on_the_calendar(london, hart, olivia, desk):
    made = booked(olivia, ldn(2026, 3, 12))
    desk.post(url("procedure_add", london, olivia), {"record-procedure": "botox", "record-performed_on": "2026-03-01"})
    made.refresh_from_db()
    assert made.status == AppointmentStatus.NEEDS_REVIEW
    grid = desk.get(url("calendar", london), {"date": "2026-03-12"}).content.decode()
    assert "Olivia Bennett" in grid
    assert f'class="cal-appt__move" href="{url("reschedule", london, made)}"' in grid


def test_the_page_of_a_booking_needing_review_says_why(london, hart, olivia, desk, doc):
    made = booked(olivia, ldn(2026, 3, 12))
    desk.post(
        url("procedure_add", london, olivia),
        {"record-procedure": "botox", "record-performed_on": "2026-03-01", "record-area": "face"},
    )
    made.refresh_from_db()
    assert made.status == AppointmentStatus.NEEDS_REVIEW
    [reason] = made.review_reasons
    with time_machine.travel(ldn(2026, 3, 12, 10, 15), tick=False):
        doc.force_login(doc.user)
        refused = doc.post(url("complete", london, made))
    assert refused.status_code == 409 and "see its review reasons" in text(refused)
    assert "Needs review" in text(refused)
    assert reason["message"] in text(refused)


def test_a_course_ended_at_the_desk_releases_the_booking_it_flagged(london, hart, olivia, desk):
    """domain.md section 6: a booking that needs review leaves it 'by a correction of the record'. An anticoagulant
    course recorded as ongoing flags Tuesday's microneedling; recording that it ended on 1 March releases it."""
    made = booked(olivia, ldn(2026, 3, 10))
    assert (
        desk.post(
            url("medication_add", london, olivia), {"course-drug": "anticoagulant", "course-started_on": "2026-02-01"}
        ).status_code
        == 302
    )
    made.refresh_from_db()
    assert made.status == AppointmentStatus.NEEDS_REVIEW
    course = MedicationCourse.objects.get(patient=olivia)
    ended = desk.post(url("medication_end", london, olivia, course), {f"end-{course.pk}-ended_on": "2026-03-01"})
    assert ended.status_code == 302
    made.refresh_from_db()
    assert made.status == AppointmentStatus.CONFIRMED


# === Plans and courses from the desk ===============================================================================


@pytest.fixture
def templates(catalogue):
    plan_templates_load()


def test_a_course_planned_at_the_desk_books_every_session_shown(london, hart, olivia, desk, templates):
    page = desk.get(url("plan_new", london, olivia), {"template": "microneedling-course", "start_from": "2026-03-09"})
    assert page.status_code == 200
    sessions = re.findall(r'name="session" value="([^"]+)"', page.content.decode())
    assert len(sessions) == 3
    posted = desk.post(
        url("plan_book", london, olivia),
        {"template": "microneedling-course", "start_from": "2026-03-09", "session": sessions},
    )
    assert posted.status_code == 302, text(posted)[:400]
    plan = TreatmentPlan.objects.get(patient=olivia)
    starts = sorted(Appointment.objects.filter(patient=olivia).values_list("start_at", flat=True))
    assert [s.isoformat() for s in starts] == sorted(
        datetime.fromisoformat(v.partition("|")[0]).astimezone(UTC).isoformat() for v in sessions
    )
    assert desk.get(url("plan", london, plan)).status_code == 200


def test_a_course_whose_sessions_name_another_clinics_practitioner_books_nothing(
    london, hart, dr_west, dr_ny, olivia, desk, templates
):
    """The proposal's hidden fields carry each session's practitioner: one of the sister site or of another
    organisation put there books nothing, and the page says why."""
    page = desk.get(url("plan_new", london, olivia), {"template": "microneedling-course", "start_from": "2026-03-09"})
    sessions = re.findall(r'name="session" value="([^"]+)"', page.content.decode())
    assert len(sessions) == 3
    before = state()
    for doctor in (dr_west, dr_ny):
        swapped = [f"{value.partition('|')[0]}|{doctor.pk}" for value in sessions]
        posted = desk.post(
            url("plan_book", london, olivia),
            {"template": "microneedling-course", "start_from": "2026-03-09", "session": swapped},
        )
        assert posted.status_code in (200, 400, 409) and says_what_is_wrong(posted)
        assert "Dr Chen" not in text(posted)
    assert state() == before


def refused_each(client, path, cases, *, statuses=(200, 400, 409)):
    """Post each case to `path`: every one answered with one of `statuses` and what is wrong said on the page, and
    nothing written. The cases run in one test (one set-up), each named in a failure."""
    for name, fields in cases:
        before = state()
        response = client.post(path, fields)
        assert response.status_code in statuses, (name, response.status_code)
        assert says_what_is_wrong(response), (name, text(response)[:300])
        assert state() == before, name


BAD_PLANS = [
    ("30-february", {"template": "microneedling-course", "start_from": "2026-02-30"}),
    ("year-9999", {"template": "microneedling-course", "start_from": "9999-12-31"}),
    ("date-huge", {"template": "microneedling-course", "start_from": HUGE}),
    ("unknown-course", {"template": "no-such-course", "start_from": "2026-03-09"}),
    ("bad-practitioner", {"template": "microneedling-course", "start_from": "2026-03-09", "practitioner": "x"}),
    ("bad-weekday", {"template": "microneedling-course", "start_from": "2026-03-09", "weekdays": "9"}),
    ("naive-session", {"template": "microneedling-course", "start_from": "2026-03-09", "session": "2026-03-09T10:00"}),
    (
        "session-30-feb",
        {"template": "microneedling-course", "start_from": "2026-03-09", "session": "2026-02-30T10:00:00+00:00|"},
    ),
    ("session-huge", {"template": "microneedling-course", "start_from": "2026-03-09", "session": HUGE}),
    ("no-course", {"start_from": "2026-03-09"}),
]


def test_bad_plan_input_books_nothing_and_says_so(london, hart, olivia, desk, templates):
    for name, fields in BAD_PLANS:
        shown = desk.get(url("plan_new", london, olivia), {k: v for k, v in fields.items() if k != "session"})
        assert shown.status_code < 500, name
    refused_each(desk, url("plan_book", london, olivia), BAD_PLANS)


# === Every form with bad input: a clear error, nothing changed, never a 500 =======================================


BAD_BOOKINGS = [
    ("nothing", {}),
    ("no-procedure", {"date": "2026-03-10", "time": "10:00"}),
    ("no-time", {"procedure": "botox"}),
    ("30-february", {"procedure": "botox", "date": "2026-02-30", "time": "10:00"}),
    ("bad-time", {"procedure": "botox", "date": "2026-03-10", "time": "25:61"}),
    ("bad-date", {"procedure": "botox", "date": "10/03/2026x", "time": "10:00"}),
    ("year-1", {"procedure": "botox", "date": "0001-01-01", "time": "10:00"}),
    ("year-9999", {"procedure": "botox", "date": "9999-12-31", "time": "23:59"}),
    ("yesterday", {"procedure": "botox", "date": "2026-03-01", "time": "10:00"}),
    ("earlier-today", {"procedure": "botox", "date": "2026-03-02", "time": "08:00"}),
    ("instant-an-hour-ago", {"procedure": "botox", "start_at": "2026-03-02T08:00:00+00:00"}),
    ("sunday-nobody-works", {"procedure": "botox", "date": "2026-03-08", "time": "10:00"}),
    ("naive-instant", {"procedure": "botox", "start_at": "2026-03-10T10:00:00"}),
    ("instant-30-feb", {"procedure": "botox", "start_at": "2026-02-30T10:00:00+00:00"}),
    ("instant-end-of-time", {"procedure": "botox", "start_at": "9999-12-31T23:59:00-14:00"}),
    ("instant-bad-offset", {"procedure": "botox", "start_at": "2026-03-10T10:00:00+25:00"}),
    ("instant-huge", {"procedure": "botox", "start_at": HUGE}),
    ("procedure-huge", {"procedure": HUGE, "date": "2026-03-10", "time": "10:00"}),
    ("not-bookable", {"procedure": "isotretinoin", "date": "2026-03-10", "time": "10:00"}),
    ("unknown-area", {"procedure": "botox", "area": "elbow", "date": "2026-03-10", "time": "10:00"}),
    ("bad-uuid", {"procedure": "botox", "practitioner": "nope", "date": "2026-03-10", "time": "10:00"}),
    ("nul", {"procedure": "botox", "date": "2026-03-10\x00", "time": "10:00"}),
]


def test_a_bad_booking_post_books_nothing_and_says_what_is_wrong(london, hart, olivia, desk):
    refused_each(desk, url("book_submit", london, olivia), BAD_BOOKINGS)


def test_the_live_check_with_bad_input_answers_not_a_500(london, hart, olivia, desk):
    for name, fields in BAD_BOOKINGS:
        query = {k: v for k, v in fields.items() if "\x00" not in str(v)}
        for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
            assert desk.get(url("book", london, olivia), query, **headers).status_code < 500, name


def test_another_clinics_practitioner_in_the_booking_form_is_refused(
    london, west, hart, dr_west, ny, dr_ny, olivia, desk
):
    """Hidden fields name a practitioner: one at the sister site or at another organisation is not a choice here."""
    cases = [
        (doctor.name, {"procedure": "botox", "practitioner": str(doctor.pk), "start_at": ldn(2026, 3, 10).isoformat()})
        for doctor in (dr_west, dr_ny)
    ]
    refused_each(desk, url("book_submit", london, olivia), cases, statuses=(200, 400))


BAD_MOVES = [
    ("nothing", {}),
    ("30-february", {"date": "2026-02-30", "time": "10:00"}),
    ("no-time", {"date": "2026-03-12"}),
    ("reason-huge", {"date": "2026-03-12", "time": "10:00", "reason": HUGE}),
    ("instant-junk", {"start_at": "not a time"}),
    ("instant-naive", {"start_at": "2026-03-12T10:00:00"}),
    ("bad-practitioner", {"date": "2026-03-12", "time": "10:00", "practitioner": "nope"}),
    ("year-1899", {"date": "1899-12-31", "time": "10:00"}),
]


def test_a_bad_move_moves_nothing_and_says_what_is_wrong(london, hart, dr_west, dr_ny, olivia, desk):
    made = booked(olivia, ldn(2026, 3, 10), "botox")
    foreign = [
        (doctor.name, {"date": "2026-03-12", "time": "10:00", "practitioner": str(doctor.pk)})
        for doctor in (dr_west, dr_ny)
    ]
    refused_each(desk, url("reschedule", london, made), BAD_MOVES + foreign)


def test_appointment_forms_with_huge_text_change_nothing(london, hart, olivia, desk):
    made = booked(olivia, ldn(2026, 3, 10), "botox")
    refused_each(
        desk,
        url("cancel", london, made),
        [("2001", {"reason": "r" * 2001}), ("huge", {"reason": HUGE})],
        statuses=(400,),
    )
    refused_each(
        desk, url("notes", london, made), [("2001", {"notes": "n" * 2001}), ("huge", {"notes": HUGE})], statuses=(400,)
    )


BAD_INTAKES = [
    ("no-management-form", {}),
    ("unknown-condition", intake(("no-such-condition", "active", "", ""))),
    ("unknown-status", intake(("eczema", "sometimes", "", ""))),
    ("no-status", intake(("eczema", "", "", ""))),
    ("unknown-area", intake(("eczema", "history", "elbow", ""))),
    ("30-february", intake(("eczema", "history", "", "2026-02-30"))),
    ("year-1", intake(("eczema", "history", "", "0001-01-01"))),
    ("date-huge", intake(("eczema", "history", "", HUGE))),
    ("condition-huge", intake((HUGE, "active", "", ""))),
    ("twice", intake(("eczema", "history", "", ""), ("eczema", "active", "", ""))),
    ("total-not-a-number", intake(("eczema", "history", "", "")) | {"conditions-TOTAL_FORMS": "x"}),
    ("total-over-60", intake(("eczema", "history", "", "")) | {"conditions-TOTAL_FORMS": "61"}),
]


def test_a_bad_intake_saves_nothing_and_says_what_is_wrong(london, olivia, desk):
    PatientCondition.objects.create(patient=olivia, condition_id="diabetes", status=ConditionStatus.ACTIVE)
    refused_each(desk, url("patient_history", london, olivia), BAD_INTAKES)


def test_a_damaged_intake_post_does_not_erase_the_medical_history(london, olivia, desk):
    PatientCondition.objects.create(patient=olivia, condition_id="scleroderma", status=ConditionStatus.ACTIVE)
    page = desk.get(url("patient_history", london, olivia)).content.decode()
    posted = dict(re.findall(r'<input type="hidden" name="(conditions-[A-Z_]+)" value="([^"]*)"', page))
    assert posted["conditions-INITIAL_FORMS"] == "1"
    version = re.search(r'name="intake_version" value="([^"]*)"', page).group(1)
    before = state()
    response = desk.post(
        url("patient_history", london, olivia),
        {**posted, "conditions-TOTAL_FORMS": "-1", "intake_version": version},
    )
    assert response.status_code != 302
    assert state() == before


def test_an_intake_saved_over_a_newer_one_is_refused_and_keeps_the_new_line(london, olivia, desk):
    """docs/frontdesk.md: the conditions form carries the version it was drawn from; saved after someone changed the
    intake, it saves nothing (409) and the contraindication recorded meanwhile stays."""
    page = desk.get(url("patient_history", london, olivia))
    version = re.search(r'name="intake_version" value="([^"]*)"', page.content.decode()).group(1)
    PatientCondition.objects.create(patient=olivia, condition_id="scleroderma", status=ConditionStatus.ACTIVE)
    before = state()
    response = desk.post(url("patient_history", london, olivia), intake(("eczema", "history", "", ""), version=version))
    assert response.status_code == 409 and says_what_is_wrong(response)
    assert state() == before


BAD_COURSES = [
    ("nothing", {}),
    ("no-start", {"course-drug": "anticoagulant"}),
    ("unknown-drug", {"course-drug": "aspirin", "course-started_on": "2026-02-01"}),
    ("30-february", {"course-drug": "anticoagulant", "course-started_on": "2026-02-30"}),
    (
        "ends-before-start",
        {"course-drug": "isotretinoin", "course-started_on": "2026-02-01", "course-ended_on": "2026-01-01"},
    ),
    ("year-1", {"course-drug": "anticoagulant", "course-started_on": "0001-01-01"}),
    ("huge", {"course-drug": "anticoagulant", "course-started_on": "2026-02-01", "course-notes": HUGE}),
]


def test_a_bad_medication_course_or_course_end_saves_nothing(london, olivia, desk):
    refused_each(desk, url("medication_add", london, olivia), BAD_COURSES, statuses=(200, 400))
    course = MedicationCourse.objects.create(patient=olivia, drug_id="isotretinoin", started_on=date(2026, 1, 1))
    key = f"end-{course.pk}-ended_on"
    ends = [(value[:10], {key: value}) for value in ("", "2026-02-30", "2025-01-01", "9999-12-31", HUGE)]
    refused_each(desk, url("medication_end", london, olivia, course), ends, statuses=(200, 400))


BAD_PROCEDURES = [
    ("nothing", {}),
    ("no-date", {"record-procedure": "botox"}),
    ("30-february", {"record-procedure": "botox", "record-performed_on": "2026-02-30"}),
    ("future", {"record-procedure": "botox", "record-performed_on": "2026-03-05"}),
    (
        "later-today",
        {"record-procedure": "botox", "record-performed_on": "2026-03-02", "record-performed_time": "23:00"},
    ),
    ("bad-time", {"record-procedure": "botox", "record-performed_on": "2026-03-01", "record-performed_time": "24:30"}),
    ("not-a-procedure", {"record-procedure": "isotretinoin", "record-performed_on": "2026-03-01"}),
    ("bad-area", {"record-procedure": "botox", "record-performed_on": "2026-03-01", "record-area": "elbow"}),
    ("huge", {"record-procedure": "botox", "record-performed_on": "2026-03-01", "record-notes": HUGE}),
]


def test_a_bad_procedure_done_elsewhere_saves_nothing(london, olivia, desk):
    refused_each(desk, url("procedure_add", london, olivia), BAD_PROCEDURES, statuses=(200, 400))


BAD_PATIENTS = [
    ("nothing", {"first_name": "", "last_name": "", "date_of_birth": "", "phone": "", "email": ""}),
    ("no-last-name", {"first_name": "A"}),
    ("name-huge", {"first_name": HUGE, "last_name": "B"}),
    ("30-february", {"first_name": "A", "last_name": "B", "date_of_birth": "1985-02-30"}),
    ("born-in-future", {"first_name": "A", "last_name": "B", "date_of_birth": "2030-01-01"}),
    ("born-1850", {"first_name": "A", "last_name": "B", "date_of_birth": "1850-01-01"}),
    ("bad-phone", {"first_name": "A", "last_name": "B", "phone": "call me"}),
    ("bad-email", {"first_name": "A", "last_name": "B", "email": "not-an-email"}),
    ("bad-channel", {"first_name": "A", "last_name": "B", "reminder_channels": "pigeon"}),
    ("sms-no-phone", {"first_name": "A", "last_name": "B", "reminder_channels": "sms"}),
]


def test_a_bad_new_patient_or_edit_changes_nothing(london, olivia, desk):
    for where in ("patient_new", "calendar_register"):
        refused_each(desk, url(where, london), BAD_PATIENTS, statuses=(200, 400))
    refused_each(desk, url("patient_edit", london, olivia), BAD_PATIENTS[1:], statuses=(200, 400))


ODD_VIEWS = [
    ("calendar", {"date": "2026-02-30"}),
    ("calendar", {"date": "0001-01-01", "view": "week"}),
    ("calendar", {"date": "9999-12-31", "view": "week"}),
    ("calendar", {"practitioner": "nope", "view": "month"}),
    ("schedule", {"date": "2026-02-30", "view": "week"}),
    ("schedule", {"date": "9999-12-31", "view": "week"}),
    ("day_sheet", {"date": "2026-02-30"}),
    ("calendar_events", {"start": "2026-02-30", "end": "2026-03-02"}),
    ("calendar_events", {"start": "2026-03-02T00:00:00", "end": "2026-03-03"}),
    ("calendar_book", {"practitioner": "nope", "start_at": "2026-02-30T10:00:00+00:00", "q": HUGE[:300]}),
]


def test_odd_dates_in_the_calendar_and_day_views_are_not_a_500(london, hart, desk):
    for name, query in ODD_VIEWS:
        assert desk.get(url(name, london), query).status_code in (200, 400), (name, query)


def test_an_impossible_date_on_the_calendar_is_said_next_to_the_date(london, hart, desk):
    """The day asked for does not exist: the page says so beside the date rather than silently showing today."""
    response = desk.get(url("calendar", london), {"date": "2026-02-30"})
    assert says_what_is_wrong(response)


# === Tenancy: other organisations, other sites, sites not granted ===================================================


def test_another_organisations_pages_and_ids_are_404_with_no_data(
    london, hart, olivia, desk, ny, dr_ny, nora, care_texts, django_capture_on_commit_callbacks
):
    """docs/frontdesk.md: 'a clinic, patient or appointment of another clinic answers 404'. The London desk, by the New
    York clinic's address or by putting New York ids in London's addresses, sees and changes nothing."""
    with django_capture_on_commit_callbacks(execute=True):
        theirs = booked(nora, nyc(2026, 3, 10), "botox")
    ours = booked(olivia, ldn(2026, 3, 10), "botox")
    course = MedicationCourse.objects.create(patient=nora, drug_id="isotretinoin", started_on=date(2026, 1, 1))
    message = OutboxMessage.objects.filter(appointment=theirs).exclude(channel="webhook").first()
    assert message is not None
    for query in ("Quuxley", "Zebedee", "212 555 0199", "+12125550199"):
        found = desk.get(url("patients", london), {"q": query})
        assert found.status_code == 200 and url("patient", london, nora) not in found.content.decode(), query
    in_place = desk.get(url("calendar_book_patient", london, nora), HTTP_HX_REQUEST="true")
    assert in_place.status_code == 404 and "Quuxley" not in in_place.content.decode()
    before = state()
    gets = [
        url("today", ny),
        url("calendar", ny),
        url("calendar_events", ny) + "?start=2026-03-02&end=2026-03-09",
        url("patient", ny, nora),
        url("patient", london, nora),
        url("patient_edit", london, nora),
        url("patient_history", london, nora),
        url("book", london, nora),
        url("plan_new", london, nora),
        url("patient_merge", london, nora),
        url("calendar_book_patient", london, nora),
        url("appointment", london, theirs),
        url("reschedule", london, theirs),
        url("aftercare", london, theirs),
        url("calendar_book", london) + f"?practitioner={dr_ny.pk}&q=Zebedee",
    ]
    for path in gets:
        response = desk.get(path)
        assert response.status_code in (404, 200), (path, response.status_code)
        assert "Quuxley" not in response.content.decode(), path
        if "calendar/book/?" not in path:
            assert response.status_code == 404, path
    posts = [
        (url("book_submit", london, nora), {"procedure": "botox", "date": "2026-03-10", "time": "10:00"}),
        (url("patient_edit", london, nora), {"first_name": "Hacked", "last_name": "X"}),
        (url("patient_history", london, nora), intake(("scleroderma", "active", "", ""))),
        (url("medication_add", london, nora), {"course-drug": "anticoagulant", "course-started_on": "2026-02-01"}),
        (url("medication_end", london, nora, course), {f"end-{course.pk}-ended_on": "2026-02-01"}),
        (url("medication_end", london, olivia, course), {f"end-{course.pk}-ended_on": "2026-02-01"}),
        (url("procedure_add", london, nora), {"record-procedure": "botox", "record-performed_on": "2026-03-01"}),
        (url("cancel", london, theirs), {"reason": "x"}),
        (url("reschedule", london, theirs), {"date": "2026-03-12", "time": "10:00"}),
        (url("check_in", london, theirs), {}),
        (url("notes", london, theirs), {"notes": "hello"}),
        (url("cancel", ny, theirs), {"reason": "x"}),
        (url("message_send_again", london, ours, message), {}),
        (url("message_send_again", london, theirs, message), {}),
        (url("plan_book", london, nora), {"template": "microneedling-course", "start_from": "2026-03-09"}),
    ]
    for path, body in posts:
        response = desk.post(path, body)
        assert response.status_code == 404, (path, response.status_code)
        assert "Quuxley" not in response.content.decode(), path
    assert state() == before


def test_a_clinician_of_another_organisation_cannot_clear_or_complete_here(london, hart, olivia, ny_doc):
    pending = started(olivia, london, hart, status=AppointmentStatus.PENDING_CLEARANCE)
    before = state()
    for action in ("clear", "complete", "no_show", "cancel"):
        for clinic in (london,):
            response = ny_doc.post(url(action, clinic, pending), {"reason": "mine now"})
            assert response.status_code == 404 and "Olivia" not in response.content.decode(), action
    assert state() == before


def test_a_site_not_granted_stays_closed(london, west, hart, dr_west, olivia, west_desk):
    """A receptionist of the West site only: London's pages and appointments are 404, whatever the id."""
    theirs = booked(olivia, ldn(2026, 3, 10), "botox")
    before = state()
    for path in (
        url("today", london),
        url("calendar", london),
        url("schedule", london),
        url("day_sheet", london),
        url("appointment", london, theirs),
        url("appointment", west, theirs),
        url("reschedule", west, theirs),
        url("rules", london),
    ):
        assert west_desk.get(path).status_code == 404, path
    for path in (url("cancel", west, theirs), url("cancel", london, theirs), url("check_in", west, theirs)):
        assert west_desk.post(path, {"reason": "x"}).status_code == 404, path
    assert state() == before
    home = west_desk.get(reverse("frontdesk:home"), follow=True)
    assert "FDQ London" not in text(home)


def test_an_organisation_wide_grant_opens_its_sites_only_and_no_grant_opens_nothing(london, west, ny, hart):
    """A grant of organisation A opens both its sites and never New York's; a signed-in user with no grant at all
    reaches no clinic (404) and is shown none."""
    org_wide = staff("fdq-org-desk", StaffRole.RECEPTIONIST, organisation=london.organisation)
    for clinic in (london, west):
        assert org_wide.get(url("calendar", clinic)).status_code == 200, clinic.code
    assert org_wide.get(url("calendar", ny)).status_code == 404
    nobody = get_user_model().objects.create_user(username="fdq-nobody", password="fdq-pw-for-tests-only")
    client = Client()
    client.force_login(nobody)
    for clinic in (london, west, ny):
        assert client.get(url("today", clinic)).status_code == 404, clinic.code
    home = client.get(reverse("frontdesk:home"), follow=True)
    assert home.status_code == 200
    assert not any(name in text(home) for name in ("FDQ London", "FDQ West", "FDQ New York"))


def test_a_sister_sites_booking_is_shown_but_not_acted_on_from_here(london, west, hart, dr_west, wendy, desk):
    """One record per patient: the London desk opens the West patient's record, and sees her West visit named 'at
    FDQ West' without a link; its own address for that visit is 404, and a move or cancel by it changes nothing."""
    theirs = booked(wendy, ldn(2026, 3, 10), "botox", clinic_id=west.pk)
    page = desk.get(url("patient", london, wendy))
    assert page.status_code == 200 and "at FDQ West" in text(page)
    assert url("appointment", london, theirs) not in page.content.decode()
    before = state()
    assert desk.get(url("appointment", london, theirs)).status_code == 404
    assert desk.post(url("cancel", london, theirs), {}).status_code == 404
    assert state() == before


def test_every_link_on_a_shared_patients_page_opens(london, west, hart, dr_west, wendy, desk):
    start = NOW - timedelta(hours=2)
    visit = AppointmentFactory(
        patient=wendy, clinic=west, practitioner=dr_west, start_at=start, end_at=start + timedelta(minutes=30)
    )
    ProcedureRecord.objects.create(
        patient=wendy, procedure_id="botox", performed_at=start, source=HistorySource.CLINIC, appointment=visit
    )
    page = desk.get(url("patient", london, wendy))
    links = set(re.findall(r'href="(/clinic/fdq-london/[^"?#]+)"', page.content.decode()))
    broken = [link for link in links if desk.get(link).status_code == 404]
    assert broken == []


def test_a_plan_made_at_the_sister_site_is_not_a_dead_link_here(london, west, hart, dr_west, wendy, desk, templates):
    west_clinician = staff("fdq-west-doc", StaffRole.CLINICIAN, clinic=west)
    page = west_clinician.get(
        url("plan_new", west, wendy), {"template": "microneedling-course", "start_from": "2026-03-09"}
    )
    sessions = re.findall(r'name="session" value="([^"]+)"', page.content.decode())
    made = west_clinician.post(
        url("plan_book", west, wendy),
        {"template": "microneedling-course", "start_from": "2026-03-09", "session": sessions},
    )
    assert made.status_code == 302
    plan = TreatmentPlan.objects.get(patient=wendy)
    body = desk.get(url("patient", london, wendy)).content.decode()
    link = url("plan", london, plan)
    assert link not in body or desk.get(link).status_code == 200


def test_another_clinics_plan_is_404_by_this_clinics_address(london, west, dr_west, wendy, desk, templates):
    west_clinician = staff("fdq-west-doc2", StaffRole.CLINICIAN, clinic=west)
    page = west_clinician.get(
        url("plan_new", west, wendy), {"template": "microneedling-course", "start_from": "2026-03-09"}
    )
    sessions = re.findall(r'name="session" value="([^"]+)"', page.content.decode())
    west_clinician.post(
        url("plan_book", west, wendy),
        {"template": "microneedling-course", "start_from": "2026-03-09", "session": sessions},
    )
    plan = TreatmentPlan.objects.get(patient=wendy)
    before = state()
    assert desk.get(url("plan", london, plan)).status_code == 404
    assert (
        desk.post(url("plan_replan", london, plan), {"from_session": "2", "start_from": "2026-05-01"}).status_code
        == 404
    )
    assert state() == before


# === CSRF stays on ===================================================================================================


def test_every_desk_form_without_its_csrf_token_is_refused_and_writes_nothing(london, hart, olivia):
    client = staff("fdq-csrf", StaffRole.CLINICIAN, clinic=london, csrf=True)
    made = booked(olivia, ldn(2026, 3, 10), "botox")
    course = MedicationCourse.objects.create(patient=olivia, drug_id="isotretinoin", started_on=date(2026, 1, 1))
    before = state()
    posts = [
        (url("book_submit", london, olivia), {"procedure": "botox", "date": "2026-03-12", "time": "10:00"}),
        (url("reschedule", london, made), {"date": "2026-03-12", "time": "10:00"}),
        (url("cancel", london, made), {"reason": "x"}),
        (url("notes", london, made), {"notes": "x"}),
        (url("patient_history", london, olivia), intake(("eczema", "history", "", ""))),
        (url("medication_add", london, olivia), {"course-drug": "anticoagulant", "course-started_on": "2026-02-01"}),
        (url("medication_end", london, olivia, course), {f"end-{course.pk}-ended_on": "2026-02-01"}),
        (url("procedure_add", london, olivia), {"record-procedure": "botox", "record-performed_on": "2026-03-01"}),
        (url("patient_new", london), {"first_name": "New", "last_name": "Person"}),
        (url("patient_edit", london, olivia), {"first_name": "Changed", "last_name": "Bennett"}),
        (url("check_in", london, made), {}),
        (url("calendar_register", london), {"first_name": "New", "last_name": "Person"}),
    ]
    for path, body in posts:
        assert client.post(path, body).status_code == 403, path
        assert client.post(path, body, HTTP_HX_REQUEST="true").status_code == 403, path
    assert state() == before
    page = client.get(url("book", london, olivia), {"procedure": "botox", "date": "2026-03-12", "time": "10:00"})
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    [slot, *_] = slot_forms(page)
    assert client.post(url("book_submit", london, olivia), {**slot, "csrfmiddlewaretoken": token}).status_code == 302
