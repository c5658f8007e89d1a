"""Every care reminder reaches the patient once, at a lawful moment: the edges a QA pass probed.

Domain brief, section 4 (and docs/reminders.md, "Time"): "no SMS between 21:00 and 08:00 local: a
message that falls there moves to the nearest allowed moment that still comes before the moment it warns
about (a pre-care note moves earlier, never later)". Zones with half-hour offsets and half-hour DST, the
days clocks change, late bookings, reschedules at 20:57, a backlog past the start, the change grace with
the merge window, and a merged text across two clinics' zones. Five of these failed before the fixes of
2 December (the grace into quiet hours, twice; a backlog sent after the start; a notice in its grace
carried early by a merge; a merge ignoring the other clinic's quiet hours).
"""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinic.models import Appointment, WorkingHours
from reminders.channels import LocmemSmsBackend
from reminders.dispatch import SendOutcome, dispatch_local, outbox_claim_due, outbox_send
from reminders.models import OutboxMessage, OutboxStatus, ReminderTemplate
from reminders.timing import Direction, QuietHours, apply_offset, last_allowed_before, plan_due
from scheduler.booking import appointment_cancel, appointment_reschedule
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory
from tests.reminders.conftest import LONDON, RECEPTION, book, london

QUIET = QuietHours()  # 21:00-08:00, the default
ZONES = [
    "Europe/London",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",  # DST of 30 minutes
    "Asia/Kolkata",  # +05:30, no DST
    "Pacific/Chatham",  # +12:45 / +13:45
    "America/Santiago",  # clocks change at midnight
    "America/St_Johns",  # -03:30 with DST
]


def quiet_local(instant: datetime, tz) -> bool:
    return QUIET.contains(instant.astimezone(tz).time())


# --- Fixtures (the rest come from tests/reminders/conftest.py) ------------------------------------------------


@pytest.fixture(autouse=True)
def _timing_settings(settings):
    settings.REMINDERS_SMS_QUIET_HOURS = ("21:00", "08:00")
    settings.REMINDERS_CHANGE_GRACE_MINUTES = 5
    settings.REMINDERS_MERGE_MINUTES = 10


def early_practitioner(clinic, name="Dr Early"):
    """Works every day 07:00-22:00, so appointments near quiet hours can be booked."""
    practitioner = PractitionerFactory(clinic=clinic, name=name, hours=[])
    WorkingHours.objects.bulk_create(
        WorkingHours(practitioner=practitioner, weekday=d, start_time=time(7), end_time=time(22)) for d in range(7)
    )
    return practitioner


@pytest.fixture
def practitioner(clinic):
    return early_practitioner(clinic)


def sms_patient(clinic, n=0):
    return PatientFactory(
        clinic=clinic,
        first_name=f"Ada{n}",
        email=f"ada{n}@example.com",
        phone=f"+4477009001{n:02d}",
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )


@pytest.fixture
def patient(clinic):
    return sms_patient(clinic)


def deliver(moment: datetime) -> dict:
    with time_machine.travel(moment, tick=False):
        return dispatch_local(now=timezone.now())


def rows(appointment, **filters):
    return list(OutboxMessage.objects.filter(appointment=appointment, **filters).exclude(channel="webhook"))


def sms_due_in_quiet_hours(appointment) -> list:
    tz = appointment.clinic.tz
    return [
        (r.kind, r.due_at.astimezone(tz))
        for r in rows(appointment, channel="sms", status__in=[OutboxStatus.PENDING, OutboxStatus.HELD])
        if quiet_local(r.due_at, tz)
    ]


# --- Pure timing: every zone shape, any appointment time -------------------------------------------------------

whole_minutes = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31)).map(
    lambda d: d.replace(second=0, microsecond=0, tzinfo=UTC)
)


@settings(max_examples=150, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    start=whole_minutes,
    lead=st.integers(min_value=0, max_value=60 * 24 * 3),  # booked up to three days ahead
    template=st.sampled_from([(-24, "hours"), (-1, "days"), (-7, "days"), (-90, "minutes")]),
    send_if_late=st.booleans(),
)
def test_a_start_anchored_sms_is_never_planned_in_quiet_hours_nor_after_the_start(
    zone, start, lead, template, send_if_late
):
    tz = ZoneInfo(zone)
    now = start - timedelta(minutes=lead)
    planned = plan_due(
        anchor_at=start,
        offset_value=template[0],
        offset_unit=template[1],
        tz=tz,
        now=now,
        direction=Direction.EARLIER,
        is_sms=True,
        quiet=QUIET,
        send_if_late=send_if_late,
        deadline=start,
    )
    if planned.due_at is None:
        return
    raw = apply_offset(start, template[0], template[1], tz)
    assert not quiet_local(planned.due_at, tz)
    assert now <= planned.due_at < start
    if raw >= now and last_allowed_before(raw, tz, QUIET) >= now:
        assert planned.due_at <= raw  # moves earlier, never later (08:00 only when 20:59 has passed already)
    # A day offset keeps the local wall time (unless moved by quiet hours or DST gap).
    if template[1] == "days" and planned.due_at == raw:
        assert raw.astimezone(tz).time().replace(second=0) in (
            start.astimezone(tz).time().replace(second=0),
            (start.astimezone(tz) + timedelta(hours=1)).time(),
            (start.astimezone(tz) - timedelta(hours=1)).time(),
            (start.astimezone(tz) + timedelta(minutes=30)).time(),
            (start.astimezone(tz) - timedelta(minutes=30)).time(),
        )


@settings(max_examples=100, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    completed=whole_minutes,
    template=st.sampled_from([(0, "hours"), (48, "hours"), (7, "days")]),
)
def test_a_post_care_sms_moves_later_never_earlier_and_never_into_quiet_hours(zone, completed, template):
    tz = ZoneInfo(zone)
    planned = plan_due(
        anchor_at=completed,
        offset_value=template[0],
        offset_unit=template[1],
        tz=tz,
        now=completed,
        direction=Direction.LATER,
        is_sms=True,
        quiet=QUIET,
        send_if_late=True,
    )
    raw = apply_offset(completed, template[0], template[1], tz)
    assert planned.due_at >= raw
    assert not quiet_local(planned.due_at, tz)
    assert planned.due_at - raw <= timedelta(hours=12)  # at most one night


def test_seven_days_after_a_lord_howe_completion_keeps_the_wall_clock_across_its_half_hour_change():
    tz = ZoneInfo("Australia/Lord_Howe")  # +11 (DST) until 5 April 2026 02:00, then +10:30
    completed = datetime(2026, 4, 1, 15, 0, tzinfo=tz)
    due = apply_offset(completed, 7, "days", tz)
    assert due.astimezone(tz).replace(tzinfo=None) == datetime(2026, 4, 8, 15, 0)
    assert completed.utcoffset() - due.astimezone(tz).utcoffset() == timedelta(minutes=30)


# --- Booking through the services: DST zones, quiet-hour edges ------------------------------------------------


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    zone=st.sampled_from(["Europe/London", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe"]),
    day=st.sampled_from(
        # The day of the clock change and the day after, in each zone, plus an ordinary day.
        [
            datetime(2026, 3, 29),
            datetime(2026, 3, 30),
            datetime(2026, 3, 8),
            datetime(2026, 3, 9),
            datetime(2026, 4, 5),
            datetime(2026, 4, 6),
            datetime(2026, 10, 4),
            datetime(2026, 10, 5),
            datetime(2026, 5, 13),
        ]
    ),
    hour=st.integers(7, 20),
    minute=st.sampled_from([0, 15, 30, 45]),
    booked_before=st.sampled_from([timedelta(hours=1), timedelta(hours=13), timedelta(hours=30), timedelta(days=5)]),
)
def test_a_booking_in_any_zone_plans_no_text_inside_quiet_hours_and_none_after_the_start(
    care_texts, zone, day, hour, minute, booked_before
):
    clinic = ClinicFactory(code=f"c-{zone.replace('/', '-').lower()}", timezone=zone)
    tz = clinic.tz
    start = day.replace(hour=hour, minute=minute, tzinfo=tz).astimezone(UTC)
    now = start - booked_before
    practitioner = early_practitioner(clinic, name=f"Dr {zone} {start:%j%H%M}")
    patient = PatientFactory(clinic=clinic, reminder_channels=["email", "sms"], sms_consent=True, phone="+447700900111")
    with time_machine.travel(now, tick=False):
        appointment = book(patient, "microneedling", start, now, practitioner_id=practitioner.pk)
    assert sms_due_in_quiet_hours(appointment) == []
    for row in rows(appointment, status=OutboxStatus.PENDING):
        if row.kind in ("pre_care", "reminder"):
            assert now <= row.due_at < start
    # A reminder or pre-care due yesterday at this wall time keeps its local clock ("days" offset).
    [reminder] = rows(appointment, kind="reminder", channel="email") or [None]
    if reminder is not None:
        assert reminder.due_at.astimezone(tz).time() == start.astimezone(tz).time()
        assert reminder.due_at.astimezone(tz).date() == start.astimezone(tz).date() - timedelta(days=1)


# --- Late bookings ---------------------------------------------------------------------------------------------


def test_a_booking_one_hour_ahead_sends_pre_care_at_once_and_no_day_before_reminder(patient, practitioner):
    booked_at = london(2026, 3, 4, 15)
    with time_machine.travel(booked_at, tick=False):
        appointment = book(patient, "microneedling", london(2026, 3, 4, 16), timezone.now())
    kinds = {(r.kind, r.channel): (r.status, r.due_at) for r in rows(appointment)}
    assert ("reminder", "sms") not in kinds and ("reminder", "email") not in kinds
    assert kinds[("pre_care", "sms")] == ("pending", booked_at)
    deliver(booked_at)
    assert len(LocmemSmsBackend.outbox) == 1  # confirmation and pre-care as one text
    deliver(london(2026, 3, 4, 15, 30))
    assert len(LocmemSmsBackend.outbox) == 1


def test_a_booking_at_7am_for_7_30_skips_the_pre_care_text_visibly_and_sends_the_email(patient, practitioner):
    booked_at = london(2026, 3, 4, 7, 0)
    with time_machine.travel(booked_at, tick=False):
        appointment = book(patient, "microneedling", london(2026, 3, 4, 7, 30), timezone.now())
    [sms] = rows(appointment, kind="pre_care", channel="sms")
    assert sms.status == OutboxStatus.SKIPPED and "quiet hours" in sms.last_error
    [email] = rows(appointment, kind="pre_care", channel="email")
    assert (email.status, email.due_at) == ("pending", booked_at)


# --- Reschedules -----------------------------------------------------------------------------------------------


def test_a_reschedule_just_before_quiet_hours_does_not_plan_a_text_inside_them(patient, practitioner, now):
    appointment = book(patient, "microneedling", london(2026, 3, 5, 10), now)
    moved_at = london(2026, 3, 2, 20, 57)
    with time_machine.travel(moved_at, tick=False):
        appointment_reschedule(appointment=appointment, start_at=london(2026, 3, 3, 9), actor=RECEPTION, now=moved_at)
    # Expected: the pre-care text goes at 20:57-20:59 (earlier, never later) or not inside 21:00-08:00.
    assert sms_due_in_quiet_hours(appointment) == []


def test_a_reschedule_at_20_57_to_8am_still_texts_the_pre_care_before_the_appointment(patient, practitioner, now):
    appointment = book(patient, "microneedling", london(2026, 3, 5, 10), now)
    deliver(now)  # the confirmation
    LocmemSmsBackend.outbox = []
    moved_at = london(2026, 3, 2, 20, 57)
    with time_machine.travel(moved_at, tick=False):
        appointment_reschedule(appointment=appointment, start_at=london(2026, 3, 3, 8), actor=RECEPTION, now=moved_at)
    # The dispatcher runs every minute from the move until the appointment.
    for minute in range(0, 11 * 60 + 4, 1):
        moment = moved_at + timedelta(minutes=minute)
        if moment >= london(2026, 3, 3, 8):
            break
        if minute < 10 or moment.astimezone(LONDON).time() >= time(7, 58):
            deliver(moment)
    deliver(london(2026, 3, 3, 8))
    [pre_care] = rows(appointment, kind="pre_care", channel="sms", status__in=["sent", "skipped", "pending"])
    assert pre_care.status == OutboxStatus.SENT, pre_care.last_error
    assert not quiet_local(pre_care.sent_at, LONDON)
    assert pre_care.sent_at < appointment.start_at


def test_a_reschedule_across_the_spring_change_keeps_the_day_before_reminder_at_the_same_wall_time(
    patient, practitioner, now
):
    appointment = book(patient, "microneedling", london(2026, 3, 27, 10), now)
    appointment_reschedule(appointment=appointment, start_at=london(2026, 3, 30, 10), actor=RECEPTION, now=now)
    due = {(r.kind, r.channel): r.due_at for r in rows(appointment, status="pending")}
    assert due[("reminder", "sms")] == london(2026, 3, 29, 10)  # 10:00 BST, the day the clocks go forward
    assert due[("pre_care", "sms")] == london(2026, 3, 29, 10)  # 24 real hours before 10:00 BST Monday
    assert len(rows(appointment, kind="pre_care", channel="sms")) == 1  # moved, not duplicated


# --- Send time: backlog, cancellation after claim --------------------------------------------------------------


def test_a_backlog_after_the_appointment_started_sends_no_reminder_or_pre_care(patient, practitioner, now):
    appointment = book(patient, "microneedling", london(2026, 3, 4, 10), now)
    deliver(now)  # confirmation
    sent_before = (len(mail.outbox), len(LocmemSmsBackend.outbox))
    # The dispatcher was down from Tuesday 09:00 to Wednesday 10:30 (the appointment began at 10:00).
    deliver(london(2026, 3, 4, 10, 30))
    late = [
        (r.kind, r.channel)
        for r in rows(appointment, kind__in=["reminder", "pre_care"], status="sent")
        if r.sent_at >= appointment.start_at
    ]
    assert late == []
    assert (len(mail.outbox), len(LocmemSmsBackend.outbox)) == sent_before


def test_a_cancellation_after_the_reminder_was_claimed_sends_nothing_for_it(patient, practitioner, now):
    appointment = book(patient, "microneedling", london(2026, 3, 4, 10), now)
    deliver(now)
    LocmemSmsBackend.outbox, mail.outbox = [], []
    due = london(2026, 3, 3, 10)
    claims = outbox_claim_due(now=due)
    assert claims
    appointment_cancel(appointment=appointment, actor=RECEPTION, now=due + timedelta(seconds=5))
    for claim in claims:
        outcome = outbox_send(message_id=claim.message_id, claim_token=claim.token, now=due + timedelta(seconds=10))
        assert outcome == SendOutcome.CANCELLED
    assert all("cancelled" in m.subject.lower() for m in mail.outbox)
    assert all("cancelled" in m["body"] for m in LocmemSmsBackend.outbox)
    for r in rows(appointment, kind__in=["reminder", "pre_care"]):
        assert r.status == OutboxStatus.CANCELLED


# --- Merging ---------------------------------------------------------------------------------------------------


def test_a_move_undone_within_the_grace_period_is_never_announced_even_if_another_message_goes(
    patient, practitioner, now
):
    book(patient, "botox", london(2026, 3, 3, 10), now)  # its reminder and pre-care are due Monday 10:00
    second = book(patient, "filler", london(2026, 3, 5, 10), now)
    deliver(now)
    LocmemSmsBackend.outbox, mail.outbox = [], []
    # Monday 2 March: the first visit's day-before messages are due at 10:00 (Tuesday 10:00 visit).
    moved_at = london(2026, 3, 2, 9, 58)
    with time_machine.travel(moved_at, tick=False):
        appointment_reschedule(appointment=second, start_at=london(2026, 3, 5, 11), actor=RECEPTION, now=moved_at)
    deliver(london(2026, 3, 2, 10, 0))  # the first visit's messages go
    undone_at = london(2026, 3, 2, 10, 1)
    with time_machine.travel(undone_at, tick=False):
        appointment_reschedule(appointment=second, start_at=london(2026, 3, 5, 10), actor=RECEPTION, now=undone_at)
    for minute in range(2, 20):
        deliver(london(2026, 3, 2, 10, minute))
    everything = [m.body for m in mail.outbox] + [m["body"] for m in LocmemSmsBackend.outbox]
    # Expected (docs/reminders.md): "moves within it collapse into one notice, a move back to the first time
    # cancels it". Actual: "moved to Thu 11:00" rides along with Monday's reminder, then "moved to Thu 10:00".
    assert not [b for b in everything if "moved" in b], everything


def test_messages_of_two_patients_sharing_a_phone_are_not_merged(clinic, practitioner, now):
    mother, son = sms_patient(clinic, 1), sms_patient(clinic, 1)
    son.first_name = "Sam"
    son.save()
    other = early_practitioner(clinic, "Dr Two")
    book(mother, "microneedling", london(2026, 3, 4, 10), now, practitioner_id=practitioner.pk)
    book(son, "microneedling", london(2026, 3, 4, 10), now, practitioner_id=other.pk)
    deliver(now)
    texts = [m["body"] for m in LocmemSmsBackend.outbox]
    assert len(texts) == 2  # one confirmation each, never one text naming both


def test_a_merged_text_never_carries_a_message_into_its_own_clinics_quiet_hours(clinic, patient, practitioner, now):
    new_york = ClinicFactory(
        code="nyc", name="Bloom NYC", timezone="America/New_York", organisation=clinic.organisation
    )
    ny_doctor = early_practitioner(new_york, "Dr Hudson")
    # Keep the carrying text short enough for a merge: this clinic sends no botox pre-care.
    ReminderTemplate.objects.filter(kind="pre_care", procedure_id="botox").update(is_active=False)
    # London visit Tuesday 12:55 GMT: its reminder and pre-care are due Monday 12:55 GMT (07:55 in New York).
    book(patient, "botox", london(2026, 3, 3, 12, 55), now, practitioner_id=practitioner.pk)
    deliver(now)
    LocmemSmsBackend.outbox = []
    # Monday 07:30 EST (12:30 GMT): a visit at the New York clinic; its confirmation text waits for 08:00 EST.
    booked_at = datetime(2026, 3, 2, 7, 30, tzinfo=ZoneInfo("America/New_York"))
    with time_machine.travel(booked_at, tick=False):
        ny_visit = book(
            patient,
            "filler",
            datetime(2026, 3, 20, 10, tzinfo=ZoneInfo("America/New_York")),
            timezone.now(),
            practitioner_id=ny_doctor.pk,
        )
    [confirmation] = rows(ny_visit, kind="confirmation", channel="sms")
    assert confirmation.due_at.astimezone(new_york.tz).time() == time(8, 0)
    deliver(london(2026, 3, 2, 12, 55))
    confirmation.refresh_from_db()
    if confirmation.status == OutboxStatus.SENT:
        assert not quiet_local(confirmation.sent_at, new_york.tz), confirmation.sent_at.astimezone(new_york.tz)


@pytest.mark.parametrize("changed_minutes_ago, merged", [(2, False), (30, True)])
def test_another_visit_changed_within_the_grace_keeps_its_coming_texts_out_of_a_merge(
    patient, practitioner, now, changed_minutes_ago, merged
):
    """A visit changed within the grace period (a move: with or without a notice, none goes before the
    confirmation has) may be changed back: a text of another visit going now does not carry its coming texts
    along. Changed longer ago, they merge as usual (two texts in the same minutes read as one)."""
    first = book(patient, "botox", london(2026, 3, 10, 10), now)
    second = book(patient, "filler", london(2026, 3, 12, 10), now)
    deliver(now)  # the confirmations
    at = london(2026, 3, 4, 12, 0)
    pending = OutboxMessage.objects.filter(channel="sms", status=OutboxStatus.PENDING).order_by("due_at")
    mine, theirs = pending.filter(appointment=first).first(), pending.filter(appointment=second).first()
    OutboxMessage.objects.filter(pk=mine.pk).update(due_at=at)
    OutboxMessage.objects.filter(pk=theirs.pk).update(due_at=at + timedelta(minutes=3))
    Appointment.objects.filter(pk=second.pk).update(updated_at=at - timedelta(minutes=changed_minutes_ago))

    deliver(at)

    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.status == OutboxStatus.SENT
    assert (theirs.status == OutboxStatus.SENT) is merged, (theirs.status, theirs.last_error)
