"""RFC 9457 problem details: the one place where errors become HTTP responses.

Domain errors (core.errors), DRF's own exceptions and anything
unexpected all leave the API as `application/problem+json` with a stable
machine-readable `code`; validation problems add `errors`, booking refusals
add `violations`, `earliest_eligible_start`, `next_available_slot` and `rulebook_version`.
The Django-level handlers at the bottom cover what never reaches a DRF view
(unknown URLs, errors raised in middleware) for paths under /api/.
"""

from __future__ import annotations

import math
from datetime import date, datetime, tzinfo
from http import HTTPStatus

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, JsonResponse
from django.utils.encoding import escape_uri_path
from django.views import defaults as django_defaults
from rest_framework import exceptions, status
from rest_framework.response import Response

from core.errors import DomainError, ErrorCode, InvalidInput, Refused
from core.redact import masked_logger
from scheduler.booking import UnableToBook

logger = masked_logger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:clinic-api:problem:"  # a URN: stable identifiers, not pages to fetch


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class UriTooLong(exceptions.APIException):
    status_code = status.HTTP_414_REQUEST_URI_TOO_LONG
    default_detail = "The address (path and query) is too long."
    default_code = "uri_too_long"


class HeaderTooLarge(exceptions.APIException):
    status_code = status.HTTP_431_REQUEST_HEADER_FIELDS_TOO_LARGE
    default_detail = "A request header is too large."
    default_code = "request_header_fields_too_large"


class MergedRecord(exceptions.APIException):
    """A patient's address names a record merged into another: 308 to the same place on the survivor
    (method and body kept, so a client that follows redirects carries on)."""

    status_code = status.HTTP_308_PERMANENT_REDIRECT
    default_code = "patient_merged"

    def __init__(self, location: str, survivor_id) -> None:
        super().__init__(f"This record was merged into {survivor_id}; it lives at {location}.")
        self.location = location
        self.survivor_id = str(survivor_id)


class MergedRecordChange(MergedRecord):
    """A replacing change (PUT, PATCH, DELETE) sent to a merged record's address: 409, not carried over (it was made
    on a view of the old record and could overwrite what the merge brought together); the survivor is named."""

    status_code = status.HTTP_409_CONFLICT

    def __init__(self, location: str, survivor_id) -> None:
        super().__init__(location, survivor_id)
        self.detail = exceptions.ErrorDetail(
            f"This record was merged into {survivor_id}: the change was not made. Read the record at {location} "
            "(it holds both records' history and intake) and send the change there.",
            code=self.default_code,
        )


class FieldProblem(exceptions.ValidationError):
    """A 400 about one request field with a code of the API's own, not the domain catalogue's (core.errors):
    e.g. `page_out_of_range`, a well-formed page number past the last page."""

    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__({field: [message]})
        self.problem_code = code


# --- Building documents -----------------------------------------------------------------------


def problem(
    status_code: int,
    *,
    code: str,
    detail: str,
    title: str | None = None,
    instance: str | None = None,
    kind: str | None = None,
    **extra,
) -> dict:
    """A problem document; `kind` names the problem type (defaults to the code)."""
    body = {
        "type": TYPE_PREFIX + (kind or code).replace("_", "-"),
        "title": title or HTTPStatus(status_code).phrase,
        "status": status_code,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    # Extension members add to the problem; none replaces one of its own (a `status` in a refusal's data would say
    # another status than the answer's).
    body.update({name: value for name, value in extra.items() if name not in body})
    return body


# The members a problem document has of its own, or that `problem` takes by name: a domain error's `data` never
# supplies them (a key named so would be taken for an argument twice, a 500).
_OWN_MEMBERS = frozenset({"type", "title", "status", "detail", "code", "instance", "kind", "errors", "status_code"})


def _extensions(data: dict | None, *, but: frozenset[str] = frozenset()) -> dict:
    """A domain error's structured detail as a problem's extension members."""
    return {name: value for name, value in (data or {}).items() if name not in _OWN_MEMBERS | but}


def instance_of(request) -> str:
    """The request's path as a URI reference (RFC 9457 `instance`): percent-encoded, so it holds no raw
    control characters (a NUL would not survive being stored in PostgreSQL)."""
    return escape_uri_path(request.path)


def problem_response(body: dict, *, headers: dict | None = None) -> Response:
    return Response(body, status=body["status"], headers=headers, content_type=PROBLEM_CONTENT_TYPE)


def flatten_errors(detail, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error structure as `{"field.sub.0": [messages]}`."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = "non_field_errors" if key in ("non_field_errors", "__all__") and not prefix else str(key)
            out.update(flatten_errors(value, f"{prefix}.{name}" if prefix else name))
    elif isinstance(detail, list):
        if not detail:
            return out
        if all(not isinstance(item, (dict, list)) for item in detail):
            out.setdefault(prefix or "non_field_errors", []).extend(str(item) for item in detail)
        else:
            for index, item in enumerate(detail):
                if item:  # a list serializer gives {} for the lines that were fine
                    out.update(flatten_errors(item, f"{prefix}.{index}" if prefix else str(index)))
    else:
        out.setdefault(prefix or "non_field_errors", []).append(str(detail))
    return out


def local_iso(value: datetime | date | None, tz: tzinfo) -> str | None:
    """A time in the clinic's offset (dates stay dates)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(tz).isoformat()
    return value.isoformat()


def violation_data(violation, tz: tzinfo) -> dict:
    ref = violation.conflicts_with
    return {
        "code": str(violation.code),
        "kind": violation.kind,
        "severity": str(violation.severity),
        "message": violation.message,
        "rule": violation.rule_id or None,
        "source": violation.source or None,
        "conflicts_with": None
        if ref is None
        else {
            "id": ref.id,
            "kind": ref.kind,
            "code": ref.code,
            "at": local_iso(ref.at if ref.at is not None else ref.on, tz),
            "clinic": ref.clinic,
        },
        "earliest_allowed": local_iso(violation.earliest_allowed, tz),
    }


def slot_data(slot, tz: tzinfo) -> dict | None:
    if slot is None:
        return None
    return {
        "start": local_iso(slot.start_at, tz),
        "end": local_iso(slot.end_at, tz),
        "practitioner": str(slot.practitioner_id),
        "practitioner_name": slot.practitioner_name,
    }


def check_data(check, tz: tzinfo) -> dict:
    """What a booking check says, in the shape eligibility and refusals share."""
    return {
        "violations": [violation_data(v, tz) for v in check.violations],
        "warnings": [violation_data(v, tz) for v in check.warnings],
        "earliest_eligible_start": local_iso(check.earliest_eligible_start, tz),
        "next_available_slot": slot_data(check.next_available_slot, tz),
        "rulebook_version": check.rulebook_version,
    }


# --- The DRF exception handler ----------------------------------------------------------------

_DRF_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ParseError: "malformed_request",
}


def _domain_problem(exc: DomainError, instance: str) -> Response:
    """The one mapping of the error catalogue (core.errors) to problem details: the status is the error's own."""
    if isinstance(exc, UnableToBook):
        # The check carries its clinic's zone, so refusal times come back in that clinic's offset.
        body = problem(
            409,
            code=exc.code,
            title="Booking refused",
            detail=exc.message,
            instance=instance,
            **check_data(exc.check, exc.check.tz),
        )
        return problem_response(body)
    extra = {}
    if isinstance(exc, InvalidInput):
        # Structured detail as extension members (a tombstone's `merged_into`), but the line, which is in `errors`.
        extra.update(_extensions(exc.data, but=frozenset({"line"})))
        line = (exc.data or {}).get("line")
        # A list's line (the intake's) is part of the field's name, dotted as the serializers' errors are.
        extra["errors"] = (
            {f"{line}.{field}": messages for field, messages in exc.errors.items()}
            if isinstance(line, int)
            else exc.errors
        )
        return problem_response(
            problem(
                400,
                code=exc.code,
                kind="validation_error",
                title="Invalid input",
                detail=exc.message,
                instance=instance,
                **extra,
            )
        )
    if isinstance(exc, Refused) and exc.data:
        # A refusal's structured detail (a duplicate's `candidates`, a merge's `conflicts`) as extension members.
        return problem_response(
            problem(
                exc.http_status,
                code=exc.code,
                title=_TITLES.get(exc.code),
                detail=exc.message,
                instance=instance,
                **_extensions(exc.data),
            )
        )
    return problem_response(problem(exc.http_status, code=exc.code, detail=exc.message, instance=instance))


_TITLES = {
    ErrorCode.POSSIBLE_DUPLICATE: "Possible duplicate",
    ErrorCode.MERGE_CONFLICT: "The merge needs a decision",
}


def exception_handler(exc, context) -> Response:
    request = context.get("request")
    instance = instance_of(request) if request is not None else None
    if isinstance(exc, DomainError):
        return _domain_problem(exc, instance)
    if isinstance(exc, MergedRecordChange):
        body = problem(409, code=exc.default_code, title="Merged", detail=str(exc.detail), instance=instance)
        return problem_response({**body, "merged_into": exc.survivor_id})
    if isinstance(exc, MergedRecord):
        body = problem(308, code=exc.default_code, title="Merged", detail=str(exc.detail), instance=instance)
        return problem_response({**body, "merged_into": exc.survivor_id}, headers={"Location": exc.location})
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ParseError("The request is malformed.")

    if isinstance(exc, exceptions.ValidationError):
        errors = flatten_errors(exc.detail) or {"non_field_errors": ["Invalid input."]}
        first = next(iter(errors.items()))
        detail = f"{first[0]}: {first[1][0]}" if first[0] != "non_field_errors" else first[1][0]
        code = getattr(exc, "problem_code", "invalid_input")
        return problem_response(
            problem(
                400,
                code=code,
                kind="validation_error",
                title="Invalid input",
                detail=detail,
                instance=instance,
                errors=errors,
            )
        )
    if isinstance(exc, exceptions.APIException):
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        extra = {}
        if isinstance(exc, exceptions.Throttled):
            wait = max(1, math.ceil(exc.wait or 1))
            headers["Retry-After"] = str(wait)
            extra["retry_after"] = wait
        code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), None)
        if code is None:
            code = exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 400:  # every 400 carries `errors`, so clients read one shape
            extra["errors"] = {"non_field_errors": [str(detail)]}
        return problem_response(
            problem(exc.status_code, code=code, detail=str(detail), instance=instance, **extra), headers=headers
        )

    logger.exception("Unexpected error in %s", instance)
    return problem_response(
        problem(
            500, code="server_error", instance=instance, detail="Something went wrong on our side; it has been logged."
        )
    )


# --- Django-level handlers (config/urls.py) --------------------------------------------------


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def _json_problem(request, status_code: int, code: str, detail: str) -> JsonResponse:
    # Every 400 has `errors` (docs/api.md), one answered before any view too (a Host not served, a malformed query).
    extra = {"errors": {"non_field_errors": [detail]}} if status_code == 400 else {}
    return JsonResponse(
        problem(status_code, code=code, detail=detail, instance=instance_of(request), **extra),
        status=status_code,
        content_type=PROBLEM_CONTENT_TYPE,
    )


def not_found(request, exception=None):
    if _is_api(request):
        return _json_problem(request, 404, "not_found", "There is nothing at this address.")
    return django_defaults.page_not_found(request, exception)


def server_error(request):
    if _is_api(request):
        return _json_problem(request, 500, "server_error", "Something went wrong on our side; it has been logged.")
    return django_defaults.server_error(request)


def bad_request(request, exception=None):
    if _is_api(request):
        if isinstance(exception, RequestDataTooBig):
            return _json_problem(request, 413, "payload_too_large", "The request body is too large.")
        return _json_problem(request, 400, "malformed_request", "The request is malformed.")
    return django_defaults.bad_request(request, exception)


def permission_denied(request, exception=None):
    if _is_api(request):
        return _json_problem(request, 403, "permission_denied", "You do not have permission to do this.")
    return django_defaults.permission_denied(request, exception)


def unknown_api_path(request, *args, **kwargs):
    """The catch-all under /api/v1/: also in DEBUG, where Django would answer with an HTML page."""
    return _json_problem(request, 404, "not_found", "There is nothing at this address.")
