"""Booking from a cell in place (the calendar's dialog) and moving in place: the fragments each step answers
with `HX-Request`, the page each answers without it (no JavaScript), and their scope.

`now` is Monday 2 March 2026 09:00 London (GMT); practitioners work Mon-Sat 09:00-18:00.
"""

import pytest
from django.contrib.messages import get_messages

from clinic.models import Appointment, Patient
from tests.factories import PatientFactory
from tests.frontdesk.conftest import at_london, book, make_staff, url
from tests.frontdesk.helpers import west, west_desk, west_practitioner  # noqa: F401 (fixtures)
from tests.frontdesk.html import squash

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
CELL = "2026-03-03T10:00:00+00:00"


def cell(practitioner, start_at: str = CELL) -> dict:
    return {"practitioner": practitioner.pk, "start_at": start_at}


def test_the_find_step_in_place_is_a_fragment_that_keeps_the_cell(reception, clinic, practitioner, patient, frozen):
    response = reception.get(url("calendar_book", clinic), {**cell(practitioner), "q": "Bennett"}, **HTMX)
    page = squash(response)

    assert response.status_code == 200 and "<html" not in page
    assert "Tue 3 Mar 2026 at 10:00 with Dr Amelia Hart" in page
    # The patient leads to the booking step in place, and (without JavaScript) to the booking page.
    assert (
        f'data-in-place="/clinic/london/calendar/book/{patient.pk}/?practitioner={practitioner.pk}'
        '&amp;start_at=2026-03-03T10%3A00%3A00%2B00%3A00"'
    ) in page
    assert f'href="/clinic/london/patients/{patient.pk}/book/?practitioner={practitioner.pk}' in page
    assert "register a new patient" in page


def test_the_booking_step_in_place_is_the_booking_form_for_the_cell(reception, clinic, practitioner, patient, frozen):
    response = reception.get(url("calendar_book_patient", clinic, patient), cell(practitioner), **HTMX)
    page = squash(response)

    assert response.status_code == 200 and "<html" not in page
    assert "<strong>Olivia Bennett</strong>" in page
    assert f'<option value="{practitioner.pk}" selected>' in page
    assert 'name="date" value="2026-03-03"' in page and 'name="time" value="10:00"' in page
    # The live check is the booking page's own view; in a dialog the address stays the calendar's.
    assert f'hx-get="/clinic/london/patients/{patient.pk}/book/"' in page
    assert "hx-replace-url" not in page
    assert "Choose a procedure to see when it is possible" in page


def test_the_booking_step_without_javascript_is_the_booking_page(reception, clinic, practitioner, patient, frozen):
    response = reception.get(url("calendar_book_patient", clinic, patient), cell(practitioner))

    assert response.status_code == 302
    assert response["Location"] == (
        f"/clinic/london/patients/{patient.pk}/book/?practitioner={practitioner.pk}&date=2026-03-03&time=10%3A00"
    )


def test_booking_in_place_answers_done_without_a_redirect(reception, clinic, practitioner, patient, frozen):
    response = reception.post(
        url("book_submit", clinic, patient),
        {"procedure": "botox", "practitioner": practitioner.pk, "start_at": CELL},
        **HTMX,
    )
    page = squash(response)
    booked = Appointment.objects.get()

    assert response.status_code == 200 and "<html" not in page
    assert f'data-done="{booked.pk}"' in page and 'data-date="2026-03-03"' in page
    assert "Booked and confirmed: Botulinum toxin injection (Botox) on Tue 3 Mar 2026, 10:00" in page
    assert list(get_messages(response.wsgi_request)) == []  # said in place, not again on the next page
    assert (booked.practitioner, booked.start_at) == (practitioner, at_london(2026, 3, 3, 10))


def test_a_refused_booking_in_place_shows_why_in_the_dialog(
    reception, clinic, practitioner, patient, botox_five_days_ago, frozen
):
    response = reception.post(
        url("book_submit", clinic, patient),
        {"procedure": "microneedling", "practitioner": practitioner.pk, "start_at": CELL},
        **HTMX,
    )
    page = squash(response)

    assert response.status_code == 409 and "<html" not in page
    assert "Not booked." in page and "must be at least 2 weeks after Botulinum toxin injection" in page
    assert 'Earliest eligible start: <strong class="earliest__date">Wed 11 Mar 2026</strong>' in page
    assert "<strong>Olivia Bennett</strong>" in page  # the dialog's booking step, not the page
    assert not Appointment.objects.exists()


def test_a_move_in_place_answers_done_and_a_refused_one_the_panel(
    reception, clinic, practitioner, second_practitioner, patient, botox_five_days_ago, frozen
):
    grace = PatientFactory(clinic=clinic, first_name="Grace", last_name="Turner")
    moved = book(grace, practitioner, "botox", at_london(2026, 3, 4, 10))
    needling = book(patient, practitioner, "microneedling", at_london(2026, 3, 12, 10), area_id="face")

    allowed = reception.post(
        url("reschedule", clinic, moved), {"practitioner": second_practitioner.pk, "start_at": CELL}, **HTMX
    )
    refused = reception.post(url("reschedule", clinic, needling), {"start_at": "2026-03-05T10:00:00+00:00"}, **HTMX)

    assert allowed.status_code == 200 and f'data-done="{moved.pk}"' in squash(allowed)
    assert "Moved to Tue 3 Mar 2026, 10:00 with Priya Shah." in squash(allowed)
    assert refused.status_code == 409 and "<html" not in squash(refused)
    assert "Not moved." in squash(refused) and "Wed 11 Mar 2026" in squash(refused)
    moved.refresh_from_db()
    needling.refresh_from_db()
    assert (moved.practitioner, moved.start_at) == (second_practitioner, at_london(2026, 3, 3, 10))
    assert needling.start_at == at_london(2026, 3, 12, 10)


def test_registering_in_place_adds_the_patient_then_offers_booking_them_there(reception, clinic, practitioner, frozen):
    form = reception.get(url("calendar_register", clinic), cell(practitioner), **HTMX)
    response = reception.post(
        url("calendar_register", clinic)
        + f"?practitioner={practitioner.pk}&start_at=2026-03-03T10%3A00%3A00%2B00%3A00",
        {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "phone": "07911 123456",
            "email": "ada@example.com",
            "reminder_channels": "email",
        },
        **HTMX,
    )
    page = squash(response)
    ada = Patient.objects.get(last_name="Lovelace")

    assert form.status_code == 200 and "<html" not in squash(form) and "Add patient, then book" in squash(form)
    assert response.status_code == 200 and "<html" not in page
    assert "Ada Lovelace added." in page
    assert f'hx-get="/clinic/london/patients/{ada.pk}/book/"' in page
    assert 'name="date" value="2026-03-03"' in page and 'name="time" value="10:00"' in page
    assert (ada.clinic, ada.phone) == (clinic, "+447911123456")


def test_registering_with_a_mistake_shows_it_and_adds_nobody(reception, clinic, practitioner, frozen):
    response = reception.post(
        url("calendar_register", clinic), {"first_name": "Ada", "last_name": "", "phone": "not a phone"}, **HTMX
    )
    page = squash(response)

    assert response.status_code == 200 and "<html" not in page
    assert 'aria-invalid="true"' in page
    assert not Patient.objects.filter(first_name="Ada").exists()


def test_registering_without_javascript_goes_on_to_the_booking_page(reception, clinic, practitioner, frozen):
    page = squash(reception.get(url("calendar_register", clinic), cell(practitioner)))
    response = reception.post(
        url("calendar_register", clinic)
        + f"?practitioner={practitioner.pk}&start_at=2026-03-03T10%3A00%3A00%2B00%3A00",
        {"first_name": "Ada", "last_name": "Lovelace"},
    )
    ada = Patient.objects.get(last_name="Lovelace")

    assert "<html" in page and "Book Tue 3 Mar 2026 at 10:00 with Dr Amelia Hart" in page
    assert response.status_code == 302
    assert response["Location"] == (
        f"/clinic/london/patients/{ada.pk}/book/?practitioner={practitioner.pk}&date=2026-03-03&time=10%3A00"
    )


# --- Scope: another clinic's staff get 404 at every step, and nothing is written ----------------------------


@pytest.fixture
def outsider(other_clinic):
    from django.test import Client

    from clinic.models import StaffRole

    client = Client()
    client.force_login(make_staff(other_clinic, StaffRole.RECEPTIONIST, "outsider"))
    return client


def test_another_clinics_staff_cannot_book_in_place(outsider, clinic, practitioner, patient, frozen):
    steps = [
        outsider.get(url("calendar_book", clinic), {**cell(practitioner), "q": "Bennett"}, **HTMX),
        outsider.get(url("calendar_book_patient", clinic, patient), cell(practitioner), **HTMX),
        outsider.get(url("calendar_register", clinic), cell(practitioner), **HTMX),
        outsider.post(url("calendar_register", clinic), {"first_name": "Eve", "last_name": "Spy"}, **HTMX),
        outsider.get(
            url("book", clinic, patient), {"procedure": "botox", "date": "2026-03-03", "time": "10:00"}, **HTMX
        ),
        outsider.post(
            url("book_submit", clinic, patient),
            {"procedure": "botox", "practitioner": practitioner.pk, "start_at": CELL},
            **HTMX,
        ),
    ]

    assert [s.status_code for s in steps] == [404] * len(steps)
    assert all("Bennett" not in squash(s) for s in steps)
    assert not Appointment.objects.exists()
    assert not Patient.objects.filter(last_name="Spy").exists()


def test_a_patient_of_another_clinic_is_404_in_place(reception, clinic, practitioner, other_patient, frozen):
    step = reception.get(url("calendar_book_patient", clinic, other_patient), cell(practitioner), **HTMX)
    booked = reception.post(
        url("book_submit", clinic, other_patient),
        {"procedure": "botox", "practitioner": practitioner.pk, "start_at": CELL},
        **HTMX,
    )

    assert (step.status_code, booked.status_code) == (404, 404)
    assert "Nora" not in squash(step)
    assert not Appointment.objects.exists()


def test_another_clinics_staff_cannot_move_in_place(outsider, clinic, practitioner, patient, frozen):
    appointment = book(patient, practitioner, "botox", at_london(2026, 3, 4, 10))

    check = outsider.get(url("reschedule", clinic, appointment), {"date": "2026-03-03", "time": "10:00"}, **HTMX)
    move = outsider.post(url("reschedule", clinic, appointment), {"start_at": CELL}, **HTMX)

    assert (check.status_code, move.status_code) == (404, 404)
    appointment.refresh_from_db()
    assert appointment.start_at == at_london(2026, 3, 4, 10)


# --- Organisations: the grid is per site; the patients are the organisation's ---------------------------------


def test_staff_of_a_sibling_site_get_404_for_this_sites_grid_and_booking_steps(
    west_desk,  # noqa: F811
    clinic,
    practitioner,
    patient,
    frozen,
):
    steps = [
        west_desk.get(url("calendar", clinic), {"date": "2026-03-03"}),
        west_desk.get(url("calendar_events", clinic), {"start": "2026-03-02", "end": "2026-03-09"}),
        west_desk.get(url("calendar_book", clinic), {**cell(practitioner), "q": "Bennett"}, **HTMX),
        west_desk.get(url("calendar_book_patient", clinic, patient), cell(practitioner), **HTMX),
        west_desk.post(url("calendar_register", clinic), {"first_name": "Eve", "last_name": "Spy"}, **HTMX),
    ]

    assert [s.status_code for s in steps] == [404] * len(steps)
    assert not Patient.objects.filter(last_name="Spy").exists()


def test_a_patient_of_the_organisation_is_booked_in_place_at_this_site(
    west_desk,  # noqa: F811
    west,  # noqa: F811
    west_practitioner,  # noqa: F811
    practitioner,
    patient,
    frozen,
):
    found = squash(west_desk.get(url("calendar_book", west), {**cell(west_practitioner), "q": "Bennett"}, **HTMX))
    # A practitioner of the other site named in the cell is not offered here.
    step = squash(west_desk.get(url("calendar_book_patient", west, patient), cell(practitioner), **HTMX))
    booked = west_desk.post(
        url("book_submit", west, patient),
        {"procedure": "botox", "practitioner": west_practitioner.pk, "start_at": CELL},
        **HTMX,
    )

    assert f"/clinic/west/calendar/book/{patient.pk}/" in found
    assert "Dr Amelia Hart" not in step and 'name="time" value="10:00"' in step
    assert booked.status_code == 200 and "data-done" in squash(booked)
    appointment = Appointment.objects.get()
    assert (appointment.clinic, appointment.practitioner) == (west, west_practitioner)
