"""A spam complaint or an unsubscribe the e-mail provider reports turns the patient's e-mails off; a bounce or a
refusal of an e-mail sent from here marks it failed.

docs/reminders.md, "E-mail provider events": each provider's event webhook (anymail's, at
/reminders/email/<provider>/tracking/), answered only where ANYMAIL_WEBHOOK_SECRET is set and checked against it.
"""

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from django.utils import timezone

from reminders import consent
from reminders.consent import patient_accepts
from reminders.dispatch import SendOutcome, dispatch_local
from reminders.models import ContactOptIn, ContactOptOut, OptOutVia, OutboxMessage
from reminders.services import outbox_retry
from tests.factories import PatientFactory
from tests.reminders.conftest import book, london

pytestmark = pytest.mark.django_db

URL = "/reminders/email/postmark/tracking/"
SECRET = "postmark:hook-secret"


@pytest.fixture
def webhook_secret(settings):
    """Postmark sends the clinics' e-mail, and its event webhook carries the secret."""
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": SECRET}
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"


def postmark(client, event: dict, *, auth: str = SECRET, body: bytes | None = None):
    return client.post(
        URL,
        body if body is not None else json.dumps(event),
        content_type="application/json",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(auth.encode()).decode(),
    )


def complaint(email: str) -> dict:
    return {
        "RecordType": "SpamComplaint",
        "Type": "SpamComplaint",
        "ID": 42,
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Email": email,
        "BouncedAt": "2026-03-02T09:00:00Z",
        "Metadata": {},
    }


def email_on(patient) -> bool:
    patient.refresh_from_db()
    return patient_accepts(patient, "email")[0]


def test_a_spam_complaint_turns_e_mail_off_for_that_address_only(client, webhook_secret, patient):
    same_mailbox = PatientFactory(clinic=patient.clinic, email="ADA@example.com", reminder_channels=["email"])
    elsewhere = PatientFactory(clinic=patient.clinic, email="bo@example.com", reminder_channels=["email"])

    response = postmark(client, complaint("ada@example.com"))

    assert response.status_code == 200
    assert not email_on(patient) and not email_on(same_mailbox) and email_on(elsewhere)
    assert patient.sms_consent and "sms" in patient.reminder_channels  # texts are another channel
    [opt_out] = ContactOptOut.objects.filter(patient=patient)
    assert (opt_out.channel, opt_out.via, opt_out.detail) == ("email", OptOutVia.EMAIL_PROVIDER, "Postmark: complained")
    assert ContactOptOut.objects.filter(patient=same_mailbox).count() == 1
    assert not ContactOptOut.objects.filter(patient=elsewhere).exists()

    assert postmark(client, complaint("ada@example.com")).status_code == 200  # the provider's retry
    assert ContactOptOut.objects.filter(patient=patient).count() == 1


def test_an_unsubscribe_at_the_provider_turns_e_mail_off(client, webhook_secret, patient):
    event = {
        "RecordType": "SubscriptionChange",
        "Recipient": "ada@example.com",
        "SuppressSending": True,
        "SuppressionReason": "ManualSuppression",
        "ChangedAt": "2026-03-02T09:00:00Z",
        "MessageID": "a8c3c5a2",
    }

    assert postmark(client, event).status_code == 200

    assert not email_on(patient)
    assert ContactOptOut.objects.get(patient=patient).detail == "Postmark: unsubscribed"


@pytest.mark.parametrize(
    "event",
    [
        {"RecordType": "Delivery", "Recipient": "ada@example.com", "DeliveredAt": "2026-03-02T09:00:00Z"},
        {"RecordType": "Open", "Recipient": "ada@example.com", "ReceivedAt": "2026-03-02T09:00:00Z"},
        {"RecordType": "Bounce", "Type": "HardBounce", "Email": "ada@example.com", "BouncedAt": "2026-03-02T09:00Z"},
        {"RecordType": "SpamComplaint", "Type": "SpamComplaint", "BouncedAt": "2026-03-02T09:00:00Z"},  # no address
        {**complaint("ada@example.com"), "Email": 5},  # not an address
        # A receiving server's spam filter, not the patient (anymail calls it a complaint).
        {"RecordType": "Bounce", "Type": "SpamNotification", "Email": "ada@example.com", "BouncedAt": "2026-03-02"},
    ],
    ids=["delivered", "opened", "bounced", "no-recipient", "not-an-address", "spam-filter"],
)
def test_other_events_change_nothing(client, webhook_secret, patient, event):
    assert postmark(client, event).status_code == 200
    assert email_on(patient) and not ContactOptOut.objects.exists()


def test_a_merged_away_record_is_not_changed(client, webhook_secret, patient):
    old = PatientFactory(clinic=patient.clinic, email="ada@example.com", reminder_channels=["email"])
    old.merged_into, old.merged_at = patient, timezone.now()
    old.save(update_fields=["merged_into", "merged_at"])

    postmark(client, complaint("ada@example.com"))

    assert not ContactOptOut.objects.filter(patient=old).exists() and not email_on(patient)


def test_a_wrong_secret_is_refused_and_changes_nothing(client, webhook_secret, patient):
    response = postmark(client, complaint("ada@example.com"), auth="postmark:guess")

    assert response.status_code == 400
    assert email_on(patient) and not ContactOptOut.objects.exists()


def test_a_complaint_from_before_the_patient_switched_e_mail_back_on_is_not_undone(client, webhook_secret, patient):
    """Providers send an event again for hours: a complaint of 09:00 heard after an opt-in of 10:00 changes nothing."""
    ContactOptIn.objects.create(
        patient=patient, channel="email", via="desk", at=datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    )

    assert postmark(client, complaint("ada@example.com")).status_code == 200

    assert email_on(patient) and not ContactOptOut.objects.exists()


def test_a_complaint_not_recorded_is_a_503_so_the_provider_sends_it_again(client, webhook_secret, patient, monkeypatch):
    def database_gone(**kwargs):
        raise ValueError("connection lost")  # the kind the parser's guard turns into a 400

    monkeypatch.setattr(consent, "email_provider_stopped", database_gone)

    assert postmark(client, complaint("ada@example.com")).status_code == 503


def mailgun_complaint(client):
    body = {"signature": {"timestamp": "1", "token": "t", "signature": "s"}, "event-data": {"event": "complained"}}
    return client.post(
        "/reminders/email/mailgun/tracking/",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(SECRET.encode()).decode(),
    )


def test_only_the_provider_that_sends_the_e_mail_has_a_webhook(client, webhook_secret, patient):
    assert mailgun_complaint(client).status_code == 404 and email_on(patient)


def test_a_provider_set_up_wrongly_here_is_a_503(client, webhook_secret, settings, patient):
    """Mailgun checks its own signing key too: without it every event is refused, loudly, and sent again later."""
    settings.EMAIL_BACKEND = "anymail.backends.mailgun.EmailBackend"

    assert mailgun_complaint(client).status_code == 503 and email_on(patient)


def test_the_providers_inbound_mail_pointed_here_is_a_503(client, webhook_secret, patient):
    """A setup mistake (Postmark's inbound webhook set to this URL): said loudly, and the provider keeps it."""
    response = postmark(client, {"FromFull": {"Email": "ada@example.com"}, "Subject": "Re: your visit"})

    assert response.status_code == 503 and email_on(patient)


def test_without_a_webhook_secret_the_webhook_is_not_there(client, settings, patient):
    """anymail alone would take events from anyone (it only warns): anyone could switch a patient's e-mails off."""
    settings.ANYMAIL = {key: value for key, value in settings.ANYMAIL.items() if key != "WEBHOOK_SECRET"}

    assert postmark(client, complaint("ada@example.com")).status_code == 404
    assert email_on(patient)


@pytest.mark.parametrize(
    "body",
    [b"not json", b'"a string"', b"[1, 2]", b"[]"],
    ids=["not-json", "a-string", "numbers", "empty-list"],
)
def test_an_event_that_cannot_be_read_is_a_400(client, webhook_secret, patient, body):
    response = postmark(client, {}, body=body)

    assert response.status_code == 400, response.content
    assert email_on(patient)


# --- A bounce or refusal of an e-mail sent from here --------------------------------------------------------------

POSTMARK_ID = "0a129aee-e1cd-480d-b08d-4f48548ff48d"


@pytest.fixture
def sent_email(webhook_secret, settings, patient, practitioner, now):
    """The booking's confirmation e-mail, sent, under the id Postmark gave it (anymail's `message_id`, which
    send_email returns; the test sends through Django's in-memory backend and stores that id as Postmark's)."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    appointment = book(patient, "microneedling", london(2026, 3, 4, 10), now)
    assert dispatch_local(now=now).get(SendOutcome.SENT) == 2  # the e-mail and the text
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    email = OutboxMessage.objects.get(appointment=appointment, channel="email", kind="confirmation")
    OutboxMessage.objects.filter(pk=email.pk).update(provider_id=POSTMARK_ID)
    text = OutboxMessage.objects.get(appointment=appointment, channel="sms", kind="confirmation")
    OutboxMessage.objects.filter(pk=text.pk).update(provider_id=POSTMARK_ID)  # another channel's id, by chance
    return email


def bounce(kind: str, message_id: str = POSTMARK_ID) -> dict:
    return {
        "RecordType": "Bounce",
        "Type": kind,
        "ID": 4323372036854775807,
        "MessageID": message_id,
        "Email": "ada@example.com",
        "BouncedAt": "2026-03-02T09:05:00Z",
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Inactive": True,
        "CanActivate": True,
        "Metadata": {},
    }


@pytest.mark.parametrize(("kind", "reported"), [("HardBounce", "bounced"), ("BadEmailAddress", "rejected")])
def test_an_e_mail_that_bounced_or_was_refused_is_failed_and_consent_stays(
    client, sent_email, patient, now, kind, reported
):
    assert postmark(client, bounce(kind)).status_code == 200

    sent_email.refresh_from_db()
    assert sent_email.status == "failed"
    assert sent_email.last_error.startswith(
        f"Postmark reported the e-mail {reported} (The server was unable to deliver your message"
    )
    assert "after it was sent" in sent_email.last_error
    assert email_on(patient) and not ContactOptOut.objects.exists()  # a bounce is not the patient's choice
    text = OutboxMessage.objects.get(appointment=sent_email.appointment, channel="sms", kind="confirmation")
    assert text.status == "sent"  # the same id on a text is another message

    assert postmark(client, bounce(kind)).status_code == 200  # heard again: nothing more
    assert outbox_retry(message_ids=[sent_email.pk], now=now) == 1  # and an operator can send it again


@pytest.mark.parametrize(
    "event",
    [bounce("Transient"), bounce("SoftBounce", message_id="another-message"), bounce("HardBounce", message_id="")],
    ids=["deferred", "another-message", "no-id"],
)
def test_a_delay_or_a_bounce_of_another_message_changes_nothing(client, sent_email, event):
    assert postmark(client, event).status_code == 200
    sent_email.refresh_from_db()
    assert (sent_email.status, sent_email.last_error) == ("sent", "")


def test_mailguns_permanent_failure_of_an_e_mail_sent_from_here_is_failed(client, sent_email, settings):
    """Mailgun's event names the message by its Message-ID header without brackets; anymail adds them, as in the
    id its send returned (what send_email stored), so the two meet."""
    settings.EMAIL_BACKEND = "anymail.backends.mailgun.EmailBackend"
    settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_WEBHOOK_SIGNING_KEY": "mailgun-signing-key"}
    mailgun_id = "20260302090000.1.ABCDEF@mg.clinic.example"
    OutboxMessage.objects.filter(pk=sent_email.pk).update(provider_id=f"<{mailgun_id}>")
    timestamp, token = "1772442000", "a" * 50
    signature = hmac.new(b"mailgun-signing-key", (timestamp + token).encode(), hashlib.sha256).hexdigest()
    event = {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": {
            "event": "failed",
            "severity": "permanent",
            "reason": "bounce",
            "id": "mg-event-1",
            "timestamp": 1772442000.0,
            "recipient": "ada@example.com",
            "message": {"headers": {"message-id": mailgun_id}},
            "delivery-status": {"code": 550, "message": "5.1.1 No such mailbox", "description": "Not delivered"},
        },
    }
    response = client.post(
        "/reminders/email/mailgun/tracking/",
        json.dumps(event),
        content_type="application/json",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(SECRET.encode()).decode(),
    )
    assert response.status_code == 200
    sent_email.refresh_from_db()
    assert sent_email.status == "failed"
    assert sent_email.last_error.startswith(
        "Mailgun reported the e-mail bounced (Not delivered — 5.1.1 No such mailbox) after it was sent"
    )


def test_postmarks_words_and_the_receiving_servers_reply_are_both_kept(client, sent_email):
    assert postmark(client, bounce("HardBounce")).status_code == 200
    sent_email.refresh_from_db()
    assert "mailbox not found). — smtp;550 5.1.1 The email account that you tried to reach does not exist." in (
        sent_email.last_error
    )
