"""The move notice also tells a change of practitioner at the same time: the e-mails name the practitioner, so a
patient whose confirmation named one hears of another ({% if time_changed %}, {{ previous_practitioner_name }}).
Replaced only where the text is still the shipped wording; a template an administrator edited keeps its own (it is
sent for such a change too, and says the time as it stands)."""

from django.db import migrations

# (default_key, field, shipped before, shipped now)
CHANGES = [
    (
        "appointment-moved",
        "email_subject",
        "Your appointment has moved to {{ start_date }}",
        "{% if time_changed %}Your appointment has moved to {{ start_date }}{% else %}Your appointment on "
        "{{ start_date }} is now with {{ practitioner_name }}{% endif %}",
    ),
    (
        "appointment-moved",
        "email_text",
        "Hello {{ patient_first_name }},\n\nYour {{ procedure_short }} appointment has moved.\n\nNew time: "
        "{{ start_local }} (until {{ end_time }}), with {{ practitioner_name }}\nIt was: {{ previous_start_local }}\n\n"
        "The attached calendar file updates your calendar.\n\n{{ clinic_name }}",
        "Hello {{ patient_first_name }},\n\n{% if time_changed %}Your {{ procedure_short }} appointment has moved.\n\n"
        "New time: {{ start_local }} (until {{ end_time }}), with {{ practitioner_name }}\nIt was: "
        "{{ previous_start_local }}{% if previous_practitioner_name %}, with {{ previous_practitioner_name }}"
        "{% endif %}{% else %}Your {{ procedure_short }} appointment ({{ start_local }}, until {{ end_time }}) is now "
        "with {{ practitioner_name }}{% if previous_practitioner_name %} instead of {{ previous_practitioner_name }}"
        "{% endif %}. The time has not changed.{% endif %}\n\nThe attached calendar file updates your calendar.\n\n"
        "{{ clinic_name }}",
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
    dependencies = [("reminders", "0019_webhook_events_each_once")]
    operations = [migrations.RunPython(forwards, backwards)]
