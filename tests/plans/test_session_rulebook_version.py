"""Each session of a treatment plan says the rule book version its own booking was checked against
(docs/plans.md, API): in the 201, in GET /plans/{id}/ and in a dry run's sessions; a session moved after the
organisation changed a rule (a re-plan, or a reschedule through the appointments API) says the newer version, the
sessions left where they were the older one; a session holding no booking says null; completed keeps its version.
Reading the versions costs the same for 3 sessions as for 6. The clock is Monday 2 March 2026, 09:00 UTC."""

from datetime import datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from clinic.models import Appointment
from scheduler import rulebooks
from scheduler.booking import appointment_complete
from scheduler.lifecycle import Actor
from scheduler.models import IntervalRule
from tests.api.conftest import http, new_api_client
from tests.conftest import CLOCK
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

MN = "microneedling-course"
OLD, NEW = "d1.o1", "d1.o2"


@pytest.fixture(autouse=True)
def _clock():
    with time_machine.travel(CLOCK, tick=True):
        yield


@pytest.fixture
def api(clinic, templates, settings):
    settings.CELERY_BROKER_URL = ""  # a rule change's re-check runs in this process
    return http(new_api_client(clinic)[1])


def _book(api, patient, **extra) -> dict:
    response = api.post(
        f"/api/v1/patients/{patient.pk}/plans/", {"template": MN, "start_from": "2026-03-09", **extra}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()


def _get(api, plan) -> dict:
    response = api.get(f"/api/v1/plans/{plan['id']}/")
    assert response.status_code == 200, response.content
    return response.json()


def _versions(plan) -> list:
    return [s["rulebook_version"] for s in plan["sessions"]]


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
        source="Organisation protocol",
    )
    user = get_user_model().objects.create_user("orgadmin", password="pw-for-tests")
    rulebooks.rule_save(rule=override, user=user, reason="our protocol", now=CLOCK)


def test_the_201_the_get_and_the_dry_run_give_each_session_its_version(api, patient, practitioner):
    proposal = api.post(
        f"/api/v1/patients/{patient.pk}/plans/",
        {"template": MN, "start_from": "2026-03-09", "dry_run": True},
        format="json",
    ).json()
    assert _versions(proposal) == [OLD] * 3 and proposal["rulebook_version"] == OLD
    created = _book(api, patient)
    assert created["rulebook_version"] == OLD
    assert _versions(created) == [OLD] * 3
    assert _versions(_get(api, created)) == [OLD] * 3


def test_a_replan_after_a_rule_change_gives_the_moved_sessions_the_new_version(api, patient, practitioner):
    plan = _book(api, patient)
    assert [s["start"] for s in plan["sessions"]][1] == "2026-04-06T09:00:00+01:00"
    _change_a_rule(patient.organisation)
    replanned = api.post(
        f"/api/v1/plans/{plan['id']}/replan/", {"from_session": 2, "start": "2026-04-08T09:00:00+01:00"}, format="json"
    )
    assert replanned.status_code == 200, replanned.content
    body = replanned.json()
    assert [s["start"][:10] for s in body["sessions"]] == ["2026-03-09", "2026-04-08", "2026-05-06"]
    assert body["rulebook_version"] == NEW  # the plan's: last placed and checked by
    assert _versions(body) == [OLD, NEW, NEW]
    assert _versions(_get(api, plan)) == [OLD, NEW, NEW]


def test_a_session_moved_through_the_appointments_api_after_a_rule_change_says_the_new_version(
    api, patient, practitioner
):
    plan = _book(api, patient)
    _change_a_rule(patient.organisation)
    third = plan["sessions"][2]["appointment"]
    moved = api.post(f"/api/v1/appointments/{third}/reschedule/", {"start": "2026-05-05T10:00:00+01:00"}, format="json")
    assert moved.status_code == 201 and moved.json()["rulebook_version"] == NEW
    shown = _get(api, plan)
    assert shown["rulebook_version"] == OLD  # the plan was not re-planned
    assert _versions(shown) == [OLD, OLD, NEW]


def test_a_session_with_no_booking_says_null_and_a_completed_one_keeps_its_version(api, patient, practitioner):
    plan = _book(api, patient)
    third = plan["sessions"][2]["appointment"]
    cancelled = api.post(f"/api/v1/appointments/{third}/cancel/", {"reason": "patient asked"}, format="json")
    assert cancelled.status_code == 200, cancelled.content
    shown = _get(api, plan)
    assert [s["status"] for s in shown["sessions"]] == ["booked", "booked", "cancelled"]
    assert _versions(shown) == [OLD, OLD, None]

    first = Appointment.objects.get(pk=plan["sessions"][0]["appointment"])
    done_at = first.start_at + timedelta(hours=1)
    appointment_complete(appointment=first, actor=Actor(label="clinician", clinical=True), now=done_at)
    with time_machine.travel(done_at + timedelta(days=1), tick=False):
        later = _get(api, plan)
    assert [s["status"] for s in later["sessions"]] == ["completed", "booked", "cancelled"]
    assert _versions(later) == [OLD, OLD, None]


def _queries(api, plan) -> int:
    _get(api, plan)  # warm: per-process copies of the rule book and settings are not what is measured
    with CaptureQueriesContext(connection) as captured:
        _get(api, plan)
    return len(captured)


def test_reading_the_versions_costs_the_same_for_3_sessions_as_for_6(
    api, patient, practitioner, django_assert_max_num_queries
):
    three = _book(api, patient, sessions=3)
    six = _book(api, PatientFactory(clinic=patient.clinic, first_name="Bo"), sessions=6, start_from="2026-03-10")
    for session in six["sessions"][3:]:  # a longer trail too: three sessions moved an hour on
        later = (datetime.fromisoformat(session["start"]) + timedelta(hours=1)).isoformat()
        url = f"/api/v1/appointments/{session['appointment']}/reschedule/"
        assert api.post(url, {"start": later}, format="json").status_code == 201
    small = _queries(api, three)
    _get(api, six)
    with django_assert_max_num_queries(small):
        shown = _get(api, six)
    assert _versions(shown) == [OLD] * 6
