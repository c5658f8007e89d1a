"""Review of 4b6a1ab: a reminder or pre-care note counts as the patient's first word of a booking.

The commit made a cancellation notice count a reminder or pre-care note (TIME_NAMING_KINDS) as having told the
patient of the booking, and made a change notice wait (`booking_told`, reminders.verdicts.notice_verdict) for a claimed or
in-doubt reminder or pre-care note while nothing else has told the patient (since: a cancellation only). These are
sequences forced through the real services and dispatcher (docs/reminders.md, "What each booking change does to the outbox", "The last
message about an appointment is true", "In reading order"):

* a move notice and the first word due with it (claimed together) each waiting for the other (the notice for
  the claimed first word, the first word for the earlier message in reading order): neither went (mended in the
  commit after it: a move notice no longer waits for a reminder);
* a first word in doubt (its sender stopped after the provider took it) that a move carries to the new time: found
  sent, it was recorded as naming the new time, which the patient never heard (a DEFECT, mended since: it is
  recorded for the start it named, and the new start's message goes anew);
* guards that hold: the cancel after a first word whose sender died (found sent, or not), a text deferred by
  quiet hours (pending, not sending), reminders muted, a merged record, a booking held for clearance, a STOP.

The conftest `now` is Monday 2 March 2026, 09:00 in London (GMT).
"""

from datetime import timedelta

import pytest
import time_machine
from django.core import mail

from clinic.merging import patient_merge
from clinic.models import AppointmentStatus
from reminders import channels, dispatch
from reminders.consent import sms_reply_opt_out
from reminders.models import MessageKind, OutboxMessage, OutboxStatus
from reminders.services import last_told_start
from scheduler.booking import appointment_cancel, appointment_reschedule
from tests.factories import PatientConditionFactory, PatientFactory
from tests.qa.helpers import (
    MONDAY_DUE,
    PHONE,
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
from tests.reminders.conftest import RECEPTION, book, london
from tests.reminders.support import sender_dies

# The reminders suite's world (a London clinic with the shipped care texts, Dr Hart, the locmem backends), in
# place of the API world tests/qa/conftest.py gives.
_reminder_settings = reminder_fixtures._reminder_settings
clinic = reminder_fixtures.clinic
practitioner = reminder_fixtures.practitioner


def beat(start, seconds):
    """The embedded dispatcher beating every second from `start`, each send reading the clock as run_dispatcher
    and the Celery task do (`clock=timezone.now`): here a millisecond passes per send."""
    tick = [start]

    def clock():
        tick[0] += timedelta(milliseconds=1)
        return tick[0]

    for second in range(seconds):
        moment = start + timedelta(seconds=second)
        tick[0] = max(tick[0], moment)
        with time_machine.travel(moment, tick=False):
            dispatch.dispatch_local(now=moment, clock=clock)


# --- (1) A move notice and the first word due with it wait for each other ---------------------------------------


def test_a_move_notice_and_the_pre_care_due_with_it_do_not_wait_for_each_other_until_the_visit(
    clinic, practitioner, now, monkeypatch
):
    """A defect 4b6a1ab brought, found by this review and mended in the commit after it. The confirmation is
    claimed when the desk moves the visit to tomorrow 09:07, so a move notice is planned (due 09:05:30, after the
    grace); the confirmation's send is then refused for good (a typo in the address, which the desk corrects).
    Tomorrow's reminder and pre-care note are due 09:07: the first word. The dispatcher is down from 09:01 to 09:08
    (or simply claims the three together) and then beats every second.

    The notice goes first (earliest due): `booking_told` sees the reminder and pre-care `sending` (claimed with it)
    and nothing told, so it waits 5 s ("waiting for a message naming the time to go or be dropped"). The reminder
    and pre-care then find the notice due before them in reading order (`earlier_unsent`; it cannot join them,
    its verdict is not None while they are `sending`) and wait 5 s too ("waiting for an earlier message to go
    first"). Each send reads the clock, so the notice is due a millisecond before them every time: claimed
    together again, the notice first again, for ever, until the visit starts (the pre-care note is then skipped
    as too late: the patient is never told to stop retinoids). Now a move notice asks only of the confirmation and
    the notices (reminders.verdicts.notice_verdict passes BOOKING_NAMING_KINDS to `booking_told`), as before 4b6a1ab: it is
    dropped ("not told a time yet") and the pre-care note goes."""
    patient = PatientFactory(clinic=clinic, first_name="Ada", email="ada@exmaple.com", reminder_channels=["email"])
    appointment = book(patient, "microneedling", TUESDAY, now)
    claims = dispatch.outbox_claim_due(now=now)
    assert [OutboxMessage.objects.get(pk=c.message_id).kind for c in claims] == [MessageKind.CONFIRMATION]
    appointment_reschedule(
        appointment=appointment, start_at=london(2026, 3, 3, 9, 7), actor=RECEPTION, now=now + timedelta(seconds=30)
    )
    assert set(
        rows(appointment, MessageKind.RESCHEDULED, MessageKind.REMINDER, MessageKind.PRE_CARE).values_list(
            "kind", "due_at"
        )
    ) == {
        (MessageKind.RESCHEDULED, london(2026, 3, 2, 9, 5) + timedelta(seconds=30)),
        (MessageKind.REMINDER, london(2026, 3, 2, 9, 7)),
        (MessageKind.PRE_CARE, london(2026, 3, 2, 9, 7)),
    }

    def refused(**kwargs):
        raise channels.PermanentSendError("recipient refused: 550 no such user")

    monkeypatch.setattr(channels, "send_email", refused)
    assert set(send(claims, now + timedelta(seconds=40)).values()) == {dispatch.SendOutcome.FAILED}
    monkeypatch.undo()
    patient.email = "ada@example.com"  # corrected at the desk
    patient.save(update_fields=["email"])

    beat(london(2026, 3, 2, 9, 8), 120)  # two minutes of a dispatcher beating every second

    waiting = sorted(
        rows(appointment, MessageKind.RESCHEDULED, MessageKind.REMINDER, MessageKind.PRE_CARE).values_list(
            "kind", "status", "last_error"
        )
    )
    pre_care = rows(appointment, MessageKind.PRE_CARE).get()
    assert pre_care.status == OutboxStatus.SENT and "Preparing for your visit" in mail.outbox[-1].body, (
        "two minutes after they fell due, neither the pre-care note nor the move notice has gone; each waits for "
        f"the other: {waiting}"
    )


# --- (3) A first word in doubt that a move carries ---------------------------------------------------------------


THURSDAY = london(2026, 3, 12, 10)


@pytest.mark.parametrize("channel", ["email", "sms"])
def test_a_reminder_in_doubt_carried_to_the_new_time_is_recorded_for_the_old_one_and_goes_again_for_the_new(
    clinic, practitioner, now, monkeypatch, settings, channel
):
    """A DEFECT this review found (older than 4b6a1ab), mended since. The desk moves the visit to Wednesday while
    Tuesday's reminder is in doubt. No notice is planned (nothing counts as told: an in-doubt reminder is no
    confirmation); the row is moved to the new time, still in doubt, keeping the start it may have named
    (services.MAY_HAVE_NAMED). On Tuesday its sender asks the provider, which has the Monday message: the row is
    recorded as that message (sent, naming Tuesday), and Wednesday's reminder is planned anew, due at once, under
    an id of its own. Before, the row was recorded as naming Wednesday (dispatch._told_when_found read anchor_at):
    the patient, told only Tuesday, heard nothing of Wednesday. The row in doubt counts as the time last heard
    (services._start_in_doubt), so the move is told on Monday too, after its grace."""
    appointment, after_lease = _first_word_in_doubt(clinic, now, monkeypatch, settings, channel=channel)
    appointment_reschedule(
        appointment=appointment, start_at=WEDNESDAY, actor=RECEPTION, now=after_lease + timedelta(seconds=10)
    )
    moved = rows(appointment, MessageKind.REMINDER).get()
    assert (moved.anchor_at, moved.in_doubt, moved.payload.get("may_have_named")) == (
        WEDNESDAY,
        True,
        TUESDAY.isoformat(),
    )

    assert rows(appointment, MessageKind.RESCHEDULED).get().payload["from_start"] == TUESDAY.isoformat()

    deliver(after_lease + timedelta(minutes=10))  # the move notice, after its grace
    deliver(london(2026, 3, 10, 10, 1))  # Tuesday: the reminder for Wednesday is due
    deliver(london(2026, 3, 10, 10, 2))
    deliver(london(2026, 3, 11, 9))

    heard = _heard(channel)
    assert len(heard) == 3, heard
    assert "Tue 10 Mar" in heard[0]
    assert "has moved" in heard[1] and "Wed 11 Mar" in heard[1], heard[1]
    assert "Wed 11 Mar" in heard[2] and "reminder" in heard[2] and "Tue 10 Mar" not in heard[2]
    record = OutboxMessage.objects.get(pk=moved.pk)
    assert (record.status, record.anchor_at, record.in_doubt) == (OutboxStatus.SENT, TUESDAY, False)
    assert record.payload["told_start"] == TUESDAY.isoformat() and record.payload["found_sent"] is True
    assert "may_have_named" not in record.payload
    assert record.sent_at == record.due_at == MONDAY_DUE  # dated and shown due when it went (its claim), not later
    again = rows(appointment, MessageKind.REMINDER).exclude(pk=moved.pk).get()
    assert (again.status, again.anchor_at, again.payload["in_place_of"]) == (
        OutboxStatus.SENT,
        WEDNESDAY,
        str(moved.pk),
    )
    assert again.payload["told_start"] == WEDNESDAY.isoformat()
    assert last_told_start(appointment) == WEDNESDAY


def test_a_reminder_in_doubt_the_provider_never_took_goes_once_for_the_new_time(
    clinic, practitioner, now, monkeypatch, settings
):
    """The sender died before the provider took Tuesday's reminder; the visit moves to Wednesday while it is in
    doubt. The move notice goes on Monday (the row in doubt may have told Tuesday; it did not, but a patient told
    twice beats one never told). On Tuesday the provider says it never had the reminder: the row goes, once,
    naming Wednesday, and keeps no trace of the start it might have named."""
    appointment, after_lease = _first_word_in_doubt(clinic, now, monkeypatch, settings, provider_took_it=False)
    appointment_reschedule(
        appointment=appointment, start_at=WEDNESDAY, actor=RECEPTION, now=after_lease + timedelta(seconds=10)
    )
    deliver(after_lease + timedelta(minutes=10))
    deliver(london(2026, 3, 10, 10, 1))
    deliver(london(2026, 3, 10, 10, 2))

    notice, heard = _heard("email")
    assert "has moved" in notice and "Wed 11 Mar" in notice
    assert "Wed 11 Mar" in heard and "Tue 10 Mar" not in heard
    [row] = rows(appointment, MessageKind.REMINDER)
    assert (row.status, row.anchor_at, row.in_doubt) == (OutboxStatus.SENT, WEDNESDAY, False)
    assert row.payload["told_start"] == WEDNESDAY.isoformat() and "may_have_named" not in row.payload


def test_a_reminder_in_doubt_moved_twice_is_recorded_for_the_start_it_named(
    clinic, practitioner, now, monkeypatch, settings
):
    """Moved to Wednesday, then Thursday, while in doubt: the row keeps the first start (the one the message in
    the provider's hands named); the moves, a minute apart, are told in one notice (Tuesday to Thursday), and
    Thursday's reminder goes on Wednesday."""
    appointment, after_lease = _first_word_in_doubt(clinic, now, monkeypatch, settings)
    for minutes, start in enumerate((WEDNESDAY, THURSDAY), start=1):
        appointment_reschedule(
            appointment=appointment, start_at=start, actor=RECEPTION, now=after_lease + timedelta(minutes=minutes)
        )
    assert rows(appointment, MessageKind.REMINDER).get().payload["may_have_named"] == TUESDAY.isoformat()
    deliver(after_lease + timedelta(minutes=10))
    deliver(london(2026, 3, 11, 10, 1))  # Wednesday: Thursday's reminder is due
    deliver(london(2026, 3, 11, 10, 2))

    heard = _heard("email")
    assert len(heard) == 3 and "Tue 10 Mar" in heard[0], heard
    assert "has moved" in heard[1] and "Thu 12 Mar" in heard[1] and "Wed 11 Mar" not in heard[1]
    assert "reminder" in heard[2] and "Thu 12 Mar" in heard[2]
    assert sorted(rows(appointment, MessageKind.REMINDER).values_list("anchor_at", "status")) == [
        (TUESDAY, OutboxStatus.SENT),
        (THURSDAY, OutboxStatus.SENT),
    ]


def test_a_move_while_the_doubt_is_being_settled_keeps_the_newer_copy(clinic, practitioner, now, monkeypatch, settings):
    """Moved to Wednesday while in doubt; on Tuesday the row is claimed to settle it, and the desk moves the visit
    to Thursday before its sender runs: that move plans Thursday's reminder (the claimed row is not the move's to
    touch). Found sent, the row is recorded as naming Tuesday; no second copy is planned beside the one that
    stands (outbox_one_unsent_per_template_channel), and Thursday's reminder goes on Wednesday."""
    appointment, after_lease = _first_word_in_doubt(clinic, now, monkeypatch, settings)
    appointment_reschedule(
        appointment=appointment, start_at=WEDNESDAY, actor=RECEPTION, now=after_lease + timedelta(seconds=10)
    )
    deliver(after_lease + timedelta(minutes=10))  # the move notice
    tuesday = london(2026, 3, 10, 10, 1)
    claims = dispatch.outbox_claim_due(now=tuesday)
    appointment_reschedule(
        appointment=appointment, start_at=THURSDAY, actor=RECEPTION, now=tuesday + timedelta(seconds=20)
    )
    assert send(claims, tuesday + timedelta(seconds=30)) == {claims[0].message_id: dispatch.SendOutcome.FOUND_SENT}

    reminders = rows(appointment, MessageKind.REMINDER)
    assert sorted(reminders.values_list("anchor_at", "status")) == [
        (TUESDAY, OutboxStatus.SENT),
        (THURSDAY, OutboxStatus.PENDING),
    ]
    assert not reminders.filter(payload__has_key="in_place_of").exists()
    deliver(london(2026, 3, 10, 10, 7))  # Tuesday's move notice (to Thursday), after its grace
    deliver(london(2026, 3, 11, 10, 1))
    heard = _heard("email")
    assert len(heard) == 4 and "Tue 10 Mar" in heard[0], heard
    assert "Wed 11 Mar" in heard[1] and "Thu 12 Mar" in heard[2] and "Thu 12 Mar" in heard[3]


@pytest.mark.parametrize("provider_took_it", [True, False])
def test_a_move_too_late_for_the_reminder_in_doubt_tells_the_patient_the_new_time(
    clinic, practitioner, now, monkeypatch, settings, provider_took_it
):
    """Tuesday's reminder is in doubt when the desk moves the visit to this afternoon, too late for a reminder of
    its own (its day-ahead moment has passed, and a reminder is not sent late): the row in doubt is cancelled by
    the move, never to be settled. It may have told the patient Tuesday, so it counts as the time they last heard
    (as an in-doubt message counts as told for a cancellation): a move notice goes, naming 15:00 today. Had it
    counted as nothing, a patient told Tuesday would come on Tuesday. Whether the provider took it or not is not
    known when the notice goes; told twice beats never told."""
    appointment, after_lease = _first_word_in_doubt(
        clinic, now, monkeypatch, settings, provider_took_it=provider_took_it
    )
    this_afternoon = london(2026, 3, 9, 15)
    appointment_reschedule(
        appointment=appointment, start_at=this_afternoon, actor=RECEPTION, now=after_lease + timedelta(seconds=10)
    )
    reminder = rows(appointment, MessageKind.REMINDER).get()
    assert (reminder.status, reminder.in_doubt) == (OutboxStatus.CANCELLED, True)
    notice = rows(appointment, MessageKind.RESCHEDULED).get()
    assert notice.payload["from_start"] == TUESDAY.isoformat()

    deliver(after_lease + timedelta(minutes=10))
    deliver(after_lease + timedelta(minutes=11))

    heard = _heard("email")
    assert len(heard) == (2 if provider_took_it else 1), heard
    assert "Mon 9 Mar" in heard[-1] and "15:00" in heard[-1], heard[-1]
    assert rows(appointment, MessageKind.RESCHEDULED).get().status == OutboxStatus.SENT


@pytest.mark.parametrize("provider_took_it", [True, False])
def test_a_move_too_late_for_a_reminder_whose_sender_just_died_tells_the_patient_the_new_time(
    clinic, practitioner, now, monkeypatch, settings, provider_took_it
):
    """As above, but the desk moves the visit to this afternoon two minutes after the reminder's sender died,
    before its lease runs out: the row is still `sending`, not yet known to be in doubt, and not the move's to
    touch (a claim holds it). A claimed reminder may be in the provider's hands, so it counts as the time last
    heard: a move notice is planned from Tuesday. Its lease runs out and a claim takes it with the notice, the
    reminder first (due first): the provider is asked. It had the reminder: found sent, naming Tuesday, and the
    notice goes, naming 15:00 today. It had not: the reminder is dropped (superseded) and, no message having
    named a time, the notice too, as for any patient told nothing yet."""
    settings.REMINDERS_MERGE_MINUTES = 0
    appointment = first_word_patient(clinic, now, muted=("care",))
    claims = dispatch.outbox_claim_due(now=MONDAY_DUE)
    sender_dies(monkeypatch, lambda: send(claims, MONDAY_DUE), after_the_provider_took_it=provider_took_it)
    appointment_reschedule(
        appointment=appointment,
        start_at=london(2026, 3, 9, 15),
        actor=RECEPTION,
        now=MONDAY_DUE + timedelta(minutes=2),
    )
    assert rows(appointment, MessageKind.REMINDER).get().status == OutboxStatus.SENDING
    assert rows(appointment, MessageKind.RESCHEDULED).get().payload["from_start"] == TUESDAY.isoformat()

    deliver(MONDAY_DUE + timedelta(minutes=8))  # both due: the reminder's lease ran out, the notice's grace too
    deliver(MONDAY_DUE + timedelta(minutes=9))

    heard = _heard("email")
    reminder = rows(appointment, MessageKind.REMINDER).get()
    notice = rows(appointment, MessageKind.RESCHEDULED).get()
    if provider_took_it:
        assert len(heard) == 2 and "Tue 10 Mar" in heard[0], heard
        assert "has moved" in heard[1] and "Mon 9 Mar" in heard[1] and "15:00" in heard[1], heard[1]
        assert (reminder.status, reminder.payload["told_start"]) == (OutboxStatus.SENT, TUESDAY.isoformat())
        assert notice.status == OutboxStatus.SENT
    else:
        assert heard == []
        assert (reminder.status, reminder.last_error) == (OutboxStatus.CANCELLED, "superseded: the appointment moved")
        assert (notice.status, notice.last_error) == (
            OutboxStatus.CANCELLED,
            "the patient has not been told a time yet",
        )


# --- (2) Guards: the cancel after a first word ----------------------------------------------------------------------


@pytest.mark.parametrize("provider_took_it", [True, False])
def test_a_cancel_after_a_first_word_whose_sender_died_asks_the_provider_then_tells_or_not(
    clinic, practitioner, now, monkeypatch, settings, provider_took_it
):
    """The reminder and pre-care note (one e-mail) were claimed and their sender died (after the provider took
    the e-mail, or before); the desk cancels. The notice waits while they are in doubt; the provider is asked
    when the lease runs out: it had the e-mail (found sent: told, the notice goes) or not (dropped: no notice)."""
    appointment = first_word_patient(clinic, now)
    claims = dispatch.outbox_claim_due(now=MONDAY_DUE)
    sender_dies(monkeypatch, lambda: send(claims, MONDAY_DUE), after_the_provider_took_it=provider_took_it)
    appointment_cancel(appointment=appointment, actor=RECEPTION, now=MONDAY_DUE + timedelta(minutes=1))
    assert rows(appointment, MessageKind.CANCELLED).count() == 1  # planned: the first word may have gone

    assert deliver(MONDAY_DUE + timedelta(minutes=2)) == {dispatch.SendOutcome.DEFERRED: 1}  # the claim is live
    after_lease = MONDAY_DUE + timedelta(seconds=settings.REMINDERS_CLAIM_LEASE_SECONDS + 1)
    deliver(after_lease)
    deliver(after_lease + timedelta(minutes=1))

    notice = rows(appointment, MessageKind.CANCELLED).get()
    if provider_took_it:
        assert notice.status == OutboxStatus.SENT
        assert [m.subject for m in mail.outbox][-1] == "Your appointment on Tue 10 Mar is cancelled"
        assert len(mail.outbox) == 2  # the first word once (found sent, not sent again), then the notice
    else:
        assert (notice.status, notice.last_error) == (
            OutboxStatus.CANCELLED,
            "the patient was never told of the booking",
        )
        assert mail.outbox == []


def test_a_first_word_text_deferred_by_quiet_hours_is_pending_and_a_cancel_then_tells_nothing(
    clinic, practitioner, now
):
    """Texts only. The dispatcher was down all Monday: at 21:30 it claims the reminder and pre-care text, which
    quiet hours send back to `pending` until 08:00 (no attempt spent). A cancel at 21:40 finds nothing told: no
    notice, and nothing goes in the morning."""
    appointment = first_word_patient(clinic, now, email=False, sms=True)
    outcomes = deliver(london(2026, 3, 9, 21, 30))
    assert outcomes.get(dispatch.SendOutcome.DEFERRED) == 2
    assert set(rows(appointment, MessageKind.REMINDER, MessageKind.PRE_CARE).values_list("status", flat=True)) == {
        OutboxStatus.PENDING
    }
    appointment_cancel(appointment=appointment, actor=RECEPTION, now=london(2026, 3, 9, 21, 40))
    assert not rows(appointment, MessageKind.CANCELLED).exists()
    deliver(london(2026, 3, 10, 8, 1))
    assert texts() == []


def test_a_cancel_while_a_first_word_text_is_claimed_at_night_tells_nothing(clinic, practitioner, now):
    """Claimed at 21:30 (a backlog), the desk cancels before its send: a notice is planned (the claim may be in the
    provider's hands); the send drops the texts (cancelled), and the notice, asked at 08:00, is dropped too."""
    appointment = first_word_patient(clinic, now, email=False, sms=True)
    night = london(2026, 3, 9, 21, 30)
    claims = dispatch.outbox_claim_due(now=night)
    appointment_cancel(appointment=appointment, actor=RECEPTION, now=night + timedelta(seconds=5))
    assert rows(appointment, MessageKind.CANCELLED).count() == 1
    assert set(send(claims, night + timedelta(seconds=10)).values()) == {dispatch.SendOutcome.CANCELLED}
    deliver(night + timedelta(minutes=1))
    deliver(london(2026, 3, 10, 8, 1))
    assert texts() == []
    assert rows(appointment, MessageKind.CANCELLED).get().status == OutboxStatus.CANCELLED


@pytest.mark.parametrize(("muted", "told"), [(("reminders",), True), (("care",), True), (("care", "reminders"), False)])
def test_a_cancel_after_the_first_word_the_patient_did_not_mute(clinic, practitioner, now, muted, told):
    """Reminders muted: the pre-care note is the first word; care muted: the reminder is; both: nothing went."""
    appointment = first_word_patient(clinic, now, muted=muted)
    deliver(MONDAY_DUE)
    assert len(mail.outbox) == (1 if told else 0)
    appointment_cancel(appointment=appointment, actor=RECEPTION, now=MONDAY_DUE + timedelta(hours=1))
    deliver(MONDAY_DUE + timedelta(hours=1, minutes=5))
    cancelled = [m for m in mail.outbox if m.subject == "Your appointment on Tue 10 Mar is cancelled"]
    assert len(cancelled) == (1 if told else 0)


def test_a_cancel_after_the_first_word_went_to_a_record_merged_since_is_told_to_the_survivor(clinic, practitioner, now):
    appointment = first_word_patient(clinic, now)
    deliver(MONDAY_DUE)
    [first_word] = mail.outbox
    survivor = PatientFactory(
        clinic=clinic, first_name="Ada", email="ada.lovelace@example.com", reminder_channels=["email"]
    )
    patient_merge(
        merged=appointment.patient,
        into=survivor,
        now=MONDAY_DUE + timedelta(minutes=30),
        actor_label="clinician@test",
        clinical=True,
    )
    appointment.refresh_from_db()
    assert appointment.patient_id == survivor.pk
    appointment_cancel(appointment=appointment, actor=RECEPTION, now=MONDAY_DUE + timedelta(hours=1))
    deliver(MONDAY_DUE + timedelta(hours=1, minutes=5))
    notice = mail.outbox[-1]
    assert (notice.subject, notice.to) == ("Your appointment on Tue 10 Mar is cancelled", ["ada.lovelace@example.com"])


def test_a_booking_held_for_clearance_whose_first_words_never_went_is_cancelled_in_silence(clinic, practitioner, now):
    """Awaiting clearance, every message is held: the reminder's time passes unsent, and a cancel tells nothing."""
    patient = PatientFactory(clinic=clinic, first_name="Ada", email="ada@example.com", reminder_channels=["email"])
    PatientConditionFactory(patient=patient, condition_id="eczema", status="history")  # relative: clearance
    appointment = book(patient, "microneedling", TUESDAY, now)
    assert appointment.status == AppointmentStatus.PENDING_CLEARANCE
    deliver(MONDAY_DUE + timedelta(minutes=1))
    assert set(rows(appointment, *MessageKind.values).values_list("status", flat=True)) == {OutboxStatus.HELD}
    appointment_cancel(appointment=appointment, actor=RECEPTION, now=MONDAY_DUE + timedelta(hours=1))
    deliver(MONDAY_DUE + timedelta(hours=1, minutes=5))
    assert mail.outbox == [] and not rows(appointment, MessageKind.CANCELLED).exists()


def test_a_cancel_after_a_stop_tells_the_first_word_on_the_channel_left(clinic, practitioner, now):
    """The first word went by e-mail and text; the patient then replied STOP: the cancellation goes by e-mail only."""
    appointment = first_word_patient(clinic, now, sms=True)
    deliver(MONDAY_DUE)
    assert len(mail.outbox) == 1 and len(texts()) == 1
    sms_reply_opt_out(from_number=PHONE, body="STOP", now=MONDAY_DUE + timedelta(minutes=5))
    appointment_cancel(appointment=appointment, actor=RECEPTION, now=MONDAY_DUE + timedelta(hours=1))
    deliver(MONDAY_DUE + timedelta(hours=1, minutes=5))
    assert mail.outbox[-1].subject == "Your appointment on Tue 10 Mar is cancelled"
    assert len(texts()) == 1


# --- (3) Guards: move notices after a first word ------------------------------------------------------------------


def test_a_move_after_the_first_word_went_tells_the_time_it_named(clinic, practitioner, now):
    appointment = first_word_patient(clinic, now)
    deliver(MONDAY_DUE)
    appointment_reschedule(appointment=appointment, start_at=WEDNESDAY, actor=RECEPTION, now=MONDAY_DUE)
    deliver(MONDAY_DUE + timedelta(minutes=6))
    notice = mail.outbox[-1]
    assert "It was: Tue 10 Mar, 10:00 (GMT)" in notice.body and "Wed 11 Mar" in notice.body


def test_a_move_while_the_first_word_is_claimed_plans_no_notice_and_the_new_time_is_told(clinic, practitioner, now):
    """The claimed reminder and pre-care note (Tuesday) may be in the provider's hands when the desk moves the
    visit (a sender that stopped is not known yet), so a move notice is planned from Tuesday. Their send drops
    them (the visit moved): nothing told Tuesday, so the notice is dropped when it goes; the re-planned ones name
    Wednesday."""
    appointment = first_word_patient(clinic, now)
    claims = dispatch.outbox_claim_due(now=MONDAY_DUE)
    appointment_reschedule(appointment=appointment, start_at=WEDNESDAY, actor=RECEPTION, now=MONDAY_DUE)
    assert rows(appointment, MessageKind.RESCHEDULED).get().payload["from_start"] == TUESDAY.isoformat()
    assert set(send(claims, MONDAY_DUE + timedelta(seconds=1)).values()) == {dispatch.SendOutcome.CANCELLED}
    deliver(MONDAY_DUE + timedelta(minutes=6))
    assert rows(appointment, MessageKind.RESCHEDULED).values_list("status", "last_error").get() == (
        OutboxStatus.CANCELLED,
        "the patient has not been told a time yet",
    )
    deliver(london(2026, 3, 10, 10, 1))
    [heard] = mail.outbox
    assert "Wed 11 Mar" in heard.body and "Tue 10 Mar" not in heard.body
