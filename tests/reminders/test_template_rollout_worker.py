"""A care text's run for the visits booked before it, done by a real Celery worker on a real Redis broker: the
admin's save enqueues its first step (`reminders.template_rollout_step`), the worker does each chunk and enqueues the
next, and the visit booked before the text gets it (reminders.services.template_rollout_*)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from reminders.defaults import care_texts_load
from reminders.models import OutboxMessage, ReminderTemplate, TemplateRollout
from reminders.services import template_rollout_start
from reminders.tasks import template_rollout_step
from scheduler.booking import Actor, appointment_book
from tests.conftest import redis_url
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory
from tests.reminders.helpers import _forget_queue, wait_until
from tests.reminders.support import CeleryHarness

LONDON = ZoneInfo("Europe/London")


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_on_redis_plans_a_new_text_for_the_visits_booked_before_it(transactional_db, catalogue, tmp_path):
    care_texts_load()
    clinic = ClinicFactory(code="rollout-worker", timezone="Europe/London")
    PractitionerFactory(clinic=clinic, name="Dr W")
    now = timezone.now()
    start = (now + timedelta(days=10)).astimezone(LONDON).replace(hour=10, minute=0, second=0, microsecond=0)
    while start.weekday() == 6:
        start += timedelta(days=1)
    visit = appointment_book(
        patient=PatientFactory(clinic=clinic, email="w@example.com", reminder_channels=["email"]),
        procedure_code="microneedling",
        start_at=start,
        actor=Actor("reception@test"),
        now=now,
    ).appointment
    added = ReminderTemplate.objects.create(
        name="Microneedling, 72 h before (worker)",
        kind="pre_care",
        procedure_id="microneedling",
        anchor="start",
        offset_value=-72,
        offset_unit="hours",
        email_subject="Three days before",
        email_text="Hello {{ patient_first_name }}.",
    )
    run = template_rollout_start(template=added, before=None, now=now)

    queue = f"test-rollout-{uuid.uuid4().hex[:10]}"
    harness = CeleryHarness(broker_url=redis_url(), queue=queue, tmp=tmp_path)
    try:
        harness.worker("w1")
        # Sent to the harness's broker whatever this process was configured with.
        with template_rollout_step.app.connection_for_write(redis_url()) as connection:
            template_rollout_step.apply_async(args=(str(run.pk),), queue=queue, connection=connection)
        wait_until(
            lambda: TemplateRollout.objects.get(pk=run.pk).finished_at is not None,
            timeout=60,
            what="the worker to finish the care text's run",
            harness=harness,
        )
    finally:
        harness.stop_all()
        _forget_queue(harness.broker_url, queue)
    row = OutboxMessage.objects.get(appointment=visit, template=added)
    assert (row.channel, row.status, row.due_at) == ("email", "pending", start - timedelta(hours=72))
    assert TemplateRollout.objects.get(pk=run.pk).visits_done == 1
