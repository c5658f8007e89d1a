"""Per-caller rate limit: a fixed-window counter in the Django cache.

`cache.add` + `cache.incr` are atomic in Redis and in the local-memory
cache, so concurrent requests cannot slip past the limit the way a
read-modify-write history would. The rate comes from settings (env
API_THROTTLE_RATE) and is read per request, so tests can override it.

An anonymous caller is counted by its address (core.client_address: the peer's, or behind a trusted proxy the
client it names; never an X-Forwarded-For the client wrote itself). A request refused for its key (401) is
counted against its address too (api.authentication calls `count_refused_key`), so keys cannot be tried
faster than the anonymous rate: past it the answer is a 429.
"""

from __future__ import annotations

import math
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle

from core.client_address import client_address
from core.rates import parse_rate


def anonymous_ident(request) -> str:
    return f"anon:{client_address(request)}"


def spend(ident: str) -> float | None:
    """Count one request of `ident` in the current window: None while within the rate, else the seconds until
    the window ends."""
    limit, period = parse_rate(settings.API_THROTTLE_RATE)
    now = time.time()
    window = int(now // period)
    key = f"api-throttle:{ident}:{period}:{window}"
    # A little longer than the window, so the counter outlives clock skew between workers.
    cache.add(key, 0, timeout=period + 5)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.add(key, 1, timeout=period + 5)
        count = 1
    if count > limit:
        return (window + 1) * period - now
    return None


def count_refused_key(request) -> None:
    """A key was refused (401): count it against the address's anonymous budget; past it, a 429 instead."""
    wait = spend(anonymous_ident(request))
    if wait is not None:
        raise Throttled(wait=math.ceil(wait))


class CallerRateThrottle(BaseThrottle):
    def __init__(self) -> None:
        self._wait: float | None = None

    def _ident(self, request) -> str:
        if request.auth is not None and hasattr(request.auth, "key_prefix"):
            return f"client:{request.auth.pk}"
        if getattr(request.user, "is_authenticated", False):
            return f"user:{request.user.pk}"
        return anonymous_ident(request)

    def allow_request(self, request, view) -> bool:
        self._wait = spend(self._ident(request))
        return self._wait is None

    def wait(self) -> float | None:
        return math.ceil(self._wait) if self._wait is not None else None
