"""The one-command service (bin/run) holds a burst of clients and serves its own static files.

The test runs bin/run itself, on a free 127.0.0.1 port with SQLite and the
static files in a temporary directory, fires 80 requests from 40 threads
(the development server reset 11 of them), opens the API's Swagger UI and its
assets, then stops the server and the local dispatcher it started.
"""

import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 240  # bin/setup, migrate, setup_demo and collectstatic on a busy two-core machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, headers: dict | None = None, timeout: float = 60) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture
def served(tmp_path):
    """bin/run in its own process group, with everything it writes in tmp_path; stopped at the end."""
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "CELERY_", "SQLITE_TEST_NAME"))
    }
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "GUNICORN_ACCESS_LOG": str(tmp_path / "access.log"),
            "DEMO_STAFF_PASSWORD": "pw-for-tests",
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            "SMS_BACKEND": "reminders.channels.FileSmsBackend",
            "SMS_FILE_PATH": str(tmp_path / "sms.jsonl"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    log = (tmp_path / "run.log").open("wb")
    # `timeout` bounds the whole run even if this test process dies before it can stop it.
    process = subprocess.Popen(
        ["timeout", "--kill-after=5", "600", str(ROOT / "bin" / "run")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"bin/run exited with {process.returncode}:\n{(tmp_path / 'run.log').read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"bin/run did not serve within {START_TIMEOUT}s:\n{(tmp_path / 'run.log').read_text()[-3000:]}"
                    )
                time.sleep(0.5)
        yield base, env, tmp_path
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()
        time.sleep(1)
        try:  # nothing of the group (gunicorn workers, the dispatcher) is left
            os.killpg(process.pid, 0)
            leftover = True
        except ProcessLookupError:
            leftover = False
        if leftover:
            os.killpg(process.pid, signal.SIGKILL)
        assert not leftover, "bin/run left processes behind"


def test_bin_run_holds_forty_parallel_clients_and_serves_the_swagger_ui(served):
    base, env, tmp_path = served
    key = (
        subprocess.run(
            [str(ROOT / ".venv" / "bin" / "python"), "manage.py", "create_api_client", "Burst", "--clinic", "demo"],
            cwd=ROOT,
            env={**env, "DJANGO_LOCAL": "1"},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )

    def one(i: int) -> int | str:
        try:
            if i % 2:
                return get(f"{base}/api/v1/patients/?search=Olivia", {"Authorization": f"Token {key}"})[0]
            return get(f"{base}/login/")[0]
        except OSError as error:  # a reset or refused connection
            return f"{type(error).__name__}: {error}"

    with ThreadPoolExecutor(max_workers=40) as pool:
        answers = list(pool.map(one, range(80)))

    assert answers == [200] * 80, [a for a in answers if a != 200]

    status, headers, page = get(f"{base}/api/v1/docs/")
    assert status == 200
    assert headers["Server"].startswith("gunicorn")  # not the development server, whose queue holds 10
    scripts = re.findall(r'<script src="([^"]+)"', page.decode())
    bundle = next(src for src in scripts if src.endswith("swagger-ui-bundle.js"))
    status, headers, body = get(base + bundle)
    assert status == 200 and "javascript" in headers["Content-Type"] and len(body) > 100_000
    status, headers, _ = get(f"{base}/static/frontdesk/htmx-2.0.11.min.js")
    assert status == 200
