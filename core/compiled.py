"""Hot queries compiled to SQL once per connection and shape, then run again with other ids.

Django builds and compiles a queryset afresh every time it runs. For a short query run once per
message (the reminder sender locks and re-reads each row it sends), building and compiling cost
the worker more Python than PostgreSQL spends running it (docs/benchmarks.md). `CompiledQuery`
keeps the SQL a `values_list` queryset compiles to, with its parameters and its result
converters, and runs it again with other ids; `save_fields` is `Model.save(update_fields=...)`
with the UPDATE's SQL kept per model and field list. Both stay the ORM's SQL: a queryset is
still what defines the query, and a model with save signals or its own `save` is saved by Django.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from weakref import WeakKeyDictionary

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, models
from django.db.models import signals
from django.db.transaction import TransactionManagementError

_UUID = models.UUIDField()


@dataclass(frozen=True)
class _Plan:
    sql: str
    params: tuple
    slots: tuple[tuple[int, int], ...]  # (position in params, index of the id that goes there)
    compiler: object  # the SQLCompiler it came from: its converters turn database values into Python ones
    converters: dict
    locks: bool

    @classmethod
    def compile(cls, build: Callable[[list[uuid.UUID]], models.QuerySet], size: int, using: str) -> _Plan:
        connection = connections[using]
        sentinels = [uuid.uuid4() for _ in range(size)]  # stand-ins for the ids: found again in the parameters
        queryset = build(sentinels)
        query = queryset.query
        if not queryset._fields or list(queryset._fields) != [*query.values_select, *query.annotation_select]:
            raise TypeError("CompiledQuery takes a values_list() with its annotations named last, in order")
        compiler = query.get_compiler(using=using)
        sql, params = compiler.as_sql()
        where = {_UUID.get_db_prep_value(s, connection): i for i, s in enumerate(sentinels)}
        slots = tuple(
            (position, where[value])
            for position, value in enumerate(params)
            if isinstance(value, Hashable) and value in where
        )
        if sorted(i for _, i in slots) != list(range(size)):
            raise TypeError("each id given to a CompiledQuery must reach the SQL once, as a parameter")
        converters = compiler.get_converters([column[0] for column in compiler.select[: compiler.col_count]])
        return cls(sql, tuple(params), slots, compiler, converters, bool(query.select_for_update))

    def run(self, ids: Sequence[uuid.UUID], using: str) -> list[tuple]:
        connection = connections[using]
        if self.locks and not connection.in_atomic_block:
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        params = list(self.params)
        for position, index in self.slots:
            params[position] = _UUID.get_db_prep_value(ids[index], connection)
        with connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            rows = cursor.fetchall()
        if self.converters:
            rows = [tuple(row) for row in self.compiler.apply_converters(rows, self.converters)]
        return rows


class CompiledQuery:
    """`build(ids)` returns a `values_list` queryset that names each of `ids` once (`pk__in=ids`, say);
    `rows(ids)` runs it, compiled once per connection and number of ids, and returns its tuples."""

    def __init__(self, build: Callable[[list[uuid.UUID]], models.QuerySet]) -> None:
        self._build = build
        # per connection object (one per thread and alias), so a compiled plan never meets another backend
        self._plans: WeakKeyDictionary = WeakKeyDictionary()

    def rows(self, ids: Sequence[uuid.UUID], *, using: str = DEFAULT_DB_ALIAS) -> list[tuple]:
        plans = self._plans.setdefault(connections[using], {})
        plan = plans.get(len(ids))
        if plan is None:
            plan = plans[len(ids)] = _Plan.compile(self._build, len(ids), using)
        return plan.run(ids, using)


_UPDATES: WeakKeyDictionary = WeakKeyDictionary()


def save_fields(instance: models.Model, fields: Sequence[str], *, using: str = DEFAULT_DB_ALIAS) -> None:
    """`instance.save(update_fields=fields)` for a row that exists: each field's `pre_save` (auto_now), the
    database's preparation of each value, one UPDATE by primary key, and DatabaseError when no row was
    updated, as Django does; its SQL is kept per connection, model and fields."""
    model = type(instance)
    if (
        model.save is not models.Model.save
        or signals.pre_save.has_listeners(model)
        or signals.post_save.has_listeners(model)
    ):
        instance.save(update_fields=fields, using=using)
        return
    connection = connections[using]
    meta = model._meta
    names = tuple(dict.fromkeys(fields))
    columns = [meta.get_field(name) for name in names]
    statements = _UPDATES.setdefault(connection, {})
    sql = statements.get((model, names))
    if sql is None:
        quote = connection.ops.quote_name
        sql = statements[(model, names)] = "UPDATE {} SET {} WHERE {} = %s".format(
            quote(meta.db_table),
            ", ".join(f"{quote(field.column)} = %s" for field in columns),
            quote(meta.pk.column),
        )
    params = [field.get_db_prep_save(field.pre_save(instance, False), connection) for field in columns]
    params.append(meta.pk.get_db_prep_value(instance.pk, connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if cursor.rowcount != 1:
            raise DatabaseError("Save with update_fields did not affect any rows.")
