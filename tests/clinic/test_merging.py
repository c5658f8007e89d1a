"""Merging two records of one patient (clinic/merging.py): everything moves, consent stays strict,
the merged timeline is re-checked, the merge is recorded, and bad merges are refused clearly."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from clinic.merging import MergeConflict, patient_merge
from clinic.models import (
    AppointmentStatus,
    AuditEvent,
    Clinic,
    MedicationCourse,
    Patient,
    PatientCondition,
    PatientMerge,
    ProcedureRecord,
)
from clinic.selectors import merged_patient_survivor, merged_patient_survivors, patients_in
from core.errors import ErrorCode, InvalidInput, NotAllowed, NotFound
from reminders.models import ContactOptOut, OutboxMessage
from scheduler.booking import Actor, appointment_book
from tests.factories import (
    ClinicFactory,
    MedicationCourseFactory,
    PatientConditionFactory,
    PatientFactory,
    PractitionerFactory,
    ProcedureRecordFactory,
)

pytestmark = pytest.mark.django_db

LONDON = ZoneInfo("Europe/London")
RECEPTION = Actor("reception@test")


def local(y, m, d, hh=10):
    return datetime(y, m, d, hh, tzinfo=LONDON)


@pytest.fixture
def clinic(catalogue):
    return ClinicFactory(code="london", timezone="Europe/London")


@pytest.fixture
def practitioner(clinic):
    return PractitionerFactory(clinic=clinic, name="Dr A")


@pytest.fixture
def survivor(clinic):
    return PatientFactory(
        clinic=clinic,
        first_name="Olivia",
        last_name="Bennett",
        email="olivia@example.com",
        phone="",
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )


@pytest.fixture
def duplicate(clinic):
    return PatientFactory(
        clinic=clinic,
        first_name="Olivia",
        last_name="Benett",
        email="",
        phone="+447911123101",
        date_of_birth=date(1985, 6, 18),
        reminder_channels=["email"],
        sms_consent=False,
        muted_topics=["care"],
    )


def merge(duplicate, survivor, now, **kwargs):
    return patient_merge(
        merged=duplicate, into=survivor, now=now, actor_label="dr@test", clinical=kwargs.pop("clinical", True), **kwargs
    )


def test_everything_moves_to_the_survivor_and_the_other_becomes_a_tombstone(
    clinic, practitioner, survivor, duplicate, now
):
    ProcedureRecordFactory(patient=duplicate, procedure_id="filler", performed_at=local(2026, 1, 5))
    MedicationCourseFactory(patient=duplicate, drug_id="isotretinoin", started_on=date(2025, 1, 1))
    PatientConditionFactory(patient=duplicate, condition_id="eczema", status="history")
    booked = appointment_book(
        patient=duplicate, procedure_code="botox", start_at=local(2026, 3, 20), actor=RECEPTION, now=now
    ).appointment
    ContactOptOut.objects.create(patient=duplicate, channel="sms", via="sms_stop", at=now)

    record = merge(duplicate, survivor, now)

    assert ProcedureRecord.objects.get().patient == survivor
    assert MedicationCourse.objects.get().patient == survivor
    assert PatientCondition.objects.get().patient == survivor
    booked.refresh_from_db()
    assert booked.patient == survivor
    assert AuditEvent.objects.filter(appointment=booked, action="booked").exists()  # its trail came with it
    assert ContactOptOut.objects.get(via="sms_stop").patient == survivor
    # The survivor had agreed to texts and the other record had not: the merge says so in an opt-out of its own
    # (reminders.consent.merge_consent_record), which a START does not undo.
    assert ContactOptOut.objects.get(via="merge").patient == survivor
    duplicate.refresh_from_db()
    assert (duplicate.merged_into, duplicate.merged_at) == (survivor, now)
    assert set(patients_in(Clinic.objects.filter(pk=clinic.pk))) == {survivor}
    assert merged_patient_survivor(Clinic.objects.filter(pk=clinic.pk), duplicate.pk) == survivor
    assert (record.merged, record.into, record.at, record.actor_label) == (duplicate, survivor, now, "dr@test")
    assert record.details["moved"]["clinic.appointment"] == 1
    assert record.details["moved"]["reminders.contactoptout"] == 1


def test_a_tombstone_is_found_by_its_id_however_the_caller_writes_it(clinic, survivor, duplicate, now):
    """A caller holding the id as text (a query string, a form) finds the survivor as one holding a UUID does, each
    answer keyed by the id as given; an id that is no UUID is no tombstone rather than an error. (Keyed by the UUID
    alone, the text was silently answered "not merged".)"""
    merge(duplicate, survivor, now)
    clinics = Clinic.objects.filter(pk=clinic.pk)
    as_text, as_upper = str(duplicate.pk), str(duplicate.pk).upper()
    found = merged_patient_survivors(clinics, [duplicate.pk, as_text, as_upper, "not-an-id", survivor.pk])
    assert found == {duplicate.pk: survivor, as_text: survivor, as_upper: survivor}
    assert merged_patient_survivor(clinics, as_text) == survivor
    assert merged_patient_survivors(clinics, ["not-an-id"]) == {}


def test_consent_takes_the_stricter_of_the_two_and_missing_details_are_filled(survivor, duplicate, now):
    merge(duplicate, survivor, now)
    survivor.refresh_from_db()
    assert survivor.reminder_channels == ["email"]  # sms was not chosen on the other record
    assert survivor.sms_consent is False  # only if both consented
    assert survivor.muted_topics == ["care"]  # switched off anywhere stays off
    assert survivor.phone == "+447911123101" and survivor.date_of_birth == date(1985, 6, 18)
    assert survivor.email == "olivia@example.com"  # the survivor's own detail is kept


def test_the_merged_timeline_is_rechecked_in_the_same_transaction(practitioner, survivor, duplicate, now):
    ProcedureRecordFactory(patient=survivor, procedure_id="botox", performed_at=local(2026, 3, 1))
    microneedling = appointment_book(
        patient=duplicate, procedure_code="microneedling", start_at=local(2026, 3, 4), actor=RECEPTION, now=now
    ).appointment
    assert microneedling.status == AppointmentStatus.CONFIRMED

    merge(duplicate, survivor, now)

    microneedling.refresh_from_db()
    assert microneedling.status == AppointmentStatus.NEEDS_REVIEW
    assert microneedling.review_reasons[0]["conflicts_with"]["code"] == "botox"
    audit = AuditEvent.objects.get(appointment=microneedling, action="needs_review")
    assert audit.reason == f"merge: record {duplicate.pk} merged in"


def test_conflicting_intake_lines_need_a_decision(survivor, duplicate, now):
    PatientConditionFactory(patient=survivor, condition_id="pregnancy", status="history")
    PatientConditionFactory(patient=duplicate, condition_id="pregnancy", status="active")
    PatientConditionFactory(patient=duplicate, condition_id="eczema", status="history")

    with pytest.raises(MergeConflict) as refused:
        merge(duplicate, survivor, now)
    assert refused.value.conflicts == [
        {
            "kind": "intake",
            "condition": "pregnancy",
            "area": None,
            "statuses": {str(survivor.pk): "history", str(duplicate.pk): "active"},
        }
    ]
    assert Patient.objects.get(pk=duplicate.pk).merged_into is None  # nothing happened

    record = merge(duplicate, survivor, now, intake={("pregnancy", None): "active"})
    lines = {(row.condition_id, row.status) for row in PatientCondition.objects.filter(patient=survivor)}
    assert lines == {("pregnancy", "active"), ("eczema", "history")}
    assert record.details["intake"]["decisions"] == [{"condition": "pregnancy", "area": None, "status": "active"}]


def test_overlapping_active_appointments_must_be_settled_first(clinic, survivor, duplicate, now):
    first = appointment_book(
        patient=survivor,
        procedure_code="botox",
        start_at=local(2026, 3, 20),
        actor=RECEPTION,
        now=now,
        practitioner_id=PractitionerFactory(clinic=clinic).pk,
    ).appointment
    second = appointment_book(
        patient=duplicate,
        procedure_code="botox",
        start_at=local(2026, 3, 20),
        actor=RECEPTION,
        now=now,
        practitioner_id=PractitionerFactory(clinic=clinic).pk,
    ).appointment
    with pytest.raises(MergeConflict) as refused:
        merge(duplicate, survivor, now)
    assert refused.value.conflicts == [{"kind": "appointment_overlap", "appointments": [str(first.pk), str(second.pk)]}]


def test_an_earlier_tombstone_is_repointed_to_the_new_survivor(clinic, survivor, duplicate, now):
    oldest = PatientFactory(clinic=clinic)
    merge(oldest, duplicate, now)
    merge(duplicate, survivor, now)
    oldest.refresh_from_db()
    assert oldest.merged_into == survivor


def test_bad_merges_are_refused_clearly(clinic, survivor, duplicate, now):
    with pytest.raises(InvalidInput) as into_itself:
        merge(survivor, survivor, now)
    assert into_itself.value.code == ErrorCode.MERGE_INTO_SELF

    elsewhere = PatientFactory(clinic=ClinicFactory(code="nyc"))
    with pytest.raises(NotFound):
        merge(duplicate, elsewhere, now)

    with pytest.raises(NotAllowed):
        merge(duplicate, survivor, now, clinical=False)

    merge(duplicate, survivor, now)
    third = PatientFactory(clinic=clinic)
    with pytest.raises(InvalidInput) as into_tombstone:
        merge(third, Patient.objects.get(pk=duplicate.pk), now)
    assert into_tombstone.value.code == ErrorCode.PATIENT_MERGED and into_tombstone.value.field == "into"
    with pytest.raises(InvalidInput) as from_tombstone:
        merge(duplicate, third, now)
    assert from_tombstone.value.code == ErrorCode.PATIENT_MERGED
    assert PatientMerge.objects.count() == 1


def test_outbox_rows_follow_their_appointment(practitioner, survivor, duplicate, now):
    from reminders.defaults import care_texts_load

    care_texts_load()
    duplicate.email, duplicate.reminder_channels = "dup@example.com", ["email"]
    duplicate.save()
    booked = appointment_book(
        patient=duplicate, procedure_code="botox", start_at=local(2026, 3, 20), actor=RECEPTION, now=now
    ).appointment
    queued = set(OutboxMessage.objects.filter(appointment=booked).values_list("pk", flat=True))
    assert queued
    merge(duplicate, survivor, now)
    assert set(OutboxMessage.objects.filter(appointment__patient=survivor).values_list("pk", flat=True)) == queued


def test_nothing_is_booked_or_recorded_on_a_tombstone(practitioner, survivor, duplicate, now):
    stale = Patient.objects.get(pk=duplicate.pk)  # read before the merge, as a racing request would have
    merge(duplicate, survivor, now)
    with pytest.raises(InvalidInput) as booking:
        appointment_book(patient=stale, procedure_code="botox", start_at=local(2026, 3, 20), actor=RECEPTION, now=now)
    assert booking.value.code == ErrorCode.PATIENT_MERGED and str(survivor.pk) in booking.value.message
    from clinic.services import procedure_record_add

    with pytest.raises(InvalidInput):
        procedure_record_add(patient=stale, procedure_code="botox", performed_at=local(2026, 2, 1), now=now)
    assert not survivor.appointments.exists() and not ProcedureRecord.objects.exists()


def test_an_unsubscribe_link_of_a_merged_record_opts_out_the_survivor(survivor, duplicate, now):
    from reminders.consent import unsubscribe_token, unsubscribe_token_read

    token = unsubscribe_token(patient_id=duplicate.pk)
    merge(duplicate, survivor, now)
    patient, channel = unsubscribe_token_read(token)
    assert (patient, channel) == (survivor, "email")
