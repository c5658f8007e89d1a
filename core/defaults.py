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
    for attempt in (1, 2):
        found = {getattr(row, field): row for row in model.objects.filter(**{f"{field}__in": keys})}
        missing = [build(key) for key in keys if key not in found]
        try:
            with transaction.atomic():
                created = model.objects.bulk_create(missing) if missing else []
        except IntegrityError:
            if attempt == 2 or not _another_load_inserted(model, field, [getattr(row, field) for row in missing]):
                raise
            continue
        if stored is not None:
            for key in keys:
                if key in found:
                    stored(found[key])
        return created
    raise AssertionError("unreachable")  # pragma: no cover


def _another_load_inserted(model: type[models.Model], field: str, keys: list[str]) -> bool:
    """Whether some of `keys` are stored now (committed by another load since they were read)."""
    return model.objects.filter(**{f"{field}__in": keys}).exists()
