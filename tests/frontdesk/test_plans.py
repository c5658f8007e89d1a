"""Plan a course at the desk: propose (windows, why each session lands where it does), book it whole, the
plan page with statuses and a re-plan, recalls due on Today. `now` is Monday 2 March 2026, 09:00 London."""

from datetime import UTC, date, datetime, timedelta

import pytest

from clinic.models import Appointment
from plans.defaults import plan_templates_load
from plans.models import PlanTemplate, Recall, TreatmentPlan
from plans.services import plan_book
from scheduler import booking
from scheduler.lifecycle import Actor
from tests.factories import AppointmentFactory, PatientFactory
from tests.frontdesk.conftest import url
from tests.frontdesk.html import squash, text_by_id

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def templates(catalogue):
    plan_templates_load()


def _propose(client, clinic, patient, **params):
    return client.get(url("plan_new", clinic, patient), {"template": "microneedling-course", **params})


def test_the_patient_page_links_to_plan_a_course(reception, clinic, patient, frozen):
    page = squash(reception.get(url("patient", clinic, patient)))
    assert f'href="{url("plan_new", clinic, patient)}"' in page and "Plan a course" in page


def test_a_proposal_shows_every_session_with_its_window_and_why(
    reception, clinic, patient, practitioner, botox_five_days_ago, frozen
):
    response = _propose(reception, clinic, patient, start_from="2026-03-02")
    assert response.status_code == 200
    sessions = text_by_id(response.content, "plan-sessions")
    # Botox on 25 February: microneedling from 11 March, then 4 weeks apart.
    assert "Session 1: Wed 11 Mar 2026, 09:00" in sessions
    assert "Botulinum toxin injection (Botox)" in sessions  # why it is not on the start day
    assert "Session 2: Wed 8 Apr 2026, 09:00" in sessions
    assert "Window 8 Apr 2026 – 22 Apr 2026 · ideal 8 Apr 2026" in sessions
    assert "<svg" in squash(response)
    assert not Appointment.objects.exists()


def test_booking_the_proposal_books_the_course_and_opens_the_plan(reception, clinic, patient, practitioner, frozen):
    proposal = _propose(reception, clinic, patient, start_from="2026-03-09")
    sessions = [
        line.split('value="')[1].split('"')[0] for line in squash(proposal).split("<input") if 'name="session"' in line
    ]
    assert len(sessions) == 3
    response = reception.post(
        url("plan_book", clinic, patient),
        {"template": "microneedling-course", "start_from": "2026-03-09", "session": sessions},
    )
    plan = TreatmentPlan.objects.get(patient=patient)
    assert response.status_code == 302 and response["Location"] == url("plan", clinic, plan)
    page = reception.get(response["Location"])
    table = text_by_id(page.content, "plan-session-table")
    assert table.count("Booked") == 3
    assert Appointment.objects.filter(patient=patient).count() == 3
    # The plan says which rule book placed it, as each booking's history does.
    assert plan.rulebook_version == "d1.o1"
    assert 'data-testid="plan-rulebook-version">d1.o1<' in squash(page)


def test_a_session_taken_meanwhile_books_nothing_and_says_which(reception, clinic, patient, practitioner, frozen, now):
    proposal = _propose(reception, clinic, patient, start_from="2026-03-09")
    sessions = [
        line.split('value="')[1].split('"')[0] for line in squash(proposal).split("<input") if 'name="session"' in line
    ]
    second = datetime.fromisoformat(sessions[1].split("|")[0])
    booking.appointment_book(
        patient=PatientFactory(clinic=clinic), procedure_code="botox", start_at=second, actor=Actor("x"), now=now
    )
    response = reception.post(
        url("plan_book", clinic, patient),
        {"template": "microneedling-course", "start_from": "2026-03-09", "session": sessions},
    )
    assert response.status_code == 409
    assert "Session 2 cannot be booked" in text_by_id(response.content, "plan-refused")
    assert not Appointment.objects.filter(patient=patient).exists()


def test_the_plan_page_offers_a_replan_dry_run_first(reception, clinic, patient, practitioner, frozen, now):
    plan = _book_course(patient, now)
    page = reception.get(url("plan", clinic, plan), {"from_session": 2, "start_from": "2026-04-13"})
    assert "Session 2: Mon 13 Apr 2026, 09:00" in text_by_id(page.content, "plan-sessions")
    before = list(Appointment.objects.filter(patient=patient).order_by("start_at").values_list("start_at", flat=True))
    assert before[1].date() == date(2026, 4, 6)  # unchanged by the dry run
    done = reception.post(url("plan_replan", clinic, plan), {"from_session": 2, "start_from": "2026-04-13"})
    assert done.status_code == 302
    after = list(Appointment.objects.filter(patient=patient).order_by("start_at").values_list("start_at", flat=True))
    assert [a.date() for a in after] == [date(2026, 3, 9), date(2026, 4, 13), date(2026, 5, 11)]


def test_another_clinics_plan_is_not_found(reception, clinic, other_patient, other_practitioner, frozen, now):
    theirs = _book_course(other_patient, now)
    assert reception.get(url("plan", clinic, theirs)).status_code == 404


def test_today_lists_recalls_due_and_overdue(reception, clinic, patient, practitioner, frozen, now):
    botox = PlanTemplate.objects.get(code="botox-maintenance")
    earlier = PatientFactory(clinic=clinic, first_name="Grace", last_name="Turner")
    for who, due in ((patient, date(2026, 3, 5)), (earlier, date(2026, 2, 20))):
        done = AppointmentFactory(
            clinic=clinic,
            patient=who,
            practitioner=practitioner,
            procedure_id="botox",
            start_at=now - timedelta(days=100),
            end_at=now - timedelta(days=100) + timedelta(minutes=30),
            status="completed",
        )
        Recall.objects.create(
            patient=who, clinic=clinic, after=done, procedure_id="botox", template=botox, due_on=due, created_at=now
        )
    panel = text_by_id(reception.get(url("today", clinic)).content, "recalls-due")
    assert "Recalls due 2" in panel
    assert "Grace Turner · Botox Overdue" in panel and "Olivia Bennett · Botox Due" in panel


def _book_course(patient, now):
    return plan_book(
        patient=patient,
        clinic=patient.clinic,
        template=PlanTemplate.objects.get(code="microneedling-course"),
        start_at=datetime(2026, 3, 9, 0, tzinfo=UTC),
        actor=Actor("test"),
        now=now,
    )
