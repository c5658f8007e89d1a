"""On PostgreSQL, trigram indexes for the patient search (clinic.selectors.patient_search).

The search asks "holds these letters" of the names, the e-mail address, the names as people type them and the
phone number ('%…%' LIKEs, a regular expression anchored at the number's start, an exact number): no btree index
answers those, so every search read every live patient of the organisation. A GIN index of trigrams (pg_trgm, a
trusted extension since PostgreSQL 13: the database's owner may create it, as btree_gist in 0002) on each of those
expressions lets PostgreSQL read only the rows holding the typed letters. The expressions are the search's own:
`LOWER(first_name)` for `core.text_match.Lowered`, the columns as they are for the others.

Built CONCURRENTLY, outside a transaction (`atomic = False`), so bookings and searches go on while a large
organisation's indexes are built. A build that failed half-way leaves an invalid index behind: it is dropped and
built again by the next `migrate`. SQLite has no such index; its search reads the table as before.
"""

from django.db import migrations

INDEXES = {
    "patient_first_name_trgm": "(LOWER(first_name) gin_trgm_ops)",
    "patient_last_name_trgm": "(LOWER(last_name) gin_trgm_ops)",
    "patient_email_trgm": "(LOWER(email) gin_trgm_ops)",
    "patient_search_name_trgm": "(search_name gin_trgm_ops)",
    "patient_phone_trgm": "(phone gin_trgm_ops)",
}
# The number exactly, or its start: a btree in the pattern order answers both at once (a trigram index answers them
# too, but reads every entry of "+44"'s trigrams to do it).
BTREES = {
    "patient_phone_pattern": "(phone varchar_pattern_ops)",
}

INVALID = """
SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE NOT i.indisvalid AND c.relname = ANY(%s)
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(INVALID, [[*INDEXES, *BTREES]])
        for (name,) in cursor.fetchall():
            schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    for name, expression in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON clinic_patient USING gin {expression}"
        )
    for name, expression in BTREES.items():
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON clinic_patient {expression}")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in [*INDEXES, *BTREES]:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("clinic", "0023_fill_patient_search_names"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
