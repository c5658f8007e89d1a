"""One day's working periods that overlap or touch are one stretch (clinic.models.joined_periods): 09:00-13:00 and
13:00-18:00 hold a visit across 13:00. Migration clinic 0031 joins the rows stored before the admin refused such a
day (clinic.forms.WorkingHoursFormSet); booking and availability (tests/qa/test_review_dec11b_booking_code_read.py)
and the admin's "outside their working hours" warning read them joined too. A lunch break stays a break. Runs on
either database."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from clinic.models import Appointment, WorkingHours, joined_periods
from clinic.selectors import outside_working_hours
from tests.helpers import _leaves, _migrate

LONDON = ZoneInfo("Europe/London")


@pytest.mark.parametrize(
    "periods, joined",
    [
        ([(9, 13), (13, 18)], [(9, 18)]),  # touching
        ([(13, 18), (9, 13)], [(9, 18)]),  # in any order
        ([(9, 13), (12, 18)], [(9, 18)]),  # overlapping
        ([(9, 18), (10, 12)], [(9, 18)]),  # one inside the other
        ([(9, 11), (11, 13), (13, 18)], [(9, 18)]),  # a chain
        ([(9, 12), (13, 18)], [(9, 12), (13, 18)]),  # a lunch break
        ([], []),
    ],
)
def test_a_days_periods_are_joined_where_they_meet(periods, joined):
    as_times = [(time(a), time(b)) for a, b in periods]
    assert joined_periods(as_times) == [(time(a), time(b)) for a, b in joined]


def test_the_admins_warning_does_not_call_a_visit_across_the_seam_outside_hours():
    """clinic.admin's warning on saving hours (outside_working_hours, in memory): Monday 9 March 2026 12:30-13:30
    against 09:00-13:00 and 13:00-18:00 is held; against a lunch break of 12:00-13:00 it is not."""
    visit = Appointment(
        start_at=datetime(2026, 3, 9, 12, 30, tzinfo=UTC),
        end_at=datetime(2026, 3, 9, 12, 30, tzinfo=UTC) + timedelta(hours=1),
    )

    def monday(*periods):
        return [WorkingHours(weekday=0, start_time=time(a), end_time=time(b)) for a, b in periods]

    assert outside_working_hours([visit], monday((9, 13), (13, 18)), LONDON) == []
    assert outside_working_hours([visit], monday((9, 12), (13, 18)), LONDON) == [visit]


@pytest.mark.django_db(transaction=True)
def test_rows_stored_before_are_joined_where_they_meet_and_breaks_are_kept():
    old = _migrate([("clinic", "0030_reminder_channels_in_one_order")])
    organisation = old.get_model("clinic", "Organisation").objects.create(code="joined")
    clinic = old.get_model("clinic", "Clinic").objects.create(
        code="joined", name="Joined", timezone="Europe/London", organisation=organisation
    )
    Practitioner = old.get_model("clinic", "Practitioner")
    OldHours = old.get_model("clinic", "WorkingHours")
    days = {
        0: [(9, 13), (13, 18)],  # touching
        1: [(9, 12), (13, 18)],  # a lunch break
        2: [(12, 18), (9, 13)],  # overlapping, stored in the other order
        3: [(9, 11), (11, 13), (13, 18)],  # a chain
        4: [(9, 18), (10, 12)],  # one inside the other
        5: [(10, 14)],
    }
    split = Practitioner.objects.create(clinic=clinic, name="Dr Split")
    for weekday, periods in days.items():
        for a, b in periods:
            OldHours.objects.create(practitioner=split, weekday=weekday, start_time=time(a), end_time=time(b))
    # Another practitioner's Monday meets Dr Split's at 13:00: one practitioner's rows are never joined with another's.
    other = Practitioner.objects.create(clinic=clinic, name="Dr Other")
    OldHours.objects.create(practitioner=other, weekday=0, start_time=time(13), end_time=time(15))

    _migrate(_leaves())

    def stored(practitioner):
        return {
            weekday: [
                (row.start_time.hour, row.end_time.hour)
                for row in WorkingHours.objects.filter(practitioner_id=practitioner.pk, weekday=weekday)
            ]
            for weekday in range(7)
            if WorkingHours.objects.filter(practitioner_id=practitioner.pk, weekday=weekday).exists()
        }

    assert stored(split) == {
        0: [(9, 18)],
        1: [(9, 12), (13, 18)],
        2: [(9, 18)],
        3: [(9, 18)],
        4: [(9, 18)],
        5: [(10, 14)],
    }
    assert stored(other) == {0: [(13, 15)]}
