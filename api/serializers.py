"""Request and response shapes. They check types and formats only; every rule lives in the services.

`*In` serializers read a request body, `*Out` serializers write a response.
Times go out in the clinic's offset; ids are strings.
"""

from __future__ import annotations

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from api.fields import (
    AwareDateTimeField,
    CodeField,
    IdField,
    InputSerializer,
    LocalDateTimeField,
    OffsetDateTimeField,
    PhoneField,
    StrictBooleanField,
    StrictCharField,
    StrictDateField,
)
from clinic.models import AppointmentStatus, ConditionStatus, HistorySource, ReminderChannel
from clinic.selectors import appointment_sequence
from scheduler.lifecycle import EVENTS
from scheduler.recheck import review_reasons_in_zone

# --- Catalogue, clinics, practitioners ------------------------------------------------------


class OrganisationOut(serializers.Serializer):
    id = serializers.CharField()
    code = serializers.CharField()
    name = serializers.CharField()


class ClinicOut(serializers.Serializer):
    id = serializers.CharField()
    code = serializers.CharField()
    name = serializers.CharField()
    timezone = serializers.CharField(help_text="IANA zone; times for this clinic come back in its offset.")
    organisation = serializers.CharField(source="organisation_id", help_text="The organisation (id) it belongs to.")


class ProcedureOut(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    duration_minutes = serializers.IntegerField()
    bookable = serializers.BooleanField()


class RelatedCodesField(serializers.ListField):
    """The codes of a many-to-many catalogue relation (prefetched by the view)."""

    def __init__(self, **kwargs):
        super().__init__(child=serializers.CharField(), read_only=True, **kwargs)

    def get_attribute(self, instance):
        return sorted(item.code for item in getattr(instance, self.source).all())


class PractitionerOut(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    clinic = serializers.CharField(source="clinic_id")
    procedures = RelatedCodesField(help_text="Codes of the procedures this practitioner does.")


# --- Patients ------------------------------------------------------------------------------------


class PatientUpdateIn(InputSerializer):
    first_name = StrictCharField(max_length=100, required=False, one_line=True)
    last_name = StrictCharField(max_length=100, required=False, one_line=True)
    date_of_birth = StrictDateField(required=False, allow_null=True)
    email = StrictCharField(max_length=254, required=False, allow_blank=True, one_line=True)
    phone = PhoneField(required=False, help_text="E.164, e.g. +447911123456")
    reminder_channels = serializers.ListField(
        child=serializers.ChoiceField(choices=ReminderChannel.choices),
        required=False,
        max_length=2,
        help_text="How the patient wants reminders: a subset of email, sms.",
    )
    sms_consent = StrictBooleanField(required=False)


class PatientCreateIn(PatientUpdateIn):
    clinic = IdField(required=False, help_text="Clinic id (or code). May be left out by a caller with one clinic.")
    first_name = StrictCharField(max_length=100, one_line=True)
    last_name = StrictCharField(max_length=100, one_line=True)
    confirm_new = StrictBooleanField(
        required=False,
        help_text="true: register even though the organisation has a likely duplicate (the 409 "
        "possible-duplicate's candidates were checked and are other people).",
    )


class PatientOut(serializers.Serializer):
    id = serializers.CharField()
    clinic = serializers.CharField(source="clinic_id", help_text="The patient's home clinic.")
    organisation = serializers.CharField(
        source="organisation_id",
        help_text="The organisation (id) whose clinics share this patient's record.",
    )
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    date_of_birth = serializers.DateField(allow_null=True)
    email = serializers.CharField()
    phone = serializers.CharField()
    reminder_channels = serializers.ListField(child=serializers.ChoiceField(choices=ReminderChannel.choices))
    sms_consent = serializers.BooleanField()


class MergeIntakeDecisionIn(InputSerializer):
    condition = CodeField(help_text="Condition code of a line in the 409's `conflicts`.")
    area = CodeField(required=False, allow_null=True)
    status = serializers.ChoiceField(choices=ConditionStatus.choices, help_text="The status the survivor keeps.")


class MergeIn(InputSerializer):
    into = IdField(help_text="The surviving record (id), of the same organisation; this record becomes its tombstone.")
    intake = MergeIntakeDecisionIn(
        many=True,
        required=False,
        max_length=200,
        help_text="For each intake line the two records disagree on (a 409 merge-conflict lists them): the status "
        "to keep. Lines only one record has, or both agree on, are kept without asking.",
    )


# --- A patient's history ------------------------------------------------------------------------


class ProcedureRecordIn(InputSerializer):
    procedure = CodeField(help_text="Procedure code, e.g. botox.")
    performed_at = AwareDateTimeField(help_text="When it was done, with a UTC offset.")
    area = CodeField(required=False, allow_null=True, help_text="Treatment area code, e.g. face.")
    source = serializers.ChoiceField(
        choices=HistorySource.choices,
        required=False,
        help_text="clinic (done here) or reported (by the patient); default reported.",
    )
    notes = StrictCharField(required=False, allow_blank=True, max_length=2000)
    clinic = IdField(
        required=False,
        allow_null=True,
        help_text="The clinic recording it (id or code), one of yours and of the patient's organisation: its zone "
        "gives the procedure its day. Left out (or null): the patient's home clinic when it is yours, else your one "
        "clinic of the patient's organisation, else the home clinic.",
    )


class ProcedureRecordOut(serializers.Serializer):
    id = serializers.CharField()
    procedure = serializers.CharField(source="procedure_id")
    # In the offset of the clinic whose day it is: the visit's, else the one that recorded it.
    performed_at = LocalDateTimeField(tz_source="dating_clinic")
    area = serializers.CharField(source="area_id", allow_null=True)
    source = serializers.ChoiceField(choices=HistorySource.choices)
    notes = serializers.CharField()
    appointment = serializers.CharField(
        source="appointment_id", allow_null=True, help_text="The appointment this record completed, if any."
    )


class MedicationCourseIn(InputSerializer):
    drug = CodeField(help_text="Medication code, e.g. isotretinoin.")
    started_on = StrictDateField()
    ended_on = StrictDateField(required=False, allow_null=True, help_text="Null or left out while ongoing.")
    notes = StrictCharField(required=False, allow_blank=True, max_length=2000)


class MedicationCourseEndIn(InputSerializer):
    whole_on_patch = True  # read whole by its PATCH: `ended_on` is required (api.schema.AutoSchema)

    ended_on = StrictDateField(help_text="The day the course ended.")


class MedicationCourseOut(serializers.Serializer):
    id = serializers.CharField()
    drug = serializers.CharField(source="drug_id")
    started_on = serializers.DateField()
    ended_on = serializers.DateField(allow_null=True)
    notes = serializers.CharField()


class ConditionLineIn(InputSerializer):
    condition = CodeField(help_text="Condition code, e.g. eczema.")
    status = serializers.ChoiceField(choices=ConditionStatus.choices)
    area = CodeField(required=False, allow_null=True)
    noted_on = StrictDateField(required=False, allow_null=True)


class ConditionLineOut(serializers.Serializer):
    condition = serializers.CharField(source="condition_id")
    status = serializers.ChoiceField(choices=ConditionStatus.choices)
    area = serializers.CharField(source="area_id", allow_null=True)
    noted_on = serializers.DateField(allow_null=True)


# --- Booking ----------------------------------------------------------------------------------------


class BookingIn(InputSerializer):
    patient = IdField()
    procedure = CodeField()
    start = AwareDateTimeField(help_text="With a UTC offset; whole minutes.")
    area = CodeField(required=False, allow_null=True)
    practitioner = IdField(
        required=False,
        allow_null=True,
        help_text="Left out: the first practitioner who does the procedure and is free.",
    )
    clinic = IdField(
        required=False,
        allow_null=True,
        help_text="Where the appointment takes place (id or code): one of your clinics, of the patient's "
        "organisation, and the practitioner's. Left out: the practitioner's clinic, else the patient's "
        "home clinic when it is yours, else your one clinic of the patient's organisation.",
    )


class RescheduleIn(InputSerializer):
    start = AwareDateTimeField()
    practitioner = IdField(required=False, allow_null=True, help_text="Left out: the same practitioner.")
    reason = StrictCharField(required=False, allow_blank=True, max_length=2000, lines=True)


class RescheduleCheckIn(InputSerializer):
    start = AwareDateTimeField()
    practitioner = IdField(required=False, allow_null=True, help_text="Left out: the same practitioner.")


class CancelIn(InputSerializer):
    reason = StrictCharField(required=False, allow_blank=True, max_length=2000, lines=True)


class ClearIn(InputSerializer):
    reason = StrictCharField(max_length=2000, lines=True, help_text="Why the relative contraindications are accepted.")


class EmptyIn(InputSerializer):
    """No fields: an action that needs nothing but the appointment."""


class ConflictOut(serializers.Serializer):
    id = serializers.CharField()
    kind = serializers.ChoiceField(choices=["procedure", "medication_course", "condition", "appointment"])
    code = serializers.CharField()
    at = serializers.CharField(allow_null=True, help_text="Time (or date, for a medication course) of that event.")
    clinic = serializers.CharField(
        allow_null=True,
        help_text="The clinic (id) where that procedure was done or is booked, which may be another clinic of "
        "the organisation; null for reported history, medications and the intake.",
    )


class ViolationOut(serializers.Serializer):
    code = serializers.CharField()
    kind = serializers.ChoiceField(choices=["interval", "contraindication", "availability"])
    severity = serializers.ChoiceField(choices=["block", "absolute", "relative", "warn"])
    message = serializers.CharField()
    rule = serializers.CharField(allow_null=True, help_text="The rule's id; null for availability.")
    source = serializers.CharField(allow_null=True, help_text="Where the rule comes from.")
    conflicts_with = ConflictOut(allow_null=True)
    earliest_allowed = OffsetDateTimeField(allow_null=True, help_text="The earliest start this one rule allows.")


class MergeWarningOut(ViolationOut):
    appointment = serializers.CharField(help_text="The survivor's future appointment (id) that breaks the rule.")
    # Only interval rules warn (contraindications are absolute or relative); its own choices also keep the
    # schema's enum names (ViolationOut's `kind` shared with a second component would get a hashed name).
    kind = serializers.ChoiceField(choices=["interval"])


class MergeOut(PatientOut):
    warnings = MergeWarningOut(
        many=True,
        help_text="Warn-severity rules the survivor's future active appointments now break against an event of the "
        "other record (two Botox on one day, one booked on each): they change no status, so staff decide.",
    )


class SlotOut(serializers.Serializer):
    start = OffsetDateTimeField()
    end = OffsetDateTimeField()
    practitioner = serializers.CharField()
    practitioner_name = serializers.CharField()


class ReminderOut(serializers.Serializer):
    kind = serializers.CharField()
    channel = serializers.ChoiceField(choices=ReminderChannel.choices)
    due_at = OffsetDateTimeField()
    status = serializers.CharField()


class AppointmentOut(serializers.Serializer):
    id = serializers.CharField()
    patient = serializers.CharField(source="patient_id")
    procedure = serializers.CharField(source="procedure_id")
    practitioner = serializers.CharField(source="practitioner_id")
    clinic = serializers.CharField(source="clinic_id")
    start = LocalDateTimeField(source="start_at", tz_source="clinic")
    end = LocalDateTimeField(source="end_at", tz_source="clinic")
    area = serializers.CharField(source="area_id", allow_null=True)
    status = serializers.ChoiceField(choices=AppointmentStatus.choices)
    review_reasons = serializers.SerializerMethodField(
        help_text="While the status is needs_review: what a later change made it break (a refusal's violations)."
    )
    sequence = serializers.SerializerMethodField(
        help_text="The appointment's change count as this answer shows it, the count its webhook events carry "
        "(docs/reminders.md): an event whose `sequence` is no higher is older than this answer. Gaps are normal "
        "for an endpoint that does not take every event."
    )

    @extend_schema_field(ViolationOut(many=True))
    def get_review_reasons(self, appointment) -> list[dict]:
        return review_reasons_in_zone(appointment)

    def get_sequence(self, appointment) -> int:
        # A list reads it with its rows (`with_sequence`); one appointment, in one statement of its own.
        counted = getattr(appointment, "change_sequence", None)
        return counted if counted is not None else appointment_sequence(appointment.pk)


class AppointmentDetailOut(AppointmentOut):
    reminders = ReminderOut(many=True, help_text="Care reminders planned for this appointment.")


RULEBOOK_VERSION_HELP = (
    "The version of the patient's organisation's rule book the answer was checked against: "
    "`d<defaults>.o<organisation>` (docs/rules.md)."
)


class BookingOut(AppointmentOut):
    warnings = ViolationOut(many=True, help_text="Warn-severity rules: they never refuse a booking.")
    rulebook_version = serializers.CharField(help_text=RULEBOOK_VERSION_HELP)


class EligibilityIn(BookingIn):
    pass


class AvailabilityQuery(serializers.Serializer):
    """Query parameters of GET /availability/ (others, such as page, are left to the paginator)."""

    patient = IdField(help_text="Patient id.")
    procedure = CodeField(help_text="Procedure code.")
    clinic = IdField(
        required=False,
        help_text="Clinic id or code: one of yours, of the patient's organisation. Left out: the "
        "practitioner's, else the patient's home clinic.",
    )
    practitioner = IdField(required=False, help_text="Only this practitioner.")
    area = CodeField(required=False, help_text="Treatment area code.")


# `from` is a Python keyword, so these two are declared under their parameter names this way.
AvailabilityQuery._declared_fields["from"] = AwareDateTimeField(
    required=False, help_text="Window start, with an offset (default: now)."
)
AvailabilityQuery._declared_fields["to"] = AwareDateTimeField(
    required=False, help_text="Window end, with an offset (default: 14 days after the start; at most 92 days)."
)


class EligibilityOut(serializers.Serializer):
    eligible = serializers.BooleanField(help_text="False exactly when booking would get a 409.")
    status = serializers.ChoiceField(choices=["confirmed", "pending_clearance", "refused"])
    violations = ViolationOut(many=True)
    warnings = ViolationOut(many=True)
    earliest_eligible_start = OffsetDateTimeField(allow_null=True)
    next_available_slot = SlotOut(allow_null=True)
    rulebook_version = serializers.CharField(help_text=RULEBOOK_VERSION_HELP)


# --- Webhook subscriptions ------------------------------------------------------------------------------

WEBHOOK_EVENTS = list(EVENTS)


# The shape of a webhook URL (published as its pattern); whether it may be used (https only in production, a
# public host) is the service's to say: a 400 `invalid_webhook_endpoint`.
# Only ASCII the URL syntax allows (a Unicode host in its xn-- form, other characters %-encoded): the same
# set in the published (ECMAScript) pattern and in Python's `re`, and nothing input stripping removes.
# (A pattern using \s differs between the two: U+0085 is whitespace to Python, not to ECMAScript.)
WEBHOOK_URL = RegexValidator(
    r"^https?://[A-Za-z0-9._~%!$&'()*+,;=:@\[\]-]+([/?#][\u0021-\u007e]*)?$",
    message="Give an absolute https:// URL.",
)
WEBHOOK_URL_HELP = (
    "https:// URL, with no user name or password; it may not resolve to a private, loopback or link-local address."
)


def _no_line_break(value: str) -> None:
    # Python's `$` also matches before a final "\n", which the published pattern does not allow.
    if "\n" in value:
        raise ValidationError("Give an absolute https:// URL.")


class WebhookUrlField(StrictCharField):
    """Taken exactly as sent (not trimmed), so the published pattern says exactly what is accepted."""

    trim = ""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 500)
        kwargs.setdefault("help_text", WEBHOOK_URL_HELP)
        super().__init__(validators=[WEBHOOK_URL, _no_line_break], **kwargs)


class WebhookEndpointUpdateIn(InputSerializer):
    url = WebhookUrlField(required=False)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WEBHOOK_EVENTS),
        required=False,
        max_length=len(WEBHOOK_EVENTS),
        help_text="Event types to send; empty: all.",
    )
    description = StrictCharField(required=False, allow_blank=True, max_length=200)
    active = StrictBooleanField(required=False, help_text="false pauses deliveries; true resumes them.")

    def validate_events(self, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))  # a set of events: one named twice counts once, in the order first given


class WebhookEndpointIn(WebhookEndpointUpdateIn):
    url = WebhookUrlField()


class WebhookEndpointOut(serializers.Serializer):
    id = serializers.CharField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.ChoiceField(choices=WEBHOOK_EVENTS))
    description = serializers.CharField()
    active = serializers.BooleanField(source="is_active")
    created_at = OffsetDateTimeField()
    previous_secret_expires_at = OffsetDateTimeField(
        allow_null=True, help_text="While a rotated-out secret still signs (beside the new one): until when."
    )


class WebhookEndpointCreatedOut(WebhookEndpointOut):
    secret = serializers.CharField(help_text="The signing secret (whsec_...). Shown only now: keep it.")


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {"invalid": "Must be a whole number."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class SecretRotationIn(InputSerializer):
    overlap_minutes = StrictIntegerField(
        required=False,
        min_value=0,
        max_value=7 * 24 * 60,
        help_text="How long the old secret keeps signing beside the new one (default 1440, a day; 0: stop now).",
    )


class SecretRotationOut(serializers.Serializer):
    id = serializers.CharField()
    secret = serializers.CharField(help_text="The new signing secret. Shown only now: keep it.")
    previous_secret_expires_at = OffsetDateTimeField(allow_null=True)


class WebhookDeliveryOut(serializers.Serializer):
    id = serializers.CharField(help_text="The delivery id (the webhook-id header).")
    event = serializers.CharField()
    event_id = serializers.CharField(allow_null=True, help_text="The same for every delivery of one event.")
    sequence = serializers.IntegerField(allow_null=True, help_text="The appointment's change count at the event.")
    appointment = serializers.CharField()
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    response_code = serializers.IntegerField(allow_null=True, help_text="The HTTP status the endpoint last answered.")
    last_error = serializers.CharField()
    created_at = OffsetDateTimeField()
    due_at = OffsetDateTimeField()
    sent_at = OffsetDateTimeField(allow_null=True)


# --- Problem documents (schema only) ------------------------------------------------------------------


class ProblemOut(serializers.Serializer):
    type = serializers.CharField(help_text="URN naming the kind of problem.")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField(help_text="Stable machine-readable code.")
    instance = serializers.CharField(required=False, help_text="The path that was asked for.")
    retry_after = serializers.IntegerField(required=False, help_text="Seconds to wait (429 only).")


class ValidationProblemOut(ProblemOut):
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Messages per field; nested fields as dotted paths.",
    )


class DuplicateCandidateOut(serializers.Serializer):
    id = serializers.CharField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    date_of_birth = serializers.DateField(allow_null=True)
    reasons = serializers.ListField(
        child=serializers.ChoiceField(choices=["date_of_birth_and_name", "phone", "email"]),
        help_text="Why it matches: the same birth date and a similar name, the same phone, the same e-mail.",
    )


class DuplicateProblemOut(ProblemOut):
    """A 409 possible-duplicate has `candidates`; a 409 request-in-progress (a duplicate Idempotency-Key) has not."""

    candidates = DuplicateCandidateOut(many=True, required=False)


class MergeConflictOut(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=["intake", "appointment_overlap"],
        help_text="intake: a line both records have with different statuses (decide it in `intake`); "
        "appointment_overlap: two active appointments at the same time (cancel or move one first).",
    )
    condition = serializers.CharField(required=False)
    area = serializers.CharField(allow_null=True, required=False)
    statuses = serializers.DictField(
        child=serializers.ChoiceField(choices=ConditionStatus.choices),
        required=False,
        help_text="The status each record (by id) gives this line.",
    )
    appointments = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="The two overlapping appointments (ids)."
    )


class MergeProblemOut(ProblemOut):
    """A 409 merge-conflict has `conflicts` (intake lines the two records disagree on); a 409
    request-in-progress has not."""

    conflicts = MergeConflictOut(many=True, required=False)


class RefusalProblemOut(ProblemOut):
    """A booking refusal (code booking_refused) has all of these; other 409s (a status that does not allow
    the action, a duplicate request still in progress) have none of them."""

    violations = ViolationOut(many=True, required=False)
    warnings = ViolationOut(many=True, required=False)
    earliest_eligible_start = OffsetDateTimeField(
        allow_null=True,
        required=False,
        help_text="Earliest start at or after the one asked for that every interval rule allows.",
    )
    next_available_slot = SlotOut(
        allow_null=True, required=False, help_text="First bookable slot from then on, within 90 days."
    )
    rulebook_version = serializers.CharField(required=False, help_text=RULEBOOK_VERSION_HELP)
