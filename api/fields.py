"""Serializer fields that check shape strictly: JSON types as documented, times with offsets.

DRF is lenient by default (a number for a string, "yes" for true, a naive
time read as UTC); a booking API must not guess, so these refuse instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from operator import attrgetter

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from core.timeutils import MAX_YEAR, MIN_YEAR, YEARS_OUT_OF_RANGE

# Calendar arithmetic near year 1 or 9999 overflows; no clinic needs dates outside this.
# Real offsets run from -12:00 to +14:00; ISO 8601 syntax would allow up to 23:59, which no place uses.
MAX_OFFSET = timedelta(hours=14)

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
# The offset as RFC 3339 writes it (Z, or ±HH:MM, the minutes under 60); ISO 8601's other spellings (+0100, +01)
# are refused.
_OFFSET = re.compile(r"(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)", re.ASCII)
# The date and time of day as RFC 3339 writes them (section 5.6: a T, t or space between; seconds and their fraction
# may be left out), before the offset: not every form Python's parser reads (a basic-format date, an ISO week date,
# any character as the separator), which the published pattern refuses.
_RFC_3339_LOCAL = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?", re.ASCII)

# The same rules for the published schema, in the regex syntax JSON Schema (ECMA 262) and Python share.
# No text may hold a NUL (api.parsers refuses it: PostgreSQL cannot store it), so every pattern excludes it.
DATE_PATTERN = r"^(19|2[0-9])[0-9]{2}-[0-9]{2}-[0-9]{2}$"
DATE_TIME_PATTERN = (
    r"^(19|2[0-9])[0-9]{2}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
    r"([Zz]|[+-](0[0-9]|1[0-3]):[0-5][0-9]|[+-]14:00)$"
)
TEXT_PATTERN = r"^[^\u0000]+$"  # a blank-allowed field's schema adds the empty alternative itself
NOT_BLANK_PATTERN = r"^[^\u0000]*[^\u0000 \t\n\r][^\u0000]*$"
E164_PATTERN = r"^\+[1-9][0-9]{1,14}$"  # drf-spectacular adds the blank alternative of an allow_blank field


# RFC 8259's whitespace, the only characters trimmed from text. (DRF's default, str.strip(), also drops
# control characters such as U+001C, which a schema pattern cannot describe the same way.)
JSON_WHITESPACE = " \t\n\r"
# These validators publish the rules as each field's schema pattern; what they check is already
# checked before them (NUL by the parser, blankness in run_validation), so they never speak first.
NOT_BLANK = RegexValidator(NOT_BLANK_PATTERN, message="This field may not be blank.")
TEXT = RegexValidator(TEXT_PATTERN, message="Text must not contain the NUL character (U+0000).")
# Text typed on several lines (a reason): no control character but tab, CR and LF (core.plain_text: e-mails, calendar
# files and FHIR strings take none).
_LINE_CHARACTER = r"[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]"
LINES_PATTERN = rf"^{_LINE_CHARACTER}+$"
LINES_NOT_BLANK_PATTERN = rf"^{_LINE_CHARACTER}*[^\u0000-\u0020\u007f-\u009f]{_LINE_CHARACTER}*$"
LINES_MESSAGE = "Control characters (other than line breaks and tabs) cannot be part of this."
# Text typed on one line (a name, an e-mail address): no control character at all.
_ONE_LINE_CHARACTER = r"[^\u0000-\u001f\u007f-\u009f]"
ONE_LINE_PATTERN = rf"^{_ONE_LINE_CHARACTER}+$"
ONE_LINE_NOT_BLANK_PATTERN = rf"^{_ONE_LINE_CHARACTER}*[^\u0000-\u0020\u007f-\u009f]{_ONE_LINE_CHARACTER}*$"
ONE_LINE_MESSAGE = "Line breaks, tabs and other control characters cannot be part of this: type it on one line."


class StrictCharField(serializers.CharField):
    """A JSON string (not a number), trimmed of surrounding JSON whitespace; a required one may not be blank."""

    trim = JSON_WHITESPACE  # "" for a field taken exactly as sent

    def __init__(self, *, lines: bool = False, one_line: bool = False, **kwargs):
        kwargs["trim_whitespace"] = False  # trimmed below, of `trim` only
        super().__init__(**kwargs)
        if lines:  # text on several lines: no control character but tab, CR and LF
            pattern = LINES_PATTERN if self.allow_blank else LINES_NOT_BLANK_PATTERN
            self.validators.append(RegexValidator(pattern, message=LINES_MESSAGE, code="control_character"))
        elif one_line:  # text on one line: no control character
            pattern = ONE_LINE_PATTERN if self.allow_blank else ONE_LINE_NOT_BLANK_PATTERN
            self.validators.append(RegexValidator(pattern, message=ONE_LINE_MESSAGE, code="control_character"))
        else:
            self.validators.append(TEXT if self.allow_blank else NOT_BLANK)

    def run_validation(self, data=empty):
        if isinstance(data, str) and not data.strip(self.trim):
            if not self.allow_blank:
                self.fail("blank")
            return ""
        return super().run_validation(data)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data).strip(self.trim)


class CodeField(StrictCharField):
    """A catalogue code (procedure, drug, condition, area); whether it exists is the service's call."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 50)
        super().__init__(**kwargs)


class IdField(StrictCharField):
    """An opaque id; one that is not ours reads as not found."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 64)
        super().__init__(**kwargs)


@extend_schema_field({"type": "string", "pattern": E164_PATTERN})
class PhoneField(StrictCharField):
    """E.164 (`+` and up to 15 digits), or blank. Whether such a number exists is the model's call
    (clinic.models.validate_e164), which reports it together with the record's other problems."""

    trim = ""  # exactly as sent, as the pattern says: " +44..." is not E.164

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 20)
        kwargs.setdefault("allow_blank", True)
        super().__init__(**kwargs)


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


@extend_schema_field({"type": "string", "format": "date", "pattern": DATE_PATTERN})
class StrictDateField(serializers.DateField):
    default_error_messages = {"invalid": "Give a date as YYYY-MM-DD."}

    def to_internal_value(self, value):
        if not isinstance(value, str) or not _DATE.fullmatch(value):
            self.fail("invalid")
        try:
            parsed = date.fromisoformat(value)
        except ValueError:
            self.fail("invalid")
        if not MIN_YEAR <= parsed.year <= MAX_YEAR:
            raise serializers.ValidationError(YEARS_OUT_OF_RANGE, code="invalid")
        return parsed


def parse_aware(value) -> datetime:
    """An ISO 8601 time with an explicit offset, or ValueError saying what is wrong."""
    if not isinstance(value, str):
        raise ValueError("Give the time as an ISO 8601 string, e.g. 2026-03-15T10:30:00+00:00.")
    local = _RFC_3339_LOCAL.match(value)
    if local is None:
        raise ValueError("Not an ISO 8601 time; use e.g. 2026-03-15T10:30:00+00:00.")
    try:
        # RFC 3339 allows a lower-case z, which Python's parser does not read.
        parsed = datetime.fromisoformat(value[:-1] + "Z" if value.endswith("z") else value)
    except ValueError:
        raise ValueError("Not an ISO 8601 time; use e.g. 2026-03-15T10:30:00+00:00.")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("Give the time with a UTC offset, e.g. 2026-03-15T10:30:00+00:00.")
    if not _OFFSET.fullmatch(value, local.end()) or abs(parsed.utcoffset()) > MAX_OFFSET:
        raise ValueError(
            "Give the UTC offset as Z, or from -14:00 to +14:00 in hours and minutes, e.g. 2026-03-15T10:30:00+01:00."
        )
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise ValueError(YEARS_OUT_OF_RANGE)
    return parsed


@extend_schema_field({"type": "string", "format": "date-time", "pattern": DATE_TIME_PATTERN})
class AwareDateTimeField(serializers.DateTimeField):
    """An instant: ISO 8601 with an offset. A time without one is refused, never read as UTC."""

    def to_internal_value(self, value):
        try:
            return parse_aware(value)
        except ValueError as error:
            raise serializers.ValidationError(str(error), code="invalid")


class OffsetDateTimeField(serializers.DateTimeField):
    """Output as every time of the API is written, with a numeric offset (`+00:00`, never DRF's `Z`): a time the
    view has already put in its clinic's offset (a string or an aware value) keeps it (an instant read from the
    database is aware, in UTC); a naive one is read in the server's zone, as DRF does."""

    def to_representation(self, value):
        if not value or isinstance(value, str):
            return value or None
        return (value if value.utcoffset() is not None else self.enforce_timezone(value)).isoformat()


class LocalDateTimeField(serializers.DateTimeField):
    """Output in the clinic's offset; `tz_source` is the dotted path from the object to its clinic."""

    def __init__(self, *, tz_source: str, **kwargs):
        self._tz_of = attrgetter(tz_source)
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def get_attribute(self, instance):
        return (super().get_attribute(instance), self._tz_of(instance).tz)

    def to_representation(self, value):
        moment, tz = value
        return moment.astimezone(tz).isoformat() if moment is not None else None


class InputSerializer(serializers.Serializer):
    """Refuses fields it does not know: a typo or a field such as `clinic` on a PATCH is an error, not ignored."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)
