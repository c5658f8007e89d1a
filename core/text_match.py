"""Text compared in any case, in every script, on both databases.

SQLite's own lower() and LIKE fold ASCII letters only ("élodie" does not find "Élodie"); PostgreSQL's lower() folds
every letter of a UTF-8 database. `Lowered` is lower() there and a Python function registered on each SQLite
connection (`install_sqlite_unicode_lower`, on `connection_created` from `clinic.apps`) here. The patient search
and the duplicate check (`clinic.selectors`) compare names and addresses through it.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import CharField, Func

SQLITE_UNICODE_LOWER = "unicode_lower"


def install_sqlite_unicode_lower(sender, connection: BaseDatabaseWrapper, **kwargs) -> None:
    if connection.vendor == "sqlite":
        connection.connection.create_function(
            SQLITE_UNICODE_LOWER,
            1,
            lambda value: value.lower() if isinstance(value, str) else value,
            deterministic=True,
        )


class Lowered(Func):
    """A text column in lower case, every script's letters (compare it with a value put through `str.lower`)."""

    function = "LOWER"
    output_field = CharField()

    def as_sqlite(self, compiler, connection, **extra_context):
        return super().as_sql(compiler, connection, function=SQLITE_UNICODE_LOWER.upper(), **extra_context)
