"""A merge tells the platforms which bookings changed hands: each active appointment of the merged record, now the
survivor's, is audited (`patient_merged`) and sent as `appointment.patient_merged` with `previous.patient` (the old
record), before the joined record's re-check, whose moves come as later events (docs/reminders.md, webhooks). The
clock is Monday 2 March 2026, 09:00 London (tests/api/conftest.py)."""

from datetime import UTC, datetime

import pytest

from clinic.models import AppointmentStatus, AuditAction, AuditEvent, PatientCondition
from reminders.models import MessageKind, OutboxMessage
from scheduler import booking
from scheduler.lifecycle import EVENTS, Actor
from tests.api.conftest import http, new_api_client
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

ACTOR = Actor(label="test")
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def survivor(clinic):
    return PatientFactory(clinic=clinic, first_name="Olivia", last_name="Bennett")


@pytest.fixture
def duplicate(clinic):
    return PatientFactory(clinic=clinic, first_name="Olivia", last_name="Benett")


def _book(patient, when, procedure="botox", **extra):
    return booking.appointment_book(
        patient=patient, procedure_code=procedure, start_at=when, actor=ACTOR, now=NOW, **extra
    ).appointment


def _listen(api, events=None):
    body = {"url": "https://platform.example/hooks", **({"events": events} if events is not None else {})}
    response = api.post("/api/v1/webhooks/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def _events(event=None):
    rows = OutboxMessage.objects.filter(kind=MessageKind.WEBHOOK).order_by("created_at", "payload__sequence")
    return [row.payload for row in rows if event is None or row.event == event]


def test_each_active_booking_of_the_merged_record_is_announced_with_the_old_record(
    api, clinical_api, survivor, duplicate, practitioner
):
    later = _book(duplicate, datetime(2026, 3, 12, 10, tzinfo=UTC))
    sooner = _book(duplicate, datetime(2026, 3, 10, 10, tzinfo=UTC))
    gone = _book(duplicate, datetime(2026, 3, 11, 10, tzinfo=UTC))
    booking.appointment_cancel(appointment=gone, actor=ACTOR, now=NOW)
    own = _book(survivor, datetime(2026, 3, 9, 10, tzinfo=UTC))
    _listen(api, ["appointment.patient_merged"])

    response = clinical_api.post(f"/api/v1/patients/{duplicate.pk}/merge/", {"into": str(survivor.pk)}, format="json")
    assert response.status_code == 200, response.content

    announced = _events("appointment.patient_merged")
    assert [e["data"]["appointment"]["id"] for e in announced] == [str(sooner.pk), str(later.pk)]  # start order
    for event in announced:
        assert event["type"] == "appointment.patient_merged"
        assert event["data"]["appointment"]["patient"] == str(survivor.pk)
        assert event["data"]["previous"] == {"patient": str(duplicate.pk)}
        assert event["data"]["appointment"]["status"] == AppointmentStatus.CONFIRMED
        assert event["sequence"] == 2  # booked, then moved to the survivor
    trail = AuditEvent.objects.filter(action=AuditAction.PATIENT_MERGED)
    assert sorted(str(a.appointment_id) for a in trail) == sorted([str(sooner.pk), str(later.pk)])
    assert {(a.details["merged"], a.details["into"]) for a in trail} == {(str(duplicate.pk), str(survivor.pk))}
    assert {a.actor_label for a in trail} == {"API client clinical-platform"}
    # Neither the cancelled booking nor the survivor's own is said to have changed hands.
    assert not AuditEvent.objects.filter(action=AuditAction.PATIENT_MERGED, appointment__in=[gone, own]).exists()


def test_the_merge_leaves_the_moved_bookings_messages_as_they_were(clinical_api, survivor, duplicate, practitioner):
    visit = _book(duplicate, datetime(2026, 3, 10, 10, tzinfo=UTC))
    before = sorted(OutboxMessage.objects.filter(appointment=visit).values_list("pk", "status", "due_at"))
    clinical_api.post(f"/api/v1/patients/{duplicate.pk}/merge/", {"into": str(survivor.pk)}, format="json")
    after = sorted(
        OutboxMessage.objects.filter(appointment=visit)
        .exclude(kind=MessageKind.WEBHOOK)
        .values_list("pk", "status", "due_at")
    )
    assert after == before


def test_a_booking_the_merge_makes_unsafe_is_announced_moved_then_flagged(
    api, clinical_api, survivor, duplicate, practitioner
):
    # The survivor's intake holds scleroderma: an absolute contraindication to microneedling (domain brief 3).
    PatientCondition.objects.create(patient=survivor, condition_id="scleroderma", status="history")
    visit = _book(duplicate, datetime(2026, 3, 10, 10, tzinfo=UTC), procedure="microneedling", area_code="face")
    _listen(api)  # every event
    clinical_api.post(f"/api/v1/patients/{duplicate.pk}/merge/", {"into": str(survivor.pk)}, format="json")
    about_it = [e for e in _events() if e["data"]["appointment"]["id"] == str(visit.pk)]
    assert [(e["type"], e["sequence"]) for e in about_it] == [
        ("appointment.patient_merged", 2),
        ("appointment.needs_review", 3),
    ]
    assert about_it[0]["data"]["appointment"]["status"] == AppointmentStatus.CONFIRMED  # frozen when it happened


def test_the_event_can_be_subscribed_to_and_reaches_only_platforms_of_the_clinic(
    api, clinical_api, survivor, duplicate, practitioner, other_clinic
):
    assert "appointment.patient_merged" in EVENTS
    _listen(api, ["appointment.patient_merged"])
    elsewhere = http(new_api_client(other_clinic, name="elsewhere")[1])
    _listen(elsewhere)
    _book(duplicate, datetime(2026, 3, 10, 10, tzinfo=UTC))
    clinical_api.post(f"/api/v1/patients/{duplicate.pk}/merge/", {"into": str(survivor.pk)}, format="json")
    rows = OutboxMessage.objects.filter(kind=MessageKind.WEBHOOK, event="appointment.patient_merged")
    assert [row.endpoint.client.name for row in rows.select_related("endpoint__client")] == ["platform-1"]


def test_a_merge_with_no_active_booking_announces_nothing(api, clinical_api, survivor, duplicate):
    _listen(api)
    clinical_api.post(f"/api/v1/patients/{duplicate.pk}/merge/", {"into": str(survivor.pk)}, format="json")
    assert not OutboxMessage.objects.filter(kind=MessageKind.WEBHOOK).exists()
    assert not AuditEvent.objects.filter(action=AuditAction.PATIENT_MERGED).exists()
