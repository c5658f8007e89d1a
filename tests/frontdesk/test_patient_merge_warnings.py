"""The patient's page keeps the warnings a merge brought together while they still stand.

A desk merge shows its warnings once, as it is made, and an API merge answers them to the platform only; staff at
any desk of the organisation find them on the survivor's page ("To check: the records merged bring ... together"),
each naming its booking, the rule's message and the merge's date, until the booking is over, moved away or cancelled,
while the rules still say it: each warned booking is checked again as it stands (a visit of the pair cancelled,
missed or moved clear ends it; a small move keeps it). Merges into a record that was merged on since count too.
One statement for the merges, and a timeline read for each warned booking.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from frontdesk.selectors import patient_record
from scheduler.booking import appointment_cancel, appointment_reschedule
from tests.factories import ClinicFactory, PractitionerFactory
from tests.frontdesk.conftest import url
from tests.frontdesk.helpers import HEADING, RECEPTION, book, merge, twin
from tests.frontdesk.html import squash

pytestmark = pytest.mark.django_db


@pytest.fixture
def west(clinic):
    return ClinicFactory(code="west", name="West Clinic", timezone="Europe/London", organisation=clinic.organisation)


@pytest.fixture
def dr_west(west):
    return PractitionerFactory(clinic=west, name="Dr West")


def shown(client, clinic, patient) -> str:
    page = squash(client.get(url("patient", clinic, patient)))
    return page.split(HEADING, 1)[1].split("A warning blocks nothing", 1)[0] if HEADING in page else ""


@pytest.fixture
def merged_botox(clinic, west, practitioner, dr_west, patient, frozen):
    """Olivia's Botox booked at London (20 March) and, on a duplicate record at West, three weeks later (10 April):
    merged by a platform, the repeat rule (12 weeks, warn) now names both."""
    london = book(patient, "botox", frozen + timedelta(days=18), practitioner, frozen)
    duplicate = twin(west, "Benett")
    west_botox = book(duplicate, "botox", frozen + timedelta(days=39), dr_west, frozen)
    record = merge(duplicate, patient, frozen)
    assert len(record.details["warnings"]) == 2
    return london, west_botox


def test_the_survivors_page_names_each_warning_with_its_booking_and_the_merge(
    reception, clinic, patient, merged_botox, frozen
):
    london, west_botox = merged_botox
    text = shown(reception, clinic, patient)
    assert text.count("(merge of 2 Mar 2026)") == 2, text
    assert "Botox, Fri 20 Mar 2026, 09:00" in text and "Botox, Fri 10 Apr 2026, 10:00 at West Clinic" in text, text
    assert "earliest advised from 12 June 2026" in text, text  # the repeat rule's message, 12 weeks after 20 March


def test_cancelling_one_of_the_pair_clears_both(reception, clinic, patient, merged_botox, frozen):
    london, west_botox = merged_botox
    west_botox.refresh_from_db()  # now the survivor's
    appointment_cancel(appointment=west_botox, actor=RECEPTION, now=frozen, reason="double booking")
    assert shown(reception, clinic, patient) == ""


@pytest.mark.parametrize("which", ["the London one", "the West one"])
def test_a_move_clear_of_the_rule_ends_the_warning_and_a_small_one_keeps_it(
    reception, clinic, patient, merged_botox, frozen, which
):
    """Each warned booking is checked again as it stands: moved 12 weeks clear of the other Botox, the repeat rule
    no longer warns and the merge's word is gone; moved two hours, it still warns (an API move's warning reached no
    desk) and stays named."""
    london, west_botox = merged_botox
    moved = london if which == "the London one" else west_botox
    moved.refresh_from_db()
    later = frozen + timedelta(hours=1)
    moved = appointment_reschedule(
        appointment=moved, start_at=moved.start_at + timedelta(hours=2), actor=RECEPTION, now=later
    ).appointment
    assert shown(reception, clinic, patient).count("(merge of 2 Mar 2026)") == 2
    clear = (
        west_botox.start_at + timedelta(weeks=13)
        if moved.pk == west_botox.pk
        else london.start_at - timedelta(weeks=13)
    )
    if clear < frozen:  # London cannot move 13 weeks earlier: move West away from it instead
        other = type(west_botox).objects.get(pk=west_botox.pk)
        appointment_reschedule(
            appointment=other, start_at=london.start_at + timedelta(weeks=13), actor=RECEPTION, now=later
        )
    else:
        appointment_reschedule(appointment=moved, start_at=clear, actor=RECEPTION, now=later)
    assert shown(reception, clinic, patient) == ""


def test_a_booking_that_is_over_is_no_longer_named(clinic, patient, merged_botox, frozen):
    london, west_botox = merged_botox
    later = frozen + timedelta(days=25)  # the London Botox is past, the West one to come
    named = [w.appointment.pk for w in patient_record(patient=patient, now=later, clinic=clinic).merge_warnings]
    assert named == [west_botox.pk]


def test_a_merge_into_a_record_merged_on_since_is_kept(reception, clinic, west, practitioner, dr_west, patient, frozen):
    middle = twin(west, "Benett")
    book(middle, "botox", frozen + timedelta(days=39), dr_west, frozen)
    third = twin(west, "Bennet")
    book(third, "botox", frozen + timedelta(days=18), dr_west, frozen)
    assert merge(third, middle, frozen).details["warnings"]
    merge(middle, patient, frozen + timedelta(minutes=5))  # nothing new brought together: no warning of its own
    assert shown(reception, clinic, patient).count("(merge of 2 Mar 2026)") == 2


def test_no_merge_no_section_and_one_statement_whatever_the_merges(
    reception, clinic, west, practitioner, dr_west, patient, frozen
):
    book(patient, "botox", frozen + timedelta(days=18), practitioner, frozen)
    reception.get(url("patient", clinic, patient))  # caches warmed
    with CaptureQueriesContext(connection) as none:
        assert shown(reception, clinic, patient) == ""
    for n in range(3):
        duplicate = twin(west, f"Benett{n}")
        book(duplicate, "botox", frozen + timedelta(days=30 + 7 * n), dr_west, frozen)
        merge(duplicate, patient, frozen)
    with CaptureQueriesContext(connection) as three:
        assert shown(reception, clinic, patient).count("(merge of 2 Mar 2026)") >= 3
    warned = 4  # the London Botox and the three merged in
    assert len(three.captured_queries) <= len(none.captured_queries) + 1 + 2 * warned, (len(none), len(three))
