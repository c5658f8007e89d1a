"""A review probe of a busy day at the front desk and of the patient who gets the messages and acts on them
(domain brief sections 4-6; docs/frontdesk.md, docs/portal.md, docs/reminders.md, docs/organisations.md), aimed at
what the other probes leave thin: a patient of two sites of one organisation (the messages, pages, links and
calendar files of each visit naming that visit's site), the desk's and the patient's acts meeting (a visit
cancelled or moved from the link, then what the desk shows and what goes next), STOP, START and unsubscribe
across two sites, double submits and bad values in the desk's forms, another organisation's clinician on the
desk's remaining addresses, and the calendar, grid, day sheet and API agreeing on a day.

Server-side only (Django's test client), messages read as the patient gets them (locmem e-mail, in-memory SMS)
after the real dispatcher (`dispatch_local`). Tenants: organisation "Bloom Group" with `d6-london` and its sister
site `d6-west` (both Europe/London, each its own phone and address); `d6-ny` of another organisation. The clock
stands at the suite's Monday, 2 March 2026, 09:00 London (`clock`) unless a test travels.

A defect is a strict xfail whose reason starts "DEFECT:", an undecided product question "QUESTION:".

Mended on 6 December (reminders/content.py, dispatch.py, views.py), their marks removed: a merged e-mail carries
each part's calendar file (a rebooking's cancellation and new booking as two files, each with its own METHOD) and
each visit's own "See, move or cancel" link; e-mails of two sites no longer go as one (each is its site's, from its
sender to its footer); the unsubscribe page names the organisation and every site whose e-mails stop. Decided the
same day: a cancellation (or move) notice whose visit's time has come when it goes is not sent; a desk booking form
sent twice goes to the booking made, "Already booked" (frontdesk/views/booking.py).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail
from django.test import Client
from django.urls import reverse

from clinic.models import Appointment, AppointmentStatus, AuditAction, AuditEvent, StaffRole
from reminders.channels import LocmemSmsBackend
from reminders.dispatch import dispatch_local
from reminders.links import manage_token
from reminders.models import ContactOptIn, MessageKind, OutboxMessage, OutboxStatus
from scheduler.booking import Actor, appointment_book, appointment_cancel
from tests.api.conftest import http, new_api_client
from tests.factories import (
    AppointmentFactory,
    ClinicFactory,
    OrganisationFactory,
    PatientFactory,
    PractitionerFactory,
)
from tests.qa.helpers import NOW, fresh_appointment, send_all_until, staff_client, texts, words

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("message_outboxes", "clock")]

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
DESK = Actor("desk@dec6d")
INBOUND_TOKEN = "dec6d-inbound"
ADA_MOBILE = "+447700900123"
LONDON_PHONE, WEST_PHONE = "020 7946 0958", "0117 496 0123"  # as the e-mails and pages print them


def ldn(y, m, d, hh=10, mm=0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=LONDON)


# --- Tenants and people ------------------------------------------------------------------------------------------


@pytest.fixture
def group(care_texts):
    return OrganisationFactory(code="d6-bloom", name="Bloom Group")


@pytest.fixture
def london(group):
    return ClinicFactory(
        code="d6-london", name="Bloom London", organisation=group, phone="+442079460958", address="1 London Road"
    )


@pytest.fixture
def west(group):
    return ClinicFactory(
        code="d6-west", name="Bloom West", organisation=group, phone="+441174960123", address="9 West Street"
    )


@pytest.fixture
def ny(care_texts):
    return ClinicFactory(code="d6-ny", name="Other Org NY", timezone="America/New_York")


@pytest.fixture
def hart(london):
    return PractitionerFactory(clinic=london, name="Dr Hart")


@pytest.fixture
def wes(west):
    return PractitionerFactory(clinic=west, name="Dr Wes")


@pytest.fixture
def dr_ny(ny):
    return PractitionerFactory(clinic=ny, name="Dr Chen")


@pytest.fixture
def ada(london):
    """Registered at London, treated at both sites; e-mail and texts on."""
    return PatientFactory(
        clinic=london,
        first_name="Ada",
        last_name="Lovel",
        email="ada@example.com",
        phone=ADA_MOBILE,
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )


@pytest.fixture
def nora(ny):
    return PatientFactory(clinic=ny, first_name="Zebedee", last_name="Quuxley", phone="+12125550199")


@pytest.fixture
def desk(london):
    return staff_client(london, StaffRole.RECEPTIONIST, "d6-reception")


@pytest.fixture
def doc(london):
    return staff_client(london, StaffRole.CLINICIAN, "d6-clinician")


# --- Helpers -----------------------------------------------------------------------------------------------------


def booked(patient, when, code="botox", *, practitioner, now=NOW) -> Appointment:
    return appointment_book(
        patient=patient, procedure_code=code, start_at=when, actor=DESK, now=now, practitioner_id=practitioner.pk
    ).appointment


def forget_sent() -> None:
    mail.outbox.clear()
    LocmemSmsBackend.outbox = []


def url(name: str, clinic, *args) -> str:
    return reverse(f"frontdesk:{name}", args=[clinic.code, *[str(getattr(a, "pk", a)) for a in args]])


def uid(appointment) -> str:
    return f"UID:appointment-{appointment.pk}@clinic-scheduling"


def calendar_files() -> list[tuple[str, str]]:
    """Every calendar file the patient was e-mailed: (the MIME part's method, the file's text)."""
    return [
        (part.get_param("method"), part.get_payload(decode=True).decode())
        for email in mail.outbox
        for part in email.attachments
        if part.get_content_type() == "text/calendar"
    ]


def portal_path(link: str) -> str:
    """The path of a patient's link as a message carries it (https://clinic.example/my/<token>/)."""
    return link.removeprefix("https://clinic.example")


def link_in(text: str, appointment) -> str:
    """The link to `appointment`'s page in a text or e-mail (the token starts with the appointment's id)."""
    found = re.search(rf"https://clinic\.example/my/{appointment.pk.hex}\.[^\s/]+/", text)
    assert found, text
    return found.group(0)


def reply(client, body: str, sender: str = ADA_MOBILE):
    return client.post(f"/reminders/sms/inbound/?token={INBOUND_TOKEN}", {"From": sender, "Body": body})


def state() -> tuple:
    """What a desk form may write, to show a refused one wrote nothing."""
    return (
        sorted(
            map(str, Appointment.objects.values_list("id", "status", "start_at", "practitioner_id", "cancel_reason"))
        ),
        AuditEvent.objects.count(),
        OutboxMessage.objects.count(),
    )


def Client_one_click(path: str):
    """A mail client's RFC 8058 one-click unsubscribe: a POST with no session and no CSRF token."""
    return Client(enforce_csrf_checks=True).post(path, {"List-Unsubscribe": "One-Click"})


def says_what_is_wrong(response) -> bool:
    body = response.content.decode()
    return "field-error__text" in body or "alert--error" in body or "errorlist" in body


@pytest.fixture
def inbound(settings):
    settings.SMS_INBOUND_TOKEN = INBOUND_TOKEN
    settings.SMS_INBOUND_URL = ""


@pytest.fixture
def two_sites(ada, hart, wes):
    """Botox at London on Tuesday 10 March 10:00 (booked now), filler at West on Thursday 12 March 10:00 (booked an
    hour later, so each confirmation goes alone); both confirmations sent, then the outboxes emptied."""
    at_london = booked(ada, ldn(2026, 3, 10), practitioner=hart)
    dispatch_local(now=NOW)
    later = NOW + timedelta(hours=1)
    with time_machine.travel(later, tick=False):
        at_west = booked(ada, ldn(2026, 3, 12), "filler", practitioner=wes, now=later)
        dispatch_local(now=later)
    assert len(mail.outbox) == 2 and len(texts()) == 2
    sent = {"mail": list(mail.outbox), "texts": texts()}
    forget_sent()
    return fresh_appointment(at_london), fresh_appointment(at_west), sent


# === A patient of two sites: each visit's messages name its own site ================================================


def test_texts_about_visits_at_two_sites_each_name_their_site_and_their_own_link(ada, hart, wes):
    """docs/reminders.md: texts name the clinic (its name for texts) and "Confirmations and reminders link to the
    patient's page for this appointment". Two visits booked in the same minute may go as one text; each part
    still names its own site and carries its own visit's link."""
    at_london = booked(ada, ldn(2026, 3, 10), practitioner=hart)
    at_west = booked(ada, ldn(2026, 3, 12), "filler", practitioner=wes)
    dispatch_local(now=NOW)
    parts = [part for body in texts() for part in body.split("\n\n")]
    [london_part] = [p for p in parts if "Tue 10 Mar" in p]
    [west_part] = [p for p in parts if "Thu 12 Mar" in p]
    assert london_part.startswith("Bloom London:") and at_london.pk.hex in london_part
    assert west_part.startswith("Bloom West:") and at_west.pk.hex in west_part
    assert at_west.pk.hex not in london_part and at_london.pk.hex not in west_part


def test_a_sister_sites_visit_sent_alone_is_that_sites_from_sender_to_footer(two_sites):
    """docs/reminders.md, "The clinic's own": "From the clinic's sender name ... its phone (national format), address
    and map link close every e-mail". Each confirmation, sent on its own, is its site's throughout."""
    _, _, sent = two_sites
    by_site = {email.from_email.split(" <")[0]: email for email in sent["mail"]}
    assert set(by_site) == {"Bloom London", "Bloom West"}
    london_mail, west_mail = by_site["Bloom London"], by_site["Bloom West"]
    assert "Tue 10 Mar" in london_mail.body and LONDON_PHONE in london_mail.body and "1 London Road" in london_mail.body
    assert "Thu 12 Mar" in west_mail.body and WEST_PHONE in west_mail.body and "9 West Street" in west_mail.body
    assert LONDON_PHONE not in west_mail.body and "1 London Road" not in west_mail.body


def test_two_visits_booked_in_one_call_each_reach_the_patients_calendar(ada, hart):
    """docs/reminders.md: a confirmation goes "at booking, with .ics"; "One message, not two in the same minute ...
    every text kept". A receptionist books Botox and filler back to back for one patient."""
    botox = booked(ada, ldn(2026, 3, 10), practitioner=hart)
    filler = booked(ada, ldn(2026, 3, 10, 10, 30), "filler", practitioner=hart)
    dispatch_local(now=NOW)
    assert all("The attached calendar file adds it" in email.body for email in mail.outbox)
    files = calendar_files()
    assert any(uid(botox) in ics for _, ics in files)
    assert any(uid(filler) in ics for _, ics in files)


def test_each_visit_confirmed_by_email_carries_a_link_to_its_own_page(ada, hart):
    """docs/reminders.md, "Act from the message": "Confirmations and reminders link to the patient's page for this
    appointment"."""
    botox = booked(ada, ldn(2026, 3, 10), practitioner=hart)
    filler = booked(ada, ldn(2026, 3, 10, 10, 30), "filler", practitioner=hart)
    dispatch_local(now=NOW)
    bodies = "\n".join(email.body for email in mail.outbox)
    assert f"/my/{botox.pk.hex}." in bodies
    assert f"/my/{filler.pk.hex}." in bodies


def test_visits_at_two_sites_booked_together_are_each_told_with_their_own_sites_details(ada, hart, wes):
    """docs/reminders.md, "The clinic's own": "From the clinic's sender name, replies to its address; its phone
    (national format), address and map link close every e-mail"; docs/organisations.md: appointments, contact
    details and look belong to a clinic. The patient must learn where to go and whom to call for each visit."""
    booked(ada, ldn(2026, 3, 10), practitioner=hart)
    booked(ada, ldn(2026, 3, 12), "filler", practitioner=wes)
    dispatch_local(now=NOW)
    about_west = [email for email in mail.outbox if "Thu 12 Mar" in email.body]
    about_london = [email for email in mail.outbox if "Tue 10 Mar" in email.body]
    assert about_west and about_london
    for email in about_west:
        assert WEST_PHONE in email.body and "9 West Street" in email.body
    for email in about_london:
        assert LONDON_PHONE in email.body and "1 London Road" in email.body
    for email in mail.outbox:
        sender = email.from_email.split(" <")[0]
        assert sender == "Bloom West" or "9 West Street" not in email.body.split("\n--\n")[-1]
        assert sender == "Bloom London" or "1 London Road" not in email.body.split("\n--\n")[-1]


def test_a_rebooking_cancels_the_old_calendar_entry_and_adds_the_new_one(ada, hart):
    """docs/reminders.md: "a cancellation carries a calendar file with METHOD:CANCEL for the same UID, so the entry
    disappears"; a confirmation goes "with .ics". Olivia phones: not Tuesday, Wednesday instead; the desk cancels
    and books anew (a different treatment day, not a move)."""
    tuesday = booked(ada, ldn(2026, 3, 10), practitioner=hart)
    dispatch_local(now=NOW)
    forget_sent()
    later = NOW + timedelta(hours=1)
    with time_machine.travel(later, tick=False):
        appointment_cancel(appointment=fresh_appointment(tuesday), actor=DESK, now=later)
        wednesday = booked(ada, ldn(2026, 3, 11), practitioner=hart, now=later)
        dispatch_local(now=later)
    files = calendar_files()
    assert any(method == "CANCEL" and uid(tuesday) in ics and "METHOD:CANCEL" in ics for method, ics in files)
    assert any(method == "REQUEST" and uid(wednesday) in ics and "METHOD:REQUEST" in ics for method, ics in files)
    assert not any(method == "CANCEL" and uid(wednesday) in ics for method, ics in files)


def test_the_page_of_a_sister_site_visit_is_that_sites(client, two_sites):
    """docs/portal.md: the page shows "practitioner, clinic"; "Move and Cancel until the cancellation window begins";
    at the foot "its phone in national format as a tel: link ... address". The West visit's link opens West's page."""
    _, at_west, sent = two_sites
    [west_text] = [t for t in sent["texts"] if t.startswith("Bloom West:")]
    page = client.get(portal_path(link_in(west_text, at_west)))
    assert page.status_code == 200
    seen = words(page)
    assert "Bloom West" in seen and WEST_PHONE in seen and "9 West Street" in seen and "Dr Wes" in seen
    assert "Bloom London" not in seen and LONDON_PHONE not in seen and "Dr Hart" not in seen
    assert "Thursday 12 March 2026" in seen and "Move appointment" in seen and "Cancel appointment" in seen


def test_the_patients_calendar_link_lists_both_sites_visits_each_at_its_site(client, two_sites):
    """docs/portal.md, "A calendar link": "a private iCalendar feed of all their appointments"; docs/reminders.md:
    each appointment one VEVENT with the clinic's location."""
    at_london, at_west, _ = two_sites
    answer = client.post(reverse("portal:calendar", args=[manage_token(at_west)]), follow=True)
    feed_link = re.search(r'href="(https://clinic\.example/reminders/calendar/[^"]+\.ics)"', answer.content.decode())
    assert feed_link, words(answer)
    feed = client.get(portal_path(feed_link.group(1))).content.decode().replace("\r\n ", "")
    events = feed.split("BEGIN:VEVENT")[1:]
    assert len(events) == 2
    [london_event] = [e for e in events if uid(at_london) in e]
    [west_event] = [e for e in events if uid(at_west) in e]
    assert "LOCATION:Bloom London\\, 1 London Road" in london_event
    assert "LOCATION:Bloom West\\, 9 West Street" in west_event


def test_the_unsubscribe_page_from_a_sister_sites_email_names_what_stops(client, two_sites):
    """docs/organisations.md: consent and opt-outs belong to the organisation; docs/portal.md: the SMS wording names
    "the organisation and every clinic of it, since a visit's texts come from the visit's clinic"."""
    _, _, sent = two_sites
    [west_mail] = [email for email in sent["mail"] if email.from_email.startswith("Bloom West")]
    path = west_mail.extra_headers["List-Unsubscribe"][1:-1].removeprefix("https://clinic.example")
    asked = words(client.get(path))
    assert "Bloom West" in asked or "Bloom Group" in asked
    done = words(client.post(path))
    assert "Bloom West" in done or "Bloom Group" in done


# === Acting on the links: what the desk shows and what goes next =====================================================


def test_cancelling_the_west_visit_from_its_text_leaves_the_london_visit_and_its_messages(client, two_sites, west):
    """docs/portal.md: POST cancels "with the patient as the actor", "every ... reminder and webhook applies exactly
    as for staff"; docs/reminders.md, "cancelled": "unsent rows cancelled; a cancellation notice"; the desk's
    calendar leaves cancelled visits out. From here on the patient hears of London's visit as before, of West's only
    that it is cancelled, each message naming its own site."""
    at_london, at_west, sent = two_sites
    [west_text] = [t for t in sent["texts"] if t.startswith("Bloom West:")]
    link = portal_path(link_in(west_text, at_west))
    moment = ldn(2026, 3, 3, 12)
    with time_machine.travel(moment, tick=False):
        answer = client.post(link + "cancel/", {"reason": "Cannot make Thursday"})
        assert answer.status_code == 303
        again = client.post(link + "cancel/", {"reason": "Cannot make Thursday"})  # the double tap
        assert again.status_code == 409 and "already cancelled" in words(again)
    assert fresh_appointment(at_west).status == AppointmentStatus.CANCELLED
    assert fresh_appointment(at_london).status == AppointmentStatus.CONFIRMED
    [event] = AuditEvent.objects.filter(appointment=at_west, action=AuditAction.CANCELLED)
    assert event.actor_label == f"patient {at_west.patient_id}"

    with time_machine.travel(moment, tick=False):
        west_desk = staff_client(west, StaffRole.RECEPTIONIST, "d6-west-reception")  # signed in that day
        day = west_desk.get(url("calendar_events", at_west.clinic), {"start": "2026-03-12", "end": "2026-03-13"})
        assert day.json()["events"] == []
        sheet = west_desk.get(url("day_sheet", at_west.clinic), {"date": "2026-03-12"})
        assert "Ada Lovel" not in words(sheet)
        page = west_desk.get(url("appointment", at_west.clinic, at_west))
        assert "Cancelled" in words(page) and "Cannot make Thursday" in words(page)

    send_all_until(ldn(2026, 3, 12, 12), start=moment, step=timedelta(hours=3))
    parts = [part for body in texts() for part in body.split("\n\n")]
    west_parts = [p for p in parts if p.startswith("Bloom West")]
    assert len(west_parts) == 1 and "Thu 12 Mar, 10:00 (GMT) is cancelled" in west_parts[0]
    london_parts = [p for p in parts if p.startswith("Bloom London")]
    assert any("a reminder of your appointment tomorrow, Tue 10 Mar" in p for p in london_parts)
    assert all("12 Mar" not in p for p in london_parts) and all("10 Mar" not in p for p in west_parts)
    west_mail = [email for email in mail.outbox if email.from_email.startswith("Bloom West")]
    assert len(west_mail) == 1 and "is cancelled" in west_mail[0].subject
    assert not OutboxMessage.objects.filter(
        appointment=at_west, status__in=[OutboxStatus.PENDING, OutboxStatus.HELD]
    ).exclude(channel="webhook")
    # The old link still opens the page, which now only says so and offers nothing to do.
    with time_machine.travel(moment + timedelta(days=1), tick=False):
        after = client.get(link)
    assert after.status_code == 200 and "This appointment is cancelled" in words(after)
    assert "Move appointment" not in words(after) and "Cancel appointment" not in words(after)


def test_a_move_from_the_link_shows_on_the_desk_and_the_api_and_is_told_once(client, two_sites, desk):
    """docs/portal.md: POST moves it "under a fresh link"; docs/reminders.md: "unsent reminders move (the same rows,
    never duplicated) ... a change notice goes after a grace period". The desk's calendar, day sheet and the API all
    show the new day; the patient hears of the move once and is reminded once, for the new time."""
    at_london, _, sent = two_sites
    [london_text] = [t for t in sent["texts"] if t.startswith("Bloom London:")]
    link = portal_path(link_in(london_text, at_london))
    move = client.get(link + "move/")
    [first_on_the_11th] = re.findall(r'name="slot" value="(20260311T\d{4}Z_[0-9a-f-]+)"', move.content.decode())[:1]
    assert client.post(link + "move/confirm/", {"slot": first_on_the_11th}).status_code == 303
    moved = fresh_appointment(at_london)
    assert moved.start_at.astimezone(LONDON).date().isoformat() == "2026-03-11"

    ids = {
        day: [
            e["id"] for e in desk.get(url("calendar_events", moved.clinic), {"start": day, "end": end}).json()["events"]
        ]
        for day, end in (("2026-03-10", "2026-03-11"), ("2026-03-11", "2026-03-12"))
    }
    assert ids == {"2026-03-10": [], "2026-03-11": [str(moved.pk)]}
    assert "Ada Lovel" in words(desk.get(url("day_sheet", moved.clinic), {"date": "2026-03-11"}))
    api = http(new_api_client(moved.clinic)[1])
    listed = api.get("/api/v1/appointments/", {"patient": str(moved.patient_id)}).json()["results"]
    assert [(a["id"], a["start"]) for a in listed] == [(str(moved.pk), moved.start_at.isoformat())]

    send_all_until(moved.start_at - timedelta(minutes=1), start=NOW + timedelta(minutes=6), step=timedelta(hours=2))
    london_parts = [p for body in texts() for p in body.split("\n\n") if p.startswith("Bloom London")]
    assert len([p for p in london_parts if "has moved" in p]) == 1
    assert len([p for p in london_parts if "a reminder of your appointment" in p]) == 1
    assert all("Tue 10 Mar" not in p for p in london_parts if "has moved" not in p)


# === STOP, START and unsubscribe across two sites ==================================================================


def test_a_stop_silences_both_sites_texts_and_a_start_brings_each_reminder_back_once(client, inbound, two_sites):
    """docs/reminders.md, "Inbound SMS": STOP "turns SMS off for every patient with that number"; START "undo[es] a
    STOP ... the texts of their coming appointments are planned again". Consent is the organisation's record: one
    STOP silences both sites' texts and leaves e-mail alone; one START brings each site's reminder back, once."""
    at_london, at_west, _ = two_sites
    with time_machine.travel(ldn(2026, 3, 3, 12), tick=False):
        assert reply(client, "STOP").status_code == 200
    send_all_until(ldn(2026, 3, 10, 9), start=ldn(2026, 3, 3, 12), step=timedelta(hours=6))
    assert texts() == []
    assert [e.from_email.split(" <")[0] for e in mail.outbox] == ["Bloom London"]  # the e-mail reminder goes on
    with time_machine.travel(ldn(2026, 3, 10, 12), tick=False):
        assert reply(client, "START").status_code == 200
    send_all_until(ldn(2026, 3, 12, 9), start=ldn(2026, 3, 10, 12), step=timedelta(hours=3))
    parts = [p for body in texts() for p in body.split("\n\n")]
    assert [p for p in parts if p.startswith("Bloom London")] == []  # London's visit began before the START
    west_reminders = [p for p in parts if "a reminder of your appointment" in p]
    assert len(west_reminders) == 1 and west_reminders[0].startswith("Bloom West") and "Thu 12 Mar" in west_reminders[0]
    assert not [p for p in parts if "is booked" in p]  # no confirmation again
    skipped = OutboxMessage.objects.filter(appointment=at_london, channel="sms", status=OutboxStatus.SKIPPED)
    assert {row.kind for row in skipped} == {MessageKind.REMINDER, MessageKind.PRE_CARE}
    assert OutboxMessage.objects.filter(appointment=at_west, channel="sms", kind=MessageKind.REMINDER).count() == 1


def test_unsubscribing_from_a_west_email_stops_both_sites_emails_and_no_texts(two_sites):
    """docs/reminders.md, "Unsubscribe": one-click POST; "take effect for messages already planned". One record per
    organisation: a West e-mail's link stops London's e-mails as well; texts from both sites go on."""
    _, _, sent = two_sites
    [west_mail] = [email for email in sent["mail"] if email.from_email.startswith("Bloom West")]
    path = west_mail.extra_headers["List-Unsubscribe"][1:-1].removeprefix("https://clinic.example")
    with time_machine.travel(ldn(2026, 3, 3, 12), tick=False):
        assert Client_one_click(path).status_code == 200
    send_all_until(ldn(2026, 3, 12, 9), start=ldn(2026, 3, 3, 12), step=timedelta(hours=3))
    assert mail.outbox == []
    senders = {p.split(":")[0] for body in texts() for p in body.split("\n\n")}
    assert senders == {"Bloom London", "Bloom West"}


# === The desk's forms: double submits, bad values ==================================================================


def test_a_double_submitted_desk_booking_books_once_and_confirms_once(ada, hart, desk):
    """docs/architecture (README): every booking write locks the patient and the practitioner and re-checks, "so
    two concurrent requests cannot both ... take a slot". A receptionist's double click books one visit, and the
    patient gets one confirmation per channel."""
    form = {"procedure": "botox", "date": "2026-03-10", "time": "10:00", "practitioner": str(hart.pk)}
    first = desk.post(url("book_submit", hart.clinic, ada), form)
    second = desk.post(url("book_submit", hart.clinic, ada), form)
    assert first.status_code == 302 and second.status_code in (302, 409)
    [visit] = Appointment.objects.filter(patient=ada)
    assert visit.start_at == ldn(2026, 3, 10)
    dispatch_local(now=NOW)
    assert len(mail.outbox) == 1 and len(texts()) == 1


def test_the_second_click_of_a_desk_booking_is_not_told_it_was_not_booked(ada, hart, desk):
    """Was a QUESTION: decided on 6 December, the second sending goes to the booking made, "Already booked"
    (docs/frontdesk.md)."""
    form = {"procedure": "botox", "date": "2026-03-10", "time": "10:00", "practitioner": str(hart.pk)}
    desk.post(url("book_submit", hart.clinic, ada), form)
    second = desk.post(url("book_submit", hart.clinic, ada), form)
    assert second.status_code == 302 and "Not booked" not in words(second)


def test_a_double_submitted_desk_move_is_one_move_and_one_notice(ada, hart, desk):
    """docs/portal.md: "A move sent twice (a double tap, a resent form) is one move: the second ... changes, records
    and announces nothing (... the same for staff and the API)"."""
    visit = booked(ada, ldn(2026, 3, 10), practitioner=hart)
    dispatch_local(now=NOW)
    forget_sent()
    form = {"date": "2026-03-11", "time": "11:00", "practitioner": str(hart.pk)}
    assert desk.post(url("reschedule", hart.clinic, visit), form).status_code == 302
    assert desk.post(url("reschedule", hart.clinic, visit), form).status_code == 302
    assert fresh_appointment(visit).start_at == ldn(2026, 3, 11, 11)
    assert AuditEvent.objects.filter(appointment=visit, action=AuditAction.RESCHEDULED).count() == 1
    send_all_until(ldn(2026, 3, 2, 12), start=NOW + timedelta(minutes=6), step=timedelta(hours=1))
    assert len([t for t in texts() if "has moved" in t]) == 1
    assert len([e for e in mail.outbox if "moved" in e.subject]) == 1


@pytest.mark.parametrize(
    ("field", "form"),
    [
        ("time", {"date": "2026-03-02", "time": "08:30"}),  # earlier today
        ("date", {"date": "2026-03-01"}),  # yesterday, no time
        ("date", {"date": "2026-02-30", "time": "10:00"}),
        ("date", {"date": "1899-03-10", "time": "10:00"}),
        ("date", {"date": "10/03/2026x", "time": "10:00"}),
        ("time", {"date": "2026-03-10", "time": "25:00"}),
        ("start_at", {"start_at": "2026-03-10T10:00:00"}),  # no offset
        ("start_at", {"start_at": "yesterday"}),
    ],
    ids=["earlier-today", "past-day", "30-feb", "year-1899", "junk-date", "hour-25", "naive-start", "junk-start"],
)
def test_a_desk_move_with_a_bad_time_says_so_and_changes_nothing(ada, hart, desk, field, form):
    """docs/frontdesk.md: "InvalidInput becomes an error next to the field it names ... No bad input answers 500";
    "a past day is an error". Nothing moves, nothing is planned or told."""
    visit = booked(ada, ldn(2026, 3, 10), practitioner=hart)
    before = state()
    answer = desk.post(url("reschedule", hart.clinic, visit), form)
    assert answer.status_code in (200, 400, 409), answer.status_code
    assert says_what_is_wrong(answer), words(answer)[-600:]
    assert state() == before


def test_a_desk_move_to_a_sister_sites_or_another_organisations_practitioner_changes_nothing(
    ada, hart, wes, dr_ny, desk
):
    """docs/organisations.md: "A move stays at its clinic"; "anything of another organisation: not found"."""
    visit = booked(ada, ldn(2026, 3, 10), practitioner=hart)
    before = state()
    for practitioner in (wes, dr_ny, "not-an-id"):
        form = {"date": "2026-03-11", "time": "10:00", "practitioner": str(getattr(practitioner, "pk", practitioner))}
        answer = desk.post(url("reschedule", hart.clinic, visit), form)
        assert answer.status_code in (200, 400, 409) and says_what_is_wrong(answer), practitioner
        assert "Dr Chen" not in words(answer)
    assert state() == before


def test_cancelling_a_visit_that_is_already_over_sends_the_patient_no_notice(ada, hart):
    """Decided 6 December (the QUESTION this probe asked): a receptionist tidying Today's "Visits with no outcome yet"
    by cancelling yesterday's visit sends no "your appointment ... is cancelled" a day after it. A cancellation or
    move notice whose visit's time has come when it goes is cancelled, with why, as "Send again" refuses it
    (docs/reminders.md, "cancelled")."""
    visit = booked(ada, ldn(2026, 3, 3), practitioner=hart)
    send_all_until(ldn(2026, 3, 3, 9, 30), start=NOW, step=timedelta(hours=3))
    forget_sent()
    moment = ldn(2026, 3, 4, 9)
    with time_machine.travel(moment, tick=False):
        desk = staff_client(hart.clinic, StaffRole.RECEPTIONIST, "d6-next-day")
        assert "Visits with no outcome yet" in words(desk.get(url("today", hart.clinic)))
        assert desk.post(url("cancel", hart.clinic, visit), {"reason": "tidy up"}).status_code == 302
    send_all_until(ldn(2026, 3, 5, 12), start=moment, step=timedelta(hours=1))
    assert texts() == [] and mail.outbox == []


def test_staff_notes_and_the_desks_cancel_reason_never_reach_the_patient(client, ada, hart, desk):
    """docs/frontdesk.md: notes are "staff only, never sent to the patient". Nor is the desk's reason for a
    cancellation: neither appears in a text, an e-mail, a calendar file or the patient's page."""
    visit = booked(ada, ldn(2026, 3, 10), practitioner=hart)
    second = booked(ada, ldn(2026, 3, 12), practitioner=hart)
    assert desk.post(url("notes", hart.clinic, visit), {"notes": "NOTE-ZX9 anxious, owes fee"}).status_code == 302
    assert desk.post(url("cancel", hart.clinic, second), {"reason": "REASON-QK7 rude on phone"}).status_code == 302
    send_all_until(ldn(2026, 3, 10, 12), start=NOW, step=timedelta(hours=4))
    seen = [*texts(), *(e.body for e in mail.outbox), *(ics for _, ics in calendar_files())]
    seen += [client.get(reverse("portal:manage", args=[manage_token(a)])).content.decode() for a in (visit, second)]
    assert mail.outbox and texts()
    assert not [s for s in seen if "NOTE-ZX9" in s or "REASON-QK7" in s]


# === Another organisation's clinician on the desk's remaining addresses ============================================


def test_another_organisations_clinician_reaches_nothing_here(ada, hart, nora, dr_ny, ny):
    """docs/frontdesk.md: "a clinic, patient or appointment of another clinic answers 404, exactly like one that does
    not exist"; a clinician of New York (another organisation) acts on nothing of Bloom's: the clinician's actions,
    the merge, the merge warning check, the calendar's in-place steps and the day views filtered by a practitioner
    of theirs (tests/qa/test_frontdesk_workflows_probe.py sweeps the receptionist's addresses)."""
    ny_doc = staff_client(ny, StaffRole.CLINICIAN, "d6-ny-clinician")
    started = AppointmentFactory(
        patient=ada, practitioner=hart, start_at=NOW - timedelta(hours=1), end_at=NOW - timedelta(minutes=30)
    )
    before = state()
    london = hart.clinic
    posts = [
        (url("clear", london, started), {"reason": "mine"}),
        (url("complete", london, started), {}),
        (url("no_show", london, started), {}),
        (url("check_in", london, started), {}),
        (url("notes", london, started), {"notes": "x"}),
        (url("clear", ny, started), {"reason": "mine"}),
        (url("complete", ny, started), {}),
        (url("patient_merge", ny, ada), {"into": str(nora.pk)}),
        (url("merge_warning_check", ny, ada), {"merge": "x", "appointment": str(started.pk), "message": "x"}),
        (url("book_submit", ny, ada), {"procedure": "botox", "date": "2026-03-10", "time": "10:00"}),
    ]
    for path, body in posts:
        answer = ny_doc.post(path, body)
        assert answer.status_code == 404, (path, answer.status_code)
        assert "Lovel" not in answer.content.decode(), path
    # Their own patient merged into ours: the id in the body is no such record here (a 400 on their page).
    into_ours = ny_doc.post(url("patient_merge", ny, nora), {"into": str(ada.pk)})
    assert into_ours.status_code in (400, 404) and "Lovel" not in into_ours.content.decode()
    for path in (
        url("appointment", ny, started),
        url("patient", ny, ada),
        url("calendar_book_patient", ny, ada) + f"?practitioner={dr_ny.pk}",
        url("day_sheet", london),
        url("calendar", london),
    ):
        answer = ny_doc.get(path)
        assert answer.status_code == 404 and "Lovel" not in answer.content.decode(), path
    for name in ("day_sheet", "calendar", "schedule"):
        answer = ny_doc.get(url(name, ny), {"date": "2026-03-02", "practitioner": str(hart.pk)})
        assert answer.status_code in (200, 400) and "Lovel" not in answer.content.decode(), name
    events = ny_doc.get(url("calendar_events", ny), {"start": "2026-03-02", "end": "2026-03-03"})
    assert events.status_code == 200 and "Lovel" not in events.content.decode()
    assert state() == before


# === One day, four views: the calendar's feed and grid, the day sheet, the API ===================================


def test_the_calendar_grid_day_sheet_today_and_api_list_the_same_visits(ada, hart, wes, london, west, nora, dr_ny):
    """docs/frontdesk.md: the calendar, the day sheet and Today come "from the same data", cancelled visits left out
    unless asked; docs/api.md: appointments `?start_after=&start_before=` at the granted clinics. On a busy Tuesday
    at London (confirmed, held, cancelled, flagged, a late one running past midnight, a West visit of the same
    patient, a visit of another organisation) every view names the same London visits."""
    bea = PatientFactory(clinic=london, first_name="Bea", last_name="Tally", phone="+447700900222")

    def visit(patient, site, practitioner, hh, mm=0, status=AppointmentStatus.CONFIRMED):
        start = ldn(2026, 3, 10, hh, mm)
        return AppointmentFactory(
            patient=patient, clinic=site, practitioner=practitioner, start_at=start,
            end_at=start + timedelta(minutes=30), status=status,
        )  # fmt: skip

    shown = [
        visit(ada, london, hart, 9),
        visit(bea, london, hart, 10, status=AppointmentStatus.PENDING_CLEARANCE),
        visit(bea, london, hart, 12, status=AppointmentStatus.NEEDS_REVIEW),
        visit(bea, london, hart, 23, 45),
    ]
    cancelled = visit(ada, london, hart, 11, status=AppointmentStatus.CANCELLED)
    visit(ada, west, wes, 13)
    AppointmentFactory(patient=nora, practitioner=dr_ny, start_at=ldn(2026, 3, 10, 14), end_at=ldn(2026, 3, 10, 15))
    expected = [str(a.pk) for a in shown]

    with time_machine.travel(ldn(2026, 3, 10, 8), tick=False):
        desk = staff_client(london, StaffRole.RECEPTIONIST, "d6-busy-day")
        feed = desk.get(url("calendar_events", london), {"start": "2026-03-10", "end": "2026-03-11"}).json()
        grid = desk.get(url("calendar", london), {"date": "2026-03-10"}).content.decode()
        sheet = words(desk.get(url("day_sheet", london), {"date": "2026-03-10"}))
        today = desk.get(url("today", london)).content.decode()
        api = http(new_api_client(london)[1])
        listed = api.get(
            "/api/v1/appointments/",
            {"start_after": ldn(2026, 3, 10, 0).isoformat(), "start_before": ldn(2026, 3, 11, 0).isoformat()},
        ).json()["results"]

    assert [e["id"] for e in feed["events"]] == expected
    assert list(dict.fromkeys(re.findall(r"/appointments/([0-9a-f-]{36})/", grid))) == expected
    assert re.findall(r"\d\d:\d\d–\d\d:\d\d", sheet) == ["09:00–09:30", "10:00–10:30", "12:00–12:30", "23:45–00:15"]
    assert list(dict.fromkeys(re.findall(r"/appointments/([0-9a-f-]{36})/", today))) == expected
    assert [a["id"] for a in listed if a["status"] != "cancelled"] == expected
    assert [a["id"] for a in listed if a["status"] == "cancelled"] == [str(cancelled.pk)]
    assert {a["start"] for a in listed if a["status"] != "cancelled"} == {e["start"] for e in feed["events"]}


def test_texts_switched_back_on_from_the_west_page_are_agreed_for_every_site(client, inbound, two_sites):
    """docs/portal.md, "Messages from us": SMS back on "only with the consent box ticked", recorded with "the wording
    ticked (... for an organisation of several, the organisation and every clinic of it, since a visit's texts come
    from the visit's clinic)". After a STOP, the patient turns texts back on from the West visit's page; the words
    shown and recorded name both sites, and both sites' texts resume."""
    at_london, at_west, sent = two_sites
    with time_machine.travel(ldn(2026, 3, 3, 12), tick=False):
        assert reply(client, "STOP").status_code == 200
        [west_text] = [t for t in sent["texts"] if t.startswith("Bloom West:")]
        link = portal_path(link_in(west_text, at_west))
        shown = words(client.get(link))
        assert "Bloom Group (Bloom London, Bloom West)" in shown
        saved = client.post(link + "preferences/", {"email": "on", "sms": "on", "sms_consent": "on", "care": "on",
                                                    "reminders": "on"})  # fmt: skip
        assert saved.status_code == 303
    opt_in = ContactOptIn.objects.get(patient=at_west.patient, channel="sms")
    assert "Bloom Group (Bloom London, Bloom West)" in opt_in.wording
    send_all_until(ldn(2026, 3, 12, 9), start=ldn(2026, 3, 3, 12), step=timedelta(hours=3))
    reminded = [p for body in texts() for p in body.split("\n\n") if "a reminder of your appointment" in p]
    assert sorted(p.split(":")[0] for p in reminded) == ["Bloom London", "Bloom West"]
    assert at_london.pk.hex in next(p for p in reminded if p.startswith("Bloom London"))
