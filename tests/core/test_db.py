"""PostgreSQL connections load timestamptz values with psycopg's C loader (core/db.py), with the values
and time zone Django's own loader gives."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.backends.postgresql.psycopg_any import BaseTzLoader
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import _queries

from clinic.models import Appointment
from core.db import _utc_loader, keep_long_statements_parsed
from tests.factories import AppointmentFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

TIMESTAMPTZ = "timestamptz"


def _loaded(sql: str, *params):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def _djangos(text: str) -> datetime:
    """What Django's own loader makes of PostgreSQL's text for a value."""

    class DjangoUtc(BaseTzLoader):
        timezone = UTC

    return DjangoUtc(0, connection.connection).load(text.encode())


def test_the_connection_uses_the_c_loader():
    connection.ensure_connection()
    registered = connection.connection.adapters.get_loader(_oid(), _text())
    assert registered is _utc_loader() is not None
    assert registered.timezone is UTC  # what Django's create_cursor compares with its time zone


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 12, 31), timezones=st.just(UTC)),
)
def test_any_instant_comes_back_as_itself_in_utc_as_django_would_load_it(moment):
    loaded = _loaded("SELECT %s::timestamptz", moment)
    assert loaded == moment
    assert loaded.tzinfo is UTC
    text = _loaded("SELECT %s::timestamptz::text", moment)
    assert _djangos(text) == loaded


def test_a_session_set_to_another_zone_still_gives_the_same_instant_in_utc():
    summer = datetime(2026, 7, 1, 11, 30, 15, 123456, tzinfo=UTC)
    with connection.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'Europe/London'")
        try:
            cursor.execute("SELECT %s::timestamptz, %s::timestamptz::text", [summer, summer])
            loaded, text = cursor.fetchone()
        finally:
            cursor.execute("SET TIME ZONE 'UTC'")
    assert text.endswith("+01")  # PostgreSQL did answer in London's summer time
    assert loaded == summer and loaded.tzinfo is UTC


def test_an_appointment_read_through_the_orm_keeps_its_times(catalogue, now):
    start = now + timedelta(days=3, microseconds=7)
    made = AppointmentFactory(start_at=start)
    read = Appointment.objects.values_list("start_at", "end_at", "created_at").get(pk=made.pk)
    assert read[:2] == (start, start + timedelta(minutes=30))
    assert all(value.tzinfo is UTC for value in read)


def _oid():
    import psycopg

    return psycopg.postgres.types[TIMESTAMPTZ].oid


def _text():
    from psycopg.pq import Format

    return Format.TEXT


def test_a_long_statement_is_parsed_once_not_on_every_run(monkeypatch):
    """A booking's messages go in one INSERT of 100-odd parameters; psycopg keeps its parsing now (core/db.py)."""
    assert keep_long_statements_parsed()  # this psycopg still has the limits; if not, core/db.py needs a look
    parsed = []
    split = _queries._split_query
    monkeypatch.setattr(_queries, "_split_query", lambda query, *a, **k: parsed.append(query) or split(query, *a, **k))
    tag = uuid.uuid4().hex  # a statement text never run before in this process
    sql = f"SELECT '{tag}', " + " + ".join(["%s::int"] * 150)
    for _ in range(3):
        assert _loaded(sql, *range(150)) == tag
    assert len(parsed) == 1
