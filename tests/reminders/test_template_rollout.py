"""A care text added (or switched on, or given another procedure, moment or channel) reaches the visits booked
before it, not only those booked, moved or re-checked afterwards (reminders.services.template_rollout_*).

A clinic adds "72 h before: stop blood thinners after speaking to your GP" for microneedling: every patient booked
for microneedling from then on gets it, and so must those booked already. The template's admin starts a run once
its save commits; the run plans the text for those visits in chunks, each visit under its patient's lock, as a
booking would plan it now (quiet hours, a moment passed, a visit held for review), and never twice: a channel the
visit has a row of this text for (sent, staff-cancelled, anything) is left alone. A run a dead worker left half-way
is resumed by the beat (`reminders.resume_template_rollouts`, or run_dispatcher with no broker).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import User

from clinic.models import AppointmentStatus, Patient
from reminders import services, tasks
from reminders.models import Channel, MessageKind, OutboxMessage, OutboxStatus, ReminderTemplate, TemplateRollout
from scheduler.booking import appointment_cancel, appointment_complete
from tests.admin_forms import care_text_form
from tests.factories import PatientFactory
from tests.reminders.conftest import CLINICIAN, RECEPTION, book, london

pytestmark = pytest.mark.django_db

NOW = london(2026, 3, 2, 9)
ADD_URL = "/admin/reminders/remindertemplate/add/"


@pytest.fixture(autouse=True)
def _no_broker(settings):
    """The embedded default: a run is done in the admin's request once its save commits (a worker's, with one)."""
    settings.CELERY_BROKER_URL = ""


def someone(clinic, name: str) -> Patient:
    return PatientFactory(
        clinic=clinic,
        first_name=name,
        email=f"{name.lower()}@example.com",
        phone=f"+4477009{abs(hash(name)) % 100000:05d}",
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )


@pytest.fixture
def superuser_client(client, db):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def add_in_admin(client, django_capture_on_commit_callbacks, at=NOW, **changes) -> ReminderTemplate:
    with time_machine.travel(at, tick=False), django_capture_on_commit_callbacks(execute=True):
        response = client.post(ADD_URL, care_text_form(**changes))
    assert response.status_code == 302, response.content.decode()[:2000]
    return ReminderTemplate.objects.get(name=care_text_form(**changes)["name"])


def rows_of(appointment, template) -> dict[str, OutboxMessage]:
    return {r.channel: r for r in OutboxMessage.objects.filter(appointment=appointment, template=template)}


def test_a_text_added_in_the_admin_reaches_the_visits_booked_before_it_and_no_others(
    superuser_client, clinic, patient, practitioner, django_capture_on_commit_callbacks
):
    kept = book(patient, "microneedling", london(2026, 3, 20), NOW)
    later = book(patient, "microneedling", london(2026, 4, 20), NOW)
    other_treatment = book(someone(clinic, "Botox"), "botox", london(2026, 3, 25), NOW)
    cancelled = book(patient, "microneedling", london(2026, 5, 20), NOW)
    appointment_cancel(appointment=cancelled, actor=RECEPTION, now=NOW, reason="changed her mind")

    added = add_in_admin(superuser_client, django_capture_on_commit_callbacks)

    for visit in (kept, later):
        rows = rows_of(visit, added)
        assert set(rows) == {Channel.EMAIL, Channel.SMS}
        assert {(r.status, r.due_at, r.anchor_at, r.kind) for r in rows.values()} == {
            (OutboxStatus.PENDING, visit.start_at - timedelta(hours=72), visit.start_at, MessageKind.PRE_CARE)
        }
    assert rows_of(other_treatment, added) == {} and rows_of(cancelled, added) == {}
    [run] = TemplateRollout.objects.all()
    assert (run.visits_done, run.messages_planned, run.failures) == (2, 4, [])
    assert run.finished_at is not None and run.template == added


def test_a_visit_whose_moment_passed_gets_the_text_at_once_only_where_late_sending_is_allowed(
    superuser_client, patient, practitioner, django_capture_on_commit_callbacks
):
    soon = book(patient, "microneedling", london(2026, 3, 3, 14), NOW)  # 29 h ahead: 72 h before has passed

    allowed = add_in_admin(superuser_client, django_capture_on_commit_callbacks)
    not_late = add_in_admin(superuser_client, django_capture_on_commit_callbacks, name="Not late", send_if_late=False)

    assert {r.due_at for r in rows_of(soon, allowed).values()} == {NOW}
    assert rows_of(soon, not_late) == {}


def test_a_visit_held_for_review_gets_the_text_held_and_a_patient_gets_only_the_channels_they_accept(
    superuser_client, clinic, patient, practitioner, django_capture_on_commit_callbacks
):
    held = book(patient, "microneedling", london(2026, 3, 20), NOW)
    type(held).objects.filter(pk=held.pk).update(status=AppointmentStatus.NEEDS_REVIEW)
    email_only = PatientFactory(clinic=clinic, first_name="Bea", email="bea@example.com", reminder_channels=["email"])
    hers = book(email_only, "microneedling", london(2026, 3, 23), NOW)

    added = add_in_admin(superuser_client, django_capture_on_commit_callbacks)

    assert {r.status for r in rows_of(held, added).values()} == {OutboxStatus.HELD}
    assert set(rows_of(hers, added)) == {Channel.EMAIL}


def test_a_text_due_in_quiet_hours_moves_before_them_as_a_booking_plans_it(
    superuser_client, patient, practitioner, django_capture_on_commit_callbacks
):
    visit = book(patient, "microneedling", london(2026, 3, 20), NOW)

    added = add_in_admin(superuser_client, django_capture_on_commit_callbacks, offset_value="-84")  # 22:00 the 16th

    rows = rows_of(visit, added)
    assert rows[Channel.EMAIL].due_at == london(2026, 3, 16, 22)  # e-mail: no quiet hours
    text = rows[Channel.SMS].due_at.astimezone(london(2026, 3, 16).tzinfo)
    assert london(2026, 3, 16, 20) < text < london(2026, 3, 16, 21), text  # before they begin, as planning moves it


def test_nothing_is_planned_twice_and_a_row_staff_cancelled_stays_cancelled(
    superuser_client, patient, practitioner, django_capture_on_commit_callbacks
):
    visit = book(patient, "microneedling", london(2026, 3, 20), NOW)
    added = add_in_admin(superuser_client, django_capture_on_commit_callbacks)
    services.outbox_cancel(message_ids=[rows_of(visit, added)[Channel.SMS].pk], now=NOW)

    run = services.template_rollout_start(template=added, before=None, now=NOW)
    with time_machine.travel(NOW, tick=False):
        tasks.start_rollout(str(run.pk))

    rows = list(OutboxMessage.objects.filter(appointment=visit, template=added))
    assert sorted((r.channel, r.status) for r in rows) == [
        (Channel.EMAIL, OutboxStatus.PENDING),
        (Channel.SMS, OutboxStatus.CANCELLED),
    ]
    run.refresh_from_db()
    assert (run.visits_done, run.messages_planned) == (1, 0)


def test_a_text_switched_on_again_plans_only_what_the_visits_lack(
    superuser_client, patient, practitioner, django_capture_on_commit_callbacks
):
    """Switched off, the text was planned for no booking; switched on, the visits booked meanwhile get it, and those
    that had it keep their rows as they were."""
    first = book(patient, "microneedling", london(2026, 3, 20), NOW)
    added = add_in_admin(superuser_client, django_capture_on_commit_callbacks)
    before = {r.pk for r in rows_of(first, added).values()}
    ReminderTemplate.objects.filter(pk=added.pk).update(is_active=False)
    meanwhile = book(patient, "microneedling", london(2026, 4, 20), NOW)
    assert rows_of(meanwhile, added) == {}

    with time_machine.travel(NOW, tick=False), django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post(f"/admin/reminders/remindertemplate/{added.pk}/change/", care_text_form())
    assert response.status_code == 302

    assert {r.pk for r in rows_of(first, added).values()} == before
    assert set(rows_of(meanwhile, added)) == {Channel.EMAIL, Channel.SMS}


def test_aftercare_added_reaches_visits_done_whose_moment_is_still_ahead(
    superuser_client, patient, practitioner, django_capture_on_commit_callbacks
):
    yesterday = book(patient, "microneedling", london(2026, 2, 27), london(2026, 2, 20))
    long_ago = book(patient, "microneedling", london(2026, 1, 20), london(2026, 1, 10))
    done_yesterday, done_long_ago = london(2026, 3, 1, 11), london(2026, 1, 20, 11)
    for visit, at in ((yesterday, done_yesterday), (long_ago, done_long_ago)):
        with time_machine.travel(at, tick=False):
            appointment_complete(appointment=visit, actor=CLINICIAN, now=at)

    added = add_in_admin(
        superuser_client,
        django_capture_on_commit_callbacks,
        name="Microneedling, 3 days after",
        kind="post_care",
        anchor="completion",
        offset_value="72",
    )

    assert {r.due_at for r in rows_of(yesterday, added).values()} == {done_yesterday + timedelta(hours=72)}
    assert rows_of(long_ago, added) == {}


@pytest.mark.parametrize(
    "change, wanted",
    [
        ({"email_text": "Reworded {{ patient_first_name }}"}, False),  # words only: every row renders them when it goes
        ({"offset_value": -48}, True),
        ({"procedure_id": "botox"}, True),
        ({"sms_text": ""}, False),  # a channel taken away is the send's to refuse (verdicts.still_wanted)
        ({"is_active": False}, False),
        ({"kind": MessageKind.CONFIRMATION}, False),  # about a change made: not sent for one made before
    ],
)
def test_which_saves_start_a_run(care_texts, change, wanted):
    before = ReminderTemplate.objects.get(default_key="microneedling-pre-care-24h")
    after = ReminderTemplate.objects.get(pk=before.pk)
    for name, value in change.items():
        setattr(after, name, value)

    assert services.template_rollout_wanted(before, after) is wanted


def test_a_channel_given_text_starts_a_run_and_one_switched_on_does(care_texts):
    before = ReminderTemplate.objects.get(default_key="microneedling-pre-care-24h")
    email_only = ReminderTemplate.objects.get(pk=before.pk)
    email_only.sms_text = ""
    assert services.template_rollout_wanted(email_only, before) is True
    switched_off = ReminderTemplate.objects.get(pk=before.pk)
    switched_off.is_active = False
    assert services.template_rollout_wanted(switched_off, before) is True


def test_a_visit_that_cannot_be_planned_is_recorded_and_the_others_go_on(clinic, patient, practitioner, monkeypatch):
    visits = [book(someone(clinic, f"P{i}"), "microneedling", london(2026, 3, 23 + i), NOW) for i in range(3)]
    template = ReminderTemplate.objects.get(default_key="microneedling-pre-care-24h")
    broken = sorted(v.pk for v in visits)[1]
    real = services._rollout_visit

    def failing(appointment_id, *args):
        if appointment_id == broken:
            raise RuntimeError("a lock that waited too long")
        return real(appointment_id, *args)

    monkeypatch.setattr(services, "_rollout_visit", failing)
    OutboxMessage.objects.filter(template=template).delete()
    run = TemplateRollout.objects.create(template=template, cause="test", created_at=NOW)

    assert services.template_rollout_step(run_id=run.pk, now=NOW) is True

    run.refresh_from_db()
    assert run.visits_done == 3 and [f["appointment"] for f in run.failures] == [str(broken)]
    assert {v.pk for v in visits if rows_of(v, template)} == {v.pk for v in visits} - {broken}


def test_a_run_left_half_way_is_resumed_where_it_stopped(clinic, patient, practitioner, monkeypatch):
    visits = [book(someone(clinic, f"P{i}"), "microneedling", london(2026, 3, 23 + i), NOW) for i in range(3)]
    template = ReminderTemplate.objects.get(default_key="microneedling-pre-care-24h")
    OutboxMessage.objects.filter(template=template).delete()
    run = TemplateRollout.objects.create(template=template, cause="test", created_at=NOW)

    assert services.template_rollout_step(run_id=run.pk, now=NOW, chunk=1) is False  # a worker died after this
    assert services.template_rollouts_stalled(now=NOW) == []  # moving: not the beat's yet

    later = NOW + services.STALLED_AFTER + timedelta(seconds=1)
    with time_machine.travel(later, tick=False):
        assert tasks.resume_template_rollouts() == 1

    run.refresh_from_db()
    assert run.finished_at is not None and run.visits_done == 3
    assert all(set(rows_of(v, template)) == {Channel.EMAIL, Channel.SMS} for v in visits)
    assert OutboxMessage.objects.filter(template=template).count() == 6


def test_a_template_deleted_takes_its_run_with_it(care_texts):
    template = ReminderTemplate.objects.create(
        name="Short-lived",
        kind=MessageKind.PRE_CARE,
        anchor="start",
        offset_value=-1,
        email_subject="s",
        email_text="t",
    )
    run = TemplateRollout.objects.create(template=template, cause="test", created_at=datetime(2026, 3, 2, tzinfo=UTC))
    template.delete()
    assert not TemplateRollout.objects.filter(pk=run.pk).exists()
