"""The one seam through which appointment changes reach the rooms above (reminders, webhooks).

The lifecycle (scheduler/lifecycle.py) calls `appointment_changed` inside its
transaction, after the change is written, so whatever a subscriber writes
(outbox rows) commits or rolls back together with the change that caused it.
Subscribers register from their app's `ready()`: the scheduler never imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from clinic.models import Appointment

Subscriber = Callable[..., None]
_subscribers: list[Subscriber] = []


def subscribe(subscriber: Subscriber) -> None:
    """Call `subscriber(appointment=, change=, now=, previous=)` on every change (once, however often registered)."""
    if subscriber not in _subscribers:
        _subscribers.append(subscriber)


def appointment_changed(*, appointment: Appointment, change: str, now: datetime, previous: dict | None = None) -> None:
    """React to `change` (an AuditAction value) on `appointment`.

    `previous` holds what a reschedule moved from: start_at, practitioner, status.
    Subscribers must not talk to a broker or a provider: they only write rows
    (the outbox), so a booking succeeds whether or not Redis, SMTP or an SMS provider is up.
    """
    for subscriber in _subscribers:
        subscriber(appointment=appointment, change=change, now=now, previous=previous)
