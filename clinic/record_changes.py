"""The seam through which a change to a patient's clinical record reaches the rooms above.

The record services (clinic/services.py) call `patient_record_changed` inside their transaction,
with the patient row locked, after the change is written. The scheduler subscribes (its
AppConfig.ready) and re-checks the patient's booked appointments in that same transaction, so a
booking never stays confirmed and unsafe: clinic never imports the scheduler.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

Subscriber = Callable[..., None]
_subscribers: list[Subscriber] = []


def subscribe(subscriber: Subscriber) -> None:
    """Call `subscriber(patient_id=, now=, cause=)` on every record change (once, however often registered)."""
    if subscriber not in _subscribers:
        _subscribers.append(subscriber)


def patient_record_changed(*, patient_id, now: datetime, cause: str) -> None:
    """`cause` says what changed, for the audit trail ("history added", "intake replaced", ...)."""
    for subscriber in _subscribers:
        subscriber(patient_id=patient_id, now=now, cause=cause)
