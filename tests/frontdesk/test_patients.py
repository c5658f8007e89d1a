"""Patient search, new patient and edit (errors next to their fields), and the timeline."""

from datetime import date

import pytest

from clinic.models import ConditionStatus, MedicationCourse, Patient, PatientCondition
from tests.factories import PatientFactory
from tests.frontdesk.conftest import at_london, book, url
from tests.frontdesk.html import field_error, squash, text_by_id

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "query", ["Bennett", "olivia ben", "+44 7911 123101", "123101", "olivia@example", "1985-06-18"]
)
def test_search_by_name_phone_email_or_birth_date(reception, clinic, patient, query):
    PatientFactory(
        clinic=clinic, first_name="Sam", last_name="Clarke", phone="+447911123555", date_of_birth=date(1990, 1, 1)
    )
    page = squash(reception.get(url("patients", clinic), {"q": query}))
    assert "1 result for" in page and "Bennett</strong>, Olivia" in page


def test_search_says_when_nobody_matches(reception, clinic, patient):
    page = squash(reception.get(url("patients", clinic), {"q": "Zebedee"}))
    assert "Nobody matches" in page


def test_new_patient_is_created_and_goes_on_to_the_history(reception, clinic):
    response = reception.post(
        url("patient_new", clinic),
        {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "date_of_birth": "1990-12-10",
            "phone": "+44 7911 123-777",
            "email": "ada@example.com",
            "reminder_channels": ["email", "sms"],
            "sms_consent": "on",
        },
    )
    patient = Patient.objects.get(last_name="Lovelace")
    assert response.status_code == 302 and response.url == url("patient_history", clinic, patient)
    assert patient.clinic == clinic and patient.phone == "+447911123777"
    assert patient.reminder_channels == ["email", "sms"] and patient.sms_consent


def test_missing_names_are_shown_next_to_their_fields(reception, clinic):
    response = reception.post(url("patient_new", clinic), {"first_name": "", "last_name": ""})
    assert response.status_code == 200
    assert field_error(response, "id_first_name") == "This field is required."
    assert field_error(response, "id_last_name") == "This field is required."
    assert 'aria-invalid="true"' in response.content.decode()
    assert not Patient.objects.exists()


def test_a_bad_phone_number_is_shown_next_to_the_phone_field(reception, clinic):
    response = reception.post(url("patient_new", clinic), {"first_name": "Ada", "last_name": "L", "phone": "12345"})
    assert "E.164" in field_error(response, "id_phone") or "international" in field_error(response, "id_phone")
    assert field_error(response, "id_first_name") == ""
    assert not Patient.objects.exists()


def test_a_birth_date_in_the_future_is_refused_next_to_it(reception, clinic, frozen):
    response = reception.post(
        url("patient_new", clinic), {"first_name": "A", "last_name": "B", "date_of_birth": "2030-01-01"}
    )
    assert field_error(response, "id_date_of_birth") == "The date of birth cannot be in the future."


def test_sms_reminders_need_a_phone(reception, clinic):
    response = reception.post(
        url("patient_new", clinic), {"first_name": "A", "last_name": "B", "reminder_channels": ["sms"]}
    )
    assert field_error(response, "id_reminder_channels") == "SMS reminders need a phone number."


def test_edit_patient_details(reception, clinic, patient):
    page = squash(reception.get(url("patient_edit", clinic, patient)))
    assert 'value="Olivia"' in page
    response = reception.post(
        url("patient_edit", clinic, patient),
        {
            "first_name": "Olivia",
            "last_name": "Bennett-Hart",
            "phone": "+447911123101",
            "email": "",
            "reminder_channels": [],
        },
    )
    assert response.status_code == 302
    patient.refresh_from_db()
    assert patient.last_name == "Bennett-Hart" and patient.email == ""


def test_timeline_says_when_each_procedure_is_possible_and_why(
    reception, clinic, patient, practitioner, botox_five_days_ago, frozen
):
    MedicationCourse.objects.create(patient=patient, drug_id="isotretinoin", started_on=date(2025, 6, 1))
    PatientCondition.objects.create(patient=patient, condition_id="eczema", status=ConditionStatus.HISTORY)
    booked = book(patient, practitioner, "filler", at_london(2026, 3, 20, 10))
    response = reception.get(url("patient", clinic, patient))
    page = squash(response)
    outlook = text_by_id(response.content, "outlook-heading")
    assert outlook == "When each treatment is possible"
    # Microneedling: the ongoing isotretinoin course leaves no date at all, and the reasons are named.
    assert "No date possible yet" in page
    assert "isotretinoin" in page.lower() and "still ongoing" in page
    assert "must be at least 2 weeks after Botulinum toxin injection (Botox)" in page
    assert "Needs clinician clearance" in page  # eczema history, relative
    assert "Possible now" in page  # Botox
    assert url("appointment", clinic, booked) in page
    assert "Ongoing" in page and "Eczema" in page and "History" in page
    assert "Done at this clinic" in page


def test_timeline_gives_the_earliest_date_when_one_exists(reception, clinic, patient, botox_five_days_ago, frozen):
    page = squash(reception.get(url("patient", clinic, patient)))
    # Botox on 25 Feb (local): microneedling from 11 March.
    assert "Not before <strong>Wed 11 Mar 2026</strong>" in page
    assert f"{url('book', clinic, patient)}?procedure=microneedling" in page


@pytest.mark.parametrize("born", ["1899-12-31", "0001-01-01"])
def test_a_birth_date_before_1900_is_refused_next_to_it(reception, clinic, patient, frozen, born):
    created = reception.post(url("patient_new", clinic), {"first_name": "A", "last_name": "B", "date_of_birth": born})
    edited = reception.post(
        url("patient_edit", clinic, patient), {"first_name": "Olivia", "last_name": "Bennett", "date_of_birth": born}
    )

    for response in (created, edited):
        assert response.status_code == 200
        assert field_error(response, "id_date_of_birth") == (
            "A date of birth before 1900 cannot be right; check the year."
        )
    assert not Patient.objects.filter(first_name="A").exists()
    patient.refresh_from_db()
    assert patient.date_of_birth == date(1985, 6, 18)


def test_a_birth_date_in_1900_is_accepted(reception, clinic, frozen):
    response = reception.post(
        url("patient_new", clinic), {"first_name": "A", "last_name": "B", "date_of_birth": "1900-01-01"}
    )
    assert response.status_code == 302
    assert Patient.objects.get(first_name="A").date_of_birth == date(1900, 1, 1)


def test_booked_and_cancelled_appointments_show_their_date_and_time(reception, clinic, patient, practitioner, frozen):
    book(patient, practitioner, "filler", at_london(2026, 3, 20, 10))
    book(patient, practitioner, "botox", at_london(2026, 7, 1, 14), status="cancelled")

    response = reception.get(url("patient", clinic, patient))

    booked = text_by_id(response.content, "booked-list")
    other = text_by_id(response.content, "other-appointments-list")
    assert "Fri 20 Mar 2026, 10:00–10:45" in booked
    assert "Wed 1 Jul 2026, 14:00–14:30" in other  # clinic time (BST)


# --- Phone numbers in the clinic's own format (issue #10, item 16) -----------------------------


def test_a_uk_receptionist_types_a_national_number_and_it_is_stored_in_e164(reception, clinic):
    response = reception.post(
        url("patient_new", clinic), {"first_name": "Ada", "last_name": "Lovelace", "phone": "07911 123458"}
    )

    assert response.status_code == 302
    assert Patient.objects.get(last_name="Lovelace").phone == "+447911123458"


def test_a_new_york_desk_reads_national_numbers_as_american(other_clinic, other_practitioner):
    from django.test import Client

    from clinic.models import StaffRole
    from tests.frontdesk.conftest import make_staff

    client = Client()
    client.force_login(make_staff(other_clinic, StaffRole.RECEPTIONIST, "reception-ny"))
    response = client.post(
        url("patient_new", other_clinic), {"first_name": "Nia", "last_name": "Cole", "phone": "(212) 555-0142"}
    )

    assert response.status_code == 302
    assert Patient.objects.get(last_name="Cole").phone == "+12125550142"


def test_the_phone_help_and_error_speak_the_clinics_format(reception, clinic):
    response = reception.post(url("patient_new", clinic), {"first_name": "Ada", "last_name": "L", "phone": "07911 12"})

    assert "e.g. 07400 123456" in text_by_id(response.content, "id_phone-help")
    assert field_error(response, "id_phone") == (
        "Enter a valid phone number, as dialled locally (e.g. 07400 123456) or in international "
        "form (e.g. +44 7400 123456)."
    )
    assert not Patient.objects.exists()


def test_numbers_show_in_national_format_at_the_desk(reception, clinic, patient):
    PatientFactory(clinic=clinic, first_name="Nora", last_name="Abroad", phone="+12125550199")

    detail = squash(reception.get(url("patient", clinic, patient)))
    found = squash(reception.get(url("patients", clinic), {"q": "0791"}))
    abroad = squash(reception.get(url("patients", clinic), {"q": "Abroad"}))
    edit = squash(reception.get(url("patient_edit", clinic, patient)))

    assert "07911 123101" in detail and "+447911123101" not in detail
    assert "07911 123101" in found
    assert "+1 212-555-0199" in abroad  # a foreign number keeps its country code
    assert 'value="07911 123101"' in edit


def test_saving_the_edit_form_unchanged_keeps_the_number(reception, clinic, patient):
    response = reception.post(
        url("patient_edit", clinic, patient),
        {"first_name": "Olivia", "last_name": "Bennett", "phone": "07911 123101", "email": "olivia@example.com"},
    )

    assert response.status_code == 302
    patient.refresh_from_db()
    assert patient.phone == "+447911123101"


@pytest.mark.parametrize(
    "query",
    [
        "07911 123101",
        "07911123101",
        "0044 7911 123101",
        "+44 (0)7911 123101",
        "7911 123 101",
        "18/06/1985",
        "18.06.1985",
        "1985-06-18",
    ],
)
def test_search_by_phone_in_any_format_or_birth_date_as_typed(reception, clinic, patient, query):
    PatientFactory(
        clinic=clinic, first_name="Sam", last_name="Clarke", phone="+447911123555", date_of_birth=date(1990, 1, 1)
    )

    page = squash(reception.get(url("patients", clinic), {"q": query}))

    assert "1 result for" in page and "Bennett</strong>, Olivia" in page


def test_a_bad_phone_is_shown_with_the_other_missing_fields(reception, clinic):
    response = reception.post(url("patient_new", clinic), {"first_name": "Ada", "last_name": "", "phone": "12345"})

    assert field_error(response, "id_last_name") == "This field is required."
    assert "international form" in field_error(response, "id_phone")
