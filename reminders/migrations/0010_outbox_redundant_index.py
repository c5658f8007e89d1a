"""Drop the outbox's index on `appointment_id` alone: `outbox_appointment_kind` leads with it, and a booking
inserts several rows here (core/schema.py)."""

from django.db import migrations, models

from core.schema import Index, dropping


class Migration(migrations.Migration):
    atomic = False  # DROP INDEX CONCURRENTLY on PostgreSQL

    dependencies = [("reminders", "0009_webhook_config_triggers"), ("clinic", "0014_appointment_redundant_indexes")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="outboxmessage",
                    name="appointment",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=models.deletion.CASCADE,
                        related_name="outbox_messages",
                        to="clinic.appointment",
                    ),
                )
            ],
            database_operations=[
                dropping(
                    Index(
                        "scheduler_outboxmessage_appointment_id_473e0c15", "scheduler_outboxmessage", "appointment_id"
                    )
                )
            ],
        )
    ]
