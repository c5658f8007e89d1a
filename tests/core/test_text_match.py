"""`core.text_match.Lowered` folds every script's letters on PostgreSQL and SQLite alike: SQLite's own lower()
folds ASCII only, so without the function registered on each connection "élodie" would not find "ÉLODIE"."""

import pytest
from django.db.models import Q
from django.db.models.lookups import Contains, Exact

from clinic.models import Patient
from core.text_match import Lowered
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


def test_letters_of_every_script_compare_in_lower_case():
    wanted = PatientFactory(first_name="ÉLODIE", last_name="ŁUKASZEWICZ-ØSTERGÅRD")
    PatientFactory(first_name="Elodie", last_name="Lukaszewicz")

    by_first = Patient.objects.filter(Q(Exact(Lowered("first_name"), "élodie")))
    by_last = Patient.objects.filter(Q(Contains(Lowered("last_name"), "østergård")))

    assert list(by_first) == [wanted]
    assert list(by_last) == [wanted]


def test_an_empty_value_stays_empty():
    patient = PatientFactory(email="")

    assert Patient.objects.filter(Q(Exact(Lowered("email"), "")), pk=patient.pk).exists()
    assert not Patient.objects.filter(Q(Exact(Lowered("email"), "x")), pk=patient.pk).exists()
