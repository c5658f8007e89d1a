"""What the patient search costs PostgreSQL in a large organisation, with its indexes and without (docs/benchmarks.md,
seventeenth part).

    .venv/bin/python bench/search.py [--patients 200000] [--runs 30]

Sets up its own database (BENCH_DATABASE_URL's server, database `clinic_bench_search`, recreated each run), one
organisation of `--patients` records (names, e-mail addresses and UK mobile numbers drawn from a seeded random
source), then runs each query the desk and the API send through `clinic.selectors.patient_search`, `--runs` times
after a warm-up: first with the trigram and pattern indexes of clinic 0024, then in a transaction that drops them
(rolled back), so both figures come from the same run, table and connection. The backend's CPU is read from
/proc/<pid>/schedstat (the server must be on this machine). Prints per query: PostgreSQL CPU per search with the
indexes, without them, and the ratio; the plan's top read with the indexes.
"""

from __future__ import annotations

import argparse
import importlib
import os
import random
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_LOCAL", "1")

QUERIES = ["+447911123101", "07911 123101", "7911123", "bennett", "olivia bennett", "Bennett 18/06/1985", "liv@ex"]
FIRST = ["Olive", "James", "Amelia", "Noah", "Sofia", "Liam", "Mia", "Lucas", "Ava", "Ethan", "Zoë", "Omar", "Yuki"]
LAST = ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Patel", "Khan", "García", "Müller", "O’Brien"]


def _database_url() -> str:
    url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/clinic_bench")
    return urlunsplit(urlsplit(url)._replace(path="/clinic_bench_search"))


def _prepare(url: str, patients: int) -> None:
    import psycopg

    with psycopg.connect(urlunsplit(urlsplit(url)._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "clinic_bench_search" WITH (FORCE)')
        conn.execute('CREATE DATABASE "clinic_bench_search"')
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v0"],
        check=True,
        env={**os.environ, "DATABASE_URL": url},
        cwd=ROOT,
    )
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from clinic.models import Clinic, Organisation, Patient

    organisation = Organisation.objects.create(code="bench", name="Bench")
    clinic = Clinic.objects.create(code="bench", name="Bench", timezone="Europe/London", organisation=organisation)
    draw = random.Random(14)
    Patient.objects.bulk_create(
        (
            Patient(
                clinic=clinic,
                organisation=organisation,
                first_name=draw.choice(FIRST),
                last_name=f"{draw.choice(LAST)}{n}",
                email=f"p{n}.{draw.randrange(10**6)}@example.com",
                phone=f"+447{draw.randrange(10**9):09d}",
            )
            for n in range(patients)
        ),
        batch_size=5000,
    )
    Patient.objects.create(
        clinic=clinic,
        first_name="Olivia",
        last_name="Bennett",
        email="liv@example.com",
        phone="+447911123101",
        date_of_birth=date(1985, 6, 18),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200_000, help="records in the organisation (200,000)")
    parser.add_argument("--runs", type=int, default=30, help="searches per query and way (30)")
    args = parser.parse_args()
    started = time.perf_counter()
    _prepare(_database_url(), args.patients)
    print(f"# {args.patients} patients made in {time.perf_counter() - started:.0f} s", flush=True)

    from django.db import connection, transaction

    from clinic.models import Clinic
    from clinic.selectors import patient_search, patients_in

    module = importlib.import_module("clinic.migrations.0024_patient_search_trigram_indexes")
    indexes = [*module.INDEXES, *module.BTREES]
    scope = patients_in(Clinic.objects.filter(code="bench"))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE clinic_patient")
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]

    def backend_ns() -> int:
        with open(f"/proc/{pid}/schedstat") as stat:
            return int(stat.read().split()[0])

    def measure(query: str) -> float:
        for _ in range(3):
            list(patient_search(scope, query, country="GB"))
        cpu = backend_ns()
        for _ in range(args.runs):
            found = list(patient_search(scope, query, country="GB"))
        assert found, f"{query!r} found no one"
        return (backend_ns() - cpu) / args.runs / 1e6

    def top_read(query: str) -> str:
        sql, params = patient_search(scope, query, country="GB").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (COSTS OFF) " + sql, params)
            lines = [row[0].strip().removeprefix("->  ") for row in cursor.fetchall()]
        return next(line for line in lines if "clinic_patient" in line and ("Scan" in line or "BitmapOr" in line))

    indexed = {query: (measure(query), top_read(query)) for query in QUERIES}
    with transaction.atomic():
        with connection.cursor() as cursor:
            for name in indexes:
                cursor.execute(f"DROP INDEX {name}")
        scanned = {query: measure(query) for query in QUERIES}
        transaction.set_rollback(True)
    for query in QUERIES:
        with_indexes, plan = indexed[query]
        print(
            f"search {query!r}: {with_indexes:.2f} ms PostgreSQL CPU with the indexes, {scanned[query]:.2f} ms "
            f"without ({scanned[query] / with_indexes:.1f}x); read: {plan}",
            flush=True,
        )


if __name__ == "__main__":
    main()
