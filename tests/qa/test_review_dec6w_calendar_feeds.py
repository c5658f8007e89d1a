"""A review probe of the private calendar feeds (reminders/feeds.py, `CalendarFeed`, `/reminders/calendar/<token>.ics`)
and the .ics e-mailed with a booking (reminders/content.py), read as a calendar app reads them: parsed with `icalendar`,
the raw bytes checked against RFC 5545 (folding, escaping), the zones read through the file's own VTIMEZONE (dateutil).

Aimed at what tests/reminders/test_feeds.py, test_ics_timezones.py and the QA probes (test_integrations_probe.py,
test_time_zones_probe.py, test_review_dec6g_integrations.py, test_merge_harm_probe.py, test_portal_selfservice_probe.py)
leave out: text a clinic writes (commas, semicolons, backslashes, quotes, non-ASCII, an address line "END:VEVENT")
kept inside its property; lines folded at 75 octets on UTF-8 boundaries; nothing the desk, a clinician or the patient
wrote (notes, a clearance or cancel reason, a condition, contact details) in either feed; a visit moved across the
clock change in the half-hour zones of St John's and Adelaide, and one in their repeated hour; a merged patient's two
links serving one calendar; HEAD and conditional requests; a revoked link's answer; a stranger holding a revoked
link; two renewals at once; an empty feed; the e-mailed invitation's ATTENDEE.

Its four findings were mended on 6 December: a feed carries no "Change or cancel" link (it read the patient's page,
from which whoever held a shared feed asked for a new one); two renewals at once leave one live link (under the
patient's lock); an empty feed carries its owner's clinic's VTIMEZONE; the e-mailed file names the patient ATTENDEE.

The clock stands at the suite's Monday, 2 March 2026, 09:00 UTC (`clock`, tests/qa/conftest.py).
"""

from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from dateutil import tz as dateutil_tz
from django.core import mail
from django.test import Client
from icalendar import Calendar

from clinic.merging import patient_merge
from clinic.models import Appointment, AppointmentStatus, WorkingHours
from reminders.content import ics_uid
from reminders.dispatch import dispatch_local
from reminders.feeds import calendar_feed_create, patient_calendar_feed_renew
from reminders.models import CalendarFeed
from scheduler.booking import appointment_clear, appointment_reschedule
from scheduler.selfservice import appointment_cancel_by_patient
from tests.factories import ClinicFactory, PatientConditionFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import CLINICIAN, NOW, RECEPTION, book, ldn, portal_page
from tests.races import held_in_another_connection

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock")]

BASE = "https://clinic.example"


@pytest.fixture(autouse=True)
def _public_base(settings):
    settings.REMINDERS_PUBLIC_BASE_URL = BASE


# --- Reading a feed ---------------------------------------------------------------------------------------------------


def path_of(url: str) -> str:
    return urlsplit(url).path


def raw_feed(token: str) -> bytes:
    response = Client().get(f"/reminders/calendar/{token}.ics")
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "text/calendar; charset=utf-8"
    return response.content


def events_of(raw: bytes) -> tuple[Calendar, dict]:
    calendar = Calendar.from_ical(raw)
    found = {}
    for event in calendar.walk("VEVENT"):
        uid = str(event["uid"])
        assert uid not in found, f"two VEVENTs with UID {uid}: a calendar shows the visit twice"
        found[uid] = event
    return calendar, found


def link_asked_on_the_page(client: Client, appointment) -> str:
    """The patient presses "Get a calendar link" on the appointment's page: the https address it shows."""
    page = client.post(portal_page(appointment, "calendar"), follow=True)
    assert page.status_code == 200
    found = re.search(r"https://clinic\.example/reminders/calendar/[^\s<\"]+\.ics", page.content.decode())
    assert found, page.content.decode()[:500]
    return found.group(0)


def live_feeds(patient) -> int:
    return CalendarFeed.objects.filter(patient=patient, revoked_at__isnull=True).count()


def all_day_practitioner(clinic, name: str):
    """A practitioner of `clinic` working every day from 00:00 to 23:45 local (the clocks change in the small hours)."""
    doctor = PractitionerFactory(clinic=clinic, name=name, hours=[])
    WorkingHours.objects.bulk_create(
        WorkingHours(practitioner=doctor, weekday=d, start_time=time(0), end_time=time(23, 45)) for d in range(7)
    )
    return doctor


def vtimezone_reader(raw: bytes, tzid: str):
    """The feed's own VTIMEZONE for `tzid`, read by dateutil (a client that trusts the file, not its own zone data)."""
    blocks = re.findall(rb"BEGIN:VTIMEZONE\r\n.*?END:VTIMEZONE\r\n", raw, re.S)
    [block] = [b for b in blocks if f"TZID:{tzid}\r\n".encode() in b]
    text = (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n" + block + b"END:VCALENDAR\r\n").decode()
    return dateutil_tz.tzical(io.StringIO(text)).get(tzid)


def instant_a_client_reads(raw: bytes, prop) -> datetime:
    """A DATE-TIME as a client reads it: UTC when it ends in Z; else the wall time under the file's VTIMEZONE of its
    TZID, a wall time that happens twice read as its first occurrence (RFC 5545 3.3.5; dateutil's fold=0)."""
    value = prop.to_ical().decode()
    if value.endswith("Z"):
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    reader = vtimezone_reader(raw, str(prop.params["TZID"]))
    return datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=reader).astimezone(UTC)


# === What a clinic writes stays inside its property ====================================================================


ODD_NAME = "Zoë's Skin, Face; Body \\ Co"
ODD_ADDRESS = "Flat 2; Rue de l'Église, 5\nEND:VEVENT\nBEGIN:VEVENT\nUID:forged@elsewhere\nLondon W1A 1AA"
ODD_PRACTITIONER = "Dr Siobhán Ó Dálaigh, MD; FRCP"
ODD_SENDER = 'Zoë "Glow" Clinic: Mayfair, London'
ODD_MAP = "https://maps.example/?q=51.5,-0.1;z=17"


def test_commas_semicolons_quotes_backslashes_and_an_end_vevent_line_stay_inside_their_property(catalogue):
    """RFC 5545 3.3.11: TEXT escapes `,` `;` `\\` and newlines; 3.2: a parameter value with `:` `;` `,` is quoted and
    (RFC 6868) a `"` inside it is `^'`. A clinic whose name, address, sender name and map link carry all of them, an
    address line reading "END:VEVENT" / "BEGIN:VEVENT" / "UID:...", and a practitioner named with accents, a comma and a
    semicolon: each feed holds exactly one VEVENT, with one UID, and every property reads back as written
    (content.appointment_event: title "Appointment at <clinic>", location the clinic and its address lines, the
    description "<treatment> with <practitioner>.", the organiser named by the clinic's sender name)."""
    clinic = ClinicFactory(
        code="qa-w-odd",
        name=ODD_NAME,
        address=ODD_ADDRESS,
        sender_name=ODD_SENDER,
        map_url=ODD_MAP,
        phone="+442079460958",
        reply_to_email="hello@zoe.example",
    )
    doctor = PractitionerFactory(clinic=clinic, name=ODD_PRACTITIONER)
    patient = PatientFactory(clinic=clinic, first_name="Åsa")
    visit = book(patient, ldn(2026, 3, 10), NOW, code="botox")
    _, doctor_token = calendar_feed_create(now=NOW, practitioner=doctor)
    _, patient_token = calendar_feed_create(now=NOW, patient=patient)

    for token in (doctor_token, patient_token):
        raw = raw_feed(token)
        lines = raw.split(b"\r\n")
        assert lines.count(b"BEGIN:VEVENT") == lines.count(b"END:VEVENT") == 1, raw.decode()
        assert sum(line.startswith(b"UID:") for line in lines) == 1
        calendar, events = events_of(raw)
        assert list(events) == [ics_uid(visit)]
        [event] = events.values()
        assert str(event["summary"]) == f"Appointment at {ODD_NAME}"
        assert str(event["location"]) == ", ".join([ODD_NAME, *ODD_ADDRESS.splitlines()])
        description = str(event["description"]).split("\n")
        assert description[0] == f"Botox with {ODD_PRACTITIONER}."
        assert f"Map: {ODD_MAP}" in description
        assert str(event["organizer"].params["CN"]) == ODD_SENDER
        assert str(event["organizer"]) == "mailto:hello@zoe.example"
    assert str(Calendar.from_ical(raw_feed(doctor_token))["x-wr-calname"]) == f"Appointments: {ODD_PRACTITIONER}"


LONG_LINE = "Ærøskøbing Œuvre ✓ 診療所 Łódź " * 5


def test_every_line_is_folded_within_75_octets_on_a_utf8_boundary_with_crlf(catalogue):
    """RFC 5545 3.1: 'Lines of text SHOULD NOT be longer than 75 octets, excluding the line break'; a fold must not
    split a multi-octet UTF-8 character (each physical line is valid UTF-8 on its own, as strict parsers read it);
    every line ends CRLF (no bare LF or CR). A clinic address and practitioner name of 2- to 3-octet characters
    well over 75 octets, in both feeds, fold so and read back whole."""
    clinic = ClinicFactory(code="qa-w-fold", name="Clinique Ærø", address=f"{LONG_LINE}\n{LONG_LINE[::-1]}")
    doctor = PractitionerFactory(clinic=clinic, name=f"Dr {LONG_LINE.strip()}")
    patient = PatientFactory(clinic=clinic)
    book(patient, ldn(2026, 3, 10), NOW, code="botox")
    _, doctor_token = calendar_feed_create(now=NOW, practitioner=doctor)
    _, patient_token = calendar_feed_create(now=NOW, patient=patient)

    for token in (doctor_token, patient_token):
        raw = raw_feed(token)
        assert raw.endswith(b"\r\n")
        assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
        for line in raw.split(b"\r\n"):
            assert len(line) <= 75, (len(line), line)
            line.decode("utf-8")  # strict: a fold inside a character fails here
        [event] = events_of(raw)[1].values()
        assert str(event["location"]) == ", ".join(["Clinique Ærø", LONG_LINE, LONG_LINE[::-1]])
        assert str(event["description"]).startswith(f"Botox with Dr {LONG_LINE.strip()}.")


# === What a feed exposes =================================================================================================


def test_nothing_the_desk_a_clinician_or_the_patient_wrote_reaches_either_feed(clinic, practitioner):
    """docs/reminders.md, Calendar feeds: each VEVENT is built by content.appointment_event (the clinic's details, the
    treatment and practitioner, the patient's own link); clinic.models.Appointment.notes is 'never sent to the
    patient'. A microneedling held for an eczema history and cleared with a reason, a desk note on it, a Botox the
    patient cancelled on their page with a reason of their own: neither the patient's feed nor the practitioner's
    carries any of those words, the condition, or the patient's e-mail, phone or date of birth."""
    patient = PatientFactory(
        clinic=clinic,
        first_name="Pat",
        last_name="Lee",
        email="pat.private@example.com",
        phone="+447700900123",
        date_of_birth=date(1987, 6, 5),
    )
    PatientConditionFactory(patient=patient, condition_id="eczema", status="history")
    held = book(patient, ldn(2026, 3, 10), NOW, practitioner_id=practitioner.pk)
    assert held.status == AppointmentStatus.PENDING_CLEARANCE
    appointment_clear(appointment=held, actor=CLINICIAN, now=NOW, reason="QA-CLEARANCE-WORDS dermatologist agreed")
    Appointment.objects.filter(pk=held.pk).update(notes="QA-DESK-NOTE nervous about needles")
    botox = book(patient, ldn(2026, 4, 14), NOW, code="botox", practitioner_id=practitioner.pk)
    appointment_cancel_by_patient(appointment=botox, now=NOW, reason="QA-PATIENT-REASON going through a divorce")
    _, patient_token = calendar_feed_create(now=NOW, patient=patient)
    _, doctor_token = calendar_feed_create(now=NOW, practitioner=practitioner)

    for token in (patient_token, doctor_token):
        raw = raw_feed(token)
        _, events = events_of(raw)
        assert set(events) == {ics_uid(held), ics_uid(botox)}
        unfolded = raw.replace(b"\r\n ", b"").decode().lower()
        for secret in (
            "qa-clearance-words",
            "dermatologist",
            "qa-desk-note",
            "needles",
            "qa-patient-reason",
            "divorce",
            "eczema",
            "pat.private@example.com",
            "7700900123",
            "07700 900123",
            "19870605",
            "1987-06-05",
            "5 june 1987",
        ):
            assert secret not in unfolded, (token == doctor_token, secret)


# === Times across the clock change, half-hour zones ======================================================================


HALF_HOUR_ZONES = [
    pytest.param(
        "America/St_Johns",
        (2026, 3, 6),  # NST, -03:30
        (2026, 3, 9),  # NDT, -02:30 (the clocks went forward on 8 March)
        datetime(2026, 11, 1, 5, 0, tzinfo=UTC),  # 01:30 NST, the second 01:30 of 1 November
        id="st-johns",
    ),
    pytest.param(
        "Australia/Adelaide",
        (2026, 4, 3),  # ACDT, +10:30
        (2026, 4, 7),  # ACST, +09:30 (the clocks went back on 5 April)
        datetime(2026, 4, 4, 17, 0, tzinfo=UTC),  # 02:30 ACST, the second 02:30 of 5 April
        id="adelaide",
    ),
]


@pytest.mark.parametrize(("zone", "before", "after", "second_reading"), HALF_HOUR_ZONES)
def test_a_visit_moved_across_a_half_hour_zones_clock_change_is_one_entry_at_its_new_instant(
    catalogue, zone, before, after, second_reading
):
    """docs/reminders.md: 'an entry moves in place'; 'Times are in the clinic's zone with its VTIMEZONE (in UTC for the
    second reading of a wall time that happens twice)'. In St John's (-03:30/-02:30) and Adelaide (+10:30/+09:30) a
    10:00 visit moved from before the change to 10:00 after it is still one VEVENT (same UID, SEQUENCE 1) whose
    DTSTART/DTEND, read through the feed's own VTIMEZONE, are the new instants; a visit in the second reading of the
    repeated hour reads at its real instant, not an hour early."""
    tz = ZoneInfo(zone)
    clinic = ClinicFactory(code=f"qa-w-{zone.rsplit('/', 1)[1].lower().replace('_', '-')}", timezone=zone)
    doctor = all_day_practitioner(clinic, "Dr Half")
    moved = book(PatientFactory(clinic=clinic), datetime(*before, 10, tzinfo=tz), NOW, code="botox")
    appointment_reschedule(appointment=moved, start_at=datetime(*after, 10, tzinfo=tz), actor=RECEPTION, now=NOW)
    late = book(PatientFactory(clinic=clinic), second_reading, NOW, code="botox", practitioner_id=doctor.pk)
    _, token = calendar_feed_create(now=NOW, practitioner=doctor)

    raw = raw_feed(token)
    calendar, events = events_of(raw)
    assert set(events) == {ics_uid(moved), ics_uid(late)}
    assert [str(v["tzid"]) for v in calendar.walk("VTIMEZONE")] == [zone]
    entry = events[ics_uid(moved)]
    assert int(entry["sequence"]) == 1
    assert str(entry["dtstart"].params["TZID"]) == zone
    new_start = datetime(*after, 10, tzinfo=tz).astimezone(UTC)
    assert instant_a_client_reads(raw, entry["dtstart"]) == new_start
    assert instant_a_client_reads(raw, entry["dtend"]) == new_start + timedelta(minutes=30)
    repeated = events[ics_uid(late)]
    assert instant_a_client_reads(raw, repeated["dtstart"]) == second_reading
    assert instant_a_client_reads(raw, repeated["dtend"]) == second_reading + timedelta(minutes=30)
    for event in events.values():
        assert event.decoded("dtstamp") == NOW and event.decoded("dtstamp").utcoffset() == timedelta(0)


# === A merged patient ====================================================================================================


def test_a_merged_patients_two_links_serve_one_calendar_and_asking_again_ends_both(clinic, practitioner, west):
    """docs/organisations.md: on a merge 'appointments ... calendar feeds ... move to the survivor'; docs/portal.md:
    'Asking again switches the previous link off'. Pat's own link and her duplicate's (made at West before the merge)
    both serve, after the merge, every visit of both records once (the duplicate's cancelled one too), each with the
    same UID, SEQUENCE, STATUS and time in either; when she asks for a link on her page, both old links end."""
    survivor = PatientFactory(clinic=clinic, first_name="Pat", last_name="Lee")
    duplicate = PatientFactory(clinic=west, first_name="Pat", last_name="Leigh")
    dr_west = PractitionerFactory(clinic=west, name="Dr West")
    hers = book(survivor, ldn(2026, 3, 10), NOW, code="botox", practitioner_id=practitioner.pk)
    theirs = book(duplicate, ldn(2026, 3, 12), NOW, code="filler", practitioner_id=dr_west.pk)
    dropped = book(duplicate, ldn(2026, 3, 13), NOW, code="plasma_pen", practitioner_id=dr_west.pk)
    appointment_cancel_by_patient(appointment=dropped, now=NOW)
    _, own_token = calendar_feed_create(now=NOW, patient=survivor)
    _, duplicate_token = calendar_feed_create(now=NOW, patient=duplicate)

    patient_merge(merged=duplicate, into=survivor, now=NOW, actor_label="clinician@qa-w", clinical=True)

    def shown(token):
        return {
            uid: (int(e["sequence"]), str(e["status"]), e.decoded("dtstart"), e.decoded("dtend"))
            for uid, e in events_of(raw_feed(token))[1].items()
        }

    own, inherited = shown(own_token), shown(duplicate_token)
    assert set(own) == {ics_uid(hers), ics_uid(theirs), ics_uid(dropped)}
    assert own == inherited
    assert own[ics_uid(dropped)][1] == "CANCELLED"
    assert own[ics_uid(theirs)][2] == ldn(2026, 3, 12)

    new = link_asked_on_the_page(Client(), hers)
    for old in (own_token, duplicate_token):
        assert Client().get(f"/reminders/calendar/{old}.ics").status_code == 404
    assert set(events_of(Client().get(path_of(new)).content)[1]) == set(own)
    assert live_feeds(survivor) == 1


# === HTTP: HEAD, conditional requests, a dead link =======================================================================


def test_head_answers_as_get_without_a_body_and_a_dead_link_shows_nothing_to_any_method(patient, practitioner):
    """reminders/views.calendar_feed allows GET and HEAD; docs/reminders.md: 'Cache-Control: private, no-store',
    'Revoke turns the URL into a 404 at once', 'An unknown token is the same 404'. HEAD on a live link: 200 with GET's
    headers and no body. The feed offers no validator (no ETag, no Last-Modified), so a conditional GET (as calendar
    apps send) gets the whole calendar, never an empty 304. A revoked link: 404 to GET and HEAD, not a calendar, no
    UID of the patient's visit in it."""
    visit = book(patient, ldn(2026, 3, 10), NOW, code="botox", practitioner_id=practitioner.pk)
    feed, token = calendar_feed_create(now=NOW, patient=patient)
    path = f"/reminders/calendar/{token}.ics"

    head = Client().head(path)
    got = Client().get(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    for header in ("Content-Type", "Cache-Control", "Referrer-Policy", "Content-Disposition"):
        assert head[header] == got[header], header
    assert not got.has_header("ETag") and not got.has_header("Last-Modified")
    conditional = Client().get(
        path, HTTP_IF_MODIFIED_SINCE="Wed, 01 Jan 2031 00:00:00 GMT", HTTP_IF_NONE_MATCH='"anything"'
    )
    assert conditional.status_code == 200 and ics_uid(visit) in events_of(conditional.content)[1]

    CalendarFeed.objects.filter(pk=feed.pk).update(revoked_at=NOW)
    for method in ("get", "head"):
        dead = getattr(Client(), method)(path)
        assert dead.status_code == 404, method
        assert not dead["Content-Type"].startswith("text/calendar")
        assert str(visit.pk).encode() not in dead.content and b"VEVENT" not in dead.content


# === Ending a link shared by mistake =====================================================================================


def test_a_stranger_who_read_a_link_shared_by_mistake_cannot_get_a_new_one_once_the_patient_asks_again(
    patient, practitioner
):
    """docs/portal.md: 'Asking again switches the previous link off, so a link shared by mistake is ended by the
    patient themselves'. Pat shares her calendar link by mistake; a stranger subscribes (reads it once). Pat asks
    for a new link: the old one is a 404. Whatever the stranger kept from that one reading must not get them her
    calendar again: the feed's descriptions carry each coming visit's 'Change or cancel' page link (a signed link,
    valid until a week after the visit, that renewal does not touch), and "Get a calendar link" on that page gives
    the stranger a new working feed, and switches Pat's own new link off."""
    visit = book(patient, ldn(2026, 3, 10), NOW, code="botox", practitioner_id=practitioner.pk)
    book(patient, ldn(2026, 6, 16), NOW, code="botox", practitioner_id=practitioner.pk)
    pat = Client()
    shared = link_asked_on_the_page(pat, visit)
    stranger = Client()
    read_once = stranger.get(path_of(shared))
    assert read_once.status_code == 200
    kept = sorted(
        {
            link
            for event in events_of(read_once.content)[1].values()
            for link in re.findall(r"https://clinic\.example/my/[^\s]+/", str(event["description"]))
        }
    )

    current = link_asked_on_the_page(pat, visit)  # Pat ends the shared link
    assert stranger.get(path_of(shared)).status_code == 404

    for link in kept:
        page = stranger.post(path_of(link) + "calendar/", follow=True)
        minted = re.findall(r"https://clinic\.example/reminders/calendar/[^\s<\"]+\.ics", page.content.decode())
        for url in minted:
            assert stranger.get(path_of(url)).status_code == 404, "the stranger reads Pat's calendar again"
    assert pat.get(path_of(current)).status_code == 200, "Pat's own new link was switched off by the stranger"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_renewals_at_once_leave_one_live_link():
    """reminders/feeds.py, patient_calendar_feed_renew: 'a new one switches the previous off'; docs/portal.md: 'Asking
    again switches the previous link off'. One renewal's transaction still open (a press of "Get a calendar link" in
    one tab) while another completes (the second tab): when both are done, the patient has one live link, not two
    (the one they did not keep would stay readable, unknown to them)."""
    clinic = ClinicFactory(code="qa-w-race")
    patient = PatientFactory(clinic=clinic)
    with held_in_another_connection(lambda: patient_calendar_feed_renew(patient=patient, now=NOW), release_after=2):
        patient_calendar_feed_renew(patient=patient, now=NOW + timedelta(seconds=1))
    assert CalendarFeed.objects.filter(patient=patient).count() == 2
    assert live_feeds(patient) == 1


# === What clients accept =================================================================================================


def test_a_feed_with_nothing_in_its_window_is_still_a_calendar_rfc_5545_allows(patient, practitioner):
    """RFC 5545 3.4/3.6: 'icalbody = calprops component', 'component = 1*(eventc / todoc / ... / timezonec /
    iana-comp / x-comp)'. A patient's link asked before anything is booked (or once every visit is over 92 days
    old) must still be a calendar a strict client (ical4j's validation, the icalendar.org validator) subscribes to:
    at least one component (the clinic's VTIMEZONE would do)."""
    _, token = calendar_feed_create(now=NOW, patient=patient)
    calendar = Calendar.from_ical(raw_feed(token))
    assert str(calendar["version"]) == "2.0"
    assert calendar.subcomponents, "a VCALENDAR with no component"


def test_the_emailed_invitation_names_the_patient_as_its_attendee(patient, practitioner, care_texts, message_outboxes):
    """docs/reminders.md: 'Calendar files clients obey. METHOD:REQUEST ... an ORGANIZER, the clinic's VTIMEZONE, one
    UID per appointment'; RFC 5546 3.2.2 (REQUEST): ORGANIZER 1, ATTENDEE 1+ ('the recipients of the request');
    3.2.5 (CANCEL): attendees 'MUST' be included when the whole event is cancelled. The confirmation's file names
    the patient it goes to as ATTENDEE (mailto: their address)."""
    book(patient, ldn(2026, 3, 10), NOW, code="botox", practitioner_id=practitioner.pk)
    dispatch_local(now=NOW)
    [email] = [m for m in mail.outbox if patient.email in m.to]
    [part] = [p for p in email.message().walk() if p.get_content_type() == "text/calendar"]
    calendar = Calendar.from_ical(part.get_payload(decode=True))
    assert str(calendar["method"]) == "REQUEST"
    [event] = calendar.walk("VEVENT")
    attendees = event.get("attendee", [])
    attendees = attendees if isinstance(attendees, list) else [attendees]
    assert [str(a).lower() for a in attendees] == [f"mailto:{patient.email}".lower()]
