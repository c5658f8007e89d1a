"""The tables a booking writes carry no index another one covers (core/schema.py).

Every index costs every insert, and a booking inserts an appointment, its audit row, its messages and
its Idempotency-Key's row. An index whose columns lead another index (or equal them) answers nothing
the other does not: Django makes one per foreign key unless told otherwise, and on PostgreSQL a second,
`varchar_pattern_ops`, beside it for a character key; both were dropped (clinic 0014, reminders 0010).
Runs on either database, against the schema the migrations made.
"""

import pytest
from django.db import connection

from api.models import IdempotencyKey
from clinic.models import Appointment, AuditEvent
from reminders.models import OutboxMessage

WRITTEN_BY_A_BOOKING = [Appointment, AuditEvent, OutboxMessage, IdempotencyKey]


def _btree_indexes(table: str) -> dict[str, dict]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, table)
    return {name: about for name, about in found.items() if about["index"] and about.get("type") == "idx"}


def covered(indexes: dict[str, dict]) -> list[tuple[str, str]]:
    """(covered, covering) pairs: a plain index whose columns lead (or are) another index's."""
    return [
        (name, other)
        for name, about in indexes.items()
        if not about["unique"]
        for other, its in indexes.items()
        if other != name and its["columns"][: len(about["columns"])] == about["columns"]
    ]


def test_the_check_finds_a_covered_index_and_a_copy():
    indexes = {
        "a": {"columns": ["patient_id"], "unique": False},
        "a_like": {"columns": ["patient_id"], "unique": False},
        "b": {"columns": ["patient_id", "start_at"], "unique": False},
        "c": {"columns": ["start_at"], "unique": False},
        "u": {"columns": ["key"], "unique": True},
        "u2": {"columns": ["key", "owner"], "unique": True},
    }
    assert sorted(covered(indexes)) == [("a", "a_like"), ("a", "b"), ("a_like", "a"), ("a_like", "b")]


@pytest.mark.django_db
@pytest.mark.parametrize("model", WRITTEN_BY_A_BOOKING, ids=lambda m: m.__name__)
def test_no_index_of_a_booked_table_is_covered_by_another(model):
    indexes = _btree_indexes(model._meta.db_table)
    assert indexes, "the introspection found no index at all: the check would pass for nothing"
    assert covered(indexes) == []


@pytest.mark.django_db
def test_the_lookups_the_dropped_indexes_served_still_have_one():
    """Whatever asked by clinic, patient, practitioner or a message's appointment is answered by an index
    those columns lead."""
    leading = {
        (table, about["columns"][0])
        for table in (Appointment._meta.db_table, OutboxMessage._meta.db_table)
        for about in _btree_indexes(table).values()
    }
    for column in ("clinic_id", "patient_id", "practitioner_id", "procedure_id", "area_id"):
        assert (Appointment._meta.db_table, column) in leading
    assert (OutboxMessage._meta.db_table, "appointment_id") in leading
