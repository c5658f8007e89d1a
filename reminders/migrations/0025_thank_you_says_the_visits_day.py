"""A thank-you at completion no longer says "today" by itself: a visit marked done the next morning (the clinician's
notes written the day after) sends it then, so it says the visit's day as seen when it goes ({{ start_day_relative }}:
"today", "yesterday" or "on Mon 8 Jun"). Replaced only where the text is still the shipped wording; a template an
administrator edited keeps its own."""

from django.db import migrations

# (default_key, field, shipped before, shipped now)
CHANGES = [
    (
        'microneedling-post-care-completion',
        'email_text',
        "Hello {{ patient_first_name }},\n\nThank you for your visit today. Here is how to look after your skin.\n\nFrom now:\n- Do not wash your face for at least 5 hours, ideally 12.\n- No makeup, eyelids included, for 48 hours.\n- Avoid sunlight and heavily scented creams for 24 hours.\n- A hyaluronic acid serum may be used for the first 3 days.\n- Redness like a mild sunburn, tightness and tingling are expected and fade within hours.\n\nFor the first week:\n- No direct sun for 2 days; wear a hat.\n- No public bathing, sunbathing, tanning salon, sauna, other beauty treatments, sweaty training or dusty chores.\n\nWhen you may have other treatments again:\n{% for item in next_possible %}- {{ item.name }}: {% if item.from_date %}possible from {{ item.from_date }}{% if item.ideally_from_date %}, ideally from {{ item.ideally_from_date }}{% endif %}{% else %}please ask the clinic before booking{% endif %}\n{% endfor %}\n\nCall the clinic if you notice spreading redness, pus, fever, darkening of the skin, or lasting numbness.\n\n{{ clinic_name }}",
        "Hello {{ patient_first_name }},\n\nThank you for your visit {{ start_day_relative }}. Here is how to look after your skin.\n\nFrom now:\n- Do not wash your face for at least 5 hours, ideally 12.\n- No makeup, eyelids included, for 48 hours.\n- Avoid sunlight and heavily scented creams for 24 hours.\n- A hyaluronic acid serum may be used for the first 3 days.\n- Redness like a mild sunburn, tightness and tingling are expected and fade within hours.\n\nFor the first week:\n- No direct sun for 2 days; wear a hat.\n- No public bathing, sunbathing, tanning salon, sauna, other beauty treatments, sweaty training or dusty chores.\n\nWhen you may have other treatments again:\n{% for item in next_possible %}- {{ item.name }}: {% if item.from_date %}possible from {{ item.from_date }}{% if item.ideally_from_date %}, ideally from {{ item.ideally_from_date }}{% endif %}{% else %}please ask the clinic before booking{% endif %}\n{% endfor %}\n\nCall the clinic if you notice spreading redness, pus, fever, darkening of the skin, or lasting numbness.\n\n{{ clinic_name }}",
    ),
    (
        'microneedling-post-care-completion',
        'email_html',
        "<p>Hello {{ patient_first_name }},</p>\n<p>Thank you for your visit today. Here is how to look after your skin.</p>\n<p><strong>From now:</strong></p>\n<ul>\n<li>Do not wash your face for at least 5 hours, ideally 12.</li>\n<li>No makeup, eyelids included, for 48 hours.</li>\n<li>Avoid sunlight and heavily scented creams for 24 hours.</li>\n<li>A hyaluronic acid serum may be used for the first 3 days.</li>\n<li>Redness like a mild sunburn, tightness and tingling are expected and fade within hours.</li>\n</ul>\n<p><strong>For the first week:</strong></p>\n<ul>\n<li>No direct sun for 2 days; wear a hat.</li>\n<li>No public bathing, sunbathing, tanning salon, sauna, other beauty treatments, sweaty training or dusty chores.</li>\n</ul>\n<p><strong>When you may have other treatments again:</strong></p>\n<ul>{% for item in next_possible %}<li>{{ item.name }}: {% if item.from_date %}possible from <strong>{{ item.from_date }}</strong>{% if item.ideally_from_date %}, ideally from {{ item.ideally_from_date }}{% endif %}{% else %}please ask the clinic before booking{% endif %}</li>{% endfor %}</ul>\n<p><strong>Call the clinic if you notice spreading redness, pus, fever, darkening of the skin, or lasting numbness.</strong></p>\n<p>{{ clinic_name }}</p>",
        "<p>Hello {{ patient_first_name }},</p>\n<p>Thank you for your visit {{ start_day_relative }}. Here is how to look after your skin.</p>\n<p><strong>From now:</strong></p>\n<ul>\n<li>Do not wash your face for at least 5 hours, ideally 12.</li>\n<li>No makeup, eyelids included, for 48 hours.</li>\n<li>Avoid sunlight and heavily scented creams for 24 hours.</li>\n<li>A hyaluronic acid serum may be used for the first 3 days.</li>\n<li>Redness like a mild sunburn, tightness and tingling are expected and fade within hours.</li>\n</ul>\n<p><strong>For the first week:</strong></p>\n<ul>\n<li>No direct sun for 2 days; wear a hat.</li>\n<li>No public bathing, sunbathing, tanning salon, sauna, other beauty treatments, sweaty training or dusty chores.</li>\n</ul>\n<p><strong>When you may have other treatments again:</strong></p>\n<ul>{% for item in next_possible %}<li>{{ item.name }}: {% if item.from_date %}possible from <strong>{{ item.from_date }}</strong>{% if item.ideally_from_date %}, ideally from {{ item.ideally_from_date }}{% endif %}{% else %}please ask the clinic before booking{% endif %}</li>{% endfor %}</ul>\n<p><strong>Call the clinic if you notice spreading redness, pus, fever, darkening of the skin, or lasting numbness.</strong></p>\n<p>{{ clinic_name }}</p>",
    ),
    (
        'botox-post-care-completion',
        'email_subject',
        "After your treatment today",
        "After your treatment {{ start_day_relative }}",
    ),
    (
        'botox-post-care-completion',
        'email_text',
        "Hello {{ patient_first_name }},\n\nThank you for your visit today. Please follow the aftercare advice your practitioner gave you.\n\n{% if next_possible %}When you may have other treatments again:\n{% for item in next_possible %}- {{ item.name }}: {% if item.from_date %}possible from {{ item.from_date }}{% if item.ideally_from_date %}, ideally from {{ item.ideally_from_date }}{% endif %}{% else %}please ask the clinic before booking{% endif %}\n{% endfor %}\n{% endif %}\nIf anything worries you, call the clinic.\n\n{{ clinic_name }}",
        "Hello {{ patient_first_name }},\n\nThank you for your visit {{ start_day_relative }}. Please follow the aftercare advice your practitioner gave you.\n\n{% if next_possible %}When you may have other treatments again:\n{% for item in next_possible %}- {{ item.name }}: {% if item.from_date %}possible from {{ item.from_date }}{% if item.ideally_from_date %}, ideally from {{ item.ideally_from_date }}{% endif %}{% else %}please ask the clinic before booking{% endif %}\n{% endfor %}\n{% endif %}\nIf anything worries you, call the clinic.\n\n{{ clinic_name }}",
    ),
    (
        'botox-post-care-completion',
        'sms_text',
        "{{ clinic_name }}: thank you for your visit today. If anything worries you, please call us.",
        "{{ clinic_name }}: thank you for your visit {{ start_day_relative }}. If anything worries you, please call us.",
    ),
    (
        'filler-post-care-completion',
        'email_subject',
        "After your treatment today",
        "After your treatment {{ start_day_relative }}",
    ),
    (
        'filler-post-care-completion',
        'email_text',
        "Hello {{ patient_first_name }},\n\nThank you for your visit today. Please follow the aftercare advice your practitioner gave you.\n\n{% if next_possible %}When you may have other treatments again:\n{% for item in next_possible %}- {{ item.name }}: {% if item.from_date %}possible from {{ item.from_date }}{% if item.ideally_from_date %}, ideally from {{ item.ideally_from_date }}{% endif %}{% else %}please ask the clinic before booking{% endif %}\n{% endfor %}\n{% endif %}\nIf anything worries you, call the clinic.\n\n{{ clinic_name }}",
        "Hello {{ patient_first_name }},\n\nThank you for your visit {{ start_day_relative }}. Please follow the aftercare advice your practitioner gave you.\n\n{% if next_possible %}When you may have other treatments again:\n{% for item in next_possible %}- {{ item.name }}: {% if item.from_date %}possible from {{ item.from_date }}{% if item.ideally_from_date %}, ideally from {{ item.ideally_from_date }}{% endif %}{% else %}please ask the clinic before booking{% endif %}\n{% endfor %}\n{% endif %}\nIf anything worries you, call the clinic.\n\n{{ clinic_name }}",
    ),
    (
        'filler-post-care-completion',
        'sms_text',
        "{{ clinic_name }}: thank you for your visit today. If anything worries you, please call us.",
        "{{ clinic_name }}: thank you for your visit {{ start_day_relative }}. If anything worries you, please call us.",
    ),
    (
        'plasma-pen-post-care-completion',
        'email_subject',
        "After your treatment today",
        "After your treatment {{ start_day_relative }}",
    ),
    (
        'plasma-pen-post-care-completion',
        'email_text',
        "Hello {{ patient_first_name }},\n\nThank you for your visit today. Please follow the aftercare advice your practitioner gave you.\n\n{% if next_possible %}When you may have other treatments again:\n{% for item in next_possible %}- {{ item.name }}: {% if item.from_date %}possible from {{ item.from_date }}{% if item.ideally_from_date %}, ideally from {{ item.ideally_from_date }}{% endif %}{% else %}please ask the clinic before booking{% endif %}\n{% endfor %}\n{% endif %}\nIf anything worries you, call the clinic.\n\n{{ clinic_name }}",
        "Hello {{ patient_first_name }},\n\nThank you for your visit {{ start_day_relative }}. Please follow the aftercare advice your practitioner gave you.\n\n{% if next_possible %}When you may have other treatments again:\n{% for item in next_possible %}- {{ item.name }}: {% if item.from_date %}possible from {{ item.from_date }}{% if item.ideally_from_date %}, ideally from {{ item.ideally_from_date }}{% endif %}{% else %}please ask the clinic before booking{% endif %}\n{% endfor %}\n{% endif %}\nIf anything worries you, call the clinic.\n\n{{ clinic_name }}",
    ),
    (
        'plasma-pen-post-care-completion',
        'sms_text',
        "{{ clinic_name }}: thank you for your visit today. If anything worries you, please call us.",
        "{{ clinic_name }}: thank you for your visit {{ start_day_relative }}. If anything worries you, please call us.",
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
    dependencies = [("reminders", "0024_care_texts_refuse_control_characters")]
    operations = [migrations.RunPython(forwards, backwards)]
