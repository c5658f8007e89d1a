"""Register a webhook endpoint for an API client and print its signing secret (shown once here)."""

from django.core.management.base import BaseCommand, CommandError

from clinic.models import ApiClient
from core.errors import InvalidInput
from reminders import services
from reminders.models import WebhookEndpoint


class Command(BaseCommand):
    help = "Register URL for API client NAME's appointment events; prints the secret on the last line."

    def add_arguments(self, parser):
        parser.add_argument("client", help="The API client's name.")
        parser.add_argument("url")
        parser.add_argument(
            "--event", action="append", choices=WebhookEndpoint.EVENTS, help="Only these events (repeat); default all."
        )

    def handle(self, *args, **options):
        client = ApiClient.objects.filter(name=options["client"]).first()
        if client is None:
            raise CommandError(f"There is no API client named {options['client']!r}.")
        try:
            endpoint = services.webhook_endpoint_create(client=client, url=options["url"], events=options["event"])
        except InvalidInput as exc:
            raise CommandError(exc.message)
        self.stdout.write(f"Endpoint {endpoint.pk} registered for {client.name}. Signing secret:")
        self.stdout.write(endpoint.secret)
