"""Providers over HTTP, against a local fake server: Twilio's Messages API and signed webhooks."""

import base64
import json
import urllib.parse
from datetime import timedelta

import pytest

from clinic.models import ApiClient
from reminders import channels
from reminders.channels import (
    PermanentSendError,
    TransientSendError,
    TwilioSmsBackend,
    webhook_signature,
    webhook_url_problem,
    webhook_verify,
)
from reminders.dispatch import SendOutcome, dispatch_local
from reminders.models import OutboxMessage, WebhookEndpoint
from tests.reminders.conftest import book, london
from tests.reminders.support import FakeHttpServer, free_port

WEDNESDAY_10 = london(2026, 3, 4, 10)


# --- Twilio ----------------------------------------------------------------------------------------------


def test_twilio_gets_a_form_post_with_basic_auth_and_returns_the_message_sid(twilio):
    sid = TwilioSmsBackend().send(to="+447700900123", body="Bloom Clinic: see you at 10:00 & bring ID", outbox_id="abc")

    assert sid == "SM42"
    [request] = twilio.requests
    assert request.path == "/2010-04-01/Accounts/AC0123456789/Messages.json"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"AC0123456789:secret-token").decode()
    assert urllib.parse.parse_qs(request.body.decode()) == {
        "To": ["+447700900123"],
        "From": ["+447700900999"],
        "Body": ["Bloom Clinic: see you at 10:00 & bring ID"],
    }


def test_twilio_client_errors_are_permanent_and_server_errors_transient(twilio):
    twilio.script = [
        (400, b'{"code": 21211, "message": "The To number is not valid."}'),
        (503, b'{"message": "busy"}'),
        (429, b"{}"),
    ]
    with pytest.raises(PermanentSendError, match="Twilio HTTP 400: 21211 The To number is not valid."):
        TwilioSmsBackend().send(to="+1", body="x", outbox_id="a")
    with pytest.raises(TransientSendError, match="Twilio HTTP 503"):
        TwilioSmsBackend().send(to="+447700900123", body="x", outbox_id="b")
    with pytest.raises(TransientSendError, match="Twilio HTTP 429"):
        TwilioSmsBackend().send(to="+447700900123", body="x", outbox_id="c")


def test_an_unreachable_provider_is_a_transient_error(settings, twilio):
    settings.TWILIO_API_BASE = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(TransientSendError, match="could not reach 127.0.0.1"):
        TwilioSmsBackend().send(to="+447700900123", body="x", outbox_id="a")


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
def test_an_unreachable_url_is_named_by_its_host_and_port_never_its_password(host):
    port = free_port()  # nothing listens there (nor on IPv6's loopback, if this machine has one)
    with pytest.raises(TransientSendError) as failed:
        channels._post(f"http://hook:s3cret@{host}:{port}/hooks", b"{}", {})
    assert str(failed.value).startswith(f"could not reach {host}:{port}: ")
    assert "s3cret" not in str(failed.value) and "hook:" not in str(failed.value)


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("https://hook:s3cret@hooks.example/in", "hooks.example"),  # no port: the scheme's, not repeated
        ("https://hook:s3cret@[2001:db8::1]/in", "[2001:db8::1]"),
        ("https://hook:s3cret@hooks.example:99999/in", "hooks.example"),  # a port out of range is left out
        ("https://@hooks.example:8443/in", "hooks.example:8443"),
    ],
)
def test_a_failure_names_where_a_url_goes_without_its_user_or_password(url, named):
    assert channels._host(urllib.parse.urlsplit(url)) == named


def test_an_outbox_sms_goes_through_twilio_after_a_retry(twilio, patient, practitioner, now):
    twilio.script = [(500, b"{}")]
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)

    assert dispatch_local(now=now) == {SendOutcome.SENT: 1, SendOutcome.RETRY: 1}  # the e-mail, the SMS
    row = OutboxMessage.objects.get(appointment=appointment, kind="confirmation", channel="sms")
    assert (row.status, row.last_error) == ("pending", "attempt 1: Twilio HTTP 500: {}")
    assert dispatch_local(now=now + timedelta(seconds=60)) == {SendOutcome.SENT: 1}
    row.refresh_from_db()
    assert (row.status, row.provider_id, row.attempts) == ("sent", "SM42", 2)
    assert len(twilio.requests) == 2


def test_twilio_refuses_to_start_without_credentials(settings):
    settings.TWILIO_ACCOUNT_SID = ""
    with pytest.raises(PermanentSendError, match="TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN are unset"):
        TwilioSmsBackend()


# --- Webhooks ---------------------------------------------------------------------------------------------------


@pytest.fixture
def endpoint_server(clinic):
    client = ApiClient(name="Platform")
    client.set_new_key()
    client.save()
    client.clinics.add(clinic)
    with FakeHttpServer(default=(204, b"")) as server:
        endpoint = WebhookEndpoint.objects.create(client=client, url=server.url + "/hooks")
        yield endpoint, server


def test_a_webhook_is_posted_signed_and_verifiable_by_the_platform(endpoint_server, patient, practitioner, now):
    endpoint, server = endpoint_server
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    dispatch_local(now=now)

    [request] = server.requests
    row = OutboxMessage.objects.get(channel="webhook")
    assert (row.status, row.provider_id) == ("sent", "HTTP 204")
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["webhook-id"] == str(row.pk)
    assert headers["webhook-event"] == "appointment.created"
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    body = json.loads(request.body)
    assert body["type"] == "appointment.created" and body["data"]["appointment"]["id"] == str(appointment.pk)
    # What a platform does on receipt: verify against the endpoint's secret, within five minutes
    assert webhook_verify(secret=endpoint.secret, headers=request.headers, body=request.body, now=now)
    assert not webhook_verify(secret=endpoint.secret, headers=request.headers, body=request.body + b" ", now=now)
    assert not webhook_verify(
        secret="whsec_" + base64.b64encode(b"x" * 32).decode(), headers=request.headers, body=request.body, now=now
    )
    # A captured request replayed ten minutes later is refused
    assert not webhook_verify(
        secret=endpoint.secret, headers=request.headers, body=request.body, now=now + timedelta(minutes=10)
    )


def test_the_signature_follows_the_documented_scheme():
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    import hashlib
    import hmac

    expected = base64.b64encode(hmac.new(b"k" * 32, b"msg_1.1700000000.{}", hashlib.sha256).digest()).decode()
    assert webhook_signature(secret=secret, delivery_id="msg_1", timestamp=1700000000, body=b"{}") == "v1," + expected


def test_a_failing_endpoint_is_retried_with_the_same_delivery_id(endpoint_server, patient, practitioner, now):
    endpoint, server = endpoint_server
    server.script = [(503, b"down"), (500, b"still down")]
    book(patient, "microneedling", WEDNESDAY_10, now)

    moment = now
    for _ in range(3):
        dispatch_local(now=moment)
        moment += timedelta(minutes=5)
    row = OutboxMessage.objects.get(channel="webhook")
    assert (row.status, row.attempts) == ("sent", 3)
    ids = {{k.lower(): v for k, v in r.headers.items()}["webhook-id"] for r in server.requests}
    assert ids == {str(row.pk)} and len(server.requests) == 3


def test_an_endpoint_that_is_gone_fails_without_retries(endpoint_server, patient, practitioner, now):
    endpoint, server = endpoint_server
    server.script = [(410, b"gone")]
    book(patient, "microneedling", WEDNESDAY_10, now)
    dispatch_local(now=now)
    row = OutboxMessage.objects.get(channel="webhook")
    assert (row.status, row.last_error) == ("failed", "permanent failure: endpoint answered HTTP 410: gone")


def test_a_disabled_endpoint_gets_nothing_more(endpoint_server, patient, practitioner, now):
    endpoint, server = endpoint_server
    book(patient, "microneedling", WEDNESDAY_10, now)
    endpoint.is_active = False
    endpoint.save()
    dispatch_local(now=now)
    assert server.requests == []
    assert OutboxMessage.objects.get(channel="webhook").status == "cancelled"


def test_webhook_urls_must_be_https_and_public_in_production(settings):
    settings.WEBHOOKS_ALLOW_HTTP = False
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = False
    assert webhook_url_problem("http://platform.example/hooks") == "Webhook URLs must use https://."
    assert webhook_url_problem("ftp://platform.example/") == "Give an absolute https:// URL."
    for url in ("https://127.0.0.1/x", "https://10.1.2.3/x", "https://169.254.169.254/latest", "https://[::1]/x"):
        assert webhook_url_problem(url) == "Webhook URLs may not point at private, loopback or link-local addresses."
    assert webhook_url_problem("https://localhost/x") == "Webhook URLs may not point at this server."
    assert webhook_url_problem("https://platform.example/hooks") == ""


def test_delivery_refuses_a_host_that_resolves_to_a_private_address(settings, monkeypatch, now):
    # A public-looking name that resolves inside the network (DNS rebinding) is refused at send time
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = False
    monkeypatch.setattr(channels.socket, "getaddrinfo", lambda host, port: [(2, 1, 6, "", ("10.0.0.5", 0))])
    assert webhook_url_problem("https://hooks.platform.example/x") == ""  # registration does not resolve
    with pytest.raises(PermanentSendError, match="private, loopback or link-local"):
        channels.send_webhook(
            url="https://hooks.platform.example/x",
            secret="whsec_" + "A" * 44,
            delivery_id="d",
            event="appointment.created",
            body=b"{}",
            now=now,
        )
