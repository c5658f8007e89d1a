"""Delivery reports that could not be recorded when they came, kept in the database until they are.

A provider sends a report once (Twilio's status callback): one whose row was locked past dispatch.ROW_LOCK_WAIT,
or whose recording failed while the database still answered, is parked here and recorded later, as of when it
came (docs/reminders.md, "Delivery reports from the providers"). An inbound START records the parked STOPs first.
"""

from __future__ import annotations

import dataclasses
import logging
from contextlib import nullcontext
from datetime import datetime

from django.db import DatabaseError, transaction
from django.db.models import F

from reminders import channels, consent, dispatch
from reminders.models import ParkedDeliveryReport

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


def parked_reports_record(*, limit: int = 200, stops_only: bool = False) -> int:
    """Record the parked delivery reports (`delivery_report_park`), oldest first, each as of when it came, and remove
    each once recorded; one whose row is still locked, or the database away, waits for the next run, and so does one
    that fails otherwise (logged, its error kept), without holding up the ones behind it. `stops_only`: those
    reporting the number's owner's STOP (a START is about to be heard: `sms_reply_heard`). Safe to run
    twice at once (recording a report twice changes nothing the first did not). Returns how many were recorded."""
    recorded = 0
    parked_rows = ParkedDeliveryReport.objects.order_by("id")
    if stops_only:
        parked_rows = parked_rows.filter(report__stopped=True)
    for parked in parked_rows[:limit]:
        try:
            # Inside a caller's transaction, a savepoint: a failure stays this report's. Outside, none: the STOP is
            # recorded before the rows' own transaction (delivery_reported), never holding both locks.
            inside = transaction.get_connection().in_atomic_block
            with transaction.atomic() if inside else nullcontext():
                dispatch.delivery_reported(
                    channel=parked.channel, report=channels.DeliveryReport(**parked.report), now=parked.received_at
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


def sms_reply_heard(*, from_number: str, body: str, now: datetime) -> int:
    """An inbound text (consent.sms_reply). Race condition: before a START, a STOP the provider reported that is
    parked, not recorded yet (its row was locked), is recorded, as of when it came: recorded after this START, it
    would switch the texts off again."""
    if consent.is_start_reply(body):
        parked_reports_record(stops_only=True)
    return consent.sms_reply(from_number=from_number, body=body, now=now)
