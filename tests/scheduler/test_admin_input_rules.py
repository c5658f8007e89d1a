"""An interval rule's gap is at most ten years (docs/rules.md) on every path that edits rules: the rule book
service (scheduler/rulebooks.py, which the admin saves through), the admin's form, and the database for any
other write. A gap of exactly ten years still books: a refusal with its earliest date, not a crash."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from scheduler import rulebooks
from scheduler.booking import Actor, UnableToBook, appointment_book
from scheduler.models import IntervalRule, RuleBookVersion
from scheduler.rules import MAX_GAP_VALUE
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory, ProcedureRecordFactory

LONDON = ZoneInfo("Europe/London")
pytestmark = pytest.mark.django_db


def local(y, m, d, hh=10):
    return datetime(y, m, d, hh, tzinfo=LONDON)


@pytest.fixture
def patient(catalogue):
    clinic = ClinicFactory(code="gap-clinic")
    PractitionerFactory(clinic=clinic)
    patient = PatientFactory(clinic=clinic)
    ProcedureRecordFactory(patient=patient, procedure_id="botox", performed_at=local(2026, 3, 1))
    return patient


def override(patient, value: int, unit: str) -> IntervalRule:
    default = IntervalRule.objects.get(default_key="botox-then-microneedling")
    return IntervalRule(
        organisation_id=patient.organisation_id, replaces=default, earlier_procedure_id="botox",
        later_procedure_id="microneedling", gap_value=value, gap_unit=unit, severity="block", source="QA",
    )  # fmt: skip


@pytest.mark.parametrize("unit", ["hours", "days", "weeks", "months"])
def test_the_rule_book_service_refuses_a_gap_beyond_ten_years_on_the_field(patient, now, unit):
    with pytest.raises(ValidationError) as refused:
        rulebooks.rule_save(rule=override(patient, MAX_GAP_VALUE[unit] + 1, unit), user=None, reason="x", now=now)

    assert "gap_value" in refused.value.message_dict
    assert not IntervalRule.objects.filter(organisation_id=patient.organisation_id).exists()
    assert not RuleBookVersion.objects.exists()


def test_the_database_refuses_it_on_any_other_path(patient):
    with pytest.raises(IntegrityError), transaction.atomic():
        override(patient, 1_000_000_000, "weeks").save()


def test_a_ten_year_gap_is_saved_and_a_booking_is_refused_with_its_earliest_date(patient, now):
    rulebooks.rule_save(rule=override(patient, MAX_GAP_VALUE["weeks"], "weeks"), user=None, reason="x", now=now)

    with pytest.raises(UnableToBook) as refused:
        appointment_book(
            patient=patient, procedure_code="microneedling", start_at=local(2026, 4, 20), actor=Actor("t"), now=now
        )

    assert refused.value.check.earliest_eligible_start is not None
    assert refused.value.check.earliest_eligible_start.year == 2036


def test_the_admin_form_refuses_it_on_the_field(admin_client, patient):
    admin_client.raise_request_exception = False
    default = IntervalRule.objects.get(default_key="botox-then-microneedling")
    data = {
        "organisation": str(patient.organisation_id), "replaces": str(default.pk), "earlier_procedure": "botox",
        "earlier_medication": "", "later_procedure": "microneedling", "gap_value": "1000000000", "gap_unit": "weeks",
        "severity": "block", "scope": default.scope, "basis": "practice", "source": "QA", "note": "",
        "is_active": "on", "change_reason": "QA: forever",
    }  # fmt: skip

    response = admin_client.post("/admin/scheduler/intervalrule/add/", data)

    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["gap_value"]
    assert not IntervalRule.objects.filter(organisation_id=patient.organisation_id).exists()
