"""Review probe of 0705fd9: a history record keeps the clinic that recorded it (ProcedureRecord.clinic, clinic
0018), whose zone gives the procedure its day (ProcedureRecord.dating_clinic, the timeline's Coalesce).

Probed: every other place that creates or copies ProcedureRecord rows (appointment completion, the desk, the API,
merges, setup_demo, the admin; fhir/ has no Procedure resource and copies none), whether each sets or keeps the
right clinic and shows the day where it was recorded; the admin (a clinic of another organisation, a tampered
clinic, a record added there); the API's `clinic` (idempotent replay, the OpenAPI schema, a very long value, a
JSON number, null, a sister site the caller does not reach, a tombstoned patient); migration 0018 forwards,
backwards and forwards again on both databases; the query counts of the history list, the desk's patient page
and history page against the number of records.

Found (5 December): the desk, the API, completion, merges and setup_demo set and keep the clinic; the migration
fills and reverses on both databases; the lists stay at a constant number of queries. Strict xfails then, all mended the same day:
- DEFECT: a record added in the patient's admin kept no clinic (the inline's fields had none, and nothing set it),
  so its day was read in the CURRENT home clinic's zone and a merge moved it: every new record now gets one on
  save (ProcedureRecord.save: the visit's clinic, else the home clinic as it is then);
- DEFECT: deleting the clinic that recorded a reported procedure emptied its clinic (on_delete=SET_NULL) and
  moved its day silently: now PROTECT, as an appointment's clinic (the admin says what stops the deletion);
- DEFECT: the API's `clinic` took a JSON number and its schema lacked the pattern of every other id: now an
  IdField, as a booking's;
- QUESTION: `"clinic": null` was a 400 here where a booking's null clinic means "left out": now left out too.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from clinic.merging import patient_merge
from clinic.models import Clinic, HistorySource, Patient, ProcedureRecord, StaffRole
from clinic.services import procedure_record_add
from core.errors import InvalidInput
from tests.api.conftest import http, new_api_client
from tests.factories import AppointmentFactory, ClinicFactory, PatientFactory, ProcedureRecordFactory
from tests.helpers import _leaves, _migrate
from tests.qa.helpers import NOW, form_on, staff_client, words

pytestmark = pytest.mark.django_db

NEW_YORK = ZoneInfo("America/New_York")
AUCKLAND = ZoneInfo("Pacific/Auckland")


@pytest.fixture
def ny(clinic):
    """A New York site of the London clinic's organisation."""
    return ClinicFactory(
        code="rv5g-ny", name="Sister NY", timezone="America/New_York", organisation=clinic.organisation
    )


@pytest.fixture
def akl(clinic):
    """An Auckland site of the London clinic's organisation."""
    return ClinicFactory(
        code="rv5g-akl", name="Sister AKL", timezone="Pacific/Auckland", organisation=clinic.organisation
    )


@pytest.fixture
def root():
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.create_superuser("rv5g-root", "root@rv5g.example", "pw-for-qa-only-123")
    client = Client()
    client.force_login(user)
    return client


def procedures_url(patient) -> str:
    return f"/api/v1/patients/{patient.pk}/procedures/"


def record(api, patient, key=None, **body):
    payload = {"procedure": "botox", "performed_at": "2026-02-20T23:30:00-05:00", "source": "reported", **body}
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return api.post(procedures_url(patient), payload, format="json", **headers)


def listed(api, patient) -> list[str]:
    answer = api.get(procedures_url(patient))
    assert answer.status_code == 200, answer.content
    return [row["performed_at"] for row in answer.json()["results"]]


def merge(merged: Patient, into: Patient) -> Patient:
    patient_merge(merged=merged, into=into, now=NOW, actor_label="rv5g clinician", clinical=True)
    return Patient.objects.select_related("clinic").get(pk=into.pk)


def desk_url(name: str, clinic, patient) -> str:
    return reverse(f"frontdesk:{name}", args=[clinic.code, patient.pk])


# --- Services: every writer sets the clinic, merges keep it ---------------------------------------------------


def test_the_service_records_for_the_home_clinic_unless_told_and_refuses_a_tombstone(clinic, ny, patient, clock):
    home = procedure_record_add(patient=patient, procedure_code="botox", performed_on=date(2026, 2, 20), now=NOW)
    assert home.clinic_id == clinic.pk and home.dating_clinic == clinic
    there = procedure_record_add(
        patient=patient, procedure_code="filler", performed_on=date(2026, 2, 20), now=NOW, clinic=ny
    )
    assert there.performed_at == datetime(2026, 2, 20, 23, 59, tzinfo=NEW_YORK)
    survivor = PatientFactory(clinic=clinic, first_name="Keep")
    merge(patient, survivor)
    with pytest.raises(InvalidInput) as refused:
        procedure_record_add(
            patient=patient, procedure_code="botox", performed_on=date(2026, 2, 21), now=NOW, clinic=ny
        )
    assert refused.value.code == "patient_merged"
    assert ProcedureRecord.objects.filter(patient=patient).count() == 0  # all moved, none added to the tombstone


def test_a_merge_keeps_each_records_clinic_and_every_reader_keeps_its_day(clinic, ny, akl, patient, clock):
    """A New York desk records 20 February (23:59 New York, 21 Feb 04:59 UTC), merged into a record whose home is
    Auckland: the record stays New York's, and the API, the Auckland desk's pages and the London desk's give
    20 February."""
    ny_desk = staff_client(ny, StaffRole.RECEPTIONIST, "rv5g-ny-desk")
    added = ny_desk.post(
        desk_url("procedure_add", ny, patient), {"record-procedure": "botox", "record-performed_on": "2026-02-20"}
    )
    assert added.status_code == 302, words(added)[:400]
    survivor = merge(patient, PatientFactory(clinic=akl, first_name="Aroha"))
    moved = ProcedureRecord.objects.get(patient=survivor)
    assert moved.clinic_id == ny.pk and moved.dating_clinic == ny
    assert listed(http(new_api_client(akl)[1]), survivor) == ["2026-02-20T23:59:00-05:00"]
    akl_desk = staff_client(akl, StaffRole.RECEPTIONIST, "rv5g-akl-desk")
    page = words(akl_desk.get(desk_url("patient", akl, survivor)))
    assert (
        "20 Feb 2026 Botulinum toxin injection (Botox) Reported" in page
        and "Reported by the patient · Sister NY" in page
    ), page
    history = words(akl_desk.get(desk_url("patient_history", akl, survivor)))
    assert "(Botox) · 20 Feb 2026" in history, history
    assert "21 Feb 2026" not in history


def test_the_desk_refuses_to_add_to_a_tombstone(clinic, ny, patient, clock):
    merge(patient, PatientFactory(clinic=clinic, first_name="Keep"))
    ny_desk = staff_client(ny, StaffRole.RECEPTIONIST, "rv5g-ny-desk")
    response = ny_desk.post(
        desk_url("procedure_add", ny, patient), {"record-procedure": "botox", "record-performed_on": "2026-02-20"}
    )
    assert response.status_code == 404, (response.status_code, words(response)[:300])  # nothing to add to
    assert not ProcedureRecord.objects.exists()


def test_setup_demo_gives_each_record_its_patients_clinic(db):
    call_command("setup_demo", "--staff-password", "pw-for-tests")
    records = list(ProcedureRecord.objects.select_related("patient"))
    assert records
    assert all(r.clinic_id is not None and r.clinic_id == r.patient.clinic_id for r in records)


def test_fhir_neither_exports_nor_imports_history(clinic, api):
    """fhir/ serves Schedule, Slot and Appointment only: no ProcedureRecord is read or written there."""
    from pathlib import Path

    import fhir

    sources = "".join(p.read_text() for p in Path(fhir.__file__).parent.glob("*.py"))
    assert "ProcedureRecord" not in sources and "procedure_record" not in sources
    assert "Procedure" not in {
        r["type"] for r in json.loads(http().get("/fhir/r4/metadata").content)["rest"][0]["resource"]
    }


# --- The admin ------------------------------------------------------------------------------------------------


def _admin_page(root, patient) -> tuple[str, dict]:
    page = reverse("admin:clinic_patient_change", args=[patient.pk])
    return page, form_on(root.get(page), page)


def test_the_admin_cannot_set_or_change_a_records_clinic(root, clinic, ny, other_clinic, patient, clock):
    """The inline has no clinic field: a clinic posted by hand (another organisation's) is ignored, the row's
    clinic stays the desk's that recorded it."""
    made = procedure_record_add(
        patient=patient, procedure_code="botox", performed_on=date(2026, 2, 20), now=NOW, clinic=ny
    )
    page, data = _admin_page(root, patient)
    assert not [name for name in data if name.endswith("-clinic") and name.startswith("procedure_records")]
    data["procedure_records-0-notes"] = "Checked."
    data["procedure_records-0-clinic"] = str(other_clinic.pk)
    response = root.post(page, data)
    assert response.status_code == 302, words(response)[:600]
    made.refresh_from_db()
    assert (made.notes, made.clinic_id) == ("Checked.", ny.pk)


def test_a_record_added_in_the_admin_keeps_its_day_through_a_merge(root, clinic, akl, clock):
    patient = PatientFactory(clinic=akl, first_name="Mere")
    page, data = _admin_page(root, patient)
    data.update(
        {
            "procedure_records-TOTAL_FORMS": "1",
            "procedure_records-0-procedure": "botox",
            "procedure_records-0-performed_at_0": "2026-02-28",
            "procedure_records-0-performed_at_1": "20:00:00",  # the admin's zone is UTC: 1 Mar 09:00 NZDT
            "procedure_records-0-source": "reported",
        }
    )
    response = root.post(page, data)
    assert response.status_code == 302, words(response)[:800]
    made = ProcedureRecord.objects.get(patient=patient)
    assert made.performed_at == datetime(2026, 2, 28, 20, tzinfo=UTC)
    survivor = merge(patient, PatientFactory(clinic=clinic, first_name="Mary"))
    assert listed(http(new_api_client(clinic)[1]), survivor) == ["2026-03-01T09:00:00+13:00"]


def test_deleting_the_recording_clinic_does_not_move_the_day(root, clinic, ny, patient, clock):
    made = procedure_record_add(
        patient=patient, procedure_code="botox", performed_on=date(2026, 2, 20), now=NOW, clinic=ny
    )
    response = root.post(reverse("admin:clinic_clinic_delete", args=[ny.pk]), {"post": "yes"})
    assert response.status_code in (200, 302)
    made.refresh_from_db()
    assert Clinic.objects.filter(pk=ny.pk).exists() and made.dating_clinic == ny


# --- The API ------------------------------------------------------------------------------------------------


def test_an_idempotent_replay_with_a_clinic_answers_the_same_and_a_changed_clinic_is_refused(
    clinic, ny, patient, clock
):
    api = http(new_api_client(clinic, ny)[1])
    first = record(api, patient, key="rv5g-1", clinic="rv5g-ny")
    assert first.status_code == 201, first.content
    assert first.json()["performed_at"] == "2026-02-20T23:30:00-05:00"
    again = record(api, patient, key="rv5g-1", clinic="rv5g-ny")
    assert (again.status_code, again.content) == (201, first.content)
    changed = record(api, patient, key="rv5g-1", clinic=str(clinic.pk))
    assert changed.status_code == 422 and changed.json()["code"] == "idempotency_key_reused"
    assert ProcedureRecord.objects.get().clinic_id == ny.pk


def test_the_schema_describes_the_optional_clinic(client):
    schema = json.loads(client.get("/api/v1/schema/?format=json").content)
    body = schema["components"]["schemas"]["ProcedureRecordInRequest"]
    field = body["properties"]["clinic"]
    assert field["type"] == "string" and field["maxLength"] == 64 and field.get("nullable") is True  # an id's
    assert "clinic" not in body.get("required", [])
    assert "id or code" in field["description"] and "day" in field["description"]
    post = schema["paths"]["/api/v1/patients/{patient_id}/procedures/"]["post"]
    assert "400" in post["responses"]


def test_bad_clinics_are_400s_naming_the_field(clinic, ny, other_clinic, patient, clock):
    api = http(new_api_client(clinic)[1])  # London only: the New York sister is not reached
    for value in ("x" * 101, "x" * 100, "rv5g-ny", str(ny.pk), "newyork", str(other_clinic.pk), "lon\x00don"):
        answer = record(api, patient, clinic=value)
        assert answer.status_code == 400, (value[:20], answer.content)
        assert "clinic" in answer.json()["errors"], answer.json()
    assert not ProcedureRecord.objects.exists()
    named = record(api, patient, clinic=" london ")  # JSON white space around it, as an id field trims
    assert named.status_code == 201, named.content


def test_a_number_is_no_clinic(clinic, patient, practitioner, clock):
    five = ClinicFactory(code="5", timezone="America/New_York", organisation=clinic.organisation)
    api = http(new_api_client(clinic, five)[1])
    booking = api.post(
        "/api/v1/appointments/",
        {"patient": str(patient.pk), "procedure": "botox", "start": "2026-03-10T10:00:00+00:00", "clinic": 5},
        format="json",
    )
    assert booking.status_code == 400 and "clinic" in booking.json()["errors"]
    answer = record(api, patient, clinic=5)
    assert answer.status_code == 400, answer.content
    assert not ProcedureRecord.objects.exists()


def test_the_schema_gives_the_clinic_the_pattern_of_every_id(client):
    schemas = json.loads(client.get("/api/v1/schema/?format=json").content)["components"]["schemas"]
    assert "pattern" in schemas["BookingInRequest"]["properties"]["clinic"]
    assert (
        schemas["ProcedureRecordInRequest"]["properties"]["clinic"].get("pattern")
        == schemas["BookingInRequest"]["properties"]["clinic"]["pattern"]
    )


def test_a_null_clinic_is_left_out_as_in_a_booking(clinic, patient, practitioner, clock):
    api = http(new_api_client(clinic)[1])
    booking = api.post(
        "/api/v1/appointments/",
        {"patient": str(patient.pk), "procedure": "botox", "start": "2026-03-10T10:00:00+00:00", "clinic": None},
        format="json",
    )
    assert booking.status_code == 201, booking.content
    answer = record(api, patient, clinic=None)
    assert answer.status_code == 201, answer.content


def test_a_post_to_a_tombstone_is_redirected_and_records_nothing(clinic, ny, patient, clock):
    survivor = merge(patient, PatientFactory(clinic=clinic, first_name="Keep"))
    api = http(new_api_client(clinic, ny)[1])
    for key in (None, "rv5g-tomb"):
        answer = record(api, patient, key=key, clinic="rv5g-ny")
        assert answer.status_code == 308, answer.content
        assert str(survivor.pk) in answer["Location"]
    assert not ProcedureRecord.objects.exists()
    there = record(api, survivor, key="rv5g-tomb", clinic="rv5g-ny")  # the key was not spent on the 308
    assert there.status_code == 201, there.content
    assert ProcedureRecord.objects.get().clinic_id == ny.pk


# --- Query counts ------------------------------------------------------------------------------------------


def _records(patient, ny, west, n: int, first: int) -> None:
    """`n` records of three kinds: reported at the New York sister, reported at home, a visit done at West."""
    for i in range(first, first + n):
        kind = i % 3
        if kind == 0:
            procedure_record_add(
                patient=patient, procedure_code="botox", performed_on=date(2025, 1, 1 + i), now=NOW, clinic=ny
            )
        elif kind == 1:
            procedure_record_add(patient=patient, procedure_code="filler", performed_on=date(2025, 1, 1 + i), now=NOW)
        else:
            visit = AppointmentFactory(
                patient=patient, clinic=west, status="completed", start_at=datetime(2025, 2, 1 + i, 10, tzinfo=UTC)
            )
            ProcedureRecordFactory(
                patient=patient,
                appointment=visit,
                clinic=west,
                performed_at=visit.start_at,
                source=HistorySource.CLINIC,
            )


def _count(fetch) -> int:
    with CaptureQueriesContext(connection) as seen:
        response = fetch()
    assert response.status_code == 200
    return len(seen)


def test_the_history_lists_stay_at_a_constant_number_of_queries(
    clinic, ny, west, patient, clock, django_assert_max_num_queries
):
    api = http(new_api_client(clinic)[1])
    desk = staff_client(clinic, StaffRole.RECEPTIONIST, "rv5g-desk")
    pages = {
        "api": lambda: api.get(procedures_url(patient)),
        "patient": lambda: desk.get(desk_url("patient", clinic, patient)),
        "history": lambda: desk.get(desk_url("patient_history", clinic, patient)),
    }
    _records(patient, ny, west, 3, first=0)
    for fetch in pages.values():
        fetch()  # warm: compiled statements, the session
    few = {name: _count(fetch) for name, fetch in pages.items()}
    _records(patient, ny, west, 9, first=3)
    assert ProcedureRecord.objects.filter(patient=patient).count() == 12
    for name, fetch in pages.items():
        with django_assert_max_num_queries(few[name]):
            fetch()
    rows = listed(api, patient)
    assert len(rows) == 12 and {row[-6:] for row in rows} == {"-05:00", "+00:00"}


# --- Migration 0018 --------------------------------------------------------------------------------------


BEFORE_0018 = [("clinic", "0017_shipped_short_names")]
AT = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


@pytest.mark.django_db(transaction=True)
def test_0018_fills_reverses_and_fills_again():
    old = _migrate(BEFORE_0018)
    org = old.get_model("clinic", "Organisation").objects.create(code="rv5g-chain", name="Chain")
    OldClinic = old.get_model("clinic", "Clinic")
    home = OldClinic.objects.create(code="rv5g-home", name="Home", timezone="Europe/London", organisation=org)
    sister = OldClinic.objects.create(code="rv5g-sis", name="Sister", timezone="Pacific/Auckland", organisation=org)
    OldPatient = old.get_model("clinic", "Patient")
    procedure = old.get_model("clinic", "ProcedureType").objects.get_or_create(
        code="botox", defaults={"name": "Botox", "duration_minutes": 30}
    )[0]
    survivor = OldPatient.objects.create(clinic=sister, organisation=org, first_name="Ada", last_name="Kept")
    tomb = OldPatient.objects.create(
        clinic=home, organisation=org, first_name="Ada", last_name="Gone", merged_into=survivor, merged_at=AT
    )
    OldRecord = old.get_model("clinic", "ProcedureRecord")
    on_tomb = OldRecord.objects.create(patient=tomb, procedure=procedure, performed_at=AT, source="reported")
    on_survivor = OldRecord.objects.create(patient=survivor, procedure=procedure, performed_at=AT, source="clinic")

    _migrate(_leaves())
    assert ProcedureRecord.objects.get(pk=on_tomb.pk).clinic_id == home.pk
    assert ProcedureRecord.objects.get(pk=on_survivor.pk).clinic_id == sister.pk

    back = _migrate(BEFORE_0018)  # the reverse must not fail
    assert back.get_model("clinic", "ProcedureRecord").objects.count() == 2
    columns = [
        c.name for c in connection.introspection.get_table_description(connection.cursor(), "clinic_procedurerecord")
    ]
    assert "clinic_id" not in columns

    _migrate(_leaves())
    assert set(ProcedureRecord.objects.values_list("pk", "clinic_id")) == {
        (on_tomb.pk, home.pk),
        (on_survivor.pk, sister.pk),
    }
    assert not ProcedureRecord.objects.filter(clinic__isnull=True).exists()
