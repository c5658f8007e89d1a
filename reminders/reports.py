"""Delivery reports from the providers: whether a report changes a sent message, and keeping one that could not be
recorded when it came. A provider that reports a text or e-mail it had accepted will not reach the patient (Twilio's
status callback, an e-mail provider's bounce: reminders.views) has the rows it carried marked failed
(`delivery_reported`); a STOP it reports is recorded as the patient's.

A provider sends a report once (Twilio's status callback): one whose row was locked past dispatch.ROW_LOCK_WAIT,
or whose recording failed while the database still answered, is parked here and recorded later, as of when it
came (docs/reminders.md, "Delivery reports from the providers"). An inbound START records the parked STOPs first.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime

from django.db import DatabaseError, connection, transaction
from django.db.models import F

from core.compiled import save_fields
from core.ids import parse_uuid
from core.redact import masked_logger
from reminders import channels, consent, dispatch
from reminders.models import Channel, OutboxMessage, OutboxStatus, ParkedDeliveryReport

log = masked_logger(__name__)


def sent_by_provider_id_sql(channel: str) -> str:
    """The `channel` rows (e-mail or SMS) sent under one provider id (`%s`), whatever their status now (a few at
    most; asking for one status too would let the status index compete for the plan). Its literals are the partial
    index's condition (`outbox_provider_id`, reminders 0016): PostgreSQL matches them under a prepared statement's
    generic plan too, where from a `$1` it could prove nothing."""
    if channel not in (Channel.EMAIL, Channel.SMS):
        raise ValueError(f"no delivery reports for {channel!r}")
    table = connection.ops.quote_name(OutboxMessage._meta.db_table)
    return f"SELECT * FROM {table} WHERE channel = '{channel}' AND provider_id > '' AND provider_id = %s ORDER BY id"


def delivery_reported(
    *, channel: str, report: channels.DeliveryReport, now: datetime, lock_wait: str | None = None
) -> int:
    """A provider reports that a text or e-mail (`channel`) it had accepted will not reach the patient (Twilio's
    status callback, an e-mail provider's bounce or rejection: reminders.views): the rows it carried (a message
    carries its companions) go from `sent` to `failed`, with the provider's words, so they show with the other
    failures (the appointment's page, the API's reminders, the admin's "send again": outbox_retry). The patient
    still counts as told of what it said (`HANDED_OVER`): a change notice still goes. Not the patient's choice, so
    their consent stays, except for a text refused because the number's owner replied STOP to the provider,
    recorded as that STOP, as the same refusal heard at once is (`dispatch._record_provider_stops`). A report of
    anything else, of a message not sent from here, or one heard before, changes nothing. Returns how many rows
    changed.

    `lock_wait` (PostgreSQL's form, `"1s"`; default dispatch.ROW_LOCK_WAIT): how long each lock this takes is waited
    for (the row the report names, the patient's and their rows being sent for a STOP, the rows it marks) before the
    lock error goes to the caller. A report as it comes waits ROW_LOCK_WAIT; a parked one, already waited for
    once, briefly (PARKED_LOCK_WAIT). SQLite has no row locks: its busy timeout applies there."""
    if not report.failed:
        return 0
    wait = _lock_wait(lock_wait)
    sql = sent_by_provider_id_sql(channel)
    carrier = parse_uuid(report.outbox_id)
    if carrier is not None:
        # Race condition: a report may come while the sender still holds the row, the provider's answer not yet
        # recorded (the row `sending`, without the id): wait for that sender's transaction, then read afresh. Up to
        # `lock_wait`: past it (a sender stuck on the provider) the lock error goes to the caller, which parks the
        # report (or hands it to the workers, or answers 503 and logs it), rather than hold up a web worker or find
        # nothing.
        with _locks_waited_for_at_most(wait):
            OutboxMessage.objects.select_for_update().filter(pk=carrier, channel=channel).exists()
    went = [row for row in OutboxMessage.objects.raw(sql, [report.provider_id]) if row.status == OutboxStatus.SENT]
    if not went:
        log.warning("a provider reported a message it could not deliver that matches no sent one: %s", report.detail)
        return 0
    if report.stopped and channel == Channel.SMS and went[0].recipient:
        # The STOP first: should it fail, the rows stay `sent`, so the same report, should it come again, does both.
        # Outside the rows' transaction (the opt-out locks the patient, then their rows being sent, whose senders it
        # waits for: up to `lock_wait` too). Left alone: a patient who switched texts back on after the text went (a
        # START since).
        with _locks_waited_for_at_most(wait):
            consent.sms_provider_stopped(phone=went[0].recipient, now=now, detail=report.detail, since=went[0].sent_at)
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    with _locks_waited_for_at_most(wait):
        rows = [
            row
            for row in OutboxMessage.objects.raw(sql + lock, [report.provider_id])
            if row.status == OutboxStatus.SENT
        ]
        for row in rows:
            row.status = OutboxStatus.FAILED
            row.last_error = f"{report.detail} after it was sent, at {now:%Y-%m-%d %H:%M} UTC"
            save_fields(row, ["status", "last_error", "updated_at"])
    log.warning("a provider could not deliver a message it had accepted (%s): %s", report.detail, went[0].pk)
    return len(rows)


# A lock wait as PostgreSQL's lock_timeout takes it, and more than none: its "0" would wait for ever.
_LOCK_WAIT_FORM = re.compile(r"[1-9][0-9]*(ms|s)")


def _lock_wait(lock_wait: str | None) -> str:
    """`lock_wait`, or dispatch.ROW_LOCK_WAIT (read when called: tests shorten it), checked before any statement
    runs."""
    wait = dispatch.ROW_LOCK_WAIT if lock_wait is None else lock_wait
    if not isinstance(wait, str) or not _LOCK_WAIT_FORM.fullmatch(wait):
        raise ValueError(f"a lock wait is a whole number of seconds or milliseconds above 0 ('1s', '200ms'): {wait!r}")
    return wait


@contextmanager
def _locks_waited_for_at_most(wait: str) -> Iterator[None]:
    """A transaction (a savepoint inside a caller's) whose locks are each waited for at most `wait` (PostgreSQL's
    lock_timeout, this transaction only). Inside a caller's transaction its own limit is put back after, so a short
    wait does not outlive the block (set_config(..., true) lasts to the end of the whole transaction; a savepoint
    rolled back undoes it by itself). SQLite has no row locks: nothing to set."""
    postgres = connection.vendor == "postgresql"
    nested = connection.in_atomic_block
    with transaction.atomic():
        if not postgres:
            yield
            return
        with connection.cursor() as cursor:
            before = None
            if nested:
                cursor.execute("SELECT current_setting('lock_timeout')")
                before = cursor.fetchone()[0]
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [wait])
        yield
        if before is not None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('lock_timeout', %s, true)", [before])


def delivery_report_park(*, channel: str, report: channels.DeliveryReport, received_at: datetime) -> int | None:
    """Keep a report that could not be recorded now (its row locked past ROW_LOCK_WAIT) in the database, to be
    recorded by `parked_reports_record`; the parked row's id, or None when the database does not answer either."""
    try:
        with transaction.atomic():
            parked = ParkedDeliveryReport.objects.create(
                channel=channel, report=dataclasses.asdict(report), received_at=received_at
            )
    except DatabaseError:
        log.warning("a delivery report could not be parked either: %s", report, exc_info=True)
        return None
    return parked.pk


# How long a parked report's recording waits for each lock it takes (its row's above all), where a report as it comes
# waits dispatch.ROW_LOCK_WAIT (10 s). A parked report's row was already waited for that long: whatever still holds
# it (a sender stuck on the provider, a long transaction) will not let go in the next seconds, and the report is
# tried again at the next run (a minute at most). Waiting 10 s for each such row made a run cost 10 s per locked
# row, held up the reports behind it, run_dispatcher's sends, and a START's webhook (Twilio gives up after 15 s).
# One second still outlasts a row held by a transaction about to commit (a send recording the provider's answer, a
# booking's change: milliseconds).
PARKED_LOCK_WAIT = "1s"
# How long one run goes on taking up reports (seconds): past it the rest wait for the next run, untried. A report
# costs milliseconds, or PARKED_LOCK_WAIT for each lock it waits out (its row's, a STOP's, the rows it marks):
# unbounded, a run over many held rows ran for minutes, holding up run_dispatcher's sends and overlapping the beat's
# next run.
PARKED_RUN_BUDGET = 10.0
# A START's run, inside the inbound webhook's request: the START itself still has to be heard within Twilio's 15 s.
START_RUN_BUDGET = 5.0


def parked_reports_record(
    *,
    limit: int = 200,
    stops_only: bool = False,
    stops_to: str | None = None,
    budget: float = PARKED_RUN_BUDGET,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Record the parked delivery reports (`delivery_report_park`), oldest first, each as of when it came, and remove
    each once recorded; one whose row is still locked (waited for PARKED_LOCK_WAIT), or the database away, waits for
    the next run, and so does one that fails otherwise (logged, its error kept), without holding up the ones behind
    it. Once `budget` seconds (by `clock`) have gone, the rest wait for the next run, untried. `stops_only`: those
    reporting the number's owner's STOP (a START is about to be heard: `sms_reply_heard`); `stops_to`, only those of
    texts to that sender's number (another number's held rows must not spend the START's time). Safe to run twice at
    once (recording a report twice changes nothing the first did not). Returns how many were recorded."""
    recorded = 0
    parked_rows = ParkedDeliveryReport.objects.order_by("id")
    if stops_only or stops_to is not None:
        parked_rows = parked_rows.filter(report__stopped=True)
    batch = list(parked_rows[:limit])
    if stops_to is not None:
        batch = _stops_to(batch, stops_to)
    began = clock()
    for index, parked in enumerate(batch):
        # The first report is taken up whatever the clock says (a run must move), unless no time was given at all.
        if (index or budget <= 0) and clock() - began >= budget:
            log.warning(
                "parked delivery reports: %s left for the next run, this one's %.0f s spent", len(batch) - index, budget
            )
            break
        try:
            # Inside a caller's transaction, a savepoint: a failure stays this report's. Outside, none: the STOP is
            # recorded before the rows' own transaction (delivery_reported), never holding both locks.
            inside = transaction.get_connection().in_atomic_block
            with transaction.atomic() if inside else nullcontext():
                delivery_reported(
                    channel=parked.channel,
                    report=channels.DeliveryReport(**parked.report),
                    now=parked.received_at,
                    lock_wait=PARKED_LOCK_WAIT,
                )
        except Exception as exc:
            if isinstance(exc, DatabaseError):
                log.warning("parked delivery report %s not recorded yet: %s", parked.pk, exc)
            else:
                log.exception("parked delivery report %s could not be recorded; kept", parked.pk)
            ParkedDeliveryReport.objects.filter(pk=parked.pk).update(
                attempts=F("attempts") + 1, last_error=f"{exc.__class__.__name__}: {exc}"[:300]
            )
            continue
        ParkedDeliveryReport.objects.filter(pk=parked.pk).delete()
        recorded += 1
    return recorded


def _stops_to(parked: list[ParkedDeliveryReport], sender: str) -> list[ParkedDeliveryReport]:
    """The parked STOPs of texts sent to `sender`'s number (as the patients with it store it): one statement for the
    numbers, one for the texts, none when nothing is parked."""
    if not parked:
        return []
    numbers = {p.phone for p in consent.sender_patients(sender, wide=False) if p.phone}
    ids = {(row.report or {}).get("provider_id") for row in parked} - {None, ""}
    if not numbers or not ids:
        return []
    theirs = set(
        OutboxMessage.objects.filter(channel=Channel.SMS, provider_id__in=ids, recipient__in=numbers).values_list(
            "provider_id", flat=True
        )
    )
    return [row for row in parked if (row.report or {}).get("provider_id") in theirs]


def sms_reply_heard(*, from_number: str, body: str, now: datetime) -> int:
    """An inbound text (consent.sms_reply). Race condition: before a START, a STOP the provider reported for texts to
    that number that is parked, not recorded yet (its row was locked), is recorded, as of when it came: recorded after
    this START, it would switch the texts off again. Within START_RUN_BUDGET, inside the webhook's request: the START
    is heard whatever is left. A STOP whose row is still locked then waits; the START, finding texts on, records
    itself, so that STOP recorded later leaves texts on (consent.sms_reply_opt_in)."""
    if consent.is_start_reply(body):
        parked_reports_record(stops_to=from_number, budget=START_RUN_BUDGET)
    return consent.sms_reply(from_number=from_number, body=body, now=now)
