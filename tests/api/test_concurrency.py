"""Races over real HTTP on PostgreSQL: many platforms at once, one winner each time, no 500s.

A live server answers each request in its own thread with its own database
connection, so these exercise the booking services' locks, the exclusion
constraint and the Idempotency-Key unique constraint as production would.
"""

import json
import threading

import pytest

from clinic.models import Appointment
from tests.api.conftest import new_api_client
from tests.api.helpers import _all_at_once, _post
from tests.factories import PatientFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_many_platforms_booking_the_same_slot_one_wins(live_server, clinic, practitioner):
    url = live_server.url + "/api/v1/appointments/"
    calls = []
    for _ in range(8):
        key = new_api_client(clinic)[1]
        patient = PatientFactory(clinic=clinic)
        body = {"patient": str(patient.pk), "procedure": "botox", "start": "2026-03-03T10:00:00+00:00"}
        calls.append(lambda key=key, body=body: _post(url, key, body))
    results = _all_at_once(calls)
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [409] * 7, results
    for status, body in results:
        if status == 409:
            assert body["code"] == "booking_refused"
            assert {v["code"] for v in body["violations"]} & {"slot_taken", "no_practitioner_available"}
    assert Appointment.objects.count() == 1


def test_same_patients_conflicting_procedures_at_once_one_wins_each_race(live_server, clinic, practitioner):
    """Botox then microneedling a day later clash (2 weeks, and 3 weeks the other way round)."""
    from tests.factories import PractitionerFactory

    PractitionerFactory(clinic=clinic, name="Dr Second")  # so the two never compete for a practitioner
    key = new_api_client(clinic)[1]
    url = live_server.url + "/api/v1/appointments/"
    rounds = []
    calls = []
    for day in range(3, 7):
        patient = PatientFactory(clinic=clinic)
        rounds.append(patient)
        for procedure, hour in (("botox", 10), ("microneedling", 14)):
            body = {
                "patient": str(patient.pk),
                "procedure": procedure,
                "start": f"2026-03-{day:02d}T{hour}:00:00+00:00",
            }
            calls.append(lambda body=body: _post(url, key, body))
    results = _all_at_once(calls)
    assert all(status in (201, 409) for status, _ in results), results
    for index, patient in enumerate(rounds):
        pair = results[2 * index : 2 * index + 2]
        assert sorted(status for status, _ in pair) == [201, 409], pair
        refused = next(body for status, body in pair if status == 409)
        assert refused["violations"][0]["kind"] == "interval"
        assert Appointment.objects.filter(patient=patient).count() == 1


def test_concurrent_duplicates_with_one_idempotency_key_create_one_appointment(
    live_server, clinic, practitioner, patient
):
    key = new_api_client(clinic)[1]
    url = live_server.url + "/api/v1/appointments/"
    body = {"patient": str(patient.pk), "procedure": "botox", "start": "2026-03-03T10:00:00+00:00"}
    results = _all_at_once([lambda: _post(url, key, body, {"Idempotency-Key": "same-retry"})] * 6)
    assert [status for status, _ in results] == [201] * 6, results
    assert len({json.dumps(payload, sort_keys=True) for _, payload in results}) == 1
    assert Appointment.objects.count() == 1


# --- A duplicate of a request still running (api/idempotency.py) ------------------------------------------------

HELD_KEY_SQL = (
    "INSERT INTO api_idempotencykey (owner, key, fingerprint, method, path, response_status, "
    "response_content_type, response_location, created_at) VALUES (%s, %s, 'first', 'POST', '/', 0, '', '', now())"
)


def _first_request_holding(client, key: str):
    """A connection of its own that inserted the key's row and has not committed: a first request still running."""
    import psycopg
    from django.db import connection

    holder = psycopg.connect(**connection.get_connection_params())
    holder.execute(HELD_KEY_SQL, [f"client:{client.pk}", key])
    return holder


def test_a_duplicate_waits_for_the_running_first_then_is_told_to_retry(
    live_server, clinic, practitioner, patient, monkeypatch
):
    from api import idempotency

    monkeypatch.setattr(idempotency, "WAIT_SECONDS", 1)
    client, token = new_api_client(clinic)
    url = live_server.url + "/api/v1/appointments/"
    body = {"patient": str(patient.pk), "procedure": "botox", "start": "2026-03-03T10:00:00+00:00"}
    holder = _first_request_holding(client, "still-running")
    try:
        status, problem = _post(url, token, body, {"Idempotency-Key": "still-running"})
        assert (status, problem["code"]) == (409, "request_in_progress")
        assert not Appointment.objects.exists()  # the duplicate did no work
    finally:
        holder.rollback()
        holder.close()
    # The first rolled back: the key is free, and the retry does the work once.
    assert _post(url, token, body, {"Idempotency-Key": "still-running"})[0] == 201
    assert Appointment.objects.count() == 1


def test_a_lock_held_too_long_during_the_work_is_a_409_to_retry_and_stores_nothing(
    live_server, clinic, practitioner, patient, monkeypatch
):
    """The key's insert bounds every lock wait of its transaction: a patient record another transaction holds
    past WAIT_SECONDS is a 409 to retry (not a 500, not a request left hanging), and the key is not kept."""
    import time

    import psycopg
    from django.db import connection

    from api import idempotency
    from api.models import IdempotencyKey

    monkeypatch.setattr(idempotency, "WAIT_SECONDS", 1)
    client, token = new_api_client(clinic)
    url = live_server.url + "/api/v1/appointments/"
    body = {"patient": str(patient.pk), "procedure": "botox", "start": "2026-03-03T10:00:00+00:00"}
    holder = psycopg.connect(**connection.get_connection_params())
    holder.execute("SELECT id FROM clinic_patient WHERE id = %s FOR UPDATE", [patient.pk])
    try:
        began = time.monotonic()
        status, problem = _post(url, token, body, {"Idempotency-Key": "held-record"})
        assert (status, problem["code"]) == (409, "request_in_progress")
        assert "waited over 1 s" in problem["detail"]
        assert time.monotonic() - began < 10  # bounded by the 1 s timeout, not by the holder
        assert not Appointment.objects.exists()
        assert not IdempotencyKey.objects.filter(key="held-record").exists()
    finally:
        holder.rollback()
        holder.close()
    assert _post(url, token, body, {"Idempotency-Key": "held-record"})[0] == 201
    assert Appointment.objects.count() == 1


def test_a_duplicate_goes_ahead_when_the_running_first_rolls_back(live_server, clinic, practitioner, patient):
    client, token = new_api_client(clinic)
    url = live_server.url + "/api/v1/appointments/"
    body = {"patient": str(patient.pk), "procedure": "botox", "start": "2026-03-03T10:00:00+00:00"}
    holder = _first_request_holding(client, "rolled-back")
    result: list = []
    waiting = threading.Thread(
        target=lambda: result.append(_post(url, token, body, {"Idempotency-Key": "rolled-back"}))
    )
    try:
        waiting.start()
        waiting.join(timeout=1.5)
        assert waiting.is_alive() and not result  # waiting on the first request's uncommitted key
    finally:
        holder.rollback()
        holder.close()
    waiting.join(timeout=30)
    [(status, payload)] = result
    assert status == 201 and Appointment.objects.filter(pk=payload["id"]).exists()
