"""Review probe (11 December): a line-by-line reading of the patient record's code (clinic/services.py,
clinic/merging.py, clinic/record_changes.py, clinic/selectors.py, clinic/duplicates.py) beside docs/organisations.md,
docs/rules.md, the domain brief (section 6: one record per patient across an organisation's clinics) and the API
contract. Each suspicion the reading raised is walked here through the service, the front desk or the API.

What holds: every record service (history, medication course recorded or ended, intake, an admin edit, a merge)
announces its change once, after writing it, with the patient's row locked (a merge: both rows); a desk form drawn
with a channel ticked applies only what its user ticked to the channels as they are; obvious duplicates (case,
accents, a national number, an address in capitals) are found, and another organisation's twin is not.

Found (DEFECTs, each a strict xfail mended the same day; the tests now pass):
- a desk edit form drawn while the patient had no reminder channel does not say what it was drawn with (an empty
  multiple hidden input posts nothing), so saving it (a surname corrected) switches off a channel the patient switched
  on meanwhile on their own page, and records the desk's opt-out;
- the duplicate candidates are capped at 10 in the order "same phone or e-mail first, then by name": a registration
  giving an address other records share (a family's, a desk's placeholder) lists those and leaves out the record with
  the same name and date of birth, so "Register anyway" passes over exactly the real duplicate;
- a record stored with texts on and no number (written past the checks) refuses every edit of another field, though
  `_validated` says such a value does not stop an edit of another field;
- `patient_create` keeps the channels in the order sent while `patient_update` sorts them: naming the channels as the
  record shows them, from an ETag before someone else's change, is refused 412 though it changes nothing;
- `conditions_replace` with a line without a condition code raises AttributeError (a 500), not `InvalidInput`;
- `medication_course_add` accepts a course ended in year 9999 (the product's dates run 1900 to 2999, as
  `procedure_record_add` checks for `performed_on`): the patient's next booking then fails with ValueError.
"""

from __future__ import annotations

from datetime import date

import pytest
from django.db import DatabaseError, transaction
from django.urls import reverse

from clinic import record_changes
from clinic.duplicates import Identity, MatchReason
from clinic.merging import patient_merge
from clinic.models import Patient, ProcedureRecord, StaffRole
from clinic.selectors import duplicate_candidates
from clinic.services import (
    IntakeLine,
    PossibleDuplicate,
    conditions_replace,
    medication_course_add,
    medication_course_end,
    patient_create,
    patient_record_edited,
    patient_update,
    phone_to_e164,
    procedure_record_add,
    record_version,
)
from core.errors import InvalidInput
from reminders.consent import patient_preferences_update
from reminders.models import ContactOptOut
from tests.factories import MedicationCourseFactory, PatientFactory
from tests.qa.helpers import NOW, book, form_on, fresh, ldn, staff_client
from tests.races import in_a_thread

pytestmark = pytest.mark.django_db

TODAY = NOW.date()


# --- The desk's edit form and the patient's own channels ----------------------------------------------------------


def _desk_edit(clinic, patient, username):
    desk = staff_client(clinic, StaffRole.RECEPTIONIST, username)
    action = reverse("frontdesk:patient_edit", args=[clinic.code, patient.pk])
    return desk, action, form_on(desk.get(action), action)


def test_a_desk_form_drawn_with_a_channel_ticked_keeps_the_channel_the_patient_switched_on_meanwhile(clinic):
    """The form says it was drawn with e-mail: the patient switching texts on meanwhile stays on (channels_as_changed
    under the lock, clinic/services.py patient_update)."""
    patient = PatientFactory(clinic=clinic, first_name="Ann", last_name="Lee", reminder_channels=["email"])
    desk, action, data = _desk_edit(clinic, patient, "desk-dec11g-a")
    patient_preferences_update(patient=patient, now=NOW, sms=True, sms_consent=True)

    data["last_name"] = "Leigh"
    assert desk.post(action, data).status_code == 302

    assert (fresh(patient).last_name, fresh(patient).reminder_channels) == ("Leigh", ["email", "sms"])
    assert not ContactOptOut.objects.filter(patient=patient).exists()


def test_a_desk_form_drawn_with_no_channel_keeps_the_channel_the_patient_switched_on_meanwhile(clinic):
    """(Was a strict-xfail DEFECT, mended the same day.)"""
    patient = PatientFactory(clinic=clinic, first_name="Ann", last_name="Lee", reminder_channels=[])
    desk, action, data = _desk_edit(clinic, patient, "desk-dec11g-b")
    patient_preferences_update(patient=patient, now=NOW, email=True)  # on their own page, the form still open
    assert fresh(patient).reminder_channels == ["email"]

    data["last_name"] = "Leigh"  # nothing else touched
    response = desk.post(action, data)

    assert response.status_code in (302, 409), response.status_code
    assert fresh(patient).reminder_channels == ["email"], "the desk never unticked e-mail"
    assert not ContactOptOut.objects.filter(patient=patient, via="desk").exists()


# --- Duplicates at registration -------------------------------------------------------------------------------


def test_obvious_duplicates_are_found_in_the_organisation_and_another_organisations_twin_is_not(clinic, other_clinic):
    details = {"date_of_birth": date(1985, 6, 18), "phone": "+447911123456", "email": "jose@example.com"}
    ours = PatientFactory(clinic=clinic, first_name="José-María", last_name="Núñez", **details)
    PatientFactory(clinic=other_clinic, first_name="José-María", last_name="Núñez", **details)

    found = duplicate_candidates(
        organisation_id=clinic.organisation_id,
        identity=Identity(
            first_name="jose maria",
            last_name="NUNEZ",
            date_of_birth=date(1985, 6, 18),
            phone=phone_to_e164("07911 123456", country="GB"),
            email=" JOSE@Example.COM ",
        ),
    )

    assert [(c.patient.pk, set(c.reasons)) for c in found] == [(ours.pk, set(MatchReason))]


def test_a_shared_address_does_not_hide_the_record_with_the_same_name_and_birth_date(clinic):
    """(Was a strict-xfail DEFECT, mended the same day.)"""
    for letter in "abcdefghijk":  # a family's (or a desk's placeholder) address on eleven records
        PatientFactory(clinic=clinic, first_name=f"A{letter}", last_name="Bennett", phone="", email="home@example.com")
    zoe = PatientFactory(
        clinic=clinic, first_name="Zoe", last_name="Bennett", phone="", email="", date_of_birth=date(1990, 5, 5)
    )
    registration = {"first_name": "Zoë", "last_name": "BENNETT", "date_of_birth": date(1990, 5, 5)}

    with pytest.raises(PossibleDuplicate) as asked:
        patient_create(clinic=clinic, today=TODAY, email="home@example.com", **registration)
    shown = [candidate["id"] for candidate in asked.value.candidates]

    assert str(zoe.pk) in shown, "the same name and date of birth is the likeliest duplicate of all"


# --- Editing details ------------------------------------------------------------------------------------------


def test_a_value_stored_past_the_checks_does_not_stop_an_edit_of_another_field(clinic):
    """(Was a strict-xfail DEFECT, mended the same day.)"""
    patient = PatientFactory(clinic=clinic, last_name="Lee", reminder_channels=["sms"], sms_consent=True)
    Patient.objects.filter(pk=patient.pk).update(phone="")  # written past the checks (an import, an old release)

    patient_update(patient=fresh(patient), today=TODAY, last_name="Leigh")

    assert fresh(patient).last_name == "Leigh"


def test_naming_the_channels_as_the_record_shows_them_is_no_change(clinic):
    """Registration stores the channels in the one order an update keeps (clinic.services.channels_in_order), so
    naming them as shown, or as first sent, changes nothing and no stale If-Match refuses it. (Was a strict-xfail
    DEFECT, mended the same day.)"""
    patient = patient_create(
        clinic=clinic,
        today=TODAY,
        first_name="Zed",
        last_name="Quill",
        email="zed@example.com",
        phone="+447911123999",
        reminder_channels=["sms", "email"],  # as a platform sent them
        sms_consent=True,
    )
    read = record_version(fresh(patient))  # the platform's ETag
    patient_update(patient=fresh(patient), today=TODAY, date_of_birth=date(1990, 1, 1))  # the desk, meanwhile
    shown = fresh(patient).reminder_channels
    assert shown == ["email", "sms"]

    for named in (shown, ["sms", "email"]):
        saved = patient_update(patient=fresh(patient), today=TODAY, reminder_channels=named, made_from=read)
        assert saved.reminder_channels == ["email", "sms"]


# --- Validation -----------------------------------------------------------------------------------------------


def test_an_intake_line_without_a_condition_is_refused_naming_it(patient):
    """(Was a strict-xfail DEFECT, mended the same day.)"""
    with pytest.raises(InvalidInput) as refused:
        conditions_replace(patient=patient, lines=[IntakeLine(condition="", status="active")], now=NOW)

    assert (refused.value.field, refused.value.data.get("line")) == ("condition", 0)


def test_a_course_dated_outside_the_products_years_is_refused(patient, practitioner):
    """(Was a strict-xfail DEFECT, mended the same day.)"""
    try:
        medication_course_add(
            patient=patient, drug_code="isotretinoin", started_on=date(2026, 1, 1), ended_on=date(9999, 12, 31), now=NOW
        )
    except InvalidInput as refused:
        assert refused.field == "ended_on"
        return
    book(patient, ldn(2026, 3, 10), NOW)  # what the stored course does to the patient's next booking


# --- Every record change is announced under the patient's lock (PostgreSQL) ---------------------------------------


def _locked_elsewhere(patient_id) -> bool:
    """Whether another connection finds the patient's row locked (FOR UPDATE NOWAIT)."""

    def probe():
        with transaction.atomic():
            try:
                list(Patient.objects.select_for_update(nowait=True).filter(pk=patient_id).values_list("pk"))
            except DatabaseError:
                return True
        return False

    outcome: list = []
    in_a_thread(probe, outcome).join(10)
    return outcome == [True]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_every_record_change_is_announced_once_after_it_is_written_with_the_patients_row_locked(
    catalogue, clinic, monkeypatch
):
    patient = PatientFactory(clinic=clinic, first_name="Ann", last_name="Lee")
    other = PatientFactory(clinic=clinic, first_name="Anne", last_name="Lee")
    course = MedicationCourseFactory(patient=patient, started_on=date(2026, 1, 1))
    heard = []

    def subscriber(*, patient_id, now, cause):
        merged_away = Patient.objects.filter(merged_into_id=patient_id).values_list("pk", flat=True)
        heard.append(
            (
                cause.split(":")[0].split(" edited")[0],
                _locked_elsewhere(patient_id) and all(_locked_elsewhere(pk) for pk in merged_away),
                ProcedureRecord.objects.filter(patient_id=patient_id).count(),
            )
        )

    monkeypatch.setattr(record_changes, "_subscribers", [subscriber])
    assert not _locked_elsewhere(patient.pk)  # the probe tells a free row from a locked one

    procedure_record_add(patient=patient, procedure_code="botox", now=NOW, performed_on=date(2026, 2, 2))
    medication_course_add(patient=patient, drug_code="isotretinoin", started_on=date(2026, 2, 1), now=NOW)
    medication_course_end(course=course, ended_on=date(2026, 2, 1), now=NOW)
    conditions_replace(patient=patient, lines=[IntakeLine(condition="eczema", status="active")], now=NOW)
    conditions_replace(patient=patient, lines=[IntakeLine(condition="eczema", status="active")], now=NOW)  # no change
    with transaction.atomic():
        patient_record_edited(patient_id=patient.pk, parts=["history"], now=NOW)
    patient_merge(merged=other, into=patient, now=NOW, actor_label="dr@qa", clinical=True)

    assert heard == [
        ("history", True, 1),  # announced after the line is written, the row locked
        ("medication", True, 1),
        ("medication", True, 1),
        ("intake updated", True, 1),
        ("history", True, 1),
        ("merge", True, 1),  # both records locked
    ]
