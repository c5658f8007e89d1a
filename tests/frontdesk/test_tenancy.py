"""Each user sees only their clinic(s): anything of another clinic is a 404, as if it did not exist."""

import uuid
from datetime import timedelta

import pytest

from tests.frontdesk.conftest import book, url

pytestmark = pytest.mark.django_db


def test_another_clinics_pages_are_not_found(reception, other_clinic):
    for name in ("today", "schedule", "patients", "patient_new"):
        assert reception.get(url(name, other_clinic)).status_code == 404


def test_another_clinics_patient_is_not_found_under_ones_own_clinic(reception, clinic, other_patient):
    for name in ("patient", "patient_edit", "patient_history", "book"):
        response = reception.get(url(name, clinic, other_patient))
        assert response.status_code == 404, name
        assert "Nora" not in response.content.decode()
    for name in ("medication_add", "procedure_add", "book_submit"):
        assert reception.post(url(name, clinic, other_patient), {}).status_code == 404, name


def test_another_clinics_appointment_is_not_found(
    reception, clinical, clinic, other_patient, other_practitioner, frozen
):
    appointment = book(other_patient, other_practitioner, "botox", frozen - timedelta(hours=1))
    assert reception.get(url("appointment", clinic, appointment)).status_code == 404
    assert reception.get(url("reschedule", clinic, appointment)).status_code == 404
    for name in ("cancel", "clear", "complete", "no_show"):
        assert clinical.post(url(name, clinic, appointment), {"reason": "x"}).status_code == 404, name
    appointment.refresh_from_db()
    assert appointment.status == "confirmed"


def test_a_made_up_id_is_not_found(reception, clinic):
    assert reception.get(url("patient", clinic, uuid.uuid4())).status_code == 404
    assert reception.get(url("appointment", clinic, uuid.uuid4())).status_code == 404


def test_search_finds_only_this_clinics_patients(reception, clinic, patient, other_patient):
    page = reception.get(url("patients", clinic), {"q": "example.com"}).content.decode()
    assert "Bennett" in page and "Jones" not in page


def test_writes_to_another_clinics_records_are_not_found_and_change_nothing(
    reception, clinic, patient, other_patient, other_practitioner, frozen
):
    from clinic.models import MedicationCourse

    appointment = book(other_patient, other_practitioner, "botox", frozen + timedelta(days=2))
    theirs = MedicationCourse.objects.create(
        patient=other_patient, drug_id="isotretinoin", started_on=frozen.date() - timedelta(days=90)
    )

    moved = reception.post(url("reschedule", clinic, appointment), {"date": "2026-03-10", "time": "10:00"})
    edited = reception.post(url("patient_edit", clinic, other_patient), {"first_name": "Changed"})
    history = reception.post(url("patient_history", clinic, other_patient), {})
    # Another patient's course under one's own patient's URL.
    ended = reception.post(url("medication_end", clinic, patient, theirs), {"ended_on": "2026-03-01"})

    assert [moved.status_code, edited.status_code, history.status_code, ended.status_code] == [404] * 4
    appointment.refresh_from_db()
    other_patient.refresh_from_db()
    theirs.refresh_from_db()
    assert appointment.start_at == frozen + timedelta(days=2)
    assert other_patient.first_name != "Changed"
    assert theirs.ended_on is None
