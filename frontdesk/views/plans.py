"""Treatment plans at the desk: plan a course from a patient's page (proposal, then book), a plan's page
(sessions and their status, re-plan from a session), and the recalls due on Today (a template tag)."""

from __future__ import annotations

from datetime import datetime

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe

from clinic.selectors import clinics_for_user
from core.timeutils import within_years
from frontdesk import selectors
from frontdesk.forms import CancelForm, DomainErrors
from frontdesk.plan_forms import PlanCourseForm, ReplanForm
from frontdesk.plan_timeline import timeline_of
from frontdesk.views.base import clinic_page, page, patient_or_404
from plans import selectors as plan_selectors
from plans import services
from plans.models import TreatmentPlan


def _proposal(request, patient, form: PlanCourseForm, now) -> services.Proposal | None:
    if not form.is_valid():
        return None
    with DomainErrors(form):
        template = services.plan_template_get(form.cleaned_data["template"], organisation_id=patient.organisation_id)
        start = services.start_of(form.cleaned_data["start_from"], request.clinic.tz, now)
        return services.plan_propose(
            patient=patient, clinic=request.clinic, template=template, start_at=start, **form.options()
        )
    return None


def _plan_page(request, patient, form, *, refused: str | None = None, status: int = 200):
    now = timezone.now()
    proposal = _proposal(request, patient, form, now) if form.is_bound else None
    return page(
        request,
        "frontdesk/plan_new.html",
        {
            "patient": patient,
            "form": form,
            "proposal": proposal,
            "timeline": timeline_of(proposal) if proposal and proposal.plan.feasible else None,
            "appointments_by_id": selectors.patient_appointments_by_id(patient) if proposal else {},
            "refused": refused,
            "nav": "patients",
        },
        status=status,
    )


@clinic_page
@require_safe
def plan_new(request, patient_id):
    """Choose a course and a start; see where each session would go, and why."""
    patient = patient_or_404(request, patient_id)
    bound = "template" in request.GET
    initial = {"start_from": timezone.localdate(timezone=request.clinic.tz)}
    form = PlanCourseForm(request.GET if bound else None, clinic=request.clinic, initial=initial)
    return _plan_page(request, patient, form)


@clinic_page
@require_POST
def plan_book(request, patient_id):
    """Book the sessions shown, exactly: if one has gone since, nothing is booked and the page says which."""
    patient = patient_or_404(request, patient_id)
    form = PlanCourseForm(request.POST, clinic=request.clinic)
    outcome = DomainErrors(form, invalid_status=400)
    if form.is_valid():
        chosen = _shown_sessions(request.POST.getlist("session"))
        if chosen is None:
            form.add_error(None, "The proposal was damaged; plan the course again.")
        if form.is_valid():
            now = timezone.now()
            with outcome:
                plan = services.plan_book(
                    patient=patient,
                    clinic=request.clinic,
                    template=services.plan_template_get(
                        form.cleaned_data["template"], organisation_id=patient.organisation_id
                    ),
                    start_at=services.start_of(form.cleaned_data["start_from"], request.clinic.tz, now),
                    actor=request.actor,
                    now=now,
                    chosen=chosen,
                    **form.options(),
                )
                messages.success(request, f"{plan.template.name} booked: {len(chosen)} sessions.")
                return redirect("frontdesk:plan", clinic_code=request.clinic.code, plan_id=plan.pk)
    # Refused: show why, with the proposal as it stands now (409); bad input (a field, a damaged proposal, a
    # practitioner not of this clinic), the form again with why (400), as the booking and move forms answer it.
    status = outcome.status if outcome.error is not None else 400
    return _plan_page(request, patient, form, refused=outcome.refused, status=status)


def _plan_or_404(request, plan_id) -> TreatmentPlan:
    scope = clinics_for_user(request.user).filter(pk=request.clinic.pk)
    plan = plan_selectors.plans_in(scope).filter(pk=plan_id).select_related("patient", "clinic", "template").first()
    if plan is None:
        raise Http404("No such plan.")
    return plan


@clinic_page
@require_safe
def plan_detail(request, plan_id):
    return plan_detail_page(request, _plan_or_404(request, plan_id), request.GET)


def plan_detail_page(request, plan: TreatmentPlan, query, *, refused: str = "", status: int = 200):
    """A plan's page, with the re-plan `query` names (from a session, from a date) proposed as it can be made now;
    `refused`: why a re-plan posted from this page was not applied."""
    today = timezone.localdate(timezone=request.clinic.tz)
    replan_form, proposal = None, None
    sessions = plan_selectors.plan_sessions(plan, today)
    if "from_session" in query:
        replan_form = ReplanForm(query)
        if replan_form.is_valid():
            with DomainErrors(replan_form) as outcome:
                now = timezone.now()
                start = services.start_of(replan_form.cleaned_data["start_from"], request.clinic.tz, now)
                proposal = services.plan_replan_propose(
                    plan=plan, from_index=replan_form.cleaned_data["from_session"], start_at=start, now=now
                )
            if outcome.refused:  # a refusal (a course cancelled since the page was opened, a session done) says why
                replan_form.add_error(None, outcome.refused)
        if refused:
            replan_form.add_error(None, refused)
    return page(
        request,
        "frontdesk/plan_detail.html",
        {
            "plan": plan,
            "patient": plan.patient,
            "sessions": sessions,
            # Something left to cancel: a course whose every session is done is finished, not cancelled.
            "can_cancel": plan.cancelled_at is None and any(row.status != "completed" for row in sessions),
            "replan_form": replan_form,
            "cancel_form": CancelForm(),
            "proposal": proposal,
            "timeline": timeline_of(proposal) if proposal and proposal.plan.feasible else None,
            "appointments_by_id": selectors.patient_appointments_by_id(plan.patient) if proposal else {},
            "nav": "patients",
        },
        status=status,
    )


@clinic_page
@require_POST
def plan_replan(request, plan_id):
    """Apply the re-plan shown, exactly: planned again under the locks, it must put the sessions where the page
    showed them (the desk may have told the patient); if the calendar changed since, nothing moves and the page shows
    the re-plan as it can be made now (409)."""
    plan = _plan_or_404(request, plan_id)
    form = ReplanForm(request.POST)
    outcome = DomainErrors(form)
    # The sessions the page showed; a post without them (a script's) is planned again under the locks as it stands.
    shown = _shown_sessions(request.POST.getlist("session"))
    if shown is None:
        form.add_error(None, "The re-plan shown was damaged; choose the date again.")
    if form.is_valid():
        now = timezone.now()
        with outcome:
            services.plan_replan(
                plan=plan,
                from_index=form.cleaned_data["from_session"],
                start_at=services.start_of(form.cleaned_data["start_from"], request.clinic.tz, now),
                actor=request.actor,
                now=now,
                shown=shown or None,
            )
            messages.success(request, f"Re-planned from session {form.cleaned_data['from_session']}.")
            return redirect("frontdesk:plan", clinic_code=request.clinic.code, plan_id=plan.pk)
        if isinstance(outcome.error, services.ShownNoLongerHolds):
            # Refused as shown: the page again with why, and the re-plan as it can be made now.
            query = {"from_session": form.cleaned_data["from_session"], "start_from": form.cleaned_data["start_from"]}
            return plan_detail_page(request, plan, query, refused=outcome.refused, status=409)
    messages.error(
        request, outcome.refused or _form_errors(form) or "The re-plan could not be applied; check the date."
    )
    return redirect("frontdesk:plan", clinic_code=request.clinic.code, plan_id=plan.pk)


def _shown_sessions(values: list[str]) -> list[tuple[datetime, str | None]] | None:
    """The sessions a page showed (a course's proposal, a re-plan's), as its form writes them ("<aware ISO
    time>|<practitioner>"), or None when one was changed on the way."""
    shown = []
    for value in values:
        start, _, practitioner = value.partition("|")
        try:
            when = datetime.fromisoformat(start)
        except ValueError:
            return None
        if when.tzinfo is None or not within_years(when):
            return None
        shown.append((when, practitioner or None))
    return shown


def _form_errors(form) -> str:
    return " ".join(error for errors in form.errors.values() for error in errors)


@clinic_page
@require_POST
def plan_cancel(request, plan_id):
    """Cancel the course: its bookings still to come are cancelled, each as a single cancellation is."""
    plan = _plan_or_404(request, plan_id)
    form = CancelForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(error for errors in form.errors.values() for error in errors))
    else:
        with DomainErrors() as outcome:  # a refusal, a status that does not allow it, a record merged meanwhile
            services.plan_cancel(plan=plan, actor=request.actor, now=timezone.now(), reason=form.cleaned_data["reason"])
        if outcome.refused:
            messages.error(request, outcome.refused)
        else:
            messages.success(request, f"{plan.template.name} cancelled: its bookings still to come are cancelled.")
    return redirect("frontdesk:plan", clinic_code=request.clinic.code, plan_id=plan.pk)
