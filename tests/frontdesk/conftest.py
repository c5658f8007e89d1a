"""Front-desk fixtures: two clinics, their staff, patients, and a frozen clock.

Views read the clock at the edge (timezone.now()), so tests freeze it with
time_machine at the shared `now` (Monday 2 March 2026, 09:00 UTC = 09:00 London).
"""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from clinic.models import AppointmentStatus, StaffMembership, StaffRole
from tests.factories import AppointmentFactory, ClinicFactory, PatientFactory, PractitionerFactory

PASSWORD = "correct-horse-battery-42"


def make_staff(clinic, role: str, username: str):
    user = get_user_model().objects.create_user(username=username, password=PASSWORD)
    StaffMembership.objects.create(user=user, clinic=clinic, role=role)
    return user


def url(name: str, *args) -> str:
    return reverse(f"frontdesk:{name}", args=[getattr(a, "code", None) or getattr(a, "pk", a) for a in args])


def book(patient, practitioner, procedure: str, start_at: datetime, status=AppointmentStatus.CONFIRMED, **extra):
    """An appointment written directly, for pages that only show it."""
    from clinic.models import ProcedureType

    duration = ProcedureType.objects.get(code=procedure).duration_minutes
    return AppointmentFactory(
        clinic=patient.clinic,
        patient=patient,
        practitioner=practitioner,
        procedure_id=procedure,
        start_at=start_at,
        end_at=start_at + timedelta(minutes=duration),
        status=status,
        **extra,
    )


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def frozen(now):
    with time_machine.travel(now, tick=False):
        yield now


@pytest.fixture
def clinic(catalogue):
    return ClinicFactory(code="london", name="London Clinic", timezone="Europe/London")


@pytest.fixture
def other_clinic(catalogue):
    return ClinicFactory(code="nyc", name="New York Clinic", timezone="America/New_York")


@pytest.fixture
def practitioner(clinic):
    return PractitionerFactory(clinic=clinic, name="Dr Amelia Hart")


@pytest.fixture
def second_practitioner(clinic):
    return PractitionerFactory(clinic=clinic, name="Priya Shah")


@pytest.fixture
def other_practitioner(other_clinic):
    return PractitionerFactory(clinic=other_clinic, name="Dr Maya Chen")


@pytest.fixture
def receptionist(clinic):
    return make_staff(clinic, StaffRole.RECEPTIONIST, "reception")


@pytest.fixture
def clinician(clinic):
    return make_staff(clinic, StaffRole.CLINICIAN, "clinician")


@pytest.fixture
def reception(receptionist) -> Client:
    client = Client()
    client.force_login(receptionist)
    return client


@pytest.fixture
def clinical(clinician) -> Client:
    client = Client()
    client.force_login(clinician)
    return client


@pytest.fixture
def patient(clinic):
    return PatientFactory(
        clinic=clinic,
        first_name="Olivia",
        last_name="Bennett",
        phone="+447911123101",
        email="olivia@example.com",
        date_of_birth=datetime(1985, 6, 18).date(),
    )


@pytest.fixture
def other_patient(other_clinic):
    return PatientFactory(
        clinic=other_clinic, first_name="Nora", last_name="Jones", phone="+12125550199", email="nora@example.com"
    )


@pytest.fixture
def botox_five_days_ago(patient, now):
    from clinic.models import HistorySource, ProcedureRecord

    return ProcedureRecord.objects.create(
        patient=patient,
        procedure_id="botox",
        performed_at=now - timedelta(days=5),
        area_id="face",
        source=HistorySource.CLINIC,
    )


@pytest.fixture
def eczema_history(patient):
    from clinic.models import ConditionStatus, PatientCondition

    return PatientCondition.objects.create(patient=patient, condition_id="eczema", status=ConditionStatus.HISTORY)


def at_london(y, m, d, hh, mm=0) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime(y, m, d, hh, mm, tzinfo=ZoneInfo("Europe/London")).astimezone(UTC)
