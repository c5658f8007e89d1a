"""The day-before reminder no longer says "tomorrow" by itself: quiet hours can move it two days ahead (a
07:00 visit's text leaves at 20:59 two evenings before), so it says the day as seen when it goes
({{ start_day_relative }}, {{ start_relative_local }}). Replaced only where the text is still the shipped
wording; a template an administrator edited keeps its own."""

from django.db import migrations

# (default_key, field, shipped before, shipped now)
CHANGES = [
    (
        "day-before-reminder",
        "email_subject",
        "Reminder: your appointment tomorrow at {{ start_time }}",
        "Reminder: your appointment {{ start_day_relative }} at {{ start_time }}",
    ),
    (
        "day-before-reminder",
        "email_text",
        "Hello {{ patient_first_name }},\n\nA reminder of your appointment tomorrow:\n\n{{ procedure_name }}\n"
        "{{ start_local }}, with {{ practitioner_name }}\n\nIf you cannot come, please let the clinic know as soon "
        "as you can.\n\n{{ clinic_name }}",
        "Hello {{ patient_first_name }},\n\nA reminder of your appointment {{ start_day_relative }}:\n\n"
        "{{ procedure_name }}\n{{ start_local }}, with {{ practitioner_name }}\n\nIf you cannot come, please let "
        "the clinic know as soon as you can.\n\n{{ clinic_name }}",
    ),
    (
        "day-before-reminder",
        "sms_text",
        "{{ clinic_name }}: a reminder of your appointment tomorrow, {{ start_local }}. Move or cancel: "
        "{{ manage_url }} Reply STOP to stop texts.",
        "{{ clinic_name }}: a reminder of your appointment {{ start_relative_local }}. Move or cancel: "
        "{{ manage_url }} Reply STOP to stop texts.",
    ),
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
    dependencies = [("reminders", "0012_outbox_partial_indexes")]
    operations = [migrations.RunPython(forwards, backwards)]
