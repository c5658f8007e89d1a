"""No bad input answers 500: every front-desk form, given odd values in every field, says what is wrong."""

from datetime import timedelta

import pytest

from clinic.models import MedicationCourse
from tests.frontdesk.conftest import at_london, book, url

pytestmark = pytest.mark.django_db

ODD = [
    "",
    " ",
    "x" * 5000,
    "\x00",
    "0000-00-00",
    "0001-01-01",
    "9999-12-31",
    "31/02/2026",
    "25:61",
    "-1",
    "2026-03-03T10:00:00+25:00",
    "2026-03-03T10:00:30+00:00",
    "2026-03-03T10:00:00-23:59",
    "☃",
    "None",
    "00000000-0000-0000-0000-000000000000",
    "'; drop table clinic_patient; --",
]


@pytest.fixture
def pages(clinic, patient, practitioner, frozen):
    appointment = book(patient, practitioner, "botox", at_london(2026, 3, 5, 10))
    course = MedicationCourse.objects.create(
        patient=patient, drug_id="isotretinoin", started_on=frozen.date() - timedelta(days=30)
    )
    return {
        ("get", url("schedule", clinic)): ["date", "view", "practitioner", "cancelled"],
        ("get", url("patients", clinic)): ["q"],
        ("get", url("book", clinic, patient)): ["procedure", "area", "practitioner", "date", "time", "start_at"],
        ("post", url("book_submit", clinic, patient)): [
            "procedure",
            "area",
            "practitioner",
            "date",
            "time",
            "start_at",
        ],
        ("get", url("reschedule", clinic, appointment)): ["date", "time", "practitioner", "start_at"],
        ("post", url("reschedule", clinic, appointment)): ["date", "time", "practitioner", "reason", "start_at"],
        ("post", url("patient_new", clinic)): [
            "first_name",
            "last_name",
            "date_of_birth",
            "phone",
            "email",
            "reminder_channels",
            "sms_consent",
        ],
        ("post", url("patient_edit", clinic, patient)): ["first_name", "last_name", "date_of_birth", "phone"],
        ("post", url("medication_add", clinic, patient)): [
            "course-drug",
            "course-started_on",
            "course-ended_on",
            "course-notes",
        ],
        ("post", url("medication_end", clinic, patient, course)): [f"end-{course.pk}-ended_on"],
        ("post", url("procedure_add", clinic, patient)): [
            "record-procedure",
            "record-performed_on",
            "record-performed_time",
            "record-area",
        ],
        ("post", url("cancel", clinic, appointment)): ["reason"],
        ("post", url("clear", clinic, appointment)): ["reason"],
    }


VALID = {
    "procedure": "botox",
    "date": "2026-03-04",
    "time": "11:00",
    "first_name": "Ada",
    "last_name": "L",
    "course-drug": "isotretinoin",
    "course-started_on": "2025-01-01",
    "record-procedure": "botox",
    "record-performed_on": "2026-02-01",
}


def test_odd_values_in_any_field_never_answer_500(clinical, pages):
    for (method, path), fields in pages.items():
        for field in fields:
            for value in ODD:
                data = {**{name: VALID.get(name, "") for name in fields}, field: value}
                response = getattr(clinical, method)(path, data)
                assert response.status_code < 500, (method, path, field, value)
