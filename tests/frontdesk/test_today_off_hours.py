"""Today lists bookings that a change of working hours left outside them ("Outside working hours").

clinic.selectors.off_working_hours is outside_working_hours (the admin's warning on saving hours) in SQL: the same
answer for the same appointments, in the clinic's zone across the clock changes, on SQLite and PostgreSQL.
"""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from clinic.models import Appointment, AppointmentStatus, WorkingHours
from clinic.selectors import off_working_hours, outside_working_hours
from tests.factories import PractitionerFactory
from tests.frontdesk.conftest import book, url
from tests.frontdesk.html import squash

pytestmark = pytest.mark.django_db

LONDON = ZoneInfo("Europe/London")


def local(y, m, d, hh, mm=0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=LONDON)


# Local starts (London) and minutes, against hours of Mon-Fri 09:00-17:00: the edges, a weekend, the clock changes
# (29 March and 25 October 2026), and a visit that runs past midnight.
CASES = [
    (local(2026, 3, 10, 9), 30),  # Tue, at opening: held
    (local(2026, 3, 11, 8, 45), 30),  # Wed, starts before opening
    (local(2026, 3, 10, 16, 30), 30),  # ends at closing: held
    (local(2026, 3, 11, 16, 45), 30),  # Wed, ends after closing
    (local(2026, 3, 14, 10), 30),  # Saturday
    (local(2026, 3, 30, 9), 30),  # Mon after the spring change, 09:00 BST = 08:00 UTC: held
    (local(2026, 3, 31, 8, 30), 30),  # Tue, 08:30 BST = 07:30 UTC: outside
    (local(2026, 10, 26, 16, 30), 30),  # Mon after the autumn change, 16:30 GMT: held
    (local(2026, 10, 23, 16, 30), 45),  # Fri, 16:30 BST to 17:15
    (local(2026, 3, 12, 23, 30), 60),  # Thu 23:30 to Fri 00:30: across midnight
]


@pytest.fixture
def hart(clinic):
    return PractitionerFactory(clinic=clinic, name="Dr Amelia Hart", hours=range(5))


def appointment(patient, practitioner, start: datetime, minutes: int, **extra) -> Appointment:
    made = book(patient, practitioner, "botox", start, **extra)
    Appointment.objects.filter(pk=made.pk).update(end_at=start + timedelta(minutes=minutes))
    made.refresh_from_db()
    return made


def test_the_sql_reading_is_the_python_one(clinic, hart, patient):
    WorkingHours.objects.filter(practitioner=hart).update(start_time=time(9), end_time=time(17))
    made = [appointment(patient, hart, start, minutes) for start, minutes in CASES]
    expected = {a.pk for a in outside_working_hours(made, list(hart.working_hours.all()), LONDON)}
    found = set(off_working_hours(Appointment.objects.all(), LONDON).values_list("pk", flat=True))
    assert found == expected
    held = {made[i].pk for i in (0, 2, 5, 7)}
    assert expected == {a.pk for a in made} - held


def test_the_weekday_is_the_clinics_not_utcs(clinic, patient):
    """Saturday 00:30 in London summer is Friday 23:30 UTC: held by Saturday hours, whatever day UTC says."""
    night = PractitionerFactory(clinic=clinic, name="Dr Night", hours=[5])  # Saturdays
    WorkingHours.objects.filter(practitioner=night).update(start_time=time(0), end_time=time(12))
    saturday = appointment(patient, night, local(2026, 6, 13, 0, 30), 30)
    friday_utc = appointment(patient, night, local(2026, 6, 12, 23, 30), 30)  # Friday 23:30 BST: not Saturday
    found = set(off_working_hours(Appointment.objects.all(), LONDON).values_list("pk", flat=True))
    assert found == {friday_utc.pk}
    assert {a.pk for a in outside_working_hours([saturday, friday_utc], list(night.working_hours.all()), LONDON)} == {
        friday_utc.pk
    }


def test_today_lists_bookings_that_changed_hours_left_outside(reception, clinic, hart, patient, frozen):
    inside = appointment(patient, hart, local(2026, 3, 10, 10), 30)  # Tuesday
    friday = appointment(patient, hart, local(2026, 3, 13, 11), 30)
    cancelled = appointment(patient, hart, local(2026, 3, 13, 14), 30, status=AppointmentStatus.CANCELLED)
    WorkingHours.objects.filter(practitioner=hart, weekday=4).delete()  # no more Fridays
    page = squash(reception.get(url("today", clinic)))
    assert "Outside working hours" in page
    assert str(friday.pk) in page and str(inside.pk) not in page and str(cancelled.pk) not in page
    assert "Fri 13 Mar, 11:00–11:30 · Dr Amelia Hart" in page
    summer = appointment(patient, hart, local(2026, 6, 12, 11), 30)  # a Friday in summer time
    page = squash(reception.get(url("today", clinic)))
    assert str(summer.pk) in page and "Fri 12 Jun, 11:00–11:30 · Dr Amelia Hart" in page  # BST, as the clinic


def test_today_says_nothing_when_every_booking_is_in_hours(reception, clinic, hart, patient, frozen):
    appointment(patient, hart, local(2026, 3, 10, 10), 30)
    assert "Outside working hours" not in squash(reception.get(url("today", clinic)))


def test_a_booking_already_over_is_not_listed(reception, clinic, hart, patient, frozen):
    appointment(patient, hart, frozen - timedelta(days=3), 30)  # a Friday, before the change
    WorkingHours.objects.filter(practitioner=hart, weekday=4).delete()
    assert "Outside working hours" not in squash(reception.get(url("today", clinic)))


def test_another_clinics_bookings_are_not_listed(reception, clinic, other_clinic, other_patient, frozen):
    elsewhere = PractitionerFactory(clinic=other_clinic, name="Dr Maya Chen", hours=[])  # no hours at all
    appointment(other_patient, elsewhere, datetime(2026, 3, 10, 15, tzinfo=UTC), 30)
    assert "Outside working hours" not in squash(reception.get(url("today", clinic)))


def test_the_list_costs_the_same_statements_however_long(
    reception, clinic, hart, patient, frozen, django_assert_max_num_queries
):
    WorkingHours.objects.filter(practitioner=hart).delete()
    appointment(patient, hart, local(2026, 3, 10, 10), 30)
    with django_assert_max_num_queries(60) as one:
        reception.get(url("today", clinic))
    for day in range(11, 20):
        appointment(patient, hart, local(2026, 3, day, 10), 30)
    with django_assert_max_num_queries(len(one.captured_queries)):
        page = squash(reception.get(url("today", clinic)))
    assert 'Outside working hours <span class="count">10</span>' in page
