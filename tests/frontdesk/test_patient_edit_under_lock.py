"""Which fields of a stale patient form would overwrite someone else's change is decided by the service, under the
patient's lock (clinic.services.patient_update `drawn`, `overwritten_fields`), not by the desk before it: a field
someone changed since the page was drawn refuses the save (412 record_changed, the fields named, nothing saved); a
field nobody else touched is saved over the record as it is now; values are compared as saved (the number in E.164,
an address in any case, spaces around text); a field the post does not say it was drawn with counts only when the
record moved on from the version the page was drawn from. Two edits sent from one page at once are told apart: the
same name typed two ways, one saved and the other told; two contact details, both saved (the desk's form writes a
contact detail only where its user changed it, and the name and date of birth always, so a name or date of birth
someone corrected meanwhile is shown, not silently kept or undone: tests/frontdesk/test_dec6j_mends.py).
"""

from __future__ import annotations

from datetime import date

import pytest
from django.test import Client

from clinic.models import Patient
from clinic.services import patient_update, record_version
from core.errors import ErrorCode, PreconditionFailed
from tests.frontdesk.conftest import url
from tests.frontdesk.helpers import inputs

pytestmark = pytest.mark.django_db

TODAY = date(2026, 3, 1)


def _drawn(patient) -> dict:
    return {
        "first_name": patient.first_name,
        "last_name": patient.last_name,
        "date_of_birth": patient.date_of_birth,
        "email": patient.email,
        "phone": patient.phone,
    }


def test_a_field_changed_since_the_form_was_drawn_refuses_the_save_and_names_it(patient):
    drawn = _drawn(patient)
    patient_update(patient=patient, today=TODAY, first_name="Olive")  # someone else, meanwhile
    with pytest.raises(PreconditionFailed) as refused:
        patient_update(patient=patient, today=TODAY, drawn=drawn, first_name="Livvy", last_name="Bennett-Smith")
    assert refused.value.code == ErrorCode.RECORD_CHANGED
    assert refused.value.data == {"fields": ["first_name"]}
    stored = Patient.objects.get(pk=patient.pk)
    assert (stored.first_name, stored.last_name) == ("Olive", "Bennett")  # nothing saved, not even the surname


def test_a_field_nobody_else_touched_is_saved_over_the_record_as_it_is_now(patient):
    drawn = _drawn(patient)
    patient_update(patient=patient, today=TODAY, date_of_birth=date(1985, 8, 16))
    patient_update(
        patient=patient,
        today=TODAY,
        drawn=drawn,
        made_from=record_version(patient),  # the version drawn from is stale: the fields decide, not the version
        first_name=patient.first_name,
        last_name="Bennett-Smith",
    )
    stored = Patient.objects.get(pk=patient.pk)
    assert (stored.last_name, stored.date_of_birth) == ("Bennett-Smith", date(1985, 8, 16))


def test_the_same_change_made_meanwhile_is_no_conflict(patient):
    drawn = _drawn(patient)
    patient_update(patient=patient, today=TODAY, last_name="Bennett-Smith")
    patient_update(patient=patient, today=TODAY, drawn=drawn, last_name="Bennett-Smith", first_name="Liv")
    stored = Patient.objects.get(pk=patient.pk)
    assert (stored.first_name, stored.last_name) == ("Liv", "Bennett-Smith")


def test_values_are_compared_as_saved_not_as_typed(patient):
    """The page shows the number as dialled here and the address as stored; a different spelling of the same value
    is not someone else's change: each field below is written and compared, none refused."""
    drawn = {**_drawn(patient), "phone": "07911 123101", "email": " OLIVIA@Example.com ", "last_name": " Bennett "}
    patient_update(patient=patient, today=TODAY, date_of_birth=date(1985, 8, 16))  # someone else, another field
    patient_update(
        patient=patient,
        today=TODAY,
        drawn=drawn,
        phone="07911 123102",
        email="o.bennett@example.com",
        last_name="Bennett-Smith",
    )
    stored = Patient.objects.get(pk=patient.pk)
    assert (stored.phone, stored.email, stored.last_name) == ("+447911123102", "o.bennett@example.com", "Bennett-Smith")
    # The same spellings against a value someone else did change are refused, naming only that field.
    drawn = {**_drawn(stored), "phone": "07911 123102", "email": "O.Bennett@example.com"}
    patient_update(patient=stored, today=TODAY, email="olive@example.com")
    with pytest.raises(PreconditionFailed) as refused:
        patient_update(patient=stored, today=TODAY, drawn=drawn, phone="07911 123103", email="liv@example.com")
    assert refused.value.data == {"fields": ["email"]}


def test_a_sister_site_abroad_edits_the_number_as_it_dials_it(patient, reception):
    """A desk in New York edits a London patient whose number is American: the page shows it as New York dials it,
    and a new number typed that way is saved, read in the desk's country, not the patient's home clinic's (the
    same number shown and read back two ways was taken for someone else's change, on every save)."""
    from clinic.models import StaffRole
    from tests.factories import ClinicFactory
    from tests.frontdesk.conftest import make_staff

    ny = ClinicFactory(
        code="ny", name="New York", timezone="America/New_York", country="US", organisation=patient.organisation
    )
    Patient.objects.filter(pk=patient.pk).update(phone="+12125550142")
    desk = Client()
    desk.force_login(make_staff(ny, StaffRole.RECEPTIONIST, "ny-desk"))
    edit = url("patient_edit", ny, patient)
    page = desk.get(edit)
    assert "(212) 555-0142" in page.content.decode()
    body = inputs(page)
    body["phone"] = ["(212) 555-0199"]
    saved = desk.post(edit, body)
    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert Patient.objects.get(pk=patient.pk).phone == "+12125550199"


def test_a_field_the_post_does_not_say_it_was_drawn_with_counts_only_once_the_record_moved_on(patient):
    version = record_version(patient)
    no_surname = {name: value for name, value in _drawn(patient).items() if name != "last_name"}
    # The record is as drawn: nothing to compare the surname with, and nothing to fear.
    patient_update(patient=patient, today=TODAY, drawn=no_surname, made_from=version, last_name="Bennett-Smith")
    assert Patient.objects.get(pk=patient.pk).last_name == "Bennett-Smith"
    # Moved on since (the surname just saved): a surname whose drawn value is not known now counts as overwritten.
    with pytest.raises(PreconditionFailed) as refused:
        patient_update(patient=patient, today=TODAY, drawn=no_surname, made_from=version, last_name="Bennett-Jones")
    assert refused.value.data == {"fields": ["last_name"]}
    assert Patient.objects.get(pk=patient.pk).last_name == "Bennett-Smith"


def test_without_drawn_values_a_stale_version_still_refuses_the_whole_change(patient):
    """What the API's If-Match asks: the whole record as it was, no field-by-field merge."""
    version = record_version(patient)
    patient_update(patient=patient, today=TODAY, date_of_birth=date(1985, 8, 16))
    with pytest.raises(PreconditionFailed):
        patient_update(patient=patient, today=TODAY, made_from=version, last_name="Bennett-Smith")
    assert Patient.objects.get(pk=patient.pk).last_name == "Bennett"


def test_bad_input_is_said_before_any_comparison(patient):
    drawn = _drawn(patient)
    patient_update(patient=patient, today=TODAY, first_name="Olive")
    with pytest.raises(Exception) as refused:
        patient_update(patient=patient, today=TODAY, drawn=drawn, first_name="Livvy", phone="not a number")
    assert getattr(refused.value, "code", None) == ErrorCode.INVALID_PATIENT
    assert Patient.objects.get(pk=patient.pk).first_name == "Olive"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("first", "second", "codes"),
    [
        ({"first_name": "Olive"}, {"first_name": "Livvy"}, [302, 409]),
        ({"email": "o.bennett@example.com"}, {"phone": "07911 123102"}, [302, 302]),
    ],
    ids=["same-name", "different-contacts"],
)
def test_two_edits_sent_from_one_page_at_once(clinic, patient, receptionist, first, second, codes):
    from tests.races import race

    reader = Client()
    reader.force_login(receptionist)
    edit = url("patient_edit", clinic, patient)
    page = inputs(reader.get(edit))

    def send(change: dict):
        def post():
            client = Client()
            client.force_login(receptionist)
            return client.post(edit, {**page, **{name: [value] for name, value in change.items()}})

        return post

    answers = race(send(first), send(second))
    assert sorted(getattr(answer, "status_code", repr(answer)) for answer in answers) == codes
    stored = Patient.objects.get(pk=patient.pk)
    if codes == [302, 302]:
        assert (stored.email, stored.phone) == ("o.bennett@example.com", "+447911123102")  # both kept
    else:
        [told] = [answer for answer in answers if answer.status_code == 409]
        assert "Changed by someone else since you opened this page: First name" in told.content.decode()
        assert stored.first_name in ("Olive", "Livvy") and stored.last_name == "Bennett"
