"""The front desk: a new patient who looks like a record we have; merging a duplicate; a merged record's page."""

import pytest

from clinic.models import Patient, PatientMerge
from tests.factories import PatientConditionFactory, PatientFactory
from tests.frontdesk.conftest import url
from tests.frontdesk.html import squash

pytestmark = pytest.mark.django_db

NEW_OLIVIA = {"first_name": "olívia", "last_name": "Benett", "date_of_birth": "1985-06-18", "phone": "07911 123999"}


def test_a_likely_duplicate_is_shown_with_a_link_and_registering_anyway_is_one_click(reception, clinic, patient):
    response = reception.post(url("patient_new", clinic), NEW_OLIVIA)
    assert response.status_code == 409
    page = squash(response)
    assert "This may be someone we already have" in page
    assert url("patient", clinic, patient) in response.content.decode()
    assert "same date of birth and a similar name" in page
    assert "Register as a new patient anyway" in page and 'name="confirm_new" value="on"' in page
    assert Patient.objects.count() == 1

    anyway = reception.post(url("patient_new", clinic), {**NEW_OLIVIA, "confirm_new": "on"})
    assert anyway.status_code == 302
    assert Patient.objects.filter(last_name="Benett").exists()


def test_a_clinician_merges_a_duplicate_deciding_the_intake_and_the_old_page_redirects(clinical, clinic, patient):
    duplicate = PatientFactory(clinic=clinic, first_name="Olivia", last_name="Benett", phone="+447911123101")
    PatientConditionFactory(patient=patient, condition_id="pregnancy", status="history")
    PatientConditionFactory(patient=duplicate, condition_id="pregnancy", status="active")
    form = clinical.get(url("patient_merge", clinic, duplicate))
    assert form.status_code == 200 and f'value="{patient.pk}"' in form.content.decode()  # offered: same phone

    refused = clinical.post(url("patient_merge", clinic, duplicate), {"into": str(patient.pk)})
    assert refused.status_code == 409
    assert 'name="intake-pregnancy-"' in refused.content.decode()

    merged = clinical.post(
        url("patient_merge", clinic, duplicate), {"into": str(patient.pk), "intake-pregnancy-": "active"}
    )
    assert merged.status_code == 302 and merged.url == url("patient", clinic, patient)
    assert PatientMerge.objects.get().actor_label == "clinician (front desk)"
    assert patient.conditions.get().status == "active"

    old_page = clinical.get(url("patient", clinic, duplicate))
    assert old_page.status_code == 302 and old_page.url == url("patient", clinic, patient)


def test_a_receptionist_may_not_merge(reception, clinic, patient):
    duplicate = PatientFactory(clinic=clinic, phone="+447911123101")
    response = reception.post(url("patient_merge", clinic, duplicate), {"into": str(patient.pk)})
    assert response.status_code == 403
    assert Patient.objects.get(pk=duplicate.pk).merged_into is None


@pytest.mark.parametrize("into", ["", "not-an-id", "00000000-0000-0000-0000-000000000000"])
def test_a_merge_without_a_record_to_keep_is_refused_on_the_page(clinical, clinic, patient, into):
    response = clinical.post(url("patient_merge", clinic, patient), {"into": into})
    assert response.status_code == 400
    assert "Choose the record to keep." in squash(response)
    assert Patient.objects.get(pk=patient.pk).merged_into is None


def test_registering_from_the_calendar_shows_the_likely_duplicates_too(reception, clinic, patient, frozen):
    response = reception.post(url("calendar_register", clinic), NEW_OLIVIA, HTTP_HX_REQUEST="true")
    page = squash(response)
    assert "This may be someone we already have" in page and url("patient", clinic, patient) in page
    assert 'name="confirm_new" value="on"' in page
    assert Patient.objects.count() == 1
    anyway = reception.post(
        url("calendar_register", clinic), {**NEW_OLIVIA, "confirm_new": "on"}, HTTP_HX_REQUEST="true"
    )
    assert "added." in squash(anyway) and Patient.objects.count() == 2
