"""Today lists bookings still to come whose messages did not reach the patient ("Messages that did not reach the
patient"): refused, out of attempts, or reported undelivered by the provider after it was sent (docs/reminders.md,
"Delivery reports from the providers"), so the desk can phone the patient or correct the number.
"""

import uuid
from datetime import timedelta

import pytest
import time_machine

from clinic.models import AppointmentStatus, AuditAction, Patient, StaffMembership, StaffRole
from reminders.models import OutboxMessage, ReminderTemplate
from reminders.services import outbox_retry
from tests import shipped
from tests.frontdesk.conftest import book, url
from tests.frontdesk.html import squash

pytestmark = pytest.mark.django_db

UNDELIVERED = "Twilio reported the text undelivered (error 30003) after it was sent, at 2026-03-02 08:00 UTC"
HEADING = "Messages that did not reach the patient"


@pytest.fixture(autouse=True)
def care_texts(catalogue):
    """The shipped templates: a message the sender would send has one."""
    shipped.care_texts()


def message(
    appointment, *, channel="sms", status="failed", kind="confirmation", error=UNDELIVERED, due_at=None, template=None
):
    return OutboxMessage.objects.create(
        appointment=appointment,
        kind=kind,
        channel=channel,
        template=template or ReminderTemplate.objects.filter(kind=kind).order_by("pk").first(),
        anchor_at=appointment.start_at,
        due_at=due_at or appointment.created_at,
        status=status,
        last_error=error,
        provider_id="SM" + uuid.uuid4().hex,
        created_at=appointment.created_at,
    )


def squash_section(page: str, heading_id: str) -> str:
    """The text of the <section> the heading labels."""
    start = page.index(f'aria-labelledby="{heading_id}"')
    return page[start : page.index("</section>", start)]


def test_a_text_that_did_not_reach_the_patient_is_listed_with_why(reception, clinic, practitioner, patient, frozen):
    visit = book(patient, practitioner, "botox", frozen + timedelta(days=2))
    message(visit)
    message(visit, kind="reminder", status="sent", error="")  # went: not listed

    page = squash(reception.get(url("today", clinic)))
    assert f'{HEADING} <span class="count">1</span>' in page
    assert str(visit.pk) in page and "Wed 4 Mar, 09:00" in page
    assert f"SMS · Booking confirmation (every procedure): {UNDELIVERED}" in page
    assert "Reminder the day before" not in squash_section(page, "undelivered-heading")
    assert "Phone the patient" in page


def test_an_e_mail_that_bounced_and_a_text_out_of_attempts_are_listed_in_the_order_they_were_due(
    reception, clinic, practitioner, patient, frozen
):
    visit = book(patient, practitioner, "botox", frozen + timedelta(days=2))
    message(visit, kind="reminder", error="gave up after 5 attempts; last error: Twilio HTTP 503", due_at=frozen)
    message(
        visit,
        channel="email",
        error="Postmark reported the e-mail bounced (The server was unable to deliver your message)",
        due_at=frozen - timedelta(hours=1),
    )
    section = " ".join(
        squash_section(reception.get(url("today", clinic)).content.decode(), "undelivered-heading").split()
    )
    bounced = section.index("E-mail · Booking confirmation (every procedure): Postmark reported the e-mail bounced")
    gave_up = section.index("SMS · Reminder the day before (every procedure): gave up after 5 attempts")
    assert bounced < gave_up


def test_what_is_over_cancelled_sent_skipped_or_a_webhook_is_not_listed(
    reception, clinic, practitioner, patient, frozen
):
    over = book(patient, practitioner, "botox", frozen - timedelta(days=3))
    message(over)
    cancelled = book(patient, practitioner, "botox", frozen + timedelta(days=3), status=AppointmentStatus.CANCELLED)
    message(cancelled)
    fine = book(patient, practitioner, "botox", frozen + timedelta(days=4))
    message(fine, status="sent", error="")
    message(fine, status="skipped", error="the patient turned texts off")
    message(fine, channel="webhook", kind="webhook", error="platform answered HTTP 500")
    page = squash(reception.get(url("today", clinic)))
    assert HEADING not in page


def test_another_clinics_bookings_are_not_listed_even_to_staff_of_both(
    reception, receptionist, clinic, other_clinic, other_practitioner, other_patient, frozen
):
    StaffMembership.objects.create(user=receptionist, clinic=other_clinic, role=StaffRole.RECEPTIONIST)
    elsewhere = book(other_patient, other_practitioner, "botox", frozen + timedelta(days=2))
    message(elsewhere)
    assert HEADING not in squash(reception.get(url("today", clinic)))
    assert str(elsewhere.pk) in squash(reception.get(url("today", other_clinic)))  # where it belongs


def test_a_cancellation_that_did_not_reach_the_patient_is_listed_until_the_time_has_passed(
    reception, clinic, practitioner, patient, frozen
):
    """The patient would come for nothing: the one message that matters on a cancelled booking."""
    called_off = book(patient, practitioner, "botox", frozen + timedelta(days=2), status=AppointmentStatus.CANCELLED)
    message(called_off, kind="confirmation", error="an old failure of no use now")
    message(called_off, kind="cancelled", error=UNDELIVERED)
    quiet = book(patient, practitioner, "botox", frozen + timedelta(days=3), status=AppointmentStatus.CANCELLED)
    message(quiet, kind="confirmation")  # its cancellation went (or none was due): nothing to do

    section = " ".join(
        squash_section(reception.get(url("today", clinic)).content.decode(), "undelivered-heading").split()
    )
    assert str(called_off.pk) in section and str(quiet.pk) not in section
    assert (
        "Cancelled" in section
        and f"SMS · Change notice: appointment cancelled (every procedure): {UNDELIVERED}" in section
    )
    assert "an old failure of no use now" not in section

    past = book(patient, practitioner, "botox", frozen - timedelta(hours=2), status=AppointmentStatus.CANCELLED)
    message(past, kind="cancelled")
    assert str(past.pk) not in squash(reception.get(url("today", clinic)))


def test_a_failure_another_copy_made_up_for_is_not_listed(reception, clinic, practitioner, patient, frozen):
    """The e-mail bounced but its text twin went; a reminder failed, and the copy made after a move went."""
    visit = book(patient, practitioner, "botox", frozen + timedelta(days=2))
    bounced = message(visit, channel="email")
    twin = message(visit, channel="sms", status="sent", error="")
    OutboxMessage.objects.filter(pk=twin.pk).update(created_at=bounced.created_at)
    assert HEADING not in squash(reception.get(url("today", clinic)))

    OutboxMessage.objects.filter(pk=twin.pk).update(created_at=bounced.created_at - timedelta(days=1))
    assert HEADING in squash(reception.get(url("today", clinic)))  # an older copy that went makes up for nothing


def test_another_templates_message_of_the_same_kind_makes_up_for_nothing(
    reception, clinic, practitioner, patient, frozen
):
    """The clinic's own pre-care note ("stop blood thinners") bounced; the shipped 24 h pre-care went: the first is
    still to be told (review of 816d614: it was hidden)."""
    visit = book(patient, practitioner, "botox", frozen + timedelta(days=2))
    shipped = ReminderTemplate.objects.filter(kind="pre_care").order_by("pk").first()
    own = ReminderTemplate.objects.create(
        name="Stop blood thinners 7 days before", kind="pre_care", anchor="start", offset_value=-168, sms_text="x"
    )
    message(visit, kind="pre_care", channel="email", template=own, error="Postmark reported the e-mail bounced")
    message(visit, kind="pre_care", channel="email", template=shipped, status="sent", error="")
    section = squash_section(reception.get(url("today", clinic)).content.decode(), "undelivered-heading")
    assert "Stop blood thinners 7 days before" in section


def test_a_message_sent_again_leaves_the_list(reception, clinic, practitioner, patient, frozen):
    visit = book(patient, practitioner, "botox", frozen + timedelta(days=2))
    failed = message(visit)
    assert HEADING in squash(reception.get(url("today", clinic)))
    assert outbox_retry(message_ids=[failed.pk], now=frozen) == 1
    assert HEADING not in squash(reception.get(url("today", clinic)))


def test_the_list_costs_the_same_statements_however_long(
    reception, clinic, practitioner, patient, frozen, django_assert_max_num_queries
):
    message(book(patient, practitioner, "botox", frozen + timedelta(days=1)))
    with django_assert_max_num_queries(60) as one:
        reception.get(url("today", clinic))
    for day in range(2, 12):
        visit = book(patient, practitioner, "botox", frozen + timedelta(days=day))
        message(visit)
        message(visit, kind="reminder")
    with django_assert_max_num_queries(len(one.captured_queries)):
        page = squash(reception.get(url("today", clinic)))
    assert f'{HEADING} <span class="count">11</span>' in page


# --- Send again, from the appointment's page ------------------------------------------------------------------------


def send_again(client, clinic, appointment, failed):
    return client.post(url("message_send_again", clinic, appointment, failed))


def test_the_desk_sends_a_failed_message_again_after_correcting_the_number(
    reception, clinic, practitioner, patient, frozen
):
    visit = book(patient, practitioner, "botox", frozen + timedelta(days=2))
    failed = message(visit, channel="email", error="Postmark reported the e-mail bounced")
    OutboxMessage.objects.filter(pk=failed.pk).update(sent_at=frozen - timedelta(hours=1))
    page = reception.get(url("appointment", clinic, visit)).content.decode()
    assert 'aria-label="Send Booking confirmation (every procedure) by E-mail again"' in page
    assert "Sent Mon 2 Mar 2026, 08:00" in " ".join(page.split())

    response = send_again(reception, clinic, visit, failed)

    assert response.status_code == 302 and response["Location"] == url("appointment", clinic, visit)
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.due_at, failed.last_error) == ("pending", 0, frozen, "")
    followed = squash(reception.get(response["Location"]))
    assert "The E-mail “Booking confirmation (every procedure)” goes again in a moment" in followed
    assert "to the number or address on the record then" in followed
    assert "Send again" not in followed  # pending now: no button
    assert "Due Mon 2 Mar 2026, 09:00" in followed and "Sent Mon 2 Mar" not in followed  # not "sent" before it goes
    assert HEADING not in squash(reception.get(url("today", clinic)))
    # The trail says who sent which message again, and when.
    entry = visit.audit_events.get(action=AuditAction.RESEND_REQUESTED)
    assert (entry.at, entry.actor_user.get_username(), entry.actor_label) == (
        frozen,
        "reception",
        "reception (front desk)",
    )
    assert entry.details == {
        "message": str(failed.pk),
        "channel": "email",
        "name": "Booking confirmation (every procedure) by E-mail",
        "was": "failed",
    }
    assert (
        "Re-send requested</strong> 2 Mar 2026, 09:00 by reception (front desk) · Booking confirmation (every procedure) by E-mail"
        in (followed)
    )


def test_a_message_the_sender_would_drop_is_not_sent_again_and_stays_listed(
    reception, clinic, practitioner, patient, frozen
):
    """Texts the patient never agreed to (or stopped), a cancellation whose time has passed: the desk is told why,
    and the booking stays on Today for a phone call (review of f75cf57)."""
    called_off = book(patient, practitioner, "botox", frozen + timedelta(days=2), status=AppointmentStatus.CANCELLED)
    unheard = message(called_off, kind="cancelled")  # by SMS, which this patient has not agreed to
    response = send_again(reception, clinic, called_off, unheard)
    followed = squash(reception.get(response["Location"]))
    assert "was not sent again:" in followed and "Phone the patient" in followed
    unheard.refresh_from_db()
    assert unheard.status == "failed"
    assert str(called_off.pk) in squash(reception.get(url("today", clinic)))
    assert not called_off.audit_events.filter(action=AuditAction.RESEND_REQUESTED).exists()  # refused: not written

    past = book(patient, practitioner, "botox", frozen - timedelta(hours=1), status=AppointmentStatus.CANCELLED)
    too_late = message(past, kind="cancelled", channel="email")
    response = send_again(reception, clinic, past, too_late)
    assert "too late: the appointment&#x27;s time has come" in squash(reception.get(response["Location"]))
    too_late.refresh_from_db()
    assert too_late.status == "failed"


def test_a_message_that_has_not_failed_is_left_as_it_is(reception, clinic, practitioner, patient, frozen):
    visit = book(patient, practitioner, "botox", frozen + timedelta(days=2))
    sent = message(visit, status="sent", error="")
    response = send_again(reception, clinic, visit, sent)
    assert response.status_code == 302
    sent.refresh_from_db()
    assert sent.status == "sent"
    assert "has not failed" in squash(reception.get(response["Location"]))


def test_only_this_appointments_patient_messages_of_this_clinic_can_be_sent_again(
    reception, clinic, practitioner, patient, other_practitioner, other_patient, frozen
):
    visit = book(patient, practitioner, "botox", frozen + timedelta(days=2))
    other_visit = book(patient, practitioner, "botox", frozen + timedelta(days=3))
    elsewhere = book(other_patient, other_practitioner, "botox", frozen + timedelta(days=2))
    webhook = message(visit, channel="webhook", kind="webhook")
    of_another_visit = message(other_visit)
    of_another_clinic = message(elsewhere)

    assert send_again(reception, clinic, visit, webhook).status_code == 404
    assert send_again(reception, clinic, visit, of_another_visit).status_code == 404
    assert send_again(reception, clinic, elsewhere, of_another_clinic).status_code == 404
    assert reception.get(url("message_send_again", clinic, visit, of_another_visit)).status_code == 405
    not_an_id = url("message_send_again", clinic, visit, of_another_visit).replace(str(of_another_visit.pk), "x1")
    assert reception.post(not_an_id).status_code == 404
    statuses = OutboxMessage.objects.filter(pk__in=[webhook.pk, of_another_visit.pk, of_another_clinic.pk])
    assert set(statuses.values_list("status", flat=True)) == {"failed"}


def test_a_message_about_the_booking_is_not_sent_again_once_its_time_has_come(
    reception, clinic, practitioner, patient, frozen
):
    """Checked in or not marked done yet, the visit is still `confirmed`: "confirmed for <yesterday>" helps nobody
    (review of bb2ef6e)."""
    started = book(patient, practitioner, "botox", frozen - timedelta(minutes=10))
    failed = message(started, channel="email")
    response = send_again(reception, clinic, started, failed)
    assert "too late: the appointment&#x27;s time has come" in squash(reception.get(response["Location"]))
    failed.refresh_from_db()
    assert failed.status == "failed"


def test_a_message_whose_newer_copy_reached_the_patient_is_not_sent_again(
    reception, clinic, practitioner, patient, frozen
):
    """The first move's notice failed; the second move's went: sending the first again would be a second "moved"."""
    visit = book(patient, practitioner, "botox", frozen + timedelta(days=2))
    first = message(visit, kind="rescheduled", channel="email")
    second = message(visit, kind="rescheduled", channel="email", status="sent", error="")
    OutboxMessage.objects.filter(pk=second.pk).update(created_at=first.created_at + timedelta(hours=1))
    response = send_again(reception, clinic, visit, first)
    assert "a newer copy of it reached the patient" in squash(reception.get(response["Location"]))
    first.refresh_from_db()
    assert first.status == "failed"


def test_a_booking_held_for_a_clinician_gets_it_once_cleared(reception, clinic, practitioner, patient, frozen):
    held = book(patient, practitioner, "botox", frozen + timedelta(days=2), status=AppointmentStatus.PENDING_CLEARANCE)
    failed = message(held, channel="email")
    response = send_again(reception, clinic, held, failed)
    assert "goes again once a clinician clears the booking" in squash(reception.get(response["Location"]))
    failed.refresh_from_db()
    assert failed.status == "pending"


def test_a_text_sent_again_in_quiet_hours_waits_for_their_end(reception, clinic, practitioner, patient, frozen):
    Patient.objects.filter(pk=patient.pk).update(reminder_channels=["email", "sms"], sms_consent=True)
    visit = book(patient, practitioner, "botox", frozen + timedelta(days=2))
    failed = message(visit)
    late_evening = frozen.replace(hour=22)  # 22:00 in London (GMT)
    with time_machine.travel(late_evening, tick=False):
        send_again(reception, clinic, visit, failed)
    failed.refresh_from_db()
    assert (failed.status, failed.due_at) == ("pending", frozen.replace(day=3, hour=8))
    # Written when the desk sent it again, not when it is due.
    assert visit.audit_events.get(action=AuditAction.RESEND_REQUESTED).at == late_evening


def test_a_cancellation_text_that_can_only_go_after_the_visit_is_listed_at_once(
    reception, clinic, practitioner, patient, frozen
):
    """Review (6 December): a 07:00 visit cancelled the evening before, the patient reached by text only: quiet hours
    hold the notice to 08:00 and the sender then drops it as too late. Listed from the moment it is planned, so the
    desk phones the patient; one due before the visit is not (it will go)."""
    early = frozen.replace(hour=7) + timedelta(days=1)  # 07:00 London (GMT) tomorrow
    called_off = book(patient, practitioner, "botox", early, status=AppointmentStatus.CANCELLED)
    message(called_off, kind="cancelled", status="pending", error="", due_at=early + timedelta(hours=1))
    in_time = book(
        patient, practitioner, "botox", early + timedelta(days=1, hours=3), status=AppointmentStatus.CANCELLED
    )
    message(in_time, kind="cancelled", status="pending", error="", due_at=early + timedelta(days=1))

    section = " ".join(
        squash_section(reception.get(url("today", clinic)).content.decode(), "undelivered-heading").split()
    )
    assert str(called_off.pk) in section and str(in_time.pk) not in section
    assert "Cannot go before 08:00 (no texts at night), after the visit&#x27;s time" in section
    assert "Phone them." in section
