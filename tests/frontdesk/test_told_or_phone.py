"""After a cancel or a move the desk is told whether a message will tell the patient (frontdesk.selectors.
patient_will_be_told): "the patient will be told" only when a notice is on its way by e-mail or text; a patient who
gets no messages from us (unsubscribed, texts stopped, no address or number) is to be phoned. Before 7 December the
cancel always said "the patient will be told", and the patient would come for nothing."""

from datetime import UTC, datetime, timedelta

import pytest

from clinic.models import Appointment, AppointmentStatus
from reminders.models import Channel, MessageKind, OutboxMessage, OutboxStatus
from scheduler.booking import Actor, appointment_book
from tests import shipped
from tests.frontdesk.conftest import at_london, url

pytestmark = pytest.mark.django_db

PHONE_THEM = "No message will tell the patient"


def thursdays_botox(patient, practitioner, now):
    """A Botox booked through the service (its confirmation planned) for Thursday 5 March, 10:00 London."""
    return appointment_book(
        patient=patient,
        procedure_code="botox",
        start_at=at_london(2026, 3, 5, 10),
        actor=Actor("desk test"),
        now=now,
        practitioner_id=str(practitioner.pk),
    ).appointment


@pytest.fixture
def visit(patient, practitioner, frozen, request):
    """A Botox booked through the service (its confirmation planned) for Thursday 5 March, 10:00 London, the
    confirmation since sent; the patient's channels as the test names them."""
    shipped.care_texts()
    patient.reminder_channels = request.param
    patient.save()
    booked = thursdays_botox(patient, practitioner, frozen)
    # What the patient was told: the confirmation went (so a notice of a change is planned to follow it).
    OutboxMessage.objects.filter(appointment=booked, kind=MessageKind.CONFIRMATION).update(
        status=OutboxStatus.SENT, sent_at=frozen
    )
    return booked


def said(response) -> str:
    return " ".join(str(m) for m in response.wsgi_request._messages)


@pytest.mark.parametrize(
    "visit, told", [(["email"], True), ([], False)], indirect=["visit"], ids=["by e-mail", "no channel"]
)
def test_a_cancel_says_whether_the_patient_will_be_told(reception, clinic, visit, told):
    response = reception.post(url("cancel", clinic, visit), {"reason": "Practitioner ill"})

    assert response.status_code == 302
    assert Appointment.objects.get(pk=visit.pk).status == AppointmentStatus.CANCELLED
    notices = OutboxMessage.objects.filter(appointment=visit, kind=MessageKind.CANCELLED).exclude(
        channel=Channel.WEBHOOK
    )
    assert notices.exists() == told
    if told:
        assert "the patient will be told" in said(response)
        assert PHONE_THEM not in said(response)
    else:
        assert "the patient will be told" not in said(response)
        assert f"{PHONE_THEM} (they get none from us" in said(response) and "phone them." in said(response)


@pytest.mark.parametrize(
    "visit, told", [(["email"], True), ([], False)], indirect=["visit"], ids=["by e-mail", "no channel"]
)
def test_a_move_says_so_when_no_message_will_tell_the_patient(reception, clinic, visit, told):
    new = datetime(2026, 3, 5, 11, tzinfo=UTC)
    response = reception.post(url("reschedule", clinic, visit), {"start_at": new.isoformat(), "reason": "Asked"})

    assert response.status_code == 302
    assert Appointment.objects.get(pk=visit.pk).start_at == new
    assert said(response).startswith("Moved to ")
    assert (PHONE_THEM in said(response)) == (not told)


def test_nothing_pending_is_not_told_and_a_sent_notice_is_not_on_its_way(patient, practitioner, frozen):
    """The selector itself: a notice already sent, or dropped, is not "on its way"; after a move with nothing on its
    way, the patient is told only if what they last heard names the visit's time as it stands (moved back to it)."""
    from frontdesk.selectors import patient_will_be_told

    shipped.care_texts()
    booked = thursdays_botox(patient, practitioner, frozen)
    assert not patient_will_be_told(booked, MessageKind.CANCELLED)
    assert patient_will_be_told(booked, MessageKind.RESCHEDULED)  # its confirmation, unsent, names the time
    OutboxMessage.objects.filter(appointment=booked).update(status=OutboxStatus.SENT, sent_at=frozen + timedelta(1))
    assert patient_will_be_told(booked, MessageKind.RESCHEDULED)  # what they heard names 10:00, the time it is at
    later = {"start_at": booked.start_at + timedelta(hours=1), "end_at": booked.end_at + timedelta(hours=1)}
    Appointment.objects.filter(pk=booked.pk).update(**later)
    booked.refresh_from_db()
    assert not patient_will_be_told(booked, MessageKind.RESCHEDULED)  # they hold 10:00; nothing tells them 11:00
