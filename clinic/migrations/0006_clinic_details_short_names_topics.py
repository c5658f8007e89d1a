# Clinic details patients see, short procedure names, and the kinds of message a patient switched off.

import clinic.models
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('clinic', '0005_patient_no_overlap'),
    ]

    operations = [
        migrations.AddField(
            model_name='clinic',
            name='address',
            field=models.TextField(blank=True, help_text='Postal address, one line per line.'),
        ),
        migrations.AddField(
            model_name='clinic',
            name='brand_colour',
            field=models.CharField(blank=True, max_length=7, validators=[clinic.models.validate_colour]),
        ),
        migrations.AddField(
            model_name='clinic',
            name='cancellation_window_hours',
            field=models.PositiveIntegerField(default=24, help_text='Patients may cancel or move an appointment themselves until this many hours before it starts.'),
        ),
        migrations.AddField(
            model_name='clinic',
            name='logo_url',
            field=models.URLField(blank=True, max_length=500),
        ),
        migrations.AddField(
            model_name='clinic',
            name='map_url',
            field=models.URLField(blank=True, help_text='A link to the clinic on a map.', max_length=500),
        ),
        migrations.AddField(
            model_name='clinic',
            name='name_treatment_in_previews',
            field=models.BooleanField(default=False, help_text='Name the treatment in e-mail subjects, SMS and calendar titles (seen on a lock screen). Off: they name only the clinic; the e-mail body names it.'),
        ),
        migrations.AddField(
            model_name='clinic',
            name='phone',
            field=models.CharField(blank=True, help_text='E.164, e.g. +442079460000; messages show it in national format.', max_length=20, validators=[clinic.models.validate_e164]),
        ),
        migrations.AddField(
            model_name='clinic',
            name='reply_to_email',
            field=models.EmailField(blank=True, help_text="Where patients' replies to e-mails go.", max_length=254),
        ),
        migrations.AddField(
            model_name='clinic',
            name='sender_name',
            field=models.CharField(blank=True, help_text="E-mails come from this name; the clinic's name when empty.", max_length=100),
        ),
        migrations.AddField(
            model_name='patient',
            name='muted_topics',
            field=models.JSONField(blank=True, default=list, help_text='Kinds of message the patient switched off: care (pre- and post-care instructions) and/or reminders. Confirmations and change notices always go on the channels they accept.', validators=[clinic.models.validate_message_topics]),
        ),
        migrations.AddField(
            model_name='proceduretype',
            name='short_name',
            field=models.CharField(blank=True, help_text='For sentences and tight spaces ("Botox"); the name when empty.', max_length=40),
        ),
    ]
