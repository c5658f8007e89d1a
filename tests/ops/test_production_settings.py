"""Production settings from the environment: no printed secret key, and `check --deploy` passes.

Each case loads config.settings in a subprocess with a clean environment (no
DJANGO_* variable inherited from the test run, which is in local mode).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What docs/production.md tells an operator to set (with a made-up key and host).
PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": "p" * 20 + "-a-long-random-production-secret-key-0123456789",
    "DJANGO_ALLOWED_HOSTS": "clinic.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://clinic.example.com",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto: https",
}


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("DJANGO_", "STAFF_TWO_FACTOR", "REDIS_URL", "CELERY_BROKER_URL"))}
    environment.update(env, DJANGO_SETTINGS_MODULE="config.settings")
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=120)


def settings_value(expression: str, **env: str) -> subprocess.CompletedProcess:
    return run(["-c", f"import django; django.setup(); from django.conf import settings; print({expression})"],
               **env)


# --- Item 5: no public fallback secret ------------------------------------------------------------------------


def test_without_a_secret_key_production_refuses_to_start():
    result = settings_value("settings.SECRET_KEY")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_SECRET_KEY must be set in production" in result.stderr
    assert "DJANGO_LOCAL=1" in result.stderr  # says how to run locally instead


def test_the_key_printed_in_the_source_is_refused_in_production_too():
    result = settings_value("settings.SECRET_KEY", DJANGO_SECRET_KEY="insecure-local-development-key-change-me")

    assert result.returncode != 0
    assert "must not be the key printed in config/settings.py" in result.stderr


def test_a_manage_command_refuses_to_start_without_a_key():
    result = run(["manage.py", "check"])

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set in production" in result.stderr


@pytest.mark.parametrize("flag", [{"DJANGO_LOCAL": "1"}, {"DJANGO_DEBUG": "1"}], ids=["local", "debug"])
def test_a_local_or_debug_run_may_use_the_embedded_key(flag):
    result = settings_value("settings.SECRET_KEY", **flag)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "insecure-local-development-key-change-me"


def test_require_secret_key_refuses_the_embedded_key_even_locally():
    result = settings_value("settings.SECRET_KEY", DJANGO_LOCAL="1", DJANGO_REQUIRE_SECRET_KEY="1")

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set in production" in result.stderr


def test_bin_run_and_bin_test_run_in_local_mode():
    assert 'export DJANGO_LOCAL="${DJANGO_LOCAL:-1}"' in (ROOT / "bin" / "run").read_text()
    assert "DJANGO_SETTINGS_MODULE = config.testing" in (ROOT / "pytest.ini").read_text()
    assert 'os.environ.setdefault("DJANGO_LOCAL", "1")' in (ROOT / "config" / "testing.py").read_text()
