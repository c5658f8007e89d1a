"""The patient lock every booking and record change takes holds the patient's row and nothing else: the home
clinic's row stays free, so bookings of other patients of that clinic never queue behind it (PostgreSQL); an id that names nobody is a missing patient."""

from uuid import uuid4

import pytest
from django.db import OperationalError, connection, transaction

from clinic.models import Patient
from clinic.services import lock_live_patient
from tests.factories import ClinicFactory, PatientFactory
from tests.races import held_in_another_connection


def _locked_within_200ms(sql: str, params: list) -> bool:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '200ms'")
            cursor.execute(sql, params)
        return True
    except OperationalError:  # lock_timeout: somebody holds it
        return False


LOCK = "SELECT id FROM {} WHERE id = %s FOR UPDATE"


@pytest.mark.postgres
def test_a_patients_lock_leaves_the_clinic_and_its_other_patients_free(transactional_db, catalogue):
    clinic = ClinicFactory(code="locks")
    held, other = PatientFactory(clinic=clinic), PatientFactory(clinic=clinic)

    def take():
        patient = lock_live_patient(held.pk)
        assert patient.clinic.code == "locks"  # read with its clinic, as callers expect

    with held_in_another_connection(take):
        assert _locked_within_200ms(LOCK.format("clinic_clinic"), [clinic.pk])
        assert _locked_within_200ms(LOCK.format("clinic_patient"), [other.pk])
        assert not _locked_within_200ms(LOCK.format("clinic_patient"), [held.pk])


@pytest.mark.django_db
def test_the_lock_of_an_unknown_or_malformed_patient_id_is_a_missing_patient(catalogue):
    for nobody in (uuid4(), "not-an-id", None):
        with pytest.raises(Patient.DoesNotExist), transaction.atomic():
            lock_live_patient(nobody)


@pytest.mark.postgres
def test_a_named_practitioners_booking_lock_leaves_their_clinic_free(transactional_db, catalogue):
    """The compiled statement that takes a named practitioner for a booking (scheduler.booking._candidates, the
    caller's clinics given by id) locks the practitioner's row only."""
    from clinic.models import ProcedureType
    from scheduler.booking import _candidates
    from tests.factories import PractitionerFactory

    clinic = ClinicFactory(code="locks-practitioner")
    patient = PatientFactory(clinic=clinic)
    held, other = PractitionerFactory(clinic=clinic), PractitionerFactory(clinic=clinic)

    def take():
        botox = ProcedureType.objects.get(code="botox")
        found = _candidates(patient, botox, str(held.pk), lock=True, within=[clinic.pk])
        assert [p.pk for p in found] == [held.pk]

    with held_in_another_connection(take):
        assert _locked_within_200ms(LOCK.format("clinic_clinic"), [clinic.pk])
        assert _locked_within_200ms(LOCK.format("clinic_practitioner"), [other.pk])
        assert not _locked_within_200ms(LOCK.format("clinic_practitioner"), [held.pk])
