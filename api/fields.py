"""Serializer fields that check shape strictly: JSON types as documented, times with offsets.

DRF is lenient by default (a number for a string, "yes" for true, a naive
time read as UTC); a booking API must not guess, so these refuse instead.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from operator import attrgetter

from django.utils.dateparse import parse_date
from rest_framework import serializers


class StrictCharField(serializers.CharField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


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


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictDateField(serializers.DateField):
    default_error_messages = {"invalid": "Give a date as YYYY-MM-DD."}

    def to_internal_value(self, value):
        if not isinstance(value, str):
            self.fail("invalid")
        try:
            parsed = parse_date(value)
        except ValueError:
            parsed = None
        if parsed is None:
            self.fail("invalid")
        if not MIN_YEAR <= parsed.year <= MAX_YEAR:
            raise serializers.ValidationError(OUT_OF_RANGE, code="invalid")
        return parsed


# Calendar arithmetic near year 1 or 9999 overflows; no clinic needs dates outside this.
MIN_YEAR, MAX_YEAR = 1900, 2999
OUT_OF_RANGE = f"Out of range: years {MIN_YEAR} to {MAX_YEAR}."


def parse_aware(value) -> datetime:
    """An ISO 8601 time with an explicit offset, or ValueError saying what is wrong."""
    if not isinstance(value, str):
        raise ValueError("Give the time as an ISO 8601 string, e.g. 2026-03-15T10:30:00+00:00.")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("Not an ISO 8601 time; use e.g. 2026-03-15T10:30:00+00:00.")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("Give the time with a UTC offset, e.g. 2026-03-15T10:30:00+00:00.")
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise ValueError(OUT_OF_RANGE)
    return parsed


class AwareDateTimeField(serializers.DateTimeField):
    """An instant: ISO 8601 with an offset. A time without one is refused, never read as UTC."""

    def to_internal_value(self, value):
        try:
            return parse_aware(value)
        except ValueError as error:
            raise serializers.ValidationError(str(error), code="invalid")


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

