"""Review of fad62e0..HEAD (4ba021d, 68c0d2c, 9fea125), as the next owner: what a patient, a receptionist, a
clinician or a booking platform would meet.

1. scheduler/recheck.py, tasks.py, signals.py: RecheckRun.rulebook_versions (organisation and default-rule runs,
   isolation, failures, resumed runs); `start_run(in_request=True)` with the broker down or absent.
2. scheduler/booking.py: `appointment_recheck` reads the rules only; its callers (the run, the desk's clearance and
   review panels) and `appointment_clear`'s refusals.
3. scheduler/lifecycle.py: the `subscribe_freed` / `appointment_freed` seam (cancel, move, no-show).
4. reminders/consent.py: unsubscribe tokens of the old salt, forged ones, other salts.
5. reminders/services.py `_rescheduled_notice`: moves and move-backs, within and after the grace period, with a
   confirmation that recorded `told_start` and a first-round one that did not, on SMS and e-mail.
6. clinic 0017 (shipped short names); api/filters.py empty values on every list filter.
7. reminders/wording.py, longest.py, fit.py, content.py: a move of code, pinned by behaviour.

Runs go step by step by hand (`drive`), messages through the embedded dispatcher at chosen moments. Found and mended
since (each test failed before): a first chunk that failed in the admin's request (broker down) made the rule's save
a 500; a default-rule run recorded bare versions, two organisations' books alike ("d2.o2") and sorted as text (now
"<organisation code>: <version>", by number). The rest pins what the change got right.
"""

from __future__ import annotations

import importlib
import json
import re
from datetime import datetime, timedelta
from io import StringIO
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.core import mail, signing
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from kombu.exceptions import OperationalError as BrokerDown

from clinic.models import (
    Appointment,
    AppointmentStatus,
    AuditEvent,
    ConditionStatus,
    Patient,
    PatientCondition,
    ProcedureType,
    StaffMembership,
    StaffRole,
    TimeOff,
    WorkingHours,
)
from core.errors import NotAllowed
from reminders import consent, content, fit, longest, wording
from reminders.channels import LocmemSmsBackend
from reminders.dispatch import dispatch_local
from reminders.models import ContactOptOut, MessageKind, OutboxMessage, OutboxStatus, ReminderTemplate
from scheduler import booking, lifecycle, recheck, rulebooks, selectors, tasks
from scheduler.booking import UnableToBook, appointment_book, appointment_cancel, appointment_clear
from scheduler.models import IntervalRule, RecheckRun, RuleBookVersion
from scheduler.selfservice import appointment_cancel_by_patient
from tests.factories import (
    AppointmentFactory,
    ClinicFactory,
    OrganisationFactory,
    PatientFactory,
    PractitionerFactory,
    ProcedureRecordFactory,
)
from tests.qa.helpers import CLINICIAN, NOW, RECEPTION, fresh, words

pytestmark = [pytest.mark.django_db]

LONDON = ZoneInfo("Europe/London")
DEFAULT_KEY = "filler-then-microneedling"  # block, 4 weeks [001]
CONFIRMED = AppointmentStatus.CONFIRMED
NEEDS_REVIEW = AppointmentStatus.NEEDS_REVIEW
PENDING = AppointmentStatus.PENDING_CLEARANCE
REAL_START_RUN = tasks.start_run  # the change fixture records runs instead; a test that runs them restores it


def ldn(y, m, d, hh=10, mm=0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=LONDON)


# --- World -------------------------------------------------------------------------------------------------------


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def admin_user(db):
    return get_user_model().objects.create_superuser("rv5d-root", "root@rv5d.example", "rv5d-pw-for-tests-only")


@pytest.fixture
def world(catalogue, clock):
    """Two organisations, each one London clinic and its practitioner."""
    out = {}
    for code in ("rv5d-a", "rv5d-b"):
        organisation = OrganisationFactory(code=code)
        site = ClinicFactory(code=f"{code}-ldn", organisation=organisation, timezone="Europe/London")
        out[code] = {"org": organisation, "clinic": site, "dr": PractitionerFactory(clinic=site, name=f"Dr {code}")}
    return out


def seed(site, count: int, *, first: int = 0, filler_weeks_before: int = 5) -> list[Appointment]:
    """`count` patients, each a filler `filler_weeks_before` weeks before a booked microneedling (written directly)."""
    made = []
    for index in range(first, first + count):
        patient = PatientFactory(clinic=site["clinic"])
        start = ldn(2026, 3, 9 + index // 8, 9 + index % 8)
        ProcedureRecordFactory(
            patient=patient, procedure_id="filler", performed_at=start - timedelta(weeks=filler_weeks_before)
        )
        made.append(
            AppointmentFactory(
                patient=patient,
                clinic=site["clinic"],
                practitioner=site["dr"],
                procedure_id="microneedling",
                start_at=start,
                end_at=start + timedelta(hours=1),
            )
        )
    return made


def own_filler_rule(organisation, user, *, weeks: int) -> None:
    """The organisation's own filler -> microneedling rule standing in for the default, saved as the admin does."""
    default = IntervalRule.objects.get(default_key=DEFAULT_KEY)
    rule = IntervalRule.objects.filter(organisation=organisation, replaces=default).first() or IntervalRule(
        organisation=organisation,
        replaces=default,
        earlier_procedure_id="filler",
        later_procedure_id="microneedling",
        gap_value=default.gap_value,
        gap_unit=default.gap_unit,
        severity=default.severity,
        source="rv5d protocol",
    )
    rule.gap_value = weeks
    rulebooks.rule_save(rule=rule, user=user, reason=f"rv5d: {weeks} weeks", now=NOW)


@pytest.fixture
def change(monkeypatch, django_capture_on_commit_callbacks):
    """A rule change run to its commit; the runs it started, with the keyword arguments start_run was given."""
    started: list[tuple[str, dict]] = []
    monkeypatch.setattr(tasks, "start_run", lambda run_id, **kwargs: started.append((run_id, kwargs)))

    def run(fn, *args, **kwargs) -> list[RecheckRun]:
        before = len(started)
        with django_capture_on_commit_callbacks(execute=True):
            fn(*args, **kwargs)
        run.kwargs = [kw for _, kw in started[before:]]
        return [RecheckRun.objects.get(pk=run_id) for run_id, _ in started[before:]]

    return run


def drive(run: RecheckRun, *, chunk: int = recheck.CHUNK) -> int:
    steps = 1
    while not recheck.recheck_run_step(run_id=run.pk, now=NOW, chunk=chunk):
        steps += 1
        assert steps < 100
    return steps


def version_of(site) -> str:
    return selectors.rulebook_version(site["org"].pk)


# === 1. RecheckRun.rulebook_versions ===============================================================================


def test_an_organisations_run_records_its_version_once_over_many_chunks(world, change, admin_user):
    a = world["rv5d-a"]
    mine = seed(a, 3)
    [run] = change(own_filler_rule, a["org"], admin_user, weeks=8)

    assert drive(run, chunk=1) == 4  # three chunks of one patient, and the empty one that finishes
    run.refresh_from_db()
    assert run.rulebook_versions == [f"rv5d-a: {version_of(a)}"] == ["rv5d-a: d1.o2"]
    # The same version the moved appointments' audit entries name.
    assert {
        e.details["rulebook_version"] for e in AuditEvent.objects.filter(appointment__in=mine, action="needs_review")
    } == {"d1.o2"}


def test_a_run_that_changes_nothing_still_records_the_version_it_checked_against(world, change, admin_user):
    a = world["rv5d-a"]
    mine = seed(a, 2)
    [run] = change(own_filler_rule, a["org"], admin_user, weeks=3)  # relaxed: every booking stays as it was
    drive(run)
    run.refresh_from_db()
    assert [fresh(x).status for x in mine] == [CONFIRMED, CONFIRMED] and run.appointments_changed == 0
    assert run.rulebook_versions == ["rv5d-a: d1.o2"]


def test_a_default_change_records_each_organisations_version_sorted_and_unique(world, change, admin_user):
    a, b = world["rv5d-a"], world["rv5d-b"]
    seed(a, 2)
    seed(b, 2, first=2)
    [own] = change(own_filler_rule, a["org"], admin_user, weeks=5)
    drive(own)
    default = IntervalRule.objects.get(default_key=DEFAULT_KEY)
    default.gap_value = 3
    [run] = change(rulebooks.rule_save, rule=default, user=admin_user, reason="rv5d: defaults relaxed", now=NOW)
    drive(run, chunk=1)
    run.refresh_from_db()
    assert run.organisation_id is None
    assert version_of(a) == "d2.o2" and version_of(b) == "d2.o1"
    assert run.rulebook_versions == ["rv5d-a: d2.o2", "rv5d-b: d2.o1"]


def test_a_run_that_isolates_a_failing_patient_keeps_the_others_versions(world, change, admin_user, monkeypatch):
    a = world["rv5d-a"]
    mine = seed(a, 3)
    [run] = change(own_filler_rule, a["org"], admin_user, weeks=8)
    bad = sorted(x.patient_id for x in mine)[1]
    real = recheck._recheck_patient

    def flaky(patient_id, now, cause, versions):
        if patient_id == bad:
            raise RuntimeError("rv5d: this patient cannot be re-checked")
        return real(patient_id, now, cause, versions)

    monkeypatch.setattr(recheck, "_recheck_patient", flaky)
    for _ in range(recheck.ISOLATE_AFTER):
        with pytest.raises(RuntimeError):
            recheck.recheck_run_step(run_id=run.pk, now=NOW)
    assert recheck.recheck_run_step(run_id=run.pk, now=NOW)
    run.refresh_from_db()
    assert [f["patient"] for f in run.failures] == [str(bad)]
    assert run.rulebook_versions == ["rv5d-a: d1.o2"]
    assert sorted(fresh(x).status for x in mine) == sorted([CONFIRMED, NEEDS_REVIEW, NEEDS_REVIEW])


def test_a_run_resumed_after_a_failed_step_loses_and_duplicates_nothing(world, change, admin_user, monkeypatch):
    a = world["rv5d-a"]
    mine = seed(a, 3)
    [run] = change(own_filler_rule, a["org"], admin_user, weeks=8)
    assert not recheck.recheck_run_step(run_id=run.pk, now=NOW, chunk=1)
    assert fresh(run).rulebook_versions == ["rv5d-a: d1.o2"]

    # The organisation's book moves on half-way (its own run follows); the next step fails once, then goes.
    RuleBookVersion.objects.create(organisation=a["org"], number=3, created_at=NOW, reason="rv5d: half-way")
    real, calls = recheck._recheck_patient, []

    def once(patient_id, now, cause, versions):
        calls.append(patient_id)
        if len(calls) == 1:
            raise RuntimeError("rv5d: lock wait timeout")
        return real(patient_id, now, cause, versions)

    monkeypatch.setattr(recheck, "_recheck_patient", once)
    with pytest.raises(RuntimeError):
        recheck.recheck_run_step(run_id=run.pk, now=NOW, chunk=1)
    assert fresh(run).rulebook_versions == ["rv5d-a: d1.o2"]  # the failed step recorded nothing
    drive(run, chunk=1)
    run.refresh_from_db()
    assert run.rulebook_versions == ["rv5d-a: d1.o2", "rv5d-a: d1.o3"]
    assert run.patients_done == 3 and [fresh(x).status for x in mine] == [NEEDS_REVIEW] * 3


def test_a_default_runs_versions_say_which_organisations_book_each_is(world, change, admin_user):
    a, b = world["rv5d-a"], world["rv5d-b"]
    seed(a, 1)
    seed(b, 1, first=1)
    for site, weeks in ((a, 5), (b, 6)):  # each its own rule: two different books, each its version 2
        [own] = change(own_filler_rule, site["org"], admin_user, weeks=weeks)
        drive(own)
    default = IntervalRule.objects.get(default_key="botox-then-microneedling")
    default.gap_value = 3
    [run] = change(rulebooks.rule_save, rule=default, user=admin_user, reason="rv5d: defaults tightened", now=NOW)
    drive(run)
    assert version_of(a) == version_of(b) == "d2.o2"
    assert fresh(run).rulebook_versions == ["rv5d-a: d2.o2", "rv5d-b: d2.o2"]


def test_the_admin_lists_what_a_run_checked_against(world, change, admin_user):
    a = world["rv5d-a"]
    seed(a, 1)
    [run] = change(own_filler_rule, a["org"], admin_user, weeks=8)
    drive(run)
    client = Client()
    client.force_login(admin_user)
    page = client.get("/admin/scheduler/recheckrun/")
    assert page.status_code == 200
    assert "checked against" in words(page).lower() and "d1.o2" in words(page)


# === 1b. start_run: in the admin's request, with the broker down or absent =========================================


def _broker_down(monkeypatch, settings) -> list:
    monkeypatch.setattr(tasks, "start_run", REAL_START_RUN)
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    tried: list = []

    def down(args, **kwargs):
        tried.append(args[0])
        raise BrokerDown("rv5d: connection refused")

    monkeypatch.setattr(tasks.recheck_step, "apply_async", down)
    return tried


def _one_patient_chunks(monkeypatch) -> None:
    """start_run's steps take the default chunk: one patient each here, so a run has several."""
    monkeypatch.setitem(recheck.recheck_run_step.__kwdefaults__, "chunk", 1)


def test_a_rule_change_starts_its_run_as_in_a_request(world, change, admin_user):
    seed(world["rv5d-a"], 1)
    [run] = change(own_filler_rule, world["rv5d-a"]["org"], admin_user, weeks=8)
    assert change.kwargs == [{"in_request": True}]


def test_with_the_broker_down_the_request_runs_the_first_chunk_and_the_beat_the_rest(
    world, admin_user, monkeypatch, settings, change
):
    a = world["rv5d-a"]
    mine = seed(a, 3)
    [run] = change(own_filler_rule, a["org"], admin_user, weeks=8)
    tried = _broker_down(monkeypatch, settings)
    _one_patient_chunks(monkeypatch)

    tasks.start_run(str(run.pk), in_request=True)

    run.refresh_from_db()
    assert tried == [str(run.pk)] and run.patients_done == 1 and run.finished_at is None
    assert run.rulebook_versions == ["rv5d-a: d1.o2"]
    settings.CELERY_BROKER_URL = ""  # back (the embedded default: the resume runs the rest here)
    with time_machine.travel(NOW + recheck.STALLED_AFTER + timedelta(seconds=1), tick=False):
        assert tasks.resume_rechecks() == 1
    run.refresh_from_db()
    assert run.finished_at is not None and run.patients_done == 3
    assert [fresh(x).status for x in mine] == [NEEDS_REVIEW] * 3 and run.rulebook_versions == ["rv5d-a: d1.o2"]


def test_with_no_broker_the_whole_run_runs_in_the_request(world, admin_user, monkeypatch, settings, change):
    a = world["rv5d-a"]
    mine = seed(a, 3)
    [run] = change(own_filler_rule, a["org"], admin_user, weeks=8)
    settings.CELERY_BROKER_URL = ""
    monkeypatch.setattr(tasks, "start_run", REAL_START_RUN)
    monkeypatch.setattr(tasks.recheck_step, "apply_async", lambda *a, **k: pytest.fail("no broker: nothing enqueued"))
    _one_patient_chunks(monkeypatch)

    tasks.start_run(str(run.pk), in_request=True)

    run.refresh_from_db()
    assert run.finished_at is not None and run.patients_done == 3
    assert [fresh(x).status for x in mine] == [NEEDS_REVIEW] * 3


def test_a_worker_with_the_broker_down_runs_the_rest_itself(world, admin_user, monkeypatch, settings, change):
    a = world["rv5d-a"]
    seed(a, 3)
    [run] = change(own_filler_rule, a["org"], admin_user, weeks=8)
    _broker_down(monkeypatch, settings)
    _one_patient_chunks(monkeypatch)
    tasks.start_run(str(run.pk))  # a step chaining the next, or the beat's resume
    assert fresh(run).finished_at is not None and fresh(run).patients_done == 3


def test_a_first_chunk_that_fails_in_the_request_does_not_fail_the_admins_save(
    world, admin_user, monkeypatch, settings, change
):
    a = world["rv5d-a"]
    seed(a, 2)
    [run] = change(own_filler_rule, a["org"], admin_user, weeks=8)
    _broker_down(monkeypatch, settings)

    def stuck(*args, **kwargs):
        raise RuntimeError("rv5d: canceling statement due to lock timeout")

    monkeypatch.setattr(recheck, "_recheck_patient", stuck)
    tasks.start_run(str(run.pk), in_request=True)  # what the on-commit callback runs inside the admin's request
    assert fresh(run).failed_steps == 1 and fresh(run).finished_at is None


@pytest.mark.django_db(transaction=True)
def test_the_admins_save_of_a_rule_is_not_a_500_when_the_first_chunk_fails(catalogue, clock, monkeypatch, settings):
    site = ClinicFactory(code="rv5d-tx", timezone="Europe/London")
    seed({"clinic": site, "dr": PractitionerFactory(clinic=site)}, 1)
    _broker_down(monkeypatch, settings)

    def stuck(*args, **kwargs):
        raise RuntimeError("rv5d: canceling statement due to lock timeout")

    monkeypatch.setattr(recheck, "_recheck_patient", stuck)
    default = IntervalRule.objects.get(default_key=DEFAULT_KEY)
    client = Client(raise_request_exception=False)
    client.force_login(get_user_model().objects.create_superuser("rv5d-tx", "tx@rv5d.example", "rv5d-pw-tests"))
    form = {
        "earlier_procedure": "filler",
        "earlier_medication": "",
        "later_procedure": "microneedling",
        "gap_value": "8",
        "gap_unit": default.gap_unit,
        "severity": default.severity,
        "scope": default.scope,
        "source": default.source,
        "basis": default.basis,
        "note": default.note,
        "is_active": "on",
        "change_reason": "rv5d: 8 weeks everywhere",
        "_save": "Save",
    }
    response = client.post(f"/admin/scheduler/intervalrule/{default.pk}/change/", form)
    assert IntervalRule.objects.get(pk=default.pk).gap_value == 8  # saved, whatever the answer
    assert RecheckRun.objects.get().failed_steps == 1  # the first chunk ran in the request, and failed
    assert response.status_code == 302, response.status_code


# === 2. appointment_recheck: the rules only ========================================================================


@pytest.fixture
def desk_world(catalogue, clock):
    site = ClinicFactory(code="rv5d-desk", name="RV5D Desk", timezone="Europe/London")
    doctor = PractitionerFactory(clinic=site, name="Dr Desk")
    return {"clinic": site, "dr": doctor}


def _staff(site, role: str, username: str) -> Client:
    user = get_user_model().objects.create_user(username=username, password="rv5d-pw-for-tests-only")
    StaffMembership.objects.create(user=user, clinic=site, role=role)
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def _book(patient, when, code="microneedling"):
    return appointment_book(patient=patient, procedure_code=code, start_at=when, actor=RECEPTION, now=NOW).appointment


def _pending(site) -> Appointment:
    patient = PatientFactory(clinic=site, first_name="Erin")
    PatientCondition.objects.create(patient=patient, condition_id="eczema", status=ConditionStatus.HISTORY)
    made = _book(patient, ldn(2026, 3, 12))
    assert made.status == PENDING
    return made


def _calendar_gone(doctor, when) -> None:
    """The practitioner no longer works then: hours removed, time off over it (the calendar a check would read)."""
    WorkingHours.objects.filter(practitioner=doctor).delete()
    TimeOff.objects.create(practitioner=doctor, start_at=when - timedelta(days=1), end_at=when + timedelta(days=1))


def test_the_recheck_is_the_full_checks_verdict_without_the_calendar(desk_world):
    made = _pending(desk_world["clinic"])
    _calendar_gone(desk_world["dr"], made.start_at)
    made = Appointment.objects.select_related("patient", "clinic", "procedure", "area", "practitioner").get(pk=made.pk)
    full = booking._recheck(made, made.patient)
    assert full.availability  # the full check now finds the practitioner away

    with CaptureQueriesContext(connection) as queries:
        check = booking.appointment_recheck(appointment=made)

    sql = " ".join(q["sql"] for q in queries.captured_queries).lower()
    assert "workinghours" not in sql and "timeoff" not in sql
    assert check.evaluation == full.evaluation and check.availability == () and check.next_available_slot is None
    assert check.rulebook_version == full.rulebook_version == selectors.rulebook_version(made.patient.organisation_id)
    assert check.practitioner == made.practitioner and (check.start_at, check.end_at) == (made.start_at, made.end_at)
    assert [v.rule_id for v in check.needs_clearance] == [v.rule_id for v in full.needs_clearance]


def test_a_record_change_still_flags_and_releases_through_the_rules_only_recheck(desk_world):
    made = _book(PatientFactory(clinic=desk_world["clinic"]), ldn(2026, 3, 20))
    _calendar_gone(desk_world["dr"], made.start_at)  # irrelevant to a booking already holding its place
    record = ProcedureRecordFactory(patient=made.patient, procedure_id="filler", performed_at=ldn(2026, 3, 1))
    recheck.on_record_changed(patient_id=made.patient_id, now=NOW, cause="history: filler added")
    assert fresh(made).status == NEEDS_REVIEW and fresh(made).review_reasons
    record.delete()
    recheck.on_record_changed(patient_id=made.patient_id, now=NOW, cause="history: corrected")
    assert fresh(made).status == CONFIRMED and fresh(made).review_reasons == []


def test_the_clearance_panel_shows_the_reason_whatever_the_calendar_says(desk_world):
    made = _pending(desk_world["clinic"])
    _calendar_gone(desk_world["dr"], made.start_at)
    page = _staff(desk_world["clinic"], StaffRole.CLINICIAN, "rv5d-clin").get(
        reverse("frontdesk:appointment", args=[desk_world["clinic"].code, made.pk])
    )
    assert page.status_code == 200
    text = words(page)
    assert "Pending clearance" in text and "eczema" in text.lower()


def test_the_review_panel_shows_what_the_rules_break_now(desk_world):
    made = _book(PatientFactory(clinic=desk_world["clinic"]), ldn(2026, 3, 20))
    ProcedureRecordFactory(patient=made.patient, procedure_id="filler", performed_at=ldn(2026, 3, 1))
    recheck.on_record_changed(patient_id=made.patient_id, now=NOW, cause="history: filler added")
    _calendar_gone(desk_world["dr"], made.start_at)
    page = _staff(desk_world["clinic"], StaffRole.RECEPTIONIST, "rv5d-desk").get(
        reverse("frontdesk:appointment", args=[desk_world["clinic"].code, made.pk])
    )
    assert page.status_code == 200
    text = words(page)
    assert "Needs review" in text
    assert fresh(made).review_reasons[0]["message"] in text


def test_clearing_still_refuses_a_block_that_stands_now_and_names_it(desk_world):
    made = _pending(desk_world["clinic"])
    ProcedureRecordFactory(patient=made.patient, procedure_id="filler", performed_at=ldn(2026, 3, 1))  # not re-checked
    with pytest.raises(UnableToBook) as refused:
        appointment_clear(appointment=made, actor=CLINICIAN, now=NOW, reason="discussed with the patient")
    assert refused.value.check.availability == () and refused.value.check.evaluation.blocking
    assert "filler" in refused.value.message.lower()
    assert fresh(made).status == PENDING


def test_clearing_still_needs_a_clinician_and_ignores_the_calendar(desk_world):
    made = _pending(desk_world["clinic"])
    with pytest.raises(NotAllowed):
        appointment_clear(appointment=made, actor=RECEPTION, now=NOW, reason="ok")
    _calendar_gone(desk_world["dr"], made.start_at)
    cleared = appointment_clear(appointment=made, actor=CLINICIAN, now=NOW, reason="dermatologist's letter seen")
    assert cleared.status == CONFIRMED and cleared.clearance_details["keys"] == ["condition:eczema"]


# === 3. The lifecycle's seam: a cancel, a move and a no-show free what they flagged ================================


def _filler_then_microneedling(site, admin_user, *, flag_at=NOW):
    """A filler booked Tuesday 10 March and a microneedling five weeks later; the organisation then asks for six
    weeks, re-checked at `flag_at`: the filler booking flags the microneedling (needs review), and the filler, when
    it has not started yet, needs review too (the rule holds both ways)."""
    patient = PatientFactory(clinic=site, first_name="Fay")
    filler = _book(patient, ldn(2026, 3, 10), code="filler")
    later = _book(patient, ldn(2026, 4, 14))
    own_filler_rule(patient.organisation, admin_user, weeks=6)
    recheck.patient_appointments_recheck(patient_id=patient.pk, now=flag_at, cause="rule changed: rv5d")
    assert fresh(later).status == NEEDS_REVIEW
    return fresh(filler), later


@pytest.fixture
def flagged(desk_world, admin_user):
    return _filler_then_microneedling(desk_world["clinic"], admin_user)


def _released(appointment) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(appointment=appointment, action="released"))


def test_the_recheck_is_subscribed_to_the_seam_once():
    assert lifecycle._freed_subscribers.count(recheck.flagged_appointments_recheck) == 1
    lifecycle.subscribe_freed(recheck.flagged_appointments_recheck)  # registered again (a second ready())
    assert lifecycle._freed_subscribers.count(recheck.flagged_appointments_recheck) == 1


def test_a_cancel_releases_the_booking_it_flagged_once(flagged):
    filler, later = flagged
    appointment_cancel(appointment=filler, actor=RECEPTION, now=NOW, reason="patient asked")
    assert fresh(later).status == CONFIRMED
    [released] = _released(later)
    assert "cancelled" in released.details["cause"] and released.details["rulebook_version"] == "d1.o2"


def test_the_patients_own_cancel_releases_the_booking_it_flagged_once(flagged):
    filler, later = flagged
    appointment_cancel_by_patient(appointment=filler, now=NOW, reason="cannot come")
    assert fresh(filler).status == AppointmentStatus.CANCELLED and fresh(later).status == CONFIRMED
    assert len(_released(later)) == 1


def test_a_move_away_releases_the_booking_it_flagged_once(flagged):
    filler, later = flagged
    booking.appointment_reschedule(appointment=filler, start_at=ldn(2026, 3, 3), actor=RECEPTION, now=NOW)
    assert fresh(filler).status == CONFIRMED and fresh(later).status == CONFIRMED
    [released] = _released(later)
    assert "moved" in released.details["cause"]


def test_a_no_show_releases_the_booking_it_flagged_once(desk_world, admin_user, clock):
    started = ldn(2026, 3, 10, 10, 30)
    clock.move_to(started)
    filler, later = _filler_then_microneedling(desk_world["clinic"], admin_user, flag_at=started)
    assert filler.status == CONFIRMED  # started: not re-checked
    booking.appointment_mark_no_show(appointment=filler, actor=CLINICIAN, now=started + timedelta(minutes=30))
    assert fresh(later).status == CONFIRMED
    [released] = _released(later)
    assert "no-show" in released.details["cause"]


def test_the_release_is_in_the_cancels_own_transaction(flagged, monkeypatch):
    filler, later = flagged

    def boom(*, appointment, now, what):
        raise RuntimeError("rv5d: the re-check failed")

    monkeypatch.setattr(lifecycle, "_freed_subscribers", [*lifecycle._freed_subscribers, boom])
    with pytest.raises(RuntimeError):
        appointment_cancel(appointment=filler, actor=RECEPTION, now=NOW, reason="patient asked")
    assert fresh(filler).status == NEEDS_REVIEW and fresh(later).status == NEEDS_REVIEW and _released(later) == []
    assert not AuditEvent.objects.filter(appointment=filler, action="cancelled").exists()


# === 4. Unsubscribe tokens =========================================================================================


@pytest.fixture
def reader(catalogue):
    site = ClinicFactory(code="rv5d-mail", name="RV5D Mail", timezone="Europe/London")
    return PatientFactory(
        clinic=site,
        email="uma@example.com",
        phone="+447700900321",
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )


def _token(payload, salt: str | None) -> str:
    return signing.dumps(payload, salt=salt, compress=True) if salt else signing.dumps(payload, compress=True)


@pytest.mark.parametrize("channel", ["email", "sms"])
def test_a_first_round_link_unsubscribes_from_its_channel(reader, channel):
    token = _token({"p": str(reader.pk), "c": channel}, "scheduler.reminders.unsubscribe")
    assert Client().get(f"/reminders/unsubscribe/{token}/").status_code == 200  # a GET only asks
    assert channel in Patient.objects.get(pk=reader.pk).reminder_channels
    done = Client().post(f"/reminders/unsubscribe/{token}/")
    assert done.status_code == 200
    assert channel not in Patient.objects.get(pk=reader.pk).reminder_channels
    assert ContactOptOut.objects.filter(patient=reader, channel=channel, via="email_link").exists()


def test_todays_links_still_use_todays_salt(reader):
    token = consent.unsubscribe_token(patient_id=reader.pk)
    assert signing.loads(token, salt="reminders.unsubscribe") == {"p": str(reader.pk), "c": "email"}
    assert consent.unsubscribe_token_read(token) == (reader, "email")


@pytest.mark.parametrize(
    "salt",
    [
        None,  # django.core.signing's own
        "reminders.consent",
        "scheduler.reminders",
        "scheduler.reminders.unsubscribe.extra",
        "reminders.unsubscribe ",
        "django.contrib.sessions.backends.signed_cookies",
        "portal.manage",
    ],
)
def test_a_token_of_another_salt_is_refused_as_an_invalid_link(reader, salt):
    token = _token({"p": str(reader.pk), "c": "email"}, salt)
    answer = Client(raise_request_exception=False).post(f"/reminders/unsubscribe/{token}/")
    assert answer.status_code == 400 and "not valid" in words(answer)
    assert "email" in Patient.objects.get(pk=reader.pk).reminder_channels


def _damaged(reader) -> list[str]:
    good = _token({"p": str(reader.pk), "c": "email"}, "scheduler.reminders.unsubscribe")
    value, _, signature = good.rpartition(":")
    return [
        good[:-1] + ("A" if good[-1] != "A" else "B"),  # its signature altered
        f"{value}:{signature[::-1]}",
        good[: len(good) // 2],  # cut short
        good.replace(":", "", 1),
        "nonsense",
        "a:b:c",
        ":::",
        "%C3%A9t%C3%A9",
        good + ":" + signature,
    ]


def test_forged_and_damaged_tokens_are_a_400_never_a_500(reader):
    client = Client(raise_request_exception=False)
    for token in _damaged(reader):
        for method in (client.get, client.post):
            answer = method(f"/reminders/unsubscribe/{token}/")
            assert answer.status_code == 400, (token, answer.status_code)
    assert Patient.objects.get(pk=reader.pk).reminder_channels == ["email", "sms"]


@pytest.mark.parametrize(
    "payload",
    [
        ["p", "c"],
        "just a string",
        {"p": "not-a-uuid", "c": "email"},
        {"p": "00000000-0000-0000-0000-000000000000", "c": "email"},
        {"c": "email"},
        {"p": None, "c": "email"},
        {"p": 12, "c": "email"},
        {"p": "{pk}", "c": "webhook"},
        {"p": "{pk}", "c": ["email"]},
    ],
)
def test_an_old_salt_token_of_another_shape_is_an_invalid_link(reader, payload):
    if isinstance(payload, dict) and payload.get("p") == "{pk}":
        payload = {**payload, "p": str(reader.pk)}
    token = _token(payload, "scheduler.reminders.unsubscribe")
    answer = Client(raise_request_exception=False).post(f"/reminders/unsubscribe/{token}/")
    assert answer.status_code == 400


# === 5. The move notice: the time the patient last heard ===========================================================


T0, T1, T2, T3 = ldn(2026, 3, 10), ldn(2026, 3, 11), ldn(2026, 3, 12), ldn(2026, 3, 13)
SAID = {T0: "Tue 10 Mar, 10:00", T1: "Wed 11 Mar, 10:00", T2: "Thu 12 Mar, 10:00", T3: "Fri 13 Mar, 10:00"}


@pytest.fixture
def notice_world(care_texts, desk_world, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SMS_BACKEND = "reminders.channels.LocmemSmsBackend"
    settings.REMINDERS_PUBLIC_BASE_URL = "https://clinic.example"
    LocmemSmsBackend.outbox = []
    yield desk_world
    LocmemSmsBackend.outbox = []


def _confirmed(site, *, first_round: bool) -> Appointment:
    """Botox at T0, its confirmation sent by e-mail and text; `first_round`: recorded as the first round did (no
    told_start in its payload)."""
    patient = PatientFactory(
        clinic=site, first_name="Nora", phone="+447700900123", reminder_channels=["email", "sms"], sms_consent=True
    )
    made = _book(patient, T0, code="botox")
    _dispatch(NOW)
    sent = OutboxMessage.objects.filter(appointment=made, kind=MessageKind.CONFIRMATION, status=OutboxStatus.SENT)
    assert sent.count() == 2 and all(r.payload.get("told_start") == T0.isoformat() for r in sent)
    if first_round:
        sent.update(payload={})
    mail.outbox.clear()
    LocmemSmsBackend.outbox = []
    return made


def _dispatch(moment) -> None:
    with time_machine.travel(moment, tick=False):
        dispatch_local(now=moment)


def _move(appointment, to, minutes: int) -> None:
    moment = NOW + timedelta(minutes=minutes)
    with time_machine.travel(moment, tick=False):
        booking.appointment_reschedule(
            appointment=Appointment.objects.get(pk=appointment.pk), start_at=to, actor=RECEPTION, now=moment
        )


def _notices() -> list[str]:
    """The move notices the patient got since the last look, texts and e-mails (then forgotten)."""
    said = [t["body"] for t in LocmemSmsBackend.outbox if "has moved" in t["body"]]
    said += [m.body for m in mail.outbox if "has moved" in m.subject]
    mail.outbox.clear()
    LocmemSmsBackend.outbox = []
    return said


def _told(notices: list[str], new, old) -> None:
    assert len(notices) == 2, notices  # one text, one e-mail
    sms, email = notices
    assert f"moved to {SAID[new]}" in sms and f"(it was {SAID[old]}" in sms, sms
    assert f"New time: {SAID[new]}" in email and f"It was: {SAID[old]}" in email, email


@pytest.mark.parametrize("first_round", [False, True], ids=["told-start", "first-round"])
def test_two_moves_in_the_grace_tell_the_time_the_confirmation_named(notice_world, first_round):
    made = _confirmed(notice_world["clinic"], first_round=first_round)
    _move(made, T1, 10)
    _move(made, T2, 12)
    _dispatch(NOW + timedelta(minutes=30))
    _told(_notices(), T2, T0)


@pytest.mark.parametrize("first_round", [False, True], ids=["told-start", "first-round"])
def test_a_move_back_within_the_grace_cancels_the_notice(notice_world, first_round):
    made = _confirmed(notice_world["clinic"], first_round=first_round)
    _move(made, T1, 10)
    _move(made, T2, 11)
    _move(made, T0, 12)
    _dispatch(NOW + timedelta(minutes=30))
    assert _notices() == []
    notices = OutboxMessage.objects.filter(appointment=made, kind=MessageKind.RESCHEDULED).exclude(channel="webhook")
    assert notices.count() == 2 and set(notices.values_list("status", flat=True)) == {OutboxStatus.CANCELLED}


@pytest.mark.parametrize("first_round", [False, True], ids=["told-start", "first-round"])
def test_a_second_move_after_the_grace_but_before_the_notice_went_tells_the_first_time(notice_world, first_round):
    made = _confirmed(notice_world["clinic"], first_round=first_round)
    _move(made, T1, 10)  # its notice due at +15; the dispatcher has not run since
    _move(made, T2, 20)
    _dispatch(NOW + timedelta(minutes=40))
    _told(_notices(), T2, T0)


@pytest.mark.parametrize("first_round", [False, True], ids=["told-start", "first-round"])
def test_moves_after_a_notice_went_run_from_the_time_it_told(notice_world, first_round):
    made = _confirmed(notice_world["clinic"], first_round=first_round)
    _move(made, T1, 10)
    _dispatch(NOW + timedelta(minutes=20))
    _told(_notices(), T1, T0)
    _move(made, T2, 40)
    _move(made, T3, 42)
    _dispatch(NOW + timedelta(minutes=60))
    _told(_notices(), T3, T1)
    _move(made, T2, 70)
    _move(made, T3, 72)  # back to what the last notice told, within the grace: nothing to say
    _dispatch(NOW + timedelta(minutes=90))
    assert _notices() == []


@pytest.mark.parametrize("first_round", [False, True], ids=["told-start", "first-round"])
def test_a_move_back_to_the_first_time_after_its_notice_went_tells_it_again(notice_world, first_round):
    made = _confirmed(notice_world["clinic"], first_round=first_round)
    _move(made, T1, 10)
    _dispatch(NOW + timedelta(minutes=20))
    _told(_notices(), T1, T0)
    _move(made, T0, 40)  # the patient now holds T1: T0 is news again
    _dispatch(NOW + timedelta(minutes=60))
    _told(_notices(), T0, T1)


@pytest.mark.parametrize("first_round", [False, True], ids=["told-start", "first-round"])
def test_a_move_there_and_back_then_elsewhere_in_the_grace_tells_the_first_time(notice_world, first_round):
    made = _confirmed(notice_world["clinic"], first_round=first_round)
    _move(made, T1, 10)
    _move(made, T0, 11)  # its notice cancelled
    _move(made, T2, 12)
    _dispatch(NOW + timedelta(minutes=30))
    _told(_notices(), T2, T0)


@pytest.mark.parametrize("first_round", [False, True], ids=["told-start", "first-round"])
def test_an_email_notice_that_went_while_the_text_waits_out_quiet_hours_is_what_was_last_heard(
    notice_world, first_round
):
    """Moved at 20:58: the e-mail notice goes at once after the grace, the text waits for 08:00. Moved again in the
    night, the text still waiting tells the time the e-mail told, and so does the new e-mail."""
    made = _confirmed(notice_world["clinic"], first_round=first_round)
    _move(made, T1, 11 * 60 + 58)  # 20:58 London
    _dispatch(ldn(2026, 3, 2, 21, 10))
    [email] = _notices()
    assert f"New time: {SAID[T1]}" in email and f"It was: {SAID[T0]}" in email
    _move(made, T2, 13 * 60)  # 22:00
    _dispatch(ldn(2026, 3, 2, 22, 10))
    [email] = _notices()
    assert f"New time: {SAID[T2]}" in email and f"It was: {SAID[T1]}" in email
    _dispatch(ldn(2026, 3, 3, 8, 10))
    [sms] = _notices()
    assert f"moved to {SAID[T2]}" in sms and f"(it was {SAID[T1]}" in sms, sms


# === 6. clinic 0017 and the lists' empty filters ===================================================================


def test_0017_fills_a_blank_shipped_short_name_and_keeps_an_operators():
    migration = importlib.import_module("clinic.migrations.0017_shipped_short_names")
    shipped = {
        row["code"]: row["short_name"]
        for row in json.loads((Path(__file__).resolve().parents[2] / "fixtures" / "catalogue.json").read_text())[
            "procedures"
        ]
        if row.get("short_name")
    }
    assert migration.SHIPPED == shipped
    for code in ("botox", "filler", "microneedling", "plasma_pen"):
        ProcedureType.objects.update_or_create(code=code, defaults={"name": code.title(), "short_name": ""})
    ProcedureType.objects.filter(code="filler").update(short_name="Filler")
    ProcedureType.objects.create(code="rv5d_peel", name="Chemical peel", short_name="")

    migration.fill(django_apps, None)

    names = dict(ProcedureType.objects.values_list("code", "short_name"))
    assert names["botox"] == "Botox" and names["plasma_pen"] == "Plasma pen" and names["filler"] == "Filler"
    assert names["rv5d_peel"] == ""


def test_0017_is_on_the_catalogues_one_line_of_migrations():
    """One leaf per app (no two migrations racing for a number), and 0017 before it: every upgrade runs it."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    [clinic_leaf] = [n for n in loader.graph.leaf_nodes() if n[0] == "clinic"]
    assert ("clinic", "0017_shipped_short_names") in loader.graph.forwards_plan(clinic_leaf)
    [scheduler_leaf] = [n for n in loader.graph.leaf_nodes() if n[0] == "scheduler"]
    assert ("scheduler", "0010_recheck_run_rulebook_versions") in loader.graph.forwards_plan(scheduler_leaf)


EMPTY = "Give a value, or leave the parameter out."
LIST_FILTERS = (
    [
        ("appointments", name)
        for name in ("clinic", "patient", "practitioner", "status", "procedure", "start_after", "start_before")
    ]
    + [("patients", "clinic"), ("patients", "search"), ("practitioners", "clinic"), ("practitioners", "procedure")]
    + [("procedures", "bookable")]
)


def _problem(response, status=400) -> dict:
    assert response.status_code == status, response.content[:400]
    assert response["Content-Type"] == "application/problem+json"
    return response.json()


@pytest.mark.parametrize("path, name", LIST_FILTERS, ids=[f"{p}-{n}" for p, n in LIST_FILTERS])
def test_every_list_filter_given_empty_says_so_alone(api, path, name):
    body = _problem(api.get(f"/api/v1/{path}/?{name}="))
    assert body["errors"] == {name: [EMPTY]}
    assert body["detail"] == f"{name}: {EMPTY}" and "valid choice" not in json.dumps(body)


@pytest.mark.parametrize("query", ["status=&status=confirmed", "status=confirmed&status=", "status=&status="])
def test_an_empty_status_among_others_says_so_alone(api, query):
    assert _problem(api.get(f"/api/v1/appointments/?{query}"))["errors"] == {"status": [EMPTY]}


def test_empty_filters_together_are_each_named_and_a_bad_choice_still_is(api):
    body = _problem(api.get("/api/v1/appointments/?status=&clinic=&procedure=botox"))
    assert body["errors"] == {"status": [EMPTY], "clinic": [EMPTY]}
    bad = _problem(api.get("/api/v1/appointments/?status=bogus"))
    assert list(bad["errors"]) == ["status"] and "bogus" in bad["errors"]["status"][0]
    assert api.get("/api/v1/appointments/?status=confirmed&status=cancelled").status_code == 200


# === 7. The texts' code moved (wording, longest, fit, content): behaviour unchanged ================================


def test_one_render_error_everywhere():
    assert content.RenderError is wording.RenderError is longest.RenderError is fit.RenderError
    assert longest.FIRST_NAME_CHECKED and len(longest.FIRST_NAME_CHECKED) == wording.SMS_FIRST_NAME_MAX == 20


def test_the_shipped_confirmation_renders_word_for_word_as_before(notice_world):
    site = notice_world["clinic"]
    patient = PatientFactory(clinic=site, phone="+447700900124", reminder_channels=["sms"], sms_consent=True)
    _book(patient, T2, code="botox")
    _dispatch(NOW)
    [sms] = [t["body"] for t in LocmemSmsBackend.outbox if t["to"] == "+447700900124"]
    assert re.fullmatch(
        rf"{re.escape(site.name)}: your appointment is booked for Thu 12 Mar, 10:00 \(GMT\)\. Move or cancel: "
        r"https://clinic\.example/my/[\w.-]+/ Reply STOP to stop texts\.",
        sms,
    ), sms


def test_a_template_that_cannot_render_fails_its_send_for_good(notice_world):
    ReminderTemplate.objects.filter(kind=MessageKind.CONFIRMATION).update(
        sms_text="Hi {% for x in email_on %}{{ x }}{% endfor %}"
    )
    patient = PatientFactory(
        clinic=notice_world["clinic"], phone="+447700900125", reminder_channels=["sms"], sms_consent=True
    )
    made = _book(patient, T2, code="botox")
    _dispatch(NOW)
    [row] = OutboxMessage.objects.filter(appointment=made, kind=MessageKind.CONFIRMATION, channel="sms")
    assert row.status == OutboxStatus.FAILED
    assert row.last_error.startswith("permanent failure: template error: TypeError"), row.last_error


def test_a_template_too_long_for_any_clinic_is_refused_when_saved(care_texts):
    template = ReminderTemplate.objects.filter(kind=MessageKind.CONFIRMATION).first()
    template.sms_text = "{{ clinic_name }}: " + "word " * 100 + "{{ start_relative_local }}"
    with pytest.raises(ValidationError) as refused:
        template.full_clean()
    assert "sms_text" in refused.value.message_dict
    assert longest.template_own_problem(template.sms_text) in refused.value.message_dict["sms_text"]
    template.sms_text = "{% for x in email_on %}{{ x }}{% endfor %}"
    assert longest.template_own_problem(template.sms_text).startswith("It cannot be rendered (template error")


def test_the_shipped_texts_pass_their_own_and_the_clinics_checks(care_texts):
    for template in ReminderTemplate.objects.exclude(sms_text=""):
        assert longest.template_own_problem(template.sms_text) == "", template.name
        assert fit.template_sms_problem(template.sms_text) == "", template.name


def test_reminders_status_names_a_broken_template_and_a_clinic_whose_name_stops_texts(care_texts, clock):
    ReminderTemplate.objects.filter(kind=MessageKind.CONFIRMATION).update(
        sms_text="{% for x in email_on %}{{ x }}{% endfor %}"
    )
    ClinicFactory(code="rv5d-bar", name="The Botox Bar", timezone="Europe/London")
    out = StringIO()
    call_command("reminders_status", stdout=out)
    said = out.getvalue()
    assert "rv5d-bar" in said.split("Clinics whose name stops texts going:")[1]
    broken = said.split("Texts that cannot go")[1]
    assert "Booking confirmation" in broken and "cannot be rendered" in broken


def test_with_no_broker_run_dispatcher_takes_up_a_stalled_run(world, admin_user, settings, change, monkeypatch):
    """The embedded default has no beat: run_dispatcher does its resume of re-checks that stopped moving (one whose
    step failed in the request that saved the rule), every minute and on --once."""
    a = world["rv5d-a"]
    mine = seed(a, 2)
    [run] = change(own_filler_rule, a["org"], admin_user, weeks=8)  # made, never started: as after a failed step
    settings.CELERY_BROKER_URL = ""
    monkeypatch.setattr(tasks, "start_run", REAL_START_RUN)
    with time_machine.travel(NOW + recheck.STALLED_AFTER + timedelta(seconds=1), tick=False):
        call_command("run_dispatcher", "--once", stdout=StringIO())
    run.refresh_from_db()
    assert run.finished_at is not None and run.patients_done == 2
    assert [fresh(x).status for x in mine] == [NEEDS_REVIEW] * 2


def test_a_stalled_run_that_fails_again_does_not_stop_run_dispatcher_sending(
    world, admin_user, settings, change, monkeypatch
):
    """Taking up a stalled re-check that fails again is logged and left for the next pass: the pass still sends what
    is due (a cron job of --once included), and the failed step is counted on the run."""
    a = world["rv5d-a"]
    seed(a, 1)
    [run] = change(own_filler_rule, a["org"], admin_user, weeks=8)
    settings.CELERY_BROKER_URL = ""
    monkeypatch.setattr(tasks, "start_run", REAL_START_RUN)

    def stuck(*args, **kwargs):
        raise RuntimeError("rv5d: canceling statement due to lock timeout")

    monkeypatch.setattr(recheck, "_recheck_patient", stuck)
    sent = []
    monkeypatch.setattr("reminders.dispatch.dispatch_local", lambda **kwargs: sent.append(kwargs["now"]) or {"sent": 1})
    with time_machine.travel(NOW + recheck.STALLED_AFTER + timedelta(seconds=1), tick=False):
        call_command("run_dispatcher", "--once", stdout=StringIO())
    assert len(sent) == 1
    assert fresh(run).failed_steps == 1 and fresh(run).finished_at is None
