"""Webhook subscriptions a platform manages itself: its endpoints, secret rotation, deliveries, redelivery.

Services take the endpoint already scoped to its API client (the interface looks it up among the
caller's own); every write validates the same way as registration (`webhook_endpoint_create`).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet

from clinic.selectors import clinics_granted_to_client
from core.errors import ErrorCode, InvalidInput, InvalidTransition, NotFound
from reminders import channels
from reminders.models import Channel, OutboxMessage, OutboxStatus, WebhookEndpoint, new_webhook_secret
from reminders.services import webhook_endpoint_create

MAX_OVERLAP = timedelta(days=7)
# What channels.send_webhook records: `HTTP nnn` as the provider id of a delivery taken, "endpoint answered HTTP nnn"
# in the error of one refused. Never any `HTTP nnn` in an error: one that is not HTTP quotes the endpoint's own line.
_ACCEPTED = re.compile(r"^HTTP (\d{3})$")
_REFUSED = re.compile(
    r"^(?:permanent failure|attempt \d+|gave up after \d+ attempts; last error): endpoint answered HTTP (\d{3})\b"
)


def _refuse_unsafe_url(url: str, *, stored: str | None = None) -> None:
    # Registration through the API resolves the host now (the model's own check does not): a name that
    # points at a private or loopback address is refused up front, not only at delivery time; a URL sent back
    # unchanged is checked again as ever, but for the credentials it was registered with.
    problem = channels.webhook_url_credentials_problem(url, stored=stored) or channels.webhook_url_problem(
        url, resolve=True
    )
    if problem:
        raise InvalidInput(ErrorCode.INVALID_WEBHOOK_ENDPOINT, problem, field="url")


def webhook_subscription_create(
    *, client, url: str, events: list[str] | None = None, description: str = "", is_active: bool = True
) -> WebhookEndpoint:
    _refuse_unsafe_url(url)
    endpoint = webhook_endpoint_create(client=client, url=url, events=events, description=description)
    if not is_active:
        endpoint.is_active = False
        endpoint.save(update_fields=["is_active"])
    return endpoint


def webhook_subscription_update(*, endpoint: WebhookEndpoint, **changes) -> WebhookEndpoint:
    """Change `url`, `events`, `description` or `is_active` (pausing: deliveries not yet sent are cancelled
    when their turn comes, and no new ones are written while paused)."""
    if "url" in changes:
        _refuse_unsafe_url(changes["url"], stored=endpoint.url)
    for name, value in changes.items():
        setattr(endpoint, name, value)
    try:
        endpoint.full_clean(exclude=["secret", "client"])
    except ValidationError as exc:
        field, problems = next(iter(exc.message_dict.items()))
        raise InvalidInput(ErrorCode.INVALID_WEBHOOK_ENDPOINT, " ".join(problems), field=field)
    endpoint.save(update_fields=[*changes])
    return endpoint


def webhook_subscription_delete(*, endpoint: WebhookEndpoint) -> None:
    # Its unsent deliveries lose their endpoint (SET_NULL) and are cancelled by the dispatcher.
    endpoint.delete()


def webhook_secret_rotate(*, endpoint: WebhookEndpoint, now: datetime, overlap: timedelta) -> WebhookEndpoint:
    """A new secret signs from now on; the current one also signs until `now + overlap` (none: it stops now)."""
    if not timedelta(0) <= overlap <= MAX_OVERLAP:
        raise InvalidInput(
            ErrorCode.INVALID_WEBHOOK_ENDPOINT, "The overlap runs from 0 to 7 days.", field="overlap_minutes"
        )
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        endpoint.previous_secret = endpoint.secret if overlap else ""
        endpoint.previous_secret_expires_at = now + overlap if overlap else None
        endpoint.secret = new_webhook_secret()
        endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at"])
    return endpoint


def webhook_deliveries(*, endpoint: WebhookEndpoint) -> QuerySet[OutboxMessage]:
    """The endpoint's deliveries, newest first, of events at the clinics its client is granted as it stands (a clinic
    or its organisation): one that lost a clinic no longer lists, nor redelivers, what happened there, as every new
    request is held to the scope as it stands (docs/api.md)."""
    return (
        OutboxMessage.objects.filter(
            endpoint=endpoint,
            channel=Channel.WEBHOOK,
            appointment__clinic__in=clinics_granted_to_client(endpoint.client_id).values("pk"),
        )
        .select_related("appointment__clinic")
        .order_by("-created_at", "-id")
    )


@dataclass(frozen=True)
class DeliveryOutcome:
    response_code: int | None
    error: str


def delivery_outcome(message: OutboxMessage) -> DeliveryOutcome:
    """The HTTP status the endpoint last answered (channels.send_webhook records it as `HTTP nnn`), if any."""
    found = _ACCEPTED.match(message.provider_id) or _REFUSED.search(message.last_error)
    return DeliveryOutcome(int(found.group(1)) if found else None, message.last_error)


def webhook_redeliver(*, endpoint: WebhookEndpoint, delivery_id, now: datetime) -> OutboxMessage:
    """A new delivery of the same event (same body, `event_id` and `sequence`; its own delivery id), due now."""
    original = webhook_deliveries(endpoint=endpoint).filter(pk=delivery_id).first()
    if original is None:
        raise NotFound(ErrorCode.UNKNOWN_WEBHOOK_DELIVERY, "There is no such delivery.")
    if not endpoint.is_active:
        raise InvalidTransition(ErrorCode.WEBHOOK_ENDPOINT_PAUSED, "The endpoint is paused: resume it first.")
    if not endpoint.wants(original.event):
        # The sender would cancel it (no longer subscribed): refused here, not answered 201 and dropped.
        raise InvalidTransition(
            ErrorCode.WEBHOOK_EVENT_NOT_SUBSCRIBED,
            f"The endpoint no longer subscribes to {original.event}: add it to its events first.",
        )
    new_id = uuid.uuid4()
    payload = {**original.payload, "id": str(new_id)}
    payload.setdefault("event_id", original.payload.get("id"))  # rows written before event ids existed
    return OutboxMessage.objects.create(
        id=new_id,
        appointment_id=original.appointment_id,
        kind=original.kind,
        channel=Channel.WEBHOOK,
        endpoint=endpoint,
        event=original.event,
        anchor_at=now,
        due_at=now,
        status=OutboxStatus.PENDING,
        payload=payload,
        created_at=now,
    )
