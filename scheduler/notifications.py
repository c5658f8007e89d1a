"""The one seam through which booking changes reach reminders and webhooks.

The booking services call `appointment_changed` inside their transaction,
after the change is written, so whatever it writes (outbox rows) commits or
rolls back together with the change that caused it.
"""
from __future__ import annotations

from datetime import datetime

from clinic.models import Appointment
from scheduler.reminders.services import outbox_on_change


def appointment_changed(*, appointment: Appointment, change: str, now: datetime,
                        previous: dict | None = None) -> None:
    """React to `change` (an AuditAction value) on `appointment`.

    `previous` holds what a reschedule moved from: start_at, practitioner, status.
    Nothing here talks to a broker or a provider: it only writes outbox rows,
    so a booking succeeds whether or not Redis, SMTP or an SMS provider is up.
    """
    outbox_on_change(appointment=appointment, change=change, now=now, previous=previous)
