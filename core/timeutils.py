"""Turning what people type into instants, refusing what is ambiguous.

A wall-clock time in a clinic's zone can fail to exist (clocks go forward)
or exist twice (clocks go back). Both are refused with a clear error unless
an explicit UTC offset settles it (docs/rules.md).
"""

from datetime import UTC, date, datetime, tzinfo

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
