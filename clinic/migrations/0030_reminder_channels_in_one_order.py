"""Reminder channels stored in one order (e-mail, then SMS), as an update keeps them: a record registered with them
in another order read as changed by a PATCH naming them as stored (a new ETag, a 412 under a stale If-Match)."""

from django.db import migrations

ORDER = ("email", "sms")


def in_one_order(apps, schema_editor):
    Patient = apps.get_model("clinic", "Patient")
    changed = []
    for pk, channels in list(Patient.objects.values_list("id", "reminder_channels")):  # read whole, then written
        if not isinstance(channels, list) or len(set(channels)) != len(channels):
            continue
        ordered = [value for value in ORDER if value in channels] + [v for v in channels if v not in ORDER]
        if ordered != channels:
            changed.append(Patient(pk=pk, reminder_channels=ordered))
    Patient.objects.bulk_update(changed, ["reminder_channels"], batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [("clinic", "0029_patient_clinical_record_protected")]

    operations = [migrations.RunPython(in_one_order, migrations.RunPython.noop)]
