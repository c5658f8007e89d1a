import pytest

from plans.defaults import plan_templates_load
from tests.reminders.conftest import (  # noqa: F401  (the reminders' London clinic, care texts and SMS backend)
    _reminder_settings,
    care_texts,
    clinic,
    patient,
    practitioner,
)


@pytest.fixture
def templates(catalogue):
    """The shipped plan templates, as setup_demo loads them."""
    plan_templates_load()
