"""The duplicate matcher (clinic/duplicates.py) and the selector that reads its candidates."""

from datetime import date

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given, settings
from hypothesis import strategies as st

from clinic.duplicates import Identity, MatchReason, match_reasons, names_similar, normalise_name
from clinic.models import Organisation
from clinic.selectors import DUPLICATE_CANDIDATES_SHOWN, duplicate_candidates
from tests.factories import ClinicFactory, PatientFactory

BORN = date(1985, 6, 18)


@pytest.mark.parametrize(
    "typed, normal",
    [
        ("  José-María  Núñez ", "jose maria nunez"),
        ("O’Neil", "oneil"),
        ("ZOË", "zoe"),
        ("Anne–Sophie", "anne sophie"),
        ("Straße", "strasse"),  # casefold, not lower
    ],
)
def test_names_are_normalised_for_case_accents_spacing_and_hyphens(typed, normal):
    assert normalise_name(typed) == normal


@pytest.mark.parametrize(
    "first, last",
    [
        ("Olivia", "Bennett"),
        ("olivia", "BENNETT"),
        ("Olivia", "Benett"),  # one typo
        ("Olivai", "Bennett"),  # a transposition
        ("Bennett", "Olivia"),  # swapped
        (" Olívia ", "Ben-nett"),  # accent, spacing, hyphen
    ],
)
def test_similar_names_with_the_same_birth_date_match(first, last):
    existing = Identity("Olivia", "Bennett", BORN)
    assert match_reasons(Identity(first, last, BORN), existing) == [MatchReason.BIRTH_DATE_AND_NAME]


def test_a_first_name_that_begins_the_other_matches_with_the_same_surname():
    assert names_similar(Identity("Jo", "Smith"), Identity("Joanna", "Smith"))
    assert not names_similar(Identity("Jo", "Smith"), Identity("Joanna", "Brown"))


@pytest.mark.parametrize("first, last", [("Oliver", "Benson"), ("Ada", "Lovelace"), ("Olive", "Bennet")])
def test_other_names_do_not_match_even_born_the_same_day(first, last):
    assert match_reasons(Identity(first, last, BORN), Identity("Olivia", "Bennett", BORN)) == []


def test_a_similar_name_born_another_day_is_not_a_match():
    assert match_reasons(Identity("Olivia", "Bennett", date(1985, 6, 19)), Identity("Olivia", "Bennett", BORN)) == []


def test_no_birth_date_on_either_side_never_matches_by_name():
    assert match_reasons(Identity("Olivia", "Bennett"), Identity("Olivia", "Bennett")) == []


def test_the_same_phone_or_email_matches_whatever_the_name():
    new = Identity("Sam", "Clarke", phone="+447911123101", email="Olivia@Example.com ")
    existing = Identity("Olivia", "Bennett", BORN, phone="+447911123101", email="olivia@example.com")
    assert match_reasons(new, existing) == [MatchReason.PHONE, MatchReason.EMAIL]


def test_empty_contact_details_are_not_a_match():
    assert match_reasons(Identity("A", "B", phone="", email=" "), Identity("C", "D", phone="", email="")) == []


_names = st.text(alphabet=st.characters(categories=["L", "Zs", "Pd"]), max_size=20)
_identities = st.builds(
    Identity,
    first_name=_names,
    last_name=_names,
    date_of_birth=st.one_of(st.none(), st.sampled_from([BORN, date(1990, 1, 1)])),
    phone=st.sampled_from(["", "+447911123101", "+447911123102"]),
    email=st.sampled_from(["", "a@example.com", "A@EXAMPLE.COM", "b@example.com"]),
)


@given(_identities, _identities)
@settings(max_examples=300, deadline=None)
def test_matching_is_symmetric(a, b):
    assert sorted(match_reasons(a, b)) == sorted(match_reasons(b, a))


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12), st.data())
@settings(max_examples=200, deadline=None)
def test_matching_ignores_case_and_accents(name, data):
    accents = {"a": "á", "e": "é", "i": "ï", "o": "ô", "u": "ü", "n": "ñ", "c": "ç"}
    variant = "".join(
        (accents.get(ch, ch) if data.draw(st.booleans()) else ch).upper() if data.draw(st.booleans()) else ch
        for ch in name
    )
    assert normalise_name(variant) == name
    existing = Identity(name, "Bennett", BORN)
    assert match_reasons(Identity(variant, "BENNETT", BORN), existing) == [MatchReason.BIRTH_DATE_AND_NAME]


@given(_identities)
@settings(max_examples=200, deadline=None)
def test_a_record_with_a_birth_date_and_a_name_matches_itself(a):
    if a.date_of_birth is not None and normalise_name(f"{a.first_name}{a.last_name}"):
        assert MatchReason.BIRTH_DATE_AND_NAME in match_reasons(a, a)


# --- The selector -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_candidates_come_from_the_organisation_only_and_never_tombstones(catalogue, now):
    clinic = ClinicFactory(code="london")
    sister = ClinicFactory(code="west", organisation=clinic.organisation)
    elsewhere = ClinicFactory(code="nyc")
    at_sister = PatientFactory(clinic=sister, first_name="Olivia", last_name="Bennett", date_of_birth=BORN)
    PatientFactory(clinic=elsewhere, first_name="Olivia", last_name="Bennett", date_of_birth=BORN)
    survivor = PatientFactory(clinic=clinic, first_name="Olivia", last_name="Benett", date_of_birth=BORN, phone="")
    PatientFactory(
        clinic=clinic,
        first_name="Olivia",
        last_name="Bennett",
        date_of_birth=BORN,
        merged_into=survivor,
        merged_at=now,
    )
    found = duplicate_candidates(
        organisation_id=clinic.organisation_id, identity=Identity("olivia", "bennett", BORN, phone="+15550000000")
    )
    assert {c.patient for c in found} == {at_sister, survivor}
    assert all(c.reasons == [MatchReason.BIRTH_DATE_AND_NAME] for c in found)


@pytest.mark.django_db
def test_what_a_merged_record_held_offers_its_survivor_once_with_every_reason(catalogue, now):
    clinic = ClinicFactory(code="london")
    elsewhere = ClinicFactory(code="nyc")
    survivor = PatientFactory(
        clinic=clinic, first_name="Olivia", last_name="Bennett", date_of_birth=BORN, phone="+447911000001", email=""
    )
    for old_email in ("liv@old.example", "liv@older.example"):  # two records merged into it
        PatientFactory(
            clinic=clinic,
            first_name="Liv",
            last_name="B",
            date_of_birth=None,
            phone="+447911000002",
            email=old_email,
            merged_into=survivor,
            merged_at=now,
        )
    PatientFactory(  # another organisation's tombstone never offers anything
        clinic=elsewhere, phone="+447911000002", merged_into=PatientFactory(clinic=elsewhere), merged_at=now
    )

    with CaptureQueriesContext(connection) as queries:
        found = duplicate_candidates(
            organisation_id=clinic.organisation_id,
            identity=Identity("Olivia", "Bennett", BORN, phone="+447911000002", email="LIV@old.example"),
        )

    assert len(queries) == 1
    assert [c.patient for c in found] == [survivor]
    assert set(found[0].reasons) == {MatchReason.PHONE, MatchReason.EMAIL, MatchReason.BIRTH_DATE_AND_NAME}
    assert len(found[0].reasons) == 3


@pytest.mark.django_db
def test_candidates_are_read_in_one_query_and_capped(catalogue):
    clinic = ClinicFactory()
    for n in range(DUPLICATE_CANDIDATES_SHOWN + 5):
        PatientFactory(clinic=clinic, first_name=f"Someone{n}", phone="+447911123456")
    with CaptureQueriesContext(connection) as queries:
        found = duplicate_candidates(
            organisation_id=clinic.organisation_id, identity=Identity("New", "Person", phone="+447911123456")
        )
    assert len(queries) == 1
    assert len(found) == DUPLICATE_CANDIDATES_SHOWN and found[0].reasons == [MatchReason.PHONE]


@pytest.mark.django_db
def test_nothing_to_match_on_reads_nothing(catalogue):
    organisation = Organisation.objects.create(code="o", name="O")
    with CaptureQueriesContext(connection) as queries:
        assert duplicate_candidates(organisation_id=organisation.pk, identity=Identity("A", "B")) == []
    assert len(queries) == 0
