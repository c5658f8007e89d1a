"""Helpers and fixtures shared by reminder test modules: the SMS provider's signed delivery reports and a text it
accepted (`reports`, `sent_text`), a report parked because its webhook could not record it, and the real-Celery
harness's waiting and clean-up of its Redis queue.

Fixtures here are imported by the modules that use them (`# noqa: F401 (fixtures)`).
"""

import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta

import pytest
import redis
from django.db import DatabaseError

from reminders import reports as parked_reports
from reminders.channels import DeliveryReport
from reminders.dispatch import SendOutcome, dispatch_local
from reminders.models import OutboxMessage, ParkedDeliveryReport
from tests.factories import PatientFactory
from tests.reminders.conftest import book, london
from tests.reminders.support import CeleryHarness

# --- Delivery reports from the SMS provider (tests/reminders/test_sms_delivery_reports.py) ---------------------

WEDNESDAY_10 = london(2026, 3, 4, 10)
STATUS_URL = "https://clinic.example/reminders/sms/status/"
SID = "SM" + "0123456789abcdef" * 2
OTHER_SID = "SM" + "fedcba9876543210" * 2


def accepted(sid: str) -> tuple[int, bytes]:
    return 201, f'{{"sid": "{sid}", "status": "queued"}}'.encode()


def signed(params: dict, url: str = STATUS_URL, token: str = "secret-token") -> str:
    """Twilio's scheme: HMAC-SHA1 over the URL and the sorted POST parameters, base64."""
    payload = url + "".join(f"{key}{params[key]}" for key in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def report(client, sid=SID, status="undelivered", error="30003", signature=None, outbox=None, **extra):
    """Twilio's status callback; `outbox` is the row its callback URL names (a Messaging Service's names none)."""
    params = {"MessageSid": sid, "MessageStatus": status, "To": "+447700900123", **extra}
    if error:
        params["ErrorCode"] = error
    query = f"?outbox={outbox}" if outbox else ""
    return client.post(
        f"/reminders/sms/status/{query}",
        params,
        HTTP_X_TWILIO_SIGNATURE=signature or signed(params, url=STATUS_URL + query),
    )


@pytest.fixture
def reports(settings, twilio):
    settings.SMS_STATUS_CALLBACK_URL = STATUS_URL
    return twilio


@pytest.fixture
def sent_text(reports, patient, practitioner, now):
    """The booking's confirmation, texted and accepted by Twilio under SID."""
    reports.script = [accepted(SID)]
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    assert dispatch_local(now=now) == {SendOutcome.SENT: 2}  # the e-mail and the text
    text = OutboxMessage.objects.get(appointment=appointment, channel="sms", kind="confirmation")
    assert (text.status, text.provider_id) == ("sent", SID)
    return text


def database_away(**kwargs):
    raise DatabaseError("the database went away")


# --- Parked delivery reports (tests/reminders/test_parked_lock_wait.py) ----------------------------------------

STOP_DETAIL = "Twilio reported the text failed (error 21610)"


def text_sent(clinic, now, *, phone: str, sid: str, hours_later: int) -> OutboxMessage:
    """A texts-only patient's booking confirmation, as the sender leaves it once Twilio accepted it under `sid`."""
    patient = PatientFactory(clinic=clinic, phone=phone, email="", reminder_channels=["sms"], sms_consent=True)
    appointment = book(patient, "microneedling", WEDNESDAY_10 + timedelta(hours=hours_later), now)
    text = OutboxMessage.objects.get(appointment=appointment, channel="sms", kind="confirmation")
    OutboxMessage.objects.filter(pk=text.pk).update(status="sent", provider_id=sid, recipient=phone, sent_at=now)
    text.refresh_from_db()
    return text


def park(text: OutboxMessage, received_at, *, stopped: bool = False) -> ParkedDeliveryReport:
    """A report on `text` that its webhook could not record (its row locked past ROW_LOCK_WAIT), parked."""
    detail = STOP_DETAIL if stopped else "Twilio reported the text undelivered (error 30003)"
    pk = parked_reports.delivery_report_park(
        channel="sms",
        report=DeliveryReport(
            provider_id=text.provider_id, failed=True, stopped=stopped, detail=detail, outbox_id=str(text.pk)
        ),
        received_at=received_at,
    )
    return ParkedDeliveryReport.objects.get(pk=pk)


# --- Real Celery workers on Redis (tests/reminders/test_celery.py) ----------------------------------------------


def _forget_queue(url: str, queue: str) -> None:
    """Leave the shared Redis as we found it: our queue, its binding, and unacked copies of our tasks."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        for tag, raw in client.hscan_iter("unacked"):
            try:
                routing_key = json.loads(raw)[2]
            except (ValueError, IndexError, TypeError):
                continue
            if routing_key == queue:
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)
    except redis.RedisError:
        pass  # a private Redis that is already gone


def wait_until(predicate, *, timeout: float, what: str, harness: CeleryHarness) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    logs = "\n".join(f"--- {p.log.name}\n{p.output()[-2500:]}" for p in harness.procs)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")
