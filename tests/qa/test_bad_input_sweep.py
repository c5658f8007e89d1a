"""Malformed input everywhere (API, FHIR, front desk, portal, feeds, SMS webhook) is a 4xx, never a 5xx.

Aimed at what tests/api/test_input.py, test_errors.py, test_queries.py and tests/frontdesk/test_bad_input.py
do not cover: JSON of the wrong type in every field, extreme dates and instants (years 1 and 9999, offsets that
push a time past them), odd ids in paths, every HTTP method, odd Content-Types and Idempotency-Keys, and the
server-rendered pages' raw query parameters (calendar feed bounds, booking-from-a-cell, merge search, plans).
Nine of these were 500s when a QA pass wrote them (2 December): FHIR dates of 9999-12-31, calendar cells and
feed bounds at the ends of time, plan pages from 9999-12-31, a portal move to 9999, a signed link with an
impossible expiry, non-ASCII inbound-SMS tokens and signatures, a NUL in the merge page's search.
"""

from __future__ import annotations

import json
import uuid

import pytest
from django.test import Client

from clinic.models import Appointment, Patient, StaffRole
from plans.defaults import plan_templates_load
from tests.api.conftest import _clock, http, new_api_client  # noqa: F401 (_clock: autouse fixture)
from tests.frontdesk.conftest import at_london, make_staff, url
from tests.qa.helpers import api_world

pytestmark = pytest.mark.django_db

APPOINTMENT_START = "2026-03-03T10:00:00+00:00"


# --- Fixtures (the rest of the API world is tests/api/conftest.py's, via tests/qa/conftest.py) -------------


@pytest.fixture
def patient(clinic):
    from tests.factories import PatientFactory

    return PatientFactory(clinic=clinic, first_name="Pat", last_name="Lee", phone="+447911123101")


@pytest.fixture
def booked(api, patient, practitioner):
    response = api.post(
        "/api/v1/appointments/",
        {"patient": str(patient.pk), "procedure": "botox", "start": APPOINTMENT_START},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


@pytest.fixture
def ids(api, clinical_api, patient, booked, settings):
    return api_world(api, clinical_api, patient, settings, appointment_id=booked)


@pytest.fixture
def clinical(clinic):
    client = Client()
    client.force_login(make_staff(clinic, StaffRole.CLINICIAN, "clinician"))
    return client


# --- Helpers -----------------------------------------------------------------------------------------------


def no_5xx(response, *context):
    assert response.status_code < 500, (context, response.status_code, response.content[:800])
    return response


def problem_4xx(response, *context, allowed=(400,)):
    no_5xx(response, *context)
    assert response.status_code in allowed, (context, response.status_code, response.content[:800])
    assert response["Content-Type"] == "application/problem+json", (context, response["Content-Type"])
    body = response.json()
    assert body["status"] == response.status_code and body["code"], body
    return body


def raw(client, method, path, body, content_type="application/json", **extra):
    if not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    return client.generic(method, path, body, content_type=content_type, **extra)


HUGE = "x" * 100_000
WRONG_TYPES = [
    None,
    [],
    {},
    ["x"],
    {"a": 1},
    1,
    0,
    -1,
    1.5,
    10**30,
    True,
    False,
    HUGE,
    "\ud800",
    "a\x00b",
    "",
    " ",
    "9" * 5000,
]

# (method, path, a valid-enough base body, fields to spoil). Bodies are objects except the intake's list.
BODY_OPERATIONS = [
    (
        "POST",
        "/api/v1/patients/",
        {"first_name": "Ann", "last_name": "Probe", "date_of_birth": "1990-01-01", "confirm_new": True},
        [
            "first_name",
            "last_name",
            "date_of_birth",
            "email",
            "phone",
            "reminder_channels",
            "sms_consent",
            "clinic",
            "confirm_new",
        ],
    ),
    (
        "PATCH",
        "/api/v1/patients/{patient_id}/",
        {},
        ["first_name", "last_name", "date_of_birth", "email", "phone", "reminder_channels", "sms_consent"],
    ),
    (
        "POST",
        "/api/v1/patients/{patient_id}/procedures/",
        {"procedure": "botox", "performed_at": "2026-01-05T10:00:00+00:00", "area": "face"},
        ["procedure", "performed_at", "area", "source", "notes"],
    ),
    (
        "POST",
        "/api/v1/patients/{patient_id}/medications/",
        {"drug": "isotretinoin", "started_on": "2024-01-01", "ended_on": "2024-02-01"},
        ["drug", "started_on", "ended_on", "notes"],
    ),
    ("PATCH", "/api/v1/patients/{patient_id}/medications/{course_id}/", {}, ["ended_on"]),
    (
        "PUT",
        "/api/v1/patients/{patient_id}/conditions/",
        [{"condition": "eczema", "status": "history"}],
        ["condition", "status", "area"],
    ),
    (
        "POST",
        "/api/v1/eligibility/",
        {"patient": "{patient_id}", "procedure": "botox", "start": "2026-03-10T10:00:00+00:00"},
        ["patient", "procedure", "start", "area", "practitioner", "clinic"],
    ),
    (
        "POST",
        "/api/v1/appointments/",
        {"patient": "{patient_id}", "procedure": "botox", "start": "2026-03-10T10:00:00+00:00"},
        ["patient", "procedure", "start", "area", "practitioner", "clinic"],
    ),
    (
        "POST",
        "/api/v1/appointments/{appointment_id}/reschedule-check/",
        {"start": "2026-03-11T10:00:00+00:00"},
        ["start", "practitioner"],
    ),
    (
        "POST",
        "/api/v1/appointments/{appointment_id}/reschedule/",
        {"start": "2026-03-11T10:00:00+00:00"},
        ["start", "practitioner"],
    ),
    (
        "POST",
        "/api/v1/patients/{patient_id}/plans/",
        {"template": "plasma-pen-course", "start_from": "2026-04-06", "dry_run": True},
        ["template", "start_from", "clinic", "practitioner", "area", "sessions", "dry_run"],
    ),
    (
        "POST",
        "/api/v1/plans/{plan_id}/replan/",
        {"from_session": 2, "start": "2026-05-05T10:00:00+00:00", "dry_run": True},
        ["from_session", "start", "dry_run"],
    ),
    (
        "POST",
        "/api/v1/webhooks/",
        {"url": "https://hooks.platform.example/y"},
        ["url", "events", "description", "active"],
    ),
    ("PATCH", "/api/v1/webhooks/{webhook_id}/", {}, ["url", "events", "description", "active"]),
    ("POST", "/api/v1/webhooks/{webhook_id}/rotate-secret/", {}, ["overlap_minutes"]),
    ("POST", "/api/v1/patients/{patient_id}/merge/", {"into": "{patient_id}"}, ["into", "intake"]),
    ("POST", "/api/v1/appointments/{appointment_id}/cancel/", {"reason": "probe"}, ["reason"]),
]


def _fill(value, ids):
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


# ============================================ API ============================================================


def test_a_wrong_json_type_in_any_body_field_is_a_4xx_problem(clinical_api, ids):
    for value in WRONG_TYPES:
        for method, path, base, fields in BODY_OPERATIONS:
            for field in fields:
                body = _fill(base, ids)
                body = [{**body[0], field: value}] if isinstance(body, list) else {**body, field: value}
                response = raw(clinical_api, method, path.format(**ids), body)
                context = (method, path, field, repr(value)[:40])
                no_5xx(response, *context)
                if response.status_code >= 400:
                    assert response["Content-Type"] == "application/problem+json", context


def test_odd_json_numbers_in_integer_fields_are_handled(clinical_api, ids):
    for literal in [
        "1e400",
        "-1e400",
        "1e-400",
        "2.0",
        "-0",
        "9" * 400,
        "1E2",
        "0.0000001",
        '"10"',
        "[10]",
        "-1",
        "0",
        str(2**63),
    ]:
        for path, template in [
            ("/api/v1/webhooks/{webhook_id}/rotate-secret/", '{"overlap_minutes": %s}'),
            (
                "/api/v1/patients/{patient_id}/plans/",
                '{"template": "plasma-pen-course", "start_from": "2026-04-06", "dry_run": true, "sessions": %s}',
            ),
            (
                "/api/v1/plans/{plan_id}/replan/",
                '{"from_session": %s, "start": "2026-05-05T10:00:00+00:00", "dry_run": true}',
            ),
        ]:
            response = no_5xx(raw(clinical_api, "POST", path.format(**ids), template % literal), path, literal)
            if response.status_code >= 400:
                problem_4xx(response, path, literal, allowed=(400, 409))


BAD_DATES = [
    "0001-01-01",
    "9999-12-31",
    "10000-01-01",
    "2026-02-30",
    "2026-13-01",
    "2026-00-10",
    "+2026-03-10",
    "２０２６-03-10",
    "2026-03-10T00:00:00+00:00",
    "1899-12-31",
    "3000-01-01",
    "20260310",
]
BAD_INSTANTS = [
    "0001-01-01T00:00:00+00:00",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:00+00:00",
    "9999-12-31T23:59:00-14:00",
    "10000-01-01T00:00:00+00:00",
    "2026-02-30T10:00:00+00:00",
    "2026-03-10T10:00:00",
    "2026-03-10T10:00:00+25:00",
    "2026-03-10T24:00:00+00:00",
    "2026-03-10T10:00:60+00:00",
    "2026-03-10T10:00:00−01:00",
    "2026-03-10T10:00:00.5+00:00",
    "1900-01-01T00:00:00+14:00",
    "2999-12-31T23:45:00-14:00",
    "2999-12-31T23:45:00+00:00",
    "2026-W11-2T10:00:00+00:00",
    "2026-03-10",
    "2026-03-10T10:00:00+00:00\n",
]


def test_dates_out_of_range_in_bodies_are_400(clinical_api, ids):
    for value in BAD_DATES:
        for method, path, base, field in [
            ("POST", "/api/v1/patients/", {"first_name": "A", "last_name": "B", "confirm_new": True}, "date_of_birth"),
            ("PATCH", "/api/v1/patients/{patient_id}/", {}, "date_of_birth"),
            ("POST", "/api/v1/patients/{patient_id}/medications/", {"drug": "isotretinoin"}, "started_on"),
            (
                "POST",
                "/api/v1/patients/{patient_id}/medications/",
                {"drug": "isotretinoin", "started_on": "2024-01-01"},
                "ended_on",
            ),
            ("PATCH", "/api/v1/patients/{patient_id}/medications/{course_id}/", {}, "ended_on"),
            (
                "POST",
                "/api/v1/patients/{patient_id}/plans/",
                {"template": "plasma-pen-course", "dry_run": True},
                "start_from",
            ),
        ]:
            problem_4xx(raw(clinical_api, method, path.format(**ids), {**base, field: value}), method, path, value)


def test_instants_at_the_edges_in_bodies_are_handled(clinical_api, ids):
    for value in BAD_INSTANTS:
        for method, path, base, field in [
            ("POST", "/api/v1/eligibility/", {"patient": ids["patient_id"], "procedure": "botox"}, "start"),
            ("POST", "/api/v1/appointments/", {"patient": ids["patient_id"], "procedure": "botox"}, "start"),
            ("POST", "/api/v1/appointments/{appointment_id}/reschedule-check/", {}, "start"),
            (
                "POST",
                "/api/v1/patients/{patient_id}/procedures/",
                {"procedure": "filler", "area": "lips"},
                "performed_at",
            ),
            ("POST", "/api/v1/plans/{plan_id}/replan/", {"from_session": 2, "dry_run": True}, "start"),
        ]:
            response = no_5xx(raw(clinical_api, method, path.format(**ids), {**base, field: value}), path, value)
            if response.status_code >= 400:
                problem_4xx(response, method, path, value, allowed=(400, 409))


def test_instants_at_the_edges_in_query_filters_are_handled(api, ids, practitioner):
    for value in BAD_INSTANTS + ["", "now", "2026-03-10T10:00:00 00:00"]:
        for name in ["start_after", "start_before"]:
            no_5xx(api.get("/api/v1/appointments/", {name: value}), name, value)
        for name in ["from", "to"]:
            query = {"patient": ids["patient_id"], "procedure": "botox", name: value}
            no_5xx(api.get("/api/v1/availability/", query), name, value)
    for query in [
        {"from": "2999-12-20T00:00:00+00:00"},
        {"from": "2999-12-20T00:00:00+00:00", "to": "2999-12-31T23:59:00-14:00"},
        {"from": "1900-01-01T00:00:00+14:00", "to": "1900-01-10T00:00:00+00:00"},
    ]:
        no_5xx(api.get("/api/v1/availability/", {"patient": ids["patient_id"], "procedure": "botox", **query}), query)


def test_odd_page_numbers_are_400(api, patient):
    for value in ["١", "１", "²", "+1", " 1", "1 ", "1.0", "1e2", "0x10", "-0", "00", "9" * 30, "9" * 3000, "Infinity"]:
        for name in ["page", "page_size"]:
            for path in ["/api/v1/patients/", "/api/v1/appointments/", "/api/v1/procedures/", "/api/v1/clinics/"]:
                problem_4xx(api.get(path, {name: value}), path, name, value, allowed=(400, 414))


ODD_FILTERS = [
    {"status": "bogus"},
    {"status": ["confirmed", "bogus"]},
    {"status": ["confirmed", "confirmed"]},
    {"status": "CONFIRMED"},
    {"procedure": "nope"},
    {"procedure": ["botox", "filler"]},
    {"clinic": "not-a-clinic"},
    {"clinic": str(uuid.uuid4())[:18]},
    {"clinic": ["london", "london"]},
    {"patient": "not-a-uuid"},
    {"patient": str(uuid.uuid4()).upper()},
    {"patient": "{" + str(uuid.uuid4()) + "}"},
    {"practitioner": "urn:uuid:" + str(uuid.uuid4())},
    {"practitioner": "0" * 32},
    {"patient": "x" * 3000},
    {"patient": "\ufffd"},
    {"bookable": "True"},
    {"search": "x" * 3000},
    {"search": "\u202e\u200b"},
    {"search": "%"},
    {"search": "_"},
    {"search": "31/02/2026"},
    {"search": "00/00/0000"},
    {"search": "29/02/2025"},
    {"search": "+"},
    {"search": "+4"},
    {"search": "+999999999999999999999999"},
]


def test_odd_filters_are_handled(api, booked):
    for query in ODD_FILTERS:
        for path in ["/api/v1/appointments/", "/api/v1/patients/", "/api/v1/practitioners/", "/api/v1/procedures/"]:
            response = no_5xx(api.get(path, query), path, query)
            if response.status_code >= 400:
                problem_4xx(response, path, query, allowed=(400, 414))


def test_odd_availability_queries_are_handled(api, ids):
    for query in [
        "patient={patient_id}&procedure=botox&patient={patient_id}",
        "patient={patient_id}&procedure=nope",
        "patient={patient_id}&procedure=botox&practitioner=nope",
        "patient={patient_id}&procedure=botox&area=%00",
        "patient={patient_id}&procedure=botox&clinic=%ED%A0%80",
        "patient=%ED%A0%80&procedure=botox",
        "patient={patient_id}&procedure=botox&from=2026-03-10T10:00:00%2B00:00&to=2026-03-10T10:00:00%2B00:00",
        "patient={patient_id}&procedure=botox&from=2026-03-10T10:00:00%2B00:00&to=2026-03-01T10:00:00%2B00:00",
        "patient={patient_id}&procedure=botox&from=2026-03-10T10:00:00%2B00:00&to=2027-03-01T10:00:00%2B00:00",
        "procedure=botox",
        "patient={patient_id}",
        "",
    ]:
        response = no_5xx(api.get("/api/v1/availability/?" + query.format(**ids)), query)
        if response.status_code >= 400:
            problem_4xx(response, query)


ODD_IDS = [
    "not-a-uuid",
    "12345678-1234",
    "00000000-0000-0000-0000-000000000000",
    "%00",
    "a%00b",
    "%ED%A0%80",
    "%C0%AF",
    "%FF",
    "x" * 1000,
    "..",
    "%2F",
    "%20",
    "%E2%80%AE",
    "{00000000-0000-0000-0000-000000000000}",
    "urn:uuid:00000000-0000-0000-0000-000000000000",
    "-1",
    "1e9",
]
DETAIL_PATHS = [
    ("GET", "/api/v1/patients/{}/"),
    ("PATCH", "/api/v1/patients/{}/"),
    ("GET", "/api/v1/patients/{}/procedures/"),
    ("GET", "/api/v1/patients/{}/medications/"),
    ("PATCH", "/api/v1/patients/{patient_id}/medications/{}/"),
    ("GET", "/api/v1/patients/{}/conditions/"),
    ("PUT", "/api/v1/patients/{}/conditions/"),
    ("POST", "/api/v1/patients/{}/merge/"),
    ("POST", "/api/v1/patients/{}/plans/"),
    ("GET", "/api/v1/appointments/{}/"),
    ("POST", "/api/v1/appointments/{}/reschedule/"),
    ("POST", "/api/v1/appointments/{}/reschedule-check/"),
    ("POST", "/api/v1/appointments/{}/cancel/"),
    ("POST", "/api/v1/appointments/{}/complete/"),
    ("POST", "/api/v1/appointments/{}/clear/"),
    ("POST", "/api/v1/appointments/{}/no-show/"),
    ("GET", "/api/v1/plans/{}/"),
    ("POST", "/api/v1/plans/{}/replan/"),
    ("GET", "/api/v1/webhooks/{}/"),
    ("DELETE", "/api/v1/webhooks/{}/"),
    ("GET", "/api/v1/webhooks/{}/deliveries/"),
    ("POST", "/api/v1/webhooks/{webhook_id}/deliveries/{}/redeliver/"),
]


def test_odd_ids_in_api_paths_are_a_problem_not_a_500(clinic, ids):
    for odd in ODD_IDS:
        clinical_api = http(new_api_client(clinic, clinical=True)[1])  # a fresh one each round: no throttling
        for method, template in DETAIL_PATHS:
            path = template.replace("{}", "\x01").format(**ids).replace("\x01", odd)
            body = "[]" if method == "PUT" else "{}"
            response = raw(clinical_api, method, path, body, HTTP_IDEMPOTENCY_KEY=f"probe-{uuid.uuid4()}")
            problem_4xx(response, method, path, allowed=(400, 404, 405))


ALL_PATHS = [
    "/api/v1/organisations/",
    "/api/v1/clinics/",
    "/api/v1/procedures/",
    "/api/v1/practitioners/",
    "/api/v1/patients/",
    "/api/v1/patients/{patient_id}/",
    "/api/v1/patients/{patient_id}/merge/",
    "/api/v1/patients/{patient_id}/procedures/",
    "/api/v1/patients/{patient_id}/medications/",
    "/api/v1/patients/{patient_id}/medications/{course_id}/",
    "/api/v1/patients/{patient_id}/conditions/",
    "/api/v1/patients/{patient_id}/plans/",
    "/api/v1/eligibility/",
    "/api/v1/availability/",
    "/api/v1/appointments/",
    "/api/v1/appointments/{appointment_id}/",
    "/api/v1/appointments/{appointment_id}/reschedule/",
    "/api/v1/appointments/{appointment_id}/reschedule-check/",
    "/api/v1/appointments/{appointment_id}/cancel/",
    "/api/v1/appointments/{appointment_id}/complete/",
    "/api/v1/appointments/{appointment_id}/clear/",
    "/api/v1/appointments/{appointment_id}/no-show/",
    "/api/v1/plan-templates/",
    "/api/v1/plans/{plan_id}/",
    "/api/v1/plans/{plan_id}/replan/",
    "/api/v1/webhooks/",
    "/api/v1/webhooks/{webhook_id}/deliveries/",
    "/api/v1/webhooks/{webhook_id}/rotate-secret/",
    "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver/",
    "/api/v1/schema/",
    "/fhir/r4/metadata",
    "/fhir/r4/Schedule",
    "/fhir/r4/Slot",
    "/fhir/r4/Appointment",
    "/fhir/r4/Appointment/{appointment_id}",
]


def test_every_method_on_every_endpoint_is_handled(clinical_api, ids):
    status = Appointment.objects.get(pk=ids["appointment_id"]).status
    for method in ["HEAD", "OPTIONS", "PUT", "PATCH", "DELETE", "TRACE", "PROPFIND", "get"]:
        for template in ALL_PATHS:
            path = template.format(**ids)
            response = no_5xx(raw(clinical_api, method, path, "{}"), method, path)
            if response.status_code == 405:
                assert response.has_header("Allow"), (method, path)
    assert Appointment.objects.get(pk=ids["appointment_id"]).status == status


def _latin1(text: str) -> str:
    """A header value as a WSGI server hands it over: its UTF-8 bytes read as ISO-8859-1."""
    return text.encode().decode("latin-1")


def test_odd_idempotency_keys_are_4xx_and_create_nothing(api, patient):
    before = Patient.objects.count()
    body = {"first_name": "Idem", "last_name": "Potent", "confirm_new": True}
    for key in [_latin1("ключ"), "a\tb", "a\nb", " x", "k" * 256, "k" * 5000, "k" * 9000, "", "\x7f", "\u00a0key"]:
        response = api.post("/api/v1/patients/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)
        problem_4xx(response, key[:20], allowed=(400, 431))
    assert Patient.objects.count() == before


def test_odd_content_types_and_encodings_are_handled(api, patient):
    for content_type, body in [
        ("text/plain", b'{"first_name": "Ann"}'),
        ("application/xml", b"<first_name>Ann</first_name>"),
        ("multipart/form-data; boundary=xx", b'--xx\r\nContent-Disposition: form-data; name="first_name"\r\n\r\nAn'),
        ("multipart/form-data", b"garbage"),
        ("application/x-www-form-urlencoded", b"first_name=Ann"),
        ("application/json; charset=utf-16", '{"first_name": "Ann"}'.encode("utf-16")),
        ("application/json; charset=latin-1", '{"first_name": "Ané"}'.encode("latin-1")),
        ("application/json; charset=bogus", b'{"first_name": "Ann"}'),
        ("application/json;;;", b'{"first_name": "Ann"}'),
        ("", b'{"first_name": "Ann"}'),
        ("*/*", b'{"first_name": "Ann"}'),
        ("application/merge-patch+json", b'{"first_name": "Ann"}'),
        ("application/json", b'\xef\xbb\xbf{"first_name": "Ann"}'),
        ("application/json", '{"first_name": "Ann"}'.encode("utf-16")),
        ("application/json", b'{"first_name": "Ann", "first_name": "Bob"}'),
        ("application/json", b"{'first_name': 'Ann'}"),
        ("application/json", b'{"first_name": "\\ud800\\udc00"}'),
        ("application/json", b'{"first_name": "\\udc00\\ud800"}'),
        ("application/json", b'{"first_name": "A\\u0000"}'),
        ("application/json", b"\x00"),
        ("application/json", b'{"first_name": "Ann"} trailing'),
    ]:
        response = no_5xx(api.generic("PATCH", f"/api/v1/patients/{patient.pk}/", body, content_type=content_type))
        if response.status_code >= 400:
            problem_4xx(response, content_type, body, allowed=(400, 415))
    patient.refresh_from_db()
    assert patient.first_name in ("Pat", "Ann", "Ané", "Bob", "\U00010000")


def test_odd_authorization_headers_are_401(clinic):
    for header in [
        "Token ",
        "Token",
        "Bearer abc",
        "Token a b c",
        "Token " + _latin1("ключ"),
        "Token " + "k" * 7000,
        "token abc",
        "Basic Og==",
        "Token \x7f",
        "Token a.b.c.d",
    ]:
        client = http()
        client.credentials(HTTP_AUTHORIZATION=header)
        problem_4xx(client.get("/api/v1/clinics/"), header[:20], allowed=(401, 431))


# ============================================ FHIR ============================================================


def test_fhir_odd_searches_are_operation_outcomes(api, practitioner, booked):
    for query in [
        "/fhir/r4/Slot?start=ge0001-01-01",
        "/fhir/r4/Slot?start=0001-01-01",
        "/fhir/r4/Slot?start=ge2999-12-31T23:00:00%2B00:00",
        "/fhir/r4/Slot?start=ge10000-01-01",
        "/fhir/r4/Slot?start=2026-02-30",
        "/fhir/r4/Slot?start=gege2026-03-03",
        "/fhir/r4/Slot?start=ge",
        "/fhir/r4/Slot?schedule=Schedule/%ED%A0%80",
        "/fhir/r4/Slot?_count=%D9%A1",
        "/fhir/r4/Slot?page=99999999999999999999",
        "/fhir/r4/Appointment?date=0001-01-01",
        "/fhir/r4/Appointment?date=lt0001-01-01",
        "/fhir/r4/Appointment?date=eq2026-03-03T10:00:00",
        "/fhir/r4/Appointment?date=2026-03-03T10:00:00%2B25:00",
        "/fhir/r4/Appointment?patient=Patient/not-a-uuid",
        "/fhir/r4/Appointment?actor=Location/%ED%A0%80,Practitioner/x",
        "/fhir/r4/Appointment?_id=" + ",".join(["x"] * 200),
        "/fhir/r4/Appointment?status=booked,bogus",
        "/fhir/r4/Schedule?_id=Schedule/x&actor=Location/y",
        "/fhir/r4/Schedule?active=maybe",
        "/fhir/r4/Schedule/not-a-uuid",
        "/fhir/r4/Schedule/%00",
        "/fhir/r4/Appointment/%ED%A0%80",
        "/fhir/r4/Appointment/" + "x" * 1000,
        "/fhir/r4/Patient/1",
    ]:
        response = no_5xx(api.get(query), query)
        assert response.status_code in (200, 400, 404), (query, response.status_code)


@pytest.mark.parametrize(
    "query",
    ["/fhir/r4/Slot?start=ge9999-12-31", "/fhir/r4/Appointment?date=9999-12-31"],
)
def test_fhir_a_date_of_9999_12_31_is_a_400(api, practitioner, query):
    assert api.get(query).status_code == 400


# ============================================ Front desk =====================================================

FRONTDESK_INSTANTS = [
    "0001-01-01",
    "9999-12-31",
    "0001-01-02T00:00:00+00:00",
    "9999-12-31T23:00:00+00:00",
    "2026-03-03T10:00:00",
    "2026-03-03T10:00:00+25:00",
    "2026-02-30",
    "2026-03-03 10:00:00+00:00",
    "x" * 10_000,
    "\x00",
]


def test_calendar_feed_bounds_are_200_or_400(clinical, clinic, practitioner):
    path = url("calendar_events", clinic)
    for value in FRONTDESK_INSTANTS:
        for query in [
            {"start": value, "end": "2026-03-05"},
            {"start": "2026-03-02", "end": value},
            {"start": value, "end": value},
        ]:
            response = no_5xx(clinical.get(path, query), query)
            assert response.status_code in (200, 400), (query, response.status_code)


@pytest.mark.parametrize(
    "query",
    [
        {"start": "0001-01-01T00:00:00+14:00", "end": "0001-01-02T00:00:00+00:00"},
        {"start": "9999-12-30T00:00:00+00:00", "end": "9999-12-31T23:59:00-14:00"},
    ],
    ids=["before-year-1", "after-9999"],
)
def test_calendar_feed_a_range_past_the_ends_of_time_is_not_a_500(clinical, clinic, practitioner, query):
    assert clinical.get(url("calendar_events", clinic), query).status_code < 500


def test_booking_from_a_cell_with_an_odd_start(clinical, clinic, patient, practitioner):
    for value in FRONTDESK_INSTANTS:
        for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
            for name, args in [
                ("calendar_book", [clinic]),
                ("calendar_book_patient", [clinic, patient]),
                ("calendar_register", [clinic]),
            ]:
                for practitioner_id in [str(practitioner.pk), "\x00"]:
                    query = {"start_at": value, "practitioner": practitioner_id, "q": "Pat"}
                    no_5xx(clinical.get(url(name, *args), query, **headers), name, query)


@pytest.mark.parametrize(
    "name, start_at",
    [
        ("calendar_book", "0001-01-01T00:00:00+14:00"),
        ("calendar_book_patient", "0001-01-01T00:00:00+00:00"),
        ("calendar_register", "9999-12-31T23:59:00-14:00"),
    ],
)
def test_booking_from_a_cell_at_the_ends_of_time_is_not_a_500(clinical, clinic, patient, practitioner, start_at, name):
    args = [clinic, patient] if name == "calendar_book_patient" else [clinic]
    response = clinical.get(url(name, *args), {"start_at": start_at}, HTTP_HX_REQUEST="true")
    assert response.status_code < 500


def test_calendar_day_and_week_views_at_odd_dates(clinical, clinic, practitioner):
    for query in [
        {"date": "0001-01-01"},
        {"date": "9999-12-31"},
        {"date": "1900-01-01", "view": "week"},
        {"date": "2999-12-31", "view": "week"},
        {"date": "2999-12-31"},
        {"date": "1900-01-01"},
        {"view": "month"},
        {"view": ["day", "week"]},
        {"practitioner": "\x00"},
        {"practitioner": "not-a-uuid", "view": "week"},
        {"cancelled": "\x00"},
        {"date": "x" * 100_000},
    ]:
        for name in ["calendar", "day_sheet", "schedule", "today"]:
            response = no_5xx(clinical.get(url(name, clinic), query), name, query)
            assert response.status_code in (200, 400), (name, query, response.status_code)


def test_search_boxes_with_odd_text(clinical, clinic, patient):
    for q in ["x" * 5000, "31/02/2026", "00/00/0000", "29/02/0000", "+", "%_", "\ufffd", "\u202e"]:
        for path in [url("patients", clinic), url("calendar_book", clinic), url("patient_merge", clinic, patient)]:
            response = no_5xx(clinical.get(path, {"q": q}), path, repr(q)[:30])
            assert response.status_code in (200, 400), (path, response.status_code)


def test_merge_page_search_with_a_nul_is_not_a_500(clinical, clinic, patient):
    assert clinical.get(url("patient_merge", clinic, patient), {"q": "a\x00b"}).status_code in (200, 400)


def test_patient_and_cell_search_with_a_nul_is_handled(clinical, clinic, patient):
    for path in [url("patients", clinic), url("calendar_book", clinic)]:
        assert clinical.get(path, {"q": "a\x00b"}).status_code in (200, 400), path


def test_merge_form_with_an_odd_record_to_keep(clinical, clinic, patient):
    for into in ["\x00", "not-a-uuid", "x" * 100_000, str(uuid.uuid4()), "", str(patient.pk)]:
        response = no_5xx(clinical.post(url("patient_merge", clinic, patient), {"into": into}), into[:20])
        assert response.status_code == 400
    assert Patient.objects.filter(pk=patient.pk, merged_into__isnull=True).exists()


def test_plan_booking_with_a_damaged_proposal_books_nothing(clinical, clinic, patient, practitioner):
    plan_templates_load()
    before = Appointment.objects.count()
    for session in [
        "0001-01-01T00:00:00+14:00|",
        "9999-12-31T23:59:00-14:00|",
        "2026-04-06T10:00:00|",
        "2026-04-06T10:00:00+00:00|not-a-uuid",
        "2026-04-06T10:00:00+00:00|\x00",
        "|",
        "x" * 10_000,
    ]:
        response = clinical.post(
            url("plan_book", clinic, patient),
            {"template": "plasma-pen-course", "start_from": "2026-04-06", "session": [session] * 3},
        )
        no_5xx(response, session[:30])
    assert Appointment.objects.count() == before


def test_plan_page_and_replan_with_odd_values(clinical, clinic, ids):
    for query in [
        {"from_session": "99999999999999999999", "start_from": "2026-05-05"},
        {"from_session": "-1", "start_from": "2026-05-05"},
        {"from_session": "0", "start_from": "2026-05-05"},
        {"from_session": "2", "start_from": "0001-01-01"},
        {"from_session": "2", "start_from": "2999-12-31"},
        {"from_session": "\x00", "start_from": "\x00"},
    ]:
        response = no_5xx(clinical.get(url("plan", clinic, ids["plan_id"]), query), query)
        assert response.status_code in (200, 400)
        response = no_5xx(clinical.post(url("plan_replan", clinic, ids["plan_id"]), query), query)
        assert response.status_code in (200, 302, 303, 400, 409)


def test_plan_page_replan_from_9999_12_31_is_a_form_error(clinical, clinic, ids):
    response = clinical.get(url("plan", clinic, ids["plan_id"]), {"from_session": "2", "start_from": "9999-12-31"})
    assert response.status_code in (200, 400)


def test_plan_new_with_odd_values(clinical, clinic, patient, practitioner):
    plan_templates_load()
    for query in [
        {"template": "nope", "start_from": "2026-04-06"},
        {"template": "plasma-pen-course", "start_from": "2999-12-31"},
        {"template": "plasma-pen-course", "start_from": "2026-04-06", "sessions": "99999999999"},
        {"template": "plasma-pen-course", "start_from": "2026-04-06", "sessions": "-3"},
        {"template": "\x00", "start_from": "\x00"},
    ]:
        response = no_5xx(clinical.get(url("plan_new", clinic, patient), query), query)
        assert response.status_code in (200, 400)


def test_plan_new_from_9999_12_31_is_a_form_error(clinical, clinic, patient, practitioner):
    plan_templates_load()
    query = {"template": "plasma-pen-course", "start_from": "9999-12-31"}
    assert clinical.get(url("plan_new", clinic, patient), query).status_code in (200, 400)


def test_login_and_code_forms_with_odd_values(clinic):
    client = Client()
    for value in ["\x00", "x" * 100_000, "", "\ufffd"]:
        no_5xx(client.post("/login/", {"username": value, "password": value}))
        no_5xx(client.post("/login/code/", {"code": value}))
        no_5xx(client.get("/login/", {"next": value}))


def test_appointment_forms_with_odd_text(clinical, clinic, patient, practitioner):
    from tests.frontdesk.conftest import book

    for value in ["\x00", "x" * 100_000]:
        appointment = book(patient, practitioner, "botox", at_london(2026, 3, 5, 10))
        for name in ["notes", "cancel", "clear", "check_in", "no_show", "complete"]:
            no_5xx(clinical.post(url(name, clinic, appointment), {"notes": value, "reason": value}), name)
        appointment.delete()


def test_frontdesk_odd_ids_are_404(clinical, clinic):
    for path_id in ["not-a-uuid", "00000000-0000-0000-0000-00000000000", "%00", "%ED%A0%80"]:
        for path in [
            f"/clinic/london/patients/{path_id}/",
            f"/clinic/london/appointments/{path_id}/",
            f"/clinic/london/plans/{path_id}/",
            f"/clinic/{path_id}/",
            f"/clinic/london/calendar/book/{path_id}/",
        ]:
            response = no_5xx(clinical.get(path), path)
            assert response.status_code == 404, (path, response.status_code)


# ============================ Portal, unsubscribe links, calendar feeds, inbound SMS ========================


def test_portal_unsubscribe_and_feed_with_odd_tokens(client, db):
    for token in [
        "a.b.c",
        "a.b.c.d",
        "%00",
        "%00.%00.%00",
        "x" * 5000,
        "%ED%A0%80",
        "..",
        "...",
        "%E2%80%AE",
        "a%2Fb",
        "a%00.b.c",
    ]:
        for path in [
            f"/my/{token}/",
            f"/my/{token}/cancel/",
            f"/my/{token}/move/confirm/?slot=x",
            f"/reminders/unsubscribe/{token}/",
            f"/reminders/calendar/{token}.ics",
        ]:
            for method in ("get", "post", "head"):
                response = no_5xx(getattr(client, method)(path), method, path)
                assert response.status_code in (400, 404, 405, 410), (method, path, response.status_code)


def _signed(payload: str) -> str:
    from reminders.links import _mac

    return f"{payload}.{_mac(payload)}"


def test_a_correctly_signed_portal_link_with_a_small_or_negative_expiry_follows_the_appointment(client, booked):
    """The expiry a link was made with no longer decides (reminders/links.py): the appointment's end as it stands
    does, so an odd one in a signed token is no error, and the page is the appointment's (it is to come)."""
    appointment = Appointment.objects.get(pk=booked)
    for expiry in ["-1", "0", "-zzzzzz"]:
        response = no_5xx(client.get(f"/my/{_signed(f'{appointment.pk.hex}.{expiry}')}/"), expiry)
        assert response.status_code == 200, (expiry, response.status_code)


def test_a_correctly_signed_portal_link_with_an_out_of_range_expiry_is_a_400(client, booked, expiry="zzzzzzzzzzzzz"):
    appointment = Appointment.objects.get(pk=booked)
    assert client.get(f"/my/{_signed(f'{appointment.pk.hex}.{expiry}')}/").status_code in (400, 410)


def test_portal_move_with_an_odd_slot_moves_nothing(client, booked, practitioner):
    from reminders.links import manage_token

    appointment = Appointment.objects.get(pk=booked)
    start, token = appointment.start_at, manage_token(appointment)
    for slot in [
        "00010101T0000Z_{practitioner}",
        "20260310T1000Z_\x00",
        "20260310T1000Z_not-a-uuid",
        "20260310T1000Z_" + "x" * 90,
        "20260230T1000Z_{practitioner}",
        "20260310T1000Z_{practitioner}_extra",
        "x" * 1000,
    ]:
        value = slot.format(practitioner=practitioner.pk)
        for method in ("get", "post"):
            response = no_5xx(getattr(client, method)(f"/my/{token}/move/confirm/", {"slot": value}), method, value)
            assert response.status_code in (200, 400, 409), (method, value, response.status_code)
    appointment.refresh_from_db()
    assert appointment.start_at == start


def test_portal_move_to_the_last_minute_of_9999_is_a_400(client, booked, practitioner):
    from reminders.links import manage_token

    token = manage_token(Appointment.objects.get(pk=booked))
    response = client.get(f"/my/{token}/move/confirm/", {"slot": f"99991231T2359Z_{practitioner.pk}"})
    assert response.status_code == 400


def test_portal_preferences_and_cancel_with_odd_values(client, booked):
    from reminders.links import manage_token

    token = manage_token(Appointment.objects.get(pk=booked))
    for data in [{"reason": "\x00"}, {"reason": "x" * 100_000}, {"email": "\x00", "sms": ["on", "off"]}]:
        no_5xx(client.post(f"/my/{token}/preferences/", data), data)
        no_5xx(client.post(f"/my/{token}/cancel/", data), data)


def test_inbound_sms_with_odd_bodies(client, settings, patient):
    settings.SMS_INBOUND_TOKEN = "t"
    Patient.objects.filter(pk=patient.pk).update(sms_consent=True)
    form = "application/x-www-form-urlencoded"
    for query, body, content_type in [
        ("?token=t", '{"From": "+447911123101", "Body": "STOP"}', "application/json"),
        ("?token=t", "From=%2B447911123101&From=%2B1&Body=HELLO", form),
        ("?token=t", "From=" + "9" * 100_000 + "&Body=STOP", form),
        ("?token=t", "From=%2B447911123101&Body=" + "STOP" * 30_000, form),
        ("?token=t", "From=%EF%BC%8B%EF%BC%94%EF%BC%94&Body=STOP", form),
        ("?token=t", "From=%ED%A0%80&Body=STOP", form),
        ("?token=t", "From=%2B447911123101&Body=%ED%A0%80", form),
        ("?token=t", "\x00\x01\x02", form),
        ("?token=t", "garbage", "multipart/form-data; boundary=zz"),
        ("?token=t", "From=%2B447911123101&Body=STOP", "text/plain"),
        ("?token=t&token=u", "From=%2B447911123101&Body=HELLO", form),
        ("?token=%00", "From=%2B447911123101&Body=STOP", form),
        ("?token=" + "t" * 5000, "From=%2B447911123101&Body=STOP", form),
    ]:
        response = client.post("/reminders/sms/inbound/" + query, body, content_type=content_type)
        no_5xx(response, query[:30], body[:40])
        assert response.status_code in (200, 400, 403)
    patient.refresh_from_db()
    assert patient.sms_consent is True


def test_inbound_sms_with_a_non_ascii_token_is_403(client, settings, patient):
    settings.SMS_INBOUND_TOKEN = "t"
    response = client.post(
        "/reminders/sms/inbound/?token=%C3%A9",
        "From=%2B447911123101&Body=STOP",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 403


def test_inbound_sms_twilio_with_a_non_ascii_signature_is_403(client, settings, patient):
    settings.SMS_BACKEND = "reminders.channels.TwilioSmsBackend"
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.SMS_FROM = "AC1", "auth-token", "+447700900999"
    response = client.post(
        "/reminders/sms/inbound/", {"From": patient.phone, "Body": "STOP"}, HTTP_X_TWILIO_SIGNATURE=_latin1("é")
    )
    assert response.status_code == 403
