"""Delivery channels: e-mail (Django backends), SMS (small backend interface), webhooks.

Each send either returns a provider id or raises TransientSendError (retry
later with backoff) or PermanentSendError (retrying cannot help: a refused
address, a 4xx from the provider). The SMS backend is chosen by SMS_BACKEND:
console (default), file, locmem (tests) or Twilio's REST API over the stdlib.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import io
import ipaddress
import json
import re
import smtplib
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.mime.text import MIMEText
from email.utils import formataddr, parseaddr
from pathlib import Path

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.utils.module_loading import import_string

from core.plain_text import single_line, storable_text


class SendError(Exception):
    """Delivery did not happen."""


class TransientSendError(SendError):
    """The provider or network failed in a way that may pass: try again later."""


class PermanentSendError(SendError):
    """The provider refused the message for good (bad address, bad request): do not retry."""


class RecipientStopped(PermanentSendError):
    """The provider will not text this number: its owner replied STOP to the provider, which blocks the number
    until they reply START (Twilio's error 21610). It may have heard a STOP this service did not (the inbound
    webhook down or not set up): the caller records it as the patient's STOP."""


# Twilio's "Attempt to send to unsubscribed recipient": the number replied STOP to this sender.
TWILIO_STOPPED = "21610"


@dataclass(frozen=True)
class DeliveryReport:
    """What a provider reports of a message it had accepted (Twilio's status callback, an e-mail provider's event),
    in this service's terms."""

    provider_id: str  # the id the send returned
    failed: bool  # it will not reach the patient (undelivered, bounced, ...); anything else changes nothing here
    stopped: bool  # a text refused because the number's owner replied STOP to the provider (RecipientStopped's)
    detail: str  # the provider's words, for the row's last error
    outbox_id: str = ""  # the row whose send asked for this report, where the provider says (Twilio: ?outbox=)


def _timeout() -> float:
    return float(settings.REMINDERS_SEND_TIMEOUT_SECONDS)


# --- E-mail ------------------------------------------------------------------------------------------------


def message_id_domain() -> str:
    return urllib.parse.urlsplit(settings.REMINDERS_PUBLIC_BASE_URL).hostname or "localhost"


def send_email(
    *,
    outbox_id: str,
    to: str,
    subject: str,
    text: str,
    html: str,
    ics: bytes | None,
    unsubscribe_url: str,
    sender_name: str = "",
    reply_to: str = "",
    ics_method: str = "REQUEST",
    calendars: Sequence[tuple[bytes, str]] = (),
) -> str:
    """Send through the configured Django e-mail backend (console, file, SMTP, anymail).

    From the clinic's name at the service's address (a clinic's own domain would fail SPF/DKIM),
    with replies going to the clinic. Calendar files: `ics` with `ics_method`, then each of `calendars` as
    (file, method), each its own attachment (an iCalendar object has one METHOD: a cancellation and a booking
    that go as one e-mail are two files).
    """
    headers = {
        # A stable Message-ID per outbox row: a retry after an unclear failure carries the same id,
        # which lets providers and mail clients drop the duplicate.
        "Message-ID": f"<{outbox_id}@{message_id_domain()}>",
        "X-Outbox-Id": outbox_id,
    }
    if unsubscribe_url:
        headers["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058 one-click
    address = parseaddr(settings.DEFAULT_FROM_EMAIL)[1]
    # A name stored with a line break (before names refused them) would be a header of its own: sent on one line.
    sender_name = single_line(sender_name)
    from_email = formataddr((sender_name, address)) if sender_name else settings.DEFAULT_FROM_EMAIL
    email = EmailMultiAlternatives(
        subject=single_line(subject),
        body=text,
        from_email=from_email,
        to=[to],
        reply_to=[reply_to] if reply_to else None,
        headers=headers,
        connection=get_connection(timeout=_timeout()) if _smtp() else None,
    )
    email.attach_alternative(html, "text/html")
    files = [(ics, ics_method)] if ics else []
    files += [(file, method) for file, method in calendars if file]
    for n, (file, method) in enumerate(files, start=1):
        calendar = MIMEText(file.decode("utf-8"), "calendar", "utf-8")
        calendar.set_param("method", method)
        name = "appointment.ics" if n == 1 else f"appointment-{n}.ics"  # distinct names: mail clients list both
        calendar.add_header("Content-Disposition", "attachment", filename=name)
        email.attach(calendar)
    try:
        email.send(fail_silently=False)
    except smtplib.SMTPRecipientsRefused as exc:
        raise PermanentSendError(f"recipient refused: {exc}") from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise TransientSendError(f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # anymail's errors, without importing anymail when it is not the backend
        raise _classify_anymail(exc) from exc
    status = getattr(email, "anymail_status", None)
    return (getattr(status, "message_id", None) or headers["Message-ID"]) if status else headers["Message-ID"]


# anymail's normalised events that mean the e-mail will not reach the patient: their server refused it (a hard or
# soft bounce), the provider would not send it (the address on its suppression list, or invalid), or could not.
EMAIL_FAILED_EVENTS = frozenset({"bounced", "rejected", "failed"})


def email_delivery_report(event, esp_name: str) -> DeliveryReport | None:
    """An anymail tracking event (`AnymailTrackingEvent`) as a delivery report, or None when it says nothing of
    an e-mail failing. Its `message_id` is the provider's id, the one `send_email` returned for it."""
    if event.event_type not in EMAIL_FAILED_EVENTS or not isinstance(event.message_id, str) or not event.message_id:
        return None
    # The provider's summary and the receiving server's own reply (Postmark gives both), else the reason's category
    # (SendGrid's "dropped" gives neither).
    said = [part for part in (event.description, event.mta_response) if part] or [event.reject_reason or ""]
    # The provider's words as a database keeps them: a NUL or a lone surrogate in a receiving server's reply is left out.
    why = " — ".join(" ".join(storable_text(part).split())[:100] for part in said)
    detail = f"{esp_name} reported the e-mail {event.event_type}" + (f" ({why})" if why else "")
    return DeliveryReport(provider_id=event.message_id[:200], failed=True, stopped=False, detail=detail)


class CannotTell:
    """What a provider that cannot be asked whether it accepted a message answers (see `accepted`)."""

    def __repr__(self) -> str:
        return "CANNOT_TELL"


CANNOT_TELL = CannotTell()


def accepted(*, channel: str, outbox_id: str) -> str | None | CannotTell:
    """Whether the provider already accepted the message of this outbox row: its provider id, None, or CANNOT_TELL.

    Asked before sending a row whose previous sender stopped without recording the outcome
    (dispatch._settle_doubt), so a sender killed after the provider accepted a message does not cause a second
    one. SMS backends answer through `accepted()`; of the e-mail backends, Django's in-memory and file backends
    (and any backend with an `accepted(outbox_id)` method) can be asked; SMTP and the console cannot, nor can
    webhook receivers (they drop repeats by the `webhook-id` header). Raises TransientSendError if asking failed.
    """
    if channel == "sms":
        return sms_backend().accepted(outbox_id=outbox_id)
    if channel != "email":
        return CANNOT_TELL
    connection = get_connection()
    if hasattr(connection, "accepted"):
        return connection.accepted(outbox_id=outbox_id)
    message_id = f"<{outbox_id}@{message_id_domain()}>"
    if settings.EMAIL_BACKEND == "django.core.mail.backends.locmem.EmailBackend":
        from django.core import mail

        sent = getattr(mail, "outbox", [])
        return message_id if any(m.extra_headers.get("X-Outbox-Id") == outbox_id for m in sent) else None
    if settings.EMAIL_BACKEND == "django.core.mail.backends.filebased.EmailBackend":
        needle = f"X-Outbox-Id: {outbox_id}\n".encode()
        folder = Path(connection.file_path)
        try:
            found = any(needle in path.read_bytes() for path in folder.iterdir() if path.is_file())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TransientSendError(f"could not read {folder}: {exc}") from exc
        return message_id if found else None
    return CANNOT_TELL


def _smtp() -> bool:
    return settings.EMAIL_BACKEND == "django.core.mail.backends.smtp.EmailBackend"


def _classify_anymail(exc: Exception) -> SendError:
    name = type(exc).__name__
    if name in ("AnymailRecipientsRefused", "AnymailInvalidAddress"):
        return PermanentSendError(f"{name}: {exc}")
    status = getattr(exc, "status_code", None)
    if name.startswith("Anymail") and status and 400 <= status < 500 and status not in (408, 429):
        return PermanentSendError(f"{name} (HTTP {status}): {exc}")
    if name.startswith("Anymail"):
        return TransientSendError(f"{name}: {exc}")
    return PermanentSendError(f"{name}: {exc}")


# --- SMS ------------------------------------------------------------------------------------------------------


class BaseSmsBackend:
    """Send one text; verify an inbound (reply) request; say, if it can, whether a text was accepted."""

    # Whether the provider refuses a number after its STOP until a START of its own (RecipientStopped).
    blocks_after_stop = False
    # Whether the provider reports on a text after accepting it (its status callback: `delivery_report`).
    sends_delivery_reports = False

    def send(self, *, to: str, body: str, outbox_id: str) -> str:
        raise NotImplementedError

    def accepted(self, *, outbox_id: str) -> str | None | CannotTell:
        """The provider id of the text sent for this outbox row, None if the provider never accepted one, or
        CANNOT_TELL (the default) if this provider cannot be asked. Raises TransientSendError if asking failed."""
        return CANNOT_TELL

    def delivery_report(self, params: dict, query: dict) -> DeliveryReport | None:
        """Read a delivery status callback's form and query (verified with `verify_inbound`), or None if the form
        is not one (only a backend that `sends_delivery_reports` is asked)."""
        return None

    def verify_inbound(self, *, url: str, params: dict, headers: dict, query: dict) -> bool:
        """Default: a shared token in the inbound URL's query (?token=...), set by SMS_INBOUND_TOKEN."""
        expected = settings.SMS_INBOUND_TOKEN
        # Compared as bytes: compare_digest refuses non-ASCII str, and a typed token may be anything.
        return bool(expected) and hmac.compare_digest(str(query.get("token", "")).encode(), expected.encode())


class ConsoleSmsBackend(BaseSmsBackend):
    """Prints texts to stdout: the embedded default, so a newcomer sees them."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout

    def send(self, *, to: str, body: str, outbox_id: str) -> str:
        self.stream.write(f"--- SMS to {to} (outbox {outbox_id})\n{body}\n---\n")
        self.stream.flush()
        return f"console-{outbox_id}"


class FileSmsBackend(BaseSmsBackend):
    """Appends one JSON line per text to SMS_FILE_PATH."""

    _lock = threading.Lock()

    def __init__(self, path: str | None = None) -> None:
        self.path = Path(path or settings.SMS_FILE_PATH)

    def send(self, *, to: str, body: str, outbox_id: str) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"outbox_id": outbox_id, "to": to, "body": body}) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
        return f"file-{outbox_id}"

    def accepted(self, *, outbox_id: str) -> str | None:
        try:
            with self.path.open(encoding="utf-8") as handle:
                found = any(_outbox_id_of(line) == outbox_id for line in handle)
        except FileNotFoundError:
            return None
        return f"file-{outbox_id}" if found else None


def _outbox_id_of(line: str) -> str | None:
    try:  # a line cut short by a killed writer is a text that was never accepted
        return json.loads(line).get("outbox_id")
    except ValueError:
        return None


class LocmemSmsBackend(BaseSmsBackend):
    """Keeps texts in `LocmemSmsBackend.outbox` (tests), like Django's locmem e-mail backend."""

    outbox: list[dict] = []

    def send(self, *, to: str, body: str, outbox_id: str) -> str:
        LocmemSmsBackend.outbox.append({"to": to, "body": body, "outbox_id": outbox_id})
        return f"locmem-{outbox_id}"

    def accepted(self, *, outbox_id: str) -> str | None:
        return f"locmem-{outbox_id}" if any(t["outbox_id"] == outbox_id for t in LocmemSmsBackend.outbox) else None


class _Deadline:
    """One moment by which a whole exchange must be over: connecting, sending and every read of the answer."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        return left


class _DeadlineSocket:
    """A connected socket whose every send and read times out at the exchange's deadline, not per call: a
    receiver that answers a byte at a time cannot hold the sender past REMINDERS_SEND_TIMEOUT_SECONDS."""

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self.sock, self.deadline = sock, deadline

    def sendall(self, data) -> None:
        self.sock.settimeout(self.deadline.left())
        self.sock.sendall(data)

    def recv_into(self, buffer, nbytes: int = 0) -> int:
        self.sock.settimeout(self.deadline.left())
        return self.sock.recv_into(buffer, nbytes)

    def makefile(self, mode: str = "rb", *args, **kwargs) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self))

    def close(self) -> None:
        # http.client closes its connection once it has the answer's head (Connection: close) and reads the
        # body after that through makefile(): _post closes the socket itself when it is done (`release`).
        pass

    def release(self) -> None:
        self.sock.close()


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: _DeadlineSocket) -> None:
        self.sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self.sock.recv_into(buffer)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to the host by name (Host header; for https the TLS server name and certificate) over a connection
    made to `addresses`, resolved and checked by the caller beforehand (DNS rebinding: the name is not looked up
    again), or to the host as resolved now when none are given; all of it within `deadline`."""

    def __init__(self, host: str, port: int, *, addresses: list[str], deadline: _Deadline) -> None:
        super().__init__(host, port)
        self.addresses, self.deadline = addresses, deadline
        self.opened: _DeadlineSocket | None = None  # http.client lets go of `sock` before the body is read

    def connect(self) -> None:
        self.sock = self.opened = _DeadlineSocket(self._tcp(), self.deadline)

    def _tcp(self) -> socket.socket:
        error: OSError = OSError(f"no address for {self.host}")
        for address in self.addresses or [self.host]:
            try:
                return socket.create_connection((address, self.port), timeout=self.deadline.left())
            except OSError as exc:  # try the next checked address, as create_connection does
                error = exc
        raise error


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    default_port = http.client.HTTPS_PORT

    def connect(self) -> None:
        tcp = self._tcp()
        try:
            tcp.settimeout(self.deadline.left())  # the handshake too
            context = ssl.create_default_context()  # verifies the certificate against the host name
            context.set_alpn_protocols(["http/1.1"])
            self.sock = self.opened = _DeadlineSocket(
                context.wrap_socket(tcp, server_hostname=self.host), self.deadline
            )
        except BaseException:
            tcp.close()
            raise


def _host(parts: urllib.parse.SplitResult) -> str:
    """Where a URL goes, as a failure names it: its host and port, never a user:password written before them (a
    webhook URL may carry one; it is not sent, and a failure's words reach the logs and the row's last error)."""
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


def _post(
    url: str, data: bytes, headers: dict, *, addresses: list[str] | None = None, limit: int = 65536
) -> tuple[int, bytes]:
    """POST and return (status, at most `limit` bytes of the answer's body); HTTP errors are returned.

    Connects to `addresses` (the caller's checked look-up) when given, else to the host as resolved now. The
    whole exchange (connect, send, read the answer) fits in REMINDERS_SEND_TIMEOUT_SECONDS. Transport failures,
    an answer that is not HTTP and a deadline that passes are transient. Redirects are answers like any other:
    never followed (a provider or webhook URL that redirects is misconfigured; following it would resend the
    body elsewhere).
    """
    parts = urllib.parse.urlsplit(url)
    kind = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    # The port is always given: http.client would read the end of a bare IPv6 address as one.
    port = parts.port or kind.default_port
    connection = kind(parts.hostname, port, addresses=addresses or [], deadline=_Deadline(_timeout()))
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    try:
        connection.request("POST", target, body=data, headers={**headers, "Connection": "close"})
        with connection.getresponse() as response:
            return response.status, response.read(limit)
    except OSError as exc:  # refused, reset, unresolvable, TLS, timed out
        raise TransientSendError(f"could not reach {_host(parts)}: {exc}") from exc
    except http.client.HTTPException as exc:  # BadStatusLine, LineTooLong, IncompleteRead, ...
        raise TransientSendError(f"{_host(parts)} did not answer in HTTP: {type(exc).__name__}: {exc}") from exc
    finally:
        connection.close()
        if connection.opened is not None:
            connection.opened.release()


def _retryable(status: int) -> bool:
    return status in (408, 409, 425, 429) or status >= 500


# A message's sid: SM (text) or MM (picture message) and 32 hex digits.
_TWILIO_SID = re.compile(r"(SM|MM)[0-9a-f]{32}")
_TWILIO_WORD = re.compile(r"[a-z_]{1,30}")  # a status: queued, sent, delivered, undelivered, failed, ...
_TWILIO_CODE = re.compile(r"[0-9]{1,6}")


class TwilioSmsBackend(BaseSmsBackend):
    """Twilio's Messages API: POST /2010-04-01/Accounts/{sid}/Messages.json, form-encoded, basic auth."""

    blocks_after_stop = True  # its opt-out handling (error 21610 until the number texts START)
    sends_delivery_reports = True  # status callbacks (reminders.views.sms_status)

    def __init__(self) -> None:
        self.account_sid = settings.TWILIO_ACCOUNT_SID
        self.auth_token = settings.TWILIO_AUTH_TOKEN
        self.base = settings.TWILIO_API_BASE.rstrip("/")
        if not self.account_sid or not self.auth_token:
            raise PermanentSendError("Twilio is the SMS backend but TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN are unset")
        if not settings.TWILIO_MESSAGING_SERVICE_SID and not settings.SMS_FROM:
            raise PermanentSendError("Twilio needs SMS_FROM (a number) or TWILIO_MESSAGING_SERVICE_SID")

    def send(self, *, to: str, body: str, outbox_id: str) -> str:
        form = {"To": to, "Body": body}
        if settings.TWILIO_MESSAGING_SERVICE_SID:
            form["MessagingServiceSid"] = settings.TWILIO_MESSAGING_SERVICE_SID
        else:
            form["From"] = settings.SMS_FROM
        if settings.SMS_STATUS_CALLBACK_URL:  # delivery reports, naming the row (reminders.views.sms_status)
            url = settings.SMS_STATUS_CALLBACK_URL
            form["StatusCallback"] = f"{url}{'&' if '?' in url else '?'}outbox={urllib.parse.quote(outbox_id)}"
        credentials = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        status, raw = _post(
            f"{self.base}/2010-04-01/Accounts/{urllib.parse.quote(self.account_sid)}/Messages.json",
            urllib.parse.urlencode(form).encode(),
            {
                "Authorization": f"Basic {credentials}",
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
        )
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            data = {}
        if 200 <= status < 300 and data.get("sid"):
            return str(data["sid"])
        said = " ".join(str(part) for part in (data.get("code"), data.get("message")) if part)
        detail = f"Twilio HTTP {status}: {said or raw[:200].decode('utf-8', 'replace')}"
        if 200 <= status < 300 or _retryable(status):
            raise TransientSendError(detail)
        if str(data.get("code")) == TWILIO_STOPPED:
            raise RecipientStopped(detail)
        raise PermanentSendError(detail)

    def delivery_report(self, params: dict, query: dict) -> DeliveryReport | None:
        """Twilio's status callback: MessageSid, MessageStatus and, when it failed, ErrorCode; the row that asked
        for it in the query (`outbox`, absent from a Messaging Service's own callback). Only `undelivered` and
        `failed` mean the text will not arrive; `queued`, `sent`, `delivered` and the rest change nothing."""
        sid, status = str(params.get("MessageSid") or ""), str(params.get("MessageStatus") or "")
        if not _TWILIO_SID.fullmatch(sid) or not _TWILIO_WORD.fullmatch(status):
            return None
        code = str(params.get("ErrorCode") or "")
        code = code if _TWILIO_CODE.fullmatch(code) else ""
        failed = status in ("undelivered", "failed")
        detail = f"Twilio reported the text {status}" + (f" (error {code})" if code else "")
        stopped = failed and code == TWILIO_STOPPED
        return DeliveryReport(sid, failed, stopped, detail, outbox_id=str(query.get("outbox") or "")[:40])

    def verify_inbound(self, *, url: str, params: dict, headers: dict, query: dict) -> bool:
        """X-Twilio-Signature: base64 HMAC-SHA1 of the URL followed by the sorted POST params."""
        signature = headers.get("X-Twilio-Signature", "")
        payload = url + "".join(f"{key}{params[key]}" for key in sorted(params))
        expected = base64.b64encode(hmac.new(self.auth_token.encode(), payload.encode(), hashlib.sha1).digest())
        return bool(signature) and hmac.compare_digest(expected, signature.encode())


def sms_backend() -> BaseSmsBackend:
    return import_string(settings.SMS_BACKEND)()


def sms_backend_sends_reports() -> bool:
    """Whether the configured provider reports on texts after accepting them (read from the class: no credentials
    needed)."""
    return bool(getattr(import_string(settings.SMS_BACKEND), "sends_delivery_reports", False))


def sms_backend_blocks_after_stop() -> bool:
    """Whether the configured provider keeps refusing a number after its STOP until the patient texts START (read
    from the class: no credentials needed)."""
    return bool(getattr(import_string(settings.SMS_BACKEND), "blocks_after_stop", False))


# --- Webhooks ------------------------------------------------------------------------------------------------------
#
# Signed the Standard Webhooks way (https://www.standardwebhooks.com): headers
#   webhook-id:        the delivery id (the same on every retry: receivers dedupe on it)
#   webhook-timestamp: Unix seconds when this attempt was signed
#   webhook-signature: "v1," + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))
# where key is the base64 part of the endpoint's secret after "whsec_". A receiver
# recomputes it, compares in constant time, and rejects timestamps more than five
# minutes from its clock, so a captured request cannot be replayed later.


def _secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def webhook_signature(*, secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()).decode()


def webhook_verify(*, secret: str, headers: dict, body: bytes, now: datetime, tolerance_seconds: int = 300) -> bool:
    """What a receiving platform does: a valid signature on a fresh timestamp."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        timestamp = int(lowered.get("webhook-timestamp", ""))
    except ValueError:
        return False
    if abs(now.timestamp() - timestamp) > tolerance_seconds:
        return False
    expected = webhook_signature(
        secret=secret, delivery_id=lowered.get("webhook-id", ""), timestamp=timestamp, body=body
    )
    offered = lowered.get("webhook-signature", "").split(" ")  # several may be given during secret rotation
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)


def webhook_url_credentials_problem(url: str, *, stored: str | None = None) -> str:
    """Why a URL being registered (or changed to) must not be taken for its user name or password, or ''.

    They would never be sent (a delivery is authenticated by its signature, and a redirect is not followed), yet
    they would be stored and shown with the URL: in the admin, the outbox row's recipient, a platform's listing.
    Refused when a URL is given, not at delivery, nor when the endpoint's `stored` URL is sent back unchanged (a
    client that PATCHes the whole endpoint, or the admin's form saved): one registered before keeps working.
    """
    if url == stored:
        return ""
    try:
        netloc = urllib.parse.urlsplit(url).netloc
    except ValueError:
        return ""  # not a URL: webhook_url_problem says so
    if "@" in netloc:
        return (
            "Webhook URLs may not carry a user name or password: the service never sends them (each delivery is "
            "signed instead), and they would be stored and shown with the URL."
        )
    return ""


def webhook_url_problem(url: str, *, resolve: bool = False) -> str:
    """Why the service must not POST to `url`, or ''. Private and loopback hosts are refused in production."""
    try:
        parts = urllib.parse.urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # a broken [IPv6] host
        return "Give an absolute https:// URL."
    if parts.scheme not in ("https", "http") or not hostname:
        return "Give an absolute https:// URL."
    try:
        port = parts.port
    except ValueError:  # not a number, or beyond 65535 (a connection would wrap it round to another port)
        port = 0
    if port == 0:
        return "The port must be a number from 1 to 65535."
    if parts.scheme == "http" and not settings.WEBHOOKS_ALLOW_HTTP:
        return "Webhook URLs must use https://."
    if settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS:
        return ""
    try:
        addresses = [ipaddress.ip_address(hostname)]
    except ValueError:
        if not resolve:
            return "" if hostname not in ("localhost",) else "Webhook URLs may not point at this server."
        try:
            addresses = _resolve(hostname)
        except UnicodeError:  # not a host name at all (an empty or over-long label, a character IDNA refuses)
            return "Give an absolute https:// URL."
        except OSError:
            return ""  # unresolvable now: the delivery attempt will fail and retry
    return _address_problem(addresses)


def _resolve(hostname: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address `hostname` stands for now (a literal address: itself), in the resolver's order."""
    try:
        return [ipaddress.ip_address(hostname)]
    except ValueError:
        infos = socket.getaddrinfo(hostname, None)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _not_public(address) -> bool:
    """Not an address of the public internet: private, loopback, link-local, reserved, multicast, and what Python
    calls not global besides (the shared space 100.64.0.0/10 of carrier-grade NAT and cloud-internal services such as
    100.100.100.200); an IPv6 address carrying an IPv4 one (mapped, 6to4, NAT64) is judged by that one too."""
    if address.is_private or address.is_loopback or address.is_link_local or address.is_reserved:
        return True
    if address.is_multicast or not address.is_global:
        return True
    if address.version == 6:
        carried = address.ipv4_mapped or address.sixtofour
        if carried is None and address in _NAT64:
            carried = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        return carried is not None and _not_public(carried)
    return False


def _address_problem(addresses: list) -> str:
    if any(_not_public(a) for a in addresses):
        return "Webhook URLs may not point at private, loopback or link-local addresses."
    return ""


def _delivery_addresses(url: str) -> list[str]:
    """The addresses one delivery connects to: the host resolved once and checked.

    # Race condition (DNS rebinding): a name may answer a public address to a check and a private one to the
    connection made after it. So the connection goes to exactly the addresses checked (`_post`), never to a
    second look-up. Raises PermanentSendError for a refused address, TransientSendError if the name does not
    resolve now.
    """
    parts = urllib.parse.urlsplit(url)
    try:
        addresses = _resolve(parts.hostname)
    except UnicodeError as exc:
        raise PermanentSendError("Give an absolute https:// URL.") from exc
    except OSError as exc:
        raise TransientSendError(f"could not reach {_host(parts)}: {exc}") from exc
    problem = "" if settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS else _address_problem(addresses)
    if problem:
        raise PermanentSendError(problem)
    return [str(address) for address in addresses]


# Of an endpoint's answer only the status counts; its body's start goes into the error text of a failure.
WEBHOOK_ANSWER_LIMIT = 1024


def send_webhook(
    *,
    url: str,
    secret: str,
    delivery_id: str,
    event: str,
    body: bytes,
    now: datetime,
    extra_secrets: tuple[str, ...] | list[str] = (),
) -> str:
    """POST one delivery, signed with `secret` and any `extra_secrets` (a rotated-out secret in its overlap
    window): the header then carries one `v1,` signature per secret, space-separated, and a receiver that
    knows either secret verifies it."""
    problem = webhook_url_problem(url)  # its form, scheme and port; the host is resolved once, below
    if problem:
        raise PermanentSendError(problem)
    addresses = _delivery_addresses(url)
    timestamp = int(now.timestamp())
    signatures = " ".join(
        webhook_signature(secret=key, delivery_id=delivery_id, timestamp=timestamp, body=body)
        for key in (secret, *extra_secrets)
    )
    status, raw = _post(
        url,
        body,
        {
            "Content-Type": "application/json",
            "User-Agent": "clinic-scheduling-webhooks/1",
            "webhook-id": delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signatures,
            "webhook-event": event,
        },
        addresses=addresses,
        limit=WEBHOOK_ANSWER_LIMIT,
    )
    if 200 <= status < 300:
        return f"HTTP {status}"
    detail = f"endpoint answered HTTP {status}: {raw[:200].decode('utf-8', 'replace')}"
    if _retryable(status):
        raise TransientSendError(detail)
    raise PermanentSendError(detail)
