"""The admin's change lists read no query per row: a list of patients (some merged into another) and a list of plan
templates (the defaults' organisation is NULL) cost the same statements whatever their length. Django's changelist
follows only non-nullable keys by itself (`list_select_related` names the nullable ones)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from plans.defaults import plan_templates_load
from plans.models import PlanTemplate
from tests.factories import ClinicFactory, OrganisationFactory, PatientFactory

pytestmark = pytest.mark.django_db


def statements(client, name: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse(name))
    assert response.status_code == 200, response.status_code
    return len(queries)


def test_the_patient_list_reads_no_query_per_row_merged_or_not(admin_client):
    clinic = ClinicFactory()

    def register(n: int) -> None:
        for _ in range(n):
            survivor = PatientFactory(clinic=clinic)
            PatientFactory(clinic=clinic, merged_into=survivor, merged_at=timezone.now())  # names its survivor

    register(1)
    few = statements(admin_client, "admin:clinic_patient_changelist")
    register(5)
    assert statements(admin_client, "admin:clinic_patient_changelist") == few


def test_the_plan_template_list_reads_no_query_per_row(admin_client, catalogue):
    plan_templates_load()  # the defaults: no organisation
    few = statements(admin_client, "admin:plans_plantemplate_changelist")
    for default in PlanTemplate.objects.all():
        for n in range(3):
            default.pk, default.default_key, default.organisation = None, None, OrganisationFactory()
            default.code = f"{default.code[:40]}-{n}"
            default.save()
    assert PlanTemplate.objects.filter(organisation__isnull=False).count() >= 9
    assert statements(admin_client, "admin:plans_plantemplate_changelist") == few
