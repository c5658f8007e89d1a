"""Due times: offsets in the clinic's zone across DST, SMS quiet hours, late bookings (docs/reminders.md)."""

from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from reminders.timing import (
    Direction,
    QuietHours,
    apply_offset,
    first_allowed_after,
    last_allowed_before,
    plan_due,
)
from tests.reminders.conftest import LONDON, NEW_YORK

QUIET = QuietHours()


def utc(y, m, d, hh, mm=0):
    return datetime(y, m, d, hh, mm, tzinfo=UTC)


def plan(anchor, value, unit, *, now, direction=Direction.EARLIER, sms=False, late=True, deadline=None, tz=LONDON):
    return plan_due(
        anchor_at=anchor,
        offset_value=value,
        offset_unit=unit,
        tz=tz,
        now=now,
        direction=direction,
        is_sms=sms,
        quiet=QUIET,
        send_if_late=late,
        deadline=deadline,
    )


# --- Offsets -----------------------------------------------------------------------------------------


def test_hour_offsets_are_elapsed_time_across_the_spring_change():
    # Given a completion on Friday 27 March 2026 at 15:00 GMT; clocks go forward on Sunday 29 March
    completed = datetime(2026, 3, 27, 15, 0, tzinfo=LONDON)
    # Then +48 h is 48 real hours later: 16:00 BST on the wall clock
    due = apply_offset(completed, 48, "hours", LONDON)
    assert due == utc(2026, 3, 29, 15)
    assert due.astimezone(LONDON).hour == 16


def test_day_offsets_keep_the_local_wall_time_across_the_spring_change():
    completed = datetime(2026, 3, 27, 15, 0, tzinfo=LONDON)
    due = apply_offset(completed, 7, "days", LONDON)
    assert due.astimezone(LONDON) == datetime(2026, 4, 3, 15, 0, tzinfo=LONDON)
    assert due == utc(2026, 4, 3, 14)  # one hour less than 7 * 24 h


def test_day_offsets_before_the_anchor_across_the_autumn_change():
    # Clocks go back on Sunday 25 October 2026; two days before Monday 10:00 GMT is Saturday 10:00 BST
    start = datetime(2026, 10, 26, 10, 0, tzinfo=LONDON)
    assert apply_offset(start, -2, "days", LONDON) == utc(2026, 10, 24, 9)
    assert apply_offset(start, -48, "hours", LONDON) == utc(2026, 10, 24, 10)


def test_a_day_offset_landing_in_the_spring_gap_stays_on_the_anchors_side():
    # 01:30 on 29 March 2026 does not exist in London
    after = apply_offset(datetime(2026, 3, 28, 1, 30, tzinfo=LONDON), 1, "days", LONDON)
    before = apply_offset(datetime(2026, 3, 30, 1, 30, tzinfo=LONDON), -1, "days", LONDON)
    assert after == utc(2026, 3, 29, 1, 30)  # the later reading: 02:30 BST
    assert before == utc(2026, 3, 29, 0, 30)  # the earlier reading: 00:30 GMT


def test_new_york_day_offsets_follow_new_york_time():
    # US clocks go forward on 8 March 2026
    start = datetime(2026, 3, 9, 9, 0, tzinfo=NEW_YORK)
    assert apply_offset(start, -2, "days", NEW_YORK).astimezone(NEW_YORK) == datetime(2026, 3, 7, 9, 0, tzinfo=NEW_YORK)
    assert apply_offset(start, -48, "hours", NEW_YORK).astimezone(NEW_YORK) == datetime(
        2026, 3, 7, 8, 0, tzinfo=NEW_YORK
    )


def test_an_unknown_unit_is_refused():
    with pytest.raises(ValueError, match="unknown offset unit 'weeks'"):
        apply_offset(utc(2026, 3, 2, 9), 1, "weeks", LONDON)


# --- Quiet hours ----------------------------------------------------------------------------------------


def test_quiet_hours_span_midnight_and_end_at_eight():
    assert QUIET.contains(time(21, 0)) and QUIET.contains(time(3, 0)) and QUIET.contains(time(7, 59))
    assert not QUIET.contains(time(8, 0)) and not QUIET.contains(time(20, 59))
    assert QuietHours(time(13), time(14)).contains(time(13, 30))
    assert not QuietHours(time(13), time(14)).contains(time(14, 0))


def test_a_window_that_ends_where_it_starts_holds_no_text():
    none = QuietHours(time(0, 0), time(0, 0))
    assert not any(none.contains(time(hour, minute)) for hour in range(24) for minute in (0, 59))
    night = datetime(2026, 7, 1, 23, 30, tzinfo=LONDON)
    assert first_allowed_after(night, LONDON, none) == night
    late_evening = plan_due(
        anchor_at=datetime(2026, 7, 1, 21, 30, tzinfo=LONDON),
        offset_value=2,
        offset_unit="hours",
        tz=LONDON,
        now=utc(2026, 7, 1, 9),
        direction=Direction.LATER,
        is_sms=True,
        quiet=none,
        send_if_late=True,
    )
    assert late_evening.due_at == night  # 23:30 stays 23:30 (the default window would move it to 08:00)


def test_the_nearest_allowed_moments_around_a_night():
    night = datetime(2026, 7, 1, 23, 30, tzinfo=LONDON)
    assert last_allowed_before(night, LONDON, QUIET).astimezone(LONDON) == datetime(2026, 7, 1, 20, 59, tzinfo=LONDON)
    assert first_allowed_after(night, LONDON, QUIET).astimezone(LONDON) == datetime(2026, 7, 2, 8, 0, tzinfo=LONDON)
    small_hours = datetime(2026, 7, 2, 2, 0, tzinfo=LONDON)
    assert last_allowed_before(small_hours, LONDON, QUIET).astimezone(LONDON) == datetime(
        2026, 7, 1, 20, 59, tzinfo=LONDON
    )


def test_pre_care_sms_in_quiet_hours_moves_earlier_never_later():
    # Given an 08:30 appointment and a note due 10 hours before it (22:30, quiet)
    start = datetime(2026, 7, 2, 8, 30, tzinfo=LONDON)
    now = datetime(2026, 7, 1, 9, 0, tzinfo=LONDON)
    sms = plan(start, -10, "hours", now=now, sms=True, deadline=start)
    email = plan(start, -10, "hours", now=now, sms=False, deadline=start)
    # Then the SMS goes at 20:59 the evening before; e-mail keeps its time
    assert sms.due_at.astimezone(LONDON) == datetime(2026, 7, 1, 20, 59, tzinfo=LONDON)
    assert email.due_at.astimezone(LONDON) == datetime(2026, 7, 1, 22, 30, tzinfo=LONDON)


def test_post_care_sms_in_quiet_hours_moves_later():
    completed = datetime(2026, 7, 1, 20, 30, tzinfo=LONDON)
    due = plan(completed, 1, "hours", now=completed, direction=Direction.LATER, sms=True).due_at
    assert due.astimezone(LONDON) == datetime(2026, 7, 2, 8, 0, tzinfo=LONDON)


def test_a_booking_inside_the_pre_care_window_gets_it_at_once_quiet_hours_permitting():
    # Booked at 22:30 for 10:00 tomorrow: "24 h before" has passed
    start = datetime(2026, 7, 2, 10, 0, tzinfo=LONDON)
    now = datetime(2026, 7, 1, 22, 30, tzinfo=LONDON)
    assert plan(start, -24, "hours", now=now, deadline=start).due_at == now  # e-mail: at once
    # SMS: not at 22:30; at 08:00, still before the appointment
    assert plan(start, -24, "hours", now=now, sms=True, deadline=start).due_at.astimezone(LONDON) == datetime(
        2026, 7, 2, 8, 0, tzinfo=LONDON
    )


def test_an_sms_that_cannot_go_before_the_appointment_is_not_planned():
    start = datetime(2026, 7, 2, 8, 0, tzinfo=LONDON)
    now = datetime(2026, 7, 1, 22, 30, tzinfo=LONDON)
    result = plan(start, -24, "hours", now=now, sms=True, deadline=start)
    assert result.due_at is None
    assert result.reason == "no moment outside SMS quiet hours is left before the appointment"


def test_a_late_message_that_is_not_urgent_is_dropped():
    start = datetime(2026, 7, 2, 10, 0, tzinfo=LONDON)
    now = datetime(2026, 7, 1, 16, 0, tzinfo=LONDON)
    result = plan(start, -1, "days", now=now, late=False, deadline=start)
    assert (result.due_at, result.reason) == (None, "its time had passed when it was planned")


def test_quiet_hours_are_local_to_the_clinic():
    # 21:30 in New York is 02:30 in London: the New York clinic's own night decides
    completed = datetime(2026, 7, 1, 21, 30, tzinfo=NEW_YORK)
    due = plan(completed, 0, "hours", now=completed, direction=Direction.LATER, sms=True, tz=NEW_YORK).due_at
    assert due.astimezone(NEW_YORK) == datetime(2026, 7, 2, 8, 0, tzinfo=NEW_YORK)


# --- Quiet hours of any shape (Hypothesis) -------------------------------------------------------------------

whole_minutes = st.builds(time, st.integers(0, 23), st.integers(0, 59))


@settings(max_examples=300, deadline=None)
@given(
    start=whole_minutes,
    end=whole_minutes,
    moment=st.one_of(
        st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31)),
        # Two days either side of each clock change of 2026 in both zones: where the answers bend.
        st.sampled_from(
            [datetime(2026, 3, 8, 7), datetime(2026, 3, 29, 1), datetime(2026, 10, 25, 1), datetime(2026, 11, 1, 6)]
        ).flatmap(
            lambda change: st.datetimes(min_value=change - timedelta(days=2), max_value=change + timedelta(days=2))
        ),
    ).map(lambda d: d.replace(second=0, microsecond=0, tzinfo=UTC)),
    tz=st.sampled_from([LONDON, NEW_YORK]),
)
def test_the_nearest_allowed_moments_for_any_quiet_window(start, end, moment, tz):
    """Whatever the window (across midnight or within one day) and whatever the clock does (DST gaps and
    overlaps), the moment found is allowed, on the right side of `moment`, and the nearest one."""
    quiet = QuietHours(start, end)
    assume(start != end)

    def allowed(instant: datetime) -> bool:
        return not quiet.contains(instant.astimezone(tz).time())

    after = first_allowed_after(moment, tz, quiet)
    before = last_allowed_before(moment, tz, quiet)
    assert allowed(after) and allowed(before)
    assert before <= moment <= after
    # The nearest: every minute between `moment` and each answer is quiet (found by walking minute by minute,
    # at most two days: a clock change can swallow a day's whole allowed time when it is short).
    minute, walked = timedelta(minutes=1), moment
    while not allowed(walked):
        walked += minute
        assert walked - moment <= timedelta(hours=49)
    assert after == walked
    walked = moment
    while not allowed(walked):
        walked -= minute
        assert moment - walked <= timedelta(hours=49)
    assert before == walked


def test_a_window_within_one_day_ends_the_same_day():
    lunch = QuietHours(time(13), time(14))
    assert first_allowed_after(utc(2026, 7, 1, 12, 30), LONDON, lunch) == utc(2026, 7, 1, 13)  # 14:00 BST
    assert last_allowed_before(utc(2026, 7, 1, 12, 30), LONDON, lunch) == utc(2026, 7, 1, 11, 59)  # 12:59 BST


# Found by the property above (2 December 2026): each answer was an hour or more off around a clock change.


def test_quiet_hours_starting_in_the_spring_gap_start_when_the_clock_jumps():
    # 01:00 does not exist in London on 29 March 2026 (00:59 GMT is followed by 02:00 BST, at 01:00 UTC).
    night = QuietHours(time(1), time(0))
    assert last_allowed_before(utc(2026, 3, 29, 1, 30), LONDON, night) == utc(2026, 3, 29, 0, 59)  # 00:59 GMT


def test_quiet_hours_ending_in_the_spring_gap_end_when_the_clock_jumps():
    night = QuietHours(time(21), time(1, 30))
    assert first_allowed_after(utc(2026, 3, 29, 0, 30), LONDON, night) == utc(2026, 3, 29, 1)  # 02:00 BST


def test_a_clock_put_back_into_quiet_hours_ends_the_allowed_time_there():
    # 25 October 2026 in London: 01:00-01:59 twice; quiet 00:30-01:30, so 01:30-01:59 BST is allowed, then the
    # clock goes back to 01:00 GMT, quiet again until 01:30 GMT.
    night = QuietHours(time(0, 30), time(1, 30))
    at = utc(2026, 10, 25, 1, 19)  # 01:19 GMT, the second time round
    assert last_allowed_before(at, LONDON, night) == utc(2026, 10, 25, 0, 59)  # 01:59 BST
    assert first_allowed_after(at, LONDON, night) == utc(2026, 10, 25, 1, 30)  # 01:30 GMT
    assert first_allowed_after(utc(2026, 10, 24, 23, 45), LONDON, night) == utc(2026, 10, 25, 0, 30)  # 01:30 BST
