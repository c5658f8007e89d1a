"""Booking and rescheduling, with the live check panel (htmx) and one-click slots.

Both are the same flow over a `checks.SlotRequest` (a move names its
appointment): a GET with the form's values checks (the whole page, or only
the panel when htmx asks) through `_check_page`; a POST books or moves through
`_submit`. Both ask scheduler.booking, so what the panel says is what booking
does.

The calendar uses the same views in place (frontdesk/static/frontdesk/calendar.js): a POST
sent with `HX-Request` answers with a fragment instead of a redirect (`_done.html` on
success, the form and panel again with the 409 on a refusal, or with the 400 on bad input),
so the grid updates without leaving the day. calendar.js draws whatever body comes back,
whatever its status; htmx itself only runs the checks (GET, answered 200).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from clinic.models import Appointment, AppointmentStatus
from core.errors import PreconditionFailed
from core.timeutils import wall_moment
from frontdesk import checks, selectors
from frontdesk.forms import BookingForm, DomainErrors, RescheduleForm, WhenForm
from frontdesk.views.base import appointment_or_404, clinic_page, page, patient_or_404
from reminders.models import MessageKind
from scheduler.booking import BookingResult


def _panel(form: WhenForm, now) -> tuple[checks.Panel | None, str | None]:
    """The panel for the form's values, and None; or None, with the reason on the form (bad input) or returned (the
    service's refusal: a visit whose status allows no move, a completed or cancelled one, is told why, as the move
    posted is)."""
    if not form.is_valid():
        return None, None
    with DomainErrors(form) as outcome:
        return checks.panel(form.slot_request(), now=now, start=form.requested_start, day_start=form.day_start), None
    return None, outcome.refused


def _check_page(request, form: WhenForm, template: str, context: dict):
    panel, check_refused = _panel(form, timezone.now()) if form.is_bound else (None, None)
    context = {**context, "form": form, "panel": panel, "check_refused": check_refused}
    if request.htmx:
        return page(request, "frontdesk/_check_panel.html", {**context, "oob_errors": True})
    return page(request, template, context)


def _submit(
    request,
    form: WhenForm,
    template: str,
    context: dict,
    *,
    done: Callable[[BookingResult], str],
    fragment: str,
    already: Callable[[datetime], tuple[Appointment, str] | None] | None = None,
):
    """Book or move at the start the form names; on a refusal, show why with today's panel (409); on bad input
    (a field in error, a time the clocks skip or repeat, no time at all), the form again with its errors (400), as
    the cancel and notes forms answer it.

    Asked in place (`HX-Request`, from the calendar), the answer is a fragment: `_done.html` naming
    the appointment, or `fragment` (the form and panel) with the refusal. A refusal whose request was already
    carried out (`already` finds the appointment: a booking form sent twice) goes to it, saying so, instead of
    answering "Not booked" to what was booked.
    """
    now = timezone.now()
    outcome = DomainErrors(form, invalid_status=400)
    if form.is_valid():
        start = form.requested_start
        if start is None:
            form.add_error("time", form.time_needed)
        else:
            with outcome:
                result = form.slot_request().submit(
                    start_at=start,
                    actor=request.actor,
                    now=now,
                    reason=form.cleaned_data.get("reason", ""),
                    drawn=form.cleaned_data.get("from_start_at"),
                )
                if request.htmx:
                    return page(
                        request, "frontdesk/_done.html", {"appointment": result.appointment, "done": done(result)}
                    )
                messages.success(request, done(result))
                return redirect(
                    "frontdesk:appointment", clinic_code=request.clinic.code, appointment_id=result.appointment.pk
                )
    found = already(now) if outcome.refused and already is not None else None
    if found is not None:
        made, told = found
        if request.htmx:
            return page(request, "frontdesk/_done.html", {"appointment": made, "done": told})
        messages.info(request, told)
        return redirect("frontdesk:appointment", clinic_code=request.clinic.code, appointment_id=made.pk)
    # Show the refusal with today's answer (a slot may have just gone), and what to offer instead.
    panel, check_refused = _panel(form, now) if outcome.refused else (None, None)
    return page(
        request,
        fragment if request.htmx else template,
        {
            **context,
            "form": form,
            "panel": panel,
            "check_refused": check_refused,
            "refused": outcome.refused,
            "in_place": request.htmx,
        },
        status=outcome.status if outcome.error is not None else 400,  # else the form's own errors
    )


def _when(appointment) -> str:
    return wall_moment(appointment.start_at)  # which reading, in the hour the clocks go back


# --- Book ---------------------------------------------------------------------------------------


def booking_context(request, patient) -> dict:
    return {
        "patient": patient,
        "mode": "book",
        "nav": "patients",
        # Booked at the desk's clinic (any clinic of the patient's organisation), not the patient's home one.
        "submit_url": reverse("frontdesk:book_submit", args=[request.clinic.code, patient.pk]),
        "appointments_by_id": selectors.patient_appointments_by_id(patient),
    }


def _booked(result: BookingResult) -> str:
    return _booked_text(result.appointment)


def _booked_text(appointment: Appointment) -> str:
    if appointment.status == AppointmentStatus.PENDING_CLEARANCE:
        return (
            f"Booked {appointment.procedure} on {_when(appointment)} with {appointment.practitioner}: "
            "PENDING CLEARANCE. A clinician must clear it before treatment; no reminders go out until then."
        )
    return f"Booked and confirmed: {appointment.procedure} on {_when(appointment)} with {appointment.practitioner}."


def booking_form(request, patient, data, **kwargs) -> BookingForm:
    return BookingForm(
        data, clinic=request.clinic, patient=patient, today=timezone.localdate(timezone=request.clinic.tz), **kwargs
    )


@clinic_page
@require_safe
def book(request, patient_id):
    patient = patient_or_404(request, patient_id)
    return _check_page(
        request,
        booking_form(request, patient, request.GET or None),
        "frontdesk/book.html",
        booking_context(request, patient),
    )


@clinic_page
@require_POST
def book_submit(request, patient_id):
    patient = patient_or_404(request, patient_id)
    form = booking_form(request, patient, request.POST)

    def already(now):
        made = selectors.booking_already_made(
            patient=patient,
            clinic=request.clinic,
            procedure_code=form.cleaned_data["procedure"],
            area_code=form.cleaned_data["area"],
            start_at=form.requested_start,
            now=now,
            practitioner_id=form.cleaned_data["practitioner"] or None,
        )
        return None if made is None else (made, f"Already booked (the form was sent twice). {_booked_text(made)}")

    return _submit(
        request,
        form,
        "frontdesk/book.html",
        booking_context(request, patient),
        done=_booked,
        fragment="frontdesk/_booking.html",
        already=already,
    )


# --- Reschedule --------------------------------------------------------------------------------


def _reschedule_context(appointment) -> dict:
    return {
        "appointment": appointment,
        "patient": appointment.patient,
        "mode": "reschedule",
        "nav": "patients",
        "submit_url": reverse("frontdesk:reschedule", args=[appointment.clinic.code, appointment.pk]),
        "appointments_by_id": selectors.patient_appointments_by_id(appointment.patient),
    }


def _moved(result: BookingResult) -> str:
    moved = result.appointment
    note = " It is PENDING CLEARANCE again." if moved.status == AppointmentStatus.PENDING_CLEARANCE else ""
    told = "" if selectors.patient_will_be_told(moved, MessageKind.RESCHEDULED) else f" {selectors.NOBODY_TELLS_THEM}"
    return f"Moved to {_when(moved)} with {moved.practitioner}.{note}{told}"


@clinic_page
@require_http_methods(["GET", "HEAD", "POST"])
def reschedule(request, appointment_id):
    appointment = appointment_or_404(request, appointment_id)
    data = request.POST if request.method == "POST" else (request.GET or None)
    form = RescheduleForm(
        data, clinic=request.clinic, appointment=appointment, today=timezone.localdate(timezone=request.clinic.tz)
    )
    if request.method == "POST":
        try:
            return _submit(
                request,
                form,
                "frontdesk/reschedule.html",
                _reschedule_context(appointment),
                done=_moved,
                fragment="frontdesk/_check_panel.html",
            )
        except PreconditionFailed:
            appointment = appointment_or_404(request, appointment_id)  # where it is now
            form.appointment = appointment
            return _moved_meanwhile(request, form, appointment)
    return _check_page(request, form, "frontdesk/reschedule.html", _reschedule_context(appointment))


def _moved_meanwhile(request, form: RescheduleForm, appointment):
    """A move sent from a page drawn before someone else moved the visit: nothing moves (it would undo their move
    unseen). The page says where the visit is now, with what was chosen kept and checked again, drawn from where it
    is now: sending it again moves it. The service compares under its locks (appointment_reschedule's `drawn`), so
    two moves sent from one page at once are told apart."""
    form = form.redrawn()
    panel, check_refused = _panel(form, timezone.now())
    refused = (
        f"This visit has moved since you opened this page: it is now on {_when(appointment)} with "
        f"{appointment.practitioner}. If it should still move, check the new time below and send it again."
    )
    return page(
        request,
        "frontdesk/_check_panel.html" if request.htmx else "frontdesk/reschedule.html",
        {
            **_reschedule_context(appointment),
            "form": form,
            "panel": panel,
            "check_refused": check_refused,
            "refused": refused,
            "in_place": request.htmx,
        },
        status=409,
    )
