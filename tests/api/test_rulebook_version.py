"""`rulebook_version` in eligibility answers and booking answers (201 and 409): the version of the patient's
organisation's rule book they were checked against; it moves when the organisation's rules change."""

from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model

from clinic.models import AuditEvent
from scheduler import rulebooks
from scheduler.models import IntervalRule
from tests.api.conftest import NOW, problem_of
from tests.factories import ProcedureRecordFactory

pytestmark = pytest.mark.django_db
TUESDAY_10 = "2026-03-03T10:00:00+00:00"


def post(api, path, patient, procedure="microneedling", start=TUESDAY_10):
    return api.post(path, {"patient": str(patient.pk), "procedure": procedure, "start": start}, format="json")


def relax_botox_then_microneedling(organisation):
    default = IntervalRule.objects.get(default_key="botox-then-microneedling")
    override = IntervalRule(
        organisation=organisation,
        replaces=default,
        earlier_procedure_id="botox",
        later_procedure_id="microneedling",
        gap_value=3,
        gap_unit="days",
        severity="block",
        source="Organisation protocol",
    )
    user = get_user_model().objects.create_user("orgadmin", password="pw-for-tests")
    rulebooks.rule_save(rule=override, user=user, reason="our protocol", now=NOW)


def test_eligibility_booking_and_refusal_carry_the_version_and_it_moves_after_an_edit(api, patient, practitioner):
    ProcedureRecordFactory(patient=patient, procedure_id="botox", performed_at=datetime(2026, 2, 25, 10, tzinfo=UTC))

    eligibility = post(api, "/api/v1/eligibility/", patient).json()
    refusal = problem_of(post(api, "/api/v1/appointments/", patient), 409)
    assert eligibility["eligible"] is False
    assert eligibility["rulebook_version"] == refusal["rulebook_version"] == "d1.o1"

    relax_botox_then_microneedling(patient.organisation)

    after = post(api, "/api/v1/eligibility/", patient).json()
    booked = post(api, "/api/v1/appointments/", patient)
    assert after["eligible"] is True and after["rulebook_version"] == "d1.o2"
    assert booked.status_code == 201 and booked.json()["rulebook_version"] == "d1.o2"
    event = AuditEvent.objects.get(appointment_id=booked.json()["id"])
    assert event.details["rulebook_version"] == "d1.o2"


def test_the_reschedule_dry_run_carries_the_version(api, patient, practitioner):
    booked = post(api, "/api/v1/appointments/", patient, procedure="botox").json()
    check = api.post(
        f"/api/v1/appointments/{booked['id']}/reschedule-check/", {"start": "2026-03-04T10:00:00+00:00"}, format="json"
    ).json()
    assert booked["rulebook_version"] == check["rulebook_version"] == "d1.o1"
