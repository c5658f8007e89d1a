"""A visit moved to another practitioner is told to the patient whose e-mail named the one before.

The e-mails (their text and calendar file) name the practitioner; a text names no one. So a move that keeps the
time and changes the practitioner plans the move notice by e-mail only, after the same grace as a move in time,
saying who the patient will see now and who they were told of; a move back within the grace, a patient who heard
only by text, or a confirmation not sent yet (it names the practitioner as it stands when it goes) gets nothing.
A move in time and practitioner goes on every channel, its e-mail naming both practitioners. What is told is
asked again when the notice goes (reminders.verdicts.notice_verdict), as for a move in time.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from reminders.channels import LocmemSmsBackend
from reminders.dispatch import dispatch_local
from reminders.models import FROM_PRACTITIONER, TOLD_PRACTITIONER, MessageKind, OutboxMessage, OutboxStatus
from reminders.services import last_told_practitioner
from scheduler.booking import appointment_reschedule
from tests.factories import PatientFactory, PractitionerFactory
from tests.reminders.conftest import RECEPTION, book, london

VISIT = london(2026, 3, 11, 11)  # a Wednesday, in a week of Ada's and Bob's hours


@pytest.fixture
def ada(clinic):
    return PractitionerFactory(clinic=clinic, name="Dr Ada Hart")


@pytest.fixture
def bob(clinic):
    return PractitionerFactory(clinic=clinic, name="Dr Bob Stone")


def deliver(moment):
    with time_machine.travel(moment, tick=False):
        return dispatch_local(now=timezone.now())


def move(appointment, at, *, start=VISIT, practitioner):
    with time_machine.travel(at, tick=False):
        return appointment_reschedule(
            appointment=appointment, start_at=start, practitioner_id=practitioner.pk, actor=RECEPTION, now=at
        ).appointment


def notices(appointment, **filters):
    return list(
        OutboxMessage.objects.filter(appointment=appointment, kind=MessageKind.RESCHEDULED, **filters)
        .exclude(channel="webhook")
        .order_by("channel")
    )


def confirmed_by_email(patient, ada, now):
    """Booked with Dr Ada; the confirmation went by e-mail and text, naming her in the e-mail."""
    appointment = book(patient, "botox", VISIT, now, practitioner_id=ada.pk)
    deliver(now)
    assert "Dr Ada Hart" in mail.outbox[0].body
    assert last_told_practitioner(appointment) == str(ada.pk)
    mail.outbox.clear()
    LocmemSmsBackend.outbox = []
    return appointment


def test_the_same_time_with_another_practitioner_is_told_by_email_after_the_grace(patient, ada, bob, now):
    appointment = confirmed_by_email(patient, ada, now)
    moved_at = now + timedelta(hours=1)
    appointment = move(appointment, moved_at, practitioner=bob)

    planned = notices(appointment)
    assert [(n.channel, n.status) for n in planned] == [("email", OutboxStatus.PENDING)]
    assert planned[0].payload[FROM_PRACTITIONER] == str(ada.pk)

    deliver(moved_at + timedelta(minutes=1))  # within the grace: nothing yet
    assert mail.outbox == []
    deliver(moved_at + timedelta(minutes=6))
    assert len(mail.outbox) == 1 and LocmemSmsBackend.outbox == []
    sent = mail.outbox[0]
    assert sent.subject == "Your appointment on Wed 11 Mar is now with Dr Bob Stone", sent.subject
    assert "is now with Dr Bob Stone instead of Dr Ada Hart. The time has not changed." in sent.body, sent.body
    assert "has moved" not in sent.body and "It was:" not in sent.body
    assert last_told_practitioner(appointment) == str(bob.pk)  # the notice itself is what they heard last


def test_moved_back_to_the_practitioner_told_within_the_grace_sends_nothing(patient, ada, bob, now):
    appointment = confirmed_by_email(patient, ada, now)
    moved_at = now + timedelta(hours=1)
    appointment = move(appointment, moved_at, practitioner=bob)
    appointment = move(appointment, moved_at + timedelta(minutes=2), practitioner=ada)

    assert [n.status for n in notices(appointment)] == [OutboxStatus.CANCELLED]
    deliver(moved_at + timedelta(minutes=30))
    assert mail.outbox == [] and LocmemSmsBackend.outbox == []


def test_moved_back_after_planning_the_notice_asks_again_when_it_goes(patient, ada, bob, now):
    """The notice is planned on Bob; before it goes, the desk writes Ada again straight into the row (as a move
    racing the notice's claim would leave it): the send asks what was told, finds Ada, and drops it."""
    appointment = confirmed_by_email(patient, ada, now)
    moved_at = now + timedelta(hours=1)
    appointment = move(appointment, moved_at, practitioner=bob)
    type(appointment).objects.filter(pk=appointment.pk).update(practitioner=ada)

    deliver(moved_at + timedelta(minutes=6))
    assert mail.outbox == []
    (notice,) = notices(appointment)
    assert (notice.status, notice.last_error) == (OutboxStatus.CANCELLED, "the patient was last told this very time")


def test_a_new_time_and_practitioner_go_on_every_channel_the_email_naming_both(patient, ada, bob, now):
    appointment = confirmed_by_email(patient, ada, now)
    moved_at = now + timedelta(hours=1)
    appointment = move(appointment, moved_at, start=VISIT + timedelta(hours=2), practitioner=bob)

    assert [(n.channel, n.status) for n in notices(appointment)] == [
        ("email", OutboxStatus.PENDING),
        ("sms", OutboxStatus.PENDING),
    ]
    deliver(moved_at + timedelta(minutes=6))
    (sent,) = mail.outbox
    assert sent.subject == "Your appointment has moved to Wed 11 Mar", sent.subject
    assert "New time: Wed 11 Mar, 13:00 (GMT) (until" in sent.body and "with Dr Bob Stone" in sent.body, sent.body
    assert "It was: Wed 11 Mar, 11:00 (GMT), with Dr Ada Hart" in sent.body, sent.body
    (text,) = LocmemSmsBackend.outbox
    assert "moved to" in text["body"] and "Dr" not in text["body"]  # a text names no practitioner


def test_a_new_time_with_the_same_practitioner_names_no_previous_one(patient, ada, now):
    appointment = confirmed_by_email(patient, ada, now)
    moved_at = now + timedelta(hours=1)
    appointment = move(appointment, moved_at, start=VISIT + timedelta(hours=2), practitioner=ada)
    deliver(moved_at + timedelta(minutes=6))
    (sent,) = mail.outbox
    assert "It was: Wed 11 Mar, 11:00 (GMT)\n" in sent.body and "instead of" not in sent.body, sent.body
    assert FROM_PRACTITIONER not in notices(appointment, channel="email")[0].payload


def test_back_to_the_time_told_but_not_the_practitioner_keeps_only_the_email_notice(patient, ada, bob, now):
    """Moved in time and practitioner, then back to the time told within the grace, Bob kept: the text's notice is
    dropped (its time is the one told), the e-mail's tells the practitioner."""
    appointment = confirmed_by_email(patient, ada, now)
    moved_at = now + timedelta(hours=1)
    appointment = move(appointment, moved_at, start=VISIT + timedelta(hours=2), practitioner=bob)
    appointment = move(appointment, moved_at + timedelta(minutes=2), practitioner=bob)

    assert [(n.channel, n.status) for n in notices(appointment)] == [
        ("email", OutboxStatus.PENDING),
        ("sms", OutboxStatus.CANCELLED),
    ]
    deliver(moved_at + timedelta(minutes=8))
    (sent,) = mail.outbox
    assert "instead of Dr Ada Hart. The time has not changed." in sent.body, sent.body
    assert LocmemSmsBackend.outbox == []


def test_a_patient_told_only_by_text_hears_nothing_of_a_new_practitioner(clinic, ada, bob, now):
    patient = PatientFactory(clinic=clinic, phone="+447700900124", reminder_channels=["sms"], sms_consent=True)
    appointment = book(patient, "botox", VISIT, now, practitioner_id=ada.pk)
    deliver(now)
    assert len(LocmemSmsBackend.outbox) == 1
    assert last_told_practitioner(appointment) is None  # a text names no one
    appointment = move(appointment, now + timedelta(hours=1), practitioner=bob)

    assert not notices(appointment, status=OutboxStatus.PENDING)
    deliver(now + timedelta(hours=2))
    assert len(LocmemSmsBackend.outbox) == 1 and mail.outbox == []


def test_a_confirmation_not_sent_yet_names_the_practitioner_as_it_stands(patient, ada, bob, now):
    appointment = book(patient, "botox", VISIT, now, practitioner_id=ada.pk)
    appointment = move(appointment, now + timedelta(minutes=1), practitioner=bob)
    assert not notices(appointment, status=OutboxStatus.PENDING)

    deliver(now + timedelta(minutes=2))
    (confirmation,) = mail.outbox
    assert "Dr Bob Stone" in confirmation.body and "Dr Ada Hart" not in confirmation.body
    deliver(now + timedelta(hours=1))
    assert len(mail.outbox) == 1


def test_what_an_email_named_is_recorded_when_it_goes_and_a_text_records_no_one(patient, ada, now):
    appointment = book(patient, "botox", VISIT, now, practitioner_id=ada.pk)
    deliver(now)
    told = {
        m.channel: m.payload.get(TOLD_PRACTITIONER)
        for m in OutboxMessage.objects.filter(appointment=appointment, kind=MessageKind.CONFIRMATION)
    }
    assert told == {"email": str(ada.pk), "sms": None}
