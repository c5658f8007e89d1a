"""Portal fixtures: a branded London clinic, a patient on e-mail and SMS, a microneedling booked for
Tuesday 10 March 2026 at 10:00, and the clock frozen at the shared `now` (Monday 2 March, 09:00 UTC)."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse

from reminders.links import manage_token
from scheduler.booking import Actor, appointment_book
from tests.factories import ClinicFactory
from tests.helpers import portal_patient, portal_practitioner  # noqa: F401 - fixtures

LONDON = ZoneInfo("Europe/London")
RECEPTION = Actor("reception@test")


def london(y, m, d, hh=10, mm=0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=LONDON)


def page_url(appointment, name: str = "manage") -> str:
    return reverse(f"portal:{name}", args=[manage_token(appointment)])


@pytest.fixture(autouse=True)
def _portal_settings(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SMS_BACKEND = "reminders.channels.LocmemSmsBackend"
    settings.REMINDERS_PUBLIC_BASE_URL = "https://clinic.example"


@pytest.fixture
def frozen(now):
    with time_machine.travel(now, tick=False):
        yield now


@pytest.fixture
def clinic(catalogue):
    return ClinicFactory(
        code="london",
        name="Bloom Clinic",
        timezone="Europe/London",
        phone="+442079460958",
        address="12 Example Street\nLondon W1A 1AA",
        map_url="https://www.openstreetmap.org/search?query=W1A%201AA",
        logo_url="https://cdn.example/bloom.png",
        brand_colour="#7a1f5c",
    )


def book(patient, start_at, now, code="microneedling", **kwargs):
    return appointment_book(
        patient=patient, procedure_code=code, start_at=start_at, actor=RECEPTION, now=now, **kwargs
    ).appointment


@pytest.fixture
def appointment(patient, practitioner, now):
    return book(patient, london(2026, 3, 10), now)
