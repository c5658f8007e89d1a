"""Review of 910650d..HEAD (5 December 2026): availability that jumps over busy spans and blocked ranges, the
compiled timeline read, the claim's rest read by two IN lists, the contract mends (proposal line, redelivery body,
local times, an event named twice) and the SMS-only microneedling aftercare text (fixture and migration 0018).

It found five defects, mended the same day (each test below failed before its mend): the claim's rest read took rows
of pairs it did not hold under its limit (now one condition a channel); an endpoint stored with an event named twice
could not be paused (migration 0019); the SMS-only aftercare did not fit a long clinic name (shortened) nor one with
a letter like Ł (now folded to its GSM look-alike); a proposal line naming no practitioner ignored the plan's own.
The other tests hold what the review checked and found right:
free_slots equals the definition on zero-length and negative spans, a window end on a step, DST gaps and repeats,
touching blocked ranges, and end to end against one `appointment_check` per step; the compiled window read equals
the ORM's for other code sets of one length on one connection and for an id given as a string; migration 0018
replaces only the unedited wording and goes back.
"""

from __future__ import annotations

import importlib
import uuid
from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.apps import apps as django_apps

from clinic.models import Appointment, WorkingHours
from reminders import dispatch, riders
from reminders.models import OutboxMessage, ReminderTemplate, WebhookEndpoint
from reminders.texts import sms_segments
from scheduler import selectors
from scheduler.availability import Schedule, _Busy
from scheduler.booking import appointment_complete
from scheduler.rules import BlockedSpans
from tests.api.conftest import _clock, http, new_api_client  # noqa: F401 (_clock: autouse fixture, the API clock)
from tests.factories import AppointmentFactory, ClinicFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import CLINICIAN, book, ldn, texts
from tests.scheduler.helpers import reference

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("catalogue")]

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
MIGRATION = importlib.import_module("reminders.migrations.0018_sms_only_aftercare_gives_the_first_week")


# --- (1) free_slots against the definition, on the edges the property test does not draw ----------------------


def _schedule(tz, periods_by_weekday, *, booked=(), patient=(), off=()):
    practitioner = SimpleNamespace(id=uuid.UUID(int=11), name="Dr Edge")
    schedule = Schedule.__new__(Schedule)
    schedule.tz, schedule.practitioners = tz, [practitioner]
    schedule._periods = {(practitioner.id, wd): periods for wd, periods in periods_by_weekday.items()}
    schedule._patient_busy = _Busy(patient)
    schedule._off = {practitioner.id: _Busy(off)} if off else {}
    schedule._booked = {practitioner.id: _Busy(booked)}
    schedule._empty = _Busy(())
    return schedule


def _same_as_definition(schedule, **asked):
    got = list(schedule.free_slots(**asked))
    assert got == reference(schedule, **asked)
    return got


def _utc(tz, d, hh, mm=0, fold=0):
    return datetime.combine(d, time(hh, mm), tzinfo=tz).replace(fold=fold).astimezone(UTC)


def test_zero_length_and_negative_busy_spans_and_a_window_end_exactly_on_a_step_match_the_definition():
    day = date(2026, 3, 4)
    at = lambda hh, mm=0: _utc(LONDON, day, hh, mm)  # noqa: E731
    schedule = _schedule(
        LONDON,
        {day.weekday(): [(time(9), time(13))]},
        booked=[(at(10, 10), at(10, 10)), (at(11, 40), at(11, 5))],  # zero-length; negative (end before start)
        patient=[(at(12), at(12))],
    )
    got = _same_as_definition(
        schedule,
        duration=timedelta(minutes=30),
        step=timedelta(minutes=20),  # does not divide the period, nor the duration
        window_start=at(9, 20),
        window_end=at(12, 20),  # exactly on a step: included
        blocked=None,
    )
    assert got[-1].start_at == at(12, 20)


@pytest.mark.parametrize(
    "tz, day, period",
    [
        (LONDON, date(2026, 3, 29), (time(0, 30), time(3, 15))),  # 01:00-02:00 does not exist
        (LONDON, date(2026, 3, 29), (time(1, 15), time(2, 45))),  # opens and closes in the gap
        (LONDON, date(2026, 10, 25), (time(0, 30), time(3, 0))),  # 01:00-02:00 happens twice
        (NEW_YORK, date(2026, 3, 8), (time(1, 0), time(4, 0))),
        (NEW_YORK, date(2026, 11, 1), (time(0, 0), time(2, 30))),
    ],
)
def test_dst_days_with_busy_and_blocked_spans_match_the_definition(tz, day, period):
    first = _utc(tz, day, 0)
    schedule = _schedule(
        tz,
        {day.weekday(): [period]},
        booked=[(first + timedelta(minutes=70), first + timedelta(minutes=95))],
        patient=[(first + timedelta(minutes=130), first + timedelta(minutes=131))],
    )
    for blocked in (
        None,
        BlockedSpans([(None, first + timedelta(minutes=50))]),
        # touching ranges as given (blocked_ranges merges them; free_from must still not land inside the second)
        BlockedSpans(
            [
                (first + timedelta(minutes=40), first + timedelta(minutes=60)),
                (first + timedelta(minutes=60), first + timedelta(minutes=100)),
            ]
        ),
    ):
        _same_as_definition(
            schedule,
            duration=timedelta(minutes=25),
            step=timedelta(minutes=15),
            window_start=first - timedelta(hours=1),
            window_end=first + timedelta(hours=6),
            blocked=blocked,
        )


# --- (2) the compiled timeline read --------------------------------------------------------------------------


def _event_ids(timeline):
    return sorted(e.id for events in timeline._events.values() for e in events)


def _kinds_ids_codes(rows):
    return sorted((row[0], str(row[1]), row[3]) for row in rows)


def test_compiled_window_read_gives_the_orms_rows_for_other_codes_of_the_same_length_and_a_string_id(clinic):
    patient = PatientFactory(clinic=clinic)
    someone_else = PatientFactory(clinic=clinic)
    for code, start in [
        ("botox", datetime(2026, 3, 4, 10, tzinfo=UTC)),
        ("filler", datetime(2026, 3, 6, 10, tzinfo=UTC)),
    ]:
        AppointmentFactory(patient=patient, procedure_id=code, start_at=start)
        AppointmentFactory(patient=someone_else, procedure_id=code, start_at=start)
    since, until = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC)
    for codes in (["botox", "plasma_pen"], ["filler", "microneedling"], ["botox", "filler"]):
        compiled = selectors._WINDOW.rows(patient.pk, codes, since, until)
        orm = list(selectors._window_of(patient.pk, codes, since, until))
        assert _kinds_ids_codes(compiled) == _kinds_ids_codes(orm)
    # An id given as a string (any spelling uuid.UUID reads) is the same patient.
    rulebook = selectors.rulebook_load(patient.organisation_id)
    by_uuid = selectors.timeline_for_window(
        patient.pk, rulebook=rulebook, procedure="microneedling", lo=since, hi=until
    )
    by_str = selectors.timeline_for_window(
        str(patient.pk).upper(), rulebook=rulebook, procedure="microneedling", lo=since, hi=until
    )
    assert _event_ids(by_str) == _event_ids(by_uuid)
    assert len(_event_ids(by_uuid)) == 2


# --- (3) the claim's rest, read by two IN lists --------------------------------------------------------------


def _row(appointment, channel, due_at):
    return OutboxMessage.objects.create(
        appointment=appointment, kind="reminder", channel=channel, due_at=due_at, created_at=due_at
    )


def test_a_full_claim_takes_the_rest_of_its_pairs_even_when_the_other_channel_of_a_patient_has_many_rows(clinic):
    """A claim of 2 holds Ada's e-mail and Bea's text. Ada also has 20 texts due (a backlog), earlier than Bea's
    second text. Expected, as before 1e40456: Bea's second text and Ada's second e-mail are claimed with them
    (their pairs are in the claim). Now: the two IN lists read Ada's texts too, they fill the LIMIT of
    2 * pairs * MAX_MERGED = 20 and are then dropped in Python: nothing of the claim's own pairs is taken."""
    ada = AppointmentFactory(patient=PatientFactory(clinic=clinic, first_name="Ada"))
    bea = AppointmentFactory(patient=PatientFactory(clinic=clinic, first_name="Bea"))
    t0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
    _row(ada, "email", t0)
    _row(bea, "sms", t0 + timedelta(seconds=1))
    for i in range(2 * 2 * riders.MAX_MERGED):
        _row(ada, "sms", t0 + timedelta(seconds=10 + i))
    bea_second = _row(bea, "sms", t0 + timedelta(minutes=10))
    ada_second = _row(ada, "email", t0 + timedelta(minutes=10))
    claims, _ = dispatch._claim_due(now=t0 + timedelta(hours=1), limit=2)
    claimed = {c.message_id for c in claims}
    assert bea_second.pk in claimed and ada_second.pk in claimed


def test_a_full_claim_takes_the_rest_of_its_pairs_and_never_a_pair_it_does_not_hold(clinic):
    ada = AppointmentFactory(patient=PatientFactory(clinic=clinic, first_name="Ada"))
    bea = AppointmentFactory(patient=PatientFactory(clinic=clinic, first_name="Bea"))
    t0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
    _row(ada, "email", t0)
    _row(bea, "sms", t0 + timedelta(seconds=1))
    ada_texts = [_row(ada, "sms", t0 + timedelta(seconds=10 + i)) for i in range(3)]
    bea_mail = _row(bea, "email", t0 + timedelta(seconds=20))
    bea_second = _row(bea, "sms", t0 + timedelta(minutes=10))
    claims, _ = dispatch._claim_due(now=t0 + timedelta(hours=1), limit=2)
    claimed = {c.message_id for c in claims}
    assert bea_second.pk in claimed
    assert not claimed & {m.pk for m in [*ada_texts, bea_mail]}
    assert OutboxMessage.objects.filter(pk__in=[m.pk for m in [*ada_texts, bea_mail]], status="pending").count() == 4


# --- (4) webhooks: an event named twice ------------------------------------------------------------------------


@pytest.fixture
def public_dns(monkeypatch):
    from reminders import channels

    monkeypatch.setattr(channels.socket, "getaddrinfo", lambda host, port: [(2, 1, 6, "", ("93.184.215.14", 0))])


def test_an_endpoint_registered_before_the_change_with_an_event_twice_can_still_be_paused(clinic, public_dns):
    """Found by this review: such an endpoint (accepted before 738bbab) failed the new check on its next change, a
    400 on `events`, a field the caller did not send. Migration 0019 keeps each event once, in order."""
    import importlib

    from django.apps import apps

    client, key = new_api_client(clinic, name="platform")
    endpoint = WebhookEndpoint.objects.create(
        client=client,
        url="https://hooks.platform.example/clinic",
        events=["appointment.created", "appointment.cancelled", "appointment.created"],
        secret="whsec_" + "a" * 40,
    )
    importlib.import_module("reminders.migrations.0019_webhook_events_each_once").each_once(apps, None)
    endpoint.refresh_from_db()
    assert endpoint.events == ["appointment.created", "appointment.cancelled"]
    response = http(key).patch(f"/api/v1/webhooks/{endpoint.pk}/", {"active": False}, format="json")
    assert response.status_code == 200, response.content
    endpoint.refresh_from_db()
    assert endpoint.is_active is False


def test_registering_an_event_twice_keeps_it_once(clinic, public_dns):
    _, key = new_api_client(clinic, name="platform")
    api = http(key)
    url = "https://hooks.platform.example/clinic"
    twice = api.post("/api/v1/webhooks/", {"url": url, "events": ["appointment.created"] * 2}, format="json")
    assert twice.status_code == 201, twice.content
    assert twice.json()["events"] == ["appointment.created"]


# --- (5) the SMS-only aftercare text and migration 0018 --------------------------------------------------------

# 132 plain characters: a long but real-looking trading name (the field takes 200).
LONG_NAME = (
    "The Harley Street Centre for Aesthetic Dermatology, Laser Surgery and Skin Rejuvenation "
    "- Dr Eleanor Whitcombe-Hargreaves & Partners"
)


def _clinic_all_hours(name):
    clinic = ClinicFactory(code="qa-dec5-long", name=name, timezone="Europe/London")
    practitioner = PractitionerFactory(clinic=clinic, name="Dr Dec5", hours=[])
    WorkingHours.objects.bulk_create(
        WorkingHours(practitioner=practitioner, weekday=d, start_time=time(0, 0), end_time=time(23, 59))
        for d in range(7)
    )
    return clinic


def test_the_sms_only_aftercare_reaches_a_patient_of_a_clinic_with_a_long_name(care_texts, message_outboxes):
    assert len(LONG_NAME) == 132
    clinic = _clinic_all_hours(LONG_NAME)
    patient = PatientFactory(
        clinic=clinic, email="", reminder_channels=["sms"], sms_consent=True, phone="+447911123997"
    )
    appointment = book(patient, ldn(2026, 3, 10, 10), datetime(2026, 3, 2, 9, tzinfo=UTC))
    done = ldn(2026, 3, 10, 13)
    with time_machine.travel(done, tick=False):
        appointment_complete(appointment=appointment, actor=CLINICIAN, now=done)
        dispatch.dispatch_local(now=done)
    # The wording before 0018 fitted this name: a regression, not a name that never fitted.
    assert sms_segments(MIGRATION.BEFORE.replace("{{ clinic_name }}", LONG_NAME))[0] <= 3
    assert [t for t in texts() if "aftercare" in t], OutboxMessage.objects.filter(
        appointment=appointment, channel="sms", kind="post_care"
    ).values_list("status", "last_error")


def test_the_sms_only_aftercare_reaches_a_patient_of_a_polish_clinic(care_texts, message_outboxes):
    clinic = _clinic_all_hours("Klinika Urody Łódź")
    patient = PatientFactory(
        clinic=clinic, email="", reminder_channels=["sms"], sms_consent=True, phone="+447911123996"
    )
    appointment = book(patient, ldn(2026, 3, 10, 10), datetime(2026, 3, 2, 9, tzinfo=UTC))
    done = ldn(2026, 3, 10, 13)
    with time_machine.travel(done, tick=False):
        appointment_complete(appointment=appointment, actor=CLINICIAN, now=done)
        dispatch.dispatch_local(now=done)
    assert [t for t in texts() if "aftercare" in t], OutboxMessage.objects.filter(
        appointment=appointment, channel="sms", kind="post_care"
    ).values_list("status", "last_error")


def test_migration_0018_replaces_only_the_shipped_wording_and_goes_back(care_texts):
    shipped = ReminderTemplate.objects.filter(default_key="microneedling-post-care-completion")
    assert shipped.exists()
    assert set(shipped.values_list("sms_text", flat=True)) == {MIGRATION.NOW}  # the fixture is the new wording
    shipped.update(sms_text=MIGRATION.BEFORE)
    edited = ReminderTemplate.objects.filter(default_key="microneedling-post-care-48h").get()
    edited_text = edited.sms_text
    MIGRATION.forwards(django_apps, None)
    assert set(shipped.values_list("sms_text", flat=True)) == {MIGRATION.NOW}
    MIGRATION.backwards(django_apps, None)
    assert set(shipped.values_list("sms_text", flat=True)) == {MIGRATION.BEFORE}
    shipped.update(sms_text=MIGRATION.BEFORE + " Edited.")
    MIGRATION.forwards(django_apps, None)
    assert set(shipped.values_list("sms_text", flat=True)) == {MIGRATION.BEFORE + " Edited."}
    edited.refresh_from_db()
    assert edited.sms_text == edited_text


# --- (4) a plan booked from a proposal ------------------------------------------------------------------------


@pytest.fixture
def templates_loaded(catalogue):
    from plans.defaults import plan_templates_load

    plan_templates_load()


def test_a_proposal_whose_lines_name_no_practitioner_books_every_session_with_the_plans_practitioner(
    api, patient, practitioner, clinic, templates_loaded
):
    """api/plans.py: top-level `practitioner` is 'Every session with this practitioner'; a proposal line may leave
    its own out (`IdField(required=False, allow_null=True)`). Dr Ada (the fixture) sorts first and is free too."""
    zed = PractitionerFactory(clinic=clinic, name="Dr Zed")
    body = {"template": "microneedling-course", "start_from": "2026-03-09", "practitioner": str(zed.pk)}
    dry = http_post(api, f"/api/v1/patients/{patient.pk}/plans/", {**body, "dry_run": True})
    assert dry.status_code == 200, dry.content
    assert {s["practitioner"] for s in dry.json()["sessions"]} == {str(zed.pk)}
    proposal = [{"start": s["start"]} for s in dry.json()["sessions"]]
    booked = http_post(api, f"/api/v1/patients/{patient.pk}/plans/", {**body, "proposal": proposal})
    assert booked.status_code == 201, booked.content
    assert {a.practitioner_id for a in Appointment.objects.filter(patient=patient)} == {zed.pk}


def http_post(api, path, body):
    return api.post(path, body, format="json")


# --- (1) end to end: the availability answer against one eligibility check per step ----------------------------


def test_availability_across_the_spring_change_is_every_step_a_check_would_book(clinic, practitioner, patient):
    """Botox reported done 20 March (microneedling blocked until 3 April, a calendar gap), plasma pen booked 14 April
    11:00 (microneedling blocked in the 7 days before it), another patient with Dr Ada on 6 April 10:00-11:00, clocks
    forward on 29 March: the slots offered are exactly the steps at which `appointment_check` finds nothing
    blocking (the definition, one check per step of Dr Ada's hours)."""
    from clinic.models import ProcedureType
    from scheduler.booking import appointment_check, appointment_slots
    from tests.factories import ProcedureRecordFactory
    from tests.qa.helpers import NOW

    ProcedureRecordFactory(patient=patient, procedure_id="botox", performed_at=ldn(2026, 3, 20, 15))
    AppointmentFactory(
        patient=patient, practitioner=practitioner, procedure_id="plasma_pen", start_at=ldn(2026, 4, 14, 11)
    )
    AppointmentFactory(
        patient=PatientFactory(clinic=clinic),
        practitioner=practitioner,
        start_at=ldn(2026, 4, 6, 10),
        end_at=ldn(2026, 4, 6, 11),
    )
    duration = timedelta(minutes=ProcedureType.objects.get(code="microneedling").duration_minutes)
    window_start, window_end = ldn(2026, 3, 26, 0), ldn(2026, 4, 16, 17)
    offered = [
        slot.start_at
        for slot in appointment_slots(
            patient=patient,
            procedure_code="microneedling",
            window_start=window_start,
            window_end=window_end,
            now=NOW,
            practitioner_id=practitioner.pk,
        )
    ]
    expected = []
    day = window_start.date()
    while day <= window_end.date():
        if day.weekday() < 6:
            start = ldn(day.year, day.month, day.day, 9)
            while start + duration <= ldn(day.year, day.month, day.day, 18):
                if window_start <= start <= window_end:
                    check = appointment_check(
                        patient=patient,
                        procedure_code="microneedling",
                        start_at=start,
                        now=NOW,
                        practitioner_id=practitioner.pk,
                    )
                    if not check.blocking:
                        expected.append(start)
                start += timedelta(minutes=15)
        day += timedelta(days=1)
    assert [s.astimezone(UTC) for s in offered] == [s.astimezone(UTC) for s in expected]
    assert offered and offered[0].astimezone(LONDON).date() == date(2026, 4, 3)
