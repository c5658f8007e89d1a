"""The calendar (frontdesk/views/calendar.py): the day grid, its JSON feed's scope and ranges, booking from a cell."""

import pytest

from clinic.models import AppointmentStatus, TimeOff
from tests import shipped
from tests.factories import PatientFactory, PractitionerFactory
from tests.frontdesk.conftest import at_london, book, make_staff, url
from tests.frontdesk.html import squash

pytestmark = pytest.mark.django_db


@pytest.fixture
def day(patient, practitioner, second_practitioner, frozen):
    other = PatientFactory(clinic=patient.clinic, first_name="Grace", last_name="Turner")
    TimeOff.objects.create(
        practitioner=second_practitioner,
        start_at=at_london(2026, 3, 2, 14),
        end_at=at_london(2026, 3, 2, 16),
        reason="Training",
    )
    return [
        book(patient, practitioner, "botox", at_london(2026, 3, 2, 11)),
        book(
            other,
            second_practitioner,
            "microneedling",
            at_london(2026, 3, 2, 10),
            status=AppointmentStatus.PENDING_CLEARANCE,
        ),
    ]


def test_the_day_grid_has_a_column_per_practitioner_and_quarter_hour_rows(reception, clinic, day):
    response = reception.get(url("calendar", clinic), {"date": "2026-03-02"})
    page = squash(response)

    assert response.status_code == 200
    assert '<th scope="col" class="cal-head">Dr Amelia Hart</th>' in page
    assert '<th scope="col" class="cal-head">Priya Shah</th>' in page
    assert "All times are clinic time, <strong>Europe/London</strong>" in page
    assert "11:00–11:30" in page  # local time; botox lasts 30 minutes, so two quarter-hour rows
    assert 'rowspan="2" class="cal-cell cal-cell--appt"' in page
    assert "Training" in page  # time off is shown
    assert "cal-cell--working" in page  # working hours are shaded apart from the rest
    assert 'id="now-line"' in page  # 09:00 on the frozen Monday


def test_the_grid_is_in_clinic_time_in_summer(reception, clinic, patient, practitioner, frozen):
    book(patient, practitioner, "botox", at_london(2026, 7, 1, 14))  # 13:00 UTC
    page = squash(reception.get(url("calendar", clinic), {"date": "2026-07-01"}))
    assert "14:00–14:30" in page
    assert 'id="now-line"' not in page  # not today


def test_an_empty_cell_links_to_booking_that_time_with_that_practitioner(reception, clinic, practitioner, frozen):
    page = squash(reception.get(url("calendar", clinic), {"date": "2026-03-03"}))
    assert (
        f"/clinic/london/calendar/book/?practitioner={practitioner.pk}&amp;start_at=2026-03-03T10%3A00%3A00%2B00%3A00"
    ) in page


def test_booking_from_a_cell_finds_the_patient_and_prefills_the_booking_page(
    reception, clinic, practitioner, patient, frozen
):
    response = reception.get(
        url("calendar_book", clinic),
        {"practitioner": practitioner.pk, "start_at": "2026-03-03T10:00:00+00:00", "q": patient.last_name},
    )
    page = squash(response)

    assert "Book Tue 3 Mar 2026 at 10:00 with Dr Amelia Hart" in page
    assert (
        f"/clinic/london/patients/{patient.pk}/book/?practitioner={practitioner.pk}&amp;date=2026-03-03"
        f'&amp;time=10%3A00"'
    ) in page


def test_booking_from_a_cell_ignores_another_clinics_practitioner(reception, clinic, other_practitioner, frozen):
    response = reception.get(
        url("calendar_book", clinic), {"practitioner": other_practitioner.pk, "start_at": "2026-03-03T10:00:00+00:00"}
    )
    assert response.status_code == 200
    assert "Dr Maya Chen" not in squash(response)


def test_the_feed_lists_appointments_and_practitioners_in_clinic_time(reception, clinic, day):
    response = reception.get(url("calendar_events", clinic), {"start": "2026-03-02", "end": "2026-03-03"})

    assert response.status_code == 200
    body = response.json()
    assert body["timeZone"] == "Europe/London"
    assert [r["title"] for r in body["resources"]] == ["Dr Amelia Hart", "Priya Shah"]
    assert [(e["start"], e["status"]) for e in body["events"]] == [
        ("2026-03-02T10:00:00+00:00", "pending_clearance"),
        ("2026-03-02T11:00:00+00:00", "confirmed"),
    ]


def test_the_feed_of_another_clinic_is_404(clinic, other_clinic, day, client):
    make_staff(other_clinic, "receptionist", "nyc-desk")
    client.login(username="nyc-desk", password="correct-horse-battery-42")

    response = client.get(url("calendar_events", clinic), {"start": "2026-03-02", "end": "2026-03-03"})

    assert response.status_code == 404
    assert b"Olivia" not in response.content


def test_the_feed_needs_sign_in(client, clinic, frozen):
    response = client.get(url("calendar_events", clinic), {"start": "2026-03-02", "end": "2026-03-03"})
    assert response.status_code == 302


@pytest.mark.parametrize(
    ("start", "end", "detail"),
    [
        ("", "2026-03-03", "start and end must be ISO dates"),
        ("yesterday", "2026-03-03", "start and end must be ISO dates"),
        ("2026-02-30", "2026-03-03", "start and end must be ISO dates"),
        ("2026-03-02T09:00:00", "2026-03-03", "start and end must be ISO dates"),  # no offset: ambiguous
        ("2026-03-03", "2026-03-02", "end must be after start"),
        ("2026-03-02", "2026-03-02", "end must be after start"),
        ("2026-01-01", "2026-12-31", "at most 42 days"),
        ("99999-01-01", "2026-03-03", "start and end must be ISO dates"),
        ("2026-03-03", "9999-12-31", "start and end must be ISO dates"),  # its next midnight overflows
    ],
)
def test_a_malformed_range_is_a_clear_400(reception, clinic, frozen, start, end, detail):
    response = reception.get(url("calendar_events", clinic), {"start": start, "end": end})

    assert response.status_code == 400
    assert response.json()["title"] == "Bad date range"
    assert detail in response.json()["detail"]


def test_the_feed_takes_instants_with_an_offset(reception, clinic, day):
    response = reception.get(
        url("calendar_events", clinic), {"start": "2026-03-02T10:30:00+00:00", "end": "2026-03-02T12:00:00Z"}
    )
    assert [e["status"] for e in response.json()["events"]] == ["pending_clearance", "confirmed"]


def test_an_unknown_date_on_the_grid_falls_back_to_today(reception, clinic, frozen):
    response = reception.get(url("calendar", clinic), {"date": "not-a-date"})
    assert response.status_code == 200
    assert "Monday 2 March 2026" in squash(response)


def test_ten_practitioners_get_eight_colours_in_turn(reception, clinic, patient, frozen):
    practitioners = [PractitionerFactory(clinic=clinic, name=f"P{n:02d}") for n in range(10)]
    book(patient, practitioners[9], "botox", at_london(2026, 3, 2, 12))
    page = squash(reception.get(url("calendar", clinic), {"date": "2026-03-02"}))
    assert page.count('<th scope="col" class="cal-head">') == 10
    assert "appt--confirmed cal-p1" in page  # the tenth practitioner wraps round to the second colour


def test_the_day_sheet_lists_each_practitioners_day_with_national_phone_numbers(reception, clinic, day, patient):
    patient.phone = "+447911123456"
    patient.save()
    page = squash(reception.get(url("day_sheet", clinic), {"date": "2026-03-02"}))

    assert page.index("Dr Amelia Hart · Monday 2 March 2026") < page.index("Priya Shah · Monday 2 March 2026")
    assert "07911 123456" in page
    assert "Botox" in page or "Botulinum" in page


def test_the_day_sheet_of_one_practitioner(reception, clinic, day, practitioner):
    page = squash(reception.get(url("day_sheet", clinic), {"date": "2026-03-02", "practitioner": practitioner.pk}))
    assert "Dr Amelia Hart · Monday 2 March 2026" in page and "Priya Shah · Monday" not in page


def test_another_clinics_day_sheet_is_404(clinic, other_clinic, day, client):
    make_staff(other_clinic, "receptionist", "nyc-desk")
    client.login(username="nyc-desk", password="correct-horse-battery-42")
    assert client.get(url("day_sheet", clinic), {"date": "2026-03-02"}).status_code == 404


@pytest.fixture
def completed_microneedling(patient, practitioner, frozen):
    shipped.care_texts()  # the sourced post-care texts, as seeded in every clinic
    return book(
        patient,
        practitioner,
        "microneedling",
        at_london(2026, 2, 27, 10),
        status=AppointmentStatus.COMPLETED,
        completed_at=at_london(2026, 2, 27, 11),
        area_id="face",
    )


def test_the_aftercare_sheet_has_the_post_care_texts_and_the_next_possible_dates(
    reception, clinic, completed_microneedling
):
    response = reception.get(url("aftercare", clinic, completed_microneedling))
    page = squash(response)

    assert response.status_code == 200
    assert "Do not wash your face for at least 5 hours, ideally 12." in page
    assert "Unsubscribe" not in page  # the e-mail footer is not printed
    assert "When you can have your next treatments" in page
    assert "Botulinum toxin injection (Botox)" in page  # a procedure with a rule after microneedling


def test_the_appointment_page_links_a_completed_treatment_to_its_aftercare_sheet(
    reception, clinic, completed_microneedling
):
    page = squash(reception.get(url("appointment", clinic, completed_microneedling)))
    assert f"/clinic/london/appointments/{completed_microneedling.pk}/aftercare/" in page


def test_a_treatment_not_yet_done_has_no_aftercare_sheet(reception, clinic, day):
    assert reception.get(url("aftercare", clinic, day[0])).status_code == 404


def test_another_clinics_aftercare_sheet_is_404(clinic, other_clinic, completed_microneedling, client):
    make_staff(other_clinic, "receptionist", "nyc-desk")
    client.login(username="nyc-desk", password="correct-horse-battery-42")
    assert client.get(url("aftercare", clinic, completed_microneedling)).status_code == 404


def test_the_week_of_one_practitioner_has_a_column_per_day(reception, clinic, day, practitioner, patient):
    book(patient, practitioner, "filler", at_london(2026, 3, 4, 9, 30))  # Wednesday
    response = reception.get(
        url("calendar", clinic), {"date": "2026-03-04", "view": "week", "practitioner": practitioner.pk}
    )
    page = squash(response)

    assert "Dr Amelia Hart, week of 2 March 2026" in page
    headings = ["Mon 2 Mar", "Tue 3 Mar", "Wed 4 Mar", "Thu 5 Mar", "Fri 6 Mar", "Sat 7 Mar", "Sun 8 Mar"]
    assert [h in page for h in headings] == [True] * 7
    assert "09:30–10:15" in page and "11:00–11:30" in page  # Wednesday's filler and Monday's botox
    assert "Grace Turner" not in page  # Priya Shah's patient
    # Sunday is not a working day: still bookable, and a screen reader hears why it is not shaded.
    assert "Book Sun 8 Mar 09:00 with Dr Amelia Hart, outside working hours</span>" in page
    assert "Book Wed 4 Mar 11:00 with Dr Amelia Hart</span>" in page


def test_the_week_without_a_practitioner_is_the_first_ones(reception, clinic, day):
    page = squash(reception.get(url("calendar", clinic), {"date": "2026-03-02", "view": "week"}))
    assert "Dr Amelia Hart, week of 2 March 2026" in page
