"""The course planner: pure functions that place every session of a treatment plan.

No Django, no database (an import-linter contract keeps it so): like the rule
engine it sits on (`scheduler/rules.py`), it takes a patient's timeline, the
rule book, the course, a start and the practitioners' free slots (a callable),
and returns the sessions it placed, or the session and the rule or window that
stands in the way. Same input, same plan.

How it places a session (docs/plans.md): the first session's window opens on
the start date and runs a year; each later one's opens `min_gap` after the
previous session's local date, is ideal `ideal_gap` after it and closes
`max_gap` after it (calendar arithmetic in the clinic's zone, like the
rules). Within its window a session takes the date nearest the ideal (the
earlier of two equally near), and on that date the first free slot that no
block rule forbids against the history, the other bookings and the plan's own
earlier sessions. When a later session finds no room, the earlier one is
tried on its next-best date (a bounded search), so a plan fails only when no
arrangement within the budget fits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Protocol

from dateutil.relativedelta import relativedelta

from scheduler import rules

GAP_UNITS = ("days", "weeks", "months")
TIMES_OF_DAY = {"morning": (0, 12), "afternoon": (12, 17), "evening": (17, 24)}  # local hours [from, to)
HORIZON_DAYS = 365  # "within a year": how far the first session may be pushed
MAX_SESSIONS = 24
# How far from the ideal day (in days) each successive read of the calendar reaches.
_RINGS = (0, 3, 10, 24, 60, 10_000)
# Candidate placements tried in all (the backtracking search), so a hopeless plan is answered quickly.
SEARCH_BUDGET = 200


class PlanInputError(ValueError):
    """A course that cannot be planned as given, naming the field at fault."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class Gap:
    value: int
    unit: str  # days, weeks, months

    def __post_init__(self) -> None:
        if self.unit not in GAP_UNITS:
            raise PlanInputError("unit", f"A gap is counted in days, weeks or months, not {self.unit!r}.")
        if not isinstance(self.value, int) or self.value < 0:
            raise PlanInputError("value", "A gap is a whole number of days, weeks or months, 0 or more.")

    def add_to(self, day: date) -> date:
        if self.unit == "days":
            return day + timedelta(days=self.value)
        if self.unit == "weeks":
            return day + timedelta(weeks=self.value)
        return day + relativedelta(months=self.value)

    def latest_before(self, day: date) -> date:
        """The latest day this gap after which is still no later than `day` (`add_to(result) <= day`): how far
        before a later session an earlier one may fall and keep the gap. Months count as `add_to` counts them, so
        before 28 February by a month is 31 January."""
        if self.unit != "months":
            return day - timedelta(days=self.value if self.unit == "days" else 7 * self.value)
        found = day - relativedelta(months=self.value)
        while self.add_to(found + timedelta(days=1)) <= day:  # month ends: at most three days on
            found += timedelta(days=1)
        return found

    def earliest_before(self, day: date) -> date:
        """The earliest day this gap after which is still no earlier than `day` (`add_to(result) >= day`): how far
        before a later session an earlier one may fall and stay within a maximum gap of it. Months count as `add_to`
        counts them, so before 31 March by a month is 1 March."""
        if self.unit != "months":
            return day - timedelta(days=self.value if self.unit == "days" else 7 * self.value)
        found = day - relativedelta(months=self.value)
        while self.add_to(found) < day:  # month ends: at most three days on
            found += timedelta(days=1)
        while self.add_to(found - timedelta(days=1)) >= day:
            found -= timedelta(days=1)
        return found

    def describe(self) -> str:
        unit = self.unit[:-1] if self.value == 1 else self.unit
        return f"{self.value} {unit}"


# Every month start of four years in a row, the leap year in each place among them: a gap order that holds from each
# holds from any day (month arithmetic differs only by month length and leap day; a gap over a year spans two
# Februaries, and two common ones in a row, 2025 to 2027, make 13 months 393 days, which two years did not see).
_REFERENCE_DAYS = tuple(
    date(year, month, day)
    for year in (2025, 2026, 2027, 2028)
    for month in range(1, 13)
    for day in (1, 28, 31)
    if day <= 28 or month in (1, 3, 5, 7, 8, 10, 12)
)


def check_course_shape(*, sessions: int, min_gap: Gap, ideal_gap: Gap, max_gap: Gap) -> None:
    """Refuse a course whose gaps cannot make a window: zero sessions, min after max, ideal outside them."""
    if not isinstance(sessions, int) or sessions < 1:
        raise PlanInputError("sessions", "A course has at least one session.")
    if sessions > MAX_SESSIONS:
        raise PlanInputError("sessions", f"A course has at most {MAX_SESSIONS} sessions.")
    if sessions > 1 and min_gap.value < 1:
        raise PlanInputError("min_gap", "Sessions of a course are at least a day apart.")
    for name, gap in (("min_gap", min_gap), ("ideal_gap", ideal_gap), ("max_gap", max_gap)):
        if gap.value > rules.MAX_GAP_VALUE[gap.unit]:
            raise PlanInputError(
                name, f"A gap is at most {rules.MAX_GAP_YEARS} years ({rules.MAX_GAP_VALUE[gap.unit]} {gap.unit})."
            )
    for day in _REFERENCE_DAYS:
        if min_gap.add_to(day) > max_gap.add_to(day):
            raise PlanInputError(
                "min_gap", f"The minimum gap ({min_gap.describe()}) is longer than the maximum ({max_gap.describe()})."
            )
        if not min_gap.add_to(day) <= ideal_gap.add_to(day) <= max_gap.add_to(day):
            raise PlanInputError(
                "ideal_gap",
                f"The ideal gap ({ideal_gap.describe()}) must lie between the minimum ({min_gap.describe()}) "
                f"and the maximum ({max_gap.describe()}).",
            )


@dataclass(frozen=True)
class Course:
    """What the planner needs of a plan template."""

    procedure: str
    sessions: int
    min_gap: Gap
    ideal_gap: Gap
    max_gap: Gap
    duration: timedelta
    area: str | None = None

    def __post_init__(self) -> None:
        check_course_shape(sessions=self.sessions, min_gap=self.min_gap, ideal_gap=self.ideal_gap, max_gap=self.max_gap)


class FreeSlot(Protocol):
    start_at: datetime
    end_at: datetime
    practitioner_id: str
    practitioner_name: str


# free_slots(lo, hi): the practitioners' free slots starting in [lo, hi), in time order (ties in a stable order).
SlotSource = Callable[[datetime, datetime], Iterable[FreeSlot]]


@dataclass(frozen=True)
class Preferences:
    practitioner_id: str | None = None
    weekdays: frozenset[int] = frozenset()  # 0 = Monday; empty: any day
    times_of_day: frozenset[str] = frozenset()  # morning, afternoon, evening; empty: any time

    def __post_init__(self) -> None:
        if any(day not in range(7) for day in self.weekdays):
            raise PlanInputError("weekdays", "Weekdays are 0 (Monday) to 6 (Sunday).")
        if any(part not in TIMES_OF_DAY for part in self.times_of_day):
            raise PlanInputError("times_of_day", "Times of day are morning, afternoon or evening.")

    def accept(self, slot: FreeSlot, tz: tzinfo) -> bool:
        if self.practitioner_id is not None and str(slot.practitioner_id) != str(self.practitioner_id):
            return False
        local = slot.start_at.astimezone(tz)
        if self.weekdays and local.weekday() not in self.weekdays:
            return False
        if self.times_of_day and not any(
            TIMES_OF_DAY[part][0] <= local.hour < TIMES_OF_DAY[part][1] for part in self.times_of_day
        ):
            return False
        return True


@dataclass(frozen=True)
class Window:
    """A session's local dates: it may fall on any day from `earliest` to `latest`, best on `ideal`."""

    earliest: date
    ideal: date
    latest: date

    def holds(self, day: date) -> bool:
        return self.earliest <= day <= self.latest


@dataclass(frozen=True)
class PlacedSession:
    index: int  # 1-based, in the plan
    start_at: datetime
    end_at: datetime
    practitioner_id: str
    practitioner_name: str
    window: Window
    why: str
    warnings: tuple[rules.Violation, ...] = ()
    needs_clearance: tuple[rules.Violation, ...] = ()


@dataclass(frozen=True)
class Obstacle:
    """Why session `index` found no place: the block rules in its way (if any) and a sentence for people.

    `earliest`: the earliest start from the window's first moment that every interval rule allows (the booking
    refusal's `earliest_eligible_start`), None where no date can or the window has passed. `no_free_slot`: the
    rules allow some days of the window, and on those no practitioner has a free slot (that suits the
    preferences)."""

    index: int
    window: Window
    message: str
    violations: tuple[rules.Violation, ...] = ()
    earliest: datetime | None = None
    no_free_slot: bool = False


@dataclass(frozen=True)
class Plan:
    sessions: tuple[PlacedSession, ...]
    obstacle: Obstacle | None = None

    @property
    def feasible(self) -> bool:
        return self.obstacle is None


def _fmt(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def session_event_id(index: int) -> str:
    """The timeline id of a proposed session: what a violation against the plan's own session names."""
    return f"plan-session-{index}"


@dataclass
class _Search:
    timeline: rules.Timeline
    rulebook: rules.RuleBook
    course: Course
    tz: tzinfo
    free_slots: SlotSource
    preferences: Preferences
    not_before: datetime
    first_index: int
    ignore: frozenset[str]
    budget: int = SEARCH_BUDGET
    first_obstacle: Obstacle | None = None
    moved: set[int] = field(default_factory=set)
    # A re-plan's first session follows the session kept before it, which is not `first_index - 1` when the one just
    # before was cancelled or missed: its "why" names the one it is measured from.
    kept_index: int | None = None

    def proposal(self, start: datetime) -> rules.Proposal:
        return rules.Proposal(self.course.procedure, start, self.course.area, self.ignore)

    def window(self, index: int, previous: date | None) -> Window:
        if previous is None:
            first = self.not_before.astimezone(self.tz).date()
            return Window(first, first, first + timedelta(days=HORIZON_DAYS))
        course = self.course
        return Window(
            course.min_gap.add_to(previous), course.ideal_gap.add_to(previous), course.max_gap.add_to(previous)
        )

    def bounds(self, window: Window) -> tuple[datetime, datetime]:
        lo = max(rules.start_of_local_day(window.earliest, self.tz), self.not_before)
        return lo, rules.start_of_local_day(window.latest + timedelta(days=1), self.tz)

    def candidates(self, timeline: rules.Timeline, window: Window, placed: list[PlacedSession]) -> Iterator[FreeSlot]:
        """The first acceptable slot of each day in the window, nearest the ideal day first.

        When the ideal is the window's first day (a plan's first session, whose window is a year) the days
        come in date order, so they are read lazily: the calendar is read only as far as the plan needs.
        """
        lo, hi = self.bounds(window)
        if lo >= hi:
            return
        blocked = rules.blocked_ranges(timeline, self.rulebook, self.proposal(lo), self.tz, hi)

        def firsts(lo: datetime, hi: datetime) -> Iterator[tuple[date, FreeSlot]]:
            last_day = None
            for slot in self.free_slots(lo, hi):
                start = slot.start_at.astimezone(UTC)
                if start < lo or start >= hi:
                    continue
                day = start.astimezone(self.tz).date()
                if day == last_day or blocked.blocks(start) or not self.preferences.accept(slot, self.tz):
                    continue
                if any(p.start_at < slot.end_at and slot.start_at < p.end_at for p in placed):
                    continue  # the patient is already in this plan's earlier session then
                last_day = day
                yield day, slot

        if window.ideal == window.earliest:
            for _, slot in firsts(lo, hi):
                yield slot
            return
        # Outwards from the ideal day in rings, so the calendar is read only as far as the nearest fit: after
        # each ring every day up to its distance has been read, and those not yet offered go out nearest first.
        ideal = window.ideal
        reach = max((ideal - window.earliest).days, (window.latest - ideal).days)
        by_day: dict[date, FreeSlot] = {}
        offered = -1  # days up to this distance from the ideal have been offered
        for ring in _RINGS:
            ring = min(ring, reach)
            spans = [(-ring, ring)] if offered < 0 else [(-ring, -offered - 1), (offered + 1, ring)]
            for near, far in spans:
                span_lo = max(lo, rules.start_of_local_day(ideal + timedelta(days=near), self.tz))
                span_hi = min(hi, rules.start_of_local_day(ideal + timedelta(days=far + 1), self.tz))
                if span_lo < span_hi:
                    by_day.update(firsts(span_lo, span_hi))
            fresh = [d for d in by_day if offered < abs((d - ideal).days) <= ring]
            for day in sorted(fresh, key=lambda d: (abs((d - ideal).days), d)):
                yield by_day[day]
            offered = ring
            if ring >= reach:
                return

    def obstacle(self, index: int, timeline: rules.Timeline, window: Window) -> Obstacle:
        lo, hi = self.bounds(window)
        name = self.rulebook.name(self.course.procedure)
        span = f"{_fmt(window.earliest)} to {_fmt(window.latest)}"
        if lo >= hi:
            return Obstacle(index, window, f"Session {index} of {name}: its window ({span}) has already passed.")
        evaluation = rules.evaluate(timeline, self.rulebook, self.proposal(lo), self.tz)
        earliest = evaluation.earliest_eligible_start
        if evaluation.blocking and (earliest is None or earliest >= hi):
            first = evaluation.blocking[0]
            return Obstacle(
                index,
                window,
                f"Session {index} of {name} cannot fall in its window ({span}): {first.message}",
                evaluation.blocking,
                earliest,
            )
        # Some days of the window are allowed by the rules: on those, no one is free (the rules may hold the rest).
        wanted = " that suits the preferences" if self.preferences != Preferences() else ""
        return Obstacle(
            index,
            window,
            f"Session {index} of {name}: no practitioner has a free slot{wanted} on the days of its window "
            f"({span}) that the rules allow.",
            evaluation.blocking,
            earliest,
            no_free_slot=True,
        )

    def why(self, index: int, slot: FreeSlot, window: Window, timeline: rules.Timeline, first: bool) -> str:
        day = slot.start_at.astimezone(self.tz).date()
        course, name = self.course, self.rulebook.name(self.course.procedure)
        if first:
            reason = "the first day from the start with a free slot the rules allow"
            if day == window.earliest:
                return f"Session {index}: {_fmt(day)}, the start date."
        elif day == window.ideal:
            before = self.kept_index if index == self.first_index and self.kept_index is not None else index - 1
            return f"Session {index}: {_fmt(day)}, the ideal {course.ideal_gap.describe()} after session {before}."
        else:
            reason = f"the nearest day to the ideal {_fmt(window.ideal)} with a free slot the rules allow"
        target = window.earliest if first else window.ideal
        start_day = self.not_before.astimezone(self.tz).date()
        lo = max(rules.start_of_local_day(target, self.tz), self.not_before)
        evaluation = rules.evaluate(timeline, self.rulebook, self.proposal(lo), self.tz)
        if target < start_day:  # a re-plan from a later day: the ideal day is before it
            cause = f"{_fmt(target)} is before the plan's start, {_fmt(start_day)}"
        elif evaluation.blocking:
            cause = evaluation.blocking[0].message
        else:
            cause = f"no free slot for {name} on {_fmt(target)}"
        moved = " (moved so that the later sessions fit)" if index in self.moved else ""
        return f"Session {index}: {_fmt(day)}, {reason}{moved}; {cause}"

    def place(
        self, index: int, previous: date | None, timeline: rules.Timeline, placed: list[PlacedSession]
    ) -> list[PlacedSession] | None:
        if index >= self.first_index + self.course.sessions:
            return []
        window = self.window(index, previous)
        attempt = -1
        for attempt, slot in enumerate(self.candidates(timeline, window, placed)):
            if self.budget <= 0:
                break
            self.budget -= 1
            event = rules.ProcedureEvent(
                session_event_id(index), self.course.procedure, slot.start_at, self.course.area, rules.EventState.BOOKED
            )
            after = timeline.with_events([event])
            evaluation = rules.evaluate(timeline, self.rulebook, self.proposal(slot.start_at), self.tz)
            session = PlacedSession(
                index,
                slot.start_at.astimezone(UTC),
                slot.end_at.astimezone(UTC),
                str(slot.practitioner_id),
                slot.practitioner_name,
                window,
                "",
                evaluation.warnings,
                evaluation.needs_clearance,
            )
            rest = self.place(index + 1, slot.start_at.astimezone(self.tz).date(), after, [*placed, session])
            if rest is not None:
                if attempt:
                    self.moved.add(index)
                why = self.why(index, slot, window, timeline, previous is None)
                return [PlacedSession(**{**session.__dict__, "why": why}), *rest]
        if attempt < 0 and self.first_obstacle is None:
            self.first_obstacle = self.obstacle(index, timeline, window)
        return None


def plan_course(
    *,
    timeline: rules.Timeline,
    rulebook: rules.RuleBook,
    course: Course,
    start_at: datetime,
    tz: tzinfo,
    free_slots: SlotSource,
    preferences: Preferences = Preferences(),
    first_index: int = 1,
    ignore_event_ids: frozenset[str] = frozenset(),
    after_day: date | None = None,
    after_index: int | None = None,
) -> Plan:
    """Place sessions `first_index` .. of `course`, the first at or after `start_at`.

    `timeline` holds the patient's history and bookings (and, for a re-plan, the plan's sessions kept);
    `ignore_event_ids` leaves out the bookings being re-planned. `after_day`, for a re-plan from a later
    session, is the local date of the session kept before it: the first placed session then falls within
    the course's gaps after it, like every other, and never before `start_at` (without it, it was placed as
    a course's first session, days after the one before). When that window has passed by `start_at` (a
    missed or overdue session), or only its last day is left and nothing fits in it from `start_at`, it goes from
    `start_at`, as a course's first session does. `after_index` is that kept session's index, which its "why" names.
    """
    if start_at.tzinfo is None or start_at.utcoffset() is None:
        raise PlanInputError("start", "The start must be timezone-aware.")
    start_day = start_at.astimezone(tz).date()
    last_day = course.max_gap.add_to(after_day) if after_day is not None else None
    if last_day is not None and last_day < start_day:
        after_day = None

    def placed_from(previous_day: date | None) -> Plan:
        search = _Search(
            timeline,
            rulebook,
            course,
            tz,
            free_slots,
            preferences,
            rules.ceil_minute(start_at.astimezone(UTC)),
            first_index,
            ignore_event_ids,
            kept_index=after_index if previous_day is not None else None,
        )
        placed = search.place(first_index, previous_day, timeline, [])
        if placed is not None:
            return Plan(tuple(placed))
        obstacle = search.first_obstacle or Obstacle(
            first_index,
            search.window(first_index, previous_day),
            f"No arrangement of the {course.sessions} sessions fits within a year of the start.",
        )
        return Plan((), obstacle)

    plan = placed_from(after_day)
    if not plan.feasible and after_day is not None and last_day == start_day:
        # `start` on the window's last day, after what it had free: the window has passed for this start, as it
        # has from the next morning (what a start then would give, instead of a dead end a minute earlier).
        later = placed_from(None)
        if later.feasible:
            return later
    return plan
