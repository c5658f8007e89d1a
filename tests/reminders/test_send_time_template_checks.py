"""What a planned row's send asks again of its template and endpoint, edited after the row was planned.

A text or e-mail whose template lost that channel's text (blanked in the admin) or was moved to another procedure
is cancelled, saying why, never sent blank or with another treatment's words; one that renders empty all the same
fails for good. Going together with another message, such a row is left out and the other's text goes. A held row
is cancelled once the booking is cleared, with why (reminders.services._sync_hold; was a strict-xfail DEFECT: it
stayed held for good). A webhook delivery of an event its endpoint has since unsubscribed from is cancelled.
(reminders.verdicts.still_wanted, content.render_message; review probe dec5n.)
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from clinic.models import ApiClient, AppointmentStatus
from reminders import content
from reminders.channels import LocmemSmsBackend
from reminders.dispatch import SendOutcome, dispatch_local, outbox_claim_due, outbox_send_batch
from reminders.models import OutboxMessage, OutboxStatus, ReminderTemplate, WebhookEndpoint
from scheduler.booking import appointment_clear
from tests.factories import PatientConditionFactory, PatientFactory
from tests.reminders.conftest import CLINICIAN, book, london
from tests.reminders.support import FakeHttpServer

WEDNESDAY_10 = london(2026, 3, 4, 10)
DAY_BEFORE = london(2026, 3, 3, 10)
BLANK = {"sms": {"sms_text": ""}, "email": {"email_subject": "", "email_text": "", "email_html": ""}}
# Text that compiles and is not blank, and renders nothing (no move is told in a day-before message).
RENDERS_EMPTY = "{% if previous_start_local %}Moved to {{ start_local }}.{% endif %}"


def deliver(moment):
    with time_machine.travel(moment, tick=False):
        return dispatch_local(now=timezone.now())


def edit_template(key: str, **changes) -> None:
    # As the admin's save leaves the row; the batch reads templates with its rows, so no copy is in the way.
    assert ReminderTemplate.objects.filter(default_key=key).update(**changes) == 1


def row(appointment, kind: str, channel: str) -> OutboxMessage:
    return OutboxMessage.objects.get(appointment=appointment, kind=kind, channel=channel)


def sent_on(channel: str) -> list[str]:
    """What the patient received on `channel`: each text's body, each e-mail's subject and body."""
    if channel == "sms":
        return [sms["body"] for sms in LocmemSmsBackend.outbox]
    return [f"{m.subject}\n{m.body}" for m in mail.outbox]


def alone(message: OutboxMessage, channel: str) -> str:
    """The row rendered on its own, at the moment it went, as `sent_on` shows it."""
    rendered = content.render_message(message=message, now=message.sent_at)
    return rendered.sms if channel == "sms" else rendered.subject


# --- Going together: the day-before reminder and the pre-care note ----------------------------------------------


@pytest.mark.parametrize(
    ("channel", "key", "edit", "status", "reason"),
    [
        ("sms", "day-before-reminder", BLANK["sms"], "cancelled", "its template no longer has an SMS text"),
        ("sms", "microneedling-pre-care-24h", BLANK["sms"], "cancelled", "its template no longer has an SMS text"),
        ("email", "day-before-reminder", BLANK["email"], "cancelled", "no longer has an e-mail"),
        ("email", "microneedling-pre-care-24h", BLANK["email"], "cancelled", "no longer has an e-mail"),
        ("sms", "day-before-reminder", {"sms_text": RENDERS_EMPTY}, "failed", "the text renders empty"),
        ("sms", "microneedling-pre-care-24h", {"sms_text": RENDERS_EMPTY}, "failed", "the text renders empty"),
        ("email", "microneedling-pre-care-24h", {"email_subject": RENDERS_EMPTY}, "failed", "subject renders empty"),
    ],
)
def test_a_blank_message_due_with_another_is_left_out_and_the_other_goes_with_its_own_text(
    patient, practitioner, now, channel, key, edit, status, reason
):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    deliver(now)
    mail.outbox.clear()
    LocmemSmsBackend.outbox = []
    edit_template(key, **edit)

    deliver(DAY_BEFORE)
    deliver(DAY_BEFORE + timedelta(minutes=1))  # a note waits a few seconds for a reminder dropped before it

    blanked_kind, kept_kind = ("reminder", "pre_care") if key == "day-before-reminder" else ("pre_care", "reminder")
    blanked, kept = row(appointment, blanked_kind, channel), row(appointment, kept_kind, channel)
    assert blanked.status == status and reason in blanked.last_error
    assert kept.status == OutboxStatus.SENT and "sent_with" not in kept.payload
    [received] = sent_on(channel)
    assert received.strip() and received.startswith(alone(kept, channel))
    # The other channel's two messages still go as one, both texts kept.
    other = "email" if channel == "sms" else "sms"
    assert len(sent_on(other)) == 1
    assert {row(appointment, kind, other).status for kind in ("reminder", "pre_care")} == {OutboxStatus.SENT}


# --- On its own ----------------------------------------------------------------------------------------------


def test_a_confirmation_whose_template_lost_its_sms_is_cancelled_and_its_e_mail_goes(patient, practitioner, now):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    edit_template("booking-confirmation", sms_text="")

    deliver(now)

    assert LocmemSmsBackend.outbox == []
    text, email = row(appointment, "confirmation", "sms"), row(appointment, "confirmation", "email")
    assert (text.status, text.last_error) == (OutboxStatus.CANCELLED, "its template no longer has an SMS text")
    assert email.status == OutboxStatus.SENT and [m.subject for m in mail.outbox] == [
        "Your appointment at Bloom Clinic on Wed 4 Mar"
    ]


def test_a_text_that_renders_empty_fails_for_good_and_nothing_blank_goes(patient, practitioner, now):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    edit_template("booking-confirmation", sms_text=RENDERS_EMPTY)

    deliver(now)

    assert LocmemSmsBackend.outbox == []
    text = row(appointment, "confirmation", "sms")
    assert text.status == OutboxStatus.FAILED and text.last_error == "permanent failure: the text renders empty"


def test_a_care_note_whose_template_moved_to_another_procedure_is_cancelled_and_the_reminder_goes(
    patient, practitioner, now
):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    deliver(now)
    mail.outbox.clear()
    LocmemSmsBackend.outbox = []
    edit_template(
        "microneedling-pre-care-24h", procedure_id="botox", email_text="QA botox words.", sms_text="QA botox words."
    )

    deliver(DAY_BEFORE)

    for channel in ("email", "sms"):
        pre_care = row(appointment, "pre_care", channel)
        assert pre_care.status == OutboxStatus.CANCELLED
        assert pre_care.last_error == (
            "its template was moved to another procedure (botox): it no longer applies to this booking's "
            "(microneedling)"
        )
        assert row(appointment, "reminder", channel).status == OutboxStatus.SENT
        [received] = sent_on(channel)
        assert "QA botox words" not in received


def test_a_template_made_for_every_booking_still_goes_to_a_booking_planned_under_its_procedure(
    patient, practitioner, now
):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    edit_template("microneedling-pre-care-24h", procedure_id=None)

    deliver(DAY_BEFORE)

    assert row(appointment, "pre_care", "sms").status == OutboxStatus.SENT


def held_then_cleared(patient, now, *edits):
    """A booking awaiting clearance, its templates edited while its rows are held (`edits`: key, changes), then
    cleared the day before and dispatched."""
    PatientConditionFactory(patient=patient, condition_id="eczema", status="history")
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    assert appointment.status == AppointmentStatus.PENDING_CLEARANCE
    for key, changes in edits:
        edit_template(key, **changes)
    cleared_at = london(2026, 3, 3, 12)
    with time_machine.travel(cleared_at, tick=False):
        appointment_clear(appointment=appointment, actor=CLINICIAN, now=timezone.now(), reason="Eczema settled")
    deliver(cleared_at)
    return appointment


def test_a_held_text_whose_template_lost_its_sms_is_cancelled_once_the_booking_is_cleared(patient, practitioner, now):
    appointment = held_then_cleared(patient, now, ("booking-confirmation", {"sms_text": ""}))

    assert [sms["body"] for sms in LocmemSmsBackend.outbox if not sms["body"].strip()] == []
    text = row(appointment, "confirmation", "sms")
    assert (text.status, text.last_error) == (OutboxStatus.CANCELLED, "its template no longer has an SMS text")
    assert row(appointment, "confirmation", "email").status == OutboxStatus.SENT


def test_a_held_care_note_whose_template_moved_is_not_left_held_once_the_booking_is_cleared(patient, practitioner, now):
    appointment = held_then_cleared(patient, now, ("microneedling-pre-care-24h", {"procedure_id": "filler"}))

    assert {row(appointment, "pre_care", c).status for c in ("email", "sms")} == {OutboxStatus.CANCELLED}


def test_a_batch_of_rows_whose_template_lost_its_sms_reads_no_template_per_row(clinic, practitioner, now):
    patients = [
        PatientFactory(clinic=clinic, phone=f"+4477009001{n:02d}", reminder_channels=["sms"], sms_consent=True)
        for n in range(6)
    ]
    appointments = [book(p, "microneedling", WEDNESDAY_10 + timedelta(hours=i), now) for i, p in enumerate(patients)]
    edit_template("booking-confirmation", sms_text="")
    claims = outbox_claim_due(now=now)
    assert len(claims) == 6

    with CaptureQueriesContext(connection) as queries:
        outcomes = outbox_send_batch(message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=now)

    assert set(outcomes.values()) == {SendOutcome.CANCELLED} and LocmemSmsBackend.outbox == []
    # As tests/reminders/test_batches.py counts a batch: its reads, then per row the lock, the update and the
    # transaction's own statements; asking the template again costs nothing more.
    per_row = 5 if connection.vendor == "postgresql" else 4
    assert len(queries.captured_queries) <= 4 + per_row * 6
    assert {row(a, "confirmation", "sms").last_error for a in appointments} == {
        "its template no longer has an SMS text"
    }


# --- Webhooks ------------------------------------------------------------------------------------------------


@pytest.fixture
def platform(clinic):
    client = ApiClient(name="Platform")
    client.set_new_key()
    client.save()
    client.clinics.add(clinic)
    return client


def test_a_delivery_of_an_event_its_endpoint_unsubscribed_from_is_cancelled_and_not_tried(
    patient, practitioner, platform, now
):
    with FakeHttpServer() as server:
        narrowed = WebhookEndpoint.objects.create(client=platform, url=f"{server.url}/narrowed")
        everything = WebhookEndpoint.objects.create(client=platform, url=f"{server.url}/everything")
        appointment = book(patient, "microneedling", WEDNESDAY_10, now)
        narrowed.events = ["appointment.cancelled"]
        narrowed.save(update_fields=["events"])

        deliver(now)

        assert [r.path for r in server.requests] == ["/everything"]
    dropped = OutboxMessage.objects.get(appointment=appointment, endpoint=narrowed)
    assert (dropped.status, dropped.last_error) == (
        OutboxStatus.CANCELLED,
        "the webhook endpoint no longer subscribes to appointment.created",
    )
    assert OutboxMessage.objects.get(appointment=appointment, endpoint=everything).status == OutboxStatus.SENT
