"""Review probe dec6p: the patient's own pages while the clinic changes the same visit (docs/portal.md; portal/views.py,
portal/forms.py, scheduler/selfservice.py, plans/selfservice.py with plans.selectors.session_move_bounds).

Asked as a patient lives it: a page (the move's confirm step, the cancel page) is drawn, then the clinic changes the
visit (moves it, gives it to another practitioner, cancels it, moves it inside the cancellation window, re-plans or
cancels its course over `POST /api/v1/plans/{id}/...`, changes the rule book, records a treatment that puts it on hold,
merges the record into one holding a booking at the chosen time), then the patient presses the button. Also the same
button pressed twice, and Back then the button again. Everything through Django's test client, the clock stopped at
Monday 2 March 2026, 09:00 London; the visit is microneedling with Dr Ada on Tuesday 10 March, 10:00, its
confirmation sent by e-mail and text (tests/qa/conftest.py `told`).

Found right (passing tests): every refusal is re-checked at the POST, under the locks, from the visit as it is then,
and answered in the patient's words with the visit's current time on the page: cancelled meanwhile ("already
cancelled", 409, nothing moved, no move notice); moved inside the window (the page offers no Move or Cancel exactly when
the server refuses, at 6 h, and both allow at exactly 24 h and at 25 h); a rule added to the rule book, a recorded Botox
that put the visit on hold, a merge that brought a booking at the chosen time (each refused with why, nothing moved);
the course cancelled (already cancelled) or re-planned so the chosen day left its bounds (the course's sentence with
the new days and the new time). The confirm page drawn after the clinic's move says "From" where the visit is now. The
messages after a stale confirm are true: each move notice runs from the time the patient last heard to the time the
visit has. One move and one notice for a double submit, for Back then confirm again (the old link says "already at
this time"), and two moves in the grace period are one notice from the first time; a cancel pressed twice is one
cancel and one notice (the second answer is a 409 "This appointment is already cancelled.", true, though a move sent
twice answers "Done").

Questions, all three decided and mended the same day (the tests pass since):
- the confirm step's POST carried only the chosen slot: a confirm drawn before the clinic moved the visit, gave it to
  another practitioner, or re-planned its course moved it from where the clinic put it, "Done". It now carries where
  the page showed the visit (`drawn`, portal.forms.drawn_key), compared under the locks
  (scheduler.booking.appointment_reschedule `drawn`, as the desk's); changed since, nothing moves (409) and the times
  are offered again from where it is now, the page saying what the clinic changed;
- the cancel page's POST likewise: drawn at Tuesday 10 March, the clinic moves the visit to Friday 13: nothing is
  cancelled (409), the page is drawn again showing Friday with what the patient wrote kept; pressing again cancels;
- so the cancellation naming Friday 13 names the time the patient confirmed on the page (the clinic's move notice,
  still in its grace, dropped with the cancel, as docs/reminders.md says).
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail

from clinic.merging import patient_merge
from clinic.models import AppointmentStatus, AuditAction, AuditEvent
from clinic.services import procedure_record_add
from plans.defaults import plan_templates_load
from plans.models import PlanTemplate
from plans.services import plan_book
from portal.forms import slot_key
from reminders.dispatch import dispatch_local
from scheduler.booking import appointment_cancel, appointment_reschedule
from tests.conftest import CLOCK
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import (
    RECEPTION,
    book,
    fresh_appointment,
    ldn,
    org_rule,
    portal_page,
    post,
    send_all_until,
    texts,
    words,
)

pytestmark = pytest.mark.usefixtures("message_outboxes")

TUESDAY = "Tue 10 Mar, 10:00 (GMT)"  # what the confirmation told the patient


@pytest.fixture
def clinic(care_texts):
    return ClinicFactory(code="dec6p-bloom", name="Bloom Clinic", timezone="Europe/London", phone="+442079460958")


@pytest.fixture
def patient(clinic):
    return PatientFactory(
        clinic=clinic,
        first_name="Olivia",
        email="olivia@example.com",
        phone="+447700900123",
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )


@pytest.fixture
def bea(clinic):
    return PractitionerFactory(clinic=clinic, name="Dr Bea")


@pytest.fixture
def course(patient, practitioner, clinic, frozen):
    """The shipped microneedling course with Dr Ada from Monday 9 March: sessions on 9 March, 6 April and 4 May at
    09:00 (session 3 may move online within 4-18 May), each confirmation sent."""
    plan_templates_load()
    plan = plan_book(
        patient=patient,
        clinic=clinic,
        template=PlanTemplate.objects.get(code="microneedling-course", organisation=None),
        start_at=ldn(2026, 3, 9, 0),
        actor=RECEPTION,
        now=frozen,
        practitioner_id=practitioner.pk,
    )
    dispatch_local(now=frozen)
    mail.outbox.clear()
    return plan


# --- Helpers --------------------------------------------------------------------------------------------------------


def draw_confirm(client, appointment, when, practitioner_id):
    """The confirm step as the patient's browser draws it: (its form's action, what its form sends (the slot and
    where the visit was when drawn), the page)."""
    page = client.get(portal_page(appointment, "move_confirm"), {"slot": slot_key(when, str(practitioner_id))})
    assert page.status_code == 200, words(page)[:600]
    return re.search(r'<form method="post" action="([^"]+)"', page.content.decode()).group(1), hidden(page), page


def hidden(page) -> dict:
    """The hidden inputs of the page's POST form, as the browser sends them."""
    return dict(re.findall(r'<input type="hidden" name="(slot|drawn)" value="([^"]*)"', page.content.decode()))


def patient_moves(appointment) -> int:
    return AuditEvent.objects.filter(
        appointment=appointment, action=AuditAction.RESCHEDULED, actor_label__startswith="patient "
    ).count()


def where(appointment) -> tuple:
    current = fresh_appointment(appointment)
    return current.start_at, str(current.practitioner_id), current.status


def can_change(response) -> bool:
    html = response.content.decode()
    return "Move appointment" in html and "Cancel appointment" in html


def local(appointment) -> str:
    """The visit's time as the texts name it ("Thu 12 Mar, 10:00 (GMT)")."""
    at = fresh_appointment(appointment).start_at.astimezone(appointment.clinic.tz)
    return f"{at:%a} {at.day} {at:%b}, {at:%H:%M} ({at.tzname()})"


def assert_each_notice_runs_from_what_was_heard(appointment) -> None:
    """Every move notice, text and e-mail, names as "it was" the time the patient last heard on that channel (the
    confirmation's Tuesday first), and the last one heard is the time the visit has."""
    moves = [re.search(r"moved to (.+) \(it was (.+)\)\.", t) for t in texts() if "moved" in t]
    heard = TUESDAY
    for found in moves:
        assert found and found.group(2) == heard, (texts(), heard)
        heard = found.group(1)
    assert heard == local(appointment), (texts(), local(appointment))
    heard = TUESDAY
    for message in mail.outbox:
        found = re.search(r"New time: (.+) \(until .*\nIt was: (.+)\n", message.body)
        assert found and found.group(2) == heard, (message.body, heard)
        heard = found.group(1)
    assert heard == local(appointment), [m.subject for m in mail.outbox]


# --- The confirm step after the clinic changed the visit ------------------------------------------------------------


@pytest.mark.parametrize("change", ["desk-moved-it", "desk-gave-it-to-dr-bea", "course-replanned"])
def test_a_confirm_drawn_before_the_clinic_changed_the_visit_moves_nothing_and_says_so(
    client, request, told, bea, api, frozen, change
):
    visit, to = told, ldn(2026, 3, 12)
    if change == "course-replanned":
        plan = request.getfixturevalue("course")
        visit, to = plan.sessions.get(index=3).appointment, ldn(2026, 5, 14, 9)  # within 4-18 May, and 11-25 May
    action, slot, _ = draw_confirm(client, visit, to, visit.practitioner_id)
    drawn_at = where(visit)
    if change == "desk-moved-it":
        appointment_reschedule(appointment=visit, start_at=ldn(2026, 3, 11), actor=RECEPTION, now=frozen)
    elif change == "desk-gave-it-to-dr-bea":
        appointment_reschedule(
            appointment=visit, start_at=visit.start_at, practitioner_id=str(bea.pk), actor=RECEPTION, now=frozen
        )
    else:  # session 2 a week later: session 3 follows it to Monday 11 May
        replanned = post(api, f"/plans/{plan.pk}/replan/", {"from_session": 2, "start": "2026-04-13T09:00:00+01:00"})
        assert replanned.status_code == 200, replanned.content[:400]
    clinic_put_it = where(visit)
    assert clinic_put_it[:2] != drawn_at[:2] and to != clinic_put_it[0]

    answer = client.post(action, slot, follow=True)

    assert where(visit) == clinic_put_it, "the patient's stale confirm moved it from where the clinic put it"
    assert "Done" not in words(answer)
    assert answer.status_code == 409 and "This appointment has changed since you opened that page" in words(answer)


@pytest.mark.parametrize("notice", ["clinic-notice-still-in-its-grace", "clinic-notice-already-sent"])
def test_after_a_stale_confirm_each_message_runs_from_what_the_patient_heard(client, told, frozen, notice):
    """docs/reminders.md: "the move notice runs from the time the patient last heard to the time now". The patient
    draws the confirm step (Tuesday 10 to Thursday 12), the desk moves the visit to Wednesday 11 (its notice sent
    first, or not yet), the patient confirms: whatever the confirm does with it, every text and e-mail says "it was"
    the time the patient last heard there, and the last names the time the visit has. A confirm step drawn after the
    desk's move says "From" Wednesday."""
    action, slot, drawn = draw_confirm(client, told, ldn(2026, 3, 12), told.practitioner_id)
    assert "From Tuesday 10 March 2026, 10:00" in words(drawn)
    appointment_reschedule(appointment=told, start_at=ldn(2026, 3, 11), actor=RECEPTION, now=frozen)
    _, _, redrawn = draw_confirm(client, told, ldn(2026, 3, 12), told.practitioner_id)
    assert "From Wednesday 11 March 2026, 10:00" in words(redrawn)
    pressed = CLOCK + timedelta(minutes=2 if notice == "clinic-notice-still-in-its-grace" else 12)
    if notice == "clinic-notice-already-sent":
        send_all_until(pressed - timedelta(minutes=1), start=CLOCK + timedelta(minutes=1), step=timedelta(minutes=2))
        assert [t for t in texts() if "moved to Wed 11 Mar" in t], texts()

    with time_machine.travel(pressed, tick=False):
        client.post(action, slot)
    send_all_until(CLOCK + timedelta(hours=1), start=pressed, step=timedelta(minutes=3))

    assert [t for t in texts() if "moved" in t], "the patient heard nothing of a move"
    assert_each_notice_runs_from_what_was_heard(told)


def test_a_confirm_drawn_before_the_clinic_cancelled_the_visit_moves_nothing(client, told, frozen):
    """docs/portal.md, Status: "A cancelled ... appointment is refused in the patient's words ("This appointment is
    already cancelled.")". The desk cancels while the confirm step is open: the patient's "Yes, move it" answers 409
    with that sentence and the page's "cancelled" card; nothing moved, no move notice, only the cancellation."""
    action, slot, _ = draw_confirm(client, told, ldn(2026, 3, 12), told.practitioner_id)
    appointment_cancel(appointment=told, actor=RECEPTION, now=frozen, reason="Dr Ada is away")

    answer = client.post(action, slot)

    assert answer.status_code == 409
    assert "This appointment is already cancelled." in words(answer) and not can_change(answer)
    assert where(told) == (ldn(2026, 3, 10), str(told.practitioner_id), AppointmentStatus.CANCELLED)
    assert patient_moves(told) == 0
    send_all_until(CLOCK + timedelta(hours=1), start=CLOCK, step=timedelta(minutes=10))
    assert [t for t in texts() if "moved" in t] == [] and len([t for t in texts() if "cancelled" in t]) == 1


@pytest.mark.parametrize("meanwhile", ["rule-book-interval", "botox-recorded-on-hold", "merged-into-a-busy-record"])
def test_a_confirm_drawn_before_the_rules_changed_is_refused_with_why_and_moves_nothing(
    client, told, patient, clinic, bea, frozen, meanwhile
):
    """docs/portal.md: a move "re-checks the rules like any reschedule"; "A time an interval rule refuses says why in
    the rule's words"; "One on hold for review ... says so, and may be moved: the move re-checks everything". While
    the confirm step (Thursday 12 March) is open: the organisation makes microneedling 14 days before a plasma pen
    (the patient's is on Monday 23 March, 11 days after: a time the shipped rules do not warn about, which alone is
    offered online); a clinician records a Botox of 1 March (microneedling 2
    weeks after: the visit goes on hold); the record is merged into the patient's other record, which holds a
    microneedling on Thursday 12 at 10:00. The confirm answers 409 with why and the times still possible; nothing
    moved."""
    if meanwhile == "rule-book-interval":
        book(patient, ldn(2026, 3, 23), frozen, code="plasma_pen")
    action, slot, _ = draw_confirm(client, told, ldn(2026, 3, 12), told.practitioner_id)
    if meanwhile == "rule-book-interval":
        org_rule(patient, "microneedling", "plasma_pen", 14, "days")
        told_why = "Microneedling (collagen induction therapy) must be at least 14 days before it."
    elif meanwhile == "botox-recorded-on-hold":
        procedure_record_add(patient=patient, procedure_code="botox", now=frozen, performed_at=ldn(2026, 3, 1, 12))
        told_why = "must be at least 2 weeks after Botulinum toxin injection (Botox)"
    else:
        other = PatientFactory(clinic=clinic, first_name="Olivia", email="o.b@example.com", reminder_channels=["email"])
        book(other, ldn(2026, 3, 12), frozen, practitioner_id=str(bea.pk))
        patient_merge(merged=patient, into=other, now=frozen, actor_label="clinician@qa", clinical=True)
        told_why = "You have another appointment at that time. Please choose another time."
    before = where(told)

    answer = client.post(action, slot)

    assert answer.status_code == 409 and told_why in words(answer), words(answer)[:500]
    assert "Choose a new time" in words(answer) and slot["slot"] not in answer.content.decode()
    assert where(told) == before and patient_moves(told) == 0
    if meanwhile == "botox-recorded-on-hold":
        assert before[2] == AppointmentStatus.NEEDS_REVIEW
        assert "On hold" in words(client.get(portal_page(told)))


# --- The cancel page after the clinic moved the visit ---------------------------------------------------------------


def test_a_cancel_page_drawn_before_the_clinic_moved_the_visit_cancels_nothing(client, told, frozen):
    drawn = client.get(portal_page(told, "cancel"))
    assert drawn.status_code == 200 and "Tuesday 10 March 2026" in words(drawn)
    appointment_reschedule(appointment=told, start_at=ldn(2026, 3, 13), actor=RECEPTION, now=frozen)

    asked = client.post(portal_page(told, "cancel"), {"reason": "Away that week", **hidden(drawn)})

    assert where(told)[2] == AppointmentStatus.CONFIRMED, "cancelled at a time the patient was never shown"
    assert asked.status_code == 409 and "it is now on Friday 13 March 2026 at 10:00" in words(asked)
    assert "Away that week" in asked.content.decode()  # what they wrote is kept
    # Pressed again from the page as it is now (showing Friday): cancelled.
    assert client.post(portal_page(told, "cancel"), {"reason": "", **hidden(asked)}).status_code == 303
    assert where(told)[2] == AppointmentStatus.CANCELLED


def test_a_cancellation_right_after_a_clinic_move_names_the_time_the_patient_confirmed(client, told, frozen):
    """Decided 6 December (this probe's question): the patient cancels from a page that showed them the visit where
    it is (a page drawn before the clinic's move is refused and drawn again, above), so the cancellation naming that
    time names what they confirmed, though the move notice, inside its grace, is dropped."""
    appointment_reschedule(appointment=told, start_at=ldn(2026, 3, 13), actor=RECEPTION, now=frozen)
    with time_machine.travel(CLOCK + timedelta(minutes=2), tick=False):
        page = client.get(portal_page(told, "cancel"))
        assert "Friday 13 March 2026" in words(page)
        assert client.post(portal_page(told, "cancel"), {"reason": "", **hidden(page)}).status_code == 303
    send_all_until(CLOCK + timedelta(hours=1), start=CLOCK + timedelta(minutes=2), step=timedelta(minutes=3))

    [cancelled] = [t for t in texts() if "cancelled" in t]
    assert [t for t in texts() if "moved" in t] == []  # as docs/reminders.md says: the notice is dropped
    assert "Fri 13 Mar" in cancelled, cancelled


def test_a_cancel_pressed_twice_is_one_cancel_and_one_notice(client, told, frozen):
    """docs/portal.md: "Every POST ... answers with a 303 to a page (a reload repeats nothing)". "Yes, cancel it"
    tapped twice: one cancellation (one audit entry), one notice per channel; the second
    answer is the page, cancelled, with "This appointment is already cancelled." (409, never a 500)."""
    first = client.post(portal_page(told, "cancel"), {"reason": "Away"})
    second = client.post(portal_page(told, "cancel"), {"reason": "Away"})

    assert first.status_code == 303
    assert second.status_code == 409 and "This appointment is already cancelled." in words(second)
    assert AuditEvent.objects.filter(appointment=told, action=AuditAction.CANCELLED).count() == 1
    send_all_until(CLOCK + timedelta(hours=1), start=CLOCK, step=timedelta(minutes=10))
    assert len([t for t in texts() if "cancelled" in t]) == 1
    assert len([m for m in mail.outbox if "cancelled" in m.subject]) == 1


# --- The cancellation window after the clinic moved the visit -------------------------------------------------------


@pytest.mark.parametrize(
    ("moved_to", "allowed"),
    [((2026, 3, 2, 15), False), ((2026, 3, 3, 9), True), ((2026, 3, 3, 10), True)],
    ids=["today-15h-6h-away", "tomorrow-09h-exactly-24h", "tomorrow-10h-25h-away"],
)
def test_after_the_clinic_moves_the_visit_near_the_page_offers_what_the_server_allows(
    client, told, frozen, moved_to, allowed
):
    """docs/portal.md, Window: "once start - now is less than [24 hours], the patient can neither cancel nor move
    online ... Exactly 24 hours before is still allowed ... Checked again under the patient and appointment locks, so a
    page that was open while staff moved the appointment cannot slip through". The patient's confirm step (Thursday
    12) is open; the desk moves the visit to today 15:00, tomorrow 09:00 or tomorrow 10:00. The page offers Move and
    Cancel exactly when the server takes them; refused, the page and the server say the same sentence. Where the move
    is still allowed, the confirm step is drawn after the desk's move (one drawn before is refused for that, above)."""
    if not allowed:
        action, slot, _ = draw_confirm(client, told, ldn(2026, 3, 12), told.practitioner_id)
    appointment_reschedule(appointment=told, start_at=ldn(*moved_to), actor=RECEPTION, now=frozen)
    if allowed:
        action, slot, _ = draw_confirm(client, told, ldn(2026, 3, 12), told.practitioner_id)
    page = client.get(portal_page(told))

    moved = client.post(action, slot)
    assert can_change(page) is allowed
    assert (moved.status_code == 303) is allowed, (moved.status_code, words(moved)[:300])
    cancelled = client.post(portal_page(told, "cancel"), {"reason": ""})
    assert (cancelled.status_code == 303) is allowed
    if not allowed:
        said = "Your appointment starts in less than 24 hours, so it can no longer be cancelled or moved online."
        for answer in (page, moved, cancelled):
            assert said in words(answer) and "Monday 2 March 2026 15:00" in words(answer)
        assert moved.status_code == cancelled.status_code == 409
        assert where(told)[::2] == (ldn(*moved_to), AppointmentStatus.CONFIRMED) and patient_moves(told) == 0


# --- A course's session while the clinic re-plans or cancels the course -------------------------------------------


@pytest.mark.parametrize("clinic_does", ["cancels-the-plan", "replans-from-session-2"])
def test_a_sessions_confirm_after_the_course_was_cancelled_or_replanned(client, course, api, frozen, clinic_does):
    """docs/portal.md, "A course's session": "The move reads the course's days again under the patient's lock"; "A
    time outside, at the confirm step or the move, gets that sentence with the times offered (409) and changes
    nothing"; docs/plans.md: a cancelled course cancels its bookings still to come. The patient's confirm step moves
    session 3 from Monday 4 May to Tuesday 5 May (within 4-18 May); then the platform cancels the plan, or re-plans
    from session 2 a week later (session 3 follows to Monday 11 May, its days now 11-25 May). "Yes, move it": the
    plan cancelled, "already cancelled"; re-planned, the course's new sentence and the time the re-plan gave it. Either
    way nothing moved by the patient."""
    three = course.sessions.get(index=3).appointment
    action, slot, _ = draw_confirm(client, three, ldn(2026, 5, 5, 9), three.practitioner_id)
    if clinic_does == "cancels-the-plan":
        done = post(api, f"/plans/{course.pk}/cancel/", {"reason": "Patient stops"})
    else:
        done = post(api, f"/plans/{course.pk}/replan/", {"from_session": 2, "start": "2026-04-13T09:00:00+01:00"})
    assert done.status_code == 200, done.content[:400]

    answer = client.post(action, slot)

    assert answer.status_code == 409 and patient_moves(three) == 0
    if clinic_does == "cancels-the-plan":
        assert "This appointment is already cancelled." in words(answer)
        assert where(three)[::2] == (ldn(2026, 5, 4, 9), AppointmentStatus.CANCELLED)
    else:
        assert (
            "This is session 3 of your course: online it can be moved between Monday 11 May 2026 and Monday 25 May "
            "2026." in words(answer)
        )
        assert "Your Microneedling is booked for Monday 11 May at 09:00." in words(answer)
        assert where(three)[::2] == (ldn(2026, 5, 11, 9), AppointmentStatus.CONFIRMED)


# --- Double submits, Back ----------------------------------------------------------------------------------------------


def test_back_then_confirm_again_is_one_move_and_one_notice(client, told, frozen):
    """docs/portal.md: the confirm step "The time it already has (Back after the move) says 'Your appointment is
    already at this time' and offers no move"; "A move sent twice ... is one move". The patient confirms, goes Back
    to the confirm step (the old link: it still works), and, from a copy of the page the browser kept, confirms again:
    one move, "Done" both times, one notice per channel."""
    action, slot, _ = draw_confirm(client, told, ldn(2026, 3, 12), told.practitioner_id)
    first = client.post(action, slot)
    back = client.get(action, {"slot": slot["slot"]})
    again = client.post(action, slot, follow=True)

    assert first.status_code == 303 and first["Location"] != portal_page(told)  # a fresh link after the move
    assert "Your appointment is already at this time" in words(back) and "Yes, move it" not in words(back)
    assert "Done: your appointment is now on Thursday 12 March 2026 at 10:00" in words(again)
    assert patient_moves(told) == 1
    send_all_until(CLOCK + timedelta(hours=1), start=CLOCK, step=timedelta(minutes=10))
    assert len([t for t in texts() if "moved" in t]) == 1 and len(mail.outbox) == 1
    assert_each_notice_runs_from_what_was_heard(told)


def test_back_to_the_times_and_another_confirm_in_the_grace_is_one_notice_from_the_first_time(client, told, frozen):
    """docs/reminders.md: "moves within it [the grace period] collapse into one notice". The patient moves to Thursday
    12, goes Back to the times (the old link) and moves again to Friday 13 two minutes later: the second confirm step
    says "From" Thursday (true then), and the patient hears once, from Tuesday to Friday."""
    action, slot, _ = draw_confirm(client, told, ldn(2026, 3, 12), told.practitioner_id)
    client.post(action, slot)
    with time_machine.travel(CLOCK + timedelta(minutes=2), tick=False):
        second_action, second_slot, drawn = draw_confirm(client, told, ldn(2026, 3, 13), told.practitioner_id)
        assert "From Thursday 12 March 2026, 10:00" in words(drawn)
        assert client.post(second_action, second_slot).status_code == 303
    send_all_until(CLOCK + timedelta(hours=1), start=CLOCK + timedelta(minutes=2), step=timedelta(minutes=3))

    assert where(told)[0] == ldn(2026, 3, 13) and patient_moves(told) == 2
    assert [t for t in texts() if "moved" in t] == [
        "Bloom Clinic: your appointment has moved to Fri 13 Mar, 10:00 (GMT) (it was Tue 10 Mar, 10:00 (GMT))."
    ]
    assert len(mail.outbox) == 1
    assert_each_notice_runs_from_what_was_heard(told)
