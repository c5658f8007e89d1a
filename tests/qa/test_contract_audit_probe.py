"""Independent audit of the public REST API against api-contract.md (with its "v1 additions"), docs/api.md and
domain.md section 6, hunting what the other API probes leave out: nested ids in plan proposals, bodies an
endpoint never reads, times in the webhook delivery list, the ETag a PATCH answers, a 406 and its key,
refusal answers of a taken slot, the intake's size limit, and races over one Idempotency-Key, one If-Match and
one patient booked at two sites at once (PostgreSQL).

The clock is Monday 2 March 2026, 09:00 UTC, ticking (tests/api/conftest.py). The world: `clinic` (London) and
`west` of organisation A, `other_clinic` (New York) alone in organisation B.
"""

from __future__ import annotations

import pytest

from clinic.models import Appointment, MedicationCourse, Patient, PatientCondition
from plans.defaults import plan_templates_load
from plans.models import TreatmentPlan
from reminders.models import OutboxMessage
from tests.api.conftest import _clock, http, new_api_client, problem_of  # noqa: F401 (_clock: autouse fixture)
from tests.factories import PatientFactory, PractitionerFactory
from tests.qa.helpers import API, post
from tests.races import race

pytestmark = pytest.mark.django_db

TUESDAY_10 = "2026-03-03T10:00:00+00:00"


@pytest.fixture
def templates_loaded(catalogue):
    plan_templates_load()


@pytest.fixture
def hooks_allowed(settings):
    """Webhook URLs are not resolved (tests run offline): the checks docs/api.md relaxes for development."""
    settings.WEBHOOKS_ALLOW_HTTP = True
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = True


def book_body(patient, start, procedure="botox", **extra) -> dict:
    return {"patient": str(patient.pk), "procedure": procedure, "start": start, **extra}


def delivery_of(client, patient, start, procedure="filler") -> tuple[str, str]:
    """A webhook endpoint of `client`, and the one delivery a booking made for it: (endpoint id, delivery id)."""
    hook = post(client, "/webhooks/", {"url": "https://hooks.example.com/in"})
    assert hook.status_code == 201, hook.content
    booked = post(client, "/appointments/", book_body(patient, start, procedure))
    assert booked.status_code == 201, booked.content
    listed = client.get(f"{API}/webhooks/{hook.json()['id']}/deliveries/").json()
    [delivery] = listed["results"]
    return hook.json()["id"], delivery["id"]


# --- Nested ids in request bodies ---------------------------------------------------------------------------


def _proposal_with(api, patient, outsider) -> dict:
    dry = post(
        api,
        f"/patients/{patient.pk}/plans/",
        {"template": "microneedling-course", "start_from": "2026-03-09", "dry_run": True},
    )
    assert dry.status_code == 200, dry.content
    proposal = [{"start": s["start"], "practitioner": s["practitioner"]} for s in dry.json()["sessions"]]
    proposal[1]["practitioner"] = str(outsider.pk)
    return {"template": "microneedling-course", "start_from": "2026-03-09", "proposal": proposal}


@pytest.mark.parametrize("where", ["another organisation", "the ungranted sister site"])
def test_a_plan_proposal_naming_an_outside_practitioner_books_nothing_and_reveals_nothing(
    api, patient, practitioner, other_practitioner, west, templates_loaded, where
):
    """Contract: 'Anything of another organisation is a 404' (in a body: docs/api.md, 'a 400 with
    errors.<field>: ["There is no such ..."], word for word what a missing one gets'); plans: 'booking none'."""
    outsider = other_practitioner if where == "another organisation" else PractitionerFactory(clinic=west)
    refused = problem_of(post(api, f"/patients/{patient.pk}/plans/", _proposal_with(api, patient, outsider)), 400)
    assert refused["code"] == "unknown_practitioner"
    assert "There is no such practitioner" in refused["detail"]
    assert outsider.name not in str(refused)
    assert not Appointment.objects.exists() and not TreatmentPlan.objects.exists()


def test_a_plan_proposals_bad_practitioner_is_named_by_its_line(
    api, patient, practitioner, other_practitioner, templates_loaded
):
    """docs/api.md: 'Every 400 has errors: {field: [messages]}; nested fields are dotted'. The body has no top-level
    `practitioner`: the client must learn which session's practitioner is wrong (as `proposal.N.start` is named)."""
    refused = problem_of(
        post(api, f"/patients/{patient.pk}/plans/", _proposal_with(api, patient, other_practitioner)), 400
    )
    assert list(refused["errors"]) == ["proposal.1.practitioner"]


def test_a_naive_time_deep_in_a_plan_proposal_is_a_400_naming_its_line(api, patient, practitioner, templates_loaded):
    """Contract: 'a time without one [an offset] is a 400 error'; docs/api.md: nested fields are dotted."""
    body = {
        "template": "microneedling-course",
        "start_from": "2026-03-09",
        "proposal": [
            {"start": "2026-03-09T09:00:00+00:00"},
            {"start": "2026-04-06T09:00:00"},
            {"start": "2026-05-04T09:00:00+01:00"},
        ],
    }
    refused = problem_of(post(api, f"/patients/{patient.pk}/plans/", body), 400)
    assert list(refused["errors"]) == ["proposal.1.start"]
    assert "offset" in refused["errors"]["proposal.1.start"][0]
    assert not Appointment.objects.exists()


# --- Bodies an endpoint must read ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,code", [("this is not json", "malformed_request"), ('{"delay_minutes": 60}', "invalid_input")]
)
def test_a_redelivery_with_a_body_it_cannot_take_is_a_400_and_sends_nothing(
    api, patient, practitioner, hooks_allowed, raw, code
):
    """docs/api.md: 'A body that is not valid JSON ... is a 400 malformed_request'; 'request bodies refuse fields
    they do not document'. The same request with an Idempotency-Key is already a 400 (the key reads the body)."""
    hook, delivery = delivery_of(api, patient, TUESDAY_10)
    before = OutboxMessage.objects.filter(endpoint_id=hook).count()
    path = f"{API}/webhooks/{hook}/deliveries/{delivery}/redeliver/"
    refused = problem_of(api.generic("POST", path, raw, content_type="application/json"), 400)
    assert refused["code"] == code
    assert OutboxMessage.objects.filter(endpoint_id=hook).count() == before


def test_a_keyed_redelivery_with_a_body_that_is_not_json_is_a_400_and_sends_nothing(
    api, patient, practitioner, hooks_allowed
):
    """The same request as above with an Idempotency-Key: the key reads the body, so this one is refused."""
    hook, delivery = delivery_of(api, patient, TUESDAY_10)
    before = OutboxMessage.objects.filter(endpoint_id=hook).count()
    path = f"{API}/webhooks/{hook}/deliveries/{delivery}/redeliver/"
    refused = api.generic("POST", path, "not json", content_type="application/json", HTTP_IDEMPOTENCY_KEY="qa-r")
    assert problem_of(refused, 400)["code"] == "malformed_request"
    assert OutboxMessage.objects.filter(endpoint_id=hook).count() == before


# --- Times in the clinic's offset ----------------------------------------------------------------------------


def test_webhook_deliveries_of_a_new_york_appointment_are_listed_in_new_yorks_offset(
    other_clinic, other_patient, other_practitioner, hooks_allowed
):
    """Contract: 'Responses give times in the clinic's offset' (the delivery's own payload does: occurred_at)."""
    ny = http(new_api_client(other_clinic, name="platform-ny")[1])
    hook, _ = delivery_of(ny, other_patient, "2026-03-04T10:00:00-05:00")
    [row] = ny.get(f"{API}/webhooks/{hook}/deliveries/").json()["results"]
    payload = OutboxMessage.objects.get(pk=row["id"]).payload
    assert payload["occurred_at"].endswith("-05:00")
    assert row["created_at"].endswith("-05:00") and row["due_at"].endswith("-05:00")


# --- ETag and If-Match ---------------------------------------------------------------------------------------


def test_the_etag_a_patch_answers_is_the_stored_version_and_chains_into_the_next_patch(api, patient):
    """docs/api.md: GET and PATCH answer 'an ETag, the version of that record'. What a PATCH stored differs from
    what it was sent (trimmed names, a national number made E.164): its ETag must still be the stored version,
    so a platform can chain the next PATCH on it without a needless 412."""
    url = f"{API}/patients/{patient.pk}/"
    first = api.patch(
        url, {"first_name": "  Patty ", "phone": "07400 123456", "email": " Pat@Example.com "}, format="json"
    )
    assert first.status_code == 200, first.content
    assert (first.json()["first_name"], first.json()["phone"]) == ("Patty", "+447400123456")
    read = api.get(url)
    assert first["ETag"] == read["ETag"] and first.json() == read.json()
    chained = api.patch(url, {"date_of_birth": "1990-02-03"}, format="json", HTTP_IF_MATCH=first["ETag"])
    assert chained.status_code == 200, chained.content
    stale = api.patch(url, {"last_name": "Stale"}, format="json", HTTP_IF_MATCH=first["ETag"])
    assert problem_of(stale, 412)["code"] == "record_changed"
    assert Patient.objects.get(pk=patient.pk).last_name == "Lee"

    course = post(api, f"/patients/{patient.pk}/medications/", {"drug": "isotretinoin", "started_on": "2025-06-01"})
    course_url = f"{API}/patients/{patient.pk}/medications/{course.json()['id']}/"
    ended = api.patch(course_url, {"ended_on": "2026-01-01"}, format="json", HTTP_IF_MATCH=api.get(course_url)["ETag"])
    assert ended.status_code == 200, ended.content
    assert ended["ETag"] == api.get(course_url)["ETag"]


def test_another_patients_etag_never_matches(api, patient, clinic):
    """An If-Match names a version of this record: the ETag of a twin record (same details) is not one."""
    twin = PatientFactory(clinic=clinic, first_name="Pat", last_name="Lee", email=patient.email, phone=patient.phone)
    twin_etag = api.get(f"{API}/patients/{twin.pk}/")["ETag"]
    refused = api.patch(f"{API}/patients/{patient.pk}/", {"last_name": "X"}, format="json", HTTP_IF_MATCH=twin_etag)
    assert problem_of(refused, 412)["code"] == "record_changed"


# --- Content negotiation and the key -------------------------------------------------------------------------


def test_a_406_books_nothing_and_leaves_the_key_free(api, patient, practitioner):
    """An answer the client cannot take is refused before any work: nothing is booked, and the Idempotency-Key is
    not spent on it (the same key with an acceptable Accept books, once)."""
    body = book_body(patient, TUESDAY_10)
    refused = api.post(
        f"{API}/appointments/", body, format="json", HTTP_ACCEPT="application/xml", HTTP_IDEMPOTENCY_KEY="qa-406"
    )
    assert refused.status_code == 406 and refused["Content-Type"] == "application/problem+json"
    assert refused.json()["code"] == "not_acceptable"
    assert not Appointment.objects.exists()
    assert post(api, "/appointments/", body, key="qa-406").status_code == 201
    assert post(api, "/appointments/", body, key="qa-406")["Idempotent-Replayed"] == "true"
    assert Appointment.objects.count() == 1


# --- Refusal answers -----------------------------------------------------------------------------------------


def test_a_taken_slot_refusal_says_the_asked_start_is_eligible_and_names_no_other_patient(
    api, clinic, patient, practitioner
):
    """Contract: earliest_eligible_start is 'the earliest moment at or after the start asked for that satisfies
    every interval rule' (here: the start asked, nothing in the history), next_available_slot is at or after it;
    conflicts_with is null rather than another patient's appointment; eligibility agrees."""
    someone = PatientFactory(clinic=clinic, first_name="Zed", last_name="Other", phone="+447700900123")
    taken = post(api, "/appointments/", book_body(someone, TUESDAY_10, practitioner=str(practitioner.pk)))
    assert taken.status_code == 201
    body = book_body(patient, TUESDAY_10, practitioner=str(practitioner.pk))
    refusal = problem_of(post(api, "/appointments/", body), 409)
    assert refusal["code"] == "booking_refused" and refusal["rulebook_version"]
    [violation] = refusal["violations"]
    assert (violation["kind"], violation["code"], violation["severity"]) == ("availability", "slot_taken", "block")
    assert (violation["rule"], violation["conflicts_with"], violation["earliest_allowed"]) == (None, None, None)
    assert refusal["earliest_eligible_start"] == TUESDAY_10
    assert refusal["next_available_slot"]["start"] == "2026-03-03T10:30:00+00:00"
    check = post(api, "/eligibility/", body).json()
    assert (check["eligible"], check["status"], check["earliest_eligible_start"]) == (False, "refused", TUESDAY_10)
    assert Appointment.objects.filter(patient=patient).count() == 0


def test_an_intake_over_its_size_limit_is_a_400_and_replaces_nothing(api, patient):
    """Huge values: a list longer than the API takes is a clear 400 with errors, never a 500, and losing nothing."""
    url = f"{API}/patients/{patient.pk}/conditions/"
    assert api.put(url, [{"condition": "eczema", "status": "active"}], format="json").status_code == 200
    refused = problem_of(api.put(url, [{"condition": "eczema", "status": "history"}] * 201, format="json"), 400)
    assert refused["errors"]
    assert list(PatientCondition.objects.filter(patient=patient).values_list("condition_id", "status")) == [
        ("eczema", "active")
    ]


# --- Races (PostgreSQL) --------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_one_key_with_two_bodies_at_once_books_one_and_refuses_the_other_with_422(
    clinic, patient, practitioner, transactional_db
):
    """Contract: 'the same key with a different body is a 422', also when both arrive at the same moment."""
    key = new_api_client(clinic, name="racer")[1]
    bodies = [book_body(patient, TUESDAY_10), book_body(patient, "2026-03-04T10:00:00+00:00")]
    answers = race(*[lambda b=b: post(http(key), "/appointments/", b, key="qa-two-bodies") for b in bodies])
    assert sorted(a.status_code for a in answers) == [201, 422], [a.content for a in answers]
    [refused] = [a for a in answers if a.status_code == 422]
    assert refused.json()["code"] == "idempotency_key_reused"
    assert Appointment.objects.filter(patient=patient).count() == 1


@pytest.mark.postgres
def test_one_key_sent_to_cancel_and_to_reschedule_at_once_does_one_of_them(
    clinic, patient, practitioner, transactional_db
):
    """The key is per caller, not per path: the same key on two actions at once acts once; the other is a 422."""
    key = new_api_client(clinic, name="racer")[1]
    booked = post(http(key), "/appointments/", book_body(patient, TUESDAY_10))
    appointment_id = booked.json()["id"]
    answers = race(
        lambda: post(http(key), f"/appointments/{appointment_id}/cancel/", {"reason": "qa"}, key="qa-act"),
        lambda: post(
            http(key),
            f"/appointments/{appointment_id}/reschedule/",
            {"start": "2026-03-05T11:00:00+00:00"},
            key="qa-act",
        ),
    )
    codes = sorted(a.status_code for a in answers)
    assert codes in ([200, 422], [201, 422]), [a.content for a in answers]
    stored = Appointment.objects.get(pk=appointment_id)
    if codes == [200, 422]:
        assert (stored.status, stored.start_at.isoformat()) == ("cancelled", TUESDAY_10)
    else:
        assert (stored.status, stored.start_at.isoformat()) == ("confirmed", "2026-03-05T11:00:00+00:00")


@pytest.mark.postgres
def test_one_key_registering_a_patient_twice_at_once_replays_rather_than_calling_it_a_duplicate(
    clinic, transactional_db
):
    """Contract: the same key and body 'returns the first response again (same status, same body) and creates
    nothing': the repeat must not meet the first's record as a possible duplicate (a 409)."""
    key = new_api_client(clinic, name="racer")[1]
    body = {"first_name": "Grace", "last_name": "Hopper", "date_of_birth": "1980-12-09", "phone": "+447400123777"}
    answers = race(*[lambda: post(http(key), "/patients/", body, key="qa-register") for _ in range(2)])
    assert [a.status_code for a in answers] == [201, 201], [a.content for a in answers]
    assert answers[0].content == answers[1].content
    assert Patient.objects.filter(last_name="Hopper").count() == 1


@pytest.mark.postgres
def test_two_sites_booking_the_shared_patient_at_once_one_wins_and_the_refusal_names_the_other(
    clinic, west, patient, practitioner, transactional_db
):
    """v1 additions: an appointment at another clinic of the organisation 'is still counted by every rule, and a
    refusal caused by it names it in conflicts_with (id, kind, code, at, clinic)', also when both are booked at once
    by two platforms each granted one site."""
    dr_west = PractitionerFactory(clinic=west, name="Dr West")
    london_key, west_key = new_api_client(clinic, name="p-london")[1], new_api_client(west, name="p-west")[1]
    answers = race(
        lambda: post(
            http(london_key), "/appointments/", book_body(patient, TUESDAY_10, practitioner=str(practitioner.pk))
        ),
        lambda: post(http(west_key), "/appointments/", book_body(patient, TUESDAY_10, practitioner=str(dr_west.pk))),
    )
    assert sorted(a.status_code for a in answers) == [201, 409], [a.content for a in answers]
    [won] = [a.json() for a in answers if a.status_code == 201]
    [lost] = [a.json() for a in answers if a.status_code == 409]
    busy = [v for v in lost["violations"] if v["code"] == "patient_busy"]
    assert busy and busy[0]["conflicts_with"]["id"] == won["id"]
    assert busy[0]["conflicts_with"]["clinic"] == won["clinic"]
    assert Appointment.objects.filter(patient=patient).count() == 1


@pytest.mark.postgres
@pytest.mark.parametrize("what", ["patient", "intake"])
def test_two_platforms_writing_from_the_same_read_at_once_one_is_refused_with_412(
    clinic, patient, transactional_db, what
):
    """docs/api.md: a change 'with an If-Match naming another version is a 412 record_changed, nothing changed':
    two writes made from one read, sent at the same moment, cannot both pass (the second would be made from a
    version that is no longer stored)."""
    keys = [new_api_client(clinic, name=f"p-{n}")[1] for n in range(2)]
    if what == "patient":
        url = f"{API}/patients/{patient.pk}/"
        etag = http(keys[0]).get(url)["ETag"]
        changes = [{"last_name": "First"}, {"last_name": "Second"}]
        send = [
            lambda k=k, c=c: http(k).patch(url, c, format="json", HTTP_IF_MATCH=etag)
            for k, c in zip(keys, changes, strict=True)
        ]
    else:
        url = f"{API}/patients/{patient.pk}/conditions/"
        etag = http(keys[0]).get(url)["ETag"]
        changes = [[{"condition": "eczema", "status": "active"}], [{"condition": "pregnancy", "status": "active"}]]
        send = [
            lambda k=k, c=c: http(k).put(url, c, format="json", HTTP_IF_MATCH=etag)
            for k, c in zip(keys, changes, strict=True)
        ]
    answers = race(*send)
    assert sorted(a.status_code for a in answers) == [200, 412], [a.content for a in answers]
    winner = changes[[a.status_code for a in answers].index(200)]
    if what == "patient":
        assert Patient.objects.get(pk=patient.pk).last_name == winner["last_name"]
    else:
        stored = list(PatientCondition.objects.filter(patient=patient).values_list("condition_id", flat=True))
        assert stored == [winner[0]["condition"]]


def test_a_course_end_is_not_written_through_another_patients_address(api, patient, clinic):
    """Nested ids in the URL: a course id under another patient's address is not found, and nothing changes."""
    sister = PatientFactory(clinic=clinic, first_name="Sis", last_name="Ter", phone="+447700900999")
    course = MedicationCourse.objects.create(patient=sister, drug_id="isotretinoin", started_on="2025-06-01")
    refused = api.patch(
        f"{API}/patients/{patient.pk}/medications/{course.pk}/", {"ended_on": "2026-01-01"}, format="json"
    )
    assert problem_of(refused, 404)["code"] == "unknown_medication_course"
    assert MedicationCourse.objects.get(pk=course.pk).ended_on is None
