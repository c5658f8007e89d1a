"""Admin form pieces for clinic's models: what Django's admin does not check on its own.

An autocomplete widget that re-renders a posted junk id instead of crashing on it; the patient form and the
record's inline rows, which never write a page's old values over a change someone made meanwhile; and the intake
inline's rule that a condition is listed once per area (a conditional unique constraint the formset does not see);
and the working hours' rule that one day's periods neither overlap nor touch.
"""

from __future__ import annotations

from django import forms
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet
from django.utils import timezone

from clinic.duplicates import MatchReason
from clinic.models import VISIT_OUTCOME_FIELDS, Patient
from clinic.selectors import duplicate_candidates, identity_of
from clinic.services import _check_birth_date, channels_as_changed
from core.errors import InvalidInput
from core.forms import drawn_value


class ForgivingAutocompleteSelect(AutocompleteSelect):
    """Django's autocomplete widget, which looks up the posted value again to show it: a value the related key
    cannot hold (`user=not-a-number`) is shown as nothing chosen, next to the field's "Select a valid choice",
    instead of raising in the look-up."""

    def optgroups(self, name, value, attr=None):
        field = self.field.remote_field.model._meta.get_field(self.field.remote_field.field_name)
        return super().optgroups(name, [v for v in value if _fits(field, v)], attr)


def _fits(field, value) -> bool:
    try:
        field.to_python(value)
    except (ValidationError, TypeError, ValueError):
        return False
    return True


class StaleRowsFormSet(BaseInlineFormSet):
    """Rows of the record on the admin's page, which stays open while the desk, a platform or the patient change
    the record. Each row carries the values it was drawn with (hidden initials), so that:

    - a row the admin left alone is not saved (Django's inline formset compares what is posted with the row as it
      is now, and wrote the page's old values back over a course end corrected meanwhile);
    - a row the admin changed or deletes, which someone changed meanwhile, is refused with what changed, and
      nothing is saved;
    - a row removed meanwhile (an intake saved elsewhere is stored as new rows) is refused with a message the
      admin can act on, not only "Select a valid choice" on a hidden id the page never shows.
    """

    def add_fields(self, form, index) -> None:
        super().add_fields(form, index)
        if index is None or index >= self.initial_form_count():
            return  # a new row: nothing stored to compare with (and an empty one is left alone as before)
        for name, field in form.fields.items():
            if name not in ("id", "DELETE", self.fk.name):
                field.show_hidden_initial = True

    def clean(self) -> None:
        super().clean()
        what = self.model._meta.verbose_name_plural
        gone = False
        for form in self.initial_forms:
            if "id" in form.errors:  # its row is gone (or the id was tampered with)
                gone = True
                continue
            if form.has_changed() or self._should_delete_form(form):
                meanwhile = [bf.label for bf in form if _changed_meanwhile(form, bf)]
                if meanwhile:
                    form.add_error(
                        None,
                        f"Someone changed this row since the page was opened ({', '.join(meanwhile)}): nothing was "
                        "saved. Reload the page to see it as it is now, then make your change again.",
                    )
        if gone:
            raise ValidationError(
                f"Some {what} on this page were changed or removed since it was opened: nothing was saved. Reload "
                "the page to see the record as it is now, then make your change again."
            )


def _changed_meanwhile(form, bound_field) -> bool:
    """The row as stored now differs from the value the page was drawn with (its hidden initial)."""
    field, hidden = bound_field.field, bound_field.field.hidden_widget()
    if not field.show_hidden_initial or hidden.value_omitted_from_data(
        form.data, form.files, bound_field.html_initial_name
    ):
        return False  # a post not made from the page (a script): nothing to compare with
    drawn = hidden.value_from_datadict(form.data, form.files, bound_field.html_initial_name)
    stored = bound_field.initial
    if isinstance(stored, str) and isinstance(drawn, str):
        # A browser sends every line break back as CRLF, and the field strips what is posted (white space at the
        # ends, Unicode's too): text stored through the API with a bare LF is the same text.
        stored, drawn = _lines(stored).strip(), _lines(drawn)
    return field.has_changed(stored, drawn)


def _lines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


class PatientAdminForm(forms.ModelForm):
    """The admin's patient form, drawn with what each field held (PatientAdmin.get_form). A date of birth typed here
    is checked as the API and the desk check it (clinic.services._check_birth_date: not in the future, nor before
    1900). On a change the patient's row is read under its lock (PatientAdmin.get_object), and before the record is
    validated as it will be saved:

    - a field the admin did not change keeps the value stored now (a number corrected meanwhile is not put back);
    - the channels the admin ticked or unticked are applied to the channels stored now (an unsubscribe stays).

    A new patient is asked the duplicate question registration asks (clinic.services.patient_create, with the same
    finder, clinic.selectors.duplicate_candidates): a likely duplicate in the organisation refuses the form, naming
    each record, unless "This is a different person" is ticked ("Save as new" on a record's page is not asked).
    """

    confirm_new = forms.BooleanField(
        label="This is a different person",
        required=False,
        help_text="Tick to add the patient although the organisation has a record that may be theirs (the form "
        "names it). Before adding a second record for one person, open the existing one.",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance._state.adding and "confirm_new" in self.fields:
            self.fields["confirm_new"].widget = forms.HiddenInput()  # only a new patient is asked

    def clean_date_of_birth(self):
        value = self.cleaned_data.get("date_of_birth")
        if self.instance._state.adding or "date_of_birth" in self.changed_data:
            clinic = self.cleaned_data.get("clinic") or getattr(self.instance, "clinic", None)
            today = timezone.localdate(timezone=clinic.tz) if clinic is not None else timezone.localdate()
            try:
                _check_birth_date(value, today)
            except InvalidInput as refused:
                raise ValidationError(refused.message, code=refused.code.value) from None
        return value

    def _post_clean(self) -> None:
        super()._post_clean()  # the instance now holds what was typed
        # "Save as new" on a record's page copies that record on purpose (its page was open): not asked.
        copied = "_saveasnew" in self.data
        if self.instance._state.adding and not copied and not self.errors and not self.cleaned_data.get("confirm_new"):
            self._ask_about_duplicates()

    def _ask_about_duplicates(self) -> None:
        patient = self.instance
        if patient.clinic_id is None:
            return
        candidates = duplicate_candidates(organisation_id=patient.clinic.organisation_id, identity=identity_of(patient))
        if candidates:
            named = "; ".join(_candidate_described(found) for found in candidates)
            count = len(candidates)
            self.add_error(
                None,
                ValidationError(
                    f"{count} existing record{'s' if count != 1 else ''} may be this patient: {named}. Open the "
                    "existing record instead, or tick “This is a different person” to add this patient anyway.",
                    code="possible_duplicate",
                ),
            )

    def clean(self):
        data = super().clean()
        if self.instance._state.adding:
            return data
        for name, field in self.fields.items():
            if name in data and name != "confirm_new" and field.show_hidden_initial and name not in self.changed_data:
                if drawn_value(self, name) is not None or self.add_initial_prefix(name) in self.data:
                    data[name] = getattr(self.instance, name)
        drawn, submitted = drawn_value(self, "reminder_channels"), data.get("reminder_channels")
        if "reminder_channels" in self.changed_data and _strings(drawn) and _strings(submitted):
            data["reminder_channels"] = channels_as_changed(
                now=self.instance.reminder_channels or [], drawn=drawn, submitted=submitted
            )
        return data


_REASONS = {
    MatchReason.BIRTH_DATE_AND_NAME: "same date of birth and a similar name",
    MatchReason.PHONE: "same phone number",
    MatchReason.EMAIL: "same e-mail address",
}


def _candidate_described(found) -> str:
    """ "Pat Lee (born 1990-05-01): same date of birth and a similar name"."""
    patient: Patient = found.patient
    born = f" (born {patient.date_of_birth.isoformat()})" if patient.date_of_birth else ""
    reasons = ", ".join(_REASONS.get(reason, str(reason)) for reason in found.reasons)
    return f"{patient.first_name} {patient.last_name}{born}" + (f": {reasons}" if reasons else "")


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


class ProcedureRecordsFormSet(StaleRowsFormSet):
    """The patient's procedure history on the admin's page. A line a visit's completion wrote (its `appointment`) is
    that visit's outcome, not a report: removed here, or its treatment, time, area or source changed, the visit would
    still read completed and its recall stay open while the rules forgot or misdated the treatment (a microneedling
    8 days after a Botox allowed). Those fields are shown, not editable, and its removal is refused; its notes may
    change (a reaction seen since)."""

    def add_fields(self, form, index) -> None:
        super().add_fields(form, index)
        if getattr(form.instance, "appointment_id", None) is not None:
            for name in FORM_OUTCOME_FIELDS & set(form.fields):
                form.fields[name].disabled = True
                form.fields[name].help_text = "Written by the visit's completion."
            # As stored: a disabled field gives back its initial value, and a time's without its microseconds.
            form.visit_outcome = {name: getattr(form.instance, name) for name in VISIT_OUTCOME_FIELDS}

    def save_existing(self, form, obj, commit=True):
        for name, value in getattr(form, "visit_outcome", {}).items():
            setattr(obj, name, value)
        return super().save_existing(form, obj, commit=commit)

    def clean(self) -> None:
        super().clean()
        written = [
            form.instance
            for form in self.initial_forms
            if getattr(form.instance, "appointment_id", None) is not None and self._should_delete_form(form)
        ]
        if written:
            raise ValidationError(
                "A treatment written by a visit's completion cannot be removed here: nothing was saved. It is the "
                "visit's outcome, which the rules, the visit's status and its recall all follow; if it is wrong, "
                "ask for the visit's outcome to be corrected."
            )


# The form's names of the fields the model keeps as the completion wrote them (clinic.models.VISIT_OUTCOME_FIELDS).
FORM_OUTCOME_FIELDS = frozenset(name.removesuffix("_id") for name in VISIT_OUTCOME_FIELDS)


class ConditionOncePerAreaFormSet(StaleRowsFormSet):
    """The intake inline: a condition appears once per treatment area, and once with no area
    (PatientCondition's constraints). Each row is checked against the stored ones by its form; two new rows
    naming the same pair are caught here, as an error on the second, not an IntegrityError."""

    def clean(self) -> None:
        super().clean()
        seen = set()
        for form in self.forms:
            data = getattr(form, "cleaned_data", None)
            if not data or data.get("DELETE") or form.errors or not data.get("condition"):
                continue
            key = (data["condition"].pk, data["area"].pk if data.get("area") else None)
            if key in seen:
                where = f"for {data['area']}" if data.get("area") else "with no area"
                form.add_error("condition", f"{data['condition']} is already listed {where}: list it once.")
            seen.add(key)


class WorkingHoursFormSet(BaseInlineFormSet):
    """A practitioner's weekly periods: two of one day that overlap would offer the overlap's slots twice, and two
    that touch (09:00-13:00, 13:00-18:00) would refuse a visit across the join as outside working hours, though the
    practitioner works all day. Either is refused here, on the later row, naming the one period to enter instead,
    where one of the two is new or changed on this page (two rows stored before the check, untouched, do not stop
    the practitioner being saved, switched off say); a break between them is kept as it is."""

    def clean(self) -> None:
        super().clean()
        kept = []
        for form in self.forms:
            data = getattr(form, "cleaned_data", None)
            if not data or data.get("DELETE") or form.errors:
                continue
            if data.get("weekday") is None or not data.get("start_time") or not data.get("end_time"):
                continue
            kept.append((int(data["weekday"]), data["start_time"], data["end_time"], form))
        kept.sort(key=lambda row: row[:3])
        for (day, start, end, first), (next_day, next_start, next_end, form) in zip(kept, kept[1:], strict=False):
            if not (_typed_now(first) or _typed_now(form)):
                continue  # two rows stored before this check, left alone: the rest of the page still saves
            if day == next_day and next_start <= end:
                verb = "touches" if next_start == end else "overlaps"
                whole = f"{start:%H:%M}-{max(end, next_end):%H:%M}"
                form.add_error(
                    "start_time",
                    f"{next_start:%H:%M}-{next_end:%H:%M} {verb} {start:%H:%M}-{end:%H:%M} on the same day: enter "
                    f"one period ({whole}), or leave a break between them.",
                )


def _typed_now(form) -> bool:
    return form.instance.pk is None or form.has_changed()
