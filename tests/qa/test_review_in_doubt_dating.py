"""Review of 4e80ea2: how a reminder in doubt (its sender died, perhaps after the provider took it) is dated and
re-planned.

4e80ea2 records when the attempt in doubt began (`in_doubt_since`: the stopped claim, reckoned as its
`claimed_until` less the lease, or the send that raised) and dates a row found sent by it; leaves a row in doubt
whose attempt named the start as it stands to be settled (`services._keep_in_doubt`); and counts a claimed
(`sending`) reminder or pre-care note as the time last heard when nothing sent named one (`_start_in_doubt`).

Sequences forced through the real services and dispatcher. Found, and mended in the commit after the review:

* the stopped claim's moment was reckoned from the lease setting *now* (`claimed_until - lease`), not the one it
  was claimed under: after the setting changed (a deploy between the claim and the reclaim) a row found sent was
  dated up to the difference late or early. Dated late, the old start it named read as newer than the move notice
  sent after it, and a move back to that start told the patient nothing. Now each claim records its moment
  (`claimed_at`), and the doubt is dated by it.

Guards that hold: the dating with the lease unchanged, a live sender's claimed reminder during a routine move (no
notice reaches a patient who heard nothing), a row in doubt kept while the booking is held for clearance and
released in quiet hours, moved there and back in quiet hours, a visit completed while the row is settled, and the
desk's "send again" of a row given up in doubt (in_doubt_since kept: found, it is dated by its first attempt).
The first word is Tuesday 10:00's reminder, due Monday 10:00 (tests/qa/test_review_first_word.py). The conftest
`now` is Monday 2 March 2026, 09:00 in London (GMT).
"""

from datetime import timedelta

import pytest
from django.core import mail

from clinic.models import AppointmentStatus
from clinic.record_changes import patient_record_changed
from reminders import channels, dispatch
from reminders.models import MessageKind, OutboxMessage, OutboxStatus
from reminders.services import last_told_start
from scheduler.booking import appointment_clear, appointment_complete, appointment_reschedule
from tests.factories import PatientConditionFactory
from tests.qa.helpers import (
    MONDAY_DUE,
    TUESDAY,
    WEDNESDAY,
    _first_word_in_doubt,
    _heard,
    deliver,
    first_word_patient,
    send,
    texts,
)
from tests.qa.helpers import rows_of_kinds as rows
from tests.reminders import conftest as reminder_fixtures
from tests.reminders.conftest import CLINICIAN, RECEPTION, london
from tests.reminders.support import sender_dies

_reminder_settings = reminder_fixtures._reminder_settings
clinic = reminder_fixtures.clinic
practitioner = reminder_fixtures.practitioner

RETRIED = timedelta(seconds=120)  # the in-doubt row is due again after the backoff of its second attempt
THIS_AFTERNOON = london(2026, 3, 9, 15)


def _reschedule(appointment, start, at):
    appointment_reschedule(appointment=appointment, start_at=start, actor=RECEPTION, now=at)


def _reminder(appointment):
    return rows(appointment, MessageKind.REMINDER).get()


# --- Dating (lease unchanged): guards ---------------------------------------------------------------------------


def test_a_found_reminder_is_dated_by_the_claim_its_stopped_sender_ran_under(
    clinic, practitioner, now, monkeypatch, settings
):
    """Claimed Monday 10:00, its sender died after the provider took it; reclaimed after the lease (in doubt since
    10:00), the provider could not be asked; asked at 10:07:01, it had it: sent_at is 10:00, after the row was
    planned and not before it fell due; the doubt and its moment are cleared."""
    appointment, after_lease = _first_word_in_doubt(clinic, now, monkeypatch, settings)
    row = _reminder(appointment)
    assert (row.status, row.in_doubt, row.in_doubt_since) == (OutboxStatus.PENDING, True, MONDAY_DUE)
    assert deliver(after_lease + RETRIED + timedelta(seconds=1)) == {dispatch.SendOutcome.FOUND_SENT: 1}
    row.refresh_from_db()
    assert (row.status, row.sent_at, row.in_doubt, row.in_doubt_since) == (
        OutboxStatus.SENT,
        MONDAY_DUE,
        False,
        None,
    )
    assert row.created_at <= row.sent_at and row.payload["told_start"] == TUESDAY.isoformat()
    assert len(_heard("email")) == 1


# --- Dating when the lease setting changed between the claim and the reclaim (a defect, mended) ----------------


@pytest.mark.parametrize(("then", "now_lease"), [(3600, 300), (300, 3600)], ids=["shortened", "lengthened"])
def test_a_found_reminder_is_dated_by_its_claim_when_the_lease_setting_changed(
    clinic, practitioner, now, monkeypatch, settings, then, now_lease
):
    settings.REMINDERS_MERGE_MINUTES = 0
    appointment = first_word_patient(clinic, now, muted=("care",))
    claims = dispatch.outbox_claim_due(now=MONDAY_DUE, lease=timedelta(seconds=then))
    sender_dies(monkeypatch, lambda: send(claims, MONDAY_DUE), after_the_provider_took_it=True)
    settings.REMINDERS_CLAIM_LEASE_SECONDS = now_lease
    assert deliver(MONDAY_DUE + timedelta(seconds=then + 1)) == {dispatch.SendOutcome.FOUND_SENT: 1}
    row = _reminder(appointment)
    # Reckoned from the lease now, it was: shortened, 10:55 (after a notice sent at 10:07); lengthened, 09:05.
    assert row.sent_at == MONDAY_DUE, f"claimed at {MONDAY_DUE}, dated {row.sent_at} (due {row.due_at})"


def test_a_move_back_after_a_lease_change_tells_the_patient_last_told_the_notice(
    clinic, practitioner, now, monkeypatch, settings
):
    """The reminder (Tuesday) is claimed at 10:00 under a one-hour lease and its sender dies after the provider took
    it; the desk moves the visit to Wednesday at 10:01 (the claimed reminder counts: a notice from Tuesday) and the
    notice goes at 10:07. The lease is set to five minutes (a deploy). At 11:00:01 the row is reclaimed and found:
    dated 10:00 (its claim), it is older than the notice. At 12:00 the desk moves the visit back to Tuesday: the
    patient, last told Wednesday, hears of Tuesday. (Dated 10:55, 11:00 less the new lease, as it was, it read as
    the newest word: 'last told this very time', no notice, and the patient came on Wednesday.)"""
    settings.REMINDERS_MERGE_MINUTES = 0
    appointment = first_word_patient(clinic, now, muted=("care",))
    claims = dispatch.outbox_claim_due(now=MONDAY_DUE, lease=timedelta(hours=1))
    sender_dies(monkeypatch, lambda: send(claims, MONDAY_DUE), after_the_provider_took_it=True)
    _reschedule(appointment, WEDNESDAY, MONDAY_DUE + timedelta(minutes=1))
    assert rows(appointment, MessageKind.RESCHEDULED).get().payload["from_start"] == TUESDAY.isoformat()
    deliver(MONDAY_DUE + timedelta(minutes=7))
    heard = _heard("email")
    assert len(heard) == 2 and "has moved" in heard[1] and "Wed 11 Mar" in heard[1], heard

    settings.REMINDERS_CLAIM_LEASE_SECONDS = 300
    assert deliver(MONDAY_DUE + timedelta(hours=1, seconds=1)) == {dispatch.SendOutcome.FOUND_SENT: 1}
    _reschedule(appointment, TUESDAY, london(2026, 3, 9, 12))
    deliver(london(2026, 3, 9, 12, 10))
    deliver(london(2026, 3, 10, 10, 1))

    heard = _heard("email")
    assert len(heard) == 3, f"last told Wednesday (by the notice), told nothing of the move back: {heard}"
    assert "It was: Wed 11 Mar" in heard[2], heard[2]


# --- A live sender's claimed reminder during a routine move: guards -------------------------------------------------


def test_a_move_into_this_afternoon_while_a_live_sender_holds_the_first_word_sends_no_move_notice(
    clinic, practitioner, now, settings
):
    """The reminder and pre-care note (Tuesday) are claimed at 10:00 by a live dispatcher; the desk moves the visit
    to 15:00 today before their send runs. The claimed rows count (a notice from Tuesday is planned), their send
    drops them (the visit moved), and the notice, asked when it goes, is dropped: the patient, who heard nothing,
    hears only the pre-care note for 15:00 (a reminder is not sent that late)."""
    settings.REMINDERS_MERGE_MINUTES = 0
    appointment = first_word_patient(clinic, now)
    claims = dispatch.outbox_claim_due(now=MONDAY_DUE)
    assert len(claims) == 2
    _reschedule(appointment, THIS_AFTERNOON, MONDAY_DUE + timedelta(seconds=2))
    assert rows(appointment, MessageKind.RESCHEDULED).get().payload["from_start"] == TUESDAY.isoformat()
    assert set(send(claims, MONDAY_DUE + timedelta(seconds=3)).values()) == {dispatch.SendOutcome.CANCELLED}
    for minutes in (6, 7, 8):
        deliver(MONDAY_DUE + timedelta(minutes=minutes))

    notice = rows(appointment, MessageKind.RESCHEDULED).get()
    assert notice.status == OutboxStatus.CANCELLED, notice.last_error
    assert notice.last_error in ("the patient has not been told a time yet", "the patient was last told this very time")
    [heard] = _heard("email")
    assert "To prepare" in heard and "Mon 9 Mar" in heard and "15:00" in heard, heard
    assert "Tue 10 Mar" not in heard


def test_a_move_there_and_back_while_a_live_sender_holds_the_first_word_tells_it_once(clinic, practitioner, now):
    """Claimed at 10:00 (live); moved to Wednesday and back to Tuesday before the send runs: the claimed reminder
    names Tuesday, so the notice is cancelled ('last told this very time') and the reminder goes, naming Tuesday."""
    appointment = first_word_patient(clinic, now, muted=("care",))
    claims = dispatch.outbox_claim_due(now=MONDAY_DUE)
    _reschedule(appointment, WEDNESDAY, MONDAY_DUE + timedelta(seconds=1))
    _reschedule(appointment, TUESDAY, MONDAY_DUE + timedelta(seconds=2))
    assert rows(appointment, MessageKind.RESCHEDULED).values_list("status", "last_error").get() == (
        OutboxStatus.CANCELLED,
        "the patient was last told this very time",
    )
    assert send(claims, MONDAY_DUE + timedelta(seconds=3)) == {claims[0].message_id: dispatch.SendOutcome.SENT}
    deliver(MONDAY_DUE + timedelta(minutes=10))
    deliver(london(2026, 3, 10, 10, 1))
    [heard] = _heard("email")
    assert "Tue 10 Mar" in heard and "Wed 11 Mar" not in heard
    assert sorted(rows(appointment, MessageKind.REMINDER).values_list("anchor_at", "status")) == [
        (TUESDAY, OutboxStatus.SENT),
        (WEDNESDAY, OutboxStatus.CANCELLED),  # moved back: "already sent for this appointment time"
    ]


# --- A row in doubt kept (_keep_in_doubt): held for clearance, quiet hours, completion --------------------------


@pytest.mark.parametrize("provider_took_it", [True, False])
def test_a_text_in_doubt_held_for_clearance_and_released_at_night_goes_in_the_morning_or_not_at_all(
    clinic, practitioner, now, monkeypatch, settings, provider_took_it
):
    """Texts only. Tuesday's reminder text is in doubt when a new condition sends the booking for clearance: the
    row is kept (held, still in doubt, its moment untouched). A clinician clears it at 21:30: the row is asked at
    once. Found: recorded as sent at Monday 10:00, nothing goes. Not found: quiet hours keep it until 08:00, when it
    goes naming Tuesday. Nothing goes at night."""
    appointment, after_lease = _first_word_in_doubt(
        clinic, now, monkeypatch, settings, channel="sms", provider_took_it=provider_took_it
    )
    PatientConditionFactory(patient=appointment.patient, condition_id="eczema", status="history")
    patient_record_changed(patient_id=appointment.patient_id, now=after_lease + timedelta(minutes=1), cause="test")
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.PENDING_CLEARANCE
    row = _reminder(appointment)
    assert (row.status, row.in_doubt, row.anchor_at, row.in_doubt_since) == (
        OutboxStatus.HELD,
        True,
        TUESDAY,
        MONDAY_DUE,
    )
    night = london(2026, 3, 9, 21, 30)
    appointment_clear(appointment=appointment, actor=CLINICIAN, now=night, reason="healed")
    outcome = deliver(night + timedelta(minutes=1))
    before = len(texts())
    row.refresh_from_db()
    if provider_took_it:
        assert outcome == {dispatch.SendOutcome.FOUND_SENT: 1}
        assert (row.status, row.sent_at, row.in_doubt) == (OutboxStatus.SENT, MONDAY_DUE, False)
    else:
        assert outcome == {dispatch.SendOutcome.DEFERRED: 1}
        assert (row.status, row.due_at, row.in_doubt) == (OutboxStatus.PENDING, london(2026, 3, 10, 8), False)
    deliver(london(2026, 3, 9, 23))
    assert len(texts()) == before == (1 if provider_took_it else 0)
    deliver(london(2026, 3, 10, 8))
    assert len(texts()) == 1 and "Tue 10 Mar" in texts()[0]
    assert not rows(appointment, MessageKind.RESCHEDULED).exists()


def test_a_text_in_doubt_moved_there_and_back_at_night_goes_in_the_morning(
    clinic, practitioner, now, monkeypatch, settings
):
    """Texts only; the provider never took it. At 21:10 the desk tries Wednesday and comes back to Tuesday a minute
    later: the row is kept for Tuesday, due at once (the grace would end in quiet hours), asked at 21:12 (not found)
    and held by quiet hours until 08:00; the notice is cancelled. One text, at 08:00, naming Tuesday."""
    appointment, _ = _first_word_in_doubt(clinic, now, monkeypatch, settings, channel="sms", provider_took_it=False)
    _reschedule(appointment, WEDNESDAY, london(2026, 3, 9, 21, 10))
    assert _reminder(appointment).payload["may_have_named"] == TUESDAY.isoformat()
    _reschedule(appointment, TUESDAY, london(2026, 3, 9, 21, 11))
    row = _reminder(appointment)
    assert (row.anchor_at, row.due_at, row.in_doubt, "may_have_named" in row.payload) == (
        TUESDAY,
        london(2026, 3, 9, 21, 11),
        True,
        False,
    )
    assert rows(appointment, MessageKind.RESCHEDULED).values_list("status", "last_error").get() == (
        OutboxStatus.CANCELLED,
        "the patient was last told this very time",
    )
    assert deliver(london(2026, 3, 9, 21, 12)) == {dispatch.SendOutcome.DEFERRED: 1}
    assert texts() == []
    deliver(london(2026, 3, 10, 8))
    [text] = texts()
    assert "Tue 10 Mar" in text and "Wed 11 Mar" not in text


@pytest.mark.parametrize("provider_took_it", [True, False])
def test_a_visit_completed_while_its_reminder_in_doubt_is_settled(
    clinic, practitioner, now, monkeypatch, settings, provider_took_it
):
    """The row in doubt is claimed on Tuesday at 10:30 (the dispatcher was behind), and the visit is completed before
    its send runs. Found: recorded as sent Monday 10:00, nothing planned in its place. Not found: dropped."""
    appointment, _ = _first_word_in_doubt(clinic, now, monkeypatch, settings, provider_took_it=provider_took_it)
    claims = dispatch.outbox_claim_due(now=london(2026, 3, 10, 10, 30))
    assert len(claims) == 1
    appointment_complete(appointment=appointment, actor=CLINICIAN, now=london(2026, 3, 10, 10, 31))
    outcome = send(claims, london(2026, 3, 10, 10, 32))[claims[0].message_id]
    row = _reminder(appointment)
    if provider_took_it:
        assert outcome == dispatch.SendOutcome.FOUND_SENT
        assert (row.status, row.sent_at, row.in_doubt_since) == (OutboxStatus.SENT, MONDAY_DUE, None)
    else:
        assert outcome == dispatch.SendOutcome.CANCELLED
        assert (row.status, row.last_error) == (OutboxStatus.CANCELLED, "the appointment is over")
    assert len(_heard("email")) == (1 if provider_took_it else 0)


# --- The desk's "send again" of a row given up in doubt --------------------------------------------------------------


@pytest.mark.parametrize("provider_took_it", [True, False])
def test_send_again_of_a_reminder_given_up_in_doubt_keeps_when_its_doubt_began(
    clinic, practitioner, now, monkeypatch, settings, provider_took_it
):
    """In doubt since Monday 10:00; its next sender (the provider could not tell just then) dies before the
    provider, and the claim after gives up (`failed`, in doubt since 10:00, the first attempt). The desk sends it
    again at 10:40: the retry keeps the doubt and its moment. Found: dated 10:00, nothing sent again. Not found: it
    goes at 10:41, dated then."""
    settings.REMINDERS_MAX_ATTEMPTS = 3
    appointment, after_lease = _first_word_in_doubt(
        clinic, now, monkeypatch, settings, provider_took_it=provider_took_it
    )
    third = after_lease + RETRIED + timedelta(seconds=1)
    claims = dispatch.outbox_claim_due(now=third)
    with monkeypatch.context() as patched:
        patched.setattr(channels, "accepted", lambda **kwargs: channels.CANNOT_TELL)
        sender_dies(monkeypatch, lambda: send(claims, third), after_the_provider_took_it=False)
    assert deliver(third + timedelta(minutes=10)) == {}  # spent: given up on
    row = _reminder(appointment)
    assert (row.status, row.in_doubt, row.in_doubt_since) == (OutboxStatus.FAILED, True, MONDAY_DUE)

    again = london(2026, 3, 9, 10, 40)
    assert dispatch.patient_message_send_again(message=row, now=again, by=RECEPTION).refused == ""
    row.refresh_from_db()
    assert (row.status, row.in_doubt, row.in_doubt_since) == (OutboxStatus.PENDING, True, MONDAY_DUE)
    outcome = deliver(again + timedelta(minutes=1))
    row.refresh_from_db()
    if provider_took_it:
        assert outcome == {dispatch.SendOutcome.FOUND_SENT: 1}
        assert (row.status, row.sent_at) == (OutboxStatus.SENT, MONDAY_DUE)
    else:
        assert outcome == {dispatch.SendOutcome.SENT: 1}
        assert (row.status, row.sent_at) == (OutboxStatus.SENT, again + timedelta(minutes=1))
    assert (row.in_doubt, row.in_doubt_since) == (False, None)
    assert len(mail.outbox) == 1 and "Tue 10 Mar" in mail.outbox[0].body
    assert last_told_start(appointment) == TUESDAY
    assert OutboxMessage.objects.filter(appointment=appointment, kind=MessageKind.REMINDER).count() == 1
