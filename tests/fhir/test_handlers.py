"""config.errors: Django's own error handlers answer an OperationOutcome under /fhir/ (fhir.handlers), problem details
under /api/, Django's pages elsewhere."""

import json

import pytest
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404
from django.test import RequestFactory

from config import errors as handlers

FHIR_JSON = "application/fhir+json"


@pytest.mark.parametrize(
    "call, status, issue",
    [
        (lambda r: handlers.bad_request(r, ValueError()), 400, "invalid"),
        (lambda r: handlers.bad_request(r, RequestDataTooBig()), 413, "too-long"),
        (lambda r: handlers.permission_denied(r, PermissionDenied()), 403, "forbidden"),
        (lambda r: handlers.not_found(r, Http404()), 404, "not-found"),
        (handlers.server_error, 500, "exception"),
    ],
)
@pytest.mark.parametrize("path", ["/fhir/r4/Appointment", "/fhir/", "/fhir"])
def test_under_fhir_every_handler_answers_an_operation_outcome(path, call, status, issue):
    response = call(RequestFactory().get(path))
    assert response.status_code == status and response["Content-Type"] == FHIR_JSON
    body = json.loads(response.content)
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == issue


def test_elsewhere_the_api_and_django_handlers_answer():
    api = handlers.not_found(RequestFactory().get("/api/v1/nothing"), Http404())
    assert (api.status_code, api["Content-Type"]) == (404, "application/problem+json")
    page = handlers.server_error(RequestFactory().get("/fhirx"))
    assert page.status_code == 500 and page["Content-Type"].startswith("text/html")
