import pytest

from plans.defaults import plan_templates_load


@pytest.fixture
def templates(catalogue):
    """The shipped plan templates, as setup_demo loads them."""
    plan_templates_load()
