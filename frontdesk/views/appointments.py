"""One appointment: its details, reminders and audit trail, and the actions on it.

Who may do what is the services' decision (Actor.clinical comes from the
user's role at this clinic); a refusal is a 403 whatever the page showed.
"""
from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.http import require_POST

from clinic.models import AppointmentStatus
from frontdesk import checks, selectors
from frontdesk.forms import CancelForm, ClearForm
from frontdesk.views.base import appointment_or_404, clinic_page, page
from scheduler.booking import (
    UnableToBook,
    appointment_cancel,
    appointment_clear,
    appointment_complete,
    appointment_mark_no_show,
)
from core.errors import InvalidInput, InvalidTransition


def _detail(request, appointment, *, clear_form=None, cancel_form=None, error=None, status=200):
    now = timezone.now()
    pending = appointment.status == AppointmentStatus.PENDING_CLEARANCE
    reminders = selectors.appointment_reminders(appointment)
    return page(request, "frontdesk/appointment_detail.html", {
        "appointment": appointment,
        "patient": appointment.patient,
        "clear_form": clear_form or ClearForm(),
        "cancel_form": cancel_form or CancelForm(),
        "clearance_reasons": checks.clearance_reasons(appointment) if pending else [],
        "reminders": reminders,
        "reminders_total": sum(len(group.messages) for group in reminders),
        "audit": appointment.audit_events.select_related("actor_user"),
        "started": appointment.start_at <= now,
        "active": appointment.is_active,
        "action_error": error,
        "appointments_by_id": selectors.patient_appointments_by_id(appointment.patient),
        "nav": "patients",
    }, status=status)


@clinic_page
def appointment_detail(request, appointment_id):
    return _detail(request, appointment_or_404(request, appointment_id))


def _done(request, appointment, message: str):
    messages.success(request, message)
    return redirect("frontdesk:appointment", clinic_code=request.clinic.code, appointment_id=appointment.pk)


@clinic_page
@require_POST
def appointment_clear_view(request, appointment_id):
    appointment = appointment_or_404(request, appointment_id)
    form = ClearForm(request.POST)
    # The service, not the form, decides who may clear: check the right first so a
    # receptionist gets a 403 even with an empty reason.
    reason = request.POST.get("reason", "")
    try:
        cleared = appointment_clear(appointment=appointment, actor=request.actor, now=timezone.now(), reason=reason)
    except InvalidInput as error:
        if form.is_valid():  # else the form already says what is missing
            form.add_domain_error(error)
        return _detail(request, appointment, clear_form=form, status=400)
    except (InvalidTransition, UnableToBook) as error:
        return _detail(request, appointment, clear_form=form, error=error.message, status=409)
    return _done(request, cleared, "Cleared: the booking is confirmed and its reminders are released.")


@clinic_page
@require_POST
def appointment_complete_view(request, appointment_id):
    appointment = appointment_or_404(request, appointment_id)
    try:
        done = appointment_complete(appointment=appointment, actor=request.actor, now=timezone.now())
    except InvalidTransition as error:
        return _detail(request, appointment, error=error.message, status=409)
    return _done(request, done, "Marked completed: added to the patient's history; post-care starts now.")


@clinic_page
@require_POST
def appointment_no_show_view(request, appointment_id):
    appointment = appointment_or_404(request, appointment_id)
    try:
        missed = appointment_mark_no_show(appointment=appointment, actor=request.actor, now=timezone.now())
    except InvalidTransition as error:
        return _detail(request, appointment, error=error.message, status=409)
    return _done(request, missed, "Marked as a no-show.")


@clinic_page
@require_POST
def appointment_cancel_view(request, appointment_id):
    appointment = appointment_or_404(request, appointment_id)
    form = CancelForm(request.POST)
    if not form.is_valid():
        return _detail(request, appointment, cancel_form=form, status=400)
    try:
        cancelled = appointment_cancel(appointment=appointment, actor=request.actor, now=timezone.now(),
                                       reason=form.cleaned_data["reason"])
    except InvalidTransition as error:
        return _detail(request, appointment, cancel_form=form, error=error.message, status=409)
    return _done(request, cancelled, "Cancelled: the slot is free again and the patient will be told.")
