"""Settings read from the environment, each checked when it is read: a value the service cannot use stops
it at start with an error naming the variable (used by config/settings.py and config/gunicorn.py)."""

import logging
import math
import os
from datetime import time

import dj_database_url
from django.core.exceptions import ImproperlyConfigured


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {value!r}")


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_number(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None


def env_count(name: str, default: int, *, minimum: int = 1, maximum: int | None = None) -> int:
    """A whole number of at least `minimum` (1 unless said): a count or a limit where 0 would silently stop
    the work it bounds, a period, a port. Anything else stops the service at start, naming the variable."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        count = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None
    if count < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {count}")
    if maximum is not None and count > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, not {count}")
    return count


def env_seconds(name: str, default: float, *, unit: str = "seconds") -> float:
    """A period, finite and above 0 (a schedule of 0 s would run without a pause, one of infinity never)."""
    period = env_number(name, default)
    if not (math.isfinite(period) and period > 0):
        raise ImproperlyConfigured(f"{name} must be a number of {unit} above 0, not {os.environ.get(name)!r}")
    return period


def env_clock(name: str, default: str) -> str:
    """A local time of day, HH:MM; checked at start, so a typo cannot fail a booking when a reminder is
    planned."""
    value = os.environ.get(name) or default
    try:
        clock = time.fromisoformat(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a time of day as HH:MM (e.g. 21:00), not {value!r}") from None
    if clock.tzinfo is not None:
        raise ImproperlyConfigured(f"{name} is a local time of the clinic's zone: no offset, not {value!r}")
    return value


def env_database(name: str, default: str, **options) -> dict:
    """A database URL as Django's DATABASES entry (dj_database_url, with `options`). The value is not echoed in
    the error: it may carry a password."""
    value = os.environ.get(name) or default
    try:
        return dj_database_url.parse(value, **options)
    except dj_database_url.UnknownSchemeError as exc:
        raise ImproperlyConfigured(
            f"{name} must be a database URL such as postgres://user:password@host:5432/name or sqlite:///path; "
            f"its scheme {exc.args[0] + '://' if exc.args[0] else '(none)'} is not one Django can use"
        ) from None
    except ValueError:  # dj_database_url.ParseError: a port that is not a number, a broken [IPv6] host
        raise ImproperlyConfigured(
            f"{name} is not a URL that parses (a port that is not a number? %-quote special characters in the password)"
        ) from None


def env_log_level(name: str, default: str) -> str:
    """A level name logging knows (DEBUG, INFO, WARNING, ERROR, CRITICAL), in any case."""
    value = (os.environ.get(name) or default).strip().upper()
    if value not in logging.getLevelNamesMapping():
        known = ", ".join(n for n in logging.getLevelNamesMapping() if n not in ("FATAL", "WARN", "NOTSET"))
        raise ImproperlyConfigured(f"{name} must be one of {known}, not {os.environ.get(name)!r}")
    return value
