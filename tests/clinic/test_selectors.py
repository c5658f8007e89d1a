"""Patient search: name, e-mail, phone in any format, date of birth as typed where the clinic is."""

from datetime import date

import pytest

from clinic.models import Patient
from clinic.selectors import patient_search, typed_date
from tests.factories import ClinicFactory, PatientFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "typed, country, expected",
    [
        ("1985-06-18", "GB", date(1985, 6, 18)),
        ("18/06/1985", "GB", date(1985, 6, 18)),
        ("18.6.1985", "DE", date(1985, 6, 18)),
        ("06/18/1985", "US", date(1985, 6, 18)),
        ("06/07/1985", "GB", date(1985, 7, 6)),
        ("06/07/1985", "US", date(1985, 6, 7)),
        ("18/06/1985", "US", None),  # no 18th month
        ("19850618", "GB", None),  # eight digits are part of a phone number
        ("0000-01-01", "GB", None),
        ("Bennett", "GB", None),
    ],
)
def test_a_date_as_typed(typed, country, expected):
    assert typed_date(typed, country=country) == expected


@pytest.mark.parametrize(
    "query",
    ["07911 123101", "0791 1123", "+44 7911 123101", "0044 7911 123101", "+44 (0)7911 123101", "123101", "7911123101"],
)
def test_a_phone_in_any_format_finds_the_patient(query):
    clinic = ClinicFactory(timezone="Europe/London")
    olivia = PatientFactory(clinic=clinic, phone="+447911123101")
    PatientFactory(clinic=clinic, phone="+447922123999")

    assert list(patient_search(Patient.objects.all(), query, country="GB")) == [olivia]


def test_without_a_country_national_numbers_match_only_their_digits():
    PatientFactory(clinic=ClinicFactory(), phone="+447911123101")

    assert not patient_search(Patient.objects.all(), "07911 123101").exists()
    assert patient_search(Patient.objects.all(), "+44 7911 123101").exists()
