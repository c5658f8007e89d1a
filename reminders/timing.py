"""When a message is due: offsets in the clinic's zone, quiet hours, lateness. Pure, no ORM.

Hour and minute offsets are elapsed time; day offsets keep the local wall-clock
time across daylight-saving changes ("7 days after 15:00" is 15:00). SMS never
goes out in quiet hours (21:00-08:00 local by default): a message that warns
about something ahead (pre-care, reminders) moves earlier, never later; one
that follows something (post-care, notices) moves later (docs/reminders.md, "Time").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from enum import StrEnum

from django.conf import settings


class Direction(StrEnum):
    EARLIER = "earlier"  # warns about something ahead: may move earlier, never later
    LATER = "later"  # follows something: may move later, never earlier


@dataclass(frozen=True)
class QuietHours:
    """A nightly window [start, end) of local time in which no SMS goes out."""

    start: time = time(21, 0)
    end: time = time(8, 0)

    @property
    def spans_midnight(self) -> bool:
        return self.start > self.end

    def contains(self, local: time) -> bool:
        if self.spans_midnight:
            return local >= self.start or local < self.end
        return self.start <= local < self.end


def quiet_hours() -> QuietHours:
    """The SMS quiet hours the settings give (REMINDERS_SMS_QUIET_HOURS, clinic-local)."""
    start, end = settings.REMINDERS_SMS_QUIET_HOURS
    return QuietHours(time.fromisoformat(start), time.fromisoformat(end))


@dataclass(frozen=True)
class Plan:
    due_at: datetime | None  # None: this message should not be sent
    reason: str = ""  # why it is None, for the outbox row and the operator


def _wall(day, clock: time, tz: tzinfo, *, earliest: bool) -> datetime:
    """A local wall time as an instant; in a DST gap or overlap take the earlier or later reading."""
    readings = [datetime.combine(day, clock, tzinfo=tz).replace(fold=f).astimezone(UTC) for f in (0, 1)]
    return min(readings) if earliest else max(readings)


def apply_offset(anchor_at: datetime, value: int, unit: str, tz: tzinfo) -> datetime:
    """`anchor_at` moved by the offset, in UTC."""
    # Elapsed offsets are added in UTC: Python adds a timedelta to a zoned datetime on the wall clock.
    if unit == "minutes":
        return anchor_at.astimezone(UTC) + timedelta(minutes=value)
    if unit == "hours":
        return anchor_at.astimezone(UTC) + timedelta(hours=value)
    if unit == "days":
        local = anchor_at.astimezone(tz)
        # A wall time that does not exist (or exists twice) on the target day: stay on the
        # side of the anchor, so a "before" message never drifts towards it.
        return _wall(local.date() + timedelta(days=value), local.time().replace(tzinfo=None), tz, earliest=value < 0)
    raise ValueError(f"unknown offset unit {unit!r}")


def _clock_reaches(day, clock: time, tz: tzinfo) -> list[datetime]:
    """The instants (UTC) at which the local clock on `day` reaches `clock`, in order: one; two in a DST overlap
    (the clock reads it twice); in a DST gap, the instant the clock jumps past it."""
    wall = datetime.combine(day, clock)
    readings = sorted({wall.replace(tzinfo=tz, fold=f).astimezone(UTC) for f in (0, 1)})
    if len(readings) == 1 or all(r.astimezone(tz).replace(tzinfo=None) == wall for r in readings):
        return readings
    return [_offset_change(readings[0], readings[1], tz)]  # a gap: the jump lies between the two readings


def _offset_change(before: datetime, after: datetime, tz: tzinfo) -> datetime:
    """The first second at which `tz`'s offset is what it is at `after` (it differs at `before`)."""
    offset = after.astimezone(tz).utcoffset()
    low, high = int(before.timestamp()), int(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, tz).utcoffset() == offset:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _clock_changes(start: datetime, end: datetime, tz: tzinfo) -> list[datetime]:
    """The instants in (start, end] at which the local clock jumps (DST), for a span of a few days: no zone
    changes its offset twice within weeks, so equal offsets at both ends mean no change between them."""
    if start.astimezone(tz).utcoffset() == end.astimezone(tz).utcoffset():
        return []
    return [_offset_change(start, end, tz)]


# Quiet hours end where the clock reaches their end or jumps out of them, and start where it reaches their start
# or jumps into them (a clock put back can re-enter a window it had left): the answers are among these instants,
# looked for two days either side (a clock change can swallow a day's whole allowed time).
_SEARCH_DAYS = 2


def _allowed(instant: datetime, tz: tzinfo, quiet: QuietHours) -> bool:
    return not quiet.contains(instant.astimezone(tz).time())


def _where_it_changes(moment: datetime, tz: tzinfo, clock: time) -> list[datetime]:
    day = moment.astimezone(tz).date()
    reached = [
        at
        for shift in range(-_SEARCH_DAYS, _SEARCH_DAYS + 1)
        for at in _clock_reaches(day + timedelta(days=shift), clock, tz)
    ]
    span = timedelta(days=_SEARCH_DAYS + 1)
    return reached + _clock_changes(moment - span, moment + span, tz)


def last_allowed_before(moment: datetime, tz: tzinfo, quiet: QuietHours) -> datetime:
    """The latest instant at or before `moment` outside quiet hours (one minute before they last began)."""
    moment = moment.astimezone(UTC)
    if _allowed(moment, tz, quiet):
        return moment
    minute = timedelta(minutes=1)
    return max(
        at - minute
        for at in _where_it_changes(moment, tz, quiet.start)
        if at <= moment and _allowed(at - minute, tz, quiet) and not _allowed(at, tz, quiet)
    )


def first_allowed_after(moment: datetime, tz: tzinfo, quiet: QuietHours) -> datetime:
    """The earliest instant at or after `moment` outside quiet hours (when they next end)."""
    moment = moment.astimezone(UTC)
    if _allowed(moment, tz, quiet):
        return moment
    return min(at for at in _where_it_changes(moment, tz, quiet.end) if at >= moment and _allowed(at, tz, quiet))


def plan_due(
    *,
    anchor_at: datetime,
    offset_value: int,
    offset_unit: str,
    tz: tzinfo,
    now: datetime,
    direction: Direction,
    is_sms: bool,
    quiet: QuietHours,
    send_if_late: bool,
    deadline: datetime | None = None,
) -> Plan:
    """When to send, or why not.

    `deadline` is the moment the message warns about (the appointment start):
    a message that cannot go out before it is not sent at all.
    """
    due = apply_offset(anchor_at, offset_value, offset_unit, tz)
    late = due < now
    if late:
        if not send_if_late:
            return Plan(None, "its time had passed when it was planned")
        due = now
    if is_sms:
        if direction == Direction.EARLIER and not late:
            moved = last_allowed_before(due, tz, quiet)
            # Moving earlier into the past means "now", which may itself be quiet: then wait.
            due = moved if moved >= now else first_allowed_after(now, tz, quiet)
        else:
            due = first_allowed_after(due, tz, quiet)
    if deadline is not None and due >= deadline:
        return Plan(
            None,
            "no moment outside SMS quiet hours is left before the appointment"
            if is_sms
            else "the appointment has already started",
        )
    return Plan(due)
