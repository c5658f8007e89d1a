"""tests/shipped.py: the suite's copies of the shipped care texts and plan templates are the rows the loaders make.

The fixtures that load them (care_texts, platform_ready, templates) insert, after a process's first load, a copy of
the rows that load created instead of building and checking each again. Here: a copy has every field the loader
gives each row, its rows rank by id in the loader's order, it is dated when it is made, and a load into a database
holding some of the rows is the loader's own.
"""

from datetime import UTC, datetime

import pytest
import time_machine

from plans.defaults import plan_templates_load
from reminders.defaults import care_texts_load
from tests import shipped

LOADERS = {"care_texts": care_texts_load, "plan_templates": plan_templates_load}


def _rows(loader) -> dict:
    """Each model's shipped rows as the loader names them: (key, every field a copy carries), in id order."""
    return {
        model: [
            (row.default_key, shipped._values(row)) for row in model.objects.filter(default_key__in=keys).order_by("pk")
        ]
        for model, keys in shipped.CREATES[loader].items()
    }


def _delete(loader) -> None:
    for model, keys in shipped.CREATES[loader].items():
        model.objects.filter(default_key__in=keys).delete()


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(LOADERS))
def test_a_copy_is_the_rows_the_loader_makes_in_its_order(catalogue, name, django_assert_max_num_queries):
    loader = LOADERS[name]
    getattr(shipped, name)()  # this process's first load (kept), or a copy of it
    assert loader in shipped._copies
    _delete(loader)
    with django_assert_max_num_queries(len(shipped.CREATES[loader]) * 2 + 2):  # a check and an insert a model
        getattr(shipped, name)()
    copied = _rows(loader)
    _delete(loader)
    loader()
    assert copied == _rows(loader)
    assert all(len(rows) == len(shipped.CREATES[loader][model]) for model, rows in copied.items())


@pytest.mark.django_db
def test_a_copy_is_dated_when_it_is_made_and_a_partial_state_is_left_to_the_loader(catalogue):
    shipped.care_texts()
    (model,) = shipped.CREATES[care_texts_load]
    _delete(care_texts_load)
    later = datetime(2031, 7, 1, 12, tzinfo=UTC)
    with time_machine.travel(later, tick=False):
        shipped.care_texts()
    assert set(model.objects.values_list("updated_at", flat=True)) == {later}
    kept = model.objects.order_by("pk").first()
    kept.name = "Edited by an administrator"
    kept.save(update_fields=["name"])
    model.objects.exclude(pk=kept.pk).delete()
    shipped.care_texts()  # some stored: the loader's own way, which keeps the edit and adds the rest
    assert model.objects.get(pk=kept.pk).name == "Edited by an administrator"
    assert set(model.objects.values_list("default_key", flat=True)) == shipped.CREATES[care_texts_load][model]
