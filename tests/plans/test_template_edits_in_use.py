"""A plan template edited while courses made from it are under way (plans.models, plans.admin, plans.services;
docs/plans.md, "Templates" and "Re-plan").

A course is booked as one treatment: the admin refuses giving a template plans already use another procedure (as it
refuses deleting it; a course of another procedure is a new template), nor another organisation (a course is never
run by another tenant's template) nor another kind (its courses read as a course, "Session 2 of 3"), one refusal on
the field changed, and a re-plan books the procedure (and the area) the plan was made for, whatever the template says
now, so a template changed around the admin (a raw update, a database console) still books no other treatment into a
patient's course. Other edits of a template in use (its name, its gaps) are taken as before.

The course: the shipped microneedling course (4 / 4 / 6 weeks, microneedling 60 minutes) at the London clinic,
planned from Monday 9 March 2026 with the suite's clock (Monday 2 March 2026, 09:00 London).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from clinic.models import Organisation, StaffMembership, StaffRole
from plans.models import PlanKind, PlanSession, PlanTemplate, TreatmentPlan
from plans.services import plan_book, plan_cancel, plan_replan, plan_replan_propose
from scheduler.booking import Actor, appointment_cancel
from tests.plans.helpers import admin_change

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


def test_the_admin_refuses_another_organisation_for_a_default_plans_use(admin_client, plan, course, clinic):
    """The London organisation's course runs on the default: moved to another organisation, it would be run by
    that tenant's template, and no longer be among London's."""
    other = Organisation.objects.create(code="elsewhere", name="Elsewhere Skin")

    response = admin_change(admin_client, course, organisation=other.pk)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["organisation"]
    assert errors["organisation"][0] == (
        "1 treatment plan(s) use this template, as a default every organisation starts from: its organisation cannot "
        "change. Make a new template in the other organisation (and untick Is active here if this course is no longer "
        "offered)."
    )
    assert PlanTemplate.objects.get(pk=course.pk).organisation_id is None
    assert course in PlanTemplate.objects.for_organisation(clinic.organisation_id)


def test_an_organisations_template_in_use_is_refused_becoming_a_default_naming_its_organisation(plan, course, clinic):
    own = PlanTemplate.objects.get(pk=course.pk)
    PlanTemplate.objects.filter(pk=course.pk).update(organisation=clinic.organisation)  # London's own, in use
    own.organisation = None

    with pytest.raises(ValidationError) as refused:
        own.full_clean()

    assert list(refused.value.message_dict) == ["organisation"]
    assert (
        f"as a template of {clinic.organisation.name}: its organisation cannot change"
        in (refused.value.message_dict["organisation"][0])
    )


def test_the_admin_refuses_another_kind_for_a_template_plans_use(admin_client, plan, course):
    response = admin_change(admin_client, course, kind=PlanKind.MAINTENANCE)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["kind"]
    assert errors["kind"][0].startswith("1 treatment plan(s) use this template, as a course: its kind cannot change.")
    assert "Make a new template of the other kind" in errors["kind"][0]
    assert PlanTemplate.objects.get(pk=course.pk).kind == PlanKind.COURSE


def test_a_course_under_way_still_reads_session_2_of_3_on_the_calendar_after_a_kind_change_was_refused(
    admin_client, plan, course, clinic
):
    user = get_user_model().objects.create_user(username="desk-london", password="pw-for-tests-only-123")
    StaffMembership.objects.create(user=user, clinic=clinic, role=StaffRole.RECEPTIONIST)
    desk = Client()
    desk.force_login(user)

    assert admin_change(admin_client, course, kind=PlanKind.MAINTENANCE).status_code == 200  # refused
    second = plan.sessions.select_related("appointment").get(index=2).appointment
    day = second.start_at.astimezone(clinic.tz).date().isoformat()

    calendar = desk.get(reverse("frontdesk:calendar", args=[clinic.code]), {"date": day})
    assert calendar.status_code == 200
    assert "Session 2 of 3" in calendar.content.decode()


def test_the_admin_names_every_kept_field_changed_at_once_and_saves_none_of_the_edit(admin_client, plan, course):
    other = Organisation.objects.create(code="elsewhere", name="Elsewhere Skin")

    response = admin_change(
        admin_client, course, procedure="plasma_pen", organisation=other.pk, kind=PlanKind.MAINTENANCE, name="Renamed"
    )

    assert response.status_code == 200
    assert sorted(response.context["adminform"].form.errors) == ["kind", "organisation", "procedure"]
    stored = PlanTemplate.objects.get(pk=course.pk)
    assert (stored.name, stored.procedure_id, stored.organisation_id, stored.kind) == (
        course.name,
        "microneedling",
        None,
        PlanKind.COURSE,
    )


def test_a_cancelled_course_still_keeps_its_template_as_it_was(plan, course, now):
    """A course the patient stopped is still a plan made from the template (its history reads it)."""
    plan_cancel(plan=plan, actor=RECEPTION, now=now, reason="moved away")
    course.kind = PlanKind.MAINTENANCE

    with pytest.raises(ValidationError) as refused:
        course.full_clean()

    assert list(refused.value.message_dict) == ["kind"]


def test_the_admin_takes_another_organisation_and_kind_for_a_template_no_plan_uses(admin_client, course):
    other = Organisation.objects.create(code="elsewhere", name="Elsewhere Skin")

    response = admin_change(admin_client, course, organisation=other.pk, kind=PlanKind.MAINTENANCE)

    assert response.status_code == 302, response.content.decode()[:2000]
    stored = PlanTemplate.objects.get(pk=course.pk)
    assert (stored.organisation_id, stored.kind) == (other.pk, PlanKind.MAINTENANCE)


def test_checking_a_template_in_use_unchanged_costs_one_read_and_no_count(plan, course, django_assert_num_queries):
    course.name = "Microneedling, three sessions"

    with django_assert_num_queries(1):  # the stored row; the plans are counted only for a kept field changed
        course._in_use_refusal()


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

    sessions = list(fresh.sessions.select_related("appointment__procedure"))
    assert fresh.procedure_made_for(sessions).code == "microneedling"

    PlanSession.objects.filter(plan=fresh).update(appointment=None)  # no session holds a booking any more
    assert fresh.procedure_made_for(list(fresh.sessions.all())).code == "botox"
