"""Settings from the environment: production guards and clear errors for bad values."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_settings(**env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")} | env
    environment["DJANGO_SETTINGS_MODULE"] = "config.settings"
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('ok')"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_defaults_load_on_a_local_run():
    # With nothing set at all the settings refuse to start (no secret key): tests/ops/test_production_settings.py.
    assert load_settings(DJANGO_LOCAL="1").stdout.strip() == "ok"
    assert load_settings(DJANGO_DEBUG="1").stdout.strip() == "ok"


def test_a_missing_secret_key_is_an_error_when_required():
    result = load_settings(DJANGO_REQUIRE_SECRET_KEY="1")

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set in production" in result.stderr
    assert load_settings(DJANGO_REQUIRE_SECRET_KEY="1", DJANGO_SECRET_KEY="s3cret").stdout.strip() == "ok"


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_a_boolean_setting_refuses_what_it_cannot_read(value):
    result = load_settings(DJANGO_DEBUG=value)

    assert result.returncode != 0
    assert "DJANGO_DEBUG must be a boolean" in result.stderr


def database_options(**env) -> str:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))} | env
    environment |= {"DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_LOCAL": "1"}
    code = "from django.conf import settings; d = settings.DATABASES['default']; print(sorted(d.get('OPTIONS', {}).items()))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


POSTGRES = "postgres://postgres@127.0.0.1:5432/anything"


def test_postgresql_prepares_its_statements_unless_behind_pgbouncer_or_told_not_to():
    prepared = "('prepare_threshold', 2), ('server_side_binding', True)"
    assert prepared in database_options(DATABASE_URL=POSTGRES)
    assert "prepare" not in database_options(DATABASE_URL=POSTGRES, DATABASE_PGBOUNCER="1")
    assert "prepare" not in database_options(DATABASE_URL=POSTGRES, DATABASE_PREPARED="0")
    # PgBouncer 1.21+ with max_prepared_statements: asked for explicitly.
    assert prepared in database_options(DATABASE_URL=POSTGRES, DATABASE_PGBOUNCER="1", DATABASE_PREPARED="1")
    assert "prepare" not in database_options()  # SQLite has no such thing


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_test_connections_commit_without_waiting_for_the_disk_and_production_does():
    """config/testing.py: the suite's own PostgreSQL connections run with synchronous_commit off; config.settings
    (production, and the servers and workers tests start) sets no such option."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "off"
    assert "synchronous_commit" not in database_options(DATABASE_URL=POSTGRES)


def test_the_test_clients_find_static_files_when_asked_instead_of_listing_them_all_at_start(client):
    """config/testing.py: WhiteNoise looks a static file up when it is asked for (WHITENOISE_AUTOREFRESH), so a
    test client's middleware lists none at start; a file is still served, with its type, and an unknown one is not
    (production, config.settings, lists them once a process: its middleware is built once)."""
    from whitenoise.middleware import WhiteNoiseMiddleware

    assert WhiteNoiseMiddleware(get_response=lambda request: None).files == {}
    response = client.get("/static/frontdesk/frontdesk.css")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/css")
    assert b"".join(response.streaming_content)
    assert client.get("/static/frontdesk/no-such-file.css").status_code == 404
