"""The outbox follows booking changes: plans, moves, holds, cancels and post-care, in time order.

Each test books through the real booking services and travels in time
(time_machine), running the embedded dispatcher at chosen moments, then reads
what the patient received (Django's mail outbox and the in-memory SMS outbox).
"""

import re
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.db import transaction
from django.utils import timezone

from clinic.models import ApiClient, AppointmentStatus
from reminders.channels import LocmemSmsBackend
from reminders.consent import patient_opt_out
from reminders.dispatch import dispatch_local
from reminders.models import OutboxMessage, OutboxStatus, WebhookEndpoint
from scheduler.booking import (
    appointment_cancel,
    appointment_clear,
    appointment_complete,
    appointment_mark_no_show,
    appointment_reschedule,
)
from tests.factories import ClinicFactory, MedicationCourseFactory, PatientConditionFactory, PatientFactory
from tests.reminders.conftest import CLINICIAN, LONDON, RECEPTION, book, london

# The conftest `now` is Monday 2 March 2026, 09:00 in London (GMT, so also 09:00 UTC).
WEDNESDAY_10 = london(2026, 3, 4, 10)


def deliver(moment: datetime) -> dict:
    """Run the embedded dispatcher as if the clock said `moment`."""
    with time_machine.travel(moment, tick=False):
        return dispatch_local(now=timezone.now())


def plan(appointment) -> list[tuple[str, str, str, datetime]]:
    """(kind, channel, status, local due time) of an appointment's patient messages."""
    return sorted(
        (m.kind, m.channel, m.status, m.due_at.astimezone(LONDON))
        for m in OutboxMessage.objects.filter(appointment=appointment).exclude(channel="webhook")
    )


def subjects() -> list[str]:
    return [m.subject for m in mail.outbox]


def texts() -> list[str]:
    return [m["body"] for m in LocmemSmsBackend.outbox]


def bodies() -> str:
    return "\n".join(m.body for m in mail.outbox)


# --- Booking ----------------------------------------------------------------------------------------


def test_booking_plans_the_confirmation_now_and_reminders_before_the_start(patient, practitioner, now):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)

    now_local = now.astimezone(LONDON)
    tuesday_10 = london(2026, 3, 3, 10)
    assert plan(appointment) == [
        ("confirmation", "email", "pending", now_local),
        ("confirmation", "sms", "pending", now_local),
        ("pre_care", "email", "pending", tuesday_10),  # 24 h before (source 001)
        ("pre_care", "sms", "pending", tuesday_10),
        ("reminder", "email", "pending", tuesday_10),  # the day before
        ("reminder", "sms", "pending", tuesday_10),
    ]


def test_each_message_goes_at_its_time_and_only_then(patient, practitioner, now):
    book(patient, "microneedling", WEDNESDAY_10, now)

    assert deliver(now) == {"sent": 2}
    assert subjects() == ["Your appointment at Bloom Clinic on Wed 4 Mar"]
    [text] = texts()
    assert re.fullmatch(
        r"Bloom Clinic: your appointment is booked for Wed 4 Mar, 10:00 \(GMT\)\. "
        r"Move or cancel: https://clinic\.example/my/[\w.-]+/ Reply STOP to stop texts\.",
        text,
    )

    assert deliver(london(2026, 3, 3, 9, 59)) == {}
    # The reminder and the pre-care fall due together: one e-mail and one SMS, every text kept.
    assert deliver(london(2026, 3, 3, 10, 0)) == {"sent": 2, "merged": 2}
    assert subjects()[1:] == ["Reminder: your appointment tomorrow at 10:00"]
    pre_care = mail.outbox[1]
    assert "Preparing for your visit on Wed 4 Mar" in pre_care.body
    assert "- Stop topical retinoids (Retin-A) now." in pre_care.body
    assert "- Avoid sun exposure on the area to be treated." in pre_care.body
    assert "- If you are on autoimmune therapy, talk to the clinic about pausing it." in pre_care.body
    # Nothing is sent twice, whenever the dispatcher runs again
    assert deliver(london(2026, 3, 3, 10, 5)) == {}
    assert len(mail.outbox) == 2 and len(LocmemSmsBackend.outbox) == 2


def test_a_booking_inside_the_pre_care_window_gets_the_pre_care_at_once(patient, practitioner):
    booked_at = london(2026, 3, 3, 15)  # Tuesday 15:00, for Wednesday 10:00
    with time_machine.travel(booked_at, tick=False):
        appointment = book(patient, "microneedling", WEDNESDAY_10, timezone.now())

    # The day-before reminder is pointless now and is left out; the care instructions go at once
    assert plan(appointment) == [
        ("confirmation", "email", "pending", booked_at),
        ("confirmation", "sms", "pending", booked_at),
        ("pre_care", "email", "pending", booked_at),
        ("pre_care", "sms", "pending", booked_at),
    ]
    # Due together, they go as one message per channel, the confirmation first.
    assert deliver(booked_at) == {"sent": 2, "merged": 2}
    assert subjects() == ["Your appointment at Bloom Clinic on Wed 4 Mar"]
    assert bodies().index("booked") < bodies().index("Preparing for your visit")


def test_a_late_evening_booking_texts_pre_care_after_quiet_hours(patient, practitioner):
    booked_at = london(2026, 3, 3, 22, 30)
    with time_machine.travel(booked_at, tick=False):
        appointment = book(patient, "microneedling", WEDNESDAY_10, timezone.now())

    due = {(kind, channel): at for kind, channel, _, at in plan(appointment)}
    assert due[("pre_care", "email")] == booked_at
    assert due[("pre_care", "sms")] == london(2026, 3, 4, 8, 0)
    assert due[("confirmation", "sms")] == london(2026, 3, 4, 8, 0)
    assert deliver(booked_at) == {"sent": 1, "merged": 1}  # the two e-mails, as one
    assert texts() == []
    assert deliver(london(2026, 3, 4, 8, 0)) == {"sent": 1, "merged": 1}
    assert len(texts()) == 1


def test_only_the_channels_the_patient_consented_to_are_planned(clinic, practitioner, now):
    email_only = PatientFactory(clinic=clinic, reminder_channels=["email"], sms_consent=True)
    sms_without_consent = PatientFactory(clinic=clinic, reminder_channels=["email", "sms"], sms_consent=False)
    nothing = PatientFactory(clinic=clinic, reminder_channels=[])

    first = book(email_only, "microneedling", WEDNESDAY_10, now)
    second = book(sms_without_consent, "botox", london(2026, 3, 4, 12), now)
    third = book(nothing, "botox", london(2026, 3, 4, 14), now)

    assert {channel for _, channel, _, _ in plan(first)} == {"email"}
    assert {channel for _, channel, _, _ in plan(second)} == {"email"}
    assert plan(third) == []


def test_outbox_rows_roll_back_with_the_booking(patient, practitioner, now):
    with pytest.raises(RuntimeError), transaction.atomic():
        book(patient, "microneedling", WEDNESDAY_10, now)
        assert OutboxMessage.objects.count() == 6
        raise RuntimeError("the request failed after booking")
    assert OutboxMessage.objects.count() == 0


# --- Rescheduling ------------------------------------------------------------------------------------------


def test_rescheduling_moves_unsent_messages_without_duplicating_them(patient, practitioner, now):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    before = set(OutboxMessage.objects.filter(appointment=appointment, kind="pre_care").values_list("pk", flat=True))

    appointment_reschedule(
        appointment=appointment, start_at=london(2026, 3, 6, 14), actor=RECEPTION, now=now + timedelta(minutes=1)
    )

    pre_care = OutboxMessage.objects.filter(appointment=appointment, kind="pre_care")
    assert set(pre_care.values_list("pk", flat=True)) == before  # the same rows, moved
    assert {m.due_at.astimezone(LONDON) for m in pre_care} == {london(2026, 3, 5, 14)}
    assert {m.status for m in pre_care} == {"pending"}
    # Nothing goes at the old time; everything goes at the new one
    assert deliver(london(2026, 3, 3, 10)) == {"sent": 2}  # only the confirmation, still due
    assert not any("Preparing" in s for s in subjects())
    assert deliver(london(2026, 3, 5, 14)) == {"sent": 2, "merged": 2}
    assert "Preparing for your visit on Fri 6 Mar" in bodies()


def test_a_move_after_the_pre_care_went_out_sends_it_again_for_the_new_time(patient, practitioner, now):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    deliver(london(2026, 3, 3, 10))  # confirmation, pre-care and reminder are out

    moved_at = london(2026, 3, 3, 12)
    appointment_reschedule(appointment=appointment, start_at=london(2026, 3, 10, 10), actor=RECEPTION, now=moved_at)

    rows = plan(appointment)
    assert ("pre_care", "email", "sent", london(2026, 3, 3, 10)) in rows
    assert ("pre_care", "email", "pending", london(2026, 3, 9, 10)) in rows
    assert ("rescheduled", "email", "pending", moved_at + timedelta(minutes=5)) in rows
    assert deliver(moved_at + timedelta(minutes=5)) == {"sent": 2}
    moved = next(m for m in mail.outbox if m.subject.startswith("Your appointment has moved"))
    assert "New time: Tue 10 Mar, 10:00 (GMT)" in moved.body
    assert "It was: Wed 4 Mar, 10:00 (GMT)" in moved.body
    assert (
        "Bloom Clinic: your appointment has moved to Tue 10 Mar, 10:00 (GMT) (it was Wed 4 Mar, "
        "10:00 (GMT))." in texts()
    )


def test_a_change_undone_within_the_grace_period_sends_no_notice(patient, practitioner, now):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    deliver(now)  # the confirmation is out: the patient knows the Wednesday time

    first = now + timedelta(hours=1)
    appointment_reschedule(appointment=appointment, start_at=london(2026, 3, 5, 10), actor=RECEPTION, now=first)
    assert OutboxMessage.objects.filter(kind="rescheduled", status="pending").count() == 2
    appointment_reschedule(
        appointment=appointment, start_at=WEDNESDAY_10, actor=RECEPTION, now=first + timedelta(minutes=2)
    )

    assert OutboxMessage.objects.filter(kind="rescheduled", status="pending").count() == 0
    assert deliver(first + timedelta(minutes=30)) == {}
    assert not any("moved" in s for s in subjects())
    # The reminders are back at their first time
    assert ("pre_care", "sms", "pending", london(2026, 3, 3, 10)) in plan(appointment)


def test_moves_within_the_grace_period_collapse_into_one_notice(patient, practitioner, now):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    deliver(now)
    first = now + timedelta(hours=1)
    appointment_reschedule(appointment=appointment, start_at=london(2026, 3, 5, 10), actor=RECEPTION, now=first)
    second = first + timedelta(minutes=3)
    appointment_reschedule(appointment=appointment, start_at=london(2026, 3, 6, 11), actor=RECEPTION, now=second)

    notices = OutboxMessage.objects.filter(kind="rescheduled")
    assert notices.count() == 2  # one per channel
    assert {m.due_at for m in notices} == {second + timedelta(minutes=5)}
    assert deliver(first + timedelta(minutes=6)) == {}  # the first change's grace period was restarted
    assert deliver(second + timedelta(minutes=5)) == {"sent": 2}
    [moved] = [m for m in mail.outbox if "moved" in m.subject]
    assert "New time: Fri 6 Mar, 11:00 (GMT)" in moved.body
    assert "It was: Wed 4 Mar, 10:00 (GMT)" in moved.body


def test_a_move_before_the_confirmation_went_out_needs_no_notice(patient, practitioner, now):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    appointment_reschedule(
        appointment=appointment, start_at=london(2026, 3, 5, 10), actor=RECEPTION, now=now + timedelta(minutes=1)
    )

    assert not OutboxMessage.objects.filter(kind="rescheduled").exists()
    deliver(now + timedelta(minutes=1))
    assert subjects() == ["Your appointment at Bloom Clinic on Thu 5 Mar"]  # rendered at send time


# --- Cancelling ------------------------------------------------------------------------------------------------


def test_cancelling_cancels_unsent_messages_and_tells_the_patient(patient, practitioner, now):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    deliver(now)
    cancelled_at = now + timedelta(hours=2)
    appointment_cancel(appointment=appointment, actor=RECEPTION, now=cancelled_at)

    rows = plan(appointment)
    assert [r[2] for r in rows if r[0] in ("pre_care", "reminder")] == ["cancelled"] * 4
    assert ("cancelled", "email", "pending", cancelled_at.astimezone(LONDON)) in rows
    assert deliver(cancelled_at) == {"sent": 2}
    notice = mail.outbox[-1]
    assert notice.subject == "Your appointment on Wed 4 Mar is cancelled"
    [attachment] = notice.attachments
    assert (attachment.get_filename(), attachment.get_content_type()) == ("appointment.ics", "text/calendar")
    assert "STATUS:CANCELLED" in attachment.get_payload(decode=True).decode()
    assert deliver(london(2026, 3, 3, 10)) == {}  # the pre-care never goes


def test_a_booking_cancelled_before_anyone_was_told_sends_nothing(patient, practitioner, now):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    appointment_cancel(appointment=appointment, actor=RECEPTION, now=now + timedelta(seconds=30))

    assert {status for _, _, status, _ in plan(appointment)} == {"cancelled"}
    assert deliver(now + timedelta(days=3)) == {}
    assert mail.outbox == [] and texts() == []


def test_a_no_show_cancels_what_was_still_to_come(patient, practitioner, now):
    appointment = book(patient, "botox", london(2026, 3, 2, 10), now)
    deliver(now)
    appointment_mark_no_show(appointment=appointment, actor=CLINICIAN, now=london(2026, 3, 2, 11))
    assert not OutboxMessage.objects.filter(appointment=appointment, status__in=["pending", "held"]).exists()


# --- Clearance hold --------------------------------------------------------------------------------------------


def test_pending_clearance_holds_every_message_until_a_clinician_clears_it(patient, practitioner, now):
    PatientConditionFactory(patient=patient, condition_id="eczema", status="history")  # relative (domain 3)
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    assert appointment.status == AppointmentStatus.PENDING_CLEARANCE
    assert {status for _, _, status, _ in plan(appointment)} == {"held"}

    assert deliver(london(2026, 3, 3, 10, 30)) == {}  # the pre-care time passes: nothing goes
    assert mail.outbox == [] and texts() == []

    cleared_at = london(2026, 3, 3, 12)
    with time_machine.travel(cleared_at, tick=False):
        appointment_clear(appointment=appointment, actor=CLINICIAN, now=timezone.now(), reason="Eczema settled")

    rows = plan(appointment)
    assert ("confirmation", "email", "pending", cleared_at) in rows
    assert ("pre_care", "email", "pending", cleared_at) in rows  # late care instructions go at once
    assert ("reminder", "email", "cancelled", london(2026, 3, 3, 10)) in rows  # too late to be a reminder
    assert deliver(cleared_at) == {"sent": 2, "merged": 2}
    assert subjects() == ["Your appointment at Bloom Clinic on Wed 4 Mar"]
    assert "Preparing for your visit on Wed 4 Mar" in bodies()


# --- Completion and post-care ------------------------------------------------------------------------------------


def test_completion_starts_post_care_with_the_next_possible_dates_for_this_patient(patient, practitioner, now):
    appointment = book(patient, "microneedling", london(2026, 3, 2, 10), now)
    completed_at = london(2026, 3, 2, 11, 15)
    with time_machine.travel(completed_at, tick=False):
        appointment_complete(appointment=appointment, actor=CLINICIAN, now=timezone.now())

    post = [r for r in plan(appointment) if r[0] == "post_care"]
    assert post == [
        ("post_care", "email", "pending", completed_at),
        ("post_care", "email", "pending", london(2026, 3, 4, 11, 15)),  # +48 h: makeup again
        ("post_care", "email", "pending", london(2026, 3, 9, 11, 15)),  # +7 days
        ("post_care", "sms", "pending", completed_at),
        ("post_care", "sms", "pending", london(2026, 3, 4, 11, 15)),
        ("post_care", "sms", "pending", london(2026, 3, 9, 11, 15)),
    ]
    deliver(completed_at)
    aftercare = next(m for m in mail.outbox if m.subject == "Aftercare for your treatment at Bloom Clinic")
    body = aftercare.body
    assert "- Do not wash your face for at least 5 hours, ideally 12." in body
    assert "- No makeup, eyelids included, for 48 hours." in body
    assert "- No direct sun for 2 days; wear a hat." in body
    # From the engine: 3 weeks for Botox and filler, plasma pen at 7 days (ideally 10)
    assert "- Botulinum toxin injection (Botox): possible from Monday 23 March 2026" in body
    assert "- Dermal filler (e.g. hyaluronic acid, Juvederm): possible from Monday 23 March 2026" in body
    assert (
        "- Plasma pen (fibroblast) treatment: possible from Monday 9 March 2026, ideally from Thursday 12 March 2026"
    ) in body
    assert "spreading redness, pus, fever, darkening of the skin, or lasting numbness" in body
    assert "Monday 23 March 2026" in aftercare.alternatives[0][0]  # the HTML part says it too
    # The SMS says nothing clinical
    [sms] = [t for t in texts() if "aftercare" in t]
    assert "microneedling" not in sms.lower() and "botox" not in sms.lower()

    assert deliver(london(2026, 3, 4, 11, 15)) == {"sent": 2}
    assert mail.outbox[-1].subject == "You may wear makeup again"


def test_the_next_possible_dates_are_this_patients_own(patient, practitioner, now):
    # Given an isotretinoin course that ended on 1 August 2025: filler carries a 12-month warning (source 000)
    MedicationCourseFactory(
        patient=patient, drug_id="isotretinoin", started_on=date(2025, 2, 1), ended_on=date(2025, 8, 1)
    )
    appointment = book(patient, "microneedling", london(2026, 3, 2, 10), now)
    with time_machine.travel(london(2026, 3, 2, 11), tick=False):
        appointment_complete(appointment=appointment, actor=CLINICIAN, now=timezone.now())
    deliver(london(2026, 3, 2, 11))

    body = next(m.body for m in mail.outbox if m.subject.startswith("Aftercare"))
    assert (
        "- Dermal filler (e.g. hyaluronic acid, Juvederm): possible from Monday 23 March 2026, ideally from "
        "Saturday 1 August 2026"
    ) in body
    assert "- Botulinum toxin injection (Botox): possible from Monday 23 March 2026\n" in body


def test_post_care_keeps_local_times_across_the_clock_change(patient, practitioner):
    # Completed on Friday 27 March 2026 at 15:00 GMT; the clocks go forward on Sunday 29 March
    with time_machine.travel(london(2026, 3, 27, 13), tick=False):
        appointment = book(patient, "microneedling", london(2026, 3, 27, 14), timezone.now())
    with time_machine.travel(london(2026, 3, 27, 15), tick=False):
        appointment_complete(appointment=appointment, actor=CLINICIAN, now=timezone.now())

    due = sorted(
        m.due_at for m in OutboxMessage.objects.filter(appointment=appointment, kind="post_care", channel="email")
    )
    assert due == [
        datetime(2026, 3, 27, 15, tzinfo=UTC),
        datetime(2026, 3, 29, 15, tzinfo=UTC),  # +48 h elapsed: 16:00 BST
        datetime(2026, 4, 3, 14, tzinfo=UTC),
    ]  # +7 days: 15:00 BST, the same wall time
    assert deliver(datetime(2026, 3, 27, 15, tzinfo=UTC)) == {"sent": 2}  # at completion (e-mail and SMS)
    # the +48 h pair only (10 minutes before the +7 days pair, so it does not merge with it)
    assert deliver(datetime(2026, 4, 3, 13, 49, tzinfo=UTC)) == {"sent": 2}
    assert deliver(datetime(2026, 4, 3, 14, 0, tzinfo=UTC)) == {"sent": 2}


# --- Consent at send time -------------------------------------------------------------------------------------------


def test_an_opt_out_after_planning_skips_the_message_at_send_time(patient, practitioner, now):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    patient_opt_out(patient=patient, channel="sms", via="sms_stop", now=now)

    assert deliver(now) == {"sent": 1, "skipped": 1}
    skipped = OutboxMessage.objects.get(appointment=appointment, kind="confirmation", channel="sms")
    assert skipped.status == OutboxStatus.SKIPPED
    assert skipped.last_error == "the patient has not chosen SMS reminders (or replied STOP)"
    assert texts() == []


# --- Webhooks ----------------------------------------------------------------------------------------------------------


@pytest.fixture
def platform(clinic):
    client = ApiClient(name="Booksy-like")
    client.set_new_key()
    client.save()
    client.clinics.add(clinic)
    return client


def test_appointment_events_become_webhook_rows_for_the_platforms_in_scope(patient, practitioner, platform, now):
    everything = WebhookEndpoint.objects.create(client=platform, url="https://platform.example/hooks")
    WebhookEndpoint.objects.create(
        client=platform, url="https://platform.example/cancels", events=["appointment.cancelled"]
    )
    elsewhere = ApiClient(name="Other platform")
    elsewhere.set_new_key()
    elsewhere.save()
    elsewhere.clinics.add(ClinicFactory(code="elsewhere"))
    WebhookEndpoint.objects.create(client=elsewhere, url="https://other.example/hooks")

    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    appointment_reschedule(
        appointment=appointment, start_at=london(2026, 3, 5, 10), actor=RECEPTION, now=now + timedelta(minutes=1)
    )

    hooks = list(OutboxMessage.objects.filter(channel="webhook").order_by("created_at"))
    assert [(h.endpoint_id, h.event) for h in hooks] == [
        (everything.pk, "appointment.created"),
        (everything.pk, "appointment.rescheduled"),
    ]
    created, moved = (h.payload for h in hooks)
    assert created["type"] == "appointment.created" and created["id"] == str(hooks[0].pk)
    assert created["data"]["appointment"] == {
        "id": str(appointment.pk),
        "patient": str(patient.pk),
        "procedure": "microneedling",
        "practitioner": str(practitioner.pk),
        "clinic": str(appointment.clinic_id),
        "start": "2026-03-04T10:00:00+00:00",
        "end": "2026-03-04T11:00:00+00:00",
        "area": None,
        "status": "confirmed",
        "review_reasons": [],
        "sequence": 1,
    }
    assert moved["data"]["appointment"]["start"] == "2026-03-05T10:00:00+00:00"
    assert moved["data"]["appointment"]["sequence"] == moved["sequence"] == 2
    assert moved["data"]["previous"]["start"] == "2026-03-04T10:00:00+00:00"


def test_webhooks_are_not_held_for_clearance_and_revoked_clients_get_none(patient, practitioner, platform, now):
    endpoint = WebhookEndpoint.objects.create(client=platform, url="https://platform.example/hooks")
    PatientConditionFactory(patient=patient, condition_id="eczema", status="history")
    book(patient, "microneedling", WEDNESDAY_10, now)
    [hook] = OutboxMessage.objects.filter(endpoint=endpoint)
    assert (hook.status, hook.payload["data"]["appointment"]["status"]) == ("pending", "pending_clearance")

    platform.revoked_at = now
    platform.save()
    book(patient, "botox", london(2026, 3, 30, 10), now)
    assert OutboxMessage.objects.filter(endpoint=endpoint).count() == 1


def test_booking_pays_one_query_for_its_messages_whatever_the_plan(patient, practitioner, platform, now):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    WebhookEndpoint.objects.create(client=platform, url="https://platform.example/hooks")

    def ours(queries) -> list[str]:
        return [
            q["sql"]
            for q in queries.captured_queries
            if any(table in q["sql"] for table in ("remindertemplate", "outboxmessage", "webhookendpoint", "apiclient"))
        ]

    with CaptureQueriesContext(connection) as first:
        book(patient, "microneedling", WEDNESDAY_10, now)
    # The templates and the subscriptions (endpoints, and their clients' clinic and organisation grants) are
    # read once per process and configuration version; then one insert of all seven rows.
    assert len(ours(first)) == 5
    with CaptureQueriesContext(connection) as second:
        book(patient, "botox", london(2026, 3, 30, 10), now)
    assert len(ours(second)) == 1  # the insert alone: nothing was edited in between
    assert OutboxMessage.objects.count() == 7 + 7


def test_every_change_to_who_listens_reaches_the_next_booking_of_a_warm_process(patient, practitioner, platform, now):
    """The subscriptions are cached per process (reminders.services._subscriptions): whatever path edits them,
    ORM, bulk update or a grant, the next booking sees it."""
    days = iter([9, 10, 11, 12, 13, 16, 17, 18, 19, 20, 23, 24])  # weekdays the practitioner works

    def notified() -> set:
        when = london(2026, 3, next(days), 10)
        appointment = book(patient, "botox", when, now)
        return set(
            OutboxMessage.objects.filter(appointment=appointment, channel="webhook").values_list(
                "endpoint_id", flat=True
            )
        )

    assert notified() == set()  # warm: the copy holds no endpoint
    endpoint = WebhookEndpoint.objects.create(client=platform, url="https://platform.example/hooks")
    assert notified() == {endpoint.pk}
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=False)  # paused by a bulk update
    assert notified() == set()
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=True)
    assert notified() == {endpoint.pk}
    platform.clinics.remove(patient.clinic)  # the grant withdrawn
    assert notified() == set()
    platform.organisations.add(patient.organisation)  # the whole organisation granted instead
    assert notified() == {endpoint.pk}
    ApiClient.objects.filter(pk=platform.pk).update(revoked_at=now)  # revoked
    assert notified() == set()


def test_a_clients_last_use_leaves_the_cached_configuration_alone(platform, now):
    from scheduler import versioned

    before = versioned.current_version()
    ApiClient.objects.filter(pk=platform.pk).update(last_used_at=now)  # written as requests come in
    assert versioned.current_version() == before
    ApiClient.objects.filter(pk=platform.pk).update(revoked_at=now)
    assert versioned.current_version() != before
