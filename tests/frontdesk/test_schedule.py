"""Today's arrivals and the day and week schedules: status in words as well as colour, local times."""

import pytest

from clinic.models import AppointmentStatus
from tests.factories import PatientFactory
from tests.frontdesk.conftest import at_london, book, url
from tests.frontdesk.html import field_error, squash, text_by_id

pytestmark = pytest.mark.django_db


@pytest.fixture
def day_of_appointments(patient, practitioner, second_practitioner, frozen):
    other = PatientFactory(clinic=patient.clinic, first_name="Grace", last_name="Turner")
    cancelled = PatientFactory(clinic=patient.clinic, first_name="Cass", last_name="Gone")
    return [
        book(patient, practitioner, "botox", at_london(2026, 3, 2, 11)),
        book(
            other,
            second_practitioner,
            "microneedling",
            at_london(2026, 3, 2, 10),
            status=AppointmentStatus.PENDING_CLEARANCE,
        ),
        book(cancelled, practitioner, "filler", at_london(2026, 3, 2, 15), status=AppointmentStatus.CANCELLED),
        book(patient, practitioner, "filler", at_london(2026, 3, 4, 9, 30)),
    ]


def test_today_lists_arrivals_in_order_with_status_words(reception, clinic, day_of_appointments):
    response = reception.get(url("today", clinic))
    arrivals = text_by_id(response.content, "arrivals-heading")
    page = squash(response)
    assert "Arrivals today 2" == arrivals
    assert page.index("Grace Turner") < page.index("Olivia Bennett")  # 10:00 before 11:00
    assert "Pending clearance" in page and "Confirmed" in page
    assert "Cass Gone" not in page


def test_today_lists_what_waits_for_clearance(reception, clinic, day_of_appointments):
    response = reception.get(url("today", clinic))
    assert text_by_id(response.content, "pending-heading") == "Waiting for clearance 1"


def test_a_pending_booking_stays_in_the_queue_until_resolved(reception, clinic, patient, practitioner, frozen):
    book(
        patient, practitioner, "microneedling", at_london(2026, 2, 20, 10), status=AppointmentStatus.PENDING_CLEARANCE
    )  # ten days ago, never cleared

    response = reception.get(url("today", clinic))

    assert text_by_id(response.content, "pending-heading") == "Waiting for clearance 1"


def test_day_schedule_has_a_column_per_practitioner(reception, clinic, day_of_appointments):
    page = squash(reception.get(url("schedule", clinic), {"date": "2026-03-02"}))
    assert "Dr Amelia Hart" in page and "Priya Shah" in page
    assert "11:00–11:30" in page  # local time, not UTC
    assert (
        '<span class="badge badge--pending_clearance"><span class="badge__icon" aria-hidden="true">!</span>'
        "Pending clearance</span>"
    ) in page
    assert "Cass Gone" not in page


def test_summer_times_show_in_clinic_time(reception, clinic, patient, practitioner, frozen):
    book(patient, practitioner, "botox", at_london(2026, 7, 1, 14))  # 13:00 UTC
    page = squash(reception.get(url("schedule", clinic), {"date": "2026-07-01"}))
    assert "14:00–14:30" in page


def test_cancelled_are_shown_on_request(reception, clinic, day_of_appointments):
    page = squash(reception.get(url("schedule", clinic), {"date": "2026-03-02", "cancelled": "on"}))
    assert "Cass Gone" in page and "Cancelled" in page


def test_practitioner_filter(reception, clinic, practitioner, day_of_appointments):
    page = squash(reception.get(url("schedule", clinic), {"date": "2026-03-02", "practitioner": practitioner.pk}))
    assert "Olivia Bennett" in page and "Grace Turner" not in page


def test_week_view_has_seven_days_from_monday(reception, clinic, day_of_appointments):
    page = squash(reception.get(url("schedule", clinic), {"date": "2026-03-04", "view": "week"}))
    for day in ("Mon 2 Mar", "Tue 3 Mar", "Wed 4 Mar", "Sun 8 Mar"):
        assert day in page
    assert "Week of 2 March 2026" in page
    assert "09:30–10:15" in page  # the Wednesday filler, with its practitioner named
    assert "?date=2026-03-09&amp;view=week" in page  # next week


def test_bad_filter_values_fall_back_to_today(reception, clinic, frozen):
    response = reception.get(url("schedule", clinic), {"date": "not-a-date", "view": "year"})
    assert response.status_code == 200
    assert "Monday 2 March 2026" in squash(response)


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "1899-12-31", "3000-01-01"])
@pytest.mark.parametrize("view", ["day", "week"])
def test_a_date_outside_1900_to_2999_is_a_form_error_not_a_crash(reception, clinic, frozen, day, view):
    response = reception.get(url("schedule", clinic), {"date": day, "view": view})

    assert response.status_code == 200
    assert field_error(response, "id_date") == "Out of range: years 1900 to 2999."
    assert "Monday 2 March 2026" in squash(response) or "Week of 2 March 2026" in squash(response)


def test_today_lists_bookings_a_record_change_made_unsafe_with_why(reception, clinic, patient, practitioner, frozen):
    from clinic.services import procedure_record_add

    booked = book(patient, practitioner, "microneedling", at_london(2026, 3, 4, 10))
    procedure_record_add(
        patient=patient, procedure_code="botox", performed_at=at_london(2026, 3, 1, 10), now=at_london(2026, 3, 2, 9)
    )
    booked.refresh_from_db()
    assert booked.status == AppointmentStatus.NEEDS_REVIEW

    response = reception.get(url("today", clinic))

    assert text_by_id(response.content, "attention-heading") == "Needs attention 1"
    page = squash(response)
    assert "must be at least 2 weeks after" in page and "Olivia Bennett" in page


def test_today_says_when_nothing_needs_attention(reception, clinic, day_of_appointments):
    response = reception.get(url("today", clinic))
    assert text_by_id(response.content, "attention-heading") == "Needs attention 0"
    assert "No booking needs attention." in squash(response)


def test_tight_places_show_the_procedures_short_name_with_the_full_one_in_the_tooltip(
    reception, clinic, day_of_appointments
):
    for page in (
        squash(reception.get(url("today", clinic))),
        squash(reception.get(url("schedule", clinic), {"date": "2026-03-02", "view": "week"})),
    ):
        assert 'title="Microneedling (collagen induction therapy)">Microneedling</span>' in page
