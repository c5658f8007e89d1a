"""Dropping indexes a table does not need, from a migration, without holding up its writers.

Every index costs every insert into its table; on the tables a booking writes, an index no query needs
is paid for by every booking. Django makes some on its own: one per foreign key, which an index led by
the same column covers, and on PostgreSQL a second, `varchar_pattern_ops` (`…_like`), for a character
foreign key, which serves only `LIKE 'prefix%'`. A migration names the ones it drops with `Index`, so
the way back can make them again.

On PostgreSQL the drop is `CONCURRENTLY` (a migration using it sets `atomic = False`): it waits for
the transactions reading the table instead of blocking its writers while it waits. `IF EXISTS` on both
ways, so a database that never had one of them (SQLite has no `…_like`) migrates either way; on the way back
an invalid index an interrupted `CREATE INDEX CONCURRENTLY` left is dropped and made again.
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
                if connection.vendor == "postgresql":  # an interrupted CREATE … CONCURRENTLY leaves it invalid
                    with connection.cursor() as cursor:
                        cursor.execute(
                            "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [index.name]
                        )
                        invalid = cursor.fetchone()
                    if invalid and invalid[0]:
                        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quote(index.name)}")
                column = f"{quote(index.column)} {index.opclass}".strip()
                schema_editor.execute(
                    f"CREATE INDEX {concurrently}IF NOT EXISTS {quote(index.name)} ON {quote(index.table)} ({column})"
                )

    return RunPython(forwards, backwards)
