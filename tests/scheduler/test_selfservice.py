"""Patients cancelling and moving their own appointment (scheduler/selfservice.py): the window, the rules, the audit."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from clinic.models import Appointment, AppointmentStatus, AuditAction, AuditEvent, HistorySource, ProcedureRecord
from core.errors import ErrorCode, InvalidTransition
from scheduler.availability import AvailabilityCode
from scheduler.booking import (
    Actor,
    UnableToBook,
    appointment_book,
    appointment_cancel,
    appointment_complete,
    appointment_reschedule_check,
)
from scheduler.selfservice import (
    appointment_cancel_by_patient,
    appointment_reschedule_by_patient,
    appointment_self_service,
    patient_actor,
    patient_move_check,
    patient_move_options,
)
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory

LONDON = ZoneInfo("Europe/London")
RECEPTION = Actor("reception@test")
CLINICIAN = Actor("clinician@test", clinical=True)


def local(y, m, d, hh=10, mm=0):
    return datetime(y, m, d, hh, mm, tzinfo=LONDON)


@pytest.fixture
def clinic(catalogue):
    return ClinicFactory(code="london", name="Bloom Clinic", timezone="Europe/London", phone="+442079460958")


@pytest.fixture
def practitioner(clinic):
    return PractitionerFactory(clinic=clinic, name="Dr A")


@pytest.fixture
def patient(clinic):
    return PatientFactory(clinic=clinic)


@pytest.fixture
def appointment(patient, practitioner, now):
    """Microneedling on Tuesday 10 March 2026, 10:00 London (GMT): well outside the 24-hour window."""
    return appointment_book(
        patient=patient, procedure_code="microneedling", start_at=local(2026, 3, 10), actor=RECEPTION, now=now
    ).appointment


def audit(appointment) -> list[tuple[str, str]]:
    return list(AuditEvent.objects.filter(appointment=appointment).values_list("action", "actor_label"))


# --- Who acts ------------------------------------------------------------------------------------


def test_the_patient_acts_under_their_own_name(appointment, patient):
    actor = patient_actor(appointment)

    assert actor.label == f"patient {patient.pk}"
    assert (actor.user, actor.clinical) == (None, False)


# --- Cancelling ----------------------------------------------------------------------------------


def test_a_patient_cancels_and_the_audit_trail_names_them(appointment, patient, now):
    cancelled = appointment_cancel_by_patient(appointment=appointment, now=now, reason="  Feeling unwell  ")

    assert cancelled.status == AppointmentStatus.CANCELLED
    assert (cancelled.cancelled_at, cancelled.cancel_reason) == (now, "Feeling unwell")
    assert audit(appointment)[-1] == (AuditAction.CANCELLED, f"patient {patient.pk}")


def test_cancelling_exactly_at_the_window_edge_is_allowed(appointment):
    edge = appointment.start_at - timedelta(hours=24)

    assert appointment_self_service(appointment=appointment, now=edge).can_change
    cancelled = appointment_cancel_by_patient(appointment=appointment, now=edge)

    assert cancelled.status == AppointmentStatus.CANCELLED


def test_a_minute_inside_the_window_is_refused_with_the_clinics_number(appointment):
    inside = appointment.start_at - timedelta(hours=24) + timedelta(minutes=1)

    with pytest.raises(InvalidTransition) as refused:
        appointment_cancel_by_patient(appointment=appointment, now=inside)

    assert refused.value.code == ErrorCode.OUTSIDE_CANCELLATION_WINDOW
    assert refused.value.http_status == 409
    assert refused.value.message == (
        "Your appointment starts in less than 24 hours, so it can no longer be cancelled or moved online. "
        "Please call Bloom Clinic on 020 7946 0958."
    )
    assert Appointment.objects.get(pk=appointment.pk).status == AppointmentStatus.CONFIRMED
    assert [action for action, _ in audit(appointment)] == [AuditAction.BOOKED]


def test_the_window_is_the_clinics_own(appointment, clinic):
    clinic.cancellation_window_hours = 48
    clinic.save()
    appointment.refresh_from_db()
    three_days_before = appointment.start_at - timedelta(days=3)
    forty_seven_hours_before = appointment.start_at - timedelta(hours=47)

    verdict = appointment_self_service(appointment=appointment, now=forty_seven_hours_before)

    assert appointment_self_service(appointment=appointment, now=three_days_before).can_change
    assert not verdict.can_change
    assert verdict.refusal.code == ErrorCode.OUTSIDE_CANCELLATION_WINDOW
    assert "less than 48 hours" in verdict.refusal.message
    assert verdict.change_until == appointment.start_at - timedelta(hours=48)


def test_a_clinic_without_a_phone_number_is_named_without_one(appointment, clinic):
    clinic.phone = ""
    clinic.save()
    appointment.refresh_from_db()

    with pytest.raises(InvalidTransition) as refused:
        appointment_cancel_by_patient(appointment=appointment, now=appointment.start_at - timedelta(hours=1))

    assert refused.value.message.endswith("Please contact Bloom Clinic.")


def test_an_appointment_that_has_started_cannot_be_cancelled_online_even_with_no_window(appointment, clinic):
    clinic.cancellation_window_hours = 0
    clinic.save()
    appointment.refresh_from_db()

    with pytest.raises(InvalidTransition) as refused:
        appointment_cancel_by_patient(appointment=appointment, now=appointment.start_at + timedelta(minutes=1))

    assert refused.value.code == ErrorCode.OUTSIDE_CANCELLATION_WINDOW
    assert refused.value.message == (
        "The time of this appointment has come, so it can no longer be changed online. "
        "Please call Bloom Clinic on 020 7946 0958."
    )
    assert Appointment.objects.get(pk=appointment.pk).status == AppointmentStatus.CONFIRMED


@pytest.mark.parametrize(
    ("finish", "message"),
    [
        ("cancel", "This appointment is already cancelled."),
        ("complete", "This appointment has already taken place."),
    ],
)
def test_a_cancelled_or_completed_appointment_is_refused_clearly(appointment, now, finish, message):
    if finish == "cancel":
        appointment_cancel(appointment=appointment, actor=RECEPTION, now=now)
    else:
        appointment_complete(appointment=appointment, actor=CLINICIAN, now=local(2026, 3, 10, 11))
    appointment.refresh_from_db()
    events = audit(appointment)

    with pytest.raises(InvalidTransition) as cancel:
        appointment_cancel_by_patient(appointment=appointment, now=now)
    with pytest.raises(InvalidTransition) as move:
        appointment_reschedule_by_patient(
            appointment=appointment, start_at=local(2026, 3, 12), practitioner_id=appointment.practitioner_id, now=now
        )
    with pytest.raises(InvalidTransition) as options:
        patient_move_options(appointment=appointment, now=now)

    assert (cancel.value.code, cancel.value.message) == (ErrorCode.NOT_CANCELLABLE, message)
    assert (move.value.code, move.value.message) == (ErrorCode.NOT_RESCHEDULABLE, message)
    assert options.value.code == ErrorCode.NOT_RESCHEDULABLE
    assert not appointment_self_service(appointment=appointment, now=now).can_change
    assert audit(appointment) == events  # nothing written


def test_the_window_is_checked_against_the_start_as_it_is_now(appointment, now):
    """The patient's page may be stale: staff moved the appointment into tomorrow meanwhile."""
    from scheduler.booking import appointment_reschedule

    stale = Appointment.objects.select_related("clinic", "patient").get(pk=appointment.pk)
    appointment_reschedule(appointment=appointment, start_at=local(2026, 3, 3, 10), actor=RECEPTION, now=now)

    with pytest.raises(InvalidTransition) as refused:
        appointment_cancel_by_patient(appointment=stale, now=now + timedelta(hours=2))

    assert refused.value.code == ErrorCode.OUTSIDE_CANCELLATION_WINDOW
    assert Appointment.objects.get(pk=appointment.pk).status == AppointmentStatus.CONFIRMED


# --- Where they may move to ------------------------------------------------------------------------


def test_options_are_never_inside_the_window_nor_the_current_time(appointment, now):
    options = patient_move_options(appointment=appointment, now=now)

    assert options
    assert min(slot.start_at for slot in options) >= now + timedelta(hours=24)
    assert appointment.start_at not in {slot.start_at for slot in options}
    assert options[0].start_at == local(2026, 3, 3, 9)  # Tuesday 09:00, exactly 24 hours ahead
    assert [slot.start_at for slot in options] == sorted(slot.start_at for slot in options)


def test_options_pass_every_rule_for_this_patient(patient, practitioner, clinic, now):
    """Botox five days ago: microneedling only from 14 days after it (docs/rules.md)."""
    botox = ProcedureRecord.objects.create(
        patient=patient,
        procedure_id="botox",
        performed_at=now - timedelta(days=5),
        area_id="face",
        source=HistorySource.CLINIC,
    )
    earliest_day = botox.performed_at.astimezone(LONDON).date() + timedelta(days=14)
    appointment = appointment_book(
        patient=patient,
        procedure_code="microneedling",
        area_code="face",
        start_at=local(2026, 3, 24),
        actor=RECEPTION,
        now=now,
    ).appointment

    options = patient_move_options(appointment=appointment, now=now)

    assert options[0].start_at.astimezone(LONDON).date() == earliest_day
    for slot in options[:: max(1, len(options) // 20)]:
        check = appointment_reschedule_check(
            appointment=appointment, start_at=slot.start_at, now=now, practitioner_id=slot.practitioner_id
        )
        assert check.eligible, (slot, check.blocking)


def test_one_option_per_time_with_the_patients_own_practitioner_first(appointment, practitioner, clinic, now):
    PractitionerFactory(clinic=clinic, name="Ann Other")  # sorts first by name, free at the same times

    options = patient_move_options(appointment=appointment, now=now, days=2)

    starts = [slot.start_at for slot in options]
    assert len(starts) == len(set(starts))
    assert {slot.practitioner_id for slot in options} == {str(practitioner.pk)}


def test_options_are_capped_and_bounded_in_days(appointment, now):
    assert len(patient_move_options(appointment=appointment, now=now, limit=5)) == 5
    two_days = patient_move_options(appointment=appointment, now=now, days=2)
    assert max(slot.start_at for slot in two_days) <= now + timedelta(hours=24) + timedelta(days=2)


def test_no_options_inside_the_window(appointment):
    with pytest.raises(InvalidTransition) as refused:
        patient_move_options(appointment=appointment, now=appointment.start_at - timedelta(hours=23))

    assert refused.value.code == ErrorCode.OUTSIDE_CANCELLATION_WINDOW


# --- Moving -----------------------------------------------------------------------------------------


def test_a_patient_moves_to_an_offered_time_and_the_audit_trail_names_them(appointment, patient, now):
    slot = patient_move_options(appointment=appointment, now=now)[3]

    result = appointment_reschedule_by_patient(
        appointment=appointment, start_at=slot.start_at, practitioner_id=slot.practitioner_id, now=now
    )

    moved = Appointment.objects.get(pk=appointment.pk)
    assert (moved.start_at, moved.end_at) == (slot.start_at, slot.start_at + timedelta(minutes=60))
    assert result.appointment.status == AppointmentStatus.CONFIRMED
    event = AuditEvent.objects.filter(appointment=appointment).last()
    assert (event.action, event.actor_label, event.actor_user) == (
        AuditAction.RESCHEDULED,
        f"patient {patient.pk}",
        None,
    )
    assert event.details["from"]["start_at"] == local(2026, 3, 10).astimezone(slot.start_at.tzinfo).isoformat()


def test_moving_at_the_window_edges(appointment, clinic, now):
    """The appointment may move until exactly 24 hours before it; the new time must be 24 hours away too."""
    tuesday_nine = local(2026, 3, 3, 9)  # exactly now + 24 hours
    clinic.cancellation_window_hours = 25
    clinic.save()
    appointment.refresh_from_db()

    with pytest.raises(InvalidTransition) as too_soon:
        appointment_reschedule_by_patient(
            appointment=appointment, start_at=tuesday_nine, practitioner_id=appointment.practitioner_id, now=now
        )
    assert too_soon.value.code == ErrorCode.OUTSIDE_CANCELLATION_WINDOW
    assert too_soon.value.message.startswith("That time is less than 25 hours away")
    assert Appointment.objects.get(pk=appointment.pk).start_at == local(2026, 3, 10)

    clinic.cancellation_window_hours = 24
    clinic.save()
    appointment.refresh_from_db()
    moved = appointment_reschedule_by_patient(
        appointment=appointment, start_at=tuesday_nine, practitioner_id=appointment.practitioner_id, now=now
    )
    assert moved.appointment.start_at == tuesday_nine

    with pytest.raises(InvalidTransition) as inside:  # now itself inside the (new) window
        appointment_reschedule_by_patient(
            appointment=moved.appointment,
            start_at=local(2026, 3, 12),
            practitioner_id=appointment.practitioner_id,
            now=now + timedelta(minutes=1),
        )
    assert inside.value.code == ErrorCode.OUTSIDE_CANCELLATION_WINDOW


def test_a_slot_taken_meanwhile_is_refused_and_nothing_changes(appointment, practitioner, clinic, now):
    slot = patient_move_options(appointment=appointment, now=now)[0]
    someone_else = PatientFactory(clinic=clinic)
    appointment_book(
        patient=someone_else,
        procedure_code="botox",
        start_at=slot.start_at,
        actor=RECEPTION,
        now=now,
        practitioner_id=practitioner.pk,
    )
    events = audit(appointment)

    with pytest.raises(UnableToBook) as check:
        patient_move_check(
            appointment=appointment, start_at=slot.start_at, practitioner_id=slot.practitioner_id, now=now
        )
    with pytest.raises(UnableToBook) as refused:
        appointment_reschedule_by_patient(
            appointment=appointment, start_at=slot.start_at, practitioner_id=slot.practitioner_id, now=now
        )

    assert [v.code for v in refused.value.check.blocking] == [AvailabilityCode.SLOT_TAKEN]
    assert check.value.code == refused.value.code == ErrorCode.BOOKING_REFUSED
    current = Appointment.objects.get(pk=appointment.pk)
    assert (current.start_at, current.status) == (local(2026, 3, 10), AppointmentStatus.CONFIRMED)
    assert audit(appointment) == events
    assert slot.start_at not in {s.start_at for s in patient_move_options(appointment=appointment, now=now)}


def test_a_time_that_breaks_a_rule_is_refused_even_if_asked_for_directly(patient, practitioner, now):
    ProcedureRecord.objects.create(
        patient=patient,
        procedure_id="botox",
        performed_at=now - timedelta(days=5),
        area_id="face",
        source=HistorySource.CLINIC,
    )
    appointment = appointment_book(
        patient=patient,
        procedure_code="microneedling",
        area_code="face",
        start_at=local(2026, 3, 24),
        actor=RECEPTION,
        now=now,
    ).appointment

    with pytest.raises(UnableToBook) as refused:
        appointment_reschedule_by_patient(
            appointment=appointment, start_at=local(2026, 3, 4), practitioner_id=practitioner.pk, now=now
        )

    assert refused.value.check.evaluation.blocking
    assert Appointment.objects.get(pk=appointment.pk).start_at == local(2026, 3, 24)


def test_the_move_check_writes_nothing_and_agrees_with_the_move(appointment, now):
    slot = patient_move_options(appointment=appointment, now=now)[1]

    check = patient_move_check(
        appointment=appointment, start_at=slot.start_at, practitioner_id=slot.practitioner_id, now=now
    )

    assert check.eligible and check.practitioner.pk == appointment.practitioner_id
    assert Appointment.objects.get(pk=appointment.pk).start_at == local(2026, 3, 10)
