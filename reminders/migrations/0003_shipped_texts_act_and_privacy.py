"""Shipped message texts that changed, replaced only where they are still the shipped wording.

Subjects no longer name the treatment (a subject shows on a lock screen); confirmations and
reminders carry the patient's link to see, move or cancel; sentences use short procedure names; the +48 h and +7 day aftercare get
proper HTML. A template an administrator edited keeps its own wording.
"""
from django.db import migrations

# (default_key, field, shipped before, shipped now)
CHANGES = [
    ('booking-confirmation', 'email_text', 'Hello {{ patient_first_name }},\n\nYour appointment is booked:\n\n{{ procedure_name }}\n{{ start_local }} (until {{ end_time }}), with {{ practitioner_name }}\n\nThe attached calendar file adds it to your calendar. To change or cancel it, please contact the clinic.\n\n{{ clinic_name }}', 'Hello {{ patient_first_name }},\n\nYour appointment is booked:\n\n{{ procedure_name }}\n{{ start_local }} (until {{ end_time }}), with {{ practitioner_name }}\n\nThe attached calendar file adds it to your calendar.\n\n{{ clinic_name }}'),
    ('booking-confirmation', 'sms_text', '{{ clinic_name }}: your appointment is booked for {{ start_local }}. Reply STOP to stop texts.', '{{ clinic_name }}: your appointment is booked for {{ start_local }}. Move or cancel: {{ manage_url }} Reply STOP to stop texts.'),
    ('day-before-reminder', 'sms_text', '{{ clinic_name }}: a reminder of your appointment tomorrow, {{ start_local }}. Reply STOP to stop texts.', '{{ clinic_name }}: a reminder of your appointment tomorrow, {{ start_local }}. Move or cancel: {{ manage_url }} Reply STOP to stop texts.'),
    ('appointment-moved', 'email_text', 'Hello {{ patient_first_name }},\n\nYour {{ procedure_name }} appointment has moved.\n\nNew time: {{ start_local }} (until {{ end_time }}), with {{ practitioner_name }}\nIt was: {{ previous_start_local }}\n\nThe attached calendar file updates your calendar.\n\n{{ clinic_name }}', 'Hello {{ patient_first_name }},\n\nYour {{ procedure_short }} appointment has moved.\n\nNew time: {{ start_local }} (until {{ end_time }}), with {{ practitioner_name }}\nIt was: {{ previous_start_local }}\n\nThe attached calendar file updates your calendar.\n\n{{ clinic_name }}'),
    ('appointment-cancelled', 'email_text', 'Hello {{ patient_first_name }},\n\nYour {{ procedure_name }} appointment on {{ start_local }} is cancelled.\nTo book another time, please contact the clinic.\n\n{{ clinic_name }}', 'Hello {{ patient_first_name }},\n\nYour {{ procedure_short }} appointment on {{ start_local }} is cancelled.\nTo book another time, please contact the clinic.\n\n{{ clinic_name }}'),
    ('microneedling-pre-care-24h', 'email_subject', 'Preparing for your microneedling on {{ start_date }}', 'Preparing for your visit on {{ start_date }}'),
    ('microneedling-post-care-completion', 'email_subject', 'Aftercare for your microneedling treatment', 'Aftercare for your treatment at {{ clinic_name }}'),
    ('microneedling-post-care-48h', 'email_html', '', '<p>Hello {{ patient_first_name }},</p>\n<p>It is 48 hours since your microneedling treatment: <strong>makeup may be used again</strong>.</p>\n<p>The other first-week restrictions still apply until a week after your treatment.</p>\n<p><strong>Call the clinic</strong> if you notice spreading redness, pus, fever, darkening of the skin, or lasting numbness.</p>\n<p>{{ clinic_name }}</p>'),
    ('microneedling-post-care-7d', 'email_html', '', '<p>Hello {{ patient_first_name }},</p>\n<p>It is a week since your microneedling treatment: <strong>the one-week restrictions end today</strong> (public bathing, sunbathing, tanning salon, sauna, sweaty training and dusty chores).</p>\n<p>Other treatments follow their own intervals:</p>\n<ul>{% for item in next_possible %}<li>{{ item.name }}: {% if item.from_date %}possible from <strong>{{ item.from_date }}</strong>{% if item.ideally_from_date %}, ideally from {{ item.ideally_from_date }}{% endif %}{% else %}please ask the clinic before booking{% endif %}</li>{% endfor %}</ul>\n<p>{{ clinic_name }}</p>'),
    ('botox-pre-care-24h', 'email_text', 'Hello {{ patient_first_name }},\n\nYour {{ procedure_name }} appointment is on {{ start_local }}.\n\nIf anything about your health or your medicines has changed since you booked,\nplease tell the clinic before your appointment.\n\n{{ clinic_name }}', 'Hello {{ patient_first_name }},\n\nYour {{ procedure_short }} appointment is on {{ start_local }}.\n\nIf anything about your health or your medicines has changed since you booked,\nplease tell the clinic before your appointment.\n\n{{ clinic_name }}'),
    ('filler-pre-care-24h', 'email_text', 'Hello {{ patient_first_name }},\n\nYour {{ procedure_name }} appointment is on {{ start_local }}.\n\nIf anything about your health or your medicines has changed since you booked,\nplease tell the clinic before your appointment.\n\n{{ clinic_name }}', 'Hello {{ patient_first_name }},\n\nYour {{ procedure_short }} appointment is on {{ start_local }}.\n\nIf anything about your health or your medicines has changed since you booked,\nplease tell the clinic before your appointment.\n\n{{ clinic_name }}'),
    ('plasma-pen-pre-care-24h', 'email_text', 'Hello {{ patient_first_name }},\n\nYour {{ procedure_name }} appointment is on {{ start_local }}.\n\nIf anything about your health or your medicines has changed since you booked,\nplease tell the clinic before your appointment.\n\n{{ clinic_name }}', 'Hello {{ patient_first_name }},\n\nYour {{ procedure_short }} appointment is on {{ start_local }}.\n\nIf anything about your health or your medicines has changed since you booked,\nplease tell the clinic before your appointment.\n\n{{ clinic_name }}'),
]


def forwards(apps, schema_editor):
    ReminderTemplate = apps.get_model("reminders", "ReminderTemplate")
    for key, field, old, new in CHANGES:
        ReminderTemplate.objects.filter(default_key=key, **{field: old}).update(**{field: new})


def backwards(apps, schema_editor):
    ReminderTemplate = apps.get_model("reminders", "ReminderTemplate")
    for key, field, old, new in CHANGES:
        ReminderTemplate.objects.filter(default_key=key, **{field: new}).update(**{field: old})


class Migration(migrations.Migration):
    dependencies = [("reminders", "0002_sms_segments_and_sms_only_pre_care")]
    operations = [migrations.RunPython(forwards, backwards)]
