"""Fixtures for the API tests: two clinics, callers of every kind, and a clock at a known Monday.

The clock is 2026-03-02 09:00 UTC (a Monday; London is on GMT, New York on EST)
and keeps ticking, so services that read `now` at the edge see a fixed date.
"""

import pytest
import time_machine
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from clinic.models import ApiClient, StaffMembership, StaffRole
from tests import shipped
from tests.conftest import CLOCK
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory

NOW = CLOCK  # the suite's one clock (tests/conftest.py)


@pytest.fixture(autouse=True)
def _clock(request):
    if request.node.get_closest_marker("real_clock"):
        yield
        return
    with time_machine.travel(NOW, tick=True):
        yield


def pytest_configure(config):
    config.addinivalue_line("markers", "real_clock: run without travelling to the fixed Monday")


@pytest.fixture
def clinic(catalogue):
    return ClinicFactory(code="london", name="London Clinic", timezone="Europe/London")


@pytest.fixture
def other_clinic(catalogue):
    return ClinicFactory(code="newyork", name="New York Clinic", timezone="America/New_York")


@pytest.fixture
def practitioner(clinic):
    return PractitionerFactory(clinic=clinic, name="Dr Ada")


@pytest.fixture
def patient(clinic):
    return PatientFactory(clinic=clinic, first_name="Pat", last_name="Lee")


@pytest.fixture
def west(clinic):
    """A second site of the London clinic's organisation."""
    return ClinicFactory(code="west", name="West Clinic", timezone="Europe/London", organisation=clinic.organisation)


@pytest.fixture
def west_practitioner(west):
    return PractitionerFactory(clinic=west, name="Dr West")


@pytest.fixture
def templates(catalogue):
    """The shipped plan templates (tests/api/test_plans.py loads them for every test of its own)."""
    shipped.plan_templates()  # plan_templates_load's rows (its checks run once a process: tests/shipped.py)


@pytest.fixture
def other_patient(other_clinic):
    return PatientFactory(clinic=other_clinic, first_name="Other", last_name="Person")


@pytest.fixture
def other_practitioner(other_clinic):
    return PractitionerFactory(clinic=other_clinic, name="Dr Elsewhere")


def new_api_client(*clinics, name: str | None = None, clinical: bool = False) -> tuple[ApiClient, str]:
    client = ApiClient(name=name or f"platform-{ApiClient.objects.count() + 1}", clinical=clinical)
    key = client.set_new_key()
    client.save()
    client.clinics.set(clinics)
    return client, key


def http(key: str | None = None) -> APIClient:
    client = APIClient()
    if key:
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def api_key(clinic):
    return new_api_client(clinic)[1]


@pytest.fixture
def api(api_key):
    """A booking platform scoped to `clinic`, without the clinician's right."""
    return http(api_key)


@pytest.fixture
def clinical_api(clinic):
    return http(new_api_client(clinic, name="clinical-platform", clinical=True)[1])


def staff(clinic, role: str, username: str):
    user = get_user_model().objects.create_user(username=username, password="pw-for-tests-only")
    StaffMembership.objects.create(user=user, clinic=clinic, role=role)
    return user


@pytest.fixture
def receptionist(clinic):
    return staff(clinic, StaffRole.RECEPTIONIST, "reception")


@pytest.fixture
def clinician(clinic):
    return staff(clinic, StaffRole.CLINICIAN, "clinician")


def session(user, *, csrf: bool = False) -> APIClient:
    client = APIClient(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def problem_of(response, status: int) -> dict:
    """Assert `response` is a problem document with `status`; return its body."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json", response["Content-Type"]
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:clinic-api:problem:")
    assert body["title"] and body["detail"] and body["code"]
    return body
