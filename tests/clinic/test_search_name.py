"""Names as people type them: the search finds "José Núñez" typed "jose nunez" and "O’Brien" typed "O'Brien", and a
date of birth typed with a two-digit year (18/06/85).

Each patient keeps their name without accents or apostrophes (`Patient.search_name`, from
`core.text_match.normalise_name`, the duplicate check's reading of a name); every save keeps it, a save of named
fields included, and migration clinic 0022 fills it for the records already there. The paths past `Patient.save`
keep it too: `bulk_create` and `bulk_update` write it, loaddata's raw saves make it, and a queryset `update` of a
name, which SQL cannot make plain, is refused.
"""

import json
import uuid
from datetime import date

import pytest
import time_machine
from django.core.management import call_command
from django.core.serializers.json import DjangoJSONEncoder

from clinic.models import Patient
from clinic.selectors import patient_search, typed_date
from tests.factories import ClinicFactory, PatientFactory
from tests.helpers import _leaves, _migrate

pytestmark = pytest.mark.django_db


def found(query: str, clinic) -> set:
    patients = Patient.objects.filter(clinic_id=clinic.pk)
    return set(patient_search(patients, query, country="GB").values_list("pk", flat=True))


@pytest.mark.parametrize(
    "query",
    ["jose nunez", "JOSE NÚÑEZ", "Nunez", "núñez", "jose-maria", "Jose Maria", "garcía", "Garcia-Nunez"],
)
def test_a_name_is_found_whatever_its_accents_case_or_hyphens(query):
    clinic = ClinicFactory(timezone="Europe/London")
    jose = PatientFactory(clinic=clinic, first_name="José-María", last_name="García Núñez", email="jm@example.com")
    PatientFactory(clinic=clinic, first_name="Josephine", last_name="Nunn", email="jn@example.com")

    assert found(query, clinic) == {jose.pk}


@pytest.mark.parametrize("typed", ["O'Brien", "O\u2019Brien", "O\u2018Brien", "O\u02bcBrien", "obrien"])
@pytest.mark.parametrize("stored", ["O'Brien", "O\u2019Brien"])
def test_any_apostrophe_finds_a_name_written_with_any_other(typed, stored):
    clinic = ClinicFactory(timezone="Europe/London")
    siobhan = PatientFactory(clinic=clinic, first_name="Siobhan", last_name=stored)
    PatientFactory(clinic=clinic, first_name="Brian", last_name="Obi")

    assert found(typed, clinic) == {siobhan.pk}


@pytest.mark.parametrize("query", ["'", "-", "\u2019 -"])
def test_a_word_of_only_apostrophes_or_dashes_finds_no_one_by_it(query):
    """Such a word is nothing once made plain: it must not match every name (a LIKE '%%')."""
    clinic = ClinicFactory(timezone="Europe/London")
    PatientFactory(clinic=clinic, first_name="Ada", last_name="Lovelace")

    assert found(query, clinic) == set()


def test_a_renamed_patient_is_found_by_the_new_name_only_even_when_saved_by_named_fields():
    clinic = ClinicFactory(timezone="Europe/London")
    patient = PatientFactory(clinic=clinic, first_name="Zoe", last_name="Smith")
    patient.last_name = "Ødegård"
    patient.save(update_fields=["last_name"])

    assert Patient.objects.get(pk=patient.pk).search_name == "zoe odegard | zoeodegard | odegardzoe"
    assert found("odegard", clinic) == {patient.pk}
    assert found("smith", clinic) == set()


@time_machine.travel("2026-12-06 12:00Z", tick=False)
@pytest.mark.parametrize(
    "typed, country, expected",
    [
        ("18/06/85", "GB", date(1985, 6, 18)),
        ("18.06.85", "GB", date(1985, 6, 18)),
        ("06/18/85", "US", date(1985, 6, 18)),
        ("06/12/26", "GB", date(2026, 12, 6)),  # today: a baby born today
        ("07/12/26", "GB", date(1926, 12, 7)),  # tomorrow is no birthday yet: a century ago
        ("01/01/00", "GB", date(2000, 1, 1)),
        ("29/02/24", "GB", date(2024, 2, 29)),
        ("29/02/25", "GB", None),  # no 29 February in 2025
        ("18/06/185", "GB", None),  # three digits are no year
    ],
)
def test_a_two_digit_year_is_the_latest_that_is_not_after_today(typed, country, expected):
    assert typed_date(typed, country=country) == expected


@time_machine.travel("2026-12-06 12:00Z", tick=False)
def test_a_birth_date_with_a_two_digit_year_finds_the_patient():
    clinic = ClinicFactory(timezone="Europe/London")
    olivia = PatientFactory(clinic=clinic, first_name="Olivia", date_of_birth=date(1985, 6, 18))
    PatientFactory(clinic=clinic, first_name="Elder", date_of_birth=date(1885, 6, 18))  # the same day, a century before

    assert found("18/06/85", clinic) == {olivia.pk}
    assert found("Olivia 18/06/85", clinic) == {olivia.pk}


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_the_plain_name_of_every_record_already_there():
    old = _migrate([("clinic", "0021_working_hours_end_message")])
    clinic = old.get_model("clinic", "Clinic").objects.create(
        code="before",
        name="Before",
        timezone="Europe/London",
        organisation=old.get_model("clinic", "Organisation").objects.create(code="before", name="Before"),
    )
    OldPatient = old.get_model("clinic", "Patient")
    jose = OldPatient.objects.create(
        clinic=clinic, organisation_id=clinic.organisation_id, first_name="José", last_name="Núñez"
    )

    _migrate(_leaves())

    assert Patient.objects.get(pk=jose.pk).search_name == "jose nunez | josenunez | nunezjose"
    assert found("jose nunez", clinic) == {jose.pk}


@time_machine.travel("2026-12-06 12:00Z", tick=False)
@pytest.mark.parametrize("query", ["06.12.34", "06 12 34"])
def test_digits_in_pairs_that_read_as_a_date_still_find_the_number_they_begin(query):
    """A French mobile is written 06.12.34.56.78: its first three pairs are also 6 December 1934. Both are asked."""
    clinic = ClinicFactory(timezone="Europe/Paris", country="FR")
    number = PatientFactory(clinic=clinic, first_name="Chloe", phone="+33612345678", date_of_birth=date(1990, 1, 1))
    born = PatientFactory(clinic=clinic, first_name="Louis", phone="+33699999999", date_of_birth=date(1934, 12, 6))

    patients = Patient.objects.filter(clinic_id=clinic.pk)
    found = set(patient_search(patients, query, country="FR").values_list("pk", flat=True))

    assert found == ({number.pk, born.pk} if "." in query else {number.pk})


def test_a_name_made_plain_longer_than_typed_is_kept_whole():
    clinic = ClinicFactory(timezone="Europe/London")
    patient = PatientFactory(clinic=clinic, first_name="Æ" * 100, last_name="Straße" * 16)

    assert Patient.objects.get(pk=patient.pk).search_name.startswith(f"{'ae' * 100} {'strasse' * 16} | ")


def test_the_plain_name_is_no_part_of_a_records_version():
    """Kept from the names by every save: a version taken before it was filled (an If-Match sent across the deploy
    that added it) still holds."""
    from clinic.services import record_version

    patient = PatientFactory(clinic=ClinicFactory(timezone="Europe/London"), first_name="José")
    before = record_version(patient)
    Patient.objects.filter(pk=patient.pk).update(search_name="")

    assert record_version(Patient.objects.get(pk=patient.pk)) == before


@pytest.mark.parametrize(
    "first, last, query",
    [
        ("Mary-Jane", "Smith", "maryjane"),
        ("Aoife", "Ó Briain", "obriain"),
        ("Hans", "Müller", "mueller"),
        ("Hans", "Mueller", "Müller"),
        ("小明", "王", "王小明"),
    ],
)
def test_a_name_is_found_joined_family_name_first_or_with_its_umlauts_spelt_out(first, last, query):
    clinic = ClinicFactory(timezone="Europe/London")
    found_one = PatientFactory(clinic=clinic, first_name=first, last_name=last)
    PatientFactory(clinic=clinic, first_name="Other", last_name="Person")

    assert found(query, clinic) == {found_one.pk}


def test_a_kana_voicing_mark_is_a_letter_not_an_accent():
    clinic = ClinicFactory(timezone="Asia/Tokyo")
    dan = PatientFactory(clinic=clinic, first_name="ダン", last_name="ヤマダ")
    tan = PatientFactory(clinic=clinic, first_name="タン", last_name="ヤマダ")

    assert found("ダン", clinic) == {dan.pk} and found("タン", clinic) == {tan.pk}


@pytest.mark.parametrize("query", [".", "@", "- .", "'"])
def test_a_query_of_no_letter_or_digit_finds_no_one(query):
    clinic = ClinicFactory(timezone="Europe/London")
    PatientFactory(clinic=clinic, first_name="Ann", email="ann.lee@example.com")

    assert found(query, clinic) == set()


# --- The paths past Patient.save: bulk writes and fixtures keep the search name too -------------------------------


def test_records_made_in_bulk_are_found_by_their_names_as_typed():
    clinic = ClinicFactory(timezone="Europe/London")
    Patient.objects.bulk_create(
        [
            Patient(clinic=clinic, organisation_id=clinic.organisation_id, first_name="José", last_name="Núñez"),
            Patient(clinic=clinic, organisation_id=clinic.organisation_id, first_name="Mary-Jane", last_name="Ng"),
        ]
    )

    assert found("jose nunez", clinic) == set(Patient.objects.filter(last_name="Núñez").values_list("pk", flat=True))
    assert found("maryjane", clinic) == set(Patient.objects.filter(last_name="Ng").values_list("pk", flat=True))


def test_names_changed_in_bulk_are_found_by_the_new_name_only():
    clinic = ClinicFactory(timezone="Europe/London")
    patient = PatientFactory(clinic=clinic, first_name="Olivia", last_name="Bennett")
    patient.last_name = "Núñez"

    Patient.objects.bulk_update([patient], ["last_name"])

    assert found("nunez", clinic) == {patient.pk}
    assert found("bennett", clinic) == set()


def test_a_name_changed_by_a_queryset_update_is_refused_and_nothing_changes():
    clinic = ClinicFactory(timezone="Europe/London")
    patient = PatientFactory(clinic=clinic, first_name="Olivia", last_name="Bennett")

    with pytest.raises(TypeError, match="search_name"):
        Patient.objects.filter(pk=patient.pk).update(last_name="Núñez")
    Patient.objects.filter(pk=patient.pk).update(sms_consent=True)  # any other field, as before

    patient.refresh_from_db()
    assert (patient.last_name, patient.sms_consent) == ("Bennett", True)
    assert found("bennett", clinic) == {patient.pk}


def test_records_loaded_from_a_fixture_are_found_by_their_names_as_typed(tmp_path):
    clinic = ClinicFactory(timezone="Europe/London")
    fixture = tmp_path / "patients.json"
    fixture.write_text(
        json.dumps(
            [
                {
                    "model": "clinic.patient",
                    "pk": "3f1f6b1e-8d4a-4c55-9a7e-0a1b2c3d4e5f",
                    "fields": {
                        "organisation": clinic.organisation_id,
                        "clinic": clinic.pk,
                        "first_name": "Zoë",
                        "last_name": "O’Brien",
                        "created_at": "2026-12-01T09:00:00Z",
                        "updated_at": "2026-12-01T09:00:00Z",
                    },
                }
            ],
            cls=DjangoJSONEncoder,
        )
    )

    call_command("loaddata", str(fixture), verbosity=0)

    assert found("zoe obrien", clinic) == {uuid.UUID("3f1f6b1e-8d4a-4c55-9a7e-0a1b2c3d4e5f")}
