"""tests/shipped.py: the suite's copies of the shipped catalogue, default rules, care texts and plan templates are the
rows the loaders make.

The fixtures that load them (catalogue, care_texts, platform_ready, templates) insert, after a process's first load,
a copy of the rows that load created instead of building and checking each again. Here: a copy has every field the
loader gives each row, its rows rank by id in the loader's order, each rule copied is announced as saved as the
loader announces it, a copy is dated when it is made, and a load into a database holding some of the rows is the
loader's own.
"""

from datetime import UTC, datetime

import pytest
import time_machine
from django.db.models import signals

from plans.defaults import plan_templates_load
from reminders.defaults import care_texts_load
from scheduler.defaults import catalogue_load, rules_load
from tests import shipped

# Each fixture's loading function in tests/shipped.py, and the loaders it stands for, in their order.
LOADERS = {
    "catalogue": (catalogue_load, rules_load),
    "care_texts": (care_texts_load,),
    "plan_templates": (plan_templates_load,),
}


def _rows(loaders) -> dict:
    """Each model's shipped rows as the loaders name them: (key, every field a copy carries), in id order."""
    return {
        model: [
            (getattr(row, field), shipped._values(row))
            for row in model.objects.filter(**{f"{field}__in": keys}).order_by("pk")
        ]
        for loader in loaders
        for model, (field, keys) in shipped.CREATES[loader].items()
    }


def _delete(loaders) -> None:
    for loader in reversed(loaders):  # the rules before the catalogue they name
        for model, (field, keys) in shipped.CREATES[loader].items():
            model.objects.filter(**{f"{field}__in": keys}).delete()


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(LOADERS))
def test_a_copy_is_the_rows_the_loader_makes_in_its_order(catalogue, name, django_assert_max_num_queries):
    loaders = LOADERS[name]
    getattr(shipped, name)()  # this process's first load (kept), or a copy of it
    assert all(loader in shipped._copies for loader in loaders)
    _delete(loaders)
    models = sum(len(shipped.CREATES[loader]) for loader in loaders)
    with django_assert_max_num_queries(models * 2 + 2 * len(loaders)):  # a check and an insert a model
        getattr(shipped, name)()
    copied = _rows(loaders)
    _delete(loaders)
    for loader in loaders:
        loader()
    assert copied == _rows(loaders)
    assert all(
        len(copied[model]) == len(keys) for loader in loaders for model, (_, keys) in shipped.CREATES[loader].items()
    )


@pytest.mark.django_db
def test_each_rule_copied_is_announced_as_saved_as_the_loader_announces_it(catalogue):
    """rules_load sends `post_save` for each rule it creates (its re-check starts once the load commits): so must a
    copy, or a transactional test's rules would be re-checked by the loader and not by a copy."""
    announced = []

    def receiver(sender, instance, created, raw, update_fields, using, **kwargs):
        announced.append((sender, instance.default_key, created, raw, update_fields, using, instance.pk is not None))

    def announcements(load) -> list:
        _delete(LOADERS["catalogue"])
        announced.clear()
        signals.post_save.connect(receiver, dispatch_uid="test-shipped-copies")
        try:
            load()
        finally:
            signals.post_save.disconnect(dispatch_uid="test-shipped-copies")
        return sorted(announced, key=repr)

    copy = announcements(shipped.catalogue)
    expected = {
        (model, key, True, False, None, "default", True)
        for model, (_, keys) in shipped.CREATES[rules_load].items()
        for key in keys
    }
    assert set(copy) == expected and len(copy) == len(expected)
    assert copy == announcements(lambda: (catalogue_load(), rules_load()))  # what the loader itself sends


@pytest.mark.django_db
def test_a_copy_is_dated_when_it_is_made_and_a_partial_state_is_left_to_the_loader(catalogue):
    shipped.care_texts()
    (model,) = shipped.CREATES[care_texts_load]
    _, keys = shipped.CREATES[care_texts_load][model]
    _delete((care_texts_load,))
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
    assert set(model.objects.values_list("default_key", flat=True)) == keys
