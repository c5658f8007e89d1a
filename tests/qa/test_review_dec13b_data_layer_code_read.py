"""Review probe (13 December, b): the data layer read line by line.

Read: clinic/models.py and forms.py, scheduler/models.py, plans/models.py, reminders/models.py, api/models.py,
core/compiled.py, scheduler/defaults.py (catalogue_load, rules_load), reminders/defaults.py and plans/defaults.py, the
fixtures (catalogue, rules, care texts, plan templates) beside the domain brief's sections 2 to 6, and the migrations'
constraints and data migrations (clinic 0023 to 0032, scheduler 0008 to 0012, reminders 0005, 0009, 0012 to 0025,
plans 0006, api 0004), with the admins that list these rows (clinic/admin.py, reminders/admin.py). A code read, not a
walk: each suspicion met while reading (a column the database holds that the services refuse, a constraint that lets
NULLs past, a data migration an existing install meets, a list that reads a row per row, a fixture that says other
numbers than the brief) is pinned by the smallest test that shows it, through the portal, the API, the admin or the
ORM as the code writes. The suite's Monday is 2 March 2026, 09:00 UTC (London on GMT).

Found:
- DEFECT, MENDED: a clinic's cancellation window stored longer than the years before the visit (20,000,000 hours, a
  typo of an install from before clinic 0032, or any write past the admin's form) made the patient's own page of
  every visit at that clinic a 500 (OverflowError in `scheduler.selfservice.change_deadline`): migration clinic 0032
  added a `MaxValueValidator(8760)` only, which the admin's form alone reads. Mended by clinic 0033: a window stored
  longer is brought back to 8760 hours (named on the output), then a check constraint
  `clinic_cancellation_window_at_most_a_year` (0 to 8760, `Clinic.Meta.constraints`) refuses a longer one on every
  write.
- DEFECT, MENDED: a rule's severity that is not one of its choices ("Block", written by a shell, a script or a data
  migration; the admin's form refuses it) was stored, and then every eligibility check and booking of the rule's
  procedure, in every organisation for a default, was a 500 (ValueError from `scheduler.rules.IntervalRule` /
  `Contraindication.__post_init__`): the database checked the gap's unit and bounds (scheduler 0008) and one earlier
  event, but not `severity`. Mended by scheduler 0013: a stored severity outside the choices is read safely (a case
  variant as its value, anything else as the strictest, block or absolute; named on the output and in the rule's
  note; a re-check run of its procedures where a booking ahead may be affected), then check constraints
  `interval_rule_severity_known` and `contraindication_severity_known` (the two models' `Meta.constraints`) refuse
  another; on SQLite the rebuilt tables' configuration-version triggers are made again, as scheduler 0008 does. The
  other choice columns fall back safely (an unknown `scope` reads as any area, an unknown `applies_to` as active or
  history).
- DEFECT, MENDED: the admin's list of staff roles reads each row's clinic or organisation with a query of its own (both
  keys are nullable, and a changelist's bare `select_related()` follows only non-null ones): a page of 100 roles is
  100 statements more (clinic/admin.py, `StaffMembershipAdmin`: no `list_select_related`). The patients' list reads a
  tombstone's `merged_into`, and the plan templates' list an organisation's template's `organisation`, the same way.
  Mended: `list_select_related` on the three (tests/clinic/test_admin_list_queries.py for the other two).
- QUESTION, DECIDED as recommended: a clinic's zone is checked by the admin's form alone; one that is not an IANA zone ("Europe/Londn", written
  past the form, or a zone a later tzdata no longer reads) is stored and the patient's page of every visit there is a
  500 (ZoneInfoNotFoundError from `Clinic.tz`). No constraint can know the zone list (clinic/models.py,
  `Clinic.timezone`). Recommendation: a system check naming each clinic whose zone ZoneInfo cannot read, so a deploy
  (`manage.py check --database default`) says so before a page fails. Done: clinic/checks.py, `clinic.E001`.

Held (passing): the admin's audit trail list names each row's appointment (`Appointment.__str__` reads its procedure and
patient) at no statement per row (Django's changelist follows every non-null key when the admin names no
`list_select_related`); every table a process caches keeps its configuration-version trigger after all the migrations
since reminders 0005 and 0009 (a SQLite table rebuilt by a later migration loses its triggers; scheduler 0008 and
reminders 0008 make them again): an ORM write of each bumps the version, on both databases; an intake line without an
area is once per patient and condition on both databases (two partial unique constraints, not one with a nullable
column, which PostgreSQL's NULLs would let past), and with areas once per area; the shipped interval defaults are the
brief's table of section 2 and the four repeats of section 6, number for number, severity and basis; the care texts'
data migrations (reminders 0003 to 0025) chain, each starting from the text the one before left, and end at the text a
fresh install loads from fixtures/care_texts.json. Read and found right without a test here: contraindication defaults
(36 rows) and catalogue codes and names against section 3; the plan templates against section 6 (3 x 4-6 weeks ideal 4;
2 x 6-8 ideal 8; Botox every 3-4 months ideal 14 weeks); `rules_load` brings a deleted default back (docs/rules.md says
so: disable, not delete); the admin refuses deleting an appointment, whose trail would cascade (probe dec8c);
`core.compiled.insert_rows(skip_conflicts=True)` (SQLite's INSERT OR IGNORE would skip a CHECK violation too) is used on
PostgreSQL only (`scheduler.booking._insert_new`); no JSON `__contains` lookup that SQLite lacks; the outbox claim's and
the timeline's indexes (docs/benchmarks.md EXPLAIN; tests/test_indexes.py).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.checks import run_checks
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from clinic.models import (
    Appointment,
    AuditEvent,
    Clinic,
    Condition,
    ConditionStatus,
    Medication,
    PatientCondition,
    Practitioner,
    ProcedureType,
    StaffMembership,
    StaffRole,
    TreatmentArea,
)
from reminders.models import ReminderTemplate, WebhookEndpoint
from scheduler.models import ConfigVersion, ContraindicationRule, IntervalRule
from tests.factories import PatientFactory
from tests.helpers import _leaves, _migrate
from tests.qa.helpers import book, ldn, portal_page, post

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock")]

FIXTURES = Path(django_settings.BASE_DIR) / "fixtures"


@pytest.fixture(autouse=True)
def _settings(settings):
    """Rule-change re-checks in this process (no broker); the admin without a code."""
    settings.CELERY_BROKER_URL = ""
    settings.STAFF_TWO_FACTOR_REQUIRED = False


def refused_by_the_database(write) -> bool:
    """Whether `write()` is refused by a constraint (rolled back in its own savepoint)."""
    try:
        with transaction.atomic():
            write()
    except IntegrityError:
        return True
    return False


# --- What the database holds that the services refuse -----------------------------------------------------------------


def test_a_cancellation_window_stored_past_a_year_does_not_break_the_patients_page(patient, practitioner, now):
    """The model says 'at most 8760, a year' and 0032's comment says why: a window of millions of hours put the
    deadline before year 1 and every patient's page of the clinic failed. A write past the admin's form is refused by
    the database (a year itself is kept), and the page still answers. (Was a strict-xfail DEFECT, mended: clinic 0033
    brings a stored longer window back to a year and adds the check constraint.)"""
    visit = book(patient, ldn(2026, 3, 10), now)
    clinic = Clinic.objects.filter(pk=patient.clinic_id)
    assert refused_by_the_database(lambda: clinic.update(cancellation_window_hours=20_000_000))
    assert refused_by_the_database(lambda: clinic.update(cancellation_window_hours=8761))
    assert not refused_by_the_database(lambda: clinic.update(cancellation_window_hours=8760))
    response = Client(raise_request_exception=False).get(portal_page(visit))
    assert response.status_code == 200, response.status_code


def test_a_clinic_zone_that_is_not_an_iana_zone_is_named_before_a_page_fails(patient, practitioner, now):
    """A zone the admin refuses, written past it (or one a later tzdata no longer reads). Either the page still
    answers, or Django's checks, which a deploy runs, name the clinic before any page fails. (Was a strict-xfail
    QUESTION, decided as recommended: clinic/checks.py, `clinic.E001` from `manage.py check --database default`.)"""
    visit = book(patient, ldn(2026, 3, 10), now)
    Clinic.objects.filter(pk=patient.clinic_id).update(timezone="Europe/Londn")
    if any(patient.clinic.code in str(message) for message in run_checks(databases=["default"])):
        return
    response = Client(raise_request_exception=False).get(portal_page(visit))
    assert response.status_code == 200, response.status_code


@pytest.mark.parametrize(
    ("model", "key"),
    [(IntervalRule, "botox-then-microneedling"), (ContraindicationRule, "microneedling-diabetes")],
    ids=["interval", "contraindication"],
)
def test_a_rule_severity_outside_its_choices_is_refused_or_read_safely(api, patient, practitioner, model, key):
    """'Block' for 'block' (a shell's or a data migration's typo; the admin's form refuses it): the database refuses
    it, as it refuses a gap's unknown unit (scheduler 0008), and the engine still answers. (Was a strict-xfail DEFECT,
    mended: scheduler 0013 reads a stored one safely and adds a check constraint on each rule's severity.)"""
    assert refused_by_the_database(lambda: model.objects.filter(default_key=key).update(severity="Block"))
    api.raise_request_exception = False
    body = {"patient": str(patient.pk), "procedure": "microneedling", "start": ldn(2026, 3, 10).isoformat()}
    response = post(api, "/eligibility/", body)
    assert response.status_code == 200, (response.status_code, response.content[:600])


# --- Lists that read a row per row ------------------------------------------------------------------------------------


def test_the_staff_roles_list_reads_no_query_per_row(admin_client, clinic, west):
    """Each role names its clinic or its organisation; the list of 2 roles and of 8 must cost the same statements.
    (Was a strict-xfail DEFECT, mended: clinic/admin.py StaffMembershipAdmin.list_select_related.)"""
    users = get_user_model().objects

    def grant(n: int) -> None:
        for i in range(n):
            user = users.create_user(username=f"qa13b-{users.count()}-{i}", password="qa13b-pw-5531")
            if i % 2:
                StaffMembership.objects.create(user=user, organisation=clinic.organisation, role=StaffRole.CLINICIAN)
            else:
                StaffMembership.objects.create(user=user, clinic=west, role=StaffRole.RECEPTIONIST)

    def listed() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(reverse("admin:clinic_staffmembership_changelist"))
        assert response.status_code == 200, response.status_code
        return len(queries)

    grant(2)
    few = listed()
    grant(6)
    assert StaffMembership.objects.count() == 8
    assert listed() == few


def test_the_audit_trail_list_reads_no_query_per_row(admin_client, clinic, practitioner, now):
    """`Appointment.__str__` names the procedure and the patient, and the list shows each row's appointment, without a
    `list_select_related`: Django's changelist then follows every non-null foreign key (a bare `select_related()`), so
    the list of 2 rows and of 8 cost the same statements (one booking writes one 'booked' row)."""

    def listed() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(reverse("admin:clinic_auditevent_changelist"))
        assert response.status_code == 200, response.status_code
        return len(queries)

    for hour in (9, 10):
        book(PatientFactory(clinic=clinic), ldn(2026, 3, 10, hour), now, code="botox")
    few = listed()
    for hour in (11, 12, 13, 14, 15, 16):
        book(PatientFactory(clinic=clinic), ldn(2026, 3, 10, hour), now, code="botox")
    assert AuditEvent.objects.count() == 8
    assert listed() == few


# --- Held: triggers, NULLs and uniqueness -----------------------------------------------------------------------------


def test_every_cached_table_bumps_the_configuration_version_after_all_the_migrations(catalogue, care_texts, api_key):
    """reminders 0005 and 0009 put a trigger on each table a process caches; on SQLite a later migration that rebuilds
    a table drops them (scheduler 0008 and reminders 0008 make theirs again). After every migration, an ORM write to
    each still gives the configuration version a new value, so no stale copy is used."""
    writes = {
        "procedure": lambda: ProcedureType.objects.filter(code="botox").update(name=F("name")),
        "medication": lambda: Medication.objects.filter(code="isotretinoin").update(name=F("name")),
        "condition": lambda: Condition.objects.filter(code="diabetes").update(name=F("name")),
        "area": lambda: TreatmentArea.objects.filter(code="face").update(name=F("name")),
        "interval rule": lambda: IntervalRule.objects.filter(default_key="botox-repeat").update(note=F("note")),
        "contraindication": lambda: ContraindicationRule.objects.filter(default_key="microneedling-diabetes").update(
            note=F("note")
        ),
        "care text": lambda: ReminderTemplate.objects.filter(default_key="day-before-reminder").update(name=F("name")),
        "webhook endpoint": lambda: WebhookEndpoint.objects.bulk_create(
            [WebhookEndpoint(client_id=_client_id(), url="https://hooks.example.com/qa13b", secret="whsec_qa13b")]
        ),
    }
    silent = []
    for what, write in writes.items():
        before = ConfigVersion.objects.get(pk=1).value
        write()
        if ConfigVersion.objects.get(pk=1).value == before:
            silent.append(what)
    assert silent == []


def _client_id():
    from clinic.models import ApiClient

    return ApiClient.objects.values_list("pk", flat=True).first()


def test_an_intake_line_is_once_per_condition_with_no_area_and_once_per_area(patient, catalogue):
    """Two partial unique constraints (not one over the nullable area, which PostgreSQL's NULLs would let past): the
    same condition twice with no area is refused on both databases; with two areas it is two lines."""
    line = {"patient": patient, "condition_id": "psoriasis", "status": ConditionStatus.ACTIVE}
    PatientCondition.objects.create(**line)
    assert refused_by_the_database(lambda: PatientCondition.objects.create(**line))
    PatientCondition.objects.create(**line, area_id="face")
    PatientCondition.objects.create(**line, area_id="hands")
    assert refused_by_the_database(lambda: PatientCondition.objects.create(**line, area_id="face"))
    assert PatientCondition.objects.filter(patient=patient).count() == 3


# --- Held: the fixtures say the brief's numbers -----------------------------------------------------------------------

# Domain brief, section 2 (the sourced table) and section 6 (repeats: clinic practice, warn).
BRIEF_INTERVALS = {
    ("botox", None, "microneedling", 2, "weeks", "block", "sourced"),
    ("filler", None, "microneedling", 4, "weeks", "block", "sourced"),
    ("microneedling", None, "botox", 3, "weeks", "block", "sourced"),
    ("microneedling", None, "filler", 3, "weeks", "block", "sourced"),
    ("microneedling", None, "plasma_pen", 7, "days", "block", "sourced"),
    ("microneedling", None, "plasma_pen", 10, "days", "warn", "sourced"),
    (None, "isotretinoin", "microneedling", 6, "months", "block", "sourced"),
    (None, "isotretinoin", "microneedling", 12, "months", "warn", "sourced"),
    (None, "isotretinoin", "filler", 12, "months", "warn", "sourced"),
    ("botox", None, "botox", 12, "weeks", "warn", "practice"),
    ("filler", None, "filler", 2, "weeks", "warn", "practice"),
    ("microneedling", None, "microneedling", 4, "weeks", "warn", "practice"),
    ("plasma_pen", None, "plasma_pen", 6, "weeks", "warn", "practice"),
}


def test_the_shipped_interval_defaults_are_the_briefs_numbers(catalogue):
    stored = set(
        IntervalRule.objects.filter(organisation=None).values_list(
            "earlier_procedure_id",
            "earlier_medication_id",
            "later_procedure_id",
            "gap_value",
            "gap_unit",
            "severity",
            "basis",
        )
    )
    assert stored == BRIEF_INTERVALS
    assert set(IntervalRule.objects.filter(organisation=None).values_list("scope", flat=True)) == {"any_area"}


def _care_text_changes() -> list[tuple[str, str, str, str, str]]:
    """(migration, default_key, field, text before, text after) of every reminders data migration that rewrites a
    shipped care text still in its shipped wording, in migration order."""
    changes = []
    for path in sorted((Path(django_settings.BASE_DIR) / "reminders" / "migrations").glob("0*.py")):
        module = importlib.import_module(f"reminders.migrations.{path.stem}")
        for value in vars(module).values():
            if (
                isinstance(value, list)
                and value
                and all(
                    isinstance(row, tuple) and len(row) == 4 and all(isinstance(p, str) for p in row) for row in value
                )
            ):
                changes += [(path.stem, *row) for row in value]
    return changes


def test_the_care_texts_data_migrations_chain_and_end_at_the_shipped_texts():
    """An install upgraded through every rewrite of a shipped text holds what a fresh install loads: each rewrite
    starts from the text the one before left, and the last one's text is fixtures/care_texts.json's (the recall's:
    fixtures/plan_templates.json's)."""
    shipped = {row["key"]: row for row in json.loads((FIXTURES / "care_texts.json").read_text())["templates"]}
    # The recall's text is loaded with the plan templates (reminders 0026 rewrites it).
    shipped["recall-due"] = json.loads((FIXTURES / "plan_templates.json").read_text())["recall_message"]
    changes = _care_text_changes()
    assert len(changes) >= 20  # the rewrites of 0003, 0013, 0018, 0020 and 0025 are all read
    last: dict[tuple[str, str], tuple[str, str]] = {}
    broken = []
    for migration, key, field, before, after in changes:
        earlier = last.get((key, field))
        if earlier is not None and earlier[1] != before:
            broken.append((key, field, earlier[0], migration))
        last[(key, field)] = (migration, after)
    assert broken == []

    def text(key, field):
        value = shipped[key][field]
        return "\n".join(value) if isinstance(value, list) else value

    differ = sorted((key, field, m) for (key, field), (m, after) in last.items() if text(key, field) != after)
    assert differ == []


# --- The mends' data migrations: an install that stored such a value upgrades ---------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_cancellation_window_stored_past_a_year_is_brought_back_to_a_year_by_the_upgrade(capsys):
    """clinic 0033: a clinic saved with a window longer than a year before the constraint is given a year (named on
    the output), not a failed migration; a year or less is kept."""
    old = _migrate([("clinic", "0032_clinic_cancellation_window_at_most_a_year")])
    organisation = old.get_model("clinic", "Organisation").objects.create(code="qa13b", name="QA 13b")
    OldClinic = old.get_model("clinic", "Clinic")
    common = {"timezone": "Europe/London", "organisation": organisation}
    typo = OldClinic.objects.create(code="qa13b-typo", name="Typo", cancellation_window_hours=20_000_000, **common)
    year = OldClinic.objects.create(code="qa13b-year", name="Year", cancellation_window_hours=8760, **common)
    day = OldClinic.objects.create(code="qa13b-day", name="Day", cancellation_window_hours=24, **common)
    capsys.readouterr()

    _migrate(_leaves())

    windows = dict(
        Clinic.objects.filter(pk__in=[typo.pk, year.pk, day.pk]).values_list("code", "cancellation_window_hours")
    )
    assert windows == {"qa13b-typo": 8760, "qa13b-year": 8760, "qa13b-day": 24}
    said = capsys.readouterr().out
    assert "Clinic qa13b-typo: cancellation window shortened from 20000000 to 8760 hours" in said
    assert "qa13b-year" not in said and "qa13b-day" not in said


@pytest.mark.django_db(transaction=True)
def test_a_rule_severity_outside_its_choices_is_read_safely_by_the_upgrade(capsys):
    """scheduler 0013: a case variant is read as its value, anything else as the strictest severity (block,
    absolute), each named on the output and in the rule's note; a known one is kept untouched. A re-check run of the
    changed rules' procedures is made where a booking ahead may be affected, and after the upgrade (and a way back
    and up again, which on SQLite rebuilds the tables twice more) a write to either table still bumps the
    configuration version."""
    from datetime import timedelta

    from django.utils import timezone

    from scheduler.models import RecheckRun

    old = _migrate([("scheduler", "0012_rule_constraint_messages")])
    procedure = old.get_model("clinic", "ProcedureType").objects.create(
        code="qa13b-sev", name="Severity test", duration_minutes=30
    )
    condition = old.get_model("clinic", "Condition").objects.create(code="qa13b-cond", name="Severity condition")
    OldInterval, OldContra = (
        old.get_model("scheduler", "IntervalRule"),
        old.get_model("scheduler", "ContraindicationRule"),
    )
    gap = {"earlier_procedure": procedure, "later_procedure": procedure, "gap_value": 2, "gap_unit": "weeks"}
    cause = {"condition": condition, "procedure": procedure}
    interval = {
        severity: OldInterval.objects.create(severity=severity, source="qa", **gap).pk
        for severity in ("Block", " Warn ", "blocks", "warn")
    }
    contra = {
        severity: OldContra.objects.create(severity=severity, source="qa", note="Kept.", **cause).pk
        for severity in ("RELATIVE", "moderate", "", "absolute")
    }
    # Only scheduler went back: the clinic app's tables are today's, written through today's models.
    clinic = Clinic.objects.create(code="qa13b-sev", name="Severity", timezone="Europe/London")
    start = (timezone.now() + timedelta(days=20)).replace(microsecond=0)
    Appointment.objects.create(
        clinic=clinic,
        patient=PatientFactory(clinic=clinic),
        practitioner=Practitioner.objects.create(clinic=clinic, name="Dr Severity"),
        procedure_id=procedure.pk,
        status="confirmed",
        start_at=start,
        end_at=start + timedelta(minutes=30),
    )
    capsys.readouterr()

    _migrate(_leaves())

    read = {stored: IntervalRule.objects.get(pk=pk).severity for stored, pk in interval.items()}
    assert read == {"Block": "block", " Warn ": "warn", "blocks": "block", "warn": "warn"}
    read = {stored: ContraindicationRule.objects.get(pk=pk).severity for stored, pk in contra.items()}
    assert read == {"RELATIVE": "relative", "moderate": "absolute", "": "absolute", "absolute": "absolute"}
    assert IntervalRule.objects.get(pk=interval["blocks"]).note == (
        "Severity 'blocks' read as 'block' by migration scheduler 0013."
    )
    assert ContraindicationRule.objects.get(pk=contra["moderate"]).note == (
        "Kept.\n\nSeverity 'moderate' read as 'absolute' by migration scheduler 0013."
    )
    assert IntervalRule.objects.get(pk=interval["warn"]).note == ""
    assert ContraindicationRule.objects.get(pk=contra["absolute"]).note == "Kept."
    said = capsys.readouterr().out
    assert f"IntervalRule {interval['Block']}: Severity 'Block' read as 'block'" in said
    assert f"ContraindicationRule {contra['']}: Severity '' read as 'absolute'" in said
    assert f"IntervalRule {interval['warn']}:" not in said
    [run] = RecheckRun.objects.all()
    assert (run.procedures, run.organisation_id) == (["qa13b-sev"], None)

    _migrate([("scheduler", "0012_rule_constraint_messages")])
    _migrate(_leaves())
    for write in (
        lambda: IntervalRule.objects.filter(pk=interval["warn"]).update(note=F("note")),
        lambda: ContraindicationRule.objects.filter(pk=contra["absolute"]).update(note=F("note")),
    ):
        ConfigVersion.objects.update_or_create(pk=1, defaults={"value": 1})
        write()
        assert ConfigVersion.objects.get(pk=1).value != 1
