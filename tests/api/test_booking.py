"""Eligibility, availability and appointments: the contract's booking outcomes, over HTTP.

The clock is Monday 2 March 2026, 09:00 UTC; London is on GMT (+00:00) until 29 March.
"""

from datetime import UTC, datetime

import pytest

from clinic.models import Appointment, AppointmentStatus, AuditEvent, ProcedureRecord
from tests.api.conftest import http, new_api_client, problem_of, session
from tests.api.helpers import TUESDAY_10, book
from tests.factories import (
    AppointmentFactory,
    MedicationCourseFactory,
    PatientConditionFactory,
    PatientFactory,
    PractitionerFactory,
    ProcedureRecordFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def botox_last_week(patient):
    return ProcedureRecordFactory(
        patient=patient, procedure_id="botox", performed_at=datetime(2026, 2, 25, 10, 0, tzinfo=UTC)
    )


# --- Booking: 201 ------------------------------------------------------------------------------


def test_book_201_confirmed(api, patient, practitioner):
    response = book(api, patient, area="face")
    assert response.status_code == 201, response.content
    body = response.json()
    appointment = Appointment.objects.get()
    assert body == {
        "id": str(appointment.pk),
        "patient": str(patient.pk),
        "procedure": "microneedling",
        "practitioner": str(practitioner.pk),
        "clinic": str(patient.clinic_id),
        "start": "2026-03-03T10:00:00+00:00",
        "end": "2026-03-03T11:00:00+00:00",
        "area": "face",
        "status": "confirmed",
        "review_reasons": [],
        "sequence": 1,
        "warnings": [],
        "rulebook_version": "d1.o1",
    }
    assert response["Location"] == f"/api/v1/appointments/{appointment.pk}/"
    assert AuditEvent.objects.get().actor_label.startswith("API client")


def test_book_times_come_back_in_the_clinics_offset(other_clinic, other_patient, other_practitioner):
    api = http(new_api_client(other_clinic)[1])
    response = book(api, other_patient, start="2026-03-03T15:00:00Z")  # 10:00 in New York (EST)
    assert response.status_code == 201, response.content
    assert response.json()["start"] == "2026-03-03T10:00:00-05:00"


def test_book_201_pending_clearance_on_a_relative_contraindication(api, patient, practitioner):
    PatientConditionFactory(patient=patient, condition_id="eczema", status="history")
    response = book(api, patient)
    assert response.status_code == 201
    assert response.json()["status"] == AppointmentStatus.PENDING_CLEARANCE


def test_book_201_with_warnings(api, patient, practitioner):
    MedicationCourseFactory(patient=patient, drug_id="isotretinoin", started_on="2025-01-01", ended_on="2025-06-01")
    response = book(api, patient)
    assert response.status_code == 201, response.content
    [warning] = response.json()["warnings"]
    assert warning["severity"] == "warn" and warning["kind"] == "interval"
    assert warning["conflicts_with"]["at"] == "2025-06-01"  # a course: its end date


# --- Booking: 409 ------------------------------------------------------------------------------------


def test_book_409_too_soon_with_earliest_eligible_start_and_next_slot(api, patient, practitioner, botox_last_week):
    body = problem_of(book(api, patient), 409)
    assert body["code"] == "booking_refused"
    [violation] = body["violations"]
    assert violation == {
        "code": "interval_too_soon_after",
        "kind": "interval",
        "severity": "block",
        "message": violation["message"],
        "rule": violation["rule"],
        "source": violation["source"],
        "conflicts_with": {
            "id": str(botox_last_week.pk),
            "kind": "procedure",
            "code": "botox",
            "at": "2026-02-25T10:00:00+00:00",
            "clinic": None,  # history with no appointment of ours behind it
        },
        "earliest_allowed": "2026-03-11T00:00:00+00:00",
    }
    assert violation["rule"] and "2 weeks" in violation["message"]
    assert body["earliest_eligible_start"] == "2026-03-11T00:00:00+00:00"
    assert body["next_available_slot"] == {
        "start": "2026-03-11T09:00:00+00:00",
        "end": "2026-03-11T10:00:00+00:00",
        "practitioner": str(practitioner.pk),
        "practitioner_name": "Dr Ada",
    }
    assert not Appointment.objects.exists()


def test_book_409_absolute_contraindication_has_no_earliest_start(api, patient, practitioner):
    PatientConditionFactory(patient=patient, condition_id="scleroderma", status="history")
    body = problem_of(book(api, patient), 409)
    assert body["violations"][0]["kind"] == "contraindication"
    assert body["violations"][0]["severity"] == "absolute"
    assert body["violations"][0]["conflicts_with"]["at"] is None
    assert body["earliest_eligible_start"] is None and body["next_available_slot"] is None


def test_book_409_taken_slot(api, patient, practitioner, clinic):
    assert book(api, patient, procedure="botox").status_code == 201
    someone = PatientFactory(clinic=clinic)
    body = problem_of(book(api, someone, procedure="botox"), 409)
    assert [v["kind"] for v in body["violations"]] == ["availability"]
    assert body["violations"][0]["code"] == "slot_taken" and body["violations"][0]["rule"] is None
    assert body["earliest_eligible_start"] == TUESDAY_10
    assert body["next_available_slot"]["start"] == "2026-03-03T10:30:00+00:00"  # Botox takes 30 minutes


def test_book_409_outside_working_hours(api, patient, practitioner):
    body = problem_of(book(api, patient, start="2026-03-08T10:00:00+00:00"), 409)  # a Sunday
    assert body["violations"][0]["code"] == "outside_working_hours"


# --- Booking: 400 and tenancy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, field",
    [
        ({"start": "2026-03-03T10:00:00"}, "start"),
        ({"start": "2026-03-03"}, "start"),
        ({"start": "next tuesday"}, "start"),
        ({"start": 1772532000}, "start"),
        ({"start": "2026-03-03T10:00:30+00:00"}, "start"),
        ({"start": "2026-03-01T10:00:00+00:00"}, "start"),
        ({"procedure": "laser"}, "procedure"),
        ({"procedure": ["botox"]}, "procedure"),
        ({"area": "elbow"}, "area"),
        ({"practitioner": "not-an-id"}, "practitioner"),
        ({"patient": None}, "patient"),
    ],
)
def test_book_malformed_is_400_with_errors(api, patient, practitioner, override, field):
    payload = {"patient": str(patient.pk), "procedure": "microneedling", "start": TUESDAY_10, **override}
    body = problem_of(api.post("/api/v1/appointments/", payload, format="json"), 400)
    assert field in body["errors"], body
    assert not Appointment.objects.exists()


def test_book_missing_fields_is_400(api):
    body = problem_of(api.post("/api/v1/appointments/", {}, format="json"), 400)
    assert set(body["errors"]) == {"patient", "procedure", "start"}


def test_book_another_clinics_patient_is_refused_like_a_missing_one(api, other_patient, practitioner):
    outside = problem_of(book(api, other_patient), 400)
    assert outside["errors"] == {"patient": ["There is no such patient."]}
    assert not Appointment.objects.exists()


def test_book_with_another_clinics_practitioner_is_400(api, patient, practitioner, other_practitioner):
    body = problem_of(book(api, patient, practitioner=str(other_practitioner.pk)), 400)
    assert body["errors"] == {"practitioner": ["There is no such practitioner at this clinic."]}
    assert not Appointment.objects.exists()


def test_book_cannot_set_status_or_clinic(api, patient, practitioner, other_clinic):
    # `clinic` is a booking field since the contract's v1 additions (tests/api/test_reschedule_check.py):
    # it may only name one of the caller's clinics, the patient's and the practitioner's.
    body = problem_of(book(api, patient, status="completed", clinic=str(other_clinic.pk)), 400)
    assert set(body["errors"]) == {"status"}
    body = problem_of(book(api, patient, clinic=str(other_clinic.pk)), 400)
    assert body["errors"] == {"clinic": ["There is no such clinic."]}


# --- Eligibility ----------------------------------------------------------------------------------------


def test_eligibility_refused_matches_booking_409(api, patient, practitioner, botox_last_week):
    payload = {"patient": str(patient.pk), "procedure": "microneedling", "start": TUESDAY_10}
    body = api.post("/api/v1/eligibility/", payload, format="json").json()
    assert body["eligible"] is False and body["status"] == "refused"
    assert body["earliest_eligible_start"] == "2026-03-11T00:00:00+00:00"
    assert body["violations"][0]["code"] == "interval_too_soon_after"
    assert body["next_available_slot"]["start"] == "2026-03-11T09:00:00+00:00"
    assert not Appointment.objects.exists()


def test_eligibility_pending_and_confirmed(api, patient, practitioner):
    payload = {"patient": str(patient.pk), "procedure": "microneedling", "start": TUESDAY_10}
    assert api.post("/api/v1/eligibility/", payload, format="json").json()["status"] == "confirmed"
    PatientConditionFactory(patient=patient, condition_id="eczema", status="history")
    body = api.post("/api/v1/eligibility/", payload, format="json").json()
    assert (body["eligible"], body["status"]) == (True, "pending_clearance")
    assert body["violations"][0]["severity"] == "relative"


def test_eligibility_400_and_scope(api, patient, other_patient):
    problem_of(
        api.post(
            "/api/v1/eligibility/",
            {"patient": str(patient.pk), "procedure": "microneedling", "start": "2026-03-03T10:00"},
            format="json",
        ),
        400,
    )
    body = problem_of(
        api.post(
            "/api/v1/eligibility/",
            {"patient": str(other_patient.pk), "procedure": "botox", "start": TUESDAY_10},
            format="json",
        ),
        400,
    )
    assert body["errors"] == {"patient": ["There is no such patient."]}


# --- Availability -------------------------------------------------------------------------------------------


def test_availability_skips_slots_the_rules_forbid(api, patient, practitioner, botox_last_week):
    response = api.get(
        "/api/v1/availability/",
        {
            "patient": str(patient.pk),
            "procedure": "microneedling",
            "from": "2026-03-09T00:00:00+00:00",
            "to": "2026-03-12T00:00:00+00:00",
            "page_size": 200,
        },
    )
    assert response.status_code == 200, response.content
    starts = [slot["start"] for slot in response.json()["results"]]
    assert starts[0] == "2026-03-11T09:00:00+00:00"  # the 9th and 10th are too soon after Botox
    assert all(slot["practitioner"] == str(practitioner.pk) for slot in response.json()["results"])


def test_availability_default_window_and_pagination(api, patient, practitioner):
    body = api.get("/api/v1/availability/", {"patient": str(patient.pk), "procedure": "botox", "page_size": 5}).json()
    assert len(body["results"]) == 5 and body["count"] > 5 and body["next"]


@pytest.mark.parametrize(
    "params, field",
    [
        ({"from": "2026-03-09T00:00:00"}, "from"),
        ({"from": "2026-03-09T00:00:00+00:00", "to": "2026-09-09T00:00:00+00:00"}, "to"),
        ({"procedure": "laser"}, "procedure"),
        ({"clinic": "newyork"}, "clinic"),
    ],
)
def test_availability_bad_query_is_400(api, patient, practitioner, other_clinic, params, field):
    query = {"patient": str(patient.pk), "procedure": "botox", **params}
    body = problem_of(api.get("/api/v1/availability/", query), 400)
    assert field in body["errors"]


def test_availability_for_another_clinics_patient_is_400(api, other_patient):
    body = problem_of(api.get("/api/v1/availability/", {"patient": str(other_patient.pk), "procedure": "botox"}), 400)
    assert body["errors"] == {"patient": ["There is no such patient."]}


# --- Listing and reading ------------------------------------------------------------------------------


def test_appointments_list_filters(api, clinic, patient, practitioner):
    other = PatientFactory(clinic=clinic)
    first = book(api, patient, procedure="botox").json()
    book(api, other, procedure="botox", start="2026-03-04T10:00:00+00:00")
    assert api.get("/api/v1/appointments/").json()["count"] == 2
    assert [a["id"] for a in api.get("/api/v1/appointments/", {"patient": str(patient.pk)}).json()["results"]] == [
        first["id"]
    ]
    assert api.get("/api/v1/appointments/", {"practitioner": str(practitioner.pk)}).json()["count"] == 2
    assert api.get("/api/v1/appointments/", {"status": "cancelled"}).json()["count"] == 0
    assert api.get("/api/v1/appointments/", {"start_after": "2026-03-04T00:00:00+00:00"}).json()["count"] == 1
    assert api.get("/api/v1/appointments/", {"start_before": "2026-03-04T00:00:00+00:00"}).json()["count"] == 1


@pytest.mark.parametrize(
    "params, field",
    [
        ({"start_after": "2026-03-04T00:00:00"}, "start_after"),
        ({"status": "tentative"}, "status"),
        ({"patient": "not-an-id"}, "patient"),
    ],
)
def test_appointments_list_bad_filters_are_400(api, params, field):
    body = problem_of(api.get("/api/v1/appointments/", params), 400)
    assert field in body["errors"]


def test_appointments_filter_by_another_clinics_patient_is_400(api, other_patient):
    body = problem_of(api.get("/api/v1/appointments/", {"patient": str(other_patient.pk)}), 400)
    assert "patient" in body["errors"]


def test_appointment_detail_has_reminders_and_other_clinics_are_404(
    api, patient, practitioner, other_clinic, other_patient, other_practitioner
):
    created = book(api, patient).json()
    body = api.get(f"/api/v1/appointments/{created['id']}/").json()
    assert body["id"] == created["id"] and isinstance(body["reminders"], list)
    theirs = book(http(new_api_client(other_clinic)[1]), other_patient, start="2026-03-03T15:00:00Z").json()
    problem_of(api.get(f"/api/v1/appointments/{theirs['id']}/"), 404)
    assert api.get("/api/v1/appointments/").json()["count"] == 1


# --- Actions ---------------------------------------------------------------------------------------------


def test_reschedule_201_and_409(api, patient, practitioner, botox_last_week):
    created = book(api, patient, procedure="filler").json()
    url = f"/api/v1/appointments/{created['id']}/reschedule/"
    moved = api.post(url, {"start": "2026-03-05T14:00:00+00:00"}, format="json")
    assert moved.status_code == 201, moved.content  # the contract: "(and reschedule) answers: 201"
    assert moved.json()["start"] == "2026-03-05T14:00:00+00:00" and moved.json()["warnings"] == []
    # Booking microneedling two weeks after the filler clashes the other way round when the filler moves.
    needling = book(api, patient, start="2026-04-20T10:00:00+01:00").json()
    body = problem_of(
        api.post(
            f"/api/v1/appointments/{needling['id']}/reschedule/", {"start": "2026-03-20T10:00:00+00:00"}, format="json"
        ),
        409,
    )
    assert {v["code"] for v in body["violations"]} == {"interval_too_soon_after"}


def test_reschedule_bad_input_400(api, patient, practitioner):
    created = book(api, patient).json()
    body = problem_of(
        api.post(f"/api/v1/appointments/{created['id']}/reschedule/", {"start": "2026-03-05T14:00"}, format="json"), 400
    )
    assert body["errors"] == {"start": ["Give the time with a UTC offset, e.g. 2026-03-15T10:30:00+00:00."]}


def test_cancel_then_cancel_again_is_409(api, patient, practitioner):
    created = book(api, patient).json()
    url = f"/api/v1/appointments/{created['id']}/cancel/"
    response = api.post(url, {"reason": "patient asked"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    body = problem_of(api.post(url, {}, format="json"), 409)
    assert body["code"] == "not_cancellable"


def test_actions_on_another_clinics_appointment_are_404(api, other_clinic, other_patient, other_practitioner):
    theirs = book(http(new_api_client(other_clinic)[1]), other_patient, start="2026-03-03T15:00:00Z").json()
    for action in ("cancel", "complete", "reschedule", "clear", "no-show"):
        problem_of(
            api.post(
                f"/api/v1/appointments/{theirs['id']}/{action}/",
                {"start": TUESDAY_10} if action == "reschedule" else {},
                format="json",
            ),
            404,
        )
    assert Appointment.objects.get(pk=theirs["id"]).status == "confirmed"


def _past_appointment(patient, practitioner) -> Appointment:
    return AppointmentFactory(
        clinic=patient.clinic,
        patient=patient,
        practitioner=practitioner,
        procedure_id="microneedling",
        start_at=datetime(2026, 3, 2, 8, 0, tzinfo=UTC),
        end_at=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        status=AppointmentStatus.CONFIRMED,
    )


def test_complete_needs_the_clinicians_right(api, clinical_api, patient, practitioner):
    appointment = _past_appointment(patient, practitioner)
    url = f"/api/v1/appointments/{appointment.pk}/complete/"
    body = problem_of(api.post(url, {}, format="json"), 403)
    assert body["code"] == "clinician_required"
    response = clinical_api.post(url, {}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "completed"
    assert ProcedureRecord.objects.filter(appointment=appointment, source="clinic").exists()
    problem_of(clinical_api.post(url, {}, format="json"), 409)


def test_complete_by_staff_role(patient, practitioner, receptionist, clinician):
    appointment = _past_appointment(patient, practitioner)
    url = f"/api/v1/appointments/{appointment.pk}/complete/"
    problem_of(session(receptionist).post(url, {}, format="json"), 403)
    assert session(clinician).post(url, {}, format="json").status_code == 200


def test_complete_before_start_is_409(clinical_api, api, patient, practitioner):
    created = book(api, patient).json()
    body = problem_of(clinical_api.post(f"/api/v1/appointments/{created['id']}/complete/", {}, format="json"), 409)
    assert body["code"] == "not_started"


def test_clear_pending_booking(api, clinical_api, patient, practitioner):
    PatientConditionFactory(patient=patient, condition_id="eczema", status="history")
    created = book(api, patient).json()
    url = f"/api/v1/appointments/{created['id']}/clear/"
    problem_of(api.post(url, {"reason": "dermatologist approved"}, format="json"), 403)
    assert "reason" in problem_of(clinical_api.post(url, {}, format="json"), 400)["errors"]
    response = clinical_api.post(url, {"reason": "dermatologist approved"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "confirmed"


def test_no_show_needs_the_clinicians_right(api, clinical_api, patient, practitioner):
    appointment = _past_appointment(patient, practitioner)
    refused = api.post(f"/api/v1/appointments/{appointment.pk}/no-show/", {}, format="json")
    response = clinical_api.post(f"/api/v1/appointments/{appointment.pk}/no-show/", {}, format="json")
    assert refused.status_code == 403
    assert response.status_code == 200 and response.json()["status"] == "no_show"


def test_action_with_unexpected_field_is_400(clinical_api, patient, practitioner):
    appointment = _past_appointment(patient, practitioner)
    body = problem_of(
        clinical_api.post(f"/api/v1/appointments/{appointment.pk}/complete/", {"status": "completed"}, format="json"),
        400,
    )
    assert body["errors"] == {"status": ["Unknown field."]}


def test_staff_receptionist_books_via_session(patient, practitioner, receptionist):
    response = book(session(receptionist), patient)
    assert response.status_code == 201
    assert AuditEvent.objects.get().actor_user == receptionist


def test_two_practitioners_the_first_free_one_is_chosen(api, clinic, patient, practitioner):
    PractitionerFactory(clinic=clinic, name="Dr Bea")
    first = book(api, patient, procedure="botox").json()
    second = book(api, PatientFactory(clinic=clinic), procedure="botox").json()
    assert first["practitioner"] != second["practitioner"]


def test_appointment_detail_lists_its_planned_reminders(api, patient, practitioner):
    from reminders.defaults import care_texts_load

    care_texts_load()
    created = book(api, patient).json()
    reminders = api.get(f"/api/v1/appointments/{created['id']}/").json()["reminders"]
    assert reminders, "booking microneedling plans at least a confirmation and pre-care"
    assert {r["channel"] for r in reminders} <= {"email", "sms"}  # webhook deliveries are not reminders
    assert all(r["due_at"].endswith("+00:00") for r in reminders)  # London's offset in March
    assert {"kind", "channel", "due_at", "status"} == set(reminders[0])
    # In the order they are due; those due together by kind, then e-mail before text (not in the rows' id order).
    order = [(r["due_at"], r["kind"], r["channel"]) for r in reminders]
    assert order == sorted(order) and len(set(order)) == len(order)
    assert any(a[0] == b[0] and a[1] != b[1] for a, b in zip(order, order[1:], strict=False))  # some due together


def test_a_refusal_gives_every_time_in_the_clinics_own_offset(other_clinic, other_patient, other_practitioner):
    """New York in early March is UTC-5: the refusal must say so, not fall back to UTC."""
    from zoneinfo import ZoneInfo

    ny = ZoneInfo("America/New_York")
    ProcedureRecord.objects.create(
        patient=other_patient, procedure_id="botox", performed_at=datetime(2026, 3, 1, 15, 0, tzinfo=ny)
    )
    platform = http(new_api_client(other_clinic)[1])

    response = platform.post(
        "/api/v1/appointments/",
        {"patient": str(other_patient.pk), "procedure": "microneedling", "start": "2026-03-05T10:00:00-05:00"},
        format="json",
    )

    body = problem_of(response, 409)
    assert body["earliest_eligible_start"] == "2026-03-15T00:00:00-04:00"  # after the clocks went forward
    assert body["violations"][0]["earliest_allowed"] == "2026-03-15T00:00:00-04:00"
    assert body["violations"][0]["conflicts_with"]["at"] == "2026-03-01T15:00:00-05:00"
    assert body["next_available_slot"]["start"] == "2026-03-16T09:00:00-04:00"
