"""The Redis cache, failing open: while Redis is unreachable each process keeps its own counters.

The API throttle, the sign-in limiter and the SMS term list keep counters and
copies in the default cache; none of them is worth an error page. A call that
cannot reach Redis is logged (once per outage and thread), answered from this
process's memory instead, and Redis is tried again after RETRY_SECONDS.
"""

from __future__ import annotations

import logging
import time

from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

# What "Redis is down" looks like from redis-py: refused, reset, unresolvable, or no answer in time.
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
# While down, calls go straight to memory; the first call after this long tries Redis again.
RETRY_SECONDS = 5.0


def _fail_open(name: str):
    def method(self, *args, **kwargs):
        if time.monotonic() < self._down_until:
            return getattr(self._fallback, name)(*args, **kwargs)
        try:
            result = getattr(RedisCache, name)(self, *args, **kwargs)
        except REDIS_DOWN as error:
            if not self._down_until:
                logger.warning(
                    "Redis cache at %s is unreachable (%s); counting in this process's memory "
                    "and trying again every %.0f s",
                    self._redacted_location,
                    error,
                    RETRY_SECONDS,
                )
            self._down_until = time.monotonic() + RETRY_SECONDS
            return getattr(self._fallback, name)(*args, **kwargs)
        if self._down_until:
            logger.warning("Redis cache at %s answers again", self._redacted_location)
            self._down_until = 0.0
        return result

    method.__name__ = name
    return method


class FailOpenRedisCache(RedisCache):
    """django.core.cache.backends.redis.RedisCache that falls back to a per-process memory cache."""

    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        # LocMemCache instances of one name share their store, so every thread of the process counts together.
        self._fallback = LocMemCache(
            f"fail-open-redis:{server}", {"TIMEOUT": params.get("TIMEOUT", 300), "OPTIONS": {"MAX_ENTRIES": 10_000}}
        )
        self._down_until = 0.0

    @property
    def _redacted_location(self) -> str:
        # Never log a password from redis://:password@host/.
        location = self._servers[0] if self._servers else ""
        if "@" in location:
            scheme, _, rest = location.partition("://")
            return f"{scheme}://***@{rest.rpartition('@')[2]}"
        return location

    add = _fail_open("add")
    get = _fail_open("get")
    set = _fail_open("set")
    touch = _fail_open("touch")
    delete = _fail_open("delete")
    get_many = _fail_open("get_many")
    has_key = _fail_open("has_key")
    incr = _fail_open("incr")
    set_many = _fail_open("set_many")
    delete_many = _fail_open("delete_many")
    clear = _fail_open("clear")
