"""A patient's timeline is read in one statement (a `UNION ALL` of history, active appointments, medication
courses and intake lines) and says exactly what the four tables say: each row of its kind, typed as the models
type it (aware datetimes, dates, ids), and nobody else's."""

from datetime import date, timedelta

import pytest

from clinic.models import (
    ACTIVE_APPOINTMENT_STATUSES,
    Appointment,
    AppointmentStatus,
    MedicationCourse,
    PatientCondition,
    ProcedureRecord,
)
from scheduler import rules, selectors
from tests.factories import (
    AppointmentFactory,
    MedicationCourseFactory,
    PatientConditionFactory,
    PatientFactory,
    PractitionerFactory,
    ProcedureRecordFactory,
)

pytestmark = pytest.mark.usefixtures("catalogue")


def book(patient, practitioner, procedure, start, status=AppointmentStatus.CONFIRMED, area=None):
    return AppointmentFactory(
        clinic=patient.clinic,
        patient=patient,
        practitioner=practitioner,
        procedure_id=procedure,
        area_id=area,
        start_at=start,
        end_at=start + timedelta(minutes=30),
        status=status,
    )


def fill(patient, now):
    practitioner = PractitionerFactory(clinic=patient.clinic)
    done = book(patient, practitioner, "botox", now - timedelta(days=40), AppointmentStatus.COMPLETED, "face")
    ProcedureRecordFactory(patient=patient, procedure_id="botox", performed_at=done.start_at, appointment=done)
    ProcedureRecordFactory(patient=patient, procedure_id="filler", performed_at=now - timedelta(days=400))
    book(patient, practitioner, "microneedling", now + timedelta(days=3), area="neck")
    book(patient, practitioner, "plasma_pen", now + timedelta(days=9), AppointmentStatus.CANCELLED)
    MedicationCourseFactory(patient=patient, drug_id="isotretinoin", started_on=date(2025, 1, 5), ended_on=None)
    MedicationCourseFactory(
        patient=patient, drug_id="anticoagulant", started_on=date(2025, 6, 1), ended_on=date(2025, 7, 1)
    )
    PatientConditionFactory(patient=patient, condition_id="skin_infection", area_id="face")
    PatientConditionFactory(patient=patient, condition_id="keloid_scarring", status="history")


def expected(patient_id) -> rules.Timeline:
    """The same timeline from four plain ORM reads."""
    events = [
        rules.ProcedureEvent(
            id=str(r.pk),
            procedure=r.procedure_id,
            start_at=r.performed_at,
            area=r.area_id,
            state=rules.EventState.DONE,
            clinic=str(r.appointment.clinic_id) if r.appointment else None,
        )
        for r in ProcedureRecord.objects.filter(patient_id=patient_id).select_related("appointment")
    ] + [
        rules.ProcedureEvent(
            id=str(a.pk),
            procedure=a.procedure_id,
            start_at=a.start_at,
            area=a.area_id,
            state=rules.EventState.BOOKED,
            clinic=str(a.clinic_id),
        )
        for a in Appointment.objects.filter(patient_id=patient_id, status__in=ACTIVE_APPOINTMENT_STATUSES)
    ]
    courses = [
        rules.MedicationCourse(id=str(c.pk), drug=c.drug_id, started_on=c.started_on, ended_on=c.ended_on)
        for c in MedicationCourse.objects.filter(patient_id=patient_id)
    ]
    conditions = [
        rules.ConditionEntry(id=str(c.pk), condition=c.condition_id, status=c.status, area=c.area_id)
        for c in PatientCondition.objects.filter(patient_id=patient_id)
    ]
    return rules.Timeline(events, courses, conditions)


def events(timeline) -> list[rules.ProcedureEvent]:
    return sorted((event for kind in timeline._events.values() for event in kind), key=lambda event: event.id)


def courses(timeline) -> list[rules.MedicationCourse]:
    return [course for drug in sorted(timeline._courses) for course in timeline.courses(drug)]


def test_one_statement_reads_every_kind_of_row_as_the_models_do(now, django_assert_num_queries):
    patient = PatientFactory()
    fill(patient, now)
    fill(PatientFactory(clinic=patient.clinic), now)  # somebody else's rows stay theirs
    want = expected(patient.pk)

    with django_assert_num_queries(1):
        got = selectors.timeline_for_patient(patient.pk)

    assert len(events(got)) == 3  # two done, one booked; the cancelled one is not in it
    assert events(got) == events(want)
    assert {event.clinic for event in events(got)} == {str(patient.clinic_id), None}  # a reported one has none
    assert all(event.start_at.tzinfo is not None for event in events(got))
    assert courses(got) == courses(want)
    assert [course.drug for course in courses(got)] == ["anticoagulant", "isotretinoin"]
    assert courses(got)[0].ended_on == date(2025, 7, 1) and courses(got)[1].ended_on is None
    assert got.conditions == want.conditions
    assert [(entry.condition, entry.area) for entry in got.conditions] == [
        ("keloid_scarring", None),
        ("skin_infection", "face"),
    ]


def test_a_patient_with_nothing_recorded_has_an_empty_timeline(django_assert_num_queries):
    patient = PatientFactory()
    with django_assert_num_queries(1):
        got = selectors.timeline_for_patient(patient.pk)
    assert (events(got), courses(got), got.conditions) == ([], [], ())


def test_the_window_read_is_one_statement_with_the_courses_and_conditions_whole(now, django_assert_num_queries):
    patient = PatientFactory()
    fill(patient, now)
    want = expected(patient.pk)
    rulebook = selectors.rulebook_load(None)
    with django_assert_num_queries(1):
        window = selectors.timeline_for_window(
            patient.pk, rulebook=rulebook, procedure="microneedling", lo=now, hi=now + timedelta(days=14)
        )
    assert courses(window) == courses(want)
    assert window.conditions == want.conditions
    # Only the events the rules can reach from the window, and each as the whole timeline has it (no clinic).
    whole = {event.id: event for event in events(want)}
    assert events(window)
    for event in events(window):
        assert event.start_at == whole[event.id].start_at
        assert event.procedure == whole[event.id].procedure
        assert event.state == whole[event.id].state
