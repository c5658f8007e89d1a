"""Messages to one patient due within a few minutes go as one per channel, every text kept.

The day before a microneedling appointment the reminder and the pre-care fall due in the
same minute; the patient gets one e-mail and one SMS, not two of each (issue: hardening 18).
"""

import uuid
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from reminders import content, dispatch
from reminders.channels import LocmemSmsBackend
from reminders.dispatch import SendOutcome, dispatch_local, outbox_claim_due, outbox_send, outbox_send_batch
from reminders.models import OutboxMessage, OutboxStatus, ReminderTemplate
from tests.factories import PatientFactory, PractitionerFactory
from tests.reminders.conftest import book, london
from tests.reminders.support import ScriptedSmsBackend, patients_by_email_and_sms

WEDNESDAY_10 = london(2026, 3, 4, 10)
DAY_BEFORE = london(2026, 3, 3, 10)


def deliver(moment):
    with time_machine.travel(moment, tick=False):
        return dispatch_local(now=timezone.now())


def day_before_rows(appointment, channel):
    return OutboxMessage.objects.filter(appointment=appointment, channel=channel, kind__in=["reminder", "pre_care"])


def test_the_reminder_and_the_pre_care_go_as_one_sms_keeping_both_texts(patient, practitioner, now):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    deliver(now)
    LocmemSmsBackend.outbox = []

    deliver(DAY_BEFORE)

    [sms] = LocmemSmsBackend.outbox
    rows = list(day_before_rows(appointment, "sms"))
    assert len(rows) == 2 and {r.status for r in rows} == {OutboxStatus.SENT}
    assert len({r.provider_id for r in rows}) == 1  # one message at the provider, recorded on both rows
    # Both texts, whole, the reminder (about the visit) first and the pre-care after it.
    with time_machine.travel(DAY_BEFORE, tick=False):
        own = {r.kind: content.render_message(message=r, now=timezone.now()).sms for r in rows}
    assert sms["body"] == own["reminder"] + "\n\n" + own["pre_care"]


def test_messages_to_different_patients_are_never_merged(clinic, patient, practitioner, now):
    other = PatientFactory(
        clinic=clinic,
        first_name="Zed",
        email="zed@example.com",
        phone="+447911123459",
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )
    PractitionerFactory(clinic=clinic, name="Dr B")
    book(patient, "botox", WEDNESDAY_10, now)
    book(other, "botox", WEDNESDAY_10, now)

    assert deliver(now) == {"sent": 4}
    assert sorted(m.to[0] for m in mail.outbox) == sorted([patient.email, other.email])


def test_a_merge_window_of_zero_sends_each_message_on_its_own(settings, patient, practitioner, now):
    settings.REMINDERS_MERGE_MINUTES = 0
    book(patient, "microneedling", WEDNESDAY_10, now)
    deliver(now)

    # The reminder and pre-care go separately, the pre-care a moment after the reminder it follows.
    first = deliver(DAY_BEFORE)  # (a pre-care claimed before its reminder waits for it)
    second = deliver(DAY_BEFORE + timedelta(seconds=10))
    assert first.get("sent", 0) + second.get("sent", 0) == 4 and first.get("deferred", 0) == second.get("sent", 0)
    assert len(mail.outbox) == 3
    assert mail.outbox[1].subject.startswith("Reminder") and mail.outbox[2].subject.startswith("Preparing")


def test_a_failed_merged_send_loses_nothing(settings, patient, practitioner, now):
    settings.SMS_BACKEND = "tests.reminders.support.ScriptedSmsBackend"
    ScriptedSmsBackend.sent, ScriptedSmsBackend.script = [], []
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    deliver(now)
    ScriptedSmsBackend.sent, ScriptedSmsBackend.script = [], ["transient", "transient"]

    outcomes = deliver(DAY_BEFORE)  # each row tries (with the other as its companion) and fails

    assert outcomes.get("retry") == 2  # (the e-mails went: they are another channel)
    rows = day_before_rows(appointment, "sms")
    assert not rows.filter(status=OutboxStatus.SENT).exists()  # a companion is never marked sent by a failure
    retry_at = max(r.due_at for r in rows)
    assert deliver(retry_at)["sent"] >= 1
    assert set(rows.values_list("status", flat=True)) == {OutboxStatus.SENT}
    assert len(ScriptedSmsBackend.sent) == 1  # one SMS, both texts, once


def test_rows_one_task_claimed_go_as_one_message_and_the_second_send_stops(patient, practitioner, now):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    deliver(now)
    LocmemSmsBackend.outbox = []

    claims = outbox_claim_due(now=DAY_BEFORE)  # one claim, one task: all four rows
    reminder, pre_care = (day_before_rows(appointment, "sms").get(kind=kind) for kind in ("reminder", "pre_care"))
    outcomes = outbox_send_batch(
        message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=DAY_BEFORE
    )

    # Whichever of the two the task reaches first carries the other (a batch goes in due order, then by id).
    carrier, rider = (reminder, pre_care) if outcomes[reminder.pk] == SendOutcome.SENT else (pre_care, reminder)
    assert (outcomes[carrier.pk], outcomes[rider.pk]) == (SendOutcome.SENT, SendOutcome.MERGED)
    [sms] = LocmemSmsBackend.outbox
    rider.refresh_from_db()
    assert sms["outbox_id"] == str(carrier.pk)
    assert rider.status == OutboxStatus.SENT and rider.payload["sent_in"] == str(carrier.pk)


def test_a_row_another_task_claimed_is_left_to_it_even_when_no_sender_holds_it(patient, practitioner, now):
    """Its task may not have reached it yet, or its sender may have died after the provider took it (the row stays
    `sending` until its lease runs out, then is asked about): taken into another message, it could go twice."""
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    deliver(now)
    LocmemSmsBackend.outbox = []
    claims = {c.message_id: c for c in outbox_claim_due(now=DAY_BEFORE)}
    reminder, pre_care = (day_before_rows(appointment, "sms").get(kind=kind) for kind in ("reminder", "pre_care"))

    # Each in a task of its own (as a dispatcher that hands one row a task does): the reminder goes alone.
    assert outbox_send(message_id=reminder.pk, claim_token=claims[reminder.pk].token, now=DAY_BEFORE) == "sent"
    [alone] = LocmemSmsBackend.outbox
    pre_care.refresh_from_db()
    assert pre_care.status == OutboxStatus.SENDING and pre_care.sent_at is None  # still its own task's
    assert alone["outbox_id"] == str(reminder.pk) and "\n\n" not in alone["body"]

    assert outbox_send(message_id=pre_care.pk, claim_token=claims[pre_care.pk].token, now=DAY_BEFORE) == "sent"
    assert [t["outbox_id"] for t in LocmemSmsBackend.outbox] == [str(reminder.pk), str(pre_care.pk)]


def test_the_dispatcher_hands_a_patients_claimed_rows_to_one_task(clinic, patient, practitioner, now):
    """A patient's e-mails in one task (and their texts), so that they can go as one message (a send takes only rows
    its own task claimed), whatever the task size."""
    others = patients_by_email_and_sms(clinic, 3)
    for i, someone in enumerate([patient, *others]):
        book(someone, "microneedling", WEDNESDAY_10 + timedelta(hours=i), now)
    deliver(now)
    mail.outbox, LocmemSmsBackend.outbox = [], []
    rows = OutboxMessage.objects.filter(kind__in=["reminder", "pre_care"], status=OutboxStatus.PENDING)
    owner = {r.pk: (r.appointment.patient_id, r.channel) for r in rows.select_related("appointment")}
    assert len(owner) == 16  # each patient: the reminder and the pre-care, by e-mail and by SMS

    tasks = []
    moment = DAY_BEFORE + timedelta(hours=3)  # each patient's day-before rows fell due an hour apart: all due now
    with time_machine.travel(moment, tick=False):
        handed = dispatch.dispatch_due_batches(now=timezone.now(), enqueue=tasks.append, per_task=3)

    assert handed == 16
    held_by = {}
    for number, task in enumerate(tasks):
        for claim in task:
            held_by.setdefault(owner[claim.message_id], set()).add(number)
    assert all(len(numbers) == 1 for numbers in held_by.values()), held_by  # no patient's channel split
    assert len(held_by) == 8 and sorted(len(task) for task in tasks) == [4, 4, 4, 4]  # two pairs a task (over 3)
    for task in tasks:
        outbox_send_batch(message_ids=[c.message_id for c in task], claim_token=task[0].token, now=moment)
    assert len(LocmemSmsBackend.outbox) == 4 and len(mail.outbox) == 4  # one text and one e-mail a patient


def test_an_sms_pair_too_long_for_one_message_goes_as_two(patient, practitioner, now):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    deliver(now)
    LocmemSmsBackend.outbox = []
    long_text = "Please read your e-mail before your visit tomorrow. " * 6  # about 310 characters each
    for row in day_before_rows(appointment, "sms"):
        ReminderTemplate.objects.filter(pk=row.template_id).update(sms_text=long_text.strip())

    deliver(DAY_BEFORE)
    deliver(DAY_BEFORE + timedelta(seconds=10))  # the second part follows the first

    assert len(LocmemSmsBackend.outbox) == 2
    assert set(day_before_rows(appointment, "sms").values_list("status", flat=True)) == {OutboxStatus.SENT}


def test_without_merging_the_confirmation_still_goes_before_the_pre_care(settings, patient, practitioner):
    settings.REMINDERS_MERGE_MINUTES = 0
    booked_at = london(2026, 3, 3, 15)  # inside the pre-care window: both are due at once
    with time_machine.travel(booked_at, tick=False):
        appointment = book(patient, "microneedling", WEDNESDAY_10, timezone.now())
    claims = {c.message_id: c for c in outbox_claim_due(now=booked_at)}
    rows = {r.kind: r for r in OutboxMessage.objects.filter(appointment=appointment, channel="sms")}

    # A worker picks the pre-care first: it waits for the confirmation instead of overtaking it.
    pre_care = rows["pre_care"]
    assert (
        outbox_send(message_id=pre_care.pk, claim_token=claims[pre_care.pk].token, now=booked_at)
        == SendOutcome.DEFERRED
    )
    confirmation = rows["confirmation"]
    assert (
        outbox_send(message_id=confirmation.pk, claim_token=claims[confirmation.pk].token, now=booked_at)
        == SendOutcome.SENT
    )
    deliver(booked_at + timedelta(seconds=10))

    bodies = [m["body"] for m in LocmemSmsBackend.outbox]
    assert len(bodies) == 2 and "booked" in bodies[0] and "avoid sun" in bodies[1]


def test_a_message_in_doubt_is_not_merged_and_goes_on_its_own_after_the_provider_is_asked(patient, practitioner, now):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    deliver(now)
    LocmemSmsBackend.outbox = []
    pre_care = day_before_rows(appointment, "sms").get(kind="pre_care")
    pre_care.in_doubt = True  # an earlier sender stopped while it held it (reminders.dispatch._settle_doubt)
    pre_care.due_at += timedelta(minutes=1)  # the reminder goes first, and finds it within the merge window
    pre_care.save(update_fields=["in_doubt", "due_at"])

    deliver(DAY_BEFORE)
    deliver(DAY_BEFORE + timedelta(minutes=1))

    # Not taken as the reminder's companion: it went on its own, after the provider said it did not have it.
    assert [sms["outbox_id"] for sms in LocmemSmsBackend.outbox][1:] == [str(pre_care.pk)]
    pre_care.refresh_from_db()
    assert (pre_care.status, pre_care.in_doubt) == (OutboxStatus.SENT, False)
    assert "sent_in" not in pre_care.payload and "found_sent" not in pre_care.payload


def test_a_row_claimed_to_go_along_and_not_taken_goes_back_to_pending_its_attempt_uncounted(patient, practitioner, now):
    """A send claims the patient's `pending` rows due within the merge window before it goes (so that one that goes
    inside its message is never left `pending` if its sender dies); one that cannot join (too long to share a text)
    is handed back as it was, and goes at its own time."""
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    deliver(now)
    LocmemSmsBackend.outbox = []
    long_text = "Please read your e-mail before your visit tomorrow. " * 6
    for row in day_before_rows(appointment, "sms"):
        ReminderTemplate.objects.filter(pk=row.template_id).update(sms_text=long_text.strip())
    pre_care = day_before_rows(appointment, "sms").get(kind="pre_care")
    OutboxMessage.objects.filter(pk=pre_care.pk).update(due_at=DAY_BEFORE + timedelta(minutes=3))

    deliver(DAY_BEFORE)

    [alone] = LocmemSmsBackend.outbox
    pre_care.refresh_from_db()
    assert alone["outbox_id"] != str(pre_care.pk)
    assert (pre_care.status, pre_care.claim_token, pre_care.attempts) == (OutboxStatus.PENDING, None, 0)
    assert pre_care.due_at == DAY_BEFORE + timedelta(minutes=3)
    deliver(DAY_BEFORE + timedelta(minutes=3))
    assert [sms["outbox_id"] for sms in LocmemSmsBackend.outbox][1:] == [str(pre_care.pk)]


@pytest.mark.parametrize("copy_is", ["newer", "older"])
def test_a_row_handed_back_after_a_copy_of_it_was_put_to_pending_keeps_the_newer_of_the_two(
    patient, practitioner, now, monkeypatch, copy_is
):
    """While a send held a row it claimed to go along, another copy of it became `pending` (a booking change planned
    a newer one; an older one's send put it back); only one unsent copy may exist: the newer stays, the older is
    cancelled as superseded, and the send does not fail."""
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    deliver(now)
    LocmemSmsBackend.outbox = []
    long_text = "Please read your e-mail before your visit tomorrow. " * 6  # too long to share a text: handed back
    for row in day_before_rows(appointment, "sms"):
        ReminderTemplate.objects.filter(pk=row.template_id).update(sms_text=long_text.strip())
    pre_care = day_before_rows(appointment, "sms").get(kind="pre_care")
    OutboxMessage.objects.filter(pk=pre_care.pk).update(due_at=DAY_BEFORE + timedelta(minutes=3))
    real, copies = dispatch._send_locked, []

    def a_copy_appears(message, claim_token, batch, moment):
        rider = OutboxMessage.objects.get(pk=pre_care.pk)
        if not copies and message.channel == "sms":  # the text's send claimed the pre-care text to go along
            assert (rider.status, rider.claim_token) == (OutboxStatus.SENDING, claim_token)
            rider.pk, rider.status, rider.claim_token, rider.claimed_until = uuid.uuid4(), "pending", None, None
            rider.created_at += timedelta(seconds=1 if copy_is == "newer" else -1)
            rider.save(force_insert=True)
            copies.append(rider.pk)
        return real(message, claim_token, batch, moment)

    monkeypatch.setattr(dispatch, "_send_locked", a_copy_appears)
    outcomes = deliver(DAY_BEFORE)

    assert set(outcomes) == {"sent", "merged"}  # the reminder by SMS, the reminder and pre-care in one e-mail
    copy, rider = OutboxMessage.objects.get(pk=copies[0]), OutboxMessage.objects.get(pk=pre_care.pk)
    newer, older = (copy, rider) if copy_is == "newer" else (rider, copy)
    assert (newer.status, newer.claim_token) == (OutboxStatus.PENDING, None)
    assert (older.status, older.last_error) == (OutboxStatus.CANCELLED, "superseded by a newer copy")
