"""On PostgreSQL, forbid overlapping active appointments for one patient (a patient is in one place at once).

The booking services refuse it under the patient's row lock (`patient_busy`); this constraint is the
database's own guarantee, like the practitioner's (0002). An exclusion constraint cannot be added
NOT VALID, so a database that already holds such overlaps is named, not silently changed: resolve
them (cancel or move one of each pair), then migrate again.
"""
from django.db import migrations

OVERLAPS = """
SELECT a.id, b.id FROM clinic_appointment a JOIN clinic_appointment b
  ON a.patient_id = b.patient_id AND a.id < b.id
 AND tstzrange(a.start_at, a.end_at, '[)') && tstzrange(b.start_at, b.end_at, '[)')
 WHERE a.status IN ('pending_clearance', 'confirmed') AND b.status IN ('pending_clearance', 'confirmed')
 LIMIT 20;
"""
CREATE = """
CREATE EXTENSION IF NOT EXISTS btree_gist;
ALTER TABLE clinic_appointment ADD CONSTRAINT appointment_patient_no_overlap
EXCLUDE USING gist (patient_id WITH =, tstzrange(start_at, end_at, '[)') WITH &&)
WHERE (status IN ('pending_clearance', 'confirmed'));
"""
DROP = "ALTER TABLE clinic_appointment DROP CONSTRAINT IF EXISTS appointment_patient_no_overlap;"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(OVERLAPS)
        pairs = cursor.fetchall()
    if pairs:
        listed = "; ".join(f"{a} and {b}" for a, b in pairs)
        raise RuntimeError(
            "Some patients have overlapping active appointments; cancel or move one of each pair, "
            f"then migrate again: {listed}")
    schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("clinic", "0004_apiclient")]
    operations = [migrations.RunPython(forwards, backwards)]
