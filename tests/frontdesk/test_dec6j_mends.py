"""What was mended after the review probe tests/qa/test_review_dec6j_desk_keyboard.py, beyond what the probe itself
pins: where signing in leads after a form sent with the session ended, the page a stale CSRF token gets (the patients'
pages too), two people editing one patient's details or one visit's notes, a move from a stale page, a medical-history
line sent twice, and a visit's times in the hour the clocks go back (docs/frontdesk.md).
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
import time_machine
from django.test import Client

from clinic.models import MedicationCourse, Patient, ProcedureRecord, StaffRole
from reminders.links import manage_token
from tests.frontdesk.conftest import at_london, book, make_staff, url
from tests.frontdesk.helpers import inputs

pytestmark = pytest.mark.django_db


def words(response) -> str:
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", response.content.decode(), flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)).strip()


def hidden(response, name: str) -> str:
    """The value a hidden input `name` is drawn with (the first on the page)."""
    found = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)"', response.content.decode())
    assert found, f"no hidden {name}"
    return found.group(1)


def _next(response) -> str:
    assert response.status_code == 302 and response.url.startswith("/login/?")
    return dict(parse_qsl(urlsplit(response.url).query))["next"]


# --- A form sent after the session ended ------------------------------------------------------------------------


def test_a_form_sent_after_the_session_ended_comes_back_to_the_page_it_was_on_or_today(
    client, clinic, practitioner, patient, frozen
):
    visit = book(patient, practitioner, "botox", at_london(2026, 3, 10, 10))
    notes = url("notes", clinic, visit)
    page = url("appointment", clinic, visit)

    assert _next(client.post(notes, {"notes": "x"}, HTTP_REFERER=f"http://testserver{page}?tab=1")) == f"{page}?tab=1"
    # Another site's page, none at all, or the form's own POST-only address (a refusal drawn there): Today.
    today = url("today", clinic)
    assert _next(client.post(notes, {"notes": "x"}, HTTP_REFERER=f"https://evil.example{page}")) == today
    assert _next(client.post(notes, {"notes": "x"}, HTTP_REFERER="//evil.example/")) == today
    assert _next(client.post(notes, {"notes": "x"})) == today
    assert _next(client.post(notes, {"notes": "x"}, HTTP_REFERER=f"http://testserver{notes}")) == today
    # A page still opens and comes back to itself, as before.
    assert _next(client.get(page)) == page
    assert "Your session ended; sign in and send the form again." in words(client.get("/login/"))


def test_a_form_sent_in_place_after_the_session_ended_never_comes_back_to_its_post_only_address(
    client, clinic, patient, frozen
):
    submit = url("book_submit", clinic, patient)
    response = client.post(submit, {"procedure": "botox"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    assert dict(parse_qsl(urlsplit(response["HX-Redirect"]).query))["next"] == url("today", clinic)
    page = url("calendar", clinic) + "?date=2026-03-03"
    response = client.post(
        submit, {"procedure": "botox"}, HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL=f"http://testserver{page}"
    )
    assert dict(parse_qsl(urlsplit(response["HX-Redirect"]).query))["next"] == page


# --- A stale CSRF token -----------------------------------------------------------------------------------------


def test_a_stale_csrf_token_gets_plain_words_and_a_way_back_to_a_page_of_this_site(
    clinic, practitioner, patient, receptionist, frozen
):
    visit = book(patient, practitioner, "botox", at_london(2026, 3, 10, 10))
    desk = Client(enforce_csrf_checks=True)
    desk.force_login(receptionist)
    page = url("appointment", clinic, visit)
    response = desk.post(url("notes", clinic, visit), {"notes": "x"}, HTTP_REFERER=f"http://testserver{page}")
    assert response.status_code == 403
    text = words(response)
    assert "nothing was saved. Go back, reload the page and send it again." in text
    assert "CSRF" not in text and "Request aborted" not in text
    assert f'href="{page}"' in response.content.decode()
    elsewhere = desk.post(url("notes", clinic, visit), {"notes": "x"}, HTTP_REFERER="https://evil.example/x/")
    assert 'href="/"' in elsewhere.content.decode() and "evil.example" not in elsewhere.content.decode()


def test_a_patients_own_page_with_a_stale_token_gets_the_same_words_without_signing_in_or_staff_menus(
    clinic, practitioner, patient, frozen
):
    visit = book(patient, practitioner, "botox", at_london(2026, 3, 10, 10))
    token = manage_token(visit)
    browser = Client(enforce_csrf_checks=True)
    manage = f"/my/{token}/"
    assert browser.get(manage).status_code == 200
    response = browser.post(
        f"/my/{token}/cancel/", {"csrfmiddlewaretoken": "stale"}, HTTP_REFERER=f"http://testserver{manage}"
    )
    assert response.status_code == 403
    text = words(response)
    assert "Go back, reload the page and send it again." in text
    assert "Front desk" not in text and "Sign out" not in text
    assert f'href="{manage}"' in response.content.decode()


# --- Two receptionists editing one patient ----------------------------------------------------------------------


@pytest.fixture
def desk2(clinic) -> Client:
    client = Client()
    client.force_login(make_staff(clinic, StaffRole.RECEPTIONIST, "reception-2"))
    return client


def test_a_save_over_a_date_of_birth_corrected_meanwhile_is_refused_and_sent_again_keeps_both_changes(
    clinic, patient, reception, desk2
):
    edit = url("patient_edit", clinic, patient)
    anna = reception.get(edit)
    ben = inputs(desk2.get(edit))
    ben["date_of_birth"] = ["1985-08-16"]
    assert desk2.post(edit, ben).status_code == 302

    typed = inputs(anna)
    typed["last_name"] = ["Bennett-Smith"]
    refused = reception.post(edit, typed)
    assert refused.status_code == 409
    text = words(refused)
    assert "Changed by someone else since you opened this page: Date of birth (now “16 Aug 1985”)" in text
    assert 'value="Bennett-Smith"' in refused.content.decode()  # what was typed is kept
    assert 'value="1985-08-16"' in refused.content.decode()  # the field left alone shows the record as it is now
    assert Patient.objects.get(pk=patient.pk).last_name == "Bennett"

    assert reception.post(edit, inputs(refused)).status_code == 302
    saved = Patient.objects.get(pk=patient.pk)
    assert (saved.last_name, saved.date_of_birth) == ("Bennett-Smith", date(1985, 8, 16))


def test_two_different_corrections_of_one_name_the_later_is_refused_keeping_what_it_typed(
    clinic, patient, reception, desk2
):
    edit = url("patient_edit", clinic, patient)
    anna = inputs(reception.get(edit))
    ben = inputs(desk2.get(edit))
    ben["first_name"] = ["Olive"]
    assert desk2.post(edit, ben).status_code == 302
    anna["first_name"] = ["Livvy"]
    refused = reception.post(edit, anna)
    assert refused.status_code == 409
    assert "First name (now “Olive”)" in words(refused)
    assert 'value="Livvy"' in refused.content.decode()
    assert Patient.objects.get(pk=patient.pk).first_name == "Olive"


def test_the_same_correction_made_twice_or_a_post_that_does_not_say_what_it_was_drawn_from_saves(
    clinic, patient, reception, desk2
):
    edit = url("patient_edit", clinic, patient)
    anna = inputs(reception.get(edit))
    ben = inputs(desk2.get(edit))
    ben["last_name"] = anna["last_name"] = ["Bennett-Smith"]
    assert desk2.post(edit, ben).status_code == 302
    assert reception.post(edit, anna).status_code == 302
    script = {"first_name": "Olivia", "last_name": "Bennett", "date_of_birth": "1985-06-18"}
    assert reception.post(edit, script).status_code == 302
    assert Patient.objects.get(pk=patient.pk).last_name == "Bennett"


# --- Two receptionists writing one visit's notes ----------------------------------------------------------------


def test_notes_saved_over_notes_written_meanwhile_show_both_and_sent_again_save(
    clinic, practitioner, patient, reception, desk2, frozen
):
    visit = book(patient, practitioner, "botox", at_london(2026, 3, 10, 10))
    page, notes = url("appointment", clinic, visit), url("notes", clinic, visit)
    anna = inputs(reception.get(page), notes)
    ben = inputs(desk2.get(page), notes)
    ben["notes"] = ["Latex allergy:\r\nuse nitrile gloves"]
    assert desk2.post(notes, ben).status_code == 302
    anna["notes"] = ["Will be 10 minutes late"]
    refused = reception.post(notes, anna)
    assert refused.status_code == 409
    text = words(refused)
    assert "Your notes were not saved: someone else changed them since you opened this page." in text
    assert "Latex allergy: use nitrile gloves" in text and "Will be 10 minutes late" in text
    visit.refresh_from_db()
    assert visit.notes == "Latex allergy:\r\nuse nitrile gloves"
    assert reception.post(notes, inputs(refused, notes)).status_code == 302
    visit.refresh_from_db()
    assert visit.notes == "Will be 10 minutes late"


def test_notes_sent_again_unchanged_or_the_same_as_now_are_not_a_conflict(
    clinic, practitioner, patient, reception, frozen
):
    visit = book(patient, practitioner, "botox", at_london(2026, 3, 10, 10))
    page, notes = url("appointment", clinic, visit), url("notes", clinic, visit)
    drawn = inputs(reception.get(page), notes)
    drawn["notes"] = ["Parking at the back\r\nRing twice"]
    assert reception.post(notes, drawn).status_code == 302
    assert reception.post(notes, drawn).status_code == 302  # the same form sent twice: the same notes
    assert reception.post(notes, {"notes": "From a script"}).status_code == 302  # says nothing drawn: saved
    visit.refresh_from_db()
    assert visit.notes == "From a script"


# --- A move from a stale page -----------------------------------------------------------------------------------


def test_a_move_asked_in_place_from_a_stale_page_moves_nothing_and_a_damaged_start_is_said(
    clinic, practitioner, patient, reception, frozen
):
    from scheduler.booking import Actor, appointment_book

    visit = appointment_book(
        patient=patient,
        procedure_code="botox",
        start_at=at_london(2026, 3, 10, 10),
        actor=Actor("test"),
        now=frozen,
    ).appointment
    move = url("reschedule", clinic, visit)
    stale = at_london(2026, 3, 9, 10).isoformat()
    response = reception.post(
        move, {"date": "2026-03-11", "time": "10:00", "from_start_at": stale}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 409 and "moved since you opened this page" in words(response)
    assert hidden(response, "from_start_at") == f"{visit.start_at.isoformat()}|{visit.practitioner_id}"
    damaged = reception.post(move, {"date": "2026-03-11", "time": "10:00", "from_start_at": "yesterday"})
    assert "This page could not say where the visit was" in words(damaged)
    visit.refresh_from_db()
    assert visit.start_at == at_london(2026, 3, 10, 10)


# --- A medical-history line sent twice --------------------------------------------------------------------------


def test_a_medication_course_sent_twice_says_so_and_the_same_later_or_another_is_recorded(
    clinic, patient, reception, now
):
    add = url("medication_add", clinic, patient)
    body = {"course-drug": "isotretinoin", "course-started_on": "2026-02-01"}
    with time_machine.travel(now, tick=False):
        assert reception.post(add, body).status_code == 302
        again = reception.post(add, body, follow=True)
        assert "Already recorded (the form was sent twice): Isotretinoin (Accutane) course from 1 Feb 2026." in words(
            again
        )
        assert MedicationCourse.objects.filter(patient=patient).count() == 1
        reception.post(add, {**body, "course-started_on": "2026-02-02"})
        assert MedicationCourse.objects.filter(patient=patient).count() == 2
    with time_machine.travel(now + timedelta(minutes=11), tick=False):
        reception.post(add, body)
    assert MedicationCourse.objects.filter(patient=patient).count() == 3


def test_a_procedure_done_elsewhere_sent_twice_with_its_time_is_recorded_once_and_another_time_again(
    clinic, patient, reception, frozen
):
    add = url("procedure_add", clinic, patient)
    body = {"record-procedure": "botox", "record-performed_on": "2026-02-20", "record-performed_time": "14:30"}
    assert reception.post(add, body).status_code == 302
    again = reception.post(add, body, follow=True)
    assert "Already recorded (the form was sent twice)" in words(again)
    assert ProcedureRecord.objects.filter(patient=patient).count() == 1
    reception.post(add, {**body, "record-performed_time": "15:30"})
    assert ProcedureRecord.objects.filter(patient=patient).count() == 2


# --- The hour the clocks go back --------------------------------------------------------------------------------


def test_an_arrival_in_the_repeated_hour_says_which_reading_and_an_ordinary_visit_reads_as_before(
    clinic, practitioner, patient, reception, frozen
):
    from datetime import UTC, datetime

    night = book(
        patient,
        practitioner,
        "botox",
        datetime(2026, 10, 25, 1, 30, tzinfo=UTC),  # 01:30 GMT, the second reading
        checked_in_at=datetime(2026, 10, 25, 0, 45, tzinfo=UTC),  # 01:45 BST
    )
    page = words(reception.get(url("appointment", clinic, night)))
    assert "Sunday 25 October 2026, 01:30–02:00 GMT" in page and "Checked in at 01:45 BST" in page
    sheet = words(reception.get(url("day_sheet", clinic) + "?date=2026-10-25"))
    assert "01:30–02:00 GMT" in sheet and "arrived 01:45 BST" in sheet
    day = book(patient, practitioner, "botox", at_london(2026, 3, 10, 10))
    assert "Tuesday 10 March 2026, 10:00–10:30" in words(reception.get(url("appointment", clinic, day)))


@pytest.mark.parametrize("path", ["//evil.example/x", "/\\evil.example/x"], ids=["two-slashes", "backslash"])
def test_a_referer_this_site_serves_but_a_browser_reads_as_another_is_no_way_back(rf, path):
    """A Referer of this site whose path a browser reads as another site (`//evil.example`) is not where the CSRF
    page's way back or signing in leads (review of 6 December)."""
    from frontdesk.views.base import own_page

    request = rf.get("/", HTTP_HOST="testserver")
    assert own_page(request, f"http://testserver{path}") is None
    assert own_page(request, "http://testserver/clinic/london/?x=1") == "/clinic/london/?x=1"


def test_a_move_from_a_page_drawn_before_the_visit_changed_practitioner_says_so(
    clinic, practitioner, second_practitioner, patient, reception, frozen
):
    """Review of 6 December: receptionist A gives the visit to another practitioner at the same time; B's move page,
    drawn before, would send it back to the first one unseen. Nothing moves; the page says who has it now."""
    from scheduler.booking import Actor, appointment_book, appointment_reschedule

    visit = appointment_book(
        patient=patient,
        procedure_code="botox",
        start_at=at_london(2026, 3, 10, 10),
        actor=Actor("test"),
        now=frozen,
        practitioner_id=str(practitioner.pk),
    ).appointment
    move = url("reschedule", clinic, visit)
    drawn = hidden(reception.get(move), "from_start_at")
    assert drawn == f"{visit.start_at.isoformat()}|{practitioner.pk}"
    appointment_reschedule(
        appointment=visit,
        start_at=visit.start_at,
        actor=Actor("a"),
        now=frozen,
        practitioner_id=str(second_practitioner.pk),
    )
    response = reception.post(
        move,
        {"date": "2026-03-11", "time": "10:00", "practitioner": str(practitioner.pk), "from_start_at": drawn},
    )
    assert response.status_code == 409 and "moved since you opened this page" in words(response)
    visit.refresh_from_db()
    assert (visit.start_at, visit.practitioner_id) == (at_london(2026, 3, 10, 10), second_practitioner.pk)


def test_notes_saved_over_a_change_made_since_are_refused_under_the_lock(clinic, practitioner, patient, frozen):
    """Review of 6 December: the comparison is the service's, under the patient's lock (two saves sent together
    cannot both pass a check made before either wrote). The same words as now, or a form that says nothing of what
    it was drawn from, save."""
    from clinic.services import appointment_notes_set, notes_version
    from core.errors import PreconditionFailed
    from scheduler.booking import Actor, appointment_book

    visit = appointment_book(
        patient=patient, procedure_code="botox", start_at=at_london(2026, 3, 10, 10), actor=Actor("t"), now=frozen
    ).appointment
    drawn = notes_version(visit.notes)
    appointment_notes_set(appointment=visit, notes="Latex allergy", drawn=drawn)
    with pytest.raises(PreconditionFailed):
        appointment_notes_set(appointment=visit, notes="Parking at the back", drawn=drawn)
    visit.refresh_from_db()
    assert visit.notes == "Latex allergy"
    appointment_notes_set(appointment=visit, notes=" Latex allergy ", drawn=drawn)  # what is there already
    appointment_notes_set(appointment=visit, notes="Parking at the back")  # no version: no check
    visit.refresh_from_db()
    assert visit.notes == "Parking at the back"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_medication_form_sent_twice_at_once_records_one_course(clinic, patient, receptionist):
    """Review of 6 December: the sent-twice check is asked under the patient's lock (clinic.services
    medication_course_add `same_as`), so two sendings at the same instant (a double click) record one course."""
    from tests.races import race

    def send():
        client = Client()
        client.force_login(receptionist)
        return client.post(
            url("medication_add", clinic, patient),
            {"course-drug": "isotretinoin", "course-started_on": "2026-01-05", "course-notes": ""},
        )

    answers = race(send, send)
    assert [getattr(a, "status_code", a) for a in answers] == [302, 302]
    assert MedicationCourse.objects.filter(patient=patient, drug_id="isotretinoin").count() == 1


def test_notes_saved_while_a_merge_moved_the_visit_say_so_instead_of_a_500(
    clinic, practitioner, patient, reception, frozen, monkeypatch
):
    """Review of 6 December: the notes are saved under the patient's lock, which refuses a record merged away since the
    page loaded the visit (`patient_merged`); the page says so (409) rather than failing."""
    from core.errors import ErrorCode, InvalidInput
    from frontdesk.views import appointments
    from scheduler.booking import Actor, appointment_book

    visit = appointment_book(
        patient=patient, procedure_code="botox", start_at=at_london(2026, 3, 10, 10), actor=Actor("t"), now=frozen
    ).appointment

    def merged_meanwhile(**kwargs):
        raise InvalidInput(ErrorCode.PATIENT_MERGED, "This record was merged into another; open it there.")

    monkeypatch.setattr(appointments, "appointment_notes_set", merged_meanwhile)
    response = reception.post(url("notes", clinic, visit), {"notes": "Parking at the back"})
    assert response.status_code == 409
    assert "This record was merged into another" in words(response)
