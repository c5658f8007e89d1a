"""Cancelling a whole course (plans.services.plan_cancel, docs/plans.md "Cancelling a course"): every booking of it
still to come is cancelled as a single cancellation is (audited, its messages cancelled, a webhook), a visit under
way keeps its booking, a recall its sessions planned is withdrawn, and no session of it is due, re-planned or
recalled afterwards. The London clinic of tests/reminders/conftest.py; the patient takes e-mail and SMS."""

from datetime import UTC, date, datetime, timedelta

import pytest

from clinic.models import AppointmentStatus, AuditAction, AuditEvent
from core.errors import ErrorCode, Refused
from plans import selectors
from plans.defaults import plan_templates_load
from plans.models import PlanTemplate, Recall
from plans.services import plan_book, plan_cancel, plan_replan, plan_replan_propose
from reminders.models import MessageKind, OutboxMessage, OutboxStatus
from scheduler.booking import appointment_cancel, appointment_check_in, appointment_complete
from tests.reminders.conftest import CLINICIAN, RECEPTION

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def course_templates(care_texts):
    plan_templates_load()


def _book(patient, code="microneedling-course"):
    return plan_book(
        patient=patient,
        clinic=patient.clinic,
        template=PlanTemplate.objects.get(code=code),
        start_at=datetime(2026, 3, 9, 0, tzinfo=UTC),
        actor=RECEPTION,
        now=NOW,
    )


def _appointments(plan):
    return [session.appointment for session in plan.sessions.select_related("appointment").order_by("index")]


def _statuses(plan, today):
    return [view.status for view in selectors.plan_sessions(plan, today)]


def test_cancelling_a_course_cancels_every_booking_still_to_come_with_its_messages(patient, practitioner):
    plan = _book(patient)
    pending = OutboxMessage.objects.filter(appointment__in=_appointments(plan), status=OutboxStatus.PENDING)
    assert pending.exists()  # reminders and pre-care notes waiting for each session
    # The patient heard of the bookings (docs/reminders.md: a cancellation notice only if they had).
    OutboxMessage.objects.filter(appointment__patient=patient, kind=MessageKind.CONFIRMATION).update(
        status=OutboxStatus.SENT, sent_at=NOW
    )
    plan_cancel(plan=plan, actor=RECEPTION, now=NOW, reason="Moving abroad")
    plan.refresh_from_db()
    assert plan.cancelled_at == NOW and plan.cancel_reason == "Moving abroad"
    for appointment in _appointments(plan):
        assert appointment.status == AppointmentStatus.CANCELLED
        assert appointment.cancel_reason == "Treatment plan cancelled: Moving abroad"
    # Each booking's cancellation is audited as any cancellation is, and nothing is left to go but the notices.
    assert AuditEvent.objects.filter(action=AuditAction.CANCELLED, appointment__in=_appointments(plan)).count() == 3
    assert not OutboxMessage.objects.filter(appointment__in=_appointments(plan), status=OutboxStatus.PENDING).exclude(
        kind=MessageKind.CANCELLED
    )
    notices = OutboxMessage.objects.filter(appointment__in=_appointments(plan), kind=MessageKind.CANCELLED)
    assert sorted(notices.values_list("appointment_id", "channel")) == sorted(
        (a.pk, channel) for a in _appointments(plan) for channel in ("email", "sms")
    )
    # No session of it is due any more, even once its window has passed.
    assert _statuses(plan, date(2026, 3, 2)) == ["cancelled"] * 3
    assert _statuses(plan, date(2027, 1, 1)) == ["cancelled"] * 3


def test_a_session_done_stays_done_and_a_visit_under_way_keeps_its_booking(patient, practitioner):
    plan = _book(patient)
    first, second, third = _appointments(plan)
    appointment_complete(appointment=first, actor=CLINICIAN, now=first.start_at + timedelta(hours=1))
    # Session 2's day: the patient is checked in, and the course is cancelled while they are in the chair.
    during = second.start_at + timedelta(minutes=10)
    appointment_check_in(appointment=second, actor=RECEPTION, now=second.start_at - timedelta(minutes=5))
    plan_cancel(plan=plan, actor=RECEPTION, now=during, reason="")
    first, second, third = _appointments(plan)
    assert first.status == AppointmentStatus.COMPLETED
    assert second.status == AppointmentStatus.CONFIRMED  # its outcome is the clinician's to record
    assert third.status == AppointmentStatus.CANCELLED and third.cancel_reason == "Treatment plan cancelled."
    assert _statuses(plan, during.date()) == ["completed", "booked", "cancelled"]


def test_a_visit_whose_time_has_come_is_left_to_the_clinician_even_without_a_check_in(patient, practitioner):
    plan = _book(patient)
    first, second, third = _appointments(plan)
    plan_cancel(plan=plan, actor=RECEPTION, now=first.start_at)
    assert [a.status for a in _appointments(plan)] == [
        AppointmentStatus.CONFIRMED,
        AppointmentStatus.CANCELLED,
        AppointmentStatus.CANCELLED,
    ]


def test_a_recall_the_course_planned_is_withdrawn(patient, practitioner):
    plan = _book(patient, "plasma-pen-course")
    first, second = _appointments(plan)
    appointment_cancel(appointment=second, actor=RECEPTION, now=NOW)
    appointment_complete(appointment=first, actor=CLINICIAN, now=first.start_at + timedelta(hours=1))
    recall = Recall.objects.get(patient=patient)
    assert recall.closed_at is None
    unsent = OutboxMessage.objects.filter(appointment=first, kind=MessageKind.RECALL, status=OutboxStatus.PENDING)
    assert unsent.count() == 2  # e-mail and SMS
    later = first.start_at + timedelta(days=2)
    plan_cancel(plan=plan, actor=RECEPTION, now=later, reason="Happy with one")
    recall.refresh_from_db()
    assert recall.closed_at == later
    assert not unsent.exists()
    assert OutboxMessage.objects.filter(appointment=first, kind=MessageKind.RECALL, status=OutboxStatus.CANCELLED)


def test_a_visit_under_way_completed_after_the_course_was_cancelled_recalls_nothing(patient, practitioner):
    plan = _book(patient, "plasma-pen-course")
    first, _ = _appointments(plan)
    plan_cancel(plan=plan, actor=RECEPTION, now=first.start_at + timedelta(minutes=5))
    appointment_complete(appointment=first, actor=CLINICIAN, now=first.start_at + timedelta(hours=1))
    assert not Recall.objects.filter(patient=patient).exists()
    assert not OutboxMessage.objects.filter(appointment__patient=patient, kind=MessageKind.RECALL).exists()


def test_a_cancelled_course_is_not_cancelled_twice_nor_re_planned(patient, practitioner):
    plan = _book(patient)
    plan_cancel(plan=plan, actor=RECEPTION, now=NOW)
    audits = AuditEvent.objects.count()
    for attempt in (
        lambda: plan_cancel(plan=plan, actor=RECEPTION, now=NOW),
        lambda: plan_replan(plan=plan, from_index=1, start_at=NOW, actor=RECEPTION, now=NOW),
        lambda: plan_replan_propose(plan=plan, from_index=1, start_at=NOW),
    ):
        with pytest.raises(Refused) as refused:
            attempt()
        assert refused.value.code == ErrorCode.PLAN_CANCELLED
        assert "cancelled on 02 Mar 2026" in refused.value.message
    assert AuditEvent.objects.count() == audits


def test_a_re_plan_holding_a_stale_copy_of_the_plan_sees_the_cancellation(patient, practitioner):
    plan = _book(patient)
    stale = type(plan).objects.get(pk=plan.pk)
    plan_cancel(plan=plan, actor=RECEPTION, now=NOW)
    assert stale.cancelled_at is None  # read before the cancellation, as a request racing it would have
    with pytest.raises(Refused) as refused:
        plan_replan(plan=stale, from_index=2, start_at=NOW, actor=RECEPTION, now=NOW)
    assert refused.value.code == ErrorCode.PLAN_CANCELLED
    assert [a.status for a in _appointments(plan)] == [AppointmentStatus.CANCELLED] * 3


def test_a_course_whose_every_session_is_done_is_finished_and_keeps_its_maintenance_recall(patient, practitioner):
    plan = _book(patient, "botox-maintenance")
    appointments = _appointments(plan)
    for appointment in appointments:
        appointment_complete(appointment=appointment, actor=CLINICIAN, now=appointment.start_at + timedelta(hours=1))
    # After the last one, the maintenance template recalls the patient (Botox again in 3-4 months): not the course's.
    recall = Recall.objects.get(patient=patient, closed_at__isnull=True)
    assert recall.session_id is None and recall.after_id == appointments[-1].pk
    with pytest.raises(Refused) as refused:
        plan_cancel(plan=plan, actor=RECEPTION, now=appointments[-1].start_at + timedelta(days=1))
    assert refused.value.code == ErrorCode.PLAN_FINISHED
    plan.refresh_from_db()
    assert plan.cancelled_at is None
    recall.refresh_from_db()
    assert recall.closed_at is None


def test_the_plan_records_who_cancelled_it(patient, practitioner):
    plan = _book(patient)
    plan_cancel(plan=plan, actor=RECEPTION, now=NOW)
    plan.refresh_from_db()
    assert plan.cancelled_by == RECEPTION.label
