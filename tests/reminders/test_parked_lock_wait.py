# ruff: noqa: F811 (the fixtures imported from tests/reminders/helpers.py are named as the tests ask for them)
"""How long a parked delivery report's recording waits for locks (reminders.reports, reports.delivery_reported).

docs/reminders.md, "Delivery reports from the providers": a report as it comes (the webhook) waits
dispatch.ROW_LOCK_WAIT for its row; a parked one, already waited for, waits reports.PARKED_LOCK_WAIT for each lock
it takes, and a run that finds its row still locked leaves it for the next run (attempts + 1, error kept) and goes
on with the ones behind it, within the run's budget (a START's run, inside the inbound webhook, a smaller one).
PostgreSQL: the lock_timeout in force is read (SHOW) at each statement that takes a row lock, and real locks are
held from a second connection. Not timed: what is asserted is the wait set, who was recorded and who was left.
And a STOP whose row is still locked when the patient's START comes, recorded after it, leaves texts on: the START
recorded itself (consent.sms_reply_opt_in; a strict-xfail DEFECT until it did).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import connection, transaction

from reminders import dispatch
from reminders import reports as parked_reports
from reminders.channels import DeliveryReport
from reminders.models import OutboxMessage, ParkedDeliveryReport
from tests.races import held_in_another_connection
from tests.reminders.helpers import (  # noqa: F401 (fixtures)
    SID,
    park,
    report,
    reports,
    sent_text,
    text_sent,
)

pytestmark = pytest.mark.django_db


def row_held(text: OutboxMessage):
    """Another connection's transaction holding `text`'s row (a sender stuck on the provider, say)."""
    return held_in_another_connection(lambda: OutboxMessage.objects.select_for_update().filter(pk=text.pk).exists())


@contextmanager
def lock_waits_seen() -> Iterator[list[str]]:
    """PostgreSQL's lock_timeout as it stands at each statement of this connection that takes a row lock."""
    seen: list[str] = []

    def show_first(execute, sql, params, many, context):
        if "FOR UPDATE" in sql:
            with context["connection"].cursor() as cursor:
                cursor.execute("SHOW lock_timeout")
                seen.append(cursor.fetchone()[0])
        return execute(sql, params, many, context)

    with connection.execute_wrapper(show_first):
        yield seen


def show_lock_timeout() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW lock_timeout")
        return cursor.fetchone()[0]


# --- Both databases ----------------------------------------------------------------------------------------------


def test_a_run_records_each_parked_report_with_the_short_wait_and_the_webhook_keeps_its_own(
    client, sent_text, monkeypatch, now
):
    waits = []
    original = parked_reports.delivery_reported

    def watching(**kwargs):
        waits.append(kwargs.get("lock_wait"))
        return original(**kwargs)

    monkeypatch.setattr(parked_reports, "delivery_reported", watching)
    park(sent_text, now + timedelta(minutes=1))
    assert parked_reports.parked_reports_record() == 1
    assert report(client, status="failed", error="30008").status_code == 204  # the webhook: a report as it comes
    assert waits == [parked_reports.PARKED_LOCK_WAIT, None]  # None: ROW_LOCK_WAIT, read when called
    sent_text.refresh_from_db()
    assert sent_text.status == "failed" and "30003" in sent_text.last_error


@pytest.mark.parametrize("wait", ["0", "0s", "", "1 s", "soon", "-1s"])
def test_a_lock_wait_that_is_not_one_is_refused_and_changes_nothing(sent_text, now, wait):
    """PostgreSQL reads a lock_timeout of 0 as no limit at all: refused before any statement runs."""
    undelivered = DeliveryReport(provider_id=SID, failed=True, stopped=False, detail="undelivered")
    with pytest.raises(ValueError, match="a lock wait is a whole number of seconds or milliseconds above 0"):
        parked_reports.delivery_reported(channel="sms", report=undelivered, now=now, lock_wait=wait)
    sent_text.refresh_from_db()
    assert (sent_text.status, sent_text.last_error) == ("sent", "")


def test_a_run_stops_taking_up_reports_once_its_budget_is_spent(clinic, practitioner, now):
    texts = [text_sent(clinic, now, phone=f"+44770090020{i}", sid=f"SM{i:032x}", hours_later=2 * i) for i in range(3)]
    parked = [park(text, now + timedelta(minutes=1)) for text in texts]
    ticks = iter([0.0, 3.0, 6.0])  # the run's start, then before each report after the first

    assert parked_reports.parked_reports_record(budget=5.0, clock=lambda: next(ticks)) == 2
    left = ParkedDeliveryReport.objects.get()
    assert (left.pk, left.attempts, left.last_error) == (parked[2].pk, 0, "")  # untried: no attempt counted
    texts[2].refresh_from_db()
    assert texts[2].status == "sent"

    assert parked_reports.parked_reports_record() == 1  # the next run
    texts[2].refresh_from_db()
    assert texts[2].status == "failed" and not ParkedDeliveryReport.objects.exists()


def test_a_starts_run_of_the_parked_stops_has_the_smaller_budget(sent_text, patient, monkeypatch, now):
    """Inside the inbound webhook's request: the START must still be heard within Twilio's 15 s, after a run that
    may overrun its budget by one report (a lock wait each for its row, a STOP, the rows it marks)."""
    runs = []
    monkeypatch.setattr(parked_reports, "parked_reports_record", lambda **kwargs: runs.append(kwargs) or 0)
    parked_reports.sms_reply_heard(from_number=patient.phone, body="START", now=now)
    parked_reports.sms_reply_heard(from_number=patient.phone, body="hello", now=now)
    assert runs == [{"stops_to": patient.phone, "budget": parked_reports.START_RUN_BUDGET}]  # its number's only
    assert parked_reports.START_RUN_BUDGET < parked_reports.PARKED_RUN_BUDGET
    assert parked_reports.START_RUN_BUDGET + 3 * float(parked_reports.PARKED_LOCK_WAIT.removesuffix("s")) < 15


# --- PostgreSQL: the lock_timeout in force, and real locks held from a second connection --------------------------


@pytest.mark.postgres
def test_every_lock_a_parked_stop_takes_is_waited_for_briefly_and_the_callers_wait_is_put_back(sent_text, patient, now):
    """The row the report names, the patient's and their rows being sent (the STOP), the rows it marks failed."""
    park(sent_text, now + timedelta(minutes=1), stopped=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', '7s', true)")  # the caller's own (this test's transaction)
    with lock_waits_seen() as seen:
        assert parked_reports.parked_reports_record() == 1
    assert len(seen) >= 3 and set(seen) == {"1s"}, seen
    assert show_lock_timeout() == "7s"
    patient.refresh_from_db()
    sent_text.refresh_from_db()
    assert not patient.sms_consent and sent_text.status == "failed"


@pytest.mark.postgres
def test_a_report_as_it_comes_waits_row_lock_wait_for_every_lock(transactional_db, client, sent_text, patient):
    """Outside any transaction, as the webhook runs: the STOP's own locks (the patient's, their rows being sent) are
    bounded too, where nothing was set (a sender stuck on the provider held the webhook as long as it was stuck)."""
    with lock_waits_seen() as seen:
        assert report(client, status="failed", error="21610", outbox=sent_text.pk).status_code == 204
    assert len(seen) >= 3 and set(seen) == {dispatch.ROW_LOCK_WAIT}, seen
    patient.refresh_from_db()
    assert not patient.sms_consent


@pytest.mark.postgres
def test_delivery_reported_inside_a_callers_transaction_leaves_its_lock_wait_as_it_was(sent_text, now):
    undelivered = DeliveryReport(provider_id=SID, failed=True, stopped=False, detail="undelivered", outbox_id="")
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', '7s', true)")
        assert parked_reports.delivery_reported(channel="sms", report=undelivered, now=now, lock_wait="1s") == 1
        assert show_lock_timeout() == "7s"


@pytest.mark.postgres
def test_a_parked_report_whose_row_is_held_is_left_for_the_next_run_and_the_ones_behind_it_are_recorded(
    transactional_db, clinic, practitioner, now
):
    held, *behind = [
        text_sent(clinic, now, phone=f"+44770090030{i}", sid=f"SM{i:032x}", hours_later=2 * i) for i in range(3)
    ]
    stuck = park(held, now + timedelta(minutes=1))
    for text in behind:
        park(text, now + timedelta(minutes=2))

    with row_held(held), lock_waits_seen() as seen:
        assert parked_reports.parked_reports_record() == 2
    assert seen[0] == parked_reports.PARKED_LOCK_WAIT  # the held row's, the run's first statement to take a lock
    stuck.refresh_from_db()
    assert stuck.attempts == 1 and "lock timeout" in stuck.last_error
    assert list(ParkedDeliveryReport.objects.values_list("pk", flat=True)) == [stuck.pk]
    for text in behind:
        text.refresh_from_db()
        assert text.status == "failed"
    held.refresh_from_db()
    assert held.status == "sent"

    assert parked_reports.parked_reports_record() == 1  # the row let go: the next run records it
    held.refresh_from_db()
    assert held.status == "failed" and not ParkedDeliveryReport.objects.exists()


@pytest.mark.postgres
def test_a_start_records_its_numbers_stop_behind_another_numbers_held_one(transactional_db, clinic, practitioner, now):
    """The START's run leaves the other number's STOP (its row held) for later, untried (not this sender's: it must
    not spend the START's time), and records this number's first: the START then undoes it, as if the STOP had been
    recorded when it came."""
    other = text_sent(clinic, now, phone="+447700900401", sid=f"SM{1:032x}", hours_later=0)
    ours = text_sent(clinic, now, phone="+447700900402", sid=f"SM{2:032x}", hours_later=2)
    theirs = park(other, now + timedelta(minutes=1), stopped=True)
    park(ours, now + timedelta(minutes=2), stopped=True)

    with row_held(other), lock_waits_seen() as seen:
        assert parked_reports.sms_reply_heard(from_number=ours.recipient, body="START", now=now + timedelta(minutes=5))
    assert seen[0] == parked_reports.PARKED_LOCK_WAIT
    theirs.refresh_from_db()
    assert theirs.attempts == 0 and list(ParkedDeliveryReport.objects.values_list("pk", flat=True)) == [theirs.pk]
    patient = ours.appointment.patient
    patient.refresh_from_db()
    assert patient.sms_consent and "sms" in patient.reminder_channels  # STOP recorded as of when it came, then START
    assert patient.opt_outs.get().at == now + timedelta(minutes=2)


@pytest.mark.postgres
def test_a_stop_whose_row_is_still_held_when_the_start_comes_is_not_recorded_after_it(
    transactional_db, clinic, practitioner, now
):
    text = text_sent(clinic, now, phone="+447700900501", sid=SID, hours_later=0)
    stop = park(text, now + timedelta(minutes=1), stopped=True)
    patient = text.appointment.patient

    with row_held(text):
        heard = parked_reports.sms_reply_heard(from_number=text.recipient, body="START", now=now + timedelta(minutes=5))
    stop.refresh_from_db()
    assert (heard, stop.attempts) == (0, 1)  # the START heard (texts were on: nothing to undo), the STOP left
    patient.refresh_from_db()
    assert patient.sms_consent
    [start] = patient.opt_ins.filter(via="sms_start")  # recorded all the same, for the STOP's check to find
    assert start.at == now + timedelta(minutes=5)

    assert parked_reports.parked_reports_record() == 1  # later, the row let go: the STOP as of when it came
    patient.refresh_from_db()
    assert patient.sms_consent and "sms" in patient.reminder_channels  # STOP then START: texts on
