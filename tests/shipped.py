"""The shipped catalogue, default rules, care texts and plan templates as the suite's fixtures load them, thousands of
times a run.

The first load in a test process runs the loader itself (scheduler.defaults.catalogue_load and rules_load,
reminders.defaults.care_texts_load, plans.defaults.plan_templates_load: each row built and checked, `full_clean`
and every SMS text rendered at its longest, as `setup_demo` does), and keeps a copy of each row it created. A later
load into a database holding none of those rows inserts the same rows again from the copy, in one statement a
model, without building and checking each anew: the checks gave the same answer for the same rows, and they cost a
test about 60 ms for the care texts (a fifth of a typical probe's set-up) and 5-10 ms for the default rules (7
December 2026, a slow machine of this kind). A rule inserted from a copy is announced as saved (`post_save`), as rules_load announces each rule it
creates (its re-check starts once the load commits). Any other state (some of the rows stored, a row naming
another row by a generated id) runs the loader, as does every test that calls a loader itself. `updated_at` is left
to the insert (now, as the loader's insert sets it), so a copy is dated by the test that makes it, not the one that
made the first; the rows go in in the loader's order, so their ids rank as the loader's would.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from django.db import models, transaction

from plans.defaults import SHIPPED, plan_templates_load
from plans.models import PlanTemplate
from reminders.defaults import CARE_TEXTS, care_texts_load
from reminders.models import ReminderTemplate
from scheduler.defaults import _CATALOGUE, FIXTURES, catalogue_load, rules_created_announce, rules_load
from scheduler.models import ContraindicationRule, IntervalRule

KEY = "default_key"  # the field that names a shipped row, but for the catalogue's (its code, the primary key)
CODE = "code"
ANNOUNCED = (IntervalRule, ContraindicationRule)  # rules_load sends `post_save` for each rule it creates


def _shipped_keys() -> dict[Callable[[], object], dict[type[models.Model], tuple[str, set[str]]]]:
    """What each loader creates when nothing is stored: each model's naming field and shipped keys, read from the
    fixtures."""
    texts = json.loads(CARE_TEXTS.read_text(encoding="utf-8"))["templates"]
    plans = json.loads(SHIPPED.read_text(encoding="utf-8"))
    catalogue = json.loads((FIXTURES / "catalogue.json").read_text(encoding="utf-8"))
    rules = json.loads((FIXTURES / "rules.json").read_text(encoding="utf-8"))
    return {
        catalogue_load: {model: (CODE, {row["code"] for row in catalogue[name]}) for model, name in _CATALOGUE},
        rules_load: {
            IntervalRule: (KEY, {row["key"] for row in rules["intervals"]}),
            ContraindicationRule: (KEY, {row["key"] for row in rules["contraindications"]}),
        },
        care_texts_load: {ReminderTemplate: (KEY, {row["key"] for row in texts})},
        plan_templates_load: {
            ReminderTemplate: (KEY, {plans["recall_message"]["key"]}),
            PlanTemplate: (KEY, {row["key"] for row in plans["templates"]}),
        },
    }


CREATES = _shipped_keys()

# loader -> [(model, [field values of each row it created])], once a load made every row from nothing.
_copies: dict[Callable[[], object], list[tuple[type[models.Model], list[dict]]]] = {}


def catalogue() -> None:
    load(catalogue_load)
    load(rules_load)


def care_texts() -> None:
    load(care_texts_load)


def plan_templates() -> None:
    load(plan_templates_load)


def load(loader: Callable[[], object]) -> None:
    """`loader()`'s rows in the database, from this process's copy where none of them is stored yet."""
    shipped = CREATES[loader]
    copies = _copies.get(loader)
    if copies is not None and not any(
        model.objects.filter(**{f"{field}__in": keys}).exists() for model, (field, keys) in shipped.items()
    ):
        with transaction.atomic():
            for model, rows in copies:
                created = model.objects.bulk_create([model(**row) for row in rows])
                if model in ANNOUNCED:
                    rules_created_announce(model, created)  # as rules_load announces the rules it creates
        return
    before = {model: set(model.objects.values_list("pk", flat=True)) for model in shipped}
    loader()
    made = [(model, list(model.objects.exclude(pk__in=before[model]).order_by("pk"))) for model in shipped]
    if copies is None and all(
        {getattr(row, shipped[model][0]) for row in rows} == shipped[model][1] for model, rows in made
    ):
        if all(map(_copyable, made)):
            _copies[loader] = [(model, [_values(row) for row in rows]) for model, rows in made]


def _fields(model: type[models.Model]) -> list[models.Field]:
    """The fields a copy carries: not a generated id (a catalogue code is kept), nor a date the insert sets
    (auto_now)."""
    return [
        field
        for field in model._meta.concrete_fields
        if not (field.primary_key and isinstance(field, models.AutoField))
        and not getattr(field, "auto_now", False)
        and not getattr(field, "auto_now_add", False)
    ]


def _copyable(made: tuple[type[models.Model], list[models.Model]]) -> bool:
    """Rows that name no other row by a generated id (a catalogue code is kept; an organisation's id is not)."""
    model, rows = made
    return all(
        getattr(row, field.attname) is None or not isinstance(field.target_field, models.AutoField)
        for row in rows
        for field in _fields(model)
        if field.is_relation
    )


def _values(row: models.Model) -> dict:
    return {field.attname: getattr(row, field.attname) for field in _fields(type(row))}
