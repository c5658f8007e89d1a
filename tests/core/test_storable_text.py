"""core.plain_text's one test of a text a database can store: a request body (api.parsers), a provider's event
(reminders.views) and a provider's words on a failure (reminders.channels) all ask it, and it is stored by
PostgreSQL and SQLite alike when it says so."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clinic.models import Clinic
from core.plain_text import NUL_MESSAGE, SURROGATE_MESSAGE, storable, storable_problem, storable_text
from tests.factories import ClinicFactory

LONE_SURROGATE = "\ud800"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("Olivia", None),
        ("", None),
        ("Zoë 😀 \u200f", None),
        ("a\x00b", NUL_MESSAGE),
        (f"a{LONE_SURROGATE}b", SURROGATE_MESSAGE),
    ],
)
def test_the_problem_is_named(value, problem):
    assert storable_problem(value) == problem
    assert storable(value) is (problem is None)


def test_what_is_not_a_text_is_left_to_its_own_field():
    assert storable(None) and storable(42) and storable(["a\x00"])


def test_what_can_be_kept_is_kept():
    assert storable_text(f"5.1.1\x00 user {LONE_SURROGATE}unknown") == "5.1.1 user ?unknown"
    assert storable_text(550) == "550"


@given(st.text())
def test_the_kept_text_is_always_storable_and_a_storable_text_is_kept_whole(value):
    kept = storable_text(value)
    assert storable(kept)
    if storable(value):
        assert kept == value


@pytest.mark.django_db
@settings(deadline=None)  # each example writes, reads and deletes a clinic: ~20 ms here, past 200 ms on a busy CI
@given(st.text(max_size=40))
def test_a_text_said_storable_is_stored_and_read_back_whole(value):
    if not storable(value):
        value = storable_text(value)
    clinic = ClinicFactory(code="storable", name=value)
    try:
        assert Clinic.objects.get(pk=clinic.pk).name == value
    finally:
        clinic.delete()
