"""Wall-clock times typed at the front desk: DST gaps and overlaps are refused, not guessed."""

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from core.errors import InvalidInput
from core.timeutils import local_to_utc, require_aware, require_whole_minute

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")


def test_an_ordinary_local_time_becomes_utc():
    assert local_to_utc(datetime(2026, 7, 1, 10, 0), LONDON) == datetime(2026, 7, 1, 9, 0, tzinfo=UTC)


def test_a_time_in_the_spring_forward_gap_does_not_exist():
    with pytest.raises(InvalidInput) as error:
        local_to_utc(datetime(2026, 3, 29, 1, 30), LONDON)

    assert error.value.code == "nonexistent_local_time"
    assert error.value.message == (
        "2026-03-29 01:30 does not exist in Europe/London (the clocks go forward then); "
        "choose another time or give an explicit UTC offset."
    )
    assert error.value.field == "start"


def test_a_time_in_the_fall_back_overlap_is_ambiguous():
    with pytest.raises(InvalidInput) as error:
        local_to_utc(datetime(2026, 11, 1, 1, 30), NEW_YORK, field="performed_at")

    assert error.value.code == "ambiguous_local_time"
    assert "happens twice in America/New_York" in error.value.message
    assert error.value.field == "performed_at"


@pytest.mark.parametrize("offset, expected_utc_hour", [(-4, 5), (-5, 6)])
def test_an_explicit_offset_settles_an_ambiguous_time(offset, expected_utc_hour):
    given = datetime(2026, 11, 1, 1, 30, tzinfo=timezone(timedelta(hours=offset)))

    assert local_to_utc(given, NEW_YORK) == datetime(2026, 11, 1, expected_utc_hour, 30, tzinfo=UTC)


def test_require_aware_refuses_naive_times():
    with pytest.raises(InvalidInput) as error:
        require_aware(datetime(2026, 3, 1, 10), field="start")
    assert error.value.code == "naive_datetime"


def test_whole_minutes_only():
    require_whole_minute(datetime(2026, 3, 1, 10, 15, tzinfo=UTC))
    with pytest.raises(InvalidInput):
        require_whole_minute(datetime(2026, 3, 1, 10, 15, 1, tzinfo=UTC))
