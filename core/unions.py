"""Rows of several tables in one statement: `UNION ALL` branches in one layout of columns.

Each branch selects a kind number first, then every column of `layout` in its order: a column of the
branch's own model where it has one, a typed NULL where it has not. Typed, so that PostgreSQL matches the
branches' column types whichever pair of branches it resolves first (an untyped NULL meeting another
becomes text). The first branch's columns give every row its Python types (Django's converters).
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import models
from django.db.models import F, IntegerField, Value
from django.db.models.functions import Cast

_KIND = "u_kind"


def branch(queryset: models.QuerySet, kind: int, layout: Mapping[str, models.Field], **columns):
    """`queryset` as a `values_list` of (kind, *layout): `columns` maps layout names to the model's field
    paths (or expressions); the rest are NULLs of the layout's types."""
    unknown = set(columns) - set(layout)
    if unknown:
        raise TypeError(f"not in the layout: {sorted(unknown)}")
    select = {_KIND: Value(kind, output_field=IntegerField())}
    for name, field in layout.items():
        if name not in columns:
            select[name] = Cast(Value(None), output_field=field)
        else:
            select[name] = F(columns[name]) if isinstance(columns[name], str) else columns[name]
    # No ORDER BY inside a compound statement (SQLite refuses it).
    return queryset.order_by().annotate(**select).values_list(*select)


def union(branches: list[models.QuerySet]) -> models.QuerySet:
    """The branches as one `UNION ALL` statement, in order (no duplicate is removed)."""
    return branches[0].union(*branches[1:], all=True)
