"""A plan template edited while courses made from it are under way (plans.models, plans.admin, plans.services;
docs/plans.md, "Templates" and "Re-plan").

A course is booked as one treatment: the admin refuses giving a template plans already use another procedure (as it
refuses deleting it; a course of another procedure is a new template), and a re-plan books the procedure (and the
area) the plan was made for, whatever the template says now, so a template changed around the admin (a raw update, a
database console) still books no other treatment into a patient's course. Other edits of a template in use (its
name, its gaps) are taken as before.

The course: the shipped microneedling course (4 / 4 / 6 weeks, microneedling 60 minutes) at the London clinic,
planned from Monday 9 March 2026 with the suite's clock (Monday 2 March 2026, 09:00 London).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError

from plans.models import PlanSession, PlanTemplate, TreatmentPlan
from plans.services import plan_book, plan_replan, plan_replan_propose
from scheduler.booking import Actor, appointment_cancel

pytestmark = pytest.mark.django_db

LONDON = ZoneInfo("Europe/London")
RECEPTION = Actor("reception@test")
MN = "microneedling-course"


def london(*parts) -> datetime:
    return datetime(*parts, tzinfo=LONDON)


@pytest.fixture
def course(templates) -> PlanTemplate:
    return PlanTemplate.objects.get(code=MN, organisation=None)


@pytest.fixture
def plan(patient, clinic, practitioner, course, now) -> TreatmentPlan:
    return plan_book(
        patient=patient, clinic=clinic, template=course, start_at=london(2026, 3, 9), actor=RECEPTION, now=now
    )


def change_form(template: PlanTemplate, **changes) -> dict:
    """The admin's change form for `template` as drawn, with `changes` made."""
    data = {
        "organisation": template.organisation_id or "",
        "code": template.code,
        "name": template.name,
        "procedure": template.procedure_id,
        "kind": template.kind,
        "sessions": template.sessions,
        "min_gap_value": template.min_gap_value,
        "min_gap_unit": template.min_gap_unit,
        "ideal_gap_value": template.ideal_gap_value,
        "ideal_gap_unit": template.ideal_gap_unit,
        "max_gap_value": template.max_gap_value,
        "max_gap_unit": template.max_gap_unit,
        "area": template.area_id or "",
        "source": template.source,
        "note": template.note,
        "is_active": "on" if template.is_active else "",
        "_save": "Save",
    }
    return {k: v for k, v in {**data, **changes}.items() if v != ""}


def admin_change(admin_client, template: PlanTemplate, **changes):
    admin_client.raise_request_exception = False
    return admin_client.post(f"/admin/plans/plantemplate/{template.pk}/change/", change_form(template, **changes))


def third_session_cancelled(plan: TreatmentPlan, now: datetime) -> PlanSession:
    third = plan.sessions.select_related("appointment").get(index=3)
    appointment_cancel(appointment=third.appointment, actor=RECEPTION, now=now, reason="away")
    return third


def read(plan: TreatmentPlan) -> TreatmentPlan:
    """The plan as a later request reads it (its template as it is now, not the booking's copy in memory)."""
    return TreatmentPlan.objects.get(pk=plan.pk)


# --- The admin -------------------------------------------------------------------------------------------------------


def test_the_admin_refuses_another_procedure_for_a_template_plans_use_and_says_to_make_a_new_one(
    admin_client, plan, course
):
    response = admin_change(admin_client, course, procedure="plasma_pen")

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["procedure"]
    assert "Make a new template" in errors["procedure"][0] and "1 treatment plan(s)" in errors["procedure"][0]
    assert PlanTemplate.objects.get(pk=course.pk).procedure_id == "microneedling"


def test_the_admin_takes_other_edits_of_a_template_in_use(admin_client, plan, course):
    response = admin_change(admin_client, course, name="Microneedling, three sessions", ideal_gap_value=5)

    assert response.status_code == 302, response.content.decode()[:2000]
    edited = PlanTemplate.objects.get(pk=course.pk)
    assert (edited.name, edited.ideal_gap_value, edited.procedure_id) == (
        "Microneedling, three sessions",
        5,
        "microneedling",
    )


def test_the_admin_takes_another_procedure_for_a_template_no_plan_uses(admin_client, course):
    response = admin_change(admin_client, course, procedure="plasma_pen")

    assert response.status_code == 302, response.content.decode()[:2000]
    assert PlanTemplate.objects.get(pk=course.pk).procedure_id == "plasma_pen"


def test_a_template_in_use_is_refused_another_procedure_by_its_own_validation_too(plan, course):
    course.procedure_id = "plasma_pen"

    with pytest.raises(ValidationError) as refused:
        course.full_clean()

    assert list(refused.value.message_dict) == ["procedure"]


def test_a_template_in_use_keeping_its_procedure_validates(plan, course):
    course.sessions = 4
    course.full_clean()  # nothing raised


# --- A re-plan books what the plan was made for ----------------------------------------------------------------------


def test_a_replan_after_the_templates_procedure_changed_around_the_admin_books_the_courses_own(plan, course, now):
    third_session_cancelled(plan, now)
    PlanTemplate.objects.filter(pk=course.pk).update(procedure_id="botox")  # Botox: 30 minutes, microneedling 60

    plan_replan(plan=read(plan), from_index=3, start_at=london(2026, 4, 6, 9), actor=RECEPTION, now=now)

    booked = plan.sessions.select_related("appointment").get(index=3).appointment
    assert booked.is_active and booked.procedure_id == "microneedling"
    assert booked.end_at - booked.start_at == timedelta(minutes=60)
    procedures = set(plan.sessions.values_list("appointment__procedure_id", flat=True))
    assert procedures == {"microneedling"}


def test_a_replan_dry_run_proposes_the_courses_own_procedure_and_length(plan, course, now):
    third_session_cancelled(plan, now)
    PlanTemplate.objects.filter(pk=course.pk).update(procedure_id="botox")

    proposal = plan_replan_propose(plan=read(plan), from_index=3, start_at=london(2026, 4, 6, 9))

    assert proposal.request.course.procedure == "microneedling"
    assert proposal.request.course.duration == timedelta(minutes=60)
    assert proposal.plan.feasible


def test_a_replan_keeps_a_course_without_an_area_without_one_after_the_template_was_given_one(plan, course, now):
    assert plan.area_id is None
    third_session_cancelled(plan, now)
    PlanTemplate.objects.filter(pk=course.pk).update(area_id="neck")

    plan_replan(plan=read(plan), from_index=3, start_at=london(2026, 4, 6, 9), actor=RECEPTION, now=now)

    assert plan.sessions.select_related("appointment").get(index=3).appointment.area_id is None


def test_the_procedure_a_plan_was_made_for_is_its_bookings_then_the_templates(plan, course, now):
    third_session_cancelled(plan, now)  # a cancelled booking still says what the course is
    PlanTemplate.objects.filter(pk=course.pk).update(procedure_id="botox")
    fresh = read(plan)

    assert fresh.procedure_made_for().code == "microneedling"  # read in one statement
    sessions = list(fresh.sessions.select_related("appointment__procedure"))
    assert fresh.procedure_made_for(sessions).code == "microneedling"

    PlanSession.objects.filter(plan=fresh).update(appointment=None)  # no session holds a booking any more
    assert fresh.procedure_made_for().code == "botox"
    assert fresh.procedure_made_for(list(fresh.sessions.all())).code == "botox"
