"""Patient-record services: validation with the offending field, and effects on the rules."""

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from clinic import record_changes
from clinic.models import Patient, PatientCondition
from clinic.services import (
    IntakeLine,
    conditions_replace,
    medication_course_add,
    medication_course_end,
    patient_create,
    patient_record_edited,
    patient_update,
    procedure_record_add,
)
from core.errors import InvalidInput
from scheduler.booking import appointment_check
from scheduler.rules import Outcome
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TODAY = date(2026, 3, 2)


@pytest.fixture
def patient(catalogue):
    clinic = ClinicFactory()
    PractitionerFactory(clinic=clinic)
    return PatientFactory(clinic=clinic)


def test_patient_create_validates_and_saves(catalogue):
    clinic = ClinicFactory()

    patient = patient_create(
        clinic=clinic,
        today=TODAY,
        first_name="Ada",
        last_name="Lovelace",
        phone="+447911123456",
        reminder_channels=["sms"],
        sms_consent=True,
    )

    assert patient.pk and patient.clinic == clinic


@pytest.mark.parametrize(
    "fields, code, field",
    [
        ({"phone": "0770"}, "invalid_patient", "phone"),
        ({"first_name": ""}, "invalid_patient", "first_name"),
        ({"date_of_birth": date(2030, 1, 1)}, "birth_date_in_future", "date_of_birth"),
        ({"date_of_birth": date(1899, 12, 31)}, "birth_date_too_early", "date_of_birth"),
        ({"clinic_id": "x"}, "unknown_field", None),
    ],
)
def test_patient_create_refuses_bad_input(catalogue, fields, code, field):
    arguments = {"first_name": "Ada", "last_name": "Lovelace"} | fields

    with pytest.raises(InvalidInput) as error:
        patient_create(clinic=ClinicFactory(), today=TODAY, **arguments)

    assert (error.value.code, error.value.field) == (code, field)


def test_patient_update_refuses_a_birth_date_before_1900(patient):
    with pytest.raises(InvalidInput) as error:
        patient_update(patient=patient, today=TODAY, date_of_birth=date(1, 1, 1))

    assert (error.value.code, error.value.field) == ("birth_date_too_early", "date_of_birth")


def test_patient_update_cannot_move_a_patient_to_another_clinic(patient):
    with pytest.raises(InvalidInput):
        patient_update(patient=patient, today=TODAY, clinic=ClinicFactory(code="other"))

    assert patient_update(patient=patient, today=TODAY, last_name="Byron").last_name == "Byron"


def test_a_reported_procedure_counts_for_the_rules_at_once(patient):
    procedure_record_add(
        patient=patient,
        procedure_code="botox",
        performed_at=datetime(2026, 3, 1, 10, tzinfo=UTC),
        now=NOW,
        area_code="face",
    )

    check = appointment_check(
        patient=patient, procedure_code="microneedling", start_at=datetime(2026, 3, 10, 10, tzinfo=UTC), now=NOW
    )

    assert check.outcome == Outcome.REFUSED


@pytest.mark.parametrize(
    "kwargs, code",
    [
        ({"procedure_code": "laser"}, "unknown_procedure"),
        ({"area_code": "elbow"}, "unknown_area"),
        ({"performed_at": datetime(2026, 3, 1, 10)}, "naive_datetime"),
        ({"performed_at": datetime(2026, 4, 1, 10, tzinfo=UTC)}, "performed_in_future"),
        ({"source": "rumour"}, "unknown_source"),
    ],
)
def test_procedure_record_add_refuses_bad_input(patient, kwargs, code):
    arguments = {"procedure_code": "botox", "performed_at": datetime(2026, 3, 1, 10, tzinfo=UTC)} | kwargs

    with pytest.raises(InvalidInput) as error:
        procedure_record_add(patient=patient, now=NOW, **arguments)

    assert error.value.code == code


def test_ending_an_ongoing_course_turns_no_date_into_a_date(patient):
    course = medication_course_add(patient=patient, drug_code="isotretinoin", started_on=date(2025, 6, 1))
    start = datetime(2026, 3, 10, 10, tzinfo=UTC)

    ongoing = appointment_check(patient=patient, procedure_code="microneedling", start_at=start, now=NOW)
    medication_course_end(course=course, ended_on=date(2026, 1, 31))
    ended = appointment_check(patient=patient, procedure_code="microneedling", start_at=start, now=NOW)

    assert ongoing.earliest_eligible_start is None
    # 31 January + 6 months: 31 July, from midnight in the clinic's zone (BST then).
    assert ended.earliest_eligible_start == datetime(2026, 7, 31, 0, 0, tzinfo=ZoneInfo("Europe/London"))


def test_medication_course_refuses_bad_input(patient):
    with pytest.raises(InvalidInput) as unknown:
        medication_course_add(patient=patient, drug_code="aspirin", started_on=date(2026, 1, 1))
    with pytest.raises(InvalidInput) as backwards:
        medication_course_add(
            patient=patient, drug_code="isotretinoin", started_on=date(2026, 2, 1), ended_on=date(2026, 1, 1)
        )

    assert unknown.value.code == "unknown_drug"
    assert backwards.value.field == "ended_on"


def test_conditions_replace_swaps_the_whole_intake(patient):
    conditions_replace(patient=patient, lines=[IntakeLine("eczema", "history"), IntakeLine("diabetes", "active")])

    rows = conditions_replace(patient=patient, lines=[IntakeLine("tattoo_in_area", "active", area="face")])

    assert [(r.condition_id, r.status, r.area_id) for r in rows] == [("tattoo_in_area", "active", "face")]
    assert PatientCondition.objects.filter(patient=patient).count() == 1


@pytest.mark.parametrize(
    "lines, code, line",
    [
        ([IntakeLine("lycanthropy", "active")], "unknown_condition", 0),
        ([IntakeLine("diabetes", "active"), IntakeLine("eczema", "sometimes")], "unknown_status", 1),
        ([IntakeLine("eczema", "active", area="elbow")], "unknown_area", 0),
        ([IntakeLine("eczema", "active"), IntakeLine("eczema", "history")], "duplicate_condition", 1),
    ],
)
def test_conditions_replace_refuses_bad_lines_and_keeps_the_old_intake(patient, lines, code, line):
    conditions_replace(patient=patient, lines=[IntakeLine("diabetes", "active")])

    with pytest.raises(InvalidInput) as error:
        conditions_replace(patient=patient, lines=lines)

    assert error.value.code == code
    assert error.value.data == {"line": line}  # which intake line, for the interface to point at
    assert list(PatientCondition.objects.filter(patient=patient).values_list("condition_id", flat=True)) == ["diabetes"]


def test_patient_create_reports_every_bad_field_at_once(catalogue):
    with pytest.raises(InvalidInput) as error:
        patient_create(
            clinic=ClinicFactory(), today=TODAY, first_name="", last_name="X", phone="0770", email="not-an-address"
        )

    assert set(error.value.errors) == {"first_name", "phone", "email"}


def test_a_reported_day_without_a_time_is_the_end_of_that_local_day(patient):
    record = procedure_record_add(patient=patient, procedure_code="botox", performed_on=date(2026, 2, 20), now=NOW)

    assert record.performed_at == datetime(2026, 2, 20, 23, 59, tzinfo=UTC)  # London, GMT


def test_a_reported_day_without_a_time_is_never_after_now(patient):
    record = procedure_record_add(patient=patient, procedure_code="botox", performed_on=date(2026, 3, 2), now=NOW)

    assert record.performed_at == NOW


def test_a_reported_local_time_is_read_in_the_clinics_zone(patient):
    record = procedure_record_add(
        patient=patient, procedure_code="botox", performed_on=date(2025, 7, 1), performed_time=time(14, 30), now=NOW
    )

    assert record.performed_at == datetime(2025, 7, 1, 13, 30, tzinfo=UTC)  # BST


@pytest.mark.parametrize(
    "performed_on, performed_time, code, field",
    [
        (date(2026, 3, 3), None, "performed_in_future", "performed_on"),
        (date(2026, 3, 3), time(8, 0), "performed_in_future", "performed_on"),
        (date(2026, 3, 2), time(9, 1), "performed_in_future", "performed_time"),
        (date(2026, 3, 29), time(1, 30), "nonexistent_local_time", "performed_time"),
        (date(1, 1, 1), None, "date_out_of_range", "performed_on"),
    ],
)
def test_a_reported_local_day_in_the_future_or_unreadable_is_refused(
    patient, performed_on, performed_time, code, field
):
    with pytest.raises(InvalidInput) as error:
        procedure_record_add(
            patient=patient,
            procedure_code="botox",
            performed_on=performed_on,
            performed_time=performed_time,
            now=datetime(2026, 4, 1, tzinfo=UTC) if code == "nonexistent_local_time" else NOW,
        )

    assert (error.value.code, error.value.field) == (code, field)
    assert not patient.procedure_records.exists()


@pytest.mark.parametrize(
    "typed, country, stored",
    [
        ("07911 123458", "GB", "+447911123458"),
        ("+44 7911 123458", "GB", "+447911123458"),
        ("0044 7911-123458", "GB", "+447911123458"),
        ("(212) 555-0142", "US", "+12125550142"),
        ("0044 7911 123458", "US", "+447911123458"),  # 00 as the international prefix, even where it is 011
        ("+447911123458", "", "+447911123458"),
    ],
)
def test_a_phone_is_read_with_the_clinics_country_and_stored_in_e164(catalogue, typed, country, stored):
    timezone = {"GB": "Europe/London", "US": "America/New_York", "": "UTC"}[country]
    clinic = ClinicFactory(timezone=timezone)

    patient = patient_create(clinic=clinic, today=TODAY, first_name="Ada", last_name="L", phone=typed)

    assert clinic.country == country and patient.phone == stored


def test_a_national_number_needs_a_country_to_be_read(catalogue):
    with pytest.raises(InvalidInput) as error:
        patient_create(
            clinic=ClinicFactory(timezone="UTC"), today=TODAY, first_name="Ada", last_name="L", phone="07911 123458"
        )

    assert error.value.errors == {"phone": ["Enter the phone number in international form, e.g. +447911123456."]}


def test_patient_update_reads_the_phone_with_the_clinics_country(patient):
    assert patient_update(patient=patient, today=TODAY, phone="07911 123459").phone == "+447911123459"


def test_channels_a_form_changed_are_applied_to_the_channels_as_they_are_under_the_lock(patient):
    """The desk drew its form with e-mail on; the patient unsubscribed from e-mail after the page read the record;
    the desk ticks texts. Texts come on, and e-mail stays off: the change is applied to the channels as they are when
    the patient's row is locked, not to the copy the page read at the start of the request."""
    Patient.objects.filter(pk=patient.pk).update(reminder_channels=["email"], phone="+447911123456")
    read_at_request_start = Patient.objects.get(pk=patient.pk)
    Patient.objects.filter(pk=patient.pk).update(reminder_channels=[])  # the unsubscribe, meanwhile

    saved = patient_update(
        patient=read_at_request_start,
        today=TODAY,
        channels_drawn=["email"],
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )
    assert saved.reminder_channels == ["sms"]
    assert Patient.objects.get(pk=patient.pk).reminder_channels == ["sms"]


def test_a_record_edited_in_place_tells_the_subscribers_with_what_changed(patient, monkeypatch):

    heard = []
    monkeypatch.setattr(record_changes, "_subscribers", [lambda **kwargs: heard.append(kwargs)])
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    patient_record_edited(patient_id=patient.pk, parts=["medication courses", "intake"], now=now)

    assert heard == [{"patient_id": patient.pk, "now": now, "cause": "medication courses, intake edited in the admin"}]


def test_a_record_merged_away_cannot_be_edited_in_place(patient, monkeypatch):

    heard = []
    monkeypatch.setattr(record_changes, "_subscribers", [lambda **kwargs: heard.append(kwargs)])
    survivor = PatientFactory(clinic=patient.clinic)
    Patient.objects.filter(pk=patient.pk).update(merged_into=survivor, merged_at=datetime(2026, 3, 1, tzinfo=UTC))

    with pytest.raises(InvalidInput):
        patient_record_edited(patient_id=patient.pk, parts=["history"], now=datetime(2026, 3, 2, tzinfo=UTC))
    assert heard == []


def test_a_day_reported_at_a_sister_site_is_that_sites_day_for_good(patient):
    """docs/rules.md: a procedure reported as done elsewhere is read in the zone of the clinic that recorded it. The
    New York desk records 1 March: 23:59 New York, kept as New York's day when the home clinic moves (a merge)."""
    new_york = ClinicFactory(code="ny-desk", timezone="America/New_York", organisation=patient.organisation)
    record = procedure_record_add(
        patient=patient, procedure_code="botox", performed_on=date(2026, 3, 1), now=NOW, clinic=new_york
    )
    assert record.clinic == new_york and record.dating_clinic == new_york
    assert record.performed_at == datetime(2026, 3, 1, 23, 59, tzinfo=ZoneInfo("America/New_York"))

    def allowed(day: int) -> bool:
        start = datetime(2026, 3, day, 10, tzinfo=ZoneInfo("Europe/London"))
        check = appointment_check(patient=patient, procedure_code="microneedling", start_at=start, now=NOW)
        return not check.evaluation.blocking

    assert not allowed(14) and allowed(15)  # 1 March + 2 weeks at London, although it is 2 March there
    Patient.objects.filter(pk=patient.pk).update(clinic=ClinicFactory(code="akl", timezone="Pacific/Auckland"))
    assert not allowed(14) and allowed(15)  # the home clinic's zone plays no part


def test_a_record_for_a_clinic_of_another_organisation_is_refused(patient):
    elsewhere = ClinicFactory(code="elsewhere", timezone="America/New_York")
    with pytest.raises(InvalidInput) as error:
        procedure_record_add(
            patient=patient, procedure_code="botox", performed_on=date(2026, 3, 1), now=NOW, clinic=elsewhere
        )
    assert (error.value.code, error.value.field) == ("clinic_mismatch", "clinic")
    assert not patient.procedure_records.exists()
