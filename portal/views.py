"""The patient's own appointment page: see it, cancel it, move it, choose which messages to get.

No login: the signed link (reminders/links.py) is the key, and it names one appointment, so
nothing here takes an appointment or patient id from the request. Each view reads the link,
calls one service and maps its answer; a bad or expired link is a friendly 400/410 page that
shows nothing of anyone, and no domain error becomes a 500. Pages are never cached.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import wraps
from itertools import groupby

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_safe

from clinic.models import Appointment, AppointmentStatus, Clinic, MessageTopic
from core.errors import DomainError, ErrorCode, InvalidInput, InvalidTransition, PreconditionFailed
from plans.selectors import session_move_bounds
from plans.selfservice import (
    CourseMoveRefused,
    course_session_move,
    course_session_move_allowed,
    course_session_move_options,
    course_session_move_text,
)
from portal.forms import CancelForm, PreferencesForm, SlotForm, drawn_key, slot_key
from reminders.consent import channels_on, patient_preferences_update, sms_consent_wording
from reminders.feeds import patient_calendar_feed_renew
from reminders.links import appointment_from_manage_token, manage_token
from reminders.pages import with_clinic_look
from scheduler.availability import AvailabilityCode, Slot
from scheduler.booking import BookingCheck, UnableToBook
from scheduler.rules import Violation
from scheduler.selfservice import (
    AdvisedAgainst,
    appointment_cancel_by_patient,
    appointment_self_service,
    patient_move_check,
)

STATUS_TEXT = {
    AppointmentStatus.CONFIRMED: "Confirmed",
    AppointmentStatus.PENDING_CLEARANCE: "Booked: a clinician will check it before it is confirmed",
    AppointmentStatus.CANCELLED: "Cancelled",
    AppointmentStatus.COMPLETED: "Completed",
    AppointmentStatus.NO_SHOW: "Missed",
    AppointmentStatus.NEEDS_REVIEW: "On hold: the clinic needs to check this booking with you",
}

# An appointment that is over: said in a sentence, before "To book again, please call us ..." (manage.html).
ENDED_TEXT = {
    AppointmentStatus.CANCELLED: "This appointment is cancelled.",
    AppointmentStatus.COMPLETED: "This appointment has taken place.",
    AppointmentStatus.NO_SHOW: "This appointment was missed.",
}


class SeeOther(HttpResponseRedirect):
    """After a POST, the browser fetches the result with a GET (and a reload does not repeat the action)."""

    status_code = 303


def _place_time(clinic: Clinic) -> str:
    """'London time': the clinic's zone in words a patient reads."""
    return clinic.timezone.rsplit("/", 1)[-1].replace("_", " ") + " time"


def _zone(clinic: Clinic, at: datetime) -> str:
    """'London time (GMT)': the zone a time is in, with its abbreviation at that moment (GMT or BST)."""
    return f"{_place_time(clinic)} ({at.astimezone(clinic.tz).tzname()})"


def _masked_email(email: str) -> str:
    name, _, domain = email.partition("@")
    return f"{name[:1]}•••@{domain}" if domain else "•••"


def _masked_phone(phone: str) -> str:
    return f"ending {phone[-3:]}" if len(phone) > 3 else "•••"


def _page(
    request: HttpRequest, template: str, appointment: Appointment, context: dict, *, status: int = 200
) -> HttpResponse:
    """Render with every time shown in the clinic's zone."""
    clinic = appointment.clinic
    base = {
        "clinic": clinic,
        "appointment": appointment,
        "zone": _zone(clinic, appointment.start_at),
        "place_time": _place_time(clinic),
        "status_text": STATUS_TEXT.get(appointment.status, appointment.get_status_display()),
    }
    with timezone.override(clinic.tz):
        return with_clinic_look(render(request, template, {**base, **context}, status=status), clinic)


def _link_problem(request: HttpRequest, error: InvalidInput) -> HttpResponse:
    expired = error.code == ErrorCode.MANAGE_LINK_EXPIRED
    return render(
        request,
        "portal/link_invalid.html",
        {"message": error.message, "expired": expired},
        status=410 if expired else 400,
    )


FORM_CONTENT_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
NOT_A_FORM = "This page takes its own forms only: nothing was changed. Use the buttons on the page."


def patient_page(view: Callable) -> Callable:
    """Read the link's appointment (or answer 400/410), hand the view `appointment`, `token` and `now`.

    A domain error a view does not map itself still gets the appointment page with the message.
    """

    @never_cache
    @wraps(view)
    def wrapper(request: HttpRequest, token: str) -> HttpResponse:
        now = timezone.now()
        try:
            appointment = appointment_from_manage_token(token, now=now)
        except InvalidInput as error:
            return _link_problem(request, error)
        if request.method == "POST" and request.content_type not in FORM_CONTENT_TYPES:
            # Only the page's own forms are read: another body (JSON, text) would read as every box unticked, the
            # patient's e-mails switched off and their topics muted by a request that asked for nothing of the kind.
            return _manage(request, appointment, token, now, error=NOT_A_FORM, status=415)
        try:
            return view(request, appointment=appointment, token=token, now=now)
        except DomainError as error:
            return _manage(request, appointment, token, now, error=error.message, status=error.http_status)

    return wrapper


def _preferences_form(appointment: Appointment, data=None) -> PreferencesForm:
    patient = appointment.patient
    state = channels_on(patient)
    muted = set(patient.muted_topics or [])
    initial = {
        "email": state["email"],
        "sms": state["sms"],
        "care": MessageTopic.CARE not in muted,
        "reminders": MessageTopic.REMINDERS not in muted,
    }
    return PreferencesForm(data, initial=initial, has_email=bool(patient.email), has_phone=bool(patient.phone))


def _manage(
    request: HttpRequest,
    appointment: Appointment,
    token: str,
    now: datetime,
    *,
    error: str = "",
    preferences: PreferencesForm | None = None,
    status: int = 200,
) -> HttpResponse:
    patient = appointment.patient
    self_service = appointment_self_service(appointment=appointment, now=now)
    return _page(
        request,
        "portal/manage.html",
        appointment,
        {
            "token": token,
            "self_service": self_service,
            # The deadline's own zone name: in the hour the clocks go back, "01:30" alone happens twice.
            "change_until_zone": _zone(appointment.clinic, self_service.change_until),
            "active": appointment.is_active,
            "ended_text": ENDED_TEXT.get(appointment.status, "This appointment is no longer booked."),
            "error": error,
            "preferences": preferences or _preferences_form(appointment),
            "sms_on": channels_on(patient)["sms"],
            "sms_consent_wording": sms_consent_wording(patient),
            "email_to": _masked_email(patient.email) if patient.email else "",
            "sms_to": _masked_phone(patient.phone) if patient.phone else "",
        },
        status=status,
    )


def _to_manage(token: str, anchor: str = "") -> SeeOther:
    return SeeOther(reverse("portal:manage", args=[token]) + anchor)


@patient_page
@require_safe
def manage(request: HttpRequest, *, appointment: Appointment, token: str, now: datetime) -> HttpResponse:
    """The page; a HEAD (a link previewer's, before a text's link is shown) answers as a GET and changes nothing:
    reading the page changes no state, and a notice waiting for the patient ("Done: ...") is left for their GET."""
    response = _manage(request, appointment, token, now)
    if request.method == "HEAD":
        messages.get_messages(request).used = False  # rendered, not read: kept for the patient's GET
    return response


@patient_page
@require_http_methods(["GET", "POST"])
def cancel(request: HttpRequest, *, appointment: Appointment, token: str, now: datetime) -> HttpResponse:
    verdict = appointment_self_service(appointment=appointment, now=now)
    if request.method == "GET":
        if not verdict.can_change:
            return _manage(request, appointment, token, now, error=verdict.refusal.message, status=409)
        return _cancel_page(request, appointment, token, CancelForm())
    form = CancelForm(request.POST)
    if not form.is_valid():
        damaged = form.errors.get("drawn", [""])[0]  # the hidden field: said above the form
        # Drawn again for another field (a note too long): still what the patient first saw, so that a change made
        # since is said when they send it again, not taken as seen.
        drawn = None if damaged else form.data.get("drawn") or None
        return _cancel_page(request, appointment, token, form, status=400, error=damaged, drawn=drawn)
    try:
        appointment_cancel_by_patient(
            appointment=appointment, now=now, reason=form.cleaned_data["reason"], drawn=form.cleaned_data["drawn"]
        )
    except InvalidTransition as error:
        appointment.refresh_from_db()
        return _manage(request, appointment, token, now, error=error.message, status=409)
    except PreconditionFailed:
        # Someone moved the visit since this page was drawn (the clinic, or the patient in another tab): the patient
        # sees where it is now before cancelling it (what they write is kept); pressing the button again cancels it.
        appointment.refresh_from_db()
        changed = f"This appointment has changed since you opened this page: it is now on {_when(appointment)}."
        kept = CancelForm(initial={"reason": form.cleaned_data["reason"]})
        return _cancel_page(request, appointment, token, kept, status=409, error=changed)
    messages.success(request, "Your appointment is cancelled. You do not need to do anything else.")
    return _to_manage(token)


def _cancel_page(
    request,
    appointment: Appointment,
    token: str,
    form: CancelForm,
    *,
    status=200,
    error: str = "",
    drawn: str | None = None,
):
    """The cancel page, carrying where the visit is as drawn (`drawn_key`, or `drawn`: what an earlier drawing of
    it carried); `error` is said above the form."""
    context = {"token": token, "form": form, "drawn": drawn or drawn_key(appointment), "error": error}
    return _page(request, "portal/cancel.html", appointment, context, status=status)


def _when(appointment: Appointment) -> str:
    """Where the visit is now, in a sentence: its day, time with the zone named (01:30 happens twice on the night the
    clocks go back), and practitioner."""
    start = appointment.start_at
    local = start.astimezone(appointment.clinic.tz)
    zone = _zone(appointment.clinic, start)
    return f"{local:%A} {local.day} {local:%B %Y} at {local:%H:%M} {zone} with {appointment.practitioner.name}"


def _days(appointment: Appointment, options: list[Slot]) -> list[dict]:
    """The offered times grouped by the clinic's local day, each as the value the confirm step reads."""
    tz = appointment.clinic.tz
    own = str(appointment.practitioner_id)
    days = []
    for day, slots in groupby(options, key=lambda slot: slot.start_at.astimezone(tz).date()):
        days.append(
            {
                "day": day,
                "slots": [
                    {
                        "key": slot_key(slot.start_at, slot.practitioner_id),
                        "start_at": slot.start_at,
                        "practitioner": slot.practitioner_name,
                        "own": slot.practitioner_id == own,
                    }
                    for slot in slots
                ],
            }
        )
    return days


def _move_page(
    request: HttpRequest, appointment: Appointment, token: str, now: datetime, *, error: str = "", status: int = 200
) -> HttpResponse:
    bounds = session_move_bounds(appointment)
    try:
        options = course_session_move_options(appointment=appointment, bounds=bounds, now=now)
    except InvalidTransition as refused:
        return _manage(request, appointment, token, now, error=refused.message, status=409)
    course = course_session_move_text(appointment=appointment, bounds=bounds, now=now) if bounds is not None else ""
    return _page(
        request,
        "portal/move.html",
        appointment,
        {
            "token": token,
            "days": _days(appointment, options),
            "error": error,
            "course": course,
            "course_note": course != error,  # a refusal already says it
        },
        status=status,
    )


# Someone else took the time (or the patient's own other booking did) since the list was shown.
_TAKEN = {AvailabilityCode.SLOT_TAKEN, AvailabilityCode.NO_PRACTITIONER, AvailabilityCode.PATIENT_BUSY}


def _refusal(error: UnableToBook) -> str:
    """The refusal in a patient's words. An interval rule's own message is shown only where it measures from a
    treatment (it names only their own treatments); a contraindication names a condition or a medicine, and an
    interval rule measured from a medication course (isotretinoin) names the medicine, which this page (reached by a
    link that travels by SMS and may be forwarded) never shows: the patient is asked to call instead, as for a
    time a rule only warns about (AdvisedAgainst, its own words)."""
    if isinstance(error, AdvisedAgainst):
        return error.message
    blocking = error.check.blocking
    if blocking and all(violation.code == AvailabilityCode.PATIENT_BUSY for violation in blocking):
        return "You have another appointment at that time. Please choose another time."
    if blocking and all(violation.code in _TAKEN for violation in blocking):
        return "Sorry, that time is no longer free. Please choose another time."
    if all(violation.kind == "availability" for violation in blocking):
        return "Sorry, that time is not available. Please choose a time from the list."
    if not all(violation.kind == "availability" or _names_a_treatment(violation) for violation in blocking):
        return "Sorry, this treatment cannot be moved online at the moment. Please call the clinic."
    interval = next(violation for violation in blocking if violation.kind != "availability")
    return f"Sorry, that time is not possible: {interval.message} Please choose another time."


def _names_a_treatment(violation: Violation) -> bool:
    """An interval rule measured from a treatment (done or booked): its words name only the patient's treatments. One
    measured from a medication course, a contraindication (a condition, a medicine) or any kind not known here: no."""
    ref = violation.conflicts_with
    return violation.kind == "interval" and ref is not None and ref.kind == "procedure"


def _already_there(appointment: Appointment, check: BookingCheck) -> bool:
    """The chosen time is the appointment's own (where, when, with whom): the page offers no move. The service
    decides for itself (scheduler.booking._already_there): a move there that would change the status still goes."""
    practitioner_id = check.practitioner.pk if check.practitioner else None
    return (check.start_at, check.end_at, practitioner_id) == (
        appointment.start_at,
        appointment.end_at,
        appointment.practitioner_id,
    )


@patient_page
@require_GET
def move(request: HttpRequest, *, appointment: Appointment, token: str, now: datetime) -> HttpResponse:
    return _move_page(request, appointment, token, now)


@patient_page
@require_http_methods(["GET", "POST"])
def move_confirm(request: HttpRequest, *, appointment: Appointment, token: str, now: datetime) -> HttpResponse:
    form = SlotForm(request.POST if request.method == "POST" else request.GET)
    if not form.is_valid():
        error = next(iter(form.errors.values()))[0]
        return _move_page(request, appointment, token, now, error=error, status=400)
    start_at, practitioner_id = form.cleaned_data["slot"]
    bounds = session_move_bounds(appointment)
    if not course_session_move_allowed(appointment=appointment, bounds=bounds, start_at=start_at):
        told = course_session_move_text(appointment=appointment, bounds=bounds, now=now)
        return _move_page(request, appointment, token, now, error=told, status=409)
    try:
        if request.method == "GET":
            check = patient_move_check(
                appointment=appointment, start_at=start_at, practitioner_id=practitioner_id, now=now
            )
            return _page(
                request,
                "portal/move_confirm.html",
                appointment,
                {
                    "token": token,
                    "slot": form.data["slot"],
                    "new_start": check.start_at,
                    "new_end": check.end_at,
                    "practitioner": check.practitioner,
                    "new_zone": _zone(appointment.clinic, check.start_at),
                    "drawn": drawn_key(appointment),
                    # Back to this step after the move (or a second tab): nothing left to confirm.
                    "already_there": _already_there(appointment, check),
                },
            )
        result = course_session_move(
            appointment=appointment,
            start_at=start_at,
            practitioner_id=practitioner_id,
            now=now,
            drawn=form.cleaned_data["drawn"],
        )
    except PreconditionFailed:
        # Someone moved the visit (the clinic, or the patient in another tab) or gave it to another practitioner since
        # the confirm page showed "from": nothing moves; the times are offered again from where it is now.
        appointment.refresh_from_db()
        changed = (
            f"This appointment has changed since you opened that page: it is now on {_when(appointment)}. "
            "If you still want to move it, please choose a time again."
        )
        return _move_page(request, appointment, token, now, error=changed, status=409)
    except CourseMoveRefused as refused:  # the course's days, read again under the lock (another tab moved one)
        return _move_page(request, appointment, token, now, error=refused.message, status=409)
    except UnableToBook as error:
        return _move_page(request, appointment, token, now, error=_refusal(error), status=409)
    except InvalidInput as error:
        return _move_page(request, appointment, token, now, error=error.message, status=400)
    except InvalidTransition as error:
        appointment.refresh_from_db()
        if appointment_self_service(appointment=appointment, now=now).can_change:  # only that time is too soon
            return _move_page(request, appointment, token, now, error=error.message, status=409)
        return _manage(request, appointment, token, now, error=error.message, status=409)
    moved = result.appointment
    when = moved.start_at.astimezone(appointment.clinic.tz)
    text = (
        f"Done: your appointment is now on {when:%A} {when.day} {when:%B %Y} at {when:%H:%M} "
        f"{_zone(appointment.clinic, moved.start_at)}."
    )
    if moved.status == AppointmentStatus.PENDING_CLEARANCE:
        text += " A clinician will check it before it is confirmed; we will be in touch."
    messages.success(request, text)
    # The link names its expiry from the appointment's end: after a move, carry on with a fresh one.
    return _to_manage(manage_token(moved))


@patient_page
@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest, *, appointment: Appointment, token: str, now: datetime) -> HttpResponse:
    if request.method == "GET":
        return _to_manage(token, "#preferences")
    form = _preferences_form(appointment, request.POST)
    if not form.is_valid():  # booleans: only a tampered form fails here
        return _manage(request, appointment, token, now, preferences=form, status=400)
    data = form.cleaned_data
    try:
        change = patient_preferences_update(
            patient=appointment.patient,
            now=now,
            email=form.changed("email"),
            sms=form.changed("sms"),
            sms_consent=bool(data.get("sms_consent")),
            mute=form.topic_changes(),
        )
    except InvalidInput as error:
        form.add_domain_error(error)
        return _manage(request, appointment, token, now, preferences=form, status=400)
    saved = (
        "Your message choices are saved."
        if change.changed
        else "Nothing to change: your message choices are as they were."
    )
    # Texts back on after their own STOP, where the provider blocks until START: what to do (as the desk is told).
    messages.success(request, f"{saved} {change.advice}" if change.advice else saved)
    return _to_manage(token, "#preferences")


@patient_page
@require_http_methods(["GET", "POST"])
def calendar(request: HttpRequest, *, appointment: Appointment, token: str, now: datetime) -> HttpResponse:
    """A private calendar link for all this patient's appointments (a new one switches the old off)."""
    if request.method == "GET":
        return _to_manage(token, "#calendar")
    url = patient_calendar_feed_renew(patient=appointment.patient, now=now)
    messages.success(request, _calendar_message(url))
    return _to_manage(token, "#calendar")


def _calendar_message(url: str) -> str:
    """The feed as links a phone opens: webcal:// asks the phone's calendar to subscribe; the https address is
    shown whole, to copy into a calendar that asks for one (a SafeString: messages keep it safe across the
    redirect)."""
    webcal = "webcal://" + url.partition("://")[2]
    return format_html(
        "Your calendar link is ready. Keep it to yourself: anyone with it sees your appointments."
        ' <a class="button calendar-add" href="{}">Add to my calendar</a>'
        ' Or copy this address into your calendar app as a subscription: <a href="{}">{}</a>',
        webcal,
        url,
        url,
    )
