"""POST /api/v1/patients/ refuses a likely duplicate in the organisation with 409 possible-duplicate."""

from datetime import date

import pytest

from clinic.models import Patient
from tests.api.conftest import http, new_api_client, problem_of
from tests.factories import ClinicFactory, PatientFactory

pytestmark = pytest.mark.django_db

BORN = date(1985, 6, 18)


@pytest.fixture
def olivia(clinic):
    return PatientFactory(
        clinic=clinic,
        first_name="Olivia",
        last_name="Bennett",
        date_of_birth=BORN,
        phone="+447911123101",
        email="olivia@example.com",
    )


def _register(api, **fields):
    body = {"first_name": "Ada", "last_name": "Lovelace", **fields}
    return api.post("/api/v1/patients/", body, format="json")


def test_same_birth_date_and_a_similar_name_is_a_409_with_the_candidate_and_why(api, olivia):
    body = problem_of(_register(api, first_name="Olívia", last_name="BENETT", date_of_birth="1985-06-18"), 409)
    assert body["type"] == "urn:clinic-api:problem:possible-duplicate"
    assert body["code"] == "possible_duplicate" and body["title"] == "Possible duplicate"
    assert body["candidates"] == [
        {
            "id": str(olivia.pk),
            "first_name": "Olivia",
            "last_name": "Bennett",
            "date_of_birth": "1985-06-18",
            "reasons": ["date_of_birth_and_name"],
        }
    ]
    assert Patient.objects.count() == 1


def test_a_phone_typed_in_another_format_matches_its_e164_form(api, olivia):
    body = problem_of(_register(api, phone="07911 123-101"), 409)  # national, at a London clinic
    assert [c["reasons"] for c in body["candidates"]] == [["phone"]]


def test_an_email_in_other_case_matches(api, olivia):
    body = problem_of(_register(api, email="OLIVIA@Example.COM"), 409)
    assert body["candidates"][0]["reasons"] == ["email"]


def test_every_reason_is_listed(api, olivia):
    body = problem_of(
        _register(
            api,
            first_name="olivia",
            last_name="bennett",
            date_of_birth="1985-06-18",
            phone="+447911123101",
            email="olivia@example.com",
        ),
        409,
    )
    assert body["candidates"][0]["reasons"] == ["date_of_birth_and_name", "phone", "email"]


def test_confirm_new_registers_anyway(api, olivia):
    response = _register(api, first_name="Olivia", last_name="Bennett", date_of_birth="1985-06-18", confirm_new=True)
    assert response.status_code == 201, response.content
    assert "confirm_new" not in response.json()
    assert Patient.objects.filter(last_name="Bennett").count() == 2


def test_confirm_new_must_be_a_boolean(api, olivia):
    body = problem_of(_register(api, confirm_new="yes"), 400)
    assert "confirm_new" in body["errors"]


def test_a_different_person_is_registered_without_a_question(api, olivia):
    response = _register(api, first_name="Oliver", last_name="Benson", date_of_birth="1985-06-18", phone="")
    assert response.status_code == 201, response.content


def test_a_sister_clinics_patient_is_a_candidate(clinic, olivia):
    sister = ClinicFactory(code="west", organisation=clinic.organisation)
    api = http(new_api_client(sister)[1])
    body = problem_of(_register(api, email="olivia@example.com"), 409)
    assert [c["id"] for c in body["candidates"]] == [str(olivia.pk)]


def test_another_organisations_patient_is_never_a_candidate(api, other_clinic):
    PatientFactory(
        clinic=other_clinic,
        first_name="Olivia",
        last_name="Bennett",
        date_of_birth=BORN,
        phone="+447911123101",
        email="olivia@example.com",
    )
    response = _register(
        api, first_name="Olivia", last_name="Bennett", date_of_birth="1985-06-18", email="olivia@example.com"
    )
    assert response.status_code == 201, response.content


def test_the_idempotency_key_replays_the_409_and_then_a_confirmed_retry_is_another_request(api, olivia):
    headers = {"HTTP_IDEMPOTENCY_KEY": "reg-1"}
    first = api.post(
        "/api/v1/patients/",
        {"first_name": "X", "last_name": "Y", "email": "olivia@example.com"},
        format="json",
        **headers,
    )
    again = api.post(
        "/api/v1/patients/",
        {"first_name": "X", "last_name": "Y", "email": "olivia@example.com"},
        format="json",
        **headers,
    )
    assert first.status_code == again.status_code == 409
    assert again["Idempotent-Replayed"] == "true" and again.json() == first.json()
    confirmed = api.post(
        "/api/v1/patients/",
        {"first_name": "X", "last_name": "Y", "email": "olivia@example.com", "confirm_new": True},
        format="json",
        HTTP_IDEMPOTENCY_KEY="reg-2",
    )
    replayed = api.post(
        "/api/v1/patients/",
        {"first_name": "X", "last_name": "Y", "email": "olivia@example.com", "confirm_new": True},
        format="json",
        HTTP_IDEMPOTENCY_KEY="reg-2",
    )
    assert confirmed.status_code == replayed.status_code == 201
    assert replayed.json()["id"] == confirmed.json()["id"]
    assert Patient.objects.filter(last_name="Y").count() == 1


def test_the_schema_documents_the_409_and_confirm_new(client):
    schema = client.get("/api/v1/schema/?format=json").json()
    create = schema["paths"]["/api/v1/patients/"]["post"]
    conflict = create["responses"]["409"]["content"]["application/problem+json"]
    assert conflict["schema"] == {"$ref": "#/components/schemas/DuplicateProblemOut"}
    assert "confirm_new" in schema["components"]["schemas"]["PatientCreateInRequest"]["properties"]
