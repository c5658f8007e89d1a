"""A history line a visit's completion wrote is that visit's outcome, kept as written by the model itself, whichever
path tries to remove or re-date it: the admin's inline said so first (clinic.forms.ProcedureRecordsFormSet), and a
bulk delete, a management command or a shell now meet the same refusal (clinic.models.ProcedureRecord). Its notes
may still change; a line the patient reported may be corrected or removed; a patient's removal (their visits first: an appointment protects its patient) takes the lot."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db.models import ProtectedError

from clinic.models import Appointment, AppointmentStatus, HistorySource, Patient, ProcedureRecord
from tests.factories import AppointmentFactory, ProcedureRecordFactory
from tests.qa.helpers import admin_errors, admin_post

pytestmark = pytest.mark.django_db

DONE_AT = datetime(2026, 3, 4, 10, tzinfo=UTC)


@pytest.fixture
def written(catalogue) -> ProcedureRecord:
    """The line as scheduler.booking.appointment_complete writes it."""
    visit = AppointmentFactory(start_at=DONE_AT, status=AppointmentStatus.COMPLETED)
    return ProcedureRecord.objects.create(
        patient=visit.patient,
        procedure_id=visit.procedure_id,
        performed_at=visit.start_at,
        area=None,
        source=HistorySource.CLINIC,
        appointment=visit,
        clinic=visit.clinic,
    )


@pytest.fixture
def reported(written) -> ProcedureRecord:
    return ProcedureRecordFactory(patient=written.patient, performed_at=DONE_AT - timedelta(days=200))


def test_the_line_itself_cannot_be_removed(written):
    with pytest.raises(ProtectedError, match="visit's outcome"):
        written.delete()
    assert ProcedureRecord.objects.filter(pk=written.pk).exists()


def test_a_bulk_delete_that_takes_it_in_removes_nothing(written, reported):
    with pytest.raises(ProtectedError, match="visit's outcome"):
        ProcedureRecord.objects.filter(patient=written.patient).delete()
    assert set(ProcedureRecord.objects.filter(patient=written.patient)) == {written, reported}


def test_a_reported_line_may_still_be_removed_one_at_a_time_or_in_bulk(written, reported):
    reported.delete()
    ProcedureRecordFactory(patient=written.patient, performed_at=DONE_AT - timedelta(days=100))
    assert ProcedureRecord.objects.filter(appointment__isnull=True).delete()[0] == 1
    assert list(ProcedureRecord.objects.filter(patient=written.patient)) == [written]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("performed_at", DONE_AT + timedelta(days=1)),
        ("procedure_id", "microneedling"),
        ("area_id", "face"),
        ("source", HistorySource.REPORTED),
        ("appointment", None),
    ],
)
def test_its_outcome_fields_are_kept_as_written(written, field, value):
    before = ProcedureRecord.objects.values().get(pk=written.pk)
    setattr(written, field, value)
    with pytest.raises(ValidationError, match="visit's outcome") as refused:
        written.save()
    assert set(refused.value.message_dict) == {field.removesuffix("_id")}
    with pytest.raises(ValidationError):
        written.save(update_fields=[field.removesuffix("_id")])
    assert ProcedureRecord.objects.values().get(pk=written.pk) == before


def test_its_notes_may_change_and_cost_one_read_only_when_an_outcome_field_may_have(written, django_assert_num_queries):
    written.notes = "Mild bruising at the glabella, settled in a week."
    with django_assert_num_queries(1):  # the update alone: no outcome field is written
        written.save(update_fields=["notes"])
    written.notes += " Reviewed."
    with django_assert_num_queries(2):  # the stored outcome read, then the update
        written.save()
    assert ProcedureRecord.objects.get(pk=written.pk).notes.endswith("Reviewed.")


def test_a_reported_line_may_be_corrected(reported):
    reported.performed_at += timedelta(days=3)
    reported.save()
    assert ProcedureRecord.objects.get(pk=reported.pk).performed_at == reported.performed_at


def test_a_patients_removal_is_refused_while_they_have_history(written, reported):
    """The visit may go (its line stays, no longer its outcome); the patient may not while history is recorded: a
    clinical record is not deleted with its patient (PROTECT), on the bulk path as on the instance's."""
    patient = written.patient
    Appointment.objects.filter(patient=patient).delete()
    assert ProcedureRecord.objects.get(pk=written.pk).appointment_id is None
    with pytest.raises(ProtectedError):
        Patient.objects.filter(pk=patient.pk).delete()
    with pytest.raises(ProtectedError):
        patient.delete()
    assert set(ProcedureRecord.objects.filter(patient_id=patient.pk).values_list("pk", flat=True)) == {
        written.pk,
        reported.pk,
    }


def test_an_unchanged_value_given_as_text_is_no_change(written):
    row = ProcedureRecord.objects.get(pk=written.pk)
    row.appointment_id = str(row.appointment_id)
    row.performed_at = row.performed_at.isoformat()
    row.notes = "Reviewed."
    row.save()
    assert ProcedureRecord.objects.get(pk=written.pk).notes == "Reviewed."


@pytest.mark.parametrize("moment", [DONE_AT, DONE_AT.replace(second=30), DONE_AT.replace(microsecond=123456)])
def test_the_admins_patient_page_saves_its_notes_and_keeps_its_time_to_the_microsecond(admin_client, written, moment):
    """The admin draws the line's fields disabled, and a disabled time comes back from its form without its
    microseconds: the line keeps its time as stored (clinic.forms.ProcedureRecordsFormSet), its notes saved."""
    ProcedureRecord.objects.filter(pk=written.pk).update(performed_at=moment)
    admin_client.raise_request_exception = False
    notes = {"notes": "Mild bruising, settled."}
    response = admin_post(admin_client, written.patient, edit={written.pk: notes})
    assert response.status_code == 302, admin_errors(response)
    kept = ProcedureRecord.objects.get(pk=written.pk)
    assert (kept.notes, kept.performed_at, kept.appointment_id) == (
        "Mild bruising, settled.",
        moment,
        written.appointment_id,
    )
