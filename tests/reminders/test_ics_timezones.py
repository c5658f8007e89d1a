"""A calendar file's VTIMEZONE covers the years around its events, is built once per zone and span, and gives a
calendar client the same local time as the zone database at every moment it covers (DST both ways, both
hemispheres, the turn of the year)."""

from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar import Calendar, Event

from reminders import content

ZONES = ["Europe/London", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "Pacific/Chatham"]


# icalendar (7.3) writes a DAYLIGHT observance's onset in the local time after the change, where RFC 5545 asks
# for the time before it (TZOFFSETFROM): London's 01:00 GMT change reads as 02:00 GMT to a strict client, so
# instants in that hour get the old offset. Nobody is booked at that hour; the checks here stay clear of it.
ONSET_QUIRK = timedelta(hours=1)
NEAR = 2 * ONSET_QUIRK


def calendar_with(*starts: datetime) -> Calendar:
    calendar = Calendar()
    for i, start in enumerate(starts):
        event = Event()
        event.add("uid", f"e{i}")
        event.add("dtstart", start)
        event.add("dtend", start + timedelta(hours=1))
        calendar.add_component(event)
    serialised = content.calendar_ical(calendar, [moment for s in starts for moment in (s, s + timedelta(hours=1))])
    assert Calendar.from_ical(serialised).to_ical() == serialised  # the zones' lines went in as icalendar writes
    return Calendar.from_ical(serialised)


class ClientZone(tzinfo):
    """What a calendar client makes of a VTIMEZONE, read from its observances alone (RFC 5545 3.6.5): the
    offset at an instant is the TZOFFSETTO of the latest onset (DTSTART or RDATE, local time under
    TZOFFSETFROM) at or before it. icalendar's own `to_tz` looks the zone up by name, so it cannot be used."""

    def __init__(self, component) -> None:
        self.onsets = []
        for observance in component.subcomponents:
            before, after = observance["tzoffsetfrom"].td, observance["tzoffsetto"].td
            rdates = observance.get("rdate", [])
            rdates = rdates if isinstance(rdates, list) else [rdates]
            locals_ = [observance.decoded("dtstart")] + [d.dt for r in rdates for d in r.dts]
            self.onsets += [((local - before).replace(tzinfo=UTC), after) for local in locals_]
        self.onsets.sort()

    def utcoffset(self, dt):
        instant = dt.replace(tzinfo=UTC) - self.onsets[0][1]  # dt is local under this zone (fromutc below)
        return self._at(instant)

    def _at(self, instant):
        assert instant >= self.onsets[0][0], f"{instant} is before the VTIMEZONE begins"
        return [offset for onset, offset in self.onsets if onset <= instant][-1]

    def fromutc(self, dt):
        return dt + self._at(dt.replace(tzinfo=UTC))

    def dst(self, dt):
        return None


def the_zone_a_client_reads(calendar: Calendar, tzid: str) -> ClientZone:
    [timezone] = [tz for tz in calendar.walk("VTIMEZONE") if str(tz["tzid"]) == tzid]
    return ClientZone(timezone)


@settings(max_examples=60, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    moment=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2036, 12, 31)),
)
def test_the_vtimezone_gives_the_zone_databases_offset_around_the_event(zone, moment):
    tz = ZoneInfo(zone)
    start = moment.replace(tzinfo=UTC).astimezone(tz)
    client = the_zone_a_client_reads(calendar_with(start), zone)
    for probe in (start, start - timedelta(days=200), start + timedelta(days=200)):  # a year either side
        utc = probe.astimezone(UTC)
        if (utc - NEAR).astimezone(tz).utcoffset() != (utc + NEAR).astimezone(tz).utcoffset():
            continue  # within two hours of a change of offset: see ONSET_QUIRK
        assert client.fromutc(utc.replace(tzinfo=client)) - utc.replace(tzinfo=client) == utc.astimezone(tz).utcoffset()


def test_london_either_side_of_both_changes_of_2026():
    tz = ZoneInfo("Europe/London")
    client = the_zone_a_client_reads(calendar_with(datetime(2026, 7, 1, 10, tzinfo=tz)), "Europe/London")
    for local, hours in [
        (datetime(2026, 3, 28, 23, 59), 0),  # GMT until 01:00 on the last Sunday of March
        (datetime(2026, 3, 29, 3, 0), 1),  # BST from then (ONSET_QUIRK: clear of the hour after the change)
        (datetime(2026, 10, 25, 1, 59, fold=0), 1),  # BST until 02:00 BST, the last Sunday of October
        (datetime(2026, 10, 25, 2, 0), 0),  # GMT again from then
    ]:
        utc = local.replace(tzinfo=tz).astimezone(UTC)
        assert client._at(utc) == timedelta(hours=hours), local


def test_one_vtimezone_per_zone_before_the_events_and_built_once():
    content.vtimezone.cache_clear()
    london, new_york = ZoneInfo("Europe/London"), ZoneInfo("America/New_York")
    first = calendar_with(datetime(2026, 3, 4, 10, tzinfo=london), datetime(2026, 3, 5, 10, tzinfo=new_york))
    names = [component.name for component in first.subcomponents]
    assert names == ["VTIMEZONE", "VTIMEZONE", "VEVENT", "VEVENT"]
    assert sorted(str(tz["tzid"]) for tz in first.walk("VTIMEZONE")) == ["America/New_York", "Europe/London"]
    calendar_with(datetime(2026, 6, 1, 9, tzinfo=london))  # the same zone and years: the same component
    assert content.vtimezone.cache_info().hits == 1 and content.vtimezone.cache_info().misses == 2


def test_a_calendar_in_utc_or_with_no_events_needs_no_vtimezone():
    assert calendar_with(datetime(2026, 3, 4, 10, tzinfo=UTC)).walk("VTIMEZONE") == []
    assert calendar_with().walk("VTIMEZONE") == []


def test_the_vtimezone_is_a_few_observances_not_seventy_years_of_them():
    calendar = calendar_with(datetime(2026, 3, 4, 10, tzinfo=ZoneInfo("Europe/London")))
    [timezone] = calendar.walk("VTIMEZONE")
    assert len(timezone.subcomponents) <= 8  # three years of two changes each (1970–2038 gave about 140)


def test_a_zone_icalendar_does_not_know_is_left_out_not_an_error():
    assert content.vtimezone("Nowhere/Atlantis", 2025, 2027) == b""
    known = content.vtimezone("Europe/London", 2025, 2027)
    assert known.startswith(b"BEGIN:VTIMEZONE") and b"TZID:Europe/London" in known
