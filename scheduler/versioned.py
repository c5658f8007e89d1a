"""Per-process copies of what every booking reads and almost never changes, keyed by a version.

The rule book, the catalogue, the reminder templates, the webhook subscriptions and the SMS term
list change rarely but are read on every booking or send. `cached(name, load)` keeps one copy per
process under the current `ConfigVersion.value`, which database triggers raise on every write to
those tables (ORM, admin, bulk update, raw SQL alike; migrations reminders 0005 and 0009).
Learning the version is one indexed read, done once per service call (`snapshot`: a booking, a
batch of sends) and shared by everything that call reads: by the first `cached` read, or inside a
statement the call runs anyway (a booking's patient lock, `offer`); every call that starts after an
edit commits uses the edited copy. When the row is missing (a test database flushed between tests)
nothing is cached.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from django.db import connection

T = TypeVar("T")

_UNSET = object()
_PENDING = object()  # inside a snapshot whose version nobody has read yet
_lock = threading.Lock()
_copies: dict[str, tuple[int, object]] = {}
_snapshot: ContextVar[object] = ContextVar("config_version", default=_UNSET)
_SQL = "SELECT value FROM scheduler_configversion WHERE id = 1"
# The same read as a subquery, for a statement that learns the version on its way (`offer`).
VERSION_SUBQUERY = f"({_SQL})"


def current_version() -> int | None:
    with connection.cursor() as cursor:
        cursor.execute(_SQL)
        row = cursor.fetchone()
    return row[0] if row else None


@contextmanager
def snapshot() -> Iterator[None]:
    """One version for everything inside (nested snapshots share the outer one), read when first needed: by
    `cached`, or offered by a statement that read it anyway (a booking's patient lock, `offer`)."""
    if _snapshot.get() is not _UNSET:
        yield
        return
    token = _snapshot.set(_PENDING)
    try:
        yield
    finally:
        _snapshot.reset(token)


def within_snapshot(fn: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with snapshot():
            return fn(*args, **kwargs)

    return wrapper


def wants_version() -> bool:
    """Inside a snapshot whose version is not known yet: a statement about to run may read it (`offer`)."""
    return _snapshot.get() is _PENDING


def offer(version: int | None) -> None:
    """The version, read by a statement of the caller's, for the snapshot that has not read it yet."""
    if _snapshot.get() is _PENDING:
        _snapshot.set(version)


def cached(name: str, load: Callable[[], T]) -> T:
    version = _snapshot.get()
    if version is _UNSET:
        version = current_version()
    elif version is _PENDING:
        version = current_version()
        _snapshot.set(version)  # until the snapshot ends
    if version is None:
        return load()
    with _lock:
        held = _copies.get(name)
    if held is not None and held[0] == version:
        return held[1]  # type: ignore[return-value]
    value = load()
    with _lock:
        _copies[name] = (version, value)
    return value


def forget() -> None:
    """Drop every copy (tests that swap databases)."""
    with _lock:
        _copies.clear()
