"""Input the API refuses with a 400 naming the field: impossible offsets, bodies that are not JSON objects,
and text that cannot be stored (NUL characters, lone surrogates) wherever it is sent.

These run on PostgreSQL in CI, where a NUL byte that reached the database was a 500.
"""

import json
import uuid

import pytest

from clinic.models import Appointment
from plans.defaults import plan_templates_load
from tests.api.conftest import http, new_api_client, problem_of

pytestmark = pytest.mark.django_db

NUL = "a\x00b"


def raw(api, method, path, body: bytes | str, content_type="application/json", **extra):
    return api.generic(method, path, body, content_type=content_type, **extra)


def eligibility(api, patient, start):
    return api.post(
        "/api/v1/eligibility/", {"patient": str(patient.pk), "procedure": "botox", "start": start}, format="json"
    )


@pytest.fixture
def booked(api, patient, practitioner):
    response = api.post(
        "/api/v1/appointments/",
        {"patient": str(patient.pk), "procedure": "botox", "start": "2026-03-03T10:00:00+00:00"},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


# --- Offsets ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start",
    [
        "2026-03-10T10:00:00+23:59",
        "2026-03-10T10:00:00-14:01",
        "2026-03-10T10:00:00+14:30",
        "2026-03-10T10:00:00+01:00:30",
        "2026-03-10T10:00:00+0100",
    ],
)
def test_an_offset_beyond_14_hours_or_not_in_hours_and_minutes_is_refused_naming_the_field(api, patient, start):
    body = problem_of(eligibility(api, patient, start), 400)
    assert body["errors"] == {
        "start": [
            "Give the UTC offset as Z, or from -14:00 to +14:00 in hours and minutes, e.g. 2026-03-15T10:30:00+01:00."
        ]
    }


@pytest.mark.parametrize(
    "start",
    ["2026-03-10T10:00:00+14:00", "2026-03-10T10:00:00-12:00", "2026-03-10T10:00:00z", "2026-03-10T10:00:00+05:45"],
)
def test_every_real_offset_is_accepted(api, patient, practitioner, start):
    assert eligibility(api, patient, start).status_code == 200


def test_offsets_are_checked_in_queries_too(api, patient):
    errors = problem_of(api.get("/api/v1/appointments/?start_after=2026-03-10T10:00:00%2B23:59"), 400)["errors"]
    assert list(errors) == ["start_after"]
    errors = problem_of(
        api.get(f"/api/v1/availability/?patient={patient.pk}&procedure=botox&from=2026-03-10T10:00:00-15:00"), 400
    )["errors"]
    assert list(errors) == ["from"]


# --- Bodies that are not a JSON object -------------------------------------------------------------------


def test_a_body_of_control_characters_is_a_400_not_an_empty_object(api, booked):
    # Python's str.strip() removes U+001C..U+001F, so this body used to read as {} and cancel the appointment.
    body = problem_of(raw(api, "POST", f"/api/v1/appointments/{booked}/cancel/", "\x1c\x1d\x1e\x1f"), 400)
    assert body["code"] == "malformed_request" and body["errors"]["non_field_errors"]
    assert Appointment.objects.get(pk=booked).status == "confirmed"


@pytest.mark.parametrize("body", ["[]", "[{}]", "1", '"cancel"', "null", "true"])
@pytest.mark.parametrize("action", ["cancel", "complete", "no-show", "clear", "reschedule"])
def test_json_that_is_not_an_object_is_a_400_on_every_action(clinical_api, booked, action, body):
    problem = problem_of(raw(clinical_api, "POST", f"/api/v1/appointments/{booked}/{action}/", body), 400)
    assert problem["errors"]
    assert Appointment.objects.get(pk=booked).status == "confirmed"


@pytest.mark.parametrize("body", ["[]", "1", "null", '"x"'])
def test_json_that_is_not_an_object_is_a_400_on_patch_and_eligibility(api, patient, body):
    problem_of(raw(api, "PATCH", f"/api/v1/patients/{patient.pk}/", body), 400)
    problem_of(raw(api, "POST", "/api/v1/eligibility/", body), 400)


def test_the_intake_wants_a_list_not_an_object(api, patient):
    assert problem_of(raw(api, "PUT", f"/api/v1/patients/{patient.pk}/conditions/", "{}"), 400)["errors"]


@pytest.mark.parametrize("body", [b"", b" \n\t\r "])
def test_an_empty_body_is_fine_where_the_body_is_optional(api, booked, body):
    response = raw(api, "POST", f"/api/v1/appointments/{booked}/cancel/", body)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"


# --- Text that cannot be stored --------------------------------------------------------------------------


def _schema(client):
    return json.loads(client.get("/api/v1/schema/?format=json").content)


def _resolve(schema, node):
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _body_operations(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if content:
                yield method, path, _resolve(schema, content["schema"])


@pytest.fixture
def urls(patient, booked, api, settings):
    course = api.post(
        f"/api/v1/patients/{patient.pk}/medications/",
        {"drug": "isotretinoin", "started_on": "2025-01-01"},
        format="json",
    ).json()["id"]
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = True  # no name is resolved for this test
    webhook = api.post("/api/v1/webhooks/", {"url": "https://hooks.platform.example/x"}, format="json").json()["id"]
    plan_templates_load()
    plan = api.post(
        f"/api/v1/patients/{patient.pk}/plans/",
        {"template": "plasma-pen-course", "start_from": "2026-03-09"},
        format="json",
    ).json()["id"]
    return {
        "patient_id": str(patient.pk),
        "appointment_id": booked,
        "course_id": course,
        "webhook_id": webhook,
        "delivery_id": str(uuid.uuid4()),
        "plan_id": plan,
    }


def test_a_nul_in_any_string_field_of_any_body_is_a_400_naming_it(client, clinical_api, urls):
    checked = 0
    schema = _schema(client)
    for method, path, body_schema in _body_operations(schema):
        url = path.format(**urls)
        is_list = body_schema.get("type") == "array"
        fields = _resolve(schema, body_schema["items"])["properties"] if is_list else body_schema["properties"]
        for name in fields:
            body = {name: NUL}
            response = raw(clinical_api, method.upper(), url, json.dumps([body] if is_list else body))
            problem = problem_of(response, 400)
            assert problem["errors"] == {
                f"0.{name}" if is_list else name: ["Text must not contain the NUL character (U+0000)."]
            }, (method, path, name)
            checked += 1
    assert checked > 40  # every string (and every other) field of every body


def test_a_nul_deep_inside_a_body_or_in_a_field_name_is_a_400(api, patient):
    body = problem_of(
        raw(api, "PATCH", f"/api/v1/patients/{patient.pk}/", json.dumps({"reminder_channels": ["email", NUL]})), 400
    )
    assert body["errors"] == {"reminder_channels.1": ["Text must not contain the NUL character (U+0000)."]}
    body = problem_of(raw(api, "PATCH", f"/api/v1/patients/{patient.pk}/", json.dumps({NUL: "x"})), 400)
    assert body["errors"] == {
        "non_field_errors": ["A field name is refused: Text must not contain the NUL character (U+0000)."]
    }


def test_a_lone_surrogate_is_a_400_not_a_500(api, patient):
    # Valid JSON ("\ud800" is a legal escape), but not Unicode text: it can be neither stored nor sent back.
    for text in ('{"first_name": "\\ud800"}', '{"\\udfff": 1}'):
        body = problem_of(raw(api, "PATCH", f"/api/v1/patients/{patient.pk}/", text), 400)
        assert "lone surrogate" in json.dumps(body["errors"])
    patient.refresh_from_db()
    assert patient.first_name == "Pat"


def test_a_nul_in_any_query_parameter_is_a_400(client, api, urls):
    checked = 0
    for path, operations in _schema(client)["paths"].items():
        operation = operations.get("get")
        for parameter in (operation or {}).get("parameters", []):
            if parameter["in"] != "query":
                continue
            response = api.get(path.format(**urls), {parameter["name"]: NUL})
            assert response.status_code == 400, (path, parameter["name"], response.content)
            checked += 1
    assert checked > 20


def test_a_nul_in_the_path_with_an_idempotency_key_is_a_404_not_a_500(api):
    # The key is stored with the answer, whose `instance` is the path: it is stored percent-encoded.
    response = api.post("/api/v1/appointments/a%00b/cancel/", {}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert problem_of(response, 404)["instance"] == "/api/v1/appointments/a%00b/cancel/"
    replay = api.post("/api/v1/appointments/a%00b/cancel/", {}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert replay["Idempotent-Replayed"] == "true"


def test_a_nul_in_the_api_key_is_a_401_not_a_500(clinic):
    new_api_client(clinic)
    client = http()
    client.credentials(HTTP_AUTHORIZATION="Token a\x00b.secret")
    problem_of(client.get("/api/v1/clinics/"), 401)
