"""Celery tasks: thin interfaces over reminders.dispatch.

The beat runs `reminders.dispatch_due` every few seconds; it claims due rows
and enqueues one `reminders.send_batch` per REMINDERS_SEND_BATCH_SIZE rows
(`reminders.send_message`, one row, stays for tasks queued by older code). Tasks take ids (and an
optional ISO `now` for tests), read the clock only at this edge, and are safe
to run twice. No task is ever scheduled far ahead with an ETA: due times live
in the database, so a Redis restart or visibility timeout cannot lose or
replay them.
"""

from __future__ import annotations

from datetime import datetime

from celery import shared_task
from django.utils import timezone

from reminders import dispatch


def _moment(now: str | None) -> datetime:
    return datetime.fromisoformat(now) if now else timezone.now()


@shared_task(name="reminders.dispatch_due", ignore_result=True)
def dispatch_due(now: str | None = None) -> int:
    return dispatch.dispatch_due_batches(now=_moment(now), enqueue=_enqueue)


@shared_task(name="reminders.send_batch", ignore_result=True)
def send_batch(message_ids: list[str], claim_token: str, now: str | None = None) -> dict[str, str]:
    # Without an explicit `now`, each row is sent at the moment it goes (quiet hours), not the task's start.
    outcomes = dispatch.outbox_send_batch(
        message_ids=message_ids,
        claim_token=claim_token,
        now=_moment(now),
        clock=None if now else timezone.now,
    )
    return {str(pk): str(outcome) for pk, outcome in outcomes.items()}


@shared_task(name="reminders.send_message", ignore_result=True)
def send_message(message_id: str, claim_token: str, now: str | None = None) -> str:
    return str(dispatch.outbox_send(message_id=message_id, claim_token=claim_token, now=_moment(now)))


def _enqueue(claims: list[dispatch.Claim]) -> None:
    # One claim, one token: every row of a batch carries it.
    # retry=False: if the broker is gone, fail at once; dispatch_due hands the claims back.
    send_batch.apply_async(args=([str(c.message_id) for c in claims], str(claims[0].token)), retry=False)
