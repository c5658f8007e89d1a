"""Instants written back as people read them (core.timeutils): the desk's pages and sentences and the admin's
warnings say which reading of an hour the clocks go back over, and never pad the day ("Tue 3 Mar")."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from core.timeutils import wall_clock, wall_moment, wall_span

LONDON = ZoneInfo("Europe/London")


def test_a_moment_reads_with_its_day_unpadded_and_its_time():
    assert wall_moment(datetime(2026, 3, 3, 10, tzinfo=UTC), LONDON) == "Tue 3 Mar 2026, 10:00"
    assert wall_moment(datetime(2026, 3, 10, 0, tzinfo=UTC), LONDON) == "Tue 10 Mar 2026, 00:00"


def test_the_hour_the_clocks_go_back_over_says_which_reading():
    first, second = datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    assert wall_moment(first, LONDON) == "Sun 25 Oct 2026, 01:30 BST"
    assert wall_moment(second, LONDON) == "Sun 25 Oct 2026, 01:30 GMT"
    assert wall_clock(second.astimezone(LONDON)) == "01:30 GMT"
    assert wall_span(first, second, LONDON) == "01:30 BST–01:30 GMT"
    assert wall_span(datetime(2026, 10, 25, 9, tzinfo=UTC), datetime(2026, 10, 25, 9, 30, tzinfo=UTC), LONDON) == (
        "09:00–09:30"
    )
