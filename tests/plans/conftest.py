import pytest

from tests import shipped
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
    shipped.plan_templates()  # plan_templates_load's rows (its checks run once a process: tests/shipped.py)
