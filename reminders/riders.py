"""Which rows go together as one message: a patient's messages by one channel due within minutes of each other go
as one (two texts in the same minute read as noise), and only under the claim of the task that sends them. A send
first claims the `pending` rows that could ride along (`claim_riders`, handing back those it did not take:
`release_riders`), takes as companions the rows it holds that are still wanted (`companions`), keeps those that
render together (`mergeable`), and is told whether a message that reads before it is still to go
(`earlier_unsent`: it then waits). Sending the message, and recording the companions sent inside it, is dispatch's.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F

from core.redact import masked_logger
from reminders import content, verdicts
from reminders.claimed import Batch, claim_rows, lock_fresh, skip_locked
from reminders.models import Channel, MessageKind, OutboxMessage, OutboxStatus
from reminders.timing import quiet_hours
from reminders.wording import RenderError

log = masked_logger(__name__)

# The most rows one message carries besides its own (`_merge_pool`); a full claim takes a patient's rows by one
# channel up to one message's worth (dispatch._rest_of_their_patients).
MAX_MERGED = 5
# Why a row is cancelled when a booking change planned a newer copy of it (one unsent copy per template and channel).
SUPERSEDED_BY_A_NEWER_COPY = "superseded by a newer copy"


def mergeable(message: OutboxMessage, companions: list[OutboxMessage], now: datetime) -> list[OutboxMessage]:
    """The companions that can join: each renders, a joined SMS stays within the SMS limit, and a visit's texts keep
    their reading order (`content.reading_order`): a text joins only if every text of its own visit among the
    companions that reads before it joined too. One left out goes later on its own, and a text of its visit that
    joined would reach the patient first ("48 hours on, makeup may be used again" before "no makeup for 48 hours"),
    so, once one is left out, the rest of its visit is too.

    Tried in a fixed order whatever order the companions come in (the same rows make the same message): first the
    carrying message's own visit's texts that read before it (without them it waits, `earlier_unsent`), then, visit
    by visit in reading order, the next text of the visit whose next text is due first (of two due together, the
    one that reads first; `reading_order` ends with the row's id, so no two tie)."""
    order = {row.pk: content.reading_order(row) for row in companions}
    chains: dict = {}  # visit -> its texts among the companions, in reading order
    for row in sorted(companions, key=lambda row: order[row.pk]):
        chains.setdefault(row.appointment_id, []).append(row)
    group: list[OutboxMessage] = []

    def joins(row: OutboxMessage) -> bool:
        try:
            content.render_messages(messages=[message, *group, row], now=now)
        except RenderError:
            return False
        group.append(row)
        return True

    mine = content.reading_order(message)
    own = chains.get(message.appointment_id, [])
    before = [row for row in own if order[row.pk] < mine]
    rest = own[len(before) :] if all(joins(row) for row in before) else []  # else it waits: none of its visit
    if rest:
        chains[message.appointment_id] = rest
    else:
        chains.pop(message.appointment_id, None)
    while chains:
        visit, chain = min(chains.items(), key=lambda item: (item[1][0].due_at, order[item[1][0].pk]))
        if joins(chain[0]) and len(chain) > 1:
            chains[visit] = chain[1:]
        else:  # done, or one left out: the visit's later texts go after it
            del chains[visit]
    return group


def _merge_pool(message: OutboxMessage, batch: Batch, now: datetime, wanted) -> list[OutboxMessage]:
    """The rows of `batch.candidates` (`wanted` of each) that could go with this message, first due first (of two due
    together, the one that reads first: `content.reading_order`), at most MAX_MERGED."""
    window = timedelta(minutes=settings.REMINDERS_MERGE_MINUTES)
    if message.channel not in (Channel.EMAIL, Channel.SMS) or window <= timedelta(0):
        return []
    same = batch.candidates.get((message.appointment.patient_id, message.channel), ())
    # Every move changes `updated_at`; a new booking's rows, also recent, then simply go on their own.
    grace = timedelta(minutes=settings.REMINDERS_CHANGE_GRACE_MINUTES)
    settling = {
        row.appointment_id
        for row in same
        if (row.kind == MessageKind.RESCHEDULED and row.due_at > now)
        or (row.appointment_id != message.appointment_id and row.appointment.updated_at > now - grace)
    }
    quiet = quiet_hours() if message.channel == Channel.SMS else None
    # An e-mail is one clinic's, from its sender and reply-to to its footer: a sister site's goes on its own. (A text
    # names its clinic in its own words, so a patient's texts of two sites may go as one.)
    clinic = message.appointment.clinic_id if message.channel == Channel.EMAIL else None
    pool = sorted(
        (
            row
            for row in same
            if row.pk != message.pk
            and (clinic is None or row.appointment.clinic_id == clinic)
            and wanted(row)
            and row.due_at <= now + window
            and not row.in_doubt
            and not (row.due_at > now and row.appointment_id in settling)
            and not (quiet and quiet.contains(now.astimezone(row.appointment.clinic.tz).time()))
        ),
        key=lambda row: (row.due_at, content.reading_order(row)),
    )
    # Lock no more than can join (a row locked here is skipped by its own sender). A visit's text cut here goes later
    # on its own, so a text of that visit that reads after it is cut with it: kept, it would reach the patient first.
    cut: dict = {}
    for row in pool[MAX_MERGED:]:
        order = content.reading_order(row)
        cut[row.appointment_id] = min(order, cut.get(row.appointment_id, order))
    return [
        row
        for row in pool[:MAX_MERGED]
        if row.appointment_id not in cut or content.reading_order(row) < cut[row.appointment_id]
    ]


def claim_riders(message: OutboxMessage, batch: Batch, now: datetime, claim_token) -> list[OutboxMessage]:
    """Claim for this task, in a transaction of its own before the send's, the `pending` rows that could go with
    this message (`companions`): the rows claimed.

    # Race condition: a row goes inside another message only under the claim of that message's task, committed
    before the provider is called. Should the sender die after the provider took the message, every row it carried
    is then `sending` under the dead claim, and in doubt once its lease runs out
    (`dispatch._may_have_gone_inside_another`): taken unclaimed, a row that rode stayed `pending` with nothing to say
    so, and, its visit cancelled, was dropped with the cancellation notice (the patient, who had its confirmation, was
    never told). Those not taken are handed back (`release_riders`)."""
    # Not a copy of a row this task holds (a newer one a change planned): that row may yet go back to `pending`.
    own = {(row.appointment_id, row.template_id, row.channel) for row in batch.rows.values()}

    def free(row: OutboxMessage) -> bool:
        key = (row.appointment_id, row.template_id, row.channel)
        copy = row.template_id is not None and key in own and row.pk not in batch.rows
        return row.status == OutboxStatus.PENDING and row.pk not in batch.sent and not copy

    pool = _merge_pool(message, batch, now, free)
    if not pool:
        return []
    window = timedelta(minutes=settings.REMINDERS_MERGE_MINUTES)
    lease = timedelta(seconds=settings.REMINDERS_CLAIM_LEASE_SECONDS)
    try:
        with transaction.atomic():
            ids = list(
                OutboxMessage.objects.select_for_update(**skip_locked())
                .filter(
                    pk__in=[row.pk for row in pool],
                    status=OutboxStatus.PENDING,
                    in_doubt=False,
                    due_at__lte=now + window,
                )
                .values_list("id", flat=True)
            )
            if ids:
                claim_rows(ids, claim_token, now, lease)
    except DatabaseError:  # (a lock wait, the database away): the message goes alone, the rows at their own time
        log.warning("outbox %s: could not claim rows to go with it; it goes alone", message.pk, exc_info=True)
        return []
    riders = [row for row in pool if row.pk in ids]
    for row in riders:
        row.status, row.claim_token = OutboxStatus.SENDING, claim_token
    batch.held.update(ids)
    return riders


def release_riders(riders: list[OutboxMessage], batch: Batch, claim_token) -> None:
    """Hand back the rows `claim_riders` claimed that did not go (they wait for their own time), uncounted.

    # Race condition: while one was claimed, a booking change may have planned a newer copy of it (only one unsent
    copy may exist): the newer copy stays, the older is cancelled as superseded (as `dispatch._save_outcome` does)."""
    for row in riders:
        if row.pk in batch.sent:
            continue
        try:
            with transaction.atomic():
                _release_rider(row, claim_token)
        except DatabaseError:  # left to its lease: claimed again then, in doubt, and asked about first
            log.warning("outbox %s: could not hand back a row claimed to go along", row.pk, exc_info=True)


def _release_rider(row: OutboxMessage, claim_token) -> None:
    """Hand back one rider; a clash with a newer copy cancels the older of the two."""
    mine = OutboxMessage.objects.filter(pk=row.pk, status=OutboxStatus.SENDING, claim_token=claim_token)
    back = {"status": OutboxStatus.PENDING, "claim_token": None, "claimed_until": None}
    try:
        with transaction.atomic():
            mine.update(**back, attempts=F("attempts") - 1)
    except IntegrityError:
        copies = OutboxMessage.objects.filter(
            appointment_id=row.appointment_id,
            template_id=row.template_id,
            channel=row.channel,
            status__in=(OutboxStatus.HELD, OutboxStatus.PENDING),
        )
        superseded = {"status": OutboxStatus.CANCELLED, "last_error": SUPERSEDED_BY_A_NEWER_COPY}
        if copies.filter(created_at__gt=row.created_at).exists():
            mine.update(**superseded, claim_token=None, claimed_until=None)
        else:
            copies.update(**superseded)
            mine.update(**back, attempts=F("attempts") - 1)
    row.status, row.claim_token = OutboxStatus.PENDING, None


def companions(message: OutboxMessage, batch: Batch, now: datetime, claim_token) -> list[OutboxMessage]:
    """Other messages to the same patient on the same channel due within the merge window: they go
    as one message with this one, every text kept (two texts in the same minute read as noise).

    Taken: only rows this task holds the claim of and has not sent yet: its own (the dispatcher puts a patient's
    claimed rows in one task, `dispatch._tasks_of`), and the `pending` rows it claimed for this send (`claim_riders`).
    Their own send finds them sent and stops (# Race condition: the row locks decide, SKIP LOCKED skips rows
    another sender holds). # Race condition: a row another task claimed is left to it, even unlocked: its sender
    may have died after the provider took it and before recording it (the row stays `sending` until its lease
    runs out, then is asked about, in doubt), and taken here it would go twice. Rows that are no longer wanted are
    left to their own send.

    Not brought forward: what is not due yet of an appointment still settling, its move notice waiting
    out the grace period or (another visit) changed within it (the notice, and the reminders the move
    re-planned, with or without a notice: a move undone within the grace must tell the patient nothing),
    and, by SMS, a row of a clinic where it is quiet hours now (each row keeps its own clinic's nights).
    """
    token = str(claim_token)

    def held(row: OutboxMessage) -> bool:
        mine = row.pk in batch.held and row.pk not in batch.tainted
        return row.status == OutboxStatus.SENDING and mine and str(row.claim_token) == token

    pool = _merge_pool(message, batch, now, held)
    if not pool:
        return []
    locked = lock_fresh(pool)
    window = timedelta(minutes=settings.REMINDERS_MERGE_MINUTES)
    live = [
        row
        for row in pool
        if row.pk in locked
        and held(row)  # as it stands now, under its lock
        and row.due_at <= now + window
        and not row.in_doubt  # it goes on its own, once its provider has been asked (dispatch._settle_doubt)
    ]
    ours = (claim_token, frozenset(batch.tainted))
    return [
        row
        for row in live
        if verdicts.still_wanted(row, now) is None and verdicts.notice_verdict(row, now, ours) is None
    ]


def earlier_unsent(message: OutboxMessage, batch: Batch, *, going_with: list[OutboxMessage]) -> bool:
    """Whether a message that reads before this one (same appointment and channel) was due and not out when
    the batch began, and has not gone since in this batch, other than those going with it (they are put in
    reading order inside the one message)."""
    if message.channel == Channel.WEBHOOK or message.kind not in content.READING_ORDER:
        return False
    earlier = content.READING_ORDER[: content.READING_ORDER.index(message.kind)]
    skip = {message.pk, *(c.pk for c in going_with)} | batch.sent
    return any(
        kind in earlier and pk not in skip
        for pk, kind in batch.due_by_visit.get((message.appointment_id, message.channel), ())
    )
