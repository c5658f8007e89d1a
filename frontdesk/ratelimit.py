"""Counting failed sign-ins so that password guessing is refused after a few tries.

Two fixed-window counters in the default cache: one per (username, address),
which locks a targeted account from that address, and one per address alone,
which stops one machine from trying many usernames. A success clears the first.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache

from core.client_address import client_address as core_client_address

PREFIX = "frontdesk:login-failures"


def client_address(request) -> str:
    # The peer's address, or behind a trusted proxy (FORWARDED_ALLOW_IPS) the client it names: the API's throttle
    # reads it the same way (core.client_address). A client's own X-Forwarded-For is never read.
    return core_client_address(request)


def _keys(username: str, address: str) -> tuple[str, str]:
    digest = hashlib.sha256(f"{(username or '').strip().lower()}|{address}".encode()).hexdigest()
    return f"{PREFIX}:user:{digest}", f"{PREFIX}:addr:{hashlib.sha256(address.encode()).hexdigest()}"


def login_locked(*, username: str, address: str) -> bool:
    """True when this username from this address, or this address at all, has failed too often."""
    per_user, per_address = _keys(username, address)
    return (
        cache.get(per_user, 0) >= settings.FRONTDESK_LOGIN_MAX_FAILURES
        or cache.get(per_address, 0) >= settings.FRONTDESK_LOGIN_MAX_FAILURES_PER_IP
    )


def login_failed(*, username: str, address: str) -> None:
    window = settings.FRONTDESK_LOGIN_WINDOW_SECONDS
    for key in _keys(username, address):
        # add() starts the window only on the first failure; incr() is atomic in shared caches.
        cache.add(key, 0, timeout=window)
        try:
            cache.incr(key)
        except ValueError:  # expired between add() and incr()
            cache.set(key, 1, timeout=window)


def login_succeeded(*, username: str, address: str) -> None:
    per_user, _ = _keys(username, address)
    cache.delete(per_user)


def lockout_minutes() -> int:
    return max(1, round(settings.FRONTDESK_LOGIN_WINDOW_SECONDS / 60))
