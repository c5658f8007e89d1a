"""Fixtures the QA probes share. The API's world (a London clinic with Dr Ada and Pat Lee, its sister site West,
a New York clinic of another organisation, platform keys) is tests/api/conftest.py's own, reused here, as are the
shipped care texts and the frozen clock of tests/reminders and tests/portal. A probe that needs another variant
(another clinic code, another zone) defines its own fixture of that name, which wins over these.
"""

import pytest
import time_machine
from django.core import mail

from reminders.channels import LocmemSmsBackend
from reminders.dispatch import dispatch_local
from tests import shipped
from tests.api.conftest import (  # noqa: F401 (fixtures)
    api,
    api_key,
    clinic,
    clinical_api,
    other_clinic,
    other_patient,
    other_practitioner,
    patient,
    practitioner,
    west,
)
from tests.factories import PractitionerFactory
from tests.portal.conftest import frozen  # noqa: F401 (fixture: the clock frozen at the shared `now`)
from tests.qa.helpers import NOW, book, fresh_appointment, ldn, texts
from tests.reminders.conftest import care_texts  # noqa: F401 (fixture)


@pytest.fixture
def clock():
    """The clock stopped at the suite's Monday (2 March 2026, 09:00 UTC); the traveller, to move it on."""
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def ticking_clock():
    """The clock started at the suite's Monday (2 March 2026, 09:00 UTC) and running: a probe driving the API as a
    platform would, whose requests take time."""
    with time_machine.travel(NOW, tick=True):
        yield


@pytest.fixture
def platform_ready(care_texts, settings):  # noqa: F811 (the fixture above)
    """What an API probe's world starts from: the shipped care texts and plan templates, webhooks allowed to a
    local test host over http, and a rule change's re-check run in this process (as with no broker)."""
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = True
    settings.WEBHOOKS_ALLOW_HTTP = True
    settings.CELERY_BROKER_URL = ""
    shipped.plan_templates()  # plan_templates_load's rows (its checks run once a process: tests/shipped.py)


@pytest.fixture
def message_outboxes(settings):
    """E-mail to Django's locmem outbox and texts to the in-memory SMS backend (emptied before and after), links
    to https://clinic.example. Probes that read messages use it for every test (pytestmark usefixtures)."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SMS_BACKEND = "reminders.channels.LocmemSmsBackend"
    settings.REMINDERS_PUBLIC_BASE_URL = "https://clinic.example"
    LocmemSmsBackend.outbox = []
    yield
    LocmemSmsBackend.outbox = []


@pytest.fixture
def told(patient, practitioner, frozen):  # noqa: F811 (the fixtures above)
    """Microneedling booked for Tuesday 10 March 10:00 London, its confirmation sent (e-mail and text)."""
    appointment = book(patient, ldn(2026, 3, 10), frozen)
    dispatch_local(now=frozen)
    assert len(mail.outbox) == 1 and len(texts()) == 1
    mail.outbox.clear()
    LocmemSmsBackend.outbox = []
    return fresh_appointment(appointment)


@pytest.fixture
def dr_london(london):
    """The practitioner of the probe's `london` clinic."""
    return PractitionerFactory(clinic=london, name="Dr London")


@pytest.fixture
def dr_west(west):  # noqa: F811 (the fixture above)
    """The practitioner of the probe's `west` clinic."""
    return PractitionerFactory(clinic=west, name="Dr West")
