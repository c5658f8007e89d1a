"""The working day at the desk: checking a patient in (frontdesk/views/appointments.py) and notes on a visit."""

import pytest

from clinic.models import AuditAction
from tests.frontdesk.conftest import at_london, book, make_staff, url
from tests.frontdesk.html import squash

pytestmark = pytest.mark.django_db


@pytest.fixture
def todays(patient, practitioner, frozen):
    return book(patient, practitioner, "botox", at_london(2026, 3, 2, 11))


def test_checking_in_from_today_records_the_arrival(reception, clinic, todays, frozen):
    today = squash(reception.get(url("today", clinic)))
    assert f'action="/clinic/london/appointments/{todays.pk}/check-in/"' in today

    response = reception.post(url("check_in", clinic, todays))

    assert response.status_code == 302
    todays.refresh_from_db()
    assert todays.checked_in_at == frozen
    assert todays.audit_events.filter(action=AuditAction.CHECKED_IN).count() == 1
    page = squash(reception.get(url("today", clinic)))
    assert "Arrived 09:00" in page  # 09:00 UTC is 09:00 in London in March
    assert "Checked in at 09:00" in squash(reception.get(url("appointment", clinic, todays)))
    assert "Arrived 09:00" in squash(reception.get(url("calendar", clinic), {"date": "2026-03-02"}))


def test_checking_in_twice_is_refused_with_the_reason(reception, clinic, todays):
    reception.post(url("check_in", clinic, todays))
    response = reception.post(url("check_in", clinic, todays))
    assert response.status_code == 409
    assert "The patient is already checked in." in squash(response)


def test_another_day_has_no_check_in_button_and_the_service_refuses_it(
    reception, clinic, patient, practitioner, frozen
):
    tomorrow = book(patient, practitioner, "botox", at_london(2026, 3, 3, 11))
    assert "Arrived: check in" not in squash(reception.get(url("appointment", clinic, tomorrow)))
    response = reception.post(url("check_in", clinic, tomorrow))
    assert response.status_code == 409
    assert "only on the day of the appointment" in squash(response)


def test_check_in_is_post_only_and_scoped(clinic, other_clinic, reception, todays, client):
    assert reception.get(url("check_in", clinic, todays)).status_code == 405
    make_staff(other_clinic, "receptionist", "nyc-desk")
    client.login(username="nyc-desk", password="correct-horse-battery-42")
    assert client.post(url("check_in", clinic, todays)).status_code == 404
    todays.refresh_from_db()
    assert todays.checked_in_at is None


def test_notes_on_a_visit_are_saved_and_shown_on_the_calendar_and_the_day_sheet(reception, clinic, todays):
    response = reception.post(url("notes", clinic, todays), {"notes": "  Needs an interpreter (Polish)  "})

    assert response.status_code == 302
    todays.refresh_from_db()
    assert todays.notes == "Needs an interpreter (Polish)"
    assert "Needs an interpreter (Polish)" in squash(reception.get(url("calendar", clinic), {"date": "2026-03-02"}))
    assert "Needs an interpreter (Polish)" in squash(reception.get(url("day_sheet", clinic), {"date": "2026-03-02"}))


def test_notes_too_long_are_an_error_beside_the_field(reception, clinic, todays):
    response = reception.post(url("notes", clinic, todays), {"notes": "x" * 2001})
    assert response.status_code == 400
    assert "at most 2000 characters" in squash(response)
    todays.refresh_from_db()
    assert todays.notes == ""
