"""Two filters written so that PostgreSQL can use the exclusion constraints' GiST indexes, in every plan.

The exclusion constraints (clinic migrations 0002, 0005) index the active appointments only (a partial
index: `status IN (...)`) by practitioner and by patient, with the time range each occupies. Django binds
every value as a parameter; a prepared statement's generic plan cannot see a bound status list, so it
cannot prove the partial index's predicate, and PostgreSQL plans the statement afresh on every run to use
it (about 0.2-0.5 ms of PostgreSQL CPU each time for the timeline and calendar reads). `InLiterals` writes a
fixed, code-defined list into the statement; `SpansOverlap` asks "does [start, end) meet [lo, hi)?" as the
range overlap the GiST index answers, instead of two comparisons that a B-tree index can only half answer.
"""

from __future__ import annotations

import re

from django.db.models import BooleanField, DateTimeField, Func, Lookup, Value

_CODE = re.compile(r"[A-Za-z0-9_]+")


class InLiterals(Lookup):
    """`field IN ('a', 'b')` with the values written into the SQL. Only for code-defined constants (status
    codes): anything but letters, digits and underscores is refused."""

    lookup_name = "in_literals"
    prepare_rhs = False

    def __init__(self, lhs, values) -> None:
        values = tuple(str(value) for value in values)
        if not values or not all(_CODE.fullmatch(value) for value in values):
            raise ValueError(f"InLiterals takes a non-empty list of plain codes, not {values!r}")
        super().__init__(lhs, values)

    def get_prep_lookup(self):
        return self.rhs

    def as_sql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        quoted = ", ".join(f"'{value}'" for value in self.rhs)
        return f"{lhs} IN ({quoted})", params


class SpansOverlap(Func):
    """PostgreSQL: `tstzrange(start, end, '[)') && tstzrange(least(lo, hi), greatest(lo, hi), '[]')`, the
    overlap test the exclusion constraints' indexes answer. Meant beside `start < hi AND end > lo`: it is
    implied by them for any window (closed bounds; an empty or reversed window too), so together they select
    exactly what the comparisons select, through the index. Alone, for a non-empty window, nearly the same
    (a span starting exactly at `hi` meets the closed window)."""

    output_field = BooleanField()
    conditional = True

    def __init__(self, start, end, lo, hi) -> None:
        super().__init__(start, end, Value(lo, output_field=DateTimeField()), Value(hi, output_field=DateTimeField()))

    def as_sql(self, compiler, connection, **extra):
        if connection.vendor != "postgresql":
            raise NotImplementedError("SpansOverlap is PostgreSQL's range overlap")
        (start, start_params), (end, end_params), (lo, lo_params), (hi, hi_params) = (
            compiler.compile(expression) for expression in self.get_source_expressions()
        )
        window = f"tstzrange(least({lo}, {hi}), greatest({lo}, {hi}), '[]')"
        params = (*start_params, *end_params, *lo_params, *hi_params, *lo_params, *hi_params)
        return f"tstzrange({start}, {end}, '[)') && {window}", params
