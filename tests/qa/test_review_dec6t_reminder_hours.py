"""Review probe dec6t: pre- and post-care messages at the right local hour after a booking changes.

Domain brief 4: pre-care is anchored to the start, post-care to the completion, in local time; no SMS between 21:00
and 08:00 local, a message that falls there moving to the nearest allowed moment still before what it warns about
(pre-care earlier, never later). docs/reminders.md ("What each booking change does to the outbox", "Time"): unsent
reminders move with the visit (the same rows, never duplicated), one sent for the old time goes again for the new one,
held rows wait for clearance, late care instructions go at once. Driven through the booking services (reschedule,
cancel and book again, clear, a release after a re-check, complete) and read back from the outbox rows; every
expected time is computed here with zoneinfo, never with reminders.timing. Zones: London, St John's (-03:30, DST
on 8 March), Adelaide (+10:30/+09:30, back on 5 April), Kolkata (+05:30).

Found (6 December):
* DEFECT: a visit whose pre-care text went, moved at night to a time whose text is skipped for quiet hours and
  straight back, gets that text a second time at 08:00 (reminders/services.py `_reconcile_start_messages`: the
  latest outcome per template and channel counts `skipped` and `failed` rows as told).
* QUESTION: texts switched back on after the visit was marked done plan none of the aftercare still ahead
  (reminders/services.py `outbox_contact_changed` plans reminders and pre-care of coming visits only).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from clinic.models import AppointmentStatus, WorkingHours
from reminders.consent import sms_reply_opt_in, sms_reply_opt_out
from reminders.dispatch import dispatch_local
from reminders.models import MessageKind, OutboxMessage, OutboxStatus
from scheduler.booking import (
    appointment_cancel,
    appointment_clear,
    appointment_complete,
    appointment_reschedule,
)
from tests.factories import ClinicFactory, PatientConditionFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import CLINICIAN, RECEPTION, book, fresh, org_rule, rows, send_all_until

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("message_outboxes", "_quiet_nights")]

LONDON = ZoneInfo("Europe/London")
ST_JOHNS = ZoneInfo("America/St_Johns")  # -03:30 (NST), -02:30 (NDT) from Sunday 8 March 2026, 02:00
ADELAIDE = ZoneInfo("Australia/Adelaide")  # +10:30 (ACDT), +09:30 (ACST) from Sunday 5 April 2026, 03:00
KOLKATA = ZoneInfo("Asia/Kolkata")  # +05:30, no DST
SENT_OR_WAITING = (OutboxStatus.SENT, OutboxStatus.PENDING, OutboxStatus.HELD, OutboxStatus.SENDING)


# --- independent time arithmetic -----------------------------------------------------------------------------------


def wall(zone: ZoneInfo, y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    """An existing, unambiguous local wall time as a UTC instant (asserted, so no case is built on a gap)."""
    local = datetime(y, m, d, hh, mm)
    readings = {local.replace(tzinfo=zone, fold=f).astimezone(UTC) for f in (0, 1)}
    assert len(readings) == 1, (local, zone)
    [instant] = readings
    assert instant.astimezone(zone).replace(tzinfo=None) == local, (local, zone)
    return instant


def is_quiet(instant: datetime, zone: ZoneInfo) -> bool:
    clock = instant.astimezone(zone).time()
    return clock >= time(21) or clock < time(8)


def walk_back(instant: datetime, zone: ZoneInfo) -> datetime:
    """The latest whole minute at or before `instant` outside 21:00-08:00 local, walking the clock."""
    while is_quiet(instant, zone):
        instant -= timedelta(minutes=1)
    return instant


def walk_on(instant: datetime, zone: ZoneInfo) -> datetime:
    """The earliest whole minute at or after `instant` outside 21:00-08:00 local, walking the clock."""
    while is_quiet(instant, zone):
        instant += timedelta(minutes=1)
    return instant


# --- the world -----------------------------------------------------------------------------------------------------


@pytest.fixture
def _quiet_nights(settings):
    settings.REMINDERS_SMS_QUIET_HOURS = ("21:00", "08:00")
    settings.REMINDERS_CHANGE_GRACE_MINUTES = 5
    settings.REMINDERS_MERGE_MINUTES = 10


def site(zone: ZoneInfo, code: str):
    """A clinic in `zone` with a practitioner working 07:00-22:00 every day (so visits near the night can be booked)
    and a patient who takes e-mail and texts."""
    clinic = ClinicFactory(code=code, name=f"Clinic {code}", timezone=str(zone))
    practitioner = PractitionerFactory(clinic=clinic, name=f"Dr {code}", hours=[])
    WorkingHours.objects.bulk_create(
        WorkingHours(practitioner=practitioner, weekday=d, start_time=time(7), end_time=time(22)) for d in range(7)
    )
    patient = PatientFactory(
        clinic=clinic,
        first_name="Nora",
        email=f"nora-{code}@example.com",
        phone="+447700900321",
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )
    return clinic, practitioner, patient


@pytest.fixture
def london(care_texts):
    return site(LONDON, "dec6t-ldn")


def move(appointment, start_at: datetime, now: datetime):
    return appointment_reschedule(appointment=appointment, start_at=start_at, actor=RECEPTION, now=now).appointment


def deliver_due(until: datetime) -> None:
    """Run the dispatcher at each moment a patient message falls due, up to `until` (as beat's every-minute run
    would: each text is judged at the minute it goes)."""
    moment = None
    for _ in range(300):
        row = (
            OutboxMessage.objects.filter(status=OutboxStatus.PENDING, due_at__lte=until)
            .exclude(channel="webhook")
            .order_by("due_at")
            .first()
        )
        if row is None:
            return
        moment = row.due_at if moment is None else max(moment, row.due_at)
        with time_machine.travel(moment, tick=False):
            dispatch_local(now=moment)
        moment += timedelta(seconds=1)
    raise AssertionError("the dispatcher kept finding the same rows due")


def texts_at_night(appointment, zone: ZoneInfo) -> list:
    return [
        (r.kind, r.sent_at.astimezone(zone))
        for r in rows(appointment, channel="sms", status=OutboxStatus.SENT)
        if is_quiet(r.sent_at, zone)
    ]


def care(appointment, kind=MessageKind.PRE_CARE, channel="sms", statuses=SENT_OR_WAITING):
    return [r for r in rows(appointment, kind=kind, channel=channel) if r.status in statuses]


# --- Moves ---------------------------------------------------------------------------------------------------------


# Harm: "your appointment is Wed 4 Mar, 10:00 ... avoid sun" twice, the second at 08:00 on the day, for a time the
# patient had been told once and never left as far as they know (no move notice goes: the move was undone in the
# grace). Cause: reminders/services.py _reconcile_start_messages takes the newest row per template and channel among
# sending/sent/failed/skipped as what the patient last got; the quiet-hours skip for 08:00 is newest, so 10:00 is
# not "handled" and a new row is planned. Fix: count only rows handed over or possibly so (sent_at set, sending,
# in doubt) when deciding what was last told.
@pytest.mark.parametrize("outcome", [OutboxStatus.SKIPPED, OutboxStatus.FAILED], ids=["skipped", "failed-unsent"])
def test_a_move_to_a_quiet_skipped_time_and_back_does_not_send_the_pre_care_text_twice(london, clock, outcome):
    """docs/reminders.md: 'unsent reminders move (the same rows, never duplicated); one already sent for the old
    time is sent again for the new time'; 'moves within [the grace] collapse ... a move back to the first time
    cancels it'. Microneedling Wed 4 March 10:00; its pre-care went by e-mail and text on Tuesday at 10:00. At
    21:15 on Tuesday the late-shift receptionist tries Wed 08:00 (the text for it cannot go: quiet hours last until
    then, so it is skipped) and at 21:17 moves it back to 10:00. The patient was told the 10:00 pre-care already:
    nothing more should go, on either channel (the text was sent again at 08:00 until mended: the skipped row, or
    one that failed before the provider had it, counted as what the patient last heard)."""
    _, _, patient = london
    booked_at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    visit = book(patient, wall(LONDON, 2026, 3, 4, 10), booked_at)
    send_all_until(wall(LONDON, 2026, 3, 3, 10), start=booked_at, step=timedelta(hours=1))
    assert [r.status for r in care(visit)] == [OutboxStatus.SENT]
    assert [r.status for r in care(visit, channel="email")] == [OutboxStatus.SENT]

    tried_at, back_at = wall(LONDON, 2026, 3, 3, 21, 15), wall(LONDON, 2026, 3, 3, 21, 17)
    clock.move_to(tried_at)
    visit = move(visit, wall(LONDON, 2026, 3, 4, 8), tried_at)
    [skipped] = [r for r in rows(visit, kind=MessageKind.PRE_CARE, channel="sms") if r.status == OutboxStatus.SKIPPED]
    assert "quiet hours" in skipped.last_error
    if outcome == OutboxStatus.FAILED:  # the same row failed before any provider had it (mended with the skip)
        OutboxMessage.objects.filter(pk=skipped.pk).update(status=OutboxStatus.FAILED, last_error="refused")
    clock.move_to(back_at)
    visit = move(visit, wall(LONDON, 2026, 3, 4, 10), back_at)
    send_all_until(wall(LONDON, 2026, 3, 4, 9, 55), start=back_at, step=timedelta(minutes=5))

    for channel in ("email", "sms"):
        went = care(visit, channel=channel, statuses=(OutboxStatus.SENT, OutboxStatus.PENDING))
        assert [(r.anchor_at, r.status) for r in went] == [(visit.start_at, OutboxStatus.SENT)], (channel, went)
    assert visit.status == AppointmentStatus.CONFIRMED


def test_st_johns_a_move_onto_the_spring_forward_sunday_puts_the_pre_care_text_on_friday_evening(care_texts):
    """Brief 4: pre-care '24 h before' (elapsed); docs/reminders.md: '`days` keep the local wall-clock time', 'Due
    times are computed in the clinic's zone', a text in quiet hours 'moves earlier to 20:59, never later', and
    unsent reminders move with the visit, the same rows. St John's (-03:30, a half-hour zone) puts its clocks
    forward at 02:00 on Sunday 8 March. A microneedling booked for Thursday 12 March is moved to Sunday 8 March
    08:30 (NDT): its pre-care falls 24 elapsed hours before, Saturday 07:30 NST, inside the night, so the text goes
    on Friday at 20:59 NST and the e-mail at 07:30; the day-before reminder keeps 08:30 on Saturday's clock. Each row
    is the one planned at booking, and each goes once, never at night."""
    _, _, patient = site(ST_JOHNS, "dec6t-yyt")
    booked_at = datetime(2026, 3, 2, 12, tzinfo=UTC)
    with time_machine.travel(booked_at, tick=False):
        visit = book(patient, wall(ST_JOHNS, 2026, 3, 12, 10), booked_at)
    planned = {(r.kind, r.channel): r.pk for r in rows(visit) if r.kind in (MessageKind.PRE_CARE, MessageKind.REMINDER)}
    assert len(planned) == 4

    moved_at = booked_at + timedelta(minutes=5)
    with time_machine.travel(moved_at, tick=False):
        visit = move(visit, wall(ST_JOHNS, 2026, 3, 8, 8, 30), moved_at)

    start = visit.start_at
    pre_care = start - timedelta(hours=24)
    assert pre_care == wall(ST_JOHNS, 2026, 3, 7, 7, 30)  # the clock changed in between: 07:30, not 08:30
    day_before = wall(ST_JOHNS, 2026, 3, 7, 8, 30)
    expected = {
        (MessageKind.PRE_CARE, "email"): pre_care,
        (MessageKind.PRE_CARE, "sms"): walk_back(pre_care, ST_JOHNS),
        (MessageKind.REMINDER, "email"): day_before,
        (MessageKind.REMINDER, "sms"): walk_back(day_before, ST_JOHNS),
    }
    assert expected[(MessageKind.PRE_CARE, "sms")] == wall(ST_JOHNS, 2026, 3, 6, 20, 59)
    got = {
        (r.kind, r.channel): (r.pk, r.due_at)
        for r in rows(visit, status=OutboxStatus.PENDING)
        if r.kind in (MessageKind.PRE_CARE, MessageKind.REMINDER)
    }
    assert got == {key: (planned[key], due) for key, due in expected.items()}

    deliver_due(start - timedelta(minutes=1))
    for key, due in expected.items():
        sent = [r for r in rows(visit, kind=key[0], channel=key[1]) if r.status == OutboxStatus.SENT]
        assert [r.sent_at for r in sent] == [due], key
    assert texts_at_night(visit, ST_JOHNS) == []


def test_adelaide_a_move_at_night_across_the_fall_back_texts_the_new_pre_care_at_0800_acst_once(care_texts):
    """docs/reminders.md: 'one already sent for the old time is sent again for the new time'; 'if that moment has
    passed it goes at 08:00, and only if that is still before the appointment'; the window follows the clock on the
    wall. Adelaide (+10:30, +09:30 from 03:00 on Sunday 5 April 2026, when the clocks go back to 02:00): a visit on
    Sunday 10:00 ACST had its pre-care and reminder on Saturday. At 21:30 ACDT on Saturday it is moved to 09:00
    ACST: the pre-care e-mail goes again after the 5-minute grace, the text at 08:00 ACST (the night being an hour
    longer), before the visit; the day-before reminder for 09:00 is past and is not sent; nothing goes twice for one
    time, no text in the night."""
    _, _, patient = site(ADELAIDE, "dec6t-adl")
    booked_at = wall(ADELAIDE, 2026, 3, 30, 10)
    with time_machine.travel(booked_at, tick=False):
        visit = book(patient, wall(ADELAIDE, 2026, 4, 5, 10), booked_at)
    deliver_due(wall(ADELAIDE, 2026, 4, 4, 12))
    first = visit.start_at
    assert [r.sent_at for r in care(visit)] == [first - timedelta(hours=24)]
    assert care(visit)[0].sent_at.astimezone(ADELAIDE).time() == time(11)  # 24 h before 10:00 ACST: 11:00 ACDT

    moved_at = wall(ADELAIDE, 2026, 4, 4, 21, 30)
    with time_machine.travel(moved_at, tick=False):
        visit = move(visit, wall(ADELAIDE, 2026, 4, 5, 9), moved_at)
    morning = walk_on(moved_at, ADELAIDE)
    assert morning == wall(ADELAIDE, 2026, 4, 5, 8) < visit.start_at
    deliver_due(visit.start_at - timedelta(minutes=1))

    sent = {
        channel: [(r.anchor_at, r.sent_at) for r in care(visit, channel=channel, statuses=(OutboxStatus.SENT,))]
        for channel in ("email", "sms")
    }
    assert sent["sms"] == [(first, first - timedelta(hours=24)), (visit.start_at, morning)]
    assert sent["email"] == [(first, first - timedelta(hours=24)), (visit.start_at, moved_at + timedelta(minutes=5))]
    for channel in ("email", "sms"):
        reminders = care(visit, kind=MessageKind.REMINDER, channel=channel, statuses=SENT_OR_WAITING)
        assert [(r.anchor_at, r.status) for r in reminders] == [(first, OutboxStatus.SENT)], channel
    assert texts_at_night(visit, ADELAIDE) == []


def test_kolkata_a_move_into_the_pre_care_window_by_day_moves_the_rows_and_sends_each_once(care_texts):
    """docs/reminders.md: 'unsent reminders move (the same rows, never duplicated)'; a booking already inside the
    pre-care window gets it at once, after the change grace when it is a move; a day-before reminder whose time has
    passed is left out. Kolkata (+05:30, no DST): booked for Friday 6 March 10:00, moved at 14:00 on Tuesday to
    Wednesday 09:00. The pre-care rows planned at booking are the ones that go, at 14:05 IST; the reminders (due
    Tuesday 09:00) never go."""
    _, _, patient = site(KOLKATA, "dec6t-ccu")
    booked_at = wall(KOLKATA, 2026, 3, 2, 11)
    with time_machine.travel(booked_at, tick=False):
        visit = book(patient, wall(KOLKATA, 2026, 3, 6, 10), booked_at)
    planned = {r.channel: r.pk for r in rows(visit, kind=MessageKind.PRE_CARE)}
    deliver_due(booked_at + timedelta(minutes=1))

    moved_at = wall(KOLKATA, 2026, 3, 3, 14)
    with time_machine.travel(moved_at, tick=False):
        visit = move(visit, wall(KOLKATA, 2026, 3, 4, 9), moved_at)
    deliver_due(visit.start_at - timedelta(minutes=1))

    for channel, pk in planned.items():
        [row] = rows(visit, kind=MessageKind.PRE_CARE, channel=channel)
        assert (row.pk, row.status, row.anchor_at) == (pk, OutboxStatus.SENT, visit.start_at)
        assert row.sent_at == moved_at + timedelta(minutes=5)
    assert care(visit, kind=MessageKind.REMINDER, channel="email", statuses=(OutboxStatus.SENT,)) == []
    assert care(visit, kind=MessageKind.REMINDER, channel="sms", statuses=(OutboxStatus.SENT,)) == []
    assert texts_at_night(visit, KOLKATA) == []


# --- Cancelled, then booked again ----------------------------------------------------------------------------------


def test_cancelled_and_booked_again_at_night_gets_one_pre_care_per_channel_and_no_text_in_the_night(london, clock):
    """docs/reminders.md: cancelled: 'unsent rows cancelled'; booked: 'pre-care at once if the booking is already
    inside its window', texts kept out of 21:00-08:00. Microneedling Wed 4 March 10:00, its pre-care sent on
    Tuesday at 10:00. At 21:20 the desk cancels it and at 21:22 books the same time again (a new appointment): the
    new booking gets one pre-care e-mail at once and one text at 08:00 on Wednesday; the cancelled one has nothing
    left to send; no text goes in the night."""
    _, _, patient = london
    booked_at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    old = book(patient, wall(LONDON, 2026, 3, 4, 10), booked_at)
    deliver_due(wall(LONDON, 2026, 3, 3, 10))
    cancelled_at, again_at = wall(LONDON, 2026, 3, 3, 21, 20), wall(LONDON, 2026, 3, 3, 21, 22)
    clock.move_to(cancelled_at)
    appointment_cancel(appointment=old, actor=RECEPTION, now=cancelled_at, reason="booked by mistake")
    clock.move_to(again_at)
    new = book(patient, wall(LONDON, 2026, 3, 4, 10), again_at)

    assert {(r.channel, r.due_at) for r in care(new, channel="email")} == {("email", again_at)}
    assert {(r.channel, r.due_at) for r in care(new)} == {("sms", wall(LONDON, 2026, 3, 4, 8))}
    assert care(new, kind=MessageKind.REMINDER, channel="email") == []
    assert care(new, kind=MessageKind.REMINDER) == []
    deliver_due(wall(LONDON, 2026, 3, 4, 9, 59))

    for channel in ("email", "sms"):
        assert [r.status for r in care(new, channel=channel)] == [OutboxStatus.SENT], channel
        assert [r.status for r in care(old, channel=channel)] == [OutboxStatus.SENT], channel  # Tuesday's, once
    assert not [r for r in rows(old) if r.status in (OutboxStatus.PENDING, OutboxStatus.HELD)]
    assert texts_at_night(new, LONDON) == texts_at_night(old, LONDON) == []


# --- Held for clearance, released ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("visit_at", "cleared_at", "text_at"),
    [
        ((2026, 3, 4, 9, 0), (2026, 3, 3, 15, 0), (2026, 3, 3, 15, 0)),
        ((2026, 3, 4, 9, 0), (2026, 3, 3, 21, 40), (2026, 3, 4, 8, 0)),
        ((2026, 3, 4, 8, 0), (2026, 3, 4, 7, 50), None),
    ],
    ids=["cleared-in-the-day", "cleared-at-night", "cleared-ten-minutes-before-an-0800-visit"],
)
def test_a_booking_cleared_after_its_pre_care_time_sends_it_once_at_an_allowed_hour(
    london, clock, visit_at, cleared_at, text_at
):
    """Brief 3: a relative contraindication holds the booking 'and no reminders go out before that'; docs/reminders
    .md: cleared: 'held rows released; a confirmation and late pre-care go now; a day-before reminder whose time
    passed is dropped', and a text never goes between 21:00 and 08:00 nor after the visit has started. A Wednesday
    microneedling held for an eczema history is cleared after its pre-care time (Tuesday in the day, Tuesday at
    21:40, Wednesday at 07:50 for an 08:00 visit): the e-mail goes at once, the text at once, at 08:00, or not at
    all; the day-before reminder never goes; nothing goes twice."""
    _, _, patient = london
    PatientConditionFactory(patient=patient, condition_id="eczema", status="history")
    booked_at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    visit = book(patient, wall(LONDON, *visit_at), booked_at)
    assert visit.status == AppointmentStatus.PENDING_CLEARANCE
    deliver_due(wall(LONDON, *cleared_at) - timedelta(minutes=1))
    assert [r for r in rows(visit) if r.status == OutboxStatus.SENT] == []

    cleared = wall(LONDON, *cleared_at)
    clock.move_to(cleared)
    appointment_clear(appointment=visit, actor=CLINICIAN, now=cleared, reason="eczema settled, seen by Dr Ada")
    deliver_due(visit.start_at - timedelta(minutes=1))

    assert [(r.status, r.sent_at) for r in care(visit, channel="email")] == [(OutboxStatus.SENT, cleared)]
    texts_sent = care(visit, statuses=(OutboxStatus.SENT, OutboxStatus.PENDING, OutboxStatus.HELD))
    expected = [] if text_at is None else [(OutboxStatus.SENT, wall(LONDON, *text_at))]
    assert [(r.status, r.sent_at) for r in texts_sent] == expected
    for channel in ("email", "sms"):
        assert care(visit, kind=MessageKind.REMINDER, channel=channel) == [], channel
    assert texts_at_night(visit, LONDON) == []


def test_a_booking_released_at_night_by_a_rule_change_texts_its_late_pre_care_at_0800(
    london, clock, settings, django_capture_on_commit_callbacks
):
    """Brief 6: when an organisation's rules change, every future booking is checked again; what now breaks a block
    rule becomes `needs_review` (held: docs/reminders.md 'booked as pending_clearance ... held', 'cleared ... late
    pre-care go now; a day-before reminder whose time passed is dropped'), and is released when it no longer does.
    Botox Monday 9 March, microneedling Tuesday 24 March 10:00; the organisation asks 3 weeks between them: the
    microneedling is held past its pre-care and reminder time (Monday 23 March 10:00). At 21:30 that Monday the
    administrator removes the rule: the microneedling is confirmed again, its pre-care e-mail goes at once and its
    text at 08:00 on Tuesday, once each; the day-before reminder never goes; no text in the night."""
    _, _, patient = london
    settings.CELERY_BROKER_URL = ""  # the re-check after a rule change runs in this process, after commit
    booked_at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    book(patient, wall(LONDON, 2026, 3, 9, 10), booked_at, code="botox")
    visit = book(patient, wall(LONDON, 2026, 3, 24, 10), booked_at)
    with django_capture_on_commit_callbacks(execute=True):
        rule = org_rule(patient, "botox", "microneedling", 3, "weeks")
    assert fresh(visit).status == AppointmentStatus.NEEDS_REVIEW
    assert {r.status for r in care(visit, statuses=(OutboxStatus.HELD, OutboxStatus.PENDING))} == {OutboxStatus.HELD}

    released_at = wall(LONDON, 2026, 3, 23, 21, 30)
    clock.move_to(released_at)
    with django_capture_on_commit_callbacks(execute=True):
        rule.delete()
    visit = fresh(visit)
    assert visit.status == AppointmentStatus.CONFIRMED
    deliver_due(visit.start_at - timedelta(minutes=1))

    assert [(r.status, r.sent_at) for r in care(visit, channel="email")] == [(OutboxStatus.SENT, released_at)]
    assert [(r.status, r.sent_at) for r in care(visit)] == [(OutboxStatus.SENT, wall(LONDON, 2026, 3, 24, 8))]
    for channel in ("email", "sms"):
        assert care(visit, kind=MessageKind.REMINDER, channel=channel) == [], channel
    assert texts_at_night(visit, LONDON) == []


# --- Booked inside the pre-care window ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("booked", "visit", "text_due"),
    [
        ((3, 20, 50), (4, 8, 10), (3, 20, 50)),
        ((3, 21, 5), (4, 8, 10), (4, 8, 0)),
        ((3, 21, 5), (4, 8, 0), None),
    ],
    ids=["booked-2050-for-0810", "booked-2105-for-0810", "booked-2105-for-0800"],
)
def test_st_johns_a_booking_inside_the_pre_care_window_texts_it_at_the_nearest_allowed_moment(
    care_texts, booked, visit, text_due
):
    """Brief 4, 'a booking made less than the pre-care lead time before the visit': docs/reminders.md 'pre-care at
    once if the booking is already inside its window'; a text 'goes at 08:00, and only if that is still before the
    appointment (else it is recorded as `skipped` with the reason)'. In St John's (-03:30): booked on Tuesday 3
    March at 20:50 for Wednesday 08:10, the text goes at once; at 21:05, at 08:00; for an 08:00 visit, it is skipped,
    visibly. The e-mail goes at once each time; no day-before reminder is planned."""
    _, _, patient = site(ST_JOHNS, "dec6t-yyt2")
    booked_at = wall(ST_JOHNS, 2026, 3, *booked)
    with time_machine.travel(booked_at, tick=False):
        made = book(patient, wall(ST_JOHNS, 2026, 3, *visit), booked_at)
    [email] = rows(made, kind=MessageKind.PRE_CARE, channel="email")
    [text] = rows(made, kind=MessageKind.PRE_CARE, channel="sms")
    assert (email.status, email.due_at) == (OutboxStatus.PENDING, booked_at)
    if text_due is None:
        assert text.status == OutboxStatus.SKIPPED and "quiet hours" in text.last_error
    else:
        assert (text.status, text.due_at) == (OutboxStatus.PENDING, wall(ST_JOHNS, 2026, 3, *text_due))
    assert rows(made, kind=MessageKind.REMINDER) == []
    deliver_due(made.start_at - timedelta(minutes=1))
    assert texts_at_night(made, ST_JOHNS) == []
    assert [r.status for r in care(made, channel="email", statuses=(OutboxStatus.SENT,))] == [OutboxStatus.SENT]


# --- Completion ---------------------------------------------------------------------------------------------------


def test_texts_switched_back_on_after_completion_get_the_aftercare_still_to_come(london, clock):
    """Brief 4: post-care '+48 h: makeup may be used again', '+7 days: the one-week restrictions end'; brief 5:
    patients receive care reminders 'per their consent, and can opt out'; docs/reminders.md: a change to how the
    patient is reached plans what 'no row stands for yet'. A patient who takes texts only replies STOP on the
    morning of her microneedling (Tuesday 3 March 10:00), the visit is marked done at 11:00 (no text planned, rightly)
    and she replies START at 09:00 on Wednesday: the +48 h (Thursday 11:00) and +7 days (Tuesday 10 March 11:00)
    texts are still ahead and go; the at-completion text, whose time is gone, does not (decided and mended on 6
    December: services._aftercare_still_to_come)."""
    _, _, patient = london
    patient.reminder_channels = ["sms"]
    patient.save(update_fields=["reminder_channels"])
    booked_at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    visit = book(patient, wall(LONDON, 2026, 3, 3, 10), booked_at)
    stop_at, done_at, start_again_at = (
        wall(LONDON, 2026, 3, 3, 9),
        wall(LONDON, 2026, 3, 3, 11),
        wall(LONDON, 2026, 3, 4, 9),
    )
    clock.move_to(stop_at)
    assert sms_reply_opt_out(from_number=patient.phone, body="STOP", now=stop_at) == 1
    clock.move_to(done_at)
    appointment_complete(appointment=visit, actor=CLINICIAN, now=done_at)
    assert rows(visit, kind=MessageKind.POST_CARE, channel="sms") == []
    clock.move_to(start_again_at)
    assert sms_reply_opt_in(from_number=patient.phone, body="START", now=start_again_at) == 1

    planned = {
        r.template.default_key: r.due_at
        for r in rows(visit, kind=MessageKind.POST_CARE, channel="sms")
        if r.status == OutboxStatus.PENDING
    }
    assert planned.get("microneedling-post-care-48h") == done_at + timedelta(hours=48)
    assert planned.get("microneedling-post-care-7d") == wall(LONDON, 2026, 3, 10, 11)
    # The at-completion text's moment passed while texts were off: not sent late, not even recorded as skipped.
    assert set(planned) == {"microneedling-post-care-48h", "microneedling-post-care-7d"}
    assert len(rows(visit, kind=MessageKind.POST_CARE, channel="sms")) == 2
    # A second START (or any later contact change) plans nothing more.
    assert sms_reply_opt_in(from_number=patient.phone, body="START", now=start_again_at) in (0, 1)
    assert len(rows(visit, kind=MessageKind.POST_CARE, channel="sms")) == 2
