"""Booking and rescheduling, with the live check panel (htmx) and one-click slots.

A GET with the form's values checks (the whole page, or only the panel when
htmx asks); a POST books or moves. Both ask scheduler.booking, so what the
panel says is what booking does.
"""
from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from frontdesk import checks, selectors
from frontdesk.forms import BookingForm, RescheduleForm
from frontdesk.views.base import appointment_or_404, clinic_page, page, patient_or_404
from scheduler.booking import UnableToBook, appointment_book, appointment_reschedule
from core.errors import InvalidInput, InvalidTransition


def _day_start(form, clinic):
    day = form.day()
    return selectors.local_day_range(day, clinic.tz)[0] if day else None


def _render(request, template: str, context: dict, *, status: int = 200):
    if request.htmx and request.method == "GET":
        return page(request, "frontdesk/_check_panel.html", {**context, "oob_errors": True}, status=status)
    return page(request, template, context, status=status)


def _panel_for_booking(request, patient, form, now):
    """The panel for the form's current values, or None (with the reason on the form)."""
    if not form.is_valid():
        return None
    start = form.start()
    if form.errors:
        return None
    data = form.cleaned_data
    if form.day() and start is None and form.day() < timezone.localdate(now, timezone=request.clinic.tz):
        form.add_error("date", "That day has passed; choose today or a later day.")
        return None
    try:
        return checks.booking_panel(patient=patient, procedure_code=data["procedure"], now=now, start=start,
                                    day_start=_day_start(form, request.clinic), area_code=data["area"] or None,
                                    practitioner_id=data["practitioner"] or None)
    except InvalidInput as error:
        form.add_domain_error(error)
        return None


@clinic_page
def book(request, patient_id):
    patient = patient_or_404(request, patient_id)
    now = timezone.now()
    form = BookingForm(request.GET or None, clinic=request.clinic)
    panel = _panel_for_booking(request, patient, form, now) if form.is_bound else None
    return _render(request, "frontdesk/book.html", _booking_context(patient, form, panel))


def _booking_context(patient, form, panel, **extra) -> dict:
    return {"patient": patient, "form": form, "panel": panel, "mode": "book", "nav": "patients",
            "submit_url": reverse("frontdesk:book_submit", args=[patient.clinic.code, patient.pk]),
            "appointments_by_id": selectors.patient_appointments_by_id(patient), **extra}


@clinic_page
@require_POST
def book_submit(request, patient_id):
    patient = patient_or_404(request, patient_id)
    now = timezone.now()
    form = BookingForm(request.POST, clinic=request.clinic)
    status, refused = 200, None
    if form.is_valid():
        start = form.start()
        if start is None and not form.errors:
            form.add_error("time", "Choose a time, or one of the free times offered.")
        if start is not None:
            data = form.cleaned_data
            try:
                result = appointment_book(patient=patient, procedure_code=data["procedure"], start_at=start,
                                          actor=request.actor, now=now, area_code=data["area"] or None,
                                          practitioner_id=data["practitioner"] or None)
            except UnableToBook as error:
                refused, status = error.message, 409
            except InvalidInput as error:
                form.add_domain_error(error)
            else:
                appointment = result.appointment
                messages.success(request, _booked_message(appointment))
                return redirect("frontdesk:appointment", clinic_code=request.clinic.code,
                                appointment_id=appointment.pk)
    # Show the refusal with today's answer (a slot may have just gone), and what to offer instead.
    panel = _panel_for_booking(request, patient, form, now) if refused else None
    return page(request, "frontdesk/book.html", _booking_context(patient, form, panel, refused=refused),
                status=status)


def _booked_message(appointment) -> str:
    when = timezone.localtime(appointment.start_at).strftime("%a %d %b %Y, %H:%M")
    if appointment.status == "pending_clearance":
        return (f"Booked {appointment.procedure} on {when} with {appointment.practitioner}: PENDING CLEARANCE. "
                "A clinician must clear it before treatment; no reminders go out until then.")
    return f"Booked and confirmed: {appointment.procedure} on {when} with {appointment.practitioner}."


# --- Reschedule --------------------------------------------------------------------------------


def _panel_for_reschedule(request, appointment, form, now):
    if not form.is_valid():
        return None
    start = form.start()
    if form.errors:
        return None
    if form.day() and start is None and form.day() < timezone.localdate(now, timezone=request.clinic.tz):
        form.add_error("date", "That day has passed; choose today or a later day.")
        return None
    try:
        return checks.reschedule_panel(appointment=appointment, now=now, start=start,
                                       day_start=_day_start(form, request.clinic),
                                       practitioner_id=form.cleaned_data["practitioner"] or None)
    except InvalidInput as error:
        form.add_domain_error(error)
        return None


def _reschedule_context(appointment, form, panel, **extra) -> dict:
    return {"appointment": appointment, "patient": appointment.patient, "form": form, "panel": panel,
            "mode": "reschedule", "nav": "patients",
            "submit_url": reverse("frontdesk:reschedule", args=[appointment.clinic.code, appointment.pk]),
            "appointments_by_id": selectors.patient_appointments_by_id(appointment.patient), **extra}


@clinic_page
def reschedule(request, appointment_id):
    appointment = appointment_or_404(request, appointment_id)
    now = timezone.now()
    if request.method == "POST":
        form = RescheduleForm(request.POST, clinic=request.clinic, appointment=appointment)
        status, refused = 200, None
        if form.is_valid():
            start = form.start()
            if start is None and not form.errors:
                form.add_error("time", "Choose a new time, or one of the free times offered.")
            if start is not None:
                try:
                    result = appointment_reschedule(
                        appointment=appointment, start_at=start, actor=request.actor, now=now,
                        practitioner_id=form.cleaned_data["practitioner"] or None,
                        reason=form.cleaned_data["reason"])
                except UnableToBook as error:
                    refused, status = error.message, 409
                except InvalidTransition as error:
                    refused, status = error.message, 409
                except InvalidInput as error:
                    form.add_domain_error(error)
                else:
                    moved = result.appointment
                    when = timezone.localtime(moved.start_at).strftime("%a %d %b %Y, %H:%M")
                    note = " It is PENDING CLEARANCE again." if moved.status == "pending_clearance" else ""
                    messages.success(request, f"Moved to {when} with {moved.practitioner}.{note}")
                    return redirect("frontdesk:appointment", clinic_code=request.clinic.code,
                                    appointment_id=moved.pk)
        panel = _panel_for_reschedule(request, appointment, form, now) if refused and start else None
        return page(request, "frontdesk/reschedule.html",
                    _reschedule_context(appointment, form, panel, refused=refused), status=status)
    form = RescheduleForm(request.GET or None, clinic=request.clinic, appointment=appointment)
    panel = _panel_for_reschedule(request, appointment, form, now) if form.is_bound else None
    return _render(request, "frontdesk/reschedule.html", _reschedule_context(appointment, form, panel))
