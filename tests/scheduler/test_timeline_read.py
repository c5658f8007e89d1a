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
    ClinicFactory,
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
            # Its day where it was done: a visit's clinic's zone; reported, the zone its day was recorded in.
            tz=(r.appointment.clinic if r.appointment else r.patient.clinic).tz,
        )
        for r in ProcedureRecord.objects.filter(patient_id=patient_id).select_related(
            "appointment__clinic", "patient__clinic"
        )
    ] + [
        rules.ProcedureEvent(
            id=str(a.pk),
            procedure=a.procedure_id,
            start_at=a.start_at,
            area=a.area_id,
            state=rules.EventState.BOOKED,
            clinic=str(a.clinic_id),
            tz=a.clinic.tz,
        )
        for a in Appointment.objects.filter(
            patient_id=patient_id, status__in=ACTIVE_APPOINTMENT_STATUSES
        ).select_related("clinic")
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
        assert event.tz == whole[event.id].tz


def test_each_event_carries_the_zone_its_day_is_read_in(now, django_assert_num_queries):
    """Brief 2: a gap compares local dates; brief 6: a visit at a sister site counts everywhere. The zone of each
    event is where it happens: the sister site's for a visit there, done or booked, and for a procedure reported
    as done elsewhere the home clinic's, the zone its day was recorded in (clinic.services._reported_at)."""
    home = ClinicFactory(timezone="Europe/London")
    sister = ClinicFactory(code="sister-akl", timezone="Pacific/Auckland", organisation=home.organisation)
    patient = PatientFactory(clinic=home)
    kiwi = PractitionerFactory(clinic=sister)
    visit = AppointmentFactory(
        clinic=sister, patient=patient, practitioner=kiwi, procedure_id="botox", status=AppointmentStatus.COMPLETED,
        start_at=now - timedelta(days=30), end_at=now - timedelta(days=30, minutes=-30),
    )  # fmt: skip
    ProcedureRecordFactory(patient=patient, procedure_id="botox", performed_at=visit.start_at, appointment=visit)
    reported = ProcedureRecordFactory(patient=patient, procedure_id="filler", performed_at=now - timedelta(days=20))
    booked = AppointmentFactory(
        clinic=sister, patient=patient, practitioner=kiwi, procedure_id="microneedling",
        start_at=now + timedelta(days=5), end_at=now + timedelta(days=5, minutes=30),
    )  # fmt: skip
    zones = {"botox": "Pacific/Auckland", "filler": "Europe/London", "microneedling": "Pacific/Auckland"}

    with django_assert_num_queries(1):
        whole = selectors.timeline_for_patient(patient.pk)
    assert {event.procedure: str(event.tz) for event in events(whole)} == zones
    rulebook = selectors.rulebook_load(None)
    for procedure in ("microneedling", "botox"):  # the window's read, from either side of the rules
        with django_assert_num_queries(1):
            window = selectors.timeline_for_window(
                patient.pk, rulebook=rulebook, procedure=procedure, lo=now - timedelta(days=60),
                hi=now + timedelta(days=60),
            )  # fmt: skip
        got = {event.id: str(event.tz) for event in events(window)}
        assert got and all(zone == zones[event.procedure] for event in events(window) for zone in [got[event.id]])
    assert reported.appointment is None and booked.clinic == sister
