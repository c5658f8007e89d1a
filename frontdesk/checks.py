"""The live booking panel: is this allowed, why not, from when, and which slots.

Everything is asked of scheduler.booking; this module only decides which
question to ask for what the receptionist has chosen so far (a procedure;
maybe a day; maybe an exact time) and gathers the answers for the template.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings

from clinic.models import Appointment, Patient
from scheduler import rules
from scheduler.availability import Slot
from scheduler.booking import (
    MAX_AVAILABILITY_DAYS,
    BookingCheck,
    appointment_check,
    appointment_recheck,
    appointment_reschedule_check,
    appointment_slots,
)

SLOT_COUNT = 6


@dataclass
class Panel:
    """What the check panel shows."""

    exact: bool  # an exact time was checked (else: the first possible times from a day or now)
    checked_at: datetime
    check: BookingCheck
    slots: list[Slot] = field(default_factory=list)
    from_day: bool = False  # no exact time, but a day to start from

    @property
    def allowed(self) -> bool:
        # Without an exact time only the rules matter: the slots below are free by construction.
        return self.check.eligible if self.exact else self.check.evaluation.eligible

    @property
    def outcome(self) -> str:
        if not self.allowed:
            return rules.Outcome.REFUSED
        return self.check.evaluation.outcome

    @property
    def earliest(self) -> datetime | None:
        return self.check.earliest_eligible_start

    @property
    def blocking(self) -> list[rules.Violation]:
        return [v for v in self.shown_violations if v.blocks]

    @property
    def needs_clearance(self) -> list[rules.Violation]:
        return list(self.check.evaluation.needs_clearance)

    @property
    def warnings(self) -> list[rules.Violation]:
        return list(self.check.evaluation.warnings)

    @property
    def shown_violations(self) -> list[rules.Violation]:
        # "Nobody works at 21:07" is noise when no time was asked for.
        return list(self.check.violations if self.exact else self.check.evaluation.violations)

    @property
    def rules_allow(self) -> bool:
        return self.check.evaluation.eligible

    @property
    def slots_need_clearance(self) -> bool:
        # A condition stands at any date, so every slot offered would be held too.
        return any(v.conflicts_with is not None and v.conflicts_with.kind == "condition"
                   for v in self.check.evaluation.needs_clearance)

    @property
    def no_date_possible(self) -> bool:
        return not self.check.evaluation.eligible and self.earliest is None


def _slots_from(anchor: datetime | None, *, patient: Patient, procedure_code: str, area_code, practitioner_id,
                now: datetime, ignore_appointment: Appointment | None = None) -> list[Slot]:
    if anchor is None:
        return []
    days = min(settings.BOOKING_SEARCH_DAYS, MAX_AVAILABILITY_DAYS)
    found = appointment_slots(patient=patient, procedure_code=procedure_code, window_start=anchor,
                              window_end=anchor + timedelta(days=days), now=now, area_code=area_code,
                              practitioner_id=practitioner_id, limit=SLOT_COUNT * 4,
                              ignore_appointment=ignore_appointment)
    # With any practitioner, offer different times (the first practitioner free at each), not the same time twice.
    distinct: dict[datetime, Slot] = {}
    for slot in found:
        distinct.setdefault(slot.start_at, slot)
    return list(distinct.values())[:SLOT_COUNT]


def _probe(start: datetime | None, day_start: datetime | None, now: datetime) -> tuple[bool, datetime]:
    if start is not None:
        return True, start
    first = rules.ceil_minute(now)
    return False, max(first, day_start) if day_start else first


def booking_panel(*, patient: Patient, procedure_code: str, now: datetime, start: datetime | None = None,
                  day_start: datetime | None = None, area_code: str | None = None,
                  practitioner_id=None) -> Panel:
    """Check the exact start if there is one, else the first moment from the day (or now) on."""
    exact, probe = _probe(start, day_start, now)
    check = appointment_check(patient=patient, procedure_code=procedure_code, start_at=probe, now=now,
                              area_code=area_code, practitioner_id=practitioner_id)
    panel = Panel(exact=exact, checked_at=probe, check=check, from_day=day_start is not None and not exact)
    # Offer slots from the earliest start the rules allow; when the exact time is fine, the next ones after it.
    anchor = check.earliest_eligible_start
    if exact and panel.allowed:
        anchor = probe + timedelta(minutes=settings.BOOKING_SLOT_STEP_MINUTES)
    panel.slots = _slots_from(anchor, patient=patient, procedure_code=procedure_code, area_code=area_code,
                              practitioner_id=practitioner_id, now=now)
    return panel


def reschedule_panel(*, appointment: Appointment, now: datetime, start: datetime | None = None,
                     day_start: datetime | None = None, practitioner_id=None) -> Panel:
    exact, probe = _probe(start, day_start, now)
    check = appointment_reschedule_check(appointment=appointment, start_at=probe, now=now,
                                         practitioner_id=practitioner_id)
    panel = Panel(exact=exact, checked_at=probe, check=check, from_day=day_start is not None and not exact)
    anchor = check.earliest_eligible_start
    if exact and panel.allowed:
        anchor = probe + timedelta(minutes=settings.BOOKING_SLOT_STEP_MINUTES)
    panel.slots = [s for s in _slots_from(
        anchor, patient=appointment.patient, procedure_code=appointment.procedure_id, area_code=appointment.area_id,
        practitioner_id=practitioner_id or appointment.practitioner_id, now=now, ignore_appointment=appointment)
        if s.start_at != appointment.start_at]
    return panel


def clearance_reasons(appointment: Appointment) -> list[rules.Violation]:
    """What a clinician is asked to clear: the relative contraindications (and any new block) standing now."""
    check = appointment_recheck(appointment=appointment)
    return list(check.evaluation.needs_clearance) + list(check.evaluation.blocking)
