"""A review probe of the front desk as a receptionist lives in it on a busy day, judged as a product (docs/frontdesk.md;
domain brief section 5, "Who uses it"): what the other desk probes leave thin.

- Every form's errors are plain words next to the right field, and what was typed is kept (new patient, edit, the
  booking and move pages, cancel and notes, the medical history).
- A form sent after the session ended, or with a CSRF token made stale by signing in again in another tab.
- The back button and a form sent again after its redirect (cancel, check in, new patient, the medical history).
- Two receptionists at once: the same patient's details, the same visit's notes, a move or a cancel from a page drawn
  before the other's change.
- Every link on the main pages for one signed-in receptionist opens (no 404/405/500) and stays in this clinic; every
  page has a <title> naming it and the clinic, and the day pages say the clinic's date; every field has a label.
- Times in the clinic's zone on either side of a clocks change, on pages the calendar probes do not read (the success
  message, the reminders and the audit trail, the day sheet in the repeated hour).
- Debian's chromium at 390 px: a day of eight practitioners with long names, and the week, scroll nothing sideways.

Server-side with Django's test client, the clock stopped at the suite's Monday (2 March 2026, 09:00 London, GMT); the
browser test runs against pytest-django's live server on the real clock (marked `browser`). Tenants: `kbq-lon`
(Europe/London) and its sister site `kbq-west`, and `kbq-ny` (America/New_York) of another organisation.

Found, and since mended (each test now passes as written, or as adjusted where its docstring says):
- DEFECT (mended): a form sent after the session ended sent the receptionist, once signed in, to the form's POST-only
  address, a blank 405. frontdesk.views.base.signed_in_required now sends a POST back to the page the form was on
  (its Referer, this site's only), else the clinic's Today, and the sign-in page says to send the form again (what was
  typed cannot be kept). The test sends the Referer a browser sends.
- DEFECT (mended): a past day typed with a time (booking page, move) was said on the time ("That time has already
  passed"); frontdesk.forms.WhenForm.clean now says it on the date, with or without a time.
- QUESTION (mended): a form whose CSRF token went stale answered Django's bare "CSRF verification failed" page; it now
  gets frontdesk/csrf_failure.html (CSRF_FAILURE_VIEW = frontdesk.views.auth.csrf_failure, 403): plain words, the
  desk's layout, a link back to the page it came from; no sign-in needed, so the patients' pages get it too.
- QUESTION (mended): two receptionists. The patient edit form carries the record's version (`made_from`, passed to
  clinic.services.patient_update as the API's If-Match is): a save over a field someone else changed since is refused
  (409, "Changed by someone else since you opened this page: ...") with what was typed kept; fields nobody else
  changed save as before. The notes form carries what the notes were: notes changed meanwhile are not overwritten
  (409, both shown). The move page carries where the visit was (`from_start_at`): a move after someone else's moves
  nothing (409, where it is now); the test posts it as the page drew it.
- QUESTION (mended): a medication course (or a procedure done elsewhere) sent twice is recorded once, the second
  sending told "Already recorded (the form was sent twice)" (frontdesk.selectors, SENT_TWICE_WITHIN).
- QUESTION (mended): the appointment page and the day sheet read a visit in the hour the clocks go back as the
  calendar does ("01:30 BST–01:00 GMT", the `visit_times` filter).
Held: errors next to their fields with what was typed kept; a form sent again after its redirect (cancel, check in,
new patient) is refused or met by the record made; every link on the main pages opens and stays in the clinic; titles,
one h1, the clinic's own date (also for a user of two zones); every field labelled; times across the spring change;
no sideways scrolling at 390 px with eight practitioners with long names (day, week, schedule, Today).
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import date, datetime, timedelta
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from clinic.models import (
    Appointment,
    AppointmentStatus,
    AuditAction,
    MedicationCourse,
    Patient,
    ProcedureRecord,
    StaffMembership,
    StaffRole,
)
from reminders.models import Channel, MessageKind, OutboxMessage, OutboxStatus
from tests.factories import AppointmentFactory, ClinicFactory, OrganisationFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import NOW, book, fresh, fresh_appointment, ldn, words

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("message_outboxes")]

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
PASSWORD = "pw-for-qa-only-123"


# --- Tenants and people ------------------------------------------------------------------------------------------


@pytest.fixture
def lon(care_texts):
    org = OrganisationFactory(code="kbq-group", name="Keyboard Group")
    return ClinicFactory(code="kbq-lon", name="Keyboard London", organisation=org, timezone="Europe/London")


@pytest.fixture
def west(lon):
    return ClinicFactory(code="kbq-west", name="Keyboard West", organisation=lon.organisation, timezone="Europe/London")


@pytest.fixture
def ny(care_texts):
    return ClinicFactory(code="kbq-ny", name="Elsewhere New York", timezone="America/New_York")


@pytest.fixture
def hart(lon):
    return PractitionerFactory(clinic=lon, name="Dr Amelia Hart")


@pytest.fixture
def olivia(lon):
    return PatientFactory(
        clinic=lon,
        first_name="Olivia",
        last_name="Bennett",
        phone="+447911123101",
        email="olivia@example.com",
        date_of_birth=date(1985, 6, 18),
    )


def staff(clinic, username: str, role=StaffRole.RECEPTIONIST, *, csrf: bool = False) -> Client:
    user = get_user_model().objects.create_user(username=username, password=PASSWORD)
    StaffMembership.objects.create(user=user, clinic=clinic, role=role)
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


@pytest.fixture
def desk(lon):
    return staff(lon, "kbq-anna")


@pytest.fixture
def desk2(lon):
    return staff(lon, "kbq-ben")


@pytest.fixture
def doc(lon):
    return staff(lon, "kbq-doc", StaffRole.CLINICIAN)


def url(name: str, clinic, *args) -> str:
    return reverse(f"frontdesk:{name}", args=[clinic.code, *[getattr(a, "pk", a) for a in args]])


def written(patient, practitioner, code: str, start: datetime, status=AppointmentStatus.CONFIRMED, **extra):
    """An appointment written directly (for pages that only show it, and for times no one works)."""
    from clinic.models import ProcedureType

    minutes = ProcedureType.objects.get(code=code).duration_minutes
    return AppointmentFactory(
        clinic=practitioner.clinic,
        patient=patient,
        practitioner=practitioner,
        procedure_id=code,
        start_at=start,
        end_at=start + timedelta(minutes=minutes),
        status=status,
        **extra,
    )


# --- Reading pages -----------------------------------------------------------------------------------------------


class _Page(HTMLParser):
    """The forms, fields, labels, links and title of a page (stdlib only)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self.fields: list[dict] = []  # every input, select and textarea, with the form it is in
        self.label_for: set[str] = set()
        self.links: list[str] = []
        self.title = ""
        self._in_title = False
        self._label_depth = 0
        self._select: dict | None = None
        self._option: dict | None = None
        self._textarea: dict | None = None
        self._form: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "title":
            self._in_title = True
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag == "form":
            self._form = {"action": a.get("action", ""), "method": (a.get("method") or "get").lower(), "fields": []}
            self.forms.append(self._form)
        elif tag == "label":
            self._label_depth += 1
            if a.get("for"):
                self.label_for.add(a["for"])
        elif tag in ("input", "select", "textarea"):
            field = {"tag": tag, **a, "in_label": self._label_depth > 0, "options": [], "text": ""}
            self.fields.append(field)
            if self._form is not None:
                self._form["fields"].append(field)
            if tag == "select":
                self._select = field
            elif tag == "textarea":
                self._textarea = field
        elif tag == "option" and self._select is not None:
            self._option = {"value": a.get("value"), "selected": "selected" in a, "text": ""}
            self._select["options"].append(self._option)

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif tag == "label":
            self._label_depth = max(0, self._label_depth - 1)
        elif tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None
        elif tag == "option":
            self._option = None

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        if self._option is not None:
            self._option["text"] += data
        if self._textarea is not None:
            self._textarea["text"] += data


def parsed(response) -> _Page:
    page = _Page()
    page.feed(response.content.decode())
    return page


def form_data(response, action: str) -> dict[str, list[str]]:
    """What the browser would send from the page's form posting to `action`, as drawn (no button pressed)."""
    [form] = [f for f in parsed(response).forms if f["action"] == action]
    data: dict[str, list[str]] = defaultdict(list)
    for field in form["fields"]:
        name = field.get("name")
        if not name or "disabled" in field:
            continue
        if field["tag"] == "select":
            chosen = [o for o in field["options"] if o["selected"]] or field["options"][:1]
            data[name] += [o["value"] if o["value"] is not None else o["text"] for o in chosen]
        elif field["tag"] == "textarea":
            data[name].append(field["text"].removeprefix("\n"))
        elif field.get("type") in ("checkbox", "radio"):
            if "checked" in field:
                data[name].append(field.get("value", "on"))
        elif field.get("type") not in ("submit", "button", "image", "reset"):
            data[name].append(field.get("value", ""))
    return dict(data)


def error_at(response, field_id: str) -> str:
    """The words of the error element tied to the field (`<id>-error`)."""
    html = response.content.decode()
    found = re.search(rf'id="{re.escape(field_id)}-error"[^>]*>(.*?)</p>', html, re.S)
    assert found, f"no error element for {field_id}"
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())


def field_value(response, field_id: str) -> str:
    """The value a field is drawn with: an input's value, a textarea's text, a select's chosen option."""
    for field in parsed(response).fields:
        if field.get("id") == field_id:
            if field["tag"] == "textarea":
                return field["text"].removeprefix("\n")
            if field["tag"] == "select":
                chosen = [o["value"] for o in field["options"] if o["selected"]]
                return chosen[0] if chosen else ""
            return field.get("value", "")
    raise AssertionError(f"no field {field_id}")


JARGON = re.compile(r"InvalidInput|Traceback|None\b|\{|\}|_id\b|date_of_birth|ValidationError|errorlist|\[\'")


def plain(text: str) -> bool:
    """Words a receptionist reads: a sentence, no code, ids or Python."""
    return bool(text) and not JARGON.search(text) and (text[0].isupper() or text[0].isdigit())


# --- Errors next to the field, what was typed kept ---------------------------------------------------------------


def test_a_new_patients_errors_sit_next_to_each_field_and_keep_what_was_typed(lon, desk):
    typed = {
        "first_name": "",
        "last_name": "Featherstonehaugh",
        "phone": "12345",
        "email": "olivia@",
        "date_of_birth": "31/02/1985",
    }
    response = desk.post(url("patient_new", lon), typed)
    assert response.status_code in (200, 400)
    assert Patient.objects.filter(clinic=lon).count() == 0
    for name in ("first_name", "phone", "email", "date_of_birth"):
        said = error_at(response, f"id_{name}")
        assert plain(said), (name, said)
        assert 'aria-invalid="true"' in re.search(rf'<input[^>]*id="id_{name}"[^>]*>', response.content.decode()).group(
            0
        )
    assert error_at(response, "id_last_name") == ""
    assert field_value(response, "id_last_name") == "Featherstonehaugh"
    assert field_value(response, "id_phone") == "12345"
    assert field_value(response, "id_email") == "olivia@"
    assert "There is a problem" in response.content.decode() or "data-answer-to-post" in response.content.decode()


def test_a_date_of_birth_in_the_future_is_said_next_to_the_date_and_the_rest_kept(lon, desk, clock):
    typed = {"first_name": "Ivy", "last_name": "Stone", "phone": "07911 123456", "date_of_birth": "2030-01-01"}
    response = desk.post(url("patient_new", lon), typed)
    assert not Patient.objects.filter(clinic=lon).exists()
    said = error_at(response, "id_date_of_birth")
    assert plain(said) and ("future" in said.lower() or "birth" in said.lower()), said
    assert field_value(response, "id_first_name") == "Ivy"
    assert field_value(response, "id_phone") == "07911 123456"
    assert field_value(response, "id_date_of_birth") == "2030-01-01"


def test_the_booking_pages_errors_keep_the_procedure_and_the_day_and_a_skipped_time_is_said_by_the_time(
    lon, hart, olivia, desk, clock
):
    response = desk.get(url("book", lon, olivia), {"procedure": "botox", "date": "2026-03-01"})
    said = error_at(response, "id_date")
    assert plain(said) and "passed" in said, said
    assert field_value(response, "id_procedure") == "botox" and field_value(response, "id_date") == "2026-03-01"
    # On the day the clocks go forward, 01:30 does not exist in London: said by the time, the day kept.
    response = desk.get(url("book", lon, olivia), {"procedure": "botox", "date": "2026-03-29", "time": "01:30"})
    said = error_at(response, "id_time")
    assert plain(said), said
    assert field_value(response, "id_date") == "2026-03-29" and field_value(response, "id_procedure") == "botox"


def test_a_move_posted_to_a_past_day_moves_nothing_and_keeps_what_was_typed(lon, hart, olivia, desk, clock):
    visit = book(olivia, ldn(2026, 3, 10), NOW, "botox")
    response = desk.post(
        url("reschedule", lon, visit), {"date": "2026-02-27", "time": "11:00", "reason": "Asked by phone"}
    )
    assert fresh(visit).start_at == ldn(2026, 3, 10)
    assert plain(error_at(response, "id_date") or error_at(response, "id_time"))
    assert field_value(response, "id_reason") == "Asked by phone"
    assert field_value(response, "id_date") == "2026-02-27" and field_value(response, "id_time") == "11:00"


@pytest.mark.parametrize("page", ["book", "move"])
def test_a_past_day_typed_with_a_time_is_said_by_the_date(lon, hart, olivia, desk, clock, page):
    if page == "book":
        response = desk.get(url("book", lon, olivia), {"procedure": "botox", "date": "2026-03-01", "time": "10:00"})
    else:
        visit = book(olivia, ldn(2026, 3, 10), NOW, "botox")
        response = desk.post(url("reschedule", lon, visit), {"date": "2026-02-27", "time": "11:00"})
    said = error_at(response, "id_date")
    assert plain(said) and "passed" in said, said


@pytest.mark.parametrize("action,field_id", [("cancel", "cancel_reason"), ("notes", "id_notes")])
def test_a_too_long_cancel_reason_or_note_is_said_by_it_and_kept(lon, hart, olivia, desk, clock, action, field_id):
    visit = book(olivia, ldn(2026, 3, 10), NOW, "botox")
    text = "Patient rang. " * 150  # 2100 characters, past the 2000 allowed
    response = desk.post(url(action, lon, visit), {"reason" if action == "cancel" else "notes": text})
    assert response.status_code == 400
    assert fresh(visit).status == AppointmentStatus.CONFIRMED and fresh(visit).notes == ""
    said = error_at(response, field_id)
    assert plain(said) and "2000" in said, said
    assert field_value(response, field_id) == text


def test_a_medication_course_ending_before_it_started_is_said_by_a_date_and_kept(lon, olivia, desk, clock):
    response = desk.post(
        url("medication_add", lon, olivia),
        {"course-drug": "isotretinoin", "course-started_on": "2026-02-01", "course-ended_on": "2026-01-01"},
    )
    assert not MedicationCourse.objects.filter(patient=olivia).exists()
    said = error_at(response, "id_course-ended_on") or error_at(response, "id_course-started_on")
    assert plain(said), said
    assert field_value(response, "id_course-drug") == "isotretinoin"
    assert field_value(response, "id_course-started_on") == "2026-02-01"


def test_a_procedure_done_elsewhere_tomorrow_is_said_by_its_day_and_kept(lon, olivia, desk, clock):
    response = desk.post(
        url("procedure_add", lon, olivia),
        {"record-procedure": "botox", "record-performed_on": "2026-03-03", "record-notes": "Dr Who, Harley St"},
    )
    assert not ProcedureRecord.objects.filter(patient=olivia).exists()
    said = error_at(response, "id_record-performed_on")
    assert plain(said), said
    assert field_value(response, "id_record-notes") == "Dr Who, Harley St"
    assert field_value(response, "id_record-procedure") == "botox"


# --- The session ended, a stale CSRF token -----------------------------------------------------------------------


def _sign_in(client: Client, username: str, next_url: str):
    """Sign in with the password on the real form (its own CSRF token), following where it sends."""
    page = client.get(reverse("frontdesk:login"), {"next": next_url})
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    return client.post(
        reverse("frontdesk:login"),
        {"username": username, "password": PASSWORD, "next": next_url, "csrfmiddlewaretoken": token},
        follow=True,
    )


@pytest.mark.parametrize("action", ["notes", "cancel", "book_submit"])
def test_a_form_sent_after_the_session_ended_leads_back_to_a_working_page(lon, hart, olivia, desk, clock, action):
    """Mended: signing in leads back to the page the form was on (its Referer, sent here as a browser sends it:
    the appointment page, or the booking page), not to the form's POST-only address; without a Referer, the clinic's
    Today (tests/frontdesk/test_dec6j_mends.py). The sign-in page says to send the form again."""
    visit = book(olivia, ldn(2026, 3, 10), NOW, "botox")
    target = url(action, lon, olivia if action == "book_submit" else visit)
    was_on = url("book", lon, olivia) if action == "book_submit" else url("appointment", lon, visit)
    desk.logout()  # the session ended (10 hours) while the appointment page was open
    response = desk.post(
        target,
        {"notes": "Latex allergy", "reason": "x", "procedure": "botox"},
        HTTP_REFERER=f"http://testserver{was_on}",
    )
    assert response.status_code == 302 and response["Location"].startswith(reverse("frontdesk:login"))
    assert "send the form again" in words(desk.get(response["Location"]))
    assert fresh(visit).notes == "" and fresh(visit).status == AppointmentStatus.CONFIRMED
    after = _sign_in(
        desk,
        "kbq-anna",
        urlsplit(response["Location"]).query and dict(parse_qsl(urlsplit(response["Location"]).query))["next"],
    )
    assert after.status_code == 200, (after.status_code, after.redirect_chain, after.content[:200])
    assert after.redirect_chain[-1][0] == was_on
    assert "Dr Amelia Hart" in words(after) or "Olivia" in words(after)


def test_a_page_opened_after_the_session_ended_signs_in_and_comes_back_to_it(lon, hart, olivia, desk, clock):
    visit = book(olivia, ldn(2026, 3, 10), NOW, "botox")
    desk.logout()
    response = desk.get(url("appointment", lon, visit), follow=True)
    assert response.status_code == 200 and "Staff sign-in" in words(response)
    assert f'name="next" value="{url("appointment", lon, visit)}"' in response.content.decode()
    back = _sign_in(desk, "kbq-anna", url("appointment", lon, visit))
    assert back.status_code == 200 and back.redirect_chain[-1][0] == url("appointment", lon, visit)


def test_a_form_with_a_token_made_stale_by_signing_in_again_gets_a_plain_page_with_a_way_back(lon, hart, olivia, clock):
    get_user_model().objects.create_user(username="kbq-carla", password=PASSWORD)
    StaffMembership.objects.create(
        user=get_user_model().objects.get(username="kbq-carla"), clinic=lon, role=StaffRole.RECEPTIONIST
    )
    visit = book(olivia, ldn(2026, 3, 10), NOW, "botox")
    client = Client(enforce_csrf_checks=True)
    _sign_in(client, "kbq-carla", "/")
    tab_one = client.get(url("appointment", lon, visit))
    stale = form_data(tab_one, url("notes", lon, visit))
    # In another tab: sign out and in again (the session, and its CSRF secret, are new).
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', tab_one.content.decode()).group(1)
    client.post(reverse("frontdesk:logout"), {"csrfmiddlewaretoken": token})
    _sign_in(client, "kbq-carla", "/")
    response = client.post(url("notes", lon, visit), {**stale, "notes": ["Running late"]})
    assert response.status_code == 403
    assert fresh(visit).notes == ""
    text = words(response)
    assert "CSRF" not in text and "Request aborted" not in text, text[:300]
    assert "Keyboard London" in text or 'href="/' in response.content.decode()


# --- The back button and a form sent again -----------------------------------------------------------------------


def test_a_cancel_sent_again_from_the_back_button_says_it_is_already_cancelled(lon, hart, olivia, desk, clock):
    visit = book(olivia, ldn(2026, 3, 10), NOW, "botox")
    first = desk.post(url("cancel", lon, visit), {"reason": "Patient rang"})
    assert first.status_code == 302
    again = desk.post(url("cancel", lon, visit), {"reason": "Patient rang"})
    assert again.status_code == 409
    text = words(again)
    assert "cancel" in text.lower() and "Traceback" not in text
    assert visit.audit_events.filter(action=AuditAction.CANCELLED).count() == 1


def test_a_check_in_sent_again_says_the_patient_is_already_checked_in(lon, hart, olivia, desk, clock):
    visit = book(olivia, ldn(2026, 3, 2, 11), NOW, "botox")
    assert desk.post(url("check_in", lon, visit)).status_code == 302
    again = desk.post(url("check_in", lon, visit))
    assert again.status_code == 409
    assert "already checked in" in words(again)
    assert visit.audit_events.filter(action=AuditAction.CHECKED_IN).count() == 1


def test_a_new_patient_sent_again_meets_the_record_just_made_not_a_second_one(lon, desk, clock):
    typed = {"first_name": "Ivy", "last_name": "Stone", "phone": "07911 123456", "date_of_birth": "1990-04-05"}
    assert desk.post(url("patient_new", lon), typed).status_code == 302
    again = desk.post(url("patient_new", lon), typed)
    assert again.status_code == 409
    assert Patient.objects.filter(clinic=lon, last_name="Stone").count() == 1
    made = Patient.objects.get(clinic=lon, last_name="Stone")
    assert url("patient", lon, made) in again.content.decode()


def test_a_medication_course_sent_twice_is_recorded_once(lon, olivia, desk, clock):
    body = {"course-drug": "isotretinoin", "course-started_on": "2026-02-01"}
    assert desk.post(url("medication_add", lon, olivia), body).status_code == 302
    desk.post(url("medication_add", lon, olivia), body)
    assert MedicationCourse.objects.filter(patient=olivia).count() == 1


def test_a_procedure_done_elsewhere_sent_twice_is_recorded_once(lon, olivia, desk, clock):
    body = {"record-procedure": "botox", "record-performed_on": "2026-02-20", "record-area": "face"}
    assert desk.post(url("procedure_add", lon, olivia), body).status_code == 302
    desk.post(url("procedure_add", lon, olivia), body)
    assert ProcedureRecord.objects.filter(patient=olivia).count() == 1


# --- Two receptionists at once -----------------------------------------------------------------------------------


def test_two_receptionists_editing_a_patient_keep_the_number_each_changed_as_documented(lon, olivia, desk, desk2):
    anna = desk.get(url("patient_edit", lon, olivia))
    ben = desk2.get(url("patient_edit", lon, olivia))
    ben_data = form_data(ben, "")
    ben_data["phone"] = ["07911 123457"]
    assert desk2.post(url("patient_edit", lon, olivia), ben_data).status_code == 302
    anna_data = form_data(anna, "")
    anna_data["last_name"] = ["Bennett-Smith"]
    assert desk.post(url("patient_edit", lon, olivia), anna_data).status_code == 302
    olivia = fresh(olivia)
    assert olivia.last_name == "Bennett-Smith" and olivia.phone == "+447911123457"


def test_two_receptionists_editing_a_patient_the_later_save_does_not_undo_the_date_of_birth(lon, olivia, desk, desk2):
    anna = desk.get(url("patient_edit", lon, olivia))
    ben = desk2.get(url("patient_edit", lon, olivia))
    ben_data = form_data(ben, "")
    ben_data["date_of_birth"] = ["1985-08-16"]  # the day and month were swapped at registration
    assert desk2.post(url("patient_edit", lon, olivia), ben_data).status_code == 302
    anna_data = form_data(anna, "")
    anna_data["last_name"] = ["Bennett-Smith"]
    response = desk.post(url("patient_edit", lon, olivia), anna_data)
    olivia = fresh(olivia)
    told = response.status_code == 409 and "changed" in words(response)
    assert olivia.date_of_birth == date(1985, 8, 16) and (told or olivia.last_name == "Bennett-Smith")


def test_two_receptionists_writing_notes_on_one_visit_lose_neither_note(lon, hart, olivia, desk, desk2, clock):
    visit = book(olivia, ldn(2026, 3, 10), NOW, "botox")
    anna = desk.get(url("appointment", lon, visit))
    ben = desk2.get(url("appointment", lon, visit))
    ben_data = form_data(ben, url("notes", lon, visit))
    ben_data["notes"] = ["Latex allergy: use nitrile gloves"]
    assert desk2.post(url("notes", lon, visit), ben_data).status_code == 302
    anna_data = form_data(anna, url("notes", lon, visit))
    anna_data["notes"] = ["Will be 10 minutes late"]
    response = desk.post(url("notes", lon, visit), anna_data)
    notes = fresh(visit).notes
    assert "Latex allergy" in notes or (response.status_code == 409 and "Latex allergy" in words(response))


def drawn_start(response) -> str:
    """Where the visit was when the move page was drawn, as its forms carry it."""
    return re.search(r'name="from_start_at" value="([^"]+)"', response.content.decode()).group(1)


def test_a_move_from_a_page_drawn_before_someone_else_moved_it_says_so(lon, hart, olivia, desk, desk2, clock):
    """Mended: the move page's forms carry where the visit was when it was drawn (`from_start_at`, hidden); the posts
    here send it as the page drew it (a post that does not say, a script's, is not checked). Anna's move, sent after
    Ben's, moves nothing (409) and says where the visit is now; sent again from that answer, it moves."""
    visit = book(olivia, ldn(2026, 3, 10), NOW, "botox")
    anna = desk.get(url("reschedule", lon, visit))
    assert anna.status_code == 200
    anna_drawn = drawn_start(anna)
    ben_drawn = drawn_start(desk2.get(url("reschedule", lon, visit)))
    moved = desk2.post(
        url("reschedule", lon, visit), {"date": "2026-03-12", "time": "10:00", "from_start_at": ben_drawn}
    )
    assert moved.status_code == 302
    response = desk.post(
        url("reschedule", lon, visit), {"date": "2026-03-11", "time": "10:00", "from_start_at": anna_drawn}
    )
    assert fresh(visit).start_at == ldn(2026, 3, 12) and response.status_code == 409
    assert "moved since you opened this page" in words(response) and "Thu 12 Mar 2026, 10:00" in words(response)
    again = drawn_start(response)
    assert (
        desk.post(
            url("reschedule", lon, visit), {"date": "2026-03-11", "time": "10:00", "from_start_at": again}
        ).status_code
        == 302
    )
    assert fresh(visit).start_at == ldn(2026, 3, 11)


def test_a_cancel_or_check_in_from_a_page_drawn_before_someone_cancelled_is_refused_plainly(
    lon, hart, olivia, desk, desk2, clock
):
    visit = book(olivia, ldn(2026, 3, 2, 11), NOW, "botox")
    desk.get(url("appointment", lon, visit))
    assert desk2.post(url("cancel", lon, visit), {"reason": "Patient rang"}).status_code == 302
    for action in ("check_in", "cancel"):
        response = desk.post(url(action, lon, visit), {"reason": "x"})
        assert response.status_code == 409, action
        assert "Cancelled" in words(response) or "cancelled" in words(response)
    visit = fresh_appointment(visit)
    assert visit.status == AppointmentStatus.CANCELLED and visit.checked_in_at is None
    assert visit.cancel_reason == "Patient rang"


# --- Links, titles, the clinic and the date, labels --------------------------------------------------------------


@pytest.fixture
def busy_day(lon, west, ny, hart, olivia, clock):
    """A day at the London desk: visits in every state, a failed message, a visit at the sister site, and another
    organisation's clinic with a patient and a visit the same day."""
    PractitionerFactory(clinic=lon, name="Priya Shah, RN")
    wes = PractitionerFactory(clinic=west, name="Dr Wes")
    dr_ny = PractitionerFactory(clinic=ny, name="Dr Nuala York")
    nora = PatientFactory(clinic=ny, first_name="Nora", last_name="Yorke", phone="+12125550199")
    written(nora, dr_ny, "botox", datetime(2026, 3, 2, 10, tzinfo=NEW_YORK))
    today = book(olivia, ldn(2026, 3, 2, 11), NOW, "botox")
    later = written(olivia, hart, "filler", ldn(2026, 3, 10))
    done = written(olivia, hart, "filler", ldn(2026, 2, 20, 10), AppointmentStatus.COMPLETED, completed_at=NOW)
    pending = written(olivia, hart, "plasma_pen", ldn(2026, 3, 20, 14), AppointmentStatus.PENDING_CLEARANCE)
    written(olivia, hart, "botox", ldn(2026, 3, 4, 15), AppointmentStatus.CANCELLED)
    written(olivia, wes, "botox", ldn(2026, 3, 5, 12))
    OutboxMessage.objects.create(
        appointment=later,
        created_at=NOW,
        kind=MessageKind.CONFIRMATION,
        channel=Channel.EMAIL,
        due_at=NOW,
        status=OutboxStatus.FAILED,
        attempts=5,
        recipient=olivia.email,
        last_error="SMTPRecipientsRefused",
    )
    return {"today": today, "later": later, "done": done, "pending": pending, "nora": nora}


def main_pages(lon, olivia, hart, day) -> list[str]:
    return [
        url("today", lon),
        url("calendar", lon) + "?date=2026-03-02",
        url("calendar", lon) + f"?date=2026-03-02&view=week&practitioner={hart.pk}",
        url("schedule", lon) + "?date=2026-03-02",
        url("schedule", lon) + "?date=2026-03-02&view=week",
        url("day_sheet", lon) + "?date=2026-03-02",
        url("patients", lon) + "?q=Bennett",
        url("patient_new", lon),
        url("patient", lon, olivia),
        url("patient_edit", lon, olivia),
        url("patient_history", lon, olivia),
        url("book", lon, olivia) + "?procedure=microneedling&date=2026-03-11&time=10:00",
        url("appointment", lon, day["today"]),
        url("appointment", lon, day["later"]),
        url("appointment", lon, day["done"]),
        url("appointment", lon, day["pending"]),
        url("reschedule", lon, day["later"]) + "?date=2026-03-12",
        url("aftercare", lon, day["done"]),
        url("rules", lon),
    ]


ALLOWED_OUTSIDE = {"/", "/account/two-step/"}


def test_every_link_on_the_main_pages_opens_and_stays_in_this_clinic(lon, hart, olivia, desk, busy_day):
    seen_shapes: dict[tuple, int] = defaultdict(int)
    queue, opened, broken, elsewhere = [], set(), {}, {}
    for start in main_pages(lon, olivia, hart, busy_day):
        response = desk.get(start)
        assert response.status_code == 200, (start, response.status_code)
        for href in parsed(response).links:
            parts = urlsplit(href)
            if (
                parts.scheme
                or parts.netloc
                or href.startswith(("#", "mailto:", "tel:"))
                or parts.path.startswith("/static/")
            ):
                continue
            path = parts.path or urlsplit(start).path
            if not path.startswith(f"/clinic/{lon.code}/") and path not in ALLOWED_OUTSIDE:
                elsewhere[href] = start
                continue
            shape = (re.sub(r"[0-9a-f-]{36}", "<id>", path), tuple(sorted(k for k, _ in parse_qsl(parts.query))))
            target = path + (f"?{parts.query}" if parts.query else "")
            if target in opened or seen_shapes[shape] >= 3:  # 440 free cells are one link shape
                continue
            seen_shapes[shape] += 1
            opened.add(target)
            queue.append((target, start))
    for target, start in queue:
        response = desk.get(target, follow=True)
        if response.status_code != 200:
            broken[target] = (response.status_code, start)
        elif "Nora" in words(response) or "Elsewhere New York" in words(response):
            elsewhere[target] = start
    assert len(opened) > 25
    assert broken == {}
    assert elsewhere == {}


def test_every_page_has_a_title_naming_it_and_the_clinic_and_one_h1(lon, hart, olivia, desk, busy_day):
    titles = {}
    for path in main_pages(lon, olivia, hart, busy_day):
        response = desk.get(path)
        title = " ".join(parsed(response).title.split())
        titles[path] = title
        assert title.endswith("· Keyboard London") and len(title) > len("· Keyboard London") + 2, (path, title)
        assert response.content.decode().count("<h1") == 1, path
    # Patients' pages name the patient in the tab, so two open tabs are told apart.
    assert "Olivia Bennett" in titles[url("patient", lon, olivia)]
    assert "Olivia Bennett" in titles[url("appointment", lon, busy_day["later"])]


@pytest.mark.parametrize(
    "name,query",
    [
        ("today", ""),
        ("calendar", "?date=2026-03-05"),
        ("schedule", "?date=2026-03-05"),
        ("day_sheet", "?date=2026-03-05"),
    ],
)
def test_the_day_pages_say_the_clinic_and_the_day_they_show(lon, hart, desk, clock, name, query):
    response = desk.get(url(name, lon) + query)
    text = words(response)
    day = "Monday 2 March 2026" if name == "today" else "Thursday 5 March 2026"
    assert day in text, (name, text[:300])
    assert "Keyboard London" in text


def test_the_clinics_today_is_its_own_date_for_a_user_of_two_zones(lon, ny, clock):
    clock.move_to(datetime(2026, 3, 3, 3, 0, tzinfo=ZoneInfo("UTC")))  # 03:00 Tuesday in London, 22:00 Monday in NY
    client = staff(lon, "kbq-two-zones")
    StaffMembership.objects.create(
        user=get_user_model().objects.get(username="kbq-two-zones"), clinic=ny, role=StaffRole.RECEPTIONIST
    )
    assert "Tuesday 3 March 2026" in words(client.get(url("today", lon)))
    new_york = words(client.get(url("today", ny)))
    assert "Monday 2 March 2026" in new_york and "Elsewhere New York" in new_york


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])


def unlabelled(response) -> list[str]:
    page = parsed(response)
    missing = []
    for field in page.fields:
        if field["tag"] == "input" and field.get("type") in ("hidden", "submit", "button", "image", "reset"):
            continue
        if field.get("aria-label") or field.get("aria-labelledby") or field["in_label"]:
            continue
        if field.get("id") and field["id"] in page.label_for:
            continue
        missing.append(f"{field['tag']} name={field.get('name')} id={field.get('id')}")
    return missing


def test_every_field_on_every_desk_page_has_a_label(lon, hart, olivia, desk, doc, busy_day):
    pages = [
        *main_pages(lon, olivia, hart, busy_day),
        url("calendar_book", lon) + f"?practitioner={hart.pk}&start_at=2026-03-03T10:00:00%2B00:00&q=Bennett",
        url("calendar_book_patient", lon, olivia) + f"?practitioner={hart.pk}&start_at=2026-03-03T10:00:00%2B00:00",
        url("calendar_register", lon) + f"?practitioner={hart.pk}&start_at=2026-03-03T10:00:00%2B00:00",
    ]
    missing = {path: unlabelled(desk.get(path)) for path in pages}
    missing[reverse("frontdesk:login")] = unlabelled(Client().get(reverse("frontdesk:login")))
    for path in (url("appointment", lon, busy_day["pending"]), url("patient_merge", lon, olivia) + "?q=Bennett"):
        missing[f"{path} (clinician)"] = unlabelled(doc.get(path))
    assert {path: fields for path, fields in missing.items() if fields} == {}


# --- Times in the clinic's zone, either side of a clocks change ---------------------------------------------------


def test_a_visit_after_the_clocks_go_forward_reads_its_local_time_in_the_message_reminders_and_audit(
    lon, hart, olivia, desk, clock
):
    response = desk.post(url("book_submit", lon, olivia), {"procedure": "botox", "date": "2026-03-31", "time": "10:00"})
    assert response.status_code == 302
    visit = Appointment.objects.get(patient=olivia)
    assert visit.start_at == ldn(2026, 3, 31)  # 09:00 UTC, on BST
    page = desk.get(response["Location"])
    text = words(page)
    assert "Tue 31 Mar 2026, 10:00" in text  # the success message
    assert "Tuesday 31 March 2026, 10:00" in text  # the details
    for row in OutboxMessage.objects.filter(appointment=visit).exclude(channel="webhook"):
        shown = timezone.localtime(row.due_at, LONDON).strftime("%a %-d %b %Y, %H:%M")
        assert shown in text, (row.kind, shown)
    assert "2 Mar 2026, 09:00 by kbq-anna" in text  # booked now, on GMT
    assert "10:00" in words(desk.get(url("calendar", lon) + "?date=2026-03-31"))


def test_a_visit_in_the_repeated_hour_says_which_reading_on_its_page_and_the_day_sheet(lon, hart, olivia, desk, clock):
    first = written(olivia, hart, "botox", datetime(2026, 10, 25, 0, 30, tzinfo=ZoneInfo("UTC")))  # 01:30 BST
    second = written(olivia, hart, "botox", datetime(2026, 10, 25, 1, 30, tzinfo=ZoneInfo("UTC")))  # 01:30 GMT
    assert "01:30 BST" in words(desk.get(url("calendar", lon) + "?date=2026-10-25"))
    for visit, reading in ((first, "BST"), (second, "GMT")):
        when = re.search(r"When (.*?) \(Europe/London\)", words(desk.get(url("appointment", lon, visit)))).group(1)
        assert reading in when, when
    sheet = words(desk.get(url("day_sheet", lon) + "?date=2026-10-25"))
    assert "GMT" in sheet and "BST" in sheet


# --- At a phone's width, in the browser --------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_busy_day_of_eight_practitioners_fits_a_phone_without_sideways_scrolling(browser, live_server, care_texts):
    from tests.frontdesk.conftest import PASSWORD as DESK_PASSWORD
    from tests.frontdesk.conftest import make_staff

    clinic = ClinicFactory(code="kbq-phone", name="Keyboard Phone Clinic", timezone="Europe/London")
    names = [
        "Dr Anastasia Featherstonehaugh-Montgomery",
        "Priya Shah, RN",
        "Dr Bartholomew Worthington-Smythe",
        "Nurse Chidimma Okonkwo-Adebayo",
        "Dr Maximilian von Hohenzollern",
        "Siobhán Ní Mhaoilmhichíl",
        "Dr Wu",
        "Dr Guðmundur Þórarinsson-Jóhannesdóttir",
    ]
    practitioners = [PractitionerFactory(clinic=clinic, name=name, hours=range(7)) for name in names]
    patient = PatientFactory(clinic=clinic, first_name="Maximiliana-Evangelina", last_name="Featherstonehaughington")
    today = timezone.localdate(timezone=LONDON)
    for n, practitioner in enumerate(practitioners):
        start = datetime.combine(today, datetime.min.time(), tzinfo=LONDON).replace(hour=9 + n)
        written(patient, practitioner, "botox", start, notes="Allergic to lidocaine; bring the consent form signed")
    make_staff(clinic, StaffRole.RECEPTIONIST, "kbq-phone-desk")
    pages = {
        "calendar day": f"/clinic/kbq-phone/calendar/?date={today}",
        "calendar week": f"/clinic/kbq-phone/calendar/?date={today}&view=week&practitioner={practitioners[0].pk}",
        "schedule day": f"/clinic/kbq-phone/schedule/?date={today}",
        "today": "/clinic/kbq-phone/",
    }
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-GB", device_scale_factor=1)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    too_wide = {}
    try:
        tab.goto(f"{live_server.url}/login/")
        tab.get_by_label("Username").fill("kbq-phone-desk")
        tab.get_by_label("Password").fill(DESK_PASSWORD)
        tab.get_by_role("button", name="Sign in").click()
        tab.wait_for_load_state()
        for name, path in pages.items():
            tab.goto(f"{live_server.url}{path}")
            tab.wait_for_load_state()
            measured = tab.evaluate(
                """() => {
                    const out = {page: [document.documentElement.scrollWidth, window.innerWidth]};
                    for (const el of document.querySelectorAll('.cal-scroll, .schedule, .table-scroll, main')) {
                        if (el.scrollWidth > el.clientWidth + 1) out[el.className || el.tagName] = [el.scrollWidth, el.clientWidth];
                    }
                    return out;
                }"""
            )
            page_width, inner = measured.pop("page")
            if page_width > inner or measured:
                too_wide[name] = {"page": (page_width, inner), **measured}
    finally:
        context.close()
    assert too_wide == {}, f"scrolls sideways at 390 px: {too_wide}"
