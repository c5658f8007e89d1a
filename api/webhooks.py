"""Webhook subscriptions over the API: a platform registers, lists, changes, pauses and deletes its own
endpoints, rotates their secrets, reads recent deliveries and asks for a redelivery.

Endpoints belong to an API client: another client's are not found (404), and a staff user, who has
no endpoints, is refused (403). The services are in reminders/webhooks.py.
"""

from __future__ import annotations

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from api import schema as docs
from api.idempotency import idempotent
from api.problems import local_iso
from api.serializers import (
    EmptyIn,
    SecretRotationIn,
    SecretRotationOut,
    WebhookDeliveryOut,
    WebhookEndpointCreatedOut,
    WebhookEndpointIn,
    WebhookEndpointOut,
    WebhookEndpointUpdateIn,
)
from api.views import ApiView, _created, _input
from core.errors import ErrorCode, NotFound
from core.ids import parse_uuid
from reminders import webhooks
from reminders.models import OutboxMessage, WebhookEndpoint

DEFAULT_OVERLAP = timedelta(days=1)
TAGS = ["webhooks"]


def _delivery_data(message: OutboxMessage) -> dict:
    outcome = webhooks.delivery_outcome(message)
    tz = message.appointment.clinic.tz
    return {
        "id": str(message.pk),
        "event": message.event,
        "event_id": message.payload.get("event_id"),
        "sequence": message.payload.get("sequence"),
        "appointment": str(message.appointment_id),
        "status": message.status,
        "attempts": message.attempts,
        "response_code": outcome.response_code,
        "last_error": outcome.error,
        # In the clinic's offset, as every time the API answers (and as the event's own `occurred_at`).
        "created_at": local_iso(message.created_at, tz),
        "due_at": local_iso(message.due_at, tz),
        "sent_at": local_iso(message.sent_at, tz),
    }


def _endpoint_changes(data: dict) -> dict:
    changes = dict(data)
    if "active" in changes:
        changes["is_active"] = changes.pop("active")
    return changes


class _WebhookApi(ApiView):
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if self.caller.client is None:
            raise PermissionDenied("Webhook endpoints belong to API clients; sign in with an API key.")

    def endpoints(self):
        return WebhookEndpoint.objects.filter(client=self.caller.client).order_by("created_at", "id")

    def endpoint_from_url(self) -> WebhookEndpoint:
        endpoint = self.endpoints().filter(pk=parse_uuid(self.kwargs["webhook_id"])).first()
        if endpoint is None:
            raise NotFound(ErrorCode.UNKNOWN_WEBHOOK_ENDPOINT, "There is no such webhook endpoint.")
        return endpoint


class WebhookListCreateApi(_WebhookApi):
    serializer_class = WebhookEndpointOut

    @extend_schema(
        tags=TAGS,
        operation_id="webhooks_list",
        summary="Your webhook endpoints",
        responses=docs.responses(200, WebhookEndpointOut, many=True, bad_request=True),
    )
    def get(self, request):
        return self.page(self.endpoints(), WebhookEndpointOut)

    @extend_schema(
        tags=TAGS,
        operation_id="webhooks_create",
        summary="Register a webhook endpoint",
        request=WebhookEndpointIn,
        parameters=[docs.IDEMPOTENCY_KEY],
        responses=docs.responses(201, WebhookEndpointCreatedOut, bad_request=True, idempotent=True, body=True),
    )
    @idempotent
    def post(self, request):
        data = _endpoint_changes(_input(WebhookEndpointIn, request))
        endpoint = webhooks.webhook_subscription_create(client=self.caller.client, **data)
        return _created(
            {**WebhookEndpointOut(endpoint).data, "secret": endpoint.secret},
            reverse("api:webhook-detail", args=[endpoint.pk]),
        )


class WebhookDetailApi(_WebhookApi):
    serializer_class = WebhookEndpointOut

    @extend_schema(
        tags=TAGS,
        operation_id="webhooks_retrieve",
        summary="One of your webhook endpoints",
        responses=docs.responses(200, WebhookEndpointOut),
    )
    def get(self, request, webhook_id):
        return Response(WebhookEndpointOut(self.endpoint_from_url()).data)

    @extend_schema(
        tags=TAGS,
        operation_id="webhooks_update",
        summary="Change an endpoint's URL, events or description; pause (active: false) or resume it",
        request=WebhookEndpointUpdateIn,
        responses=docs.responses(200, WebhookEndpointOut, bad_request=True, body=True),
    )
    def patch(self, request, webhook_id):
        # The body's shape is checked first: a malformed body is a 400 whoever's endpoint it names.
        data = _endpoint_changes(_input(WebhookEndpointUpdateIn, request))
        endpoint = webhooks.webhook_subscription_update(endpoint=self.endpoint_from_url(), **data)
        return Response(WebhookEndpointOut(endpoint).data)

    @extend_schema(
        tags=TAGS,
        operation_id="webhooks_destroy",
        summary="Delete an endpoint (its unsent deliveries are cancelled)",
        responses=docs.responses(204, None),
    )
    def delete(self, request, webhook_id):
        webhooks.webhook_subscription_delete(endpoint=self.endpoint_from_url())
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookSecretRotationApi(_WebhookApi):
    serializer_class = SecretRotationOut

    @extend_schema(
        tags=TAGS,
        operation_id="webhooks_rotate_secret",
        summary="Rotate the signing secret; the old one keeps signing for the overlap",
        request=SecretRotationIn,
        parameters=[docs.IDEMPOTENCY_KEY],
        responses=docs.responses(200, SecretRotationOut, bad_request=True, idempotent=True, body=True),
    )
    @idempotent
    def post(self, request, webhook_id):
        data = _input(SecretRotationIn, request)
        endpoint = self.endpoint_from_url()
        overlap = timedelta(minutes=data["overlap_minutes"]) if "overlap_minutes" in data else DEFAULT_OVERLAP
        endpoint = webhooks.webhook_secret_rotate(endpoint=endpoint, now=timezone.now(), overlap=overlap)
        return Response(
            {
                "id": str(endpoint.pk),
                "secret": endpoint.secret,
                "previous_secret_expires_at": (
                    endpoint.previous_secret_expires_at.isoformat() if endpoint.previous_secret_expires_at else None
                ),
            }
        )


class WebhookDeliveryListApi(_WebhookApi):
    serializer_class = WebhookDeliveryOut

    @extend_schema(
        tags=TAGS,
        operation_id="webhooks_deliveries_list",
        summary="Recent deliveries to an endpoint, newest first, with status and response code",
        responses=docs.responses(200, WebhookDeliveryOut, many=True, bad_request=True),
    )
    def get(self, request, webhook_id):
        endpoint = self.endpoint_from_url()
        return self.page(webhooks.webhook_deliveries(endpoint=endpoint), data=_delivery_data)


class WebhookRedeliveryApi(_WebhookApi):
    serializer_class = WebhookDeliveryOut

    @extend_schema(
        tags=TAGS,
        operation_id="webhooks_deliveries_redeliver",
        summary="Send a delivery's event again (a new delivery: same body, event_id and sequence)",
        request=EmptyIn,
        parameters=[docs.IDEMPOTENCY_KEY],
        responses=docs.responses(201, WebhookDeliveryOut, bad_request=True, conflict=True, idempotent=True),
    )
    @idempotent
    def post(self, request, webhook_id, delivery_id):
        endpoint = self.endpoint_from_url()
        _input(EmptyIn, request)  # nothing to give: a body that is not JSON, or names a field, is refused
        message = webhooks.webhook_redeliver(endpoint=endpoint, delivery_id=parse_uuid(delivery_id), now=timezone.now())
        return _created(_delivery_data(message), reverse("api:webhook-deliveries", args=[endpoint.pk]))
