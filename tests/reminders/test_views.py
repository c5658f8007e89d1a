"""Opting out: the signed unsubscribe link (and RFC 8058 one-click) and inbound SMS STOP."""

import base64
import hashlib
import hmac

import pytest
from django.core import signing

from clinic.models import Patient
from reminders.consent import UNSUBSCRIBE_SALT, is_stop_reply, sender_patients, unsubscribe_token, unsubscribe_url
from reminders.models import ContactOptOut
from tests.factories import PatientFactory


@pytest.fixture
def link(patient) -> str:
    return unsubscribe_url(patient_id=patient.pk).removeprefix("https://clinic.example")


def test_opening_the_link_only_asks(client, patient, link):
    response = client.get(link)

    assert response.status_code == 200
    assert b"Stop e-mails from Bloom Clinic?" in response.content
    patient.refresh_from_db()
    assert "email" in patient.reminder_channels  # a link scanner fetching it unsubscribes nobody


def test_confirming_unsubscribes_from_email_and_records_it(client, patient, link):
    response = client.post(link)

    assert response.status_code == 200
    assert b"You are unsubscribed" in response.content
    patient.refresh_from_db()
    assert patient.reminder_channels == ["sms"]
    [opt_out] = ContactOptOut.objects.all()
    assert (opt_out.patient, opt_out.channel, opt_out.via) == (patient, "email", "email_link")
    client.post(link)  # twice is harmless
    assert ContactOptOut.objects.count() == 1


def test_mail_clients_one_click_post_works_without_a_session_or_csrf_token(patient, link):
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post(link, {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert ContactOptOut.objects.get().via == "list_unsubscribe"


def test_a_forged_or_damaged_link_is_a_clear_400(client, patient, link):
    forged = signing.dumps({"p": str(patient.pk), "c": "email"}, salt="another-salt")
    for bad in (link[:-6] + "xxxxx/", f"/reminders/unsubscribe/{forged}/"):
        response = client.post(bad)
        assert response.status_code == 400
        assert b"This unsubscribe link is not valid." in response.content
    patient.refresh_from_db()
    assert "email" in patient.reminder_channels


def test_a_link_for_a_patient_who_no_longer_exists_is_a_400(client, db):
    token = unsubscribe_token(patient_id="00000000-0000-0000-0000-000000000000")
    response = client.get(f"/reminders/unsubscribe/{token}/")
    assert response.status_code == 400
    assert b"no longer matches a patient record" in response.content
    assert signing.loads(token, salt=UNSUBSCRIBE_SALT)["c"] == "email"


@pytest.mark.parametrize(
    "payload",
    [
        ["a list"],
        42,
        "a string",
        None,
        {},
        {"p": "00000000-0000-0000-0000-000000000000"},
        {"c": "email"},
        {"p": "not-a-uuid", "c": "email"},
        {"p": 7, "c": "email"},
        {"p": ["x"], "c": "email"},
        {"p": {"x": 1}, "c": "email"},
        {"p": "a\x00b", "c": "email"},
        {"p": None, "c": "email"},
        {"c": "fax", "p": "00000000-0000-0000-0000-000000000000"},
        {"c": ["email"], "p": "x"},
        {"c": 1, "p": "x"},
    ],
    ids=repr,
)
def test_a_correctly_signed_link_with_an_odd_payload_is_a_clear_400_not_a_500(client, patient, payload):
    # Only the server can sign, but a payload of the wrong shape (an old format, a bug) must not crash the page.
    token = signing.dumps(payload, salt=UNSUBSCRIBE_SALT, compress=True)
    for method in (client.get, client.post):
        response = method(f"/reminders/unsubscribe/{token}/")
        assert response.status_code == 400
        assert b"This unsubscribe link" in response.content
    patient.refresh_from_db()
    assert patient.reminder_channels == ["email", "sms"]


def test_a_signed_link_for_a_real_patient_with_an_unknown_channel_changes_nothing(client, patient):
    token = signing.dumps({"p": str(patient.pk), "c": "fax"}, salt=UNSUBSCRIBE_SALT, compress=True)
    response = client.post(f"/reminders/unsubscribe/{token}/")
    assert response.status_code == 400
    patient.refresh_from_db()
    assert patient.reminder_channels == ["email", "sms"]
    assert not ContactOptOut.objects.exists()


# --- Inbound SMS ------------------------------------------------------------------------------------------------


def test_a_stop_reply_opts_every_patient_with_that_number_out(client, settings, patient, clinic):
    settings.SMS_INBOUND_TOKEN = "inbound-secret"
    same_phone = Patient.objects.create(
        clinic=clinic,
        first_name="Bea",
        last_name="Lee",
        phone=patient.phone,
        reminder_channels=["sms"],
        sms_consent=True,
    )

    response = client.post("/reminders/sms/inbound/?token=inbound-secret", {"From": patient.phone, "Body": " Stop "})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/xml"
    for person in (patient, same_phone):
        person.refresh_from_db()
        assert ("sms" in person.reminder_channels, person.sms_consent) == (False, False)
    assert ContactOptOut.objects.filter(channel="sms", via="sms_stop").count() == 2


def test_other_replies_change_nothing(client, settings, patient):
    settings.SMS_INBOUND_TOKEN = "inbound-secret"
    response = client.post("/reminders/sms/inbound/?token=inbound-secret", {"From": patient.phone, "Body": "Thanks"})
    assert response.status_code == 200
    patient.refresh_from_db()
    assert patient.sms_consent is True


def test_inbound_sms_without_the_token_is_refused(client, settings, patient):
    settings.SMS_INBOUND_TOKEN = "inbound-secret"
    assert (
        client.post("/reminders/sms/inbound/?token=wrong", {"From": patient.phone, "Body": "STOP"}).status_code == 403
    )
    settings.SMS_INBOUND_TOKEN = ""  # unset: nothing is accepted
    assert client.post("/reminders/sms/inbound/", {"From": patient.phone, "Body": "STOP"}).status_code == 403
    patient.refresh_from_db()
    assert patient.sms_consent is True


def test_inbound_sms_needs_a_sender_and_a_post(client, settings, db):
    settings.SMS_INBOUND_TOKEN = "t"
    response = client.post("/reminders/sms/inbound/?token=t", {"Body": "STOP"})
    assert (response.status_code, response.content) == (400, b"From is required.")
    assert client.get("/reminders/sms/inbound/?token=t").status_code == 405


@pytest.mark.parametrize("sender", ["%00", "%2B44%007700900123", "+44 7700 900123\x01"], ids=repr)
def test_an_inbound_sms_from_a_sender_with_control_characters_is_a_400_not_a_500(client, settings, patient, sender):
    # NUL bytes cannot reach PostgreSQL (it refuses them in text), so they are refused here first.
    settings.SMS_INBOUND_TOKEN = "t"
    response = client.post(
        "/reminders/sms/inbound/?token=t", f"From={sender}&Body=STOP", content_type="application/x-www-form-urlencoded"
    )
    assert (response.status_code, response["Content-Type"]) == (400, "text/plain")
    assert response.content == b"From must be a phone number."
    patient.refresh_from_db()
    assert patient.sms_consent is True


def test_an_inbound_sms_with_a_nul_in_its_body_is_read_as_text_not_a_500(client, settings, patient):
    settings.SMS_INBOUND_TOKEN = "t"
    response = client.post(
        "/reminders/sms/inbound/?token=t",
        "From=%2B447700900123&Body=ST%00OP",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200  # not a STOP word: nothing changes
    patient.refresh_from_db()
    assert patient.sms_consent is True


def test_twilio_inbound_requests_are_checked_by_their_signature(client, settings, patient):
    settings.SMS_BACKEND = "reminders.channels.TwilioSmsBackend"
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.SMS_FROM = "AC1", "auth-token", "+447700900999"
    params = {"From": patient.phone, "Body": "STOP", "To": "+447700900999"}
    url = "http://testserver/reminders/sms/inbound/"
    # Twilio's scheme: HMAC-SHA1 over the URL and the sorted POST parameters, base64
    signed = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    signature = base64.b64encode(hmac.new(b"auth-token", signed.encode(), hashlib.sha1).digest()).decode()

    assert client.post(url, params, HTTP_X_TWILIO_SIGNATURE="bm90IGl0").status_code == 403
    patient.refresh_from_db()
    assert patient.sms_consent is True
    assert client.post(url, params, HTTP_X_TWILIO_SIGNATURE=signature).status_code == 200
    patient.refresh_from_db()
    assert patient.sms_consent is False


def test_behind_a_proxy_the_signature_is_checked_against_the_public_url(client, settings, patient):
    settings.SMS_BACKEND = "reminders.channels.TwilioSmsBackend"
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.SMS_FROM = "AC1", "auth-token", "+447700900999"
    settings.SMS_INBOUND_URL = "https://clinic.example/reminders/sms/inbound/"
    params = {"From": patient.phone, "Body": "STOP"}
    signed = settings.SMS_INBOUND_URL + "".join(f"{k}{params[k]}" for k in sorted(params))
    signature = base64.b64encode(hmac.new(b"auth-token", signed.encode(), hashlib.sha1).digest()).decode()

    assert client.post("/reminders/sms/inbound/", params, HTTP_X_TWILIO_SIGNATURE=signature).status_code == 200
    patient.refresh_from_db()
    assert patient.sms_consent is False


@pytest.mark.parametrize(
    ("body", "stops"),
    [
        ("STOP", True),
        ("stop all", True),
        ("Stop please", True),
        ("STOP .", True),
        ("(Stop)", True),
        ("opt out", True),
        ("Unsubscribe me", True),
        ("end.", True),
        ("Cancel", True),
        ("Cancel my appointment", False),  # about a visit, not about texts
        ("End of story", False),
        ("Don't stop", False),
        ("STOPPED", False),
        ("ST\x00OP", False),
        ("START", False),
        ("", False),
    ],
    ids=repr,
)
def test_which_replies_read_as_stop(body, stops):
    assert is_stop_reply(body) is stops


MOBILE = "+447911123456"  # a valid GB mobile (the conftest's drama number has no valid national form)


@pytest.mark.parametrize(
    "sender", ["+447911123456", "447911123456", "00447911123456", "+44 (0)7911 123456", "07911 123456"]
)
def test_a_stop_reaches_the_patient_however_the_provider_writes_the_number(client, settings, patient, sender):
    settings.SMS_INBOUND_TOKEN = "t"
    Patient.objects.filter(pk=patient.pk).update(phone=MOBILE)
    assert client.post("/reminders/sms/inbound/?token=t", {"From": sender, "Body": "STOP"}).status_code == 200
    patient.refresh_from_db()
    assert (patient.sms_consent, patient.reminder_channels) == (False, ["email"])
    assert ContactOptOut.objects.get().detail == f"reply from {sender}"


def test_a_national_sender_is_read_in_the_countries_that_have_clinics_only(patient, clinic):
    # GB has a clinic: "07911 123456" is the patient's +447911123456. A number stored as given (not E.164) still
    # matches exactly; a national form read in a country with no clinic matches nothing.
    Patient.objects.filter(pk=patient.pk).update(phone=MOBILE)
    oddly_stored = PatientFactory(clinic=clinic, phone="07700 900999", sms_consent=True, reminder_channels=["sms"])
    assert list(sender_patients("07911 123456")) == [patient]
    assert list(sender_patients("07700 900999")) == [oddly_stored]
    assert list(sender_patients("0612345678")) == []  # a Dutch mobile's national form: no clinic in NL
    assert list(sender_patients("not a number")) == []
