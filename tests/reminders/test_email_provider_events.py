"""A spam complaint or an unsubscribe the e-mail provider reports turns the patient's e-mails off.

docs/reminders.md, "E-mail provider events": each provider's event webhook (anymail's, at
/reminders/email/<provider>/tracking/), answered only where ANYMAIL_WEBHOOK_SECRET is set and checked against it.
"""

import base64
import json

import pytest
from django.utils import timezone

from reminders.consent import patient_accepts
from reminders.models import ContactOptOut, OptOutVia
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

URL = "/reminders/email/postmark/tracking/"
SECRET = "postmark:hook-secret"


@pytest.fixture
def webhook_secret(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": SECRET}


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
        "TypeCode": 512,
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
    ],
    ids=["delivered", "opened", "bounced", "no-recipient"],
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


def test_without_a_webhook_secret_the_webhook_is_not_there(client, settings, patient):
    """anymail alone would take events from anyone (it only warns): anyone could switch a patient's e-mails off."""
    settings.ANYMAIL = {key: value for key, value in settings.ANYMAIL.items() if key != "WEBHOOK_SECRET"}

    assert postmark(client, complaint("ada@example.com")).status_code == 404
    assert email_on(patient)


@pytest.mark.parametrize(
    "body",
    [b"not json", b'"a string"', b"[1, 2]", json.dumps({"FromFull": {"Email": "x@example.com"}}).encode()],
    ids=["not-json", "a-string", "numbers", "inbound-mail"],
)
def test_an_event_that_cannot_be_read_is_a_400(client, webhook_secret, patient, body):
    response = postmark(client, {}, body=body)

    assert response.status_code == 400, response.content
    assert email_on(patient)
