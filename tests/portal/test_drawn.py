"""What the patient's confirm step and cancel page carry of where the visit was when drawn (`drawn`, docs/portal.md
"The clinic changed the visit meanwhile"): a damaged value is a clear 400 with nothing changed; a form that carries
none (a page drawn before it did) is not checked; the value a page carries is where the visit is as drawn.
"""

from __future__ import annotations

import re

import pytest
from django.test import Client

from clinic.models import AppointmentStatus
from portal.forms import drawn_key, slot_key
from tests.portal.conftest import london, page_url

pytestmark = pytest.mark.django_db


def _hidden(response, name: str) -> str:
    found = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)"', response.content.decode())
    assert found, name
    return found.group(1)


def test_each_page_carries_where_the_visit_is_as_drawn(appointment, frozen):
    client = Client()
    key = slot_key(london(2026, 3, 12), str(appointment.practitioner_id))
    confirm = client.get(page_url(appointment, "move_confirm"), {"slot": key})
    cancel = client.get(page_url(appointment, "cancel"))
    assert _hidden(confirm, "drawn") == _hidden(cancel, "drawn") == drawn_key(appointment)
    assert drawn_key(appointment).startswith("20260310T1000Z_")  # Tuesday 10 March, 10:00 London (GMT)


def test_a_damaged_drawn_is_a_400_and_changes_nothing(appointment, frozen):
    client = Client()
    key = slot_key(london(2026, 3, 12), str(appointment.practitioner_id))
    moved = client.post(page_url(appointment, "move_confirm"), {"slot": key, "drawn": "yesterday"})
    cancelled = client.post(page_url(appointment, "cancel"), {"reason": "", "drawn": "yesterday"})
    for answer in (moved, cancelled):
        assert answer.status_code == 400
        assert "This page could not be read. Please open it again from your link." in answer.content.decode()
    appointment.refresh_from_db()
    assert (appointment.start_at, appointment.status) == (london(2026, 3, 10), AppointmentStatus.CONFIRMED)


def test_a_form_that_carries_no_drawn_is_not_checked(appointment, frozen):
    client = Client()
    key = slot_key(london(2026, 3, 12), str(appointment.practitioner_id))
    assert client.post(page_url(appointment, "move_confirm"), {"slot": key}).status_code == 303
    appointment.refresh_from_db()
    assert appointment.start_at == london(2026, 3, 12)
