"""The shipped defaults and `setup_demo`: complete, sourced, idempotent, and respectful of edits."""

import re
import threading
from datetime import timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.db import connections
from django.db.models import F, Manager, Max
from django.utils import timezone

from clinic.models import (
    AppointmentStatus,
    Clinic,
    Condition,
    Medication,
    Patient,
    Practitioner,
    ProcedureType,
    TreatmentArea,
    WorkingHours,
)
from scheduler.booking import Actor, appointment_book, appointment_check
from scheduler.defaults import catalogue_load, rules_load
from scheduler.models import ContraindicationRule, IntervalRule, RecheckRun, RuleBookVersion
from scheduler.rules import Outcome
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory, ProcedureRecordFactory

# The stable catalogue codes (docs/rules.md, "Catalogue codes"): the API and fixtures use them.
CONDITIONS = (
    "scleroderma collagen_vascular_disease cardiac_abnormality clotting_disorder skin_infection open_wound "
    "immunosuppression keloid_scarring eczema psoriasis inflammatory_skin_condition active_acne "
    "actinic_keratosis herpes_simplex diabetes pregnancy breastfeeding radiation_therapy tattoo_in_area "
    "autoimmune_disease filler_allergy anaphylaxis_history"
).split()
MEDICATIONS = ["isotretinoin", "topical_retinoid", "anticoagulant", "immunosuppressant"]
AREAS = ["face", "neck", "decolletage", "hands", "body", "scalp"]
RECEPTION = Actor("reception@test")


@pytest.fixture
def demo(db):
    call_command("setup_demo", "--staff-password", "pw-for-tests")


def test_catalogue_has_every_code_of_the_domain_brief(demo):
    assert sorted(Condition.objects.values_list("code", flat=True)) == sorted(CONDITIONS)
    assert sorted(Medication.objects.values_list("code", flat=True)) == sorted(MEDICATIONS)
    assert sorted(TreatmentArea.objects.values_list("code", flat=True)) == sorted(AREAS)


def test_every_sourced_default_rule_names_its_source(demo):
    sources = list(IntervalRule.objects.filter(basis="sourced").values_list("source", flat=True)) + list(
        ContraindicationRule.objects.values_list("source", flat=True)
    )

    assert IntervalRule.objects.filter(basis="sourced").count() == 9
    assert ContraindicationRule.objects.count() == 36
    # "[001] Yazbek Artistry, microneedling care (docs/sources.md)"; docs/sources.md lists each id.
    citation = r"\[00[0-3]\] [^;()\[\]]+"
    assert all(re.fullmatch(rf"{citation}(; {citation})* \(docs/sources\.md\)", s) for s in sources), sources


def test_the_repeat_defaults_are_marked_clinic_practice_warnings_never_sourced(demo):
    repeats = IntervalRule.objects.filter(earlier_procedure_id=F("later_procedure_id"))

    assert sorted(repeats.values_list("later_procedure_id", "gap_value", "gap_unit", "severity", "basis")) == [
        ("botox", 12, "weeks", "warn", "practice"),
        ("filler", 2, "weeks", "warn", "practice"),
        ("microneedling", 4, "weeks", "warn", "practice"),
        ("plasma_pen", 6, "weeks", "warn", "practice"),
    ]
    assert not any("[00" in source for source in repeats.values_list("source", flat=True))
    assert set(IntervalRule.objects.filter(basis="practice")) == set(repeats)


def test_setup_demo_is_idempotent_and_keeps_edits(demo):
    rule = IntervalRule.objects.get(default_key="botox-then-microneedling")
    rule.gap_value = 3
    rule.save()
    counts = [
        m.objects.count() for m in (Clinic, Practitioner, Patient, WorkingHours, IntervalRule, ContraindicationRule)
    ]

    call_command("setup_demo", "--staff-password", "pw-for-tests")

    assert [
        m.objects.count() for m in (Clinic, Practitioner, Patient, WorkingHours, IntervalRule, ContraindicationRule)
    ] == counts
    assert IntervalRule.objects.get(default_key="botox-then-microneedling").gap_value == 3


def test_setup_demo_updates_an_old_file_path_citation_and_nothing_else(demo):
    """An install from before docs/sources.md cited files outside the repository: setup_demo rewrites those."""
    shipped = IntervalRule.objects.get(default_key="botox-then-microneedling").source
    IntervalRule.objects.filter(default_key="botox-then-microneedling").update(
        source="001 (reference/seeds/001_d9301594d8dd3cc7.txt)", gap_value=3
    )  # an edited gap, an old citation
    ContraindicationRule.objects.filter(default_key="microneedling-eczema").update(
        source="000 (reference/seeds/000_e8641ba457ba57fa.txt); 001 (reference/seeds/001_d9301594d8dd3cc7.txt)"
    )
    ContraindicationRule.objects.filter(default_key="microneedling-diabetes").update(source="Our own protocol, 2026")

    call_command("setup_demo", "--no-demo")

    botox = IntervalRule.objects.get(default_key="botox-then-microneedling")
    assert (botox.source, botox.gap_value) == (shipped, 3)
    assert ContraindicationRule.objects.get(default_key="microneedling-eczema").source.endswith("(docs/sources.md)")
    assert ContraindicationRule.objects.get(default_key="microneedling-diabetes").source == "Our own protocol, 2026"


def test_demo_clinics_match_the_api_contract(demo):
    clinics = {c.code: c for c in Clinic.objects.all()}

    assert clinics["demo"].timezone == "Europe/London"
    assert clinics["demo-ny"].timezone == "America/New_York"
    assert clinics["demo-west"].timezone == "Europe/London"
    # demo and demo-west are sites of organisation `demo`; demo-ny is alone in `demo-ny`.
    assert clinics["demo"].organisation.code == clinics["demo-west"].organisation.code == "demo"
    assert clinics["demo-ny"].organisation.code == "demo-ny"
    assert set(clinics["demo-west"].practitioners.values_list("name", flat=True)).isdisjoint(
        clinics["demo"].practitioners.values_list("name", flat=True)
    )
    assert clinics["demo-west"].practitioners.count() == 2
    # One record per patient: demo-west's desk sees demo's patients, none registered twice.
    assert not Patient.objects.filter(clinic__code="demo-west").exists()
    assert Patient.objects.filter(organisation__code="demo").count() == 4
    for practitioner in Practitioner.objects.all():
        assert set(practitioner.procedures.values_list("code", flat=True)) == {
            "botox",
            "filler",
            "microneedling",
            "plasma_pen",
        }
        hours = sorted(practitioner.working_hours.values_list("weekday", "start_time", "end_time"))
        assert [h[0] for h in hours] == [0, 1, 2, 3, 4, 5]
        assert {(h[1].hour, h[2].hour) for h in hours} == {(9, 18)}


def test_demo_patient_with_recent_botox_is_refused_microneedling(demo):
    olivia = Patient.objects.get(clinic__code="demo", first_name="Olivia")
    now = timezone.now()

    check = appointment_check(
        patient=olivia,
        procedure_code="microneedling",
        start_at=(now + timezone.timedelta(days=2)).replace(second=0, microsecond=0),
        now=now,
    )

    assert check.outcome == Outcome.REFUSED
    assert check.earliest_eligible_start is not None


@pytest.fixture
def filler_then_microneedling_booked(catalogue, now):
    """A database from before a release that ships the filler → microneedling block: a microneedling booked
    two weeks after filler (fine without that rule)."""
    IntervalRule.objects.filter(default_key="filler-then-microneedling").delete()
    clinic = ClinicFactory(code="london", timezone="Europe/London")
    PractitionerFactory(clinic=clinic)
    patient = PatientFactory(clinic=clinic)
    ProcedureRecordFactory(patient=patient, procedure_id="filler", performed_at=now - timedelta(days=3))
    return appointment_book(
        patient=patient, procedure_code="microneedling", start_at=now + timedelta(days=11), actor=RECEPTION, now=now
    ).appointment


def test_a_release_adding_a_default_creates_it_once_versions_it_and_rechecks_what_it_forbids(
    settings, filler_then_microneedling_booked, now, django_capture_on_commit_callbacks
):
    settings.CELERY_BROKER_URL = ""  # the embedded default: the re-check runs in this process
    appointment = filler_then_microneedling_booked
    assert appointment.status == AppointmentStatus.CONFIRMED
    rules = IntervalRule.objects.count() + ContraindicationRule.objects.count()
    shipped = RuleBookVersion.objects.filter(organisation=None).aggregate(Max("number"))["number__max"] or 1

    with time_machine.travel(now, tick=False), django_capture_on_commit_callbacks(execute=True):
        assert rules_load() == 1

    assert IntervalRule.objects.count() + ContraindicationRule.objects.count() == rules + 1
    added = IntervalRule.objects.get(default_key="filler-then-microneedling")
    assert (added.gap_value, added.gap_unit, added.severity) == (4, "weeks", "block")
    version = RuleBookVersion.objects.filter(organisation=None).order_by("-number").first()
    assert version.reason == "release: 1 shipped default(s) added"
    assert [(entry["rule_id"], entry["rule"]) for entry in version.diff] == [(added.pk, str(added))]
    assert version.number == shipped + 1
    # The rule was announced as saved, so the booking it now forbids was re-checked once the load committed.
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.NEEDS_REVIEW
    assert RecheckRun.objects.filter(cause__startswith="rule changed: filler").count() == 1

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert rules_load() == 0
    assert callbacks == [] and RecheckRun.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_load_meeting_another_loads_rows_takes_each_default_once(settings, monkeypatch):
    """# Race condition: a second load commits the same keys between this one's read and its insert (the other
    load runs in a connection of its own, committed, as a second `setup_demo` would)."""
    settings.CELERY_BROKER_URL = ""
    catalogue_load()
    rules_load()
    IntervalRule.objects.filter(default_key__in=["filler-then-microneedling", "botox-then-microneedling"]).delete()
    real = Manager.bulk_create
    raced = []

    def other_load(row: IntervalRule) -> None:
        try:  # as this load inserts (its re-check, once committed, is not what is tested here)
            real(IntervalRule.objects, [IntervalRule(default_key=row.default_key, **_fields_of(row))])
        finally:
            connections.close_all()

    def bulk_create(manager, objs, *args, **kwargs):
        if manager.model is IntervalRule and not raced:
            raced.append(objs[0].default_key)
            thread = threading.Thread(target=other_load, args=(objs[0],))
            thread.start()
            thread.join()
        return real(manager, objs, *args, **kwargs)

    monkeypatch.setattr(Manager, "bulk_create", bulk_create)

    assert rules_load() == 1  # the other load made one of the two
    keys = list(IntervalRule.objects.values_list("default_key", flat=True))
    assert keys.count("filler-then-microneedling") == keys.count("botox-then-microneedling") == 1
    assert len(raced) == 1 and raced[0] in ("filler-then-microneedling", "botox-then-microneedling")


def _fields_of(rule: IntervalRule) -> dict:
    names = ("earlier_procedure_id", "later_procedure_id", "gap_value", "gap_unit", "severity", "source", "basis")
    return {name: getattr(rule, name) for name in names}


def test_catalogue_load_creates_what_is_missing_and_keeps_an_operators_edit(db):
    catalogue_load()
    ProcedureType.objects.filter(code="botox").update(duration_minutes=45)
    Condition.objects.filter(code="eczema").delete()

    catalogue_load()

    assert ProcedureType.objects.get(code="botox").duration_minutes == 45
    assert Condition.objects.filter(code="eczema").count() == 1
    assert sorted(Condition.objects.values_list("code", flat=True)) == sorted(CONDITIONS)
