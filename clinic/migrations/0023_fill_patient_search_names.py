from django.db import migrations, transaction

from core.text_match import search_name

BATCH = 2000


def fill_search_names(apps, schema_editor):
    """Every record's name as the search reads it (Patient.save keeps it from now on): a batch a transaction, so
    bookings and searches go on meanwhile."""
    Patient = apps.get_model("clinic", "Patient")
    last = None
    while True:
        rows = Patient.objects.order_by("pk")
        if last is not None:
            rows = rows.filter(pk__gt=last)
        with transaction.atomic():  # read and written under the rows' locks: a rename meanwhile waits for it
            batch = list(rows.select_for_update().only("pk", "first_name", "last_name")[:BATCH])
            if not batch:
                return
            for patient in batch:
                patient.search_name = search_name(patient.first_name, patient.last_name)
            Patient.objects.bulk_update(batch, ["search_name"])
        last = batch[-1].pk


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('clinic', '0022_patient_search_name'),
    ]

    operations = [
        migrations.RunPython(fill_search_names, migrations.RunPython.noop, elidable=True),
    ]
