"""The medical-history intake: conditions, medication courses, procedures done elsewhere."""

import re
from datetime import UTC, date, datetime

import pytest

from clinic.models import MedicationCourse, PatientCondition, ProcedureRecord, StaffRole
from tests.factories import ClinicFactory
from tests.frontdesk.conftest import make_staff, url
from tests.frontdesk.html import field_error, squash

pytestmark = pytest.mark.django_db


def lines(*rows, initial=0):
    data = {
        "conditions-TOTAL_FORMS": str(len(rows)),
        "conditions-INITIAL_FORMS": str(initial),
        "conditions-MIN_NUM_FORMS": "0",
        "conditions-MAX_NUM_FORMS": "1000",
    }
    for i, row in enumerate(rows):
        for key, value in row.items():
            data[f"conditions-{i}-{key}"] = value
    return data


def test_the_intake_page_labels_every_field(reception, clinic, patient):
    page = squash(reception.get(url("patient_history", clinic, patient)))
    assert '<label class="visually-hidden" for="id_conditions-0-condition">Condition, line 1</label>' in page
    assert '<label for="id_course-drug">Medication' in page
    assert '<label for="id_record-performed_on">Date done' in page


def test_conditions_are_saved_with_status_and_area(reception, clinic, patient):
    response = reception.post(
        url("patient_history", clinic, patient),
        lines(
            {"condition": "eczema", "status": "history"},
            {"condition": "tattoo_in_area", "status": "active", "area": "face", "noted_on": "2020-05-01"},
            {"condition": "", "status": ""},
        ),
    )
    assert response.status_code == 302
    saved = {
        (c.condition_id, c.status, c.area_id, c.noted_on) for c in PatientCondition.objects.filter(patient=patient)
    }
    assert saved == {("eczema", "history", None, None), ("tattoo_in_area", "active", "face", date(2020, 5, 1))}


def test_a_ticked_line_is_removed(reception, clinic, patient, eczema_history):
    response = reception.post(
        url("patient_history", clinic, patient),
        lines({"condition": "eczema", "status": "history", "remove": "on"}, initial=1),
    )
    assert response.status_code == 302
    assert not PatientCondition.objects.filter(patient=patient).exists()


def test_an_intake_page_saved_after_someone_changed_the_intake_saves_nothing_and_shows_it_as_it_is(
    reception, clinic, patient, eczema_history
):
    """Receptionist A opens the page; a clinician records an active clotting disorder meanwhile; A saves the page
    as drawn (with a change to the eczema line). Saving it would erase the clotting disorder (found by the
    stale-writes probe, tests/qa/test_stale_writes_probe.py)."""
    page = reception.get(url("patient_history", clinic, patient)).content.decode()
    drawn_from = re.search(r'name="intake_version" value="([0-9a-f]+)"', page).group(1)
    PatientCondition.objects.create(patient=patient, condition_id="clotting_disorder", status="active")

    stale = lines({"condition": "eczema", "status": "history", "noted_on": "2019-01-01"}, initial=1)
    response = reception.post(url("patient_history", clinic, patient), {**stale, "intake_version": drawn_from})

    assert response.status_code == 409
    assert "Someone changed this medical history since you opened the page, so nothing was saved" in squash(response)
    kept = set(PatientCondition.objects.filter(patient=patient).values_list("condition_id", "status", "noted_on"))
    assert kept == {("eczema", "history", None), ("clotting_disorder", "active", None)}
    # The page is drawn again from the intake as it is now: saving it then goes through.
    shown = response.content.decode()
    assert 'value="clotting_disorder" selected' in shown or 'clotting_disorder" selected' in shown
    fresh_version = re.search(r'name="intake_version" value="([0-9a-f]+)"', shown).group(1)
    assert fresh_version != drawn_from
    current = lines(
        {"condition": "clotting_disorder", "status": "active"},
        {"condition": "eczema", "status": "history", "noted_on": "2019-01-01"},
        initial=2,
    )
    assert reception.post(url("patient_history", clinic, patient), {**current, "intake_version": fresh_version})[
        "Location"
    ].endswith("/history/")
    assert PatientCondition.objects.filter(patient=patient, noted_on=date(2019, 1, 1)).count() == 1


def test_a_condition_without_status_is_refused_on_its_line(reception, clinic, patient):
    response = reception.post(
        url("patient_history", clinic, patient),
        lines({"condition": "eczema", "status": "history"}, {"condition": "diabetes", "status": ""}),
    )
    assert response.status_code == 200
    assert field_error(response, "id_conditions-1-status") == "Say whether the condition is active or history."
    assert not PatientCondition.objects.exists()


def test_a_duplicate_line_is_refused_on_that_line(reception, clinic, patient):
    response = reception.post(
        url("patient_history", clinic, patient),
        lines(
            {"condition": "eczema", "status": "history"},
            {"condition": "", "status": ""},
            {"condition": "eczema", "status": "active"},
        ),
    )
    assert response.status_code == 200
    assert "listed twice" in field_error(response, "id_conditions-2-condition")
    assert not PatientCondition.objects.exists()


def test_a_medication_course_is_added(reception, clinic, patient):
    response = reception.post(
        url("medication_add", clinic, patient),
        {"course-drug": "isotretinoin", "course-started_on": "2025-01-10", "course-ended_on": "2025-07-10"},
    )
    assert response.status_code == 302
    course = MedicationCourse.objects.get(patient=patient)
    assert (course.drug_id, course.started_on, course.ended_on) == (
        "isotretinoin",
        date(2025, 1, 10),
        date(2025, 7, 10),
    )


def test_a_course_ending_before_it_starts_is_refused_next_to_the_end_date(reception, clinic, patient):
    response = reception.post(
        url("medication_add", clinic, patient),
        {"course-drug": "isotretinoin", "course-started_on": "2025-07-10", "course-ended_on": "2025-01-10"},
    )
    assert field_error(response, "id_course-ended_on") == "A course cannot end before it starts."
    assert field_error(response, "id_course-started_on") == ""


def test_missing_medication_fields_are_shown_next_to_them(reception, clinic, patient):
    response = reception.post(url("medication_add", clinic, patient), {"course-drug": "", "course-started_on": "x"})
    assert field_error(response, "id_course-drug") == "This field is required."
    assert field_error(response, "id_course-started_on") == "Enter a valid date."


def test_the_end_of_an_ongoing_course_is_recorded(reception, clinic, patient):
    course = MedicationCourse.objects.create(patient=patient, drug_id="isotretinoin", started_on=date(2025, 1, 1))
    response = reception.post(
        url("medication_end", clinic, patient, course), {f"end-{course.pk}-ended_on": "2025-09-01"}
    )
    assert response.status_code == 302
    course.refresh_from_db()
    assert course.ended_on == date(2025, 9, 1)


def test_the_end_of_a_course_ended_meanwhile_is_not_overwritten_from_a_stale_page(reception, clinic, patient):
    """The page showed isotretinoin ongoing; a clinician recorded its end on 20 February meanwhile; the desk's form,
    sent with 1 December, would move the 6-month microneedling block three months earlier (stale-writes probe)."""
    course = MedicationCourse.objects.create(patient=patient, drug_id="isotretinoin", started_on=date(2025, 1, 1))
    MedicationCourse.objects.filter(pk=course.pk).update(ended_on=date(2026, 2, 20))

    response = reception.post(
        url("medication_end", clinic, patient, course), {f"end-{course.pk}-ended_on": "2025-12-01"}
    )

    assert response.status_code == 409
    assert "This course was recorded as ended on 20 February 2026 since the page was opened" in squash(response)
    course.refresh_from_db()
    assert course.ended_on == date(2026, 2, 20)


def test_a_procedure_done_elsewhere_is_added_in_clinic_time(reception, clinic, patient, frozen):
    response = reception.post(
        url("procedure_add", clinic, patient),
        {
            "record-procedure": "botox",
            "record-performed_on": "2026-02-20",
            "record-performed_time": "14:30",
            "record-area": "face",
            "record-notes": "Another clinic",
        },
    )
    assert response.status_code == 302
    record = ProcedureRecord.objects.get(patient=patient)
    assert record.performed_at == datetime(2026, 2, 20, 14, 30, tzinfo=UTC)
    assert record.source == "reported" and record.area_id == "face"


def test_without_a_time_the_end_of_that_day_is_assumed_but_never_after_now(reception, clinic, patient, frozen):
    reception.post(
        url("procedure_add", clinic, patient), {"record-procedure": "botox", "record-performed_on": "2026-02-20"}
    )
    reception.post(
        url("procedure_add", clinic, patient), {"record-procedure": "filler", "record-performed_on": "2026-03-02"}
    )
    times = dict(ProcedureRecord.objects.values_list("procedure_id", "performed_at"))
    assert times["botox"] == datetime(2026, 2, 20, 23, 59, tzinfo=UTC)
    assert times["filler"] == frozen  # today: now, not tonight


def test_a_procedure_in_the_future_is_refused_next_to_its_date(reception, clinic, patient, frozen):
    response = reception.post(
        url("procedure_add", clinic, patient),
        {"record-procedure": "botox", "record-performed_on": "2026-03-05", "record-performed_time": "10:00"},
    )
    assert "cannot be in the future" in field_error(response, "id_record-performed_on")
    assert not ProcedureRecord.objects.exists()


def test_a_time_that_does_not_exist_is_refused_next_to_the_time(reception, clinic, patient):
    import time_machine

    with time_machine.travel(datetime(2026, 4, 1, 9, tzinfo=UTC), tick=False):
        response = reception.post(
            url("procedure_add", clinic, patient),
            {"record-procedure": "botox", "record-performed_on": "2026-03-29", "record-performed_time": "01:30"},
        )
    assert "does not exist" in field_error(response, "id_record-performed_time")
    assert "Medical history" in squash(response)


def test_history_dates_outside_1900_to_2999_are_form_errors(reception, clinic, patient, frozen):
    course = reception.post(
        url("medication_add", clinic, patient),
        {"course-drug": "isotretinoin", "course-started_on": "0001-01-01", "course-ended_on": "9999-12-31"},
    )
    record = reception.post(
        url("procedure_add", clinic, patient), {"record-procedure": "botox", "record-performed_on": "0001-01-01"}
    )

    assert field_error(course, "id_course-started_on") == "Out of range: years 1900 to 2999."
    assert field_error(course, "id_course-ended_on") == "Out of range: years 1900 to 2999."
    assert field_error(record, "id_record-performed_on") == "Out of range: years 1900 to 2999."
    assert not MedicationCourse.objects.exists() and not ProcedureRecord.objects.exists()


@pytest.mark.parametrize("time", ["", "10:00"])
def test_a_procedure_on_a_future_day_is_refused_with_or_without_a_time(reception, clinic, patient, frozen, time):
    response = reception.post(
        url("procedure_add", clinic, patient),
        {"record-procedure": "botox", "record-performed_on": "2026-03-05", "record-performed_time": time},
    )

    assert response.status_code == 200
    assert "cannot be in the future" in field_error(response, "id_record-performed_on")
    assert not ProcedureRecord.objects.exists()


def test_a_procedure_later_today_is_refused_next_to_its_time(reception, clinic, patient, frozen):
    response = reception.post(
        url("procedure_add", clinic, patient),
        {"record-procedure": "botox", "record-performed_on": "2026-03-02", "record-performed_time": "15:00"},
    )

    assert "cannot be in the future" in field_error(response, "id_record-performed_time")
    assert not ProcedureRecord.objects.exists()


def test_a_sister_sites_desk_records_the_day_the_patient_gives_in_its_own_zone(clinic, patient, frozen):
    """docs/rules.md: a procedure reported as done elsewhere is read in the zone of the clinic that recorded it. The
    New York desk of the patient's organisation records 20 February: 23:59 New York, the record New York's, and
    the history page dates it 20 Feb (not London's 21 Feb)."""
    from django.test import Client

    new_york = ClinicFactory(code="ny-sister", timezone="America/New_York", organisation=clinic.organisation)
    desk = Client()
    desk.force_login(make_staff(new_york, StaffRole.RECEPTIONIST, "ny-reception"))
    response = desk.post(
        url("procedure_add", new_york, patient), {"record-procedure": "botox", "record-performed_on": "2026-02-20"}
    )
    assert response.status_code == 302, squash(response)
    record = ProcedureRecord.objects.get(patient=patient)
    assert record.clinic == new_york
    assert record.performed_at == datetime(2026, 2, 21, 4, 59, tzinfo=UTC)  # 23:59 EST
    assert "(Botox)</strong> · 20 Feb 2026" in squash(reception_of(clinic).get(url("patient_history", clinic, patient)))


def reception_of(clinic):
    from django.test import Client

    client = Client()
    client.force_login(make_staff(clinic, StaffRole.RECEPTIONIST, f"desk-{clinic.code}"))
    return client
