"""Test doubles for the reminders tests: a local HTTP server, scripted SMS backends, real Celery processes.

Everything listens on 127.0.0.1 only and is stopped by the test that started it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from django.db import connection

from bench.procs import Proc, RedisServer, free_port
from reminders.channels import BaseSmsBackend, FileSmsBackend, PermanentSendError, TransientSendError

__all__ = ["Proc", "RedisServer", "free_port"]  # the one process helper, shared with the benchmarks

# However a test run ends (even killed itself), nothing it started outlives this many seconds.
TEST_LIFETIME_SECONDS = 180


# --- A local HTTP server that records requests and answers from a script ----------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict
    body: bytes
    status: int = 0  # what it was answered

    @property
    def json(self):
        return json.loads(self.body)


@dataclass
class FakeHttpServer:
    """Answers each request with the next scripted (status, body), then with `default` once the script is used; or,
    with `answer` set, with the status `answer(the request's JSON body)` gives (a receiver that fails some events)."""

    script: list[tuple[int, bytes]] = field(default_factory=list)
    default: tuple[int, bytes] = (200, b"{}")
    requests: list[Recorded] = field(default_factory=list)
    answer: Callable[[object], int] | None = None

    def __enter__(self) -> FakeHttpServer:
        fake = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    if fake.answer is not None:
                        status, answer = fake.answer(json.loads(body)), b"{}"
                    else:
                        status, answer = fake.script.pop(0) if fake.script else fake.default
                    fake.requests.append(Recorded("POST", self.path, dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# --- SMS backends with scripted behaviour -------------------------------------------------------------------


class ScriptedSmsBackend(BaseSmsBackend):
    """Fails as `ScriptedSmsBackend.script` says ("transient", "permanent"), then succeeds."""

    script: list[str] = []
    sent: list[dict] = []

    def send(self, *, to: str, body: str, outbox_id: str) -> str:
        step = ScriptedSmsBackend.script.pop(0) if ScriptedSmsBackend.script else "ok"
        if step == "transient":
            raise TransientSendError("provider answered 503")
        if step == "permanent":
            raise PermanentSendError("provider refused the number")
        ScriptedSmsBackend.sent.append({"to": to, "body": body, "outbox_id": outbox_id})
        return f"scripted-{outbox_id}"


class SlowFileSmsBackend(FileSmsBackend):
    """A provider that takes SLOW_SMS_SECONDS to accept each text (so a test can kill a worker mid-batch); with
    SLOW_SMS_AFTER set, it accepts the text at once and is slow to answer (killed then, the text is in its hands and
    not yet marked sent)."""

    def send(self, *, to: str, body: str, outbox_id: str) -> str:
        pause = float(os.environ.get("SLOW_SMS_SECONDS", "0.5"))
        if os.environ.get("SLOW_SMS_AFTER"):
            provider_id = super().send(to=to, body=body, outbox_id=outbox_id)
            time.sleep(pause)
            return provider_id
        time.sleep(pause)
        return super().send(to=to, body=body, outbox_id=outbox_id)


def sms_file_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["outbox_id"] for line in path.read_text().splitlines() if line.strip()]


# --- Real Celery processes --------------------------------------------------------------------------------------


def subprocess_database_url() -> str:
    """The URL of the test database pytest-django created, for subprocesses."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@dataclass
class CeleryHarness:
    """Starts workers and beats against one broker and queue, with file backends in `tmp`."""

    broker_url: str
    queue: str
    tmp: Path
    extra_env: dict = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)

    @property
    def sms_file(self) -> Path:
        return self.tmp / "sms.jsonl"

    @property
    def mail_dir(self) -> Path:
        return self.tmp / "mail"

    def env(self) -> dict:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("CELERY_", "REDIS_URL"))}
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "DATABASE_URL": subprocess_database_url(),
                "DATABASE_CONN_MAX_AGE": "0",
                "CELERY_BROKER_URL": self.broker_url,
                "CELERY_TASK_DEFAULT_QUEUE": self.queue,
                "SMS_BACKEND": "reminders.channels.FileSmsBackend",
                "SMS_FILE_PATH": str(self.sms_file),
                "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
                "EMAIL_FILE_PATH": str(self.mail_dir),
                "REMINDERS_DISPATCH_INTERVAL_SECONDS": "0.3",
                # Below the short leases some tests set (the settings refuse a lease not above it); the file
                # backends send at once.
                "REMINDERS_SEND_TIMEOUT_SECONDS": "2",
                "WEBHOOKS_ALLOW_HTTP": "1",
                "WEBHOOKS_ALLOW_PRIVATE_HOSTS": "1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def worker(self, name: str, *, pool: str = "solo", **env) -> Proc:
        """A worker; `pool="prefork"` runs one pool process under it (the production pool), which can be killed
        alone (`pool_processes`), as the OOM killer would."""
        proc = Proc(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                f"--pool={pool}",
                *(["--concurrency=1"] if pool == "prefork" else []),
                "-Q",
                self.queue,
                "-n",
                f"{name}@%h",
                "-l",
                "info",
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
            ],
            env={**self.env(), **env},
            log=self.tmp / f"{name}.log",
            lifetime=TEST_LIFETIME_SECONDS,
        )
        self.procs.append(proc)
        return proc

    def beat(self, name: str) -> Proc:
        proc = Proc(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "-l",
                "info",
                "-s",
                str(self.tmp / f"{name}-schedule"),
                "--pidfile",
                str(self.tmp / f"{name}.pid"),
            ],
            env=self.env(),
            log=self.tmp / f"{name}.log",
            lifetime=TEST_LIFETIME_SECONDS,
        )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.stop()


class Killed(BaseException):
    """The worker dies mid-send: nothing the send wrote commits."""


def sender_dies(monkeypatch, send, *, after_the_provider_took_it: bool, channel: str = "email") -> None:
    """Run `send()` with an e-mail sender (or, `channel="sms"`, a text sender) that dies mid-send, after handing the
    message to the provider or before (so the row stays `sending`), then give the channel its real sender back."""
    from reminders import channels

    if channel == "sms":
        owner, name = type(channels.sms_backend()), "send"
    else:
        owner, name = channels, "send_email"
    real_send = getattr(owner, name)

    def dies(*args, **kwargs):
        if after_the_provider_took_it:
            real_send(*args, **kwargs)
        raise Killed

    monkeypatch.setattr(owner, name, dies)
    try:
        send()
    except Killed:
        pass
    else:
        raise AssertionError("the sender was to die mid-send, and the send finished")
    finally:
        monkeypatch.setattr(owner, name, real_send)


def patients_by_email_and_sms(clinic, count: int) -> list:
    """`count` patients of the clinic reached by e-mail and SMS (P0, P1, ...), each with an address and a number."""
    from tests.factories import PatientFactory

    return [
        PatientFactory(
            clinic=clinic,
            first_name=f"P{i}",
            email=f"p{i}@example.com",
            phone=f"+44791112345{i}",
            reminder_channels=["email", "sms"],
            sms_consent=True,
        )
        for i in range(count)
    ]


def pool_processes(worker: Proc) -> list[int]:
    """The pids of a prefork worker's pool processes: the children of its main process (itself under `timeout`)."""

    def children(pid: int) -> list[int]:
        found = []
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                found += [int(child) for child in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError, ValueError):
                continue
        return found

    return [child for main in children(worker.popen.pid) for child in children(main)]
