"""The beat's per-second tick (`reminders.dispatch_due`) is quiet at `-l info`; nothing else is (core.quiet_ticks).

Why: at the documented `-l info` each tick was three lines (beat's "Sending due task", the worker's "received" and
"succeeded"), about 260,000 a day burying everything else; a filter that dropped too much would hide a failing
tick, a retry, or another task's work. How: records made by Celery's own code (its tracer running a task, the
worker's and the beat's log calls) pass through the filter the settings put on those loggers; then a real beat and
a real worker, started as docs/production.md starts them with the project's logging, are read: ticks wait in Redis
while no worker runs and are discarded unread when one starts (docs/reminders.md), and only the failing tick and
the other task are logged.
"""

import logging
import time
import uuid
from datetime import timedelta

import pytest
import redis
from celery import Celery
from celery.app.trace import LOG_RECEIVED, build_tracer
from celery.exceptions import Retry
from celery.schedules import crontab, schedule
from django.conf import settings

from core.quiet_ticks import TicksQuiet, tick_tasks
from tests.conftest import redis_url
from tests.reminders.helpers import _forget_queue
from tests.reminders.support import CeleryHarness

QUIETED = ("celery.beat", "celery.worker.strategy", "celery.app.trace")


def test_the_ticks_are_the_tasks_the_beat_runs_more_often_than_once_a_minute():
    assert tick_tasks(settings.CELERY_BEAT_SCHEDULE) == {"reminders.dispatch_due"}
    assert tick_tasks(
        {
            "a": {"task": "every-second", "schedule": 1.0},
            "b": {"task": "every-30-s", "schedule": timedelta(seconds=30)},
            "c": {"task": "every-5-s", "schedule": schedule(run_every=5)},
            "d": {"task": "every-minute", "schedule": 60.0},
            "e": {"task": "crontab", "schedule": crontab()},
            "f": {"task": "hourly", "schedule": timedelta(hours=1)},
        }
    ) == {"every-second", "every-30-s", "every-5-s"}


def test_the_settings_put_the_filter_on_the_loggers_that_log_the_ticks():
    quiet = [
        name for name, spec in settings.LOGGING["filters"].items() if spec.get("()") == "core.quiet_ticks.TicksQuiet"
    ]
    assert len(quiet) == 1
    assert {name: spec["filters"] for name, spec in settings.LOGGING["loggers"].items() if name in QUIETED} == {
        name: quiet for name in QUIETED
    }
    # Only filters: the loggers' levels and propagation (to Celery's and Django's handlers) are left as they were.
    assert all(set(settings.LOGGING["loggers"][name]) == {"filters"} for name in QUIETED)


@pytest.fixture
def quiet_loggers():
    """The three loggers with the filter as the settings put it (settings.CELERY_BEAT_SCHEDULE's ticks)."""
    quiet = TicksQuiet()
    for name in QUIETED:
        logging.getLogger(name).addFilter(quiet)
    yield
    for name in QUIETED:
        logging.getLogger(name).removeFilter(quiet)


def traced(name: str, body) -> None:
    """Run `body` as the task `name` through Celery's own tracer, as a worker's pool process does (it logs the
    success, failure or retry)."""
    app = Celery("quiet-ticks", set_as_current=False)
    task = app.task(name=name, ignore_result=True, shared=False)(body)  # not in the project's app
    task_id = str(uuid.uuid4())
    build_tracer(name, task, app=app)(task_id, (), {}, {"id": task_id, "delivery_info": {}})


def received(name: str) -> None:
    """The worker's "received" line, as celery.worker.strategy logs it."""
    context = {"id": str(uuid.uuid4()), "name": name, "args": "()", "kwargs": "{}", "eta": None}
    logging.getLogger("celery.worker.strategy").info(LOG_RECEIVED, context, extra={"data": context})


def beat_sends(entry: str, task: str) -> None:
    """The beat's line, as celery.beat.Scheduler.apply_entry logs it."""
    logging.getLogger("celery.beat").info("Scheduler: Sending due task %s (%s)", entry, task)


def nothing_due():
    return 0


def sent():
    return 1


def failing():
    raise ValueError("the database is away")


def retrying():
    raise Retry("the database is away", when=30)


def lines(caplog) -> list[str]:
    return [f"{r.name} {r.levelname} {r.getMessage()}" for r in caplog.records if r.name in QUIETED]


def test_a_routine_tick_says_nothing_at_info(quiet_loggers, caplog):
    caplog.set_level(logging.INFO)
    beat_sends("reminders-dispatch-due", "reminders.dispatch_due")
    received("reminders.dispatch_due")
    traced("reminders.dispatch_due", nothing_due)

    assert lines(caplog) == []


def test_a_ticks_failure_and_retry_and_every_other_task_are_logged(quiet_loggers, caplog):
    caplog.set_level(logging.INFO)
    traced("reminders.dispatch_due", failing)
    traced("reminders.dispatch_due", retrying)
    for task in ("reminders.send_batch", "reminders.record_parked_reports"):
        beat_sends("some-entry", task)
        received(task)
        traced(task, sent)

    logged = lines(caplog)
    assert len(logged) == 8, logged
    assert logged[0].startswith("celery.app.trace ERROR Task reminders.dispatch_due[")
    assert "raised unexpected: ValueError('the database is away')" in logged[0]
    assert logged[1].startswith("celery.app.trace INFO Task reminders.dispatch_due[")
    assert "] retry: the database is away" in logged[1]
    assert [line.split("[")[0] for line in logged[2:]] == [
        "celery.beat INFO Scheduler: Sending due task some-entry (reminders.send_batch)",
        "celery.worker.strategy INFO Task reminders.send_batch",
        "celery.app.trace INFO Task reminders.send_batch",
        "celery.beat INFO Scheduler: Sending due task some-entry (reminders.record_parked_reports)",
        "celery.worker.strategy INFO Task reminders.record_parked_reports",
        "celery.app.trace INFO Task reminders.record_parked_reports",
    ]


def test_at_debug_the_ticks_are_logged_too(quiet_loggers, caplog):
    caplog.set_level(logging.DEBUG)
    beat_sends("reminders-dispatch-due", "reminders.dispatch_due")
    received("reminders.dispatch_due")
    traced("reminders.dispatch_due", nothing_due)

    assert [line.split("[")[0] for line in lines(caplog)] == [
        "celery.beat INFO Scheduler: Sending due task reminders-dispatch-due (reminders.dispatch_due)",
        "celery.worker.strategy INFO Task reminders.dispatch_due",
        "celery.app.trace INFO Task reminders.dispatch_due",
    ]


def test_without_settings_nothing_is_dropped(caplog):
    quiet = TicksQuiet(frozenset())
    record = logging.LogRecord(
        "celery.beat", logging.INFO, __file__, 1, "Scheduler: Sending due task %s (%s)", ("a", "t"), None
    )
    assert quiet.filter(record)


# --- A real beat and worker, with the project's logging ----------------------------------------------------------


@pytest.fixture
def harness(transactional_db, tmp_path):
    queue = f"test-quiet-ticks-{uuid.uuid4().hex[:10]}"
    celery = CeleryHarness(broker_url=redis_url(), queue=queue, tmp=tmp_path)  # ticks every 0.3 s
    yield celery
    celery.stop_all()
    _forget_queue(celery.broker_url, queue)


def wait(predicate, *, timeout: float, what: str, harness) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.log.name}\n{p.output()}" for p in harness.procs)
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")
        time.sleep(0.1)


@pytest.mark.redis
def test_a_real_beat_and_worker_log_no_routine_tick_and_every_thing_else(harness):
    broker = redis.Redis.from_url(harness.broker_url, socket_connect_timeout=1)
    beat = harness.beat("b1")
    # No worker yet: the ticks wait in Redis, one each interval, and the beat says nothing of them.
    wait(lambda: broker.llen(harness.queue) >= 3, timeout=20, what="three ticks waiting in Redis", harness=harness)
    beat.stop()
    assert "beat: Starting..." in beat.output()
    assert "Sending due task" not in beat.output()

    app = Celery("quiet-ticks", broker=harness.broker_url, set_as_current=False)
    with app.connection_for_write() as connection:

        def send(name: str, *args) -> str:
            return app.send_task(name, args=args, queue=harness.queue, connection=connection).id

        fresh_tick = send("reminders.dispatch_due")
        failing_tick = send("reminders.dispatch_due", "not-a-moment")
        other = send("reminders.record_parked_reports")
    app.close()

    worker = harness.worker("w1", pool="prefork")  # the production pool: tasks run (and are logged) in a child
    wait(
        lambda: f"Task reminders.record_parked_reports[{other}] succeeded in" in worker.output(),
        timeout=30,
        what="the other task done",
        harness=harness,
    )
    log = worker.output(tail=1_000_000)
    # The ticks that waited while no worker ran are dropped unread, each said so (docs/reminders.md).
    assert "Discarding revoked task: reminders.dispatch_due[" in log
    assert f"Task reminders.dispatch_due[{failing_tick}] raised unexpected: ValueError(" in log
    assert f"Task reminders.record_parked_reports[{other}] received" in log
    # The fresh tick, sent before the other task, ran unlogged: received, done and acknowledged (acks_late).
    assert fresh_tick not in log
    assert not any(fresh_tick.encode() in raw for _, raw in broker.hscan_iter("unacked"))
    assert "reminders.dispatch_due[" not in log.replace("Discarding revoked task: reminders.dispatch_due[", "").replace(
        f"reminders.dispatch_due[{failing_tick}] raised", ""
    )
    assert broker.llen(harness.queue) == 0
