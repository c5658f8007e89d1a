"""A domain error's structured detail becomes a problem's extension members (a tombstone's `merged_into`, a
duplicate's `candidates`), and never one of the problem's own: a `data` key named `code`, `status` or `type` was
taken for an argument twice (a 500) or said another status than the answer's (api.problems)."""

import pytest

from api.problems import _domain_problem, problem
from core.errors import ErrorCode, InvalidInput, Refused

CLASHING = {
    "type": "about:blank",
    "title": "t",
    "status": 200,
    "detail": "d",
    "code": "c",
    "instance": "/x",
    "kind": "k",
}


def test_an_invalid_inputs_data_adds_members_and_replaces_none():
    error = InvalidInput(
        ErrorCode.PATIENT_MERGED,
        "That record was merged.",
        field="patient",
        data={**CLASHING, "errors": {"other": ["x"]}, "merged_into": "pat_2"},
    )
    response = _domain_problem(error, "/api/v1/appointments")
    assert response.status_code == 400
    body = response.data
    assert body["status"] == 400 and body["code"] == "patient_merged" and body["detail"] == "That record was merged."
    assert body["type"].endswith(":validation-error") and body["title"] == "Invalid input"
    assert body["instance"] == "/api/v1/appointments"
    assert body["errors"] == {"patient": ["That record was merged."]}
    assert body["merged_into"] == "pat_2"


def test_a_refusals_data_adds_members_and_replaces_none():
    error = Refused(
        ErrorCode.POSSIBLE_DUPLICATE, "This may be a patient you have.", data={**CLASHING, "candidates": []}
    )
    response = _domain_problem(error, "/api/v1/patients")
    assert response.status_code == 409
    body = response.data
    assert (body["status"], body["code"], body["title"]) == (409, "possible_duplicate", "Possible duplicate")
    assert body["instance"] == "/api/v1/patients" and body["candidates"] == []


@pytest.mark.parametrize("member", ["type", "status"])  # the others are `problem`'s own arguments
def test_an_extension_never_replaces_a_problems_own_member(member):
    body = problem(404, code="not_found", detail="Not found.", **{member: "other"})
    assert body["status"] == 404 and body["type"].endswith(":not-found")
