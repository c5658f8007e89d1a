"""Review probe dec8b (6 December): what the service writes into other people's formats when the words typed into it are
hostile or unusual. Names, notes, reasons and a clinic's details are typed by people at the desk, in the admin, on
the patient's page and by platforms over the API, and end up in e-mail headers and bodies, calendar files and feeds,
texts, FHIR JSON, the desk's and the patient's pages and the admin. Fed through the real paths (the API, the desk's
forms, the admin's form, the patient's page, the booking service and the dispatcher), with line breaks in names,
header and iCalendar property injections, `<script>` and quotes, control characters (BEL, ESC), a 100-character
name, emoji and right-to-left marks, and a value that looks like a spreadsheet formula; each output is parsed with
the tool its readers use (the `email` package, `icalendar`, `json` and `fhir.resources`, an HTML parser).

What holds (tests pass): a patient's or practitioner's line break never makes a second e-mail header (subjects are
folded to one line, To is the patient's one address, a quoted local part with a comma is one recipient); a sender
name with quotes, commas and angle brackets is one display name of the service's own address; a long word, emoji and
RTL marks survive the subject's and the sender's encoding; the calendar file escapes commas, semicolons, backslashes
and line breaks (RFC 5545 TEXT, RFC 6868 parameters), so a name cannot add an ATTENDEE, a VALARM or a second VEVENT,
and its lines fold within 75 octets without splitting a character; its attachment's name is fixed; FHIR JSON carries
quotes, `<script>` and U+2028 as data and validates; the desk's pages tried (today, day and week calendar,
schedule, patient, search, appointment, a cancelled one), the patient's page, the e-mail's HTML
and the admin escape names, notes, a clinic's address and a practitioner's name (no element or attribute injected);
the desk's JSON feed is served as JSON with `nosniff`; formula-looking text, emoji and 100-character names are kept
exactly. No CSV or spreadsheet export exists (nothing writes `text/csv`), so formula injection has no output to reach;
webhook bodies are ASCII JSON of ids and codes, none of the words typed.

Found, and mended the same day: the fields typed on one line (names, sender and SMS names, an e-mail address) refuse
every control character, and reasons every one but tab, CR and LF, in the API, the desk, the patient's page and the
admin alike (`core.plain_text`, model and serializer validators, clinic 0025); what was stored before goes out
without them (the sender name and subject, the calendar file's names and feed title, a text's names, FHIR's cancel
reason). The tests below that need a hostile stored value write it as a record stored before the refusal:
- DEFECT: the admin's clinic form saves a name or sender name with a line break (a pasted value, a script's POST), and
  from then on every e-mail of the clinic fails for good: Django refuses the From header (the sender name, or the
  name when there is none) and, where an administrator's subject names a treatment, the private subject built from
  the name unfolded (reminders/content.py `private_subject`; seen while probing), with "BadHeaderError: Header values
  can't contain newlines"
  (test_the_admin_refuses_a_line_break_in_a_clinics_name_or_sender_name,
  test_a_clinic_whose_name_or_sender_name_holds_a_line_break_still_sends_its_emails);
- DEFECT: a practitioner whose name holds a line break makes their private calendar feed a 500: the feed's
  X-WR-CALNAME is written unescaped ("Appointments: <name>", reminders/feeds.py) and icalendar refuses the content
  line (test_a_practitioners_feed_is_served_whatever_line_break_their_name_holds);
- DEFECT: control characters typed into a patient's first name (accepted by the API and the desk, below) go raw into
  the calendar file's ATTENDEE (RFC 5545 allows no CONTROL character in a parameter or value)
  (test_the_invitation_carries_no_control_character_from_a_patients_name), and a text that greets the patient by
  name is switched to UCS-2 by the ESC, outgrows three segments and fails for good, instead of going without it
  (test_a_text_that_greets_by_name_goes_without_the_names_control_characters);
- DEFECT: a patient's note when cancelling on their page, with a control character in it, is served as FHIR
  `cancelationReason` with it (FHIR R4 strings allow no character below U+0020 but tab, CR and LF)
  (test_fhir_strings_carry_no_control_character_from_a_patients_cancel_note);
- QUESTION: the API and the desk store names with line breaks, BEL and ESC as typed (only NUL is refused); no
  real name holds one, and they are what breaks the outputs above. Refuse them with a 400 naming the field (or strip
  them)? (test_the_api_refuses_control_characters_in_a_name_with_a_400_naming_the_field,
  test_the_desk_refuses_control_characters_in_a_name);
- QUESTION: an e-mail address whose quoted local part holds a control character (`"x\\x07"@example.com`, which
  Django's EmailValidator allows) is accepted over the API and goes raw into the To header and the calendar file's
  ATTENDEE (test_the_api_refuses_an_email_address_with_a_control_character).

The clock is stopped at Monday 2 March 2026, 09:00 UTC (London on GMT).
"""

from __future__ import annotations

import json
import re
from email import policy
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from html import unescape
from html.parser import HTMLParser

import pytest
from django.conf import settings
from django.core import mail
from django.urls import reverse
from fhir.resources.R4B.appointment import Appointment as FhirAppointment
from icalendar import Calendar

from clinic.models import Appointment, Clinic, Patient, Practitioner, StaffRole
from frontdesk.forms import drawn_at
from reminders.dispatch import dispatch_local
from reminders.feeds import calendar_feed_create
from reminders.models import OutboxMessage, OutboxStatus, ReminderTemplate
from tests.api.conftest import http, new_api_client
from tests.qa.helpers import (
    API,
    api_book,
    as_rendered,
    book,
    fhir_json,
    fhir_strings,
    ldn,
    portal_page,
    register_webhook,
    staff_client,
    superuser_client,
    texts,
    url,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("care_texts", "message_outboxes")]

# --- Hostile and unusual values --------------------------------------------------------------------------------------

HTML_ATTACK = "\"'><img src=x onerror=alert(1)><script>alert(2)</script>"
HEADER_ATTACK = "Ann\r\nBcc: intruder@evil.example"
ICS_ATTACK = "Ann\r\nATTENDEE:mailto:intruder@evil.example\r\nBEGIN:VALARM"
CONTROL_NAME = "Ann\x07\x1b[2J"
LONG_WORD = "Maximiliana" * 9 + "X"  # 100 characters, no space to fold at
EMOJI_RTL = "\u200fZo\u00eb \U0001f600 \u202b\u0646\u0648\u0631\u202c"
FORMULA = '=HYPERLINK("http://evil.example","click")'
# What RFC 5545 calls CONTROL (all but HTAB) and FHIR forbids in a string (all below U+0020 but tab, CR and LF).
ICS_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
FHIR_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
WEDNESDAY = ldn(2026, 3, 4)


# --- Helpers ---------------------------------------------------------------------------------------------------------


def register(api, **fields) -> Patient:
    """A patient registered over the API as a platform sends it (a likely duplicate passed over). A name holding a
    control character, which the API now refuses (`test_the_api_refuses_control_characters_in_a_name...`), is the
    record as stored before it did: registered as "Ann", then given the name by `Patient.save`, which checks
    nothing."""
    hostile = {name: value for name, value in fields.items() if name.endswith("_name") and ICS_CONTROL.search(value)}
    body = {"last_name": "Lee", "email": "ann.lee@mailbox.example", "reminder_channels": ["email"], **fields}
    response = api.post(
        f"{API}/patients/", {**body, **dict.fromkeys(hostile, "Ann"), "confirm_new": True}, format="json"
    )
    assert response.status_code == 201, response.content
    patient = Patient.objects.get(pk=response.json()["id"])
    if hostile:
        refused = api.patch(f"{API}/patients/{patient.pk}/", hostile, format="json")
        assert refused.status_code in (400, 428), refused.content  # refused now, whatever the If-Match
        for name, value in hostile.items():
            setattr(patient, name, value)
        patient.save()
    return patient


def sent_email(frozen):
    """The one e-mail the dispatcher sends now, as its bytes parse (the form a mail server and client read)."""
    dispatch_local(now=frozen)
    [email] = mail.outbox
    raw = email.message().as_bytes()
    return email, raw, BytesParser(policy=policy.default).parsebytes(raw)


def calendar_part(message) -> tuple[bytes, object]:
    """The one calendar attachment of a parsed e-mail: its bytes and its MIME part."""
    [part] = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    return part.get_payload(decode=True), part


def edit_confirmation(**changes) -> None:
    """The booking confirmation's template as an administrator edits it."""
    template = ReminderTemplate.objects.get(default_key="booking-confirmation")
    for name, value in changes.items():
        setattr(template, name, value)
    template.full_clean()  # what the admin's form asks of it
    template.save()


def unsent(appointment) -> list[tuple[str, str, str]]:
    return [
        (m.kind, m.channel, m.last_error)
        for m in OutboxMessage.objects.filter(appointment=appointment, status=OutboxStatus.FAILED)
    ]


class _Injected(HTMLParser):
    """What an HTML_ATTACK would add to a page if it were not escaped: an element it opens, an event handler."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._script = False

    def handle_starttag(self, tag, attrs):
        names = {name for name, _ in attrs}
        if tag == "img" and dict(attrs).get("src") == "x":
            self.found.append("<img src=x>")
        if any(name.startswith("on") for name in names):
            self.found.append(f"<{tag}> with an event handler")
        self._script = tag == "script"

    def handle_endtag(self, tag):
        self._script = False

    def handle_data(self, data):
        if self._script and "alert(" in data:
            self.found.append("<script>alert")


def injected(html: str) -> list[str]:
    parser = _Injected()
    parser.feed(html)
    return parser.found


def visible(html: str) -> str:
    """The page's text as a reader sees it: tags dropped, entities read."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return unescape(re.sub(r"<[^>]+>", " ", body))


# --- E-mail headers ---------------------------------------------------------------------------------------------------


def test_line_breaks_in_names_never_make_a_second_email_header(api, clinic, practitioner, frozen):
    practitioner.name = "Dr Ada\r\nCc: intruder@evil.example"
    practitioner.save()
    edit_confirmation(email_subject="{{ patient_first_name }}: your visit with {{ practitioner_name }}")
    patient = register(api, first_name=HEADER_ATTACK)
    book(patient, WEDNESDAY, frozen)

    email, raw, message = sent_email(frozen)

    assert email.recipients() == ["ann.lee@mailbox.example"]
    assert message.get_all("To") == ["ann.lee@mailbox.example"]
    assert message.get_all("Bcc") is None and message.get_all("Cc") is None
    [subject] = message.get_all("Subject")
    assert "\r" not in subject and "\n" not in subject
    assert subject == "Ann Bcc: intruder@evil.example: your visit with Dr Ada Cc: intruder@evil.example"
    headers = raw.split(b"\n\n", 1)[0]
    assert re.findall(rb"^(?:Bcc|Cc|To):", headers, flags=re.M | re.I) == [b"To:"]


def test_a_long_word_emoji_and_rtl_marks_survive_the_subject_and_sender_encoding(api, clinic, practitioner, frozen):
    clinic.sender_name = EMOJI_RTL
    clinic.save()
    edit_confirmation(email_subject="{{ patient_first_name }}, your appointment at {{ clinic_name }}")
    patient = register(api, first_name=LONG_WORD)
    book(patient, WEDNESDAY, frozen)

    _, raw, message = sent_email(frozen)

    # Folded before the long word (a client trims the space the unfolding leaves).
    assert message["Subject"].strip() == f"{LONG_WORD}, your appointment at {clinic.name}"
    [sender] = message["From"].addresses
    assert sender.display_name == EMOJI_RTL
    assert sender.addr_spec == parseaddr(settings.DEFAULT_FROM_EMAIL)[1]
    assert all(len(line) <= 998 for line in raw.split(b"\n")), "RFC 5322's hard limit on a line"


def test_a_sender_name_with_quotes_commas_and_brackets_is_one_name_of_the_services_address(
    clinic, practitioner, patient, frozen
):
    clinic.sender_name = 'Glow, "Best" <spa@evil.example>; x'
    clinic.save()
    book(patient, WEDNESDAY, frozen)

    _, _, message = sent_email(frozen)

    [sender] = getaddresses(message.get_all("From"))
    assert sender == ('Glow, "Best" <spa@evil.example>; x', parseaddr(settings.DEFAULT_FROM_EMAIL)[1])


def test_an_address_whose_quoted_local_part_holds_a_comma_is_one_recipient(api, clinic, practitioner, frozen):
    address = '"a,b@evil.example"@mailbox.example'
    patient = register(api, first_name="Ann", email=address)
    book(patient, WEDNESDAY, frozen)

    email, _, message = sent_email(frozen)

    assert len(email.recipients()) == 1
    [to] = message["To"].addresses
    assert to.addr_spec == address


@pytest.mark.parametrize("field", ["sender_name", "name"])
def test_a_clinic_whose_name_or_sender_name_holds_a_line_break_still_sends_its_emails(
    clinic, practitioner, patient, frozen, field
):
    clinic.sender_name = ""
    setattr(clinic, field, "Glow Clinic\r\nBcc: intruder@evil.example")
    clinic.save()
    appointment = book(patient, WEDNESDAY, frozen)

    dispatch_local(now=frozen)

    assert unsent(appointment) == []
    [email] = mail.outbox
    message = BytesParser(policy=policy.default).parsebytes(email.message().as_bytes())
    [sender] = message["From"].addresses
    assert sender.addr_spec == parseaddr(settings.DEFAULT_FROM_EMAIL)[1]
    assert message.get_all("Bcc") is None


def test_the_admin_refuses_a_line_break_in_a_clinics_name_or_sender_name(clinic):
    admin = superuser_client()
    page = url(Clinic, "change", clinic.pk)
    saved = {}
    for field in ("sender_name", "name"):
        data = as_rendered(admin, page, Clinic)
        data[field] = "Glow Clinic\r\nBcc: intruder@evil.example"
        response = admin.post(page, data)
        clinic.refresh_from_db()
        saved[field] = (response.status_code, "\n" in getattr(clinic, field))
    assert saved == {"sender_name": (200, False), "name": (200, False)}


# --- E-mail bodies ----------------------------------------------------------------------------------------------------


def test_the_emails_html_escapes_the_clinics_name_address_and_practitioners_name(api, clinic, practitioner, frozen):
    clinic.name = 'Glow "&" <b>Spa</b> \''
    clinic.address = f"1 High St\n{HTML_ATTACK}"
    clinic.logo_url = "https://clinic.example/logo.png"  # the name goes in the logo's alt attribute
    clinic.save()
    practitioner.name = f"Dr {HTML_ATTACK}"
    practitioner.save()
    patient = register(api, first_name=HTML_ATTACK)
    book(patient, WEDNESDAY, frozen)

    email, _, _ = sent_email(frozen)
    html = email.alternatives[0][0]

    assert injected(html) == []
    assert "<b>Spa</b>" not in html
    text = visible(html)
    assert f"Dr {HTML_ATTACK}" in text and HTML_ATTACK in text
    assert f'alt="{clinic.name}"' not in html and 'alt="Glow &quot;&amp;&quot; &lt;b&gt;Spa&lt;/b&gt; &#x27;"' in html
    assert f"Hello {HTML_ATTACK}," in email.body  # the text part is not HTML: said as typed


# --- Calendar files ---------------------------------------------------------------------------------------------------


def test_the_invitation_escapes_names_so_they_add_no_attendee_alarm_or_event(api, clinic, practitioner, frozen):
    clinic.name = "Glow; Spa, London \\ Central"
    clinic.address = "1 High St, Flat 2;\nLondon"
    clinic.phone = "+442079460000"
    clinic.save()
    practitioner.name = "Dr Ada\nEND:VEVENT\nBEGIN:VEVENT\nSUMMARY:Free Botox"
    practitioner.save()
    patient = register(api, first_name=ICS_ATTACK)
    book(patient, WEDNESDAY, frozen)

    _, _, message = sent_email(frozen)
    ics, part = calendar_part(message)
    calendar = Calendar.from_ical(ics)

    assert part.get_filename() == "appointment.ics"
    [event] = calendar.walk("VEVENT")
    assert calendar.walk("VALARM") == []
    attendees = event.get("attendee")
    assert not isinstance(attendees, list), attendees
    assert str(attendees) == "mailto:ann.lee@mailbox.example"
    assert "intruder" not in str(event.get("organizer"))
    assert str(event["summary"]) == "Appointment at Glow; Spa, London \\ Central"
    assert str(event["location"]) == "Glow; Spa, London \\ Central, 1 High St, Flat 2;, London"
    assert str(event["description"]).startswith(  # a name stored with line breaks is shown on one line
        "Microneedling with Dr Ada END:VEVENT BEGIN:VEVENT SUMMARY:Free Botox."
    )
    lines = ics.split(b"\r\n")
    assert lines.count(b"BEGIN:VEVENT") == 1 and len([line for line in lines if line.startswith(b"ATTENDEE")]) == 1


def test_the_invitation_carries_no_control_character_from_a_patients_name(api, clinic, practitioner, frozen):
    patient = register(api, first_name=CONTROL_NAME)
    book(patient, WEDNESDAY, frozen)

    _, _, message = sent_email(frozen)
    ics, _ = calendar_part(message)

    lines = ics.decode("utf-8").split("\r\n")
    assert [line for line in lines if ICS_CONTROL.search(line)] == []


def test_the_invitations_lines_fold_within_75_octets_without_splitting_a_character(api, clinic, practitioner, frozen):
    practitioner.name = "Dr " + "\U0001f600" * 40 + LONG_WORD[:57]
    practitioner.save()
    clinic.name = "\u202b\u0639\u064a\u0627\u062f\u0629\u202c " + "Z" * 60
    clinic.save()
    first_name = "\u00e9" * 60 + "\U0001f600" * 40
    patient = register(api, first_name=first_name)
    book(patient, WEDNESDAY, frozen)

    _, _, message = sent_email(frozen)
    ics, _ = calendar_part(message)

    physical = ics.split(b"\r\n")
    assert [line for line in physical if len(line) > 75] == []
    for line in physical:
        line.decode("utf-8")  # each folded line is whole characters (RFC 5545 3.1: never split a UTF-8 sequence)
    [event] = Calendar.from_ical(ics).walk("VEVENT")
    assert str(event["description"]).startswith(f"Microneedling with {practitioner.name}.")
    assert str(event["summary"]) == f"Appointment at {clinic.name}"
    assert event["attendee"].params["CN"] == first_name


def test_a_practitioners_feed_is_served_whatever_line_break_their_name_holds(clinic, practitioner, patient, frozen):
    practitioner.name = "Dr Ada\r\nLovelace"
    practitioner.save()
    book(patient, WEDNESDAY, frozen)
    _, token = calendar_feed_create(now=frozen, practitioner=practitioner)

    client = http()
    client.raise_request_exception = False
    response = client.get(reverse("reminders:calendar_feed", args=[token]))

    assert response.status_code == 200, response.status_code
    calendar = Calendar.from_ical(response.content)
    assert "\n" not in str(calendar["x-wr-calname"])
    assert len(calendar.walk("VEVENT")) == 1


def test_a_practitioners_feed_keeps_hostile_words_inside_its_events(clinic, practitioner, patient, frozen):
    practitioner.name = f"Dr {HTML_ATTACK}; O'Neil, A \\ B"
    practitioner.save()
    book(patient, WEDNESDAY, frozen)
    _, token = calendar_feed_create(now=frozen, practitioner=practitioner)

    response = http().get(reverse("reminders:calendar_feed", args=[token]))

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'inline; filename="appointments.ics"'
    calendar = Calendar.from_ical(response.content)
    [event] = calendar.walk("VEVENT")
    assert str(event["description"]).startswith(f"Microneedling with {practitioner.name}.")
    assert [line for line in response.content.split(b"\r\n") if len(line) > 75] == []


# --- Texts ------------------------------------------------------------------------------------------------------------


def test_a_text_that_greets_by_name_goes_without_the_names_control_characters(api, clinic, practitioner, frozen):
    template = ReminderTemplate.objects.get(default_key="booking-confirmation")
    edit_confirmation(sms_text="Hi {{ patient_first_name }}, " + template.sms_text)
    patient = register(
        api, first_name=CONTROL_NAME, phone="+447911123457", reminder_channels=["sms"], sms_consent=True, email=""
    )
    appointment = book(patient, WEDNESDAY, frozen)

    dispatch_local(now=frozen)

    assert unsent(appointment) == []
    [text] = texts()
    assert text.startswith("Hi Ann") and ICS_CONTROL.sub("", text.replace("\n", "")) == text.replace("\n", "")


# --- Webhooks -----------------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("platform_ready")
def test_webhook_bodies_are_json_carrying_ids_and_codes_not_the_words_typed(api, clinic, practitioner, frozen):
    practitioner.name = f"Dr {HTML_ATTACK}\u2028"
    practitioner.save()
    register_webhook(api, "http://127.0.0.1:9/hooks")
    patient = register(api, first_name=HEADER_ATTACK, last_name=FORMULA)
    booked = api_book(api, patient, "2026-03-04T10:00:00+00:00", procedure="microneedling")
    refused = api.post(f"{API}/appointments/{booked['id']}/cancel/", {"reason": CONTROL_NAME}, format="json")
    assert refused.status_code == 400 and list(refused.json()["errors"]) == ["reason"], refused.content
    cancelled = api.post(f"{API}/appointments/{booked['id']}/cancel/", {"reason": FORMULA}, format="json")
    assert cancelled.status_code == 200, cancelled.content

    rows = OutboxMessage.objects.filter(channel="webhook", appointment_id=booked["id"])
    bodies = [json.dumps(row.payload, sort_keys=True, separators=(",", ":")) for row in rows]  # as dispatch sends it

    assert {json.loads(body)["type"] for body in bodies} == {"appointment.created", "appointment.cancelled"}
    for body in bodies:
        assert body.isascii()
        for typed in ("Bcc", "HYPERLINK", "onerror", "Ann", "\\u001b"):
            assert typed not in body, (typed, body)


# --- FHIR -------------------------------------------------------------------------------------------------------------


def test_fhir_carries_quotes_scripts_and_line_separators_as_data(api, clinic, practitioner, patient, frozen):
    practitioner.name = f"Dr {HTML_ATTACK}\u2028{LONG_WORD}"
    practitioner.save()
    clinic.name = 'Glow "Spa" \\ London'
    clinic.save()
    appointment = book(patient, WEDNESDAY, frozen)

    body = fhir_json(api.get(f"/fhir/r4/Appointment/{appointment.pk}"))

    FhirAppointment.model_validate(body)
    displays = [p["actor"].get("display") for p in body["participant"]]
    assert displays == [None, practitioner.name, clinic.name]


def test_fhir_strings_carry_no_control_character_from_a_patients_cancel_note(clinic, practitioner, patient, frozen):
    appointment = book(patient, WEDNESDAY, frozen)
    refused = http().post(portal_page(appointment, "cancel"), {"reason": "Running late\x07\x1b[31m sorry"})
    assert refused.status_code == 400 and Appointment.objects.get(pk=appointment.pk).status == "confirmed"
    assert "Control characters" in refused.content.decode()
    page = http().post(portal_page(appointment, "cancel"), {"reason": "Running late sorry"})
    assert page.status_code in (200, 302, 303), page.status_code
    Appointment.objects.filter(pk=appointment.pk).update(
        cancel_reason="Running late\x07\x1b[31m sorry"
    )  # stored before
    assert Appointment.objects.get(pk=appointment.pk).status == "cancelled"
    clinical = http(new_api_client(clinic, name="clinical-reader", clinical=True)[1])

    raw = clinical.get(f"/fhir/r4/Appointment/{appointment.pk}").content.decode()

    strings = fhir_strings(json.loads(raw))
    assert any("Running late" in s for s in strings)
    assert [s for s in strings if FHIR_CONTROL.search(s)] == []


# --- Pages --------------------------------------------------------------------------------------------------------------


def test_the_desks_pages_escape_names_notes_and_reasons(clinic, practitioner, patient, frozen):
    patient.first_name = HTML_ATTACK
    patient.save()
    practitioner.name = f"Dr {HTML_ATTACK}"
    practitioner.save()
    today = book(patient, ldn(2026, 3, 2, 11), frozen)
    later = book(patient, WEDNESDAY, frozen)
    Appointment.objects.filter(pk__in=[today.pk, later.pk]).update(notes=HTML_ATTACK)
    desk = staff_client(clinic, StaffRole.RECEPTIONIST, "desk-dec8b")
    cancelled = desk.post(
        reverse("frontdesk:cancel", args=[clinic.code, later.pk]),
        {"reason": HTML_ATTACK, "from_start_at": drawn_at(later)},
    )
    assert cancelled.status_code == 302, cancelled.status_code
    assert Appointment.objects.get(pk=later.pk).cancel_reason == HTML_ATTACK
    pages = {
        "today": (reverse("frontdesk:today", args=[clinic.code]), {}),
        "calendar": (reverse("frontdesk:calendar", args=[clinic.code]), {"date": "2026-03-02"}),
        "week": (
            reverse("frontdesk:calendar", args=[clinic.code]),
            {"date": "2026-03-02", "practitioner": str(practitioner.pk), "view": "week"},
        ),
        "schedule": (reverse("frontdesk:schedule", args=[clinic.code]), {}),
        "patient": (reverse("frontdesk:patient", args=[clinic.code, patient.pk]), {}),
        "patients": (reverse("frontdesk:patients", args=[clinic.code]), {"q": "img"}),
        "appointment": (reverse("frontdesk:appointment", args=[clinic.code, today.pk]), {}),
        "cancelled": (reverse("frontdesk:appointment", args=[clinic.code, later.pk]), {}),
    }
    found = {}
    for name, (path, query) in pages.items():
        response = desk.get(path, query)
        assert response.status_code == 200, (name, response.status_code)
        html = response.content.decode()
        found[name] = (injected(html), HTML_ATTACK in visible(html))
    assert found == {name: ([], True) for name in pages}


def test_the_desks_calendar_feed_is_json_the_browser_will_not_sniff(clinic, practitioner, patient, frozen):
    patient.first_name = HTML_ATTACK
    patient.save()
    book(patient, WEDNESDAY, frozen)
    desk = staff_client(clinic, StaffRole.RECEPTIONIST, "desk-dec8b-json")

    response = desk.get(
        reverse("frontdesk:calendar_events", args=[clinic.code]), {"start": "2026-03-02", "end": "2026-03-09"}
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["X-Content-Type-Options"] == "nosniff"
    [event] = response.json()["events"]
    assert event["patient"] == f"{HTML_ATTACK} Lee"


def test_the_patients_page_escapes_the_clinics_and_practitioners_names(clinic, practitioner, patient, frozen):
    clinic.name = f"Glow {HTML_ATTACK}"
    clinic.address = HTML_ATTACK
    clinic.save()
    practitioner.name = f"Dr {HTML_ATTACK}"
    practitioner.save()
    appointment = book(patient, WEDNESDAY, frozen)

    response = http().get(portal_page(appointment))

    assert response.status_code == 200
    html = response.content.decode()
    assert injected(html) == []
    assert f"Glow {HTML_ATTACK}" in visible(html)


def test_the_admin_escapes_names_in_its_lists_and_forms(clinic, practitioner, patient, frozen):
    patient.first_name = HTML_ATTACK
    patient.save()
    appointment = book(patient, WEDNESDAY, frozen)
    admin = superuser_client()

    pages = [
        url(Patient, "changelist"),
        url(Patient, "change", patient.pk),
        url(Appointment, "changelist"),
        url(Appointment, "change", appointment.pk),
        url(OutboxMessage, "changelist"),
        url(Practitioner, "changelist"),
    ]
    found = {}
    for page in pages:
        response = admin.get(page)
        assert response.status_code == 200, page
        found[page] = injected(response.content.decode())
    assert found == {page: [] for page in pages}


# --- What is taken in ------------------------------------------------------------------------------------------------


def test_unusual_but_real_names_are_kept_exactly_and_101_characters_refused(api, clinic):
    for name in (LONG_WORD, EMOJI_RTL, FORMULA, "+cmd|' /C calc'!A0", "O'Neil-Smith & Sons <Ltd>"):
        patient = register(api, first_name=name)
        assert patient.first_name == name
        assert api.get(f"{API}/patients/{patient.pk}/").json()["first_name"] == name

    response = api.post(
        f"{API}/patients/", {"first_name": LONG_WORD + "Y", "last_name": "Lee", "confirm_new": True}, format="json"
    )
    assert response.status_code == 400
    assert "first_name" in response.json()["errors"]


def test_the_api_refuses_control_characters_in_a_name_with_a_400_naming_the_field(api, clinic):
    answers = {}
    for value in (HEADER_ATTACK, CONTROL_NAME, "Ann\x1b]8;;http://evil.example\x07link"):
        response = api.post(
            f"{API}/patients/", {"first_name": value, "last_name": "Lee", "confirm_new": True}, format="json"
        )
        answers[value] = (response.status_code, list(response.json().get("errors", {})))
    assert answers == {value: (400, ["first_name"]) for value in answers}
    assert not Patient.objects.exists()


def test_the_desk_refuses_control_characters_in_a_name(clinic):
    desk = staff_client(clinic, StaffRole.RECEPTIONIST, "desk-dec8b-new")

    response = desk.post(
        reverse("frontdesk:patient_new", args=[clinic.code]),
        {"first_name": CONTROL_NAME, "last_name": "Lee\r\nBcc: intruder@evil.example", "confirm_new": "on"},
    )

    assert response.status_code == 200, response.status_code
    assert not Patient.objects.exists()


def test_the_api_refuses_an_email_address_with_a_control_character(api, clinic):
    response = api.post(
        f"{API}/patients/",
        {"first_name": "Ann", "last_name": "Lee", "email": '"x\x07"@mailbox.example', "confirm_new": True},
        format="json",
    )

    assert response.status_code == 400, response.content
    assert "email" in response.json()["errors"]
