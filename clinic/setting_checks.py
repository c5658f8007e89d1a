"""The seam through which the rooms above check a clinic's settings before they are saved, and hear of them after.

Every text message names the clinic, and the texts are the reminders' (clinic never imports them): the reminders
subscribe a check (their AppConfig.ready) that renders each active SMS template with the clinic's name for texts,
and `Clinic.clean` (which the admin runs) reports what it finds against the clinic's own fields. A clinic saved
with a name no text fits would have every text to its patients fail for good when it is due.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clinic.models import Clinic

Check = Callable[["Clinic"], dict[str, list[str]]]
_checks: list[Check] = []


def subscribe(check: Check) -> None:
    """Call `check(clinic)` when a clinic is validated (once, however often registered): it returns problems by
    field name, empty when it has none."""
    if check not in _checks:
        _checks.append(check)


def clinic_problems(clinic: Clinic) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}
    for check in _checks:
        for field, messages in check(clinic).items():
            problems.setdefault(field, []).extend(messages)
    return problems


# --- After a clinic's settings are saved -----------------------------------------------------------------------------

Saved = Callable[..., None]
_saved: list[Saved] = []


def subscribe_saved(subscriber: Saved) -> None:
    """Call `subscriber(clinic=, changed=, now=)` after a clinic's settings are saved (once, however often registered):
    `changed` names the fields that changed. The reminders re-time what is still to go when the time zone changed."""
    if subscriber not in _saved:
        _saved.append(subscriber)


def clinic_settings_saved(*, clinic: Clinic, changed: set[str] | frozenset[str], now) -> None:
    """Called in the transaction that saved the clinic (the admin's), after the save."""
    for subscriber in _saved:
        subscriber(clinic=clinic, changed=frozenset(changed), now=now)
