"""The visit's page names the warn-level rules a booking still to come breaks as the record stands now.

A warning never blocks a booking nor changes its status, so one that a record change brings after the booking (an
isotretinoin course entered since, history imported when a clinic moves over) had been shown nowhere: the booking's
own answer showed the warnings of its moment to whoever booked it, and the clinician treating the patient saw none.
The page now reads the rules once (`appointment_recheck`) for the visit's reasons and warnings: a visit to come shows
them; one under way, done or cancelled does not (it is not checked again).
"""

from datetime import date, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from clinic.models import AppointmentStatus
from tests.factories import MedicationCourseFactory
from tests.frontdesk.conftest import book, url

pytestmark = pytest.mark.django_db

WARNING = "Rule warnings as the record stands now"


def page(client, clinic, appointment) -> str:
    response = client.get(url("appointment", clinic, appointment))
    assert response.status_code == 200
    return response.content.decode()


def test_a_course_entered_after_a_filler_was_booked_is_named_on_the_visit(
    clinical, clinic, patient, practitioner, frozen
):
    filler = book(patient, practitioner, "filler", frozen + timedelta(days=7))
    assert WARNING not in page(clinical, clinic, filler)

    MedicationCourseFactory(patient=patient, started_on=date(2025, 9, 1), ended_on=date(2026, 2, 15))

    shown = page(clinical, clinic, filler)
    assert WARNING in shown
    assert "Isotretinoin" in shown or "isotretinoin" in shown
    filler.refresh_from_db()
    assert filler.status == AppointmentStatus.CONFIRMED  # a warning changes nothing but what the page says


@pytest.mark.parametrize("status", [AppointmentStatus.CANCELLED, AppointmentStatus.NO_SHOW])
def test_a_visit_no_longer_to_come_names_no_warning(clinical, clinic, patient, practitioner, frozen, status):
    MedicationCourseFactory(patient=patient, started_on=date(2025, 9, 1), ended_on=date(2026, 2, 15))
    visit = book(patient, practitioner, "filler", frozen + timedelta(days=7), status=status)

    assert WARNING not in page(clinical, clinic, visit)


def test_a_visit_under_way_names_no_warning(clinical, clinic, patient, practitioner, frozen):
    MedicationCourseFactory(patient=patient, started_on=date(2025, 9, 1), ended_on=date(2026, 2, 15))
    started = book(patient, practitioner, "filler", frozen - timedelta(minutes=10))

    assert WARNING not in page(clinical, clinic, started)


def test_the_page_reads_the_rules_once_whatever_the_history(
    clinical, clinic, patient, practitioner, frozen, django_assert_max_num_queries
):
    filler = book(patient, practitioner, "filler", frozen + timedelta(days=7))
    MedicationCourseFactory(patient=patient, started_on=date(2025, 9, 1), ended_on=date(2026, 2, 15))
    clinical.get(url("appointment", clinic, filler))  # warm: sessions, caches
    with CaptureQueriesContext(connection) as few:
        page(clinical, clinic, filler)
    for n in range(30):
        book(patient, practitioner, "botox", frozen - timedelta(days=400 + 100 * n), status=AppointmentStatus.COMPLETED)
    with django_assert_max_num_queries(len(few)):
        assert WARNING in page(clinical, clinic, filler)
