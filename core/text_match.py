"""Text compared in any case, in every script, on both databases.

SQLite's own lower() and LIKE fold ASCII letters only ("élodie" does not find "Élodie"); PostgreSQL's lower() folds
every letter of a UTF-8 database. `Lowered` is lower() there and a Python function registered on each SQLite
connection (`install_sqlite_unicode_lower`, on `connection_created` from `clinic.apps`) here. The patient search
and the duplicate check (`clinic.selectors`) compare names and addresses through it.

`normalise_name` goes further, as people type names: no accents, no apostrophes, hyphens as spaces ("José-María
O'Neil" is "jose maria oneil"). The duplicate check compares names so, and each patient keeps their name so, in each
form people type it (`search_name`: joined, family name first, umlauts spelt out; `Patient.search_name`, written
on every save) for the search to find "Núñez" typed "nunez", "Mary-Jane" typed "maryjane", "Müller" typed "mueller".
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


# Marks that make another sound, not an accent: kana's voicing marks (ダン "Dan" is not タン "Tan").
_KEPT_MARKS = frozenset({"\u3099", "\u309a"})
# Umlauts as German writes them without the dots (a keyboard without them, a passport's machine-readable line).
_UMLAUTS_SPELT = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"})


def normalise_name(value: str) -> str:
    """Lower case, no accents (NFKD without combining marks; ł, ø, æ and the like as typed without them), hyphens
    and dots as spaces, apostrophes dropped, single spaces: "  José-María O’Neil " -> "jose maria oneil"."""
    decomposed = unicodedata.normalize("NFKD", value or "")
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch) or ch in _KEPT_MARKS)
    return " ".join(bare.casefold().translate(_PLAIN_LETTERS).translate(_SEPARATORS).split())


def name_forms(value: str) -> list[str]:
    """`normalise_name`, and with umlauts spelt out where it has any ("Müller": "muller", "mueller")."""
    forms = [normalise_name(value)]
    spelt = normalise_name(value.translate(_UMLAUTS_SPELT))
    return forms if spelt == forms[0] else [*forms, spelt]


def search_name(first_name: str, last_name: str) -> str:
    """A patient's names as the search reads them (`Patient.search_name`): each plain form, then each joined
    ("mary jane smith jones", "maryjanesmithjones") and joined family name first, as names written without spaces
    are typed ("王小明" for 小明 王), the forms kept apart by " | " so that no word is found across two of them."""
    forms: list[str] = []
    for plain in name_forms(f"{first_name} {last_name}"):
        forms += [plain, plain.replace(" ", "")]
    forms += [plain.replace(" ", "") for plain in name_forms(f"{last_name} {first_name}")]
    return " | ".join(dict.fromkeys(form for form in forms if form))
