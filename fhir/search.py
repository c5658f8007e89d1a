"""FHIR search parameters, read strictly: an unknown parameter or an unreadable value is a 400, not ignored.

Dates follow FHIR's prefixes (`ge`, `gt`, `le`, `lt`, `eq`); a time must carry its offset, as everywhere
in this service; a bare date (YYYY-MM-DD) is the whole UTC day. Tokens may name their system (`system|code`),
references may be this server's own absolute URLs; what names another system or server matches nothing (R4).
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
MAX_PAGE_DIGITS = 12  # a page number past any real search, read without building a huge int
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


def _code(value: str, name: str, system: str | None) -> str | None:
    """One token alternative: `code`, `|code` or `system|code`. R4: a code of another system matches nothing
    here (None); `system|` (any code of the system) is not supported, a 400."""
    named, bar, code = value.rpartition("|")
    if not _CODE.match(code):
        if bar and not code:
            raise SearchError(name, f"{name}: give a code after '|' (this server does not search a whole system).")
        raise SearchError(name, f"{name}: codes are letters, digits, '-', '_' or '.' (optionally 'system|code').")
    return code if named in ("", system) else None


def code_sets(params, name: str, system: str | None = None) -> list[set[str]]:
    """A token parameter as given: one set of codes per repeat (a comma separates alternatives, OR; each repeat
    must match, AND), [] when it is not given. A code may name `system` (the one this server uses for the
    element); a code of another system is left out, so a repeat of nothing else matches nothing."""
    found = []
    for value in params.getlist(name):
        found.append({code for code in (_code(v, name, system) for v in value.split(",")) if code is not None})
    return found


def codes(params, name: str, system: str | None = None) -> list[str] | None:
    """A token parameter of a single-valued element (an appointment's one status or procedure): the codes it may
    have, comma-separated alternatives (OR) intersected across repeats (AND); None when the parameter is not
    given. An empty list is a search that matches nothing (`status=booked&status=cancelled`), never no filter."""
    sets = code_sets(params, name, system)
    if not sets:
        return None
    return sorted(set.intersection(*sets))


def canonical_id(value: str) -> uuid.UUID | None:
    """Our id in the one form this server hands out (lower-case, hyphenated UUID), else None: R4 ids are
    case-sensitive strings, so `ABC…`, `{…}` or `urn:uuid:…` name nothing here."""
    try:
        pk = uuid.UUID(value)
    except ValueError:
        return None
    return pk if str(pk) == value else None


def reference_id(
    value: str, name: str, resource_types: tuple[str, ...], *, base: str | None = None
) -> tuple[str, uuid.UUID | None]:
    """`Type/id`, a bare id (of the first type) or `{base}Type/id` with this server's own `base`: the type and
    the id. An id that is not ours, or an absolute URL on another server, reads as None (matches nothing)."""
    elsewhere = "://" in value and not (base and value.startswith(base))
    if base and value.startswith(base):
        value = value.removeprefix(base)
    kind, _, pk = value.rpartition("/")
    kind = kind.rpartition("/")[2] if elsewhere else kind or resource_types[0]
    if kind not in resource_types:
        raise SearchError(name, f"{name} refers to {' or '.join(resource_types)} resources.")
    return kind, None if elsewhere else canonical_id(pk)


def id_sets(params, name: str, resource_types: tuple[str, ...], *, base: str | None = None) -> list[list]:
    """A reference (or `_id`) parameter as given: per repeat the ids it names (comma-separated alternatives, OR;
    each repeat must match, AND), with (type, id) pairs and None ids as reference_id reads them."""
    return [
        [reference_id(v, name, resource_types, base=base) for v in value.split(",")] for value in params.getlist(name)
    ]


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


def _whole(raw: str, *, digits: int) -> int | None:
    """A whole number written in ASCII digits (leading zeros allowed), or None when it is not one; a number of
    more than `digits` digits reads as 10**digits, so no huge int is ever built from the address."""
    if not (raw.isascii() and raw.isdigit()):
        return None
    significant = raw.lstrip("0")
    return 10**digits if len(significant) > digits else int(significant or "0")


def count(params) -> int:
    raw = single(params, "_count")
    if raw is None:
        return DEFAULT_COUNT
    number = _whole(raw, digits=len(str(MAX_COUNT)))
    if number is None or not 1 <= number <= MAX_COUNT:
        raise SearchError("_count", f"_count is a whole number from 1 to {MAX_COUNT}.")
    return number


def page(params) -> int:
    """The page asked for (a page past the last is refused by the view, as the total is known there)."""
    raw = single(params, "page")
    if raw is None:
        return 1
    number = _whole(raw, digits=MAX_PAGE_DIGITS)
    if number is None or number < 1:
        raise SearchError("page", "page is a whole number from 1.")
    return number
