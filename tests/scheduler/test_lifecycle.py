"""The appointment lifecycle: one table decides every action, and one list of events feeds everything."""

import pytest

from clinic.models import AUDIT_ONLY_ACTIONS, Appointment, AppointmentStatus, AuditAction
from core.errors import ErrorCode, InvalidTransition
from reminders.models import WebhookEndpoint
from reminders.services import REACTIONS
from scheduler.lifecycle import EVENT_FOR_ACTION, EVENTS, TRANSITIONS, refusal, require_allowed

ACTIVE = (AppointmentStatus.PENDING_CLEARANCE, AppointmentStatus.CONFIRMED)
FINISHED = (AppointmentStatus.COMPLETED, AppointmentStatus.CANCELLED, AppointmentStatus.NO_SHOW)


def test_the_table_answers_for_every_status_and_action():
    actions = {
        AuditAction.RESCHEDULED,
        AuditAction.CANCELLED,
        AuditAction.CLEARED,
        AuditAction.COMPLETED,
        AuditAction.NO_SHOW,
        AuditAction.CHECKED_IN,
    }
    assert set(TRANSITIONS) == {(status, action) for status in AppointmentStatus for action in actions}


@pytest.mark.parametrize("status", ACTIVE)
@pytest.mark.parametrize("action", [AuditAction.RESCHEDULED, AuditAction.CANCELLED, AuditAction.NO_SHOW])
def test_an_active_appointment_may_be_moved_cancelled_or_missed(status, action):
    assert refusal(status, action) is None


@pytest.mark.parametrize("status", FINISHED)
@pytest.mark.parametrize(
    "action, code",
    [
        (AuditAction.RESCHEDULED, ErrorCode.NOT_RESCHEDULABLE),
        (AuditAction.CANCELLED, ErrorCode.NOT_CANCELLABLE),
        (AuditAction.CLEARED, ErrorCode.NOT_PENDING_CLEARANCE),
        (AuditAction.COMPLETED, ErrorCode.NOT_COMPLETABLE),
        (AuditAction.NO_SHOW, ErrorCode.NOT_NO_SHOW),
    ],
)
def test_a_finished_appointment_allows_nothing(status, action, code):
    assert refusal(status, action) == code


def test_only_a_pending_booking_is_cleared_and_only_a_confirmed_one_completed():
    assert refusal(AppointmentStatus.PENDING_CLEARANCE, AuditAction.CLEARED) is None
    assert refusal(AppointmentStatus.CONFIRMED, AuditAction.CLEARED) == ErrorCode.NOT_PENDING_CLEARANCE
    assert refusal(AppointmentStatus.CONFIRMED, AuditAction.COMPLETED) is None
    assert refusal(AppointmentStatus.PENDING_CLEARANCE, AuditAction.COMPLETED) == ErrorCode.CLEARANCE_REQUIRED


def test_a_refusal_says_what_the_appointment_is_and_what_cannot_happen():
    appointment = Appointment(status=AppointmentStatus.CANCELLED)  # the table needs only the status

    with pytest.raises(InvalidTransition) as refused:
        require_allowed(appointment, AuditAction.RESCHEDULED)

    assert refused.value.code == ErrorCode.NOT_RESCHEDULABLE
    assert refused.value.message == "A cancelled appointment cannot be moved."
    assert refused.value.http_status == 409


def test_one_list_of_events_feeds_webhooks_and_every_action_has_its_reaction():
    assert WebhookEndpoint.EVENTS == EVENTS == tuple(EVENT_FOR_ACTION.values())
    # The trail's entries that change nothing (a message sent again) have neither.
    assert set(EVENT_FOR_ACTION) == set(REACTIONS) == set(AuditAction) - AUDIT_ONLY_ACTIONS
    assert AUDIT_ONLY_ACTIONS
