"""Review of 4ed2485 and cbfe3fa: a reminder in doubt (its sender died, perhaps after the provider took it) when the
visit moves.

4ed2485: a row in doubt that a move carries keeps the start its stopped sender may have named
(`payload.may_have_named`); found sent later, it is recorded as that start's message and the new start's is planned
anew, due at once (`services.outbox_plan_in_place_of`). cbfe3fa: with nothing sent that named a time, a reminder or
pre-care note in doubt counts as the time last heard (`services._start_in_doubt`), so a move notice is planned.

Sequences forced through the real services and dispatcher (docs/reminders.md, "in doubt", "What holds for every
message", the table of what each booking change does). Found, and mended in the commit after the review:

* a reminder found sent was dated at the settle (`sent_at`), so `last_told_start` read the old start it named as
  the newest word, over a move notice that went before: moved back to that start before the reminder planned in
  its place went (or while the row was being settled), the patient last told the new time was never told. Now a
  row found sent is dated when the attempt in doubt began (`in_doubt_since`, the stopped sender's claim);
* moved away and back within the grace, a reminder in doubt was re-planned for a moment past and cancelled, never
  asked; the notice was dropped as "last told this very time"; the provider never had it: nothing was told. Now a
  row in doubt whose attempt named the start as it stands is left to be settled (`services._keep_in_doubt`).

The rest are guards: a cancel after the move, a held booking, quiet hours, merged companions, "send again", a
merged record, a move back after the replacement went. The first word is Tuesday 10:00's reminder, due Monday
10:00 (tests/qa/test_review_first_word.py, `_first_word_in_doubt`: its sender died, then the provider could not be
asked, so it waits `pending` and in doubt, due again at 10:07:01).
The conftest `now` is Monday 2 March 2026, 09:00 in London (GMT).
"""

from datetime import timedelta

import pytest
from django.core import mail

from clinic.merging import patient_merge
from clinic.models import AppointmentStatus
from clinic.record_changes import patient_record_changed
from reminders import channels, dispatch
from reminders.models import MessageKind, OutboxMessage, OutboxStatus
from reminders.services import last_told_start
from scheduler.booking import appointment_cancel, appointment_clear, appointment_reschedule
from tests.factories import PatientConditionFactory, PatientFactory
from tests.qa.helpers import (
    MONDAY_DUE,
    TUESDAY,
    WEDNESDAY,
    _first_word_in_doubt,
    _heard,
    asked_while_the_lookup_is_down,
    deliver,
    first_word_patient,
    send,
    texts,
)
from tests.qa.helpers import rows_of_kinds as rows
from tests.reminders import conftest as reminder_fixtures
from tests.reminders.conftest import CLINICIAN, RECEPTION, london
from tests.reminders.support import sender_dies

# The reminders suite's world (a London clinic with the shipped care texts, Dr Hart, the locmem backends), as
# tests/qa/test_review_first_word.py takes it.
_reminder_settings = reminder_fixtures._reminder_settings
clinic = reminder_fixtures.clinic
practitioner = reminder_fixtures.practitioner

TUESDAY_4PM = london(2026, 3, 10, 16)
RETRIED = timedelta(seconds=120)  # the in-doubt row is due again after the backoff of its second attempt


def _reschedule(appointment, start, at):
    appointment_reschedule(appointment=appointment, start_at=start, actor=RECEPTION, now=at)


def _states(appointment, *kinds):
    return sorted(rows(appointment, *kinds).values_list("kind", "anchor_at", "status"))


# --- Defects the review found, mended since --------------------------------------------------------------------


def test_a_move_back_before_the_replacement_of_a_found_reminder_goes_tells_the_time_that_stands(
    clinic, practitioner, now, monkeypatch, settings
):
    """Tuesday 10:00's reminder is in doubt (the provider took it); the desk moves the visit to Tuesday 16:00 and
    the move notice goes at 10:10. At 16:00 the row, due for 16:00, is settled: found, it is recorded as naming
    10:00, and 16:00's reminder is planned in its place, due at once. Before that one goes, the desk moves the visit
    back to 10:00. The patient's last word is the notice (16:00): they must hear of 10:00."""
    appointment, after_lease = _first_word_in_doubt(clinic, now, monkeypatch, settings)
    _reschedule(appointment, TUESDAY_4PM, after_lease + timedelta(seconds=10))
    deliver(after_lease + timedelta(minutes=10))
    assert deliver(london(2026, 3, 9, 16, 0) + timedelta(seconds=30)) == {dispatch.SendOutcome.FOUND_SENT: 1}
    assert _states(appointment, MessageKind.REMINDER) == [
        (MessageKind.REMINDER, TUESDAY, OutboxStatus.SENT),
        (MessageKind.REMINDER, TUESDAY_4PM, OutboxStatus.PENDING),
    ]
    heard = _heard("email")
    assert len(heard) == 2 and "has moved" in heard[1] and "16:00" in heard[1], heard

    _reschedule(appointment, TUESDAY, london(2026, 3, 9, 16, 1))
    deliver(london(2026, 3, 9, 16, 10))
    deliver(london(2026, 3, 9, 16, 20))

    heard = _heard("email")  # the found row is dated Monday 10:00 (its attempt), before the notice's 16:00
    assert len(heard) == 3, f"nothing told the patient, last told 16:00, that the visit is back at 10:00: {heard}"
    assert "It was: Tue 10 Mar, 16:00" in heard[2], heard[2]


def test_a_move_while_the_reminder_in_doubt_is_claimed_tells_the_new_time_before_the_old_one(
    clinic, practitioner, now, monkeypatch, settings
):
    """A defect at cbfe3fa, mended since (a row found sent is dated when its attempt in doubt began): the desk moves the visit to Wednesday while the reminder in doubt is claimed again
    (`sending`, not the move's to touch). A move notice is planned from Tuesday (cbfe3fa); found sent after the
    move, the row's sent_at was the settle, and the notice's verdict (last_told_start(before=the move)) skipped it,
    and _start_in_doubt no longer saw it: dropped as "not told a time yet", the patient told Tuesday heard of
    Wednesday only from Wednesday's reminder, due Tuesday 10:00, the very time they would come."""
    appointment, after_lease = _first_word_in_doubt(clinic, now, monkeypatch, settings)
    claims = dispatch.outbox_claim_due(now=after_lease + RETRIED + timedelta(seconds=1))
    assert len(claims) == 1
    _reschedule(appointment, WEDNESDAY, after_lease + RETRIED + timedelta(seconds=10))
    notice = rows(appointment, MessageKind.RESCHEDULED).get()
    assert notice.payload["from_start"] == TUESDAY.isoformat()  # cbfe3fa: planned from the start in doubt
    assert send(claims, after_lease + RETRIED + timedelta(seconds=20)) == {
        claims[0].message_id: dispatch.SendOutcome.FOUND_SENT
    }
    assert _states(appointment, MessageKind.REMINDER) == [
        (MessageKind.REMINDER, TUESDAY, OutboxStatus.SENT),  # the patient heard Tuesday
        (MessageKind.REMINDER, WEDNESDAY, OutboxStatus.PENDING),  # due Tuesday 10:00, the old visit's very time
    ]

    deliver(after_lease + timedelta(minutes=10))
    deliver(after_lease + timedelta(minutes=11))
    notice.refresh_from_db()
    assert (notice.status, notice.last_error) == (OutboxStatus.SENT, ""), notice.last_error
    assert "Wed 11 Mar" in _heard("email")[-1]


def test_a_move_back_while_the_moved_reminder_is_being_settled_is_told(
    clinic, practitioner, now, monkeypatch, settings
):
    """Tuesday 10:00's reminder in doubt (the provider took it) is moved with the visit to Tuesday 16:00; the notice
    (16:00) goes at 10:10. At 16:00 the row is claimed to settle it, and the desk moves the visit back to 10:00
    before its sender runs: a notice from 16:00 is planned. Found, the row is recorded as 10:00's (sent_at: Monday
    10:00, when its attempt in doubt began, before the notice); nothing is planned in its place (10:00 stands). The patient, last told 16:00, must hear
    the notice of 10:00."""
    appointment, after_lease = _first_word_in_doubt(clinic, now, monkeypatch, settings)
    _reschedule(appointment, TUESDAY_4PM, after_lease + timedelta(seconds=10))
    deliver(after_lease + timedelta(minutes=10))
    four = london(2026, 3, 9, 16)
    claims = dispatch.outbox_claim_due(now=four + timedelta(seconds=1))
    _reschedule(appointment, TUESDAY, four + timedelta(seconds=5))
    notice = rows(appointment, MessageKind.RESCHEDULED).get(status=OutboxStatus.PENDING)
    assert notice.payload["from_start"] == TUESDAY_4PM.isoformat()
    assert send(claims, four + timedelta(seconds=10)) == {claims[0].message_id: dispatch.SendOutcome.FOUND_SENT}
    assert _states(appointment, MessageKind.REMINDER) == [(MessageKind.REMINDER, TUESDAY, OutboxStatus.SENT)]

    deliver(four + timedelta(minutes=6))
    notice.refresh_from_db()
    assert (notice.status, notice.last_error) == (OutboxStatus.SENT, ""), notice.last_error
    heard = _heard("email")
    assert len(heard) == 3 and "It was: Tue 10 Mar, 16:00" in heard[2], heard


@pytest.mark.parametrize("provider_took_it", [True, False])
def test_a_move_there_and_back_while_the_reminder_is_in_doubt(
    clinic, practitioner, now, monkeypatch, settings, provider_took_it
):
    """The desk tries Wednesday and comes back to Tuesday a minute later (the grace is for this). Provider took it:
    the patient heard Tuesday once and hears nothing more. It did not: they must still hear of Tuesday."""
    appointment, after_lease = _first_word_in_doubt(
        clinic, now, monkeypatch, settings, provider_took_it=provider_took_it
    )
    _reschedule(appointment, WEDNESDAY, after_lease + timedelta(seconds=10))
    _reschedule(appointment, TUESDAY, after_lease + timedelta(seconds=70))
    notice = rows(appointment, MessageKind.RESCHEDULED).get()
    assert (notice.status, notice.last_error) == (OutboxStatus.CANCELLED, "the patient was last told this very time")
    for minutes in (10, 60, 12 * 60):
        deliver(after_lease + timedelta(minutes=minutes))
    heard = _heard("email")
    assert len(heard) == 1 and "Tue 10 Mar" in heard[0], heard


# --- Guards ---------------------------------------------------------------------------------------------------------


def test_a_move_back_after_the_replacement_went_tells_the_time_that_stands(
    clinic, practitioner, now, monkeypatch, settings
):
    """As the first defect, but the reminder planned in place of the found one goes (16:00) before the desk moves
    the visit back: the notice runs from 16:00, the time last heard."""
    appointment, after_lease = _first_word_in_doubt(clinic, now, monkeypatch, settings)
    _reschedule(appointment, TUESDAY_4PM, after_lease + timedelta(seconds=10))
    deliver(after_lease + timedelta(minutes=10))
    deliver(london(2026, 3, 9, 16, 0) + timedelta(seconds=30))
    deliver(london(2026, 3, 9, 16, 1))
    assert last_told_start(appointment) == TUESDAY_4PM
    _reschedule(appointment, TUESDAY, london(2026, 3, 9, 17))
    deliver(london(2026, 3, 9, 17, 10))
    heard = _heard("email")
    assert len(heard) == 4, heard
    assert "reminder" in heard[2] and "16:00" in heard[2]
    assert "has moved" in heard[3] and "It was: Tue 10 Mar, 16:00" in heard[3], heard[3]
    assert last_told_start(appointment) == TUESDAY


@pytest.mark.parametrize("provider_took_it", [True, False])
def test_a_cancel_after_the_reminder_in_doubt_moved_is_told_and_plans_nothing_in_its_place(
    clinic, practitioner, now, monkeypatch, settings, provider_took_it
):
    """Moved to Wednesday (the notice goes), then cancelled: the row in doubt is cancelled, the cancellation goes,
    and nothing is planned in its place."""
    appointment, after_lease = _first_word_in_doubt(
        clinic, now, monkeypatch, settings, provider_took_it=provider_took_it
    )
    _reschedule(appointment, WEDNESDAY, after_lease + timedelta(seconds=10))
    deliver(after_lease + timedelta(minutes=10))
    appointment_cancel(appointment=appointment, actor=RECEPTION, now=MONDAY_DUE + timedelta(hours=2))
    deliver(MONDAY_DUE + timedelta(hours=2, minutes=5))
    deliver(london(2026, 3, 10, 10, 1))
    assert _states(appointment, MessageKind.REMINDER) == [(MessageKind.REMINDER, WEDNESDAY, OutboxStatus.CANCELLED)]
    assert [m.subject for m in mail.outbox][-1] == "Your appointment on Wed 11 Mar is cancelled"
    assert len(mail.outbox) == (3 if provider_took_it else 2)


def test_a_cancel_while_the_moved_reminder_in_doubt_is_claimed_plans_nothing_in_its_place(
    clinic, practitioner, now, monkeypatch, settings
):
    """The row moved to Wednesday is claimed on Tuesday to settle it; the desk cancels before its sender runs (a
    claimed row is not the cancel's to touch). Found, it is recorded as Tuesday's; nothing is planned for a
    cancelled visit, and the cancellation goes."""
    appointment, after_lease = _first_word_in_doubt(clinic, now, monkeypatch, settings)
    _reschedule(appointment, WEDNESDAY, after_lease + timedelta(seconds=10))
    deliver(after_lease + timedelta(minutes=10))
    tuesday = london(2026, 3, 10, 10, 1)
    claims = dispatch.outbox_claim_due(now=tuesday)
    appointment_cancel(appointment=appointment, actor=RECEPTION, now=tuesday + timedelta(seconds=10))
    assert send(claims, tuesday + timedelta(seconds=20)) == {claims[0].message_id: dispatch.SendOutcome.FOUND_SENT}
    deliver(tuesday + timedelta(minutes=1))
    assert _states(appointment, MessageKind.REMINDER) == [(MessageKind.REMINDER, TUESDAY, OutboxStatus.SENT)]
    assert [m.subject for m in mail.outbox][-1] == "Your appointment on Wed 11 Mar is cancelled"
    assert len(mail.outbox) == 3


def test_a_reminder_in_doubt_moved_while_the_booking_waits_for_clearance(
    clinic, practitioner, now, monkeypatch, settings
):
    """Moved to Wednesday while in doubt; a new condition then sends the booking for clearance: the row (still in
    doubt, keeping Tuesday) and the notice are held. Cleared on Tuesday at 09:00: the notice goes (from Tuesday);
    at 10:01 the row is found sent, recorded as Tuesday's, and Wednesday's reminder goes in its place."""
    appointment, after_lease = _first_word_in_doubt(clinic, now, monkeypatch, settings)
    _reschedule(appointment, WEDNESDAY, after_lease + timedelta(seconds=10))
    PatientConditionFactory(patient=appointment.patient, condition_id="eczema", status="history")
    patient_record_changed(patient_id=appointment.patient_id, now=after_lease + timedelta(minutes=1), cause="test")
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.PENDING_CLEARANCE
    held = rows(appointment, MessageKind.REMINDER, MessageKind.RESCHEDULED)
    assert set(held.values_list("status", flat=True)) == {OutboxStatus.HELD}
    assert held.get(kind=MessageKind.REMINDER).payload["may_have_named"] == TUESDAY.isoformat()
    deliver(after_lease + timedelta(minutes=10))
    assert len(_heard("email")) == 1

    appointment_clear(appointment=appointment, actor=CLINICIAN, now=london(2026, 3, 10, 9), reason="mild, healed")
    deliver(london(2026, 3, 10, 9, 1))
    deliver(london(2026, 3, 10, 10, 1))
    deliver(london(2026, 3, 10, 10, 2))
    heard = _heard("email")
    assert len(heard) == 3, heard
    assert "has moved" in heard[1] and "It was: Tue 10 Mar, 10:00" in heard[1]
    assert "reminder" in heard[2] and "Wed 11 Mar" in heard[2]
    assert _states(appointment, MessageKind.REMINDER) == [
        (MessageKind.REMINDER, TUESDAY, OutboxStatus.SENT),
        (MessageKind.REMINDER, WEDNESDAY, OutboxStatus.SENT),
    ]


def test_a_text_planned_in_place_of_one_found_at_night_waits_for_the_morning(
    clinic, practitioner, now, monkeypatch, settings
):
    """Texts only. Moved to Wednesday while Tuesday's text is in doubt; the dispatcher is down on Tuesday until
    21:30, when the row is settled: found, Wednesday's text is planned in its place, due at once, and quiet hours
    keep it until 08:00 (the visit is at 10:00). Nothing goes at night."""
    appointment, after_lease = _first_word_in_doubt(clinic, now, monkeypatch, settings, channel="sms")
    _reschedule(appointment, WEDNESDAY, after_lease + timedelta(seconds=10))
    deliver(after_lease + timedelta(minutes=10))
    assert len(texts()) == 2
    assert deliver(london(2026, 3, 10, 21, 30)) == {dispatch.SendOutcome.FOUND_SENT: 1}
    assert deliver(london(2026, 3, 10, 21, 31)) == {dispatch.SendOutcome.DEFERRED: 1}
    again = rows(appointment, MessageKind.REMINDER).get(payload__has_key="in_place_of")
    assert (again.status, again.due_at, again.anchor_at) == (OutboxStatus.PENDING, london(2026, 3, 11, 8), WEDNESDAY)
    assert len(texts()) == 2
    deliver(
        london(
            2026,
            3,
            11,
            8,
            0,
        )
    )
    assert len(texts()) == 3 and "Wed 11 Mar" in texts()[-1] and "Tue 10 Mar" not in texts()[-1]


def test_a_reminder_and_pre_care_merged_in_doubt_and_moved_both_go_for_the_new_time(
    clinic, practitioner, now, monkeypatch, settings
):
    """REMINDERS_MERGE_MINUTES: the reminder and pre-care note went as one e-mail (under the id of one of them) and
    the sender died; both are in doubt, and are moved to Wednesday. On Tuesday the provider knows the carrier (found:
    recorded as Tuesday's, Wednesday's planned in its place) and not its companion (it goes, naming Wednesday).
    Each ends with one sent copy for Wednesday; no unique-constraint clash."""
    settings.REMINDERS_MERGE_MINUTES = 10
    appointment = first_word_patient(clinic, now)
    claims = dispatch.outbox_claim_due(now=MONDAY_DUE)
    assert len(claims) == 2
    sender_dies(monkeypatch, lambda: send(claims, MONDAY_DUE), after_the_provider_took_it=True)
    assert len(mail.outbox) == 1 and "Preparing for your visit" in mail.outbox[0].body
    after_lease = asked_while_the_lookup_is_down(monkeypatch, settings, rows_in_doubt=2)
    _reschedule(appointment, WEDNESDAY, after_lease + timedelta(seconds=10))
    assert {r.payload.get("may_have_named") for r in rows(appointment, MessageKind.REMINDER, MessageKind.PRE_CARE)} == {
        TUESDAY.isoformat()
    }
    deliver(after_lease + timedelta(minutes=10))
    for second in (1, 2, 3):
        deliver(london(2026, 3, 10, 10, second))
    kinds = (MessageKind.REMINDER, MessageKind.PRE_CARE)
    sent_for_wednesday = rows(appointment, *kinds).filter(status=OutboxStatus.SENT, anchor_at=WEDNESDAY)
    assert sorted(sent_for_wednesday.values_list("kind", flat=True)) == sorted(kinds)
    assert not rows(appointment, *kinds).filter(status__in=[OutboxStatus.PENDING, OutboxStatus.SENDING]).exists()
    later = [m.body for m in mail.outbox[2:]]
    assert later and all("Wed 11 Mar" in body and "Tue 10 Mar" not in body for body in later), later


def test_staff_send_again_of_a_moved_reminder_that_gave_up_in_doubt(clinic, practitioner, now, monkeypatch, settings):
    """Moved to Wednesday while in doubt; on Tuesday its sender dies again (before the provider), and the claim
    after gives up (`failed`, still in doubt, keeping Tuesday). The desk sends it again: its sender asks the
    provider, which has Monday's message: recorded as Tuesday's, and Wednesday's goes in its place."""
    settings.REMINDERS_MAX_ATTEMPTS = 3
    appointment, after_lease = _first_word_in_doubt(clinic, now, monkeypatch, settings)
    _reschedule(appointment, WEDNESDAY, after_lease + timedelta(seconds=10))
    deliver(after_lease + timedelta(minutes=10))
    tuesday = london(2026, 3, 10, 10, 1)
    claims = dispatch.outbox_claim_due(now=tuesday)
    monkeypatch.setattr(channels, "accepted", lambda **kwargs: channels.CANNOT_TELL)
    sender_dies(monkeypatch, lambda: send(claims, tuesday), after_the_provider_took_it=False)
    monkeypatch.undo()
    assert deliver(tuesday + timedelta(minutes=10)) == {}  # the claim found it spent: given up on
    row = rows(appointment, MessageKind.REMINDER).get()
    assert (row.status, row.in_doubt, row.payload["may_have_named"]) == (OutboxStatus.FAILED, True, TUESDAY.isoformat())

    answer = dispatch.patient_message_send_again(message=row, now=tuesday + timedelta(minutes=20), by=RECEPTION)
    assert answer.refused == "", answer
    deliver(tuesday + timedelta(minutes=21))
    deliver(tuesday + timedelta(minutes=22))
    assert _states(appointment, MessageKind.REMINDER) == [
        (MessageKind.REMINDER, TUESDAY, OutboxStatus.SENT),
        (MessageKind.REMINDER, WEDNESDAY, OutboxStatus.SENT),
    ]
    heard = _heard("email")
    assert len(heard) == 3 and "reminder" in heard[2] and "Wed 11 Mar" in heard[2], heard


def test_a_merge_while_the_moved_reminder_is_in_doubt_tells_the_survivor(
    clinic, practitioner, now, monkeypatch, settings
):
    """The record is merged into another (a new address) while the moved row waits in doubt: found sent on Tuesday,
    Wednesday's reminder planned in its place goes to the survivor's address."""
    appointment, after_lease = _first_word_in_doubt(clinic, now, monkeypatch, settings)
    _reschedule(appointment, WEDNESDAY, after_lease + timedelta(seconds=10))
    deliver(after_lease + timedelta(minutes=10))
    survivor = PatientFactory(
        clinic=clinic, first_name="Ada", email="ada.lovelace@example.com", reminder_channels=["email"]
    )
    patient_merge(
        merged=appointment.patient, into=survivor, now=MONDAY_DUE + timedelta(hours=1), actor_label="x", clinical=True
    )
    deliver(london(2026, 3, 10, 10, 1))
    deliver(london(2026, 3, 10, 10, 2))
    last = mail.outbox[-1]
    assert len(mail.outbox) == 3 and last.to == ["ada.lovelace@example.com"] and "Wed 11 Mar" in last.body
    found = rows(appointment, MessageKind.REMINDER).get(anchor_at=TUESDAY)
    assert (found.status, found.payload["told_start"]) == (OutboxStatus.SENT, TUESDAY.isoformat())
    assert OutboxMessage.objects.filter(payload__in_place_of=str(found.pk), status=OutboxStatus.SENT).count() == 1
