"""The beat's routine ticks kept out of the INFO log. `reminders.dispatch_due` runs every second
(CELERY_BEAT_SCHEDULE): at `-l info` each run is three lines (beat's "Scheduler: Sending due task", the worker's
"Task ...[id] received" and "... succeeded in ...": about 260,000 a day), burying everything else.

`TicksQuiet` (settings.LOGGING, on the loggers `celery.beat`, `celery.worker.strategy` and `celery.app.trace`)
drops exactly those three lines, and only for a tick task: one the beat schedule runs more often than once a minute.
Whatever else these loggers say passes: a tick's failure, retry, rejection or internal error, an expired tick
discarded ("Discarding revoked task", another logger's), every line of any other task (`reminders.send_batch` says
what was sent), and the ticks themselves at DEBUG (`-l debug`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta

from celery.app.trace import LOG_RECEIVED, LOG_SUCCESS
from django.conf import settings

# beat.Scheduler.apply_entry: info('Scheduler: Sending due task %s (%s)', entry.name, entry.task)
BEAT_SENDING = "Scheduler: Sending due task %s (%s)"
# A task the beat runs more often than this (in seconds) is a tick.
TICK_SECONDS = 60.0


def _every(schedule: object) -> float | None:
    """How many seconds apart a beat entry's runs are, for a fixed interval (seconds, a timedelta, celery's
    `schedule`); None for a crontab or solar schedule (at most once a minute) or anything else."""
    if isinstance(schedule, bool):
        return None
    if isinstance(schedule, int | float):
        return float(schedule)
    if isinstance(schedule, timedelta):
        return schedule.total_seconds()
    run_every = getattr(schedule, "run_every", None)  # celery.schedules.schedule
    return run_every.total_seconds() if isinstance(run_every, timedelta) else None


def tick_tasks(beat_schedule: Mapping) -> frozenset[str]:
    """The names of the tasks `beat_schedule` (CELERY_BEAT_SCHEDULE's form) runs more often than once a minute."""
    ticks = set()
    for entry in beat_schedule.values():
        every = _every(entry.get("schedule"))
        if every is not None and every < TICK_SECONDS and entry.get("task"):
            ticks.add(entry["task"])
    return frozenset(ticks)


class TicksQuiet(logging.Filter):
    """Drops the received, succeeded and beat's sending lines of the tick tasks (`tick_tasks`); passes every other
    record. The ticks are read from `tasks` or, by default, from settings.CELERY_BEAT_SCHEDULE when first needed
    (the settings are still being read when logging is configured); with no settings to read, nothing is dropped."""

    def __init__(self, tasks: frozenset[str] | None = None) -> None:
        super().__init__()
        self._tasks = tasks

    @property
    def tasks(self) -> frozenset[str]:
        if self._tasks is None:
            try:
                self._tasks = tick_tasks(getattr(settings, "CELERY_BEAT_SCHEDULE", {}) or {})
            except Exception:  # noqa: BLE001 - settings not configured: a log line must never be lost to it
                return frozenset()
        return self._tasks

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not self.tasks:
            return True
        if logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return True  # -l debug: every line, the ticks' too
        return not _a_tick_line(record, self.tasks)


def _a_tick_line(record: logging.LogRecord, tasks: frozenset[str]) -> bool:
    if record.msg in (LOG_RECEIVED, LOG_SUCCESS):
        return isinstance(record.args, Mapping) and record.args.get("name") in tasks
    if record.msg == BEAT_SENDING:
        return isinstance(record.args, tuple) and len(record.args) == 2 and record.args[1] in tasks
    return False
