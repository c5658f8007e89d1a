"""Plan templates as data: the shipped defaults, their validation, and editing them in the admin."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError

from clinic.models import StaffMembership, StaffRole
from core.errors import ErrorCode, InvalidInput
from plans.defaults import CLINIC_PRACTICE, plan_templates_load
from plans.models import PlanTemplate, TreatmentPlan
from plans.services import plan_template_get
from tests.factories import ClinicFactory, OrganisationFactory, PatientFactory

pytestmark = pytest.mark.django_db


def test_the_three_courses_of_the_domain_ship_as_clinic_practice(templates):
    shipped = {
        t.code: (t.procedure_id, t.kind, t.sessions, t.min_gap.describe(), t.ideal_gap.describe(), t.max_gap.describe())
        for t in PlanTemplate.objects.all()
    }
    assert shipped == {
        "microneedling-course": ("microneedling", "course", 3, "4 weeks", "4 weeks", "6 weeks"),
        "plasma-pen-course": ("plasma_pen", "course", 2, "6 weeks", "8 weeks", "8 weeks"),
        "botox-maintenance": ("botox", "maintenance", 4, "3 months", "14 weeks", "4 months"),
    }
    assert set(PlanTemplate.objects.values_list("source", flat=True)) == {CLINIC_PRACTICE}


def test_loading_again_keeps_an_administrators_edit(templates):
    PlanTemplate.objects.filter(code="microneedling-course").update(sessions=5)
    assert plan_templates_load() == 0
    assert PlanTemplate.objects.get(code="microneedling-course").sessions == 5


def test_setup_demo_loads_the_templates(catalogue):
    call_command("setup_demo", "--no-demo", stdout=open("/dev/null", "w"))
    assert PlanTemplate.objects.count() == 3


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"sessions": 0}, "sessions"),
        ({"min_gap_value": 7}, "min_gap_value"),
        ({"ideal_gap_value": 9}, "ideal_gap_value"),
        ({"ideal_gap_value": 2}, "ideal_gap_value"),
        ({"min_gap_unit": "fortnights"}, "min_gap_unit"),
    ],
)
def test_a_template_that_cannot_make_a_window_is_refused_naming_the_field(templates, changes, field):
    template = PlanTemplate.objects.get(code="microneedling-course")
    for name, value in changes.items():
        setattr(template, name, value)
    with pytest.raises(ValidationError) as refused:
        template.full_clean()
    assert field in refused.value.message_dict


def test_the_database_refuses_zero_sessions(templates):
    with pytest.raises(IntegrityError):
        PlanTemplate.objects.filter(code="microneedling-course").update(sessions=0)


def test_a_superuser_edits_a_template_in_the_admin(templates, admin_client):
    template = PlanTemplate.objects.get(code="plasma-pen-course")
    page = admin_client.get(f"/admin/plans/plantemplate/{template.pk}/change/")
    assert page.status_code == 200
    assert b"Plasma pen course" in page.content


def _own_microneedling_course(organisation, code: str, *, name: str) -> PlanTemplate:
    """An organisation's own microneedling course of 4 sessions, 4 to 6 weeks apart (ideal 5)."""
    return PlanTemplate.objects.create(
        organisation=organisation,
        code=code,
        name=name,
        procedure_id="microneedling",
        sessions=4,
        min_gap_value=4,
        min_gap_unit="weeks",
        ideal_gap_value=5,
        ideal_gap_unit="weeks",
        max_gap_value=6,
        max_gap_unit="weeks",
    )


def test_an_organisations_own_template_replaces_the_default_for_its_patients_only(templates):
    mine, theirs = OrganisationFactory(code="mine"), OrganisationFactory(code="theirs")
    default = PlanTemplate.objects.get(code="microneedling-course")
    own = _own_microneedling_course(mine, "microneedling-course", name="Our microneedling course (4 sessions)")
    assert plan_template_get("microneedling-course", organisation_id=mine.pk) == own
    assert plan_template_get("microneedling-course", organisation_id=theirs.pk) == default
    assert set(PlanTemplate.objects.for_organisation(mine.pk).values_list("name", flat=True)) >= {own.name}
    assert default not in PlanTemplate.objects.for_organisation(mine.pk)


def test_a_template_code_is_found_with_either_separator_and_an_unknown_one_names_those_there_are(templates):
    mine, theirs = OrganisationFactory(code="mine"), OrganisationFactory(code="theirs")
    default = PlanTemplate.objects.get(code="microneedling-course")
    assert plan_template_get("microneedling_course", organisation_id=theirs.pk) == default
    # An organisation's own code written with the other separator is its own template, chosen when named exactly.
    own = _own_microneedling_course(mine, "microneedling_course", name="Ours")
    assert plan_template_get("microneedling_course", organisation_id=mine.pk) == own
    assert plan_template_get("microneedling-course", organisation_id=mine.pk) == default
    assert plan_template_get("microneedling_course", organisation_id=theirs.pk) == default

    with pytest.raises(InvalidInput) as refused:
        plan_template_get("microneedling", organisation_id=theirs.pk)
    assert refused.value.code == ErrorCode.UNKNOWN_PLAN_TEMPLATE
    assert refused.value.message == (
        "There is no plan template 'microneedling'. "
        "Templates: botox-maintenance, microneedling-course, plasma-pen-course."
    )  # `mine`'s own template is not named to another organisation
    for nothing in ("", None, 7):
        with pytest.raises(InvalidInput, match="Name a plan template by its code"):
            plan_template_get(nothing, organisation_id=theirs.pk)


def test_two_defaults_cannot_share_a_code(templates):
    with pytest.raises(IntegrityError):
        PlanTemplate.objects.create(
            code="microneedling-course",
            name="Again",
            procedure_id="microneedling",
            sessions=1,
            min_gap_value=1,
            min_gap_unit="days",
            ideal_gap_value=1,
            ideal_gap_unit="days",
            max_gap_value=1,
            max_gap_unit="days",
        )


def test_a_clinic_administrator_sees_only_the_plans_at_their_clinics(templates, client):
    ours, theirs = ClinicFactory(code="ours"), ClinicFactory(code="theirs")
    course = PlanTemplate.objects.get(code="plasma-pen-course")
    for clinic in (ours, theirs):
        TreatmentPlan.objects.create(
            patient=PatientFactory(clinic=clinic, first_name=f"At-{clinic.code}"),
            template=course,
            clinic=clinic,
            created_at="2026-03-01T10:00:00+00:00",
        )
    admin = get_user_model().objects.create_user(username="siteadmin", password="pw-for-tests-only", is_staff=True)
    admin.user_permissions.add(Permission.objects.get(codename="view_treatmentplan"))
    StaffMembership.objects.create(user=admin, clinic=ours, role=StaffRole.CLINIC_ADMIN)
    client.force_login(admin)
    page = client.get("/admin/plans/treatmentplan/").content.decode()
    assert "At-ours" in page and "At-theirs" not in page
