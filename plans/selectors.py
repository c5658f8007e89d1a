"""Reads for plans: where each session of a plan stands today."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import NamedTuple

from django.db.models import OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.fields.json import KT

from clinic.models import Appointment, AppointmentStatus, AuditAction, AuditEvent, Clinic
from plans import planner
from plans.models import PlanSession, Recall, TreatmentPlan


class SessionStatus:
    BOOKED = "booked"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    DUE = "due"
    OVERDUE = "overdue"
    MISSED = "missed"


def session_status(
    session: PlanSession, today: date, window: planner.Window | None = None, *, plan_cancelled: bool = False
) -> str:
    """booked or completed by its appointment; otherwise due, overdue (past the ideal day) or missed (past the
    window, or not attended); a cancelled session says so until its window has passed. `window`: the session's as
    it stands (`session_window`), else the one the plan stored. A session of a cancelled course that did not
    happen (and holds no booking the course kept: one under way when it was cancelled) is cancelled for good."""
    window = window or session.window
    appointment = session.appointment
    if appointment is not None:
        if appointment.status == AppointmentStatus.COMPLETED:
            return SessionStatus.COMPLETED
        if appointment.is_active:
            return SessionStatus.BOOKED
        if appointment.status == AppointmentStatus.NO_SHOW:
            return SessionStatus.MISSED
    if plan_cancelled:
        return SessionStatus.CANCELLED
    if today > window.latest:
        return SessionStatus.MISSED
    if appointment is not None:  # cancelled, window still open
        return SessionStatus.CANCELLED
    return SessionStatus.OVERDUE if today > window.ideal else SessionStatus.DUE


def session_holds_booking(session: PlanSession | None) -> bool:
    """The session holds a booking that counts for the course: active, or done (not cancelled, not missed)."""
    appointment = session.appointment if session is not None else None
    return appointment is not None and (appointment.is_active or appointment.status == AppointmentStatus.COMPLETED)


def session_window(plan: TreatmentPlan, session: PlanSession, previous: PlanSession | None) -> planner.Window:
    """The session's window as the course stands: docs/plans.md, "session n falls between min gap and max gap after
    session n-1's local date". The plan stored each window from the day it placed the one before; only once that
    one's booking has moved to another day (the patient's page, the desk, a platform) does the window follow it, in
    the plan's clinic's zone, by the course's gaps (as a re-plan measures). So a template edited since leaves the
    windows of sessions nobody moved as they were placed. A session whose previous one holds no booking keeps what
    was stored. One whose previous one was placed before that day was recorded (`placed_on` empty, migration 0005)
    follows that booking wherever it is, as all did before."""
    if not session_holds_booking(previous):
        return session.window
    day = previous.appointment.start_at.astimezone(plan.clinic.tz).date()
    if previous.placed_on == day:
        return session.window
    course = plan.template
    return planner.Window(course.min_gap.add_to(day), course.ideal_gap.add_to(day), course.max_gap.add_to(day))


class SessionMoveBounds(NamedTuple):
    index: int  # the session's place in the course, 1 for the first
    first_day: date  # local dates in the plan's clinic's zone, both allowed
    last_day: date


def session_move_bounds(appointment: Appointment) -> SessionMoveBounds | None:
    """The local days a course's session may be moved to on the patient's own page (docs/portal.md, "A course's
    session"): within its window as the course stands (`session_window`), and at least the course's minimum gap
    after the previous session's booking and before the next one's, and no further before the next one than the
    course's maximum gap, so the course keeps its order and its gaps
    (a move that left the next session closer than the minimum would leave it outside its own window). None: the
    appointment is no plan's session. A neighbour holding no booking (none, cancelled, missed) bounds nothing, as in
    `session_window`. The desk and the API are not bound: they see the rules' warnings and may re-plan."""
    session = (
        PlanSession.objects.select_related("plan__clinic", "plan__template")
        .filter(appointment_id=appointment.pk)
        .first()
    )
    if session is None:
        return None
    plan = session.plan
    around = {
        row.index: row
        for row in plan.sessions.select_related("appointment").filter(index__in=(session.index - 1, session.index + 1))
    }
    booked_on = {
        index: row.appointment.start_at.astimezone(plan.clinic.tz).date()
        for index, row in around.items()
        if session_holds_booking(row)
    }
    window = session_window(plan, session, around.get(session.index - 1))
    gap, most = plan.template.min_gap, plan.template.max_gap
    first_day, last_day = window.earliest, window.latest
    if (after := booked_on.get(session.index - 1)) is not None:
        first_day = max(first_day, after + timedelta(days=1), gap.add_to(after))
    if (before := booked_on.get(session.index + 1)) is not None:
        # Neither closer to the next session than the minimum gap, nor so early that it is past its maximum.
        last_day = min(last_day, before - timedelta(days=1), gap.latest_before(before))
        first_day = max(first_day, most.earliest_before(before))
    return SessionMoveBounds(session.index, first_day, last_day)


@dataclass(frozen=True)
class SessionView:
    session: PlanSession
    status: str
    # The rule book version the session's booking was last checked against (booked, or moved); None when it holds
    # no booking (due, overdue, missed, cancelled) or its booking was made before versions were recorded.
    rulebook_version: str | None = None
    # Its window as the course stands (`session_window`); None: the one the plan stored.
    current_window: planner.Window | None = None

    @property
    def window(self) -> planner.Window:
        return self.current_window or self.session.window


# The entries of a booking's trail that check it against the rule book and record the version (scheduler.booking):
# booking it and moving it. A clearance, a re-check after a change (needs review, released) and the rest decide
# about the booking as it stands; they do not make it again.
_CHECKED_BY = (AuditAction.BOOKED, AuditAction.RESCHEDULED)
_HOLDS_A_BOOKING = (SessionStatus.BOOKED, SessionStatus.COMPLETED)


def _checked_version() -> Subquery:
    """The version the latest booking or move of the session's appointment recorded, read in the sessions' own
    statement (one subquery; no query per session). Latest by id: the trail's insertion order."""
    trail = AuditEvent.objects.filter(appointment_id=OuterRef("appointment_id"), action__in=_CHECKED_BY)
    return Subquery(trail.order_by("-id").values(version=KT("details__rulebook_version"))[:1])


def _session_rows(sessions: QuerySet[PlanSession]) -> QuerySet[PlanSession]:
    return (
        sessions.select_related("appointment__practitioner")
        .annotate(checked_rulebook_version=_checked_version())
        .order_by("index")
    )


def plans_with_sessions(plans: QuerySet[TreatmentPlan]) -> QuerySet[TreatmentPlan]:
    """`plans` with what `plan_sessions` reads of each fetched with them: a list of plans costs the same few
    statements however many plans and sessions it holds."""
    return plans.select_related("clinic", "template").prefetch_related(
        Prefetch("sessions", queryset=_session_rows(PlanSession.objects.all()), to_attr="session_rows")
    )


def plan_sessions(plan: TreatmentPlan, today: date) -> list[SessionView]:
    rows = getattr(plan, "session_rows", None)  # fetched with the plan (`plans_with_sessions`)
    if rows is None:
        rows = _session_rows(plan.sessions.all())
    views, previous = [], None
    cancelled = plan.cancelled_at is not None
    for row in rows:
        window = session_window(plan, row, previous)
        status = session_status(row, today, window, plan_cancelled=cancelled)
        version = row.checked_rulebook_version if status in _HOLDS_A_BOOKING else None
        views.append(SessionView(row, status, version or None, window))
        previous = row
    return views


def plans_in(clinics: QuerySet[Clinic]) -> QuerySet[TreatmentPlan]:
    """Plans whose sessions take place at these clinics (the tenancy filter every reader starts from)."""
    return TreatmentPlan.objects.filter(clinic__in=clinics)


@dataclass(frozen=True)
class DueRecallView:
    recall: Recall
    overdue: bool


# Recalls show on Today from this many days before their date.
RECALL_LEAD_DAYS = 7


def recalls_due(*, clinic: Clinic, today: date) -> list[DueRecallView]:
    """Open recalls of the clinic's patients due within a week, or overdue (past their date, still not booked)."""
    rows = (
        Recall.objects.filter(
            clinic=clinic, closed_at__isnull=True, due_on__lte=today + timedelta(days=RECALL_LEAD_DAYS)
        )
        .select_related("patient", "procedure", "template")
        .order_by("due_on", "patient__last_name", "id")[:100]
    )
    return [DueRecallView(row, row.due_on < today) for row in rows]
