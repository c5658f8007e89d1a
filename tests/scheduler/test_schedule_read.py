"""A `Schedule` reads the practitioners' working hours, their time off and the bookings of the window (theirs and
the patient's own, wherever) in one statement, and answers from it exactly as the calendars say."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from clinic.models import Appointment, AppointmentStatus, TimeOff, WorkingHours
from scheduler.availability import AvailabilityCode, Schedule, calendars_of
from tests.factories import AppointmentFactory, ClinicFactory, PatientFactory, PractitionerFactory

LONDON = ZoneInfo("Europe/London")
pytestmark = pytest.mark.usefixtures("catalogue")
MONDAY = datetime(2026, 3, 2, tzinfo=LONDON)  # the window: Monday 2 March, a whole day


def at(hour, minute=0, day=0):
    return MONDAY + timedelta(days=day, hours=hour, minutes=minute)


def book(practitioner, patient, start, minutes=30, status=AppointmentStatus.CONFIRMED, procedure="botox"):
    return AppointmentFactory(
        clinic=practitioner.clinic,
        patient=patient,
        practitioner=practitioner,
        procedure_id=procedure,
        start_at=start,
        end_at=start + timedelta(minutes=minutes),
        status=status,
    )


@pytest.fixture
def scene():
    clinic = ClinicFactory(timezone="Europe/London")
    elsewhere = ClinicFactory(timezone="Europe/London")
    ada = PractitionerFactory(clinic=clinic, name="Ada", hours=[])
    WorkingHours.objects.create(practitioner=ada, weekday=0, start_time=time(9), end_time=time(12))
    WorkingHours.objects.create(practitioner=ada, weekday=0, start_time=time(13), end_time=time(17))
    bo = PractitionerFactory(clinic=clinic, name="Bo")  # Monday to Saturday 09:00-18:00
    TimeOff.objects.create(practitioner=bo, start_at=at(14), end_at=at(15))
    TimeOff.objects.create(practitioner=bo, start_at=at(9, day=5), end_at=at(10, day=5))  # outside the window
    far = PractitionerFactory(clinic=elsewhere, name="Far")
    patient, other = PatientFactory(clinic=clinic), PatientFactory(clinic=clinic)
    book(ada, other, at(10))
    book(ada, other, at(11), status=AppointmentStatus.CANCELLED)  # not busy
    book(far, patient, at(16))  # the patient's own, with a practitioner not in the schedule
    book(bo, other, at(10, day=1))  # outside the window
    return ada, bo, patient


def schedule(ada, bo, **kwargs):
    return Schedule([bo, ada], LONDON, at(0), at(0, day=1), **kwargs)


def test_one_statement_reads_hours_time_off_and_bookings_of_both_kinds(scene, django_assert_num_queries):
    ada, bo, patient = scene
    with django_assert_num_queries(1):
        whole = schedule(ada, bo, patient_id=patient.pk)

    assert whole.is_free(ada, at(9), at(9, 30))
    assert [v.code for v in whole.problems(ada, at(10), at(10, 30))] == [AvailabilityCode.SLOT_TAKEN]
    assert whole.is_free(ada, at(11), at(11, 30))  # the cancelled booking does not hold the slot
    assert [v.code for v in whole.problems(ada, at(12), at(12, 30))] == [AvailabilityCode.OUTSIDE_WORKING_HOURS]
    assert whole.is_free(ada, at(13), at(13, 30))  # her second period that day
    assert [v.code for v in whole.problems(bo, at(14), at(14, 30))] == [AvailabilityCode.TIME_OFF]
    assert whole.is_free(bo, at(17), at(17, 30))
    busy = whole.patient_problem(at(16, 15), at(16, 45))
    assert busy is not None and busy.code == AvailabilityCode.PATIENT_BUSY
    assert busy.conflicts_with.at == at(16)
    assert whole.patient_problem(at(10), at(10, 30)) is None  # somebody else's booking


def test_without_a_patient_only_the_practitioners_bookings_are_read(scene, django_assert_num_queries):
    ada, bo, patient = scene
    with django_assert_num_queries(1):
        calendars = schedule(ada, bo)
    assert calendars.patient_problem(at(16), at(16, 30)) is None
    assert not calendars.is_free(ada, at(10), at(10, 30))


def test_a_moved_appointment_is_left_out_of_its_own_schedule(scene):
    ada, bo, patient = scene
    moving = Appointment.objects.get(practitioner=ada, status=AppointmentStatus.CONFIRMED)
    assert schedule(ada, bo, ignore_appointment_id=moving.pk).is_free(ada, at(10), at(10, 30))


def test_calendars_read_once_give_the_same_answers(scene, django_assert_num_queries):
    ada, bo, patient = scene
    with django_assert_num_queries(1):
        calendars = calendars_of([ada.pk, bo.pk], at(0), at(0, day=1))
    with django_assert_num_queries(1):  # only the bookings now
        reused = schedule(ada, bo, patient_id=patient.pk, calendars=calendars)
    whole = schedule(ada, bo, patient_id=patient.pk)
    for practitioner in (ada, bo):
        for hour in range(8, 19):
            start = at(hour)
            assert reused.problems(practitioner, start, start + timedelta(minutes=30)) == whole.problems(
                practitioner, start, start + timedelta(minutes=30)
            )
    assert reused.patient_problem(at(16), at(16, 30)) == whole.patient_problem(at(16), at(16, 30))


def test_nobody_to_read_costs_no_statement(django_assert_num_queries):
    with django_assert_num_queries(0):
        empty = Schedule([], LONDON, at(0), at(0, day=1))
    assert empty.patient_problem(at(10), at(11)) is None
