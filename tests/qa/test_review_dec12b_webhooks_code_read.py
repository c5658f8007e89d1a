"""Review probe (12 December, b): the outgoing webhooks and notifications read line by line.

Read: api/webhooks.py, reminders/webhooks.py, scheduler/notifications.py, scheduler/signals.py,
scheduler/lifecycle.py, the webhook parts of reminders/tasks.py, reminders/dispatch.py (with what they call:
reminders/channels.py's signing, URL checks and HTTP, reminders/verdicts.py's `still_wanted`, reminders/claimed.py's
`lock_fresh`, reminders/services.py's `_webhooks` and subscriptions, the endpoint admin), beside the API contract
(its conventions and "v1 additions") and docs/api.md "Webhook subscriptions", docs/reminders.md "Webhooks for
booking platforms". Read for: tenancy, signatures and timestamps, secret rotation, retries, events against
transactions, events missing, endpoints paused or removed while deliveries wait, SSRF and redirects, answers read
whole, bad input answering 500. Each suspicion that stood is pinned by the smallest test, through the platform's API
(and the admin where an operator acts). The suite's Monday is 2 March 2026, 09:00 UTC.

Found (strict xfails, each mended the same day; the tests now pass):
- DEFECT: the endpoint is read once per batch of sends (reminders/dispatch.py `_batch_read`; `claimed.lock_fresh`
  brings the row, the visit and the patient up to date, never the endpoint, and `webhook_endpoint_reaches` reads
  the subscriptions under the batch's one configuration version): an endpoint paused or deleted while its batch is
  being sent still gets the rest of that batch, though docs/api.md says pausing (and deleting) "cancels the unsent
  ones when their turn comes" (`verdicts.still_wanted` asks a stale endpoint).
- DEFECT: the same stale endpoint signs: a delivery of a batch that began before an API rotation goes signed with
  the old secret alone, so a platform that switched its verifier to the new secret at once (inside the overlap, as
  docs/api.md "Rotation" allows) refuses it (dispatch `_deliver`, `endpoint.signing_secrets`).
- DEFECT: an endpoint URL in the shared address space (RFC 6598, 100.64.0.0/10: carrier-grade NAT and cloud-internal
  services, Alibaba Cloud's metadata at 100.100.100.200), literal or behind a public name, is registered (201) and
  delivered to: `channels._address_problem` refuses only what Python calls private, loopback, link-local, reserved or
  multicast, which leaves it out (`not address.is_global` would not).
- DEFECT (PostgreSQL): an endpoint that answers 400 with a NUL byte in its body is recorded as "the send raised
  DataError: PostgreSQL text fields cannot contain NUL", `response_code` null, and retried, though a 400 fails the
  delivery at once (channels.send_webhook puts the body's start in the error text unfiltered; dispatch
  `_send_locked` cannot save it).
- DEFECT: an answer that is not HTTP but whose status line reads "HTTP 200 OK" is listed with `response_code` 200
  (reminders/webhooks.py `delivery_outcome` searches the error text, which quotes the endpoint's own line), though
  docs/api.md says it is null after a network failure, which "an answer that is not HTTP" is.
- DEFECT: the admin's "Rotate the signing secret" (reminders/admin.py `WebhookEndpointAdmin.rotate_secret`) writes a
  new secret and leaves `previous_secret` as it was: inside an API rotation's overlap, deliveries go signed with the
  new secret and the one rotated out before (two rotations ago), and not with the one just replaced; docs/api.md
  says a rotation inside another's overlap ends the older secret at once (`webhook_secret_rotate` does).

Held (passing): an endpoint paused or deleted before the batch that would send its delivery gets nothing (the row
is cancelled, with why); a delivery that keeps failing is given up visibly (listed `failed`, its last status and
error); a course of sessions refused whole leaves no event of the session it had booked (the event rows live in the
booking's transaction); the endpoint-management API answers malformed bodies, URLs, events, overlaps, ids and pages
with 400/404 problems, never a 500. Read and found right without a test here (each pinned by tests/api/
test_webhooks_api.py, tests/reminders/test_webhook_faults.py or tests/qa/test_review_dec6g_integrations.py): the
signature over exactly the bytes sent, a fresh timestamp per attempt and one `webhook-id` across retries,
`webhook_verify`'s five minutes both ways, redirects answered and never followed, a bounded answer within one
deadline, a host resolved once and connected to as checked, events only to endpoints of clients granted the clinic
or its organisation (and checked again when each goes), an event for every change the contract lists (every status
write in scheduler/booking.py and scheduler/recheck.py goes through `lifecycle.record`), and a rule edit's re-check
started only once the edit commits (scheduler/signals.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.urls import reverse

from plans.defaults import plan_templates_load
from reminders import channels
from reminders.channels import webhook_verify
from reminders.dispatch import dispatch_local
from reminders.models import OutboxMessage, OutboxStatus, WebhookEndpoint
from tests.factories import PatientFactory
from tests.helpers import raw_server
from tests.qa.helpers import API, NOW, api_book, book, ok, problem, register_webhook, superuser_client
from tests.reminders.support import FakeHttpServer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock")]

TUESDAY_10 = "2026-03-03T10:00:00+00:00"
PUBLIC = "93.184.215.14"
REMOVED = "the webhook endpoint was removed or disabled"


@pytest.fixture
def hooks_allowed(settings):
    """docs/api.md: `WEBHOOKS_ALLOW_HTTP` and `WEBHOOKS_ALLOW_PRIVATE_HOSTS` relax the URL checks for local tests."""
    settings.WEBHOOKS_ALLOW_HTTP = True
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = True


def resolving_to(monkeypatch, address: str) -> None:
    """Every host name resolves to `address`, without asking a resolver."""
    monkeypatch.setattr(channels.socket, "getaddrinfo", lambda host, port: [(2, 1, 6, "", (address, 0))])


@pytest.fixture
def production_urls(settings, monkeypatch):
    """The URL checks as in production; every name resolves to a public address."""
    settings.WEBHOOKS_ALLOW_HTTP = False
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = False
    resolving_to(monkeypatch, PUBLIC)


def deliveries(client, endpoint_id) -> list[dict]:
    """The endpoint's deliveries over the API, oldest first."""
    listed = ok(client.get(f"{API}/webhooks/{endpoint_id}/deliveries/?page_size=100"))
    return list(reversed(listed["results"]))


def booked_and_cancelled(api, patient) -> dict:
    """A visit booked and cancelled over the API before anything is sent: two deliveries due now, which the next
    dispatch sends in one batch (`appointment.created` and `appointment.cancelled`)."""
    booked = api_book(api, patient, TUESDAY_10)
    ok(api.post(f"{API}/appointments/{booked['id']}/cancel/", {}, format="json"))
    return booked


def after_the_first_delivery(monkeypatch, act) -> list[str]:
    """`act()` runs once the first delivery of the batch has been answered (the platform acts meanwhile, over its
    API); the events delivered, in order."""
    real = channels.send_webhook
    sent: list[str] = []

    def send(**kwargs):
        answer = real(**kwargs)
        sent.append(kwargs["event"])
        if len(sent) == 1:
            act()
        return answer

    monkeypatch.setattr(channels, "send_webhook", send)
    return sent


# --- An endpoint changed while deliveries to it wait -------------------------------------------------------------


@pytest.mark.parametrize("change", ["paused", "deleted"])
def test_an_endpoint_paused_or_deleted_while_its_batch_is_being_sent_gets_no_more_of_it(
    clinic, patient, practitioner, api, hooks_allowed, monkeypatch, change
):
    """Two deliveries to one endpoint go in one batch. Once the first is answered, the platform pauses (or deletes)
    the endpoint over the API. The second's turn comes after that: it is cancelled, not sent.
    (Was a strict-xfail DEFECT, mended: claimed.lock_fresh reads the endpoint again under each row's lock.)"""
    with FakeHttpServer() as receiver:
        hook = register_webhook(api, receiver.url + "/in")
        booked_and_cancelled(api, patient)

        def stop():
            if change == "paused":
                ok(api.patch(f"{API}/webhooks/{hook['id']}/", {"active": False}, format="json"))
            else:
                assert api.delete(f"{API}/webhooks/{hook['id']}/").status_code == 204

        sent = after_the_first_delivery(monkeypatch, stop)
        dispatch_local(now=NOW)
    assert len(sent) == len(receiver.requests) == 1
    rows = OutboxMessage.objects.filter(channel="webhook").exclude(status=OutboxStatus.SENT)
    assert [(row.status, row.last_error) for row in rows] == [(OutboxStatus.CANCELLED, REMOVED)]


def test_a_delivery_sent_after_a_rotation_in_its_batch_verifies_with_the_new_secret(
    clinic, patient, practitioner, api, hooks_allowed, monkeypatch
):
    """docs/api.md: "the new secret signs from now on". The platform rotates (a day's overlap) once the batch's first
    delivery is answered and switches its verifier at once; the batch's second delivery, signed after the rotation,
    must verify with the new secret.
    (Was a strict-xfail DEFECT, mended: claimed.lock_fresh reads the endpoint's secrets again under each row's lock.)"""
    rotated = {}
    with FakeHttpServer() as receiver:
        hook = register_webhook(api, receiver.url + "/in")
        booked_and_cancelled(api, patient)

        def rotate():
            path = f"{API}/webhooks/{hook['id']}/rotate-secret/"
            rotated.update(ok(api.post(path, {"overlap_minutes": 1440}, format="json")))

        after_the_first_delivery(monkeypatch, rotate)
        dispatch_local(now=NOW)
    first, second = receiver.requests
    assert webhook_verify(secret=hook["secret"], headers=first.headers, body=first.body, now=NOW)
    assert webhook_verify(secret=rotated["secret"], headers=second.headers, body=second.body, now=NOW)


@pytest.mark.parametrize("change", ["paused", "deleted"])
def test_an_endpoint_paused_or_deleted_before_the_send_gets_nothing(
    clinic, patient, practitioner, api, hooks_allowed, change
):
    """Held: between batches the rule stands. The deliveries waiting when the endpoint is paused (or deleted) are
    cancelled when their turn comes, with why, and nothing is POSTed."""
    with FakeHttpServer() as receiver:
        hook = register_webhook(api, receiver.url + "/in")
        booked_and_cancelled(api, patient)
        if change == "paused":
            ok(api.patch(f"{API}/webhooks/{hook['id']}/", {"active": False}, format="json"))
        else:
            assert api.delete(f"{API}/webhooks/{hook['id']}/").status_code == 204
        dispatch_local(now=NOW)
    assert receiver.requests == []
    rows = OutboxMessage.objects.filter(channel="webhook")
    assert sorted((row.event, row.status, row.last_error) for row in rows) == [
        ("appointment.cancelled", OutboxStatus.CANCELLED, REMOVED),
        ("appointment.created", OutboxStatus.CANCELLED, REMOVED),
    ]


# --- Where a delivery may go ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, resolves_to",
    [
        ("https://100.100.100.200/latest/meta-data/", PUBLIC),  # Alibaba Cloud's metadata service
        ("https://internal.platform.example/in", "100.64.0.1"),  # a public name for a carrier-grade NAT address
    ],
)
def test_a_url_in_the_shared_address_space_is_refused(api, production_urls, monkeypatch, url, resolves_to):
    """docs/api.md: a URL that resolves to an address inside is a 400 `invalid_webhook_endpoint` naming `url`, and
    nothing is stored. (Was a strict-xfail DEFECT, mended: channels._not_public.)"""
    resolving_to(monkeypatch, resolves_to)
    response = api.post(f"{API}/webhooks/", {"url": url}, format="json")
    body = problem(response, 400, "invalid_webhook_endpoint")
    assert body["detail"] == "Webhook URLs may not point at private, loopback or link-local addresses."
    assert not WebhookEndpoint.objects.exists()


# --- What the endpoint answered --------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_refusal_whose_body_holds_a_nul_byte_fails_the_delivery_at_once(
    clinic, patient, practitioner, api, hooks_allowed, clock
):
    """A 400 whose body holds a NUL fails the delivery at once, listed with its code. (Was a strict-xfail DEFECT,
    mended: dispatch._storable_error.)"""
    with FakeHttpServer(script=[(400, b"bad\x00request")]) as receiver:
        hook = register_webhook(api, receiver.url + "/in")
        api_book(api, patient, TUESDAY_10)
        dispatch_local(now=NOW)
        later = NOW + timedelta(minutes=10)
        clock.move_to(later)
        dispatch_local(now=later)
    assert len(receiver.requests) == 1
    [listed] = deliveries(api, hook["id"])
    assert (listed["status"], listed["attempts"], listed["response_code"]) == ("failed", 1, 400)
    assert listed["last_error"].startswith("permanent failure: endpoint answered HTTP 400: bad")


def test_an_answer_that_is_not_http_lists_no_response_code(clinic, patient, practitioner, api, hooks_allowed):
    """An answer that is not HTTP has no response code, whatever its first line says. (Was a strict-xfail DEFECT,
    mended: webhooks.delivery_outcome reads only what send_webhook records.)"""
    with raw_server(lambda conn: conn.sendall(b"HTTP 200 OK\r\nContent-Length: 0\r\n\r\n")) as url:
        hook = register_webhook(api, url + "/in")
        api_book(api, patient, TUESDAY_10)
        dispatch_local(now=NOW)
    [listed] = deliveries(api, hook["id"])
    assert (listed["status"], listed["attempts"]) == ("pending", 1)
    assert "did not answer in HTTP: BadStatusLine" in listed["last_error"]
    assert listed["response_code"] is None


def test_a_delivery_that_keeps_failing_is_given_up_visibly(
    clinic, patient, practitioner, api, hooks_allowed, clock, settings
):
    """Held: no silent end. With two attempts allowed, a delivery answered 503 twice is listed `failed`, with its
    attempts, the last status and the endpoint's words; nothing goes after that."""
    settings.REMINDERS_MAX_ATTEMPTS = 2
    with FakeHttpServer(default=(503, b"busy")) as receiver:
        hook = register_webhook(api, receiver.url + "/in")
        api_book(api, patient, TUESDAY_10)
        dispatch_local(now=NOW)
        [row] = OutboxMessage.objects.filter(channel="webhook")
        row.refresh_from_db()
        assert (row.status, row.due_at) == (OutboxStatus.PENDING, NOW + timedelta(seconds=60))
        for moment in (row.due_at, NOW + timedelta(days=1)):
            clock.move_to(moment)
            dispatch_local(now=moment)
    assert len(receiver.requests) == 2
    [listed] = deliveries(api, hook["id"])
    assert (listed["status"], listed["attempts"], listed["response_code"]) == ("failed", 2, 503)
    assert listed["last_error"] == "gave up after 2 attempts; last error: endpoint answered HTTP 503: busy"
    assert listed["sent_at"] is None


# --- Secrets ---------------------------------------------------------------------------------------------------------


def test_the_admins_rotation_inside_an_overlap_ends_the_older_secret(clinic, patient, practitioner, api, hooks_allowed):
    """The platform rotates over the API (a day's overlap: the first secret signs beside the second); then an
    operator rotates in the admin (a third). The first secret, rotated out two rotations ago, signs nothing more;
    the third does.
    (Was a strict-xfail DEFECT, mended: the admin's action is webhooks.webhook_secret_rotate with no overlap.)"""
    with FakeHttpServer() as receiver:
        hook = register_webhook(api, receiver.url + "/in")
        ok(api.post(f"{API}/webhooks/{hook['id']}/rotate-secret/", {"overlap_minutes": 1440}, format="json"))
        changelist = reverse("admin:reminders_webhookendpoint_changelist")
        response = superuser_client().post(changelist, {"action": "rotate_secret", "_selected_action": [hook["id"]]})
        assert response.status_code == 302
        third = WebhookEndpoint.objects.get().secret
        api_book(api, patient, TUESDAY_10)
        dispatch_local(now=NOW)
    [request] = receiver.requests
    assert webhook_verify(secret=third, headers=request.headers, body=request.body, now=NOW)
    assert not webhook_verify(secret=hook["secret"], headers=request.headers, body=request.body, now=NOW)


# --- Events and transactions ---------------------------------------------------------------------------------------


def test_a_course_refused_whole_leaves_no_event_of_the_session_it_had_booked(
    clinic, patient, practitioner, api, hooks_allowed
):
    """Held: the outbox rows are written in the booking's transaction (scheduler.notifications). A course whose second
    session's slot was taken since the dry run is refused whole (409): its first session, booked and announced inside
    the plan's transaction, rolled back with its event; only the other patient's booking is delivered."""
    plan_templates_load()
    with FakeHttpServer() as receiver:
        hook = register_webhook(api, receiver.url + "/in")
        path = f"{API}/patients/{patient.pk}/plans/"
        course = {"template": "microneedling-course", "start_from": "2026-03-09"}
        dry = ok(api.post(path, {**course, "dry_run": True}, format="json"))
        other = PatientFactory(clinic=clinic)
        second = datetime.fromisoformat(dry["sessions"][1]["start"])
        taken = book(other, second, NOW, code="botox", practitioner_id=str(practitioner.pk))
        proposal = [{"start": s["start"], "practitioner": s["practitioner"]} for s in dry["sessions"]]
        refused = problem(api.post(path, {**course, "proposal": proposal}, format="json"), 409, "plan_refused")
        assert refused["session"] == 2
        dispatch_local(now=NOW)
    assert [(d["event"], d["appointment"], d["status"]) for d in deliveries(api, hook["id"])] == [
        ("appointment.created", str(taken.pk), "sent")
    ]
    assert len(receiver.requests) == 1


# --- Bad input to the endpoint-management API ---------------------------------------------------------------------

URL = "https://hooks.platform.example/x"


@pytest.mark.parametrize(
    "method, where, body, status, code",
    [
        ("post", "", [], 400, "invalid_input"),
        ("post", "", {"url": URL, "events": "appointment.created"}, 400, "invalid_input"),
        ("post", "", {"url": URL, "events": [["appointment.created"]]}, 400, "invalid_input"),
        ("post", "", {"url": URL, "events": None}, 400, "invalid_input"),
        ("post", "", {"url": URL, "events": ["appointment.created"] * 12}, 400, "invalid_input"),
        ("post", "", {"url": URL, "description": "a\x00b"}, 400, "invalid_input"),
        ("post", "", {"url": URL, "active": "false"}, 400, "invalid_input"),
        ("post", "", {"url": "https://[v1.x]/in"}, 400, "invalid_webhook_endpoint"),
        ("post", "", {"url": "https://" + "a" * 300 + ".example/in"}, 400, "invalid_webhook_endpoint"),
        ("post", "", {"url": "https://hooks.platform.example:99999/in"}, 400, "invalid_webhook_endpoint"),
        ("post", "", {"url": "https://host%00.example/in"}, 400, "invalid_webhook_endpoint"),
        ("post", "", {"url": "https://[fe80::1%25eth0]/in"}, 400, "invalid_webhook_endpoint"),
        ("post", "", {"url": URL + "/" + "x" * 600}, 400, "invalid_input"),
        ("patch", "{id}/", {"url": None}, 400, "invalid_input"),
        ("patch", "{id}/", {"events": [1]}, 400, "invalid_input"),
        ("patch", "{id}/", [], 400, "invalid_input"),
        ("post", "{id}/rotate-secret/", {"overlap_minutes": 10**30}, 400, "invalid_input"),
        ("post", "{id}/rotate-secret/", {"overlap_minutes": -1}, 400, "invalid_input"),
        ("post", "{id}/rotate-secret/", {"overlap_minutes": 1.5}, 400, "invalid_input"),
        ("post", "{id}/rotate-secret/", {"overlap_minutes": "60"}, 400, "invalid_input"),
        ("post", "{id}/deliveries/{id}/redeliver/", {"x": 1}, 400, "invalid_input"),
        ("post", "{id}/deliveries/%00/redeliver/", {}, 404, "unknown_webhook_delivery"),
        ("get", "{id}/deliveries/?page_size=abc", None, 400, "invalid_input"),
        ("get", "%00/", None, 404, "unknown_webhook_endpoint"),
    ],
)
def test_bad_input_to_the_endpoint_api_is_a_problem_never_a_500(
    api, production_urls, method, where, body, status, code
):
    """Held: every malformed body, URL, event list, overlap, id and page is a 400 or 404 problem naming its code."""
    hook = register_webhook(api, URL)
    path = f"{API}/webhooks/" + where.replace("{id}", hook["id"])
    call = getattr(api, method)
    response = call(path) if body is None else call(path, body, format="json")
    problem(response, status, code)
    assert WebhookEndpoint.objects.count() == 1
