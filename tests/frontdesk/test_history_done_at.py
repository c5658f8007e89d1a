"""The desk's "add one done elsewhere" asks where it was done when the organisation has sister sites.

A procedure done at a sister site takes that site's date and time (docs/rules.md: a reported day is read in the
zone of the clinic that recorded it); anything else, the desk's. An organisation of one clinic is not asked. A
choice that is not one of the organisation's other sites is an error next to the field, and nothing is recorded.
"""

from datetime import UTC, datetime

import pytest

from clinic.models import ProcedureRecord
from tests.factories import ClinicFactory
from tests.frontdesk.conftest import url
from tests.frontdesk.html import field_error, squash

pytestmark = pytest.mark.django_db


@pytest.fixture
def sister(clinic):
    """The London clinic's sister site in New York (five hours behind London in February)."""
    return ClinicFactory(
        code="ny-site", name="Manhattan Site", timezone="America/New_York", organisation=clinic.organisation
    )


def add(reception, clinic, patient, **fields):
    data = {"record-procedure": "botox", "record-performed_on": "2026-02-20", **fields}
    return reception.post(url("procedure_add", clinic, patient), {k.replace("__", "-"): v for k, v in data.items()})


def test_an_organisation_of_one_clinic_is_not_asked_where(reception, clinic, patient, frozen):
    page = squash(reception.get(url("patient_history", clinic, patient)))
    assert "Where it was done" not in page
    assert add(reception, clinic, patient).status_code == 302
    record = ProcedureRecord.objects.get(patient=patient)
    assert record.clinic_id == clinic.pk and record.performed_at == datetime(2026, 2, 20, 23, 59, tzinfo=UTC)


def test_the_desk_of_an_organisation_with_sister_sites_offers_them(reception, clinic, patient, sister, frozen):
    page = squash(reception.get(url("patient_history", clinic, patient)))
    assert "Where it was done" in page
    assert "London Clinic, or another provider" in page
    assert "Manhattan Site (sister site, America/New_York)" in page


def test_a_day_at_the_sister_site_is_that_sites_day(reception, clinic, patient, sister, frozen):
    """20 February, no time, at the New York site: the end of 20 February in New York (04:59 UTC on the 21st),
    not of 20 February in London."""
    assert add(reception, clinic, patient, record__done_where=str(sister.pk)).status_code == 302
    record = ProcedureRecord.objects.get(patient=patient)
    assert record.clinic_id == sister.pk
    assert record.performed_at == datetime(2026, 2, 21, 4, 59, tzinfo=UTC)


def test_a_time_at_the_sister_site_is_that_sites_clock(reception, clinic, patient, sister, frozen):
    add(reception, clinic, patient, record__done_where=str(sister.pk), record__performed_time="14:30")
    assert ProcedureRecord.objects.get(patient=patient).performed_at == datetime(2026, 2, 20, 19, 30, tzinfo=UTC)


def test_left_as_it_is_the_desks_own_clinic_dates_it(reception, clinic, patient, sister, frozen):
    add(reception, clinic, patient, record__done_where="", record__performed_time="14:30")
    record = ProcedureRecord.objects.get(patient=patient)
    assert (record.clinic_id, record.performed_at) == (clinic.pk, datetime(2026, 2, 20, 14, 30, tzinfo=UTC))


def test_a_time_the_sister_sites_clock_skips_is_refused_there_not_here(reception, clinic, patient, sister, frozen):
    """New York's clocks went forward on 8 March 2026 at 02:00; London's not until 29 March."""
    with_gap = {"record__performed_on": "2026-03-01", "record__performed_time": "02:30"}
    assert add(reception, clinic, patient, **with_gap).status_code == 302  # London: a real time

    gap = {"record__performed_on": "2025-03-09", "record__performed_time": "02:30"}  # New York's 2025 change
    response = add(reception, clinic, patient, record__done_where=str(sister.pk), **gap)
    assert response.status_code == 200
    assert "does not exist" in field_error(response, "id_record-performed_time")
    assert ProcedureRecord.objects.filter(patient=patient).count() == 1


@pytest.mark.parametrize("choice", ["not-a-clinic", "00000000-0000-0000-0000-000000000000", "other"])
def test_a_site_not_of_the_organisation_is_an_error_next_to_the_field(
    reception, clinic, patient, sister, other_clinic, frozen, choice
):
    chosen = str(other_clinic.pk) if choice == "other" else choice
    response = add(reception, clinic, patient, record__done_where=chosen)
    assert response.status_code == 200
    assert "Select a valid choice" in field_error(response, "id_record-done_where")
    assert not ProcedureRecord.objects.exists()


def test_the_desks_own_clinic_is_not_offered_twice(reception, clinic, patient, sister, frozen):
    response = add(reception, clinic, patient, record__done_where=str(clinic.pk))
    assert "Select a valid choice" in field_error(response, "id_record-done_where")
    assert not ProcedureRecord.objects.exists()
