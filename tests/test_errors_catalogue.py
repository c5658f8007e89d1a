"""The error catalogue (core.errors) is the one list of domain codes, and docs/api.md shows exactly it."""

import re
from pathlib import Path

import pytest

from core.errors import DomainError, ErrorCode, InvalidInput, InvalidTransition, NotAllowed, NotFound

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_docs_api_lists_every_code_with_its_statuses():
    section = DOCS.read_text().split("### Error codes", 1)[1].split("\n### ", 1)[0]
    documented = {
        code: tuple(int(s) for s in statuses.split(", "))
        for code, statuses in re.findall(r"^\| `([a-z_]+)` \| ([\d, ]+) \|$", section, flags=re.M)
    }
    assert documented == {code.value: code.statuses for code in ErrorCode}


@pytest.mark.parametrize(
    "family, code",
    [
        (InvalidInput, ErrorCode.UNKNOWN_PROCEDURE),
        (NotFound, ErrorCode.UNKNOWN_APPOINTMENT),
        (NotAllowed, ErrorCode.CLINICIAN_REQUIRED),
        (InvalidTransition, ErrorCode.NOT_CANCELLABLE),
        (NotFound, ErrorCode.UNKNOWN_PATIENT),
        (InvalidInput, ErrorCode.UNKNOWN_PATIENT),
    ],
)
def test_an_error_takes_its_status_from_its_family_within_the_codes_statuses(family, code):
    error = family(code, "message")
    assert error.http_status in code.statuses and error.code is code


def test_a_code_raised_in_the_wrong_family_is_a_programming_error():
    with pytest.raises(TypeError):
        NotFound(ErrorCode.START_IN_PAST, "400, not 404")
    with pytest.raises(ValueError):
        InvalidInput("no_such_code", "unknown codes are refused")


def test_structured_data_travels_with_the_error():
    error = InvalidInput(ErrorCode.DUPLICATE_CONDITION, "Line 2: twice", field="condition", data={"line": 1})
    assert isinstance(error, DomainError)
    assert (error.data, error.errors) == ({"line": 1}, {"condition": ["Line 2: twice"]})
