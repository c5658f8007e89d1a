"""Each history record says which clinic recorded it, whose zone gives the procedure its day (docs/rules.md).

Until now the day of a record without a visit was read in the patient's home clinic's zone as it is today, so a
merge into a record whose home clinic is in another zone moved a reported day (found by
tests/qa/test_review_dec5f_cross_zone.py). Existing rows are filled as they were read: a visit's record with the
visit's clinic, a reported one with the patient's home clinic."""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def fill(apps, schema_editor):
    ProcedureRecord = apps.get_model("clinic", "ProcedureRecord")
    Appointment = apps.get_model("clinic", "Appointment")
    Patient = apps.get_model("clinic", "Patient")
    ProcedureRecord.objects.filter(clinic__isnull=True, appointment__isnull=False).update(
        clinic=Subquery(Appointment.objects.filter(pk=OuterRef("appointment_id")).values("clinic_id")[:1])
    )
    ProcedureRecord.objects.filter(clinic__isnull=True).update(
        clinic=Subquery(Patient.objects.filter(pk=OuterRef("patient_id")).values("clinic_id")[:1])
    )


class Migration(migrations.Migration):
    dependencies = [("clinic", "0017_shipped_short_names")]

    operations = [
        migrations.AddField(
            model_name="procedurerecord",
            name="clinic",
            field=models.ForeignKey(
                blank=True,
                help_text="The clinic that recorded it (a visit's: the visit's clinic); its zone gives the day.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="clinic.clinic",
            ),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
