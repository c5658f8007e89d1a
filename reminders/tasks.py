"""Celery tasks: thin interfaces over reminders.dispatch.

The beat runs `reminders.dispatch_due` every few seconds; it claims due rows
and enqueues one `reminders.send_batch` per REMINDERS_SEND_BATCH_SIZE rows
(`reminders.send_message`, one row, stays for tasks queued by older code). Tasks take ids (and an
optional ISO `now` for tests), read the clock only at this edge, and are safe
to run twice. No message is ever scheduled ahead with an ETA: due times live
in the database, so a Redis restart or visibility timeout cannot lose or
replay them. The one task that waits in Redis is `reminders.record_delivery_report`
(a provider's report the web could not record, tried again for about a day, each
wait under half the visibility timeout): a Redis that keeps nothing on disk and
restarts meanwhile loses it (docs/reminders.md).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from core.redact import masked_logger
from core.runs import hand_over
from reminders import channels, dispatch, reports, services

log = masked_logger(__name__)


def _moment(now: str | None) -> datetime:
    return datetime.fromisoformat(now) if now else timezone.now()


@shared_task(name="reminders.dispatch_due", ignore_result=True)
def dispatch_due(now: str | None = None) -> int:
    return dispatch.dispatch_due_batches(now=_moment(now), enqueue=_enqueue)


# Not handed back when the worker is lost (CELERY_TASK_REJECT_ON_WORKER_LOST, on for every other task): a pool
# process killed mid-send (the OOM killer) would have its task run again at once under the same claim, and the
# message it had handed the provider, not yet marked sent, go again unasked. Its rows wait out the lease instead and
# are claimed again in doubt: the provider is asked first (dispatch._settle_doubt).
SEND_TASK = {"ignore_result": True, "acks_late": True, "reject_on_worker_lost": False}


@shared_task(name="reminders.send_batch", **SEND_TASK)
def send_batch(message_ids: list[str], claim_token: str, now: str | None = None) -> dict[str, str]:
    # Without an explicit `now`, each row is sent at the moment it goes (quiet hours), not the task's start.
    outcomes = dispatch.outbox_send_batch(
        message_ids=message_ids,
        claim_token=claim_token,
        now=_moment(now),
        clock=None if now else timezone.now,
    )
    return {str(pk): str(outcome) for pk, outcome in outcomes.items()}


@shared_task(name="reminders.send_message", **SEND_TASK)
def send_message(message_id: str, claim_token: str, now: str | None = None) -> str:
    return str(dispatch.outbox_send(message_id=message_id, claim_token=claim_token, now=_moment(now)))


def _enqueue(claims: list[dispatch.Claim]) -> None:
    # One claim, one token: every row of a batch carries it.
    # retry=False: if the broker is gone, fail at once; dispatch_due hands the claims back.
    send_batch.apply_async(args=([str(c.message_id) for c in claims], str(claims[0].token)), retry=False)


# A provider's delivery report read but not recorded (the database away, its row's lock held too long): tried again
# later, each wait twice the last (30 s, 1 min, ... up to 30 min), for about a day; then logged as lost, with the
# report. A waiting task sits unacknowledged in Redis, which hands it to another worker after the visibility
# timeout: a wait stays under half of it, so one report is not run twice for waiting. The tries are as many as take
# about a day (25.5 h) at the visibility timeout set: 56 at the default hour, more of shorter waits below it.
REPORT_FIRST_WAIT_SECONDS = 30
REPORT_LONGEST_WAIT_SECONDS = 30 * 60
REPORT_TRY_FOR_SECONDS = 91_800
REPORT_RETRIES = 56  # report_retries() at the default visibility timeout


def report_wait(retries: int) -> int:
    visibility = int(settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600))
    longest = max(1, min(REPORT_LONGEST_WAIT_SECONDS, visibility // 2))
    return min(REPORT_FIRST_WAIT_SECONDS * 2 ** min(retries, 16), longest)


def report_retries() -> int:
    """How many times a report is tried again before it is given up: its waits (report_wait) add up to about a day
    whatever the visibility timeout caps each at."""
    waited, retries = 0, 0
    while waited < REPORT_TRY_FOR_SECONDS:
        waited += report_wait(retries)
        retries += 1
    return retries


@shared_task(name="reminders.record_delivery_report", bind=True, ignore_result=True, max_retries=None)
def record_delivery_report(self, channel: str, report: dict, received_at: str) -> int:
    """Record a delivery report the view could not (reports.delivery_reported, safe to run twice), as of when it
    came; tried again for about a day (report_retries)."""
    try:
        return reports.delivery_reported(
            channel=channel, report=channels.DeliveryReport(**report), now=datetime.fromisoformat(received_at)
        )
    except DatabaseError as exc:
        if self.request.retries >= report_retries():
            log.error("a delivery report that came at %s was not recorded and is given up: %s", received_at, report)
            raise
        raise self.retry(exc=exc, countdown=report_wait(self.request.retries)) from exc


@shared_task(name="reminders.record_parked_reports", ignore_result=True)
def record_parked_reports() -> int:
    """Record the delivery reports parked in the database (reports.parked_reports_record): on the beat's schedule,
    and soon after one is parked."""
    return reports.parked_reports_record()


PARKED_REPORT_WAIT_SECONDS = 5  # a sender holds its row while the provider answers (at most the send timeout)


def delivery_report_later(*, channel: str, report: channels.DeliveryReport, received_at: datetime) -> str | None:
    """Keep a report that could not be recorded now: parked in the database when it answers (the row was locked:
    reports.delivery_report_park), recorded by the beat's `record_parked_reports` (or run_dispatcher's) and, with a
    broker, by a worker a few seconds on; else handed to the workers (`record_delivery_report`), which try again
    while the database is away. Says where it went, or None where neither could take it (no broker, or one that
    cannot be reached: the report is only in the log). With the broker away, publishing gives up after its
    client's connection attempts (a few seconds)."""
    parked = reports.delivery_report_park(channel=channel, report=report, received_at=received_at)
    if parked is not None:
        if settings.CELERY_BROKER_URL:
            try:
                record_parked_reports.apply_async(
                    countdown=PARKED_REPORT_WAIT_SECONDS, queue=settings.CELERY_TASK_DEFAULT_QUEUE, retry=False
                )
            except Exception:  # the beat's run records it: the report is in the database
                log.warning("the broker could not take the parked reports' run; the beat's will", exc_info=True)
        return f"parked as {parked}"
    if not settings.CELERY_BROKER_URL:
        return None
    try:
        sent = record_delivery_report.apply_async(
            args=(channel, dataclasses.asdict(report), received_at.isoformat()),
            queue=settings.CELERY_TASK_DEFAULT_QUEUE,
            retry=False,  # a broker that is away fails without Celery's own retries: the provider is answered
        )
    except Exception:  # the broker's client raises its own errors (kombu's, redis-py's, OSError)
        log.exception("the broker could not take a delivery report")
        return None
    return f"task {sent.id}"


# --- A care text planned for the visits booked before it (reminders.services.template_rollout_step) -----------------


@shared_task(name="reminders.template_rollout_step", ignore_result=True)
def template_rollout_step(run_id: str) -> None:
    """One chunk of a run; the next chunk is a new task, so a dead worker loses at most one chunk."""
    if not services.template_rollout_step(run_id=run_id, now=timezone.now()):
        start_rollout(run_id)


@shared_task(name="reminders.resume_template_rollouts", ignore_result=True)
def resume_template_rollouts() -> int:
    """Beat: pick up runs that stopped moving (a worker died, the broker was down when they began)."""
    stalled = services.template_rollouts_stalled(now=timezone.now())
    for run_id in stalled:
        start_rollout(str(run_id))
    return len(stalled)


def start_rollout(run_id: str, *, in_request: bool = False) -> None:
    """Hand a run to Celery, or do it here (core.runs.hand_over: with no broker, or with it down)."""
    hand_over(
        run_id,
        step=lambda pk: services.template_rollout_step(run_id=pk, now=timezone.now()),
        task=template_rollout_step,
        in_request=in_request,
        what="care text run",
        log=log,
    )
