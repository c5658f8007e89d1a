"""Merge a duplicate record into another (clinicians and clinic administrators): pick the survivor, decide
conflicting intake lines, confirm. The service is clinic.merging.patient_merge."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from clinic.merging import MergeConflict, intake_conflicts, patient_merge
from clinic.models import Appointment, ConditionStatus
from clinic.selectors import clinics_for_user, duplicate_candidates, identity_of, patient_search, patients_in
from core.errors import InvalidInput
from core.ids import parse_uuid
from core.timeutils import wall_moment
from frontdesk.forms import PatientSearchForm
from frontdesk.views.base import clinic_page, page, patient_or_404


def _choices(request, patient) -> list:
    """Records this one may be merged into: its likely duplicates, and whatever the desk searched for."""
    found = [
        c.patient
        for c in duplicate_candidates(
            organisation_id=patient.organisation_id,
            identity=identity_of(patient),
        )
    ]
    search = PatientSearchForm({"q": request.GET.get("q", "")}, clinic=request.clinic)
    query = search.cleaned_data["q"].strip() if search.is_valid() else ""  # too long, or a NUL: no search
    if query:
        scope = patients_in(clinics_for_user(request.user).filter(pk=request.clinic.pk))
        found += list(patient_search(scope, query, country=request.clinic.country)[:20])
    seen, out = {patient.pk}, []
    for other in found:
        if other.pk not in seen:
            seen.add(other.pk)
            out.append(other)
    return out


def _warn(request, warnings: list[dict]) -> None:
    """Each warning the merge brought together, as a message on the survivor's page: a warn-level rule changes no
    status, so this is where staff learn of it (two Botox on one day, one booked on each record)."""
    if not warnings:
        return
    booked = Appointment.objects.filter(pk__in={w["appointment"] for w in warnings}).select_related(
        "procedure", "clinic", "area"
    )
    names = {
        str(a.pk): f"{a.procedure.name}{f' · {a.area.name}' if a.area_id else ''}, "
        f"{wall_moment(a.start_at, a.clinic.tz)} at {a.clinic.name}"
        for a in booked
    }
    for warning in warnings:
        messages.warning(request, f"Check {names[warning['appointment']]}: {warning['message']}")


@clinic_page
@require_http_methods(["GET", "HEAD", "POST"])
def patient_merge_view(request, patient_id):
    patient = patient_or_404(request, patient_id)
    context = {"patient": patient, "nav": "patients", "query": request.GET.get("q", "")}
    status = 200
    if request.method == "POST":
        scope = patients_in(clinics_for_user(request.user).filter(pk=request.clinic.pk))
        into = scope.filter(pk=parse_uuid(request.POST.get("into")), organisation_id=patient.organisation_id).first()
        if into is None:
            context["refused"] = "Choose the record to keep."
            status = 400
        else:
            decisions = {
                (c["condition"], c["area"]): request.POST.get(f"intake-{c['condition']}-{c['area'] or ''}")
                for c in intake_conflicts(patient, into)
            }
            decisions = {key: value for key, value in decisions.items() if value in ConditionStatus.values}
            try:
                record = patient_merge(
                    merged=patient,
                    into=into,
                    now=timezone.now(),
                    actor_label=request.actor.label,
                    actor_user=request.user,
                    clinical=request.clinical,
                    intake=decisions,
                )
            except MergeConflict as conflict:
                context.update(into=into, conflicts=conflict.conflicts, refused=conflict.message)
                status = 409
            except InvalidInput as error:
                context["refused"], status = error.message, 400
            else:
                messages.success(request, f"{patient} merged into this record; the old record now redirects here.")
                _warn(request, record.details["warnings"])
                return redirect("frontdesk:patient", clinic_code=request.clinic.code, patient_id=into.pk)
    context["choices"] = _choices(request, patient)
    return page(request, "frontdesk/patient_merge.html", context, status=status)
