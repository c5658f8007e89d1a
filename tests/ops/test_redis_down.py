"""Redis down is not the service down: the API, front-desk sign-in and setup_demo go on, counting in memory.

Each test points the default cache, configured exactly as settings configure it
for REDIS_URL, at a closed port on 127.0.0.1: a real refused connection.
"""

import socket
from datetime import UTC, datetime

import pytest
import time_machine
from django.core.management import call_command
from django.test import Client

from clinic.models import StaffRole
from config.settings import cache_settings
from tests.api.conftest import http, new_api_client
from tests.factories import ClinicFactory
from tests.frontdesk.conftest import PASSWORD, make_staff

pytestmark = pytest.mark.django_db


def closed_port() -> int:
    """A port nothing listens on: bound for a moment, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def redis_down(settings):
    port = closed_port()
    settings.CACHES = cache_settings(f"redis://127.0.0.1:{port}/0")
    return port


@pytest.fixture
def clinic(db):
    return ClinicFactory(code="london", name="London Clinic", timezone="Europe/London")


def test_the_settings_cache_for_redis_url_fails_open(redis_down, settings):
    assert settings.CACHES["default"]["BACKEND"] == "config.cache.FailOpenRedisCache"


def test_api_requests_are_served_and_still_throttled_in_memory(redis_down, clinic, settings, caplog):
    settings.API_THROTTLE_RATE = "3/min"
    api = http(new_api_client(clinic)[1])

    # The throttle's window is the wall clock's minute: stood still, the four requests cannot straddle its turn
    # (counted in two windows, the fourth would be a 200).
    with time_machine.travel(datetime.now(UTC), tick=False):
        answers = [api.get("/api/v1/procedures/").status_code for _ in range(4)]

    assert answers == [200, 200, 200, 429]
    # Logged once per outage (here already while the fixtures loaded the catalogue), not once per request.
    logged = [
        r.getMessage() for when in ("setup", "call") for r in caplog.get_records(when) if r.name == "config.cache"
    ]
    assert len(logged) == 1
    assert logged[0].startswith(f"Redis cache at redis://127.0.0.1:{redis_down}/0 is unreachable")


def test_front_desk_sign_in_works_and_failures_still_lock(redis_down, clinic, settings):
    settings.FRONTDESK_LOGIN_MAX_FAILURES = 2
    make_staff(clinic, StaffRole.RECEPTIONIST, "reception")

    signed_in = Client().post("/login/", {"username": "reception", "password": PASSWORD})
    assert signed_in.status_code == 302

    guesser = Client()
    for _ in range(2):
        assert guesser.post("/login/", {"username": "reception", "password": "wrong"}).status_code == 200
    assert guesser.post("/login/", {"username": "reception", "password": PASSWORD}).status_code == 429


def test_setup_demo_runs(redis_down, capsys):
    # Loading the catalogue clears the cached SMS term list: a cache call that used to crash the command.
    call_command("setup_demo", "--staff-password", "pw-for-tests")

    assert "Demo clinics: demo" in capsys.readouterr().out
    assert Client().post("/login/", {"username": "reception", "password": "pw-for-tests"}).status_code == 302


@pytest.mark.redis
def test_a_live_redis_is_shared_and_used_again_once_it_answers(settings, monkeypatch, caplog):
    from django.core.cache import cache
    from django.core.cache.backends.redis import RedisCacheClient
    from redis.exceptions import ConnectionError as RedisConnectionError

    from config import cache as fail_open
    from tests.conftest import redis_url

    settings.CACHES = cache_settings(redis_url())
    settings.CACHES["default"]["KEY_PREFIX"] = f"ops-test-{closed_port()}"
    monkeypatch.setattr(fail_open, "RETRY_SECONDS", 0.0)
    cache.set("counter", 1)
    assert cache._cache.get_client().exists(cache.make_key("counter"))  # really in Redis

    real_get_client = RedisCacheClient.get_client

    def refused(self, *args, **kwargs):
        raise RedisConnectionError("Connection refused (simulated)")

    monkeypatch.setattr(RedisCacheClient, "get_client", refused)
    assert cache.get("counter") is None  # memory knows nothing of it, and says so instead of failing
    cache.set("counter", 99)

    monkeypatch.setattr(RedisCacheClient, "get_client", real_get_client)
    assert cache.get("counter") == 1  # Redis again, with what it held
    assert "answers again" in caplog.text
    cache.delete("counter")
