"""Reads over the outbox: an appointment's reminders (for the API) and the operator's summary."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Count, Exists, F, Min, OuterRef, Q, QuerySet

from reminders import dispatch, verdicts
from reminders.models import Channel, OutboxMessage, OutboxStatus, WebhookEndpoint
from reminders.services import OPERATOR_CANCELLED

# A due row still unclaimed this long after it fell due means the dispatcher is behind (or not running): it
# claims every REMINDERS_DISPATCH_INTERVAL_SECONDS.
BEHIND_AFTER = timedelta(minutes=5)


def patient_messages(appointment_id) -> QuerySet[OutboxMessage]:
    """The messages to the patient about one appointment (no webhooks), in the order they are due (those due
    together by kind, then e-mail before text): the one read behind the API's `reminders` and the front desk's
    reminder list."""
    return (
        OutboxMessage.objects.filter(appointment_id=appointment_id)
        .exclude(channel=Channel.WEBHOOK)
        .select_related("template")
        .order_by("due_at", "kind", "channel", "id")
    )


def undelivered_patient_messages() -> QuerySet[OutboxMessage]:
    """Messages to patients (no webhooks) that did not reach them (refused, out of attempts, or reported undelivered
    after they were sent: reports.delivery_reported), or that will not in time: a cancellation or move notice due
    only at or after the visit's start (a text held by quiet hours past a 07:00 visit), which the sender will drop
    (verdicts.still_wanted), or one an operator stopped in the outbox (`stopped_by_an_operator`: the patient was
    told nothing, and may come for nothing or at the old time); and that nothing made up for: not sent again, and
    no copy of the same template (one template holds a message's e-mail and its text) for the same appointment went
    since: its twin on the other channel, or a later copy after a move. Another template's message of the same kind
    (another pre-care note) makes up for nothing."""
    made_up = OutboxMessage.objects.filter(
        appointment_id=OuterRef("appointment_id"),
        template_id=OuterRef("template_id"),
        status=OutboxStatus.SENT,
        created_at__gte=OuterRef("created_at"),
    )
    too_late = Q(status=OutboxStatus.PENDING, kind__in=verdicts.NOTICES, due_at__gte=F("appointment__start_at"))
    stopped = Q(status=OutboxStatus.CANCELLED, kind__in=verdicts.NOTICES, last_error__startswith=OPERATOR_CANCELLED)
    return (
        OutboxMessage.objects.filter(Q(status=OutboxStatus.FAILED) | too_late | stopped)
        .exclude(channel=Channel.WEBHOOK)
        .exclude(Exists(made_up))
    )


def stopped_by_an_operator(message: OutboxMessage) -> bool:
    """A cancellation or move notice an operator stopped in the outbox (reminders.services.outbox_cancel): it never
    went, so the desk is asked to phone the patient (`undelivered_patient_messages`)."""
    return (
        message.status == OutboxStatus.CANCELLED
        and message.kind in verdicts.NOTICES
        and message.last_error.startswith(OPERATOR_CANCELLED)
    )


def will_reach_too_late(message: OutboxMessage) -> bool:
    """A notice that, as it stands, goes only once its visit's time has come (`undelivered_patient_messages`)."""
    return (
        message.status == OutboxStatus.PENDING
        and message.kind in verdicts.NOTICES
        and message.due_at >= message.appointment.start_at
    )


def reminders_for_appointment(appointment_id) -> list[dict]:
    """The patient messages of one appointment, as the API's `reminders` field lists them."""
    return [
        {"kind": m.kind, "channel": m.channel, "due_at": m.due_at, "status": m.status}
        for m in patient_messages(appointment_id)
    ]


def webhook_endpoint_find(*, client, url: str) -> WebhookEndpoint | None:
    """The client's endpoint registered for exactly `url`, if any (a second one would get every event twice)."""
    return WebhookEndpoint.objects.filter(client=client, url=url).order_by("created_at").first()


def outbox_rows(*, clinic_code: str | None = None) -> QuerySet[OutboxMessage]:
    rows = OutboxMessage.objects.select_related("appointment__clinic", "appointment__patient", "endpoint")
    return rows.filter(appointment__clinic__code=clinic_code) if clinic_code is not None else rows


def outbox_summary(
    *, now: datetime, clinic_code: str | None = None, horizon: timedelta = timedelta(hours=24), limit: int = 20
) -> dict:
    """Counts by status and channel, what is overdue or due soon, what failed, and what the send step dropped as too
    late in the last `horizon` (its moment passed before it could go: after an outage, what the patients missed)."""
    rows = outbox_rows(clinic_code=clinic_code)
    counts: dict[str, dict[str, int]] = {}
    for status, channel, n in rows.values_list("status", "channel").annotate(n=Count("id")).order_by():
        counts.setdefault(status, {})[channel] = n
    return {
        "counts": counts,
        "overdue": list(
            rows.filter(status__in=[OutboxStatus.PENDING, OutboxStatus.SENDING], due_at__lt=now).order_by("due_at")[
                :limit
            ]
        ),
        "due_soon": list(
            rows.filter(status=OutboxStatus.PENDING, due_at__gte=now, due_at__lt=now + horizon).order_by("due_at")[
                :limit
            ]
        ),
        "held": rows.filter(status=OutboxStatus.HELD).count(),
        # The dispatcher's back-pressure (dispatch.dispatch_due_batches): what the workers hold, and what waits.
        "in_flight": rows.filter(status=OutboxStatus.SENDING, claimed_until__gte=now).count(),
        "waiting": _waiting(rows, now),
        "failed": list(rows.filter(status=OutboxStatus.FAILED).order_by("-updated_at")[:limit]),
        "too_late": list(
            rows.filter(
                status__in=[OutboxStatus.SKIPPED, OutboxStatus.CANCELLED],
                last_error__in=verdicts.TOO_LATE_REASONS,
                updated_at__gte=now - horizon,
            ).order_by("-updated_at")[:limit]
        ),
    }


def _waiting(rows: QuerySet[OutboxMessage], now: datetime) -> dict:
    """Rows the next claim would take: how many, how long the oldest has waited, and whether that is late.

    The dispatcher's own condition, so a `sending` row whose lease ran out (its sender died) counts as waiting."""
    found = rows.filter(dispatch.due_condition(now)).aggregate(n=Count("id"), oldest=Min("due_at"))
    waited = now - found["oldest"] if found["oldest"] else timedelta(0)
    return {"count": found["n"], "waited": waited, "behind": waited >= BEHIND_AFTER}
