"""Booking services: check, book, reschedule, cancel, clear, complete, no-show.

Every write runs in one transaction that locks the patient row, then the
practitioner rows (in primary-key order, so two bookings never deadlock),
and only then re-reads the timeline and re-checks the rules. Two concurrent
requests therefore cannot both get through a rule or a slot; on PostgreSQL
an exclusion constraint backs up the slot check. Time comes in as `now`.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, tzinfo

from django.conf import settings
from django.db import IntegrityError, transaction

from clinic.models import (
    Appointment,
    AppointmentStatus,
    AuditAction,
    AuditEvent,
    HistorySource,
    Patient,
    Practitioner,
    ProcedureRecord,
    ProcedureType,
    TreatmentArea,
)
from scheduler import notifications, rules, selectors
from scheduler.availability import AvailabilityCode, Schedule, Slot, availability_violation
from scheduler.errors import InvalidInput, InvalidTransition, NotAllowed, NotFound, UnableToBook
from scheduler.timeutils import require_aware, require_whole_minute


# Reasons go into the audit trail; long enough for a clinical note, bounded all the same.
MAX_REASON_LENGTH = 2000


@dataclass(frozen=True)
class Actor:
    """Who is acting: a staff user or an API client, and whether they hold the clinician's right."""

    label: str
    user: object | None = None
    clinical: bool = False


@dataclass(frozen=True)
class BookingCheck:
    """What booking would give, and why."""

    evaluation: rules.Evaluation
    availability: tuple[rules.Violation, ...]
    practitioner: Practitioner | None
    start_at: datetime
    end_at: datetime
    tz: tzinfo
    next_available_slot: Slot | None = None

    @property
    def violations(self) -> tuple[rules.Violation, ...]:
        return self.evaluation.violations + self.availability

    @property
    def blocking(self) -> tuple[rules.Violation, ...]:
        return tuple(v for v in self.violations if v.blocks)

    @property
    def warnings(self) -> tuple[rules.Violation, ...]:
        return self.evaluation.warnings

    @property
    def eligible(self) -> bool:
        return not self.blocking

    @property
    def outcome(self) -> rules.Outcome:
        if self.blocking:
            return rules.Outcome.REFUSED
        return self.evaluation.outcome

    @property
    def earliest_eligible_start(self) -> datetime | None:
        return self.evaluation.earliest_eligible_start


@dataclass(frozen=True)
class BookingResult:
    appointment: Appointment
    check: BookingCheck


@dataclass(frozen=True)
class _Request:
    patient: Patient
    procedure: ProcedureType
    area: TreatmentArea | None
    start_at: datetime
    end_at: datetime
    candidates: list[Practitioner]


# --- Validation --------------------------------------------------------------------------


def _procedure(code: str) -> ProcedureType:
    procedure = ProcedureType.objects.filter(code=code).first()
    if procedure is None:
        raise InvalidInput("unknown_procedure", f"There is no procedure with code {code!r}.", field="procedure")
    if not procedure.bookable:
        raise InvalidInput("procedure_not_bookable", f"{procedure.name} is not a bookable procedure.",
                           field="procedure")
    return procedure


def _area(code: str | None) -> TreatmentArea | None:
    if not code:
        return None
    area = TreatmentArea.objects.filter(code=code).first()
    if area is None:
        raise InvalidInput("unknown_area", f"There is no treatment area with code {code!r}.", field="area")
    return area


def _as_uuid(value, *, code: str, message: str, field: str) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        raise InvalidInput(code, message, field=field)


def _candidates(patient: Patient, procedure: ProcedureType, practitioner_id, *, lock: bool) -> list[Practitioner]:
    """The practitioners who may take the booking, locked in primary-key order when writing."""
    query = Practitioner.objects.filter(clinic_id=patient.clinic_id, is_active=True)
    if practitioner_id is not None:
        pk = _as_uuid(practitioner_id, code="unknown_practitioner", field="practitioner",
                      message="There is no such practitioner at this clinic.")
        query = query.filter(pk=pk)
        if lock:
            query = query.select_for_update(of=("self",))
        found = list(query)
        if not found:
            raise InvalidInput("unknown_practitioner", "There is no such practitioner at this clinic.",
                               field="practitioner")
        if not found[0].procedures.filter(code=procedure.code).exists():
            raise InvalidInput("practitioner_does_not_do_procedure",
                               f"{found[0].name} does not do {procedure.name}.", field="practitioner")
        return found
    query = query.filter(procedures=procedure).order_by("pk")
    if lock:
        query = query.select_for_update(of=("self",))
    found = list(query)
    if not found:
        raise InvalidInput("no_practitioner_for_procedure",
                           f"No practitioner at this clinic does {procedure.name}.", field="procedure")
    return found


def _request(*, patient: Patient, procedure_code: str, start_at: datetime, area_code: str | None,
             practitioner_id, end_at: datetime | None, now: datetime, lock: bool) -> _Request:
    procedure = _procedure(procedure_code)
    area = _area(area_code)
    start = require_aware(start_at, field="start")
    require_whole_minute(start, field="start")
    if start < now:
        raise InvalidInput("start_in_past", "That time has already passed; choose a time in the future.",
                           field="start")
    if end_at is None:
        end = start + timedelta(minutes=procedure.duration_minutes)
    else:
        end = require_aware(end_at, field="end")
        require_whole_minute(end, field="end")
        if end <= start:
            raise InvalidInput("end_before_start", "The end must come after the start.", field="end")
    candidates = _candidates(patient, procedure, practitioner_id, lock=lock)
    return _Request(patient, procedure, area, start, end, candidates)


# --- The check ---------------------------------------------------------------------------------


def _next_slot(req: _Request, timeline: rules.Timeline, rulebook: rules.RuleBook, from_at: datetime | None,
               ignore: frozenset[str], ignore_appointment_id) -> Slot | None:
    if from_at is None:
        return None
    tz = req.patient.clinic.tz
    until = from_at + timedelta(days=settings.BOOKING_SEARCH_DAYS)
    duration = req.end_at - req.start_at
    schedule = Schedule(req.candidates, tz, from_at, until + duration, ignore_appointment_id=ignore_appointment_id)
    blocked = rules.blocked_ranges(
        timeline, rulebook, rules.Proposal(req.procedure.code, from_at, req.area.code if req.area else None, ignore),
        tz, until,
    )
    step = timedelta(minutes=settings.BOOKING_SLOT_STEP_MINUTES)
    return next(schedule.free_slots(duration=duration, step=step, window_start=from_at, window_end=until,
                                    blocked=blocked), None)


def _check(req: _Request, *, ignore_appointment: Appointment | None = None) -> BookingCheck:
    tz = req.patient.clinic.tz
    timeline = selectors.timeline_for_patient(req.patient.pk)
    rulebook = selectors.rulebook_load()
    ignore = frozenset({str(ignore_appointment.pk)}) if ignore_appointment else frozenset()
    ignore_id = ignore_appointment.pk if ignore_appointment else None
    evaluation = rules.evaluate(
        timeline, rulebook,
        rules.Proposal(req.procedure.code, req.start_at, req.area.code if req.area else None, ignore), tz,
    )
    schedule = Schedule(req.candidates, tz, req.start_at, req.end_at, ignore_appointment_id=ignore_id)
    # Locks are taken in primary-key order; the choice follows the order slots are offered in (by name).
    ordered = sorted(req.candidates, key=lambda p: (p.name, str(p.pk)))
    chosen = next((p for p in ordered if schedule.is_free(p, req.start_at, req.end_at)), None)
    availability: tuple[rules.Violation, ...] = ()
    if chosen is None:
        if len(req.candidates) == 1:
            availability = tuple(schedule.problems(req.candidates[0], req.start_at, req.end_at))
        else:
            availability = (availability_violation(
                AvailabilityCode.NO_PRACTITIONER,
                f"No practitioner who does {req.procedure.name} is free at that time."),)
    check = BookingCheck(evaluation, availability, chosen, req.start_at, req.end_at, tz)
    if not check.eligible:
        check = replace(check, next_available_slot=_next_slot(
            req, timeline, rulebook, evaluation.earliest_eligible_start, ignore, ignore_id))
    return check


def appointment_check(*, patient: Patient, procedure_code: str, start_at: datetime, now: datetime,
                      area_code: str | None = None, practitioner_id=None,
                      end_at: datetime | None = None) -> BookingCheck:
    """A dry run: exactly what booking would give, writing nothing."""
    req = _request(patient=patient, procedure_code=procedure_code, start_at=start_at, area_code=area_code,
                   practitioner_id=practitioner_id, end_at=end_at, now=now, lock=False)
    return _check(req)


# --- Writes ------------------------------------------------------------------------------------------


def _audit(appointment: Appointment, action: str, actor: Actor, now: datetime, *, reason: str = "",
           details: dict | None = None) -> None:
    AuditEvent.objects.create(
        appointment=appointment, action=action, at=now, actor_user=actor.user if actor.user else None,
        actor_label=actor.label, reason=reason, details=details or {},
    )


def _lock_patient(patient: Patient) -> Patient:
    return Patient.objects.select_for_update().select_related("clinic").get(pk=patient.pk)


def _lock_appointment(appointment_id) -> Appointment:
    pk = _as_uuid(appointment_id, code="unknown_appointment", field="appointment",
                  message="There is no such appointment.")
    appointment = Appointment.objects.select_for_update().filter(pk=pk).first()
    if appointment is None:
        raise NotFound("unknown_appointment", "There is no such appointment.")
    return appointment


def _insert(check: BookingCheck, build) -> Appointment:
    """Run `build()` in a savepoint; a lost race on the practitioner's slot is a refusal, not a 500."""
    try:
        with transaction.atomic():
            return build()
    except IntegrityError:
        taken = availability_violation(AvailabilityCode.SLOT_TAKEN, "That slot was just taken.")
        raise UnableToBook(replace(check, availability=check.availability + (taken,)))


def _violation_summary(check: BookingCheck) -> list[dict]:
    return [{"code": str(v.code), "severity": str(v.severity), "rule": v.rule_id} for v in check.violations]


def appointment_book(*, patient: Patient, procedure_code: str, start_at: datetime, actor: Actor, now: datetime,
                     area_code: str | None = None, practitioner_id=None,
                     end_at: datetime | None = None) -> BookingResult:
    with transaction.atomic():
        patient = _lock_patient(patient)
        req = _request(patient=patient, procedure_code=procedure_code, start_at=start_at, area_code=area_code,
                       practitioner_id=practitioner_id, end_at=end_at, now=now, lock=True)
        # Race condition: the re-check runs only now that patient and practitioners are locked.
        check = _check(req)
        if not check.eligible:
            raise UnableToBook(check)
        status = (AppointmentStatus.PENDING_CLEARANCE if check.outcome == rules.Outcome.PENDING_CLEARANCE
                  else AppointmentStatus.CONFIRMED)
        appointment = _insert(check, lambda: Appointment.objects.create(
            clinic_id=patient.clinic_id, patient=patient, practitioner=check.practitioner,
            procedure=req.procedure, area=req.area, start_at=req.start_at, end_at=req.end_at, status=status,
        ))
        _audit(appointment, AuditAction.BOOKED, actor, now, details={
            "start_at": req.start_at.isoformat(), "status": status, "violations": _violation_summary(check)})
        notifications.appointment_changed(appointment=appointment, change=AuditAction.BOOKED, now=now)
    return BookingResult(appointment, check)


def _reschedule_request(appointment: Appointment, patient: Patient, start_at: datetime, practitioner_id,
                        now: datetime, *, lock: bool) -> _Request:
    if appointment.status not in (AppointmentStatus.PENDING_CLEARANCE, AppointmentStatus.CONFIRMED):
        raise InvalidTransition("not_reschedulable",
                                f"A {appointment.get_status_display().lower()} appointment cannot be moved.")
    start = require_aware(start_at, field="start")
    return _request(patient=patient, procedure_code=appointment.procedure_id, start_at=start,
                    area_code=appointment.area_id, practitioner_id=practitioner_id or appointment.practitioner_id,
                    end_at=start + (appointment.end_at - appointment.start_at), now=now, lock=lock)


def appointment_reschedule_check(*, appointment: Appointment, start_at: datetime, now: datetime,
                                 practitioner_id=None) -> BookingCheck:
    """A dry run of a reschedule: the same checks, leaving the appointment itself out."""
    req = _reschedule_request(appointment, appointment.patient, start_at, practitioner_id, now, lock=False)
    return _check(req, ignore_appointment=appointment)


def appointment_reschedule(*, appointment: Appointment, start_at: datetime, actor: Actor, now: datetime,
                           practitioner_id=None, reason: str = "") -> BookingResult:
    with transaction.atomic():
        patient = _lock_patient(appointment.patient)
        current = _lock_appointment(appointment.pk)
        req = _reschedule_request(current, patient, start_at, practitioner_id, now, lock=True)
        # Race condition: re-checked under the patient and practitioner locks.
        check = _check(req, ignore_appointment=current)
        if not check.eligible:
            raise UnableToBook(check)
        cleared = set((current.clearance_details or {}).get("rules", [])) if current.cleared_at else set()
        needs = {v.rule_id for v in check.evaluation.needs_clearance}
        status = AppointmentStatus.CONFIRMED if needs <= cleared else AppointmentStatus.PENDING_CLEARANCE
        before = {"start_at": current.start_at.isoformat(), "practitioner": str(current.practitioner_id),
                  "status": current.status}
        previous = {"start_at": current.start_at, "practitioner": current.practitioner_id, "status": current.status}
        current.start_at, current.end_at = req.start_at, req.end_at
        current.practitioner = check.practitioner
        current.status = status
        _insert(check, lambda: current.save(update_fields=["start_at", "end_at", "practitioner", "status",
                                                            "updated_at"]))
        _audit(current, AuditAction.RESCHEDULED, actor, now, reason=reason, details={
            "from": before, "to": {"start_at": req.start_at.isoformat(), "practitioner": str(check.practitioner.pk),
                                   "status": status}})
        notifications.appointment_changed(appointment=current, change=AuditAction.RESCHEDULED, now=now,
                                          previous=previous)
    return BookingResult(current, check)


def appointment_cancel(*, appointment: Appointment, actor: Actor, now: datetime, reason: str = "") -> Appointment:
    with transaction.atomic():
        _lock_patient(appointment.patient)
        current = _lock_appointment(appointment.pk)
        if current.status not in (AppointmentStatus.PENDING_CLEARANCE, AppointmentStatus.CONFIRMED):
            raise InvalidTransition("not_cancellable",
                                    f"A {current.get_status_display().lower()} appointment cannot be cancelled.")
        current.status = AppointmentStatus.CANCELLED
        current.cancelled_at = now
        current.cancel_reason = reason
        current.save(update_fields=["status", "cancelled_at", "cancel_reason", "updated_at"])
        _audit(current, AuditAction.CANCELLED, actor, now, reason=reason)
        notifications.appointment_changed(appointment=current, change=AuditAction.CANCELLED, now=now)
    return current


def _recheck(appointment: Appointment, patient: Patient) -> BookingCheck:
    req = _Request(patient, appointment.procedure, appointment.area, appointment.start_at, appointment.end_at,
                   [appointment.practitioner])
    return _check(req, ignore_appointment=appointment)


def appointment_recheck(*, appointment: Appointment) -> BookingCheck:
    """The rules as they stand now for a booked appointment: why it is pending, or what it would break now."""
    return _recheck(appointment, appointment.patient)


def appointment_clear(*, appointment: Appointment, actor: Actor, now: datetime, reason: str) -> Appointment:
    """A clinician accepts the relative contraindications of a pending booking, with a reason."""
    if not actor.clinical:
        raise NotAllowed("clinician_required", "Only a clinician can clear a contraindication.")
    if not reason or not reason.strip():
        raise InvalidInput("reason_required", "Say why the booking is cleared.", field="reason")
    if len(reason.strip()) > MAX_REASON_LENGTH:
        raise InvalidInput("reason_too_long", f"Keep the reason under {MAX_REASON_LENGTH} characters.",
                           field="reason")
    with transaction.atomic():
        patient = _lock_patient(appointment.patient)
        current = _lock_appointment(appointment.pk)
        if current.status != AppointmentStatus.PENDING_CLEARANCE:
            raise InvalidTransition("not_pending_clearance", "Only a booking pending clearance can be cleared.")
        # Race condition: the patient's history may have changed since booking; re-check under the lock.
        check = _recheck(current, patient)
        if check.evaluation.blocking:
            raise UnableToBook(replace(check, availability=()))
        cleared_rules = sorted({v.rule_id for v in check.evaluation.needs_clearance})
        current.status = AppointmentStatus.CONFIRMED
        current.cleared_at = now
        current.cleared_by = actor.user
        current.clearance_reason = reason.strip()
        current.clearance_details = {"rules": cleared_rules}
        current.save(update_fields=["status", "cleared_at", "cleared_by", "clearance_reason", "clearance_details",
                                    "updated_at"])
        _audit(current, AuditAction.CLEARED, actor, now, reason=reason.strip(), details={"rules": cleared_rules})
        notifications.appointment_changed(appointment=current, change=AuditAction.CLEARED, now=now)
    return current


def appointment_complete(*, appointment: Appointment, actor: Actor, now: datetime) -> Appointment:
    """Record the treatment as done: it enters the history, which starts post-care."""
    if not actor.clinical:
        raise NotAllowed("clinician_required", "Only a clinician can mark a treatment completed.")
    with transaction.atomic():
        _lock_patient(appointment.patient)
        current = _lock_appointment(appointment.pk)
        if current.status == AppointmentStatus.PENDING_CLEARANCE:
            raise InvalidTransition("clearance_required", "A clinician must clear this booking before treatment.")
        if current.status != AppointmentStatus.CONFIRMED:
            raise InvalidTransition("not_completable",
                                    f"A {current.get_status_display().lower()} appointment cannot be completed.")
        if current.start_at > now:
            raise InvalidTransition("not_started", "An appointment cannot be completed before it starts.")
        current.status = AppointmentStatus.COMPLETED
        current.completed_at = now
        current.save(update_fields=["status", "completed_at", "updated_at"])
        ProcedureRecord.objects.create(
            patient_id=current.patient_id, procedure_id=current.procedure_id, performed_at=current.start_at,
            area_id=current.area_id, source=HistorySource.CLINIC, appointment=current,
        )
        _audit(current, AuditAction.COMPLETED, actor, now)
        notifications.appointment_changed(appointment=current, change=AuditAction.COMPLETED, now=now)
    return current


def appointment_mark_no_show(*, appointment: Appointment, actor: Actor, now: datetime) -> Appointment:
    if not actor.clinical:
        raise NotAllowed("clinician_required", "Only a clinician can mark a no-show.")
    with transaction.atomic():
        _lock_patient(appointment.patient)
        current = _lock_appointment(appointment.pk)
        if current.status not in (AppointmentStatus.PENDING_CLEARANCE, AppointmentStatus.CONFIRMED):
            raise InvalidTransition("not_no_show",
                                    f"A {current.get_status_display().lower()} appointment cannot be a no-show.")
        if current.start_at > now:
            raise InvalidTransition("not_started", "A patient cannot miss an appointment that has not started.")
        current.status = AppointmentStatus.NO_SHOW
        current.save(update_fields=["status", "updated_at"])
        _audit(current, AuditAction.NO_SHOW, actor, now)
        notifications.appointment_changed(appointment=current, change=AuditAction.NO_SHOW, now=now)
    return current


# --- Availability ------------------------------------------------------------------------------------------

MAX_AVAILABILITY_DAYS = 92


def appointment_slots(*, patient: Patient, procedure_code: str, window_start: datetime, window_end: datetime,
                      now: datetime, area_code: str | None = None, practitioner_id=None,
                      limit: int | None = None, ignore_appointment: Appointment | None = None) -> list[Slot]:
    """Free slots in the window that are also interval-eligible for this patient.

    One pass: the engine's blocked ranges for the whole window, then the
    practitioners' calendars in memory; no engine call per slot.
    """
    procedure = _procedure(procedure_code)
    area = _area(area_code)
    asked_from = require_aware(window_start, field="from")
    start = max(asked_from, rules.ceil_minute(now))  # slots in the past are not offered
    end = require_aware(window_end, field="to")
    if end <= asked_from:
        raise InvalidInput("window_end_before_start", "`to` must come after `from`.", field="to")
    if end - start > timedelta(days=MAX_AVAILABILITY_DAYS):
        raise InvalidInput("window_too_long", f"Ask for at most {MAX_AVAILABILITY_DAYS} days at a time.",
                           field="to")
    if end <= start:
        return []
    candidates = _candidates(patient, procedure, practitioner_id, lock=False)
    tz = patient.clinic.tz
    duration = timedelta(minutes=procedure.duration_minutes)
    ignore = frozenset({str(ignore_appointment.pk)}) if ignore_appointment else frozenset()
    blocked = rules.blocked_ranges(
        selectors.timeline_for_patient(patient.pk), selectors.rulebook_load(),
        rules.Proposal(procedure.code, start, area.code if area else None, ignore), tz, end)
    schedule = Schedule(candidates, tz, start, end + duration,
                        ignore_appointment_id=ignore_appointment.pk if ignore_appointment else None)
    slots = schedule.free_slots(duration=duration, step=timedelta(minutes=settings.BOOKING_SLOT_STEP_MINUTES),
                                window_start=start, window_end=end, blocked=blocked)
    found = []
    for slot in slots:
        if limit is not None and len(found) >= limit:
            break
        found.append(slot)
    return found
