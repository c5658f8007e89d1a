"""The course planner (plans/planner.py), without a database.

Examples pin the shipped courses against the default rules; Hypothesis checks the invariants over random
histories, rule books, calendars, zones and starts around DST changes and month ends:

- every placed session is eligible under every block rule (history, bookings, the plan's own earlier
  sessions) and falls inside its window, on a free slot;
- the first session is the earliest such slot, unless the plan says it was moved for the later ones;
- the same input gives the same plan, whatever the order of the timeline;
- an infeasible plan names a session and its window.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.relativedelta import relativedelta
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plans.planner import (
    Course,
    Gap,
    PlanInputError,
    Preferences,
    check_course_shape,
    plan_course,
    session_event_id,
)
from scheduler.rules import EventState, MedicationCourse, ProcedureEvent, Proposal, Timeline, evaluate
from tests.rulebook import default_rulebook
from tests.scheduler.helpers import CODES, courses, events, rulebooks

LONDON, NEW_YORK = ZoneInfo("Europe/London"), ZoneInfo("America/New_York")
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Slot:
    start_at: datetime
    end_at: datetime
    practitioner_id: str
    practitioner_name: str


class Calendar:
    """Two practitioners working Monday to Saturday 09:00-18:00 local, hourly slots, some taken."""

    def __init__(self, tz, taken=frozenset(), workdays=frozenset(range(6)), duration=HOUR):
        self.tz, self.taken, self.workdays, self.duration = tz, taken, workdays, duration

    def __call__(self, lo: datetime, hi: datetime):
        day = lo.astimezone(self.tz).date()
        while datetime.combine(day, time.min, tzinfo=self.tz) < hi:
            if day.weekday() in self.workdays:
                for hour in range(9, 18):
                    for pid, name in (("p1", "Ada"), ("p2", "Bea")):
                        start = datetime.combine(day, time(hour), tzinfo=self.tz).astimezone(UTC)
                        if lo <= start < hi and (day.toordinal(), hour, pid) not in self.taken:
                            yield Slot(start, start + self.duration, pid, name)
            day += timedelta(days=1)


def microneedling_course(sessions=3):
    return Course("microneedling", sessions, Gap(4, "weeks"), Gap(4, "weeks"), Gap(6, "weeks"), HOUR)


def at(day: date, hour: int, tz=LONDON) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=tz).astimezone(UTC)


# --- Examples -----------------------------------------------------------------------------------


def test_a_clear_record_gets_each_session_at_the_ideal_gap():
    plan = plan_course(
        timeline=Timeline(),
        rulebook=default_rulebook(),
        course=microneedling_course(),
        start_at=at(date(2026, 3, 2), 9),
        tz=LONDON,
        free_slots=Calendar(LONDON),
    )
    assert plan.feasible
    assert [s.start_at for s in plan.sessions] == [
        at(date(2026, 3, 2), 9),
        at(date(2026, 3, 30), 9),
        at(date(2026, 4, 27), 9),
    ]
    assert plan.sessions[1].window.earliest == date(2026, 3, 30)
    assert plan.sessions[1].window.latest == date(2026, 4, 13)
    assert "ideal 4 weeks after session 1" in plan.sessions[1].why


def test_a_botox_booked_near_the_ideal_date_pushes_the_session_and_says_why():
    # Botox booked 1 April: microneedling must be 2 weeks after it and 3 weeks before it.
    botox = ProcedureEvent("b1", "botox", at(date(2026, 4, 1), 10), state=EventState.BOOKED)
    plan = plan_course(
        timeline=Timeline([botox]),
        rulebook=default_rulebook(),
        course=microneedling_course(2),
        start_at=at(date(2026, 2, 2), 9),
        tz=LONDON,
        free_slots=Calendar(LONDON),
    )
    assert plan.feasible
    first, second = plan.sessions
    assert first.start_at == at(date(2026, 2, 2), 9)
    # Ideal 2 March; allowed only up to 11 March (3 weeks before the Botox): the ideal stands.
    assert second.start_at == at(date(2026, 3, 2), 9)


def test_when_the_rules_close_a_window_the_earlier_session_moves_for_it():
    # Botox booked 8 April: microneedling is refused from 19 March to 21 April. Session 1 on 2 March makes
    # session 2's window 30 March - 13 April, all refused; the planner moves session 1 instead.
    botox = ProcedureEvent("b1", "botox", at(date(2026, 4, 8), 10), state=EventState.BOOKED)
    plan = plan_course(
        timeline=Timeline([botox]),
        rulebook=default_rulebook(),
        course=microneedling_course(2),
        start_at=at(date(2026, 3, 2), 9),
        tz=LONDON,
        free_slots=Calendar(LONDON),
    )
    assert plan.feasible
    first, second = plan.sessions
    assert first.start_at.date() > date(2026, 3, 2)
    assert "moved so that the later sessions fit" in first.why
    for session in plan.sessions:
        assert not evaluate(
            Timeline([botox]), default_rulebook(), Proposal("microneedling", session.start_at), LONDON
        ).blocking


def test_an_ongoing_isotretinoin_course_is_named_as_the_obstacle():
    course = MedicationCourse("m1", "isotretinoin", date(2026, 1, 1), None)
    plan = plan_course(
        timeline=Timeline(medications=[course]),
        rulebook=default_rulebook(),
        course=microneedling_course(),
        start_at=at(date(2026, 3, 2), 9),
        tz=LONDON,
        free_slots=Calendar(LONDON),
    )
    assert not plan.feasible
    assert plan.obstacle.index == 1
    assert "isotretinoin" in plan.obstacle.message.lower()
    assert plan.obstacle.violations[0].rule_id == "isotretinoin-then-microneedling-block"


def test_a_full_calendar_is_named_as_the_obstacle_of_its_session():
    # Mondays only, and every Monday from four weeks on is taken: session 1 fits, session 2 never does.
    taken = frozenset(
        (date(2026, 3, 2).toordinal() + offset, hour, pid)
        for offset in range(28, 440, 7)
        for hour in range(9, 18)
        for pid in ("p1", "p2")
    )
    plan = plan_course(
        timeline=Timeline(),
        rulebook=default_rulebook(),
        course=microneedling_course(2),
        start_at=at(date(2026, 3, 2), 9),
        tz=LONDON,
        free_slots=Calendar(LONDON, taken=taken, workdays=frozenset([0])),
    )
    assert not plan.feasible
    assert plan.obstacle.index == 2
    assert plan.obstacle.window.earliest == date(2026, 3, 30)
    assert "no practitioner has a free slot" in plan.obstacle.message


def test_preferences_filter_practitioner_weekday_and_time_of_day():
    plan = plan_course(
        timeline=Timeline(),
        rulebook=default_rulebook(),
        course=microneedling_course(),
        start_at=at(date(2026, 3, 2), 9),
        tz=LONDON,
        free_slots=Calendar(LONDON),
        preferences=Preferences(practitioner_id="p2", weekdays=frozenset({2}), times_of_day=frozenset({"afternoon"})),
    )
    assert plan.feasible
    for session in plan.sessions:
        local = session.start_at.astimezone(LONDON)
        assert (session.practitioner_id, local.weekday(), local.hour) == ("p2", 2, 12)


@pytest.mark.parametrize(
    ("sessions", "gaps", "field"),
    [
        (0, ((4, "weeks"), (4, "weeks"), (6, "weeks")), "sessions"),
        (3, ((7, "weeks"), (7, "weeks"), (6, "weeks")), "min_gap"),
        (3, ((4, "weeks"), (8, "weeks"), (6, "weeks")), "ideal_gap"),
        (3, ((3, "months"), (12, "weeks"), (4, "months")), "ideal_gap"),  # 12 weeks < 3 months
    ],
)
def test_a_course_that_cannot_make_a_window_is_refused_naming_the_field(sessions, gaps, field):
    with pytest.raises(PlanInputError) as refused:
        check_course_shape(
            sessions=sessions, **{k: Gap(*v) for k, v in zip(("min_gap", "ideal_gap", "max_gap"), gaps, strict=True)}
        )
    assert refused.value.field == field


def test_an_unknown_gap_unit_is_refused():
    with pytest.raises(PlanInputError) as refused:
        Gap(2, "fortnights")
    assert refused.value.field == "unit"


# --- Properties -------------------------------------------------------------------------------------


templates = st.sampled_from(
    [
        Course("microneedling", 3, Gap(4, "weeks"), Gap(4, "weeks"), Gap(6, "weeks"), HOUR),
        Course("plasma_pen", 2, Gap(6, "weeks"), Gap(8, "weeks"), Gap(8, "weeks"), HOUR),
        Course("botox", 3, Gap(3, "months"), Gap(14, "weeks"), Gap(4, "months"), HOUR),
        Course("filler", 4, Gap(10, "days"), Gap(2, "weeks"), Gap(1, "months"), HOUR),
    ]
)
# Starts near DST changes (London and New York, spring and autumn) and month ends.
special_days = st.sampled_from(
    [
        date(2026, 3, 8),
        date(2026, 3, 29),
        date(2026, 10, 25),
        date(2026, 11, 1),
        date(2026, 1, 31),
        date(2026, 8, 31),
        date(2027, 2, 28),
        date(2027, 12, 31),
    ]
)
starts = st.one_of(
    st.builds(lambda d, h: (d, h), special_days, st.integers(0, 23)),
    st.builds(lambda n, h: (date(2026, 1, 1) + timedelta(days=n), h), st.integers(0, 600), st.integers(0, 23)),
)
taken_slots = st.frozensets(
    st.tuples(
        st.integers(date(2026, 1, 1).toordinal(), date(2028, 6, 1).toordinal()),
        st.integers(9, 17),
        st.sampled_from(["p1", "p2"]),
    ),
    max_size=300,
)
PROPERTY_SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _plan(rulebook, history, meds, course, start, tz, taken):
    day, hour = start
    return plan_course(
        timeline=Timeline(history, meds),
        rulebook=rulebook,
        course=course,
        start_at=datetime.combine(day, time(hour), tzinfo=UTC),
        tz=tz,
        free_slots=Calendar(tz, taken),
    )


@PROPERTY_SETTINGS
@given(rulebooks(), events(), courses(), templates, starts, st.sampled_from([LONDON, NEW_YORK]), taken_slots)
def test_every_placed_session_is_eligible_free_and_inside_its_window(rulebook, history, meds, course, start, tz, taken):
    plan = _plan(rulebook, history, meds, course, start, tz, taken)
    if not plan.feasible:
        assert 1 <= plan.obstacle.index <= course.sessions
        assert plan.obstacle.message
        return
    assert [s.index for s in plan.sessions] == list(range(1, course.sessions + 1))
    timeline = Timeline(history, meds)
    previous = None
    free = Calendar(tz, taken)
    for session in plan.sessions:
        local_day = session.start_at.astimezone(tz).date()
        assert session.window.holds(local_day)
        if previous is not None:
            assert session.window.earliest == course.min_gap.add_to(previous)
            assert session.window.ideal == course.ideal_gap.add_to(previous)
            assert session.window.latest == course.max_gap.add_to(previous)
        verdict = evaluate(timeline, rulebook, Proposal(course.procedure, session.start_at, course.area), tz)
        assert verdict.eligible, verdict.blocking
        assert any(
            s.start_at == session.start_at and s.practitioner_id == session.practitioner_id
            for s in free(session.start_at, session.start_at + timedelta(minutes=1))
        )
        timeline = timeline.with_events(
            [
                ProcedureEvent(
                    session_event_id(session.index), course.procedure, session.start_at, course.area, EventState.BOOKED
                )
            ]
        )
        previous = local_day


@PROPERTY_SETTINGS
@given(rulebooks(), events(), courses(), templates, starts, st.sampled_from([LONDON, NEW_YORK]), taken_slots)
def test_no_earlier_slot_would_do_for_the_first_session_unless_it_moved_for_the_rest(
    rulebook, history, meds, course, start, tz, taken
):
    plan = _plan(rulebook, history, meds, course, start, tz, taken)
    if not plan.feasible or "moved so that the later sessions fit" in plan.sessions[0].why:
        return
    first = plan.sessions[0]
    day, hour = start
    lo = datetime.combine(day, time(hour), tzinfo=UTC)
    timeline = Timeline(history, meds)
    for slot in Calendar(tz, taken)(lo, first.start_at):
        verdict = evaluate(timeline, rulebook, Proposal(course.procedure, slot.start_at, course.area), tz)
        assert not verdict.eligible, f"{slot.start_at} was free and eligible before {first.start_at}"


@PROPERTY_SETTINGS
@given(
    rulebooks(), events(), courses(), templates, starts, st.sampled_from([LONDON, NEW_YORK]), taken_slots, st.randoms()
)
def test_same_input_same_plan(rulebook, history, meds, course, start, tz, taken, rnd):
    plan = _plan(rulebook, history, meds, course, start, tz, taken)
    shuffled = list(history)
    rnd.shuffle(shuffled)
    again = _plan(rulebook, shuffled, meds, course, start, tz, taken)
    assert again == plan


@settings(max_examples=60, deadline=None)
@given(special_days, st.sampled_from([LONDON, NEW_YORK]), st.sampled_from(CODES))
def test_month_gaps_from_a_month_end_follow_the_calendar(day, tz, code):
    course = Course(code, 3, Gap(1, "months"), Gap(1, "months"), Gap(2, "months"), HOUR)
    plan = plan_course(
        timeline=Timeline(),
        rulebook=default_rulebook(),
        course=course,
        start_at=at(day, 0, tz),
        tz=tz,
        free_slots=Calendar(tz, workdays=frozenset(range(7))),
    )
    assert plan.feasible
    days = [s.start_at.astimezone(tz).date() for s in plan.sessions]
    # 31 January + 1 month = 28 February; the local hour stays 09:00 across DST changes.
    assert days == [day, day + relativedelta(months=1), day + relativedelta(months=1) + relativedelta(months=1)]
    assert {s.start_at.astimezone(tz).hour for s in plan.sessions} == {9}


@PROPERTY_SETTINGS
@given(rulebooks(), events(), courses(), templates, starts, st.sampled_from([LONDON, NEW_YORK]), taken_slots)
def test_each_later_session_takes_the_day_nearest_its_ideal_that_fits(
    rulebook, history, meds, course, start, tz, taken
):
    plan = _plan(rulebook, history, meds, course, start, tz, taken)
    if not plan.feasible:
        return
    timeline = Timeline(history, meds)
    free = Calendar(tz, taken)
    for session in plan.sessions:
        window, placed_day = session.window, session.start_at.astimezone(tz).date()
        if session.index > 1 and "moved so that the later sessions fit" not in session.why:
            distance = abs((placed_day - window.ideal).days)
            for offset in range(-distance, distance + 1):
                day = window.ideal + timedelta(days=offset)
                if not window.holds(day) or (abs(offset) == distance and day >= placed_day):
                    continue  # not nearer (a tie goes to the earlier day)
                lo = datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)
                for slot in free(lo, lo + timedelta(days=1)):
                    verdict = evaluate(timeline, rulebook, Proposal(course.procedure, slot.start_at, course.area), tz)
                    assert not verdict.eligible, f"session {session.index}: {slot.start_at} is nearer its ideal"
        timeline = timeline.with_events(
            [
                ProcedureEvent(
                    session_event_id(session.index), course.procedure, session.start_at, course.area, EventState.BOOKED
                )
            ]
        )
