"""Outbox writes: what each booking change does to an appointment's messages and webhooks.

Called from scheduler.notifications inside the booking transaction (patient and
appointment rows already locked), so outbox rows commit or roll back with the
change. The appointment's unsent rows are locked here too, so a dispatcher
(which claims with SKIP LOCKED) never sends a row that is being moved.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import BooleanField, ExpressionWrapper, Q

from clinic.models import (
    ACTIVE_APPOINTMENT_STATUSES,
    ApiClient,
    Appointment,
    AppointmentStatus,
    AuditAction,
    AuditEvent,
    Patient,
)
from clinic.selectors import appointment_sequence
from clinic.services import lock_live_patient
from core.compiled import insert_rows
from core.errors import ErrorCode, InvalidInput
from core.redact import masked_logger
from reminders.consent import patient_accepts
from reminders.models import (
    FROM_PRACTITIONER,
    HANDED_OVER,
    HANDED_OVER_OR_GOING,
    HOLDING_STATUSES,
    KIND_ANCHORS,
    TIME_NAMING_KINDS,
    TOLD_PRACTITIONER,
    UNSENT_STATUSES,
    Anchor,
    Channel,
    MessageKind,
    OutboxMessage,
    OutboxStatus,
    ReminderTemplate,
    TemplateRollout,
    WebhookEndpoint,
)
from reminders.timing import Direction, Plan, apply_offset, plan_due, quiet_hours
from scheduler import versioned
from scheduler.lifecycle import EVENT_FOR_ACTION, Actor
from scheduler.recheck import STALLED_AFTER, review_reasons_in_zone, wait_for_older_transactions

log = masked_logger(__name__)

# How a row staff cancelled says so: nothing plans it again (a run for a care text, a channel switched on).
OPERATOR_CANCELLED = "cancelled by an operator"


def _cancelled_by_the_service() -> Q:
    """Rows the service itself cancelled (a consent withdrawn, a kind changed, a move): what is planned anew where it
    is wanted again. A row staff cancelled is not one of them."""
    return Q(status=OutboxStatus.CANCELLED) & ~Q(last_error__startswith=OPERATOR_CANCELLED)


# --- Entry point --------------------------------------------------------------------------------------


def _active_templates() -> list[ReminderTemplate]:
    """Every active template, kept per process under the configuration version (scheduler/versioned.py)."""
    return versioned.cached(
        "reminder-templates", lambda: list(ReminderTemplate.objects.filter(is_active=True).order_by("id"))
    )


class _Change:
    """One call's working state: the templates (read once) and the rows to insert (in one query)."""

    def __init__(self, appointment: Appointment, now: datetime, only: ReminderTemplate | None = None) -> None:
        self.appointment = appointment
        self.now = now
        self.by_kind: dict[str, list[ReminderTemplate]] = defaultdict(list)
        for template in _active_templates() if only is None else [only]:
            if template.procedure_id in (None, appointment.procedure_id):
                self.by_kind[template.kind].append(template)
        self.new_rows: list[OutboxMessage] = []

    def templates(self, *kinds: str) -> list[ReminderTemplate]:
        return [t for kind in kinds for t in self.by_kind.get(kind, ())]

    def add(
        self, template: ReminderTemplate, channel: str, plan: Plan, anchor_at: datetime, payload: dict | None = None
    ) -> None:
        if plan.due_at is None:
            status, due, reason = OutboxStatus.SKIPPED, anchor_at, plan.reason
        else:
            status, due, reason = _new_status(self.appointment), plan.due_at, ""
        self.new_rows.append(
            OutboxMessage(
                appointment=self.appointment,
                kind=template.kind,
                channel=channel,
                template=template,
                anchor_at=anchor_at,
                due_at=due,
                status=status,
                last_error=reason,
                payload=payload or {},
                created_at=self.now,
            )
        )

    def save(self) -> None:
        insert_rows(self.new_rows)  # one INSERT for all of them, its SQL kept (core.compiled)


def _with_patient_and_clinic(appointment: Appointment) -> Appointment:
    """The appointment with its patient and clinic at hand, querying only for what is not loaded yet."""
    if not Appointment.patient.is_cached(appointment):
        appointment.patient = Patient.objects.select_related("clinic").get(pk=appointment.patient_id)
    if not Appointment.clinic.is_cached(appointment):
        patient = appointment.patient
        if Patient.clinic.is_cached(patient) and patient.clinic_id == appointment.clinic_id:
            appointment.clinic = patient.clinic
    return appointment


def _on_booked(work: _Change, previous: dict) -> None:
    _event_messages(work, MessageKind.CONFIRMATION)
    _reconcile_start_messages(work, fresh=True)  # a new appointment has no rows to move yet


def _on_rescheduled(work: _Change, previous: dict) -> None:
    _reconcile_start_messages(work, moved=True)
    _rescheduled_notice(work, previous)
    _sync_hold(work)


def _on_cleared(work: _Change, previous: dict) -> None:
    """The status changed without a move (cleared, flagged, sent back for clearance, released):
    start-anchored messages follow it, and everything unsent is held or released with it."""
    _reconcile_start_messages(work)
    _sync_hold(work)


def _on_cancelled(work: _Change, previous: dict) -> None:
    # Race condition: what the patient was told is read after the unsent rows are locked. A dispatcher's claim
    # that holds the confirmation's row (not committed yet) is waited for there; read before, the confirmation
    # was still `pending` (not told: no notice), the claim then took it, and its send, not seeing this cancel
    # (not committed yet), told the patient of a booking no notice ever cancelled.
    _cancel_unsent(work.appointment, "the appointment was cancelled")
    if _patient_was_told(work.appointment):  # a patient who never heard of the booking gets no cancellation
        _event_messages(work, MessageKind.CANCELLED)


def _on_completed(work: _Change, previous: dict) -> None:
    _cancel_unsent(work.appointment, "the treatment was completed")
    _completion_messages(work)


def _unchanged(work: _Change, previous: dict) -> None:
    pass


def _on_no_show(work: _Change, previous: dict) -> None:
    _cancel_unsent(work.appointment, "the patient did not attend")


# What each lifecycle action does to the patient's messages (the events to platforms come from
# scheduler.lifecycle.EVENT_FOR_ACTION); an action missing here changes no patient message.
REACTIONS = {
    AuditAction.BOOKED: _on_booked,
    AuditAction.RESCHEDULED: _on_rescheduled,
    AuditAction.CLEARED: _on_cleared,
    AuditAction.CANCELLED: _on_cancelled,
    AuditAction.COMPLETED: _on_completed,
    AuditAction.NO_SHOW: _on_no_show,
    # A re-check after a record change: held while it needs review or clearance, re-planned when released.
    AuditAction.NEEDS_REVIEW: _on_cleared,
    AuditAction.CLEARANCE_REQUESTED: _on_cleared,
    AuditAction.RELEASED: _on_cleared,
    # The patient is here: nothing to send or cancel (a no-show is a separate, explicit action).
    AuditAction.CHECKED_IN: _unchanged,
    # A merge moved it to the surviving record: its messages go to whoever the survivor is reached by, read when
    # each goes (consent and addresses are read at send time); nothing to re-plan.
    AuditAction.PATIENT_MERGED: _unchanged,
}


def outbox_on_change(*, appointment: Appointment, change: str, now: datetime, previous: dict | None = None) -> None:
    """Bring `appointment`'s outbox in line with `change` (an AuditAction value); called once per change."""
    work = _Change(_with_patient_and_clinic(appointment), now)
    react = REACTIONS.get(change)
    if react is not None:
        react(work, previous or {})
    event = EVENT_FOR_ACTION.get(change)
    if event:
        _webhooks(work, event, previous)
    work.save()


# --- Planning -----------------------------------------------------------------------------------------------


def _channels(template: ReminderTemplate, appointment: Appointment) -> list[str]:
    """The channels this template has text for and the patient has consented to."""
    wanted = [Channel.EMAIL] if template.has_email else []
    wanted += [Channel.SMS] if template.has_sms else []
    return [c for c in wanted if patient_accepts(appointment.patient, c, template.kind)[0]]


def _plan(
    template: ReminderTemplate, channel: str, appointment: Appointment, now: datetime, anchor_at: datetime
) -> Plan:
    start_anchored = template.anchor == Anchor.START
    return plan_due(
        anchor_at=anchor_at,
        offset_value=template.offset_value,
        offset_unit=template.offset_unit,
        tz=appointment.clinic.tz,
        now=now,
        direction=Direction.EARLIER if start_anchored else Direction.LATER,
        is_sms=channel == Channel.SMS,
        quiet=quiet_hours(),
        send_if_late=template.send_if_late if start_anchored else True,
        deadline=appointment.start_at if start_anchored else None,
    )


def on_time_due(message: OutboxMessage) -> datetime | None:
    """When `message` (a reminder, pre-care or aftercare row) would go by its template as it stands, its moment not
    passed (quiet hours moving it as planning does), or None where it would be skipped: `verdicts.timing_verdict`
    compares what a row was planned for with its template now."""
    long_before = message.anchor_at - timedelta(days=400)
    return _plan(message.template, message.channel, message.appointment, long_before, message.anchor_at).due_at


def _after_grace(plan: Plan, now: datetime, appointment: Appointment, channel: str) -> Plan:
    """After a move, what would go at once waits out the grace period, like the move notice: a
    receptionist trying times (10:00, no, 10:15, no, back to 11:00) sends the patient nothing
    until the time settles. Never past a start still ahead, which is what the message is about (aftercare, once
    the visit has begun, waits the grace all the same: a template re-timed into the past), and never into
    SMS quiet hours: a text the grace would carry past 21:00 goes as planned, before they begin (a
    pre-care note moves earlier, never later; carried to 21:02 it waited until morning, or was skipped
    when the appointment was at 08:00)."""
    graced = now + timedelta(minutes=settings.REMINDERS_CHANGE_GRACE_MINUTES)
    if plan.due_at is None or plan.due_at > now or now < appointment.start_at <= graced:
        return plan
    if channel == Channel.SMS and quiet_hours().contains(graced.astimezone(appointment.clinic.tz).time()):
        return plan
    return dataclasses.replace(plan, due_at=graced)


def last_told_start(
    appointment: Appointment, *, before: datetime | None = None, ours: tuple | None = None
) -> datetime | None:
    """The appointment time the patient last heard (the newest sent message that named one), or None.

    `before` (a move notice asking when it goes, verdicts.notice_verdict): what they had heard when the move was
    made, and any confirmation since (one in flight then went: rendered when sent, it named the time as it
    stood). Not what went after the move as part of telling it (the notice's twin on the other channel, a
    re-sent pre-care).

    With no sent message naming a time, a reminder or pre-care note in doubt counts (`_start_in_doubt`): its
    sender stopped, perhaps after the provider took it, so the patient may hold the start it named, as a
    cancellation counts it as told (`booking_told`). Told twice beats never told: a move into hours too late for
    a reminder of its own cancels the row in doubt, and only a notice then tells the new time. `ours`: the claim
    of the send asking (`_not_gone_with`)."""
    sent = OutboxMessage.objects.filter(HANDED_OVER, appointment=appointment, kind__in=TIME_NAMING_KINDS)
    if before is not None:
        sent = sent.filter(Q(sent_at__lte=before) | Q(kind=MessageKind.CONFIRMATION))
    for payload, kind, anchor_at in (
        sent.exclude(channel=Channel.WEBHOOK)
        .order_by("-sent_at", "-created_at")
        .values_list("payload", "kind", "anchor_at")
    ):
        told = (payload or {}).get("told_start")
        if told:
            return datetime.fromisoformat(told)
        if kind in (MessageKind.REMINDER, MessageKind.PRE_CARE) and anchor_at:
            return anchor_at  # a row sent before told_start was recorded: its anchor is the time it named
    return _start_in_doubt(appointment, ours=ours)


# What last_told_practitioner answers when the newest e-mail went without recording whom it named.
NOT_RECORDED = "not recorded"


def last_told_practitioner(appointment: Appointment, *, before: datetime | None = None) -> str | None:
    """The practitioner (their id, as text) the patient last heard of: the newest e-mail sent that named the visit
    whose text or calendar file named the practitioner (a text message names no one), None when none went (one in
    doubt has not, yet). `before` as for `last_told_start`. NOT_RECORDED when that e-mail did not record whom it
    named (sent before this was recorded, or found sent after its sender stopped): a move notice then takes the
    practitioner moved from, as planned (`_practitioner_told_before`, verdicts.notice_verdict); told twice beats
    never told."""
    sent = OutboxMessage.objects.filter(
        HANDED_OVER, appointment=appointment, kind__in=TIME_NAMING_KINDS, channel=Channel.EMAIL
    )
    if before is not None:
        sent = sent.filter(Q(sent_at__lte=before) | Q(kind=MessageKind.CONFIRMATION))
    for payload in sent.order_by("-sent_at", "-created_at").values_list("payload", flat=True):
        if TOLD_PRACTITIONER not in (payload or {}):
            return NOT_RECORDED
        if payload[TOLD_PRACTITIONER]:  # null: that e-mail named no one (a pre-care note): the one before it says
            return payload[TOLD_PRACTITIONER]
    return None


def _not_gone_with(ours: tuple) -> Q:
    """Rows claimed by the send that asks (`ours`: its claim token, and the rows under it that may be in the
    provider's hands, whose record failed; riders.claim_riders claims those that may go with it): not in doubt,
    not in the provider's hands yet, and they go only with that send or after it. Counted as claimed, they would make
    its notice wait for, or count as told by, what goes with it or not at all."""
    token, handed = ours
    return Q(status=OutboxStatus.SENDING, claim_token=token, in_doubt=False) & ~Q(pk__in=list(handed))


def _start_in_doubt(appointment: Appointment, *, ours: tuple | None = None) -> datetime | None:
    """The start a reminder or pre-care note in doubt may have named (the one it was anchored on when its sender
    stopped: MAY_HAVE_NAMED if a move carried it since), or None. One claimed (`sending`) counts too: its sender
    may have stopped after the provider took it, not known until its lease runs out (a live sender's row a move
    waits for, `_locked_for_notice`; one not yet sent is dropped by its send if the time moved, and counts no
    more)."""
    in_doubt = (
        OutboxMessage.objects.filter(
            Q(in_doubt=True) | Q(status=OutboxStatus.SENDING),
            appointment=appointment,
            kind__in=(MessageKind.REMINDER, MessageKind.PRE_CARE),
        )
        .exclude(channel=Channel.WEBHOOK)
        .order_by("due_at", "id")
        .values_list("payload", "anchor_at")
    )
    if ours is not None:
        in_doubt = in_doubt.exclude(_not_gone_with(ours))
    for payload, anchor_at in in_doubt[:1]:
        named = (payload or {}).get(MAY_HAVE_NAMED)
        return datetime.fromisoformat(named) if named else anchor_at
    return None


def _new_status(appointment: Appointment) -> str:
    # Relative contraindications: nothing reaches the patient before a clinician clears the booking.
    return OutboxStatus.HELD if appointment.status in HOLDING_STATUSES else OutboxStatus.PENDING


def _locked_unsent(appointment: Appointment, matching: Q | None = None, **filters) -> list[OutboxMessage]:
    return list(
        OutboxMessage.objects.select_for_update()
        .filter(matching or Q(), appointment=appointment, status__in=UNSENT_STATUSES, **filters)
        .exclude(channel=Channel.WEBHOOK)
    )


def _finish(rows: Iterable[OutboxMessage], status: str, reason: str) -> None:
    ids = [r.pk for r in rows]
    if ids:
        OutboxMessage.objects.filter(pk__in=ids, status__in=UNSENT_STATUSES).update(
            status=status, last_error=reason, claim_token=None, claimed_until=None
        )


# --- Start-anchored messages: reminders and pre-care ------------------------------------------------------------


def _reconcile_start_messages(work: _Change, *, fresh: bool = False, moved: bool = False) -> None:
    """Make the start-anchored messages match the appointment's current start and status.

    An unsent message is moved (never duplicated); one already sent for this
    start is not sent again; one already sent for another start is sent anew
    for the new one; one whose time has passed is dropped unless it carries
    care instructions (send_if_late), which then go at once.
    """
    appointment, now = work.appointment, work.now
    if appointment.status not in ACTIVE_APPOINTMENT_STATUSES:
        return
    templates = work.templates(MessageKind.REMINDER, MessageKind.PRE_CARE)
    unsent: dict = {}
    handled: set = set()
    if not fresh:
        planned = _locked_unsent(
            appointment, matching=Q(template__in=templates) | Q(kind__in=(MessageKind.REMINDER, MessageKind.PRE_CARE))
        )
        ours = {template.pk for template in templates}
        unsent = {(r.template_id, r.channel): r for r in planned if r.template_id in ours}
        # A text switched off (or no longer for this visit) is not planned for the new start: its unsent rows for
        # another start would only be dropped when they fall due, and switched on again meanwhile, they would stand in
        # the place of the new start's (one unsent copy per text and channel). They are cancelled; a row in doubt,
        # which must be settled (asked of its provider) rather than dropped unasked, moves with the visit instead,
        # keeping the start its sender may have named, as an active text's row does.
        stale = [r for r in planned if r.template_id not in ours and r.anchor_at != appointment.start_at]
        _finish(
            [r for r in stale if not r.in_doubt],
            OutboxStatus.CANCELLED,
            "the appointment moved while its text was switched off",
        )
        for row in (r for r in stale if r.in_doubt):
            OutboxMessage.objects.filter(pk=row.pk).update(
                anchor_at=appointment.start_at, **_doubt_kept(row, appointment.start_at)
            )
    if not templates:
        return
    if not fresh:
        # Race condition: the latest outcome per template and channel decides. A pre-care sent for
        # 11:00, then for 10:00, must go again when the visit moves back to 11:00. What the patient last heard
        # decides too: sent for 10:00, then skipped for 08:00 (quiet hours) or failed before the provider had it,
        # and moved back to 10:00, it is not sent again (they have the 10:00 one); a skip or failure for the start
        # as it stands is not planned again either.
        latest: dict = {}
        heard: dict = {}
        for template_id, channel, anchor_at, went in (
            OutboxMessage.objects.filter(
                appointment=appointment,
                template__in=templates,
                status__in=[OutboxStatus.SENDING, OutboxStatus.SENT, OutboxStatus.FAILED, OutboxStatus.SKIPPED],
            )
            .annotate(went=ExpressionWrapper(HANDED_OVER_OR_GOING, output_field=BooleanField()))
            .order_by("created_at", "sent_at", "id")
            .values_list("template_id", "channel", "anchor_at", "went")
        ):
            latest[(template_id, channel)] = anchor_at
            if went:
                heard[(template_id, channel)] = anchor_at
        handled = {key for key, anchor_at in (*latest.items(), *heard.items()) if anchor_at == appointment.start_at}
    anchor = appointment.start_at
    for template in templates:
        for channel in _channels(template, appointment):
            row = unsent.pop((template.pk, channel), None)
            if (template.pk, channel) in handled:
                if row:
                    _finish([row], OutboxStatus.CANCELLED, "already sent for this appointment time")
                continue
            if row is not None and row.in_doubt and _may_have_named(row) == anchor:
                _keep_in_doubt(row, appointment, now, channel)
                continue
            plan = _plan(template, channel, appointment, now, anchor)
            if moved:
                plan = _after_grace(plan, now, appointment, channel)
            if row is None:
                if plan.due_at is not None or "quiet hours" in plan.reason:  # quiet-hours skips stay visible
                    work.add(template, channel, plan, anchor)
            elif plan.due_at is None:
                _finish([row], OutboxStatus.CANCELLED, f"not sent after the move: {plan.reason}")
            else:
                OutboxMessage.objects.filter(pk=row.pk).update(
                    anchor_at=anchor,
                    due_at=plan.due_at,
                    status=_new_status(appointment),
                    last_error="",
                    **_doubt_kept(row, anchor),
                )
    # Consent withdrawn since the row was planned: the send step would skip it; say so now.
    _finish(unsent.values(), OutboxStatus.CANCELLED, "the patient no longer accepts this channel")


# On a row in doubt that was moved to another start: the start its stopped sender may have put in the provider's
# hands (reminders.dispatch._settle_doubt reads it).
MAY_HAVE_NAMED = "may_have_named"


def _may_have_named(row: OutboxMessage) -> datetime:
    named = (row.payload or {}).get(MAY_HAVE_NAMED)
    return datetime.fromisoformat(named) if named else row.anchor_at


def _keep_in_doubt(row: OutboxMessage, appointment: Appointment, now: datetime, channel: str) -> None:
    """A row in doubt whose attempt named the start as it stands (never moved, or moved back): left to be settled
    (the provider asked; sent if it never had it), not planned anew, which would drop it unasked once its moment
    has passed (a move there and back within the grace: a patient the provider never told heard nothing). Moved
    back, it is asked after the grace, as what a move sends at once is."""
    update: dict = {"status": _new_status(appointment), "last_error": row.last_error}
    if row.anchor_at != appointment.start_at:
        payload = {k: v for k, v in (row.payload or {}).items() if k != MAY_HAVE_NAMED}
        asked = _after_grace(Plan(due_at=now), now, appointment, channel).due_at
        update |= {"anchor_at": appointment.start_at, "payload": payload, "due_at": asked, "last_error": ""}
    OutboxMessage.objects.filter(pk=row.pk).update(**update)


def _doubt_kept(row: OutboxMessage, anchor: datetime) -> dict:
    """The update that keeps, on a row in doubt moved to `anchor`, the start its last sender may have named: the first
    such, if moved again (rendered when it went, that message named the start it was anchored on then). Found sent
    later, it is recorded as naming that start, and the new start's message is planned anew
    (`outbox_plan_in_place_of`); not found, the row goes for the new start."""
    if not row.in_doubt or row.anchor_at == anchor or MAY_HAVE_NAMED in (row.payload or {}):
        return {}
    return {"payload": {**(row.payload or {}), MAY_HAVE_NAMED: row.anchor_at.isoformat()}}


def outbox_plan_in_place_of(message: OutboxMessage, *, now: datetime) -> OutboxMessage | None:
    """A reminder or pre-care note found sent for an earlier start (`message`, just recorded so; the visit moved while
    it was in doubt): plan its template and channel again for the appointment's start, due now. None when a newer
    copy stands already (a move while this one was being settled planned it) or the appointment is not coming."""
    appointment = message.appointment
    if appointment.status not in ACTIVE_APPOINTMENT_STATUSES or message.anchor_at == appointment.start_at:
        return None
    row = OutboxMessage(
        appointment=appointment,
        kind=message.kind,
        channel=message.channel,
        template=message.template,
        anchor_at=appointment.start_at,
        due_at=now,
        status=_new_status(appointment),
        payload={"in_place_of": str(message.pk)},
        created_at=now,
    )
    try:
        with transaction.atomic():
            row.save(force_insert=True)
    except IntegrityError:  # outbox_one_unsent_per_template_channel: the newer copy names the start as it stands
        return None
    return row


def outbox_contact_changed(*, patient_id, now: datetime, change=None) -> None:
    """How the patient is reached changed (a channel switched on, an address added, care or reminders unmuted):
    plan the reminders and pre-care of their coming appointments that they may now get and that no row stands
    for yet, and the aftercare still to come of visits already done (`_aftercare_still_to_come`). What they no
    longer accept needs nothing here: the send step checks consent, and skips it.

    Rows already planned are left as they are (re-planning one that is due now would drop it as late), and none
    is planned again where one for this start was sent, skipped or is waiting, or staff cancelled it; one the
    service cancelled (consent withdrawn, say) is planned anew. Called in the transaction that made the change, the patient's row locked."""
    coming = list(
        Appointment.objects.filter(patient_id=patient_id, status__in=ACTIVE_APPOINTMENT_STATUSES, start_at__gt=now)
        .select_related("patient__clinic", "clinic")
        .order_by("start_at")
    )
    if coming:
        planned = set(  # one read for all of them, however many are booked
            OutboxMessage.objects.filter(
                appointment__in=coming, kind__in=(MessageKind.REMINDER, MessageKind.PRE_CARE), template__isnull=False
            )
            .exclude(_cancelled_by_the_service())
            .values_list("appointment_id", "template_id", "channel", "anchor_at")
        )
        new_rows: list[OutboxMessage] = []
        with versioned.snapshot():  # the templates' version read once for all of them
            for appointment in coming:
                work = _Change(appointment, now)
                for template in work.templates(MessageKind.REMINDER, MessageKind.PRE_CARE):
                    for channel in _channels(template, appointment):
                        if (appointment.pk, template.pk, channel, appointment.start_at) in planned:
                            continue
                        plan = _plan(template, channel, appointment, now, appointment.start_at)
                        if plan.due_at is not None:
                            work.add(template, channel, plan, appointment.start_at)
                new_rows += work.new_rows
        insert_rows(new_rows)  # one INSERT for all of them
    _aftercare_still_to_come(patient_id, now)


# --- Re-timed: a clinic's time zone or a template's moment changed under rows still to go --------------------------


RETIMING_FIELDS = frozenset({"kind", "anchor", "offset_value", "offset_unit"})


def outbox_template_retimed(*, template: ReminderTemplate, now: datetime) -> None:
    """A template's kind, anchor or offset changed (its admin, after the save, in the same transaction): its rows
    still to go are planned again from the template as it stands (`_retime`), so that its words never go at the moment
    the old template named (aftercare re-timed from +48 h to +72 h and reworded "72 hours have passed" must not go at
    48 h). A row now of another kind is carried over where both kinds warn ahead of the start (a reminder made a
    pre-care note), else cancelled: aftercare words are not for a moment before the visit; what the new kind sends is
    planned where that kind is (at the next completion). Only this template's rows move."""
    visits = OutboxMessage.objects.filter(template=template, status__in=UNSENT_STATUSES, in_doubt=False)
    _retime(
        visits.values_list("appointment_id", flat=True),
        now,
        template=template,
        because=f"after {template.name!r} was re-timed",
    )


def outbox_clinic_settings_saved(*, clinic, changed: frozenset[str], now: datetime) -> None:
    """A clinic's time zone changed (clinic.setting_checks, after the admin's save): the messages still to go of its
    visits are planned again in the zone as it stands. Planned in the old one, a pre-care note the new zone puts in
    the night would be held until morning, after its moment, where planning moves it to the evening before; a
    "2 days after" falls on another local day. The visits keep their instants (the admin says which now read at
    another local time). About five statements a visit with messages still to go, in the admin's request: a zone
    is corrected when a clinic is set up, not under thousands of bookings (docs/reminders.md)."""
    if "timezone" not in changed:
        return
    visits = OutboxMessage.objects.filter(
        appointment__clinic_id=clinic.pk, status__in=UNSENT_STATUSES, in_doubt=False, kind__in=_RETIMED_KINDS
    )
    _retime(
        visits.values_list("appointment_id", flat=True),
        now,
        template=None,
        because="after the clinic's time zone was changed",
    )


_WARN_AHEAD = (MessageKind.REMINDER, MessageKind.PRE_CARE)
_RETIMED_KINDS = (*_WARN_AHEAD, MessageKind.POST_CARE)


def _retime(appointment_ids, now: datetime, *, template: ReminderTemplate | None, because: str) -> None:
    """Plan again, from their templates as they stand, the unsent rows (reminders, pre-care, aftercare; of `template`
    only, when given) of these visits whose moment has not come: one visit at a time, its patient locked first, as
    every booking change locks them, and the visit read again under that lock (a move that committed meanwhile is
    seen). A row due already or tried (waiting for a retry, a dispatcher behind) only moves to a new moment still
    ahead, never dropped; one in doubt, or of a visit over or no longer active, is left; no row is added. A new
    moment passed goes at once where late sending is allowed (never before a move's grace ends, nor later than the
    row was due), else the row is cancelled with the reason. Confirmations, notices and recalls are about the booking,
    not a moment of a template's: never touched."""
    for appointment_id in sorted(set(appointment_ids), key=str):
        if not _lock_patient_of(appointment_id):
            continue  # gone
        appointment = Appointment.objects.select_related("patient__clinic", "clinic").get(pk=appointment_id)
        rows = (
            OutboxMessage.objects.select_for_update(of=("self",))
            .filter(appointment=appointment, status__in=UNSENT_STATUSES, in_doubt=False, kind__in=_RETIMED_KINDS)
            .select_related("template")
            .order_by("id")
        )
        for row in rows.filter(template=template) if template else rows.exclude(template=None):
            _retime_row(row, appointment, now, because)


def _lock_patient_of(appointment_id) -> bool:
    """Lock the patient a visit belongs to, as every booking change locks them first; False when the visit is gone.

    # Race condition: a merge that commits while the lock is awaited moves the visit to the survivor and leaves a
    tombstone behind the lock; the visit is then read again and its new patient locked (a few times at most: one
    merge after another), rather than skipped, which would leave it unplanned for good."""
    for _ in range(3):
        patient_id = Appointment.objects.filter(pk=appointment_id).values_list("patient_id", flat=True).first()
        if patient_id is None:
            return False
        try:
            lock_live_patient(patient_id)
        except Patient.DoesNotExist:
            return False
        except InvalidInput:  # merged away while we waited: the visit is the survivor's now
            continue
        if Appointment.objects.filter(pk=appointment_id, patient_id=patient_id).exists():
            return True  # still theirs, now that the lock is held
    return False


def _retime_row(row: OutboxMessage, appointment: Appointment, now: datetime, because: str) -> None:
    current = row.template
    kind = row.kind
    if kind != current.kind:
        if kind in _WARN_AHEAD and current.kind in _WARN_AHEAD:
            kind = current.kind  # still a word ahead of the start: carried over, planned below as the new kind
        else:
            _finish(
                [row],
                OutboxStatus.CANCELLED,
                f"its template was made a {current.get_kind_display().lower()} message since",
            )
            return
    if not current.is_active:
        return
    if kind in _WARN_AHEAD and (
        appointment.status not in ACTIVE_APPOINTMENT_STATUSES or row.anchor_at != appointment.start_at
    ):
        return
    plan = _plan(current, row.channel, appointment, now, row.anchor_at)
    if row.due_at <= now or row.attempts > 0:  # due already, or tried and waiting for a retry: its moment came as
        # planned (a dispatcher behind, a provider's 503), so only a new moment still ahead moves it; never dropped
        _retimed(row, plan.due_at if plan.due_at is not None and plan.due_at > now else row.due_at, kind)
        return
    if plan.due_at is None:
        _finish([row], OutboxStatus.CANCELLED, f"not sent {because}: {plan.reason}")
        return
    due = plan.due_at
    if due <= now:  # its new moment has passed: at once, but not before a move's grace, nor later than it was due
        due = min(row.due_at, _after_grace(plan, now, appointment, row.channel).due_at)
    _retimed(row, due, kind)


def _retimed(row: OutboxMessage, due: datetime, kind: str) -> None:
    """Write a row's new moment and kind, if either changed, unless it has been claimed or finished meanwhile."""
    if (due, kind) != (row.due_at, row.kind):
        OutboxMessage.objects.filter(pk=row.pk, status__in=UNSENT_STATUSES).update(due_at=due, kind=kind)


# --- A care text planned for the visits booked before it ----------------------------------------------------------

# The kinds a visit booked (or done) before the template can still need: what goes before the visit, and aftercare
# whose moment is ahead. Confirmations and notices are about a change made; they are not sent for one made before.
ROLLOUT_KINDS = (MessageKind.REMINDER, MessageKind.PRE_CARE, MessageKind.POST_CARE)
ROLLOUT_CHUNK = 200


def template_rollout_wanted(before: ReminderTemplate | None, after: ReminderTemplate) -> bool:
    """Whether saving `after` (over `before` as it was; None when it is new) may leave visits booked before it without
    a row of it: it is on now and was off, or new, or reaches other visits or moments (procedure, kind, anchor,
    offset), a channel it had no text for, or visits whose moment has passed (late sending switched on)."""
    if not after.is_active or after.kind not in ROLLOUT_KINDS:
        return False
    if before is None or not before.is_active:
        return True
    reach = ("procedure_id", *sorted(RETIMING_FIELDS))
    if any(getattr(before, name) != getattr(after, name) for name in reach):
        return True
    return any(getattr(after, name) and not getattr(before, name) for name in ("has_email", "has_sms", "send_if_late"))


def template_rollout_start(*, template: ReminderTemplate, before: ReminderTemplate | None, now: datetime):
    """A run planning `template` for the visits booked before it (`template_rollout_wanted`), or None. Called in the
    save's transaction; the caller hands the run over once that commits (reminders.tasks.start_rollout)."""
    if not template_rollout_wanted(before, template):
        return None
    cause = f"{template.name!r} {'added' if before is None else 'saved'}"
    return TemplateRollout.objects.create(template=template, cause=cause[:300], created_at=now)


def _rollout_visits(template: ReminderTemplate, now: datetime):
    """The visits a template may still be owed for: booked and still to come (before-the-visit kinds), or done
    within `AFTERCARE_REACH` (aftercare), of its procedure (any, when it names none)."""
    if template.kind == MessageKind.POST_CARE:
        visits = Appointment.objects.filter(status=AppointmentStatus.COMPLETED, completed_at__gt=now - AFTERCARE_REACH)
    else:
        visits = Appointment.objects.filter(start_at__gt=now, status__in=ACTIVE_APPOINTMENT_STATUSES)
    if template.procedure_id is not None:
        visits = visits.filter(procedure_id=template.procedure_id)
    return visits


def template_rollout_step(*, run_id, now: datetime, chunk: int = ROLLOUT_CHUNK) -> bool:
    """Plan the run's template for its next chunk of visits; True when the run is finished (or not ours to do).

    The first step waits for the transactions in progress when it starts: a booking that read the templates before
    this one was saved may still be committing, and would be missed (scheduler.recheck.wait_for_older_transactions).
    A chunk is one transaction, each visit in a savepoint: one whose planning fails is recorded on the run
    (`failures`) and left as it was, and the rest go on; a lock that could not be had (a deadlock, a timeout) fails
    the chunk, which the resume does again."""
    if TemplateRollout.objects.filter(pk=run_id, progressed_at__isnull=True, finished_at__isnull=True).exists():
        wait_for_older_transactions()
    with transaction.atomic():
        # Race condition: one step at a time per run; another worker holding it skips.
        runs = TemplateRollout.objects.select_related("template")
        if connection.features.has_select_for_update_skip_locked:
            runs = runs.select_for_update(skip_locked=True, of=("self",))
        run = runs.filter(pk=run_id).first()
        if run is None or run.finished_at is not None:
            return True
        template = run.template
        visits = _rollout_visits(template, now).order_by("pk")
        if run.cursor is not None:
            visits = visits.filter(pk__gt=run.cursor)
        # A text switched off, or made a kind no run plans, since the run began: the rest is not planned.
        wanted = template.is_active and template.kind in ROLLOUT_KINDS
        batch = list(visits.values_list("pk", "patient_id")[:chunk]) if wanted else []
        # Race condition: the chunk holds every patient lock it takes until it commits. Taken in patient order, as a
        # rule change's re-check and a merge take theirs, so that none of them waits on the other in a circle.
        for appointment_id, _ in sorted(batch, key=lambda visit: str(visit[1])):
            try:
                with transaction.atomic():  # a savepoint: this visit's rows, or none
                    run.messages_planned += _rollout_visit(appointment_id, template, now)
            except OperationalError as exc:
                if _lock_lost(exc):  # a deadlock, a lock that could not be had: the whole chunk again, later
                    raise
                _record_failure(run, appointment_id, exc, now)
            except Exception as exc:  # one visit that cannot be planned must not stop the others'
                _record_failure(run, appointment_id, exc, now)
        run.visits_done += len(batch)
        run.cursor = batch[-1][0] if batch else run.cursor
        run.progressed_at = now
        if len(batch) < chunk:
            run.finished_at = now
        run.save()
        return run.finished_at is not None


# A deadlock, a lock not available, a serialisation failure (PostgreSQL's SQLSTATEs); SQLite's busy database.
_LOCK_LOST = frozenset({"40P01", "55P03", "40001"})


def _lock_lost(exc: OperationalError) -> bool:
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) in _LOCK_LOST or "database is locked" in str(exc)


def _record_failure(run: TemplateRollout, appointment_id, exc: Exception, now: datetime) -> None:
    """One visit that cannot be planned is recorded on the run and left as it was; the others go on."""
    log.exception("care text %s: visit %s could not be planned; left as it was", run.pk, appointment_id)
    error = f"{exc.__class__.__name__}: {exc}"[:300]
    run.failures = [*run.failures, {"appointment": str(appointment_id), "error": error, "at": now.isoformat()}]


def _rollout_visit(appointment_id, template: ReminderTemplate, now: datetime) -> int:
    """Plan `template` for one visit, its patient locked as every booking change locks it and the visit read again
    under that lock: the rows of channels it has none of for the visit as it stands (`_rows_it_has`: one sent is not
    sent again, one staff cancelled stays cancelled), as a booking would plan them now (quiet hours, a moment passed
    sent at once only where late sending is allowed, held while the visit needs review). The number planned."""
    if not _lock_patient_of(appointment_id):
        return 0  # gone
    appointment = Appointment.objects.select_related("patient__clinic", "clinic").get(pk=appointment_id)
    work = _Change(appointment, now, only=template)
    if template.kind == MessageKind.POST_CARE:
        if appointment.status != AppointmentStatus.COMPLETED or appointment.completed_at is None:
            return 0
        planned = set(
            _rows_it_has(appointment, template, kind=MessageKind.POST_CARE).values_list(
                "appointment_id", "template_id", "channel"
            )
        )
        work.new_rows = _aftercare_ahead(appointment, now, planned, only=template)
    elif appointment.status in ACTIVE_APPOINTMENT_STATUSES and appointment.start_at > now:
        anchor = appointment.start_at
        had = set(_rows_it_has(appointment, template, anchor_at=anchor).values_list("channel", flat=True))
        for channel in _channels(template, appointment):
            if channel in had:
                continue
            plan = _plan(template, channel, appointment, now, anchor)
            if plan.due_at is not None or "quiet hours" in plan.reason:  # quiet-hours skips stay visible
                work.add(template, channel, plan, anchor)
    work.save()
    return len(work.new_rows)


def _rows_it_has(appointment: Appointment, template: ReminderTemplate, **filters):
    """The visit's rows of the template that a run leaves alone: any it has, but those the service itself cancelled
    (a kind changed and changed back, a channel off then on): a row staff cancelled stays cancelled."""
    return OutboxMessage.objects.filter(appointment=appointment, template=template, **filters).exclude(
        _cancelled_by_the_service()
    )


def template_rollouts_stalled(*, now: datetime) -> list:
    """Unfinished runs that have not moved for a while (or never started)."""
    return list(
        TemplateRollout.objects.filter(finished_at__isnull=True)
        .filter(
            Q(progressed_at__lt=now - STALLED_AFTER) | Q(progressed_at__isnull=True, created_at__lt=now - STALLED_AFTER)
        )
        .values_list("id", flat=True)
    )


# How far back a contact change looks for visits whose aftercare may still be to come: longer than any post-care
# offset a clinic would set (the shipped ones reach a week); a template further out is not planned on a change.
AFTERCARE_REACH = timedelta(days=90)


def _aftercare_still_to_come(patient_id, now: datetime) -> None:
    """After a channel is switched on (a START the morning after the visit was marked done, say): the post-care
    messages of visits done in the last `AFTERCARE_REACH` whose moment is still ahead and that no row stands for on
    that channel (texts were off when the visit was done, so none was planned). One whose moment has passed is not
    sent late: the patient had turned the channel off then. Rows planned at completion are left as they are."""
    done = list(
        Appointment.objects.filter(
            patient_id=patient_id, status=AppointmentStatus.COMPLETED, completed_at__gt=now - AFTERCARE_REACH
        ).select_related("patient__clinic", "clinic")
    )
    if not done:
        return
    planned = set(  # one read for all of them, whatever the patient's history
        OutboxMessage.objects.filter(appointment__in=done, kind=MessageKind.POST_CARE)
        .exclude(_cancelled_by_the_service())
        .values_list("appointment_id", "template_id", "channel")
    )
    new_rows: list[OutboxMessage] = []
    with versioned.snapshot():  # the templates' version read once for all of them
        for appointment in done:
            new_rows += _aftercare_ahead(appointment, now, planned)
    insert_rows(new_rows)  # one INSERT for all of them


def _aftercare_ahead(
    appointment: Appointment, now: datetime, planned: set, only: ReminderTemplate | None = None
) -> list[OutboxMessage]:
    """The post-care rows of one visit done whose moment is still ahead and that `planned` (appointment, template,
    channel) has none for (of template `only`, when given)."""
    work = _Change(appointment, now, only)
    anchor = appointment.completed_at
    for template in work.templates(MessageKind.POST_CARE):
        moment = apply_offset(anchor, template.offset_value, template.offset_unit, appointment.clinic.tz)
        if moment <= now:
            continue
        for channel in _channels(template, appointment):
            if (appointment.pk, template.pk, channel) not in planned:
                work.add(template, channel, _plan(template, channel, appointment, now, anchor), anchor)
    return work.new_rows


# --- Event-anchored messages: confirmation and change notices -------------------------------------------------------


def _event_messages(work: _Change, kind: str) -> None:
    for template in work.templates(kind):
        for channel in _channels(template, work.appointment):
            work.add(template, channel, _plan(template, channel, work.appointment, work.now, work.now), work.now)


# The confirmation and the change notices: the messages about the booking itself, which a change re-plans. What the
# patient has heard of the booking is any message that named its time (TIME_NAMING_KINDS: a reminder or a pre-care
# note too, the first word of a patient who turned a channel on after booking).
BOOKING_NAMING_KINDS = (MessageKind.CONFIRMATION, MessageKind.RESCHEDULED)


def _patient_was_told(appointment: Appointment, kinds=TIME_NAMING_KINDS) -> bool:
    """Whether a message of `kinds` (by default any naming the appointment's time) has gone, is going, or may have
    gone (in doubt: its sender stopped and the provider could not tell). What planning counts on: one that is going
    may yet be dropped, so the notice planned on it asks again when it goes (`booking_told`,
    verdicts.notice_verdict)."""
    return (
        OutboxMessage.objects.filter(appointment=appointment, kind__in=kinds)
        .filter(HANDED_OVER_OR_GOING | Q(in_doubt=True))
        .exists()
    )


def booking_told(
    appointment: Appointment,
    *,
    now: datetime,
    excluding=None,
    kinds=BOOKING_NAMING_KINDS,
    ours: tuple | None = None,
) -> tuple[bool, datetime | None]:
    """What a change notice asks when it goes: (whether the patient has been told of the booking by a message of
    `kinds`, and until when that is not known yet).

    A cancellation asks of every message naming the time (TIME_NAMING_KINDS: a reminder or pre-care note too, the
    first word of a patient who turned a channel on after booking); a move notice of the confirmation and the
    notices (BOOKING_NAMING_KINDS: a reminder that goes after the move names the new time, and one that went before
    it is read by `last_told_start`).

    Told: one was sent (reported undelivered since or not: `HANDED_OVER`), or may have been (in doubt: its sender
    stopped and the provider could not tell, or could not be asked before its attempts ran out: a patient who may
    think they have a booking hears that it is cancelled). Not known yet while a confirmation is claimed
    (`sending`: it may be in the provider's hands, or be dropped by its send) or waits, in doubt, to ask the
    provider; nor, while nothing else has told the patient, a reminder or pre-care note (the send of a claimed one
    drops it once the visit is cancelled): the second value is the moment to look again after (now, or when that
    message is due), else None. `excluding` is the notice itself (in doubt, it is not evidence of its own
    premise); `ours`, the claim of the send asking (`_not_gone_with`)."""
    told, unsettled, first_words = False, None, []
    rows = OutboxMessage.objects.filter(appointment=appointment, kind__in=kinds)
    if ours is not None:
        rows = rows.exclude(_not_gone_with(ours))
    if excluding is not None:
        rows = rows.exclude(pk=excluding)
    for kind, status, in_doubt, due_at, sent_at in rows.values_list("kind", "status", "in_doubt", "due_at", "sent_at"):
        claimed = status == OutboxStatus.SENDING or (in_doubt and status in UNSENT_STATUSES)
        if claimed and kind != MessageKind.RESCHEDULED:  # a move notice goes only to a patient told a time before
            until = now if status == OutboxStatus.SENDING else max(due_at, now)
            if kind == MessageKind.CONFIRMATION:
                unsettled = until if unsettled is None else max(unsettled, until)
            else:
                first_words.append(until)
        elif sent_at is not None or status == OutboxStatus.SENT or in_doubt:
            told = True  # handed over at least once (HANDED_OVER), or may have been
    if first_words and not told:
        unsettled = max(first_words if unsettled is None else [*first_words, unsettled])
    return told, unsettled


def _rescheduled_notice(work: _Change, previous: dict) -> None:
    """Tell the patient the new time, after a grace period in which the change may be undone.

    The notice goes from the time the patient last heard (whatever message said it) to the
    time now: moves within the grace period collapse into one notice, and moving back to the
    time they last heard cancels it. A patient who has heard no time yet needs no notice:
    the next message is rendered when it is sent and names the time as it stands.
    """
    appointment, now = work.appointment, work.now
    # Race condition: what was told is read once the unsent confirmation and notices are locked, and every
    # message naming a time that is being sent: a dispatcher's claim holding one (not committed yet) is waited
    # for (a confirmation it claimed, `sending`, counts below), and so is a send in the provider's hands (a move
    # back to the time last told, read while the notice of the other time was being sent, planned nothing, and
    # that notice was the patient's last word).
    unsent, stopped = _locked_for_notice(appointment)
    pending = [r for r in unsent if r.kind == MessageKind.RESCHEDULED]
    told = last_told_start(appointment)
    if told is None and previous.get("start_at") and _patient_was_told(appointment, BOOKING_NAMING_KINDS):
        # A confirmation sent before told_start was recorded (it named the time moved from), or claimed now (the
        # notice asks again when it goes, verdicts.notice_verdict). Not a reminder or pre-care note claimed now: the
        # patient's first word, anchored on the time moved from, its send drops it (superseded) and the new time's
        # is planned; one whose sender stopped is in doubt once its lease runs out, and counts then (_start_in_doubt).
        # A notice still waiting out its grace knows better: the move before this one took the time it names from
        # that confirmation (moved twice in the grace, the time moved from now is one the patient never heard).
        told = next(
            (datetime.fromisoformat(r.payload["from_start"]) for r in pending if (r.payload or {}).get("from_start")),
            previous["start_at"],
        )
    if told is None:  # nothing that named a time has reached the patient: the next message will say it
        _finish(pending, OutboxStatus.CANCELLED, "the patient has not been told a time yet")
        return
    other = _practitioner_told_before(appointment, previous, pending)
    if told == appointment.start_at and other is None:
        _finish(pending, OutboxStatus.CANCELLED, "the patient was last told this very time")
        _superseded_stops(stopped)
        return
    # The same time with another practitioner: only an e-mail named the one before, and only an e-mail tells it.
    channels_told = None if told != appointment.start_at else (Channel.EMAIL,)
    said = {"from_start": told.isoformat(), **({FROM_PRACTITIONER: other} if other else {})}
    grace = timedelta(minutes=settings.REMINDERS_CHANGE_GRACE_MINUTES)
    by_key = {(r.template_id, r.channel): r for r in pending}
    telling: set = set()  # the channels this move tells the time on
    for template in work.templates(MessageKind.RESCHEDULED):
        for channel in _channels(template, appointment):
            if channels_told is not None and channel not in channels_told:
                continue
            row = by_key.pop((template.pk, channel), None)
            plan = _plan(template, channel, appointment, now, now + grace)
            if plan.due_at is not None:
                telling.add(channel)
            if row is None:
                work.add(template, channel, plan, now, said)
            elif plan.due_at is not None:  # a further move restarts the grace period
                kept = {k: v for k, v in (row.payload or {}).items() if k != FROM_PRACTITIONER}
                OutboxMessage.objects.filter(pk=row.pk).update(
                    due_at=plan.due_at, anchor_at=now, payload={**kept, **said}
                )
    _superseded_stops(stopped, telling)
    if channels_told is not None:
        same_time = [r for key, r in by_key.items() if key[1] not in channels_told]
        _finish(same_time, OutboxStatus.CANCELLED, "the patient was last told this very time")
        by_key = {key: r for key, r in by_key.items() if key[1] in channels_told}
    _finish(by_key.values(), OutboxStatus.CANCELLED, "the patient no longer accepts this channel")


def _practitioner_told_before(appointment: Appointment, previous: dict, pending: list[OutboxMessage]) -> str | None:
    """The practitioner the patient heard of by e-mail, when that is not the visit's practitioner now, else None. A
    confirmation claimed now (not recorded yet), or an e-mail that went without recording it, named the practitioner
    moved from, or, moved twice within the grace, the one a notice waiting out its grace already names; the notice
    asks again when it goes (verdicts.notice_verdict)."""
    other = last_told_practitioner(appointment)
    if other in (None, NOT_RECORDED) and previous.get("practitioner"):
        if other == NOT_RECORDED or _patient_was_told(appointment, BOOKING_NAMING_KINDS):
            other = next(
                (r.payload[FROM_PRACTITIONER] for r in pending if (r.payload or {}).get(FROM_PRACTITIONER)),
                str(previous["practitioner"]),
            )
    return other if other not in (None, NOT_RECORDED) and other != str(appointment.practitioner_id) else None


def _sync_hold(work: _Change) -> None:
    """Hold every unsent patient message while the booking awaits clearance; release them after."""
    appointment = work.appointment
    rows = _locked_unsent(appointment)
    if appointment.status in HOLDING_STATUSES:
        OutboxMessage.objects.filter(pk__in=[r.pk for r in rows if r.status == OutboxStatus.PENDING]).update(
            status=OutboxStatus.HELD
        )
        return
    templates = {t.pk: t for t in work.templates(*KIND_ANCHORS)}
    # A held row whose template no longer applies to the booking (moved to another procedure, switched off while it
    # waited): nothing re-plans it, and released it would be cancelled at its send; it is cancelled now, with why.
    gone = [r for r in rows if r.status == OutboxStatus.HELD and r.template_id and r.template_id not in templates]
    _finish(gone, OutboxStatus.CANCELLED, "its template no longer applies to this booking")
    for row in rows:
        template = templates.get(row.template_id)
        if row.status != OutboxStatus.HELD or template is None or template.anchor == Anchor.START:
            continue  # start-anchored rows were re-planned by _reconcile_start_messages
        # A held confirmation or notice goes once the booking is cleared (its own moment has passed).
        plan = _plan(template, row.channel, appointment, work.now, work.now)
        OutboxMessage.objects.filter(pk=row.pk).update(status=OutboxStatus.PENDING, due_at=plan.due_at or work.now)


# A move notice an operator stopped: the desk is asked to phone the patient (reminders.selectors), until another move
# tells the visit's time anew or takes it back to the time the patient was told.
_STOPPED_MOVE_NOTICE = Q(
    status=OutboxStatus.CANCELLED, kind=MessageKind.RESCHEDULED, last_error__startswith=OPERATOR_CANCELLED
)
STOPPED_THEN_MOVED = "stopped by an operator; the visit moved again since, which told the patient its time"


def _locked_for_notice(appointment: Appointment) -> tuple[list[OutboxMessage], list[OutboxMessage]]:
    """Lock the unsent confirmation and notices of `appointment`, and wait for every message naming a time that is
    being sent; return the unsent ones, and the move notices an operator stopped (read in the same statement), which
    the move marks superseded where it tells the time anew (`_superseded_stops`)."""
    locked = list(
        OutboxMessage.objects.select_for_update()
        .filter(
            Q(status__in=UNSENT_STATUSES, kind__in=BOOKING_NAMING_KINDS)
            | Q(status=OutboxStatus.SENDING, kind__in=TIME_NAMING_KINDS)
            | _STOPPED_MOVE_NOTICE,
            appointment=appointment,
        )
        .exclude(channel=Channel.WEBHOOK)
    )
    return [r for r in locked if r.status in UNSENT_STATUSES], [r for r in locked if r.status == OutboxStatus.CANCELLED]


def _superseded_stops(stopped: list[OutboxMessage], channels=None) -> None:
    """The stopped move notices of these channels (all, by default) no longer leave the patient unaware: this move
    plans a notice of its own on that channel, or takes the visit back to the time the patient was told."""
    ids = [r.pk for r in stopped if channels is None or r.channel in channels]
    if ids:
        OutboxMessage.objects.filter(pk__in=ids).update(last_error=STOPPED_THEN_MOVED)


def _cancel_unsent(appointment: Appointment, reason: str) -> None:
    _finish(_locked_unsent(appointment), OutboxStatus.CANCELLED, reason)


# --- Completion-anchored messages: post-care ----------------------------------------------------------------------


def _completion_messages(work: _Change) -> None:
    appointment = work.appointment
    anchor = appointment.completed_at or work.now
    existing = set(
        OutboxMessage.objects.filter(appointment=appointment, kind=MessageKind.POST_CARE).values_list(
            "template_id", "channel"
        )
    )
    for template in work.templates(MessageKind.POST_CARE):
        for channel in _channels(template, appointment):
            if (template.pk, channel) in existing:
                continue  # idempotent: completion happens once, but a replayed call must not double up
            work.add(template, channel, _plan(template, channel, appointment, work.now, anchor), anchor)


# --- Webhooks ---------------------------------------------------------------------------------------------------------------


def appointment_event_data(appointment: Appointment, sequence: int) -> dict:
    """The appointment as the public API shows it (times in the clinic's offset), its `sequence` included."""
    tz = appointment.clinic.tz
    return {
        "id": str(appointment.pk),
        "patient": str(appointment.patient_id),
        "procedure": appointment.procedure_id,
        "practitioner": str(appointment.practitioner_id),
        "clinic": str(appointment.clinic_id),
        "start": appointment.start_at.astimezone(tz).isoformat(),
        "end": appointment.end_at.astimezone(tz).isoformat(),
        "area": appointment.area_id,
        "status": appointment.status,
        "review_reasons": review_reasons_in_zone(appointment),
        "sequence": sequence,
    }


@dataclasses.dataclass(frozen=True)
class _Subscription:
    endpoint: WebhookEndpoint
    clinic_ids: frozenset
    organisation_ids: frozenset


def _subscriptions() -> list[_Subscription]:
    """Every active endpoint of an unrevoked client, with the clinics and organisations its client was granted.

    Kept per process under the configuration version (scheduler/versioned.py): the triggers of reminders 0009
    raise it on any write to the endpoints, the grants or a client's revocation, so a booking never notifies
    a paused endpoint nor misses a new one. Three reads when it changes, none per booking otherwise.
    """

    def load() -> list[_Subscription]:
        endpoints = list(
            WebhookEndpoint.objects.filter(is_active=True, client__revoked_at__isnull=True).order_by("created_at", "id")
        )
        clients = {e.client_id for e in endpoints}
        clinics, organisations = defaultdict(set), defaultdict(set)
        for client_id, clinic_id in ApiClient.clinics.through.objects.filter(apiclient_id__in=clients).values_list(
            "apiclient_id", "clinic_id"
        ):
            clinics[client_id].add(clinic_id)
        for client_id, organisation_id in ApiClient.organisations.through.objects.filter(
            apiclient_id__in=clients
        ).values_list("apiclient_id", "organisation_id"):
            organisations[client_id].add(organisation_id)
        return [
            _Subscription(e, frozenset(clinics[e.client_id]), frozenset(organisations[e.client_id])) for e in endpoints
        ]

    return versioned.cached("webhook-subscriptions", load)


def webhook_endpoint_reaches(endpoint_id, clinic_id, organisation_id) -> bool:
    """Whether the endpoint's client is still granted the clinic (or its organisation), and the endpoint still
    active: a delivery queued before a grant was taken away must not go (verdicts.still_wanted)."""
    return any(
        s.endpoint.pk == endpoint_id and (clinic_id in s.clinic_ids or organisation_id in s.organisation_ids)
        for s in _subscriptions()
    )


def _endpoints_reaching(clinic_id, organisation_id) -> list[WebhookEndpoint]:
    """The endpoints of platforms granted the clinic, or its whole organisation."""
    return [s.endpoint for s in _subscriptions() if clinic_id in s.clinic_ids or organisation_id in s.organisation_ids]


def _webhooks(work: _Change, event: str, previous: dict | None) -> None:
    appointment, now = work.appointment, work.now
    endpoints = _endpoints_reaching(appointment.clinic_id, appointment.clinic.organisation_id)
    tz = appointment.clinic.tz
    # One id per event, the same for every endpoint and every redelivery (a delivery's own id is `id`); and
    # the appointment's change count (the lifecycle audits each change before notifying), so a platform can
    # tell which of two events about one appointment is the later, whatever order they arrive in.
    wanted = [endpoint for endpoint in endpoints if endpoint.wants(event)]
    if not wanted:
        return  # nobody listens: a booking pays no query for the change count
    event_id = str(uuid.uuid4())
    sequence = appointment_sequence(appointment.pk)
    # Counted under the change's locks: the change's own answer shows this count, not one read after the commit,
    # which a change committed meanwhile could have raised past the state the answer shows (api AppointmentOut).
    appointment.change_sequence = sequence
    data = {"appointment": appointment_event_data(appointment, sequence)}
    if previous and "patient" in previous:
        data["previous"] = {"patient": str(previous["patient"])}  # a merge: the record it belonged to
    elif previous:
        data["previous"] = {
            "start": previous["start_at"].astimezone(tz).isoformat() if previous.get("start_at") else None,
            "practitioner": str(previous["practitioner"]) if previous.get("practitioner") else None,
            "status": previous.get("status"),
        }
    for endpoint in wanted:
        delivery_id = uuid.uuid4()
        # The body is frozen now: a platform gets the appointment as it was when the event happened.
        work.new_rows.append(
            OutboxMessage(
                id=delivery_id,
                appointment=appointment,
                kind=MessageKind.WEBHOOK,
                channel=Channel.WEBHOOK,
                endpoint=endpoint,
                event=event,
                anchor_at=now,
                due_at=now,
                status=OutboxStatus.PENDING,
                payload={
                    "id": str(delivery_id),
                    "event_id": event_id,
                    "sequence": sequence,
                    "type": event,
                    "occurred_at": now.astimezone(tz).isoformat(),
                    "data": data,
                },
                created_at=now,
            )
        )


def webhook_endpoint_create(
    *, client, url: str, events: list[str] | None = None, description: str = ""
) -> WebhookEndpoint:
    """Register `url` for `client` (an api.ApiClient); the secret to verify signatures is on the result."""
    endpoint = WebhookEndpoint(client=client, url=url, events=events or [], description=description)
    try:
        endpoint.full_clean(exclude=["secret"])
    except ValidationError as exc:  # the caller gets one clear domain error, naming the field
        field, problems = next(iter(exc.message_dict.items()))
        raise InvalidInput(ErrorCode.INVALID_WEBHOOK_ENDPOINT, " ".join(problems), field=field)
    endpoint.save()
    return endpoint


# --- Operator actions (admin) ---------------------------------------------------------------------------------------------


def outbox_retry(
    *, message_ids: Iterable, now: datetime, due_at: datetime | None = None, actor: Actor | None = None
) -> int:
    """Give failed or skipped messages a fresh set of attempts, due now (or at `due_at`); return how many. With
    `actor` (staff asking for a patient's message to go again), each patient message retried is written in its
    appointment's audit trail at `now`, in the same transaction: who asked for which message, and what it was."""
    count = 0
    for pk in list(message_ids):
        try:
            with transaction.atomic():
                # Race condition: read under the row's lock, so the status written in the trail is the one changed.
                message = (
                    OutboxMessage.objects.select_for_update(of=("self",))
                    .select_related("template")
                    .filter(pk=pk, status__in=[OutboxStatus.FAILED, OutboxStatus.SKIPPED])
                    .first()
                )
                if message is None:
                    continue
                OutboxMessage.objects.filter(pk=pk).update(
                    status=OutboxStatus.PENDING,
                    attempts=0,
                    due_at=due_at or now,
                    claim_token=None,
                    claimed_until=None,
                    last_error="",
                    updated_at=now,  # as a save would: `update()` does not set it
                )
                if actor is not None:
                    _audit_message_by_staff(message, actor, now, AuditAction.RESEND_REQUESTED)
                count += 1
        except IntegrityError:
            pass  # a newer copy of the same message is already waiting: leave this one as it is
    return count


def _staff_message_entry(message: OutboxMessage, actor: Actor, now: datetime, action: AuditAction) -> AuditEvent | None:
    """The trail's entry for staff acting on one of the patient's messages; None for a platform's webhook delivery
    (the operator's business, not the patient's trail)."""
    if message.channel == Channel.WEBHOOK:
        return None
    name = message.template.name if message.template else message.get_kind_display()
    return AuditEvent(
        appointment_id=message.appointment_id,
        action=action,
        at=now,
        actor_user=actor.user,
        actor_label=actor.label,
        details={
            "message": str(message.pk),
            "channel": message.channel,
            "name": f"{name} by {message.get_channel_display()}",
            "was": message.status,
        },
    )


def _audit_message_by_staff(message: OutboxMessage, actor: Actor, now: datetime, action: AuditAction) -> None:
    entry = _staff_message_entry(message, actor, now, action)
    if entry is not None:
        entry.save()


def outbox_cancel(*, message_ids: Iterable, now: datetime, actor: Actor | None = None) -> int:
    """Stop unsent messages; return how many. With `actor` (an operator's Cancel), each patient message stopped is
    written in its appointment's audit trail at `now`, in the same transaction: who stopped which message."""
    ids = list(message_ids)
    with transaction.atomic():
        if actor is not None:
            # Race condition: the trail's entries hold their appointments (a key share), and a visit's own change
            # locks the appointment, then its unsent messages (scheduler.lifecycle). Locked in that order here too,
            # the visits first (in key order), or a desk cancelling the visit while an operator stops its notice
            # deadlocks.
            visits = OutboxMessage.objects.filter(pk__in=ids, status__in=UNSENT_STATUSES).values("appointment_id")
            list(Appointment.objects.select_for_update(of=("self",)).filter(pk__in=visits).order_by("pk").values("pk"))
        # Read under the rows' locks, so the trail names exactly the messages this stopped.
        stopped = list(
            OutboxMessage.objects.select_for_update(of=("self",))
            .select_related("template")
            .filter(pk__in=ids, status__in=UNSENT_STATUSES)
            .order_by("pk")
        )
        # `updated_at` as a save would set it: a row left in doubt by a dead sender and stopped now was dropped now,
        # which is what the dispatcher asks when it reckons where such a message may have gone
        # (dispatch._may_have_gone_inside_another); `update()` does not set it by itself.
        count = OutboxMessage.objects.filter(pk__in=[message.pk for message in stopped]).update(
            status=OutboxStatus.CANCELLED,
            last_error=f"{OPERATOR_CANCELLED} at {now:%Y-%m-%d %H:%M} UTC",
            updated_at=now,
        )
        if actor is not None:
            entries = (_staff_message_entry(message, actor, now, AuditAction.MESSAGE_CANCELLED) for message in stopped)
            AuditEvent.objects.bulk_create([entry for entry in entries if entry is not None])
        return count


# --- Recalls (planned by plans.recalls) -------------------------------------------------------------------------

RECALL_HOUR = time(10, 0)  # clinic-local: a recall arrives mid-morning on its day


def recall_add(*, appointment: Appointment, due_on: date, payload: dict, now: datetime) -> list[OutboxMessage]:
    """Plan "you are due for your next ..." on `due_on` (clinic-local, quiet hours kept), anchored to the
    completed `appointment`, on the channels the patient consented to; one per template and channel."""
    work = _Change(_with_patient_and_clinic(appointment), now)
    tz = appointment.clinic.tz
    anchor = datetime.combine(due_on, RECALL_HOUR, tzinfo=tz).astimezone(UTC)
    for template in work.templates(MessageKind.RECALL):
        for channel in _channels(template, appointment):
            plan = plan_due(
                anchor_at=anchor,
                offset_value=0,
                offset_unit="minutes",
                tz=tz,
                now=now,
                direction=Direction.LATER,
                is_sms=channel == Channel.SMS,
                quiet=quiet_hours(),
                send_if_late=True,
            )
            work.add(template, channel, plan, anchor, payload)
    work.save()
    return work.new_rows


def recall_cancel(*, patient_id, procedure: str | None, reason: str, after: Iterable | None = None) -> int:
    """Cancel the patient's unsent recalls for `procedure` (they booked it), or those planned after the
    treatments `after` (appointment ids); return how many."""
    unsent = OutboxMessage.objects.select_for_update().filter(
        appointment__patient_id=patient_id, kind=MessageKind.RECALL, status__in=UNSENT_STATUSES
    )
    if after is not None:
        unsent = unsent.filter(appointment_id__in=list(after))
    rows = list(unsent.order_by("pk"))
    if procedure is not None:
        rows = [row for row in rows if (row.payload or {}).get("procedure") == procedure]
    _finish(rows, OutboxStatus.CANCELLED, reason)
    return len(rows)
