"""QA probe of the integrations (issue 15): the FHIR R4 read surface, private calendar feeds and webhook
subscriptions, and tenancy across all three. Written as an outside tester would: each test quotes the promise
it checks (docs/fhir.md, docs/api.md, docs/reminders.md, the api-contract's v1 additions, issue 15) and reads
answers with the libraries clients use (`fhir.resources`, `icalendar`), webhooks verified by hand as documented.

The clock is Monday 2 March 2026, 09:00 UTC, ticking (tests/api/conftest.py). London is on GMT until
29 March (BST after); New York on EST until 8 March (EDT after).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from django.test import Client
from icalendar import Calendar

from clinic.models import ApiClient, Appointment, AppointmentStatus
from reminders.content import ics_uid
from reminders.dispatch import dispatch_local
from reminders.feeds import calendar_feed_create, calendar_feed_revoke, patient_calendar_feed_renew
from reminders.models import CalendarFeed, OutboxMessage, WebhookEndpoint
from tests.api.conftest import _clock, http, new_api_client, problem_of  # noqa: F401 (_clock: autouse fixture)
from tests.factories import ClinicFactory, PatientConditionFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import (
    LONDON,
    NEW_YORK,
    api_book,
    fhir_ids,
    fhir_outcome,
    fhir_search,
    register_webhook,
)
from tests.reminders.support import FakeHttpServer

pytestmark = pytest.mark.django_db

# The world (a London clinic with a sister site, a New York clinic of another organisation, a platform's key) is
# tests/api/conftest.py's, through tests/qa/conftest.py.


# --- helpers ---------------------------------------------------------------------------------------------------


def feed_of(token: str) -> tuple[Calendar, dict]:
    response = Client().get(f"/reminders/calendar/{token}.ics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/calendar; charset=utf-8"
    calendar = Calendar.from_ical(response.content)
    return calendar, {str(e["uid"]): e for e in calendar.walk("VEVENT")}


def _now() -> datetime:
    return datetime.now(UTC)


def verify_by_hand(secret: str, headers: dict, body: bytes) -> bool:
    """docs/reminders.md: `v1,` + base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{raw body}")), key =
    base64-decoded secret after `whsec_`; several signatures space-separated during a rotation."""
    lowered = {k.lower(): v for k, v in headers.items()}
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{lowered['webhook-id']}.{lowered['webhook-timestamp']}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, offered) for offered in lowered["webhook-signature"].split(" "))


@pytest.fixture
def receiver(settings):
    """A real HTTP endpoint on 127.0.0.1 (the documented local-test settings allow it)."""
    settings.WEBHOOKS_ALLOW_HTTP = True
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = True
    with FakeHttpServer() as server:
        yield server


def outbox_events(endpoint_id) -> list[tuple[str, str, int]]:
    rows = OutboxMessage.objects.filter(endpoint_id=endpoint_id, channel="webhook").order_by("created_at", "id")
    return [(r.event, r.payload["data"]["appointment"]["id"], r.payload["sequence"]) for r in rows]


# ============================================ FHIR ============================================================


def test_fhir_date_gt_is_strictly_after_and_lt_strictly_before(api, patient, practitioner):
    """docs/fhir.md: 'Dates take the prefixes ge, gt, lt, le, eq'. `gt` is greater than: an appointment that
    starts exactly at the instant searched is not after it (as `lt` already leaves it out)."""
    at_ten = api_book(api, patient, "2026-03-03T10:00:00+00:00")["id"]
    assert fhir_ids(api, "/fhir/r4/Appointment?date=ge2026-03-03T10:00:00Z") == [at_ten]
    assert fhir_ids(api, "/fhir/r4/Appointment?date=le2026-03-03T10:00:00Z") == [at_ten]
    assert fhir_ids(api, "/fhir/r4/Appointment?date=eq2026-03-03T10:00:00Z") == [at_ten]
    assert fhir_ids(api, "/fhir/r4/Appointment?date=lt2026-03-03T10:00:00Z") == []
    assert fhir_ids(api, "/fhir/r4/Appointment?date=gt2026-03-03T10:00:00Z") == []


def test_fhir_a_repeated_token_parameter_narrows_it_never_drops_it(api, patient, practitioner):
    """docs/fhir.md: searches are strict ('rather than silently ignored'); FHIR repeats a parameter to AND it
    (fhir/search.py `codes`: 'repeatable (AND: each must match; here, intersected)'). No appointment is both
    booked and cancelled, so `status=booked&status=cancelled` finds none: it must not find every appointment."""
    api_book(api, patient, "2026-03-03T10:00:00+00:00")
    gone = api_book(api, patient, "2026-03-04T10:00:00+00:00", procedure="filler")["id"]
    api.post(f"/api/v1/appointments/{gone}/cancel/", {}, format="json")
    assert len(fhir_ids(api, "/fhir/r4/Appointment")) == 2
    assert fhir_ids(api, "/fhir/r4/Appointment?status=booked&status=cancelled") == []
    assert fhir_ids(api, "/fhir/r4/Appointment?service-type=botox&service-type=filler") == []
    # Slots: one service-type per search, and a status that is both free and busy is none of them.
    bad = api.get("/fhir/r4/Slot?service-type=botox&service-type=filler&start=2026-03-03")
    assert bad.status_code == 400 and "one service-type" in bad.content.decode()
    assert fhir_search(api, "/fhir/r4/Slot?status=free&status=busy&start=2026-03-03")[0]["total"] == 0


def test_fhir_comma_separated_service_types_are_alternatives(api, patient, clinic):
    """FHIR search: a comma separates alternatives (OR), as docs/fhir.md says of `actor` and `status`, and
    fhir/search.py `codes` of every token parameter ('comma-separated codes (OR)'). Appointment and Schedule
    searches by `service-type=botox,filler` find the botox ones and the filler ones."""
    botox_only = PractitionerFactory(clinic=clinic, name="Dr Botox", procedures=["botox"])
    filler_only = PractitionerFactory(clinic=clinic, name="Dr Filler", procedures=["filler"])
    a = api_book(api, patient, "2026-03-03T10:00:00+00:00", practitioner=str(botox_only.pk))["id"]
    b = api_book(api, patient, "2026-03-04T10:00:00+00:00", procedure="filler", practitioner=str(filler_only.pk))["id"]
    assert fhir_ids(api, "/fhir/r4/Appointment?service-type=botox") == [a]
    assert fhir_ids(api, "/fhir/r4/Appointment?service-type=botox,filler") == [a, b]
    schedules = set(fhir_ids(api, "/fhir/r4/Schedule?service-type=botox,filler"))
    assert {str(botox_only.pk), str(filler_only.pk)} <= schedules
    # Repeated, each must match: a practitioner does several procedures, so this is who does both.
    both = PractitionerFactory(clinic=clinic, name="Dr Both", procedures=["botox", "filler"])
    doing_both = set(fhir_ids(api, "/fhir/r4/Schedule?service-type=botox&service-type=filler"))
    assert str(both.pk) in doing_both and not {str(botox_only.pk), str(filler_only.pk)} & doing_both


def test_fhir_appointment_times_are_in_the_clinics_offset_either_side_of_dst(catalogue):
    """docs/fhir.md: '`start`, `end` in the clinic's offset; `minutesDuration`'. New York changes on 8 March
    2026, London on 29 March: the same 10:00 local reads -05:00 then -04:00, +00:00 then +01:00."""
    ny = ClinicFactory(code="qa-ny", timezone="America/New_York")
    ldn = ClinicFactory(code="qa-ldn", timezone="Europe/London")
    PractitionerFactory(clinic=ny)
    PractitionerFactory(clinic=ldn)
    client = http(new_api_client(ny, ldn)[1])
    ny_patient, ldn_patient = PatientFactory(clinic=ny), PatientFactory(clinic=ldn)
    cases = [
        (ny_patient, datetime(2026, 3, 6, 10, tzinfo=NEW_YORK), "2026-03-06T10:00:00-05:00"),
        (ny_patient, datetime(2026, 3, 9, 10, tzinfo=NEW_YORK), "2026-03-09T10:00:00-04:00"),
        (ldn_patient, datetime(2026, 3, 27, 10, tzinfo=LONDON), "2026-03-27T10:00:00+00:00"),
        (ldn_patient, datetime(2026, 3, 30, 10, tzinfo=LONDON), "2026-03-30T10:00:00+01:00"),
    ]
    made = {}
    for who, when, text in cases:
        made[api_book(client, who, when.astimezone(UTC).isoformat())["id"]] = text
    _, resources = fhir_search(client, "/fhir/r4/Appointment")
    assert {r["id"]: r["start"] for r in resources} == made
    for r in resources:
        assert r["minutesDuration"] == 30
        assert datetime.fromisoformat(r["end"]) - datetime.fromisoformat(r["start"]) == timedelta(minutes=30)
        assert r["end"][-6:] == r["start"][-6:]


def test_fhir_free_slots_follow_the_local_working_day_across_the_change(api, practitioner):
    """docs/fhir.md: free Slots are 'working hours less bookings'; practitioners work 09:00-18:00 local. On
    Saturday 28 March (GMT) the day runs 09:00-18:00Z; on Monday 30 March (BST) 08:00-17:00Z, shown as +01:00."""
    _, before = fhir_search(api, f"/fhir/r4/Slot?schedule={practitioner.pk}&status=free&start=2026-03-28")
    _, after = fhir_search(api, f"/fhir/r4/Slot?schedule={practitioner.pk}&status=free&start=2026-03-30")
    assert [(s["start"], s["end"]) for s in before] == [("2026-03-28T09:00:00+00:00", "2026-03-28T18:00:00+00:00")]
    assert [(s["start"], s["end"]) for s in after] == [("2026-03-30T09:00:00+01:00", "2026-03-30T18:00:00+01:00")]


def test_fhir_status_map_and_extension_for_every_status_searched_by_its_fhir_code(api, patient, practitioner, clinic):
    """docs/fhir.md status map: pending_clearance and needs_review are `pending` (our status in the extension
    `urn:clinic-scheduling:fhir:appointment-status`, review reasons in `.../review-reason`), confirmed is
    `booked`, cancelled `cancelled` with `cancelationReason` when a reason was given (to a clinical caller); 'A search for
    status=pending finds both'."""
    confirmed = api_book(api, patient, "2026-03-03T10:00:00+00:00")["id"]
    held_patient = PatientFactory(clinic=clinic)
    PatientConditionFactory(patient=held_patient, condition_id="eczema", status="history")
    held = api_book(api, held_patient, "2026-03-05T10:00:00+00:00", procedure="microneedling")
    assert held["status"] == "pending_clearance"
    flagged_patient = PatientFactory(clinic=clinic)
    flagged = api_book(api, flagged_patient, "2026-03-10T10:00:00+00:00", procedure="microneedling")["id"]
    reported = api.post(
        f"/api/v1/patients/{flagged_patient.pk}/procedures/",
        {"procedure": "botox", "performed_at": "2026-03-01T10:00:00+00:00"},
        format="json",
    )
    assert reported.status_code == 201, reported.content
    assert Appointment.objects.get(pk=flagged).status == AppointmentStatus.NEEDS_REVIEW
    gone = api_book(api, patient, "2026-03-06T10:00:00+00:00", procedure="filler")["id"]
    api.post(f"/api/v1/appointments/{gone}/cancel/", {"reason": "Moved abroad"}, format="json")

    _, resources = fhir_search(api, "/fhir/r4/Appointment")
    by_id = {r["id"]: r for r in resources}
    ours = {i: [e for e in r["extension"] if e["url"].endswith("appointment-status")] for i, r in by_id.items()}
    assert {i: (by_id[i]["status"], ours[i][0]["valueCode"]) for i in by_id} == {
        confirmed: ("booked", "confirmed"),
        held["id"]: ("pending", "pending_clearance"),
        flagged: ("pending", "needs_review"),
        gone: ("cancelled", "cancelled"),
    }
    reasons = [e["valueString"] for e in by_id[flagged]["extension"] if e["url"].endswith("review-reason")]
    assert reasons and "Botulinum" in reasons[0]
    # The reason's words only to a caller with the clinician's right (docs/fhir.md, decided 6 December).
    assert "cancelationReason" not in by_id[gone]
    clinical = http(new_api_client(clinic, name="clinical-reader", clinical=True)[1])
    _, seen_clinically = fhir_search(clinical, f"/fhir/r4/Appointment?_id={gone}")
    assert seen_clinically[0]["cancelationReason"]["text"] == "Moved abroad"
    assert set(fhir_ids(api, "/fhir/r4/Appointment?status=pending")) == {held["id"], flagged}
    assert fhir_ids(api, "/fhir/r4/Appointment?status=booked") == [confirmed]
    # A needs_review appointment keeps its slot: busy, a held one busy-tentative.
    _, slots = fhir_search(api, "/fhir/r4/Slot?status=busy,busy-tentative&start=ge2026-03-05&start=lt2026-03-11")
    assert [(s["start"][:16], s["status"]) for s in slots] == [
        ("2026-03-05T10:00", "busy-tentative"),
        ("2026-03-10T10:00", "busy"),
    ]


def test_fhir_paging_follows_next_to_the_end_keeping_the_filter(api, patient, practitioner, clinic):
    """docs/fhir.md 'Paging': a searchset with `total`, `next` while more remain and `previous`; `_count` 1 to
    200; 'follow next rather than building page addresses'; 'A page past the last is a 400'."""
    mine = [api_book(api, patient, f"2026-03-{day:02d}T10:00:00+00:00")["id"] for day in (3, 4, 5, 6, 7)]
    stranger = PatientFactory(clinic=clinic)
    api_book(api, stranger, "2026-03-03T12:00:00+00:00")
    path = f"/fhir/r4/Appointment?patient=Patient/{patient.pk}&_count=2"
    body, first = fhir_search(api, path)
    assert body["total"] == 5 and len(first) == 2
    links = {link["relation"]: link["url"] for link in body["link"]}
    assert set(links) == {"self", "next"}
    seen, pages = [r["id"] for r in first], 1
    while "next" in links:
        url = urlsplit(links["next"])
        body, more = fhir_search(api, f"{url.path}?{url.query}")
        pages += 1
        links = {link["relation"]: link["url"] for link in body["link"]}
        assert "previous" in links and body["total"] == 5
        seen += [r["id"] for r in more]
    assert pages == 3 and seen == mine  # the filter rode along: the stranger's never appears
    issue = fhir_outcome(api.get(path + "&page=4"), 400)
    assert issue["code"] == "invalid" and issue["expression"] == ["page"]
    # An empty search has one page and no `next`.
    empty, none = fhir_search(api, "/fhir/r4/Appointment?date=2027-01-01")
    assert empty["total"] == 0 and none == [] and {x["relation"] for x in empty["link"]} == {"self"}


@pytest.mark.parametrize(
    "path, parameter",
    [
        ("/fhir/r4/Appointment?date=ne2026-03-03", "date"),
        ("/fhir/r4/Appointment?date=sa2026-03-03", "date"),
        ("/fhir/r4/Appointment?date=ge2026-03-03T10:00:00 00:00", "date"),  # an unencoded '+' read as a space
        ("/fhir/r4/Appointment?date=ge2026-03-05&date=lt2026-03-04", "date"),
        ("/fhir/r4/Appointment?_sort=date", "_sort"),
        ("/fhir/r4/Appointment?_include=Appointment:patient", "_include"),
        ("/fhir/r4/Appointment?status:not=booked", "status:not"),
        ("/fhir/r4/Appointment?_count=abc", "_count"),
        ("/fhir/r4/Appointment?_count=1&_count=2", "_count"),
        ("/fhir/r4/Appointment?page=0", "page"),
        ("/fhir/r4/Appointment?patient=", "patient"),
        ("/fhir/r4/Appointment?practitioner=Patient/1", "practitioner"),
        ("/fhir/r4/Appointment?location=Practitioner/1", "location"),
        ("/fhir/r4/Appointment?service-type=bo%20tox", "service-type"),
        ("/fhir/r4/Schedule?active=true&active=false", "active"),
        ("/fhir/r4/Schedule?actor=Patient/1", "actor"),
        ("/fhir/r4/Slot?start=ge2026-03-03&start=lt2026-03-03", "start"),
        ("/fhir/r4/Slot?status=busy,maybe", "status"),
        ("/fhir/r4/Slot?_id=x", "_id"),
    ],
)
def test_fhir_bad_search_parameters_are_a_400_operation_outcome_naming_them(api, practitioner, path, parameter):
    """docs/fhir.md: 'an unknown search parameter (modifiers such as status:not included), an empty value, a time
    without an offset or an empty date range is a 400'; 'expression names the search parameter at fault'."""
    issue = fhir_outcome(api.get(path), 400)
    assert issue["code"] == "invalid" and issue["expression"] == [parameter], issue
    assert issue["details"]["coding"][0]["code"] == "invalid_search"


def test_fhir_an_organisation_b_id_guessed_anywhere_reads_nothing(api, patient, practitioner, clinic):
    """Contract v1 additions: 'Anything of another organisation is a 404'; docs/fhir.md: 'Anything outside is not
    found'. Organisation B's appointment, practitioner, patient and clinic ids, given to A's key in reads, in
    searches and mixed into lists of A's own ids, reveal nothing."""
    b_clinic = ClinicFactory(code="qa-org-b", timezone="Europe/London")
    b_practitioner = PractitionerFactory(clinic=b_clinic)
    b_patient = PatientFactory(clinic=b_clinic)
    b_appointment = api_book(http(new_api_client(b_clinic)[1]), b_patient, "2026-03-03T11:00:00+00:00")["id"]
    mine = api_book(api, patient, "2026-03-03T10:00:00+00:00")["id"]

    assert fhir_outcome(api.get(f"/fhir/r4/Appointment/{b_appointment}"), 404)["code"] == "not-found"
    assert fhir_outcome(api.get(f"/fhir/r4/Schedule/{b_practitioner.pk}"), 404)["code"] == "not-found"
    for query in (
        f"_id={b_appointment}",
        f"_id={mine},{b_appointment}",
        f"patient=Patient/{b_patient.pk}",
        f"actor=Patient/{b_patient.pk},Practitioner/{b_practitioner.pk},Location/{b_clinic.pk}",
        f"practitioner={b_practitioner.pk}",
        f"location=Location/{b_clinic.pk}",
        "date=2026-03-03",
    ):
        assert set(fhir_ids(api, f"/fhir/r4/Appointment?{query}")) <= {mine}, query
    assert fhir_ids(api, f"/fhir/r4/Schedule?_id={b_practitioner.pk}") == []
    assert fhir_ids(api, f"/fhir/r4/Schedule?actor=Location/{b_clinic.pk}") == []
    _, slots = fhir_search(
        api,
        f"/fhir/r4/Slot?schedule=Schedule/{practitioner.pk},Schedule/{b_practitioner.pk}"
        "&start=ge2026-03-03&start=lt2026-03-04",
    )
    assert slots and {s["schedule"]["reference"] for s in slots} == {f"Schedule/{practitioner.pk}"}
    # ... and nothing of B was changed by being looked at through a FHIR write either.
    fhir_outcome(api.delete(f"/fhir/r4/Appointment/{b_appointment}"), 405)
    assert Appointment.objects.get(pk=b_appointment).status == AppointmentStatus.CONFIRMED


# ============================================ Calendar feeds ===================================================


def test_feed_keeps_one_uid_per_appointment_and_raises_sequence_on_every_move_and_cancellation(
    api, patient, practitioner, clinic
):
    """Issue 15: 'stable UID, SEQUENCE incremented on every change, cancelled events as STATUS:CANCELLED';
    docs/reminders.md: 'one more for every move or cancellation ... an entry moves in place'. A move to another
    practitioner of the clinic keeps the UID in the patient's feed and takes the entry to the new
    practitioner's feed."""
    other = PractitionerFactory(clinic=clinic, name="Dr Other")
    made = api_book(api, patient, "2026-03-03T10:00:00+00:00", practitioner=str(practitioner.pk))
    appointment = Appointment.objects.get(pk=made["id"])
    _, patient_token = calendar_feed_create(now=_now(), patient=patient)
    _, first_token = calendar_feed_create(now=_now(), practitioner=practitioner)
    _, other_token = calendar_feed_create(now=_now(), practitioner=other)
    uid = ics_uid(appointment)
    assert feed_of(patient_token)[1][uid]["sequence"] == 0

    moved = api.post(
        f"/api/v1/appointments/{made['id']}/reschedule/",
        {"start": "2026-03-04T11:00:00+00:00", "practitioner": str(other.pk)},
        format="json",
    )
    assert moved.status_code == 201, moved.content
    _, events = feed_of(patient_token)
    assert list(events) == [uid] and events[uid]["sequence"] == 1
    assert events[uid].decoded("dtstart") == datetime(2026, 3, 4, 11, tzinfo=LONDON)
    assert uid in feed_of(other_token)[1] and feed_of(other_token)[1][uid]["sequence"] == 1
    assert uid not in feed_of(first_token)[1]

    moved = api.post(
        f"/api/v1/appointments/{made['id']}/reschedule/", {"start": "2026-03-05T11:00:00+00:00"}, format="json"
    )
    assert moved.status_code == 201, moved.content
    assert feed_of(patient_token)[1][uid]["sequence"] == 2
    api.post(f"/api/v1/appointments/{made['id']}/cancel/", {"reason": "ill"}, format="json")
    event = feed_of(patient_token)[1][uid]
    assert event["sequence"] == 3 and str(event["status"]) == "CANCELLED"
    assert "Change or cancel" not in str(event["description"])  # no link to change a cancelled visit


def test_feed_in_new_york_carries_a_vtimezone_that_knows_the_march_change(catalogue):
    """docs/reminders.md: 'Times are in the clinic's zone with its VTIMEZONE'. Read back with icalendar, the
    VTIMEZONE itself (not only the TZID name) must give -05:00 before 8 March 2026 02:00 and -04:00 after."""
    ny = ClinicFactory(code="qa-ny-feed", timezone="America/New_York")
    doctor = PractitionerFactory(clinic=ny)
    client = http(new_api_client(ny)[1])
    patient = PatientFactory(clinic=ny)
    before = api_book(client, patient, "2026-03-06T15:00:00+00:00")["id"]  # 10:00 EST
    after = api_book(client, patient, "2026-03-09T14:00:00+00:00")["id"]  # 10:00 EDT
    _, token = calendar_feed_create(now=_now(), practitioner=doctor)
    calendar, events = feed_of(token)
    [vtz] = calendar.walk("VTIMEZONE")
    assert str(vtz["tzid"]) == "America/New_York"
    onsets = {}
    for sub in vtz.subcomponents:
        days = [sub.decoded("dtstart").date()]
        rdates = sub.get("rdate", [])
        for rdate in rdates if isinstance(rdates, list) else [rdates]:
            days += [d.dt.date() for d in rdate.dts]
        for day in days:
            onsets[day] = (sub.name, sub.decoded("tzoffsetto"))
    assert onsets[date(2026, 3, 8)] == ("DAYLIGHT", timedelta(hours=-4))
    assert onsets[date(2026, 11, 1)] == ("STANDARD", timedelta(hours=-5))
    in_force = {day: offset for day, (_, offset) in onsets.items()}
    assert in_force[max(d for d in in_force if d <= date(2026, 3, 6))] == timedelta(hours=-5)
    assert in_force[max(d for d in in_force if d <= date(2026, 3, 9))] == timedelta(hours=-4)
    for appointment_id, utc_hour in ((before, 15), (after, 14)):
        event = events[f"appointment-{appointment_id}@clinic-scheduling"]
        assert str(event["dtstart"].params["TZID"]) == "America/New_York"
        start = event.decoded("dtstart")
        assert (start.hour, start.astimezone(UTC).hour) == (10, utc_hour)


def test_feed_marks_a_booking_flagged_for_review_tentative_and_a_cleared_one_confirmed(
    api, patient, practitioner, clinic
):
    """docs/reminders.md: 'A booking awaiting clearance, or one that needs review, is TENTATIVE'; when cleared it
    is final again (CONFIRMED)."""
    made = api_book(api, patient, "2026-03-10T10:00:00+00:00", procedure="microneedling")["id"]
    _, token = calendar_feed_create(now=_now(), practitioner=practitioner)
    uid = f"appointment-{made}@clinic-scheduling"
    assert str(feed_of(token)[1][uid]["status"]) == "CONFIRMED"
    api.post(
        f"/api/v1/patients/{patient.pk}/procedures/",
        {"procedure": "botox", "performed_at": "2026-03-01T10:00:00+00:00"},
        format="json",
    )
    assert Appointment.objects.get(pk=made).status == AppointmentStatus.NEEDS_REVIEW
    assert str(feed_of(token)[1][uid]["status"]) == "TENTATIVE"
    # Issue 15: "SEQUENCE incremented on every change": a calendar may ignore a file whose SEQUENCE did not rise.
    assert int(feed_of(token)[1][uid]["sequence"]) == 1

    held_patient = PatientFactory(clinic=clinic)
    PatientConditionFactory(patient=held_patient, condition_id="eczema", status="history")
    held = api_book(api, held_patient, "2026-03-12T10:00:00+00:00", procedure="microneedling")["id"]
    held_uid = f"appointment-{held}@clinic-scheduling"
    assert str(feed_of(token)[1][held_uid]["status"]) == "TENTATIVE"
    clinician = http(new_api_client(clinic, clinical=True)[1])
    cleared = clinician.post(f"/api/v1/appointments/{held}/clear/", {"reason": "dermatologist ok"}, format="json")
    assert cleared.status_code == 200, cleared.content
    assert str(feed_of(token)[1][held_uid]["status"]) == "CONFIRMED"
    assert int(feed_of(token)[1][held_uid]["sequence"]) == 1


def test_feed_tokens_are_secret_revocable_and_unforgeable(api, patient, practitioner):
    """Issue 15: 'an unguessable, revocable URL'; docs/reminders.md: 'only the token's SHA-256 is stored',
    'Revoke turns the URL into a 404 at once', 'Cache-Control: private, no-store and Referrer-Policy:
    no-referrer'; docs/portal.md: 'Asking again switches the previous link off'."""
    api_book(api, patient, "2026-03-03T10:00:00+00:00")
    first_url = patient_calendar_feed_renew(patient=patient, now=_now())
    first = first_url.rsplit("/", 1)[1].removesuffix(".ics")
    response = Client().get(f"/reminders/calendar/{first}.ics")
    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-store" and response["Referrer-Policy"] == "no-referrer"
    assert not CalendarFeed.objects.filter(token_hash__contains=first).exists()
    assert first.encode() not in response.content  # the credential is not echoed into the calendar

    second = patient_calendar_feed_renew(patient=patient, now=_now()).rsplit("/", 1)[1].removesuffix(".ics")
    assert Client().get(f"/reminders/calendar/{first}.ics").status_code == 404
    assert Client().get(f"/reminders/calendar/{second}.ics").status_code == 200
    for forged in (second.upper(), second + "=", second[:-1], f"{second}.ics", second + "%00", " " + second):
        assert Client().get(f"/reminders/calendar/{forged}.ics").status_code == 404, forged
    calendar_feed_revoke(feeds=CalendarFeed.objects.filter(patient=patient), now=_now())
    assert Client().get(f"/reminders/calendar/{second}.ics").status_code == 404


def test_a_practitioners_feed_holds_only_their_own_clinics_appointments(
    api, patient, practitioner, other_clinic, other_patient, other_practitioner
):
    """Issue 15 and the contract: another organisation's data is never readable. A practitioner's feed has
    their appointments and no one else's; a patient's feed has that patient's only."""
    mine = api_book(api, patient, "2026-03-03T10:00:00+00:00")["id"]
    theirs = api_book(http(new_api_client(other_clinic)[1]), other_patient, "2026-03-03T15:00:00+00:00")["id"]
    _, token = calendar_feed_create(now=_now(), practitioner=practitioner)
    _, their_token = calendar_feed_create(now=_now(), patient=other_patient)
    assert list(feed_of(token)[1]) == [f"appointment-{mine}@clinic-scheduling"]
    assert list(feed_of(their_token)[1]) == [f"appointment-{theirs}@clinic-scheduling"]


# ============================================ Webhooks =========================================================


def test_webhook_is_signed_as_documented_and_its_body_matches_the_api(api, patient, practitioner, receiver):
    """docs/reminders.md: Standard Webhooks headers (`webhook-id` = body `id`, `webhook-timestamp` Unix seconds,
    `webhook-signature`, `webhook-event`), verifiable by hand from the secret shown at registration; the body is
    the appointment 'as the public API shows it (times in the clinic's offset)'."""
    created = register_webhook(api, receiver.url + "/in")
    made = api_book(api, patient, "2026-03-03T10:00:00+00:00")
    sent_at = _now()
    dispatch_local(now=sent_at)
    [request] = receiver.requests
    headers = {k.lower(): v for k, v in request.headers.items()}
    body = json.loads(request.body)
    assert verify_by_hand(created["secret"], request.headers, request.body)
    assert not verify_by_hand("whsec_" + base64.b64encode(b"x" * 24).decode(), request.headers, request.body)
    tampered = request.body.replace(b"confirmed", b"cancelled")
    assert tampered != request.body and not verify_by_hand(created["secret"], request.headers, tampered)
    assert headers["webhook-id"] == body["id"] and headers["webhook-event"] == body["type"] == "appointment.created"
    assert abs(int(headers["webhook-timestamp"]) - sent_at.timestamp()) < 300
    shown = api.get(f"/api/v1/appointments/{made['id']}/").json()
    assert {k: body["data"]["appointment"][k] for k in ("id", "patient", "start", "end", "status", "clinic")} == {
        k: shown[k] for k in ("id", "patient", "start", "end", "status", "clinic")
    }


def test_book_move_cancel_each_reach_the_endpoint_exactly_once_in_order(api, patient, practitioner, receiver):
    """Issue 15: 'deliveries carry an event id and a per-appointment sequence number'; contract: the same
    Idempotency-Key 'returns the first response again ... and creates nothing'; the reschedule dry run and
    eligibility book nothing and send nothing; a refusal sends nothing. After booking, moving and cancelling,
    each retried with its key, the endpoint receives exactly created, rescheduled (with `previous`), cancelled."""
    endpoint = register_webhook(api, receiver.url + "/in")
    body = {"patient": str(patient.pk), "procedure": "botox", "start": "2026-03-03T10:00:00+00:00"}
    for _ in range(2):
        first = api.post("/api/v1/appointments/", body, format="json", HTTP_IDEMPOTENCY_KEY="qa-book-1")
        assert first.status_code == 201
    appointment_id = first.json()["id"]
    # Too close for microneedling (2 weeks after Botox): a 409 that sends nothing.
    api_book(api, patient, "2026-03-05T10:00:00+00:00", procedure="microneedling", expect=409)
    check = {"patient": str(patient.pk), "procedure": "botox", "start": "2026-03-12T10:00:00+00:00"}
    assert api.post("/api/v1/eligibility/", check, format="json").status_code == 200
    dry = api.post(
        f"/api/v1/appointments/{appointment_id}/reschedule-check/",
        {"start": "2026-03-04T10:00:00+00:00"},
        format="json",
    )
    assert dry.status_code == 200 and dry.json()["eligible"] is True
    for _ in range(2):
        moved = api.post(
            f"/api/v1/appointments/{appointment_id}/reschedule/",
            {"start": "2026-03-04T10:00:00+00:00"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="qa-move-1",
        )
        assert moved.status_code == 201
    for _ in range(2):
        gone = api.post(
            f"/api/v1/appointments/{appointment_id}/cancel/", {}, format="json", HTTP_IDEMPOTENCY_KEY="qa-cancel-1"
        )
        assert gone.status_code == 200
    assert problem_of(api.post(f"/api/v1/appointments/{appointment_id}/cancel/", {}, format="json"), 409)

    dispatch_local(now=_now())
    dispatch_local(now=_now() + timedelta(minutes=1))  # nothing is left to send twice
    bodies = [json.loads(r.body) for r in receiver.requests]
    assert [b["type"] for b in bodies] == ["appointment.created", "appointment.rescheduled", "appointment.cancelled"]
    assert {b["data"]["appointment"]["id"] for b in bodies} == {appointment_id}
    sequences = [b["sequence"] for b in bodies]
    assert sequences == sorted(set(sequences))
    assert len({b["event_id"] for b in bodies}) == 3
    assert bodies[1]["data"]["previous"]["start"] == "2026-03-03T10:00:00+00:00"
    assert bodies[1]["data"]["appointment"]["start"] == "2026-03-04T10:00:00+00:00"
    assert bodies[2]["data"]["appointment"]["status"] == "cancelled"
    listed = api.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries/").json()
    assert listed["count"] == 3 and {d["status"] for d in listed["results"]} == {"sent"}


def test_an_endpoint_gets_only_the_events_it_chose(api, patient, practitioner, receiver):
    """docs/api.md: '`events`: a list drawn from the lifecycle's events ... empty means all'."""
    only_cancel = register_webhook(api, receiver.url + "/cancel", events=["appointment.cancelled"])
    every = register_webhook(api, receiver.url + "/all")
    made = api_book(api, patient, "2026-03-03T10:00:00+00:00")["id"]
    api.post(f"/api/v1/appointments/{made}/reschedule/", {"start": "2026-03-04T10:00:00+00:00"}, format="json")
    api.post(f"/api/v1/appointments/{made}/cancel/", {}, format="json")
    assert [e for e, _, _ in outbox_events(only_cancel["id"])] == ["appointment.cancelled"]
    assert [e for e, _, _ in outbox_events(every["id"])] == [
        "appointment.created",
        "appointment.rescheduled",
        "appointment.cancelled",
    ]
    # One event, one event_id, whichever endpoint it goes to.
    cancels = OutboxMessage.objects.filter(event="appointment.cancelled", channel="webhook")
    assert cancels.count() == 2 and len({m.payload["event_id"] for m in cancels}) == 1


def test_no_event_of_another_organisations_patients_reaches_a_platform(
    api, clinic, patient, practitioner, other_clinic, other_patient, other_practitioner, settings
):
    """Contract: 'Anything of another organisation is a 404'; docs/reminders.md: 'An endpoint gets events for
    appointments in its client's clinics'. Organisation B's bookings, moves, cancellations and a re-check of a
    B patient's record send nothing to A's platform, whether A was granted a clinic or a whole organisation."""
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = True
    a_clinic_hook = register_webhook(api, "https://a.example.com/in")
    org_client, org_key = new_api_client(name="qa-org-grant")
    org_client.organisations.set([clinic.organisation])
    org_hook = register_webhook(http(org_key), "https://a-org.example.com/in")
    b_api = http(new_api_client(other_clinic)[1])
    b_hook = register_webhook(b_api, "https://b.example.com/in")

    theirs = api_book(b_api, other_patient, "2026-03-10T15:00:00+00:00", procedure="microneedling")["id"]
    b_api.post(f"/api/v1/appointments/{theirs}/reschedule/", {"start": "2026-03-11T15:00:00+00:00"}, format="json")
    b_api.post(
        f"/api/v1/patients/{other_patient.pk}/procedures/",
        {"procedure": "botox", "performed_at": "2026-03-01T15:00:00+00:00"},
        format="json",
    )
    assert Appointment.objects.get(pk=theirs).status == AppointmentStatus.NEEDS_REVIEW
    b_api.post(f"/api/v1/appointments/{theirs}/cancel/", {}, format="json")
    mine = api_book(api, patient, "2026-03-03T10:00:00+00:00")["id"]

    assert [e for e, _, _ in outbox_events(b_hook["id"])] == [
        "appointment.created",
        "appointment.rescheduled",
        "appointment.needs_review",
        "appointment.cancelled",
    ]
    for platform, hook in ((api, a_clinic_hook), (http(org_key), org_hook)):
        assert outbox_events(hook["id"]) == [("appointment.created", mine, 1)]
        listed = platform.get(f"/api/v1/webhooks/{hook['id']}/deliveries/").json()["results"]
        assert [(d["event"], d["appointment"]) for d in listed] == [("appointment.created", mine)]


def test_a_paused_deleted_or_revoked_endpoint_gets_nothing_and_resuming_starts_afresh(
    api, api_key, patient, practitioner, receiver
):
    """docs/api.md: 'Pausing writes no new deliveries for the endpoint and cancels the unsent ones when their
    turn comes; deleting does the same for good'. A revoked client's key stops working at once (docs/api.md);
    its endpoints get nothing more either."""
    paused = register_webhook(api, receiver.url + "/paused")
    deleted = register_webhook(api, receiver.url + "/deleted")
    made = api_book(api, patient, "2026-03-03T10:00:00+00:00")["id"]  # one unsent delivery for each
    api.patch(f"/api/v1/webhooks/{paused['id']}/", {"active": False}, format="json")
    assert api.delete(f"/api/v1/webhooks/{deleted['id']}/").status_code == 204
    api.post(f"/api/v1/appointments/{made}/reschedule/", {"start": "2026-03-04T10:00:00+00:00"}, format="json")
    assert outbox_events(paused["id"]) == [("appointment.created", made, 1)]  # nothing new while paused
    dispatch_local(now=_now())
    assert receiver.requests == []
    assert set(OutboxMessage.objects.filter(channel="webhook").values_list("status", flat=True)) == {"cancelled"}

    resumed = api.patch(f"/api/v1/webhooks/{paused['id']}/", {"active": True}, format="json")
    assert resumed.status_code == 200 and resumed.json()["active"] is True
    api.post(f"/api/v1/appointments/{made}/cancel/", {}, format="json")
    dispatch_local(now=_now())
    assert [json.loads(r.body)["type"] for r in receiver.requests] == ["appointment.cancelled"]

    # The platform is revoked: its key is refused and its endpoint hears no more.
    client = ApiClient.objects.get(webhook_endpoints__pk=paused["id"])
    client.revoked_at = _now()
    client.save(update_fields=["revoked_at"])
    other_api = http(new_api_client(practitioner.clinic, name="qa-still-here")[1])
    api_book(other_api, patient, "2026-03-05T10:00:00+00:00")
    assert api.get("/api/v1/webhooks/").status_code == 401
    dispatch_local(now=_now())
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    "body, field",
    [
        ({"url": "https://hooks.example.com/x", "events": ["appointment.bogus"]}, "events"),
        ({"url": "https://hooks.example.com/x", "events": "appointment.created"}, "events"),
        ({"url": "https://hooks.example.com/x", "events": [None]}, "events"),
        ({"url": "https://hooks.example.com/x", "secret": "whsec_" + "A" * 32}, "secret"),
        ({"url": "https://hooks.example.com/x", "client": "someone-else"}, "client"),
        ({"url": "https://hooks.example.com/x", "active": "sometimes"}, "active"),
        ({"url": "https://hooks.example.com/x", "description": "x" * 10_000}, "description"),
        ({"url": "https://" + "a" * 3000 + ".example.com/"}, "url"),
        ({"url": "https://user:pw@[::1]/x"}, "url"),
        ({"url": "https://169.254.169.254/latest/meta-data"}, "url"),
        ({"url": "https://0.0.0.0/x"}, "url"),
        ({"url": "https://[::ffff:127.0.0.1]/x"}, "url"),
        ({"url": "https://2130706433/x"}, "url"),  # 127.0.0.1 as one decimal number
        ({}, "url"),
    ],
)
def test_webhook_registration_refuses_bad_input_and_stores_nothing(api, settings, monkeypatch, body, field):
    """docs/api.md: '`url` must be `https://` and may not resolve to a private, loopback, link-local, reserved or
    multicast address ... 400 `invalid_webhook_endpoint` naming `url`'; bodies 'refuse fields they do not
    document'; every 400 has `errors: {field: [...]}`."""
    from reminders import channels

    settings.WEBHOOKS_ALLOW_HTTP = False
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = False

    def resolve(host, port):
        import ipaddress

        try:
            return [(2, 1, 6, "", (str(ipaddress.ip_address(host)), 0))]
        except ValueError:
            if host == "2130706433":
                return [(2, 1, 6, "", ("127.0.0.1", 0))]
            return [(2, 1, 6, "", ("93.184.215.14", 0))]

    monkeypatch.setattr(channels.socket, "getaddrinfo", resolve)
    response = api.post("/api/v1/webhooks/", body, format="json")
    errors = problem_of(response, 400)["errors"]
    assert any(key == field or key.startswith(field + ".") for key in errors), errors
    assert not WebhookEndpoint.objects.exists()


def test_webhook_changes_are_validated_like_registration_and_store_nothing(api, settings, monkeypatch):
    """docs/api.md: PATCH changes `url`, `events`, `description`, `active`; a private URL is refused as at
    registration; fields not documented are refused; nothing changes on a refusal."""
    from reminders import channels

    settings.WEBHOOKS_ALLOW_HTTP = False
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = False
    monkeypatch.setattr(channels.socket, "getaddrinfo", lambda host, port: [(2, 1, 6, "", ("93.184.215.14", 0))])
    hook = register_webhook(api, "https://hooks.example.com/in", events=["appointment.created"])
    before = WebhookEndpoint.objects.values().get()
    for change, field in [
        ({"url": "https://10.0.0.1/x"}, "url"),
        ({"url": "http://hooks.example.com/in"}, "url"),
        ({"events": ["appointment.nope"]}, "events"),
        ({"secret": "whsec_" + "B" * 32}, "secret"),
        ({"previous_secret": "x"}, "previous_secret"),
        ({"url": "https://hooks.example.com/ok", "client": "x"}, "client"),
    ]:
        response = api.patch(f"/api/v1/webhooks/{hook['id']}/", change, format="json")
        errors = problem_of(response, 400)["errors"]
        assert any(key == field or key.startswith(field + ".") for key in errors), (change, errors)
    assert WebhookEndpoint.objects.values().get() == before
    for overlap in (-1, 10081, "soon", 1.5, None):
        response = api.post(
            f"/api/v1/webhooks/{hook['id']}/rotate-secret/", {"overlap_minutes": overlap}, format="json"
        )
        assert problem_of(response, 400)["errors"].get("overlap_minutes"), overlap
    assert WebhookEndpoint.objects.values().get() == before


def test_a_plan_booked_over_the_api_announces_each_session_once(api, patient, practitioner, receiver):
    """Issue 15: 'Every write path fires them: API, front desk, admin, plans, re-checks'. A microneedling course
    of three sessions, booked in one request, sends one `appointment.created` per session."""
    from plans.defaults import plan_templates_load

    plan_templates_load()
    hook = register_webhook(api, receiver.url + "/in")
    response = api.post(
        f"/api/v1/patients/{patient.pk}/plans/",
        {"template": "microneedling-course", "start_from": "2026-03-09"},
        format="json",
    )
    assert response.status_code == 201, response.content
    sessions = [s["appointment"] for s in response.json()["sessions"]]
    assert len(sessions) == 3
    events = outbox_events(hook["id"])
    assert sorted(a for _, a, _ in events) == sorted(sessions)
    assert {e for e, _, _ in events} == {"appointment.created"}


def test_webhook_endpoints_and_deliveries_of_another_organisation_are_404(
    api, patient, practitioner, other_clinic, other_patient, other_practitioner, settings
):
    """docs/api.md: 'Another client's endpoints are not found (404 `unknown_webhook_endpoint`)'. B's endpoint and
    delivery ids, guessed by A, are 404 for every operation and change nothing."""
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = True
    b_api = http(new_api_client(other_clinic)[1])
    b_hook = register_webhook(b_api, "https://b.example.com/in")
    a_hook = register_webhook(api, "https://a.example.com/in")
    api_book(b_api, other_patient, "2026-03-03T15:00:00+00:00")
    [delivery] = b_api.get(f"/api/v1/webhooks/{b_hook['id']}/deliveries/").json()["results"]
    for method, path, body in (
        ("get", f"/api/v1/webhooks/{b_hook['id']}/", None),
        ("patch", f"/api/v1/webhooks/{b_hook['id']}/", {"active": False}),
        ("delete", f"/api/v1/webhooks/{b_hook['id']}/", None),
        ("post", f"/api/v1/webhooks/{b_hook['id']}/rotate-secret/", {"overlap_minutes": 0}),
        ("get", f"/api/v1/webhooks/{b_hook['id']}/deliveries/", None),
        ("post", f"/api/v1/webhooks/{a_hook['id']}/deliveries/{delivery['id']}/redeliver/", {}),
    ):
        call = getattr(api, method)
        response = call(path, body, format="json") if body is not None else call(path)
        assert problem_of(response, 404)["code"] in ("unknown_webhook_endpoint", "unknown_webhook_delivery")
    endpoint = WebhookEndpoint.objects.get(pk=b_hook["id"])
    assert endpoint.is_active and endpoint.secret == b_hook["secret"] and endpoint.previous_secret == ""
    assert OutboxMessage.objects.filter(endpoint_id=a_hook["id"]).count() == 0


def test_reschedule_dry_run_of_another_organisations_appointment_is_404(
    api, patient, practitioner, other_clinic, other_patient, other_practitioner
):
    """Issue 15 item 4 and docs/api.md: reschedule-check answers '404 for an appointment outside your clinics';
    a practitioner outside your clinics is a 400 `unknown_practitioner`. Nothing moves."""
    theirs = api_book(http(new_api_client(other_clinic)[1]), other_patient, "2026-03-03T15:00:00+00:00")["id"]
    mine = api_book(api, patient, "2026-03-03T10:00:00+00:00")["id"]
    response = api.post(
        f"/api/v1/appointments/{theirs}/reschedule-check/", {"start": "2026-03-04T15:00:00+00:00"}, format="json"
    )
    assert problem_of(response, 404)["code"] == "unknown_appointment"
    response = api.post(
        f"/api/v1/appointments/{mine}/reschedule-check/",
        {"start": "2026-03-04T10:00:00+00:00", "practitioner": str(other_practitioner.pk)},
        format="json",
    )
    assert problem_of(response, 400)["code"] == "unknown_practitioner"
    assert Appointment.objects.get(pk=theirs).start_at == datetime(2026, 3, 3, 15, tzinfo=UTC)


def test_a_patient_cancelling_on_their_own_page_reaches_the_platform_and_their_calendar(
    api, patient, practitioner, receiver, settings
):
    """Issue 15: webhooks fire on 'Every write path'; docs/portal.md: the patient's calendar link 'follows every
    move and cancellation (one UID per appointment, a rising SEQUENCE)'."""
    from reminders.links import manage_token

    settings.REMINDERS_PUBLIC_BASE_URL = "https://clinic.example"
    hook = register_webhook(api, receiver.url + "/in")
    made = api_book(api, patient, "2026-03-10T10:00:00+00:00")["id"]
    feed_url = patient_calendar_feed_renew(patient=patient, now=_now())
    token = feed_url.rsplit("/", 1)[1].removesuffix(".ics")
    uid = f"appointment-{made}@clinic-scheduling"
    assert feed_of(token)[1][uid]["sequence"] == 0

    appointment = Appointment.objects.get(pk=made)
    response = Client().post(f"/my/{manage_token(appointment)}/cancel/", {"reason": "cannot come"})
    assert response.status_code in (302, 303), response.status_code
    assert Appointment.objects.get(pk=made).status == AppointmentStatus.CANCELLED
    assert [e for e, _, _ in outbox_events(hook["id"])] == ["appointment.created", "appointment.cancelled"]
    event = feed_of(token)[1][uid]
    assert str(event["status"]) == "CANCELLED" and event["sequence"] == 1


def test_webhook_grants_and_event_choices_take_effect_at_once(api, clinic, practitioner, west, patient, settings):
    """docs/reminders.md: 'An endpoint gets events for appointments in its client's clinics'; docs/api.md:
    PATCH changes `events`. A clinic granted later is heard from the next booking on; one taken away is not;
    a narrowed event list applies to the next event."""
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = True
    PractitionerFactory(clinic=west, name="Dr West")
    client, key = new_api_client(clinic, name="qa-growing")
    platform = http(key)
    hook = register_webhook(platform, "https://grow.example.com/in")
    west_api = http(new_api_client(west)[1])

    first = api_book(west_api, patient, "2026-03-03T10:00:00+00:00", clinic=west.code)["id"]
    assert outbox_events(hook["id"]) == []
    client.clinics.add(west)
    second = api_book(west_api, patient, "2026-03-04T10:00:00+00:00", clinic=west.code)["id"]
    assert [a for _, a, _ in outbox_events(hook["id"])] == [second]
    client.clinics.remove(west)
    api_book(west_api, patient, "2026-03-05T10:00:00+00:00", clinic=west.code)
    assert [a for _, a, _ in outbox_events(hook["id"])] == [second]

    changed = platform.patch(f"/api/v1/webhooks/{hook['id']}/", {"events": ["appointment.cancelled"]}, format="json")
    assert changed.status_code == 200
    mine = api_book(platform, patient, "2026-03-06T10:00:00+00:00", clinic=clinic.code)["id"]
    platform.post(f"/api/v1/appointments/{mine}/cancel/", {}, format="json")
    assert [(e, a) for e, a, _ in outbox_events(hook["id"])] == [
        ("appointment.created", second),
        ("appointment.cancelled", mine),
    ]
    assert first not in [a for _, a, _ in outbox_events(hook["id"])]


def test_a_delivery_queued_before_a_grant_was_taken_away_does_not_go(api, clinic, west, patient, receiver):
    """Asked of this probe: a delivery queued while the platform was granted a clinic went out after the grant
    was taken away. api-contract: anything outside a client's clinics is not theirs to read; the send step now
    checks the grant as it checks a paused endpoint (reminders.verdicts.still_wanted)."""
    PractitionerFactory(clinic=west, name="Dr West")
    client, key = new_api_client(clinic, west, name="qa-shrinking")
    platform = http(key)
    hook = register_webhook(platform, receiver.url)
    made = api_book(platform, patient, "2026-03-03T10:00:00+00:00", clinic=west.code)["id"]
    [queued] = OutboxMessage.objects.filter(endpoint_id=hook["id"])
    assert queued.payload["data"]["appointment"]["id"] == made

    client.clinics.remove(west)
    dispatch_local(now=queued.due_at + timedelta(minutes=1))

    queued.refresh_from_db()
    assert queued.status == "cancelled" and "no longer granted" in queued.last_error
    assert receiver.requests == []


def test_webhook_times_are_in_the_clinics_offset_either_side_of_dst(catalogue, settings):
    """docs/reminders.md: 'Body (frozen when the event happened; times in the clinic's offset)'. New York: a
    booking made in EST for a day in EDT shows -05:00 for `occurred_at` and -04:00 for the start."""
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = True
    ny = ClinicFactory(code="qa-ny-hook", timezone="America/New_York")
    PractitionerFactory(clinic=ny)
    platform = http(new_api_client(ny)[1])
    hook = register_webhook(platform, "https://ny.example.com/in")
    made = api_book(platform, PatientFactory(clinic=ny), "2026-03-09T14:00:00+00:00")["id"]
    platform.post(f"/api/v1/appointments/{made}/reschedule/", {"start": "2026-03-06T15:00:00+00:00"}, format="json")
    created, moved = OutboxMessage.objects.filter(endpoint_id=hook["id"]).order_by("created_at", "id")
    assert created.payload["occurred_at"].endswith("-05:00")
    assert created.payload["data"]["appointment"]["start"] == "2026-03-09T10:00:00-04:00"
    assert created.payload["data"]["appointment"]["end"] == "2026-03-09T10:30:00-04:00"
    assert moved.payload["data"]["appointment"]["start"] == "2026-03-06T10:00:00-05:00"
    assert moved.payload["data"]["previous"]["start"] == "2026-03-09T10:00:00-04:00"


def test_fhir_refuses_revoked_keys_and_throttles_with_operation_outcomes(api, api_key, practitioner, settings):
    """docs/fhir.md: 'No key: 401 with WWW-Authenticate: Token'; 'The throttle is the v1 one (API_THROTTLE_RATE,
    429 with Retry-After)'; every error an OperationOutcome. docs/api.md: a revoked key is a 401."""
    settings.API_THROTTLE_RATE = "3/min"
    for _ in range(3):
        assert api.get("/fhir/r4/Schedule").status_code == 200
    throttled = api.get("/fhir/r4/Schedule")
    assert fhir_outcome(throttled, 429)["code"] == "throttled"
    assert int(throttled["Retry-After"]) >= 1
    ApiClient.objects.update(revoked_at=_now())
    revoked = http(api_key).get("/fhir/r4/Appointment")
    assert fhir_outcome(revoked, 401)["code"] == "login" and revoked["WWW-Authenticate"] == "Token"


def test_a_host_that_turns_private_after_registration_is_not_posted_to(
    api, patient, practitioner, settings, monkeypatch
):
    """docs/api.md: the URL 'may not resolve to a private, loopback, link-local ... address'; 'The host is resolved
    at registration and again before every delivery'. A name that resolved publicly when registered and points
    at 10.0.0.5 when the delivery is due is never contacted; the delivery fails and says why."""
    from reminders import channels

    settings.WEBHOOKS_ALLOW_HTTP = False
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = False
    address = {"now": "93.184.215.14"}
    monkeypatch.setattr(channels.socket, "getaddrinfo", lambda host, port: [(2, 1, 6, "", (address["now"], 0))])
    posted = []
    monkeypatch.setattr(channels, "_post", lambda url, data, headers: posted.append(url) or (200, b"{}"))
    hook = register_webhook(api, "https://rebind.example.com/in")
    api_book(api, patient, "2026-03-03T10:00:00+00:00")
    address["now"] = "10.0.0.5"
    dispatch_local(now=_now())
    assert posted == []
    [delivery] = api.get(f"/api/v1/webhooks/{hook['id']}/deliveries/").json()["results"]
    assert delivery["status"] == "failed" and "private" in delivery["last_error"]
    assert delivery["response_code"] is None
