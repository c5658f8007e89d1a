"""Database triggers that give scheduler_configversion a new value on every write to what processes cache.

scheduler/versioned.py keeps the rule book, the catalogue and the reminder templates in memory keyed
by that value. A trigger catches every path (ORM, admin, bulk update, raw SQL); the new value is
random, not value + 1, so a bump in a transaction that rolls back is never seen again later.
It lives here because reminders is the topmost app whose tables it watches.
"""
from django.db import migrations

TABLES = [
    "scheduler_intervalrule", "scheduler_contraindicationrule",
    "clinic_proceduretype", "clinic_medication", "clinic_condition", "clinic_treatmentarea",
    "scheduler_remindertemplate",
]

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION scheduler_config_bump() RETURNS trigger AS $$
BEGIN
  UPDATE scheduler_configversion SET value = floor(random() * 9000000000000000000)::bigint WHERE id = 1;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""
SQLITE_BUMP = "UPDATE scheduler_configversion SET value = abs(random()) WHERE id = 1;"


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_FUNCTION)
        for table in TABLES:
            schema_editor.execute(
                f"CREATE TRIGGER {table}_config_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION scheduler_config_bump();")
    elif vendor == "sqlite":
        for table in TABLES:
            for event in ("INSERT", "UPDATE", "DELETE"):
                schema_editor.execute(
                    f"CREATE TRIGGER {table}_config_bump_{event.lower()} AFTER {event} ON {table} "
                    f"BEGIN {SQLITE_BUMP} END;")
    else:
        raise RuntimeError(f"No configuration-version triggers for {vendor}: caching would be unsafe.")


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for table in TABLES:
        if vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_config_bump ON {table};")
        else:
            for event in ("insert", "update", "delete"):
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_config_bump_{event};")
    if vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS scheduler_config_bump();")


class Migration(migrations.Migration):
    dependencies = [
        ("reminders", "0004_patient_page_opt_ins"),
        ("scheduler", "0005_config_version"),
        ("clinic", "0008_clinic_country"),
    ]
    operations = [migrations.RunPython(forwards, backwards)]
