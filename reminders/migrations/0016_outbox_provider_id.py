"""The providers' delivery reports name a sent text or e-mail by its id (reminders.dispatch.delivery_reported): an
index of the sent messages' ids, partial so that a booking's unsent rows (no id yet) and webhook deliveries add
nothing to it; made `CONCURRENTLY` on PostgreSQL (core/schema.py), so the outbox's writers are not held up while it
is built."""

from django.db import migrations, models

from core.schema import adding


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY on PostgreSQL

    dependencies = [("reminders", "0015_opt_out_reported_by_providers")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(
                    model_name="outboxmessage",
                    index=models.Index(
                        condition=models.Q(channel__in=["email", "sms"], provider_id__gt=""),
                        fields=["provider_id"],
                        name="outbox_provider_id",
                    ),
                ),
            ],
        ),
        adding("reminders", "outboxmessage", "outbox_provider_id"),
    ]
