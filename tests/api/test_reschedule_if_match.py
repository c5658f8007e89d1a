"""A platform's move made from an appointment it read is refused once someone else moved it (docs/api.md, "Changing
safely"): `GET /api/v1/appointments/{id}/` answers an ETag, the reschedule takes it in If-Match and answers 412
`record_changed` with nothing moved when the appointment is no longer that version; compared under the move's locks
(scheduler.booking.appointment_reschedule `made_from`), so two platforms moving one visit at once are told apart.
The same move sent again is no conflict whatever its If-Match.
"""

from __future__ import annotations

import pytest

from clinic.models import Appointment, AuditAction, AuditEvent
from reminders.models import OutboxMessage
from scheduler.booking import Actor, appointment_reschedule
from tests.api.conftest import http, new_api_client, problem_of
from tests.api.helpers import book

pytestmark = pytest.mark.django_db

WEDNESDAY_14 = "2026-03-04T14:00:00+00:00"
THURSDAY_14 = "2026-03-05T14:00:00+00:00"


def _moves(appointment_id) -> int:
    return AuditEvent.objects.filter(appointment_id=appointment_id, action=AuditAction.RESCHEDULED).count()


def _move(api, appointment_id, start, etag=None, **headers):
    if etag is not None:
        headers["HTTP_IF_MATCH"] = etag
    return api.post(f"/api/v1/appointments/{appointment_id}/reschedule/", {"start": start}, format="json", **headers)


def test_a_move_made_from_the_appointment_as_read_goes_through(api, patient, practitioner):
    created = book(api, patient).json()
    read = api.get(f"/api/v1/appointments/{created['id']}/")
    etag = read["ETag"]
    assert etag.startswith('"') and len(etag) > 2
    moved = _move(api, created["id"], WEDNESDAY_14, etag)
    assert moved.status_code == 201, moved.content
    assert moved.json()["start"] == WEDNESDAY_14
    # The appointment is another version now: the old tag no longer names it.
    assert api.get(f"/api/v1/appointments/{created['id']}/")["ETag"] != etag


def test_a_move_made_from_before_someone_else_moved_it_is_412_and_moves_nothing(api, patient, practitioner):
    created = book(api, patient).json()
    etag = api.get(f"/api/v1/appointments/{created['id']}/")["ETag"]
    appointment = Appointment.objects.get(pk=created["id"])
    appointment_reschedule(
        appointment=appointment,
        start_at=appointment.start_at.replace(hour=15),
        actor=Actor("the desk"),
        now=appointment.created_at,
    )
    appointment.refresh_from_db()
    due_before = sorted(OutboxMessage.objects.filter(appointment_id=created["id"]).values_list("id", "due_at"))
    body = problem_of(_move(api, created["id"], THURSDAY_14, etag), 412)
    assert body["code"] == "record_changed"
    assert Appointment.objects.get(pk=created["id"]).start_at == appointment.start_at
    assert _moves(created["id"]) == 1
    assert sorted(OutboxMessage.objects.filter(appointment_id=created["id"]).values_list("id", "due_at")) == due_before
    # Read again, the same move goes through.
    fresh = api.get(f"/api/v1/appointments/{created['id']}/")["ETag"]
    assert _move(api, created["id"], THURSDAY_14, fresh).status_code == 201
    assert _moves(created["id"]) == 2


def test_the_same_move_sent_again_is_no_conflict_and_a_weak_tag_matches_nothing(api, patient, practitioner):
    created = book(api, patient).json()
    etag = api.get(f"/api/v1/appointments/{created['id']}/")["ETag"]
    assert _move(api, created["id"], WEDNESDAY_14, etag).status_code == 201
    again = _move(api, created["id"], WEDNESDAY_14, etag)  # its answer was lost; sent again without a key
    assert again.status_code == 201 and again.json()["start"] == WEDNESDAY_14
    assert _moves(created["id"]) == 1
    now_tag = api.get(f"/api/v1/appointments/{created['id']}/")["ETag"]
    assert problem_of(_move(api, created["id"], THURSDAY_14, f"W/{now_tag}"), 412)["code"] == "record_changed"
    assert _move(api, created["id"], THURSDAY_14, f'"older", {now_tag}').status_code == 201  # any of a list
    assert _move(api, created["id"], WEDNESDAY_14, "*").status_code == 201  # no condition
    assert _moves(created["id"]) == 3


def test_a_refused_move_keyed_replays_its_412(api, patient, practitioner):
    created = book(api, patient).json()
    stale = '"not-a-version-of-it"'
    first = _move(api, created["id"], WEDNESDAY_14, stale, HTTP_IDEMPOTENCY_KEY="move-1")
    second = _move(api, created["id"], WEDNESDAY_14, stale, HTTP_IDEMPOTENCY_KEY="move-1")
    assert problem_of(first, 412)["code"] == problem_of(second, 412)["code"] == "record_changed"
    assert _moves(created["id"]) == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_platforms_moving_one_visit_from_the_same_reading_one_moves_and_the_other_is_412(
    clinic, patient, practitioner
):
    from tests.races import race

    platform_a = http(new_api_client(clinic, name="platform-a")[1])
    platform_b = http(new_api_client(clinic, name="platform-b")[1])
    created = book(platform_a, patient).json()
    etag = platform_a.get(f"/api/v1/appointments/{created['id']}/")["ETag"]
    answers = race(
        lambda: _move(platform_a, created["id"], WEDNESDAY_14, etag),
        lambda: _move(platform_b, created["id"], THURSDAY_14, etag),
    )
    assert sorted(getattr(answer, "status_code", repr(answer)) for answer in answers) == [201, 412]
    [winner] = [answer for answer in answers if answer.status_code == 201]
    assert Appointment.objects.get(pk=created["id"]).start_at.isoformat() == winner.json()["start"]
    assert _moves(created["id"]) == 1


def test_a_cancel_made_from_before_someone_moved_it_is_412_and_cancels_nothing(api, patient, practitioner):
    """docs/api.md "Changing safely": the cancel takes If-Match too; made from the reading before the desk's move,
    nothing is cancelled; read again, it cancels; without If-Match, as before."""
    created = book(api, patient).json()
    etag = api.get(f"/api/v1/appointments/{created['id']}/")["ETag"]
    appointment = Appointment.objects.get(pk=created["id"])
    appointment_reschedule(
        appointment=appointment,
        start_at=appointment.start_at.replace(hour=15),
        actor=Actor("the desk"),
        now=appointment.created_at,
    )
    cancel = f"/api/v1/appointments/{created['id']}/cancel/"
    refused = api.post(cancel, {"reason": "Patient asked"}, format="json", HTTP_IF_MATCH=etag)
    assert problem_of(refused, 412)["code"] == "record_changed"
    assert Appointment.objects.get(pk=created["id"]).status == "confirmed"
    assert not AuditEvent.objects.filter(appointment_id=created["id"], action=AuditAction.CANCELLED).exists()
    fresh = api.get(f"/api/v1/appointments/{created['id']}/")["ETag"]
    done = api.post(cancel, {"reason": "Patient asked"}, format="json", HTTP_IF_MATCH=fresh)
    assert done.status_code == 200 and done.json()["status"] == "cancelled"
    # Already cancelled: the 409 it always was, whatever the If-Match.
    assert problem_of(api.post(cancel, {}, format="json", HTTP_IF_MATCH=fresh), 409)["code"] == "not_cancellable"


def test_a_cancel_without_if_match_is_not_checked(api, patient, practitioner):
    created = book(api, patient).json()
    appointment = Appointment.objects.get(pk=created["id"])
    appointment_reschedule(
        appointment=appointment,
        start_at=appointment.start_at.replace(hour=15),
        actor=Actor("d"),
        now=appointment.created_at,
    )
    done = api.post(f"/api/v1/appointments/{created['id']}/cancel/", {}, format="json")
    assert done.status_code == 200 and done.json()["status"] == "cancelled"
