"""A patient's own message preferences (reminders.consent.patient_preferences_update): channels, kinds, records."""

from datetime import UTC, datetime

import pytest

from clinic.models import Patient
from core.errors import ErrorCode, InvalidInput
from reminders.consent import channels_on, patient_accepts, patient_preferences_update, sms_consent_wording
from reminders.models import ContactOptIn, ContactOptOut, MessageKind

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def reload(patient) -> Patient:
    return Patient.objects.select_related("clinic").get(pk=patient.pk)


def test_switching_email_off_is_an_opt_out_recorded_like_an_unsubscribe(patient):
    change = patient_preferences_update(patient=patient, now=NOW, email=False, sms=True)

    assert (change.switched_off, change.switched_on) == (("email",), ())
    assert reload(patient).reminder_channels == ["sms"]
    [opt_out] = ContactOptOut.objects.all()
    assert (opt_out.patient, opt_out.channel, opt_out.via, opt_out.at) == (patient, "email", "patient_page", NOW)
    assert not ContactOptIn.objects.exists()


def test_switching_sms_off_withdraws_consent(patient):
    patient_preferences_update(patient=patient, now=NOW, sms=False)

    current = reload(patient)
    assert (current.reminder_channels, current.sms_consent) == (["email"], False)
    assert not patient_accepts(current, "sms")[0]
    assert ContactOptOut.objects.get().channel == "sms"


def test_switching_sms_back_on_needs_the_consent_tick_and_records_its_wording(patient):
    patient_preferences_update(patient=patient, now=NOW, sms=False)

    with pytest.raises(InvalidInput) as refused:
        patient_preferences_update(patient=patient, now=NOW, sms=True)
    assert (refused.value.code, refused.value.field) == (ErrorCode.INVALID_PATIENT, "sms_consent")
    assert refused.value.message == "To get text messages, tick the box to say you agree to them."
    assert channels_on(reload(patient))["sms"] is False

    later = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
    change = patient_preferences_update(patient=patient, now=later, sms=True, sms_consent=True)

    current = reload(patient)
    assert change.switched_on == ("sms",)
    assert (current.reminder_channels, current.sms_consent) == (["email", "sms"], True)
    [opt_in] = ContactOptIn.objects.all()
    assert (opt_in.channel, opt_in.via, opt_in.at) == ("sms", "patient_page", later)
    assert opt_in.wording == sms_consent_wording(current)
    assert "Bloom Clinic" in opt_in.wording and "STOP" in opt_in.wording


def test_email_back_on_is_recorded_without_a_tick(patient):
    patient_preferences_update(patient=patient, now=NOW, email=False)
    patient_preferences_update(patient=patient, now=NOW, email=True)

    assert reload(patient).reminder_channels == ["email", "sms"]
    assert ContactOptIn.objects.get().channel == "email"


def test_a_channel_without_an_address_cannot_be_switched_on(patient):
    Patient.objects.filter(pk=patient.pk).update(email="", phone="", reminder_channels=[], sms_consent=False)

    for kwargs, field in (({"email": True}, "email"), ({"sms": True, "sms_consent": True}, "sms")):
        with pytest.raises(InvalidInput) as refused:
            patient_preferences_update(patient=patient, now=NOW, **kwargs)
        assert refused.value.field == field
        assert "Please ask the clinic to add it." in refused.value.message
    assert not ContactOptIn.objects.exists()


def test_kinds_of_message_are_muted_and_unmuted(patient):
    change = patient_preferences_update(patient=patient, now=NOW, muted_topics=["reminders", "care", "care"])

    assert change.topics_changed and change.muted_topics == ("care", "reminders")
    current = reload(patient)
    assert current.muted_topics == ["care", "reminders"]
    assert not patient_accepts(current, "email", MessageKind.PRE_CARE)[0]
    assert patient_accepts(current, "email", MessageKind.CONFIRMATION)[0]  # confirmations are not optional

    patient_preferences_update(patient=patient, now=NOW, muted_topics=[])
    assert reload(patient).muted_topics == []
    assert not ContactOptOut.objects.exists()  # a kind of message is not a channel


def test_an_unknown_kind_is_refused(patient):
    with pytest.raises(InvalidInput) as refused:
        patient_preferences_update(patient=patient, now=NOW, muted_topics=["marketing"])

    assert refused.value.field == "muted_topics"
    assert reload(patient).muted_topics == []


def test_saving_what_is_already_set_records_nothing(patient):
    before = reload(patient).updated_at

    change = patient_preferences_update(patient=patient, now=NOW, email=True, sms=True, muted_topics=[])

    assert not change.changed
    assert reload(patient).updated_at == before
    assert not ContactOptOut.objects.exists() and not ContactOptIn.objects.exists()


def test_sms_chosen_without_consent_counts_as_off(patient):
    """The front desk may have ticked the channel but not the consent: the patient sees SMS off."""
    Patient.objects.filter(pk=patient.pk).update(sms_consent=False)

    assert channels_on(reload(patient)) == {"email": True, "sms": False}
    patient_preferences_update(patient=patient, now=NOW, sms=False)  # already off: nothing to record
    assert not ContactOptOut.objects.exists()


def test_the_sms_consent_names_every_clinic_of_the_organisation_that_may_text(patient):
    """A patient's consent covers their organisation, and a visit's texts come from the visit's clinic: with
    two sites the wording names the organisation and both, not only the home clinic (the page of a visit at
    the sister site said "from Bloom Clinic" while that visit's texts came from the sister site)."""
    from tests.factories import ClinicFactory

    alone = sms_consent_wording(reload(patient))
    assert "from Bloom Clinic about" in alone

    organisation = patient.clinic.organisation
    organisation.name = "Bloom Group"
    organisation.save(update_fields=["name"])
    ClinicFactory(code="bloom-west", name="Bloom West", organisation=organisation)
    ClinicFactory(code="elsewhere", name="Elsewhere Clinic")  # another organisation's: never named

    wording = sms_consent_wording(reload(patient))
    assert "from Bloom Group (Bloom Clinic, Bloom West) about my appointments" in wording
    assert "Elsewhere" not in wording
