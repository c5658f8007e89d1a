"""Two gunicorns on one host started with config/gunicorn.py do not share gunicorn 27's control socket.

Why: gunicorn (25.1 and later) opens a control socket for `gunicornc` at one default path per user
($XDG_RUNTIME_DIR/gunicorn.ctl or ~/.gunicorn/gunicorn.ctl): a second gunicorn on the host (another deployment,
bin/run next to production) takes it over, and removes it when it stops, from under the first. Nothing in the
project uses gunicornc, so config/gunicorn.py turns the socket off. How: the file is read with runpy as gunicorn
reads it into its settings, then real gunicorns are started with it under a home of their own; a gunicorn without
the file, under the same home, shows where the shared socket would have been.
"""

import os
import runpy
import sys
from pathlib import Path

from gunicorn.config import Config

from bench.procs import Proc, free_port, port_open, wait_for

CONFIG = Path(__file__).resolve().parents[2] / "config" / "gunicorn.py"


def gunicorn_settings() -> Config:
    """gunicorn's settings with config/gunicorn.py applied, as `gunicorn --config` applies it."""
    cfg = Config()
    for name, value in runpy.run_path(str(CONFIG)).items():
        if name in cfg.settings:
            cfg.set(name, value)
    return cfg


def test_the_config_turns_the_control_socket_off():
    cfg = gunicorn_settings()
    assert cfg.control_socket_disable is True
    assert Config().control_socket_disable is False  # gunicorn's own default: on


def gunicorn(tmp_path: Path, name: str, *, with_config: bool = True) -> tuple[Proc, int]:
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "CELERY_", "GUNICORN", "XDG_RUNTIME_DIR"))
    }
    env |= {
        "HOME": str(tmp_path / "home"),  # where gunicorn puts its default control socket, without XDG_RUNTIME_DIR
        "DJANGO_LOCAL": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_ACCESS_LOG": str(tmp_path / f"{name}-access.log"),
        "PYTHONUNBUFFERED": "1",
    }
    options = ["--config", str(CONFIG)] if with_config else ["--bind", f"127.0.0.1:{port}", "--workers", "1"]
    proc = Proc(
        [sys.executable, "-m", "gunicorn", *options, "config.wsgi"], env=env, log=tmp_path / f"{name}.log", lifetime=120
    )
    return proc, port


def test_two_gunicorns_with_the_config_open_no_shared_control_socket(tmp_path):
    shared = tmp_path / "home" / ".gunicorn" / "gunicorn.ctl"
    first, first_port = gunicorn(tmp_path, "first")
    second, second_port = gunicorn(tmp_path, "second")
    try:
        wait_for(
            lambda: port_open(first_port) and port_open(second_port), timeout=60, what="both", procs=[first, second]
        )
        second.stop()
        assert first.alive
        assert not shared.parent.exists()
        assert "control socket" not in first.output().lower() + second.output().lower()

        # Without the file, a gunicorn opens the one socket every gunicorn of this user would.
        plain, plain_port = gunicorn(tmp_path, "plain", with_config=False)
        try:
            wait_for(lambda: port_open(plain_port) and shared.exists(), timeout=60, what="the socket", procs=[plain])
        finally:
            plain.stop()
    finally:
        first.stop()
        second.stop()
