"""An independent audit of "the rules hold over time, not only at booking" and "one record per patient across an
organisation's clinics" (domain brief section 6; api-contract "v1 additions"; docs/rules.md "After booking";
docs/organisations.md), as a booking platform and the front desk meet them: every kind of record change and rule
change re-checks every future active booking of the patient at every site, and only those; each move is audited,
shown and sent as one webhook to the platforms that reach that site; held care messages go at the right time once
released; a merge unions the record and re-checks both records' bookings; concurrent changes on PostgreSQL end
consistent. The clock is the suite's Monday, 2 March 2026, 09:00 in London.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection

from clinic import services as clinic_services
from clinic.merging import patient_merge
from clinic.models import ApiClient, Appointment, AppointmentStatus, AuditEvent, MedicationCourse, Patient
from clinic.services import (
    IntakeLine,
    conditions_replace,
    medication_course_add,
    medication_course_end,
    procedure_record_add,
)
from reminders.dispatch import dispatch_local
from reminders.models import OutboxMessage, OutboxStatus, WebhookEndpoint
from scheduler import recheck, rulebooks
from scheduler.booking import appointment_book, appointment_cancel, appointment_clear
from scheduler.models import ContraindicationRule, IntervalRule
from tests.api.conftest import http, new_api_client
from tests.factories import AppointmentFactory, ClinicFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import API, CLINICIAN, LONDON, NOW, RECEPTION, admin_post, fresh, ldn, nyc

SYSTEM_LABEL = "system: record re-check"


@dataclass
class World:
    london: object
    west: object
    ny: object
    dr_london: object
    dr_west: object
    dr_ny: object
    pat: Patient
    stranger: Patient
    hook_london: WebhookEndpoint
    hook_west: WebhookEndpoint
    hook_org: WebhookEndpoint
    hook_ny: WebhookEndpoint
    key_london: str
    key_west: str
    key_ny: str


def _platform(name: str, *clinics, organisation=None, clinical: bool = True) -> tuple[ApiClient, str]:
    client, key = new_api_client(*clinics, name=name, clinical=clinical)
    if organisation is not None:
        client.organisations.set([organisation])
    return client, key


@pytest.fixture
def world(care_texts, settings, frozen):
    """London and West, two sites of one organisation; New York, another organisation. Pat Lee's home is London
    (e-mail and text); a platform per site, one for the whole organisation and one for New York, each listening."""
    settings.CELERY_BROKER_URL = ""  # a rule change's re-check runs in this process
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SMS_BACKEND = "reminders.channels.LocmemSmsBackend"
    settings.REMINDERS_PUBLIC_BASE_URL = "https://clinic.example"
    london = ClinicFactory(code="aud-london", name="Audit London", timezone="Europe/London")
    west = ClinicFactory(code="aud-west", name="Audit West", timezone="Europe/London", organisation=london.organisation)
    ny = ClinicFactory(code="aud-ny", name="Audit New York", timezone="America/New_York")
    pat = PatientFactory(
        clinic=london,
        first_name="Pat",
        last_name="Lee",
        email="pat.lee@example.com",
        phone="+447911123456",
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )
    stranger = PatientFactory(clinic=ny, first_name="Pat", last_name="Lee", email="pat.lee@example.com")
    c_london, key_london = _platform("aud-london-platform", london)
    c_west, key_west = _platform("aud-west-platform", west)
    c_org, _ = _platform("aud-org-platform", organisation=london.organisation)
    c_ny, key_ny = _platform("aud-ny-platform", ny)
    hooks = {
        name: WebhookEndpoint.objects.create(client=c, url=f"https://platform.example/{name}")
        for name, c in (("london", c_london), ("west", c_west), ("org", c_org), ("ny", c_ny))
    }
    return World(
        london=london,
        west=west,
        ny=ny,
        dr_london=PractitionerFactory(clinic=london, name="Dr London"),
        dr_west=PractitionerFactory(clinic=west, name="Dr West"),
        dr_ny=PractitionerFactory(clinic=ny, name="Dr NY"),
        pat=pat,
        stranger=stranger,
        hook_london=hooks["london"],
        hook_west=hooks["west"],
        hook_org=hooks["org"],
        hook_ny=hooks["ny"],
        key_london=key_london,
        key_west=key_west,
        key_ny=key_ny,
    )


def book(patient, code, when, practitioner, now=NOW) -> Appointment:
    return appointment_book(
        patient=patient, procedure_code=code, start_at=when, actor=RECEPTION, now=now, practitioner_id=practitioner.pk
    ).appointment


def hooks(appointment, event: str | None = None) -> list[str]:
    """The endpoints (by the last part of their URL) a webhook about `appointment` was planned for, oldest first."""
    found = OutboxMessage.objects.filter(appointment=appointment, channel="webhook")
    if event is not None:
        found = found.filter(event=event)
    return sorted(url.rsplit("/", 1)[-1] for url in found.values_list("endpoint__url", flat=True))


def moves(appointment) -> list[tuple[str, str, str]]:
    """(action, from, to) of every re-check move of `appointment`, in order."""
    return [
        (action, details.get("from"), details.get("to"))
        for action, details in AuditEvent.objects.filter(appointment=appointment, actor_label=SYSTEM_LABEL)
        .order_by("at", "id")
        .values_list("action", "details")
    ]


def care_rows(appointment, kind="pre_care") -> list[OutboxMessage]:
    return list(
        OutboxMessage.objects.filter(appointment=appointment, kind=kind).exclude(channel="webhook").order_by("channel")
    )


# --- Every kind of record change, every site, only those ----------------------------------------------------------


def test_a_botox_reported_over_the_api_flags_the_bookings_at_both_sites_and_nothing_else(world):
    """Brief 6: 'Whenever a patient's record changes (a reported procedure ...) every future active appointment of
    the affected patients is checked again'; contract: needs_review 'carries review_reasons (violations, same shape
    as a refusal's)'; 'Nothing is changed silently: each move is audited, shown to staff and sent as a webhook'."""
    w = world
    mn_london = book(w.pat, "microneedling", ldn(2026, 3, 10), w.dr_london)
    mn_west = book(w.pat, "microneedling", ldn(2026, 3, 11), w.dr_west)
    filler = book(w.pat, "filler", ldn(2026, 4, 20), w.dr_west)  # no botox rule concerns it
    cancelled = book(w.pat, "microneedling", ldn(2026, 3, 12), w.dr_london)
    appointment_cancel(appointment=cancelled, actor=RECEPTION, now=NOW)
    past = AppointmentFactory(
        patient=w.pat, practitioner=w.dr_london, procedure_id="microneedling", start_at=ldn(2026, 2, 27)
    )
    theirs = book(w.stranger, "microneedling", nyc(2026, 3, 10), w.dr_ny)
    assert {fresh(a).status for a in (mn_london, mn_west, filler)} == {"confirmed"}
    OutboxMessage.objects.filter(channel="webhook").delete()  # the bookings' own events

    response = http(w.key_london).post(
        f"{API}/patients/{w.pat.pk}/procedures/",
        {"procedure": "botox", "performed_at": "2026-03-01T15:00:00+00:00", "source": "reported"},
        format="json",
    )
    assert response.status_code == 201, response.content
    record_id = response.json()["id"]

    for appointment, site in ((mn_london, "london"), (mn_west, "west")):
        row = fresh(appointment)
        assert row.status == AppointmentStatus.NEEDS_REVIEW, site
        [reason] = row.review_reasons
        assert (reason["kind"], reason["severity"]) == ("interval", "block")
        assert reason["conflicts_with"]["id"] == record_id
        assert reason["earliest_allowed"].startswith("2026-03-15T00:00:00"), reason
        assert moves(row) == [("needs_review", "confirmed", "needs_review")]
        audit = AuditEvent.objects.get(appointment=row, action="needs_review")
        assert "Botox" in audit.reason and audit.details["violations"], audit.details
        # One event, to each platform that reaches the site, and none to another site's or organisation's.
        assert hooks(row) == sorted([site, "org"])
    for untouched in (filler, cancelled, past, theirs):
        assert moves(untouched) == [], untouched.procedure_id
        assert hooks(untouched) == []
    assert (fresh(filler).status, fresh(cancelled).status, fresh(past).status, fresh(theirs).status) == (
        "confirmed",
        "cancelled",
        "confirmed",
        "confirmed",
    )

    # Shown: the site's platform reads the reasons in its offset; the other site's platform cannot see the booking.
    shown = http(w.key_west).get(f"{API}/appointments/{mn_west.pk}/").json()
    assert shown["status"] == "needs_review"
    assert shown["review_reasons"][0]["conflicts_with"]["id"] == record_id
    assert set(shown["review_reasons"][0]) >= {
        "code",
        "kind",
        "severity",
        "message",
        "rule",
        "conflicts_with",
        "earliest_allowed",
    }
    assert http(w.key_london).get(f"{API}/appointments/{mn_west.pk}/").status_code == 404

    # A change that alters nothing for them (a filler a year ago) announces nothing again.
    procedure_record_add(patient=w.pat, procedure_code="filler", performed_at=ldn(2025, 3, 1), now=NOW)
    assert moves(fresh(mn_london)) == [("needs_review", "confirmed", "needs_review")]
    assert hooks(mn_london) == ["london", "org"] and hooks(mn_west) == ["org", "west"]


def test_a_medication_course_added_then_ended_over_the_api_flags_then_releases_once_each(world):
    """Brief 6: a medication course is a record change; contract: 'It leaves needs_review ... by the record being
    corrected (then it is re-checked and goes back to confirmed ...)'; webhooks appointment.needs_review and
    appointment.released."""
    w = world
    mn = book(w.pat, "microneedling", ldn(2026, 3, 11), w.dr_west)
    OutboxMessage.objects.filter(channel="webhook").delete()
    platform = http(w.key_london)

    added = platform.post(
        f"{API}/patients/{w.pat.pk}/medications/", {"drug": "anticoagulant", "started_on": "2026-02-01"}, format="json"
    )
    assert added.status_code == 201, added.content
    row = fresh(mn)
    assert row.status == AppointmentStatus.NEEDS_REVIEW
    [reason] = row.review_reasons
    assert (reason["kind"], reason["severity"], reason["earliest_allowed"]) == ("contraindication", "absolute", None)
    assert hooks(mn, "appointment.needs_review") == ["org", "west"]

    ended = platform.patch(
        f"{API}/patients/{w.pat.pk}/medications/{added.json()['id']}/", {"ended_on": "2026-03-04"}, format="json"
    )
    assert ended.status_code == 200, ended.content
    row = fresh(mn)
    assert (row.status, row.review_reasons) == (AppointmentStatus.CONFIRMED, [])
    assert moves(row) == [("needs_review", "confirmed", "needs_review"), ("released", "needs_review", "confirmed")]
    assert hooks(mn, "appointment.released") == ["org", "west"]
    assert hooks(mn, "appointment.needs_review") == ["org", "west"]  # not sent again


def test_a_medication_course_deleted_in_the_admin_releases_the_booking(world, admin_client):
    """Brief 6: a medication course ... deleted is a record change too: the admin edits the same record
    (docs/organisations.md), and a course entered by mistake and removed must free the booking it flagged."""
    w = world
    mn = book(w.pat, "microneedling", ldn(2026, 3, 11), w.dr_london)
    course = medication_course_add(patient=w.pat, drug_code="isotretinoin", started_on=NOW.date() - timedelta(days=30))
    assert fresh(mn).status == AppointmentStatus.NEEDS_REVIEW
    with time_machine.travel(NOW, tick=False):
        response = admin_post(admin_client, fresh(w.pat), delete=[course.pk])
    assert response.status_code == 302, response.content.decode()[:2000]
    assert not MedicationCourse.objects.filter(pk=course.pk).exists()
    row = fresh(mn)
    assert row.status == AppointmentStatus.CONFIRMED
    assert [m[0] for m in moves(row)] == ["needs_review", "released"]


def test_an_intake_line_sent_back_for_clearance_and_corrected_away_confirms_it_again(world):
    """Brief 6: 'what now meets a relative one goes back to clinician clearance'; contract: '... (unless it was
    already cleared for those same rules)'; docs/rules.md: 'nothing (the record was corrected) | confirmed again'."""
    w = world
    mn = book(w.pat, "microneedling", ldn(2026, 3, 11), w.dr_west)
    OutboxMessage.objects.filter(channel="webhook").delete()
    platform = http(w.key_london)
    put = platform.put(
        f"{API}/patients/{w.pat.pk}/conditions/", [{"condition": "eczema", "status": "history"}], format="json"
    )
    assert put.status_code == 200, put.content
    row = fresh(mn)
    assert row.status == AppointmentStatus.PENDING_CLEARANCE
    assert moves(row) == [("clearance_requested", "confirmed", "pending_clearance")]
    assert hooks(mn, "appointment.clearance_requested") == ["org", "west"]
    assert {r.status for r in care_rows(mn)} == {OutboxStatus.HELD}  # nothing goes before a clinician clears it

    # The line was the wrong patient's: removed, the booking is as it was booked.
    assert platform.put(f"{API}/patients/{w.pat.pk}/conditions/", [], format="json").status_code == 200
    row = fresh(mn)
    assert row.status == AppointmentStatus.CONFIRMED
    assert {r.status for r in care_rows(mn)} == {OutboxStatus.PENDING}


def test_released_while_a_relative_contraindication_still_waits_goes_to_clearance_with_messages_held(world):
    """Contract: needs_review is left '... by the record being corrected (then it is re-checked and goes back to
    confirmed, or pending_clearance)'; brief 3: 'no reminders go out before' the clearance."""
    w = world
    conditions_replace(patient=w.pat, lines=[IntakeLine("eczema", "history")], now=NOW)
    mn = book(w.pat, "microneedling", ldn(2026, 3, 10), w.dr_london)
    assert mn.status == AppointmentStatus.PENDING_CLEARANCE
    course = medication_course_add(patient=w.pat, drug_code="anticoagulant", started_on=NOW.date(), now=NOW)
    assert fresh(mn).status == AppointmentStatus.NEEDS_REVIEW
    medication_course_end(course=course, ended_on=NOW.date(), now=NOW)

    row = fresh(mn)
    assert (row.status, row.review_reasons) == (AppointmentStatus.PENDING_CLEARANCE, [])
    assert moves(row) == [
        ("needs_review", "pending_clearance", "needs_review"),
        ("released", "needs_review", "pending_clearance"),
    ]
    assert hooks(mn, "appointment.released") == ["london", "org"]
    assert care_rows(mn) and {r.status for r in care_rows(mn)} == {OutboxStatus.HELD}
    with time_machine.travel(datetime(2026, 3, 9, 12, tzinfo=UTC), tick=False):
        dispatch_local(now=datetime(2026, 3, 9, 12, tzinfo=UTC))
    assert not OutboxMessage.objects.filter(appointment=mn, status=OutboxStatus.SENT).exclude(channel="webhook")


# --- Care messages held while it needs review ----------------------------------------------------------------


def _send_until(end: datetime, *, start: datetime, step=timedelta(minutes=30)) -> None:
    moment = start
    while moment <= end:
        with time_machine.travel(moment, tick=False):
            dispatch_local(now=moment)
        moment += step


def _sent(appointment, kind="pre_care") -> list[tuple[str, datetime]]:
    return sorted(
        (channel, sent_at.astimezone(LONDON))
        for channel, sent_at in OutboxMessage.objects.filter(
            appointment=appointment, kind=kind, status=OutboxStatus.SENT
        ).values_list("channel", "sent_at")
    )


def test_a_flag_holds_the_pre_care_and_a_release_in_time_sends_it_once_at_its_moment(world):
    """Contract: needs_review 'holds its pre-care reminders'; releasing lets them go at the right time, once."""
    w = world
    mn = book(w.pat, "microneedling", ldn(2026, 3, 10), w.dr_london)  # pre-care due 9 March 10:00
    _send_until(ldn(2026, 3, 2, 10), start=ldn(2026, 3, 2, 9))  # the confirmation goes
    course = medication_course_add(patient=w.pat, drug_code="anticoagulant", started_on=NOW.date(), now=NOW)
    assert {r.status for r in care_rows(mn)} == {OutboxStatus.HELD}
    release_at = ldn(2026, 3, 5, 12)
    with time_machine.travel(release_at, tick=False):
        medication_course_end(course=course, ended_on=release_at.date(), now=release_at)
    assert fresh(mn).status == AppointmentStatus.CONFIRMED
    _send_until(ldn(2026, 3, 10, 9, 30), start=ldn(2026, 3, 9, 8), step=timedelta(minutes=30))
    assert _sent(mn) == [("email", ldn(2026, 3, 9, 10)), ("sms", ldn(2026, 3, 9, 10))]


def test_a_pre_care_overdue_when_released_late_at_night_waits_for_the_morning_by_text(world):
    """Brief 4: 'no SMS between 21:00 and 08:00 local'; contract: a release lets the held pre-care go (not lost,
    not duplicated); nothing went while it needed review."""
    w = world
    mn = book(w.pat, "microneedling", ldn(2026, 3, 10), w.dr_london)
    _send_until(ldn(2026, 3, 2, 10), start=ldn(2026, 3, 2, 9))
    course = medication_course_add(patient=w.pat, drug_code="anticoagulant", started_on=NOW.date(), now=NOW)
    _send_until(ldn(2026, 3, 9, 22), start=ldn(2026, 3, 9, 8))  # its moment passes while held
    assert _sent(mn) == []
    late = ldn(2026, 3, 9, 22, 30)
    with time_machine.travel(late, tick=False):
        medication_course_end(course=course, ended_on=late.date() - timedelta(days=1), now=late)
    assert fresh(mn).status == AppointmentStatus.CONFIRMED
    _send_until(ldn(2026, 3, 10, 9, 50), start=late, step=timedelta(minutes=10))
    sent = _sent(mn)
    assert [channel for channel, _ in sent] == ["email", "sms"], sent
    sms_at = sent[1][1]
    assert ldn(2026, 3, 10, 8) <= sms_at < ldn(2026, 3, 10, 10), sms_at  # not in quiet hours, before the visit


def test_a_pre_care_sent_before_the_flag_is_not_sent_again_on_release(world):
    """Released, nothing is duplicated: a pre-care note already sent for this start stays sent."""
    w = world
    mn = book(w.pat, "microneedling", ldn(2026, 3, 10), w.dr_london)
    _send_until(ldn(2026, 3, 9, 11), start=ldn(2026, 3, 9, 9))
    assert len(_sent(mn)) == 2
    at = ldn(2026, 3, 9, 12)
    with time_machine.travel(at, tick=False):
        started = at.date() - timedelta(days=2)
        course = medication_course_add(patient=w.pat, drug_code="anticoagulant", started_on=started, now=at)
        medication_course_end(course=course, ended_on=at.date() - timedelta(days=1), now=at)
    assert [m[0] for m in moves(fresh(mn))] == ["needs_review", "released"]
    _send_until(ldn(2026, 3, 10, 9, 30), start=at)
    assert len(_sent(mn)) == 2


# --- Rule changes -----------------------------------------------------------------------------------------------


def _override(default_key, organisation, now=NOW, **fields):
    default = IntervalRule.objects.get(default_key=default_key)
    rule = IntervalRule(
        organisation=organisation,
        replaces=default,
        earlier_procedure_id=default.earlier_procedure_id,
        earlier_medication_id=default.earlier_medication_id,
        later_procedure_id=default.later_procedure_id,
        gap_value=fields.pop("gap_value", default.gap_value),
        gap_unit=fields.pop("gap_unit", default.gap_unit),
        severity=fields.pop("severity", default.severity),
        source="Audit protocol",
        **fields,
    )
    rulebooks.rule_save(rule=rule, user=None, reason="audit: protocol change", now=now)
    return rule


def test_a_tightened_then_relaxed_rule_moves_both_sites_once_each_and_a_second_run_sends_nothing(
    world, django_capture_on_commit_callbacks
):
    """Brief 6: '... or an organisation's rules change, every future active appointment of the affected patients is
    checked again'; each move sent once; another organisation keeps the default."""
    w = world
    procedure_record_add(patient=w.pat, procedure_code="botox", performed_at=ldn(2026, 3, 1), now=NOW)
    procedure_record_add(patient=w.stranger, procedure_code="botox", performed_at=ldn(2026, 3, 1), now=NOW)
    mn_london = book(w.pat, "microneedling", ldn(2026, 3, 20), w.dr_london)
    mn_west = book(w.pat, "microneedling", ldn(2026, 3, 21), w.dr_west)
    theirs = book(w.stranger, "microneedling", nyc(2026, 3, 20), w.dr_ny)
    OutboxMessage.objects.filter(channel="webhook").delete()

    with django_capture_on_commit_callbacks(execute=True):
        rule = _override("botox-then-microneedling", w.london.organisation, gap_value=4)
    assert fresh(mn_london).status == fresh(mn_west).status == AppointmentStatus.NEEDS_REVIEW
    assert fresh(theirs).status == AppointmentStatus.CONFIRMED and hooks(theirs) == []

    with django_capture_on_commit_callbacks(execute=True):
        rule.gap_value = 2
        rulebooks.rule_save(rule=rule, user=None, reason="audit: back to two weeks", now=NOW)
    for appointment, site in ((mn_london, "london"), (mn_west, "west")):
        row = fresh(appointment)
        assert row.status == AppointmentStatus.CONFIRMED
        assert [m[0] for m in moves(row)] == ["needs_review", "released"]
        assert hooks(row, "appointment.needs_review") == sorted([site, "org"])
        assert hooks(row, "appointment.released") == sorted([site, "org"])

    # The run done again (a retried task): nothing more is moved or sent.
    run = recheck.recheck_run_start(
        cause="audit: run again",
        procedures=["botox", "microneedling"],
        now=NOW,
        organisation_id=w.london.organisation.pk,
    )
    assert run is not None
    assert recheck.recheck_run_step(run_id=run.pk, now=NOW)
    assert [m[0] for m in moves(fresh(mn_london))] == ["needs_review", "released"]
    assert len(hooks(mn_london)) == len(hooks(mn_west)) == 4


def test_an_added_relative_contraindication_sends_a_booking_at_the_other_site_back_for_clearance(
    world, django_capture_on_commit_callbacks
):
    """Brief 6: an organisation may add rules; 'what now meets a relative one goes back to clinician clearance',
    audited and sent (appointment.clearance_requested), its messages held; another organisation is untouched."""
    w = world
    for patient in (w.pat, w.stranger):
        conditions_replace(patient=patient, lines=[IntakeLine("diabetes", "active")], now=NOW)
    botox = book(w.pat, "botox", ldn(2026, 3, 11), w.dr_west)
    theirs = book(w.stranger, "botox", nyc(2026, 3, 11), w.dr_ny)
    assert botox.status == theirs.status == AppointmentStatus.CONFIRMED
    OutboxMessage.objects.filter(channel="webhook").delete()
    rule = ContraindicationRule(
        organisation=w.london.organisation,
        condition_id="diabetes",
        procedure_id="botox",
        severity="relative",
        source="Audit protocol",
    )
    with django_capture_on_commit_callbacks(execute=True):
        rulebooks.rule_save(rule=rule, user=None, reason="audit: ask about diabetes", now=NOW)
    row = fresh(botox)
    assert row.status == AppointmentStatus.PENDING_CLEARANCE
    assert moves(row) == [("clearance_requested", "confirmed", "pending_clearance")]
    assert hooks(row) == ["org", "west"]
    assert care_rows(row) and {r.status for r in care_rows(row)} == {OutboxStatus.HELD}
    assert fresh(theirs).status == AppointmentStatus.CONFIRMED and hooks(theirs) == []


def test_a_relative_rule_switched_off_confirms_the_booking_that_only_waited_for_it(
    world, django_capture_on_commit_callbacks
):
    """Brief 6: an organisation may 'disable (with a reason)' a rule, and every future booking is checked again;
    docs/rules.md: 'nothing ... | confirmed again'. A booking waiting for clearance under a rule no longer in the
    book waits for nothing."""
    w = world
    conditions_replace(patient=w.pat, lines=[IntakeLine("eczema", "history")], now=NOW)
    mn = book(w.pat, "microneedling", ldn(2026, 3, 11), w.dr_west)
    assert mn.status == AppointmentStatus.PENDING_CLEARANCE
    default = ContraindicationRule.objects.get(
        organisation__isnull=True, condition_id="eczema", procedure_id="microneedling"
    )
    off = ContraindicationRule(
        organisation=w.london.organisation,
        replaces=default,
        condition_id="eczema",
        procedure_id="microneedling",
        severity=default.severity,
        applies_to=default.applies_to,
        source="Audit protocol",
        is_active=False,
    )
    with django_capture_on_commit_callbacks(execute=True):
        rulebooks.rule_save(rule=off, user=None, reason="audit: our dermatologist clears eczema history", now=NOW)
    check = http(w.key_west).post(
        f"{API}/eligibility/",
        {"patient": str(w.pat.pk), "procedure": "microneedling", "start": "2026-03-18T10:00:00+00:00"},
        format="json",
    )
    assert check.json()["status"] == "confirmed", check.content  # a new booking would be confirmed
    assert fresh(mn).status == AppointmentStatus.CONFIRMED


def test_a_clearance_holds_when_the_organisation_re_words_the_same_relative_rule(
    world, django_capture_on_commit_callbacks
):
    """Contract: a change that brings a relative contraindication sends it back 'unless it was already cleared for
    those same rules': an organisation's copy of the eczema rule that changes only its note is the same rule to the
    clinician who cleared it."""
    w = world
    conditions_replace(patient=w.pat, lines=[IntakeLine("eczema", "history")], now=NOW)
    mn = book(w.pat, "microneedling", ldn(2026, 3, 11), w.dr_west)
    appointment_clear(appointment=mn, actor=CLINICIAN, now=NOW, reason="Settled for years")
    default = ContraindicationRule.objects.get(
        organisation__isnull=True, condition_id="eczema", procedure_id="microneedling"
    )
    copy = ContraindicationRule(
        organisation=w.london.organisation,
        replaces=default,
        condition_id="eczema",
        procedure_id="microneedling",
        severity=default.severity,
        applies_to=default.applies_to,
        source=default.source,
        note="Ask which products they use.",
    )
    with django_capture_on_commit_callbacks(execute=True):
        rulebooks.rule_save(rule=copy, user=None, reason="audit: a note for the desk", now=NOW)
    assert fresh(mn).status == AppointmentStatus.CONFIRMED


# --- One record: duplicates and merges ----------------------------------------------------------------------


def test_a_merge_rechecks_both_records_bookings_at_both_sites_and_unions_the_history(world):
    """Brief 6: 'merging two records unions their history and re-checks everything booked'; contract: 'Anything of
    another organisation is a 404'. The duplicate's absolute line is settled as history by the merge decision: its
    booking is released; the duplicate's Botox flags the survivor's microneedling."""
    w = world
    dup = PatientFactory(clinic=w.west, first_name="Patricia", last_name="Lee", email="", phone="")
    dup_mn = book(dup, "microneedling", ldn(2026, 3, 12, 11), w.dr_west)
    conditions_replace(patient=dup, lines=[IntakeLine("skin_infection", "active")], now=NOW)
    conditions_replace(patient=w.pat, lines=[IntakeLine("skin_infection", "history")], now=NOW)
    procedure_record_add(patient=w.pat, procedure_code="filler", performed_at=ldn(2025, 6, 1), now=NOW)
    procedure_record_add(patient=dup, procedure_code="botox", performed_at=ldn(2026, 3, 1), now=NOW)
    assert fresh(dup_mn).status == AppointmentStatus.NEEDS_REVIEW
    mn = book(w.pat, "microneedling", ldn(2026, 3, 20), w.dr_london)  # 19 days: fine on its own record
    assert mn.status == AppointmentStatus.CONFIRMED
    OutboxMessage.objects.filter(channel="webhook").delete()

    patient_merge(
        merged=dup,
        into=w.pat,
        now=NOW,
        actor_label="clinician@audit",
        clinical=True,
        intake={("skin_infection", None): "history"},
    )

    # The duplicate's microneedling (12 March) is 11 days after the duplicate's Botox: still a block, for that reason
    # alone now; the survivor's (20 March) is fine under the two weeks.
    row = fresh(dup_mn)
    assert row.patient_id == w.pat.pk
    assert row.status == AppointmentStatus.NEEDS_REVIEW
    assert {r["kind"] for r in row.review_reasons} == {"interval"}, row.review_reasons
    assert hooks(row, "appointment.needs_review") == ["org", "west"]  # reasons changed: flagged again, once
    assert fresh(mn).status == AppointmentStatus.CONFIRMED and hooks(mn) == []
    history = http(w.key_london).get(f"{API}/patients/{w.pat.pk}/procedures/").json()["results"]
    assert sorted(h["procedure"] for h in history) == ["botox", "filler"]
    assert http(w.key_ny).get(f"{API}/patients/{w.pat.pk}/").status_code == 404
    # The survivor's record now reaches the desk of either site with the merged booking counted.
    refused = http(w.key_london).post(
        f"{API}/appointments/",
        {"patient": str(w.pat.pk), "procedure": "botox", "start": "2026-03-24T10:00:00+00:00"},
        format="json",
    )
    assert refused.status_code == 409, refused.content
    clash = refused.json()["violations"][0]["conflicts_with"]
    assert clash["clinic"] and clash["id"] in {str(dup_mn.pk), str(mn.pk)}


def test_a_merge_that_removes_the_only_problem_releases_the_merged_in_booking_once(world):
    """Contract: needs_review is left '... by the record being corrected (merged record)': the duplicate's active
    infection was a mistake the survivor's intake settles as history."""
    w = world
    dup = PatientFactory(clinic=w.west, first_name="Patricia", last_name="Lee", email="", phone="")
    dup_mn = book(dup, "microneedling", ldn(2026, 3, 12, 11), w.dr_west)
    conditions_replace(patient=dup, lines=[IntakeLine("skin_infection", "active")], now=NOW)
    assert fresh(dup_mn).status == AppointmentStatus.NEEDS_REVIEW
    conditions_replace(patient=w.pat, lines=[IntakeLine("skin_infection", "history")], now=NOW)
    OutboxMessage.objects.filter(channel="webhook").delete()
    patient_merge(
        merged=dup,
        into=w.pat,
        now=NOW,
        actor_label="clinician@audit",
        clinical=True,
        intake={("skin_infection", None): "history"},
    )
    row = fresh(dup_mn)
    assert (row.status, row.review_reasons, row.patient_id) == (AppointmentStatus.CONFIRMED, [], w.pat.pk)
    assert moves(row)[-1] == ("released", "needs_review", "confirmed")
    assert "merge" in AuditEvent.objects.filter(appointment=row, action="released").get().reason
    assert hooks(row, "appointment.released") == ["org", "west"]
    assert hooks(row, "appointment.patient_merged") == ["org", "west"]  # it changed hands (since 6 December)


def test_registration_after_a_merge_finds_the_survivor_by_what_the_tombstone_brought_and_never_the_tombstone(world):
    """Brief 6 / contract: likely duplicates (same date of birth and a similar name, or the same phone or e-mail)
    are caught at registration; a merged record leaves every candidate list (docs/organisations.md); another
    organisation's patients are never candidates; confirm_new registers anyway."""
    w = world
    survivor = PatientFactory(clinic=w.london, first_name="Olivia", last_name="Bennett", email="", phone="")
    dup = PatientFactory(
        clinic=w.west, first_name="Olivia", last_name="Benett", email="Liv@Example.com", phone="+447400123499"
    )
    patient_merge(merged=dup, into=survivor, now=NOW, actor_label="clinician@audit", clinical=True)
    platform = http(w.key_west)
    body = {"clinic": str(w.west.pk), "first_name": "Liv", "last_name": "Other", "email": " liv@example.COM "}
    answer = platform.post(f"{API}/patients/", body, format="json")
    assert answer.status_code == 409, answer.content
    assert [c["id"] for c in answer.json()["candidates"]] == [str(survivor.pk)]
    by_phone = platform.post(
        f"{API}/patients/",
        {"clinic": str(w.west.pk), "first_name": "X", "last_name": "Y", "phone": "07400 123499"},
        format="json",
    )
    assert by_phone.status_code == 409, by_phone.content
    assert [c["id"] for c in by_phone.json()["candidates"]] == [str(survivor.pk)]
    # New York's identical e-mail is not London's patient; a New York registration does not see London's.
    ny = http(w.key_ny).post(
        f"{API}/patients/",
        {"clinic": str(w.ny.pk), "first_name": "Liv", "last_name": "Other", "email": "liv@example.com"},
        format="json",
    )
    assert ny.status_code == 201, ny.content
    confirmed = platform.post(f"{API}/patients/", {**body, "confirm_new": True}, format="json")
    assert confirmed.status_code == 201, confirmed.content


# --- Concurrent changes on PostgreSQL --------------------------------------------------------------------------


@pytest.fixture
def race_world(transactional_db, catalogue, settings):
    settings.CELERY_BROKER_URL = ""
    clinic = ClinicFactory(code="aud-race", timezone="Europe/London")
    west = ClinicFactory(code="aud-race-w", timezone="Europe/London", organisation=clinic.organisation)
    doctor = PractitionerFactory(clinic=west, name="Dr Race")
    patient = PatientFactory(clinic=clinic, email="race-audit@example.com")
    client, _ = _platform("aud-race-platform", organisation=clinic.organisation)
    WebhookEndpoint.objects.create(client=client, url="https://platform.example/race")
    return patient, doctor


def _together(first, second) -> dict:
    """Run `first` and `second` in two threads: `second` starts once `first` holds the patient's lock and waits for
    it; each ends with its outcome (or exception)."""
    outcome: dict = {}
    inside = threading.Event()
    real = clinic_services.patient_record_changed

    def announced(**kwargs):
        if threading.current_thread().name == "first":
            inside.set()
            time.sleep(0.4)  # the second change queues on the lock meanwhile
        return real(**kwargs)

    def run(name, work):
        try:
            with time_machine.travel(NOW, tick=False):
                outcome[name] = work()
        except Exception as exc:  # noqa: BLE001 - recorded, asserted below
            outcome[name] = exc
        finally:
            inside.set()
            connection.close()

    clinic_services.patient_record_changed = announced
    try:
        a = threading.Thread(target=run, args=("first", first), name="first")
        a.start()
        assert inside.wait(timeout=10)
        b = threading.Thread(target=run, args=("second", second), name="second")
        b.start()
        a.join(timeout=30)
        b.join(timeout=30)
    finally:
        clinic_services.patient_record_changed = real
    return outcome


def _consistent_trail(appointment) -> None:
    """Each move starts where the one before ended, and every move was sent once."""
    trail = moves(appointment)
    status = "confirmed"
    for _action, before, after in trail:
        assert before == status, trail
        status = after
    assert status == fresh(appointment).status, trail
    assert len(hooks(appointment)) == len(trail) + 1, (hooks(appointment), trail)  # + its booking


@pytest.mark.postgres
def test_two_record_changes_at_once_end_with_both_reasons(race_world):
    """Two desks change one record at once (a Botox reported; an active infection on the intake): the booking ends
    needing review for both, its trail consistent and each move sent once."""
    patient, doctor = race_world
    mn = book(patient, "microneedling", ldn(2026, 3, 10), doctor)
    outcome = _together(
        lambda: procedure_record_add(patient=patient, procedure_code="botox", performed_at=ldn(2026, 3, 1), now=NOW),
        lambda: conditions_replace(patient=patient, lines=[IntakeLine("skin_infection", "active")], now=NOW),
    )
    assert not any(isinstance(v, Exception) for v in outcome.values()), outcome
    row = fresh(mn)
    assert row.status == AppointmentStatus.NEEDS_REVIEW
    assert {r["kind"] for r in row.review_reasons} == {"interval", "contraindication"}, row.review_reasons
    _consistent_trail(row)


@pytest.mark.postgres
def test_a_correction_racing_a_new_problem_ends_flagged_for_the_new_one_only(race_world):
    """An anticoagulant course ended at one desk while a Botox is reported at the other: whichever goes first, the
    booking ends needing review for the Botox alone."""
    patient, doctor = race_world
    mn = book(patient, "microneedling", ldn(2026, 3, 10), doctor)
    course = medication_course_add(patient=patient, drug_code="anticoagulant", started_on=NOW.date(), now=NOW)
    assert fresh(mn).status == AppointmentStatus.NEEDS_REVIEW
    outcome = _together(
        lambda: medication_course_end(course=course, ended_on=NOW.date(), now=NOW),
        lambda: procedure_record_add(patient=patient, procedure_code="botox", performed_at=ldn(2026, 3, 1), now=NOW),
    )
    assert not any(isinstance(v, Exception) for v in outcome.values()), outcome
    row = fresh(mn)
    assert row.status == AppointmentStatus.NEEDS_REVIEW
    assert [r["kind"] for r in row.review_reasons] == ["interval"], row.review_reasons
    _consistent_trail(row)
