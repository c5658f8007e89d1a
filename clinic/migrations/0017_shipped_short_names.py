"""The shipped short names ("Botox") for a catalogue that predates them.

0006 added `ProcedureType.short_name` blank, and the catalogue's loader (run by `setup_demo --no-demo` on every
upgrade) creates missing rows only, so an install from before 0006 kept the long names in its messages and tight
spaces where a fresh one says "Botox". Only a blank short name of a shipped code is filled: one an operator set is
kept. Found by tests/qa/test_upgrade_probe.py."""

from django.db import migrations

SHIPPED = {  # fixtures/catalogue.json as of this migration
    "botox": "Botox",
    "filler": "Dermal filler",
    "microneedling": "Microneedling",
    "plasma_pen": "Plasma pen",
}


def fill(apps, schema_editor):
    ProcedureType = apps.get_model("clinic", "ProcedureType")
    for code, short in SHIPPED.items():
        ProcedureType.objects.filter(code=code, short_name="").update(short_name=short)


class Migration(migrations.Migration):
    dependencies = [("clinic", "0016_clinic_sms_name")]

    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]
