"""FHIR search parameters, read strictly: an unknown parameter or an unreadable value is a 400, not ignored.

Dates follow FHIR's prefixes (`ge`, `gt`, `le`, `lt`, `eq`); a time must carry its offset, as everywhere
in this service; a bare date (YYYY-MM-DD) is the whole UTC day.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from api.fields import parse_aware
from core.timeutils import YEARS_OUT_OF_RANGE, within_years

MAX_COUNT = 200
DEFAULT_COUNT = 50
COMMON = {"_count", "_format", "page"}
_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_PREFIX = re.compile(r"(ge|gt|le|lt|eq)?(.+)\Z", re.S)


class SearchError(Exception):
    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


@dataclass(frozen=True)
class Window:
    """[start, end): None on a side the search leaves open."""

    start: datetime | None = None
    end: datetime | None = None


def refuse_unknown(params, allowed: set[str]) -> None:
    for name in params:
        if name not in allowed | COMMON:
            raise SearchError(
                name,
                f"This server does not support the search parameter {name!r} here "
                f"(supported: {', '.join(sorted(allowed | COMMON))}).",
            )
        for value in params.getlist(name):
            if not value or "\x00" in value:
                raise SearchError(name, f"Give {name} a value.")


def single(params, name: str) -> str | None:
    values = params.getlist(name)
    if len(values) > 1:
        raise SearchError(name, f"Give {name} at most once.")
    return values[0] if values else None


def code_sets(params, name: str) -> list[set[str]]:
    """A token parameter as given: one set of codes per repeat (a comma separates alternatives, OR; each repeat
    must match, AND), [] when it is not given."""
    found = []
    for value in params.getlist(name):
        these = set(value.split(","))
        if not all(_CODE.match(code) for code in these):
            raise SearchError(name, f"{name}: codes are letters, digits, '-', '_' or '.'.")
        found.append(these)
    return found


def codes(params, name: str) -> list[str] | None:
    """A token parameter of a single-valued element (an appointment's one status or procedure): the codes it may
    have, comma-separated alternatives (OR) intersected across repeats (AND); None when the parameter is not
    given. An empty list is a search that matches nothing (`status=booked&status=cancelled`), never no filter."""
    sets = code_sets(params, name)
    if not sets:
        return None
    return sorted(set.intersection(*sets))


def reference_id(value: str, name: str, resource_types: tuple[str, ...]) -> tuple[str, uuid.UUID | None]:
    """`Type/id` (or a bare id for the first type): the type and the id; an id that is not ours reads as None."""
    kind, _, pk = value.rpartition("/")
    kind = kind or resource_types[0]
    if kind not in resource_types:
        raise SearchError(name, f"{name} refers to {' or '.join(resource_types)} resources.")
    try:
        return kind, uuid.UUID(pk)
    except ValueError:
        return kind, None


def _moment(raw: str, name: str) -> tuple[datetime, datetime]:
    """The instant (or whole UTC day) a value names, as [from, to)."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            raise SearchError(name, f"{name}: {raw!r} is not a date.")
        if not within_years(day):  # the day after 9999-12-31 does not exist
            raise SearchError(name, f"{name}: {YEARS_OUT_OF_RANGE}")
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return start, start + timedelta(days=1)
    try:
        moment = parse_aware(raw)
    except ValueError as exc:
        raise SearchError(name, f"{name}: {exc}")
    return moment, moment


def window(params, name: str) -> Window:
    start = end = None
    for value in params.getlist(name):
        prefix, raw = _PREFIX.match(value).groups()
        low, high = _moment(raw, name)
        if prefix in ("ge", None, "eq"):
            start = max(start, low) if start else low
        if prefix == "gt":  # strictly after: an instant itself is not (as `lt` leaves it out)
            after = high if high > low else high + timedelta(microseconds=1)
            start = max(start, after) if start else after
        if prefix in ("lt",):
            end = min(end, low) if end else low
        if prefix in ("le", None, "eq"):
            bound = high if high > low else high + timedelta(microseconds=1)
            end = min(end, bound) if end else bound
    if start and end and end <= start:
        raise SearchError(name, f"{name}: the range is empty (its end is not after its start).")
    return Window(start, end)


def count(params) -> int:
    raw = single(params, "_count")
    if raw is None:
        return DEFAULT_COUNT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw[:6]) <= MAX_COUNT:
        raise SearchError("_count", f"_count is a whole number from 1 to {MAX_COUNT}.")
    return int(raw)


def page(params) -> int:
    raw = single(params, "page")
    if raw is None:
        return 1
    if not (raw.isascii() and raw.isdigit()) or int(raw[:12]) < 1:
        raise SearchError("page", "page is a whole number from 1.")
    return int(raw[:12])
