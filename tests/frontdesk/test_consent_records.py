"""Texts switched on or off at the desk are recorded with who did it and the words read to the patient.

docs/reminders.md, "Who switched texts on or off": a channel switched on by staff is a ContactOptIn (via `desk`),
one switched off a ContactOptOut; the consent box shows the words to read, and after the patient's own STOP it
says so.
"""

from datetime import UTC, datetime

import pytest
import time_machine

from clinic.models import Patient
from reminders.consent import patient_opt_out, sms_consent_wording
from reminders.models import ContactOptIn, ContactOptOut
from tests.frontdesk.conftest import url
from tests.frontdesk.html import squash, text_by_id

pytestmark = pytest.mark.django_db

# The patient (tests/frontdesk/conftest.py) gets e-mail reminders; every edit here keeps them.
EDITED = {"first_name": "Olivia", "last_name": "Bennett", "phone": "07911 123101", "email": "olivia@example.com"}
BOTH = ["email", "sms"]


def edit(reception, clinic, patient, **fields):
    response = reception.post(url("patient_edit", clinic, patient), {**EDITED, **fields})
    assert response.status_code == 302, response.content.decode()[:2000]
    return Patient.objects.get(pk=patient.pk)


def test_texts_switched_on_at_the_desk_are_recorded_with_the_words_and_who(reception, clinic, patient, frozen):
    current = edit(reception, clinic, patient, reminder_channels=BOTH, sms_consent="on")
    assert current.sms_consent and "sms" in current.reminder_channels
    [sms] = ContactOptIn.objects.filter(patient=patient)  # e-mail was on already: nothing to record for it
    assert (sms.channel, sms.via, sms.detail, sms.at) == ("sms", "desk", "reception (front desk)", frozen)
    assert sms.wording == sms_consent_wording(current) and "London Clinic" in sms.wording
    assert not ContactOptOut.objects.exists()


def test_email_switched_off_and_on_at_the_desk_is_recorded_both_ways(reception, clinic, patient, frozen):
    edit(reception, clinic, patient, reminder_channels=[])
    edit(reception, clinic, patient, reminder_channels=["email"])
    [opt_out] = ContactOptOut.objects.filter(patient=patient)
    [opt_in] = ContactOptIn.objects.filter(patient=patient)
    assert (opt_out.channel, opt_out.via, opt_in.channel, opt_in.via) == ("email", "desk", "email", "desk")
    assert opt_in.wording == ""


def test_texts_switched_off_at_the_desk_are_an_opt_out_by_the_desk(reception, clinic, patient, frozen):
    edit(reception, clinic, patient, reminder_channels=BOTH, sms_consent="on")
    edit(reception, clinic, patient, reminder_channels=BOTH)  # the consent box cleared
    [opt_out] = ContactOptOut.objects.filter(patient=patient)
    assert (opt_out.channel, opt_out.via, opt_out.detail) == ("sms", "desk", "reception (front desk)")


def test_an_edit_that_switches_no_channel_records_nothing(reception, clinic, patient, frozen):
    edit(reception, clinic, patient, reminder_channels=BOTH, sms_consent="on")
    ContactOptIn.objects.all().delete()
    edit(reception, clinic, patient, reminder_channels=BOTH, sms_consent="on", phone="07911 123999")
    edit(reception, clinic, patient, reminder_channels=BOTH, sms_consent="on", last_name="Bennett-Hart")
    assert not ContactOptIn.objects.exists() and not ContactOptOut.objects.exists()


def test_a_patient_registered_with_texts_has_their_consent_recorded(reception, clinic, frozen):
    response = reception.post(
        url("patient_new", clinic),
        {
            "first_name": "Nia",
            "last_name": "Okafor",
            "phone": "07911 123555",
            "reminder_channels": ["sms"],
            "sms_consent": "on",
            "confirm_new": "on",
        },
    )
    assert response.status_code == 302
    patient = Patient.objects.get(first_name="Nia")
    [opt_in] = ContactOptIn.objects.filter(patient=patient)
    assert (opt_in.channel, opt_in.via) == ("sms", "desk") and opt_in.wording == sms_consent_wording(patient)


def test_the_consent_box_gives_the_words_to_read(reception, clinic, patient, frozen):
    page = squash(reception.get(url("patient_edit", clinic, patient)))
    assert "Read this to the patient" in page
    assert "I agree to get text messages from London Clinic" in page
    assert "turned texts off themselves" not in page


def test_after_the_patients_own_stop_the_desk_is_told_before_switching_texts_back_on(
    reception, clinic, patient, frozen
):
    edit(reception, clinic, patient, reminder_channels=BOTH, sms_consent="on")
    with time_machine.travel(datetime(2026, 3, 3, 18, 0, tzinfo=UTC), tick=False):
        patient_opt_out(patient=patient, channel="sms", via="sms_stop", now=datetime(2026, 3, 3, 18, 0, tzinfo=UTC))
    page = squash(reception.get(url("patient_edit", clinic, patient)))
    assert "The patient turned texts off themselves on 3 Mar 2026 (SMS reply STOP)" in page
    assert "Switch texts back on only if they ask you to" in page
    assert "turned e-mail off themselves" not in page  # e-mail is still on


def test_texts_the_desk_switched_off_are_not_called_the_patients_stop(reception, clinic, patient, frozen):
    edit(reception, clinic, patient, reminder_channels=BOTH, sms_consent="on")
    edit(reception, clinic, patient, reminder_channels=["email"])
    page = squash(reception.get(url("patient_edit", clinic, patient)))
    assert "turned texts off themselves" not in page and "Read this to the patient" in page


# --- E-mail turned off by the patient ------------------------------------------------------------------------------


def email_help(reception, clinic, patient) -> str:
    """The help under "Send reminders by" on the patient's edit page ("" when there is none)."""
    page = reception.get(url("patient_edit", clinic, patient)).content.decode()
    return text_by_id(page, "id_reminder_channels-help") if 'id="id_reminder_channels-help"' in page else ""


@pytest.mark.parametrize(
    ("via", "shown"),
    [("email_link", "Unsubscribe link in an e-mail"), ("list_unsubscribe", "One-click unsubscribe (mail client)")],
)
def test_after_the_patients_own_unsubscribe_the_desk_is_told_before_switching_email_back_on(
    reception, clinic, patient, frozen, via, shown
):
    assert email_help(reception, clinic, patient) == ""  # e-mail on: nothing to say
    with time_machine.travel(datetime(2026, 3, 3, 18, 0, tzinfo=UTC), tick=False):
        assert patient_opt_out(patient=patient, channel="email", via=via, now=datetime(2026, 3, 3, 18, 0, tzinfo=UTC))
    assert email_help(reception, clinic, patient) == (
        f"The patient turned e-mail off themselves on 3 Mar 2026 ({shown}). "
        "Switch e-mail back on only if they ask you to."
    )


def test_after_a_complaint_the_provider_reported_the_desk_learns_the_provider_still_refuses_the_address(
    reception, clinic, patient, frozen
):
    """The e-mail provider (Postmark, Mailgun, ...) suppresses an address after a spam complaint or an unsubscribe
    through its own link; switching e-mail on here does not lift that (reminders.consent.email_restart_advice)."""
    assert patient_opt_out(
        patient=patient, channel="email", via="email_provider", now=frozen, detail="postmark: complained"
    )
    help_text = email_help(reception, clinic, patient)
    assert help_text.startswith("The patient turned e-mail off themselves on 2 Mar 2026 (Spam complaint or unsubscribe")
    assert "only once the address is taken off the provider's suppression list" in help_text


def test_email_the_desk_switched_off_or_switched_back_on_gets_no_note(reception, clinic, patient, frozen):
    edit(reception, clinic, patient, reminder_channels=[])  # the desk switched it off
    assert email_help(reception, clinic, patient) == ""
    edit(reception, clinic, patient, reminder_channels=["email"])
    with time_machine.travel(datetime(2026, 3, 3, 18, 0, tzinfo=UTC), tick=False):
        patient_opt_out(patient=patient, channel="email", via="email_link", now=datetime(2026, 3, 3, 18, 0, tzinfo=UTC))
    assert email_help(reception, clinic, patient) != ""
    with time_machine.travel(datetime(2026, 3, 4, 9, 0, tzinfo=UTC), tick=False):
        edit(reception, clinic, patient, reminder_channels=["email"])  # the patient asked: back on
    assert email_help(reception, clinic, patient) == ""


def test_a_stop_while_the_form_is_open_is_not_undone_by_saving_another_change(reception, clinic, patient, frozen):
    """The form carries the choices it was drawn with: saving a new surname after the patient's STOP arrived keeps
    texts off and records no opt-in (review of stop 30: the drawn choices were saved as the desk's)."""
    edit(reception, clinic, patient, reminder_channels=BOTH, sms_consent="on")
    drawn = {"initial-reminder_channels": BOTH, "initial-sms_consent": "True"}
    patient_opt_out(patient=patient, channel="sms", via="sms_stop", now=frozen)  # while the form is open
    ContactOptIn.objects.all().delete()
    current = edit(
        reception, clinic, patient, reminder_channels=BOTH, sms_consent="on", last_name="Bennett-Hart", **drawn
    )
    assert current.last_name == "Bennett-Hart"
    assert (current.reminder_channels, current.sms_consent) == (["email"], False)
    assert not ContactOptIn.objects.exists()


def test_the_desk_switching_texts_on_after_a_stop_is_saved_and_recorded(reception, clinic, patient, frozen):
    edit(reception, clinic, patient, reminder_channels=BOTH, sms_consent="on")
    patient_opt_out(patient=patient, channel="sms", via="sms_stop", now=frozen)
    ContactOptIn.objects.all().delete()
    drawn = {"initial-reminder_channels": ["email"], "initial-sms_consent": "False"}  # the form shows texts off
    current = edit(reception, clinic, patient, reminder_channels=BOTH, sms_consent="on", **drawn)
    assert current.sms_consent and "sms" in current.reminder_channels
    [opt_in] = ContactOptIn.objects.all()
    assert (opt_in.via, opt_in.detail) == ("desk", "reception (front desk)")


def test_the_edit_form_carries_the_choices_it_was_drawn_with(reception, clinic, patient, frozen):
    page = reception.get(url("patient_edit", clinic, patient)).content.decode()
    assert 'name="initial-sms_consent"' in page and 'name="initial-reminder_channels" value="email"' in page
