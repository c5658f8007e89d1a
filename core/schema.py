"""Dropping indexes a table does not need, and adding the ones it does, from a migration, without holding up
its writers.

Every index costs every insert into its table; on the tables a booking writes, an index no query needs
is paid for by every booking. Django makes some on its own: one per foreign key, which an index led by
the same column covers, and on PostgreSQL a second, `varchar_pattern_ops` (`…_like`), for a character
foreign key, which serves only `LIKE 'prefix%'`. A migration names the ones it drops with `Index`, so
the way back can make them again.

On PostgreSQL the drop is `CONCURRENTLY` (a migration using it sets `atomic = False`): it waits for
the transactions reading the table instead of blocking its writers while it waits. `IF EXISTS` on both
ways, so a database that never had one of them (SQLite has no `…_like`) migrates either way; on the way back
an invalid index an interrupted `CREATE INDEX CONCURRENTLY` left is dropped and made again. `adding` makes a
model's new indexes (`Meta.indexes`, partial ones included) the same way, `CONCURRENTLY` on PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.migrations import RunPython


@dataclass(frozen=True)
class Index:
    name: str
    table: str
    column: str
    opclass: str = ""  # PostgreSQL's only (varchar_pattern_ops): skipped on other databases

    def applies_to(self, vendor: str) -> bool:
        return not self.opclass or vendor == "postgresql"


def dropping(*indexes: Index) -> RunPython:
    """A migration operation that drops `indexes` and, reversed, makes them again."""

    def forwards(apps, schema_editor):
        connection = schema_editor.connection
        concurrently = "CONCURRENTLY " if connection.vendor == "postgresql" else ""
        for index in indexes:
            if index.applies_to(connection.vendor):
                schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {schema_editor.quote_name(index.name)}")

    def backwards(apps, schema_editor):
        connection = schema_editor.connection
        concurrently = "CONCURRENTLY " if connection.vendor == "postgresql" else ""
        quote = schema_editor.quote_name
        for index in indexes:
            if index.applies_to(connection.vendor):
                _drop_invalid(schema_editor, index.name)
                column = f"{quote(index.column)} {index.opclass}".strip()
                schema_editor.execute(
                    f"CREATE INDEX {concurrently}IF NOT EXISTS {quote(index.name)} ON {quote(index.table)} ({column})"
                )

    return RunPython(forwards, backwards)


def _drop_invalid(schema_editor, name: str) -> None:
    """Drop `name` if an interrupted `CREATE INDEX CONCURRENTLY` left it invalid (PostgreSQL), so that it is made
    again rather than kept as it is (`IF NOT EXISTS` would keep it)."""
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [name])
        invalid = cursor.fetchone()
    if invalid and invalid[0]:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}")


def adding(app_label: str, model_name: str, *names: str) -> RunPython:
    """A migration operation that makes the indexes `names` of the model's `Meta.indexes` (as the migration's
    state has them: the state operations run before it) and, reversed, drops them."""

    def indexes(apps):
        model = apps.get_model(app_label, model_name)
        found = {index.name: index for index in model._meta.indexes}
        return model, [found[name] for name in names]

    def forwards(apps, schema_editor):
        model, wanted = indexes(apps)
        postgresql = schema_editor.connection.vendor == "postgresql"
        for index in wanted:
            _drop_invalid(schema_editor, index.name)
            if postgresql:  # IF NOT EXISTS: a migration interrupted after making it runs again
                sql = str(index.create_sql(model, schema_editor, concurrently=True))
                schema_editor.execute(sql.replace("CONCURRENTLY", "CONCURRENTLY IF NOT EXISTS", 1))
            else:
                schema_editor.add_index(model, index)

    def backwards(apps, schema_editor):
        concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
        for name in names:
            schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {schema_editor.quote_name(name)}")

    return RunPython(forwards, backwards)
