"""Each appointment read carries its `sequence`, the change count its webhook events carry (docs/api.md, Lists; docs/
reminders.md): a platform that applied a read can tell whether an event arriving after it is older (a `sequence` no
higher) or newer, whatever order the two reach it in. Probe dec8c found reads could not be ordered against events.

The booking's own answer, the appointment's read, the list and each status change's answer say the same count as
the last event about the appointment; a list reads it with its rows (one statement whatever the page holds)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from api.serializers import AppointmentOut
from clinic.models import Appointment
from reminders.models import OutboxMessage
from scheduler.booking import appointment_cancel
from scheduler.lifecycle import Actor
from tests.api.helpers import book
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db
API = "/api/v1"


def last_event_sequence(appointment_id) -> int:
    rows = OutboxMessage.objects.filter(channel="webhook", appointment_id=appointment_id)
    return max(row.payload["sequence"] for row in rows)


def test_every_answer_about_an_appointment_carries_the_sequence_of_its_last_event(api, patient, practitioner):
    assert api.post(f"{API}/webhooks/", {"url": "https://platform.example/hooks"}, format="json").status_code == 201
    created = book(api, patient, start="2026-03-03T10:00:00+00:00")
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    assert created.json()["sequence"] == last_event_sequence(pk) == 1
    assert api.get(f"{API}/appointments/{pk}/").json()["sequence"] == 1

    moved = api.post(f"{API}/appointments/{pk}/reschedule/", {"start": "2026-03-03T11:00:00+00:00"}, format="json")
    assert moved.status_code == 201, moved.content
    assert moved.json()["sequence"] == last_event_sequence(pk) == 2

    cancelled = api.post(f"{API}/appointments/{pk}/cancel/", {}, format="json")
    assert cancelled.status_code == 200, cancelled.content
    assert cancelled.json()["sequence"] == last_event_sequence(pk) == 3
    assert api.get(f"{API}/appointments/{pk}/").json()["sequence"] == 3
    [listed] = [row for row in api.get(f"{API}/appointments/").json()["results"] if row["id"] == pk]
    assert listed["sequence"] == 3


def test_a_list_reads_every_sequence_in_its_one_statement(
    api, clinic, patient, practitioner, django_assert_max_num_queries
):
    assert book(api, patient, start="2026-03-03T10:00:00+00:00").status_code == 201
    api.get(f"{API}/appointments/")  # warm: the caller's scope cached
    with CaptureQueriesContext(connection) as one:
        api.get(f"{API}/appointments/")
    statements = len(one)  # counted now: each request empties the connection's log
    for hour in (11, 12, 13, 14):
        made = book(api, PatientFactory(clinic=clinic), start=f"2026-03-03T{hour}:00:00+00:00")
        assert made.status_code == 201, made.content
    cancelled = api.get(f"{API}/appointments/").json()["results"][-1]["id"]
    assert api.post(f"{API}/appointments/{cancelled}/cancel/", {}, format="json").status_code == 200

    with django_assert_max_num_queries(statements):
        listed = api.get(f"{API}/appointments/").json()["results"]
    assert [row["sequence"] for row in listed] == [1, 1, 1, 1, 2]


def test_a_changes_answer_shows_the_count_taken_under_its_locks(api, patient, practitioner, django_assert_num_queries):
    """Counted after the commit, a change committed meanwhile (a re-check flagging the visit) would raise the count
    past the state the answer shows, and the platform would drop the event that follows as older. Where an endpoint
    listens, the change counts under its locks (for its event) and the answer shows that count, reading nothing
    after the commit."""
    assert api.post(f"{API}/webhooks/", {"url": "https://platform.example/hooks"}, format="json").status_code == 201
    appointment = Appointment.objects.get(pk=book(api, patient, start="2026-03-03T10:00:00+00:00").json()["id"])

    changed = appointment_cancel(appointment=appointment, actor=Actor("desk@test"), now=timezone.now())

    with django_assert_num_queries(0):
        assert AppointmentOut(changed).data["sequence"] == 2
    assert last_event_sequence(appointment.pk) == 2


def test_an_appointments_read_takes_its_state_and_count_in_one_statement(api, patient, practitioner):
    """Counted in a statement of its own, a change committed between the two statements would show a count past the
    state shown."""
    pk = book(api, patient, start="2026-03-03T10:00:00+00:00").json()["id"]

    with CaptureQueriesContext(connection) as read:
        assert api.get(f"{API}/appointments/{pk}/").json()["sequence"] == 1
    appointment_reads = [q["sql"] for q in read.captured_queries if 'FROM "clinic_appointment"' in q["sql"]]
    counts = [sql for sql in read.captured_queries if sql["sql"].startswith("SELECT COUNT(*)")]
    assert len(appointment_reads) == 1 and "clinic_auditevent" in appointment_reads[0], appointment_reads
    assert counts == []
