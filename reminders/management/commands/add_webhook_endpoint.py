"""Register a webhook endpoint for an API client and print its signing secret (shown once here)."""

from django.core.management.base import BaseCommand, CommandError

from clinic.models import ApiClient
from core.errors import InvalidInput
from core.plain_text import text_argument
from reminders import selectors, webhooks
from reminders.models import WebhookEndpoint


class Command(BaseCommand):
    help = "Register URL for API client NAME's appointment events; prints the secret on the last line."

    def add_arguments(self, parser):
        parser.add_argument("client", type=text_argument, help="The API client's name.")
        parser.add_argument("url", type=text_argument)
        parser.add_argument(
            "--event", action="append", choices=WebhookEndpoint.EVENTS, help="Only these events (repeat); default all."
        )

    def handle(self, *args, **options):
        client = ApiClient.objects.filter(name=options["client"]).first()
        if client is None:
            raise CommandError(f"There is no API client named {options['client']!r}.")
        existing = selectors.webhook_endpoint_find(client=client, url=options["url"])
        if existing is not None:
            raise CommandError(
                f"{client.name} already has endpoint {existing.pk} for {existing.url} (a second one would get "
                "every event twice); change or remove it in the admin."
            )
        try:
            # The API's registration: the host is resolved now, so a name pointing at a private address is refused.
            endpoint = webhooks.webhook_subscription_create(client=client, url=options["url"], events=options["event"])
        except InvalidInput as exc:
            raise CommandError(exc.message)
        self.stdout.write(f"Endpoint {endpoint.pk} registered for {client.name}. Signing secret:")
        self.stdout.write(endpoint.secret)
