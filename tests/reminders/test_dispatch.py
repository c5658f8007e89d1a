"""Claiming and sending: exclusive claims, idempotent sends, retries with backoff, visible give-up.

These run the dispatch services directly (no broker); test_celery.py runs the
same code in real Celery workers.
"""

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection, connections

from reminders import dispatch
from reminders.dispatch import SendOutcome, outbox_claim_due, outbox_send
from reminders.models import OutboxMessage, OutboxStatus, ReminderTemplate
from tests.reminders.conftest import book, london
from tests.reminders.support import ScriptedSmsBackend

WEDNESDAY_10 = london(2026, 3, 4, 10)


@pytest.fixture
def scripted_sms(settings):
    settings.SMS_BACKEND = "tests.reminders.support.ScriptedSmsBackend"
    ScriptedSmsBackend.script, ScriptedSmsBackend.sent = [], []
    yield ScriptedSmsBackend
    ScriptedSmsBackend.script, ScriptedSmsBackend.sent = [], []


@pytest.fixture
def sms_row(patient, practitioner, now):
    """The booking confirmation SMS, due now."""
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    return OutboxMessage.objects.get(appointment=appointment, kind="confirmation", channel="sms")


def claim_one(row, now, **kwargs) -> dispatch.Claim:
    [claim] = [c for c in outbox_claim_due(now=now, **kwargs) if c.message_id == row.pk]
    return claim


def test_a_claim_marks_due_rows_sending_under_a_lease_and_skips_what_is_not_due(sms_row, now):
    claims = outbox_claim_due(now=now, lease=timedelta(minutes=5))

    assert len(claims) == 2  # the two confirmations; pre-care and reminder are due tomorrow
    sms_row.refresh_from_db()
    assert (sms_row.status, sms_row.claimed_until, sms_row.attempts) == ("sending", now + timedelta(minutes=5), 1)
    assert outbox_claim_due(now=now) == []  # a claimed row is nobody else's until its lease runs out


def test_sending_twice_delivers_once(sms_row, scripted_sms, now):
    claim = claim_one(sms_row, now)

    assert outbox_send(message_id=claim.message_id, claim_token=claim.token, now=now) == SendOutcome.SENT
    assert outbox_send(message_id=claim.message_id, claim_token=claim.token, now=now) == SendOutcome.STALE
    assert len(scripted_sms.sent) == 1
    sms_row.refresh_from_db()
    assert (sms_row.status, sms_row.provider_id, sms_row.recipient, sms_row.sent_at) == (
        "sent",
        f"scripted-{sms_row.pk}",
        "+447700900123",
        now,
    )


def test_after_the_lease_runs_out_only_the_new_claim_may_send(sms_row, scripted_sms, now):
    first = claim_one(sms_row, now, lease=timedelta(minutes=1))
    second = claim_one(sms_row, now + timedelta(minutes=2))  # the first sender is presumed dead

    assert outbox_send(message_id=first.message_id, claim_token=first.token, now=now) == SendOutcome.STALE
    assert outbox_send(message_id=second.message_id, claim_token=second.token, now=now) == SendOutcome.SENT
    sms_row.refresh_from_db()
    assert (sms_row.status, sms_row.attempts, len(scripted_sms.sent)) == ("sent", 2, 1)


def test_provider_errors_are_retried_with_exponential_backoff_then_given_up_visibly(
    sms_row, scripted_sms, settings, now
):
    settings.REMINDERS_MAX_ATTEMPTS = 3
    settings.REMINDERS_RETRY_BASE_SECONDS = 60
    scripted_sms.script = ["transient"] * 3
    moment = now
    for expected_wait in (timedelta(seconds=60), timedelta(seconds=120)):
        claim = claim_one(sms_row, moment)
        assert outbox_send(message_id=claim.message_id, claim_token=claim.token, now=moment) == SendOutcome.RETRY
        sms_row.refresh_from_db()
        assert (sms_row.status, sms_row.due_at) == ("pending", moment + expected_wait)
        assert sms_row.last_error == f"attempt {sms_row.attempts}: provider answered 503"
        assert outbox_claim_due(now=moment + expected_wait - timedelta(seconds=1)) == []  # not before the backoff
        moment += expected_wait

    claim = claim_one(sms_row, moment)
    assert outbox_send(message_id=claim.message_id, claim_token=claim.token, now=moment) == SendOutcome.FAILED
    sms_row.refresh_from_db()
    assert sms_row.status == OutboxStatus.FAILED
    assert sms_row.last_error == "gave up after 3 attempts; last error: provider answered 503"
    assert sms_row.pk not in {c.message_id for c in outbox_claim_due(now=moment + timedelta(days=1))}


def test_a_permanent_refusal_fails_at_once(sms_row, scripted_sms, now):
    scripted_sms.script = ["permanent"]
    claim = claim_one(sms_row, now)
    assert outbox_send(message_id=claim.message_id, claim_token=claim.token, now=now) == SendOutcome.FAILED
    sms_row.refresh_from_db()
    assert (sms_row.status, sms_row.attempts) == ("failed", 1)
    assert sms_row.last_error == "permanent failure: provider refused the number"


def test_a_template_broken_outside_the_admin_fails_that_message_visibly(sms_row, now):
    # The admin validates templates on save; a direct database edit does not.
    ReminderTemplate.objects.filter(pk=sms_row.template_id).update(sms_text="{% if %}")
    claim = claim_one(sms_row, now)
    assert outbox_send(message_id=claim.message_id, claim_token=claim.token, now=now) == SendOutcome.FAILED
    sms_row.refresh_from_db()
    assert sms_row.last_error.startswith("permanent failure: template error:")


def test_a_sender_that_keeps_dying_runs_out_of_attempts(sms_row, settings, now):
    settings.REMINDERS_MAX_ATTEMPTS = 2
    lease = timedelta(minutes=1)
    claim_one(sms_row, now, lease=lease)  # claimed; the sender dies
    claim_one(sms_row, now + timedelta(minutes=2), lease=lease)  # claimed again; dies again
    outbox_claim_due(now=now + timedelta(minutes=4), lease=lease)

    sms_row.refresh_from_db()
    assert sms_row.status == OutboxStatus.FAILED
    assert sms_row.last_error == "gave up: the sender stopped 2 times without finishing"


def test_claims_the_broker_could_not_take_are_handed_back(sms_row, now):
    handed = []

    def enqueue(claim):
        if handed:
            raise ConnectionError("Redis is down")
        handed.append(claim)

    assert dispatch.dispatch_due(now=now, enqueue=enqueue) == 1
    statuses = dict(OutboxMessage.objects.filter(kind="confirmation").values_list("pk", "status"))
    assert statuses[handed[0].message_id] == "sending"
    [released] = [pk for pk in statuses if pk != handed[0].message_id]
    row = OutboxMessage.objects.get(pk=released)
    assert (row.status, row.attempts, row.claim_token) == ("pending", 0, None)


@pytest.fixture
def twelve_due(clinic, practitioner, now):
    """Six bookings of six patients: twelve confirmations (e-mail and SMS) due now."""
    from tests.factories import PatientFactory

    for hour in range(10, 16):
        patient = PatientFactory(clinic=clinic, reminder_channels=["email", "sms"], sms_consent=True)
        book(patient, "botox", london(2026, 3, 4, hour), now)
    due = set(OutboxMessage.objects.filter(due_at__lte=now).values_list("pk", flat=True))
    assert len(due) == 12
    return due


def _handed(now, **kwargs) -> tuple[int, list]:
    tasks: list[list] = []
    return dispatch.dispatch_due_batches(now=now, enqueue=tasks.append, **kwargs), tasks


def test_a_full_claim_is_followed_by_another_in_the_same_run(twelve_due, settings, now, caplog):
    settings.REMINDERS_BATCH_SIZE = 5
    count, tasks = _handed(now, per_task=5, rounds=10, budget=60)

    assert count == 12
    assert [len(task) for task in tasks] == [5, 5, 2]  # three claims: full, full, the rest
    assert {c.message_id for task in tasks for c in task} == twelve_due
    assert not OutboxMessage.objects.filter(status="pending", due_at__lte=now).exists()
    assert "behind" not in caplog.text


@pytest.mark.parametrize("batch, rounds", [(6, 10), (6, 2)])
def test_a_run_that_claims_exactly_what_is_due_is_not_behind(twelve_due, settings, now, caplog, batch, rounds):
    settings.REMINDERS_BATCH_SIZE = batch
    count, tasks = _handed(now, per_task=batch, rounds=rounds, budget=60)

    assert count == 12
    assert [len(task) for task in tasks] == [6, 6]
    assert "behind" not in caplog.text


def test_a_run_that_stops_with_more_due_says_the_outbox_is_behind(twelve_due, settings, now, caplog):
    settings.REMINDERS_BATCH_SIZE = 5
    count, tasks = _handed(now, per_task=5, rounds=2, budget=60)

    assert count == 10
    assert OutboxMessage.objects.filter(status="pending", due_at__lte=now).count() == 2  # the next run's
    assert "outbox: behind: claimed 10 due message(s) in 2 claim(s) this run (10 in flight) and more are due" in (
        caplog.text
    )


def test_a_run_asked_for_no_rounds_still_claims_once(twelve_due, settings, now):
    settings.REMINDERS_BATCH_SIZE = 5
    assert _handed(now, per_task=5, rounds=0, budget=60)[0] == 5


def test_a_run_claims_again_only_within_its_time_budget(twelve_due, settings, now, caplog):
    settings.REMINDERS_BATCH_SIZE = 5
    count, _ = _handed(now, per_task=5, rounds=10, budget=0)

    assert count == 5  # one claim: the budget was spent
    assert "in 1 claim(s) this run (5 in flight) and more are due" in caplog.text


def test_a_run_stops_claiming_while_the_workers_have_enough_in_flight(twelve_due, settings, now, caplog):
    """Claimed rows the workers have not sent yet wait in the broker: past REMINDERS_MAX_IN_FLIGHT the run
    leaves the rest for the next one, so no claim queues long enough to outlive its lease."""
    settings.REMINDERS_BATCH_SIZE = 5
    settings.REMINDERS_MAX_IN_FLIGHT = 5
    count, _ = _handed(now, per_task=5, rounds=10, budget=60)

    assert count == 5
    assert "(5 in flight) and more are due" in caplog.text
    settings.REMINDERS_MAX_IN_FLIGHT = 10
    OutboxMessage.objects.filter(status="sending").update(status="sent")  # the workers sent them
    assert _handed(now, per_task=5, rounds=10, budget=60)[0] == 7  # the rest: 5, then 2


def test_a_claim_takes_no_more_than_the_room_left_in_flight(twelve_due, settings, now, caplog):
    settings.REMINDERS_BATCH_SIZE = 5
    settings.REMINDERS_MAX_IN_FLIGHT = 7
    assert len(outbox_claim_due(now=now, limit=3)) == 3  # claimed by an earlier run, not sent yet

    count, tasks = _handed(now, per_task=5, rounds=10, budget=60)

    assert count == 4 and [len(task) for task in tasks] == [4]
    assert "(7 in flight) and more are due" in caplog.text


def test_a_run_with_no_room_in_flight_claims_nothing(twelve_due, settings, now):
    settings.REMINDERS_MAX_IN_FLIGHT = 3
    outbox_claim_due(now=now, limit=3)
    assert _handed(now, per_task=5, rounds=10, budget=60) == (0, [])


def test_a_claim_whose_lease_ran_out_is_not_in_flight(twelve_due, settings, now):
    """A worker died holding them: they are due again, and must not keep the room taken."""
    settings.REMINDERS_BATCH_SIZE = 5
    settings.REMINDERS_MAX_IN_FLIGHT = 5
    outbox_claim_due(now=now, limit=5)
    OutboxMessage.objects.filter(status="sending").update(claimed_until=now - timedelta(seconds=1))

    count, _ = _handed(now, per_task=5, rounds=10, budget=60)

    assert count == 5  # taken again (as in doubt), not blocked by their lapsed claims


def test_a_broker_lost_in_a_later_claim_hands_back_that_claims_rows_only(twelve_due, settings, now):
    settings.REMINDERS_BATCH_SIZE = 5
    tasks: list[list] = []

    def enqueue(batch):
        if len(tasks) == 1:
            raise ConnectionError("Redis is down")
        tasks.append(batch)

    assert dispatch.dispatch_due_batches(now=now, enqueue=enqueue, per_task=5, rounds=10, budget=60) == 5
    sent_on = {c.message_id for c in tasks[0]}
    rows = OutboxMessage.objects.filter(pk__in=twelve_due)
    assert set(rows.filter(status="sending").values_list("pk", flat=True)) == sent_on
    handed_back = rows.filter(status="pending")
    assert handed_back.count() == 7  # the second claim's 5 and the 2 unclaimed
    assert set(handed_back.values_list("attempts", "claim_token")) == {(0, None)}


def test_held_rows_are_never_claimed(patient, practitioner, now):
    from tests.factories import PatientConditionFactory

    PatientConditionFactory(patient=patient, condition_id="eczema", status="history")
    book(patient, "microneedling", WEDNESDAY_10, now)
    assert outbox_claim_due(now=now + timedelta(days=30)) == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_split_the_rows_between_dispatchers(clinic, practitioner, now):
    """Two dispatchers claiming at once (SKIP LOCKED) get disjoint sets that cover every due row."""
    from tests.factories import PatientFactory

    for hour in range(10, 16):
        patient = PatientFactory(clinic=clinic, reminder_channels=["email", "sms"], sms_consent=True)
        book(patient, "botox", london(2026, 3, 4, hour), now)
    due = set(OutboxMessage.objects.filter(due_at__lte=now).values_list("pk", flat=True))
    results: list[list] = [[], []]
    barrier = threading.Barrier(2)

    def dispatcher(index):
        try:
            barrier.wait()
            while batch := outbox_claim_due(now=now, limit=2):
                results[index].extend(c.message_id for c in batch)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=dispatcher, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert connection.vendor == "postgresql"
    assert len(due) == 12
    assert set(results[0]).isdisjoint(results[1])
    assert set(results[0]) | set(results[1]) == due


def test_a_backlog_claimed_in_quiet_hours_is_not_texted_at_night(sms_row, scripted_sms, now):
    """Workers were down overnight: the SMS due yesterday waits for 08:00; e-mail is not held."""
    three_am = london(2026, 3, 3, 3, 0)
    claims = outbox_claim_due(now=three_am)

    outcomes = {c.message_id: outbox_send(message_id=c.message_id, claim_token=c.token, now=three_am) for c in claims}

    assert outcomes[sms_row.pk] == SendOutcome.DEFERRED
    assert scripted_sms.sent == []
    sms_row.refresh_from_db()
    assert (sms_row.status, sms_row.due_at, sms_row.attempts) == ("pending", london(2026, 3, 3, 8, 0), 0)
    assert SendOutcome.SENT in outcomes.values()  # the e-mail confirmation went
    dispatch.dispatch_local(now=london(2026, 3, 3, 8, 0))
    assert str(sms_row.pk) in [sent["outbox_id"] for sent in scripted_sms.sent]
    sms_row.refresh_from_db()
    assert (sms_row.status, sms_row.sent_at) == ("sent", london(2026, 3, 3, 8, 0))


def test_a_pre_care_text_that_quiet_hours_would_push_past_the_appointment_is_skipped(
    patient, practitioner, scripted_sms, now, settings
):
    settings.REMINDERS_SMS_QUIET_HOURS = ("21:00", "10:30")  # quiet until after a 10:00 appointment
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    row = OutboxMessage.objects.filter(appointment=appointment, channel="sms", template__anchor="start").first()
    OutboxMessage.objects.filter(pk=row.pk).update(due_at=london(2026, 3, 4, 6, 0), status=OutboxStatus.PENDING)

    dispatch.dispatch_local(now=london(2026, 3, 4, 6, 0))

    row.refresh_from_db()
    assert (row.status, row.last_error) == ("skipped", "quiet hours last until the appointment starts")
    assert scripted_sms.sent == []


def test_a_retry_that_meets_a_newer_copy_is_superseded_not_stuck(sms_row, scripted_sms, now):
    """While a row is being sent, a booking change plans a fresh copy; a transient failure then
    may not put the old row back to pending (one unsent copy only): it is cancelled, visibly."""
    claim = claim_one(sms_row, now)
    newer = OutboxMessage.objects.get(pk=sms_row.pk)
    newer.pk, newer.status, newer.claim_token, newer.claimed_until, newer.attempts = (
        uuid.uuid4(),
        OutboxStatus.PENDING,
        None,
        None,
        0,
    )
    newer.save(force_insert=True)
    scripted_sms.script = ["transient"]

    outcome = outbox_send(message_id=claim.message_id, claim_token=claim.token, now=now)

    sms_row.refresh_from_db()
    assert outcome == SendOutcome.CANCELLED
    assert (sms_row.status, sms_row.last_error, sms_row.claim_token) == (
        "cancelled",
        "superseded by a newer copy",
        None,
    )
    assert OutboxMessage.objects.get(pk=newer.pk).status == OutboxStatus.PENDING


def test_a_local_batch_that_runs_past_21_00_judges_each_text_when_it_goes(
    patient, practitioner, clinic, scripted_sms, now
):
    """Two texts are due at 20:59; the first send takes two minutes: the second is held till 08:00."""
    from tests.factories import PatientFactory

    other = PatientFactory(clinic=clinic, phone="+447911123457", reminder_channels=["sms"], sms_consent=True)
    rows = []
    for who, hour in ((patient, 10), (other, 11)):
        appointment = book(who, "botox", london(2026, 3, 5, hour), now)
        rows.append(OutboxMessage.objects.get(appointment=appointment, kind="confirmation", channel="sms"))
    OutboxMessage.objects.filter(pk__in=[r.pk for r in rows]).update(due_at=london(2026, 3, 2, 20, 59))
    OutboxMessage.objects.exclude(pk__in=[r.pk for r in rows]).update(status=OutboxStatus.CANCELLED)
    moments = iter([london(2026, 3, 2, 20, 59), london(2026, 3, 2, 21, 1)])

    counts = dispatch.dispatch_local(now=london(2026, 3, 2, 20, 59), clock=lambda: next(moments))

    assert counts == {SendOutcome.SENT: 1, SendOutcome.DEFERRED: 1}
    assert len(scripted_sms.sent) == 1
    held = OutboxMessage.objects.get(pk__in=[r.pk for r in rows], status=OutboxStatus.PENDING)
    assert held.due_at == london(2026, 3, 3, 8, 0)


# --- A send that raises something unexpected ----------------------------------------------------------------------


class BuggySmsBackend(ScriptedSmsBackend):
    """Raises what no send path expects when its script says "bug" (before the provider takes the text) or
    "bug after" (once it has), then behaves; can be asked whether it accepted a text."""

    def send(self, *, to: str, body: str, outbox_id: str) -> str:
        if ScriptedSmsBackend.script[:1] in (["bug"], ["bug after"]):
            if ScriptedSmsBackend.script.pop(0) == "bug after":
                ScriptedSmsBackend.sent.append({"to": to, "body": body, "outbox_id": outbox_id})
            raise RuntimeError("the backend's own bug")
        return super().send(to=to, body=body, outbox_id=outbox_id)

    def accepted(self, *, outbox_id: str) -> str | None:
        return f"scripted-{outbox_id}" if any(s["outbox_id"] == outbox_id for s in ScriptedSmsBackend.sent) else None


@pytest.fixture
def buggy_sms(scripted_sms, settings):
    settings.SMS_BACKEND = "tests.reminders.test_dispatch.BuggySmsBackend"
    settings.REMINDERS_RETRY_BASE_SECONDS = 60
    return scripted_sms


@pytest.fixture
def three_texts(clinic, practitioner, now):
    """Three booking confirmations by SMS to three patients, due now."""
    from tests.factories import PatientFactory

    for hour in (10, 11, 12):
        patient = PatientFactory(clinic=clinic, reminder_channels=["sms"], sms_consent=True)
        book(patient, "botox", london(2026, 3, 4, hour), now)
    rows = OutboxMessage.objects.filter(due_at__lte=now)
    assert rows.count() == 3
    return rows


def test_a_send_that_raises_is_a_failed_attempt_of_its_row_and_the_batch_goes_on(three_texts, buggy_sms, now, caplog):
    buggy_sms.script = ["bug"]
    claims = outbox_claim_due(now=now)

    outcomes = dispatch.outbox_send_batch(
        message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=now
    )

    assert sorted(outcomes.values()) == [SendOutcome.RETRY, SendOutcome.SENT, SendOutcome.SENT]
    [raised] = [pk for pk, outcome in outcomes.items() if outcome == SendOutcome.RETRY]
    row = OutboxMessage.objects.get(pk=raised)
    assert (row.status, row.attempts, row.due_at, row.claim_token, row.in_doubt) == (
        "pending",
        1,
        now + timedelta(seconds=60),
        None,
        True,  # it may have gone before the error: the next sender asks first
    )
    assert row.last_error == "attempt 1: the send raised RuntimeError: the backend's own bug"
    # Logged once as an error with the traceback (and once as the retry every failed attempt logs).
    [logged] = [r for r in caplog.records if "the send raised" in r.getMessage() and r.levelname == "ERROR"]
    assert logged.exc_info is not None

    assert dispatch.dispatch_local(now=now + timedelta(seconds=60)) == {SendOutcome.SENT: 1}
    delivered = [s["outbox_id"] for s in buggy_sms.sent]
    assert sorted(delivered) == sorted(str(pk) for pk in outcomes)  # each once


def test_a_send_that_raises_after_the_provider_took_the_text_does_not_send_it_again(sms_row, buggy_sms, now):
    buggy_sms.script = ["bug after"]
    claim = claim_one(sms_row, now)
    assert outbox_send(message_id=claim.message_id, claim_token=claim.token, now=now) == SendOutcome.RETRY

    sms_row.refresh_from_db()
    assert (sms_row.in_doubt, sms_row.in_doubt_since) == (True, now)  # the attempt in doubt began with this send

    assert dispatch.dispatch_local(now=now + timedelta(seconds=60)) == {SendOutcome.FOUND_SENT: 1}
    sms_row.refresh_from_db()
    assert (sms_row.status, sms_row.in_doubt, len(buggy_sms.sent)) == ("sent", False, 1)
    # Dated when it went (the attempt), not when it was found: what the patient last heard is read in that order.
    assert (sms_row.sent_at, sms_row.in_doubt_since) == (now, None)


def test_a_row_whose_sender_stopped_is_dated_by_the_claim_it_was_sent_under_when_found(sms_row, buggy_sms, now):
    """The sender stopped after the provider took the text (the row left `sending`): the claim that takes the row
    again once its lease ran out marks it in doubt since the stopped claim began (`claimed_at`); a claim
    after that keeps the first moment; found sent, the row's sent_at is that moment."""
    lease = timedelta(minutes=5)
    claim = claim_one(sms_row, now, lease=lease)
    sms_row.refresh_from_db()
    assert (sms_row.claimed_at, sms_row.claimed_until) == (now, now + lease)
    buggy_sms.sent.append({"to": "", "body": "", "outbox_id": str(claim.message_id)})  # the provider has it
    later = now + lease + timedelta(seconds=1)
    claim_one(sms_row, later, lease=lease)  # taken again, the sender stopped again (nothing recorded)
    sms_row.refresh_from_db()
    assert (sms_row.in_doubt, sms_row.in_doubt_since) == (True, now)

    latest = claim_one(sms_row, later + lease + timedelta(seconds=1), lease=lease)
    sms_row.refresh_from_db()
    assert sms_row.in_doubt_since == now  # the first attempt in doubt, not the second
    outcome = outbox_send(message_id=latest.message_id, claim_token=latest.token, now=later + lease * 2)
    assert outcome == SendOutcome.FOUND_SENT
    sms_row.refresh_from_db()
    assert (sms_row.status, sms_row.sent_at, sms_row.in_doubt, sms_row.in_doubt_since) == ("sent", now, False, None)


def test_a_send_that_raises_on_its_last_attempt_is_given_up_visibly(sms_row, buggy_sms, settings, now):
    settings.REMINDERS_MAX_ATTEMPTS = 1
    buggy_sms.script = ["bug"]
    claim = claim_one(sms_row, now)
    assert outbox_send(message_id=claim.message_id, claim_token=claim.token, now=now) == SendOutcome.FAILED
    sms_row.refresh_from_db()
    assert sms_row.status == OutboxStatus.FAILED
    assert (
        sms_row.last_error
        == "gave up after 1 attempts; last error: the send raised RuntimeError: the backend's own bug"
    )


def test_a_send_that_raised_records_nothing_on_a_row_claimed_again_since(sms_row, now):
    claim_one(sms_row, now)
    message = OutboxMessage.objects.select_related(*dispatch._WITH_RELATIONS).get(pk=sms_row.pk)

    outcome = dispatch._send_raised(message, uuid.uuid4(), now, RuntimeError("late"))  # another claim's token

    assert outcome == SendOutcome.STALE
    sms_row.refresh_from_db()
    assert (sms_row.status, sms_row.last_error, sms_row.in_doubt) == ("sending", "", False)


def test_a_send_that_raised_and_cannot_be_recorded_is_left_to_its_lease(sms_row, now, monkeypatch):
    from django.db import OperationalError

    claim = claim_one(sms_row, now)

    def down(*args, **kwargs):
        raise OperationalError("the database went away")

    monkeypatch.setattr(dispatch, "_send_one", down)
    monkeypatch.setattr(dispatch, "lock_fresh", down)

    assert outbox_send(message_id=claim.message_id, claim_token=claim.token, now=now) == SendOutcome.BUSY
    sms_row.refresh_from_db()
    assert (sms_row.status, sms_row.claim_token) == ("sending", claim.token)  # claimed again when the lease runs out
