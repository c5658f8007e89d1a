"""Text compared in any case, in every script, on both databases.

SQLite's own lower() and LIKE fold ASCII letters only ("élodie" does not find "Élodie"); PostgreSQL's lower() folds
every letter of a UTF-8 database. `Lowered` is lower() there and a Python function registered on each SQLite
connection (`install_sqlite_unicode_lower`, on `connection_created` from `clinic.apps`) here. The patient search
and the duplicate check (`clinic.selectors`) compare names and addresses through it.

`normalise_name` goes further, as people type names: no accents, no apostrophes, hyphens as spaces ("José-María
O'Neil" is "jose maria oneil"). The duplicate check compares names so, and each patient keeps their name so
(`Patient.search_name`, written on every save) for the search to find "Núñez" typed "nunez".
"""

from __future__ import annotations

import unicodedata

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


# Apostrophes dropped (straight, typographic, the modifier letter), dashes, dots and commas as spaces.
_SEPARATORS = str.maketrans(
    {"-": " ", "‐": " ", "‑": " ", "–": " ", "—": " ", "'": "", "’": "", "‘": "", "ʼ": "", ".": " ", ",": " "}
)
# Letters NFKD leaves whole (no combining mark to drop) that people type without their stroke or ligature.
_PLAIN_LETTERS = str.maketrans(
    {"ł": "l", "ø": "o", "đ": "d", "ð": "d", "ħ": "h", "ı": "i", "æ": "ae", "œ": "oe", "þ": "th"}
)


def normalise_name(value: str) -> str:
    """Lower case, no accents (NFKD without combining marks; ł, ø, æ and the like as typed without them), hyphens
    and dots as spaces, apostrophes dropped, single spaces: "  José-María O’Neil " -> "jose maria oneil"."""
    decomposed = unicodedata.normalize("NFKD", value or "")
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(bare.casefold().translate(_PLAIN_LETTERS).translate(_SEPARATORS).split())
