"""Drop the appointment table's indexes no query needs (core/schema.py): every booking inserts a row here.

The single-column indexes of the clinic, patient and practitioner are covered by the `(…, start_at)`
indexes each of them leads; on PostgreSQL the `varchar_pattern_ops` copies of the procedure's and
area's indexes serve only `LIKE`, which nothing asks of a code. The procedure's and area's own indexes
stay: deleting a catalogue entry looks its appointments up by them.
"""

from django.db import migrations, models

from core.schema import Index, dropping

TABLE = "clinic_appointment"


class Migration(migrations.Migration):
    atomic = False  # DROP INDEX CONCURRENTLY on PostgreSQL

    dependencies = [("clinic", "0013_patient_merge")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="appointment",
                    name=name,
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=models.deletion.PROTECT,
                        related_name="appointments",
                        to=f"clinic.{model}",
                    ),
                )
                for name, model in (("clinic", "clinic"), ("patient", "patient"), ("practitioner", "practitioner"))
            ],
            database_operations=[
                dropping(
                    Index("clinic_appointment_clinic_id_4cb97f6a", TABLE, "clinic_id"),
                    Index("clinic_appointment_patient_id_dd04daf6", TABLE, "patient_id"),
                    Index("clinic_appointment_practitioner_id_dfc601be", TABLE, "practitioner_id"),
                    Index(
                        "clinic_appointment_procedure_id_2b2644fe_like", TABLE, "procedure_id", "varchar_pattern_ops"
                    ),
                    Index("clinic_appointment_area_id_a8db38f8_like", TABLE, "area_id", "varchar_pattern_ops"),
                )
            ],
        )
    ]
