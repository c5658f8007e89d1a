"""Webhook (and provider) HTTP under faults: answers that are not HTTP, slow answers, ports out of range, names that
resolve one way and then another, TLS to a checked address. Servers listen on 127.0.0.1 only."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clinic.models import ApiClient
from core.errors import InvalidInput
from reminders import channels
from reminders.channels import PermanentSendError, TransientSendError, webhook_url_problem
from reminders.services import webhook_endpoint_create
from tests.helpers import raw_server
from tests.reminders.support import FakeHttpServer

SECRET = "whsec_" + "A" * 44


def send(url: str, now) -> str:
    return channels.send_webhook(
        url=url, secret=SECRET, delivery_id="d-1", event="appointment.created", body=b"{}", now=now
    )


def trickle(head: bytes, tail: bytes, interval: float) -> Callable[[socket.socket], None]:
    def answer(conn: socket.socket) -> None:
        conn.sendall(head)
        for byte in tail:
            conn.sendall(bytes([byte]))
            time.sleep(interval)

    return answer


# --- Answers that are not HTTP are network errors -------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, kind",
    [
        (b"SPEAK FRIEND AND ENTER\r\n\r\n", "BadStatusLine"),
        (b"HTTP/1.1 200 OK\r\nX-Long: " + b"x" * 70_000 + b"\r\n\r\n", "LineTooLong"),
        (b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\nnot-a-size\r\n", "IncompleteRead"),
    ],
)
def test_an_answer_that_is_not_http_is_a_transient_error(now, answer, kind):
    with raw_server(lambda conn: conn.sendall(answer)) as url:
        with pytest.raises(TransientSendError, match=f"did not answer in HTTP: {kind}"):
            send(url + "/in", now)


# --- One deadline for the whole send --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head, tail",
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n", b"x" * 40),  # the body a byte at a time
        (b"HTTP/1.1 200 OK\r\n", b"X-Slow: " + b"y" * 40 + b"\r\n\r\n"),  # the head a byte at a time
    ],
)
def test_a_receiver_that_trickles_its_answer_is_cut_off_at_the_send_timeout(settings, now, head, tail):
    # Each byte comes well within the timeout; the whole answer would take 2 s.
    settings.REMINDERS_SEND_TIMEOUT_SECONDS = 0.4
    with raw_server(trickle(head, tail, 0.05)) as url:
        began = time.monotonic()
        with pytest.raises(TransientSendError, match="timed out"):
            send(url + "/in", now)
        took = time.monotonic() - began
    assert 0.35 < took < 1.0, took


def test_only_a_bounded_part_of_the_answer_is_read(now):
    with FakeHttpServer(default=(500, b"e" * 200_000)) as server:
        status, raw = channels._post(server.url + "/x", b"{}", {}, limit=channels.WEBHOOK_ANSWER_LIMIT)
        assert (status, len(raw)) == (500, channels.WEBHOOK_ANSWER_LIMIT)
        with pytest.raises(TransientSendError) as failed:
            send(server.url + "/x", now)
    assert str(failed.value) == "endpoint answered HTTP 500: " + "e" * 200


def test_a_redirect_is_returned_as_an_answer_and_never_followed(now):
    with FakeHttpServer() as elsewhere:
        location = f"Location: {elsewhere.url}/stolen\r\n".encode()
        answer = b"HTTP/1.1 307 Temporary Redirect\r\n" + location + b"Content-Length: 0\r\n\r\n"
        with raw_server(lambda conn: conn.sendall(answer)) as url:
            with pytest.raises(PermanentSendError, match="endpoint answered HTTP 307"):
                send(url + "/in", now)
    assert elsewhere.requests == []


# --- Ports ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["0", "65536", "99999", "http", "-1"])
def test_a_port_out_of_range_is_refused_by_the_url_check(settings, port):
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = False
    url = f"https://hooks.platform.example:{port}/x"
    assert webhook_url_problem(url) == "The port must be a number from 1 to 65535."
    assert webhook_url_problem(url, resolve=True) == "The port must be a number from 1 to 65535."
    assert webhook_url_problem("https://hooks.platform.example:8443/x") == ""


def test_registration_refuses_a_port_out_of_range_naming_url(clinic):
    """The path of the admin and `add_webhook_endpoint` (the model's validation), not only the API's."""
    client = ApiClient(name="Platform")
    client.set_new_key()
    client.save()
    with pytest.raises(InvalidInput) as refused:
        webhook_endpoint_create(client=client, url="https://hooks.platform.example:65536/x")
    assert (refused.value.field, refused.value.message) == ("url", "The port must be a number from 1 to 65535.")


def test_a_stored_url_with_a_port_out_of_range_is_refused_at_delivery_and_never_wraps_round(now):
    # Written before registration checked ports: port 65536 + p must not reach whatever listens on p.
    with FakeHttpServer() as server:
        port = int(server.url.rsplit(":", 1)[1])
        with pytest.raises(PermanentSendError, match="port must be a number from 1 to 65535"):
            send(f"http://127.0.0.1:{port + 65536}/in", now)
    assert server.requests == []


# --- One look-up per delivery, and the connection goes to what it found ---------------------------------------


@pytest.fixture
def lookups(monkeypatch):
    """A resolver that answers from `lookups.answers` (one answer per call, the last one repeated)."""

    class Lookups:
        answers: list[str] = []
        asked: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        Lookups.asked.append(host)
        address = Lookups.answers.pop(0) if len(Lookups.answers) > 1 else Lookups.answers[0]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 0))]

    monkeypatch.setattr(channels.socket, "getaddrinfo", getaddrinfo)
    return Lookups


@pytest.fixture
def connections(monkeypatch):
    """Where the service opens TCP connections; a public address is refused (no network beyond 127.0.0.1)."""
    opened = []
    real = socket.create_connection

    def create_connection(address, *args, **kwargs):
        opened.append(address)
        if not address[0].startswith("127."):
            raise ConnectionRefusedError(111, "Connection refused")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(channels.socket, "create_connection", create_connection)
    return opened


def test_a_delivery_resolves_the_host_once_and_connects_to_the_checked_address(settings, now, lookups, connections):
    # DNS rebinding: the name answers a public address, then (to any later look-up) the loopback one.
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = False
    lookups.answers = ["93.184.215.14", "127.0.0.1"]
    with pytest.raises(TransientSendError, match="could not reach rebind.example:8080"):
        send("http://rebind.example:8080/in", now)
    assert lookups.asked == ["rebind.example"]
    assert connections == [("93.184.215.14", 8080)]


def test_a_delivery_whose_host_now_resolves_to_a_private_address_is_refused_without_connecting(
    settings, now, lookups, connections
):
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = False
    lookups.answers = ["10.0.0.5", "93.184.215.14"]
    with pytest.raises(PermanentSendError, match="private, loopback or link-local"):
        send("https://rebind.example/in", now)
    assert connections == []


# --- TLS to the checked address, verified against the host name ----------------------------------------------


@contextmanager
def tls_receiver(tmp_path, name: str):
    """An https receiver on 127.0.0.1 with a self-signed certificate for `name`; yields (port, cert, seen)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}"]
        + ["-addext", f"subjectAltName=DNS:{name}"],
        check=True,
        capture_output=True,
    )
    seen: dict[str, list] = {"sni": [], "host": []}
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, server_name, ctx: seen["sni"].append(server_name)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen["host"].append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], cert, seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def trusting(monkeypatch, cert) -> None:
    real = ssl.create_default_context
    monkeypatch.setattr(channels.ssl, "create_default_context", lambda: real(cafile=str(cert)))


def test_https_goes_to_the_checked_address_with_the_host_name_for_sni_and_the_certificate(
    tmp_path, monkeypatch, now, lookups, connections
):
    lookups.answers = ["127.0.0.1"]  # private hosts allowed here (the reminders tests' default)
    with tls_receiver(tmp_path, "hooks.platform.example") as (port, cert, seen):
        trusting(monkeypatch, cert)
        assert send(f"https://hooks.platform.example:{port}/in", now) == "HTTP 204"
    assert connections == [("127.0.0.1", port)]
    assert seen == {"sni": ["hooks.platform.example"], "host": [f"hooks.platform.example:{port}"]}


def test_https_refuses_a_certificate_for_another_name(tmp_path, monkeypatch, now, lookups, connections):
    lookups.answers = ["127.0.0.1"]
    with tls_receiver(tmp_path, "someone-else.example") as (port, cert, seen):
        trusting(monkeypatch, cert)
        with pytest.raises(TransientSendError, match="CERTIFICATE_VERIFY_FAILED"):
            send(f"https://hooks.platform.example:{port}/in", now)
    assert seen["host"] == []  # nothing was posted


def test_an_ipv6_literal_host_is_reached_on_its_port(now, lookups, connections):
    lookups.answers = ["127.0.0.1"]  # never asked: a literal address is its own look-up
    with pytest.raises(TransientSendError, match=r"could not reach \[2001:db8::1\]"):
        send("https://[2001:db8::1]/in", now)
    assert (lookups.asked, connections) == ([], [("2001:db8::1", 443)])
