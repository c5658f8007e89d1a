"""Review probe (12 December, c): the receptionists' front desk read line by line.

A code read, not a walk: frontdesk/selectors.py, forms.py, plan_forms.py, plan_timeline.py, views/*.py, urls.py,
twofactor.py, ratelimit.py and the templates, beside docs/frontdesk.md, docs/plans.md and the domain brief. Read for a
desk of one clinic reaching another clinic's or organisation's patient, visit or calendar (an id guessed in a URL or a
hidden field); a form that checks less than the API does for the same act, or drops what was typed on an error; the
calendar's day and week around the clocks changing and midnight, cancelled visits on the grid; a POST without CSRF or
a GET that writes; a 500 from odd query values; two-step sign-in and the sign-in limit; the earliest date the desk
shows against what booking then takes; escaping of what patients and staff type. Each suspicion is pinned by the
smallest test through the desk (and the API where it is the comparison). The suite's Monday is 2 March 2026, 09:00
UTC (London on GMT).

Found (the two DEFECTs and the plan_book status, mended; the QUESTION decided, its mend waiting on the service):
- DEFECT (mended): the desk's clearance saves a reason holding control characters (a BEL, an ESC), which the API's clear
  refuses (400, `ClearIn.reason` takes no control character but tab, CR and LF) and every other reason typed at the
  desk refuses too: `frontdesk/views/appointments.py` `appointment_clear_view` passes `request.POST["reason"]` to
  `scheduler.booking.appointment_clear` without ever validating its `ClearForm` (which has `validate_lines`), and the
  service checks only blank and length.
- DEFECT (mended): a calendar card whose status allows no move (a completed visit, a cancelled one shown with "Show
  cancelled"), dragged onto a cell, gets a dialog titled "This move is not possible" that says only "Choose a new date
  (and time) to see whether the move is possible": the service's reason ("A completed appointment cannot be moved.")
  is dropped, because `frontdesk/views/booking.py` `_panel` swallows the refusal `DomainErrors` caught (its `refused`
  is never put on the form nor passed to the panel); the same move posted is told why (409).
- DEFECT (mended, found while mending): "Book these sessions" answered its bad input (a practitioner not of this
  clinic in a session's hidden field) 200 where the booking and move forms answer 400: `frontdesk/views/plans.py`
  `plan_book` used `DomainErrors`' default status.
- QUESTION (decided 7 December: the page posts the sessions it shows and the re-plan refuses when they no longer
  hold, `plans.services.ShownNoLongerHolds`): "Move the sessions as shown" on a plan's re-plan moves the sessions where planning again under the locks
  puts them now (`frontdesk/views/plans.py` `plan_replan` posts only the session and the day): a slot shown that was
  taken meanwhile is silently replaced by another time, with "Re-planned from session 2." and a redirect, where "Book
  these sessions" books exactly what was shown or nothing (409). Recommendation: carry the placements shown and
  refuse (409, the re-plan as it can be made now) when they no longer hold.

Held (passing): an appointment of a sister site guessed in a URL is a 404 and nothing is cancelled; a practitioner
of a sister site or of another organisation put in a booking's, a move's or a course's hidden field books or moves
nothing; the same move the drag dialog hides its reason for is told why when posted; the API refuses the control
character the desk's clearance takes, and the desk takes a reason on several lines with a tab; wrong passwords
counted before a right one still count when the code step follows (the right password alone clears nothing); a
patient's name with markup is escaped in the calendar's in-place booking steps.

Read and found right without a test here (each pinned by an earlier probe or tests/frontdesk): every page's tenancy
through `clinic_page` and the `*_for_user` selectors; the choices every form's practitioner, template and site fields
are bound to; CSRF on every form and the middleware on; no GET that books, moves or saves (the two-step set-up page's
GET makes the one unconfirmed device it reuses); every query value swept (impossible dates, non-UUID ids, years 1 and
9999, HX or not) answering 200, 400 or 404, never 500; the grid's rows by instants across both clock changes and its
cancelled cards placed after the live ones (spanning the rows they free, as docs/frontdesk.md decides); the check
panel's earliest start and free times taken from the same `BookingCheck` booking uses; the sign-in limiter per
username and address and per address, and the code step's count and device throttle.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinic.models import Appointment, AppointmentStatus, ConditionStatus, PatientCondition, StaffRole
from plans import services as plan_services
from plans.defaults import plan_templates_load
from plans.models import TreatmentPlan
from scheduler.booking import appointment_reschedule
from tests.factories import PatientFactory
from tests.frontdesk.conftest import PASSWORD as STAFF_PASSWORD
from tests.frontdesk.conftest import book as written
from tests.frontdesk.conftest import make_staff, url
from tests.qa.helpers import API, NOW, RECEPTION, book, fresh, ldn, problem, squash, staff_client, words

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock")]

HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def clinician_desk(clinic):
    return staff_client(clinic, StaffRole.CLINICIAN, "qa-clinician")


@pytest.fixture
def desk(clinic):
    return staff_client(clinic, StaffRole.RECEPTIONIST, "qa-reception")


@pytest.fixture
def held(patient, practitioner):
    """Microneedling for Tuesday 10 March, 10:00 London, held pending clearance (eczema in the patient's history)."""
    PatientCondition.objects.create(patient=patient, condition_id="eczema", status=ConditionStatus.HISTORY)
    appointment = book(patient, ldn(2026, 3, 10), NOW)
    assert appointment.status == AppointmentStatus.PENDING_CLEARANCE
    return appointment


# --- views/appointments.py: the clearance's reason -------------------------------------------------------------------


def test_the_api_refuses_a_clearance_reason_with_a_control_character(clinical_api, held):
    """The comparison: the API's clear takes no control character but tab, CR and LF (`ClearIn`, lines=True)."""
    body = problem(
        clinical_api.post(f"{API}/appointments/{held.pk}/clear/", {"reason": "ok\x07bell"}, format="json"), 400
    )
    assert body["errors"] == {
        "reason": ["Control characters (other than line breaks and tabs) cannot be part of this."]
    }
    assert fresh(held).status == AppointmentStatus.PENDING_CLEARANCE


@pytest.mark.parametrize("reason", ["ok\x07bell", "checked \x1b[31mred"])
def test_the_desks_clearance_refuses_a_control_character_as_the_api_does(clinician_desk, clinic, held, reason):
    """Every reason typed at the desk (a cancel's, a move's) refuses control characters but tab, CR and LF
    (core.plain_text.validate_lines). A clinician clears the held microneedling with a BEL or an ESC in the reason:
    400, the API's words beside the reason, nothing cleared. (Was a strict-xfail DEFECT, mended:
    frontdesk/views/appointments.py appointment_clear_view validates its ClearForm first.)"""
    answer = clinician_desk.post(url("clear", clinic, held), {"reason": reason})
    assert answer.status_code == 400
    assert "Control characters (other than line breaks and tabs) cannot be part of this." in words(answer)
    assert (fresh(held).status, fresh(held).clearance_reason) == (AppointmentStatus.PENDING_CLEARANCE, "")


def test_a_clearance_reason_with_line_breaks_and_tabs_is_taken(clinician_desk, clinic, held):
    """What the mend must keep: a reason on several lines, with a tab, clears the booking."""
    answer = clinician_desk.post(url("clear", clinic, held), {"reason": "Eczema quiet for 2 years\r\n\ttest patch"})
    assert answer.status_code == 302
    assert (fresh(held).status, fresh(held).clearance_reason) == (
        AppointmentStatus.CONFIRMED,
        "Eczema quiet for 2 years\r\n\ttest patch",
    )


# --- views/booking.py: a card dragged whose status allows no move ----------------------------------------------------


@pytest.fixture
def over(patient, practitioner):
    """Botox on Monday 2 March 08:00-08:30 London, written directly as done (the suite's now is 09:00; it is shown on
    the day's grid, draggable like every card)."""

    def make(status):
        return written(patient, practitioner, "botox", ldn(2026, 3, 2, 9) - timedelta(hours=1), status=status)

    return make


@pytest.mark.parametrize(
    "status, said",
    [
        (AppointmentStatus.COMPLETED, "A completed appointment cannot be moved."),
        (AppointmentStatus.CANCELLED, "A cancelled appointment cannot be moved."),
    ],
)
def test_a_card_dragged_whose_status_allows_no_move_is_told_why(desk, clinic, practitioner, over, status, said):
    """docs/frontdesk.md, the calendar: a drop asks the reschedule page's panel (GET with HX-Request); "Refused: 'This
    move is not possible', the reasons ...". The card of a completed visit (or a cancelled one, with "Show cancelled")
    dropped on Wednesday 4 March, 10:00: the panel says why not, and does not ask for a date it was given. (Was a
    strict-xfail DEFECT, mended: frontdesk/views/booking.py _panel returns the refusal, which
    _check_panel_body.html says.)"""
    visit = over(status)
    answer = desk.get(
        url("reschedule", clinic, visit),
        {"date": "2026-03-04", "time": "10:00", "practitioner": str(practitioner.pk)},
        **HX,
    )
    assert answer.status_code == 200
    assert said in words(answer)
    assert "Choose a new date" not in words(answer)


def test_the_same_move_posted_is_told_why(desk, clinic, practitioner, over):
    """What holds beside it: "Move to ..." posted for the completed visit is a 409 with the service's sentence, and the
    visit stays where it was."""
    visit = over(AppointmentStatus.COMPLETED)
    answer = desk.post(
        url("reschedule", clinic, visit),
        {"start_at": ldn(2026, 3, 4).isoformat(), "practitioner": str(practitioner.pk)},
        **HX,
    )
    assert answer.status_code == 409
    assert "Not moved. A completed appointment cannot be moved." in words(answer)
    assert fresh(visit).start_at == visit.start_at


# --- views/plans.py: a re-plan confirmed after what it showed went ---------------------------------------------------


@pytest.fixture
def course(clinic, patient, practitioner):
    """A plasma-pen course (2 sessions, 6-8 weeks apart, ideal 8) with Dr Ada from Monday 9 March 09:00; its second
    session since moved by hand to Monday 27 April, 10:00 (inside its window, off the ideal day)."""
    plan_templates_load()
    template = plan_services.plan_template_get("plasma-pen-course", organisation_id=patient.organisation_id)
    plan = plan_services.plan_book(
        patient=patient, clinic=clinic, template=template, start_at=ldn(2026, 3, 9, 9), actor=RECEPTION, now=NOW
    )
    second = plan.sessions.get(index=2).appointment
    appointment_reschedule(appointment=second, start_at=ldn(2026, 4, 27, 10), actor=RECEPTION, now=NOW)
    return plan


def test_a_replan_whose_shown_time_went_meanwhile_moves_nothing_and_says_so(
    desk, clinic, patient, practitioner, course
):
    """Re-plan from session 2: the page shows it at the ideal Monday 4 May, 09:00 BST. Another patient is booked with
    Dr Ada at that very time before the desk presses "Move the sessions as shown": nothing moves (the session stays on
    27 April, 10:00), 409, the re-plan as it can be made now. (Was a strict-xfail QUESTION, decided: the page posts
    the sessions it shows, and plans.services.plan_replan refuses when planning again puts them elsewhere,
    ShownNoLongerHolds.)"""
    query = {"from_session": 2, "start_from": "2026-03-02"}
    page = desk.get(url("plan", clinic, course), query)
    shown = page.context["proposal"].plan.sessions[-1].start_at
    assert shown == ldn(2026, 5, 4, 9)
    grace = PatientFactory(clinic=clinic, first_name="Grace", last_name="Hill")
    book(grace, shown, NOW, code="botox", practitioner_id=str(practitioner.pk))

    answer = desk.post(url("plan_replan", clinic, course), replan_form_of(page))

    second = course.sessions.get(index=2).appointment
    assert (answer.status_code, fresh(second).start_at) == (409, ldn(2026, 4, 27, 10))
    assert "The sessions shown are no longer where a re-plan puts them" in words(answer)
    now_shown = answer.context["proposal"].plan.sessions[-1].start_at
    assert now_shown != shown and "Move the sessions as shown" in words(answer)


def test_a_replan_as_shown_moves_the_session_there(desk, clinic, course):
    """What the mend must keep: nothing changed meanwhile, "Move the sessions as shown" puts session 2 where the page
    showed it (Monday 4 May, 09:00)."""
    page = desk.get(url("plan", clinic, course), {"from_session": 2, "start_from": "2026-03-02"})

    answer = desk.post(url("plan_replan", clinic, course), replan_form_of(page))

    assert answer.status_code == 302
    assert fresh(course.sessions.get(index=2).appointment).start_at == ldn(2026, 5, 4, 9)


def replan_form_of(page) -> dict:
    """The fields "Move the sessions as shown" posts, read from the page's form."""
    form = page.content.decode().split('id="replan-form"', 1)[1].split("</form>", 1)[0]
    fields: dict[str, list[str]] = {}
    for name, value in re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form):
        fields.setdefault(name, []).append(html.unescape(value))
    assert fields.get("session"), form
    return fields


# --- Tenancy: ids guessed in a URL or put in a hidden field ----------------------------------------------------------


def test_a_sister_sites_visit_guessed_in_a_url_is_absent_and_stays_booked(desk, clinic, patient, dr_west):
    """The patient is shared by the organisation's sites, their visits are not: the London desk posting a cancel to
    the address of the patient's West visit gets the 404 a made-up one gets, and the visit stays booked."""
    visit = book(patient, ldn(2026, 3, 11), NOW, code="botox", practitioner_id=str(dr_west.pk))
    answer = desk.post(url("cancel", clinic, visit), {"reason": "guessed"})
    assert answer.status_code == 404
    assert fresh(visit).status == AppointmentStatus.CONFIRMED


def test_a_practitioner_of_a_sister_site_in_a_bookings_hidden_field_books_nothing(desk, clinic, patient, dr_west):
    """A one-click slot's form carries the practitioner: one of West's, posted to London's desk, is not a choice here
    (400) and nothing is booked, at either site."""
    answer = desk.post(
        url("book_submit", clinic, patient),
        {"procedure": "botox", "area": "", "practitioner": str(dr_west.pk), "start_at": ldn(2026, 3, 11).isoformat()},
    )
    assert answer.status_code == 400
    assert Appointment.objects.filter(patient=patient).count() == 0


def test_another_organisations_practitioner_in_a_moves_hidden_field_moves_nothing(
    desk, clinic, patient, practitioner, other_practitioner
):
    visit = book(patient, ldn(2026, 3, 11), NOW, code="botox")
    answer = desk.post(
        url("reschedule", clinic, visit),
        {"start_at": ldn(2026, 3, 12).isoformat(), "practitioner": str(other_practitioner.pk)},
    )
    assert answer.status_code == 400
    assert (fresh(visit).start_at, fresh(visit).practitioner_id) == (ldn(2026, 3, 11), practitioner.pk)


def test_a_sister_sites_practitioner_in_a_courses_hidden_sessions_books_nothing(
    desk, clinic, patient, practitioner, dr_west
):
    """ "Book these sessions" posts each session as "start|practitioner": the proposal's two times, each naming West's
    Dr West, book no session and make no plan: the page says there is no such practitioner at this clinic, with the
    400 the booking and move forms answer bad input with. (Was pinned answering 200, its DomainErrors' default, a
    DEFECT mended: frontdesk/views/plans.py plan_book answers bad input 400.)"""
    plan_templates_load()
    form = {"template": "plasma-pen-course", "start_from": "2026-03-09"}
    proposal = desk.get(url("plan_new", clinic, patient), form).context["proposal"]
    sessions = [f"{s.start_at.isoformat()}|{dr_west.pk}" for s in proposal.plan.sessions]
    assert len(sessions) == 2
    answer = desk.post(url("plan_book", clinic, patient), {**form, "session": sessions})
    assert answer.status_code == 400
    assert "There is no such practitioner at this clinic." in words(answer)
    assert (Appointment.objects.filter(patient=patient).count(), TreatmentPlan.objects.count()) == (0, 0)


# --- Two-step sign-in and the limit ---------------------------------------------------------------------------------


def _code(device: TOTPDevice, *, wrong: bool = False) -> str:
    """What the device's app shows now (or the code after it, which it does not)."""
    value = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token() + (1 if wrong else 0)
    return f"{value % 10**device.digits:0{device.digits}d}"


def test_failures_before_a_right_password_still_count_at_the_code_step(clinic, clock, settings):
    """docs/frontdesk.md, two-step sign-in: "a right password does not clear the count; only a finished sign-in
    does". Limit 3: two wrong passwords, the right one (the code step starts), one wrong code: the third failure; the
    right code then is refused (429) and nobody is signed in."""
    settings.FRONTDESK_LOGIN_MAX_FAILURES = 3
    user = make_staff(clinic, StaffRole.RECEPTIONIST, "qa-two-step")
    device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    browser = Client()
    for _ in range(2):
        browser.post("/login/", {"username": "qa-two-step", "password": "wrong"}, REMOTE_ADDR="10.0.0.7")
    right = browser.post("/login/", {"username": "qa-two-step", "password": STAFF_PASSWORD}, REMOTE_ADDR="10.0.0.7")
    assert right.status_code == 302 and right["Location"] == "/login/code/"
    assert browser.post("/login/code/", {"code": _code(device, wrong=True)}, REMOTE_ADDR="10.0.0.7").status_code == 200

    clock.shift(timedelta(seconds=31))  # past the device's own wait and onto the next code
    locked = browser.post("/login/code/", {"code": _code(device)}, REMOTE_ADDR="10.0.0.7")

    assert locked.status_code == 429 and "Too many failed sign-ins" in squash(locked)
    assert "_auth_user_id" not in browser.session


# --- Escaping in the calendar's in-place steps ------------------------------------------------------------------------


def test_a_name_with_markup_is_text_in_the_calendars_in_place_steps(desk, clinic, practitioner):
    """A record whose name holds markup (stored before names were checked, or by a platform): the in-place search
    result and the booking step's head write it as text, no element made of it."""
    PatientFactory(clinic=clinic, first_name='<img src=x onerror="alert(1)">', last_name="Script<b>")
    cell = {"practitioner": str(practitioner.pk), "start_at": ldn(2026, 3, 3, 10).isoformat()}
    found = desk.get(url("calendar_book", clinic), {**cell, "q": "Script"}, **HX)
    [patient] = found.context["results"]
    head = desk.get(url("calendar_book_patient", clinic, patient), cell, **HX)
    for answer in (found, head):
        body = answer.content.decode()
        assert answer.status_code == 200
        assert "<img src=x" not in body and "Script<b>" not in body
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in body and "Script&lt;b&gt;" in body
