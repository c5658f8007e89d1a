"""The front desk under organisations: staff of several sites switch between them; every site of the
organisation sees and books its patients; an appointment at the other site counts and is named."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from clinic.models import Appointment, StaffMembership, StaffRole
from tests.factories import ClinicFactory, PatientFactory
from tests.frontdesk.conftest import PASSWORD, book, url
from tests.frontdesk.helpers import west, west_desk, west_practitioner  # noqa: F401 (fixtures)
from tests.frontdesk.html import squash

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager(clinic) -> Client:
    user = get_user_model().objects.create_user(username="orgadmin", password=PASSWORD)
    StaffMembership.objects.create(user=user, organisation=clinic.organisation, role=StaffRole.CLINIC_ADMIN)
    client = Client()
    client.force_login(user)
    return client


def test_staff_of_the_whole_organisation_choose_and_switch_between_its_sites(manager, clinic, west, other_clinic):  # noqa: F811
    home = squash(manager.get(url("home")))
    assert "London Clinic" in home and "West Clinic" in home and "New York Clinic" not in home
    page = squash(manager.get(url("today", west)))
    assert "Switch clinic" in page and "London Clinic" in page
    assert manager.get(url("today", other_clinic)).status_code == 404


def test_a_patient_of_another_site_is_found_and_booked_here(west_desk, west, patient, west_practitioner, frozen):  # noqa: F811
    assert "Olivia" in squash(west_desk.get(url("patients", west) + "?q=Olivia"))
    assert west_desk.get(url("patient", west, patient)).status_code == 200
    response = west_desk.post(
        url("book_submit", west, patient), {"procedure": "botox", "start_at": "2026-03-03T10:00:00+00:00"}
    )
    appointment = Appointment.objects.get(patient=patient)
    assert response.status_code == 302 and response.url == url("appointment", west, appointment)
    assert appointment.clinic == west and appointment.practitioner == west_practitioner


def test_an_appointment_at_the_other_site_refuses_and_is_named(
    west_desk,  # noqa: F811
    clinic,
    west,  # noqa: F811
    patient,
    practitioner,
    west_practitioner,  # noqa: F811
    frozen,
):
    london = book(patient, practitioner, "botox", frozen + timedelta(days=1))  # at London
    # The patient's page at West shows the London booking, where it is, without a link West cannot open.
    record = west_desk.get(url("patient", west, patient))
    assert "at London Clinic" in squash(record) and str(london.pk) not in record.content.decode()
    page = squash(
        west_desk.get(url("book", west, patient), {"procedure": "microneedling", "date": "2026-03-06", "time": "10:00"})
    )
    assert "at London Clinic" in page
    assert not Appointment.objects.filter(clinic=west).exists()


def test_another_organisations_patient_stays_not_found(west_desk, west, other_patient):  # noqa: F811
    assert west_desk.get(url("patient", west, other_patient)).status_code == 404
    assert PatientFactory(clinic=ClinicFactory(code="solo")).organisation.code == "solo"
