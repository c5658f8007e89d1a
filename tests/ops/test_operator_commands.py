"""What an operator runs: settings the commands read at start, create_api_client's name, setup_demo's password.

Settings are run afresh in this process (runpy) with the variable set, as in test_env_settings; the
settings Django uses are not touched.
"""

import runpy
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from clinic.models import ApiClient
from config.env import env_database, env_log_level
from scheduler import defaults
from tests.factories import ClinicFactory

SETTINGS = Path(__file__).resolve().parents[2] / "config" / "settings.py"


def load(monkeypatch, **env: str) -> dict:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS))


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


# --- settings ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, message",
    [
        ("nonsense", "DATABASE_URL must be a database URL such as postgres://"),
        ("postgress://u:pw@db/clinic", "its scheme postgress:// is not one Django can use"),
        ("postgres://u:s3cret@db:port/clinic", "DATABASE_URL is not a URL that parses"),
    ],
)
def test_a_database_url_that_does_not_parse_is_refused_without_echoing_it(monkeypatch, url, message):
    monkeypatch.setenv("DATABASE_URL", url)

    with pytest.raises(ImproperlyConfigured) as refused:
        env_database("DATABASE_URL", "sqlite:///unused.sqlite3")

    assert message in str(refused.value)
    assert "s3cret" not in str(refused.value) and "pw@" not in str(refused.value)


def test_a_database_url_that_parses_is_djangos_database_entry(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://clinic:pw@db.internal:6432/clinic")

    entry = env_database("DATABASE_URL", "sqlite:///unused.sqlite3", conn_max_age=30)

    assert entry["ENGINE"] == "django.db.backends.postgresql"
    assert (entry["HOST"], entry["PORT"], entry["NAME"], entry["CONN_MAX_AGE"]) == ("db.internal", 6432, "clinic", 30)


@pytest.mark.parametrize("value, expected", [("debug", "DEBUG"), (" Warning ", "WARNING"), ("", "INFO")])
def test_a_log_level_is_read_in_any_case(monkeypatch, value, expected):
    monkeypatch.setenv("LOG_LEVEL", value)

    assert env_log_level("LOG_LEVEL", "INFO") == expected


@pytest.mark.parametrize("value", ["LOUD", "10", "verbose"])
def test_a_log_level_logging_does_not_know_is_refused(monkeypatch, value):
    monkeypatch.setenv("LOG_LEVEL", value)

    with pytest.raises(ImproperlyConfigured) as refused:
        env_log_level("LOG_LEVEL", "INFO")

    assert str(refused.value) == f"LOG_LEVEL must be one of CRITICAL, ERROR, WARNING, INFO, DEBUG, not {value!r}"


@pytest.mark.parametrize("lease, timeout", [("10", "10"), ("5", "10")])
def test_a_claim_lease_not_above_the_send_timeout_stops_start_naming_both(monkeypatch, lease, timeout):
    with pytest.raises(ImproperlyConfigured) as refused:
        load(monkeypatch, REMINDERS_CLAIM_LEASE_SECONDS=lease, REMINDERS_SEND_TIMEOUT_SECONDS=timeout)

    assert str(refused.value).startswith(
        f"REMINDERS_CLAIM_LEASE_SECONDS ({lease}) must be above REMINDERS_SEND_TIMEOUT_SECONDS ({timeout})"
    )


def test_a_claim_lease_above_the_send_timeout_starts(monkeypatch):
    loaded = load(
        monkeypatch, REMINDERS_CLAIM_LEASE_SECONDS="11", REMINDERS_SEND_TIMEOUT_SECONDS="10", LOG_LEVEL="debug"
    )

    assert (loaded["REMINDERS_CLAIM_LEASE_SECONDS"], loaded["REMINDERS_SEND_TIMEOUT_SECONDS"]) == (11, 10)
    assert loaded["LOGGING"]["root"]["level"] == "DEBUG"


# --- create_api_client ---------------------------------------------------------------------------------------------


@pytest.fixture
def london(db):
    return ClinicFactory(code="london")


def test_create_api_client_stores_the_name_stripped_and_takes_one_as_long_as_the_column(london):
    run("create_api_client", "  Platform  ", "--clinic", "london")
    run("create_api_client", "x" * 200, "--clinic", "london")

    assert sorted(ApiClient.objects.values_list("name", flat=True)) == ["Platform", "x" * 200]


def test_create_api_client_refuses_a_blank_or_long_name_before_anything_else(london):
    with pytest.raises(CommandError) as blank:
        run("create_api_client", " ", "--clinic", "nope")  # the name is checked first
    with pytest.raises(CommandError) as long:
        run("create_api_client", "x" * 201, "--clinic", "london")

    assert str(blank.value) == "Give the API client a name (it is blank)."
    assert str(long.value) == "An API client's name has at most 200 characters; this one has 201."
    assert not ApiClient.objects.exists()


# --- setup_demo --staff-password -----------------------------------------------------------------------------------


def test_setup_demo_gives_the_demo_users_a_new_password_and_leaves_others_alone(db):
    users = get_user_model().objects
    run("setup_demo", "--staff-password", "first-pass-2026")
    demo = list(users.order_by("username").values_list("username", flat=True))
    # An operator's own superuser and a user of their own, and a demo user made a superuser: not demo users.
    users.create_superuser("admin", password="admin-pass-2026")
    users.create_user("someone", password="own-pass-2026")
    users.filter(username="orgadmin").update(is_superuser=True)
    disabled = users.get(username="clinician-ny")
    disabled.set_unusable_password()  # an administrator disabled its sign-in
    disabled.save()

    same = run("setup_demo", "--staff-password", "first-pass-2026")
    other = run("setup_demo", "--staff-password", "second-pass-2026")

    assert "password" not in same.lower()  # nothing changed: hashes (and sessions) kept
    changed = sorted(set(demo) - {"orgadmin", "clinician-ny"})
    assert f"Demo staff password changed to the one given for: {', '.join(changed)}.\n" in other
    assert all(users.get(username=name).check_password("second-pass-2026") for name in changed)
    assert users.get(username="orgadmin").check_password("first-pass-2026")
    assert not users.get(username="clinician-ny").has_usable_password()
    assert users.get(username="admin").check_password("admin-pass-2026")
    assert users.get(username="someone").check_password("own-pass-2026")


def test_setup_demo_without_a_password_or_demo_leaves_passwords_alone(db):
    run("setup_demo", "--staff-password", "first-pass-2026")

    plain = run("setup_demo")
    bare = run("setup_demo", "--no-demo")
    # A password with --no-demo is refused, not silently ignored (decided 7 December, dec12h): nothing changes.
    with pytest.raises(CommandError, match="give one or the other"):
        run("setup_demo", "--no-demo", "--staff-password", "second-pass-2026")

    assert "password" not in (plain + bare).lower()
    assert get_user_model().objects.get(username="reception").check_password("first-pass-2026")


def test_setup_demo_run_again_with_the_same_password_costs_one_hash_check(db, monkeypatch):
    run("setup_demo", "--staff-password", "first-pass-2026")
    calls = []
    for name in ("make_password", "check_password"):
        real = getattr(defaults, name)
        monkeypatch.setattr(
            defaults, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k)
        )

    run("setup_demo", "--staff-password", "first-pass-2026")

    # The ten demo users were made with one hash, so one check covers them all; nothing is hashed anew.
    assert calls == ["check_password"]
