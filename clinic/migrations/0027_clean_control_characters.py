"""Control characters stored before they were refused (clinic 0025 and 0026), made fit: in the fields typed on one
line (names, sender and SMS names, a map link) each run of them becomes a space, in those typed on several lines (a
clinic's address, a cancel reason) all but tab, CR and LF go (core.plain_text). So an edit of another field of such
a record is not refused over a value nobody sent, and the invitations, texts and FHIR strings built from it carry
none. Only the rows holding one are read and written, each with its own save; a patient's search name is made again
with the name. E-mail addresses are left as they are (no control character can be dropped from one and leave the
address it was); the outputs leave them out of headers."""

from django.db import migrations
from django.db.models import Q

from core.plain_text import single_line, without_controls
from core.text_match import search_name

# PostgreSQL's and Python's regular expressions both read these escapes (NUL is never stored).
ANY_CONTROL = r"[\x01-\x1f\x7f-\x9f]"

ONE_LINE = {
    "Patient": ["first_name", "last_name"],
    "Clinic": ["name", "sender_name", "sms_name", "map_url"],
    "Practitioner": ["name"],
    "Organisation": ["name"],
    "ProcedureType": ["name", "short_name"],
}
LINES = {
    "Clinic": ["address"],
    "Appointment": ["cancel_reason"],
}


def clean(apps, schema_editor):
    for model_name in {*ONE_LINE, *LINES}:
        model = apps.get_model("clinic", model_name)
        one_line, lines = ONE_LINE.get(model_name, []), LINES.get(model_name, [])
        condition = None
        for field in [*one_line, *lines]:
            term = Q(**{f"{field}__regex": ANY_CONTROL})
            condition = term if condition is None else condition | term
        for row in model.objects.filter(condition).iterator():
            for field in one_line:
                setattr(row, field, single_line(getattr(row, field)))
            for field in lines:
                setattr(row, field, without_controls(getattr(row, field)))
            fields = [*one_line, *lines]
            if model_name == "Patient":
                row.search_name = search_name(row.first_name, row.last_name)
                fields.append("search_name")
            row.save(update_fields=fields)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("clinic", "0026_refuse_control_characters_more"),
    ]

    operations = [migrations.RunPython(clean, migrations.RunPython.noop, elidable=True)]
