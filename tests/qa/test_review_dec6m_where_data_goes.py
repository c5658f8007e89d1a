"""Review (6 December, m): where does a patient's personal or clinical data end up, and can anyone who should not
see it see it? Aimed at what tests/qa/test_security_probe.py, test_organisations_probe.py, tests/api/
test_tenancy_sweep.py and the webhook probes leave out (another organisation's rows, roles, CSRF, headers of
the desk and the API, webhook bodies' fields):

- the logs across a day (bookings over the API, a refusal, the messages and a failing webhook, an inbound reply
  and a STOP, a cancel from the patient's page with a note, a merge, a desk search by phone, a 400) name no one:
  no name, e-mail address, phone number, note or condition;
- the desk's own words (a visit's notes: "never sent to the patient", Appointment.notes' help text; the desk's
  cancel reason; a clinician's clearance reason) reach no e-mail, text, calendar file or feed, patient page, REST answer,
  webhook body or FHIR resource (FHIR's documented `cancelationReason` aside, below);
- a site's administrator (London, not its sister site West) lists no West appointment, message, audit entry or
  practitioner feed in the admin and opens none of them (docs/organisations.md: "appointments: only at the
  granted clinics");
- every patient page and answer, errors and the unsubscribe page included: `no-store`, a referrer policy that
  sends nothing to other sites, `noindex`, and the patient's name, full address, full number and the desk's notes
  nowhere (docs/portal.md); a link after a merge and after a cancel reads its own visit only.

Found (two QUESTIONs: no document said what the logs or FHIR may carry; both decided and mended the same day, and
the tests below pass since):
- a provider's refusal that quoted the recipient went into the log whole: an SMTP server's refused recipients
  (`recipient refused: {'<address>': ...}`, reminders/channels.py send_email, logged at ERROR by
  reminders.dispatch `_send_locked` "failed for good"), Twilio's 21211 message naming the number (same line),
  an e-mail provider's bounce whose server reply names the address (reminders.reports.delivery_reported's warning).
  Now every e-mail address and international number in a log line is masked (core.redact: on the service's module
  loggers, on Django's console handler and on Celery's handlers); the failed row keeps the provider's words whole;
- a patient's note when cancelling on their page ("Anything you would like us to know? (optional)") was served as
  FHIR `cancelationReason` to every API client of the clinic, clinical flag or not (fhir/mapping.py), while the
  REST API and the webhooks carry no cancel reason at all. Decided and mended the same day: a cancel reason's words
  go over FHIR only to a caller with the clinician's right at the clinic (docs/fhir.md); the test now passes.

The clock is stopped at Monday 2 March 2026, 09:00 UTC (London on GMT) and moved by hand.
"""

from __future__ import annotations

import base64
import json
import logging
import smtplib
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemEmailBackend
from django.test import Client

from clinic.models import Appointment, AppointmentStatus, PatientCondition, StaffMembership, StaffRole
from clinic.services import notes_version
from portal.forms import slot_key
from reminders.consent import unsubscribe_token
from reminders.dispatch import dispatch_local
from reminders.feeds import calendar_feed_create
from reminders.links import manage_token
from reminders.models import CalendarFeed, OutboxMessage
from scheduler.defaults import _grant_admin_permissions
from tests.api.conftest import http, new_api_client
from tests.factories import AppointmentFactory, ClinicFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import NOW, book, ldn, register_webhook, staff_client, texts
from tests.reminders.support import FakeHttpServer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("care_texts", "message_outboxes")]

NAME, SURNAME = "Zelphine", "Quarrington"
EMAIL = "zelphine.q@mailbox.example"
PHONE, NATIONAL = "+447700900417", "07700900417"
INBOUND_TOKEN = "qa-dec6m-inbound"
# What the desk writes about a visit; each carries a word found nowhere else.
VISIT_NOTE = "Nervous about needles KESTREL-7"
STAFF_REASON = "Rude on the phone FALCON-3"
CLEAR_NOTE = "Eczema quiet for two years HERON-5"
DESK_WORDS = ("KESTREL-7", "FALCON-3", "HERON-5")
POSTMARK_ID = "0a129aee-e1cd-480d-b08d-4f48548ff48d"
POSTMARK_SECRET = "postmark:qa-dec6m"


class RefusingEmailBackend(LocmemEmailBackend):
    """An SMTP server that refuses the recipient: smtplib's error carries the refused addresses, as it always does."""

    def send_messages(self, messages):
        raise smtplib.SMTPRecipientsRefused({to: (550, b"5.1.1 User unknown") for m in messages for to in m.to})


# --- The world -------------------------------------------------------------------------------------------------


@pytest.fixture
def world(catalogue, settings, frozen):
    """Organisation A: London (home of Zelphine, on e-mail and SMS) and its sister site West; the reminder pipeline
    local, webhooks allowed to a local receiver, inbound texts by token."""
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = True
    settings.WEBHOOKS_ALLOW_HTTP = True
    settings.CELERY_BROKER_URL = ""
    settings.SMS_INBOUND_TOKEN = INBOUND_TOKEN
    settings.SMS_INBOUND_URL = ""
    london = ClinicFactory(code="qa-dg-london", name="QA Data London", timezone="Europe/London", phone="+442079460958")
    west = ClinicFactory(
        code="qa-dg-west", name="QA Data West", timezone="Europe/London", organisation=london.organisation
    )
    patient = PatientFactory(
        clinic=london,
        first_name=NAME,
        last_name=SURNAME,
        email=EMAIL,
        phone=PHONE,
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )
    return {
        "london": london,
        "west": west,
        "dr": PractitionerFactory(clinic=london, name="Dr Data"),
        "dr_west": PractitionerFactory(clinic=west, name="Dr Westbrook"),
        "patient": patient,
    }


def personal_words_in(text: str) -> list[str]:
    """Which of the patient's name, address, number (either form), the desk's words or a condition `text` holds."""
    lowered = text.lower()
    words = (NAME, SURNAME, EMAIL, PHONE, NATIONAL, PHONE[3:], *DESK_WORDS, "eczema", "pregnan")
    return [word for word in words if word.lower() in lowered]


def logged_personal_data(records) -> list[tuple[str, list[str], str]]:
    """(logger, words, message) for each record whose message, arguments or traceback name the patient."""
    found = []
    for record in records:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + record.stack_info
        words = personal_words_in(text)
        if words:
            found.append((record.name, words, text[:240]))
    return found


def watch_logs(caplog) -> None:
    """Everything the service's own loggers and Django's request logger say, down to DEBUG."""
    caplog.set_level(logging.DEBUG)
    for name in ("api", "clinic", "scheduler", "reminders", "plans", "portal", "frontdesk", "fhir", "django.request"):
        caplog.set_level(logging.DEBUG, logger=name)


def dispatch_at(moment) -> None:
    with time_machine.travel(moment, tick=False):
        dispatch_local(now=moment)


# --- The logs --------------------------------------------------------------------------------------------------


def test_a_day_of_bookings_messages_replies_and_a_merge_logs_no_one(world, caplog, frozen):
    """No document says what the logs may carry; the code keeps a stopped number out of them ("texts off for N
    patient(s)") and logs ids. A day's work, each path that logs something, must name no one."""
    london, patient = world["london"], world["patient"]
    PatientCondition.objects.create(patient=patient, condition_id="eczema", status="history")
    platform = http(new_api_client(london, clinical=True)[1])
    reception = staff_client(london, StaffRole.RECEPTIONIST, "qa-dg-desk")
    watch_logs(caplog)

    with FakeHttpServer(default=(500, b'{"error": "upstream unavailable"}')) as receiver:
        register_webhook(platform, receiver.url + "/hook")
        first = platform.post(
            "/api/v1/appointments/",
            {"patient": str(patient.pk), "procedure": "botox", "start": ldn(2026, 3, 3).isoformat()},
            format="json",
        )
        refused = platform.post(  # microneedling the next day, too soon after the Botox
            "/api/v1/appointments/",
            {"patient": str(patient.pk), "procedure": "microneedling", "start": ldn(2026, 3, 4).isoformat()},
            format="json",
        )
        later = platform.post(
            "/api/v1/appointments/",
            {"patient": str(patient.pk), "procedure": "microneedling", "start": ldn(2026, 3, 25).isoformat()},
            format="json",
        )
        dispatch_at(NOW)
        retried = OutboxMessage.objects.filter(channel="webhook", attempts__gte=1).count()
    bad = platform.post(
        "/api/v1/patients/",
        {"first_name": NAME, "last_name": SURNAME, "email": "not an address", "phone": PHONE},
        format="json",
    )
    inbound = Client()
    reply = inbound.post(f"/reminders/sms/inbound/?token={INBOUND_TOKEN}", {"From": PHONE, "Body": "Ok with eczema?"})
    stop = inbound.post(f"/reminders/sms/inbound/?token={INBOUND_TOKEN}", {"From": PHONE, "Body": "STOP"})
    token = manage_token(Appointment.objects.get(pk=later.json()["id"]))
    cancelled = Client().post(f"/my/{token}/cancel/", {"reason": "I am pregnant, sorry"})
    duplicate = PatientFactory(clinic=london, first_name=NAME, last_name="Quarington", email=EMAIL, phone=PHONE)
    merged = platform.post(f"/api/v1/patients/{duplicate.pk}/merge/", {"into": str(patient.pk)}, format="json")
    found = reception.get(f"/clinic/{london.code}/patients/", {"q": NATIONAL})
    fhir = platform.get("/fhir/r4/Appointment", {"patient": str(patient.pk)})

    statuses = [r.status_code for r in (first, refused, later, bad, reply, stop, cancelled, merged, found, fhir)]
    assert statuses == [201, 409, 201, 400, 200, 200, 303, 200, 200, 200], statuses
    assert retried >= 1 and SURNAME in found.content.decode()  # the webhook failed and the desk found her
    said = [record.getMessage() for record in caplog.records]
    assert any("Conflict: /api/v1/appointments/" in line for line in said), said  # the capture hears Django
    assert any(line.startswith("outbox") and "retrying" in line for line in said), said  # and the outbox
    assert logged_personal_data(caplog.records) == []


def _refused_by_smtp(world, settings, client, frozen) -> OutboxMessage:
    settings.EMAIL_BACKEND = f"{__name__}.RefusingEmailBackend"
    appointment = book(world["patient"], ldn(2026, 3, 10), frozen)
    dispatch_at(NOW)
    return OutboxMessage.objects.get(appointment=appointment, channel="email", kind="confirmation")


def _refused_by_twilio(world, settings, client, frozen) -> OutboxMessage:
    # Twilio's own words for error 21211 name the number it refused.
    answer = json.dumps({"code": 21211, "message": f"The 'To' number {PHONE} is not a valid phone number."})
    with FakeHttpServer(default=(400, answer.encode())) as twilio:
        settings.SMS_BACKEND = "reminders.channels.TwilioSmsBackend"
        settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = "AC0123456789", "secret-token"
        settings.SMS_FROM, settings.TWILIO_API_BASE = "+447700900999", twilio.url
        appointment = book(world["patient"], ldn(2026, 3, 10), frozen)
        dispatch_at(NOW)
    return OutboxMessage.objects.get(appointment=appointment, channel="sms", kind="confirmation")


def _bounced_at_postmark(world, settings, client, frozen) -> OutboxMessage:
    appointment = book(world["patient"], ldn(2026, 3, 10), frozen)
    dispatch_at(NOW)
    email = OutboxMessage.objects.get(appointment=appointment, channel="email", kind="confirmation")
    OutboxMessage.objects.filter(pk=email.pk).update(provider_id=POSTMARK_ID)
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": POSTMARK_SECRET}
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    bounce = {
        "RecordType": "Bounce",
        "Type": "HardBounce",
        "ID": 4323372036854775807,
        "MessageID": POSTMARK_ID,
        "Email": EMAIL,
        "BouncedAt": "2026-03-02T09:05:00Z",
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": f"smtp;550 5.1.1 <{EMAIL}>: Recipient address rejected: User unknown",
        "Inactive": True,
        "CanActivate": True,
        "Metadata": {},
    }
    response = client.post(
        "/reminders/email/postmark/tracking/",
        json.dumps(bounce),
        content_type="application/json",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(POSTMARK_SECRET.encode()).decode(),
    )
    assert response.status_code == 200
    return email


REFUSALS = {
    "smtp-refused-recipient": (_refused_by_smtp, "recipient refused"),
    "twilio-21211": (_refused_by_twilio, "21211"),
    "postmark-bounce-reply": (_bounced_at_postmark, "bounced"),
}


@pytest.mark.parametrize("refusal", list(REFUSALS))
def test_a_providers_refusal_quoting_the_recipient_is_not_logged_with_the_address(
    world, settings, client, caplog, frozen, refusal
):
    """The same promise as above, for the paths where the provider's words carry the address or number."""
    scenario, said = REFUSALS[refusal]
    watch_logs(caplog)

    row = scenario(world, settings, client, frozen)

    row.refresh_from_db()
    assert row.status == "failed" and said in row.last_error, (row.status, row.last_error)  # it happened
    assert logged_personal_data(caplog.records) == []


# --- The desk's words ------------------------------------------------------------------------------------------


def test_the_desks_notes_and_reasons_reach_no_patient_message_page_feed_or_platform(world, frozen):
    """clinic.models.Appointment.notes: "The desk's notes about this visit; never sent to the patient." The desk's
    cancel reason and a clinician's clearance reason are the clinic's too. Followed through every e-mail (subject,
    text, HTML, calendar files), text, webhook body, the patient's pages and feed, the REST answers and FHIR (whose
    documented `cancelationReason` carries the cancel reason: left to the QUESTION below)."""
    london, dr, patient = world["london"], world["dr"], world["patient"]
    platform = http(new_api_client(london)[1])
    reception = staff_client(london, StaffRole.RECEPTIONIST, "qa-dg-desk")
    clinician = staff_client(london, StaffRole.CLINICIAN, "qa-dg-clin")
    with FakeHttpServer(default=(200, b"{}")) as receiver:
        register_webhook(platform, receiver.url + "/hook")
        visit = book(patient, ldn(2026, 3, 10), frozen)
        dropped = book(patient, ldn(2026, 4, 1), frozen, code="botox")
        held = AppointmentFactory(
            patient=patient,
            clinic=london,
            practitioner=dr,
            start_at=ldn(2026, 4, 20),
            end_at=ldn(2026, 4, 20, 10, 30),
            status=AppointmentStatus.PENDING_CLEARANCE,
        )
        dispatch_at(NOW)
        noted = reception.post(
            f"/clinic/{london.code}/appointments/{visit.pk}/notes/",
            {"notes": VISIT_NOTE, "notes_drawn": notes_version("")},
        )
        cleared = clinician.post(f"/clinic/{london.code}/appointments/{held.pk}/clear/", {"reason": CLEAR_NOTE})
        cancelled = reception.post(f"/clinic/{london.code}/appointments/{dropped.pk}/cancel/", {"reason": STAFF_REASON})
        assert [noted.status_code, cancelled.status_code, cleared.status_code] == [302, 302, 302]
        for moment in (NOW + timedelta(minutes=20), ldn(2026, 3, 9, 10), ldn(2026, 3, 10, 13), ldn(2026, 4, 19, 10)):
            dispatch_at(moment)

    for appointment in (visit, dropped, held):
        appointment.refresh_from_db()
    assert (visit.notes, dropped.cancel_reason, held.status) == (VISIT_NOTE, STAFF_REASON, AppointmentStatus.CONFIRMED)
    desk_page = reception.get(f"/clinic/{london.code}/appointments/{visit.pk}/").content.decode()
    assert "KESTREL-7" in desk_page  # the desk sees its own note

    carried: dict[str, str] = {}
    for n, email in enumerate(mail.outbox):
        parts = [email.subject, email.body, *(str(body) for body, _ in email.alternatives)]
        parts += [a.as_string() if hasattr(a, "as_string") else str(a) for a in email.attachments]
        parts += [base64.b64decode(a.get_payload()).decode() for a in email.attachments if hasattr(a, "get_payload")]
        carried[f"e-mail {n}: {email.subject}"] = "\n".join(parts)
    for n, body in enumerate(texts()):
        carried[f"text {n}"] = body
    for row in OutboxMessage.objects.filter(channel="webhook"):
        carried[f"webhook {row.event} {row.pk}"] = json.dumps(row.payload)
    for appointment in (visit, dropped, held):
        carried[f"patient page {appointment.pk}"] = Client().get(f"/my/{manage_token(appointment)}/").content.decode()
        carried[f"REST {appointment.pk}"] = platform.get(f"/api/v1/appointments/{appointment.pk}/").content.decode()
    _, feed_token = calendar_feed_create(now=NOW, patient=patient)
    carried["patient feed"] = Client().get(f"/reminders/calendar/{feed_token}.ics").content.decode()
    carried["REST list"] = platform.get("/api/v1/appointments/", {"patient": str(patient.pk)}).content.decode()
    fhir = platform.get("/fhir/r4/Appointment", {"patient": str(patient.pk)}).content.decode()

    kinds = {key.split(":")[0].split(" ")[0] for key in carried}
    assert {"e-mail", "text", "webhook", "patient", "REST"} <= kinds, kinds
    assert any("cancelled" in key for key in carried if key.startswith("e-mail")), list(carried)
    assert "BEGIN:VEVENT" in carried["patient feed"]
    leaks = {key: [w for w in DESK_WORDS if w in text] for key, text in carried.items()}
    assert {key: words for key, words in leaks.items() if words} == {}
    assert json.loads(fhir)["total"] == 3
    assert [w for w in ("KESTREL-7", "HERON-5") if w in fhir] == []


# --- The admin, as a site's administrator ----------------------------------------------------------------------


def test_a_sites_administrator_lists_and_opens_nothing_of_the_sister_sites_visits(world, frozen):
    """docs/organisations.md: "appointments: only at the granted clinics"; "In the admin, a clinic administrator sees
    their clinics and the patients of their organisations". London's administrator shares the patient with West
    (her record is the organisation's) but not West's visits: not its appointment, the messages about it, its audit
    trail, nor the feed of West's practitioner."""
    london, west, patient = world["london"], world["west"], world["patient"]
    at_west = book(patient, ldn(2026, 3, 11), frozen, practitioner_id=world["dr_west"].pk)
    at_london = book(patient, ldn(2026, 4, 20), frozen, code="botox")
    assert (at_west.clinic_id, at_london.clinic_id) == (west.pk, london.pk)
    dispatch_at(NOW)
    calendar_feed_create(now=NOW, practitioner=world["dr_west"])
    calendar_feed_create(now=NOW, practitioner=world["dr"])
    user = get_user_model().objects.create_user("qa-dg-london-admin", password="pw-for-qa-only-123", is_staff=True)
    StaffMembership.objects.create(user=user, clinic=london, role=StaffRole.CLINIC_ADMIN)
    _grant_admin_permissions(user)
    admin = Client()
    admin.force_login(user)

    clinic_of = {
        "/admin/clinic/appointment/": lambda row: row.clinic_id,
        "/admin/reminders/outboxmessage/": lambda row: row.appointment.clinic_id,
        "/admin/clinic/auditevent/": lambda row: row.appointment.clinic_id,
        "/admin/reminders/calendarfeed/": lambda row: row.practitioner.clinic_id,
    }
    listed = {}
    for path, clinic in clinic_of.items():
        response = admin.get(path)
        assert response.status_code == 200, path
        listed[path] = {clinic(row) for row in response.context["cl"].result_list}
    assert listed == dict.fromkeys(clinic_of, {london.pk})

    west_message = OutboxMessage.objects.filter(appointment=at_west).first()
    west_event = at_west.audit_events.first()
    west_feed = CalendarFeed.objects.get(practitioner=world["dr_west"])
    for door in (
        f"/admin/clinic/appointment/{at_west.pk}/change/",
        f"/admin/reminders/outboxmessage/{west_message.pk}/change/",
        f"/admin/clinic/auditevent/{west_event.pk}/change/",
        f"/admin/reminders/calendarfeed/{west_feed.pk}/change/",
    ):
        response = admin.get(door, follow=True)
        assert response.status_code in (200, 404) and "Westbrook" not in response.content.decode(), door
        assert response.redirect_chain or response.status_code == 404, door  # not the object's page


# --- The patient's pages ---------------------------------------------------------------------------------------


def test_every_patient_page_and_answer_is_private_and_names_no_one(world, frozen):
    """docs/portal.md: "Every answer carries `Cache-Control: no-store`; pages are `noindex` and send no referrer to
    other sites"; the link's pages show the appointment, not who it is for (contact details masked). Every page and
    answer reached from a link, its errors and the unsubscribe pages too; the desk's visit note nowhere."""
    patient = world["patient"]
    visit = book(patient, ldn(2026, 3, 10), frozen)
    visit.notes = VISIT_NOTE
    visit.save(update_fields=["notes"])
    token = manage_token(visit)
    expired = AppointmentFactory(  # its link lapses a week after it ends
        patient=patient,
        clinic=world["london"],
        practitioner=world["dr"],
        start_at=ldn(2026, 3, 2, 11),
        end_at=ldn(2026, 3, 2, 11, 30),
    )
    expired_token = manage_token(expired)
    slot = slot_key(ldn(2026, 3, 17, 14), str(world["dr"].pk))
    leave = unsubscribe_token(patient_id=patient.pk, channel="email")
    browser = Client()

    answers = {
        "page": browser.get(f"/my/{token}/"),
        "cancel ask": browser.get(f"/my/{token}/cancel/"),
        "move": browser.get(f"/my/{token}/move/"),
        "move confirm": browser.get(f"/my/{token}/move/confirm/", {"slot": slot}),
        "preferences GET": browser.get(f"/my/{token}/preferences/"),
        "calendar link": browser.post(f"/my/{token}/calendar/", follow=True),
        "bad reason": browser.post(f"/my/{token}/cancel/", {"reason": "x" * 501}),
        "forged": browser.get(f"/my/{token[:-2]}xx/"),
        "unsubscribe ask": browser.get(f"/reminders/unsubscribe/{leave}/"),
    }
    with time_machine.travel(ldn(2026, 3, 9, 12), tick=False):
        answers["expired"] = browser.get(f"/my/{expired_token}/")
    answers["cancelled"] = browser.post(f"/my/{token}/cancel/", {"reason": "changed my mind"}, follow=True)
    answers["unsubscribed"] = browser.post(f"/reminders/unsubscribe/{leave}/")

    statuses = {name: r.status_code for name, r in answers.items()}
    assert statuses == {
        "page": 200,
        "cancel ask": 200,
        "move": 200,
        "move confirm": 200,
        "preferences GET": 303,
        "calendar link": 200,
        "bad reason": 400,
        "forged": 400,
        "unsubscribe ask": 200,
        "expired": 410,
        "cancelled": 200,
        "unsubscribed": 200,
    }, statuses
    assert "/reminders/calendar/" in answers["calendar link"].content.decode()  # the feed's address is on it
    for name, response in answers.items():
        cache = {part.strip() for part in response.get("Cache-Control", "").split(",")}
        assert "no-store" in cache, (name, response.get("Cache-Control"))
        assert response.get("Referrer-Policy") in ("same-origin", "no-referrer"), (
            name,
            response.get("Referrer-Policy"),
        )
        body = response.content.decode()
        assert personal_words_in(body) == [], (name, personal_words_in(body))
        if response.status_code != 303:
            assert 'name="robots" content="noindex' in body, name
    for name in ("forged", "expired"):
        body = answers[name].content.decode()
        assert "QA Data London" not in body and "Dr Data" not in body, name  # names no clinic or practitioner


def test_a_link_reads_its_own_visit_after_a_merge_and_after_the_other_is_cancelled(world, frozen):
    """docs/portal.md: the link "names one appointment, so nothing on these pages takes an appointment or patient id
    from the request, and one appointment's link cannot act on another". A visit booked on a duplicate record, the
    records merged: each link still shows only its own visit; cancelling one through its link leaves the other."""
    london, patient = world["london"], world["patient"]
    duplicate = PatientFactory(clinic=london, first_name=NAME, last_name="Quarington", email=EMAIL, phone=PHONE)
    hers = book(patient, ldn(2026, 3, 10), frozen)
    theirs = book(duplicate, ldn(2026, 4, 8, 15), frozen, code="botox")
    platform = http(new_api_client(london, clinical=True)[1])
    merged = platform.post(f"/api/v1/patients/{duplicate.pk}/merge/", {"into": str(patient.pk)}, format="json")
    assert merged.status_code == 200, merged.content
    browser = Client()

    theirs_page = browser.get(f"/my/{manage_token(theirs)}/").content.decode()
    hers_page = browser.get(f"/my/{manage_token(hers)}/").content.decode()
    assert "8 April 2026" in theirs_page and "10 March 2026" not in theirs_page
    assert "10 March 2026" in hers_page and "8 April 2026" not in hers_page

    done = browser.post(f"/my/{manage_token(theirs)}/cancel/", {"reason": ""})
    assert done.status_code == 303
    for appointment in (theirs, hers):
        appointment.refresh_from_db()
    assert (theirs.status, hers.status) == (AppointmentStatus.CANCELLED, AppointmentStatus.CONFIRMED)
    after = browser.get(f"/my/{manage_token(theirs)}/").content.decode()
    assert "This appointment is cancelled." in after and "10 March 2026" not in after


# --- FHIR ------------------------------------------------------------------------------------------------------


def test_a_patients_note_to_the_clinic_stays_with_the_clinic(world, frozen):
    """The note a patient writes when cancelling is addressed to the clinic ("us"). A booking platform's key without
    the clinical flag reads the appointment over REST (no reason there) and over FHIR."""
    london = world["london"]
    visit = book(world["patient"], ldn(2026, 3, 25), frozen)
    note = "I have just found out I am pregnant"
    assert Client().post(f"/my/{manage_token(visit)}/cancel/", {"reason": note}).status_code == 303
    platform = http(new_api_client(london, clinical=False)[1])

    rest = platform.get(f"/api/v1/appointments/{visit.pk}/")
    fhir = platform.get(f"/fhir/r4/Appointment/{visit.pk}")

    assert rest.status_code == 200 and rest.json()["status"] == "cancelled" and "pregnant" not in rest.content.decode()
    assert fhir.status_code == 200 and json.loads(fhir.content)["status"] == "cancelled"
    assert "pregnant" not in fhir.content.decode()
