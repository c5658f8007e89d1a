"""Review probe of 267d021, dfacfdd and 5ce85e8 (5 December): what their own tests leave out.

- 267d021, each plan session's `rulebook_version`: a session booked pending clearance then cleared after a rule
  change; a session moved by the patient portal's self-service move after a rule change; a plan of the defaults
  only, then an organisation rule; a session missed by a no-show; the dry run against the 201 (nothing changed in
  between, and a rule changed in between with the dry run's `proposal` booked); GET /plans/{id}/ statements with a
  long audit trail on every session.
- dfacfdd, the desk's "Where it was done": a sister site's zone for "today" (a day that is today in London but
  still tomorrow in New York, and today in Auckland but tomorrow in London), a time later today at the site; the
  record named on the patient page, dated in that site's zone on the history page and by the API, and read so by
  the interval rules; a clinician and an organisation-level staff member using the form; GET and HEAD of the
  POST-only address; a sister site added after the page was drawn, or moved to another organisation.
- 5ce85e8, Today's "Visits with no outcome yet": a checked-in visit (its arrival time), a visit of a sister site
  (not listed at this desk, nor for an organisation-level user), 90 days back exactly and a minute more, an over
  visit pending clearance (listed under clearance only), a visit over in the week the clocks change, the count at
  exactly 50 and at 51, the page's statements for an organisation-level user, and a plan session older than the
  list's 90 days.

Found and settled the same day (strict xfails until then): DEFECT, a sister site chosen on a drawn page that has
since left the organisation (its last sister) was dropped silently and the day read in the desk's zone (the field is
now always checked); QUESTION, the patient page worded the site chosen as where it was done "recorded at ..." (now
the site's name alone, on the history page too); QUESTION, a plan session over 90 days old stays `booked` and Today
no longer asks about it (decided: as documented).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from clinic.models import (
    Appointment,
    AppointmentStatus,
    AuditAction,
    AuditEvent,
    ConditionStatus,
    PatientCondition,
    ProcedureRecord,
    StaffMembership,
    StaffRole,
)
from plans.defaults import plan_templates_load
from scheduler import rulebooks
from scheduler.booking import appointment_check, appointment_clear, appointment_mark_no_show, appointment_reschedule
from scheduler.models import IntervalRule
from tests.api.conftest import http, new_api_client
from tests.factories import (
    AppointmentFactory,
    ClinicFactory,
    OrganisationFactory,
    PatientFactory,
    PractitionerFactory,
)
from tests.qa.helpers import API, CLINICIAN, NOW, RECEPTION, get, ldn, ok, portal_page, staff_client, words

pytestmark = pytest.mark.django_db

MN = "microneedling-course"
OLD, NEW = "d1.o1", "d1.o2"
AUCKLAND = ZoneInfo("Pacific/Auckland")


# --- Plans: each session's rule book version (267d021) ---------------------------------------------------------


@pytest.fixture
def lon(clinic, practitioner, settings, ticking_clock):
    """A booking platform of the London clinic, the plan templates loaded, a rule change re-checked here."""
    settings.CELERY_BROKER_URL = ""
    plan_templates_load()
    return http(new_api_client(clinic, name="rv5k-platform")[1])


def _plan(lon, patient, **extra) -> dict:
    body = {"template": MN, "start_from": "2026-03-09", **extra}
    return ok(
        lon.post(f"{API}/patients/{patient.pk}/plans/", body, format="json"), 200 if extra.get("dry_run") else 201
    )


def _versions(plan) -> list:
    return [s["rulebook_version"] for s in plan["sessions"]]


def _statuses(plan) -> list:
    return [s["status"] for s in plan["sessions"]]


def _change_a_rule(organisation) -> None:
    """The organisation relaxes Botox then microneedling to 3 days: its rule book's next version."""
    override = IntervalRule(
        organisation=organisation,
        replaces=IntervalRule.objects.get(default_key="botox-then-microneedling"),
        earlier_procedure_id="botox",
        later_procedure_id="microneedling",
        gap_value=3,
        gap_unit="days",
        severity="block",
        source="rv5k protocol",
    )
    user = get_user_model().objects.create_user("rv5k-orgadmin", password="pw-for-qa-only-123")
    rulebooks.rule_save(rule=override, user=user, reason="our protocol", now=NOW)


def test_a_session_booked_pending_clearance_then_cleared_after_a_rule_change_keeps_its_booking_version(lon, patient):
    """docs/plans.md: a clearance keeps the version (it decides about the booking as it stands), although the
    clearance itself re-checked under the newer rule book and its audit entry records that one."""
    PatientCondition.objects.create(patient=patient, condition_id="eczema", status=ConditionStatus.HISTORY)
    plan = _plan(lon, patient)
    first = Appointment.objects.get(pk=plan["sessions"][0]["appointment"])
    assert first.status == AppointmentStatus.PENDING_CLEARANCE
    assert _versions(plan) == [OLD] * 3
    _change_a_rule(patient.organisation)
    appointment_clear(appointment=first, actor=CLINICIAN, now=NOW, reason="eczema quiet for years")
    cleared = AuditEvent.objects.get(appointment=first, action=AuditAction.CLEARED)
    assert cleared.details["rulebook_version"] == NEW
    shown = get(lon, f"/plans/{plan['id']}/")
    assert _statuses(shown) == ["booked"] * 3
    assert _versions(shown) == [OLD] * 3


def test_a_session_the_patient_moves_in_the_portal_after_a_rule_change_says_the_new_version(
    lon, patient, practitioner, client
):
    """A plan of the shipped defaults only (d1.o1); the organisation then adds its first rule (d1.o2): nothing moved
    keeps d1.o1, plan and sessions; the session the patient moves through the self-service page says d1.o2."""
    plan = _plan(lon, patient)
    assert plan["rulebook_version"] == OLD and _versions(plan) == [OLD] * 3
    _change_a_rule(patient.organisation)
    assert _versions(get(lon, f"/plans/{plan['id']}/")) == [OLD] * 3

    third = Appointment.objects.get(pk=plan["sessions"][2]["appointment"])
    later = third.start_at + timedelta(days=1, hours=1)
    slot = f"{later.astimezone(UTC):%Y%m%dT%H%MZ}_{practitioner.pk}"
    moved = client.post(portal_page(third, "move_confirm"), {"slot": slot})
    assert moved.status_code in (302, 303), (moved.status_code, words(moved)[:400])
    assert Appointment.objects.get(pk=third.pk).start_at == later
    shown = get(lon, f"/plans/{plan['id']}/")
    assert shown["rulebook_version"] == OLD  # the plan itself was not re-planned
    assert _versions(shown) == [OLD, OLD, NEW]


def test_a_session_missed_by_a_no_show_says_null(lon, patient):
    plan = _plan(lon, patient)
    first = Appointment.objects.get(pk=plan["sessions"][0]["appointment"])
    after = first.end_at + timedelta(hours=1)
    with time_machine.travel(after, tick=False):
        appointment_mark_no_show(appointment=first, actor=CLINICIAN, now=after)
        shown = get(lon, f"/plans/{plan['id']}/")
    assert _statuses(shown) == ["missed", "booked", "booked"]
    assert _versions(shown) == [None, OLD, OLD]


def test_the_dry_runs_version_is_the_201s_when_nothing_changed_in_between(lon, patient):
    proposal = _plan(lon, patient, dry_run=True)
    lines = [{"start": s["start"], "practitioner": s["practitioner"]} for s in proposal["sessions"]]
    created = _plan(lon, patient, proposal=lines)
    assert [s["start"] for s in created["sessions"]] == [s["start"] for s in proposal["sessions"]]
    assert _versions(proposal) == _versions(created) == [proposal["rulebook_version"]] * 3
    assert created["rulebook_version"] == proposal["rulebook_version"] == OLD


def test_a_proposal_booked_after_a_rule_change_says_the_version_it_was_booked_by(lon, patient):
    proposal = _plan(lon, patient, dry_run=True)
    assert _versions(proposal) == [OLD] * 3
    _change_a_rule(patient.organisation)
    lines = [{"start": s["start"], "practitioner": s["practitioner"]} for s in proposal["sessions"]]
    created = _plan(lon, patient, proposal=lines)
    assert created["rulebook_version"] == NEW
    assert _versions(created) == [NEW] * 3
    assert _versions(get(lon, f"/plans/{created['id']}/")) == [NEW] * 3


def _get_statements(lon, plan) -> int:
    get(lon, f"/plans/{plan['id']}/")  # warm
    with CaptureQueriesContext(connection) as captured:
        get(lon, f"/plans/{plan['id']}/")
    return len(captured)


def test_the_plans_get_costs_the_same_with_a_long_audit_trail_on_every_session(lon, patient, clinic):
    quiet = _plan(lon, patient)
    busy = _plan(lon, PatientFactory(clinic=clinic, first_name="Rv5k", last_name="Busy"), start_from="2026-03-10")
    before = _get_statements(lon, quiet)
    for session in busy["sessions"]:
        appointment = Appointment.objects.get(pk=session["appointment"])
        start = appointment.start_at
        for hop in range(1, 7):  # six moves of an hour, and back at the end: a trail of 7 checked entries each
            when = start + timedelta(hours=hop if hop < 6 else 0)
            appointment = appointment_reschedule(
                appointment=appointment, start_at=when, actor=RECEPTION, now=NOW
            ).appointment
    _change_a_rule(patient.organisation)
    last = Appointment.objects.get(pk=busy["sessions"][1]["appointment"])
    appointment_reschedule(appointment=last, start_at=last.start_at + timedelta(hours=2), actor=RECEPTION, now=NOW)
    assert AuditEvent.objects.filter(appointment_id=last.pk, action=AuditAction.RESCHEDULED).count() == 7
    assert _get_statements(lon, busy) <= before
    assert _versions(get(lon, f"/plans/{busy['id']}/")) == [OLD, NEW, OLD]


# --- The desk: where a reported procedure was done (dfacfdd) ---------------------------------------------------


@pytest.fixture
def ny(clinic):
    return ClinicFactory(
        code="rv5k-ny", name="Manhattan Site", timezone="America/New_York", organisation=clinic.organisation
    )


@pytest.fixture
def akl(clinic):
    return ClinicFactory(
        code="rv5k-akl", name="Auckland Site", timezone="Pacific/Auckland", organisation=clinic.organisation
    )


@pytest.fixture
def desk(clinic):
    return staff_client(clinic, StaffRole.RECEPTIONIST, "rv5k-desk")


def org_client(organisation, role: str, username: str) -> Client:
    """A signed-in desk user granted every clinic of the organisation (no clinic of their own)."""
    user = get_user_model().objects.create_user(username=username, password="pw-for-qa-only-123")
    StaffMembership.objects.create(user=user, organisation=organisation, role=role)
    client = Client()
    client.force_login(user)
    return client


def _desk_url(name, clinic, *args) -> str:
    return reverse(f"frontdesk:{name}", args=[clinic.code, *[a.pk for a in args]])


def add(client, clinic, patient, day="2026-02-20", **fields):
    data = {"record-procedure": "botox", "record-performed_on": day}
    data.update({f"record-{k}": v for k, v in fields.items()})
    return client.post(_desk_url("procedure_add", clinic, patient), data)


def _error_next_to(response, field) -> str:
    html = response.content.decode()
    found = re.search(rf'id="id_record-{field}-error"[^>]*>(.*?)</', html, flags=re.S)
    return found.group(1).strip() if found else ""


@pytest.mark.parametrize(
    "moment, site, day, listed",
    [
        # 02:00 UTC on 2 March: London's 2 March, still 1 March (21:00) in New York
        (datetime(2026, 3, 2, 2, 0, tzinfo=UTC), "ny", "2026-03-02", False),
        (datetime(2026, 3, 2, 2, 0, tzinfo=UTC), "", "2026-03-02", True),
        # 12:00 UTC on 2 March: Auckland's 3 March (01:00 NZDT), still 2 March in London
        (datetime(2026, 3, 2, 12, 0, tzinfo=UTC), "akl", "2026-03-03", True),
        (datetime(2026, 3, 2, 12, 0, tzinfo=UTC), "", "2026-03-03", False),
    ],
)
def test_today_and_the_future_are_the_chosen_sites(desk, clinic, patient, ny, akl, moment, site, day, listed):
    chosen = {"ny": str(ny.pk), "akl": str(akl.pk), "": ""}[site]
    with time_machine.travel(moment, tick=False):
        response = add(desk, clinic, patient, day=day, done_where=chosen)
    if listed:
        assert response.status_code == 302, _error_next_to(response, "performed_on")
        record = ProcedureRecord.objects.get(patient=patient)
        assert record.performed_at == moment  # today there, no time given: now
        assert record.clinic_id == ({"ny": ny, "akl": akl}.get(site) or clinic).pk
    else:
        assert response.status_code == 200
        assert "future" in _error_next_to(response, "performed_on").lower(), words(response)[:600]
        assert not ProcedureRecord.objects.exists()


def test_a_time_later_today_at_the_site_is_refused_there_and_taken_here(desk, clinic, patient, ny, clock):
    """09:00 UTC on 2 March is 04:00 in New York: 08:00 there has not come yet, 08:00 in London has gone."""
    refused = add(desk, clinic, patient, day="2026-03-02", performed_time="08:00", done_where=str(ny.pk))
    assert refused.status_code == 200 and "future" in _error_next_to(refused, "performed_time").lower()
    assert not ProcedureRecord.objects.exists()
    assert add(desk, clinic, patient, day="2026-03-02", performed_time="08:00").status_code == 302
    assert ProcedureRecord.objects.get().performed_at == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_a_record_at_the_sister_site_is_named_dated_and_served_in_its_zone(desk, clinic, patient, ny, clock):
    assert add(desk, clinic, patient, done_where=str(ny.pk), area="face").status_code == 302
    record = ProcedureRecord.objects.get(patient=patient)
    assert record.performed_at == datetime(2026, 2, 21, 4, 59, tzinfo=UTC)  # 20 Feb 23:59 in New York

    detail = words(desk.get(_desk_url("patient", clinic, patient)))
    assert "20 Feb 2026" in detail and "21 Feb 2026" not in detail
    assert "Manhattan Site" in detail
    history = words(desk.get(_desk_url("patient_history", clinic, patient)))
    assert "Botulinum" in history and "20 Feb 2026" in history and "21 Feb 2026" not in history

    api = http(new_api_client(clinic, name="rv5k-history")[1])
    [row] = get(api, f"/patients/{patient.pk}/procedures/")["results"]
    assert row["performed_at"] == "2026-02-20T23:59:00-05:00"
    assert datetime.fromisoformat(row["performed_at"]) == record.performed_at


def test_the_patient_page_says_where_it_was_done_not_recorded(desk, clinic, patient, ny, clock):
    assert add(desk, clinic, patient, done_where=str(ny.pk)).status_code == 302
    detail = words(desk.get(_desk_url("patient", clinic, patient)))
    assert "recorded at Manhattan Site" not in detail and "Reported by the patient · Manhattan Site" in detail, detail
    history = words(desk.get(_desk_url("patient_history", clinic, patient)))
    assert "Reported by the patient · Manhattan Site" in history, history


def test_the_interval_rules_read_the_sister_sites_day(desk, clinic, patient, practitioner, ny, clock):
    """Botox on 20 February in New York (04:59 UTC on the 21st): microneedling 2 weeks on is 6 March, not 7."""
    assert add(desk, clinic, patient, done_where=str(ny.pk)).status_code == 302
    on_the_6th = appointment_check(
        patient=patient, procedure_code="microneedling", start_at=ldn(2026, 3, 6, 10), now=NOW
    )
    on_the_5th = appointment_check(
        patient=patient, procedure_code="microneedling", start_at=ldn(2026, 3, 5, 10), now=NOW
    )
    assert on_the_6th.eligible, on_the_6th
    assert not on_the_5th.eligible


@pytest.mark.parametrize("who", ["clinician", "org_receptionist", "org_admin"])
def test_a_clinician_and_organisation_staff_are_asked_and_recorded_alike(clinic, patient, ny, clock, who):
    client = {
        "clinician": lambda: staff_client(clinic, StaffRole.CLINICIAN, "rv5k-clin"),
        "org_receptionist": lambda: org_client(clinic.organisation, StaffRole.RECEPTIONIST, "rv5k-orgdesk"),
        "org_admin": lambda: org_client(clinic.organisation, StaffRole.CLINIC_ADMIN, "rv5k-orgadmin2"),
    }[who]()
    page = words(client.get(_desk_url("patient_history", clinic, patient)))
    assert "Where it was done" in page and "Manhattan Site (sister site, America/New_York)" in page
    assert add(client, clinic, patient, done_where=str(ny.pk), performed_time="14:30").status_code == 302
    record = ProcedureRecord.objects.get(patient=patient)
    assert (record.clinic_id, record.performed_at) == (ny.pk, datetime(2026, 2, 20, 19, 30, tzinfo=UTC))


@pytest.mark.parametrize("method", ["get", "head"])
def test_the_add_address_takes_only_post(desk, clinic, patient, ny, clock, method):
    response = getattr(desk, method)(_desk_url("procedure_add", clinic, patient))
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert not ProcedureRecord.objects.exists()


def test_a_sister_site_added_after_the_page_was_drawn_is_taken(desk, clinic, patient, clock):
    page = words(desk.get(_desk_url("patient_history", clinic, patient)))
    assert "Where it was done" not in page  # an organisation of one, then
    late = ClinicFactory(
        code="rv5k-late", name="Late Site", timezone="America/New_York", organisation=clinic.organisation
    )
    assert add(desk, clinic, patient, done_where=str(late.pk)).status_code == 302
    assert ProcedureRecord.objects.get().clinic_id == late.pk


def test_a_site_moved_to_another_organisation_after_the_page_was_drawn_is_refused(desk, clinic, patient, ny, clock):
    assert "Manhattan Site" in words(desk.get(_desk_url("patient_history", clinic, patient)))
    ny.organisation = OrganisationFactory(code="rv5k-elsewhere", name="Elsewhere")
    ny.save()
    response = add(desk, clinic, patient, done_where=str(ny.pk))
    assert response.status_code == 200
    assert "Select a valid choice" in _error_next_to(response, "done_where")
    assert not ProcedureRecord.objects.exists()


# --- Today: visits with no outcome yet (5ce85e8) -----------------------------------------------------------------


def visit(patient, practitioner, start_at, status=AppointmentStatus.CONFIRMED, clinic=None, **extra):
    return AppointmentFactory(
        clinic=clinic or patient.clinic,
        patient=patient,
        practitioner=practitioner,
        procedure_id="botox",
        start_at=start_at,
        end_at=start_at + timedelta(minutes=30),
        status=status,
        **extra,
    )


def section(response, heading_id: str) -> str:
    html = response.content.decode()
    found = re.search(rf'<section[^>]*aria-labelledby="{heading_id}">(.*?)</section>', html, flags=re.S)
    if not found:
        return ""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(1))).strip()


def no_outcome(client, clinic) -> str:
    return section(client.get(_desk_url("today", clinic)), "no-outcome-heading")


def test_a_checked_in_visit_that_is_over_is_listed_with_its_arrival(desk, clinic, patient, practitioner, clock):
    visit(patient, practitioner, NOW - timedelta(hours=2), checked_in_at=NOW - timedelta(hours=2, minutes=5))
    listed = no_outcome(desk, clinic)
    assert "Pat Lee" in listed and "Mon 2 Mar, 07:00" in listed and "Arrived 06:55" in listed


@pytest.mark.parametrize("org_level", [False, True])
def test_a_sister_sites_visit_is_not_listed_at_this_desk(clinic, patient, west, dr_west, clock, org_level):
    client = (
        org_client(clinic.organisation, StaffRole.RECEPTIONIST, "rv5k-org")
        if org_level
        else staff_client(clinic, StaffRole.RECEPTIONIST, "rv5k-one")
    )
    visit(patient, dr_west, NOW - timedelta(days=1), clinic=west)
    assert no_outcome(client, clinic) == ""
    if org_level:
        assert "Pat Lee" in no_outcome(client, west)


def test_ninety_days_back_exactly_is_listed_and_a_minute_more_is_not(desk, clinic, patient, practitioner, clock):
    visit(patient, practitioner, NOW - timedelta(days=90))  # Tue 2 Dec 2025, 09:00
    earlier = PatientFactory(clinic=clinic, first_name="Rv5k", last_name="Earlier")
    visit(earlier, PractitionerFactory(clinic=clinic), NOW - timedelta(days=90, minutes=1))  # 08:59
    listed = no_outcome(desk, clinic)
    assert (
        listed.count("Pat Lee") == 1
        and "Earlier" not in listed
        and "Tue 2 Dec, 09:00" in listed
        and "08:59" not in listed
    )


def test_an_over_visit_pending_clearance_is_under_clearance_only(desk, clinic, patient, practitioner, clock):
    visit(patient, practitioner, NOW - timedelta(days=2), status=AppointmentStatus.PENDING_CLEARANCE)
    page = desk.get(_desk_url("today", clinic))
    assert section(page, "no-outcome-heading") == ""
    assert "Pat Lee" in section(page, "pending-heading")


def test_a_visit_over_in_the_week_the_clocks_change_shows_its_local_time(desk, clinic, patient, practitioner):
    """London went to summer time at 01:00 UTC on Sunday 29 March 2026: a visit at 10:00 BST is 09:00 UTC."""
    visit(patient, practitioner, ldn(2026, 3, 29, 10), checked_in_at=ldn(2026, 3, 29, 9, 50))
    visit(patient, practitioner, ldn(2026, 3, 27, 17))  # the Friday before, on GMT
    with time_machine.travel(datetime(2026, 3, 30, 9, 0, tzinfo=UTC), tick=False):
        listed = no_outcome(desk, clinic)
    assert "Fri 27 Mar, 17:00" in listed and "Sun 29 Mar, 10:00" in listed and "Arrived 09:50" in listed
    assert listed.index("Fri 27 Mar") < listed.index("Sun 29 Mar")


@pytest.mark.parametrize("count, badge, more", [(50, "50", False), (51, "50+", True)])
def test_the_count_at_fifty_and_at_fifty_one(desk, clinic, patient, practitioner, clock, count, badge, more):
    for n in range(count):
        visit(patient, practitioner, NOW - timedelta(days=5) + timedelta(hours=n))
    listed = no_outcome(desk, clinic)
    assert listed.startswith(f"Visits with no outcome yet {badge} "), listed[:80]
    assert listed.count("Pat Lee") == 50
    assert ("The oldest 50 are shown" in listed) is more


def test_an_organisation_level_users_page_costs_the_same_for_one_visit_as_for_thirty(
    clinic, patient, practitioner, west, dr_west, clock
):
    client = org_client(clinic.organisation, StaffRole.RECEPTIONIST, "rv5k-count")
    visit(patient, practitioner, NOW - timedelta(days=1))
    visit(patient, dr_west, NOW - timedelta(days=1, hours=2), clinic=west)
    client.get(_desk_url("today", clinic))  # warm
    with CaptureQueriesContext(connection) as one:
        assert no_outcome(client, clinic).count("Pat Lee") == 1
    for n in range(29):
        other = PatientFactory(clinic=clinic, first_name=f"Rv{n}", last_name="Many")
        visit(other, practitioner, NOW - timedelta(days=3) + timedelta(hours=n))
    with CaptureQueriesContext(connection) as thirty:
        assert no_outcome(client, clinic).count("Many") == 29
    assert len(thirty) <= len(one)


# Was a strict-xfail QUESTION (listed somewhere, or `missed` past the look-back?). Decided: the session stays `booked`
# (its outcome is still not known) and Today asks about the last 90 days only, where aftercare still matters and the
# read stays bounded (docs/plans.md, docs/frontdesk.md); older ones are found on the calendar.
def test_a_plan_session_older_than_ninety_days_stays_booked_and_today_asks_no_more(lon, patient, desk, clinic):
    plan = _plan(lon, patient)
    first = plan["sessions"][0]
    with time_machine.travel(datetime(2026, 6, 15, 9, 0, tzinfo=UTC), tick=False):
        shown = get(lon, f"/plans/{plan['id']}/")
        listed = no_outcome(desk, clinic)
    assert shown["sessions"][0]["status"] == "booked"
    assert first["start"].startswith("2026-03-09")
    assert "Mon 9 Mar" not in listed, listed
