"""One appointment: its details, reminders and audit trail, and the actions on it.

Who may do what is the services' decision (Actor.clinical comes from the
user's role at this clinic); a refusal is a 403 whatever the page showed.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.utils import timezone
from django.utils.formats import date_format
from django.views.decorators.http import require_POST, require_safe

from clinic.models import Appointment, AppointmentStatus
from clinic.services import appointment_notes_set
from core.errors import PreconditionFailed
from core.timeutils import wall_moment
from frontdesk import checks, selectors
from frontdesk.forms import AppointmentNotesForm, CancelForm, ClearForm, DomainErrors, drawn_at
from frontdesk.views.base import appointment_or_404, clinic_page, page
from reminders.dispatch import patient_message_send_again
from reminders.models import MessageKind
from reminders.selectors import patient_messages
from scheduler.booking import (
    appointment_cancel,
    appointment_check_in,
    appointment_clear,
    appointment_complete,
    appointment_mark_no_show,
    appointment_recheck,
)

# The clearance and the cancel forms both have a `reason`: on a pending booking's page both show, so the cancel
# form's ids are its own (cancel_reason, its label and error with it); the posted name stays `reason`.
CANCEL_IDS = "cancel_%s"

# A completion or no-show posted from Today's list goes back there (`back`): the only place a form may name.
BACK_TO_TODAY = "today"


def _detail(
    request,
    appointment,
    *,
    clear_form=None,
    cancel_form=None,
    notes_form=None,
    notes_now: str | None = None,
    error=None,
    status=200,
):
    now = timezone.now()
    pending = appointment.status == AppointmentStatus.PENDING_CLEARANCE
    flagged = appointment.status == AppointmentStatus.NEEDS_REVIEW
    to_come = appointment.is_active and appointment.start_at > now
    # The rules as they stand now, read once for the visit's reasons and warnings (a visit under way is not checked).
    check = appointment_recheck(appointment=appointment) if to_come or pending or flagged else None
    reminders = selectors.appointment_reminders(appointment)
    return page(
        request,
        "frontdesk/appointment_detail.html",
        {
            "appointment": appointment,
            "patient": appointment.patient,
            "clear_form": clear_form or ClearForm(),
            "cancel_form": cancel_form
            or CancelForm(auto_id=CANCEL_IDS, initial={"from_start_at": drawn_at(appointment)}),
            "notes_form": notes_form or AppointmentNotesForm(appointment=appointment),
            "notes_now": notes_now,  # the notes as saved meanwhile by someone else, when a save of them was refused
            # Arrival is recorded on the appointment's own day (the service says so too).
            "can_check_in": (
                appointment.is_active
                and appointment.checked_in_at is None
                and timezone.localdate(appointment.start_at) == timezone.localdate(now)
            ),
            "clearance_reasons": checks.clearance_reasons(appointment, check) if pending else [],
            "review_reasons": checks.review_reasons(appointment, check) if flagged else [],
            "standing_warnings": checks.standing_warnings(appointment, check) if to_come else [],
            "reminders": reminders,
            "reminders_total": sum(len(group.messages) for group in reminders),
            "audit": appointment.audit_events.select_related("actor_user"),
            "started": appointment.start_at <= now,
            "active": appointment.is_active,
            "action_error": error,
            "appointments_by_id": selectors.patient_appointments_by_id(appointment.patient),
            "nav": "patients",
        },
        status=status,
    )


@clinic_page
@require_safe
def appointment_detail(request, appointment_id):
    return _detail(request, appointment_or_404(request, appointment_id))


def _act(request, appointment_id, action, *, done: str | Callable[[Appointment], str], form=None, form_name: str = ""):
    """Run one action on the appointment: done, a redirect with `done` (or what it says of the result); refused, the
    page with why.

    The service runs first, whatever the form says, so that a receptionist gets a 403 for a
    clinician's action even with an empty reason (`clinic_page` maps `NotAllowed`).
    """
    appointment = appointment_or_404(request, appointment_id)
    with DomainErrors(form, invalid_status=400) as outcome:
        result = action(appointment, timezone.now())
        said = done(result) if callable(done) else done
        if request.POST.get("back") == BACK_TO_TODAY:
            # Closed from Today's list of visits with no outcome: back to the list, the visit named (it is gone
            # from the list). Only this one fixed place is accepted, never an address from the form.
            when = date_format(timezone.localtime(result.start_at, request.clinic.tz), "j M, H:i")
            messages.success(request, f"{result.patient}, {result.procedure.display_short} ({when}). {said}")
            return redirect("frontdesk:today", clinic_code=request.clinic.code)
        messages.success(request, said)
        return redirect("frontdesk:appointment", clinic_code=request.clinic.code, appointment_id=result.pk)
    forms = {form_name: form} if form is not None else {}
    return _detail(request, appointment, error=outcome.refused, status=outcome.status, **forms)


@clinic_page
@require_POST
def appointment_clear_view(request, appointment_id):
    form = ClearForm(request.POST)
    valid = form.is_valid()
    if not valid and request.clinical:
        # A reason the API refuses too (blank, too long, a control character but tab, CR and LF): nothing is
        # cleared, the form again with why (400), as the cancel form answers it. Who may clear stays the service's
        # word: a receptionist is refused (403) whatever the reason says, and is never handed an unchecked one.
        return _detail(request, appointment_or_404(request, appointment_id), clear_form=form, status=400)
    return _act(
        request,
        appointment_id,
        lambda appointment, now: appointment_clear(
            appointment=appointment, actor=request.actor, now=now, reason=form.cleaned_data["reason"] if valid else ""
        ),
        done="Cleared: the booking is confirmed and its reminders are released.",
        form=form,
        form_name="clear_form",
    )


@clinic_page
@require_POST
def appointment_complete_view(request, appointment_id):
    return _act(
        request,
        appointment_id,
        lambda appointment, now: appointment_complete(appointment=appointment, actor=request.actor, now=now),
        done="Marked completed: added to the patient's history; post-care starts now.",
    )


@clinic_page
@require_POST
def appointment_no_show_view(request, appointment_id):
    return _act(
        request,
        appointment_id,
        lambda appointment, now: appointment_mark_no_show(appointment=appointment, actor=request.actor, now=now),
        done="Marked as a no-show.",
    )


def _cancelled(appointment: Appointment) -> str:
    if selectors.patient_will_be_told(appointment, MessageKind.CANCELLED):
        return "Cancelled: the slot is free again and the patient will be told."
    return f"Cancelled: the slot is free again. {selectors.NOBODY_TELLS_THEM}"


@clinic_page
@require_POST
def appointment_cancel_view(request, appointment_id):
    form = CancelForm(request.POST, auto_id=CANCEL_IDS)
    if not form.is_valid():
        appointment = appointment_or_404(request, appointment_id)
        if "from_start_at" in form.errors:  # the hidden field: said above the page, the form drawn again from now
            kept = CancelForm(
                auto_id=CANCEL_IDS,
                initial={"reason": request.POST.get("reason", ""), "from_start_at": drawn_at(appointment)},
            )
            return _detail(request, appointment, error=form.errors["from_start_at"][0], cancel_form=kept, status=400)
        return _detail(request, appointment, cancel_form=form, status=400)
    try:
        return _act(
            request,
            appointment_id,
            lambda appointment, now: appointment_cancel(
                appointment=appointment,
                actor=request.actor,
                now=now,
                reason=form.cleaned_data["reason"],
                drawn=form.cleaned_data["from_start_at"],
            ),
            done=_cancelled,
            form=form,
            form_name="cancel_form",
        )
    except PreconditionFailed:
        # Someone moved the visit (or gave it to someone else) since this page was drawn: nothing is cancelled; the
        # page shows it as it is now, the reason kept, drawn from now: sending it again cancels it.
        appointment = appointment_or_404(request, appointment_id)
        changed = (
            "This visit has changed since you opened this page: it is now on "
            f"{wall_moment(appointment.start_at, request.clinic.tz)} with {appointment.practitioner}. "
            "Nothing was cancelled: if it should still be cancelled, send the form again."
        )
        kept = CancelForm(
            auto_id=CANCEL_IDS, initial={"reason": form.cleaned_data["reason"], "from_start_at": drawn_at(appointment)}
        )
        return _detail(request, appointment, error=changed, status=409, cancel_form=kept)


@clinic_page
@require_POST
def appointment_check_in_view(request, appointment_id):
    return _act(
        request,
        appointment_id,
        lambda appointment, now: appointment_check_in(appointment=appointment, actor=request.actor, now=now),
        done="Checked in: the patient has arrived.",
    )


@clinic_page
@require_POST
def message_send_again_view(request, appointment_id, message_id):
    """Send one of the appointment's failed messages to the patient again (a button beside it on the page)."""
    appointment = appointment_or_404(request, appointment_id)
    message = patient_messages(appointment.pk).filter(pk=message_id).first()
    if message is None:
        raise Http404("No such message for this appointment.")
    what = f"{message.get_channel_display()} “{selectors.ReminderRow(message).name}”"
    outcome = patient_message_send_again(message=message, now=timezone.now(), by=request.actor)
    if outcome.refused:
        messages.error(
            request, f"The {what} was not sent again: {outcome.refused}. Phone the patient if they must know."
        )
    else:
        messages.success(request, f"The {what} goes again {outcome.when}, to the number or address on the record then.")
    return redirect("frontdesk:appointment", clinic_code=request.clinic.code, appointment_id=appointment.pk)


@clinic_page
@require_POST
def appointment_notes_view(request, appointment_id):
    appointment = appointment_or_404(request, appointment_id)
    form = AppointmentNotesForm(request.POST)
    if not form.is_valid():
        return _detail(request, appointment, notes_form=form, status=400)
    try:
        with DomainErrors(invalid_status=409) as outcome:  # a record merged away meanwhile: said above the page
            appointment_notes_set(
                appointment=appointment, notes=form.cleaned_data["notes"], drawn=form.cleaned_data.get("notes_drawn")
            )
        if outcome.error is not None:
            return _detail(request, appointment, notes_form=form, error=outcome.refused, status=outcome.status)
    except PreconditionFailed:
        # Someone saved other notes since this page was drawn: saving would erase them unseen (compared under the
        # patient's lock). Both are shown; sending the form again (drawn over the notes as they are now) saves it.
        appointment.refresh_from_db(fields=["notes"])
        return _detail(
            request, appointment, notes_form=form.redrawn(appointment.notes), notes_now=appointment.notes, status=409
        )
    messages.success(request, "Notes saved.")
    return redirect("frontdesk:appointment", clinic_code=request.clinic.code, appointment_id=appointment.pk)
