"""Idempotency-Key: a retried POST replays its first answer and creates nothing twice."""

from datetime import timedelta

import pytest
from django.utils import timezone

from api.models import IdempotencyKey
from clinic.models import Appointment, Patient
from tests.api.conftest import http, new_api_client, problem_of

pytestmark = pytest.mark.django_db

PATIENT = {"first_name": "Ada", "last_name": "Byron"}


def booking(patient, start="2026-03-03T10:00:00+00:00"):
    return {"patient": str(patient.pk), "procedure": "botox", "start": start}


def test_same_key_same_body_replays_the_201_and_creates_nothing(api, patient, practitioner):
    first = api.post("/api/v1/appointments/", booking(patient), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post("/api/v1/appointments/", booking(patient), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again["Location"] == first["Location"]
    assert again["Idempotent-Replayed"] == "true"
    assert Appointment.objects.count() == 1


def test_a_refusal_is_replayed_too(api, patient, practitioner, clinic):
    from tests.factories import PatientFactory

    api.post("/api/v1/appointments/", booking(patient), format="json")
    other = PatientFactory(clinic=clinic)
    first = api.post("/api/v1/appointments/", booking(other), format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    Appointment.objects.all().delete()  # the slot is free now, but the key answers as it first did
    again = api.post("/api/v1/appointments/", booking(other), format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert first.status_code == again.status_code == 409
    assert again["Content-Type"] == "application/problem+json"
    assert first.json() == again.json()
    assert not Appointment.objects.exists()


def test_same_key_different_body_is_422(api, patient, practitioner):
    api.post("/api/v1/appointments/", booking(patient), format="json", HTTP_IDEMPOTENCY_KEY="k-3")
    body = problem_of(
        api.post(
            "/api/v1/appointments/",
            booking(patient, "2026-03-04T10:00:00+00:00"),
            format="json",
            HTTP_IDEMPOTENCY_KEY="k-3",
        ),
        422,
    )
    assert body["code"] == "idempotency_key_reused"
    assert Appointment.objects.count() == 1


def test_same_key_on_another_endpoint_is_422(api, patient, practitioner):
    api.post("/api/v1/patients/", PATIENT, format="json", HTTP_IDEMPOTENCY_KEY="k-4")
    problem_of(
        api.post(f"/api/v1/patients/{patient.pk}/medications/", PATIENT, format="json", HTTP_IDEMPOTENCY_KEY="k-4"), 422
    )


def test_body_key_order_does_not_matter(api):
    first = api.post(
        "/api/v1/patients/", {"first_name": "A", "last_name": "B"}, format="json", HTTP_IDEMPOTENCY_KEY="k-5"
    )
    again = api.post(
        "/api/v1/patients/", {"last_name": "B", "first_name": "A"}, format="json", HTTP_IDEMPOTENCY_KEY="k-5"
    )
    assert first.json() == again.json() and Patient.objects.count() == 1


def test_keys_are_scoped_per_caller(clinic):
    one, two = http(new_api_client(clinic)[1]), http(new_api_client(clinic)[1])
    a = one.post("/api/v1/patients/", PATIENT, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    b = two.post("/api/v1/patients/", PATIENT, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    assert a.status_code == b.status_code == 201 and a.json()["id"] != b.json()["id"]


def test_after_24_hours_the_key_is_fresh(api):
    first = api.post("/api/v1/patients/", PATIENT, format="json", HTTP_IDEMPOTENCY_KEY="k-6")
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))
    again = api.post("/api/v1/patients/", PATIENT, format="json", HTTP_IDEMPOTENCY_KEY="k-6")
    assert again.status_code == 201 and again.json()["id"] != first.json()["id"]
    assert "Idempotent-Replayed" not in again


def test_validation_errors_are_replayed_and_nothing_created(api):
    first = api.post("/api/v1/patients/", {"first_name": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k-7")
    again = api.post("/api/v1/patients/", {"first_name": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k-7")
    assert first.status_code == again.status_code == 400 and first.json() == again.json()


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve"])
def test_invalid_key_is_400(api, key):
    body = problem_of(api.post("/api/v1/patients/", PATIENT, format="json", HTTP_IDEMPOTENCY_KEY=key), 400)
    assert body["code"] == "invalid_idempotency_key"
    assert not Patient.objects.exists()


def test_a_server_error_is_not_stored_so_a_retry_runs_again(api, monkeypatch):
    from clinic import services

    real = services.patient_create

    def fail_once(**kwargs):
        monkeypatch.setattr(services, "patient_create", real)
        real(**kwargs)  # written, then the request fails: both must roll back
        raise RuntimeError("boom")

    monkeypatch.setattr(services, "patient_create", fail_once)
    problem_of(api.post("/api/v1/patients/", PATIENT, format="json", HTTP_IDEMPOTENCY_KEY="k-8"), 500)
    assert not Patient.objects.exists() and not IdempotencyKey.objects.exists()
    assert api.post("/api/v1/patients/", PATIENT, format="json", HTTP_IDEMPOTENCY_KEY="k-8").status_code == 201


def test_action_posts_are_idempotent(api, patient, practitioner):
    created = api.post("/api/v1/appointments/", booking(patient), format="json").json()
    url = f"/api/v1/appointments/{created['id']}/cancel/"
    first = api.post(url, {}, format="json", HTTP_IDEMPOTENCY_KEY="cancel-1")
    again = api.post(url, {}, format="json", HTTP_IDEMPOTENCY_KEY="cancel-1")
    assert first.status_code == again.status_code == 200  # not a 409 "already cancelled"


def test_procedure_and_medication_posts_are_idempotent(api, patient):
    for path, payload in (
        (
            f"/api/v1/patients/{patient.pk}/procedures/",
            {"procedure": "botox", "performed_at": "2026-02-01T10:00:00+00:00"},
        ),
        (f"/api/v1/patients/{patient.pk}/medications/", {"drug": "isotretinoin", "started_on": "2025-01-01"}),
    ):
        for _ in range(2):
            assert api.post(path, payload, format="json", HTTP_IDEMPOTENCY_KEY=path).status_code == 201
        assert api.get(path).json()["count"] == 1


# --- A client whose last clinic was withdrawn (review probe dec7b) -------------------------------------------------


def test_a_client_with_no_clinic_left_gets_its_stored_answer_and_nothing_else(clinic, patient, practitioner):
    platform, key = new_api_client(clinic, name="no-grants-left")
    client = http(key)
    first = client.post("/api/v1/appointments/", booking(patient), format="json", HTTP_IDEMPOTENCY_KEY="k-gone")
    assert first.status_code == 201

    platform.clinics.clear()

    replay = client.post("/api/v1/appointments/", booking(patient), format="json", HTTP_IDEMPOTENCY_KEY="k-gone")
    assert (replay.status_code, replay.content, replay["Idempotent-Replayed"]) == (201, first.content, "true")
    other = booking(patient, start="2026-03-04T10:00:00+00:00")
    for refused in (
        client.post("/api/v1/appointments/", other, format="json", HTTP_IDEMPOTENCY_KEY="k-gone"),  # another body
        client.post("/api/v1/appointments/", other, format="json", HTTP_IDEMPOTENCY_KEY="k-new"),
        client.post("/api/v1/appointments/", other, format="json"),
        client.get(first["Location"], HTTP_IDEMPOTENCY_KEY="k-gone"),
    ):
        assert problem_of(refused, 403)["code"] == "permission_denied"
    assert Appointment.objects.count() == 1


def test_a_key_past_its_hours_does_not_open_the_door_to_a_client_with_no_clinic(clinic, patient, practitioner):
    platform, key = new_api_client(clinic, name="no-grants-expired")
    client = http(key)
    assert (
        client.post("/api/v1/appointments/", booking(patient), format="json", HTTP_IDEMPOTENCY_KEY="k-old").status_code
        == 201
    )
    IdempotencyKey.objects.filter(key="k-old").update(created_at=timezone.now() - timedelta(hours=25))
    platform.clinics.clear()

    again = client.post("/api/v1/appointments/", booking(patient), format="json", HTTP_IDEMPOTENCY_KEY="k-old")

    assert problem_of(again, 403)["code"] == "permission_denied"
    assert Appointment.objects.count() == 1


def test_a_stored_key_opens_no_other_method_to_a_client_with_no_clinic(clinic, patient, practitioner, settings):
    """The review of the replay found a stored key let a PATCH or DELETE of the client's own webhook endpoint run for
    real (they replay nothing); only the keyed POST of the very request stored reaches its replay."""
    settings.WEBHOOKS_ALLOW_HTTP = True
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = True
    platform, key = new_api_client(clinic, name="no-grants-webhook")
    client = http(key)
    hook = client.post("/api/v1/webhooks/", {"url": "http://127.0.0.1:9/hook"}, format="json")
    assert hook.status_code == 201
    assert (
        client.post("/api/v1/appointments/", booking(patient), format="json", HTTP_IDEMPOTENCY_KEY="k-w").status_code
        == 201
    )
    platform.clinics.clear()

    address = hook["Location"]
    patched = client.patch(address, {"active": False}, format="json", HTTP_IDEMPOTENCY_KEY="k-w")
    deleted = client.delete(address, HTTP_IDEMPOTENCY_KEY="k-w")

    assert problem_of(patched, 403)["code"] == problem_of(deleted, 403)["code"] == "permission_denied"
    platform.clinics.add(clinic)
    assert client.get(address).json()["active"] is True  # nothing changed, nothing removed
