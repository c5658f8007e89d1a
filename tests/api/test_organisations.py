"""Organisations (contract "v1 additions"): one record per patient across an organisation's clinics,
appointments acted on only at the clinics a caller was granted, anything of another organisation a 404."""

from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from clinic.models import ApiClient, Appointment, AppointmentStatus, Organisation
from tests.api.conftest import http, new_api_client, problem_of
from tests.factories import (
    ClinicFactory,
    MedicationCourseFactory,
    PractitionerFactory,
    ProcedureRecordFactory,
)

pytestmark = pytest.mark.django_db

TUESDAY_10 = "2026-03-03T10:00:00+00:00"
FRIDAY_10 = "2026-03-06T10:00:00+00:00"


def org_client(organisation) -> tuple[ApiClient, str]:
    client, key = new_api_client()
    client.organisations.set([organisation])
    return client, key


def book(api, patient, procedure="microneedling", start=TUESDAY_10, **extra):
    return api.post(
        "/api/v1/appointments/",
        {"patient": str(patient.pk), "procedure": procedure, "start": start, **extra},
        format="json",
    )


def test_a_clinic_made_alone_is_an_organisation_of_one(clinic, other_clinic):
    assert clinic.organisation.code == "london" and clinic.organisation.name == "London Clinic"
    assert clinic.organisation_id != other_clinic.organisation_id


def test_organisations_lists_those_in_scope(clinic, west, other_clinic):
    body = http(new_api_client(west)[1]).get("/api/v1/organisations/").json()
    assert [row["code"] for row in body["results"]] == ["london"]
    assert body["results"][0] == {"id": str(clinic.organisation_id), "code": "london", "name": "London Clinic"}
    both = http(new_api_client(clinic, other_clinic)[1]).get("/api/v1/organisations/").json()
    assert sorted(row["code"] for row in both["results"]) == ["london", "newyork"]


def test_an_organisation_grant_reaches_every_clinic_now_and_later(clinic, west, other_clinic):
    _, key = org_client(clinic.organisation)
    api = http(key)
    codes = lambda: sorted(row["code"] for row in api.get("/api/v1/clinics/").json()["results"])  # noqa: E731
    assert codes() == ["london", "west"]
    ClinicFactory(code="east", organisation=clinic.organisation)
    assert codes() == ["east", "london", "west"]
    assert all(
        row["organisation"] == str(clinic.organisation_id) for row in api.get("/api/v1/clinics/").json()["results"]
    )


def test_the_record_is_shared_by_every_clinic_of_the_organisation(clinic, west, patient, other_patient):
    ProcedureRecordFactory(patient=patient, procedure_id="botox", performed_at=datetime(2026, 2, 1, 10, tzinfo=UTC))
    MedicationCourseFactory(patient=patient, drug_id="isotretinoin", started_on="2025-01-01", ended_on="2025-06-01")
    api = http(new_api_client(west)[1])  # granted only the other site
    body = api.get(f"/api/v1/patients/{patient.pk}/").json()
    assert body["clinic"] == str(clinic.pk) and body["organisation"] == str(clinic.organisation_id)
    assert [row["procedure"] for row in api.get(f"/api/v1/patients/{patient.pk}/procedures/").json()["results"]] == [
        "botox"
    ]
    assert api.get(f"/api/v1/patients/{patient.pk}/medications/").json()["count"] == 1
    listed = [row["id"] for row in api.get("/api/v1/patients/").json()["results"]]
    assert listed == [str(patient.pk)]
    # Another organisation's patient does not exist for this caller.
    assert api.get(f"/api/v1/patients/{other_patient.pk}/").status_code == 404
    assert api.get(f"/api/v1/patients/{other_patient.pk}/procedures/").status_code == 404


def test_appointments_are_listed_and_acted_on_only_at_granted_clinics(clinic, west, patient, practitioner):
    london = http(new_api_client(clinic)[1])
    booked = book(london, patient)
    assert booked.status_code == 201, booked.content
    appointment_id = booked.json()["id"]
    west_api = http(new_api_client(west)[1])
    assert west_api.get("/api/v1/appointments/").json()["count"] == 0
    assert west_api.get(f"/api/v1/appointments/{appointment_id}/").status_code == 404
    assert west_api.post(f"/api/v1/appointments/{appointment_id}/cancel/", {}, format="json").status_code == 404
    assert Appointment.objects.get(pk=appointment_id).status == AppointmentStatus.CONFIRMED


def test_an_appointment_at_another_clinic_counts_and_the_refusal_names_it(
    clinic, west, patient, practitioner, west_practitioner
):
    botox = book(http(new_api_client(clinic)[1]), patient, procedure="botox", start=TUESDAY_10)
    assert botox.status_code == 201, botox.content
    # Microneedling three days after the Botox booked at London: refused at West, naming London's booking.
    body = problem_of(book(http(new_api_client(west)[1]), patient, start=FRIDAY_10), 409)
    [violation] = [v for v in body["violations"] if v["kind"] == "interval"]
    assert violation["severity"] == "block"
    assert violation["conflicts_with"] == {
        "id": botox.json()["id"],
        "kind": "procedure",
        "code": "botox",
        "at": TUESDAY_10,
        "clinic": str(clinic.pk),
    }
    assert not Appointment.objects.filter(clinic=west).exists()


def test_patient_busy_at_another_clinic_names_it(clinic, west, patient, practitioner, west_practitioner):
    assert book(http(new_api_client(clinic)[1]), patient, procedure="botox").status_code == 201
    body = problem_of(book(http(new_api_client(west)[1]), patient, procedure="filler"), 409)
    [busy] = [v for v in body["violations"] if v["code"] == "patient_busy"]
    assert busy["conflicts_with"]["clinic"] == str(clinic.pk)


def test_where_a_booking_takes_place(clinic, west, patient, practitioner, west_practitioner):
    api = http(org_client(clinic.organisation)[1])
    # Nothing named: the patient's home clinic.
    home = book(api, patient, procedure="botox")
    assert home.status_code == 201 and home.json()["clinic"] == str(clinic.pk)
    # `clinic` names the site; a practitioner is chosen there.
    there = book(api, patient, procedure="filler", start="2026-03-10T10:00:00+00:00", clinic="west")
    assert there.status_code == 201, there.content
    assert there.json()["clinic"] == str(west.pk) and there.json()["practitioner"] == str(west_practitioner.pk)
    # A practitioner alone: their clinic.
    named = book(
        api, patient, procedure="filler", start="2026-03-17T10:00:00+00:00", practitioner=str(west_practitioner.pk)
    )
    assert named.status_code == 201 and named.json()["clinic"] == str(west.pk)
    # A practitioner of another site than the clinic named: 400, nothing booked.
    before = Appointment.objects.count()
    body = problem_of(
        book(api, patient, start="2026-03-24T10:00:00+00:00", clinic="west", practitioner=str(practitioner.pk)), 400
    )
    assert body["code"] == "clinic_mismatch" and "clinic" in body["errors"]
    assert Appointment.objects.count() == before


def test_a_caller_with_one_site_books_there_for_a_patient_of_another_site(clinic, west, patient, west_practitioner):
    api = http(new_api_client(west)[1])
    response = book(api, patient, procedure="botox")
    assert response.status_code == 201, response.content
    assert response.json()["clinic"] == str(west.pk)


def test_a_clinic_of_another_organisation_is_refused(clinic, other_clinic, patient, practitioner, other_practitioner):
    api = http(new_api_client(clinic, other_clinic)[1])
    body = problem_of(book(api, patient, clinic="newyork"), 400)
    assert body["code"] == "clinic_mismatch"
    body = problem_of(book(api, patient, practitioner=str(other_practitioner.pk)), 400)
    assert "practitioner" in body["errors"]
    assert not Appointment.objects.exists()


def test_a_caller_reaching_several_sites_but_not_the_home_one_must_say_which(clinic, west, patient):
    east = ClinicFactory(code="east", organisation=clinic.organisation)
    PractitionerFactory(clinic=west)
    PractitionerFactory(clinic=east)
    api = http(new_api_client(west, east)[1])
    body = problem_of(book(api, patient, procedure="botox"), 400)
    assert body["code"] == "clinic_required" and "clinic" in body["errors"]
    assert book(api, patient, procedure="botox", clinic="east").json()["clinic"] == str(east.pk)


def test_availability_at_another_site(clinic, west, patient, practitioner, west_practitioner):
    api = http(org_client(clinic.organisation)[1])
    params = {"patient": str(patient.pk), "procedure": "botox", "clinic": "west", "to": "2026-03-04T00:00:00+00:00"}
    slots = api.get("/api/v1/availability/", params).json()["results"]
    assert slots and {slot["practitioner"] for slot in slots} == {str(west_practitioner.pk)}


def test_a_patient_created_at_a_site_joins_its_organisation(clinic, west):
    api = http(new_api_client(west)[1])
    response = api.post("/api/v1/patients/", {"first_name": "New", "last_name": "Person"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["organisation"] == str(clinic.organisation_id)
    assert response.json()["clinic"] == str(west.pk)


def test_create_api_client_for_an_organisation(clinic, west, other_clinic):
    out = StringIO()
    call_command("create_api_client", "Chain platform", "--organisation", "london", stdout=out)
    client = ApiClient.objects.get(name="Chain platform")
    assert list(client.organisations.all()) == [clinic.organisation]
    key = out.getvalue().strip().splitlines()[-1]
    assert sorted(r["code"] for r in http(key).get("/api/v1/clinics/").json()["results"]) == ["london", "west"]


def test_create_api_client_refuses_an_unknown_organisation_or_no_grant(clinic):
    with pytest.raises(CommandError, match="nowhere"):
        call_command("create_api_client", "X", "--organisation", "nowhere", stdout=StringIO())
    with pytest.raises(CommandError, match="at least one"):
        call_command("create_api_client", "Y", stdout=StringIO())
    assert not ApiClient.objects.exists()
    assert Organisation.objects.filter(code="london").exists()


# --- The history a site records: its day is that site's (docs/rules.md) ------------------------------------------


def record(api, patient, **body):
    payload = {"procedure": "botox", "performed_at": "2026-03-01T22:00:00-05:00", "source": "clinic", **body}
    return api.post(f"/api/v1/patients/{patient.pk}/procedures/", payload, format="json")


def test_a_sister_sites_platform_records_a_procedure_on_that_sites_day(clinic, patient):
    """A New York site's only platform records a visit (no `clinic` named): the record is that site's, answered in
    its offset, and its day is New York's 1 March, not London's 2 March."""
    from clinic.models import ProcedureRecord

    ny = ClinicFactory(code="ny-site", timezone="America/New_York", organisation=clinic.organisation)
    answer = record(http(new_api_client(ny)[1]), patient)
    assert answer.status_code == 201, answer.content
    assert answer.json()["performed_at"] == "2026-03-01T22:00:00-05:00"
    stored = ProcedureRecord.objects.get(pk=answer.json()["id"])
    assert stored.clinic_id == ny.pk and stored.dating_clinic == ny
    listed = http(new_api_client(clinic)[1]).get(f"/api/v1/patients/{patient.pk}/procedures/").json()["results"]
    assert [row["performed_at"] for row in listed] == ["2026-03-01T22:00:00-05:00"]  # the same to every caller


def test_the_recording_clinic_is_the_named_one_else_the_home_one(clinic, west, patient):
    from clinic.models import ProcedureRecord

    akl = ClinicFactory(code="akl-site", timezone="Pacific/Auckland", organisation=clinic.organisation)
    org_api = http(org_client(clinic.organisation)[1])
    named = record(org_api, patient, clinic="akl-site")
    assert named.status_code == 201, named.content
    assert named.json()["performed_at"] == "2026-03-02T16:00:00+13:00"
    assert ProcedureRecord.objects.get(pk=named.json()["id"]).clinic_id == akl.pk
    by_id = record(org_api, patient, clinic=str(west.pk))
    assert ProcedureRecord.objects.get(pk=by_id.json()["id"]).clinic_id == west.pk
    unnamed = record(org_api, patient)  # the caller reaches the home clinic
    assert ProcedureRecord.objects.get(pk=unnamed.json()["id"]).clinic_id == clinic.pk
    # Several sister sites, not the home one, none named: the home clinic (a booking would have to say which).
    several = record(http(new_api_client(west, akl)[1]), patient)
    assert several.status_code == 201, several.content
    assert ProcedureRecord.objects.get(pk=several.json()["id"]).clinic_id == clinic.pk


def test_a_recording_clinic_not_the_callers_or_of_another_organisation_is_refused(clinic, west, other_clinic, patient):
    from clinic.models import ProcedureRecord

    api = http(new_api_client(clinic, other_clinic)[1])
    assert problem_of(record(api, patient, clinic="newyork"), 400)["code"] == "clinic_mismatch"
    assert "clinic" in problem_of(record(api, patient, clinic="west"), 400)["errors"]  # a sister it does not reach
    assert "clinic" in problem_of(record(api, patient, clinic="nowhere"), 400)["errors"]
    assert "clinic" in problem_of(record(api, patient, clinic=""), 400)["errors"]
    assert not ProcedureRecord.objects.exists()
