"""A rule edit re-checks every patient it may affect: in chunks, resumable, progress visible, on a real worker."""

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.utils import timezone

from clinic.models import AppointmentStatus, AuditEvent
from scheduler.booking import Actor, appointment_book
from scheduler.models import IntervalRule, RecheckRun
from scheduler.recheck import recheck_run_start, recheck_run_step, recheck_runs_stalled
from scheduler.tasks import resume_rechecks
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory, ProcedureRecordFactory

LONDON = ZoneInfo("Europe/London")
RECEPTION = Actor("reception@test")


def local(y, m, d, hh=10, mm=0):
    return datetime(y, m, d, hh, mm, tzinfo=LONDON)


@pytest.fixture
def clinic(catalogue):
    clinic = ClinicFactory(code="london", timezone="Europe/London")
    PractitionerFactory(clinic=clinic, name="Dr A")
    return clinic


def booked_after_filler(clinic, now, *, count=1):
    """Patients with filler five weeks before a microneedling booking: fine under the 4-week rule."""
    appointments = []
    for index in range(count):
        patient = PatientFactory(clinic=clinic, email=f"p{index}@example.com")
        ProcedureRecordFactory(patient=patient, procedure_id="filler", performed_at=local(2026, 2, 1))
        appointments.append(
            appointment_book(
                patient=patient,
                procedure_code="microneedling",
                start_at=local(2026, 3, 10 + index),
                actor=RECEPTION,
                now=now,
            ).appointment
        )
    return appointments


def tighten_filler_rule(weeks=8):
    rule = IntervalRule.objects.get(earlier_procedure_id="filler", later_procedure_id="microneedling", severity="block")
    rule.gap_value = weeks
    rule.save()
    return rule


def test_tightening_a_rule_flags_the_bookings_it_now_forbids(settings, clinic, now, django_capture_on_commit_callbacks):
    settings.CELERY_BROKER_URL = ""  # the embedded default: the run goes in this process
    [appointment] = booked_after_filler(clinic, now)

    with time_machine.travel(now, tick=False), django_capture_on_commit_callbacks(execute=True):
        tighten_filler_rule()

    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.NEEDS_REVIEW
    [run] = RecheckRun.objects.all()
    assert (run.patients_done, run.appointments_changed, run.finished_at is not None) == (1, 1, True)
    audit = AuditEvent.objects.get(appointment=appointment, action="needs_review")
    assert audit.reason.startswith("rule changed: filler")


def test_a_rule_change_nothing_booked_depends_on_starts_no_run(
    settings, clinic, now, django_capture_on_commit_callbacks
):
    settings.CELERY_BROKER_URL = ""
    with time_machine.travel(now, tick=False), django_capture_on_commit_callbacks(execute=True):
        tighten_filler_rule()
    assert not RecheckRun.objects.exists()


def test_a_run_goes_in_chunks_and_resumes_where_a_dead_worker_left_it(clinic, now):
    appointments = booked_after_filler(clinic, now, count=3)
    IntervalRule.objects.filter(
        earlier_procedure_id="filler", later_procedure_id="microneedling", severity="block"
    ).update(gap_value=8)  # no signal: the run is driven by hand
    run = recheck_run_start(cause="rule changed: by hand", procedures=["microneedling"], now=now)

    assert recheck_run_step(run_id=run.pk, now=now, chunk=1) is False  # one patient, then the worker dies
    run.refresh_from_db()
    assert (run.patients_done, run.finished_at) == (1, None) and run.cursor is not None
    assert recheck_runs_stalled(now=now + timedelta(minutes=1)) == []
    assert recheck_runs_stalled(now=now + timedelta(minutes=3)) == [run.pk]

    while not recheck_run_step(run_id=run.pk, now=now, chunk=1):
        pass

    run.refresh_from_db()
    assert (run.patients_done, run.appointments_changed) == (3, 3)
    for appointment in appointments:
        appointment.refresh_from_db()
        assert appointment.status == AppointmentStatus.NEEDS_REVIEW
    assert recheck_run_step(run_id=run.pk, now=now) is True  # a finished run stays finished


def test_the_beat_resumes_a_stalled_run(settings, clinic, now):
    settings.CELERY_BROKER_URL = ""
    [appointment] = booked_after_filler(clinic, now)
    IntervalRule.objects.filter(
        earlier_procedure_id="filler", later_procedure_id="microneedling", severity="block"
    ).update(gap_value=8)
    run = recheck_run_start(cause="rule changed: never enqueued", procedures=["microneedling"], now=now)

    with time_machine.travel(now + timedelta(minutes=5), tick=False):
        assert resume_rechecks() == 1

    run.refresh_from_db()
    appointment.refresh_from_db()
    assert run.finished_at is not None and appointment.status == AppointmentStatus.NEEDS_REVIEW


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_on_redis_runs_the_recheck(transactional_db, catalogue, tmp_path):
    from scheduler.tasks import recheck_step
    from tests.conftest import redis_url
    from tests.reminders.helpers import _forget_queue, wait_until
    from tests.reminders.support import CeleryHarness

    clinic = ClinicFactory(code="worker", timezone="Europe/London")
    PractitionerFactory(clinic=clinic, name="Dr W")
    soon = timezone.now()
    patient = PatientFactory(clinic=clinic, email="w@example.com")
    start = (soon + timedelta(days=10)).astimezone(LONDON).replace(hour=10, minute=0, second=0, microsecond=0)
    while start.weekday() == 6:
        start += timedelta(days=1)
    ProcedureRecordFactory(patient=patient, procedure_id="filler", performed_at=start - timedelta(weeks=5))
    appointment = appointment_book(
        patient=patient, procedure_code="microneedling", start_at=start, actor=RECEPTION, now=soon
    ).appointment
    IntervalRule.objects.filter(
        earlier_procedure_id="filler", later_procedure_id="microneedling", severity="block"
    ).update(gap_value=8)
    run = recheck_run_start(cause="rule changed: on a worker", procedures=["microneedling"], now=soon)

    queue = f"test-recheck-{uuid.uuid4().hex[:10]}"
    harness = CeleryHarness(broker_url=redis_url(), queue=queue, tmp=tmp_path)
    try:
        harness.worker("w1")
        # Sent to the harness's broker whatever this process was configured with.
        with recheck_step.app.connection_for_write(redis_url()) as connection:
            recheck_step.apply_async(args=(str(run.pk),), queue=queue, connection=connection)
        wait_until(
            lambda: RecheckRun.objects.get(pk=run.pk).finished_at is not None,
            timeout=60,
            what="the worker to finish the re-check",
            harness=harness,
        )
    finally:
        harness.stop_all()
        _forget_queue(harness.broker_url, queue)
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.NEEDS_REVIEW
