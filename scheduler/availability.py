"""Practitioner availability: working hours, time off and booked appointments.

A `Schedule` loads a set of practitioners' calendars for a window (and the
patient's own bookings) in one query, then answers "is this practitioner free
then?" and "which slots are free?" in memory. Slots are also filtered by the engine's blocked ranges, so
a slot offered is one the patient may actually have.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.models import F

from clinic.models import (
    ACTIVE_APPOINTMENT_STATUSES,
    Appointment,
    Practitioner,
    TimeOff,
    WorkingHours,
    joined_periods,
)
from core import unions
from core.compiled import CompiledQuery
from core.ids import parse_uuid
from core.lookups import InLiterals, SpansOverlap
from scheduler.rules import BlockedSpans, EventRef, IntervalSeverity, Violation, ceil_minute


class AvailabilityCode:
    OUTSIDE_WORKING_HOURS = "outside_working_hours"
    TIME_OFF = "practitioner_time_off"
    SLOT_TAKEN = "slot_taken"
    NO_PRACTITIONER = "no_practitioner_available"
    PATIENT_BUSY = "patient_busy"


@dataclass(frozen=True)
class Slot:
    start_at: datetime
    end_at: datetime
    practitioner_id: str
    practitioner_name: str


def availability_violation(code: str, message: str, conflicts_with: EventRef | None = None) -> Violation:
    return Violation(code, "availability", IntervalSeverity.BLOCK, message, "", "", conflicts_with, None)


class _Busy:
    """Busy [start, end) intervals, in any number and overlapping or not; `overlaps` is one bisection.

    Sorted by start with the running maximum of their ends: some span starting before `end` ends after
    `start` exactly when the latest end among the spans starting before `end` is after `start`.
    """

    def __init__(self, spans: Iterable[tuple[datetime, datetime]]) -> None:
        self.spans = sorted(spans)
        self._starts = [s for s, _ in self.spans]
        self._latest_end: list[datetime] = list(itertools.accumulate((e for _, e in self.spans), max))

    def __bool__(self) -> bool:
        return bool(self.spans)

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.clear_after(start, end) is not None

    def next_start(self, moment: datetime) -> datetime | None:
        """The first start of a span at or after `moment`, or None."""
        j = bisect.bisect_left(self._starts, moment)
        return self._starts[j] if j < len(self._starts) else None

    def clear_after(self, start: datetime, end: datetime) -> datetime | None:
        """None when [start, end) meets no span; else the latest end among the spans it meets or that start before
        it: no interval of the same length starting before that moment is free either (the span that ends then
        starts before its end and ends after its start)."""
        j = bisect.bisect_left(self._starts, end)
        latest = self._latest_end[j - 1] if j > 0 else None
        return latest if latest is not None and latest > start else None


# The kinds of row in a calendar read, in one layout (core.unions).
_HOURS_ROW, _TIME_OFF_ROW, _BOOKING_ROW, _PATIENT_ROW = 1, 2, 3, 4
_CALENDAR_LAYOUT = {
    "c_practitioner": models.UUIDField(),
    "c_weekday": models.PositiveSmallIntegerField(),
    "c_from": models.TimeField(),
    "c_to": models.TimeField(),
    "c_start": models.DateTimeField(),
    "c_end": models.DateTimeField(),
    "c_id": models.UUIDField(),  # a booking's
    "c_procedure": models.CharField(),
    "c_clinic": models.UUIDField(),
}


def _hours_and_time_off(ids, window_start, window_end) -> list:
    """The practitioners' working hours, and their time off overlapping the window."""
    return [
        unions.branch(
            WorkingHours.objects.filter(practitioner_id__in=ids),
            _HOURS_ROW,
            _CALENDAR_LAYOUT,
            c_practitioner="practitioner_id",
            c_weekday="weekday",
            c_from="start_time",
            c_to="end_time",
        ),
        unions.branch(
            TimeOff.objects.filter(practitioner_id__in=ids, start_at__lt=window_end, end_at__gt=window_start),
            _TIME_OFF_ROW,
            _CALENDAR_LAYOUT,
            c_practitioner="practitioner_id",
            c_start="start_at",
            c_end="end_at",
        ),
    ]


def _bookings(window_start, window_end, ignored, kind: int, **whose):
    """The active appointments of `whose` (practitioners or the patient) overlapping the window, but `ignored`."""
    found = Appointment.objects.filter(
        InLiterals(F("status"), ACTIVE_APPOINTMENT_STATUSES),
        start_at__lt=window_end,
        end_at__gt=window_start,
        **whose,
    ).exclude(pk__in=ignored)
    if connections[DEFAULT_DB_ALIAS].vendor == "postgresql":  # answered by the exclusion constraints' indexes
        found = found.filter(SpansOverlap(F("start_at"), F("end_at"), window_start, window_end))
    return unions.branch(
        found,
        kind,
        _CALENDAR_LAYOUT,
        c_practitioner="practitioner_id",
        c_start="start_at",
        c_end="end_at",
        c_id="id",
        c_procedure="procedure_id",
        c_clinic="clinic_id",
    )


def _practitioners_bookings(ids, window_start, window_end, ignored):
    return _bookings(window_start, window_end, ignored, _BOOKING_ROW, practitioner_id__in=ids)


def _and_the_patients(ids, patient_id, window_start, window_end, ignored) -> list:
    """The practitioners' bookings in the window and, apart (each read by its own index), the patient's own,
    wherever they are."""
    return [
        _practitioners_bookings(ids, window_start, window_end, ignored),
        _bookings(window_start, window_end, ignored, _PATIENT_ROW, patient_id=patient_id),
    ]


# Read for every booking and search: compiled once per connection and number of practitioners (core.compiled).
_CALENDARS = CompiledQuery(
    lambda ids, window_start, window_end: unions.union(_hours_and_time_off(ids, window_start, window_end))
)
_BOOKINGS = CompiledQuery(_practitioners_bookings)
_BOOKINGS_AND_PATIENTS = CompiledQuery(lambda *args: unions.union(_and_the_patients(*args)))
_WHOLE = CompiledQuery(  # hours, time off and bookings in one read
    lambda ids, window_start, window_end, ignored: unions.union(
        [
            *_hours_and_time_off(ids, window_start, window_end),
            _practitioners_bookings(ids, window_start, window_end, ignored),
        ]
    )
)
_WHOLE_AND_PATIENTS = CompiledQuery(  # and the patient's own bookings with the practitioners'
    lambda ids, patient_id, window_start, window_end, ignored: unions.union(
        [
            *_hours_and_time_off(ids, window_start, window_end),
            *_and_the_patients(ids, patient_id, window_start, window_end, ignored),
        ]
    )
)


def calendars_of(practitioner_ids, window_start: datetime, window_end: datetime) -> list[tuple]:
    """The practitioners' working hours and their time off overlapping the window, in one query, for
    `Schedule(calendars=...)`."""
    return _CALENDARS.rows(sorted(set(practitioner_ids)), window_start, window_end)


class Schedule:
    """Practitioners' calendars for a window, and (given `patient_id`) the patient's own bookings:
    a patient is in one place at a time, whichever practitioner or clinic they are booked with."""

    def __init__(
        self,
        practitioners: Iterable[Practitioner],
        tz: tzinfo,
        window_start: datetime,
        window_end: datetime,
        *,
        ignore_appointment_id=None,
        patient_id=None,
        ignore_appointment_ids: Iterable = (),
        calendars: list[tuple] | None = None,
    ) -> None:
        """`calendars`: the practitioners' working hours and time off as `calendars_of` reads them, for a caller
        that builds many schedules of one set of practitioners (a treatment plan): then only the bookings are
        read here. Otherwise one query reads them all, with the practitioners' bookings in the window and (given
        `patient_id`) the patient's own, wherever they are."""
        self.tz = tz
        self.practitioners = sorted(practitioners, key=lambda p: (p.name, str(p.id)))
        ids = sorted(p.id for p in self.practitioners)
        ignored = [pk for pk in map(parse_uuid, [ignore_appointment_id, *ignore_appointment_ids]) if pk is not None]
        owner_id = parse_uuid(patient_id)
        if calendars is not None:
            rows = [
                *calendars,
                *(
                    _BOOKINGS_AND_PATIENTS.rows(ids, owner_id, window_start, window_end, ignored)
                    if owner_id is not None
                    else _BOOKINGS.rows(ids, window_start, window_end, ignored)
                ),
            ]
        elif owner_id is not None:
            rows = _WHOLE_AND_PATIENTS.rows(ids, owner_id, window_start, window_end, ignored)
        else:
            rows = _WHOLE.rows(ids, window_start, window_end, ignored)
        self._periods: dict[tuple, list[tuple]] = defaultdict(list)
        off: dict = defaultdict(list)
        booked: dict = defaultdict(list)
        self._patient: list[tuple[datetime, datetime, str, str, str]] = []
        for kind, pid, weekday, clock_from, clock_to, start, end, pk, procedure, clinic in rows:
            if kind == _HOURS_ROW:
                self._periods[(pid, weekday)].append((clock_from, clock_to))
            elif kind == _TIME_OFF_ROW:
                off[pid].append((start, end))
            elif kind == _BOOKING_ROW:
                booked[pid].append((start, end))
            else:  # the patient's own (a booking with one of these practitioners comes twice, once as each)
                self._patient.append((start, end, pk, procedure, clinic))
        for periods in self._periods.values():  # a day entered as rows that meet or overlap is one stretch
            periods[:] = joined_periods(periods)
        self._patient.sort()
        self._patient_busy = _Busy((start, end) for start, end, *_ in self._patient)
        self._off = {pid: _Busy(spans) for pid, spans in off.items()}
        self._booked = {pid: _Busy(spans) for pid, spans in booked.items()}
        self._empty = _Busy(())

    def _within_hours(self, practitioner_id, start: datetime, end: datetime) -> bool:
        local_start, local_end = start.astimezone(self.tz), end.astimezone(self.tz)
        if local_start.date() != local_end.date() and local_end.time() != datetime.min.time():
            return False
        for period_start, period_end in self._periods.get((practitioner_id, local_start.weekday()), ()):
            day = local_start.date()
            if self._at(day, period_start) <= start and end <= self._end_at(day, period_end):
                return True
        return False

    def _at(self, day: date, clock) -> datetime:
        return datetime.combine(day, clock, tzinfo=self.tz).astimezone(UTC)

    def _end_at(self, day: date, clock) -> datetime:
        """A working period's end: at a wall-clock time the clocks repeat (the hour they go back), its later reading,
        so hours ending at 23:59 on a night the clocks go back at midnight (Santiago) take both readings of the hour
        before; elsewhere the same instant as `_at` (a time the clocks skip keeps the earlier offset's reading)."""
        local = datetime.combine(day, clock, tzinfo=self.tz)
        return max(local, local.replace(fold=1), key=lambda moment: moment.astimezone(UTC)).astimezone(UTC)

    def problems(self, practitioner: Practitioner, start: datetime, end: datetime) -> list[Violation]:
        """Why `practitioner` cannot take [start, end), or nothing when they can."""
        found: list[Violation] = []
        if not self._within_hours(practitioner.id, start, end):
            local = start.astimezone(self.tz)
            found.append(
                availability_violation(
                    AvailabilityCode.OUTSIDE_WORKING_HOURS,
                    f"{practitioner.name} does not work at {local:%H:%M} on {local:%A} {local.day} {local:%B %Y}.",
                )
            )
        if self._off.get(practitioner.id, self._empty).overlaps(start, end):
            found.append(availability_violation(AvailabilityCode.TIME_OFF, f"{practitioner.name} is off at that time."))
        if self._booked.get(practitioner.id, self._empty).overlaps(start, end):
            found.append(
                availability_violation(
                    AvailabilityCode.SLOT_TAKEN, f"{practitioner.name} already has an appointment at that time."
                )
            )
        return found

    def patient_problem(self, start: datetime, end: datetime) -> Violation | None:
        """The patient's own booking that [start, end) would overlap, or None."""
        if not self._patient_busy.overlaps(start, end):
            return None
        other_start, _, pk, procedure, clinic = next(row for row in self._patient if row[0] < end and row[1] > start)
        local = other_start.astimezone(self.tz)
        return availability_violation(
            AvailabilityCode.PATIENT_BUSY,
            f"The patient already has an appointment then ({local:%H:%M} on {local:%A} {local.day} {local:%B %Y}).",
            EventRef(str(pk), "appointment", procedure, at=other_start, clinic=str(clinic)),
        )

    def is_free(self, practitioner: Practitioner, start: datetime, end: datetime) -> bool:
        return not self.problems(practitioner, start, end)

    def free_slot_list(
        self,
        *,
        duration: timedelta,
        step: timedelta,
        window_start: datetime,
        window_end: datetime,
        blocked: BlockedSpans | None = None,
    ) -> FreeSlots:
        """Free slots starting in [window_start, window_end], in time order, on each period's step grid: a sequence
        whose length and parts are worked out without making the other days' slots."""
        return FreeSlots(self._runs_by_day(duration, step, window_start, window_end, blocked), duration, step)

    def free_slots(self, **search) -> Iterator[Slot]:
        """`free_slot_list`'s slots one by one (the same arguments), a day made at a time as they are read."""
        return iter(self.free_slot_list(**search))

    def _runs_by_day(
        self,
        duration: timedelta,
        step: timedelta,
        window_start: datetime,
        window_end: datetime,
        blocked: BlockedSpans | None,
    ) -> Iterator[list[_Run]]:
        """Each day's runs of free starts, day by day through the window (a day with none gives an empty list)."""
        day = window_start.astimezone(self.tz).date()
        last_day = window_end.astimezone(self.tz).date()
        # One look-up per candidate: the patient's bookings, the practitioner's time off and bookings together.
        busy = {
            p.id: _Busy(
                [
                    *self._patient_busy.spans,
                    *self._off.get(p.id, self._empty).spans,
                    *self._booked.get(p.id, self._empty).spans,
                ]
            )
            for p in self.practitioners
        }
        while day <= last_day:
            runs: list[_Run] = []
            for practitioner in self.practitioners:
                taken = busy[practitioner.id]
                for period, (period_start, period_end) in enumerate(
                    self._periods.get((practitioner.id, day.weekday()), ())
                ):
                    # On whole minutes, as booking takes them (a period stored with seconds starts at the next minute).
                    first, stop = ceil_minute(self._at(day, period_start)), self._end_at(day, period_end)
                    start = first
                    while start + duration <= stop and start <= window_end:
                        later = _first_possible(start, start + duration, window_start, blocked, taken)
                        if later is None:  # blocked for good
                            break
                        if later > start:  # not here: on to the first step of the grid at or after `later`
                            start = first + -((first - later) // step) * step
                            continue
                        # `start` is free, and so is every start of the grid after it whose slot ends by the next
                        # busy span's start (a span starting earlier would have met `start`'s slot) and that comes
                        # before the next range the rules block: one run, counted, not a question per start.
                        busy_from = taken.next_start(start)
                        last = min(window_end, (stop if busy_from is None else min(stop, busy_from)) - duration)
                        count = max((last - start) // step + 1, 1)  # `start` itself at least, whatever else
                        blocked_from = blocked.next_blocked_after(start) if blocked is not None else None
                        if blocked_from is not None:
                            count = min(count, -((start - blocked_from) // step))  # the starts before it
                        runs.append(_Run(practitioner, period, start, count))
                        start += count * step
            yield runs
            day += timedelta(days=1)


@dataclass(frozen=True)
class _Run:
    """`count` free starts of `practitioner`, `step` apart from `start`, in one of their working periods of a day."""

    practitioner: Practitioner
    period: int
    start: datetime
    count: int


def _slots_of(runs: list[_Run], duration: timedelta, step: timedelta) -> list[Slot]:
    """A day's slots from its runs, in time order (a start's practitioners by name, then in the schedule's order).
    Each start once per practitioner, though a day's periods (joined where they meet) may still overlap in real
    time on the night the clocks go back (an end takes the later reading)."""
    found: list[tuple[datetime, str, Slot]] = []
    offered: dict = defaultdict(set)
    for run in runs:
        practitioner, seen = run.practitioner, offered[run.practitioner.id]
        practitioner_id, name = str(practitioner.id), practitioner.name
        start = run.start
        for _ in range(run.count):
            if start not in seen:
                seen.add(start)
                found.append((start, name, Slot(start, start + duration, practitioner_id, name)))
            start += step
    found.sort(key=lambda row: (row[0], row[1]))
    return [slot for _, _, slot in found]


def _count_of(runs: list[_Run], step: timedelta) -> int:
    """How many slots `_slots_of` makes of a day's runs, without making them: the runs' counts, unless two of a
    practitioner's runs (of two periods) share a start, which only the night the clocks go back can give."""
    total = 0
    for _, grouped in itertools.groupby(runs, key=lambda run: run.practitioner.id):
        mine = list(grouped)
        if len({run.period for run in mine}) > 1 and _overlapping(mine, step):
            total += len({run.start + k * step for run in mine for k in range(run.count)})
        else:
            total += sum(run.count for run in mine)
    return total


def _overlapping(runs: list[_Run], step: timedelta) -> bool:
    spans = sorted((run.start, run.start + (run.count - 1) * step) for run in runs)
    return any(later_first <= earlier_last for (_, earlier_last), (later_first, _) in itertools.pairwise(spans))


class FreeSlots(Sequence[Slot]):
    """A window's free slots in time order (`Schedule.free_slots`), made a day at a time as they are read: its
    length counts the days' runs of free starts, so a page of a long window makes only that page's days' slots.
    Days are worked out as far as a read needs (all of them for the length)."""

    def __init__(self, runs_by_day: Iterator[list[_Run]], duration: timedelta, step: timedelta) -> None:
        self._pending = runs_by_day
        self._duration, self._step = duration, step
        self._days: list[list[_Run]] = []  # days with a slot, in order
        self._ends: list[int] = []  # slots up to and including each of those days
        self._made: dict[int, list[Slot]] = {}

    def _work_out(self, needed: int | None) -> None:
        """Days until more than `needed` slots are known (None: every day)."""
        while needed is None or not self._ends or self._ends[-1] <= needed:
            runs = next(self._pending, None)
            if runs is None:
                return
            count = _count_of(runs, self._step)
            if count:
                self._days.append(runs)
                self._ends.append((self._ends[-1] if self._ends else 0) + count)

    def _day(self, index: int) -> list[Slot]:
        if index not in self._made:
            self._made[index] = _slots_of(self._days[index], self._duration, self._step)
        return self._made[index]

    def __len__(self) -> int:
        self._work_out(None)
        return self._ends[-1] if self._ends else 0

    def __iter__(self) -> Iterator[Slot]:
        index = 0
        while True:
            self._work_out(self._ends[index - 1] if index else 0)
            if index >= len(self._days):
                return
            yield from self._day(index)
            index += 1

    def __getitem__(self, index):
        if isinstance(index, slice):
            if _needs_length(index):
                first, stop, stride = index.indices(len(self))
            else:  # [a:b] with a, b >= 0: only the days up to b are worked out
                first, stop, stride = index.start or 0, index.stop, 1
            if stride != 1:
                return [self[i] for i in range(first, stop, stride)]
            self._work_out(stop)
            found: list[Slot] = []
            day = bisect.bisect_right(self._ends, first)
            while day < len(self._days) and len(found) < stop - first:
                before = self._ends[day - 1] if day else 0
                found.extend(self._day(day)[max(first - before, 0) : stop - before])
                day += 1
            return found
        position = operator.index(index)  # a TypeError for what is not a whole number, as a list gives
        if position < 0:
            position += len(self)
        self._work_out(position)
        if not 0 <= position < (self._ends[-1] if self._ends else 0):
            raise IndexError("slot index out of range")
        day = bisect.bisect_right(self._ends, position)
        return self._day(day)[position - (self._ends[day - 1] if day else 0)]


def _needs_length(index: slice) -> bool:
    """Whether a slice's bounds depend on the length: a negative or open end, a stride."""
    return (
        index.step not in (None, 1)
        or index.stop is None
        or index.stop < 0
        or (index.start is not None and index.start < 0)
    )


def _first_possible(
    start: datetime, end: datetime, window_start: datetime, blocked: BlockedSpans | None, taken: _Busy
) -> datetime | None:
    """`start` when a slot [start, end) may be offered; else the earliest moment a slot of that length might start
    (in the window, allowed by the rules, clear of the calendars), or None when the rules never allow one. Busy
    calendars and blocked weeks are stepped over in one move each, not one step of the grid at a time."""
    if start < window_start:
        return window_start
    if blocked is not None:
        allowed = blocked.free_from(start)
        if allowed is None or allowed > start:
            return allowed
    clear = taken.clear_after(start, end)
    return start if clear is None else clear
