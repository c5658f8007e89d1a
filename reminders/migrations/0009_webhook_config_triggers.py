"""The webhook endpoints a booking notifies are cached per process like the rule book (scheduler/versioned.py).

So every write that changes which endpoints an appointment's clinic reaches raises the configuration
version (the triggers of reminders 0005, the same function): the endpoints themselves, the grants of
their clients (clinics and organisations), and a client's revocation. `last_used_at`, written as
requests come in, is left out on purpose (the trigger on api_apiclient fires only for the columns named),
so the copy is not thrown away once a minute per client.
"""

from django.db import migrations

TABLES = ["scheduler_webhookendpoint", "api_apiclient_clinics", "api_apiclient_organisations"]
# A client's row matters only by its revocation (and its deletion, which takes its grants and endpoints).
CLIENT = "api_apiclient"
CLIENT_COLUMNS = ["revoked_at"]
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
    columns = ", ".join(CLIENT_COLUMNS)
    if vendor == "postgresql":
        schema_editor.execute(PG_FUNCTION)
        for table in TABLES:
            schema_editor.execute(
                f"CREATE TRIGGER {table}_config_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION scheduler_config_bump();"
            )
        schema_editor.execute(
            f"CREATE TRIGGER {CLIENT}_config_bump AFTER UPDATE OF {columns} OR DELETE OR TRUNCATE ON {CLIENT} "
            "FOR EACH STATEMENT EXECUTE FUNCTION scheduler_config_bump();"
        )
    elif vendor == "sqlite":
        for table in TABLES:
            for event in ("INSERT", "UPDATE", "DELETE"):
                schema_editor.execute(
                    f"CREATE TRIGGER {table}_config_bump_{event.lower()} AFTER {event} ON {table} "
                    f"BEGIN {SQLITE_BUMP} END;"
                )
        for name, event in (("update", f"UPDATE OF {columns}"), ("delete", "DELETE")):
            schema_editor.execute(
                f"CREATE TRIGGER {CLIENT}_config_bump_{name} AFTER {event} ON {CLIENT} BEGIN {SQLITE_BUMP} END;"
            )
    else:
        raise RuntimeError(f"No configuration-version triggers for {vendor}: caching would be unsafe.")


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for table in [*TABLES, CLIENT]:
        if vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_config_bump ON {table};")
        else:
            for event in ("insert", "update", "delete"):
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_config_bump_{event};")


class Migration(migrations.Migration):
    dependencies = [
        ("reminders", "0008_recall_kind"),
        ("clinic", "0013_patient_merge"),
        ("scheduler", "0007_repeat_defaults"),
    ]
    operations = [migrations.RunPython(forwards, backwards)]
