"""PostgreSQL connections load `timestamptz` values with psycopg's C loader.

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
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

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
