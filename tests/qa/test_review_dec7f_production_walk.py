"""Review probe (7 December, f): a first production deployment walked through from the docs alone.

An operator followed README.md (*Configuration*, *Production*), docs/production.md, docs/reminders.md (*Running
it*) and docs/scaling.md literally on 127.0.0.1 (PostgreSQL, Redis, gunicorn, one Celery worker and one beat, then
`run_dispatcher` in the beat's place), booked over the API, killed the worker with SIGKILL mid-batch and restarted
it. What that walk found and what can be checked in seconds without starting a server is here:

* `manage.py check --deploy` is the documented safety net ("lists anything still missing"), yet it passed a
  production environment that never set `EMAIL_BACKEND` or `SMS_BACKEND`: every reminder then went to a worker's
  stdout, was marked `sent`, and no patient got it (mended: reminders.W003, W004);
* the production recipe loads no clinic (`setup_demo --no-demo`), and the docs did not say where the first clinic,
  its practitioners and their working hours are made (mended: docs/production.md, *The first clinic*);
* `celery -A config beat`, run as documented from the checkout, keeps its schedule in `celerybeat-schedule*` there,
  which git did not ignore (mended: .gitignore);
* what held: the worker and the beat stop at start without a secret key in production, as gunicorn and
  `manage.py` do; and the one documented knob that makes plain http usable for such a walk (`DJANGO_SECURE=0`)
  keeps staff two-step sign-in required and is named by `check --deploy`, so it cannot slip into production
  silently.

Each case runs a subprocess with a clean environment (no DJANGO_*, broker or proxy variable inherited from the test
run, which is in local mode).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

# README *Production* / docs/production.md *Environment*, with a made-up key and host (no e-mail or SMS backend:
# the README says the block passes `check --deploy`, and docs/production.md adds "plus e-mail and SMS").
PRODUCTION = {
    "DJANGO_SECRET_KEY": "w" * 24 + "-walk-through-production-key-0123456789",
    "DJANGO_ALLOWED_HOSTS": "clinic.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://clinic.example.com",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto: https",
    "REMINDERS_PUBLIC_BASE_URL": "https://clinic.example.com",
}


def clean_environment(**env: str) -> dict[str, str]:
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "STAFF_TWO_FACTOR", "REDIS_URL", "CELERY_", "EMAIL_", "SMS_", "REMINDERS_"))
        and not k.lower().endswith("_proxy")
    }
    return inherited | {"DJANGO_SETTINGS_MODULE": "config.settings"} | env


def run(args: list[str], cwd: Path = ROOT, timeout: int = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=clean_environment(**env), capture_output=True, text=True, timeout=timeout)


def check_deploy(**env: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], **env)


def doc(name: str) -> str:
    return (ROOT / name).read_text()


def section(text: str, heading: str) -> str:
    """The text under a `## heading` up to the next heading of the same level."""
    start = text.index(f"## {heading}\n")
    following = text.find("\n## ", start + 3)
    return text[start : following if following != -1 else len(text)]


# --- Findings ------------------------------------------------------------------------------------------------------


def test_check_deploy_names_console_email_and_sms_backends_left_in_production():
    result = check_deploy(**PRODUCTION)
    said = result.stdout + result.stderr

    assert result.returncode != 0, said
    assert "EMAIL_BACKEND" in said and "SMS_BACKEND" in said, said


def test_the_production_docs_say_where_the_first_clinic_practitioners_and_hours_are_made():
    recipe = doc("docs/production.md") + section(doc("README.md"), "Production")

    # What the walk needed before create_api_client and the first booking: a clinic (and its organisation), a
    # practitioner offering the procedure, and that practitioner's working hours (no hours, no slot).
    assert "setup_demo --no-demo" in recipe  # the recipe loads no clinic (tests/qa/test_operator_commands_probe.py)
    assert re.search(r"practitioner", recipe, re.I), "no word of practitioners"
    assert re.search(r"working hours", recipe, re.I), "no word of working hours"


def test_the_documented_beat_keeps_its_schedule_where_git_ignores_it():
    result = run(
        [sys.executable, "-c", "from config.celery import app; print(app.conf.beat_schedule_filename)"],
        DJANGO_LOCAL="1",
    )
    assert result.returncode == 0, result.stderr
    filename = Path(result.stdout.strip())
    schedule = filename if filename.is_absolute() else ROOT / filename
    relative = schedule.relative_to(ROOT) if schedule.is_relative_to(ROOT) else None
    assert relative is not None, schedule  # kept in the checkout: the question is whether git ignores it

    not_ignored = [
        str(name)
        for name in (relative, *(relative.with_name(relative.name + s) for s in (".dat", ".dir", ".bak", ".db")))
        if subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", str(name)], check=False).returncode != 0
    ]

    assert not_ignored == []


# --- What held -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("process", ["worker", "beat"])
def test_the_worker_and_the_beat_stop_at_start_without_a_secret_key_in_production(process, tmp_path):
    """docs/production.md: without DJANGO_SECRET_KEY "every process (gunicorn, `manage.py`, Celery) stops at
    start-up with `ImproperlyConfigured`". Run from a scratch directory (a beat that started would write its schedule
    file there) on an in-memory broker, so one that wrongly starts touches nothing shared and runs into the timeout."""
    env = {k: v for k, v in PRODUCTION.items() if k != "DJANGO_SECRET_KEY"}
    result = run(
        [str(VENV_BIN / "celery"), "-A", "config", process, "-l", "info"],
        cwd=tmp_path,
        timeout=60,
        PYTHONPATH=str(ROOT),
        CELERY_BROKER_URL="memory://",
        **env,
    )

    assert result.returncode != 0
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY must be set in production" in result.stderr
    assert "ready." not in result.stderr and "beat: Starting" not in result.stderr


def test_plain_http_for_a_local_walk_keeps_two_step_sign_in_and_is_named_by_check_deploy():
    """README *Configuration*: `DJANGO_SECURE` (`1` in production) is the knob that serves plain http; set to 0 on a
    production run it turns off the redirect, HSTS and the secure cookies only (staff two-step sign-in stays
    required), and `check --deploy` names each of those, so it cannot reach production unnoticed."""
    env = PRODUCTION | {"DJANGO_SECURE": "0"}
    expression = (
        "[getattr(settings, 'SECURE_SSL_REDIRECT', False), getattr(settings, 'SECURE_HSTS_SECONDS', 0), "
        "settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE, settings.STAFF_TWO_FACTOR_REQUIRED, "
        "settings.LOCAL, settings.DEBUG]"
    )
    read = run([sys.executable, "-c", f"import django; django.setup(); from django.conf import settings; "
                f"print({expression})"], **env)  # fmt: skip
    deploy = check_deploy(**env)

    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == "[False, 0, False, False, True, False, False]"
    assert deploy.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in deploy.stderr, (check, deploy.stderr)
