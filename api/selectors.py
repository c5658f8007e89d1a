"""Reads the API needs that no other module offers (yet)."""
from __future__ import annotations

from clinic.models import Appointment


def appointment_reminders(*, appointment: Appointment) -> list[dict]:
    """The patient messages planned or sent for `appointment`: kind, channel, due_at (clinic offset), status.

    The reminders subsystem (scheduler/reminders) keeps them as outbox rows
    related to the appointment as `outbox_messages`; webhook deliveries are
    not reminders and stay out. Until that subsystem is installed there is
    no such relation and the list is empty.
    """
    messages = getattr(appointment, "outbox_messages", None)
    if messages is None:
        return []
    tz = appointment.clinic.tz
    return [
        {"kind": kind, "channel": channel, "due_at": due_at.astimezone(tz).isoformat(), "status": status}
        for kind, channel, due_at, status in messages.exclude(channel="webhook")
        .order_by("due_at", "id").values_list("kind", "channel", "due_at", "status")
    ]
