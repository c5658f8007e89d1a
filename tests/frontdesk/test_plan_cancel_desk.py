"""Cancelling a whole course at the desk (the plan's page, docs/frontdesk.md): the form, what it cancels, what the
page says after, bad input and a second click. `now` is Monday 2 March 2026, 09:00 London."""

from datetime import UTC, datetime

import pytest

from clinic.models import AppointmentStatus
from plans.defaults import plan_templates_load
from plans.models import PlanTemplate
from plans.services import plan_book
from scheduler.lifecycle import Actor
from tests.frontdesk.conftest import url
from tests.frontdesk.html import squash, text_by_id

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def templates(catalogue):
    plan_templates_load()


@pytest.fixture
def plan(patient, clinic, practitioner, now):
    return plan_book(
        patient=patient,
        clinic=clinic,
        template=PlanTemplate.objects.get(code="microneedling-course"),
        start_at=datetime(2026, 3, 9, 0, tzinfo=UTC),
        actor=Actor("test"),
        now=now,
    )


def _statuses(plan):
    return [s.appointment.status for s in plan.sessions.select_related("appointment").order_by("index")]


def test_the_plan_page_offers_to_cancel_the_course(reception, clinic, plan, frozen):
    page = squash(reception.get(url("plan", clinic, plan)))
    assert f'action="{url("plan_cancel", clinic, plan)}"' in page
    assert "Cancel the whole course" in page and "Reason for cancelling (optional)" in page


def test_cancelling_cancels_the_bookings_and_the_page_says_so(reception, clinic, patient, plan, frozen):
    response = reception.post(url("plan_cancel", clinic, plan), {"reason": "Moving abroad"})
    assert response.status_code == 302 and response["Location"] == url("plan", clinic, plan)
    assert _statuses(plan) == [AppointmentStatus.CANCELLED] * 3
    page = reception.get(response["Location"])
    body = squash(page)
    assert "Microneedling course" in body and "cancelled: its bookings still to come are cancelled" in body
    assert "Cancelled 2 Mar 2026" in body and "Moving abroad" in body
    table = text_by_id(page.content, "plan-session-table")
    assert table.count("Cancelled") == 3
    # Nothing is offered that no longer makes sense: no re-plan, no second cancel.
    assert "Re-plan from here" not in body and "Cancel the whole course" not in body
    patient_page = squash(reception.get(url("patient", clinic, patient)))
    plans = patient_page[patient_page.index('id="patient-plans"') :]
    assert "plan-status--cancelled" in plans[: plans.index("</section>")]


def test_a_second_click_changes_nothing_and_says_why(reception, clinic, plan, frozen):
    reception.post(url("plan_cancel", clinic, plan), {"reason": "first"})
    page = squash(reception.post(url("plan_cancel", clinic, plan), {"reason": "second"}, follow=True))
    assert "The course was cancelled on 02 Mar 2026" in page
    plan.refresh_from_db()
    assert plan.cancel_reason == "first"


def test_a_reason_too_long_cancels_nothing_and_says_so(reception, clinic, plan, frozen):
    page = squash(reception.post(url("plan_cancel", clinic, plan), {"reason": "x" * 2001}, follow=True))
    assert "at most 2000 characters" in page
    assert _statuses(plan) == [AppointmentStatus.CONFIRMED] * 3
    plan.refresh_from_db()
    assert plan.cancelled_at is None


def test_a_get_is_refused_and_another_clinics_plan_is_not_found(reception, clinic, other_clinic, plan, frozen):
    assert reception.get(url("plan_cancel", clinic, plan)).status_code == 405
    assert reception.post(url("plan_cancel", other_clinic, plan), {}).status_code in (403, 404)
    assert _statuses(plan) == [AppointmentStatus.CONFIRMED] * 3


def test_a_course_whose_every_session_is_done_offers_no_cancel(reception, clinic, plan, frozen):
    from scheduler.booking import appointment_complete

    for session in plan.sessions.select_related("appointment"):
        appointment = session.appointment
        appointment_complete(appointment=appointment, actor=Actor("dr", clinical=True), now=appointment.start_at)
    page = squash(reception.get(url("plan", clinic, plan)))
    assert "Cancel the whole course" not in page
    answer = squash(reception.post(url("plan_cancel", clinic, plan), {}, follow=True))
    assert "Every session of this course is done" in answer
    plan.refresh_from_db()
    assert plan.cancelled_at is None
