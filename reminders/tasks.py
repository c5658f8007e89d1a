"""Celery tasks: thin interfaces over reminders.dispatch.

The beat runs `reminders.dispatch_due` every few seconds; it claims due rows
and enqueues one `reminders.send_message` per row. Tasks take ids (and an
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
    return dispatch.dispatch_due(now=_moment(now), enqueue=_enqueue)


@shared_task(name="reminders.send_message", ignore_result=True)
def send_message(message_id: str, claim_token: str, now: str | None = None) -> str:
    return str(dispatch.outbox_send(message_id=message_id, claim_token=claim_token, now=_moment(now)))


def _enqueue(claim: dispatch.Claim) -> None:
    # retry=False: if the broker is gone, fail at once; dispatch_due hands the claim back.
    send_message.apply_async(args=(str(claim.message_id), str(claim.token)), retry=False)
