"""Outbox rows under a send task's claim, handled alike by the send (dispatch) and by the rows that ride along with
it (riders): marking rows claimed under a token (`claim_rows`), locking rows and reading afresh what may have changed
since the batch read them (`lock_fresh`), and what a task knows of its claimed rows (`Batch`). It decides nothing:
whether a row still goes is verdicts', which rows go as one message riders', claiming due rows and sending them
dispatch's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import F

from core.compiled import CompiledQuery
from reminders import content
from reminders.models import OutboxMessage, OutboxStatus


def skip_locked() -> dict:
    # SQLite has no row locks (and no SKIP LOCKED): its write transactions are serialised
    # whole (BEGIN IMMEDIATE), which gives the same exclusivity, one writer at a time.
    if connection.features.has_select_for_update_skip_locked:
        return {"skip_locked": True, "of": ("self",)}
    return {}


def claim_rows(ids: list, token, now: datetime, lease: timedelta) -> None:
    """Mark these (locked) rows claimed under `token`. Attempts count claims, so a row that crashes its worker every
    time still runs out."""
    OutboxMessage.objects.filter(pk__in=ids).update(
        status=OutboxStatus.SENDING,
        claim_token=token,
        claimed_at=now,
        claimed_until=now + lease,
        attempts=F("attempts") + 1,
    )


@dataclass
class Batch:
    """What one task knows about its claimed rows before it sends any: read once for the whole batch.

    The rows and everything a send reads (appointment, patient, clinic, procedure, template, endpoint),
    the merge candidates of the same patients, and the due rows of the same appointments (for reading
    order), in three queries (dispatch._batch_read). Each row is then locked and re-read (status, claim,
    the appointment's status and start, the patient's consent) in its own short transaction before it goes.
    """

    rows: dict[uuid.UUID, OutboxMessage]
    candidates: dict[tuple, list[OutboxMessage]]  # (patient id, channel) -> rows that may merge, by due_at, id
    due_by_visit: dict[tuple, list[tuple[uuid.UUID, str]]]  # (appointment id, channel) -> [(pk, kind)] due
    sent: set = dataclass_field(default_factory=set)  # rows this batch has sent (their own or as companions)
    held: set = dataclass_field(default_factory=set)  # rows this task claimed: its own, and those claimed to ride along
    # The send under way, once it calls the provider: its message's rows (its own and those it carries).
    carrying: dict = dataclass_field(default_factory=dict)
    tainted: set = dataclass_field(default_factory=set)  # rows of a message the provider may have, not recorded
    stopped: dict = dataclass_field(default_factory=dict)  # number -> why: the SMS provider's STOP, to record


# Read again under the row lock, so a send never acts on what the batch read seconds before.
_FRESH = (
    "pk",
    "status",
    "claim_token",
    "claimed_until",
    "attempts",
    "due_at",
    "payload",
    "in_doubt",
    "in_doubt_since",
    "appointment__status",
    "appointment__start_at",
    "appointment__end_at",
    "appointment__patient__reminder_channels",
    "appointment__patient__sms_consent",
    "appointment__patient__muted_topics",
    "appointment__patient__email",
    "appointment__patient__phone",
    # A webhook's endpoint: paused, deleted, revoked, re-subscribed or rotated while its batch is being sent, each
    # delivery goes (or not) and is signed as the endpoint stands (verdicts.still_wanted, dispatch._deliver).
    "endpoint_id",
    "endpoint__is_active",
    "endpoint__events",
    "endpoint__url",
    "endpoint__secret",
    "endpoint__previous_secret",
    "endpoint__previous_secret_expires_at",
    "endpoint__client__revoked_at",
)
_VISIT = slice(_FRESH.index("appointment__status"), _FRESH.index("endpoint_id"))
_ENDPOINT = slice(_FRESH.index("endpoint_id"), len(_FRESH))


def _lock_options(*, skip: bool) -> dict:
    """The outbox row only (`OF`: its appointment and patient, read in the same statement, stay free for the
    bookings and changes that lock them, which a send held through its provider call would otherwise block or
    deadlock with); skipping rows another transaction holds, or waiting for them."""
    features = connection.features
    options: dict = {"of": ("self",)} if features.has_select_for_update_of else {}
    if skip and features.has_select_for_update_skip_locked:
        options["skip_locked"] = True
    return options


# Run once or more per message: compiled once per connection (core.compiled), not per send. It skips rows
# another transaction holds: a companion another sender holds is left to it; a send's own row is waited for
# (lock_fresh).
_LOCK_FRESH = CompiledQuery(
    lambda ids: (
        OutboxMessage.objects.select_for_update(**_lock_options(skip=True))
        .filter(pk__in=ids)
        .order_by()
        .annotate(calendar_changes=content.calendar_changes("appointment_id"))
        .values_list(*_FRESH, "calendar_changes")
    )
)


def lock_fresh(rows: list[OutboxMessage], *, skip_locked: bool = True) -> dict[uuid.UUID, OutboxMessage]:
    """Lock these rows (skipping those another transaction holds, or waiting for them) and bring what may have
    changed up to date."""
    locked = {}
    by_pk = {r.pk: r for r in rows}
    found = _LOCK_FRESH.rows(list(by_pk))
    if not skip_locked and len(found) < len(by_pk):
        # Race condition: a statement that waits for a row's lock reads, once it has it, the row itself again but
        # the appointment and patient joined to it as they were when it began. A change that held the row (a
        # cancel locks the unsent rows; one the claim took meanwhile stays locked though not returned) commits,
        # and the send went on the booking as it was: a cancelled visit's confirmation went out. So the wait is
        # one statement, and the read, the lock held, another.
        held = {pk for pk, *_ in found}
        waiting = [pk for pk in by_pk if pk not in held]
        list(OutboxMessage.objects.select_for_update(**_lock_options(skip=False)).filter(pk__in=waiting).values("pk"))
        found = [*found, *_LOCK_FRESH.rows(waiting)]
    for fresh in found:
        pk, status, token, until, attempts, due_at, payload, doubt, doubt_since = fresh[:9]
        visit, changes = fresh[_VISIT], fresh[-1]
        row = by_pk[pk]
        row.status, row.claim_token, row.claimed_until, row.attempts, row.due_at = (
            status,
            token,
            until,
            attempts,
            due_at,
        )
        row.payload, row.in_doubt, row.in_doubt_since = payload, doubt, doubt_since
        appointment, patient = row.appointment, row.appointment.patient
        appointment.status, appointment.start_at, appointment.end_at = visit[:3]
        appointment.calendar_changes = changes  # the .ics SEQUENCE, as of this lock (content.ics_sequence)
        patient.reminder_channels, patient.sms_consent, patient.muted_topics, patient.email, patient.phone = visit[3:]
        if row.endpoint_id is not None:
            _endpoint_fresh(row, fresh[_ENDPOINT])
        locked[pk] = row
    return locked


def _endpoint_fresh(row: OutboxMessage, fresh: tuple) -> None:
    endpoint_id, is_active, events, url, secret, previous, previous_until, revoked_at = fresh
    if endpoint_id is None:  # deleted since the batch read it
        row.endpoint = None
        return
    endpoint = row.endpoint
    endpoint.is_active, endpoint.events, endpoint.url = is_active, events, url
    endpoint.secret, endpoint.previous_secret, endpoint.previous_secret_expires_at = secret, previous, previous_until
    endpoint.client.revoked_at = revoked_at
