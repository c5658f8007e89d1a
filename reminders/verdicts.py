"""Whether a claimed message should still go, and when: asked of each row as it goes, under its lock (dispatch's
send), of a row before it rides along inside another message (riders.companions), and of a failed message staff
send again (dispatch.patient_message_send_again). `still_wanted`: dropped for good (cancelled, skipped) or held for
a clinician; `notice_verdict`: a change notice asks again what the patient has heard by now, and waits, goes or is
dropped; `quiet_hours_verdict`: a text waits for the end of quiet hours, or is skipped when they last until the
visit. Each returns its verdict; writing it to the row is the caller's.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from clinic.models import AppointmentStatus
from reminders.consent import patient_accepts
from reminders.models import (
    FROM_PRACTITIONER,
    HOLDING_STATUSES,
    TIME_NAMING_KINDS,
    TOLD_PRACTITIONER,
    Anchor,
    Channel,
    MessageKind,
    OutboxMessage,
    OutboxStatus,
)
from reminders.services import (
    BOOKING_NAMING_KINDS,
    NOT_RECORDED,
    booking_told,
    last_told_practitioner,
    last_told_start,
    on_time_due,
    webhook_endpoint_reaches,
)
from reminders.timing import first_allowed_after, quiet_hours

# A booking's change notices: sent only while the visit's time has not come (still_wanted).
NOTICES = (MessageKind.RESCHEDULED, MessageKind.CANCELLED)
# What is about the booking itself (made, moved, cancelled): worth nothing once the visit's time has come.
ABOUT_THE_BOOKING = (MessageKind.CONFIRMATION, *NOTICES)
TOO_LATE_FOR_THE_BOOKING = "too late: the appointment's time has come"
TOO_LATE_STARTED = "too late: the appointment has started"
# What the send step drops because its moment passed before it could go (reminders_status lists them).
TOO_LATE_REASONS = (TOO_LATE_FOR_THE_BOOKING, TOO_LATE_STARTED)
# The few seconds a message put off for another waits on top: a change notice waiting for a message that names the
# time to go, be dropped or be asked about (notice_verdict); a visit's message waiting for one that reads before it
# (dispatch._send_locked).
ORDER_WAIT = timedelta(seconds=5)


def still_wanted(message: OutboxMessage, now: datetime, *, hold: bool = True) -> tuple[str, str] | None:
    """(status, reason) when the row must not be sent after all, else None. `hold=False` reads past a booking held
    for a clinician (what would be decided once it is cleared).

    # Race condition: a row is planned from its template (or endpoint) as it was then, and either may be edited
    before it goes. Read with the batch (`dispatch._batch_read`, no query per row), each is asked again: a template
    switched off, moved to another procedure, or left without this channel's text (an admin blanked its SMS); an
    endpoint paused, revoked, no longer granted the clinic, or no longer subscribed to the event. Such a row is
    cancelled, before a hold too (it would be cancelled once cleared), and as a companion it is left to its own send,
    so it neither goes blank inside another message nor stops that message's own text going. A cancellation or move
    notice whose visit's time has come by the time it goes (cancelled the day after, quiet hours or a backlog carrying
    it past the start) is cancelled, as a reminder past the start is skipped."""
    appointment = message.appointment
    if message.channel == Channel.WEBHOOK:
        endpoint = message.endpoint
        if endpoint is None or not endpoint.is_active or endpoint.client.revoked_at is not None:
            return OutboxStatus.CANCELLED, "the webhook endpoint was removed or disabled"
        if message.event and not endpoint.wants(message.event):
            return OutboxStatus.CANCELLED, f"the webhook endpoint no longer subscribes to {message.event}"
        if not webhook_endpoint_reaches(endpoint.pk, appointment.clinic_id, appointment.clinic.organisation_id):
            return OutboxStatus.CANCELLED, "the platform is no longer granted this clinic"
        return None
    template = message.template
    if template is None or not template.is_active:
        return OutboxStatus.CANCELLED, "its template was removed or deactivated"
    if template.procedure_id not in (None, appointment.procedure_id):
        # Planned as the booking's procedure's (services._Change picks the same way); moved since, it speaks of
        # another treatment.
        return (
            OutboxStatus.CANCELLED,
            f"its template was moved to another procedure ({template.procedure_id}): it no longer applies to this "
            f"booking's ({appointment.procedure_id})",
        )
    if template.kind != message.kind:
        # Made another kind since (a pre-care note turned aftercare): its words are not for the moment it was planned
        # for (services.outbox_template_retimed cancels such rows when the template is saved; this is the backstop).
        return OutboxStatus.CANCELLED, f"its template was made a {template.get_kind_display().lower()} message since"
    if message.channel == Channel.SMS and not template.has_sms:
        return OutboxStatus.CANCELLED, "its template no longer has an SMS text"
    if message.channel == Channel.EMAIL and not template.has_email:
        return OutboxStatus.CANCELLED, "its template no longer has an e-mail (a subject and a text)"
    if appointment.status == AppointmentStatus.CANCELLED and message.kind != MessageKind.CANCELLED:
        return OutboxStatus.CANCELLED, "the appointment was cancelled"
    if appointment.status in (AppointmentStatus.COMPLETED, AppointmentStatus.NO_SHOW) and message.kind in (
        MessageKind.CONFIRMATION,
        MessageKind.REMINDER,
        MessageKind.PRE_CARE,
        MessageKind.RESCHEDULED,
    ):
        return OutboxStatus.CANCELLED, "the appointment is over"
    if message.kind in ABOUT_THE_BOOKING and now >= appointment.start_at:
        # A cancellation or move notice whose visit's time has come tells the patient nothing they can act on ("your
        # appointment yesterday is cancelled": the desk tidying its day), nor does a confirmation ("booked for 08:30,
        # move or cancel" at 09:00, the patient in the chair: the pipeline was down); staff's "send again" refuses
        # them likewise.
        return OutboxStatus.CANCELLED, TOO_LATE_FOR_THE_BOOKING
    if hold and appointment.status in HOLDING_STATUSES:
        return OutboxStatus.HELD, ""
    if template.anchor == Anchor.START and message.anchor_at != appointment.start_at:
        return OutboxStatus.CANCELLED, "superseded: the appointment moved"
    if template.anchor == Anchor.START and now >= appointment.start_at:
        # A reminder or pre-care note warns ahead of the visit: past its start (the workers were down, a
        # retry backed off) it would only confuse. Planning refuses it too (timing.plan_due's deadline).
        return OutboxStatus.SKIPPED, TOO_LATE_STARTED
    accepted, why = patient_accepts(appointment.patient, message.channel, message.kind)
    if not accepted:
        return OutboxStatus.SKIPPED, why
    return None


def notice_verdict(message: OutboxMessage, now: datetime, ours: tuple) -> tuple[str, datetime | None, str] | None:
    """A change notice is planned on what the patient had heard when the change committed, and
    a message naming the time claimed then (`sending`) counts, since it may already be in the provider's hands. But
    its send may still drop it (the booking was cancelled: the patient never hears of it) or render it with the new
    time (moved: the patient never hears the old one). So a notice asks again when it goes, from what has gone by
    then: a cancellation goes only if a message naming the time went (a confirmation, change notice, reminder or
    pre-care note; or may have: in doubt, the provider could not tell), a move notice runs from the time the patient
    last heard before the move (`payload.from_start` follows it; an e-mail's `from_practitioner`, the practitioner
    the last e-mail named when that is not the one now) and is dropped when that is the time now (and, for an
    e-mail, the practitioner) or when no time was told, or when a move notice of its channel sent since its move
    told the visit as it stands (`_notice_since`). While a confirmation is still claimed, or waits in doubt to ask
    its provider, the notice waits (no attempt spent), and a cancellation so waits for a reminder or pre-care note
    while nothing else has told the patient (`booking_told`); rows claimed by this send (`ours`: its claim token,
    and the rows of it that may be in the provider's hands, `batch.tainted`) are not among those, as they go with it
    or after it. Returns (status, new due_at, reason) when the notice must not go now, else None."""
    if message.channel == Channel.WEBHOOK or message.kind not in (MessageKind.CANCELLED, MessageKind.RESCHEDULED):
        return None
    appointment = message.appointment
    # Race condition: planned on what was told when the change committed; asked again now, from what has gone.
    # What a cancellation asks of includes a reminder or pre-care note; what a move notice asks of does not (one
    # claimed with it names the new time, and waits for the notice: waiting for it too, neither would go).
    kinds = TIME_NAMING_KINDS if message.kind == MessageKind.CANCELLED else BOOKING_NAMING_KINDS
    told, unsettled = booking_told(appointment, now=now, excluding=message.pk, kinds=kinds, ours=ours)
    if unsettled is not None:
        return OutboxStatus.PENDING, unsettled + ORDER_WAIT, "waiting for a message naming the time to go or be dropped"
    if message.kind == MessageKind.CANCELLED:
        return None if told else (OutboxStatus.CANCELLED, None, "the patient was never told of the booking")
    if _asked_about_in_this_claim(message, ours):
        return OutboxStatus.PENDING, now + ORDER_WAIT, "waiting for a message in doubt to be asked about"
    since = _notice_since(message, ours)
    if since == IN_FLIGHT:
        return OutboxStatus.PENDING, now + ORDER_WAIT, "waiting for an earlier move notice to go or be dropped"
    if since is not None and _tells_as_it_stands(since, appointment, message.channel):
        return OutboxStatus.CANCELLED, None, "a move notice sent since told the patient this very change"
    start = last_told_start(appointment, before=message.anchor_at, ours=ours)  # anchored on the move (the latest)
    if start is None:  # a sent message that did not record its time (found sent): the notice goes as planned
        return None if told else (OutboxStatus.CANCELLED, None, "the patient has not been told a time yet")
    other = last_told_practitioner(appointment, before=message.anchor_at) if message.channel == Channel.EMAIL else None
    if other == NOT_RECORDED:  # the e-mail that went did not record whom it named: as planned, the one moved from
        other = (message.payload or {}).get(FROM_PRACTITIONER)
    other = other if other != str(appointment.practitioner_id) else None  # only an e-mail named a practitioner
    if start == appointment.start_at and other is None:
        return OutboxStatus.CANCELLED, None, "the patient was last told this very time"
    kept = {k: v for k, v in (message.payload or {}).items() if k != FROM_PRACTITIONER}
    message.payload = {**kept, "from_start": start.isoformat(), **({FROM_PRACTITIONER: other} if other else {})}
    return None


IN_FLIGHT = "in flight"


def _notice_since(message: OutboxMessage, ours: tuple) -> dict | str | None:
    """What the newest move notice of the same channel sent after this notice's move told (its payload), IN_FLIGHT
    while another is being sent (claimed under another claim than ours), else None.

    Race condition: a notice claimed when a further move commits is not among the unsent rows that move updates
    (services._locked_for_notice), so the move plans a notice of its own, reckoned from what was told before it;
    the claimed one then goes rendered as the visit stands (the new time, the new practitioner). Read as told only
    up to this notice's move (`last_told_start(before=)`), this notice would say the same change again."""
    others = OutboxMessage.objects.filter(
        appointment_id=message.appointment_id, kind=MessageKind.RESCHEDULED, channel=message.channel
    ).exclude(pk=message.pk)
    if others.filter(status=OutboxStatus.SENDING).exclude(claim_token=ours[0]).exists():
        return IN_FLIGHT
    gone = others.filter(sent_at__gt=message.anchor_at).order_by("-sent_at").values_list("payload", flat=True)[:1]
    return next(iter(gone), None)


def _tells_as_it_stands(told: dict, appointment, channel: str) -> bool:
    """Whether a sent message's recorded `told` (dispatch._told) is the visit as it stands: its start, and for an
    e-mail its practitioner when it named one."""
    start = (told or {}).get("told_start")
    if start is None or datetime.fromisoformat(start) != appointment.start_at:
        return False
    named = told.get(TOLD_PRACTITIONER)
    return channel != Channel.EMAIL or not named or named == str(appointment.practitioner_id)


def _asked_about_in_this_claim(message: OutboxMessage, ours: tuple) -> bool:
    """Whether a reminder or pre-care note of the visit, in doubt, is held by this claim too: its send asks the
    provider in a moment, and until then it would count as the time the patient last heard (`_start_in_doubt`).
    Read as told, it dropped the move notice; asked, it may turn out never to have gone (and, a companion of this
    notice whose sender died, it went only if this notice did)."""
    return (
        OutboxMessage.objects.filter(
            appointment_id=message.appointment_id,
            kind__in=(MessageKind.REMINDER, MessageKind.PRE_CARE),
            status=OutboxStatus.SENDING,
            claim_token=ours[0],
            in_doubt=True,
        )
        .exclude(pk=message.pk)
        .exists()
    )


# A row claimed before its template was saved, and about to go earlier than the template as it stands would send it,
# waits for that moment: the template was re-timed later while the row was being sent (services._retime re-plans the
# rows not claimed), and its words are the template's now ("72 hours have passed" must not go at 48 h). Going later
# than planned (a retry, quiet hours, a move's grace, a backlog) is never held here.
RETIMED_SLACK = timedelta(minutes=1)
RETIMED_KINDS = (MessageKind.REMINDER, MessageKind.PRE_CARE, MessageKind.POST_CARE)


def timing_verdict(
    message: OutboxMessage, now: datetime, *, claimed_at: datetime | None
) -> tuple[str, datetime, str] | None:
    """(status, new due_at, reason) to hold a row claimed at `claimed_at` until its template's moment as it stands,
    when the template was saved since the claim (services._retime re-plans every row not claimed), or None to go
    now."""
    template = message.template
    if message.kind not in RETIMED_KINDS or template is None or claimed_at is None:
        return None
    if not claimed_at <= template.updated_at <= now + RETIMED_SLACK:  # not saved between the claim and this send
        return None
    due = on_time_due(message)
    if due is None or now >= due - RETIMED_SLACK:
        return None
    return OutboxStatus.PENDING, due, "its template was re-timed since it was planned: held until its new moment"


def quiet_hours_verdict(message: OutboxMessage, now: datetime) -> tuple[str, datetime | None, str] | None:
    """Quiet hours hold at send time too: planning kept SMS out of them, but a backlog (workers down
    overnight) must not go out at 3 a.m. Returns (status, new due_at, reason), or None to send now."""
    tz = message.appointment.clinic.tz
    quiet = quiet_hours()
    if not quiet.contains(now.astimezone(tz).time()):
        return None
    allowed = first_allowed_after(now, tz, quiet)
    warns_ahead = message.template is not None and message.template.anchor == Anchor.START
    if warns_ahead and allowed >= message.appointment.start_at:
        return OutboxStatus.SKIPPED, None, "quiet hours last until the appointment starts"
    return OutboxStatus.PENDING, allowed, "quiet hours: held until they end"
