"""Messages to one patient due within a few minutes go as one per channel, every text kept.

The day before a microneedling appointment the reminder and the pre-care fall due in the
same minute; the patient gets one e-mail and one SMS, not two of each (issue: hardening 18).
"""

from datetime import timedelta

import time_machine
from django.core import mail
from django.utils import timezone

from reminders import content
from reminders.channels import LocmemSmsBackend
from reminders.dispatch import SendOutcome, dispatch_local, outbox_claim_due, outbox_send
from reminders.models import OutboxMessage, OutboxStatus, ReminderTemplate
from tests.factories import PatientFactory, PractitionerFactory
from tests.reminders.conftest import book, london
from tests.reminders.support import ScriptedSmsBackend

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


def test_a_row_claimed_by_another_dispatcher_is_taken_over_and_its_own_send_stops(patient, practitioner, now):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    deliver(now)
    LocmemSmsBackend.outbox = []

    claims = outbox_claim_due(now=DAY_BEFORE)  # one dispatcher claims all four rows
    by_id = {c.message_id: c for c in claims}
    sms_rows = list(day_before_rows(appointment, "sms").order_by("kind"))
    first, second = sms_rows
    assert outbox_send(message_id=first.pk, claim_token=by_id[first.pk].token, now=DAY_BEFORE) == SendOutcome.SENT
    assert outbox_send(message_id=second.pk, claim_token=by_id[second.pk].token, now=DAY_BEFORE) == SendOutcome.MERGED
    assert len(LocmemSmsBackend.outbox) == 1


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
