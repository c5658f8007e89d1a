"""A patient's plans listed (`GET /patients/{id}/plans/`) and a course cancelled whole (`POST /plans/{id}/cancel/`),
docs/plans.md: scope, the answer's shape, a constant number of statements for the list, the cancellation's effects
seen by a platform (bookings cancelled, webhooks), replays, and bad input. The clock is Monday 2 March 2026,
09:00 London (tests/api/conftest.py)."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from clinic.models import Appointment, AppointmentStatus
from plans.models import PlanTemplate, TreatmentPlan
from plans.services import plan_book
from reminders.models import MessageKind, OutboxMessage
from scheduler.lifecycle import Actor
from tests.api.conftest import http, new_api_client, problem_of
from tests.factories import PatientFactory, PractitionerFactory

pytestmark = pytest.mark.django_db

ACTOR = Actor(label="test")
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _templates(templates):
    pass


def _book(patient, clinic, start=datetime(2026, 3, 9, 0, tzinfo=UTC), code="microneedling-course", now=NOW):
    return plan_book(
        patient=patient,
        clinic=clinic,
        template=PlanTemplate.objects.get(code=code),
        start_at=start,
        actor=ACTOR,
        now=now,
    )


def _list(api, patient, **params):
    return api.get(f"/api/v1/patients/{patient.pk}/plans/", params)


def _cancel(api, plan, body=None, **headers):
    return api.post(f"/api/v1/plans/{plan.pk}/cancel/", body if body is not None else {}, format="json", **headers)


# --- The list ----------------------------------------------------------------------------------------------------


def test_a_patient_with_no_plan_lists_none(api, patient):
    response = _list(api, patient)
    assert response.status_code == 200
    assert response.json()["results"] == [] and response.json()["count"] == 0


def test_the_list_holds_each_plan_newest_first_as_its_own_address_answers(api, patient, clinic, practitioner):
    older = _book(patient, clinic, now=datetime(2026, 3, 1, 9, tzinfo=UTC))
    newer = _book(patient, clinic, start=datetime(2026, 3, 10, 0, tzinfo=UTC), code="plasma-pen-course")
    body = _list(api, patient).json()
    assert [row["id"] for row in body["results"]] == [str(newer.pk), str(older.pk)]
    for row in body["results"]:
        assert row == api.get(f"/api/v1/plans/{row['id']}/").json()
    assert body["results"][1]["template"] == "microneedling-course"
    assert [s["status"] for s in body["results"][1]["sessions"]] == ["booked"] * 3
    assert body["results"][0]["cancelled_at"] is None and body["results"][0]["cancel_reason"] == ""


def test_the_list_reads_the_same_statements_however_many_plans_and_sessions(api, patient, clinic, practitioner):
    def statements() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert _list(api, patient).status_code == 200
        return len(queries)

    _book(patient, clinic, code="plasma-pen-course")
    statements()  # the caller's first request reads what later ones find cached
    one = statements()
    for week in (10, 20, 30):
        _book(patient, clinic, start=datetime(2026, 3, 9 + week // 10, 0, tzinfo=UTC), code="botox-maintenance")
    assert TreatmentPlan.objects.filter(patient=patient).count() == 4
    assert statements() == one


def test_the_list_holds_only_plans_at_the_callers_clinics(patient, clinic, west, west_practitioner, practitioner):
    at_west = _book(patient, west)
    at_home = _book(patient, clinic, start=datetime(2026, 3, 10, 0, tzinfo=UTC), code="plasma-pen-course")
    home_only = http(new_api_client(clinic)[1])
    assert [row["id"] for row in _list(home_only, patient).json()["results"]] == [str(at_home.pk)]
    both = http(new_api_client(clinic, west)[1])
    assert {row["id"] for row in _list(both, patient).json()["results"]} == {str(at_home.pk), str(at_west.pk)}


def test_another_organisations_patient_is_a_404(api, other_patient, other_clinic):
    PractitionerFactory(clinic=other_clinic)
    _book(other_patient, other_clinic)
    assert problem_of(_list(api, other_patient), 404)["code"] == "unknown_patient"


def test_a_page_past_the_last_is_a_400(api, patient):
    assert problem_of(_list(api, patient, page=5), 400)["code"] == "page_out_of_range"


# --- Cancelling a course -------------------------------------------------------------------------------------------


def test_cancelling_answers_the_plan_with_every_session_cancelled(api, clinical_api, patient, clinic, practitioner):
    plan = _book(patient, clinic)
    response = _cancel(api, plan, {"reason": "  Moving abroad "})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == str(plan.pk)
    # The clock's Monday, 09:00 London (it ticks on from there), in the plan's clinic's zone.
    assert body["cancelled_at"].startswith("2026-03-02T09:0") and body["cancelled_at"].endswith("+00:00")
    # The words are the clinic's and a clinical caller's (docs/plans.md): this platform's key has no clinical right.
    assert body["cancel_reason"] == ""
    assert clinical_api.get(f"/api/v1/plans/{plan.pk}/").json()["cancel_reason"] == "Moving abroad"
    assert [s["status"] for s in body["sessions"]] == ["cancelled"] * 3
    assert [s["appointment_status"] for s in body["sessions"]] == ["cancelled"] * 3
    assert set(Appointment.objects.filter(patient=patient).values_list("status", flat=True)) == {
        AppointmentStatus.CANCELLED
    }
    assert api.get(f"/api/v1/plans/{plan.pk}/").json() == body


def test_a_platform_hears_each_booking_cancelled(api, patient, clinic, practitioner):
    hook = api.post(
        "/api/v1/webhooks/",
        {"url": "https://platform.example/hooks", "events": ["appointment.cancelled"]},
        format="json",
    )
    assert hook.status_code == 201, hook.content
    plan = _book(patient, clinic)
    assert _cancel(api, plan).status_code == 200
    events = OutboxMessage.objects.filter(kind=MessageKind.WEBHOOK, event="appointment.cancelled")
    session_bookings = {str(s.appointment_id) for s in plan.sessions.all()}
    assert {str(e.appointment_id) for e in events} == session_bookings and events.count() == 3


def test_cancelling_again_is_a_409_and_a_replay_of_the_same_key_is_the_first_answer(api, patient, clinic, practitioner):
    plan = _book(patient, clinic)
    first = _cancel(api, plan, {"reason": "No longer wanted"}, HTTP_IDEMPOTENCY_KEY="cancel-course-1")
    replay = _cancel(api, plan, {"reason": "No longer wanted"}, HTTP_IDEMPOTENCY_KEY="cancel-course-1")
    assert first.status_code == replay.status_code == 200 and replay.json() == first.json()
    again = problem_of(_cancel(api, plan, {"reason": "No longer wanted"}), 409)
    assert again["code"] == "plan_cancelled" and "cancelled on" in again["detail"]
    reused = problem_of(_cancel(api, plan, {"reason": "Other"}, HTTP_IDEMPOTENCY_KEY="cancel-course-1"), 422)
    assert reused["code"] == "idempotency_key_reused"


def test_a_cancelled_course_is_not_re_planned(api, patient, clinic, practitioner):
    plan = _book(patient, clinic)
    _cancel(api, plan)
    for dry_run in (True, False):
        refused = problem_of(
            api.post(
                f"/api/v1/plans/{plan.pk}/replan/",
                {"from_session": 1, "start": "2026-03-16T09:00:00+00:00", "dry_run": dry_run},
                format="json",
            ),
            409,
        )
        assert refused["code"] == "plan_cancelled"
    assert set(Appointment.objects.filter(patient=patient).values_list("status", flat=True)) == {"cancelled"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": 12}, "reason"),
        ({"reason": None}, "reason"),
        ({"reason": "x" * 2001}, "reason"),
        ({"reason": "ok", "why": "extra"}, "why"),
    ],
    ids=["number", "null", "too-long", "unknown-field"],
)
def test_bad_input_is_a_400_naming_the_field_and_cancels_nothing(api, patient, clinic, practitioner, body, field):
    plan = _book(patient, clinic)
    problem = problem_of(_cancel(api, plan, body), 400)
    assert field in problem["errors"]
    plan.refresh_from_db()
    assert plan.cancelled_at is None
    assert not Appointment.objects.filter(patient=patient, status=AppointmentStatus.CANCELLED).exists()


def test_a_plan_out_of_reach_is_a_404_and_nothing_changes(
    api, patient, clinic, west, west_practitioner, other_clinic, other_patient
):
    at_west = _book(patient, west)
    PractitionerFactory(clinic=other_clinic)
    elsewhere = _book(other_patient, other_clinic)
    for plan in (at_west, elsewhere):
        assert problem_of(_cancel(api, plan), 404)["code"] == "unknown_plan"
        plan.refresh_from_db()
        assert plan.cancelled_at is None
    assert problem_of(api.post("/api/v1/plans/not-a-uuid/cancel/", {}, format="json"), 404)["code"] == "unknown_plan"


def test_the_schema_publishes_both_operations(api):
    schema = api.get("/api/v1/schema/", {"format": "json"}).json()
    assert schema["paths"]["/api/v1/patients/{patient_id}/plans/"]["get"]["operationId"] == "patients_plans_list"
    cancel = schema["paths"]["/api/v1/plans/{plan_id}/cancel/"]["post"]
    assert cancel["operationId"] == "plans_cancel" and "409" in cancel["responses"]


def test_a_second_patient_of_the_clinic_sees_none_of_the_firsts_plans(api, patient, clinic, practitioner):
    _book(patient, clinic)
    assert _list(api, PatientFactory(clinic=clinic)).json()["results"] == []
