"""QA audit: the clinical rules and the reminder timing read against the domain brief, rule by rule.

An independent pass over /work/shared/domain.md sections 2-4 and 6, through the booking services and the API as a
receptionist or a platform meets them. What the other probes pin point by point (each default block rule looking
back, month ends of a 1-month rule, the earliest answer's consumers, DST readings of reminders) is not repeated;
this file goes after:

- the contraindication tables of section 3 as a whole: every catalogue condition against every bookable
  procedure (active and, where the brief says "history", historical), and the medication courses (anticoagulant,
  immunosuppressant, isotretinoin, topical retinoid) while ongoing: refused, held for clearance, warned or clear,
  with nothing the brief does not list;
- every default interval rule of section 2 and the practice repeats of section 6 looking *forward* (booking the
  earlier procedure before a booked later one), warnings included, at the exact day and at any hour;
- the warn-only isotretinoin rule while a course is ongoing ("warns on every date"): the earliest start is the
  start asked for, never null; the block rule's is null;
- two Hypothesis properties against an independent oracle (not the engine): calendar gaps in days, weeks and months
  (relativedelta) and hour gaps, both directions, in London across 29 February 2028 and the 2028 clock changes;
  and the SMS due times of a booking and its completion never in quiet hours, pre-care never later than its
  nominal time and always before the start, each the nearest allowed minute;
- a 12-month rule from 29 February both ways, and the rule book version in force recorded on the booking;
- the sourced/practice marking of shipped texts and rules, and what an SMS-only patient is told after treatment.

Found (5 December 2026), mended the same day: the microneedling aftercare SMS sent an SMS-only patient to an e-mail
that is never sent and left out the first-week sun rule (reminders migration 0018). Everything else held (the two
properties were also run with 1,500 and 400 examples on PostgreSQL).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.relativedelta import relativedelta
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinic.models import Appointment, AppointmentStatus, AuditEvent, ConditionStatus, WorkingHours
from clinic.services import IntakeLine, conditions_replace, medication_course_add
from reminders.models import OutboxMessage
from scheduler import rules
from scheduler.booking import Actor, UnableToBook, appointment_book, appointment_check, appointment_complete
from scheduler.models import ContraindicationRule, IntervalRule
from tests.api.conftest import http, new_api_client
from tests.factories import AppointmentFactory, ClinicFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import NOW

LONDON = ZoneInfo("Europe/London")
RECEPTION = Actor("qa-audit-reception@test")
CLINICIAN = Actor("qa-audit-clinician@test", clinical=True)
PROCEDURES = ["botox", "filler", "microneedling", "plasma_pen"]

pytestmark = pytest.mark.usefixtures("catalogue")


# --- helpers ---------------------------------------------------------------------------------------------------

_made = {"n": 0}


def clinic_all_hours(zone: str = "Europe/London", code: str | None = None):
    """A clinic whose one practitioner works every day 00:00-23:59 (availability never in the way)."""
    _made["n"] += 1
    clinic = ClinicFactory(code=code or f"qa-audit-{_made['n']}", timezone=zone)
    practitioner = PractitionerFactory(clinic=clinic, name=f"Dr Audit {_made['n']}", hours=[])
    WorkingHours.objects.bulk_create(
        WorkingHours(practitioner=practitioner, weekday=d, start_time=time(0, 0), end_time=time(23, 59))
        for d in range(7)
    )
    return clinic, practitioner


def check(patient, code, when, now=NOW, **kw):
    return appointment_check(patient=patient, procedure_code=code, start_at=when, now=now, **kw)


def book(patient, code, when, now=NOW, **kw):
    return appointment_book(patient=patient, procedure_code=code, start_at=when, actor=RECEPTION, now=now, **kw)


def key_of(violation) -> str:
    model = IntervalRule if violation.kind == "interval" else ContraindicationRule
    rule = model.objects.get(pk=violation.rule_id)
    return rule.default_key or f"org:{rule.pk}"


def ldn(y, m, d, hh=10, mm=0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=LONDON)


class rolled_back:
    """Run a Hypothesis example's writes in a savepoint that is rolled back, so examples never see each other."""

    def __enter__(self):
        self._atomic = transaction.atomic()
        self._atomic.__enter__()

    def __exit__(self, kind, error, tb):
        transaction.set_rollback(True)
        self._atomic.__exit__(kind, error, tb)
        return False


# =============================== Section 3: the contraindication tables ========================================

# The brief's tables (section 3), as (severity, counts when only in the history?). A condition the brief calls
# "history of ..." or a chronic disease counts from the history too; "active ..." (infection, open wound, acne,
# pregnancy, breastfeeding) only while active. Where the brief leaves it open the history case is not asserted (None).
ABS, REL = "absolute", "relative"
MICRONEEDLING = {
    "scleroderma": (ABS, True),
    "collagen_vascular_disease": (ABS, True),
    "cardiac_abnormality": (ABS, True),
    "clotting_disorder": (ABS, True),
    "skin_infection": (ABS, False),
    "open_wound": (ABS, False),
    "immunosuppression": (ABS, None),
    "keloid_scarring": (REL, True),
    "eczema": (REL, True),
    "psoriasis": (REL, True),
    "inflammatory_skin_condition": (REL, True),
    "active_acne": (REL, False),
    "actinic_keratosis": (REL, True),
    "herpes_simplex": (REL, True),
    "diabetes": (REL, True),
    "pregnancy": (REL, False),
    "breastfeeding": (REL, False),
    "radiation_therapy": (REL, None),
    "tattoo_in_area": (REL, None),
    "autoimmune_disease": (REL, True),
}
FILLER = {
    "skin_infection": (ABS, False),
    "open_wound": (ABS, False),
    "filler_allergy": (ABS, True),
    "active_acne": (REL, False),
    "psoriasis": (REL, None),
    "eczema": (REL, None),
    "inflammatory_skin_condition": (REL, None),
    "anaphylaxis_history": (REL, True),
    "autoimmune_disease": (REL, True),
    "pregnancy": (REL, False),
    "breastfeeding": (REL, False),
    "clotting_disorder": (REL, True),
    "keloid_scarring": (REL, True),
}
TABLES = {"microneedling": MICRONEEDLING, "filler": FILLER, "botox": {}, "plasma_pen": {}}
CONDITIONS = [
    "scleroderma",
    "collagen_vascular_disease",
    "cardiac_abnormality",
    "clotting_disorder",
    "skin_infection",
    "open_wound",
    "immunosuppression",
    "keloid_scarring",
    "eczema",
    "psoriasis",
    "inflammatory_skin_condition",
    "active_acne",
    "actinic_keratosis",
    "herpes_simplex",
    "diabetes",
    "pregnancy",
    "breastfeeding",
    "radiation_therapy",
    "tattoo_in_area",
    "autoimmune_disease",
    "filler_allergy",
    "anaphylaxis_history",
]
OUTCOME = {ABS: "refused", REL: "pending_clearance", None: "confirmed"}


@pytest.mark.parametrize("procedure", PROCEDURES)
def test_every_catalogue_condition_meets_each_procedure_as_the_brief_tables_say(procedure):
    """Section 3: for each of the 22 catalogue conditions, active and historical, the check of `procedure` gives
    refused (absolute), pending clearance (relative) or confirmed (not in the procedure's table): Botox and plasma
    pen have no contraindications in the sources, so nothing holds them. A refusal by a condition has no date
    (earliest null); a relative one never moves the earliest start."""
    clinic, _ = clinic_all_hours()
    start = ldn(2026, 4, 7, 11)
    table = TABLES[procedure]
    wrong = []
    for condition in CONDITIONS:
        for status in (ConditionStatus.ACTIVE, ConditionStatus.HISTORY):
            severity, from_history = table.get(condition, (None, True))
            if status == ConditionStatus.HISTORY and from_history is None:
                continue
            expected = severity if status == ConditionStatus.ACTIVE or from_history else None
            patient = PatientFactory(clinic=clinic)
            conditions_replace(patient=patient, lines=[IntakeLine(condition, status)], now=NOW)
            result = check(patient, procedure, start)
            got = str(result.outcome)
            earliest = result.earliest_eligible_start
            want_earliest = None if expected == ABS else start
            kinds = {v.kind for v in result.violations}
            if got != OUTCOME[expected] or earliest != want_earliest or (expected and kinds != {"contraindication"}):
                wrong.append((condition, str(status), got, earliest, sorted(kinds)))
    assert wrong == []


def test_a_tattoo_holds_microneedling_only_in_its_own_area_and_unknown_areas_count():
    """Section 3: 'tattoo or permanent makeup in the treatment area: relative, area-specific'. A face tattoo holds
    a face or an unnamed area; it does not hold the hands. A tattoo recorded with no area holds every area."""
    clinic, _ = clinic_all_hours()
    start = ldn(2026, 4, 7, 11)
    face = PatientFactory(clinic=clinic)
    conditions_replace(patient=face, lines=[IntakeLine("tattoo_in_area", "active", "face")], now=NOW)
    anywhere = PatientFactory(clinic=clinic)
    conditions_replace(patient=anywhere, lines=[IntakeLine("tattoo_in_area", "active")], now=NOW)
    assert str(check(face, "microneedling", start, area_code="face").outcome) == "pending_clearance"
    assert str(check(face, "microneedling", start).outcome) == "pending_clearance"
    assert str(check(face, "microneedling", start, area_code="hands").outcome) == "confirmed"
    assert str(check(anywhere, "microneedling", start, area_code="hands").outcome) == "pending_clearance"


# Ongoing courses (section 1 "medication courses", section 3): (procedure -> (outcome, earliest is null?, warned?)).
COURSES = {
    "anticoagulant": {
        "microneedling": ("refused", True, False),
        "filler": ("pending_clearance", False, False),
        "botox": ("confirmed", False, False),
        "plasma_pen": ("confirmed", False, False),
    },
    "immunosuppressant": {
        "microneedling": ("refused", True, False),
        "filler": ("confirmed", False, False),
        "botox": ("confirmed", False, False),
        "plasma_pen": ("confirmed", False, False),
    },
    "isotretinoin": {
        "microneedling": ("refused", True, True),
        "filler": ("confirmed", False, True),
        "botox": ("confirmed", False, False),
        "plasma_pen": ("confirmed", False, False),
    },
    "topical_retinoid": {p: ("confirmed", False, False) for p in PROCEDURES},
}


@pytest.mark.parametrize("drug", sorted(COURSES))
def test_an_ongoing_course_refuses_holds_warns_or_leaves_each_procedure_as_the_brief_says(drug):
    """Sections 2 and 3: an ongoing anticoagulant course rules microneedling out (absolute) and holds filler for
    clearance; immunosuppressive medication rules microneedling out; an isotretinoin course that has not ended
    blocks microneedling on every date (earliest unknown, null) and warns on every filler date (earliest: the start
    asked for); a topical retinoid only drives pre-care. Nothing else is held."""
    clinic, _ = clinic_all_hours()
    start = ldn(2026, 4, 7, 11)
    wrong = []
    for procedure, (outcome, no_date, warned) in COURSES[drug].items():
        patient = PatientFactory(clinic=clinic)
        medication_course_add(patient=patient, drug_code=drug, started_on=date(2026, 1, 5), now=NOW)
        result = check(patient, procedure, start)
        got = (
            str(result.outcome),
            result.earliest_eligible_start is None,
            bool(result.warnings),
            result.earliest_eligible_start in (None, start),
        )
        if got != (outcome, no_date, warned, True):
            wrong.append((procedure, got, [v.message for v in result.violations]))
    assert wrong == []


def test_the_api_answers_an_ongoing_isotretinoin_course_warned_for_filler_and_dateless_for_microneedling(clock):
    """Section 2: 'A course that has not ended blocks every date (or warns on every date); the earliest eligible
    start is then unknown (null) until its end date is recorded'; api-contract: warnings never refuse and come
    back in the 201 body. Filler: eligible, confirmed, earliest = the start asked for, a warning naming the course;
    booked 201 with that warning. Microneedling: 409 with earliest and next slot null."""
    clinic, _ = clinic_all_hours(code="qa-audit-api-iso")
    patient = PatientFactory(clinic=clinic)
    medication_course_add(patient=patient, drug_code="isotretinoin", started_on=date(2026, 1, 5), now=NOW)
    api = http(new_api_client(clinic, name="qa-audit-iso", clinical=True)[1])
    start = "2026-04-07T11:00:00+01:00"
    body = {"patient": str(patient.pk), "procedure": "filler", "start": start}
    answer = api.post("/api/v1/eligibility/", body, format="json")
    assert answer.status_code == 200, answer.content
    data = answer.json()
    assert data["eligible"] is True and data["status"] == "confirmed"
    assert datetime.fromisoformat(data["earliest_eligible_start"]) == datetime.fromisoformat(start)
    assert [(v["severity"], v["code"]) for v in data["violations"]] == [("warn", "interval_course_ongoing")]
    booked = api.post("/api/v1/appointments/", body, format="json")
    assert booked.status_code == 201, booked.content
    assert [w["severity"] for w in booked.json()["warnings"]] == ["warn"]
    refused = api.post(
        "/api/v1/appointments/",
        {"patient": str(patient.pk), "procedure": "microneedling", "start": "2026-05-07T11:00:00+01:00"},
        format="json",
    )
    assert refused.status_code == 409, refused.content
    problem = refused.json()
    assert problem["earliest_eligible_start"] is None and problem["next_available_slot"] is None
    codes = {(v["severity"], v["code"], v["conflicts_with"]["kind"]) for v in problem["violations"]}
    assert ("block", "interval_course_ongoing", "medication_course") in codes


# =============================== Section 2 and 6: every interval rule looking forward ===========================

# (earlier, later, gap in days, severity, default key): the sourced rules and the practice repeats.
FORWARD = [
    ("botox", "microneedling", 14, "block", "botox-then-microneedling"),
    ("filler", "microneedling", 28, "block", "filler-then-microneedling"),
    ("microneedling", "botox", 21, "block", "microneedling-then-botox"),
    ("microneedling", "filler", 21, "block", "microneedling-then-filler"),
    ("microneedling", "plasma_pen", 7, "block", "microneedling-then-plasma-pen-block"),
    ("microneedling", "plasma_pen", 10, "warn", "microneedling-then-plasma-pen-warn"),
    ("botox", "botox", 84, "warn", "botox-repeat"),
    ("filler", "filler", 14, "warn", "filler-repeat"),
    ("microneedling", "microneedling", 28, "warn", "microneedling-repeat"),
    ("plasma_pen", "plasma_pen", 42, "warn", "plasma-pen-repeat"),
]


@pytest.mark.parametrize("earlier, later, days, severity, key", FORWARD, ids=[f[4] for f in FORWARD])
def test_each_default_rule_looking_forward_holds_to_the_local_day_at_any_hour(earlier, later, days, severity, key):
    """Section 2: 'booking `earlier` looks forward at booked `later` events that it would make too close'; 'the
    later event's local date must be on or after the earlier event's local date plus the gap ... at any hour'.
    `later` booked at 09:00 on 30 June; `earlier` on the day `gap` before at 23:30 is clear of this rule; at 00:00
    the next day it meets the rule with the rule's severity (block refuses, warn only warns), naming the booking
    it conflicts with."""
    clinic, _ = clinic_all_hours()
    patient = PatientFactory(clinic=clinic)
    booked = book(patient, later, ldn(2026, 6, 30, 9)).appointment
    last_clear = ldn(2026, 6, 30, 23, 30) - timedelta(days=days)
    first_close = ldn(2026, 6, 30, 0, 0) - timedelta(days=days - 1)

    def hits(result):
        return [
            (str(v.severity), str(v.code), v.conflicts_with.id)
            for v in result.evaluation.violations
            if v.kind == "interval" and key_of(v) == key
        ]

    assert hits(check(patient, earlier, last_clear)) == []
    assert hits(check(patient, earlier, first_close)) == [(severity, "interval_too_close_before", str(booked.pk))]
    outcome = check(patient, earlier, first_close)
    if severity == "block":
        assert str(outcome.outcome) == "refused"
        with pytest.raises(UnableToBook):
            book(patient, earlier, first_close)
    else:
        made = book(patient, earlier, first_close)
        assert made.appointment.status == AppointmentStatus.CONFIRMED
        assert any(key_of(v) == key for v in made.check.warnings)


def test_a_cancelled_or_missed_later_booking_no_longer_holds_the_earlier_procedure_back():
    """Section 1: a timeline holds 'booked appointments that are not cancelled'; section 2: 'cancelling frees'.
    Microneedling booked on 30 June, then cancelled: Botox on 20 June (inside the 2 weeks before it) is free.
    A microneedling that was missed (no-show) frees the Botox after it too."""
    clinic, _ = clinic_all_hours()
    patient = PatientFactory(clinic=clinic)
    booked = book(patient, "microneedling", ldn(2026, 6, 30, 9)).appointment
    assert str(check(patient, "botox", ldn(2026, 6, 20, 9)).outcome) == "refused"
    Appointment.objects.filter(pk=booked.pk).update(status=AppointmentStatus.CANCELLED)
    assert str(check(patient, "botox", ldn(2026, 6, 20, 9)).outcome) == "confirmed"
    other = PatientFactory(clinic=clinic)
    missed = AppointmentFactory(
        patient=other,
        clinic=clinic,
        procedure_id="microneedling",
        start_at=ldn(2026, 3, 3, 9),
        status=AppointmentStatus.NO_SHOW,
    )
    assert missed.status == AppointmentStatus.NO_SHOW
    assert str(check(other, "botox", ldn(2026, 3, 10, 9)).outcome) == "confirmed"


# =============================== Section 2: gaps against an independent oracle ===================================

# One organisation's own rules between procedures no default relates (so each is seen alone), in every unit.
ORACLE_RULES = {
    ("plasma_pen", "botox"): (1, "months"),
    ("botox", "plasma_pen"): (6, "months"),
    ("filler", "plasma_pen"): (12, "months"),
    ("plasma_pen", "filler"): (10, "days"),
    ("filler", "botox"): (3, "weeks"),
    ("botox", "filler"): (36, "hours"),
}
PAIRS = sorted(ORACLE_RULES)


@pytest.fixture
def oracle_world():
    clinic, practitioner = clinic_all_hours(code="qa-audit-oracle")
    made = {}
    for (earlier, later), (value, unit) in ORACLE_RULES.items():
        rule = IntervalRule.objects.create(
            organisation=clinic.organisation,
            earlier_procedure_id=earlier,
            later_procedure_id=later,
            gap_value=value,
            gap_unit=unit,
            severity="block",
            source="qa audit",
        )
        made[(earlier, later)] = str(rule.pk)
    return clinic, practitioner, made


def oracle_conflict(gap: tuple[int, str], earlier_at: datetime, later_at: datetime) -> bool:
    """The brief's words, not the engine: calendar gaps compare London dates (months by relativedelta), hour gaps
    elapsed time. Only a later event on or after the earlier one is measured: on or after its date for a calendar
    gap ("the time of day plays no part": the same date is 0 days apart whichever is first that day, docs/rules.md),
    at or after its start for an hour gap."""
    value, unit = gap
    if unit == "hours":
        return earlier_at <= later_at and later_at - earlier_at < timedelta(hours=value)
    delta = relativedelta(months=value) if unit == "months" else timedelta(days=value * (7 if unit == "weeks" else 1))
    later_day, earlier_day = later_at.astimezone(LONDON).date(), earlier_at.astimezone(LONDON).date()
    return earlier_day <= later_day < earlier_day + delta


# 1 December 2027 to 30 April 2028: 29 February, month ends, the London spring change of 26 March 2028.
DAY0 = date(2027, 12, 1)
instants = st.builds(
    lambda d, q: (
        datetime.combine(DAY0 + timedelta(days=d), time.min, tzinfo=LONDON).astimezone(UTC) + timedelta(minutes=15 * q)
    ),
    st.integers(0, 151),
    st.integers(0, 95),
).map(lambda u: datetime.fromtimestamp(u.timestamp(), UTC))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=st.sampled_from(PAIRS), booked_at=instants, asked_at=instants, forward=st.booleans())
def test_calendar_and_hour_gaps_match_the_briefs_words_both_ways(oracle_world, pair, booked_at, asked_at, forward):
    """Section 2 'Measuring a gap', both directions, against an oracle written from the brief: one event booked
    (the earlier procedure, or with `forward` the later one), the other procedure checked at another instant; the
    rule is met exactly when the oracle says so, and a met rule is one this booking's check names."""
    clinic, practitioner, made = oracle_world
    if booked_at == asked_at:
        return
    with rolled_back():
        _oracle_example(clinic, practitioner, made, pair, booked_at, asked_at, forward)


def _oracle_example(clinic, practitioner, made, pair, booked_at, asked_at, forward):
    earlier, later = pair
    patient = PatientFactory(clinic=clinic)
    booked_code, asked_code = (later, earlier) if forward else (earlier, later)
    AppointmentFactory(
        patient=patient,
        clinic=clinic,
        practitioner=practitioner,
        procedure_id=booked_code,
        start_at=booked_at,
        end_at=booked_at + timedelta(minutes=15),
    )
    result = check(patient, asked_code, asked_at)
    rule_id = made[pair]
    met = [v for v in result.evaluation.violations if v.rule_id == rule_id]
    expected = (
        oracle_conflict(ORACLE_RULES[pair], asked_at, booked_at)
        if forward
        else oracle_conflict(ORACLE_RULES[pair], booked_at, asked_at)
    )
    assert bool(met) == expected, (pair, forward, booked_at.astimezone(LONDON), asked_at.astimezone(LONDON), met)


def test_twelve_months_from_29_february_is_28_february_both_ways(oracle_world):
    """Section 2: 'Months use calendar arithmetic (relativedelta)'. Filler on 29 February 2028 and a 12-month rule
    before plasma pen: plasma pen is allowed from 28 February 2029 (refused on the 27th at 23:45). The other way,
    plasma pen booked on 28 February 2029: filler on 28 or 29 February 2028 is clear (each + 12 months is 28
    February 2029); on 1 March 2028 it is refused."""
    clinic, practitioner, made = oracle_world
    patient = PatientFactory(clinic=clinic)
    filler = book(patient, "filler", ldn(2028, 2, 29, 15)).appointment
    refused = check(patient, "plasma_pen", ldn(2029, 2, 27, 23, 45))
    assert str(refused.outcome) == "refused"
    assert refused.earliest_eligible_start == ldn(2029, 2, 28, 0, 0)
    assert str(check(patient, "plasma_pen", ldn(2029, 2, 28, 0, 0)).outcome) == "confirmed"
    Appointment.objects.filter(pk=filler.pk).update(status=AppointmentStatus.CANCELLED)
    book(patient, "plasma_pen", ldn(2029, 2, 28, 9))
    assert str(check(patient, "filler", ldn(2028, 2, 28, 23, 0)).outcome) == "confirmed"
    assert str(check(patient, "filler", ldn(2028, 2, 29, 23, 0)).outcome) == "confirmed"
    assert str(check(patient, "filler", ldn(2028, 3, 1, 0, 0)).outcome) == "refused"


# =============================== Section 6: the rule book version in force =========================================


def test_a_booking_records_the_rule_book_version_it_was_checked_against_and_a_tightening_applies_at_once():
    """Section 6: 'each change makes a new version of its rule book, and every decision records the version it
    used'. A booking made before an organisation tightens Botox -> microneedling to 1 month carries the first
    version; after the change a check answers with the new version and refuses 20 days after Botox, which the
    defaults (2 weeks) allowed; the booking's audit names the version it was checked against."""
    from scheduler import rulebooks

    clinic, _ = clinic_all_hours(code="qa-audit-version")
    patient = PatientFactory(clinic=clinic)
    botox = book(patient, "botox", ldn(2026, 4, 1, 10))
    first = botox.check.rulebook_version
    assert str(check(patient, "microneedling", ldn(2026, 4, 21, 10)).outcome) == "confirmed"
    base = IntervalRule.objects.get(
        organisation__isnull=True, earlier_procedure_id="botox", later_procedure_id="microneedling"
    )
    tighter = IntervalRule(
        organisation=clinic.organisation,
        replaces=base,
        earlier_procedure_id="botox",
        later_procedure_id="microneedling",
        gap_value=1,
        gap_unit="months",
        severity="block",
        source="qa audit",
    )
    rulebooks.rule_save(rule=tighter, user=None, reason="qa audit: tighter", now=NOW)
    after = check(patient, "microneedling", ldn(2026, 4, 21, 10))
    assert str(after.outcome) == "refused"
    assert after.rulebook_version != first
    assert after.earliest_eligible_start == ldn(2026, 5, 1, 0, 0)
    [audit] = AuditEvent.objects.filter(appointment=botox.appointment, action="booked")
    assert audit.details["rulebook_version"] == first
    later = book(patient, "microneedling", ldn(2026, 5, 1, 10))
    [audit] = AuditEvent.objects.filter(appointment=later.appointment, action="booked")
    assert audit.details["rulebook_version"] == after.rulebook_version


# =============================== Section 4: reminder timing and quiet hours ======================================


def quiet(instant: datetime) -> bool:
    clock = instant.astimezone(LONDON).time()
    return clock >= time(21) or clock < time(8)


def walk_back(instant: datetime) -> datetime:
    while quiet(instant):
        instant -= timedelta(minutes=1)
    return instant


def walk_on(instant: datetime) -> datetime:
    while quiet(instant):
        instant += timedelta(minutes=1)
    return instant


@pytest.fixture
def texting_world(care_texts, settings):
    settings.REMINDERS_SMS_QUIET_HOURS = ("21:00", "08:00")
    clinic, practitioner = clinic_all_hours(code="qa-audit-sms")
    return clinic


# 20 March to 5 April 2026: the London spring change (29 March) inside.
MOMENT0 = datetime(2026, 3, 20, 0, 0, tzinfo=UTC)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    booked_q=st.integers(0, 4 * 24 * 10),
    lead_q=st.integers(1, 4 * 24 * 3),
    done_after_q=st.integers(0, 4 * 14),
)
def test_sms_due_times_are_the_nearest_allowed_minute_on_the_right_side(texting_world, booked_q, lead_q, done_after_q):
    """Section 4: 'no SMS between 21:00 and 08:00 local: a message that falls there moves to the nearest allowed
    moment that still comes before the moment it warns about (a pre-care note moves earlier, never later)';
    docs/reminders.md: late care instructions go at once (at 08:00 if that is quiet), post-care moves later. A
    microneedling booked at a random moment for a random start up to three days on, then completed up to 14 h
    after its start: every SMS row that is to go is outside quiet hours; the pre-care and the day-before reminder
    go before the start, at the nearest allowed minute at or before their time (or, when that has passed, the
    first allowed minute from the booking); each post-care text at the first allowed minute at or after its
    time; e-mail keeps the nominal time."""
    with rolled_back():
        _texting_example(texting_world, booked_q, lead_q, done_after_q)


def _texting_example(clinic, booked_q, lead_q, done_after_q):
    now = MOMENT0 + timedelta(minutes=15 * booked_q)
    start = now + timedelta(minutes=15 * lead_q)
    if start.astimezone(LONDON).time() > time(23, 30):
        return  # the practitioner's day ends at 23:59
    patient = PatientFactory(clinic=clinic, reminder_channels=["email", "sms"], sms_consent=True)
    appointment = book(patient, "microneedling", start, now=now, end_at=start + timedelta(minutes=15)).appointment
    problems = []
    for row in OutboxMessage.objects.filter(appointment=appointment).exclude(channel="webhook"):
        key = row.template.default_key if row.template else row.kind
        if key not in ("microneedling-pre-care-24h", "day-before-reminder"):
            continue
        if key == "microneedling-pre-care-24h":
            nominal = start - timedelta(hours=24)
        else:
            local = start.astimezone(LONDON)
            nominal = datetime.combine(local.date() - timedelta(days=1), local.time(), tzinfo=LONDON)
            nominal = min(
                nominal.replace(fold=0).astimezone(UTC), nominal.replace(fold=1).astimezone(UTC)
            )  # a day-before reading the clocks skip or repeat: the earlier one
        if row.channel == "email":
            if nominal >= now and row.due_at != nominal:
                problems.append((key, "email", row.due_at, nominal))
            continue
        if row.status == "skipped":
            if nominal >= now and walk_back(nominal) >= now:
                problems.append((key, "skipped though a moment was left", nominal))
            elif walk_on(now) < start and key == "microneedling-pre-care-24h":
                problems.append((key, "late pre-care skipped though 08:00 comes before the start", now))
            continue
        if quiet(row.due_at) or row.due_at >= start:
            problems.append((key, "quiet or after start", row.due_at.astimezone(LONDON)))
            continue
        if nominal >= now and walk_back(nominal) >= now:
            want = walk_back(nominal)
        else:
            want = walk_on(now)
        if row.due_at != want:
            problems.append((key, "not nearest", row.due_at.astimezone(LONDON), want.astimezone(LONDON)))
    done = start + timedelta(minutes=15 * done_after_q)
    appointment_complete(appointment=appointment, actor=CLINICIAN, now=done)
    for row in OutboxMessage.objects.filter(appointment=appointment, kind="post_care", channel="sms"):
        if quiet(row.due_at) or row.due_at < done:
            problems.append((row.template.default_key, "post-care quiet or before completion", row.due_at))
            continue
        key = row.template.default_key
        if key == "microneedling-post-care-7d":
            local = done.astimezone(LONDON)
            nominal = datetime.combine(local.date() + timedelta(days=7), local.time(), tzinfo=LONDON)
        else:
            nominal = done + timedelta(hours=48 if key == "microneedling-post-care-48h" else 0)
        if row.due_at != walk_on(nominal.astimezone(UTC)):
            problems.append((key, "post-care not at the first allowed minute", row.due_at, nominal))
    assert problems == []


def test_post_care_is_anchored_to_the_completion_not_the_start():
    """Section 4: 'post-care to its completion (when it is marked done)'. Booked at 10:00, marked done at 13:40:
    the completion note goes at 13:40, the 48 h one at 13:40 two days on, the 7-day one at 13:40 a week on
    (e-mail, London, no clock change)."""
    from reminders.defaults import care_texts_load

    care_texts_load()
    clinic, _ = clinic_all_hours(code="qa-audit-post")
    patient = PatientFactory(clinic=clinic, reminder_channels=["email"])
    appointment = book(patient, "microneedling", ldn(2026, 4, 14, 10)).appointment
    done = ldn(2026, 4, 14, 13, 40)
    appointment_complete(appointment=appointment, actor=CLINICIAN, now=done)
    due = {
        row.template.default_key: row.due_at
        for row in OutboxMessage.objects.filter(appointment=appointment, kind="post_care", channel="email")
    }
    assert due == {
        "microneedling-post-care-completion": done,
        "microneedling-post-care-48h": done + timedelta(hours=48),
        "microneedling-post-care-7d": ldn(2026, 4, 21, 13, 40),
    }


def test_the_engine_supports_a_same_procedure_repeat_rule_looking_both_ways():
    """Section 2: 'A rule also bounds same-procedure repeats when earlier == later (the engine must support it)'.
    A 2-week microneedling repeat block, pure engine: a microneedling done on 1 May forbids 2-14 May and allows
    15 May; one booked on 15 May forbids 2-14 May the other way too, and allows 1 May."""
    rule = rules.IntervalRule("r", "microneedling", 2, "weeks", earlier_procedure="microneedling")
    book_ = rules.RuleBook([rule])
    done = rules.ProcedureEvent("d", "microneedling", ldn(2026, 5, 1, 16))
    tl = rules.Timeline([done])
    assert rules.evaluate(tl, book_, rules.Proposal("microneedling", ldn(2026, 5, 14, 23, 59)), LONDON).blocking
    assert not rules.evaluate(tl, book_, rules.Proposal("microneedling", ldn(2026, 5, 15, 0, 0)), LONDON).blocking
    ahead = rules.ProcedureEvent("b", "microneedling", ldn(2026, 5, 15, 9), state=rules.EventState.BOOKED)
    tl = rules.Timeline([ahead])
    assert rules.evaluate(tl, book_, rules.Proposal("microneedling", ldn(2026, 5, 2, 0, 0)), LONDON).blocking
    assert not rules.evaluate(tl, book_, rules.Proposal("microneedling", ldn(2026, 5, 1, 23, 45)), LONDON).blocking


def test_unsourced_texts_and_repeat_rules_ship_marked_as_clinic_practice(care_texts):
    """Section 4: 'Botox, filler and plasma pen care texts are not in the sources: ship them as clearly marked,
    editable clinic templates'; section 6: the repeat gaps ship 'as clearly marked, editable clinic defaults of
    severity warn (never as sourced rules)'; section 2: every sourced default names its source (000 or 001)."""
    from reminders.models import ReminderTemplate

    for template in ReminderTemplate.objects.filter(default_key__regex=r"^(botox|filler|plasma-pen)-"):
        assert template.origin == "clinic", template.default_key
        assert "[00" not in template.source, template.default_key
    for template in ReminderTemplate.objects.filter(default_key__startswith="microneedling-"):
        assert template.origin == "sourced" and "[001]" in template.source, template.default_key
    for rule in IntervalRule.objects.filter(organisation__isnull=True):
        if rule.earlier_procedure_id and rule.earlier_procedure_id == rule.later_procedure_id:
            assert (rule.basis, rule.severity) == ("practice", "warn"), rule.default_key
        else:
            assert rule.basis == "sourced", rule.default_key
            assert ("[000]" in rule.source) or ("[001]" in rule.source), rule.default_key


def test_an_sms_only_patient_gets_the_aftercare_itself_not_a_pointer_to_an_email_never_sent(
    care_texts, message_outboxes, clock
):
    """Section 4 and 5: patients receive care reminders 'by email and/or SMS, per their consent'; at completion the
    microneedling post-care says, among others, 'no direct sun for 2 days, wear a hat' (001). A patient who chose
    text messages only (no e-mail channel) is completed at 11:00: the aftercare text she gets must not send her to
    an e-mail she will never receive, and must carry the sun rule itself (as the pre-care text does when e-mail is
    off)."""
    import time_machine

    from reminders.dispatch import dispatch_local
    from tests.qa.helpers import texts

    clinic, _ = clinic_all_hours(code="qa-audit-sms-only")
    patient = PatientFactory(
        clinic=clinic, email="", reminder_channels=["sms"], sms_consent=True, phone="+447911123999"
    )
    # One who takes both: her text may point to the e-mail she is sent.
    both = PatientFactory(clinic=clinic, reminder_channels=["email", "sms"], sms_consent=True, phone="+447911123998")
    appointment = book(patient, "microneedling", ldn(2026, 3, 10, 10)).appointment
    other = book(both, "microneedling", ldn(2026, 3, 10, 12)).appointment
    done = ldn(2026, 3, 10, 13)
    with time_machine.travel(done, tick=False):
        appointment_complete(appointment=appointment, actor=CLINICIAN, now=done)
        appointment_complete(appointment=other, actor=CLINICIAN, now=done)
        dispatch_local(now=done)
    [aftercare] = [t for t in texts() if "aftercare" in t and "Full instructions" not in t]
    assert "e-mail" not in aftercare
    assert "No direct sun for 2 days (wear a hat)" in aftercare and "sauna" in aftercare
    [pointer] = [t for t in texts() if "aftercare" in t and "Full instructions are in our e-mail" in t]
    assert "sun" not in pointer
