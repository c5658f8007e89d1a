"""Creating the shipped rows of a model that are missing (setup_demo, run on every upgrade), in one statement.

Shared by the catalogue, the default rules, the care texts and the plan templates: a stored row keeps every
edit an operator made (`stored` sees it, to refresh what a release may refresh, such as a superseded citation),
a missing one is built (and checked) and inserted with the others in one `INSERT`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from django.db import IntegrityError, models, transaction

M = TypeVar("M", bound=models.Model)


def shipped_rows_create_missing(
    model: type[M],
    field: str,
    keys: Iterable[str],
    build: Callable[[str], M],
    stored: Callable[[M], None] | None = None,
) -> list[M]:
    """Create the rows of `model` whose `field` is one of `keys` and is not stored yet (`build(key)` makes each,
    raising if the shipped data is broken); return those created, in the order of `keys`.

    # Race condition: a second load running at the same time (two `setup_demo`s) inserts the same keys: this
    one's insert then fails on the unique key once the other's commits, and is tried once more after reading
    again what is stored. Not `ignore_conflicts`: on SQLite that is `INSERT OR IGNORE`, which would also skip a
    row that breaks a check constraint, quietly leaving a broken shipped row out."""
    keys = list(keys)

    def stored_now() -> tuple[dict[str, M], list[str]]:
        found = {getattr(row, field): row for row in model.objects.filter(**{f"{field}__in": keys})}
        return found, [key for key in keys if key not in found]

    found, missing = stored_now()
    try:
        created = _insert(model, [build(key) for key in missing])
    except IntegrityError:
        if not model.objects.filter(**{f"{field}__in": missing}).exists():
            raise  # a broken shipped row, not another load's
        found, missing = stored_now()
        created = _insert(model, [build(key) for key in missing])
    if stored is not None:
        for key in keys:
            if key in found:
                stored(found[key])
    return created


def _insert(model: type[M], rows: list[M]) -> list[M]:
    """`rows` in one INSERT, in a savepoint of its own (so a conflict leaves the caller's transaction usable)."""
    if not rows:
        return []
    with transaction.atomic():
        return model.objects.bulk_create(rows)
