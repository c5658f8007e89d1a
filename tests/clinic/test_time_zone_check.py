"""`manage.py check --database default` names a clinic whose time zone this server cannot read (clinic.E001,
clinic/checks.py): one written past the admin's form, or dropped by a later tzdata, would fail every page and
message of its visits, so a deploy's check says so first."""

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from clinic.models import Clinic
from tests.factories import ClinicFactory

pytestmark = pytest.mark.django_db


def zone_errors() -> list:
    return [m for m in run_checks(databases=["default"]) if m.id == "clinic.E001"]


def test_every_readable_zone_passes_and_a_misspelt_one_is_named():
    good, bad = ClinicFactory(code="ldn", timezone="Europe/London"), ClinicFactory(code="typo")
    ClinicFactory(code="nyc", timezone="America/New_York")
    assert zone_errors() == []

    Clinic.objects.filter(pk=bad.pk).update(timezone="Europe/Londn")  # past the admin's validator
    [error] = zone_errors()
    assert error.obj == "typo" and "'Europe/Londn'" in error.msg and good.code not in error.msg
    with pytest.raises(SystemCheckError, match="clinic.E001"):
        call_command("check", "--database", "default")


def test_the_check_runs_only_with_a_database_named():
    Clinic.objects.filter(pk=ClinicFactory(code="typo").pk).update(timezone="Not/AZone")
    assert [m for m in run_checks() if m.id == "clinic.E001"] == []  # plain `check`: no database read
