"""Texts back on: a START reply undoes the patient's own STOP; a platform or the admin switching a channel is recorded.

docs/reminders.md, "Inbound SMS" and "Who switched texts on or off".
"""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from clinic.models import Patient
from reminders import consent
from reminders.models import ContactOptIn, ContactOptOut, OutboxMessage, OutboxStatus
from tests.api.conftest import http, new_api_client
from tests.factories import ClinicFactory, PatientFactory
from tests.reminders.conftest import book, london

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
INBOUND = "/reminders/sms/inbound/?token=inbound-secret"
MOBILE = "+447911123456"


@pytest.fixture(autouse=True)
def _inbound(settings):
    settings.SMS_INBOUND_TOKEN = "inbound-secret"


@pytest.fixture
def patient(clinic):
    """Consents to e-mail and SMS, at a valid GB mobile (the API checks the number on every change)."""
    return PatientFactory(
        clinic=clinic, email="ada@example.com", phone=MOBILE, reminder_channels=["email", "sms"], sms_consent=True
    )


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield NOW


def reply(client, body: str, sender: str):
    response = client.post(INBOUND, {"From": sender, "Body": body})
    assert response.status_code == 200
    return response


def texts_on(patient) -> bool:
    current = Patient.objects.get(pk=patient.pk)
    return "sms" in (current.reminder_channels or []) and current.sms_consent


@pytest.mark.parametrize("body", ["START", "start", " Start. ", "UNSTOP", "unstop!"])
def test_start_after_the_patients_stop_switches_texts_back_on_and_records_it(client, patient, frozen, body):
    reply(client, "STOP", patient.phone)
    assert not texts_on(patient)
    reply(client, body, patient.phone)
    assert texts_on(patient)
    [opt_in] = ContactOptIn.objects.filter(patient=patient)
    assert (opt_in.channel, opt_in.via, opt_in.at) == ("sms", "sms_start", NOW)
    assert opt_in.wording == body.strip() and opt_in.detail == f"reply from {patient.phone}"
    current = Patient.objects.get(pk=patient.pk)
    assert current.reminder_channels == ["email", "sms"]  # in the catalogue's order, e-mail kept


@pytest.mark.parametrize("body", ["YES", "Start my treatment please", "START STOP", "STARTS", "restart", ""])
def test_other_replies_after_a_stop_leave_texts_off(client, patient, frozen, body):
    reply(client, "STOP", patient.phone)
    reply(client, body, patient.phone)
    assert not texts_on(patient) and not ContactOptIn.objects.exists()


def test_start_when_texts_are_on_changes_and_records_nothing(client, patient, frozen):
    reply(client, "START", patient.phone)
    assert texts_on(patient) and not ContactOptIn.objects.exists()


def test_start_is_no_first_consent(client, clinic, frozen):
    never = PatientFactory(clinic=clinic, phone="+447911123555", reminder_channels=["email"], sms_consent=False)
    reply(client, "START", never.phone)
    assert not texts_on(never) and not ContactOptIn.objects.exists()


def test_start_does_not_undo_texts_switched_off_by_staff(client, patient, frozen):
    """Staff switch texts off for a wrong number, say: a START from that number (its new owner) changes nothing."""
    consent.patient_opt_out(patient=patient, channel="sms", via="sms_stop", now=NOW - timedelta(days=9))
    ContactOptOut.objects.create(patient=patient, channel="sms", via="desk", at=NOW - timedelta(days=1))
    reply(client, "START", patient.phone)
    assert not texts_on(patient) and not ContactOptIn.objects.exists()


def test_start_after_a_stop_plans_the_texts_of_coming_appointments(client, patient, practitioner, frozen):
    appointment = book(patient, "botox", london(2026, 3, 20, 11), NOW)
    reply(client, "STOP", patient.phone)
    OutboxMessage.objects.filter(appointment=appointment, channel="sms").update(status=OutboxStatus.CANCELLED)
    reply(client, "START", patient.phone)
    waiting = OutboxMessage.objects.filter(appointment=appointment, channel="sms", status=OutboxStatus.PENDING)
    assert waiting.exists()


def test_start_from_a_national_number_of_two_clinic_countries_opts_nobody_in(client, patient, frozen):
    """A STOP in national form stops every reading of it; a START must name one number."""
    berlin = ClinicFactory(code="berlin", name="Berlin", timezone="Europe/Berlin", country="DE")
    german = PatientFactory(clinic=berlin, phone="+497911123456", reminder_channels=["sms"], sms_consent=True)
    national = "07911 123456"  # +447911123456 in GB, +497911123456 in Germany
    reply(client, "STOP", national)
    assert not texts_on(patient) and not texts_on(german)
    reply(client, "START", national)
    assert not texts_on(patient) and not texts_on(german)
    reply(client, "START", MOBILE)
    assert texts_on(patient) and not texts_on(german)


def test_start_from_a_national_number_of_one_clinic_country_reaches_the_patient(client, patient, frozen):
    reply(client, "STOP", patient.phone)
    reply(client, "START", "07911 123456")
    assert texts_on(patient)


# --- A platform (API) and the admin switching channels --------------------------------------------------------------


def test_a_platform_switching_texts_back_on_is_recorded_without_words(patient, clinic, frozen):
    consent.patient_opt_out(patient=patient, channel="sms", via="sms_stop", now=NOW)
    client = http(new_api_client(clinic, name="Booksy")[1])
    response = client.patch(
        f"/api/v1/patients/{patient.pk}/",
        {"reminder_channels": ["email", "sms"], "sms_consent": True},
        format="json",
    )
    assert response.status_code == 200, response.content
    [opt_in] = ContactOptIn.objects.filter(patient=patient)
    assert (opt_in.channel, opt_in.via, opt_in.detail, opt_in.wording) == ("sms", "api", "API client Booksy", "")


def test_a_platform_registering_a_patient_with_texts_records_the_consent(clinic, frozen):
    client = http(new_api_client(clinic, name="Booksy")[1])
    response = client.post(
        "/api/v1/patients/",
        {
            "first_name": "Nia",
            "last_name": "Okafor",
            "phone": "+447911123777",
            "reminder_channels": ["sms"],
            "sms_consent": True,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    [opt_in] = ContactOptIn.objects.filter(patient_id=response.json()["id"])
    assert (opt_in.channel, opt_in.via, opt_in.detail) == ("sms", "api", "API client Booksy")


def test_a_platform_switching_texts_off_is_an_opt_out_by_it(patient, clinic, frozen):
    client = http(new_api_client(clinic, name="Booksy")[1])
    response = client.patch(f"/api/v1/patients/{patient.pk}/", {"sms_consent": False}, format="json")
    assert response.status_code == 200, response.content
    [opt_out] = ContactOptOut.objects.filter(patient=patient)
    assert (opt_out.channel, opt_out.via, opt_out.detail) == ("sms", "api", "API client Booksy")
    assert not texts_on(patient)


def admin_edit(admin_client, patient, **fields):
    from django.urls import reverse

    data = {
        "clinic": str(patient.clinic_id),
        "first_name": patient.first_name,
        "last_name": patient.last_name,
        "date_of_birth": "",
        "email": patient.email,
        "phone": patient.phone,
        "muted_topics": "[]",
        **fields,
    }
    for prefix in ("conditions", "medication_courses", "procedure_records"):
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000"})
    response = admin_client.post(reverse("admin:clinic_patient_change", args=[patient.pk]), data)
    assert response.status_code == 302, response.content.decode()[:2000]


def test_the_admin_switching_texts_off_and_on_is_recorded(admin_client, patient, frozen):
    admin_edit(admin_client, patient, reminder_channels='["email"]', sms_consent="on")
    admin_edit(admin_client, patient, reminder_channels='["email", "sms"]', sms_consent="on")
    [opt_out] = ContactOptOut.objects.filter(patient=patient)
    [opt_in] = ContactOptIn.objects.filter(patient=patient)
    assert (opt_out.channel, opt_out.via, opt_out.detail) == ("sms", "admin", "admin (admin)")
    assert (opt_in.channel, opt_in.via, opt_in.wording) == ("sms", "admin", "")


def test_start_does_not_undo_a_stop_after_staff_cleared_the_consent(client, patient, frozen):
    """The desk clears the consent box (texts chosen, not consented: off), then the number replies STOP: that STOP
    switched nothing off, so a START undoes nothing (review of stop 30: it switched texts on that nobody agreed to)."""
    from clinic.record_changes import ChangedBy
    from clinic.services import patient_update

    patient_update(patient=patient, today=NOW.date(), changed_by=ChangedBy("desk", "reception"), sms_consent=False)
    reply(client, "STOP", patient.phone)
    reply(client, "START", patient.phone)
    assert not texts_on(patient) and not ContactOptIn.objects.exists()
    stop = ContactOptOut.objects.get(via="sms_stop")
    assert stop.was_on is False


def test_start_does_not_undo_a_stop_of_texts_never_consented_to(client, clinic, frozen):
    chosen_only = PatientFactory(clinic=clinic, phone=MOBILE, reminder_channels=["sms"], sms_consent=False)
    reply(client, "STOP", MOBILE)
    reply(client, "START", MOBILE)
    assert not texts_on(chosen_only) and not ContactOptIn.objects.exists()


def test_start_does_not_undo_an_opt_out_on_the_patients_own_page(client, patient, frozen):
    """A shared phone: the parent's START must not switch back on what the child switched off on their page."""
    consent.patient_preferences_update(patient=patient, now=NOW, sms=False)
    reply(client, "START", patient.phone)
    assert not texts_on(patient) and not ContactOptIn.objects.exists()


def test_the_desk_is_not_told_of_a_stop_that_an_opt_in_came_after(patient, frozen):
    from clinic.record_changes import ChangedBy
    from clinic.services import patient_update

    consent.patient_opt_out(patient=patient, channel="sms", via="sms_stop", now=NOW - timedelta(days=2))
    assert consent.latest_opt_out(Patient.objects.get(pk=patient.pk), "sms").via == "sms_stop"
    desk = ChangedBy("desk", "reception")
    patient_update(
        patient=patient, today=NOW.date(), changed_by=desk, reminder_channels=["email", "sms"], sms_consent=True
    )
    # Texts off again without an opt-out of their own (a merge keeps the stricter consent: clinic.merging).
    Patient.objects.filter(pk=patient.pk).update(sms_consent=False)
    assert consent.latest_opt_out(Patient.objects.get(pk=patient.pk), "sms") is None


def test_a_stop_while_the_admin_form_is_open_is_kept(admin_client, patient, frozen):
    """The admin's form carries the choices it was drawn with: a STOP that came meanwhile stays, and saving the
    form's other change records no opt-in."""
    drawn = {"initial-reminder_channels": '["email", "sms"]', "initial-sms_consent": "True"}
    consent.patient_opt_out(patient=patient, channel="sms", via="sms_stop", now=NOW)
    admin_edit(admin_client, patient, reminder_channels='["email", "sms"]', sms_consent="on", last_name="New", **drawn)
    current = Patient.objects.get(pk=patient.pk)
    assert current.last_name == "New" and not texts_on(current)
    assert not ContactOptIn.objects.exists()


def test_the_admin_form_carries_the_choices_it_was_drawn_with(admin_client, patient):
    from django.urls import reverse

    page = admin_client.get(reverse("admin:clinic_patient_change", args=[patient.pk])).content.decode()
    assert 'name="initial-sms_consent"' in page and 'name="initial-reminder_channels"' in page
