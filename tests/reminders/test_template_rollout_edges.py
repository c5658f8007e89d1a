"""A care text's run for the visits booked before it, where it meets a change of kind and other lockers (review of
28e32db): a text made aftercare by mistake and put back at once gets its notes back (the rows the service itself
cancelled do not count as the visit having them; a row staff cancelled does); a reminder made aftercare reaches a
visit whose reminder went; a chunk takes its patients' locks in patient order, as a re-check and a merge take theirs,
so a locker holding one patient and wanting the next is waited for, not deadlocked with."""

from __future__ import annotations

import threading
import time

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import connection, transaction

from clinic.models import Patient
from reminders import services
from reminders.models import MessageKind, OutboxMessage, OutboxStatus, ReminderTemplate, TemplateRollout
from scheduler.booking import appointment_cancel, appointment_complete
from tests.admin_forms import care_text_form
from tests.factories import PatientFactory
from tests.reminders.conftest import CLINICIAN, RECEPTION, book, london

NOW = london(2026, 3, 2, 9)
AFTERCARE = {"kind": "post_care", "anchor": "completion", "offset_value": "48"}


@pytest.fixture
def root(client, db, settings):
    settings.CELERY_BROKER_URL = ""  # the run is done once the admin's save commits
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def form(**changes) -> dict:
    """A microneedling pre-care note 72 h before, by e-mail only."""
    base = {"name": "Three days before", "email_subject": "Three days", "email_text": "Hello {{ patient_first_name }}."}
    return care_text_form(**{**base, "sms_text": "", **changes})


def save(client, capture, url: str, at=NOW, **changes) -> None:
    with time_machine.travel(at, tick=False), capture(execute=True):
        response = client.post(url, form(**changes))
    assert response.status_code == 302, response.content.decode()[:2000]


def rows(visit, template) -> list[tuple]:
    return sorted(OutboxMessage.objects.filter(appointment=visit, template=template).values_list("kind", "status"))


@pytest.mark.django_db
def test_a_kind_changed_and_changed_back_gets_its_notes_back_but_not_one_staff_cancelled(
    root, clinic, patient, practitioner, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    visit = book(patient, "microneedling", london(2026, 3, 20), NOW)
    other = PatientFactory(clinic=clinic, first_name="Bea", email="bea@example.com", reminder_channels=["email"])
    stopped = book(other, "microneedling", london(2026, 3, 23), NOW)
    save(root, capture, "/admin/reminders/remindertemplate/add/")
    text = ReminderTemplate.objects.get(name="Three days before")
    services.outbox_cancel(
        message_ids=[r.pk for r in OutboxMessage.objects.filter(appointment=stopped, template=text)], now=NOW
    )
    url = f"/admin/reminders/remindertemplate/{text.pk}/change/"

    save(root, capture, url, **AFTERCARE)  # a slip: its notes are cancelled, "made a post-care message since"
    save(root, capture, url)  # put back at once

    assert rows(visit, text) == [
        (MessageKind.PRE_CARE, OutboxStatus.CANCELLED),
        (MessageKind.PRE_CARE, OutboxStatus.PENDING),
    ]
    assert rows(stopped, text) == [(MessageKind.PRE_CARE, OutboxStatus.CANCELLED)]  # staff's stays


@pytest.mark.django_db
def test_a_reminder_made_aftercare_reaches_a_visit_whose_reminder_went(
    root, patient, practitioner, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    visit = book(patient, "microneedling", london(2026, 3, 3), london(2026, 2, 20))
    save(root, capture, "/admin/reminders/remindertemplate/add/", offset_value="-24")
    text = ReminderTemplate.objects.get(name="Three days before")
    OutboxMessage.objects.filter(appointment=visit, template=text).update(status=OutboxStatus.SENT, sent_at=NOW)
    done = london(2026, 3, 3, 11)
    with time_machine.travel(done, tick=False):
        appointment_complete(appointment=visit, actor=CLINICIAN, now=done)

    save(root, capture, f"/admin/reminders/remindertemplate/{text.pk}/change/", at=london(2026, 3, 3, 12), **AFTERCARE)

    assert rows(visit, text) == [
        (MessageKind.POST_CARE, OutboxStatus.PENDING),
        (MessageKind.PRE_CARE, OutboxStatus.SENT),
    ]


def person(clinic, name: str) -> Patient:
    return PatientFactory(clinic=clinic, first_name=name, email=f"{name}@example.com", reminder_channels=["email"])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_chunk_locks_its_patients_in_patient_order(care_texts, clinic, practitioner, monkeypatch):
    """Visit ids and patient ids order the other way round: a chunk locking by visit would take the higher patient
    first, while a re-check (or merge) holding the lower one waits for the higher: a deadlock, and the visit the
    database aborted never got its text."""
    a, b = person(clinic, "a"), person(clinic, "b")
    low, high = sorted([a, b], key=lambda p: str(p.pk))
    # Both visits are booked afresh until their ids fall the wanted way round: an even chance each pair, so thirty
    # pairs miss once in a billion runs (rebooking only one side could stay stuck behind a high id: CI saw it).
    for d, h in [(d, h) for d in (23, 24, 25, 26, 27) for h in (10, 11, 12, 13, 14, 15)]:
        high_visit = book(high, "microneedling", london(2026, 3, d - 7, h), NOW)
        low_visit = book(low, "microneedling", london(2026, 3, d, h), NOW)
        if str(low_visit.pk) > str(high_visit.pk):
            break
        for visit in (high_visit, low_visit):
            appointment_cancel(appointment=visit, actor=RECEPTION, now=NOW, reason="for the order of ids")
    assert str(low_visit.pk) > str(high_visit.pk)
    text = ReminderTemplate.objects.create(
        name="Three days before",
        kind=MessageKind.PRE_CARE,
        procedure_id="microneedling",
        anchor="start",
        offset_value=-72,
        offset_unit="hours",
        send_if_late=True,
        email_subject="s",
        email_text="Hello.",
    )
    run = TemplateRollout.objects.create(template=text, cause="test", created_at=NOW, progressed_at=NOW)
    holding_low, run_wants_low = threading.Event(), threading.Event()
    outcome = {}

    def other_locker():  # a re-check's chunk or a merge: patients in primary-key order
        try:
            with transaction.atomic():
                list(Patient.objects.select_for_update().filter(pk=low.pk))
                holding_low.set()
                run_wants_low.wait(10)
                time.sleep(0.3)
                list(Patient.objects.select_for_update().filter(pk=high.pk))
            outcome["other"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["other"] = repr(exc)
        finally:
            connection.close()

    real = services.lock_live_patient

    def lock(patient_id):
        if str(patient_id) == str(low.pk):
            run_wants_low.set()
        return real(patient_id)

    monkeypatch.setattr(services, "lock_live_patient", lock)
    thread = threading.Thread(target=other_locker)
    thread.start()
    assert holding_low.wait(10)
    run_wants_low.set()  # the run takes the low patient first now: the other side holds it; wait, then go on
    services.template_rollout_step(run_id=run.pk, now=NOW)
    thread.join(20)

    run.refresh_from_db()
    assert outcome["other"] == "ok" and run.failures == []
    assert OutboxMessage.objects.filter(appointment=low_visit, template=text).exists()
    assert OutboxMessage.objects.filter(appointment=high_visit, template=text).exists()


@pytest.mark.django_db
def test_a_run_is_deleted_only_with_its_text(root, care_texts, django_capture_on_commit_callbacks):
    """A run deleted on its own half-way would leave the rest of its visits unplanned and no one the wiser."""
    save(root, django_capture_on_commit_callbacks, "/admin/reminders/remindertemplate/add/")
    text = ReminderTemplate.objects.get(name="Three days before")
    [run] = TemplateRollout.objects.filter(template=text)

    assert root.get(f"/admin/reminders/templaterollout/{run.pk}/delete/").status_code == 403
    assert root.post(f"/admin/reminders/templaterollout/{run.pk}/delete/", {"post": "yes"}).status_code == 403
    assert TemplateRollout.objects.filter(pk=run.pk).exists()

    response = root.post(f"/admin/reminders/remindertemplate/{text.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not ReminderTemplate.objects.filter(pk=text.pk).exists() and not TemplateRollout.objects.exists()


@pytest.mark.django_db
def test_a_reminder_staff_cancelled_is_not_planned_again_when_a_channel_is_switched_on(patient, practitioner):
    visit = book(patient, "microneedling", london(2026, 3, 20), NOW)
    [text] = OutboxMessage.objects.filter(appointment=visit, kind=MessageKind.REMINDER, channel="sms")
    services.outbox_cancel(message_ids=[text.pk], now=NOW)
    consent_moved = OutboxMessage.objects.filter(appointment=visit, kind=MessageKind.PRE_CARE, channel="sms")
    consent_moved.update(status=OutboxStatus.CANCELLED, last_error="the patient no longer accepts this channel")

    with transaction.atomic():
        services.outbox_contact_changed(patient_id=patient.pk, now=NOW)

    reminders = OutboxMessage.objects.filter(appointment=visit, kind=MessageKind.REMINDER, channel="sms")
    assert sorted(reminders.values_list("status", flat=True)) == [OutboxStatus.CANCELLED]  # staff's stays
    pre_care = OutboxMessage.objects.filter(appointment=visit, kind=MessageKind.PRE_CARE, channel="sms")
    assert sorted(pre_care.values_list("status", flat=True)) == [OutboxStatus.CANCELLED, OutboxStatus.PENDING]


class _Cause(Exception):
    def __init__(self, sqlstate):
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.django_db
@pytest.mark.parametrize("sqlstate, chunk_fails", [("40P01", True), ("55P03", True), ("22021", False)])
def test_only_a_lost_lock_fails_the_chunk_another_database_error_is_the_visits(
    care_texts, clinic, practitioner, monkeypatch, sqlstate, chunk_fails
):
    from django.db import OperationalError

    visits = [book(person(clinic, f"p{i}"), "microneedling", london(2026, 3, 23 + i), NOW) for i in range(2)]
    text = ReminderTemplate.objects.get(default_key="microneedling-pre-care-24h")
    OutboxMessage.objects.filter(template=text).delete()
    run = TemplateRollout.objects.create(template=text, cause="test", created_at=NOW, progressed_at=NOW)
    real, broken = services._rollout_visit, visits[0].pk

    def failing(appointment_id, *args):
        if appointment_id == broken:
            error = OperationalError("the database said no")
            error.__cause__ = _Cause(sqlstate)
            raise error
        return real(appointment_id, *args)

    monkeypatch.setattr(services, "_rollout_visit", failing)

    if chunk_fails:
        with pytest.raises(OperationalError):
            services.template_rollout_step(run_id=run.pk, now=NOW)
        run.refresh_from_db()
        assert run.visits_done == 0 and run.failures == [] and run.finished_at is None  # the resume does it again
        assert not OutboxMessage.objects.filter(template=text).exists()
    else:
        assert services.template_rollout_step(run_id=run.pk, now=NOW) is True
        run.refresh_from_db()
        assert [f["appointment"] for f in run.failures] == [str(broken)] and run.visits_done == 2
        assert set(OutboxMessage.objects.filter(template=text).values_list("appointment_id", flat=True)) == {
            visits[1].pk
        }
