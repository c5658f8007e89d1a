"""The last message a patient gets about an appointment is true, whatever the desk did in between.

A receptionist trying times (11:00 → 10:00 → 10:15 → back to 11:00) inside the pre-care window
used to leave the patient's last texts naming 10:00 and 10:15 (issue 16, bug 1).
"""

import re
from datetime import timedelta

import time_machine
from django.core import mail
from django.utils import timezone

from reminders import content
from reminders.channels import LocmemSmsBackend
from reminders.dispatch import dispatch_local
from reminders.models import OutboxMessage, OutboxStatus
from reminders.services import last_told_start
from reminders.texts import sms_segments, sms_text_problem
from scheduler.booking import appointment_reschedule
from tests.factories import PatientFactory
from tests.reminders.conftest import RECEPTION, book, london

WEDNESDAY = (2026, 3, 4)


def deliver(moment):
    with time_machine.travel(moment, tick=False):
        return dispatch_local(now=timezone.now())


def move(appointment, hh, mm, at):
    with time_machine.travel(at, tick=False):
        return appointment_reschedule(
            appointment=appointment, start_at=london(*WEDNESDAY, hh, mm), actor=RECEPTION, now=timezone.now()
        ).appointment


def times_named(text: str) -> list[str]:
    return re.findall(r"\b\d{2}:\d{2}\b", text)


def booked_and_briefed(patient, now):
    """Booked for Wednesday 11:00; on Tuesday at 11:00 the reminder and pre-care went out."""
    appointment = book(patient, "microneedling", london(*WEDNESDAY, 11), now)
    deliver(now)
    deliver(london(2026, 3, 3, 11))
    assert last_told_start(appointment) == london(*WEDNESDAY, 11)
    mail.outbox.clear()
    LocmemSmsBackend.outbox = []
    return appointment


def test_trying_times_and_settling_back_sends_the_patient_nothing(patient, practitioner, now):
    appointment = booked_and_briefed(patient, now)

    # The dispatcher runs all the while (every few seconds in production).
    for minute, (hh, mm) in enumerate([(10, 0), (10, 15), (11, 0)]):
        appointment = move(appointment, hh, mm, london(2026, 3, 3, 12, minute))
        deliver(london(2026, 3, 3, 12, minute) + timedelta(seconds=30))
    deliver(london(2026, 3, 3, 12, 30))

    assert mail.outbox == [] and LocmemSmsBackend.outbox == []
    assert last_told_start(appointment) == london(*WEDNESDAY, 11)
    reasons = set(
        OutboxMessage.objects.filter(appointment=appointment, status=OutboxStatus.CANCELLED).values_list(
            "last_error", flat=True
        )
    )
    assert "the patient was last told this very time" in reasons


def test_moves_the_patient_heard_about_end_with_a_message_naming_the_final_time(patient, practitioner, now):
    appointment = booked_and_briefed(patient, now)

    appointment = move(appointment, 10, 0, london(2026, 3, 3, 12, 0))
    deliver(london(2026, 3, 3, 12, 6))  # the grace period is over: the patient hears 10:00
    assert "10:00" in times_named(LocmemSmsBackend.outbox[-1]["body"])
    appointment = move(appointment, 10, 15, london(2026, 3, 3, 12, 10))
    deliver(london(2026, 3, 3, 12, 16))
    appointment = move(appointment, 11, 0, london(2026, 3, 3, 12, 20))
    heard_before = len(LocmemSmsBackend.outbox)
    deliver(london(2026, 3, 3, 12, 26))  # the move notice goes; the pre-care waits a moment to follow it
    deliver(london(2026, 3, 3, 12, 27))

    after_last_move = [m["body"] for m in LocmemSmsBackend.outbox[heard_before:]]
    # "moved to 11:00 (it was 10:15)", then the pre-care for 11:00 (as one text when they fit)
    assert any(times_named(body)[:2] == ["11:00", "10:15"] for body in after_last_move)
    assert times_named(after_last_move[-1])[0] == "11:00"  # the very last text is true
    assert "11:00" in mail.outbox[-1].body
    assert last_told_start(appointment) == london(*WEDNESDAY, 11)
    # Each send names the time as it stood when it went: nothing still pending names another.
    assert not OutboxMessage.objects.filter(
        appointment=appointment, status__in=["pending", "held"], kind__in=["pre_care", "reminder", "rescheduled"]
    ).exists()


def test_a_move_inside_the_pre_care_window_waits_out_the_grace_period(settings, patient, practitioner, now):
    appointment = booked_and_briefed(patient, now)

    moved = move(appointment, 10, 0, london(2026, 3, 3, 12, 0))

    pre_care = OutboxMessage.objects.get(appointment=moved, kind="pre_care", channel="sms", status="pending")
    grace = settings.REMINDERS_CHANGE_GRACE_MINUTES
    assert pre_care.due_at == london(2026, 3, 3, 12, grace)
    assert deliver(london(2026, 3, 3, 12, grace - 1)) == {}


def test_an_sms_only_patient_gets_the_care_instructions_by_sms(clinic, practitioner, now):
    sms_only = PatientFactory(
        clinic=clinic, email="", reminder_channels=["sms"], sms_consent=True, phone="+447911123457"
    )
    book(sms_only, "microneedling", london(*WEDNESDAY, 11), now)

    deliver(london(2026, 3, 3, 11))

    [sent] = [m["body"] for m in LocmemSmsBackend.outbox if "prepare" in m["body"]]
    assert "vitamin A creams" in sent and "no sun" in sent and "immune system" in sent
    assert "e-mail" not in sent
    assert sms_text_problem(sent) == ""  # still nothing a lock screen should show
    # The instructions on their own fit two segments (here they went joined with the reminder).
    row = OutboxMessage.objects.get(appointment__patient=sms_only, kind="pre_care", channel="sms")
    with time_machine.travel(london(2026, 3, 3, 11), tick=False):
        alone = content.render_message(message=row, now=timezone.now()).sms
    assert alone in sent and sms_segments(alone)[0] <= 2


def test_a_patient_with_e_mail_gets_the_short_sms_pointing_at_it(patient, practitioner, now):
    book(patient, "microneedling", london(*WEDNESDAY, 11), now)

    deliver(london(2026, 3, 3, 11))

    assert any("Our e-mail says which skin products to stop now" in m["body"] for m in LocmemSmsBackend.outbox)
    assert not any("vitamin A" in m["body"] for m in LocmemSmsBackend.outbox)
