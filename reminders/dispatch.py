"""Claiming due outbox rows and delivering them in batches: the part Celery (or the local loop) calls; and staff
sending a failed message again. What a send asks is decided elsewhere: whether the row should still go, and when
(`verdicts`); which rows go with it as one message (`riders`). A provider's report that a message did not arrive
is recorded by `reports`.

Claim: in one short transaction, lock due rows with SELECT ... FOR UPDATE SKIP
LOCKED, mark them `sending` under a fresh claim token with a lease, commit.
Send a batch (one Celery task): read what the sends need once for all its rows;
then for each row, lock it and re-read what may have changed, check it still
carries the claim's token and is still wanted (# Race condition), deliver,
record the outcome, commit. The lock is held across delivery, so a second
sender of the same row skips it; a sender that dies rolls back only the row in
flight (the rows before it are committed), and that row is claimed again when
its lease runs out. Messages to one patient due within minutes go as one
(`riders.companions`), and only under the claim of the task that sends them: a
task holds a patient's claimed rows (`_tasks_of`) and claims the `pending` ones
it takes along before the provider call (`riders.claim_riders`).

Guarantee (docs/reminders.md): every row is delivered at least once unless it
fails permanently or runs out of attempts (then it is marked `failed`,
visibly). A sender that dies after the provider accepted the message and before
the database committed leaves the row `sending`; the claim that takes it over
when the lease runs out marks it in doubt, and its next sender asks the provider
first (`_settle_doubt`). It is sent twice only if the provider cannot tell (SMTP, webhooks, Twilio), cannot be
asked before the row's attempts run out, or answers "no" wrongly (a look-up that lags), or if it went merged
into another message (the provider knows only the carrying message's id).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce

from core.compiled import CompiledQuery, columns, instances, save_fields
from core.db import lock_wait_exceeded
from core.plain_text import single_line, storable_text
from core.redact import masked_logger
from reminders import channels, content, riders, verdicts
from reminders.claimed import Batch, claim_rows, lock_fresh, skip_locked
from reminders.consent import sms_provider_stopped, unsubscribe_url
from reminders.models import (
    HOLDING_STATUSES,
    TIME_NAMING_KINDS,
    TOLD_PRACTITIONER,
    UNSENT_STATUSES,
    Anchor,
    Channel,
    OutboxMessage,
    OutboxStatus,
)
from reminders.services import MAY_HAVE_NAMED, outbox_plan_in_place_of, outbox_retry
from reminders.wording import RenderError
from scheduler import versioned
from scheduler.lifecycle import Actor

log = masked_logger(__name__)


class SendOutcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"  # a transient failure: back to pending, due after a backoff
    FAILED = "failed"  # permanent failure, or attempts used up
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # consent withdrawn
    HELD = "held"
    DEFERRED = "deferred"  # an SMS claimed in quiet hours (e.g. after an outage): due again when they end
    FOUND_SENT = "found_sent"  # in doubt (its sender stopped), and the provider had it: marked sent, not sent again
    STALE = "stale"  # not ours any more: sent already, or claimed again by another dispatcher
    BUSY = "busy"  # another sender holds the row right now
    MERGED = "merged"  # it went out inside another message to the same patient (see riders.companions)


@dataclass(frozen=True)
class Claim:
    message_id: uuid.UUID
    token: uuid.UUID
    # Whose message, and by what: a patient's claimed e-mails (or texts) go in one task (_tasks_of). None: a webhook.
    patient_id: uuid.UUID | None = None
    channel: str = ""


def backoff(attempts: int) -> timedelta:
    """Exponential: base, 2*base, 4*base, ... capped."""
    seconds = settings.REMINDERS_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, settings.REMINDERS_RETRY_MAX_SECONDS))


# --- Claim ---------------------------------------------------------------------------------------------------


def due_condition(now: datetime) -> Q:
    """Rows a claim takes: due and pending, or claimed by a sender whose lease ran out."""
    return Q(status=OutboxStatus.PENDING, due_at__lte=now) | Q(status=OutboxStatus.SENDING, claimed_until__lt=now)


def outbox_claim_due(*, now: datetime, limit: int | None = None, lease: timedelta | None = None) -> list[Claim]:
    """Claim up to `limit` due rows (and rows whose previous claim's lease ran out)."""
    return _claim_due(now=now, limit=limit, lease=lease)[0]


def _claim_due(*, now: datetime, limit: int | None, lease: timedelta | None = None) -> tuple[list[Claim], int]:
    """The claims, and how many rows the claim found (rows given up on are found but not claimed)."""
    limit = limit or settings.REMINDERS_BATCH_SIZE
    lease = lease or timedelta(seconds=settings.REMINDERS_CLAIM_LEASE_SECONDS)
    token = uuid.uuid4()
    due = due_condition(now)
    with transaction.atomic():
        rows = list(
            OutboxMessage.objects.select_for_update(**skip_locked())
            .filter(due)
            .order_by("due_at", "id")
            .values_list("id", "status", "attempts", "appointment__patient_id", "channel")[:limit]
        )
        if len(rows) == limit:
            rows += _rest_of_their_patients(rows, due)
        exhausted = [
            pk
            for pk, status, attempts, *_ in rows
            if status == OutboxStatus.SENDING and attempts >= settings.REMINDERS_MAX_ATTEMPTS
        ]
        if exhausted:
            # A claim that keeps expiring means the sender keeps dying on this row: stop, visibly.
            OutboxMessage.objects.filter(pk__in=exhausted).update(
                status=OutboxStatus.FAILED,
                claim_token=None,
                claimed_until=None,
                in_doubt=True,  # its last sender may have delivered it: a retry from the admin asks first
                in_doubt_since=_doubt_began(lease),
                last_error=f"gave up: the sender stopped {settings.REMINDERS_MAX_ATTEMPTS} times without finishing",
            )
            log.error("outbox: gave up on %d message(s) whose sender kept dying", len(exhausted))
        ids = [pk for pk, *_ in rows if pk not in exhausted]
        stopped = [pk for pk, status, *_ in rows if status == OutboxStatus.SENDING and pk not in exhausted]
        if stopped:
            # Their sender stopped (killed, or its task lost with the broker) without recording an outcome,
            # perhaps after the provider accepted the message: the next sender asks before sending again.
            OutboxMessage.objects.filter(pk__in=stopped).update(in_doubt=True, in_doubt_since=_doubt_began(lease))
        if ids:
            claim_rows(ids, token, now, lease)
    # Rows that can go as one message (`_tasks_of`): a patient's e-mails, or texts (never webhooks).
    group = {pk: (patient, channel) for pk, _, _, patient, channel in rows if channel != Channel.WEBHOOK}
    return [Claim(pk, token, *group.get(pk, (None, ""))) for pk in ids], len(rows)


def _rest_of_their_patients(rows: list[tuple], due: Q) -> list[tuple]:
    """A full claim stops at its limit, maybe between two rows due for one patient by one channel: the rest of
    those, so that the rows that can go as one message are claimed together (`riders.companions`)."""
    pairs = Counter((patient, channel) for _, _, _, patient, channel in rows if channel != Channel.WEBHOOK)
    if not pairs:
        return []
    # One condition a channel, each with its patients' list: an `OR` of one condition a pair cost PostgreSQL 45 ms to
    # plan for a claim of 200 (docs/benchmarks.md, twelfth part). Exactly the claim's pairs: a row of another pair
    # (her texts, when her e-mail was claimed) would take a place under the limit and be locked for nothing.
    by_channel: dict[str, set] = {}
    for patient, channel in pairs:
        by_channel.setdefault(channel, set()).add(patient)
    same = Q()
    for channel, patients in sorted(by_channel.items()):
        same |= Q(channel=channel, appointment__patient_id__in=sorted(patients))
    rest = []
    for row in (
        OutboxMessage.objects.select_for_update(**skip_locked())
        .filter(due, same)
        .exclude(pk__in=[row[0] for row in rows])
        .order_by("due_at", "id")
        .values_list("id", "status", "attempts", "appointment__patient_id", "channel")[: len(pairs) * riders.MAX_MERGED]
    ):
        pair = (row[3], row[4])
        if pairs[pair] <= riders.MAX_MERGED:  # no more than can go as one message: a task stays within its lease
            pairs[pair] += 1
            rest.append(row)
    return rest


def _doubt_began(lease: timedelta) -> Coalesce:
    """When the attempt now in doubt began: its claim (the first, if it was in doubt already). A row claimed before
    `claimed_at` was recorded: as its lease says, if the lease setting has not changed since."""
    return Coalesce(F("in_doubt_since"), F("claimed_at"), F("claimed_until") - lease)


def outbox_release(claims: list[Claim], now: datetime) -> int:
    """Hand back claims that could not be passed on (the broker was down): due again at once. One a booking change
    planned a newer copy of meanwhile (one unsent copy per template and channel) is cancelled as superseded, as a
    send putting it back would (`_save_outcome`), and the rest are still handed back."""
    released = 0
    for claim in claims:
        still_ours = OutboxMessage.objects.filter(
            pk=claim.message_id, status=OutboxStatus.SENDING, claim_token=claim.token
        )
        try:
            with transaction.atomic():
                released += still_ours.update(
                    status=OutboxStatus.PENDING, claim_token=None, claimed_until=None, attempts=F("attempts") - 1
                )
        except IntegrityError:
            still_ours.update(
                status=OutboxStatus.CANCELLED,
                claim_token=None,
                claimed_until=None,
                last_error=riders.SUPERSEDED_BY_A_NEWER_COPY,
                updated_at=now,
            )
    return released


# --- Send one -------------------------------------------------------------------------------------------------


_WITH_RELATIONS = (
    "appointment__patient",
    "appointment__clinic",
    "appointment__procedure",
    "appointment__practitioner",
    "appointment__area",
    "template",
    "endpoint__client",
)
# A batch's rows with what their sends read (select_related, compiled once per connection and batch size).
_BATCH_ROWS = CompiledQuery(
    lambda ids: (
        OutboxMessage.objects.filter(pk__in=ids).order_by().values_list(*columns(OutboxMessage, *_WITH_RELATIONS))
    )
)


def _batch_read(message_ids: list, now: datetime) -> Batch:
    rows = {m.pk: m for m in instances(_BATCH_ROWS.rows(list(message_ids)), OutboxMessage, *_WITH_RELATIONS)}
    window = timedelta(minutes=settings.REMINDERS_MERGE_MINUTES)
    candidates: dict[tuple, list[OutboxMessage]] = {}
    merging = [m for m in rows.values() if m.channel in (Channel.EMAIL, Channel.SMS)]
    if merging and window > timedelta(0):
        # Most patients have nothing else due: find who does with a light read, then read those rows whole.
        found: dict[tuple, list] = {}
        for pk, patient_id, channel in (
            OutboxMessage.objects.filter(
                appointment__patient_id__in={m.appointment.patient_id for m in merging},
                channel__in={m.channel for m in merging},
                status__in=(OutboxStatus.PENDING, OutboxStatus.SENDING),
                due_at__lte=now + window,
            )
            .order_by("due_at", "id")
            .values_list("pk", "appointment__patient_id", "channel")
        ):
            found.setdefault((patient_id, channel), []).append(pk)
        shared = {key: pks for key, pks in found.items() if len(pks) > 1}
        others = {pk for pks in shared.values() for pk in pks if pk not in rows}
        whole = OutboxMessage.objects.select_related(*_WITH_RELATIONS).in_bulk(others) if others else {}
        for key, pks in shared.items():
            candidates[key] = [rows.get(pk) or whole[pk] for pk in pks if pk in rows or pk in whole]
    due_by_visit: dict[tuple, list] = {}
    ordered = [m for m in rows.values() if m.channel != Channel.WEBHOOK and m.kind in content.READING_ORDER[1:]]
    if ordered:
        for pk, appointment_id, channel, kind in OutboxMessage.objects.filter(
            appointment_id__in={m.appointment_id for m in ordered},
            channel__in={m.channel for m in ordered},
            kind__in=content.READING_ORDER[:-1],
            due_at__lte=now,
            status__in=(OutboxStatus.PENDING, OutboxStatus.SENDING),
        ).values_list("pk", "appointment_id", "channel", "kind"):
            due_by_visit.setdefault((appointment_id, channel), []).append((pk, kind))
    return Batch(rows, candidates, due_by_visit, held=set(rows))


# How long a send waits for its own row's lock (PostgreSQL's lock_timeout, this transaction only).
ROW_LOCK_WAIT = "10s"


def _deliver(message: OutboxMessage, now: datetime, companions: list[OutboxMessage] = ()) -> tuple[str, str]:
    """Send it (with its companions, as one message); return (provider id, recipient)."""
    patient = message.appointment.patient
    if message.channel == Channel.WEBHOOK:
        body = json.dumps(message.payload, sort_keys=True, separators=(",", ":")).encode()
        secret, *extra = message.endpoint.signing_secrets(now)
        provider_id = channels.send_webhook(
            url=message.endpoint.url,
            secret=secret,
            extra_secrets=extra,
            delivery_id=str(message.pk),
            event=message.event,
            body=body,
            now=now,
        )
        return provider_id, message.endpoint.url
    group = [message, *companions]
    if message.channel == Channel.SMS:
        rendered = content.render_messages(messages=group, now=now)
        return channels.sms_backend().send(
            to=patient.phone, body=rendered.sms, outbox_id=str(message.pk)
        ), patient.phone
    link = unsubscribe_url(patient_id=patient.pk, channel=Channel.EMAIL)
    rendered = content.render_messages(messages=group, now=now, unsubscribe_url=link)
    clinic = message.appointment.clinic  # every part's: an e-mail is one clinic's (riders._merge_pool)
    provider_id = channels.send_email(
        outbox_id=str(message.pk),
        to=patient.email,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        ics=None,
        # Each part's own file, with its own METHOD: a rebooking's cancellation and new booking are two.
        calendars=[(calendar.ics, calendar.method) for calendar in rendered.calendars],
        unsubscribe_url=link,
        sender_name=clinic.display_sender,
        reply_to=clinic.reply_to_email,
    )
    return provider_id, patient.email


def outbox_send(*, message_id, claim_token, now: datetime) -> SendOutcome:
    """Deliver one claimed row. Safe to call twice: the second call finds it sent (or claimed anew) and stops."""
    return outbox_send_batch(message_ids=[message_id], claim_token=claim_token, now=now)[_as_uuid(message_id)]


@versioned.within_snapshot  # the configuration version (SMS terms, ...) is read once for the batch
def outbox_send_batch(
    *, message_ids: list, claim_token, now: datetime, clock: Callable[[], datetime] | None = None
) -> dict[uuid.UUID, SendOutcome]:
    """Deliver the rows of one claim (a Celery task's batch); each row's outcome by id.

    What the sends read is read once for the batch (`_batch_read`); then each row goes in a
    transaction of its own: lock it and re-read what may have changed, check its claim token,
    deliver, record the outcome, commit. A row is committed as soon as it is delivered, so a
    sender killed mid-batch leaves at most the row in flight in doubt (`_settle_doubt`), never the batch.
    `clock` gives each send's moment (quiet hours are judged when a text actually goes).
    """
    ids = [_as_uuid(pk) for pk in message_ids]
    batch = _batch_read(ids, now)
    outcomes: dict[uuid.UUID, SendOutcome] = {}
    for pk in sorted(ids, key=lambda pk: _order_key(batch.rows.get(pk), pk)):
        if pk in outcomes:
            continue
        if pk in batch.tainted:  # inside a message whose recording failed: left to its lease, then asked about
            outcomes[pk] = SendOutcome.BUSY
            continue
        message = batch.rows.get(pk)
        if message is None:
            outcomes[pk] = SendOutcome.STALE
            continue
        moment = clock() if clock else now
        try:
            outcomes[pk] = _send_one(message, claim_token, batch, moment)
        except Exception as exc:  # a bug, a backend's own error: that row's failed attempt, not the batch's end
            log.exception("outbox %s (%s by %s): the send raised %s", message.pk, message.kind, message.channel, exc)
            outcomes[pk] = _send_raised(message, claim_token, moment, exc)
        _record_provider_stops(batch, moment)
    return outcomes


def _record_provider_stops(batch: Batch, now: datetime) -> None:
    """Texts off for the numbers the SMS provider refused because their owner replied STOP to it, before the
    batch's next row (whose consent check then skips that patient's other texts).

    # Race condition: recorded after the send's own transaction has ended, never inside it: an opt-out locks the
    patient and then their rows being sent, as a booking does; the send holds its row's lock, so taking the
    patient's inside it would invert that order (the dispatcher's callers run outside any transaction). Should
    this fail, the next text to that number meets the provider's refusal again and records it then."""
    while batch.stopped:
        phone, why = batch.stopped.popitem()
        try:
            changed = sms_provider_stopped(phone=phone, now=now, detail=why)
        except Exception:
            log.exception("the SMS provider's STOP of a number could not be recorded")
            continue
        log.warning("the SMS provider refused a number its owner had stopped: texts off for %s patient(s)", changed)


@dataclass(frozen=True)
class SendAgain:
    """What became of staff's "send again": `refused`, why not (nothing changed), or else `when` it goes."""

    refused: str = ""
    when: str = ""


def patient_message_send_again(*, message: OutboxMessage, now: datetime, by: Actor) -> SendAgain:
    """Staff (`by`, written in the appointment's audit trail) send a patient's message again after it failed (the
    number or address corrected, a handset back on): due with fresh attempts, as the admin's retry does (a text in
    quiet hours when they end); when it goes, the sender reads the record as it is then. Refused, in the desk's
    words, with nothing changed: it has not failed; the sender would drop it (`verdicts.still_wanted`, read past a
    clearance hold: the patient turned that channel off or replied STOP, the visit moved, started or was cancelled;
    quiet hours until the visit); a message about the booking whose time has come; a newer copy of it, on its
    channel, reached the patient or is going; or a newer copy is waiting already."""
    if message.channel == Channel.WEBHOOK or message.status != OutboxStatus.FAILED:
        return SendAgain(refused="it has not failed (it was sent again already)")
    verdict = verdicts.still_wanted(message, now, hold=False)
    if verdict is not None:
        return SendAgain(refused=verdict[1])
    appointment = message.appointment
    if message.kind in verdicts.ABOUT_THE_BOOKING and now >= appointment.start_at:
        return SendAgain(refused=verdicts.TOO_LATE_FOR_THE_BOOKING)
    due = now
    if message.channel == Channel.SMS:
        quiet = verdicts.quiet_hours_verdict(message, now)
        if quiet is not None and quiet[0] == OutboxStatus.SKIPPED:
            return SendAgain(refused=quiet[2])
        due = quiet[1] if quiet is not None and quiet[1] else now
    with transaction.atomic():
        # Race condition: the newer copies are locked before they are looked at, until the retry commits, so no
        # claim takes one in between (looked at apart, a copy `pending` then and claimed before the retry went
        # as well: the patient got the reminder twice). A waiting copy makes the retry refused (one unsent copy
        # per template and channel); one being sent is waited for.
        newer = OutboxMessage.objects.select_for_update(of=("self",)).filter(
            appointment_id=message.appointment_id,
            template_id=message.template_id,
            channel=message.channel,
            created_at__gte=message.created_at,
        )
        if {OutboxStatus.SENDING, OutboxStatus.SENT} & set(
            newer.exclude(pk=message.pk).values_list("status", flat=True)
        ):
            return SendAgain(refused="a newer copy of it reached the patient, or is on its way")
        if outbox_retry(message_ids=[message.pk], now=now, due_at=due, actor=by) != 1:
            return SendAgain(refused="a newer copy of it is waiting to go already")
    log.info("outbox %s (%s by %s) sent again by %s", message.pk, message.kind, message.channel, by.label)
    if appointment.status in HOLDING_STATUSES:
        return SendAgain(when="once a clinician clears the booking")
    return SendAgain(when="in a moment (a text waits for the end of quiet hours)")


def _send_raised(message: OutboxMessage, claim_token, now: datetime, exc: Exception) -> SendOutcome:
    """Record a send that raised something unexpected as a failed attempt of its row: back to `pending` after the
    backoff (`failed` once its attempts are used up), like a transient error, so the other rows of the batch go
    on and this one neither blocks them nor waits out its lease. Nothing of the send committed (its transaction
    rolled back), but the provider may have taken the message before the error: the row is in doubt, and its
    next sender asks the provider first (`_settle_doubt`). If even this cannot be written (the database went
    away), the row is left to its lease, as for a sender that died (BUSY)."""
    error = _storable_error(f"the send raised {type(exc).__name__}: {exc}")
    try:
        with transaction.atomic():
            _send_transaction_settings()
            if not lock_fresh([message], skip_locked=False):
                return SendOutcome.STALE
            # Race condition: only the claim that was sending the row may record what became of it.
            if message.status != OutboxStatus.SENDING or str(message.claim_token) != str(claim_token):
                return SendOutcome.STALE
            message.claim_token = message.claimed_until = None
            message.in_doubt, message.in_doubt_since = True, message.in_doubt_since or now
            fields = [
                "status",
                "claim_token",
                "claimed_until",
                "last_error",
                "in_doubt",
                "in_doubt_since",
                "updated_at",
            ]
            outcome = _failed_attempt(message, fields, now, error)
            if not _save_outcome(message, fields):
                return SendOutcome.CANCELLED
    except DatabaseError:
        log.exception("outbox %s: could not record the failed attempt; it goes when its claim runs out", message.pk)
        return SendOutcome.BUSY
    return outcome


def _as_uuid(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _order_key(message: OutboxMessage | None, pk: uuid.UUID) -> tuple:
    return (message.due_at, pk) if message is not None else (datetime.max.replace(tzinfo=UTC), pk)


def _send_transaction_settings() -> None:
    """The send's transaction, on PostgreSQL (one statement):

    - # Race condition: a sender killed after the provider accepted a message and before the row's `sent` mark
      commits leaves the row claimed; it is claimed again when the lease runs out, in doubt (`_settle_doubt`).
      The mark's UPDATE and COMMIT are that window, and a COMMIT that waits for the WAL to reach the disk was
      most of it. Not waiting (`synchronous_commit = off`, this transaction only) makes it a round trip. A
      PostgreSQL crash in the next fraction of a second could then forget the mark: the row would be in doubt
      again, never lost (everything this transaction writes is about whether the row was sent).
    - A lock is waited for at most ROW_LOCK_WAIT (`lock_timeout`): the send waits for its own row (`_send_one`).
      It holds for the rest of the send too (companions are taken with SKIP LOCKED and never wait): a wait past
      it after the provider call (a row put back to `pending` meeting a rival copy's insert, a schema change's
      lock) rolls the send back as BUSY, and the row comes back in doubt when its lease runs out.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('synchronous_commit', 'off', true), set_config('lock_timeout', %s, true)",
                [ROW_LOCK_WAIT],
            )


def _send_one(message: OutboxMessage, claim_token, batch: Batch, now: datetime) -> SendOutcome:
    """# Race condition: the send waits (up to ROW_LOCK_WAIT) for its own row's lock rather than skipping it. The
    lock may be held by another sender (a task delivered twice, or one that took the row as a companion: once it
    commits, this send finds the row sent and stops), or by a claim that is scanning for due rows: PostgreSQL's
    `SELECT ... FOR UPDATE SKIP LOCKED` keeps the lock of a row it found changed and did not return until it
    commits. A send that skipped its row then left it `sending` until its lease ran out (five minutes late;
    seen in the bench). A wait that runs out is BUSY: the row goes when its lease runs out, in doubt."""
    riding = [] if message.pk in batch.sent else riders.claim_riders(message, batch, now, claim_token)
    try:
        outcome = _send_locked(message, claim_token, batch, now)
    except DatabaseError as error:
        _rolled_back(riding, message, batch, claim_token)
        if not lock_wait_exceeded(error):
            raise
        log.warning(
            "outbox %s: its row stayed locked for %s; it goes when its claim runs out", message.pk, ROW_LOCK_WAIT
        )
        return SendOutcome.BUSY
    except Exception:
        _rolled_back(riding, message, batch, claim_token)
        raise
    batch.carrying.pop(message.pk, None)
    if riding:
        riders.release_riders(riding, batch, claim_token)
    return outcome


def _rolled_back(riding: list[OutboxMessage], message: OutboxMessage, batch: Batch, claim_token) -> None:
    """The send's transaction was rolled back. The riders it did not carry are handed back. What the message
    carried (once the provider was called) may have gone: those rows stay claimed (in doubt once the lease runs
    out, asked about then), and no later send of this task takes them along or sends them (`batch.tainted`): with
    no sender dead, the patient had them twice."""
    carried = batch.carrying.pop(message.pk, None) or set()
    batch.tainted.update(carried)
    if riding:
        riders.release_riders([row for row in riding if row.pk not in carried], batch, claim_token)


def _send_locked(message: OutboxMessage, claim_token, batch: Batch, now: datetime) -> SendOutcome:
    with transaction.atomic():
        _send_transaction_settings()
        if not lock_fresh([message], skip_locked=False):
            return SendOutcome.STALE  # the row is gone (its appointment deleted)
        # Race condition: between claim and now the row may have been sent by an earlier claim's
        # task, or claimed again after its lease ran out; only the current claim may send it.
        if message.status != OutboxStatus.SENDING or str(message.claim_token) != str(claim_token):
            merged = message.status == OutboxStatus.SENT and "sent_in" in (message.payload or {})
            return SendOutcome.MERGED if merged else SendOutcome.STALE
        fields = ["status", "claim_token", "claimed_until", "last_error", "updated_at"]
        message.claim_token = None
        message.claimed_until = None
        if message.in_doubt:
            settled = _settle_doubt(message, fields, now)
            if settled is not None:
                if settled == SendOutcome.FOUND_SENT:
                    batch.sent.add(message.pk)
                return settled
        verdict = verdicts.still_wanted(message, now)
        if verdict is not None:
            message.status, message.last_error = verdict
            if message.status == OutboxStatus.HELD:  # held until a clinician clears the visit: no attempt was made
                message.attempts -= 1
                fields.append("attempts")
            _save_outcome(message, fields)
            return SendOutcome(verdict[0])
        # A change notice asks what the patient has heard by now; a text, whether it is quiet hours now.
        not_now = verdicts.notice_verdict(message, now, (claim_token, frozenset(batch.tainted)))
        if not_now is None:
            not_now = verdicts.timing_verdict(message, now, claimed_at=message.claimed_at)
        if not_now is None and message.channel == Channel.SMS:
            not_now = verdicts.quiet_hours_verdict(message, now)
        if not_now is not None:
            message.status, due_at, message.last_error = not_now
            if due_at is not None:  # waiting is not a failed attempt
                message.due_at, message.attempts = due_at, message.attempts - 1
                fields += ["due_at", "attempts"]
            if not _save_outcome(message, fields):
                return SendOutcome.CANCELLED
            return SendOutcome.DEFERRED if due_at is not None else SendOutcome(message.status)
        companions = riders.mergeable(message, riders.companions(message, batch, now, claim_token), now)
        if riders.earlier_unsent(message, batch, going_with=companions):
            # The patient reads about a visit in order: the confirmation before its pre-care.
            message.status, message.last_error = OutboxStatus.PENDING, "waiting for an earlier message to go first"
            message.due_at, message.attempts = now + verdicts.ORDER_WAIT, message.attempts - 1
            if not _save_outcome(message, [*fields, "due_at", "attempts"]):
                return SendOutcome.CANCELLED
            return SendOutcome.DEFERRED
        batch.carrying[message.pk] = {message.pk, *(c.pk for c in companions)}
        try:
            provider_id, recipient = _deliver(message, now, companions)
        except (channels.PermanentSendError, RenderError) as exc:
            message.status, message.last_error = OutboxStatus.FAILED, f"permanent failure: {exc}"
            if isinstance(exc, channels.RecipientStopped) and message.appointment.patient.phone:
                phone = message.appointment.patient.phone
                batch.stopped[phone] = f"the SMS provider refused a text to {phone}: {exc}"[:200]
            log.error("outbox %s (%s by %s) failed for good: %s", message.pk, message.kind, message.channel, exc)
            outcome = SendOutcome.FAILED
        except channels.TransientSendError as exc:
            outcome = _failed_attempt(message, fields, now, exc)
        else:
            message.status, message.last_error = OutboxStatus.SENT, ""
            message.provider_id, message.recipient, message.sent_at = provider_id[:200], recipient[:500], now
            message.in_doubt, message.in_doubt_since = False, None  # settled: it went
            fields += ["provider_id", "recipient", "sent_at", "in_doubt", "in_doubt_since"]
            message.payload = {k: v for k, v in (message.payload or {}).items() if k != MAY_HAVE_NAMED}
            message.payload.update(_told(message))
            if companions:
                message.payload["sent_with"] = [str(c.pk) for c in companions]
            fields.append("payload")
            _mark_sent_with(companions, message, now)
            batch.sent.update([message.pk, *(c.pk for c in companions)])
            outcome = SendOutcome.SENT
        if not _save_outcome(message, fields):
            return SendOutcome.CANCELLED
    return outcome


def _failed_attempt(message: OutboxMessage, fields: list[str], now: datetime, error) -> SendOutcome:
    """This attempt failed and another may work: back to `pending` after the backoff, or `failed` (visibly, with
    the last error) once its attempts are used up. Sets the row's fields; the caller saves them."""
    if message.attempts >= settings.REMINDERS_MAX_ATTEMPTS:
        message.status = OutboxStatus.FAILED
        message.last_error = f"gave up after {message.attempts} attempts; last error: {error}"
        log.error("outbox %s (%s by %s): %s", message.pk, message.kind, message.channel, message.last_error)
        return SendOutcome.FAILED
    message.status, message.last_error = OutboxStatus.PENDING, f"attempt {message.attempts}: {error}"
    message.due_at = now + backoff(message.attempts)
    fields.append("due_at")
    log.warning("outbox %s: %s; retrying at %s", message.pk, error, message.due_at.isoformat())
    return SendOutcome.RETRY


def _settle_doubt(message: OutboxMessage, fields: list[str], now: datetime) -> SendOutcome | None:
    """# Race condition: a row in doubt was claimed by a sender that stopped without recording the outcome,
    maybe after the provider accepted the message. Ask the provider (channels.accepted): if it has the
    message, record it sent and do not send it again; if it has not, send. If it cannot tell (SMTP, webhooks),
    send: at least once, and the row stays in doubt until it is sent. If asking fails, try again later, still in
    doubt; once its attempts are used up, send (a patient told twice is better than one never told). Returns
    the outcome when the row is settled without sending, None to go on and send."""
    try:
        found = channels.accepted(channel=message.channel, outbox_id=str(message.pk))
    except Exception as exc:  # any failure to ask: the provider's API down, a backend's own error
        if message.attempts < settings.REMINDERS_MAX_ATTEMPTS:
            return _ask_again_later(message, fields, now, exc)
        log.warning("outbox %s: in doubt and the provider cannot be asked (%s); sending", message.pk, exc)
        return None
    if found is channels.CANNOT_TELL:
        return None
    if not found and _may_have_gone_inside_another(message):
        # Asked by its own id, the provider knows nothing of a row that went inside another message (under that
        # one's id): as if it could not tell, it stays in doubt until it goes (a cancellation then still tells).
        log.info("outbox %s: not at the provider under its own id, and may have gone inside another", message.pk)
        return None
    began, message.in_doubt, message.in_doubt_since = message.in_doubt_since, False, None  # the provider answered
    payload = dict(message.payload or {})
    named = payload.pop(MAY_HAVE_NAMED, None)
    message.payload = payload
    fields += ["in_doubt", "in_doubt_since", "payload"]
    if not found:
        return None  # it goes now, naming the start as it stands
    message.status, message.last_error = OutboxStatus.SENT, ""
    patient = message.appointment.patient
    recipient = patient.phone if message.channel == Channel.SMS else patient.email
    # Sent when the attempt in doubt began, not now: what the patient last heard is read in sending order.
    message.provider_id, message.recipient, message.sent_at = str(found)[:200], recipient[:500], began or now
    # Race condition: the visit moved while this row was in doubt, and the row with it (reminders.services
    # _reconcile_start_messages); what the provider had names the start before (MAY_HAVE_NAMED). Recorded as that
    # start's message, and the current start's is planned anew: recorded as naming the new one, the patient, told
    # only the old, heard nothing of the new.
    moved_since = named is not None and datetime.fromisoformat(named) != message.anchor_at
    if moved_since:
        # Due (as the move re-planned it) for the new start, it went for the old one: shown due when it went.
        message.anchor_at, message.due_at = datetime.fromisoformat(named), min(message.due_at, message.sent_at)
        fields += ["anchor_at", "due_at"]
    message.payload = {**payload, **_told_when_found(message), "found_sent": True}
    save_fields(message, [*fields, "provider_id", "recipient", "sent_at"])
    log.info("outbox %s: its sender stopped after the provider accepted it (%s); marked sent", message.pk, found)
    if moved_since:
        again = outbox_plan_in_place_of(message, now=now)
        log.info("outbox %s: it named %s, the visit moved since; planned again as %s", message.pk, named, again)
    return SendOutcome.FOUND_SENT


def _may_have_gone_inside_another(message: OutboxMessage) -> bool:
    """# Race condition: a row whose sender died may have gone inside another message to the patient on the same
    channel (its companion, `riders.companions`), whose sender died with it, under that one's id: one found sent since
    this row's doubt began, or one still in doubt that the provider has (asked now) or cannot say it has not.
    Over-reckoned where it cannot be told (any such message counts): told twice beats never told."""
    if message.channel not in (Channel.EMAIL, Channel.SMS):
        return False
    others = OutboxMessage.objects.filter(
        appointment__patient_id=message.appointment.patient_id, channel=message.channel
    ).exclude(pk=message.pk)
    found_since = Q(status=OutboxStatus.SENT, payload__found_sent=True)
    if message.in_doubt_since is not None:
        found_since &= Q(updated_at__gte=message.in_doubt_since)
    if others.filter(found_since).exists():
        return True
    # Still in doubt: unsettled, or dropped (a cancelled visit) only since this row's doubt began; one dropped
    # before cannot have carried it. Newest first: rows left in doubt long ago do not crowd out the carrier.
    open_ = (*UNSENT_STATUSES, OutboxStatus.SENDING)
    unsettled = others.filter(in_doubt=True, status__in=open_)
    if message.in_doubt_since is not None:
        unsettled = others.filter(Q(status__in=open_) | Q(updated_at__gte=message.in_doubt_since), in_doubt=True)
    for pk in unsettled.order_by("-due_at", "-id").values_list("pk", flat=True)[: riders.MAX_MERGED]:
        try:
            if channels.accepted(channel=message.channel, outbox_id=str(pk)):  # CANNOT_TELL counts
                return True
        except Exception:  # asking failed: it may have
            log.warning("outbox %s: could not ask the provider about %s", message.pk, pk, exc_info=True)
            return True
    return False


def _told_when_found(message: OutboxMessage) -> dict:
    """What a message the provider had named, as far as the row can say: a message anchored on the start went
    only while the start was its anchor (`verdicts.still_wanted`), so it named `anchor_at`. What a confirmation or a
    change notice named is the start when it went, which may have moved since: not recorded, and a later
    change notice reckons from the start before that change (reminders.services)."""
    if message.channel == Channel.WEBHOOK or message.kind not in TIME_NAMING_KINDS:
        return {}
    if message.template is not None and message.template.anchor == Anchor.START and message.anchor_at:
        return {"told_start": message.anchor_at.isoformat()}
    return {}


def _ask_again_later(message: OutboxMessage, fields: list[str], now: datetime, exc: Exception) -> SendOutcome:
    message.status, message.last_error = OutboxStatus.PENDING, f"could not ask the provider: {exc}"
    message.due_at = now + backoff(message.attempts)
    log.warning("outbox %s: in doubt, %s; asking again at %s", message.pk, exc, message.due_at.isoformat())
    return SendOutcome.RETRY if _save_outcome(message, [*fields, "due_at"]) else SendOutcome.CANCELLED


def _told(message: OutboxMessage) -> dict:
    """What the patient now believes: the start a message named when it went, and for an e-mail the practitioner
    its text or calendar file named (a text names no one): reminders.services reads both."""
    if message.channel == Channel.WEBHOOK or message.kind not in TIME_NAMING_KINDS:
        return {}
    told = {"told_start": message.appointment.start_at.isoformat()}
    if message.channel == Channel.EMAIL:  # None: this one named no one (services.last_told_practitioner looks on)
        named = content.names_practitioner(message.template)
        told[TOLD_PRACTITIONER] = str(message.appointment.practitioner_id) if named else None
    return told


def _mark_sent_with(companions: list[OutboxMessage], message: OutboxMessage, now: datetime) -> None:
    """The companions went inside `message`: sent, with its provider id, in the same transaction."""
    for companion in companions:
        companion.status, companion.last_error, companion.in_doubt = OutboxStatus.SENT, "", False
        companion.in_doubt_since = None
        companion.claim_token = companion.claimed_until = None
        companion.provider_id, companion.recipient, companion.sent_at = message.provider_id, message.recipient, now
        companion.payload = {**(companion.payload or {}), **_told(companion), "sent_in": str(message.pk)}
        save_fields(
            companion,
            [
                "status",
                "last_error",
                "claim_token",
                "claimed_until",
                "provider_id",
                "recipient",
                "sent_at",
                "payload",
                "in_doubt",
                "in_doubt_since",
                "updated_at",
            ],
        )


def _storable_error(text: str) -> str:
    """An error text as the row keeps it: on one line, without the control characters (a NUL in an endpoint's
    answer made PostgreSQL refuse the whole outcome)."""
    return single_line(storable_text(text))


def _save_outcome(message: OutboxMessage, fields: list[str]) -> bool:
    """Save the row's outcome; False when putting it back to `pending` clashed with a newer copy.

    While this row was `sending`, a booking change may have planned a fresh copy of the same
    template and channel (only one unsent copy may exist). The newer copy wins: this one is
    cancelled as superseded instead of failing its sender and staying claimed.
    """
    if "last_error" in fields:  # it may quote a provider's or an endpoint's words: a NUL no database stores
        message.last_error = _storable_error(message.last_error)
    if message.status not in (OutboxStatus.PENDING, OutboxStatus.HELD):
        save_fields(message, fields)  # the unique constraint covers unsent rows only: no clash possible
        return True
    try:
        with transaction.atomic():
            save_fields(message, fields)
        return True
    except IntegrityError:
        if message.status not in (OutboxStatus.PENDING, OutboxStatus.HELD):
            raise
        message.status, message.last_error = OutboxStatus.CANCELLED, riders.SUPERSEDED_BY_A_NEWER_COPY
        message.save(update_fields=["status", "last_error", "claim_token", "claimed_until", "updated_at"])
        return False


# --- Batches --------------------------------------------------------------------------------------------------------


def _in_flight(now: datetime) -> int:
    """Rows claimed and not yet sent, their lease still running (a lapsed claim is due again, not in flight)."""
    return OutboxMessage.objects.filter(status=OutboxStatus.SENDING, claimed_until__gte=now).count()


def dispatch_due_batches(
    *,
    now: datetime,
    enqueue: Callable[[list[Claim]], None],
    per_task: int | None = None,
    rounds: int | None = None,
    budget: float | None = None,
) -> int:
    """Claim due rows and hand them to `enqueue` (the Celery send task) `per_task` at a time; return how many
    were handed on. If the broker goes away mid-way, nothing is lost: the rest is handed back.

    No claim takes more than REMINDERS_MAX_IN_FLIGHT less the rows already claimed and unsent: past that the
    workers are the limit, and more claims would only wait in the broker, where a claim must not outlive its
    lease. A claim that comes back full means more may be due: claim again at once, up to `rounds` claims
    (REMINDERS_CLAIMS_PER_RUN) within `budget` seconds (the dispatch interval), so a burst (every clinic's
    9 a.m. texts) goes as fast as the workers send it. A run that stops with rows still due says so, with how
    many are in flight: the outbox is falling behind."""
    per_task = per_task or settings.REMINDERS_SEND_BATCH_SIZE
    limit = settings.REMINDERS_BATCH_SIZE
    rounds = max(1, settings.REMINDERS_CLAIMS_PER_RUN if rounds is None else rounds)
    budget = settings.REMINDERS_DISPATCH_INTERVAL_SECONDS if budget is None else budget
    began = time.monotonic()
    handed = made = 0
    while (room := settings.REMINDERS_MAX_IN_FLIGHT - _in_flight(now)) > 0:
        made += 1
        wanted = min(limit, room)
        claims, found = _claim_due(now=now, limit=wanted)
        tasks = _tasks_of(claims, per_task)
        in_order, start = [claim for task in tasks for claim in task], 0
        for task in tasks:
            try:
                enqueue(task)
            except Exception as exc:
                released = outbox_release(in_order[start:], now)
                log.warning("outbox: could not enqueue (%s); released %d claim(s) for the next run", exc, released)
                return handed + start
            start += len(task)
        handed += len(claims)
        if found < wanted:
            return handed  # nothing more was due
        if made >= rounds or time.monotonic() - began >= budget:
            break
    if OutboxMessage.objects.filter(due_condition(now)).exists():
        log.warning(
            "outbox: behind: claimed %d due message(s) in %d claim(s) this run (%d in flight) and more are due; "
            "raise REMINDERS_BATCH_SIZE or REMINDERS_CLAIMS_PER_RUN when few are in flight, or add workers when "
            "many are (docs/reminders.md)",
            handed,
            made,
            _in_flight(now),
        )
    return handed


def _tasks_of(claims: list[Claim], per_task: int) -> list[list[Claim]]:
    """The claims in tasks of `per_task`, a patient's e-mails (and texts) in the same task: a send
    takes as companions only the rows its own task claimed (a row another task holds may be in a dead sender's
    hands, `riders.companions`), so rows that merge into one message must travel together. A task holding a patient's
    claims may run over `per_task` by the rest of that patient's; the claim's order (due first) is kept otherwise."""
    by_patient: dict = {}
    for claim in claims:
        key = (claim.patient_id, claim.channel) if claim.patient_id is not None else claim.message_id
        by_patient.setdefault(key, []).append(claim)
    tasks: list[list[Claim]] = []
    for group in by_patient.values():
        if not tasks or len(tasks[-1]) >= per_task:
            tasks.append([])
        tasks[-1].extend(group)
    return tasks


def dispatch_due(*, now: datetime, enqueue: Callable[[Claim], None]) -> int:
    """Claim due rows and hand each to `enqueue` on its own; return how many were handed on."""
    return dispatch_due_batches(now=now, enqueue=lambda batch: [enqueue(claim) for claim in batch], per_task=1)


def dispatch_local(*, now: datetime, clock: Callable[[], datetime] | None = None) -> dict[str, int]:
    """Claim due rows and send them in this process (the embedded default, no broker).

    `clock` gives the moment of each send: a batch of slow sends can run past 21:00,
    and each text must be judged against quiet hours when it actually goes.
    """
    claims = outbox_claim_due(now=now)
    counts: dict[str, int] = {}
    if not claims:
        return counts
    outcomes = outbox_send_batch(
        message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=now, clock=clock
    )
    for outcome in outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts
