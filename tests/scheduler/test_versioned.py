"""The rule book, catalogue and templates are kept per process under a version database triggers raise:
fewer statements per booking, and no edit by any path can leave a stale copy in use."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from scheduler import selectors, versioned
from scheduler.booking import Actor, UnableToBook, appointment_book
from scheduler.models import IntervalRule
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory, ProcedureRecordFactory

LONDON = ZoneInfo("Europe/London")


def local(d, hh=10):
    return datetime(2026, 3, d, hh, tzinfo=LONDON)


@pytest.fixture
def patient(catalogue):
    clinic = ClinicFactory(code="london", timezone="Europe/London")
    PractitionerFactory(clinic=clinic, name="Dr A")
    return PatientFactory(clinic=clinic)


def book(patient, code, when, now):
    return appointment_book(patient=patient, procedure_code=code, start_at=when, actor=Actor("t"), now=now)


def botox_to_microneedling():
    return IntervalRule.objects.filter(earlier_procedure_id="botox", later_procedure_id="microneedling")


def test_an_accepted_booking_takes_at_most_7_statements(patient, now, django_assert_max_num_queries):
    # 7: the patient lock (which reads the version in the same statement), the practitioner lock, the timeline
    # and the practitioners' calendars (one statement each), the appointment, its audit row and the recall a
    # booking closes (plans.recalls); inside the caller's transaction (here the test's) with no savepoint. The
    # webhook endpoints are kept with the rule book under the one version read
    # (reminders.services._subscriptions), so they cost nothing here.
    book(patient, "botox", local(9), now)  # the first booking of a process loads the copies
    with django_assert_max_num_queries(7):
        book(patient, "filler", local(10), now)


def test_the_version_is_read_by_the_patient_lock_not_before_it(patient, now):
    book(patient, "botox", local(9), now)
    with CaptureQueriesContext(connection) as queries:
        book(patient, "filler", local(10), now)
    statements = [q["sql"] for q in queries.captured_queries]
    assert not any(sql.startswith("SELECT value FROM scheduler_configversion") for sql in statements)
    [lock] = [sql for sql in statements if "scheduler_configversion" in sql]
    assert lock.startswith('SELECT "clinic_patient"."id"') and "clinic_patient" in lock
    if connection.vendor == "postgresql":
        assert "FOR UPDATE OF" in lock


def test_a_snapshot_keeps_the_first_version_offered(patient, now):
    book(patient, "botox", local(9), now)
    with versioned.snapshot():
        assert versioned.wants_version()
        versioned.offer(12345)
        assert not versioned.wants_version()
        versioned.offer(67890)  # a second offer changes nothing: one version for the whole call
        assert versioned.cached("probe", lambda: "loaded") == "loaded"
        assert versioned.cached("probe", lambda: "again") == "loaded"  # kept under 12345
    assert not versioned.wants_version()


def test_naming_the_practitioner_costs_no_more(patient, now, django_assert_max_num_queries):
    # As a platform books after an availability search: the practitioner is taken, checked to do the procedure
    # and locked in one query.
    dr_a = patient.clinic.practitioners.get()
    book(patient, "botox", local(9), now)
    with django_assert_max_num_queries(7):
        appointment_book(
            patient=patient,
            procedure_code="filler",
            start_at=local(10),
            actor=Actor("t"),
            now=now,
            practitioner_id=dr_a.pk,
        )


def test_another_organisations_copy_is_loaded_once_then_costs_nothing(patient, now, django_assert_max_num_queries):
    book(patient, "botox", local(9), now)
    elsewhere = PatientFactory(clinic=ClinicFactory(code="elsewhere", timezone="Europe/London"))
    PractitionerFactory(clinic=elsewhere.clinic, name="Dr B")
    book(elsewhere, "botox", local(9), now)  # loads organisation B's rule book
    with django_assert_max_num_queries(7):
        book(elsewhere, "filler", local(10), now)
    with django_assert_max_num_queries(7):
        book(patient, "plasma_pen", local(11), now)  # A's copy is still good


def test_an_edit_that_bypasses_the_orm_signals_is_seen_by_the_next_booking(patient, now):
    ProcedureRecordFactory(patient=patient, procedure_id="botox", performed_at=local(1))
    with pytest.raises(UnableToBook):
        book(patient, "microneedling", local(10), now)  # within the 2 weeks: the copy is loaded

    botox_to_microneedling().update(gap_value=1, gap_unit="days")  # a bulk update: no signal fires

    assert book(patient, "microneedling", local(10), now).appointment.status == "confirmed"


def test_a_rolled_back_edit_leaves_no_copy_behind(patient, now):
    before = selectors.rulebook_load(patient.organisation_id)
    version = versioned.current_version()
    assert version is not None
    with pytest.raises(RuntimeError), transaction.atomic():
        botox_to_microneedling().update(gap_value=1, gap_unit="days")
        edited = selectors.rulebook_load(patient.organisation_id)  # cached under the edit's (uncommitted) version
        assert edited is not before
        raise RuntimeError("rolled back")

    assert versioned.current_version() == version

    def gap():
        rule = next(
            r
            for r in selectors.rulebook_load(patient.organisation_id).looking_back["microneedling"]
            if r.earlier_procedure == "botox"
        )
        return rule.gap_value, rule.gap_unit

    assert gap() == (2, "weeks")  # the committed rules, not the rolled-back copy
    later_edit = botox_to_microneedling().update(gap_value=3)
    assert later_edit == 1 and versioned.current_version() not in (version, None)
    assert gap() == (3, "weeks")


@pytest.mark.django_db
def test_every_watched_table_has_its_trigger():
    from importlib import import_module

    step = import_module("reminders.migrations.0005_config_version_triggers")
    versions = import_module("scheduler.migrations.0006_organisation_rule_books")
    webhooks = import_module("reminders.migrations.0009_webhook_config_triggers")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT DISTINCT event_object_table FROM information_schema.triggers "
                "WHERE trigger_name LIKE '%%_config_bump'"
            )
        else:
            cursor.execute(
                "SELECT DISTINCT tbl_name FROM sqlite_master WHERE type = 'trigger' AND name LIKE '%_config_bump_%'"
            )
        watched = {row[0] for row in cursor.fetchall()}
    assert watched == set(step.TABLES) | set(versions.TABLES) | set(webhooks.TABLES) | {webhooks.CLIENT}
