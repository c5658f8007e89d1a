"""Review probe (11 December, e): plans/planner.py, services.py, recalls.py, models.py, selectors.py and api/plans.py
read line by line, with docs/plans.md, the domain brief (section 6, courses of treatment) and the API contract ("v1
additions") beside them.

A code read, not a walk: each suspicion met while reading (a `<` against a `<=` on a gap or a window's last day, a
date read in the wrong zone, a re-plan after a session moved, cancelled, missed or completed late, a recall planned
twice or closed by the wrong visit, a status a plan forgets, a filter without the tenant, input that could answer
500, the contract against the answer) is pinned here by the smallest test that shows it, through the services (and
the API where a platform would see it). The suite's Monday is 2 March 2026, 09:00 UTC (London on GMT); the London
clinic's Dr Ada works Monday to Saturday 09:00-18:00.

Found (strict xfails; the four DEFECTs mended the same day, their tests now pass):
- DEFECT: a re-plan reads the practitioners' time off (and the patient's events) only up to a year after its
  `start` plus the moved sessions' maximum gaps (`plans.services._span_end`), not from the session kept before it:
  for a course booked to start more than a year out, a re-plan from today proposes a session on a day its
  practitioner is off, and applying it is refused 409 `plan_refused` ("Dr Ada is off") where the same re-plan from
  a later start places it the next day.
- DEFECT: a re-plan after a cancelled session says its session lands "the ideal 4 weeks after session 2" when the
  gap runs from session 1, the session kept before it (`plans.planner._Search.why` names `index - 1`).
- DEFECT: a proposal line whose `start` has seconds is a 400 naming `start`, a field the body does not have, where
  docs/plans.md names a line's bad start by its line (`proposal.1.start`), as its bad practitioner
  (`plans.services._book_session` renames only `practitioner`).
- DEFECT: a template whose ideal gap is 394 days between 12 and 13 months passes the admin's check
  (`check_course_shape` compares mixed units from month starts of 2027 and 2028 only), though 13 months from any
  day of February 2029 is 393 days: booking a course from 5 February 2029 is an IntegrityError (500) on the stored
  window (ideal after latest). The units are contrived; the planner's comment that two years' month starts cover
  every day is not true for gaps over a year (two common Februaries in a row are never compared).
- QUESTION: a re-plan from a session whose visit is under way (the patient checked in, its time come) moves that
  visit to a later slot, where cancelling the course leaves it to the clinician (`plan_cancel`'s `_under_way`).

Held (passing): an organisation's block rule between a course's own sessions does not refuse a re-plan that moves
two booked sessions later (the later one is moved first). Read and found right without a test here (each pinned by
tests/plans or an earlier probe): the windows' inclusive last day and `missed` from the day after, `overdue` from the
day after the ideal, the fallback when only the window's last day is left, calendar gaps by the clinic's local dates
(the plan's clinic's zone for the kept session, the completed visit's clinic's for a recall), a cancelled or missed
session passed over for the one kept before it, needs_review and pending_clearance counted as booked by the plan,
its re-plan and its cancel, a recall planned once per completion, closed by a booking of its procedure or a later
treatment and withdrawn with the course, the plans read through the caller's clinics and the templates through the
patient's organisation.
"""

from __future__ import annotations

from datetime import date

import pytest
from django.core.exceptions import ValidationError

from clinic.models import Appointment, AppointmentStatus, TimeOff
from core.errors import Refused
from plans.models import PlanTemplate
from plans.services import UnableToBookSession, plan_book, plan_replan, plan_replan_propose
from scheduler.booking import appointment_cancel, appointment_check_in
from tests.qa.helpers import NOW, RECEPTION, fresh, ldn, org_rule, post, problem

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock", "platform_ready")]

MN = "microneedling-course"  # 3 sessions, 4 / 4 / 6 weeks


def course(patient, start, code=MN):
    """The course booked through the plan service by the desk, its first session from `start`."""
    return plan_book(
        patient=patient,
        clinic=patient.clinic,
        template=PlanTemplate.objects.get(code=code),
        start_at=start,
        actor=RECEPTION,
        now=NOW,
    )


def appointments(plan) -> list[Appointment]:
    return [s.appointment for s in plan.sessions.select_related("appointment").order_by("index")]


# --- services.py: how far a re-plan reads the calendars ---------------------------------------------------------------


def test_a_replan_from_today_sees_the_time_off_of_a_course_that_starts_next_year(patient, practitioner):
    """A course booked to start on Monday 5 April 2027 (sessions 5 April, 3 May, 31 May). The patient cancels session
    3; Dr Ada, the only practitioner, takes Monday 31 May 2027 off. The desk re-plans from session 3 today: its
    window runs from 31 May (4 weeks after session 2, the ideal) to 14 June, and the first day Dr Ada works in it is
    Tuesday 1 June, as the same re-plan from a start in April 2027 finds. From today the re-plan reads calendars only
    to about 15 April 2027, so it proposes 31 May, and applying it is refused at the booking ("Dr Ada is off").
    (Was a strict-xfail DEFECT, mended: plans.services._span_end counts from the session kept before.)"""
    plan = course(patient, ldn(2027, 4, 5, 0, 0))
    third = appointments(plan)[2]
    assert third.start_at == ldn(2027, 5, 31, 9, 0)
    appointment_cancel(appointment=third, actor=RECEPTION, now=NOW)
    TimeOff.objects.create(practitioner=practitioner, start_at=ldn(2027, 5, 31, 0, 0), end_at=ldn(2027, 6, 1, 0, 0))

    later = plan_replan_propose(plan=plan, from_index=3, start_at=ldn(2027, 4, 6, 0, 0))
    assert [s.start_at for s in later.plan.sessions] == [ldn(2027, 6, 1, 9, 0)]  # holds: from a start in 2027

    today = plan_replan_propose(plan=plan, from_index=3, start_at=NOW)
    assert [s.start_at for s in today.plan.sessions] == [ldn(2027, 6, 1, 9, 0)]  # today: 31 May, Dr Ada's day off
    try:
        plan_replan(plan=plan, from_index=3, start_at=NOW, actor=RECEPTION, now=NOW)
    except UnableToBookSession as refused:
        pytest.fail(f"the re-plan is refused: {refused.message}")
    assert appointments(plan)[2].start_at == ldn(2027, 6, 1, 9, 0)


def test_a_replan_moving_two_sessions_later_keeps_an_organisations_block_rule_between_them(patient, practitioner):
    """The organisation's block rule: microneedling at least 4 weeks after microneedling (the course's minimum). A
    re-plan from session 2 to 20 April moves sessions 2 and 3 later; moved first-first, session 2 would land within
    4 weeks of session 3's old day and be refused. Moved last-first (plan_replan's order), it is applied whole."""
    org_rule(patient, "microneedling", "microneedling", 4, "weeks")
    plan = course(patient, ldn(2026, 3, 9, 0, 0))
    assert [a.start_at for a in appointments(plan)] == [ldn(2026, 3, 9, 9), ldn(2026, 4, 6, 9), ldn(2026, 5, 4, 9)]
    plan_replan(plan=plan, from_index=2, start_at=ldn(2026, 4, 20, 0, 0), actor=RECEPTION, now=NOW)
    moved = [fresh(a) for a in appointments(plan)]
    assert [a.start_at for a in moved] == [ldn(2026, 3, 9, 9), ldn(2026, 4, 20, 9), ldn(2026, 5, 18, 9)]
    assert {a.status for a in moved} == {AppointmentStatus.CONFIRMED}


# --- planner.py: what a re-plan says of its sessions ------------------------------------------------------------------


def test_a_replan_after_a_cancelled_session_names_the_session_its_gap_runs_from(patient, practitioner):
    """docs/plans.md: after session 2 cancelled, session 3 goes 4-6 weeks after session 1. The re-plan places it on
    6 April, 4 weeks after session 1 (9 March); its `why` (the dry run's, shown to the desk and a platform) says
    "the ideal 4 weeks after session 2", the cancelled session, which was to be on that very day.
    (Was a strict-xfail DEFECT, mended: the planner names the kept session, `after_index`.)"""
    plan = course(patient, ldn(2026, 3, 9, 0, 0))
    appointment_cancel(appointment=appointments(plan)[1], actor=RECEPTION, now=NOW)
    [session] = plan_replan_propose(plan=plan, from_index=3, start_at=NOW).plan.sessions
    assert session.start_at == ldn(2026, 4, 6, 9) and session.window.earliest == date(2026, 4, 6)
    assert session.why == "Session 3: 6 April 2026, the ideal 4 weeks after session 1."


# --- services.py / api/plans.py: a proposal's bad line ----------------------------------------------------------------


def test_a_proposal_line_whose_start_has_seconds_is_named_by_its_line(api, patient, practitioner):
    """docs/plans.md: a line's practitioner who cannot take it is a 400 naming that line, "as a line's bad `start`
    is". A dry run's three sessions sent back with the second's start at 10:00:30: the booking refuses it (whole
    minutes only) and the 400 names `start`; nothing is booked either way.
    (Was a strict-xfail DEFECT, mended: plans.services._book_session names `start` by its line too.)"""
    base = {"template": MN, "start_from": "2026-03-09"}
    dry = post(api, f"/patients/{patient.pk}/plans/", {**base, "dry_run": True}).json()
    lines = [{"start": s["start"]} for s in dry["sessions"]]
    lines[1]["start"] = lines[1]["start"].replace(":00+", ":30+")
    refused = problem(post(api, f"/patients/{patient.pk}/plans/", {**base, "proposal": lines}), 400)
    assert not Appointment.objects.filter(patient=patient).exists()
    assert list(refused["errors"]) == ["proposal.1.start"], refused["errors"]


# --- planner.py: a template's gaps over a year ------------------------------------------------------------------------


def test_a_template_whose_ideal_is_after_its_maximum_on_some_day_is_refused(patient, practitioner):
    """Botox yearly: 2 sessions, minimum 12 months, ideal 394 days, maximum 13 months. From 5 February 2029 the
    maximum (5 March 2030) is before the ideal (6 March 2030): no window can hold that; the admin's check (the one
    the planner and the template's `clean` share) should refuse the template, naming `ideal_gap_value`. Today it is
    accepted, and `plan_book` from 5 February 2029 stores session 2's window with its ideal after its latest day:
    the database refuses it (plan_session_window_ordered), an IntegrityError the API answers 500.
    (Was a strict-xfail DEFECT, mended: plans.planner._REFERENCE_DAYS spans four years.)"""
    template = PlanTemplate(
        code="botox-yearly",
        name="Botox yearly",
        procedure_id="botox",
        sessions=2,
        min_gap_value=12,
        min_gap_unit="months",
        ideal_gap_value=394,
        ideal_gap_unit="days",
        max_gap_value=13,
        max_gap_unit="months",
    )
    day = date(2029, 2, 5)
    assert template.ideal_gap.add_to(day) > template.max_gap.add_to(day)  # holds: no window from that day
    with pytest.raises(ValidationError) as refused:
        template.full_clean()
    assert "ideal_gap_value" in refused.value.message_dict


# --- services.py: a re-plan and a visit under way ---------------------------------------------------------------------


def test_a_replan_leaves_a_visit_under_way_where_it_is(patient, practitioner, clock):
    """Session 1 on Monday 9 March at 09:00; the patient checked in at 08:55 and is in the chair at 09:10 when the
    desk re-plans the course from session 1 (from now). Cancelling the course now would keep that visit, its outcome
    the clinician's to record (docs/plans.md); the re-plan moves it to 09:15 the same day (its check-in kept), with
    the patient already being treated, and sessions 2 and 3 follow from there. (Was a strict-xfail QUESTION, decided
    the same day: refused, 409 plan_session_not_replannable naming the session, as a course's cancel leaves it.)"""
    plan = course(patient, ldn(2026, 3, 9, 0, 0))
    first = appointments(plan)[0]
    assert first.start_at == ldn(2026, 3, 9, 9)
    appointment_check_in(appointment=first, actor=RECEPTION, now=ldn(2026, 3, 9, 8, 55))
    now = ldn(2026, 3, 9, 9, 10)
    clock.move_to(now)
    with pytest.raises(Refused) as refused:
        plan_replan(plan=plan, from_index=1, start_at=now, actor=RECEPTION, now=now)
    assert refused.value.code == "plan_session_not_replannable" and "Session 1 is under way" in refused.value.message
    with pytest.raises(Refused):  # the dry run says so too
        plan_replan_propose(plan=plan, from_index=1, start_at=now, now=now)
    assert fresh(first).start_at == ldn(2026, 3, 9, 9), fresh(first).start_at
    assert fresh(first).checked_in_at == ldn(2026, 3, 9, 8, 55)
