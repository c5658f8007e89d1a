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


# --- Closing a visit from the list (a clinician's buttons, back to Today) -----------------------------------------


def test_a_clinician_marks_a_visit_completed_from_the_list_and_comes_back_to_today(
    clinical, clinic, patient, practitioner, frozen
):
    over = book(patient, practitioner, "botox", frozen - timedelta(days=1, hours=2))
    assert "Mark completed" in listed(clinical, clinic) and "No-show" in listed(clinical, clinic)

    response = clinical.post(url("complete", clinic, over), {"back": "today"}, follow=True)
    assert response.redirect_chain == [(url("today", clinic), 302)]
    page = squash(response)
    # The visit closed is named (it has gone from the list), then what completing did.
    assert "Olivia Bennett, Botox (1 Mar, 07:00). Marked completed: added to the patient&#x27;s history" in page
    over.refresh_from_db()
    assert over.status == AppointmentStatus.COMPLETED
    assert over.audit_events.filter(action="completed").count() == 1
    assert listed(clinical, clinic) == ""


def test_a_clinician_marks_a_no_show_from_the_list(clinical, clinic, patient, practitioner, frozen):
    over = book(patient, practitioner, "botox", frozen - timedelta(hours=3))
    response = clinical.post(url("no_show", clinic, over), {"back": "today"})
    assert response.status_code == 302 and response["Location"] == url("today", clinic)
    over.refresh_from_db()
    assert over.status == AppointmentStatus.NO_SHOW
    assert "Marked as a no-show." in squash(clinical.get(url("today", clinic)))


def test_a_receptionist_sees_no_buttons_and_is_refused_the_action(reception, clinic, patient, practitioner, frozen):
    over = book(patient, practitioner, "botox", frozen - timedelta(days=1))
    assert "Olivia Bennett" in listed(reception, clinic)
    assert "Mark completed" not in listed(reception, clinic)
    assert reception.post(url("complete", clinic, over), {"back": "today"}).status_code == 403
    assert reception.post(url("no_show", clinic, over), {"back": "today"}).status_code == 403
    over.refresh_from_db()
    assert over.status == AppointmentStatus.CONFIRMED


@pytest.mark.parametrize("back", ["https://elsewhere.example/", "//elsewhere.example", "schedule", ""])
def test_no_other_place_is_taken_from_the_form(clinical, clinic, patient, practitioner, frozen, back):
    over = book(patient, practitioner, "botox", frozen - timedelta(days=1))
    response = clinical.post(url("complete", clinic, over), {"back": back})
    assert response.status_code == 302 and response["Location"] == url("appointment", clinic, over)


def test_a_visit_someone_closed_meanwhile_is_refused_with_why_and_left_as_it_was(
    clinical, clinic, patient, practitioner, frozen
):
    """The list was drawn, then a colleague marked the visit a no-show: Completed from the stale list is refused on
    the visit's page, saying why, and the no-show stands (no aftercare is started)."""
    over = book(patient, practitioner, "botox", frozen - timedelta(days=1))
    appointment_mark_no_show(appointment=over, actor=Actor("dr", clinical=True), now=frozen)
    response = clinical.post(url("complete", clinic, over), {"back": "today"})
    assert response.status_code in (400, 409)
    assert "no-show" in squash(response).lower()
    over.refresh_from_db()
    assert over.status == AppointmentStatus.NO_SHOW
    assert over.audit_events.filter(action="completed").count() == 0


def test_another_clinics_visit_cannot_be_closed_from_here(clinical, clinic, other_patient, other_practitioner, frozen):
    theirs = book(other_patient, other_practitioner, "botox", frozen - timedelta(days=1))
    assert clinical.post(url("complete", clinic, theirs), {"back": "today"}).status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == AppointmentStatus.CONFIRMED
