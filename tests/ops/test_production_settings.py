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
    "REMINDERS_PUBLIC_BASE_URL": "https://clinic.example.com",
    "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
    "ANYMAIL_POSTMARK_SERVER_TOKEN": "your-token",
    "DEFAULT_FROM_EMAIL": "Clinic <clinic@example.com>",
    "SMS_BACKEND": "reminders.channels.TwilioSmsBackend",
    "TWILIO_ACCOUNT_SID": "your-account-sid",
    "TWILIO_AUTH_TOKEN": "your-auth-token",
    "SMS_FROM": "+447700900000",
}


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "STAFF_TWO_FACTOR", "REDIS_URL", "CELERY_BROKER_URL"))
        # A proxy the machine sets for its package downloads is a deploy warning here (reminders.W001).
        and not k.lower().endswith("_proxy")
    }
    environment.update(env, DJANGO_SETTINGS_MODULE="config.settings")
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


def settings_value(expression: str, **env: str) -> subprocess.CompletedProcess:
    return run(["-c", f"import django; django.setup(); from django.conf import settings; print({expression})"], **env)


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


# --- Item 4: production hardening ---------------------------------------------------------------------------


def test_the_documented_production_environment_passes_check_deploy():
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **PRODUCTION_ENV)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    documented = (ROOT / "docs" / "production.md").read_text()
    for name in PRODUCTION_ENV:
        assert name in documented, name


def test_production_is_https_only_with_short_staff_sessions_and_2fa():
    expression = (
        "[settings.SECURE_SSL_REDIRECT, settings.SECURE_HSTS_SECONDS, settings.SESSION_COOKIE_SECURE, "
        "settings.CSRF_COOKIE_SECURE, settings.SECURE_PROXY_SSL_HEADER, settings.SESSION_COOKIE_AGE, "
        "settings.SESSION_EXPIRE_AT_BROWSER_CLOSE, settings.STAFF_TWO_FACTOR_REQUIRED]"
    )
    result = settings_value(expression, **PRODUCTION_ENV)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "[True, 31536000, True, True, ('HTTP_X_FORWARDED_PROTO', 'https'), 36000, True, True]"
    )


def test_session_length_and_https_are_configurable():
    result = settings_value(
        "[settings.SESSION_COOKIE_AGE, getattr(settings, 'SECURE_SSL_REDIRECT', False)]",
        **PRODUCTION_ENV,
        DJANGO_SESSION_HOURS="8.5",
        DJANGO_SECURE="0",
    )

    assert result.stdout.strip() == "[30600, False]", result.stderr


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("DJANGO_SECURE_PROXY_SSL_HEADER", "https", "must look like 'X-Forwarded-Proto: https'"),
        ("DJANGO_SESSION_HOURS", "a day", "DJANGO_SESSION_HOURS must be a number"),
        ("DJANGO_SECURE", "perhaps", "DJANGO_SECURE must be a boolean"),
        ("REMINDERS_CLAIMS_PER_RUN", "ten", "REMINDERS_CLAIMS_PER_RUN must be a whole number, not 'ten'"),
        ("REMINDERS_CLAIMS_PER_RUN", "0", "REMINDERS_CLAIMS_PER_RUN must be at least 1, not 0"),
        ("REMINDERS_MAX_IN_FLIGHT", "-5", "REMINDERS_MAX_IN_FLIGHT must be at least 1, not -5"),
        ("REMINDERS_MAX_IN_FLIGHT", "1.5", "REMINDERS_MAX_IN_FLIGHT must be a whole number"),
    ],
)
def test_a_bad_value_is_a_clear_start_up_error(name, value, message):
    result = settings_value("1", **{**PRODUCTION_ENV, name: value})

    assert result.returncode != 0
    assert message in result.stderr


def test_the_claims_limits_are_read_from_the_environment():
    result = settings_value(
        "[settings.REMINDERS_CLAIMS_PER_RUN, settings.REMINDERS_MAX_IN_FLIGHT]",
        **{**PRODUCTION_ENV, "REMINDERS_CLAIMS_PER_RUN": "3", "REMINDERS_MAX_IN_FLIGHT": "250"},
    )

    assert result.stdout.strip() == "[3, 250]", result.stderr
