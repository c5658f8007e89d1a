"""OpenAPI documentation helpers: error bodies per status, examples, the token scheme, strict requests.

Every operation documents its problem documents (as application/problem+json)
next to its success body, so generated clients and Schemathesis know every
answer the API may give.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from api.idempotency import KEY_PATTERN, MAX_KEY_LENGTH
from api.merged import REPLACING_METHODS
from api.problems import PROBLEM_CONTENT_TYPE
from api.serializers import DuplicateProblemOut, MergeProblemOut, ProblemOut, RefusalProblemOut, ValidationProblemOut

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": KEY_PATTERN},
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "1 to 255 printable ASCII characters, not starting or ending with a space; unique per request "
        "you mean (a UUID is ideal). The same key with the same body within 24 h returns the first "
        "response again and creates nothing; the same key with a different body is a 422. "
        "Any other key is a 400."
    ),
)

_EXAMPLE_PATIENT = "5f0c7a4e-2f6b-4a53-9d7e-1c8f2b6a9e10"
_EXAMPLE_CLINIC = "0b9d2f3c-6a1e-4f8e-8c47-3e2d1a0f9b7c"
_EXAMPLE_PRACTITIONER = "9a7e3d21-4c5b-4f60-8a19-2b3c4d5e6f70"
_EXAMPLE_EVENT = "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"


def _problem_example(status: int, code: str, title: str, detail: str, **extra) -> dict:
    return {
        "type": "urn:clinic-api:problem:" + code.replace("_", "-"),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": "/api/v1/appointments/",
        **extra,
    }


REFUSAL_EXAMPLE = _problem_example(
    409,
    "booking_refused",
    "Booking refused",
    "Microneedling must be at least 2 weeks after Botulinum toxin injection (Botox) (done 1 March 2026 10:00); "
    "earliest allowed 15 March 2026.",
    kind="booking_refused",
    violations=[
        {
            "code": "interval_too_soon_after",
            "kind": "interval",
            "severity": "block",
            "message": "Microneedling must be at least 2 weeks after Botulinum toxin injection (Botox) "
            "(done 1 March 2026 10:00); earliest allowed 15 March 2026.",
            "rule": "1",
            "source": "[001] Yazbek Artistry, microneedling care (docs/sources.md)",
            "conflicts_with": {
                "id": _EXAMPLE_EVENT,
                "kind": "procedure",
                "code": "botox",
                "at": "2026-03-01T10:00:00+00:00",
                "clinic": None,
            },
            "earliest_allowed": "2026-03-15T00:00:00+00:00",
        }
    ],
    warnings=[],
    earliest_eligible_start="2026-03-15T00:00:00+00:00",
    next_available_slot={
        "start": "2026-03-16T09:00:00+00:00",
        "end": "2026-03-16T10:00:00+00:00",
        "practitioner": _EXAMPLE_PRACTITIONER,
        "practitioner_name": "Dr Ada Lovelace",
    },
)
REFUSAL_EXAMPLE["type"] = "urn:clinic-api:problem:booking-refused"

VALIDATION_EXAMPLE = _problem_example(
    400,
    "invalid_input",
    "Invalid input",
    "Give the time with a UTC offset, e.g. 2026-03-15T10:30:00+00:00.",
    errors={"start": ["Give the time with a UTC offset, e.g. 2026-03-15T10:30:00+00:00."]},
)
VALIDATION_EXAMPLE["type"] = "urn:clinic-api:problem:validation-error"


DUPLICATE_EXAMPLE = _problem_example(
    409,
    "possible_duplicate",
    "Possible duplicate",
    "1 existing record may be this patient: open one, or confirm that this is a new patient.",
    candidates=[
        {
            "id": _EXAMPLE_PATIENT,
            "first_name": "Ada",
            "last_name": "Byron",
            "date_of_birth": "1990-12-10",
            "reasons": ["date_of_birth_and_name", "phone"],
        }
    ],
)
DUPLICATE_EXAMPLE["instance"] = "/api/v1/patients/"


def _problem(description: str, examples: list[OpenApiExample] | None = None, serializer=ProblemOut):
    return OpenApiResponse(serializer, description=description, examples=examples)


def responses(
    status: int,
    serializer,
    *,
    many: bool = False,
    bad_request: bool = False,
    refusal: bool = False,
    conflict: bool = False,
    idempotent: bool = False,
    forbidden: bool = False,
    body: bool = False,
    duplicate: bool = False,
    merge: bool = False,
    precondition: bool = False,
) -> dict:
    """The success body and every problem document an operation may answer with."""
    out = {status: serializer(many=True) if many else serializer}
    if bad_request:
        out[(400, PROBLEM_CONTENT_TYPE)] = _problem(
            "Malformed input: invalid JSON, wrong types, unknown codes or ids, a time with no offset.",
            [OpenApiExample("A time without an offset", value=VALIDATION_EXAMPLE, status_codes=["400"])],
            ValidationProblemOut,
        )
    out[(401, PROBLEM_CONTENT_TYPE)] = _problem("No key, or an unknown or revoked key.")
    out[(403, PROBLEM_CONTENT_TYPE)] = _problem(
        "A known caller without the right (e.g. completing without the clinician's right)."
        if forbidden
        else "A known caller without the right to use the API."
    )
    out[(404, PROBLEM_CONTENT_TYPE)] = _problem("Not found, or outside your clinics (the same thing to you).")
    out[(406, PROBLEM_CONTENT_TYPE)] = _problem(
        "not_acceptable: the Accept header names no type this operation answers in (application/json, or */*)."
    )
    if duplicate:
        out[(409, PROBLEM_CONTENT_TYPE)] = _problem(
            "possible-duplicate: the organisation has likely matches (`candidates`, with why); send "
            '`"confirm_new": true` to register anyway. Or a request with this Idempotency-Key is still being '
            "processed.",
            [OpenApiExample("A likely duplicate", value=DUPLICATE_EXAMPLE, status_codes=["409"])],
            DuplicateProblemOut,
        )
    elif merge:
        out[(409, PROBLEM_CONTENT_TYPE)] = _problem(
            "merge-conflict: the two intakes disagree on the lines in `conflicts`; send `intake` with the status "
            "to keep for each. Or a request with this Idempotency-Key is still being processed.",
            None,
            MergeProblemOut,
        )
    elif refusal:
        out[(409, PROBLEM_CONTENT_TYPE)] = _problem(
            "Refused: a blocking interval rule, an absolute contraindication or a taken slot"
            + (", or the appointment's status does not allow it." if conflict else "."),
            [OpenApiExample("Too soon after Botox", value=REFUSAL_EXAMPLE, status_codes=["409"])],
            RefusalProblemOut,
        )
    elif conflict or idempotent:
        out[(409, PROBLEM_CONTENT_TYPE)] = _problem(
            "The appointment's status does not allow this, or a request with this Idempotency-Key is still "
            "being processed."
        )
    if precondition:
        out[(412, PROBLEM_CONTENT_TYPE)] = _problem(
            "record_changed: If-Match names a version (the ETag of a GET) this no longer has: someone changed it "
            "since; nothing was changed. GET it again and make the change on what it is now."
        )
    if body:
        out[(411, PROBLEM_CONTENT_TYPE)] = _problem(
            "length_required: the body was sent chunked (Transfer-Encoding) without a Content-Length; send its length."
        )
        out[(413, PROBLEM_CONTENT_TYPE)] = _problem("The body is larger than the limit.")
        out[(415, PROBLEM_CONTENT_TYPE)] = _problem("The body is not JSON.")
    if idempotent:
        out[(422, PROBLEM_CONTENT_TYPE)] = _problem("The Idempotency-Key was used with a different request.")
    out[(414, PROBLEM_CONTENT_TYPE)] = _problem(
        "The path and query are longer than 4000 characters (a longer request line is refused by the server "
        "itself, see docs/api.md)."
    )
    out[(429, PROBLEM_CONTENT_TYPE)] = _problem("Too many requests: wait the seconds in Retry-After.")
    out[(431, PROBLEM_CONTENT_TYPE)] = _problem("A request header is longer than 8000 characters.")
    return out


PATIENT_EXAMPLES = [
    OpenApiExample(
        "New patient",
        request_only=True,
        value={
            "clinic": _EXAMPLE_CLINIC,
            "first_name": "Ada",
            "last_name": "Byron",
            "date_of_birth": "1990-12-10",
            "email": "ada@example.com",
            "phone": "+447911123456",
            "reminder_channels": ["email", "sms"],
            "sms_consent": True,
        },
    ),
]
PROCEDURE_RECORD_EXAMPLES = [
    OpenApiExample(
        "Botox reported by the patient",
        request_only=True,
        value={"procedure": "botox", "performed_at": "2026-03-01T10:00:00+00:00", "area": "face", "source": "reported"},
    ),
]
MEDICATION_EXAMPLES = [
    OpenApiExample(
        "An ongoing isotretinoin course",
        request_only=True,
        value={"drug": "isotretinoin", "started_on": "2025-09-01", "ended_on": None},
    ),
]
# drf-spectacular wraps an example of a list body in a list itself: this is one line of the intake.
CONDITION_EXAMPLES = [
    OpenApiExample("Intake", request_only=True, value={"condition": "eczema", "status": "history"}),
]
BOOKING_EXAMPLES = [
    OpenApiExample(
        "Microneedling",
        request_only=True,
        value={
            "patient": _EXAMPLE_PATIENT,
            "procedure": "microneedling",
            "start": "2026-03-10T10:30:00+00:00",
            "area": "face",
        },
    ),
]


class AutoSchema(SpectacularAutoSchema):
    """Judges "is this a list?" by the success body, not by whichever problem document sorts first.

    Our responses are keyed (status, media type); drf-spectacular would pick the
    smallest key as the main body and so miss that a list is paginated and filtered.
    """

    def _is_list_view(self, serializer=None) -> bool:
        if serializer is None:
            serializer = self.get_response_serializers()
        if isinstance(serializer, dict) and serializer:
            success = [s for code, s in serializer.items() if str(code[0] if isinstance(code, tuple) else code) < "300"]
            serializer = success[0] if success else None
        return super()._is_list_view(serializer)

    def _get_request_for_media_type(self, serializer, direction="request"):
        # drf-spectacular documents every PATCH body as partial (nothing required); a serializer that the
        # view reads whole (MedicationCourseEndIn: `ended_on` is the point) says so with `whole_on_patch`.
        if self.method == "PATCH" and getattr(serializer, "whole_on_patch", False):
            self.method = "POST"
            try:
                return super()._get_request_for_media_type(serializer, direction)
            finally:
                self.method = "PATCH"
        return super()._get_request_for_media_type(serializer, direction)


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>`; create a key with `manage.py create_api_client`.",
        }


_INTEGER_SECONDS = {"type": "integer", "minimum": 1}
# Headers the API sets, by status: `(name, schema, required, description)`.
RESPONSE_HEADERS = {
    "201": [("Location", {"type": "string"}, True, "Where the new record (or the list it joined) is.")],
    "401": [("WWW-Authenticate", {"type": "string", "enum": ["Token"]}, True, "Give `Authorization: Token <key>`.")],
    "409": [
        (
            "Retry-After",
            _INTEGER_SECONDS,
            False,
            "Seconds to wait, when a request with the same Idempotency-Key is still being processed.",
        )
    ],
    "429": [("Retry-After", _INTEGER_SECONDS, True, "Seconds to wait before the next request.")],
}
REPLAYED = (
    "Idempotent-Replayed",
    {"type": "string", "enum": ["true"]},
    False,
    "Present when this is the stored answer to an earlier request with the same Idempotency-Key.",
)


# The versions of what a write may be made from (clinic.services.intake_version, record_version), for If-Match
# (docs/api.md): each operation's 200 carries one.
_INTAKE = "The version of the whole intake (the same on every page): send it in If-Match with a PUT."
_PATIENT = "The version of this patient's record: send it in If-Match with a PATCH."
_COURSE = "The version of this course: send it in If-Match with a PATCH."
_APPOINTMENT = (
    "The version of this appointment: send it in If-Match with a reschedule, a cancel or another status change."
)
ETAGS = {
    "patients_conditions_list": _INTAKE,
    "patients_conditions_replace": _INTAKE,
    "patients_retrieve": _PATIENT,
    "patients_update": _PATIENT,
    "patients_medications_retrieve": _COURSE,
    "patients_medications_end": _COURSE,
    "appointments_retrieve": _APPOINTMENT,
}
# What the server reads as an If-Match (core.etags.entity_tags, RFC 9110 13.1.1): "*", or entity tags, `"…"` or
# `W/"…"`, comma-separated, empty elements and spaces around them allowed. Anything else is a 400 naming the header.
IF_MATCH_PATTERN = r'^[ \t]*(?:\*[ \t]*|(?:,[ \t]*)*(?:W/)?"[^"]*"[ \t]*(?:,[ \t]*(?:(?:W/)?"[^"]*"[ \t]*)?)*)$'
IF_MATCH = OpenApiParameter(
    "If-Match",
    {"type": "string", "pattern": IF_MATCH_PATTERN},
    OpenApiParameter.HEADER,
    required=False,
    description="The ETag of what this change was made from (the answer to a GET): if someone changed it since, "
    "the change is refused (412 record_changed) and nothing is changed. `*` or none: no condition.",
)


def postprocess_response_headers(result, generator, request, public):
    """Documents the headers each answer carries (Location, WWW-Authenticate, Retry-After, Idempotent-Replayed,
    the ETags of what If-Match may name)."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            idempotent = any(p.get("name") == "Idempotency-Key" for p in operation.get("parameters", []))
            for status, response in operation.get("responses", {}).items():
                headers = list(RESPONSE_HEADERS.get(status, []))
                if status == "200" and operation.get("operationId") in ETAGS:
                    headers.append(("ETag", {"type": "string"}, True, ETAGS[operation["operationId"]]))
                if idempotent and status not in ("401", "414", "429", "431"):
                    headers.append(REPLAYED)
                for name, schema, required, description in headers:
                    response.setdefault("headers", {})[name] = {
                        "schema": schema,
                        "required": required,
                        "description": description,
                    }
    return result


# OpenAPI links: which answers give the id that other operations take (for clients, and for the stateful
# Schemathesis run). Each entry: (operation, status), where the id is in the answer, the parameter it fills,
# and the operations that take it.
_PATIENT_OPERATIONS = (
    "patients_retrieve",
    "patients_update",
    "patients_procedures_list",
    "patients_procedures_create",
    "patients_medications_list",
    "patients_medications_create",
    "patients_conditions_list",
    "patients_conditions_replace",
)
_APPOINTMENT_OPERATIONS = (
    "appointments_retrieve",
    "appointments_reschedule",
    "appointments_cancel_create",
    "appointments_complete_create",
    "appointments_clear_create",
    "appointments_no_show_create",
)
_COURSE_OPERATIONS = ("patients_medications_retrieve", "patients_medications_end")
_ID, _FIRST_ID = "$response.body#/id", "$response.body#/results/0/id"
LINKS = [
    (("patients_create", "201"), _ID, "patient_id", _PATIENT_OPERATIONS),
    (("patients_retrieve", "200"), _ID, "patient_id", _PATIENT_OPERATIONS),
    (("patients_update", "200"), _ID, "patient_id", _PATIENT_OPERATIONS),
    (("patients_list", "200"), _FIRST_ID, "patient_id", _PATIENT_OPERATIONS),
    (("appointments_create", "201"), _ID, "appointment_id", _APPOINTMENT_OPERATIONS),
    (("appointments_list", "200"), _FIRST_ID, "appointment_id", _APPOINTMENT_OPERATIONS),
    *[((name, "200"), _ID, "appointment_id", _APPOINTMENT_OPERATIONS) for name in _APPOINTMENT_OPERATIONS],
    (("patients_medications_create", "201"), _ID, "course_id", _COURSE_OPERATIONS),
    (("patients_medications_list", "200"), _FIRST_ID, "course_id", _COURSE_OPERATIONS),
]


def postprocess_links(result, generator, request, public):
    """Adds the OpenAPI links above; a course's links carry the patient id of the request they answer."""
    operations = {
        operation["operationId"]: operation
        for path_item in result.get("paths", {}).values()
        for operation in path_item.values()
    }
    for (source, status), expression, parameter, targets in LINKS:
        response = operations.get(source, {}).get("responses", {}).get(status)
        if response is None:
            continue
        for target in targets:
            if target not in operations:
                continue
            parameters = {parameter: expression}
            if parameter == "course_id":
                parameters["patient_id"] = "$request.path.patient_id"
            response.setdefault("links", {})[target] = {"operationId": target, "parameters": parameters}
    return result


def postprocess_strict_requests(result, generator, request, public):
    """Request bodies accept only the fields they document (the API refuses unknown fields)."""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    return result


def postprocess_merged_redirects(result, generator, request, public):
    """Every operation on one patient answers 308 (same method and body) to the survivor when the patient's
    record was merged into another (api/merged.py), except a replacing change (PUT, PATCH, DELETE), refused with
    a 409; either body is a problem document with `merged_into`."""
    merged_body = {
        PROBLEM_CONTENT_TYPE: {
            "schema": {
                "allOf": [
                    {"$ref": "#/components/schemas/ProblemOut"},
                    {"type": "object", "properties": {"merged_into": {"type": "string"}}},
                ]
            }
        }
    }
    for path, operations in result.get("paths", {}).items():
        if "{patient_id}" not in path:
            continue
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if method.upper() in REPLACING_METHODS:
                operation["responses"].setdefault(
                    "409",
                    {
                        "description": "This record was merged into another (`patient_merged`, with `merged_into`): "
                        "the change was not made; read the survivor and send it there.",
                        "content": merged_body,
                    },
                )
                continue
            operation["responses"]["308"] = {
                "description": "This record was merged into another: the same operation on the survivor is at "
                "Location (the body names it in `merged_into`).",
                "headers": {
                    "Location": {"schema": {"type": "string"}, "required": True, "description": "The survivor's."}
                },
                "content": merged_body,
            }
    return result
