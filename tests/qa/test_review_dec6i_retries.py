"""Review probe dec6i: a booking platform's retries over a flaky network, on every write of the public API.

The writes, from api/urls.py and the published schema (every POST the schema gives an `Idempotency-Key` to; the
two read-only POSTs, eligibility and reschedule-check, take none; PATCH, PUT and DELETE take none either): patients
(register), a patient's procedures and medications, appointments (book), reschedule, cancel, complete, clear,
no-show, merge, plans (book, dry run), replan, plan cancel, webhooks (register), rotate-secret and redeliver. There
is no check-in over the API (the front desk's only). For each, as the API contract (Idempotency-Key),
docs/api.md (Idempotency) and api/idempotency.py say:

* the same key and body replays the first answer byte for byte (status, body, Content-Type, Location, plus
  `Idempotent-Replayed: true`) and nothing more happens: rows, audit events, patients' messages, webhook
  deliveries, history, merges, plans, endpoints and their secrets are counted before and after;
* a 255-character key works; a 256-character one is a 400 `invalid_idempotency_key` and nothing happens;
* the same key with another body is a 422 `idempotency_key_reused` and nothing happens; so is one key used on
  every other write after its first;
* a first answer that was a 400 (or a 403, a 409) is replayed under its key after its cause is gone, and the
  corrected body needs a new key;
* a key belongs to its caller: another platform (or a staff user) sending it is answered afresh, never with the
  stored answer (a rotated secret is not handed to another platform);
* a replay after the resource changed answers what was answered and undoes nothing;
* without a key, a repeated lifecycle action is refused or a no-op, never a second audited change;
* on PostgreSQL, the same key sent at once (threads, tests/races.py) acts once on each write, and two different
  keys for one action at once act once.

Found, and mended the same day (6 December; the tests below pass since):
* DEFECT: the same intake PUT again (a retry without If-Match, the desk's intake page saved unchanged), or with a
  line about something else added, flagged a booking it made unsafe a second time: a second `needs_review` audit row
  and a second `appointment.needs_review` webhook to every platform, with the same reasons (the condition rows were
  re-created with new ids, and the re-check compares reasons holding those ids). Now clinic.services.
  conditions_replace keeps the rows of lines that stay, and an intake sent as it is changes nothing.
* QUESTION: a keyed POST to a merged record's address is a 308 kept under no key, as documented; the retry of that
  same request (a platform whose 201 from the survivor's address was lost retries what it sent) was a 422
  `idempotency_key_reused`. Now it replays the survivor's answer (api/idempotency.py `_same_at_survivor`).
* QUESTION: a PUT of the intake or a PATCH of a patient sent with the If-Match docs/api.md tells platforms to send,
  retried after its answer was lost, was a 412 `record_changed` though the stored record was exactly what the retry
  asked for. Now a change that finds the record already as it asks is answered 200 and writes nothing (RFC 9110,
  13.1.1; docs/api.md "Changing safely").
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import time_machine
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from api.models import IdempotencyKey
from clinic.models import (
    ApiClient,
    Appointment,
    AuditEvent,
    ConditionStatus,
    MedicationCourse,
    Patient,
    PatientCondition,
    PatientMerge,
    ProcedureRecord,
    StaffMembership,
    StaffRole,
)
from plans.models import PlanSession, Recall, TreatmentPlan
from reminders.models import ContactOptIn, OutboxMessage, WebhookEndpoint
from tests.api.conftest import http, new_api_client, session
from tests.factories import PatientFactory
from tests.qa.helpers import API, book, ldn
from tests.races import race

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("platform_ready")]

MORNING = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # Monday 2 March 2026 (London on GMT)
AFTERNOON = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # the same day: this morning's 10:00 visit has begun
HOOK = "http://127.0.0.1:9/qa6i-hook"
KEY_255 = "!" + "k" * 253 + "~"
KEY_256 = "k" * 256


# --- The world ---------------------------------------------------------------------------------------------------


@pytest.fixture
def w(catalogue, clinic, practitioner, patient):
    """The London clinic with Dr Ada and Pat Lee; a platform and a platform with the clinician's right, each with a
    webhook endpoint (so every change writes a delivery to each); the clock ticking from Monday 14:00."""
    with time_machine.travel(AFTERNOON, tick=True):
        platform, key = new_api_client(clinic, name="qa6i-platform")
        clinical, clinical_key = new_api_client(clinic, name="qa6i-clinical", clinical=True)
        world = SimpleNamespace(
            clinic=clinic,
            dr=practitioner,
            pat=patient,
            platform=platform,
            clinical=clinical,
            api=http(key),
            clin=http(clinical_key),
        )
        world.hook = answer(post(world.api, "/webhooks/", {"url": HOOK}), 201)["id"]
        world.clinical_hook = answer(post(world.clin, "/webhooks/", {"url": HOOK}), 201)["id"]
        yield world


def post(client, path, body, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(f"{API}{path}", body, format="json", **headers)


def like(client) -> APIClient:
    """A new client with the same credentials: one per thread."""
    twin = APIClient()
    twin.credentials(**client._credentials)
    return twin


def answer(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:600])
    return response.json()


def refused(response, status: int, code: str) -> dict:
    body = answer(response, status)
    assert response["Content-Type"] == "application/problem+json"
    assert body["code"] == code, body
    return body


def effects() -> dict:
    """Everything a write can leave behind, as comparable values."""
    return {
        "appointments": sorted(
            (str(pk), status, start.isoformat(), str(dr))
            for pk, status, start, dr in Appointment.objects.values_list("pk", "status", "start_at", "practitioner_id")
        ),
        "audit": AuditEvent.objects.count(),
        "messages": OutboxMessage.objects.exclude(channel="webhook").count(),
        "webhooks": OutboxMessage.objects.filter(channel="webhook").count(),
        "patients": sorted((str(pk), str(into)) for pk, into in Patient.objects.values_list("pk", "merged_into_id")),
        "procedures": ProcedureRecord.objects.count(),
        "medications": MedicationCourse.objects.count(),
        "conditions": PatientCondition.objects.count(),
        "opt_ins": ContactOptIn.objects.count(),
        "merges": PatientMerge.objects.count(),
        "plans": TreatmentPlan.objects.count(),
        "sessions": sorted(
            (str(plan), index, str(appointment))
            for plan, index, appointment in PlanSession.objects.values_list("plan_id", "index", "appointment_id")
        ),
        "recalls": Recall.objects.count(),
        "endpoints": sorted(
            (str(pk), secret, previous)
            for pk, secret, previous in WebhookEndpoint.objects.values_list("pk", "secret", "previous_secret")
        ),
    }


def same_answer(first, again) -> None:
    """The replay is the first answer, byte for byte, marked as a replay."""
    assert first.get("Idempotent-Replayed") is None
    assert again.get("Idempotent-Replayed") == "true", (again.status_code, again.content[:300])
    assert again.status_code == first.status_code
    assert again.content == first.content
    assert again["Content-Type"] == first["Content-Type"]
    assert again.get("Location") == first.get("Location")


# --- What each write needs ---------------------------------------------------------------------------------------


def booked(w, start="2026-03-03T10:00:00+00:00", patient=None, procedure="botox", **extra) -> dict:
    body = {"patient": str((patient or w.pat).pk), "procedure": procedure, "start": start, **extra}
    return answer(post(w.api, "/appointments/", body), 201)


def begun(w, hour=10, patient=None) -> str:
    """Botox booked this morning (through the service, at the morning's clock): begun by now."""
    return str(book(patient or w.pat, ldn(2026, 3, 2, hour), MORNING, code="botox").pk)


def someone(w, name: str) -> Patient:
    """Another patient of the clinic, so that the writes of one test never meet each other's."""
    return PatientFactory(clinic=w.clinic, first_name=name.title().replace("_", ""), last_name="Retry")


def pending(w) -> str:
    """Microneedling for a patient with eczema in her history (a relative contraindication): pending clearance."""
    clara = PatientFactory(clinic=w.clinic, first_name="Clara", last_name="Pending")
    PatientCondition.objects.create(patient=clara, condition_id="eczema", status=ConditionStatus.HISTORY)
    made = booked(w, "2026-03-04T10:00:00+00:00", patient=clara, procedure="microneedling", area="face")
    assert made["status"] == "pending_clearance", made
    return made["id"]


def course(w) -> dict:
    pia = PatientFactory(clinic=w.clinic, first_name="Pia", last_name="Plan")
    body = {"template": "microneedling-course", "start_from": "2026-03-09"}
    return answer(post(w.api, f"/patients/{pia.pk}/plans/", body), 201)


def delivery(w) -> str:
    booked(w, "2026-03-06T10:00:00+00:00", patient=someone(w, "delivery"))
    rows = w.api.get(f"{API}/webhooks/{w.hook}/deliveries/").json()["results"]
    assert rows, "the booking wrote no delivery"
    return rows[0]["id"]


def later(iso: str, days: int) -> str:
    return (datetime.fromisoformat(iso) + timedelta(days=days)).isoformat()


def case(name: str, w) -> SimpleNamespace:
    """One write: who sends it, where, the body, another body, a body that is a 400, and the status it answers."""
    p = w.pat.pk
    if name == "patients_create":
        body = {
            "first_name": "Nia",
            "last_name": "Retry",
            "email": "nia.retry@example.com",
            "phone": "+447400123789",
            "reminder_channels": ["email", "sms"],
            "sms_consent": True,
        }
        return SimpleNamespace(
            client=w.api,
            path="/patients/",
            body=body,
            other={**body, "last_name": "Retried"},
            bad={"first_name": "Nia"},
            status=201,
        )
    if name == "procedures_create":
        body = {"procedure": "botox", "performed_at": "2026-01-20T10:00:00+00:00", "area": "face"}
        return SimpleNamespace(
            client=w.api,
            path=f"/patients/{p}/procedures/",
            body=body,
            other={**body, "area": "neck"},
            bad={**body, "procedure": "no-such-procedure"},
            status=201,
        )
    if name == "medications_create":
        body = {"drug": "isotretinoin", "started_on": "2025-01-01", "ended_on": "2025-06-30"}
        return SimpleNamespace(
            client=w.api,
            path=f"/patients/{p}/medications/",
            body=body,
            other={**body, "ended_on": "2025-07-31"},
            bad={"drug": "isotretinoin"},
            status=201,
        )
    if name == "appointments_create":
        booker = someone(w, name)
        body = {"patient": str(booker.pk), "procedure": "botox", "start": "2026-03-03T14:00:00+00:00"}
        return SimpleNamespace(
            client=w.api,
            path="/appointments/",
            body=body,
            other={**body, "start": "2026-03-03T15:00:00+00:00"},
            bad={"patient": str(booker.pk), "procedure": "botox"},
            status=201,
        )
    if name == "reschedule":
        made = booked(w, "2026-03-03T10:00:00+00:00", patient=someone(w, name))
        return SimpleNamespace(
            client=w.api,
            path=f"/appointments/{made['id']}/reschedule/",
            body={"start": "2026-03-05T10:00:00+00:00"},
            other={"start": "2026-03-05T11:00:00+00:00"},
            bad={},
            status=201,
        )
    if name == "cancel":
        made = booked(w, "2026-03-03T12:00:00+00:00", patient=someone(w, name))
        return SimpleNamespace(
            client=w.api,
            path=f"/appointments/{made['id']}/cancel/",
            body={"reason": "the patient called"},
            other={"reason": "the patient wrote"},
            bad={"reason": 5},
            status=200,
        )
    if name in ("complete", "no_show"):
        action = "complete" if name == "complete" else "no-show"
        return SimpleNamespace(
            client=w.clin,
            path=f"/appointments/{begun(w, 10 if name == 'complete' else 11, someone(w, name))}/{action}/",
            body={},
            other={"note": "x"},
            bad={"note": "x"},
            status=200,
        )
    if name == "clear":
        return SimpleNamespace(
            client=w.clin,
            path=f"/appointments/{pending(w)}/clear/",
            body={"reason": "eczema long settled, seen today"},
            other={"reason": "another reason"},
            bad={},
            status=200,
        )
    if name == "merge":
        dup = PatientFactory(clinic=w.clinic, first_name="Patricia", last_name="Lee-Dup")
        return SimpleNamespace(
            client=w.clin,
            path=f"/patients/{dup.pk}/merge/",
            body={"into": str(p)},
            other={"into": str(p), "intake": []},
            bad={},
            status=200,
        )
    if name in ("plans_create", "plans_dry_run"):
        pia = PatientFactory(clinic=w.clinic, first_name="Pia", last_name="Course")
        body = {"template": "microneedling-course", "start_from": "2026-03-09"}
        if name == "plans_dry_run":
            body["dry_run"] = True
        return SimpleNamespace(
            client=w.api,
            path=f"/patients/{pia.pk}/plans/",
            body=body,
            other={**body, "start_from": "2026-03-10"},
            bad={"template": "microneedling-course"},
            status=200 if name == "plans_dry_run" else 201,
        )
    if name == "replan":
        plan = course(w)
        second = plan["sessions"][1]["start"]
        return SimpleNamespace(
            client=w.api,
            path=f"/plans/{plan['id']}/replan/",
            body={"from_session": 2, "start": later(second, 7)},
            other={"from_session": 2, "start": later(second, 8)},
            bad={"from_session": 0, "start": later(second, 7)},
            status=200,
        )
    if name == "plans_cancel":
        plan = course(w)
        return SimpleNamespace(
            client=w.api,
            path=f"/plans/{plan['id']}/cancel/",
            body={"reason": "the patient moved away"},
            other={"reason": "the patient changed her mind"},
            bad={"reason": 5},
            status=200,
        )
    if name == "webhooks_create":
        body = {"url": HOOK + "/second", "description": "the second"}
        return SimpleNamespace(
            client=w.api,
            path="/webhooks/",
            body=body,
            other={**body, "description": "another"},
            bad={"url": "not a url"},
            status=201,
        )
    if name == "rotate_secret":
        return SimpleNamespace(
            client=w.api,
            path=f"/webhooks/{w.hook}/rotate-secret/",
            body={"overlap_minutes": 60},
            other={"overlap_minutes": 30},
            bad={"overlap_minutes": -1},
            status=200,
        )
    if name == "redeliver":
        return SimpleNamespace(
            client=w.api,
            path=f"/webhooks/{w.hook}/deliveries/{delivery(w)}/redeliver/",
            body={},
            other={"note": "x"},
            bad={"note": "x"},
            status=201,
        )
    raise AssertionError(name)


TEMPLATES = {
    "patients_create": "/patients/",
    "procedures_create": "/patients/{patient_id}/procedures/",
    "medications_create": "/patients/{patient_id}/medications/",
    "appointments_create": "/appointments/",
    "reschedule": "/appointments/{appointment_id}/reschedule/",
    "cancel": "/appointments/{appointment_id}/cancel/",
    "complete": "/appointments/{appointment_id}/complete/",
    "clear": "/appointments/{appointment_id}/clear/",
    "no_show": "/appointments/{appointment_id}/no-show/",
    "merge": "/patients/{patient_id}/merge/",
    "plans_create": "/patients/{patient_id}/plans/",
    "plans_dry_run": "/patients/{patient_id}/plans/",
    "replan": "/plans/{plan_id}/replan/",
    "plans_cancel": "/plans/{plan_id}/cancel/",
    "webhooks_create": "/webhooks/",
    "rotate_secret": "/webhooks/{webhook_id}/rotate-secret/",
    "redeliver": "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver/",
}
WRITES = [
    "patients_create",
    "procedures_create",
    "medications_create",
    "appointments_create",
    "reschedule",
    "cancel",
    "complete",
    "clear",
    "no_show",
    "merge",
    "plans_create",
    "plans_dry_run",
    "replan",
    "plans_cancel",
    "webhooks_create",
    "rotate_secret",
    "redeliver",
]


# --- Coverage: every keyed write of the schema is probed here -----------------------------------------------------


def test_every_post_the_schema_gives_an_idempotency_key_is_one_this_probe_retries(w):
    """The schema's POSTs with the Idempotency-Key parameter are exactly the writes probed below; the two POSTs
    without it (eligibility, reschedule-check) change nothing; PATCH, PUT and DELETE have none."""
    schema = answer(w.api.get(f"{API}/schema/?format=json"), 200)
    keyed, unkeyed = set(), set()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method not in ("post", "put", "patch", "delete"):
                continue
            names = {param.get("name") for param in operation.get("parameters", [])}
            (keyed if "Idempotency-Key" in names else unkeyed).add((method, path.removeprefix("/api/v1")))
    probed = {("post", TEMPLATES[name]) for name in WRITES}
    assert keyed == probed, (keyed - probed, probed - keyed)
    assert {path for method, path in unkeyed if method == "post"} == {
        "/eligibility/",
        "/appointments/{appointment_id}/reschedule-check/",
    }


# --- One endpoint at a time --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", WRITES)
def test_a_retry_with_the_same_key_replays_byte_for_byte_and_does_nothing_more(w, name):
    """Contract: the same key with the same body within 24 h 'returns the first response again (same status, same
    body) and creates nothing'; docs/api.md: byte for byte, the same Location, `Idempotent-Replayed: true`; keys of
    1 to 255 printable ASCII characters, any other a 400 `invalid_idempotency_key`; another body under the key a 422
    `idempotency_key_reused`. Sent with a 255-character key, twice, then with another body, then with a
    256-character key: nothing happens after the first (rows, audit, messages, webhooks, secrets)."""
    write = case(name, w)
    first = post(write.client, write.path, write.body, key=KEY_255)
    assert first.status_code == write.status, first.content[:600]
    assert IdempotencyKey.objects.filter(key=KEY_255).count() == 1
    after_first = effects()
    same_answer(first, post(write.client, write.path, write.body, key=KEY_255))
    assert effects() == after_first
    refused(post(write.client, write.path, write.other, key=KEY_255), 422, "idempotency_key_reused")
    refused(post(write.client, write.path, write.body, key=KEY_256), 400, "invalid_idempotency_key")
    assert effects() == after_first
    same_answer(first, post(write.client, write.path, write.body, key=KEY_255))


@pytest.mark.parametrize("name", [n for n in WRITES if n != "plans_dry_run"])
def test_a_400_is_replayed_under_its_key_and_the_corrected_body_needs_a_new_key(w, name):
    """docs/api.md: the replay 'includes a first answer that was a 400'; another body under the key is a 422. The 400
    is replayed, nothing is done, the corrected body with the same key is a 422 doing nothing, and with a new key it
    goes through once."""
    write = case(name, w)
    before = effects()
    first = post(write.client, write.path, write.bad, key=f"qa6i-bad-{name}")
    assert answer(first, 400)["errors"]
    same_answer(first, post(write.client, write.path, write.bad, key=f"qa6i-bad-{name}"))
    refused(post(write.client, write.path, write.body, key=f"qa6i-bad-{name}"), 422, "idempotency_key_reused")
    assert effects() == before
    assert post(write.client, write.path, write.body, key=f"qa6i-good-{name}").status_code == write.status


def test_one_key_used_on_a_booking_is_a_422_on_every_other_write_and_does_nothing(w):
    """docs/api.md: the key is compared with 'method, path and JSON body'; 'the same key with a different request is
    a 422'. A platform reusing one key everywhere (a bug, or a key made from a counter that restarted) books once,
    then every other write under that key is refused and changes nothing."""
    writes = {name: case(name, w) for name in WRITES if name != "appointments_create"}
    body = {"patient": str(w.pat.pk), "procedure": "botox", "start": "2026-03-12T10:00:00+00:00"}
    first = post(w.api, "/appointments/", body, key="qa6i-one-key")
    assert first.status_code == 201, first.content
    clinical_first = post(w.clin, "/webhooks/", {"url": HOOK + "/clinical-two"}, key="qa6i-one-key")
    assert clinical_first.status_code == 201, clinical_first.content  # another caller: its own use of the key
    before = effects()
    for name, write in writes.items():
        response = post(write.client, write.path, write.body, key="qa6i-one-key")
        assert response.status_code == 422, (name, response.content[:300])
        assert response.json()["code"] == "idempotency_key_reused"
    assert effects() == before


def test_a_key_belongs_to_its_caller_and_its_answer_is_never_given_to_another(w):
    """docs/api.md: 'Keys are per caller'; a replay 'answers what was already answered to the same caller'. One
    platform rotates its endpoint's secret under a key; another platform, and a staff user, sending the same key and
    request are answered afresh (the endpoint is not theirs: 404, 403) and never see the new secret; the first
    platform's retry replays it."""
    rotated = post(w.api, f"/webhooks/{w.hook}/rotate-secret/", {"overlap_minutes": 60}, key="qa6i-mine")
    secret = answer(rotated, 200)["secret"]
    before = effects()
    other = post(w.clin, f"/webhooks/{w.hook}/rotate-secret/", {"overlap_minutes": 60}, key="qa6i-mine")
    refused(other, 404, "unknown_webhook_endpoint")
    assert other.get("Idempotent-Replayed") is None and secret not in other.content.decode()
    user = get_user_model().objects.create_user(username="qa6i-desk", password="pw-for-tests-only")
    StaffMembership.objects.create(user=user, clinic=w.clinic, role=StaffRole.CLINICIAN)
    desk = post(session(user), f"/webhooks/{w.hook}/rotate-secret/", {"overlap_minutes": 60}, key="qa6i-mine")
    assert desk.status_code == 403 and secret not in desk.content.decode()
    assert effects() == before
    same_answer(rotated, post(w.api, f"/webhooks/{w.hook}/rotate-secret/", {"overlap_minutes": 60}, key="qa6i-mine"))


def test_a_staff_user_and_a_platform_sending_one_key_and_booking_are_answered_each_for_themselves(w):
    """Keys are per caller: the desk's identical booking under the platform's key is not the platform's replay (the
    patient is taken then: a 409 of its own), and the platform's replay still gives its 201."""
    body = {"patient": str(w.pat.pk), "procedure": "botox", "start": "2026-03-10T10:00:00+00:00"}
    mine = post(w.api, "/appointments/", body, key="qa6i-shared")
    assert mine.status_code == 201
    user = get_user_model().objects.create_user(username="qa6i-reception", password="pw-for-tests-only")
    StaffMembership.objects.create(user=user, clinic=w.clinic, role=StaffRole.RECEPTIONIST)
    theirs = post(session(user), "/appointments/", body, key="qa6i-shared")
    refused(theirs, 409, "booking_refused")
    assert theirs.get("Idempotent-Replayed") is None
    same_answer(mine, post(w.api, "/appointments/", body, key="qa6i-shared"))
    assert Appointment.objects.filter(patient=w.pat).count() == 1


def test_keys_that_differ_only_in_case_are_two_keys(w):
    """Keys are compared exactly (opaque strings): `Retry-A` and `retry-a` are two requests, the second answered
    afresh (the patient is booked then)."""
    body = {"patient": str(w.pat.pk), "procedure": "botox", "start": "2026-03-10T10:00:00+00:00"}
    assert post(w.api, "/appointments/", body, key="Retry-A").status_code == 201
    second = post(w.api, "/appointments/", body, key="retry-a")
    assert second.get("Idempotent-Replayed") is None
    refused(second, 409, "booking_refused")


# --- Refusals retried with the same key ---------------------------------------------------------------------------


def test_a_403_is_replayed_under_its_key_after_the_right_is_granted(w):
    """docs/api.md: a key replays 'the first response again'. A platform without the clinician's right completing a
    visit gets a 403; granted the right since, its retry under the same key is the same 403 and completes nothing; a
    new key completes it once."""
    visit = begun(w)
    first = post(w.api, f"/appointments/{visit}/complete/", {}, key="qa6i-403")
    refused(first, 403, "clinician_required")
    ApiClient.objects.filter(pk=w.platform.pk).update(clinical=True)
    same_answer(first, post(w.api, f"/appointments/{visit}/complete/", {}, key="qa6i-403"))
    assert Appointment.objects.get(pk=visit).status == "confirmed"
    assert answer(post(w.api, f"/appointments/{visit}/complete/", {}, key="qa6i-403-new"), 200)["status"] == "completed"
    assert ProcedureRecord.objects.filter(appointment_id=visit).count() == 1


def test_a_redelivery_refused_while_paused_is_replayed_after_resuming_and_a_new_key_sends_it(w):
    """docs/api.md: 'A redelivery to a paused endpoint is a 409 webhook_endpoint_paused'; keyed, the 409 is the
    answer to that request for 24 h. Resumed, the retry under the key is the 409 again (no delivery); a new key
    writes one."""
    path = f"/webhooks/{w.hook}/deliveries/{delivery(w)}/redeliver/"
    assert w.api.patch(f"{API}/webhooks/{w.hook}/", {"active": False}, format="json").status_code == 200
    first = post(w.api, path, {}, key="qa6i-paused")
    refused(first, 409, "webhook_endpoint_paused")
    assert w.api.patch(f"{API}/webhooks/{w.hook}/", {"active": True}, format="json").status_code == 200
    before = effects()
    same_answer(first, post(w.api, path, {}, key="qa6i-paused"))
    assert effects() == before
    assert post(w.api, path, {}, key="qa6i-resumed").status_code == 201
    assert effects()["webhooks"] == before["webhooks"] + 1


def test_a_refused_clearance_is_replayed_and_a_cancelled_booking_stays_cancelled(w):
    """A clearance of a booking cancelled meanwhile is a 409; its retry under the key is the same 409 and nothing is
    written (no audit row, no webhook)."""
    visit = pending(w)
    assert post(w.api, f"/appointments/{visit}/cancel/", {}).status_code == 200
    before = effects()
    first = post(w.clin, f"/appointments/{visit}/clear/", {"reason": "ok"}, key="qa6i-clear-late")
    assert first.status_code == 409, first.content
    same_answer(first, post(w.clin, f"/appointments/{visit}/clear/", {"reason": "ok"}, key="qa6i-clear-late"))
    assert effects() == before


# --- Replays after the resource changed ---------------------------------------------------------------------------


def test_a_rotation_replayed_after_a_second_rotation_answers_the_first_and_rotates_nothing(w):
    """A replay is the first answer (docs/api.md): after a second rotation (another key), the first rotation's retry
    answers the first secret again, and the endpoint keeps signing with the second one and its predecessor
    (the replay changed nothing)."""
    path = f"/webhooks/{w.hook}/rotate-secret/"
    first = post(w.api, path, {"overlap_minutes": 60}, key="qa6i-rot-1")
    second = answer(post(w.api, path, {"overlap_minutes": 60}, key="qa6i-rot-2"), 200)
    endpoint = WebhookEndpoint.objects.get(pk=w.hook)
    assert (endpoint.secret, endpoint.previous_secret) == (second["secret"], first.json()["secret"])
    same_answer(first, post(w.api, path, {"overlap_minutes": 60}, key="qa6i-rot-1"))
    endpoint.refresh_from_db()
    assert (endpoint.secret, endpoint.previous_secret) == (second["secret"], first.json()["secret"])


def test_a_booking_replayed_after_it_was_cancelled_answers_the_201_and_books_nothing(w):
    body = {"patient": str(w.pat.pk), "procedure": "botox", "start": "2026-03-10T10:00:00+00:00"}
    first = post(w.api, "/appointments/", body, key="qa6i-book-cancel")
    made = answer(first, 201)
    assert post(w.api, f"/appointments/{made['id']}/cancel/", {}).status_code == 200
    before = effects()
    same_answer(first, post(w.api, "/appointments/", body, key="qa6i-book-cancel"))
    assert effects() == before
    assert Appointment.objects.get(pk=made["id"]).status == "cancelled"


def test_a_registration_replayed_after_the_endpoint_was_deleted_does_not_bring_it_back(w):
    body = {"url": HOOK + "/gone"}
    first = post(w.api, "/webhooks/", body, key="qa6i-hook-gone")
    made = answer(first, 201)
    assert w.api.delete(f"{API}/webhooks/{made['id']}/").status_code == 204
    before = effects()
    same_answer(first, post(w.api, "/webhooks/", body, key="qa6i-hook-gone"))
    assert effects() == before
    assert not WebhookEndpoint.objects.filter(pk=made["id"]).exists()


def test_a_completion_replayed_after_the_record_moved_on_adds_no_second_history_line_or_recall(w):
    """A completion's retry after the record moved on (a procedure reported since) replays the 200 and records
    nothing more: one history line for the visit, no second recall, no second audit row."""
    visit = begun(w)
    first = post(w.clin, f"/appointments/{visit}/complete/", {}, key="qa6i-done")
    assert first.status_code == 200
    body = {"procedure": "filler", "performed_at": "2026-03-02T12:00:00+00:00", "area": "face"}
    assert post(w.api, f"/patients/{w.pat.pk}/procedures/", body).status_code == 201
    before = effects()
    same_answer(first, post(w.clin, f"/appointments/{visit}/complete/", {}, key="qa6i-done"))
    assert effects() == before
    assert ProcedureRecord.objects.filter(appointment_id=visit).count() == 1
    assert AuditEvent.objects.filter(appointment_id=visit, action="completed").count() == 1


# --- Without a key ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["reschedule", "cancel", "complete", "clear", "no_show", "appointments_create", "plans_cancel"]
)
def test_a_lifecycle_write_repeated_without_a_key_never_changes_twice(w, name):
    """The key is optional (contract: 'accepts'). A platform that retries without one: a repeated move is a no-op
    (scheduler.booking: 'a move sent twice: not a second move'), a repeated cancel/complete/clear/no-show a 409, a
    repeated booking a 409 (the patient is taken): never a second audit row, message or webhook."""
    write = case(name, w)
    assert post(write.client, write.path, write.body).status_code == write.status
    before = effects()
    again = post(write.client, write.path, write.body)
    assert again.status_code in (write.status, 409), again.content[:300]
    if name != "reschedule":
        assert again.status_code == 409
    assert effects() == before


# --- Writes that take no key: PUT and PATCH retried ---------------------------------------------------------------


@pytest.mark.parametrize(
    "second",
    [
        [{"condition": "scleroderma", "status": "history"}],
        [{"condition": "scleroderma", "status": "history"}, {"condition": "filler_allergy", "status": "history"}],
    ],
    ids=["same-intake", "a-line-about-fillers-added"],
)
def test_a_put_of_the_same_intake_twice_flags_the_booking_once(w, second):
    """PUT replaces the intake whole and is idempotent by its nature (a retry without If-Match, or the desk's intake
    page saved unchanged): the same lines sent again change nothing, so the microneedling they made unsafe stays
    flagged once (one `needs_review` audit row, one `appointment.needs_review` delivery per platform); so does a line
    that has nothing to do with microneedling (an allergy to fillers) added beside it. Observed before it was mended: the second PUT flagged
    it again with the same reasons, and each platform hears `appointment.needs_review` twice. Cause:
    clinic.services.conditions_replace deletes and re-creates the rows (new ids), and
    scheduler.recheck.patient_appointments_recheck compares the stored `review_reasons`, whose
    `conflicts_with.id` is the condition row's id, so identical reasons look new ('a new flag')."""
    visit = booked(w, "2026-03-10T10:00:00+00:00", procedure="microneedling", area="face")["id"]
    url = f"{API}/patients/{w.pat.pk}/conditions/"
    lines = [{"condition": "scleroderma", "status": "history"}]  # absolute for microneedling
    assert w.api.put(url, lines, format="json").status_code == 200
    flagged = Appointment.objects.get(pk=visit)
    assert flagged.status == "needs_review"
    before = effects()
    assert w.api.put(url, second, format="json").status_code == 200
    again = Appointment.objects.get(pk=visit)
    assert [{**r, "conflicts_with": {**r["conflicts_with"], "id": None}} for r in again.review_reasons] == [
        {**r, "conflicts_with": {**r["conflicts_with"], "id": None}} for r in flagged.review_reasons
    ]  # the same reasons but for the row's id
    assert AuditEvent.objects.filter(appointment_id=visit, action="needs_review").count() == 1
    assert {k: v for k, v in effects().items() if k != "conditions"} == {
        k: v for k, v in before.items() if k != "conditions"
    }


def test_a_course_end_patched_twice_changes_and_flags_once(w):
    """The end of an isotretinoin course sent again (a retried PATCH without If-Match) changes nothing more: the
    microneedling it made unsafe stays flagged once, no audit row or webhook is added."""
    visit = booked(w, "2026-03-10T10:00:00+00:00", procedure="microneedling", area="face")["id"]
    made = answer(
        post(w.api, f"/patients/{w.pat.pk}/medications/", {"drug": "isotretinoin", "started_on": "2025-09-01"}), 201
    )
    url = f"{API}/patients/{w.pat.pk}/medications/{made['id']}/"
    assert w.api.patch(url, {"ended_on": "2026-02-20"}, format="json").status_code == 200
    before = effects()
    again = w.api.patch(url, {"ended_on": "2026-02-20"}, format="json")
    assert again.status_code == 200, again.content
    assert effects() == before
    assert Appointment.objects.get(pk=visit).status == "needs_review"


def test_a_patient_patch_sent_twice_records_the_consent_once(w):
    """A PATCH switching texts on (channels and consent) sent again after a lost answer records one opt-in and plans
    the texts once: the second finds nothing to change."""
    booked(w, "2026-03-10T10:00:00+00:00")
    url = f"{API}/patients/{w.pat.pk}/"
    body = {"reminder_channels": ["email", "sms"], "sms_consent": True}
    first = w.api.patch(url, body, format="json")
    assert first.status_code == 200, first.content
    before = effects()
    assert before["opt_ins"] == 1
    again = w.api.patch(url, body, format="json")
    assert again.status_code == 200 and again.content == first.content and again["ETag"] == first["ETag"]
    assert effects() == before


@pytest.mark.parametrize("write", ["intake_put", "patient_patch"])
def test_a_conditional_change_retried_after_a_lost_answer_is_not_refused_as_someone_elses(w, write):
    """docs/api.md, Changing safely: send the ETag back in If-Match; 'platforms should send it'. The first PUT (or
    PATCH) went through and its answer was lost; the platform sends the very same request again. The stored record
    is exactly what the request asks for (versions are content fingerprints: clinic.services.record_version,
    intake_version), yet the retry is a 412 `record_changed` telling it to re-read and redo a change that is its
    own (observed before it was mended). RFC 9110 13.1.1 lets a server answer 2xx when the change 'appears to have already been applied'."""
    if write == "intake_put":
        url = f"{API}/patients/{w.pat.pk}/conditions/"
        etag = w.api.get(url)["ETag"]
        body, send = [{"condition": "eczema", "status": "history"}], w.api.put
    else:
        url = f"{API}/patients/{w.pat.pk}/"
        etag = w.api.get(url)["ETag"]
        body, send = {"email": "pat.new@example.com"}, w.api.patch
    assert send(url, body, format="json", HTTP_IF_MATCH=etag).status_code == 200
    retry = send(url, body, format="json", HTTP_IF_MATCH=etag)
    assert retry.status_code == 200, (retry.status_code, retry.content[:300])


# --- A merged record's address ------------------------------------------------------------------------------------


def test_a_redirected_keyed_addition_retried_as_first_sent_is_not_called_a_different_request(w):
    """docs/api.md: 'A 308 is not kept under an Idempotency-Key (nothing was done): the same key may be sent again
    with the request at Location.' A platform's HTTP client follows the 308 with the key (201 at the survivor's
    address), the answer is lost, and the platform retries the request it sent, at the merged record's address.
    Expected: the stored 201 (or the 308 again, leading to it); observed before it was mended: a 422 saying the key was used for a
    different request (api/idempotency.py fingerprints the path), so the platform cannot learn the outcome under
    its key, and a new key would record the procedure twice."""
    dup = PatientFactory(clinic=w.clinic, first_name="Patricia", last_name="Lee-Dup")
    assert post(w.clin, f"/patients/{dup.pk}/merge/", {"into": str(w.pat.pk)}).status_code == 200
    body = {"procedure": "botox", "performed_at": "2026-01-20T10:00:00+00:00", "area": "face"}
    moved = post(w.api, f"/patients/{dup.pk}/procedures/", body, key="qa6i-308")
    assert moved.status_code == 308
    followed = post(w.api, moved["Location"].removeprefix(API), body, key="qa6i-308")
    assert followed.status_code == 201
    retried = post(w.api, f"/patients/{dup.pk}/procedures/", body, key="qa6i-308")
    assert ProcedureRecord.objects.filter(patient=w.pat).count() == 1
    assert retried.status_code in (201, 308), (retried.status_code, retried.content[:300])


# --- PostgreSQL: the same key at the same moment ------------------------------------------------------------------


RACED = [
    "procedures_create",
    "cancel",
    "complete",
    "clear",
    "merge",
    "plans_create",
    "plans_cancel",
    "webhooks_create",
    "redeliver",
]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", RACED)
def test_the_same_key_sent_three_times_at_once_acts_once(w, name):
    """docs/api.md: two identical requests at the same moment create one: the second waits on the key's unique
    constraint and replays the first's answer. Three at once on each write: the same status and bytes for all,
    the effects of one."""
    write = case(name, w)
    baseline = effects()
    answers = race(*[lambda: post(like(write.client), write.path, write.body, key="qa6i-race")] * 3)
    assert all(not isinstance(a, Exception) for a in answers), answers
    assert [a.status_code for a in answers] == [write.status] * 3, [a.content[:300] for a in answers]
    assert len({a.content for a in answers}) == 1
    assert sum(a.get("Idempotent-Replayed") == "true" for a in answers) == 2
    once = effects()
    assert once != baseline
    replay = post(write.client, write.path, write.body, key="qa6i-race")
    assert replay.content == answers[0].content and effects() == once


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", ["cancel", "complete", "no_show"])
def test_a_retry_with_a_new_key_racing_the_first_acts_once(w, name):
    """A platform whose first request timed out retries with a new key while the first is still running: one of
    them acts (one audit row, one webhook per endpoint), the other is a 409."""
    write = case(name, w)
    baseline = effects()
    answers = race(
        *[lambda k=k: post(like(write.client), write.path, write.body, key=k) for k in ("qa6i-first", "qa6i-retry")]
    )
    assert sorted(a.status_code for a in answers) == sorted([409, write.status]), [a.content[:300] for a in answers]
    after = effects()
    assert after["audit"] == baseline["audit"] + 1
    assert after["webhooks"] == baseline["webhooks"] + 2  # one per platform's endpoint
    assert after["procedures"] == baseline["procedures"] + (1 if name == "complete" else 0)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_key_with_two_reasons_at_once_cancels_once_and_the_other_is_a_422(w):
    write = case("cancel", w)
    baseline = effects()
    answers = race(
        *[lambda b=b: post(like(write.client), write.path, b, key="qa6i-two") for b in (write.body, write.other)]
    )
    assert sorted(a.status_code for a in answers) == [200, 422], [a.content[:300] for a in answers]
    assert effects()["audit"] == baseline["audit"] + 1
    assert IdempotencyKey.objects.filter(key="qa6i-two").count() == 1
    stored = json.loads(IdempotencyKey.objects.get(key="qa6i-two").response_body)
    assert stored["status"] == "cancelled"
