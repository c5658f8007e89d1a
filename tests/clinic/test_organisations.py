"""Staff scope under organisations: a membership grants one clinic or a whole organisation (now and later)."""

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from clinic.models import Patient, StaffMembership, StaffRole
from clinic.selectors import clinics_for_user, patients_in, staff_role
from tests.factories import ClinicFactory, OrganisationFactory, PatientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain():
    organisation = OrganisationFactory(code="chain")
    return (
        organisation,
        ClinicFactory(code="chain-a", organisation=organisation),
        ClinicFactory(code="chain-b", organisation=organisation),
    )


@pytest.fixture
def user():
    return get_user_model().objects.create(username="staff")


def test_an_organisation_membership_reaches_every_clinic_now_and_later(chain, user):
    organisation, a, b = chain
    alone = ClinicFactory(code="alone")
    StaffMembership.objects.create(user=user, organisation=organisation, role=StaffRole.RECEPTIONIST)
    assert sorted(c.code for c in clinics_for_user(user)) == ["chain-a", "chain-b"]
    ClinicFactory(code="chain-c", organisation=organisation)
    assert sorted(c.code for c in clinics_for_user(user)) == ["chain-a", "chain-b", "chain-c"]
    assert staff_role(user, a.pk) == StaffRole.RECEPTIONIST
    assert staff_role(user, alone.pk) is None


def test_a_role_at_the_clinic_itself_wins_over_the_organisation_wide_one(chain, user):
    organisation, a, b = chain
    StaffMembership.objects.create(user=user, organisation=organisation, role=StaffRole.RECEPTIONIST)
    StaffMembership.objects.create(user=user, clinic=b, role=StaffRole.CLINICIAN)
    assert staff_role(user, a.pk) == StaffRole.RECEPTIONIST
    assert staff_role(user, b.pk) == StaffRole.CLINICIAN
    assert sorted(c.code for c in clinics_for_user(user)) == ["chain-a", "chain-b"]  # listed once each


def test_a_membership_grants_a_clinic_or_an_organisation_never_both_nor_neither(chain, user):
    organisation, a, _ = chain
    for fields in ({}, {"clinic": a, "organisation": organisation}):
        with pytest.raises(ValidationError):
            StaffMembership(user=user, role=StaffRole.RECEPTIONIST, **fields).full_clean()
        with pytest.raises(IntegrityError), transaction.atomic():
            StaffMembership.objects.create(user=user, role=StaffRole.RECEPTIONIST, **fields)
    StaffMembership.objects.create(user=user, organisation=organisation, role=StaffRole.RECEPTIONIST)
    with pytest.raises(IntegrityError), transaction.atomic():
        StaffMembership.objects.create(user=user, organisation=organisation, role=StaffRole.CLINICIAN)


def test_patients_belong_to_the_organisation_of_their_home_clinic(chain):
    organisation, a, b = chain
    patient = PatientFactory(clinic=a)
    assert patient.organisation == organisation
    other = PatientFactory(clinic=ClinicFactory(code="alone"))
    # Either site sees the patient; a clinic of another organisation does not.
    assert list(patients_in(type(a).objects.filter(pk=b.pk))) == [patient]
    assert other not in patients_in(type(a).objects.filter(pk=b.pk))
    assert Patient.objects.filter(organisation=organisation).count() == 1
