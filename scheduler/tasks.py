"""Celery tasks of the scheduler: thin interfaces over scheduler.recheck (ids in, the clock read here)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from core.redact import masked_logger
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
    """Hand a run to Celery; with no broker (the embedded default), do it here.

    With a broker configured but down: in a worker (a step chaining the next, the beat's resume), the rest of the
    run is done here; in a web request (`in_request`: the rule change's commit), only its first chunk (a small
    organisation's whole run), and the beat's `resume_rechecks` takes the rest once the broker is back, so a large
    organisation's re-check never runs inside one request. In a request, a step that fails is logged and left to
    the resume (the beat's, or run_dispatcher's with no broker): the rule is saved, and its save must not answer 500.
    """
    if settings.CELERY_BROKER_URL:
        try:
            recheck_step.apply_async(args=(run_id,), retry=False)
            return
        except Exception as exc:  # the broker is down
            log.warning("re-check run %s: could not enqueue (%s); running it in this process", run_id, exc)
            if in_request:
                _steps_here(run_id, first_only=True)
                return
    if in_request:
        _steps_here(run_id, first_only=False)
        return
    while not recheck.recheck_run_step(run_id=run_id, now=timezone.now()):
        pass


def _steps_here(run_id: str, *, first_only: bool) -> None:
    """A run's steps in a web request: all of them, or the first (the rest waits for the resume); one that fails is
    counted on the run (recheck_run_step) and logged, never raised into the request."""
    try:
        while not recheck.recheck_run_step(run_id=run_id, now=timezone.now()):
            if first_only:
                log.warning("re-check run %s: the rest waits for the beat's resume", run_id)
                return
    except Exception:
        log.exception("re-check run %s: a step failed in the request; the resume takes it up again", run_id)
