"""Per-caller rate limit: a fixed-window counter in the Django cache.

`cache.add` + `cache.incr` are atomic in Redis and in the local-memory
cache, so concurrent requests cannot slip past the limit the way a
read-modify-write history would. The rate comes from settings (env
API_THROTTLE_RATE) and is read per request, so tests can override it.
"""

from __future__ import annotations

import math
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from core.rates import parse_rate


class CallerRateThrottle(BaseThrottle):
    def __init__(self) -> None:
        self._wait: float | None = None

    def _ident(self, request) -> str:
        if request.auth is not None and hasattr(request.auth, "key_prefix"):
            return f"client:{request.auth.pk}"
        if getattr(request.user, "is_authenticated", False):
            return f"user:{request.user.pk}"
        return f"anon:{self.get_ident(request)}"

    def allow_request(self, request, view) -> bool:
        limit, period = parse_rate(settings.API_THROTTLE_RATE)
        now = time.time()
        window = int(now // period)
        key = f"api-throttle:{self._ident(request)}:{period}:{window}"
        # A little longer than the window, so the counter outlives clock skew between workers.
        cache.add(key, 0, timeout=period + 5)
        try:
            count = cache.incr(key)
        except ValueError:  # evicted between add and incr
            cache.add(key, 1, timeout=period + 5)
            count = 1
        if count > limit:
            self._wait = (window + 1) * period - now
            return False
        return True

    def wait(self) -> float | None:
        return math.ceil(self._wait) if self._wait is not None else None
