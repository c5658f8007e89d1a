"""Concurrent bookings: locks and constraints let exactly one of two conflicting requests through.

Real threads, each with its own database connection, start together at a
barrier. On PostgreSQL the row locks and the exclusion constraint decide; on
SQLite the IMMEDIATE transactions serialise writers without "database is locked".
"""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.db import IntegrityError, transaction

from clinic.models import Appointment, AppointmentStatus
from scheduler.booking import Actor, UnableToBook, appointment_book
from tests.factories import AppointmentFactory, ClinicFactory, PatientFactory, PractitionerFactory
from tests.races import race

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=LONDON)


def local(d, hh=10, mm=0):
    return datetime(2026, 3, d, hh, mm, tzinfo=LONDON)


def booking(patient, code, when, **kwargs):
    return lambda: appointment_book(
        patient=patient, procedure_code=code, start_at=when, actor=Actor("race"), now=NOW, **kwargs
    )


@pytest.fixture
def setup(transactional_db, catalogue):
    clinic = ClinicFactory(code="race")
    return clinic, PractitionerFactory(clinic=clinic, name="Dr A"), PractitionerFactory(clinic=clinic, name="Dr B")


@pytest.mark.postgres
@pytest.mark.parametrize("attempt", range(3))
def test_two_patients_racing_for_one_slot_one_wins(setup, attempt):
    clinic, dr_a, _ = setup
    patients = [PatientFactory(clinic=clinic) for _ in range(4)]

    outcomes = race(*(booking(p, "microneedling", local(10), practitioner_id=dr_a.pk) for p in patients))

    winners = [o for o in outcomes if not isinstance(o, Exception)]
    losers = [o for o in outcomes if isinstance(o, Exception)]
    assert len(winners) == 1
    assert all(isinstance(o, UnableToBook) for o in losers), losers
    assert all(o.check.blocking[0].code == "slot_taken" for o in losers)
    assert Appointment.objects.filter(practitioner=dr_a).count() == 1


@pytest.mark.postgres
@pytest.mark.parametrize("attempt", range(3))
def test_one_patients_conflicting_procedures_at_once_one_wins(setup, attempt):
    clinic, dr_a, dr_b = setup
    patient = PatientFactory(clinic=clinic)

    outcomes = race(
        booking(patient, "botox", local(10), practitioner_id=dr_a.pk),
        booking(patient, "microneedling", local(12), practitioner_id=dr_b.pk),
    )

    assert sum(not isinstance(o, Exception) for o in outcomes) == 1
    [loser] = [o for o in outcomes if isinstance(o, Exception)]
    assert isinstance(loser, UnableToBook)
    assert loser.check.blocking[0].kind == "interval"
    assert Appointment.objects.filter(patient=patient).count() == 1


@pytest.mark.postgres
def test_the_database_refuses_overlapping_appointments_for_one_practitioner(setup):
    clinic, dr_a, _ = setup
    patient = PatientFactory(clinic=clinic)

    def create(start, end, status=AppointmentStatus.CONFIRMED):
        return Appointment.objects.create(
            clinic=clinic,
            patient=patient,
            practitioner=dr_a,
            procedure_id="botox",
            start_at=start,
            end_at=end,
            status=status,
        )

    create(local(10, 10), local(10, 11))
    create(local(10, 11), local(10, 12))  # touching is not overlapping
    create(local(10, 10, 30), local(10, 11), status=AppointmentStatus.CANCELLED)  # cancelled holds no slot
    with pytest.raises(IntegrityError), transaction.atomic():
        create(local(10, 10, 30), local(10, 11, 30))


def test_concurrent_writers_all_get_through(setup):
    """Eight bookings at once on distinct slots: all succeed, on SQLite too (no 'database is locked')."""
    clinic, dr_a, _ = setup
    patients = [PatientFactory(clinic=clinic) for _ in range(8)]

    outcomes = race(
        *(booking(p, "botox", local(10 + i // 4, 9 + i % 4), practitioner_id=dr_a.pk) for i, p in enumerate(patients))
    )

    assert [o for o in outcomes if isinstance(o, Exception)] == []
    assert Appointment.objects.count() == 8


# --- A race lost at the exclusion constraints (a writer that took none of the booking's locks) ------------------


def _uncommitted_elsewhere(appointment: Appointment):
    """Another connection inserts `appointment` and holds it uncommitted; commit it with `.commit()`.

    A writer that bypassed every check and lock, foreign keys included: with them, its commit would wait for the
    key-share locks on the patient and practitioner rows the booking holds, and PostgreSQL would end the pair as a
    deadlock (one of them aborted) before the constraint could decide; that is what a writer keeping to none of
    the locking gets. Without them the constraint is what stops the second of two overlapping rows."""
    import psycopg
    from django.db import connection
    from django.db.models.sql import InsertQuery

    query = InsertQuery(Appointment)
    query.insert_values(Appointment._meta.concrete_fields, [appointment])
    [(sql, params)] = query.get_compiler(connection=connection).as_sql()
    holder = psycopg.connect(**connection.get_connection_params())
    holder.execute("SET session_replication_role = replica")  # no foreign-key triggers (superuser, tests only)
    holder.execute(sql, params)
    return holder


@pytest.mark.postgres
@pytest.mark.parametrize("whose", ["practitioner", "patient"])
def test_a_race_lost_at_the_constraint_is_a_refusal_and_the_callers_transaction_goes_on(setup, whose):
    import threading

    from scheduler.availability import AvailabilityCode

    clinic, dr_a, dr_b = setup
    patient, other = PatientFactory(clinic=clinic), PatientFactory(clinic=clinic)
    # Dr A's slot taken by another patient, or this patient booked with Dr B, at the same time; not yet committed,
    # so the booking's checks do not see it and its insert meets it.
    rival = Appointment(
        clinic=clinic,
        patient=other if whose == "practitioner" else patient,
        practitioner=dr_a if whose == "practitioner" else dr_b,
        procedure_id="filler",
        start_at=local(10, 10),
        end_at=local(10, 10, 45),
        status=AppointmentStatus.CONFIRMED,
    )
    holder = _uncommitted_elsewhere(rival)
    committer = threading.Timer(1.0, holder.commit)
    committer.start()
    try:
        with transaction.atomic():  # the caller's transaction: a keyed API request's, say
            with pytest.raises(UnableToBook) as refused:
                booking(patient, "botox", local(10, 10), practitioner_id=dr_a.pk)()
            # Still usable: the refusal can be stored with the rest of the caller's work.
            assert Appointment.objects.filter(patient=patient, procedure_id="botox").count() == 0
    finally:
        committer.join()
        holder.close()
    expected = AvailabilityCode.SLOT_TAKEN if whose == "practitioner" else AvailabilityCode.PATIENT_BUSY
    assert [v.code for v in refused.value.check.blocking] == [expected]
    assert list(Appointment.objects.values_list("pk", flat=True)) == [rival.pk]


@pytest.mark.postgres
def test_a_failure_after_the_insert_rolls_back_the_callers_whole_transaction(setup, monkeypatch):
    from scheduler import booking as service

    clinic, dr_a, _ = setup
    patient = PatientFactory(clinic=clinic)

    def broken(*args, **kwargs):
        raise RuntimeError("the audit failed")

    monkeypatch.setattr(service, "record", broken)
    kept = PatientFactory.build(clinic=clinic)
    with transaction.atomic():
        kept.save()  # the caller's own work in the same transaction
        try:
            booking(patient, "botox", local(10, 10), practitioner_id=dr_a.pk)()
        except RuntimeError:
            pass  # a caller swallowing the error cannot commit half a booking: the block rolls back
    assert not Appointment.objects.exists()
    assert not type(kept).objects.filter(pk=kept.pk).exists()


@pytest.mark.postgres
def test_a_database_error_before_the_insert_marks_the_callers_transaction_for_rollback(setup):
    """Without a savepoint, PostgreSQL aborts the caller's transaction on any error in the booking's statements:
    Django is told, so a caller that swallows the error cannot COMMIT what PostgreSQL will silently roll back."""
    import psycopg
    from django.db import OperationalError, connection

    clinic, dr_a, _ = setup
    patient = PatientFactory(clinic=clinic)
    holder = psycopg.connect(**connection.get_connection_params())
    holder.execute("SELECT id FROM clinic_patient WHERE id = %s FOR UPDATE", [patient.pk])
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '200ms'")
            with pytest.raises(OperationalError):
                booking(patient, "botox", local(10, 10), practitioner_id=dr_a.pk)()
            assert transaction.get_rollback()
    finally:
        holder.rollback()
        holder.close()


def test_a_refusal_before_any_write_leaves_the_callers_transaction_as_it_was(setup):
    clinic, dr_a, _ = setup
    patient = PatientFactory(clinic=clinic)
    with transaction.atomic():
        with pytest.raises(UnableToBook):
            booking(patient, "botox", local(10, 7), practitioner_id=dr_a.pk)()  # 07:00: outside working hours
        assert not transaction.get_rollback()
        kept = PatientFactory(clinic=clinic)  # the caller's own work goes on and commits
    assert type(kept).objects.filter(pk=kept.pk).exists()


@pytest.mark.postgres
def test_an_insert_ignored_by_a_conflict_no_overlap_explains_is_an_error_not_a_refusal(setup):
    """`ON CONFLICT DO NOTHING` would quietly skip the row on any conflict; only an overlap is a lost race."""
    from scheduler.booking import _insert_new

    clinic, dr_a, dr_b = setup
    first = AppointmentFactory(
        clinic=clinic,
        patient=PatientFactory(clinic=clinic),
        practitioner=dr_a,
        procedure_id="botox",
        start_at=local(10, 10),
        end_at=local(10, 10, 30),
        status=AppointmentStatus.CONFIRMED,
    )
    same_id = Appointment(
        pk=first.pk,  # the only conflict: its primary key
        clinic=clinic,
        patient=PatientFactory(clinic=clinic),
        practitioner=dr_b,
        procedure_id="botox",
        start_at=local(11, 10),
        end_at=local(11, 10, 30),
        status=AppointmentStatus.CONFIRMED,
    )
    with pytest.raises(IntegrityError, match="no overlap explains it"), transaction.atomic():
        _insert_new(check=None, appointment=same_id)
    assert list(Appointment.objects.values_list("pk", "start_at")) == [(first.pk, first.start_at)]
