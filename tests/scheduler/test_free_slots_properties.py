"""`Schedule.free_slots` steps over busy calendars and blocked weeks in one move each (docs/benchmarks.md, twelfth
part). Whatever it skips, it must offer exactly the slots the definition gives: every step of every working period,
in the window, that no blocking rule forbids and that meets none of the patient's or the practitioner's busy spans.
Checked against that definition, written out step by step, across DST changes, leap days and month ends."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
