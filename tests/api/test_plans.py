"""Treatment plans over the API: templates, a dry run, booking a course whole or not at all, following and
re-planning it; scope and bad input. The clock is Monday 2 March 2026, 09:00 London (tests/api/conftest.py)."""

from datetime import UTC, datetime

import pytest

from clinic.models import Appointment, AppointmentStatus
from plans.defaults import plan_templates_load
from plans.models import PlanSession, PlanTemplate, TreatmentPlan
from plans.services import plan_book
from scheduler import booking
from scheduler.lifecycle import Actor
from tests.api.conftest import problem_of
from tests.factories import MedicationCourseFactory, PatientFactory, ProcedureRecordFactory

pytestmark = pytest.mark.django_db

ACTOR = Actor(label="test")


@pytest.fixture(autouse=True)
def templates(catalogue):
    plan_templates_load()


def _plans(patient) -> str:
    return f"/api/v1/patients/{patient.pk}/plans/"


def test_templates_list_the_shipped_courses_with_their_gaps(api):
    body = api.get("/api/v1/plan-templates/").json()
    by_code = {row["code"]: row for row in body["results"]}
    assert by_code["microneedling-course"]["sessions"] == 3
    assert by_code["microneedling-course"]["min_gap"] == {"value": 4, "unit": "weeks"}
    assert by_code["botox-maintenance"]["ideal_gap"] == {"value": 14, "unit": "weeks"}
    assert by_code["plasma-pen-course"]["max_gap"] == {"value": 8, "unit": "weeks"}


def test_a_dry_run_proposes_every_session_with_its_window_and_books_nothing(api, patient, practitioner):
    response = api.post(
        _plans(patient),
        {"template": "microneedling-course", "start_from": "2026-03-09", "dry_run": True},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["feasible"] is True and body["reason"] is None
    assert [s["start"] for s in body["sessions"]] == [
        "2026-03-09T09:00:00+00:00",
        "2026-04-06T09:00:00+01:00",  # 4 weeks on, London now on summer time: still 09:00 local
        "2026-05-04T09:00:00+01:00",
    ]
    assert body["sessions"][1]["window"] == {"earliest": "2026-04-06", "ideal": "2026-04-06", "latest": "2026-04-20"}
    assert body["sessions"][0]["practitioner"] == str(practitioner.pk)
    assert not Appointment.objects.exists()


def test_booking_a_plan_books_every_session_as_an_ordinary_appointment(api, patient, practitioner):
    response = api.post(
        _plans(patient), {"template": "microneedling-course", "start_from": "2026-03-09"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert [s["status"] for s in body["sessions"]] == ["booked", "booked", "booked"]
    appointments = Appointment.objects.filter(patient=patient).order_by("start_at")
    assert [str(a.pk) for a in appointments] == [s["appointment"] for s in body["sessions"]]
    assert {a.procedure_id for a in appointments} == {"microneedling"}
    detail = api.get(response["Location"]).json()
    assert detail["id"] == body["id"] and detail["template"] == "microneedling-course"


def test_the_plan_respects_the_history_and_says_why(api, patient, practitioner):
    # Botox on 2 March: microneedling not before 16 March.
    ProcedureRecordFactory(patient=patient, procedure_id="botox", performed_at=datetime(2026, 3, 2, 8, tzinfo=UTC))
    body = api.post(
        _plans(patient),
        {"template": "microneedling-course", "start_from": "2026-03-03", "dry_run": True},
        format="json",
    ).json()
    first = body["sessions"][0]
    assert first["start"] == "2026-03-16T09:00:00+00:00"
    assert "Botox" in first["why"]


def test_an_infeasible_plan_names_the_session_and_the_rule(api, patient, practitioner):
    MedicationCourseFactory(
        patient=patient, drug_id="isotretinoin", started_on=datetime(2026, 1, 1).date(), ended_on=None
    )
    dry = api.post(
        _plans(patient),
        {"template": "microneedling-course", "start_from": "2026-03-03", "dry_run": True},
        format="json",
    ).json()
    assert dry["feasible"] is False
    assert dry["obstacle"]["session"] == 1 and "isotretinoin" in dry["reason"].lower()
    refused = problem_of(
        api.post(_plans(patient), {"template": "microneedling-course", "start_from": "2026-03-03"}, format="json"), 409
    )
    assert refused["code"] == "plan_infeasible" and refused["session"] == 1
    assert refused["violations"][0]["kind"] == "interval"
    assert not TreatmentPlan.objects.exists()


def test_a_slot_taken_since_the_dry_run_refuses_the_plan_whole(api, patient, practitioner, now):
    dry = api.post(
        _plans(patient),
        {"template": "microneedling-course", "start_from": "2026-03-09", "dry_run": True},
        format="json",
    ).json()
    # Someone else takes session 2's slot with the same practitioner.
    other = PatientFactory(clinic=patient.clinic)
    booking.appointment_book(
        patient=other,
        procedure_code="botox",
        start_at=datetime.fromisoformat(dry["sessions"][1]["start"]),
        actor=ACTOR,
        now=now,
        practitioner_id=str(practitioner.pk),
    )
    proposal = [{"start": s["start"], "practitioner": s["practitioner"]} for s in dry["sessions"]]
    refused = problem_of(
        api.post(
            _plans(patient),
            {"template": "microneedling-course", "start_from": "2026-03-09", "proposal": proposal},
            format="json",
        ),
        409,
    )
    assert refused["code"] == "plan_refused" and refused["session"] == 2
    assert refused["violations"][0]["kind"] == "availability"
    assert not Appointment.objects.filter(patient=patient).exists()
    assert not TreatmentPlan.objects.exists()


def test_booking_a_plan_is_idempotent(api, patient, practitioner):
    body = {"template": "plasma-pen-course", "start_from": "2026-03-09"}
    first = api.post(_plans(patient), body, format="json", HTTP_IDEMPOTENCY_KEY="plan-1")
    again = api.post(_plans(patient), body, format="json", HTTP_IDEMPOTENCY_KEY="plan-1")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert TreatmentPlan.objects.count() == 1 and Appointment.objects.count() == 2


def test_session_statuses_follow_the_appointments_and_the_windows(api, patient, practitioner, now):
    plan_id = api.post(
        _plans(patient), {"template": "microneedling-course", "start_from": "2026-03-09"}, format="json"
    ).json()["id"]
    sessions = list(PlanSession.objects.filter(plan_id=plan_id).order_by("index"))
    booking.appointment_cancel(appointment=sessions[1].appointment, actor=ACTOR, now=now)
    PlanSession.objects.filter(pk=sessions[2].pk).update(appointment=None)
    statuses = [s["status"] for s in api.get(f"/api/v1/plans/{plan_id}/").json()["sessions"]]
    assert statuses == ["booked", "cancelled", "due"]


def test_replan_moves_the_later_sessions_dry_run_first(api, patient, practitioner):
    plan = api.post(
        _plans(patient), {"template": "microneedling-course", "start_from": "2026-03-09"}, format="json"
    ).json()
    url = f"/api/v1/plans/{plan['id']}/replan/"
    dry = api.post(url, {"from_session": 2, "start": "2026-04-13T09:00:00+01:00", "dry_run": True}, format="json")
    assert dry.status_code == 200, dry.content
    proposed = dry.json()["sessions"]
    assert [s["index"] for s in proposed] == [2, 3]
    assert proposed[0]["start"] == "2026-04-13T09:00:00+01:00"
    assert proposed[1]["start"] == "2026-05-11T09:00:00+01:00"
    unchanged = api.get(f"/api/v1/plans/{plan['id']}/").json()
    assert [s["start"] for s in unchanged["sessions"]] == [s["start"] for s in plan["sessions"]]
    applied = api.post(url, {"from_session": 2, "start": "2026-04-13T09:00:00+01:00"}, format="json")
    assert applied.status_code == 200, applied.content
    assert [s["start"] for s in applied.json()["sessions"]][1:] == [p["start"] for p in proposed]
    assert Appointment.objects.filter(patient=patient, status=AppointmentStatus.CONFIRMED).count() == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"template": "nope", "start_from": "2026-03-09"}, "template"),
        ({"template": "microneedling-course", "start_from": "2026-03-01"}, "start_from"),
        ({"template": "microneedling-course", "start_from": "2026-03-09", "sessions": 0}, "sessions"),
        ({"template": "microneedling-course", "start_from": "2026-03-09", "weekdays": [7]}, "weekdays.0"),
        ({"template": "microneedling-course", "start_from": "2026-03-09", "area": "elbow"}, "area"),
        ({"template": "microneedling-course", "start_from": "2026-03-09", "practitioner": "x"}, "practitioner"),
        ({"template": "microneedling-course", "start_from": "9-3-2026"}, "start_from"),
        (
            {
                "template": "microneedling-course",
                "start_from": "2026-03-09",
                "proposal": [{"start": "2026-03-09T09:00:00+00:00"}],
            },
            "proposal",
        ),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api, patient, practitioner, body, field):
    refused = problem_of(api.post(_plans(patient), body, format="json"), 400)
    assert field in refused["errors"], refused


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"weekdays": [7]}, "weekdays.0"),
        ({"weekdays": "monday"}, "weekdays"),
        ({"times_of_day": ["noon"]}, "times_of_day.0"),
        ({"practitioner": "x"}, "practitioner"),
        ({"from_session": 4}, "from_session"),
    ],
)
def test_bad_replan_input_is_a_400_naming_the_field_and_moves_nothing(api, patient, practitioner, extra, field):
    plan = api.post(
        _plans(patient), {"template": "microneedling-course", "start_from": "2026-03-09"}, format="json"
    ).json()
    body = {"from_session": 2, "start": "2026-04-13T09:00:00+01:00", **extra}
    refused = problem_of(api.post(f"/api/v1/plans/{plan['id']}/replan/", body, format="json"), 400)
    assert field in refused["errors"], refused
    after = api.get(f"/api/v1/plans/{plan['id']}/").json()
    assert [s["start"] for s in after["sessions"]] == [s["start"] for s in plan["sessions"]]


def test_a_proposed_session_outside_its_window_is_a_400(api, patient, practitioner):
    proposal = [
        {"start": "2026-03-09T09:00:00+00:00"},
        {"start": "2026-03-16T09:00:00+00:00"},  # one week on: the window opens at four
        {"start": "2026-04-13T09:00:00+01:00"},
    ]
    refused = problem_of(
        api.post(
            _plans(patient),
            {"template": "microneedling-course", "start_from": "2026-03-09", "proposal": proposal},
            format="json",
        ),
        400,
    )
    assert refused["code"] == "plan_session_outside_window" and "proposal.1.start" in refused["errors"]


def test_another_clinics_patient_and_plan_are_not_found(api, other_patient, other_practitioner, patient, practitioner):
    problem_of(
        api.post(
            _plans(other_patient), {"template": "microneedling-course", "start_from": "2026-03-09"}, format="json"
        ),
        404,
    )
    theirs = plan_book(
        patient=other_patient,
        clinic=other_patient.clinic,
        template=PlanTemplate.objects.get(code="plasma-pen-course"),
        start_at=datetime(2026, 3, 9, 14, tzinfo=UTC),
        actor=ACTOR,
        now=datetime(2026, 3, 2, 9, tzinfo=UTC),
    )
    problem_of(api.get(f"/api/v1/plans/{theirs.pk}/"), 404)
    problem_of(
        api.post(
            f"/api/v1/plans/{theirs.pk}/replan/",
            {"from_session": 1, "start": "2026-03-20T10:00:00+00:00"},
            format="json",
        ),
        404,
    )
