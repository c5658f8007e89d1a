"""QA probe of treatment plans, recalls and the front desk calendar (issues 12 and 13, docs/plans.md,
docs/frontdesk.md, the contract's "Treatment plans"). Each test quotes the promise it checks.

The clock is frozen per test (time_machine, no tick): Monday 2 March 2026, 09:00 London, unless a test
travels elsewhere (a leap year, a month end).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model

from clinic.models import (
    Appointment,
    AppointmentStatus,
    ConditionStatus,
    PatientCondition,
    StaffRole,
)
from plans.defaults import plan_templates_load
from plans.models import PlanSession, PlanTemplate, Recall, TreatmentPlan
from plans.services import plan_book
from reminders.models import OutboxMessage
from scheduler import rulebooks
from scheduler.booking import Actor, appointment_book, appointment_cancel, appointment_complete
from scheduler.models import IntervalRule
from tests.api.conftest import http, new_api_client
from tests.factories import (
    AppointmentFactory,
    ClinicFactory,
    MedicationCourseFactory,
    PatientFactory,
    PractitionerFactory,
    ProcedureRecordFactory,
)
from tests.frontdesk.conftest import url as fd
from tests.frontdesk.html import text_by_id
from tests.qa.helpers import LONDON, NEW_YORK, NOW, squash, staff_client

pytestmark = pytest.mark.django_db

RECEPTION = Actor("reception@qa3")
CLINICIAN = Actor("clinician@qa3", clinical=True)


def at(tz, y, m, d, hh=9, mm=0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=tz)


@pytest.fixture
def templates(catalogue):
    plan_templates_load()


@pytest.fixture
def london(templates):
    return ClinicFactory(code="qa-london", name="QA London", timezone="Europe/London")


@pytest.fixture
def west(london):
    return ClinicFactory(code="qa-west", name="QA West", timezone="Europe/London", organisation=london.organisation)


@pytest.fixture
def newyork(templates):
    return ClinicFactory(code="qa-ny", name="QA New York", timezone="America/New_York")


@pytest.fixture
def dr_ny(newyork):
    return PractitionerFactory(clinic=newyork, name="Dr Gotham")


@pytest.fixture
def pat(london):
    return PatientFactory(clinic=london, first_name="Olivia", last_name="Quill", email="olivia.quill@example.com")


@pytest.fixture
def api(london, clock):
    return http(new_api_client(london, name="qa3-platform")[1])


@pytest.fixture
def reception(london):
    return staff_client(london, StaffRole.RECEPTIONIST, "qa3-reception")


@pytest.fixture
def clinical(london):
    return staff_client(london, StaffRole.CLINICIAN, "qa3-clinician")


def plans_url(patient) -> str:
    return f"/api/v1/patients/{patient.pk}/plans/"


def dry_run(api, patient, **body):
    response = api.post(plans_url(patient), {"dry_run": True, **body}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def eligible(api, patient, procedure: str, start: datetime) -> dict:
    response = api.post(
        "/api/v1/eligibility/",
        {"patient": str(patient.pk), "procedure": procedure, "start": start.isoformat()},
        format="json",
    )
    assert response.status_code == 200, response.content
    return response.json()


def book_course(patient, clinic, code: str, start: datetime, now: datetime = NOW) -> TreatmentPlan:
    return plan_book(
        patient=patient,
        clinic=clinic,
        template=PlanTemplate.objects.get(code=code, organisation__isnull=True),
        start_at=start,
        actor=RECEPTION,
        now=now,
    )


def sessions_of(plan) -> list[PlanSession]:
    return list(PlanSession.objects.filter(plan=plan).select_related("appointment").order_by("index"))


# --- The planner: each session earliest-and-safe, against the history, other bookings and each other ------------


def test_first_session_is_truly_the_earliest_against_a_booking_at_the_other_site(api, pat, dr_london, dr_west):
    """Brief 6: 'every session must also satisfy every interval rule against the patient's history, their other
    bookings and the plan's own sessions'; 'a Botox done at one site counts at every other'. docs/plans.md:
    session 1 'best on the start day' -> the first day the rules allow. The day before must be refused."""
    appointment_book(
        patient=pat,
        procedure_code="botox",
        start_at=at(LONDON, 2026, 3, 17, 10),
        actor=RECEPTION,
        now=NOW,
        clinic_id=pat.clinic.organisation.clinics.get(code="qa-west").pk,
    )
    body = dry_run(api, pat, template="microneedling-course", start_from="2026-03-09")
    assert body["feasible"] is True, body
    first = body["sessions"][0]
    # Botox on Tue 17 March (west site): microneedling not before Tue 31 March (2 weeks), nor 3 weeks before it.
    assert first["start"] == "2026-03-31T09:00:00+01:00", first
    assert "Botox" in first["why"]
    day_before = eligible(api, pat, "microneedling", at(LONDON, 2026, 3, 30, 17))
    assert day_before["eligible"] is False
    assert any(v["kind"] == "interval" for v in day_before["violations"])
    assert eligible(api, pat, "microneedling", at(LONDON, 2026, 3, 31, 9))["eligible"] is True


def _tighten_microneedling_repeat(organisation_id, weeks: int) -> None:
    """An organisation turns the clinic-practice 'microneedling sessions at least 4 weeks apart' (warn) into a
    block of `weeks` (brief 6: 'An organisation may tighten ... rules')."""
    default = IntervalRule.objects.get(default_key="microneedling-repeat")
    user = get_user_model().objects.create_user("qa3-orgadmin", password="pw-for-qa-only-123")
    rule = IntervalRule(
        organisation_id=organisation_id,
        replaces=default,
        earlier_procedure_id="microneedling",
        later_procedure_id="microneedling",
        gap_value=weeks,
        gap_unit="weeks",
        severity="block",
        source="QA organisation protocol",
    )
    rulebooks.rule_save(rule=rule, user=user, reason="QA: our protocol blocks repeats", now=NOW)


def test_sessions_respect_a_block_rule_against_each_other_and_the_day_before_is_refused(api, pat, dr_london):
    """Brief 6: every session must satisfy every interval rule against '... the plan's own sessions'; docs/plans.md:
    'a session never breaks a block rule ... against ... the plan itself' and 'takes the day nearest the ideal'.
    With repeats blocked at 5 weeks, the ideal 4 weeks is refused and 5 weeks (in the 4-6 week window) is nearest."""
    _tighten_microneedling_repeat(pat.organisation_id, 5)
    body = dry_run(api, pat, template="microneedling-course", start_from="2026-03-09")
    assert body["feasible"] is True, body
    starts = [s["start"] for s in body["sessions"]]
    assert starts == ["2026-03-09T09:00:00+00:00", "2026-04-13T09:00:00+01:00", "2026-05-18T09:00:00+01:00"], starts
    booked = api.post(plans_url(pat), {"template": "microneedling-course", "start_from": "2026-03-09"}, format="json")
    assert booked.status_code == 201, booked.content
    assert [s["start"] for s in booked.json()["sessions"]] == starts
    # Session 2 truly at the earliest: the day before it is refused by the plan's own session 1.
    day_before = eligible(api, pat, "microneedling", at(LONDON, 2026, 4, 11, 17))  # Saturday, a working day
    assert day_before["eligible"] is False
    assert {v["kind"] for v in day_before["violations"]} == {"interval"}


def test_a_proposal_breaking_a_block_rule_between_its_own_sessions_is_refused_whole(api, pat, dr_london):
    """docs/plans.md: 'proposal ... books exactly those'; each session is booked through the single-booking path,
    'the first session that cannot be booked rolls back the ones before it, and the refusal names it' (409
    plan_refused with the booking refusal's fields). The refusal's earliest_eligible_start is 'the start of that
    local day' (contract) of the first day that works: 13 April, 5 weeks after session 1."""
    _tighten_microneedling_repeat(pat.organisation_id, 5)
    proposal = [
        {"start": "2026-03-09T09:00:00+00:00"},
        {"start": "2026-04-06T09:00:00+01:00"},  # 4 weeks: inside the window, but the organisation blocks it
        {"start": "2026-05-11T09:00:00+01:00"},
    ]
    refused = api.post(
        plans_url(pat),
        {"template": "microneedling-course", "start_from": "2026-03-09", "proposal": proposal},
        format="json",
    )
    assert refused.status_code == 409, refused.content
    body = refused.json()
    assert body["code"] == "plan_refused" and body["session"] == 2
    assert body["violations"][0]["kind"] == "interval"
    assert body["earliest_eligible_start"] == "2026-04-13T00:00:00+01:00"
    assert body["next_available_slot"]["start"] == "2026-04-13T09:00:00+01:00"
    assert not Appointment.objects.filter(patient=pat).exists() and not TreatmentPlan.objects.exists()


def test_a_session_never_overlaps_the_patients_booking_at_the_other_site(api, pat, dr_london, dr_west):
    """docs/plans.md: a session 'never overlaps another booking of the patient's'; organisations: every
    appointment of the patient counts, wherever it is."""
    appointment_book(
        patient=pat,
        procedure_code="botox",
        start_at=at(LONDON, 2026, 3, 9, 9),
        actor=RECEPTION,
        now=NOW,
        practitioner_id=dr_west.pk,
    )
    body = dry_run(api, pat, template="plasma-pen-course", start_from="2026-03-09")
    first = body["sessions"][0]
    assert first["start"][:10] == "2026-03-09"
    assert first["start"] >= "2026-03-09T09:30:00+00:00", first  # the Botox at West runs 09:00-09:30


def test_today_at_a_new_york_evening_is_not_a_past_start(templates, newyork, dr_ny):
    """docs/plans.md: 'a start in the past (start_in_past)' is a 400; the start is 'clinic-local'
    (PlanCreateIn.start_from). At 22:00 on 1 March in New York (03:00 UTC on the 2nd), 1 March is today."""
    pat = PatientFactory(clinic=newyork, first_name="Eve", last_name="Ning")
    with time_machine.travel(datetime(2026, 3, 2, 3, tzinfo=UTC), tick=False):
        api = http(new_api_client(newyork, name="qa3-ny-evening")[1])
        body = dry_run(api, pat, template="plasma-pen-course", start_from="2026-03-01")
        assert body["sessions"][0]["start"] == "2026-03-02T09:00:00-05:00"
        past = api.post(plans_url(pat), {"template": "plasma-pen-course", "start_from": "2026-02-28"}, format="json")
        assert past.status_code == 400 and past.json()["code"] == "start_in_past"


def test_a_late_evening_filler_across_new_yorks_spring_forward_counts_by_local_date(templates, newyork, dr_ny, clock):
    """Brief 2: 'Gaps in days, weeks or months are calendar gaps in the clinic's local time zone'; 'Daylight-saving
    changes never shift a calendar gap'. Filler at 23:30 EST on Sat 7 March (04:30 UTC on the 8th): microneedling
    from Sat 4 April local, not the 5th (the UTC date) nor the 3rd."""
    pat = PatientFactory(clinic=newyork, first_name="Nia", last_name="York")
    ProcedureRecordFactory(patient=pat, procedure_id="filler", performed_at=at(NEW_YORK, 2026, 3, 7, 23, 30))
    api = http(new_api_client(newyork, name="qa3-ny")[1])
    body = dry_run(api, pat, template="microneedling-course", start_from="2026-03-09")
    assert body["sessions"][0]["start"] == "2026-04-04T09:00:00-04:00", body["sessions"][0]
    assert eligible(api, pat, "microneedling", at(NEW_YORK, 2026, 4, 3, 17, 30))["eligible"] is False
    assert body["sessions"][1]["window"] == {"earliest": "2026-05-02", "ideal": "2026-05-02", "latest": "2026-05-16"}


def test_a_leap_day_is_the_earliest_after_an_isotretinoin_course_ending_on_31_august(london, dr_london):
    """Brief 2: '31 August + 6 months = 28 February (29 in a leap year)'; the 12-month warn comes back with the
    session (docs/plans.md: 'Warn rules never move a session; they come back with it')."""
    pat = PatientFactory(clinic=london, first_name="Lea", last_name="Pday")
    MedicationCourseFactory(
        patient=pat, drug_id="isotretinoin", started_on=date(2027, 3, 1), ended_on=date(2027, 8, 31)
    )
    with time_machine.travel(datetime(2028, 2, 1, 9, tzinfo=UTC), tick=False):
        api = http(new_api_client(london, name="qa3-leap")[1])
        body = dry_run(api, pat, template="microneedling-course", start_from="2028-02-01")
        first = body["sessions"][0]
        assert first["start"] == "2028-02-29T09:00:00+00:00", first
        assert any("isotretinoin" in (w["message"] or "").lower() for w in first["warnings"]), first["warnings"]
        assert eligible(api, pat, "microneedling", at(LONDON, 2028, 2, 28, 17))["eligible"] is False
        assert body["sessions"][1]["window"]["earliest"] == "2028-03-28"


def test_month_gaps_from_a_month_end_land_on_the_leap_day(london, dr_london):
    """docs/plans.md: 'Gaps are calendar gaps in the clinic's zone, as the rules measure them (31 January + 1
    month = 28 February ...)'. Botox maintenance (3 months / 14 weeks / 4 months) from Tue 30 November 2027:
    session 2's window is 29 February 2028 (leap) to 30 March, ideal 7 March."""
    pat = PatientFactory(clinic=london, first_name="Mona", last_name="Thend")
    with time_machine.travel(datetime(2027, 11, 29, 9, tzinfo=UTC), tick=False):
        api = http(new_api_client(london, name="qa3-month")[1])
        body = dry_run(api, pat, template="botox-maintenance", start_from="2027-11-30", sessions=2)
    assert [s["start"][:10] for s in body["sessions"]] == ["2027-11-30", "2028-03-07"]
    assert body["sessions"][1]["window"] == {"earliest": "2028-02-29", "ideal": "2028-03-07", "latest": "2028-03-30"}


def test_a_course_across_the_autumn_clock_change_keeps_its_local_hour(api, pat, dr_london):
    """Brief 2: 'Times are stored in UTC and shown in the clinic's zone. Daylight-saving changes never shift a
    calendar gap'. Plasma pen 8 weeks apart across 25 October: 09:00 BST then 09:00 GMT, responses in the
    clinic's offset (contract: 'Responses give times in the clinic's offset')."""
    body = dry_run(api, pat, template="plasma-pen-course", start_from="2026-09-14")
    assert [s["start"] for s in body["sessions"]] == ["2026-09-14T09:00:00+01:00", "2026-11-09T09:00:00+00:00"]


# --- Following a plan: cancelled and moved sessions, re-planning ---------------------------------------------


def test_replanning_a_cancelled_session_keeps_it_in_its_window_after_the_session_kept(api, pat, dr_london):
    """docs/plans.md: session status `cancelled` '(its appointment was cancelled and the window is still open)';
    re-plan: 'session from_session goes to the first possible slot from start within the course's gaps after the
    session kept before it'; 'With dry_run it ... changes nothing; otherwise the bookings are moved ... or booked
    afresh, in one transaction'."""
    plan = api.post(plans_url(pat), {"template": "microneedling-course", "start_from": "2026-03-09"}, format="json")
    assert plan.status_code == 201, plan.content
    plan = plan.json()
    second = Appointment.objects.get(pk=plan["sessions"][1]["appointment"])
    appointment_cancel(appointment=second, actor=RECEPTION, now=NOW)
    detail = api.get(f"/api/v1/plans/{plan['id']}/").json()
    assert [s["status"] for s in detail["sessions"]] == ["booked", "cancelled", "booked"]

    url = f"/api/v1/plans/{plan['id']}/replan/"
    dry = api.post(url, {"from_session": 2, "start": "2026-03-03T09:00:00+00:00", "dry_run": True}, format="json")
    assert dry.status_code == 200, dry.content
    proposed = dry.json()["sessions"]
    # From the session kept (9 March): session 2 in 6-20 April at the ideal 6 April, not 3 March.
    assert [(s["index"], s["start"]) for s in proposed] == [
        (2, "2026-04-06T09:00:00+01:00"),
        (3, "2026-05-04T09:00:00+01:00"),
    ]
    assert Appointment.objects.filter(patient=pat, status=AppointmentStatus.CONFIRMED).count() == 2  # dry: nothing

    applied = api.post(url, {"from_session": 2, "start": "2026-03-03T09:00:00+00:00"}, format="json")
    assert applied.status_code == 200, applied.content
    after = applied.json()["sessions"]
    assert [s["status"] for s in after] == ["booked", "booked", "booked"]
    assert after[1]["appointment"] != str(second.pk)  # booked afresh; the cancelled one stays cancelled
    second.refresh_from_db()
    assert second.status == AppointmentStatus.CANCELLED
    assert Appointment.objects.filter(patient=pat, status=AppointmentStatus.CONFIRMED).count() == 3


def test_a_replan_from_a_later_day_says_why_the_session_is_not_on_its_ideal_day(api, pat, dr_london):
    """Asked of this probe: a re-plan from 13 April put session 2 there with the reason "no free slot ... on 6
    April" (its ideal day), when the reason is that the re-plan starts after it."""
    plan = api.post(plans_url(pat), {"template": "microneedling-course", "start_from": "2026-03-09"}, format="json")
    plan = plan.json()
    appointment_cancel(
        appointment=Appointment.objects.get(pk=plan["sessions"][1]["appointment"]), actor=RECEPTION, now=NOW
    )
    url = f"/api/v1/plans/{plan['id']}/replan/"
    dry = api.post(url, {"from_session": 2, "start": "2026-04-13T08:00:00+00:00", "dry_run": True}, format="json")
    assert dry.status_code == 200, dry.content
    second = dry.json()["sessions"][0]
    assert second["start"].startswith("2026-04-13"), second
    words = json.dumps(second)
    assert "before the plan's start" in words and "no free slot" not in words, second


def test_moving_one_session_never_silently_moves_the_later_ones(reception, london, pat, dr_london, clock):
    """Issue 12 item 4: 'Moving or cancelling one session offers a re-plan of the later ones (dry run first,
    applied on confirmation), never a silent change'. Move session 2 a week later on the desk: session 3 stays
    where it was, the plan page shows the new time, and each session still offers 'Re-plan from here'."""
    plan = book_course(pat, london, "microneedling-course", at(LONDON, 2026, 3, 9, 0))
    one, two, three = (s.appointment for s in sessions_of(plan))
    before_three = three.start_at
    moved = reception.post(fd("reschedule", london, two), {"date": "2026-04-13", "time": "09:00", "practitioner": ""})
    assert moved.status_code == 302, squash(moved)[:2000]
    two.refresh_from_db()
    three.refresh_from_db()
    assert two.start_at == at(LONDON, 2026, 4, 13, 9)
    assert three.start_at == before_three and three.status == AppointmentStatus.CONFIRMED
    page = reception.get(fd("plan", london, plan))
    table = text_by_id(page.content, "plan-session-table")
    assert "13 Apr" in table and table.count("Booked") == 3
    assert squash(page).count("Re-plan from here") == 3
    dry = reception.get(fd("plan", london, plan), {"from_session": 3, "start_from": "2026-03-02"})
    assert "Session 3: Mon 11 May 2026, 09:00" in text_by_id(dry.content, "plan-sessions")
    three.refresh_from_db()
    assert three.start_at == before_three  # the re-plan was only shown


def test_session_status_turns_overdue_and_missed_by_the_clinics_local_day(templates, newyork, dr_ny):
    """Contract: session status `due` / `overdue` (past the ideal day) / `missed` (the window has passed);
    brief 2: 'shown in the clinic's zone'. At 23:30 New York time on the ideal day it is still due, though UTC
    is already the next day."""
    pat = PatientFactory(clinic=newyork, first_name="Dee", last_name="Ue")
    start_now = datetime(2026, 3, 2, 14, tzinfo=UTC)
    with time_machine.travel(start_now, tick=False):
        plan = book_course(pat, newyork, "microneedling-course", at(NEW_YORK, 2026, 3, 9, 0), now=start_now)
    third = sessions_of(plan)[2]
    PlanSession.objects.filter(pk=third.pk).update(appointment=None)  # a session not (yet) booked
    third.refresh_from_db()
    api = http(new_api_client(newyork, name="qa3-ny-status")[1])

    def status_at(moment):
        with time_machine.travel(moment, tick=False):
            return api.get(f"/api/v1/plans/{plan.pk}/").json()["sessions"][2]["status"]

    ideal, latest = third.ideal_on, third.latest_on
    assert status_at(at(NEW_YORK, ideal.year, ideal.month, ideal.day, 23, 30)) == "due"
    nxt = ideal + timedelta(days=1)
    assert status_at(at(NEW_YORK, nxt.year, nxt.month, nxt.day, 0, 30)) == "overdue"
    assert status_at(at(NEW_YORK, latest.year, latest.month, latest.day, 23, 30)) == "overdue"
    gone = latest + timedelta(days=1)
    assert status_at(at(NEW_YORK, gone.year, gone.month, gone.day, 0, 30)) == "missed"


# --- Recalls ------------------------------------------------------------------------------------------------


def test_a_recall_opens_at_the_ideal_date_with_the_truly_earliest_date_and_closes_on_booking(
    api, london, pat, dr_london
):
    """docs/plans.md, Recalls: 'A plan's session completes and the next session has no active booking: due at
    the ideal gap after the completed session's local date'; 'Says ... the earliest date the rules allow for this
    patient (... with the whole timeline)'; 'Cancelled when the patient books that procedure'. A Botox booked on
    31 March pushes microneedling to 14 April: the recall says 14 April, and 13 April is refused."""
    plan = book_course(pat, london, "microneedling-course", at(LONDON, 2026, 3, 9, 0))
    one, two, three = (s.appointment for s in sessions_of(plan))
    # Sessions 2 and 3 cancelled (with session 3 still booked, 'a later active booking of the procedure' means
    # no recall, as documented).
    appointment_cancel(appointment=two, actor=RECEPTION, now=NOW)
    appointment_cancel(appointment=three, actor=RECEPTION, now=NOW)
    appointment_book(
        patient=pat, procedure_code="botox", start_at=at(LONDON, 2026, 3, 31, 11), actor=RECEPTION, now=NOW
    )
    done_at = at(LONDON, 2026, 3, 9, 10)
    with time_machine.travel(done_at, tick=False):
        appointment_complete(appointment=one, actor=CLINICIAN, now=done_at)
    recall = Recall.objects.get(patient=pat)
    assert recall.procedure_id == "microneedling" and recall.closed_at is None
    assert recall.due_on == date(2026, 4, 6)  # 4 weeks (ideal) after 9 March
    assert recall.earliest_on == date(2026, 4, 14), recall.earliest_on
    assert eligible(api, pat, "microneedling", at(LONDON, 2026, 4, 13, 17))["eligible"] is False
    assert eligible(api, pat, "microneedling", at(LONDON, 2026, 4, 14, 9))["eligible"] is True
    row = OutboxMessage.objects.get(appointment=one, kind="recall")
    assert row.due_at == at(LONDON, 2026, 4, 6, 10)  # 10:00 clinic-local (BST by then)
    assert row.payload["earliest_on"] == "2026-04-14"

    # Booking microneedling (here: re-planning the cancelled session) closes the recall and cancels its message.
    with time_machine.travel(done_at, tick=False):
        replanned = api.post(
            f"/api/v1/plans/{plan.pk}/replan/", {"from_session": 2, "start": "2026-03-10T09:00:00+00:00"}, format="json"
        )
    assert replanned.status_code == 200, replanned.content
    assert replanned.json()["sessions"][1]["start"] == "2026-04-14T09:00:00+01:00"
    recall.refresh_from_db()
    row.refresh_from_db()
    assert recall.closed_at is not None
    assert row.status == "cancelled"


def test_a_completed_botox_is_recalled_at_the_maintenance_ideal_unless_the_next_is_booked(api, london, pat, dr_london):
    """docs/plans.md: 'A treatment whose procedure has an active maintenance template (Botox) completes ...: due at
    that template's ideal gap' (14 weeks), at 10:00 clinic-local, 'If the patient already has a later active
    booking of the procedure, nothing is planned'."""
    first = appointment_book(
        patient=pat, procedure_code="botox", start_at=at(LONDON, 2026, 3, 3, 10), actor=RECEPTION, now=NOW
    ).appointment
    done_at = at(LONDON, 2026, 3, 3, 11)
    with time_machine.travel(done_at, tick=False):
        appointment_complete(appointment=first, actor=CLINICIAN, now=done_at)
    recall = Recall.objects.get(after=first)
    assert recall.due_on == date(2026, 6, 9)  # 3 March + 14 weeks
    assert recall.earliest_on == date(2026, 6, 3)  # + 3 months (the template's minimum)
    assert OutboxMessage.objects.get(appointment=first, kind="recall").due_at == at(LONDON, 2026, 6, 9, 10)
    # With the next Botox already booked, completing another one plans no recall.
    other = PatientFactory(clinic=london, first_name="Bo", last_name="Tox")
    done = appointment_book(
        patient=other, procedure_code="botox", start_at=at(LONDON, 2026, 3, 3, 12), actor=RECEPTION, now=NOW
    ).appointment
    appointment_book(
        patient=other, procedure_code="botox", start_at=at(LONDON, 2026, 6, 10, 12), actor=RECEPTION, now=NOW
    )
    with time_machine.travel(at(LONDON, 2026, 3, 3, 13), tick=False):
        appointment_complete(appointment=done, actor=CLINICIAN, now=at(LONDON, 2026, 3, 3, 13))
    assert not Recall.objects.filter(patient=other).exists()


# --- The front desk: calendar scope and local times ---------------------------------------------------------


def _direct(patient, practitioner, start: datetime, procedure="botox", minutes=30, **extra) -> Appointment:
    """An appointment row written directly (pages only show it)."""
    return AppointmentFactory(
        clinic=practitioner.clinic,
        patient=patient,
        practitioner=practitioner,
        procedure_id=procedure,
        start_at=start.astimezone(UTC),
        end_at=(start + timedelta(minutes=minutes)).astimezone(UTC),
        **extra,
    )


def test_the_calendar_shows_only_this_clinics_appointments_in_local_time(
    reception, london, west, newyork, dr_london, dr_west, dr_ny, pat, clock
):
    """docs/frontdesk.md: 'All times on the pages are the clinic's local time'; the feed answers 'times in clinic
    time and an offset'; organisations (contract v1): appointments are listed 'only at the clinics it was
    granted'. Another site of the same organisation and another organisation stay off the London calendar."""
    _direct(pat, dr_london, at(LONDON, 2026, 3, 30, 9))  # Monday after the clocks went forward: 08:00 UTC
    wendy = PatientFactory(clinic=west, first_name="Wendy", last_name="Westside")
    west_appt = _direct(wendy, dr_west, at(LONDON, 2026, 3, 30, 9))
    _direct(pat, dr_west, at(LONDON, 2026, 3, 30, 14), procedure="filler")  # Olivia at the other site
    nora = PatientFactory(clinic=newyork, first_name="Nora", last_name="Farside")
    _direct(nora, dr_ny, at(NEW_YORK, 2026, 3, 30, 5))  # 09:00 UTC, inside London's day

    page = squash(reception.get(fd("calendar", london), {"date": "2026-03-30"}))
    assert "Olivia Quill" in page and "09:00–09:30" in page
    assert "Wendy" not in page and "Nora" not in page and "Dermal filler" not in page
    feed = reception.get(fd("calendar_events", london), {"start": "2026-03-30", "end": "2026-03-31"}).json()
    assert [(e["patient"], e["start"]) for e in feed["events"]] == [("Olivia Quill", "2026-03-30T09:00:00+01:00")]
    assert [r["title"] for r in feed["resources"]] == ["Dr London"]
    # The other site's pages are as absent as a made-up one (docs/frontdesk.md, Permissions and tenancy).
    assert reception.get(fd("calendar", west)).status_code == 404
    assert reception.get(fd("calendar_events", west), {"start": "2026-03-30", "end": "2026-03-31"}).status_code == 404
    assert reception.get(fd("appointment", london, west_appt)).status_code == 404
    assert reception.get(fd("reschedule", london, west_appt)).status_code == 404


def test_the_feed_and_week_view_cut_days_at_local_midnight_on_the_clock_change(
    reception, london, dr_london, pat, clock
):
    """docs/frontdesk.md: feed 'start/end are ISO dates (the clinic's local midnight)'; the week view is 'a column
    per day, Monday first'. 23:30 BST on Sunday 29 March belongs to the 29th; 00:15 BST on Monday 30 March
    (23:15 UTC on the 29th) belongs to the 30th."""
    late = _direct(pat, dr_london, at(LONDON, 2026, 3, 29, 23, 30), minutes=15)
    early = _direct(pat, dr_london, at(LONDON, 2026, 3, 30, 0, 15), minutes=15)
    sunday = reception.get(fd("calendar_events", london), {"start": "2026-03-29", "end": "2026-03-30"}).json()
    monday = reception.get(fd("calendar_events", london), {"start": "2026-03-30", "end": "2026-03-31"}).json()
    assert [e["id"] for e in sunday["events"]] == [str(late.pk)]
    assert [e["id"] for e in monday["events"]] == [str(early.pk)]
    assert monday["events"][0]["start"] == "2026-03-30T00:15:00+01:00"
    week = squash(
        reception.get(fd("calendar", london), {"date": "2026-04-01", "view": "week", "practitioner": dr_london.pk})
    )
    assert f'data-appointment="{early.pk}"' in week and "00:15–00:30" in week
    assert f'data-appointment="{late.pk}"' not in week  # Sunday 29 March is the week before


def test_every_free_cell_books_the_local_time_it_is_labelled_with_on_the_spring_forward_day(
    reception, london, dr_london, pat, clock
):
    """docs/frontdesk.md: the grid has 'a row per quarter hour of clinic time'; 'All times on the pages are the
    clinic's local time'; an empty cell 'is a link to calendar/book/ with the practitioner and the instant'.
    On Sunday 29 March 01:00-01:59 does not exist in London. An early booking (00:30) stretches the grid over
    that hour: each free cell must book the time it shows, and no two cells the same instant."""
    import re
    from urllib.parse import unquote

    _direct(pat, dr_london, at(LONDON, 2026, 3, 29, 0, 30), minutes=15)
    html = squash(reception.get(fd("calendar", london), {"date": "2026-03-29"}))
    cells = re.findall(
        r'data-date="2026-03-29" data-time="(\d\d:\d\d)"[^>]*><a class="cal-free" href="[^"]*start_at=([^"&]*)', html
    )
    assert len(cells) > 20
    mismatched = []
    for label, raw in cells:
        local = datetime.fromisoformat(unquote(raw)).astimezone(LONDON)
        if local.strftime("%H:%M") != label:
            mismatched.append((label, local.strftime("%H:%M")))
    assert mismatched == []
    assert len({raw for _, raw in cells}) == len(cells)
    skipped = re.findall(
        r'data-date="2026-03-29" data-time="(\d\d:\d\d)"[^>]*><span class="cal-off">No such time', html
    )
    assert skipped == ["01:00", "01:15", "01:30", "01:45"]  # shown, not bookable


# --- The front desk: permissions, CSRF and forms ------------------------------------------------------------


def test_a_receptionist_cannot_clear_a_plans_pending_sessions_but_a_clinician_can(
    reception, clinical, london, pat, dr_london, clock
):
    """docs/plans.md: relative contraindications come back as `needs_clearance` ('the session books as pending
    clearance'); docs/frontdesk.md: 'A receptionist POSTing to clear, complete or mark a no-show gets 403 from
    NotAllowed, whatever the page showed'."""
    PatientCondition.objects.create(patient=pat, condition_id="eczema", status=ConditionStatus.HISTORY)
    plan = book_course(pat, london, "microneedling-course", at(LONDON, 2026, 3, 9, 0))
    first = sessions_of(plan)[0].appointment
    assert {s.appointment.status for s in sessions_of(plan)} == {AppointmentStatus.PENDING_CLEARANCE}
    refused = reception.post(fd("clear", london, first), {"reason": "Eczema quiet for years"})
    assert refused.status_code == 403
    first.refresh_from_db()
    assert first.status == AppointmentStatus.PENDING_CLEARANCE and first.cleared_at is None
    done = clinical.post(fd("clear", london, first), {"reason": "Eczema quiet for years"})
    assert done.status_code == 302
    first.refresh_from_db()
    assert first.status == AppointmentStatus.CONFIRMED


def test_actions_and_plan_booking_need_the_csrf_token(london, pat, dr_london, clock):
    """docs/frontdesk.md: 'Every form carries Django's CSRF token; the action URLs accept POST only'."""
    client = staff_client(london, StaffRole.CLINICIAN, "qa3-csrf", csrf=True)
    appointment = appointment_book(
        patient=pat, procedure_code="botox", start_at=at(LONDON, 2026, 3, 4, 10), actor=RECEPTION, now=NOW
    ).appointment
    assert client.post(fd("cancel", london, appointment), {"reason": "x"}).status_code == 403
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.CONFIRMED
    assert client.get(fd("cancel", london, appointment)).status_code == 405
    proposal = client.get(fd("plan_new", london, pat), {"template": "plasma-pen-course", "start_from": "2026-03-09"})
    sessions = _session_values(proposal)
    assert len(sessions) == 2
    forged = client.post(
        fd("plan_book", london, pat), {"template": "plasma-pen-course", "start_from": "2026-03-09", "session": sessions}
    )
    assert forged.status_code == 403
    assert not TreatmentPlan.objects.exists() and Appointment.objects.filter(patient=pat).count() == 1


def _session_values(response) -> list[str]:
    html = squash(response)
    return [part.split('value="')[1].split('"')[0] for part in html.split("<input") if 'name="session"' in part]


@pytest.mark.parametrize(
    ("date_", "time_", "message"),
    [
        ("2026-03-29", "01:30", "does not exist in Europe/London"),
        ("2026-10-25", "01:30", "happens twice in Europe/London"),
        ("2026-03-01", "10:00", "That day has passed"),  # on the date (since 6 December), not the time
        ("10000-01-01", "10:00", "Enter a valid date"),
        ("2026-02-30", "10:00", "Enter a valid date"),
    ],
)
def test_the_booking_form_names_a_bad_local_time_and_books_nothing(
    reception, london, pat, dr_london, clock, date_, time_, message
):
    """Brief 2: 'a local time that does not exist (spring forward) or exists twice (fall back) is refused with a
    clear error'; docs/frontdesk.md: 'a time that does not exist ... is an error on the time field, and a past
    day is an error on the date'; 'No bad input answers 500'."""
    response = reception.post(fd("book_submit", london, pat), {"procedure": "botox", "date": date_, "time": time_})
    assert response.status_code < 500
    assert message in squash(response)
    assert not Appointment.objects.filter(patient=pat).exists()


def test_a_drag_asks_the_dry_run_both_ways_and_moves_only_when_confirmed(reception, london, pat, dr_london, clock):
    """docs/frontdesk.md: 'Dropping a card on a cell changes nothing: the script asks the reschedule page for its
    panel ... Refused: "This move is not possible", the reasons, the earliest eligible start'; brief 2: rules are
    'checked in both directions'. Microneedling booked 14 April with a Botox booked 7 May: a drag to 17 April
    would put it 20 days before the Botox (3 weeks needed); 16 April is the last day that works."""
    mn = appointment_book(
        patient=pat, procedure_code="microneedling", start_at=at(LONDON, 2026, 4, 14, 10), actor=RECEPTION, now=NOW
    ).appointment
    appointment_book(patient=pat, procedure_code="botox", start_at=at(LONDON, 2026, 5, 7, 10), actor=RECEPTION, now=NOW)
    ask = {"practitioner": str(dr_london.pk), "time": "10:00"}
    refused = reception.get(fd("reschedule", london, mn), {**ask, "date": "2026-04-17"}, HTTP_HX_REQUEST="true")
    assert refused.status_code == 200
    assert "Not possible at Fri 17 Apr 2026, 10:00" in squash(refused) and "Botulinum toxin" in squash(refused)
    allowed = reception.get(fd("reschedule", london, mn), {**ask, "date": "2026-04-16"}, HTTP_HX_REQUEST="true")
    assert "Possible at Thu 16 Apr 2026, 10:00" in squash(allowed)
    mn.refresh_from_db()
    assert mn.start_at == at(LONDON, 2026, 4, 14, 10)  # the dry runs changed nothing
    posted = reception.post(fd("reschedule", london, mn), {**ask, "date": "2026-04-17"}, HTTP_HX_REQUEST="true")
    assert posted.status_code == 409
    mn.refresh_from_db()
    assert mn.start_at == at(LONDON, 2026, 4, 14, 10)
    confirmed = reception.post(fd("reschedule", london, mn), {**ask, "date": "2026-04-16"}, HTTP_HX_REQUEST="true")
    assert confirmed.status_code == 200
    mn.refresh_from_db()
    assert mn.start_at == at(LONDON, 2026, 4, 16, 10)


# --- The front desk: proposals that carry a rule's verdict ---------------------------------------------------


def test_plan_a_course_shows_sessions_that_need_clearance(reception, london, pat, dr_london, clock):
    """docs/plans.md: relative contraindications come back with the session ('needs_clearance: the session books as
    pending clearance'); docs/frontdesk.md: 'No bad input answers 500'. Eczema in the history is the commonest
    case: every microneedling session is proposed pending clearance."""
    PatientCondition.objects.create(patient=pat, condition_id="eczema", status=ConditionStatus.HISTORY)
    response = reception.get(
        fd("plan_new", london, pat), {"template": "microneedling-course", "start_from": "2026-03-09"}
    )
    assert response.status_code == 200
    sessions = text_by_id(response.content, "plan-sessions")
    assert "Eczema" in sessions and "Session 3" in sessions


def test_plan_a_course_shows_the_warnings_each_session_carries(reception, london, pat, dr_london, clock):
    """docs/plans.md: 'Warn rules never move a session; they come back with it (warnings)'. Isotretinoin ended
    1 August 2025: past the 6-month block, inside the 12-month warning."""
    MedicationCourseFactory(patient=pat, drug_id="isotretinoin", started_on=date(2025, 1, 1), ended_on=date(2025, 8, 1))
    response = reception.get(
        fd("plan_new", london, pat), {"template": "microneedling-course", "start_from": "2026-03-09"}
    )
    assert response.status_code == 200
    assert "Isotretinoin" in text_by_id(response.content, "plan-sessions")


def test_plan_a_course_names_the_obstacle_when_nothing_fits(reception, london, pat, dr_london, clock):
    """docs/plans.md: 'When nothing fits, the plan names the session, its window and what is in the way: the block
    rules that close the whole window (e.g. an ongoing isotretinoin course)'. Nothing can be booked."""
    MedicationCourseFactory(patient=pat, drug_id="isotretinoin", started_on=date(2026, 1, 1), ended_on=None)
    response = reception.get(
        fd("plan_new", london, pat), {"template": "microneedling-course", "start_from": "2026-03-09"}
    )
    assert response.status_code == 200
    obstacle = text_by_id(response.content, "plan-obstacle")
    assert "Session 1" in obstacle and "sotretinoin" in obstacle
    assert "Book these sessions" not in squash(response)


def test_the_replan_proposal_shows_sessions_that_need_clearance(reception, london, pat, dr_london, clock):
    """docs/frontdesk.md: '"Re-plan from here" shows the moved session and every later one first'. The patient's
    sessions are pending clearance (eczema history); the dry run must still show."""
    PatientCondition.objects.create(patient=pat, condition_id="eczema", status=ConditionStatus.HISTORY)
    plan = book_course(pat, london, "microneedling-course", at(LONDON, 2026, 3, 9, 0))
    response = reception.get(fd("plan", london, plan), {"from_session": 2, "start_from": "2026-04-13"})
    assert response.status_code == 200
    assert "Session 2: Mon 13 Apr 2026, 09:00" in text_by_id(response.content, "plan-sessions")


# --- The front desk: planning a course with bad input ------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"template": "microneedling-course", "start_from": "2026-03-01"}, "already passed"),
        ({"template": "microneedling-course", "start_from": "2026-02-30"}, "Enter a valid date"),
        ({"template": "microneedling-course", "start_from": "0001-01-01"}, ""),
        ({"template": "no-such-course", "start_from": "2026-03-09"}, "Select a valid choice"),
        ({"template": "microneedling-course", "start_from": "2026-03-09", "weekdays": "9"}, "Select a valid choice"),
        ({"template": "microneedling-course", "start_from": "2026-03-09", "practitioner": "nobody"}, "valid choice"),
        ({"template": "microneedling-course", "start_from": "2026-03-09", "times_of_day": "night"}, "valid choice"),
    ],
)
def test_plan_a_course_refuses_bad_input_with_a_message_and_proposes_nothing(
    reception, london, pat, dr_london, clock, params, message
):
    """Issue 12: 'A template with min > max, zero sessions, or a start in the past is a clear 400'; docs/frontdesk.md:
    'No bad input answers 500'. The desk shows the error by the field and no proposal."""
    response = reception.get(fd("plan_new", london, pat), params)
    assert response.status_code < 500
    html = squash(response)
    assert 'id="plan-sessions"' not in html
    assert message in html
    assert 'aria-invalid="true"' in html or "alert" in html


@pytest.mark.parametrize(
    "tamper",
    [
        lambda values, other: [],
        lambda values, other: values[:1],
        lambda values, other: ["not-a-time|x", values[1]],
        lambda values, other: [v.split("|")[0].replace("+00:00", "").replace("+01:00", "") for v in values],
        lambda values, other: [f"{v.split('|')[0]}|{other.pk}" for v in values],
        lambda values, other: [f"{v.split('|')[0]}|not-a-uuid" for v in values],
        lambda values, other: [f"9999-12-31T23:59:00+00:00|{v.split('|')[1]}" for v in values],
    ],
    ids=["none", "too-few", "garbage", "naive", "other-orgs-practitioner", "bad-uuid", "far-future"],
)
def test_a_damaged_plan_proposal_books_nothing_and_never_500s(reception, london, pat, dr_london, dr_ny, clock, tamper):
    """docs/plans.md: 'a proposal of the wrong length (invalid_plan) or outside its windows' is refused, naming the
    field; 'Another clinic's patient or plan is a 404' (so no practitioner of another organisation is used);
    docs/frontdesk.md: 'No bad input answers 500'."""
    proposal = reception.get(fd("plan_new", london, pat), {"template": "plasma-pen-course", "start_from": "2026-03-09"})
    values = _session_values(proposal)
    assert len(values) == 2
    response = reception.post(
        fd("plan_book", london, pat),
        {"template": "plasma-pen-course", "start_from": "2026-03-09", "session": tamper(values, dr_ny)},
    )
    assert response.status_code in (200, 400, 409), response.status_code
    assert not TreatmentPlan.objects.exists()
    assert not Appointment.objects.exists()
    html = squash(response)
    assert "alert" in html or 'aria-invalid="true"' in html


def test_replan_bad_input_on_the_desk_is_a_message_not_a_500(reception, london, pat, dr_london, clock):
    """docs/plans.md: 'a session the plan does not have (unknown_plan_session)' is refused; docs/frontdesk.md: 'No bad
    input answers 500'. Nothing moves."""
    plan = book_course(pat, london, "microneedling-course", at(LONDON, 2026, 3, 9, 0))
    before = sorted(Appointment.objects.filter(patient=pat).values_list("start_at", flat=True))
    for params in (
        {"from_session": 9, "start_from": "2026-03-09"},
        {"from_session": "x", "start_from": "2026-03-09"},
        {"from_session": 2, "start_from": "2026-03-01"},
        {"from_session": 2, "start_from": "2026-13-01"},
    ):
        shown = reception.get(fd("plan", london, plan), params)
        assert shown.status_code < 500, params
        assert 'id="replan-form"' not in squash(shown), params
        posted = reception.post(fd("plan_replan", london, plan), params)
        assert posted.status_code in (302, 400, 409), (params, posted.status_code)
    assert sorted(Appointment.objects.filter(patient=pat).values_list("start_at", flat=True)) == before


def test_an_ongoing_anticoagulant_started_years_ago_closes_every_window(api, pat, dr_london):
    """docs/plans.md: 'a session never breaks a block rule or an absolute contraindication'; 'When nothing fits, the
    plan names the session ... and what is in the way'. Brief 3: anticoagulant therapy (ongoing course) is absolute
    for microneedling, however long ago it started (the planner reads only the rules' reach of the history)."""
    MedicationCourseFactory(patient=pat, drug_id="anticoagulant", started_on=date(2019, 5, 1), ended_on=None)
    body = dry_run(api, pat, template="microneedling-course", start_from="2026-03-09")
    assert body["feasible"] is False and body["sessions"] == []
    assert body["obstacle"]["session"] == 1
    assert "anticoagulant" in body["reason"].lower()
    refused = api.post(plans_url(pat), {"template": "microneedling-course", "start_from": "2026-03-09"}, format="json")
    assert refused.status_code == 409 and refused.json()["code"] == "plan_infeasible"
    assert not Appointment.objects.exists()


def test_another_organisations_patient_and_plan_are_not_found_on_the_desk(
    reception, london, newyork, dr_ny, dr_london, clock
):
    """docs/frontdesk.md: 'a clinic, patient or appointment of another clinic answers 404, exactly like one that does
    not exist'; docs/plans.md: 'Another clinic's patient or plan is a 404'. Nothing is booked."""
    nora = PatientFactory(clinic=newyork, first_name="Nora", last_name="Farside")
    theirs = book_course(nora, newyork, "plasma-pen-course", at(NEW_YORK, 2026, 3, 9, 0))
    count = Appointment.objects.count()
    assert reception.get(fd("plan_new", london, nora), {"template": "plasma-pen-course"}).status_code == 404
    posted = reception.post(
        fd("plan_book", london, nora), {"template": "plasma-pen-course", "start_from": "2026-03-09", "session": []}
    )
    assert posted.status_code == 404
    assert reception.get(fd("plan", london, theirs)).status_code == 404
    replan = reception.post(fd("plan_replan", london, theirs), {"from_session": 2, "start_from": "2026-06-01"})
    assert replan.status_code == 404
    assert Appointment.objects.count() == count and TreatmentPlan.objects.count() == 1
