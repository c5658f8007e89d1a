"""How a patient stops (and restarts) messages: an outside probe of the opt-out paths.

Promises under test (quoted in each test):

- docs/reminders.md, "Inbound SMS": "Point the provider's inbound webhook at `POST /reminders/sms/inbound/`.
  With Twilio the `X-Twilio-Signature` is verified ...; otherwise the URL must carry
  `?token=$SMS_INBOUND_TOKEN`. A reply of STOP (or STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, OPTOUT, REVOKE) turns
  SMS off for every patient with that number."
- docs/reminders.md, "Unsubscribe": "Every e-mail has a signed link ... in its footer and in `List-Unsubscribe`
  with `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058): mail clients unsubscribe with one POST.
  Opening the link shows a one-button page; a GET alone changes nothing ... A forged or damaged link gets a 400
  page. Links do not expire ... Opt-outs are recorded (`ContactOptOut`) and take effect for messages already
  planned: the send step checks consent again."
- docs/reminders.md: "consent is checked again when sending (an opt-out in between marks the row `skipped`)";
  `reminders.consent.patient_opt_out`: "the send step re-checks consent and skips them, so an opt-out and a send
  racing each other cannot both win."
- docs/portal.md, "Messages from us": "E-mail or SMS off | ... | ContactOptOut, via patient_page"; "SMS back on |
  only with the consent box ticked; sets sms_consent | ContactOptIn with the wording ticked"; "a channel or kind
  switched (back) on plans the reminders and care instructions of the patient's coming appointments".
- /work/shared/domain.md: "Patients receive confirmations and care reminders by email and/or SMS, per their
  consent, and can opt out." docs/organisations.md: consent and opt-outs belong to the organisation.

The clock is the shared test clock (Monday 2 March 2026, 09:00 London) unless a test travels. Texts are read from
the in-memory SMS backend, e-mail from Django's locmem outbox, sent by the real dispatcher.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core import mail, signing
from django.db import connection
from django.test import Client
from django.urls import reverse

from clinic.models import Patient, StaffMembership, StaffRole
from clinic.record_changes import ChangedBy
from clinic.services import patient_update
from reminders import consent
from reminders.channels import LocmemSmsBackend
from reminders.consent import UNSUBSCRIBE_SALT, unsubscribe_token, unsubscribe_url
from reminders.dispatch import dispatch_local, outbox_claim_due, outbox_send_batch
from reminders.links import manage_token
from reminders.models import ContactOptIn, ContactOptOut, MessageKind, OutboxMessage, OutboxStatus
from scheduler.booking import Actor, appointment_book
from tests import shipped
from tests.factories import ClinicFactory, OrganisationFactory, PatientFactory, PractitionerFactory

LONDON = ZoneInfo("Europe/London")
RECEPTION = Actor("reception@qa-optout")
CLOCK = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TOKEN = "qa-optout-inbound-secret"
MOBILE = "+447911123456"  # a valid GB mobile (the desk's own example, docs/organisations.md)
INBOUND = "/reminders/sms/inbound/"


def london(y, m, d, hh=10, mm=0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=LONDON)


def book(patient, when, now=CLOCK, code="microneedling"):
    return appointment_book(patient=patient, procedure_code=code, start_at=when, actor=RECEPTION, now=now).appointment


def reload(patient) -> Patient:
    return Patient.objects.get(pk=patient.pk)


def sms_on(patient) -> bool:
    current = reload(patient)
    return "sms" in (current.reminder_channels or []) and current.sms_consent


def email_on(patient) -> bool:
    return "email" in (reload(patient).reminder_channels or [])


def reply(client, body: str, sender: str = MOBILE, *, token: str | None = TOKEN, **extra):
    url = INBOUND + (f"?token={token}" if token is not None else "")
    return client.post(url, {"From": sender, "Body": body, **extra})


def texts() -> list[dict]:
    return list(LocmemSmsBackend.outbox)


def sms_rows(appointment, **filters) -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(appointment=appointment, channel="sms", **filters).order_by("due_at"))


def unsubscribe_path(patient, channel="email") -> str:
    return reverse("reminders:unsubscribe", kwargs={"token": unsubscribe_token(patient_id=patient.pk, channel=channel)})


@pytest.fixture(autouse=True)
def _backends(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SMS_BACKEND = "reminders.channels.LocmemSmsBackend"
    settings.REMINDERS_PUBLIC_BASE_URL = "https://clinic.example"
    settings.SMS_INBOUND_TOKEN = TOKEN
    settings.SMS_INBOUND_URL = ""
    LocmemSmsBackend.outbox = []
    yield
    LocmemSmsBackend.outbox = []


@pytest.fixture
def frozen():
    with time_machine.travel(CLOCK, tick=False):
        yield CLOCK


@pytest.fixture
def care_texts(catalogue):
    shipped.care_texts()


@pytest.fixture
def clinic(care_texts):
    return ClinicFactory(code="qa-optout", name="Bloom Clinic", timezone="Europe/London", phone="+442079460958")


@pytest.fixture
def practitioner(clinic):
    return PractitionerFactory(clinic=clinic, name="Dr Amelia Hart")


def consenting(clinic, first_name: str, phone: str = MOBILE, **kwargs) -> Patient:
    return PatientFactory(
        clinic=clinic,
        first_name=first_name,
        email=f"{first_name.lower()}@example.com",
        phone=phone,
        reminder_channels=["email", "sms"],
        sms_consent=True,
        **kwargs,
    )


@pytest.fixture
def patient(clinic):
    return consenting(clinic, "Olivia")


# --- STOP words ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "STOP",
        "stop",
        "Stop.",
        "  STOP  ",
        "STOP\n",
        "Stop!",
        "STOPALL",
        "StopAll",
        "UNSUBSCRIBE",
        "unsubscribe",
        "Cancel",
        "END",
        "end.",
        "Quit",
        "OPTOUT",
        "optout",
        "REVOKE",
        "\tRevoke ",
    ],
    ids=repr,
)
def test_every_stop_word_the_docs_name_turns_texts_off_and_is_recorded(client, patient, frozen, body):
    """docs/reminders.md: "A reply of STOP (or STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, OPTOUT, REVOKE) turns SMS
    off"; opt-outs are recorded (`ContactOptOut`). Case, surrounding spaces and a closing full stop are how
    people type it."""
    response = reply(client, body)

    assert response.status_code == 200
    assert not sms_on(patient)
    assert email_on(patient)  # a STOP by text is about texts only
    (row,) = ContactOptOut.objects.filter(patient=patient)
    assert (row.channel, row.via, row.at) == ("sms", "sms_stop", CLOCK)


@pytest.mark.parametrize("body", ["stop all", "Stop please", "STOP ."], ids=repr)
def test_a_stop_with_a_word_or_spaced_punctuation_is_still_a_stop(client, patient, frozen, body):
    """docs/reminders.md: "A reply of STOP ... turns SMS off". Carriers' guidance (CTIA) asks that opt-out
    requests in plain variations be honoured; these read unambiguously as STOP. Failed before (only an exact
    keyword, with a '.' or '!' glued on, counted); consent.is_stop_reply now reads the letters only: a STOP word
    as the whole reply, run together, or STOP/UNSUBSCRIBE/OPTOUT as its first word."""
    assert reply(client, body).status_code == 200
    assert not sms_on(patient)


@pytest.mark.parametrize(
    "body", ["START", "UNSTOP", "YES", "HELP", "Thanks, see you then", "Don't stop", "", "STOPPED"], ids=repr
)
def test_other_replies_change_nothing_and_record_nothing(client, patient, frozen, body):
    """Only the STOP words opt out; HELP and chatter neither opt out nor opt in, and START or UNSTOP while texts
    are on change nothing (docs/reminders.md: START undoes the patient's own opt-out only)."""
    assert reply(client, body).status_code == 200
    assert sms_on(patient)
    assert not ContactOptOut.objects.exists() and not ContactOptIn.objects.exists()


def test_start_after_stop_switches_texts_back_on_and_yes_does_not(client, patient, frozen):
    """docs/reminders.md, "Inbound SMS": START or UNSTOP (the replies the provider lifts its own block on) undo the
    patient's own STOP, recorded as a ContactOptIn via `sms_start` with the reply and its sender; YES does not (it
    answers many a question). This probe first read docs/portal.md's "only with the consent box ticked" as
    forbidding it: a patient who replied START got the provider's "you are re-subscribed" and then no texts."""
    assert reply(client, "STOP").status_code == 200
    assert reply(client, "Yes").status_code == 200
    assert not sms_on(patient) and not ContactOptIn.objects.exists()
    assert reply(client, "start.").status_code == 200
    assert sms_on(patient)
    [opt_in] = ContactOptIn.objects.all()
    assert (opt_in.channel, opt_in.via, opt_in.wording) == ("sms", "sms_start", "start.")
    assert MOBILE in opt_in.detail
    assert ContactOptOut.objects.count() == 1


# --- Which patients a STOP reaches -------------------------------------------------------------------------------


@pytest.mark.parametrize("sender", ["447911123456", "00447911123456", "+44 7911 123456", "+44 (0)7911 123456"])
def test_a_stop_from_the_same_number_written_another_way_reaches_the_patient(client, patient, frozen, sender):
    """docs/reminders.md: a STOP "turns SMS off for every patient with that number". The number is stored in
    E.164; providers other than Twilio (the `?token=` path exists for them) send the sender without the '+'
    (e.g. Vonage's msisdn "447911123456"), with 00, or formatted. It is the same number. Failed before (exact
    string match on Patient.phone); consent.sender_patients now matches the sender read as E.164 too."""
    assert reply(client, "STOP", sender=sender).status_code == 200
    assert not sms_on(patient)


def test_a_stop_from_the_national_form_of_the_number_reaches_the_patient(client, patient, frozen):
    """docs/organisations.md: "the same number in E.164 (the desk's "07911 123456" at a GB clinic is
    +447911123456)"; docs/reminders.md: STOP reaches "every patient with that number". Failed before; now a
    national sender is read in the countries that have clinics (consent.sender_patients)."""
    assert reply(client, "STOP", sender="07911 123456").status_code == 200
    assert not sms_on(patient)


def test_a_family_sharing_one_mobile_is_stopped_together_and_others_are_not(client, clinic, patient, frozen):
    """docs/reminders.md: STOP "turns SMS off for every patient with that number": a parent and child on one
    mobile both stop, each with their own record; another number, and a record merged away, are left alone."""
    child = consenting(clinic, "Mia")
    neighbour = consenting(clinic, "Nora", phone="+447911654321")
    tombstone = consenting(clinic, "Olly")
    Patient.objects.filter(pk=tombstone.pk).update(merged_into=patient, merged_at=CLOCK)

    assert reply(client, "Stop").status_code == 200

    assert (sms_on(patient), sms_on(child), sms_on(neighbour)) == (False, False, True)
    assert reload(tombstone).sms_consent is True  # a tombstone is never changed
    assert sorted(ContactOptOut.objects.values_list("patient__first_name", "via", "channel")) == [
        ("Mia", "sms_stop", "sms"),
        ("Olivia", "sms_stop", "sms"),
    ]


def test_a_stop_reaches_the_same_number_in_another_organisation_as_documented(client, patient, care_texts, frozen):
    """docs/reminders.md: "turns SMS off for every patient with that number": every organisation's texts come
    from the one sender (SMS_FROM / TWILIO_MESSAGING_SERVICE_SID), whose carrier block a STOP sets for all of
    them, so the patient's record at another organisation stops too (recorded there as well)."""
    other_org = ClinicFactory(code="qa-optout-ny", name="Gotham Skin", organisation=OrganisationFactory(code="qa-oo"))
    elsewhere = consenting(other_org, "Olivia2")
    assert elsewhere.organisation_id != patient.organisation_id

    assert reply(client, "STOP").status_code == 200

    assert (sms_on(patient), sms_on(elsewhere)) == (False, False)
    assert ContactOptOut.objects.filter(patient=elsewhere, via="sms_stop").count() == 1


def test_a_stop_from_a_number_nobody_has_is_accepted_and_changes_nothing(client, patient, frozen):
    """The provider gets its 200 (it retries otherwise); no patient and no record are touched."""
    response = reply(client, "STOP", sender="+447911000000")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/xml"
    assert sms_on(patient)
    assert not ContactOptOut.objects.exists()


def test_the_same_stop_delivered_twice_is_recorded_once(client, patient, frozen):
    """A provider retries a webhook it did not see answered: the second delivery (same MessageSid) is a no-op."""
    extra = {"MessageSid": "SM0123456789abcdef0123456789abcdef"}
    first = reply(client, "STOP", **extra)
    second = reply(client, "STOP", **extra)
    assert (first.status_code, second.status_code) == (200, 200)
    assert ContactOptOut.objects.filter(patient=patient).count() == 1
    assert not sms_on(patient)


def test_a_huge_body_is_refused_cleanly_and_changes_nothing(client, patient, frozen):
    """Never a 500 (the view's docstring: "Bad input gets a clear 400/403 page, never a 500"): a body far over
    the upload limit is a 400, and a long text that is not STOP is read and ignored."""
    huge = client.post(f"{INBOUND}?token={TOKEN}", {"From": MOBILE, "Body": "STOP " + "x" * 400_000})
    assert huge.status_code == 400
    long_text = reply(client, "please " * 300)  # 2,100 characters: more than a provider's 1,600
    assert long_text.status_code == 200
    padded_stop = reply(client, "STOP" + " " * 5000)
    assert padded_stop.status_code == 200
    assert ContactOptOut.objects.filter(patient=patient).count() == 1  # only the padded STOP


# --- Authentication of the inbound endpoint --------------------------------------------------------------------


@pytest.mark.parametrize(
    "how",
    ["no token", "wrong token", "token in the body", "token with a suffix", "empty token", "token as a header"],
)
def test_an_inbound_stop_without_the_right_token_is_403_and_changes_nothing(client, patient, frozen, how):
    """docs/reminders.md: "otherwise the URL must carry `?token=$SMS_INBOUND_TOKEN`"."""
    if how == "no token":
        response = reply(client, "STOP", token=None)
    elif how == "wrong token":
        response = reply(client, "STOP", token="qa-optout-inbound-secreT")
    elif how == "token in the body":
        response = client.post(INBOUND, {"From": MOBILE, "Body": "STOP", "token": TOKEN})
    elif how == "token with a suffix":
        response = reply(client, "STOP", token=TOKEN + "x")
    elif how == "empty token":
        response = reply(client, "STOP", token="")
    else:
        response = client.post(INBOUND, {"From": MOBILE, "Body": "STOP"}, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 403
    assert sms_on(patient)
    assert not ContactOptOut.objects.exists()


def test_with_no_inbound_token_configured_nothing_is_accepted(client, settings, patient, frozen):
    """SMS_INBOUND_TOKEN unset: an empty ?token= must not match an empty setting."""
    settings.SMS_INBOUND_TOKEN = ""
    assert reply(client, "STOP", token="").status_code == 403
    assert reply(client, "STOP", token=None).status_code == 403
    assert sms_on(patient)


def _twilio(settings):
    settings.SMS_BACKEND = "reminders.channels.TwilioSmsBackend"
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.SMS_FROM = "AC1", "qa-auth-token", "+447700900999"


def _twilio_signature(url: str, params: dict) -> str:
    signed = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    return base64.b64encode(hmac.new(b"qa-auth-token", signed.encode(), hashlib.sha1).digest()).decode()


def test_with_twilio_the_token_alone_is_not_enough_and_a_changed_body_breaks_the_signature(
    client, settings, patient, frozen
):
    """docs/reminders.md: "With Twilio the X-Twilio-Signature is verified": the shared token of the other path is
    no way round it, and a signature made for "Thanks" does not cover "STOP"."""
    _twilio(settings)
    url = f"http://testserver{INBOUND}"
    signed_for = {"From": MOBILE, "Body": "Thanks", "To": "+447700900999"}
    signature = _twilio_signature(url, signed_for)

    assert reply(client, "STOP").status_code == 403  # ?token= only
    tampered = client.post(url, {**signed_for, "Body": "STOP"}, HTTP_X_TWILIO_SIGNATURE=signature)
    assert tampered.status_code == 403
    assert sms_on(patient)
    genuine = {**signed_for, "Body": "STOP"}
    assert client.post(url, genuine, HTTP_X_TWILIO_SIGNATURE=_twilio_signature(url, genuine)).status_code == 200
    assert not sms_on(patient)


# --- Messages already planned or being sent ----------------------------------------------------------------------


def test_a_stop_after_the_claim_stops_the_text_already_claimed(client, patient, practitioner, frozen):
    """docs/reminders.md: the send step "lock[s] the row and re-read[s] what may have changed (..., the patient's
    consent and addresses); send[s] only if it is still wanted (..., consent given)": a confirmation text claimed
    (status `sending`) before the STOP arrives is `skipped`; its e-mail still goes."""
    appointment = book(patient, london(2026, 3, 9, 11))
    claims = outbox_claim_due(now=CLOCK)
    (claimed_sms,) = sms_rows(appointment, kind=MessageKind.CONFIRMATION)
    assert claimed_sms.status == OutboxStatus.SENDING

    assert reply(client, "STOP").status_code == 200
    outcomes = outbox_send_batch(message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=CLOCK)

    assert texts() == []
    claimed_sms.refresh_from_db()
    assert claimed_sms.status == OutboxStatus.SKIPPED
    assert "STOP" in claimed_sms.last_error
    assert outcomes[claimed_sms.pk] == OutboxStatus.SKIPPED
    assert [m.to for m in mail.outbox] == [[patient.email]]


def test_after_stop_no_planned_text_goes_and_e_mail_carries_on(client, patient, practitioner, frozen):
    """docs/reminders.md: "Opt-outs ... take effect for messages already planned": the day-before reminder and
    the pre-care text planned at booking are skipped when due; their e-mails go."""
    appointment = book(patient, london(2026, 3, 9, 11))
    dispatch_local(now=CLOCK)  # the confirmation, by both channels
    assert len(texts()) == 1
    assert reply(client, "stop").status_code == 200

    moment = london(2026, 3, 8, 8)
    while moment <= london(2026, 3, 9, 10):
        with time_machine.travel(moment, tick=False):
            dispatch_local(now=moment)
        moment += timedelta(hours=2)

    assert len(texts()) == 1  # still only the confirmation sent before the STOP
    later = sms_rows(appointment, kind__in=[MessageKind.REMINDER, MessageKind.PRE_CARE])
    assert later and {r.status for r in later} == {OutboxStatus.SKIPPED}
    assert len(mail.outbox) >= 2


def test_after_stop_a_new_booking_works_and_plans_no_text(client, patient, practitioner, frozen):
    """Opting out of texts never blocks a booking (domain.md: messages go "per their consent"); the new booking's
    messages go by e-mail only."""
    assert reply(client, "STOP").status_code == 200
    appointment = book(patient, london(2026, 3, 10, 11))
    dispatch_local(now=CLOCK)
    assert appointment.status in ("confirmed",)
    assert texts() == []
    assert not [r for r in sms_rows(appointment) if r.status in (OutboxStatus.PENDING, OutboxStatus.SENT)]
    assert [m.to for m in mail.outbox] == [[patient.email]]


def test_the_desk_shows_texts_off_after_a_stop(client, clinic, patient, frozen):
    """After a STOP, staff editing the patient see texts off (the channel unticked and no consent), so the
    desk cannot keep believing the patient gets texts."""
    user = get_user_model().objects.create_user(username="qa-optout-desk", password="pw-for-qa-only-123")
    StaffMembership.objects.create(user=user, clinic=clinic, role=StaffRole.RECEPTIONIST)
    desk = Client()
    desk.force_login(user)
    edit = reverse("frontdesk:patient_edit", args=[clinic.code, patient.pk])

    def shown() -> tuple[bool, bool]:
        response = desk.get(edit)
        assert response.status_code == 200
        form = response.context["form"]
        return "sms" in (form["reminder_channels"].value() or []), bool(form["sms_consent"].value())

    assert shown() == (True, True)
    assert reply(client, "STOP").status_code == 200
    assert shown() == (False, False)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_stop_that_commits_while_a_text_is_being_sent_does_not_both_win(client, settings, care_texts):
    """`reminders.consent.patient_opt_out`: "the send step re-checks consent and skips them, so an opt-out and a
    send racing each other cannot both win". A STOP arriving while a text is in its send transaction (after the
    consent check, before the provider call) must either wait for that send (it is then recorded after the text
    went) or stop it; it must not be recorded first with the text going afterwards. Failed before (the STOP
    locked only the patient, the send only its outbox row); consent.patient_opt_out now also locks the
    patient's rows being sent on that channel, so the STOP waits for the send in flight."""
    clinic = ClinicFactory(code="qa-optout-race", name="Bloom Clinic", timezone="Europe/London")
    PractitionerFactory(clinic=clinic, name="Dr Race")
    patient = consenting(clinic, "Rae")
    settings.SMS_BACKEND = f"{__name__}.StopDuringSendBackend"
    StopDuringSendBackend.seen, StopDuringSendBackend.threads = [], []
    try:
        with time_machine.travel(CLOCK, tick=False):
            book(patient, london(2026, 3, 9, 11))
            dispatch_local(now=CLOCK)
    finally:
        for thread in StopDuringSendBackend.threads:
            thread.join(timeout=20)

    assert not sms_on(patient)  # the STOP is recorded in the end
    went = [t for t in texts() if t["to"] == MOBILE]
    # The STOP waited for the send in flight (its outbox row's lock): not recorded before the text went.
    assert StopDuringSendBackend.seen == [False]
    assert went, "the text already past its consent check goes"
    (opt_out,) = ContactOptOut.objects.filter(patient=patient)
    assert opt_out.via == "sms_stop"


class StopDuringSendBackend(LocmemSmsBackend):
    """An SMS provider call during which the patient's STOP arrives (another connection, as the inbound view)."""

    seen: list[bool] = []
    threads: list[threading.Thread] = []

    def send(self, *, to: str, body: str, outbox_id: str) -> str:
        done = threading.Event()

        def stop() -> None:
            try:
                consent.sms_reply_opt_out(from_number=to, body="STOP", now=CLOCK)
                done.set()
            finally:
                connection.close()

        thread = threading.Thread(target=stop, daemon=True)
        StopDuringSendBackend.threads.append(thread)
        thread.start()
        # Recorded before delivery? A send that made the STOP wait for it (a lock) leaves this False.
        StopDuringSendBackend.seen.append(done.wait(timeout=3))
        return super().send(to=to, body=body, outbox_id=outbox_id)


# --- E-mail unsubscribe links ------------------------------------------------------------------------------------


def test_opening_the_link_asks_and_changes_nothing_however_often(client, patient, frozen):
    """docs/reminders.md: "Opening the link shows a one-button page; a GET alone changes nothing, because link
    scanners fetch links"."""
    path = unsubscribe_path(patient)
    for _ in range(3):
        response = client.get(path)
        assert response.status_code == 200
        assert b'<form method="post"' in response.content
    assert "Stop e-mails from Bloom Clinic?" in response.content.decode()
    assert email_on(patient) and sms_on(patient)
    assert not ContactOptOut.objects.exists()


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data"])
def test_one_click_post_without_session_or_csrf_unsubscribes_e_mail_only(patient, frozen, content_type):
    """RFC 8058 via docs/reminders.md: "mail clients unsubscribe with one POST" (body `List-Unsubscribe=One-Click`,
    no cookies, no CSRF token; RFC 8058 allows either form encoding). Only e-mail stops; recorded as the one-click
    path, at the time it happened."""
    mail_client = Client(enforce_csrf_checks=True)
    path = unsubscribe_path(patient)
    if content_type == "multipart/form-data":
        response = mail_client.post(path, {"List-Unsubscribe": "One-Click"})
    else:
        response = mail_client.post(path, "List-Unsubscribe=One-Click", content_type=content_type)

    assert response.status_code == 200
    assert not email_on(patient)
    assert sms_on(patient)
    (row,) = ContactOptOut.objects.all()
    assert (row.patient_id, row.channel, row.via, row.at) == (patient.pk, "email", "list_unsubscribe", CLOCK)


def test_the_button_on_the_page_records_the_link_and_a_second_press_records_nothing(patient, frozen):
    """docs/reminders.md: "Opt-outs are recorded (`ContactOptOut`)"; the page's button posts without a CSRF
    token (the signed link is the credential)."""
    browser = Client(enforce_csrf_checks=True)
    path = unsubscribe_path(patient)
    assert browser.post(path).status_code == 200
    assert browser.post(path).status_code == 200
    assert not email_on(patient)
    assert list(ContactOptOut.objects.values_list("via", "channel")) == [("email_link", "email")]


def _tampered(token: str) -> str:
    i = len(token) // 2
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]


def test_a_tampered_or_foreign_link_is_a_400_and_changes_nothing(client, clinic, patient, frozen):
    """docs/reminders.md: "A forged or damaged link gets a 400 page"; a link cannot be pointed at someone else:
    a payload naming another patient signed without the key, a token of another salt (the appointment page's
    link), and a damaged signature all fail."""
    other = consenting(clinic, "Pia", phone="+447911654321")
    good = unsubscribe_token(patient_id=patient.pk)
    forged_for_other = signing.dumps({"p": str(other.pk), "c": "email"}, key="not-the-key", salt=UNSUBSCRIBE_SALT)
    wrong_salt = signing.dumps({"p": str(other.pk), "c": "email"}, salt="reminders.manage")
    for token in (_tampered(good), good[:-3], forged_for_other, wrong_salt, "x" * 300):
        for method in (client.get, client.post):
            response = method(reverse("reminders:unsubscribe", kwargs={"token": token}))
            assert response.status_code == 400, token
    assert email_on(patient) and email_on(other)
    assert not ContactOptOut.objects.exists()


def test_the_appointment_page_link_is_not_an_unsubscribe_link(client, patient, practitioner, frozen):
    """Links are salted per purpose (docs/portal.md: "the link is signed (... salted ...)"): the appointment
    page's token posted to the unsubscribe address is a 400."""
    appointment = book(patient, london(2026, 3, 9, 11))
    response = client.post(reverse("reminders:unsubscribe", kwargs={"token": manage_token(appointment)}))
    assert response.status_code == 400
    assert email_on(patient)


def test_an_old_link_still_works_years_later(patient):
    """docs/reminders.md: "Links do not expire (a patient may use an old e-mail)"."""
    with time_machine.travel(CLOCK, tick=False):
        path = unsubscribe_path(patient)
    later = CLOCK + timedelta(days=3 * 365)
    with time_machine.travel(later, tick=False):
        response = Client(enforce_csrf_checks=True).post(path, {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert not email_on(patient)
    assert ContactOptOut.objects.get().at == later


def test_the_link_in_a_sent_e_mail_opts_out_that_patient_only_and_later_e_mails_stop(
    clinic, patient, practitioner, frozen
):
    """docs/reminders.md: the signed link is "in its footer and in List-Unsubscribe with List-Unsubscribe-Post:
    List-Unsubscribe=One-Click"; "take effect for messages already planned". Family member on the same mobile
    and address book: only the recipient of this e-mail is unsubscribed."""
    sibling = consenting(clinic, "Mia")
    appointment = book(patient, london(2026, 3, 9, 11))
    dispatch_local(now=CLOCK)
    (confirmation,) = mail.outbox
    header = confirmation.extra_headers["List-Unsubscribe"]
    assert confirmation.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert header.startswith("<https://clinic.example/reminders/unsubscribe/") and header.endswith(">")
    url = header[1:-1]
    assert url in confirmation.body  # the footer's link is the same
    assert url == unsubscribe_url(patient_id=patient.pk)

    path = url.removeprefix("https://clinic.example")
    assert Client(enforce_csrf_checks=True).post(path, {"List-Unsubscribe": "One-Click"}).status_code == 200
    assert not email_on(patient) and email_on(sibling)
    assert sms_on(patient)

    moment = london(2026, 3, 8, 8)
    while moment <= london(2026, 3, 9, 10):
        with time_machine.travel(moment, tick=False):
            dispatch_local(now=moment)
        moment += timedelta(hours=2)
    assert len(mail.outbox) == 1  # nothing more by e-mail
    skipped = OutboxMessage.objects.filter(appointment=appointment, channel="email").exclude(
        kind=MessageKind.CONFIRMATION
    )
    assert skipped and {r.status for r in skipped} == {OutboxStatus.SKIPPED}
    assert len(texts()) >= 2  # the texts go on


# --- The patient's page: switching back on ------------------------------------------------------------------------


def test_after_stop_texts_come_back_only_with_the_consent_tick_recorded_with_its_wording(
    client, patient, practitioner, frozen
):
    """docs/portal.md: "SMS back on | only with the consent box ticked; sets sms_consent | ContactOptIn with the
    wording ticked"; "a channel ... switched (back) on plans the reminders and care instructions of the patient's
    coming appointments that no row stands for yet"."""
    appointment = book(patient, london(2026, 3, 9, 11))
    assert reply(client, "STOP").status_code == 200
    page = reverse("portal:manage", args=[manage_token(appointment)])
    manage = client.get(page)
    assert manage.status_code == 200
    assert manage.context["preferences"]["sms"].value() is False
    assert manage.context["preferences"]["email"].value() is True

    prefs = reverse("portal:preferences", args=[manage_token(appointment)])
    refused = client.post(prefs, {"email": "on", "sms": "on", "care": "on", "reminders": "on"})
    assert refused.status_code == 400
    assert not sms_on(patient) and not ContactOptIn.objects.exists()

    later = CLOCK + timedelta(hours=1)
    with time_machine.travel(later, tick=False):
        accepted = client.post(
            prefs, {"email": "on", "sms": "on", "sms_consent": "on", "care": "on", "reminders": "on"}
        )
    assert accepted.status_code == 303
    assert sms_on(patient)
    (opt_in,) = ContactOptIn.objects.all()
    assert (opt_in.patient_id, opt_in.channel, opt_in.via, opt_in.at) == (patient.pk, "sms", "patient_page", later)
    assert "Bloom Clinic" in opt_in.wording and "STOP" in opt_in.wording
    assert opt_in.wording == consent.sms_consent_wording(reload(patient))
    wanted = sms_rows(appointment, kind__in=[MessageKind.REMINDER, MessageKind.PRE_CARE], status=OutboxStatus.PENDING)
    assert {r.kind for r in wanted} == {MessageKind.REMINDER, MessageKind.PRE_CARE}


def test_one_family_member_switching_texts_back_on_does_not_switch_the_other(client, clinic, patient, frozen):
    """Consent is each patient's own (docs/portal.md: the page acts on the appointment's patient only)."""
    child = consenting(clinic, "Mia")
    practitioner = PractitionerFactory(clinic=clinic, name="Dr Two")
    assert practitioner
    assert reply(client, "STOP").status_code == 200
    appointment = book(patient, london(2026, 3, 9, 11))
    prefs = reverse("portal:preferences", args=[manage_token(appointment)])
    response = client.post(prefs, {"email": "on", "sms": "on", "sms_consent": "on", "care": "on", "reminders": "on"})
    assert response.status_code == 303
    assert (sms_on(patient), sms_on(child)) == (True, False)


def test_switching_texts_off_on_the_page_is_recorded_like_a_stop(client, patient, practitioner, frozen):
    """docs/portal.md: "E-mail or SMS off | removed from Patient.reminder_channels (SMS also clears sms_consent) |
    ContactOptOut, via patient_page"; a later STOP records nothing more (already off)."""
    appointment = book(patient, london(2026, 3, 9, 11))
    prefs = reverse("portal:preferences", args=[manage_token(appointment)])
    assert client.post(prefs, {"email": "on", "care": "on", "reminders": "on"}).status_code == 303
    current = reload(patient)
    assert (current.reminder_channels, current.sms_consent) == (["email"], False)
    assert reply(client, "STOP").status_code == 200
    assert list(ContactOptOut.objects.values_list("channel", "via", "at")) == [("sms", "patient_page", CLOCK)]


def test_staff_switching_texts_back_on_after_a_stop_is_recorded(client, patient, frozen):
    """domain.md: patients get messages "per their consent"; docs/portal.md records every switch back on as a
    ContactOptIn with its wording. After the patient's own STOP, a re-opt-in by staff should leave a record too."""
    assert reply(client, "STOP").status_code == 200
    patient_update(
        patient=reload(patient),
        today=CLOCK.date(),
        changed_by=ChangedBy(via="desk", label="reception@qa-optout"),
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )
    assert sms_on(patient)
    [opt_in] = ContactOptIn.objects.filter(patient=patient, channel="sms")
    assert (opt_in.via, opt_in.detail) == ("desk", "reception@qa-optout")
    assert opt_in.wording == consent.sms_consent_wording(reload(patient))


# --- More paths that must obey a STOP or an unsubscribe -------------------------------------------------------------


def test_a_stop_also_stops_the_recall_planned_months_ahead(client, care_texts, frozen):
    """docs/reminders.md, "Recalls": "the same consent, opt-out, quiet hours and STOP as every care message";
    docs/plans.md: "STOP and unsubscribing stop it". A Botox done on 2 March plans its recall for 8 June; the
    patient replies STOP in between: the recall goes by e-mail only."""
    from plans.defaults import plan_templates_load
    from scheduler.booking import appointment_complete

    plan_templates_load()
    clinic = ClinicFactory(code="qa-optout-recall", name="Bloom Clinic", timezone="Europe/London")
    PractitionerFactory(clinic=clinic, name="Dr Recall")
    patient = consenting(clinic, "Rita")
    appointment = book(patient, london(2026, 3, 2, 11), code="botox")
    done_at = london(2026, 3, 2, 12)
    with time_machine.travel(done_at, tick=False):
        appointment_complete(appointment=appointment, actor=Actor("clinician@qa-optout", clinical=True), now=done_at)
        dispatch_local(now=done_at)
    recalls = OutboxMessage.objects.filter(appointment__patient=patient, kind=MessageKind.RECALL)
    assert {r.channel for r in recalls} == {"email", "sms"}
    due = recalls.first().due_at

    assert reply(client, "QUIT").status_code == 200
    sent_before = len(texts())
    with time_machine.travel(due, tick=False):
        dispatch_local(now=due)

    assert len(texts()) == sent_before
    statuses = dict(recalls.values_list("channel", "status"))
    assert statuses == {"email": OutboxStatus.SENT, "sms": OutboxStatus.SKIPPED}


def test_a_link_naming_text_messages_stops_texts_and_withdraws_consent(client, patient, frozen):
    """docs/reminders.md: the signed link names "patient and channel"; a text-message link's page says so, and
    its POST clears SMS as a STOP does (docs/portal.md: "SMS also clears sms_consent")."""
    path = unsubscribe_path(patient, channel="sms")
    page = client.get(path)
    assert page.status_code == 200 and "Stop text messages from Bloom Clinic?" in page.content.decode()
    assert client.post(path).status_code == 200
    current = reload(patient)
    assert (current.reminder_channels, current.sms_consent) == (["email"], False)
    assert list(ContactOptOut.objects.values_list("channel", "via")) == [("sms", "email_link")]


def test_a_link_from_before_a_merge_opts_out_the_surviving_record(client, clinic, patient, frozen):
    """docs/organisations.md: "an unsubscribe link from before the merge opts out the survivor"."""
    old_record = consenting(clinic, "Olivia-old", phone="+447911654321")
    path = unsubscribe_path(old_record)
    Patient.objects.filter(pk=old_record.pk).update(merged_into=patient, merged_at=CLOCK)

    assert Client(enforce_csrf_checks=True).post(path, {"List-Unsubscribe": "One-Click"}).status_code == 200
    assert not email_on(patient)
    assert email_on(old_record)  # the tombstone is left as it was
    assert ContactOptOut.objects.get().patient_id == patient.pk
