"""Review probe dec6r: conditional requests (ETag, If-Match) as one contract a booking platform codes against once.

Probed, as docs/api.md ("Changing safely (ETag, If-Match)", "Idempotency") and the published schema say, across every
write that takes If-Match (a patient's PATCH, a medication course's PATCH, the intake's PUT, an appointment's
reschedule and cancel) and every GET that answers an ETag (a patient, a course, the intake, an appointment):

* the ETag's form (one strong, quoted entity-tag), the same from every read of the record (a second GET, another
  caller, HEAD, every page of the intake, the write's own answer), none on lists;
* what moves it: exactly what the docs say it covers (a patient: every stored field, shown or not; a course; the
  intake's lines; an appointment: where, when, with whom, for what, status, review reasons) and nothing else
  (reminders sent, a desk note, a re-check that finds the same, a save that changes nothing, another record's change);
* If-Match forms: the current tag, `*`, a list, a weak tag, a stale tag, a tag the record never had, malformed
  headers; the 412's problem+json shape and `record_changed`; which comes first, a bad body or a stale tag;
* If-Match with Idempotency-Key (reschedule, cancel): replays, 422 `idempotency_key_reused`, a stored 412;
* If-None-Match on the GETs; If-Match sent to a write that does not take it;
* the schema: an ETag header exactly on the answers that carry one, If-Match and 412 exactly on the writes that
  evaluate it.

Found right (passing tests): the four GETs answer one strong quoted ETag, the same to every caller, on HEAD and on
every intake page; the PATCH/PUT answers carry the ETag a GET then gives; the reschedule's 201 and the cancel's 200
carry none (documented for the reschedule); reminders sent, a desk note, a re-check finding the same, a save changing
nothing and changes of the other records leave every ETag; `*`, a list holding the current tag, a weak tag, a stale
tag behave as documented on all five writes, each 412 a problem document with `record_changed`, nothing changed; a
malformed If-Match is never a 500 and changes nothing; a key replays its 2xx and its 412 with the same If-Match and is
a 422 with another; If-None-Match is ignored harmlessly (200, full body); the schema's ETag headers, If-Match
parameters and 412s are exactly those the server uses.

Found, and mended or decided the same day (the tests below pass since):
* DEFECT: a malformed If-Match (`abc` unquoted, an empty header) was answered 412 `record_changed`, "changed since
  it was read", which is untrue (a platform re-reads, sends the same header, and loops): it is a 400 naming
  If-Match now (api/views.py `_if_match`);
* DEFECT: the schema's ETag header on `appointments_retrieve` named the reschedule only: it names every write that
  takes it;
* QUESTION: a move with a stale If-Match and a start in the past was a 412 where the other writes answer the bad
  body first: one order for every write now (the request's own errors, then the status, then the version);
* QUESTION: If-None-Match is ignored (a 200 with the body): decided, not supported for now, and said so in
  docs/api.md (a 304 would need the appointment's ETag to cover its `reminders`);
* QUESTION: complete (then taking no If-Match) acted on an If-Match naming no version the record has: every status
  change of an appointment (cancel, complete, clear, no-show) evaluates If-Match now, under its locks
  (scheduler.lifecycle.transition `made_from`), as RFC 9110 13.1.1 asks.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from django.core import mail

from clinic.models import Appointment, AppointmentStatus, MedicationCourse, Patient, PatientCondition
from clinic.services import appointment_notes_set
from reminders.consent import patient_preferences_update
from reminders.dispatch import dispatch_local
from reminders.models import OutboxMessage
from tests.api.conftest import clinician, http, new_api_client, session  # noqa: F401 (fixture: clinician)
from tests.factories import AppointmentFactory, MedicationCourseFactory, PatientFactory
from tests.qa.helpers import API, NOW, problem

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock")]

# RFC 9110 8.8.3: entity-tag = [ weak ] opaque-tag; opaque-tag = DQUOTE *etagc DQUOTE (etagc: %x21 / %x23-7E).
STRONG_TAG = re.compile(r'"[!#-~]+"')
NEVER = '"never-a-version-of-it"'


# --- The world: one subject per write, made fresh ---------------------------------------------------------------


@dataclass
class Subject:
    """A record a write changes: `read` answers its ETag; `send(client, **headers)` makes a real change (another one
    each time); `other()` is someone else's change (another platform, no If-Match); `stored()` what is stored now."""

    read: str
    write: str
    send: Callable
    other: Callable[[], object]
    stored: Callable[[], object]


def _ok(response, status=200):
    assert response.status_code == status, (response.status_code, response.content[:600])
    return response


def _book(client, patient, start: str, procedure="botox", **extra) -> str:
    body = {"patient": str(patient.pk), "procedure": procedure, "start": start, **extra}
    return _ok(client.post(f"{API}/appointments/", body, format="json"), 201).json()["id"]


def _patient_subject(w) -> Subject:
    patient = PatientFactory(clinic=w.clinic, first_name="Etag", last_name="Patient")
    path = f"{API}/patients/{patient.pk}/"
    count = itertools.count()
    return Subject(
        read=path,
        write=path,
        send=lambda client, **h: client.patch(path, {"last_name": f"Name{next(count)}"}, format="json", **h),
        other=lambda: _ok(w.other.patch(path, {"first_name": "Changed"}, format="json")),
        stored=lambda: Patient.objects.values_list("first_name", "last_name").get(pk=patient.pk),
    )


def _course_subject(w) -> Subject:
    patient = PatientFactory(clinic=w.clinic, first_name="Course", last_name="Patient")
    course = MedicationCourseFactory(patient=patient, drug_id="topical_retinoid", started_on=date(2025, 6, 1))
    path = f"{API}/patients/{patient.pk}/medications/{course.pk}/"
    count = itertools.count()

    def send(client, **headers):
        ended = date(2025, 7, 1) + timedelta(days=next(count))
        return client.patch(path, {"ended_on": ended.isoformat()}, format="json", **headers)

    return Subject(
        read=path,
        write=path,
        send=send,
        other=lambda: _ok(w.other.patch(path, {"ended_on": "2025-06-15"}, format="json")),
        stored=lambda: MedicationCourse.objects.values_list("ended_on", flat=True).get(pk=course.pk),
    )


def _intake_subject(w) -> Subject:
    patient = PatientFactory(clinic=w.clinic, first_name="Intake", last_name="Patient")
    path = f"{API}/patients/{patient.pk}/conditions/"
    count = itertools.count()

    def send(client, **headers):
        noted = date(2025, 1, 1) + timedelta(days=next(count))
        line = {"condition": "filler_allergy", "status": "history", "noted_on": noted.isoformat()}
        return client.put(path, [line], format="json", **headers)

    return Subject(
        read=path,
        write=path,
        send=send,
        other=lambda: _ok(w.other.put(path, [{"condition": "psoriasis", "status": "history"}], format="json")),
        stored=lambda: sorted(
            PatientCondition.objects.filter(patient=patient).values_list("condition_id", "status", "noted_on")
        ),
    )


def _appointment_subject(w, action: str) -> Subject:
    patient = PatientFactory(clinic=w.clinic, first_name="Visit", last_name=action.title())
    appointment_id = _book(w.api, patient, w.next_start(), practitioner=str(w.practitioner.pk))
    read = f"{API}/appointments/{appointment_id}/"

    def move(client, **headers):
        return client.post(f"{read}reschedule/", {"start": w.next_start()}, format="json", **headers)

    def cancel(client, **headers):
        return client.post(f"{read}cancel/", {}, format="json", **headers)

    return Subject(
        read=read,
        write=f"{read}{action}/",
        send=move if action == "reschedule" else cancel,
        other=lambda: _ok(w.other.post(f"{read}reschedule/", {"start": w.next_start()}, format="json"), 201),
        stored=lambda: Appointment.objects.values_list("start_at", "status").get(pk=appointment_id),
    )


WRITES = {
    "patient-patch": _patient_subject,
    "course-patch": _course_subject,
    "intake-put": _intake_subject,
    "reschedule": lambda w: _appointment_subject(w, "reschedule"),
    "cancel": lambda w: _appointment_subject(w, "cancel"),
}
SUCCESS = {"reschedule": 201}


@dataclass
class World:
    clinic: object
    practitioner: object
    api: object
    other: object
    slots: itertools.count

    def next_start(self) -> str:
        """A half-hour of Dr Ada's no other subject of the test uses: Monday 9 March on, 09:00-17:30 UTC (London on
        GMT), Sundays skipped."""
        n = next(self.slots)
        day, half_hours = divmod(n, 18)
        when = datetime(2026, 3, 9, 9, tzinfo=UTC) + timedelta(days=day + day // 6, minutes=30 * half_hours)
        assert when.weekday() != 6
        return when.isoformat()


@pytest.fixture
def w(clinic, practitioner, api):
    other = http(new_api_client(clinic, name="dec6r-other-platform")[1])
    return World(clinic, practitioner, api, other, itertools.count())


def _etag(client, path: str) -> str:
    return _ok(client.get(path))["ETag"]


def _refused_412(response, path: str) -> dict:
    body = problem(response, 412, "record_changed")
    assert body["type"].startswith("urn:clinic-api:problem:") and body["title"]
    assert body["instance"] == path
    return body


# --- ETag form, and the same ETag from every read of one record --------------------------------------------------


READS = ["patient", "course", "intake", "appointment"]


def _reads(w) -> dict[str, str]:
    """One record of each kind that answers an ETag; its GET path."""
    patient = PatientFactory(clinic=w.clinic, first_name="Read", last_name="Four")
    course = MedicationCourseFactory(patient=patient, drug_id="topical_retinoid", started_on=date(2025, 6, 1))
    intake = f"{API}/patients/{patient.pk}/conditions/"
    lines = [{"condition": "filler_allergy", "status": "history"}, {"condition": "psoriasis", "status": "active"}]
    _ok(w.api.put(intake, lines, format="json"))
    return {
        "patient": f"{API}/patients/{patient.pk}/",
        "course": f"{API}/patients/{patient.pk}/medications/{course.pk}/",
        "intake": intake,
        "appointment": f"{API}/appointments/{_book(w.api, patient, w.next_start())}/",
    }


@pytest.mark.parametrize("kind", READS)
def test_every_get_answers_one_strong_quoted_etag_the_same_to_every_read_and_to_head(w, clinician, kind):  # noqa: F811
    path = _reads(w)[kind]
    first = _ok(w.api.get(path))
    etag = first["ETag"]
    assert STRONG_TAG.fullmatch(etag), etag  # strong (no W/), quoted, one tag
    assert _etag(w.api, path) == etag  # read again
    assert _etag(w.other, path) == etag  # another platform
    assert _etag(session(clinician), path) == etag  # a staff session
    head = _ok(w.api.head(path))
    assert head["ETag"] == etag and head.content == b""
    if kind == "intake":  # "the same on every page of it"
        pages = [w.api.get(f"{path}?page_size=1&page={n}") for n in (1, 2)]
        assert [_ok(p).json()["results"][0]["condition"] for p in pages] == ["filler_allergy", "psoriasis"]
        assert {p["ETag"] for p in pages} == {etag}


def test_a_writes_own_answer_carries_the_etag_the_next_get_gives_and_lists_carry_none(w):
    reads = _reads(w)
    patched = _ok(w.api.patch(reads["patient"], {"last_name": "Renamed"}, format="json"))
    assert patched["ETag"] == _etag(w.api, reads["patient"])
    ended = _ok(w.api.patch(reads["course"], {"ended_on": "2025-09-01"}, format="json"))
    assert ended["ETag"] == _etag(w.api, reads["course"])
    put = _ok(w.api.put(reads["intake"], [{"condition": "eczema", "status": "history"}], format="json"))
    assert put["ETag"] == _etag(w.api, reads["intake"])
    # A move's 201 carries none (docs/api.md: GET the appointment for the next one); a cancel's 200 none either.
    moved = _ok(w.api.post(f"{reads['appointment']}reschedule/", {"start": w.next_start()}, format="json"), 201)
    assert "ETag" not in moved
    cancelled = _ok(w.api.post(f"{reads['appointment']}cancel/", {}, format="json"))
    assert "ETag" not in cancelled
    # Lists: no tag a platform could mistake for a record's version.
    patient_id = reads["patient"].split("/")[-2]
    for path in ("/patients/", f"/patients/{patient_id}/medications/", "/appointments/"):
        assert "ETag" not in _ok(w.api.get(f"{API}{path}")), path


# --- What moves an ETag, and what does not -------------------------------------------------------------------------


def test_background_work_and_other_records_changes_leave_each_etag_and_each_change_moves_only_its_own(
    w, care_texts, message_outboxes
):
    """Reminders sent, a desk note, a save that changes nothing, a re-check that finds the same reasons: no ETag
    moves. A patient's PATCH, a course's end, an intake line, a move: each moves its own ETag and no other. A patient's
    muted topics (stored, not shown) move the patient's ETag ("every field it stores, whether or not the answer shows
    it")."""
    patient = PatientFactory(clinic=w.clinic, first_name="Churn", last_name="Patient", reminder_channels=["email"])
    course = MedicationCourseFactory(patient=patient, drug_id="topical_retinoid", started_on=date(2025, 6, 1))
    visit_id = _book(
        w.api,
        patient,
        "2026-03-10T10:00:00+00:00",
        procedure="microneedling",
        area="face",
        practitioner=str(w.practitioner.pk),
    )
    paths = {
        "patient": f"{API}/patients/{patient.pk}/",
        "course": f"{API}/patients/{patient.pk}/medications/{course.pk}/",
        "intake": f"{API}/patients/{patient.pk}/conditions/",
        "appointment": f"{API}/appointments/{visit_id}/",
    }

    def tags() -> dict[str, str]:
        return {kind: _etag(w.api, path) for kind, path in paths.items()}

    def moved(before: dict, after: dict) -> set[str]:
        return {kind for kind in before if before[kind] != after[kind]}

    start = tags()
    reminders_before = _ok(w.api.get(paths["appointment"])).json()["reminders"]
    dispatch_local(now=NOW)  # the confirmation goes out
    assert len(mail.outbox) >= 1
    assert _ok(w.api.get(paths["appointment"])).json()["reminders"] != reminders_before  # the body shows it sent
    appointment_notes_set(appointment=Appointment.objects.get(pk=visit_id), notes="Parking at the back")
    Patient.objects.get(pk=patient.pk).save()  # a save changing nothing but updated_at
    _ok(w.api.patch(paths["patient"], {"last_name": "Patient"}, format="json"))  # the same value again
    assert moved(start, tags()) == set()

    # Flagged: a Botox reported nine days before the visit (2 weeks needed) changes the appointment, only it.
    recorded = w.api.post(
        f"{paths['patient']}procedures/",
        {"procedure": "botox", "performed_at": "2026-03-01T10:00:00+00:00", "area": "face"},
        format="json",
    )
    _ok(recorded, 201)
    flagged = tags()
    assert moved(start, flagged) == {"appointment"}
    assert _ok(w.api.get(paths["appointment"])).json()["status"] == "needs_review"

    # Each record change re-checks the visit, which finds the same reasons: only the changed record's ETag moves.
    steps = [
        (
            "intake",
            lambda: w.api.put(paths["intake"], [{"condition": "filler_allergy", "status": "history"}], format="json"),
        ),
        ("course", lambda: w.api.patch(paths["course"], {"ended_on": "2025-08-01"}, format="json")),
        ("patient", lambda: w.api.patch(paths["patient"], {"first_name": "Churned"}, format="json")),
    ]
    before = flagged
    for kind, change in steps:
        _ok(change())
        after = tags()
        assert moved(before, after) == {kind}, kind
        before = after
    assert _ok(w.api.get(paths["appointment"])).json()["status"] == "needs_review"

    # Stored and not shown: the patient's own muted topics move the patient's ETag, the body stays the same.
    shown = _ok(w.api.get(paths["patient"])).json()
    patient_preferences_update(patient=Patient.objects.get(pk=patient.pk), now=NOW, muted_topics=["care"])
    after = tags()
    assert moved(before, after) == {"patient"}
    assert _ok(w.api.get(paths["patient"])).json() == shown
    before = after

    # The intake's ETag is the lines as a set: the same lines in another order are the same version.
    two = [{"condition": "psoriasis", "status": "history"}, {"condition": "filler_allergy", "status": "history"}]
    _ok(w.api.put(paths["intake"], two, format="json"))
    reordered = _etag(w.api, paths["intake"])
    _ok(w.api.put(paths["intake"], list(reversed(two)), format="json"))
    assert _etag(w.api, paths["intake"]) == reordered

    # A move moves the appointment's ETag (and releases the flag), nothing else.
    before = tags()
    _ok(w.api.post(f"{paths['appointment']}reschedule/", {"start": "2026-03-25T10:00:00+00:00"}, format="json"), 201)
    assert moved(before, tags()) == {"appointment"}
    assert OutboxMessage.objects.filter(appointment_id=visit_id).exists()


# --- If-Match forms on every write -----------------------------------------------------------------------------


@pytest.mark.parametrize("write", list(WRITES))
def test_if_match_forms_are_one_contract_on_every_write(w, write):
    """The current tag, `*`, a list holding it: the change is made. A weak tag of the current version (strong
    comparison), a stale tag, a tag it never had: 412 record_changed, problem+json, nothing changed."""
    success = SUCCESS.get(write, 200)
    for form in ("current", "star", "list", "absent"):
        subject = WRITES[write](w)
        etag = _etag(w.api, subject.read)
        header = {"current": etag, "star": "*", "list": f'"nope", {etag} , W/"x"', "absent": None}[form]
        before = subject.stored()
        response = subject.send(w.api, **({"HTTP_IF_MATCH": header} if header is not None else {}))
        assert response.status_code == success, (form, response.status_code, response.content[:400])
        assert subject.stored() != before, form
    for form in ("weak", "stale", "never"):
        subject = WRITES[write](w)
        etag = _etag(w.api, subject.read)
        if form == "stale":
            subject.other()
        header = {"weak": f"W/{etag}", "stale": etag, "never": NEVER}[form]
        before = subject.stored()
        _refused_412(subject.send(w.api, HTTP_IF_MATCH=header), subject.write)
        assert subject.stored() == before, form


MALFORMED = {"unquoted": "abc", "empty": "", "unterminated": '"abc', "weak-unquoted": "W/abc", "no-comma": '"a" "b"'}


@pytest.mark.parametrize("write", list(WRITES))
def test_a_malformed_if_match_is_never_a_500_and_changes_nothing(w, write):
    subject = WRITES[write](w)
    for name, header in MALFORMED.items():
        before = subject.stored()
        response = subject.send(w.api, HTTP_IF_MATCH=header)
        assert 400 <= response.status_code < 500, (name, response.status_code, response.content[:300])
        problem(response, response.status_code)
        assert subject.stored() == before, name


@pytest.mark.parametrize("write", list(WRITES))
def test_a_malformed_if_match_is_a_400_naming_the_header(w, write):
    subject = WRITES[write](w)
    answers = {header: subject.send(w.api, HTTP_IF_MATCH=header) for header in ("abc", "")}
    assert {header: r.status_code for header, r in answers.items()} == {"abc": 400, "": 400}
    for response in answers.values():
        assert "If-Match" in json.dumps(response.json().get("errors", {})), response.json()
        assert response.json()["code"] == "invalid_if_match"  # docs/api.md's table of the API's own codes


# --- Which comes first: a bad body, a status that forbids it, or a stale tag ------------------------------------------


def test_a_bad_body_is_a_400_before_a_stale_if_match_on_the_record_writes_and_a_cancelled_visit_stays_409(w):
    """api/views.py and clinic.services: "bad input is a 400 first, whatever the If-Match"; docs/api.md: "A cancel of
    an appointment already cancelled stays the 409 not_cancellable it always was" (its tag stale by then)."""
    stale = {}
    for write in ("patient-patch", "course-patch", "intake-put"):
        subject = WRITES[write](w)
        stale[write] = (subject, _etag(w.api, subject.read))
        subject.other()
    patient, etag = stale["patient-patch"]
    bad = w.api.patch(patient.write, {"date_of_birth": "2099-01-01"}, format="json", HTTP_IF_MATCH=etag)
    problem(bad, 400, "birth_date_in_future")
    course, etag = stale["course-patch"]
    problem(w.api.patch(course.write, {"ended_on": "2025-01-01"}, format="json", HTTP_IF_MATCH=etag), 400)
    intake, etag = stale["intake-put"]
    bad = w.api.put(
        intake.write, [{"condition": "no_such_thing", "status": "active"}], format="json", HTTP_IF_MATCH=etag
    )
    problem(bad, 400, "unknown_condition")

    visit = WRITES["cancel"](w)
    etag = _etag(w.api, visit.read)
    _ok(visit.send(w.api))  # cancelled without a condition: the tag read before is stale now
    problem(visit.send(w.api, HTTP_IF_MATCH=etag), 409, "not_cancellable")


def test_a_move_to_the_past_with_a_stale_if_match_is_the_400_as_on_the_other_writes(w):
    visit = WRITES["reschedule"](w)
    etag = _etag(w.api, visit.read)
    visit.other()
    past = w.api.post(visit.write, {"start": "2026-03-01T10:00:00+00:00"}, format="json", HTTP_IF_MATCH=etag)
    problem(past, 400, "start_in_past")


# --- If-Match with Idempotency-Key ----------------------------------------------------------------------------------


@pytest.mark.parametrize("write", ["reschedule", "cancel"])
def test_a_key_replays_its_answer_with_the_same_if_match_and_is_a_422_with_another(w, write):
    success = SUCCESS.get(write, 200)
    subject = WRITES[write](w)
    etag = _etag(w.api, subject.read)
    first = subject.send(w.api, HTTP_IF_MATCH=etag, HTTP_IDEMPOTENCY_KEY=f"dec6r-{write}-1")
    _ok(first, success)
    # The replay: the same request sent again (send() would make another body for a move: send the first one's).
    body = {"start": first.json()["start"]} if write == "reschedule" else {}
    again = w.api.post(subject.write, body, format="json", HTTP_IF_MATCH=etag, HTTP_IDEMPOTENCY_KEY=f"dec6r-{write}-1")
    assert again.status_code == success and again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    for other in (NEVER, None):
        headers = {"HTTP_IF_MATCH": other} if other else {}
        reused = w.api.post(subject.write, body, format="json", HTTP_IDEMPOTENCY_KEY=f"dec6r-{write}-1", **headers)
        problem(reused, 422, "idempotency_key_reused")

    # A 412 is kept under its key too: sent again as it was, the same 412; with the fresh tag, a 422 (a new key).
    subject = WRITES[write](w)
    stale = _etag(w.api, subject.read)
    subject.other()
    body = {"start": w.next_start()} if write == "reschedule" else {}
    refused = w.api.post(subject.write, body, format="json", HTTP_IF_MATCH=stale, HTTP_IDEMPOTENCY_KEY="dec6r-412")
    _refused_412(refused, subject.write)
    replayed = w.api.post(subject.write, body, format="json", HTTP_IF_MATCH=stale, HTTP_IDEMPOTENCY_KEY="dec6r-412")
    assert replayed.status_code == 412 and replayed.content == refused.content
    assert replayed["Idempotent-Replayed"] == "true"
    fresh = _etag(w.api, subject.read)
    problem(
        w.api.post(subject.write, body, format="json", HTTP_IF_MATCH=fresh, HTTP_IDEMPOTENCY_KEY="dec6r-412"),
        422,
        "idempotency_key_reused",
    )
    new_key = w.api.post(subject.write, body, format="json", HTTP_IF_MATCH=fresh, HTTP_IDEMPOTENCY_KEY="dec6r-412b")
    _ok(new_key, success)


# --- If-None-Match, and If-Match where a write does not take it ----------------------------------------------------


@pytest.mark.parametrize("kind", READS)
def test_if_none_match_is_ignored_harmlessly(w, kind):
    path = _reads(w)[kind]
    plain = _ok(w.api.get(path))
    for header in (plain["ETag"], "*", '"other"'):
        conditional = _ok(w.api.get(path, HTTP_IF_NONE_MATCH=header))
        assert conditional.content == plain.content and conditional["ETag"] == plain["ETag"]


@pytest.fixture
def started(patient, practitioner):
    """A confirmed visit that began an hour ago (written directly), which a clinician may complete."""
    return AppointmentFactory(
        patient=patient, practitioner=practitioner, start_at=datetime(2026, 3, 2, 8, tzinfo=UTC), status="confirmed"
    )


def test_if_match_sent_to_complete_is_not_ignored(clinical_api, started):
    response = clinical_api.post(f"{API}/appointments/{started.pk}/complete/", {}, format="json", HTTP_IF_MATCH=NEVER)
    assert response.status_code in (400, 412), response.status_code
    assert Appointment.objects.get(pk=started.pk).status == AppointmentStatus.CONFIRMED


# --- The schema documents what the server does ---------------------------------------------------------------------


def _schema(client) -> dict[str, dict]:
    schema = json.loads(_ok(client.get("/api/v1/schema/?format=json")).content)
    return {
        operation["operationId"]: operation
        for methods in schema["paths"].values()
        for method, operation in methods.items()
        if isinstance(operation, dict) and "operationId" in operation
    }


def test_the_schema_documents_exactly_the_etags_if_match_and_412s_the_server_uses(client, w, clinical_api, started):
    """From the server's answers: which answers carry an ETag, and which writes evaluate If-Match (a tag the record
    never had is a 412). The schema must say the same: an ETag header on those answers and no other, an If-Match
    parameter and a 412 problem document on those writes and no other."""
    reads = _reads(w)
    patient_id = reads["patient"].split("/")[-2]
    runtime_etag: dict[tuple[str, str], bool] = {}
    for op, path in [
        ("patients_retrieve", reads["patient"]),
        ("patients_medications_retrieve", reads["course"]),
        ("patients_conditions_list", reads["intake"]),
        ("appointments_retrieve", reads["appointment"]),
        ("patients_list", f"{API}/patients/"),
        ("patients_medications_list", f"{API}/patients/{patient_id}/medications/"),
        ("patients_procedures_list", f"{API}/patients/{patient_id}/procedures/"),
        ("appointments_list", f"{API}/appointments/"),
    ]:
        runtime_etag[(op, "200")] = "ETag" in _ok(w.api.get(path))

    evaluates: dict[str, bool] = {}
    for op, write in [
        ("patients_update", "patient-patch"),
        ("patients_medications_end", "course-patch"),
        ("patients_conditions_replace", "intake-put"),
        ("appointments_reschedule", "reschedule"),
        ("appointments_cancel_create", "cancel"),
    ]:
        subject = WRITES[write](w)
        evaluates[op] = subject.send(w.api, HTTP_IF_MATCH=NEVER).status_code == 412
        answer = subject.send(w.api)
        status = str(SUCCESS.get(write, 200))
        _ok(answer, int(status))
        runtime_etag[(op, status)] = "ETag" in answer
    recorded = w.api.post(
        f"{reads['patient']}procedures/",
        {"procedure": "botox", "performed_at": "2025-01-06T10:00:00+00:00"},
        format="json",
        HTTP_IF_MATCH=NEVER,
    )
    evaluates["patients_procedures_create"] = recorded.status_code == 412
    runtime_etag[("patients_procedures_create", "201")] = "ETag" in _ok(recorded, 201)
    completed = clinical_api.post(f"{API}/appointments/{started.pk}/complete/", {}, format="json", HTTP_IF_MATCH=NEVER)
    evaluates["appointments_complete_create"] = completed.status_code == 412
    missed = clinical_api.post(f"{API}/appointments/{started.pk}/no-show/", {}, format="json", HTTP_IF_MATCH=NEVER)
    evaluates["appointments_no_show_create"] = missed.status_code == 412
    held = AppointmentFactory(
        patient=started.patient,
        practitioner=started.practitioner,
        start_at=datetime(2026, 3, 20, 10, tzinfo=UTC),
        status="pending_clearance",
    )
    cleared = clinical_api.post(
        f"{API}/appointments/{held.pk}/clear/", {"reason": "Seen"}, format="json", HTTP_IF_MATCH=NEVER
    )
    evaluates["appointments_clear_create"] = cleared.status_code == 412

    by_id = _schema(client)
    documented_etag = {
        (op, status): "ETag" in by_id[op]["responses"][status].get("headers", {}) for op, status in runtime_etag
    }
    assert documented_etag == runtime_etag
    for op, status in runtime_etag:
        if runtime_etag[(op, status)]:
            header = by_id[op]["responses"][status]["headers"]["ETag"]
            assert header["required"] is True and header["schema"]["type"] == "string", op
    documented_if_match = {
        op: any(p["name"] == "If-Match" and p["in"] == "header" for p in by_id[op].get("parameters", []))
        for op in evaluates
    }
    documented_412 = {op: "412" in by_id[op]["responses"] for op in evaluates}
    assert documented_if_match == evaluates
    assert documented_412 == evaluates
    for op in (op for op, yes in evaluates.items() if yes):
        refused = by_id[op]["responses"]["412"]
        assert "application/problem+json" in refused["content"] and "record_changed" in refused["description"], op
    # Every operation of the schema that says If-Match is one of the writes found to evaluate it.
    assert {op for op, o in by_id.items() if any(p["name"] == "If-Match" for p in o.get("parameters", []))} == {
        op for op, yes in evaluates.items() if yes
    }


def test_the_appointments_etag_header_names_both_writes_that_take_it(client):
    header = _schema(client)["appointments_retrieve"]["responses"]["200"]["headers"]["ETag"]
    assert "cancel" in header["description"], header["description"]
