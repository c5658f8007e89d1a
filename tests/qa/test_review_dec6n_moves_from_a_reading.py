"""Review of the two commits of 6 December that refuse a move made from a stale reading under the move's locks
(scheduler.booking.appointment_reschedule: `drawn=` from the desk's move forms, `made_from=` from an API If-Match,
the appointment's version, which `GET /api/v1/appointments/{id}/` now answers as its ETag).

Probed: the desk's 409 page after the service's refusal (full page and the htmx fragment of the calendar's dialog),
the calendar's drag-and-drop move, the "same move sent again" exemption (`_already_there`), an If-Match with an
Idempotency-Key, ETag churn (reminders going out, a record re-check that finds the same), and the docs' claims
(docs/api.md "Changing safely", docs/frontdesk.md).

Found right (passing tests): the desk's 409 page, whole or as a fragment, is drawn from where the visit is now and
its "Move to" moves it; a stale move from that page is refused with nothing moved; reminders going out and a re-check
that finds the same leave the ETag as it was; an ETag read from a flagged appointment (JSON review reasons) is
accepted under the lock; the reschedule's 201 carries no ETag and a keyed 201 replays whatever the If-Match.

Found wrong, all mended the same day (the tests below pass since):
- the calendar's drag-and-drop move dialog was drawn from where the visit is when dropped, not where the grid showed
  it: a drag from a grid drawn before a colleague moved the visit moved it from where they put it, unseen. The card
  now carries where it was drawn (`data-drawn`), which calendar.js sends as `from_start_at`;
- "the same move sent again" was re-checked: after the visit was flagged since (a Botox recorded), it answered 409
  `booking_refused`. A move to where the visit already is is no longer refused by the rules either;
- the exemption compared the practitioner id as text (the id in capitals, which the API accepts, was a 412); ids are
  compared as UUIDs now.

Questions, decided the same day: the key's fingerprint counts the If-Match (the same key with a fresh ETag after a 412
is a 422, docs/api.md); the appointment's ETag is the version of what the API shows
(`clinic.services.appointment_version`), so a desk note does not make a platform's move a 412.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import unescape
from html.parser import HTMLParser

import pytest
from django.core import mail
from django.urls import reverse

from clinic.models import Appointment, AppointmentStatus, AuditAction, AuditEvent, StaffRole
from clinic.services import appointment_notes_set, procedure_record_add
from reminders.dispatch import dispatch_local
from reminders.models import OutboxMessage
from scheduler.booking import appointment_reschedule
from tests.qa.helpers import API, NOW, RECEPTION, book, ldn, staff_client

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock")]

COLLEAGUE = RECEPTION


# --- Helpers --------------------------------------------------------------------------------------------------------


def _moves(appointment_id) -> int:
    return AuditEvent.objects.filter(appointment_id=appointment_id, action=AuditAction.RESCHEDULED).count()


def _read(api, appointment_id):
    response = api.get(f"{API}/appointments/{appointment_id}/")
    assert response.status_code == 200, response.content
    return response


def _move(api, appointment_id, start: str, etag: str | None = None, key: str | None = None, **body):
    headers = {}
    if etag is not None:
        headers["HTTP_IF_MATCH"] = etag
    if key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = key
    return api.post(
        f"{API}/appointments/{appointment_id}/reschedule/", {"start": start, **body}, format="json", **headers
    )


def _api_booking(api, patient, start="2026-03-10T10:00:00+00:00") -> str:
    response = api.post(
        f"{API}/appointments/",
        {"patient": str(patient.pk), "procedure": "microneedling", "start": start, "area": "face"},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


class _Forms(HTMLParser):
    """Every POST form of a page or fragment: (action, classes, {name: value}) of its hidden inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, str, dict[str, str]]] = []
        self.hidden: list[str] = []  # every hidden from_start_at, whichever form
        self._open: dict[str, str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = {name: value or "" for name, value in attrs}
        if tag == "form" and attrs.get("method", "").lower() == "post":
            self._open = {}
            self.forms.append((attrs.get("action", ""), attrs.get("class", ""), self._open))
        elif tag == "input" and attrs.get("type") == "hidden":
            if attrs.get("name") == "from_start_at":
                self.hidden.append(attrs.get("value", ""))
            if self._open is not None and attrs.get("name"):
                self._open[attrs["name"]] = attrs.get("value", "")

    def handle_endtag(self, tag):
        if tag == "form":
            self._open = None


def _forms(response) -> _Forms:
    parser = _Forms()
    parser.feed(response.content.decode())
    return parser


def _move_now_form(response) -> dict[str, str]:
    """The panel's "Move to ..." form (`book-now`) of a page or fragment."""
    [found] = [fields for _, classes, fields in _forms(response).forms if "book-now" in classes.split()]
    return found


def _where(appointment) -> str:
    return f"{appointment.start_at.isoformat()}|{appointment.practitioner_id}"


@pytest.fixture
def desk(clinic):
    return staff_client(clinic, StaffRole.RECEPTIONIST, "dec6n-reception")


@pytest.fixture
def visit(patient, practitioner):
    """Microneedling for Pat Lee with Dr Ada on Tuesday 10 March 2026, 10:00 London, booked by the desk."""
    return book(patient, ldn(2026, 3, 10), NOW, area_code="face", practitioner_id=str(practitioner.pk))


def _reschedule_url(clinic, appointment) -> str:
    return reverse("frontdesk:reschedule", args=[clinic.code, appointment.pk])


# --- The desk's 409 page after the service's refusal -----------------------------------------------------------------


def test_the_desk_409_page_is_drawn_from_where_the_visit_is_now_and_its_move_goes_through(
    clinic, practitioner, desk, visit
):
    drawn = _where(visit)
    appointment_reschedule(appointment=visit, start_at=ldn(2026, 3, 11), actor=COLLEAGUE, now=NOW)
    stale = {
        "start_at": ldn(2026, 3, 12).isoformat(),
        "practitioner": str(practitioner.pk),
        "reason": "",
        "from_start_at": drawn,
    }
    refused = desk.post(_reschedule_url(clinic, visit), stale)
    assert refused.status_code == 409
    text = " ".join(unescape(refused.content.decode()).split())
    assert "moved since you opened this page" in text and "Wed 11 Mar 2026, 10:00" in text
    assert Appointment.objects.get(pk=visit.pk).start_at == ldn(2026, 3, 11) and _moves(visit.pk) == 1
    now_at = _where(Appointment.objects.get(pk=visit.pk))
    forms = _forms(refused)
    # The page's own check form and every form of the panel are drawn from where the visit is now.
    assert forms.hidden and set(forms.hidden) == {now_at}, forms.hidden
    again = _move_now_form(refused)
    assert again["start_at"] == ldn(2026, 3, 12).isoformat()  # the time chosen, kept
    assert desk.post(_reschedule_url(clinic, visit), again).status_code == 302
    assert Appointment.objects.get(pk=visit.pk).start_at == ldn(2026, 3, 12) and _moves(visit.pk) == 2


def test_the_desk_409_fragment_in_place_is_drawn_from_where_the_visit_is_now_and_its_move_goes_through(
    clinic, practitioner, desk, visit
):
    drawn = _where(visit)
    appointment_reschedule(appointment=visit, start_at=ldn(2026, 3, 11), actor=COLLEAGUE, now=NOW)
    stale = {
        "start_at": ldn(2026, 3, 12).isoformat(),
        "practitioner": str(practitioner.pk),
        "reason": "",
        "from_start_at": drawn,
    }
    refused = desk.post(_reschedule_url(clinic, visit), stale, HTTP_HX_REQUEST="true")
    assert refused.status_code == 409
    body = refused.content.decode()
    assert "<html" not in body and "moved since you opened this page" in body  # a fragment for the dialog
    again = _move_now_form(refused)
    assert again["from_start_at"] == _where(Appointment.objects.get(pk=visit.pk))
    done = desk.post(_reschedule_url(clinic, visit), again, HTTP_HX_REQUEST="true")
    assert done.status_code == 200 and "data-done" in done.content.decode()
    assert Appointment.objects.get(pk=visit.pk).start_at == ldn(2026, 3, 12) and _moves(visit.pk) == 2


# --- The calendar's drag-and-drop move ------------------------------------------------------------------------------


class _Cards(HTMLParser):
    """The calendar's appointment cards: {appointment id: the card's attributes}."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: dict[str, dict[str, str]] = {}

    def handle_starttag(self, tag, attrs):
        attrs = {name: value or "" for name, value in attrs}
        if "data-appointment" in attrs and "data-check-url" in attrs:
            self.cards[attrs["data-appointment"]] = attrs


_DRAWN = re.compile(r"\d{4}-\d\d-\d\dT[0-9:.]+(?:[+-]\d\d:\d\d|Z)\|[0-9a-f-]{36}")


def test_a_drag_from_a_grid_drawn_before_a_colleague_moved_the_visit_moves_nothing(clinic, practitioner, desk, visit):
    grid = desk.get(reverse("frontdesk:calendar", args=[clinic.code]), {"date": "2026-03-10"})
    assert grid.status_code == 200
    cards = _Cards()
    cards.feed(grid.content.decode())
    card = cards.cards[str(visit.pk)]
    # A colleague moves the visit to 12:00 the same day; this grid still shows it at 10:00.
    appointment_reschedule(appointment=visit, start_at=ldn(2026, 3, 10, 12), actor=COLLEAGUE, now=NOW)
    # The drop on 15:00, as calendar.js asks it (and with the position the card was drawn with, when it has one).
    query = {"date": "2026-03-10", "time": "15:00", "practitioner": str(practitioner.pk)}
    drawn = [value for value in card.values() if _DRAWN.fullmatch(unescape(value))]
    if drawn:
        query["from_start_at"] = unescape(drawn[0])
    dialog = desk.get(card["data-check-url"], query, HTTP_HX_REQUEST="true")
    assert dialog.status_code == 200
    confirm = _move_now_form(dialog)
    answer = desk.post(card["data-check-url"], confirm, HTTP_HX_REQUEST="true")
    assert answer.status_code == 409, answer.status_code
    assert Appointment.objects.get(pk=visit.pk).start_at == ldn(2026, 3, 10, 12)


# --- The API: If-Match, the same move sent again, keys ------------------------------------------------------------


def test_the_reschedule_201_carries_no_etag_and_a_keyed_201_replays_with_its_own_if_match(api, patient, practitioner):
    """A keyed 201 replays to the same request, If-Match included; the same key with another If-Match is another
    request (422, docs/api.md; decided after this review's question)."""
    appointment_id = _api_booking(api, patient)
    etag = _read(api, appointment_id)["ETag"]
    moved = _move(api, appointment_id, "2026-03-11T10:00:00+00:00", etag, key="dec6n-move-1")
    assert moved.status_code == 201 and "ETag" not in moved  # docs/api.md: GET the appointment for the next one
    replay = _move(api, appointment_id, "2026-03-11T10:00:00+00:00", etag, key="dec6n-move-1")
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"
    other = _move(api, appointment_id, "2026-03-11T10:00:00+00:00", '"some-other-version"', key="dec6n-move-1")
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    assert _moves(appointment_id) == 1


def test_the_same_move_sent_again_after_the_visit_was_flagged_answers_201_as_it_is(api, patient, practitioner):
    appointment_id = _api_booking(api, patient)
    etag = _read(api, appointment_id)["ETag"]
    assert _move(api, appointment_id, "2026-03-11T10:00:00+00:00", etag).status_code == 201  # its answer lost
    procedure_record_add(
        patient=patient,
        procedure_code="botox",
        now=NOW,
        performed_at=datetime(2026, 3, 1, 10, tzinfo=UTC),
        area_code="face",
    )
    assert Appointment.objects.get(pk=appointment_id).status == AppointmentStatus.NEEDS_REVIEW
    again = _move(api, appointment_id, "2026-03-11T10:00:00+00:00", etag)
    assert again.status_code == 201, again.content
    assert again.json()["start"] == "2026-03-11T10:00:00+00:00" and _moves(appointment_id) == 1


def test_the_same_move_sent_again_with_the_practitioner_id_in_capitals_is_no_conflict(api, patient, practitioner):
    appointment_id = _api_booking(api, patient)
    etag = _read(api, appointment_id)["ETag"]
    named = str(practitioner.pk).upper()
    first = _move(api, appointment_id, "2026-03-11T10:00:00+00:00", etag, practitioner=named)
    assert first.status_code == 201, first.content  # the API takes the id in capitals
    again = _move(api, appointment_id, "2026-03-11T10:00:00+00:00", etag, practitioner=named)
    assert again.status_code == 201, again.content
    assert _moves(appointment_id) == 1


def test_a_keyed_412_sent_again_with_the_fresh_etag_is_not_answered_with_the_stale_412(api, patient, practitioner):
    appointment_id = _api_booking(api, patient)
    stale = _read(api, appointment_id)["ETag"]
    appointment = Appointment.objects.get(pk=appointment_id)
    appointment_reschedule(appointment=appointment, start_at=ldn(2026, 3, 10, 15), actor=COLLEAGUE, now=NOW)
    refused = _move(api, appointment_id, "2026-03-12T10:00:00+00:00", stale, key="dec6n-move-2")
    assert refused.status_code == 412
    fresh = _read(api, appointment_id)["ETag"]
    assert fresh != stale
    retried = _move(api, appointment_id, "2026-03-12T10:00:00+00:00", fresh, key="dec6n-move-2")
    assert retried.status_code in (201, 422), (retried.status_code, retried.get("Idempotent-Replayed"))


def test_a_desk_note_between_a_platforms_read_and_its_move_does_not_refuse_the_move(api, patient, practitioner):
    appointment_id = _api_booking(api, patient)
    before = _read(api, appointment_id)
    appointment_notes_set(appointment=Appointment.objects.get(pk=appointment_id), notes="Parking at the back")
    after = _read(api, appointment_id)
    assert after.json() == before.json()  # nothing the platform can see changed
    moved = _move(api, appointment_id, "2026-03-11T10:00:00+00:00", before["ETag"])
    assert moved.status_code == 201, moved.content


# --- ETag churn: what the background does to the appointment's version ----------------------------------------------


def test_reminders_going_out_leave_the_etag_and_a_move_made_from_it_goes_through(
    api, patient, practitioner, care_texts, message_outboxes
):
    appointment_id = _api_booking(api, patient)
    etag = _read(api, appointment_id)["ETag"]
    pending = OutboxMessage.objects.filter(appointment_id=appointment_id, status="pending").count()
    dispatch_local(now=NOW)
    sent = OutboxMessage.objects.filter(appointment_id=appointment_id, status="pending").count()
    assert sent < pending and len(mail.outbox) >= 1  # the confirmation went out
    assert _read(api, appointment_id)["ETag"] == etag
    assert _move(api, appointment_id, "2026-03-11T10:00:00+00:00", etag).status_code == 201


def test_a_recheck_that_finds_the_same_leaves_the_etag_of_a_flagged_visit_and_its_etag_is_accepted(
    api, patient, practitioner
):
    appointment_id = _api_booking(api, patient)
    procedure_record_add(
        patient=patient,
        procedure_code="botox",
        now=NOW,
        performed_at=datetime(2026, 3, 1, 10, tzinfo=UTC),
        area_code="face",
    )
    flagged = _read(api, appointment_id)
    assert flagged.json()["status"] == "needs_review" and flagged.json()["review_reasons"]
    # Another record change: the re-check runs again and finds the same reasons.
    procedure_record_add(
        patient=patient,
        procedure_code="plasma_pen",
        now=NOW,
        performed_at=datetime(2025, 1, 6, 10, tzinfo=UTC),
        area_code="face",
    )
    assert _read(api, appointment_id)["ETag"] == flagged["ETag"]
    # The version read from a row holding review reasons (JSON) is the version read under the move's lock.
    moved = _move(api, appointment_id, "2026-03-20T10:00:00+00:00", flagged["ETag"])
    assert moved.status_code == 201, moved.content
    assert moved.json()["status"] == "confirmed"
