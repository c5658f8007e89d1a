"""Review probe dec6h: off-by-one boundaries, everywhere a number or an instant meets a limit.

Each test puts a value exactly on a documented limit and one step (a minute, a day, a character) past it, and
states the expected answer with the sentence of the docs or the brief it comes from. Probed over the REST API
(eligibility, booking, availability, lists, plans, the request limits) and, where HTTP cannot reach, through the
services (the reminders' outbox, the dispatcher, the patient's self-service window, recalls, rule validation):

- calendar gaps exactly at the minimum both ways (2 weeks across the spring change, Jan 31 + 1 month, Aug 31 +
  6 months in a leap and a common year), an hours rule as elapsed time across both clock changes, a medication
  course on its first and last day, a course that starts and ends on one day;
- half-open appointments (back to back with one practitioner and one patient), opening and closing times, a slot
  over closing by a minute, time off ending at the start, `start` exactly now, `performed_at` exactly now;
- availability windows of 92 days and 92 days + 1 minute, page sizes 200/201 and the last page, text at
  max_length and +1, offsets +-14:00 and +14:01, years 1900 and 2999, Idempotency-Key 255/256, addresses of 4000
  characters, headers of 8000, bodies of 256 KiB, plans of 24 and 25 sessions, webhook overlaps of a week;
- SMS quiet hours at 20:59, 21:00, 07:59 and 08:00 (GMT, BST and both change days), a reminder due exactly now,
  a pre-care note whose first allowed moment is the start itself, the dispatcher at the start minute, the
  patient's cancellation window exactly 24 h before (across the spring change), recalls due today and in a week;
- plan windows ending on a month end, a proposal on its window's first and last day and a day outside, a re-plan
  `start` on the last day of the window, after its last slot, and the day after; a cancelled session at local
  midnight after its window.

Found: a DEFECT (an address of exactly 4000 characters with no query was refused as too long: the length counted
a `?` that is not there; mended in api.views.refuse_oversized, which the FHIR interface now shares) and two
QUESTIONs: availability's `to` is inclusive, so adjacent windows both offer the slot at their seam (decided and
documented in docs/api.md: both ends are starts offered); a re-plan whose `start` fell after the last free slot of
the window's last day was infeasible, while a `start` the next morning was placed (mended in
plans.planner.plan_course: the window has passed for such a start). Every other limit held exactly where the
docs put it.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta

import pytest
import time_machine

from clinic.models import Appointment, AppointmentStatus, TimeOff, WorkingHours
from plans.defaults import plan_templates_load
from plans.models import PlanTemplate, Recall
from plans.selectors import recalls_due
from reminders.dispatch import dispatch_local
from reminders.models import OutboxMessage, OutboxStatus
from scheduler.booking import appointment_cancel, appointment_complete
from scheduler.models import GapUnit, IntervalRule
from scheduler.selfservice import appointment_self_service
from tests.factories import AppointmentFactory, ClinicFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import API, CLINICIAN, LONDON, RECEPTION, book, ldn, ok, org_rule, post, problem

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock")]

MINUTE = timedelta(minutes=1)


# --- the world ---------------------------------------------------------------------------------------------------


@pytest.fixture
def practitioner(clinic):
    """Dr Ada of the London clinic, working every day of the week, 09:00-18:00 (so a Sunday date is no obstacle)."""
    return PractitionerFactory(clinic=clinic, name="Dr Ada", hours=range(7))


@pytest.fixture
def colleague(clinic):
    return PractitionerFactory(clinic=clinic, name="Dr Bea", hours=range(7))


@pytest.fixture
def templates(catalogue):
    plan_templates_load()


@pytest.fixture
def night(care_texts, message_outboxes):
    """A London clinic whose one practitioner works 00:00-23:59 every day, and a patient taking e-mail and texts."""
    clinic = ClinicFactory(code="qa-dec6h-night", name="Night Clinic", timezone="Europe/London")
    dr = PractitionerFactory(clinic=clinic, name="Dr Night", hours=[])
    WorkingHours.objects.bulk_create(
        WorkingHours(practitioner=dr, weekday=d, start_time=time(0, 0), end_time=time(23, 59)) for d in range(7)
    )
    return PatientFactory(
        clinic=clinic,
        first_name="Nina",
        last_name="Night",
        email="nina@example.com",
        phone="+447700900123",
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )


def eligibility(api, patient, procedure: str, start: str, **extra) -> dict:
    return ok(post(api, "/eligibility/", {"patient": str(patient.pk), "procedure": procedure, "start": start, **extra}))


def blocks(body: dict) -> list[dict]:
    """The blocking interval and contraindication violations of an eligibility answer (availability left out)."""
    return [v for v in body["violations"] if v["kind"] != "availability" and v["severity"] in ("block", "absolute")]


def booked(api, patient, procedure: str, start: str, practitioner=None, expect: int = 201) -> dict:
    body = {"patient": str(patient.pk), "procedure": procedure, "start": start}
    if practitioner is not None:
        body["practitioner"] = str(practitioner.pk)
    response = post(api, "/appointments/", body)
    assert response.status_code == expect, (response.status_code, response.content[:600])
    return response.json()


def availability_codes(body: dict) -> set[str]:
    return {v["code"] for v in body["violations"] if v["kind"] == "availability"}


# --- calendar gaps exactly at the minimum ------------------------------------------------------------------------


def test_two_weeks_after_a_late_botox_across_the_spring_change_opens_at_local_midnight(api, patient, practitioner):
    """docs/rules.md: "the later procedure's local date must be on or after the earlier event's local date plus the
    gap ... After a Botox on 1 March at 17:00, microneedling may start at 09:00 on 15 March, although fewer than
    14 x 24 hours have passed; on 14 March it is refused at any hour", and "Daylight saving time never shifts a
    calendar gap". Botox on Saturday 28 March 17:30 GMT (ending 18:00, closing time): microneedling is allowed from
    Saturday 11 April 00:00 BST (10 April 23:00 UTC) and refused at 17:00 on Friday 10 April."""
    booked(api, patient, "botox", "2026-03-28T17:30:00+00:00", practitioner)
    day_before = eligibility(api, patient, "microneedling", "2026-04-10T17:00:00+01:00", area="face")
    [violation] = blocks(day_before)
    assert violation["code"] == "interval_too_soon_after"
    assert violation["earliest_allowed"] == "2026-04-11T00:00:00+01:00"
    assert day_before["earliest_eligible_start"] == "2026-04-11T00:00:00+01:00"
    # 13 days 14.5 hours after the Botox (the clocks went forward between): allowed.
    on_the_day = eligibility(api, patient, "microneedling", "2026-04-11T09:00:00+01:00", area="face")
    assert on_the_day["eligible"] is True and blocks(on_the_day) == []


def test_two_weeks_before_a_booked_microneedling_is_allowed_and_the_day_after_is_not(api, patient, practitioner):
    """docs/rules.md: "Each rule is checked both ways ... booking the earlier procedure looks forward at later ones
    already booked". Microneedling booked Tuesday 24 March: a Botox on Tuesday 10 March (10 + 14 = 24) is allowed,
    at 17:30 as at 09:00; one on Wednesday 11 March at 09:00 is too close before it."""
    booked(api, patient, "microneedling", "2026-03-24T09:00:00+00:00", practitioner)
    for start in ("2026-03-10T09:00:00+00:00", "2026-03-10T17:30:00+00:00"):
        assert blocks(eligibility(api, patient, "botox", start)) == [], start
    [violation] = blocks(eligibility(api, patient, "botox", "2026-03-11T09:00:00+00:00"))
    assert violation["code"] == "interval_too_close_before"


def test_a_month_after_31_january_is_28_february_both_ways(api, patient, practitioner, colleague):
    """domain.md 2: "Months use calendar arithmetic (dateutil.relativedelta)". An organisation's rule "microneedling
    at least 1 month after Botox" (block): after a Botox booked on Sunday 31 January 2027, microneedling on 27
    February is refused (earliest 28 February 00:00) and on 28 February allowed; with microneedling booked on 28
    February, a Botox on 31 January passes the forward check and one on 1 February does not."""
    org_rule(patient, "botox", "microneedling", 1, "months")
    first = booked(api, patient, "botox", "2027-01-31T10:00:00+00:00", practitioner)
    [violation] = blocks(eligibility(api, patient, "microneedling", "2027-02-27T10:00:00+00:00"))
    assert violation["earliest_allowed"] == "2027-02-28T00:00:00+00:00"
    assert blocks(eligibility(api, patient, "microneedling", "2027-02-28T10:00:00+00:00")) == []
    # The other direction: the Botox is cancelled, microneedling booked first.
    ok(post(api, f"/appointments/{first['id']}/cancel/", {}))
    booked(api, patient, "microneedling", "2027-02-28T12:00:00+00:00", colleague)
    assert blocks(eligibility(api, patient, "botox", "2027-01-31T10:00:00+00:00")) == []
    [violation] = blocks(eligibility(api, patient, "botox", "2027-02-01T10:00:00+00:00"))
    assert violation["code"] == "interval_too_close_before"


@pytest.mark.parametrize(
    ("ended", "refused_day", "allowed_day"),
    [
        ("2027-08-31", "2028-02-28", "2028-02-29"),  # + 6 months into a leap February
        ("2026-08-31", "2027-02-27", "2027-02-28"),  # + 6 months into a common February
    ],
    ids=["leap", "common"],
)
def test_six_months_after_an_isotretinoin_course_ending_31_august(
    api, patient, practitioner, ended, refused_day, allowed_day
):
    """domain.md 2: "31 August + 6 months = 28 February (29 in a leap year)"; the block rule is 6 months, the
    warning 12. The day before is refused with the day itself as its earliest start; the day itself is allowed,
    with the 12-month warning."""
    ok(
        post(
            api,
            f"/patients/{patient.pk}/medications/",
            {"drug": "isotretinoin", "started_on": "2026-01-05", "ended_on": ended},
        ),
        201,
    )
    refused = eligibility(api, patient, "microneedling", f"{refused_day}T10:00:00+00:00")
    [violation] = blocks(refused)
    assert violation["code"] == "interval_too_soon_after_course"
    assert refused["earliest_eligible_start"] == f"{allowed_day}T00:00:00+00:00"
    allowed = eligibility(api, patient, "microneedling", f"{allowed_day}T10:00:00+00:00")
    assert allowed["eligible"] is True and blocks(allowed) == []
    assert [w["code"] for w in allowed["warnings"]] == ["interval_too_soon_after_course"]


def test_an_anticoagulant_course_blocks_its_first_and_last_day_and_neither_day_outside(api, patient, practitioner):
    """docs/rules.md: "a course covers the date: a medication course running on the appointment's date (from its
    start to its end ...)"; "a course recorded for the future does not block the days before it starts"; "A
    medication contraindication with a recorded end gives an earliest date (the day after the end)". Course 10 to
    20 March: microneedling at 17:00 on 9 March and at 09:00 on 21 March is allowed; at 09:00 on 10 March and at
    17:00 on 20 March refused, the latter with the earliest start 21 March 00:00."""
    ok(
        post(
            api,
            f"/patients/{patient.pk}/medications/",
            {"drug": "anticoagulant", "started_on": "2026-03-10", "ended_on": "2026-03-20"},
        ),
        201,
    )
    assert blocks(eligibility(api, patient, "microneedling", "2026-03-09T17:00:00+00:00")) == []
    assert [v["severity"] for v in blocks(eligibility(api, patient, "microneedling", "2026-03-10T09:00:00+00:00"))] == [
        "absolute"
    ]
    last = eligibility(api, patient, "microneedling", "2026-03-20T17:00:00+00:00")
    assert [v["code"] for v in blocks(last)] == ["contraindication_medication"]
    assert last["earliest_eligible_start"] == "2026-03-21T00:00:00+00:00"
    assert eligibility(api, patient, "microneedling", "2026-03-21T09:00:00+00:00")["eligible"] is True


def test_a_course_may_end_on_the_day_it_starts_but_not_the_day_before(api, patient):
    """docs/api.md error codes: `ends_before_start`; clinic.services: "A course cannot end before it starts." A
    one-day course (start = end) is a course; an end the day before its start is a 400 naming `ended_on`."""
    path = f"/patients/{patient.pk}/medications/"
    ok(post(api, path, {"drug": "anticoagulant", "started_on": "2026-03-10", "ended_on": "2026-03-10"}), 201)
    body = problem(
        post(api, path, {"drug": "anticoagulant", "started_on": "2026-03-10", "ended_on": "2026-03-09"}), 400
    )
    assert body["code"] == "ends_before_start" and "ended_on" in body["errors"]


@pytest.fixture
def botox_filler_48h(patient):
    """An organisation's rule: filler at least 48 hours after Botox (block). No default joins the two."""
    return org_rule(patient, "botox", "filler", 48, "hours")


def test_an_hours_rule_is_elapsed_time_across_the_spring_change(api, patient, practitioner, botox_filler_48h):
    """docs/rules.md: "Hours are elapsed time: 48 hours after 10:00 on Monday is 10:00 on Wednesday, to the minute
    (across a clock change, 09:00 or 11:00)". Botox on Saturday 28 March 10:00 GMT: filler at 10:59 BST on Monday
    30 March is refused (earliest 11:00 BST), at 11:00 BST allowed."""
    booked(api, patient, "botox", "2026-03-28T10:00:00+00:00", practitioner)
    refused = eligibility(api, patient, "filler", "2026-03-30T10:59:00+01:00")
    [violation] = blocks(refused)
    assert violation["earliest_allowed"] == "2026-03-30T11:00:00+01:00"
    assert refused["earliest_eligible_start"] == "2026-03-30T11:00:00+01:00"
    assert blocks(eligibility(api, patient, "filler", "2026-03-30T11:00:00+01:00")) == []


def test_an_hours_rule_looking_forward_allows_exactly_the_gap_before(api, patient, practitioner, botox_filler_48h):
    """docs/rules.md, the forbidden ranges: looking forward with an hours gap, "from L - gap (exclusive) up to and
    including L's start". Filler booked Monday 30 March 11:00 BST: a Botox at 10:00 GMT on Saturday 28 March (48 h
    before, to the minute) passes, one at 10:01 GMT does not."""
    booked(api, patient, "filler", "2026-03-30T11:00:00+01:00", practitioner)
    assert blocks(eligibility(api, patient, "botox", "2026-03-28T10:00:00+00:00")) == []
    [violation] = blocks(eligibility(api, patient, "botox", "2026-03-28T10:01:00+00:00"))
    assert violation["code"] == "interval_too_close_before"


def test_an_hours_rule_across_the_autumn_change_ends_at_the_elapsed_minute(
    api, patient, practitioner, botox_filler_48h
):
    """docs/rules.md: hours are elapsed time. Botox on Saturday 24 October 10:00 BST (09:00 UTC): 48 hours later is
    09:00 GMT on Monday 26 October (the wall clock says one hour less). Asked for Sunday, the earliest eligible
    start is that minute."""
    booked(api, patient, "botox", "2026-10-24T10:00:00+01:00", practitioner)
    body = eligibility(api, patient, "filler", "2026-10-25T10:00:00+00:00")
    assert body["earliest_eligible_start"] == "2026-10-26T09:00:00+00:00"
    assert blocks(eligibility(api, patient, "filler", "2026-10-26T09:00:00+00:00")) == []
    assert blocks(eligibility(api, patient, "filler", "2026-10-26T08:59:00+00:00")) != []


# --- the calendar: half-open appointments, opening and closing ---------------------------------------------------


def test_back_to_back_appointments_of_one_practitioner_are_half_open(api, patient, practitioner):
    """brief: an appointment ending exactly when another starts does not overlap (the exclusion constraint is
    `tstzrange(start_at, end_at, '[)')`, clinic migration 0007). Botox 10:00-10:30 with Dr Ada: other patients may
    have 10:30 and 09:30 with her; 10:29 is `slot_taken`."""
    booked(api, patient, "botox", "2026-03-10T10:00:00+00:00", practitioner)
    others = [PatientFactory(clinic=patient.clinic, first_name=f"Other{i}", phone="") for i in range(3)]
    booked(api, others[0], "botox", "2026-03-10T10:30:00+00:00", practitioner)
    booked(api, others[1], "botox", "2026-03-10T09:30:00+00:00", practitioner)
    refused = problem(
        post(
            api,
            "/appointments/",
            {
                "patient": str(others[2].pk),
                "procedure": "botox",
                "start": "2026-03-10T10:29:00+00:00",
                "practitioner": str(practitioner.pk),
            },
        ),
        409,
    )
    assert availability_codes(refused) == {"slot_taken"}


def test_one_patient_may_go_from_one_appointment_straight_to_the_next(api, patient, practitioner, colleague):
    """docs/api.md: `patient_busy` is "the patient already has an appointment then". Botox 10:00-10:30 with Dr Ada:
    filler at 10:30 with Dr Bea is free for the patient; at 10:15 the patient is busy."""
    booked(api, patient, "botox", "2026-03-10T10:00:00+00:00", practitioner)
    assert (
        availability_codes(
            eligibility(api, patient, "filler", "2026-03-10T10:30:00+00:00", practitioner=str(colleague.pk))
        )
        == set()
    )
    busy = eligibility(api, patient, "filler", "2026-03-10T10:15:00+00:00", practitioner=str(colleague.pk))
    assert availability_codes(busy) == {"patient_busy"}


@pytest.mark.parametrize(
    ("procedure", "start", "free"),
    [
        ("botox", "2026-03-10T09:00:00+00:00", True),  # starts at opening
        ("botox", "2026-03-10T08:59:00+00:00", False),  # a minute before opening
        ("botox", "2026-03-10T17:30:00+00:00", True),  # ends at closing (30 min)
        ("microneedling", "2026-03-10T17:00:00+00:00", True),  # ends at closing (60 min)
        ("microneedling", "2026-03-10T17:01:00+00:00", False),  # over closing by a minute
    ],
    ids=["open", "before-open", "botox-to-close", "mn-to-close", "mn-past-close"],
)
def test_working_hours_hold_a_visit_from_opening_to_closing_and_not_a_minute_more(
    api, patient, practitioner, procedure, start, free
):
    """contract: "a practitioner who does that procedure is free, within working hours" (09:00 to 18:00)."""
    body = eligibility(api, patient, procedure, start, practitioner=str(practitioner.pk))
    assert availability_codes(body) == (set() if free else {"outside_working_hours"})


def test_time_off_ending_at_a_start_leaves_that_start_free(api, patient, practitioner):
    """scheduler.availability: busy spans are half-open [start, end). Dr Ada off 09:00-10:00: 10:00 is free, 09:30
    is `practitioner_time_off`."""
    TimeOff.objects.create(
        practitioner=practitioner,
        start_at=datetime(2026, 3, 10, 9, tzinfo=UTC),
        end_at=datetime(2026, 3, 10, 10, tzinfo=UTC),
    )
    kw = {"practitioner": str(practitioner.pk)}
    assert availability_codes(eligibility(api, patient, "botox", "2026-03-10T10:00:00+00:00", **kw)) == set()
    off = eligibility(api, patient, "botox", "2026-03-10T09:30:00+00:00", **kw)
    assert availability_codes(off) == {"practitioner_time_off"}


def test_availability_offers_the_slot_ending_at_closing_and_none_past_it(api, patient, practitioner):
    """contract: availability gives "free slots" within working hours; BOOKING_SLOT_STEP_MINUTES 15. On Tuesday 10
    March microneedling (60 min) is offered from 09:00 to 17:00 (ending at 18:00), not at 17:15."""
    body = ok(
        api.get(
            f"{API}/availability/",
            {
                "patient": str(patient.pk),
                "procedure": "microneedling",
                "from": "2026-03-10T00:00:00+00:00",
                "to": "2026-03-10T23:00:00+00:00",
                "page_size": 200,
            },
        )
    )
    starts = [slot["start"] for slot in body["results"]]
    assert starts[0] == "2026-03-10T09:00:00+00:00"
    assert starts[-1] == "2026-03-10T17:00:00+00:00"
    assert body["count"] == 33  # 09:00 .. 17:00 every 15 minutes


def test_a_start_exactly_now_is_bookable_and_a_minute_ago_is_not(api, patient, practitioner):
    """scheduler.booking: "That time has already passed" for a start before now (the clock stands at 09:00:00 UTC
    on Monday 2 March). Exactly now is not past."""
    booked(api, patient, "botox", "2026-03-02T09:00:00+00:00", practitioner)
    other = PatientFactory(clinic=patient.clinic, first_name="Late", phone="")
    body = problem(
        post(
            api,
            "/appointments/",
            {"patient": str(other.pk), "procedure": "botox", "start": "2026-03-02T08:59:00+00:00"},
        ),
        400,
    )
    assert body["code"] == "start_in_past"


def test_a_procedure_reported_exactly_now_is_taken_and_a_minute_ahead_is_not(api, patient):
    """docs/api.md error codes: `performed_in_future`. Done at 09:00 today (now) is history; 09:01 is the future."""
    path = f"/patients/{patient.pk}/procedures/"
    ok(post(api, path, {"procedure": "botox", "performed_at": "2026-03-02T09:00:00+00:00"}), 201)
    body = problem(post(api, path, {"procedure": "botox", "performed_at": "2026-03-02T09:01:00+00:00"}), 400)
    assert body["code"] == "performed_in_future"


# --- limits of the requests ------------------------------------------------------------------------------------


def test_an_availability_window_of_92_days_is_taken_and_a_minute_more_is_not(api, patient, practitioner):
    """docs/api.md: "Availability: ... `from`, `to` (default 14 days, at most 92)"."""
    query = {"patient": str(patient.pk), "procedure": "botox", "from": "2026-03-03T00:00:00+00:00"}
    ok(api.get(f"{API}/availability/", {**query, "to": "2026-06-03T00:00:00+00:00"}))  # 92 x 24 h on
    body = problem(api.get(f"{API}/availability/", {**query, "to": "2026-06-03T00:01:00+00:00"}), 400)
    assert body["code"] == "window_too_long" and "to" in body["errors"]
    same = problem(api.get(f"{API}/availability/", {**query, "to": "2026-03-03T00:00:00+00:00"}), 400)
    assert same["code"] == "window_end_before_start"


def test_adjacent_availability_windows_both_offer_the_slot_at_their_seam(api, patient, practitioner):
    """Asked as a QUESTION by this probe (the appointment list's window is half-open), decided 6 December in
    docs/api.md: "Both ends are starts offered: a slot starting exactly at `from` or exactly at `to` is listed ...
    so two windows laid end to end (09:00-10:00, 10:00-11:00) both list a slot at 10:00"."""
    query = {"patient": str(patient.pk), "procedure": "botox"}
    first = ok(
        api.get(
            f"{API}/availability/", {**query, "from": "2026-03-10T09:00:00+00:00", "to": "2026-03-10T10:00:00+00:00"}
        )
    )
    second = ok(
        api.get(
            f"{API}/availability/", {**query, "from": "2026-03-10T10:00:00+00:00", "to": "2026-03-10T11:00:00+00:00"}
        )
    )
    seam = "2026-03-10T10:00:00+00:00"
    assert seam in [s["start"] for s in second["results"]]
    assert seam in [s["start"] for s in first["results"]]
    assert "2026-03-10T10:15:00+00:00" not in [s["start"] for s in first["results"]]


def test_page_size_200_and_the_last_page_are_served_and_one_more_is_refused(api, patient):
    """docs/api.md: "`?page_size=` (1 to 200, default 50) ... a page_size over 200 is refused ... A page past the
    last one is a 400 with its own code, `page_out_of_range`"."""
    for i in range(2):
        PatientFactory(clinic=patient.clinic, first_name=f"Paged{i}", phone="")
    assert len(ok(api.get(f"{API}/patients/", {"page_size": 200}))["results"]) == 3
    body = problem(api.get(f"{API}/patients/", {"page_size": 201}), 400)
    assert "page_size" in body["errors"]
    last = ok(api.get(f"{API}/patients/", {"page_size": 1, "page": 3}))
    assert last["next"] is None and len(last["results"]) == 1
    past = problem(api.get(f"{API}/patients/", {"page_size": 1, "page": 4}), 400)
    assert past["code"] == "page_out_of_range"


@pytest.mark.parametrize(
    ("field", "longest"),
    [("first_name", 100), ("last_name", 100)],
)
def test_a_name_at_its_max_length_is_taken_and_one_character_more_is_refused(api, clinic, field, longest):
    """api.serializers.PatientCreateIn: first and last name `max_length=100` (clinic.models.Patient likewise)."""
    base = {"first_name": "Maxi", "last_name": "Length", "email": "maxi@example.com"}
    created = ok(post(api, "/patients/", {**base, field: "n" * longest}), 201)
    assert len(created[field]) == longest
    body = problem(post(api, "/patients/", {**base, "email": "other@example.com", field: "n" * (longest + 1)}), 400)
    assert field in body["errors"]


def test_an_email_of_254_characters_is_taken_and_255_is_refused(api, clinic):
    """api.serializers: `email` `max_length=254` (RFC 5321's limit, Django's EmailField)."""
    domain = "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".com"  # 189 characters
    longest = "a" * 64 + "@" + domain
    assert len(longest) == 254
    created = ok(post(api, "/patients/", {"first_name": "Em", "last_name": "Long", "email": longest}), 201)
    assert created["email"] == longest
    body = problem(post(api, "/patients/", {"first_name": "Em", "last_name": "Longer", "email": "x" + longest}), 400)
    assert "email" in body["errors"]


def test_history_notes_of_2000_characters_are_taken_and_2001_are_refused(api, patient):
    """api.serializers.ProcedureRecordIn: `notes` `max_length=2000`."""
    path = f"/patients/{patient.pk}/procedures/"
    line = {"procedure": "botox", "performed_at": "2026-03-01T10:00:00+00:00"}
    ok(post(api, path, {**line, "notes": "n" * 2000}), 201)
    body = problem(post(api, path, {**line, "notes": "n" * 2001}), 400)
    assert "notes" in body["errors"]


@pytest.mark.parametrize(
    ("start", "fine"),
    [
        ("2026-03-10T23:00:00+14:00", True),
        ("2026-03-09T22:00:00-14:00", True),
        ("2026-03-10T23:00:00+14:01", False),
        ("2026-03-09T22:00:00-14:01", False),
    ],
    ids=["plus-14", "minus-14", "plus-14-01", "minus-14-01"],
)
def test_offsets_of_14_hours_are_taken_and_a_minute_more_is_not(api, patient, practitioner, start, fine):
    """docs/api.md: "The offset is `Z` (or `z`) or `+-HH:MM` from -14:00 to +14:00"."""
    response = post(api, "/eligibility/", {"patient": str(patient.pk), "procedure": "botox", "start": start})
    if fine:
        ok(response)
    else:
        assert "start" in problem(response, 400)["errors"]


@pytest.mark.parametrize(
    ("started_on", "ended_on", "fine"),
    [
        ("1900-01-01", "1900-01-02", True),
        ("1899-12-31", "1900-01-02", False),
        ("2026-01-01", "2999-12-31", True),
        ("2026-01-01", "3000-01-01", False),
    ],
    ids=["1900", "1899", "2999", "3000"],
)
def test_dates_from_1900_to_2999_are_taken_and_a_day_outside_is_not(api, patient, started_on, ended_on, fine):
    """docs/api.md: "Dates are `YYYY-MM-DD` exactly. Years are accepted from 1900 to 2999"."""
    body = {"drug": "topical_retinoid", "started_on": started_on, "ended_on": ended_on}
    response = post(api, f"/patients/{patient.pk}/medications/", body)
    if fine:
        ok(response, 201)
    else:
        assert set(problem(response, 400)["errors"]) & {"started_on", "ended_on"}


def test_a_course_ending_on_the_last_accepted_day_still_gives_an_answer(api, patient, practitioner):
    """docs/api.md: years up to 2999 are accepted; the contract: "Every refusal says ... the earliest start". An
    isotretinoin course recorded as ending 31 December 2999 (a typo for an open course, say) makes the earliest
    microneedling 30 June 3000: the eligibility answer must still be an answer (200, not a 500), refused, with
    that date or none."""
    ok(
        post(
            api,
            f"/patients/{patient.pk}/medications/",
            {"drug": "isotretinoin", "started_on": "2026-01-05", "ended_on": "2999-12-31"},
        ),
        201,
    )
    body = eligibility(api, patient, "microneedling", "2026-03-10T10:00:00+00:00")
    assert body["eligible"] is False
    assert body["earliest_eligible_start"] in (None, "3000-06-30T00:00:00+01:00")


def test_an_idempotency_key_of_255_characters_is_taken_and_256_is_refused(api, clinic):
    """docs/api.md: "`Idempotency-Key` (1-255 printable ASCII characters ...). Any other key is a 400
    `invalid_idempotency_key`"."""
    ok(post(api, "/patients/", {"first_name": "Ida", "last_name": "Key", "email": "ida@example.com"}, "k" * 255), 201)
    body = problem(
        post(api, "/patients/", {"first_name": "Ida", "last_name": "Keys", "email": "idb@example.com"}, "k" * 256), 400
    )
    assert body["code"] == "invalid_idempotency_key"


def test_an_address_of_exactly_4000_characters_with_no_query_is_not_too_long(api):
    """docs/api.md: "a path and query longer than 4000 characters is answered by the API with a **414**". A path of
    4000 characters (an unknown patient id) is not longer: it is answered as any unknown patient, 404."""
    path = f"{API}/patients/" + "p" * (4000 - len(f"{API}/patients/") - 1) + "/"
    assert len(path) == 4000
    assert problem(api.get(path[:-2] + "/"), 404)["code"] == "unknown_patient"  # 3999 characters: served
    assert problem(api.get(path), 404)["code"] == "unknown_patient"


def test_a_path_and_query_of_4000_characters_is_served_and_4001_is_a_414(api):
    """docs/api.md: "a path and query longer than 4000 characters is answered ... with a **414**" (here the `?`
    between them counted, as the request line carries it)."""
    base = f"{API}/clinics/?x="
    assert ok(api.get(base + "q" * (4000 - len(base))))["count"] == 1
    assert problem(api.get(base + "q" * (4001 - len(base))), 414)["code"] == "uri_too_long"


def test_a_header_of_8000_characters_is_served_and_8001_is_a_431(api):
    """docs/api.md: "a header value longer than 8000 characters with a **431**"."""
    ok(api.get(f"{API}/clinics/", HTTP_X_PROBE="h" * 8000))
    body = problem(api.get(f"{API}/clinics/", HTTP_X_PROBE="h" * 8001), 431)
    assert body["code"] == "request_header_fields_too_large"


def test_a_body_of_exactly_256_kib_is_read_and_a_byte_more_is_a_413(api, clinic):
    """docs/api.md: `DATA_UPLOAD_MAX_MEMORY_SIZE` "262144 (256 KiB) | a larger body is refused with 413"."""

    def body(name: str, size: int) -> bytes:
        text = json.dumps({"first_name": name, "last_name": "Body", "email": f"{name.lower()}@example.com"})
        return (text + " " * (size - len(text))).encode()

    assert len(body("Big", 262_144)) == 262_144
    ok(api.generic("POST", f"{API}/patients/", body("Big", 262_144), content_type="application/json"), 201)
    response = api.generic("POST", f"{API}/patients/", body("Bigger", 262_145), content_type="application/json")
    assert problem(response, 413)["code"] == "payload_too_large"


def test_a_secret_overlap_of_a_week_is_taken_and_a_minute_more_is_not(api, settings):
    """docs/api.md: "`POST /api/v1/webhooks/{id}/rotate-secret/` | body `{overlap_minutes?}` (0 to 10080 ...)"."""
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = True
    endpoint = ok(post(api, "/webhooks/", {"url": "https://hooks.platform.example/dec6h"}), 201)
    rotated = ok(post(api, f"/webhooks/{endpoint['id']}/rotate-secret/", {"overlap_minutes": 10080}))
    assert rotated["previous_secret_expires_at"].startswith("2026-03-09T09:00:00")
    body = problem(post(api, f"/webhooks/{endpoint['id']}/rotate-secret/", {"overlap_minutes": 10081}), 400)
    assert "overlap_minutes" in body["errors"]


# --- rules and plans: their numeric limits ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "longest"),
    [(GapUnit.HOURS, 87_648), (GapUnit.DAYS, 3_652), (GapUnit.WEEKS, 521), (GapUnit.MONTHS, 120)],
)
def test_a_rule_gap_of_ten_years_is_taken_and_one_unit_more_is_not(patient, unit, longest):
    """docs/rules.md: "a gap below 1, longer than ten years (87,648 hours, 3,652 days, 521 weeks or 120 months) ...
    is refused on the field (`gap_value`, `gap_unit`)"."""
    from django.core.exceptions import ValidationError

    def rule(value):
        return IntervalRule(
            organisation=patient.organisation,
            earlier_procedure_id="botox",
            later_procedure_id="filler",
            gap_value=value,
            gap_unit=unit,
            source="qa dec6h",
        )

    rule(longest).full_clean()
    rule(1).full_clean()
    for value in (longest + 1, 0):
        with pytest.raises(ValidationError) as refused:
            rule(value).full_clean()
        assert "gap_value" in refused.value.message_dict


def test_a_plan_of_24_sessions_is_planned_and_25_is_refused(api, patient, practitioner, templates):
    """docs/plans.md: "`sessions` overrides the template's count (1 to 24)"."""
    path = f"/patients/{patient.pk}/plans/"
    base = {"template": "microneedling-course", "start_from": "2026-03-09", "dry_run": True}
    body = ok(post(api, path, {**base, "sessions": 24}))
    assert body["feasible"] is True and len(body["sessions"]) == 24
    assert "sessions" in problem(post(api, path, {**base, "sessions": 25}), 400)["errors"]


def test_plan_windows_measured_from_a_month_end(api, patient, practitioner, templates):
    """docs/plans.md: "Session n falls between min gap and max gap after session n-1's local date, best at ideal
    gap ... Gaps are calendar gaps ... (31 January + 1 month = 28 February)". Botox maintenance (3 months / 14 weeks
    / 4 months) from Saturday 31 October 2026: session 2's window runs from 31 January to 28 February 2027, ideal 6
    February (31 October + 98 days)."""
    body = ok(
        post(
            api,
            f"/patients/{patient.pk}/plans/",
            {"template": "botox-maintenance", "start_from": "2026-10-31", "dry_run": True, "sessions": 3},
        )
    )
    assert body["feasible"] is True
    first, second, third = body["sessions"]
    assert first["start"].startswith("2026-10-31")
    assert second["window"] == {"earliest": "2027-01-31", "ideal": "2027-02-06", "latest": "2027-02-28"}
    assert second["start"].startswith("2027-02-06")
    assert third["window"] == {"earliest": "2027-05-06", "ideal": "2027-05-15", "latest": "2027-06-06"}


def test_a_one_month_course_from_31_january_lands_on_28_february_then_28_march(api, patient, practitioner, templates):
    """docs/plans.md: "(31 January + 1 month = 28 February ...)", each window measured from the previous session's
    local date. An organisation's own course of three Botox sessions exactly one month apart, from Sunday 31
    January 2027: 31 January, 28 February, 28 March."""
    PlanTemplate.objects.create(
        organisation=patient.organisation,
        code="qa-monthly-botox",
        name="Monthly Botox (qa)",
        procedure_id="botox",
        sessions=3,
        min_gap_value=1,
        min_gap_unit="months",
        ideal_gap_value=1,
        ideal_gap_unit="months",
        max_gap_value=1,
        max_gap_unit="months",
    )
    body = ok(
        post(
            api,
            f"/patients/{patient.pk}/plans/",
            {"template": "qa-monthly-botox", "start_from": "2027-01-31", "dry_run": True},
        )
    )
    assert body["feasible"] is True, body["reason"]
    assert [s["start"][:10] for s in body["sessions"]] == ["2027-01-31", "2027-02-28", "2027-03-28"]


@pytest.mark.parametrize(
    ("second", "inside"),
    [
        ("2026-04-06T09:00:00+01:00", True),  # the window's first day: 4 weeks after 9 March
        ("2026-04-20T09:00:00+01:00", True),  # its last day: 6 weeks after
        ("2026-04-05T09:00:00+01:00", False),  # a day before it opens
        ("2026-04-21T09:00:00+01:00", False),  # a day after it closes
    ],
    ids=["first-day", "last-day", "day-before", "day-after"],
)
def test_a_proposal_on_its_windows_edges_is_booked_and_a_day_outside_is_not(
    api, patient, practitioner, templates, second, inside
):
    """docs/plans.md: microneedling course 4 / 4 / 6 weeks; "a proposal ... outside its windows
    (`plan_session_outside_window`)" is a 400. A window holds its first and last day."""
    third = (datetime.fromisoformat(second) + timedelta(weeks=4)).isoformat()
    proposal = [{"start": "2026-03-09T09:00:00+00:00"}, {"start": second}, {"start": third}]
    response = post(
        api,
        f"/patients/{patient.pk}/plans/",
        {"template": "microneedling-course", "start_from": "2026-03-09", "proposal": proposal},
    )
    if inside:
        assert [s["start"] for s in ok(response, 201)["sessions"]] == [p["start"] for p in proposal]
    else:
        body = problem(response, 400)
        assert body["code"] == "plan_session_outside_window" and "proposal.1.start" in body["errors"]


@pytest.fixture
def course(api, patient, practitioner, templates) -> dict:
    """A microneedling course booked from Monday 9 March: 9 March, 6 April and 4 May, 09:00."""
    return ok(
        post(api, f"/patients/{patient.pk}/plans/", {"template": "microneedling-course", "start_from": "2026-03-09"}),
        201,
    )


def replan(api, plan: dict, start: str) -> dict:
    return ok(post(api, f"/plans/{plan['id']}/replan/", {"from_session": 2, "start": start, "dry_run": True}))


@pytest.mark.parametrize(
    "start",
    ["2026-04-20T09:00:00+01:00", "2026-04-20T17:00:00+01:00", "2026-04-21T09:00:00+01:00"],
    ids=["last-day-morning", "last-day-last-slot", "day-after"],
)
def test_a_replan_start_on_the_last_day_of_the_window_or_after_it_is_placed_at_start(api, course, start):
    """docs/plans.md, re-plan: "never before `start` (... one after [the ideal day] takes the first possible slot
    from `start`; once the whole window has passed ... the session goes from `start` like a course's first)".
    Session 2's window is 6 to 20 April: a start at 09:00 or at 17:00 (the last slot) on 20 April, or at 09:00 on
    21 April, places session 2 exactly there."""
    body = replan(api, course, start)
    assert body["feasible"] is True, body["reason"]
    assert body["sessions"][0]["start"] == start


def test_a_replan_start_after_the_last_slot_of_the_windows_last_day_is_placed_the_next_day(api, course):
    """docs/plans.md: "once the whole window has passed, as for an overdue or missed session, the session goes from
    `start` like a course's first". At 17:01 on 20 April no slot of the window is left: expected the same answer as
    a start on 21 April (session 2 on 21 April at 09:00), not an infeasible plan."""
    body = replan(api, course, "2026-04-20T17:01:00+01:00")
    assert body["feasible"] is True, body["reason"]
    assert body["sessions"][0]["start"] == "2026-04-21T09:00:00+01:00"


def test_a_cancelled_session_turns_missed_at_local_midnight_after_its_window(api, course, clock):
    """docs/plans.md: "`cancelled` (its appointment was cancelled and the window is still open) ... A cancelled
    session reads `missed` once its window has passed". Session 2's window ends on 20 April (London, BST): at 23:59
    BST it is still `cancelled`; at 00:00 BST on 21 April (23:00 UTC on the 20th) it is `missed`."""
    ok(post(api, f"/appointments/{course['sessions'][1]['appointment']}/cancel/", {}))
    clock.move_to(datetime(2026, 4, 20, 22, 59, tzinfo=UTC))
    assert ok(api.get(f"{API}/plans/{course['id']}/"))["sessions"][1]["status"] == "cancelled"
    clock.move_to(datetime(2026, 4, 20, 23, 0, tzinfo=UTC))
    assert ok(api.get(f"{API}/plans/{course['id']}/"))["sessions"][1]["status"] == "missed"


# --- reminders: quiet hours, due now, the start itself (services) ------------------------------------------------


def sms_due(appointment, key: str) -> OutboxMessage:
    return OutboxMessage.objects.get(appointment=appointment, channel="sms", template__default_key=key)


@pytest.mark.parametrize(
    ("start", "due"),
    [
        (ldn(2026, 3, 12, 21, 0), ldn(2026, 3, 11, 20, 59)),  # due at 21:00: moves to 20:59
        (ldn(2026, 3, 12, 20, 59), ldn(2026, 3, 11, 20, 59)),  # due at 20:59: stays
        (ldn(2026, 3, 12, 8, 0), ldn(2026, 3, 11, 8, 0)),  # due at 08:00: stays
        (ldn(2026, 3, 12, 7, 59), ldn(2026, 3, 10, 20, 59)),  # due at 07:59: the evening before
        (ldn(2026, 3, 30, 8, 0), ldn(2026, 3, 29, 8, 0)),  # 24 h before is 08:00 BST on the change day
        (ldn(2026, 3, 30, 21, 0), ldn(2026, 3, 29, 20, 59)),  # 24 h before is 21:00 BST on the change day
        (ldn(2026, 3, 29, 22, 0), ldn(2026, 3, 28, 20, 59)),  # 24 h before is 21:00 GMT the day before
        (ldn(2026, 10, 26, 8, 0), ldn(2026, 10, 25, 8, 0)),  # 24 h before is 08:00 GMT on the autumn change
    ],
    ids=["21-00", "20-59", "08-00", "07-59", "bst-08-00", "bst-21-00", "gmt-21-00", "autumn-08-00"],
)
def test_a_pre_care_text_at_the_edges_of_quiet_hours(night, start, due):
    """domain.md 4: "no SMS between 21:00 and 08:00 local: a message that falls there moves to the nearest allowed
    moment that still comes before the moment it warns about (a pre-care note moves earlier, never later)";
    docs/reminders.md: "moves earlier to 20:59". The microneedling pre-care is 24 h (elapsed) before the start;
    21:00 is quiet, 08:00 is not."""
    appointment = book(night, start, datetime(2026, 3, 2, 9, tzinfo=UTC))
    row = sms_due(appointment, "microneedling-pre-care-24h")
    assert row.status == OutboxStatus.PENDING
    assert row.due_at == due


def test_the_day_before_reminder_on_the_spring_change_day_lands_on_0800_and_stays(night):
    """docs/reminders.md: "`days` keep the local wall-clock time across DST"; quiet hours end at 08:00. A visit at
    08:00 BST on Monday 30 March: its day-before text is due at 08:00 BST on Sunday 29 March, allowed."""
    appointment = book(night, ldn(2026, 3, 30, 8, 0), datetime(2026, 3, 2, 9, tzinfo=UTC))
    assert sms_due(appointment, "day-before-reminder").due_at == ldn(2026, 3, 29, 8, 0)


@pytest.mark.parametrize(
    ("done", "at_completion", "after_48h"),
    [
        (ldn(2026, 3, 10, 21, 0), ldn(2026, 3, 11, 8, 0), ldn(2026, 3, 13, 8, 0)),
        (ldn(2026, 3, 10, 20, 59), ldn(2026, 3, 10, 20, 59), ldn(2026, 3, 12, 20, 59)),
        (ldn(2026, 3, 10, 8, 0), ldn(2026, 3, 10, 8, 0), ldn(2026, 3, 12, 8, 0)),
        (ldn(2026, 3, 10, 7, 59), ldn(2026, 3, 10, 8, 0), ldn(2026, 3, 12, 8, 0)),
    ],
    ids=["21-00", "20-59", "08-00", "07-59"],
)
def test_post_care_texts_at_the_edges_of_quiet_hours_move_later(night, done, at_completion, after_48h):
    """docs/reminders.md: "Post-care and notices move **later** to 08:00"; quiet hours are 21:00-08:00 (21:00
    quiet, 08:00 not). Completed exactly at the edge: the completion text and the +48 h text."""
    appointment = book(night, done - timedelta(hours=1), datetime(2026, 3, 2, 9, tzinfo=UTC))
    with time_machine.travel(done, tick=False):
        appointment_complete(appointment=appointment, actor=CLINICIAN, now=done)
    assert sms_due(appointment, "microneedling-post-care-completion").due_at == at_completion
    assert sms_due(appointment, "microneedling-post-care-48h").due_at == after_48h


@pytest.mark.parametrize(("late", "planned"), [(timedelta(0), True), (MINUTE, False)], ids=["exactly", "minute-late"])
def test_a_day_before_reminder_due_exactly_now_is_planned_and_sent_now(night, late, planned):
    """docs/reminders.md: `send_if_late` "a booking made after the due time: ... leave out (a day-before
    reminder)". Booked exactly one day before the start the reminder is due now, not after: planned, and the
    dispatcher run at that minute sends it; booked a minute later it is left out."""
    start = ldn(2026, 3, 10, 10, 0)
    now = ldn(2026, 3, 9, 10, 0) + late
    appointment = book(night, start, now)
    rows = list(
        OutboxMessage.objects.filter(
            appointment=appointment, channel="email", template__default_key="day-before-reminder"
        ).exclude(status=OutboxStatus.SKIPPED)
    )
    if not planned:
        assert rows == []  # left out (no row, or one recorded as skipped)
        return
    [row] = rows
    assert row.status == OutboxStatus.PENDING and row.due_at == now
    with time_machine.travel(now, tick=False):
        dispatch_local(now=now)
    row.refresh_from_db()
    assert row.status == OutboxStatus.SENT


@pytest.mark.parametrize(
    ("start", "sms_due_at"),
    [(ldn(2026, 3, 12, 8, 0), None), (ldn(2026, 3, 12, 8, 15), ldn(2026, 3, 12, 8, 0))],
    ids=["start-at-0800", "start-at-0815"],
)
def test_a_late_pre_care_text_whose_first_allowed_moment_is_the_start_is_not_sent(night, start, sms_due_at):
    """docs/reminders.md: a pre-care text "if that moment has passed it goes at 08:00, and only if that is still
    before the appointment (else it is recorded as `skipped` with the reason)". Booked at 07:00 for 08:00: 08:00 is
    not before 08:00, so the text is skipped (the e-mail goes now); for 08:15 it goes at 08:00."""
    now = ldn(2026, 3, 12, 7, 0)
    appointment = book(night, start, now)
    row = sms_due(appointment, "microneedling-pre-care-24h")
    if sms_due_at is None:
        assert row.status == OutboxStatus.SKIPPED and "quiet" in row.last_error
    else:
        assert row.status == OutboxStatus.PENDING and row.due_at == sms_due_at
    mail_row = OutboxMessage.objects.get(
        appointment=appointment, channel="email", template__default_key="microneedling-pre-care-24h"
    )
    assert mail_row.status == OutboxStatus.PENDING and mail_row.due_at == now


@pytest.mark.parametrize(("at", "sent"), [(-MINUTE, True), (timedelta(0), False)], ids=["minute-before", "at-start"])
def test_a_pre_care_email_dispatched_at_the_start_minute_is_too_late(night, at, sent):
    """docs/reminders.md: "a reminder or pre-care note whose appointment has already started ... is not sent at
    all: `skipped`, "too late: the appointment has started"". At the start minute it has started; a minute before,
    it has not."""
    start = ldn(2026, 3, 12, 10, 0)
    appointment = book(night, start, datetime(2026, 3, 2, 9, tzinfo=UTC))
    row = OutboxMessage.objects.get(
        appointment=appointment, channel="email", template__default_key="microneedling-pre-care-24h"
    )
    moment = start + at
    with time_machine.travel(moment, tick=False):
        dispatch_local(now=moment)
    row.refresh_from_db()
    if sent:
        assert row.status == OutboxStatus.SENT
    else:
        assert row.status == OutboxStatus.SKIPPED and "too late" in row.last_error


@pytest.mark.parametrize(("at", "held"), [(ldn(2026, 3, 12, 20, 59), False), (ldn(2026, 3, 12, 21, 0), True)])
def test_a_text_claimed_at_2100_waits_for_0800_and_one_at_2059_goes(night, at, held):
    """docs/reminders.md: "Quiet hours are checked again when an SMS is sent ... a backlog claimed at night ... waits
    until the quiet hours end (the row goes back to `pending`...)". A post-care text due 20:30, first claimed at
    20:59 (goes) or at 21:00 (held to 08:00)."""
    appointment = book(night, ldn(2026, 3, 12, 19, 30), datetime(2026, 3, 2, 9, tzinfo=UTC))
    done = ldn(2026, 3, 12, 20, 30)
    with time_machine.travel(done, tick=False):
        appointment_complete(appointment=appointment, actor=CLINICIAN, now=done)
    row = sms_due(appointment, "microneedling-post-care-completion")
    with time_machine.travel(at, tick=False):
        dispatch_local(now=at)
    row.refresh_from_db()
    if held:
        assert row.status == OutboxStatus.PENDING and row.due_at == ldn(2026, 3, 13, 8, 0)
    else:
        assert row.status == OutboxStatus.SENT


# --- the patient's own window; recalls --------------------------------------------------------------------------


@pytest.mark.parametrize(("before", "allowed"), [(timedelta(hours=24), True), (timedelta(hours=24) - MINUTE, False)])
def test_the_cancellation_window_is_24_elapsed_hours_even_across_the_clock_change(night, before, allowed):
    """docs/portal.md: "once `start - now` is less than that, the patient can neither cancel nor move online ...
    Exactly 24 hours before is still allowed." A visit at 10:00 BST on Sunday 29 March (09:00 UTC): 24 hours before
    is 09:00 GMT on Saturday (not 10:00, the wall clock)."""
    start = ldn(2026, 3, 29, 10, 0).astimezone(UTC)  # in UTC, so that subtracting hours is elapsed time
    appointment = book(night, start, datetime(2026, 3, 2, 9, tzinfo=UTC))
    now = start - before
    assert f"{now.astimezone(LONDON):%a %H:%M %Z}" == ("Sat 09:00 GMT" if allowed else "Sat 09:01 GMT")
    assert appointment_self_service(appointment=appointment, now=now).can_change is allowed


def test_recalls_due_today_are_not_overdue_and_the_list_reaches_exactly_a_week(patient, practitioner, templates):
    """docs/frontdesk.md: "Today lists the recalls due this week and those overdue"; plans.selectors: from
    RECALL_LEAD_DAYS (7) days before their date; overdue once "past their date". Due yesterday: overdue; today: due,
    not overdue; in 7 days: listed; in 8 days: not yet."""
    today = date(2026, 3, 2)
    template = PlanTemplate.objects.get(code="botox-maintenance", organisation=None)
    for offset in (-1, 0, 7, 8):
        after = AppointmentFactory(
            patient=patient,
            practitioner=practitioner,
            start_at=datetime(2025, 11, 1, 10, tzinfo=UTC) + timedelta(days=offset + 1),
            status=AppointmentStatus.COMPLETED,
        )
        Recall.objects.create(
            patient=patient,
            clinic=patient.clinic,
            after=after,
            procedure_id="botox",
            template=template,
            due_on=today + timedelta(days=offset),
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
    listed = {
        (view.recall.due_on - today).days: view.overdue for view in recalls_due(clinic=patient.clinic, today=today)
    }
    assert listed == {-1: True, 0: False, 7: False}


def test_cancelling_the_visit_that_ends_when_the_next_starts_frees_nothing_else(patient, practitioner, now):
    """Half-open spans in the services as over the API: Botox 10:00-10:30 cancelled, then a Botox at 10:00 and one at
    10:30 booked with the same practitioner for two patients (the cancelled one holds nothing)."""
    first = book(
        patient, datetime(2026, 3, 10, 10, tzinfo=UTC), now, code="botox", practitioner_id=str(practitioner.pk)
    )
    appointment_cancel(appointment=first, actor=RECEPTION, now=now)
    again = book(
        patient, datetime(2026, 3, 10, 10, tzinfo=UTC), now, code="botox", practitioner_id=str(practitioner.pk)
    )
    other = PatientFactory(clinic=patient.clinic, first_name="Next", phone="")
    after = book(
        other, datetime(2026, 3, 10, 10, 30, tzinfo=UTC), now, code="botox", practitioner_id=str(practitioner.pk)
    )
    assert {again.status, after.status} == {AppointmentStatus.CONFIRMED}
    assert Appointment.objects.filter(practitioner=practitioner, status=AppointmentStatus.CONFIRMED).count() == 2
