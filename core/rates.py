"""A request rate as the settings give it ("300/min"): read at start by the settings, and per request by
the API's throttle (api/throttling.py), which tests override."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

PERIODS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}


def parse_rate(rate: str, *, name: str = "API_THROTTLE_RATE") -> tuple[int, int]:
    """(requests, seconds) of "N/period"; N at least 1 (0 would refuse every request)."""
    try:
        count, period = rate.split("/")
        limit, seconds = int(count), PERIODS[period.strip().lower()]
    except (ValueError, KeyError, AttributeError):
        raise ImproperlyConfigured(
            f"{name} must look like 300/min (a whole number, then s, min, hour or day), not {rate!r}"
        ) from None
    if limit < 1:
        raise ImproperlyConfigured(f"{name} must allow at least 1 request, not {rate!r}")
    return limit, seconds
