"""Helpers shared by scheduler tests and the probes that reuse them: the Hypothesis strategies for random rule books,
timelines and medication courses (tests/scheduler/test_rules_properties.py), and the step-by-step definition of the
free slots `Schedule.free_slots` must agree with (tests/scheduler/test_free_slots_properties.py).
"""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from scheduler.availability import Schedule, Slot
from scheduler.rules import ContraindicationRule, EventState, IntervalRule, MedicationCourse, ProcedureEvent, RuleBook
from tests.rulebook import default_rulebook

# --- Random rule books, timelines and courses ----------------------------------------------------------------------

CODES = ["botox", "filler", "microneedling", "plasma_pen"]
DRUGS = ["isotretinoin", "anticoagulant"]
AREAS = [None, "face", "hands"]
# Zones with DST at 01:00/02:00, at midnight (Havana), by 30 minutes (Lord Howe), none, and two a day apart (an
# instant is often on different dates in Auckland and Honolulu): a clinic's and its sister sites' in one organisation.
ZONES = [
    ZoneInfo(z)
    for z in (
        "Europe/London",
        "America/New_York",
        "America/Havana",
        "Australia/Lord_Howe",
        "UTC",
        "Pacific/Auckland",
        "Pacific/Honolulu",
    )
]
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
SPAN_MINUTES = 2 * 365 * 24 * 60

minutes = st.integers(min_value=0, max_value=SPAN_MINUTES)


def moment(offset: int) -> datetime:
    return EPOCH + timedelta(minutes=offset)


@st.composite
def interval_rules(draw):
    count = draw(st.integers(min_value=0, max_value=6))
    found = []
    for index in range(count):
        from_drug = draw(st.booleans()) and draw(st.booleans())
        found.append(
            IntervalRule(
                id=f"r{index}",
                later_procedure=draw(st.sampled_from(CODES)),
                gap_value=draw(st.integers(min_value=1, max_value=8)),
                gap_unit=draw(st.sampled_from(["hours", "days", "weeks", "months"])),
                severity=draw(st.sampled_from(["block", "block", "warn"])),
                earlier_procedure=None if from_drug else draw(st.sampled_from(CODES)),
                earlier_medication=draw(st.sampled_from(DRUGS)) if from_drug else None,
                same_area_only=False if from_drug else draw(st.booleans()),
            )
        )
    return found


@st.composite
def rulebooks(draw):
    if draw(st.booleans()):
        return default_rulebook()
    contraindications = []
    if draw(st.booleans()):
        contraindications.append(
            ContraindicationRule("c1", draw(st.sampled_from(CODES)), "absolute", medication="anticoagulant")
        )
    return RuleBook(draw(interval_rules()), contraindications)


@st.composite
def events(draw, max_size=8):
    found = []
    for index in range(draw(st.integers(min_value=0, max_value=max_size))):
        seconds = draw(st.sampled_from([0, 0, 0, 17]))  # reported times need not be whole minutes
        found.append(
            ProcedureEvent(
                id=f"e{index}",
                procedure=draw(st.sampled_from(CODES)),
                start_at=moment(draw(minutes)) + timedelta(seconds=seconds),
                area=draw(st.sampled_from(AREAS)),
                state=draw(st.sampled_from(list(EventState))),
                # Where it happens: a sister site's zone, or (None) the zone of the clinic asking.
                tz=draw(st.sampled_from([None, None, *ZONES])),
            )
        )
    return found


@st.composite
def courses(draw):
    found = []
    for index in range(draw(st.integers(min_value=0, max_value=2))):
        start = date(2026, 1, 1) + timedelta(days=draw(st.integers(min_value=0, max_value=700)))
        ended = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=200)))
        found.append(
            MedicationCourse(
                f"m{index}",
                draw(st.sampled_from(DRUGS)),
                start,
                None if ended is None else start + timedelta(days=ended),
            )
        )
    return found


# --- Free slots by their definition -------------------------------------------------------------------------------


def reference(schedule: Schedule, *, duration, step, window_start, window_end, blocked) -> list[Slot]:
    """The definition, one step of the grid at a time."""
    found_all: list[Slot] = []
    day = window_start.astimezone(schedule.tz).date()
    while day <= window_end.astimezone(schedule.tz).date():
        found = []
        for practitioner in schedule.practitioners:
            spans = [
                *schedule._patient_busy.spans,
                *schedule._off.get(practitioner.id, schedule._empty).spans,
                *schedule._booked.get(practitioner.id, schedule._empty).spans,
            ]
            for period_start, period_end in schedule._periods.get((practitioner.id, day.weekday()), ()):
                start = datetime.combine(day, period_start, tzinfo=schedule.tz).astimezone(UTC)
                stop = datetime.combine(day, period_end, tzinfo=schedule.tz).astimezone(UTC)
                while start + duration <= stop:
                    end = start + duration
                    clear = not any(s < end and e > start for s, e in spans)
                    allowed = blocked is None or not any(
                        (lo is None or lo <= start) and (hi is None or start < hi) for lo, hi in blocked.spans
                    )
                    if window_start <= start <= window_end and allowed and clear:
                        found.append(
                            (start, practitioner.name, Slot(start, end, str(practitioner.id), practitioner.name))
                        )
                    start += step
        found.sort(key=lambda row: (row[0], row[1]))
        found_all += [slot for _, _, slot in found]
        day += timedelta(days=1)
    return found_all
