"""Review probe (11 December): reminders/services.py, dispatch.py, timing.py and tasks.py read line by line, each
suspicion then driven through the public services (booking, re-check, clearance, completion, the template admin's
services, the dispatcher's claim and send) to see whether it holds.

Read for: boundary comparisons on instants and quiet hours, DST when a local wall time is built, branches that forget
a status (held for clearance or review), rows read outside their lock and written, claims left behind or given up
too soon, a unique row planned twice, docs/reminders.md against the code.

The suite's Monday is 2 March 2026, 09:00 UTC (London on GMT); each step runs at its own moment.

Found (DEFECTs, each a strict xfail mended the same day; the tests below now pass):
- A care text switched off, its visit moved meanwhile, then switched on again: the run that plans it for the visits
  booked before it hits the unsent row still anchored on the old time (one unsent copy per text and channel) and
  records an IntegrityError; the visit never gets the text for its new time (the stale row is dropped at its
  moment as superseded). The patient's own page turning a channel on then fails outright on the same row.
- Claims handed back after the broker refused them (`outbox_release`): a row a move re-planned meanwhile (a newer
  pending copy) cannot go back to `pending`; the IntegrityError escapes `dispatch_due_batches` and the claims after
  it stay `sending` until their lease runs out (then in doubt).
- A claimed row whose visit was sent for clearance since is put back `held` with the claim counted as an attempt
  (the other "not now" verdicts give it back): a message held once has one attempt less, and fails for good one
  transient error sooner once the visit is cleared.
- Aftercare re-timed to a moment already passed goes at once, without the few minutes' grace docs/reminders.md
  promises ("after the few minutes' grace a move gives"): `_after_grace` refuses any grace past the visit's start,
  which every completed visit is.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings

from reminders import channels, dispatch, services
from reminders.consent import patient_preferences_update
from reminders.models import UNSENT_STATUSES, Channel, OutboxStatus, ReminderTemplate
from reminders.timing import Direction, QuietHours, apply_offset, plan_due
from scheduler.booking import appointment_clear, appointment_complete, appointment_reschedule
from scheduler.recheck import patient_appointments_recheck
from tests.factories import PatientConditionFactory, PatientFactory
from tests.qa.helpers import CLINICIAN, LONDON, NOW, RECEPTION, book, fresh_appointment, ldn, rows

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("care_texts", "message_outboxes")]

PRE_CARE = "microneedling-pre-care-24h"
POST_48H = "microneedling-post-care-48h"
GRACE = timedelta(minutes=settings.REMINDERS_CHANGE_GRACE_MINUTES)


@pytest.fixture
def ada(clinic):
    """Texts and e-mail, both consented."""
    return PatientFactory(
        clinic=clinic,
        first_name="Ada",
        email="ada@example.com",
        phone="+447700900123",
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )


def template(key) -> ReminderTemplate:
    return ReminderTemplate.objects.get(default_key=key)


def switched(key, on: bool) -> ReminderTemplate:
    """The template switched on or off by a save, as the admin saves it."""
    text = template(key)
    text.is_active = on
    text.save()
    return text


def moved_while_off(visit, new_start) -> ReminderTemplate:
    """The pre-care text switched off, the visit moved, the text switched back on; returns it as it was while off."""
    switched(PRE_CARE, False)
    appointment_reschedule(appointment=fresh_appointment(visit), start_at=new_start, actor=RECEPTION, now=NOW)
    off = template(PRE_CARE)
    switched(PRE_CARE, True)
    return off


# --- A care text switched off while its visit moved, then on again -----------------------------------------------


def test_a_text_switched_back_on_reaches_a_visit_moved_while_it_was_off(ada, practitioner, clock):
    """A move cancels the unsent rows of a text switched off (services._reconcile_start_messages), so the run that
    plans it again when it is switched on finds no stale row in the new one's place. (Was a strict-xfail DEFECT: the
    run recorded an IntegrityError and the visit never got the note for its new time.)"""
    visit = book(ada, ldn(2026, 3, 20), NOW)
    new_start = ldn(2026, 3, 27)
    off = moved_while_off(visit, new_start)
    stale = rows(visit, template=template(PRE_CARE), anchor_at=ldn(2026, 3, 20))
    # The move did not carry them (the text was off) and does not leave them standing: nothing unsent for the old time.
    assert {(r.status, r.last_error) for r in stale} == {
        (OutboxStatus.CANCELLED, "the appointment moved while its text was switched off")
    }

    run = services.template_rollout_start(template=template(PRE_CARE), before=off, now=NOW)
    services.template_rollout_step(run_id=run.pk, now=NOW)

    run.refresh_from_db()
    unsent = rows(visit, template=template(PRE_CARE), status__in=UNSENT_STATUSES)
    assert run.failures == []
    assert {(r.channel, r.anchor_at, r.due_at) for r in unsent} == {
        (Channel.EMAIL, new_start, ldn(2026, 3, 26)),
        (Channel.SMS, new_start, ldn(2026, 3, 26)),
    }


def test_a_patient_turning_texts_on_after_the_text_came_back_is_not_refused(clinic, practitioner, clock):
    """(Was a strict-xfail DEFECT: the patient's own page failed with an IntegrityError on the stale row.)"""
    bea = PatientFactory(clinic=clinic, first_name="Bea", email="bea@example.com", phone="+447700900456")
    bea.reminder_channels, bea.sms_consent = ["email"], False
    bea.save()
    visit = book(bea, ldn(2026, 3, 20), NOW)
    moved_while_off(visit, ldn(2026, 3, 27))  # the admin's run is not even needed: the contact change meets it

    patient_preferences_update(patient=bea, now=NOW, sms=True, sms_consent=True)

    unsent = rows(visit, template=template(PRE_CARE), status__in=UNSENT_STATUSES)
    assert {(r.channel, r.anchor_at) for r in unsent} == {
        (Channel.EMAIL, ldn(2026, 3, 27)),
        (Channel.SMS, ldn(2026, 3, 27)),
    }


# --- Claims handed back, and a visit moved while its rows were claimed ---------------------------------------------


def _booked_with_pre_care_due_now(ada):
    """Tomorrow 09:00: its 24 h pre-care note and day-before reminder are due now, with the confirmation."""
    visit = book(ada, ldn(2026, 3, 3, 9, 0), NOW)
    assert {r.kind for r in rows(visit, due_at__lte=NOW)} == {"confirmation", "pre_care", "reminder"}
    return visit


def test_a_visit_moved_while_its_pre_care_is_claimed_gets_it_once_for_the_new_time(ada, practitioner, clock):
    """What holds: the claimed row is not moved (it is not unsent); the move plans a copy for the new time, and the
    claimed one, when its send comes, is dropped as superseded: one text per start, never the old start's."""
    visit = _booked_with_pre_care_due_now(ada)
    claims = dispatch.outbox_claim_due(now=NOW)
    appointment_reschedule(
        appointment=fresh_appointment(visit), start_at=ldn(2026, 3, 3, 10, 0), actor=RECEPTION, now=NOW
    )
    outcomes = dispatch.outbox_send_batch(
        message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=NOW
    )

    claimed_pre = [r for r in rows(visit, kind="pre_care") if r.pk in outcomes]
    assert {(r.status, r.last_error) for r in claimed_pre} == {
        (OutboxStatus.CANCELLED, "superseded: the appointment moved")
    }
    waiting = rows(visit, kind="pre_care", status=OutboxStatus.PENDING)
    assert {(r.channel, r.anchor_at) for r in waiting} == {
        (Channel.EMAIL, ldn(2026, 3, 3, 10, 0)),
        (Channel.SMS, ldn(2026, 3, 3, 10, 0)),
    }


def test_claims_handed_back_after_the_broker_refused_them_survive_a_move_meanwhile(ada, practitioner, clock):
    """dispatch.outbox_release cancels a claim a newer copy replaced meanwhile and hands back the rest. (Was a
    strict-xfail DEFECT: the IntegrityError escaped the dispatcher, the claims after it left `sending`.)"""
    visit = _booked_with_pre_care_due_now(ada)

    def broker_down_after_a_move(task):
        appointment_reschedule(
            appointment=fresh_appointment(visit), start_at=ldn(2026, 3, 3, 10, 0), actor=RECEPTION, now=NOW
        )
        raise ConnectionError("the broker is away")

    handed = dispatch.dispatch_due_batches(now=NOW, enqueue=broker_down_after_a_move, per_task=100)

    assert handed == 0
    assert rows(visit, status=OutboxStatus.SENDING) == []  # every claim handed back, or dropped as superseded


# --- A claimed row whose visit is sent for clearance meanwhile -----------------------------------------------------


def _claimed_then_sent_for_clearance(ada):
    """Booked for Wednesday; its confirmations claimed; then a relative contraindication recorded and the visit
    re-checked (pending clearance) before the send runs."""
    visit = book(ada, ldn(2026, 3, 4), NOW)
    claims = dispatch.outbox_claim_due(now=NOW)
    assert {r.kind for r in rows(visit, status=OutboxStatus.SENDING)} == {"confirmation"}
    PatientConditionFactory(patient=ada, condition_id="eczema", status="history")  # relative (domain 3)
    [changed] = patient_appointments_recheck(patient_id=ada.pk, now=NOW, cause="qa: eczema recorded")
    assert changed.status == "pending_clearance"
    outcomes = dispatch.outbox_send_batch(
        message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=NOW
    )
    return visit, outcomes


def test_a_row_claimed_before_the_visit_was_sent_for_clearance_is_held_not_sent(ada, practitioner, clock):
    """What holds: the send reads the visit's status under the row's lock; nothing reaches the patient before a
    clinician clears it (domain 3)."""
    visit, outcomes = _claimed_then_sent_for_clearance(ada)
    assert set(outcomes.values()) == {dispatch.SendOutcome.HELD}
    assert {r.status for r in rows(visit, kind="confirmation")} == {OutboxStatus.HELD}
    assert channels.LocmemSmsBackend.outbox == []


def test_a_hold_does_not_spend_an_attempt(ada, practitioner, clock, monkeypatch, settings):
    """A row held for clearance at its send gives its attempt back, as every "not now" does. (Was a strict-xfail
    DEFECT: after clearance the first transient error used up the last attempt.)"""
    settings.REMINDERS_MAX_ATTEMPTS = 2  # one transient error may be retried
    visit, _ = _claimed_then_sent_for_clearance(ada)
    cleared_at = NOW + timedelta(minutes=1)
    appointment_clear(appointment=fresh_appointment(visit), actor=CLINICIAN, now=cleared_at, reason="eczema settled")

    def provider_busy(message, now, companions=()):
        raise channels.TransientSendError("503 from the provider")

    monkeypatch.setattr(dispatch, "_deliver", provider_busy)
    dispatch.dispatch_local(now=cleared_at)

    confirmations = rows(visit, kind="confirmation")
    assert {(r.status, r.attempts) for r in confirmations} == {(OutboxStatus.PENDING, 1)}, [
        (r.status, r.attempts, r.last_error) for r in confirmations
    ]


# --- Re-timing aftercare --------------------------------------------------------------------------------------------


def test_aftercare_re_timed_to_a_moment_passed_waits_out_the_grace(ada, practitioner):
    """services._after_grace bounds the grace by the start only while the start is ahead. (Was a strict-xfail DEFECT:
    aftercare re-timed into the past went at once.)"""
    visit = book(ada, ldn(2026, 3, 10), NOW)
    done_at = datetime(2026, 3, 10, 11, tzinfo=UTC)
    with time_machine.travel(done_at, tick=False):
        appointment_complete(appointment=fresh_appointment(visit), actor=CLINICIAN, now=done_at)
    assert {r.due_at for r in rows(visit, template=template(POST_48H))} == {done_at + timedelta(hours=48)}

    later = datetime(2026, 3, 11, 17, tzinfo=UTC)  # 30 h after: "+24 h" has passed
    text = template(POST_48H)
    text.offset_value = 24
    text.save()
    services.outbox_template_retimed(template=text, now=later)

    assert {(r.status, r.due_at) for r in rows(visit, template=text)} == {(OutboxStatus.PENDING, later + GRACE)}


# --- Timing: boundaries and DST (pure) ------------------------------------------------------------------------------

QUIET = QuietHours()


def _sms_plan(anchor, *, offset=-24, direction=Direction.EARLIER, now=NOW, deadline=None):
    return plan_due(
        anchor_at=anchor,
        offset_value=offset,
        offset_unit="hours",
        tz=LONDON,
        now=now,
        direction=direction,
        is_sms=True,
        quiet=QUIET,
        send_if_late=True,
        deadline=deadline,
    ).due_at


def test_quiet_hours_boundaries_21_00_is_quiet_and_08_00_is_not():
    """No SMS between 21:00 and 08:00 (domain 4): due at 21:00 exactly, a pre-care text moves to 20:59 the same
    evening, an aftercare text to 08:00; due at 08:00 exactly, both go at 08:00."""
    at_nine_pm = ldn(2026, 3, 11, 21, 0)
    assert _sms_plan(at_nine_pm + timedelta(hours=24)) == ldn(2026, 3, 11, 20, 59)
    assert _sms_plan(at_nine_pm, offset=0, direction=Direction.LATER) == ldn(2026, 3, 12, 8, 0)
    at_eight = ldn(2026, 3, 12, 8, 0)
    assert _sms_plan(at_eight + timedelta(hours=24)) == at_eight
    assert _sms_plan(at_eight, offset=0, direction=Direction.LATER) == at_eight


def test_a_pre_care_text_that_quiet_hours_would_push_to_the_start_is_not_sent():
    """A visit at 08:00 whose note is due in the night, and planned only once the night began: the first allowed
    moment (08:00) is the start itself, and a note at its start warns of nothing."""
    start = ldn(2026, 3, 12, 8, 0)
    late_evening = ldn(2026, 3, 11, 22, 0)
    assert _sms_plan(start, offset=-1, now=late_evening, deadline=start) is None


def test_day_offsets_keep_the_local_clock_across_the_spring_change():
    """'1 day before' a visit at 10:00 BST on Sunday 29 March (clocks went forward at 01:00) is 10:00 GMT on
    Saturday: 23 elapsed hours, the same wall clock; hours stay elapsed."""
    visit = datetime(2026, 3, 29, 10, 0, tzinfo=LONDON)
    assert apply_offset(visit, -1, "days", LONDON) == datetime(2026, 3, 28, 10, 0, tzinfo=LONDON)
    assert apply_offset(visit, -24, "hours", LONDON) == datetime(2026, 3, 28, 9, 0, tzinfo=LONDON)
    # A wall time the spring change skips (01:30 on the Sunday): "+1 day" from Saturday 01:30 lands after the gap (02:30 BST).
    assert apply_offset(datetime(2026, 3, 28, 1, 30, tzinfo=LONDON), 1, "days", LONDON) == datetime(
        2026, 3, 29, 1, 30, tzinfo=UTC
    )
