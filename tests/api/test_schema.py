"""The published OpenAPI schema: served, rendered, and true to the API (Schemathesis, in process).

Schemathesis generates requests from the schema for every operation and
checks each answer: no 5xx, a documented status, the documented content
type and a body that matches the documented schema. Path parameters are
pointed at real records so the fuzzing reaches the services, not just 404s.
"""
import contextlib
import json

import pytest
import schemathesis
from django.test import override_settings
from hypothesis import HealthCheck, Phase, settings

from clinic.models import Appointment
from tests.api.conftest import http, new_api_client
from tests.factories import PatientConditionFactory, ProcedureRecordFactory

pytestmark = pytest.mark.django_db


def test_schema_is_served_as_openapi_3_and_public(client):
    response = client.get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    for path in ("/api/v1/clinics/", "/api/v1/procedures/", "/api/v1/practitioners/", "/api/v1/patients/",
                 "/api/v1/patients/{patient_id}/", "/api/v1/patients/{patient_id}/procedures/",
                 "/api/v1/patients/{patient_id}/medications/", "/api/v1/patients/{patient_id}/conditions/",
                 "/api/v1/eligibility/", "/api/v1/availability/", "/api/v1/appointments/",
                 "/api/v1/appointments/{appointment_id}/", "/api/v1/appointments/{appointment_id}/reschedule/",
                 "/api/v1/appointments/{appointment_id}/cancel/", "/api/v1/appointments/{appointment_id}/complete/"):
        assert path in paths, path


def test_schema_documents_problem_bodies_and_examples(client):
    schema = json.loads(client.get("/api/v1/schema/?format=json").content)
    book = schema["paths"]["/api/v1/appointments/"]["post"]
    refusal = book["responses"]["409"]["content"]["application/problem+json"]
    assert refusal["schema"] == {"$ref": "#/components/schemas/RefusalProblemOut"}
    example = next(iter(refusal["examples"].values()))["value"]
    assert example["earliest_eligible_start"] and example["violations"][0]["conflicts_with"]["at"]
    assert "application/problem+json" in book["responses"]["400"]["content"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in book["parameters"])
    assert book["requestBody"]["content"]["application/json"]["examples"]
    assert schema["components"]["securitySchemes"]["apiKey"]["name"] == "Authorization"
    assert schema["components"]["schemas"]["BookingInRequest"]["additionalProperties"] is False


def test_docs_page_renders_from_local_assets(client):
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html and "cdn." not in html  # served by drf-spectacular-sidecar


@pytest.fixture
def fuzz_world(clinic, patient, practitioner):
    """Real records for path parameters, and a caller allowed to do everything."""
    ProcedureRecordFactory(patient=patient, procedure_id="botox", performed_at="2026-02-25T10:00:00+00:00")
    PatientConditionFactory(patient=patient, condition_id="eczema", status="history")
    client, key = new_api_client(clinic, name="fuzzer", clinical=True)
    booked = http(key).post("/api/v1/appointments/", {"patient": str(patient.pk), "procedure": "botox",
                                                      "start": "2026-03-03T10:00:00+00:00"}, format="json")
    assert booked.status_code == 201, booked.content
    course = http(key).post(f"/api/v1/patients/{patient.pk}/medications/",
                            {"drug": "isotretinoin", "started_on": "2025-01-01"}, format="json").json()
    return {"key": key, "patient_id": str(patient.pk), "appointment_id": booked.json()["id"],
            "course_id": course["id"]}


def _load_schema():
    from config.wsgi import application

    # Generating the schema touches no database, so it can be loaded at collection time.
    # (schemathesis.pytest.from_fixture would be lazier, but breaks on pytest 9's node ids.)
    return schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", application)


schema = _load_schema()


@contextlib.contextmanager
def _test_transaction_kept_open():
    """As Django's test client does: the raw WSGI handler would otherwise close the
    connection that holds this test's transaction at the end of each request.
    (Entered per call: the test client reconnects the receivers after each of its own requests.)"""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
@override_settings(API_THROTTLE_RATE="100000/min")
def test_api_conforms_to_its_schema(case, fuzz_world):
    for name in ("patient_id", "appointment_id", "course_id"):
        if case.path_parameters and name in case.path_parameters:
            case.path_parameters[name] = fuzz_world[name]
    if isinstance(case.body, dict) and "patient" in case.body:
        case.body["patient"] = fuzz_world["patient_id"]
    if case.query and "patient" in case.query:
        case.query["patient"] = fuzz_world["patient_id"]
    with _test_transaction_kept_open():
        case.call_and_validate(headers={"Authorization": f"Token {fuzz_world['key']}"}, checks=CHECKS)


def test_fuzzing_left_the_appointment_table_sane(fuzz_world):
    assert Appointment.objects.filter(pk=fuzz_world["appointment_id"]).exists()
