"""The appointments admin finds every visit that is over and that nobody closed ("Over, no outcome recorded"),
however old: Today asks about the last 90 days only (frontdesk.selectors.awaiting_outcome), so an older one is found
here. Confirmed and over only: not one still to come or under way, nor one completed, missed, cancelled, waiting for
clearance or review. A clinic administrator sees only their clinics' visits."""

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from clinic.models import AppointmentStatus, StaffMembership, StaffRole
from tests.factories import AppointmentFactory, ClinicFactory, PatientFactory, PractitionerFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:clinic_appointment_changelist")


def visit(clinic, name, start, status=AppointmentStatus.CONFIRMED):
    patient = PatientFactory(clinic=clinic, first_name=name, last_name="Outcome")
    practitioner = PractitionerFactory(clinic=clinic)
    return AppointmentFactory(
        clinic=clinic,
        patient=patient,
        practitioner=practitioner,
        procedure_id="botox",
        start_at=start,
        end_at=start + timedelta(minutes=30),
        status=status,
    )


def listed(client) -> str:
    response = client.get(CHANGELIST, {"outcome": "missing"})
    assert response.status_code == 200
    return response.content.decode()


def test_every_visit_over_and_not_closed_however_old_and_nothing_else(admin_client, catalogue, now):
    clinic = ClinicFactory(code="outcome-a")
    visit(clinic, "Longago", now - timedelta(days=200))  # older than Today's 90 days
    visit(clinic, "Yesterday", now - timedelta(days=1))
    visit(clinic, "Endsnow", now - timedelta(minutes=30))  # ends this minute: over
    visit(clinic, "Underway", now - timedelta(minutes=10))
    visit(clinic, "Tomorrow", now + timedelta(days=1))
    for status in (
        AppointmentStatus.COMPLETED,
        AppointmentStatus.NO_SHOW,
        AppointmentStatus.CANCELLED,
        AppointmentStatus.PENDING_CLEARANCE,
        AppointmentStatus.NEEDS_REVIEW,
    ):
        visit(clinic, f"Status{status.replace('_', '')}", now - timedelta(days=2), status=status)
    with time_machine.travel(now, tick=False):
        page = listed(admin_client)
        assert "Over, no outcome recorded" in page
        everything = admin_client.get(CHANGELIST).content.decode()
    for name in ("Longago", "Yesterday", "Endsnow"):
        assert name in page
    for name in ("Underway", "Tomorrow", "Statuscompleted", "Statusnoshow", "Statuscancelled"):
        assert name not in page and name in everything
    assert "Statuspendingclearance" not in page and "Statusneedsreview" not in page


def test_a_clinic_administrator_finds_only_their_clinics(client, django_user_model, catalogue, now):
    mine, theirs = ClinicFactory(code="outcome-mine"), ClinicFactory(code="outcome-theirs")
    visit(mine, "Mine", now - timedelta(days=120))
    visit(theirs, "Theirs", now - timedelta(days=120))
    user = django_user_model.objects.create_user(username="outcome-admin", password="pw-for-tests", is_staff=True)
    StaffMembership.objects.create(user=user, clinic=mine, role=StaffRole.CLINIC_ADMIN)
    user.user_permissions.add(Permission.objects.get(codename="view_appointment"))
    admin = Client()
    admin.force_login(user)
    with time_machine.travel(now, tick=False):
        page = listed(admin)
    assert "Mine" in page and "Theirs" not in page
