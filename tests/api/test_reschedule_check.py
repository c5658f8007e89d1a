"""The reschedule's dry run, and the booking's `clinic` (the contract's v1 additions), over HTTP.

The clock is Monday 2 March 2026, 09:00 UTC; London is on GMT (+00:00).
"""

from datetime import UTC, datetime

import pytest

from clinic.models import Appointment, AuditEvent
from tests.api.conftest import http, new_api_client, problem_of
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory, ProcedureRecordFactory

pytestmark = pytest.mark.django_db

TUESDAY_10 = "2026-03-03T10:00:00+00:00"


def book(api, patient, procedure="botox", start=TUESDAY_10, **extra):
    return api.post(
        "/api/v1/appointments/",
        {"patient": str(patient.pk), "procedure": procedure, "start": start, **extra},
        format="json",
    )


@pytest.fixture
def booked(api, patient, practitioner):
    response = book(api, patient)
    assert response.status_code == 201, response.content
    return response.json()


def check(api, appointment_id, **body):
    return api.post(f"/api/v1/appointments/{appointment_id}/reschedule-check/", body, format="json")


def test_reschedule_check_answers_like_eligibility_and_moves_nothing(api, booked):
    response = check(api, booked["id"], start="2026-03-04T11:00:00+00:00")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["eligible"] is True and body["status"] == "confirmed"
    assert set(body) >= {"violations", "warnings", "earliest_eligible_start", "next_available_slot"}
    appointment = Appointment.objects.get(pk=booked["id"])
    assert appointment.start_at == datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
    assert AuditEvent.objects.filter(appointment=appointment).count() == 1  # the booking only


def test_reschedule_check_refusal_is_a_200_with_the_violations(api, patient, booked):
    # Botox soon after microneedling is refused: a microneedling the patient reports from yesterday.
    ProcedureRecordFactory(
        patient=patient, procedure_id="microneedling", performed_at=datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    )
    response = check(api, booked["id"], start="2026-03-04T11:00:00+00:00")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["eligible"] is False and body["status"] == "refused"
    assert body["violations"] and body["earliest_eligible_start"]


def test_reschedule_check_leaves_out_the_appointment_itself(api, booked):
    # Its own slot is free for it: the dry run of a move by 0 minutes does not clash with itself.
    response = check(api, booked["id"], start=TUESDAY_10)
    assert response.status_code == 200 and response.json()["eligible"] is True, response.content


def test_reschedule_check_of_a_cancelled_appointment_is_a_409(api, booked):
    assert api.post(f"/api/v1/appointments/{booked['id']}/cancel/", {}, format="json").status_code == 200
    assert problem_of(check(api, booked["id"], start=TUESDAY_10), 409)["code"] == "not_reschedulable"


def test_reschedule_check_problems(api, booked, other_clinic):
    assert problem_of(check(api, booked["id"], start="2026-03-04T11:00:00"), 400)["errors"]["start"]
    assert problem_of(check(api, booked["id"], start="2026-03-01T11:00:00+00:00"), 400)["code"] == "start_in_past"
    assert problem_of(check(api, booked["id"]), 400)["errors"]["start"]
    other = http(new_api_client(other_clinic)[1])
    assert problem_of(check(other, booked["id"], start=TUESDAY_10), 404)["code"] == "unknown_appointment"
    assert problem_of(check(api, "nope", start=TUESDAY_10), 404)


# --- `clinic` on booking --------------------------------------------------------------------------------


def test_booking_with_the_patients_clinic_by_id_or_code(api, patient, practitioner, clinic):
    response = book(api, patient, clinic=clinic.code, practitioner=str(practitioner.pk))
    assert response.status_code == 201, response.content
    assert response.json()["clinic"] == str(clinic.pk)
    response = book(api, PatientFactory(clinic=clinic), clinic=str(clinic.pk), start="2026-03-04T10:00:00+00:00")
    assert response.status_code == 201, response.content


def test_booking_with_a_clinic_that_is_not_the_practitioners_is_a_400(clinic, patient, practitioner, catalogue):
    second = ClinicFactory(code="west", name="West", timezone="Europe/London")
    elsewhere = PractitionerFactory(clinic=second, name="Dr West")
    api = http(new_api_client(clinic, second)[1])
    body = problem_of(book(api, patient, clinic="west"), 400)
    assert body["code"] == "clinic_mismatch" and body["errors"]["clinic"]
    body = problem_of(book(api, patient, clinic=clinic.code, practitioner=str(elsewhere.pk)), 400)
    assert body["code"] == "clinic_mismatch"
    assert not Appointment.objects.exists()


def test_booking_with_a_clinic_outside_your_scope_is_no_such_clinic(api, patient, practitioner, other_clinic):
    for value in (other_clinic.code, str(other_clinic.pk), "nowhere"):
        body = problem_of(book(api, patient, clinic=value), 400)
        assert body["code"] == "unknown_clinic" and body["errors"] == {"clinic": ["There is no such clinic."]}


def test_eligibility_checks_the_clinic_too(api, patient, practitioner, other_clinic):
    response = api.post(
        "/api/v1/eligibility/",
        {"patient": str(patient.pk), "procedure": "botox", "start": TUESDAY_10, "clinic": other_clinic.code},
        format="json",
    )
    assert problem_of(response, 400)["code"] == "unknown_clinic"
