"""A plan template's gaps as the admin posts them: a unit or value left out is that field's own error, and a gap
longer than ten years is refused on its field (docs/plans.md), never a 500 from the planner's calendar arithmetic."""

import pytest
from django.core.exceptions import ValidationError

from plans import planner
from plans.models import PlanTemplate

pytestmark = pytest.mark.django_db


def template(**overrides) -> PlanTemplate:
    fields = {
        "code": "qa-course", "name": "QA course", "procedure_id": "microneedling", "sessions": 3,
        "min_gap_value": 4, "min_gap_unit": "weeks", "ideal_gap_value": 4, "ideal_gap_unit": "weeks",
        "max_gap_value": 6, "max_gap_unit": "weeks",
    }  # fmt: skip
    return PlanTemplate(**{**fields, **overrides})


def form(**overrides) -> dict:
    data = {
        "organisation": "", "code": "qa-course", "name": "QA course", "procedure": "microneedling", "kind": "course",
        "sessions": "3", "min_gap_value": "4", "min_gap_unit": "weeks", "ideal_gap_value": "4",
        "ideal_gap_unit": "weeks", "max_gap_value": "6", "max_gap_unit": "weeks", "area": "", "source": "QA",
        "note": "", "is_active": "on", "_save": "Save",
    }  # fmt: skip
    return {**data, **overrides}


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"max_gap_value": 3653, "max_gap_unit": "days"}, "max_gap_value"),
        ({"max_gap_value": 2_000_000_000, "max_gap_unit": "days"}, "max_gap_value"),
        ({"max_gap_value": 522}, "max_gap_value"),
        ({"max_gap_value": 121, "max_gap_unit": "months"}, "max_gap_value"),
        ({"min_gap_unit": "fortnights"}, "min_gap_unit"),
        ({"min_gap_value": 8}, "min_gap_value"),  # longer than the maximum
        ({"ideal_gap_value": 9}, "ideal_gap_value"),  # beyond the maximum
    ],
)
def test_a_template_the_planner_cannot_place_is_refused_on_the_field_at_fault(catalogue, overrides, field):
    with pytest.raises(ValidationError) as refused:
        template(**overrides).clean()

    assert list(refused.value.message_dict) == [field]


def test_a_gap_of_ten_years_is_still_a_template(catalogue):
    template(max_gap_value=120, max_gap_unit="months").clean()
    template(max_gap_value=3652, max_gap_unit="days").clean()
    planner.check_course_shape(
        sessions=2,
        min_gap=planner.Gap(1, "days"),
        ideal_gap=planner.Gap(521, "weeks"),
        max_gap=planner.Gap(521, "weeks"),
    )


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"min_gap_unit": ""}, "min_gap_unit"),
        ({"ideal_gap_value": ""}, "ideal_gap_value"),
        ({"max_gap_value": "2000000000", "max_gap_unit": "days"}, "max_gap_value"),
    ],
)
def test_the_admin_form_names_the_field_instead_of_answering_500(admin_client, catalogue, overrides, field):
    admin_client.raise_request_exception = False

    response = admin_client.post("/admin/plans/plantemplate/add/", form(**overrides))

    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == [field]
    assert not PlanTemplate.objects.filter(code="qa-course").exists()


def test_the_admin_form_still_takes_a_well_formed_template(admin_client, catalogue):
    response = admin_client.post("/admin/plans/plantemplate/add/", form())

    assert response.status_code == 302 and PlanTemplate.objects.filter(code="qa-course").exists()
