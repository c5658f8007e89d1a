"""The last message a patient gets about an appointment is true, whatever the desk did in between.

A receptionist trying times (11:00 → 10:00 → 10:15 → back to 11:00) inside the pre-care window
used to leave the patient's last texts naming 10:00 and 10:15 (issue 16, bug 1).
"""
import re
from datetime import timedelta

import time_machine
from django.core import mail
from django.utils import timezone

from reminders.channels import LocmemSmsBackend
from reminders.dispatch import dispatch_local
from reminders.models import OutboxMessage, OutboxStatus
from reminders.services import last_told_start
from scheduler.booking import appointment_reschedule
from tests.reminders.conftest import RECEPTION, book, london

WEDNESDAY = (2026, 3, 4)


def deliver(moment):
    with time_machine.travel(moment, tick=False):
        return dispatch_local(now=timezone.now())


def move(appointment, hh, mm, at):
    with time_machine.travel(at, tick=False):
        return appointment_reschedule(appointment=appointment, start_at=london(*WEDNESDAY, hh, mm), actor=RECEPTION,
                                      now=timezone.now()).appointment


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
    reasons = set(OutboxMessage.objects.filter(appointment=appointment, status=OutboxStatus.CANCELLED)
                  .values_list("last_error", flat=True))
    assert "the patient was last told this very time" in reasons


def test_moves_the_patient_heard_about_end_with_a_message_naming_the_final_time(patient, practitioner, now):
    appointment = booked_and_briefed(patient, now)

    appointment = move(appointment, 10, 0, london(2026, 3, 3, 12, 0))
    deliver(london(2026, 3, 3, 12, 6))  # the grace period is over: the patient hears 10:00
    assert "10:00" in times_named(LocmemSmsBackend.outbox[-1]["body"])
    appointment = move(appointment, 10, 15, london(2026, 3, 3, 12, 10))
    deliver(london(2026, 3, 3, 12, 16))
    appointment = move(appointment, 11, 0, london(2026, 3, 3, 12, 20))
    deliver(london(2026, 3, 3, 12, 26))

    last_sms = LocmemSmsBackend.outbox[-1]["body"]
    last_mail = mail.outbox[-1].body
    assert "11:00" in times_named(last_sms) and "10:15" in times_named(last_sms)  # "moved to 11:00 (it was 10:15)"
    assert last_sms.index("11:00") < last_sms.index("10:15")
    assert "11:00" in last_mail
    assert last_told_start(appointment) == london(*WEDNESDAY, 11)
    # Each send names the time as it stood when it went: nothing still pending names another.
    assert not OutboxMessage.objects.filter(appointment=appointment, status__in=["pending", "held"],
                                            kind__in=["pre_care", "reminder", "rescheduled"]).exists()


def test_a_move_inside_the_pre_care_window_waits_out_the_grace_period(settings, patient, practitioner, now):
    appointment = booked_and_briefed(patient, now)

    moved = move(appointment, 10, 0, london(2026, 3, 3, 12, 0))

    pre_care = OutboxMessage.objects.get(appointment=moved, kind="pre_care", channel="sms", status="pending")
    grace = settings.REMINDERS_CHANGE_GRACE_MINUTES
    assert pre_care.due_at == london(2026, 3, 3, 12, grace)
    assert deliver(london(2026, 3, 3, 12, grace - 1)) == {}
