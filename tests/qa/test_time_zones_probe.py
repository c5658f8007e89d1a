"""QA probe of local time outside London: every place that takes or shows a clinic-local time, in zones with
awkward offsets and on the days their clocks change.

Zones: America/New_York, Australia/Lord_Howe (a 30-minute DST shift), Asia/Kathmandu (+05:45, no DST),
America/Santiago (clocks change at midnight: on Sunday 6 September 2026 the day starts at 01:00, and on
Saturday 4 April 2026 23:00-24:00 happens twice), Pacific/Auckland (local date a day ahead of UTC for half the
day) and Europe/London.

Places: eligibility and booking over the API (calendar gaps measured across a change, near midnight, and
`earliest_eligible_start` as the start of the local day), availability slots on the change days (working hours,
the skipped hour, the repeated hour), reminder due times (24 h elapsed before, "1 day before" on the wall clock,
post-care +48 h and +7 days) and SMS quiet hours in +05:45 and on Lord Howe, treatment-plan windows across a
change, recalls, the front desk's calendar, today page and booking forms, iCalendar feeds and FHIR.

Every expected time is computed here, independently, with zoneinfo and dateutil (never with the product's own
helpers). The clock is Monday 2 March 2026, 09:00 UTC (ticking) unless a test travels. DST changes in 2026:
New York 8 March and 1 November; London 29 March and 25 October; Lord Howe 5 April (02:00 -> 01:30) and
4 October (02:00 -> 02:30); Santiago 4/5 April (24:00 -> 23:00) and 6 September (00:00 -> 01:00); Auckland
5 April (03:00 -> 02:00) and 27 September (02:00 -> 03:00).
"""

from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import quote, unquote
from zoneinfo import ZoneInfo

import pytest
import time_machine
from dateutil import tz as dateutil_tz
from dateutil.relativedelta import relativedelta
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse
from icalendar import Calendar

from clinic.models import Appointment, ProcedureRecord, StaffMembership, StaffRole, WorkingHours
from reminders.channels import LocmemSmsBackend
from reminders.dispatch import dispatch_local
from reminders.feeds import calendar_feed_create
from reminders.models import OutboxMessage
from scheduler.models import IntervalRule
from tests import shipped
from tests.api.conftest import _clock, http, new_api_client  # noqa: F401 (_clock: autouse, ticking from CLOCK)
from tests.conftest import CLOCK
from tests.factories import AppointmentFactory, ClinicFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import squash

pytestmark = pytest.mark.django_db

NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
KATHMANDU = ZoneInfo("Asia/Kathmandu")
SANTIAGO = ZoneInfo("America/Santiago")
AUCKLAND = ZoneInfo("Pacific/Auckland")
LONDON = ZoneInfo("Europe/London")
ZONES = [NEW_YORK, LORD_HOWE, KATHMANDU, SANTIAGO, AUCKLAND, LONDON]
EVERY_DAY = range(7)


# --- independent time arithmetic (zoneinfo and dateutil only) ----------------------------------------------------


def exists(wall: datetime, zone: ZoneInfo) -> bool:
    """Whether a naive wall-clock time is read on the zone's clocks at all (not in a spring-forward gap)."""
    aware = wall.replace(tzinfo=zone)
    return aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall


def readings(wall: datetime, zone: ZoneInfo) -> list[datetime]:
    """Every instant (UTC) at which the zone's clocks show `wall`: none, one, or two (fall back)."""
    if not exists(wall, zone):
        return []
    return sorted({wall.replace(tzinfo=zone, fold=f).astimezone(UTC) for f in (0, 1)})


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of a local day, worked out by walking the minutes (midnight may not exist)."""
    wall = datetime.combine(day, time(0))
    while not exists(wall, zone):
        wall += timedelta(minutes=1)
    return readings(wall, zone)[0]


def iso(instant: datetime, zone: ZoneInfo) -> str:
    return instant.astimezone(zone).isoformat()


def at(zone: ZoneInfo, y: int, m: int, d: int, hh: int = 9, mm: int = 0, fold: int = 0) -> datetime:
    """An existing local wall time as a UTC instant (asserting it exists, so no case is built on a gap)."""
    wall = datetime(y, m, d, hh, mm)
    assert exists(wall, zone), (wall, zone)
    return wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)


def quiet(instant: datetime, zone: ZoneInfo, start: time, end: time) -> bool:
    """Whether the zone's wall clock at `instant` is inside the SMS quiet window [start, end)."""
    clock = instant.astimezone(zone).time()
    if start > end:
        return clock >= start or clock < end
    return start <= clock < end


def walk_back_to_allowed(instant: datetime, zone: ZoneInfo, start: time, end: time) -> datetime:
    """The latest whole minute at or before `instant` outside quiet hours, by walking the clock minute by minute."""
    moment = instant
    while quiet(moment, zone, start, end):
        moment -= timedelta(minutes=1)
    return moment


def walk_on_to_allowed(instant: datetime, zone: ZoneInfo, start: time, end: time) -> datetime:
    moment = instant
    while quiet(moment, zone, start, end):
        moment += timedelta(minutes=1)
    return moment


# --- the world --------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _backends(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SMS_BACKEND = "reminders.channels.LocmemSmsBackend"
    settings.REMINDERS_SMS_QUIET_HOURS = ("21:00", "08:00")
    LocmemSmsBackend.outbox = []
    yield
    LocmemSmsBackend.outbox = []


@pytest.fixture
def world(catalogue):
    """Reminder texts and plan templates as setup_demo loads them."""
    shipped.care_texts()
    shipped.plan_templates()


_made = {"n": 0}


def clinic_in(zone: ZoneInfo, *, hours=((9, 0), (18, 0)), days=EVERY_DAY):
    """A clinic in `zone` with one practitioner working `hours` (local) on `days`, a patient who takes e-mail
    and SMS, and a clinical API client for it."""
    _made["n"] += 1
    code = f"tz{_made['n']}-{str(zone).split('/')[-1].lower().replace('_', '-')}"
    clinic = ClinicFactory(code=code, name=f"Clinic {code}", timezone=str(zone))
    practitioner = PractitionerFactory(clinic=clinic, name=f"Dr {code}", hours=[])
    (start_h, start_m), (end_h, end_m) = hours
    WorkingHours.objects.bulk_create(
        WorkingHours(
            practitioner=practitioner, weekday=d, start_time=time(start_h, start_m), end_time=time(end_h, end_m)
        )
        for d in days
    )
    patient = PatientFactory(
        clinic=clinic, email=f"{code}@example.com", reminder_channels=["email", "sms"], sms_consent=True
    )
    api = http(new_api_client(clinic, name=f"platform-{code}", clinical=True)[1])
    return clinic, practitioner, patient, api


def post(api, path: str, body: dict, expect: int | None = None) -> dict:
    response = api.post(path, body, format="json")
    assert response.status_code != 500, response.content
    if expect is not None:
        assert response.status_code == expect, response.content
    return response.json()


def book(api, patient, start: datetime, procedure="botox", zone: ZoneInfo | None = None, **extra) -> dict:
    """Book over the API with the start given in the clinic's own offset (or UTC)."""
    when = start.astimezone(zone).isoformat() if zone else start.isoformat()
    return post(
        api,
        "/api/v1/appointments/",
        {"patient": str(patient.pk), "procedure": procedure, "start": when, **extra},
        expect=201,
    )


def eligibility(api, patient, start: str, procedure="microneedling") -> dict:
    return post(
        api, "/api/v1/eligibility/", {"patient": str(patient.pk), "procedure": procedure, "start": start}, expect=200
    )


def history(api, patient, performed_at: datetime, zone: ZoneInfo, procedure="botox") -> dict:
    return post(
        api,
        f"/api/v1/patients/{patient.pk}/procedures/",
        {"procedure": procedure, "performed_at": iso(performed_at, zone), "source": "reported"},
        expect=201,
    )


def reminders_of(api, appointment_id: str) -> list[dict]:
    response = api.get(f"/api/v1/appointments/{appointment_id}/")
    assert response.status_code == 200, response.content
    return response.json()["reminders"]


def due_of(appointment_id: str, key: str, channel: str) -> datetime:
    [row] = OutboxMessage.objects.filter(appointment_id=appointment_id, template__default_key=key, channel=channel)
    return row.due_at


# =============================== Calendar gaps over the API ======================================================


@pytest.mark.parametrize("zone", ZONES, ids=str)
@pytest.mark.parametrize("hour_minute", [(0, 30), (23, 30)], ids=["00:30", "23:30"])
def test_two_weeks_after_1_march_is_15_march_at_any_hour_in_every_zone(world, zone, hour_minute):
    """domain.md: 'Gaps in days, weeks or months are calendar gaps in the clinic's local time zone ... A
    receptionist thinks "2 weeks after 1 March is 15 March", at any hour.' api-contract.md:
    'earliest_eligible_start ... (with a calendar gap, the start of that local day)'; 'Responses give times in the
    clinic's offset.' A Botox on 1 March at 00:30 or 23:30 local (whose UTC date is the day before or after in
    Auckland, Lord Howe, Kathmandu, New York, Santiago): microneedling is refused all of 14 March local, and allowed
    from local midnight of 15 March; New York's gap spans its 8 March change."""
    _, _, patient, api = clinic_in(zone, hours=((0, 0), (23, 45)))
    botox = at(zone, 2026, 3, 1, *hour_minute)
    record = history(api, patient, botox, zone)
    assert record["performed_at"] == iso(botox, zone)

    opens = local_midnight(date(2026, 3, 15), zone)
    for refused in (at(zone, 2026, 3, 14, 0, 0), at(zone, 2026, 3, 14, 23, 45), opens - timedelta(minutes=1)):
        body = eligibility(api, patient, iso(refused, zone))
        assert body["eligible"] is False, (zone, refused, body)
        assert body["earliest_eligible_start"] == iso(opens, zone)
        [violation] = [v for v in body["violations"] if v["kind"] == "interval"]
        assert violation["earliest_allowed"] == iso(opens, zone)
        assert violation["conflicts_with"]["at"] == iso(botox, zone)
    for allowed in (opens, at(zone, 2026, 3, 15, 9, 0), at(zone, 2026, 3, 15, 22, 45)):
        body = eligibility(api, patient, iso(allowed, zone))
        assert body["eligible"] is True, (zone, allowed, body)


def test_a_gap_given_in_utc_is_answered_in_the_clinics_offset_auckland(world):
    """api-contract.md: 'Times are ISO 8601 with an offset ... Responses give times in the clinic's offset.'
    Asked in UTC ('Z') for an Auckland clinic, the refusal's earliest start comes back as +13:00 local midnight,
    and an instant whose UTC date is 14 March but whose Auckland date is 15 March is allowed."""
    _, _, patient, api = clinic_in(AUCKLAND, hours=((0, 0), (23, 45)))
    history(api, patient, at(AUCKLAND, 2026, 3, 1, 0, 30), AUCKLAND)  # 28 February 11:30 UTC
    refused = eligibility(api, patient, "2026-03-14T02:00:00Z")  # 14 March 15:00 NZDT
    assert refused["eligible"] is False
    assert refused["earliest_eligible_start"] == "2026-03-15T00:00:00+13:00"
    assert refused["next_available_slot"]["start"] == "2026-03-15T00:00:00+13:00"
    assert eligibility(api, patient, "2026-03-14T20:00:00Z")["eligible"] is True  # 15 March 09:00 NZDT


def test_looking_forward_the_earlier_procedure_may_be_on_the_local_day_gap_before_auckland(world):
    """domain.md: 'checked in both directions: booking `earlier` looks forward at booked `later` events that it
    would make too close' and gaps compare local dates. Microneedling booked Sunday 5 April 09:00 NZST (the day
    Auckland's clocks go back; 4 April 21:00 UTC): Botox may be on 22 March (local) at 23:15, not on 23 March at
    00:00. In UTC the first is 22 March 10:15, so a UTC-date reading would refuse it."""
    _, _, patient, api = clinic_in(AUCKLAND, hours=((0, 0), (23, 45)))
    later = book(api, patient, at(AUCKLAND, 2026, 4, 5, 9), "microneedling", AUCKLAND)
    assert later["start"] == "2026-04-05T09:00:00+12:00"
    ok = eligibility(api, patient, iso(at(AUCKLAND, 2026, 3, 22, 23, 15), AUCKLAND), "botox")
    assert ok["eligible"] is True, ok
    refused = eligibility(api, patient, iso(at(AUCKLAND, 2026, 3, 23, 0, 0), AUCKLAND), "botox")
    assert refused["eligible"] is False
    [violation] = [v for v in refused["violations"] if v["kind"] == "interval"]
    assert violation["conflicts_with"]["at"] == "2026-04-05T09:00:00+12:00"


def test_santiago_a_day_that_starts_at_0100_is_the_earliest_start(world):
    """api-contract.md: 'earliest_eligible_start: ... (with a calendar gap, the start of that local day)';
    docs/rules.md: '... to the start of local day date(E) + gap'. In Santiago midnight does not exist on Sunday
    6 September 2026 (00:00 -04 becomes 01:00 -03), so that day starts at 01:00 -03:00. Botox booked Sunday
    23 August: microneedling 2 weeks later opens at 2026-09-06T01:00:00-03:00; the first slot is 09:00 -03:00."""
    _, _, patient, api = clinic_in(SANTIAGO)
    book(api, patient, at(SANTIAGO, 2026, 8, 23, 10), "botox", SANTIAGO)
    start_of_day = local_midnight(date(2026, 9, 6), SANTIAGO)
    assert iso(start_of_day, SANTIAGO) == "2026-09-06T01:00:00-03:00"  # the independent walk agrees
    body = eligibility(api, patient, iso(at(SANTIAGO, 2026, 9, 5, 17), SANTIAGO))
    assert body["eligible"] is False
    assert body["earliest_eligible_start"] == "2026-09-06T01:00:00-03:00"
    assert body["next_available_slot"]["start"] == "2026-09-06T09:00:00-03:00"
    assert body["next_available_slot"]["end"] == "2026-09-06T10:00:00-03:00"


def test_santiago_an_explicit_offset_settles_a_wall_time_the_clocks_skip(world):
    """docs/api.md: 'With an explicit offset a time is one unambiguous instant, so a wall-clock time that does not
    exist or exists twice in the clinic's zone cannot arise over the API.' 2026-09-06T00:30:00-03:00 is the instant
    03:30 UTC, which Santiago's clocks read as Saturday 5 September 23:30 -04:00: its local date is the 5th, so a
    microneedling two weeks after a Botox on 23 August is still refused, and the answer names 6 September 01:00."""
    _, _, patient, api = clinic_in(SANTIAGO, hours=((0, 0), (23, 45)))
    book(api, patient, at(SANTIAGO, 2026, 8, 23, 10), "botox", SANTIAGO)
    body = eligibility(api, patient, "2026-09-06T00:30:00-03:00")
    assert body["eligible"] is False, body
    assert body["earliest_eligible_start"] == "2026-09-06T01:00:00-03:00"
    assert eligibility(api, patient, "2026-09-06T01:00:00-03:00")["eligible"] is True


def test_lord_howe_the_repeated_half_hour_is_two_bookable_instants_told_apart_by_their_offsets(world):
    """domain.md: 'a local time that ... exists twice (fall back) is refused ... unless the caller gives an
    explicit offset'; api-contract.md: 'Responses give times in the clinic's offset.' On Sunday 5 April 2026 Lord
    Howe's clocks read 01:30-02:00 twice (+11:00, then +10:30). Booked with each offset, the same practitioner gets
    two appointments half an hour apart (in UTC), each answered with its own offset."""
    _, practitioner, patient, api = clinic_in(LORD_HOWE, hours=((0, 0), (6, 0)))
    other = PatientFactory(clinic=patient.clinic, first_name="Second")
    first = book(api, patient, datetime.fromisoformat("2026-04-05T01:30:00+11:00"), "botox")
    second = book(api, other, datetime.fromisoformat("2026-04-05T01:30:00+10:30"), "botox")
    assert (first["start"], first["end"]) == ("2026-04-05T01:30:00+11:00", "2026-04-05T01:30:00+10:30")
    assert (second["start"], second["end"]) == ("2026-04-05T01:30:00+10:30", "2026-04-05T02:00:00+10:30")
    assert second["practitioner"] == first["practitioner"] == str(practitioner.pk)
    starts = sorted(Appointment.objects.filter(practitioner=practitioner).values_list("start_at", flat=True))
    assert starts == [datetime(2026, 4, 4, 14, 30, tzinfo=UTC), datetime(2026, 4, 4, 15, 0, tzinfo=UTC)]


def test_new_york_a_booked_2315_whose_utc_date_is_the_next_day_counts_by_its_local_date(world):
    """domain.md: 'the later event's local date must be on or after the earlier event's local date plus the gap';
    booked appointments are part of the timeline ('booked appointments that are not cancelled'). A Botox booked
    on Sunday 8 March 2026 at 23:15 EDT (the evening after New York's change; 9 March 03:15 UTC): microneedling is
    refused at 22:45 on 21 March and allowed from 22 March 00:00 EDT, the answer given at -04:00."""
    _, _, patient, api = clinic_in(NEW_YORK, hours=((0, 0), (23, 45)))
    made = book(api, patient, at(NEW_YORK, 2026, 3, 8, 23, 15), "botox", NEW_YORK)
    assert made["start"] == "2026-03-08T23:15:00-04:00"
    refused = eligibility(api, patient, iso(at(NEW_YORK, 2026, 3, 21, 22, 45), NEW_YORK))
    assert refused["eligible"] is False
    assert refused["earliest_eligible_start"] == "2026-03-22T00:00:00-04:00"
    [violation] = [v for v in refused["violations"] if v["kind"] == "interval"]
    assert violation["conflicts_with"]["at"] == "2026-03-08T23:15:00-04:00"
    assert eligibility(api, patient, "2026-03-22T00:00:00-04:00")["eligible"] is True


def test_lord_howe_an_hour_gap_is_elapsed_time_across_the_half_hour_change(world):
    """docs/rules.md: 'Hours are elapsed time: 48 hours after 10:00 on Monday is 10:00 on Wednesday, to the minute
    (across a clock change, 09:00 or 11:00)'; 'No default uses hours; an administrator's rule may.' An organisation's
    48 h Botox -> filler block on Lord Howe: Botox Saturday 4 April 10:00 (+11:00); the clocks go back half an hour
    that night, so filler opens on Monday 6 April at 09:30 (+10:30), 48 elapsed hours later."""
    _, _, patient, api = clinic_in(LORD_HOWE)
    IntervalRule.objects.create(
        organisation=patient.organisation,
        earlier_procedure_id="botox",
        later_procedure_id="filler",
        gap_value=48,
        gap_unit="hours",
        severity="block",
        scope="any_area",
        source="qa probe",
    )
    botox = at(LORD_HOWE, 2026, 4, 4, 10)
    book(api, patient, botox, "botox", LORD_HOWE)
    opens = botox + timedelta(hours=48)
    assert iso(opens, LORD_HOWE) == "2026-04-06T09:30:00+10:30"
    refused = eligibility(api, patient, iso(opens - timedelta(minutes=1), LORD_HOWE), "filler")
    assert refused["eligible"] is False
    assert refused["earliest_eligible_start"] == "2026-04-06T09:30:00+10:30"
    assert eligibility(api, patient, "2026-04-06T09:30:00+10:30", "filler")["eligible"] is True


# =============================== Availability on the change days =================================================

CHANGE_DAYS = [
    (NEW_YORK, date(2026, 3, 8)),
    (NEW_YORK, date(2026, 11, 1)),
    (LORD_HOWE, date(2026, 4, 5)),
    (LORD_HOWE, date(2026, 10, 4)),
    (SANTIAGO, date(2026, 4, 5)),
    (SANTIAGO, date(2026, 9, 6)),
    (AUCKLAND, date(2026, 4, 5)),
    (AUCKLAND, date(2026, 9, 27)),
    (KATHMANDU, date(2026, 3, 8)),
]


def expected_slots(zone, day, first: time, last: time, minutes: int) -> list[str]:
    """Every start on the 15-minute wall-clock grid from `first`, at every reading of that wall time, such that
    the treatment ends (elapsed) by the end of the working period; in time order, in the clinic's offset."""
    period_start = readings(datetime.combine(day, first), zone) or [local_midnight(day, zone)]
    period_end = readings(datetime.combine(day, last), zone)[0]
    found = set()
    wall = datetime.combine(day, first)
    while wall <= datetime.combine(day, last):
        for instant in readings(wall, zone):
            if period_start[0] <= instant and instant + timedelta(minutes=minutes) <= period_end:
                found.add(instant)
        wall += timedelta(minutes=15)
    return [iso(instant, zone) for instant in sorted(found)]


def slots(api, patient, zone, day, procedure="microneedling") -> list[tuple[str, str]]:
    start = local_midnight(day, zone)
    end = local_midnight(day + timedelta(days=1), zone) - timedelta(minutes=1)
    response = api.get(
        "/api/v1/availability/",
        {
            "patient": str(patient.pk),
            "procedure": procedure,
            "from": iso(start, zone),
            "to": iso(end, zone),
            "page_size": 200,
        },
    )
    assert response.status_code == 200, response.content
    return [(s["start"], s["end"]) for s in response.json()["results"]]


@pytest.mark.parametrize(("zone", "day"), CHANGE_DAYS, ids=lambda v: str(v))
def test_availability_keeps_09_to_18_local_on_the_days_the_clocks_change(world, zone, day):
    """api-contract.md: practitioners work '09:00 to 18:00 local time'; GET /availability/ gives 'free slots';
    'Responses give times in the clinic's offset'. On each zone's change day the slots run 09:00 to 17:00 local
    (an hour's microneedling ending by 18:00), every 15 minutes, each end one elapsed hour after its start."""
    _, _, patient, api = clinic_in(zone)
    got = slots(api, patient, zone, day)
    assert [s for s, _ in got] == expected_slots(zone, day, time(9), time(18), 60)
    for start, end in got:
        assert datetime.fromisoformat(end) - datetime.fromisoformat(start) == timedelta(hours=1)
        assert start[-6:] == iso(datetime.fromisoformat(start), zone)[-6:]


NIGHT_CHANGES = [
    (NEW_YORK, date(2026, 3, 8)),  # 02:00-02:59 skipped
    (NEW_YORK, date(2026, 11, 1)),  # 01:00-01:59 twice
    (LONDON, date(2026, 3, 29)),
    (LONDON, date(2026, 10, 25)),
    (LORD_HOWE, date(2026, 4, 5)),  # 01:30-01:59 twice
    (LORD_HOWE, date(2026, 10, 4)),  # 02:00-02:29 skipped
    (SANTIAGO, date(2026, 9, 6)),  # 00:00-00:59 skipped
    (AUCKLAND, date(2026, 4, 5)),  # 02:00-02:59 twice
    (AUCKLAND, date(2026, 9, 27)),  # 02:00-02:59 skipped
]


@pytest.mark.parametrize(("zone", "day"), NIGHT_CHANGES, ids=lambda v: str(v))
def test_availability_offers_no_skipped_time_and_both_readings_of_a_repeated_one(world, zone, day):
    """docs/rules.md: 'A local time that does not exist (clocks go forward) or exists twice (clocks go back)'
    cannot be booked by wall clock alone; docs/api.md: slots are 'on each period's step grid'. A practitioner
    working 00:00-06:00: on a spring-forward night no slot starts in the skipped wall time; on a fall-back night
    the repeated times are offered at both readings, with their two offsets."""
    _, _, patient, api = clinic_in(zone, hours=((0, 0), (6, 0)))
    got = [s for s, _ in slots(api, patient, zone, day, procedure="botox")]
    assert got == expected_slots(zone, day, time(0), time(6), 30)
    for start in got:
        local = datetime.fromisoformat(start)
        assert exists(local.replace(tzinfo=None), zone)
        assert local.utcoffset() == local.astimezone(zone).utcoffset()


def test_availability_in_kathmandu_stays_on_the_local_quarter_hours(world):
    """api-contract.md: working '09:00 to 18:00 local time'; README: 'BOOKING_SLOT_STEP_MINUTES | 15 | grid of
    offered slots'. At +05:45 the slots are 09:00, 09:15, ... local (03:15, 03:30, ... UTC), shown +05:45."""
    _, _, patient, api = clinic_in(KATHMANDU)
    got = slots(api, patient, KATHMANDU, date(2026, 3, 10), procedure="botox")
    assert got[0] == ("2026-03-10T09:00:00+05:45", "2026-03-10T09:30:00+05:45")
    assert got[-1] == ("2026-03-10T17:30:00+05:45", "2026-03-10T18:00:00+05:45")
    assert len(got) == 35


# =============================== Reminder due times =============================================================

# Appointments at 09:00 local on (or just after) each zone's change; the change falls inside the day before.
DAY_AFTER_A_CHANGE = [
    (NEW_YORK, datetime(2026, 3, 8, 9)),
    (NEW_YORK, datetime(2026, 11, 1, 9)),
    (LONDON, datetime(2026, 3, 29, 9)),
    (LORD_HOWE, datetime(2026, 4, 5, 9)),
    (LORD_HOWE, datetime(2026, 10, 4, 9)),
    (SANTIAGO, datetime(2026, 4, 5, 9)),
    (SANTIAGO, datetime(2026, 9, 6, 9)),
    (AUCKLAND, datetime(2026, 4, 5, 9)),
    (AUCKLAND, datetime(2026, 9, 27, 9)),
]


@pytest.mark.parametrize(("zone", "wall"), DAY_AFTER_A_CHANGE, ids=lambda v: str(v))
def test_pre_care_is_24_elapsed_hours_before_and_the_day_before_reminder_keeps_the_wall_clock(world, zone, wall):
    """domain.md: 'Microneedling, pre-care: 24 h before'; docs/reminders.md: '`minutes`/`hours` are elapsed time;
    `days` keep the local wall-clock time across DST', '`day-before-reminder` | 1 day before the start', 'Due times
    are computed in the clinic's zone' and 'no SMS between 21:00 and 08:00 local: a message ... (pre-care, reminder)
    moves earlier'. A 09:00 microneedling the morning after the clocks change: pre-care exactly 24 elapsed hours
    before (08:00, 08:30, 09:30 or 10:00 on the previous day's clock), the day-before reminder at 09:00 on the
    previous day; the API lists both in the clinic's offset."""
    _, _, patient, api = clinic_in(zone)
    start = at(zone, wall.year, wall.month, wall.day, wall.hour)
    made = book(api, patient, start, "microneedling", zone)
    pre_care = start - timedelta(hours=24)
    day_before = readings(wall - timedelta(days=1), zone)[0]
    assert pre_care != day_before  # the case is one where the two readings differ
    expected = {
        ("pre_care", "email"): iso(pre_care, zone),
        ("pre_care", "sms"): iso(walk_back_to_allowed(pre_care, zone, time(21), time(8)), zone),
        ("reminder", "email"): iso(day_before, zone),
        ("reminder", "sms"): iso(walk_back_to_allowed(day_before, zone, time(21), time(8)), zone),
    }
    got = {(r["kind"], r["channel"]): r["due_at"] for r in reminders_of(api, made["id"]) if r["kind"] != "confirmation"}
    assert got == expected


def complete_at(api, appointment_id: str, moment: datetime) -> None:
    with time_machine.travel(moment, tick=False):
        post(api, f"/api/v1/appointments/{appointment_id}/complete/", {}, expect=200)


def test_kathmandu_quiet_hours_move_texts_on_its_own_clock(world):
    """domain.md: 'no SMS between 21:00 and 08:00 local: a message that falls there moves to the nearest allowed
    moment that still comes before the moment it warns about (a pre-care note moves earlier, never later)';
    docs/reminders.md: 'moves earlier to 20:59 ... Post-care and notices move later to 08:00. E-mail has no quiet
    hours.' At +05:45: a microneedling on Tuesday 10 March at 07:00 gets its pre-care and day-before texts at
    20:59 on Sunday 8 March (local), its e-mails at 07:00 on Monday; completed at 21:30, the aftercare texts wait
    for 08:00 local (02:15 UTC) while the e-mails go at 21:30, +48 h and +7 days."""
    _, _, patient, api = clinic_in(KATHMANDU, hours=((6, 0), (22, 0)))
    start = at(KATHMANDU, 2026, 3, 10, 7)
    made = book(api, patient, start, "microneedling", KATHMANDU)
    got = {(r["kind"], r["channel"]): r["due_at"] for r in reminders_of(api, made["id"]) if r["kind"] != "confirmation"}
    assert got == {
        ("pre_care", "email"): "2026-03-09T07:00:00+05:45",
        ("pre_care", "sms"): "2026-03-08T20:59:00+05:45",
        ("reminder", "email"): "2026-03-09T07:00:00+05:45",
        ("reminder", "sms"): "2026-03-08T20:59:00+05:45",
    }
    done = at(KATHMANDU, 2026, 3, 10, 21, 30)
    complete_at(api, made["id"], done)
    expected = {
        "microneedling-post-care-completion": done,
        "microneedling-post-care-48h": done + timedelta(hours=48),
        "microneedling-post-care-7d": at(KATHMANDU, 2026, 3, 17, 21, 30),
    }
    for key, due in expected.items():
        assert due_of(made["id"], key, "email") == due, key
        text = due_of(made["id"], key, "sms")
        assert text == walk_on_to_allowed(due, KATHMANDU, time(21), time(8)), key
        assert text.astimezone(KATHMANDU).time() == time(8, 0), key


def test_lord_howe_a_text_held_overnight_goes_at_0800_on_the_new_half_hour_offset(world):
    """docs/reminders.md: 'Post-care and notices move later to 08:00', in the clinic's zone. Completed on
    Saturday 4 April 2026 at 22:00 (+11:00) on Lord Howe, whose clocks go back half an hour that night: the
    aftercare text goes at Sunday 08:00 +10:30 (21:30 UTC), not 08:00 +11:00 (21:00 UTC)."""
    _, _, patient, api = clinic_in(LORD_HOWE, hours=((9, 0), (22, 0)))
    made = book(api, patient, at(LORD_HOWE, 2026, 4, 4, 20), "microneedling", LORD_HOWE)
    complete_at(api, made["id"], at(LORD_HOWE, 2026, 4, 4, 22))
    text = due_of(made["id"], "microneedling-post-care-completion", "sms")
    assert text == datetime(2026, 4, 4, 21, 30, tzinfo=UTC)
    assert iso(text, LORD_HOWE) == "2026-04-05T08:00:00+10:30"
    listed = [r["due_at"] for r in reminders_of(api, made["id"]) if r["kind"] == "post_care" and r["channel"] == "sms"]
    assert "2026-04-05T08:00:00+10:30" in listed


def test_lord_howe_a_quiet_window_the_clock_is_put_back_into_is_quiet_again(world, settings):
    """docs/reminders.md: 'On the days the clock changes, the window follows the clock on the wall ... a clock put
    back into the window makes the night quiet again until its end comes round the second time'; 'a message that
    warns about something ahead (pre-care, reminder) moves earlier ... Post-care ... later'. Quiet hours
    21:00-01:45 on Lord Howe, Sunday 5 April 2026: the clock reaches 01:45 (+11) at 14:45 UTC, goes back from
    02:00 to 01:30 at 15:00 UTC (quiet again) and reaches 01:45 (+10:30) at 15:15 UTC. A walk of the clock minute
    by minute gives each answer: aftercare completed at 23:00 goes at 14:45 UTC; completed at 01:35 (+10:30) at
    15:15 UTC; a pre-care text due at 15:10 UTC goes at 14:59 UTC (01:59 +11:00)."""
    settings.REMINDERS_SMS_QUIET_HOURS = ("21:00", "01:45")
    window = (time(21), time(1, 45))
    _, _, patient, api = clinic_in(LORD_HOWE, hours=((0, 0), (23, 0)))
    other = PatientFactory(
        clinic=patient.clinic, first_name="Second", reminder_channels=["email", "sms"], sms_consent=True
    )
    late = book(api, patient, at(LORD_HOWE, 2026, 4, 4, 21, 30), "microneedling", LORD_HOWE)
    done_late = at(LORD_HOWE, 2026, 4, 4, 23, 0)
    complete_at(api, late["id"], done_late)
    got = due_of(late["id"], "microneedling-post-care-completion", "sms")
    assert got == walk_on_to_allowed(done_late, LORD_HOWE, *window) == datetime(2026, 4, 4, 14, 45, tzinfo=UTC)

    again = book(api, other, at(LORD_HOWE, 2026, 4, 5, 0, 15), "botox", LORD_HOWE)
    done_again = datetime(2026, 4, 4, 15, 5, tzinfo=UTC)  # 01:35 +10:30, the second time round
    assert iso(done_again, LORD_HOWE) == "2026-04-05T01:35:00+10:30"
    complete_at(api, again["id"], done_again)
    got = due_of(again["id"], "botox-post-care-completion", "sms")
    assert got == walk_on_to_allowed(done_again, LORD_HOWE, *window) == datetime(2026, 4, 4, 15, 15, tzinfo=UTC)

    third = PatientFactory(
        clinic=patient.clinic, first_name="Third", reminder_channels=["email", "sms"], sms_consent=True
    )
    start = datetime(2026, 4, 5, 15, 10, tzinfo=UTC)  # Tuesday 7 April 01:40 +10:30
    made = book(api, third, start, "microneedling", LORD_HOWE)
    warned = start - timedelta(hours=24)
    got = due_of(made["id"], "microneedling-pre-care-24h", "sms")
    assert got == walk_back_to_allowed(warned, LORD_HOWE, *window) == datetime(2026, 4, 4, 14, 59, tzinfo=UTC)
    assert due_of(made["id"], "microneedling-pre-care-24h", "email") == warned


# Completion at 16:00 local on the day before (or two before) each change.
POST_CARE = [
    (NEW_YORK, datetime(2026, 3, 7, 16)),
    (LONDON, datetime(2026, 3, 28, 16)),
    (LORD_HOWE, datetime(2026, 4, 4, 16)),
    (LORD_HOWE, datetime(2026, 10, 3, 16)),
    (SANTIAGO, datetime(2026, 4, 4, 16)),
    (SANTIAGO, datetime(2026, 9, 5, 16)),
    (AUCKLAND, datetime(2026, 4, 4, 16)),
    (AUCKLAND, datetime(2026, 9, 26, 16)),
    (KATHMANDU, datetime(2026, 3, 7, 16)),
]


@pytest.mark.parametrize(("zone", "wall"), POST_CARE, ids=lambda v: str(v))
def test_post_care_48_hours_is_elapsed_and_7_days_is_the_same_wall_clock_time(world, zone, wall):
    """domain.md: 'post-care to its completion ... +48 h: makeup may be used again ... +7 days: the one-week
    restrictions end'; docs/rules.md: 'Hours are elapsed time: 48 hours after 10:00 on Monday is 10:00 on
    Wednesday, to the minute (across a clock change, 09:00 or 11:00)'; docs/reminders.md: '`days` keep the local
    wall-clock time across DST ("7 days after 15:00" is 15:00)'. Completed at 16:00 local just before a change: the
    48 h note comes 48 elapsed hours later (15:00, 15:30, 16:30 or 17:00 on the clock), the 7-day note at 16:00."""
    _, _, patient, api = clinic_in(zone)
    start = at(zone, wall.year, wall.month, wall.day, wall.hour - 1)
    made = book(api, patient, start, "microneedling", zone)
    done = at(zone, wall.year, wall.month, wall.day, wall.hour)
    complete_at(api, made["id"], done)
    week = readings(wall + timedelta(days=7), zone)[0]
    for channel in ("email", "sms"):
        assert due_of(made["id"], "microneedling-post-care-completion", channel) == done
        assert due_of(made["id"], "microneedling-post-care-48h", channel) == done + timedelta(hours=48)
        assert due_of(made["id"], "microneedling-post-care-7d", channel) == week
    assert week.astimezone(zone).time() == time(16)
    listed = {r["due_at"] for r in reminders_of(api, made["id"]) if r["kind"] == "post_care"}
    assert listed == {iso(done, zone), iso(done + timedelta(hours=48), zone), iso(week, zone)}


def test_auckland_recall_is_at_1000_local_on_the_ideal_date_after_the_change(world):
    """docs/plans.md: recalls are due 'at the ideal gap after the completed session's local date ... At 10:00
    clinic-local on that date ... whatever the daylight-saving offset then'; Botox maintenance's ideal gap is 14
    weeks. A Botox on Tuesday 3 March 2026 at 09:00 in Auckland (2 March 20:00 UTC, the day before in UTC) is
    recalled on Tuesday 9 June at 10:00 NZST (+12:00), after Auckland's April change."""
    _, _, patient, api = clinic_in(AUCKLAND)
    start = at(AUCKLAND, 2026, 3, 3, 9)
    made = book(api, patient, start, "botox", AUCKLAND)
    complete_at(api, made["id"], start + timedelta(minutes=30))
    due = date(2026, 3, 3) + timedelta(weeks=14)
    expected = iso(readings(datetime.combine(due, time(10)), AUCKLAND)[0], AUCKLAND)
    assert expected == "2026-06-09T10:00:00+12:00"
    recalls = [r for r in reminders_of(api, made["id"]) if r["kind"] == "recall"]
    assert recalls and {r["due_at"] for r in recalls} == {expected}


def test_a_reminder_text_moved_out_of_quiet_hours_does_not_say_tomorrow_two_days_ahead(world):
    """domain.md: 'no SMS between 21:00 and 08:00 local: a message that falls there moves to the nearest allowed
    moment that still comes before the moment it warns about'; docs/reminders.md: 'The last message about an
    appointment is true.' A Kathmandu visit on Tuesday 10 March at 07:00: its day-before text (Monday 07:00, quiet)
    goes on Sunday 8 March at 20:59 local. What it says must be true when it arrives: the visit is not 'tomorrow'
    then, but the day after. Found by this probe (the shipped text said 'tomorrow'); fixed: the text says the day
    as seen when it goes ('on Tue 10 Mar, 07:00')."""
    _, _, patient, api = clinic_in(KATHMANDU, hours=((6, 0), (22, 0)))
    start = at(KATHMANDU, 2026, 3, 10, 7)
    made = book(api, patient, start, "microneedling", KATHMANDU)
    LocmemSmsBackend.outbox = []
    sent_at = due_of(made["id"], "day-before-reminder", "sms")
    assert iso(sent_at, KATHMANDU) == "2026-03-08T20:59:00+05:45"
    with time_machine.travel(sent_at, tick=False):
        dispatch_local(now=sent_at)
    bodies = [t["body"] for t in LocmemSmsBackend.outbox]
    [reminder] = [b for b in bodies if "reminder" in b]
    assert "10 Mar" in reminder
    arrives_on = sent_at.astimezone(KATHMANDU).date()
    assert "tomorrow" not in reminder or arrives_on + timedelta(days=1) == date(2026, 3, 10), reminder
    assert "appointment on Tue 10 Mar, 07:00" in reminder, reminder


# =============================== Treatment plans across a change ================================================

PLAN_CASES = [
    (NEW_YORK, "2026-03-03"),
    (LONDON, "2026-03-10"),
    (LORD_HOWE, "2026-03-17"),
    (SANTIAGO, "2026-03-17"),
    (AUCKLAND, "2026-03-17"),
    (SANTIAGO, "2026-08-09"),  # session 2 on Sunday 6 September, the day that starts at 01:00
    (AUCKLAND, "2026-08-30"),
    (LORD_HOWE, "2026-09-13"),
]


@pytest.mark.parametrize(("zone", "start_from"), PLAN_CASES, ids=lambda v: str(v))
def test_plan_windows_are_local_calendar_weeks_across_a_change(world, zone, start_from):
    """docs/plans.md: 'Session n falls between min gap and max gap after session n-1's local date, best at ideal
    gap. Gaps are calendar gaps in the clinic's zone ... a DST change never moves a date'; 'on that day the first
    free slot'. The microneedling course (3 sessions, 4 / 4 / 6 weeks): each session on its ideal local day at
    09:00 local (the first free slot), in that day's offset, with windows of whole local dates."""
    _, _, patient, api = clinic_in(zone)
    body = post(
        api,
        f"/api/v1/patients/{patient.pk}/plans/",
        {"template": "microneedling-course", "start_from": start_from, "dry_run": True},
        expect=200,
    )
    assert body["feasible"] is True, body
    day = date.fromisoformat(start_from)
    for session in body["sessions"]:
        if session["index"] > 1:
            previous = day
            day = previous + relativedelta(weeks=4)
            assert session["window"] == {
                "earliest": (previous + relativedelta(weeks=4)).isoformat(),
                "ideal": day.isoformat(),
                "latest": (previous + relativedelta(weeks=6)).isoformat(),
            }
        nine = readings(datetime.combine(day, time(9)), zone)[0]
        assert session["start"] == iso(nine, zone), session
        assert session["end"] == iso(nine + timedelta(hours=1), zone), session


def test_kathmandu_plan_times_of_day_are_local(world):
    """docs/plans.md: '`times_of_day` (`morning` before 12:00, `afternoon` 12:00-17:00, `evening` from 17:00,
    local) narrow the slots.' At +05:45 an afternoon-only course starts each session at 12:00 local (06:15 UTC)."""
    _, _, patient, api = clinic_in(KATHMANDU)
    body = post(
        api,
        f"/api/v1/patients/{patient.pk}/plans/",
        {
            "template": "microneedling-course",
            "start_from": "2026-03-10",
            "dry_run": True,
            "times_of_day": ["afternoon"],
        },
        expect=200,
    )
    assert [s["start"] for s in body["sessions"]] == [
        "2026-03-10T12:00:00+05:45",
        "2026-04-07T12:00:00+05:45",
        "2026-05-05T12:00:00+05:45",
    ]


# =============================== Front desk ======================================================================


def desk(clinic, role=StaffRole.RECEPTIONIST) -> Client:
    user = get_user_model().objects.create_user(username=f"desk-{clinic.code}-{role}", password="pw-for-tests-only")
    StaffMembership.objects.create(user=user, clinic=clinic, role=role)
    client = Client()
    client.force_login(user)
    return client


def page_url(name: str, clinic, *args) -> str:
    return reverse(f"frontdesk:{name}", args=[clinic.code, *args])


def written(patient, practitioner, start: datetime, procedure="microneedling", minutes=60) -> Appointment:
    """An appointment row written directly, for pages that only show it."""
    return AppointmentFactory(
        clinic=patient.clinic,
        patient=patient,
        practitioner=practitioner,
        procedure_id=procedure,
        start_at=start,
        end_at=start + timedelta(minutes=minutes),
    )


FREE_CELL = re.compile(
    r'<td class="(?P<classes>[^"]*)" data-date="(?P<date>[^"]+)" data-time="(?P<time>[^"]+)" '
    r'data-practitioner="(?P<practitioner>[^"]+)">(?P<inner>.*?)</td>',
    re.S,
)


def free_cells(response) -> dict[tuple[str, str], str]:
    """The grid's empty cells as {(local date, local time): inner HTML}."""
    return {(m["date"], m["time"]): m["inner"] for m in FREE_CELL.finditer(response.content.decode())}


def cell_instant(inner: str) -> datetime:
    [start_at] = re.findall(r"start_at=([^\"&]+)", inner)
    return datetime.fromisoformat(unquote(start_at))


def test_kathmandu_calendar_places_a_booking_on_its_local_quarter_hours(world):
    """docs/frontdesk.md: 'a row per quarter hour of clinic time ... with the clinic's zone stated above it'; 'All
    times on the pages are the clinic's local time'; 'An empty cell is a link to calendar/book/ with the
    practitioner and the instant.' A microneedling at 03:15 UTC is 09:00-10:00 at +05:45: its card says so and
    covers the 09:00-09:45 rows; the free 10:00 cell books 04:15 UTC."""
    clinic, practitioner, patient, _ = clinic_in(KATHMANDU)
    written(patient, practitioner, datetime(2026, 3, 10, 3, 15, tzinfo=UTC))
    response = desk(clinic).get(page_url("calendar", clinic), {"date": "2026-03-10"})
    assert response.status_code == 200
    text = squash(response)
    assert "All times are clinic time, <strong>Asia/Kathmandu</strong>" in text
    assert "09:00–10:00" in text
    cells = free_cells(response)
    for quarter in ("09:00", "09:15", "09:30", "09:45"):
        assert ("2026-03-10", quarter) not in cells, quarter
    assert cell_instant(cells[("2026-03-10", "10:00")]) == datetime(2026, 3, 10, 4, 15, tzinfo=UTC)
    assert cell_instant(cells[("2026-03-10", "08:45")]) == datetime(2026, 3, 10, 3, 0, tzinfo=UTC)


def test_auckland_today_is_the_local_date_on_the_calendar_the_today_page_and_the_feed(world):
    """docs/frontdesk.md: 'All times on the pages are the clinic's local time'; Today lists 'today's arrivals';
    the feed's 'start/end are ISO dates (the clinic's local midnight) ... with times in clinic time and an offset'.
    At 12:00 UTC on Monday 2 March it is already Tuesday 3 March 01:00 in Auckland: the calendar opens on Tuesday
    3 March, whose 09:00 booking (2 March 20:00 UTC) is on it and on Today, and Monday's 15:00 (02:00 UTC, the
    same UTC date) is on neither; the feed for 2026-03-03 holds the Tuesday booking only, at +13:00."""
    clinic, practitioner, patient, _ = clinic_in(AUCKLAND)
    other = PatientFactory(clinic=clinic, first_name="Monday", last_name="Visitor")
    tuesday = written(patient, practitioner, at(AUCKLAND, 2026, 3, 3, 9))
    monday = written(other, practitioner, at(AUCKLAND, 2026, 3, 2, 15))
    client = desk(clinic)
    with time_machine.travel(datetime(2026, 3, 2, 12, tzinfo=UTC), tick=False):
        grid = client.get(page_url("calendar", clinic))
        today = client.get(page_url("today", clinic))
        feed = client.get(page_url("calendar_events", clinic), {"start": "2026-03-03", "end": "2026-03-04"})
    assert "Tuesday 3 March 2026" in squash(grid)
    assert f'data-appointment="{tuesday.pk}"' in grid.content.decode()
    assert f'data-appointment="{monday.pk}"' not in grid.content.decode()
    arrivals = squash(today).split("Arrivals today", 1)[1].split("</section>", 1)[0]
    assert patient.first_name in arrivals and "Monday Visitor" not in arrivals
    # Monday's visit is over and nobody closed it: Today asks for its outcome (docs/frontdesk.md), not as an arrival.
    assert "Monday Visitor" in squash(today).split("Visits with no outcome yet", 1)[1]
    assert feed.status_code == 200, feed.content
    events = feed.json()["events"]
    assert [(e["id"], e["start"], e["end"]) for e in events] == [
        (str(tuesday.pk), "2026-03-03T09:00:00+13:00", "2026-03-03T10:00:00+13:00")
    ]
    assert feed.json()["timeZone"] == "Pacific/Auckland"


def test_auckland_week_view_puts_the_change_day_booking_in_its_local_column(world):
    """docs/frontdesk.md: '`view=week` is one practitioner's week ... a column per day, Monday first'. A
    microneedling on Sunday 5 April 2026 09:00 NZST (4 April 21:00 UTC, the day Auckland's clocks go back) sits in
    the Sunday column at 09:00, and the Saturday column is free at 09:00."""
    clinic, practitioner, patient, _ = clinic_in(AUCKLAND)
    made = written(patient, practitioner, datetime(2026, 4, 4, 21, tzinfo=UTC))
    response = desk(clinic).get(
        page_url("calendar", clinic), {"date": "2026-04-01", "view": "week", "practitioner": str(practitioner.pk)}
    )
    assert response.status_code == 200
    assert f'data-appointment="{made.pk}"' in response.content.decode()
    cells = free_cells(response)
    assert ("2026-04-05", "09:00") not in cells and ("2026-04-05", "10:00") in cells
    assert ("2026-04-04", "09:00") in cells
    assert cell_instant(cells[("2026-04-05", "10:00")]) == datetime(2026, 4, 4, 22, tzinfo=UTC)
    assert cell_instant(cells[("2026-04-04", "09:00")]) == datetime(2026, 4, 3, 20, tzinfo=UTC)


SKIPPED_ON_THE_GRID = [
    (SANTIAGO, date(2026, 9, 6), ["00:00", "00:15", "00:30", "00:45"], "01:00"),
    (LORD_HOWE, date(2026, 10, 4), ["02:00", "02:15"], "02:30"),
    (AUCKLAND, date(2026, 9, 27), ["02:00", "02:15", "02:30", "02:45"], "03:00"),
]


@pytest.mark.parametrize(("zone", "day", "skipped", "first_after"), SKIPPED_ON_THE_GRID, ids=lambda v: str(v))
def test_the_grid_marks_the_skipped_wall_times_and_books_the_first_real_one(world, zone, day, skipped, first_after):
    """docs/frontdesk.md: each cell knows whether it is 'a local time the clocks skip when they go forward
    (hatched, "No such time", no link: it would book the hour after)'. Santiago's skipped midnight hour, Lord
    Howe's skipped half hour and Auckland's skipped hour are marked and not links; the first real time after them
    books the instant the clocks jump to."""
    clinic, _, _, _ = clinic_in(zone, hours=((0, 0), (6, 0)))
    response = desk(clinic).get(page_url("calendar", clinic), {"date": day.isoformat()})
    assert response.status_code == 200
    cells = free_cells(response)
    for wall in skipped:
        assert not exists(datetime.combine(day, time.fromisoformat(wall)), zone)
        inner = cells[(day.isoformat(), wall)]
        assert "No such time" in inner and "href" not in inner, wall
    after = datetime.combine(day, time.fromisoformat(first_after))
    assert cell_instant(cells[(day.isoformat(), first_after)]) == readings(after, zone)[0]


def booking_post(client, clinic, patient, practitioner, day: str, clock: str, procedure="botox"):
    return client.post(
        page_url("book_submit", clinic, patient.pk),
        {"procedure": procedure, "practitioner": str(practitioner.pk), "date": day, "time": clock},
    )


@pytest.mark.parametrize(
    ("zone", "day", "clock", "utc"),
    [
        (KATHMANDU, "2026-03-10", "09:00", datetime(2026, 3, 10, 3, 15, tzinfo=UTC)),
        (AUCKLAND, "2026-04-05", "09:00", datetime(2026, 4, 4, 21, 0, tzinfo=UTC)),
        (LORD_HOWE, "2026-04-05", "09:00", datetime(2026, 4, 4, 22, 30, tzinfo=UTC)),
        (SANTIAGO, "2026-09-06", "09:00", datetime(2026, 9, 6, 12, 0, tzinfo=UTC)),
    ],
    ids=lambda v: str(v),
)
def test_the_booking_form_reads_date_and_time_in_clinic_time(world, zone, day, clock, utc):
    """docs/frontdesk.md: the booking form's date and time are 'In clinic time'; 'validation turns the local time
    into UTC (local_to_utc)'. 09:00 typed at a Kathmandu, Auckland, Lord Howe or Santiago desk on an awkward day
    books the instant that is 09:00 there."""
    clinic, practitioner, patient, _ = clinic_in(zone)
    response = booking_post(desk(clinic), clinic, patient, practitioner, day, clock)
    assert response.status_code == 302, squash(response)[-2000:]
    [appointment] = Appointment.objects.filter(patient=patient)
    assert appointment.start_at == utc
    assert utc == readings(datetime.fromisoformat(f"{day}T{clock}"), zone)[0]


AWKWARD_WALL_TIMES = [
    (SANTIAGO, "2026-09-06", "00:30", "does not exist"),
    (SANTIAGO, "2026-04-04", "23:30", "happens twice"),
    (LORD_HOWE, "2026-10-04", "02:15", "does not exist"),
    (LORD_HOWE, "2026-04-05", "01:45", "happens twice"),
    (AUCKLAND, "2026-09-27", "02:30", "does not exist"),
    (AUCKLAND, "2026-04-05", "02:30", "happens twice"),
]


@pytest.mark.parametrize(("zone", "day", "clock", "says"), AWKWARD_WALL_TIMES, ids=lambda v: str(v))
def test_the_booking_form_refuses_a_skipped_or_repeated_wall_time_clearly(world, zone, day, clock, says):
    """domain.md: 'a local time that does not exist (spring forward) or exists twice (fall back) is refused with a
    clear error unless the caller gives an explicit offset'; docs/frontdesk.md: 'a time that does not exist (clocks
    forward) or exists twice (clocks back) is an error on the time field'. Both the live check and the booking
    POST say so, book nothing, and never answer 500."""
    wall = datetime.fromisoformat(f"{day}T{clock}")
    assert len(readings(wall, zone)) == (0 if says == "does not exist" else 2)  # the case is what it claims
    clinic, practitioner, patient, _ = clinic_in(zone, hours=((0, 0), (23, 45)))
    client = desk(clinic)
    check = client.get(
        page_url("book", clinic, patient.pk),
        {"procedure": "botox", "practitioner": str(practitioner.pk), "date": day, "time": clock},
    )
    assert check.status_code == 200
    assert says in squash(check)
    response = booking_post(client, clinic, patient, practitioner, day, clock)
    assert response.status_code not in (302, 500)
    assert says in squash(response)
    assert not Appointment.objects.filter(patient=patient).exists()


REPORTED_AWKWARD = [
    (SANTIAGO, "2025-09-07", "00:30", "does not exist"),
    (SANTIAGO, "2025-04-05", "23:30", "happens twice"),
    (LORD_HOWE, "2025-10-05", "02:15", "does not exist"),
    (LORD_HOWE, "2025-04-06", "01:45", "happens twice"),
    (AUCKLAND, "2025-09-28", "02:30", "does not exist"),
    (AUCKLAND, "2025-04-06", "02:30", "happens twice"),
]


@pytest.mark.parametrize(("zone", "day", "clock", "says"), REPORTED_AWKWARD, ids=lambda v: str(v))
def test_a_procedure_done_elsewhere_at_a_skipped_or_repeated_time_is_refused_clearly(world, zone, day, clock, says):
    """domain.md: 'a local time that does not exist ... or exists twice ... is refused with a clear error';
    docs/frontdesk.md: 'A procedure done elsewhere is given as a local day and, if known, a time'. A past day of
    each zone's change with a skipped or repeated time: an error that says why, nothing recorded."""
    wall = datetime.fromisoformat(f"{day}T{clock}")
    assert len(readings(wall, zone)) == (0 if says == "does not exist" else 2)
    clinic, _, patient, _ = clinic_in(zone)
    response = desk(clinic).post(
        page_url("procedure_add", clinic, patient.pk),
        {
            "record-procedure": "botox",
            "record-performed_on": day,
            "record-performed_time": clock,
            "record-area": "face",
        },
    )
    assert response.status_code not in (302, 500)
    assert says in squash(response)
    assert not ProcedureRecord.objects.filter(patient=patient).exists()


def test_santiago_a_procedure_reported_without_a_time_is_the_end_of_a_day_whose_last_hour_repeats(world):
    """docs/frontdesk.md: 'With no time it is the end of that day (23:59), the safer reading for the interval
    rules'. On Saturday 5 April 2025 Santiago's clocks read 23:00-23:59 twice; the end of that day is the second
    23:59 (-04:00), 6 April 03:59 UTC."""
    clinic, _, patient, _ = clinic_in(SANTIAGO)
    response = desk(clinic).post(
        page_url("procedure_add", clinic, patient.pk),
        {"record-procedure": "botox", "record-performed_on": "2025-04-05"},
    )
    assert response.status_code == 302, squash(response)[-1500:]
    [record] = ProcedureRecord.objects.filter(patient=patient)
    assert record.performed_at == readings(datetime(2025, 4, 5, 23, 59), SANTIAGO)[-1]
    assert record.performed_at == datetime(2025, 4, 6, 3, 59, tzinfo=UTC)


def test_auckland_check_in_is_allowed_on_the_local_day_whatever_the_utc_date(world):
    """docs/frontdesk.md: check in 'only on the appointment's local day'. An Auckland booking on Tuesday 3 March
    09:00 NZDT is Monday 2 March 20:00 in UTC: at 20:30 UTC (09:30 local, Tuesday) the patient can be checked in,
    and the page shows 'Arrived 09:30'."""
    clinic, practitioner, patient, _ = clinic_in(AUCKLAND)
    made = written(patient, practitioner, at(AUCKLAND, 2026, 3, 3, 9))
    with time_machine.travel(datetime(2026, 3, 2, 20, 30, tzinfo=UTC), tick=False):
        client = desk(clinic)  # signed in then: a staff session lasts 10 hours
        response = client.post(page_url("check_in", clinic, made.pk))
        assert response.status_code == 302, squash(response)[-1500:]
        assert response["Location"] == page_url("appointment", clinic, made.pk)
        shown = client.get(page_url("calendar", clinic), {"date": "2026-03-03"})
    made.refresh_from_db()
    assert made.checked_in_at == datetime(2026, 3, 2, 20, 30, tzinfo=UTC)
    assert "Arrived 09:30" in squash(shown)


# =============================== iCalendar ======================================================================


def feed(practitioner) -> tuple[bytes, Calendar]:
    _, token = calendar_feed_create(now=datetime.now(UTC), practitioner=practitioner)
    response = Client().get(f"/reminders/calendar/{token}.ics")
    assert response.status_code == 200, response.content
    return response.content, Calendar.from_ical(response.content)


def rfc5545_instant(prop) -> datetime:
    """A DATE-TIME read as RFC 5545 section 3.3.5 says: UTC when it ends in Z; else the wall time in its TZID,
    where 'If ... the local time described occurs more than once ... the DATE-TIME value refers to the first
    occurrence', and a time that does not occur uses 'the UTC offset before the gap'."""
    value = prop.to_ical().decode()
    if value.endswith("Z"):
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    zone = ZoneInfo(str(prop.params["TZID"]))
    wall = datetime.strptime(value, "%Y%m%dT%H%M%S")
    found = readings(wall, zone)
    if found:
        return found[0]
    offset_before = (wall - timedelta(hours=3)).replace(tzinfo=zone).utcoffset()
    return (wall - offset_before).replace(tzinfo=UTC)


def vtimezone_reader(raw: bytes, tzid: str):
    """The feed's own VTIMEZONE for `tzid`, read by dateutil (as a client that trusts the file would)."""
    blocks = re.findall(rb"BEGIN:VTIMEZONE\r\n.*?END:VTIMEZONE\r\n", raw, re.S)
    [block] = [b for b in blocks if f"TZID:{tzid}\r\n".encode() in b]
    text = (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n" + block + b"END:VCALENDAR\r\n").decode()
    return dateutil_tz.tzical(io.StringIO(text)).get(tzid)


ICS_CASES = [
    (NEW_YORK, [(2026, 3, 7, 10, 0), (2026, 3, 8, 3, 0), (2026, 11, 1, 0, 30)]),
    (LORD_HOWE, [(2026, 4, 4, 10, 0), (2026, 4, 5, 2, 0), (2026, 10, 4, 2, 30)]),
    (KATHMANDU, [(2026, 3, 10, 0, 15), (2026, 3, 10, 5, 45)]),
    (SANTIAGO, [(2026, 4, 4, 5, 0), (2026, 4, 5, 0, 0), (2026, 9, 6, 1, 0)]),
    (AUCKLAND, [(2026, 4, 5, 1, 0), (2026, 4, 5, 3, 0), (2026, 9, 27, 3, 0)]),
]


@pytest.mark.parametrize(("zone", "walls"), ICS_CASES, ids=lambda v: str(v))
def test_calendar_feed_times_carry_the_clinics_tzid_and_a_vtimezone_that_reads_them_right(world, zone, walls):
    """docs/reminders.md: 'Calendar files clients obey. ... the clinic's VTIMEZONE, one UID per appointment';
    RFC 5545 requires a VTIMEZONE for every TZID used. Around each zone's changes (the first instants after a
    skipped hour, Santiago's 01:00 day start, Kathmandu's +05:45), every DTSTART and DTEND names the clinic's zone,
    and read either by the RFC's rule on the tz database or through the file's own VTIMEZONE (dateutil) it is the
    appointment's instant."""
    clinic, practitioner, patient, api = clinic_in(zone, hours=((0, 0), (23, 0)))
    made = {}
    for n, wall in enumerate(walls):
        who = PatientFactory(clinic=clinic, first_name=f"Ics{n}")
        start = at(zone, *wall)
        made[f"appointment-{book(api, who, start, 'botox', zone)['id']}@clinic-scheduling"] = start
    raw, calendar = feed(practitioner)
    events = {str(e["uid"]): e for e in calendar.walk("VEVENT")}
    assert set(events) == set(made)
    assert [str(v["tzid"]) for v in calendar.walk("VTIMEZONE")] == [str(zone)]
    reader = vtimezone_reader(raw, str(zone))
    for uid, start in made.items():
        for prop, instant in (("dtstart", start), ("dtend", start + timedelta(minutes=30))):
            value = events[uid][prop]
            assert str(value.params["TZID"]) == str(zone), (uid, prop)
            assert rfc5545_instant(value) == instant, (uid, prop, value.to_ical())
            wall = datetime.strptime(value.to_ical().decode(), "%Y%m%dT%H%M%S")
            assert wall.replace(tzinfo=reader).astimezone(UTC) == instant, (uid, prop, value.to_ical())


REPEATED = [
    (NEW_YORK, "2026-11-01T01:45:00-04:00"),  # the first 01:45: its end, 01:15 EST, is the second 01:15
    (LORD_HOWE, "2026-04-05T01:30:00+11:00"),  # the first 01:30: its end is the second 01:30
    (NEW_YORK, "2026-11-01T01:30:00-05:00"),  # the second 01:30
    (LORD_HOWE, "2026-04-05T01:30:00+10:30"),  # the second 01:30
    (AUCKLAND, "2026-04-05T02:15:00+12:00"),  # the second 02:15
    (LONDON, "2026-10-25T01:15:00+00:00"),  # the second 01:15
]


@pytest.mark.parametrize(("zone", "start"), REPEATED, ids=lambda v: str(v))
def test_calendar_feed_writes_an_appointment_in_the_repeated_hour_so_clients_read_its_real_time(world, zone, start):
    """docs/reminders.md: 'Calendar files clients obey ... the clinic's VTIMEZONE'; domain.md: 'a local time that
    ... exists twice (fall back) is refused ... unless the caller gives an explicit offset'. An appointment booked
    with an explicit offset at the SECOND reading of a repeated wall time (New York 1 November 01:30 EST, Lord Howe
    5 April 01:30 +10:30, Auckland 5 April 02:15 NZST, London 25 October 01:15 GMT) is one instant. RFC 5545 3.3.5:
    a TZID time that 'occurs more than once ... refers to the first occurrence', so the file must say it in UTC
    (or otherwise unambiguously) for a client to put it at the booked time. A visit starting in the first reading
    and ending in the second would read as ending when it starts (Lord Howe) or before it starts (New York).
    Found by this probe (the file held TZID wall times); fixed: the second reading of a time that happens twice is written in UTC."""
    clinic, practitioner, patient, api = clinic_in(zone, hours=((0, 0), (6, 0)))
    made = book(api, patient, datetime.fromisoformat(start), "botox")
    assert made["start"] == start
    instant = datetime.fromisoformat(start).astimezone(UTC)
    _, calendar = feed(practitioner)
    [event] = calendar.walk("VEVENT")
    assert rfc5545_instant(event["dtstart"]) == instant, event["dtstart"].to_ical()
    assert rfc5545_instant(event["dtend"]) == instant + timedelta(minutes=30), event["dtend"].to_ical()


def test_kathmandu_confirmation_email_attaches_its_time_at_0545(world):
    """docs/reminders.md: 'Patients get a booking confirmation (with an .ics file)'; 'Clinic details from the
    clinic's record; times in the clinic's zone' ('Wed 4 Mar, 11:00 (GMT)'). A Kathmandu booking at 03:15 UTC: the
    e-mail says 09:00 and the attached file's DTSTART is 09:00 in Asia/Kathmandu, whose VTIMEZONE is +05:45."""
    _, _, patient, api = clinic_in(KATHMANDU)
    start = at(KATHMANDU, 2026, 3, 10, 9)
    book(api, patient, start, "microneedling", KATHMANDU)
    with time_machine.travel(CLOCK + timedelta(minutes=1), tick=False):
        dispatch_local(now=CLOCK + timedelta(minutes=1))
    [email] = [m for m in mail.outbox if patient.email in m.to]
    assert "Tue 10 Mar, 09:00" in email.body
    [part] = [p for p in email.message().walk() if p.get_content_type() == "text/calendar"]
    raw = part.get_payload(decode=True)
    [event] = Calendar.from_ical(raw).walk("VEVENT")
    assert event["dtstart"].to_ical() == b"20260310T090000"
    assert str(event["dtstart"].params["TZID"]) == "Asia/Kathmandu"
    assert rfc5545_instant(event["dtstart"]) == start
    reader = vtimezone_reader(raw, "Asia/Kathmandu")
    assert datetime(2026, 3, 10, 9).replace(tzinfo=reader).utcoffset() == timedelta(hours=5, minutes=45)
    sms = [t["body"] for t in LocmemSmsBackend.outbox]
    assert sms and all("09:00" in body for body in sms if "booked" in body)


# =============================== FHIR ===========================================================================


def fhir_get(api, path: str) -> dict:
    response = api.get(path)
    assert response.status_code == 200, (path, response.content[:500])
    assert response["Content-Type"].startswith("application/fhir+json")
    return response.json()


def window(zone, day: date) -> str:
    lo, hi = local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone)
    return f"start=ge{quote(iso(lo, zone), safe='')}&start=lt{quote(iso(hi, zone), safe='')}"


FHIR_APPOINTMENTS = [
    (KATHMANDU, "2026-03-10T09:00:00+05:45"),
    (LORD_HOWE, "2026-04-05T01:30:00+11:00"),
    (LORD_HOWE, "2026-04-05T01:30:00+10:30"),
    (SANTIAGO, "2026-09-06T01:00:00-03:00"),
    (AUCKLAND, "2026-04-05T02:15:00+12:00"),
]


@pytest.mark.parametrize(("zone", "start"), FHIR_APPOINTMENTS, ids=lambda v: str(v))
def test_fhir_appointment_start_and_end_are_in_the_clinics_offset_at_that_instant(world, zone, start):
    """docs/fhir.md: 'Appointment ... `start`, `end` in the clinic's offset; `minutesDuration`'. Booked in UTC,
    each reads back at +05:45, at the offset in force on either side of Lord Howe's repeated half hour, at
    Santiago's 01:00 day start and at the second 02:15 of Auckland's change night."""
    _, _, patient, api = clinic_in(zone, hours=((0, 0), (23, 0)))
    instant = datetime.fromisoformat(start).astimezone(UTC)
    made = book(api, patient, instant, "botox")
    assert made["start"] == start
    body = fhir_get(api, f"/fhir/r4/Appointment/{made['id']}")
    assert body["start"] == start
    assert body["end"] == iso(instant + timedelta(minutes=30), zone)
    assert body["minutesDuration"] == 30


FHIR_DAYS = [
    (LORD_HOWE, date(2026, 4, 5)),
    (LORD_HOWE, date(2026, 10, 4)),
    (SANTIAGO, date(2026, 9, 6)),
    (AUCKLAND, date(2026, 9, 27)),
    (KATHMANDU, date(2026, 3, 10)),
]


@pytest.mark.parametrize(("zone", "day"), FHIR_DAYS, ids=lambda v: str(v))
def test_fhir_free_slots_are_the_local_working_day_on_a_change_day(world, zone, day):
    """docs/fhir.md: 'Free, without service-type: the free stretches of working time (working hours less bookings
    and time off ...)'; with `service-type`, 'every start where that procedure fits, on the grid'. Working
    09:00-18:00 local: one free stretch 09:00-18:00 in that day's offset; Botox starts every 15 minutes to 17:30."""
    _, practitioner, _, api = clinic_in(zone)
    base = f"/fhir/r4/Slot?schedule=Schedule/{practitioner.pk}&status=free&{window(zone, day)}"
    stretches = [e["resource"] for e in fhir_get(api, base).get("entry", [])]
    nine, six = (readings(datetime.combine(day, time(h)), zone)[0] for h in (9, 18))
    assert [(s["start"], s["end"]) for s in stretches] == [(iso(nine, zone), iso(six, zone))]
    starts = [e["resource"]["start"] for e in fhir_get(api, base + "&service-type=botox&_count=200").get("entry", [])]
    assert starts == expected_slots(zone, day, time(9), time(18), 30)


@pytest.mark.parametrize(("zone", "day"), NIGHT_CHANGES, ids=lambda v: str(v))
def test_fhir_free_slot_starts_skip_the_lost_hour_and_repeat_the_doubled_one(world, zone, day):
    """docs/fhir.md: with `service-type`, 'every start where that procedure fits, on the grid, lasting its
    duration'. A practitioner working 00:00-06:00 local: no start in a skipped wall time, both readings of a
    repeated one, each at its own offset (the same starts the v1 availability gives)."""
    _, practitioner, _, api = clinic_in(zone, hours=((0, 0), (6, 0)))
    path = f"/fhir/r4/Slot?schedule=Schedule/{practitioner.pk}&status=free&service-type=botox&_count=200&{window(zone, day)}"
    starts = [e["resource"]["start"] for e in fhir_get(api, path).get("entry", [])]
    assert starts == expected_slots(zone, day, time(0), time(6), 30)


def test_auckland_patient_page_and_aftercare_sheet_count_local_days(world):
    """domain.md: calendar gaps compare local dates; the post-care note 'says when the patient may next have Botox,
    filler or plasma pen, computed from the interval rules for this patient (001: wait at least 3 weeks for Botox or
    filler; plasma pen after 7 to 10 days)'; docs/frontdesk.md: the patient's page says 'when each bookable
    procedure is possible again'. In Auckland a Botox on 1 March 00:30 (28 February in UTC) makes microneedling
    possible from Sunday 15 March; a microneedling on Tuesday 3 March 09:00 (2 March in UTC) makes Botox possible
    from Tuesday 24 March and plasma pen from Tuesday 10 March, ideally Friday 13 March."""
    clinic, practitioner, patient, api = clinic_in(AUCKLAND)
    history(api, patient, at(AUCKLAND, 2026, 3, 1, 0, 30), AUCKLAND)
    client = desk(clinic, StaffRole.CLINICIAN)
    text = squash(client.get(page_url("patient", clinic, patient.pk)))
    row = text[text.index("Microneedling (collagen induction therapy)</h3>") :][:400]
    assert "Not before <strong>Sun 15 Mar 2026</strong>" in row, row

    other = PatientFactory(clinic=clinic, first_name="After")
    made = written(other, practitioner, at(AUCKLAND, 2026, 3, 3, 9))
    with time_machine.travel(at(AUCKLAND, 2026, 3, 3, 10), tick=False):
        client = Client()
        client.force_login(get_user_model().objects.get(username=f"desk-{clinic.code}-{StaffRole.CLINICIAN}"))
        assert client.post(page_url("complete", clinic, made.pk)).status_code == 302
        sheet = squash(client.get(page_url("aftercare", clinic, made.pk)))
    done = date(2026, 3, 3)
    botox_from = done + timedelta(weeks=3)
    pen_from, pen_ideal = done + timedelta(days=7), done + timedelta(days=10)
    assert f"{botox_from:%A} {botox_from.day} {botox_from:%B %Y}" in sheet
    assert f"{pen_from:%A} {pen_from.day} {pen_from:%B %Y}" in sheet
    assert f"{pen_ideal:%A} {pen_ideal.day} {pen_ideal:%B %Y}" in sheet
    assert "Monday 23 March 2026" not in sheet


def test_a_visit_at_a_sister_site_in_another_zone_keeps_that_sites_clock_and_nights(world):
    """docs/reminders.md: 'Due times are computed in the clinic's zone', 'No SMS between 21:00 and 08:00 local';
    docs/organisations.md and the contract: a patient belongs to an organisation and may be booked at any of its
    clinics ('a location with its own zone'). A patient of a London clinic booked at the organisation's Auckland
    site for Tuesday 10 March 07:00 NZDT: the API answers in +13:00, the day-before and pre-care texts leave the
    Auckland night (07:00 there is quiet, though 18:00 in London is not) for 20:59 NZDT on Sunday 8 March."""
    home, _, patient, _ = clinic_in(LONDON)
    site = ClinicFactory(
        code="tz-akl-site", name="Auckland site", timezone="Pacific/Auckland", organisation=home.organisation
    )
    doctor = PractitionerFactory(clinic=site, name="Dr Akl", hours=[])
    WorkingHours.objects.bulk_create(
        WorkingHours(practitioner=doctor, weekday=d, start_time=time(6), end_time=time(18)) for d in EVERY_DAY
    )
    api = http(new_api_client(home, site, name="platform-two-zones", clinical=True)[1])
    start = at(AUCKLAND, 2026, 3, 10, 7)
    made = book(api, patient, start, "microneedling", practitioner=str(doctor.pk))
    assert made["start"] == "2026-03-10T07:00:00+13:00"
    texts = {r["kind"]: r["due_at"] for r in reminders_of(api, made["id"]) if r["channel"] == "sms"}
    evening = walk_back_to_allowed(start - timedelta(days=1), AUCKLAND, time(21), time(8))
    assert iso(evening, AUCKLAND) == "2026-03-08T20:59:00+13:00"
    assert texts["reminder"] == texts["pre_care"] == "2026-03-08T20:59:00+13:00"


def test_lord_howe_a_text_claimed_at_night_waits_for_0800_on_the_new_offset(world):
    """docs/reminders.md: 'Quiet hours are checked again when an SMS is sent, not only when it is planned: a
    backlog claimed at night (workers down, a long outage) waits until the quiet hours end (the row goes back to
    pending, without spending an attempt)'. Aftercare completed Saturday 4 April 2026 at 20:00 (+11:00) on Lord
    Howe; the dispatcher first runs at 01:45 +10:30 (the second time round, after the clocks went back): the text
    waits for 08:00 +10:30 (21:30 UTC) and goes then, not at 08:00 +11:00 (21:00 UTC)."""
    _, _, patient, api = clinic_in(LORD_HOWE, hours=((9, 0), (22, 0)))
    made = book(api, patient, at(LORD_HOWE, 2026, 4, 4, 18), "botox", LORD_HOWE)
    complete_at(api, made["id"], at(LORD_HOWE, 2026, 4, 4, 20))
    [row] = OutboxMessage.objects.filter(
        appointment_id=made["id"], template__default_key="botox-post-care-completion", channel="sms"
    )
    night = datetime(2026, 4, 4, 15, 15, tzinfo=UTC)
    assert iso(night, LORD_HOWE) == "2026-04-05T01:45:00+10:30"
    LocmemSmsBackend.outbox = []

    def run(moment):
        with time_machine.travel(moment, tick=False):
            dispatch_local(now=moment)
        row.refresh_from_db()

    run(night)
    morning = walk_on_to_allowed(night, LORD_HOWE, time(21), time(8))
    assert iso(morning, LORD_HOWE) == "2026-04-05T08:00:00+10:30"
    assert (row.status, row.due_at) == ("pending", morning)
    run(morning - timedelta(minutes=1))
    assert row.status == "pending"
    run(morning)
    assert row.status == "sent"
    assert row.sent_at == morning


def test_auckland_local_today_opens_plans_forms_and_check_in(world):
    """docs/plans.md: 'a start in the past (`start_in_past`)' is a 400, 'start_from (date)' being 'clinic-local';
    docs/frontdesk.md: 'a past day is an error on the date'; check in 'only on the appointment's local day'. At
    12:00 UTC on Monday 2 March it is Tuesday 3 March in Auckland: a course may start on 3 March (its first session
    that morning at 09:00 +13:00), 2 March is past; the desk refuses 2 March too. At 23:00 on Monday (local; 10:00
    UTC on 2 March, the UTC date of Tuesday's 15:00 visit) that visit cannot be checked in yet."""
    clinic, practitioner, patient, api = clinic_in(AUCKLAND)
    visit = written(PatientFactory(clinic=clinic, first_name="Later"), practitioner, at(AUCKLAND, 2026, 3, 3, 15))
    with time_machine.travel(datetime(2026, 3, 2, 12, tzinfo=UTC), tick=False):
        url = f"/api/v1/patients/{patient.pk}/plans/"
        body = post(api, url, {"template": "microneedling-course", "start_from": "2026-03-03", "dry_run": True}, 200)
        assert body["sessions"][0]["start"] == "2026-03-03T09:00:00+13:00"
        refused = post(api, url, {"template": "microneedling-course", "start_from": "2026-03-02", "dry_run": True}, 400)
        assert refused["code"] == "start_in_past"
        client = desk(clinic)
        past = client.get(page_url("book", clinic, patient.pk), {"procedure": "botox", "date": "2026-03-02"})
        assert "That day has passed" in squash(past)
        today = client.get(page_url("book", clinic, patient.pk), {"procedure": "botox", "date": "2026-03-03"})
        assert "That day has passed" not in squash(today)
    with time_machine.travel(datetime(2026, 3, 2, 10, tzinfo=UTC), tick=False):
        client = Client()
        client.force_login(get_user_model().objects.get(username=f"desk-{clinic.code}-{StaffRole.RECEPTIONIST}"))
        response = client.post(page_url("check_in", clinic, visit.pk))
        assert response.status_code == 409, response.status_code
    visit.refresh_from_db()
    assert visit.checked_in_at is None


def test_a_patients_feed_across_two_zones_carries_both_vtimezones(world):
    """docs/reminders.md: 'Calendar files clients obey ... the clinic's VTIMEZONE'; a patient's feed has 'every
    appointment with us' (docs/portal.md). A London patient with a visit at home and one at the organisation's
    Kathmandu site: each event names its own clinic's zone, the feed defines both, and each reads back as booked."""
    home, _, patient, _ = clinic_in(LONDON)
    site = ClinicFactory(
        code="tz-ktm-site", name="Kathmandu site", timezone="Asia/Kathmandu", organisation=home.organisation
    )
    doctor = PractitionerFactory(clinic=site, name="Dr Ktm", hours=list(EVERY_DAY))
    api = http(new_api_client(home, site, name="platform-ktm", clinical=True)[1])
    here = book(api, patient, at(LONDON, 2026, 3, 30, 10), "botox", LONDON, clinic=str(home.pk))
    there = book(api, patient, at(KATHMANDU, 2026, 4, 2, 10), "botox", KATHMANDU, practitioner=str(doctor.pk))
    assert (here["start"], there["start"]) == ("2026-03-30T10:00:00+01:00", "2026-04-02T10:00:00+05:45")
    _, token = calendar_feed_create(now=datetime.now(UTC), patient=patient)
    response = Client().get(f"/reminders/calendar/{token}.ics")
    assert response.status_code == 200
    calendar = Calendar.from_ical(response.content)
    assert sorted(str(v["tzid"]) for v in calendar.walk("VTIMEZONE")) == ["Asia/Kathmandu", "Europe/London"]
    events = {str(e["uid"]): e for e in calendar.walk("VEVENT")}
    for made, zone in ((here, LONDON), (there, KATHMANDU)):
        event = events[f"appointment-{made['id']}@clinic-scheduling"]
        assert str(event["dtstart"].params["TZID"]) == str(zone)
        assert rfc5545_instant(event["dtstart"]) == datetime.fromisoformat(made["start"])
        reader = vtimezone_reader(response.content, str(zone))
        wall = datetime.strptime(event["dtstart"].to_ical().decode(), "%Y%m%dT%H%M%S")
        assert wall.replace(tzinfo=reader).astimezone(UTC) == datetime.fromisoformat(made["start"])
