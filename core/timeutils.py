"""Turning what people type into instants, refusing what is ambiguous; and instants written back as people read
them.

A wall-clock time in a clinic's zone can fail to exist (clocks go forward)
or exist twice (clocks go back). Both are refused with a clear error unless
an explicit UTC offset settles it (docs/rules.md). Written back (`wall_clock`, `wall_moment`, `wall_span`: the front
desk's pages and sentences, the admin's warnings), a time read twice says which reading it is.
"""

from datetime import UTC, date, datetime, tzinfo

from django.utils import timezone

from core.errors import ErrorCode, InvalidInput

# The years a date may have anywhere in the product (a typo like 0205 or 9999 is refused, not stored).
MIN_YEAR, MAX_YEAR = 1900, 2999
YEARS_OUT_OF_RANGE = f"Out of range: years {MIN_YEAR} to {MAX_YEAR}."


def within_years(value: date | datetime) -> bool:
    """Whether a date or time lies in the years the services accept: outside them a day added, or a zone
    changed, can overflow (year 9999 + 1 day; year 1 at +14:00)."""
    return MIN_YEAR <= value.year <= MAX_YEAR


def local_to_utc(value: datetime, tz: tzinfo, *, field: str = "start") -> datetime:
    """Interpret `value` (naive wall time, or aware) in the clinic zone `tz`; return UTC."""
    if value.tzinfo is not None and value.utcoffset() is not None:
        return value.astimezone(UTC)
    first = value.replace(tzinfo=tz, fold=0)
    second = value.replace(tzinfo=tz, fold=1)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != value:
        raise InvalidInput(
            ErrorCode.NONEXISTENT_LOCAL_TIME,
            f"{value:%Y-%m-%d %H:%M} does not exist in {tz} (the clocks go forward then); "
            "choose another time or give an explicit UTC offset.",
            field=field,
        )
    if first.utcoffset() != second.utcoffset():
        raise InvalidInput(
            ErrorCode.AMBIGUOUS_LOCAL_TIME,
            f"{value:%Y-%m-%d %H:%M} happens twice in {tz} (the clocks go back then); "
            "give an explicit UTC offset to say which one.",
            field=field,
        )
    return first.astimezone(UTC)


def require_aware(value: datetime, *, field: str = "start") -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(
            ErrorCode.NAIVE_DATETIME, "Give the time with a UTC offset, e.g. 2026-03-15T10:30:00+00:00.", field=field
        )
    return value.astimezone(UTC)


def require_whole_minute(value: datetime, *, field: str = "start") -> None:
    if value.second or value.microsecond:
        raise InvalidInput(ErrorCode.NOT_WHOLE_MINUTE, "Appointment times are whole minutes (no seconds).", field=field)


# --- Instants written back as people read them ---------------------------------------------------------------------


def wall_clock(local: datetime) -> str:
    """A local instant's time as the desk reads it: "10:15", or in the hour the clocks go back over (which
    happens twice) with the zone's abbreviation to say which: "01:15 BST", then "01:15 GMT"."""
    if local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():
        return f"{local:%H:%M} {local.tzname()}"
    return f"{local:%H:%M}"


def wall_moment(value: datetime, tz=None) -> str:
    """An exact moment in `tz` (by default the current, clinic, zone), always with its time, midnight too ("Tue 10
    Mar 2026, 00:00"); a time the clocks go back over says which reading it is ("Sun 25 Oct 2026, 01:30 GMT",
    `wall_clock`)."""
    local = timezone.localtime(value, tz)
    return f"{local:%a} {local.day} {local:%b %Y}, {wall_clock(local)}"


def wall_span(start: datetime, end: datetime, tz) -> str:
    """A visit's times on its card: "10:00–10:30"; where a time is read twice, the zone's abbreviation once
    ("01:30–02:00 GMT"), or on each side when the clocks go back in between ("01:30 BST–01:30 GMT")."""
    start, end = timezone.localtime(start, tz), timezone.localtime(end, tz)
    first, last = wall_clock(start), wall_clock(end)
    if start.utcoffset() != end.utcoffset():
        return f"{start:%H:%M} {start.tzname()}–{end:%H:%M} {end.tzname()}"
    if first != f"{start:%H:%M}" or last != f"{end:%H:%M}":
        return f"{start:%H:%M}–{end:%H:%M} {start.tzname()}"
    return f"{first}–{last}"
