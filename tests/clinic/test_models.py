"""Model-level validation and database constraints of the clinic domain."""

from datetime import date, time

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from clinic.models import Clinic, MedicationCourse, Patient, WorkingHours
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory


@pytest.mark.parametrize("phone", ["+447911123456", "+12125550123"])
def test_valid_e164_phones_pass(db, phone):
    PatientFactory.build(clinic=ClinicFactory(), phone=phone).full_clean()


@pytest.mark.parametrize("phone", ["07700 900123", "+44 7700 900123", "+4412", "not a phone"])
def test_phones_must_be_valid_e164(db, phone):
    patient = PatientFactory.build(clinic=ClinicFactory(), phone=phone)

    with pytest.raises(ValidationError) as error:
        patient.full_clean()

    assert "phone" in error.value.message_dict


@pytest.mark.parametrize("channels", [["fax"], "email", ["email", "email"]])
def test_reminder_channels_are_a_list_of_known_channels(db, channels):
    patient = PatientFactory.build(clinic=ClinicFactory(), reminder_channels=channels)

    with pytest.raises(ValidationError) as error:
        patient.full_clean()

    assert "reminder_channels" in error.value.message_dict


def test_sms_reminders_need_a_phone(db):
    patient = PatientFactory.build(clinic=ClinicFactory(), phone="", reminder_channels=["sms"])

    with pytest.raises(ValidationError, match="SMS reminders need a phone number"):
        patient.full_clean()


def test_clinic_time_zone_must_be_iana(db):
    with pytest.raises(ValidationError, match="not an IANA time zone"):
        Clinic(code="x", name="X", timezone="Mars/Olympus").full_clean()
    assert Clinic(code="x", name="X", timezone="Europe/London").tz.key == "Europe/London"


def test_database_refuses_a_course_ending_before_it_starts(catalogue):
    patient = PatientFactory()

    with pytest.raises(IntegrityError), transaction.atomic():
        MedicationCourse.objects.create(
            patient=patient, drug_id="isotretinoin", started_on=date(2026, 3, 1), ended_on=date(2026, 2, 1)
        )


def test_database_refuses_working_hours_ending_before_they_start(catalogue):
    practitioner = PractitionerFactory(hours=[])

    with pytest.raises(IntegrityError), transaction.atomic():
        WorkingHours.objects.create(practitioner=practitioner, weekday=0, start_time=time(18), end_time=time(9))


def test_patients_belong_to_one_clinic(db):
    patient = PatientFactory()
    assert Patient.objects.get(pk=patient.pk).clinic == patient.clinic


@pytest.mark.parametrize("area", [None, "face"])
def test_database_refuses_the_same_condition_twice_for_one_area(catalogue, area):
    from clinic.models import PatientCondition

    patient = PatientFactory()
    PatientCondition.objects.create(patient=patient, condition_id="eczema", status="active", area_id=area)

    with pytest.raises(IntegrityError), transaction.atomic():
        PatientCondition.objects.create(patient=patient, condition_id="eczema", status="history", area_id=area)
    PatientCondition.objects.create(patient=patient, condition_id="eczema", status="active", area_id="hands")


@pytest.mark.parametrize(
    "zone, country", [("Europe/London", "GB"), ("America/New_York", "US"), ("Europe/Paris", "FR"), ("UTC", "")]
)
def test_a_clinics_country_defaults_to_its_time_zones(db, zone, country):
    assert ClinicFactory(timezone=zone).country == country


def test_a_clinics_country_can_be_set_and_is_validated(db):
    assert ClinicFactory(timezone="Europe/London", country="IE").country == "IE"
    with pytest.raises(ValidationError, match="not a country code"):
        ClinicFactory.build(code="x", timezone="Europe/London", country="UK").full_clean()
