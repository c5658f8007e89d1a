"""Front-desk forms: shape only; what the services refuse is mapped once, by DomainErrors."""

from datetime import UTC, date, datetime

import pytest

from core.errors import ErrorCode, InvalidInput, InvalidTransition, NotAllowed
from frontdesk.forms import CancelForm, DomainErrors, RescheduleForm
from tests.frontdesk.conftest import at_london, book

pytestmark = pytest.mark.django_db


def test_invalid_input_goes_next_to_its_field():
    form = CancelForm({"reason": "x"})
    with DomainErrors(form, invalid_status=400) as outcome:
        raise InvalidInput(ErrorCode.REASON_TOO_LONG, "Too long.", field="reason")

    assert form.errors["reason"] == ["Too long."] and outcome.status == 400 and outcome.refused is None


def test_a_refusal_is_a_409_message_above_the_form():
    form = CancelForm({"reason": ""})
    with DomainErrors(form) as outcome:
        raise InvalidTransition(ErrorCode.NOT_CANCELLABLE, "A completed appointment cannot be cancelled.")

    assert (outcome.status, outcome.refused) == (409, "A completed appointment cannot be cancelled.")
    assert form.is_valid()


def test_not_allowed_is_left_to_the_page_decorator():
    with pytest.raises(NotAllowed):
        with DomainErrors(CancelForm({})):
            raise NotAllowed(ErrorCode.CLINICIAN_REQUIRED, "Only a clinician can do that.")


def test_the_requested_start_is_resolved_in_validation_and_read_plainly(clinic, patient, practitioner, frozen):
    appointment = book(patient, practitioner, "botox", at_london(2026, 3, 5, 10))

    def form(**data):
        return RescheduleForm(data, clinic=clinic, appointment=appointment, today=date(2026, 3, 2))

    summer = form(date="2026-07-01", time="14:00")
    gap = form(date="2026-03-29", time="01:30")
    day_only = form(date="2026-03-04")
    assert summer.is_valid() and summer.requested_start == datetime(2026, 7, 1, 13, tzinfo=UTC)
    assert summer.requested_start == summer.requested_start  # a read, with no side effect
    assert not gap.is_valid() and "does not exist" in gap.errors["time"][0]
    assert day_only.is_valid() and day_only.requested_start is None
    assert day_only.day_start == datetime(2026, 3, 4, tzinfo=UTC)
