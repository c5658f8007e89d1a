

from django.db import migrations


class Migration(migrations.Migration):
    """The reminders models now live in the reminders app (its 0001): removed from this app's state only."""


    dependencies = [
        ('scheduler', '0002_reminders_outbox'),
        ('reminders', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.RemoveField(
                model_name='outboxmessage',
                name='appointment',
            ),
            migrations.RemoveField(
                model_name='outboxmessage',
                name='endpoint',
            ),
            migrations.RemoveField(
                model_name='outboxmessage',
                name='template',
            ),
            migrations.RemoveField(
                model_name='remindertemplate',
                name='procedure',
            ),
            migrations.RemoveField(
                model_name='webhookendpoint',
                name='client',
            ),
            migrations.DeleteModel(
                name='ContactOptOut',
            ),
            migrations.DeleteModel(
                name='OutboxMessage',
            ),
            migrations.DeleteModel(
                name='ReminderTemplate',
            ),
            migrations.DeleteModel(
                name='WebhookEndpoint',
            ),
            ],
            database_operations=[],
        ),
    ]
