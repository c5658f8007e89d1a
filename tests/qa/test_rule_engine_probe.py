"""The clinical rule engine through the booking services, probed from outside (QA, domain brief sections 1-5).

What tests/qa/test_rule_semantics_sweep.py already pins (custom 1-month botox rule at month ends, Sydney and
New York local dates, a 48 h rule across fall-back, needs_review counting, the service agreeing with the
engine) is not repeated. This file goes after the rest: every shipped default at its exact boundary in both
directions, medication courses measured from their end (month ends, leap years, ongoing courses),
contraindications by severity, status and area, what counts (cancelled, no-show, completed), rescheduling,
reported days, zones whose clocks change at midnight, and two Hypothesis properties at the service layer
(the earliest eligible start is the first allowed minute; a check answers exactly what booking does,
whichever of two bookings comes first).
"""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from clinic.models import Appointment, AppointmentStatus, ProcedureRecord, WorkingHours
from clinic.services import (
    IntakeLine,
    conditions_replace,
    medication_course_add,
    medication_course_end,
    procedure_record_add,
)
from core.errors import InvalidInput
from scheduler import rules
from scheduler.booking import (
    Actor,
    UnableToBook,
    appointment_book,
    appointment_cancel,
    appointment_check,
    appointment_complete,
    appointment_mark_no_show,
    appointment_reschedule,
    appointment_reschedule_check,
)
from scheduler.models import ContraindicationRule, IntervalRule
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import LONDON, at, org_rule

RECEPTION = Actor("qa-reception@test")
CLINICIAN = Actor("qa-clinician@test", clinical=True)
ONE_MINUTE = timedelta(minutes=1)

pytestmark = pytest.mark.usefixtures("catalogue")


# --- helpers ---------------------------------------------------------------------------------------------


def midnight(tz, day: date) -> datetime:
    """The first instant of a local day (fold=0 is the first midnight, or the end of a gap at midnight)."""
    return datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)


def clinic_in(tz_name, code, *, all_day=False):
    clinic = ClinicFactory(code=code, timezone=tz_name)
    practitioner = PractitionerFactory(clinic=clinic, name=f"Dr {code}", hours=list(range(7)))
    if all_day:
        WorkingHours.objects.filter(practitioner=practitioner).update(start_time=time(0, 0), end_time=time(23, 59))
    return clinic


def book(patient, code, when, now, **kwargs):
    return appointment_book(patient=patient, procedure_code=code, start_at=when, actor=RECEPTION, now=now, **kwargs)


def check(patient, code, when, now, **kwargs):
    return appointment_check(patient=patient, procedure_code=code, start_at=when, now=now, **kwargs)


def key_of(violation) -> str:
    """The shipped default's key of a violation's rule (or the rule's own id for an organisation's rule)."""
    model = IntervalRule if violation.kind == "interval" else ContraindicationRule
    rule = model.objects.get(pk=violation.rule_id)
    return rule.default_key or f"org:{rule.pk}"


def blocking_keys(result) -> set[str]:
    return {key_of(v) for v in result.evaluation.blocking}


def warning_keys(result) -> set[str]:
    return {key_of(v) for v in result.evaluation.warnings}


def clearance_keys(result) -> set[str]:
    return {key_of(v) for v in result.evaluation.needs_clearance}


# The five sourced block rules between procedures (brief section 2), with their gaps in days.
BLOCK_RULES = [
    ("botox", "microneedling", 14, "botox-then-microneedling"),
    ("filler", "microneedling", 28, "filler-then-microneedling"),
    ("microneedling", "botox", 21, "microneedling-then-botox"),
    ("microneedling", "filler", 21, "microneedling-then-filler"),
    ("microneedling", "plasma_pen", 7, "microneedling-then-plasma-pen-block"),
]


# --- every default interval rule, both directions, at its exact boundary ---------------------------------


@pytest.mark.parametrize("earlier, later, days, key", BLOCK_RULES)
def test_each_default_block_rule_looking_back_refuses_to_the_last_minute_of_the_day_before(
    now, earlier, later, days, key
):
    """Brief 2: "booking `later` looks back at past and booked `earlier` events"; the later event's local
    date "must be on or after the earlier event's local date plus the gap"; "Every refusal says which rule,
    which event it conflicts with, and the earliest start". Earlier booked Wed 15 April 2026 16:00 BST: the
    later one is refused at 23:59 on the day before date+gap (naming the rule and the appointment, with
    the earliest start = local midnight of date+gap), and the rule is silent from that midnight on."""
    clinic = clinic_in("Europe/London", f"qa-back-{key}")
    patient = PatientFactory(clinic=clinic)
    first = book(patient, earlier, at(LONDON, 2026, 4, 15, 16), now).appointment
    allowed_day = date(2026, 4, 15) + timedelta(days=days)

    refused = check(patient, later, at(LONDON, *(allowed_day - timedelta(days=1)).timetuple()[:3], 23, 59), now)
    mine = [v for v in refused.evaluation.blocking if key_of(v) == key]
    assert len(mine) == 1, [v.message for v in refused.evaluation.violations]
    assert mine[0].code == rules.ViolationCode.TOO_SOON_AFTER
    assert mine[0].conflicts_with.id == str(first.pk)
    assert mine[0].earliest_allowed == midnight(LONDON, allowed_day)
    assert refused.earliest_eligible_start == midnight(LONDON, allowed_day)
    assert f"{allowed_day.day} {allowed_day:%B %Y}" in mine[0].message
    assert "15 April 2026 16:00" in mine[0].message  # "shown in the clinic's zone" (BST), not 15:00 UTC

    at_midnight = check(patient, later, midnight(LONDON, allowed_day), now)
    assert key not in blocking_keys(at_midnight)
    assert not at_midnight.evaluation.blocking


@pytest.mark.parametrize("earlier, later, days, key", BLOCK_RULES)
def test_each_default_block_rule_looking_forward_at_a_booked_later_procedure(now, earlier, later, days, key):
    """Brief 2: "booking `earlier` looks forward at booked `later` events that it would make too close".
    The later procedure booked Wed 17 June 2026 10:00 BST: the earlier one is allowed up to 23:59 on
    date-gap (its date + gap is that day) and refused from 00:00 the next day, naming the booked one."""
    clinic = clinic_in("Europe/London", f"qa-fwd-{key}")
    patient = PatientFactory(clinic=clinic)
    booked_later = book(patient, later, at(LONDON, 2026, 6, 17, 10), now).appointment
    last_day = date(2026, 6, 17) - timedelta(days=days)

    fine = check(patient, earlier, at(LONDON, last_day.year, last_day.month, last_day.day, 23, 59), now)
    assert key not in blocking_keys(fine), [v.message for v in fine.evaluation.blocking]

    too_close = check(patient, earlier, midnight(LONDON, last_day + timedelta(days=1)), now)
    mine = [v for v in too_close.evaluation.blocking if key_of(v) == key]
    assert len(mine) == 1
    assert mine[0].code == rules.ViolationCode.TOO_CLOSE_BEFORE
    assert mine[0].conflicts_with.id == str(booked_later.pk)
    with pytest.raises(UnableToBook):
        book(patient, earlier, at(LONDON, *(last_day + timedelta(days=1)).timetuple()[:3], 10), now)


def test_plasma_pen_is_refused_before_7_days_and_only_warned_before_10(now):
    """Brief 2: microneedling -> plasma pen "block at 7 days, warn before 10 days"; docs/rules.md:
    "Warnings and relative contraindications do not move the earliest eligible start" and warnings "never
    refuse". Microneedling reported done on 25 Feb 2026: plasma pen on 3 March (day 6) is refused with the
    earliest start 4 March 00:00 (day 7, not day 10); on 5 March it books, confirmed, with the warning; on
    7 March (day 10) there is no warning at all."""
    clinic = clinic_in("Europe/London", "qa-plasma")
    patient = PatientFactory(clinic=clinic)
    procedure_record_add(patient=patient, procedure_code="microneedling", now=now, performed_on=date(2026, 2, 25))

    refused = check(patient, "plasma_pen", at(LONDON, 2026, 3, 3, 17), now)
    assert blocking_keys(refused) == {"microneedling-then-plasma-pen-block"}
    assert refused.earliest_eligible_start == midnight(LONDON, date(2026, 3, 4))

    booked = book(patient, "plasma_pen", at(LONDON, 2026, 3, 5, 10), now)
    assert booked.appointment.status == AppointmentStatus.CONFIRMED
    assert warning_keys(booked.check) == {"microneedling-then-plasma-pen-warn"}

    day_ten = check(patient, "plasma_pen", midnight(LONDON, date(2026, 3, 7)), now)
    assert "microneedling-then-plasma-pen-warn" not in warning_keys(day_ten)
    day_nine = check(patient, "plasma_pen", at(LONDON, 2026, 3, 6, 23, 59), now)
    assert "microneedling-then-plasma-pen-warn" in warning_keys(day_nine)


# --- medication courses: measured from the end, month ends, leap years, ongoing -----------------------------


@pytest.mark.parametrize(
    "ended, block_until, warn_until",
    [
        (date(2026, 8, 31), date(2027, 2, 28), date(2027, 8, 31)),  # 31 Aug + 6 months = 28 Feb
        (date(2027, 8, 31), date(2028, 2, 29), date(2028, 8, 31)),  # ... 29 in a leap year
        (date(2027, 2, 28), date(2027, 8, 28), date(2028, 2, 28)),  # 28 Feb + 12 months in a leap year: 28 Feb
    ],
)
def test_isotretinoin_gaps_count_calendar_months_from_the_end_of_the_course(now, ended, block_until, warn_until):
    """Brief 2: "isotretinoin course end -> microneedling 6 months block, 12 months warn; -> filler 12 months
    warn"; "Months use calendar arithmetic (dateutil.relativedelta): 31 August + 6 months = 28 February (29 in
    a leap year)". Microneedling is refused at 23:59 on the day before end+6 months, with that day's midnight
    as the earliest start; from then it is allowed but warned until end+12 months. Filler is never refused,
    only warned, to the same day."""
    clinic = clinic_in("Europe/London", f"qa-iso-{ended:%Y%m%d}")
    patient = PatientFactory(clinic=clinic)
    course = medication_course_add(
        patient=patient, drug_code="isotretinoin", started_on=date(2026, 3, 1), ended_on=ended, now=now
    )
    day_before = block_until - timedelta(days=1)

    refused = check(patient, "microneedling", at(LONDON, *day_before.timetuple()[:3], 23, 59), now)
    assert blocking_keys(refused) == {"isotretinoin-then-microneedling-block"}
    assert refused.evaluation.blocking[0].conflicts_with.id == str(course.pk)
    assert refused.earliest_eligible_start == midnight(LONDON, block_until)

    first = check(patient, "microneedling", midnight(LONDON, block_until), now)
    assert not first.evaluation.blocking
    assert warning_keys(first) == {"isotretinoin-then-microneedling-warn"}
    last_warned = warn_until - timedelta(days=1)
    assert warning_keys(check(patient, "microneedling", at(LONDON, *last_warned.timetuple()[:3], 23, 59), now)) == {
        "isotretinoin-then-microneedling-warn"
    }
    assert not check(patient, "microneedling", midnight(LONDON, warn_until), now).evaluation.violations

    filler_warned = check(patient, "filler", at(LONDON, *last_warned.timetuple()[:3], 23, 59), now)
    assert not filler_warned.evaluation.blocking
    assert warning_keys(filler_warned) == {"isotretinoin-then-filler-warn"}
    assert "isotretinoin-then-filler-warn" not in warning_keys(
        check(patient, "filler", midnight(LONDON, warn_until), now)
    )


def test_an_ongoing_isotretinoin_course_blocks_every_date_until_its_end_is_recorded(now):
    """Brief 2: "A course that has not ended blocks every date (or warns on every date); the earliest
    eligible start is then unknown (null) until its end date is recorded." api-contract: next_available_slot
    null too. Microneedling five years out is refused with no date, booking it stores nothing; filler books
    (warned); Botox is untouched. Once the end (10 March 2026) is recorded, the earliest date is 10 Sep 2026,
    local midnight (BST: 9 Sep 23:00 UTC)."""
    clinic = clinic_in("Europe/London", "qa-iso-open")
    patient = PatientFactory(clinic=clinic)
    course = medication_course_add(patient=patient, drug_code="isotretinoin", started_on=date(2026, 1, 5), now=now)

    far = check(patient, "microneedling", at(LONDON, 2031, 6, 4, 10), now)
    assert blocking_keys(far) == {"isotretinoin-then-microneedling-block"}
    assert far.evaluation.blocking[0].code == rules.ViolationCode.COURSE_ONGOING
    assert far.earliest_eligible_start is None
    assert far.next_available_slot is None
    with pytest.raises(UnableToBook):
        book(patient, "microneedling", at(LONDON, 2026, 3, 4, 10), now)
    assert not Appointment.objects.filter(patient=patient).exists()

    filler = book(patient, "filler", at(LONDON, 2026, 3, 4, 10), now)
    assert filler.appointment.status == AppointmentStatus.CONFIRMED
    assert warning_keys(filler.check) == {"isotretinoin-then-filler-warn"}
    assert not check(patient, "botox", at(LONDON, 2026, 3, 5, 10), now).evaluation.violations

    medication_course_end(course=course, ended_on=date(2026, 3, 10), now=now)
    after_end = check(patient, "microneedling", at(LONDON, 2026, 3, 11, 10), now)
    assert after_end.earliest_eligible_start == datetime(2026, 9, 9, 23, 0, tzinfo=UTC)
    assert after_end.next_available_slot is not None
    assert after_end.next_available_slot.start_at >= after_end.earliest_eligible_start


def test_a_medication_contraindication_covers_its_days_absolute_for_microneedling_relative_for_filler(now):
    """Brief 3: anticoagulant therapy (ongoing course) is absolute for microneedling and relative for filler;
    docs/rules.md: "A medication contraindication with a recorded end gives an earliest date (the day after
    the end)". A course 1 Feb - 10 Mar 2026: microneedling at 23:59 on 10 March is refused with the earliest
    start 11 March 00:00; filler that day is booked pending clearance with its earliest start unmoved; both
    are confirmed-clean from 11 March."""
    clinic = clinic_in("Europe/London", "qa-anticoag")
    patient = PatientFactory(clinic=clinic)
    medication_course_add(
        patient=patient, drug_code="anticoagulant", started_on=date(2026, 2, 1), ended_on=date(2026, 3, 10), now=now
    )

    refused = check(patient, "microneedling", at(LONDON, 2026, 3, 10, 23, 59), now)
    assert blocking_keys(refused) == {"microneedling-anticoagulant"}
    assert refused.earliest_eligible_start == midnight(LONDON, date(2026, 3, 11))
    assert not check(patient, "microneedling", midnight(LONDON, date(2026, 3, 11)), now).evaluation.violations

    filler = book(patient, "filler", at(LONDON, 2026, 3, 10, 10), now)
    assert filler.appointment.status == AppointmentStatus.PENDING_CLEARANCE
    assert clearance_keys(filler.check) == {"filler-anticoagulant"}
    assert filler.check.earliest_eligible_start == at(LONDON, 2026, 3, 10, 10)
    later = book(patient, "filler", at(LONDON, 2026, 3, 11, 10), now)
    assert later.appointment.status == AppointmentStatus.CONFIRMED


def test_an_ongoing_immunosuppressant_course_starting_later_rules_microneedling_out_from_its_first_day(now):
    """Brief 3: "immune suppression (condition or immunosuppressive medication)" is absolute for
    microneedling; an ongoing course has no end, so no earliest date. A course recorded to start on
    20 March 2026: microneedling at 00:00 that day is refused with no earliest date."""
    clinic = clinic_in("Europe/London", "qa-immuno")
    patient = PatientFactory(clinic=clinic)
    medication_course_add(patient=patient, drug_code="immunosuppressant", started_on=date(2026, 3, 20), now=now)

    refused = check(patient, "microneedling", midnight(LONDON, date(2026, 3, 20)), now)
    assert blocking_keys(refused) == {"microneedling-immunosuppressant"}
    assert refused.earliest_eligible_start is None
    assert refused.next_available_slot is None
    assert not check(patient, "botox", at(LONDON, 2026, 3, 25, 10), now).evaluation.violations


# --- contraindications by severity, status and area ----------------------------------------------------------


@pytest.mark.parametrize(
    "condition, status, procedure, outcome, key",
    [
        ("scleroderma", "history", "microneedling", "refused", "microneedling-scleroderma"),
        ("cardiac_abnormality", "active", "microneedling", "refused", "microneedling-cardiac_abnormality"),
        ("clotting_disorder", "history", "filler", "pending_clearance", "filler-clotting_disorder"),
        ("skin_infection", "active", "filler", "refused", "filler-skin_infection"),
        ("skin_infection", "history", "microneedling", "confirmed", None),  # active only
        ("open_wound", "history", "microneedling", "confirmed", None),  # active only
        ("active_acne", "history", "microneedling", "confirmed", None),  # active only
        ("active_acne", "active", "microneedling", "pending_clearance", "microneedling-active_acne"),
        ("eczema", "history", "microneedling", "pending_clearance", "microneedling-eczema"),  # "eczema (history)"
        ("keloid_scarring", "history", "filler", "pending_clearance", "filler-keloid_scarring"),
        ("pregnancy", "active", "microneedling", "pending_clearance", "microneedling-pregnancy"),
        ("filler_allergy", "history", "filler", "refused", "filler-filler_allergy"),
        ("psoriasis", "active", "botox", "confirmed", None),  # botox has no contraindications
        ("scleroderma", "active", "plasma_pen", "confirmed", None),  # nor does plasma pen
        ("filler_allergy", "active", "microneedling", "confirmed", None),  # a filler-only rule
    ],
)
def test_contraindication_severity_decides_refused_pending_or_confirmed(
    now, condition, status, procedure, outcome, key
):
    """Brief 3: "absolute = the booking is refused; relative = the booking is held as pending clearance";
    docs/rules.md "counts when": active-only conditions ignore history lines, "history of" ones count
    either way; Botox and plasma pen have none. A refusal stores nothing and has no earliest date (a
    condition has no end)."""
    clinic = clinic_in("Europe/London", f"qa-ci-{condition}-{status}-{procedure}")
    patient = PatientFactory(clinic=clinic)
    conditions_replace(patient=patient, lines=[IntakeLine(condition, status)], now=now)
    when = at(LONDON, 2026, 3, 4, 10)

    result = check(patient, procedure, when, now)
    assert result.outcome == outcome, [v.message for v in result.evaluation.violations]
    if outcome == "refused":
        assert blocking_keys(result) == {key}
        assert result.earliest_eligible_start is None
        assert result.next_available_slot is None
        with pytest.raises(UnableToBook):
            book(patient, procedure, when, now)
        assert not Appointment.objects.filter(patient=patient).exists()
    else:
        booked = book(patient, procedure, when, now).appointment
        assert booked.status == outcome
        assert clearance_keys(result) == ({key} if key else set())
        assert result.earliest_eligible_start == when


@pytest.mark.parametrize(
    "tattoo_area, booking_area, expected",
    [
        ("hands", "face", "confirmed"),
        ("hands", "hands", "pending_clearance"),
        ("hands", None, "pending_clearance"),  # unknown booking area: the safer reading
        (None, "face", "pending_clearance"),  # tattoo with no area recorded: the safer reading
    ],
)
def test_a_tattoo_counts_only_in_the_treated_area(now, tattoo_area, booking_area, expected):
    """Brief 3: "tattoo or permanent makeup in the treatment area | relative, area-specific"; docs/rules.md:
    "only an entry recorded for the area being treated, or with no area recorded (the safer reading)", and
    unknown areas count as the same area."""
    clinic = clinic_in("Europe/London", f"qa-tattoo-{tattoo_area}-{booking_area}")
    patient = PatientFactory(clinic=clinic)
    conditions_replace(patient=patient, lines=[IntakeLine("tattoo_in_area", "history", tattoo_area)], now=now)

    booked = book(patient, "microneedling", at(LONDON, 2026, 3, 4, 10), now, area_code=booking_area)
    assert booked.appointment.status == expected
    assert clearance_keys(booked.check) == (
        {"microneedling-tattoo_in_area"} if expected == "pending_clearance" else set()
    )


def test_a_condition_that_is_not_area_specific_counts_whatever_its_area(now):
    """Brief 3: only the tattoo line is "area-specific"; eczema is relative for microneedling wherever it
    is. Eczema recorded on the hands: microneedling on the face is still held for clearance, and a tattoo
    on the face beside it adds its own rule."""
    clinic = clinic_in("Europe/London", "qa-eczema-area")
    patient = PatientFactory(clinic=clinic)
    conditions_replace(
        patient=patient,
        lines=[IntakeLine("eczema", "active", "hands"), IntakeLine("tattoo_in_area", "active", "face")],
        now=now,
    )

    on_face = book(patient, "microneedling", at(LONDON, 2026, 3, 4, 10), now, area_code="face")
    assert on_face.appointment.status == AppointmentStatus.PENDING_CLEARANCE
    assert clearance_keys(on_face.check) == {"microneedling-eczema", "microneedling-tattoo_in_area"}
    on_body = check(patient, "microneedling", at(LONDON, 2026, 3, 5, 10), now, area_code="body")
    assert clearance_keys(on_body) == {"microneedling-eczema"}


def test_default_rules_apply_across_areas_and_a_same_area_rule_only_within_one(now):
    """Brief 2: "default rules apply to any treatment area ... A rule may be narrowed to the same area";
    docs/rules.md: a same-area rule "also applies when either area is unknown". Botox on the face 10 March:
    microneedling on the hands 20 March is refused (default, any area); an organisation's same-area
    botox->filler 2-week rule refuses filler on the face or with no area, not on the hands."""
    clinic = clinic_in("Europe/London", "qa-areas")
    patient = PatientFactory(clinic=clinic)
    org_rule(patient, "botox", "filler", 2, "weeks", scope="same_area")
    book(patient, "botox", at(LONDON, 2026, 3, 10, 10), now, area_code="face")

    assert "botox-then-microneedling" in blocking_keys(
        check(patient, "microneedling", at(LONDON, 2026, 3, 20, 10), now, area_code="hands")
    )
    assert not check(patient, "filler", at(LONDON, 2026, 3, 12, 10), now, area_code="hands").evaluation.blocking
    assert check(patient, "filler", at(LONDON, 2026, 3, 12, 10), now, area_code="face").evaluation.blocking
    assert check(patient, "filler", at(LONDON, 2026, 3, 12, 10), now).evaluation.blocking


# --- what counts: cancelled, no-show, completed, rescheduled ---------------------------------------------------


def test_cancelling_frees_both_directions_and_a_no_show_frees_what_comes_after(now):
    """Brief 1: the timeline holds "booked appointments that are not cancelled"; brief 2: "cancelling
    frees"; docs/rules.md: "Cancelled and no-show appointments do not count". Botox 10 March blocks
    microneedling on 20 March until it is cancelled; microneedling booked 20 April blocks Botox on 10 April
    (looking forward) until it is cancelled; a Botox marked no-show blocks nothing afterwards."""
    clinic = clinic_in("Europe/London", "qa-void")
    patient = PatientFactory(clinic=clinic)
    botox = book(patient, "botox", at(LONDON, 2026, 3, 10, 10), now).appointment
    assert "botox-then-microneedling" in blocking_keys(check(patient, "microneedling", at(LONDON, 2026, 3, 20), now))
    appointment_cancel(appointment=botox, actor=RECEPTION, now=now)
    assert not check(patient, "microneedling", at(LONDON, 2026, 3, 20), now).evaluation.violations

    micro = book(patient, "microneedling", at(LONDON, 2026, 4, 20, 10), now).appointment
    assert "botox-then-microneedling" in blocking_keys(check(patient, "botox", at(LONDON, 2026, 4, 10), now))
    appointment_cancel(appointment=micro, actor=RECEPTION, now=now)
    assert not check(patient, "botox", at(LONDON, 2026, 4, 10), now).evaluation.violations

    missed = book(patient, "botox", at(LONDON, 2026, 3, 3, 10), now).appointment
    later_now = at(LONDON, 2026, 3, 3, 11)
    assert blocking_keys(check(patient, "microneedling", at(LONDON, 2026, 3, 5), later_now)) == {
        "botox-then-microneedling"
    }
    appointment_mark_no_show(appointment=missed, actor=CLINICIAN, now=later_now)
    assert not check(patient, "microneedling", at(LONDON, 2026, 3, 5), later_now).evaluation.violations


def test_a_completed_appointment_counts_once_from_its_start_day(now):
    """Brief 1: the timeline holds "completed procedures"; docs/rules.md: "A completed appointment counts
    once: through the history record written at completion." Botox booked 3 March 10:00 and completed at
    11:00: microneedling is refused until 17 March, by ONE violation naming the history record."""
    clinic = clinic_in("Europe/London", "qa-done")
    patient = PatientFactory(clinic=clinic)
    botox = book(patient, "botox", at(LONDON, 2026, 3, 3, 10), now).appointment
    later_now = at(LONDON, 2026, 3, 3, 11)
    appointment_complete(appointment=botox, actor=CLINICIAN, now=later_now)
    record = ProcedureRecord.objects.get(appointment=botox)

    refused = check(patient, "microneedling", at(LONDON, 2026, 3, 16, 23, 59), later_now)
    assert len(refused.evaluation.blocking) == 1, [v.message for v in refused.evaluation.blocking]
    assert refused.evaluation.blocking[0].conflicts_with.id == str(record.pk)
    assert refused.earliest_eligible_start == midnight(LONDON, date(2026, 3, 17))


def test_a_reschedule_is_never_its_own_repeat_and_is_rechecked_against_the_others(now):
    """Brief 2: "Rescheduling re-checks"; docs/rules.md: "an appointment is never its own repeat (a
    reschedule leaves itself out)" (microneedling-repeat: 4 weeks, warn). Moving a microneedling by a day
    warns of nothing; moving it within 3 weeks before a booked Botox is refused and leaves it where it was;
    another microneedling 3 weeks after the moved one warns against the moved one."""
    clinic = clinic_in("Europe/London", "qa-move")
    patient = PatientFactory(clinic=clinic)
    micro = book(patient, "microneedling", at(LONDON, 2026, 3, 10, 10), now).appointment
    book(patient, "botox", at(LONDON, 2026, 4, 20, 10), now)

    dry = appointment_reschedule_check(appointment=micro, start_at=at(LONDON, 2026, 3, 11, 10), now=now)
    assert dry.eligible and not dry.evaluation.violations, [v.message for v in dry.evaluation.violations]
    moved = appointment_reschedule(appointment=micro, start_at=at(LONDON, 2026, 3, 11, 10), actor=RECEPTION, now=now)
    assert not moved.check.evaluation.violations

    with pytest.raises(UnableToBook) as refused:
        appointment_reschedule(appointment=micro, start_at=at(LONDON, 2026, 4, 1, 10), actor=RECEPTION, now=now)
    assert blocking_keys(refused.value.check) == {"microneedling-then-botox"}
    micro.refresh_from_db()
    assert micro.start_at == at(LONDON, 2026, 3, 11, 10)

    again = check(patient, "microneedling", at(LONDON, 2026, 4, 1, 10), now)
    repeat = [v for v in again.evaluation.warnings if key_of(v) == "microneedling-repeat"]
    assert [v.conflicts_with.id for v in repeat] == [str(micro.pk)]


def test_a_relative_contraindication_holds_a_booking_until_a_clinician_clears_it_and_a_move_rechecks_it(now):
    """Brief 3: "relative = the booking is held as *pending clearance* until a clinician records a clearance
    with a reason (audited)"; brief 2: "Rescheduling re-checks". Filler on 5 March during an anticoagulant
    course (to 10 March) is pending; a receptionist cannot clear it, a clinician cannot without a reason,
    and with one it is confirmed and audited. A confirmed filler on 20 March moved into the course goes back
    to pending clearance; moved out of it again, it is confirmed."""
    from clinic.models import AuditAction, AuditEvent
    from core.errors import NotAllowed
    from scheduler.booking import appointment_clear

    clinic = clinic_in("Europe/London", "qa-clear")
    patient = PatientFactory(clinic=clinic)
    medication_course_add(
        patient=patient, drug_code="anticoagulant", started_on=date(2026, 2, 1), ended_on=date(2026, 3, 10), now=now
    )
    held = book(patient, "filler", at(LONDON, 2026, 3, 5, 10), now).appointment
    assert held.status == AppointmentStatus.PENDING_CLEARANCE

    with pytest.raises(NotAllowed):
        appointment_clear(appointment=held, actor=RECEPTION, now=now, reason="seen the GP letter")
    with pytest.raises(InvalidInput):
        appointment_clear(appointment=held, actor=CLINICIAN, now=now, reason="   ")
    held.refresh_from_db()
    assert held.status == AppointmentStatus.PENDING_CLEARANCE
    appointment_clear(appointment=held, actor=CLINICIAN, now=now, reason="INR stable, GP letter on file")
    held.refresh_from_db()
    assert held.status == AppointmentStatus.CONFIRMED
    audit = AuditEvent.objects.get(appointment=held, action=AuditAction.CLEARED)
    assert audit.reason == "INR stable, GP letter on file"
    assert audit.actor_label == CLINICIAN.label

    later = book(patient, "filler", at(LONDON, 2026, 3, 20, 10), now).appointment
    assert later.status == AppointmentStatus.CONFIRMED
    moved = appointment_reschedule(appointment=later, start_at=at(LONDON, 2026, 3, 9, 14), actor=RECEPTION, now=now)
    assert moved.appointment.status == AppointmentStatus.PENDING_CLEARANCE
    back = appointment_reschedule(appointment=later, start_at=at(LONDON, 2026, 3, 21, 10), actor=RECEPTION, now=now)
    assert back.appointment.status == AppointmentStatus.CONFIRMED


def test_a_repeat_between_a_past_one_and_a_booked_one_warns_twice(now):
    """docs/rules.md: "one booked between a past Botox and a booked one warns twice (too soon after the
    first, too close before the second)" (botox-repeat, 12 weeks, warn); warnings never refuse."""
    clinic = clinic_in("Europe/London", "qa-repeat")
    patient = PatientFactory(clinic=clinic)
    past = procedure_record_add(patient=patient, procedure_code="botox", now=now, performed_on=date(2026, 2, 1))
    booked = book(patient, "botox", at(LONDON, 2026, 4, 20, 10), now).appointment

    middle = book(patient, "botox", at(LONDON, 2026, 3, 10, 10), now)
    assert middle.appointment.status == AppointmentStatus.CONFIRMED
    found = {(v.code, v.conflicts_with.id) for v in middle.check.evaluation.warnings if key_of(v) == "botox-repeat"}
    assert found == {
        (rules.ViolationCode.TOO_SOON_AFTER, str(past.pk)),
        (rules.ViolationCode.TOO_CLOSE_BEFORE, str(booked.pk)),
    }


def test_the_earliest_start_honours_every_rule_at_once(now):
    """docs/rules.md "The earliest eligible start": "asking for microneedling on 15 March when Botox is
    booked for 20 March is too close before the Botox (3 weeks, microneedling-then-botox), and from the Botox
    day on it is too close after it (2 weeks, botox-then-microneedling); the earliest eligible start is
    3 April" - its local midnight (BST, so 2 April 23:00 UTC); the minute before is refused, the slot
    offered books."""
    clinic = clinic_in("Europe/London", "qa-chain")
    patient = PatientFactory(clinic=clinic)
    book(patient, "botox", at(LONDON, 2026, 3, 20, 10), now)

    refused = check(patient, "microneedling", at(LONDON, 2026, 3, 15, 10), now)
    assert blocking_keys(refused) == {"microneedling-then-botox"}
    assert refused.earliest_eligible_start == datetime(2026, 4, 2, 23, 0, tzinfo=UTC)
    minute_before = check(patient, "microneedling", refused.earliest_eligible_start - ONE_MINUTE, now)
    assert blocking_keys(minute_before) == {"botox-then-microneedling"}
    offered = refused.next_available_slot.start_at
    assert offered == at(LONDON, 2026, 4, 3, 9)
    assert book(patient, "microneedling", offered, now).appointment.status == AppointmentStatus.CONFIRMED


# --- DST, midnight transitions, hour gaps --------------------------------------------------------------------


@pytest.mark.parametrize(
    "zone, booked, allowed_day, first_instant",
    [
        # London springs forward Sun 29 March 2026: 11 April starts at 00:00 BST = 10 April 23:00 UTC.
        ("Europe/London", (2026, 3, 28, 17, 30), date(2026, 4, 11), datetime(2026, 4, 10, 23, 0, tzinfo=UTC)),
        # Santiago springs forward AT midnight on Sun 6 Sep 2026: that day starts at 01:00 -03 = 04:00 UTC.
        ("America/Santiago", (2026, 8, 23, 10, 0), date(2026, 9, 6), datetime(2026, 9, 6, 4, 0, tzinfo=UTC)),
        # Havana falls back 01:00 -> 00:00 on Sun 1 Nov 2026: midnight happens twice; the first is 04:00 UTC.
        ("America/Havana", (2026, 10, 18, 10, 0), date(2026, 11, 1), datetime(2026, 11, 1, 4, 0, tzinfo=UTC)),
        # Lord Howe moves 30 minutes (Sun 4 Oct 2026 02:00 -> 02:30): days still start at midnight.
        ("Australia/Lord_Howe", (2026, 9, 20, 10, 0), date(2026, 10, 4), datetime(2026, 10, 3, 13, 30, tzinfo=UTC)),
    ],
)
def test_a_two_week_gap_ends_at_the_first_instant_of_the_local_day_whatever_the_clocks_do(
    now, zone, booked, allowed_day, first_instant
):
    """Brief 2: "Daylight-saving changes never shift a calendar gap"; api-contract: the earliest eligible
    start is, "with a calendar gap, the start of that local day"; the instant before is refused. Botox two
    weeks before a clock change: microneedling's earliest start is the first instant of the 14th day."""
    tz = ZoneInfo(zone)
    clinic = clinic_in(zone, f"qa-dst-{zone.split('/')[1].lower()}")
    patient = PatientFactory(clinic=clinic)
    book(patient, "botox", at(tz, *booked), now)

    refused = check(patient, "microneedling", first_instant - ONE_MINUTE, now)
    assert blocking_keys(refused) == {"botox-then-microneedling"}
    assert (first_instant - ONE_MINUTE).astimezone(tz).date() == allowed_day - timedelta(days=1)
    assert refused.earliest_eligible_start == first_instant
    assert first_instant.astimezone(tz).date() == allowed_day
    assert not check(patient, "microneedling", first_instant, now).evaluation.blocking


def test_an_hour_gap_is_elapsed_time_across_spring_forward_both_ways(now):
    """Brief 2: "Gaps in hours (24 h, 48 h) are exact elapsed time"; docs/rules.md: "48 hours after 10:00
    on Monday is 10:00 on Wednesday, to the minute (across a clock change, 09:00 or 11:00)". A 24 h
    botox->filler block; Botox Sat 28 March 2026 12:00 GMT, clocks go forward that night: filler is refused
    at 12:59 BST on Sunday and allowed from 13:00 BST (12:00 UTC). Forward: with filler booked Sun 13:00 BST,
    Botox at 12:00 GMT Saturday is exactly 24 h before (allowed), at 12:01 refused."""
    clinic = clinic_in("Europe/London", "qa-24h")
    patient = PatientFactory(clinic=clinic)
    org_rule(patient, "botox", "filler", 24, "hours")
    botox = book(patient, "botox", at(LONDON, 2026, 3, 28, 12), now).appointment

    refused = check(patient, "filler", at(LONDON, 2026, 3, 29, 12, 59), now)
    assert refused.evaluation.blocking
    assert refused.earliest_eligible_start == datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
    book(patient, "filler", at(LONDON, 2026, 3, 29, 13), now)

    appointment_cancel(appointment=botox, actor=RECEPTION, now=now)
    assert not check(patient, "botox", at(LONDON, 2026, 3, 28, 12), now).evaluation.blocking
    assert check(patient, "botox", at(LONDON, 2026, 3, 28, 12, 1), now).evaluation.blocking


# --- reported history: a date, not a time --------------------------------------------------------------------


@pytest.mark.parametrize(
    "zone, day",
    [
        ("America/Santiago", date(2025, 4, 5)),  # clocks go back at 24:00 that Saturday: 23:00-23:59 twice
        ("Africa/Cairo", date(2025, 10, 30)),  # clocks go back at 24:00 that Thursday
    ],
)
def test_a_reported_day_is_accepted_whatever_the_clocks_do_that_night(now, zone, day):
    """Brief 1: procedures "reported as done elsewhere, with the date the patient gives"; brief 2 refuses
    an ambiguous local time only when one is given ("a local time that ... exists twice (fall back) is
    refused ... unless the caller gives an explicit offset"): a date alone has no time to be ambiguous.
    The front desk's history form (frontdesk/forms.py: time optional) goes through the same service."""
    clinic = clinic_in(zone, f"qa-report-{zone.split('/')[1].lower()}")
    patient = PatientFactory(clinic=clinic)
    try:
        record = procedure_record_add(patient=patient, procedure_code="botox", now=now, performed_on=day)
    except InvalidInput as error:
        pytest.fail(f"{error.code} on {error.field}: {error.message}")
    assert record.performed_at.astimezone(ZoneInfo(zone)).date() == day
    # The later 23:59: the end of that day, the safer reading for the interval rules.
    nxt = record.performed_at + timedelta(minutes=1)
    assert nxt.astimezone(ZoneInfo(zone)).date() == day + timedelta(days=1)


def test_a_reported_day_counts_as_that_local_day_at_any_hour(now):
    """Brief 1/2: reported history carries "the date the patient gives"; "2 weeks after 1 March is 15 March",
    at any hour. In New York (the suite's clock is 04:00 EST on 2 March), Botox reported for 1 March:
    microneedling at 00:00 on 15 March (EDT: clocks went forward on 8 March) is allowed, 23:59 on the 14th
    refused - the reported day is not moved by the time the service picks for it."""
    ny = ZoneInfo("America/New_York")
    clinic = clinic_in("America/New_York", "qa-report-ny")
    patient = PatientFactory(clinic=clinic)
    procedure_record_add(patient=patient, procedure_code="botox", now=now, performed_on=date(2026, 3, 1))

    assert check(patient, "microneedling", at(ny, 2026, 3, 14, 23, 59), now).evaluation.blocking
    first = check(patient, "microneedling", at(ny, 2026, 3, 15, 0, 0), now)
    assert not first.evaluation.blocking
    refused = check(patient, "microneedling", at(ny, 2026, 3, 14, 12), now)
    assert refused.earliest_eligible_start == midnight(ny, date(2026, 3, 15))


# --- properties at the service layer -------------------------------------------------------------------------

PROP_ZONES = ["America/Santiago", "America/Havana", "Australia/Lord_Howe", "Pacific/Kiritimati", "Pacific/Chatham"]
PROCS = ["botox", "filler", "microneedling", "plasma_pen"]


@pytest.fixture
def prop_clinics():
    return {name: clinic_in(name, f"qa-prop-{i}", all_day=True) for i, name in enumerate(PROP_ZONES)}


def _local_start(tz, day_offset: int, quarter: int) -> datetime:
    base = datetime(2026, 3, 4, tzinfo=tz)  # after the suite's clock in every zone
    local = datetime.combine(base.date() + timedelta(days=day_offset), time.min) + timedelta(minutes=15 * quarter)
    return local.replace(tzinfo=tz).astimezone(UTC).astimezone(tz)  # normalised past any gap


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    zone=st.sampled_from(PROP_ZONES),
    booked=st.lists(
        st.tuples(st.sampled_from(PROCS), st.integers(0, 60), st.integers(0, 91)), max_size=3, unique_by=lambda e: e[1]
    ),
    code=st.sampled_from(PROCS),
    day=st.integers(0, 70),
    quarter=st.integers(0, 95),
    fraction=st.floats(0, 1),
)
def test_the_earliest_start_is_the_first_allowed_minute(prop_clinics, now, zone, booked, code, day, quarter, fraction):
    """Brief 2: "the earliest start that would satisfy every rule"; docs/rules.md: "the first moment, at or
    after the one asked for, that no blocking rule forbids". Through appointment_check in zones whose clocks
    change at midnight, by 30 minutes, or sit at +14 / +12:45: the earliest start is eligible, the minute
    before it (when asked for later than the start) is refused, and so is a random minute in between."""
    tz = ZoneInfo(zone)
    with transaction.atomic():
        patient = PatientFactory(clinic=prop_clinics[zone])
        for proc, d, q in booked:
            try:
                book(patient, proc, _local_start(tz, d, q), now)
            except UnableToBook:
                pass
        asked = _local_start(tz, day, quarter)
        result = check(patient, code, asked, now)
        earliest = result.earliest_eligible_start
        event(f"refused on the rules: {bool(result.evaluation.blocking)}")
        assert earliest is not None  # procedures only: a date always exists
        # Compared and stepped in UTC: a local time in a repeated hour never equals another zone's instant (PEP 495),
        # and adding to a zoned time adds on the wall clock.
        asked = asked.astimezone(UTC)
        if not result.evaluation.blocking:
            assert earliest == asked
        else:
            assert earliest > asked
            assert not check(patient, code, earliest, now).evaluation.blocking
            assert check(patient, code, earliest - ONE_MINUTE, now).evaluation.blocking
            between = asked + timedelta(minutes=int((earliest - asked) / ONE_MINUTE * fraction))
            if between < earliest:
                assert check(patient, code, between, now).evaluation.blocking
        transaction.set_rollback(True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    zone=st.sampled_from(PROP_ZONES),
    first=st.tuples(st.sampled_from(PROCS), st.integers(0, 40), st.integers(0, 79)),
    second=st.tuples(st.sampled_from(PROCS), st.integers(0, 40), st.integers(0, 79)),
)
def test_check_answers_what_booking_does_whichever_of_two_comes_first(prop_clinics, now, zone, first, second):
    """Brief 2: a rule "is checked in both directions" and every refusal is explained; api-contract:
    eligibility "runs the same checks and books nothing". For a pair of procedures: a check's outcome is
    what booking then does (refused <=> UnableToBook on the rules, else the status it stores), and the pair
    conflicts the same way whichever of the two is booked first."""
    tz = ZoneInfo(zone)
    a = (first[0], _local_start(tz, first[1], first[2]))
    b = (second[0], _local_start(tz, second[1], second[2]))
    if abs(a[1] - b[1]) < timedelta(hours=2):
        b = (b[0], b[1] + timedelta(hours=3))  # never overlapping slots: the rules decide, not the calendar

    def pair_blocks(one, other) -> bool:
        patient = PatientFactory(clinic=prop_clinics[zone])
        try:
            book(patient, *one, now)
        except UnableToBook:  # the calendar (a short DST day), never a rule: nothing is booked yet
            assume(False)
        result = check(patient, *other, now)
        try:
            booked = book(patient, *other, now)
        except UnableToBook as refusal:
            assert {key_of(v) for v in refusal.check.evaluation.blocking} == blocking_keys(result)
            assert result.evaluation.blocking or refusal.check.availability  # refused only for a reason shown
            return bool(result.evaluation.blocking)
        assert not result.evaluation.blocking
        assert booked.appointment.status == result.evaluation.outcome
        return False

    def each_alone(one, other) -> bool:
        with transaction.atomic():  # a savepoint: the two orders never see each other's rows
            answer = pair_blocks(one, other)
            transaction.set_rollback(True)
        return answer

    with transaction.atomic():
        one_way = each_alone(a, b)
        other_way = each_alone(b, a)
        event(f"the pair conflicts: {one_way}")
        assert one_way == other_way, (a, b)
        transaction.set_rollback(True)
