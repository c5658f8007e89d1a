"""The shipped defaults and `setup_demo`: complete, sourced, idempotent, and respectful of edits."""

import re

import pytest
from django.core.management import call_command
from django.db.models import F
from django.utils import timezone

from clinic.models import Clinic, Condition, Medication, Patient, Practitioner, TreatmentArea, WorkingHours
from scheduler.booking import appointment_check
from scheduler.models import ContraindicationRule, IntervalRule
from scheduler.rules import Outcome

# The stable catalogue codes (docs/rules.md, "Catalogue codes"): the API and fixtures use them.
CONDITIONS = (
    "scleroderma collagen_vascular_disease cardiac_abnormality clotting_disorder skin_infection open_wound "
    "immunosuppression keloid_scarring eczema psoriasis inflammatory_skin_condition active_acne "
    "actinic_keratosis herpes_simplex diabetes pregnancy breastfeeding radiation_therapy tattoo_in_area "
    "autoimmune_disease filler_allergy anaphylaxis_history"
).split()
MEDICATIONS = ["isotretinoin", "topical_retinoid", "anticoagulant", "immunosuppressant"]
AREAS = ["face", "neck", "decolletage", "hands", "body", "scalp"]


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
