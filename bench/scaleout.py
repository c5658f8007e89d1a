"""Scale-out on one machine: booking at 1, 2 and 4 gunicorn workers, reminders at 1, 2 and 4 Celery workers.

`python bench/run.py --scaleout` (quick: `--scaleout --quick`). Each step runs the same load as the
booking and reminder sections against 127.0.0.1 only, with the workers it names, and records the
rate, CPU time per request or message (service and PostgreSQL), how busy the machine's cores were,
and the load average before and after (other engineers share this machine: a step that ran beside
someone's test suite reads low). Writes bench/scaleout.json and the table in docs/scaling.md.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.cpu import CpuMeter
from bench.load import CONCURRENCY, FULL, QUICK, Phase, Requests, _api_key, _closed_loop, make_sites, start_gunicorn
from bench.pipeline import Pipeline, RedisKeys, counter_url, make_due_messages, park_other_messages, wait_delivered
from bench.procs import analyze, analyze_between_phases

STEPS = (1, 2, 4)
CORES = os.cpu_count() or 1


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _busy(cpu: CpuMeter) -> float:
    """Share of the machine's cores used by the service, PostgreSQL and the load generator, in %."""
    return (cpu.app + cpu.db + cpu.own) / (cpu.wall * CORES) * 100


def booking_steps(report, *, quick: bool, database_url: str, workdir: Path) -> None:
    from django.db import connection

    shape = QUICK if quick else FULL
    seconds = 6 if quick else 20
    database = connection.settings_dict["NAME"]
    sites = make_sites("bench-scale", shape, seed=7, with_history=True)
    analyze()
    key = _api_key(database_url, [f"bench-scale-{i}" for i in range(shape.clinics)])
    connection.close()
    headers = {"Authorization": f"Token {key}", "Content-Type": "application/json"}
    bodies = Requests(sites, seed=8)
    for workers in STEPS:
        before = _load()
        logs = workdir / f"gunicorn-{workers}"
        logs.mkdir(parents=True, exist_ok=True)
        gunicorn, port = start_gunicorn(database_url, logs, workers=workers)
        try:
            url = f"http://127.0.0.1:{port}/api/v1/appointments/"
            asyncio.run(_closed_loop(url, bodies, headers, seconds=2, concurrency=CONCURRENCY))
            analyze_between_phases()
            with CpuMeter(pgids=[gunicorn.popen.pid], database=database) as cpu:
                phase = Phase(
                    asyncio.run(_closed_loop(url, bodies, headers, seconds=seconds, concurrency=CONCURRENCY)),
                    seconds,
                    cpu,
                )
        finally:
            gunicorn.stop()
        note = f"load average before {before}, after {_load()}; {CORES} cores"
        report.add(f"scale_booking_{workers}w_requests_per_second", phase.requests_per_second, "req/s", note=note)
        report.add(f"scale_booking_{workers}w_latency_median", phase.latency(0.5), "ms")
        report.add(f"scale_booking_{workers}w_app_cpu_per_request", phase.cpu_ms_per_request("app"), "ms")
        report.add(f"scale_booking_{workers}w_db_cpu_per_request", phase.cpu_ms_per_request("db"), "ms")
        report.add(f"scale_booking_{workers}w_cores_busy", _busy(cpu), "%", note="service + PostgreSQL + client")


def reminder_steps(report, *, quick: bool, database_url: str, workdir: Path) -> None:
    from django.db import close_old_connections, connection

    n = 1_000 if quick else 4_000
    keys = RedisKeys(counter_url())
    database = connection.settings_dict["NAME"]
    try:
        for workers in STEPS:
            park_other_messages()
            connection.close()
            before = _load()
            pipeline = Pipeline(
                broker_url=counter_url(),
                database_url=database_url,
                workdir=workdir / f"pipeline-{workers}",
                concurrency=1,
            )
            names = [f"bench-s{i}" for i in range(1, workers + 1)]
            try:
                for name in names:
                    pipeline.worker(name)
                pipeline.beat()
                pipeline.wait_ready(names)
                ids = make_due_messages(f"bench-scale-{workers}-{int(time.time())}", n, now=datetime.now(UTC))
                connection.close()
                pgids = [proc.popen.pid for proc in pipeline.procs.values()]
                began = time.perf_counter()
                with CpuMeter(pgids=pgids, database=database) as cpu:
                    took = wait_delivered(
                        pipeline.delivery_log, ids, began=began, timeout=120, procs=list(pipeline.procs.values())
                    )
                took = took or time.perf_counter() - began
            finally:
                pipeline.stop_all()
                close_old_connections()
            note = f"load average before {before}, after {_load()}; {CORES} cores"
            report.add(f"scale_reminders_{workers}w_messages_per_second", n / took, "messages/s", note=note)
            report.add(f"scale_reminders_{workers}w_worker_cpu_per_message", cpu.app / n * 1000, "ms")
            report.add(f"scale_reminders_{workers}w_db_cpu_per_message", cpu.db / n * 1000, "ms")
            report.add(f"scale_reminders_{workers}w_cores_busy", _busy(cpu), "%", note="workers + beat + PostgreSQL")
    finally:
        keys.cleanup()


def scaleout(report, *, quick: bool, database_url: str, workdir: Path, **_) -> None:
    booking_steps(report, quick=quick, database_url=database_url, workdir=workdir)
    reminder_steps(report, quick=quick, database_url=database_url, workdir=workdir)
