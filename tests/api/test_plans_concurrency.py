"""Booking a plan against real concurrent bookings over HTTP on PostgreSQL: all sessions or none."""

import pytest

from clinic.models import Appointment, AppointmentStatus
from plans.defaults import plan_templates_load
from plans.models import TreatmentPlan
from tests.api.conftest import new_api_client
from tests.api.helpers import _all_at_once, _post
from tests.factories import PatientFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def setup(live_server, clinic, practitioner):
    plan_templates_load()
    key = new_api_client(clinic)[1]
    patient = PatientFactory(clinic=clinic)
    url = f"{live_server.url}/api/v1/patients/{patient.pk}/plans/"
    body = {"template": "microneedling-course", "start_from": "2026-03-09"}
    status, dry = _post(url, key, {**body, "dry_run": True})
    assert status == 200 and dry["feasible"], dry
    proposal = [{"start": s["start"], "practitioner": s["practitioner"]} for s in dry["sessions"]]
    return live_server, key, patient, url, {**body, "proposal": proposal}, dry


def _book_slot(live_server, key, clinic, start, practitioner):
    other = PatientFactory(clinic=clinic)
    body = {"patient": str(other.pk), "procedure": "botox", "start": start, "practitioner": str(practitioner.pk)}
    return _post(live_server.url + "/api/v1/appointments/", key, body)


def test_a_slot_taken_after_the_dry_run_refuses_the_plan_whole(setup, clinic, practitioner):
    live_server, key, patient, url, plan_body, dry = setup
    status, _ = _book_slot(live_server, key, clinic, dry["sessions"][2]["start"], practitioner)
    assert status == 201
    status, refused = _post(url, key, plan_body)
    assert status == 409 and refused["code"] == "plan_refused" and refused["session"] == 3
    assert not Appointment.objects.filter(patient=patient).exists()  # sessions 1 and 2 rolled back too
    assert not TreatmentPlan.objects.exists()


def test_a_plan_and_a_booking_racing_for_one_slot_one_wins_and_no_plan_is_half_booked(setup, clinic, practitioner):
    live_server, key, patient, url, plan_body, dry = setup
    slot = dry["sessions"][1]["start"]
    (plan_status, plan), (single_status, _) = _all_at_once(
        [lambda: _post(url, key, plan_body), lambda: _book_slot(live_server, key, clinic, slot, practitioner)]
    )
    assert sorted([plan_status, single_status]) == [201, 409]
    booked = Appointment.objects.filter(patient=patient, status=AppointmentStatus.CONFIRMED).count()
    assert booked == (3 if plan_status == 201 else 0)
    if plan_status == 409:
        assert plan["session"] == 2


def test_two_plans_at_once_for_one_practitioner_both_fit_without_overlap(live_server, clinic, practitioner):
    plan_templates_load()
    key = new_api_client(clinic)[1]
    patients = [PatientFactory(clinic=clinic) for _ in range(2)]
    body = {"template": "plasma-pen-course", "start_from": "2026-03-09"}
    results = _all_at_once(
        [lambda p=p: _post(f"{live_server.url}/api/v1/patients/{p.pk}/plans/", key, body) for p in patients]
    )
    assert [status for status, _ in results] == [201, 201], results
    starts = list(Appointment.objects.filter(practitioner=practitioner).values_list("start_at", flat=True))
    assert len(starts) == 4 and len(set(starts)) == 4
