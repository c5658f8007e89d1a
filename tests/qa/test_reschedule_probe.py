"""After a booking is made and then changed: moved (time, practitioner, sister site), cancelled, cancelled and
booked again, marked no-show, and the record changed afterwards. A QA probe of domain brief sections 2, 4 and 6,
the api-contract's reschedule and "An appointment stays safe after it is booked", docs/rules.md ("After booking")
and docs/reminders.md ("What each booking change does to the outbox"), aimed at what the other probes leave out.

Found (4 December) and mended the same day: a booking flagged `needs_review` because of another booking stayed
flagged, its reminders held, its reasons naming a visit that is gone, when that other booking was cancelled, moved
away or missed (only record and rule changes re-checked; brief 2: "cancelling frees"): now
scheduler.recheck.flagged_appointments_recheck runs after each; and cancelling a visit and booking the same time
again texted the patient one SMS that said "booked for Tue 10 Mar, 10:00" and then "your appointment on Tue 10 Mar,
10:00 is cancelled" (the merged text read the old visit's cancellation last): now the visit booked first reads
first (reminders.content.reading_order). Moving a visit to another
practitioner at the same time told the patient nothing (a question; now an e-mail notice). Pinned as correct: reminders re-planned on moves across
both London clock changes (24 h elapsed, day-before at the wall-clock hour, each sent once, the notice naming both
offsets), the freed slot offered as the next available one, a move to a sister site refused with nothing changed,
a flagged booking moved clear (and the desk's way out meanwhile: moving it to its own time), and a record change
judged against the moved time.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.core import mail

from clinic.models import AppointmentStatus, AuditAction, AuditEvent
from clinic.services import medication_course_add, procedure_record_add
from core.errors import InvalidTransition
from reminders.models import MessageKind, OutboxMessage, OutboxStatus
from scheduler.booking import (
    appointment_cancel,
    appointment_mark_no_show,
    appointment_reschedule,
)
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import (
    API,
    CLINICIAN,
    LONDON,
    RECEPTION,
    api_book,
    book,
    fresh,
    ldn,
    org_rule,
    post,
    register_webhook,
    rows,
    send_all_until,
    texts,
)

# E-mail and texts are caught for every test (tests/qa/conftest.py).
pytestmark = pytest.mark.usefixtures("message_outboxes")


@pytest.fixture
def clinic(care_texts):
    """A London clinic with the shipped care texts (overrides the API's `clinic`; `api` and `west` follow it)."""
    return ClinicFactory(code="qa-move", name="Move Clinic", timezone="Europe/London", phone="+442079460958")


@pytest.fixture
def practitioner(clinic):
    """Dr Ada, working every day of the week 09:00-18:00 (the clocks change on Sundays)."""
    return PractitionerFactory(clinic=clinic, name="Dr Ada", hours=range(7))


@pytest.fixture
def patient(clinic):
    """Olivia, on e-mail and SMS."""
    return PatientFactory(
        clinic=clinic,
        first_name="Olivia",
        email="olivia@example.com",
        phone="+447700900123",
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )


@pytest.fixture
def hooks(api, settings):
    """A platform's webhook endpoint for every event (never delivered here: its outbox rows are read)."""
    settings.WEBHOOKS_ALLOW_HTTP = True
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = True
    register_webhook(api, "http://127.0.0.1:9/qa-hook")


def due(appointment, kind, channel="sms", status=OutboxStatus.PENDING):
    """The one row of `kind` on `channel` with `status`, its due time in London."""
    [row] = rows(appointment, kind=kind, channel=channel, status=status)
    return row.due_at.astimezone(LONDON)


def events(appointment, event):
    """The webhook bodies' `data` of `event` about the appointment, oldest first."""
    found = OutboxMessage.objects.filter(appointment=appointment, channel="webhook", event=event).order_by("created_at")
    return [row.payload["data"] for row in found]


def parts_about(day_and_time: str) -> list[str]:
    """Every text part (merged texts split at their blank line) that names `day_and_time`, in the order read."""
    return [part for body in texts() for part in body.split("\n\n") if day_and_time in part]


# --- (a) A booking flagged because of another one: freed when that other one goes -------------------------------


@pytest.fixture
def flagged(patient, practitioner, clock, settings, django_capture_on_commit_callbacks):
    """Botox booked Monday 9 March, microneedling Tuesday 24 March (15 days: fine under the default 2 weeks). The
    organisation then adds a 3-week wait: the microneedling needs review, because of the booked Botox."""
    settings.CELERY_BROKER_URL = ""  # the rule change's re-check runs in the test, after commit
    now = ldn(2026, 3, 2, 9)
    botox = book(patient, ldn(2026, 3, 9), now, code="botox")
    mn = book(patient, ldn(2026, 3, 24), now)
    with django_capture_on_commit_callbacks(execute=True):
        org_rule(patient, "botox", "microneedling", 3, "weeks")
    mn = fresh(mn)
    assert mn.status == AppointmentStatus.NEEDS_REVIEW
    assert [r["conflicts_with"]["id"] for r in mn.review_reasons] == [str(botox.pk)]
    assert {r.status for r in rows(mn, kind=MessageKind.PRE_CARE)} == {OutboxStatus.HELD}
    return botox, mn


def _cancel(botox, clock):
    appointment_cancel(appointment=botox, actor=RECEPTION, now=ldn(2026, 3, 2, 9, 30), reason="QA")


def _move_away(botox, clock):
    # 3 March is 21 days before the microneedling: the move is checked both ways and goes through.
    appointment_reschedule(appointment=botox, start_at=ldn(2026, 3, 3), actor=RECEPTION, now=ldn(2026, 3, 2, 9, 30))


def _no_show(botox, clock):
    clock.move_to(ldn(2026, 3, 9, 11))
    appointment_mark_no_show(appointment=botox, actor=CLINICIAN, now=ldn(2026, 3, 9, 11))


# Found by this probe and mended on 4 December. Harm, it was: the microneedling is safe again, but it stayed
# `needs_review`: its pre-care ("stop topical retinoids now")
# and day-before reminder stay held, so the patient is not told; the API, the desk and the webhook keep showing
# review reasons that name a Botox that no longer exists; it cannot be completed (`review_required`) on the day.
# Brief 2: "Rescheduling re-checks; cancelling frees"; brief 1: the timeline holds "booked appointments that are
# not cancelled"; contract: needs_review "leaves ... by the record being corrected (then it is re-checked ...)".
# Cause: scheduler/booking.py appointment_cancel / appointment_reschedule / appointment_mark_no_show (through
# scheduler/lifecycle.py transition) never called scheduler/recheck.patient_appointments_recheck; only record
# changes (clinic/record_changes.py) and rule changes (scheduler/signals.py) did.
@pytest.mark.parametrize("freed_by", [_cancel, _move_away], ids=["cancelled", "moved-away"])
def test_the_booking_that_caused_a_review_going_away_releases_the_flagged_one(flagged, clock, freed_by):
    """The Botox that put the microneedling under review is cancelled or moved 3 weeks clear: nothing stands any
    more, so the microneedling is confirmed again (audited `released`) and its pre-care goes."""
    botox, mn = flagged
    freed_by(botox, clock)

    mn = fresh(mn)
    assert (mn.status, mn.review_reasons) == (AppointmentStatus.CONFIRMED, [])
    assert {r.status for r in rows(mn, kind=MessageKind.PRE_CARE)} == {OutboxStatus.PENDING}
    assert AuditEvent.objects.filter(appointment=mn, action=AuditAction.RELEASED).count() == 1


def test_the_flagged_botox_cannot_be_marked_missed_and_the_other_stays_flagged(flagged, clock):
    """The rule change flagged both bookings (a rule holds both ways): the Botox leaves needs_review only by being
    moved or cancelled (contract, v1 additions), so marking it a no-show on its day is refused and changes nothing."""
    botox, mn = flagged
    assert fresh(botox).status == AppointmentStatus.NEEDS_REVIEW
    with pytest.raises(InvalidTransition):
        _no_show(fresh(botox), clock)
    assert (fresh(botox).status, fresh(mn).status) == (AppointmentStatus.NEEDS_REVIEW, AppointmentStatus.NEEDS_REVIEW)


def test_a_started_botox_missed_releases_the_booking_it_flagged(
    patient, practitioner, clock, settings, django_capture_on_commit_callbacks
):
    """The rule changes while the Botox is under way (a started visit is not re-checked: it stays confirmed) and
    flags the microneedling 15 days later; the Botox is then marked a no-show: a missed visit counts for nothing,
    so the microneedling is released (audited once) and its pre-care goes."""
    settings.CELERY_BROKER_URL = ""
    now = ldn(2026, 3, 2, 9)
    botox = book(patient, ldn(2026, 3, 9), now, code="botox")
    mn = book(patient, ldn(2026, 3, 24), now)
    clock.move_to(ldn(2026, 3, 9, 10, 15))
    with django_capture_on_commit_callbacks(execute=True):
        org_rule(patient, "botox", "microneedling", 3, "weeks")
    assert (fresh(botox).status, fresh(mn).status) == (AppointmentStatus.CONFIRMED, AppointmentStatus.NEEDS_REVIEW)

    _no_show(fresh(botox), clock)

    mn = fresh(mn)
    assert (mn.status, mn.review_reasons) == (AppointmentStatus.CONFIRMED, [])
    assert {r.status for r in rows(mn, kind=MessageKind.PRE_CARE)} == {OutboxStatus.PENDING}
    assert AuditEvent.objects.filter(appointment=mn, action=AuditAction.RELEASED).count() == 1


def test_a_flagged_booking_moved_clear_is_confirmed_its_reminders_follow_and_everyone_is_told(
    patient, practitioner, clock, hooks
):
    """Contract: needs_review 'leaves ... by being rescheduled'; docs/reminders.md 'rescheduled': unsent reminders
    move, 'the same rows, never duplicated'; webhook `appointment.rescheduled` 'with previous'. An isotretinoin
    course recorded after booking flags a microneedling; moved to 6 calendar months after the course's end, it is
    confirmed, its held reminders go at the new time's moments, and the audit and webhook say from what to what."""
    now = ldn(2026, 3, 2, 9)
    mn = book(patient, ldn(2026, 3, 24), now)
    held_before = {r.pk for r in rows(mn, kind=MessageKind.PRE_CARE)}
    medication_course_add(
        patient=patient,
        drug_code="isotretinoin",
        started_on=date(2025, 9, 1),
        ended_on=date(2026, 2, 27),
        now=now,
    )
    assert fresh(mn).status == AppointmentStatus.NEEDS_REVIEW
    assert {r.status for r in rows(mn, kind=MessageKind.PRE_CARE)} == {OutboxStatus.HELD}

    # 27 February + 6 months = 27 August (BST); 10:00 local.
    appointment_reschedule(appointment=mn, start_at=ldn(2026, 8, 27), actor=RECEPTION, now=now)

    mn = fresh(mn)
    assert (mn.status, mn.review_reasons) == (AppointmentStatus.CONFIRMED, [])
    assert {r.pk for r in rows(mn, kind=MessageKind.PRE_CARE)} == held_before  # the same rows, moved
    assert due(mn, MessageKind.PRE_CARE) == ldn(2026, 8, 26, 10)
    assert due(mn, MessageKind.REMINDER, "email") == ldn(2026, 8, 26, 10)
    audit = AuditEvent.objects.get(appointment=mn, action=AuditAction.RESCHEDULED)
    assert audit.details["from"]["status"] == AppointmentStatus.NEEDS_REVIEW
    assert audit.details["to"]["status"] == AppointmentStatus.CONFIRMED
    [moved] = events(mn, "appointment.rescheduled")
    assert moved["previous"] == {
        "start": "2026-03-24T10:00:00+00:00",
        "practitioner": str(practitioner.pk),
        "status": "needs_review",
    }
    assert (moved["appointment"]["start"], moved["appointment"]["status"]) == ("2026-08-27T10:00:00+01:00", "confirmed")
    assert moved["appointment"]["review_reasons"] == []


def test_a_procedure_reported_after_a_move_is_judged_against_the_new_time(patient, practitioner, clock):
    """Brief 6: 'Whenever a patient's record changes (a reported procedure ...) every future active appointment
    ... is checked again'. Microneedling moved from 24 March to 14 April; a Botox done elsewhere on 20 March would
    have broken the old time (4 days) but is 25 days before the new one; one on 6 April breaks the new one."""
    now = ldn(2026, 3, 2, 9)
    mn = book(patient, ldn(2026, 3, 24), now)
    appointment_reschedule(appointment=mn, start_at=ldn(2026, 4, 14), actor=RECEPTION, now=now)

    clock.move_to(ldn(2026, 3, 21, 9))
    procedure_record_add(patient=patient, procedure_code="botox", performed_at=ldn(2026, 3, 20), now=ldn(2026, 3, 21))
    assert fresh(mn).status == AppointmentStatus.CONFIRMED

    clock.move_to(ldn(2026, 4, 7, 9))
    procedure_record_add(patient=patient, procedure_code="botox", performed_at=ldn(2026, 4, 6), now=ldn(2026, 4, 7))
    mn = fresh(mn)
    assert mn.status == AppointmentStatus.NEEDS_REVIEW
    assert [r["earliest_allowed"] for r in mn.review_reasons] == ["2026-04-19T23:00:00+00:00"]  # 20 April, BST


# --- (b) Reminders after a move, across the London clock changes ------------------------------------------------


def test_a_move_onto_the_spring_forward_sunday_replans_every_reminder_and_sends_each_once(
    patient, practitioner, clock, hooks
):
    """Brief 4: pre-care '24 h before' (elapsed hours); docs/reminders.md: 'Day offsets keep the local wall-clock
    time'; 'unsent reminders move (the same rows, never duplicated)'. Booked Friday 27 March 10:00 (GMT), moved
    to Sunday 29 March 10:00 (BST, 09:00 UTC): pre-care at 09:00 GMT on Saturday, the day-before reminder at
    10:00 GMT on Saturday; the webhook gives each time in its own offset; every message goes once."""
    now = ldn(2026, 3, 2, 9)
    mn = book(patient, ldn(2026, 3, 27), now)
    first_ids = {r.pk for r in rows(mn) if r.kind in (MessageKind.PRE_CARE, MessageKind.REMINDER)}

    appointment_reschedule(appointment=mn, start_at=ldn(2026, 3, 29), actor=RECEPTION, now=now)

    assert {r.pk for r in rows(mn) if r.kind in (MessageKind.PRE_CARE, MessageKind.REMINDER)} == first_ids
    for channel in ("email", "sms"):
        assert due(mn, MessageKind.PRE_CARE, channel).isoformat() == "2026-03-28T09:00:00+00:00"
        assert due(mn, MessageKind.REMINDER, channel).isoformat() == "2026-03-28T10:00:00+00:00"
    [moved] = events(mn, "appointment.rescheduled")
    assert moved["previous"]["start"] == "2026-03-27T10:00:00+00:00"
    assert moved["appointment"]["start"] == "2026-03-29T10:00:00+01:00"

    send_all_until(ldn(2026, 3, 29, 9, 30), start=now, step=timedelta(minutes=30))

    sent = rows(mn, status=OutboxStatus.SENT)
    assert sorted((r.kind, r.channel) for r in sent) == sorted(
        (kind, channel)
        for kind in (MessageKind.CONFIRMATION, MessageKind.PRE_CARE, MessageKind.REMINDER)
        for channel in ("email", "sms")
    )
    assert not parts_about("27 Mar")  # nothing ever named the old time: the confirmation went after the move
    assert len(parts_about("Sun 29 Mar, 10:00 (BST)")) == 3


def test_a_move_after_the_reminders_went_across_fall_back_sends_them_again_once_at_the_new_local_times(
    patient, practitioner, clock
):
    """docs/reminders.md: 'one already sent for the old time is sent again for the new time; a change notice goes
    after a grace period'. Booked Saturday 24 October 10:00 (BST); its reminders went on Friday at 10:00. At 15:00
    on Friday it moves to Sunday 25 October 10:00 (GMT): the notice names both times in their own offsets, the
    day-before reminder goes again at 10:00 BST on Saturday, pre-care 24 elapsed hours before (11:00 BST), once."""
    booked_at = ldn(2026, 10, 20, 9)
    clock.move_to(booked_at)
    mn = book(patient, ldn(2026, 10, 24), booked_at)
    send_all_until(ldn(2026, 10, 23, 15), start=booked_at, step=timedelta(hours=1))
    assert len(rows(mn, status=OutboxStatus.SENT)) == 6  # confirmation, reminder, pre-care; e-mail and SMS

    moved_at = ldn(2026, 10, 23, 15)
    clock.move_to(moved_at)
    appointment_reschedule(appointment=mn, start_at=ldn(2026, 10, 25), actor=RECEPTION, now=moved_at)
    assert due(mn, MessageKind.REMINDER).isoformat() == "2026-10-24T10:00:00+01:00"
    assert due(mn, MessageKind.PRE_CARE).isoformat() == "2026-10-24T11:00:00+01:00"
    assert due(mn, MessageKind.RESCHEDULED) == moved_at + timedelta(minutes=5)

    send_all_until(ldn(2026, 10, 25, 9, 30), start=moved_at, step=timedelta(minutes=30))

    assert not rows(mn, status=OutboxStatus.PENDING)
    for kind in (MessageKind.REMINDER, MessageKind.PRE_CARE):
        assert len(rows(mn, kind=kind, channel="sms", status=OutboxStatus.SENT)) == 2, kind  # old time, new time
    [notice] = [t for t in texts() if "moved" in t]
    assert "Sun 25 Oct, 10:00 (GMT)" in notice and "it was Sat 24 Oct, 10:00 (BST)" in notice
    after = texts()[texts().index(notice) + 1 :]
    assert after and all("24 Oct" not in t for t in after)


# --- Cancelled, then booked again --------------------------------------------------------------------------------


# Found by this probe and mended on 4 December. Harm, it was: the patient's last word on Tue 10 Mar 10:00 was "is
# cancelled", though the new booking stands; they may not
# come, or call the clinic. The e-mail names the procedure of each part; the SMS (nothing clinical by SMS) does not.
# Cause: reminders/content.py reading_order sorted the merged parts by (appointment start, kind), so a cancellation
# of another appointment at the same start read after the new booking's confirmation; reminders/dispatch.py
# _companions merges event messages of two appointments due together.
def test_cancelling_and_booking_the_same_time_again_never_ends_on_cancelled(patient, practitioner, clock):
    """Brief 4 and docs/reminders.md: a cancellation notice, and a confirmation for the new booking. The reception
    cancels Olivia's microneedling of Tuesday 10 March 10:00 and books a Botox at that same time instead: what she
    reads last about Tue 10 Mar 10:00 must be that it is booked."""
    now = ldn(2026, 3, 2, 9)
    first = book(patient, ldn(2026, 3, 10), now)
    send_all_until(now + timedelta(minutes=10), start=now)
    assert len(texts()) == 1
    changed_at = ldn(2026, 3, 5, 9)
    clock.move_to(changed_at)

    appointment_cancel(appointment=first, actor=RECEPTION, now=changed_at, reason="wrong treatment")
    second = book(patient, ldn(2026, 3, 10), changed_at, code="botox")
    send_all_until(changed_at + timedelta(minutes=10), start=changed_at)

    assert {r.status for r in rows(first, kind=MessageKind.CANCELLED)} == {OutboxStatus.SENT}
    assert {r.status for r in rows(second, kind=MessageKind.CONFIRMATION)} == {OutboxStatus.SENT}
    told = parts_about("Tue 10 Mar, 10:00")
    assert "cancelled" not in told[-1], told


def test_cancelling_frees_the_slot_and_the_next_available_answer_offers_it(api, patient, practitioner, clinic, clock):
    """Contract: a 409's `next_available_slot` is 'the first bookable slot (a practitioner who does that procedure is
    free ...) at or after earliest_eligible_start'; brief 2: 'cancelling frees'. Dr Ada is booked all Tuesday 10
    March: the next slot is Wednesday 09:00; once the 14:00 visit is cancelled, it is Tuesday 14:00, and books."""
    now = ldn(2026, 3, 2, 9)
    others = [
        book(PatientFactory(clinic=clinic), ldn(2026, 3, 10, 9 + i), now, code="botox", end_at=ldn(2026, 3, 10, 10 + i))
        for i in range(9)
    ]
    body = {"patient": str(patient.pk), "procedure": "microneedling", "start": "2026-03-10T10:00:00+00:00"}
    before = api.post(f"{API}/appointments/", body, format="json")
    assert before.status_code == 409
    assert before.json()["next_available_slot"]["start"] == "2026-03-11T09:00:00+00:00"

    appointment_cancel(appointment=others[5], actor=RECEPTION, now=now)

    after = api.post(f"{API}/appointments/", body, format="json")
    assert after.status_code == 409
    assert after.json()["earliest_eligible_start"] == "2026-03-10T10:00:00+00:00"
    assert after.json()["next_available_slot"]["start"] == "2026-03-10T14:00:00+00:00"
    assert api_book(api, patient, "2026-03-10T14:00:00+00:00", procedure="microneedling")["status"] == "confirmed"


# --- Another practitioner, another site ----------------------------------------------------------------------------


def test_a_move_to_a_sister_sites_practitioner_is_a_400_and_changes_nothing(
    api, patient, practitioner, west, hooks, clock
):
    """docs/organisations.md: 'A move stays at its clinic'; contract: malformed input is a 400 with `errors`.
    Naming Dr West (the organisation's other site) moves nothing, audits nothing and tells nobody."""
    dr_west = PractitionerFactory(clinic=west, name="Dr West")
    booked = api_book(api, patient, "2026-03-10T10:00:00+00:00", procedure="microneedling")
    webhooks_before = OutboxMessage.objects.filter(channel="webhook").count()

    answer = post(
        api,
        f"/appointments/{booked['id']}/reschedule/",
        {"start": "2026-03-11T10:00:00+00:00", "practitioner": str(dr_west.pk)},
    )

    assert answer.status_code == 400, answer.content
    assert "practitioner" in answer.json()["errors"]
    moved = api.get(f"{API}/appointments/{booked['id']}/").json()
    assert (moved["start"], moved["practitioner"], moved["clinic"]) == (
        booked["start"],
        str(practitioner.pk),
        str(practitioner.clinic_id),
    )
    assert not AuditEvent.objects.filter(appointment_id=booked["id"], action=AuditAction.RESCHEDULED).exists()
    assert OutboxMessage.objects.filter(channel="webhook").count() == webhooks_before


# Was a strict-xfail QUESTION (the confirmation e-mail named Dr Ada; Dr Bob sees the patient, who heard nothing of
# it): the move notice now tells a change of practitioner by e-mail (tests/reminders/test_practitioner_notice.py).
def test_a_move_to_another_practitioner_at_the_same_time_tells_the_patient(patient, practitioner, clinic, clock):
    """Olivia's confirmation named Dr Ada; the desk moves the visit to Dr Bob at the same time: a change notice?"""
    now = ldn(2026, 3, 2, 9)
    bob = PractitionerFactory(clinic=clinic, name="Dr Bob", hours=range(7))
    mn = book(patient, ldn(2026, 3, 10), now)
    send_all_until(now + timedelta(minutes=10), start=now)
    assert "Dr Ada" in mail.outbox[0].body

    later = now + timedelta(hours=1)
    appointment_reschedule(
        appointment=mn, start_at=ldn(2026, 3, 10), practitioner_id=bob.pk, actor=RECEPTION, now=later
    )
    assert fresh(mn).practitioner_id == bob.pk
    assert rows(mn, kind=MessageKind.RESCHEDULED, channel="email", status=OutboxStatus.PENDING)


def test_until_then_moving_the_flagged_booking_to_its_own_time_releases_it_without_a_move_notice(flagged, clock):
    """The desk's way out meanwhile (contract: needs_review 'leaves ... by being rescheduled'): once the Botox is
    cancelled, the microneedling 'moved' to the time it has is re-checked and confirmed; its held pre-care is due
    again at 24 hours before, and no move notice is planned (the time did not change)."""
    botox, mn = flagged
    now = ldn(2026, 3, 2, 9, 30)
    appointment_cancel(appointment=botox, actor=RECEPTION, now=now, reason="QA")
    appointment_reschedule(appointment=mn, start_at=ldn(2026, 3, 24), actor=RECEPTION, now=now)

    mn = fresh(mn)
    assert (mn.status, mn.review_reasons) == (AppointmentStatus.CONFIRMED, [])
    assert due(mn, MessageKind.PRE_CARE) == ldn(2026, 3, 23)
    assert not rows(mn, kind=MessageKind.RESCHEDULED, status=OutboxStatus.PENDING)
