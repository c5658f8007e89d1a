"""Organisations own clinics and patients (issue #11). Three steps so PostgreSQL never alters a table
with pending trigger events: add the columns nullable (this), fill them (0011), then require them (0012)."""

import uuid

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("clinic", "0009_appointment_checked_in_and_notes"),
    ]

    operations = [
        migrations.CreateModel(
            name="Organisation",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("code", models.SlugField(unique=True)),
                ("name", models.CharField(max_length=200)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={"ordering": ["name"]},
        ),
        migrations.AddField(
            model_name="clinic",
            name="organisation",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="clinics",
                to="clinic.organisation",
            ),
        ),
        migrations.AddField(
            model_name="patient",
            name="organisation",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="patients",
                to="clinic.organisation",
            ),
        ),
        migrations.AddField(
            model_name="staffmembership",
            name="organisation",
            field=models.ForeignKey(
                blank=True,
                help_text="Grants every clinic of the organisation; leave the clinic empty.",
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="memberships",
                to="clinic.organisation",
            ),
        ),
        migrations.AlterField(
            model_name="staffmembership",
            name="clinic",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="memberships",
                to="clinic.clinic",
            ),
        ),
        migrations.AddField(
            model_name="apiclient",
            name="organisations",
            field=models.ManyToManyField(
                blank=True,
                help_text="Grants every clinic of these organisations, now and later.",
                related_name="api_clients",
                to="clinic.organisation",
            ),
        ),
        migrations.AlterField(
            model_name="apiclient",
            name="clinics",
            field=models.ManyToManyField(blank=True, related_name="api_clients", to="clinic.clinic"),
        ),
    ]
