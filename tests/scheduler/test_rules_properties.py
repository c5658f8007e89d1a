"""Invariants of the rule engine, checked with Hypothesis over random timelines and rules.

- The earliest eligible start is itself eligible, and no start between the
  requested one and it is.
- The result does not depend on the order of the timeline.
- Cancelling an event restores exactly what booking it took.
- A pair of events conflicts the same way whichever of the two was booked first, at one clinic or at two clinics
  in different zones.
- The bulk blocked ranges agree with single evaluations.
- A copy of an event (the same treatment entered twice) adds no violation and moves no date: each reason is named
  once.
"""

from dataclasses import replace
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.rules import (
    ConditionEntry,
    EventState,
    ProcedureEvent,
    Proposal,
    RuleBook,
    Timeline,
    blocked_ranges,
    evaluate,
)
from tests.scheduler.helpers import (
    AREAS,
    CODES,
    SPAN_MINUTES,
    ZONES,
    courses,
    events,
    interval_rules,
    minutes,
    moment,
    rulebooks,
)

conditions = st.lists(
    st.builds(
        ConditionEntry,
        id=st.sampled_from(["k1", "k2"]),
        condition=st.sampled_from(["eczema", "tattoo_in_area", "skin_infection"]),
        status=st.sampled_from(["active", "history"]),
        area=st.sampled_from(AREAS),
    ),
    max_size=2,
    unique_by=lambda c: c.id,
)

proposals = st.builds(
    lambda code, offset, area: Proposal(code, moment(offset), area),
    st.sampled_from(CODES),
    minutes,
    st.sampled_from(AREAS),
)

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(rulebooks(), events(), courses(), conditions, proposals, st.sampled_from(ZONES), st.data())
def test_earliest_eligible_start_is_eligible_and_nothing_before_it_is(rules, evs, crs, conds, proposal, tz, data):
    timeline = Timeline(evs, crs, conds)
    result = evaluate(timeline, rules, proposal, tz)
    earliest = result.earliest_eligible_start

    if earliest is None:
        later = proposal.start_at + timedelta(minutes=data.draw(st.integers(min_value=0, max_value=10 * SPAN_MINUTES)))
        assert not evaluate(timeline, rules, Proposal(proposal.procedure, later, proposal.area), tz).eligible
        return
    assert earliest >= proposal.start_at
    assert earliest.second == 0 and earliest.microsecond == 0
    assert evaluate(timeline, rules, Proposal(proposal.procedure, earliest, proposal.area), tz).eligible
    assert result.eligible == (earliest == proposal.start_at)
    gap_minutes = int((earliest - proposal.start_at).total_seconds() // 60)
    if gap_minutes:
        for offset in {0, gap_minutes - 1, data.draw(st.integers(min_value=0, max_value=gap_minutes - 1))}:
            between = proposal.start_at + timedelta(minutes=offset)
            assert not evaluate(timeline, rules, Proposal(proposal.procedure, between, proposal.area), tz).eligible


@PROPERTY_SETTINGS
@given(rulebooks(), events(), courses(), conditions, proposals, st.sampled_from(ZONES), st.randoms())
def test_result_does_not_depend_on_the_order_of_the_timeline(rules, evs, crs, conds, proposal, tz, rnd):
    shuffled_events, shuffled_courses, shuffled_conditions = list(evs), list(crs), list(conds)
    rnd.shuffle(shuffled_events)
    rnd.shuffle(shuffled_courses)
    rnd.shuffle(shuffled_conditions)

    original = evaluate(Timeline(evs, crs, conds), rules, proposal, tz)
    reordered = evaluate(Timeline(shuffled_events, shuffled_courses, shuffled_conditions), rules, proposal, tz)

    assert reordered.violations == original.violations
    assert reordered.earliest_eligible_start == original.earliest_eligible_start


@PROPERTY_SETTINGS
@given(
    rulebooks(),
    events(),
    courses(),
    proposals,
    st.sampled_from(CODES),
    minutes,
    st.sampled_from(AREAS),
    st.sampled_from(ZONES),
)
def test_cancelling_restores_what_booking_took(rules, evs, crs, proposal, code, offset, area, tz):
    before = evaluate(Timeline(evs, crs), rules, proposal, tz)
    booked = ProcedureEvent("new", code, moment(offset), area, state=EventState.BOOKED)
    cancelled = ProcedureEvent("new", code, moment(offset), area, state=EventState.VOID)

    with_booking = evaluate(Timeline([*evs, booked], crs), rules, proposal, tz)
    after_cancel = evaluate(Timeline([*evs, cancelled], crs), rules, proposal, tz)

    assert after_cancel.violations == before.violations
    assert after_cancel.earliest_eligible_start == before.earliest_eligible_start
    # Booking can only take dates away, never give them.
    assert len(with_booking.blocking) >= len(before.blocking)


@PROPERTY_SETTINGS
@given(rulebooks(), events(), courses(), conditions, proposals, st.sampled_from(ZONES), st.data())
def test_a_copy_of_an_event_adds_no_violation_and_moves_no_date(rules, evs, crs, conds, proposal, tz, data):
    if not evs:
        return
    original = evaluate(Timeline(evs, crs, conds), rules, proposal, tz)
    copied = data.draw(st.sampled_from(evs))
    copy = replace(copied, id=f"{copied.id}-copy")
    with_copy = evaluate(Timeline([*evs, copy], crs, conds), rules, proposal, tz)

    def plain(violations):
        return [
            v if v.conflicts_with is None else replace(v, conflicts_with=replace(v.conflicts_with, id=""))
            for v in violations
        ]

    assert plain(with_copy.violations) == plain(original.violations)
    assert with_copy.earliest_eligible_start == original.earliest_eligible_start
    assert len(set(plain(with_copy.violations))) == len(with_copy.violations)


@st.composite
def pairs(draw, rule_list, at_a: int) -> tuple[str, str, int]:
    """The pair's two procedures and where the second starts (minutes from the epoch): any two anywhere, or a rule's
    two within a day and a bit of the end of its gap, one before the other in either order, where the two clinics'
    dates can disagree."""
    if not rule_list or draw(st.booleans()):
        return draw(st.sampled_from(CODES)), draw(st.sampled_from(CODES)), draw(minutes)
    rule = draw(st.sampled_from(rule_list))
    first_day = moment(at_a).date()
    gap = rule.add_to_date(first_day) - first_day if rule.is_calendar else timedelta(hours=rule.gap_value)
    near = gap + timedelta(minutes=draw(st.integers(min_value=-720, max_value=720)))
    if draw(st.booleans()):  # a is the earlier procedure, b the later one after it
        return rule.earlier_procedure, rule.later_procedure, at_a + int(near.total_seconds() // 60)
    return rule.later_procedure, rule.earlier_procedure, at_a - int(near.total_seconds() // 60)


@settings(PROPERTY_SETTINGS, max_examples=600)  # cheap examples; a pair whose two dates disagree is a narrow target
@given(
    interval_rules(),
    minutes,
    st.sampled_from(AREAS),
    st.sampled_from(AREAS),
    st.sampled_from(ZONES),
    st.sampled_from(ZONES),
    st.data(),
)
def test_a_pair_conflicts_the_same_way_whichever_was_booked_first(rule_list, at_a, area_a, area_b, tz_a, tz_b, data):
    """Each at its own clinic, in its own zone (one zone when both are drawn the same): a day is read where the
    event happens, so the answer does not depend on which clinic asks first (brief 2 and 6)."""
    pair_rules = [r for r in rule_list if r.earlier_procedure]
    rules = RuleBook(pair_rules)
    code_a, code_b, at_b = data.draw(pairs(pair_rules, at_a))
    a = ProcedureEvent("a", code_a, moment(at_a), area_a, state=EventState.BOOKED, tz=tz_a)
    b = ProcedureEvent("b", code_b, moment(at_b), area_b, state=EventState.BOOKED, tz=tz_b)

    b_after_a = evaluate(Timeline([a]), rules, Proposal(code_b, b.start_at, area_b), tz_b)
    a_after_b = evaluate(Timeline([b]), rules, Proposal(code_a, a.start_at, area_a), tz_a)

    assert b_after_a.eligible == a_after_b.eligible
    assert {v.rule_id for v in b_after_a.violations} == {v.rule_id for v in a_after_b.violations}


@PROPERTY_SETTINGS
@given(
    rulebooks(),
    events(),
    courses(),
    proposals,
    st.sampled_from(ZONES),
    st.lists(st.integers(min_value=0, max_value=90 * 24 * 60), min_size=1, max_size=20),
)
def test_blocked_ranges_agree_with_single_evaluations(rules, evs, crs, proposal, tz, offsets):
    timeline = Timeline(evs, crs)
    until = proposal.start_at + timedelta(days=90)
    spans = blocked_ranges(timeline, rules, proposal, tz, until)

    for offset in offsets:
        when = proposal.start_at + timedelta(minutes=offset)
        single = evaluate(timeline, rules, Proposal(proposal.procedure, when, proposal.area), tz)
        assert spans.blocks(when) == (not single.eligible), when
