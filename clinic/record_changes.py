"""The seam through which a change to a patient's clinical record reaches the rooms above.

The record services (clinic/services.py) call `patient_record_changed` inside their transaction,
with the patient row locked, after the change is written. The scheduler subscribes (its
AppConfig.ready) and re-checks the patient's booked appointments in that same transaction, so a
booking never stays confirmed and unsafe: clinic never imports the scheduler.

A change to how the patient is reached (e-mail, phone, channels, SMS consent, muted kinds of message)
goes through `patient_contact_changed` the same way: the reminders subscribe, and plan for the
patient's coming appointments what they may now send (a channel switched on, care unmuted).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

Subscriber = Callable[..., None]
_subscribers: list[Subscriber] = []
_contact_subscribers: list[Subscriber] = []


def subscribe(subscriber: Subscriber) -> None:
    """Call `subscriber(patient_id=, now=, cause=)` on every record change (once, however often registered)."""
    if subscriber not in _subscribers:
        _subscribers.append(subscriber)


def patient_record_changed(*, patient_id, now: datetime, cause: str) -> None:
    """`cause` says what changed, for the audit trail ("history added", "intake replaced", ...)."""
    for subscriber in _subscribers:
        subscriber(patient_id=patient_id, now=now, cause=cause)


def subscribe_contact(subscriber: Subscriber) -> None:
    """Call `subscriber(patient_id=, now=)` on every change to how the patient is reached (once, however often
    registered)."""
    if subscriber not in _contact_subscribers:
        _contact_subscribers.append(subscriber)


def patient_contact_changed(*, patient_id, now: datetime) -> None:
    """Called inside the transaction that changed the patient's contact details or choices, the row locked."""
    for subscriber in _contact_subscribers:
        subscriber(patient_id=patient_id, now=now)
