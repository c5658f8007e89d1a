"""The patient's own appointment page (portal/): every path, with Django's test client.

The clock is frozen at Monday 2 March 2026, 09:00 London; the appointment is Tuesday 10 March, 10:00.
"""

import base64
import re
from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils.crypto import salted_hmac
from django.utils.http import int_to_base36

from clinic.models import (
    Appointment,
    AppointmentStatus,
    AuditAction,
    AuditEvent,
    Patient,
    PatientCondition,
    ProcedureType,
)
from reminders.consent import sms_consent_wording, unsubscribe_url
from reminders.links import MANAGE_SALT, manage_token
from reminders.models import ContactOptIn, ContactOptOut
from scheduler.selfservice import patient_move_options
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory
from tests.portal.conftest import book, london, page_url

pytestmark = pytest.mark.usefixtures("frozen")


def text(response) -> str:
    """The page's words, without tags, with runs of whitespace made one space."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", response.content.decode(), flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)).strip()


def offered(appointment, now, index=0):
    slot = patient_move_options(appointment=appointment, now=now)[index]
    return slot, f"{slot.start_at:%Y%m%dT%H%M}Z_{slot.practitioner_id}"


def fresh(appointment) -> Appointment:
    return Appointment.objects.select_related("clinic", "patient", "procedure", "practitioner").get(pk=appointment.pk)


# --- The page -------------------------------------------------------------------------------------


def test_the_page_shows_the_appointment_in_the_clinics_zone_with_the_clinics_look(client, appointment):
    response = client.get(page_url(appointment))

    assert response.status_code == 200
    words = text(response)
    assert "Tuesday 10 March 2026" in words
    assert "10:00–11:00 London time (GMT)" in words
    assert "Treatment Microneedling" in words and "With Dr Amelia Hart" in words and "Where Bloom Clinic" in words
    assert "You can move or cancel it here until Monday 9 March at 10:00 London time (GMT)." in words
    html = response.content.decode()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert 'src="https://cdn.example/bloom.png"' in html and "--brand: #7a1f5c" in html
    assert '<a class="contact__phone" href="tel:+442079460958">020 7946 0958</a>' in html
    assert "12 Example Street<br>London W1A 1AA" in html
    assert 'href="https://www.openstreetmap.org/search?query=W1A%201AA"' in html
    assert f'href="{page_url(appointment, "move")}"' in html and f'href="{page_url(appointment, "cancel")}"' in html
    assert "no-store" in response["Cache-Control"]
    assert "Olivia" not in words  # the page names the appointment, not who it belongs to


def csp(response) -> dict[str, str]:
    policy = response["Content-Security-Policy"]
    return {part.split()[0]: part.strip() for part in policy.split(";") if part.strip()}


def test_the_policy_admits_the_clinics_colour_and_logo_and_nothing_more(client, appointment, patient):
    unsubscribe = unsubscribe_url(patient_id=patient.pk).removeprefix("https://clinic.example")
    for response in (
        client.get(page_url(appointment)),
        client.get(page_url(appointment, "move")),
        client.get(unsubscribe),
    ):
        policy = csp(response)
        nonce = re.search(
            r'<style nonce="([^"]+)">:root \{ --brand: #7a1f5c; \}</style>', response.content.decode()
        ).group(1)
        assert f"'nonce-{nonce}'" in policy["style-src"] and "'unsafe-inline'" not in policy["style-src"]
        assert policy["img-src"].split()[1:] == ["'self'", "data:", "https://cdn.example"]
        assert policy["script-src"] == "script-src 'self'"


def test_a_logo_not_served_over_https_widens_nothing(client, appointment, clinic):
    clinic.logo_url = "http://cdn.example/bloom.png"
    clinic.save()

    assert csp(client.get(page_url(appointment)))["img-src"] == "img-src 'self' data:"


def test_times_are_the_clinics_local_time_and_zone_after_a_clock_change(client, catalogue, now):
    new_york = ClinicFactory(code="nyc", name="Hudson Skin", timezone="America/New_York", phone="+12125550147")
    PractitionerFactory(clinic=new_york, name="Dr Maya Chen")
    patient = PatientFactory(clinic=new_york)
    # The US clocks went forward on Sunday 8 March 2026: 10:00 in New York is 14:00 UTC.
    appointment = book(patient, london(2026, 3, 10, 14).astimezone(new_york.tz), now)

    words = text(client.get(page_url(appointment)))

    assert "Tuesday 10 March 2026" in words and "10:00–11:00 New York time (EDT)" in words
    assert "(212) 555-0147" in words


def test_a_pending_clearance_booking_says_a_clinician_will_check_it(client, appointment):
    Appointment.objects.filter(pk=appointment.pk).update(status=AppointmentStatus.PENDING_CLEARANCE)

    assert "a clinician will check it before it is confirmed" in text(client.get(page_url(appointment)))


def test_a_booking_on_hold_for_review_says_so_and_moving_it_rechecks_it(client, appointment, now):
    """A change to the record flagged it (scheduler/recheck.py); a move re-checks everything."""
    Appointment.objects.filter(pk=appointment.pk).update(status=AppointmentStatus.NEEDS_REVIEW)
    assert "On hold: the clinic needs to check this booking with you" in text(client.get(page_url(appointment)))
    _, key = offered(fresh(appointment), now)

    moved = client.post(page_url(appointment, "move_confirm"), {"slot": key}, follow=True)

    assert "Done: your appointment is now on" in text(moved)
    assert fresh(appointment).status == AppointmentStatus.CONFIRMED


def test_inside_the_window_there_are_no_buttons_only_call_us(client, appointment):
    with time_machine.travel(appointment.start_at - timedelta(hours=23), tick=False):
        response = client.get(page_url(appointment))
        cancel_page = client.get(page_url(appointment, "cancel"))
        cancel_post = client.post(page_url(appointment, "cancel"))
        move_page = client.get(page_url(appointment, "move"))

    html = response.content.decode()
    assert response.status_code == 200
    assert "Move appointment" not in html and "Cancel appointment" not in html
    assert (
        "Your appointment starts in less than 24 hours, so it can no longer be cancelled or moved online. "
        "Please call Bloom Clinic on 020 7946 0958."
    ) in text(response)
    assert '<a class="button" href="tel:+442079460958">Call us on 020 7946 0958</a>' in html
    for refused in (cancel_page, cancel_post, move_page):
        assert refused.status_code == 409
        assert "less than 24 hours" in text(refused)
    assert fresh(appointment).status == AppointmentStatus.CONFIRMED


# --- Cancelling -----------------------------------------------------------------------------------


def test_cancelling_asks_first_then_cancels_and_says_so(client, appointment, patient):
    confirm = client.get(page_url(appointment, "cancel"))
    assert confirm.status_code == 200
    assert "Cancel this appointment?" in text(confirm) and "Yes, cancel it" in text(confirm)
    assert fresh(appointment).status == AppointmentStatus.CONFIRMED  # asking changed nothing

    response = client.post(page_url(appointment, "cancel"), {"reason": "Away that week"})

    assert (response.status_code, response["Location"]) == (303, page_url(appointment))
    done = client.get(response["Location"])
    words = text(done)
    assert "Your appointment is cancelled." in words and "Cancelled" in words
    assert "Move appointment" not in words
    cancelled = fresh(appointment)
    assert (cancelled.status, cancelled.cancel_reason) == (AppointmentStatus.CANCELLED, "Away that week")
    event = AuditEvent.objects.filter(appointment=appointment).last()
    assert (event.action, event.actor_label) == (AuditAction.CANCELLED, f"patient {patient.pk}")


def test_cancelling_twice_is_a_clear_refusal(client, appointment):
    client.post(page_url(appointment, "cancel"))

    again = client.post(page_url(appointment, "cancel"))
    page = client.get(page_url(appointment, "cancel"))

    assert again.status_code == page.status_code == 409
    assert "This appointment is already cancelled." in text(again)


def test_a_completed_appointment_is_a_clear_refusal(client, appointment):
    Appointment.objects.filter(pk=appointment.pk).update(status=AppointmentStatus.COMPLETED)

    for response in (client.post(page_url(appointment, "cancel")), client.get(page_url(appointment, "move"))):
        assert response.status_code == 409
        assert "This appointment has already taken place." in text(response)
    assert "Completed" in text(client.get(page_url(appointment)))


def test_a_reason_that_is_too_long_is_refused_and_nothing_changes(client, appointment):
    response = client.post(page_url(appointment, "cancel"), {"reason": "x" * 501})

    assert response.status_code == 400
    assert "Ensure this value has at most 500 characters" in text(response)
    assert fresh(appointment).status == AppointmentStatus.CONFIRMED


# --- Moving ---------------------------------------------------------------------------------------


def test_the_move_page_offers_times_grouped_by_day_none_inside_the_window(client, appointment, now):
    response = client.get(page_url(appointment, "move"))

    assert response.status_code == 200
    html = response.content.decode()
    days = re.findall(r"<summary>([^<]+)<", html)
    assert days[0].strip() == "Tuesday 3 March" and days[1].strip() == "Wednesday 4 March"
    assert "All times are London time." in text(response)
    values = re.findall(r'name="slot" value="([^"]+)"', html)
    assert values[0].startswith("20260303T0900Z_")  # exactly 24 hours ahead, not before
    assert not any(value.startswith("20260310T1000Z") for value in values)  # the current time is not offered


def test_choose_confirm_done_moves_the_appointment(client, appointment, patient, now):
    slot, key = offered(appointment, now, 2)

    confirm = client.get(page_url(appointment, "move_confirm"), {"slot": key})
    assert confirm.status_code == 200
    words = text(confirm)
    assert "From Tuesday 10 March 2026, 10:00 London time (GMT)" in words
    assert "To Tuesday 3 March 2026, 09:30–10:30 London time (GMT)" in words
    assert fresh(appointment).start_at == london(2026, 3, 10)  # the confirm step writes nothing

    response = client.post(page_url(appointment, "move_confirm"), {"slot": key})

    moved = fresh(appointment)
    assert moved.start_at == slot.start_at == london(2026, 3, 3, 9, 30)
    assert response.status_code == 303 and response["Location"] == page_url(moved)  # a fresh link
    done = text(client.get(response["Location"]))
    assert "Done: your appointment is now on Tuesday 3 March 2026 at 09:30 London time (GMT)." in done
    event = AuditEvent.objects.filter(appointment=appointment).last()
    assert (event.action, event.actor_label) == (AuditAction.RESCHEDULED, f"patient {patient.pk}")


def test_a_move_that_needs_clearance_says_a_clinician_will_check_it(client, patient, practitioner, now):
    PatientCondition.objects.create(patient=patient, condition_id="diabetes", status="active")
    pending = book(patient, london(2026, 3, 10), now)
    assert pending.status == AppointmentStatus.PENDING_CLEARANCE
    _, key = offered(pending, now)

    response = client.post(page_url(pending, "move_confirm"), {"slot": key}, follow=True)

    assert "A clinician will check it before it is confirmed; we will be in touch." in text(response)
    assert fresh(pending).status == AppointmentStatus.PENDING_CLEARANCE


def test_a_time_of_the_patients_own_other_booking_says_so(client, appointment, practitioner, clinic, now):
    """Not "no longer free", which reads as if someone else took it: the patient is booked then themselves."""
    slot, key = offered(appointment, now)
    other = PractitionerFactory(clinic=clinic, name="Dr Other")
    book(appointment.patient, slot.start_at, now, code="microneedling", practitioner_id=other.pk)

    response = client.post(page_url(appointment, "move_confirm"), {"slot": key})

    assert response.status_code == 409
    assert "You have another appointment at that time. Please choose another time." in text(response)
    assert fresh(appointment).start_at == london(2026, 3, 10)


def test_a_slot_taken_meanwhile_is_refused_and_nothing_changes(client, appointment, practitioner, clinic, now):
    slot, key = offered(appointment, now)
    assert client.get(page_url(appointment, "move_confirm"), {"slot": key}).status_code == 200
    book(PatientFactory(clinic=clinic), slot.start_at, now, code="botox", practitioner_id=practitioner.pk)

    posted = client.post(page_url(appointment, "move_confirm"), {"slot": key})
    asked = client.get(page_url(appointment, "move_confirm"), {"slot": key})

    for response in (posted, asked):
        assert response.status_code == 409
        assert "Sorry, that time is no longer free. Please choose another time." in text(response)
        assert "Choose a new time" in text(response)  # with the times still free
        assert key not in response.content.decode()
    assert fresh(appointment).start_at == london(2026, 3, 10)
    assert not AuditEvent.objects.filter(appointment=appointment, action=AuditAction.RESCHEDULED).exists()


@pytest.mark.parametrize(
    ("slot", "status", "message"),
    [
        ("", 400, "Choose a time from the list."),
        ("tomorrow-ish", 400, "That time could not be read. Please choose one from the list."),
        ("20261399T0900Z_x", 400, "That time could not be read."),
        ("20260311T1000Z_00000000-0000-0000-0000-000000000000", 400, "There is no such practitioner at this clinic."),
        ("20260311T1000Z_not-a-uuid", 400, "There is no such practitioner at this clinic."),
        ("20260311T0300Z_{own}", 409, "Sorry, that time is not available."),  # 03:00: nobody works then
        ("20260302T1200Z_{own}", 409, "That time is less than 24 hours away, so it cannot be booked online."),
        ("20250101T1000Z_{own}", 409, "That time is less than 24 hours away"),
    ],
)
def test_bad_or_forged_slots_are_clear_refusals(client, appointment, slot, status, message):
    slot = slot.format(own=appointment.practitioner_id)
    for response in (
        client.get(page_url(appointment, "move_confirm"), {"slot": slot}),
        client.post(page_url(appointment, "move_confirm"), {"slot": slot}),
    ):
        assert response.status_code == status, text(response)
        assert message in text(response)
        assert "Choose a new time" in text(response)  # back on the list, to choose again
    assert fresh(appointment).start_at == london(2026, 3, 10)


def test_another_clinics_practitioner_cannot_be_chosen(client, appointment, catalogue):
    stranger = PractitionerFactory(clinic=ClinicFactory(code="elsewhere"), name="Dr Elsewhere")

    response = client.post(page_url(appointment, "move_confirm"), {"slot": f"20260311T1000Z_{stranger.pk}"})

    assert response.status_code == 400
    assert "There is no such practitioner at this clinic." in text(response)


def test_a_procedure_no_longer_bookable_is_a_clear_message_not_a_500(client, appointment):
    ProcedureType.objects.filter(code="microneedling").update(bookable=False)

    response = client.get(page_url(appointment, "move"))

    assert response.status_code == 400
    assert "is not a bookable procedure" in text(response)
    assert "Your appointment" in text(response)


# --- Links that do not work -------------------------------------------------------------------------


def mac(payload: str, *, salt: str = MANAGE_SALT, secret: str | None = None) -> str:
    """The link's MAC as reminders/links.py makes it, under any salt or key."""
    digest = salted_hmac(salt, payload, secret=secret, algorithm="sha256").digest()[:12]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def bad_links(appointment, patient):
    good = manage_token(appointment)
    payload = f"{appointment.pk.hex}.{int_to_base36(4102444800)}"  # valid until 2100
    nobody = f"{'0' * 32}.{int_to_base36(4102444800)}"
    return {
        "damaged": good[:-4] + ("abcd" if not good.endswith("abcd") else "wxyz"),
        "garbage": "not-a-link",
        "another salt": f"{payload}.{mac(payload, salt='another-salt')}",
        "another key": f"{payload}.{mac(payload, secret='not-the-secret-key')}",
        "unsubscribe link": unsubscribe_url(patient_id=patient.pk).rstrip("/").rsplit("/", 1)[-1],
        "wrong shape": f"not-a-uuid.zz.{mac('not-a-uuid.zz')}",
        "no such appointment": f"{nobody}.{mac(nobody)}",
    }


def test_the_forgeries_differ_from_a_good_link_only_where_they_say(client, appointment):
    payload = f"{appointment.pk.hex}.{int_to_base36(4102444800)}"

    assert client.get(f"/my/{payload}.{mac(payload)}/").status_code == 200  # right salt and key: accepted


@pytest.mark.parametrize(
    "name",
    ["damaged", "garbage", "another salt", "another key", "unsubscribe link", "wrong shape", "no such appointment"],
)
@pytest.mark.parametrize("path", ["", "cancel/", "move/", "move/confirm/", "preferences/", "calendar/"])
def test_a_bad_or_forged_link_is_a_friendly_400_that_shows_nothing(client, appointment, patient, name, path):
    token = bad_links(appointment, patient)[name]

    for response in (client.get(f"/my/{token}/{path}"), client.post(f"/my/{token}/{path}", {"email": "on"})):
        assert response.status_code == 400, (name, path, response.status_code)
        words = text(response)
        assert "This link does not work" in words
        assert "Bloom Clinic" not in words and "Microneedling" not in words and "Hart" not in words
        assert "no-store" in response["Cache-Control"]
    assert fresh(appointment).status == AppointmentStatus.CONFIRMED


def test_an_expired_link_is_a_410_and_changes_nothing(client, appointment, patient):
    url = page_url(appointment)
    with time_machine.travel(appointment.end_at + timedelta(days=7), tick=False):
        page = client.get(url)
        posted = client.post(url + "preferences/", {})

    for response in (page, posted):
        assert response.status_code == 410
        assert "This link has expired" in text(response) and "Bloom Clinic" not in text(response)
    assert Patient.objects.get(pk=patient.pk).reminder_channels == ["email", "sms"]
    with time_machine.travel(appointment.end_at + timedelta(days=7) - timedelta(minutes=1), tick=False):
        assert client.get(url).status_code == 200


def test_another_appointments_link_cannot_act_on_this_one(client, appointment, patient, clinic, now):
    other_patient = PatientFactory(clinic=clinic, first_name="Nora", email="nora@example.com")
    other = book(other_patient, london(2026, 3, 12), now)

    cancelled = client.post(page_url(other, "cancel"))
    prefs = client.post(page_url(other, "preferences"), {"care": "on", "reminders": ""})

    assert cancelled.status_code == prefs.status_code == 303
    assert fresh(other).status == AppointmentStatus.CANCELLED
    assert fresh(appointment).status == AppointmentStatus.CONFIRMED  # only the link's own appointment
    assert Patient.objects.get(pk=other_patient.pk).muted_topics == ["reminders"]
    assert Patient.objects.get(pk=patient.pk).muted_topics == []
    assert "Thursday 12 March 2026" not in text(client.get(page_url(appointment)))


def test_posts_need_the_pages_csrf_token(appointment):
    browser = Client(enforce_csrf_checks=True)

    refused = browser.post(page_url(appointment, "cancel"))
    assert refused.status_code == 403
    assert fresh(appointment).status == AppointmentStatus.CONFIRMED

    form = browser.get(page_url(appointment, "cancel")).content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    assert browser.post(page_url(appointment, "cancel"), {"csrfmiddlewaretoken": csrf}).status_code == 303
    assert fresh(appointment).status == AppointmentStatus.CANCELLED


def test_other_methods_are_refused_not_errors(client, appointment):
    assert client.put(page_url(appointment)).status_code == 405
    assert client.post(page_url(appointment)).status_code == 405
    assert client.post(page_url(appointment, "move")).status_code == 405
    assert client.get(page_url(appointment, "preferences")).status_code == 303


# --- Message preferences ------------------------------------------------------------------------


def checked(response, name: str) -> bool:
    tag = re.search(rf'<input[^>]*name="{name}"[^>]*>', response.content.decode())
    return tag is not None and "checked" in tag.group(0)


def test_preferences_show_what_the_patient_gets(client, appointment):
    response = client.get(page_url(appointment))

    assert checked(response, "email") and checked(response, "sms")
    assert checked(response, "care") and checked(response, "reminders")
    words = text(response)
    assert "E-mail to o•••@example.com" in words and "ending 123" in words
    assert 'name="sms_consent"' not in response.content.decode()  # SMS is on: nothing to agree to


def test_switching_email_and_care_off_saves_and_records_the_opt_out(client, appointment, patient):
    response = client.post(page_url(appointment, "preferences"), {"sms": "on", "reminders": "on"})

    assert (response.status_code, response["Location"]) == (303, page_url(appointment) + "#preferences")
    current = Patient.objects.get(pk=patient.pk)
    assert (current.reminder_channels, current.muted_topics) == (["sms"], ["care"])
    assert ContactOptOut.objects.get().via == "patient_page"
    page = client.get(response["Location"])
    assert "Your message choices are saved." in text(page)
    assert not checked(page, "email") and not checked(page, "care") and checked(page, "reminders")


def test_switching_sms_back_on_needs_the_consent_tick(client, appointment, patient):
    client.post(page_url(appointment, "preferences"), {"email": "on", "care": "on", "reminders": "on"})
    page = client.get(page_url(appointment))
    assert not checked(page, "sms") and sms_consent_wording(patient) in text(page)

    refused = client.post(
        page_url(appointment, "preferences"), {"email": "on", "sms": "on", "care": "on", "reminders": "on"}
    )
    assert refused.status_code == 400
    assert "To get text messages, tick the box to say you agree to them." in text(refused)
    assert checked(refused, "sms")  # what they chose is kept on the page
    assert not Patient.objects.get(pk=patient.pk).sms_consent

    agreed = client.post(
        page_url(appointment, "preferences"),
        {"email": "on", "sms": "on", "sms_consent": "on", "care": "on", "reminders": "on"},
    )
    assert agreed.status_code == 303
    current = Patient.objects.get(pk=patient.pk)
    assert (current.reminder_channels, current.sms_consent) == (["email", "sms"], True)
    assert ContactOptIn.objects.get().wording == sms_consent_wording(current)


def test_a_patient_without_a_mobile_number_is_told_and_sms_is_left_alone(client, appointment, patient):
    Patient.objects.filter(pk=patient.pk).update(phone="", reminder_channels=["email"], sms_consent=False)

    page = client.get(page_url(appointment))
    saved = client.post(page_url(appointment, "preferences"), {"email": "on", "sms": "on", "care": "on"})

    assert "We have no mobile number for you." in text(page) and 'name="sms"' not in page.content.decode()
    assert saved.status_code == 303
    current = Patient.objects.get(pk=patient.pk)
    assert (current.reminder_channels, current.muted_topics) == (["email"], ["reminders"])


# --- The unsubscribe pages share the look -----------------------------------------------------------------


def test_the_unsubscribe_pages_wear_the_clinics_look(client, patient):
    link = unsubscribe_url(patient_id=patient.pk).removeprefix("https://clinic.example")

    asked, done = client.get(link), client.post(link)

    for response in (asked, done):
        html = response.content.decode()
        assert response.status_code == 200
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
        assert "--brand: #7a1f5c" in html and 'href="tel:+442079460958"' in html
    assert "Stop e-mails from Bloom Clinic?" in text(asked) and "You are unsubscribed" in text(done)


def test_a_patient_gets_a_private_calendar_link_and_a_new_one_ends_the_old(client, appointment, patient):
    from icalendar import Calendar

    from reminders.content import ics_uid

    def ask() -> str:
        response = client.post(page_url(appointment, "calendar"), follow=True)
        assert response.status_code == 200
        return re.search(r"https?://\S+/calendar/\S+\.ics", text(response)).group(0)

    first = ask()
    feed = client.get(first[first.index("/reminders/") :])
    assert feed.status_code == 200 and feed["Content-Type"].startswith("text/calendar")
    [event] = Calendar.from_ical(feed.content).walk("VEVENT")
    assert str(event["uid"]) == ics_uid(appointment)

    second = ask()
    assert second != first
    assert client.get(first[first.index("/reminders/") :]).status_code == 404  # the old link is switched off
    assert client.get(second[second.index("/reminders/") :]).status_code == 200


# --- A refused field: described by its error, and the focus on it ---------------------------------


def tag(html: str, name: str) -> str:
    return re.search(rf'<(?:input|textarea)[^>]*name="{name}"[^>]*>', html).group(0)


def dangling_references(html: str) -> list[str]:
    """aria-describedby / aria-labelledby ids that no element on the page has."""
    ids = set(re.findall(r'\sid="([^"]+)"', html))
    refs = re.findall(r'aria-(?:describedby|labelledby)="([^"]+)"', html)
    return [ref for value in refs for ref in value.split() if ref not in ids]


def test_a_refused_consent_box_is_described_by_its_error_and_the_page_opens_on_it(client, appointment, patient):
    client.post(page_url(appointment, "preferences"), {"email": "on", "care": "on", "reminders": "on"})

    refused = client.post(
        page_url(appointment, "preferences"), {"email": "on", "sms": "on", "care": "on", "reminders": "on"}
    )

    html = refused.content.decode()
    box = tag(html, "sms_consent")
    assert 'aria-invalid="true"' in box and 'aria-describedby="id_sms_consent_error"' in box
    error = re.search(r'<p class="field-error" id="id_sms_consent_error" role="alert">([^<]+)</p>', html)
    assert error.group(1) == "To get text messages, tick the box to say you agree to them."
    assert dangling_references(html) == []
    # autofocus (no script): on the box in error and nowhere else; the form posts to no #fragment, which would
    # make the browser skip autofocus.
    assert " autofocus" in box and html.count(" autofocus") == 1
    assert f'action="{page_url(appointment, "preferences")}"' in html


def test_a_refused_cancel_note_is_described_by_its_error_and_the_page_opens_on_it(client, appointment):
    refused = client.post(page_url(appointment, "cancel"), {"reason": "x" * 501})

    html = refused.content.decode()
    note = tag(html, "reason")
    assert 'aria-describedby="id_reason_error"' in note and " autofocus" in note
    assert re.search(r'id="id_reason_error"[^>]*>Ensure this value has at most 500 characters', html)
    assert dangling_references(html) == []
    assert " autofocus" not in client.get(page_url(appointment, "cancel")).content.decode()  # only after a refusal


# --- Back to the confirm step after the move ---------------------------------------------------------


def test_the_confirm_step_for_the_time_it_already_has_offers_no_move(client, appointment, now):
    slot, key = offered(appointment, now, 2)
    client.post(page_url(appointment, "move_confirm"), {"slot": key})

    again = client.get(page_url(appointment, "move_confirm"), {"slot": key})  # Back, with the link it came from

    assert again.status_code == 200
    words = text(again)
    assert "Your appointment is already at this time, so there is nothing to change." in words
    assert "Tuesday 3 March 2026" in words and "Yes, move it" not in words
    assert "<form" not in again.content.decode().split("<main", 1)[1].split("</main>")[0]
    assert AuditEvent.objects.filter(appointment=appointment, action=AuditAction.RESCHEDULED).count() == 1


# --- An appointment that is over ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "sentence"),
    [
        (AppointmentStatus.CANCELLED, "This appointment is cancelled."),
        (AppointmentStatus.COMPLETED, "This appointment has taken place."),
        (AppointmentStatus.NO_SHOW, "This appointment was missed."),
    ],
)
def test_an_appointment_that_is_over_says_so_and_how_to_book_again(client, appointment, status, sentence):
    Appointment.objects.filter(pk=appointment.pk).update(status=status)

    response = client.get(page_url(appointment))

    assert f"{sentence} To book again, please call us on 020 7946 0958 and we will find you a time." in text(response)
    main = response.content.decode().split("<main", 1)[1].split("</main>")[0]
    assert 'class="button" href="tel:+442079460958"' in main
    assert "Move appointment" not in main


# --- The calendar link, the icon, the map link --------------------------------------------------------


def test_the_calendar_link_is_a_webcal_link_and_the_https_address_to_copy(client, appointment):
    page = client.post(page_url(appointment, "calendar"), follow=True).content.decode()

    address = re.search(r'<a href="(https://clinic\.example/reminders/calendar/[^"]+\.ics)">\1</a>', page).group(1)
    assert f'<a class="button calendar-add" href="webcal://{address.removeprefix("https://")}">' in page
    assert "Add to my calendar" in page


def test_every_patient_page_names_its_icon_and_the_map_link_is_a_target(client, appointment, patient):
    from django.contrib.staticfiles import finders

    unsubscribe = unsubscribe_url(patient_id=patient.pk).removeprefix("https://clinic.example")
    for response in (client.get(page_url(appointment)), client.get(unsubscribe), client.get("/my/not-a-token/")):
        assert '<link rel="icon" href="/static/reminders/favicon.svg" type="image/svg+xml">' in (
            response.content.decode()
        )
    assert finders.find("reminders/favicon.svg")
    assert (
        '<a class="contact__map" href="https://www.openstreetmap.org/'
        in client.get(page_url(appointment)).content.decode()
    )
