

from django.db import migrations


class Migration(migrations.Migration):
    """ApiClient now lives in the clinic app (its 0004): removed from this app's state only."""


    dependencies = [
        ('api', '0002_idempotency_key'),
        ('clinic', '0004_apiclient'),
        ('scheduler', '0003_reminders_move_out'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.DeleteModel(
                name='ApiClient',
            ),
            ],
            database_operations=[],
        ),
    ]
