"""Messages to one patient that go as one e-mail keep, part by part, what an e-mail of their own would carry: each
visit's calendar file (a cancellation's METHOD:CANCEL and a booking's METHOD:REQUEST as two files) and each visit's
own "See, move or cancel" link; e-mails of two sites of one organisation go apart, each its site's from sender to
footer; the unsubscribe page names every site whose e-mails stop; and a cancellation or move notice whose visit's
time has come when it goes is not sent (docs/reminders.md; review probe dec6d, mended 6 December).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.test import Client
from django.utils import timezone

from reminders import content, verdicts
from reminders.channels import LocmemSmsBackend
from reminders.dispatch import dispatch_local
from reminders.links import manage_url
from reminders.models import MessageKind, OutboxMessage, OutboxStatus, ReminderTemplate
from reminders.wording import RenderError
from scheduler.booking import appointment_cancel, appointment_reschedule
from tests.factories import ClinicFactory, OrganisationFactory, PatientFactory, PractitionerFactory
from tests.reminders.conftest import RECEPTION, book, london

TUESDAY_10 = london(2026, 3, 3, 10)
TUESDAY_1030 = london(2026, 3, 3, 10, 30)


def deliver(moment) -> dict:
    with time_machine.travel(moment, tick=False):
        return dispatch_local(now=timezone.now())


def calendar_files(email) -> list[tuple[str, str, str]]:
    """(the MIME part's method, its file name, the file's text) of each calendar file the e-mail carries."""
    return [
        (part.get_param("method"), part.get_filename(), part.get_payload(decode=True).decode())
        for part in email.attachments
        if part.get_content_type() == "text/calendar"
    ]


def uid(appointment) -> str:
    return f"UID:appointment-{appointment.pk}@clinic-scheduling"


def fresh(appointment):
    return type(appointment).objects.get(pk=appointment.pk)


def rows(appointment, channel="email"):
    return OutboxMessage.objects.filter(appointment=appointment, channel=channel)


# --- Two visits in one e-mail: each its calendar file and its link --------------------------------------------------


def test_two_visits_confirmed_in_one_email_each_bring_their_own_calendar_file(patient, practitioner, now):
    botox = book(patient, "botox", TUESDAY_10, now)
    filler = book(patient, "filler", TUESDAY_1030, now)

    deliver(now)

    [email] = mail.outbox  # one e-mail: the two confirmations went together
    files = calendar_files(email)
    assert [(method, name) for method, name, _ in files] == [
        ("REQUEST", "appointment.ics"),
        ("REQUEST", "appointment-2.ics"),
    ]
    assert uid(botox) in files[0][2] and uid(filler) not in files[0][2]  # in reading order, one visit a file
    assert uid(filler) in files[1][2] and uid(botox) not in files[1][2]
    assert all(text.count("METHOD:REQUEST") == 1 and text.count("BEGIN:VEVENT") == 1 for _, _, text in files)
    # Nothing lost, nothing twice: both rows sent, by the one e-mail.
    sent = [rows(botox).get(kind="confirmation"), rows(filler).get(kind="confirmation")]
    assert {r.status for r in sent} == {OutboxStatus.SENT}
    assert len({r.provider_id for r in sent}) == 1


def test_each_visit_in_one_email_has_its_own_link_after_its_own_part(patient, practitioner, now):
    botox = book(patient, "botox", TUESDAY_10, now)
    filler = book(patient, "filler", TUESDAY_1030, now)

    deliver(now)

    [email] = mail.outbox
    botox_link, filler_link = manage_url(fresh(botox)), manage_url(fresh(filler))
    body, footer = email.body.split("\n--\n")
    # The first visit's link closes its part, before the second part's subject; the second's is where an e-mail of
    # one visit has it, above the clinic's details.
    first_part, second_part = _parts(body)
    assert f"See, move or cancel your appointment: {botox_link}" in first_part and filler_link not in first_part
    assert f"See, move or cancel your appointment: {filler_link}" in second_part and botox_link not in second_part
    assert body.count("See, move or cancel your appointment:") == 2 and "See, move" not in footer
    html = email.alternatives[0][0]
    assert html.count(f'href="{botox_link}"') == 1 and html.count(f'href="{filler_link}"') == 1
    assert html.index(botox_link) < html.index("<h2") < html.index(filler_link)


def _parts(body: str) -> tuple[str, str]:
    """A two-part e-mail's text split where the second part's greeting begins (each part greets the patient)."""
    at = body.index("\n\nHello Ada,")
    return body[:at], body[at:]


def test_parts_of_one_visit_share_one_link_and_one_calendar_file(patient, practitioner, now):
    """Two parts about one visit that each attach the same calendar file (a confirmation and a move notice rendered
    together) carry it once; the visit's link closes the e-mail once, as before."""
    visit = book(patient, "botox", TUESDAY_10, now)
    confirmation = rows(visit).get(kind="confirmation")
    moved = OutboxMessage(
        appointment=visit,
        template=ReminderTemplate.objects.get(default_key="appointment-moved"),
        kind=MessageKind.RESCHEDULED,
        channel="email",
        due_at=now,
        anchor_at=now,
        payload={"from_start": (TUESDAY_10 - timedelta(days=1)).isoformat()},
    )

    rendered = content.render_messages(messages=[confirmation, moved], now=now, unsubscribe_url="https://u.example/")

    assert len(rendered.calendars) == 1 and rendered.calendars[0].method == "REQUEST"
    assert rendered.text.count(manage_url(visit)) == 1
    assert rendered.text.index(manage_url(visit)) > rendered.text.index("has moved")  # after the visit's last part


def test_a_rebooking_in_one_email_cancels_the_old_entry_and_adds_the_new_one(patient, practitioner, now):
    tuesday = book(patient, "botox", TUESDAY_10, now)
    deliver(now)
    mail.outbox.clear()
    later = now + timedelta(hours=1)
    with time_machine.travel(later, tick=False):
        appointment_cancel(appointment=fresh(tuesday), actor=RECEPTION, now=later)
        wednesday = book(patient, "botox", london(2026, 3, 4, 10), later)

    deliver(later)

    [email] = mail.outbox
    assert "is cancelled" in email.body and "Your appointment is booked" in email.body
    cancel, request = sorted(calendar_files(email), key=lambda f: f[0])
    assert cancel[0] == "CANCEL" and "METHOD:CANCEL" in cancel[2] and uid(tuesday) in cancel[2]
    assert "STATUS:CANCELLED" in cancel[2] and uid(wednesday) not in cancel[2]
    assert request[0] == "REQUEST" and "METHOD:REQUEST" in request[2] and uid(wednesday) in request[2]
    assert "METHOD:CANCEL" not in request[2] and uid(tuesday) not in request[2]
    # The cancelled visit has no page to move it from; the new one has its link.
    assert manage_url(fresh(wednesday)) in email.body and f"/my/{tuesday.pk.hex}." not in email.body
    went = [rows(tuesday).get(kind="cancelled"), rows(wednesday).get(kind="confirmation")]
    assert {r.status for r in went} == {OutboxStatus.SENT} and len({r.provider_id for r in went}) == 1


# --- Two sites of one organisation ----------------------------------------------------------------------------------


@pytest.fixture
def sites(care_texts):
    group = OrganisationFactory(code="mp-group", name="Bloom Group")
    east = ClinicFactory(
        code="mp-east", name="Bloom East", organisation=group, phone="+442079460958", address="1 East Road"
    )
    west = ClinicFactory(
        code="mp-west", name="Bloom West", organisation=group, phone="+441174960123", address="9 West St"
    )
    return east, west


@pytest.fixture
def ada(sites):
    return PatientFactory(
        clinic=sites[0],
        first_name="Ada",
        email="ada@example.com",
        phone="+447700900123",
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )


def test_emails_of_two_sites_go_apart_each_its_sites_and_texts_still_go_as_one(sites, ada, now):
    east, west = sites
    at_east = book(ada, "botox", TUESDAY_10, now, practitioner_id=PractitionerFactory(clinic=east).pk)
    at_west = book(ada, "filler", london(2026, 3, 5, 10), now, practitioner_id=PractitionerFactory(clinic=west).pk)

    deliver(now)

    by_sender = {email.from_email.split(" <")[0]: email for email in mail.outbox}
    assert sorted(by_sender) == ["Bloom East", "Bloom West"] and len(mail.outbox) == 2
    east_mail, west_mail = by_sender["Bloom East"], by_sender["Bloom West"]
    assert "Tue 3 Mar" in east_mail.body and "1 East Road" in east_mail.body and "9 West St" not in east_mail.body
    assert "Thu 5 Mar" in west_mail.body and "9 West St" in west_mail.body and "1 East Road" not in west_mail.body
    assert [uid(at_east) in text for _, _, text in calendar_files(east_mail)] == [True]
    assert [uid(at_west) in text for _, _, text in calendar_files(west_mail)] == [True]
    # A text names its site in its own words: the two confirmations still go as one text.
    [sms] = LocmemSmsBackend.outbox
    first, second = sms["body"].split("\n\n")
    assert first.startswith("Bloom East:") and second.startswith("Bloom West:")


def test_emails_of_two_clinics_are_not_rendered_as_one(sites, ada, now):
    east, west = sites
    at_east = book(ada, "botox", TUESDAY_10, now, practitioner_id=PractitionerFactory(clinic=east).pk)
    at_west = book(ada, "filler", london(2026, 3, 5, 10), now, practitioner_id=PractitionerFactory(clinic=west).pk)
    both = [rows(at_east).get(kind="confirmation"), rows(at_west).get(kind="confirmation")]

    with pytest.raises(RenderError, match="two clinics"):
        content.render_messages(messages=both, now=now)


def test_the_unsubscribe_page_names_the_organisation_and_every_site_that_stops(sites, ada, now):
    book(ada, "filler", london(2026, 3, 5, 10), now, practitioner_id=PractitionerFactory(clinic=sites[1]).pk)
    deliver(now)
    [email] = mail.outbox
    path = email.extra_headers["List-Unsubscribe"][1:-1].removeprefix("https://clinic.example")

    asked = Client().get(path).content.decode()
    done = Client().post(path).content.decode()

    assert "Stop e-mails from Bloom Group (Bloom East, Bloom West)?" in asked
    assert "Bloom Group (Bloom East, Bloom West) will not send you any more e-mails." in done


# --- Notices the visit's time has overtaken ------------------------------------------------------------------------


def test_a_cancellation_whose_visit_has_begun_when_it_goes_is_cancelled_with_why(patient, practitioner, now):
    visit = book(patient, "botox", TUESDAY_10, now)
    deliver(now)  # the confirmation: the patient was told of the booking
    sent_before = (len(mail.outbox), len(LocmemSmsBackend.outbox))
    the_day_after = london(2026, 3, 4, 9)
    with time_machine.travel(the_day_after, tick=False):
        appointment_cancel(appointment=fresh(visit), actor=RECEPTION, now=the_day_after)

    deliver(the_day_after)

    assert (len(mail.outbox), len(LocmemSmsBackend.outbox)) == sent_before
    notices = rows(visit).filter(kind="cancelled") | rows(visit, "sms").filter(kind="cancelled")
    assert len(notices) == 2
    assert {(n.status, n.last_error) for n in notices} == {("cancelled", verdicts.TOO_LATE_FOR_THE_BOOKING)}


def test_a_cancellation_text_that_quiet_hours_carry_past_the_start_is_not_sent(patient, practitioner, now, settings):
    """The e-mail tells the patient at once; the text, held to the end of quiet hours, would come after the start."""
    settings.REMINDERS_SMS_QUIET_HOURS = ("21:00", "10:30")
    visit = book(patient, "botox", TUESDAY_10, now)
    deliver(london(2026, 3, 2, 11))  # both confirmations
    evening = london(2026, 3, 2, 22)
    with time_machine.travel(evening, tick=False):
        appointment_cancel(appointment=fresh(visit), actor=RECEPTION, now=evening)
    mail.outbox.clear()
    LocmemSmsBackend.outbox = []

    deliver(evening)
    text_notice = rows(visit, "sms").get(kind="cancelled")
    assert [e.subject for e in mail.outbox if "cancelled" in e.subject] and text_notice.status == "pending"
    deliver(text_notice.due_at)

    text_notice.refresh_from_db()
    assert (text_notice.status, text_notice.last_error) == ("cancelled", verdicts.TOO_LATE_FOR_THE_BOOKING)
    assert LocmemSmsBackend.outbox == []


def test_a_cancellation_before_the_visit_still_goes(patient, practitioner, now):
    visit = book(patient, "botox", TUESDAY_10, now)
    deliver(now)
    mail.outbox.clear()
    LocmemSmsBackend.outbox = []
    before = london(2026, 3, 3, 9, 50)
    with time_machine.travel(before, tick=False):
        appointment_cancel(appointment=fresh(visit), actor=RECEPTION, now=before)

    deliver(before)

    assert ["cancelled" in e.subject for e in mail.outbox] == [True]
    assert len(LocmemSmsBackend.outbox) == 1 and "is cancelled" in LocmemSmsBackend.outbox[0]["body"]


def test_a_move_notice_whose_new_time_has_come_when_it_goes_is_cancelled(patient, practitioner, now):
    """Moved to later the same morning, the dispatcher down until after the new start: the notice would only
    confuse."""
    visit = book(patient, "botox", TUESDAY_10, now)
    deliver(now)
    sent_before = (len(mail.outbox), len(LocmemSmsBackend.outbox))
    moment = london(2026, 3, 3, 9)
    with time_machine.travel(moment, tick=False):
        appointment_reschedule(appointment=fresh(visit), start_at=london(2026, 3, 3, 11), actor=RECEPTION, now=moment)

    deliver(london(2026, 3, 3, 11, 5))

    assert (len(mail.outbox), len(LocmemSmsBackend.outbox)) == sent_before
    notices = list(rows(visit).filter(kind="rescheduled")) + list(rows(visit, "sms").filter(kind="rescheduled"))
    assert len(notices) == 2
    assert {(n.status, n.last_error) for n in notices} == {("cancelled", verdicts.TOO_LATE_FOR_THE_BOOKING)}
