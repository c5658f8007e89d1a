"""The interval and contraindication engine: pure functions over a timeline.

No ORM here. `scheduler/selectors.py` turns database rows into the value
objects below; the booking services, the API, the front desk, the reminders
and the benchmarks all ask this module the same questions.

How it works: for a proposed procedure, every (rule, timeline event) pair
forbids a half-open range of *start times* [lo, hi). A start is refused by a
rule exactly when it lies in that range, `hi` is the earliest start that rule
allows, and the earliest eligible start is found by hopping over the ranges
that contain it. The same ranges answer availability for a whole window at
once. The semantics (docs/rules.md, "How a gap is measured"):

* calendar gaps (days, weeks, months) compare local dates: later.date >=
  earlier.date + gap (months by `relativedelta`), each event's date read in
  the zone of the clinic where it happens (the proposal's in the zone passed
  in), so a pair at two clinics in different zones gets one answer whichever
  is booked first;
* hour gaps are elapsed time;
* a pair is checked in both directions: booking the later procedure looks
  back, booking the earlier one looks forward; events on the same local date
  (calendar gaps: the time of day plays no part) or at the same instant (hour
  gaps) are checked both ways;
* cancelled and no-show events do not count;
* a medication course is an earlier event measured from its end date; while
  it is ongoing (no end date) it forbids every start from its first day on.

Start times have a resolution of one minute: every bound this module
returns is a whole minute, and callers book on whole minutes.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum

from dateutil.relativedelta import relativedelta

RESOLUTION = timedelta(minutes=1)
# How far apart two instants on one local date can be, each date read in its own zone (zones span UTC-12 to UTC+14).
SAME_DATE = timedelta(days=2, hours=3)
# The longest gap a rule or a course's template may give, in each unit: ten years (docs/rules.md, docs/plans.md).
# A longer one is no clinical interval, and the calendar arithmetic would overflow past year 9999 in the re-check
# and every booking it applies to. scheduler.models refuses it on the field and in the database; plans.planner
# in a template.
MAX_GAP_YEARS = 10
MAX_GAP_VALUE = {"hours": 87_648, "days": 3_652, "weeks": 521, "months": 12 * MAX_GAP_YEARS}  # 87,648 h = 3,652 d


class IntervalSeverity(StrEnum):
    """How an interval rule acts: it refuses the booking, or only warns."""

    BLOCK = "block"
    WARN = "warn"


class ContraindicationSeverity(StrEnum):
    """How a contraindication acts: it rules the procedure out, or needs a clinician's clearance."""

    ABSOLUTE = "absolute"
    RELATIVE = "relative"


# A violation carries the severity of the scale its rule uses (availability problems block).
Severity = IntervalSeverity | ContraindicationSeverity


class ViolationCode(StrEnum):
    TOO_SOON_AFTER = "interval_too_soon_after"
    TOO_CLOSE_BEFORE = "interval_too_close_before"
    COURSE_ONGOING = "interval_course_ongoing"
    TOO_SOON_AFTER_COURSE = "interval_too_soon_after_course"
    CONDITION = "contraindication_condition"
    MEDICATION = "contraindication_medication"


class Outcome(StrEnum):
    CONFIRMED = "confirmed"
    PENDING_CLEARANCE = "pending_clearance"
    REFUSED = "refused"


BLOCKING = frozenset({IntervalSeverity.BLOCK, ContraindicationSeverity.ABSOLUTE})


class EventState(StrEnum):
    """Where a procedure event stands: done (in the history), booked (an active appointment),
    or void (a cancelled or missed appointment, which counts for nothing)."""

    DONE = "done"
    BOOKED = "booked"
    VOID = "void"


# --- Timeline --------------------------------------------------------------------


@dataclass(frozen=True)
class ProcedureEvent:
    """A procedure done (history) or booked (an active appointment)."""

    id: str
    procedure: str
    start_at: datetime
    area: str | None = None
    state: EventState = EventState.DONE
    clinic: str | None = None  # where it was done or is booked (id), when at one of the organisation's clinics
    # The zone its local date is read in: the clinic's where it was done or is booked (a procedure reported as done
    # elsewhere: the zone its day was recorded in). None: the zone of the clinic asking (a proposal's, a plan's).
    tz: tzinfo | None = None

    @property
    def counts(self) -> bool:
        return self.state is not EventState.VOID


@dataclass(frozen=True)
class MedicationCourse:
    id: str
    drug: str
    started_on: date
    ended_on: date | None = None


class ConditionState(StrEnum):
    """An intake entry: the condition is active now, or in the patient's history (clinic's ConditionStatus)."""

    ACTIVE = "active"
    HISTORY = "history"


@dataclass(frozen=True)
class ConditionEntry:
    id: str
    condition: str
    status: str  # "active" or "history" (clinic.models.ConditionStatus)
    area: str | None = None


class Timeline:
    """A patient's events, indexed by code and time for sub-linear look-ups."""

    def __init__(
        self,
        procedures: Iterable[ProcedureEvent] = (),
        medications: Iterable[MedicationCourse] = (),
        conditions: Iterable[ConditionEntry] = (),
    ) -> None:
        grouped: dict[str, list[tuple[datetime, str, ProcedureEvent]]] = defaultdict(list)
        for event in procedures:
            if event.counts:
                _require_aware(event.start_at, "procedure event")
                grouped[event.procedure].append((event.start_at.astimezone(UTC), event.id, event))
        self._starts: dict[str, list[datetime]] = {}
        self._events: dict[str, list[ProcedureEvent]] = {}
        for code, rows in grouped.items():
            rows.sort(key=lambda row: (row[0], row[1]))  # by time, ties by id: order-independent
            self._starts[code] = [row[0] for row in rows]
            self._events[code] = [row[2] for row in rows]
        courses: dict[str, list[MedicationCourse]] = defaultdict(list)
        for course in sorted(medications, key=lambda c: (c.started_on, c.id)):
            courses[course.drug].append(course)
        self._courses = dict(courses)
        self.conditions: tuple[ConditionEntry, ...] = tuple(sorted(conditions, key=lambda c: (c.condition, c.id)))

    def with_events(self, extra: Iterable[ProcedureEvent]) -> Timeline:
        """This timeline and `extra` events (a plan's proposed sessions), sharing every index `extra` leaves alone."""
        copy = Timeline.__new__(Timeline)
        copy._starts, copy._events = dict(self._starts), dict(self._events)
        copy._courses, copy.conditions = self._courses, self.conditions
        for event in extra:
            if not event.counts:
                continue
            _require_aware(event.start_at, "procedure event")
            at = event.start_at.astimezone(UTC)
            starts = list(copy._starts.get(event.procedure, ()))
            events = list(copy._events.get(event.procedure, ()))
            i = bisect.bisect_left(starts, at)
            while i < len(starts) and starts[i] == at and events[i].id < event.id:  # ties by id, as built
                i += 1
            starts.insert(i, at)
            events.insert(i, event)
            copy._starts[event.procedure], copy._events[event.procedure] = starts, events
        return copy

    def procedures_between(self, code: str, lo: datetime, hi: datetime) -> list[ProcedureEvent]:
        """Counted events of `code` starting in [lo, hi]."""
        starts = self._starts.get(code)
        if not starts:
            return []
        i = bisect.bisect_left(starts, lo)
        j = bisect.bisect_right(starts, hi)
        return self._events[code][i:j]

    def courses(self, drug: str) -> list[MedicationCourse]:
        return self._courses.get(drug, [])


# --- Rules ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IntervalRule:
    id: str
    later_procedure: str
    gap_value: int
    gap_unit: str  # hours, days, weeks, months
    severity: IntervalSeverity = IntervalSeverity.BLOCK
    earlier_procedure: str | None = None
    earlier_medication: str | None = None
    same_area_only: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        if (self.earlier_procedure is None) == (self.earlier_medication is None):
            raise ValueError("an interval rule needs exactly one earlier procedure or medication")
        if self.gap_unit not in {"hours", "days", "weeks", "months"}:
            raise ValueError(f"unknown gap unit {self.gap_unit!r}")
        if self.gap_value < 1:
            raise ValueError("a gap must be at least 1")
        if self.severity not in tuple(IntervalSeverity):
            raise ValueError(f"interval severity must be block or warn, not {self.severity!r}")
        object.__setattr__(self, "severity", IntervalSeverity(self.severity))

    @property
    def is_calendar(self) -> bool:
        return self.gap_unit != "hours"

    def add_to_date(self, day: date) -> date:
        return day + self._date_delta()

    def _date_delta(self) -> timedelta | relativedelta:
        if self.gap_unit == "days":
            return timedelta(days=self.gap_value)
        if self.gap_unit == "weeks":
            return timedelta(weeks=self.gap_value)
        return relativedelta(months=self.gap_value)

    @property
    def reach(self) -> timedelta:
        """An upper bound on how far apart in time two events can be and still conflict."""
        if self.gap_unit == "hours":
            return timedelta(hours=self.gap_value)
        if self.gap_unit == "months":
            return timedelta(days=31 * self.gap_value + 2)
        return self._date_delta() + timedelta(days=2)

    def describe_gap(self) -> str:
        unit = self.gap_unit[:-1] if self.gap_value == 1 else self.gap_unit
        return f"{self.gap_value} {unit}"


@dataclass(frozen=True)
class ContraindicationRule:
    id: str
    procedure: str
    severity: ContraindicationSeverity
    condition: str | None = None
    medication: str | None = None
    active_only: bool = False
    area_specific: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        if (self.condition is None) == (self.medication is None):
            raise ValueError("a contraindication needs exactly one condition or medication")
        if self.severity not in tuple(ContraindicationSeverity):
            raise ValueError(f"contraindication severity must be absolute or relative, not {self.severity!r}")
        object.__setattr__(self, "severity", ContraindicationSeverity(self.severity))


class RuleBook:
    """Rules indexed for the engine, with display names for messages."""

    def __init__(
        self,
        intervals: Iterable[IntervalRule] = (),
        contraindications: Iterable[ContraindicationRule] = (),
        names: Mapping[str, str] | None = None,
        version: str = "",
    ) -> None:
        self.version = version  # the rule book's version (scheduler.selectors.rulebook_version), for the record
        self.looking_back: dict[str, list[IntervalRule]] = defaultdict(list)
        self.looking_forward: dict[str, list[IntervalRule]] = defaultdict(list)
        for rule in sorted(intervals, key=lambda r: r.id):
            self.looking_back[rule.later_procedure].append(rule)
            if rule.earlier_procedure:
                self.looking_forward[rule.earlier_procedure].append(rule)
        self.contraindications: dict[str, list[ContraindicationRule]] = defaultdict(list)
        for rule in sorted(contraindications, key=lambda r: r.id):
            self.contraindications[rule.procedure].append(rule)
        self.names = dict(names or {})

    def name(self, code: str) -> str:
        return self.names.get(code, code)


# --- Results --------------------------------------------------------------------------


@dataclass(frozen=True)
class EventRef:
    """The timeline entry a violation conflicts with."""

    id: str
    kind: str  # procedure, medication_course, condition
    code: str
    at: datetime | None = None
    on: date | None = None
    clinic: str | None = None  # the clinic (id) of a procedure done or booked at one of the organisation's


@dataclass(frozen=True)
class Violation:
    code: ViolationCode
    kind: str  # interval or contraindication
    severity: Severity
    message: str
    rule_id: str
    source: str
    conflicts_with: EventRef | None
    earliest_allowed: datetime | None

    @property
    def blocks(self) -> bool:
        return self.severity in BLOCKING


@dataclass(frozen=True)
class Proposal:
    procedure: str
    start_at: datetime
    area: str | None = None
    # Events to leave out, e.g. the appointment being rescheduled.
    ignore_event_ids: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Evaluation:
    proposal: Proposal
    violations: tuple[Violation, ...]
    earliest_eligible_start: datetime | None

    @property
    def blocking(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.blocks)

    @property
    def warnings(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.severity == IntervalSeverity.WARN)

    @property
    def needs_clearance(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.severity == ContraindicationSeverity.RELATIVE)

    @property
    def eligible(self) -> bool:
        return not self.blocking

    @property
    def outcome(self) -> Outcome:
        if self.blocking:
            return Outcome.REFUSED
        if self.needs_clearance:
            return Outcome.PENDING_CLEARANCE
        return Outcome.CONFIRMED


# --- Time helpers -----------------------------------------------------------------------


def _require_aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} time must be timezone-aware")


def ceil_minute(value: datetime) -> datetime:
    """The first whole minute at or after `value`."""
    floor = value.replace(second=0, microsecond=0)
    return floor if floor == value else floor + RESOLUTION


def after_minute(value: datetime) -> datetime:
    """The first whole minute strictly after `value`."""
    return value.replace(second=0, microsecond=0) + RESOLUTION


def start_of_local_day(day: date, tz: tzinfo) -> datetime:
    """The first instant of `day` in `tz`, in UTC (midnight, or the end of a DST gap at midnight)."""
    return datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)


def local_date(value: datetime, tz: tzinfo) -> date:
    return value.astimezone(tz).date()


def _first_date_exceeding(rule: IntervalRule, later_day: date) -> date:
    """The first date d with d + gap > later_day (d + gap is monotone in d)."""
    day = later_day - rule._date_delta()
    while rule.add_to_date(day) > later_day:
        day -= timedelta(days=1)
    while rule.add_to_date(day) <= later_day:
        day += timedelta(days=1)
    return day


def _fmt(value: datetime | date | None, tz: tzinfo) -> str:
    if value is None:
        return "no date yet"
    if isinstance(value, datetime):
        local = value.astimezone(tz)
        if local.time() == time.min:  # a calendar bound: the day is what matters
            return f"{local.day} {local:%B %Y}"
        return f"{local.day} {local:%B %Y %H:%M}"
    return f"{value.day} {value:%B %Y}"


# --- Constraints: forbidden ranges of start times ----------------------------------------


@dataclass(frozen=True)
class _Range:
    lo: datetime | None  # None: unbounded below
    hi: datetime | None  # None: unbounded above
    severity: Severity
    build: tuple  # (callable, args) making the Violation lazily
    # The earliest start the rule allows, when that is not where this range ends: a repeat rule's range before an
    # event is followed by its own range after it (`_before_event`).
    allows_from: datetime | None = None

    def contains(self, moment: datetime) -> bool:
        return (self.lo is None or self.lo <= moment) and (self.hi is None or moment < self.hi)

    def violation(self) -> Violation:
        make, args = self.build
        return make(*args, self.allows_from or self.hi)


class _Ranges:
    """Builds the forbidden ranges for one proposed procedure and area."""

    def __init__(
        self, timeline: Timeline, rules: RuleBook, procedure: str, area: str | None, ignore: frozenset[str], tz: tzinfo
    ) -> None:
        self.timeline = timeline
        self.rules = rules
        self.procedure = procedure
        self.area = area
        self.ignore = ignore
        self.tz = tz

    def _area_applies(self, rule_same_area: bool, event_area: str | None) -> bool:
        # Unknown areas count as the same area: the safer reading.
        return not rule_same_area or event_area is None or self.area is None or event_area == self.area

    def overlapping(self, lo: datetime, hi: datetime) -> list[_Range]:
        """Every range that contains some start in [lo, hi]."""
        out: list[_Range] = []
        for rule in self.rules.looking_back.get(self.procedure, ()):
            if rule.earlier_procedure:
                # An event later the same date counts too (a calendar gap): SAME_DATE reaches it in any zones.
                for event in self.timeline.procedures_between(rule.earlier_procedure, lo - rule.reach, hi + SAME_DATE):
                    if event.id in self.ignore or not self._area_applies(rule.same_area_only, event.area):
                        continue
                    rng = self._after_event(rule, event)
                    if rng.hi > lo:
                        out.append(rng)
            else:
                for course in self.timeline.courses(rule.earlier_medication):
                    if course.id in self.ignore:
                        continue
                    rng = self._after_course(rule, course)
                    if (rng.hi is None or rng.hi > lo) and rng.lo <= hi:
                        out.append(rng)
        for rule in self.rules.looking_forward.get(self.procedure, ()):
            for event in self.timeline.procedures_between(rule.later_procedure, lo - SAME_DATE, hi + rule.reach):
                if event.id in self.ignore or not self._area_applies(rule.same_area_only, event.area):
                    continue
                rng = self._before_event(rule, event)
                if rng.lo <= hi:
                    out.append(rng)
        out.extend(self._contraindications(lo, hi))
        return out

    # Each builder returns the range of proposal starts the pair forbids.

    def _zone(self, event: ProcedureEvent) -> tzinfo:
        return event.tz or self.tz

    def _when(self, event: ProcedureEvent) -> str:
        """The event's time in its own clinic's clock, the zone named when it is not the clock asking."""
        zone = self._zone(event)
        if str(zone) == str(self.tz):  # one zone (its key), whichever object holds it
            return _fmt(event.start_at, zone)
        return f"{_fmt(event.start_at, zone)} {event.start_at.astimezone(zone):%Z}"

    def _after_event(self, rule: IntervalRule, event: ProcedureEvent) -> _Range:
        if rule.is_calendar:
            # The time of day plays no part: from the first minute of the event's date (a start earlier that day
            # is as close to it), to the first date the gap allows.
            day = local_date(event.start_at, self._zone(event))
            lo = start_of_local_day(day, self.tz)
            hi = start_of_local_day(rule.add_to_date(day), self.tz)
        else:
            lo = ceil_minute(event.start_at.astimezone(UTC))
            hi = ceil_minute(event.start_at.astimezone(UTC) + timedelta(hours=rule.gap_value))
        return _Range(
            lo,
            max(hi, lo + RESOLUTION),
            rule.severity,
            (self._interval_violation, (ViolationCode.TOO_SOON_AFTER, rule, event)),
        )

    def _before_event(self, rule: IntervalRule, event: ProcedureEvent) -> _Range:
        if rule.is_calendar:
            # From the first date the gap would make too close, to the end of the event's date (a start later that
            # day is as close to it).
            day = local_date(event.start_at, self._zone(event))
            lo = start_of_local_day(_first_date_exceeding(rule, day), self.tz)
            hi = start_of_local_day(day + timedelta(days=1), self.tz)
        else:
            lo = after_minute(event.start_at.astimezone(UTC) - timedelta(hours=rule.gap_value))
            hi = after_minute(event.start_at.astimezone(UTC))
        # A repeat rule (the same procedure both sides) also forbids the starts after the event, up to its gap: the
        # earliest start it allows is where that range ends, not the day after the event (api-contract: the earliest
        # start "this one rule allows"). The ranges, and so every verdict, stay as they are.
        repeat = rule.earlier_procedure == rule.later_procedure
        return _Range(
            min(lo, hi - RESOLUTION),
            hi,
            rule.severity,
            (self._interval_violation, (ViolationCode.TOO_CLOSE_BEFORE, rule, event)),
            allows_from=self._after_event(rule, event).hi if repeat else None,
        )

    def _after_course(self, rule: IntervalRule, course: MedicationCourse) -> _Range:
        lo = start_of_local_day(course.started_on, self.tz)
        if course.ended_on is None:
            return _Range(
                lo, None, rule.severity, (self._course_violation, (ViolationCode.COURSE_ONGOING, rule, course))
            )
        if rule.is_calendar:
            hi = start_of_local_day(rule.add_to_date(course.ended_on), self.tz)
        else:
            end = start_of_local_day(course.ended_on + timedelta(days=1), self.tz)
            hi = end + timedelta(hours=rule.gap_value)
        return _Range(
            lo, hi, rule.severity, (self._course_violation, (ViolationCode.TOO_SOON_AFTER_COURSE, rule, course))
        )

    def _contraindications(self, lo: datetime, hi: datetime) -> Iterable[_Range]:
        for rule in self.rules.contraindications.get(self.procedure, ()):
            if rule.condition:
                for entry in self.timeline.conditions:
                    if entry.condition != rule.condition or (
                        rule.active_only and entry.status != ConditionState.ACTIVE
                    ):
                        continue
                    if not self._area_applies(rule.area_specific, entry.area):
                        continue
                    yield _Range(None, None, rule.severity, (self._condition_violation, (rule, entry)))
            else:
                for course in self.timeline.courses(rule.medication):
                    if course.id in self.ignore:
                        continue
                    start = start_of_local_day(course.started_on, self.tz)
                    end = start_of_local_day(course.ended_on + timedelta(days=1), self.tz) if course.ended_on else None
                    if start <= hi and (end is None or end > lo):
                        yield _Range(start, end, rule.severity, (self._medication_violation, (rule, course)))

    # Violations are built only for the ranges that contain the proposal.

    def _interval_violation(
        self, code: ViolationCode, rule: IntervalRule, event: ProcedureEvent, earliest: datetime | None
    ) -> Violation:
        name = self.rules.name
        when = "done" if event.state is EventState.DONE else "booked"
        # A rule that only warns advises: its words must not read as a refusal the booking then ignores.
        must, allowed = ("should", "advised from") if rule.severity == IntervalSeverity.WARN else ("must", "allowed")
        if code is ViolationCode.TOO_SOON_AFTER:
            message = (
                f"{name(rule.later_procedure)} {must} be at least {rule.describe_gap()} after "
                f"{name(event.procedure)} ({when} {self._when(event)}); "
                f"earliest {allowed} {_fmt(earliest, self.tz)}."
            )
        else:
            message = (
                f"{name(rule.later_procedure)} is booked {self._when(event)}; "
                f"{name(rule.earlier_procedure)} {must} be at least {rule.describe_gap()} before it."
            )
        return Violation(
            code,
            "interval",
            rule.severity,
            message,
            rule.id,
            rule.source,
            EventRef(event.id, "procedure", event.procedure, at=event.start_at, clinic=event.clinic),
            earliest,
        )

    def _course_violation(
        self, code: ViolationCode, rule: IntervalRule, course: MedicationCourse, earliest: datetime | None
    ) -> Violation:
        name = self.rules.name
        must, allowed = ("should", "advised from") if rule.severity == IntervalSeverity.WARN else ("must", "allowed")
        if code is ViolationCode.COURSE_ONGOING:
            message = (
                f"{name(rule.later_procedure)} {must} be at least {rule.describe_gap()} after the end of "
                f"the {name(course.drug)} course, which is still ongoing (started "
                f"{_fmt(course.started_on, self.tz)}); record its end date to get a date."
            )
        else:
            message = (
                f"{name(rule.later_procedure)} {must} be at least {rule.describe_gap()} after the "
                f"{name(course.drug)} course ended ({_fmt(course.ended_on, self.tz)}); "
                f"earliest {allowed} {_fmt(earliest, self.tz)}."
            )
        return Violation(
            code,
            "interval",
            rule.severity,
            message,
            rule.id,
            rule.source,
            EventRef(course.id, "medication_course", course.drug, on=course.ended_on or course.started_on),
            earliest,
        )

    def _condition_violation(
        self, rule: ContraindicationRule, entry: ConditionEntry, earliest: datetime | None
    ) -> Violation:
        name = self.rules.name
        status = "active" if entry.status == ConditionState.ACTIVE else "history of"
        area = f" ({name(entry.area)})" if entry.area else ""
        effect = (
            "rules it out" if rule.severity == ContraindicationSeverity.ABSOLUTE else "needs a clinician's clearance"
        )
        message = (
            f"{name(rule.procedure)}: {status} {name(entry.condition)}{area} {effect} "
            f"({rule.severity} contraindication)."
        )
        return Violation(
            ViolationCode.CONDITION,
            "contraindication",
            rule.severity,
            message,
            rule.id,
            rule.source,
            EventRef(entry.id, "condition", entry.condition),
            earliest,
        )

    def _medication_violation(
        self, rule: ContraindicationRule, course: MedicationCourse, earliest: datetime | None
    ) -> Violation:
        name = self.rules.name
        span = f"until {_fmt(course.ended_on, self.tz)}" if course.ended_on else "ongoing"
        effect = (
            "rules it out" if rule.severity == ContraindicationSeverity.ABSOLUTE else "needs a clinician's clearance"
        )
        message = (
            f"{name(rule.procedure)}: {name(course.drug)} course ({span}) {effect} ({rule.severity} contraindication)."
        )
        return Violation(
            ViolationCode.MEDICATION,
            "contraindication",
            rule.severity,
            message,
            rule.id,
            rule.source,
            EventRef(course.id, "medication_course", course.drug, on=course.started_on),
            earliest,
        )


# --- Public API ------------------------------------------------------------------------------


def _ranges(timeline: Timeline, rules: RuleBook, proposal: Proposal, tz: tzinfo) -> _Ranges:
    return _Ranges(timeline, rules, proposal.procedure, proposal.area, proposal.ignore_event_ids, tz)


def _earliest(ranges: _Ranges, start: datetime) -> datetime | None:
    moment = start
    while True:
        holding = [r for r in ranges.overlapping(moment, moment) if r.severity in BLOCKING and r.contains(moment)]
        if not holding:
            return moment
        if any(r.hi is None for r in holding):
            return None
        moment = max(r.hi for r in holding)  # strictly later: each range holds `moment` and ends after it


def _distinct(violations: list[Violation]) -> list[Violation]:
    """One of each reason as people read it: the same treatment entered twice (an export listing it twice, two
    records of one instant) breaks a rule once, not once per copy. The first copy (by id) names it."""
    seen: set[Violation] = set()
    kept = []
    for violation in violations:
        ref = violation.conflicts_with
        plain = violation if ref is None else replace(violation, conflicts_with=replace(ref, id=""))
        if plain not in seen:
            seen.add(plain)
            kept.append(violation)
    return kept


def evaluate(timeline: Timeline, rules: RuleBook, proposal: Proposal, tz: tzinfo) -> Evaluation:
    """Every violation of the proposal, and the earliest start at or after it that no blocking rule forbids."""
    _require_aware(proposal.start_at, "proposal")
    start = proposal.start_at.astimezone(UTC)
    ranges = _ranges(timeline, rules, proposal, tz)
    found = [r for r in ranges.overlapping(start, start) if r.contains(start)]
    violations = _distinct(
        sorted(
            (r.violation() for r in found),
            key=lambda v: (not v.blocks, v.kind, v.rule_id, v.conflicts_with.id if v.conflicts_with else ""),
        )
    )
    earliest = start if not any(r.severity in BLOCKING for r in found) else _earliest(ranges, start)
    return Evaluation(proposal, tuple(violations), earliest)


def earliest_eligible_start(timeline: Timeline, rules: RuleBook, proposal: Proposal, tz: tzinfo) -> datetime | None:
    _require_aware(proposal.start_at, "proposal")
    return _earliest(_ranges(timeline, rules, proposal, tz), proposal.start_at.astimezone(UTC))


_MIN = datetime.min.replace(tzinfo=UTC)


class BlockedSpans:
    """Merged, sorted ranges of start times that a blocking rule forbids."""

    def __init__(self, spans: list[tuple[datetime | None, datetime | None]]) -> None:
        self.spans = spans
        self._los = [lo or _MIN for lo, _ in spans]

    def blocks(self, moment: datetime) -> bool:
        return self.free_from(moment) != moment

    def next_blocked_after(self, moment: datetime) -> datetime | None:
        """The start of the first range after `moment` (strictly), or None: for an allowed `moment`, every start
        from it up to that one is allowed too."""
        index = bisect.bisect_right(self._los, moment)
        return self._los[index] if index < len(self._los) else None

    def free_from(self, moment: datetime) -> datetime | None:
        """The first start at or after `moment` that no blocking rule forbids: `moment` itself, or the end of the
        range it falls in (ranges are merged, so that end is free), or None when the range never ends."""
        index = bisect.bisect_right(self._los, moment) - 1
        if index < 0:
            return moment
        hi = self.spans[index][1]
        if hi is None:
            return None
        return moment if moment >= hi else hi


def blocked_ranges(
    timeline: Timeline, rules: RuleBook, proposal: Proposal, tz: tzinfo, until: datetime
) -> BlockedSpans:
    """The starts in [proposal.start_at, until] that a blocking rule forbids.

    For availability: one pass over the timeline for a whole window, instead
    of one evaluation per candidate slot.
    """
    _require_aware(proposal.start_at, "proposal")
    _require_aware(until, "window end")
    ranges = _ranges(timeline, rules, proposal, tz)
    spans = sorted(
        (
            (r.lo, r.hi)
            for r in ranges.overlapping(proposal.start_at.astimezone(UTC), until.astimezone(UTC))
            if r.severity in BLOCKING
        ),
        key=lambda span: span[0] or _MIN,
    )
    merged: list[tuple[datetime | None, datetime | None]] = []
    for lo, hi in spans:
        if merged:
            last_lo, last_hi = merged[-1]
            if last_hi is None:
                break
            if (lo or _MIN) <= last_hi:
                merged[-1] = (last_lo, None if hi is None else max(last_hi, hi))
                continue
        merged.append((lo, hi))
    return BlockedSpans(merged)
