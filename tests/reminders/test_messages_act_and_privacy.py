"""Messages say who the clinic is and how to reach it, let the patient act, and keep the treatment
off lock screens unless the clinic allows it (issue 16, items 5, 6, 7, 8)."""

import re
from datetime import timedelta

import pytest
from django.core import mail
from icalendar import Calendar

from core.errors import ErrorCode, InvalidInput
from reminders.channels import LocmemSmsBackend
from reminders.dispatch import dispatch_local
from reminders.links import appointment_from_manage_token, manage_token
from reminders.models import ReminderTemplate
from scheduler.booking import appointment_cancel
from tests.reminders.conftest import RECEPTION, book, london

WEDNESDAY_10 = london(2026, 3, 4, 10)


@pytest.fixture
def detailed(clinic):
    clinic.phone = "+442079460958"
    clinic.address = "12 Example Street\nLondon W1A 1AA"
    clinic.map_url = "https://maps.example/bloom"
    clinic.reply_to_email = "hello@bloom.example"
    clinic.sender_name = "Bloom Clinic London"
    clinic.save()
    return clinic


def calendar_of(message):
    [attachment] = message.attachments
    return attachment, Calendar.from_ical(attachment.get_payload(decode=True))


def test_an_email_comes_from_the_clinic_and_says_how_to_reach_it(detailed, patient, practitioner, now):
    book(patient, "microneedling", WEDNESDAY_10, now)
    dispatch_local(now=now)

    [email] = mail.outbox
    assert email.from_email.startswith("Bloom Clinic London <") and email.reply_to == ["hello@bloom.example"]
    for part in (email.body, email.alternatives[0][0]):
        assert "020 7946 0958" in part  # the clinic's number as its patients write it
        assert "12 Example Street" in part and "https://maps.example/bloom" in part
        assert re.search(r"https://clinic\.example/my/[\w.-]+/", part)
    html = email.alternatives[0][0]
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert 'href="tel:020' in html


def test_the_link_in_a_message_opens_this_appointment_and_no_other_and_expires(patient, practitioner, now):
    appointment = book(patient, "botox", WEDNESDAY_10, now)
    dispatch_local(now=now)

    [sms] = LocmemSmsBackend.outbox
    token = re.search(r"/my/([\w.-]+)/", sms["body"]).group(1)
    assert len(token) < 60  # short enough for a text
    assert appointment_from_manage_token(token, now=now) == appointment
    with pytest.raises(InvalidInput) as expired:
        appointment_from_manage_token(token, now=appointment.end_at + timedelta(days=7))
    assert expired.value.code == ErrorCode.MANAGE_LINK_EXPIRED
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(InvalidInput) as bad:
        appointment_from_manage_token(forged, now=now)
    assert bad.value.code == ErrorCode.INVALID_MANAGE_LINK
    # Another appointment's id under this signature does not pass either.
    other = manage_token(book(patient, "botox", london(2026, 3, 11, 10), now))
    spliced = f"{other.split('.')[0]}.{token.split('.', 1)[1]}"
    with pytest.raises(InvalidInput):
        appointment_from_manage_token(spliced, now=now)


def test_subjects_and_calendar_titles_name_the_clinic_not_the_treatment(clinic, patient, practitioner, now):
    ReminderTemplate.objects.filter(default_key="booking-confirmation").update(
        email_subject="Your microneedling at {{ clinic_name }}"
    )  # an administrator's wording
    book(patient, "microneedling", WEDNESDAY_10, now)
    dispatch_local(now=now)

    [email] = mail.outbox
    assert email.subject == "Bloom Clinic: about your appointment on Wed 4 Mar"
    assert "Microneedling" in email.body  # the body says it
    _, calendar = calendar_of(email)
    [event] = calendar.walk("VEVENT")
    assert str(event["summary"]) == "Appointment at Bloom Clinic"
    assert "Microneedling" in str(event["description"])


def test_a_clinic_may_allow_the_treatment_in_previews(clinic, patient, practitioner, now):
    clinic.name_treatment_in_previews = True
    clinic.save()
    ReminderTemplate.objects.filter(default_key="booking-confirmation").update(
        email_subject="Your microneedling at {{ clinic_name }}"
    )
    book(patient, "microneedling", WEDNESDAY_10, now)
    dispatch_local(now=now)

    [email] = mail.outbox
    assert email.subject == "Your microneedling at Bloom Clinic"
    [event] = calendar_of(email)[1].walk("VEVENT")
    assert str(event["summary"]) == "Microneedling at Bloom Clinic"


def test_calendar_files_are_invitations_a_cancellation_cancels_the_same_entry(detailed, patient, practitioner, now):
    appointment = book(patient, "botox", WEDNESDAY_10, now)
    dispatch_local(now=now)
    later = now + timedelta(hours=1)
    appointment_cancel(appointment=appointment, actor=RECEPTION, now=later)
    dispatch_local(now=later)

    invite, cancel = mail.outbox
    part, calendar = calendar_of(invite)
    assert part.get_content_type() == "text/calendar" and part.get_param("method") == "REQUEST"
    assert str(calendar["method"]) == "REQUEST"
    [timezone] = calendar.walk("VTIMEZONE")
    assert str(timezone["tzid"]) == "Europe/London"
    [event] = calendar.walk("VEVENT")
    assert event["dtstart"].params["TZID"] == "Europe/London" and event.decoded("dtstart") == WEDNESDAY_10
    assert str(event["organizer"]) == "mailto:hello@bloom.example"
    assert "12 Example Street" in str(event["location"])

    part, calendar = calendar_of(cancel)
    assert part.get_param("method") == "CANCEL" and str(calendar["method"]) == "CANCEL"
    [cancelled] = calendar.walk("VEVENT")
    assert str(cancelled["uid"]) == str(event["uid"])
    assert int(cancelled["sequence"]) == int(event["sequence"]) + 1
    assert str(cancelled["status"]) == "CANCELLED" and str(cancelled["organizer"]) == "mailto:hello@bloom.example"


def test_the_48_hour_and_week_aftercare_are_proper_html(patient, practitioner, now):
    for key in ("microneedling-post-care-48h", "microneedling-post-care-7d"):
        template = ReminderTemplate.objects.get(default_key=key)
        assert "<p>" in template.email_html and "<strong>" in template.email_html
    assert "<ul>" in ReminderTemplate.objects.get(default_key="microneedling-post-care-7d").email_html
