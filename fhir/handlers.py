"""Django's own error handlers for the FHIR paths, for what never reaches a FHIR view (a refused Host, an error in
middleware): an OperationOutcome in application/fhir+json, never an HTML page. config.errors calls them for
/fhir/ and the API's (or Django's) for every other path."""

from __future__ import annotations

import json

from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse

from fhir import mapping
from fhir.views import FHIR_JSON, issue_type


def _outcome(status: int, problem: str, diagnostics: str) -> HttpResponse:
    body = mapping.operation_outcome(code=issue_type(status), diagnostics=diagnostics, problem=problem)
    return HttpResponse(json.dumps(body), status=status, content_type=FHIR_JSON)


def bad_request(request, exception=None):
    if isinstance(exception, RequestDataTooBig):
        return _outcome(413, "payload_too_large", "The request body is too large.")
    return _outcome(400, "malformed_request", "The request is malformed.")


def permission_denied(request, exception=None):
    return _outcome(403, "permission_denied", "You do not have permission to do this.")


def not_found(request, exception=None):
    return _outcome(404, "not_found", "This server has nothing at this address; its FHIR base is /fhir/r4/.")


def server_error(request):
    return _outcome(500, "server_error", "Something went wrong on our side; it has been logged.")
