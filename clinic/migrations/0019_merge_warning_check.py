"""Staff mark a warning a merge brought together as checked (clinic.models.MergeWarningCheck): an append-only
record of who checked which warning of which merge, when, with what note; the survivor's page then stops naming
it in its banner. PatientMerge itself is unchanged."""

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("clinic", "0018_procedurerecord_clinic"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="MergeWarningCheck",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("message", models.TextField(help_text="The warning as it was shown when checked.")),
                ("checked_at", models.DateTimeField()),
                ("checked_by_name", models.CharField(max_length=200)),
                ("note", models.CharField(blank=True, max_length=500)),
                (
                    "appointment",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="merge_warning_checks",
                        to="clinic.appointment",
                    ),
                ),
                (
                    "checked_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "merge",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="warning_checks",
                        to="clinic.patientmerge",
                    ),
                ),
            ],
            options={
                "ordering": ["checked_at"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("merge", "appointment", "message"), name="merge_warning_checked_once"
                    )
                ],
            },
        ),
    ]
