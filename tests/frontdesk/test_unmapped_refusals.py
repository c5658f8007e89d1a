"""A service's refusal that a desk view does not map next to its form is still a page that says it, never a 500.

Each desk view maps the refusals it expects (a stale page's `PreconditionFailed` beside the move or cancel form, a
rule's `Refused` above the booking form); `clinic_page` answers any other one with the service's sentence, a status
that says what kind of refusal it was and the way back to today, and a view written later that forgets one cannot
answer a server error.
"""

from __future__ import annotations

import pytest

from core.errors import ErrorCode, InvalidInput, InvalidTransition, PreconditionFailed, Refused
from tests.frontdesk.conftest import at_london, book, url

pytestmark = pytest.mark.django_db


@pytest.fixture
def visit(patient, practitioner, frozen):
    return book(patient, practitioner, "botox", at_london(2026, 3, 10, 10))


def _raises(error):
    def service(**kwargs):
        raise error

    return service


def test_a_stale_page_the_view_does_not_map_is_a_409_page_saying_so(reception, clinic, visit, monkeypatch):
    """Checking in goes through the desk's `DomainErrors`, which maps refusals, not a stale page."""
    monkeypatch.setattr(
        "frontdesk.views.appointments.appointment_check_in",
        _raises(PreconditionFailed(ErrorCode.RECORD_CHANGED, "This visit moved since the page was opened.")),
    )
    response = reception.post(url("check_in", clinic, visit))
    assert response.status_code == 409
    text = response.content.decode()
    assert "This has changed since you opened the page" in text
    assert "This visit moved since the page was opened." in text
    assert url("today", clinic) in text  # the way back


@pytest.mark.parametrize(
    ("error", "status", "heading"),
    [
        (Refused(ErrorCode.BOOKING_REFUSED, "That time is taken."), 409, "Not done"),
        (InvalidTransition(ErrorCode.NOT_CHECKABLE_IN, "A cancelled visit cannot be checked in."), 409, "Not done"),
        (
            InvalidInput(ErrorCode.UNKNOWN_PROCEDURE, "There is no procedure with code 'x'."),
            400,
            "That can&#x27;t be done as asked",
        ),
        (PreconditionFailed(ErrorCode.RECORD_CHANGED, "Changed."), 409, "This has changed since you opened the page"),
    ],
    ids=["refused", "transition", "invalid", "stale"],
)
def test_any_refusal_escaping_a_view_is_answered_with_its_sentence(
    reception, clinic, visit, monkeypatch, error, status, heading
):
    """The appointment page itself maps none: whatever a service raises there is said on a page of its own."""
    monkeypatch.setattr("frontdesk.views.appointments.appointment_or_404", _raises_any(error))
    response = reception.get(url("appointment", clinic, visit))
    assert response.status_code == status
    text = response.content.decode()
    assert heading in text
    assert error.message.replace("'", "&#x27;") in text


def _raises_any(error):
    def lookup(*args, **kwargs):
        raise error

    return lookup
