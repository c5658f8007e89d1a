"""Review of 661f30a: a message takes along only rows its own task holds the claim of (riders).

A send first claims the patient's `pending` rows that could go with it (`reminders.riders.claim_riders`), takes as
companions only rows its own task holds (`_companions`), and hands back those that did not go (`release_riders`);
the dispatcher keeps a patient's claimed rows in one task (`_tasks_of`). docs/reminders.md, "One message, not two
in the same minute" and "Delivery and its guarantee". The review found five defects, each mended in the next
commit (its test says what happened before the mend: a rider held after a send that raised before the provider call;
rows a rolled-back message carried sent again by the same task; a patient's rows split between two claims or put one
a task; rows left in doubt long ago hiding a carrier); the other tests guard paths it checked.
"""

import threading
import uuid
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.db import OperationalError, connection
from django.utils import timezone

from reminders import content, dispatch, riders
from reminders.channels import LocmemSmsBackend
from reminders.models import MessageKind, OutboxMessage, OutboxStatus, ReminderTemplate
from scheduler.booking import appointment_cancel
from tests.factories import PatientFactory
from tests.races import held_in_another_connection, in_a_thread
from tests.reminders import conftest as reminder_fixtures
from tests.reminders.conftest import RECEPTION, book, london
from tests.reminders.support import patients_by_email_and_sms, sender_dies

# The reminders suite's world (a London clinic with the shipped care texts, Dr Hart, Ada by e-mail and SMS, the
# locmem backends), in place of the API world tests/qa/conftest.py gives.
_reminder_settings = reminder_fixtures._reminder_settings
clinic = reminder_fixtures.clinic
practitioner = reminder_fixtures.practitioner
patient = reminder_fixtures.patient

# The conftest `now` is Monday 2 March 2026, 09:00 in London.
TUESDAY = london(2026, 3, 10, 10)
WEDNESDAY = london(2026, 3, 11, 10)
LATER = london(2026, 4, 9, 10)  # microneedling four weeks after the filler (the rules allow it then)
MICRONEEDLING = london(2026, 3, 4, 10)  # its reminder and pre-care fall due the day before, 10:00
DAY_BEFORE = london(2026, 3, 3, 10)


def deliver(moment):
    with time_machine.travel(moment, tick=False):
        return dispatch.dispatch_local(now=timezone.now())


def send(claims, moment):
    return dispatch.outbox_send_batch(
        message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=moment
    )


@pytest.fixture
def by_email(clinic):
    return PatientFactory(clinic=clinic, first_name="Ada", email="ada@example.com", reminder_channels=["email"])


def confirmation(appointment):
    return OutboxMessage.objects.get(appointment=appointment, kind=MessageKind.CONFIRMATION, channel="email")


def a_confirmation_and_a_pending_rider(patient, now):
    """Tuesday's confirmation claimed; Wednesday booked after the claim: its confirmation, due too, is `pending`
    and can only ride along (reminders.riders.claim_riders)."""
    tuesday = book(patient, "botox", TUESDAY, now)
    claims = dispatch.outbox_claim_due(now=now)
    assert [c.message_id for c in claims] == [confirmation(tuesday).pk]
    wednesday = book(patient, "filler", WEDNESDAY, now)
    rider = confirmation(wednesday)
    assert (rider.status, rider.attempts) == (OutboxStatus.PENDING, 0)
    return claims, confirmation(tuesday), rider


def microneedling_day_before(patient, now):
    """The day before a microneedling visit: its reminder and pre-care, by e-mail and by SMS, all due at ALL_DUE
    (four rows, two messages when merged). The pre-care notes fall due a minute after the reminders, so the claim
    reads the reminders first (a pre-care read first waits for its reminder, `earlier_unsent`, and is then taken
    along as a `pending` rider: the outcome would hang on the rows' random ids)."""
    book(patient, "microneedling", MICRONEEDLING, now)
    deliver(now)  # the confirmations
    mail.outbox, LocmemSmsBackend.outbox = [], []
    due = OutboxMessage.objects.filter(kind__in=["reminder", "pre_care"], status=OutboxStatus.PENDING)
    assert due.count() == 4 and not due.filter(due_at__gt=DAY_BEFORE).exists()
    due.filter(kind="pre_care").update(due_at=DAY_BEFORE + timedelta(minutes=1))


ALL_DUE = DAY_BEFORE + timedelta(minutes=1)


def dispatched_tasks(moment, **kwargs):
    tasks = []
    with time_machine.travel(moment, tick=False):
        dispatch.dispatch_due_batches(now=timezone.now(), enqueue=tasks.append, **kwargs)
    return tasks


# --- Guards ---------------------------------------------------------------------------------------------------------


def test_a_failed_enqueue_hands_back_exactly_the_claims_not_enqueued_and_keeps_each_patient_whole(
    clinic, practitioner, now
):
    """_tasks_of regroups the claim by patient and channel; the release after a failed enqueue must follow the regrouped
    order (`in_order`), not the claim's: the tasks enqueued keep their claims, every other claim goes back uncounted."""
    patients = patients_by_email_and_sms(clinic, 3)
    for i, someone in enumerate(patients):
        book(someone, "microneedling", MICRONEEDLING + timedelta(hours=i), now)
    deliver(now)
    moment = DAY_BEFORE + timedelta(hours=3)
    # All due at the same moment: the claim reads them by id, the patients' rows interleaved, so the tasks' order
    # (a patient's rows together) is not the claim's.
    OutboxMessage.objects.filter(kind__in=["reminder", "pre_care"]).update(due_at=DAY_BEFORE)
    enqueued = []

    def enqueue(task):
        if len(enqueued) == 2:
            raise ConnectionError("the broker went away")
        enqueued.append(task)

    with time_machine.travel(moment, tick=False):
        handed = dispatch.dispatch_due_batches(now=timezone.now(), enqueue=enqueue, per_task=2)

    rows = OutboxMessage.objects.filter(kind__in=["reminder", "pre_care"]).select_related("appointment")
    assert rows.count() == 12
    owner = {r.pk: (r.appointment.patient_id, r.channel) for r in rows}
    taken = [c.message_id for task in enqueued for c in task]
    assert handed == len(taken) == 4 and len(set(taken)) == 4
    assert all(len({owner[c.message_id] for c in task}) == 1 for task in enqueued)  # a patient's channel a task
    for row in rows:
        if row.pk in taken:
            assert (row.status, row.attempts) == (OutboxStatus.SENDING, 1)
        else:
            assert (row.status, row.claim_token, row.attempts) == (OutboxStatus.PENDING, None, 0)


def test_a_rider_claimed_by_a_send_that_is_deferred_goes_back_uncounted(by_email, practitioner, now):
    """The send claims its riders before it knows whether its own row goes; an outcome that sends nothing (here
    DEFERRED: an earlier message of its visit must go first) hands them back as they were."""
    claims, tuesday, rider = a_confirmation_and_a_pending_rider(by_email, now)
    seen = []

    def must_wait(message, batch, *, going_with):
        held = OutboxMessage.objects.get(pk=rider.pk)
        seen.append((held.status, held.claim_token, [c.pk for c in going_with]))
        return True

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(riders, "earlier_unsent", must_wait)
        assert send(claims, now) == {tuesday.pk: dispatch.SendOutcome.DEFERRED}

    assert seen == [(OutboxStatus.SENDING, claims[0].token, [rider.pk])]  # claimed, and about to ride along
    rider.refresh_from_db()
    assert (rider.status, rider.claim_token, rider.attempts) == (OutboxStatus.PENDING, None, 0)
    assert mail.outbox == []


@pytest.mark.postgres
def test_a_rider_another_connection_holds_is_left_pending_and_goes_at_its_own_time(
    transactional_db, by_email, practitioner, now
):
    """# Race condition: claim_riders takes `pending` rows with SKIP LOCKED; one a booking change (or another
    sender) holds is neither waited for nor taken, and stays `pending`, its attempt uncounted."""
    claims, tuesday, rider = a_confirmation_and_a_pending_rider(by_email, now)

    def lock_rider():
        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM scheduler_outboxmessage WHERE id = %s FOR UPDATE", [rider.pk])

    with held_in_another_connection(lock_rider):
        assert send(claims, now) == {tuesday.pk: dispatch.SendOutcome.SENT}

    [alone] = mail.outbox
    assert "Tue 10 Mar" in alone.body and "Wed 11 Mar" not in alone.body
    rider.refresh_from_db()
    assert (rider.status, rider.claim_token, rider.attempts) == (OutboxStatus.PENDING, None, 0)
    deliver(now + timedelta(seconds=1))
    rider.refresh_from_db()
    assert rider.status == OutboxStatus.SENT and len(mail.outbox) == 2


@pytest.mark.postgres
def test_two_tasks_racing_for_the_same_pending_rider_send_it_once(transactional_db, by_email, practitioner, now):
    """# Race condition: Tuesday's and Wednesday's confirmations are in two claims (two tasks); a third visit's
    confirmation, `pending`, could ride with either. Both sends reach claim_riders at once (separate connections):
    one takes it, the other leaves it; every confirmation reaches the patient once and no row stays `sending`."""
    book(by_email, "botox", TUESDAY, now)
    first = dispatch.outbox_claim_due(now=now)
    book(by_email, "filler", WEDNESDAY, now)
    second = dispatch.outbox_claim_due(now=now)
    book(by_email, "microneedling", LATER, now)
    assert len(first) == len(second) == 1
    together, real = threading.Barrier(2, timeout=10), riders.claim_riders

    def at_once(*args):
        together.wait()
        return real(*args)

    outcome = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(riders, "claim_riders", at_once)
        threads = [in_a_thread(lambda claims=claims: send(claims, now), outcome) for claims in (first, second)]
        for thread in threads:
            thread.join(30)
    assert not [o for o in outcome if isinstance(o, BaseException)], outcome

    told = [day for email in mail.outbox for day in ("Tue 10 Mar", "Wed 11 Mar", "Thu 9 Apr") if day in email.body]
    assert sorted(told) == sorted(["Tue 10 Mar", "Wed 11 Mar", "Thu 9 Apr"])
    rows = OutboxMessage.objects.filter(kind=MessageKind.CONFIRMATION)
    assert sorted(rows.values_list("status", "attempts")) == [(OutboxStatus.SENT, 1)] * 3


def a_rider_inside_a_message_whose_sender_died(patient, now, monkeypatch):
    """Tuesday's confirmation claimed; Wednesday's, `pending` and due a minute earlier (a retry whose backoff ended
    after the claim), rides inside it; the sender dies after the provider took the e-mail; Wednesday is cancelled.
    Claimed again, the rider is read (and asked about) before its carrier."""
    claims, tuesday, rider = a_confirmation_and_a_pending_rider(patient, now)
    OutboxMessage.objects.filter(pk=rider.pk).update(due_at=now - timedelta(minutes=1))
    sender_dies(monkeypatch, lambda: send(claims, now), after_the_provider_took_it=True)
    [carrier] = mail.outbox
    assert carrier.extra_headers["X-Outbox-Id"] == str(tuesday.pk) and "Wed 11 Mar" in carrier.body
    appointment_cancel(appointment=rider.appointment, actor=RECEPTION, now=now)
    return tuesday, rider


def cancellation_sent(appointment):
    return OutboxMessage.objects.filter(
        appointment=appointment, kind=MessageKind.CANCELLED, status=OutboxStatus.SENT
    ).exists()


def test_a_rider_asked_about_before_its_carrier_is_settled_still_counts_as_told(
    by_email, practitioner, now, monkeypatch, settings
):
    """_may_have_gone_inside_another's second branch: the carrier is still in doubt (not yet found sent) when the
    rider is asked about; the provider has the carrier, so the rider stays in doubt and the cancellation goes."""
    tuesday, rider = a_rider_inside_a_message_whose_sender_died(by_email, now, monkeypatch)
    after_lease = now + timedelta(seconds=settings.REMINDERS_CLAIM_LEASE_SECONDS + 1)

    deliver(after_lease)
    deliver(after_lease + timedelta(minutes=30))

    tuesday.refresh_from_db(), rider.refresh_from_db()
    assert tuesday.payload.get("found_sent") is True
    assert (rider.status, rider.in_doubt) == (OutboxStatus.CANCELLED, True)
    assert cancellation_sent(rider.appointment)


# --- Defects --------------------------------------------------------------------------------------------------------


def test_a_send_that_raises_before_the_provider_call_hands_its_riders_back(by_email, practitioner, now, monkeypatch):
    """Steps: Tuesday's confirmation is claimed; Wednesday is booked (its confirmation `pending`, due); the task
    sends Tuesday's, which claims Wednesday's to ride along (claim_riders); rendering the merged e-mail raises an
    unexpected error (a template bug: KeyError, not a RenderError) before anything reaches the provider.
    Expected: Tuesday's row is a failed attempt (`_send_raised`: pending, retried after the backoff) and Wednesday's,
    which the provider never saw, goes back to `pending` uncounted (as on every other outcome that sent nothing;
    `_send_one` already tells "handed" from "not handed" for BUSY).
    Before the mend: `_send_one` only releases riders when `_send_locked` returns; on a raise they stay `sending` under
    the claim, attempts 1, for the whole lease (300 s), are then claimed again as a dead sender's rows (in doubt, a
    second attempt counted) and count meanwhile as possibly told (a cancellation of Wednesday would be sent)."""
    claims, tuesday, rider = a_confirmation_and_a_pending_rider(by_email, now)
    real_render = content.render_messages

    def a_template_bug(*, messages, **kwargs):
        if len(messages) > 1:
            raise KeyError("procedure_name")
        return real_render(messages=messages, **kwargs)

    monkeypatch.setattr(content, "render_messages", a_template_bug)
    assert send(claims, now) == {tuesday.pk: dispatch.SendOutcome.RETRY}

    assert mail.outbox == []  # nothing reached the provider
    rider.refresh_from_db()
    assert (rider.status, rider.claim_token, rider.attempts) == (OutboxStatus.PENDING, None, 0)


def test_rows_that_rode_inside_a_send_that_raised_after_the_provider_took_it_do_not_go_again_in_the_same_batch(
    by_email, practitioner, now, monkeypatch
):
    """Steps: Tuesday and Wednesday are booked and their confirmations claimed in one task; 9 April is booked (its
    confirmation `pending`, a rider). The task sends Tuesday's with Wednesday's and 9 April's inside; the provider
    takes the e-mail, then recording it fails (a database error, not a lock wait: the send's transaction rolls
    back, `_send_raised` marks Tuesday's in doubt). The task goes on to Wednesday's row.
    Expected: Wednesday's and 9 April's may have reached the patient inside Tuesday's e-mail (the task knows it:
    `batch.handed`); like the carrier they are left in doubt to be asked about, not sent again at once.
    Before the mend: both are still `sending` under the task's claim (and in `batch.held`), so Wednesday's own send goes
    and takes 9 April's along: the patient gets both confirmations twice within the second; a message goes twice only
    when its provider cannot tell or a sender died (docs/reminders.md, "Delivery and its guarantee"). (Wednesday's part
    predates 661f30a; 9 April's is the new rider path.)"""
    book(by_email, "botox", TUESDAY, now)
    book(by_email, "filler", WEDNESDAY, now)
    claims = dispatch.outbox_claim_due(now=now)
    assert len(claims) == 2
    book(by_email, "microneedling", LATER, now)
    real_mark, failures = dispatch._mark_sent_with, []

    def recording_fails_once(companions, message, moment):
        if not failures:
            failures.append(message.pk)
            raise OperationalError("server closed the connection unexpectedly")
        return real_mark(companions, message, moment)

    monkeypatch.setattr(dispatch, "_mark_sent_with", recording_fails_once)
    send(claims, now)

    first = mail.outbox[0]
    assert all(day in first.body for day in ("Tue 10 Mar", "Wed 11 Mar", "Thu 9 Apr"))  # all three went in it
    told = [day for email in mail.outbox for day in ("Wed 11 Mar", "Thu 9 Apr") if day in email.body]
    assert told == ["Wed 11 Mar", "Thu 9 Apr"]


def test_a_patients_rows_split_between_two_claims_still_go_as_one_message_a_channel(
    patient, practitioner, now, settings
):
    """Steps: the day before a microneedling visit four rows are due (reminder and pre-care, e-mail and SMS); a claim
    takes REMINDERS_BATCH_SIZE rows (3 here; 100 by default, so in a burst every claim boundary splits a patient);
    the beat claims again in the same run (a full claim), then the workers run both tasks.
    Expected: one e-mail and one SMS (docs/reminders.md, "One message, not two in the same minute"; before 661f30a
    the first task took the second claim's row over under its lock).
    Before the mend: _tasks_of groups a patient's rows within one claim only; the row the second claim took is `sending`
    under another task and is left to it (`_companions`), so that channel gets two messages."""
    microneedling_day_before(patient, now)
    settings.REMINDERS_BATCH_SIZE = 3

    tasks = dispatched_tasks(ALL_DUE, per_task=20, rounds=2, budget=60)
    assert [len(task) for task in tasks] == [4]  # the full claim took the rest of its patient's due rows
    for task in tasks:
        send(task, ALL_DUE)

    assert (len(mail.outbox), len(LocmemSmsBackend.outbox)) == (1, 1)


def test_a_patients_rows_go_as_one_message_a_channel_with_one_row_a_task(patient, practitioner, now, settings):
    """Steps: REMINDERS_SEND_BATCH_SIZE=1 (a valid setting: one row a Celery task); the day before a microneedling
    visit its reminder and pre-care are due by e-mail and SMS; the beat (dispatch_due_batches) hands them on and
    the workers send each task.
    Expected: one e-mail and one SMS (docs/reminders.md: "a patient's rows stay in one task (which may then hold a
    few more), so that they can go as one message").
    Before the mend: `_tasks_of` returns `[[claim] for claim in claims]` when per_task <= 1 (kept for `dispatch_due`,
    whose enqueue takes one claim), so each row is its own task, each leaves the other's row to it: four messages. Mend:
    group by patient whatever per_task, and give `dispatch_due` its own split."""
    microneedling_day_before(patient, now)
    settings.REMINDERS_SEND_BATCH_SIZE = 1

    tasks = dispatched_tasks(ALL_DUE)
    assert [len(task) for task in tasks] == [2, 2]  # a patient's e-mails in one task, texts in another
    for task in tasks:
        send(task, ALL_DUE)

    assert (len(mail.outbox), len(LocmemSmsBackend.outbox)) == (1, 1)


def test_rows_left_in_doubt_long_ago_do_not_hide_the_carrier_of_a_rider(
    by_email, practitioner, now, monkeypatch, settings
):
    """Steps: the patient has five e-mail rows of earlier visits left in doubt for good (dropped while in doubt, as
    the rider below ends; `in_doubt` is never cleared on a cancelled row). Tuesday's confirmation carries
    Wednesday's inside it, its sender dies after the provider took the e-mail, Wednesday is cancelled; after the
    lease both are claimed again and Wednesday's is asked about first (not at the provider under its own id).
    Expected: as in test_a_rider_asked_about_before_its_carrier_is_settled_still_counts_as_told: the provider has
    the carrier, so Wednesday's stays in doubt and its cancellation goes (promise: the last word is true).
    Before the mend: `others.filter(in_doubt=True).order_by("due_at", "id")[:MAX_MERGED]` takes the five old rows, none
    at the provider; the carrier is never asked about; Wednesday's is taken as never sent and dropped, and so is
    its cancellation: the patient holds Wednesday's confirmation and is never told it is cancelled.
    Mend: ask about the rows whose doubt could overlap this one (newest first, or claimed since this row's doubt
    began less a lease), not the oldest."""
    old = OutboxMessage.objects.none()
    tuesday, rider = a_rider_inside_a_message_whose_sender_died(by_email, now, monkeypatch)
    for days in range(30, 35):
        ghost = OutboxMessage.objects.get(pk=tuesday.pk)
        ghost.pk, ghost.status, ghost.claim_token, ghost.claimed_until = uuid.uuid4(), "cancelled", None, None
        ghost.due_at = ghost.in_doubt_since = now - timedelta(days=days)
        ghost.in_doubt, ghost.provider_id, ghost.last_error = True, "", "the appointment was cancelled"
        ghost.save(force_insert=True)
        old = old | OutboxMessage.objects.filter(pk=ghost.pk)
    assert old.count() == 5
    after_lease = now + timedelta(seconds=settings.REMINDERS_CLAIM_LEASE_SECONDS + 1)

    deliver(after_lease)
    deliver(after_lease + timedelta(minutes=30))

    tuesday.refresh_from_db(), rider.refresh_from_db()
    assert tuesday.payload.get("found_sent") is True
    assert cancellation_sent(rider.appointment)


# --- Found by a second (read-only) review of 6ca3df2, mended with it ------------------------------------------------


def test_a_rider_the_message_did_not_carry_is_handed_back_when_the_record_fails_after_the_provider_took_it(
    patient, practitioner, now, monkeypatch
):
    """Steps: the day before a microneedling visit its reminder text is claimed; its pre-care text, due three minutes
    later and too long to share a text, is claimed to ride along and is not taken; the provider takes the reminder,
    then recording it fails (a database error rolls the send back).
    Expected: the reminder and what it carried stay claimed, to be asked about after the lease; the pre-care text,
    which the provider never had, is handed back `pending`, its attempt uncounted, and goes at its own time.
    Before the mend: every rider stayed `sending` for the lease, then in doubt (a cancellation would count it as
    told)."""
    appointment = book(patient, "microneedling", MICRONEEDLING, now)
    deliver(now)
    LocmemSmsBackend.outbox = []
    rows = OutboxMessage.objects.filter(appointment=appointment, channel="sms", kind__in=["reminder", "pre_care"])
    for row in rows:
        ReminderTemplate.objects.filter(pk=row.template_id).update(sms_text="Read your e-mail first. " * 14)
    reminder, pre_care = rows.get(kind="reminder"), rows.get(kind="pre_care")
    OutboxMessage.objects.filter(pk=pre_care.pk).update(due_at=DAY_BEFORE + timedelta(minutes=3))
    OutboxMessage.objects.exclude(pk=reminder.pk).filter(due_at__lte=DAY_BEFORE).update(due_at=LATER)
    claims = dispatch.outbox_claim_due(now=DAY_BEFORE)
    assert [c.message_id for c in claims] == [reminder.pk]
    real_mark = dispatch._mark_sent_with

    def recording_fails(companions, message, moment):
        assert companions == []  # the pre-care text could not join
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(dispatch, "_mark_sent_with", recording_fails)
    send(claims, DAY_BEFORE)
    monkeypatch.setattr(dispatch, "_mark_sent_with", real_mark)

    [handed] = LocmemSmsBackend.outbox
    assert handed["outbox_id"] == str(reminder.pk)
    reminder.refresh_from_db(), pre_care.refresh_from_db()
    assert reminder.in_doubt  # it may have gone: asked about before it goes again
    assert (pre_care.status, pre_care.claim_token, pre_care.attempts, pre_care.in_doubt) == ("pending", None, 0, False)


def test_a_full_claim_takes_no_more_of_a_patients_rows_than_can_go_as_one_message(patient, practitioner, now, settings):
    """A full claim takes the rest of its patients' due rows by the channel (`_rest_of_their_patients`), but no more
    than can go as one message (reminders.riders.MAX_MERGED) for each: a task stays within its lease."""
    appointment = book(patient, "microneedling", MICRONEEDLING, now)
    deliver(now)
    template = OutboxMessage.objects.get(appointment=appointment, channel="sms", kind="reminder")
    OutboxMessage.objects.filter(appointment=appointment).exclude(status="sent").update(due_at=LATER)
    copies = []
    for _ in range(9):  # nine more texts due for the patient (copies of one the database would hold as others)
        row = OutboxMessage.objects.get(pk=template.pk)
        row.pk, row.template, row.status, row.due_at = uuid.uuid4(), None, "pending", DAY_BEFORE
        row.save(force_insert=True)
        copies.append(row.pk)
    settings.REMINDERS_BATCH_SIZE = 2

    claims, found = dispatch._claim_due(now=ALL_DUE, limit=2)

    assert len(claims) == 1 + riders.MAX_MERGED and found == len(claims)  # one message: itself and five
    assert {c.message_id for c in claims} <= set(copies)
    assert OutboxMessage.objects.filter(pk__in=copies, status="pending").count() == 9 - len(claims)


def test_a_full_claim_takes_the_rest_of_a_patients_rows_by_that_channel_only(patient, practitioner, now):
    """The rest a full claim takes is read by the patients and the channels of the rows it holds, the (patient,
    channel) pairs picked out after (docs/benchmarks.md, twelfth part: an `OR` of one condition a pair cost
    PostgreSQL 45 ms a claim). A claim holding Ada's reminder e-mail and Bea's reminder text takes Ada's pre-care
    e-mail and Bea's pre-care text, not Ada's texts nor Bea's e-mails: a text never rides inside an e-mail, and
    those go under their own claim."""
    bea = PatientFactory(
        clinic=patient.clinic,
        first_name="Bea",
        email="bea@example.com",
        phone="+447700900124",
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )
    book(patient, "microneedling", MICRONEEDLING, now)
    book(bea, "microneedling", MICRONEEDLING + timedelta(hours=2), now)
    deliver(now)  # the confirmations
    rows = OutboxMessage.objects.filter(kind__in=["reminder", "pre_care"], status="pending")
    assert rows.count() == 8
    rows.update(due_at=DAY_BEFORE + timedelta(minutes=1))
    first = [
        rows.get(appointment__patient=patient, channel="email", kind="reminder"),
        rows.get(appointment__patient=bea, channel="sms", kind="reminder"),
    ]
    OutboxMessage.objects.filter(pk__in=[row.pk for row in first]).update(due_at=DAY_BEFORE)

    claims, found = dispatch._claim_due(now=ALL_DUE, limit=2)

    taken = set(
        OutboxMessage.objects.filter(pk__in=[c.message_id for c in claims]).values_list(
            "appointment__patient__first_name", "channel", "kind"
        )
    )
    assert len(claims) == found == 4
    assert taken == {
        (patient.first_name, "email", "reminder"),
        (patient.first_name, "email", "pre_care"),
        ("Bea", "sms", "reminder"),
        ("Bea", "sms", "pre_care"),
    }
    assert rows.filter(status="pending").count() == 4  # Ada's texts and Bea's e-mails wait for their own claim
