"""Statements a keyed API booking costs, counted over HTTP as a platform makes it (issue 14: at most 15 per accepted
booking, asserted; docs/benchmarks.md). The count is the whole request's: the caller's authentication and scope, the
Idempotency-Key's row and response, the patient's tenancy read and lock, the practitioners' lock, the timeline and
calendars, the appointment, its audit row and messages, the recall, and the transaction itself. It does not grow
with the patient's history."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from clinic.models import HistorySource
from reminders.defaults import care_texts_load
from reminders.models import OutboxMessage
from tests.api.conftest import NOW
from tests.factories import ProcedureRecordFactory

pytestmark = pytest.mark.django_db


def keyed_booking(api, patient, start, key, **extra):
    body = {"patient": str(patient.pk), "procedure": "filler", "start": start.isoformat(), **extra}
    return api.post("/api/v1/appointments/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def statements_of(api, patient, start, key, **extra) -> list[str]:
    """The request's statements; the test's transaction makes the booking's BEGIN and COMMIT a SAVEPOINT and its
    RELEASE, counted as they stand for them."""
    with CaptureQueriesContext(connection) as queries:
        response = keyed_booking(api, patient, start, key, **extra)
    assert response.status_code == 201, response.content
    messages = OutboxMessage.objects.filter(appointment_id=response.json()["id"]).exclude(channel="webhook")
    assert messages.exists(), "the booking planned no reminders: the count would leave their statement out"
    return [q["sql"] for q in queries.captured_queries]


@pytest.fixture
def warm(api, patient, practitioner):
    """The shipped care texts (so the booking plans its reminders); the first booking of a process loads its copies
    (rule book, catalogue, templates, subscriptions)."""
    care_texts_load()
    assert keyed_booking(api, patient, NOW + timedelta(days=7, hours=1), "warm-up").status_code == 201


@pytest.mark.usefixtures("warm")
def test_a_keyed_booking_at_the_callers_home_clinic_runs_at_most_15_statements(api, patient):
    statements = statements_of(api, patient, NOW + timedelta(days=8, hours=1), "k-1")
    # Neither clinic nor practitioner named, the caller's scope holding the patient's home clinic: no clinic read
    # beyond the scope's own (the first statement after the caller's).
    clinic_reads = [sql for sql in statements if sql.startswith('SELECT "clinic_clinic"."id" AS "pk" FROM')]
    assert len(clinic_reads) == 1, clinic_reads
    assert len(statements) <= 15, "\n".join(statements)


@pytest.mark.usefixtures("warm")
def test_naming_the_practitioner_and_the_clinic_costs_no_more_than_15(api, patient, practitioner, clinic):
    statements = statements_of(
        api,
        patient,
        NOW + timedelta(days=8, hours=2),
        "k-2",
        practitioner=str(practitioner.pk),
        clinic=clinic.code,
    )
    assert len(statements) <= 15, "\n".join(statements)


@pytest.mark.usefixtures("warm")
def test_the_count_does_not_grow_with_the_patients_history(api, patient, practitioner):
    small = len(statements_of(api, patient, NOW + timedelta(days=9, hours=1), "k-3"))
    for weeks in range(1, 41):
        ProcedureRecordFactory(
            patient=patient,
            procedure_id="microneedling",
            source=HistorySource.REPORTED,
            performed_at=NOW - timedelta(weeks=weeks * 3),
        )
    large = len(statements_of(api, patient, NOW + timedelta(days=10, hours=1), "k-4"))
    assert large == small
