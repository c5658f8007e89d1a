

import django.db.models.deletion
import uuid
from django.db import migrations, models



MOVES = [('scheduler', 'reminders', 'remindertemplate'), ('scheduler', 'reminders', 'webhookendpoint'), ('scheduler', 'reminders', 'outboxmessage'), ('scheduler', 'reminders', 'contactoptout')]  # (old app label, new app label, model)


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
    """The reminders models move here from the scheduler app: state only, the tables keep their names."""


    initial = True

    dependencies = [
        ('clinic', '0004_apiclient'),
        ('scheduler', '0002_reminders_outbox'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.RunPython(move_content_types, reverse_code=move_content_types_back),
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.CreateModel(
                name='ContactOptOut',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('channel', models.CharField(choices=[('email', 'E-mail'), ('sms', 'SMS')], max_length=10)),
                    ('via', models.CharField(choices=[('email_link', 'Unsubscribe link in an e-mail'), ('list_unsubscribe', 'One-click unsubscribe (mail client)'), ('sms_stop', 'SMS reply STOP')], max_length=20)),
                    ('at', models.DateTimeField()),
                    ('detail', models.CharField(blank=True, max_length=200)),
                    ('patient', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='opt_outs', to='clinic.patient')),
                ],
                options={
                    'verbose_name': 'contact opt-out',
                    'db_table': 'scheduler_contactoptout',
                    'ordering': ['-at'],
                },
            ),
            migrations.CreateModel(
                name='ReminderTemplate',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('name', models.CharField(max_length=200)),
                    ('kind', models.CharField(choices=[('confirmation', 'Booking confirmation'), ('reminder', 'Appointment reminder'), ('pre_care', 'Pre-care'), ('post_care', 'Post-care'), ('rescheduled', 'Change notice: moved'), ('cancelled', 'Change notice: cancelled')], max_length=20)),
                    ('anchor', models.CharField(choices=[('event', 'When the booking change happens'), ('start', 'Appointment start'), ('completion', 'Treatment completion')], max_length=20)),
                    ('offset_value', models.IntegerField(default=0, help_text='Negative means before the anchor (pre-care), positive after it (post-care).')),
                    ('offset_unit', models.CharField(choices=[('minutes', 'minutes (elapsed)'), ('hours', 'hours (elapsed)'), ('days', 'days (calendar, same local time)')], default='hours', max_length=10)),
                    ('send_if_late', models.BooleanField(default=False, help_text='When the booking is made after the due time: send at once (care instructions) instead of leaving it out (a day-before reminder is pointless then).')),
                    ('email_subject', models.CharField(blank=True, max_length=200)),
                    ('email_text', models.TextField(blank=True, help_text='Plain-text body (Django template syntax).')),
                    ('email_html', models.TextField(blank=True, help_text='HTML body; leave empty to derive it from the text.')),
                    ('sms_text', models.TextField(blank=True, help_text='At most 480 characters. Never a diagnosis, procedure or drug name.')),
                    ('attach_ics', models.BooleanField(default=False, help_text='Attach the appointment as an iCalendar file.')),
                    ('origin', models.CharField(choices=[('sourced', 'Sourced default (from the reference texts)'), ('clinic', 'Clinic template (not from the sources; review and edit)')], default='clinic', max_length=10)),
                    ('source', models.CharField(blank=True, help_text='Reference text(s) a sourced default cites.', max_length=200)),
                    ('is_active', models.BooleanField(default=True)),
                    ('default_key', models.SlugField(blank=True, editable=False, help_text='Which shipped default this started as; setup never overwrites an edited template.', max_length=80, null=True, unique=True)),
                    ('updated_at', models.DateTimeField(auto_now=True)),
                    ('procedure', models.ForeignKey(blank=True, help_text='Leave empty for a message every booking gets (confirmation, day-before reminder).', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='clinic.proceduretype')),
                ],
                options={
                    'db_table': 'scheduler_remindertemplate',
                    'ordering': ['procedure_id', 'anchor', 'offset_value', 'id'],
                },
            ),
            migrations.CreateModel(
                name='WebhookEndpoint',
                fields=[
                    ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                    ('url', models.URLField(max_length=500)),
                    ('secret', models.CharField(editable=False, max_length=80)),
                    ('events', models.JSONField(blank=True, default=list, help_text='Event types to send; empty means all.')),
                    ('description', models.CharField(blank=True, max_length=200)),
                    ('is_active', models.BooleanField(default=True)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('client', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='webhook_endpoints', to='clinic.apiclient')),
                ],
                options={
                    'db_table': 'scheduler_webhookendpoint',
                    'ordering': ['client__name', 'url'],
                },
            ),
            migrations.CreateModel(
                name='OutboxMessage',
                fields=[
                    ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                    ('kind', models.CharField(choices=[('confirmation', 'Booking confirmation'), ('reminder', 'Appointment reminder'), ('pre_care', 'Pre-care'), ('post_care', 'Post-care'), ('rescheduled', 'Change notice: moved'), ('cancelled', 'Change notice: cancelled'), ('webhook', 'Webhook event')], max_length=20)),
                    ('channel', models.CharField(choices=[('email', 'E-mail'), ('sms', 'SMS'), ('webhook', 'Webhook')], max_length=10)),
                    ('event', models.CharField(blank=True, help_text='Webhook event type.', max_length=40)),
                    ('anchor_at', models.DateTimeField(blank=True, help_text='The instant the due time was computed from.', null=True)),
                    ('due_at', models.DateTimeField(help_text='When it may go (next attempt, after a failure).')),
                    ('status', models.CharField(choices=[('held', 'Held (pending clearance)'), ('pending', 'Pending'), ('sending', 'Claimed for sending'), ('sent', 'Sent'), ('failed', 'Failed (gave up)'), ('cancelled', 'Cancelled'), ('skipped', 'Skipped')], default='pending', max_length=10)),
                    ('attempts', models.PositiveSmallIntegerField(default=0)),
                    ('last_error', models.TextField(blank=True)),
                    ('provider_id', models.CharField(blank=True, max_length=200)),
                    ('recipient', models.CharField(blank=True, max_length=500)),
                    ('payload', models.JSONField(blank=True, default=dict)),
                    ('claim_token', models.UUIDField(blank=True, editable=False, null=True)),
                    ('claimed_until', models.DateTimeField(blank=True, null=True)),
                    ('sent_at', models.DateTimeField(blank=True, null=True)),
                    ('created_at', models.DateTimeField()),
                    ('updated_at', models.DateTimeField(auto_now=True)),
                    ('appointment', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='outbox_messages', to='clinic.appointment')),
                    ('template', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='messages', to='reminders.remindertemplate')),
                    ('endpoint', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='deliveries', to='reminders.webhookendpoint')),
                ],
                options={
                    'verbose_name': 'outbox message',
                    'db_table': 'scheduler_outboxmessage',
                    'ordering': ['due_at', 'id'],
                },
            ),
            migrations.AddConstraint(
                model_name='remindertemplate',
                constraint=models.CheckConstraint(condition=models.Q(('kind__in', ['confirmation', 'reminder', 'pre_care', 'post_care', 'rescheduled', 'cancelled'])), name='reminder_template_kind_valid'),
            ),
            migrations.AddIndex(
                model_name='outboxmessage',
                index=models.Index(fields=['status', 'due_at'], name='outbox_status_due'),
            ),
            migrations.AddIndex(
                model_name='outboxmessage',
                index=models.Index(fields=['appointment', 'kind'], name='outbox_appointment_kind'),
            ),
            migrations.AddConstraint(
                model_name='outboxmessage',
                constraint=models.CheckConstraint(condition=models.Q(('status__in', ['held', 'pending', 'sending', 'sent', 'failed', 'cancelled', 'skipped'])), name='outbox_status_valid'),
            ),
            migrations.AddConstraint(
                model_name='outboxmessage',
                constraint=models.CheckConstraint(condition=models.Q(('channel__in', ['email', 'sms', 'webhook'])), name='outbox_channel_valid'),
            ),
            migrations.AddConstraint(
                model_name='outboxmessage',
                constraint=models.UniqueConstraint(condition=models.Q(('status__in', ['held', 'pending']), ('template__isnull', False)), fields=('appointment', 'template', 'channel'), name='outbox_one_unsent_per_template_channel'),
            ),
            ],
            database_operations=[],
        ),
    ]
