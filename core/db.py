"""PostgreSQL through psycopg: `timestamptz` loaded by psycopg's C loader; long statements' parsing kept.

Django (5.2, psycopg 3) registers a loader of its own for `timestamptz` on every connection: a subclass of
psycopg's pure-Python loader, a regular-expression parse and a `replace` for each value, about 5 µs. With
psycopg's C speed-ups installed (`psycopg[binary]`), its own loader takes under 1 µs, and a read of many
appointments (a 90-day availability search reads thousands of start and end times) spends most of its
Python time there otherwise.

`install_fast_timestamptz_loader` (on `connection_created`, from `clinic.apps`) registers a loader that
calls the C one, on a connection whose Django time zone is UTC (`USE_TZ` without a database `TIME_ZONE`,
as here). The C loader returns values in the session's time zone, which Django sets to UTC when it
connects, so they come back exactly as Django's loader gives them (`tzinfo` is `datetime.UTC`); one
whose session was set to another zone since is converted to UTC, never merely relabelled. Without the C
speed-ups, or on another database, nothing changes. The class keeps the `timezone` attribute Django
reads when it compares the connection's loader with its own time zone.

`keep_long_statements_parsed` (once, from `clinic.apps`): psycopg turns a statement's `%s` placeholders into
PostgreSQL's `$1, $2, …` with a regular-expression pass over the whole text and keeps the result in an LRU
cache, except for a statement of more than 50 parameters or 4 KiB, which it parses again on every run. A
booking's messages go in one `INSERT` of five to ten rows (`core.compiled.insert_rows`, 21 columns each), so
that pass ran on every booking: a twentieth of the web workers' samples while booking (docs/benchmarks.md).
The limits are module constants of psycopg's (`psycopg._queries`, read on every call); they are raised here.
Only statement texts are kept, never values. If a psycopg release drops them, nothing changes and
`tests/core/test_db.py` says so.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper


@cache
def _utc_loader() -> type | None:
    """A loader that calls psycopg's C `timestamptz` text loader, or None without the C speed-ups."""
    import psycopg
    from psycopg.adapt import Loader
    from psycopg.pq import Format
    from psycopg.types.datetime import TimestamptzLoader as PythonLoader

    c_loader = psycopg.adapters.get_loader(psycopg.postgres.types["timestamptz"].oid, Format.TEXT)
    if c_loader is None or issubclass(c_loader, PythonLoader):
        return None

    class UtcTimestamptzLoader(Loader):
        timezone = UTC  # read by Django's create_cursor

        def __init__(self, oid, context=None):
            super().__init__(oid, context)
            self._load = c_loader(oid, context).load

        def load(self, data) -> datetime:
            value = self._load(data)
            return value if value.tzinfo is UTC else value.astimezone(UTC)

    return UtcTimestamptzLoader


def install_fast_timestamptz_loader(sender, connection: BaseDatabaseWrapper, **kwargs) -> None:
    if connection.vendor != "postgresql" or getattr(connection, "timezone", None) is not UTC:
        return
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if not is_psycopg3:  # psycopg2 has no such loaders
        return
    loader = _utc_loader()
    if loader is not None:
        connection.connection.adapters.register_loader("timestamptz", loader)


# Statements up to this long, with up to this many parameters, keep their parsed form (psycopg's defaults: 4 KiB,
# 50). Enough for core.compiled.insert_rows (at most 900 parameters in one statement), and no more: the cache
# holds 128 statements, and long `IN (...)` lists of varying length would push the hot ones out.
LONGEST_KEPT = 32 * 1024
MOST_PARAMETERS_KEPT = 1000


def keep_long_statements_parsed() -> bool:
    """Raise psycopg's limits on the statements whose parsing it keeps; False if this psycopg has no such limits."""
    try:
        from psycopg import _queries
    except ImportError:  # psycopg2, or no PostgreSQL driver at all
        return False
    if not all(hasattr(_queries, name) for name in ("MAX_CACHED_STATEMENT_LENGTH", "MAX_CACHED_STATEMENT_PARAMS")):
        return False
    _queries.MAX_CACHED_STATEMENT_LENGTH = max(_queries.MAX_CACHED_STATEMENT_LENGTH, LONGEST_KEPT)
    _queries.MAX_CACHED_STATEMENT_PARAMS = max(_queries.MAX_CACHED_STATEMENT_PARAMS, MOST_PARAMETERS_KEPT)
    return True


def lock_wait_exceeded(error: BaseException) -> bool:
    """A lock waited for longer than allowed: PostgreSQL's lock_timeout (SQLSTATE 55P03), SQLite's busy timeout."""
    if not isinstance(error, DatabaseError):
        return False
    return getattr(error.__cause__, "sqlstate", None) == "55P03" or "database is locked" in str(error)
