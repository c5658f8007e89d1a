"""Review of d191941..HEAD (2d54834, 752fbe1, 04be0e1, 50b0fef), as the next owner: what an operator upgrading, a
booking platform and a receptionist would meet.

1. scheduler/defaults.py: `catalogue_load` (one read, `bulk_create(ignore_conflicts=True)`), `rules_load` /
   `_defaults_create_missing` (one read and one insert a model, a retry on IntegrityError for a concurrent load,
   `post_save` sent by hand for each rule created); reminders/defaults.py `care_texts_load` (one read, `full_clean`
   each, one insert, inside `versioned.within_snapshot`); `setup_demo` over them: counts said, edits kept,
   superseded citations rewritten, a broken fixture leaving nothing, two loads at once (PostgreSQL, real threads).
2. config/testing.py (MD5 password hashes for tests) and bin/test (`--dist worksteal`).
3. plans/planner.py `Obstacle.earliest` / `no_free_slot`, plans/services.py `obstacle_violations`, api/plans.py:
   a plan refused for want of a free practitioner (409 plan_infeasible, a dry run's obstacle, a re-plan) against a
   single booking's availability refusal, the published schema, the clinic's offset across a DST change, a window
   that has passed, and the desk's page for the same plan.

Found, each mended in 0d9d58c (the four loaders now share core.defaults.shipped_rows_create_missing) and its test
now passing: the post_save sent by hand lacked Django's `using` argument (a receiver with Django's documented signature
breaks the load); on SQLite `ignore_conflicts` (INSERT OR IGNORE) also skips a catalogue row that breaks a CHECK
constraint, so a broken shipped row loaded silently without it; two `setup_demo`s at once: the one whose care texts
inserted second failed on the unique key (only the rules' insert retried), and plan_templates_load (older) had the
same race. One QUESTION, answered: a dry run's obstacle gave no `earliest_eligible_start` where the 409 for the same
plan did; it gives it now.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import subprocess
import sys
import threading
from datetime import date, datetime, timedelta
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest
import time_machine
from django.conf import global_settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, connection, connections, transaction
from django.db.models.query import QuerySet
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext

import config.settings as production_settings
from clinic.models import (
    Appointment,
    AppointmentStatus,
    Clinic,
    Condition,
    ConditionStatus,
    Medication,
    Patient,
    PatientCondition,
    Practitioner,
    ProcedureType,
    StaffRole,
    TimeOff,
    TreatmentArea,
)
from plans import planner, services
from plans.defaults import plan_templates_load
from plans.models import PlanTemplate
from reminders import texts
from reminders.defaults import CARE_TEXTS, care_texts_load
from reminders.models import ReminderTemplate
from scheduler import defaults, recheck, selectors, versioned
from scheduler.booking import Actor, appointment_book, appointment_check
from scheduler.defaults import _SUPERSEDED_CITATION, FIXTURES, catalogue_load, rules_load
from scheduler.models import ContraindicationRule, IntervalRule, RecheckRun, RuleBookVersion
from scheduler.rules import Outcome, Timeline
from tests.api.conftest import http, new_api_client
from tests.factories import (
    ClinicFactory,
    MedicationCourseFactory,
    PatientFactory,
    PractitionerFactory,
    ProcedureRecordFactory,
)
from tests.frontdesk.conftest import url as fd
from tests.frontdesk.html import text_by_id
from tests.qa.helpers import API, LONDON, NEW_YORK, ok, problem, staff_client
from tests.rulebook import default_rulebook

pytestmark = [pytest.mark.django_db]

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_RULES = json.loads((FIXTURES / "rules.json").read_text(encoding="utf-8"))
SHIPPED_TEXTS = json.loads(CARE_TEXTS.read_text(encoding="utf-8"))
SHIPPED_CATALOGUE = json.loads((FIXTURES / "catalogue.json").read_text(encoding="utf-8"))
N_RULES = len(SHIPPED_RULES["intervals"]) + len(SHIPPED_RULES["contraindications"])  # 13 + 36
N_TEXTS = len(SHIPPED_TEXTS["templates"])  # 14
SOURCE = {row["key"]: row["source"] for key in ("intervals", "contraindications") for row in SHIPPED_RULES[key]}
TEXT_SOURCE = {row["key"]: row["source"] for row in SHIPPED_TEXTS["templates"]}
OLD_CITATION = f"001 {_SUPERSEDED_CITATION}001_0a1b2c3d.txt)"  # the file-path form of earlier releases
NEW_INTERVAL = "filler-then-microneedling"  # block, 4 weeks [001]
NEW_CONTRA = "filler-filler_allergy"  # absolute [000]
RECEPTION = Actor("reception@rv5e")
ON_SQLITE = connection.vendor == "sqlite"
SCHEMA_PATH = "/api/v1/patients/{patient_id}/plans/"


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def default_rule_count() -> int:
    return (
        IntervalRule.objects.filter(default_key__isnull=False).count()
        + ContraindicationRule.objects.filter(default_key__isnull=False).count()
    )


def defaults_version_numbers() -> list[int]:
    return list(RuleBookVersion.objects.filter(organisation=None).order_by("number").values_list("number", flat=True))


def new_runs(before: set) -> list[RecheckRun]:
    return [r for r in RecheckRun.objects.all() if r.pk not in before]


def run_ids() -> set:
    return set(RecheckRun.objects.values_list("pk", flat=True))


# --- 1. The shipped defaults: setup_demo, edits, citations, counts ----------------------------------------------


def test_setup_demo_says_what_it_created_and_a_second_run_creates_nothing():
    """setup_demo's lines are the loaders' counts: every default once on an empty database, none on a second run,
    and no version of the defaults recorded for the first load (version 1 is the book as shipped)."""
    first = run("setup_demo", "--no-demo")
    stored = (default_rule_count(), ReminderTemplate.objects.filter(default_key__in=TEXT_SOURCE).count())

    second = run("setup_demo", "--no-demo")

    assert f"Catalogue loaded; {N_RULES} default rule(s) created." in first, first
    assert f"\n{N_TEXTS} default reminder template(s) created." in first, first
    assert stored == (N_RULES, N_TEXTS)
    assert "Catalogue loaded; 0 default rule(s) created." in second and "\n0 default reminder template" in second
    assert (default_rule_count(), ReminderTemplate.objects.filter(default_key__in=TEXT_SOURCE).count()) == stored
    assert ProcedureType.objects.count() == len(SHIPPED_CATALOGUE["procedures"])
    assert defaults_version_numbers() == []


def test_setup_demo_on_an_upgraded_database_keeps_every_edit_and_rewrites_only_superseded_citations():
    """docs: a row is created only when its code or key is missing (an operator's or administrator's edits
    survive); a citation in the superseded file-path form is brought up to date and nothing else of that row is
    touched. A release's missing defaults make one version of the defaults, and the counts say what was made."""
    run("setup_demo", "--no-demo")
    ProcedureType.objects.filter(code="botox").update(name="Anti-wrinkle injection", duration_minutes=45)
    TreatmentArea.objects.filter(code="scalp").delete()
    IntervalRule.objects.filter(default_key="microneedling-then-botox").update(gap_value=5, source="Our protocol v3")
    IntervalRule.objects.filter(default_key="botox-then-microneedling").update(gap_value=3, source=OLD_CITATION)
    ContraindicationRule.objects.filter(default_key="filler-eczema").update(severity="absolute", source=OLD_CITATION)
    ReminderTemplate.objects.filter(default_key="day-before-reminder").update(sms_text="See you tomorrow, {{ x }}.")
    ReminderTemplate.objects.filter(default_key="botox-pre-care-24h").update(
        source=OLD_CITATION, email_subject="Edited"
    )
    IntervalRule.objects.filter(default_key=NEW_INTERVAL).delete()
    ContraindicationRule.objects.filter(default_key=NEW_CONTRA).delete()
    ReminderTemplate.objects.filter(default_key__in=["appointment-moved", "plasma-pen-post-care-completion"]).delete()

    again = run("setup_demo", "--no-demo")

    assert "Catalogue loaded; 2 default rule(s) created." in again and "\n2 default reminder template(s)" in again
    botox = ProcedureType.objects.get(code="botox")
    assert (botox.name, botox.duration_minutes) == ("Anti-wrinkle injection", 45)
    assert TreatmentArea.objects.filter(code="scalp").exists()
    kept = IntervalRule.objects.get(default_key="microneedling-then-botox")
    assert (kept.gap_value, kept.source) == (5, "Our protocol v3")
    rewritten = IntervalRule.objects.get(default_key="botox-then-microneedling")
    assert (rewritten.gap_value, rewritten.source) == (3, SOURCE["botox-then-microneedling"])
    contra = ContraindicationRule.objects.get(default_key="filler-eczema")
    assert (contra.severity, contra.source) == ("absolute", SOURCE["filler-eczema"])
    assert ReminderTemplate.objects.get(default_key="day-before-reminder").sms_text == "See you tomorrow, {{ x }}."
    text = ReminderTemplate.objects.get(default_key="botox-pre-care-24h")
    assert (text.email_subject, text.source) == ("Edited", TEXT_SOURCE["botox-pre-care-24h"])
    assert ReminderTemplate.objects.filter(default_key__in=TEXT_SOURCE).count() == N_TEXTS
    [version] = RuleBookVersion.objects.filter(organisation=None)
    assert version.reason == "release: 2 shipped default(s) added"
    assert sorted(entry["rule"] for entry in version.diff) == sorted(
        [
            str(IntervalRule.objects.get(default_key=NEW_INTERVAL)),
            str(ContraindicationRule.objects.get(default_key=NEW_CONTRA)),
        ]
    )


@pytest.fixture
def before_release(catalogue, now, settings):
    """A database from before a release that ships filler → microneedling (block) and filler allergy ✕ filler
    (absolute): three bookings, fine without them. Ann's microneedling 11 days after a filler (the interval rule
    forbids it), Bea's filler with a filler allergy (the contraindication forbids it), Cal's Botox (neither)."""
    settings.CELERY_BROKER_URL = ""  # the embedded default: a re-check runs in this process
    IntervalRule.objects.filter(default_key=NEW_INTERVAL).delete()
    ContraindicationRule.objects.filter(default_key=NEW_CONTRA).delete()
    site = ClinicFactory(code="rv5e-london", timezone="Europe/London")
    PractitionerFactory(clinic=site, name="Dr Rv5e")
    ann, bea, cal = (PatientFactory(clinic=site, first_name=name) for name in ("Ann", "Bea", "Cal"))
    ProcedureRecordFactory(patient=ann, procedure_id="filler", performed_at=now - timedelta(days=3))
    PatientCondition.objects.create(patient=bea, condition_id="filler_allergy", status=ConditionStatus.ACTIVE)

    def book(patient, code, days):
        return appointment_book(
            patient=patient, procedure_code=code, start_at=now + timedelta(days=days), actor=RECEPTION, now=now
        ).appointment

    booked = SimpleNamespace(
        site=site, ann=book(ann, "microneedling", 11), bea=book(bea, "filler", 2), cal=book(cal, "botox", 3)
    )
    assert {a.status for a in (booked.ann, booked.bea, booked.cal)} == {AppointmentStatus.CONFIRMED}
    return booked


def test_a_release_adding_two_defaults_versions_once_and_rechecks_on_commit_only_what_each_forbids(
    before_release, now, django_capture_on_commit_callbacks
):
    """docs: defaults a release adds make the next version of the defaults (every organisation's moves); each
    rule created is announced as saved, so its re-check starts once the load commits, as an edit's does."""
    booked = before_release
    organisation = booked.site.organisation_id
    version_before = selectors.rulebook_version(organisation)

    with time_machine.travel(now, tick=False), django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert rules_load() == 2
        booked.ann.refresh_from_db()
        assert booked.ann.status == AppointmentStatus.CONFIRMED  # not before the load commits
    assert len(callbacks) == 2

    for appointment in (booked.ann, booked.bea, booked.cal):
        appointment.refresh_from_db()
    assert (booked.ann.status, booked.bea.status) == (AppointmentStatus.NEEDS_REVIEW, AppointmentStatus.NEEDS_REVIEW)
    [(ann_kind, ann_clash)] = [(r["kind"], (r["conflicts_with"] or {}).get("code")) for r in booked.ann.review_reasons]
    assert (ann_kind, ann_clash) == ("interval", "filler")
    assert [r["kind"] for r in booked.bea.review_reasons] == ["contraindication"]
    assert (booked.cal.status, booked.cal.review_reasons) == (AppointmentStatus.CONFIRMED, [])
    assert sorted(tuple(r.procedures) for r in RecheckRun.objects.all()) == [("filler",), ("filler", "microneedling")]
    assert all(r.finished_at is not None for r in RecheckRun.objects.all())
    assert len(RuleBookVersion.objects.filter(organisation=None)) == 1
    assert selectors.rulebook_version(organisation) != version_before
    assert selectors.rulebook_version(organisation).startswith(f"d{int(version_before[1:].split('.')[0]) + 1}.")


def test_a_loaded_default_starts_the_same_recheck_as_the_same_rule_saved_with_its_pre_save(
    before_release, now, django_capture_on_commit_callbacks
):
    """pre_save is not sent for a loaded rule. Its one receiver (remember_procedures) gives a new rule no earlier
    procedures, so the re-check must be the same as for the rule saved the ordinary way: same cause, same
    procedures, the same booking flagged."""
    booked = before_release
    with time_machine.travel(now, tick=False):
        before = run_ids()
        with django_capture_on_commit_callbacks(execute=True):
            rules_load()
        [loaded] = [r for r in new_runs(before) if "microneedling" in r.procedures]
        fields = {
            name: getattr(IntervalRule.objects.get(default_key=NEW_INTERVAL), name)
            for name in ("earlier_procedure_id", "later_procedure_id", "gap_value", "gap_unit", "severity", "source")
        }
        with django_capture_on_commit_callbacks(execute=True):
            IntervalRule.objects.filter(default_key=NEW_INTERVAL).delete()
        booked.ann.refresh_from_db()
        assert booked.ann.status != AppointmentStatus.NEEDS_REVIEW  # released by the deletion's re-check
        before = run_ids()
        with django_capture_on_commit_callbacks(execute=True):
            IntervalRule.objects.create(default_key=NEW_INTERVAL, **fields)
        [saved] = new_runs(before)

    assert (saved.cause, saved.procedures) == (loaded.cause, loaded.procedures)
    booked.ann.refresh_from_db()
    assert booked.ann.status == AppointmentStatus.NEEDS_REVIEW


def test_the_post_save_sent_for_a_loaded_rule_carries_every_argument_a_save_sends(catalogue):
    received = []

    def audit(sender, instance, created, raw, using, update_fields, **kwargs):
        received.append((instance.default_key, created, using))

    post_save.connect(audit, sender=IntervalRule, dispatch_uid="rv5e-audit")
    try:
        edited = IntervalRule.objects.get(default_key="botox-repeat")
        edited.note = "rv5e"
        edited.save(update_fields=["note"])
        IntervalRule.objects.filter(default_key=NEW_INTERVAL).delete()
        rules_load()
    finally:
        post_save.disconnect(sender=IntervalRule, dispatch_uid="rv5e-audit")

    assert received == [("botox-repeat", False, "default"), (NEW_INTERVAL, True, "default")]


def test_a_loaded_default_is_in_force_for_the_next_booking_check_in_this_process(before_release, now):
    """The rule book is cached per process under the configuration version, which database triggers raise on
    every write: one bulk insert of the new defaults must move it, so a check made after the load (with the book
    cached from before it) is refused by the new rule."""
    patient = PatientFactory(clinic=before_release.site, first_name="Dee")
    ProcedureRecordFactory(patient=patient, procedure_id="filler", performed_at=now - timedelta(days=3))
    check = functools.partial(
        appointment_check, patient=patient, procedure_code="microneedling", start_at=now + timedelta(days=12), now=now
    )
    assert check().outcome != Outcome.REFUSED  # the rule book read and cached without the rule

    rules_load()

    refused = check()
    assert refused.outcome == Outcome.REFUSED
    assert [v.code for v in refused.violations if v.kind == "interval"]


def _broken(monkeypatch, name: str, data: dict) -> None:
    real = defaults._read
    monkeypatch.setattr(defaults, "_read", lambda which: data if which == name else real(which))


@pytest.mark.parametrize("kind", ["interval", "contraindication"])
def test_a_broken_shipped_rule_fails_the_load_and_leaves_no_rule_version_or_recheck_behind(
    catalogue, monkeypatch, django_capture_on_commit_callbacks, kind
):
    """A broken rule fails the load loudly (the retry meant for a concurrent load does not hide it), and nothing of
    the load stays: the interval rules inserted before a broken contraindication, and the re-checks they
    announced, go with the rolled-back transaction."""
    IntervalRule.objects.filter(default_key__isnull=False).delete()
    ContraindicationRule.objects.filter(default_key__isnull=False).delete()
    shipped = json.loads(json.dumps(SHIPPED_RULES))
    if kind == "interval":
        shipped["intervals"][-1]["gap"] = [0, "weeks"]  # interval_rule_positive_gap
    else:
        shipped["contraindications"][-1]["medication"] = "anticoagulant"  # a condition and a drug: one cause only
    _broken(monkeypatch, "rules.json", shipped)

    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(IntegrityError):
        rules_load()

    assert (IntervalRule.objects.count(), ContraindicationRule.objects.count()) == (0, 0)
    assert callbacks == [] and defaults_version_numbers() == []


def test_a_broken_shipped_catalogue_row_fails_the_load_and_leaves_nothing(db, monkeypatch):
    shipped = json.loads(json.dumps(SHIPPED_CATALOGUE))
    shipped["procedures"].append(
        {"code": "rv5e-broken", "name": "Broken", "short_name": "", "duration_minutes": 1, "bookable": True}
    )
    _broken(monkeypatch, "catalogue.json", shipped)

    with pytest.raises(IntegrityError):
        catalogue_load()

    assert (ProcedureType.objects.count(), Condition.objects.count(), Medication.objects.count()) == (0, 0, 0)


def test_a_broken_care_text_also_undoes_the_citations_rewritten_before_it(care_texts, tmp_path):
    """The load is one transaction: a broken missing text (an SMS naming a procedure) fails it, and the superseded
    citation of a text earlier in the file, rewritten in the same load, is stored as it was."""
    ReminderTemplate.objects.filter(default_key="booking-confirmation").update(source=OLD_CITATION)
    ReminderTemplate.objects.filter(default_key="plasma-pen-post-care-completion").delete()
    shipped = json.loads(json.dumps(SHIPPED_TEXTS))
    broken = next(t for t in shipped["templates"] if t["key"] == "plasma-pen-post-care-completion")
    broken["sms_text"] = "{{ clinic_name }}: no microneedling for a week after your visit."
    fixture = tmp_path / "care_texts.json"
    fixture.write_text(json.dumps(shipped))

    with pytest.raises(ValidationError) as refused:
        care_texts_load(fixture)

    assert "microneedling" in str(refused.value.message_dict["sms_text"]).lower()
    assert ReminderTemplate.objects.get(default_key="booking-confirmation").source == OLD_CITATION
    assert not ReminderTemplate.objects.filter(default_key="plasma-pen-post-care-completion").exists()
    assert care_texts_load() == 1  # the shipped file still loads what is missing
    assert (
        ReminderTemplate.objects.get(default_key="booking-confirmation").source == TEXT_SOURCE["booking-confirmation"]
    )


def test_care_texts_load_checks_against_a_catalogue_name_changed_earlier_in_its_transaction(catalogue):
    """The load reads the catalogue's names once (its own snapshot), but after what its transaction changed: a
    condition renamed 'Reminder' just before makes the day-before text's SMS name a diagnosis, and it is refused,
    though this process had the names cached from before the rename."""
    with versioned.snapshot():
        assert texts.clinical_terms_in("a reminder of your appointment") == []  # cached, without the rename
    with transaction.atomic():
        Condition.objects.filter(code="diabetes").update(name="Reminder")
        with pytest.raises(ValidationError) as refused:
            care_texts_load()

    assert "reminder" in str(refused.value.message_dict["sms_text"]).lower()
    assert not ReminderTemplate.objects.exists()


def test_the_loads_read_once_and_insert_once_a_model(care_texts):
    """The change's claim (one read and one insert a model): two care texts missing are inserted in one statement
    after one read of the stored ones; rules_load with nothing missing reads each model's defaults once and
    inserts nothing."""
    ReminderTemplate.objects.filter(default_key__in=["appointment-moved", "botox-pre-care-24h"]).delete()
    with CaptureQueriesContext(connection) as texts_load:
        assert care_texts_load() == 2
    with CaptureQueriesContext(connection) as rules:
        assert rules_load() == 0

    sql = [q["sql"] for q in texts_load.captured_queries]
    assert len([q for q in sql if q.startswith('INSERT INTO "scheduler_remindertemplate"')]) == 1, sql
    assert len([q for q in sql if re.match(r'SELECT .* FROM "scheduler_remindertemplate"', q)]) == 1, sql
    sql = [q["sql"] for q in rules.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert not [q for q in sql if q.startswith("INSERT")], sql
    assert len([q for q in sql if re.match(r'SELECT .* FROM "scheduler_contraindicationrule"', q)]) == 1, sql
    assert len(sql) <= 4, sql  # whether defaults exist, then one read of each model


# --- 2. The tests' own configuration -------------------------------------------------------------------------------


def test_tests_hash_with_md5_and_production_keeps_djangos_default_hashers(settings):
    """config/testing.py: MD5 for tests only; production sets no PASSWORD_HASHERS (Django's default, PBKDF2 first).
    MD5 is not among Django's defaults, so a hash a test makes does not verify in a config.settings subprocess."""
    assert settings.PASSWORD_HASHERS == ["django.contrib.auth.hashers.MD5PasswordHasher"]
    assert "PASSWORD_HASHERS" not in vars(production_settings)
    assert global_settings.PASSWORD_HASHERS[0] == "django.contrib.auth.hashers.PBKDF2PasswordHasher"
    assert "django.contrib.auth.hashers.MD5PasswordHasher" not in global_settings.PASSWORD_HASHERS
    user = get_user_model().objects.create_user("rv5e-hash", password="rv5e-pw-only")
    assert user.password.startswith("md5$") and user.check_password("rv5e-pw-only")


def test_bin_test_steals_work_and_its_one_process_run_still_runs_in_one_process(tmp_path):
    """bin/test passes `-n N --dist worksteal` before the caller's arguments: the installed pytest-xdist knows the
    mode (two workers share two tests), and README's `bin/test -n 0` still runs in one process (the later -n 0
    turns the distribution off rather than failing on --dist)."""
    line = next(x for x in (ROOT / "bin" / "test").read_text().splitlines() if x.startswith("exec "))
    assert '--dist worksteal "$@"' in line
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_where.py").write_text(
        "import os, pathlib\n\n"
        "def where(name):\n"
        "    pathlib.Path(name).write_text(os.environ.get('PYTEST_XDIST_WORKER', 'none'))\n\n"
        "def test_one():\n    where('one.txt')\n\n"
        "def test_two():\n    where('two.txt')\n"
    )
    args = shlex.split(line.split("-m pytest", 1)[1].replace('"${TEST_WORKERS:-2}"', "2").replace('"$@"', ""))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))}

    def pytest_run(*extra: str) -> tuple[str, str]:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", *args, *extra, "-p", "no:django", "-p", "no:cacheprovider", "."],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0 and "2 passed" in done.stdout, done.stdout + done.stderr
        return (tmp_path / "one.txt").read_text(), (tmp_path / "two.txt").read_text()

    assert set(pytest_run()) <= {"gw0", "gw1"}
    assert pytest_run("-n", "0") == ("none", "none")


# --- 3. A plan refused for want of a free practitioner -----------------------------------------------------------


@pytest.fixture
def ny(platform_ready, ticking_clock):
    """A New York clinic whose two practitioners are off for two years from 1 March 2026 (EST until 8 March)."""
    site = ClinicFactory(code="rv5e-ny", name="RV5e New York", timezone="America/New_York")
    doctors = [PractitionerFactory(clinic=site, name=name) for name in ("Dr Gotham", "Dr Hudson")]
    for doctor in doctors:
        TimeOff.objects.create(
            practitioner=doctor,
            start_at=datetime(2026, 3, 1, tzinfo=NEW_YORK),
            end_at=datetime(2028, 3, 1, tzinfo=NEW_YORK),
            reason="sabbatical (rv5e)",
        )
    return SimpleNamespace(site=site, api=http(new_api_client(site, name="rv5e-ny-platform")[1]))


def plans_of(patient) -> str:
    return f"{API}/patients/{patient.pk}/plans/"


def refused_plan(client, patient, start_from="2026-03-04", template="microneedling-course") -> dict:
    response = client.post(plans_of(patient), {"template": template, "start_from": start_from}, format="json")
    return problem(response, 409, "plan_infeasible")


def proposal(client, patient, start_from="2026-03-04", template="microneedling-course") -> dict:
    body = {"template": template, "start_from": start_from, "dry_run": True}
    return ok(client.post(plans_of(patient), body, format="json"))


def test_plan_infeasible_for_want_of_a_practitioner_reads_as_a_single_bookings_availability_refusal(ny):
    """docs/plans.md: plan_infeasible's violations are 'in the booking refusal's shape' (an availability violation
    no_practitioner_available); contract: {code, kind, severity, message, rule, conflicts_with, earliest_allowed}."""
    patient = PatientFactory(clinic=ny.site, first_name="Nell")
    plan = refused_plan(ny.api, patient)
    single = problem(
        ny.api.post(
            f"{API}/appointments/",
            {"patient": str(patient.pk), "procedure": "microneedling", "start": "2026-03-20T10:00:00-04:00"},
            format="json",
        ),
        409,
        "booking_refused",
    )

    [why] = plan["violations"]
    [same] = [v for v in single["violations"] if v["kind"] == "availability"]
    assert set(why) == set(same)
    for field in ("code", "kind", "severity", "rule", "source", "conflicts_with", "earliest_allowed"):
        assert why[field] == same[field], field
    assert (why["code"], why["severity"], why["rule"], why["conflicts_with"]) == (
        "no_practitioner_available",
        "block",
        None,
        None,
    )
    assert why["message"].startswith("Session 1 of ") and "no practitioner has a free slot" in why["message"]
    assert {"violations", "warnings", "earliest_eligible_start", "next_available_slot", "rulebook_version"} <= set(plan)
    assert plan["rulebook_version"] == single["rulebook_version"]
    assert (plan["session"], plan["window"]["earliest"]) == (1, "2026-03-04")
    assert not Appointment.objects.filter(patient=patient).exists()


def _nullable_to_jsonschema(node):
    """OpenAPI 3.0's `nullable: true` as JSON Schema's null type, recursively (tests/qa/test_api_v1_probe.py)."""
    if isinstance(node, dict):
        out = {key: _nullable_to_jsonschema(value) for key, value in node.items()}
        if out.pop("nullable", False):
            return {"anyOf": [out, {"type": "null"}]}
        return out
    if isinstance(node, list):
        return [_nullable_to_jsonschema(item) for item in node]
    return node


def _schema_errors(document, status: int, content_type: str, body: dict) -> list[str]:
    schema = document["paths"][SCHEMA_PATH]["post"]["responses"][str(status)]["content"][content_type]["schema"]
    root = {**_nullable_to_jsonschema(schema), "components": _nullable_to_jsonschema(document["components"])}
    return [error.message for error in jsonschema.Draft202012Validator(root).iter_errors(body)]


def test_plan_infeasible_and_the_dry_runs_obstacle_match_the_published_schema(ny, client):
    """Contract: 'The OpenAPI schema the service publishes must describe all of it'; docs/plans.md: 'A dry run's
    obstacle carries the same violations'."""
    document = client.get(f"{API}/schema/?format=json").json()
    patient = PatientFactory(clinic=ny.site, first_name="Sol")
    refusal = refused_plan(ny.api, patient)
    dry = proposal(ny.api, patient)

    assert _schema_errors(document, 409, "application/problem+json", refusal) == []
    wrong = {**refusal, "violations": [{**refusal["violations"][0], "kind": "calendar"}]}
    assert _schema_errors(document, 409, "application/problem+json", wrong)  # the check is not vacuous
    assert _schema_errors(document, 200, "application/json", dry) == []
    assert dry["feasible"] is False and dry["obstacle"]["violations"] == refusal["violations"]
    assert dry["obstacle"]["window"] == refusal["window"] and dry["reason"] == refusal["detail"]


def test_the_dry_runs_obstacle_gives_the_earliest_start_the_409_gives(ny):
    patient = PatientFactory(clinic=ny.site, first_name="Ida")
    refusal = refused_plan(ny.api, patient)
    assert refusal["earliest_eligible_start"] == "2026-03-04T00:00:00-05:00"
    assert proposal(ny.api, patient)["obstacle"].get("earliest_eligible_start") == refusal["earliest_eligible_start"]


def test_the_earliest_start_is_in_the_clinics_offset_after_new_yorks_dst_change(ny):
    """Domain 2: 2 weeks after a Botox on 1 March is 15 March (local date, at any hour), after New York's clocks
    went forward (8 March). The rules close the window's first days, no one is free on the rest: both are said,
    and the earliest start is that local midnight in the clinic's offset then (-04:00), not the start's (-05:00)."""
    patient = PatientFactory(clinic=ny.site, first_name="Dora")
    ProcedureRecordFactory(
        patient=patient, procedure_id="botox", performed_at=datetime(2026, 3, 1, 10, tzinfo=NEW_YORK)
    )

    refusal = refused_plan(ny.api, patient)

    assert [(v["kind"], v["code"]) for v in refusal["violations"]][-1] == ("availability", "no_practitioner_available")
    [interval] = [v for v in refusal["violations"] if v["kind"] == "interval"]
    assert interval["severity"] == "block" and interval["conflicts_with"]["at"] == "2026-03-01T10:00:00-05:00"
    assert interval["earliest_allowed"] == "2026-03-15T00:00:00-04:00"
    assert refusal["earliest_eligible_start"] == "2026-03-15T00:00:00-04:00"
    assert refusal["window"]["earliest"] == "2026-03-04"


def test_a_plan_from_today_gives_its_first_minute_as_the_earliest_start_in_the_clinics_offset(ny):
    """start_from today: the window opens at the plan's start (now, to the minute), 04:0x in New York on GMT's
    09:00; no rule is in the way, so that is the earliest start, in EST."""
    patient = PatientFactory(clinic=ny.site, first_name="Tia")
    refusal = refused_plan(ny.api, patient, start_from="2026-03-02")
    assert re.fullmatch(r"2026-03-02T04:0[01]:00-05:00", refusal["earliest_eligible_start"]), refusal
    assert [v["code"] for v in refusal["violations"]] == ["no_practitioner_available"]


def test_a_window_closed_by_an_ongoing_course_has_no_availability_violation_and_no_earliest_start(ny):
    """docs/plans.md: null 'where no date can'; the availability violation only 'where the rules allow some days of
    the window': an ongoing isotretinoin course closes all of it, though no one is free either."""
    patient = PatientFactory(clinic=ny.site, first_name="Uma")
    MedicationCourseFactory(patient=patient, drug_id="isotretinoin", started_on=date(2026, 1, 1), ended_on=None)

    refusal = refused_plan(ny.api, patient)

    assert refusal["violations"] and {v["kind"] for v in refusal["violations"]} == {"interval"}
    assert refusal["earliest_eligible_start"] is None
    assert "isotretinoin" in refusal["detail"].lower()


def test_a_window_that_has_passed_gives_no_earliest_start_and_no_violation():
    """docs/plans.md: earliest_eligible_start is null where 'the window has passed'. The planner meets it when a
    re-plan's start, taken to the minute, is the midnight after the window's last day (23:59:30 that day); the API
    takes a start to the minute before planning, so a request does not reach it."""
    course = planner.Course(
        "microneedling",
        3,
        planner.Gap(4, "weeks"),
        planner.Gap(4, "weeks"),
        planner.Gap(6, "weeks"),
        timedelta(hours=1),
    )
    last_day = date(2026, 4, 13)
    plan = planner.plan_course(
        timeline=Timeline(),
        rulebook=default_rulebook(),
        course=course,
        start_at=datetime(2026, 4, 13, 23, 59, 30, tzinfo=LONDON),
        tz=LONDON,
        free_slots=lambda lo, hi: [],
        first_index=2,
        after_day=last_day - timedelta(weeks=6),
    )

    obstacle = plan.obstacle
    assert obstacle is not None and obstacle.index == 2 and "has already passed" in obstacle.message
    assert obstacle.window.latest == last_day
    assert (obstacle.earliest, obstacle.no_free_slot) == (None, False)
    assert services.obstacle_violations(obstacle) == ()


def test_a_replan_refused_for_want_of_a_practitioner_says_so_too(platform_ready, ticking_clock):
    """The re-plan's 409 (and its dry run) come from the same obstacle: after the practitioner's leave from April,
    session 2 of a booked plasma pen course (window 15-29 April) has no one free; the earliest start is the
    window's first day, in BST."""
    site = ClinicFactory(code="rv5e-ldn", name="RV5e London", timezone="Europe/London")
    doctor = PractitionerFactory(clinic=site, name="Dr Thames")
    api = http(new_api_client(site, name="rv5e-ldn-platform")[1])
    patient = PatientFactory(clinic=site, first_name="Vera")
    body = {"template": "plasma-pen-course", "start_from": "2026-03-04"}
    plan = ok(api.post(plans_of(patient), body, format="json"), 201)
    TimeOff.objects.create(
        practitioner=doctor,
        start_at=datetime(2026, 4, 1, tzinfo=LONDON),
        end_at=datetime(2028, 4, 1, tzinfo=LONDON),
        reason="leave (rv5e)",
    )
    replan = f"{API}/plans/{plan['id']}/replan/"
    move = {"from_session": 2, "start": "2026-03-05T00:00:00+00:00"}

    refusal = problem(api.post(replan, move, format="json"), 409, "plan_infeasible")
    dry = ok(api.post(replan, {**move, "dry_run": True}, format="json"))

    assert refusal["session"] == 2 and refusal["window"]["earliest"] == "2026-04-15"
    assert [v["code"] for v in refusal["violations"]] == ["no_practitioner_available"]
    assert refusal["earliest_eligible_start"] == "2026-04-15T00:00:00+01:00"
    assert dry["obstacle"]["violations"] == refusal["violations"]
    sessions = ok(api.get(f"{API}/plans/{plan['id']}/"))["sessions"]
    assert [s["start"] for s in sessions] == [s["start"] for s in plan["sessions"]]  # nothing moved


def test_the_desk_says_why_the_same_plan_fits_nowhere(ny):
    """docs/frontdesk.md: no 500; the desk's proposal names the session and what stops it (the obstacle's
    sentence), for the plan the API refuses with no_practitioner_available."""
    patient = PatientFactory(clinic=ny.site, first_name="Wren")
    desk = staff_client(ny.site, StaffRole.RECEPTIONIST, "rv5e-desk")
    refusal = refused_plan(ny.api, patient)

    response = desk.get(
        fd("plan_new", ny.site, patient), {"template": "microneedling-course", "start_from": "2026-03-04"}
    )

    assert response.status_code == 200
    obstacle = text_by_id(response.content, "plan-obstacle")
    assert "No schedule fits." in obstacle and refusal["detail"] in obstacle


# --- 4. Two loads at once (PostgreSQL, real threads) ---------------------------------------------------------------


def _race(monkeypatch, settings, model, work, method: str = "bulk_create") -> tuple[list, list]:
    """`work()` in two threads of their own connections, both reading what is stored before either writes rows of
    `model` (a barrier before each thread's first `method` of it: its insert, or the `exists()` before one); their
    results and errors."""
    settings.CELERY_BROKER_URL = ""
    # A re-check started while the other load's transaction is open would wait for it (up to 25 s): not tested here.
    monkeypatch.setattr(recheck, "_transactions_in_progress", lambda: set())
    barrier, local = threading.Barrier(2), threading.local()
    real = getattr(QuerySet, method)

    def meeting(queryset, *args, **kwargs):
        if queryset.model is model and not getattr(local, "waited", False):
            local.waited = True
            try:
                barrier.wait(timeout=10)
            except threading.BrokenBarrierError:
                pass
        return real(queryset, *args, **kwargs)

    monkeypatch.setattr(QuerySet, method, meeting)
    results, errors = [], []

    def thread() -> None:
        try:
            results.append(work())
        except Exception as error:  # reported by the test
            errors.append(repr(error))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=thread) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results, errors


def _one_each(model, keys) -> bool:
    stored = list(model.objects.filter(default_key__in=keys).values_list("default_key", flat=True))
    return sorted(stored) == sorted(keys)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_first_loads_at_once_take_each_default_once_and_count_what_each_made(monkeypatch, settings):
    """# Race condition: both read an empty book, both insert; the second waits for the first's commit, fails on
    the unique key, reads again and makes nothing. No error, each default once, the counts add up, no version."""

    def load() -> int:
        catalogue_load()
        return rules_load()

    results, errors = _race(monkeypatch, settings, IntervalRule, load)

    assert errors == [] and sorted(results) == [0, N_RULES]
    assert _one_each(IntervalRule, [r["key"] for r in SHIPPED_RULES["intervals"]])
    assert _one_each(ContraindicationRule, [r["key"] for r in SHIPPED_RULES["contraindications"]])
    assert ProcedureType.objects.count() == len(SHIPPED_CATALOGUE["procedures"])
    assert defaults_version_numbers() == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_upgrades_at_once_add_the_new_default_once_and_record_one_version(monkeypatch, settings):
    catalogue_load()
    rules_load()
    IntervalRule.objects.filter(default_key=NEW_INTERVAL).delete()

    results, errors = _race(monkeypatch, settings, IntervalRule, rules_load)

    assert errors == [] and sorted(results) == [0, 1]
    assert IntervalRule.objects.filter(default_key=NEW_INTERVAL).count() == 1
    assert defaults_version_numbers() == [2]
    [version] = RuleBookVersion.objects.filter(organisation=None)
    assert [entry["rule"] for entry in version.diff] == [str(IntervalRule.objects.get(default_key=NEW_INTERVAL))]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_setup_demos_at_once_end_without_error_and_with_everything_once(monkeypatch, settings):
    results, errors = _race(monkeypatch, settings, ReminderTemplate, lambda: run("setup_demo"))

    assert ReminderTemplate.objects.filter(default_key__in=TEXT_SOURCE).count() == N_TEXTS
    assert default_rule_count() == N_RULES and PlanTemplate.objects.count() == len(
        json.loads((FIXTURES / "plan_templates.json").read_text())["templates"]
    )
    assert (Clinic.objects.count(), Practitioner.objects.count(), Patient.objects.count()) == (3, 6, 8)
    assert errors == [], errors
    assert len(results) == 2 and all("Demo clinics: demo" in out for out in results)
    assert sorted(int(re.search(r"(\d+) default reminder", out)[1]) for out in results) == [0, N_TEXTS]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_plan_template_loads_at_once_end_without_error(monkeypatch, settings):
    catalogue_load()
    care_texts_load()

    results, errors = _race(monkeypatch, settings, ReminderTemplate, plan_templates_load, method="exists")

    assert ReminderTemplate.objects.filter(default_key="recall-due").count() == 1
    assert PlanTemplate.objects.count() == len(json.loads((FIXTURES / "plan_templates.json").read_text())["templates"])
    assert errors == [], errors
    assert sorted(results) == [0, PlanTemplate.objects.count() + 1]
