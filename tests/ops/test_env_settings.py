"""Numbers and times from the environment are checked at start.

A value the service cannot use stops it at start with a message naming the variable, instead of a
ValueError that names nothing, a dispatcher that silently claims nothing (a batch of 0), a beat with no
pause between runs (an interval of 0), an availability search that never moves on (a slot step of 0) or a
booking that fails when its reminders are planned (quiet hours of '9pm'). The settings module is run
afresh in this process (runpy) with the variable set; the settings Django uses are not touched.
"""

import runpy
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import env_clock, env_count, env_seconds
from core.rates import parse_rate

SETTINGS = Path(__file__).resolve().parents[2] / "config" / "settings.py"


def load(monkeypatch, **env: str) -> dict:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS))


# Variables read only in some configurations: the Redis cache's timeout with Redis, HSTS with HTTPS on.
READ_ONLY_WITH = {
    "CACHE_REDIS_TIMEOUT_SECONDS": {"REDIS_URL": "redis://127.0.0.1:6379/0"},
    "DJANGO_HSTS_SECONDS": {"DJANGO_SECURE": "1"},
}


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("DATABASE_CONN_MAX_AGE", "-1", "DATABASE_CONN_MAX_AGE must be at least 0, not -1"),
        ("DATABASE_CONN_MAX_AGE", "a minute", "DATABASE_CONN_MAX_AGE must be a whole number, not 'a minute'"),
        ("FRONTDESK_LOGIN_MAX_FAILURES", "0", "FRONTDESK_LOGIN_MAX_FAILURES must be at least 1, not 0"),
        ("FRONTDESK_LOGIN_MAX_FAILURES_PER_IP", "3.5", "FRONTDESK_LOGIN_MAX_FAILURES_PER_IP must be a whole number"),
        ("FRONTDESK_LOGIN_WINDOW_SECONDS", "0", "FRONTDESK_LOGIN_WINDOW_SECONDS must be at least 1, not 0"),
        ("CELERY_DB_REUSE_MAX", "-1", "CELERY_DB_REUSE_MAX must be at least 0, not -1"),
        ("DATA_UPLOAD_MAX_MEMORY_SIZE", "256k", "DATA_UPLOAD_MAX_MEMORY_SIZE must be a whole number, not '256k'"),
        ("BOOKING_SLOT_STEP_MINUTES", "0", "BOOKING_SLOT_STEP_MINUTES must be at least 1, not 0"),
        ("BOOKING_SLOT_STEP_MINUTES", "1441", "BOOKING_SLOT_STEP_MINUTES must be at most 1440, not 1441"),
        ("EMAIL_PORT", "65536", "EMAIL_PORT must be at most 65535, not 65536"),
        ("EMAIL_PORT", "-25", "EMAIL_PORT must be at least 0, not -25"),
        ("CACHE_REDIS_TIMEOUT_SECONDS", "0", "CACHE_REDIS_TIMEOUT_SECONDS must be a number of seconds above 0"),
        ("CACHE_REDIS_TIMEOUT_SECONDS", "nan", "CACHE_REDIS_TIMEOUT_SECONDS must be a number of seconds above 0"),
        ("DJANGO_SESSION_HOURS", "inf", "DJANGO_SESSION_HOURS must be a number of hours above 0, not 'inf'"),
        ("DJANGO_SESSION_HOURS", "0", "DJANGO_SESSION_HOURS must be a number of hours above 0, not '0'"),
        ("DJANGO_HSTS_SECONDS", "nan", "DJANGO_HSTS_SECONDS must be a whole number, not 'nan'"),
        ("EMAIL_PORT", "smtp", "EMAIL_PORT must be a whole number, not 'smtp'"),
        ("REMINDERS_SMS_QUIET_START", "9pm", "REMINDERS_SMS_QUIET_START must be a time of day as HH:MM"),
        ("REMINDERS_SMS_QUIET_END", "24:00", "REMINDERS_SMS_QUIET_END must be a time of day as HH:MM"),
        ("REMINDERS_SMS_QUIET_END", "08:00+01:00", "REMINDERS_SMS_QUIET_END is a local time of the clinic's zone"),
        ("REMINDERS_CHANGE_GRACE_MINUTES", "-5", "REMINDERS_CHANGE_GRACE_MINUTES must be at least 0, not -5"),
        ("REMINDERS_MERGE_MINUTES", "ten", "REMINDERS_MERGE_MINUTES must be a whole number, not 'ten'"),
        ("REMINDERS_MAX_ATTEMPTS", "0", "REMINDERS_MAX_ATTEMPTS must be at least 1, not 0"),
        ("REMINDERS_RETRY_BASE_SECONDS", "0", "REMINDERS_RETRY_BASE_SECONDS must be at least 1, not 0"),
        ("REMINDERS_RETRY_MAX_SECONDS", "1h", "REMINDERS_RETRY_MAX_SECONDS must be a whole number, not '1h'"),
        ("REMINDERS_CLAIM_LEASE_SECONDS", "0", "REMINDERS_CLAIM_LEASE_SECONDS must be at least 1, not 0"),
        ("REMINDERS_SEND_TIMEOUT_SECONDS", "-10", "REMINDERS_SEND_TIMEOUT_SECONDS must be at least 1, not -10"),
        ("REMINDERS_BATCH_SIZE", "0", "REMINDERS_BATCH_SIZE must be at least 1, not 0"),
        ("REMINDERS_SEND_BATCH_SIZE", "0", "REMINDERS_SEND_BATCH_SIZE must be at least 1, not 0"),
        (
            "REMINDERS_DISPATCH_INTERVAL_SECONDS",
            "0",
            "REMINDERS_DISPATCH_INTERVAL_SECONDS must be a number of seconds above 0",
        ),
        (
            "REMINDERS_DISPATCH_INTERVAL_SECONDS",
            "inf",
            "REMINDERS_DISPATCH_INTERVAL_SECONDS must be a number of seconds above 0",
        ),
        (
            "REMINDERS_DISPATCH_INTERVAL_SECONDS",
            "often",
            "REMINDERS_DISPATCH_INTERVAL_SECONDS must be a number, not 'often'",
        ),
        ("CELERY_VISIBILITY_TIMEOUT", "0", "CELERY_VISIBILITY_TIMEOUT must be at least 1, not 0"),
        ("API_THROTTLE_RATE", "300 per minute", "API_THROTTLE_RATE must look like 300/min"),
        ("API_THROTTLE_RATE", "300/fortnight", "API_THROTTLE_RATE must look like 300/min"),
        ("API_THROTTLE_RATE", "0/min", "API_THROTTLE_RATE must allow at least 1 request, not '0/min'"),
    ],
)
def test_a_value_the_service_cannot_use_stops_it_at_start_naming_the_variable(monkeypatch, name, value, message):
    with pytest.raises(ImproperlyConfigured) as refused:
        load(monkeypatch, **READ_ONLY_WITH.get(name, {}), **{name: value})

    assert message in str(refused.value)


def test_good_values_are_read_zero_where_it_means_off(monkeypatch):
    loaded = load(
        monkeypatch,
        DATABASE_CONN_MAX_AGE="0",
        REMINDERS_MERGE_MINUTES="0",
        REMINDERS_CHANGE_GRACE_MINUTES="0",
        BOOKING_SLOT_STEP_MINUTES="1440",
        REMINDERS_DISPATCH_INTERVAL_SECONDS="0.2",
        REMINDERS_SMS_QUIET_START="20:30",
        REMINDERS_SMS_QUIET_END="07:45",
        CELERY_VISIBILITY_TIMEOUT="600",
        API_THROTTLE_RATE="50/hour",
        CELERY_DB_REUSE_MAX="0",
        EMAIL_PORT="0",
        CACHE_REDIS_TIMEOUT_SECONDS="0.25",
        REDIS_URL="redis://127.0.0.1:6379/0",
        DJANGO_SESSION_HOURS="8.5",
        DJANGO_HSTS_SECONDS="0",
    )

    assert loaded["REMINDERS_MERGE_MINUTES"] == 0
    assert loaded["REMINDERS_CHANGE_GRACE_MINUTES"] == 0
    assert loaded["BOOKING_SLOT_STEP_MINUTES"] == 1440
    assert loaded["REMINDERS_DISPATCH_INTERVAL_SECONDS"] == 0.2
    assert loaded["CELERY_BEAT_SCHEDULE"]["reminders-dispatch-due"]["schedule"] == 0.2
    assert loaded["REMINDERS_SMS_QUIET_HOURS"] == ("20:30", "07:45")
    assert loaded["CELERY_BROKER_TRANSPORT_OPTIONS"] == {"visibility_timeout": 600}
    assert loaded["API_THROTTLE_RATE"] == "50/hour"
    assert loaded["CELERY_DB_REUSE_MAX"] == 0  # Celery's own default: a connection per task
    assert loaded["EMAIL_PORT"] == 0  # smtplib's default port
    assert loaded["CACHES"]["default"]["OPTIONS"]["socket_timeout"] == 0.25
    assert loaded["SESSION_COOKIE_AGE"] == 30600
    if loaded["DATABASES"]["default"]["ENGINE"].endswith("postgresql"):  # SQLite's connections never persist
        assert loaded["DATABASES"]["default"]["CONN_MAX_AGE"] == 0


def test_unset_or_empty_is_the_default(monkeypatch):
    monkeypatch.delenv("REMINDERS_BATCH_SIZE", raising=False)
    monkeypatch.setenv("REMINDERS_SEND_BATCH_SIZE", "")
    monkeypatch.delenv("REMINDERS_SMS_QUIET_START", raising=False)
    monkeypatch.setenv("REMINDERS_SMS_QUIET_END", "")

    assert env_count("REMINDERS_BATCH_SIZE", 100) == 100
    assert env_count("REMINDERS_SEND_BATCH_SIZE", 20) == 20
    assert env_clock("REMINDERS_SMS_QUIET_START", "21:00") == "21:00"
    assert env_clock("REMINDERS_SMS_QUIET_END", "08:00") == "08:00"


@pytest.mark.parametrize("value, expected", [("1", 1), ("0.25", 0.25), ("3600", 3600.0)])
def test_a_period_above_zero_is_read(monkeypatch, value, expected):
    monkeypatch.setenv("SOME_INTERVAL", value)

    assert env_seconds("SOME_INTERVAL", 1) == expected


@pytest.mark.parametrize("value", ["0", "-1", "nan", "-inf", "inf"])
def test_a_period_of_zero_or_less_or_not_finite_is_refused(monkeypatch, value):
    monkeypatch.setenv("SOME_INTERVAL", value)

    with pytest.raises(ImproperlyConfigured, match="SOME_INTERVAL must be a number of seconds above 0"):
        env_seconds("SOME_INTERVAL", 1)


@pytest.mark.parametrize(
    "value, minimum, maximum, ok", [("0", 0, None, True), ("0", 1, None, False), ("7", 1, 7, True), ("8", 1, 7, False)]
)
def test_a_count_keeps_to_its_bounds(monkeypatch, value, minimum, maximum, ok):
    monkeypatch.setenv("SOME_COUNT", value)

    if ok:
        assert env_count("SOME_COUNT", 5, minimum=minimum, maximum=maximum) == int(value)
    else:
        with pytest.raises(ImproperlyConfigured, match="SOME_COUNT must be at"):
            env_count("SOME_COUNT", 5, minimum=minimum, maximum=maximum)


@pytest.mark.parametrize(
    "rate, expected", [("300/min", (300, 60)), ("5/s", (5, 1)), ("1000/Hour", (1000, 3600)), ("2/ day", (2, 86400))]
)
def test_a_rate_is_requests_per_period(rate, expected):
    assert parse_rate(rate) == expected


@pytest.mark.parametrize("rate", ["300", "300/min/x", "-1/min", "0/s", "a/min", "", None])
def test_a_rate_that_allows_nothing_or_does_not_parse_is_refused(rate):
    with pytest.raises(ImproperlyConfigured, match="API_THROTTLE_RATE must"):
        parse_rate(rate)


def run_gunicorn_settings(monkeypatch, **env: str) -> dict:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS.parent / "gunicorn.py"))


def test_gunicorn_reads_its_numbers_zero_where_it_means_off(monkeypatch):
    loaded = run_gunicorn_settings(monkeypatch, WEB_CONCURRENCY="5", GUNICORN_MAX_REQUESTS="0", GUNICORN_TIMEOUT="0")

    assert (loaded["workers"], loaded["max_requests"], loaded["timeout"]) == (5, 0, 0)


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY must be at least 1, not 0"),
        ("GUNICORN_BACKLOG", "big", "GUNICORN_BACKLOG must be a whole number, not 'big'"),
        ("GUNICORN_TIMEOUT", "-1", "GUNICORN_TIMEOUT must be at least 0, not -1"),
    ],
)
def test_gunicorn_refuses_a_number_it_cannot_use(monkeypatch, name, value, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        run_gunicorn_settings(monkeypatch, **{name: value})


@pytest.mark.parametrize(
    "level, root, django",
    [
        ("", "INFO", "INFO"),
        ("warning", "WARNING", "WARNING"),
        ("ERROR", "ERROR", "ERROR"),
        ("DEBUG", "DEBUG", "INFO"),  # Django's SQL lines (their parameters a patient's data) stay out
        ("NOTSET", "NOTSET", "INFO"),
    ],
)
def test_djangos_own_lines_follow_log_level_but_never_below_info(monkeypatch, level, root, django):
    logging = load(monkeypatch, LOG_LEVEL=level)["LOGGING"]
    assert logging["root"]["level"] == root
    assert logging["loggers"]["django"]["level"] == django
    assert logging["loggers"]["django.server"]["level"] == django
