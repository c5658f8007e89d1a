"""The admin: editing reminder plans, watching the outbox, and who may see what."""

import pytest
from django.contrib.auth.models import Permission, User

from clinic.models import ApiClient, AuditAction, StaffMembership, StaffRole
from reminders.models import OutboxMessage, ReminderTemplate, WebhookEndpoint
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory
from tests.reminders.conftest import book, london

WEDNESDAY_10 = london(2026, 3, 4, 10)


@pytest.fixture
def superuser_client(client, db):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def test_every_reminders_page_opens(superuser_client, patient, practitioner, now):
    book(patient, "microneedling", WEDNESDAY_10, now)
    for page in ("remindertemplate", "outboxmessage", "webhookendpoint", "contactoptout", "contactoptin"):
        assert superuser_client.get(f"/admin/reminders/{page}/").status_code == 200, page
    template = ReminderTemplate.objects.get(default_key="microneedling-pre-care-24h")
    response = superuser_client.get(f"/admin/reminders/remindertemplate/{template.pk}/change/")
    assert b"Sourced default (from the reference texts)" in response.content
    listing = superuser_client.get("/admin/reminders/remindertemplate/?origin=clinic").content.decode()
    assert "Botox pre-care, 24 h before (CLINIC TEMPLATE, not sourced)" in listing
    assert "Clinic template (review)" in listing


def test_the_template_form_refuses_a_clinical_word_in_an_sms(superuser_client, care_texts):
    template = ReminderTemplate.objects.get(default_key="day-before-reminder")
    response = superuser_client.post(
        f"/admin/reminders/remindertemplate/{template.pk}/change/",
        {
            "name": template.name,
            "kind": "reminder",
            "procedure": "",
            "anchor": "start",
            "offset_value": "-1",
            "offset_unit": "days",
            "is_active": "on",
            "email_subject": template.email_subject,
            "email_text": template.email_text,
            "email_html": "",
            "sms_text": "See you for your Botox tomorrow",
            "origin": "clinic",
            "source": "",
        },
    )
    assert response.status_code == 200
    assert "An SMS must not name a diagnosis, procedure or drug" in response.content.decode()
    template.refresh_from_db()
    assert "Botox" not in template.sms_text


def test_failed_messages_can_be_retried_from_the_outbox_list(superuser_client, patient, practitioner, now):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    row = OutboxMessage.objects.get(appointment=appointment, kind="confirmation", channel="sms")
    OutboxMessage.objects.filter(pk=row.pk).update(status="failed", attempts=6, last_error="gave up")

    response = superuser_client.post(
        "/admin/reminders/outboxmessage/", {"action": "retry_now", "_selected_action": [str(row.pk)]}, follow=True
    )

    assert "1 message(s) are due again now." in response.content.decode()
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_error) == ("pending", 0, "")
    # The appointment's trail says which operator sent which message again.
    entry = appointment.audit_events.get(action=AuditAction.RESEND_REQUESTED)
    assert (entry.actor_user.is_superuser, entry.actor_label) == (True, entry.actor_user.get_username())
    assert (entry.details["message"], entry.details["channel"], entry.details["was"]) == (str(row.pk), "sms", "failed")
    assert entry.get_action_display() == "Re-send requested"  # asked for: the sender still checks it when it goes


def test_a_skipped_message_retried_by_an_operator_is_written_as_it_was(superuser_client, patient, practitioner, now):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    row = OutboxMessage.objects.get(appointment=appointment, kind="confirmation", channel="sms")
    OutboxMessage.objects.filter(pk=row.pk).update(status="skipped", last_error="quiet hours until the visit")

    superuser_client.post("/admin/reminders/outboxmessage/", {"action": "retry_now", "_selected_action": [str(row.pk)]})

    assert appointment.audit_events.get(action=AuditAction.RESEND_REQUESTED).details["was"] == "skipped"


def test_a_webhook_retried_by_an_operator_is_not_written_in_the_patients_trail(
    superuser_client, patient, practitioner, now
):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    platform = ApiClient(name="Platform")
    platform.set_new_key()
    platform.save()
    delivery = OutboxMessage.objects.create(
        appointment=appointment,
        kind="webhook",
        channel="webhook",
        endpoint=WebhookEndpoint.objects.create(client=platform, url="https://platform.example/hook"),
        anchor_at=now,
        due_at=now,
        status="failed",
        payload={"type": "appointment.created"},
        created_at=now,
    )

    superuser_client.post(
        "/admin/reminders/outboxmessage/", {"action": "retry_now", "_selected_action": [str(delivery.pk)]}
    )

    delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert not appointment.audit_events.filter(action=AuditAction.RESEND_REQUESTED).exists()


def test_messages_in_doubt_are_listed_apart_and_stay_in_doubt_when_retried(
    superuser_client, patient, practitioner, now
):
    """A message given up after its senders kept dying may have gone: retried, its next sender asks the
    provider first (reminders.dispatch._settle_doubt)."""
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    row = OutboxMessage.objects.get(appointment=appointment, kind="confirmation", channel="sms")
    OutboxMessage.objects.filter(pk=row.pk).update(status="failed", attempts=6, in_doubt=True)

    listing = superuser_client.get("/admin/reminders/outboxmessage/?in_doubt__exact=1")
    assert listing.status_code == 200 and list(listing.context["cl"].result_list) == [row]
    superuser_client.post(
        "/admin/reminders/outboxmessage/", {"action": "retry_now", "_selected_action": [str(row.pk)]}, follow=True
    )

    row.refresh_from_db()
    assert (row.status, row.in_doubt) == ("pending", True)


def test_a_clinic_administrator_sees_only_their_clinics_messages_and_no_webhook_secrets(
    client, patient, practitioner, now
):
    other_clinic = ClinicFactory(code="elsewhere", name="Elsewhere")
    PractitionerFactory(clinic=other_clinic)
    book(patient, "microneedling", WEDNESDAY_10, now)
    book(PatientFactory(clinic=other_clinic, email="zed@example.com"), "botox", WEDNESDAY_10, now)
    platform = ApiClient(name="Platform")
    platform.set_new_key()
    platform.save()
    WebhookEndpoint.objects.create(client=platform, url="https://platform.example/hooks")
    admin = User.objects.create_user("clinicadmin", password="pw", is_staff=True)
    admin.user_permissions.add(
        *Permission.objects.filter(content_type__app_label__in=["clinic", "scheduler", "reminders"])
    )
    StaffMembership.objects.create(user=admin, clinic=patient.clinic, role=StaffRole.CLINIC_ADMIN)
    client.force_login(admin)

    listing = client.get("/admin/reminders/outboxmessage/")
    assert listing.status_code == 200
    shown = set(listing.context["cl"].queryset.values_list("appointment__clinic__code", flat=True))
    assert shown == {"london"}
    assert client.get("/admin/reminders/webhookendpoint/").status_code == 403
