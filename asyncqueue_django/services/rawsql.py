"""Raw SQL the engine's one-statement paths need and the ORM cannot say: an ``UPDATE …
RETURNING`` whose rows come back with their related rows, turned into model instances, and an
``INSERT … SELECT … WHERE EXISTS`` that inserts a row only while a guard row still matches.

Pure helpers over a model's metadata and a connection: no module state, no status rules (the
engine passes those in).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from django.db import connections, models, router
from django.db.backends.base.base import BaseDatabaseWrapper


def _returning(connection: BaseDatabaseWrapper) -> bool:
    """Whether the one-statement claim and finish (``UPDATE … RETURNING`` and data-modifying
    ``WITH``) are used: on PostgreSQL. Elsewhere the same guards run as ORM statements."""
    return connection.vendor == "postgresql"


def _column_list(model: type[models.Model], connection: BaseDatabaseWrapper) -> str:
    qn = connection.ops.quote_name
    return ", ".join(qn(f.column) for f in model._meta.concrete_fields)


#: How a joined row is built: (model, attribute on its parent, index of the parent in the plan).
_Plan = list[tuple[type[models.Model], str, int]]


def _related_select(
    model: type[models.Model], related: Sequence[str], connection: BaseDatabaseWrapper
) -> tuple[str, str, _Plan]:
    """The select list and joins that read ``model`` (as ``c``) with its ``related`` paths
    (``"team"``, ``"task__team"``), and the plan that builds the instances from one row."""
    qn = connection.ops.quote_name
    plan: _Plan = [(model, "", -1)]
    aliases = ["c"]
    select = [f"c.{qn(f.column)}" for f in model._meta.concrete_fields]
    joins = ""
    seen: dict[str, int] = {"": 0}
    for path in related:
        prefix = ""
        for part in path.split("__"):
            parent = seen[prefix]
            prefix = f"{prefix}__{part}" if prefix else part
            if prefix in seen:
                continue
            fk = plan[parent][0]._meta.get_field(part)
            target = fk.related_model
            assert isinstance(target, type)
            assert issubclass(target, models.Model)
            alias = f"r{len(plan)}"
            fk_column = str(getattr(fk, "column", ""))
            joins += (
                f" JOIN {qn(target._meta.db_table)} {alias} ON {alias}."
                f"{qn(target._meta.pk.column)} = {aliases[parent]}.{qn(fk_column)}"
            )
            select += [f"{alias}.{qn(f.column)}" for f in target._meta.concrete_fields]
            seen[prefix] = len(plan)
            plan.append((target, part, parent))
            aliases.append(alias)
    return ", ".join(select), joins, plan


@functools.cache
def _converters(
    model: type[models.Model], vendor: str, alias: str
) -> tuple[list[str], list[tuple[Any, list[Any]]]]:
    connection = connections[alias]
    out = []
    for f in model._meta.concrete_fields:
        col = f.get_col(model._meta.db_table)
        out.append((col, connection.ops.get_db_converters(col) + col.get_db_converters(connection)))
    return [f.attname for f in model._meta.concrete_fields], out


def _hydrate(plan: _Plan, values: Sequence[Any], connection: BaseDatabaseWrapper, db: str) -> Any:
    """Model instances from one row of :func:`_related_select`, each linked to its parent,
    through the same converters as the ORM's reads."""
    built: list[models.Model] = []
    offset = 0
    for model, attribute, parent in plan:
        names, converters = _converters(model, connection.vendor, db)
        row = []
        for (col, funcs), value in zip(
            converters, values[offset : offset + len(names)], strict=True
        ):
            for func in funcs:
                value = func(value, col, connection)
            row.append(value)
        offset += len(names)
        instance = model.from_db(db, names, row)
        if parent >= 0:
            setattr(built[parent], attribute, instance)
        built.append(instance)
    return built[0]


@functools.cache
def _insert_plan(
    model: type[models.Model], alias: str, link: type[models.Model] | None
) -> tuple[str, str, tuple[Any, ...]]:
    """The column list and typed placeholders that insert a row of ``model`` (a foreign key
    to ``link`` reads ``m``'s primary key), and the fields that take a parameter, in order."""
    connection = connections[alias]
    qn = connection.ops.quote_name
    columns, exprs, fields = [], [], []
    for f in model._meta.concrete_fields:
        if getattr(f, "db_returning", False):  # an auto-incremented id
            continue
        columns.append(qn(f.column))
        if link is not None and f.is_relation and f.related_model is link:
            exprs.append(f"m.{qn(link._meta.pk.column)}")
            continue
        exprs.append(f"%s::{f.db_type(connection)}")
        fields.append(f)
    return ", ".join(columns), ", ".join(exprs), tuple(fields)


def _insert_parts(
    instance: models.Model,
    connection: BaseDatabaseWrapper,
    link: type[models.Model] | None = None,
) -> tuple[str, str, list[Any]]:
    """The column list, the typed placeholders and the parameters that insert ``instance``
    (defaults and ``auto_now`` filled in as ``save()`` would); a foreign key to ``link``
    reads ``m``'s primary key instead (the row just moved)."""
    columns, exprs, fields = _insert_plan(type(instance), connection.alias, link)
    params = [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in fields]
    return columns, exprs, params


def _field(model: type[models.Model], name: str) -> Any:
    return model._meta.pk if name == "pk" else model._meta.get_field(name)


@functools.cache
def _exists_sql(model: type[models.Model], alias: str, names: tuple[str, ...], nulls: int) -> str:
    connection = connections[alias]
    qn = connection.ops.quote_name
    where = []
    for i, name in enumerate(names):
        f: Any = _field(model, name)
        column = qn(f.column)
        null = nulls & (1 << i)
        where.append(f"{column} IS NULL" if null else f"{column} = %s::{f.db_type(connection)}")
    return f"SELECT 1 FROM {qn(model._meta.db_table)} WHERE {' AND '.join(where)}"  # noqa: S608


def insert_if(instance: models.Model, guard: type[models.Model], **where: Any) -> bool:
    """Insert ``instance`` only if a row of ``guard`` matches ``where`` (field = value, or
    IS NULL for None; e.g. the request's API key, not revoked); False if none does, and
    nothing is inserted.

    On PostgreSQL one statement (``INSERT … SELECT … WHERE EXISTS (…)``), so a write checks
    its own precondition without a round trip of its own. Elsewhere the guard is read first
    (SQLite: one writer at a time, in-process).
    """
    using = router.db_for_write(type(instance))
    connection = connections[using]
    if not _returning(connection):
        lookups = {
            (f"{k}__isnull" if v is None else k): (True if v is None else v)
            for k, v in where.items()
        }
        if not guard._default_manager.filter(**lookups).exists():
            return False
        instance.save(force_insert=True, using=using)
        return True
    columns, exprs, params = _insert_parts(instance, connection)
    names = tuple(where)
    nulls = sum(1 << i for i, name in enumerate(names) if where[name] is None)
    guard_sql = _exists_sql(guard, using, names, nulls)
    guard_params = [
        _field(guard, name).get_db_prep_value(value, connection)
        for name, value in where.items()
        if value is not None
    ]
    qn = connection.ops.quote_name
    statement = (
        f"INSERT INTO {qn(instance._meta.db_table)} ({columns}) "
        f"SELECT {exprs} WHERE EXISTS ({guard_sql})"
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, [*params, *guard_params])
        inserted = bool(cursor.rowcount == 1)
    if inserted:
        instance._state.adding = False
        instance._state.db = using
    return inserted
