"""Treatment plan services: propose a course, book it whole, re-plan from a session.

Proposing runs the pure planner (plans/planner.py) over the patient's timeline, the rule book and the
practitioners' free slots. Booking takes the same locks as a single booking (the patient, then the
practitioners in key order), plans or checks the proposal under them, and books every session through
scheduler.booking's own path in one transaction: all or none. Time comes in as `now`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

from django.conf import settings
from django.db import transaction

from clinic.models import Appointment, AppointmentStatus, Clinic, Patient, Practitioner, ProcedureType
from core.errors import ErrorCode, InvalidInput, NotFound, Refused
from plans import planner
from plans.models import PlanSession, PlanTemplate, TreatmentPlan
from plans.recalls import recalls_withdraw
from plans.selectors import session_holds_booking
from scheduler import booking, rules, selectors, versioned
from scheduler.availability import AvailabilityCode, Schedule, availability_violation, calendars_of
from scheduler.lifecycle import Actor, appointment_freed, lock_patient

# A long span of the calendar is read this many days at a time, as far as the planner goes.
_CHUNK = timedelta(days=7)


class UnableToPlan(Refused):
    """No arrangement of the course fits (HTTP 409): `obstacle` names the session and the rule or window."""

    def __init__(self, obstacle: planner.Obstacle, request: PlanRequest) -> None:
        super().__init__(ErrorCode.PLAN_INFEASIBLE, obstacle.message)
        self.obstacle = obstacle
        self.tz = request.tz
        self.violations = obstacle_violations(obstacle)
        # The contract: booking answers (201 and 409) carry the version of the rule book they were checked against:
        # the copy the plan was placed by (the snapshot's), not the database's latest, which a change committed since
        # may have moved.
        self.rulebook_version = _rulebook(request).version


def obstacle_violations(obstacle: planner.Obstacle) -> tuple[rules.Violation, ...]:
    """Why a session found no place, in the booking refusal's shape: the rules in the way, and, where the rules
    allow some days of its window and no one is free on them, the availability's own (as a single booking refused
    for want of a free practitioner says it)."""
    if obstacle.no_free_slot:
        return (*obstacle.violations, availability_violation(AvailabilityCode.NO_PRACTITIONER, obstacle.message))
    return obstacle.violations


class UnableToBookSession(Refused):
    """Session `index` cannot be booked (HTTP 409): `check` is the refusal a single booking would give."""

    def __init__(self, index: int, check: booking.BookingCheck) -> None:
        first = check.blocking[0].message if check.blocking else "The booking is not possible."
        super().__init__(ErrorCode.PLAN_REFUSED, f"Session {index} cannot be booked: {first}")
        self.index = index
        self.check = check


class ShownNoLongerHolds(Refused):
    """A re-plan shown to the caller is not where planning again under the locks puts the sessions (HTTP 409)."""

    def __init__(self) -> None:
        super().__init__(
            ErrorCode.PLAN_REFUSED,
            "The sessions shown are no longer where a re-plan puts them: the calendar changed since. Nothing was "
            "moved; see the re-plan as it can be made now.",
        )


@dataclass(frozen=True)
class PlanRequest:
    patient: Patient
    clinic: Clinic  # where the sessions take place
    template: PlanTemplate
    course: planner.Course
    candidates: list[Practitioner]
    preferences: planner.Preferences
    start_at: datetime

    @property
    def tz(self) -> tzinfo:
        return self.clinic.tz


@dataclass(frozen=True)
class Proposal:
    request: PlanRequest
    plan: planner.Plan
    rulebook_version: str  # the rule book the sessions were placed by (every decision records its version)


def _span_end(request: PlanRequest, after_day: date | None = None) -> datetime:
    """The latest a plan's last session can fall: the first session's year, then every maximum gap; the first
    counted from the session kept before a re-plan when that is later than its start (a course booked to begin a
    year out, re-planned today, still reads as far as its sessions can fall)."""
    first = request.start_at.date() if after_day is None else max(request.start_at.date(), after_day)
    day = first + timedelta(days=planner.HORIZON_DAYS)
    for _ in range(request.course.sessions):
        day = request.course.max_gap.add_to(day)
    return datetime.combine(day + timedelta(days=2), datetime.min.time(), tzinfo=UTC)


class _FreeSlots:
    """The planner's slot source over scheduler.availability: practitioners' free slots.

    Working hours and time off are read once for the whole horizon; each call then reads only the bookings of
    the span asked for (one query), a long span (a first session's year) a week at a time, lazily.
    """

    def __init__(self, request: PlanRequest, ignore_appointment_ids=(), after_day: date | None = None) -> None:
        self.request = request
        self.ignore = list(ignore_appointment_ids)
        self.step = timedelta(minutes=settings.BOOKING_SLOT_STEP_MINUTES)
        span_end = _span_end(request, after_day)
        self.calendars = calendars_of([p.pk for p in request.candidates], request.start_at, span_end)

    def _slots(self, lo: datetime, hi: datetime):
        schedule = Schedule(
            self.request.candidates,
            self.request.tz,
            lo,
            hi + self.request.course.duration,
            patient_id=self.request.patient.pk,
            ignore_appointment_ids=self.ignore,
            calendars=self.calendars,
        )
        return schedule.free_slots(
            duration=self.request.course.duration, step=self.step, window_start=lo, window_end=hi - rules.RESOLUTION
        )

    def __call__(self, lo: datetime, hi: datetime):
        while lo < hi:
            end = min(hi, lo + _CHUNK)
            yield from self._slots(lo, end)
            lo = end


# --- Input ----------------------------------------------------------------------------------------


def _spellings(code: str) -> list[str]:
    """`code` as given, then with `_` and `-` swapped: the catalogue's codes use `_` (`plasma_pen`), the shipped
    templates' `-` (`plasma-pen-course`), and a platform that writes one for the other means the same template."""
    return list(dict.fromkeys([code, code.replace("_", "-"), code.replace("-", "_")]))


def plan_template_get(code: str, *, organisation_id) -> PlanTemplate:
    """The template of `code` for an organisation's patient: the organisation's own, else the default; `code` as
    given first, else with `_` for `-` or `-` for `_` (_spellings). Unknown: a 400 naming the codes there are."""
    if not isinstance(code, str) or not code:
        raise InvalidInput(ErrorCode.UNKNOWN_PLAN_TEMPLATE, "Name a plan template by its code.", field="template")
    spellings = _spellings(code)
    templates = PlanTemplate.objects.for_organisation(organisation_id)
    found = {t.code: t for t in templates.filter(code__in=spellings).select_related("procedure")}
    for spelling in spellings:
        if spelling in found:
            return found[spelling]
    known = ", ".join(sorted(templates.values_list("code", flat=True).distinct()))
    raise InvalidInput(
        ErrorCode.UNKNOWN_PLAN_TEMPLATE,
        f"There is no plan template {code!r}." + (f" Templates: {known}." if known else " There are no templates."),
        field="template",
    )


def _planning_error(error: planner.PlanInputError, field_prefix: str = "") -> InvalidInput:
    field = {"value": "sessions", "unit": "sessions"}.get(error.field, error.field)
    return InvalidInput(ErrorCode.INVALID_PLAN, error.message, field=f"{field_prefix}{field}")


def start_of(start_from: date | datetime, tz: tzinfo, now: datetime, *, field: str = "start_from") -> datetime:
    """A plan's start: a local date (its first minute, or now when that is today) or an aware time, not past."""
    if isinstance(start_from, datetime):
        start = start_from.astimezone(UTC)
        if start < rules.ceil_minute(now) - rules.RESOLUTION:
            raise InvalidInput(ErrorCode.START_IN_PAST, "That time has already passed.", field=field)
        return max(rules.ceil_minute(start), rules.ceil_minute(now))
    if start_from < now.astimezone(tz).date():
        raise InvalidInput(ErrorCode.START_IN_PAST, "That day has already passed.", field=field)
    return max(rules.start_of_local_day(start_from, tz), rules.ceil_minute(now))


# The refusals of a practitioner look-up that mean "no one left to take it" (not a bad request) for a re-plan that
# names no practitioner of its own.
_NOBODY = frozenset(
    {
        ErrorCode.NO_PRACTITIONER_FOR_PROCEDURE,
        ErrorCode.UNKNOWN_PRACTITIONER,
        ErrorCode.PRACTITIONER_DOES_NOT_DO_PROCEDURE,
    }
)


def _request(
    *,
    patient: Patient,
    clinic: Clinic,
    template: PlanTemplate,
    start_at: datetime,
    practitioner_id=None,
    area_code: str | None = None,
    sessions: int | None = None,
    weekdays: frozenset[int] = frozenset(),
    times_of_day: frozenset[str] = frozenset(),
    lock: bool = False,
    nobody_is_infeasible: bool = False,
    procedure: ProcedureType | None = None,
    template_area: bool = True,
) -> PlanRequest:
    """`nobody_is_infeasible` (a re-plan whose caller named no practitioner of its own): no one at the clinic doing
    the procedure any more, or the plan's own practitioner no longer taking it, is not bad input but a course with
    no place: the planner is given no one and answers with the session it cannot place (docs/plans.md).

    `procedure` and `template_area=False` (a plan's re-plan): the course's sessions are of the procedure, and in the
    area (`area_code`, None: none), the plan was made for, not the template's as it may have been edited since; a new
    plan takes the template's (its area when `area_code` names none)."""
    if template_area and not area_code:
        area = template.area
    else:
        area = booking.area_for(area_code) if area_code else None
    procedure = procedure or template.procedure
    procedure_code = procedure.code
    try:
        course = planner.Course(
            procedure_code,
            template.sessions if sessions is None else sessions,
            template.min_gap,
            template.ideal_gap,
            template.max_gap,
            timedelta(minutes=procedure.duration_minutes),
            area.code if area else None,
        )
        preferences = planner.Preferences(
            str(practitioner_id) if practitioner_id else None, frozenset(weekdays), frozenset(times_of_day)
        )
    except planner.PlanInputError as error:
        raise _planning_error(error) from error
    try:
        candidates = booking.practitioners_for(
            patient=patient,
            procedure_code=procedure_code,
            practitioner_id=practitioner_id,
            lock=lock,
            clinic_id=clinic.pk,
        )
    except InvalidInput as error:
        if not nobody_is_infeasible or error.code not in _NOBODY:
            raise
        candidates = []
    if candidates and practitioner_id:
        preferences = planner.Preferences(str(candidates[0].pk), preferences.weekdays, preferences.times_of_day)
    return PlanRequest(patient, clinic, template, course, candidates, preferences, start_at)


def _rulebook(request: PlanRequest) -> rules.RuleBook:
    # Kept per process under the configuration version: within one service call (a snapshot) every read
    # is the same copy, so the version a proposal reports is the rule book it was placed by.
    return selectors.rulebook_load(request.patient.organisation_id)


def _plan(
    request: PlanRequest, *, first_index: int = 1, ignore: tuple = (), after: tuple[date, int] | None = None
) -> planner.Plan:
    """`after`: the session kept before a re-plan (its local date and index), which the first moved one follows."""
    after_day, after_index = after if after is not None else (None, None)
    rulebook = _rulebook(request)
    # Only the events within the rules' reach of the plan's span can stand against a session.
    return planner.plan_course(
        timeline=selectors.timeline_for_window(
            request.patient.pk,
            rulebook=rulebook,
            procedure=request.course.procedure,
            lo=request.start_at,
            hi=_span_end(request, after_day),
            clinics=True,  # a refusal names a sister site's booking in its way
        ),
        rulebook=rulebook,
        course=request.course,
        start_at=request.start_at,
        tz=request.tz,
        free_slots=_FreeSlots(request, ignore, after_day),
        preferences=request.preferences,
        first_index=first_index,
        ignore_event_ids=frozenset(str(pk) for pk in ignore),
        after_day=after_day,
        after_index=after_index,
    )


# --- Proposing and booking ---------------------------------------------------------------------------


@versioned.within_snapshot
def plan_propose(
    *, patient: Patient, clinic: Clinic, template: PlanTemplate, start_at: datetime, **options
) -> Proposal:
    """A dry run: where every session would go (at `clinic`), and why; writes nothing."""
    request = _request(patient=patient, clinic=clinic, template=template, start_at=start_at, **options)
    return Proposal(request, _plan(request), _rulebook(request).version)


@dataclass(frozen=True)
class Placement:
    """A session to book: where, with whom, and in which window."""

    index: int
    start_at: datetime
    practitioner_id: str | None
    window: planner.Window


def _placements_checked(request: PlanRequest, chosen: list[tuple[datetime, str | None]]) -> list[Placement]:
    """A proposal the caller chose (a dry run's sessions): the right number, each inside its window."""
    course, tz = request.course, request.tz
    if len(chosen) != course.sessions:
        raise InvalidInput(
            ErrorCode.INVALID_PLAN,
            f"The course has {course.sessions} sessions; the proposal gives {len(chosen)}.",
            field="proposal",
        )
    placements, previous = [], None
    first_day = request.start_at.astimezone(tz).date()
    for index, (start, practitioner_id) in enumerate(chosen, start=1):
        window = (
            planner.Window(first_day, first_day, first_day + timedelta(days=planner.HORIZON_DAYS))
            if previous is None
            else planner.Window(
                course.min_gap.add_to(previous), course.ideal_gap.add_to(previous), course.max_gap.add_to(previous)
            )
        )
        day = start.astimezone(tz).date()
        if not window.holds(day) or start < request.start_at:
            raise InvalidInput(
                ErrorCode.PLAN_SESSION_OUTSIDE_WINDOW,
                f"Session {index} must fall between {window.earliest} and {window.latest}.",
                field=f"proposal.{index - 1}.start",
            )
        # A line naming no practitioner is the plan's own (`practitioner`: every session with them), if it names one.
        placements.append(Placement(index, start, practitioner_id or request.preferences.practitioner_id, window))
        previous = day
    return placements


def _book_session(
    request: PlanRequest,
    index: int,
    start_at: datetime,
    practitioner_id,
    actor: Actor,
    now: datetime,
    *,
    proposed: bool = False,
) -> booking.BookingResult:
    """One session through the single-booking path (its locks and re-checks); a refusal names the session, and a
    practitioner or start the caller `proposed` for it that cannot be taken is named by its line
    (`proposal.N.practitioner`, `proposal.N.start`: docs/api.md's dotted fields), so a platform learns which session
    to change."""
    try:
        return booking.appointment_book(
            patient=request.patient,
            procedure_code=request.course.procedure,
            start_at=start_at,
            actor=actor,
            now=now,
            area_code=request.course.area,
            practitioner_id=practitioner_id,
            clinic_id=request.clinic.pk,
        )
    except booking.UnableToBook as refused:
        raise UnableToBookSession(index, refused.check) from refused
    except InvalidInput as error:
        named = [name for name in ("practitioner", "start") if name in error.errors]
        if not proposed or not named:
            raise
        line = {name: f"proposal.{index - 1}.{name}" for name in named}
        errors = {line.get(name, name): messages for name, messages in error.errors.items()}
        raise InvalidInput(error.code, error.message, field=line[named[0]], errors=errors, data=error.data) from error


def _book_sessions(
    request: PlanRequest, placements: list[Placement], actor: Actor, now: datetime, *, proposed: bool = False
) -> list[tuple[Placement, booking.BookingResult]]:
    """Book each session in turn; the first refusal ends all (the caller's transaction rolls back the rest)."""
    return [
        (p, _book_session(request, p.index, p.start_at, p.practitioner_id, actor, now, proposed=proposed))
        for p in placements
    ]


@dataclass(frozen=True)
class BookedPlan:
    """A plan booked whole, with each session's booking check by its index: what the booking said of it (its
    `warnings`, as a single booking's answer carries them)."""

    plan: TreatmentPlan
    checks: dict[int, booking.BookingCheck]


def plan_book(**kwargs) -> TreatmentPlan:
    """`plan_book_checked`, for a caller that needs only the plan."""
    return plan_book_checked(**kwargs).plan


@versioned.within_snapshot
def plan_book_checked(
    *,
    patient: Patient,
    clinic: Clinic,
    template: PlanTemplate,
    start_at: datetime,
    actor: Actor,
    now: datetime,
    chosen: list[tuple[datetime, str | None]] | None = None,
    **options,
) -> TreatmentPlan:
    """Book the whole course in one transaction, or nothing.

    Without `chosen` the course is planned under the locks; with it (the sessions a dry run proposed),
    each is re-checked as it is booked, so a slot taken since the dry run refuses the plan whole. The plan keeps
    the preferences it was made with (practitioner, weekdays, times of day) for its re-plans.
    """
    with transaction.atomic():
        patient = lock_patient(patient.pk)
        request = _request(patient=patient, clinic=clinic, template=template, start_at=start_at, lock=True, **options)
        if chosen is None:
            # Race condition: planned only now that the patient and the practitioners are locked.
            plan = _plan(request)
            if not plan.feasible:
                raise UnableToPlan(plan.obstacle, request)
            placements = [Placement(s.index, s.start_at, s.practitioner_id, s.window) for s in plan.sessions]
        else:
            placements = _placements_checked(request, chosen)
        treatment_plan = TreatmentPlan.objects.create(
            patient=patient,
            template=template,
            clinic=clinic,
            area_id=request.course.area,
            created_at=now,
            rulebook_version=_rulebook(request).version,
            practitioner_id=request.preferences.practitioner_id,
            weekdays=sorted(request.preferences.weekdays),
            times_of_day=sorted(request.preferences.times_of_day),
        )
        checks = {}
        for placement, result in _book_sessions(request, placements, actor, now, proposed=chosen is not None):
            PlanSession.objects.create(
                plan=treatment_plan,
                index=placement.index,
                appointment=result.appointment,
                earliest_on=placement.window.earliest,
                ideal_on=placement.window.ideal,
                latest_on=placement.window.latest,
                placed_on=placement.start_at.astimezone(request.tz).date(),
            )
            checks[placement.index] = result.check
    return BookedPlan(treatment_plan, checks)


# --- Re-planning --------------------------------------------------------------------------------------


def _kept_before(plan: TreatmentPlan, sessions: list[PlanSession], from_index: int) -> tuple[date, int] | None:
    """The local date and index of the latest session before a re-plan that is kept (booked, or done), which the
    moved sessions' gaps run from: a cancelled or missed session just before is passed over for the one kept before
    it. None for a re-plan from session 1, or when no earlier session holds a booking that counts."""
    kept = [s for s in sessions if s.index < from_index and session_holds_booking(s)]
    if not kept:
        return None
    return kept[-1].appointment.start_at.astimezone(plan.clinic.tz).date(), kept[-1].index


# What a re-plan may name of its own; what it leaves out is what the plan was made with.
REPLAN_PREFERENCES = ("practitioner_id", "weekdays", "times_of_day")


def _replan_preferences(plan: TreatmentPlan, named: dict) -> dict:
    unknown = set(named) - set(REPLAN_PREFERENCES)
    if unknown:
        raise TypeError(f"A re-plan names no {', '.join(sorted(unknown))}.")
    preferences = {
        "practitioner_id": named.get("practitioner_id", plan.practitioner_id),
        "weekdays": named.get("weekdays", plan.weekdays),
        "times_of_day": named.get("times_of_day", plan.times_of_day),
    }
    return {
        **preferences,
        "weekdays": frozenset(preferences["weekdays"] or ()),
        "times_of_day": frozenset(preferences["times_of_day"] or ()),
    }


def _lock_plans_patient(plan: TreatmentPlan) -> None:
    """Lock the plan's patient. A merge that held the lock meanwhile moved the plan to the survivor: the plan's
    patient is read again and the survivor locked (the request was about the plan, not the record)."""
    try:
        lock_patient(plan.patient_id)
    except InvalidInput as error:
        if error.code != ErrorCode.PATIENT_MERGED:
            raise
        plan.refresh_from_db(fields=["patient"])
        lock_patient(plan.patient_id)


def _require_not_cancelled(plan: TreatmentPlan) -> None:
    if plan.cancelled_at is not None:
        raise Refused(
            ErrorCode.PLAN_CANCELLED,
            f"The course was cancelled on {plan.cancelled_at.astimezone(plan.clinic.tz):%d %b %Y}; plan a new one.",
        )


def _replan_request(
    plan: TreatmentPlan,
    from_index: int,
    start_at: datetime,
    *,
    lock: bool,
    preferences: dict,
    now: datetime | None = None,
) -> tuple[PlanRequest, list[PlanSession], tuple[date, int] | None]:
    _require_not_cancelled(plan)
    sessions = list(plan.sessions.select_related("appointment__procedure").order_by("index"))
    if not any(s.index == from_index for s in sessions):
        raise InvalidInput(
            ErrorCode.UNKNOWN_PLAN_SESSION, f"The plan has no session {from_index}.", field="from_session"
        )
    moving = [s for s in sessions if s.index >= from_index]
    done = [s for s in moving if s.appointment is not None and s.appointment.status == AppointmentStatus.COMPLETED]
    if done:
        raise Refused(
            ErrorCode.PLAN_SESSION_NOT_REPLANNABLE,
            f"Session {done[0].index} is already done; re-plan from a later session.",
        )
    under_way = [
        s
        for s in moving
        if now is not None and s.appointment is not None and s.appointment.is_active and _under_way(s.appointment, now)
    ]
    if under_way:
        # As a course's cancel leaves it: the patient may be in the chair, and its outcome is the clinician's.
        raise Refused(
            ErrorCode.PLAN_SESSION_NOT_REPLANNABLE,
            f"Session {under_way[0].index} is under way (checked in, or its time has come): a clinician records its "
            "outcome; re-plan from a later session.",
        )
    request = _request(
        patient=plan.patient,
        clinic=plan.clinic,
        template=plan.template,
        start_at=start_at,
        # What the course was made for, not the template as it may have been edited since (docs/plans.md, "Re-plan").
        procedure=plan.procedure_made_for(sessions),
        area_code=plan.area_id,
        template_area=False,
        sessions=len(moving),
        lock=lock,
        # A practitioner the re-plan names itself is checked as any named one (a 400 naming `practitioner`).
        nobody_is_infeasible=not preferences.get("practitioner_id"),
        **_replan_preferences(plan, preferences),
    )
    return request, moving, _kept_before(plan, sessions, from_index)


@versioned.within_snapshot
def plan_replan_propose(
    *, plan: TreatmentPlan, from_index: int, start_at: datetime, now: datetime | None = None, **preferences
) -> Proposal:
    """The moved session and every later one, re-proposed around the plan's own bookings; writes nothing.

    `preferences` (`practitioner_id`, `weekdays`, `times_of_day`), each only when the re-plan names its own (None or
    empty: any); those left out are the plan's own, as it was made. With `now`, a session under way is refused as
    the re-plan itself refuses it."""
    request, moving, kept = _replan_request(plan, from_index, start_at, lock=False, preferences=preferences, now=now)
    ignore = tuple(s.appointment_id for s in moving if s.appointment is not None and s.appointment.is_active)
    plan = _plan(request, first_index=from_index, ignore=ignore, after=kept)
    return Proposal(request, plan, _rulebook(request).version)


@versioned.within_snapshot
def plan_replan(
    *,
    plan: TreatmentPlan,
    from_index: int,
    start_at: datetime,
    actor: Actor,
    now: datetime,
    shown: list[tuple[datetime, str | None]] | None = None,
    **preferences,
) -> TreatmentPlan:
    """Apply a re-plan in one transaction: each moved session's booking is moved (or booked afresh).
    `preferences` as for `plan_replan_propose`; they apply to this re-plan only (the plan keeps its own). `shown`:
    the sessions (start, practitioner) a proposal showed the caller; planned again under the locks, the re-plan
    must put them there, or nothing moves (409 `plan_refused`): the desk told the patient those times."""
    with transaction.atomic():
        _lock_plans_patient(plan)
        plan.refresh_from_db(fields=["cancelled_at"])  # Race condition: a cancel takes the same lock first.
        request, moving, kept = _replan_request(plan, from_index, start_at, lock=True, preferences=preferences, now=now)
        active = {s.index: s.appointment for s in moving if s.appointment is not None and s.appointment.is_active}
        ignore = tuple(a.pk for a in active.values())
        # Race condition: planned only now that the patient and the practitioners are locked.
        proposed = _plan(request, first_index=from_index, ignore=ignore, after=kept)
        if not proposed.feasible:
            raise UnableToPlan(proposed.obstacle, request)
        if shown is not None and _placed(proposed.sessions) != [(start, _id(who)) for start, who in shown]:
            raise ShownNoLongerHolds()
        by_index = {s.index: s for s in moving}
        # Sessions moving later go last-first and those moving earlier first-first, so that no session is
        # moved onto a time its neighbour still holds.
        later = [s for s in proposed.sessions if s.index in active and s.start_at > active[s.index].start_at]
        order = sorted(later, key=lambda s: -s.index) + [s for s in proposed.sessions if s not in later]
        for session in order:
            row = by_index[session.index]
            if session.index in active:
                try:
                    appointment = booking.appointment_reschedule(
                        appointment=active[session.index],
                        start_at=session.start_at,
                        actor=actor,
                        now=now,
                        practitioner_id=session.practitioner_id,
                        reason=f"Treatment plan re-planned from session {from_index}.",
                    ).appointment
                except booking.UnableToBook as refused:
                    raise UnableToBookSession(session.index, refused.check) from refused
            else:
                appointment = _book_session(
                    request, session.index, session.start_at, session.practitioner_id, actor, now
                ).appointment
            row.appointment = appointment
            row.earliest_on, row.ideal_on, row.latest_on = (
                session.window.earliest,
                session.window.ideal,
                session.window.latest,
            )
            row.placed_on = session.start_at.astimezone(request.tz).date()
            row.save(update_fields=["appointment", "earliest_on", "ideal_on", "latest_on", "placed_on"])
        plan.rulebook_version = _rulebook(request).version
        plan.save(update_fields=["rulebook_version"])
    return plan


def _id(value) -> str | None:
    return str(value) if value else None


def _placed(sessions) -> list[tuple[datetime, str | None]]:
    return [(session.start_at, _id(session.practitioner_id)) for session in sessions]


# --- Cancelling a course ----------------------------------------------------------------------------------


def _under_way(appointment: Appointment, now: datetime) -> bool:
    """The visit has begun (its time has come, or the patient is checked in): its outcome is the clinician's."""
    return appointment.start_at <= now or appointment.checked_in_at is not None


def plan_cancel(*, plan: TreatmentPlan, actor: Actor, now: datetime, reason: str = "") -> TreatmentPlan:
    """Stop the course (the patient no longer wants it): in one transaction, every booking of it still to come is
    cancelled through the single cancellation's path (audited, its messages cancelled, sent as a webhook), a recall
    its sessions planned is withdrawn, and the plan is marked so that no session of it is due, re-planned or
    recalled any more. A visit already under way keeps its booking (a clinician records its outcome). A plan
    cancelled already is a 409 `plan_cancelled`; one whose every session is done, a 409 `plan_finished`. A recall
    planned after its last session by a maintenance template (Botox every 3-4 months) is not the course's: it stays."""
    reason = reason.strip()
    with transaction.atomic():
        _lock_plans_patient(plan)
        plan.refresh_from_db(fields=["cancelled_at"])  # Race condition: checked only now that the patient is locked.
        _require_not_cancelled(plan)
        sessions = list(plan.sessions.select_related("appointment").order_by("index"))
        if all(s.appointment is not None and s.appointment.status == AppointmentStatus.COMPLETED for s in sessions):
            raise Refused(ErrorCode.PLAN_FINISHED, "Every session of this course is done: there is nothing to cancel.")
        said = f"Treatment plan cancelled: {reason}" if reason else "Treatment plan cancelled."
        cancelled = [
            booking.appointment_cancel(
                appointment=session.appointment, actor=actor, now=now, reason=said, others_rechecked=False
            )
            for session in sessions
            if session.appointment is not None
            and session.appointment.is_active
            and not _under_way(session.appointment, now)
        ]
        if cancelled:
            # Once, with every booking of the course cancelled: what they flagged is free now (a session's own
            # sibling is not first released, or flagged again, on its way to being cancelled).
            appointment_freed(appointment=cancelled[0], now=now, what="cancelled")
        recalls_withdraw(patient_id=plan.patient_id, sessions=[s.pk for s in sessions], now=now)
        plan.cancelled_at, plan.cancel_reason, plan.cancelled_by = now, reason, actor.label[:200]
        plan.save(update_fields=["cancelled_at", "cancel_reason", "cancelled_by"])
    return plan


def plan_get(*, plans, plan_id) -> TreatmentPlan:
    plan = (
        plans.filter(pk=plan_id).select_related("patient", "clinic", "template__procedure").first() if plan_id else None
    )
    if plan is None:
        raise NotFound(ErrorCode.UNKNOWN_PLAN, "There is no such plan.")
    return plan
