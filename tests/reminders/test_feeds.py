"""Private calendar feeds: a practitioner's and a patient's appointments, read back with `icalendar`.

Given a London clinic (GMT until 29 March, BST after), bookings are made, moved and cancelled;
the feed keeps one UID per appointment, raises SEQUENCE with each change, marks cancellations,
carries the VTIMEZONE, and a revoked or unknown link is a 404.
"""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.test import Client
from icalendar import Calendar

from clinic.models import StaffMembership, StaffRole
from reminders.content import ics_uid
from reminders.feeds import calendar_feed_create, calendar_feed_revoke
from reminders.models import CalendarFeed
from scheduler.booking import appointment_cancel, appointment_reschedule
from tests.factories import PatientFactory, PractitionerFactory
from tests.reminders.conftest import RECEPTION, book, london

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _clock():
    with time_machine.travel(NOW, tick=False):
        yield


def fetch(token: str):
    return Client().get(f"/reminders/calendar/{token}.ics")


def events(response) -> dict:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/calendar; charset=utf-8"
    calendar = Calendar.from_ical(response.content)
    return calendar, {str(e["uid"]): e for e in calendar.walk("VEVENT")}


def test_a_practitioners_feed_follows_every_change_in_place(practitioner, patient):
    first = book(patient, "botox", london(2026, 3, 10), NOW)
    second = book(PatientFactory(clinic=practitioner.clinic), "botox", london(2026, 4, 7, 11), NOW)
    elsewhere = book(
        patient, "botox", london(2026, 3, 20), NOW, practitioner_id=PractitionerFactory(clinic=practitioner.clinic).pk
    )
    _, token = calendar_feed_create(now=NOW, practitioner=practitioner, created_by="admin")

    calendar, found = events(fetch(token))
    assert set(found) == {ics_uid(first), ics_uid(second)}  # not another practitioner's
    assert ics_uid(elsewhere) not in found
    event = found[ics_uid(first)]
    assert event["sequence"] == 0 and str(event["status"]) == "CONFIRMED"
    assert event.decoded("dtstart") == london(2026, 3, 10)
    assert str(event["dtstart"].params["TZID"]) == "Europe/London"
    assert [str(tz["tzid"]) for tz in calendar.walk("VTIMEZONE")] == ["Europe/London"]
    assert "Change or cancel" not in str(event["description"])  # the patient's own link stays out of it

    appointment_reschedule(appointment=first, start_at=london(2026, 3, 11), actor=RECEPTION, now=NOW)
    event = events(fetch(token))[1][ics_uid(first)]
    assert event["sequence"] == 1 and event.decoded("dtstart") == london(2026, 3, 11)

    appointment_cancel(appointment=first, actor=RECEPTION, now=NOW)
    event = events(fetch(token))[1][ics_uid(first)]
    assert event["sequence"] == 2 and str(event["status"]) == "CANCELLED"
    # After the clocks change, the April booking is at 11:00 BST (10:00 UTC) in the same zone.
    april = events(fetch(token))[1][ics_uid(second)]
    assert april.decoded("dtstart").astimezone(UTC) == datetime(2026, 4, 7, 10, 0, tzinfo=UTC)


def test_a_patients_feed_shows_only_their_appointments_and_not_their_page_link(practitioner, patient):
    """The page link (it can cancel the visit and ask for a new feed) goes to the patient only, never in a feed that
    any calendar it is shared with reads (tests/qa/test_review_dec6w_calendar_feeds.py)."""
    mine = book(patient, "botox", london(2026, 3, 10), NOW)
    book(PatientFactory(clinic=practitioner.clinic), "botox", london(2026, 3, 10, 12), NOW)
    _, token = calendar_feed_create(now=NOW, patient=patient)
    calendar, found = events(fetch(token))
    assert set(found) == {ics_uid(mine)}
    description = str(found[ics_uid(mine)]["description"])
    assert "Botox" in description and "Change or cancel" not in description and "/my/" not in description
    assert str(calendar["x-wr-calname"]) == "My appointments"


def test_a_booking_awaiting_clearance_is_tentative(practitioner, patient):
    from tests.factories import PatientConditionFactory

    PatientConditionFactory(patient=patient, condition_id="eczema", status="history")
    held = book(patient, "microneedling", london(2026, 3, 10), NOW)
    assert held.status == "pending_clearance"
    _, token = calendar_feed_create(now=NOW, practitioner=practitioner)
    assert str(events(fetch(token))[1][ics_uid(held)]["status"]) == "TENTATIVE"


def test_a_revoked_or_unknown_feed_is_a_404(practitioner, patient):
    feed, token = calendar_feed_create(now=NOW, practitioner=practitioner)
    assert fetch(token).status_code == 200
    assert calendar_feed_revoke(feeds=CalendarFeed.objects.filter(pk=feed.pk), now=NOW) == 1
    assert fetch(token).status_code == 404
    for bad in ("x", token[:-1] + ("A" if token[-1] != "A" else "B"), "a" * 300):
        assert fetch(bad).status_code == 404
    assert Client().post(f"/reminders/calendar/{token}.ics").status_code == 405


def test_only_the_tokens_hash_is_stored_and_tokens_are_unguessable(practitioner):
    feed, token = calendar_feed_create(now=NOW, practitioner=practitioner)
    other, other_token = calendar_feed_create(now=NOW, practitioner=practitioner)
    assert len(token) >= 43 and token != other_token
    assert token not in feed.token_hash and len(feed.token_hash) == 64


def test_a_feed_belongs_to_exactly_one_owner(practitioner, patient):
    with pytest.raises(ValueError):
        calendar_feed_create(now=NOW)
    with pytest.raises(ValueError):
        calendar_feed_create(now=NOW, practitioner=practitioner, patient=patient)


def test_staff_make_and_revoke_a_practitioners_feed_in_the_admin(practitioner, patient):
    admin_user = get_user_model().objects.create_user("clinicadmin", password="pw-for-tests-only", is_staff=True)
    StaffMembership.objects.create(user=admin_user, clinic=practitioner.clinic, role=StaffRole.CLINIC_ADMIN)
    from django.contrib.auth.models import Permission

    admin_user.user_permissions.add(*Permission.objects.filter(codename__endswith="calendarfeed"))
    client = Client()
    client.force_login(admin_user)
    response = client.post(
        "/admin/reminders/calendarfeed/add/", {"practitioner": practitioner.pk, "patient": ""}, follow=True
    )
    assert response.status_code == 200
    feed = CalendarFeed.objects.get()
    assert feed.practitioner == practitioner and feed.created_by == "clinicadmin"
    page = response.content.decode()
    link = page.split("<code>", 1)[1].split("</code>", 1)[0]
    token = link.rsplit("/", 1)[1].removesuffix(".ics")
    assert link.startswith("https://clinic.example/reminders/calendar/")
    assert fetch(token).status_code == 200

    response = client.post(
        "/admin/reminders/calendarfeed/", {"action": "revoke", "_selected_action": [feed.pk]}, follow=True
    )
    assert response.status_code == 200
    assert fetch(token).status_code == 404


def test_a_feed_leaves_out_what_is_long_past(practitioner, patient):
    old = book(patient, "botox", london(2026, 3, 3), NOW)
    _, token = calendar_feed_create(now=NOW, practitioner=practitioner)
    with time_machine.travel(NOW + timedelta(days=120), tick=False):
        assert ics_uid(old) not in events(fetch(token))[1]


def test_a_feed_costs_the_same_queries_however_many_appointments_it_holds(
    practitioner, patient, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _, token = calendar_feed_create(now=NOW, practitioner=practitioner, created_by="admin")
    moved = book(patient, "botox", london(2026, 3, 10), NOW)
    appointment_reschedule(appointment=moved, start_at=london(2026, 3, 11), actor=RECEPTION, now=NOW)
    with CaptureQueriesContext(connection) as one:
        assert events(fetch(token))[1][ics_uid(moved)]["sequence"] == 1
    for day in (12, 13, 16, 17, 18, 19, 20):
        book(PatientFactory(clinic=practitioner.clinic), "botox", london(2026, 3, day), NOW)

    with django_assert_max_num_queries(len(one.captured_queries)):
        _, found = events(fetch(token))
    assert len(found) == 8 and found[ics_uid(moved)]["sequence"] == 1  # each SEQUENCE read with its event
