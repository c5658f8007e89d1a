"""Review of 973dddd (two events on one local date are 0 days apart, calendar gaps) and 0f7c847 (scheduler 0011).

What it probes: for same-date pairs (microneedling later the same day as a booked plasma pen; the rule is
microneedling -> plasma pen 7 days block / 10 days warn), whether every consumer of the engine agrees: booking and
its earliest start and next slot, the 14-day availability search (services and HTTP), eligibility and the 409 over
the API, reschedule (within its own date, and moving one of a same-date pair), the re-check after a change of the
record, a treatment plan (plans.services.plan_propose), the desk's "Not before" (frontdesk.selectors.patient_record),
post-care "next possible" (reminders.content.next_possible) and recalls (plans.recalls.recall_for,
reminders.content.recall_earliest). Edges: the DST days of London (29 March 2026) and New York (8 March 2026), a day
reported without a time (23:59 local), the plasma pen repeat rule (warn) on one date, an organisation's hour rule
(still by the instant), a month rule at month ends. The migration 0011's forward function (a run only with future
active bookings) and its reverse (a no-op).

Found (5 December): no DEFECT and no QUESTION. Every consumer tried agrees with the booking on same-date pairs, in
both orders: the earliest start and next slot, the 14- and 90-day searches, the API (eligibility, 409,
availability), reschedules, the patient re-check, a plan, the desk, next possible, recalls. So do a sister site a
day ahead (Auckland/Honolulu, at SAME_DATE's reach), the DST days, a day reported without a time, a month rule at
month ends. The repeat rule warns both ways on one date; an hour rule still goes by the instant; a move within
its own date does not conflict with itself. Migration 0011 makes a run only with future active bookings (not past,
cancelled or completed ones); resume_rechecks finds it, it flags same-date pairs in two organisations, and its
reverse is RunPython.noop. 13 of the 17 tests fail with scheduler/rules.py as before 973dddd (checked on a copy);
the other 4 guard what should not change.
"""

from __future__ import annotations

import importlib
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.apps import apps as django_apps
from django.db import connection
from django.db.migrations.operations import RunPython
from django.utils import timezone

from clinic.models import ACTIVE_APPOINTMENT_STATUSES, Appointment, AppointmentStatus, WorkingHours
from clinic.services import procedure_record_add
from frontdesk.selectors import patient_record
from plans.defaults import plan_templates_load
from plans.recalls import recall_for
from plans.services import plan_propose, plan_template_get
from reminders.content import next_possible, recall_earliest
from reminders.wording import fmt_long_date
from scheduler import rules, selectors
from scheduler.booking import (
    Actor,
    appointment_book,
    appointment_check,
    appointment_recheck,
    appointment_reschedule,
    appointment_reschedule_check,
    appointment_slots,
)
from scheduler.models import RecheckRun
from scheduler.recheck import patient_appointments_recheck, recheck_run_step, recheck_runs_stalled
from tests.api.conftest import http, new_api_client
from tests.factories import AppointmentFactory, ClinicFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import LONDON, NOW, org_rule

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("catalogue")]

DESK = Actor("sd-desk@qa")
D = date(2026, 3, 17)  # a Tuesday, London on GMT


def _site(code: str, zone: str, name: str):
    """A clinic whose one practitioner works round the clock, every day."""
    clinic = ClinicFactory(code=code, name=name, timezone=zone)
    doctor = PractitionerFactory(clinic=clinic, name=f"Dr {name}", hours=[])
    WorkingHours.objects.bulk_create(
        WorkingHours(practitioner=doctor, weekday=d, start_time=time(0), end_time=time(23, 59)) for d in range(7)
    )
    return clinic, doctor


@pytest.fixture
def ldn():
    return _site("sd-ldn", "Europe/London", "SD London")


@pytest.fixture
def nyc():
    return _site("sd-ny", "America/New_York", "SD New York")


def at(day: date, hh: int, mm: int = 0, tz=LONDON) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=tz)


def midnight(day: date, tz=LONDON) -> datetime:
    return rules.start_of_local_day(day, tz)


def check(patient, when, now, clinic, code="microneedling"):
    return appointment_check(patient=patient, procedure_code=code, start_at=when, now=now, clinic_id=clinic.code)


def blocked(patient, when, now, clinic, code="microneedling") -> bool:
    return bool(check(patient, when, now, clinic, code).evaluation.blocking)


def book(patient, when, now, clinic, code="microneedling") -> Appointment:
    return appointment_book(
        patient=patient, procedure_code=code, start_at=when, actor=DESK, now=now, clinic_id=clinic.code
    ).appointment


def written(patient, site, when, code, status=AppointmentStatus.CONFIRMED) -> Appointment:
    """An appointment written as it stands, without the rules (as booked before the new reading)."""
    clinic, doctor = site
    return AppointmentFactory(
        patient=patient,
        clinic=clinic,
        practitioner=doctor,
        procedure_id=code,
        start_at=when,
        end_at=when + timedelta(minutes=30),
        status=status,
    )


def slots(patient, clinic, start, end, now, code="microneedling", limit=1):
    return [
        s.start_at
        for s in appointment_slots(
            patient=patient,
            procedure_code=code,
            window_start=start,
            window_end=end,
            now=now,
            limit=limit,
            clinic_id=clinic.code,
        )
    ]


# --- 1. Every consumer on microneedling later the same day as a booked plasma pen --------------------------------


def test_every_consumer_refuses_microneedling_later_the_same_day_as_a_booked_plasma_pen(ldn):
    """Plasma pen booked Tue 17 Mar 10:00 London. Microneedling at 15:00 that day is 0 days before it: refused,
    earliest start and next slot Wed 18 Mar 00:00; the 14-day search from 11:00 offers Wednesday midnight first,
    nothing that afternoon; the desk at 11:00 says not before Wednesday; a course planned from 12:00 starts
    Wednesday; booking at 15:00 raises; the other order (microneedling at 08:00, plasma pen asked at 15:00) too."""
    plan_templates_load()
    clinic, _ = ldn
    patient = PatientFactory(clinic=clinic)
    book(patient, at(D, 10), NOW, clinic, code="plasma_pen")
    wed = midnight(D + timedelta(days=1))

    refused = check(patient, at(D, 15), NOW, clinic)
    assert refused.evaluation.blocking
    assert refused.earliest_eligible_start == wed
    assert refused.next_available_slot.start_at == wed
    assert blocked(patient, at(D, 23, 59), NOW, clinic)
    assert not blocked(patient, wed, NOW, clinic)
    assert slots(patient, clinic, at(D, 11), midnight(D + timedelta(days=14)), NOW) == [wed]

    on_the_day = at(D, 11)
    with time_machine.travel(on_the_day, tick=False):
        outlook = {
            r.procedure.code: r.check for r in patient_record(patient=patient, now=on_the_day, clinic=clinic).outlook
        }
        assert outlook["microneedling"].earliest_eligible_start == wed
        template = plan_template_get("microneedling-course", organisation_id=patient.organisation_id)
        plan = plan_propose(patient=patient, clinic=clinic, template=template, start_at=at(D, 12)).plan
        assert plan.feasible and plan.sessions[0].start_at == wed
    with pytest.raises(Exception):  # noqa: B017 (UnableToBook, whatever its module)
        book(patient, at(D, 15), NOW, clinic)

    # The other order: microneedling at 08:00 booked first; plasma pen asked later that day.
    other = PatientFactory(clinic=clinic)
    book(other, at(D, 8), NOW, clinic)
    refused = check(other, at(D, 15), NOW, clinic, code="plasma_pen")
    assert refused.evaluation.blocking
    assert refused.earliest_eligible_start == midnight(D + timedelta(days=7))


def test_the_api_agrees_on_the_same_date_pair(ldn):
    """Over HTTP, for microneedling at 15:00 on the plasma pen's date: eligibility and the 409 give Wednesday
    00:00 as earliest start and next slot; the availability search from 11:00 gives Wednesday 00:00 first."""
    clinic, _ = ldn
    patient = PatientFactory(clinic=clinic)
    book(patient, at(D, 10), NOW, clinic, code="plasma_pen")
    api = http(new_api_client(clinic)[1])
    body = {"patient": str(patient.pk), "procedure": "microneedling", "start": "2026-03-17T15:00:00+00:00"}
    with time_machine.travel(NOW, tick=False):
        eligibility = api.post("/api/v1/eligibility/", body, format="json").json()
        refusal = api.post("/api/v1/appointments/", body, format="json")
        found = api.get(
            "/api/v1/availability/",
            {"patient": str(patient.pk), "procedure": "microneedling", "from": "2026-03-17T11:00:00+00:00"},
        ).json()["results"]
    assert refusal.status_code == 409, refusal.content
    for answer in (eligibility, refusal.json()):
        assert answer["earliest_eligible_start"].startswith("2026-03-18T00:00:00"), answer
        assert answer["next_available_slot"]["start"].startswith("2026-03-18T00:00:00"), answer
    assert found[0]["start"].startswith("2026-03-18T00:00:00"), found[:2]
    assert not [s for s in found if s["start"].startswith("2026-03-17")]


def test_the_90_day_search_offers_nothing_on_the_plasma_pens_date(ldn):
    """A longer search (90 days, several slots) offers no microneedling on the plasma pen's date or the six days
    before it, and offers the day after."""
    clinic, _ = ldn
    patient = PatientFactory(clinic=clinic)
    book(patient, at(D, 10), NOW, clinic, code="plasma_pen")
    found = slots(patient, clinic, NOW, NOW + timedelta(days=90), NOW, limit=2000)
    days = {s.astimezone(LONDON).date() for s in found}
    assert not {D - timedelta(days=k) for k in range(7)} & days
    assert D + timedelta(days=1) in days and D - timedelta(days=7) in days


# --- 2. Reschedule ----------------------------------------------------------------------------------------------


def test_moving_a_booking_within_its_own_date_does_not_conflict_with_itself(ldn):
    """Microneedling at 10:00 moved to 16:00 the same day, and a plasma pen at 09:00 moved to 18:00 (the repeat
    rules of both are warnings): no violation names the appointment itself."""
    clinic, _ = ldn
    patient = PatientFactory(clinic=clinic)
    micro = book(patient, at(D, 10), NOW, clinic)
    pen = book(PatientFactory(clinic=clinic), at(D, 9), NOW, clinic, code="plasma_pen")
    for appointment, to in ((micro, at(D, 16)), (pen, at(D, 18))):
        dry = appointment_reschedule_check(appointment=appointment, start_at=to, now=NOW)
        assert dry.eligible and not dry.evaluation.violations, dry.evaluation.violations
        moved = appointment_reschedule(appointment=appointment, start_at=to, actor=DESK, now=NOW).appointment
        assert moved.start_at == to and moved.status == AppointmentStatus.CONFIRMED


def test_moving_one_of_a_same_date_pair(ldn):
    """Plasma pen 10:00 and microneedling 15:00 on one date (written as booked before): moving the microneedling
    to 08:00 the same day is refused, to the next day's midnight allowed; moving the plasma pen to 20:00 that day is
    refused, to a week later allowed (with the 10-day warning)."""
    site = ldn
    patient = PatientFactory(clinic=site[0])
    pen = written(patient, site, at(D, 10), "plasma_pen")
    micro = written(patient, site, at(D, 15), "microneedling")
    assert appointment_reschedule_check(appointment=micro, start_at=at(D, 8), now=NOW).evaluation.blocking
    assert appointment_reschedule_check(appointment=micro, start_at=at(D, 23, 30), now=NOW).evaluation.blocking
    assert not appointment_reschedule_check(
        appointment=micro, start_at=midnight(D + timedelta(days=1)), now=NOW
    ).evaluation.blocking
    assert appointment_reschedule_check(appointment=pen, start_at=at(D, 20), now=NOW).evaluation.blocking
    week = appointment_reschedule_check(appointment=pen, start_at=midnight(D + timedelta(days=7)), now=NOW)
    assert not week.evaluation.blocking and week.evaluation.warnings


# --- 3. The re-check -------------------------------------------------------------------------------------------


def test_the_recheck_flags_a_same_date_pair_and_keeps_an_unrelated_one(ldn):
    """Microneedling booked at 15:00; a plasma pen at 10:00 the same date written afterwards; the patient's
    re-check (as after a record change) flags both. Botox and plasma pen on one date (no rule) stay confirmed, and
    a lone microneedling's re-check has no violation of its own repeat rule."""
    site = ldn
    clinic = site[0]
    patient, calm = PatientFactory(clinic=clinic), PatientFactory(clinic=clinic)
    micro = book(patient, at(D, 15), NOW, clinic)
    assert not appointment_recheck(appointment=micro).evaluation.violations
    pen = written(patient, site, at(D, 10), "plasma_pen")
    changed = patient_appointments_recheck(patient_id=patient.pk, now=NOW, cause="qa")
    assert {a.pk for a in changed} == {micro.pk, pen.pk}
    assert {a.status for a in Appointment.objects.filter(pk__in=[micro.pk, pen.pk])} == {"needs_review"}
    book(calm, at(D, 17), NOW, clinic, code="botox")
    written(calm, site, at(D, 11), "plasma_pen")
    assert patient_appointments_recheck(patient_id=calm.pk, now=NOW, cause="qa") == []


# --- 4. Edges --------------------------------------------------------------------------------------------------


def test_a_day_reported_without_a_time_forbids_the_later_procedure_all_that_day(ldn):
    """Microneedling reported on Wed 18 Mar for Tue 17 Mar, no time: kept 23:59 London. The engine, asked about a
    plasma pen at 15:00 on 17 Mar, finds it 0 days after (the old reading: before 23:59, no rule), earliest start
    Tue 24 Mar; a day reported as today without a time is kept as the moment of reporting (not 23:59 ahead)."""
    clinic, _ = ldn
    patient, today = PatientFactory(clinic=clinic), PatientFactory(clinic=clinic)
    now = at(D + timedelta(days=1), 9)
    with time_machine.travel(now, tick=False):
        record = procedure_record_add(patient=patient, procedure_code="microneedling", now=now, performed_on=D)
        assert record.performed_at.astimezone(LONDON) == at(D, 23, 59)
        same = procedure_record_add(
            patient=today, procedure_code="microneedling", now=now, performed_on=D + timedelta(days=1)
        )
        assert same.performed_at == now
    timeline = selectors.timeline_for_patient(patient.pk)
    rulebook = selectors.rulebook_load(patient.organisation_id)
    evaluation = rules.evaluate(timeline, rulebook, rules.Proposal("plasma_pen", at(D, 15), None), LONDON)
    assert [v.rule_id for v in evaluation.blocking], evaluation.violations
    assert evaluation.earliest_eligible_start == midnight(D + timedelta(days=7))


def test_the_plasma_pen_repeat_rule_on_one_date_warns_both_ways(ldn):
    """Plasma pen at 10:00; another at 15:00 or at 08:00 the same day: a warning (6 weeks), not a block, and
    booking it confirms."""
    clinic, _ = ldn
    patient = PatientFactory(clinic=clinic)
    book(patient, at(D, 10), NOW, clinic, code="plasma_pen")
    for when in (at(D, 15), at(D, 8)):
        answer = check(patient, when, NOW, clinic, code="plasma_pen")
        assert not answer.evaluation.blocking and [v.rule_id for v in answer.evaluation.warnings], when
    assert book(patient, at(D, 15), NOW, clinic, code="plasma_pen").status == AppointmentStatus.CONFIRMED


def test_an_hour_rule_still_goes_by_the_instant(ldn):
    """An organisation's rule plasma pen -> Botox 4 hours: with a plasma pen at 10:00, Botox at 08:00 the same day
    is allowed (before it), 13:59 refused, 14:00 allowed; and a plasma pen asked at 10:00 with Botox at 08:00 booked
    is allowed."""
    clinic, _ = ldn
    patient = PatientFactory(clinic=clinic)
    org_rule(patient, "plasma_pen", "botox", 4, "hours")
    book(patient, at(D, 10), NOW, clinic, code="plasma_pen")
    assert not blocked(patient, at(D, 8), NOW, clinic, code="botox")
    refused = check(patient, at(D, 13, 59), NOW, clinic, code="botox")
    assert refused.evaluation.blocking and refused.earliest_eligible_start == at(D, 14)
    assert not blocked(patient, at(D, 14), NOW, clinic, code="botox")
    other = PatientFactory(clinic=clinic)
    book(other, at(D, 8), NOW, clinic, code="botox")
    assert not blocked(other, at(D, 10), NOW, clinic, code="plasma_pen")


@pytest.mark.parametrize(
    "zone, day, pen_at, late",
    [
        ("london", date(2026, 3, 29), (0, 30), (23, 30)),  # clocks go forward at 01:00 GMT
        ("ny", date(2026, 3, 8), (21, 0), (0, 30)),  # clocks go forward at 02:00 EST
    ],
    ids=["london-29-march", "new-york-8-march"],
)
def test_the_dst_day_is_one_date(request, zone, day, pen_at, late):
    """On the spring-forward day (a 23-hour date) a plasma pen and a microneedling are 0 days apart at any hours:
    London plasma pen 00:30 GMT, microneedling 23:30 BST refused; New York plasma pen 21:00 EDT, microneedling
    00:30 EST refused; either way the earliest start is the next local midnight, and the search agrees."""
    clinic, _ = request.getfixturevalue("ldn" if zone == "london" else "nyc")
    tz = clinic.tz
    patient = PatientFactory(clinic=clinic)
    book(patient, at(day, *pen_at, tz=tz), NOW, clinic, code="plasma_pen")
    refused = check(patient, at(day, *late, tz=tz), NOW, clinic)
    nxt = midnight(day + timedelta(days=1), tz)
    assert refused.evaluation.blocking and refused.earliest_eligible_start == nxt
    assert refused.next_available_slot.start_at == nxt
    assert slots(patient, clinic, midnight(day, tz), midnight(day + timedelta(days=3), tz), NOW) == [nxt]
    assert not blocked(patient, nxt, NOW, clinic)


def test_a_month_rule_at_month_ends(ldn):
    """An organisation's rule plasma pen -> Botox 1 month, Botox booked Thu 30 Apr 09:00: plasma pen on 31 Mar at
    23:00 is allowed (31 Mar + 1 month = 30 Apr), 1 Apr 00:00 refused, 30 Apr 15:00 (the Botox's date, later)
    refused with earliest start 1 May 00:00."""
    clinic, _ = ldn
    patient = PatientFactory(clinic=clinic)
    org_rule(patient, "plasma_pen", "botox", 1, "months")
    book(patient, at(date(2026, 4, 30), 9), NOW, clinic, code="botox")
    assert not blocked(patient, at(date(2026, 3, 31), 23), NOW, clinic, code="plasma_pen")
    assert blocked(patient, midnight(date(2026, 4, 1)), NOW, clinic, code="plasma_pen")
    refused = check(patient, at(date(2026, 4, 30), 15), NOW, clinic, code="plasma_pen")
    assert refused.evaluation.blocking
    assert refused.earliest_eligible_start == midnight(date(2026, 5, 1))


# --- 5. Post-care and recalls ----------------------------------------------------------------------------------


def test_next_possible_skips_the_plasma_pens_date(ldn):
    """A Botox on Tue 17 Mar 10:00 London; a plasma pen booked Tue 31 Mar 10:00 (the Botox's date + 2 weeks).
    Post-care's "next possible" microneedling: Wednesday 1 April (a microneedling on 31 March would be 0 days before
    the plasma pen), the first day booking accepts."""
    site = ldn
    clinic = site[0]
    patient = PatientFactory(clinic=clinic)
    botox = written(patient, site, at(D, 10), "botox")
    written(patient, site, at(date(2026, 3, 31), 10), "plasma_pen")
    now = at(D, 11)
    [micro] = [n for n in next_possible(appointment=botox, now=now) if n.code == "microneedling"]
    assert micro.from_date == fmt_long_date(at(date(2026, 4, 1), 12), LONDON)
    assert blocked(patient, at(date(2026, 3, 31), 16), now, clinic)
    assert not blocked(patient, midnight(date(2026, 4, 1)), now, clinic)


def test_a_recall_skips_the_date_of_a_later_procedure_booked_earlier_that_day(ldn):
    """Botox completed 10 Mar; its maintenance recall opens on 10 Jun. An organisation's rule Botox -> plasma pen
    1 day, and a plasma pen booked 10 Jun 08:00: a Botox on 10 Jun is 0 days before it, so the recall's earliest is
    11 Jun (the old reading: 10 Jun 08:00); recall_earliest and the desk say the same."""
    site = ldn
    clinic = site[0]
    patient = PatientFactory(clinic=clinic)
    org_rule(patient, "botox", "plasma_pen", 1, "days")
    plan_templates_load()
    done = written(patient, site, at(date(2026, 3, 10), 10), "botox", status=AppointmentStatus.COMPLETED)
    written(patient, site, at(date(2026, 6, 10), 8), "plasma_pen")
    due = recall_for(appointment=done)
    assert due is not None and due.procedure == "botox"
    assert due.opens_on == date(2026, 6, 10)
    assert due.earliest_on == date(2026, 6, 11)
    now = at(date(2026, 6, 10), 7)
    again = recall_earliest(appointment=done, recall={"opens_on": "2026-06-10", "procedure": "botox"}, now=now)
    assert again == midnight(date(2026, 6, 11))
    assert blocked(patient, at(date(2026, 6, 10), 12), now, clinic, code="botox")
    with time_machine.travel(now, tick=False):
        outlook = {r.procedure.code: r.check for r in patient_record(patient=patient, now=now, clinic=clinic).outlook}
    assert outlook["botox"].earliest_eligible_start == midnight(date(2026, 6, 11))


# --- 6. The migration ------------------------------------------------------------------------------------------

_0011 = importlib.import_module("scheduler.migrations.0011_recheck_after_day_reading")


def test_the_upgrade_makes_a_run_only_with_future_active_bookings(ldn, nyc):
    """0011's forward function: nothing booked, a past booking, a cancelled or completed future one: no run; with
    future same-date pairs in two organisations (London, New York): one run of every organisation's, naming every
    procedure, that the beat's resume finds once stalled, and whose steps flag both pairs, each booking of each."""
    patient = PatientFactory(clinic=ldn[0])
    now = datetime.now(tz=LONDON)
    _0011.start(django_apps, connection.schema_editor)
    assert not RecheckRun.objects.exists()
    written(patient, ldn, now - timedelta(days=3), "botox")
    written(patient, ldn, now + timedelta(days=3), "botox", status=AppointmentStatus.CANCELLED)
    written(patient, ldn, now + timedelta(days=4), "botox", status=AppointmentStatus.COMPLETED)
    _0011.start(django_apps, connection.schema_editor)
    assert not RecheckRun.objects.exists()
    pairs = []
    for site in (ldn, nyc):
        who = PatientFactory(clinic=site[0])
        day = (now + timedelta(days=10)).astimezone(site[0].tz).date()
        pairs += [
            written(who, site, at(day, 10, tz=site[0].tz), "plasma_pen"),
            written(who, site, at(day, 15, tz=site[0].tz), "microneedling"),
        ]
    assert ldn[0].organisation_id != nyc[0].organisation_id
    _0011.start(django_apps, connection.schema_editor)
    [run] = RecheckRun.objects.all()
    assert run.organisation_id is None and {"microneedling", "plasma_pen", "botox"} <= set(run.procedures)
    assert set(_0011.ACTIVE) == {str(s) for s in ACTIVE_APPOINTMENT_STATUSES}
    assert run.pk in recheck_runs_stalled(now=timezone.now() + timedelta(hours=1))
    while not recheck_run_step(run_id=run.pk, now=timezone.now()):
        pass
    statuses = set(Appointment.objects.filter(pk__in=[a.pk for a in pairs]).values_list("status", flat=True))
    assert statuses == {AppointmentStatus.NEEDS_REVIEW}


def test_the_upgrades_reverse_is_a_no_op():
    """0011 is reversible and its reverse does nothing (RunPython.noop), so unapplying it cannot fail."""
    [operation] = _0011.Migration.operations
    assert isinstance(operation, RunPython) and operation.reversible
    assert operation.reverse_code is RunPython.noop
    before = RecheckRun.objects.count()
    operation.reverse_code(django_apps, None)
    assert RecheckRun.objects.count() == before


def test_a_sister_site_a_day_ahead_gives_its_own_date(ldn):
    """A plasma pen at an Auckland sister site on Wed 18 Mar 08:00 NZDT (Tue 17 Mar 09:00 HST); microneedling at
    Honolulu: on Wed 18 Mar 23:30 HST (the plasma pen's date there is 18 March; nearly two days after it by the
    instant) it is refused, earliest start and the search's first slot Thu 19 Mar 00:00 HST (SAME_DATE's reach)."""
    honolulu, auckland = ZoneInfo("Pacific/Honolulu"), ZoneInfo("Pacific/Auckland")
    hnl = _site("sd-hnl", "Pacific/Honolulu", "SD Honolulu")
    akl = _site("sd-akl", "Pacific/Auckland", "SD Auckland")
    for clinic, _ in (hnl, akl):
        clinic.organisation = ldn[0].organisation
        clinic.save()
    patient = PatientFactory(clinic=ldn[0])
    written(patient, akl, datetime(2026, 3, 18, 8, tzinfo=auckland), "plasma_pen")
    refused = check(patient, datetime(2026, 3, 18, 23, 30, tzinfo=honolulu), NOW, hnl[0])
    first = midnight(date(2026, 3, 19), honolulu)
    assert refused.evaluation.blocking and refused.earliest_eligible_start == first
    assert refused.next_available_slot.start_at == first
    assert slots(patient, hnl[0], midnight(date(2026, 3, 18), honolulu), first + timedelta(days=3), NOW) == [first]
