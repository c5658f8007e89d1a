"""The caller's scope read as compiled statements (api/access.py, clinic.selectors.patient_in): the same
clinics and patients as the querysets they replace, a grant or a merge seen by the very next request, and
two statements for a request that names a patient."""

import uuid

import pytest

from api.access import SCOPE_INLINE_MAX, Caller
from clinic.models import ApiClient, Patient
from clinic.selectors import patient_in, patients_in
from tests.factories import ClinicFactory, OrganisationFactory, PatientFactory

pytestmark = pytest.mark.django_db


def _client(*clinics, organisations=()) -> ApiClient:
    client = ApiClient(name=f"platform-{uuid.uuid4().hex[:8]}")
    client.set_new_key()
    client.save()
    client.clinics.set(clinics)
    client.organisations.set(organisations)
    return client


def _ids(client) -> list:
    return Caller(client=client, user=None)._clinic_ids


def test_a_clients_clinics_are_those_granted_one_by_one_and_by_organisation():
    group = OrganisationFactory()
    north, south = ClinicFactory(organisation=group), ClinicFactory(organisation=group)
    alone, elsewhere = ClinicFactory(), ClinicFactory()
    client = _client(alone, organisations=[group])
    expected = sorted([north.pk, south.pk, alone.pk])
    assert _ids(client) == expected
    assert sorted(Caller(client=client, user=None)._granted().values_list("pk", flat=True)) == expected
    assert elsewhere.pk not in _ids(client)


def test_a_grant_or_a_withdrawal_is_seen_by_the_next_request():
    first, second = ClinicFactory(), ClinicFactory()
    client = _client(first)
    assert _ids(client) == [first.pk]
    client.clinics.add(second)
    assert _ids(client) == sorted([first.pk, second.pk])
    client.clinics.remove(first)
    assert _ids(client) == [second.pk]
    client.clinics.clear()
    assert _ids(client) == []
    assert not Caller(client=client, user=None).has_any_clinic


def test_past_the_inline_limit_the_scope_stays_a_subquery():
    group = OrganisationFactory()
    ClinicFactory.create_batch(SCOPE_INLINE_MAX + 1, organisation=group)
    client = _client(organisations=[group])
    caller = Caller(client=client, user=None)
    assert caller._clinic_ids is None
    assert caller.clinics().count() == SCOPE_INLINE_MAX + 1
    patient = PatientFactory(clinic=caller.clinics().first())
    assert caller.patient(patient.pk) == patient


def test_the_patient_in_scope_is_the_querysets_with_its_clinic_loaded(django_assert_num_queries):
    group = OrganisationFactory()
    north, south = ClinicFactory(organisation=group), ClinicFactory(organisation=group)
    patient = PatientFactory(clinic=south, email="ada@example.com")
    caller = Caller(client=_client(north), user=None)  # the record is the organisation's, shared by its clinics
    with django_assert_num_queries(2):  # the caller's clinics, then the patient with their clinic
        found = caller.patient(patient.pk)
        assert found.clinic == south and found.clinic.timezone == south.timezone
    expected = patients_in(caller.clinics()).filter(pk=patient.pk).first()
    assert found == expected
    assert [getattr(found, f.attname) for f in Patient._meta.concrete_fields] == [
        getattr(expected, f.attname) for f in Patient._meta.concrete_fields
    ]


def test_no_patient_outside_the_scope_a_tombstone_or_no_id(django_assert_num_queries):
    mine, theirs = ClinicFactory(), ClinicFactory()
    outsider = PatientFactory(clinic=theirs)
    survivor = PatientFactory(clinic=mine)
    tombstone = PatientFactory(clinic=mine, merged_into=survivor, merged_at=survivor.created_at)
    caller = Caller(client=_client(mine), user=None)
    assert caller.patient(outsider.pk) is None
    assert caller.patient(tombstone.pk) is None
    assert caller.patient(survivor.pk) == survivor
    assert caller.patient(None) is None
    assert caller.patient(uuid.uuid4()) is None
    with django_assert_num_queries(0):
        assert patient_in([], survivor.pk) is None  # no clinics: nobody, and no statement
