"""What a plan remembers between its booking and a re-plan, and how its windows and online bounds read later
(plans.services, plans.selectors; docs/plans.md): the session kept before a re-plan, the preferences the plan was
made with, the windows of sessions nobody moved, the course's minimum gap around a patient's move, the bookings'
warnings, and a re-plan with no practitioner left.

The course: the shipped microneedling course (4 / 4 / 6 weeks) at the London clinic, planned from Monday 9 March 2026
with the suite's clock (Monday 2 March 2026, 09:00 London).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from clinic.models import Appointment, AppointmentStatus
from core.errors import InvalidInput
from plans import planner
from plans.models import PlanSession, PlanTemplate, TreatmentPlan
from plans.selectors import SessionMoveBounds, plan_sessions, session_move_bounds
from plans.services import UnableToPlan, plan_book, plan_book_checked, plan_replan, plan_replan_propose
from scheduler.booking import Actor, appointment_cancel, appointment_reschedule
from tests.factories import PractitionerFactory

LONDON = ZoneInfo("Europe/London")
RECEPTION = Actor("reception@test")
MN = "microneedling-course"


def london(*parts) -> datetime:
    return datetime(*parts, tzinfo=LONDON)


@pytest.fixture
def course(templates) -> PlanTemplate:
    return PlanTemplate.objects.get(code=MN, organisation=None)


@pytest.fixture
def second(clinic) -> object:
    """A second practitioner, first by name (Dr Ames before Dr Hart): what a plan forgetting its own would take."""
    return PractitionerFactory(clinic=clinic, name="Dr Ames")


def book(patient, clinic, course, now, **options) -> TreatmentPlan:
    return plan_book(
        patient=patient,
        clinic=clinic,
        template=course,
        start_at=london(2026, 3, 9),
        actor=RECEPTION,
        now=now,
        **options,
    )


def rows(plan: TreatmentPlan) -> list[PlanSession]:
    return list(plan.sessions.select_related("appointment").order_by("index"))


def windows(plan: TreatmentPlan, today: date = date(2026, 3, 2)) -> list[tuple[date, date, date]]:
    return [(v.window.earliest, v.window.ideal, v.window.latest) for v in plan_sessions(plan, today)]


def reschedule(session: PlanSession, start_at: datetime, now: datetime) -> None:
    appointment_reschedule(appointment=session.appointment, start_at=start_at, actor=RECEPTION, now=now)


# --- The session kept before a re-plan --------------------------------------------------------------------------------


def test_a_replan_after_a_cancelled_session_runs_from_the_latest_session_kept_before_it(
    patient, clinic, practitioner, course, now
):
    plan = book(patient, clinic, course, now)
    first, cancelled, _ = rows(plan)
    appointment_cancel(appointment=cancelled.appointment, actor=RECEPTION, now=now, reason="away")

    proposal = plan_replan_propose(plan=plan, from_index=3, start_at=london(2026, 3, 10, 9))

    third = proposal.plan.sessions[0]
    # 4 to 6 weeks after session 1 (9 March), not a course's first session from 10 March.
    assert third.window == planner.Window(date(2026, 4, 6), date(2026, 4, 6), date(2026, 4, 20))
    assert third.start_at == london(2026, 4, 6, 9)
    assert first.appointment.status == AppointmentStatus.CONFIRMED


# --- The preferences the plan was made with ---------------------------------------------------------------------------


def test_the_plan_keeps_its_preferences_and_a_replan_places_by_them(patient, clinic, practitioner, second, course, now):
    plan = book(patient, clinic, course, now, practitioner_id=practitioner.pk, weekdays={1}, times_of_day={"afternoon"})
    plan.refresh_from_db()
    assert (plan.practitioner_id, plan.weekdays, plan.times_of_day) == (practitioner.pk, [1], ["afternoon"])

    # From Wednesday 8 April, a day after the ideal (Tuesday 7 April): the first possible slot from then.
    proposal = plan_replan_propose(plan=plan, from_index=2, start_at=london(2026, 4, 8, 9))

    placed = proposal.plan.sessions
    assert placed[0].start_at == london(2026, 4, 14, 12)
    assert {s.practitioner_id for s in placed} == {str(practitioner.pk)}
    assert all(s.start_at.astimezone(LONDON).weekday() == 1 for s in placed), placed  # Tuesdays
    assert all(12 <= s.start_at.astimezone(LONDON).hour < 17 for s in placed), placed


def test_a_replan_naming_its_own_preferences_places_by_those_and_the_plan_keeps_its_own(
    patient, clinic, practitioner, second, course, now
):
    plan = book(patient, clinic, course, now, practitioner_id=practitioner.pk, times_of_day={"afternoon"})

    proposal = plan_replan_propose(
        plan=plan, from_index=2, start_at=london(2026, 3, 20, 9), practitioner_id=None, times_of_day=["morning"]
    )
    applied = plan_replan(
        plan=plan,
        from_index=2,
        start_at=london(2026, 3, 20, 9),
        actor=RECEPTION,
        now=now,
        practitioner_id=second.pk,
        times_of_day=[],
    )

    assert [(s.start_at, s.practitioner_id) for s in proposal.plan.sessions] == [
        (london(2026, 4, 6, 9), str(second.pk)),  # any practitioner: Dr Ames first by name, in the morning
        (london(2026, 5, 4, 9), str(second.pk)),
    ]
    assert [r.appointment.practitioner_id for r in rows(applied)[1:]] == [second.pk, second.pk]
    applied.refresh_from_db()
    assert (applied.practitioner_id, applied.times_of_day) == (practitioner.pk, ["afternoon"])


def test_a_plan_made_with_no_preferences_is_replanned_with_anyone(patient, clinic, practitioner, second, course, now):
    plan = book(patient, clinic, course, now)
    plan.refresh_from_db()
    assert (plan.practitioner_id, plan.weekdays, plan.times_of_day) == (None, [], [])

    proposal = plan_replan_propose(plan=plan, from_index=2, start_at=london(2026, 3, 20, 9))

    assert [s.practitioner_id for s in proposal.plan.sessions] == [str(second.pk)] * 2


# --- No practitioner left ---------------------------------------------------------------------------------------------


def test_a_replan_whose_practitioner_has_left_names_the_session_it_cannot_place(
    patient, clinic, practitioner, second, course, now
):
    plan = book(patient, clinic, course, now, practitioner_id=practitioner.pk)
    practitioner.is_active = False
    practitioner.save(update_fields=["is_active"])

    proposal = plan_replan_propose(plan=plan, from_index=2, start_at=london(2026, 3, 20, 9))
    with pytest.raises(UnableToPlan) as refused:
        plan_replan(plan=plan, from_index=2, start_at=london(2026, 3, 20, 9), actor=RECEPTION, now=now)

    assert not proposal.plan.feasible and proposal.plan.obstacle.index == 2
    assert refused.value.obstacle.index == 2 and refused.value.obstacle.no_free_slot
    assert [v.code for v in refused.value.violations] == ["no_practitioner_available"]
    # Naming one who may take it re-plans; naming one who may not is the request's own fault, a 400.
    assert plan_replan_propose(
        plan=plan, from_index=2, start_at=london(2026, 3, 20, 9), practitioner_id=second.pk
    ).plan.feasible
    with pytest.raises(InvalidInput) as bad:
        plan_replan_propose(plan=plan, from_index=2, start_at=london(2026, 3, 20, 9), practitioner_id=practitioner.pk)
    assert "practitioner" in bad.value.errors


def test_a_replan_with_no_practitioner_doing_the_procedure_names_the_session(
    patient, clinic, practitioner, course, now
):
    plan = book(patient, clinic, course, now)
    practitioner.procedures.clear()

    with pytest.raises(UnableToPlan) as refused:
        plan_replan(plan=plan, from_index=3, start_at=london(2026, 3, 20, 9), actor=RECEPTION, now=now)

    assert refused.value.obstacle.index == 3
    assert refused.value.obstacle.window == planner.Window(date(2026, 5, 4), date(2026, 5, 4), date(2026, 5, 18))


# --- Windows of sessions nobody moved ---------------------------------------------------------------------------------


def test_a_template_edited_mid_course_leaves_the_windows_until_a_session_moves(
    patient, clinic, practitioner, course, now
):
    plan = book(patient, clinic, course, now)
    placed = windows(plan)
    assert [r.placed_on for r in rows(plan)] == [date(2026, 3, 9), date(2026, 4, 6), date(2026, 5, 4)]
    course.min_gap_value = course.ideal_gap_value = 6
    course.max_gap_value = 8
    course.save()

    assert windows(plan) == placed
    reschedule(rows(plan)[1], london(2026, 4, 8, 9), now)  # moved two days on: session 3 follows, by today's gaps
    assert windows(plan)[2] == (date(2026, 5, 20), date(2026, 5, 20), date(2026, 6, 3))
    reschedule(rows(plan)[1], london(2026, 4, 6, 14), now)  # back on the day it was placed (another hour)
    assert windows(plan) == placed


def test_a_session_placed_before_its_day_was_recorded_follows_its_booking_as_before(
    patient, clinic, practitioner, course, now
):
    plan = book(patient, clinic, course, now)
    plan.sessions.update(placed_on=None)
    course.min_gap_value = course.ideal_gap_value = 6
    course.max_gap_value = 8
    course.save()

    assert windows(plan)[1] == (date(2026, 4, 20), date(2026, 4, 20), date(2026, 5, 4))


def test_a_replan_records_the_days_it_placed(patient, clinic, practitioner, course, now):
    plan = book(patient, clinic, course, now)

    plan_replan(plan=plan, from_index=2, start_at=london(2026, 4, 8, 9), actor=RECEPTION, now=now)

    assert [r.placed_on for r in rows(plan)] == [date(2026, 3, 9), date(2026, 4, 8), date(2026, 5, 6)]
    assert [r.appointment.start_at.astimezone(LONDON).date() for r in rows(plan)] == [r.placed_on for r in rows(plan)]


# --- The course's minimum gap around a patient's move -----------------------------------------------------------------


def test_online_a_session_keeps_the_courses_gaps_to_both_neighbours(patient, clinic, practitioner, course, now):
    plan = book(patient, clinic, course, now)
    first, middle, last = rows(plan)

    assert session_move_bounds(middle.appointment) == SessionMoveBounds(2, date(2026, 4, 6), date(2026, 4, 6))
    assert session_move_bounds(first.appointment) == SessionMoveBounds(1, date(2026, 3, 9), date(2026, 3, 9))
    reschedule(last, london(2026, 5, 18, 9), now)  # the desk is not bound
    assert session_move_bounds(middle.appointment) == SessionMoveBounds(2, date(2026, 4, 6), date(2026, 4, 20))
    reschedule(first, london(2026, 3, 2, 15), now)
    # From 6 April: six weeks (the course's maximum gap) before session 3 on 18 May.
    assert session_move_bounds(middle.appointment) == SessionMoveBounds(2, date(2026, 4, 6), date(2026, 4, 13))
    # A neighbour holding no booking bounds nothing.
    appointment_cancel(appointment=Appointment.objects.get(pk=last.appointment_id), actor=RECEPTION, now=now)
    assert session_move_bounds(middle.appointment) == SessionMoveBounds(2, date(2026, 3, 30), date(2026, 4, 13))


@pytest.mark.parametrize(
    ("gap", "day", "latest"),
    [
        (planner.Gap(4, "weeks"), date(2026, 5, 4), date(2026, 4, 6)),
        (planner.Gap(10, "days"), date(2026, 3, 1), date(2026, 2, 19)),
        (planner.Gap(1, "months"), date(2027, 2, 28), date(2027, 1, 31)),  # 29-31 January + 1 month: 28 February
        (planner.Gap(1, "months"), date(2028, 2, 28), date(2028, 1, 28)),  # a leap year: 29 January + 1 is the 29th
        (planner.Gap(3, "months"), date(2027, 3, 31), date(2026, 12, 31)),
        (planner.Gap(1, "months"), date(2027, 3, 31), date(2027, 2, 28)),
    ],
)
def test_the_latest_day_before_a_session_that_keeps_a_gap(gap, day, latest):
    assert gap.latest_before(day) == latest
    assert gap.add_to(latest) <= day < gap.add_to(latest + timedelta(days=1))


@pytest.mark.parametrize(
    ("gap", "day", "earliest"),
    [
        (planner.Gap(6, "weeks"), date(2026, 6, 1), date(2026, 4, 20)),
        (planner.Gap(1, "months"), date(2027, 3, 31), date(2027, 3, 1)),  # 28 February + 1 month is only 28 March
        (planner.Gap(1, "months"), date(2027, 3, 28), date(2027, 2, 28)),
        (planner.Gap(1, "months"), date(2028, 3, 29), date(2028, 2, 29)),  # a leap year
        (planner.Gap(2, "months"), date(2027, 4, 30), date(2027, 3, 1)),  # 28 February + 2 months is only 28 April
    ],
)
def test_the_earliest_day_before_a_session_within_a_maximum_gap(gap, day, earliest):
    """Online, a session stays within the course's maximum gap before the next one's booking (6 December)."""
    found = gap.earliest_before(day)
    assert gap.add_to(found) >= day > gap.add_to(found - timedelta(days=1))
    assert found == earliest


# --- The bookings' warnings -------------------------------------------------------------------------------------------


def test_booking_a_plan_returns_what_each_sessions_booking_warned_of(patient, clinic, practitioner, course, now):
    first = plan_book_checked(
        patient=patient, clinic=clinic, template=course, start_at=london(2026, 3, 9), actor=RECEPTION, now=now
    )
    again = plan_book_checked(
        patient=patient, clinic=clinic, template=course, start_at=london(2026, 3, 9), actor=RECEPTION, now=now
    )

    assert sorted(first.checks) == sorted(again.checks) == [1, 2, 3]
    assert all(not check.warnings for check in first.checks.values())
    assert all("interval_too_soon_after" in {v.code for v in check.warnings} for check in again.checks.values()), (
        again.checks
    )
