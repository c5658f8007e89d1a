"""Delivery reports that could not be recorded when they came, kept in the database until they are.

A provider sends a report once (Twilio's status callback): one whose row was locked past dispatch.ROW_LOCK_WAIT,
or whose recording failed while the database still answered, is parked here and recorded later, as of when it
came (docs/reminders.md, "Delivery reports from the providers"). An inbound START records the parked STOPs first.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime

from django.db import DatabaseError, transaction
from django.db.models import F

from reminders import channels, consent, dispatch
from reminders.models import Channel, OutboxMessage, ParkedDeliveryReport

log = logging.getLogger(__name__)


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
                dispatch.delivery_reported(
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
