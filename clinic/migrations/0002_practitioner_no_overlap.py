"""On PostgreSQL, forbid overlapping active appointments for one practitioner.

The booking services already check overlaps under a row lock; this constraint
is the database's own guarantee. SQLite has no exclusion constraints, and
there its IMMEDIATE transactions serialise every writer instead.
"""
from django.db import migrations

CREATE = """
CREATE EXTENSION IF NOT EXISTS btree_gist;
ALTER TABLE clinic_appointment ADD CONSTRAINT appointment_practitioner_no_overlap
EXCLUDE USING gist (practitioner_id WITH =, tstzrange(start_at, end_at, '[)') WITH &&)
WHERE (status IN ('pending_clearance', 'confirmed'));
"""
DROP = "ALTER TABLE clinic_appointment DROP CONSTRAINT IF EXISTS appointment_practitioner_no_overlap;"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("clinic", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
