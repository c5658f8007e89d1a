"""Writes to a patient's record: details, procedure history, medications, intake.

Shared by the API and the front desk. Each validates its input fully and
raises `InvalidInput` with the offending field, so bad input never reaches
the database and both interfaces show the same messages. Every change to the
clinical record is announced (clinic.record_changes) inside its transaction,
so the patient's booked appointments are re-checked with it. `now` defaults
to the clock for callers that do not pass it yet.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, tzinfo

import phonenumbers
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from clinic.models import (
    Appointment,
    Clinic,
    Condition,
    ConditionStatus,
    HistorySource,
    Medication,
    MedicationCourse,
    Patient,
    PatientCondition,
    ProcedureRecord,
    ProcedureType,
    ReminderChannel,
    TreatmentArea,
)
from clinic.record_changes import ChangedBy, ContactChange, patient_contact_changed, patient_record_changed
from clinic.selectors import catalogue_entry, duplicate_candidates, identity_of
from core.compiled import CompiledQuery, columns, instances
from core.errors import ErrorCode, InvalidInput, NotFound, PreconditionFailed, Refused
from core.ids import parse_uuid
from core.timeutils import MAX_YEAR, MIN_YEAR, YEARS_OUT_OF_RANGE, local_to_utc, require_aware, within_years

# The years a date may fall in, as the API accepts (api/fields.py): calendar arithmetic near year 1 or
# 9999 overflows, and no clinic needs dates outside this.

PATIENT_FIELDS = ("first_name", "last_name", "date_of_birth", "email", "phone", "reminder_channels", "sms_consent")


def phone_examples(country: str) -> tuple[str, str] | None:
    """A mobile number of `country` as dialled there and in international form (for help texts), if known."""
    example = phonenumbers.example_number_for_type(country, PhoneNumberType.MOBILE) if country else None
    if example is None:
        return None
    return (
        phonenumbers.format_number(example, PhoneNumberFormat.NATIONAL),
        phonenumbers.format_number(example, PhoneNumberFormat.INTERNATIONAL),
    )


def phone_to_e164(value: str, *, country: str) -> str | None:
    """A phone number as typed at a desk in `country`, in E.164; None when it is not a valid number.

    National numbers are read as `country`'s ("07911 123456" at a GB clinic); spaces, dashes,
    brackets and a 00 international prefix are fine.
    """
    typed = value.strip()
    for text in (typed, "+" + typed[2:]) if typed.startswith("00") else (typed,):
        try:
            number = phonenumbers.parse(text, country or None)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, PhoneNumberFormat.E164)
    return None


def phone_problem(country: str) -> str:
    """What to say about a number that is not one, with examples from `country`."""
    examples = phone_examples(country)
    if examples is None:
        return "Enter the phone number in international form, e.g. +447911123456."
    national, international = examples
    return (
        f"Enter a valid phone number, as dialled locally (e.g. {national}) or in international form "
        f"(e.g. {international})."
    )


def _with_e164_phone(fields: dict, *, country: str) -> tuple[dict, dict[str, list[str]]]:
    """`fields` with the phone in E.164 (read with the clinic's country), and the phone's error if any."""
    phone = fields.get("phone")
    if not isinstance(phone, str) or not phone.strip():
        return fields, {}
    e164 = phone_to_e164(phone, country=country)
    if e164 is None:
        return fields, {"phone": [phone_problem(country)]}
    return {**fields, "phone": e164}, {}


# What says how a patient is reached: a change of it is checked with the address and number it goes to.
CHANNEL_FIELDS = frozenset({"reminder_channels", "sms_consent"})


def _validated(
    patient: Patient, errors: dict[str, list[str]] | None = None, *, changed: Iterable[str] | None = None
) -> Patient:
    """Every problem at once: the model's validation and the service's own (`errors`). With `changed` (an edit), the
    fields it sets (a channel switched with the address and number it goes to) and the rules across fields: a value
    stored before a check existed (or written past the checks) does not stop an edit of another field (a platform's
    PATCH of the phone), while an edit that sends it is told of it."""
    errors = dict(errors or {})
    unchanged = []
    if changed is not None:
        checked = set(changed)
        if checked & CHANNEL_FIELDS:  # a channel switched on is checked with what it goes to, as stored
            checked |= {"email", "phone"}
        if checked & {"email", "phone"}:  # and what a channel goes to, taken away, with the channels as stored
            checked |= {"reminder_channels"}
        unchanged = [name for name in dict.fromkeys((*PATIENT_FIELDS, *CONTACT_FIELDS)) if name not in checked]
    try:
        patient.full_clean(exclude=["clinic", *errors, *unchanged])
    except ValidationError as error:
        for name, messages in error.message_dict.items():
            if name in unchanged:
                # The model's rules across fields (`Patient.clean`: texts need a number) run whatever is excluded: one
                # about a field this edit does not set is a value stored before, which must not stop it.
                continue
            errors.setdefault("non_field_errors" if name == "__all__" else name, []).extend(messages)
    if errors:
        field, messages = next(iter(errors.items()))
        raise InvalidInput(
            ErrorCode.INVALID_PATIENT,
            " ".join(messages),
            field=None if field == "non_field_errors" else field,
            errors=errors,
        )
    return patient


def _check_birth_date(value: date | None, today: date) -> None:
    if value is None:
        return
    if value > today:
        raise InvalidInput(
            ErrorCode.BIRTH_DATE_IN_FUTURE, "The date of birth cannot be in the future.", field="date_of_birth"
        )
    if value.year < MIN_YEAR:
        raise InvalidInput(
            ErrorCode.BIRTH_DATE_TOO_EARLY,
            f"A date of birth before {MIN_YEAR} cannot be right; check the year.",
            field="date_of_birth",
        )


class PossibleDuplicate(Refused):
    """The organisation already has a record that looks like this patient; `candidates` says which and why."""

    def __init__(self, candidates: list[dict]) -> None:
        count = len(candidates)
        super().__init__(
            ErrorCode.POSSIBLE_DUPLICATE,
            f"{count} existing record{'s' if count != 1 else ''} may be this patient: open one, or confirm that this "
            "is a new patient.",
            data={"candidates": candidates},
        )
        self.candidates = candidates


def patient_create(
    *,
    clinic: Clinic,
    today: date,
    confirm_new: bool = False,
    confirmed: Iterable[str] | None = None,
    changed_by: ChangedBy | None = None,
    **fields,
) -> Patient:
    """Register a patient at `clinic` (their home clinic; the record is its organisation's).

    Unless `confirm_new`, a likely duplicate in the organisation (clinic.duplicates) refuses it with
    `PossibleDuplicate`. With `confirm_new` and `confirmed` (the ids of the candidates a person was shown), only
    those are passed over: one the details now match that was not shown refuses it again, every candidate listed. Two desks registering the same person at the same moment can both pass: the
    check is a question to staff, not a constraint; a merge joins the two records. `changed_by` (the desk, a
    platform) is recorded with the channels the patient is registered with (their consent, reminders.consent).
    """
    unknown = set(fields) - set(PATIENT_FIELDS)
    if unknown:
        raise InvalidInput(ErrorCode.UNKNOWN_FIELD, f"Unknown patient field(s): {', '.join(sorted(unknown))}.")
    _check_birth_date(fields.get("date_of_birth"), today)
    if _known_channels_once(fields.get("reminder_channels")):  # stored in the one order an update keeps
        fields = {**fields, "reminder_channels": channels_in_order(fields["reminder_channels"])}
    fields, problems = _with_e164_phone(fields, country=clinic.country)
    patient = Patient(clinic=clinic, **fields)
    _validated(patient, problems)
    if not confirm_new or confirmed is not None:
        candidates = duplicate_candidates(
            organisation_id=clinic.organisation_id,
            identity=identity_of(patient),
        )
        passed_over = {str(pk) for pk in confirmed or ()} if confirm_new else set()
        if any(str(found.patient.pk) not in passed_over for found in candidates):
            raise PossibleDuplicate(
                [
                    {
                        "id": str(found.patient.pk),
                        "first_name": found.patient.first_name,
                        "last_name": found.patient.last_name,
                        "date_of_birth": found.patient.date_of_birth.isoformat()
                        if found.patient.date_of_birth
                        else None,
                        "reasons": [str(reason) for reason in found.reasons],
                    }
                    for found in candidates
                ]
            )
    with transaction.atomic():
        patient.save()
        if changed_by is not None and patient.reminder_channels:  # the consent given at registration, recorded
            patient_contact_changed(patient_id=patient.pk, now=timezone.now(), change=ContactChange(changed_by))
    return patient


def channels_in_order(channels) -> list[str]:
    """Reminder channels as one set is stored: in ReminderChannel's order, each once."""
    chosen = set(channels)
    return [value for value in ReminderChannel.values if value in chosen]


def _known_channels_once(channels) -> bool:
    """A list of known channels, each named once: put in order. Anything else is left for the model's validation
    to name (an unknown channel, or one named twice: refused at registration and update alike)."""
    return (
        isinstance(channels, list)
        and set(channels) <= set(ReminderChannel.values)
        and len(set(channels)) == len(channels)
    )


def patient_update(
    *,
    patient: Patient,
    today: date,
    changed_by: ChangedBy | None = None,
    made_from: str | Iterable[str] | None = None,
    channels_drawn: Iterable[str] | None = None,
    drawn: Mapping[str, object] | None = None,
    **fields,
) -> Patient:
    """Change a patient's details. A change to how they are reached tells the reminders, with `changed_by` (the
    desk, a platform), which record a channel switched on or off by them (reminders.consent). With `made_from` (the
    `record_version`s the change was made from: an API client's If-Match), refused with nothing changed once the
    record is no longer one of them. With `channels_drawn` (the channels a form was drawn with), the channels in
    `fields` are what its user ticked and unticked, applied to the channels as they are under the lock.

    With `drawn` (a person's form: the values it showed, by field), the comparison is by field instead: the change is
    refused (`PreconditionFailed` record_changed, its `data["fields"]` naming them) only where it would set a field
    someone else changed since, one whose stored value is neither the value drawn nor the value this change writes
    (`overwritten_fields`); every other field is saved over the record as it is now. A field `drawn` does not give
    is compared that way only if the record is no longer `made_from`, the version the form was drawn from."""
    unknown = set(fields) - set(PATIENT_FIELDS)
    if unknown:
        raise InvalidInput(ErrorCode.UNKNOWN_FIELD, f"Unknown patient field(s): {', '.join(sorted(unknown))}.")
    _check_birth_date(fields.get("date_of_birth"), today)
    with transaction.atomic():
        patient = lock_live_patient(patient.pk)  # a record merged away meanwhile is refused, not written to
        if channels_drawn is not None and "reminder_channels" in fields:
            fields["reminder_channels"] = channels_as_changed(
                now=patient.reminder_channels, drawn=channels_drawn, submitted=fields["reminder_channels"]
            )
        elif _known_channels_once(fields.get("reminder_channels")):
            # A set, kept in one order: the same channels named in another order are no change.
            fields["reminder_channels"] = channels_in_order(fields["reminder_channels"])
        fields, problems = _with_e164_phone(fields, country=patient.clinic.country)
        reached_before = _how_reached(patient)
        for name, value in fields.items():
            setattr(patient, name, value)
        _validated(patient, problems, changed=fields)  # bad input is a 400 first, whatever the If-Match
        as_stored = Patient.objects.get(pk=patient.pk)
        stored = record_version(as_stored)
        if record_version(patient) == stored:
            # Nothing to change: a retry of a change already made (its answer lost), or a form saved unchanged. Not
            # a conflict whatever the If-Match (RFC 9110, 13.1.1: the change is already there), and nothing written.
            return patient
        # Race condition: compared under the patient's lock, which every change of their details takes.
        if drawn is not None:
            moved_on = made_from is not None and stored not in (
                [made_from] if isinstance(made_from, str) else made_from
            )
            overwritten = overwritten_fields(
                as_stored,
                fields,
                drawn,
                country=patient.clinic.country,
                whole_record_changed=moved_on,
                channels_applied=channels_drawn is not None,
            )
            if overwritten:
                raise PreconditionFailed(
                    ErrorCode.RECORD_CHANGED,
                    f"Changed by someone else since the form was drawn: {', '.join(overwritten)}. Nothing was saved.",
                    data={"fields": overwritten},
                )
        else:
            unchanged_since(
                lambda: stored,
                made_from,
                "The patient's details changed since they were read: nothing was saved. Read them again and make the "
                "change on what they are now.",
            )
        patient.save()
        if _how_reached(patient) != reached_before:  # an address added, a channel chosen: tell the reminders
            before = dict(zip(CONTACT_FIELDS, reached_before, strict=True))
            change = ContactChange(changed_by, before) if changed_by is not None else None
            patient_contact_changed(patient_id=patient.pk, now=timezone.now(), change=change)
    return patient


def overwritten_fields(
    stored: Patient,
    fields: Mapping[str, object],
    drawn: Mapping[str, object],
    *,
    country: str,
    whole_record_changed: bool,
    channels_applied: bool = True,
) -> list[str]:
    """The fields of `fields` (what a change writes; the phone in E.164) that would overwrite someone else's change:
    the value `stored` now is neither the one the form was `drawn` with (nobody changed it) nor the one written (the
    same change made twice). A field `drawn` does not give counts as changed by someone else when
    `whole_record_changed`. The reminder channels do not count when `channels_applied`: what a form ticked or
    unticked is applied to them as they are (`channels_as_changed`); a form that does not say what it was drawn with
    (drawn with none ticked, an empty list renders no hidden initial) has them compared as any other field, so the
    patient's own opt-in made meanwhile is a conflict, never undone in silence. Values are compared as saved: the
    number in E.164 in the clinic's `country`, text without the spaces around it, an e-mail address in any case, no
    value as ""."""
    found = []
    for name, value in fields.items():
        if name == "reminder_channels" and channels_applied:
            continue
        now = _as_compared(name, getattr(stored, name), country)
        if name in drawn:
            if _as_compared(name, drawn[name], country) == now:
                continue  # as drawn: nobody changed it since
        elif not whole_record_changed:
            continue
        if _as_compared(name, value, country) != now:
            found.append(name)
    return found


def _as_compared(name: str, value, country: str):
    if value is None:
        return ""
    if isinstance(value, str):
        value = value.strip()
        if name == "phone" and value:
            return phone_to_e164(value, country=country) or value
        return value.casefold() if name == "email" else value
    return value


CONTACT_FIELDS = ("email", "phone", "reminder_channels", "sms_consent", "muted_topics")
# Those that are the patient's own choices, which they change themselves too (a STOP, their page): a form open
# meanwhile saves one only where its user changed it (frontdesk.forms.PatientForm, clinic.admin.PatientAdmin).
PATIENT_CHOICES = ("reminder_channels", "sms_consent", "muted_topics")


def channels_as_changed(*, now: Iterable[str], drawn: Iterable[str], submitted: Iterable[str]) -> list[str]:
    """The reminder channels after a form drawn with `drawn` submitted `submitted`: what its user ticked or
    unticked, applied to the channels as they are `now`, so that one the patient switched off meanwhile (an
    unsubscribe, a STOP) stays off and one they switched on stays on."""
    drawn, submitted = set(drawn), set(submitted)
    result = set(now) - (drawn - submitted) | (submitted - drawn)
    return [value for value in ReminderChannel.values if value in result]


def _how_reached(patient: Patient) -> tuple:
    return tuple(getattr(patient, name) for name in CONTACT_FIELDS)


# Every booking and record change takes this lock: compiled once per connection (core.compiled). It locks the
# patient's row only (`of`): locking the joined clinic row too would queue every booking at that clinic.
_LOCK_PATIENT = CompiledQuery(
    lambda pk: Patient.objects.select_for_update(of=("self",)).filter(pk=pk).values_list(*columns(Patient, "clinic"))
)


def lock_live_patient(patient_id) -> Patient:
    """The patient's row, locked (as every booking and record change locks it first); a record merged
    into another meanwhile is refused: nothing may be added to a tombstone (clinic.merging)."""
    pk = parse_uuid(patient_id)
    return live_patient(instances(_LOCK_PATIENT.rows(pk), Patient, "clinic") if pk else [])


def live_patient(found: list[Patient]) -> Patient:
    """The one patient a lock found, refused when missing or merged away while the lock was awaited."""
    if not found:
        raise Patient.DoesNotExist("Patient matching query does not exist.")
    patient = found[0]
    # Race condition: the record may have been merged away while we waited for the lock.
    if patient.merged_into_id is not None:
        raise InvalidInput(
            ErrorCode.PATIENT_MERGED,
            f"This patient's record was merged into {patient.merged_into_id}; use that record.",
            field="patient",
        )
    return patient


# With no time given, a reported procedure is taken as done at the end of that local day: the
# safer reading for the interval rules (a later procedure is measured from the latest moment).
UNKNOWN_TIME_OF_DAY = time(23, 59)
IN_THE_FUTURE = "A procedure in the history cannot be in the future; book an appointment instead."


def _reported_at(*, day: date, clock: time | None, tz: tzinfo, now: datetime) -> datetime:
    """The instant of a procedure reported as a local day (and time, if known), never after now."""
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise InvalidInput(ErrorCode.DATE_OUT_OF_RANGE, YEARS_OUT_OF_RANGE, field="performed_on")
    if day > now.astimezone(tz).date():
        raise InvalidInput(ErrorCode.PERFORMED_IN_FUTURE, IN_THE_FUTURE, field="performed_on")
    if clock is None:
        # No time given, so none can be ambiguous: where the clocks go back at midnight (Chile, Egypt) 23:59 comes
        # twice, and the later one is the end of the day (fold=1; the same instant where it comes once).
        end_of_day = datetime.combine(day, UNKNOWN_TIME_OF_DAY).replace(tzinfo=tz, fold=1).astimezone(UTC)
        return min(end_of_day, now.replace(second=0, microsecond=0))
    performed = local_to_utc(datetime.combine(day, clock), tz, field="performed_time")
    if performed > now:
        raise InvalidInput(ErrorCode.PERFORMED_IN_FUTURE, IN_THE_FUTURE, field="performed_time")
    return performed


def performed_at_checked(performed: datetime, *, now: datetime, field: str = "performed_at") -> datetime:
    """A procedure's instant as the history takes it (the API's, the admin's): aware, in the years 1900 to 2999 read
    as given and in UTC (year 1 read west of UTC is year 0, a 500 wherever it is read), and not after now."""
    performed = require_aware(performed, field=field)
    if not (within_years(performed) and within_years(performed.astimezone(UTC))):
        raise InvalidInput(ErrorCode.DATE_OUT_OF_RANGE, YEARS_OUT_OF_RANGE, field=field)
    if performed > now:
        raise InvalidInput(ErrorCode.PERFORMED_IN_FUTURE, IN_THE_FUTURE, field=field)
    return performed


def procedure_record_add(
    *,
    patient: Patient,
    procedure_code: str,
    now: datetime,
    performed_at: datetime | None = None,
    performed_on: date | None = None,
    performed_time: time | None = None,
    area_code: str | None = None,
    source: str = HistorySource.REPORTED,
    notes: str = "",
    clinic: Clinic | None = None,
    same_as: Callable[[], ProcedureRecord | None] | None = None,
) -> ProcedureRecord:
    """Record a procedure done before (here or elsewhere); it counts for the interval rules at once.

    `same_as`, asked under the patient's lock: the record this one repeats (a form sent twice), returned instead of
    a second one, marked `already_recorded`, nothing written.

    When it was done is either an instant (`performed_at`, with an offset) or what a patient
    says: a day in the clinic's zone (`performed_on`) and, if known, a time (`performed_time`).
    The clinic is the one recording it (one of the patient's organisation; the home clinic when not given): its
    zone gives the procedure its day, for good (docs/rules.md), whatever becomes of the patient's home clinic.
    """
    clinic = clinic or patient.clinic
    if clinic.organisation_id != patient.organisation_id:
        raise InvalidInput(
            ErrorCode.CLINIC_MISMATCH, "The patient belongs to another organisation's clinics.", field="clinic"
        )
    procedure = catalogue_entry(ProcedureType, procedure_code, field="procedure", what="procedure")
    area = catalogue_entry(TreatmentArea, area_code, field="area", what="treatment area")
    if (performed_at is None) == (performed_on is None):
        raise TypeError("procedure_record_add takes performed_at, or performed_on (and performed_time)")
    if performed_on is not None:
        performed = _reported_at(day=performed_on, clock=performed_time, tz=clinic.tz, now=now)
    else:
        performed = performed_at_checked(performed_at, now=now)
    if source not in HistorySource.values:
        raise InvalidInput(ErrorCode.UNKNOWN_SOURCE, f"source must be one of {HistorySource.values}.", field="source")
    with transaction.atomic():
        # Locked like a booking, so a concurrent booking re-checks against this record.
        lock_live_patient(patient.pk)
        if same_as is not None and (earlier := same_as()) is not None:
            earlier.already_recorded = True  # Race condition: asked under the lock the first sending held
            return earlier
        record = ProcedureRecord.objects.create(
            patient=patient,
            procedure=procedure,
            performed_at=performed,
            area=area,
            source=source,
            notes=notes,
            clinic=clinic,
        )
        patient_record_changed(patient_id=patient.pk, now=now, cause=f"history: {procedure.name} added")
    return record


def medication_course_add(
    *,
    patient: Patient,
    drug_code: str,
    started_on: date,
    ended_on: date | None = None,
    notes: str = "",
    now: datetime | None = None,
    same_as: Callable[[], MedicationCourse | None] | None = None,
) -> MedicationCourse:
    """Record a course of a drug. `same_as` as for `procedure_record_add` (a form sent twice: the course it added)."""
    drug = catalogue_entry(Medication, drug_code, field="drug", what="medication")
    course_dates_in_range(started_on=started_on, ended_on=ended_on)
    if ended_on is not None and ended_on < started_on:
        raise InvalidInput(ErrorCode.ENDS_BEFORE_START, "A course cannot end before it starts.", field="ended_on")
    with transaction.atomic():
        lock_live_patient(patient.pk)
        if same_as is not None and (earlier := same_as()) is not None:
            earlier.already_recorded = True  # Race condition: asked under the lock the first sending held
            return earlier
        course = MedicationCourse.objects.create(
            patient=patient, drug=drug, started_on=started_on, ended_on=ended_on, notes=notes
        )
        patient_record_changed(
            patient_id=patient.pk, now=now or timezone.now(), cause=f"medication: {drug.name} course recorded"
        )
    return course


def course_dates_in_range(**dates: date | None) -> None:
    """A course's dates within the years the product takes, as a reported procedure's (a course ended in 9999 would
    be stored, and every later check of the patient's rules overflow)."""
    for name, value in dates.items():
        if value is not None and not MIN_YEAR <= value.year <= MAX_YEAR:
            raise InvalidInput(ErrorCode.DATE_OUT_OF_RANGE, YEARS_OUT_OF_RANGE, field=name)


def medication_course_end(
    *,
    course: MedicationCourse,
    ended_on: date,
    now: datetime | None = None,
    ongoing_only: bool = False,
    made_from: str | Iterable[str] | None = None,
) -> MedicationCourse:
    """Record the end of an ongoing course (which turns 'no date yet' into a date). With `ongoing_only` (the desk's
    form, drawn while it was ongoing), refused with nothing changed when it was ended meanwhile: the end someone
    recorded (a later one, which blocks longer) is not overwritten; with `made_from` (an API client's If-Match: the
    `record_version`s it was made from), refused once the course is no longer one of them."""
    course_dates_in_range(ended_on=ended_on)
    if ended_on < course.started_on:
        raise InvalidInput(ErrorCode.ENDS_BEFORE_START, "A course cannot end before it starts.", field="ended_on")
    with transaction.atomic():
        lock_live_patient(course.patient_id)
        # Race condition: read again under the patient's lock, which every change of the record takes.
        stored = MedicationCourse.objects.filter(pk=course.pk).first()
        if stored is None:
            raise NotFound("unknown_medication_course", "This medication course was removed meanwhile.")
        if stored.ended_on == ended_on:
            return stored  # already so (a retry whose answer was lost, a form sent twice): nothing to change
        unchanged_since(
            lambda: record_version(stored),
            made_from,
            "This course changed since it was read: nothing was saved. Read it again and make the change on what it "
            "is now.",
        )
        ended_meanwhile = stored.ended_on
        if ongoing_only and ended_meanwhile is not None:
            raise PreconditionFailed(
                ErrorCode.RECORD_CHANGED,
                f"This course was recorded as ended on {ended_meanwhile.day} {ended_meanwhile:%B %Y} since the page was "
                "opened: nothing "
                "was changed. Correct it in the admin if that end is wrong.",
            )
        course.ended_on = stored.ended_on = ended_on
        stored.save(update_fields=["ended_on"])
        # Named as staff read it, as a course recorded is; an end there before is a correction.
        verb = "ended" if ended_meanwhile is None else "end corrected"
        patient_record_changed(
            patient_id=course.patient_id,
            now=now or timezone.now(),
            cause=f"medication: {stored.drug.name} course {verb} ({ended_on.day} {ended_on:%B %Y})",
        )
    return stored  # as stored now (its other fields too): what the caller's answer and ETag show


def patient_record_edited(*, patient_id, parts: list[str], now: datetime) -> None:
    """The record's parts (history, medication courses, intake) were edited in place, in the caller's transaction
    (the admin's inlines): lock the patient and tell the subscribers, as the services above do, so the patient's
    bookings are re-checked. A record merged away is refused (`lock_live_patient`)."""
    patient = lock_live_patient(patient_id)
    patient_record_changed(patient_id=patient.pk, now=now, cause=f"{', '.join(parts)} edited in the admin")


@dataclass(frozen=True)
class IntakeLine:
    condition: str
    status: str
    area: str | None = None
    noted_on: date | None = None


def _intake_row(patient: Patient, line: IntakeLine, index: int, seen: set[tuple[str, str | None]]) -> PatientCondition:
    """One intake line, checked; every error names its line (`data["line"]`, 0-based) for the interface."""
    try:
        if not line.condition:
            raise InvalidInput(ErrorCode.UNKNOWN_CONDITION, f"Line {index + 1}: name a condition.", field="condition")
        condition = catalogue_entry(Condition, line.condition, field="condition", what="condition")
        area = catalogue_entry(TreatmentArea, line.area, field="area", what="treatment area")
    except InvalidInput as error:
        raise InvalidInput(error.code, error.message, field=error.field, data={"line": index}) from None
    if line.status not in ConditionStatus.values:
        raise InvalidInput(
            ErrorCode.UNKNOWN_STATUS,
            f"Line {index + 1}: status must be 'active' or 'history'.",
            field="status",
            data={"line": index},
        )
    key = (condition.code, area.code if area else None)
    if key in seen:
        raise InvalidInput(
            ErrorCode.DUPLICATE_CONDITION,
            f"Line {index + 1}: {condition.name} is listed twice for the same area.",
            field="condition",
            data={"line": index},
        )
    seen.add(key)
    return PatientCondition(patient=patient, condition=condition, status=line.status, area=area, noted_on=line.noted_on)


def intake_version(patient_id) -> str:
    """A fingerprint of the patient's intake as stored (its lines, in any order): what a page or a GET that shows
    it was drawn from, so that a replacement made from it can be refused once someone else changed it."""
    lines = sorted(
        f"{condition}|{area or ''}|{status}|{noted_on or ''}"
        for condition, area, status, noted_on in PatientCondition.objects.filter(patient_id=patient_id).values_list(
            "condition_id", "area_id", "status", "noted_on"
        )
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:20]


def appointment_version(appointment: Appointment) -> str:
    """A fingerprint of the appointment as the API shows it (where, when, with whom, for what, its status and review
    reasons): its ETag, which the If-Match of a move or a status change names. Not its notes, its check-in or its
    clearance's words, which the API does not show and no write of a platform's would undo: a note saved at the
    desk does not refuse a platform's move. Not the reminders its GET lists either (If-None-Match is not
    supported, so nothing caches the body by it)."""
    values = [
        appointment.patient_id,
        appointment.procedure_id,
        appointment.area_id,
        appointment.practitioner_id,
        appointment.clinic_id,
        appointment.start_at.timestamp(),
        appointment.end_at.timestamp(),
        appointment.status,
        json.dumps(appointment.review_reasons or [], sort_keys=True, default=str),
    ]
    return hashlib.sha256("\n".join(map(str, values)).encode()).hexdigest()[:20]


# Kept from other fields by every save: no one changes them, so a version does not count them (a version taken
# before such a field was added still holds).
DERIVED_FIELDS = frozenset({"search_name"})


def record_version(row: Patient | MedicationCourse) -> str:
    """A fingerprint of one row as stored (every field but its timestamps and what is kept from the others, a
    patient's `search_name`): what a GET showing it was drawn from, so that a change made from it can be refused once
    someone else changed the row (If-Match)."""
    values = [
        f"{field.attname}={field.value_from_object(row)}"
        for field in row._meta.concrete_fields
        if not (getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False))
        and field.attname not in DERIVED_FIELDS
    ]
    return hashlib.sha256("\n".join(values).encode()).hexdigest()[:20]


def unchanged_since(current: Callable[[], str], made_from: str | Iterable[str] | None, message: str) -> None:
    """Refuse (412 record_changed) a change made from versions (`made_from`: one, or any of several) of which
    `current()`, the version stored now, is none. None: no condition (and the version is not read)."""
    if made_from is None:
        return
    accepted = {made_from} if isinstance(made_from, str) else set(made_from)
    if current() not in accepted:
        raise PreconditionFailed(ErrorCode.RECORD_CHANGED, message)


def conditions_replace(
    *,
    patient: Patient,
    lines: Iterable[IntakeLine],
    now: datetime | None = None,
    made_from: str | Iterable[str] | None = None,
) -> list[PatientCondition]:
    """Replace the medical-history intake with `lines` (a PUT of the whole list). With `made_from` (the
    `intake_version` the lines were made from: the desk's page; an API client's If-Match, which may name several),
    refused with nothing changed when the intake is no longer that: a line recorded meanwhile (a contraindication)
    would be erased."""
    lines = list(lines)
    seen: set[tuple[str, str | None]] = set()
    rows = []
    for index, line in enumerate(lines):
        rows.append(_intake_row(patient, line, index, seen))
    with transaction.atomic():
        lock_live_patient(patient.pk)
        # Race condition: read and compared under the patient's lock, which every intake change takes.
        stored = {(row.condition_id, row.area_id): row for row in PatientCondition.objects.filter(patient=patient)}
        wanted = {(row.condition_id, row.area_id): row for row in rows}
        removed = [row.pk for key, row in stored.items() if key not in wanted]
        added = [row for key, row in wanted.items() if key not in stored]
        changed = []
        for key, row in wanted.items():
            kept = stored.get(key)
            if kept is not None and (kept.status, kept.noted_on) != (row.status, row.noted_on):
                kept.status, kept.noted_on = row.status, row.noted_on
                changed.append(kept)
        if removed or added or changed:
            # Something changes: only then is a change made from another version a conflict (a retry of one already
            # made, its answer lost, finds the intake as it asks and is answered as if it were the first).
            unchanged_since(
                lambda: intake_version(patient.pk),
                made_from,
                "The medical history changed since it was read: nothing was saved. Read it again and make the "
                "change on what it is now.",
            )
            # Lines that stay keep their rows (and ids, which a booking flagged for review names in its reasons:
            # the same intake sent again flags nothing again).
            PatientCondition.objects.filter(pk__in=removed).delete()
            if changed:
                PatientCondition.objects.bulk_update(changed, ["status", "noted_on"])
            PatientCondition.objects.bulk_create(added)
            patient_record_changed(patient_id=patient.pk, now=now or timezone.now(), cause="intake updated")
    return list(PatientCondition.objects.filter(patient=patient).select_related("condition", "area"))


def notes_version(notes: str) -> str:
    """A fingerprint of a visit's notes as stored: what a notes form was drawn with (compared on the server, so the
    line breaks a browser sends back differently do not count as a change)."""
    return hashlib.sha256(notes.encode()).hexdigest()[:16]


def appointment_notes_set(*, appointment: Appointment, notes: str, drawn: str | None = None) -> Appointment:
    """The desk's notes on one visit (parking, an interpreter, running late); they change no rule or
    reminder, so they are not a lifecycle action. Their length is the form's to check. With `drawn` (the
    `notes_version` of the notes the form was drawn with), refused with nothing saved (412 `record_changed`) when
    someone saved other notes since and these would replace them: compared under the patient's lock."""
    notes = notes.strip()
    with transaction.atomic():
        lock_live_patient(appointment.patient_id)
        current = Appointment.objects.select_for_update(of=("self",)).get(pk=appointment.pk)
        if drawn and drawn != notes_version(current.notes) and notes != current.notes.strip():
            raise PreconditionFailed(
                ErrorCode.RECORD_CHANGED, "Someone else changed these notes since the page was opened: nothing saved."
            )
        current.notes = notes
        current.save(update_fields=["notes", "updated_at"])
    appointment.notes = current.notes
    return current
