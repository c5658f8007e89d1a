"""A change to how a patient is reached plans what they may now get (reminders.services.outbox_contact_changed).

Messages are planned at booking for the channels and kinds the patient accepts then. A patient who had care
instructions muted when they booked, or no e-mail address, and turns them on afterwards must still get the
pre-care of their coming visit ("stop retinoids 24 h before"): a QA probe found they did not. Every path that
changes it (the patient's page, staff's edit through the service, the admin) plans the missing rows, once.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from clinic.services import patient_update
from reminders.consent import patient_preferences_update
from reminders.dispatch import dispatch_local
from reminders.models import Channel, MessageKind, OutboxMessage, OutboxStatus
from reminders.services import outbox_contact_changed
from scheduler.booking import appointment_cancel
from tests.reminders.conftest import RECEPTION, book, london

pytestmark = pytest.mark.django_db

NOW = london(2026, 3, 2, 9)
VISIT = london(2026, 3, 10)


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield NOW


def planned(appointment, kind=None, channel=None):
    rows = OutboxMessage.objects.filter(appointment=appointment).exclude(status=OutboxStatus.CANCELLED)
    if kind:
        rows = rows.filter(kind=kind)
    if channel:
        rows = rows.filter(channel=channel)
    return list(rows.order_by("kind", "channel"))


def test_care_unmuted_after_booking_plans_the_pre_care_once(patient, practitioner, frozen):
    patient_preferences_update(patient=patient, now=frozen, muted_topics=["care"])
    appointment = book(patient, "microneedling", VISIT, frozen)
    assert planned(appointment, MessageKind.PRE_CARE) == []  # muted when booked: nothing planned
    reminders_before = {m.pk for m in planned(appointment, MessageKind.REMINDER)}

    patient_preferences_update(patient=patient, now=frozen, muted_topics=[])
    patient_preferences_update(patient=patient, now=frozen, muted_topics=[])  # no change: nothing more

    care = planned(appointment, MessageKind.PRE_CARE)
    assert {m.channel for m in care} == {Channel.EMAIL, Channel.SMS}
    assert all(m.status == OutboxStatus.PENDING and m.due_at < appointment.start_at for m in care)
    assert {m.pk for m in planned(appointment, MessageKind.REMINDER)} == reminders_before  # left as they were

    due = max(m.due_at for m in care)
    with time_machine.travel(due, tick=False):
        dispatch_local(now=due)
    assert sum(m.body.count("Stop topical retinoids") for m in mail.outbox) == 1


def test_an_address_added_by_staff_plans_the_e_mails_of_coming_visits_only(patient, practitioner, frozen):
    patient = patient_update(
        patient=patient, today=frozen.date(), email="", phone="+447911123456", reminder_channels=["sms"]
    )
    coming = book(patient, "microneedling", VISIT, frozen)
    cancelled = book(patient, "botox", london(2026, 4, 20), frozen)
    appointment_cancel(appointment=cancelled, actor=RECEPTION, now=frozen)
    assert planned(coming, channel=Channel.EMAIL) == []

    patient_update(
        patient=patient, today=frozen.date(), email="ada.new@example.com", reminder_channels=["email", "sms"]
    )

    kinds = {m.kind for m in planned(coming, channel=Channel.EMAIL)}
    assert kinds == {MessageKind.REMINDER, MessageKind.PRE_CARE}  # the confirmation is not sent late
    assert planned(cancelled, channel=Channel.EMAIL) == []


def test_a_name_change_plans_nothing(patient, practitioner, frozen):
    patient = patient_update(patient=patient, today=frozen.date(), phone="+447911123456")
    book(patient, "microneedling", VISIT, frozen)
    before = OutboxMessage.objects.count()
    with CaptureQueriesContext(connection) as queries:
        patient_update(patient=patient, today=frozen.date(), first_name="Adaline")
    assert not [q["sql"] for q in queries.captured_queries if OutboxMessage._meta.db_table in q["sql"]]
    assert OutboxMessage.objects.count() == before


def test_nothing_sent_or_waiting_for_this_time_is_planned_again(patient, practitioner, frozen):
    appointment = book(patient, "microneedling", VISIT, frozen)
    rows = {m.pk for m in planned(appointment)}
    outbox_contact_changed(patient_id=patient.pk, now=frozen)
    assert {m.pk for m in planned(appointment)} == rows

    # SMS withdrawn (the waiting texts are skipped when due, or cancelled) and given again: planned anew, once.
    OutboxMessage.objects.filter(appointment=appointment, channel=Channel.SMS).update(status=OutboxStatus.CANCELLED)
    patient_preferences_update(patient=patient, now=frozen, sms=False)
    patient_preferences_update(patient=patient, now=frozen, sms=True, sms_consent=True)
    texts = planned(appointment, channel=Channel.SMS)
    assert sorted(m.kind for m in texts) == sorted({m.kind for m in texts})  # one per kind
    assert {m.kind for m in texts} >= {MessageKind.REMINDER}


def test_a_visit_whose_care_time_has_passed_gets_what_may_still_go(patient, practitioner):
    """Unmuted an hour before the visit: the pre-care carries instructions, so it goes at once (send_if_late);
    the day-before reminder's time has passed and is not planned."""
    with time_machine.travel(NOW, tick=False):
        patient_preferences_update(patient=patient, now=NOW, muted_topics=["care", "reminders"])
        appointment = book(patient, "microneedling", VISIT, NOW)
    late = VISIT - timedelta(hours=1)
    with time_machine.travel(late, tick=False):
        patient_preferences_update(patient=patient, now=late, muted_topics=[])
    care = planned(appointment, MessageKind.PRE_CARE, Channel.EMAIL)
    assert len(care) == 1 and care[0].due_at <= late + timedelta(minutes=1)
    assert planned(appointment, MessageKind.REMINDER) == []


def test_the_admins_edit_of_an_address_plans_too(patient, practitioner, frozen, admin_client):
    patient = patient_update(
        patient=patient, today=frozen.date(), email="", phone="+447911123456", reminder_channels=["sms"]
    )
    appointment = book(patient, "microneedling", VISIT, frozen)
    url = reverse("admin:clinic_patient_change", args=[patient.pk])
    data = {
        "clinic": str(patient.clinic_id),
        "first_name": patient.first_name,
        "last_name": patient.last_name,
        "date_of_birth": "",
        "email": "ada.admin@example.com",
        "phone": patient.phone,
        "reminder_channels": '["email", "sms"]',
        "muted_topics": "[]",
    }
    for prefix in ("conditions", "medication_courses", "procedure_records"):
        data.update(
            {
                f"{prefix}-TOTAL_FORMS": "0",
                f"{prefix}-INITIAL_FORMS": "0",
                f"{prefix}-MIN_NUM_FORMS": "0",
                f"{prefix}-MAX_NUM_FORMS": "1000",
            }
        )
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert {m.kind for m in planned(appointment, channel=Channel.EMAIL)} == {
        MessageKind.REMINDER,
        MessageKind.PRE_CARE,
    }


@pytest.mark.parametrize("visits", [1, 6])
def test_aftercare_still_to_come_is_planned_in_statements_that_do_not_grow_with_visits_done(
    patient, practitioner, frozen, visits
):
    """A channel switched on after visits were done (texts were off then): the aftercare still ahead of each is planned
    (`_aftercare_still_to_come`), in the same statements for one visit done as for six."""
    from clinic.models import AppointmentStatus
    from reminders.services import _aftercare_still_to_come
    from tests.factories import AppointmentFactory

    for n in range(visits):  # done yesterday, one after another (written directly: only their aftercare matters)
        start = frozen - timedelta(days=1, hours=2 * n)
        AppointmentFactory(
            clinic=patient.clinic,
            patient=patient,
            practitioner=practitioner,
            procedure_id="microneedling",
            start_at=start,
            end_at=start + timedelta(minutes=60),
            status=AppointmentStatus.COMPLETED,
            completed_at=start + timedelta(minutes=60),
        )
    with CaptureQueriesContext(connection) as queries:
        _aftercare_still_to_come(patient.pk, frozen)
    # The visits done, their rows, the templates' version (once), the templates (the process's copy is cold here),
    # one INSERT: the same for one visit as for six.
    assert len(queries.captured_queries) <= 5
    texts = OutboxMessage.objects.filter(kind=MessageKind.POST_CARE)
    assert texts.count() >= 2 * visits and all(m.due_at > frozen for m in texts)  # +48 h and +7 days, each ahead
    assert not texts.filter(template__offset_value=0).exists()  # the at-completion message's moment has passed


def _statements_for_coming(patient, practitioner, frozen, visits: int) -> tuple[int, list]:
    """`visits` coming visits booked with texts off, then texts switched on: the statements the change's planning
    took (the patient's aftercare read included), and the texts planned."""
    patient.reminder_channels = ["email"]
    patient.save()
    booked = [book(patient, "microneedling", VISIT + timedelta(days=7 * n), frozen) for n in range(visits)]
    patient.reminder_channels = ["email", "sms"]
    patient.save()
    with CaptureQueriesContext(connection) as queries:
        outbox_contact_changed(patient_id=patient.pk, now=frozen)
    return len(queries.captured_queries), [planned(a, channel=Channel.SMS) for a in booked]


@pytest.mark.parametrize("visits", [1, 5])
def test_the_statements_of_a_contact_change_are_the_same_for_one_coming_visit_as_for_five(
    patient, practitioner, frozen, visits
):
    count, texts = _statements_for_coming(patient, practitioner, frozen, visits)
    assert all({m.kind for m in each} == {MessageKind.REMINDER, MessageKind.PRE_CARE} for each in texts)
    assert len(texts) == visits
    # The coming visits, their rows, the templates' version (once), one INSERT, the visits done (none): the same for
    # one visit as for five.
    assert count <= 5, count
