"""The outbox's template and endpoint keys' indexes hold only the rows that have one (a reminder has no endpoint,
a webhook delivery no template), not a NULL entry for every other row, which each booking's messages paid for
(core/schema.py). Lookups by key (`endpoint_id = $1`, prepared or not) imply `IS NOT NULL`, so they still use
them."""

from django.db import migrations, models

from core.schema import Index, adding, dropping

TABLE = "scheduler_outboxmessage"


class Migration(migrations.Migration):
    atomic = False  # CREATE and DROP INDEX CONCURRENTLY on PostgreSQL

    dependencies = [("reminders", "0011_outbox_in_doubt")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="outboxmessage",
                    name="endpoint",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=models.deletion.SET_NULL,
                        related_name="deliveries",
                        to="reminders.webhookendpoint",
                    ),
                ),
                migrations.AlterField(
                    model_name="outboxmessage",
                    name="template",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=models.deletion.SET_NULL,
                        related_name="messages",
                        to="reminders.remindertemplate",
                    ),
                ),
                migrations.AddIndex(
                    model_name="outboxmessage",
                    index=models.Index(
                        condition=models.Q(template__isnull=False), fields=["template"], name="outbox_template"
                    ),
                ),
                migrations.AddIndex(
                    model_name="outboxmessage",
                    index=models.Index(
                        condition=models.Q(endpoint__isnull=False), fields=["endpoint"], name="outbox_endpoint"
                    ),
                ),
            ],
        ),
        # The new ones first, so no lookup goes without an index in between; `adding` reads them from the state
        # the operation above left.
        adding("reminders", "outboxmessage", "outbox_template", "outbox_endpoint"),
        dropping(
            Index("scheduler_outboxmessage_template_id_cc667d0e", TABLE, "template_id"),
            Index("scheduler_outboxmessage_endpoint_id_ec488325", TABLE, "endpoint_id"),
        ),
    ]
