"""Fixtures for the reminders tests: a London clinic with the shipped rules and care texts.

SMS goes to the in-memory backend and e-mail to Django's locmem outbox, so a
test reads exactly what a patient would have received.
"""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from reminders.channels import LocmemSmsBackend
from scheduler.booking import Actor, appointment_book
from tests import shipped
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory
from tests.reminders.support import FakeHttpServer

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
RECEPTION = Actor("reception@test")
CLINICIAN = Actor("clinician@test", clinical=True)


def london(y, m, d, hh=10, mm=0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=LONDON)


@pytest.fixture(autouse=True)
def _reminder_settings(settings):
    settings.SMS_BACKEND = "reminders.channels.LocmemSmsBackend"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.REMINDERS_PUBLIC_BASE_URL = "https://clinic.example"
    settings.WEBHOOKS_ALLOW_HTTP = True
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = True  # the fake servers listen on 127.0.0.1
    LocmemSmsBackend.outbox = []
    yield
    LocmemSmsBackend.outbox = []


@pytest.fixture
def twilio(settings):
    """Twilio's Messages API as a local fake server: answers 201 with a sid unless a test scripts otherwise."""
    settings.SMS_BACKEND = "reminders.channels.TwilioSmsBackend"
    settings.TWILIO_ACCOUNT_SID = "AC0123456789"
    settings.TWILIO_AUTH_TOKEN = "secret-token"
    settings.SMS_FROM = "+447700900999"
    with FakeHttpServer(default=(201, b'{"sid": "SM42", "status": "queued"}')) as server:
        settings.TWILIO_API_BASE = server.url
        yield server


@pytest.fixture
def care_texts(catalogue):
    shipped.care_texts()  # care_texts_load's rows (its checks run once a process: tests/shipped.py)


@pytest.fixture
def clinic(care_texts):
    return ClinicFactory(code="london", name="Bloom Clinic", timezone="Europe/London")


@pytest.fixture
def practitioner(clinic):
    return PractitionerFactory(clinic=clinic, name="Dr Hart")


@pytest.fixture
def patient(clinic):
    """Consents to e-mail and SMS."""
    return PatientFactory(
        clinic=clinic,
        first_name="Ada",
        email="ada@example.com",
        phone="+447700900123",
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )


def book(patient, code, when, now, **kwargs):
    return appointment_book(
        patient=patient, procedure_code=code, start_at=when, actor=RECEPTION, now=now, **kwargs
    ).appointment
