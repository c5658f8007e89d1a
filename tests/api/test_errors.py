"""Every failure is an RFC 9457 problem document: malformed bodies, sizes, methods, URLs, crashes, throttling."""

import json
from datetime import UTC, datetime

import pytest
import time_machine
from django.test import Client, override_settings

from tests.api.conftest import new_api_client, problem_of

pytestmark = pytest.mark.django_db


def raw_post(api, path, body: bytes | str, content_type="application/json"):
    return api.generic("POST", path, body, content_type=content_type)


def test_malformed_json_is_400(api, patient):
    body = problem_of(raw_post(api, "/api/v1/appointments/", '{"patient": '), 400)
    assert body["code"] == "malformed_request" and "not valid JSON" in body["detail"]


def test_nan_is_not_json(api):
    problem_of(raw_post(api, "/api/v1/appointments/", '{"patient": NaN}'), 400)


def test_deeply_nested_json_is_400_not_500(api):
    problem_of(raw_post(api, "/api/v1/appointments/", "[" * 5000 + "]" * 5000), 400)


def test_non_utf8_body_is_400(api):
    problem_of(raw_post(api, "/api/v1/appointments/", b'{"patient": "\xff"}'), 400)


def test_empty_body_is_400_listing_required_fields(api):
    body = problem_of(raw_post(api, "/api/v1/appointments/", b""), 400)
    assert set(body["errors"]) == {"patient", "procedure", "start"}


def test_json_that_is_not_an_object_is_400(api):
    body = problem_of(raw_post(api, "/api/v1/appointments/", "[1, 2]"), 400)
    assert body["errors"]["non_field_errors"]


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024)
def test_huge_body_is_413(api):
    body = problem_of(raw_post(api, "/api/v1/patients/", json.dumps({"first_name": "x" * 5000})), 413)
    assert body["code"] == "payload_too_large"


def test_form_encoded_body_is_415(api):
    body = problem_of(raw_post(api, "/api/v1/patients/", "first_name=A", "application/x-www-form-urlencoded"), 415)
    assert body["code"] == "unsupported_media_type"


def test_method_not_allowed_is_405_with_allow(api):
    response = api.delete("/api/v1/clinics/")
    problem_of(response, 405)
    assert response["Allow"] == "GET, HEAD"
    problem_of(api.options("/api/v1/clinics/"), 405)
    problem_of(api.put("/api/v1/appointments/", {}, format="json"), 405)


def test_unknown_api_url_is_a_problem_404(api):
    body = problem_of(api.get("/api/v1/does-not-exist/"), 404)
    assert body["instance"] == "/api/v1/does-not-exist/"
    problem_of(api.get("/api/v1/patients"), 404)  # no slash: no HTML redirect page either


@override_settings(DEBUG=False)
def test_unknown_url_under_api_outside_v1_is_a_problem_404(api):
    problem_of(Client().get("/api/v2/clinics/"), 404)


def test_unexpected_error_is_a_problem_500_without_internals(api, monkeypatch):
    from api import views

    def explode(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(views.ClinicListApi, "get_queryset", explode)
    response = api.get("/api/v1/clinics/")
    body = problem_of(response, 500)
    assert "secret" not in response.content.decode()
    assert body["code"] == "server_error"


def test_django_level_500_under_api_is_a_problem(rf):
    from api.problems import server_error

    response = server_error(rf.get("/api/v1/clinics/"))
    assert response.status_code == 500 and response["Content-Type"] == "application/problem+json"
    assert json.loads(response.content)["code"] == "server_error"


@override_settings(API_THROTTLE_RATE="3/min")
def test_throttled_is_429_with_retry_after(clinic):
    from tests.api.conftest import http

    client, key = new_api_client(clinic)
    api = http(key)
    assert [api.get("/api/v1/clinics/").status_code for _ in range(3)] == [200, 200, 200]
    response = api.get("/api/v1/clinics/")
    body = problem_of(response, 429)
    assert 1 <= int(response["Retry-After"]) <= 60
    assert body["retry_after"] == int(response["Retry-After"])
    # Counted per client: another platform is not slowed down by this one.
    assert http(new_api_client(clinic)[1]).get("/api/v1/clinics/").status_code == 200


@override_settings(API_THROTTLE_RATE="2/min")
def test_throttle_per_staff_user(clinic, receptionist):
    from tests.api.conftest import session

    client = session(receptionist)
    # A minute no other test uses: user ids (unlike API client ids) can repeat between tests on SQLite,
    # and the counters live in the cache, which tests share. Within the staff session's 10 hours.
    with time_machine.travel(datetime(2026, 3, 2, 13, 7, tzinfo=UTC), tick=False):
        assert [client.get("/api/v1/clinics/").status_code for _ in range(3)] == [200, 200, 429]


def test_problem_mapping_of_odd_validation_errors():
    """Shapes DRF can raise that no view produces today still map to a 400 with `errors`."""
    from rest_framework.exceptions import ValidationError

    from api.problems import exception_handler

    for detail in ({}, [], "plain", ["a", "b"], {"lines": [{}, {"x": ["bad"]}]}):
        response = exception_handler(ValidationError(detail), {"request": None})
        assert response.status_code == 400 and response.data["errors"], detail
    nested = exception_handler(ValidationError({"lines": [{}, {"x": ["bad"]}]}), {"request": None})
    assert nested.data["errors"] == {"lines.1.x": ["bad"]}


@pytest.mark.redis
@override_settings(API_THROTTLE_RATE="2/min")
def test_throttle_counts_in_the_real_redis_cache(clinic, settings):
    """Production counts in Redis (shared by every gunicorn worker); the limit holds there too."""
    import uuid

    from tests.api.conftest import http
    from tests.conftest import redis_url

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url(),
            "KEY_PREFIX": f"test-{uuid.uuid4()}",
        }
    }
    api = http(new_api_client(clinic)[1])

    statuses = [api.get("/api/v1/clinics/").status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
