"""The rule engine against the documented rules (docs/rules.md) and the shipped defaults.

Every default rule is read from fixtures/rules.json, so these tests pin what
ships. Times are given in the clinic's zone unless the test is about UTC.
"""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduler.rules import (
    ConditionEntry,
    ContraindicationRule,
    ContraindicationSeverity,
    EventState,
    IntervalRule,
    IntervalSeverity,
    MedicationCourse,
    Outcome,
    ProcedureEvent,
    Proposal,
    RuleBook,
    Timeline,
    ViolationCode,
    blocked_ranges,
    evaluate,
)
from tests.rulebook import default_rulebook

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")


def at(y, m, d, hh=10, mm=0, tz=LONDON):
    return datetime(y, m, d, hh, mm, tzinfo=tz)


def done(code, when, id=None, area=None, state=EventState.DONE):
    return ProcedureEvent(id=id or f"{code}-{when.isoformat()}", procedure=code, start_at=when, area=area, state=state)


def check(
    events=(),
    proposal_code="microneedling",
    when=None,
    *,
    area=None,
    courses=(),
    conditions=(),
    rules=None,
    tz=LONDON,
    ignore=frozenset(),
):
    timeline = Timeline(events, courses, conditions)
    return evaluate(timeline, rules or default_rulebook(), Proposal(proposal_code, when, area, ignore), tz)


def local(value, tz=LONDON):
    return value.astimezone(tz) if value else None


# --- Minimum intervals: every default, at its boundary -------------------------------------------


@pytest.mark.parametrize(
    "earlier, later, first_allowed_day",
    [
        ("botox", "microneedling", date(2026, 3, 15)),  # 2 weeks, source 001
        ("filler", "microneedling", date(2026, 3, 29)),  # 4 weeks, source 001
        ("microneedling", "botox", date(2026, 3, 22)),  # 3 weeks, source 001
        ("microneedling", "filler", date(2026, 3, 22)),  # 3 weeks, source 001
        ("microneedling", "plasma_pen", date(2026, 3, 8)),  # 7 days block, source 001
    ],
)
def test_default_interval_is_a_calendar_gap_in_local_dates(earlier, later, first_allowed_day):
    """Given an earlier procedure on 1 March at 15:00, the later one is allowed from the start of day+gap, at any hour."""
    history = [done(earlier, at(2026, 3, 1, 15))]

    midnight = datetime.combine(first_allowed_day, datetime.min.time(), tzinfo=LONDON)
    day_before = check(history, later, midnight - timedelta(minutes=1))
    first_minute = check(history, later, midnight)

    assert day_before.outcome == Outcome.REFUSED
    [violation] = day_before.blocking
    assert violation.code == ViolationCode.TOO_SOON_AFTER
    assert violation.conflicts_with.id == history[0].id
    assert local(violation.earliest_allowed) == midnight
    assert local(day_before.earliest_eligible_start) == local(violation.earliest_allowed)
    assert first_minute.blocking == ()


def test_two_weeks_after_1_march_is_15_march_at_any_hour():
    """The example of docs/rules.md: a receptionist thinks '2 weeks after 1 March is 15 March'."""
    history = [done("botox", at(2026, 3, 1, 23, 30))]

    assert check(history, "microneedling", at(2026, 3, 15, 0, 0)).eligible
    assert check(history, "microneedling", at(2026, 3, 15, 9, 0)).eligible
    refused = check(history, "microneedling", at(2026, 3, 14, 23, 59))
    assert not refused.eligible
    assert "at least 2 weeks after Botulinum toxin injection (Botox)" in refused.blocking[0].message


def test_interval_is_checked_forwards_when_booking_the_earlier_procedure():
    """Booking Botox looks forward at a booked microneedling that it would make too close."""
    booked = [done("microneedling", at(2026, 3, 20, 15), id="mn", state=EventState.BOOKED)]

    result = check(booked, "botox", at(2026, 3, 10))

    codes = {v.code for v in result.blocking}
    assert ViolationCode.TOO_CLOSE_BEFORE in codes
    forward = next(v for v in result.blocking if v.code == ViolationCode.TOO_CLOSE_BEFORE)
    assert forward.conflicts_with.id == "mn"
    assert "booked 20 March 2026 15:00" in forward.message
    # Botox must then also be 3 weeks after the microneedling: 10 April.
    assert local(result.earliest_eligible_start) == at(2026, 4, 10, 0, 0)


def test_forward_check_allows_the_earlier_procedure_far_enough_ahead():
    booked = [done("microneedling", at(2026, 3, 20, 15), state=EventState.BOOKED)]

    assert check(booked, "botox", at(2026, 3, 6, 23, 59)).eligible  # 6 March + 14 days = 20 March
    assert not check(booked, "botox", at(2026, 3, 7, 0, 0)).eligible


def test_events_at_the_same_instant_are_checked_both_ways():
    only_botox_then_mn = RuleBook([IntervalRule("r", "microneedling", 2, "weeks", earlier_procedure="botox")])
    same_time = at(2026, 3, 10, 11)

    mn_after_botox = check([done("botox", same_time)], "microneedling", same_time, rules=only_botox_then_mn)
    botox_before_mn = check(
        [done("microneedling", same_time, state=EventState.BOOKED)], "botox", same_time, rules=only_botox_then_mn
    )

    assert not mn_after_botox.eligible
    assert not botox_before_mn.eligible


def test_cancelled_and_no_show_events_are_ignored():
    history = [
        done("botox", at(2026, 3, 1), state=EventState.VOID),
        done("filler", at(2026, 3, 1), state=EventState.VOID),
    ]

    assert check(history, "microneedling", at(2026, 3, 2)).violations == ()


def test_rescheduled_event_is_not_checked_against_itself():
    own = done("microneedling", at(2026, 3, 10), id="own", state=EventState.BOOKED)
    rules = RuleBook([IntervalRule("repeat", "microneedling", 4, "weeks", earlier_procedure="microneedling")])

    assert not check([own], "microneedling", at(2026, 3, 12), rules=rules).eligible
    assert check([own], "microneedling", at(2026, 3, 12), rules=rules, ignore=frozenset({"own"})).eligible


# --- Plasma pen: block at 7 days, warn before 10 --------------------------------------------------------------


@pytest.mark.parametrize(
    "day, outcome, warned",
    [
        (7, Outcome.REFUSED, True),
        (8, Outcome.CONFIRMED, True),
        (10, Outcome.CONFIRMED, True),
        (11, Outcome.CONFIRMED, False),
    ],
)
def test_plasma_pen_after_microneedling(day, outcome, warned):
    """Microneedling on 1 March: plasma pen blocked before 8 March, warned before 11 March (7 to 10 days)."""
    history = [done("microneedling", at(2026, 3, 1, 14))]

    result = check(history, "plasma_pen", at(2026, 3, day, 9))

    assert result.outcome == outcome
    assert bool(result.warnings) == warned
    if warned:
        assert local(result.warnings[0].earliest_allowed) == at(2026, 3, 11, 0, 0)


def test_warnings_never_refuse_and_do_not_move_the_earliest_eligible_start():
    history = [done("microneedling", at(2026, 3, 1, 14))]

    result = check(history, "plasma_pen", at(2026, 3, 9, 9))

    assert result.eligible
    assert result.earliest_eligible_start == at(2026, 3, 9, 9).astimezone(UTC)
    assert [v.severity for v in result.violations] == [IntervalSeverity.WARN]


# --- Months, month ends and leap years ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "course_end, first_allowed",
    [
        (date(2025, 8, 31), date(2026, 2, 28)),  # 31 August + 6 months = 28 February
        (date(2027, 8, 31), date(2028, 2, 29)),  # ... 29 in a leap year
        (date(2026, 1, 31), date(2026, 7, 31)),
        (date(2026, 3, 31), date(2026, 9, 30)),
        (date(2027, 2, 28), date(2027, 8, 28)),
    ],
)
def test_isotretinoin_gap_is_six_calendar_months_from_the_course_end(course_end, first_allowed):
    course = MedicationCourse("iso", "isotretinoin", course_end - timedelta(days=150), course_end)
    midnight = datetime.combine(first_allowed, datetime.min.time(), tzinfo=LONDON)

    before = check([], "microneedling", midnight - timedelta(minutes=1), courses=[course])
    on = check([], "microneedling", midnight, courses=[course])

    assert not before.eligible
    assert before.blocking[0].code == ViolationCode.TOO_SOON_AFTER_COURSE
    assert local(before.earliest_eligible_start) == midnight
    assert on.eligible
    # 6 to 12 months after: allowed, with the source-000 warning.
    assert [v.rule_id for v in on.warnings] == ["isotretinoin-then-microneedling-warn"]


def test_isotretinoin_warns_for_filler_for_twelve_months():
    course = MedicationCourse("iso", "isotretinoin", date(2025, 1, 1), date(2025, 6, 30))

    within = check([], "filler", at(2026, 6, 29, 12), courses=[course])
    after = check([], "filler", at(2026, 6, 30, 0, 0), courses=[course])

    assert within.eligible and [v.severity for v in within.warnings] == [IntervalSeverity.WARN]
    assert after.violations == ()


def test_an_ongoing_course_blocks_every_date_and_has_no_earliest_start():
    course = MedicationCourse("iso", "isotretinoin", date(2026, 1, 5), None)

    for when in (at(2026, 3, 1), at(2027, 3, 1), at(2036, 3, 1)):
        result = check([], "microneedling", when, courses=[course])
        assert not result.eligible
        assert result.earliest_eligible_start is None
        assert result.blocking[0].code == ViolationCode.COURSE_ONGOING
        assert result.blocking[0].earliest_allowed is None
        assert "still ongoing" in result.blocking[0].message


def test_an_ongoing_isotretinoin_course_warns_on_every_filler_date():
    course = MedicationCourse("iso", "isotretinoin", date(2026, 1, 5), None)

    result = check([], "filler", at(2030, 1, 1), courses=[course])

    assert result.eligible
    assert result.warnings[0].earliest_allowed is None


# --- Daylight saving time -------------------------------------------------------------------------------------


def test_a_calendar_gap_across_spring_forward_is_not_shifted():
    """Botox 20 March (GMT) → microneedling from 3 April 00:00 BST, the start of the local day."""
    history = [done("botox", at(2026, 3, 20, 10))]

    refused = check(history, "microneedling", at(2026, 4, 2, 23, 59))

    assert local(refused.earliest_eligible_start) == at(2026, 4, 3, 0, 0)
    assert refused.earliest_eligible_start == datetime(2026, 4, 2, 23, 0, tzinfo=UTC)
    assert check(history, "microneedling", at(2026, 4, 3, 0, 0)).eligible


def test_a_calendar_gap_across_fall_back_in_new_york():
    history = [done("microneedling", at(2026, 10, 20, 9, tz=NEW_YORK))]

    result = check(history, "botox", at(2026, 11, 9, 12, tz=NEW_YORK), tz=NEW_YORK)

    assert local(result.earliest_eligible_start, NEW_YORK) == at(2026, 11, 10, 0, 0, tz=NEW_YORK)
    assert result.earliest_eligible_start == datetime(2026, 11, 10, 5, 0, tzinfo=UTC)


def test_the_local_date_decides_not_the_utc_date():
    """23:30 in New York on 1 March is 2 March in UTC; the gap counts from 1 March."""
    history = [done("botox", at(2026, 3, 1, 23, 30, tz=NEW_YORK))]

    assert check(history, "microneedling", at(2026, 3, 15, 0, 0, tz=NEW_YORK), tz=NEW_YORK).eligible


def test_hour_gaps_are_elapsed_time_across_a_dst_change():
    rules = RuleBook([IntervalRule("48h", "microneedling", 48, "hours", earlier_procedure="microneedling")])
    history = [done("microneedling", at(2026, 3, 28, 10))]  # 10:00 GMT, clocks go forward on the 29th

    refused = check(history, "microneedling", at(2026, 3, 30, 10, 59), rules=rules)
    allowed = check(history, "microneedling", at(2026, 3, 30, 11, 0), rules=rules)

    assert not refused.eligible
    assert local(refused.earliest_eligible_start) == at(2026, 3, 30, 11, 0)  # 48 h later is 11:00 BST
    assert allowed.eligible


def test_hour_gaps_count_forwards_too():
    rules = RuleBook([IntervalRule("24h", "botox", 24, "hours", earlier_procedure="filler")])
    booked = [done("botox", at(2026, 5, 2, 10), state=EventState.BOOKED)]

    assert check(booked, "filler", at(2026, 5, 1, 10, 0), rules=rules).eligible
    assert not check(booked, "filler", at(2026, 5, 1, 10, 1), rules=rules).eligible


# --- Area scope and same-procedure repeats ------------------------------------------------------------------------


def test_default_rules_apply_to_any_area():
    history = [done("botox", at(2026, 3, 1), area="hands")]

    assert not check(history, "microneedling", at(2026, 3, 5), area="face").eligible


def test_a_same_area_rule_ignores_other_areas_but_not_unknown_ones():
    rules = RuleBook(
        [IntervalRule("r", "microneedling", 4, "weeks", earlier_procedure="microneedling", same_area_only=True)]
    )

    def result(previous_area, new_area):
        return check(
            [done("microneedling", at(2026, 3, 1), area=previous_area)],
            "microneedling",
            at(2026, 3, 10),
            area=new_area,
            rules=rules,
        )

    assert result("face", "hands").eligible
    assert not result("face", "face").eligible
    assert not result(None, "face").eligible  # unknown counts as the same area: the safer reading
    assert not result("face", None).eligible


def test_same_procedure_repeats_are_bounded_in_both_directions():
    rules = RuleBook([IntervalRule("repeat", "botox", 12, "weeks", earlier_procedure="botox")])
    events = [
        done("botox", at(2026, 1, 5), id="past"),
        done("botox", at(2026, 9, 1), id="future", state=EventState.BOOKED),
    ]

    too_soon = check(events, "botox", at(2026, 3, 1), rules=rules)
    too_close_before = check(events, "botox", at(2026, 8, 1), rules=rules)

    assert [v.code for v in too_soon.blocking] == [ViolationCode.TOO_SOON_AFTER]
    assert [v.code for v in too_close_before.blocking] == [ViolationCode.TOO_CLOSE_BEFORE]
    assert local(too_soon.earliest_eligible_start) == at(2026, 3, 30, 0, 0)
    assert check(events, "botox", at(2026, 6, 9), rules=rules).eligible


# --- Contraindications -------------------------------------------------------------------------------------------------


def cond(code, status="active", area=None):
    return ConditionEntry(id=f"c-{code}", condition=code, status=status, area=area)


@pytest.mark.parametrize(
    "code",
    [
        "scleroderma",
        "collagen_vascular_disease",
        "cardiac_abnormality",
        "clotting_disorder",
        "skin_infection",
        "open_wound",
        "immunosuppression",
    ],
)
def test_absolute_contraindications_refuse_microneedling_with_no_date(code):
    result = check([], "microneedling", at(2026, 3, 10), conditions=[cond(code)])

    assert result.outcome == Outcome.REFUSED
    assert result.earliest_eligible_start is None
    [violation] = result.blocking
    assert (violation.kind, violation.severity, violation.code) == (
        "contraindication",
        ContraindicationSeverity.ABSOLUTE,
        ViolationCode.CONDITION,
    )
    assert "rules it out" in violation.message


@pytest.mark.parametrize(
    "code",
    [
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
    ],
)
def test_relative_contraindications_hold_microneedling_for_clearance(code):
    result = check([], "microneedling", at(2026, 3, 10), conditions=[cond(code)])

    assert result.outcome == Outcome.PENDING_CLEARANCE
    assert result.eligible
    assert [v.severity for v in result.needs_clearance] == [ContraindicationSeverity.RELATIVE]


@pytest.mark.parametrize(
    "code, outcome",
    [
        ("skin_infection", Outcome.REFUSED),
        ("open_wound", Outcome.REFUSED),
        ("filler_allergy", Outcome.REFUSED),
        ("active_acne", Outcome.PENDING_CLEARANCE),
        ("psoriasis", Outcome.PENDING_CLEARANCE),
        ("eczema", Outcome.PENDING_CLEARANCE),
        ("anaphylaxis_history", Outcome.PENDING_CLEARANCE),
        ("autoimmune_disease", Outcome.PENDING_CLEARANCE),
        ("pregnancy", Outcome.PENDING_CLEARANCE),
        ("breastfeeding", Outcome.PENDING_CLEARANCE),
        ("clotting_disorder", Outcome.PENDING_CLEARANCE),
        ("keloid_scarring", Outcome.PENDING_CLEARANCE),
    ],
)
def test_filler_contraindications(code, outcome):
    assert check([], "filler", at(2026, 3, 10), conditions=[cond(code)]).outcome == outcome


def test_history_of_an_active_only_condition_does_not_count():
    assert check([], "microneedling", at(2026, 3, 10), conditions=[cond("skin_infection", "history")]).eligible
    # ... but a history of eczema does (the sources speak of a 'history of eczema').
    assert (
        check([], "microneedling", at(2026, 3, 10), conditions=[cond("eczema", "history")]).outcome
        == Outcome.PENDING_CLEARANCE
    )


def test_tattoo_counts_only_in_the_treated_area_or_when_unknown():
    def outcome(tattoo_area, treated_area):
        return check(
            [],
            "microneedling",
            at(2026, 3, 10),
            area=treated_area,
            conditions=[cond("tattoo_in_area", area=tattoo_area)],
        ).outcome

    assert outcome("hands", "face") == Outcome.CONFIRMED
    assert outcome("face", "face") == Outcome.PENDING_CLEARANCE
    assert outcome(None, "face") == Outcome.PENDING_CLEARANCE
    assert outcome("face", None) == Outcome.PENDING_CLEARANCE


def test_an_ongoing_anticoagulant_course_rules_out_microneedling_and_holds_filler():
    course = MedicationCourse("ac", "anticoagulant", date(2026, 1, 1), None)

    microneedling = check([], "microneedling", at(2026, 3, 10), courses=[course])
    filler = check([], "filler", at(2026, 3, 10), courses=[course])

    assert microneedling.outcome == Outcome.REFUSED and microneedling.earliest_eligible_start is None
    assert microneedling.blocking[0].code == ViolationCode.MEDICATION
    assert filler.outcome == Outcome.PENDING_CLEARANCE


def test_a_medication_contraindication_lifts_the_day_after_the_course_ends():
    course = MedicationCourse("ac", "anticoagulant", date(2026, 1, 1), date(2026, 3, 12))

    result = check([], "microneedling", at(2026, 3, 10), courses=[course])

    assert not result.eligible
    assert local(result.earliest_eligible_start) == at(2026, 3, 13, 0, 0)
    assert check([], "microneedling", at(2026, 3, 13, 9), courses=[course]).eligible


def test_immunosuppressive_medication_rules_out_microneedling():
    course = MedicationCourse("im", "immunosuppressant", date(2026, 1, 1), None)

    assert check([], "microneedling", at(2026, 3, 10), courses=[course]).outcome == Outcome.REFUSED


def test_botox_and_plasma_pen_have_no_shipped_contraindications():
    conditions = [cond("eczema"), cond("skin_infection")]

    assert check([], "botox", at(2026, 3, 10), conditions=conditions).violations == ()
    assert check([], "plasma_pen", at(2026, 3, 10), conditions=conditions).violations == ()


# --- Several rules at once ---------------------------------------------------------------------------------------------


def test_the_earliest_eligible_start_satisfies_every_blocking_rule_at_once():
    history = [done("botox", at(2026, 3, 1)), done("filler", at(2026, 3, 3))]

    result = check(history, "microneedling", at(2026, 3, 5))

    assert {v.conflicts_with.code for v in result.blocking} == {"botox", "filler"}
    assert local(result.earliest_eligible_start) == at(2026, 3, 31, 0, 0)  # filler + 4 weeks beats botox + 2


def test_hopping_over_a_booked_later_procedure():
    """Microneedling before a booked Botox would be too close; after it, 3 weeks must pass."""
    booked = [done("botox", at(2026, 3, 20, 15), state=EventState.BOOKED)]

    result = check(booked, "microneedling", at(2026, 3, 15))

    # microneedling -> botox 3 weeks forward, then botox -> microneedling 2 weeks back.
    assert local(result.earliest_eligible_start) == at(2026, 4, 3, 0, 0)


def test_violations_carry_rule_and_source():
    result = check([done("botox", at(2026, 3, 1))], "microneedling", at(2026, 3, 5))

    violation = result.blocking[0]
    assert violation.rule_id == "botox-then-microneedling"
    assert violation.source.startswith("[001] Yazbek Artistry")


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        check([], "botox", datetime(2026, 3, 1, 10))


def test_rules_validate_their_shape():
    with pytest.raises(ValueError):
        IntervalRule("x", "botox", 2, "fortnights", earlier_procedure="filler")
    with pytest.raises(ValueError):
        IntervalRule("x", "botox", 2, "weeks")
    with pytest.raises(ValueError):
        ContraindicationRule("x", "botox", "absolute", condition="eczema", medication="anticoagulant")


# --- Bulk: blocked ranges agree with single evaluations -----------------------------------------------------------


def test_blocked_ranges_agree_with_evaluate_over_a_window():
    events = [done("botox", at(2026, 3, 1)), done("microneedling", at(2026, 4, 20, 15), state=EventState.BOOKED)]
    timeline = Timeline(events)
    start = at(2026, 3, 1, 0, 0)
    spans = blocked_ranges(
        timeline, default_rulebook(), Proposal("microneedling", start), LONDON, start + timedelta(days=90)
    )

    moment = start
    while moment < start + timedelta(days=90):
        expected = not evaluate(timeline, default_rulebook(), Proposal("microneedling", moment), LONDON).eligible
        assert spans.blocks(moment.astimezone(UTC)) == expected, moment
        moment += timedelta(hours=7)


def test_the_engines_condition_states_are_the_intakes():
    from clinic.models import ConditionStatus
    from scheduler.rules import ConditionState

    assert {s.value for s in ConditionState} == set(ConditionStatus.values)


# --- Two events on one local date: 0 days apart, whichever comes first that day (docs/rules.md) ------------------


def test_a_start_later_on_the_date_of_a_booked_later_procedure_is_as_close_as_one_before_it():
    """microneedling -> plasma pen, 7 days: with a plasma pen booked at 10:00 on 10 March, microneedling at 11:00
    that day is refused like at 09:00 (0 days apart), the earliest start the next day at midnight; 11 March is free
    (no default rule runs from plasma pen to microneedling)."""
    plasma = done("plasma_pen", at(2026, 3, 10, 10), state=EventState.BOOKED)
    for hour in (9, 11, 23):
        result = check([plasma], "microneedling", at(2026, 3, 10, hour))
        assert [v.code for v in result.blocking] == [ViolationCode.TOO_CLOSE_BEFORE], hour
        assert local(result.earliest_eligible_start) == at(2026, 3, 11, 0)
    assert check([plasma], "microneedling", at(2026, 3, 11, 0)).eligible


def test_a_day_reported_without_a_time_forbids_the_later_procedure_all_that_day():
    """A microneedling reported for 10 March (time unknown, kept as 23:59) is a 10 March microneedling: a plasma pen
    at 10:00 that day is 0 days after it, refused, as on the 16th; the 17th is allowed."""
    reported = done("microneedling", at(2026, 3, 10, 23, 59))
    refused = check([reported], "plasma_pen", at(2026, 3, 10, 10))
    assert [v.code for v in refused.blocking] == [ViolationCode.TOO_SOON_AFTER]
    assert local(refused.earliest_eligible_start) == at(2026, 3, 17, 0)
    assert not check([reported], "plasma_pen", at(2026, 3, 16, 17)).eligible
    assert check([reported], "plasma_pen", at(2026, 3, 17, 9)).eligible


def test_an_hour_gap_still_goes_by_the_instant_on_one_date():
    """Hours are elapsed time: filler -> botox 48 h allows a Botox earlier the same day than the filler (it is not
    after it), and refuses one an hour after."""
    rules = RuleBook([IntervalRule("h48", "botox", 48, "hours", earlier_procedure="filler")])
    filler = done("filler", at(2026, 3, 10, 14), state=EventState.BOOKED)
    assert check([filler], "botox", at(2026, 3, 10, 9), rules=rules).eligible
    assert not check([filler], "botox", at(2026, 3, 10, 15), rules=rules).eligible


def test_the_same_date_across_two_zones_is_each_events_own_date():
    """A plasma pen booked at the New York site at 20:00 on 10 March (01:00 on the 11th in London) is a 10 March plasma
    pen: a London microneedling on the 11th is on a later date, so no microneedling -> plasma pen gap is broken (read
    in London's zone both would be on the 11th, 0 days apart, and refused); one on the 10th is 0 days before it."""
    ny_plasma = ProcedureEvent(
        "ny", "plasma_pen", at(2026, 3, 10, 20, tz=NEW_YORK), state=EventState.BOOKED, tz=NEW_YORK
    )
    assert check([ny_plasma], "microneedling", at(2026, 3, 11, 9)).eligible  # 11 March is after 10 March's plasma pen
    assert not check([ny_plasma], "microneedling", at(2026, 3, 10, 9)).eligible  # the same date as New York's
    in_london = ProcedureEvent("ldn", "plasma_pen", ny_plasma.start_at, state=EventState.BOOKED, tz=LONDON)
    assert not check([in_london], "microneedling", at(2026, 3, 11, 9)).eligible  # the 11th there: 0 days apart
