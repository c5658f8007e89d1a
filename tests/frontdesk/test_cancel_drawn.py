"""The desk's cancel form carries where the visit was, and with whom, when the page was drawn (`from_start_at`, as the
move form does; docs/frontdesk.md): a cancel sent after a colleague moved the visit cancels nothing (409) and the page
says where it is now, the reason kept, drawn again from now so that sending it again cancels; a form without it (a
page from before) is not checked; a note saved since does not count.
"""

from __future__ import annotations

import html
import re

import pytest

from clinic.models import AppointmentStatus
from scheduler.booking import Actor, appointment_book, appointment_reschedule
from tests.frontdesk.conftest import at_london, url

pytestmark = pytest.mark.django_db


def _drawn(response) -> str:
    """The cancel form's `from_start_at` (the move form's is drawn first on the page only when it is shown)."""
    form = re.search(r'action="[^"]*/cancel/".*?</form>', response.content.decode(), re.S)
    assert form, "no cancel form"
    found = re.search(r'name="from_start_at" value="([^"]*)"', form.group(0))
    assert found, "the cancel form carries no from_start_at"
    return html.unescape(found.group(1))


@pytest.fixture
def visit(patient, practitioner, frozen):
    return appointment_book(
        patient=patient,
        procedure_code="botox",
        start_at=at_london(2026, 3, 10, 10),
        actor=Actor("test"),
        now=frozen,
        practitioner_id=str(practitioner.pk),
    ).appointment


def test_a_cancel_from_a_page_drawn_before_a_colleague_moved_the_visit_cancels_nothing(
    clinic, visit, reception, frozen
):
    drawn = _drawn(reception.get(url("appointment", clinic, visit)))
    appointment_reschedule(appointment=visit, start_at=at_london(2026, 3, 13, 10), actor=Actor("colleague"), now=frozen)

    refused = reception.post(url("cancel", clinic, visit), {"reason": "Patient rang", "from_start_at": drawn})

    visit.refresh_from_db()
    assert refused.status_code == 409 and visit.status == AppointmentStatus.CONFIRMED
    page = refused.content.decode()
    assert "This visit has changed since you opened this page: it is now on Fri 13 Mar 2026, 10:00" in page
    assert re.search(r'<details class="danger-zone" open>', page)  # the kept reason in sight
    assert "Patient rang" in page and _drawn(refused) != drawn
    done = reception.post(url("cancel", clinic, visit), {"reason": "Patient rang", "from_start_at": _drawn(refused)})
    visit.refresh_from_db()
    assert done.status_code == 302 and visit.status == AppointmentStatus.CANCELLED


def test_a_note_saved_since_does_not_refuse_the_cancel(clinic, visit, reception, frozen):
    from clinic.services import appointment_notes_set

    drawn = _drawn(reception.get(url("appointment", clinic, visit)))
    appointment_notes_set(appointment=visit, notes="Parking at the back")  # not what a cancel would undo
    assert reception.post(url("cancel", clinic, visit), {"reason": "", "from_start_at": drawn}).status_code == 302
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.CANCELLED


def test_a_cancel_without_a_version_is_not_checked(clinic, visit, reception, frozen):
    appointment_reschedule(appointment=visit, start_at=at_london(2026, 3, 13, 10), actor=Actor("colleague"), now=frozen)
    assert reception.post(url("cancel", clinic, visit), {"reason": ""}).status_code == 302
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.CANCELLED


def test_a_damaged_drawn_is_said_and_the_form_drawn_again_from_now(clinic, visit, reception, frozen):
    refused = reception.post(url("cancel", clinic, visit), {"reason": "Rang", "from_start_at": "yesterday"})
    page = refused.content.decode()
    assert refused.status_code == 400 and "This page could not say where the visit was" in page
    assert _drawn(refused) != "yesterday" and "Rang" in page
    assert (
        reception.post(url("cancel", clinic, visit), {"reason": "Rang", "from_start_at": _drawn(refused)}).status_code
        == 302
    )
    visit.refresh_from_db()
    assert visit.status == AppointmentStatus.CANCELLED
