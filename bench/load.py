"""Booking under load: 32 HTTP clients against gunicorn and PostgreSQL, beside a bare-insert baseline.

The service runs under gunicorn on 127.0.0.1 (4 sync workers for 2 cores),
with an API key made by `create_api_client`. An asyncio client (aiohttp) keeps
32 requests in flight for a fixed time, first against the baseline
(bench/baseline.py: the same row, no rules), then against
POST /api/v1/appointments/, then paces bookings at half the measured rate
to show latency without a queue. Afterwards bench/checks.py looks over the
database for interval violations and practitioner overlaps.

The load is shaped so that most bookings succeed: many patients with a
history, every request on its own practitioner-hour, and about one in ten
aimed at a small set of busy patients (so some are refused by the rules)
or at a practitioner-hour just handed to someone else (refused as taken).
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.cpu import CpuMeter
from bench.procs import ROOT, VENV_BIN, Proc, analyze, analyze_between_phases, base_env, free_port, port_open, wait_for
from bench.profiling import Profile

CONCURRENCY = 32
GUNICORN_WORKERS = 4
ZONES = ["Europe/London", "America/New_York"]
PROCEDURES = ["botox", "filler", "microneedling", "plasma_pen"]
AREAS = [None, "face", "face", "neck"]


@dataclass
class Shape:
    clinics: int
    practitioners: int  # per clinic
    patients: int  # per clinic
    hot_patients: int  # per clinic: take a tenth of the requests between them
    seconds: float  # per measured phase
    warmup: float


QUICK = Shape(clinics=3, practitioners=8, patients=400, hot_patients=8, seconds=8, warmup=1.5)
FULL = Shape(clinics=4, practitioners=10, patients=1500, hot_patients=12, seconds=40, warmup=3)


# --- Data -----------------------------------------------------------------------------------------------------


@dataclass
class Site:
    """One clinic's ids and the practitioner-hours it offers, shuffled."""

    clinic_id: uuid.UUID
    tz: ZoneInfo
    practitioners: list[uuid.UUID]
    patients: list[uuid.UUID]
    hot: list[uuid.UUID]
    slots: list[tuple[uuid.UUID, datetime]] = field(default_factory=list)


def _working_days(today: date, days: int) -> list[date]:
    return [d for d in (today + timedelta(days=i) for i in range(1, days + 1)) if d.weekday() < 6]


def make_sites(prefix: str, shape: Shape, *, seed: int, with_history: bool) -> list[Site]:
    """Clinics, practitioners (Mon-Sat 09-18 local, every procedure), patients with a history."""
    from clinic.models import (
        Clinic,
        MedicationCourse,
        Patient,
        Practitioner,
        ProcedureRecord,
        ProcedureType,
        WorkingHours,
    )

    rnd = random.Random(seed)
    procedures = list(ProcedureType.objects.filter(bookable=True))
    sites = []
    now = datetime.now(UTC)
    for index in range(shape.clinics):
        zone = ZONES[index % len(ZONES)]
        clinic = Clinic.objects.create(code=f"{prefix}-{index}", name=f"Bench {prefix} {index}", timezone=zone)
        practitioners = Practitioner.objects.bulk_create(
            Practitioner(clinic=clinic, name=f"Practitioner {index}-{n:02d}") for n in range(shape.practitioners)
        )
        Practitioner.procedures.through.objects.bulk_create(
            Practitioner.procedures.through(practitioner_id=p.pk, proceduretype_id=proc.pk)
            for p in practitioners
            for proc in procedures
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
                first_name=f"P{n}",
                last_name=f"Bench{index}",
                email=f"p{index}-{n}@example.com",
                phone="+447700900123" if zone == "Europe/London" else "+12125550123",
                reminder_channels=["email", "sms"],
                sms_consent=True,
            )
            for n in range(shape.patients)
        )
        if with_history:
            records = []
            for patient in patients:
                for _ in range(rnd.randrange(0, 13)):
                    back = timedelta(days=rnd.uniform(2, 3 * 365))
                    records.append(
                        ProcedureRecord(
                            patient=patient,
                            procedure_id=rnd.choice(PROCEDURES),
                            area_id=rnd.choice(AREAS),
                            performed_at=(now - back).replace(second=0, microsecond=0),
                            source="reported",
                        )
                    )
            ProcedureRecord.objects.bulk_create(records, batch_size=2000)
            # A few finished isotretinoin courses: microneedling stays blocked for 6 months after each.
            MedicationCourse.objects.bulk_create(
                MedicationCourse(
                    patient=patient,
                    drug_id="isotretinoin",
                    started_on=(now - timedelta(days=300)).date(),
                    ended_on=(now - timedelta(days=rnd.randrange(60, 200))).date(),
                )
                for patient in rnd.sample(patients, max(1, len(patients) // 50))
            )
        ids = [p.pk for p in patients]
        site = Site(clinic.pk, ZoneInfo(zone), [p.pk for p in practitioners], ids, ids[: shape.hot_patients])
        tz = site.tz
        for day in _working_days(now.astimezone(tz).date(), 84):
            for hour in range(9, 18):
                start = datetime.combine(day, clock(hour), tzinfo=tz)
                site.slots.extend((pid, start) for pid in site.practitioners)
        rnd.shuffle(site.slots)
        sites.append(site)
    return sites


class Requests:
    """An endless stream of booking bodies over the sites' patients and practitioner-hours."""

    def __init__(self, sites: list[Site], *, seed: int) -> None:
        self.sites = sites
        self.rnd = random.Random(seed)
        self.cursor = [0] * len(sites)
        self.recent: list[tuple[uuid.UUID, datetime]] = []
        self.kinds: Counter = Counter()

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        rnd = self.rnd
        index = rnd.randrange(len(self.sites))
        site = self.sites[index]
        roll = rnd.random()
        if roll < 0.03 and len(self.recent) > 50:
            # Someone else's practitioner-hour, handed out moments ago: taken, if that booking went through.
            practitioner, start = self.recent[-rnd.randrange(5, 50)]
            if practitioner not in site.practitioners:
                site = next(s for s in self.sites if practitioner in s.practitioners)
            self.kinds["taken_slot"] += 1
        else:
            practitioner, start = site.slots[self.cursor[index] % len(site.slots)]
            self.cursor[index] += 1
            self.recent.append((practitioner, start))
            del self.recent[:-100]
        if roll > 0.9:
            patient = rnd.choice(site.hot)
            self.kinds["busy_patient"] += 1
        else:
            patient = rnd.choice(site.patients)
            self.kinds["ordinary"] += 1
        body = {
            "patient": str(patient),
            "procedure": rnd.choice(PROCEDURES),
            "start": start.isoformat(),
            "practitioner": str(practitioner),
        }
        area = rnd.choice(AREAS)
        if area:
            body["area"] = area
        return json.dumps(body).encode()


class Searches:
    """An endless stream of availability queries (14 days, the API's default) for the sites' patients."""

    def __init__(self, sites: list[Site], *, seed: int) -> None:
        self.sites = sites
        self.rnd = random.Random(seed)

    def __iter__(self):
        return self

    def __next__(self) -> str:
        site = self.rnd.choice(self.sites)
        return f"?patient={self.rnd.choice(site.patients)}&procedure={self.rnd.choice(PROCEDURES)}"


# --- Load ------------------------------------------------------------------------------------------------------


@dataclass
class Sample:
    at: float
    latency: float
    status: int
    detail: str = ""


def _refusal_kind(raw: bytes) -> str:
    try:
        problem = json.loads(raw)
    except ValueError:
        return "unparsed"
    kinds = {v.get("kind") for v in problem.get("violations") or []}
    if kinds & {"interval", "contraindication"}:
        return "rules"
    if "availability" in kinds:
        return "taken"
    return problem.get("code", "other")


async def _send(session, url: str, body: bytes | str, headers: dict) -> tuple[int, str]:
    """POST a booking body; a str is a query string to GET instead (an availability search)."""
    import aiohttp

    try:
        if isinstance(body, str):
            async with session.get(url + body, headers=headers) as resp:
                await resp.read()
                return resp.status, ""
        async with session.post(url, data=body, headers={**headers, "Idempotency-Key": uuid.uuid4().hex}) as resp:
            raw = await resp.read()
            return resp.status, _refusal_kind(raw) if resp.status == 409 else ""
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        return 0, type(exc).__name__


async def _closed_loop(url: str, bodies, headers: dict, *, seconds: float, concurrency: int) -> list[Sample]:
    """`concurrency` clients, each sending its next request as soon as the last is answered."""
    import aiohttp

    samples: list[Sample] = []
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as session:
        began = time.perf_counter()
        stop = began + seconds

        async def client():
            while time.perf_counter() < stop:
                sent = time.perf_counter()
                status, detail = await _send(session, url, next(bodies), headers)
                samples.append(Sample(sent - began, time.perf_counter() - sent, status, detail))

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return samples


async def _paced(url: str, bodies, headers: dict, *, rate: float, seconds: float, limit: int) -> list[Sample]:
    """Open loop: requests start on a fixed schedule; latency counts from the scheduled start."""
    import aiohttp

    samples: list[Sample] = []
    in_flight = asyncio.Semaphore(limit)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit), timeout=timeout) as session:
        began = time.perf_counter()

        async def one(due: float, body: bytes):
            async with in_flight:
                status, detail = await _send(session, url, body, headers)
            samples.append(Sample(due - began, time.perf_counter() - due, status, detail))

        tasks = []
        for i in range(int(rate * seconds)):
            due = began + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(due, next(bodies))))
        await asyncio.gather(*tasks)
    return samples


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


@dataclass
class Phase:
    samples: list[Sample]
    seconds: float
    cpu: CpuMeter | None = None

    def cpu_ms_per_request(self, part: str) -> float:
        return getattr(self.cpu, part) / max(1, len(self.samples)) * 1000

    @property
    def statuses(self) -> Counter:
        return Counter(s.status for s in self.samples)

    @property
    def created_per_second(self) -> float:
        return self.statuses[201] / self.seconds

    @property
    def requests_per_second(self) -> float:
        return len(self.samples) / self.seconds

    def latency(self, q: float) -> float:
        return _percentile([s.latency for s in self.samples], q) * 1000


# --- The service -----------------------------------------------------------------------------------------------


def _api_key(database_url: str, codes: list[str]) -> str:
    args = [sys.executable, str(ROOT / "manage.py"), "create_api_client", f"Bench platform {uuid.uuid4().hex[:6]}"]
    for code in codes:
        args += ["--clinic", code]
    out = subprocess.run(
        args, env=base_env(DATABASE_URL=database_url), cwd=ROOT, check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return out.strip().splitlines()[-1]


def start_gunicorn(database_url: str, workdir: Path, *, workers: int = GUNICORN_WORKERS) -> tuple[Proc, int]:
    port = free_port()
    env = base_env(
        DATABASE_URL=database_url, BENCH_ENDPOINTS="1", API_THROTTLE_RATE="1000000/s", DJANGO_ALLOWED_HOSTS="127.0.0.1"
    )
    proc = Proc(
        [
            str(VENV_BIN / "gunicorn"),
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "sync",
            "--timeout",
            "30",
            "--log-level",
            "warning",
        ],
        env=env,
        log=workdir / "gunicorn.log",
    )
    wait_for(lambda: port_open(port), timeout=30, what="gunicorn", procs=[proc])
    return proc, port


# --- The section ---------------------------------------------------------------------------------------------------


def booking_load(report, *, quick: bool, database_url: str, workdir: Path, profile: bool = False, **_) -> None:
    """Booking throughput and latency under 32 clients, beside the bare-insert baseline; then the invariants."""
    from django.db import connection

    from bench.checks import booking_invariants

    shape = QUICK if quick else FULL
    database = connection.settings_dict["NAME"]
    made = time.perf_counter()
    booked_sites = make_sites("bench-load", shape, seed=1, with_history=True)
    baseline_sites = make_sites("bench-base", shape, seed=2, with_history=False)
    analyze()
    key = _api_key(
        database_url,
        [f"bench-load-{i}" for i in range(shape.clinics)] + [f"bench-base-{i}" for i in range(shape.clinics)],
    )
    print(f"  data made in {time.perf_counter() - made:.1f} s", flush=True)
    connection.close()  # the bench holds no connection (or snapshot) while the service works

    gunicorn, port = start_gunicorn(database_url, workdir)
    try:
        headers = {"Authorization": f"Token {key}", "Content-Type": "application/json"}
        booking_url = f"http://127.0.0.1:{port}/api/v1/appointments/"
        baseline_url = f"http://127.0.0.1:{port}/bench/baseline/appointments/"
        booked, baseline = Requests(booked_sites, seed=3), Requests(baseline_sites, seed=4)

        def run(coroutine):
            return asyncio.run(coroutine)

        for url, bodies in ((baseline_url, baseline), (booking_url, booked)):  # warm both paths
            run(_closed_loop(url, bodies, headers, seconds=shape.warmup, concurrency=CONCURRENCY))
        analyze_between_phases()
        with CpuMeter(pgids=[gunicorn.popen.pid], database=database) as base_cpu:
            base = Phase(
                run(_closed_loop(baseline_url, baseline, headers, seconds=shape.seconds, concurrency=CONCURRENCY)),
                shape.seconds,
                base_cpu,
            )
        profiler = Profile(gunicorn.popen.pid, shape.seconds - 1, workdir / "booking.pyspy") if profile else None
        with CpuMeter(pgids=[gunicorn.popen.pid], database=database) as book_cpu:
            book = Phase(
                run(_closed_loop(booking_url, booked, headers, seconds=shape.seconds, concurrency=CONCURRENCY)),
                shape.seconds,
                book_cpu,
            )
        availability_url = f"http://127.0.0.1:{port}/api/v1/availability/"
        searches = Searches(booked_sites, seed=5)
        run(_closed_loop(availability_url, searches, headers, seconds=shape.warmup, concurrency=CONCURRENCY))
        with CpuMeter(pgids=[gunicorn.popen.pid], database=database) as search_cpu:
            search = Phase(
                run(
                    _closed_loop(
                        availability_url, searches, headers, seconds=shape.seconds / 2, concurrency=CONCURRENCY
                    )
                ),
                shape.seconds / 2,
                search_cpu,
            )
        rate = max(1.0, round(book.requests_per_second / 2))
        paced_seconds = shape.seconds / 2
        paced = Phase(
            run(_paced(booking_url, booked, headers, rate=rate, seconds=paced_seconds, limit=CONCURRENCY * 2)),
            paced_seconds,
        )
        if profiler:
            print(f"  profile of the gunicorn workers while booking:\n{profiler.summary()}", flush=True)
    finally:
        gunicorn.stop()

    statuses = book.statuses + paced.statuses
    refusals = Counter(s.detail for s in book.samples + paced.samples if s.status == 409)
    report.add("booking_throughput", book.created_per_second, "bookings/s")
    report.add("booking_requests_per_second", book.requests_per_second, "req/s")
    report.add("baseline_throughput", base.created_per_second, "inserts/s")
    report.add("booking_to_baseline_ratio", book.requests_per_second / base.requests_per_second, "x", target=">= 0.45")
    report.add(
        "booking_app_cpu_per_request",
        book.cpu_ms_per_request("app"),
        "ms",
        note="gunicorn workers' CPU time per answered request",
    )
    report.add(
        "booking_db_cpu_per_request",
        book.cpu_ms_per_request("db"),
        "ms",
        note="PostgreSQL backends' CPU time per answered request",
    )
    report.add("baseline_app_cpu_per_request", base.cpu_ms_per_request("app"), "ms")
    report.add("baseline_db_cpu_per_request", base.cpu_ms_per_request("db"), "ms")
    for part, target in (("app", "<= 2.5x"), ("db", "<= 2x")):
        report.add(
            f"booking_{part}_cpu_to_baseline",
            book.cpu_ms_per_request(part) / base.cpu_ms_per_request(part),
            "x",
            target=target,
            note="a booking's CPU per request over the bare insert's",
        )
    report.add(
        "booking_to_baseline_cpu_ratio",
        (base.cpu.app + base.cpu.db) / len(base.samples) / ((book.cpu.app + book.cpu.db) / len(book.samples)),
        "x",
        note="baseline CPU per request / booking CPU per request: the throughput ratio on a quiet machine",
    )
    report.add(
        "load_generator_cpu_share",
        (book.cpu.own + base.cpu.own)
        / (book.cpu.own + base.cpu.own + book.cpu.app + book.cpu.db + base.cpu.app + base.cpu.db)
        * 100,
        "%",
    )
    # Per core: what one core of web worker and one of database would answer a second, from CPU time per request
    # (the measured rates share two cores with the load generator and with each other).
    per_core = {
        name: 1000 / (phase.cpu_ms_per_request("app") + phase.cpu_ms_per_request("db"))
        for name, phase in (("booking", book), ("availability", search))
    }
    report.add(
        "booking_requests_per_core_second",
        per_core["booking"],
        "req/s",
        note="1000 / (app + PostgreSQL CPU ms per request)",
    )
    report.add(
        "availability_requests_per_second", search.requests_per_second, "req/s", note="14-day searches, 32 clients"
    )
    report.add(
        "availability_requests_per_core_second",
        per_core["availability"],
        "req/s",
        note="1000 / (app + PostgreSQL CPU ms per request)",
    )
    report.add("availability_app_cpu_per_request", search.cpu_ms_per_request("app"), "ms")
    report.add("availability_db_cpu_per_request", search.cpu_ms_per_request("db"), "ms")
    report.add("availability_latency_median", search.latency(0.5), "ms", note="at the client, 32 in flight")
    report.add(
        "availability_non_200", sum(n for code, n in search.statuses.items() if code != 200), "responses", target="0"
    )
    report.add("booking_latency_median", book.latency(0.5), "ms")
    # 32 clients at saturation: the queue in front sets this (docs/benchmarks.md); the target is the paced p99.
    report.add("booking_latency_p99", book.latency(0.99), "ms", note="closed loop, 32 in flight")
    report.add("baseline_latency_median", base.latency(0.5), "ms")
    report.add("baseline_latency_p99", base.latency(0.99), "ms")
    report.add("booking_paced_rate", rate, "req/s", note="half the closed-loop rate, open loop")
    report.add("booking_paced_latency_median", paced.latency(0.5), "ms")
    report.add("booking_paced_latency_p99", paced.latency(0.99), "ms", target="< 100 ms")
    report.add("booking_requests", sum(statuses.values()), "requests")
    report.add("booking_201", statuses[201], "responses")
    report.add("booking_409_refused_by_rules", refusals["rules"], "responses")
    report.add("booking_409_slot_taken", refusals["taken"], "responses")
    report.add("booking_409_other", sum(refusals.values()) - refusals["rules"] - refusals["taken"], "responses")
    report.add("booking_5xx", sum(n for code, n in statuses.items() if code >= 500), "responses", target="0")
    other = sum(n for code, n in statuses.items() if code not in (201, 409) and (code < 500))
    report.add("booking_other_failures", other, "responses", note=str(dict(statuses)))
    report.add("baseline_5xx", sum(n for code, n in base.statuses.items() if code >= 500), "responses")

    found = booking_invariants(connection, [s.clinic_id for s in booked_sites])
    report.add("check_interval_violations", found["interval_violations"], "pairs", target="0")
    report.add("check_practitioner_overlaps", found["practitioner_overlaps"], "pairs", target="0")
    report.add("check_active_appointments", found["active_appointments"], "appointments")
