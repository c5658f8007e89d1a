"""A request's scope (api.access.Caller) is read once and named by id, or kept as a subquery for a caller granted
more clinics than SCOPE_INLINE_MAX: the same answers either way, and nothing outside it is found."""

from datetime import UTC, datetime

import pytest
from django.db import connections

from api import access
from clinic.models import Appointment
from tests.api.conftest import http, new_api_client, problem_of, session
from tests.api.helpers import book

pytestmark = pytest.mark.django_db


@pytest.fixture(params=[access.SCOPE_INLINE_MAX, 0], ids=["ids", "subquery"])
def inline_max(request, monkeypatch):
    # The scope's read is compiled once per connection with the limit of that moment (core.compiled keeps it on
    # the connection): forgotten on the way in and out, or a LIMIT 1 compiled here would cut every later test's
    # scope on this connection to one clinic (a sister site opened later "not found").
    connections["default"].__dict__.pop("_compiled_queries", None)
    monkeypatch.setattr(access, "SCOPE_INLINE_MAX", request.param)
    yield request.param
    connections["default"].__dict__.pop("_compiled_queries", None)


def test_a_platform_sees_and_books_only_within_its_scope(inline_max, api, patient, practitioner, other_patient):
    assert api.get(f"/api/v1/patients/{patient.pk}/").status_code == 200
    assert api.get(f"/api/v1/patients/{other_patient.pk}/").status_code == 404
    created = book(api, patient)
    assert created.status_code == 201, created.content
    assert [a["id"] for a in api.get("/api/v1/appointments/").json()["results"]] == [created.json()["id"]]
    assert problem_of(book(api, other_patient), 400)["errors"] == {"patient": ["There is no such patient."]}
    assert Appointment.objects.count() == 1


def test_no_clinic_granted_is_refused_either_way(inline_max, clinic):
    client, key = new_api_client()
    assert http(key).get("/api/v1/patients/").status_code == 403


def test_a_staff_members_scope_too(inline_max, receptionist, patient, practitioner, other_patient):
    api = session(receptionist)
    assert api.get(f"/api/v1/patients/{patient.pk}/").status_code == 200
    assert api.get(f"/api/v1/patients/{other_patient.pk}/").status_code == 404


def test_the_scope_is_read_once_per_request(api, patient, practitioner, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        assert book(api, patient).status_code == 201
    scope_reads = [q["sql"] for q in queries.captured_queries if "api_apiclient_clinics" in q["sql"]]
    assert len(scope_reads) == 1


def test_where_and_with_whom_are_named_before_when(api, patient, practitioner, other_practitioner):
    past = "2026-03-01T10:00:00+00:00"  # the clock is 2 March: this start is past as well
    assert problem_of(book(api, patient, start=past, clinic="nowhere"), 400)["code"] == "unknown_clinic"
    body = problem_of(book(api, patient, start=past, practitioner=str(other_practitioner.pk)), 400)
    assert body["code"] == "unknown_practitioner"
    assert problem_of(book(api, patient, start=past), 400)["code"] == "start_in_past"


def test_a_desk_bound_to_its_clinic_learns_nothing_of_other_clinics(patient, practitioner, now):
    """A caller that chose the clinic itself (the front desk, a patient's page: no `within`) is told the practitioner
    is not there, and a clinic of another organisation is unknown to it."""
    from clinic.models import Clinic
    from core.errors import InvalidInput
    from scheduler import booking
    from tests.factories import ClinicFactory, PractitionerFactory

    west = Clinic.objects.create(code="west", name="West", timezone="Europe/London", organisation=patient.organisation)
    colleague = PractitionerFactory(clinic=west, name="Dr West")
    stranger_clinic = ClinicFactory(code="stranger")
    start = datetime(2026, 3, 3, 10, tzinfo=UTC)

    def refusal(**where) -> tuple[str, str]:
        with pytest.raises(InvalidInput) as refused:
            booking.appointment_check(patient=patient, procedure_code="botox", start_at=start, now=now, **where)
        return refused.value.code, refused.value.field

    assert refusal(clinic_id=patient.clinic_id, practitioner_id=colleague.pk) == (
        "unknown_practitioner",
        "practitioner",
    )
    assert refusal(clinic_id="stranger") == ("unknown_clinic", "clinic")
    assert refusal(clinic_id=str(stranger_clinic.pk), practitioner_id=practitioner.pk) == ("unknown_clinic", "clinic")
