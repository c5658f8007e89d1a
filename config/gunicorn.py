"""gunicorn's settings, for bin/run and production alike: `gunicorn --config config/gunicorn.py config.wsgi`.

Sync workers, each one request at a time; connections beyond them wait in the
listen backlog instead of being reset (the development server's queue of 10
dropped a third of a 40-client burst). Everything is overridable from the
environment; gunicorn's own GUNICORN_CMD_ARGS still applies on top.
"""

import os
import sys
from pathlib import Path

# gunicorn reads this file before it changes to --chdir: the project's own modules must be importable from anywhere.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.env import env_count  # noqa: E402

bind = [os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")]
# Two or three per core; the booking writes are short and the database does the waiting.
workers = env_count("WEB_CONCURRENCY", 3)
backlog = env_count("GUNICORN_BACKLOG", 2048)
# A request taking longer than this is a bug or a stuck database: the worker is replaced.
timeout = env_count("GUNICORN_TIMEOUT", 30, minimum=0)  # 0: no timeout
graceful_timeout = 10
# Recycle workers now and then, so a slow leak never grows without bound.
max_requests = env_count("GUNICORN_MAX_REQUESTS", 2000, minimum=0)  # 0: never recycled
max_requests_jitter = max_requests // 10
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = "-"
# Only a proxy on these addresses may say the request came over https (X-Forwarded-Proto), and name the client in
# X-Forwarded-For: config/settings.py reads the same variable, with the same default, for core.client_address.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# No control socket (gunicorn 25.1+, for `gunicornc`, which nothing here uses): every gunicorn on a host opens the
# same default path ($XDG_RUNTIME_DIR/gunicorn.ctl or ~/.gunicorn/gunicorn.ctl), so a second one (another
# deployment, bin/run) takes it over and, when it stops, removes it from under the first.
control_socket_disable = True

# gunicorn's own request limits, stated: past them it answers with its own HTML page. The app
# answers a problem document (414/431) below them (docs/api.md, "Limits").
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190


def _logs_masked(log) -> None:
    """gunicorn's error and access logs keep their own handlers: e-mail addresses and phone numbers masked there too
    (core.redact), as in every other log line (a malformed request line, a FHIR search's address)."""
    from core.redact import mask

    for logger in (log.error_log, log.access_log):
        for handler in logger.handlers:
            mask(handler)


def when_ready(server) -> None:
    _logs_masked(server.log)


def on_reload(server) -> None:
    _logs_masked(server.log)


def post_fork(server, worker) -> None:
    _logs_masked(worker.log)
