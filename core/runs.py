"""Long runs done in chunks, each chunk a task (a re-check after a rule change, a care text planned for the visits
booked before it): handed to Celery, or done here when there is no broker or it is down.

A run is a row with a cursor (scheduler.models.RecheckRun, reminders.models.TemplateRollout); `step(run_id)` does
its next chunk in one transaction and says whether the run is finished; the beat's resume task picks up a run that
stopped moving. So a dead worker loses at most a chunk, and nothing is lost when the broker is away.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings


def hand_over(
    run_id: str, *, step: Callable[[str], bool], task, in_request: bool, what: str, log: logging.Logger
) -> None:
    """Hand a run to Celery (`task`, which does one step and hands the rest over again); with no broker (the
    embedded default), do it here.

    With a broker configured but down: in a worker (a step chaining the next, the beat's resume), the rest of the
    run is done here; in a web request (`in_request`: the change's commit), only its first chunk, and the beat's
    resume takes the rest once the broker is back, so a large run never runs inside one request. In a request, a
    step that fails is logged and left to the resume (the beat's, or run_dispatcher's with no broker): the change is
    saved, and its save must not answer 500."""
    if settings.CELERY_BROKER_URL:
        try:
            task.apply_async(args=(run_id,), retry=False)
            return
        except Exception as exc:  # the broker is down
            log.warning("%s %s: could not enqueue (%s); running it in this process", what, run_id, exc)
            if in_request:
                _steps_here(run_id, step, first_only=True, what=what, log=log)
                return
    if in_request:
        _steps_here(run_id, step, first_only=False, what=what, log=log)
        return
    while not step(run_id):
        pass


def _steps_here(run_id: str, step, *, first_only: bool, what: str, log: logging.Logger) -> None:
    """A run's steps in a web request: all of them, or the first (the rest waits for the resume); one that fails is
    logged, never raised into the request."""
    try:
        while not step(run_id):
            if first_only:
                log.warning("%s %s: the rest waits for the beat's resume", what, run_id)
                return
    except Exception:
        log.exception("%s %s: a step failed in the request; the resume takes it up again", what, run_id)
