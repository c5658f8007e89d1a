"""Front-desk forms: they check the shape of what staff type and nothing more.

The services in clinic/ and scheduler/ decide; `DomainErrors` maps what they
refuse, once for every view: bad input next to the field it is about, a
refusal above the form. Dates and times are typed in the clinic's local time
and turned into UTC with `local_to_utc`, so a time that does not exist or
exists twice comes back as an error on the time field.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from types import TracebackType

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.formats import date_format

from clinic.merging import MERGE_CHECK_MESSAGE_MAX
from clinic.models import (
    MERGE_CHECK_NOTE_MAX,
    Clinic,
    Condition,
    ConditionStatus,
    Medication,
    Practitioner,
    ProcedureType,
    ReminderChannel,
    TreatmentArea,
)
from clinic.selectors import MONTH_FIRST_COUNTRIES
from clinic.services import (
    PATIENT_CHOICES,
    PATIENT_FIELDS,
    channels_as_changed,
    notes_version,
    phone_examples,
    phone_problem,
    phone_to_e164,
    record_version,
)
from core.errors import DomainError, InvalidInput, InvalidTransition, Refused
from core.forms import drawn_value
from core.plain_text import validate_lines
from core.timeutils import MAX_YEAR, MIN_YEAR, YEARS_OUT_OF_RANGE, local_to_utc
from frontdesk.checks import SlotRequest
from frontdesk.templatetags.frontdesk import display_phone
from reminders.consent import (
    clinic_sms_consent_wording,
    email_restart_advice,
    latest_own_opt_out,
    sms_restart_advice,
)
from scheduler.rules import start_of_local_day

# Where the services' field names land on these forms.
DOMAIN_FIELD_MAP = {"start": "time", "end": "time", "performed_at": "performed_on", "drug": "drug"}


class FrontdeskForm(forms.Form):
    """Ties each input to its help text and error message for screen readers."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            # Not self[name].auto_id: a bound field made now would keep this label and help text, and
            # subclasses adjust those after this __init__.
            auto_id = self.auto_id % self.add_prefix(name) if "%s" in str(self.auto_id) else self.add_prefix(name)
            described = [f"{auto_id}-error"]
            if field.help_text:
                described.insert(0, f"{auto_id}-help")
            field.widget.attrs.setdefault("aria-describedby", " ".join(described))

    def full_clean(self) -> None:
        super().full_clean()
        self._mark_invalid()

    def add_error(self, field, error) -> None:
        super().add_error(field, error)
        self._mark_invalid()

    def _mark_invalid(self) -> None:
        for name in getattr(self, "_errors", None) or {}:
            if name in self.fields:
                self.fields[name].widget.attrs["aria-invalid"] = "true"

    def add_domain_error(self, error: DomainError) -> None:
        for name, messages in getattr(error, "errors", {error.field or "": [error.message]}).items():
            field = DOMAIN_FIELD_MAP.get(name, name)
            field = field if field in self.fields else None
            if field is not None and field in self.errors:
                continue  # the form already says what is wrong there (e.g. "This field is required.")
            for message in messages:
                self.add_error(field, message)


class DomainErrors:
    """What a service refused, mapped once for every view: `with DomainErrors(form) as outcome: ...`.

    `InvalidInput` goes next to the fields it names (above the form, or as `refused`
    when there is no form) and sets `status` to `invalid_status`; a refusal (`Refused`,
    e.g. `UnableToBook`: a rule or a taken slot; `InvalidTransition`: the status does not
    allow it) becomes `refused` (its message) with status 409. Anything else,
    `NotAllowed` and `NotFound` included, propagates: `clinic_page` answers those
    with 403 and 404.
    """

    def __init__(self, form=None, *, invalid_status: int = 200) -> None:
        self.form = form
        self.invalid_status = invalid_status
        self.error: DomainError | None = None
        self.refused: str | None = None
        self.status = 200

    def __enter__(self) -> DomainErrors:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> bool:
        if isinstance(error, InvalidInput):
            if self.form is not None:
                self.form.add_domain_error(error)
            else:  # no field to put it next to: say it above the page
                self.refused = error.message
            self.error, self.status = error, self.invalid_status
            return True
        if isinstance(error, (Refused, InvalidTransition)):
            self.error, self.refused, self.status = error, error.message, 409
            return True
        return False


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, attrs=None):
        super().__init__(attrs, format="%Y-%m-%d")


class BoundedDateField(forms.DateField):
    """A date in the years the services accept (1900 to 2999); further out, date arithmetic overflows."""

    widget = DateInput

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.widget.attrs.update({"min": f"{MIN_YEAR}-01-01", "max": f"{MAX_YEAR}-12-31"})

    def validate(self, value) -> None:
        super().validate(value)
        if value is not None and not MIN_YEAR <= value.year <= MAX_YEAR:
            raise ValidationError(YEARS_OUT_OF_RANGE, code="out_of_range")


class TimeInput(forms.TimeInput):
    input_type = "time"

    def __init__(self, attrs=None):
        super().__init__(attrs, format="%H:%M")


# A time with the reading that says which, where the clocks show it twice: "01:15 BST", "01:15 GMT", "01:15+01:00".
READ_TIME = re.compile(r"(?P<clock>\d{1,2}:\d{2})\s*(?P<reading>[A-Za-z]{2,5}|[+-]\d{2}(?::?\d{2})?)")


class ClockField(forms.TimeField):
    """A time of day, which may name its reading where the clocks show it twice (the night they go back): by the
    zone's abbreviation ("01:15 BST", then "01:15 GMT", as the calendar shows them) or by its UTC offset."""

    def to_python(self, value):
        found = READ_TIME.fullmatch(value.strip()) if isinstance(value, str) else None
        return super().to_python(found["clock"] if found else value)

    @staticmethod
    def reading(raw) -> str:
        """The reading a typed time names ("BST", "+01:00"), or ""."""
        found = READ_TIME.fullmatch(raw.strip()) if isinstance(raw, str) else None
        return found["reading"] if found else ""


def _offset(reading: str) -> timedelta | None:
    if reading[0] not in "+-":
        return None
    digits = reading[1:].replace(":", "")
    size = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
    return -size if reading[0] == "-" else size


def read_local(day: date, clock: time, reading: str, tz) -> datetime | None:
    """The instant (UTC) that `clock` on `day` is in `tz` when read as `reading`, or None when it is no such time:
    "01:15 BST" and "01:15 GMT" on the night London's clocks go back are an hour apart."""
    wall = datetime.combine(day, clock)
    offset = _offset(reading)
    for fold in (0, 1):
        local = wall.replace(tzinfo=tz, fold=fold)
        instant = local.astimezone(UTC)
        if instant.astimezone(tz).replace(tzinfo=None) != wall:  # the clocks go forward over it
            continue
        if local.utcoffset() == offset or (local.tzname() or "").casefold() == reading.casefold():
            return instant
    return None


def _choices(queryset, blank: str | None):
    rows = [(obj.pk, str(obj)) for obj in queryset]
    return ([("", blank)] if blank is not None else []) + rows


# --- Patients -------------------------------------------------------------------------


class PatientSearchForm(FrontdeskForm):
    q = forms.CharField(
        label="Find a patient",
        required=False,
        max_length=200,
        help_text="Name, phone (any format), e-mail or date of birth (e.g. 18/06/1985).",
        widget=forms.TextInput(attrs={"type": "search", "autocomplete": "off", "autofocus": True}),
    )

    def __init__(self, *args, clinic=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if clinic is not None and clinic.country in MONTH_FIRST_COUNTRIES:
            self.fields["q"].help_text = "Name, phone (any format), e-mail or date of birth (e.g. 06/18/1985)."


def _own_opt_out_note(stopped, what: str, advice_for) -> str:
    """What the desk is told when a channel is off because of the patient's own opt-out (`stopped`, from
    reminders.consent.latest_own_opt_out), or "" when it is off for another reason (staff, never chosen)."""
    if stopped is None:
        return ""
    when = date_format(timezone.localtime(stopped.at), "j M Y")
    advice = advice_for(stopped)
    return (
        f"The patient turned {what} off themselves on {when} ({stopped.get_via_display()}). Switch {what} back on only"
        f" if they ask you to.{' ' + advice if advice else ''}"
    )


class PatientForm(FrontdeskForm):
    first_name = forms.CharField(
        label="First name", max_length=100, widget=forms.TextInput(attrs={"autocomplete": "off"})
    )
    last_name = forms.CharField(
        label="Last name", max_length=100, widget=forms.TextInput(attrs={"autocomplete": "off"})
    )
    date_of_birth = forms.DateField(label="Date of birth", required=False, widget=DateInput())
    phone = forms.CharField(
        label="Mobile phone",
        required=False,
        max_length=30,
        help_text="International form, e.g. +44 7911 123456. Spaces are fine.",
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "off", "inputmode": "tel"}),
    )
    email = forms.EmailField(
        label="E-mail", required=False, max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "off"})
    )
    reminder_channels = forms.MultipleChoiceField(
        label="Send reminders by",
        required=False,
        choices=ReminderChannel.choices,
        widget=forms.CheckboxSelectMultiple,
    )
    sms_consent = forms.BooleanField(label="The patient agrees to receive text messages", required=False)
    # Set by "Register anyway" once the desk has seen the likely duplicates (clinic.duplicates), with the ids of those
    # it was shown (`shown`): registering anyway passes over those only (clinic.services.patient_create `confirmed`).
    confirm_new = forms.BooleanField(required=False, widget=forms.HiddenInput)
    shown = forms.MultipleChoiceField(required=False, widget=forms.MultipleHiddenInput)
    # On an edit, the version of the record the form was drawn from (clinic.services.record_version): a save that
    # would set a field someone else changed since is refused (frontdesk.views.patients.patient_edit). A post that
    # does not say (a script): no check, as before.
    made_from = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)
    # The likely duplicates a registration met (frontdesk.views.patients.patient_created), to show.
    duplicates: list[dict] = []

    # What an edit always saves as typed: a change someone else made to one since the form was drawn refuses the save.
    IDENTITY_FIELDS = ("first_name", "last_name", "date_of_birth")

    def __init__(self, *args, clinic, patient=None, **kwargs) -> None:
        self.clinic = clinic
        self.patient = patient
        if patient is not None:
            # The number as the desk dials it; the service reads it back in the clinic's country.
            kwargs["initial"] = {
                **{name: getattr(patient, name) for name in PATIENT_FIELDS},
                "phone": display_phone(patient.phone, clinic.country),
                "made_from": record_version(patient),
            }
        super().__init__(*args, **kwargs)
        # Any ids a page sent back are taken as sent (the service compares them with the candidates as it finds them).
        self.fields["shown"].valid_value = lambda value: isinstance(value, str) and 0 < len(value) <= 64
        if patient is not None:  # only a registration asks about duplicates
            del self.fields["confirm_new"]
            del self.fields["shown"]
            # Race condition: the patient may reply STOP (or change their choices on their page, or a platform their
            # number) while this form is open. The choices and the number and address it was drawn with go with it,
            # so that only what the desk changed is saved (patient_fields): saving a new surname must not switch
            # texts back on, nor put back a number the patient gave up. The name and date of birth go with it too:
            # one corrected meanwhile by someone else is not put back unseen (drawn_values).
            for name in (*self.IDENTITY_FIELDS, *self.drawn_fields()):
                self.fields[name].show_hidden_initial = True
            self.fields["made_from"].widget.attrs.pop("aria-describedby")  # hidden: nothing on the page describes it
        else:
            del self.fields["made_from"]
            for name in ("confirm_new", "shown"):  # hidden: nothing on the page describes them
                self.fields[name].widget.attrs.pop("aria-describedby")
        examples = phone_examples(clinic.country)
        if examples:
            self.fields[
                "phone"
            ].help_text = f"As dialled here, e.g. {examples[0]}, or international, e.g. {examples[1]}. Spaces are fine."
        self.fields["sms_consent"].help_text = self._sms_consent_help(clinic, patient)
        self.fields["reminder_channels"].help_text = self._email_help(patient)

    @staticmethod
    def _sms_consent_help(clinic, patient) -> str:
        """The words to read to the patient (recorded with the tick: reminders.consent.staff_consent_record), after
        the patient's own STOP or opt-out, if that is why texts are off."""
        help_text = f"Read this to the patient; ticking the box records their consent in these words, with your name: “{clinic_sms_consent_wording(clinic)}”"
        stopped = latest_own_opt_out(patient, ReminderChannel.SMS) if patient is not None else None
        note = _own_opt_out_note(stopped, "texts", sms_restart_advice)
        return f"{note} {help_text}" if note else help_text

    @staticmethod
    def _email_help(patient) -> str:
        """After the patient's own unsubscribe or spam complaint, if that is why e-mail is off: that it was theirs,
        and what switching it back on here does not undo."""
        stopped = latest_own_opt_out(patient, ReminderChannel.EMAIL) if patient is not None else None
        return _own_opt_out_note(stopped, "e-mail", email_restart_advice)

    def clean_phone(self) -> str:
        # The service reads and checks the number (with the clinic's country); asking the same rule
        # here too puts its error beside the others when something else is missing.
        typed = self.cleaned_data["phone"].strip()
        if typed and phone_to_e164(typed, country=self.clinic.country) is None:
            raise ValidationError(phone_problem(self.clinic.country))
        return typed

    def clean_email(self) -> str:
        return self.cleaned_data["email"].strip()

    def contact_choices(self) -> list[str]:
        """The patient's own choices this form asks about (not the topics they muted, which only they and the admin
        change)."""
        return [name for name in PATIENT_CHOICES if name in self.fields]

    def drawn_fields(self) -> list[str]:
        """What an edit saves only where the desk changed it: the contact choices, the number and the address."""
        return [*self.contact_choices(), "phone", "email"]

    def _says_what_was_drawn(self, name: str) -> bool:
        return self[name].field.show_hidden_initial and self.add_initial_prefix(name) in self.data

    def patient_fields(self) -> dict:
        """The fields to save: on an edit, a contact choice, the number or the address only where the desk changed
        it (what was drawn against what is submitted, not against the record as it is now), or where the post does
        not say what was drawn. The channels are one list: with `channels_drawn`, what the desk ticked or unticked
        is applied to the channels as they are when saved (clinic.services.patient_update, under the patient's
        lock), so a channel the patient switched off meanwhile (an unsubscribe) stays off."""
        kept = {
            name for name in self.drawn_fields() if self._says_what_was_drawn(name) and name not in self.changed_data
        }
        fields = {
            name: value
            for name, value in self.cleaned_data.items()
            if name not in ("confirm_new", "shown") and name not in kept
        }
        if (
            "reminder_channels" in fields
            and self.patient is not None
            and self._says_what_was_drawn("reminder_channels")
        ):
            fields["channels_drawn"] = drawn_value(self, "reminder_channels")
        fields.pop("made_from", None)
        if fields.get("phone"):
            # Read as this desk dials (its clinic's country), not the patient's home clinic's: a sister site abroad
            # types its own national format. Valid here (clean_phone), so it reads.
            fields["phone"] = phone_to_e164(fields["phone"], country=self.clinic.country)
        return fields

    # --- Two people editing one patient -------------------------------------------------------------------------

    def drawn_values(self) -> dict:
        """The values the page was drawn with, by field, for each field it saves and says it was drawn with: the
        service refuses only where it would set a field someone else changed since (clinic.services.patient_update,
        compared under the patient's lock). The channels go as `channels_drawn` (patient_fields)."""
        drawn = {
            name: drawn_value(self, name)
            for name in self.patient_fields()
            if name not in ("reminder_channels", "channels_drawn") and self._says_what_was_drawn(name)
        }
        if drawn.get("phone"):  # shown as this desk dials it (display_phone): read back the same way
            drawn["phone"] = phone_to_e164(drawn["phone"], country=self.clinic.country) or drawn["phone"]
        return drawn

    def redrawn(self, now, overwritten: list[str]) -> PatientForm:
        """This form again over the record as it is now (`now`), refused: what the desk changed kept as typed, every
        other field as stored now, and drawn from `now` (its version and values), so that sending it again saves the
        desk's changes knowingly. Each field someone else changed says what it is now."""
        fresh = PatientForm(clinic=self.clinic, patient=now)
        data = self.data.copy()
        changed = set(self.changed_data)
        for name, field in fresh.fields.items():
            drawn_now = fresh.initial.get(name)
            if name == "made_from":
                data[name] = drawn_now
                continue
            if name == "reminder_channels" and self._says_what_was_drawn(name):
                # What the desk ticked or unticked, on the channels as they are now (as the save would apply it).
                shown = channels_as_changed(
                    now=drawn_now, drawn=drawn_value(self, name) or [], submitted=self.cleaned_data[name]
                )
                _put(data, name, field, shown)
            elif name not in changed:
                _put(data, name, field, drawn_now)
            _put(data, self.add_initial_prefix(name), field, drawn_now, hidden=True)
        form = PatientForm(data, clinic=self.clinic, patient=now)
        form.is_valid()
        said = []
        for name in overwritten:
            shown = _said(fresh[name].initial, self.clinic)
            said.append(f"{form.fields[name].label} (now {shown})")
            form.add_error(name, f"Now {shown}: changed by someone else since you opened this page.")
        form.add_error(
            None,
            f"Changed by someone else since you opened this page: {', '.join(said)}. Nothing was saved, so their "
            "change is not undone. The form now shows the details as they are, with what you changed kept: check "
            "them and save again.",
        )
        return form


def _put(data, key: str, field: forms.Field, value, *, hidden: bool = False) -> None:
    """`value` into the post `data` under `key`, as the field's input (or, `hidden`, its hidden initial) sends it."""
    if isinstance(field, forms.MultipleChoiceField):
        data.setlist(key, [str(v) for v in value or []])
    elif isinstance(field, forms.BooleanField):
        if hidden:
            data[key] = str(bool(value))
        elif value:
            data[key] = "on"
        else:
            data.pop(key, None)
    elif isinstance(value, date):
        data[key] = value.isoformat()
    else:
        data[key] = "" if value is None else str(value)


def _said(value, clinic) -> str:
    """A stored value as the desk reads it, in a sentence."""
    if value in (None, "", []):
        return "empty"
    if isinstance(value, bool):
        return "ticked" if value else "not ticked"
    if isinstance(value, date):
        return f"“{value.day} {value:%b %Y}”"
    return f"“{value}”"


# --- Medical history --------------------------------------------------------------------


class ConditionLineForm(FrontdeskForm):
    condition = forms.ChoiceField(label="Condition", required=False)
    status = forms.ChoiceField(label="Status", required=False, choices=[("", "—")] + list(ConditionStatus.choices))
    area = forms.ChoiceField(label="Area", required=False)
    noted_on = BoundedDateField(label="Noted on", required=False)
    remove = forms.BooleanField(label="Remove", required=False)

    def __init__(self, *args, conditions=(), areas=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["condition"].choices = [("", "— choose —")] + list(conditions)
        self.fields["area"].choices = [("", "Any / not area-specific")] + list(areas)

    def clean(self):
        data = super().clean()
        if data.get("condition") and not data.get("remove") and not data.get("status"):
            self.add_error("status", "Say whether the condition is active or history.")
        return data


class BaseConditionFormSet(forms.BaseFormSet):
    def __init__(self, *args, **kwargs) -> None:
        self._conditions = [(c.code, c.name) for c in Condition.objects.all()]
        self._areas = [(a.code, a.name) for a in TreatmentArea.objects.all()]
        super().__init__(*args, **kwargs)

    def get_form_kwargs(self, index):
        return {**super().get_form_kwargs(index), "conditions": self._conditions, "areas": self._areas}

    def clean(self) -> None:
        super().clean()
        # The page draws every line the intake held (a line goes by its own Remove box) and says how many: a post
        # that carries fewer (damaged, or made by hand: a line count below zero) would erase the lines it left out,
        # unseen. (An intake changed since the page was drawn is the version check's: conditions_replace, 409.)
        total, drawn = self.total_form_count(), self.initial_form_count()
        if self.is_bound and (total < 0 or drawn < 0 or total < drawn):
            raise forms.ValidationError(
                "The form arrived incomplete (fewer lines than the medical history holds), so nothing was saved. "
                "Reload the page and make your change again."
            )

    def kept_lines(self) -> list[ConditionLineForm]:
        """The lines to keep, in page order: chosen and not ticked for removal."""
        return [
            form for form in self.forms if form.cleaned_data.get("condition") and not form.cleaned_data.get("remove")
        ]


ConditionFormSet = forms.formset_factory(
    ConditionLineForm, formset=BaseConditionFormSet, extra=2, max_num=60, validate_max=True
)


class MedicationCourseForm(FrontdeskForm):
    drug = forms.ChoiceField(label="Medication")
    started_on = BoundedDateField(label="Started on")
    ended_on = BoundedDateField(label="Ended on", required=False, help_text="Leave empty while the course is ongoing.")
    notes = forms.CharField(label="Notes", required=False, max_length=500)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["drug"].choices = _choices(Medication.objects.all(), "— choose —")


class MedicationEndForm(FrontdeskForm):
    ended_on = BoundedDateField(label="End date")


class ProcedureRecordForm(FrontdeskForm):
    procedure = forms.ChoiceField(label="Procedure")
    performed_on = BoundedDateField(label="Date done")
    performed_time = forms.TimeField(
        label="Time (if known)",
        required=False,
        widget=TimeInput(),
        help_text="If unknown we assume the end of that day (or now, for today), the safer reading for the "
        "interval rules.",
    )
    area = forms.ChoiceField(label="Treatment area", required=False)
    done_where = forms.ChoiceField(
        label="Where it was done",
        required=False,
        help_text="At a sister site, the date and time are that site's; anywhere else, this clinic's.",
    )
    notes = forms.CharField(label="Notes (the clinic or provider, anything else)", required=False, max_length=500)

    def __init__(self, *args, clinic: Clinic, **kwargs) -> None:
        """`clinic`: the desk's. Where it was done is asked only of an organisation with sister sites."""
        super().__init__(*args, **kwargs)
        self.fields["procedure"].choices = _choices(ProcedureType.objects.filter(bookable=True), "— choose —")
        self.fields["area"].choices = _choices(TreatmentArea.objects.all(), "Not recorded")
        self.desk_clinic = clinic
        self.sites = {
            str(c.pk): c for c in Clinic.objects.filter(organisation_id=clinic.organisation_id).exclude(pk=clinic.pk)
        }
        # Asked only where there are sister sites (the page shows it then), but always checked: a site chosen on a
        # page drawn before it left the organisation is refused, not read as the desk's own.
        self.fields["done_where"].choices = [
            ("", f"{clinic.name}, or another provider"),
            *(
                (pk, f"{site.name} (sister site, {site.timezone})")
                for pk, site in sorted(self.sites.items(), key=lambda item: item[1].name)
            ),
        ]

    def recording_clinic(self) -> Clinic:
        """The clinic whose zone gives the reported day its date: the sister site chosen, else the desk's."""
        return self.sites.get(self.cleaned_data.get("done_where") or "", self.desk_clinic)


# --- Booking ----------------------------------------------------------------------------------


PAST_DAY = "That day has passed; choose today or a later day."


class WhenForm(FrontdeskForm):
    """A local date and time, or an exact instant (`start_at`, with an offset) from a one-click slot.

    Validation resolves them: `requested_start` is the exact start asked for (UTC), or
    None when only a day (or nothing) is chosen; `day_start` is the start of that day.

    The time may name its reading (`ClockField`: "01:15 BST", "01:15 GMT", as the calendar's cells of the hour the
    clocks go back over read), for a booking and a move alike, so the check never answers "happens twice" to a time
    that says which; it is then a text box, which a time box cannot show.
    """

    date = BoundedDateField(label="Date", required=False)
    time = ClockField(label="Time", required=False, widget=TimeInput())
    start_at = forms.CharField(required=False, widget=forms.HiddenInput)

    # Shown under the date and time pair (see the templates' "when-help").
    when_help = "In clinic time. Leave the time empty to see the first free times from that day."
    # Said when a booking or a move is submitted without a time.
    time_needed = "Choose a time, or one of the free times offered."

    def __init__(self, *args, clinic, today: date, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.clinic = clinic
        self.today = today
        for name in ("date", "time"):
            attrs = self.fields[name].widget.attrs
            attrs["aria-describedby"] = f"when-help {attrs['aria-describedby']}"
        shown = self["time"].data if self.is_bound else self.get_initial_for_field(self.fields["time"], "time")
        if ClockField.reading(shown):
            self.fields["time"].widget = forms.TextInput(attrs=self.fields["time"].widget.attrs)

    def visible_fields_in_error(self) -> list[forms.BoundField]:
        """The fields the check panel names ("Check “Date”: ..."); hidden ones are said above the panel."""
        return [field for field in self.visible_fields() if field.errors]

    def clean_start_at(self) -> datetime | None:
        raw = self.cleaned_data["start_at"].strip()
        if not raw:
            return None
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            raise ValidationError("That time could not be read; choose it again.")
        if value.tzinfo is None:
            raise ValidationError("That time has no UTC offset; choose it again.")
        if not MIN_YEAR <= value.year <= MAX_YEAR:
            raise ValidationError(YEARS_OUT_OF_RANGE)
        return value.astimezone(UTC)

    def clean(self):
        data = super().clean()
        reading = ClockField.reading(self["time"].data)
        day, clock = data.get("date"), data.get("time")
        if reading and day and clock and data.get("start_at") is None:
            data["start_at"] = read_local(day, clock, reading, self.clinic.tz)
            if data["start_at"] is None:
                self.add_error(
                    "time",
                    f"{day:%Y-%m-%d} {clock:%H:%M} {reading} is not a time in {self.clinic.tz}; "
                    "give the time alone, or as the calendar reads it.",
                )
                clock = None
        data["start"] = data.get("start_at")
        if day and day < self.today:
            # On the date, with or without a time: the time is not what is wrong (docs/frontdesk.md).
            self.add_error("date", PAST_DAY)
            return data
        if data["start"] is not None:
            return data
        if clock and not day:
            if "date" not in self.errors:
                self.add_error("date", "Choose a date for this time.")
        elif day and clock:
            with DomainErrors(self):
                data["start"] = local_to_utc(datetime.combine(day, clock), self.clinic.tz, field="start")
        return data

    @property
    def requested_start(self) -> datetime | None:
        return self.cleaned_data.get("start")

    @property
    def day_start(self) -> datetime | None:
        day = self.cleaned_data.get("date")
        return start_of_local_day(day, self.clinic.tz) if day else None

    def slot_request(self) -> SlotRequest:
        raise NotImplementedError


class BookingForm(WhenForm):
    """What to book and when. A calendar cell in the hour the clocks go back comes with its reading ("01:15 BST",
    `WhenForm`'s `ClockField`), so the time says which of the two it is."""

    procedure = forms.ChoiceField(label="Procedure")
    area = forms.ChoiceField(label="Treatment area", required=False)
    practitioner = forms.ChoiceField(label="Practitioner", required=False)

    field_order = ["procedure", "area", "practitioner", "date", "time", "start_at"]

    def __init__(self, *args, clinic, patient, **kwargs) -> None:
        super().__init__(*args, clinic=clinic, **kwargs)
        self.patient = patient
        self.fields["procedure"].choices = _choices(ProcedureType.objects.filter(bookable=True), "— choose —")
        self.fields["area"].choices = _choices(TreatmentArea.objects.all(), "Not specified")
        self.fields["practitioner"].choices = _choices(
            Practitioner.objects.filter(clinic=clinic, is_active=True), "Any practitioner"
        )

    def slot_request(self) -> SlotRequest:
        data = self.cleaned_data
        return SlotRequest.booking(
            patient=self.patient,
            procedure_code=data["procedure"],
            area_code=data["area"],
            practitioner_id=data["practitioner"],
            clinic_id=self.clinic.pk,  # booked where the desk is, at any clinic of the patient's organisation
        )


def drawn_at(appointment) -> str:
    """Where a visit is, and with whom, as the desk's forms carry it (`from_start_at`): "<start>|<practitioner>". A
    move or a cancel sent from a page drawn before someone changed that is refused by the service, under its locks
    (scheduler.booking `drawn`, `moved_since`)."""
    return f"{appointment.start_at.isoformat()}|{appointment.practitioner_id}"


def drawn_from(raw: str, *, again: str) -> tuple[datetime, str | None] | None:
    """(start, practitioner id) from what a form carried (`drawn_at`; a start alone from a page drawn before the
    practitioner was carried); None when it carried nothing (a script, a page from before): no check."""
    raw = (raw or "").strip()
    if not raw:
        return None
    start, _, practitioner = raw.partition("|")
    try:
        value = datetime.fromisoformat(start)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise ValidationError(f"This page could not say where the visit was; {again}.")
    return value, practitioner.strip() or None


class RescheduleForm(WhenForm):
    practitioner = forms.ChoiceField(label="Practitioner", required=False)
    reason = forms.CharField(label="Reason (optional)", required=False, max_length=500, validators=[validate_lines])
    # Where the visit was when the move page was drawn (an ISO instant): a move sent after someone else moved it
    # meanwhile moves nothing (scheduler.booking.appointment_reschedule's `drawn`, compared under its locks). A post
    # that does not say (a script): no check.
    from_start_at = forms.CharField(required=False, widget=forms.HiddenInput)

    field_order = ["date", "time", "practitioner", "reason", "start_at", "from_start_at"]
    time_needed = "Choose a new time, or one of the free times offered."

    def __init__(self, *args, clinic, appointment, **kwargs) -> None:
        super().__init__(*args, clinic=clinic, **kwargs)
        self.appointment = appointment
        self.fields["date"].label, self.fields["time"].label = "New date", "New time"
        # The current practitioner is a choice like any other: the slot buttons post their id. Left
        # empty (an older link), the services keep the current practitioner too.
        current = appointment.practitioner
        field = self.fields["practitioner"]
        field.choices = [(str(current.pk), f"{current.name} (as now)")] + [
            (str(p.pk), p.name)
            for p in Practitioner.objects.filter(clinic=clinic, is_active=True).exclude(pk=current.pk)
        ]
        field.initial = str(current.pk)

    def clean_from_start_at(self) -> tuple[datetime, str | None] | None:
        return drawn_from(self.cleaned_data["from_start_at"], again="open the move page again")

    def _where_now(self) -> str:
        return drawn_at(self.appointment)

    @property
    def drawn_start(self) -> str:
        """What the page's forms carry as `from_start_at`: where the visit was, and with whom, when this page was
        drawn (the check's panel, asked from the page, carries the page's), else where it is now."""
        raw = self["from_start_at"].value() if self.is_bound else None
        return raw or self._where_now()

    def redrawn(self) -> RescheduleForm:
        """This form again, what was chosen kept, drawn from where the visit is now: sending it again moves it."""
        data = self.data.copy()
        data["from_start_at"] = self._where_now()
        return RescheduleForm(data, clinic=self.clinic, appointment=self.appointment, today=self.today)

    def slot_request(self) -> SlotRequest:
        return SlotRequest.move(appointment=self.appointment, practitioner_id=self.cleaned_data["practitioner"])


# --- Appointment actions ------------------------------------------------------------------------


class ClearForm(FrontdeskForm):
    reason = forms.CharField(
        label="Clinical reason for clearance",
        max_length=2000,
        validators=[validate_lines],
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Recorded in the audit trail with your name, e.g. “Eczema quiescent for 2 years; test patch done”.",
    )


class AppointmentNotesForm(FrontdeskForm):
    notes = forms.CharField(
        label="Notes for this visit",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="For the staff: on the day sheet, never sent to the patient.",
    )
    # What the notes were when the page was drawn (notes_version): saved over notes someone changed since, nothing is
    # saved (frontdesk.views.appointments.appointment_notes_view). A post that does not say (a script): no check.
    notes_drawn = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args, appointment=None, **kwargs) -> None:
        """`appointment`: the visit whose notes the form is drawn with (an unbound form)."""
        if appointment is not None:
            kwargs["initial"] = {"notes": appointment.notes, "notes_drawn": notes_version(appointment.notes)}
        super().__init__(*args, **kwargs)
        self.fields["notes_drawn"].widget.attrs.pop("aria-describedby")  # hidden: nothing on the page describes it

    def redrawn(self, notes_now: str) -> AppointmentNotesForm:
        """This form again, what was typed kept, drawn over the notes as they are now (so sending it again saves it,
        knowingly), saying why nothing was saved."""
        data = self.data.copy()
        data["notes_drawn"] = notes_version(notes_now)
        form = AppointmentNotesForm(data)
        form.is_valid()
        form.add_error(
            "notes",
            "Not saved: someone else changed these notes since you opened this page (they are shown above). What you "
            "typed is kept here: make it say what should stay, then save again.",
        )
        return form


class CancelForm(FrontdeskForm):
    reason = forms.CharField(
        label="Reason for cancelling (optional)",
        required=False,
        max_length=2000,
        validators=[validate_lines],
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    # Where the visit was, and with whom, when the page was drawn (`drawn_at`): a cancel sent after someone moved it
    # cancels nothing (scheduler.booking.appointment_cancel `drawn`, under its locks), as a move from a stale page
    # does. A post that does not say (a page drawn before it carried one): no check.
    from_start_at = forms.CharField(required=False, max_length=120, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["from_start_at"].widget.attrs.pop("aria-describedby", None)  # hidden: nothing describes it

    def clean_from_start_at(self) -> tuple[datetime, str | None] | None:
        return drawn_from(self.cleaned_data["from_start_at"], again="open the appointment again")


# --- A merge's warning, checked on the patient's page ---------------------------------------------------------

# The service's own words for the same mistakes (clinic.merging.merge_warning_check), which the page has always said.
_SAY_WHICH_WARNING = "Say which warning was checked, as it was shown."


class MergeWarningCheckForm(FrontdeskForm):
    """A check form under a merge's warning (patient_detail.html): the merge and the booking it warned of (hidden),
    the warning's words as the page drew them (hidden) and an optional note. Shape only: whether the merge and the
    booking are one of this patient's merges' warnings, and the words what the rules say now, is the service's to
    decide (`NotFound`, `PreconditionFailed`). A malformed id is no such warning: `bad_id` says so, for a 404."""

    merge = forms.UUIDField()
    appointment = forms.UUIDField()
    message = forms.CharField(
        strip=False,  # compared with the rules' words as they are
        error_messages={"required": _SAY_WHICH_WARNING, "null_characters_not_allowed": _SAY_WHICH_WARNING},
    )
    note = forms.CharField(
        required=False,
        max_length=MERGE_CHECK_NOTE_MAX,
        error_messages={
            "max_length": f"Keep the note to {MERGE_CHECK_NOTE_MAX} characters or fewer.",
            "null_characters_not_allowed": "Remove the NUL character from the note.",
        },
    )

    @property
    def bad_id(self) -> bool:
        return "merge" in self.errors or "appointment" in self.errors

    def clean_message(self) -> str:
        # A browser sends a line break in a field as CR LF; the page drew it as LF.
        message = self.cleaned_data["message"].replace("\r\n", "\n")
        if not message.strip() or len(message) > MERGE_CHECK_MESSAGE_MAX:
            raise ValidationError(_SAY_WHICH_WARNING, code="invalid")
        return message

    def error_texts(self) -> list[str]:
        """What is wrong with the message and the note, in the order of the fields."""
        return [text for name in ("message", "note") for text in self.errors.get(name, [])]


class ScheduleFilterForm(FrontdeskForm):
    date = BoundedDateField(label="Date", required=False)
    practitioner = forms.ChoiceField(label="Practitioner", required=False)
    view = forms.ChoiceField(label="View", required=False, choices=[("day", "Day"), ("week", "Week")])
    cancelled = forms.BooleanField(label="Show cancelled", required=False)

    def __init__(self, *args, clinic, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["practitioner"].choices = _choices(
            Practitioner.objects.filter(clinic=clinic, is_active=True), "All practitioners"
        )
