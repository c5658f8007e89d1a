"""QA probe of the public REST API as a booking platform uses it: the patient record endpoints, merge, treatment
plans, eligibility and availability (is the earliest date really the earliest?), lists and filters,
Idempotency-Key, problem documents, the published schema against real answers, and tenancy. Each test quotes the
promise it checks (api-contract.md and its "v1 additions", docs/api.md, docs/plans.md, docs/organisations.md,
domain.md).

The clock is Monday 2 March 2026, 09:00 UTC, ticking. London is on GMT until Sunday 29 March (BST after). The
world: organisation A with clinics `london` and `west`, organisation B with clinic `newyork`.
"""

from __future__ import annotations

import uuid

import jsonschema
import pytest

from clinic.models import ApiClient, Appointment, AppointmentStatus, MedicationCourse, Patient, ProcedureRecord
from plans.defaults import plan_templates_load
from plans.models import PlanTemplate, TreatmentPlan
from tests.api.conftest import _clock, http, new_api_client, problem_of  # noqa: F401 (_clock: autouse fixture)
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory, ProcedureRecordFactory
from tests.qa.helpers import API, post

pytestmark = pytest.mark.django_db


@pytest.fixture
def london(catalogue):
    return ClinicFactory(code="london", name="London Clinic", timezone="Europe/London")


@pytest.fixture
def west(london):
    return ClinicFactory(code="west", name="West Clinic", timezone="Europe/London", organisation=london.organisation)


@pytest.fixture
def newyork(catalogue):
    return ClinicFactory(code="newyork", name="New York Clinic", timezone="America/New_York")


@pytest.fixture
def ada(london):
    return PractitionerFactory(clinic=london, name="Dr Ada")


@pytest.fixture
def dr_ny(newyork):
    return PractitionerFactory(clinic=newyork, name="Dr Elsewhere")


@pytest.fixture
def pat(london):
    return PatientFactory(
        clinic=london, first_name="Pat", last_name="Lee", email="pat@example.com", phone="+447700900001"
    )


@pytest.fixture
def bea(newyork):
    return PatientFactory(
        clinic=newyork, first_name="Bea", last_name="Other", email="bea@example.com", phone="+12125550100"
    )


@pytest.fixture
def api(london):
    """A booking platform granted the London clinic only."""
    return http(new_api_client(london, name="platform-london")[1])


@pytest.fixture
def clinical(london):
    return http(new_api_client(london, name="platform-clinical", clinical=True)[1])


@pytest.fixture
def west_api(west):
    return http(new_api_client(west, name="platform-west", clinical=True)[1])


@pytest.fixture
def ny_api(newyork):
    return http(new_api_client(newyork, name="platform-ny", clinical=True)[1])


def check(client, patient, procedure, start, **extra):
    response = post(
        client, "/eligibility/", {"patient": str(patient.pk), "procedure": procedure, "start": start, **extra}
    )
    assert response.status_code == 200, response.content
    return response.json()


def book(client, patient, procedure, start, **extra):
    return post(client, "/appointments/", {"patient": str(patient.pk), "procedure": procedure, "start": start, **extra})


def booked(client, patient, procedure, start, **extra) -> dict:
    response = book(client, patient, procedure, start, **extra)
    assert response.status_code == 201, response.content
    return response.json()


def reported(patient, code, at, **kwargs):
    return ProcedureRecordFactory(patient=patient, procedure_id=code, performed_at=at, **kwargs)


def interval_violations(answer):
    return [v for v in answer["violations"] if v["kind"] == "interval"]


# --- Eligibility: the earliest date is the earliest -------------------------------------------------------------


def test_earliest_start_is_that_local_day_and_the_evening_before_is_refused(api, pat, ada):
    """Contract: `earliest_eligible_start` is 'the earliest moment at or after the start asked for that satisfies
    every interval rule (with a calendar gap, the start of that local day)'; domain 2: botox -> microneedling 2 weeks,
    'A receptionist thinks "2 weeks after 1 March is 15 March", at any hour'."""
    record = reported(pat, "botox", "2026-02-20T23:30:00+00:00")
    answer = check(api, pat, "microneedling", "2026-03-05T10:00:00+00:00")
    assert (answer["eligible"], answer["status"]) == (False, "refused")
    assert answer["earliest_eligible_start"] == "2026-03-06T00:00:00+00:00"
    (violation,) = interval_violations(answer)
    assert violation["earliest_allowed"] == "2026-03-06T00:00:00+00:00"
    assert violation["conflicts_with"]["id"] == str(record.pk)
    # The last working minute of the day before is refused; the first of the day allowed goes through.
    late = check(api, pat, "microneedling", "2026-03-05T17:00:00+00:00")
    assert late["eligible"] is False and interval_violations(late)
    ok = check(api, pat, "microneedling", "2026-03-06T09:00:00+00:00")
    assert (ok["eligible"], ok["status"], ok["violations"]) == (True, "confirmed", [])
    assert book(api, pat, "microneedling", "2026-03-06T09:00:00+00:00").status_code == 201


def test_forward_rule_is_checked_and_a_dst_change_does_not_shift_the_calendar_gap(api, pat, ada):
    """Domain 2: a rule 'is checked in both directions: ... booking earlier looks forward at booked later events
    that it would make too close'; 'Daylight-saving changes never shift a calendar gap'. Microneedling booked on
    Monday 30 March (BST): Botox up to Monday 16 March (GMT) is fine, 17 March is too close, and the earliest
    Botox after the microneedling is 3 weeks on, 20 April, from local midnight."""
    booked(api, pat, "microneedling", "2026-03-30T10:00:00+01:00")
    assert check(api, pat, "botox", "2026-03-16T17:00:00+00:00")["eligible"] is True
    refused = check(api, pat, "botox", "2026-03-17T09:00:00+00:00")
    assert refused["eligible"] is False
    assert [v["conflicts_with"]["code"] for v in interval_violations(refused)] == ["microneedling"]
    assert refused["earliest_eligible_start"] == "2026-04-20T00:00:00+01:00"
    assert check(api, pat, "botox", "2026-04-18T17:00:00+01:00")["eligible"] is False
    assert check(api, pat, "botox", "2026-04-20T09:00:00+01:00")["eligible"] is True


def test_earliest_start_satisfies_both_directions_at_once(api, pat, ada):
    """Contract: 'earliest_eligible_start: the earliest moment at or after the start asked for that satisfies
    every interval rule'. Microneedling done 25 February and booked 1 April: Botox needs 3 weeks after the first
    (18 March on) and 2 weeks before the second (18 March at the latest), so 18 March is the one day; asked for the
    19th, the next date is 3 weeks after 1 April."""
    reported(pat, "microneedling", "2026-02-25T10:00:00+00:00")
    booked(api, pat, "microneedling", "2026-04-01T10:00:00+01:00")
    early = check(api, pat, "botox", "2026-03-10T10:00:00+00:00")
    assert early["eligible"] is False
    assert early["earliest_eligible_start"] == "2026-03-18T00:00:00+00:00"
    assert check(api, pat, "botox", "2026-03-17T17:00:00+00:00")["eligible"] is False
    assert check(api, pat, "botox", "2026-03-18T09:00:00+00:00")["eligible"] is True
    late = check(api, pat, "botox", "2026-03-19T09:00:00+00:00")
    assert late["eligible"] is False
    assert late["earliest_eligible_start"] == "2026-04-22T00:00:00+01:00"


def test_cancelled_and_moved_bookings_stop_counting(api, pat, ada):
    """Domain 2: 'Rescheduling re-checks; cancelling frees'; domain 1: the timeline holds 'booked appointments that
    are not cancelled'."""
    first = booked(api, pat, "microneedling", "2026-03-20T10:00:00+00:00")
    assert check(api, pat, "botox", "2026-03-12T10:00:00+00:00")["eligible"] is False
    moved = post(api, f"/appointments/{first['id']}/reschedule/", {"start": "2026-04-20T10:00:00+01:00"})
    assert moved.status_code == 201, moved.content
    assert check(api, pat, "botox", "2026-03-12T10:00:00+00:00")["eligible"] is True  # old time freed
    assert check(api, pat, "botox", "2026-04-10T10:00:00+01:00")["eligible"] is False  # new time counts
    assert post(api, f"/appointments/{first['id']}/cancel/", {}).status_code == 200
    assert check(api, pat, "botox", "2026-04-10T10:00:00+01:00")["eligible"] is True
    slots = api.get(
        f"{API}/availability/",
        {
            "patient": str(pat.pk),
            "procedure": "botox",
            "from": "2026-04-10T00:00:00+01:00",
            "to": "2026-04-11T00:00:00+01:00",
        },
    )
    assert slots.status_code == 200 and slots.json()["count"] > 0


def test_warn_rule_never_moves_the_earliest_date(api, pat, ada):
    """Domain 2: microneedling -> plasma pen 'block at 7 days, warn before 10 days'; contract: 'Warnings (severity:
    warn) never refuse a booking' and the earliest start answers 'every interval rule' of block severity."""
    reported(pat, "microneedling", "2026-02-25T10:00:00+00:00")
    refused = check(api, pat, "plasma_pen", "2026-03-03T10:00:00+00:00")
    assert refused["eligible"] is False
    assert refused["earliest_eligible_start"] == "2026-03-04T00:00:00+00:00"
    warned = check(api, pat, "plasma_pen", "2026-03-04T09:00:00+00:00")
    assert (warned["eligible"], warned["status"]) == (True, "confirmed")
    assert [w["severity"] for w in warned["warnings"]] == ["warn"]


def test_ending_an_isotretinoin_course_turns_an_unknown_earliest_date_into_six_calendar_months(api, pat, ada):
    """Domain 2: 'A course that has not ended blocks every date ...; the earliest eligible start is then unknown
    (null) until its end date is recorded'; isotretinoin end -> microneedling 6 months, calendar months
    (30 September + 6 months = 30 March, already BST)."""
    created = post(api, f"/patients/{pat.pk}/medications/", {"drug": "isotretinoin", "started_on": "2025-04-01"})
    assert created.status_code == 201, created.content
    ongoing = check(api, pat, "microneedling", "2026-03-10T10:00:00+00:00")
    assert ongoing["eligible"] is False and ongoing["earliest_eligible_start"] is None
    ended = api.patch(created["Location"], {"ended_on": "2025-09-30"}, format="json")
    assert ended.status_code == 200, ended.content
    answer = check(api, pat, "microneedling", "2026-03-10T10:00:00+00:00")
    assert answer["earliest_eligible_start"] == "2026-03-30T00:00:00+01:00"
    (block,) = [v for v in answer["violations"] if v["severity"] == "block"]
    assert block["conflicts_with"]["at"] == "2025-09-30"
    assert check(api, pat, "microneedling", "2026-03-28T17:00:00+00:00")["eligible"] is False
    assert check(api, pat, "microneedling", "2026-03-30T09:00:00+01:00")["eligible"] is True


def test_a_sister_sites_booking_refuses_and_is_named_but_stays_out_of_reach(api, west_api, pat, ada, dr_west):
    """v1 additions: 'an appointment at another clinic of the organisation is still counted by every rule, and a
    refusal caused by it names it in conflicts_with (id, kind, code, at, clinic)'; it 'lists, books and acts on
    appointments only at the clinics it was granted'."""
    london_mn = booked(api, pat, "microneedling", "2026-03-20T10:00:00+00:00")
    answer = check(west_api, pat, "botox", "2026-03-12T10:00:00+00:00")
    assert answer["eligible"] is False
    conflict = interval_violations(answer)[0]["conflicts_with"]
    assert conflict == {
        "id": london_mn["id"],
        "kind": conflict["kind"],
        "code": "microneedling",
        "at": "2026-03-20T10:00:00+00:00",
        "clinic": london_mn["clinic"],
    }
    assert conflict["kind"] in ("procedure", "appointment")
    problem_of(west_api.get(f"{API}/appointments/{london_mn['id']}/"), 404)
    assert west_api.get(f"{API}/appointments/", {"patient": str(pat.pk)}).json()["count"] == 0
    problem_of(post(west_api, f"/appointments/{london_mn['id']}/cancel/", {}), 404)
    assert Appointment.objects.get(pk=london_mn["id"]).status == AppointmentStatus.CONFIRMED


# --- Availability ---------------------------------------------------------------------------------------------


def test_availability_starts_on_the_first_eligible_day_in_both_directions(api, pat, ada):
    """Contract: availability gives 'free slots that are also interval-eligible for that patient'."""
    reported(pat, "botox", "2026-02-20T23:30:00+00:00")
    answer = api.get(
        f"{API}/availability/",
        {
            "patient": str(pat.pk),
            "procedure": "microneedling",
            "from": "2026-03-05T00:00:00Z",
            "to": "2026-03-07T00:00:00Z",
        },
    )
    assert answer.status_code == 200, answer.content
    starts = [slot["start"] for slot in answer.json()["results"]]
    assert starts and starts[0] == "2026-03-06T09:00:00+00:00"
    assert all(s.startswith("2026-03-06") for s in starts)
    # Forward: microneedling booked 20 March leaves Botox only up to 6 March.
    booked(api, pat, "microneedling", "2026-03-20T10:00:00+00:00")
    forward = api.get(
        f"{API}/availability/",
        {"patient": str(pat.pk), "procedure": "botox", "from": "2026-03-06T00:00:00Z", "to": "2026-03-11T00:00:00Z"},
    )
    assert forward.status_code == 200, forward.content
    days = {slot["start"][:10] for slot in forward.json()["results"]}
    assert days == {"2026-03-06"}


@pytest.mark.parametrize(
    ("params", "field", "code"),
    [
        ({"from": "2026-03-05T09:00:00"}, "from", "invalid_input"),
        ({"from": "2026-03-05T09:00:00 00:00"}, "from", "invalid_input"),  # an unencoded '+' arrives as a space
        ({"from": "2026-03-10T09:00:00Z", "to": "2026-03-09T09:00:00Z"}, "to", None),
        ({"from": "2026-03-10T09:00:00Z", "to": "2026-07-10T09:00:00Z"}, "to", None),
        ({"procedure": "tattoo"}, "procedure", "unknown_procedure"),
        ({"clinic": "newyork"}, "clinic", "unknown_clinic"),
        ({"area": "elbow"}, "area", "unknown_area"),
        ({"page_size": "0"}, "page_size", "invalid_input"),
    ],
)
def test_availability_bad_values_are_problems_naming_the_field(api, pat, ada, newyork, params, field, code):
    """docs/api.md: availability 'from, to (default 14 days, at most 92)'; 'Every 400 has errors: {field:
    [messages]}'; an id or code outside your clinics is 'There is no such ...'."""
    query = {"patient": str(pat.pk), "procedure": "botox", **params}
    body = problem_of(api.get(f"{API}/availability/", query), 400)
    assert field in body["errors"], body
    if code:
        assert body["code"] == code


def test_availability_for_another_organisations_patient_or_practitioner_reveals_nothing(api, pat, ada, bea, dr_ny):
    """docs/api.md: 'an id in a body or query (patient, practitioner, clinic) that is outside your clinics is a 400
    with errors.<field>: ["There is no such ..."], word for word what a missing one gets'."""
    outside = api.get(f"{API}/availability/", {"patient": str(bea.pk), "procedure": "botox"})
    missing = api.get(f"{API}/availability/", {"patient": str(uuid.uuid4()), "procedure": "botox"})
    assert (
        problem_of(outside, 400)["errors"]
        == problem_of(missing, 400)["errors"]
        == {"patient": ["There is no such patient."]}
    )
    ny_doc = api.get(
        f"{API}/availability/", {"patient": str(pat.pk), "procedure": "botox", "practitioner": str(dr_ny.pk)}
    )
    body = problem_of(ny_doc, 400)
    assert body["code"] == "unknown_practitioner" and "practitioner" in body["errors"]


# --- Lists and filters ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "query", "field", "code"),
    [
        ("/appointments/", "status=bogus", "status", "invalid_input"),
        ("/appointments/", "status=", "status", "invalid_input"),
        ("/appointments/", "start_after=2026-03-01T10:00:00", "start_after", "invalid_input"),
        ("/appointments/", "start_before=2026-03-01T10:00:00+01:00:30", "start_before", "invalid_input"),
        (
            "/appointments/",
            "start_after=2026-03-01T10:00:00+00:00&start_after=2026-03-02T10:00:00Z",
            "start_after",
            "invalid_input",
        ),
        ("/appointments/", "patient=not-an-id", "patient", "unknown_patient"),
        ("/appointments/", "clinic=newyork", "clinic", "unknown_clinic"),
        ("/appointments/", "page=0", "page", "invalid_input"),
        ("/appointments/", "page=last", "page", "invalid_input"),
        ("/appointments/", "page=2", "page", "page_out_of_range"),
        ("/appointments/", "page_size=201", "page_size", "invalid_input"),
        ("/procedures/", "bookable=yes", "bookable", "invalid_input"),
        ("/procedures/", "bookable=true&bookable=false", "bookable", "invalid_input"),
        ("/practitioners/", "clinic=%00", "clinic", "invalid_input"),
        ("/patients/", "search=", "search", "invalid_input"),
        ("/patients/", "clinic=newyork", "clinic", "unknown_clinic"),
        (f"/patients/{uuid.UUID(int=7)}/procedures/", "page=x", None, None),
    ],
)
def test_bad_query_values_are_400_problems_naming_the_parameter(api, pat, newyork, path, query, field, code):
    """docs/api.md Lists: 'Anything else is a 400 naming the parameter'; 'A page past the last one is a 400 with its
    own code, page_out_of_range'; 'an empty value ... a parameter given twice that takes one value ... a boolean other
    than true/false' are refused."""
    response = api.get(f"{API}{path}?{query}")
    if field is None:  # an unknown patient in the path: a 404 whatever the query
        problem_of(response, 404)
        return
    body = problem_of(response, 400)
    assert field in body["errors"], body
    assert body["code"] == code


def test_filters_with_another_organisations_ids_say_exactly_what_a_missing_id_says(api, pat, bea, dr_ny):
    """docs/api.md: filters 'An id that is not one of yours (or not an id) is a 400 unknown_patient /
    unknown_practitioner / unknown_clinic, errors.<name>: ["There is no such ..."]'."""
    for name, outside in (("patient", bea.pk), ("practitioner", dr_ny.pk)):
        theirs = problem_of(api.get(f"{API}/appointments/", {name: str(outside)}), 400)
        nobodys = problem_of(api.get(f"{API}/appointments/", {name: str(uuid.uuid4())}), 400)
        assert theirs["errors"] == nobodys["errors"] == {name: [f"There is no such {name}."]}
        assert theirs["code"] == nobodys["code"] == f"unknown_{name}"
    # A search never finds another organisation's patient, by name, e-mail or phone.
    for term in ("Bea", "bea@example.com", "2125550100"):
        assert api.get(f"{API}/patients/", {"search": term}).json()["count"] == 0


def test_status_filter_repeats_and_knows_needs_review(api, pat, ada):
    """docs/api.md: '?status= (repeatable)'; contract v1 additions: new status needs_review."""
    one = booked(api, pat, "botox", "2026-03-10T10:00:00+00:00")
    two = booked(api, pat, "filler", "2026-03-11T10:00:00+00:00")
    assert post(api, f"/appointments/{two['id']}/cancel/", {}).status_code == 200
    both = api.get(f"{API}/appointments/?status=confirmed&status=cancelled").json()
    assert {row["id"] for row in both["results"]} == {one["id"], two["id"]}
    review = api.get(f"{API}/appointments/?status=needs_review")
    assert review.status_code == 200 and review.json()["count"] == 0


def test_a_merged_records_id_in_a_filter_is_answered_like_in_a_body(clinical, pat, ada, london):
    """docs/api.md: 'Tombstones are in no list, search or body: {"patient": "<tombstone>"} ... is a 400
    patient_merged naming the survivor'. The filter ?patient= reads a tombstone as the body does."""
    twin = PatientFactory(clinic=london, first_name="Patricia", last_name="Lee", email="twin@example.com")
    merged = post(clinical, f"/patients/{twin.pk}/merge/", {"into": str(pat.pk)})
    assert merged.status_code == 200, merged.content
    body_answer = problem_of(
        post(
            clinical, "/eligibility/", {"patient": str(twin.pk), "procedure": "botox", "start": "2026-03-10T10:00:00Z"}
        ),
        400,
    )
    assert (body_answer["code"], body_answer["merged_into"]) == ("patient_merged", str(pat.pk))
    filtered = clinical.get(f"{API}/appointments/", {"patient": str(twin.pk)})
    assert filtered.status_code == 400, filtered.content
    assert (
        problem_of(filtered, 400)["errors"]
        == body_answer["errors"]
        == {"patient": [f"This record was merged into {pat.pk}: send that id."]}
    )


# --- Idempotency-Key -----------------------------------------------------------------------------------------


def _same_answer(first, again):
    assert again.status_code == first.status_code
    assert again.content == first.content
    assert again.get("Location") == first.get("Location")
    assert again["Content-Type"] == first["Content-Type"]
    assert again["Idempotent-Replayed"] == "true"
    # Date and Expires (never_cache: the moment of answering) are the replay's own; the suite's clock ticks.
    skip = {"idempotent-replayed", "date", "expires"}
    first_headers = {k.lower(): v for k, v in first.headers.items() if k.lower() not in skip}
    again_headers = {k.lower(): v for k, v in again.headers.items() if k.lower() not in skip}
    assert again_headers == first_headers


def test_a_refusal_and_a_booking_replay_byte_for_byte(api, pat, ada):
    """docs/api.md: 'returns the first response again — same status, same body (byte for byte ...), same Location,
    plus Idempotent-Replayed: true — and creates nothing. This includes a first answer that was a 400 or a 409.'"""
    reported(pat, "botox", "2026-02-27T10:00:00+00:00")
    body = {"patient": str(pat.pk), "procedure": "microneedling", "start": "2026-03-05T10:00:00+00:00"}
    first = post(api, "/appointments/", body, key="qa-refusal-1")
    assert first.status_code == 409
    again = post(api, "/appointments/", dict(reversed(list(body.items()))), key="qa-refusal-1")
    _same_answer(first, again)
    ok = {**body, "start": "2026-03-13T10:00:00+00:00", "area": "face"}
    first = post(api, "/appointments/", ok, key="qa-book-1")
    assert first.status_code == 201 and first["Location"].endswith(f"/{first.json()['id']}/")
    _same_answer(first, post(api, "/appointments/", ok, key="qa-book-1"))
    assert Appointment.objects.filter(patient=pat).count() == 1


def test_a_possible_duplicate_is_replayed_and_the_confirmation_needs_a_new_key(api, pat):
    """docs/api.md: 'With an Idempotency-Key, the 409 is stored and replayed like any answer: the confirmed request
    needs a new key.' Contract: 'the same key with a different body is a 422'."""
    body = {"first_name": "Pat", "last_name": "Lee", "email": "PAT@example.com", "clinic": "london"}
    first = post(api, "/patients/", body, key="qa-dup-1")
    assert problem_of(first, 409)["code"] == "possible_duplicate"
    _same_answer(first, post(api, "/patients/", body, key="qa-dup-1"))
    reused = post(api, "/patients/", {**body, "confirm_new": True}, key="qa-dup-1")
    assert problem_of(reused, 422)["code"] == "idempotency_key_reused"
    assert Patient.objects.filter(last_name="Lee").count() == 1
    created = post(api, "/patients/", {**body, "confirm_new": True}, key="qa-dup-2")
    assert created.status_code == 201
    _same_answer(created, post(api, "/patients/", {**body, "confirm_new": True}, key="qa-dup-2"))
    assert Patient.objects.filter(last_name="Lee").count() == 2


def test_one_key_on_two_patients_records_is_a_422_and_stores_nothing_new(api, pat, london):
    """docs/api.md: 'The same key with the same request (method, path and JSON body ...)'; 'The same key with a
    different request is a 422 (idempotency_key_reused)'. Same body, another patient's path: a different request."""
    other = PatientFactory(clinic=london, first_name="Kim", last_name="Park", email="kim@example.com")
    body = {"procedure": "botox", "performed_at": "2026-02-01T10:00:00+00:00"}
    assert post(api, f"/patients/{pat.pk}/procedures/", body, key="qa-history").status_code == 201
    reused = post(api, f"/patients/{other.pk}/procedures/", body, key="qa-history")
    assert problem_of(reused, 422)["code"] == "idempotency_key_reused"
    assert ProcedureRecord.objects.filter(patient=other).count() == 0
    # and on another endpoint altogether
    reused = post(
        api, f"/patients/{pat.pk}/medications/", {"drug": "anticoagulant", "started_on": "2026-01-01"}, key="qa-history"
    )
    assert problem_of(reused, 422)["code"] == "idempotency_key_reused"
    assert MedicationCourse.objects.filter(patient=pat).count() == 0


def test_a_merge_replays_its_200_even_though_the_address_now_redirects(clinical, pat, london):
    """docs/api.md Merge: 'Accepts Idempotency-Key'; Idempotency: the same key and request 'returns the first
    response again — same status, same body'. Without the key, the merged record's address is a 308."""
    twin = PatientFactory(clinic=london, first_name="Patricia", last_name="Lee", email="twin@example.com")
    first = post(clinical, f"/patients/{twin.pk}/merge/", {"into": str(pat.pk)}, key="qa-merge")
    assert first.status_code == 200, first.content
    assert first.json()["id"] == str(pat.pk)
    _same_answer(first, post(clinical, f"/patients/{twin.pk}/merge/", {"into": str(pat.pk)}, key="qa-merge"))
    unkeyed = post(clinical, f"/patients/{twin.pk}/merge/", {"into": str(pat.pk)})
    assert unkeyed.status_code == 308
    assert unkeyed["Location"] == f"{API}/patients/{pat.pk}/merge/"
    assert unkeyed.json()["merged_into"] == str(pat.pk)


def test_a_booked_plan_replays_and_books_its_course_once(api, pat, ada, templates_loaded):
    """docs/plans.md: 'Otherwise → 201 the plan (Location is the plan), every session booked'; 'Idempotency-Key
    works as for a booking'."""
    body = {"template": "microneedling-course", "start_from": "2026-03-09"}
    first = post(api, f"/patients/{pat.pk}/plans/", body, key="qa-plan")
    assert first.status_code == 201, first.content
    plan = first.json()
    assert first["Location"] == f"{API}/plans/{plan['id']}/"
    assert len(plan["sessions"]) == 3 and all(s["appointment"] for s in plan["sessions"])
    _same_answer(first, post(api, f"/patients/{pat.pk}/plans/", body, key="qa-plan"))
    assert TreatmentPlan.objects.filter(patient=pat).count() == 1
    assert Appointment.objects.filter(patient=pat).count() == 3


@pytest.mark.postgres
def test_two_identical_plan_requests_at_once_book_one_course(pat, ada, templates_loaded, london, transactional_db):
    """docs/api.md: 'Two identical requests at the same moment create one appointment: ... the second request waits
    on that constraint until the first commits, then replays its stored response'."""
    import threading

    from django.db import connection

    key = new_api_client(london, name="racer")[1]
    body = {"template": "microneedling-course", "start_from": "2026-03-09"}
    answers = []
    barrier = threading.Barrier(2)

    def run():
        try:
            barrier.wait()
            answers.append(post(http(key), f"/patients/{pat.pk}/plans/", body, key="qa-race"))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(a.status_code for a in answers) == [201, 201], [a.content for a in answers]
    assert answers[0].content == answers[1].content
    assert TreatmentPlan.objects.filter(patient=pat).count() == 1
    assert Appointment.objects.filter(patient=pat).count() == 3


def test_earliest_date_is_new_york_local_and_crosses_its_dst_change(ny_api, bea, dr_ny):
    """Domain 2: calendar gaps are 'in the clinic's local time zone: the later event's local date must be on or
    after the earlier event's local date plus the gap'; contract: 'Responses give times in the clinic's offset'.
    Botox at 20:00 EST on 25 February is already 26 February in UTC; New York moves to EDT on 8 March."""
    reported(bea, "botox", "2026-02-25T20:00:00-05:00")
    answer = check(ny_api, bea, "microneedling", "2026-03-10T10:00:00-04:00")
    assert answer["eligible"] is False
    assert answer["earliest_eligible_start"] == "2026-03-11T00:00:00-04:00"
    assert interval_violations(answer)[0]["conflicts_with"]["at"] == "2026-02-25T20:00:00-05:00"
    assert check(ny_api, bea, "microneedling", "2026-03-10T17:00:00-04:00")["eligible"] is False
    assert check(ny_api, bea, "microneedling", "2026-03-11T09:00:00-04:00")["eligible"] is True
    slots = ny_api.get(
        f"{API}/availability/",
        {
            "patient": str(bea.pk),
            "procedure": "microneedling",
            "from": "2026-03-10T00:00:00-04:00",
            "to": "2026-03-12T00:00:00-04:00",
        },
    ).json()["results"]
    assert slots and slots[0]["start"] == "2026-03-11T09:00:00-04:00"


def test_ending_a_course_before_it_started_is_refused_and_changes_nothing(api, pat):
    """docs/api.md: catalogue code ends_before_start is a 400; a 400 names the field and stores nothing."""
    created = post(api, f"/patients/{pat.pk}/medications/", {"drug": "isotretinoin", "started_on": "2025-04-01"})
    assert created.status_code == 201
    body = problem_of(api.patch(created["Location"], {"ended_on": "2025-03-31"}, format="json"), 400)
    assert body["code"] == "ends_before_start" and "ended_on" in body["errors"]
    body = problem_of(
        post(
            api,
            f"/patients/{pat.pk}/medications/",
            {"drug": "anticoagulant", "started_on": "2025-04-01", "ended_on": "2025-03-01"},
        ),
        400,
    )
    assert body["code"] == "ends_before_start"
    assert list(MedicationCourse.objects.filter(patient=pat).values_list("drug_id", "ended_on")) == [
        ("isotretinoin", None)
    ]


def test_a_merge_conflict_is_listed_then_decided(clinical, pat, london):
    """docs/api.md Merge: '409 merge-conflict with conflicts: {kind: intake, condition, area, statuses: {<id>:
    active|history}} ... Nothing changes'; with `intake` deciding it, '200 with the survivor'; the history is joined."""
    twin = PatientFactory(clinic=london, first_name="Patricia", last_name="Lee", email="twin@example.com")
    clinical.put(f"{API}/patients/{pat.pk}/conditions/", [{"condition": "eczema", "status": "active"}], format="json")
    clinical.put(f"{API}/patients/{twin.pk}/conditions/", [{"condition": "eczema", "status": "history"}], format="json")
    reported(twin, "botox", "2026-02-20T10:00:00+00:00")
    refused = problem_of(post(clinical, f"/patients/{twin.pk}/merge/", {"into": str(pat.pk)}), 409)
    assert refused["code"] == "merge_conflict"
    assert refused["conflicts"] == [
        {
            "kind": "intake",
            "condition": "eczema",
            "area": None,
            "statuses": {str(pat.pk): "active", str(twin.pk): "history"},
        }
    ]
    assert Patient.objects.get(pk=twin.pk).merged_into_id is None
    decided = post(
        clinical,
        f"/patients/{twin.pk}/merge/",
        {"into": str(pat.pk), "intake": [{"condition": "eczema", "area": None, "status": "history"}]},
    )
    assert decided.status_code == 200, decided.content
    assert decided.json()["id"] == str(pat.pk)
    intake = clinical.get(f"{API}/patients/{pat.pk}/conditions/").json()["results"]
    assert [(row["condition"], row["status"]) for row in intake] == [("eczema", "history")]
    assert clinical.get(f"{API}/patients/{pat.pk}/procedures/").json()["count"] == 1
    moved = clinical.get(f"{API}/patients/{twin.pk}/procedures/?page_size=5")
    assert moved.status_code == 308
    assert moved["Location"] == f"{API}/patients/{pat.pk}/procedures/?page_size=5"
    assert [row["id"] for row in clinical.get(f"{API}/patients/").json()["results"]] == [str(pat.pk)]


def test_a_plan_dry_run_books_nothing_and_a_proposal_of_the_wrong_length_is_refused(api, pat, ada, templates_loaded):
    """docs/plans.md: 'dry_run: true -> 200 {feasible, reason, obstacle, sessions ...}; books nothing'; 'a proposal
    of the wrong length (invalid_plan)' is a 400 naming the field."""
    dry = post(
        api,
        f"/patients/{pat.pk}/plans/",
        {"template": "microneedling-course", "start_from": "2026-03-09", "dry_run": True},
    )
    assert dry.status_code == 200, dry.content
    proposal = dry.json()
    assert proposal["feasible"] is True and len(proposal["sessions"]) == 3
    assert not Appointment.objects.filter(patient=pat).exists()
    first, second, third = proposal["sessions"]
    assert first["start"].startswith("2026-03-09")
    assert second["window"]["ideal"] == "2026-04-06" and third["window"]["ideal"] == "2026-05-04"
    short = post(
        api,
        f"/patients/{pat.pk}/plans/",
        {
            "template": "microneedling-course",
            "start_from": "2026-03-09",
            "proposal": [{"start": s["start"], "practitioner": s["practitioner"]} for s in proposal["sessions"][:2]],
        },
    )
    body = problem_of(short, 400)
    assert body["code"] == "invalid_plan" and "proposal" in body["errors"]
    assert not Appointment.objects.filter(patient=pat).exists()
    booked_plan = post(
        api,
        f"/patients/{pat.pk}/plans/",
        {
            "template": "microneedling-course",
            "start_from": "2026-03-09",
            "proposal": [{"start": s["start"], "practitioner": s["practitioner"]} for s in proposal["sessions"]],
        },
    )
    assert booked_plan.status_code == 201, booked_plan.content
    starts = sorted(a.start_at.isoformat() for a in Appointment.objects.filter(patient=pat))
    assert len(starts) == 3


def test_eligibility_status_is_what_booking_gives(api, pat, ada):
    """Contract: 'eligible is false exactly when booking would get a 409, and status says what booking would give
    (confirmed, pending_clearance or refused)'; an absolute contraindication: earliest_eligible_start null."""
    api.put(f"{API}/patients/{pat.pk}/conditions/", [{"condition": "eczema", "status": "history"}], format="json")
    held = check(api, pat, "microneedling", "2026-03-10T10:00:00+00:00")
    assert (held["eligible"], held["status"]) == (True, "pending_clearance")
    assert booked(api, pat, "microneedling", "2026-03-10T10:00:00+00:00")["status"] == "pending_clearance"
    api.put(
        f"{API}/patients/{pat.pk}/conditions/",
        [{"condition": "eczema", "status": "history"}, {"condition": "cardiac_abnormality", "status": "active"}],
        format="json",
    )
    barred = check(api, pat, "microneedling", "2026-04-20T10:00:00+01:00")
    assert (barred["eligible"], barred["status"], barred["earliest_eligible_start"]) == (False, "refused", None)
    refused = book(api, pat, "microneedling", "2026-04-20T10:00:00+01:00")
    assert problem_of(refused, 409)["earliest_eligible_start"] is None


def test_an_ungranted_sister_clinic_is_unknown_in_queries_and_bodies(api, pat, ada, west, dr_west):
    """docs/api.md: 'an id in a body or query (patient, practitioner, clinic) that is outside your clinics is a 400
    with errors.<field>: ["There is no such ..."], word for word what a missing one gets' -- a clinic of the same
    organisation that was not granted included; the contract: it 'books ... only at the clinics it was granted'."""
    nowhere = problem_of(api.get(f"{API}/appointments/", {"clinic": "no-such-clinic"}), 400)
    sister = problem_of(api.get(f"{API}/appointments/", {"clinic": "west"}), 400)
    assert sister["errors"] == nowhere["errors"] == {"clinic": ["There is no such clinic."]}
    by_id = problem_of(api.get(f"{API}/practitioners/", {"clinic": str(west.pk)}), 400)
    assert by_id["code"] == "unknown_clinic"
    there = book(api, pat, "botox", "2026-03-10T10:00:00+00:00", clinic="west")
    assert problem_of(there, 400)["errors"] == {"clinic": ["There is no such clinic."]}
    with_doc = book(api, pat, "botox", "2026-03-10T10:00:00+00:00", practitioner=str(dr_west.pk))
    assert problem_of(with_doc, 400)["code"] == "unknown_practitioner"
    mismatch = book(api, pat, "botox", "2026-03-10T10:00:00+00:00", practitioner=str(ada.pk), clinic=str(uuid.uuid4()))
    assert problem_of(mismatch, 400)["code"] == "unknown_clinic"
    assert not Appointment.objects.filter(patient=pat).exists()


def test_an_organisation_grant_reaches_a_clinic_opened_later(pat, london, ada):
    """Contract v1 additions: '--organisation CODE grants every clinic of that organisation (now and later)'."""
    client = ApiClient(name="org-platform")
    key = client.set_new_key()
    client.save()
    client.organisations.add(london.organisation)
    api = http(key)
    assert {row["code"] for row in api.get(f"{API}/clinics/").json()["results"]} == {"london"}
    later = ClinicFactory(code="later", timezone="Europe/London", organisation=london.organisation)
    doc = PractitionerFactory(clinic=later, name="Dr Later")
    assert {row["code"] for row in api.get(f"{API}/clinics/").json()["results"]} == {"london", "later"}
    # Several clinics, none named, no practitioner: the patient's home clinic (it is one of the caller's).
    home = booked(api, pat, "botox", "2026-03-10T10:00:00+00:00")
    assert home["clinic"] == str(london.pk)
    there = booked(api, pat, "filler", "2026-03-11T10:00:00+00:00", clinic="later")
    assert (there["clinic"], there["practitioner"]) == (str(later.pk), str(doc.pk))
    assert api.get(f"{API}/organisations/").json()["results"] == [
        {"id": str(london.organisation_id), "code": london.organisation.code, "name": london.organisation.name}
    ]


def test_a_reported_procedure_puts_a_booking_under_review_visible_through_the_filters(api, pat, ada):
    """Contract v1 additions: 'needs_review: the appointment was fine when booked, but a later change (history ...)
    makes it break a block rule ... It carries review_reasons (violations, same shape as a refusal's)';
    docs/api.md: '?status= (repeatable)'; times 'in the clinic's offset'."""
    mn = booked(api, pat, "microneedling", "2026-03-20T10:00:00+00:00")
    added = post(
        api, f"/patients/{pat.pk}/procedures/", {"procedure": "filler", "performed_at": "2026-03-01T10:00:00Z"}
    )
    assert added.status_code == 201, added.content
    flagged = api.get(f"{API}/appointments/", {"status": "needs_review"}).json()["results"]
    assert [row["id"] for row in flagged] == [mn["id"]]
    (reason,) = flagged[0]["review_reasons"]
    assert reason["kind"] == "interval" and reason["conflicts_with"]["id"] == added.json()["id"]
    assert reason["earliest_allowed"] == "2026-03-29T00:00:00+00:00"  # midnight, an hour before BST begins
    assert problem_of(post(api, f"/appointments/{mn['id']}/complete/", {}), 403)["code"] == "clinician_required"


# --- Problem documents ---------------------------------------------------------------------------------------


def test_every_refusal_is_a_problem_document_with_its_documented_code(api, clinical, pat, ada, bea, london):
    """docs/api.md: 'Every error ... is application/problem+json'; the table of codes; '401 (with WWW-Authenticate:
    Token), 403, 404, 405 (with Allow), ... 415, 422'."""
    anonymous = http().get(f"{API}/patients/")
    assert problem_of(anonymous, 401)["code"] == "not_authenticated"
    assert anonymous["WWW-Authenticate"] == "Token"
    assert problem_of(http("nope").get(f"{API}/patients/"), 401)["code"] == "authentication_failed"
    twin = PatientFactory(clinic=london, first_name="Patricia", last_name="Lee", email="twin@example.com")
    assert (
        problem_of(post(api, f"/patients/{twin.pk}/merge/", {"into": str(pat.pk)}), 403)["code"] == "clinician_required"
    )
    assert (
        problem_of(post(clinical, f"/patients/{pat.pk}/merge/", {"into": str(pat.pk)}), 400)["code"]
        == "merge_into_self"
    )
    assert problem_of(api.get(f"{API}/patients/{bea.pk}/"), 404)["code"] == "unknown_patient"
    assert problem_of(api.get(f"{API}/appointments/{uuid.uuid4()}/"), 404)["code"] == "unknown_appointment"
    assert problem_of(api.get(f"{API}/plans/{uuid.uuid4()}/"), 404)["code"] == "unknown_plan"
    deleted = api.delete(f"{API}/patients/{pat.pk}/")
    assert problem_of(deleted, 405)["code"] == "method_not_allowed" and "GET" in deleted["Allow"]
    text = api.post(f"{API}/patients/", "first_name=x", content_type="text/plain")
    assert problem_of(text, 415)["code"] == "unsupported_media_type"
    assert problem_of(api.get(f"{API}/no-such-thing/"), 404)["code"] == "not_found"
    bad_key = post(api, "/patients/", {"first_name": "A", "last_name": "B"}, key=" padded ")
    assert problem_of(bad_key, 400)["code"] == "invalid_idempotency_key"


def test_a_refused_intake_stores_nothing_and_a_shape_error_names_its_line(api, pat):
    """docs/api.md: 'nested fields are dotted (... 0.status for line 0 of the intake)'; the catalogue's
    duplicate_condition is a 400; a refused PUT leaves the intake as it was."""
    good = api.put(
        f"{API}/patients/{pat.pk}/conditions/", [{"condition": "eczema", "status": "history"}], format="json"
    )
    assert good.status_code == 200, good.content
    lines = [{"condition": "diabetes", "status": "active"}, {"condition": "diabetes", "status": "history"}]
    assert problem_of(api.put(f"{API}/patients/{pat.pk}/conditions/", lines, format="json"), 400)["code"] == (
        "duplicate_condition"
    )
    bad = [{"condition": "eczema", "status": "active"}, {"condition": "eczema", "status": "sometimes"}]
    assert "1.status" in problem_of(api.put(f"{API}/patients/{pat.pk}/conditions/", bad, format="json"), 400)["errors"]
    listed = api.get(f"{API}/patients/{pat.pk}/conditions/").json()["results"]
    assert [(row["condition"], row["status"]) for row in listed] == [("eczema", "history")]


@pytest.mark.parametrize(
    ("second_line", "field", "code"),
    [
        ({"condition": "diabetes", "status": "history"}, "1.condition", "duplicate_condition"),
        ({"condition": "no-such-condition", "status": "active"}, "1.condition", "unknown_condition"),
        ({"condition": "eczema", "status": "active", "area": "elbow"}, "1.area", "unknown_area"),
    ],
)
def test_an_intake_lines_domain_error_is_dotted_with_its_line(api, pat, second_line, field, code):
    """docs/api.md: 'Every 400 has errors: {field: [messages]}; nested fields are dotted (reminder_channels.0,
    0.status for line 0 of the intake)'. The service knows the line (clinic.services._intake_row: 'every error
    names its line (data["line"], 0-based) for the interface'); a platform needs it to show the error at its line."""
    lines = [{"condition": "diabetes", "status": "active"}, second_line]
    body = problem_of(api.put(f"{API}/patients/{pat.pk}/conditions/", lines, format="json"), 400)
    assert body["code"] == code
    assert field in body["errors"], body["errors"]


# --- Tenancy ------------------------------------------------------------------------------------------------


def test_another_organisations_record_is_404_everywhere_and_nothing_is_written(api, ny_api, pat, bea, london):
    """Contract: 'Anything of another organisation is a 404'; docs/api.md: 'an id in the URL that is outside your
    scope (or does not exist) is a 404'."""
    course = post(ny_api, f"/patients/{bea.pk}/medications/", {"drug": "isotretinoin", "started_on": "2025-01-01"})
    assert course.status_code == 201
    course_id = course.json()["id"]
    attempts = [
        api.get(f"{API}/patients/{bea.pk}/procedures/"),
        api.get(f"{API}/patients/{bea.pk}/medications/"),
        api.get(f"{API}/patients/{bea.pk}/medications/{course_id}/"),
        api.patch(f"{API}/patients/{bea.pk}/medications/{course_id}/", {"ended_on": "2025-06-01"}, format="json"),
        api.get(f"{API}/patients/{bea.pk}/conditions/"),
        api.put(f"{API}/patients/{bea.pk}/conditions/", [{"condition": "eczema", "status": "active"}], format="json"),
        post(api, f"/patients/{bea.pk}/procedures/", {"procedure": "botox", "performed_at": "2026-02-01T10:00:00Z"}),
        post(api, f"/patients/{bea.pk}/plans/", {"template": "botox-maintenance", "start_from": "2026-03-09"}),
        api.patch(f"{API}/patients/{bea.pk}/", {"first_name": "Changed"}, format="json"),
        # Pat's address with Bea's course id: the course is not Pat's.
        api.get(f"{API}/patients/{pat.pk}/medications/{course_id}/"),
        api.patch(f"{API}/patients/{pat.pk}/medications/{course_id}/", {"ended_on": "2025-06-01"}, format="json"),
    ]
    for response in attempts:
        problem_of(response, 404)
    bea.refresh_from_db()
    assert bea.first_name == "Bea" and not bea.conditions.exists() and not bea.procedure_records.exists()
    assert MedicationCourse.objects.get(pk=course_id).ended_on is None


def test_a_merge_cannot_reach_into_another_organisation(ny_api, clinical, pat, bea):
    """docs/api.md Merge: '404 unknown_patient when into is another organisation's record or none (one answer:
    nothing outside is revealed)'."""
    theirs = problem_of(post(clinical, f"/patients/{pat.pk}/merge/", {"into": str(bea.pk)}), 404)
    nobody = problem_of(post(clinical, f"/patients/{pat.pk}/merge/", {"into": str(uuid.uuid4())}), 404)
    assert theirs["code"] == nobody["code"] == "unknown_patient"
    assert theirs["detail"] == nobody["detail"]
    problem_of(post(ny_api, f"/patients/{pat.pk}/merge/", {"into": str(bea.pk)}), 404)
    assert Patient.objects.filter(merged_into__isnull=False).count() == 0


def test_a_sister_site_sees_the_shared_record_and_writes_to_it(api, west_api, pat, ada):
    """v1 additions: 'A caller that reaches any clinic of an organisation sees that organisation's patients and
    their whole clinical record (history, medications, intake) — the record is one per patient'."""
    post(api, f"/patients/{pat.pk}/procedures/", {"procedure": "botox", "performed_at": "2026-02-20T10:00:00Z"})
    assert west_api.get(f"{API}/patients/{pat.pk}/procedures/").json()["count"] == 1
    put = west_api.put(
        f"{API}/patients/{pat.pk}/conditions/", [{"condition": "diabetes", "status": "active"}], format="json"
    )
    assert put.status_code == 200, put.content
    assert [row["condition"] for row in api.get(f"{API}/patients/{pat.pk}/conditions/").json()["results"]] == [
        "diabetes"
    ]
    listed = west_api.get(f"{API}/patients/").json()
    assert [row["id"] for row in listed["results"]] == [str(pat.pk)]
    assert listed["results"][0]["organisation"] == str(pat.organisation_id)


def test_plans_and_templates_stay_inside_their_organisation_and_clinic(
    api, west_api, ny_api, pat, ada, dr_ny, newyork, templates_loaded
):
    """docs/plans.md: 'GET /api/v1/plan-templates/ lists the defaults and the templates of the organisations in
    scope'; 'Another clinic's patient or plan is a 404'; a plan's `practitioner` outside your clinics is a 400."""
    default = PlanTemplate.objects.get(code="botox-maintenance", organisation__isnull=True)
    PlanTemplate.objects.create(
        code="ny-only",
        organisation=newyork.organisation,
        name="New York course",
        procedure_id="botox",
        kind=default.kind,
        sessions=2,
        min_gap_value=3,
        min_gap_unit="months",
        ideal_gap_value=14,
        ideal_gap_unit="weeks",
        max_gap_value=4,
        max_gap_unit="months",
        source="QA",
    )
    codes = {row["code"] for row in api.get(f"{API}/plan-templates/?page_size=200").json()["results"]}
    assert "ny-only" not in codes and "botox-maintenance" in codes
    assert "ny-only" in {row["code"] for row in ny_api.get(f"{API}/plan-templates/?page_size=200").json()["results"]}
    assert (
        problem_of(post(api, f"/patients/{pat.pk}/plans/", {"template": "ny-only", "start_from": "2026-03-09"}), 400)[
            "code"
        ]
        == "unknown_plan_template"
    )
    stray = post(
        api,
        f"/patients/{pat.pk}/plans/",
        {"template": "botox-maintenance", "start_from": "2026-03-09", "practitioner": str(dr_ny.pk)},
    )
    assert "practitioner" in problem_of(stray, 400)["errors"]
    plan = post(api, f"/patients/{pat.pk}/plans/", {"template": "plasma-pen-course", "start_from": "2026-03-09"})
    assert plan.status_code == 201, plan.content
    plan_id = plan.json()["id"]
    for outsider in (ny_api, west_api):
        assert problem_of(outsider.get(f"{API}/plans/{plan_id}/"), 404)["code"] == "unknown_plan"
        problem_of(
            post(outsider, f"/plans/{plan_id}/replan/", {"from_session": 2, "start": "2026-06-01T09:00:00+01:00"}), 404
        )
    assert Appointment.objects.filter(patient=pat).count() == 2


def test_a_patient_cannot_be_created_in_or_moved_to_another_organisations_clinic(api, pat, newyork):
    """docs/api.md Tenancy: 'a new patient's clinic must be one of yours'; 'request bodies refuse fields they do not
    document ({"clinic": ["Unknown field."]} on a patient PATCH)'."""
    created = post(api, "/patients/", {"first_name": "Zed", "last_name": "Quinn", "clinic": str(newyork.pk)})
    assert problem_of(created, 400)["errors"] == {"clinic": ["There is no such clinic."]}
    moved = api.patch(f"{API}/patients/{pat.pk}/", {"clinic": str(newyork.pk)}, format="json")
    assert problem_of(moved, 400)["errors"] == {"clinic": ["Unknown field."]}
    moved = api.patch(f"{API}/patients/{pat.pk}/", {"organisation": str(newyork.organisation_id)}, format="json")
    assert "organisation" in problem_of(moved, 400)["errors"]
    pat.refresh_from_db()
    assert (pat.clinic.code, pat.organisation_id) == ("london", pat.clinic.organisation_id)
    assert not Patient.objects.filter(last_name="Quinn").exists()


# --- The published schema describes the answers -------------------------------------------------------------


def _nullable_to_jsonschema(node):
    """OpenAPI 3.0's `nullable: true` as JSON Schema's null type, recursively."""
    if isinstance(node, dict):
        out = {key: _nullable_to_jsonschema(value) for key, value in node.items()}
        if out.pop("nullable", False):
            return {"anyOf": [out, {"type": "null"}]}
        return out
    if isinstance(node, list):
        return [_nullable_to_jsonschema(item) for item in node]
    return node


def _validator(document, path, method, status, content_type):
    operation = document["paths"][path][method]
    schema = operation["responses"][str(status)]["content"][content_type]["schema"]
    root = {**_nullable_to_jsonschema(schema), "components": _nullable_to_jsonschema(document["components"])}
    return jsonschema.Draft202012Validator(root)


def test_answers_match_the_published_schema(api, pat, ada, templates_loaded):
    """Contract: 'The OpenAPI schema the service publishes must describe all of it'; docs/api.md: the schema
    describes 'every request, response and problem body'."""
    document = api.get(f"{API}/schema/?format=json").json()
    reported(pat, "botox", "2026-02-27T10:00:00+00:00")
    cases = [
        (
            "/api/v1/eligibility/",
            "post",
            post(
                api,
                "/eligibility/",
                {"patient": str(pat.pk), "procedure": "microneedling", "start": "2026-03-05T10:00:00Z"},
            ),
        ),
        ("/api/v1/appointments/", "post", book(api, pat, "microneedling", "2026-03-05T10:00:00Z")),
        ("/api/v1/appointments/", "post", book(api, pat, "microneedling", "2026-03-13T10:00:00Z")),
        ("/api/v1/patients/{patient_id}/procedures/", "get", api.get(f"{API}/patients/{pat.pk}/procedures/")),
        ("/api/v1/plan-templates/", "get", api.get(f"{API}/plan-templates/")),
        ("/api/v1/organisations/", "get", api.get(f"{API}/organisations/")),
        ("/api/v1/clinics/", "get", api.get(f"{API}/clinics/")),
        (
            "/api/v1/patients/{patient_id}/plans/",
            "post",
            post(
                api,
                f"/patients/{pat.pk}/plans/",
                {"template": "botox-maintenance", "start_from": "2026-06-01", "dry_run": True},
            ),
        ),
        (
            "/api/v1/patients/",
            "post",
            post(api, "/patients/", {"first_name": "Pat", "last_name": "Lee", "email": "pat@example.com"}),
        ),
        (
            "/api/v1/availability/",
            "get",
            api.get(f"{API}/availability/", {"patient": str(pat.pk), "procedure": "botox"}),
        ),
        ("/api/v1/appointments/", "get", api.get(f"{API}/appointments/?page=9")),
    ]
    for path, method, response in cases:
        content_type = response["Content-Type"]
        operation = document["paths"][path][method]
        assert str(response.status_code) in operation["responses"], (path, method, response.status_code)
        validator = _validator(document, path, method, response.status_code, content_type)
        errors = sorted(validator.iter_errors(response.json()), key=str)
        assert not errors, (path, method, response.status_code, [e.message for e in errors[:3]])
    # The additions are in it: rulebook_version on eligibility, organisation on clinics and patients.
    schemas = document["components"]["schemas"]
    assert "rulebook_version" in schemas["EligibilityOut"]["properties"]
    assert "organisation" in schemas["ClinicOut"]["properties"]
    assert "organisation" in schemas["PatientOut"]["properties"]


def test_problem_answers_match_the_published_schema(api, clinical, pat, ada, london, bea, templates_loaded):
    """docs/api.md: the schema describes 'every request, response and problem body'; 'The schema documents the 308
    on every /patients/{patient_id}/... operation'; the duplicate 409 and merge 409 have their own components."""
    document = api.get(f"{API}/schema/?format=json").json()
    twin = PatientFactory(clinic=london, first_name="Patricia", last_name="Lee", email="twin@example.com")
    api.put(f"{API}/patients/{pat.pk}/conditions/", [{"condition": "eczema", "status": "active"}], format="json")
    api.put(f"{API}/patients/{twin.pk}/conditions/", [{"condition": "eczema", "status": "history"}], format="json")
    reported(pat, "botox", "2026-02-27T10:00:00+00:00")
    cases = [
        ("/api/v1/patients/{patient_id}/", "get", api.get(f"{API}/patients/{bea.pk}/")),
        (
            "/api/v1/patients/",
            "post",
            post(api, "/patients/", {"first_name": "Pat", "last_name": "Lee", "email": "pat@example.com"}),
        ),
        ("/api/v1/patients/", "post", post(api, "/patients/", {"first_name": ""})),
        (
            "/api/v1/patients/{patient_id}/merge/",
            "post",
            post(clinical, f"/patients/{twin.pk}/merge/", {"into": str(pat.pk)}),
        ),
        (
            "/api/v1/patients/{patient_id}/merge/",
            "post",
            post(api, f"/patients/{twin.pk}/merge/", {"into": str(pat.pk)}),
        ),
        (
            "/api/v1/patients/{patient_id}/conditions/",
            "put",
            api.put(f"{API}/patients/{pat.pk}/conditions/", [{"condition": "x", "status": "active"}], format="json"),
        ),
        ("/api/v1/appointments/", "get", api.get(f"{API}/appointments/?status=bogus")),
        ("/api/v1/appointments/", "post", book(api, pat, "microneedling", "2026-03-05T10:00:00Z")),
        (
            "/api/v1/patients/{patient_id}/plans/",
            "post",
            post(
                api,
                f"/patients/{pat.pk}/plans/",
                {
                    "template": "microneedling-course",
                    "start_from": "2026-03-02",
                    "proposal": [
                        {"start": "2026-03-05T10:00:00Z"},
                        {"start": "2026-04-02T10:00:00+01:00"},
                        {"start": "2026-04-30T10:00:00+01:00"},
                    ],
                },
            ),
        ),
        (
            "/api/v1/patients/{patient_id}/procedures/",
            "post",
            post(
                api,
                f"/patients/{pat.pk}/procedures/",
                {"procedure": "botox", "performed_at": "2026-02-01T10:00:00Z"},
                key="k1",
            ),
        ),
        (
            "/api/v1/patients/{patient_id}/procedures/",
            "post",
            post(
                api,
                f"/patients/{pat.pk}/procedures/",
                {"procedure": "filler", "performed_at": "2026-02-01T10:00:00Z"},
                key="k1",
            ),
        ),
    ]
    post(
        clinical,
        f"/patients/{twin.pk}/merge/",
        {"into": str(pat.pk), "intake": [{"condition": "eczema", "status": "active"}]},
    )
    cases.append(("/api/v1/patients/{patient_id}/", "get", api.get(f"{API}/patients/{twin.pk}/")))
    statuses = []
    for path, method, response in cases:
        statuses.append(response.status_code)
        content_type = response["Content-Type"]
        operation = document["paths"][path][method]
        assert str(response.status_code) in operation["responses"], (path, method, response.status_code)
        validator = _validator(document, path, method, response.status_code, content_type)
        errors = sorted(validator.iter_errors(response.json()), key=str)
        assert not errors, (path, method, response.status_code, [e.message for e in errors[:3]])
    assert statuses == [404, 409, 400, 409, 403, 400, 400, 409, 409, 201, 422, 308]


@pytest.fixture
def templates_loaded(catalogue):
    plan_templates_load()
