"""Deliver due reminders and webhooks from this process: the embedded default, with no broker.

bin/run starts it in the background next to runserver. With a broker configured,
Celery beat and workers do this instead; running both is still safe (claims are exclusive).
It also does the beat's other duty that has no broker to wait for: every minute, a re-check after a rule change
or a care text being planned for the visits booked before it that stopped moving (a step that failed in the
request that saved the rule or the text) is taken up again.
"""

import argparse
import math
import os
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from core.redact import masked_logger
from reminders import dispatch, reports
from reminders import tasks as reminder_tasks
from scheduler import tasks as scheduler_tasks

RESUME_EVERY = 60.0  # seconds, as the beat's resume-rechecks

log = masked_logger(__name__)


def _interval(value: str) -> float:
    """An argparse type: seconds, finite and not below 0 (0: the setting). A negative wait would be a busy loop
    on the database, NaN would end the loop at its first sleep; like REMINDERS_DISPATCH_INTERVAL_SECONDS."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {value!r}") from None
    if not (math.isfinite(seconds) and seconds >= 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0 (0: the setting), not {value!r}")
    return seconds


class Command(BaseCommand):
    help = "Send due reminders and webhooks in a loop (or --once), without Celery."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="One pass, then exit.")
        parser.add_argument(
            "--interval",
            type=_interval,
            default=None,
            help="Seconds between passes (a number above 0; 0 or unset: REMINDERS_DISPATCH_INTERVAL_SECONDS).",
        )
        parser.add_argument(
            "--exit-with-parent",
            action="store_true",
            help="Stop when the process that started this one exits (bin/run uses it).",
        )

    def handle(self, *args, **options):
        interval = options["interval"] or settings.REMINDERS_DISPATCH_INTERVAL_SECONDS
        parent = os.getppid()
        if not options["once"]:
            self.stdout.write(f"Reminder dispatcher: checking the outbox every {interval:g}s.")
        try:
            self._loop(interval, parent, options)
        except KeyboardInterrupt:
            pass  # Ctrl-C in a terminal: stop quietly

    def _loop(self, interval: float, parent: int, options: dict) -> None:
        resume_at = 0.0
        while True:
            if time.monotonic() >= resume_at:
                resume_at = time.monotonic() + RESUME_EVERY
                try:
                    scheduler_tasks.resume_rechecks()
                except Exception:  # a re-check that fails again waits for the next pass; the outbox must not
                    log.exception("resuming the stalled re-checks failed; trying again in %ss", RESUME_EVERY)
                try:
                    reminder_tasks.resume_template_rollouts()
                except Exception:  # a care text's run that fails again waits for the next pass, as a re-check
                    log.exception("resuming the stalled care text runs failed; trying again in %ss", RESUME_EVERY)
                try:
                    reports.parked_reports_record()
                except Exception:  # the database away: the reports wait for the next pass; the outbox must not
                    log.exception("recording the parked delivery reports failed; trying again in %ss", RESUME_EVERY)
            try:
                counts = dispatch.dispatch_local(
                    now=timezone.now(), clock=timezone.now
                )  # the clock is read here, at the edge
            except DatabaseError as exc:  # the database restarting must not end the loop; rows wait
                if options["once"]:
                    raise
                log.warning("dispatcher pass failed, retrying in %ss: %s", interval, exc)
                counts = {}
            if counts:
                self.stdout.write("Outbox: " + ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())))
            if options["once"]:
                return
            close_old_connections()
            if not self._wait(interval, parent if options["exit_with_parent"] else None):
                return

    @staticmethod
    def _wait(seconds: float, parent: int | None) -> bool:
        """Sleep; False as soon as the parent is gone (we were re-parented), checking every second."""
        deadline = time.monotonic() + seconds
        while True:
            if parent is not None and os.getppid() != parent:
                return False  # whoever started us (bin/run's server) has exited
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, 1.0))
