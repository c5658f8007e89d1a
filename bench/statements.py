"""What a statement, a transaction and a round trip cost PostgreSQL's backend (docs/benchmarks.md, tenth part).

    .venv/bin/python bench/statements.py [--runs 2000]

One connection to BENCH_DATABASE_URL's server (the `postgres` database), each shape run after a warm-up on an
ordinary table (logged, as the service's are: a commit flushes the WAL; emptied between shapes, dropped at the
end), the backend's CPU read from /proc/<pid>/schedstat (nanoseconds; the server must be on this machine).
Prints one line per shape: backend µs per run and wall µs per run.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import psycopg

INSERT = "INSERT INTO bench_statements (a, b) VALUES (%s, %s)"


def _server_url() -> str:
    url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/clinic_bench")
    return urlunsplit(urlsplit(url)._replace(path="/postgres"))


def shapes(conn: psycopg.Connection) -> dict[str, Callable[[], None]]:
    def in_transaction(count: int) -> Callable[[], None]:
        def run() -> None:
            with conn.transaction():
                for i in range(count):
                    conn.execute(INSERT, (i, "x"), prepare=True)

        return run

    def pipelined() -> None:
        with conn.pipeline(), conn.transaction():
            for i in range(5):
                conn.execute(INSERT, (i, "x"), prepare=True)

    def autocommit() -> None:
        conn.execute(INSERT, (1, "x"), prepare=True)

    def five_rows() -> None:
        conn.execute(INSERT.replace("(%s, %s)", ", ".join(["(%s, %s)"] * 5)), (1, "x") * 5, prepare=True)

    def select_one() -> None:
        conn.execute("SELECT 1", prepare=True)

    return {
        "SELECT 1, autocommit": select_one,
        "one INSERT, autocommit": autocommit,
        "BEGIN, one INSERT, COMMIT": in_transaction(1),
        "BEGIN, five INSERTs, COMMIT": in_transaction(5),
        "the same five, pipeline mode": pipelined,
        "BEGIN, ten INSERTs, COMMIT": in_transaction(10),
        "one INSERT of five rows, autocommit": five_rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="runs per shape (default 2000)")
    runs = parser.parse_args().runs
    with psycopg.connect(_server_url(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_statements")
        conn.execute("CREATE TABLE bench_statements (id bigserial PRIMARY KEY, a int, b text)")
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]

        def backend_ns() -> int:
            with open(f"/proc/{pid}/schedstat") as stat:
                return int(stat.read().split()[0])

        try:
            for name, run in shapes(conn).items():
                conn.execute("TRUNCATE bench_statements")
                for _ in range(max(runs // 10, 10)):
                    run()
                cpu, wall = backend_ns(), time.perf_counter()
                for _ in range(runs):
                    run()
                cpu, wall = backend_ns() - cpu, time.perf_counter() - wall
                print(f"{name}: {cpu / runs / 1000:.1f} µs backend CPU, {wall / runs * 1e6:.1f} µs wall per run")
        finally:
            conn.execute("DROP TABLE IF EXISTS bench_statements")


if __name__ == "__main__":
    main()
