"""Booking services: what they write, what they refuse, and what they say about it."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from clinic.models import Appointment, AppointmentStatus, AuditAction, AuditEvent, ProcedureRecord, TimeOff
from core.errors import ErrorCode, InvalidInput, InvalidTransition, NotAllowed
from scheduler.availability import AvailabilityCode
from scheduler.booking import (
    Actor,
    UnableToBook,
    appointment_book,
    appointment_cancel,
    appointment_check,
    appointment_check_in,
    appointment_clear,
    appointment_complete,
    appointment_mark_no_show,
    appointment_recheck,
    appointment_reschedule,
    appointment_reschedule_check,
    appointment_slots,
)
from scheduler.rules import Outcome, ViolationCode
from tests.factories import (
    ClinicFactory,
    MedicationCourseFactory,
    PatientConditionFactory,
    PatientFactory,
    PractitionerFactory,
    ProcedureRecordFactory,
)

LONDON = ZoneInfo("Europe/London")
RECEPTION = Actor("reception@test")
CLINICIAN = Actor("clinician@test", clinical=True)


def local(y, m, d, hh=10, mm=0):
    return datetime(y, m, d, hh, mm, tzinfo=LONDON)


@pytest.fixture
def clinic(catalogue):
    return ClinicFactory(code="london", timezone="Europe/London")


@pytest.fixture
def practitioner(clinic):
    return PractitionerFactory(clinic=clinic, name="Dr A")


@pytest.fixture
def patient(clinic):
    return PatientFactory(clinic=clinic)


def book(patient, code, when, now, **kwargs):
    return appointment_book(patient=patient, procedure_code=code, start_at=when, actor=RECEPTION, now=now, **kwargs)


# --- Booking ---------------------------------------------------------------------------------------


def test_booking_writes_a_confirmed_appointment_and_its_audit(patient, practitioner, now):
    result = book(patient, "botox", local(2026, 3, 10), now, area_code="face")

    appointment = Appointment.objects.get(pk=result.appointment.pk)
    assert appointment.status == AppointmentStatus.CONFIRMED
    assert appointment.practitioner == practitioner
    assert appointment.end_at - appointment.start_at == timedelta(minutes=30)
    assert appointment.area_id == "face"
    [audit] = AuditEvent.objects.filter(appointment=appointment)
    assert (audit.action, audit.actor_label, audit.at) == ("booked", "reception@test", now)


def test_a_refusal_names_rule_event_earliest_start_and_next_slot(patient, practitioner, now):
    botox = ProcedureRecordFactory(patient=patient, procedure_id="botox", performed_at=local(2026, 3, 1, 15))

    with pytest.raises(UnableToBook) as refused:
        book(patient, "microneedling", local(2026, 3, 10), now)

    check = refused.value.check
    [violation] = check.blocking
    assert violation.code == ViolationCode.TOO_SOON_AFTER
    assert violation.conflicts_with.id == str(botox.pk)
    assert check.earliest_eligible_start == local(2026, 3, 15, 0, 0)
    # 15 March 2026 is a Sunday: the practitioner works Monday to Saturday from 09:00.
    assert check.next_available_slot.start_at == local(2026, 3, 16, 9, 0)
    assert check.next_available_slot.practitioner_id == str(practitioner.pk)
    assert not Appointment.objects.exists()


def test_relative_contraindication_books_as_pending_clearance(patient, practitioner, now):
    PatientConditionFactory(patient=patient, condition_id="eczema", status="history")

    result = book(patient, "microneedling", local(2026, 3, 10), now)

    assert result.appointment.status == AppointmentStatus.PENDING_CLEARANCE
    assert result.check.outcome == Outcome.PENDING_CLEARANCE


def test_absolute_contraindication_refuses_with_no_date(patient, practitioner, now):
    PatientConditionFactory(patient=patient, condition_id="cardiac_abnormality")

    with pytest.raises(UnableToBook) as refused:
        book(patient, "microneedling", local(2026, 3, 10), now)

    assert refused.value.check.earliest_eligible_start is None
    assert refused.value.check.next_available_slot is None


def test_warnings_come_back_with_a_confirmed_booking(patient, practitioner, now):
    MedicationCourseFactory(
        patient=patient,
        drug_id="isotretinoin",
        started_on=datetime(2025, 1, 1).date(),
        ended_on=datetime(2025, 6, 1).date(),
    )

    result = book(patient, "filler", local(2026, 3, 10), now)

    assert result.appointment.status == AppointmentStatus.CONFIRMED
    assert [w.rule_id for w in result.check.warnings]


def test_check_is_a_dry_run_with_the_same_answer(patient, practitioner, now):
    ProcedureRecordFactory(patient=patient, procedure_id="botox", performed_at=local(2026, 3, 1, 15))

    check = appointment_check(patient=patient, procedure_code="microneedling", start_at=local(2026, 3, 10), now=now)

    assert check.outcome == Outcome.REFUSED
    assert check.earliest_eligible_start == local(2026, 3, 15, 0, 0)
    assert not Appointment.objects.exists()


# --- Bad input never reaches the database -------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, code, field",
    [
        ({"procedure_code": "laser"}, "unknown_procedure", "procedure"),
        ({"area_code": "elbow"}, "unknown_area", "area"),
        ({"start_at": datetime(2026, 3, 10, 10, 0)}, "naive_datetime", "start"),
        ({"start_at": local(2026, 3, 10, 10, 0).replace(second=30)}, "not_whole_minute", "start"),
        ({"start_at": local(2026, 3, 1, 10, 0)}, "start_in_past", "start"),
        ({"end_at": local(2026, 3, 10, 9, 0)}, "end_before_start", "end"),
        ({"end_at": local(2026, 3, 10, 10, 0)}, "end_before_start", "end"),
        ({"practitioner_id": "not-a-uuid"}, "unknown_practitioner", "practitioner"),
        ({"practitioner_id": "5b4a2c1e-0000-4000-8000-000000000000"}, "unknown_practitioner", "practitioner"),
    ],
)
def test_invalid_booking_input_is_a_domain_error(patient, practitioner, now, kwargs, code, field):
    arguments = {"procedure_code": "botox", "start_at": local(2026, 3, 10)} | kwargs

    with pytest.raises(InvalidInput) as error:
        appointment_book(patient=patient, actor=RECEPTION, now=now, **arguments)

    assert (error.value.code, error.value.field) == (code, field)
    assert error.value.message
    assert not Appointment.objects.exists()


def test_an_unknown_procedure_or_area_names_the_codes_there_are(patient, practitioner, now):
    with pytest.raises(InvalidInput) as error:
        appointment_book(patient=patient, actor=RECEPTION, now=now, procedure_code="Botox", start_at=local(2026, 3, 10))
    # The bookable procedures only: a course of isotretinoin is in the catalogue, not booked.
    assert error.value.message == (
        "There is no procedure with code 'Botox'. Bookable: botox, filler, microneedling, plasma_pen."
    )
    with pytest.raises(InvalidInput) as error:
        book(patient, "botox", local(2026, 3, 10), now, area_code="elbow")
    assert error.value.message == (
        "There is no treatment area with code 'elbow'. Codes: body, decolletage, face, hands, neck, scalp."
    )
    assert not Appointment.objects.exists()


def test_a_practitioner_who_does_not_do_the_procedure_is_refused(patient, clinic, now):
    injector = PractitionerFactory(clinic=clinic, name="Injector", procedures=["botox"])

    with pytest.raises(InvalidInput) as error:
        book(patient, "microneedling", local(2026, 3, 10), now, practitioner_id=injector.pk)

    assert error.value.code == "practitioner_does_not_do_procedure"
    assert "Injector does not do Microneedling" in error.value.message


def test_another_clinics_practitioner_is_unknown(patient, practitioner, now):
    elsewhere = PractitionerFactory(clinic=ClinicFactory(code="elsewhere"))

    with pytest.raises(InvalidInput) as error:
        book(patient, "botox", local(2026, 3, 10), now, practitioner_id=elsewhere.pk)

    assert error.value.code == "unknown_practitioner"


def test_a_procedure_nobody_at_the_clinic_does(patient, clinic, now):
    PractitionerFactory(clinic=clinic, procedures=["botox"])

    with pytest.raises(InvalidInput) as error:
        book(patient, "plasma_pen", local(2026, 3, 10), now)

    assert error.value.code == "no_practitioner_for_procedure"


# --- Availability ----------------------------------------------------------------------------------------------


def test_outside_working_hours_is_refused_with_the_next_slot(patient, practitioner, now):
    with pytest.raises(UnableToBook) as refused:
        book(patient, "botox", local(2026, 3, 10, 17, 45), now, practitioner_id=practitioner.pk)

    check = refused.value.check
    assert [v.code for v in check.blocking] == [AvailabilityCode.OUTSIDE_WORKING_HOURS]
    assert check.earliest_eligible_start == local(2026, 3, 10, 17, 45)
    assert check.next_available_slot.start_at == local(2026, 3, 11, 9, 0)


def test_a_taken_slot_and_time_off_are_refused(patient, practitioner, clinic, now):
    book(PatientFactory(clinic=clinic), "microneedling", local(2026, 3, 10, 10), now)
    TimeOff.objects.create(practitioner=practitioner, start_at=local(2026, 3, 11, 9), end_at=local(2026, 3, 11, 13))

    with pytest.raises(UnableToBook) as taken:
        book(patient, "botox", local(2026, 3, 10, 10, 30), now)
    with pytest.raises(UnableToBook) as off:
        book(patient, "botox", local(2026, 3, 11, 12, 30), now)

    assert [v.code for v in taken.value.check.blocking] == [AvailabilityCode.SLOT_TAKEN]
    assert taken.value.check.next_available_slot.start_at == local(2026, 3, 10, 11, 0)
    assert [v.code for v in off.value.check.blocking] == [AvailabilityCode.TIME_OFF]
    assert off.value.check.next_available_slot.start_at == local(2026, 3, 11, 13, 0)


def test_any_practitioner_takes_whoever_is_free(patient, practitioner, clinic, now):
    second = PractitionerFactory(clinic=clinic, name="Dr B")
    book(PatientFactory(clinic=clinic), "botox", local(2026, 3, 10, 10), now, practitioner_id=practitioner.pk)

    result = book(patient, "botox", local(2026, 3, 10, 10), now)

    assert result.appointment.practitioner == second


def test_when_nobody_is_free_the_refusal_says_so(patient, practitioner, clinic, now):
    PractitionerFactory(clinic=clinic, name="Dr B")
    for _ in range(2):
        book(PatientFactory(clinic=clinic), "botox", local(2026, 3, 10, 10), now)

    with pytest.raises(UnableToBook) as refused:
        book(patient, "botox", local(2026, 3, 10, 10), now)

    assert [v.code for v in refused.value.check.blocking] == [AvailabilityCode.NO_PRACTITIONER]


def test_slots_are_free_and_interval_eligible(patient, practitioner, now):
    ProcedureRecordFactory(patient=patient, procedure_id="botox", performed_at=local(2026, 3, 1, 15))

    slots = appointment_slots(
        patient=patient,
        procedure_code="microneedling",
        window_start=local(2026, 3, 2, 0),
        window_end=local(2026, 3, 20, 0),
        now=now,
    )

    assert slots[0].start_at == local(2026, 3, 16, 9, 0)
    assert all(slot.start_at >= local(2026, 3, 15, 0, 0) for slot in slots)
    assert len({slot.start_at for slot in slots}) == len(slots)
    # Monday to Thursday, 09:00 to 17:00 starts on a 15-minute grid for a 60-minute procedure.
    assert len(slots) == 4 * 33


def test_slot_window_is_bounded(patient, practitioner, now):
    with pytest.raises(InvalidInput) as error:
        appointment_slots(
            patient=patient,
            procedure_code="botox",
            window_start=local(2026, 3, 3),
            window_end=local(2026, 7, 3),
            now=now,
        )

    assert error.value.code == "window_too_long"


# --- Reschedule, cancel, clear, complete, no-show ----------------------------------------------------------------


def test_reschedule_rechecks_the_rules_without_the_appointment_itself(patient, practitioner, now):
    appointment = book(patient, "microneedling", local(2026, 3, 10), now).appointment
    ProcedureRecordFactory(patient=patient, procedure_id="botox", performed_at=local(2026, 3, 2, 8))

    moved = appointment_reschedule(
        appointment=appointment, start_at=local(2026, 3, 17, 11), actor=RECEPTION, now=now
    ).appointment
    with pytest.raises(UnableToBook) as refused:
        appointment_reschedule(appointment=appointment, start_at=local(2026, 3, 12, 11), actor=RECEPTION, now=now)

    assert moved.start_at == local(2026, 3, 17, 11)
    assert refused.value.check.earliest_eligible_start == local(2026, 3, 16, 0, 0)
    assert Appointment.objects.get(pk=appointment.pk).start_at == local(2026, 3, 17, 11)
    actions = list(AuditEvent.objects.filter(appointment=appointment).values_list("action", flat=True))
    assert actions == ["booked", "rescheduled"]


def test_a_move_to_where_the_booking_already_is_changes_nothing(patient, practitioner, now):
    """A move sent twice (a form resent, a retried request) is one move: the second finds the booking where it
    asks it to be and writes, audits and announces nothing. A move of its practitioner only is still a move."""
    appointment = book(patient, "microneedling", local(2026, 3, 10), now).appointment
    moved = appointment_reschedule(appointment=appointment, start_at=local(2026, 3, 12), actor=RECEPTION, now=now)
    again = appointment_reschedule(appointment=appointment, start_at=local(2026, 3, 12), actor=RECEPTION, now=now)

    assert again.appointment.start_at == moved.appointment.start_at == local(2026, 3, 12)
    assert again.check.eligible
    actions = list(AuditEvent.objects.filter(appointment=appointment).values_list("action", flat=True))
    assert actions == ["booked", "rescheduled"]
    assert AuditEvent.objects.get(appointment=appointment, action="rescheduled").details["violations"] == []

    colleague = PractitionerFactory(clinic=practitioner.clinic, name="Dr B")
    appointment_reschedule(
        appointment=appointment, start_at=local(2026, 3, 12), practitioner_id=colleague.pk, actor=RECEPTION, now=now
    )
    assert Appointment.objects.get(pk=appointment.pk).practitioner_id == colleague.pk
    assert AuditEvent.objects.filter(appointment=appointment, action="rescheduled").count() == 2


def test_a_move_records_the_warnings_it_was_made_with_as_a_booking_does(patient, practitioner, now):
    appointment = book(patient, "microneedling", local(2026, 4, 20), now).appointment
    ProcedureRecordFactory(patient=patient, procedure_id="microneedling", performed_at=local(2026, 3, 2, 8))

    moved = appointment_reschedule(appointment=appointment, start_at=local(2026, 3, 20), actor=RECEPTION, now=now)

    assert moved.check.warnings  # sessions at least 4 weeks apart: a clinic default that warns
    recorded = AuditEvent.objects.get(appointment=appointment, action="rescheduled").details["violations"]
    assert recorded == [{"code": str(v.code), "severity": "warn", "rule": v.rule_id} for v in moved.check.violations]


def test_the_times_offered_for_a_move_are_of_the_bookings_own_length(patient, practitioner, now):
    """A move keeps the booking's own length (set longer than the catalogue's at the desk): no time is offered that
    it would not fit, and every time offered can be taken."""
    start = local(2026, 3, 10)
    appointment = book(patient, "microneedling", start, now, end_at=start + timedelta(minutes=90)).appointment
    other = PatientFactory(clinic=patient.clinic)
    book(other, "botox", local(2026, 3, 11, 11), now)
    slots = appointment_slots(
        patient=patient,
        procedure_code="microneedling",
        window_start=local(2026, 3, 11, 8),
        window_end=local(2026, 3, 11, 20),
        now=now,
        ignore_appointment=appointment,
    )
    starts = [slot.start_at for slot in slots]
    assert local(2026, 3, 11, 9, 30) in starts and local(2026, 3, 11, 9, 45) not in starts  # 90 min before 11:00
    assert all(slot.end_at - slot.start_at == timedelta(minutes=90) for slot in slots)
    for slot in slots:
        check = appointment_reschedule_check(appointment=appointment, start_at=slot.start_at, now=now)
        assert check.eligible, slot.start_at


def test_reschedule_names_the_other_booking_it_would_break(patient, practitioner, now):
    botox = book(patient, "botox", local(2026, 3, 10), now).appointment
    microneedling = book(patient, "microneedling", local(2026, 3, 24), now).appointment

    with pytest.raises(UnableToBook) as refused:
        appointment_reschedule(appointment=botox, start_at=local(2026, 3, 14), actor=RECEPTION, now=now)

    [violation] = refused.value.check.blocking
    assert violation.conflicts_with.id == str(microneedling.pk)
    assert violation.code == ViolationCode.TOO_CLOSE_BEFORE


def test_cancelling_frees_the_dates_it_took(patient, practitioner, now):
    botox = book(patient, "botox", local(2026, 3, 10), now).appointment
    before = appointment_check(patient=patient, procedure_code="microneedling", start_at=local(2026, 3, 12), now=now)

    appointment_cancel(appointment=botox, actor=RECEPTION, now=now, reason="patient request")
    after = appointment_check(patient=patient, procedure_code="microneedling", start_at=local(2026, 3, 12), now=now)

    assert before.outcome == Outcome.REFUSED
    assert after.outcome == Outcome.CONFIRMED
    cancelled = Appointment.objects.get(pk=botox.pk)
    assert (cancelled.status, cancelled.cancel_reason, cancelled.cancelled_at) == ("cancelled", "patient request", now)
    with pytest.raises(InvalidTransition):
        appointment_cancel(appointment=botox, actor=RECEPTION, now=now)


def test_a_clinician_clears_a_pending_booking_with_a_reason(patient, practitioner, now):
    PatientConditionFactory(patient=patient, condition_id="psoriasis", status="active")
    appointment = book(patient, "microneedling", local(2026, 3, 10), now).appointment

    with pytest.raises(NotAllowed):
        appointment_clear(appointment=appointment, actor=RECEPTION, now=now, reason="ok")
    with pytest.raises(InvalidInput) as no_reason:
        appointment_clear(appointment=appointment, actor=CLINICIAN, now=now, reason="  ")
    cleared = appointment_clear(
        appointment=appointment, actor=CLINICIAN, now=now, reason="Dermatologist approved a test area"
    )

    with pytest.raises(InvalidInput) as too_long:
        appointment_clear(appointment=appointment, actor=CLINICIAN, now=now, reason="x" * 2001)
    assert no_reason.value.field == "reason" and too_long.value.code == "reason_too_long"
    assert cleared.status == AppointmentStatus.CONFIRMED
    assert cleared.clearance_reason == "Dermatologist approved a test area"
    audit = AuditEvent.objects.get(appointment=appointment, action="cleared")
    assert audit.reason == "Dermatologist approved a test area" and audit.details["rules"]


def test_a_cleared_booking_stays_cleared_when_moved(patient, practitioner, now):
    PatientConditionFactory(patient=patient, condition_id="psoriasis", status="active")
    appointment = book(patient, "microneedling", local(2026, 3, 10), now).appointment
    appointment_clear(appointment=appointment, actor=CLINICIAN, now=now, reason="approved")

    moved = appointment_reschedule(
        appointment=appointment, start_at=local(2026, 3, 11), actor=RECEPTION, now=now
    ).appointment

    assert moved.status == AppointmentStatus.CONFIRMED


def test_a_new_condition_after_clearance_needs_clearance_again_when_moved(patient, practitioner, now):
    PatientConditionFactory(patient=patient, condition_id="psoriasis", status="active")
    appointment = book(patient, "microneedling", local(2026, 3, 10), now).appointment
    appointment_clear(appointment=appointment, actor=CLINICIAN, now=now, reason="approved")
    PatientConditionFactory(patient=patient, condition_id="diabetes", status="active")

    moved = appointment_reschedule(
        appointment=appointment, start_at=local(2026, 3, 11), actor=RECEPTION, now=now
    ).appointment

    assert moved.status == AppointmentStatus.PENDING_CLEARANCE


def test_completion_needs_a_clinician_clearance_and_the_start(patient, practitioner, now):
    PatientConditionFactory(patient=patient, condition_id="psoriasis", status="active")
    appointment = book(patient, "microneedling", local(2026, 3, 10), now, area_code="face").appointment
    later = local(2026, 3, 10, 11)

    with pytest.raises(NotAllowed):
        appointment_complete(appointment=appointment, actor=RECEPTION, now=later)
    with pytest.raises(InvalidTransition) as pending:
        appointment_complete(appointment=appointment, actor=CLINICIAN, now=later)
    appointment_clear(appointment=appointment, actor=CLINICIAN, now=now, reason="approved")
    with pytest.raises(InvalidTransition) as early:
        appointment_complete(appointment=appointment, actor=CLINICIAN, now=now)
    done = appointment_complete(appointment=appointment, actor=CLINICIAN, now=later)

    assert pending.value.code == "clearance_required"
    assert early.value.code == "not_started"
    assert done.status == AppointmentStatus.COMPLETED and done.completed_at == later
    record = ProcedureRecord.objects.get(appointment=appointment)
    assert (record.procedure_id, record.performed_at, record.area_id, record.source, record.clinic_id) == (
        "microneedling",
        local(2026, 3, 10),
        "face",
        "clinic",
        appointment.clinic_id,  # the visit's clinic: its zone gives the procedure its day (docs/rules.md)
    )


def test_a_completed_treatment_counts_once_in_the_history(patient, practitioner, now):
    appointment = book(patient, "microneedling", local(2026, 3, 10), now).appointment
    appointment_complete(appointment=appointment, actor=CLINICIAN, now=local(2026, 3, 10, 12))

    check = appointment_check(
        patient=patient, procedure_code="botox", start_at=local(2026, 3, 20), now=local(2026, 3, 10, 12)
    )

    assert [v.conflicts_with.id for v in check.blocking] == [str(ProcedureRecord.objects.get().pk)]


def test_no_show_frees_the_timeline(patient, practitioner, now):
    appointment = book(patient, "microneedling", local(2026, 3, 10), now).appointment
    later = local(2026, 3, 10, 11)

    with pytest.raises(InvalidTransition):
        appointment_mark_no_show(appointment=appointment, actor=CLINICIAN, now=now)
    appointment_mark_no_show(appointment=appointment, actor=CLINICIAN, now=later)

    assert Appointment.objects.get(pk=appointment.pk).status == AppointmentStatus.NO_SHOW
    assert (
        appointment_check(patient=patient, procedure_code="botox", start_at=local(2026, 3, 12), now=later).outcome
        == Outcome.CONFIRMED
    )


def test_checking_in_records_the_arrival_once_and_audits_it(patient, practitioner, now):
    appointment = book(patient, "botox", local(2026, 3, 10), now).appointment
    arrived = local(2026, 3, 10, 9, 50)

    appointment_check_in(appointment=appointment, actor=RECEPTION, now=arrived)

    appointment.refresh_from_db()
    assert (appointment.checked_in_at, appointment.status) == (arrived, AppointmentStatus.CONFIRMED)
    assert appointment.audit_events.filter(action=AuditAction.CHECKED_IN, at=arrived).count() == 1
    with pytest.raises(InvalidTransition) as twice:
        appointment_check_in(appointment=appointment, actor=RECEPTION, now=arrived)
    assert (twice.value.code, twice.value.message) == (ErrorCode.NOT_CHECKABLE_IN, "The patient is already checked in.")


def test_a_patient_is_checked_in_only_on_the_day_and_never_after_a_cancellation(patient, practitioner, now):
    appointment = book(patient, "botox", local(2026, 3, 10), now).appointment
    with pytest.raises(InvalidTransition) as early:
        appointment_check_in(appointment=appointment, actor=RECEPTION, now=local(2026, 3, 9, 10))
    assert early.value.message == "A patient can be checked in only on the day of the appointment."
    appointment_cancel(appointment=appointment, actor=RECEPTION, now=now)
    with pytest.raises(InvalidTransition) as cancelled:
        appointment_check_in(appointment=appointment, actor=RECEPTION, now=local(2026, 3, 10, 9, 50))
    assert cancelled.value.message == "A cancelled appointment cannot be checked in."


# --- Query counts do not grow with the history ------------------------------------------------------------------------


@pytest.mark.parametrize("history_size", [3, 300])
def test_booking_queries_do_not_grow_with_history(
    patient, practitioner, now, history_size, django_assert_max_num_queries
):
    ProcedureRecordFactory.create_batch(
        history_size, patient=patient, procedure_id="plasma_pen", performed_at=datetime(2020, 1, 1, tzinfo=UTC)
    )

    with django_assert_max_num_queries(30):
        book(patient, "botox", local(2026, 3, 10), now)


@pytest.mark.parametrize("history_size", [3, 300])
def test_a_refusal_with_its_next_slot_does_not_grow_with_history(
    patient, practitioner, now, history_size, django_assert_max_num_queries
):
    ProcedureRecordFactory.create_batch(
        history_size, patient=patient, procedure_id="botox", performed_at=local(2026, 3, 1, 15)
    )

    with django_assert_max_num_queries(32), pytest.raises(UnableToBook):
        book(patient, "microneedling", local(2026, 3, 10), now)


def test_no_show_needs_a_clinician(patient, practitioner, now):
    appointment = book(patient, "botox", local(2026, 3, 10), now).appointment

    with pytest.raises(NotAllowed):
        appointment_mark_no_show(appointment=appointment, actor=RECEPTION, now=local(2026, 3, 10, 11))


def test_reschedule_check_is_a_dry_run_that_leaves_the_appointment_out(patient, practitioner, now):
    appointment = book(patient, "microneedling", local(2026, 3, 10), now).appointment

    later_same_day = appointment_reschedule_check(appointment=appointment, start_at=local(2026, 3, 10, 10, 30), now=now)

    assert later_same_day.outcome == Outcome.CONFIRMED  # neither its own slot nor its own interval stands in the way
    assert Appointment.objects.get(pk=appointment.pk).start_at == local(2026, 3, 10)


def test_slots_for_a_move_leave_the_appointment_out(patient, practitioner, now):
    appointment = book(patient, "microneedling", local(2026, 3, 10, 9), now).appointment

    kept = appointment_slots(
        patient=patient,
        procedure_code="microneedling",
        window_start=local(2026, 3, 10, 0),
        window_end=local(2026, 3, 10, 12),
        now=now,
    )
    moving = appointment_slots(
        patient=patient,
        procedure_code="microneedling",
        window_start=local(2026, 3, 10, 0),
        window_end=local(2026, 3, 10, 12),
        now=now,
        ignore_appointment=appointment,
    )

    assert local(2026, 3, 10, 9) not in {slot.start_at for slot in kept}  # its own booking holds 09:00
    assert moving[0].start_at == local(2026, 3, 10, 9)


def test_recheck_says_why_a_booking_is_pending(patient, practitioner, now):
    PatientConditionFactory(patient=patient, condition_id="diabetes", status="active")
    appointment = book(patient, "microneedling", local(2026, 3, 10), now).appointment

    check = appointment_recheck(appointment=appointment)

    assert [v.conflicts_with.code for v in check.evaluation.needs_clearance] == ["diabetes"]
    assert check.eligible


def test_an_availability_window_that_ends_before_it_starts_is_refused(patient, practitioner, now):
    with pytest.raises(InvalidInput) as error:
        appointment_slots(
            patient=patient,
            procedure_code="botox",
            window_start=local(2026, 3, 10),
            window_end=local(2026, 3, 9),
            now=now,
        )

    assert (error.value.code, error.value.field) == ("window_end_before_start", "to")


@pytest.mark.parametrize("finish", ["cancel", "complete"])
def test_a_cancelled_or_completed_appointment_cannot_be_moved(patient, practitioner, now, finish):
    appointment = book(patient, "botox", local(2026, 3, 10), now).appointment
    if finish == "cancel":
        appointment_cancel(appointment=appointment, actor=RECEPTION, now=now)
    else:
        appointment_complete(appointment=appointment, actor=CLINICIAN, now=local(2026, 3, 10, 11))

    with pytest.raises(InvalidTransition) as error:
        appointment_reschedule(
            appointment=appointment, start_at=local(2026, 3, 20), actor=RECEPTION, now=local(2026, 3, 10, 11)
        )

    assert error.value.code == "not_reschedulable"
    assert Appointment.objects.get(pk=appointment.pk).start_at == local(2026, 3, 10)


# --- A patient is in one place at a time ---------------------------------------------------------


def test_a_patient_cannot_be_booked_twice_at_once_with_two_practitioners(patient, practitioner, clinic, now):
    other = PractitionerFactory(clinic=clinic, name="Dr B")
    first = book(patient, "botox", local(2026, 3, 10, 10), now, practitioner_id=practitioner.pk).appointment

    with pytest.raises(UnableToBook) as refused:
        book(patient, "filler", local(2026, 3, 10, 10, 15), now, practitioner_id=other.pk)

    [busy] = refused.value.check.blocking
    assert (busy.code, busy.kind) == (AvailabilityCode.PATIENT_BUSY, "availability")
    assert busy.conflicts_with.id == str(first.pk)
    # The next slot is after the patient's own appointment ends (10:30), not merely when Dr B is free.
    assert refused.value.check.next_available_slot.start_at == local(2026, 3, 10, 10, 30)
    assert Appointment.objects.filter(patient=patient).count() == 1


def test_back_to_back_appointments_for_one_patient_are_fine(patient, practitioner, clinic, now):
    other = PractitionerFactory(clinic=clinic, name="Dr B")
    book(patient, "botox", local(2026, 3, 10, 10), now, practitioner_id=practitioner.pk)

    result = book(patient, "filler", local(2026, 3, 10, 10, 30), now, practitioner_id=other.pk)

    assert result.appointment.status == AppointmentStatus.CONFIRMED


def test_a_cancelled_appointment_does_not_keep_the_patient_busy(patient, practitioner, clinic, now):
    other = PractitionerFactory(clinic=clinic, name="Dr B")
    first = book(patient, "botox", local(2026, 3, 10, 10), now, practitioner_id=practitioner.pk).appointment
    appointment_cancel(appointment=first, actor=RECEPTION, now=now)

    result = book(patient, "filler", local(2026, 3, 10, 10), now, practitioner_id=other.pk)

    assert result.appointment.practitioner == other


def test_moving_an_appointment_over_the_patients_other_one_is_refused(patient, practitioner, clinic, now):
    other = PractitionerFactory(clinic=clinic, name="Dr B")
    book(patient, "botox", local(2026, 3, 10, 10), now, practitioner_id=practitioner.pk)
    filler = book(patient, "filler", local(2026, 3, 10, 11), now, practitioner_id=other.pk).appointment

    with pytest.raises(UnableToBook) as refused:
        appointment_reschedule(appointment=filler, start_at=local(2026, 3, 10, 10, 15), actor=RECEPTION, now=now)
    assert [v.code for v in refused.value.check.blocking] == [AvailabilityCode.PATIENT_BUSY]
    # Moving it within its own time is not a clash with itself.
    moved = appointment_reschedule(appointment=filler, start_at=local(2026, 3, 10, 11, 15), actor=RECEPTION, now=now)
    assert moved.appointment.start_at == local(2026, 3, 10, 11, 15)


def test_slots_leave_out_the_times_the_patient_is_already_booked(patient, practitioner, clinic, now):
    other = PractitionerFactory(clinic=clinic, name="Dr B")
    book(patient, "botox", local(2026, 3, 10, 10), now, practitioner_id=practitioner.pk)

    slots = appointment_slots(
        patient=patient,
        procedure_code="filler",
        window_start=local(2026, 3, 10, 9),
        window_end=local(2026, 3, 10, 12),
        now=now,
        practitioner_id=other.pk,
    )

    busy_from, busy_until = local(2026, 3, 10, 10), local(2026, 3, 10, 10, 30)
    assert [s for s in slots if s.end_at <= busy_from] and [s for s in slots if s.start_at >= busy_until]
    assert not [s for s in slots if s.start_at < busy_until and s.end_at > busy_from]


@pytest.mark.postgres
def test_the_database_refuses_overlapping_active_appointments_of_one_patient(patient, practitioner, clinic, now):
    from django.db import IntegrityError, transaction

    other = PractitionerFactory(clinic=clinic, name="Dr B")
    first = book(patient, "botox", local(2026, 3, 10, 10), now, practitioner_id=practitioner.pk).appointment

    with pytest.raises(IntegrityError, match="appointment_patient_no_overlap"), transaction.atomic():
        Appointment.objects.create(
            clinic=clinic,
            patient=patient,
            practitioner=other,
            procedure_id="filler",
            start_at=first.start_at,
            end_at=first.end_at,
            status=AppointmentStatus.CONFIRMED,
        )
