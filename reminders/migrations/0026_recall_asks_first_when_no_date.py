"""A recall no longer invites a booking the rules refuse on every date: when the engine finds no earliest start for
the recalled treatment (a course that has not ended, an absolute contraindication), the patient still hears they are
due, but is asked to talk to the clinic before booking ({{ recall_ask_first }}: reminders.content.recall_outlook),
naming no medication or condition. And where a warning advises waiting past the earliest date the rules allow, the
texts say "possible from X, ideally from Y" as the aftercare does ({{ recall_ideal_date }}). Replaced only where the
text is still the shipped wording; a template an administrator edited keeps its own."""

from django.db import migrations

# (default_key, field, shipped before, shipped now)
CHANGES = [
    (
        "recall-due",
        "email_subject",
        "Time to book your next visit at {{ clinic_name }}",
        "{% if recall_ask_first %}Your next visit at {{ clinic_name }}{% else %}Time to book your next visit at {{ clinic_name }}{% endif %}",
    ),
    (
        "recall-due",
        "email_text",
        "Hello {{ patient_first_name }},\n\nYou are due for your next {{ recall_procedure_name }} around {{ recall_due_date }}.{% if recall_earliest_date %} The earliest date that is right for you is {{ recall_earliest_date }}.{% endif %}\n\nReply to this e-mail or call us{% if clinic_phone %} on {{ clinic_phone }}{% endif %} to book.\n\n{{ clinic_name }}",
        "Hello {{ patient_first_name }},\n\nYou are due for your next {{ recall_procedure_name }} around {{ recall_due_date }}.{% if recall_ask_first %} Please talk to us before booking: we need to check something in your record with you first.{% elif recall_ideal_date %} It is possible {% if recall_earliest_date %}from {{ recall_earliest_date }}{% else %}now{% endif %}, ideally from {{ recall_ideal_date }}.{% elif recall_earliest_date %} The earliest date that is right for you is {{ recall_earliest_date }}.{% endif %}\n\nReply to this e-mail or call us{% if clinic_phone %} on {{ clinic_phone }}{% endif %}{% if not recall_ask_first %} to book{% endif %}.\n\n{{ clinic_name }}",
    ),
    (
        "recall-due",
        "sms_text",
        "{{ clinic_name }}: you are due for your next treatment around {{ recall_due_date }}{% if recall_earliest_date %} (possible from {{ recall_earliest_date }}){% endif %}. Call us{% if clinic_phone %} on {{ clinic_phone }}{% endif %} to book. Reply STOP to stop texts.",
        "{{ clinic_name }}: you are due for your next treatment around {{ recall_due_date }}{% if recall_ask_first %}. Please talk to us before booking: we need to check something in your record with you first. Call us{% if clinic_phone %} on {{ clinic_phone }}{% endif %}.{% else %}{% if recall_ideal_date %} (possible {% if recall_earliest_date %}from {{ recall_earliest_date }}{% else %}now{% endif %}, ideally from {{ recall_ideal_date }}){% elif recall_earliest_date %} (possible from {{ recall_earliest_date }}){% endif %}. Call us{% if clinic_phone %} on {{ clinic_phone }}{% endif %} to book.{% endif %} Reply STOP to stop texts.",
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
    dependencies = [("reminders", "0025_thank_you_says_the_visits_day")]
    operations = [migrations.RunPython(forwards, backwards)]
