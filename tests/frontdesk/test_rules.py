"""The organisation's rules on the front desk: sources, basis, what the organisation changed, the versions;
and the rule book version each booking used, in the appointment's history."""

import pytest
from django.contrib.auth import get_user_model

from scheduler import rulebooks
from scheduler.booking import Actor, appointment_book
from scheduler.models import IntervalRule
from tests.frontdesk.conftest import url

pytestmark = pytest.mark.django_db


def relax(organisation, reason="our protocol (ASDS 2017)"):
    default = IntervalRule.objects.get(default_key="isotretinoin-then-microneedling-block")
    override = IntervalRule(
        organisation=organisation,
        replaces=default,
        earlier_medication_id="isotretinoin",
        later_procedure_id="microneedling",
        gap_value=4,
        gap_unit="months",
        severity="block",
        source="Organisation protocol",
    )
    user = get_user_model().objects.create_user("orgadmin", password="pw-for-tests")
    return rulebooks.rule_save(rule=override, user=user, reason=reason, now=override_time())


def override_time():
    from tests.conftest import CLOCK

    return CLOCK


def test_the_rules_page_shows_sources_basis_and_the_organisations_changes(reception, clinic, other_clinic):
    relax(clinic.organisation)

    page = reception.get(url("rules", clinic))
    html = page.content.decode()

    assert page.status_code == 200
    assert 'data-testid="rulebook-version">d1.o2<' in html
    assert "[001] Yazbek Artistry" in html  # a sourced default, with its citation
    assert "Clinic practice, not sourced" in html  # the repeat defaults, marked
    assert "instead of the default" in html and "our protocol (ASDS 2017)" in html
    assert "relaxed isotretinoin course end → microneedling" in html  # the version's diff, readable
    assert "orgadmin" in html
    assert 'href="/clinic/london/rules/"' in html or url("rules", clinic) in html  # linked from the nav


def test_another_organisations_change_is_not_shown(reception, clinic, other_clinic):
    relax(other_clinic.organisation, reason="only theirs")

    html = reception.get(url("rules", clinic)).content.decode()

    assert "only theirs" not in html and 'data-testid="rulebook-version">d1.o1<' in html


def test_the_appointment_history_shows_the_rule_book_version_used(reception, clinic, practitioner, patient, now):
    booked = appointment_book(
        patient=patient, procedure_code="botox", start_at=now.replace(day=10, hour=10), actor=Actor("t"), now=now
    ).appointment

    html = reception.get(url("appointment", clinic, booked)).content.decode()

    assert booked.audit_events.get().details["rulebook_version"] == "d1.o1"
    assert "rule book d1.o1" in html
