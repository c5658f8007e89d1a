"""Review of 1360b81 (reads made before, or in the same statement as, the lock that serialises them), on PostgreSQL.

1360b81 mended two orders of read and lock between the reminder dispatcher and a booking change: a cancel or a
move now reads what the patient has heard once it has locked the appointment's unsent rows
(reminders.services), and a send that had to wait for its row's lock reads the booking in a second statement
(reminders.claimed.lock_fresh). Each interleaving here is forced (threads, threading.Event, a pause point
monkeypatched in, tests/races.py's `until_a_connection_waits_for_a_lock`), never left to timing.

* Defects it found, mended (each test failed before its mend):
  - A move back to the time the patient last heard, made while the move notice to the other time is in the
    provider's hands: the move read what the patient had heard without waiting for a message being sent (it
    locked only unsent rows), planned no notice, and the notice in flight was the patient's last word, naming a
    time the visit no longer had. Now the move waits for a time-naming message being sent
    (reminders.services._rescheduled_notice).
  - Staff's 'send again' looked for a newer copy of the message before, and apart from, the lock its retry
    takes: a newer copy claimed in between was not seen, and the reminder reached the patient twice. Now the
    newer copies are locked, then looked at, in the retry's transaction (dispatch.patient_message_send_again).
* Guards (pass): a change that commits while the send's locking read runs (after its snapshot, before it
  reaches the row: the race every send has with a change committing just after its read) is followed by the
  truth; a cancel while the move notice is in the provider's hands is followed by the cancellation;
  a STOP that holds the claimed text's row makes the send read the patient again (no text after a STOP); a
  booking that waited for the patient's lock (its rule book version read before the wait) while a rule
  tightened ends refused or flagged by the rule's re-check.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from functools import partial

import pytest
from django.core import mail
from django.db import connection
from django.db.models import IntegerField
from django.db.models.expressions import RawSQL

from reminders import channels, consent, content, dispatch
from reminders.channels import LocmemSmsBackend
from reminders.models import MessageKind, OutboxMessage, OutboxStatus
from scheduler.booking import appointment_cancel, appointment_reschedule
from tests.factories import PatientFactory
from tests.qa.helpers import (  # noqa: F401 - fixtures
    NOW,
    _at,
    _change_held_after_the_claim,
    _told_in_order,
    assert_invariants,
    fresh,
    local,
    quiet_world,
    world,
)
from tests.qa.helpers import RACE_RECEPTION as RECEPTION
from tests.qa.helpers import race_book as book
from tests.races import held_in_another_connection, in_a_thread, lock_waits, until_a_connection_waits_for_a_lock

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SENDER = "qa-review-sender"


def _finished_or_waiting(thread: threading.Thread, timeout: float = 10) -> bool:
    """Whether the call in `thread` finished (True) or another connection now waits for a lock (False): the two
    ends a call that may or may not wait for a row can come to. Fails after `timeout` s with neither."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        thread.join(0.02)
        if not thread.is_alive():
            return True
        if lock_waits():
            return False
    raise AssertionError("the call neither finished nor waited for a lock")


@pytest.fixture
def notice_in_the_providers_hands(quiet_world, monkeypatch):  # noqa: F811 (the probe's fixture)
    """A visit on 10 March told by its confirmation, moved to 11 March; once the grace period is over a dispatcher
    (its own thread and connection) sends the move notice and is held inside the provider's call (the e-mail is
    rendered, the row `sending` and locked). Yields (appointment, the moment, release): release() lets the
    provider answer and waits for the dispatcher to commit."""
    place = quiet_world
    mail.outbox = []
    appointment = book(PatientFactory(clinic=place.clinic), "botox", local(3, 10), practitioner_id=place.dr_a.pk)
    assert dispatch.dispatch_local(now=NOW) == {dispatch.SendOutcome.SENT: 1}  # the confirmation, naming 10 March
    appointment_reschedule(
        appointment=fresh(appointment), start_at=local(3, 11), actor=RECEPTION, now=NOW + timedelta(minutes=1)
    )
    moment = NOW + timedelta(minutes=7)  # the notice's grace period is over
    in_hands, let_go = threading.Event(), threading.Event()
    real_send = channels.send_email

    def held_send(**kwargs):
        if threading.current_thread().name == SENDER:
            in_hands.set()
            assert let_go.wait(20)
        return real_send(**kwargs)

    monkeypatch.setattr(channels, "send_email", held_send)
    sent = []
    sender = in_a_thread(partial(dispatch.dispatch_local, now=moment), sent, name=SENDER)

    def release():
        let_go.set()
        sender.join(20)
        assert sent == [{dispatch.SendOutcome.SENT: 1}], sent

    try:
        assert in_hands.wait(10)
        [notice] = OutboxMessage.objects.filter(appointment=appointment, status=OutboxStatus.SENDING)
        assert notice.kind == MessageKind.RESCHEDULED
        yield appointment, moment, release
    finally:
        let_go.set()
        sender.join(20)


def test_a_move_back_while_the_move_notice_is_in_the_providers_hands_leaves_the_last_message_true(
    notice_in_the_providers_hands,
):
    """docs/reminders.md: 'The last message about an appointment is true ... the move notice runs from the time the
    patient last heard to the time now, and is dropped when they last heard this very time.' The confirmation
    named 10 March; the visit moved to 11 March; the notice 'moved to 11 March' is in the provider's hands (its
    row `sending`, locked) when staff move the visit back to 10 March. Before the mend the move back read the last
    time told as 10 March (the notice had not committed) and planned nothing; now it waits for the notice. Once the dispatcher has
    caught up, the last message must name 10 March (a notice from 11 March back to 10 March)."""
    appointment, moment, release = notice_in_the_providers_hands
    moved = []
    move_back = partial(
        appointment_reschedule,
        appointment=fresh(appointment),
        start_at=local(3, 10),
        actor=RECEPTION,
        now=moment + timedelta(seconds=30),
    )
    mover = in_a_thread(move_back, moved)
    try:
        assert not _finished_or_waiting(mover)  # the move waits for the notice in the provider's hands
    finally:
        release()
        mover.join(20)
    assert moved and not isinstance(moved[0], Exception), moved

    dispatch.dispatch_local(now=moment + timedelta(minutes=10))  # past the grace period of a notice planned now
    final = fresh(appointment)
    assert final.start_at == local(3, 10)
    received = _told_in_order(final)
    kinds = [[r.kind for r in message] for message in received]
    assert kinds[:2] == [[MessageKind.CONFIRMATION], [MessageKind.RESCHEDULED]], kinds
    last = received[-1]
    assert {_at(r.payload["told_start"]) for r in last} == {local(3, 10)}, (
        f"the patient's last message ({[r.kind for r in last]}) names "
        f"{[r.payload.get('told_start') for r in last]}; the visit is at {final.start_at}"
    )
    assert_invariants()


def test_a_cancel_while_the_move_notice_is_in_the_providers_hands_is_followed_by_the_cancellation(
    notice_in_the_providers_hands,
):
    """GUARD. docs/reminders.md: 'cancelled | ... a cancellation notice only if the patient had been told of the
    booking'; 'The last message about an appointment is true'. The move notice is in the provider's hands when
    staff cancel the visit: the cancel does not wait for it (told already by the confirmation), and the
    cancellation goes after it, the patient's last word."""
    appointment, moment, release = notice_in_the_providers_hands
    try:
        appointment_cancel(appointment=fresh(appointment), actor=RECEPTION, now=moment + timedelta(seconds=30))
    finally:
        release()
    dispatch.dispatch_local(now=moment + timedelta(minutes=1))
    received = [[r.kind for r in message] for message in _told_in_order(fresh(appointment))]
    assert received == [[MessageKind.CONFIRMATION], [MessageKind.RESCHEDULED], [MessageKind.CANCELLED]], received
    assert_invariants()


def test_a_send_that_waited_for_a_stops_lock_reads_the_patient_again(quiet_world, monkeypatch):  # noqa: F811
    """GUARD (1360b81's second mend, on the consent path). docs/reminders.md: 'a text being sent at that moment
    (past its consent check) goes, and the STOP waits for it and is recorded after it: an opt-out and a send
    never both win.' The confirmation text is claimed (`sending`, not yet being sent); the patient replies STOP,
    and the opt-out locks the patient's texts being sent (reminders.consent.patient_opt_out) and holds them; the
    send then waits for that lock; the STOP commits. The send must read the patient as the STOP left them and
    skip the text: read in the statement that waited, the patient was as before the STOP, and the text went."""
    place = quiet_world
    LocmemSmsBackend.outbox = []
    patient = PatientFactory(clinic=place.clinic, phone="+447911654321", reminder_channels=["sms"], sms_consent=True)
    appointment = book(patient, "botox", local(3, 10), practitioner_id=place.dr_a.pk)
    claims = dispatch.outbox_claim_due(now=NOW)
    rows = [OutboxMessage.objects.get(pk=c.message_id) for c in claims]
    assert [(r.kind, r.channel) for r in rows] == [(MessageKind.CONFIRMATION, "sms")], rows
    holding, commit = threading.Event(), threading.Event()
    consented = consent._consented

    def hold_after_locking_the_texts(values):  # called once the opt-out holds the rows being sent
        if threading.current_thread().name == "qa-review-stop":
            holding.set()
            assert commit.wait(20)
        return consented(values)

    monkeypatch.setattr(consent, "_consented", hold_after_locking_the_texts)
    stopped, sent = [], []
    stop = in_a_thread(
        partial(consent.sms_reply, from_number=patient.phone, body="STOP", now=NOW), stopped, name="qa-review-stop"
    )
    send = None
    try:
        assert holding.wait(10)
        send = in_a_thread(
            partial(dispatch.outbox_send_batch, message_ids=[rows[0].pk], claim_token=claims[0].token, now=NOW), sent
        )
        until_a_connection_waits_for_a_lock()  # the send waits for the STOP's lock on its row
    finally:
        commit.set()
        stop.join(20)
        if send is not None:
            send.join(20)
    assert stopped == [1], stopped
    assert sent and not isinstance(sent[0], Exception), sent
    assert sent[0] == {rows[0].pk: dispatch.SendOutcome.SKIPPED}, sent
    assert LocmemSmsBackend.outbox == [], "a text went after the patient's STOP was recorded"
    assert fresh(rows[0]).status == OutboxStatus.SKIPPED
    assert fresh(appointment).status == "confirmed"


PAUSE_KEY = 73_600_001  # an advisory lock only this test takes


@pytest.mark.parametrize("change", ["cancel", "reschedule"])
def test_a_change_that_commits_while_the_send_statement_runs_is_followed_by_the_truth(quiet_world, monkeypatch, change):  # noqa: F811
    """GUARD. docs/reminders.md: 'The last message about an appointment is true'. As 1360b81's test of the wait: a
    claim holds the confirmation's row, staff cancel or move the visit, and the change waits for that row, then
    keeps its lock (not returned) once the claim commits. The send's locking read starts; it is held (an advisory
    lock taken inside the statement, after its snapshot: the pause point) while the change commits; then it
    reaches the row, free now: nothing was waited for, so there is no second read, and the booking is as it was
    at the snapshot. That is the race every send has with a change committing just after its read (the provider
    is called after the read, whatever it read): the send may act on the booking as it was a moment before. What
    holds is the change's side: it counted the confirmation being sent, so a cancellation follows it, or a move
    notice naming the new time (reminders.services, 1360b81's first mend)."""
    calendar_changes = content.calendar_changes

    def paused_in_the_statement(appointment_ref="pk"):  # the send's locking read, compiled on its own connection
        pause = RawSQL(
            f"(SELECT 0 FROM pg_advisory_xact_lock_shared({PAUSE_KEY}) AS pause)", (), output_field=IntegerField()
        )
        return calendar_changes(appointment_ref) + pause

    sent = []
    try:
        with _change_held_after_the_claim(quiet_world, monkeypatch, change) as changing:
            with held_in_another_connection(lambda: _advisory_lock(PAUSE_KEY)):
                monkeypatch.setattr(content, "calendar_changes", paused_in_the_statement)
                ids, token = [c.message_id for c in changing.claims], changing.claims[0].token
                send = partial(dispatch.outbox_send_batch, message_ids=ids, claim_token=token, now=NOW)
                changing.threads.append(in_a_thread(send, sent))
                until_a_connection_waits_for_a_lock()  # the send's statement, its snapshot taken, waits for the pause
                changing.commit.set()
                changing.threads[0].join(20)  # the change has committed; the pause ends with this block
    finally:
        monkeypatch.setattr(content, "calendar_changes", calendar_changes)
    assert changing.changed and not isinstance(changing.changed[0], Exception), changing.changed
    assert sent and not isinstance(sent[0], Exception), sent
    appointment, moved_to = changing.appointment, changing.moved_to

    dispatch.dispatch_local(now=NOW + timedelta(minutes=10))  # past the grace period of a move notice
    received = _told_in_order(fresh(appointment))
    kinds = [[r.kind for r in message] for message in received]
    if change == "cancel":
        assert kinds in ([], [[MessageKind.CONFIRMATION], [MessageKind.CANCELLED]]), kinds
    else:
        assert kinds[-1] in ([MessageKind.CONFIRMATION], [MessageKind.RESCHEDULED]), kinds
        assert _at(received[-1][0].payload["told_start"]) == moved_to
    assert_invariants()


def _advisory_lock(key: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def test_send_again_while_the_newer_copy_is_claimed_sends_it_once(quiet_world, monkeypatch):  # noqa: F811
    """docs/frontdesk.md, send again: 'refused, with why, ... where a newer copy on its channel reached the
    patient'; dispatch.patient_message_send_again: 'Refused ... a newer copy of it, on its channel, reached the
    patient or is going; or a newer copy is waiting already.' The day-before reminder failed; a newer copy of it
    (same template, channel and time, as a move away and back plans one) is waiting. Staff press 'send again':
    the newer copy is still `pending` when it is looked for (the unique index would refuse the retry while it
    is); a dispatcher claims it before the retry is written; the retry then finds no unsent copy in its way. The
    reminder must reach the patient once."""
    place = quiet_world
    mail.outbox = []
    appointment = book(PatientFactory(clinic=place.clinic), "botox", local(3, 10), practitioner_id=place.dr_a.pk)
    [failed] = OutboxMessage.objects.filter(appointment=appointment, kind=MessageKind.REMINDER, channel="email")
    OutboxMessage.objects.filter(pk=failed.pk).update(
        status=OutboxStatus.FAILED, attempts=5, last_error="gave up after 5 attempts; last error: mailbox full"
    )
    OutboxMessage.objects.filter(appointment=appointment).exclude(pk=failed.pk).update(status=OutboxStatus.CANCELLED)
    newer = OutboxMessage.objects.get(pk=failed.pk)
    newer.pk, newer.status, newer.attempts, newer.last_error = None, OutboxStatus.PENDING, 0, ""
    newer.id = uuid.uuid4()
    newer.created_at, newer.due_at = NOW + timedelta(minutes=1), NOW
    newer.save(force_insert=True)
    moment = NOW + timedelta(minutes=2)

    looked, go_on = threading.Event(), threading.Event()
    retry = dispatch.outbox_retry

    def retry_after_a_pause(**kwargs):  # what was looked for is read; the retry is not written yet
        looked.set()
        assert go_on.wait(20)
        return retry(**kwargs)

    monkeypatch.setattr(dispatch, "outbox_retry", retry_after_a_pause)
    asked = []
    staff = in_a_thread(
        partial(dispatch.patient_message_send_again, message=fresh(failed), now=moment, by=RECEPTION), asked
    )
    try:
        assert looked.wait(10)
        claims = dispatch.outbox_claim_due(now=moment)  # the newer copy, unless the send-again holds it
    finally:
        go_on.set()
        staff.join(20)
    assert asked and not isinstance(asked[0], Exception), asked
    if claims:
        assert [c.message_id for c in claims] == [newer.pk]
        dispatch.outbox_send_batch(message_ids=[newer.pk], claim_token=claims[0].token, now=moment)
    dispatch.dispatch_local(now=moment + timedelta(minutes=1))
    copies = OutboxMessage.objects.filter(pk__in=[failed.pk, newer.pk], status=OutboxStatus.SENT)
    went = [(str(c.pk), c.payload.get("sent_in")) for c in copies]
    assert len(went) == 1, f"the reminder reached the patient {len(went)} times ({went}); staff were told {asked[0]}"
    assert mail.outbox, "the reminder did not reach the patient"


def test_a_booking_that_waited_for_the_patient_while_a_rule_tightened_is_checked_again(world):  # noqa: F811
    """GUARD (a waiting locking read with joined data: scheduler.lifecycle._LOCK_PATIENT_WITH_VERSION reads the
    configuration version in the statement that waits for the patient's lock, so as of before the wait). Brief 6:
    'Whenever ... an organisation's rules change, every future active appointment of the affected patients is
    checked again.' A microneedling 19 days after a Botox is booked while another transaction holds the patient
    (the booking waits, the rule book's version already read); the organisation tightens Botox then
    microneedling from 2 to 4 weeks and commits; then the booking goes on. It must end refused, or booked and
    flagged by the rule change's re-check (which waits for transactions older than the change)."""
    from django.contrib.auth import get_user_model

    from clinic.services import procedure_record_add
    from core.errors import InvalidInput
    from scheduler import rulebooks
    from scheduler.booking import UnableToBook
    from scheduler.lifecycle import lock_patient
    from scheduler.models import IntervalRule

    user = get_user_model().objects.create_user("qa-review-rules", password="pw-for-tests")
    default = IntervalRule.objects.get(default_key="botox-then-microneedling")
    patient = PatientFactory(clinic=world.clinic)
    procedure_record_add(patient=patient, procedure_code="botox", performed_at=local(3, 1), now=NOW)
    # Another booking first: this process keeps the rule book of the version before the change (scheduler.versioned).
    book(PatientFactory(clinic=world.clinic), "botox", local(3, 12), practitioner_id=world.dr_b.pk)
    rule = IntervalRule(
        organisation_id=patient.organisation_id,
        replaces=default,
        earlier_procedure_id="botox",
        later_procedure_id="microneedling",
        gap_value=4,
        gap_unit=default.gap_unit,
        severity=default.severity,
        source="Organisation protocol",
    )
    booked, saved, threads = [], [], []
    try:
        with held_in_another_connection(lambda: lock_patient(patient.pk)):
            booking = partial(book, patient, "microneedling", local(3, 20), practitioner_id=world.dr_a.pk)
            threads.append(in_a_thread(booking, booked))
            until_a_connection_waits_for_a_lock()  # the booking waits for the patient, its version read
            threads.append(
                in_a_thread(partial(rulebooks.rule_save, rule=rule, user=user, reason="QA: 4 weeks", now=NOW), saved)
            )
            tightened = IntervalRule.objects.filter(organisation_id=patient.organisation_id, replaces=default)
            deadline = time.monotonic() + 10
            while not tightened.exists():  # committed (its re-check then waits for the older transactions)
                assert time.monotonic() < deadline, f"the rule change did not commit: {saved}"
                time.sleep(0.02)
    finally:
        for thread in threads:
            thread.join(40)
    assert saved and not isinstance(saved[0], Exception), saved
    assert booked, "the booking did not finish"
    if isinstance(booked[0], Exception):
        assert isinstance(booked[0], UnableToBook | InvalidInput), repr(booked[0])
    else:
        final = fresh(booked[0])
        assert final.status == "needs_review", f"booked {final.status} 19 days after a Botox under a 4-week rule"
    assert_invariants()
