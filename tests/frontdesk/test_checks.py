"""The check panel wraps scheduler.booking's verdict; booking and moving are one request type.

`now` is Monday 2 March 2026 09:00 London (GMT); practitioners work Mon-Sat 09:00-18:00.
"""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from frontdesk import checks, selectors
from scheduler.booking import appointment_check, appointment_reschedule_check
from scheduler.rules import Outcome
from tests.frontdesk.conftest import at_london, book

pytestmark = pytest.mark.django_db


def test_an_exact_time_shows_the_booking_check_itself(patient, practitioner, botox_five_days_ago, frozen):
    start = at_london(2026, 3, 5, 10)
    want = checks.SlotRequest.booking(patient=patient, procedure_code="microneedling")

    panel = checks.panel(want, now=frozen, start=start)

    assert panel.check == appointment_check(patient=patient, procedure_code="microneedling", start_at=start, now=frozen)
    assert panel.exact and panel.outcome == Outcome.REFUSED and panel.earliest == at_london(2026, 3, 11, 0)


def test_without_a_time_the_calendar_is_left_out_of_the_verdict(patient, practitioner, frozen):
    want = checks.SlotRequest.booking(patient=patient, procedure_code="botox")
    day_start = at_london(2026, 3, 8, 0)  # a Sunday: nobody works at midnight, or at all

    panel = checks.panel(want, now=frozen, day_start=day_start)

    full = appointment_check(patient=patient, procedure_code="botox", start_at=day_start, now=frozen)
    assert full.outcome == Outcome.REFUSED  # the calendar's answer at 00:00
    assert panel.check == replace(full, availability=())
    assert panel.outcome == Outcome.CONFIRMED and panel.from_day and not panel.exact
    assert panel.slots[0].start_at == at_london(2026, 3, 9, 9)  # Monday 09:00


def test_a_move_is_checked_as_a_reschedule_leaving_the_appointment_out(patient, practitioner, frozen):
    appointment = book(patient, practitioner, "botox", at_london(2026, 3, 5, 10))
    start = at_london(2026, 3, 5, 10, 15)  # overlaps its own current time
    want = checks.SlotRequest.move(appointment=appointment)

    panel = checks.panel(want, now=frozen, start=start)

    assert want.practitioner_id == str(practitioner.pk)  # no practitioner named keeps the current one
    assert panel.check == appointment_reschedule_check(appointment=appointment, start_at=start, now=frozen)
    assert panel.allowed
    assert appointment.start_at not in [slot.start_at for slot in panel.slots]  # not offered its own time


def test_the_outlook_wraps_the_same_verdict_type(patient, practitioner, botox_five_days_ago, eczema_history, frozen):
    rows = {row.procedure.code: row.check for row in selectors.patient_record(patient=patient, now=frozen).outlook}

    assert rows["botox"].outcome == Outcome.CONFIRMED
    assert rows["microneedling"].outcome == Outcome.REFUSED
    assert rows["microneedling"].earliest_eligible_start == at_london(2026, 3, 11, 0)
    assert rows["microneedling"].evaluation.needs_clearance  # eczema, listed with the refusal
    assert rows["microneedling"].availability == () and rows["microneedling"].practitioner is None


def test_booking_and_moving_submit_through_the_same_request_type(patient, practitioner, frozen):
    from scheduler.booking import Actor

    actor = Actor(label="test")
    booked = (
        checks.SlotRequest.booking(patient=patient, procedure_code="botox")
        .submit(start_at=datetime(2026, 3, 3, 10, tzinfo=UTC), actor=actor, now=frozen)
        .appointment
    )
    moved = (
        checks.SlotRequest.move(appointment=booked)
        .submit(
            start_at=datetime(2026, 3, 3, 10, tzinfo=UTC) + timedelta(days=1), actor=actor, now=frozen, reason="asked"
        )
        .appointment
    )

    assert moved.pk == booked.pk and moved.start_at == datetime(2026, 3, 4, 10, tzinfo=UTC)
