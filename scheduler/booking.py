"""Booking services: check, book, reschedule, cancel, clear, complete, no-show.

Every write runs in one transaction that locks the patient row, then the
practitioner rows (in primary-key order, so two bookings never deadlock),
and only then re-reads the timeline and re-checks the rules. Two concurrent
requests therefore cannot both get through a rule or a slot; on PostgreSQL
an exclusion constraint backs up the slot check. Time comes in as `now`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, tzinfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, Q, QuerySet, When

from clinic.models import (
    ACTIVE_APPOINTMENT_STATUSES,
    Appointment,
    AppointmentStatus,
    AuditAction,
    Clinic,
    HistorySource,
    Patient,
    Practitioner,
    ProcedureRecord,
    ProcedureType,
    TreatmentArea,
)
from clinic.services import appointment_version, unchanged_since
from core.compiled import CompiledQuery, columns, insert_rows, instances
from core.errors import (
    DomainError,
    ErrorCode,
    InvalidInput,
    InvalidTransition,
    NotAllowed,
    PreconditionFailed,
    Refused,
)
from core.ids import parse_uuid
from core.timeutils import require_aware, require_whole_minute
from scheduler import rules, selectors, versioned
from scheduler.availability import AvailabilityCode, Schedule, Slot, availability_violation
from scheduler.lifecycle import Actor, Change, appointment_freed, lock_patient, record, require_allowed, transition

# Reasons go into the audit trail; long enough for a clinical note, bounded all the same.
MAX_REASON_LENGTH = 2000


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
    rulebook_version: str = ""  # the version of the organisation's rule book it was checked against
    # A move keeps a clinician's clearance: the relative contraindications already cleared for the appointment.
    cleared_rules: frozenset[str] = frozenset()

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
        if self.evaluation.outcome == rules.Outcome.PENDING_CLEARANCE and not self.needs_clearance:
            return rules.Outcome.CONFIRMED  # every rule that asks for clearance was cleared already
        return self.evaluation.outcome

    @property
    def needs_clearance(self) -> tuple[rules.Violation, ...]:
        """The relative contraindications that hold the booking for a clinician: those not cleared already."""
        return tuple(v for v in self.evaluation.needs_clearance if not is_cleared(v, self.cleared_rules))

    @property
    def kept_clearance(self) -> tuple[rules.Violation, ...]:
        """The relative contraindications a clinician cleared for the appointment, which a move keeps."""
        return tuple(v for v in self.evaluation.needs_clearance if is_cleared(v, self.cleared_rules))

    @property
    def earliest_eligible_start(self) -> datetime | None:
        return self.evaluation.earliest_eligible_start


class UnableToBook(Refused):
    """A blocking rule, an absolute contraindication or a taken slot forbids it (HTTP 409)."""

    def __init__(self, check: BookingCheck) -> None:
        first = check.blocking[0].message if check.blocking else "The booking is not possible."
        super().__init__(ErrorCode.BOOKING_REFUSED, first)
        self.check = check


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
    clinic: Clinic  # where it takes place: the candidates' clinic, one of the patient's organisation's

    @property
    def tz(self):
        return self.clinic.tz


# --- Validation --------------------------------------------------------------------------


def _catalogue() -> tuple[dict[str, ProcedureType], dict[str, TreatmentArea]]:
    """Procedures and areas by code, kept per process under the configuration version."""
    return versioned.cached(
        "booking-catalogue",
        lambda: ({p.code: p for p in ProcedureType.objects.all()}, {a.code: a for a in TreatmentArea.objects.all()}),
    )


def _procedure(code: str) -> ProcedureType:
    procedures = _catalogue()[0]
    procedure = procedures.get(code) if code else None
    if procedure is None:
        bookable = (c for c, p in procedures.items() if p.bookable)
        raise InvalidInput.unknown_code(
            ErrorCode.UNKNOWN_PROCEDURE,
            what="procedure",
            given=code,
            known=bookable,
            field="procedure",
            known_as="Bookable",
        )
    if not procedure.bookable:
        raise InvalidInput(
            ErrorCode.PROCEDURE_NOT_BOOKABLE, f"{procedure.name} is not a bookable procedure.", field="procedure"
        )
    return procedure


def _area(code: str | None) -> TreatmentArea | None:
    if not code:
        return None
    areas = _catalogue()[1]
    area = areas.get(code)
    if area is None:
        raise InvalidInput.unknown_code(
            ErrorCode.UNKNOWN_AREA, what="treatment area", given=code, known=areas, field="area"
        )
    return area


def _as_queryset(within) -> QuerySet[Clinic] | None:
    """The caller's clinics as a queryset: `within` is one already, a list of their ids, or None (any clinic)."""
    if within is None or isinstance(within, QuerySet):
        return within
    return Clinic.objects.filter(pk__in=list(within))


def _named_clinic(value, patient: Patient, within) -> Clinic:
    """The clinic a caller named, by id or code: one of theirs (`within`, None for any) and of the patient's
    organisation."""
    within = _as_queryset(within)
    pk = parse_uuid(value)
    # A caller without a scope learns of no clinic outside the patient's organisation.
    clinics = Clinic.objects.filter(organisation_id=patient.organisation_id) if within is None else within
    clinic = clinics.filter(Q(code=value) | Q(pk=pk) if pk else Q(code=value)).first()
    if clinic is None:
        raise InvalidInput("unknown_clinic", "There is no such clinic.", field="clinic")
    if clinic.organisation_id != patient.organisation_id:
        raise InvalidInput("clinic_mismatch", "The patient belongs to another organisation's clinics.", field="clinic")
    return clinic


def _default_clinic_id(patient: Patient, within, *, required: bool = True):
    """Neither clinic nor practitioner named: the patient's home clinic when the caller may book there, else the
    caller's one clinic of the patient's organisation (one query); a caller of several, none the home clinic, must
    say which (`required`), else it is the home clinic. No query when the caller's clinics are given as ids that hold
    the home clinic (an API client's scope, `api.access.Caller.scope`): the home clinic is always one of the patient's
    organisation (`Patient.clean`; a clinic with patients keeps its organisation, `Clinic._move_refusal`)."""
    if within is None:
        return patient.clinic_id
    if not isinstance(within, QuerySet) and patient.clinic_id in within:
        return patient.clinic_id
    within = _as_queryset(within)
    first_two = list(
        within.filter(organisation_id=patient.organisation_id)
        .order_by(Case(When(pk=patient.clinic_id, then=0), default=1), "pk")
        .values_list("pk", flat=True)[:2]
    )
    if first_two and (first_two[0] == patient.clinic_id or len(first_two) == 1):
        return first_two[0]
    if not required:
        return patient.clinic_id
    raise InvalidInput("clinic_required", "Say at which clinic the appointment takes place.", field="clinic")


def _unknown_practitioner() -> InvalidInput:
    return InvalidInput(
        ErrorCode.UNKNOWN_PRACTITIONER, "There is no such practitioner at this clinic.", field="practitioner"
    )


def _named_practitioner(pk, within) -> Practitioner | None:
    """The practitioner a caller named, among the caller's clinics (`within`, None for any), active or not."""
    within = _as_queryset(within)
    if not pk:
        return None
    named = Practitioner.objects.filter(pk=pk).select_related("clinic")
    return (named.filter(clinic__in=within) if within is not None else named).first()


def _why_not(pk, procedure: ProcedureType, patient: Patient, clinic_id, within) -> InvalidInput:
    """Why the named practitioner could not be taken (after the one query that takes them found nobody).

    With no scope and a clinic given (the appointment's or the plan's own, a desk's), the clinic is read first and the
    practitioner looked for there only: one who works elsewhere, in this organisation or another, is unknown at the
    cost of one who never was (the same statements), so that how long a refusal takes confirms no other tenant's
    ids."""
    clinic = None
    if within is None and clinic_id is not None:
        clinic = _named_clinic(clinic_id, patient, None)  # raises when the clinic itself is wrong
        within = [clinic.pk]
    practitioner = _named_practitioner(pk, within)
    if practitioner is None:
        return _unknown_practitioner()
    if clinic_id is not None:
        clinic = clinic or _named_clinic(clinic_id, patient, within)  # raises when the clinic itself is wrong
        if practitioner.clinic_id != clinic.pk:  # the caller's scope holds both: tell them which clinic is wrong
            return InvalidInput("clinic_mismatch", "The practitioner works at another clinic.", field="clinic")
    if practitioner.clinic.organisation_id != patient.organisation_id:
        return _unknown_practitioner()
    if not practitioner.is_active:
        # Known to the caller (in their clinics): a visit's own practitioner, switched off since, kept by a move that
        # names nobody. The code stays the contract's; the words say what to do.
        return InvalidInput(
            ErrorCode.UNKNOWN_PRACTITIONER,
            f"{practitioner.name} no longer takes bookings: choose another practitioner.",
            field="practitioner",
        )
    return InvalidInput(
        ErrorCode.PRACTITIONER_DOES_NOT_DO_PROCEDURE,
        f"{practitioner.name} does not do {procedure.name}.",
        field="practitioner",
    )


def _named_who_may_book(organisation_id, pk, procedure: str, clinic_ids=None) -> QuerySet[Practitioner]:
    """The named practitioner if they may take a booking: active, at a clinic of the patient's organisation (and
    among `clinic_ids`, the caller's, when given), doing the procedure."""
    query = Practitioner.objects.filter(
        is_active=True, clinic__organisation_id=organisation_id, pk=pk, procedures=procedure
    )
    return query if clinic_ids is None else query.filter(clinic_id__in=clinic_ids)


def _compiled_named(*, lock: bool, scoped: bool) -> CompiledQuery:
    def build(organisation_id, pk, procedure, *clinic_ids):
        query = _named_who_may_book(organisation_id, pk, procedure, clinic_ids[0] if scoped else None)
        if lock:
            query = query.select_for_update(of=("self",))
        return query.values_list(*columns(Practitioner, "clinic"))

    return CompiledQuery(build)


# Every booking and check with a named practitioner takes them so: compiled once per connection, per whether it
# locks and the number of the caller's clinics (core.compiled), instead of the joins built afresh each time.
_NAMED = {
    (lock, scoped): _compiled_named(lock=lock, scoped=scoped) for lock in (False, True) for scoped in (False, True)
}


def _candidates(
    patient: Patient,
    procedure: ProcedureType,
    practitioner_id,
    *,
    lock: bool,
    clinic_id=None,
    within=None,
) -> list[Practitioner]:
    """The practitioners who may take the booking, locked in primary-key order when writing; where it takes place
    is their clinic.

    That is `clinic_id` (an id or a code) when named; else the named practitioner's clinic; else the patient's
    home clinic, or the caller's one clinic of the patient's organisation. `within` (the caller's clinics; None
    for a caller who already chose an allowed clinic) bounds every choice, and the clinic is always one of the
    patient's organisation. A named practitioner is taken (and locked) in one query; the queries that say why
    not run only when it finds nobody. `within` may also be a list of the caller's clinics' ids (then a named
    practitioner is taken by a compiled statement).
    """
    pk = parse_uuid(practitioner_id)
    if pk is not None and clinic_id is None and not isinstance(within, QuerySet):
        args = [patient.organisation_id, pk, procedure.code]
        if within is not None:
            args.append(sorted(within))
        found = instances(_NAMED[(lock, within is not None)].rows(*args), Practitioner, "clinic")
        if not found:
            raise _why_not(pk, procedure, patient, clinic_id, within)
        return found
    scope = within  # as given: the default clinic is found without a query when they are ids holding the home clinic
    within = _as_queryset(within)
    query = Practitioner.objects.filter(is_active=True, clinic__organisation_id=patient.organisation_id)
    query = query.select_related("clinic")
    if within is not None:
        query = query.filter(clinic__in=within)
    if practitioner_id is not None:
        pk = parse_uuid(practitioner_id)
        query = query.filter(pk=pk, procedures=procedure)
        if clinic_id is not None:
            named_pk = parse_uuid(clinic_id)
            query = query.filter(
                Q(clinic__code=clinic_id) | Q(clinic_id=named_pk) if named_pk else Q(clinic__code=clinic_id)
            )
        if lock:
            query = query.select_for_update(of=("self",))
        found = list(query) if pk else []
        if not found:
            raise _why_not(pk, procedure, patient, clinic_id, within)
        return found
    if clinic_id is not None and within is None and parse_uuid(clinic_id):
        place = parse_uuid(clinic_id)  # chosen by a caller bound to it (the front desk, a plan): no look-up
    elif clinic_id is not None:
        place = _named_clinic(clinic_id, patient, within).pk
    else:
        place = _default_clinic_id(patient, scope)
    query = query.filter(clinic_id=place, procedures=procedure).order_by("pk")
    if lock:
        query = query.select_for_update(of=("self",))
    found = list(query)
    if not found:
        raise InvalidInput(
            ErrorCode.NO_PRACTITIONER_FOR_PROCEDURE,
            f"No practitioner at this clinic does {procedure.name}.",
            field="procedure",
        )
    return found


def practitioners_for(
    *, patient: Patient, procedure_code: str, practitioner_id=None, lock: bool = False, clinic_id=None, within=None
):
    """Who may take `procedure_code` for the patient (one, when named; at `clinic_id`, when given), locked in key
    order when writing: what a booking would choose from, for services that book several at once (a plan)."""
    return _candidates(
        patient, _procedure(procedure_code), practitioner_id, lock=lock, clinic_id=clinic_id, within=within
    )


def booking_clinic(*, patient: Patient, clinic_id=None, practitioner_id=None, within=None) -> Clinic:
    """Where a booking for the patient would take place (see `_candidates`), for a caller who needs it before
    booking or searching (a plan's dry run, the zone of an availability answer); the same checks and errors."""
    if practitioner_id is not None:
        practitioner = _named_practitioner(parse_uuid(practitioner_id), within)
        if practitioner is None:
            raise _unknown_practitioner()
        if clinic_id is None:
            if practitioner.clinic.organisation_id != patient.organisation_id:
                raise _unknown_practitioner()
            return practitioner.clinic
        clinic = _named_clinic(clinic_id, patient, within)
        if practitioner.clinic_id != clinic.pk:
            raise InvalidInput("clinic_mismatch", "The practitioner works at another clinic.", field="clinic")
        return clinic
    if clinic_id is not None:
        return _named_clinic(clinic_id, patient, within)
    return Clinic.objects.get(pk=_default_clinic_id(patient, within))


def recording_clinic(*, patient: Patient, clinic_id=None, within=None) -> Clinic:
    """The clinic recording a procedure for the patient, whose zone gives it its day (docs/rules.md): the one named
    (checked as a booking's), else where a booking would take place, else (a caller of several sister sites naming
    none) the patient's home clinic."""
    if clinic_id is not None:
        return _named_clinic(clinic_id, patient, within)
    return Clinic.objects.get(pk=_default_clinic_id(patient, within, required=False))


def area_for(code: str | None) -> TreatmentArea | None:
    """The treatment area of `code` (None for none), or the booking's 400 naming `area`."""
    return _area(code)


def _request(
    *,
    patient: Patient,
    procedure_code: str,
    start_at: datetime,
    area_code: str | None,
    practitioner_id,
    end_at: datetime | None,
    now: datetime,
    lock: bool,
    clinic_id=None,
    within=None,
) -> _Request:
    procedure = _procedure(procedure_code)
    # Where and with whom, before when: a wrong clinic or practitioner is named first, as it always was.
    candidates = _candidates(patient, procedure, practitioner_id, lock=lock, clinic_id=clinic_id, within=within)
    area = _area(area_code)
    start = require_aware(start_at, field="start")
    require_whole_minute(start, field="start")
    if start < now:
        raise InvalidInput(
            ErrorCode.START_IN_PAST, "That time has already passed; choose a time in the future.", field="start"
        )
    if end_at is None:
        end = start + timedelta(minutes=procedure.duration_minutes)
    else:
        end = require_aware(end_at, field="end")
        require_whole_minute(end, field="end")
        if end <= start:
            raise InvalidInput(ErrorCode.END_BEFORE_START, "The end must come after the start.", field="end")
    return _Request(patient, procedure, area, start, end, candidates, candidates[0].clinic)


# --- The check ---------------------------------------------------------------------------------


def _next_slot(
    req: _Request,
    timeline: rules.Timeline,
    rulebook: rules.RuleBook,
    from_at: datetime | None,
    ignore: frozenset[str],
    ignore_appointment_id,
) -> Slot | None:
    if from_at is None:
        return None
    tz = req.tz
    until = from_at + timedelta(days=settings.BOOKING_SEARCH_DAYS)
    duration = req.end_at - req.start_at
    schedule = Schedule(
        req.candidates,
        tz,
        from_at,
        until + duration,
        ignore_appointment_id=ignore_appointment_id,
        patient_id=req.patient.pk,
    )
    blocked = rules.blocked_ranges(
        timeline,
        rulebook,
        rules.Proposal(req.procedure.code, from_at, req.area.code if req.area else None, ignore),
        tz,
        until,
    )
    step = timedelta(minutes=settings.BOOKING_SLOT_STEP_MINUTES)
    return next(
        schedule.free_slots(duration=duration, step=step, window_start=from_at, window_end=until, blocked=blocked), None
    )


def clearance_key(violation: rules.Violation) -> str | None:
    """What a clinician cleared, whoever's wording of the rule: the condition or medication (of the booking's own
    procedure), e.g. `condition:eczema`. An organisation's rule standing in for a default (its note reworded, say)
    has an id of its own, and deleting it brings the default's back: a clearance kept by rule id alone was lost
    either way, and the booking went back to wait for a clinician over what was cleared already."""
    ref = violation.conflicts_with
    return f"{ref.kind}:{ref.code}" if violation.kind == "contraindication" and ref is not None else None


def is_cleared(violation: rules.Violation, cleared: frozenset[str]) -> bool:
    """Whether a clearance (`cleared_rules`: the rule ids and the keys it recorded) covers this relative
    contraindication."""
    return violation.rule_id in cleared or clearance_key(violation) in cleared


def cleared_rules(appointment: Appointment | None) -> frozenset[str]:
    """What the appointment's clearance covers: the rule ids it was given for and, since 5 December 2026, their
    keys (`clearance_key`); none when it was never cleared."""
    if appointment is None or not appointment.cleared_at:
        return frozenset()
    details = appointment.clearance_details or {}
    return frozenset([*details.get("rules", []), *details.get("keys", [])])


def _evaluate(req: _Request, ignore: frozenset[str]) -> tuple[rules.Timeline, rules.RuleBook, rules.Evaluation]:
    """The patient's timeline, their organisation's rule book, and the rules' verdict on the request."""
    timeline = selectors.timeline_for_patient(req.patient.pk)
    rulebook = selectors.rulebook_load(req.patient.organisation_id)
    evaluation = rules.evaluate(
        timeline,
        rulebook,
        rules.Proposal(req.procedure.code, req.start_at, req.area.code if req.area else None, ignore),
        req.tz,
    )
    return timeline, rulebook, evaluation


def _check(req: _Request, *, ignore_appointment: Appointment | None = None) -> BookingCheck:
    tz = req.tz
    ignore = frozenset({str(ignore_appointment.pk)}) if ignore_appointment else frozenset()
    ignore_id = ignore_appointment.pk if ignore_appointment else None
    timeline, rulebook, evaluation = _evaluate(req, ignore)
    schedule = Schedule(
        req.candidates, tz, req.start_at, req.end_at, ignore_appointment_id=ignore_id, patient_id=req.patient.pk
    )
    # Locks are taken in primary-key order; the choice follows the order slots are offered in (by name).
    ordered = sorted(req.candidates, key=lambda p: (p.name, str(p.pk)))
    chosen = next((p for p in ordered if schedule.is_free(p, req.start_at, req.end_at)), None)
    availability: tuple[rules.Violation, ...] = ()
    if chosen is None:
        if len(req.candidates) == 1:
            availability = tuple(schedule.problems(req.candidates[0], req.start_at, req.end_at))
        else:
            availability = (
                availability_violation(
                    AvailabilityCode.NO_PRACTITIONER,
                    f"No practitioner who does {req.procedure.name} is free at that time.",
                ),
            )
    busy = schedule.patient_problem(req.start_at, req.end_at)
    if busy is not None:
        availability += (busy,)
    check = BookingCheck(
        evaluation,
        availability,
        chosen,
        req.start_at,
        req.end_at,
        tz,
        rulebook_version=rulebook.version,
        cleared_rules=cleared_rules(ignore_appointment),
    )
    if not check.eligible:
        check = replace(
            check,
            next_available_slot=_next_slot(
                req, timeline, rulebook, evaluation.earliest_eligible_start, ignore, ignore_id
            ),
        )
    return check


@versioned.within_snapshot
def appointment_check(
    *,
    patient: Patient,
    procedure_code: str,
    start_at: datetime,
    now: datetime,
    area_code: str | None = None,
    practitioner_id=None,
    end_at: datetime | None = None,
    clinic_id=None,
    within: QuerySet[Clinic] | list | None = None,
) -> BookingCheck:
    """A dry run: exactly what booking would give, writing nothing."""
    req = _request(
        patient=patient,
        procedure_code=procedure_code,
        start_at=start_at,
        area_code=area_code,
        practitioner_id=practitioner_id,
        end_at=end_at,
        now=now,
        lock=False,
        clinic_id=clinic_id,
        within=within,
    )
    return _check(req)


# --- Writes ------------------------------------------------------------------------------------------
# Booking creates an appointment; every other write is a scheduler.lifecycle transition.


def _lost_race(check: BookingCheck, patient_busy: bool) -> UnableToBook:
    if patient_busy:
        lost = availability_violation(
            AvailabilityCode.PATIENT_BUSY, "The patient was just booked elsewhere at that time."
        )
    else:
        lost = availability_violation(AvailabilityCode.SLOT_TAKEN, "That slot was just taken.")
    return UnableToBook(replace(check, availability=check.availability + (lost,)))


def _insert(check: BookingCheck, write) -> None:
    """Run `write()`; a lost race on a slot (the exclusion constraints) is a refusal, not a 500.

    No savepoint: the refusal rolls the whole booking back, so nothing after the failed write runs.
    """
    try:
        write()
    except IntegrityError as error:
        raise _lost_race(check, "appointment_patient_no_overlap" in str(error)) from error


def _insert_new(check: BookingCheck, appointment: Appointment) -> None:
    """Insert a new appointment; a lost race on the slot is a refusal that leaves the transaction usable.

    On PostgreSQL the insert is `ON CONFLICT DO NOTHING`, which covers the exclusion constraints (the
    practitioner's, the patient's): an overlapping booking committed meanwhile (by a writer that did not take
    the locks this one holds) makes it insert nothing and fail nothing, so a caller's transaction goes on and
    can store the refusal. Elsewhere (SQLite has no exclusion constraints: overlaps are refused under its
    write lock) it is a plain insert."""
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        appointment.save(force_insert=True)
        return
    if insert_rows([appointment], skip_conflicts=True) != 1:  # its SQL kept (core.compiled)
        overlapping = Appointment.objects.filter(
            status__in=ACTIVE_APPOINTMENT_STATUSES, start_at__lt=appointment.end_at, end_at__gt=appointment.start_at
        )
        if overlapping.filter(practitioner_id=appointment.practitioner_id).exists():
            raise _lost_race(check, patient_busy=False)
        if overlapping.filter(patient_id=appointment.patient_id).exists():
            raise _lost_race(check, patient_busy=True)
        # Not an overlap: some other constraint (none today) ignored the row. Not a refusal to hide.
        raise IntegrityError(f"The appointment {appointment.pk} was not inserted and no overlap explains it.")


@dataclass
class _Written:
    """Whether the booking has written its first row yet (`_booking_transaction`)."""

    done: bool = False


@contextmanager
def _booking_transaction():
    """The caller's transaction when there is one (a keyed API request's, a treatment plan's), else one of its
    own; no savepoint. A refusal before any write leaves the caller's transaction as it was (a booking refuses
    before it writes, and `_insert_new` never fails on a lost race). Anything else marks the innermost atomic
    block (the caller's transaction or savepoint) for rollback: a database error leaves a PostgreSQL
    transaction aborted (Django would not know, and a later COMMIT would silently roll back), and a booking
    half written must not commit with the caller's work."""
    written = _Written()
    with nullcontext() if transaction.get_connection().in_atomic_block else transaction.atomic():
        try:
            yield written
        except BaseException as error:
            if written.done or not isinstance(error, DomainError):
                transaction.set_rollback(True)
            raise


def _violation_summary(check: BookingCheck) -> list[dict]:
    return [{"code": str(v.code), "severity": str(v.severity), "rule": v.rule_id} for v in check.violations]


@versioned.within_snapshot
def appointment_book(
    *,
    patient: Patient,
    procedure_code: str,
    start_at: datetime,
    actor: Actor,
    now: datetime,
    area_code: str | None = None,
    practitioner_id=None,
    end_at: datetime | None = None,
    clinic_id=None,
    within: QuerySet[Clinic] | list | None = None,
) -> BookingResult:
    with _booking_transaction() as written:
        patient = lock_patient(patient.pk)
        req = _request(
            patient=patient,
            procedure_code=procedure_code,
            start_at=start_at,
            area_code=area_code,
            practitioner_id=practitioner_id,
            end_at=end_at,
            now=now,
            lock=True,
            clinic_id=clinic_id,
            within=within,
        )
        # Race condition: the re-check runs only now that patient and practitioners are locked.
        check = _check(req)
        if not check.eligible:
            raise UnableToBook(check)
        status = (
            AppointmentStatus.PENDING_CLEARANCE
            if check.outcome == rules.Outcome.PENDING_CLEARANCE
            else AppointmentStatus.CONFIRMED
        )
        appointment = Appointment(
            clinic=req.clinic,
            patient=patient,
            practitioner=check.practitioner,
            procedure=req.procedure,
            area=req.area,
            start_at=req.start_at,
            end_at=req.end_at,
            status=status,
        )
        _insert_new(check, appointment)
        written.done = True
        record(
            appointment,
            AuditAction.BOOKED,
            actor,
            now,
            details={
                "start_at": req.start_at.isoformat(),
                "status": status,
                "violations": _violation_summary(check),
                "rulebook_version": check.rulebook_version,
            },
        )
        # Its one change so far is this booking (its one audit entry, `appointment.created`'s sequence): what its
        # answer shows, known without a statement on the booking's path.
        appointment.change_sequence = 1
    return BookingResult(appointment, check)


def _reschedule_request(
    appointment: Appointment, patient: Patient, start_at: datetime, practitioner_id, now: datetime, *, lock: bool
) -> _Request:
    require_allowed(appointment, AuditAction.RESCHEDULED)
    start = require_aware(start_at, field="start")
    return _request(
        patient=patient,
        procedure_code=appointment.procedure_id,
        start_at=start,
        area_code=appointment.area_id,
        practitioner_id=practitioner_id or appointment.practitioner_id,
        end_at=start + (appointment.end_at - appointment.start_at),
        now=now,
        lock=lock,
        clinic_id=appointment.clinic_id,  # a move stays at its clinic
    )


@versioned.within_snapshot
def appointment_reschedule_check(
    *, appointment: Appointment, start_at: datetime, now: datetime, practitioner_id=None
) -> BookingCheck:
    """A dry run of a reschedule: the same checks, leaving the appointment itself out."""
    req = _reschedule_request(appointment, appointment.patient, start_at, practitioner_id, now, lock=False)
    return _check(req, ignore_appointment=appointment)


@versioned.within_snapshot
def appointment_reschedule(
    *,
    appointment: Appointment,
    start_at: datetime,
    actor: Actor,
    now: datetime,
    practitioner_id=None,
    reason: str = "",
    drawn: tuple[datetime, str | None] | None = None,
    made_from: Iterable[str] | None = None,
) -> BookingResult:
    """Move it, checked as a booking is. What the move was made from, compared under the locks so that two moves
    made from one reading at once are told apart (one moves, the other is refused with nothing moved: 412
    `record_changed`, it would undo the first unseen): `drawn`, where the visit was and with whom when the desk's
    page was drawn (start, practitioner id or None), refused if someone has moved it since; `made_from`, the
    versions an API caller's If-Match accepts (`appointment_version`, the appointment's ETag), refused if the
    appointment is none of them. The move compares these itself, in `apply` (it passes no `made_from` to
    `transition`), so that its own 400s (a start in the past) come first. A move that would change nothing (the
    same move sent twice: the visit already where it asks, or refused by the rules there) is refused by neither,
    and writes nothing; one that would change anything, even only the status, is compared.
    """
    checked: list[BookingCheck] = []

    def apply(current: Appointment, patient: Patient) -> Change:
        # What was asked is read first (a start in the past is a 400 whatever the If-Match, as for every write).
        req = _reschedule_request(current, patient, start_at, practitioner_id, now, lock=True)
        # Race condition: checked under the patient and practitioner locks.
        check = _check(req, ignore_appointment=current)
        checked.append(check)
        # The dry run (appointment_reschedule_check) answers by the same outcome: a clearance is kept.
        status = (
            AppointmentStatus.CONFIRMED
            if check.outcome == rules.Outcome.CONFIRMED
            else AppointmentStatus.PENDING_CLEARANCE
        )
        if _already_there(current, start_at, practitioner_id) and (
            not check.eligible or (req.end_at, status) == (current.end_at, current.status)
        ):
            # The same move sent again (its answer lost), the visit perhaps flagged since: it is where it was asked
            # to be; nothing to refuse, nothing to change (the answer shows it as it is).
            return Change(update_fields=[], unchanged=True)
        if drawn is not None and moved_since(current, drawn):
            raise PreconditionFailed(
                ErrorCode.RECORD_CHANGED, "Someone else moved this visit since the page was opened: nothing moved."
            )
        unchanged_since(
            lambda: appointment_version(current),
            made_from,
            "This appointment changed since it was read (the ETag If-Match names): nothing moved. Read it again.",
        )
        if not check.eligible:
            raise UnableToBook(check)
        before = {
            "start_at": current.start_at.isoformat(),
            "practitioner": str(current.practitioner_id),
            "status": current.status,
        }
        previous = {"start_at": current.start_at, "practitioner": current.practitioner_id, "status": current.status}
        current.start_at, current.end_at = req.start_at, req.end_at
        current.practitioner = check.practitioner
        current.status = status
        current.review_reasons = []  # a move re-checks everything: nothing stands any more
        fields = ["start_at", "end_at", "practitioner", "status", "review_reasons"]
        tz = req.clinic.tz
        if current.checked_in_at and current.checked_in_at.astimezone(tz).date() != req.start_at.astimezone(tz).date():
            # The arrival was on another day than the visit's now: the patient has not arrived for it (FHIR's
            # `arrived`; check-in again on its day). A move later the same day keeps it: they are here.
            current.checked_in_at = None
            fields.append("checked_in_at")
        return Change(
            update_fields=fields,
            reason=reason,
            previous=previous,
            details={
                "from": before,
                "to": {
                    "start_at": req.start_at.isoformat(),
                    "practitioner": str(check.practitioner.pk),
                    "status": status,
                },
                "violations": _violation_summary(check),  # as a booking's: the warnings it was moved with
                "rulebook_version": check.rulebook_version,
            },
            save=lambda write: _insert(check, write),
        )

    current = transition(
        appointment=appointment,
        action=AuditAction.RESCHEDULED,
        actor=actor,
        now=now,
        apply=apply,
        after=_others_rechecked(now, "moved"),
    )
    return BookingResult(current, checked[-1])


def _already_there(current: Appointment, start_at: datetime, practitioner_id) -> bool:
    """Whether the visit is already where, and with whom, a move asks (the same move sent again). The patient's
    confirm page asks the same of the dry run's answer (portal.views._already_there) to offer no move."""
    asked = parse_uuid(practitioner_id) if practitioner_id else current.practitioner_id
    return start_at == current.start_at and asked == current.practitioner_id


def moved_since(current: Appointment, drawn: tuple[datetime, str | None]) -> bool:
    """Whether the visit is no longer where, or with whom, it was when the page was drawn."""
    drawn_start, drawn_practitioner = drawn
    return drawn_start != current.start_at or (
        drawn_practitioner is not None and drawn_practitioner != str(current.practitioner_id)
    )


def _others_rechecked(now: datetime, what: str):
    """After a booking is cancelled, moved or missed: the patient's bookings it flagged (too soon after it) may be
    free now; they are checked again, as after a record change (scheduler.recheck, through the lifecycle's seam),
    under the same lock."""

    def after(current: Appointment) -> None:
        appointment_freed(appointment=current, now=now, what=what)

    return after


@versioned.within_snapshot
def appointment_cancel(
    *,
    appointment: Appointment,
    actor: Actor,
    now: datetime,
    reason: str = "",
    others_rechecked: bool = True,
    made_from: Iterable[str] | None = None,
    drawn: tuple[datetime, str | None] | None = None,
) -> Appointment:
    """Cancel it. `others_rechecked=False`: the patient's bookings it flagged are not re-checked here; the caller
    cancelling several at once (a whole course) re-checks once, when all are cancelled (`appointment_freed`), so
    that a booking about to be cancelled too is not first released or flagged again. `made_from`: the versions an
    API caller's If-Match accepts (`appointment_version`); someone having changed the appointment since (moved it,
    say), nothing is cancelled (412 `record_changed`), compared under the locks (scheduler.lifecycle.transition, as
    for every status change). `drawn`: where the visit was, and with whom, on the page a person pressed "cancel" on
    (the desk's, the patient's); moved since (`moved_since`), nothing is cancelled (412): they see the new time
    first."""

    def apply(current: Appointment, patient: Patient) -> Change:
        if drawn is not None and moved_since(current, drawn):
            raise PreconditionFailed(ErrorCode.RECORD_CHANGED, "This visit moved since the page was opened.")
        current.status = AppointmentStatus.CANCELLED
        current.cancelled_at = now
        current.cancel_reason = reason
        return Change(update_fields=["status", "cancelled_at", "cancel_reason"], reason=reason)

    return transition(
        appointment=appointment,
        action=AuditAction.CANCELLED,
        actor=actor,
        now=now,
        apply=apply,
        after=_others_rechecked(now, "cancelled") if others_rechecked else None,
        made_from=made_from,
    )


def _booked(appointment: Appointment, patient: Patient) -> _Request:
    """A booked appointment as the request that would book it now."""
    return _Request(
        patient,
        appointment.procedure,
        appointment.area,
        appointment.start_at,
        appointment.end_at,
        [appointment.practitioner],
        appointment.clinic,
    )


def _recheck(appointment: Appointment, patient: Patient) -> BookingCheck:
    return _check(_booked(appointment, patient), ignore_appointment=appointment)


@versioned.within_snapshot
def appointment_recheck(*, appointment: Appointment) -> BookingCheck:
    """The rules as they stand now for a booked appointment: why it is pending, or what it would break now.

    The rules only: the calendars (which a booked appointment already holds its place in) are not read, nor is a
    next free slot looked for; a re-check after a rule or record change and the desk's reasons use nothing else."""
    req = _booked(appointment, appointment.patient)
    _, rulebook, evaluation = _evaluate(req, frozenset({str(appointment.pk)}))
    return BookingCheck(
        evaluation,
        (),
        appointment.practitioner,
        req.start_at,
        req.end_at,
        req.tz,
        rulebook_version=rulebook.version,
        cleared_rules=cleared_rules(appointment),
    )


def _require_clinician(actor: Actor, what: str) -> None:
    if not actor.clinical:
        raise NotAllowed(ErrorCode.CLINICIAN_REQUIRED, f"Only a clinician can {what}.")


def _require_started(current: Appointment, now: datetime, message: str) -> None:
    if current.start_at > now:
        raise InvalidTransition(ErrorCode.NOT_STARTED, message)


@versioned.within_snapshot
def appointment_clear(
    *, appointment: Appointment, actor: Actor, now: datetime, reason: str, made_from: Iterable[str] | None = None
) -> Appointment:
    """A clinician accepts the relative contraindications of a pending booking, with a reason."""
    _require_clinician(actor, "clear a contraindication")
    if not reason or not reason.strip():
        raise InvalidInput(ErrorCode.REASON_REQUIRED, "Say why the booking is cleared.", field="reason")
    if len(reason.strip()) > MAX_REASON_LENGTH:
        raise InvalidInput(
            ErrorCode.REASON_TOO_LONG, f"Keep the reason under {MAX_REASON_LENGTH} characters.", field="reason"
        )

    def apply(current: Appointment, patient: Patient) -> Change:
        # Race condition: the patient's history may have changed since booking; re-check under the lock.
        check = _recheck(current, patient)
        if check.evaluation.blocking:
            raise UnableToBook(replace(check, availability=()))
        ids = sorted({v.rule_id for v in check.evaluation.needs_clearance})
        keys = sorted({key for v in check.evaluation.needs_clearance if (key := clearance_key(v))})
        current.status = AppointmentStatus.CONFIRMED
        current.cleared_at = now
        current.cleared_by = actor.user
        current.clearance_reason = reason.strip()
        current.clearance_details = {"rules": ids, "keys": keys}
        return Change(
            update_fields=["status", "cleared_at", "cleared_by", "clearance_reason", "clearance_details"],
            reason=reason.strip(),
            details={"rules": ids, "keys": keys, "rulebook_version": check.rulebook_version},
        )

    return transition(
        appointment=appointment, action=AuditAction.CLEARED, actor=actor, now=now, apply=apply, made_from=made_from
    )


@versioned.within_snapshot
def appointment_complete(
    *, appointment: Appointment, actor: Actor, now: datetime, made_from: Iterable[str] | None = None
) -> Appointment:
    """Record the treatment as done: it enters the history, which starts post-care."""
    _require_clinician(actor, "mark a treatment completed")

    def apply(current: Appointment, patient: Patient) -> Change:
        _require_started(current, now, "An appointment cannot be completed before it starts.")
        current.status = AppointmentStatus.COMPLETED
        current.completed_at = now
        ProcedureRecord.objects.create(
            patient_id=current.patient_id,
            procedure_id=current.procedure_id,
            performed_at=current.start_at,
            area_id=current.area_id,
            source=HistorySource.CLINIC,
            appointment=current,
            clinic_id=current.clinic_id,
        )
        return Change(update_fields=["status", "completed_at"])

    return transition(
        appointment=appointment, action=AuditAction.COMPLETED, actor=actor, now=now, apply=apply, made_from=made_from
    )


@versioned.within_snapshot
def appointment_check_in(*, appointment: Appointment, actor: Actor, now: datetime) -> Appointment:
    """The patient has arrived: recorded once (and audited), on the appointment's own local day."""

    def apply(current: Appointment, patient: Patient) -> Change:
        if current.checked_in_at is not None:
            raise InvalidTransition(ErrorCode.NOT_CHECKABLE_IN, "The patient is already checked in.")
        tz = current.clinic.tz
        if current.start_at.astimezone(tz).date() != now.astimezone(tz).date():
            raise InvalidTransition(
                ErrorCode.NOT_CHECKABLE_IN, "A patient can be checked in only on the day of the appointment."
            )
        current.checked_in_at = now
        return Change(update_fields=["checked_in_at"])

    return transition(appointment=appointment, action=AuditAction.CHECKED_IN, actor=actor, now=now, apply=apply)


@versioned.within_snapshot
def appointment_mark_no_show(
    *, appointment: Appointment, actor: Actor, now: datetime, made_from: Iterable[str] | None = None
) -> Appointment:
    _require_clinician(actor, "mark a no-show")

    def apply(current: Appointment, patient: Patient) -> Change:
        _require_started(current, now, "A patient cannot miss an appointment that has not started.")
        current.status = AppointmentStatus.NO_SHOW
        return Change(update_fields=["status"])

    return transition(
        appointment=appointment,
        action=AuditAction.NO_SHOW,
        actor=actor,
        now=now,
        apply=apply,
        after=_others_rechecked(now, "missed (no-show)"),
        made_from=made_from,
    )


# --- Availability ------------------------------------------------------------------------------------------

MAX_AVAILABILITY_DAYS = 92


def appointment_slots(*, limit: int | None = None, **search) -> list[Slot]:
    """`free_appointment_slots` as a list: all of them, or the first `limit`."""
    found = free_appointment_slots(**search)
    return list(found) if limit is None else list(found[:limit])


@versioned.within_snapshot
def free_appointment_slots(
    *,
    patient: Patient,
    procedure_code: str,
    window_start: datetime,
    window_end: datetime,
    now: datetime,
    area_code: str | None = None,
    practitioner_id=None,
    ignore_appointment: Appointment | None = None,
    clinic_id=None,
    within: QuerySet[Clinic] | list | None = None,
) -> Sequence[Slot]:
    """Free slots in the window that are also interval-eligible for this patient, in time order.

    One pass: the engine's blocked ranges for the whole window, then the
    practitioners' calendars in memory; no engine call per slot. `ignore_appointment` is the booking being
    moved: left out of the calendars and the rules, and the slots are of its own length. Everything is read
    here; the slots are made a day at a time as they are read (`availability.FreeSlots`), so a page of a long
    window (the API's) makes only that page's days.
    """
    procedure = _procedure(procedure_code)
    area = _area(area_code)
    asked_from = require_aware(window_start, field="from")
    start = max(asked_from, rules.ceil_minute(now))  # slots in the past are not offered
    end = require_aware(window_end, field="to")
    if end <= asked_from:
        raise InvalidInput(ErrorCode.WINDOW_END_BEFORE_START, "`to` must come after `from`.", field="to")
    if end - start > timedelta(days=MAX_AVAILABILITY_DAYS):
        raise InvalidInput(
            ErrorCode.WINDOW_TOO_LONG, f"Ask for at most {MAX_AVAILABILITY_DAYS} days at a time.", field="to"
        )
    if end <= start:
        return []
    candidates = _candidates(patient, procedure, practitioner_id, lock=False, clinic_id=clinic_id, within=within)
    tz = candidates[0].clinic.tz
    # A move keeps the booking's own length (`_reschedule_request`), which the desk may have set longer or
    # shorter than the catalogue's: the times offered for it must fit that length.
    duration = (
        ignore_appointment.end_at - ignore_appointment.start_at
        if ignore_appointment is not None
        else timedelta(minutes=procedure.duration_minutes)
    )
    ignore = frozenset({str(ignore_appointment.pk)}) if ignore_appointment else frozenset()
    rulebook = selectors.rulebook_load(patient.organisation_id)
    blocked = rules.blocked_ranges(
        selectors.timeline_for_window(patient.pk, rulebook=rulebook, procedure=procedure.code, lo=start, hi=end),
        rulebook,
        rules.Proposal(procedure.code, start, area.code if area else None, ignore),
        tz,
        end,
    )
    schedule = Schedule(
        candidates,
        tz,
        start,
        end + duration,
        ignore_appointment_id=ignore_appointment.pk if ignore_appointment else None,
        patient_id=patient.pk,
    )
    return schedule.free_slot_list(
        duration=duration,
        step=timedelta(minutes=settings.BOOKING_SLOT_STEP_MINUTES),
        window_start=start,
        window_end=end,
        blocked=blocked,
    )
