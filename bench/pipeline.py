"""Reminder pipeline: due outbox rows through Celery beat, the Redis broker and two workers.

Two `celery -A config worker` processes and one `celery -A config beat` run
against the bench database and a queue of their own on Redis (BENCH_REDIS_URL,
default redis://127.0.0.1:6379/9; every key the run adds is removed after).
Deliveries go to bench/backends.py, which appends each outbox id to a file.

Measured in the same run with the same workers: a no-op task (bench/tasks.py)
published N times, then N due confirmations (half e-mail with their .ics,
half SMS) claimed by the beat and sent through the real path
(reminders.dispatch). The ratio of the two rates is the figure.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from zoneinfo import ZoneInfo

import redis

from bench.backends import deliveries, delivery_count
from bench.cpu import CpuMeter
from bench.procs import Proc, analyze, base_env, wait_for
from bench.profiling import Profile

DEFAULT_REDIS = "redis://127.0.0.1:6379/9"
WORKERS = 2
CONCURRENCY = 2  # per worker: four sending processes on two cores
# The beat claims REMINDERS_BATCH_SIZE rows at a time, and again while a claim comes back full, up to
# REMINDERS_CLAIMS_PER_RUN claims a tick (the shipped 100 x 10 per 1 s: 1,000/s). The bench ticks every 0.2 s
# and claims 200 rows once a tick (1,000/s), as every earlier run did, so its figures compare: with claims of
# 100 (500/s) the runs of 2 December 07:00 sent 510-522 a second, the ceiling, not the workers' limit.
DISPATCH_INTERVAL = "0.2"
CLAIM = 200
CLAIMS_PER_TICK = 1
MAX_IN_FLIGHT = 1_000_000  # no back-pressure from the dispatcher either: the runs compare with the earlier ones
SEND_BATCH = 20  # rows per reminders.send_batch task (REMINDERS_SEND_BATCH_SIZE, the shipped default)


# --- Workers and beat ------------------------------------------------------------------------------------------


@dataclass
class Pipeline:
    """Workers and a beat on one broker and queue, delivering to the counting backends."""

    broker_url: str
    database_url: str
    workdir: Path
    lease_seconds: int = 300
    concurrency: int = CONCURRENCY
    queue: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}")
    procs: dict[str, Proc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.delivery_log = self.workdir / "deliveries.log"

    def env(self) -> dict:
        return base_env(
            DATABASE_URL=self.database_url,
            CELERY_BROKER_URL=self.broker_url,
            CELERY_TASK_DEFAULT_QUEUE=self.queue,
            EMAIL_BACKEND="bench.backends.CountingEmailBackend",
            SMS_BACKEND="bench.backends.CountingSmsBackend",
            BENCH_DELIVERY_LOG=str(self.delivery_log),
            BENCH_COUNTER_URL=counter_url(),
            REMINDERS_DISPATCH_INTERVAL_SECONDS=DISPATCH_INTERVAL,
            REMINDERS_BATCH_SIZE=str(CLAIM),
            REMINDERS_CLAIMS_PER_RUN=str(CLAIMS_PER_TICK),
            REMINDERS_MAX_IN_FLIGHT=str(MAX_IN_FLIGHT),
            REMINDERS_SEND_BATCH_SIZE=str(SEND_BATCH),
            REMINDERS_CLAIM_LEASE_SECONDS=str(self.lease_seconds),
            # The settings refuse a lease not above the send timeout (a row claimed again mid-send); the
            # counting backends send in microseconds, so a short lease keeps a send timeout below it.
            REMINDERS_SEND_TIMEOUT_SECONDS=str(max(1, min(10, self.lease_seconds - 3))),
            # No SMS quiet hours (an empty window): the figures must not depend on the hour the bench runs at
            # (a run after 21:00 in London would hold every text until morning); the tests cover quiet hours.
            REMINDERS_SMS_QUIET_START="00:00",
            REMINDERS_SMS_QUIET_END="00:00",
        )

    def worker(self, name: str) -> Proc:
        proc = Proc(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--concurrency",
                str(self.concurrency),
                "-Q",
                self.queue,
                "-n",
                f"{name}@%h",
                "-l",
                "warning",
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
                "-I",
                "bench.tasks",
            ],
            env=self.env(),
            log=self.workdir / f"{name}.log",
        )
        self.procs[name] = proc
        return proc

    def beat(self) -> Proc:
        proc = Proc(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "-l",
                "warning",
                "-s",
                str(self.workdir / "beat-schedule"),
                "--pidfile",
                str(self.workdir / "beat.pid"),
            ],
            env=self.env(),
            log=self.workdir / "beat.log",
        )
        self.procs["beat"] = proc
        return proc

    def app(self):
        """A Celery app of the bench's own, to publish no-ops and ping workers on this broker."""
        from celery import Celery

        app = Celery("bench", broker=self.broker_url, set_as_current=False)
        app.conf.update(
            task_default_queue=self.queue,
            task_serializer="json",
            broker_connection_retry=False,
            broker_connection_retry_on_startup=False,
        )
        return app

    def wait_ready(self, names: list[str], timeout: float = 60) -> None:
        app = self.app()

        def answered() -> bool:
            replies = app.control.ping(timeout=0.5) or []
            seen = {name.split("@")[0] for reply in replies for name in reply}
            return set(names) <= seen

        wait_for(answered, timeout=timeout, what=f"workers {names}", procs=list(self.procs.values()), interval=0.2)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{proc.output(1500)}" for name, proc in self.procs.items())


def counter_url() -> str:
    return os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS)


class RedisKeys:
    """Remembers which keys a Redis database held, so the run can remove exactly the ones it added."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_connect_timeout=2)
        self.before = set(self.client.keys("*"))

    def cleanup(self) -> int:
        added = [key for key in self.client.keys("*") if key not in self.before]
        if added:
            self.client.delete(*added)
        return len(added)


# --- Data ------------------------------------------------------------------------------------------------------


def make_due_messages(prefix: str, n: int, *, now: datetime) -> list[str]:
    """n due booking confirmations (half e-mail, half SMS) for n/2 confirmed appointments; their ids.

    One appointment per patient: a patient's messages due together would go as one (merging,
    docs/reminders.md), and the figure is the cost of one message delivered per row."""
    from clinic.models import Appointment, AppointmentStatus, Clinic, Patient, Practitioner, WorkingHours
    from reminders.models import Channel, MessageKind, OutboxMessage, OutboxStatus, ReminderTemplate

    tz = ZoneInfo("Europe/London")
    clinic = Clinic.objects.create(code=prefix, name=f"Bench {prefix}", timezone="Europe/London")
    practitioners = Practitioner.objects.bulk_create(
        Practitioner(clinic=clinic, name=f"Practitioner {i:02d}") for i in range(20)
    )
    WorkingHours.objects.bulk_create(
        WorkingHours(practitioner=p, weekday=d, start_time=clock(9), end_time=clock(18))
        for p in practitioners
        for d in range(6)
    )
    patients = Patient.objects.bulk_create(
        Patient(
            clinic=clinic,
            organisation_id=clinic.organisation_id,  # bulk_create skips save(), which sets it
            first_name=f"R{i}",
            last_name="Bench",
            email=f"r{i}@example.com",
            phone="+447700900123",
            reminder_channels=["email", "sms"],
            sms_consent=True,
        )
        for i in range(max(n // 2, 1))
    )
    starts = []
    day = now.astimezone(tz).date() + timedelta(days=2)
    while len(starts) < n // 2:
        if day.weekday() < 6:
            starts += [(p, datetime.combine(day, clock(h), tzinfo=tz)) for h in range(9, 18) for p in practitioners]
        day += timedelta(days=1)
    appointments = Appointment.objects.bulk_create(
        Appointment(
            clinic=clinic,
            patient=patients[i % len(patients)],
            practitioner=p,
            procedure_id="botox",
            start_at=start,
            end_at=start + timedelta(minutes=30),
            status=AppointmentStatus.CONFIRMED,
        )
        for i, (p, start) in enumerate(starts[: n // 2])
    )
    template = ReminderTemplate.objects.get(default_key="booking-confirmation")
    rows = OutboxMessage.objects.bulk_create(
        (
            OutboxMessage(
                appointment=a,
                kind=MessageKind.CONFIRMATION,
                channel=channel,
                template=template,
                anchor_at=now,
                due_at=now,
                status=OutboxStatus.PENDING,
                created_at=now,
            )
            for a in appointments
            for channel in (Channel.EMAIL, Channel.SMS)
        ),
        batch_size=2000,
    )
    analyze()
    return [str(row.pk) for row in rows]


def park_other_messages() -> int:
    """Unsent rows left by earlier sections (bookings made under load) are not this run's to count."""
    from reminders.models import OutboxMessage

    return OutboxMessage.objects.filter(status__in=["pending", "sending", "held"]).update(
        status="cancelled", last_error="bench: set aside before the reminder pipeline run"
    )


@dataclass
class Outcome:
    wanted: int
    delivered: int  # distinct ids delivered
    duplicates: int  # deliveries beyond the first
    lost: int
    not_sent_in_db: int
    found_sent: int  # rows in doubt the provider was asked about and had (marked sent, not sent again)


def outcome(ids: list[str], log: Path) -> Outcome:
    from reminders.models import OutboxMessage

    counts = deliveries(log)
    wanted = set(ids)
    delivered = {i for i in counts if i in wanted}
    return Outcome(
        len(wanted),
        len(delivered),
        sum(n - 1 for i, n in counts.items() if i in wanted and n > 1),
        len(wanted - delivered),
        OutboxMessage.objects.filter(pk__in=ids).exclude(status="sent").count(),
        OutboxMessage.objects.filter(pk__in=ids, payload__found_sent=True).count(),
    )


def wait_delivered(log: Path, ids: list[str], *, began: float, timeout: float, procs: list[Proc]) -> float | None:
    """Seconds from `began` until every id was delivered at least once, or None at the deadline."""
    wanted = set(ids)
    deadline = began + timeout
    while time.perf_counter() < deadline and delivery_count(log) < len(wanted):  # cheap: counts lines
        if not all(proc.alive for proc in procs):
            break
        time.sleep(0.02)
    while time.perf_counter() < deadline:
        if wanted <= set(deliveries(log)):
            return time.perf_counter() - began
        time.sleep(0.2)
    return None


# --- The section -------------------------------------------------------------------------------------------------


def reminder_pipeline(report, *, quick: bool, database_url: str, workdir: Path, profile: bool = False, **_) -> None:
    """No-op task rate and reminder delivery rate through the same two workers; lost and duplicated."""
    from django.db import close_old_connections, connection

    n = 1_000 if quick else 10_000
    keys = RedisKeys(counter_url())
    pipeline = Pipeline(broker_url=counter_url(), database_url=database_url, workdir=workdir / "pipeline")
    counter = redis.Redis.from_url(counter_url())
    names = [f"bench-w{i}" for i in range(1, WORKERS + 1)]
    park_other_messages()  # before the beat starts: its ticks must find nothing during the no-op phase
    connection.close()
    try:
        for name in names:
            pipeline.worker(name)
        pipeline.beat()
        pipeline.wait_ready(names)
        app = pipeline.app()

        def noops(count: int, key: str) -> float:
            """Publish `count` no-ops; return the seconds from the first publish until the last has run."""
            began = time.perf_counter()
            with app.producer_or_acquire() as producer:
                for _ in range(count):
                    app.send_task("bench.noop", args=[key], queue=pipeline.queue, producer=producer)
            published = time.perf_counter() - began
            wait_for(
                lambda: int(counter.get(key) or 0) >= count,
                timeout=120,
                what=f"{count} no-op tasks",
                procs=list(pipeline.procs.values()),
                interval=0.01,
            )
            report_publish.append(published)
            return time.perf_counter() - began

        report_publish: list[float] = []
        noops(8 * WORKERS * CONCURRENCY, f"bench-noop-warm-{pipeline.queue}")  # every pool process awake
        database = connection.settings_dict["NAME"]
        pgids = [proc.popen.pid for proc in pipeline.procs.values()]
        with CpuMeter(pgids=pgids, database=database) as noop_cpu:
            noop_seconds = noops(n, f"bench-noop-{pipeline.queue}")

        now = datetime.now(UTC)
        ids = make_due_messages("bench-outbox", n, now=now)
        connection.close()
        profilers = (
            [Profile(pipeline.procs[name].popen.pid, 8 if quick else 20, workdir / f"{name}.pyspy") for name in names]
            if profile
            else []
        )
        began = time.perf_counter()  # the rows are committed and due: the beat's next tick claims them
        with CpuMeter(pgids=pgids, database=database) as send_cpu:
            send_seconds = wait_delivered(
                pipeline.delivery_log,
                ids,
                began=began,
                timeout=90 if quick else 300,
                procs=list(pipeline.procs.values()),
            )
        for name, profiler in zip(names, profilers, strict=False):  # profilers only for the runs that had one
            print(f"  profile of worker {name} while sending:\n{profiler.summary()}", flush=True)
        if send_seconds is None:
            print(f"  not every reminder was delivered in time\n{pipeline.logs()}", flush=True)
            send_seconds = time.perf_counter() - began
        time.sleep(1.5)  # let any stray second delivery surface before counting
        close_old_connections()
        result = outcome(ids, pipeline.delivery_log)
    finally:
        pipeline.stop_all()
        keys.cleanup()

    report.add(
        "noop_task_throughput",
        n / noop_seconds,
        "tasks/s",
        note=f"{n} no-op tasks, published in {report_publish[-1]:.2f} s",
    )
    report.add(
        "reminder_throughput",
        result.delivered / send_seconds,
        "messages/s",
        note=f"{n} due messages, beat every {DISPATCH_INTERVAL} s, claims of {CLAIM}, tasks of {SEND_BATCH}, "
        f"{WORKERS} workers x {CONCURRENCY}",
    )
    report.add("reminder_to_noop_ratio", (result.delivered / send_seconds) / (n / noop_seconds), "x", target=">= 0.5")
    report.add(
        "noop_worker_cpu_per_task", noop_cpu.app / n * 1000, "ms", note="Celery workers and beat, CPU time per task"
    )
    report.add("reminder_worker_cpu_per_message", send_cpu.app / n * 1000, "ms")
    report.add(
        "reminder_db_cpu_per_message",
        send_cpu.db / n * 1000,
        "ms",
        target="< 1.5 ms",
        note="PostgreSQL backends of the workers, CPU time per message",
    )
    report.add("reminder_lost", result.lost, "messages", target="0")
    report.add("reminder_sent_twice", result.duplicates, "messages", target="0")
    report.add("reminder_not_marked_sent", result.not_sent_in_db, "messages")
