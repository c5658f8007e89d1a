"""Admin input on clinic's records: a junk user id, the same condition twice in the intake, a clinic made without
an organisation, a home clinic of another organisation. Each is a form error (or a new organisation of one),
never a 500 nor a record shared or split between organisations."""

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.test import Client

from clinic.models import Clinic, Organisation, Patient, PatientCondition, StaffMembership
from tests.factories import ClinicFactory, OrganisationFactory, PatientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(admin_client) -> Client:
    admin_client.raise_request_exception = False
    return admin_client


def test_a_junk_user_id_in_the_staff_membership_form_is_a_form_error(root):
    clinic = ClinicFactory()

    response = root.post(
        "/admin/clinic/staffmembership/add/",
        {"user": "not-a-number", "clinic": str(clinic.pk), "organisation": "", "role": "receptionist"},
    )

    assert response.status_code == 200
    assert "user" in response.context["adminform"].form.errors
    assert not StaffMembership.objects.exists()


def test_a_real_user_id_in_the_staff_membership_form_still_saves(root):
    clinic = ClinicFactory()
    user = get_user_model().objects.create_user("newcomer")

    response = root.post(
        "/admin/clinic/staffmembership/add/",
        {"user": str(user.pk), "clinic": str(clinic.pk), "organisation": "", "role": "receptionist"},
    )

    assert response.status_code == 302 and StaffMembership.objects.filter(user=user, clinic=clinic).exists()


def intake_post(patient, rows: list[dict]) -> dict:
    data = {
        "clinic": str(patient.clinic_id), "first_name": patient.first_name, "last_name": patient.last_name,
        "reminder_channels": "[]", "muted_topics": "[]", "_save": "Save",
    }  # fmt: skip
    for prefix in ("conditions", "medication_courses", "procedure_records"):
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
    data["conditions-TOTAL_FORMS"] = str(len(rows))
    for index, row in enumerate(rows):
        data.update({f"conditions-{index}-{name}": value for name, value in row.items()})
        data[f"conditions-{index}-patient"] = str(patient.pk)
    return data


def test_the_same_condition_twice_with_no_area_is_a_formset_error(root, catalogue):
    patient = PatientFactory()
    row = {"condition": "eczema", "status": "history"}

    response = root.post(f"/admin/clinic/patient/{patient.pk}/change/", intake_post(patient, [row, row]))

    assert response.status_code == 200
    assert "already listed with no area" in response.content.decode()
    assert not PatientCondition.objects.filter(patient=patient).exists()


def test_the_same_condition_in_two_areas_is_still_two_lines(root, catalogue):
    patient = PatientFactory()
    rows = [{"condition": "eczema", "status": "history", "area": area} for area in ("face", "neck")]

    response = root.post(f"/admin/clinic/patient/{patient.pk}/change/", intake_post(patient, rows))

    assert response.status_code == 302, response.content.decode()[:2000]
    assert PatientCondition.objects.filter(patient=patient).count() == 2


def test_a_clinic_made_without_an_organisation_never_joins_one_by_its_code():
    taken = OrganisationFactory(code="riverside", name="Riverside Group")
    ClinicFactory(code="riverside-2", organisation=taken)  # the next code is held by a clinic, not an organisation

    clinic = Clinic.objects.create(code="riverside", name="Riverside Skin", timezone="Europe/London")

    assert clinic.organisation_id != taken.pk
    assert clinic.organisation.code == "riverside-2" and clinic.organisation.name == "Riverside Skin"
    assert list(clinic.organisation.clinics.all()) == [clinic]


def test_a_code_taken_between_the_read_and_the_insert_moves_on_to_the_next(monkeypatch):
    """Two clinics saved at the same moment may both find one organisation code free: the one that inserts second
    takes the next code instead of failing (a 500 on the admin's save), inside the caller's transaction."""
    found_free = Clinic._free_organisation_code
    raced = []

    def race_then_find(clinic):
        code = found_free(clinic)
        if not raced:  # another clinic's organisation commits under that code just after it was read as free
            raced.append(Organisation.objects.create(code=code, name="Saved at the same moment"))
        return code

    monkeypatch.setattr(Clinic, "_free_organisation_code", race_then_find)
    with transaction.atomic():
        clinic = Clinic.objects.create(code="quayside", name="Quayside Skin", timezone="Europe/London")

    assert raced[0].code == "quayside"
    assert (clinic.organisation.code, clinic.organisation.name) == ("quayside-2", "Quayside Skin")
    assert list(clinic.organisation.clinics.all()) == [clinic] and not raced[0].clinics.exists()


def test_a_clinic_refused_for_its_code_leaves_no_organisation_behind():
    """Outside any transaction (a script, the shell): the organisation is made with the clinic or not at all."""
    ClinicFactory(code="harbourside")
    organisations = Organisation.objects.count()

    with pytest.raises(IntegrityError):
        Clinic.objects.create(code="harbourside", name="Harbourside Again", timezone="Europe/London")

    assert Organisation.objects.count() == organisations


def test_a_clinic_with_a_free_code_is_an_organisation_of_the_same_code():
    clinic = Clinic.objects.create(code="harbour", name="Harbour Clinic", timezone="Europe/London")

    assert (clinic.organisation.code, clinic.organisation.name) == ("harbour", "Harbour Clinic")
    assert Organisation.objects.count() == 1


def test_a_home_clinic_of_another_organisation_is_refused_on_the_field():
    patient = PatientFactory()
    elsewhere = ClinicFactory()

    patient.clinic = elsewhere
    with pytest.raises(ValidationError) as refused:
        patient.full_clean()

    assert "clinic" in refused.value.message_dict


def test_the_admin_refuses_another_organisations_home_clinic_and_takes_a_sister_site(root, catalogue):
    patient = PatientFactory()
    sister = ClinicFactory(organisation=patient.organisation)
    elsewhere = ClinicFactory()
    page = f"/admin/clinic/patient/{patient.pk}/change/"

    refused = root.post(page, {**intake_post(patient, []), "clinic": str(elsewhere.pk)})
    moved = root.post(page, {**intake_post(patient, []), "clinic": str(sister.pk)})

    assert refused.status_code == 200 and "clinic" in refused.context["adminform"].form.errors
    assert moved.status_code == 302
    patient = Patient.objects.get(pk=patient.pk)
    assert (patient.clinic_id, patient.organisation_id) == (sister.pk, sister.organisation_id)
