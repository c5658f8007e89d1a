"""Celery tasks of the scheduler: thin interfaces over scheduler.recheck (ids in, the clock read here)."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from core.redact import masked_logger
from core.runs import hand_over
from scheduler import recheck

log = masked_logger(__name__)


@shared_task(name="scheduler.recheck_step", ignore_result=True)
def recheck_step(run_id: str) -> None:
    """One chunk of a re-check run; the next chunk is a new task, so a dead worker loses at most one chunk."""
    if not recheck.recheck_run_step(run_id=run_id, now=timezone.now()):
        start_run(run_id)


@shared_task(name="scheduler.resume_rechecks", ignore_result=True)
def resume_rechecks() -> int:
    """Beat: pick up runs that stopped moving (a worker died, the broker was down when they began)."""
    stalled = recheck.recheck_runs_stalled(now=timezone.now())
    for run_id in stalled:
        start_run(str(run_id))
    return len(stalled)


def start_run(run_id: str, *, in_request: bool = False) -> None:
    """Hand a run to Celery, or do it here (core.runs.hand_over: with no broker, or with it down)."""
    hand_over(
        run_id,
        step=lambda pk: recheck.recheck_run_step(run_id=pk, now=timezone.now()),
        task=recheck_step,
        in_request=in_request,
        what="re-check run",
        log=log,
    )
