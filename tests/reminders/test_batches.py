"""Sending a claim's rows as one batch (one Celery task): read once, each row committed as it goes.

A batch reads its rows, their merge candidates and the due rows of their visits in a few
queries, then sends each row in a short transaction of its own (lock, re-check, deliver, mark).
A sender that dies mid-batch therefore leaves the rows already delivered marked `sent`: only the
row in flight can be delivered twice, never the batch. test_celery.py kills a real worker.
"""

import threading
from datetime import timedelta

import pytest
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext

from reminders import dispatch
from reminders.channels import TransientSendError
from reminders.dispatch import SendOutcome, outbox_claim_due, outbox_send_batch
from reminders.models import OutboxMessage, OutboxStatus
from tests.factories import PatientFactory
from tests.races import held_in_another_connection
from tests.reminders.conftest import book, london
from tests.reminders.support import ScriptedSmsBackend


class SenderDied(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing in the send path catches it."""


class DyingSmsBackend(ScriptedSmsBackend):
    """Accepts `DyingSmsBackend.accept` texts, then the sender dies after the provider took the next one."""

    accept = 0

    def send(self, *, to: str, body: str, outbox_id: str) -> str:
        provider_id = super().send(to=to, body=body, outbox_id=outbox_id)
        if len(ScriptedSmsBackend.sent) > DyingSmsBackend.accept:
            raise SenderDied  # the provider has it; the database will never hear of it
        return provider_id


@pytest.fixture
def scripted_sms(settings):
    settings.SMS_BACKEND = "tests.reminders.test_batches.DyingSmsBackend"
    ScriptedSmsBackend.script, ScriptedSmsBackend.sent = [], []
    DyingSmsBackend.accept = 10_000
    yield ScriptedSmsBackend
    ScriptedSmsBackend.script, ScriptedSmsBackend.sent = [], []


@pytest.fixture
def texts(clinic, practitioner, now):
    """Six booking confirmations by SMS to six patients, due now."""
    for hour in range(10, 16):
        patient = PatientFactory(clinic=clinic, reminder_channels=["sms"], sms_consent=True)
        book(patient, "botox", london(2026, 3, 4, hour), now)
    rows = OutboxMessage.objects.filter(due_at__lte=now, channel="sms")
    assert rows.count() == 6
    return rows


def test_a_batch_sends_every_row_once_and_marks_each(texts, scripted_sms, now):
    claims = outbox_claim_due(now=now)

    outcomes = outbox_send_batch(message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=now)

    assert set(outcomes.values()) == {SendOutcome.SENT} and len(outcomes) == 6
    assert sorted(s["outbox_id"] for s in scripted_sms.sent) == sorted(
        str(pk) for pk in texts.values_list("pk", flat=True)
    )
    assert set(texts.values_list("status", flat=True)) == {OutboxStatus.SENT}
    # The same task delivered again (the broker redelivers it): nothing goes twice.
    again = outbox_send_batch(message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=now)
    assert set(again.values()) == {SendOutcome.STALE}
    assert len(scripted_sms.sent) == 6


def test_a_batch_reads_once_and_then_costs_a_few_statements_a_row(texts, scripted_sms, now):
    from reminders.texts import sms_text_problem

    sms_text_problem("")  # the process's copies are loaded, as in a worker that has sent before
    claims = outbox_claim_due(now=now)

    with CaptureQueriesContext(connection) as queries:
        outbox_send_batch(message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=now)

    assert len(scripted_sms.sent) == 6
    # Four reads for the batch (the configuration version, rows with relations, merge candidates, reading
    # order), then per row:
    # begin, lock and re-read, update, commit (SQLite has no explicit BEGIN in the log); on PostgreSQL also
    # the transaction's settings: commit without waiting for the disk, a bounded lock wait
    # (dispatch._send_transaction_settings), every row's.
    on_postgresql = connection.vendor == "postgresql"
    assert len(queries.captured_queries) <= 4 + (5 if on_postgresql else 4) * 6
    settings_sql = [q["sql"] for q in queries.captured_queries if "synchronous_commit" in q["sql"]]
    assert len(settings_sql) == (6 if on_postgresql else 0)
    assert all("'off'" in sql and "lock_timeout" in sql for sql in settings_sql)


def test_a_sender_killed_mid_batch_leaves_what_went_marked_and_resends_at_most_the_row_in_flight(
    texts, scripted_sms, now
):
    DyingSmsBackend.accept = 2
    claims = outbox_claim_due(now=now, lease=timedelta(minutes=5))

    with pytest.raises(SenderDied):
        outbox_send_batch(message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=now)

    delivered_first = [s["outbox_id"] for s in scripted_sms.sent]
    assert len(delivered_first) == 3
    marked = {str(pk) for pk in texts.filter(status=OutboxStatus.SENT).values_list("pk", flat=True)}
    assert marked == set(delivered_first[:2])  # committed as they went; the third died before its commit
    assert texts.filter(status=OutboxStatus.SENDING).count() == 4  # the row in flight and the three after it

    DyingSmsBackend.accept = 10_000
    later = now + timedelta(minutes=6)  # the lease ran out: the rows are claimed again
    assert dispatch.dispatch_local(now=later) == {"sent": 4}

    delivered = [s["outbox_id"] for s in scripted_sms.sent]
    assert sorted(set(delivered)) == sorted(str(pk) for pk in texts.values_list("pk", flat=True))  # none lost
    twice = {pk for pk in delivered if delivered.count(pk) > 1}
    assert twice == {delivered_first[2]}  # only the one in flight when the sender died
    assert set(texts.values_list("status", flat=True)) == {OutboxStatus.SENT}


class AnsweringDyingSmsBackend(DyingSmsBackend):
    """The same provider, one that can be asked whether it accepted a text (most SMS APIs can look one up)."""

    def accepted(self, *, outbox_id: str) -> str | None:
        return f"scripted-{outbox_id}" if any(s["outbox_id"] == outbox_id for s in ScriptedSmsBackend.sent) else None


def test_a_provider_that_can_be_asked_makes_the_row_in_flight_go_once(texts, scripted_sms, settings, now):
    """The sender dies after the provider accepted the third text: the next sender asks before sending it."""
    settings.SMS_BACKEND = "tests.reminders.test_batches.AnsweringDyingSmsBackend"
    DyingSmsBackend.accept = 2
    claims = outbox_claim_due(now=now, lease=timedelta(minutes=5))
    with pytest.raises(SenderDied):
        outbox_send_batch(message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=now)
    in_flight = scripted_sms.sent[2]["outbox_id"]
    assert texts.get(pk=in_flight).status == OutboxStatus.SENDING

    DyingSmsBackend.accept = 10_000
    later = now + timedelta(minutes=6)
    assert dispatch.dispatch_local(now=later) == {"found_sent": 1, "sent": 3}

    delivered = [s["outbox_id"] for s in scripted_sms.sent]
    assert sorted(delivered) == sorted(str(pk) for pk in texts.values_list("pk", flat=True))  # each once
    row = texts.get(pk=in_flight)
    # Dated when the claim it went under began (`in_doubt_since`), not when it was found.
    assert (row.status, row.provider_id, row.sent_at, row.in_doubt) == ("sent", f"scripted-{in_flight}", now, False)
    assert row.payload["found_sent"] is True and row.recipient == row.appointment.patient.phone
    assert "told_start" not in row.payload  # a confirmation: what start it named is not known now
    assert not texts.filter(in_doubt=True).exists()  # the three the provider never had went, and are settled


def test_a_row_whose_task_was_lost_is_asked_about_and_sent_once(texts, scripted_sms, settings, now):
    """The broker lost the task (Redis restarted): nothing went, the provider says so, the row goes."""
    settings.SMS_BACKEND = "tests.reminders.test_batches.AnsweringDyingSmsBackend"
    lease = timedelta(minutes=5)
    first = outbox_claim_due(now=now, lease=lease)  # claimed; its task never runs
    assert not texts.filter(in_doubt=True).exists()  # a fresh claim is not in doubt

    again = outbox_claim_due(now=now + timedelta(minutes=6), lease=lease)
    assert {c.message_id for c in again} == {c.message_id for c in first}
    assert texts.filter(in_doubt=True).count() == 6  # their sender stopped: the provider may have them

    outcomes = outbox_send_batch(
        message_ids=[c.message_id for c in again], claim_token=again[0].token, now=now + timedelta(minutes=6)
    )
    assert set(outcomes.values()) == {SendOutcome.SENT}
    assert len(scripted_sms.sent) == 6 and not texts.filter(in_doubt=True).exists()


class UnreachableSmsBackend(ScriptedSmsBackend):
    error: Exception = TransientSendError("the provider's API did not answer")

    def accepted(self, *, outbox_id: str) -> str | None:
        raise UnreachableSmsBackend.error


@pytest.mark.parametrize(
    "error", [TransientSendError("the provider's API did not answer"), ValueError("a backend's own bug")]
)
def test_a_row_in_doubt_waits_while_the_provider_cannot_be_asked_and_is_not_sent_blind(
    texts, scripted_sms, settings, now, error
):
    settings.SMS_BACKEND = "tests.reminders.test_batches.UnreachableSmsBackend"
    UnreachableSmsBackend.error = error
    rows = OutboxMessage.objects.filter(pk__in=list(texts.values_list("pk", flat=True)))
    lease = timedelta(minutes=5)
    outbox_claim_due(now=now, lease=lease)
    later = now + timedelta(minutes=6)

    assert dispatch.dispatch_local(now=later) == {"retry": 6}

    assert scripted_sms.sent == []  # not sent while its fate at the provider is unknown
    for row in rows:
        assert (row.status, row.in_doubt, row.due_at) == ("pending", True, later + dispatch.backoff(row.attempts))
        assert "could not ask the provider" in row.last_error

    # Once its attempts are used up it goes anyway: a patient told twice rather than never.
    settings.REMINDERS_MAX_ATTEMPTS = rows.first().attempts + 1
    assert dispatch.dispatch_local(now=later + timedelta(days=1)) == {"sent": 6}
    assert len(scripted_sms.sent) == 6 and not rows.filter(in_doubt=True).exists()


def test_a_row_in_doubt_stays_in_doubt_until_it_is_sent_when_the_provider_cannot_tell(texts, scripted_sms, now):
    """The scripted provider cannot be asked: the row goes (at least once); a failed try leaves it in doubt."""
    lease = timedelta(minutes=5)
    outbox_claim_due(now=now, lease=lease)
    later = now + timedelta(minutes=6)
    rows = OutboxMessage.objects.filter(pk__in=list(texts.values_list("pk", flat=True)))
    scripted_sms.script = ["transient"] * 6

    assert dispatch.dispatch_local(now=later) == {"retry": 6}
    assert set(rows.values_list("status", "in_doubt")) == {(OutboxStatus.PENDING, True)}

    assert dispatch.dispatch_local(now=later + timedelta(days=1)) == {"sent": 6}
    assert set(rows.values_list("status", "in_doubt")) == {(OutboxStatus.SENT, False)}


def test_a_row_given_up_after_its_senders_kept_dying_is_in_doubt(texts, settings, now):
    settings.REMINDERS_MAX_ATTEMPTS = 2
    lease = timedelta(minutes=1)
    for minutes in (0, 2, 4):  # claimed, the sender dies; again; then the claim gives up
        outbox_claim_due(now=now + timedelta(minutes=minutes), lease=lease)
    rows = OutboxMessage.objects.filter(pk__in=list(texts.values_list("pk", flat=True)))
    assert set(rows.values_list("status", "in_doubt")) == {(OutboxStatus.FAILED, True)}


def test_what_a_message_found_sent_told_the_patient(texts, now):
    confirmation = texts.first()
    assert confirmation.kind == "confirmation"
    assert dispatch._told_when_found(confirmation) == {}  # the start when it went: unknown now
    reminder = OutboxMessage.objects.filter(appointment=confirmation.appointment, kind="reminder").first()
    assert reminder.template.anchor == "start"
    # A start-anchored message goes only while the start is its anchor: that is the time it named.
    assert dispatch._told_when_found(reminder) == {"told_start": reminder.anchor_at.isoformat()}


def test_a_row_sent_meanwhile_is_left_alone_and_the_rest_of_the_batch_goes(texts, scripted_sms, now):
    """Another copy of the task (redelivered by the broker) sent one row first: this copy skips it."""
    claims = outbox_claim_due(now=now)
    ids = [c.message_id for c in claims]
    first = texts.get(pk=ids[0])
    first.status = OutboxStatus.SENT  # as if the other copy had already sent it and committed
    first.save(update_fields=["status"])

    outcomes = outbox_send_batch(message_ids=ids, claim_token=claims[0].token, now=now)

    assert outcomes[ids[0]] == SendOutcome.STALE
    assert [o for pk, o in outcomes.items() if pk != ids[0]] == [SendOutcome.SENT] * 5
    assert str(ids[0]) not in {s["outbox_id"] for s in scripted_sms.sent}


def test_an_email_batch_costs_no_more_a_row_than_texts_calendar_file_included(clinic, practitioner, now):
    from django.core import mail
    from icalendar import Calendar

    from reminders.texts import sms_text_problem

    for hour in range(10, 16):
        patient = PatientFactory(clinic=clinic, reminder_channels=["email"], email=f"p{hour}@example.com")
        book(patient, "botox", london(2026, 3, 4, hour), now)
    sms_text_problem("")  # the process's copies are loaded, as in a worker that has sent before
    claims = outbox_claim_due(now=now)
    assert len(claims) == 6

    with CaptureQueriesContext(connection) as queries:
        outbox_send_batch(message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=now)

    assert len(mail.outbox) == 6
    # The .ics SEQUENCE is read with each row's lock (content.calendar_changes), not counted per e-mail.
    assert len(queries.captured_queries) <= 4 + (5 if connection.vendor == "postgresql" else 4) * 6
    for email in mail.outbox:
        [attachment] = email.attachments
        [event] = Calendar.from_ical(attachment.get_payload(decode=True)).walk("VEVENT")
        assert int(event["sequence"]) == 0


def test_a_recall_reads_the_patients_history_once_however_often_its_text_is_built(clinic, practitioner, now):
    """A recall's earliest date is asked of the rules when it goes (reminders.content.recall_earliest): one read of
    the patient's history per message, though an e-mail's text is built more than once (review of 11df742)."""
    from django.core import mail

    from plans.defaults import plan_templates_load
    from scheduler.booking import appointment_complete
    from scheduler.lifecycle import Actor

    plan_templates_load()
    for hour in range(10, 14):
        patient = PatientFactory(clinic=clinic, reminder_channels=["email"], email=f"r{hour}@example.com")
        botox = book(patient, "botox", london(2026, 3, 4, hour), now)
        appointment_complete(appointment=botox, actor=Actor("clinician", clinical=True), now=botox.end_at)
    recalls = OutboxMessage.objects.filter(kind="recall")
    assert recalls.count() == 4
    due = max(recalls.values_list("due_at", flat=True))
    OutboxMessage.objects.exclude(kind="recall").update(status="cancelled")
    claims = outbox_claim_due(now=due)
    assert len(claims) == 4

    with CaptureQueriesContext(connection) as queries:
        outbox_send_batch(message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=due)

    assert len(mail.outbox) == 4
    history_reads = [q for q in queries.captured_queries if "UNION ALL" in q["sql"]]
    assert len(history_reads) == 4  # one a message


LOCK_ROW = "SELECT id FROM scheduler_outboxmessage WHERE id = %s FOR UPDATE"


def _lock_row(pk):
    with connection.cursor() as cursor:
        cursor.execute(LOCK_ROW, [pk])


@pytest.mark.postgres
def test_a_send_waits_for_its_row_when_another_transaction_holds_it_for_a_moment(
    transactional_db, texts, scripted_sms, now
):
    """A claim scanning for due rows keeps the lock of a row it found changed and did not return until it
    commits; a send that skipped its own row then left it `sending` until the lease ran out (seen in the bench)."""
    claims = outbox_claim_due(now=now, lease=timedelta(minutes=5))
    first = claims[0].message_id
    with held_in_another_connection(lambda: _lock_row(first), release_after=0.5):
        outcomes = outbox_send_batch(message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=now)
    assert set(outcomes.values()) == {SendOutcome.SENT}
    assert OutboxMessage.objects.get(pk=first).status == OutboxStatus.SENT


@pytest.mark.postgres
def test_a_send_gives_up_on_a_row_held_past_the_wait_and_leaves_it_to_its_lease(
    transactional_db, texts, scripted_sms, now, monkeypatch
):
    monkeypatch.setattr(dispatch, "ROW_LOCK_WAIT", "200ms")
    claims = outbox_claim_due(now=now, lease=timedelta(minutes=5))
    first = claims[0].message_id
    with held_in_another_connection(lambda: _lock_row(first)):
        outcomes = outbox_send_batch(message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=now)
    assert outcomes.pop(first) == SendOutcome.BUSY
    assert set(outcomes.values()) == {SendOutcome.SENT}  # the rest of the batch went on
    row = OutboxMessage.objects.get(pk=first)
    assert (row.status, row.claim_token) == (OutboxStatus.SENDING, claims[0].token)  # claimed again at lease end
    assert str(first) not in {s["outbox_id"] for s in scripted_sms.sent}


class PatientLockingSmsBackend(ScriptedSmsBackend):
    """While the provider takes a text, another connection locks the text's patient and appointment at once."""

    seen: list = []

    def send(self, *, to: str, body: str, outbox_id: str) -> str:
        def lock_elsewhere():
            row = OutboxMessage.objects.select_related("appointment").get(pk=outbox_id)
            try:
                with transaction.atomic(), connection.cursor() as cursor:
                    for table, pk in (
                        ("clinic_patient", row.appointment.patient_id),
                        ("clinic_appointment", row.appointment_id),
                    ):
                        cursor.execute(f"SELECT id FROM {table} WHERE id = %s FOR UPDATE NOWAIT", [pk])
                PatientLockingSmsBackend.seen.append("free")
            except OperationalError:
                PatientLockingSmsBackend.seen.append("locked")
            finally:
                connection.close()

        thread = threading.Thread(target=lock_elsewhere)
        thread.start()
        thread.join(10)
        return super().send(to=to, body=body, outbox_id=outbox_id)


@pytest.mark.postgres
def test_a_send_locks_its_outbox_row_only_not_the_patient_or_the_appointment(
    transactional_db, texts, scripted_sms, settings, now
):
    """Bookings and changes lock the patient, then the appointment: a send held through its provider call
    must not hold them (it would block them, or deadlock with them)."""
    settings.SMS_BACKEND = "tests.reminders.test_batches.PatientLockingSmsBackend"
    PatientLockingSmsBackend.seen = []
    claims = outbox_claim_due(now=now)

    outbox_send_batch(message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=now)

    assert PatientLockingSmsBackend.seen == ["free"] * 6
