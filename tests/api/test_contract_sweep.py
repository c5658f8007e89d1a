"""The running API against the contract (v1 and the "v1 additions"), from a QA pass on 2 December.

Each test quotes the contract line it checks. Three failed then and pass since: a reschedule answers 201
like a booking, a replay is byte-identical on PostgreSQL too (the stored body kept its keys' order), and a
plan refused as infeasible carries `rulebook_version`. Left as they are, by decision: `clinic` may be left
out of a patient's creation by a caller with one clinic (docs/api.md; a client that follows the contract
sends it), and the 409 schema marks the refusal fields optional because other 409s have none. Aimed at what tests/api/ does not already pin down: byte-identical
replays and the 24-hour window under a moving clock, "eligible is false exactly when booking would get
a 409" across every kind of refusal, the 90-day next slot, cross-zone offsets inside one organisation,
scope (404, never 403) for staff sessions and the clinical record, the record-change re-check over the
API, the plan refusal shape, and the published schema against these answers.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine

from clinic.models import Appointment, Patient
from tests.api.conftest import NOW, http, new_api_client, problem_of, session, staff
from tests.factories import (
    AppointmentFactory,
    ClinicFactory,
    MedicationCourseFactory,
    PatientConditionFactory,
    PatientFactory,
    PractitionerFactory,
    ProcedureRecordFactory,
)

pytestmark = pytest.mark.django_db

TUESDAY_10 = "2026-03-03T10:00:00+00:00"


# --- Fixtures (the rest from tests/api/conftest.py) -------------------------------------------------------


@pytest.fixture
def schema(client):
    return json.loads(client.get("/api/v1/schema/?format=json").content)


def book(api, patient, procedure="botox", start=TUESDAY_10, key=None, **extra):
    body = {"patient": str(patient.pk), "procedure": procedure, "start": start, **extra}
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return api.post("/api/v1/appointments/", body, format="json", **headers)


def eligibility(api, patient, procedure="botox", start=TUESDAY_10, **extra):
    body = {"patient": str(patient.pk), "procedure": procedure, "start": start, **extra}
    return api.post("/api/v1/eligibility/", body, format="json")


# --- Booking outcomes --------------------------------------------------------------------------------------------


def test_reschedule_answers_like_booking_201(api, patient, practitioner):
    # Contract, "Booking outcomes": "`POST /api/v1/appointments/` (and reschedule) answers:
    # - **201** with the appointment; `status` is `confirmed`, or `pending_clearance` ..."
    created = book(api, patient).json()
    moved = api.post(
        f"/api/v1/appointments/{created['id']}/reschedule/", {"start": "2026-03-04T10:00:00+00:00"}, format="json"
    )
    assert moved.status_code == 201, moved.status_code
    # A 201 says where its resource is (the schema requires Location; the stateful fuzz found it missing).
    assert moved["Location"].endswith(f"/api/v1/appointments/{created['id']}/")


def test_a_refused_reschedule_has_the_booking_refusal_shape(api, clinic, patient, practitioner):
    # Contract: reschedule "same checks as booking"; 409 with `violations`, `earliest_eligible_start`,
    # `next_available_slot`; v1 additions: "booking answers (201 and 409) carry `rulebook_version`".
    mine = book(api, patient).json()
    book(api, PatientFactory(clinic=clinic), start="2026-03-04T10:00:00+00:00")
    body = problem_of(
        api.post(
            f"/api/v1/appointments/{mine['id']}/reschedule/", {"start": "2026-03-04T10:00:00+00:00"}, format="json"
        ),
        409,
    )
    assert {"violations", "earliest_eligible_start", "next_available_slot", "rulebook_version"} <= set(body)
    assert body["violations"][0]["code"] == "slot_taken"
    assert body["next_available_slot"]["start"] == "2026-03-04T10:30:00+00:00"
    assert Appointment.objects.get(pk=mine["id"]).start_at == datetime(2026, 3, 3, 10, tzinfo=UTC)


def _scenario(name, clinic, patient, practitioner, api):
    """Arrange one kind of outcome for `patient` booking microneedling at TUESDAY_10."""
    if name == "taken":
        book(api, PatientFactory(clinic=clinic), procedure="microneedling")
    elif name == "sunday":
        return "2026-03-08T10:00:00+00:00"
    elif name == "too_soon":
        ProcedureRecordFactory(
            patient=patient, procedure_id="botox", performed_at=datetime(2026, 2, 25, 10, tzinfo=UTC)
        )
    elif name == "absolute":
        PatientConditionFactory(patient=patient, condition_id="scleroderma", status="history")
    elif name == "relative":
        PatientConditionFactory(patient=patient, condition_id="eczema", status="history")
    elif name == "warn_only":
        MedicationCourseFactory(patient=patient, drug_id="isotretinoin", started_on="2024-01-01", ended_on="2025-06-01")
    elif name == "patient_busy":
        AppointmentFactory(
            clinic=clinic,
            patient=patient,
            practitioner=PractitionerFactory(clinic=clinic, name="Dr Bea"),
            procedure_id="filler",
            start_at=datetime(2026, 3, 3, 10, 15, tzinfo=UTC),
            end_at=datetime(2026, 3, 3, 11, 0, tzinfo=UTC),
        )
    return TUESDAY_10


@pytest.mark.parametrize(
    "name", ["ok", "taken", "sunday", "too_soon", "absolute", "relative", "warn_only", "patient_busy"]
)
def test_eligibility_says_exactly_what_booking_then_does(name, clinic, patient, practitioner, api):
    # Contract: "`POST /api/v1/eligibility/` runs the same checks and books nothing: `eligible` is false exactly
    # when booking would get a 409, and `status` says what booking would give (`confirmed`, `pending_clearance`
    # or `refused`)."
    start = _scenario(name, clinic, patient, practitioner, api)
    before = Appointment.objects.count()
    answer = eligibility(api, patient, procedure="microneedling", start=start)
    assert answer.status_code == 200
    verdict = answer.json()
    assert set(verdict) >= {"eligible", "status", "violations", "earliest_eligible_start", "rulebook_version"}
    assert Appointment.objects.count() == before  # books nothing
    booked = book(api, patient, procedure="microneedling", start=start)
    assert booked.status_code in (201, 409), booked.content
    assert verdict["eligible"] is (booked.status_code == 201)
    expected = "refused" if booked.status_code == 409 else booked.json()["status"]
    assert verdict["status"] == expected
    if booked.status_code == 409:
        refusal = booked.json()
        assert refusal["earliest_eligible_start"] == verdict["earliest_eligible_start"]
        assert refusal["next_available_slot"] == verdict["next_available_slot"]
        assert refusal["rulebook_version"] == verdict["rulebook_version"]
    else:
        # "Warnings (severity: warn) never refuse a booking; they come back in the 201 body as warnings."
        assert [w["severity"] for w in booked.json()["warnings"]] == ["warn"] * len(booked.json()["warnings"])
        if name == "warn_only":
            assert booked.json()["warnings"]


def test_refusal_violation_shape_and_enums_on_every_kind(clinic, patient, practitioner, api):
    # Contract: "`violations`: a list of `{code, kind, severity, message, rule, conflicts_with, earliest_allowed}`,
    # where `kind` is `interval`, `contraindication` or `availability`, `severity` is `block`, `absolute`,
    # `relative` or `warn`"; 409 is `application/problem+json`.
    ProcedureRecordFactory(patient=patient, procedure_id="botox", performed_at=datetime(2026, 2, 25, 10, tzinfo=UTC))
    PatientConditionFactory(patient=patient, condition_id="scleroderma", status="history")
    body = problem_of(book(api, patient, procedure="microneedling", start="2026-03-08T10:00:00+00:00"), 409)
    kinds = set()
    for violation in body["violations"]:
        assert {"code", "kind", "severity", "message", "rule", "conflicts_with", "earliest_allowed"} <= set(violation)
        assert violation["kind"] in {"interval", "contraindication", "availability"}
        assert violation["severity"] in {"block", "absolute", "relative", "warn"}
        assert violation["rule"] is None or isinstance(violation["rule"], str)  # "IDs are opaque strings."
        kinds.add(violation["kind"])
    assert kinds == {"interval", "contraindication", "availability"}
    # An absolute contraindication: "null where no date can".
    assert body["earliest_eligible_start"] is None and body["next_available_slot"] is None


def test_an_ongoing_isotretinoin_course_has_no_earliest_date(clinic, patient, practitioner, api):
    # Contract: "`earliest_eligible_start` ... null where no date can (an absolute contraindication, an ongoing
    # isotretinoin course)"; `next_available_slot` "at or after earliest_eligible_start ... or null".
    MedicationCourseFactory(patient=patient, drug_id="isotretinoin", started_on=date(2025, 6, 1), ended_on=None)
    body = problem_of(book(api, patient, procedure="microneedling"), 409)
    assert body["earliest_eligible_start"] is None
    assert body["next_available_slot"] is None


def test_next_slot_is_found_within_90_days_of_a_far_earliest_date(clinic, patient, practitioner, api):
    # Contract: "`next_available_slot`: the first bookable slot (a practitioner who does that procedure is free,
    # within working hours) at or after `earliest_eligible_start`, within 90 days, or null."
    # The course ended 1 Feb 2026; microneedling waits 6 months: 1 Aug 2026 (BST), five months from now.
    MedicationCourseFactory(
        patient=patient, drug_id="isotretinoin", started_on=date(2025, 6, 1), ended_on=date(2026, 2, 1)
    )
    body = problem_of(book(api, patient, procedure="microneedling"), 409)
    assert body["earliest_eligible_start"] == "2026-08-01T00:00:00+01:00"  # start of that local day, BST offset
    assert body["next_available_slot"]["start"] == "2026-08-01T09:00:00+01:00"  # a Saturday, 09:00 local


def test_earliest_start_is_the_start_of_the_local_day_in_a_cross_zone_organisation(clinic, patient, practitioner):
    # Contract: "with a calendar gap, the start of that local day"; "Responses give times in the clinic's offset."
    # One organisation, a London home clinic and a New York site; the booking at New York speaks New York time
    # (EST until 8 March, EDT after).
    ny = ClinicFactory(code="nyc", name="NYC", timezone="America/New_York", organisation=clinic.organisation)
    PractitionerFactory(clinic=ny, name="Dr NY")
    api = http(new_api_client(clinic, ny)[1])
    ProcedureRecordFactory(patient=patient, procedure_id="botox", performed_at=datetime(2026, 2, 26, 10, tzinfo=UTC))
    body = problem_of(book(api, patient, procedure="microneedling", start="2026-03-06T15:00:00Z", clinic="nyc"), 409)
    assert body["earliest_eligible_start"] == "2026-03-12T00:00:00-04:00"
    assert body["violations"][0]["conflicts_with"]["at"] == "2026-02-26T05:00:00-05:00"
    assert body["next_available_slot"]["start"] == "2026-03-12T09:00:00-04:00"
    slots = api.get(
        "/api/v1/availability/",
        {
            "patient": str(patient.pk),
            "procedure": "botox",
            "clinic": "nyc",
            "from": "2026-03-03T14:00:00Z",
            "to": "2026-03-03T15:00:00Z",
        },
    ).json()["results"]
    assert slots and all(s["start"].endswith("-05:00") and s["end"].endswith("-05:00") for s in slots)


def test_eligibility_answers_in_the_clinics_offset_whatever_offset_was_sent(clinic, patient, practitioner, api):
    # Contract: "Responses give times in the clinic's offset."
    body = eligibility(api, patient, start="2026-03-03T15:00:00+05:00").json()
    assert body["earliest_eligible_start"] == TUESDAY_10
    moved_to_summer = book(api, patient, start="2026-04-01T09:00:00Z").json()
    assert moved_to_summer["start"] == "2026-04-01T10:00:00+01:00"


# --- Idempotency -------------------------------------------------------------------------------------------------


def _replays(api, clinic, patient):
    """Each of a 201, a 409 and a 400 sent twice with its own key: [(first, again), ...]."""
    pairs = [(book(api, patient, key="b-201"), None)]
    Appointment.objects.update(status="cancelled")  # what happened since does not change the replay
    pairs[0] = (pairs[0][0], book(api, patient, key="b-201"))
    Appointment.objects.update(status="confirmed")
    someone = PatientFactory(clinic=clinic)
    pairs.append((book(api, someone, key="b-409"), book(api, someone, key="b-409")))
    bad = {"start": "2026-03-03T10:00:00", "key": "b-400"}
    pairs.append((book(api, patient, **bad), book(api, patient, **bad)))
    assert [first.status_code for first, _ in pairs] == [201, 409, 400]
    assert Appointment.objects.count() == 1
    return pairs


def test_a_replay_has_the_same_status_body_and_headers(clinic, patient, practitioner, api):
    # Contract: "the same key with the same body within 24 h returns the first response again (same status, same
    # body) and creates nothing".
    for first, again in _replays(api, clinic, patient):
        assert again.status_code == first.status_code
        assert again.json() == first.json()
        assert again["Content-Type"] == first["Content-Type"]
        assert again["Idempotent-Replayed"] == "true"
        assert again.get("Location") == first.get("Location")


def test_a_replay_is_byte_identical(clinic, patient, practitioner, api):
    # Contract: "returns the first response again (same status, same body)": the same bytes, so a client that
    # hashes, signs or caches the raw body sees the same answer.
    for first, again in _replays(api, clinic, patient):
        assert again.content == first.content, (first.status_code, again.content[:80])


def test_the_24_hour_window_on_a_moving_clock(clinic, patient, practitioner, api):
    # Contract: "the same key with the same body within 24 h returns the first response again ... and creates
    # nothing". After 24 h the key is fresh.
    body = {"first_name": "Ada", "last_name": "Byron", "confirm_new": True}
    first = api.post("/api/v1/patients/", body, format="json", HTTP_IDEMPOTENCY_KEY="window")
    assert first.status_code == 201
    with time_machine.travel(NOW + timedelta(hours=23, minutes=55), tick=False):
        within = api.post("/api/v1/patients/", body, format="json", HTTP_IDEMPOTENCY_KEY="window")
    assert within.status_code == 201 and within.json() == first.json()
    assert Patient.objects.filter(first_name="Ada").count() == 1
    with time_machine.travel(NOW + timedelta(hours=24, minutes=5), tick=False):
        after = api.post("/api/v1/patients/", body, format="json", HTTP_IDEMPOTENCY_KEY="window")
    assert after.status_code == 201 and after.json()["id"] != first.json()["id"]
    assert "Idempotent-Replayed" not in after


def test_same_key_different_body_is_422_even_after_a_400_or_409(clinic, patient, practitioner, api):
    # Contract: "the same key with a different body is a 422."
    book(api, patient, start="2026-03-03T10:00:00", key="after-400")
    body = problem_of(book(api, patient, key="after-400"), 422)
    assert body["code"] == "idempotency_key_reused"
    book(api, patient)
    book(api, PatientFactory(clinic=clinic), key="after-409")  # 409 slot taken
    problem_of(book(api, patient, start="2026-03-04T10:00:00+00:00", key="after-409"), 422)
    assert Appointment.objects.count() == 1


# --- Scope: 404, never 403 ----------------------------------------------------------------------------------------


def test_a_receptionist_acting_outside_their_clinics_gets_404_not_403(
    clinic, patient, practitioner, other_clinic, other_patient, other_practitioner
):
    # Contract: "anything outside that scope is a 404, never a 403 that confirms it exists. Staff users also work
    # with session auth."
    from clinic.models import StaffRole

    theirs = AppointmentFactory(
        clinic=other_clinic,
        patient=other_patient,
        practitioner=other_practitioner,
        procedure_id="botox",
        start_at=datetime(2026, 3, 2, 8, tzinfo=UTC),
        end_at=datetime(2026, 3, 2, 8, 30, tzinfo=UTC),
    )
    desk = session(staff(clinic, StaffRole.RECEPTIONIST, "desk"))
    for action in ("complete", "clear", "no-show", "cancel"):
        problem_of(desk.post(f"/api/v1/appointments/{theirs.pk}/{action}/", {}, format="json"), 404)
    problem_of(desk.get(f"/api/v1/patients/{other_patient.pk}/"), 404)


def test_another_organisations_clinical_record_is_404_everywhere(api, other_patient):
    # Contract: "Anything of another organisation is a 404."
    for path in ("procedures", "medications", "conditions"):
        problem_of(api.get(f"/api/v1/patients/{other_patient.pk}/{path}/"), 404)
    problem_of(api.put(f"/api/v1/patients/{other_patient.pk}/conditions/", [], format="json"), 404)
    problem_of(api.patch(f"/api/v1/patients/{other_patient.pk}/", {"first_name": "X"}, format="json"), 404)
    problem_of(
        api.post(
            f"/api/v1/patients/{other_patient.pk}/medications/",
            {"drug": "isotretinoin", "started_on": "2025-01-01"},
            format="json",
        ),
        404,
    )


# --- Patients ----------------------------------------------------------------------------------------------------


def test_patient_fields_and_formats(api, clinic):
    # Contract: patients "`id`, `clinic`, `first_name`, `last_name`, `date_of_birth`, `email`, `phone` (E.164),
    # `reminder_channels` (`["email","sms"]` subset), `sms_consent`"; v1 additions: "Patient items add
    # `organisation` (id)".
    created = api.post(
        "/api/v1/patients/",
        {
            "clinic": str(clinic.pk),
            "first_name": "Ann",
            "last_name": "Ode",
            "date_of_birth": "1990-05-17",
            "email": "ann@example.com",
            "phone": "+447911000222",
            "reminder_channels": ["sms", "email"],
            "sms_consent": True,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert set(body) >= {
        "id",
        "clinic",
        "organisation",
        "first_name",
        "last_name",
        "date_of_birth",
        "email",
        "phone",
        "reminder_channels",
        "sms_consent",
    }
    assert body["date_of_birth"] == "1990-05-17" and body["phone"] == "+447911000222"
    assert set(body["reminder_channels"]) == {"email", "sms"}
    assert body["clinic"] == str(clinic.pk) and body["organisation"] == str(clinic.organisation_id)
    for bad in (["fax"], ["sms", "sms"], "email"):
        refused = api.post(
            "/api/v1/patients/",
            {"first_name": "Bo", "last_name": f"Bad{len(str(bad))}", "reminder_channels": bad, "confirm_new": True},
            format="json",
        )
        if refused.status_code == 201:  # a repeated channel may be folded, but must stay a subset
            channels = refused.json()["reminder_channels"]
            assert len(channels) == len(set(channels)) and set(channels) <= {"email", "sms"}, channels
        else:
            errors = problem_of(refused, 400)["errors"]
            assert any(k.split(".")[0] == "reminder_channels" for k in errors), errors


# --- Appointments: complete and later changes --------------------------------------------------------------------


def test_complete_adds_history_and_starts_post_care(clinical_api, patient, practitioner):
    # Contract: "`POST /api/v1/appointments/{id}/complete/` | clinician or API client with that right; adds the
    # procedure to the history and starts post-care"; appointment detail has `reminders` (`kind`, `channel`,
    # `due_at`, `status`).
    from reminders.defaults import care_texts_load

    care_texts_load()
    appointment = AppointmentFactory(
        clinic=patient.clinic,
        patient=patient,
        practitioner=practitioner,
        procedure_id="microneedling",
        start_at=datetime(2026, 3, 2, 8, tzinfo=UTC),
        end_at=datetime(2026, 3, 2, 9, tzinfo=UTC),
    )
    done = clinical_api.post(f"/api/v1/appointments/{appointment.pk}/complete/", {}, format="json")
    assert done.status_code == 200 and done.json()["status"] == "completed"
    history = clinical_api.get(f"/api/v1/patients/{patient.pk}/procedures/").json()["results"]
    assert [(h["procedure"], h["source"]) for h in history] == [("microneedling", "clinic")]
    reminders = clinical_api.get(f"/api/v1/appointments/{appointment.pk}/").json()["reminders"]
    assert any(r["kind"] == "post_care" for r in reminders), reminders
    assert all(r["due_at"].endswith("+00:00") for r in reminders)


def test_a_record_change_over_the_api_flags_and_then_releases_the_booking(api, patient, practitioner):
    # v1 additions: "New status `needs_review` ... It carries `review_reasons` (violations, same shape as a
    # refusal's) and holds its pre-care reminders. It leaves `needs_review` only by being rescheduled,
    # cancelled, or by the record being corrected (then it is re-checked and goes back to `confirmed`...)".
    # "A later change that brings a relative contraindication sends a confirmed appointment back to
    # pending_clearance".
    from reminders.defaults import care_texts_load

    care_texts_load()
    created = book(api, patient, procedure="microneedling", start="2026-03-10T10:00:00+00:00").json()
    url = f"/api/v1/appointments/{created['id']}/"
    intake = f"/api/v1/patients/{patient.pk}/conditions/"
    assert api.put(intake, [{"condition": "scleroderma", "status": "history"}], format="json").status_code == 200
    flagged = api.get(url).json()
    assert flagged["status"] == "needs_review"
    [reason] = flagged["review_reasons"]
    assert reason["severity"] == "absolute" and reason["kind"] == "contraindication"
    assert {"code", "kind", "severity", "message", "rule", "conflicts_with", "earliest_allowed"} <= set(reason)
    pre_care = [r for r in flagged["reminders"] if r["kind"] == "pre_care"]
    assert pre_care and all(r["status"] == "held" for r in pre_care), flagged["reminders"]
    assert api.put(intake, [], format="json").status_code == 200
    released = api.get(url).json()
    assert (released["status"], released["review_reasons"]) == ("confirmed", [])
    assert api.put(intake, [{"condition": "eczema", "status": "history"}], format="json").status_code == 200
    assert api.get(url).json()["status"] == "pending_clearance"


# --- Plans -------------------------------------------------------------------------------------------------------


def test_a_refused_plan_has_the_booking_refusal_shape(api, patient, practitioner, templates):
    # Contract: "otherwise → 201 the plan ...; or 409 with the first session that cannot be booked and why (same
    # refusal shape), booking none." v1 additions: "Eligibility answers and booking answers (201 and 409) carry
    # `rulebook_version`".
    MedicationCourseFactory(patient=patient, drug_id="isotretinoin", started_on=date(2025, 6, 1), ended_on=None)
    body = problem_of(
        api.post(
            f"/api/v1/patients/{patient.pk}/plans/",
            {"template": "microneedling-course", "start_from": "2026-03-10"},
            format="json",
        ),
        409,
    )
    assert not Appointment.objects.exists()
    assert body["violations"] and "earliest_eligible_start" in body and "next_available_slot" in body
    assert body["rulebook_version"]


def test_plan_dry_run_booking_and_read_shapes(api, patient, practitioner, templates):
    # Contract: "dry_run: true → 200 {feasible, reason, sessions: [{index, start, end, practitioner, window:
    # {earliest, ideal, latest}, warnings}]}; books nothing. otherwise → 201 the plan (id, template, patient,
    # sessions with their appointment ids)"; "GET /api/v1/plans/{id}/ → the plan with each session's status".
    url = f"/api/v1/patients/{patient.pk}/plans/"
    dry = api.post(url, {"template": "plasma-pen-course", "start_from": "2026-03-10", "dry_run": True}, format="json")
    assert dry.status_code == 200 and not Appointment.objects.exists()
    proposal = dry.json()
    assert {"feasible", "reason", "sessions"} <= set(proposal) and proposal["feasible"] is True
    for s in proposal["sessions"]:
        assert {"index", "start", "end", "practitioner", "window", "warnings"} <= set(s)
        assert set(s["window"]) == {"earliest", "ideal", "latest"}
    made = api.post(url, {"template": "plasma-pen-course", "start_from": "2026-03-10"}, format="json")
    assert made.status_code == 201, made.content
    plan = made.json()
    assert {"id", "template", "patient", "sessions"} <= set(plan) and plan["template"] == "plasma-pen-course"
    ids = {s["appointment"] for s in plan["sessions"]}
    assert ids == {str(pk) for pk in Appointment.objects.values_list("pk", flat=True)}
    read = api.get(f"/api/v1/plans/{plan['id']}/").json()
    assert {s["status"] for s in read["sessions"]} <= {"booked", "completed", "cancelled", "due", "overdue", "missed"}


def test_plan_templates_gaps(api, templates):
    # Contract: "GET /api/v1/plan-templates/ → code, name, procedure, sessions, min_gap, ideal_gap, max_gap (each
    # {"value": N, "unit": "days"|"weeks"|"months"})."
    for template in api.get("/api/v1/plan-templates/").json()["results"]:
        assert {"code", "name", "procedure", "sessions", "min_gap", "ideal_gap", "max_gap"} <= set(template)
        for gap in ("min_gap", "ideal_gap", "max_gap"):
            assert set(template[gap]) == {"value", "unit"} and template[gap]["unit"] in {"days", "weeks", "months"}
            assert isinstance(template[gap]["value"], int)


# --- Lists ---------------------------------------------------------------------------------------------------------


def test_pagination_links_keep_the_filters(api, clinic, patient, practitioner):
    # Contract: "Lists are paginated: {"count", "next", "previous", "results"}."
    book(api, patient)
    book(api, PatientFactory(clinic=clinic), start="2026-03-04T10:00:00+00:00")
    first = api.get("/api/v1/appointments/", {"status": "confirmed", "page_size": 1}).json()
    assert set(first) == {"count", "next", "previous", "results"} and first["count"] == 2
    second = api.get(first["next"]).json()
    assert second["count"] == 2 and len(second["results"]) == 1 and second["previous"] and second["next"] is None
    assert second["results"][0]["id"] != first["results"][0]["id"]


# --- The published schema against these answers -------------------------------------------------------------------


def _component(schema, name):
    return schema["components"]["schemas"][name]


def test_schema_describes_the_refusal_fields_and_booking_status_codes(schema):
    # Contract: "The OpenAPI schema the service publishes must describe all of it."
    booking = schema["paths"]["/api/v1/appointments/"]["post"]["responses"]
    assert {"201", "400", "409", "422", "429"} <= set(booking)
    assert "Location" in booking["201"].get("headers", {})
    assert "Retry-After" in booking["429"].get("headers", {})
    refusal = _component(schema, "RefusalProblemOut")["properties"]
    assert {"violations", "earliest_eligible_start", "next_available_slot", "rulebook_version"} <= set(refusal)
    assert set(_component(schema, "AppointmentStatusEnum")["enum"]) == {
        "pending_clearance",
        "confirmed",
        "completed",
        "cancelled",
        "no_show",
        "needs_review",
    }
    assert set(_component(schema, "EligibilityStatusEnum")["enum"]) == {"confirmed", "pending_clearance", "refused"}
    plans = schema["paths"]["/api/v1/patients/{patient_id}/plans/"]["post"]["responses"]
    assert {"200", "201", "409"} <= set(plans)


def test_schema_item_fields_match_the_answers(schema, api, clinic, patient, practitioner):
    # Contract: resources' fields; "The OpenAPI schema the service publishes must describe all of it."
    created = book(api, patient).json()
    detail = api.get(f"/api/v1/appointments/{created['id']}/").json()
    slots = api.get("/api/v1/availability/", {"patient": str(patient.pk), "procedure": "botox", "page_size": 1})
    pairs = {
        "BookingOut": created,
        "AppointmentDetailOut": detail,
        "PatientOut": api.get(f"/api/v1/patients/{patient.pk}/").json(),
        "ClinicOut": api.get("/api/v1/clinics/").json()["results"][0],
        "PractitionerOut": api.get("/api/v1/practitioners/").json()["results"][0],
        "ProcedureOut": api.get("/api/v1/procedures/").json()["results"][0],
        "OrganisationOut": api.get("/api/v1/organisations/").json()["results"][0],
        "SlotOut": slots.json()["results"][0],
    }
    for name, answer in pairs.items():
        assert set(_component(schema, name)["properties"]) == set(answer), name
