"""The published OpenAPI schema: served, rendered, and true to the API (Schemathesis, in process).

Schemathesis generates requests from the schema for every operation (its
examples, coverage and fuzzing phases, valid and invalid data) and checks each
answer with every check it has (`--checks all`); a stateful run then follows
the schema's links from one operation to the next. Path parameters are pointed
at real records so the fuzzing reaches the services, not just 404s. The whole
module takes about a minute on two cores (docs/api.md).
"""

import contextlib
import json
import re

import pytest
import schemathesis
from django.db import transaction
from django.test import override_settings
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.openapi.checks import RejectedPositiveData

from api.fields import DATE_TIME_PATTERN, parse_aware
from clinic.models import Appointment
from plans.defaults import plan_templates_load
from tests.api.conftest import http, new_api_client
from tests.factories import PatientConditionFactory, ProcedureRecordFactory

pytestmark = pytest.mark.django_db


def test_schema_is_served_as_openapi_3_and_public(client):
    response = client.get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    for path in (
        "/api/v1/clinics/",
        "/api/v1/procedures/",
        "/api/v1/practitioners/",
        "/api/v1/patients/",
        "/api/v1/patients/{patient_id}/",
        "/api/v1/patients/{patient_id}/procedures/",
        "/api/v1/patients/{patient_id}/medications/",
        "/api/v1/patients/{patient_id}/conditions/",
        "/api/v1/eligibility/",
        "/api/v1/availability/",
        "/api/v1/appointments/",
        "/api/v1/appointments/{appointment_id}/",
        "/api/v1/appointments/{appointment_id}/reschedule/",
        "/api/v1/appointments/{appointment_id}/cancel/",
        "/api/v1/appointments/{appointment_id}/complete/",
    ):
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


def test_schema_documents_the_etags_and_if_match_of_the_writes_that_overwrite(client):
    """docs/api.md "Changing safely": the intake's PUT and the PATCHes of a patient and of a course take If-Match
    (a 412 when it names another version), and their GETs and answers carry the ETag to send in it."""
    schema = json.loads(client.get("/api/v1/schema/?format=json").content)
    by_id = {operation["operationId"]: operation for _, _, operation in _operations(schema)}
    for read, write in [
        ("patients_conditions_list", "patients_conditions_replace"),
        ("patients_retrieve", "patients_update"),
        ("patients_medications_retrieve", "patients_medications_end"),
    ]:
        for operation_id in (read, write):
            assert "ETag" in by_id[operation_id]["responses"]["200"]["headers"], operation_id
        assert any(p["name"] == "If-Match" and p["in"] == "header" for p in by_id[write]["parameters"]), write
        assert "412" in by_id[write]["responses"], write
    assert "ETag" not in by_id["patients_list"]["responses"]["200"].get("headers", {})
    # A move overwrites where an appointment is: its GET carries the version, the reschedule takes If-Match.
    assert "ETag" in by_id["appointments_retrieve"]["responses"]["200"]["headers"]
    cancel = next(op for op_id, op in by_id.items() if op_id.startswith("appointments_cancel"))
    for write in (by_id["appointments_reschedule"], cancel):
        assert any(p["name"] == "If-Match" and p["in"] == "header" for p in write["parameters"])
        assert "412" in write["responses"]


def _operations(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            yield path, method, operation


def test_schema_states_the_limits_the_code_enforces(client):
    schema = json.loads(client.get("/api/v1/schema/?format=json").content)
    for path, method, operation in _operations(schema):
        parameters = {p["name"]: p["schema"] for p in operation.get("parameters", [])}
        if "page" in parameters:
            assert parameters["page"] == {"type": "integer", "minimum": 1}, path
            assert parameters["page_size"] == {"type": "integer", "minimum": 1, "maximum": 200}, path
        if "Idempotency-Key" in parameters:
            assert parameters["Idempotency-Key"] == {
                "type": "string",
                "minLength": 1,
                "maxLength": 255,
                "pattern": "^[!-~]([ -~]*[!-~])?$",
            }, path
        for status in ("401", "403", "404", "414", "429", "431"):
            assert "application/problem+json" in operation["responses"][status]["content"], (path, method, status)
        assert operation["responses"]["401"]["headers"]["WWW-Authenticate"]["required"] is True
        assert operation["responses"]["429"]["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}
        if "201" in operation["responses"]:
            assert operation["responses"]["201"]["headers"]["Location"]["required"] is True
    appointments = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/appointments/"]["get"]["parameters"]}
    assert appointments["clinic"]["minLength"] == 1 and appointments["patient"]["format"] == "uuid"
    assert appointments["start_after"]["pattern"] == DATE_TIME_PATTERN
    procedures = schema["paths"]["/api/v1/procedures/"]["get"]["parameters"]
    assert {"name": "bookable", "schema": {"type": "boolean"}} in [
        {"name": p["name"], "schema": p["schema"]} for p in procedures
    ]
    # A PATCH that records a course's end needs its one field.
    assert schema["components"]["schemas"]["MedicationCourseEndInRequest"]["required"] == ["ended_on"]


def test_schema_links_each_created_record_to_what_can_be_done_with_it(client):
    schema = json.loads(client.get("/api/v1/schema/?format=json").content)
    created = schema["paths"]["/api/v1/appointments/"]["post"]["responses"]["201"]["links"]
    assert created["appointments_cancel_create"] == {
        "operationId": "appointments_cancel_create",
        "parameters": {"appointment_id": "$response.body#/id"},
    }
    patient = schema["paths"]["/api/v1/patients/"]["post"]["responses"]["201"]["links"]
    assert set(patient) >= {"patients_retrieve", "patients_procedures_create", "patients_conditions_replace"}


@given(
    year=st.integers(1, 9999),
    hours=st.integers(-23, 23),
    minutes=st.integers(0, 59),
    zulu=st.sampled_from(["", "Z", "z"]),
)
@settings(max_examples=300, deadline=None)
def test_the_published_time_pattern_says_exactly_which_times_the_api_takes(year, hours, minutes, zulu):
    offset = zulu or f"{'-' if hours < 0 else '+'}{abs(hours):02d}:{minutes:02d}"
    value = f"{year:04d}-03-15T10:30:00{offset}"
    try:
        parse_aware(value)
        accepted = True
    except ValueError:
        accepted = False
    assert accepted == bool(re.search(DATE_TIME_PATTERN, value)), value


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
    booked = http(key).post(
        "/api/v1/appointments/",
        {"patient": str(patient.pk), "procedure": "botox", "start": "2026-03-03T10:00:00+00:00"},
        format="json",
    )
    assert booked.status_code == 201, booked.content
    course = (
        http(key)
        .post(
            f"/api/v1/patients/{patient.pk}/medications/",
            {"drug": "isotretinoin", "started_on": "2025-01-01"},
            format="json",
        )
        .json()
    )
    plan_templates_load()
    plan = http(key).post(
        f"/api/v1/patients/{patient.pk}/plans/",
        {"template": "plasma-pen-course", "start_from": "2026-03-09"},
        format="json",
    )
    assert plan.status_code == 201, plan.content
    return {
        "key": key,
        "patient_id": str(patient.pk),
        "appointment_id": booked.json()["id"],
        "course_id": course["id"],
        "plan_id": plan.json()["id"],
    }


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


# Schemathesis 4.32's checks: all are on by default in its Python API, and every call below runs all of them
# (positive_data_acceptance narrowed as explained under REFUSALS_OF_WELL_FORMED_REQUESTS).
EVERY_CHECK = {
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
    "ignored_auth",
    "object_level_authorization",
}


def test_every_schemathesis_check_is_on():
    config = schema.config.checks_config_for()
    assert EVERY_CHECK <= set(schemathesis.checks.CHECKS.get_all_names())
    assert all(config.get_by_name(name=name).enabled for name in schemathesis.checks.CHECKS.get_all_names())


# Codes of refusals a well-formed request can still meet: it names something that does not exist or is not the
# caller's, a page past the end, a time in the past or out of order, an Idempotency-Key already used for another
# request. A schema says what is well formed, not what exists, so these are not schema mismatches; a 400
# `invalid_input` (shape) for a schema-valid request is one, and still fails.
REFUSALS_OF_WELL_FORMED_REQUESTS = {
    "unknown_patient",
    "unknown_practitioner",
    "unknown_clinic",
    "unknown_procedure",
    "unknown_area",
    "unknown_drug",
    "unknown_condition",
    "clinic_mismatch",
    "clinic_required",
    "page_out_of_range",
    "idempotency_key_reused",
    "start_in_past",
    "performed_in_future",
    "birth_date_in_future",
    "ends_before_start",
    "end_before_start",
    "window_end_before_start",
    "window_too_long",
    "not_whole_minute",
    "invalid_patient",
    "duplicate_condition",
    "procedure_not_bookable",
    "practitioner_does_not_do_procedure",
    "no_practitioner_for_procedure",
    "reason_required",
    # A webhook URL of the right shape whose host is private, loopback or not https in production (SSRF).
    "invalid_webhook_endpoint",
    # Registration: the organisation has a likely duplicate (a well-formed body that does not say confirm_new).
    "possible_duplicate",
    # Merging: into itself, into or from a merged record, or two intakes that disagree.
    "merge_into_self",
    "patient_merged",
    "merge_conflict",
    # The intake's PUT with an If-Match naming a version it does not have (any tag but its current one).
    "record_changed",
    # An If-Match that is not "*" nor quoted ETags (`0`): the schema's pattern says so (api.schema.IF_MATCH_PATTERN),
    # but the fuzzer's header values do not follow a header's pattern (seen: `If-Match: 0` sent as positive data).
    "invalid_if_match",
    # Treatment plans: a template code that is not ours, a proposal that does not fit the course's windows,
    # a session the plan does not have, a course the options make impossible (docs/plans.md).
    "unknown_plan_template",
    "plan_session_outside_window",
    "unknown_plan_session",
    "invalid_plan",
}


def positive_data_acceptance_beyond_what_exists(ctx, response, case):
    try:
        return schemathesis.checks.positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if _problem_code(response) in REFUSALS_OF_WELL_FORMED_REQUESTS:
            return None
        raise


def _problem_code(response) -> str | None:
    try:
        return response.json().get("code")
    except (ValueError, AttributeError):
        return None


VALIDATE = {
    "excluded_checks": [schemathesis.checks.positive_data_acceptance],
    "additional_checks": [positive_data_acceptance_beyond_what_exists],
}


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@override_settings(API_THROTTLE_RATE="100000/min")
def test_api_conforms_to_its_schema(case, fuzz_world):
    for name in ("patient_id", "appointment_id", "course_id", "plan_id"):
        if case.path_parameters and name in case.path_parameters:
            case.path_parameters[name] = fuzz_world[name]
    if isinstance(case.body, dict) and "patient" in case.body:
        case.body["patient"] = fuzz_world["patient_id"]
    if case.query and "patient" in case.query:
        case.query["patient"] = fuzz_world["patient_id"]
    assert case.meta is None or case.meta  # read after the edits: Schemathesis re-judges what is valid
    with _test_transaction_kept_open():
        case.call_and_validate(headers={"Authorization": f"Token {fuzz_world['key']}"}, **VALIDATE)


class ApiWorkflows(schema.as_state_machine()):
    """Sequences of calls that follow the links between operations (a created patient is then read, changed,
    given a history and booked; a booking is then moved, cancelled, completed), each answer checked as above."""

    key = None  # the fuzzing caller's key, set by the test

    def setup(self):
        """Each scenario starts from the same data: what one wrote is rolled back after it. Otherwise a scenario
        replayed to report a failure meets what every later one wrote, answers differently, and Hypothesis
        reports "inconsistent data generation" in place of the failure."""
        self._before = transaction.savepoint()

    def teardown(self):
        transaction.savepoint_rollback(self._before)
        super().teardown()

    def get_call_kwargs(self, case):
        return {"headers": {"Authorization": f"Token {self.key}"}}

    def validate_response(self, response, case, additional_checks=None, **kwargs):
        case.validate_response(
            response, headers=kwargs.get("headers"), transport_kwargs=kwargs or None, recorder=self.recorder, **VALIDATE
        )


# Bounded so the whole module stays well under two minutes in CI (2 cores): scenarios of up to 6 calls.
STATEFUL_SETTINGS = settings(
    max_examples=60,
    stateful_step_count=6,
    deadline=None,
    derandomize=True,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@override_settings(API_THROTTLE_RATE="100000/min")
def test_api_workflows_conform_to_the_schema(fuzz_world):
    ApiWorkflows.key = fuzz_world["key"]
    with _test_transaction_kept_open():  # around the whole run: checks send probes of their own
        ApiWorkflows.run(settings=STATEFUL_SETTINGS)


def test_fuzzing_left_the_appointment_table_sane(fuzz_world):
    assert Appointment.objects.filter(pk=fuzz_world["appointment_id"]).exists()
