"""The appointment page has every id once, in every status and for both roles, so each label and each
aria-describedby reaches its own field (a clinician's pending booking once had two textareas id="id_reason")."""

from collections import Counter
from html.parser import HTMLParser

import pytest

from clinic.models import Appointment, AppointmentStatus
from tests.frontdesk.conftest import book, url
from tests.frontdesk.html import field_error, squash

pytestmark = pytest.mark.django_db


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: Counter[str] = Counter()
        self.elements: dict[str, tuple[str, dict]] = {}  # id -> (tag, attributes) of its first element
        self.label_for: list[str] = []
        self.described: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids[attrs["id"]] += 1
            self.elements.setdefault(attrs["id"], (tag, attrs))
        if tag == "label" and attrs.get("for"):
            self.label_for.append(attrs["for"])
        self.described += (attrs.get("aria-describedby") or "").split()


def ids_of(response) -> _Ids:
    parser = _Ids()
    parser.feed(response.content.decode())
    return parser


def assert_ids_unique_and_tied(response) -> None:
    found = ids_of(response)
    assert {id_: n for id_, n in found.ids.items() if n > 1} == {}
    assert [ref for ref in found.label_for if ref not in found.ids] == []
    assert [ref for ref in found.described if ref not in found.ids] == []
    assert [ref for ref, n in Counter(found.label_for).items() if n > 1] == []  # one label per field


def appointment_in(status, patient, practitioner, frozen) -> Appointment:
    return book(patient, practitioner, "microneedling", frozen, status=status)


@pytest.mark.parametrize("role", ["reception", "clinical"])
@pytest.mark.parametrize("status", AppointmentStatus.values)
def test_the_appointment_page_has_every_id_once_in_each_status_for_each_role(
    request, role, status, clinic, patient, practitioner, eczema_history, frozen
):
    # Given an appointment in that status (eczema: a pending one has clearance reasons to show)
    appointment = appointment_in(status, patient, practitioner, frozen)
    # When a receptionist or a clinician opens it
    response = request.getfixturevalue(role).get(url("appointment", clinic, appointment))
    # Then no id is used twice and every label and description points at one element
    assert response.status_code == 200
    assert_ids_unique_and_tied(response)


def test_on_a_pending_booking_a_clinician_has_the_clearance_and_the_cancel_reason_each_with_its_own_label(
    clinical, clinic, patient, practitioner, eczema_history, frozen
):
    pending = appointment_in(AppointmentStatus.PENDING_CLEARANCE, patient, practitioner, frozen)
    response = clinical.get(url("appointment", clinic, pending))
    page = squash(response)
    assert '<label for="id_reason">Clinical reason for clearance' in page
    assert '<label for="cancel_reason">Reason for cancelling (optional)</label>' in page
    elements = ids_of(response).elements
    tag, clearance = elements["id_reason"]
    assert (tag, clearance["name"], clearance["aria-describedby"]) == (
        "textarea",
        "reason",
        "id_reason-help id_reason-error",
    )
    tag, cancel = elements["cancel_reason"]
    assert (tag, cancel["name"], cancel["aria-describedby"]) == ("textarea", "reason", "cancel_reason-error")


def test_a_clearance_refused_for_no_reason_keeps_the_ids_apart(
    clinical, clinic, patient, practitioner, eczema_history, frozen
):
    pending = appointment_in(AppointmentStatus.PENDING_CLEARANCE, patient, practitioner, frozen)
    response = clinical.post(url("clear", clinic, pending), {"reason": ""})
    assert response.status_code == 400
    assert field_error(response, "id_reason") == "This field is required."
    assert field_error(response, "cancel_reason") == ""  # the error is the clearance's, not the cancel's
    assert_ids_unique_and_tied(response)


def test_a_cancel_reason_too_long_is_an_error_on_the_cancel_field(
    clinical, clinic, patient, practitioner, eczema_history, frozen
):
    pending = appointment_in(AppointmentStatus.PENDING_CLEARANCE, patient, practitioner, frozen)
    response = clinical.post(url("cancel", clinic, pending), {"reason": "x" * 2001})
    assert response.status_code == 400
    assert "at most 2000 characters" in field_error(response, "cancel_reason")
    assert field_error(response, "id_reason") == ""
    assert '<details class="danger-zone" open>' in squash(response)
    _, cancel = ids_of(response).elements["cancel_reason"]
    assert (cancel["aria-invalid"], cancel["aria-describedby"]) == ("true", "cancel_reason-error")
    assert "aria-invalid" not in ids_of(response).elements["id_reason"][1]
    assert_ids_unique_and_tied(response)


def test_the_cancel_form_still_posts_its_reason_by_name(clinical, clinic, patient, practitioner, frozen):
    appointment = book(patient, practitioner, "botox", frozen)
    response = clinical.post(url("cancel", clinic, appointment), {"reason": "Patient called: away that week."})
    assert response.status_code == 302
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.CANCELLED
    assert appointment.cancel_reason == "Patient called: away that week."
