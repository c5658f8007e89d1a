"""Shared fixtures: default data, factories' clock, and detection of real services.

A test that needs PostgreSQL or Redis is skipped (with its reason shown) when
the service is missing, unless REQUIRE_SERVICES=1 is set, as CI sets it: then
a missing service fails the test instead.
"""

import os
import secrets
import socket
from datetime import UTC, datetime

import pytest
from django.db import connection

from scheduler.models import ConfigVersion
from tests import shipped

# The helper modules shared by test modules assert as the test modules they came from did: rewrite their asserts as
# pytest does a test module's (tests/qa/__init__.py does the same for tests/qa/helpers.py).
pytest.register_assert_rewrite(
    "tests.helpers",
    "tests.api.helpers",
    "tests.frontdesk.helpers",
    "tests.plans.helpers",
    "tests.reminders.helpers",
    "tests.scheduler.helpers",
)

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def _missing(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


def redis_url() -> str:
    return os.environ.get("REDIS_URL") or os.environ.get("CELERY_BROKER_URL") or "redis://127.0.0.1:6379/0"


def redis_available() -> bool:
    from urllib.parse import urlparse

    url = urlparse(redis_url())
    try:
        with socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _service_markers(request):
    if request.node.get_closest_marker("postgres") and connection.vendor != "postgresql":
        _missing(f"this test needs PostgreSQL (DATABASE_URL), the database is {connection.vendor}")
    if request.node.get_closest_marker("redis") and not redis_available():
        _missing(f"this test needs Redis at {redis_url()}")


@pytest.fixture(autouse=True)
def _fresh_cache(settings, request):
    """Each test gets an empty local cache: throttle and sign-in counters never leak between
    tests or runs, and time travel moves their expiry (a Redis TTL would not move)."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": request.node.nodeid}
    }


@pytest.fixture(autouse=True)
def _live_server_answers_before_the_flush(request):
    """A test that uses the live server ends only when the server has answered every request it was sent: the
    database is flushed after this teardown (its transactional_db is set up before it), and a request still reading
    inside its transaction would deadlock the flush (tests/browser.RequestsInFlight)."""
    if "live_server" not in request.fixturenames:
        yield
        return
    from tests.browser import RequestsInFlight

    request.getfixturevalue("_live_server_helper")
    requests = RequestsInFlight.around(request.getfixturevalue("live_server"))
    yield
    assert requests.wait_idle(timeout=60), f"the live server still answers {requests.busy} request(s) after a minute"


@pytest.fixture
def catalogue(db):
    """The shipped catalogue and default rules, as setup_demo loads them. The configuration version's row first: a
    transactional test before this one flushed the database, the row with it, and without it nothing is cached
    (scheduler.versioned), so a test counting statements would count the copies' loads (a fresh random value: a
    copy this process made of another test's data must not be taken as this one's)."""
    ConfigVersion.objects.get_or_create(id=1, defaults={"value": secrets.randbits(60)})
    shipped.catalogue()  # catalogue_load's and rules_load's rows (their checks run once a process: tests/shipped.py)


# The one test clock: Monday 2 March 2026, 09:00 in London (GMT, so also UTC). Every suite reads it.
CLOCK = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def now() -> datetime:
    """A fixed 'now' for services that take time as an argument."""
    return CLOCK


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium for the browser tests (tests/browser.py)."""
    from pathlib import Path

    from tests.browser import CHROMIUM, CHROMIUM_ARGS, SHOTS

    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
        if REQUIRE_SERVICES:
            pytest.fail(f"REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
