"""The FHIR R4 read surface: every answer validated with `fhir.resources` (R4B models) and the R4 value sets.

The clock is Monday 2 March 2026, 09:00 UTC; London is on GMT. Practitioners work Monday to
Saturday, 09:00 to 18:00 local (tests/factories.py).
"""

from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from django.test.client import FakePayload
from fhir.resources.R4B.appointment import Appointment as FhirAppointment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.schedule import Schedule
from fhir.resources.R4B.slot import Slot

from clinic.models import Appointment, AppointmentStatus, TimeOff
from fhir.mapping import APPOINTMENT_STATUS
from tests.api.conftest import http, new_api_client, session
from tests.factories import PatientConditionFactory, PatientFactory, PractitionerFactory, ProcedureRecordFactory

pytestmark = pytest.mark.django_db

FHIR_JSON = "application/fhir+json"
# R4 value sets (fhir.resources checks structure and types, not code bindings).
R4_SLOT_STATUS = {"busy", "free", "busy-unavailable", "busy-tentative", "entered-in-error"}
R4_APPOINTMENT_STATUS = {
    "proposed",
    "pending",
    "booked",
    "arrived",
    "fulfilled",
    "cancelled",
    "noshow",
    "entered-in-error",
    "checked-in",
    "waitlist",
}
R4_ISSUE_TYPE = {
    "invalid",
    "structure",
    "required",
    "value",
    "invariant",
    "security",
    "login",
    "unknown",
    "expired",
    "forbidden",
    "suppressed",
    "processing",
    "not-supported",
    "duplicate",
    "multiple-matches",
    "not-found",
    "deleted",
    "too-long",
    "code-invalid",
    "extension",
    "too-costly",
    "business-rule",
    "conflict",
    "transient",
    "lock-error",
    "no-store",
    "exception",
    "timeout",
    "incomplete",
    "throttled",
    "informational",
}
MODELS = {"Slot": Slot, "Schedule": Schedule, "Appointment": FhirAppointment}


def fhir_get(client, path, status=200) -> dict:
    response = client.get(path)
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith(FHIR_JSON), response["Content-Type"]
    return response.json()


def search(client, path) -> tuple[dict, list[dict]]:
    body = fhir_get(client, path)
    Bundle.model_validate(body)  # every entry's resource is validated with its own model too
    assert body["type"] == "searchset"
    resources = [entry["resource"] for entry in body.get("entry", [])]
    for resource in resources:
        MODELS[resource["resourceType"]].model_validate(resource)
        status = resource.get("status")
        assert status in {"Slot": R4_SLOT_STATUS, "Appointment": R4_APPOINTMENT_STATUS}.get(
            resource["resourceType"], {status}
        ), status
    return body, resources


def outcome(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith(FHIR_JSON), response["Content-Type"]
    body = response.json()
    OperationOutcome.model_validate(body)
    [issue] = body["issue"]
    assert issue["severity"] == "error" and issue["code"] in R4_ISSUE_TYPE and issue["diagnostics"]
    return issue


def book(api, patient, start, procedure="botox", **extra):
    response = api.post(
        "/api/v1/appointments/",
        {"patient": str(patient.pk), "procedure": procedure, "start": start, **extra},
        format="json",
    )
    assert response.status_code == 201, response.content
    return Appointment.objects.get(pk=response.json()["id"])


# --- metadata ------------------------------------------------------------------------------------------


def test_metadata_is_a_capability_statement_for_r4_json(client):
    body = fhir_get(client, "/fhir/r4/metadata")
    CapabilityStatement.model_validate(body)
    assert body["fhirVersion"] == "4.0.1" and body["format"] == [FHIR_JSON]
    served = {r["type"]: r for r in body["rest"][0]["resource"]}
    assert set(served) == {"Schedule", "Slot", "Appointment"}
    assert {p["name"] for p in served["Slot"]["searchParam"]} >= {"schedule", "start", "status", "service-type"}
    assert {p["name"] for p in served["Appointment"]["searchParam"]} >= {"patient", "date", "status", "actor"}
    assert "/api/v1/eligibility/" in body["rest"][0]["documentation"]


# --- Schedule -------------------------------------------------------------------------------------------


def test_one_schedule_per_practitioner_in_your_clinics(api, practitioner, other_practitioner, clinic):
    second = PractitionerFactory(clinic=clinic, name="Dr Bea", procedures=["botox"])
    body, resources = search(api, "/fhir/r4/Schedule")
    assert body["total"] == 2 and {r["id"] for r in resources} == {str(practitioner.pk), str(second.pk)}
    bea = next(r for r in resources if r["id"] == str(second.pk))
    assert bea["actor"][0] == {"reference": f"Practitioner/{second.pk}", "display": "Dr Bea"}
    assert bea["actor"][1]["reference"] == f"Location/{clinic.pk}"
    assert [c["coding"][0]["code"] for c in bea["serviceType"]] == ["botox"]

    read = fhir_get(api, f"/fhir/r4/Schedule/{second.pk}")
    Schedule.model_validate(read)
    _, only = search(api, f"/fhir/r4/Schedule?actor=Practitioner/{second.pk}")
    assert [r["id"] for r in only] == [str(second.pk)]
    _, by_service = search(api, "/fhir/r4/Schedule?service-type=microneedling")
    assert [r["id"] for r in by_service] == [str(practitioner.pk)]
    outcome(api.get(f"/fhir/r4/Schedule/{other_practitioner.pk}"), 404)  # another clinic's: not found


# --- Slot ------------------------------------------------------------------------------------------------


def test_slots_free_and_busy_in_a_window(api, patient, practitioner):
    held_patient = PatientFactory(clinic=practitioner.clinic)
    PatientConditionFactory(patient=held_patient, condition_id="eczema", status="history")
    book(api, patient, "2026-03-03T10:00:00+00:00")  # botox, 30 minutes
    book(api, held_patient, "2026-03-03T14:00:00+00:00", procedure="microneedling")  # awaiting clearance
    TimeOff.objects.create(
        practitioner=practitioner,
        start_at=datetime(2026, 3, 3, 16, tzinfo=UTC),
        end_at=datetime(2026, 3, 3, 18, tzinfo=UTC),
    )

    body, slots = search(
        api,
        f"/fhir/r4/Slot?schedule=Schedule/{practitioner.pk}&start=ge2026-03-03T00:00:00Z&start=lt2026-03-04T00:00:00Z",
    )
    shape = [(s["status"], s["start"][11:16], s["end"][11:16]) for s in slots]
    assert shape == [
        ("free", "09:00", "10:00"),
        ("busy", "10:00", "10:30"),
        ("free", "10:30", "14:00"),
        ("busy-tentative", "14:00", "15:00"),
        ("free", "15:00", "16:00"),
        ("busy-unavailable", "16:00", "18:00"),
    ]
    assert all(s["schedule"] == {"reference": f"Schedule/{practitioner.pk}"} for s in slots)
    assert body["total"] == 6

    _, free = search(api, "/fhir/r4/Slot?status=free&start=ge2026-03-03&start=lt2026-03-04")
    assert {s["status"] for s in free} == {"free"}
    _, busy = search(api, "/fhir/r4/Slot?status=busy,busy-tentative&start=ge2026-03-03&start=lt2026-03-04")
    assert [s["status"] for s in busy] == ["busy", "busy-tentative"]


def test_slots_for_a_service_type_are_the_starts_where_it_fits(api, patient, practitioner):
    book(api, patient, "2026-03-03T10:00:00+00:00")
    _, slots = search(
        api,
        "/fhir/r4/Slot?service-type=microneedling&status=free"
        "&start=ge2026-03-03T09:00:00Z&start=lt2026-03-03T11:00:00Z",
    )
    # 60 minutes on a 15-minute grid, not across the 10:00-10:30 booking.
    assert [(s["start"][11:16], s["end"][11:16]) for s in slots] == [
        ("09:00", "10:00"),
        ("10:30", "11:30"),
        ("10:45", "11:45"),
    ]
    assert all(s["serviceType"][0]["coding"][0]["code"] == "microneedling" for s in slots)


def test_slot_search_pages_with_next_links(api, practitioner):
    path = "/fhir/r4/Slot?service-type=botox&start=ge2026-03-03T09:00:00Z&start=lt2026-03-03T12:00:00Z&_count=5"
    body, first = search(api, path)
    assert body["total"] == 12 and len(first) == 5
    seen = [s["id"] for s in first]
    while True:
        links = {link["relation"]: link["url"] for link in body["link"]}
        if "next" not in links:
            break
        url = urlsplit(links["next"])
        body, more = search(api, f"{url.path}?{url.query}")
        seen += [s["id"] for s in more]
    assert len(seen) == len(set(seen)) == 12
    assert seen == sorted(seen, key=lambda i: i.split(".")[1])


def test_past_free_time_is_not_offered(api, practitioner):
    _, slots = search(api, "/fhir/r4/Slot?status=free&start=ge2026-03-02&start=lt2026-03-03")
    # The clock (09:00, ticking) is just past 09:00:00: free time starts at the next point of the grid.
    assert slots[0]["start"] == "2026-03-02T09:15:00+00:00"
    _, none = search(api, "/fhir/r4/Slot?status=free&start=ge2026-02-23&start=lt2026-02-24")
    assert none == []


def test_slot_search_problems(api, practitioner):
    for path, parameter in [
        ("/fhir/r4/Slot?start=ge2026-03-03T10:00:00", "start"),  # no offset
        ("/fhir/r4/Slot?start=ge2026-03-04&start=lt2026-03-03", "start"),
        ("/fhir/r4/Slot?start=ge2026-03-01&start=lt2026-05-01", "start"),  # more than 31 days
        ("/fhir/r4/Slot?status=maybe", "status"),
        ("/fhir/r4/Slot?service-type=nope", "service-type"),
        ("/fhir/r4/Slot?service-type=botox,filler", "service-type"),
        ("/fhir/r4/Slot?schedule=Practitioner/x", "schedule"),
        ("/fhir/r4/Slot?_count=0", "_count"),
        ("/fhir/r4/Slot?_count=201", "_count"),
        ("/fhir/r4/Slot?page=9999", "page"),
        ("/fhir/r4/Slot?start:missing=true", "start:missing"),
        ("/fhir/r4/Slot?status=", "status"),
        ("/fhir/r4/Slot?status=fr%00ee", "status"),
    ]:
        issue = outcome(api.get(path), 400)
        assert issue["code"] == "invalid" and issue["expression"] == [parameter], path


# --- Appointment -----------------------------------------------------------------------------------------


def test_appointments_map_every_status_faithfully(api, clinical_api, patient, practitioner):
    assert set(APPOINTMENT_STATUS) == set(AppointmentStatus)
    confirmed = book(api, patient, "2026-03-03T10:00:00+00:00")
    cancelled = book(api, patient, "2026-03-04T10:00:00+00:00", procedure="filler")
    api.post(f"/api/v1/appointments/{cancelled.pk}/cancel/", {"reason": "moved away"}, format="json")
    held_patient = PatientFactory(clinic=practitioner.clinic)
    PatientConditionFactory(patient=held_patient, condition_id="eczema", status="history")
    held = book(api, held_patient, "2026-03-05T10:00:00+00:00", procedure="microneedling")
    review_patient = PatientFactory(clinic=practitioner.clinic)
    flagged = book(api, review_patient, "2026-03-06T10:00:00+00:00", procedure="microneedling")
    ProcedureRecordFactory(
        patient=review_patient, procedure_id="botox", performed_at=datetime(2026, 3, 1, 10, tzinfo=UTC)
    )
    api.post(
        f"/api/v1/patients/{review_patient.pk}/procedures/",
        {"procedure": "botox", "performed_at": "2026-03-01T11:00:00+00:00"},
        format="json",
    )

    _, resources = search(api, "/fhir/r4/Appointment")
    by_id = {r["id"]: r for r in resources}
    ours = {r["id"]: r["extension"][0]["valueCode"] for r in resources}
    assert (by_id[str(confirmed.pk)]["status"], ours[str(confirmed.pk)]) == ("booked", "confirmed")
    assert (by_id[str(cancelled.pk)]["status"], ours[str(cancelled.pk)]) == ("cancelled", "cancelled")
    # The words of a cancel reason only to a caller with the clinician's right (docs/fhir.md): they may say
    # something of the patient's health.
    assert "cancelationReason" not in by_id[str(cancelled.pk)]
    _, clinical_view = search(clinical_api, f"/fhir/r4/Appointment?_id={cancelled.pk}")
    assert clinical_view[0]["cancelationReason"] == {"text": "moved away"}
    read = fhir_get(clinical_api, f"/fhir/r4/Appointment/{cancelled.pk}")
    assert read["cancelationReason"] == {"text": "moved away"}
    assert "cancelationReason" not in fhir_get(api, f"/fhir/r4/Appointment/{cancelled.pk}")
    assert (by_id[str(held.pk)]["status"], ours[str(held.pk)]) == ("pending", "pending_clearance")
    assert (by_id[str(flagged.pk)]["status"], ours[str(flagged.pk)]) == ("pending", "needs_review")
    assert len(by_id[str(flagged.pk)]["extension"]) >= 2  # our status, then the review reasons

    confirmed_resource = by_id[str(confirmed.pk)]
    assert confirmed_resource["start"] == "2026-03-03T10:00:00+00:00" and confirmed_resource["minutesDuration"] == 30
    assert [p["actor"]["reference"] for p in confirmed_resource["participant"]] == [
        f"Patient/{patient.pk}",
        f"Practitioner/{practitioner.pk}",
        f"Location/{practitioner.clinic_id}",
    ]

    # Completed and no-show, with the clinician's right, the day after.
    import time_machine

    with time_machine.travel(datetime(2026, 3, 3, 11, tzinfo=UTC)):
        assert clinical_api.post(f"/api/v1/appointments/{confirmed.pk}/complete/", {}, format="json").status_code == 200
    assert fhir_get(api, f"/fhir/r4/Appointment/{confirmed.pk}")["status"] == "fulfilled"
    with time_machine.travel(datetime(2026, 3, 5, 11, tzinfo=UTC)):
        assert clinical_api.post(f"/api/v1/appointments/{held.pk}/no-show/", {}, format="json").status_code == 200
    read = fhir_get(api, f"/fhir/r4/Appointment/{held.pk}")
    FhirAppointment.model_validate(read)
    assert read["status"] == "noshow"


def test_appointment_search_by_patient_date_status_and_actor(api, patient, practitioner, clinic):
    other_patient = PatientFactory(clinic=clinic)
    bea = PractitionerFactory(clinic=clinic, name="Dr Bea")
    first = book(api, patient, "2026-03-03T10:00:00+00:00")
    second = book(api, patient, "2026-03-10T10:00:00+00:00", procedure="filler", practitioner=str(bea.pk))
    third = book(api, other_patient, "2026-03-03T12:00:00+00:00")

    def ids(query):
        return [r["id"] for r in search(api, f"/fhir/r4/Appointment?{query}")[1]]

    assert ids(f"patient=Patient/{patient.pk}") == [str(first.pk), str(second.pk)]
    assert ids(f"patient={patient.pk}") == [str(first.pk), str(second.pk)]
    assert ids("date=ge2026-03-03T11:00:00Z&date=lt2026-03-04") == [str(third.pk)]
    assert ids("date=2026-03-10") == [str(second.pk)]
    assert ids(f"actor=Practitioner/{bea.pk}") == [str(second.pk)]
    assert ids(f"actor=Patient/{other_patient.pk},Practitioner/{bea.pk}") == [str(third.pk), str(second.pk)]
    assert ids("status=booked") == [str(first.pk), str(third.pk), str(second.pk)]
    assert ids("status=cancelled,noshow") == []
    assert ids("status=waitlist") == []  # an R4 code this server never gives
    assert ids("patient=Patient/not-an-id") == []


def test_appointments_outside_your_clinics_are_not_found(api, other_clinic, other_patient, other_practitioner):
    elsewhere = book(http(new_api_client(other_clinic)[1]), other_patient, "2026-03-03T15:00:00Z")
    assert search(api, "/fhir/r4/Appointment")[0]["total"] == 0
    assert search(api, f"/fhir/r4/Appointment?patient=Patient/{other_patient.pk}")[1] == []
    outcome(api.get(f"/fhir/r4/Appointment/{elsewhere.pk}"), 404)
    outcome(api.get("/fhir/r4/Appointment/not-a-uuid"), 404)


def test_appointment_search_problems(api):
    for path, parameter in [
        ("/fhir/r4/Appointment?status=done", "status"),
        ("/fhir/r4/Appointment?date=yesterday", "date"),
        ("/fhir/r4/Appointment?actor=Organization/1", "actor"),
        ("/fhir/r4/Appointment?patient=x&patient:missing=true", "patient:missing"),
    ]:
        assert outcome(api.get(path), 400)["expression"] == [parameter], path


# --- Who may read, and errors ----------------------------------------------------------------------------


def test_the_same_keys_and_scope_as_v1(practitioner, receptionist):
    issue = outcome(http().get("/fhir/r4/Schedule"), 401)
    assert issue["code"] == "login"
    response = http("nope.nope").get("/fhir/r4/Appointment")
    outcome(response, 401)
    assert response["WWW-Authenticate"] == "Token"
    search(session(receptionist), "/fhir/r4/Schedule")  # staff with their session


def test_writes_are_refused_with_a_pointer_to_v1(api, practitioner):
    for method in ("post", "put", "patch", "delete"):
        response = getattr(api, method)(f"/fhir/r4/Schedule/{practitioner.pk}", {}, format="json")
        issue = outcome(response, 405)
        assert "/api/v1/" in issue["diagnostics"]
    outcome(api.post("/fhir/r4/Appointment", {"resourceType": "Appointment"}, format="json"), 405)


def test_unknown_addresses_and_resource_types_are_operation_outcomes(api):
    for path in ("/fhir/r4/Patient", "/fhir/r4/Patient/1", "/fhir/r4/", "/fhir/r4/Slot/abc", "/fhir/r4/x/y/z"):
        assert outcome(api.get(path), 404)["code"] == "not-found", path


def test_an_unexpected_error_is_an_operation_outcome_not_a_page(api, practitioner, monkeypatch):
    from fhir import views

    def boom(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(views, "slots_search", boom)
    issue = outcome(api.get("/fhir/r4/Slot"), 500)
    assert issue["code"] == "exception" and "a bug" not in issue["diagnostics"]


def test_any_accept_header_gets_fhir_json(api, practitioner):
    for accept in ("application/xml", "text/html", "application/json", "*/*", "application/fhir+json"):
        response = api.get("/fhir/r4/Schedule", HTTP_ACCEPT=accept)
        assert response.status_code == 200 and response["Content-Type"].startswith(FHIR_JSON), accept


def test_a_checked_in_appointment_has_arrived_and_searches_as_such(api, patient, practitioner):
    from clinic.models import Appointment

    waiting = book(api, patient, "2026-03-03T10:00:00+00:00")
    here = book(api, PatientFactory(clinic=practitioner.clinic), "2026-03-03T11:00:00+00:00")
    Appointment.objects.filter(pk=here.pk).update(checked_in_at=datetime(2026, 3, 3, 10, 55, tzinfo=UTC))

    _, resources = search(api, "/fhir/r4/Appointment")
    status = {r["id"]: r["status"] for r in resources}
    assert (status[str(waiting.pk)], status[str(here.pk)]) == ("booked", "arrived")
    _, arrived = search(api, "/fhir/r4/Appointment?status=arrived")
    _, booked = search(api, "/fhir/r4/Appointment?status=booked")
    assert [r["id"] for r in arrived] == [str(here.pk)]
    assert [r["id"] for r in booked] == [str(waiting.pk)]


# --- edges (tests/qa/test_fhir_edges_probe.py found them) --------------------------------------------------


def test_time_off_entries_that_overlap_or_touch_are_one_busy_unavailable_slot(api, practitioner):
    """Given time off entered as 12:00-14:00 twice, 13:00-15:00 and 15:00-16:00 (touching), when Slots are searched,
    then one busy-unavailable Slot 12:00-16:00 is listed, in the window of its start only."""
    for start, end in ((12, 14), (12, 14), (13, 15), (15, 16)):
        TimeOff.objects.create(
            practitioner=practitioner,
            start_at=datetime(2026, 3, 3, start, tzinfo=UTC),
            end_at=datetime(2026, 3, 3, end, tzinfo=UTC),
        )
    _, slots = search(api, "/fhir/r4/Slot?status=busy-unavailable&start=2026-03-03")
    assert [(s["start"][11:16], s["end"][11:16]) for s in slots] == [("12:00", "16:00")]
    # A window that starts inside the span does not list it again; one that ends before the later entries
    # start still gives the span whole.
    assert search(api, "/fhir/r4/Slot?status=busy-unavailable&start=ge2026-03-03T13:00:00Z&start=lt2026-03-04")[1] == []
    _, early = search(
        api, "/fhir/r4/Slot?status=busy-unavailable&start=ge2026-03-03T11:00:00Z&start=lt2026-03-03T12:30Z"
    )
    assert [(s["start"][11:16], s["end"][11:16]) for s in early] == [("12:00", "16:00")]


def test_adjacent_windows_share_no_free_time(api, patient, practitioner):
    """Given a booking 10:00-10:30, when a day is searched in two windows split off the grid (10:40), then the free
    stretches of both are those of the whole day, cut at a grid point, and none overlaps another."""
    book(api, patient, "2026-03-03T10:00:00+00:00")
    free = "/fhir/r4/Slot?status=free&start=ge2026-03-03T00:00:00Z&start=lt2026-03-03T10:40:00Z"
    _, morning = search(api, free)
    _, later = search(api, "/fhir/r4/Slot?status=free&start=ge2026-03-03T10:40:00Z&start=lt2026-03-04")
    spans = [(s["start"][11:16], s["end"][11:16]) for s in morning + later]
    assert spans == [("09:00", "10:00"), ("10:30", "10:45"), ("10:45", "18:00")]


def test_searching_by_post_is_the_same_search(api, patient, practitioner):
    """Given two appointments, when searched by POST [type]/_search with a form body (and a parameter in the
    address), then the Bundle is the GET search's; its next link is a GET address; a JSON body is a 415."""
    made = [book(api, patient, f"2026-03-0{day}T10:00:00+00:00") for day in (3, 4)]
    form = "application/x-www-form-urlencoded"
    body = api.post("/fhir/r4/Appointment/_search?_count=1", f"patient=Patient/{patient.pk}", content_type=form)
    assert body.status_code == 200 and body["Content-Type"].startswith(FHIR_JSON)
    body = body.json()
    Bundle.model_validate(body)
    assert (body["total"], [e["resource"]["id"] for e in body["entry"]]) == (2, [str(made[0].pk)])
    following = {link["relation"]: link["url"] for link in body["link"]}["next"]
    url = urlsplit(following)
    assert url.path == "/fhir/r4/Appointment"
    _, second = search(api, f"{url.path}?{url.query}")
    assert [r["id"] for r in second] == [str(made[1].pk)]
    _, slots = search(api, "/fhir/r4/Slot?status=busy&start=2026-03-03")
    by_post = api.post("/fhir/r4/Slot/_search", "status=busy&start=2026-03-03", content_type=form).json()
    assert [e["resource"]["id"] for e in by_post["entry"]] == [s["id"] for s in slots]
    outcome(api.post("/fhir/r4/Schedule/_search", "bogus=1", content_type=form), 400)
    assert outcome(api.post("/fhir/r4/Appointment/_search", {"patient": "x"}, format="json"), 415)["code"] == (
        "not-supported"
    )


def test_ids_in_searches_are_read_only_in_their_canonical_form(api, patient, practitioner):
    """Given an appointment, when `_id` or a reference names it in another spelling of its UUID, then nothing
    matches (R4 ids are case-sensitive); the canonical spelling finds it."""
    made = str(book(api, patient, "2026-03-03T10:00:00+00:00").pk)
    assert [r["id"] for r in search(api, f"/fhir/r4/Appointment?_id={made}")[1]] == [made]
    assert search(api, f"/fhir/r4/Appointment?_id={made.upper()}")[1] == []
    assert search(api, f"/fhir/r4/Appointment?patient=Patient/{str(patient.pk).upper()}")[1] == []
    assert search(api, f"/fhir/r4/Schedule?_id={str(practitioner.pk).replace('-', '')}")[1] == []


def test_schedule_actor_takes_comma_separated_alternatives(api, practitioner, other_practitioner, clinic):
    """Given a practitioner here, when `actor` lists another clinic's practitioner or this one, then this one's
    Schedule is found (alternatives: OR); the other clinic's stays unknown."""
    actor = f"Practitioner/{other_practitioner.pk},Practitioner/{practitioner.pk}"
    assert [r["id"] for r in search(api, f"/fhir/r4/Schedule?actor={actor}")[1]] == [str(practitioner.pk)]


def test_a_page_number_of_any_length_is_read_without_error(api, practitioner):
    """Given a search of one page, when `page` is a number of twenty digits, then it is past the last page (400),
    not a 500 or another page."""
    issue = outcome(api.get("/fhir/r4/Schedule?page=99999999999999999999"), 400)
    assert issue["expression"] == ["page"]
    assert search(api, "/fhir/r4/Schedule?page=0000000000000001")[0]["total"] == 1


def test_a_review_reason_without_a_message_is_no_empty_string(api, patient, practitioner):
    """Given a needs-review appointment whose stored reason has no message, when read, then its review-reason
    extension names the reason's code (R4 JSON holds no empty string)."""
    made = book(api, patient, "2026-03-03T10:00:00+00:00")
    Appointment.objects.filter(pk=made.pk).update(
        status=AppointmentStatus.NEEDS_REVIEW, review_reasons=[{"code": "interval_violation"}]
    )
    resource = fhir_get(api, f"/fhir/r4/Appointment/{made.pk}")
    reasons = [e["valueString"] for e in resource["extension"] if e["url"].endswith("review-reason")]
    assert reasons == ["interval_violation"]


def test_a_search_by_post_takes_the_limits_and_checks_of_any_post(api, receptionist):
    """Given a form body of 1,001 fields, when POSTed to [type]/_search, then it is a 400 `invalid` (not a 500);
    a staff session without its CSRF token is refused (403), as on any POST, and served with it."""
    form = "application/x-www-form-urlencoded"
    issue = outcome(api.post("/fhir/r4/Appointment/_search", "&".join(["a=1"] * 1001), content_type=form), 400)
    assert issue["code"] == "invalid"
    refused = session(receptionist, csrf=True).post("/fhir/r4/Schedule/_search", "", content_type=form)
    assert outcome(refused, 403)["code"] == "forbidden"
    served = session(receptionist).post("/fhir/r4/Schedule/_search", "", content_type=form)  # no CSRF check
    assert served.status_code == 200 and served.json()["resourceType"] == "Bundle"


def test_a_slot_service_type_of_another_system_matches_nothing(api, practitioner):
    """Given free time, when Slots are searched for a service-type coded in another system, then none is found;
    in our system (or none) the procedure's starts are; two procedures stay a 400."""
    window = "status=free&start=2026-03-03&service-type="
    assert search(api, "/fhir/r4/Slot?" + window + "http%3A%2F%2Fsnomed.info%2Fsct%7Cbotox")[1] == []
    ours = search(api, "/fhir/r4/Slot?" + window + "urn%3Aclinic-scheduling%3Aprocedure%7Cbotox")[0]
    assert ours["total"] == search(api, "/fhir/r4/Slot?" + window + "%7Cbotox")[0]["total"] == 35
    outcome(api.get("/fhir/r4/Slot?" + window + "botox&service-type=filler"), 400)


def test_a_search_by_post_sent_chunked_is_a_411_outcome_never_an_empty_search(api, patient, practitioner):
    """Given a busy slot, when `Slot/_search` is POSTed with its form body chunked (no Content-Length, as gunicorn
    hands such a body on), then it is a 411 OperationOutcome coded `length_required` (docs/fhir.md), not a search
    run with no parameters; sent with its length, the same body finds the slot."""
    book(api, patient, "2026-03-03T10:00:00+00:00")
    body = b"status=busy&start=2026-03-03"
    form = "application/x-www-form-urlencoded"
    chunked = api.request(
        PATH_INFO="/fhir/r4/Slot/_search",
        REQUEST_METHOD="POST",
        CONTENT_TYPE=form,
        HTTP_TRANSFER_ENCODING="chunked",
        **{"wsgi.input": FakePayload(body), "wsgi.input_terminated": True},
    )
    issue = outcome(chunked, 411)
    assert issue["details"]["coding"][0]["code"] == "length_required"
    assert api.post("/fhir/r4/Slot/_search", body.decode(), content_type=form).json()["total"] == 1
