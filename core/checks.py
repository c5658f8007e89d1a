"""Database checks: the planner's statistics that the hot reads depend on.

Run by `manage.py check --database default`, and by `migrate` (Django runs database checks only with a
database named; tests skip them). A booking's calendar read has two GiST indexes that could answer it, the
patients' and the practitioners'; with the statistics PostgreSQL made of an empty appointments table it took
the patients' and read every booking of that day to find one practitioner's, which made a booking cost 2-3
times the database CPU (docs/scaling.md). Autovacuum keeps the statistics current; these checks say when
nothing does. They read PostgreSQL's activity statistics, which a crash, a failover or `pg_stat_reset` empty:
after one, a stale table goes unnamed until it changes again.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.checks import Tags, Warning, register
from django.db import connections

# A table is stale when more rows changed since its last ANALYZE than autovacuum would ever let pass with
# its default settings (50 rows + 10 % of the table) with room to spare: at least this many, and more than
# STALE_SHARE of the rows PostgreSQL last counted.
STALE_MIN_ROWS = 1000
STALE_SHARE = 0.2

_STATS_SQL = """
    SELECT s.relname, c.reltuples, s.n_mod_since_analyze, s.last_analyze IS NULL AND s.last_autoanalyze IS NULL
    FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
    WHERE s.schemaname = ANY (current_schemas(false))
    ORDER BY s.relname
"""


@dataclass(frozen=True)
class TableStats:
    name: str
    rows_counted: float  # pg_class.reltuples as the last ANALYZE (or VACUUM) left it; -1 when never counted
    changed_since: int  # rows inserted, updated or deleted since
    never_analysed: bool


def is_stale(table: TableStats) -> bool:
    counted = max(table.rows_counted, 0.0)
    return table.changed_since >= STALE_MIN_ROWS and table.changed_since > STALE_SHARE * counted


def findings(*, autovacuum: bool, tables: list[TableStats], alias: str = "default") -> list[Warning]:
    """The warnings for one database, from its autovacuum setting and its tables' statistics."""
    found = []
    if not autovacuum:
        found.append(
            Warning(
                f"PostgreSQL ({alias}) runs without autovacuum (or without track_counts, which it needs): "
                "nothing keeps the planner's statistics current.",
                hint="Turn autovacuum on, or schedule ANALYZE (docs/scaling.md); without statistics the "
                "booking's calendar read can take the wrong index.",
                id="core.W001",
            )
        )
    for table in tables:
        if is_stale(table):
            when = "it was never analysed" if table.never_analysed else "its last ANALYZE"
            found.append(
                Warning(
                    f"The planner's statistics of {table.name} ({alias}) are stale: {table.changed_since:,} rows "
                    f"changed since {when}.",
                    hint=f"Run ANALYZE {table.name}; and see that autovacuum runs (docs/scaling.md).",
                    obj=table.name,
                    id="core.W002",
                )
            )
    return found


@register(Tags.database)
def planner_statistics(app_configs=None, databases=None, **kwargs) -> list[Warning]:
    found: list[Warning] = []
    for alias in databases or ():
        connection = connections[alias]
        if connection.vendor != "postgresql":
            continue
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('autovacuum') = 'on' AND current_setting('track_counts') = 'on'")
            autovacuum = cursor.fetchone()[0]
            cursor.execute(_STATS_SQL)
            tables = [TableStats(name, float(rows), int(changed), never) for name, rows, changed, never in cursor]
        found += findings(autovacuum=autovacuum, tables=tables, alias=alias)
    return found
