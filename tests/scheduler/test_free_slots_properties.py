"""`Schedule.free_slots` steps over busy calendars and blocked weeks in one move each (docs/benchmarks.md, twelfth
part). Whatever it skips, it must offer exactly the slots the definition gives: every step of every working period,
in the window, that no blocking rule forbids and that meets none of the patient's or the practitioner's busy spans.
Checked against that definition, written out step by step, across DST changes, leap days and month ends."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler import availability
from scheduler.availability import Schedule, _Busy
from scheduler.rules import BlockedSpans
from tests.scheduler.helpers import reference

ZONES = [ZoneInfo("Europe/London"), ZoneInfo("America/New_York"), ZoneInfo("Australia/Lord_Howe"), UTC]
# Days just before a DST change in one of the zones, a leap day, a month's and a year's end.
FIRST_DAYS = [
    date(2026, 3, 27),
    date(2026, 10, 23),
    date(2026, 3, 6),
    date(2026, 10, 2),
    date(2024, 2, 27),
    date(2026, 1, 30),
    date(2026, 12, 30),
]


@st.composite
def cases(draw):
    tz = draw(st.sampled_from(ZONES))
    first_day = draw(st.sampled_from(FIRST_DAYS))
    origin = datetime.combine(first_day, time(0), tzinfo=tz).astimezone(UTC)
    minutes = st.integers(min_value=0, max_value=5 * 24 * 60)

    def spans(max_size: int, longest: int) -> list[tuple[datetime, datetime]]:
        raw = draw(st.lists(st.tuples(minutes, st.integers(min_value=1, max_value=longest)), max_size=max_size))
        return [(origin + timedelta(minutes=a), origin + timedelta(minutes=a + n)) for a, n in raw]

    practitioners = [
        SimpleNamespace(id=uuid.UUID(int=i + 1), name=name)
        for i, name in enumerate(draw(st.lists(st.sampled_from("ABC"), min_size=1, max_size=3, unique=True)))
    ]
    periods: dict = {}
    for practitioner in practitioners:
        for weekday in draw(st.sets(st.integers(0, 6), max_size=7)):
            opens = draw(st.integers(min_value=0, max_value=20 * 60))
            closes = draw(st.integers(min_value=opens + 1, max_value=24 * 60 - 1))
            second = draw(st.booleans()) and closes < 23 * 60
            periods[(practitioner.id, weekday)] = [(time(opens // 60, opens % 60), time(closes // 60, closes % 60))]
            if second:
                periods[(practitioner.id, weekday)].append((time(closes // 60, closes % 60), time(23, 59)))
    # Blocked starts: merged ranges, sorted, apart; the first may have no beginning and the last no end.
    cuts = sorted(draw(st.sets(minutes, max_size=8)))
    blocked_spans = []
    for lo, hi in zip(cuts[::2], cuts[1::2], strict=False):
        if hi > lo:
            blocked_spans.append([origin + timedelta(minutes=lo), origin + timedelta(minutes=hi)])
    if blocked_spans and draw(st.booleans()):
        blocked_spans[0][0] = None
    if blocked_spans and draw(st.booleans()):
        blocked_spans[-1][1] = None
    blocked = BlockedSpans([tuple(span) for span in blocked_spans]) if draw(st.booleans()) else None

    schedule = Schedule.__new__(Schedule)
    schedule.tz, schedule.practitioners, schedule._periods = tz, practitioners, periods
    schedule._patient_busy = _Busy(spans(4, 240))
    schedule._off = {p.id: _Busy(spans(2, 3000)) for p in practitioners if draw(st.booleans())}
    schedule._booked = {p.id: _Busy(spans(12, 180)) for p in practitioners}
    schedule._empty = _Busy(())
    window_start = origin + timedelta(minutes=draw(minutes))
    window_end = window_start + timedelta(minutes=draw(st.integers(min_value=0, max_value=4 * 24 * 60)))
    step = timedelta(minutes=draw(st.sampled_from([5, 10, 15, 30, 45])))
    duration = timedelta(minutes=draw(st.sampled_from([10, 15, 30, 45, 60, 90, 120])))
    return schedule, {
        "duration": duration,
        "step": step,
        "window_start": window_start,
        "window_end": window_end,
        "blocked": blocked,
    }


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_free_slots_offers_exactly_the_slots_the_definition_gives(case):
    schedule, asked = case
    assert list(schedule.free_slots(**asked)) == reference(schedule, **asked)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.data())
def test_the_slot_list_reads_as_the_definition_whole_or_in_any_part(case, data):
    """`free_slot_list` (the API's pages): its length is counted from runs of free starts, its parts made a day at a
    time as read. Read fresh each time, so that a part read first, before the length, is checked too."""
    schedule, asked = case
    expected = reference(schedule, **asked)
    n = len(expected)
    first = data.draw(st.integers(min_value=0, max_value=n + 3))
    stop = data.draw(st.integers(min_value=0, max_value=n + 60))

    assert schedule.free_slot_list(**asked)[first:stop] == expected[first:stop]
    assert list(schedule.free_slot_list(**asked)) == expected
    both = schedule.free_slot_list(**asked)
    assert (both[:stop], len(both), both[first:]) == (expected[:stop], n, expected[first:])
    assert schedule.free_slot_list(**asked)[-7::2] == expected[-7::2]
    if n:
        position = data.draw(st.integers(min_value=-n, max_value=n - 1))
        assert schedule.free_slot_list(**asked)[position] == expected[position]
    with pytest.raises(IndexError):
        schedule.free_slot_list(**asked)[n]


def _one_practitioner(tz, day: date, periods: list[tuple[time, time]], booked=()) -> Schedule:
    practitioner = SimpleNamespace(id=uuid.UUID(int=9), name="Dr Runs")
    schedule = Schedule.__new__(Schedule)
    schedule.tz, schedule.practitioners = tz, [practitioner]
    schedule._periods = {(practitioner.id, weekday): list(periods) for weekday in range(7)}
    schedule._patient_busy, schedule._off, schedule._empty = _Busy(()), {}, _Busy(())
    schedule._booked = {practitioner.id: _Busy(booked)}
    return schedule


def test_a_start_two_periods_share_is_counted_once():
    """Periods that overlap in real time (the night the clocks go back gives them): each start is offered once,
    and the length, counted without making the slots, says so."""
    day = date(2026, 3, 2)
    schedule = _one_practitioner(UTC, day, [(time(9), time(12)), (time(10, 30), time(13)), (time(15), time(16))])
    asked = {
        "duration": timedelta(minutes=30),
        "step": timedelta(minutes=30),
        "window_start": datetime.combine(day, time(0), tzinfo=UTC),
        "window_end": datetime.combine(day, time(23), tzinfo=UTC),
    }
    slots = list(schedule.free_slots(**asked))
    starts = [slot.start_at.time() for slot in slots]

    assert starts == [time(9), time(9, 30), time(10), time(10, 30), time(11), time(11, 30), time(12), time(12, 30)] + [
        time(15),
        time(15, 30),
    ]
    assert len(schedule.free_slot_list(**asked)) == len(slots) == 10
    assert list(schedule.free_slot_list(**asked)) == slots


def test_a_page_makes_only_its_own_days_slots(monkeypatch):
    """A page of a long window (the API's first page of 90 days) makes the slots of the days it shows; the rest
    are counted."""
    made = []
    original = availability._slots_of

    def counted(runs, duration, step):
        made.append(runs[0].start.date())
        return original(runs, duration, step)

    monkeypatch.setattr(availability, "_slots_of", counted)
    day = date(2026, 3, 2)
    schedule = _one_practitioner(UTC, day, [(time(9), time(18))])
    asked = {
        "duration": timedelta(minutes=30),
        "step": timedelta(minutes=15),
        "window_start": datetime.combine(day, time(0), tzinfo=UTC),
        "window_end": datetime.combine(day + timedelta(days=89), time(23), tzinfo=UTC),
    }
    slots = schedule.free_slot_list(**asked)
    page = slots[:50]  # 35 a day: the first two days

    assert len(slots) == 90 * 35 and len(page) == 50
    assert made == [day, day + timedelta(days=1)]
    assert slots[40 * 35 : 40 * 35 + 3] == list(schedule.free_slots(**asked))[40 * 35 : 40 * 35 + 3]
    assert made[2] == day + timedelta(days=40)
    with pytest.raises(TypeError):
        slots["0"]


def test_a_busy_day_is_stepped_over_without_losing_the_slot_right_after_it():
    """A practitioner booked 09:00-12:07 with a 15-minute grid from 09:00: the first free slot is 12:15 (the
    first step at or after the booking's end), and the blocked range up to 13:00 moves it to 13:00."""
    tz = ZoneInfo("Europe/London")
    day = date(2026, 3, 30)  # the Monday after the clocks went forward
    at = lambda h, m: datetime.combine(day, time(h, m), tzinfo=tz).astimezone(UTC)  # noqa: E731
    practitioner = SimpleNamespace(id=uuid.UUID(int=7), name="Dr Grid")
    schedule = Schedule.__new__(Schedule)
    schedule.tz, schedule.practitioners = tz, [practitioner]
    schedule._periods = {(practitioner.id, day.weekday()): [(time(9), time(17))]}
    schedule._patient_busy, schedule._off, schedule._empty = _Busy(()), {}, _Busy(())
    schedule._booked = {practitioner.id: _Busy([(at(9, 0), at(10, 0)), (at(9, 30), at(12, 7))])}
    asked = {"duration": timedelta(minutes=30), "step": timedelta(minutes=15)}
    window = {"window_start": at(0, 0), "window_end": at(23, 0)}
    first = next(schedule.free_slots(**asked, **window))
    assert first.start_at == at(12, 15)
    blocked = BlockedSpans([(None, at(13, 0))])
    assert next(schedule.free_slots(**asked, **window, blocked=blocked)).start_at == at(13, 0)
    assert list(schedule.free_slots(**asked, **window, blocked=BlockedSpans([(at(8, 0), None)]))) == []
