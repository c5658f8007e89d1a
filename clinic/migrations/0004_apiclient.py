

import uuid
from django.db import migrations, models



MOVES = [('api', 'clinic', 'apiclient')]  # (old app label, new app label, model)


def move_content_types(apps, schema_editor):
    """Keep content types (and so the permissions granted on them) with the moved models."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    for old, new, model in MOVES:
        if not ContentType.objects.filter(app_label=new, model=model).exists():
            ContentType.objects.filter(app_label=old, model=model).update(app_label=new)


def move_content_types_back(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for old, new, model in MOVES:
        if not ContentType.objects.filter(app_label=old, model=model).exists():
            ContentType.objects.filter(app_label=new, model=model).update(app_label=old)


class Migration(migrations.Migration):
    """ApiClient moves here from the api app (docs/architecture.md): state only, the table stays api_apiclient."""


    dependencies = [
        ('clinic', '0003_intake_unique_on_every_database'),
        ('api', '0002_idempotency_key'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.RunPython(move_content_types, reverse_code=move_content_types_back),
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.CreateModel(
                name='ApiClient',
                fields=[
                    ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                    ('name', models.CharField(max_length=200, unique=True)),
                    ('key_prefix', models.CharField(editable=False, max_length=16, unique=True)),
                    ('key_hash', models.CharField(editable=False, max_length=64)),
                    ('clinical', models.BooleanField(default=False, help_text="May complete appointments and clear contraindications (the clinician's right).")),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('last_used_at', models.DateTimeField(blank=True, editable=False, null=True)),
                    ('revoked_at', models.DateTimeField(blank=True, null=True)),
                    ('clinics', models.ManyToManyField(related_name='api_clients', to='clinic.clinic')),
                ],
                options={
                    'db_table': 'api_apiclient',
                    'ordering': ['name'],
                },
            ),
            ],
            database_operations=[],
        ),
    ]
