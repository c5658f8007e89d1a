"""Benchmarks: one command that prints `name: value unit` per figure.

    python bench/run.py            # full run
    python bench/run.py --quick    # under two minutes (CI smoke check)
    python bench/run.py --scaleout # 1, 2, 4 gunicorn and Celery workers (bench/scaleout.py; docs/scaling.md)

Sets up its own PostgreSQL database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/clinic_bench, recreated each run), then
runs each section, prints its figures, and writes them to bench/results.json
and a table in docs/benchmarks.md. Figures are ratios where possible, since
machines are noisy. Everything it starts binds 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# A run on this machine over plain http (docs/production.md): the embedded secret key, no HTTPS redirect.
# Set in the environment, so the gunicorn and Celery processes the bench starts inherit it.
os.environ.setdefault("DJANGO_LOCAL", "1")

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/clinic_bench"


def prepare_database(url: str) -> None:
    """Drop and recreate the bench database, then migrate and load the defaults."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {**os.environ, "DATABASE_URL": url}
    for command in (["migrate", "--noinput", "-v0"], ["setup_demo", "--no-demo"]):
        subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *command],
            check=True,
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (CI smoke check)")
    parser.add_argument("--only", action="append", help="run only these sections (repeatable)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the service with py-spy while booking and sending reminders; print where CPU went",
    )
    parser.add_argument(
        "--scaleout",
        action="store_true",
        help="only the scale-out steps (1, 2, 4 workers): bench/scaleout.json and the table in docs/scaling.md",
    )
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    prepare_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from bench import sections
    from bench.report import Report

    report = Report(quick=args.quick)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="clinic-bench-"))
    failed = []
    chosen = sections.ALL
    if args.scaleout:
        from bench.scaleout import scaleout

        chosen = [("scaleout", scaleout)]
    for name, section in chosen:
        if args.only and name not in args.only:
            continue
        print(f"# {name}", flush=True)
        began = time.monotonic()
        try:
            section(report, quick=args.quick, database_url=url, workdir=workdir, profile=args.profile)
        except Exception:  # the other sections still run; the run then says it failed
            traceback.print_exc()
            failed.append(name)
        print(f"  ({name}: {time.monotonic() - began:.1f} s)", flush=True)
    report.add("total_bench_time", time.monotonic() - started, "s")
    if args.profile:  # py-spy took CPU from the service: these figures describe the profile, not the service
        print(f"profiled run: results not written; raw stacks in {workdir}", flush=True)
    elif args.scaleout:
        report.write(ROOT / "bench" / "scaleout.json", ROOT / "docs" / "scaling.md")
    else:
        report.write(ROOT / "bench" / "results.json", ROOT / "docs" / "benchmarks.md")
    if failed:
        print(f"sections that failed: {', '.join(failed)}; logs kept in {workdir}", flush=True)
        return 1
    if not args.profile:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
