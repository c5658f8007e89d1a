"""A STOP the SMS provider heard and this service did not: Twilio refuses the number (error 21610) until a START.

docs/reminders.md, "Inbound SMS": the refusal is recorded as the patient's STOP (via `sms_provider`), texts go off
for every patient with that number, a START undoes it, and the desk is told the block lasts until that START.
"""

from datetime import timedelta

import pytest

from clinic.models import Patient
from reminders import channels, consent, dispatch
from reminders.channels import PermanentSendError, RecipientStopped, TwilioSmsBackend
from reminders.dispatch import SendOutcome, dispatch_local
from reminders.models import ContactOptIn, ContactOptOut, OptOutVia, OutboxMessage
from tests.factories import PatientFactory
from tests.reminders.conftest import book, london

pytestmark = pytest.mark.django_db

WEDNESDAY_10 = london(2026, 3, 4, 10)
STOPPED = (400, b'{"code": 21610, "message": "Attempt to send to unsubscribed recipient"}')


def sms_rows(appointment):
    return OutboxMessage.objects.filter(appointment=appointment, channel="sms")


def test_twilio_21610_is_a_stop_and_other_refusals_are_not(twilio):
    twilio.script = [STOPPED, (400, b'{"code": 21211, "message": "The To number is not valid."}')]

    with pytest.raises(RecipientStopped, match="21610 Attempt to send to unsubscribed recipient"):
        TwilioSmsBackend().send(to="+447700900123", body="x", outbox_id="a")
    with pytest.raises(PermanentSendError) as other:
        TwilioSmsBackend().send(to="+447700900123", body="x", outbox_id="b")
    assert not isinstance(other.value, RecipientStopped)
    assert issubclass(RecipientStopped, PermanentSendError)  # never retried


def test_the_providers_refusal_turns_texts_off_for_everyone_at_that_number(twilio, patient, practitioner, now):
    sibling = PatientFactory(
        clinic=patient.clinic, first_name="Bo", phone=patient.phone, reminder_channels=["sms"], sms_consent=True
    )
    elsewhere = PatientFactory(
        clinic=patient.clinic, first_name="Cy", phone="+447700900456", reminder_channels=["sms"], sms_consent=True
    )
    twilio.script = [STOPPED]
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)

    outcomes = dispatch_local(now=now)

    assert outcomes == {SendOutcome.SENT: 1, SendOutcome.FAILED: 1}  # the e-mail went; the text was refused
    confirmation = sms_rows(appointment).get(kind="confirmation")
    assert confirmation.status == "failed" and "21610" in confirmation.last_error
    for stopped in (patient, sibling):
        stopped.refresh_from_db()
        assert (stopped.sms_consent, "sms" in stopped.reminder_channels) == (False, False)
        [opt_out] = ContactOptOut.objects.filter(patient=stopped)
        assert (opt_out.channel, opt_out.via, opt_out.was_on) == ("sms", OptOutVia.SMS_PROVIDER, True)
        assert "21610" in opt_out.detail
    elsewhere.refresh_from_db()
    assert elsewhere.sms_consent and not ContactOptOut.objects.filter(patient=elsewhere).exists()
    assert patient.reminder_channels == ["email"]  # e-mail stays as it was

    # The day before: the texts due by then are skipped without asking the provider again; the e-mails go.
    requests, day_before = len(twilio.requests), WEDNESDAY_10 - timedelta(hours=20)
    later = dispatch_local(now=day_before)
    assert later.get(SendOutcome.SENT) and later.get(SendOutcome.SKIPPED), later
    assert len(twilio.requests) == requests
    due_texts = sms_rows(appointment).exclude(kind="confirmation").filter(due_at__lte=day_before)
    assert {"reminder"} <= set(due_texts.values_list("kind", flat=True))
    assert set(due_texts.values_list("status", flat=True)) == {"skipped"}


def test_other_refusals_leave_consent_alone(twilio, patient, practitioner, now):
    twilio.script = [(400, b'{"code": 21211, "message": "The To number is not valid."}')]
    book(patient, "microneedling", WEDNESDAY_10, now)

    assert dispatch_local(now=now) == {SendOutcome.SENT: 1, SendOutcome.FAILED: 1}

    patient.refresh_from_db()
    assert patient.sms_consent and not ContactOptOut.objects.exists()


def test_a_start_undoes_the_stop_the_provider_heard(settings, twilio, patient, practitioner, now):
    twilio.script = [STOPPED]
    book(patient, "microneedling", WEDNESDAY_10, now)
    dispatch_local(now=now)

    assert consent.sms_reply(from_number=patient.phone, body="START", now=now + timedelta(hours=1)) == 1

    patient.refresh_from_db()
    assert patient.sms_consent and "sms" in patient.reminder_channels


def test_a_number_changed_since_the_refusal_is_not_stopped(patient, now):
    """The record waits for the patient's lock; a number changed meanwhile belongs to the new phone, not stopped."""
    assert not consent.patient_opt_out(
        patient=patient, channel="sms", via=OptOutVia.SMS_PROVIDER, now=now, address="+447700900999"
    )
    patient.refresh_from_db()
    assert patient.sms_consent and not ContactOptOut.objects.exists()


def test_a_refusal_is_recorded_before_the_batchs_next_text_to_that_number(twilio, patient, practitioner, now):
    """Two records share the number and both have a text due in one batch: the first is refused, the second is
    skipped without asking the provider, and each record has one opt-out."""
    sibling = PatientFactory(
        clinic=patient.clinic, first_name="Bo", phone=patient.phone, reminder_channels=["sms"], sms_consent=True
    )
    twilio.script = [STOPPED, STOPPED]
    book(patient, "microneedling", WEDNESDAY_10, now)
    book(sibling, "microneedling", WEDNESDAY_10 + timedelta(hours=2), now)

    outcomes = dispatch_local(now=now)

    assert outcomes.get(SendOutcome.FAILED) == 1 and outcomes.get(SendOutcome.SKIPPED) == 1, outcomes
    assert len(twilio.requests) == 1
    for stopped in (patient, sibling):
        assert ContactOptOut.objects.filter(patient=stopped, via=OptOutVia.SMS_PROVIDER).count() == 1
        assert patient.phone in ContactOptOut.objects.get(patient=stopped).detail


def test_a_stop_already_heard_is_not_recorded_again(twilio, patient, practitioner, now):
    consent.sms_reply(from_number=patient.phone, body="STOP", now=now)

    assert not consent.sms_provider_stopped(phone=patient.phone, now=now + timedelta(minutes=5), detail="21610")
    vias = list(ContactOptOut.objects.filter(patient=patient).values_list("via", flat=True))
    assert vias == [OptOutVia.SMS_STOP]


def test_texts_switched_on_after_the_refusal_stay_on(twilio, patient, now):
    """The refusal is recorded after its send; the desk (or a START) switching texts on in between wins."""
    consent.sms_reply(from_number=patient.phone, body="STOP", now=now)
    ContactOptIn.objects.create(patient=patient, channel="sms", via="desk", at=now + timedelta(seconds=1))
    Patient.objects.filter(pk=patient.pk).update(sms_consent=True, reminder_channels=["email", "sms"])

    assert not consent.sms_provider_stopped(phone=patient.phone, now=now, detail="21610")

    patient.refresh_from_db()
    assert patient.sms_consent


def test_a_record_that_fails_leaves_the_row_failed_and_the_batch_going(monkeypatch, twilio, patient, practitioner, now):
    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(dispatch, "sms_provider_stopped", broken)
    twilio.script = [STOPPED]
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)

    assert dispatch_local(now=now) == {SendOutcome.SENT: 1, SendOutcome.FAILED: 1}

    assert sms_rows(appointment).get(kind="confirmation").status == "failed"
    patient.refresh_from_db()
    assert patient.sms_consent  # not recorded this time: the next text meets the refusal again


def desk_help(patient) -> str:
    from frontdesk.forms import PatientForm

    patient.refresh_from_db()
    return PatientForm._sms_consent_help(patient.clinic, patient)


def test_the_desk_is_told_the_provider_blocks_until_start(twilio, patient, now):
    consent.sms_provider_stopped(phone=patient.phone, now=now, detail="Twilio HTTP 400: 21610")

    help_text = desk_help(patient)

    assert "turned texts off themselves on 2 Mar 2026 (SMS reply STOP, reported by the SMS provider)" in help_text
    assert "only once they text START" in help_text
    assert "If they have, and texts are still off here, switch them back on." in help_text  # their START may be lost


def test_after_a_stop_heard_here_the_desk_hears_of_the_block_but_not_of_a_lost_start(twilio, patient, now):
    consent.sms_reply(from_number=patient.phone, body="STOP", now=now)

    help_text = desk_help(patient)

    assert "(SMS reply STOP)" in help_text and "only once they text START" in help_text
    assert "If they have" not in help_text


def test_a_provider_that_does_not_block_is_not_said_to(patient, now):
    """The console, file and in-memory backends keep no opt-out list of their own."""
    consent.sms_reply(from_number=patient.phone, body="STOP", now=now)

    help_text = desk_help(patient)

    assert "turned texts off themselves" in help_text and "START" not in help_text
    assert channels.TWILIO_STOPPED == "21610"
