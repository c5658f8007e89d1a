"""QA probe of webhook delivery to booking platforms under faults, as a platform integrating over the API sees it:
it subscribes over `/api/v1/webhooks/`, books, moves and cancels over the API, and a real HTTP receiver on
127.0.0.1 (started here, on a free port) gets what the real dispatcher (`dispatch_local`) sends.

Promises under test (docs/reminders.md, "Webhooks for booking platforms" and "Delivery and its guarantee";
docs/api.md, "Webhook subscriptions"; api-contract.md, v1 additions):
- "Any 2xx is success; 408, 409, 425, 429 and 5xx and network errors are retried with backoff; other answers
  (including redirects and 410) fail the delivery at once."
- "a transient error ... sets the row back to `pending`, due after an exponential backoff (60 s, 120 s, 240 s,
  ...)"; "After `REMINDERS_MAX_ATTEMPTS` (6) attempts the row is `failed` with `last_error` saying why ("gave up
  after 6 attempts; last error: ...")".
- "`webhook-id` | the delivery id (= body `id`), the same on every retry"; "`webhook-timestamp` | Unix seconds
  when this attempt was signed"; "`webhook-signature` | `v1,` + base64(HMAC-SHA256(key,
  "{webhook-id}.{webhook-timestamp}.{raw body}")) ... during a secret rotation's overlap, two such signatures
  separated by a space (new secret first)".
- "`response_code` is the HTTP status the endpoint last answered (null before the first attempt or after a
  network failure, when `last_error` says what happened)".
- "Pausing writes no new deliveries for the endpoint and cancels the unsent ones when their turn comes; deleting
  does the same for good. A redelivery to a paused endpoint is a 409 `webhook_endpoint_paused`."
- "POST .../redeliver/ | a new delivery of that event (same body, `event_id` and `sequence`; its own `id`)".
- "`sequence` is the appointment's change count at the event ... of two events about one appointment the higher
  `sequence` is the later, in whatever order they arrive".
- "An endpoint gets events for appointments in its client's clinics"; "Anything of another organisation is a 404".
- "`data.appointment` is the appointment as the API shows it" (id, patient, procedure, practitioner, clinic,
  start, end, area, status, review_reasons): nothing more about the patient.
- "`url` must be `https://` and may not resolve to a private, loopback, link-local, reserved or multicast
  address ... 400 `invalid_webhook_endpoint` naming `url`. The host is resolved at registration and again
  before every delivery"; "Something that is not a URL at all is a 400 `invalid_input`".

No network beyond 127.0.0.1: host names are answered by a fake resolver where a test needs one.
The clock is Monday 2 March 2026, 09:00 UTC, ticking; deliveries are dispatched at explicit moments after it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.procs import free_port
from reminders import channels
from reminders.channels import webhook_verify
from reminders.dispatch import dispatch_local
from reminders.models import OutboxMessage
from scheduler.lifecycle import EVENTS
from tests.api.conftest import _clock, http, new_api_client, problem_of  # noqa: F401 (_clock: autouse fixture)
from tests.factories import ClinicFactory, PatientConditionFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import API, NOW, register_webhook

pytestmark = pytest.mark.django_db

T0 = NOW + timedelta(minutes=1)  # the first dispatch, just after the bookings


# --- the world: London and West (organisation A, tests/api/conftest.py's via tests/qa/conftest.py) ----------


@pytest.fixture
def api(clinic):
    """A booking platform granted the London clinic."""
    return http(new_api_client(clinic, name="qa-platform")[1])


@pytest.fixture
def local_hosts(settings):
    """docs/api.md: `WEBHOOKS_ALLOW_HTTP` and `WEBHOOKS_ALLOW_PRIVATE_HOSTS` 'relax this for local development and
    tests': the receivers below listen on http://127.0.0.1."""
    settings.WEBHOOKS_ALLOW_HTTP = True
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = True


# --- a platform's receiver: a real HTTP server on 127.0.0.1 answering from a script ------------------------------


@dataclass
class Hit:
    path: str
    headers: dict  # lower-cased names
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """Answers each POST with the next scripted step, then with `default`. A step is an HTTP status (int),
    ("redirect", status, location), ("slow", seconds) (then 200), "close" (read the request, close the
    connection without answering), "garbage" (answer bytes that are not HTTP) or ("trickle", size, interval) (a
    200 whose body comes one byte per interval)."""

    def __init__(self, *script, default=200, port: int = 0):
        self.script = list(script)
        self.default = default
        self.hits: list[Hit] = []
        self.port = port
        self._lock = threading.Lock()

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.hits.append(Hit(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    step = receiver.script.pop(0) if receiver.script else receiver.default
                self.close_connection = True
                try:
                    self._answer(step)
                except OSError:  # the sender gave up waiting (a timeout test)
                    pass

            def _answer(self, step):
                if step == "close":
                    return
                if step == "garbage":
                    self.wfile.write(b"SPEAK FRIEND AND ENTER\r\n\r\n")
                    return
                headers = {}
                if isinstance(step, tuple) and step[0] == "slow":
                    time.sleep(step[1])
                    step = 200
                if isinstance(step, tuple) and step[0] == "trickle":  # a prompt 200 whose body comes a byte at a time
                    _, size, interval = step
                    self.send_response(200)
                    self.send_header("Content-Length", str(size))
                    self.end_headers()
                    for _ in range(size):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(interval)
                    return
                if isinstance(step, tuple) and step[0] == "redirect":
                    step, headers = step[1], {"Location": step[2]}
                answer = b'{"ok": true}' if 200 <= step < 300 else b'{"error": "nope"}'
                self.send_response(step)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# --- helpers ---------------------------------------------------------------------------------------------------


def book(api, patient, start: str, procedure: str = "botox", **extra) -> dict:
    response = api.post(
        f"{API}/appointments/",
        {"patient": str(patient.pk), "procedure": procedure, "start": start, **extra},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def deliveries(api, hook: dict) -> list[dict]:
    response = api.get(f"{API}/webhooks/{hook['id']}/deliveries/")
    assert response.status_code == 200, response.content
    return response.json()["results"]


def only_delivery(api, hook: dict) -> dict:
    [delivery] = deliveries(api, hook)
    return delivery


def at(moment: str) -> datetime:
    return datetime.fromisoformat(moment)


def verify_by_hand(secret: str, hit: Hit) -> bool:
    """docs/reminders.md, computed from the words of the docs alone (not the service's own helper)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{hit.headers['webhook-id']}.{hit.headers['webhook-timestamp']}.".encode() + hit.body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, offered) for offered in hit.headers["webhook-signature"].split(" "))


def signatures(hit: Hit) -> list[str]:
    return hit.headers["webhook-signature"].split(" ")


def fake_dns(monkeypatch, names: dict[str, str] | None = None, default: str = "93.184.215.14"):
    """A resolver for host names (no real DNS): numeric hosts as the C library reads them (inet_aton, so
    `127.1` and `0x7f000001` are loopback), `names` as given, anything else a public address."""
    names = {"localhost": "127.0.0.1", **(names or {})}

    def getaddrinfo(host, port, *args, **kwargs):
        host = host.decode() if isinstance(host, bytes) else host
        try:
            address = str(ipaddress.ip_address(host))
        except ValueError:
            try:
                address = socket.inet_ntoa(socket.inet_aton(host))
            except OSError:
                address = names.get(host.lower().rstrip("."), default)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port or 0))]

    monkeypatch.setattr(channels.socket, "getaddrinfo", getaddrinfo)


# ============================================ Retries and their end ============================================


def test_a_failing_receiver_is_retried_on_the_documented_schedule_then_given_up_visibly(
    api, patient, practitioner, local_hosts
):
    """docs/reminders.md: 5xx is retried 'with backoff (60 s, 120 s, 240 s, ...)'; 'After REMINDERS_MAX_ATTEMPTS
    (6) attempts the row is `failed` with `last_error` saying why ("gave up after 6 attempts; last error: ...")'.
    docs/api.md: the platform sees `status`, `attempts`, `response_code`, `last_error`, `due_at` in its deliveries.
    Every attempt carries the same `webhook-id` and body, a fresh `webhook-timestamp` (the attempt's moment) and a
    signature that verifies for that attempt."""
    with Receiver(default=500) as receiver:
        hook = register_webhook(api, receiver.url + "/in")
        book(api, patient, "2026-03-03T10:00:00+00:00")
        moments = [T0]
        dispatch_local(now=T0)
        delivery = only_delivery(api, hook)
        assert (delivery["status"], delivery["attempts"], delivery["response_code"]) == ("pending", 1, 500)
        assert "500" in delivery["last_error"] and delivery["sent_at"] is None
        for attempt in range(1, 6):
            due = moments[-1] + timedelta(seconds=60 * 2 ** (attempt - 1))
            assert at(only_delivery(api, hook)["due_at"]) == due, attempt
            dispatch_local(now=due - timedelta(seconds=1))
            assert len(receiver.hits) == attempt, "retried before its backoff ran out"
            dispatch_local(now=due)
            assert len(receiver.hits) == attempt + 1
            moments.append(due)
        delivery = only_delivery(api, hook)
        assert (delivery["status"], delivery["attempts"], delivery["response_code"]) == ("failed", 6, 500)
        assert delivery["last_error"].startswith("gave up after 6 attempts; last error:"), delivery["last_error"]
        dispatch_local(now=moments[-1] + timedelta(days=1))
        assert len(receiver.hits) == 6  # the end is the end

    first = receiver.hits[0]
    assert {hit.headers["webhook-id"] for hit in receiver.hits} == {delivery["id"]} == {first.json["id"]}
    assert {hit.body for hit in receiver.hits} == {first.body}
    assert [int(hit.headers["webhook-timestamp"]) for hit in receiver.hits] == [int(m.timestamp()) for m in moments]
    assert len({hit.headers["webhook-signature"] for hit in receiver.hits}) == 6
    for hit, moment in zip(receiver.hits, moments, strict=True):
        assert verify_by_hand(hook["secret"], hit)
        assert webhook_verify(secret=hook["secret"], headers=hit.headers, body=hit.body, now=moment)
    # A receiver that checks freshness refuses the first attempt's headers replayed at the last attempt's time.
    assert not webhook_verify(secret=hook["secret"], headers=first.headers, body=first.body, now=moments[-1])


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 501, 502, 503, 504])
def test_retryable_answers_are_retried_and_the_second_attempt_delivers(api, patient, practitioner, local_hosts, status):
    """docs/reminders.md: '408, 409, 425, 429 and 5xx and network errors are retried with backoff'."""
    with Receiver(status) as receiver:
        hook = register_webhook(api, receiver.url + "/in")
        book(api, patient, "2026-03-03T10:00:00+00:00")
        dispatch_local(now=T0)
        waiting = only_delivery(api, hook)
        assert (waiting["status"], waiting["response_code"]) == ("pending", status)
        dispatch_local(now=at(waiting["due_at"]))
    delivery = only_delivery(api, hook)
    assert (delivery["status"], delivery["attempts"], delivery["response_code"]) == ("sent", 2, 200)
    assert delivery["last_error"] == "" and at(delivery["sent_at"]) == at(waiting["due_at"])
    assert [hit.headers["webhook-id"] for hit in receiver.hits] == [delivery["id"]] * 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 410, 413, 422])
def test_refusing_answers_fail_the_delivery_at_once(api, patient, practitioner, local_hosts, status):
    """docs/reminders.md: 'other answers (including redirects and 410) fail the delivery at once'."""
    with Receiver(status) as receiver:
        hook = register_webhook(api, receiver.url + "/in")
        book(api, patient, "2026-03-03T10:00:00+00:00")
        dispatch_local(now=T0)
        dispatch_local(now=T0 + timedelta(hours=3))
    delivery = only_delivery(api, hook)
    assert (delivery["status"], delivery["attempts"], delivery["response_code"]) == ("failed", 1, status)
    assert str(status) in delivery["last_error"]
    assert len(receiver.hits) == 1


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_fails_the_delivery_and_the_body_never_goes_where_it_points(
    api, patient, practitioner, local_hosts, status
):
    """docs/reminders.md: 'other answers (including redirects ...) fail the delivery at once'. The signed body must
    not be re-posted to wherever the redirect points (here: another receiver)."""
    with Receiver() as elsewhere, Receiver(("redirect", status, None)) as receiver:
        receiver.script = [("redirect", status, elsewhere.url + "/stolen")]
        hook = register_webhook(api, receiver.url + "/in")
        book(api, patient, "2026-03-03T10:00:00+00:00")
        dispatch_local(now=T0)
        dispatch_local(now=T0 + timedelta(hours=3))
    delivery = only_delivery(api, hook)
    assert (delivery["status"], delivery["attempts"], delivery["response_code"]) == ("failed", 1, status)
    assert [hit.path for hit in receiver.hits] == ["/in"]
    assert elsewhere.hits == []


# ============================================ Network faults ===================================================


def test_a_receiver_that_times_out_is_retried_with_the_same_webhook_id(
    api, patient, practitioner, local_hosts, settings
):
    """docs/reminders.md: 'network errors are retried with backoff'; docs/api.md: `response_code` is 'null ... after a
    network failure, when `last_error` says what happened'. A receiver too slow to answer within the send timeout
    may have processed the request anyway: the retry carries the same `webhook-id`, so it can drop it."""
    settings.REMINDERS_SEND_TIMEOUT_SECONDS = 0.5
    with Receiver(("slow", 1.5)) as receiver:
        hook = register_webhook(api, receiver.url + "/in")
        book(api, patient, "2026-03-03T10:00:00+00:00")
        began = time.monotonic()
        dispatch_local(now=T0)
        assert time.monotonic() - began < 1.4, "the send did not give up at its timeout"
        waiting = only_delivery(api, hook)
        assert (waiting["status"], waiting["attempts"], waiting["response_code"]) == ("pending", 1, None)
        assert "timed out" in waiting["last_error"].lower(), waiting["last_error"]
        assert at(waiting["due_at"]) == T0 + timedelta(seconds=60)
        dispatch_local(now=at(waiting["due_at"]))
    delivery = only_delivery(api, hook)
    assert (delivery["status"], delivery["response_code"]) == ("sent", 200)
    assert [hit.headers["webhook-id"] for hit in receiver.hits] == [delivery["id"]] * 2
    assert receiver.hits[0].body == receiver.hits[1].body


def test_a_receiver_that_closes_the_connection_without_answering_is_retried(api, patient, practitioner, local_hosts):
    """docs/reminders.md: 'network errors are retried with backoff'."""
    with Receiver("close") as receiver:
        hook = register_webhook(api, receiver.url + "/in")
        book(api, patient, "2026-03-03T10:00:00+00:00")
        dispatch_local(now=T0)
        waiting = only_delivery(api, hook)
        assert (waiting["status"], waiting["attempts"], waiting["response_code"]) == ("pending", 1, None)
        assert waiting["last_error"]
        dispatch_local(now=at(waiting["due_at"]))
    assert only_delivery(api, hook)["status"] == "sent"
    assert len(receiver.hits) == 2


def test_a_receiver_that_answers_something_other_than_http_is_a_network_error_not_a_crash(
    api, patient, practitioner, local_hosts
):
    """docs/reminders.md: 'network errors are retried with backoff'; style.md: 'Never a bare 500'. A receiver behind
    a broken proxy answers bytes that are not HTTP: the delivery is retried, with `last_error` saying so, and the
    dispatcher goes on with the rest of its batch. Failed before: http.client.BadStatusLine escaped
    channels._post (only OSError was caught) and crashed the pass; now _post turns any http.client.HTTPException
    into a transient error."""
    with Receiver("garbage") as receiver:
        hook = register_webhook(api, receiver.url + "/in")
        book(api, patient, "2026-03-03T10:00:00+00:00")
        dispatch_local(now=T0)
        waiting = only_delivery(api, hook)
        assert (waiting["status"], waiting["attempts"], waiting["response_code"]) == ("pending", 1, None)
        assert "did not answer in HTTP: BadStatusLine" in waiting["last_error"], waiting["last_error"]
        assert at(waiting["due_at"]) == T0 + timedelta(seconds=60)
        dispatch_local(now=at(waiting["due_at"]))
        assert only_delivery(api, hook)["status"] == "sent"


def test_a_receiver_down_then_back_gets_the_delivery_when_it_returns(api, patient, practitioner, local_hosts):
    """docs/reminders.md: network errors are retried; 'every row is delivered ... at least once unless it fails
    permanently or runs out of attempts'. The platform's server is down (connection refused) for the first two
    attempts and back for the third."""
    port = free_port()
    hook = register_webhook(api, f"http://127.0.0.1:{port}/in")
    book(api, patient, "2026-03-03T10:00:00+00:00")
    dispatch_local(now=T0)
    first = only_delivery(api, hook)
    assert (first["status"], first["attempts"], first["response_code"]) == ("pending", 1, None)
    assert "could not reach" in first["last_error"], first["last_error"]
    dispatch_local(now=at(first["due_at"]))
    second = only_delivery(api, hook)
    assert (second["status"], second["attempts"]) == ("pending", 2)
    assert at(second["due_at"]) == at(first["due_at"]) + timedelta(seconds=120)
    with Receiver(port=port) as receiver:
        dispatch_local(now=at(second["due_at"]))
    delivery = only_delivery(api, hook)
    assert (delivery["status"], delivery["attempts"], delivery["response_code"]) == ("sent", 3, 200)
    [hit] = receiver.hits
    assert hit.headers["webhook-id"] == delivery["id"] and verify_by_hand(hook["secret"], hit)


# ============================================ Secret rotation ==================================================


def sign(secret: str, hit: Hit) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{hit.headers['webhook-id']}.{hit.headers['webhook-timestamp']}.".encode() + hit.body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def test_secret_rotation_signs_with_both_secrets_new_first_until_the_overlap_ends(
    api, patient, practitioner, local_hosts
):
    """docs/api.md: 'the new secret signs from now on; the old one keeps signing too until
    `previous_secret_expires_at`, so each delivery in the overlap carries two `v1,` signatures ... (new secret
    first) and a receiver that knows either secret accepts it'; '`overlap_minutes: 0` stops the old one at once'.
    A retry of a delivery made before the rotation is signed like any delivery at the moment it goes."""
    with Receiver(503) as receiver:
        hook = register_webhook(api, receiver.url + "/in")
        old = hook["secret"]
        book(api, patient, "2026-03-03T10:00:00+00:00")
        dispatch_local(now=T0)  # fails: retried at T0 + 60 s, after the rotation
        assert signatures(receiver.hits[0]) == [sign(old, receiver.hits[0])]

        response = api.post(f"{API}/webhooks/{hook['id']}/rotate-secret/", {"overlap_minutes": 60}, format="json")
        assert response.status_code == 200, response.content
        rotated = response.json()
        new = rotated["secret"]
        assert new.startswith("whsec_") and new != old and len(base64.b64decode(new.removeprefix("whsec_"))) >= 24
        expires = at(rotated["previous_secret_expires_at"])
        assert abs(expires - (NOW + timedelta(minutes=60))) < timedelta(minutes=1)
        shown = api.get(f"{API}/webhooks/{hook['id']}/").json()
        assert at(shown["previous_secret_expires_at"]) == expires and "secret" not in shown

        dispatch_local(now=T0 + timedelta(seconds=60))  # the retry, inside the overlap
        retry = receiver.hits[1]
        assert signatures(retry) == [sign(new, retry), sign(old, retry)]
        assert verify_by_hand(new, retry) and verify_by_hand(old, retry)

        book(api, patient, "2026-03-04T10:00:00+00:00")  # after the overlap: the new secret alone
        dispatch_local(now=expires + timedelta(seconds=1))
        late = receiver.hits[2]
        assert signatures(late) == [sign(new, late)] and not verify_by_hand(old, late)

        response = api.post(f"{API}/webhooks/{hook['id']}/rotate-secret/", {"overlap_minutes": 0}, format="json")
        assert response.status_code == 200 and response.json()["previous_secret_expires_at"] is None
        newest = response.json()["secret"]
        book(api, patient, "2026-03-05T10:00:00+00:00")
        dispatch_local(now=expires + timedelta(minutes=2))
        leaked = receiver.hits[3]
        assert signatures(leaked) == [sign(newest, leaked)]
        assert not verify_by_hand(new, leaked) and not verify_by_hand(old, leaked)
    assert len(receiver.hits) == 4


# ============================================ Pausing, deleting, redelivering ====================================


def test_pausing_or_deleting_an_endpoint_cancels_its_pending_retries(api, patient, practitioner, local_hosts):
    """docs/api.md: 'Pausing writes no new deliveries for the endpoint and cancels the unsent ones when their turn
    comes; deleting does the same for good. A redelivery to a paused endpoint is a 409 `webhook_endpoint_paused`.'
    Both endpoints failed once and are waiting for a retry when the platform pauses one and deletes the other."""
    with Receiver(default=503) as paused_rx, Receiver(default=503) as deleted_rx:
        paused = register_webhook(api, paused_rx.url + "/p")
        deleted = register_webhook(api, deleted_rx.url + "/d")
        book(api, patient, "2026-03-03T10:00:00+00:00")
        dispatch_local(now=T0)
        waiting = only_delivery(api, paused)
        gone_id = only_delivery(api, deleted)["id"]
        assert waiting["status"] == "pending"
        response = api.patch(f"{API}/webhooks/{paused['id']}/", {"active": False}, format="json")
        assert response.status_code == 200 and response.json()["active"] is False
        assert api.delete(f"{API}/webhooks/{deleted['id']}/").status_code == 204
        paused_rx.default = deleted_rx.default = 200  # the receivers are fixed: still, nothing more may go
        dispatch_local(now=T0 + timedelta(hours=2))
        assert len(paused_rx.hits) == 1 and len(deleted_rx.hits) == 1

        cancelled = only_delivery(api, paused)
        assert cancelled["status"] == "cancelled" and cancelled["last_error"], cancelled
        assert OutboxMessage.objects.get(pk=gone_id).status == "cancelled"
        assert problem_of(api.get(f"{API}/webhooks/{deleted['id']}/"), 404)["code"] == "unknown_webhook_endpoint"
        redeliver = f"{API}/webhooks/{paused['id']}/deliveries/{waiting['id']}/redeliver/"
        assert problem_of(api.post(redeliver, {}, format="json"), 409)["code"] == "webhook_endpoint_paused"

        # Resumed, the platform asks for what it missed.
        assert api.patch(f"{API}/webhooks/{paused['id']}/", {"active": True}, format="json").status_code == 200
        again = api.post(redeliver, {}, format="json")
        assert again.status_code == 201, again.content
        dispatch_local(now=T0 + timedelta(hours=2, minutes=1))
    first, second = paused_rx.hits
    assert second.headers["webhook-id"] == again.json()["id"] != first.headers["webhook-id"]
    assert {k: v for k, v in second.json.items() if k != "id"} == {k: v for k, v in first.json.items() if k != "id"}
    assert verify_by_hand(paused["secret"], second)


def test_a_delivery_given_up_on_can_be_redelivered_once_with_the_same_event_and_a_new_id(
    api, patient, practitioner, local_hosts
):
    """docs/api.md: 'redeliver → a new delivery of that event (same body, `event_id` and `sequence`; its own `id`),
    due now → 201'; '`POST` (register, rotate, redeliver) takes an `Idempotency-Key`'. The platform's endpoint
    answered 410 (fail at once); fixed, the platform asks again, twice with one key: one new delivery."""
    with Receiver(410) as receiver:
        hook = register_webhook(api, receiver.url + "/in")
        book(api, patient, "2026-03-03T10:00:00+00:00")
        dispatch_local(now=T0)
        failed = only_delivery(api, hook)
        assert (failed["status"], failed["response_code"]) == ("failed", 410)
        path = f"{API}/webhooks/{hook['id']}/deliveries/{failed['id']}/redeliver/"
        answers = [api.post(path, {}, format="json", HTTP_IDEMPOTENCY_KEY="qa-redeliver-1") for _ in range(2)]
        assert [a.status_code for a in answers] == [201, 201] and answers[0].json() == answers[1].json()
        new = answers[0].json()
        assert new["id"] != failed["id"]
        assert (new["event_id"], new["sequence"], new["event"]) == (
            failed["event_id"],
            failed["sequence"],
            "appointment.created",
        )
        assert (new["status"], new["attempts"], new["response_code"]) == ("pending", 0, None)
        dispatch_local(now=T0 + timedelta(minutes=2))
    listed = deliveries(api, hook)
    assert [d["id"] for d in listed] == [new["id"], failed["id"]]  # newest first
    assert listed[0]["status"] == "sent"
    first, second = receiver.hits
    assert second.headers["webhook-id"] == second.json["id"] == new["id"]
    assert {k: v for k, v in second.json.items() if k != "id"} == {k: v for k, v in first.json.items() if k != "id"}
    assert verify_by_hand(hook["secret"], second)


def test_redelivery_of_a_delivery_that_is_not_this_endpoints_is_404(api, patient, practitioner, local_hosts):
    """docs/api.md: 404 `unknown_webhook_delivery` (the error catalogue). A delivery id is found only under the
    endpoint it belongs to; a malformed id is a 404 too, never a 500."""
    one = register_webhook(api, "http://127.0.0.1:9/one")
    two = register_webhook(api, "http://127.0.0.1:9/two")
    book(api, patient, "2026-03-03T10:00:00+00:00")
    of_one = only_delivery(api, one)["id"]
    for endpoint, delivery in ((two, of_one), (one, "not-a-uuid"), (one, "00000000-0000-0000-0000-000000000000")):
        response = api.post(f"{API}/webhooks/{endpoint['id']}/deliveries/{delivery}/redeliver/", {}, format="json")
        assert problem_of(response, 404)["code"] == "unknown_webhook_delivery", (endpoint, delivery)
    assert OutboxMessage.objects.filter(channel="webhook").count() == 2


# ============================================ Order, isolation, tenancy ==========================================


def test_events_held_back_by_a_retry_arrive_out_of_order_and_their_sequence_puts_them_right(
    api, patient, practitioner, local_hosts
):
    """docs/reminders.md: 'Delivery order between rows is not guaranteed'; '`sequence` is the appointment's change
    count at the event ... of two events about one appointment the higher `sequence` is the later, in whatever
    order they arrive'. The creation fails once; the move and the cancellation arrive before its retry."""
    with Receiver(503) as receiver:
        hook = register_webhook(api, receiver.url + "/in")
        made = book(api, patient, "2026-03-03T10:00:00+00:00")["id"]
        dispatch_local(now=T0)
        moved = api.post(
            f"{API}/appointments/{made}/reschedule/", {"start": "2026-03-04T10:00:00+00:00"}, format="json"
        )
        assert moved.status_code == 201
        assert api.post(f"{API}/appointments/{made}/cancel/", {}, format="json").status_code == 200
        dispatch_local(now=T0 + timedelta(seconds=30))
        dispatch_local(now=T0 + timedelta(seconds=60))
    arrived = [hit.json for hit in receiver.hits]
    assert [b["type"] for b in arrived] == [
        "appointment.created",  # answered 503
        "appointment.rescheduled",
        "appointment.cancelled",
        "appointment.created",  # the retry
    ]
    latest = {}
    for body in arrived[1:]:
        latest[body["id"]] = body
    in_order = sorted(latest.values(), key=lambda b: b["sequence"])
    assert [b["type"] for b in in_order] == ["appointment.created", "appointment.rescheduled", "appointment.cancelled"]
    assert len({b["sequence"] for b in in_order}) == 3
    assert [at(b["occurred_at"]) for b in in_order] == sorted(at(b["occurred_at"]) for b in in_order)
    assert in_order[-1]["data"]["appointment"]["status"] == "cancelled"
    assert {d["status"] for d in deliveries(api, hook)} == {"sent"}


def test_one_platforms_failing_endpoint_neither_delays_nor_loses_anothers_deliveries(
    clinic, patient, practitioner, local_hosts, settings
):
    """Asked of this probe: one endpoint's failure must not delay or lose another endpoint's deliveries. Platform A's
    endpoint times out, then answers 500, then drops the connection; platform B, granted the same clinic, gets
    every event in the first pass, and A's retries never hold B's later events back."""
    settings.REMINDERS_SEND_TIMEOUT_SECONDS = 0.5
    a_api = http(new_api_client(clinic, name="qa-platform-a")[1])
    b_api = http(new_api_client(clinic, name="qa-platform-b")[1])
    with Receiver(("slow", 1), 500, "close", default=500) as a_rx, Receiver() as b_rx:
        a_hook = register_webhook(a_api, a_rx.url + "/a")
        b_hook = register_webhook(b_api, b_rx.url + "/b")
        made = book(b_api, patient, "2026-03-03T10:00:00+00:00")["id"]
        b_api.post(f"{API}/appointments/{made}/reschedule/", {"start": "2026-03-04T10:00:00+00:00"}, format="json")
        dispatch_local(now=T0)
        assert [h.json["type"] for h in b_rx.hits] == ["appointment.created", "appointment.rescheduled"]
        b_api.post(f"{API}/appointments/{made}/cancel/", {}, format="json")
        dispatch_local(now=T0 + timedelta(seconds=5))  # A's retries are not due yet; B's new event is
        assert [h.json["type"] for h in b_rx.hits][-1] == "appointment.cancelled"
        dispatch_local(now=T0 + timedelta(minutes=1))
    assert {d["status"] for d in deliveries(b_api, b_hook)} == {"sent"}
    assert len(b_rx.hits) == 3
    a_state = {d["event"]: (d["status"], d["attempts"]) for d in deliveries(a_api, a_hook)}
    assert all(status == "pending" for status, _ in a_state.values()), a_state


def test_a_receiver_speaking_garbage_does_not_hold_back_or_lose_another_platforms_deliveries(
    clinic, patient, practitioner, local_hosts, settings
):
    """Asked of this probe: one endpoint's failure must not delay or lose another endpoint's deliveries. docs/
    reminders.md: 'every row is delivered to its provider at least once unless it fails permanently or runs out
    of attempts'. The beat keeps running passes (a pass that raises is logged and the next one comes). Failed
    before: BadStatusLine escaped channels._post and ended every pass it was claimed in, leaving the rows claimed
    with it `sending` until their lease ran out, again and again. Now it is a transient error (channels._post),
    and any unexpected error of one row is that row's failed attempt (dispatch.outbox_send_batch)."""
    a_api = http(new_api_client(clinic, name="qa-platform-a")[1])
    b_api = http(new_api_client(clinic, name="qa-platform-b")[1])
    lease = timedelta(seconds=settings.REMINDERS_CLAIM_LEASE_SECONDS)
    with Receiver(default="garbage") as a_rx, Receiver() as b_rx:
        register_webhook(a_api, a_rx.url + "/a")
        b_hook = register_webhook(b_api, b_rx.url + "/b")
        book(b_api, patient, "2026-03-03T10:00:00+00:00")
        book(b_api, patient, "2026-03-04T10:00:00+00:00")
        moment, crashed = T0, 0
        for _ in range(8):
            try:
                dispatch_local(now=moment)
            except Exception:
                crashed += 1
            moment += lease + timedelta(seconds=1)
        b_received = {h.headers["webhook-id"] for h in b_rx.hits}
        b_first = len(b_rx.hits)
    b_states = [(d["status"], d["attempts"]) for d in deliveries(b_api, b_hook)]
    assert b_states == [("sent", 1), ("sent", 1)], b_states  # in the first pass, once each
    assert len(b_received) == 2 and b_first == 2
    assert crashed == 0


def test_each_platform_receives_only_the_events_of_the_clinics_it_was_granted(
    clinic, west, patient, practitioner, local_hosts
):
    """docs/reminders.md: 'An endpoint gets events for appointments in its client's clinics'; api-contract:
    '`--organisation CODE` grants every clinic of that organisation', 'Anything of another organisation is a 404'.
    Four platforms (London only, West only, all of organisation A, New York of organisation B) on one receiver,
    each under its own path; bookings, a move and a cancellation at every site."""
    PractitionerFactory(clinic=west, name="Dr West")
    newyork = ClinicFactory(code="newyork", name="New York Clinic", timezone="America/New_York")
    PractitionerFactory(clinic=newyork, name="Dr NY")
    ny_patient = PatientFactory(clinic=newyork, first_name="Nia", last_name="York")
    london_api = http(new_api_client(clinic, name="qa-london")[1])
    west_api = http(new_api_client(west, name="qa-west")[1])
    org_client, org_key = new_api_client(name="qa-org-a")
    org_client.organisations.set([clinic.organisation])
    org_api = http(org_key)
    ny_api = http(new_api_client(newyork, name="qa-ny")[1])
    with Receiver() as receiver:
        for name, platform in (("london", london_api), ("west", west_api), ("org", org_api), ("ny", ny_api)):
            register_webhook(platform, f"{receiver.url}/{name}")
        in_london = book(london_api, patient, "2026-03-03T10:00:00+00:00")["id"]
        in_west = book(west_api, patient, "2026-03-05T10:00:00+00:00", procedure="filler")["id"]
        in_ny = book(ny_api, ny_patient, "2026-03-03T15:00:00+00:00")["id"]
        london_api.post(
            f"{API}/appointments/{in_london}/reschedule/", {"start": "2026-03-04T10:00:00+00:00"}, format="json"
        )
        west_api.post(f"{API}/appointments/{in_west}/cancel/", {}, format="json")
        ny_api.post(f"{API}/appointments/{in_ny}/cancel/", {}, format="json")
        dispatch_local(now=T0)
    heard: dict[str, list[tuple[str, str]]] = {}
    for hit in receiver.hits:
        heard.setdefault(hit.path.strip("/"), []).append((hit.json["type"], hit.json["data"]["appointment"]["id"]))
    assert heard["london"] == [("appointment.created", in_london), ("appointment.rescheduled", in_london)]
    assert heard["west"] == [("appointment.created", in_west), ("appointment.cancelled", in_west)]
    assert sorted(heard["org"]) == sorted(heard["london"] + heard["west"])
    assert heard["ny"] == [("appointment.created", in_ny), ("appointment.cancelled", in_ny)]
    # Nothing of organisation B's clinic, patient or practitioner in anything A's platforms received.
    a_bodies = b"".join(hit.body for hit in receiver.hits if not hit.path.startswith("/ny"))
    for foreign in (in_ny, str(ny_patient.pk), str(newyork.pk)):
        assert foreign.encode() not in a_bodies


APPOINTMENT_FIELDS = {
    "id", "patient", "procedure", "practitioner", "clinic", "start", "end", "area", "status", "review_reasons",
    "sequence",
}  # fmt: skip


def test_bodies_carry_the_documented_fields_and_nothing_more_about_the_patient(clinic, practitioner, local_hosts):
    """docs/reminders.md: the body is `{id, event_id, sequence, type, occurred_at, data}`, `data.appointment` 'the
    appointment as the API shows it' with the fields listed there, `previous` `{start, practitioner, status}`. The
    patient's name, contact details, birth date, conditions, the clinician's clearance reason and the cancellation
    reason are not among them, so a platform must not receive them."""
    patient = PatientFactory(
        clinic=clinic,
        first_name="Zelda",
        last_name="Quixote",
        email="zelda.quixote@example.com",
        phone="+447700900123",
        date_of_birth="1980-05-17",
    )
    PatientConditionFactory(patient=patient, condition_id="psoriasis")
    platform = http(new_api_client(clinic, name="qa-clinical", clinical=True)[1])
    with Receiver() as receiver:
        register_webhook(platform, receiver.url + "/in")
        made = book(platform, patient, "2026-03-03T10:00:00+00:00", procedure="microneedling", area="face")
        assert made["status"] == "pending_clearance"
        cleared = platform.post(
            f"{API}/appointments/{made['id']}/clear/",
            {"reason": "Dermatologist letter: psoriasis in remission, patch test fine"},
            format="json",
        )
        assert cleared.status_code == 200, cleared.content
        moved = platform.post(
            f"{API}/appointments/{made['id']}/reschedule/", {"start": "2026-03-04T10:00:00+00:00"}, format="json"
        )
        assert moved.status_code == 201, moved.content
        gone = platform.post(
            f"{API}/appointments/{made['id']}/cancel/", {"reason": "She told us she is pregnant"}, format="json"
        )
        assert gone.status_code == 200, gone.content
        dispatch_local(now=T0)
    bodies = [hit.json for hit in receiver.hits]
    assert {b["type"] for b in bodies} >= {
        "appointment.created",
        "appointment.cleared",
        "appointment.rescheduled",
        "appointment.cancelled",
    }
    for body in bodies:
        assert set(body) == {"id", "event_id", "sequence", "type", "occurred_at", "data"}, body
        assert set(body["data"]) <= {"appointment", "previous"}
        assert set(body["data"]["appointment"]) == APPOINTMENT_FIELDS
        assert body["data"]["appointment"]["review_reasons"] == []
        if "previous" in body["data"]:
            assert set(body["data"]["previous"]) == {"start", "practitioner", "status"}
    shown = platform.get(f"{API}/appointments/{made['id']}/").json()
    last = max(bodies, key=lambda b: b["sequence"])["data"]["appointment"]
    assert {k: last[k] for k in APPOINTMENT_FIELDS - {"review_reasons"}} == {
        k: shown[k] for k in APPOINTMENT_FIELDS - {"review_reasons"}
    }
    raw = b"\n".join(hit.body for hit in receiver.hits).decode().lower()
    for secret in ("zelda", "quixote", "447700900123", "1980-05-17", "psoriasis", "remission", "pregnant"):
        assert secret not in raw, secret


# ============================================ Bad input to the subscription endpoints =============================

DNS = {
    "intranet.example.com": "10.1.2.3",
    "metadata.example.com": "169.254.169.254",
    "v6-private.example.com": "fd00::1",
    "router.example.com": "192.168.0.1",
}

BAD_URLS = [
    "ftp://hooks.example.com/x",
    "javascript:alert(1)",
    "file:///etc/passwd",
    "mailto:ops@example.com",
    "//hooks.example.com/x",
    "hooks.example.com/x",
    "https://",
    "https:///x",
    "https://hooks.exa mple.com/x",
    " https://hooks.example.com/x",
    "https://hooks.example.com/x\n",
    "https://hooks.example.com/\u0000",
    "http://hooks.example.com/x",  # https only, outside local development
    "https://localhost/x",
    "https://LOCALHOST/x",
    "https://localhost./x",
    "https://127.0.0.1/x",
    "https://127.1/x",
    "https://0x7f000001/x",
    "https://[::1]/x",
    "https://10.1.2.3/x",
    "https://172.16.5.4/x",
    "https://192.168.1.10/x",
    "https://[fe80::1]/x",
    "https://[fd00::1]/x",
    "https://224.0.0.1/x",
    "https://240.0.0.1/x",
    "https://intranet.example.com/x",
    "https://metadata.example.com/latest/meta-data",
    "https://v6-private.example.com/x",
    "https://ROUTER.example.com./x",
    # Failed before (201, also by PATCH): channels.webhook_url_problem never read the port. It refuses 0, past
    # 65535 and non-numbers now.
    "https://hooks.example.com:99999/x",
    "https://hooks.example.com:0/x",
    "https://hooks.example.com:65536/x",
    "https://hooks.example.com:https/x",
]


@pytest.fixture
def production_rules(settings, monkeypatch):
    settings.WEBHOOKS_ALLOW_HTTP = False
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = False
    fake_dns(monkeypatch, DNS)


@pytest.mark.parametrize("url", BAD_URLS)
def test_registering_a_url_that_must_not_be_used_is_a_clear_400_naming_url(api, production_rules, url):
    """docs/api.md: '`url` must be `https://` and may not resolve to a private, loopback, link-local, reserved or
    multicast address (`localhost`, `10.…`, `169.254.169.254`, `[::1]`, or a public name that resolves to one):
    400 `invalid_webhook_endpoint` naming `url`'; 'Something that is not a URL at all is a 400 `invalid_input`'.
    The same URL given later by PATCH is refused the same way, and nothing is stored or changed."""
    response = api.post(f"{API}/webhooks/", {"url": url}, format="json")
    problem = problem_of(response, 400)
    assert problem["code"] in ("invalid_webhook_endpoint", "invalid_input") and "url" in problem["errors"], problem
    hook = register_webhook(api, "https://hooks.example.com/ok")
    response = api.patch(f"{API}/webhooks/{hook['id']}/", {"url": url}, format="json")
    assert "url" in problem_of(response, 400)["errors"]
    assert [h["url"] for h in api.get(f"{API}/webhooks/").json()["results"]] == ["https://hooks.example.com/ok"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"url": 123}, "url"),
        ({"url": None}, "url"),
        ({"url": ["https://hooks.example.com/x"]}, "url"),
        ({"url": {"href": "https://hooks.example.com/x"}}, "url"),
        ({"url": "https://hooks.example.com/" + "a" * 600}, "url"),
        ({"events": ["appointment.created", "appointment.exploded"]}, "events"),
        ({"events": ["APPOINTMENT.CREATED"]}, "events"),
        ({"events": ["*"]}, "events"),
        ({"events": [""]}, "events"),
        ({"events": [1]}, "events"),
        ({"events": "all"}, "events"),
        ({"events": {"appointment.created": True}}, "events"),
        ({"events": ["appointment.created"] * (len(EVENTS) + 1)}, "events"),  # longer than the lifecycle's list
        ({"description": 7}, "description"),
        ({"description": "d" * 201}, "description"),
        ({"active": "false"}, "active"),
        ({"active": 0}, "active"),
        ({"secret": "whsec_" + base64.b64encode(b"k" * 32).decode()}, "secret"),
    ],
)
def test_registering_with_bad_fields_is_a_clear_400_naming_the_field(api, production_rules, body, field):
    """docs/api.md: register `{url, events?, description?, active?}`; '`events`: a list drawn from the lifecycle's
    events'; the contract: 'Validation errors add `errors: {field: [messages]}`'. Never a 500."""
    response = api.post(f"{API}/webhooks/", {"url": "https://hooks.example.com/x", **body}, format="json")
    errors = problem_of(response, 400)["errors"]
    assert any(key == field or key.startswith(field + ".") or key.startswith(field + "[") for key in errors), errors
    assert api.get(f"{API}/webhooks/").json()["count"] == 0


@pytest.mark.parametrize(
    "payload, content_type, statuses",
    [
        (
            b'{"url": "https://hooks.example.com/x", "description": "' + b"x" * 2_000_000 + b'"}',
            "application/json",
            {400, 413},
        ),
        (
            b'{"url": "https://hooks.example.com/x", "events": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
            "application/json",
            {400},
        ),
        (b'{"url": "https://hooks.example.com/x"', "application/json", {400}),
        (b'["https://hooks.example.com/x"]', "application/json", {400}),
        (b'"https://hooks.example.com/x"', "application/json", {400}),
        (b"null", "application/json", {400}),
        (b'{"url": "https://hooks.example.com/x", "url": "https://10.0.0.1/"}', "application/json", {400, 201}),
        (b"\xff\xfe{", "application/json", {400}),
        (b'{"url": "https://hooks.example.com/x", "description": "half \\ud800"}', "application/json", {400}),
        (b'{"url": "https://hooks.example.com/x\\u0000"}', "application/json", {400}),
        (b"url=https://hooks.example.com/x", "text/plain", {400, 415}),
    ],
)
def test_malformed_or_huge_bodies_are_problem_documents_never_a_500(
    api, production_rules, payload, content_type, statuses
):
    """api-contract: errors are RFC 9457 problem details; docs/api.md: `payload_too_large`, `malformed_request`,
    `unsupported_media_type` among the API's own codes; style.md: 'Never a bare 500'. A duplicate key may be
    read either way but never lets a private URL in."""
    response = api.generic("POST", f"{API}/webhooks/", payload, content_type=content_type)
    assert response.status_code in statuses, (response.status_code, response.content[:300])
    if response.status_code == 201:
        assert response.json()["url"] == "https://hooks.example.com/x"
        return
    problem = problem_of(response, response.status_code)
    assert problem["code"] != "server_error"


def _receiver_on_a_port_below(limit: int) -> Receiver:
    for port in range(20000, limit, 97):
        try:
            return Receiver(port=port).__enter__()
        except OSError:  # taken: try the next one
            continue
    pytest.skip(f"no free port below {limit}")


def test_a_port_beyond_65535_is_refused_and_never_wraps_round_to_another_port(api, patient, practitioner, local_hosts):
    """docs/api.md: 'Something that is not a URL at all is a 400 `invalid_input`' and the URL is checked before
    every delivery. Port 65536 + p is no port at all (urllib.parse refuses it: 'Port out of range 0-65535'); it
    must not reach whatever listens on port p. Failed before (201, and delivered to port p):
    channels.webhook_url_problem never read the port; it refuses it now, at registration and before a delivery
    (tests/reminders/test_channels.py covers a stored URL that bypassed registration)."""
    receiver = _receiver_on_a_port_below(99999 - 65536)
    try:
        response = api.post(f"{API}/webhooks/", {"url": f"http://127.0.0.1:{receiver.port + 65536}/in"}, format="json")
        book(api, patient, "2026-03-03T10:00:00+00:00")
        dispatch_local(now=T0)
    finally:
        receiver.__exit__(None, None, None)
    assert receiver.hits == [], "delivered to port p, though registered for port 65536 + p"
    assert problem_of(response, 400)["errors"]["url"] == ["The port must be a number from 1 to 65535."]


def test_a_name_that_rebinds_to_loopback_between_check_and_connect_is_not_posted_to(
    api, patient, practitioner, settings, monkeypatch
):
    """docs/api.md: the URL 'may not resolve to a private, loopback, link-local ... address ... The host is resolved
    at registration and again before every delivery'. A rebinding name (TTL 0) answers 93.184.215.14 to every
    check and 127.0.0.1 when the connection is made: the service must not POST to 127.0.0.1. Failed before: the
    host was checked, then resolved again by urllib to connect. Now a delivery resolves it once, checks those
    addresses and connects to exactly them (channels._delivery_addresses, _post). The public address is refused
    here by a stand-in for the network (none beyond 127.0.0.1 in tests), so the delivery waits for a retry."""
    settings.WEBHOOKS_ALLOW_HTTP = True  # the receiver speaks plain http; the private-address rule stays on
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = False
    real = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        if host == "rebind.example.com":
            address = "93.184.215.14" if port is None else "127.0.0.1"  # the check asks without a port
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 0))]
        return real(host, port, *args, **kwargs)

    connected = []
    real_connect = socket.create_connection

    def connect(address, *args, **kwargs):
        connected.append(address)
        if address[0] == "93.184.215.14":
            raise ConnectionRefusedError(111, "Connection refused")
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(channels.socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(channels.socket, "create_connection", connect)
    with Receiver() as receiver:
        hook = register_webhook(api, f"http://rebind.example.com:{receiver.port}/in")
        book(api, patient, "2026-03-03T10:00:00+00:00")
        dispatch_local(now=T0)
    assert receiver.hits == [], "the service POSTed to 127.0.0.1"
    assert connected == [("93.184.215.14", receiver.port)]  # the checked address, and only it
    delivery = only_delivery(api, hook)
    assert (delivery["status"], delivery["response_code"]) == ("pending", None)
    assert "could not reach rebind.example.com" in delivery["last_error"], delivery["last_error"]


def test_a_receiver_that_trickles_its_answer_cannot_hold_the_sender_past_the_timeout(
    api, patient, practitioner, local_hosts, settings
):
    """docs/reminders.md: 'Keep REMINDERS_CLAIM_LEASE_SECONDS above the longest send (REMINDERS_SEND_TIMEOUT_SECONDS
    plus queueing time)': a send is meant to last at most the timeout. A receiver answers 200 at once, then sends
    its 12-byte body a byte every 0.25 s (each read is within the 0.5 s timeout; the whole takes 3 s). Failed
    before: the timeout bounded each socket read, not the send. Now channels._post gives the whole exchange one
    deadline, and an answer not read by then is a transient error (retried)."""
    settings.REMINDERS_SEND_TIMEOUT_SECONDS = 0.5
    with Receiver(("trickle", 12, 0.25)) as receiver:
        hook = register_webhook(api, receiver.url + "/in")
        book(api, patient, "2026-03-03T10:00:00+00:00")
        began = time.monotonic()
        dispatch_local(now=T0)
        took = time.monotonic() - began
    assert len(receiver.hits) == 1
    assert took < 1.5, f"the send took {took:.1f} s with a 0.5 s timeout"
    delivery = only_delivery(api, hook)
    assert (delivery["status"], delivery["attempts"], delivery["response_code"]) == ("pending", 1, None)
    assert "timed out" in delivery["last_error"], delivery["last_error"]


def test_a_rotation_retried_with_its_idempotency_key_rotates_once_and_the_secret_shown_signs(
    api, patient, practitioner, local_hosts
):
    """docs/api.md: '`POST` (register, rotate, redeliver) takes an `Idempotency-Key`'; the contract: 'the same key
    with the same body within 24 h returns the first response again ... and creates nothing'. A platform whose
    first rotate call timed out on its side retries it: both answers show the one secret that now signs."""
    with Receiver() as receiver:
        hook = register_webhook(api, receiver.url + "/in")
        path = f"{API}/webhooks/{hook['id']}/rotate-secret/"
        answers = [
            api.post(path, {"overlap_minutes": 0}, format="json", HTTP_IDEMPOTENCY_KEY="qa-rotate-1") for _ in range(2)
        ]
        assert [a.status_code for a in answers] == [200, 200]
        assert answers[0].json() == answers[1].json()
        secret = answers[0].json()["secret"]
        book(api, patient, "2026-03-03T10:00:00+00:00")
        dispatch_local(now=T0)
    [hit] = receiver.hits
    assert signatures(hit) == [sign(secret, hit)]
    assert not verify_by_hand(hook["secret"], hit)
