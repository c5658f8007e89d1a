"""Hot queries compiled to SQL once per connection and shape, then run again with other values.

Django builds and compiles a queryset afresh every time it runs. For a short query run once per
message or booking (the reminder sender locks and re-reads each row it sends), building and
compiling cost more Python than PostgreSQL spends running it (docs/benchmarks.md). `CompiledQuery`
keeps the SQL a `values_list` queryset compiles to, with its parameters and its result converters,
and runs it again with other ids and times; `columns` and `instances` rebuild model rows and their
relations from it as `select_related` would; `save_fields` is `Model.save(update_fields=...)` with
the UPDATE's SQL kept per model and field list. Both stay the ORM's SQL: a queryset is still what
defines the query, and a model with save signals or its own `save` is saved by Django.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.core.exceptions import EmptyResultSet
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, models, transaction
from django.db.models import signals
from django.db.models.constants import OnConflict
from django.db.transaction import TransactionManagementError

_UUID = models.UUIDField()
_DATETIME = models.DateTimeField()


def _kept(connection) -> dict:
    """What is compiled for this connection object (one per thread and alias), kept on it: a plan never meets
    another backend, and goes when the connection object does (a thread's, say), not before."""
    return connection.__dict__.setdefault("_compiled_queries", {})


def _sentinel(value):
    """A stand-in of the same kind as `value`, found again among the compiled query's parameters."""
    if isinstance(value, uuid.UUID):
        return uuid.uuid4()
    if isinstance(value, datetime) and value.tzinfo is not None:
        return datetime(2200, 1, 1, tzinfo=UTC) + timedelta(microseconds=secrets.randbelow(10**12))
    if isinstance(value, str):  # a code (a procedure's, say): no lookup of ours rewrites it
        return f"core.compiled.{secrets.token_hex(16)}"
    raise TypeError(
        f"CompiledQuery takes UUIDs, strings, lists of them and aware datetimes, not {type(value).__name__}"
    )


def _prepared(value, connection, kind: type | None = None):
    """`value` as the database adapter receives it in a lookup's parameters, prepared as a value of `kind` (the
    stand-in's type when the plan was compiled; the value's own type when not given): an id given as a string
    where a UUID stood in is prepared as a UUID."""
    kind = kind or type(value)
    if issubclass(kind, str):
        return value
    if issubclass(kind, datetime):
        return _DATETIME.get_db_prep_value(value, connection)
    return _UUID.get_db_prep_value(value, connection)


def _shape(args: Sequence) -> tuple:
    return tuple(len(arg) if isinstance(arg, list | tuple) else type(arg).__name__ for arg in args)


def _flat(args: Sequence) -> list:
    return [value for arg in args for value in (arg if isinstance(arg, list | tuple) else [arg])]


@dataclass(frozen=True)
class _Plan:
    sql: str
    params: tuple
    slots: tuple[tuple[int, int], ...]  # (position in params, index of the value that goes there)
    compiler: object  # the SQLCompiler it came from: its converters turn database values into Python ones
    converters: dict
    locks: bool
    kinds: tuple[type, ...] = ()  # each value's stand-in's type: how a value given later is prepared

    @classmethod
    def compile(cls, build: Callable[..., models.QuerySet], args: Sequence, using: str) -> _Plan:
        connection = connections[using]
        # Stand-ins for the values, found again in the parameters (a list stays a list of its length).
        stand_ins = [[_sentinel(v) for v in arg] if isinstance(arg, list | tuple) else _sentinel(arg) for arg in args]
        queryset = build(*stand_ins)
        query = queryset.query
        if not queryset._fields or list(queryset._fields) != [*query.values_select, *query.annotation_select]:
            raise TypeError("CompiledQuery takes a values_list() with its annotations named last, in order")
        compiler = query.get_compiler(using=using)
        try:
            sql, params = compiler.as_sql()
        except EmptyResultSet:  # `pk__in=[]`, say: Django answers nothing without asking the database
            return cls("", (), (), compiler, {}, False)
        where = {_prepared(s, connection): i for i, s in enumerate(_flat(stand_ins))}
        slots = tuple(
            (position, where[value])
            for position, value in enumerate(params)
            if isinstance(value, Hashable) and value in where
        )
        if {i for _, i in slots} != set(range(len(where))):
            raise TypeError("each value given to a CompiledQuery must reach the SQL as a parameter")
        converters = compiler.get_converters([column[0] for column in compiler.select[: compiler.col_count]])
        kinds = tuple(type(s) for s in _flat(stand_ins))
        return cls(sql, tuple(params), slots, compiler, converters, bool(query.select_for_update), kinds)

    def run(self, args: Sequence, using: str) -> list[tuple]:
        if not self.sql:
            return []
        connection = connections[using]
        if self.locks and not connection.in_atomic_block:
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        values = [_prepared(value, connection, kind) for value, kind in zip(_flat(args), self.kinds, strict=True)]
        params = list(self.params)
        for position, index in self.slots:
            params[position] = values[index]
        with connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            rows = cursor.fetchall()
        if self.converters:
            rows = [tuple(row) for row in self.compiler.apply_converters(rows, self.converters)]
        return rows


class CompiledQuery:
    """`build(*args)` returns a `values_list` queryset in which each of `args` (a UUID, a string, a list of
    either, an aware datetime) reaches the SQL as parameters (`pk__in=ids`, `start_at__lt=end`, ...); `rows(*args)`
    runs it, compiled once per connection and shape of the arguments (a list's length), and returns its
    tuples. A value Django would rewrite before it reaches the SQL is refused when first compiled."""

    def __init__(self, build: Callable[..., models.QuerySet]) -> None:
        self._build = build

    def rows(self, *args, using: str = DEFAULT_DB_ALIAS) -> list[tuple]:
        kept = _kept(connections[using])
        shape = (self, _shape(args))
        plan = kept.get(shape)
        if plan is None:
            plan = kept[shape] = _Plan.compile(self._build, args, using)
        return plan.run(args, using)


def _related_model(model: type[models.Model], path: str) -> type[models.Model]:
    """The model at the end of a path of forward relations ("appointment__patient"; "" is `model`)."""
    for name in filter(None, path.split("__")):
        model = model._meta.get_field(name).related_model
    return model


def _with_steps(related: Sequence[str]) -> list[str]:
    """The paths and every path they go through ("appointment" for "appointment__patient"), parents first."""
    paths: dict[str, None] = {}
    for path in related:
        parts = path.split("__")
        paths.update((("__".join(parts[: i + 1])), None) for i in range(len(parts)))
    return list(paths)


def columns(model: type[models.Model], *related: str) -> list[str]:
    """What a `values_list` of a CompiledQuery names to rebuild whole `model` rows with `instances`, and the
    rows of each of `related` (paths of forward relations, as `select_related` takes them)."""
    names = [f.attname for f in model._meta.concrete_fields]
    for path in _with_steps(related):
        names += [f"{path}__{f.attname}" for f in _related_model(model, path)._meta.concrete_fields]
    return names


def instances(
    rows: Sequence[tuple], model: type[models.Model], *related: str, using: str = DEFAULT_DB_ALIAS
) -> list[models.Model]:
    """Rows read as `columns(model, *related)`, as model instances loaded from the database, each related one
    cached on its parent as `select_related` would (None where a nullable relation is empty)."""
    steps = []  # (path, its parent's path, the relation, the related model, its column names, where its key is)
    for path in _with_steps(related):
        parent, _, name = path.rpartition("__")
        field = _related_model(model, parent)._meta.get_field(name)
        kind = field.related_model
        fields = kind._meta.concrete_fields
        steps.append((path, parent, field, kind, [f.attname for f in fields], fields.index(kind._meta.pk)))
    own = [f.attname for f in model._meta.concrete_fields]
    built = []
    for row in rows:
        at = len(own)
        loaded = {"": model.from_db(using, own, row[:at])}
        for path, parent, field, kind, names, key in steps:
            values = row[at : at + len(names)]
            at += len(names)
            owner = loaded.get(parent)
            loaded[path] = kind.from_db(using, names, values) if owner is not None and values[key] is not None else None
            if owner is not None:
                field.set_cached_value(owner, loaded[path])
        built.append(loaded[""])
    return built


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
    targets = [meta.get_field(name) for name in names]
    statements = _kept(connection)
    sql = statements.get((model, names))
    if sql is None:
        quote = connection.ops.quote_name
        sql = statements[(model, names)] = "UPDATE {} SET {} WHERE {} = %s".format(
            quote(meta.db_table),
            ", ".join(f"{quote(field.column)} = %s" for field in targets),
            quote(meta.pk.column),
        )
    params = [field.get_db_prep_save(field.pre_save(instance, False), connection) for field in targets]
    params.append(meta.pk.get_db_prep_value(instance.pk, connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if cursor.rowcount != 1:
            raise DatabaseError("Save with update_fields did not affect any rows.")


# Past this many parameters an insert goes through bulk_create, which splits it for the database's limit.
_INSERT_MAX_PARAMS = 900


def insert_rows(objs: Sequence[models.Model], *, using: str = DEFAULT_DB_ALIAS, skip_conflicts: bool = False) -> int:
    """`Model.objects.bulk_create(objs)` for new rows of one model: each field's `pre_save` (auto_now) and the
    database's preparation of each value, one INSERT whose SQL is kept per connection, model and number of
    rows, and the instances marked saved. Rows whose key the database assigns (an auto field) get it back by
    `RETURNING`, where the database can (PostgreSQL, SQLite 3.35+). Rows of several models or of an inherited
    one, some with a key and some without, with an expression for a value, or too many for one statement go
    through bulk_create. `skip_conflicts` adds `ON CONFLICT DO NOTHING` (PostgreSQL: unique and exclusion
    constraints alike) for rows whose key is set. Returns how many rows were inserted."""
    if not objs:
        return 0
    model = type(objs[0])
    connection = connections[using]
    meta = model._meta
    keyless = [obj.pk is None for obj in objs]
    returning = all(keyless) and meta.auto_field is meta.pk and connection.features.can_return_rows_from_bulk_insert
    fields = [f for f in meta.concrete_fields if not f.generated and not (returning and f is meta.pk)]
    if (
        meta.parents  # rows in several tables
        or any(type(obj) is not model for obj in objs)
        or (any(keyless) and (skip_conflicts or not returning))
        or len(objs) * len(fields) > _INSERT_MAX_PARAMS
        or any(hasattr(getattr(obj, f.attname), "resolve_expression") for obj in objs for f in fields)
    ):
        if skip_conflicts:  # bulk_create would not say which rows it skipped
            raise ValueError("skip_conflicts takes rows of one model with their keys set, within one statement")
        model._default_manager.using(using).bulk_create(objs)
        return len(objs)
    statements = _kept(connection)
    shape = ("insert", model, len(objs), returning, skip_conflicts)
    sql = statements.get(shape)
    if sql is None:
        quote, ops = connection.ops.quote_name, connection.ops
        on_conflict = OnConflict.IGNORE if skip_conflicts else None
        row = "({})".format(", ".join(["%s"] * len(fields)))
        sql = "{} {} ({}) VALUES {} {}".format(
            ops.insert_statement(on_conflict=on_conflict),  # SQLite: INSERT OR IGNORE INTO
            quote(meta.db_table),
            ", ".join(quote(f.column) for f in fields),
            ", ".join([row] * len(objs)),
            ops.on_conflict_suffix_sql(fields, on_conflict, None, None),  # PostgreSQL: ON CONFLICT DO NOTHING
        ).rstrip()
        if returning:
            sql += f" RETURNING {quote(meta.pk.column)}"
        statements[shape] = sql
    for obj in objs:
        obj._prepare_related_fields_for_save(operation_name="bulk_create")
    params = [field.get_db_prep_save(field.pre_save(obj, True), connection) for obj in objs for field in fields]
    # As bulk_create: a failure marks an enclosing transaction for rollback, so it cannot be committed by mistake.
    with transaction.atomic(using=using, savepoint=False), connection.cursor() as cursor:
        cursor.execute(sql, params)
        inserted = cursor.rowcount
        if returning:  # in the order of VALUES, as bulk_create reads them
            keys = cursor.fetchall()
            for obj, (pk,) in zip(objs, keys, strict=True):
                obj.pk = pk
            inserted = len(keys)
    if inserted == len(objs):  # some skipped (skip_conflicts): which ones, the count cannot say
        for obj in objs:
            obj._state.adding = False
            obj._state.db = using
    return inserted
