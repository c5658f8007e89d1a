"""Reminder plans (templates as data), the outbox, webhook endpoints, opt-outs and opt-ins.

Templates are what a clinic administrator edits in the admin; the outbox holds
one row per message to deliver (to a patient or a booking platform), written in
the same transaction as the booking change that causes it.
"""

from __future__ import annotations

import base64
import secrets
import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from clinic.models import Appointment, AppointmentStatus, Patient, Practitioner, ProcedureType, ReminderChannel
from core.plain_text import validate_lines, validate_single_line
from reminders import channels, longest, texts
from scheduler.lifecycle import EVENTS


class MessageKind(models.TextChoices):
    CONFIRMATION = "confirmation", "Booking confirmation"
    REMINDER = "reminder", "Appointment reminder"
    PRE_CARE = "pre_care", "Pre-care"
    POST_CARE = "post_care", "Post-care"
    RESCHEDULED = "rescheduled", "Change notice: moved"
    CANCELLED = "cancelled", "Change notice: cancelled"
    RECALL = "recall", "Recall: due for the next treatment"
    WEBHOOK = "webhook", "Webhook event"


# Nothing but notices reaches the patient while a clinician must clear the booking or it needs review.
HOLDING_STATUSES = (AppointmentStatus.PENDING_CLEARANCE, AppointmentStatus.NEEDS_REVIEW)

# The kinds whose text names the appointment's time: what the patient believes follows them.
TIME_NAMING_KINDS = (MessageKind.CONFIRMATION, MessageKind.REMINDER, MessageKind.PRE_CARE, MessageKind.RESCHEDULED)


class Anchor(models.TextChoices):
    EVENT = "event", "When the booking change happens"
    START = "start", "Appointment start"
    COMPLETION = "completion", "Treatment completion"


# Which anchors make sense for which kind; anything else is refused in `clean`.
KIND_ANCHORS = {
    MessageKind.CONFIRMATION: {Anchor.EVENT},
    MessageKind.RESCHEDULED: {Anchor.EVENT},
    MessageKind.CANCELLED: {Anchor.EVENT},
    MessageKind.REMINDER: {Anchor.START},
    MessageKind.PRE_CARE: {Anchor.START},
    MessageKind.POST_CARE: {Anchor.COMPLETION},
    # Planned by plans.recalls at the next treatment's ideal date, counted from the completion.
    MessageKind.RECALL: {Anchor.COMPLETION},
}


class OffsetUnit(models.TextChoices):
    MINUTES = "minutes", "minutes (elapsed)"
    HOURS = "hours", "hours (elapsed)"
    DAYS = "days", "days (calendar, same local time)"


class TemplateOrigin(models.TextChoices):
    SOURCED = "sourced", "Sourced default (from the reference texts)"
    CLINIC = "clinic", "Clinic template (not from the sources; review and edit)"


class Channel(models.TextChoices):
    """Where a message goes: a patient's channel (the values of clinic.models.ReminderChannel, the
    patient's choice) or a platform's webhook. Compare across the two only through PATIENT_CHANNELS."""

    EMAIL = ReminderChannel.EMAIL.value, "E-mail"
    SMS = ReminderChannel.SMS.value, "SMS"
    WEBHOOK = "webhook", "Webhook"


# A delivery channel to the patient's own choice of it.
PATIENT_CHANNELS = {Channel.EMAIL: ReminderChannel.EMAIL, Channel.SMS: ReminderChannel.SMS}


class ReminderTemplate(models.Model):
    """One message of a procedure's plan: what to say, on which channels, and when.

    Texts are Django templates rendered when the message is sent, so a
    rescheduled appointment's reminder always names the current time.
    """

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=[c for c in MessageKind.choices if c[0] != "webhook"])
    procedure = models.ForeignKey(
        ProcedureType,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Leave empty for a message every booking gets (confirmation, day-before reminder).",
    )
    anchor = models.CharField(max_length=20, choices=Anchor.choices)
    offset_value = models.IntegerField(
        default=0, help_text="Negative means before the anchor (pre-care), positive after it (post-care)."
    )
    offset_unit = models.CharField(max_length=10, choices=OffsetUnit.choices, default=OffsetUnit.HOURS)
    send_if_late = models.BooleanField(
        default=False,
        help_text="When the booking is made after the due time: send at once (care instructions) "
        "instead of leaving it out (a day-before reminder is pointless then).",
    )
    # Typed or pasted by people: a control character from a word processor (a vertical tab) would make a text UCS-2
    # and an e-mail header fail (core.plain_text).
    email_subject = models.CharField(max_length=200, blank=True, validators=[validate_single_line])
    email_text = models.TextField(
        blank=True, validators=[validate_lines], help_text="Plain-text body (Django template syntax)."
    )
    email_html = models.TextField(
        blank=True, validators=[validate_lines], help_text="HTML body; leave empty to derive it from the text."
    )
    sms_text = models.TextField(
        blank=True,
        validators=[validate_lines],
        help_text="At most 3 SMS segments (459 plain characters). Never a diagnosis, procedure or drug name.",
    )
    attach_ics = models.BooleanField(default=False, help_text="Attach the appointment as an iCalendar file.")
    origin = models.CharField(max_length=10, choices=TemplateOrigin.choices, default=TemplateOrigin.CLINIC)
    source = models.CharField(max_length=200, blank=True, help_text="Reference text(s) a sourced default cites.")
    is_active = models.BooleanField(default=True)
    default_key = models.SlugField(
        max_length=80,
        unique=True,
        null=True,
        blank=True,
        editable=False,
        help_text="Which shipped default this started as; setup never overwrites an edited template.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "scheduler_remindertemplate"  # created by the scheduler app; moved without renaming
        ordering = ["procedure_id", "anchor", "offset_value", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=[k for k in MessageKind.values if k != "webhook"]),
                name="reminder_template_kind_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def has_email(self) -> bool:
        return bool(self.email_subject.strip() and self.email_text.strip())

    @property
    def has_sms(self) -> bool:
        return bool(self.sms_text.strip())

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        allowed = KIND_ANCHORS.get(self.kind)
        if allowed and self.anchor not in allowed:
            errors.setdefault("anchor", []).append(
                f"A {self.get_kind_display().lower()} is anchored to: "
                + ", ".join(Anchor(a).label.lower() for a in allowed)
                + "."
            )
        if self.anchor == Anchor.START and self.offset_value > 0:
            errors.setdefault("offset_value", []).append("A message anchored to the start must come before it.")
        if self.anchor == Anchor.COMPLETION and self.offset_value < 0:
            errors.setdefault("offset_value", []).append("A message anchored to completion cannot come before it.")
        if not self.has_email and not self.has_sms:
            errors.setdefault("email_text", []).append("Give an e-mail (subject and text) or an SMS text, or both.")
        if bool(self.email_subject.strip()) != bool(self.email_text.strip()):
            errors.setdefault("email_subject", []).append("An e-mail needs both a subject and a text body.")
        for field in ("email_subject", "email_text", "email_html", "sms_text"):
            problem = texts.template_problem(getattr(self, field))
            if problem:
                errors.setdefault(field, []).append(problem)
        if self.sms_text and "sms_text" not in errors:
            # The words as written, folded as a text is when it goes (texts.sms_fold: "Retin-A" typed with a
            # non-breaking hyphen is refused here, not at every send); the length as rendered (the placeholders and
            # both branches of an {% if %} are not what goes). Against the clinics' names too in the admin's form
            # (ReminderTemplateForm), not here: the shipped texts load with this check, and a clinic's name is that
            # clinic's to mend.
            problem = texts.sms_words_problem(texts.sms_fold(self.sms_text))
            if not problem:
                problem = longest.template_own_problem(self.sms_text)
            if problem:
                errors.setdefault("sms_text", []).append(problem)
        if errors:
            raise ValidationError(errors)


class TemplateRollout(models.Model):
    """A care text planned for the visits booked before it could reach them: added, switched on, given another
    procedure, moment or channel (reminders.services.template_rollout_start, from the template's admin). Done in
    chunks by Celery (or in-process without a broker); `cursor` is the last visit done, so a run a dead worker left
    half-way resumes where it was (the beat's `reminders.resume_template_rollouts`). The admin shows its progress."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    template = models.ForeignKey(ReminderTemplate, on_delete=models.CASCADE, related_name="+")
    cause = models.CharField(max_length=300)
    created_at = models.DateTimeField()
    cursor = models.UUIDField(null=True, blank=True, editable=False)
    visits_done = models.PositiveIntegerField(default=0)
    messages_planned = models.PositiveIntegerField(default=0)
    progressed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Visits whose planning failed on their own ({"appointment", "error", "at"}): left as they were, to look at.
    failures = models.JSONField(default=list, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "care text planned for visits booked"
        verbose_name_plural = "care texts planned for visits booked"

    def __str__(self) -> str:
        state = "finished" if self.finished_at else "running"
        return f"{self.cause} ({state}, {self.visits_done} visits)"


class WebhookEndpoint(models.Model):
    """Where a booking platform (an API client) wants appointment events POSTed."""

    EVENTS = EVENTS  # the lifecycle's one list (scheduler.lifecycle)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey("clinic.ApiClient", on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=500)
    # Stored in clear: the service must sign with it. It is shown once at creation and in the admin.
    secret = models.CharField(max_length=80, editable=False)
    # A rotated-out secret keeps signing (beside the new one) until this moment, so a platform can switch
    # its verifier over without dropping a delivery (Standard Webhooks allows several signatures).
    previous_secret = models.CharField(max_length=80, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    events = models.JSONField(default=list, blank=True, help_text="Event types to send; empty means all.")
    description = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "scheduler_webhookendpoint"  # created by the scheduler app; moved without renaming
        ordering = ["client__name", "url"]

    def __str__(self) -> str:
        return f"{self.client} → {self.url}"

    def save(self, *args, **kwargs):
        if not self.secret:
            self.secret = new_webhook_secret()
        super().save(*args, **kwargs)

    def wants(self, event: str) -> bool:
        return not self.events or event in self.events

    def signing_secrets(self, now) -> list[str]:
        """The secrets that sign a delivery now: the current one, and a rotated-out one in its overlap window."""
        if self.previous_secret and self.previous_secret_expires_at and now < self.previous_secret_expires_at:
            return [self.secret, self.previous_secret]
        return [self.secret]

    def clean(self) -> None:
        problem = channels.webhook_url_problem(self.url)
        if problem:
            raise ValidationError({"url": problem})
        if not isinstance(self.events, list) or any(e not in self.EVENTS for e in self.events):
            raise ValidationError({"events": f"Events must be a list drawn from {list(self.EVENTS)}."})
        if len(set(self.events)) != len(self.events):
            raise ValidationError({"events": "Each event may be given once."})


def new_webhook_secret() -> str:
    # The Standard Webhooks form: "whsec_" and a base64 256-bit key (see channels.py).
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class OutboxStatus(models.TextChoices):
    HELD = "held", "Held (pending clearance)"
    PENDING = "pending", "Pending"
    SENDING = "sending", "Claimed for sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed (gave up)"
    CANCELLED = "cancelled", "Cancelled"
    SKIPPED = "skipped", "Skipped"


UNSENT_STATUSES = (OutboxStatus.HELD, OutboxStatus.PENDING)
FINAL_STATUSES = (OutboxStatus.SENT, OutboxStatus.FAILED, OutboxStatus.CANCELLED, OutboxStatus.SKIPPED)

# Handed to the provider at least once: sent; or sent and then reported undelivered (reports.delivery_reported), and
# perhaps waiting to go again since (a retry keeps `sent_at`, which only a send sets). The patient may have heard it
# (the booking was theirs; a handset off for a day gets the text later): planning a change notice counts it as told,
# as it counts a message in doubt.
HANDED_OVER = Q(sent_at__isnull=False)
# Handed over, or being sent now (claimed: it may be in the provider's hands already).
HANDED_OVER_OR_GOING = HANDED_OVER | Q(status=OutboxStatus.SENDING)

# In a sent e-mail's payload: the practitioner it named (reminders.dispatch._told); in a move notice's: the one the
# patient had heard of, when that is not the practitioner now (reminders.content names them).
TOLD_PRACTITIONER = "told_practitioner"
FROM_PRACTITIONER = "from_practitioner"


class OutboxMessage(models.Model):
    """One message to deliver: a patient e-mail or SMS, or one webhook delivery.

    Rows are claimed (status `sending`, a fresh `claim_token`, a lease until
    `claimed_until`) by a dispatcher and finished by the send task holding the
    row lock; see reminders/dispatch.py.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Looked up by `outbox_appointment_kind`, which it leads; an index of its own would cost every insert (0010).
    appointment = models.ForeignKey(
        Appointment, on_delete=models.CASCADE, related_name="outbox_messages", db_index=False
    )
    kind = models.CharField(max_length=20, choices=MessageKind.choices)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    # A reminder has a template and no endpoint, a webhook delivery the other way round: each key's index holds
    # only the rows that have one (`outbox_template`, `outbox_endpoint`), not a NULL for every other row.
    template = models.ForeignKey(
        ReminderTemplate, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages", db_index=False
    )
    endpoint = models.ForeignKey(
        WebhookEndpoint, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries", db_index=False
    )
    event = models.CharField(max_length=40, blank=True, help_text="Webhook event type.")
    anchor_at = models.DateTimeField(null=True, blank=True, help_text="The instant the due time was computed from.")
    due_at = models.DateTimeField(help_text="When it may go (next attempt, after a failure).")
    status = models.CharField(max_length=10, choices=OutboxStatus.choices, default=OutboxStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    provider_id = models.CharField(max_length=200, blank=True)
    recipient = models.CharField(max_length=500, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    claimed_until = models.DateTimeField(null=True, blank=True)
    # When the row was last claimed: kept after its claim ends (what dates an attempt whose sender stopped).
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Set when a claim whose lease ran out is claimed again: its sender stopped, perhaps after the provider
    # accepted the message. The next sender asks the provider before sending (dispatch._settle_doubt).
    in_doubt = models.BooleanField(default=False, db_default=False, editable=False)
    # When the attempt in doubt began (the claim of the sender that stopped, the first such while in doubt): a row
    # the provider is found to have had went then, not when it was found (its `sent_at`, which orders what the
    # patient last heard: reminders.services.last_told_start). Cleared when the doubt is.
    in_doubt_since = models.DateTimeField(null=True, blank=True, editable=False)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "scheduler_outboxmessage"  # created by the scheduler app; moved without renaming
        ordering = ["due_at", "id"]
        verbose_name = "outbox message"
        indexes = [
            # Whole, not partial on the unsent statuses: the claim runs as a prepared statement whose generic plan
            # has `status = $1`, from which PostgreSQL cannot prove a partial index's condition (it would scan
            # the table). A key's `IS NOT NULL` condition it can prove from any `= $1` (reminders 0012).
            models.Index(fields=["status", "due_at"], name="outbox_status_due"),
            models.Index(fields=["appointment", "kind"], name="outbox_appointment_kind"),
            models.Index(fields=["template"], name="outbox_template", condition=Q(template__isnull=False)),
            models.Index(fields=["endpoint"], name="outbox_endpoint", condition=Q(endpoint__isnull=False)),
            # The providers' delivery reports name a text or e-mail by its id (reports.delivery_reported): only
            # sent ones have one, so a booking's unsent rows add nothing to it. The look-up repeats the condition as
            # literals, which PostgreSQL can match under a prepared statement's generic plan (a `$1` it cannot).
            models.Index(
                fields=["provider_id"],
                name="outbox_provider_id",
                condition=Q(channel__in=["email", "sms"], provider_id__gt=""),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=OutboxStatus.values), name="outbox_status_valid"),
            models.CheckConstraint(condition=Q(channel__in=Channel.values), name="outbox_channel_valid"),
            # At most one unsent copy of a template per channel: rescheduling moves it, never duplicates it.
            models.UniqueConstraint(
                fields=["appointment", "template", "channel"],
                condition=Q(status__in=["held", "pending"]) & Q(template__isnull=False),
                name="outbox_one_unsent_per_template_channel",
            ),
        ]

    def __str__(self) -> str:
        what = self.event if self.channel == Channel.WEBHOOK else self.get_kind_display()
        return f"{what} by {self.channel} due {self.due_at:%Y-%m-%d %H:%M} UTC ({self.status})"


class OptOutVia(models.TextChoices):
    EMAIL_LINK = "email_link", "Unsubscribe link in an e-mail"
    LIST_UNSUBSCRIBE = "list_unsubscribe", "One-click unsubscribe (mail client)"
    SMS_STOP = "sms_stop", "SMS reply STOP"
    SMS_PROVIDER = "sms_provider", "SMS reply STOP, reported by the SMS provider"
    EMAIL_PROVIDER = "email_provider", "Spam complaint or unsubscribe, reported by the e-mail provider"
    PATIENT_PAGE = "patient_page", "The patient's own appointment page"
    DESK = "desk", "Staff at the front desk"
    API = "api", "A booking platform (API)"
    ADMIN = "admin", "The admin site"
    MERGE = "merge", "Records merged: texts only where both records had agreed to them"


class ContactOptOut(models.Model):
    """A record that a patient withdrew consent for a channel, and how. Append-only."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="opt_outs")
    channel = models.CharField(max_length=10, choices=[(c.value, c.label) for c in (Channel.EMAIL, Channel.SMS)])
    via = models.CharField(max_length=20, choices=OptOutVia.choices)
    at = models.DateTimeField()
    detail = models.CharField(max_length=200, blank=True)
    was_on = models.BooleanField(
        default=False,
        help_text="The channel reached the patient until this (chosen and, for SMS, consented to): what a START "
        "reply may undo. False for opt-outs recorded before it was kept.",
    )

    class Meta:
        db_table = "scheduler_contactoptout"  # created by the scheduler app; moved without renaming
        ordering = ["-at"]
        verbose_name = "contact opt-out"

    def __str__(self) -> str:
        return f"{self.patient} opted out of {self.channel} ({self.get_via_display()})"


class OptInVia(models.TextChoices):
    PATIENT_PAGE = "patient_page", "The patient's own appointment page"
    SMS_START = "sms_start", "SMS reply START"
    DESK = "desk", "Staff at the front desk"
    API = "api", "A booking platform (API)"
    ADMIN = "admin", "The admin site"


class ContactOptIn(models.Model):
    """A record that a patient switched a channel (back) on, how, and the words they agreed to. Append-only.

    The other half of ContactOptOut: consent to SMS is given by ticking `wording`, kept as shown.
    """

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="opt_ins")
    channel = models.CharField(max_length=10, choices=[(c.value, c.label) for c in (Channel.EMAIL, Channel.SMS)])
    via = models.CharField(max_length=20, choices=OptInVia.choices)
    at = models.DateTimeField()
    wording = models.TextField(
        blank=True,
        help_text="The consent text the patient agreed to, as shown to them (or as they texted it); blank where "
        "it is not known (a platform's own form).",
    )
    detail = models.CharField(
        max_length=200,
        blank=True,
        help_text="Who recorded it: a staff member, a platform, the number a reply came from.",
    )

    class Meta:
        ordering = ["-at"]
        verbose_name = "contact opt-in"

    def __str__(self) -> str:
        return f"{self.patient} opted in to {self.channel} ({self.get_via_display()})"


class CalendarFeed(models.Model):
    """A private iCalendar feed of one practitioner's or one patient's appointments.

    Its URL carries a random token; only the token's SHA-256 is stored, so the link is shown once when
    made. Revoking it (or losing it: make a new one) turns the URL into a 404.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    practitioner = models.ForeignKey(
        Practitioner, null=True, blank=True, on_delete=models.CASCADE, related_name="calendar_feeds"
    )
    patient = models.ForeignKey(Patient, null=True, blank=True, on_delete=models.CASCADE, related_name="calendar_feeds")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=200, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "calendar feed"
        constraints = [
            models.CheckConstraint(
                condition=(Q(practitioner__isnull=False) & Q(patient__isnull=True))
                | (Q(practitioner__isnull=True) & Q(patient__isnull=False)),
                name="calendar_feed_one_owner",
            ),
        ]

    def __str__(self) -> str:
        owner = self.practitioner or self.patient
        return f"Calendar feed of {owner}" + (" (revoked)" if self.revoked_at else "")

    @property
    def clinic_id(self):
        return (self.practitioner or self.patient).clinic_id


class ParkedDeliveryReport(models.Model):
    """A provider's delivery report read but not recorded when it came (its row locked past the wait, a sender stuck
    on the provider): kept here, in the database that did answer, until it is (reminders.reports
    .parked_reports_record, run by the beat and by run_dispatcher, and soon after by a worker). Twilio sends a report
    once: parked in Redis alone, a restart of a Redis that keeps nothing on disk lost it. Recording is safe to run
    twice, so a report recorded and not yet removed (a worker stopped between) does no harm."""

    id = models.BigAutoField(primary_key=True)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    report = models.JSONField(help_text="The report in this service's terms (channels.DeliveryReport).")
    received_at = models.DateTimeField(help_text="When it came: it is recorded as of then.")
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "delivery report waiting to be recorded"

    def __str__(self) -> str:
        return f"{self.get_channel_display()} report of {self.received_at:%Y-%m-%d %H:%M} UTC"
