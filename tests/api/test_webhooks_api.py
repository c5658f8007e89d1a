"""Webhook subscriptions over the API: own endpoints only, SSRF refused, rotation with an overlap,
deliveries with their response codes, redelivery, and every write path reaching a subscribed endpoint.

The clock is Monday 2 March 2026, 09:00 UTC (tests/api/conftest.py).
"""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse

from clinic import services as clinic_services
from clinic.models import Appointment
from reminders.channels import webhook_verify
from reminders.dispatch import dispatch_local
from reminders.models import OutboxMessage, WebhookEndpoint
from reminders.services import outbox_retry
from scheduler.lifecycle import Actor
from tests.api.conftest import http, new_api_client, problem_of, session
from tests.api.helpers import book
from tests.reminders.support import FakeHttpServer

pytestmark = pytest.mark.django_db

HOOK = "https://hooks.platform.example/clinic"


@pytest.fixture
def public_dns(monkeypatch):
    """Hosts resolve to a public address, without asking a resolver."""
    from reminders import channels

    monkeypatch.setattr(channels.socket, "getaddrinfo", lambda host, port: [(2, 1, 6, "", ("93.184.215.14", 0))])


@pytest.fixture
def production_urls(settings, public_dns):
    settings.WEBHOOKS_ALLOW_HTTP = False
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = False


@pytest.fixture
def platform(clinic):
    return new_api_client(clinic, name="platform")


def register(api, url=HOOK, **extra):
    return api.post("/api/v1/webhooks/", {"url": url, **extra}, format="json")


def test_a_client_registers_lists_changes_pauses_and_deletes_its_endpoint(platform, production_urls):
    api = http(platform[1])
    created = register(api, events=["appointment.created", "appointment.cancelled"], description="main")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["active"] is True
    assert created["Location"] == f"/api/v1/webhooks/{body['id']}/"
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.client == platform[0] and endpoint.secret == body["secret"]

    listed = api.get("/api/v1/webhooks/").json()
    assert listed["count"] == 1 and "secret" not in listed["results"][0]
    assert listed["results"][0]["events"] == ["appointment.created", "appointment.cancelled"]

    changed = api.patch(f"/api/v1/webhooks/{body['id']}/", {"url": HOOK + "/v2", "events": []}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["url"] == HOOK + "/v2" and changed.json()["events"] == []
    paused = api.patch(f"/api/v1/webhooks/{body['id']}/", {"active": False}, format="json")
    assert paused.json()["active"] is False and not WebhookEndpoint.objects.get().is_active

    assert api.delete(f"/api/v1/webhooks/{body['id']}/").status_code == 204
    assert not WebhookEndpoint.objects.exists()
    assert problem_of(api.get(f"/api/v1/webhooks/{body['id']}/"), 404)["code"] == "unknown_webhook_endpoint"


def test_another_clients_endpoints_are_not_found(platform, clinic, production_urls):
    endpoint_id = register(http(platform[1])).json()["id"]
    other = http(new_api_client(clinic, name="other")[1])
    assert other.get("/api/v1/webhooks/").json()["count"] == 0
    for call in (other.get, other.delete):
        assert problem_of(call(f"/api/v1/webhooks/{endpoint_id}/"), 404)["code"] == "unknown_webhook_endpoint"
    assert problem_of(other.patch(f"/api/v1/webhooks/{endpoint_id}/", {"active": False}, format="json"), 404)
    assert problem_of(other.post(f"/api/v1/webhooks/{endpoint_id}/rotate-secret/", {}, format="json"), 404)
    assert problem_of(other.get(f"/api/v1/webhooks/{endpoint_id}/deliveries/"), 404)
    assert WebhookEndpoint.objects.get().is_active


def test_staff_users_have_no_endpoints(clinician):
    assert problem_of(session(clinician).get("/api/v1/webhooks/"), 403)["code"] == "permission_denied"
    assert problem_of(http().get("/api/v1/webhooks/"), 401)


def test_an_event_named_twice_counts_once_on_registering_and_on_changing(platform, production_urls):
    """A set of events: named twice (a review, 5 December 2026, found it stored as sent), it is kept once, in the
    order first given (a schema-valid list is not refused)."""
    api = http(platform[1])
    twice = ["appointment.created", "appointment.cancelled", "appointment.created"]
    created = register(api, events=twice)
    assert created.status_code == 201, created.content
    assert created.json()["events"] == ["appointment.created", "appointment.cancelled"]
    hook = created.json()["id"]
    changed = api.patch(f"/api/v1/webhooks/{hook}/", {"events": ["appointment.no_show"] * 2}, format="json")
    assert changed.status_code == 200, changed.content
    assert WebhookEndpoint.objects.get().events == ["appointment.no_show"]


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://hooks.platform.example/x", "Give an absolute https:// URL."),
        ("not a url", "Give an absolute https:// URL."),
        ("http://hooks.platform.example/x", "Webhook URLs must use https://."),
        ("https://127.0.0.1/x", "Webhook URLs may not point at private, loopback or link-local addresses."),
        ("https://10.1.2.3/x", "Webhook URLs may not point at private, loopback or link-local addresses."),
        (
            "https://169.254.169.254/latest/meta-data",
            "Webhook URLs may not point at private, loopback or link-local addresses.",
        ),
        ("https://[::1]/x", "Webhook URLs may not point at private, loopback or link-local addresses."),
        ("https://localhost/x", "Webhook URLs may not point at private, loopback or link-local addresses."),
    ],
)
def test_urls_that_are_not_https_or_reach_inside_are_refused(platform, production_urls, monkeypatch, url, message):
    from reminders import channels

    # A name resolves: localhost to loopback (the test's resolver), anything else to the public address.
    monkeypatch.setattr(
        channels.socket,
        "getaddrinfo",
        lambda host, port: [(2, 1, 6, "", ("127.0.0.1" if host == "localhost" else "93.184.215.14", 0))],
    )
    body = problem_of(register(http(platform[1]), url), 400)
    # Not a URL at all is a shape problem (the schema's pattern); a URL that may not be used is the service's.
    shape = not url.startswith(("http://", "https://"))
    assert body["code"] == ("invalid_input" if shape else "invalid_webhook_endpoint")
    assert body["errors"] == {"url": [message]}
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("url", ["https://[/x", "https://a..b/x", "https://" + "a" * 70 + ".example/x"])
def test_hosts_that_are_not_host_names_are_refused_not_crashed_on(platform, settings, url):
    settings.WEBHOOKS_ALLOW_HTTP = False
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = False
    body = problem_of(register(http(platform[1]), url), 400)
    assert body["code"] == "invalid_webhook_endpoint" and body["errors"] == {"url": ["Give an absolute https:// URL."]}


def test_a_public_name_that_resolves_to_a_private_address_is_refused(platform, production_urls, monkeypatch):
    from reminders import channels

    monkeypatch.setattr(channels.socket, "getaddrinfo", lambda host, port: [(2, 1, 6, "", ("192.168.0.7", 0))])
    assert problem_of(register(http(platform[1])), 400)["errors"]["url"]
    monkeypatch.setattr(channels.socket, "getaddrinfo", lambda host, port: [(2, 1, 6, "", ("93.184.215.14", 0))])
    endpoint_id = register(http(platform[1])).json()["id"]
    monkeypatch.setattr(channels.socket, "getaddrinfo", lambda host, port: [(2, 1, 6, "", ("192.168.0.7", 0))])
    response = http(platform[1]).patch(f"/api/v1/webhooks/{endpoint_id}/", {"url": HOOK + "/x"}, format="json")
    assert problem_of(response, 400)["code"] == "invalid_webhook_endpoint"


def test_the_local_setting_allows_loopback(platform, settings):
    settings.WEBHOOKS_ALLOW_HTTP = True
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = True
    assert register(http(platform[1]), "http://127.0.0.1:9/hook").status_code == 201


def test_shape_problems(platform, production_urls):
    api = http(platform[1])
    assert problem_of(register(api, events=["appointment.exploded"]), 400)["errors"]["events.0"]
    assert problem_of(api.post("/api/v1/webhooks/", {}, format="json"), 400)["errors"]["url"]
    assert problem_of(register(api, secret="whsec_mine"), 400)["errors"] == {"secret": ["Unknown field."]}
    endpoint_id = register(api).json()["id"]
    for overlap in (-1, 7 * 24 * 60 + 1, "60", True):
        response = api.post(
            f"/api/v1/webhooks/{endpoint_id}/rotate-secret/", {"overlap_minutes": overlap}, format="json"
        )
        assert problem_of(response, 400)["errors"]["overlap_minutes"]


# --- Deliveries: signed with both secrets during a rotation, listed, redelivered -----------------------------


@pytest.fixture
def receiver(settings):
    settings.WEBHOOKS_ALLOW_HTTP = True
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = True  # the fake server listens on 127.0.0.1
    with FakeHttpServer() as server:
        yield server


def _now():
    return datetime.now(UTC)


def _header(request, name: str) -> str:
    return {k.lower(): v for k, v in request.headers.items()}[name]


def test_a_rotated_secret_keeps_signing_beside_the_new_one_for_the_overlap(platform, patient, practitioner, receiver):
    api = http(platform[1])
    created = register(api, receiver.url + "/hook").json()
    old_secret = created["secret"]
    rotated = api.post(f"/api/v1/webhooks/{created['id']}/rotate-secret/", {"overlap_minutes": 60}, format="json")
    assert rotated.status_code == 200, rotated.content
    new_secret = rotated.json()["secret"]
    assert new_secret != old_secret and rotated.json()["previous_secret_expires_at"]

    assert book(api, patient).status_code == 201
    now = _now()
    dispatch_local(now=now)
    [request] = receiver.requests
    assert len(_header(request, "webhook-signature").split(" ")) == 2
    for secret in (old_secret, new_secret):
        assert webhook_verify(secret=secret, headers=request.headers, body=request.body, now=now)

    # After the overlap, only the new secret signs.
    later = now + timedelta(minutes=61)
    appointment = Appointment.objects.get()
    assert api.post(f"/api/v1/appointments/{appointment.pk}/cancel/", {}, format="json").status_code == 200
    OutboxMessage.objects.filter(event="appointment.cancelled").update(due_at=later)
    dispatch_local(now=later)
    last = receiver.requests[-1]
    assert len(_header(last, "webhook-signature").split(" ")) == 1
    assert webhook_verify(secret=new_secret, headers=last.headers, body=last.body, now=later)
    assert not webhook_verify(secret=old_secret, headers=last.headers, body=last.body, now=later)


def test_a_rotation_without_overlap_stops_the_old_secret_at_once(platform, receiver):
    api = http(platform[1])
    created = register(api, receiver.url + "/hook").json()
    rotated = api.post(f"/api/v1/webhooks/{created['id']}/rotate-secret/", {"overlap_minutes": 0}, format="json")
    assert rotated.json()["previous_secret_expires_at"] is None
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.signing_secrets(_now()) == [rotated.json()["secret"]]


def test_deliveries_carry_event_id_and_sequence_and_are_listed_with_their_response_code(
    platform, patient, practitioner, receiver
):
    api = http(platform[1])
    endpoint_id = register(api, receiver.url + "/hook").json()["id"]
    booked = book(api, patient).json()
    receiver.script = [(200, b"ok")]
    dispatch_local(now=_now())
    # A message sent again in between is in the appointment's trail but is no change to it: not counted.
    failed = OutboxMessage.objects.create(
        appointment_id=booked["id"],
        kind="confirmation",
        channel="email",
        anchor_at=_now(),
        due_at=_now(),
        status="failed",
        created_at=_now(),
    )
    assert outbox_retry(message_ids=[failed.pk], now=_now(), actor=Actor("reception")) == 1
    assert Appointment.objects.get(pk=booked["id"]).audit_events.count() == 2
    moved = api.post(
        f"/api/v1/appointments/{booked['id']}/reschedule/", {"start": "2026-03-04T10:00:00+00:00"}, format="json"
    )
    assert moved.status_code == 201, moved.content
    receiver.script = [(410, b"gone")]
    dispatch_local(now=_now())

    bodies = [json.loads(r.body) for r in receiver.requests]
    assert [(b["type"], b["sequence"]) for b in bodies] == [("appointment.created", 1), ("appointment.rescheduled", 2)]
    assert all(b["event_id"] and b["event_id"] != b["id"] for b in bodies)

    deliveries = api.get(f"/api/v1/webhooks/{endpoint_id}/deliveries/").json()
    assert deliveries["count"] == 2
    newest, oldest = deliveries["results"]
    assert (oldest["event"], oldest["status"], oldest["response_code"]) == ("appointment.created", "sent", 200)
    assert (newest["event"], newest["status"], newest["response_code"]) == ("appointment.rescheduled", "failed", 410)
    assert newest["last_error"].endswith("HTTP 410: gone") and newest["sequence"] == 2
    assert newest["appointment"] == booked["id"]


def test_a_redelivery_is_a_new_delivery_of_the_same_event(platform, patient, practitioner, receiver):
    api = http(platform[1])
    endpoint_id = register(api, receiver.url + "/hook").json()["id"]
    book(api, patient)
    dispatch_local(now=_now())
    original = OutboxMessage.objects.get(channel="webhook")

    response = api.post(f"/api/v1/webhooks/{endpoint_id}/deliveries/{original.pk}/redeliver/")
    assert response.status_code == 201, response.content
    again = response.json()
    assert again["id"] != str(original.pk) and again["status"] == "pending"
    assert (again["event_id"], again["sequence"]) == (original.payload["event_id"], 1)
    dispatch_local(now=_now())
    first, second = (json.loads(r.body) for r in receiver.requests)
    assert {k: v for k, v in first.items() if k != "id"} == {k: v for k, v in second.items() if k != "id"}
    assert second["id"] == again["id"] == _header(receiver.requests[1], "webhook-id")

    assert (
        problem_of(api.post(f"/api/v1/webhooks/{endpoint_id}/deliveries/nope/redeliver/"), 404)["code"]
        == "unknown_webhook_delivery"
    )
    api.patch(f"/api/v1/webhooks/{endpoint_id}/", {"active": False}, format="json")
    response = api.post(f"/api/v1/webhooks/{endpoint_id}/deliveries/{original.pk}/redeliver/")
    assert problem_of(response, 409)["code"] == "webhook_endpoint_paused"


def test_a_paused_endpoint_gets_no_new_deliveries(platform, patient, practitioner, production_urls):
    api = http(platform[1])
    endpoint_id = register(api).json()["id"]
    api.patch(f"/api/v1/webhooks/{endpoint_id}/", {"active": False}, format="json")
    book(api, patient)
    assert not OutboxMessage.objects.filter(channel="webhook").exists()


# --- Every write path reaches a subscribed endpoint ---------------------------------------------------------


def test_a_front_desk_booking_and_a_record_recheck_reach_the_endpoints_outbox(
    platform, clinic, patient, practitioner, receptionist, production_urls
):
    endpoint_id = register(http(platform[1])).json()["id"]
    desk = Client()
    desk.force_login(receptionist)
    response = desk.post(
        reverse("frontdesk:book_submit", args=[clinic.code, patient.pk]),
        {"procedure": "microneedling", "practitioner": practitioner.pk, "start_at": "2026-03-11T09:00:00+00:00"},
    )
    assert response.status_code == 302, response.content
    appointment = Appointment.objects.get()

    # A Botox the patient reports from last week makes the booking unsafe: the re-check flags it.
    clinic_services.procedure_record_add(
        patient=patient,
        procedure_code="botox",
        performed_at=datetime(2026, 3, 1, 10, tzinfo=UTC),
        now=_now(),
        area_code=None,
        source="reported",
        notes="",
    )
    appointment.refresh_from_db()
    assert appointment.status == "needs_review"

    rows = OutboxMessage.objects.filter(endpoint_id=endpoint_id, channel="webhook").order_by("created_at")
    assert [(r.event, r.payload["sequence"]) for r in rows] == [
        ("appointment.created", 1),
        ("appointment.needs_review", 2),
    ]
    assert all(r.payload["data"]["appointment"]["id"] == str(appointment.pk) for r in rows)


def test_registering_twice_with_one_idempotency_key_makes_one_endpoint(platform, production_urls):
    api = http(platform[1])
    first = api.post("/api/v1/webhooks/", {"url": HOOK}, format="json", HTTP_IDEMPOTENCY_KEY="hook-1")
    again = api.post("/api/v1/webhooks/", {"url": HOOK}, format="json", HTTP_IDEMPOTENCY_KEY="hook-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert WebhookEndpoint.objects.count() == 1


def test_the_schema_documents_the_new_operations(client):
    paths = json.loads(client.get("/api/v1/schema/?format=json").content)["paths"]
    assert {
        "/api/v1/webhooks/",
        "/api/v1/webhooks/{webhook_id}/",
        "/api/v1/webhooks/{webhook_id}/rotate-secret/",
        "/api/v1/webhooks/{webhook_id}/deliveries/",
        "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver/",
        "/api/v1/appointments/{appointment_id}/reschedule-check/",
    } <= set(paths)
    assert not any(path.startswith("/fhir/") for path in paths)  # FHIR has its CapabilityStatement
    assert (
        "clinic"
        in json.loads(client.get("/api/v1/schema/?format=json").content)["components"]["schemas"]["BookingInRequest"][
            "properties"
        ]
    )


# --- A URL with a user name or password ---------------------------------------------------------------------------

WITH_PASSWORD = "https://hooks:Kestrel-77@hooks.platform.example/clinic"


@pytest.mark.parametrize(
    "url", [WITH_PASSWORD, "https://hooks@hooks.platform.example/", "https://@hooks.platform.example/"]
)
def test_a_url_with_a_user_or_password_is_refused_at_registration_and_stores_nothing(platform, production_urls, url):
    refused = register(http(platform[1]), url)
    problem = problem_of(refused, 400)
    assert problem["code"] == "invalid_webhook_endpoint"
    assert "user name or password" in problem["errors"]["url"][0]
    assert "Kestrel" not in refused.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_a_url_changed_to_one_with_a_password_is_refused_and_changes_nothing(platform, production_urls):
    api = http(platform[1])
    endpoint_id = register(api).json()["id"]
    changed = api.patch(f"/api/v1/webhooks/{endpoint_id}/", {"url": WITH_PASSWORD, "description": "x"}, format="json")
    assert problem_of(changed, 400)["code"] == "invalid_webhook_endpoint"
    assert WebhookEndpoint.objects.values_list("url", "description").get() == (HOOK, "")


def test_an_endpoint_registered_with_one_before_can_still_be_changed(platform, production_urls):
    receiver_url = WITH_PASSWORD
    endpoint = WebhookEndpoint.objects.create(client=platform[0], url=receiver_url)
    api = http(platform[1])
    changed = api.patch(f"/api/v1/webhooks/{endpoint.pk}/", {"events": ["appointment.created"]}, format="json")
    assert changed.status_code == 200, changed.content
    endpoint.refresh_from_db()
    assert endpoint.events == ["appointment.created"] and endpoint.url == receiver_url
    # A client that PATCHes the whole endpoint back, as it read it: its own URL is not refused.
    whole = {**api.get(f"/api/v1/webhooks/{endpoint.pk}/").json(), "description": "all of it"}
    sent_back = {name: whole[name] for name in ("url", "events", "description", "active")}
    resent = api.patch(f"/api/v1/webhooks/{endpoint.pk}/", sent_back, format="json")
    assert resent.status_code == 200, resent.content
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.description) == (receiver_url, "all of it")


def _admin_form(client, url: str) -> dict:
    return {"client": str(client.pk), "url": url, "events": "[]", "description": "", "is_active": "on"}


def test_the_admin_refuses_one_for_a_new_endpoint_and_keeps_an_old_ones(admin_client, platform, production_urls):
    admin_client.raise_request_exception = False
    added = admin_client.post("/admin/reminders/webhookendpoint/add/", _admin_form(platform[0], WITH_PASSWORD))
    assert added.status_code == 200 and "user name or password" in added.content.decode()
    assert not WebhookEndpoint.objects.exists()

    old = WebhookEndpoint.objects.create(client=platform[0], url=WITH_PASSWORD)
    form = {**_admin_form(platform[0], WITH_PASSWORD), "description": "kept as it was"}
    kept = admin_client.post(f"/admin/reminders/webhookendpoint/{old.pk}/change/", form)
    assert kept.status_code == 302, kept.content.decode()[:2000]
    old.refresh_from_db()
    assert old.description == "kept as it was" and old.url == WITH_PASSWORD

    other = WITH_PASSWORD.replace("/clinic", "/other")
    moved = admin_client.post(f"/admin/reminders/webhookendpoint/{old.pk}/change/", _admin_form(platform[0], other))
    assert moved.status_code == 200 and "user name or password" in moved.content.decode()
    old.refresh_from_db()
    assert old.url == WITH_PASSWORD
