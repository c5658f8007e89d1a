"""The seam through which a change to a patient's clinical record reaches the rooms above.

The record services (clinic/services.py) call `patient_record_changed` inside their transaction,
with the patient row locked, after the change is written. The scheduler subscribes (its
AppConfig.ready) and re-checks the patient's booked appointments in that same transaction, so a
booking never stays confirmed and unsafe: clinic never imports the scheduler.

A change to how the patient is reached (e-mail, phone, channels, SMS consent, muted kinds of message)
goes through `patient_contact_changed` the same way: the reminders subscribe, and plan for the
patient's coming appointments what they may now send (a channel switched on, care unmuted). When staff or a
platform made the change (not the patient on their own page, which records its own), it carries a
`ContactChange`: what the contact choices were before and who changed them, so the reminders can record a
channel switched on or off by someone other than the patient (reminders.consent.staff_consent_record).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class ChangedBy:
    """Who changed a patient's details: `via` is where ("desk", "api"), `label` who (a user, an API client)."""

    via: str
    label: str = ""


@dataclass(frozen=True)
class ContactChange:
    """A change to how the patient is reached made by `by`: `before` holds the contact fields' values before it
    (empty for a patient just registered)."""

    by: ChangedBy
    before: Mapping[str, object] = field(default_factory=dict)


def subscribe_contact(subscriber: Subscriber) -> None:
    """Call `subscriber(patient_id=, now=, change=)` on every change to how the patient is reached (once, however
    often registered); `change` is a ContactChange, or None when the patient made it (their page, a reply)."""
    if subscriber not in _contact_subscribers:
        _contact_subscribers.append(subscriber)


def patient_contact_changed(*, patient_id, now: datetime, change: ContactChange | None = None) -> None:
    """Called inside the transaction that changed the patient's contact details or choices, the row locked."""
    for subscriber in _contact_subscribers:
        subscriber(patient_id=patient_id, now=now, change=change)
