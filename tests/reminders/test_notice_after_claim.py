"""A change notice asks, when it goes, what the patient has heard by then.

A dispatcher claims the booking confirmation (`sending`), staff cancel or move the booking (commit), then the send
runs. The change counted the claimed confirmation as heard (it may be in the provider's hands) and planned a
notice; if the send then drops the confirmation (cancelled) or names the new time (moved), the patient never
heard what the notice is about, and it is dropped when it goes (reminders.verdicts.notice_verdict). A
confirmation that did go, or may have (its sender stopped and the provider had it, or cannot tell), keeps the
notice. A reminder or pre-care note names the time too: where it was the patient's first word of the booking (no
confirmation went: no channel was on when it was booked), it counts, and is waited for, as a confirmation is.
docs/reminders.md, "What each booking change does to the outbox".
"""

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from reminders import channels, dispatch
from reminders.channels import LocmemSmsBackend
from reminders.consent import patient_preferences_update
from reminders.models import MessageKind, OutboxMessage, OutboxStatus
from scheduler.booking import appointment_cancel, appointment_reschedule
from tests.factories import PatientFactory
from tests.reminders.conftest import RECEPTION, book, london
from tests.reminders.support import sender_dies

# The conftest `now` is Monday 2 March 2026, 09:00 in London.
TUESDAY = london(2026, 3, 10, 10)
WEDNESDAY = london(2026, 3, 11, 10)


def deliver(moment):
    with time_machine.travel(moment, tick=False):
        return dispatch.dispatch_local(now=timezone.now())


def claimed_confirmations(patient, now, channels_=("email", "sms")):
    """Booked for Tuesday; a dispatcher has claimed its confirmations and not sent them yet."""
    appointment = book(patient, "botox", TUESDAY, now)
    claims = dispatch.outbox_claim_due(now=now)
    assert sorted(OutboxMessage.objects.get(pk=c.message_id).channel for c in claims) == sorted(channels_)
    assert {OutboxMessage.objects.get(pk=c.message_id).kind for c in claims} == {MessageKind.CONFIRMATION}
    return appointment, claims


def send(claims, now):
    return dispatch.outbox_send_batch(message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=now)


def change(kind, appointment, now):
    if kind == "cancel":
        return appointment_cancel(appointment=appointment, actor=RECEPTION, now=now)
    return appointment_reschedule(appointment=appointment, start_at=WEDNESDAY, actor=RECEPTION, now=now)


NOTICE = {"cancel": MessageKind.CANCELLED, "move": MessageKind.RESCHEDULED}


def notices(appointment, kind):
    return OutboxMessage.objects.filter(appointment=appointment, kind=NOTICE[kind])


def sms_bodies():
    return [m["body"] for m in LocmemSmsBackend.outbox]


@pytest.fixture
def email_only(clinic):
    return PatientFactory(clinic=clinic, first_name="Ada", email="ada@example.com", reminder_channels=["email"])


# --- The confirmation never told the patient what the notice is about -----------------------------------------


def test_a_cancel_while_the_confirmation_is_claimed_tells_the_patient_nothing(patient, practitioner, now):
    appointment, claims = claimed_confirmations(patient, now)
    change("cancel", appointment, now)
    assert notices(appointment, "cancel").count() == 2  # planned: the confirmation may be in the provider's hands

    assert set(send(claims, now).values()) == {dispatch.SendOutcome.CANCELLED}  # the send drops the confirmations
    deliver(now + timedelta(minutes=10))

    assert mail.outbox == [] and sms_bodies() == []
    assert set(notices(appointment, "cancel").values_list("status", "last_error")) == {
        (OutboxStatus.CANCELLED, "the patient was never told of the booking")
    }


def test_a_move_while_the_confirmation_is_claimed_sends_the_confirmation_of_the_new_time_only(
    patient, practitioner, now
):
    appointment, claims = claimed_confirmations(patient, now)
    change("move", appointment, now)
    assert notices(appointment, "move").count() == 2

    assert set(send(claims, now).values()) == {dispatch.SendOutcome.SENT}  # rendered now: Wednesday
    deliver(now + timedelta(minutes=10))  # past the grace period

    [email] = mail.outbox
    assert "Wed 11 Mar" in email.body and "Tue 10 Mar" not in email.body
    [text] = sms_bodies()
    assert "Wed 11 Mar" in text and "Tue 10 Mar" not in text
    assert set(notices(appointment, "move").values_list("status", "last_error")) == {
        (OutboxStatus.CANCELLED, "the patient was last told this very time")
    }


def test_a_notice_waits_while_a_confirmation_is_still_claimed(patient, practitioner, now):
    """Its sender has not run yet: whether the patient hears of the booking is not known, so the notice waits,
    spending no attempt, and is decided once the confirmation went or was dropped."""
    appointment, claims = claimed_confirmations(patient, now)
    change("cancel", appointment, now)

    assert deliver(now + timedelta(seconds=1)) == {dispatch.SendOutcome.DEFERRED: 2}
    waiting = notices(appointment, "cancel")
    assert set(waiting.values_list("status", "attempts", "last_error")) == {
        (OutboxStatus.PENDING, 0, "waiting for a message naming the time to go or be dropped")
    }
    send(claims, now + timedelta(seconds=2))
    deliver(now + timedelta(minutes=1))
    assert mail.outbox == [] and sms_bodies() == []
    assert set(waiting.values_list("status", flat=True)) == {OutboxStatus.CANCELLED}


# --- The confirmation went (or may have): the notice goes -------------------------------------------------------


@pytest.mark.parametrize("kind", ["cancel", "move"])
def test_a_change_after_the_confirmation_went_is_still_told(patient, practitioner, now, kind):
    appointment, claims = claimed_confirmations(patient, now)
    assert set(send(claims, now).values()) == {dispatch.SendOutcome.SENT}
    change(kind, appointment, now + timedelta(minutes=1))

    deliver(now + timedelta(minutes=10))

    assert set(notices(appointment, kind).values_list("status", flat=True)) == {OutboxStatus.SENT}
    last_email, last_text = mail.outbox[-1], sms_bodies()[-1]
    if kind == "cancel":
        assert last_email.subject == "Your appointment on Tue 10 Mar is cancelled"
        assert "cancelled" in last_text
    else:
        assert "It was: Tue 10 Mar, 10:00 (GMT)" in last_email.body
        assert "moved to Wed 11 Mar" in last_text and "it was Tue 10 Mar" in last_text


@pytest.mark.parametrize("kind", ["cancel", "move"])
def test_a_confirmation_in_the_providers_hands_when_the_change_commits_is_followed_by_the_notice(
    email_only, practitioner, now, kind, monkeypatch
):
    """The send read the booking before the change committed: the confirmation names Tuesday and went."""
    appointment, claims = claimed_confirmations(email_only, now, channels_=("email",))
    real_send = channels.send_email

    def change_commits_meanwhile(**kwargs):
        change(kind, appointment, now)
        return real_send(**kwargs)

    monkeypatch.setattr(channels, "send_email", change_commits_meanwhile)
    assert set(send(claims, now).values()) == {dispatch.SendOutcome.SENT}
    monkeypatch.setattr(channels, "send_email", real_send)

    deliver(now + timedelta(minutes=10))

    confirmation, notice = mail.outbox
    assert "Tue 10 Mar" in confirmation.body
    [row] = notices(appointment, kind)
    assert row.status == OutboxStatus.SENT
    if kind == "cancel":
        assert notice.subject == "Your appointment on Tue 10 Mar is cancelled"
    else:
        assert "It was: Tue 10 Mar, 10:00 (GMT)" in notice.body and "Wed 11 Mar" in notice.body


def killed_sending(email_only, now, monkeypatch, *, after_the_provider_took_it):
    """The confirmation's sender dies (before or after the provider accepted it), leaving the row `sending`."""
    appointment, claims = claimed_confirmations(email_only, now, channels_=("email",))
    sender_dies(monkeypatch, lambda: send(claims, now), after_the_provider_took_it=after_the_provider_took_it)
    [row] = OutboxMessage.objects.filter(pk=claims[0].message_id)
    assert row.status == OutboxStatus.SENDING
    return appointment, row


@pytest.mark.parametrize("kind", ["cancel", "move"])
def test_a_confirmation_whose_sender_died_after_the_provider_took_it_is_found_sent_and_the_notice_goes(
    email_only, practitioner, now, kind, monkeypatch, settings
):
    appointment, confirmation = killed_sending(email_only, now, monkeypatch, after_the_provider_took_it=True)
    change(kind, appointment, now)
    after_lease = now + timedelta(seconds=settings.REMINDERS_CLAIM_LEASE_SECONDS + 1)

    deliver(after_lease)  # claimed again, in doubt: the provider is asked and had it
    deliver(after_lease + timedelta(minutes=10))

    confirmation.refresh_from_db()
    assert (confirmation.status, confirmation.payload.get("found_sent")) == (OutboxStatus.SENT, True)
    sent, notice = mail.outbox  # the confirmation once (it was not sent again), then the notice
    assert "Tue 10 Mar" in sent.body
    if kind == "cancel":
        assert notice.subject == "Your appointment on Tue 10 Mar is cancelled"
    else:
        assert "It was: Tue 10 Mar, 10:00 (GMT)" in notice.body


def test_a_confirmation_whose_sender_died_before_the_provider_took_it_is_dropped_with_the_cancel_notice(
    email_only, practitioner, now, monkeypatch, settings
):
    appointment, confirmation = killed_sending(email_only, now, monkeypatch, after_the_provider_took_it=False)
    change("cancel", appointment, now)
    after_lease = now + timedelta(seconds=settings.REMINDERS_CLAIM_LEASE_SECONDS + 1)

    deliver(after_lease)
    deliver(after_lease + timedelta(minutes=10))

    confirmation.refresh_from_db()
    assert (confirmation.status, confirmation.in_doubt) == (OutboxStatus.CANCELLED, False)  # the provider said no
    assert mail.outbox == []
    assert set(notices(appointment, "cancel").values_list("status", flat=True)) == {OutboxStatus.CANCELLED}


def test_a_confirmation_the_provider_cannot_tell_about_keeps_the_cancel_notice(
    email_only, practitioner, now, monkeypatch, settings
):
    """At least once: a confirmation that may have gone (a provider that cannot be asked) counts as told, so the
    patient who may think they have a booking hears that it is cancelled."""
    appointment, confirmation = killed_sending(email_only, now, monkeypatch, after_the_provider_took_it=True)
    change("cancel", appointment, now)
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"  # SMTP-like: cannot be asked
    after_lease = now + timedelta(seconds=settings.REMINDERS_CLAIM_LEASE_SECONDS + 1)

    deliver(after_lease)
    deliver(after_lease + timedelta(minutes=10))

    confirmation.refresh_from_db()
    assert (confirmation.status, confirmation.in_doubt) == (OutboxStatus.CANCELLED, True)  # it may have gone
    assert set(notices(appointment, "cancel").values_list("status", flat=True)) == {OutboxStatus.SENT}


# --- A reminder or pre-care note was the patient's first word of the booking ---------------------------------


@pytest.fixture
def reminded_only(clinic, practitioner, now):
    """Booked for Tuesday while the patient had no channel on (so no confirmation), e-mail turned on on their page
    the day after: the visit's reminder and pre-care note are planned then, due on Monday 10:00, and are the first
    the patient hears of it."""
    patient = PatientFactory(clinic=clinic, first_name="Ada", email="ada@example.com", reminder_channels=[])
    appointment = book(patient, "microneedling", TUESDAY, now)
    assert not OutboxMessage.objects.filter(appointment=appointment).exclude(channel="webhook").exists()
    patient_preferences_update(patient=patient, now=now + timedelta(days=1), email=True)
    planned = OutboxMessage.objects.filter(appointment=appointment).exclude(channel="webhook")
    assert set(planned.values_list("kind", "due_at")) == {
        (MessageKind.REMINDER, london(2026, 3, 9, 10)),
        (MessageKind.PRE_CARE, london(2026, 3, 9, 10)),
    }
    return appointment


def test_a_cancel_after_the_reminder_went_is_told_though_no_confirmation_ever_went(reminded_only):
    deliver(london(2026, 3, 9, 10, 1))
    [reminder] = mail.outbox  # the reminder and the pre-care note, due together, go as one e-mail
    assert "Tue 10 Mar, 10:00" in reminder.body

    change("cancel", reminded_only, london(2026, 3, 9, 11))
    deliver(london(2026, 3, 9, 11, 10))

    assert set(notices(reminded_only, "cancel").values_list("status", flat=True)) == {OutboxStatus.SENT}
    assert mail.outbox[-1].subject == "Your appointment on Tue 10 Mar is cancelled"


def test_a_cancel_while_the_reminder_is_claimed_waits_for_it_and_its_send_decides(reminded_only):
    monday = london(2026, 3, 9, 10, 1)
    claims = dispatch.outbox_claim_due(now=monday)
    assert {OutboxMessage.objects.get(pk=c.message_id).kind for c in claims} == {
        MessageKind.REMINDER,
        MessageKind.PRE_CARE,
    }
    change("cancel", reminded_only, monday)
    assert notices(reminded_only, "cancel").count() == 1  # planned: the reminder may be in the provider's hands

    assert deliver(monday + timedelta(seconds=1)) == {dispatch.SendOutcome.DEFERRED: 1}
    assert set(notices(reminded_only, "cancel").values_list("status", "attempts", "last_error")) == {
        (OutboxStatus.PENDING, 0, "waiting for a message naming the time to go or be dropped")
    }
    assert set(send(claims, monday + timedelta(seconds=2)).values()) == {dispatch.SendOutcome.CANCELLED}
    deliver(monday + timedelta(minutes=10))

    assert mail.outbox == []  # it never heard of the visit, so it hears nothing of its cancellation
    assert set(notices(reminded_only, "cancel").values_list("status", "last_error")) == {
        (OutboxStatus.CANCELLED, "the patient was never told of the booking")
    }


def test_a_cancel_while_the_reminder_is_claimed_is_told_when_the_confirmation_went(email_only, practitioner, now):
    """The patient heard of the visit from its confirmation: the claimed reminder, dropped by its send, takes
    nothing away, and the cancellation goes after it (messages about one visit go in order)."""
    appointment = book(email_only, "microneedling", TUESDAY, now)
    deliver(now)
    [confirmation] = mail.outbox
    monday = london(2026, 3, 9, 10, 1)
    claims = dispatch.outbox_claim_due(now=monday)
    assert {OutboxMessage.objects.get(pk=c.message_id).kind for c in claims} >= {MessageKind.REMINDER}
    change("cancel", appointment, monday)

    assert deliver(monday + timedelta(seconds=1)) == {dispatch.SendOutcome.DEFERRED: 1}  # after the reminder
    assert set(send(claims, monday + timedelta(seconds=2)).values()) == {dispatch.SendOutcome.CANCELLED}
    deliver(monday + timedelta(minutes=1))

    assert [m.subject for m in mail.outbox] == [confirmation.subject, "Your appointment on Tue 10 Mar is cancelled"]


# --- A confirmation that went inside another message whose sender died --------------------------------------------


def on_one_channel(clinic, channel):
    """A patient reached on `channel` only (told on the other, the cancellation would go on both)."""
    return PatientFactory(
        clinic=clinic,
        first_name="Ada",
        email="ada@example.com",
        phone="+447700900123",
        reminder_channels=[channel],
        sms_consent=channel == "sms",
    )


def two_confirmations_in_one_message_whose_sender_died(
    patient, now, monkeypatch, channel, *, after_the_provider_took_it
):
    """Tuesday and Wednesday booked at once: their confirmations go as one message by `channel`, and its sender
    dies (after the provider took it, or before). Returns (the carrier, the row that rode inside it)."""
    book(patient, "botox", TUESDAY, now)
    book(patient, "filler", WEDNESDAY, now)
    claims = dispatch.outbox_claim_due(now=now)
    sender_dies(
        monkeypatch, lambda: send(claims, now), after_the_provider_took_it=after_the_provider_took_it, channel=channel
    )
    rows = list(OutboxMessage.objects.filter(kind=MessageKind.CONFIRMATION, channel=channel).order_by("due_at", "id"))
    assert [r.status for r in rows] == [OutboxStatus.SENDING] * 2  # neither recorded: the sender died
    handed = handed_ids(channel)
    if not after_the_provider_took_it:
        assert handed == []
        return rows
    [carrier_id] = [h for h in handed if h in {str(r.pk) for r in rows}]
    carrier = next(r for r in rows if str(r.pk) == carrier_id)
    return carrier, next(r for r in rows if r is not carrier)


def handed_ids(channel):
    """The outbox ids the provider was handed, in order (an e-mail's X-Outbox-Id: its carrier's)."""
    if channel == "sms":
        return [m["outbox_id"] for m in LocmemSmsBackend.outbox]
    return [m.extra_headers["X-Outbox-Id"] for m in mail.outbox]


def cancellations_sent(appointment, channel):
    return OutboxMessage.objects.filter(
        appointment=appointment, kind=MessageKind.CANCELLED, channel=channel, status=OutboxStatus.SENT
    )


@pytest.mark.parametrize("channel", ["email", "sms"])
def test_a_booking_confirmed_only_inside_a_message_whose_sender_died_has_its_cancellation_told(
    clinic, practitioner, now, monkeypatch, settings, channel
):
    patient = on_one_channel(clinic, channel)
    carrier, rider = two_confirmations_in_one_message_whose_sender_died(
        patient, now, monkeypatch, channel, after_the_provider_took_it=True
    )
    change("cancel", rider.appointment, now)
    after_lease = now + timedelta(seconds=settings.REMINDERS_CLAIM_LEASE_SECONDS + 1)

    deliver(after_lease)  # claimed again, in doubt: the carrier is found sent; the rider is not, under its own id
    deliver(after_lease + timedelta(minutes=30))

    carrier.refresh_from_db(), rider.refresh_from_db()
    assert (carrier.status, carrier.payload.get("found_sent")) == (OutboxStatus.SENT, True)
    # The provider knows the rider only inside the carrier: it stays in doubt (dropped, its visit cancelled) ...
    assert (rider.status, rider.in_doubt) == (OutboxStatus.CANCELLED, True)
    # ... and the patient, who holds its confirmation, hears that the visit is cancelled.
    assert cancellations_sent(rider.appointment, channel).count() == 1
    assert not cancellations_sent(carrier.appointment, channel).exists()


@pytest.mark.parametrize("channel", ["email", "sms"])
def test_a_confirmation_that_rode_inside_a_message_whose_sender_died_goes_again_while_its_visit_stands(
    clinic, practitioner, now, monkeypatch, settings, channel
):
    patient = on_one_channel(clinic, channel)
    """Told twice (docs/reminders.md allows a merged message to go again when its carrier's sender dies), never lost;
    the carrier itself is found sent and does not go again."""
    carrier, rider = two_confirmations_in_one_message_whose_sender_died(
        patient, now, monkeypatch, channel, after_the_provider_took_it=True
    )
    after_lease = now + timedelta(seconds=settings.REMINDERS_CLAIM_LEASE_SECONDS + 1)

    deliver(after_lease)

    carrier.refresh_from_db(), rider.refresh_from_db()
    assert carrier.payload.get("found_sent") is True and rider.payload.get("found_sent") is None
    assert (rider.status, rider.in_doubt) == (OutboxStatus.SENT, False)
    assert handed_ids(channel) == [str(carrier.pk), str(rider.pk)]


@pytest.mark.parametrize("channel", ["email", "sms"])
def test_two_confirmations_whose_sender_died_before_the_provider_took_them_tell_nothing_of_a_cancel(
    clinic, practitioner, now, monkeypatch, settings, channel
):
    patient = on_one_channel(clinic, channel)
    """The guard: the provider has neither, asked about both (the one still in doubt, too, when the other is asked
    first), so the cancelled visit's confirmation is dropped, and so is its cancellation: the patient never heard of
    it. The other visit's confirmation goes once."""
    first, second = two_confirmations_in_one_message_whose_sender_died(
        patient, now, monkeypatch, channel, after_the_provider_took_it=False
    )
    change("cancel", first.appointment, now)
    after_lease = now + timedelta(seconds=settings.REMINDERS_CLAIM_LEASE_SECONDS + 1)

    deliver(after_lease)
    deliver(after_lease + timedelta(minutes=30))

    first.refresh_from_db(), second.refresh_from_db()
    assert (first.status, first.in_doubt) == (OutboxStatus.CANCELLED, False)
    assert (second.status, second.in_doubt) == (OutboxStatus.SENT, False)
    assert not cancellations_sent(first.appointment, channel).exists()
    assert handed_ids(channel) == [str(second.pk)]


@pytest.mark.parametrize("channel", ["email", "sms"])
def test_a_confirmation_taken_along_unclaimed_into_a_message_whose_sender_died_has_its_cancellation_told(
    clinic, practitioner, now, monkeypatch, settings, channel
):
    """Wednesday is booked after the dispatcher claimed Tuesday's confirmation: Wednesday's, due too, is not in the
    claim, and goes inside Tuesday's message. Its send claims it first (reminders.riders.claim_riders), so when the sender
    dies after the provider took the message, Wednesday's row is `sending` under the dead claim, not `pending` with
    nothing to say it went: in doubt once the lease runs out, and its cancellation is told."""
    patient = on_one_channel(clinic, channel)
    book(patient, "botox", TUESDAY, now)
    claims = dispatch.outbox_claim_due(now=now)
    wednesday = book(patient, "filler", WEDNESDAY, now)
    rider = OutboxMessage.objects.get(appointment=wednesday, kind=MessageKind.CONFIRMATION, channel=channel)
    assert rider.status == OutboxStatus.PENDING and rider.pk not in {c.message_id for c in claims}

    sender_dies(monkeypatch, lambda: send(claims, now), after_the_provider_took_it=True, channel=channel)

    [carrier_id] = handed_ids(channel)
    handed = LocmemSmsBackend.outbox[0]["body"] if channel == "sms" else mail.outbox[0].body
    assert "Tue 10 Mar" in handed and "Wed 11 Mar" in handed  # Wednesday's confirmation went inside
    rider.refresh_from_db()
    assert (rider.status, str(rider.claim_token)) == (OutboxStatus.SENDING, str(claims[0].token))

    change("cancel", wednesday, now)
    after_lease = now + timedelta(seconds=settings.REMINDERS_CLAIM_LEASE_SECONDS + 1)
    deliver(after_lease)
    deliver(after_lease + timedelta(minutes=30))

    rider.refresh_from_db()
    assert OutboxMessage.objects.get(pk=carrier_id).payload.get("found_sent") is True
    assert (rider.status, rider.in_doubt) == (OutboxStatus.CANCELLED, True)
    assert cancellations_sent(wednesday, channel).count() == 1


def test_a_move_notice_claimed_with_a_pre_care_note_in_doubt_goes_once_the_note_is_asked_about(
    email_only, practitioner, now, monkeypatch, settings
):
    """Found by the messages state machine: a move notice and the moved visit's pre-care note went as one e-mail
    whose sender died before the provider took it. Claimed again, in doubt, the notice asked what the patient last
    heard before the note was asked about; the note in doubt read as "may have named the new time", and the notice
    was dropped as "last told this very time". The provider had neither: the patient held the old time. The notice
    now waits for the note of its own claim to be asked about (reminders.verdicts._asked_about_in_this_claim)."""
    appointment = book(email_only, "microneedling", TUESDAY, now)
    claims = dispatch.outbox_claim_due(now=now)
    sender_dies(monkeypatch, lambda: send(claims, now), after_the_provider_took_it=True)
    deliver(now + timedelta(seconds=settings.REMINDERS_CLAIM_LEASE_SECONDS + 1))
    found = OutboxMessage.objects.get(appointment=appointment, kind=MessageKind.CONFIRMATION)
    assert found.payload.get("found_sent") and "told_start" not in found.payload  # what it named is not recorded
    moved_at = london(2026, 3, 9, 9, 55)
    afternoon = london(2026, 3, 9, 17)
    appointment_reschedule(appointment=appointment, start_at=afternoon, actor=RECEPTION, now=moved_at)
    notice = notices(appointment, "move").get()
    pre_care = OutboxMessage.objects.get(appointment=appointment, kind=MessageKind.PRE_CARE, status="pending")
    # The notice first in the claim's order (as the machine met it), the note a second later.
    OutboxMessage.objects.filter(pk=pre_care.pk).update(
        due_at=max(notice.due_at, pre_care.due_at) + timedelta(seconds=1)
    )
    OutboxMessage.objects.filter(pk=notice.pk).update(due_at=max(notice.due_at, pre_care.due_at))
    moment = max(notice.due_at, pre_care.due_at) + timedelta(seconds=1)
    claims = dispatch.outbox_claim_due(now=moment)
    assert {notice.pk, pre_care.pk} <= {c.message_id for c in claims}
    mail.outbox = []

    sender_dies(monkeypatch, lambda: send(claims, moment), after_the_provider_took_it=False)
    after_lease = moment + timedelta(seconds=settings.REMINDERS_CLAIM_LEASE_SECONDS + 1)
    for step in range(6):
        deliver(after_lease + timedelta(seconds=10 * step))

    notice.refresh_from_db()
    assert notice.status == OutboxStatus.SENT, (notice.status, notice.last_error)
    assert any("Mon 9 Mar" in email.body and "moved" in email.body.lower() for email in mail.outbox)
