"""Real Celery workers and beats on a real Redis broker, delivering from the outbox end to end.

Workers and beats run as subprocesses (`celery -A config worker|beat`) against
the test database and a queue of their own, with file backends for e-mail and
SMS, so the tests count exactly what reached a "provider". Fault tests kill a
worker mid-batch, run two workers and two beats at once, and take Redis down.

Delivery guarantee under test (docs/reminders.md): each outbox row is delivered
at least once; more than once only if a worker dies between the provider
accepting it and the database commit (at most the one row in flight).
"""

import os
import re
import signal
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from datetime import time as clock

import pytest
from django.utils import timezone

from clinic.models import ApiClient
from reminders import dispatch
from reminders.channels import webhook_verify
from reminders.models import OutboxMessage, WebhookEndpoint
from tests.conftest import _missing, redis_url
from tests.factories import PatientFactory
from tests.races import held_in_another_connection
from tests.reminders.conftest import LONDON, book
from tests.reminders.helpers import SID, STATUS_URL, _forget_queue, report, wait_until
from tests.reminders.support import CeleryHarness, FakeHttpServer, RedisServer, pool_processes, sms_file_ids

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


# The workers run on the real clock: SMS quiet hours (21:00-08:00 in London) would hold the texts of a run in the
# evening until morning. An empty window turns them off here and in the workers; tests/reminders/test_dispatch.py
# and test_timing.py cover them.
NO_QUIET_HOURS = ("00:00", "00:00")


@pytest.fixture
def harness(transactional_db, tmp_path, settings):
    queue = f"test-reminders-{uuid.uuid4().hex[:10]}"
    settings.REMINDERS_SMS_QUIET_HOURS = NO_QUIET_HOURS
    celery = CeleryHarness(
        broker_url=redis_url(),
        queue=queue,
        tmp=tmp_path,
        extra_env={"REMINDERS_SMS_QUIET_START": NO_QUIET_HOURS[0], "REMINDERS_SMS_QUIET_END": NO_QUIET_HOURS[1]},
    )
    yield celery
    celery.stop_all()
    _forget_queue(celery.broker_url, queue)


def a_working_day(days_ahead: int, hour: int) -> datetime:
    """A Monday-to-Saturday time in London `days_ahead` days from the real today (workers use the real clock)."""
    day = timezone.now().astimezone(LONDON).date() + timedelta(days=days_ahead)
    while day.weekday() == 6:
        day += timedelta(days=1)
    return datetime.combine(day, clock(hour), tzinfo=LONDON)


def due_now_sent(rows) -> bool:
    return all(status == "sent" for status in rows.values_list("status", flat=True))


def outbox_ids_in_mail(mail_dir) -> Counter:
    found = Counter()
    for path in mail_dir.glob("*") if mail_dir.exists() else []:
        found.update(re.findall(r"^X-Outbox-Id: (\S+)$", path.read_text(errors="replace"), flags=re.M))
    return found


@pytest.fixture
def platform(clinic):
    client = ApiClient(name="Platform")
    client.set_new_key()
    client.save()
    client.clinics.add(clinic)
    return client


def test_a_worker_and_a_beat_deliver_due_messages_end_to_end(harness, patient, practitioner, platform):
    with FakeHttpServer(default=(200, b"ok")) as hooks:
        endpoint = WebhookEndpoint.objects.create(client=platform, url=hooks.url + "/events")
        appointment = book(patient, "microneedling", a_working_day(3, 10), timezone.now())
        due = OutboxMessage.objects.filter(appointment=appointment, due_at__lte=timezone.now())
        assert due.count() == 3  # confirmation by e-mail and SMS, and the webhook

        harness.worker("w1")
        harness.beat("b1")
        wait_until(lambda: due_now_sent(due), timeout=30, what="the confirmation and webhook", harness=harness)

        sms = due.get(channel="sms")
        assert sms_file_ids(harness.sms_file) == [str(sms.pk)]
        assert outbox_ids_in_mail(harness.mail_dir) == Counter({str(due.get(channel="email").pk): 1})
        [request] = hooks.requests
        assert webhook_verify(secret=endpoint.secret, headers=request.headers, body=request.body, now=timezone.now())
    # The reminders for later stay where they are: nothing is scheduled ahead in the broker
    assert set(
        OutboxMessage.objects.filter(appointment=appointment, due_at__gt=timezone.now()).values_list(
            "status", flat=True
        )
    ) == {"pending"}


def eight_slow_texts_due(harness, clinic, **env):
    """Eight texts due now, one task for all (REMINDERS_SEND_BATCH_SIZE 8), a provider taking half a second for each
    and a 4 s lease: the rows due and their ids."""
    harness.extra_env |= {
        "SMS_BACKEND": "tests.reminders.support.SlowFileSmsBackend",
        "SLOW_SMS_SECONDS": "0.5",
        "REMINDERS_CLAIM_LEASE_SECONDS": "4",
        "REMINDERS_SEND_BATCH_SIZE": "8",
        **env,
    }
    for hour in range(10, 18):
        patient = PatientFactory(clinic=clinic, reminder_channels=["sms"], sms_consent=True)
        book(patient, "botox", a_working_day(4, hour), timezone.now())
    due = OutboxMessage.objects.filter(due_at__lte=timezone.now())
    wanted = {str(pk) for pk in due.values_list("pk", flat=True)}
    assert len(wanted) == 8
    return due, wanted


def test_a_worker_killed_mid_batch_loses_nothing_and_sends_nothing_twice(harness, clinic, practitioner):
    """One task carries the whole claim (REMINDERS_SEND_BATCH_SIZE 8): each row is committed as it goes,
    so the texts that went before SIGKILL stay marked sent and are not sent again. PostgreSQL and SQLite."""
    due, wanted = eight_slow_texts_due(harness, clinic)

    first = harness.worker("w1")
    harness.beat("b1")
    wait_until(lambda: len(sms_file_ids(harness.sms_file)) >= 3, timeout=30, what="three texts", harness=harness)
    first.kill()  # SIGKILL inside the one task: no warm shutdown, no acknowledgement
    went_before = set(sms_file_ids(harness.sms_file))
    marked_before = {str(pk) for pk in due.filter(status="sent").values_list("pk", flat=True)}
    assert 3 <= len(went_before) < 8, "the batch was not interrupted"
    assert len(went_before - marked_before) <= 1  # all but the text in flight were committed as they went
    log = first.log.read_text(errors="replace")
    assert "Task reminders.send_batch[" in log and "Task reminders.send_message[" not in log  # one task, the batch

    harness.worker("w2")
    wait_until(lambda: due_now_sent(due), timeout=45, what="every text after the crash", harness=harness)

    delivered = Counter(sms_file_ids(harness.sms_file))
    assert set(delivered) == wanted  # nothing lost
    # None twice: the row in flight is in doubt when claimed again, and the provider (the file) is asked first.
    assert delivered == Counter(dict.fromkeys(wanted, 1))
    for pk in went_before - marked_before:  # accepted by the provider, never marked by the killed worker
        row = OutboxMessage.objects.get(pk=pk)
        assert (row.status, row.payload.get("found_sent"), row.in_doubt) == ("sent", True, False)


def test_a_pool_process_killed_mid_batch_is_not_run_again_at_once_and_sends_nothing_twice(
    harness, clinic, practitioner
):
    """The OOM killer takes the pool process sending a batch, not the worker. Celery (acks late, and the task handed
    back when its worker is lost) ran the task again at once under the same claim, and the text in flight, taken by
    the provider and not yet marked, went a second time without the provider being asked. The send tasks are not
    handed back (reminders.tasks): their rows wait out the lease and are claimed again in doubt, asked about first.
    PostgreSQL and SQLite."""
    # Each text is in the provider's hands half a second before it can be marked sent.
    due, wanted = eight_slow_texts_due(harness, clinic, SLOW_SMS_AFTER="1")

    worker = harness.worker("w1", pool="prefork")
    harness.beat("b1")
    wait_until(lambda: len(sms_file_ids(harness.sms_file)) >= 3, timeout=30, what="three texts", harness=harness)
    [pool_process] = pool_processes(worker)
    os.kill(pool_process, signal.SIGKILL)  # the worker lives on and starts another pool process
    went_before = set(sms_file_ids(harness.sms_file))
    marked_before = {str(pk) for pk in due.filter(status="sent").values_list("pk", flat=True)}
    assert 3 <= len(went_before) < 8, "the batch was not interrupted"

    wait_until(lambda: due_now_sent(due), timeout=45, what="every text after the crash", harness=harness)

    assert worker.alive
    delivered = Counter(sms_file_ids(harness.sms_file))
    assert delivered == Counter(dict.fromkeys(wanted, 1))  # nothing lost, nothing twice
    log = worker.output(tail=1_000_000)
    assert "WorkerLostError" in log  # the pool process did die mid-task ...
    assert len(re.findall(r"Task reminders\.send_batch\[\S+\] received", log)) >= 2  # ... and the rest went in others
    batch_tasks = Counter(re.findall(r"Task reminders\.send_batch\[(\S+)\] received", log))
    assert max(batch_tasks.values()) == 1  # no task was handed back and run again
    for pk in went_before - marked_before:  # in the provider's hands when killed: asked about, not sent again
        row = OutboxMessage.objects.get(pk=pk)
        assert (row.status, row.payload.get("found_sent")) == ("sent", True)


@pytest.mark.postgres
def test_two_workers_and_two_beats_send_each_message_once(harness, clinic, practitioner, platform):
    with FakeHttpServer(default=(204, b"")) as hooks:
        WebhookEndpoint.objects.create(client=platform, url=hooks.url + "/events")
        for hour in range(9, 14):
            for minute in (0, 30):
                patient = PatientFactory(clinic=clinic, reminder_channels=["email", "sms"], sms_consent=True)
                book(patient, "botox", a_working_day(5, hour).replace(minute=minute), timezone.now())
        due = OutboxMessage.objects.filter(due_at__lte=timezone.now())
        assert due.count() == 30

        for name in ("w1", "w2"):
            harness.worker(name)
        for name in ("b1", "b2"):
            harness.beat(name)
        wait_until(lambda: due_now_sent(due), timeout=45, what="all 30 messages", harness=harness)
        time.sleep(1)  # let any stray duplicate surface before counting

        texts = Counter(sms_file_ids(harness.sms_file))
        mails = outbox_ids_in_mail(harness.mail_dir)
        posts = Counter({k.lower(): v for k, v in r.headers.items()}["webhook-id"] for r in hooks.requests)
    assert texts == Counter({str(pk): 1 for pk in due.filter(channel="sms").values_list("pk", flat=True)})
    assert mails == Counter({str(pk): 1 for pk in due.filter(channel="email").values_list("pk", flat=True)})
    assert posts == Counter({str(pk): 1 for pk in due.filter(channel="webhook").values_list("pk", flat=True)})


def test_redis_down_does_not_fail_a_booking_and_messages_go_once_it_is_back(
    harness, tmp_path, patient, clinic, practitioner
):
    import shutil

    if shutil.which("redis-server") is None:
        _missing("this test starts its own redis-server, which is not installed")
    broker = RedisServer(tmp_path)
    broker.start()
    try:
        harness.broker_url = broker.url()
        harness.extra_env |= {"REMINDERS_CLAIM_LEASE_SECONDS": "3"}
        harness.worker("w1")
        harness.beat("b1")
        first = book(patient, "botox", a_working_day(3, 10), timezone.now())
        wait_until(
            lambda: due_now_sent(first.outbox_messages.filter(kind="confirmation")),
            timeout=30,
            what="delivery while Redis is up",
            harness=harness,
        )

        broker.kill()
        other = PatientFactory(clinic=clinic, reminder_channels=["sms"], sms_consent=True)
        second = book(other, "botox", a_working_day(3, 12), timezone.now())  # succeeds: the outbox is in the DB
        [row] = second.outbox_messages.filter(kind="confirmation")
        time.sleep(1.5)
        row.refresh_from_db()
        assert row.status in ("pending", "sending")  # nothing can deliver it yet, and nothing lost it

        broker.start()  # the same port: workers and beats reconnect by themselves
        wait_until(
            lambda: due_now_sent(second.outbox_messages.filter(kind="confirmation")),
            timeout=60,
            what="delivery after Redis came back",
            harness=harness,
        )
        assert Counter(sms_file_ids(harness.sms_file))[str(row.pk)] == 1
    finally:
        harness.stop_all()
        broker.kill()


@pytest.mark.postgres  # a row lock to wait for (SQLite has none)
def test_a_delivery_report_the_web_could_not_record_is_recorded_by_a_worker(
    harness, client, settings, twilio, patient, practitioner, monkeypatch
):
    """Twilio sends a status callback once: one that could not be recorded (here the row's lock held past
    ROW_LOCK_WAIT, as by a sender stuck on the provider) is answered 202 and handed to the workers, which record it
    once the row is free (docs/reminders.md, "Delivery reports from the providers")."""
    if settings.CELERY_BROKER_URL != harness.broker_url:
        pytest.skip("this process's Celery app publishes to another broker than the workers' (set REDIS_URL)")
    settings.SMS_STATUS_CALLBACK_URL = STATUS_URL
    settings.CELERY_TASK_DEFAULT_QUEUE = harness.queue
    monkeypatch.setattr(dispatch, "ROW_LOCK_WAIT", "200ms")  # in this process only: the worker waits as it would
    appointment = book(patient, "microneedling", a_working_day(3, 10), timezone.now())
    text = OutboxMessage.objects.get(appointment=appointment, kind="confirmation", channel="sms")
    OutboxMessage.objects.filter(pk=text.pk).update(
        status="sent", provider_id=SID, recipient=patient.phone, sent_at=timezone.now()
    )

    def stuck_sender():
        OutboxMessage.objects.select_for_update().filter(pk=text.pk).exists()

    with held_in_another_connection(stuck_sender):
        assert report(client, outbox=text.pk).status_code == 202
    text.refresh_from_db()
    assert text.status == "sent"  # not recorded yet: nothing consumes the queue

    harness.worker("w1")
    wait_until(
        lambda: OutboxMessage.objects.get(pk=text.pk).status == "failed",
        timeout=30,
        what="the worker recording the report",
        harness=harness,
    )
    text.refresh_from_db()
    assert text.last_error.startswith("Twilio reported the text undelivered (error 30003) after it was sent, at ")
