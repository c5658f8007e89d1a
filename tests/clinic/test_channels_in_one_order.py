"""Reminder channels are stored in one order (e-mail, then SMS) however they were sent: at registration as at an
update (clinic.services.channels_in_order), and migration clinic 0030 puts the records registered before in it, so
naming the channels as stored is no change (no new ETag, no 412 under a stale If-Match). Runs on either database."""

from datetime import date

import pytest

from clinic.models import Patient
from clinic.services import patient_create, patient_update, record_version
from tests.factories import ClinicFactory
from tests.helpers import _leaves, _migrate


@pytest.mark.django_db
def test_a_registration_stores_its_channels_in_the_order_an_update_keeps(catalogue):
    clinic = ClinicFactory(code="order")
    patient = patient_create(
        clinic=clinic,
        today=date(2026, 12, 7),
        confirm_new=True,
        first_name="Ann",
        last_name="Lee",
        email="ann@example.com",
        phone="+447911123456",
        sms_consent=True,
        reminder_channels=["sms", "email"],
    )
    assert Patient.objects.get(pk=patient.pk).reminder_channels == ["email", "sms"]
    version = record_version(Patient.objects.get(pk=patient.pk))
    same = patient_update(patient=patient, today=date(2026, 12, 7), reminder_channels=["sms", "email"])
    assert record_version(Patient.objects.get(pk=same.pk)) == version


@pytest.mark.django_db(transaction=True)
def test_records_registered_before_are_put_in_that_order_and_others_left_alone():
    old = _migrate([("clinic", "0029_patient_clinical_record_protected")])
    Organisation = old.get_model("clinic", "Organisation")
    clinic = old.get_model("clinic", "Clinic").objects.create(
        code="before", name="Before", timezone="Europe/London", organisation=Organisation.objects.create(code="b")
    )
    OldPatient = old.get_model("clinic", "Patient")
    made = {
        channels and "+".join(channels) or "none": OldPatient.objects.create(
            clinic=clinic,
            organisation_id=clinic.organisation_id,
            first_name="P",
            last_name="Q",
            reminder_channels=channels,
        )
        for channels in (["sms", "email"], ["email", "sms"], ["sms"], [])
    }
    untouched = OldPatient.objects.get(pk=made["email+sms"].pk).updated_at

    _migrate(_leaves())

    stored = {key: Patient.objects.get(pk=patient.pk).reminder_channels for key, patient in made.items()}
    assert stored == {"sms+email": ["email", "sms"], "email+sms": ["email", "sms"], "sms": ["sms"], "none": []}
    assert Patient.objects.get(pk=made["email+sms"].pk).updated_at == untouched
