"""Today lists the visits that are over and that nobody closed ("Visits with no outcome yet").

The patient's aftercare starts when a clinician marks the treatment completed (domain brief 4: post-care is
anchored to completion), so a visit left `confirmed` after its end sends no aftercare at all. The desk sees the
confirmed visits of the last 90 days whose end has passed, oldest first, until each is completed or marked a
no-show; not those under way, still to come, cancelled, completed, missed, waiting for clearance or review (listed
elsewhere), older than 90 days, or another clinic's. At most 50 are listed, in one statement.
"""

from datetime import timedelta

import pytest
import time_machine

from clinic.models import AppointmentStatus
from scheduler.booking import Actor, appointment_complete, appointment_mark_no_show
from tests.frontdesk.conftest import book, url
from tests.frontdesk.html import squash

pytestmark = pytest.mark.django_db

HEADING = "Visits with no outcome yet"


def listed(client, clinic) -> str:
    page = squash(client.get(url("today", clinic)))
    if HEADING not in page:
        return ""
    return page.split(HEADING, 1)[1].split("These visits of the last 90 days", 1)[0]


def test_a_visit_over_and_not_closed_is_listed_until_it_is_completed(reception, clinic, patient, practitioner, frozen):
    over = book(patient, practitioner, "botox", frozen - timedelta(days=1, hours=2))
    assert "Olivia Bennett" in listed(reception, clinic)
    assert "Sun 1 Mar, 07:00" in listed(reception, clinic)

    appointment_complete(appointment=over, actor=Actor("dr", clinical=True), now=frozen)
    assert listed(reception, clinic) == ""


def test_a_no_show_closes_it_too(reception, clinic, patient, practitioner, frozen):
    over = book(patient, practitioner, "botox", frozen - timedelta(hours=3))
    assert "Olivia Bennett" in listed(reception, clinic)
    appointment_mark_no_show(appointment=over, actor=Actor("dr", clinical=True), now=frozen)
    assert listed(reception, clinic) == ""


@pytest.mark.parametrize(
    "start, status",
    [
        (timedelta(minutes=-10), AppointmentStatus.CONFIRMED),  # under way: its end is still to come
        (timedelta(hours=2), AppointmentStatus.CONFIRMED),  # still to come
        (timedelta(days=-1), AppointmentStatus.CANCELLED),
        (timedelta(days=-1), AppointmentStatus.COMPLETED),
        (timedelta(days=-1), AppointmentStatus.NO_SHOW),
        (timedelta(days=-1), AppointmentStatus.PENDING_CLEARANCE),  # in "Waiting for clearance"
        (timedelta(days=-1), AppointmentStatus.NEEDS_REVIEW),  # in "Needs attention"
        (timedelta(days=-91), AppointmentStatus.CONFIRMED),  # older than 90 days
    ],
)
def test_what_is_not_listed(reception, clinic, patient, practitioner, frozen, start, status):
    book(patient, practitioner, "botox", frozen + start, status=status)
    assert listed(reception, clinic) == ""


def test_a_visit_ending_this_minute_is_listed_and_one_of_ninety_days_ago_too(
    reception, clinic, patient, practitioner, frozen
):
    ends_now = book(patient, practitioner, "botox", frozen - timedelta(minutes=30))  # Botox: 30 minutes
    assert ends_now.end_at == frozen
    book(patient, practitioner, "botox", frozen - timedelta(days=90))
    page = listed(reception, clinic)
    assert page.count("Olivia Bennett") == 2
    assert page.index("Tue 2 Dec") < page.index("Mon 2 Mar")  # oldest first


def test_another_clinics_visits_are_not_listed(reception, clinic, other_patient, other_practitioner, frozen):
    book(other_patient, other_practitioner, "botox", frozen - timedelta(days=1))
    assert listed(reception, clinic) == ""


def test_the_list_stops_at_fifty_and_says_there_are_more(
    reception, clinic, patient, practitioner, frozen, django_assert_max_num_queries
):
    for n in range(52):
        book(patient, practitioner, "botox", frozen - timedelta(days=13) + timedelta(hours=n * 2))
    with time_machine.travel(frozen + timedelta(days=1), tick=False):
        page = listed(reception, clinic)
    assert page.count("Olivia Bennett") == 50
    assert "50+" in page and "The oldest 50 are shown" in page


def test_the_list_costs_one_statement_whatever_its_length(
    reception, clinic, patient, practitioner, frozen, django_assert_max_num_queries
):
    book(patient, practitioner, "botox", frozen - timedelta(days=1))
    reception.get(url("today", clinic))  # sessions and caches warmed
    with django_assert_max_num_queries(40) as few:
        reception.get(url("today", clinic))
    for n in range(20):
        book(patient, practitioner, "botox", frozen - timedelta(days=12) + timedelta(hours=n * 3))
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert listed(reception, clinic).count("Olivia Bennett") == 21
