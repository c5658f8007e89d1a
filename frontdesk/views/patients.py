"""Patient search, new patient and edit, the timeline (and checking a merge's warnings there), and the
medical-history intake."""

from __future__ import annotations

import re

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from clinic import services as clinic_services
from clinic.merging import merge_warning_check
from clinic.models import MedicationCourse
from clinic.selectors import clinics_for_user, merged_patient_survivor, patient_search, patients_in
from core.errors import InvalidInput, PreconditionFailed
from frontdesk import selectors
from frontdesk.forms import (
    ConditionFormSet,
    DomainErrors,
    MedicationCourseForm,
    MedicationEndForm,
    MergeWarningCheckForm,
    PatientForm,
    PatientSearchForm,
    ProcedureRecordForm,
)
from frontdesk.views.base import clinic_page, desk_changed_by, page, patient_or_404

SEARCH_LIMIT = 50


@clinic_page
@require_safe
def patient_list(request):
    form = PatientSearchForm(request.GET or None, clinic=request.clinic)
    results, query = [], ""
    if form.is_valid():
        query = form.cleaned_data["q"].strip()
        clinic_patients = patients_in(clinics_for_user(request.user).filter(pk=request.clinic.pk))
        results = list(patient_search(clinic_patients, query, country=request.clinic.country)[: SEARCH_LIMIT + 1])
    return page(
        request,
        "frontdesk/patient_list.html",
        {
            "search_form": form,
            "results": results[:SEARCH_LIMIT],
            "more": len(results) > SEARCH_LIMIT,
            "query": query,
            "nav": "patients",
        },
    )


@clinic_page
@require_http_methods(["GET", "HEAD", "POST"])
def patient_new(request):
    form = PatientForm(request.POST or None, clinic=request.clinic)
    if request.method == "POST" and (patient := patient_created(request, form)):
        messages.success(request, f"{patient} added. Next: their medical history.")
        return redirect("frontdesk:patient_history", clinic_code=request.clinic.code, patient_id=patient.pk)
    return page(
        request,
        "frontdesk/patient_form.html",
        {"form": form, "nav": "new_patient"},
        status=409 if form.duplicates else 200,
    )


def patient_created(request, form: PatientForm):
    """The patient a valid form describes, created at this clinic; None with the reasons on the form.

    A likely duplicate in the organisation (unless the desk confirmed a new patient) leaves the
    candidates on `form.duplicates`, shown with the fields ("open one", "register anyway").
    Used by the new-patient page and by registering from the calendar.
    """
    if form.is_valid():
        with DomainErrors(form) as outcome:
            return clinic_services.patient_create(
                clinic=request.clinic,
                today=timezone.localdate(),
                confirm_new=form.cleaned_data["confirm_new"],
                # The records the desk was shown: registering anyway passes over those, and asks again of any other
                # the form now matches (a phone corrected to another patient's). A page that lists none (from before
                # this was sent) registers as it did.
                confirmed=form.cleaned_data.get("shown") or None,
                changed_by=desk_changed_by(request),
                **form.patient_fields(),
            )
        if isinstance(outcome.error, clinic_services.PossibleDuplicate):
            form.duplicates = outcome.error.candidates
    return None


@clinic_page
@require_http_methods(["GET", "HEAD", "POST"])
def patient_edit(request, patient_id):
    patient = patient_or_404(request, patient_id)
    form = PatientForm(request.POST or None, clinic=request.clinic, patient=patient)
    status = 200
    if request.method == "POST" and form.is_valid():
        with DomainErrors(form):
            saved, form = _edit_saved(request, form, patient)
            if saved is not None:
                messages.success(request, f"{saved}'s details saved.")
                return redirect("frontdesk:patient", clinic_code=request.clinic.code, patient_id=saved.pk)
            status = 409
    return page(
        request, "frontdesk/patient_form.html", {"form": form, "patient": patient, "nav": "patients"}, status=status
    )


def _edit_saved(request, form: PatientForm, patient):
    """The patient saved as the edit says, or None with the form drawn again (409) when it would set a field someone
    else changed since the form was drawn: their change is not undone unseen. The service compares each field with
    the value the page showed under the patient's lock (patient_update's `drawn`); fields nobody else changed are
    saved over the record as it is now."""
    try:
        saved = clinic_services.patient_update(
            patient=patient,
            today=timezone.localdate(),
            changed_by=desk_changed_by(request),
            made_from=form.cleaned_data.get("made_from") or None,
            drawn=form.drawn_values(),
            **form.patient_fields(),
        )
    except PreconditionFailed as changed:
        return None, form.redrawn(patient_or_404(request, patient.pk), changed.data.get("fields", []))
    return saved, form


@clinic_page
@require_safe
def patient_detail(request, patient_id):
    survivor = merged_patient_survivor(clinics_for_user(request.user).filter(pk=request.clinic.pk), patient_id)
    if survivor is not None:  # a merged record's page (an old link, a bookmark) opens the survivor's
        messages.info(request, "That record was merged into this one.")
        return redirect("frontdesk:patient", clinic_code=request.clinic.code, patient_id=survivor.pk)
    return _detail_page(request, patient_or_404(request, patient_id))


def _detail_page(request, patient, status: int = 200):
    record = selectors.patient_record(patient=patient, now=timezone.now(), clinic=request.clinic)
    return page(
        request,
        "frontdesk/patient_detail.html",
        {
            "patient": patient,
            "record": record,
            "nav": "patients",
            "appointments_by_id": selectors.patient_appointments_by_id(patient),
        },
        status=status,
    )


@clinic_page
@require_POST
def merge_warning_check_view(request, patient_id):
    """Mark a warning a merge brought together as checked, from the patient's page: anyone on the clinic's staff who
    sees the page may. The page then lists it as checked (by whom, when) instead of warning of it. Posted from the
    page of a record merged away since, it reaches the survivor, whose page the merge's warning now stands on."""
    survivor = merged_patient_survivor(clinics_for_user(request.user).filter(pk=request.clinic.pk), patient_id)
    patient = survivor if survivor is not None else patient_or_404(request, patient_id)
    form = MergeWarningCheckForm(request.POST)
    if not form.is_valid():
        if form.bad_id:  # a malformed id is no such warning
            raise Http404("No such merge warning.")
        for text in form.error_texts():
            messages.error(request, f"Nothing was recorded: {text}")
        return _detail_page(request, patient, status=400)
    try:
        check, created = merge_warning_check(
            patient=patient,
            merge_id=form.cleaned_data["merge"],
            appointment_id=form.cleaned_data["appointment"],
            message=form.cleaned_data["message"],
            note=form.cleaned_data["note"],
            checked_by=request.user,
            now=timezone.now(),
        )
    except InvalidInput as error:  # the service's own check of the same shape, should it ever say more
        messages.error(request, f"Nothing was recorded: {error.message}")
        return _detail_page(request, patient, status=400)
    except PreconditionFailed as changed:
        messages.error(request, changed.message)
        return _detail_page(request, patient, status=409)
    if created:
        messages.success(request, "Warning marked as checked: it is listed under the bookings as checked.")
    else:
        when = timezone.localtime(check.checked_at)
        messages.info(
            request, f"That warning was already checked, by {check.checked_by_name} on {when.day} {when:%b %Y}."
        )
    return redirect("frontdesk:patient", clinic_code=request.clinic.code, patient_id=patient.pk)


# --- Medical-history intake -----------------------------------------------------------------


def _day(day) -> str:
    return f"{day.day} {day:%b %Y}"


def _history_line_saved(request, patient, row, *, added: str, what: str):
    """Back to the history, saying what a history line's form did: added it, or found it added by its first sending
    (`already_recorded`, clinic.services `same_as`: the form sent twice)."""
    if getattr(row, "already_recorded", False):
        messages.info(request, f"Already recorded (the form was sent twice): {what}.")
    else:
        messages.success(request, added)
    return redirect("frontdesk:patient_history", clinic_code=request.clinic.code, patient_id=patient.pk)


def _conditions_initial(patient) -> list[dict]:
    return [
        {"condition": c.condition_id, "status": c.status, "area": c.area_id or "", "noted_on": c.noted_on}
        for c in patient.conditions.all()
    ]


def _history_page(request, patient, status: int = 200, **forms):
    context = {
        "patient": patient,
        # What the intake lines on the page were drawn from; kept on a page shown again with its errors (empty for
        # a page from before it was sent along: no check, as then). Read before the lines (a change in between
        # makes the page look older than it is, a needless refusal, never newer).
        "intake_version": forms["intake_version"]
        if "intake_version" in forms
        else clinic_services.intake_version(patient.pk),
        "nav": "patients",
        "conditions_formset": forms.get("conditions_formset")
        or ConditionFormSet(initial=_conditions_initial(patient), prefix="conditions"),
        "course_form": forms.get("course_form") or MedicationCourseForm(prefix="course"),
        "record_form": forms.get("record_form") or ProcedureRecordForm(prefix="record", clinic=request.clinic),
        "courses": MedicationCourse.objects.filter(patient=patient).select_related("drug"),
        "records": patient.procedure_records.select_related(
            "procedure", "area", "appointment__clinic", "clinic", "patient__clinic"
        ),
        "end_forms": forms.get("end_forms") or {},
    }
    for course in context["courses"]:
        course.end_form = context["end_forms"].get(course.pk) or MedicationEndForm(prefix=f"end-{course.pk}")
    return page(request, "frontdesk/patient_history.html", context, status=status)


# The service numbers its messages for readers who see the whole list ("Line 2: ..."); beside the
# line itself that prefix is noise.
_LINE_PREFIX = re.compile(r"^Line \d+: ")


class _IntakeLines:
    """Puts a service error on the intake line it names (`error.data["line"]`), else above the lines."""

    def __init__(self, formset, kept) -> None:
        self.formset, self.kept = formset, kept

    def add_domain_error(self, error: InvalidInput) -> None:
        index = error.data.get("line")
        if isinstance(index, int) and 0 <= index < len(self.kept):
            message = _LINE_PREFIX.sub("", error.message)
            self.kept[index].add_domain_error(InvalidInput(error.code, message, field=error.field))
        else:
            self.formset._non_form_errors.append(error.message)


@clinic_page
@require_http_methods(["GET", "HEAD", "POST"])
def patient_history(request, patient_id):
    patient = patient_or_404(request, patient_id)
    if request.method != "POST":
        return _history_page(request, patient)
    formset = ConditionFormSet(request.POST, initial=_conditions_initial(patient), prefix="conditions")
    if formset.is_valid():
        kept = formset.kept_lines()
        lines = [
            clinic_services.IntakeLine(
                condition=f.cleaned_data["condition"],
                status=f.cleaned_data["status"],
                area=f.cleaned_data["area"] or None,
                noted_on=f.cleaned_data.get("noted_on"),
            )
            for f in kept
        ]
        made_from = request.POST.get("intake_version") or None
        try:
            with DomainErrors(_IntakeLines(formset, kept)):
                clinic_services.conditions_replace(
                    patient=patient, lines=lines, now=timezone.now(), made_from=made_from
                )
                messages.success(request, "Medical history saved.")
                return redirect("frontdesk:patient_history", clinic_code=request.clinic.code, patient_id=patient.pk)
        except PreconditionFailed:
            # Someone changed the intake since this page was drawn: saving it would erase what they recorded.
            version = clinic_services.intake_version(patient.pk)  # before the lines it stands for
            fresh = ConditionFormSet(initial=_conditions_initial(patient), prefix="conditions")
            fresh._non_form_errors = fresh.error_class(
                [
                    "Someone changed this medical history since you opened the page, so nothing was saved (it "
                    "would have erased what they recorded). It is shown below as it is now: make your change again."
                ]
            )
            return _history_page(request, patient, status=409, conditions_formset=fresh, intake_version=version)
    return _history_page(
        request, patient, status=200, conditions_formset=formset, intake_version=request.POST.get("intake_version", "")
    )


@clinic_page
@require_POST
def medication_add(request, patient_id):
    patient = patient_or_404(request, patient_id)
    form = MedicationCourseForm(request.POST, prefix="course")
    if form.is_valid():
        data, now = form.cleaned_data, timezone.now()
        with DomainErrors(form):
            course = clinic_services.medication_course_add(
                patient=patient,
                drug_code=data["drug"],
                started_on=data["started_on"],
                ended_on=data.get("ended_on"),
                notes=data["notes"],
                now=now,
                # The form sent twice (a double click, the back button): its first sending added it.
                same_as=lambda: selectors.course_already_added(
                    patient=patient,
                    drug_code=data["drug"],
                    started_on=data["started_on"],
                    ended_on=data.get("ended_on"),
                    notes=data["notes"],
                    now=now,
                ),
            )
            return _history_line_saved(
                request,
                patient,
                course,
                added=f"{course.drug} course added.",
                what=f"{course.drug} course from {_day(course.started_on)}",
            )
    return _history_page(request, patient, course_form=form)


@clinic_page
@require_POST
def medication_end(request, patient_id, course_id):
    patient = patient_or_404(request, patient_id)
    course = MedicationCourse.objects.filter(patient=patient, pk=course_id).select_related("drug").first()
    if course is None:
        raise Http404("No such medication course.")
    form = MedicationEndForm(request.POST, prefix=f"end-{course.pk}")
    if form.is_valid():
        try:
            with DomainErrors(form):
                clinic_services.medication_course_end(
                    course=course, ended_on=form.cleaned_data["ended_on"], now=timezone.now(), ongoing_only=True
                )
                messages.success(request, f"End of the {course.drug} course recorded.")
                return redirect("frontdesk:patient_history", clinic_code=request.clinic.code, patient_id=patient.pk)
        except PreconditionFailed as changed:
            messages.error(request, changed.message)
            return _history_page(request, patient, status=409)
    return _history_page(request, patient, end_forms={course.pk: form})


@clinic_page
@require_POST
def procedure_add(request, patient_id):
    patient = patient_or_404(request, patient_id)
    form = ProcedureRecordForm(request.POST, prefix="record", clinic=request.clinic)
    if form.is_valid():
        data, now = form.cleaned_data, timezone.now()
        with DomainErrors(form):
            record = clinic_services.procedure_record_add(
                patient=patient,
                procedure_code=data["procedure"],
                performed_on=data["performed_on"],
                performed_time=data.get("performed_time"),
                now=now,
                area_code=data["area"] or None,
                notes=data["notes"],
                clinic=form.recording_clinic(),  # the day the patient gives, in this desk's or the site's zone
                # The form sent twice: its first sending recorded it.
                same_as=lambda: selectors.procedure_already_recorded(
                    patient=patient,
                    procedure_code=data["procedure"],
                    area_code=data["area"],
                    performed_on=data["performed_on"],
                    performed_time=data.get("performed_time"),
                    notes=data["notes"],
                    clinic=form.recording_clinic(),
                    now=now,
                ),
            )
            return _history_line_saved(
                request,
                patient,
                record,
                added=f"{record.procedure} on {data['performed_on']:%d %b %Y} added to the history.",
                what=f"{record.procedure} on {_day(data['performed_on'])}",
            )
    return _history_page(request, patient, record_form=form)
