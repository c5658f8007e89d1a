import pytest

# tests/qa/helpers.py asserts on answers for the probes: rewrite its asserts as pytest does a test module's.
pytest.register_assert_rewrite("tests.qa.helpers")
