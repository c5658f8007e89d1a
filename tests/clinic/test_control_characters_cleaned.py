"""Migration clinic 0027 makes fit the control characters stored before they were refused (core.plain_text): a run
of them in a name becomes a space, an address and a cancel reason keep only tab, CR and LF, a patient's search name
is made again with the name; a record without one is not written. Runs on either database."""

import pytest

from clinic.models import Appointment, Clinic, Patient, Practitioner, ProcedureType
from tests.helpers import _leaves, _migrate

pytestmark = pytest.mark.django_db(transaction=True)


def test_values_stored_before_the_refusal_are_made_fit_and_others_left_as_they_were():
    old = _migrate([("clinic", "0024_patient_search_trigram_indexes")])
    Organisation = old.get_model("clinic", "Organisation")
    clinic = old.get_model("clinic", "Clinic").objects.create(
        code="before",
        name="Glow\r\nBcc: x@evil.example",
        sender_name="Glow\x07",
        timezone="Europe/London",
        address="1 High St\x0b\nLondon\x1b[2J",
        organisation=Organisation.objects.create(code="before", name="Before\x1f"),
    )
    OldPatient = old.get_model("clinic", "Patient")
    ann = OldPatient.objects.create(
        clinic=clinic, organisation_id=clinic.organisation_id, first_name="Ann\x07\x1b", last_name="Lee\nSmith"
    )
    untouched = OldPatient.objects.create(
        clinic=clinic, organisation_id=clinic.organisation_id, first_name="Bea", last_name="Ng"
    )
    before = OldPatient.objects.get(pk=untouched.pk).updated_at
    practitioner = old.get_model("clinic", "Practitioner").objects.create(clinic=clinic, name="Dr Ada\r\nLovelace")
    procedure = old.get_model("clinic", "ProcedureType").objects.create(code="peel", name="Peel\x07", short_name="")

    _migrate(_leaves())

    fresh = Clinic.objects.get(pk=clinic.pk)
    assert (fresh.name, fresh.sender_name) == ("Glow Bcc: x@evil.example", "Glow")
    assert fresh.address == "1 High St\nLondon[2J"
    assert fresh.organisation.name == "Before"
    patient = Patient.objects.get(pk=ann.pk)
    assert (patient.first_name, patient.last_name) == ("Ann", "Lee Smith")
    assert "lee smith" in patient.search_name
    assert Patient.objects.get(pk=untouched.pk).updated_at == before
    assert Practitioner.objects.get(pk=practitioner.pk).name == "Dr Ada Lovelace"
    assert ProcedureType.objects.get(pk=procedure.pk).name == "Peel"
    assert not Appointment.objects.exists()
