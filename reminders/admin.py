"""Admin: reminder plans (editable), the outbox (read-only, with retry/cancel), webhook endpoints, opt-outs and -ins
(read-only, never deleted: the consent trail), calendar feeds (made and revoked here).

Outbox rows and opt-outs hold patients' contact details, so a clinic
administrator sees only their own clinics' rows; webhook endpoints (and their
secrets) serve platforms across clinics and are for superusers only.
"""

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Q, URLField
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html

from clinic.admin import ClinicScopedAdmin, ClinicScopedChoices, ReadOnly, SharedCatalogue, admin_clinic_ids
from clinic.models import Clinic
from reminders import channels, feeds, fit, services, tasks
from reminders.models import (
    CalendarFeed,
    ContactOptIn,
    ContactOptOut,
    OutboxMessage,
    ParkedDeliveryReport,
    ReminderTemplate,
    TemplateOrigin,
    TemplateRollout,
    WebhookEndpoint,
)
from reminders.webhooks import webhook_secret_rotate
from scheduler.lifecycle import Actor

PLACEHOLDERS = (
    "Placeholders: {{ patient_first_name }}, {{ clinic_name }}, {{ start_local }}, {{ start_date }}, "
    "{{ start_time }}, {{ end_time }}, {{ previous_start_local }} (change notices), {{ start_day_relative }} "
    "(today, tomorrow, yesterday or on Tue 10 Mar, as seen when the message goes: never write 'tomorrow' yourself, "
    "quiet hours can move a text two days ahead, nor 'today' in a thank-you, a visit may be marked done the next "
    "morning), {{ start_relative_local }}. E-mail only: "
    "{{ procedure_name }}, {{ practitioner_name }}, {{ area_name }}, in a move notice {{ time_changed }} (false when "
    "only the practitioner changed) and {{ previous_practitioner_name }}, and in post-care {{ next_possible }} "
    "(a list of items with .name, .from_date, .ideally_from_date: when other treatments are possible again, "
    "from the interval rules for this patient). The unsubscribe link is added to every e-mail."
)


class ReminderTemplateForm(forms.ModelForm):
    class Meta:
        model = ReminderTemplate
        fields = [  # the admin's fieldsets below decide what shows; these are what it may change
            *("name", "kind", "procedure", "anchor", "offset_value", "offset_unit", "send_if_late", "is_active"),
            *("email_subject", "email_text", "email_html", "attach_ics", "sms_text", "origin", "source"),
        ]

    def _post_clean(self):
        super()._post_clean()  # the model's own checks (ReminderTemplate.clean) first, on the whole template
        # Then an active text, valid itself, that would be too long for some clinic's patients (reminders.fit): only
        # when the text is new, changed or switched on, so that a clinic named before these checks does not stop an
        # edit of the e-mail (reminders_status lists that clinic).
        text = self.cleaned_data.get("sms_text")
        changed = self.instance._state.adding or {"sms_text", "is_active"} & set(self.changed_data)
        if text and self.cleaned_data.get("is_active") and changed and "sms_text" not in self.errors:
            problem = fit.template_sms_problem(text)
            if problem:
                self.add_error("sms_text", problem)


@admin.register(ReminderTemplate)
class ReminderTemplateAdmin(SharedCatalogue, admin.ModelAdmin):
    form = ReminderTemplateForm
    list_display = ["name", "kind", "procedure", "anchor", "offset", "provenance", "is_active"]
    list_filter = ["origin", "kind", "procedure", "is_active"]
    search_fields = ["name", "email_subject", "email_text", "sms_text"]
    readonly_fields = ["default_key", "updated_at"]
    fieldsets = [
        (
            "What and when",
            {
                "fields": [
                    "name",
                    "kind",
                    "procedure",
                    "anchor",
                    "offset_value",
                    "offset_unit",
                    "send_if_late",
                    "is_active",
                ]
            },
        ),
        (
            "E-mail",
            {"fields": ["email_subject", "email_text", "email_html", "attach_ics"], "description": PLACEHOLDERS},
        ),
        (
            "SMS",
            {
                "fields": ["sms_text"],
                "description": "No diagnosis, procedure or drug names: an SMS can be read "
                "by anyone who sees the phone. This is checked on save.",
            },
        ),
        ("Provenance", {"fields": ["origin", "source", "default_key", "updated_at"]}),
    ]

    def save_model(self, request, obj, form, change):
        before = ReminderTemplate.objects.filter(pk=obj.pk).first() if change else None  # as it was
        super().save_model(request, obj, form, change)
        now = timezone.now()
        if change and services.RETIMING_FIELDS & set(form.changed_data):
            # In the admin's transaction: what is still to go is planned again from the template as it stands.
            services.outbox_template_retimed(template=obj, now=now)
        run = services.template_rollout_start(template=obj, before=before, now=now)
        if run is not None:
            # After the commit, in chunks (a worker's, or here with no broker): the visits booked before the text.
            transaction.on_commit(lambda: tasks.start_rollout(str(run.pk), in_request=True))
            self.message_user(
                request,
                "The visits already booked (and aftercare still to come) get this text too; how far that has got "
                "is under “Care texts planned for visits booked”.",
                messages.INFO,
            )

    def get_deleted_objects(self, objs, request):
        """A text's runs go with it: they record how it reached the visits booked before it, and are no one's to
        delete on their own (a run deleted half-way would leave the rest of its visits unplanned, unseen)."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        perms_needed.discard(TemplateRollout._meta.verbose_name)
        return deleted, counts, perms_needed, protected

    @admin.display(description="offset")
    def offset(self, obj: ReminderTemplate) -> str:
        return f"{obj.offset_value:+d} {obj.offset_unit}"

    @admin.display(description="origin", ordering="origin")
    def provenance(self, obj: ReminderTemplate) -> str:
        if obj.origin == TemplateOrigin.CLINIC:
            return format_html('<strong style="color:#a60">{}</strong>', "Clinic template (review)")
        return "Sourced"


@admin.register(TemplateRollout)
class TemplateRolloutAdmin(admin.ModelAdmin):
    """Progress of a care text being planned for the visits booked before it: read-only, for the operators who
    edit the shared texts to watch."""

    list_display = ["cause", "created_at", "visits_done", "messages_planned", "progressed_at", "finished_at"]
    list_select_related = ["template"]
    readonly_fields = [f.name for f in TemplateRollout._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a run goes only with its text (ReminderTemplateAdmin.get_deleted_objects)

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ClinicScopedAdmin):
    """What is due, sent and failed. Rows change only through the dispatcher and the actions below."""

    clinic_path = "appointment__clinic"
    list_display = [
        "due_at",
        "status",
        "kind",
        "channel",
        "event",
        "attempts",
        "appointment_link",
        "recipient",
        "short_error",
    ]
    list_filter = ["status", "channel", "kind", "in_doubt", ("appointment__clinic", admin.RelatedOnlyFieldListFilter)]
    date_hierarchy = "due_at"
    search_fields = ["=id", "=appointment__id", "recipient", "provider_id", "last_error"]
    actions = ["retry_now", "cancel"]
    list_select_related = ["appointment"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # Every field is read-only: a Save would write the row back as the page read it, over what the dispatcher
        # recorded meanwhile (a sent message put back to pending). Viewed, with the actions below.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the outbox is the delivery record

    @admin.display(description="appointment")
    def appointment_link(self, obj: OutboxMessage) -> str:
        label = str(obj.appointment_id)[:8]
        try:
            return format_html(
                '<a href="{}">{}</a>', reverse("admin:clinic_appointment_change", args=[obj.appointment_id]), label
            )
        except NoReverseMatch:
            return label

    @admin.display(description="last error")
    def short_error(self, obj: OutboxMessage) -> str:
        return (obj.last_error[:80] + "…") if len(obj.last_error) > 80 else obj.last_error

    @admin.action(description="Retry now (failed or skipped messages)")
    def retry_now(self, request, queryset):
        # The patient messages among them are written in their appointments' audit trails, with who sent them again.
        by = Actor(label=request.user.get_username(), user=request.user)
        count = services.outbox_retry(message_ids=queryset.values_list("pk", flat=True), now=timezone.now(), actor=by)
        self.message_user(request, f"{count} message(s) are due again now.", messages.SUCCESS)

    @admin.action(description="Cancel (unsent messages)")
    def cancel(self, request, queryset):
        # As a retry: the patient messages stopped are written in their appointments' trails, with who stopped them.
        by = Actor(label=request.user.get_username(), user=request.user)
        count = services.outbox_cancel(message_ids=queryset.values_list("pk", flat=True), now=timezone.now(), actor=by)
        self.message_user(request, f"{count} message(s) cancelled.", messages.SUCCESS)


class SuperuserOnly:
    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    has_change_permission = has_add_permission = has_delete_permission = has_view_permission


class WebhookEndpointForm(forms.ModelForm):
    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        problem = channels.webhook_url_credentials_problem(url, stored=self.instance.url)  # as the API refuses it
        if problem:
            raise forms.ValidationError(problem, code="credentials")
        return url


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(SuperuserOnly, admin.ModelAdmin):
    form = WebhookEndpointForm
    formfield_overrides = {URLField: {"assume_scheme": "https"}}  # an address typed without one is https
    list_display = ["client", "url", "is_active", "events", "created_at"]
    list_filter = ["is_active", "client"]
    readonly_fields = ["secret", "created_at"]
    fields = ["client", "url", "events", "description", "is_active", "secret", "created_at"]
    actions = ["rotate_secret"]

    @admin.action(description="Rotate the signing secret")
    def rotate_secret(self, request, queryset):
        """An operator's rotation is for a secret that leaked: the new one signs alone from now on, and any older one
        (the current, and one an API rotation left in its overlap) stops at once (webhooks.webhook_secret_rotate)."""
        now = timezone.now()
        for endpoint in queryset:
            webhook_secret_rotate(endpoint=endpoint, now=now, overlap=timedelta(0))
        self.message_user(
            request,
            "New secrets set; they alone sign from now on, so the platform's verifier refuses deliveries until it has "
            "them: give them to the platform (see each endpoint).",
            messages.WARNING,
        )


class CalendarFeedForm(forms.ModelForm):
    class Meta:
        model = CalendarFeed
        fields = ["practitioner", "patient"]

    def clean(self):
        data = super().clean()
        if bool(data.get("practitioner")) == bool(data.get("patient")):
            raise forms.ValidationError("Choose a practitioner or a patient (one of them).")
        return data


@admin.register(CalendarFeed)
class CalendarFeedAdmin(ClinicScopedChoices, admin.ModelAdmin):
    """Staff make a feed (the link is shown once) and revoke it; the link itself is never stored."""

    form = CalendarFeedForm
    list_display = ["__str__", "created_at", "created_by", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    actions = ["revoke"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request).select_related("practitioner", "patient")
        ids = admin_clinic_ids(request)
        if ids is None:
            return queryset
        organisations = Clinic.objects.filter(pk__in=ids).values("organisation_id")
        return queryset.filter(Q(practitioner__clinic__in=ids) | Q(patient__organisation__in=organisations))

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a feed is made or revoked, never edited

    def save_model(self, request, obj, form, change):
        feed, token = feeds.calendar_feed_create(
            now=timezone.now(),
            practitioner=form.cleaned_data.get("practitioner"),
            patient=form.cleaned_data.get("patient"),
            created_by=request.user.get_username(),
        )
        obj.pk, obj.token_hash, obj.created_at = feed.pk, feed.token_hash, feed.created_at
        obj._state.adding = False
        self.message_user(
            request,
            format_html(
                "The feed's private link (shown only now; subscribe to it in a calendar app): <code>{}</code>",
                feeds.feed_url(token),
            ),
            messages.WARNING,
        )

    @admin.action(description="Revoke (the link stops working at once)")
    def revoke(self, request, queryset):
        count = feeds.calendar_feed_revoke(feeds=queryset, now=timezone.now())
        self.message_user(request, f"{count} feed(s) revoked.", messages.SUCCESS)


# The patients' consent records (opt-outs and opt-ins) are append-only (reminders.models): shown, never added, changed
# or deleted here (ReadOnly). A deleted STOP would also stop the desk saying that the patient turned texts off
# themselves (reminders.consent.latest_own_opt_out); a Save of the read-only page would write the row back as read.


class ConsentRecordAdmin(ReadOnly, ClinicScopedAdmin):
    """A patient's consent trail: nobody edits or deletes a record of it, and it goes with its patient (a patient
    registered by mistake is still deleted: clinic.admin.PatientAdmin.get_deleted_objects)."""

    organisation_path = "patient__organisation"  # consent belongs to the organisation's record
    list_display = ["at", "patient", "channel", "via", "detail"]
    list_filter = ["channel", "via"]
    deleted_with_its_patient = True

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]


@admin.register(ContactOptOut)
class ContactOptOutAdmin(ConsentRecordAdmin):
    pass


@admin.register(ContactOptIn)
class ContactOptInAdmin(ConsentRecordAdmin):
    pass


@admin.register(ParkedDeliveryReport)
class ParkedDeliveryReportAdmin(SuperuserOnly, admin.ModelAdmin):
    """Delivery reports waiting to be recorded (reminders.reports.parked_reports_record): read-only; an operator
    sees one that keeps failing (attempts, last error)."""

    list_display = ("received_at", "channel", "attempts", "last_error")
    readonly_fields = ("channel", "report", "received_at", "attempts", "last_error")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
