"""Review probe dec6s: commits 02b729b and a13f87d, If-Match on every appointment status change over the API.

Probed: every status change (cancel, complete, clear, no-show) and the reschedule evaluating If-Match under the locks
(scheduler.lifecycle.transition `made_from`, scheduler/booking.py, api/views.py `_AppointmentAction`), `_if_match` a
400 for a malformed header, the reschedule reading its request before the version; against docs/api.md "Changing
safely" (400, then the status's 409, then the version's 412), "Idempotency" (a key names its If-Match) and the schema.

Found right (passing tests): a change made without If-Match computes no version (transition, the reschedule; every
caller outside the API sends none: the desk, the portal, a course's cancel or re-plan) and an If-Match costs no
statement; a stale tag on complete, clear and no-show is a 412 with nothing changed (a clinician's complete made from a
reading before the desk gave the visit to a colleague records nothing); per action the order holds where the docs
state it (403 for the clinician's right, 400 for the body or a malformed If-Match, the status's 409, then 412); a 412
of every action is kept under its Idempotency-Key and replayed as sent, a fresh tag with that key is a 422, a new key
acts; a malformed If-Match kept under its key likewise; a move's own 400 (an unknown practitioner) comes before its
412 and the version before the rules' refusal; the schema lists If-Match, 400 and 412 for each action; the course
cancel takes no If-Match and a plan's GET answers no ETag (nothing to name: no question raised); the booking
statement count and the versioned-configuration tests still pass unchanged.

Found, and mended or decided the same day (the tests below pass since):
* DEFECT: an If-Match with an empty list element (`"<etag>",` or `, "<etag>"`) was a 400 since a13f87d: empty
  elements are ignored now (RFC 9110 5.6.1.2), and the key's fingerprint reads the tags, not their spelling;
* DEFECT: docs/api.md said a move's own 400 (a start in the past) comes before the status's 409; the code answers
  the status first (scheduler.lifecycle.transition): the docs now give the order as it is;
* QUESTION: complete or no-show before the start with a stale If-Match is a 412, not the 409 `not_started`:
  decided and documented (the version before what the change finds on the appointment as it now is).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

import scheduler.booking
import scheduler.lifecycle
from clinic.models import Appointment, AppointmentStatus, AuditEvent, ProcedureRecord
from plans.defaults import plan_templates_load
from scheduler import booking
from scheduler.selfservice import appointment_cancel_by_patient
from tests.factories import AppointmentFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import API, CLINICIAN, NOW, RECEPTION, ok, problem

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock")]

NEVER = '"never-a-version-of-it"'
STARTED = NOW - timedelta(hours=1)  # Monday 2 March 08:00 UTC: begun, so it may be completed or missed
LATER = datetime(2026, 3, 11, 10, tzinfo=UTC)  # a Wednesday to come

# What each status change needs: the status it acts on, when the visit starts, who may send it, its body.
ACTIONS = {
    "cancel": (AppointmentStatus.CONFIRMED, LATER, "api", {}),
    "complete": (AppointmentStatus.CONFIRMED, STARTED, "clinical_api", {}),
    "clear": (AppointmentStatus.PENDING_CLEARANCE, LATER, "clinical_api", {"reason": "Seen, risks accepted"}),
    "no-show": (AppointmentStatus.CONFIRMED, STARTED, "clinical_api", {}),
}
DONE = {
    "cancel": AppointmentStatus.CANCELLED,
    "complete": AppointmentStatus.COMPLETED,
    "clear": AppointmentStatus.CONFIRMED,
    "no-show": AppointmentStatus.NO_SHOW,
}


def _visit(patient, practitioner, status=AppointmentStatus.CONFIRMED, start=LATER, **extra) -> Appointment:
    return AppointmentFactory(patient=patient, practitioner=practitioner, start_at=start, status=status, **extra)


def _path(visit, action: str = "") -> str:
    return f"{API}/appointments/{visit.pk}/{action + '/' if action else ''}"


def _etag(client, visit) -> str:
    response = client.get(_path(visit))
    assert response.status_code == 200, response.content[:300]
    return response["ETag"]


def _state(visit) -> tuple:
    row = Appointment.objects.get(pk=visit.pk)
    return row.status, row.start_at, row.practitioner_id, AuditEvent.objects.filter(appointment_id=visit.pk).count()


def _send(client, visit, action: str, body: dict, **headers):
    return client.post(_path(visit, action), body, format="json", **headers)


@pytest.fixture
def callers(api, clinical_api):
    return {"api": api, "clinical_api": clinical_api}


@pytest.fixture
def version_forbidden(monkeypatch):
    """appointment_version raising wherever a change could compute it: a change made without If-Match must not."""

    def forbidden(appointment):
        raise AssertionError("a version was computed for a change made without If-Match")

    monkeypatch.setattr(scheduler.lifecycle, "appointment_version", forbidden)
    monkeypatch.setattr(scheduler.booking, "appointment_version", forbidden)


# --- No If-Match: no version computed, and the callers that send none unchanged --------------------------------


def test_a_change_without_if_match_computes_no_version_and_one_with_it_does(patient, practitioner, version_forbidden):
    """scheduler.lifecycle.transition with made_from None reads no version (clinic.services.unchanged_since): the
    desk, the portal and a course's cancel call these services without it. With made_from, the (patched) version is
    read: the patch takes effect."""
    cancelled = booking.appointment_cancel(appointment=_visit(patient, practitioner), actor=RECEPTION, now=NOW)
    completed = booking.appointment_complete(
        appointment=_visit(patient, practitioner, start=STARTED), actor=CLINICIAN, now=NOW
    )
    missed = booking.appointment_mark_no_show(
        appointment=_visit(patient, practitioner, start=STARTED + timedelta(minutes=30)), actor=CLINICIAN, now=NOW
    )
    cleared = booking.appointment_clear(
        appointment=_visit(patient, practitioner, AppointmentStatus.PENDING_CLEARANCE, LATER + timedelta(hours=1)),
        actor=CLINICIAN,
        now=NOW,
        reason="Seen",
    )
    arrived = booking.appointment_check_in(
        appointment=_visit(patient, practitioner, start=NOW + timedelta(hours=2)), actor=RECEPTION, now=NOW
    )
    moved = booking.appointment_reschedule(
        appointment=_visit(patient, practitioner, start=LATER + timedelta(hours=2)),
        start_at=LATER + timedelta(days=1),
        actor=RECEPTION,
        now=NOW,
        drawn=(LATER + timedelta(hours=2), None),
    ).appointment
    assert [cancelled.status, completed.status, missed.status, cleared.status] == [
        AppointmentStatus.CANCELLED,
        AppointmentStatus.COMPLETED,
        AppointmentStatus.NO_SHOW,
        AppointmentStatus.CONFIRMED,
    ]
    assert arrived.checked_in_at == NOW and moved.start_at == LATER + timedelta(days=1)
    with pytest.raises(AssertionError, match="a version was computed"):
        booking.appointment_cancel(
            appointment=_visit(patient, practitioner, start=LATER + timedelta(hours=3)),
            actor=RECEPTION,
            now=NOW,
            made_from={"x"},
        )
    with pytest.raises(AssertionError, match="a version was computed"):
        booking.appointment_reschedule(
            appointment=_visit(patient, practitioner, start=LATER + timedelta(hours=4)),
            start_at=LATER + timedelta(days=2),
            actor=RECEPTION,
            now=NOW,
            made_from={"x"},
        )


@pytest.mark.parametrize("action", list(ACTIONS))
def test_an_api_status_change_without_if_match_computes_no_version(action, callers, patient, practitioner, request):
    status, start, caller, body = ACTIONS[action]
    visit = _visit(patient, practitioner, status, start)
    request.getfixturevalue("version_forbidden")
    ok(_send(callers[caller], visit, action, body))
    assert Appointment.objects.get(pk=visit.pk).status == DONE[action]


def test_a_course_cancel_and_a_patients_own_cancel_compute_no_version(api, patient, practitioner, request):
    """plans.services.plan_cancel and scheduler.selfservice call appointment_cancel without made_from."""
    plan_templates_load()
    body = {"template": "microneedling-course", "start_from": "2026-03-09"}
    plan = api.post(f"{API}/patients/{patient.pk}/plans/", body, format="json")
    assert plan.status_code == 201, plan.content[:400]
    own = _visit(patient, practitioner, start=datetime(2026, 4, 20, 10, tzinfo=UTC))
    request.getfixturevalue("version_forbidden")
    cancelled = ok(api.post(f"{API}/plans/{plan.json()['id']}/cancel/", {"reason": "Moving away"}, format="json"))
    assert cancelled["cancelled_at"]
    ids = [s["appointment"] for s in plan.json()["sessions"]]
    assert set(Appointment.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"cancelled"}
    appointment_cancel_by_patient(appointment=own, now=NOW, reason="Cannot come", drawn=(own.start_at, None))
    assert Appointment.objects.get(pk=own.pk).status == AppointmentStatus.CANCELLED


def test_an_if_match_costs_no_statement(api, patient, practitioner):
    """The version is computed from the row transition already locked: a cancel with If-Match runs as many
    statements as one without."""
    warm = _visit(patient, practitioner, start=LATER - timedelta(days=1))
    ok(_send(api, warm, "cancel", {}))
    plain, conditional = (_visit(patient, practitioner, start=LATER + timedelta(hours=h)) for h in (0, 2))
    tag = _etag(api, conditional)
    with CaptureQueriesContext(connection) as without:
        ok(_send(api, plain, "cancel", {}))
    with CaptureQueriesContext(connection) as with_tag:
        ok(_send(api, conditional, "cancel", {}, HTTP_IF_MATCH=tag))
    assert len(with_tag.captured_queries) == len(without.captured_queries), [
        q["sql"] for q in with_tag.captured_queries
    ]


# --- A stale tag on every status change -----------------------------------------------------------------------


@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_stale_tag_is_a_412_with_nothing_changed_and_the_current_one_acts(action, callers, patient, practitioner):
    """The desk gave the visit to a colleague after the platform read it: the change made from that reading is a 412
    `record_changed` (nothing changed, no audit line); sent with the tag as it is now, it acts."""
    status, start, caller, body = ACTIONS[action]
    client = callers[caller]
    visit = _visit(patient, practitioner, status, start)
    read = _etag(client, visit)
    colleague = PractitionerFactory(clinic=practitioner.clinic, name="Dr Colleague")
    Appointment.objects.filter(pk=visit.pk).update(practitioner=colleague)  # the desk's change, as stored
    before = _state(visit)
    body_412 = problem(_send(client, visit, action, body, HTTP_IF_MATCH=read), 412, "record_changed")
    assert body_412["instance"] == _path(visit, action)
    assert _state(visit) == before
    assert not ProcedureRecord.objects.filter(appointment_id=visit.pk).exists()
    ok(_send(client, visit, action, body, HTTP_IF_MATCH=_etag(client, visit)))
    assert Appointment.objects.get(pk=visit.pk).status == DONE[action]


@pytest.mark.parametrize("action", ["complete", "clear", "no-show"])
@pytest.mark.parametrize("header", ["abc", "", '"x" "y"', "W/abc"])
def test_a_malformed_if_match_on_the_other_status_changes_is_a_400_naming_it(
    action, header, callers, patient, practitioner
):
    status, start, caller, body = ACTIONS[action]
    visit = _visit(patient, practitioner, status, start)
    before = _state(visit)
    answer = problem(_send(callers[caller], visit, action, body, HTTP_IF_MATCH=header), 400)
    assert "If-Match" in answer.get("errors", {}), answer
    assert _state(visit) == before


# --- Which comes first ----------------------------------------------------------------------------------------


def test_clear_answers_the_right_then_the_reason_then_the_status_then_the_version(
    api, clinical_api, patient, practitioner
):
    held = _visit(patient, practitioner, AppointmentStatus.PENDING_CLEARANCE)
    confirmed = _visit(patient, practitioner, start=LATER + timedelta(hours=2))
    states = (_state(held), _state(confirmed))
    problem(_send(api, held, "clear", {"reason": "Seen"}, HTTP_IF_MATCH=NEVER), 403, "clinician_required")
    problem(_send(clinical_api, held, "clear", {"reason": "   "}, HTTP_IF_MATCH=NEVER), 400)
    problem(_send(clinical_api, held, "clear", {}, HTTP_IF_MATCH=NEVER), 400)
    problem(
        _send(clinical_api, confirmed, "clear", {"reason": "Seen"}, HTTP_IF_MATCH=NEVER), 409, "not_pending_clearance"
    )
    problem(_send(clinical_api, held, "clear", {"reason": "Seen"}, HTTP_IF_MATCH=NEVER), 412, "record_changed")
    # A malformed If-Match is the request's own error: before the status's 409.
    problem(_send(clinical_api, confirmed, "clear", {"reason": "Seen"}, HTTP_IF_MATCH="abc"), 400)
    assert (_state(held), _state(confirmed)) == states


@pytest.mark.parametrize(
    ("action", "status", "code"),
    [
        ("complete", AppointmentStatus.PENDING_CLEARANCE, "clearance_required"),
        ("complete", AppointmentStatus.NEEDS_REVIEW, "review_required"),
        ("complete", AppointmentStatus.COMPLETED, "not_completable"),
        ("complete", AppointmentStatus.CANCELLED, "not_completable"),
        ("no-show", AppointmentStatus.NEEDS_REVIEW, "not_no_show"),
        ("no-show", AppointmentStatus.CANCELLED, "not_no_show"),
        ("cancel", AppointmentStatus.COMPLETED, "not_cancellable"),
        ("cancel", AppointmentStatus.NO_SHOW, "not_cancellable"),
    ],
)
def test_what_the_status_allows_is_a_409_before_a_stale_tag(action, status, code, callers, patient, practitioner):
    _, start, caller, body = ACTIONS[action]
    visit = _visit(patient, practitioner, status, STARTED if action != "cancel" else start)
    before = _state(visit)
    problem(_send(callers[caller], visit, action, body, HTTP_IF_MATCH=NEVER), 409, code)
    problem(_send(callers[caller], visit, action, body, HTTP_IF_MATCH="abc"), 400)  # the request's own error first
    assert _state(visit) == before


@pytest.mark.parametrize("action", ["complete", "no-show"])
def test_without_the_clinicians_right_a_stale_tag_is_a_403(action, api, patient, practitioner):
    visit = _visit(patient, practitioner, start=STARTED)
    problem(_send(api, visit, action, {}, HTTP_IF_MATCH=NEVER), 403, "clinician_required")
    assert Appointment.objects.get(pk=visit.pk).status == AppointmentStatus.CONFIRMED


def test_a_cancel_reason_too_long_is_a_400_before_a_stale_tag(api, patient, practitioner):
    visit = _visit(patient, practitioner)
    problem(_send(api, visit, "cancel", {"reason": "x" * 2001}, HTTP_IF_MATCH=NEVER), 400)
    assert Appointment.objects.get(pk=visit.pk).status == AppointmentStatus.CONFIRMED


@pytest.mark.parametrize("action", ["complete", "no-show"])
def test_before_the_start_a_stale_tag_answers_412_before_not_started(action, clinical_api, patient, practitioner):
    """Decided after this review's question (docs/api.md, the order of the answers): the version before what the
    change finds on the appointment as it is (the start judged may be one moved since)."""
    visit = _visit(patient, practitioner, start=LATER)
    problem(_send(clinical_api, visit, action, {}, HTTP_IF_MATCH=NEVER), 412, "record_changed")


def test_before_the_start_the_current_tag_is_the_409_not_started(clinical_api, patient, practitioner):
    visit = _visit(patient, practitioner, start=LATER)
    for action in ("complete", "no-show"):
        problem(_send(clinical_api, visit, action, {}, HTTP_IF_MATCH=_etag(clinical_api, visit)), 409, "not_started")
    assert Appointment.objects.get(pk=visit.pk).status == AppointmentStatus.CONFIRMED


def test_a_moves_own_400_comes_before_its_412_and_the_version_before_the_rules(api, patient, practitioner, clinic):
    visit = _visit(patient, practitioner)
    stale = _etag(api, visit)
    Appointment.objects.filter(pk=visit.pk).update(review_reasons=[{"code": "x"}])  # changed since it was read
    before = _state(visit)
    unknown = {"start": "2026-03-12T10:00:00+00:00", "practitioner": "00000000-0000-4000-8000-000000000000"}
    problem(_send(api, visit, "reschedule", unknown, HTTP_IF_MATCH=stale), 400, "unknown_practitioner")
    problem(_send(api, visit, "reschedule", {"start": "2026-03-12T10:00:00"}, HTTP_IF_MATCH=stale), 400)
    # The slot is someone else's: the version is said first (the refusal would be judged on a visit not as read).
    other = PatientFactory(clinic=clinic, first_name="Other", last_name="Booker")
    _visit(other, practitioner, start=datetime(2026, 3, 12, 11, tzinfo=UTC))
    taken = {"start": "2026-03-12T11:00:00+00:00"}
    problem(_send(api, visit, "reschedule", taken, HTTP_IF_MATCH=stale), 412, "record_changed")
    problem(_send(api, visit, "reschedule", taken, HTTP_IF_MATCH=_etag(api, visit)), 409, "booking_refused")
    assert _state(visit) == before


@pytest.mark.parametrize("status", [AppointmentStatus.CANCELLED, AppointmentStatus.COMPLETED])
def test_a_move_of_a_closed_visit_to_the_past_is_the_status_409_as_documented(status, api, patient, practitioner):
    """Decided after this review (docs/api.md, the order of the answers): what the status allows comes before a
    move's time; the docs said otherwise and now say this."""
    visit = _visit(patient, practitioner, status, STARTED)
    past = {"start": "2026-03-01T10:00:00+00:00"}
    problem(_send(api, visit, "reschedule", past, HTTP_IF_MATCH=_etag(api, visit)), 409, "not_reschedulable")


def test_a_move_of_a_cancelled_visit_with_a_stale_tag_is_the_status_409(api, patient, practitioner):
    visit = _visit(patient, practitioner, AppointmentStatus.CANCELLED)
    future = {"start": "2026-03-12T10:00:00+00:00"}
    problem(_send(api, visit, "reschedule", future, HTTP_IF_MATCH=NEVER), 409, "not_reschedulable")


# --- If-Match forms ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["trailing", "leading", "between"])
def test_an_empty_list_element_is_ignored(form, api, patient, practitioner):
    visit = _visit(patient, practitioner)
    tag = _etag(api, visit)
    header = {"trailing": f"{tag},", "leading": f", {tag}", "between": f'"old", , {tag}'}[form]
    ok(_send(api, visit, "cancel", {}, HTTP_IF_MATCH=header))


@pytest.mark.parametrize("header", ["*", " * ", "list", "spaced-list"])
def test_star_and_lists_act_on_every_status_change(header, callers, patient, practitioner):
    for n, action in enumerate(ACTIONS):
        status, start, caller, body = ACTIONS[action]
        shift = timedelta(minutes=30 * n)
        visit = _visit(patient, practitioner, status, start + shift if start > NOW else start - shift)
        tag = _etag(callers[caller], visit)
        value = {"list": f'W/{tag}, "old",{tag}', "spaced-list": f'  "old" ,  {tag}  '}.get(header, header)
        ok(_send(callers[caller], visit, action, body, HTTP_IF_MATCH=value))
        assert Appointment.objects.get(pk=visit.pk).status == DONE[action], action


@pytest.mark.parametrize("action", list(ACTIONS))
def test_only_a_weak_tag_of_the_current_version_is_a_412(action, callers, patient, practitioner):
    status, start, caller, body = ACTIONS[action]
    visit = _visit(patient, practitioner, status, start)
    problem(_send(callers[caller], visit, action, body, HTTP_IF_MATCH=f"W/{_etag(callers[caller], visit)}"), 412)
    assert Appointment.objects.get(pk=visit.pk).status == status


# --- With an Idempotency-Key --------------------------------------------------------------------------------


@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_412_is_kept_under_its_key_and_a_fresh_tag_needs_a_new_key(action, callers, patient, practitioner):
    status, start, caller, body = ACTIONS[action]
    client = callers[caller]
    visit = _visit(patient, practitioner, status, start)
    key = f"dec6s-{action}"
    refused = _send(client, visit, action, body, HTTP_IF_MATCH=NEVER, HTTP_IDEMPOTENCY_KEY=key)
    problem(refused, 412, "record_changed")
    again = _send(client, visit, action, body, HTTP_IF_MATCH=NEVER, HTTP_IDEMPOTENCY_KEY=key)
    assert (again.status_code, again.content, again["Idempotent-Replayed"]) == (412, refused.content, "true")
    fresh = _etag(client, visit)
    problem(_send(client, visit, action, body, HTTP_IF_MATCH=fresh, HTTP_IDEMPOTENCY_KEY=key), 422)
    problem(_send(client, visit, action, body, HTTP_IDEMPOTENCY_KEY=key), 422, "idempotency_key_reused")
    assert Appointment.objects.get(pk=visit.pk).status == status
    done = _send(client, visit, action, body, HTTP_IF_MATCH=fresh, HTTP_IDEMPOTENCY_KEY=f"{key}-new")
    assert ok(done)["status"] == DONE[action]
    replayed = _send(client, visit, action, body, HTTP_IF_MATCH=fresh, HTTP_IDEMPOTENCY_KEY=f"{key}-new")
    assert (replayed.status_code, replayed.content) == (200, done.content)


@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_malformed_if_match_is_kept_under_its_key_as_any_400(action, callers, patient, practitioner):
    """docs/api.md: a keyed first answer that was a 400 is replayed; the same key with another request (the header
    corrected) is a 422. Only an unreadable body is answered before the key is claimed."""
    status, start, caller, body = ACTIONS[action]
    client = callers[caller]
    visit = _visit(patient, practitioner, status, start)
    first = _send(client, visit, action, body, HTTP_IF_MATCH="abc", HTTP_IDEMPOTENCY_KEY=f"dec6s-bad-{action}")
    problem(first, 400)
    again = _send(client, visit, action, body, HTTP_IF_MATCH="abc", HTTP_IDEMPOTENCY_KEY=f"dec6s-bad-{action}")
    assert (again.status_code, again.content, again["Idempotent-Replayed"]) == (400, first.content, "true")
    corrected = _send(
        client, visit, action, body, HTTP_IF_MATCH=_etag(client, visit), HTTP_IDEMPOTENCY_KEY=f"dec6s-bad-{action}"
    )
    problem(corrected, 422, "idempotency_key_reused")
    assert Appointment.objects.get(pk=visit.pk).status == status


# --- The schema and the docs --------------------------------------------------------------------------------


def _operations(client) -> dict[str, dict]:
    response = client.get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    return {
        operation["operationId"]: operation
        for methods in schema["paths"].values()
        for operation in methods.values()
        if isinstance(operation, dict) and "operationId" in operation
    }


def test_the_schema_lists_if_match_400_and_412_for_each_action_and_none_for_a_course_cancel(client, api, patient):
    by_id = _operations(client)
    actions = ["appointments_cancel_create", "appointments_complete_create", "appointments_clear_create"]
    actions += ["appointments_no_show_create", "appointments_reschedule"]
    for op in actions:
        names = [p["name"] for p in by_id[op].get("parameters", []) if p["in"] == "header"]
        assert {"If-Match", "Idempotency-Key"} <= set(names), op
        responses = by_id[op]["responses"]
        assert {"400", "409", "412"} <= set(responses), op
        assert "record_changed" in responses["412"]["description"], op
        assert "application/problem+json" in responses["412"]["content"], op
    etag = by_id["appointments_retrieve"]["responses"]["200"]["headers"]["ETag"]["description"]
    assert "status change" in etag and "cancel" in etag
    # A course's cancel takes none, and a plan's GET answers no ETag it could name: schema and server agree.
    assert not any(p["name"] == "If-Match" for p in by_id["plans_cancel"].get("parameters", []))
    assert "412" not in by_id["plans_cancel"]["responses"]
    assert "ETag" not in by_id["plans_retrieve"]["responses"]["200"].get("headers", {})


def test_the_docs_name_every_status_change_and_the_412_code():
    text = (Path(settings.BASE_DIR) / "docs" / "api.md").read_text()
    safely = text.split("### Changing safely")[1].split("\n### ")[0]
    for action in ("`complete`", "`clear`", "`no-show`", "cancel", "reschedule"):
        assert action in safely, action
    assert "a 400 naming `If-Match`" in safely
    assert "| `record_changed` | 412 |" in text
