"""Faults during a dispatch run: a worker killed with SIGKILL, and the Redis broker restarted.

A private redis-server (its own port, nothing kept on disk) is the broker, so
restarting it touches nothing else on the machine. Two workers and a beat
deliver due confirmations to the counting backends; a quarter of the way in,
one worker's whole process group gets SIGKILL (a "supervisor" starts it again
two seconds later); half-way in, redis-server is killed and started again on
the same port, empty: every queued and unacknowledged task is gone. The rows
themselves are in PostgreSQL: claimed rows come back when their lease runs
out (REMINDERS_CLAIM_LEASE_SECONDS, shortened here), so the drain time is
bounded below by the lease. Lost and duplicated deliveries are counted.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from bench.backends import delivery_count
from bench.pipeline import WORKERS, Pipeline, make_due_messages, outcome, park_other_messages, wait_delivered
from bench.procs import RedisServer, wait_for

LEASE_SECONDS = 8  # the shipped default is 300: a Redis restart then delays the lost tasks' rows by up to 5 min


def faults(report, *, quick: bool, database_url: str, workdir: Path, **_) -> None:
    from django.db import close_old_connections, connection

    n = 1_000 if quick else 3_000
    workdir = workdir / "faults"
    workdir.mkdir(parents=True, exist_ok=True)
    broker = RedisServer(workdir)
    broker.start()
    pipeline = Pipeline(
        broker_url=broker.url(), database_url=database_url, workdir=workdir, lease_seconds=LEASE_SECONDS
    )
    names = [f"bench-f{i}" for i in range(1, WORKERS + 1)]
    events: dict[str, float] = {}
    park_other_messages()
    connection.close()
    try:
        for name in names:
            pipeline.worker(name)
        pipeline.beat()
        pipeline.wait_ready(names)

        ids = make_due_messages("bench-faults", n, now=datetime.now(UTC))
        connection.close()
        began = time.perf_counter()
        log = pipeline.delivery_log
        procs = lambda: [p for name, p in pipeline.procs.items() if name != names[0]]  # noqa: E731

        wait_for(lambda: delivery_count(log) >= n // 4, timeout=60, what="a quarter delivered", procs=procs())
        pipeline.procs[names[0]].kill()  # SIGKILL to the worker and its pool: mid-send, unacknowledged
        events["worker_killed"] = time.perf_counter() - began
        killed_at = time.perf_counter()

        wait_for(
            lambda: delivery_count(log) >= n // 2 or time.perf_counter() - killed_at > 15,
            timeout=30,
            what="half delivered",
            procs=procs(),
        )
        if time.perf_counter() - killed_at < 2:
            time.sleep(2 - (time.perf_counter() - killed_at))
        pipeline.worker(names[0])  # the supervisor brings the crashed worker back
        events["worker_restarted"] = time.perf_counter() - began

        broker.kill()  # the broker crashes: queued and unacknowledged tasks are gone with it
        events["redis_killed"] = time.perf_counter() - began
        time.sleep(1)
        broker.start()  # the same port, empty; workers and beat reconnect by themselves
        events["redis_started"] = time.perf_counter() - began

        done = wait_delivered(log, ids, began=began, timeout=60 if quick else 120, procs=[])
        finished = time.perf_counter() - began
        time.sleep(1.5)  # any stray second delivery shows up before counting
        close_old_connections()
        result = outcome(ids, log)
    finally:
        pipeline.stop_all()
        broker.stop()

    drained = (done if done is not None else finished) - events["redis_started"]
    report.add("faults_messages", n, "messages", note=", ".join(f"{k} at {v:.1f} s" for k, v in events.items()))
    report.add("faults_lost", result.lost, "messages", target="0")
    report.add("faults_sent_twice", result.duplicates, "messages", target="0")
    report.add("faults_not_marked_sent", result.not_sent_in_db, "messages")
    report.add(
        "faults_found_sent",
        result.found_sent,
        "messages",
        note="in doubt after the kill or the restart; the provider had them, so they were not sent again",
    )
    report.add(
        "faults_drain_after_redis_restart",
        drained,
        "s",
        note=f"claim lease {LEASE_SECONDS} s; {'drained' if done is not None else 'NOT drained by the deadline'}",
    )
    report.add("faults_total_time", done if done is not None else finished, "s")
