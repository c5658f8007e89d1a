"""Processes the benchmarks and the tests start (gunicorn, Celery workers and beat, a private redis-server).

Each runs in its own process group under `timeout`, so stopping it reaches
everything it forked and nothing outlives a crashed or interrupted bench run.
Everything binds or connects to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

# However a bench run ends, nothing it started lives longer than this.
LIFETIME_SECONDS = 600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(**extra: str) -> dict[str, str]:
    """The bench's environment for children: no broker, cache or database inherited from the caller."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(
            ("CELERY_", "REDIS_URL", "DATABASE_URL", "BENCH_ENDPOINTS", "EMAIL_", "SMS_", "REMINDERS_")
        )
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_DEBUG": "0",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


class Proc:
    """A child in its own process group, its output in a log file."""

    def __init__(self, args: list[str], *, env: dict, log: Path, lifetime: int = LIFETIME_SECONDS) -> None:
        self.args = args
        self.log = log
        self._handle = log.open("ab")
        bounded = ["timeout", "--kill-after=5", str(lifetime), *args]
        self.popen = subprocess.Popen(
            bounded,
            cwd=ROOT,
            env=env,
            stdout=self._handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self, tail: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""

    def wait_for_output(self, text: str, timeout: float = 20) -> float:
        """Wait until `text` appears in the output (raise with the output if it does not, or the child exits)."""
        return wait_for(lambda: text in self.output(tail=1_000_000), timeout=timeout, what=repr(text), procs=[self])

    def kill(self) -> None:
        """SIGKILL to the whole group, as a crash or the OOM killer would: no warm shutdown."""
        self._signal(signal.SIGKILL)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._handle.close()

    def stop(self, grace: float = 10) -> None:
        if self.alive:
            self._signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.popen.wait(timeout=10)
        else:
            self._signal(signal.SIGKILL)  # a dead leader may leave children behind
        self._handle.close()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass


def wait_for(predicate, *, timeout: float, what: str, procs: list[Proc] = (), interval: float = 0.05) -> float:
    """Poll `predicate` until true; return the seconds waited. Raise with the children's logs on timeout."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if predicate():
            return time.monotonic() - began
        for proc in procs:
            if not proc.alive:
                raise RuntimeError(f"{' '.join(proc.args[:4])} exited while waiting for {what}:\n{proc.output()}")
        time.sleep(interval)
    logs = "\n".join(f"--- {p.log.name}\n{p.output()}" for p in procs)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class RedisServer:
    """A private redis-server on its own port, keeping nothing on disk, so it can be restarted at will."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.proc: Proc | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.proc = Proc(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.tmp),
            ],
            env=dict(os.environ),
            log=self.tmp / f"redis-{self.port}.log",
        )
        wait_for(lambda: port_open(self.port), timeout=10, what="redis-server", procs=[self.proc])

    def kill(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc = None

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()
            self.proc = None


def analyze() -> None:
    """Planner statistics for the rows a section just made in bulk, as autovacuum keeps them for a production
    database. Without them PostgreSQL guessed: for a booking it read a practitioner's whole calendar through
    the wrong exclusion-constraint index (1.5 ms instead of 0.07, docs/benchmarks.md)."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def analyze_between_phases() -> None:
    """`analyze` once the service has written its first rows, then let go of the connection.

    The first `analyze` runs on the data a section made, before any booking: the appointments table is then
    empty, so PostgreSQL knows nothing of its patients and practitioners and may read a practitioner's
    bookings through the patients' exclusion-constraint index (every booking of that day, 450 buffers a
    booking instead of 12). In production autovacuum analyses a table as it grows; this machine's PostgreSQL
    runs without autovacuum (its CI settings), so the bench analyses after the warm-up, as autovacuum would
    have by then. The bench holds no connection (or snapshot) while the service works."""
    from django.db import connection

    analyze()
    connection.close()
