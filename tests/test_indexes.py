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
from reminders.reports import sent_by_provider_id_sql

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


@pytest.mark.django_db
def test_the_outbox_keys_indexes_hold_only_rows_that_have_one():
    """A reminder has a template and no endpoint, a webhook delivery the other way round: neither index takes a
    NULL entry for the other kind's rows (reminders 0012)."""
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, OutboxMessage._meta.db_table)
    by_columns = {tuple(about["columns"]): name for name, about in found.items() if about["index"]}
    assert by_columns[("template_id",)] == "outbox_template"
    assert by_columns[("endpoint_id",)] == "outbox_endpoint"
    assert {index.name: index.condition for index in OutboxMessage._meta.indexes}["outbox_endpoint"] is not None


@pytest.mark.postgres
@pytest.mark.django_db
def test_lookups_by_key_use_the_partial_indexes_in_a_prepared_statements_generic_plan():
    """Prepared statements settle on a generic plan (`endpoint_id = $1`): PostgreSQL must still prove the
    index's `IS NOT NULL` from it, or every lookup of a webhook endpoint's deliveries (and Django's SET_NULL
    when one is deleted) would scan the table. The status index stays whole for the opposite reason: from
    `status = $1` no partial condition on the status can be proven."""
    with connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        try:
            plans = {}
            for name, column, value_type in (
                ("outbox_endpoint", "endpoint_id", "uuid"),
                ("outbox_template", "template_id", "bigint"),
            ):
                cursor.execute(
                    f"PREPARE by_key_{column}({value_type}) AS "
                    f"SELECT id FROM {OutboxMessage._meta.db_table} WHERE {column} = $1"
                )
                value = "00000000-0000-0000-0000-000000000001" if value_type == "uuid" else "1"
                cursor.execute(f"EXPLAIN EXECUTE by_key_{column}('{value}')")
                plans[name] = "\n".join(row[0] for row in cursor.fetchall())
                cursor.execute(f"DEALLOCATE by_key_{column}")
        finally:
            cursor.execute("RESET plan_cache_mode")
    for name, plan in plans.items():
        assert name in plan, plan
        assert "$1" in plan, plan  # the generic plan indeed, not a custom one with the value
    indexes = {index.name: index for index in OutboxMessage._meta.indexes}
    assert indexes["outbox_status_due"].condition is None


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("channel", ["sms", "email"])
def test_a_delivery_reports_lookup_uses_the_sent_messages_index_in_a_generic_plan(channel):
    """A provider names a text or e-mail by its id (reminders.reports.delivery_reported): the look-up must find it
    by the partial index of sent messages' ids (reminders 0016), not scan the outbox, also once the prepared
    statement runs on its generic plan (the literals in its text prove the index's condition)."""
    sql = sent_by_provider_id_sql(channel).replace("%s", "$1")
    with connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        try:
            cursor.execute(f"PREPARE by_provider_id(varchar) AS {sql}")
            cursor.execute("EXPLAIN EXECUTE by_provider_id('SM00')")
            plan = "\n".join(row[0] for row in cursor.fetchall())
            cursor.execute("DEALLOCATE by_provider_id")
        finally:
            cursor.execute("RESET plan_cache_mode")
    assert "outbox_provider_id" in plan and "$1" in plan, plan


def test_only_texts_and_e_mails_have_delivery_reports():
    with pytest.raises(ValueError, match="webhook"):
        sent_by_provider_id_sql("webhook")
