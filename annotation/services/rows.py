"""Single-row SQL for the hot paths (the queue's next and judgement, the audit log, consensus).

Building and compiling a statement through the ORM costs several times the CPU of running it
(bench/queue_load.py, docs/benchmarks/queue.md), so the statements the queue sends on every
request are built here once per shape (table and column names from the models, cached) and the
rows they return are turned into model instances as the ORM would (``from_db`` with the backend's
and the fields' converters). Like ``QuerySet.update`` these helpers send no ``pre_save`` /
``post_save`` signals: none is connected to the models they write (Pair, Lease, Judgement,
AuditEvent, Consensus); tests/test_bench_queue_fast_paths.py checks the rows equal the ORM's.
"""

from __future__ import annotations

import functools

from django.db import DEFAULT_DB_ALIAS, connection, connections


def table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def col(alias: str, model, name: str) -> str:
    """``alias."column"`` of a field (by name or attname)."""
    return f"{alias}.{connection.ops.quote_name(model._meta.get_field(name).column)}"


def cursor():
    """A cursor for the hot paths' own SQL (this module, the queue, consensus, the queue's token
    check). On PostgreSQL its statements are bound server-side, so psycopg prepares each shape once
    per connection after ``prepare_threshold`` runs (set by the settings, DATABASE_PREPARED_STATEMENTS)
    and the server stops planning it on every request: planning these joins cost more CPU than
    running them (``EXPLAIN ANALYZE``: 1.1 ms planning, 0.2 ms execution for the token check).
    Everything else keeps Django's client-side binding, which never prepares. The cursor is
    Django's wrapper around psycopg's, opened as ``connection.cursor()`` opens one (health check,
    connection, error wrapping, query logging for tests and debug), so nothing else changes."""
    conn = db()
    if conn.vendor != "postgresql" or conn.settings_dict["OPTIONS"].get("prepare_threshold") is None:
        return conn.cursor()
    from django.db.backends.postgresql.base import ServerBindingCursor

    conn.close_if_health_check_failed()
    conn.ensure_connection()
    with conn.wrap_database_errors:
        raw = ServerBindingCursor(conn.connection)
        return conn._prepare_cursor(_with_timezone(conn, raw))


def _with_timezone(conn, raw):
    """As Django's ``create_cursor``: timestamps load in the connection's time zone."""
    from django.db.backends.postgresql.base import TIMESTAMPTZ_OID, Format, register_tzloader

    loader = conn.connection.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
    if conn.timezone != loader.timezone:
        register_tzloader(conn.timezone, raw)
    return raw


def db():
    """The default connection itself: ``connection`` is a proxy that looks the connection up (an
    asgiref context-local read) on every attribute access, a measurable share of a request that
    touches it a few hundred times. Take it once per call."""
    return connections[DEFAULT_DB_ALIAS]


@functools.lru_cache(maxsize=64)
def _converters(vendor: str, model, fields: tuple[str, ...]) -> tuple:
    """``(index, column, converters)`` of the fields that have converters (most have none)."""
    del vendor  # part of the cache key only
    conn = db()
    out = []
    for index, name in enumerate(fields):
        field = model._meta.get_field(name)
        column = field.get_col(model._meta.db_table)
        converters = tuple(conn.ops.get_db_converters(column) + field.get_db_converters(conn))
        if converters:
            out.append((index, column, converters))
    return tuple(out)


def load(model, fields: tuple[str, ...], values, conn=None):
    """A model instance from a row of ``fields`` (attnames; others deferred), converted as the ORM converts."""
    conn = conn or db()
    plan = _converters(conn.vendor, model, fields)
    if plan:
        values = list(values)
        for index, column, converters in plan:
            value = values[index]
            for convert in converters:
                value = convert(value, column, conn)
            values[index] = value
    return model.from_db(conn.alias, fields, values)


@functools.lru_cache(maxsize=64)
def _update_sql(vendor: str, model, fields: tuple[str, ...]) -> str:
    del vendor  # part of the cache key only
    q = connection.ops.quote_name
    sets = ", ".join(f"{q(model._meta.get_field(name).column)} = %s" for name in fields)
    return f"UPDATE {table(model)} SET {sets} WHERE {q(model._meta.pk.column)} = %s"


def update(instance, **values) -> None:
    """``instance.save(update_fields=...)`` in one UPDATE: sets the attributes, writes those columns."""
    model, fields, conn = type(instance), tuple(values), db()
    params = []
    for name, value in values.items():
        setattr(instance, name, value)
        params.append(model._meta.get_field(name).get_db_prep_save(value, conn))
    with cursor() as cur:
        cur.execute(_update_sql(conn.vendor, model, fields), [*params, instance.pk])


@functools.lru_cache(maxsize=32)
def _insert_shape(vendor: str, model, only_if: str) -> tuple[str, tuple, bool]:
    del vendor  # part of the cache key only
    meta = model._meta
    fields = tuple(f for f in meta.local_concrete_fields if f is not meta.auto_field and not f.generated)
    q = connection.ops.quote_name
    returning = connection.features.can_return_columns_from_insert
    values = ", ".join(["%s"] * len(fields))
    source = f"SELECT {values} WHERE {only_if}" if only_if else f"VALUES ({values})"
    sql = (f"INSERT INTO {table(model)} ({', '.join(q(f.column) for f in fields)}) {source}"
           + (f" RETURNING {q(meta.pk.column)}" if returning else ""))
    return sql, fields, returning


def insert(instance, *, only_if: str = "", params=()):
    """``instance.save()`` of a new row with an automatic primary key, in one INSERT: every field's
    ``pre_save`` runs as in ``save()`` (``auto_now_add`` timestamps), defaults come from the
    model's constructor. Returns the instance with its primary key set.

    ``only_if``: an SQL condition (its ``params`` follow the row's values); the row is inserted only
    if it holds when the INSERT runs, and None is returned when it did not."""
    model, conn = type(instance), db()
    sql, fields, returning = _insert_shape(conn.vendor, model, only_if)
    values = [f.get_db_prep_save(f.pre_save(instance, True), conn) for f in fields]
    with cursor() as cur:
        cur.execute(sql, [*values, *params])
        if returning:
            row = cur.fetchone()
            if row is None:
                return None
            pk = row[0]
        else:
            if only_if and cur.rowcount == 0:
                return None
            pk = conn.ops.last_insert_id(cur, model._meta.db_table, model._meta.pk.column)
    _saved(instance, pk, conn)
    return instance


@functools.lru_cache(maxsize=32)
def _new_row_fields(vendor: str, model, skip: str = "") -> tuple:
    """The fields ``insert`` writes for a new row of ``model`` (the field named ``skip`` left out)."""
    _, fields, _ = _insert_shape(vendor, model, "")
    return tuple(f for f in fields if f.name != skip)


@functools.lru_cache(maxsize=16)
def _insert_with_sql(vendor: str, first, updates: tuple, then, link: str) -> str:
    """:func:`insert_with`'s statement on PostgreSQL (``updates``: ``(model, field names)`` pairs)."""
    q = connection.ops.quote_name

    def columns(fields):
        return ", ".join(q(f.column) for f in fields)

    first_fields = _new_row_fields(vendor, first)
    parts = [f"f AS (INSERT INTO {table(first)} ({columns(first_fields)}) "
             f"VALUES ({', '.join(['%s'] * len(first_fields))}) RETURNING {q(first._meta.pk.column)} AS id)"]
    for index, (model, names) in enumerate(updates):
        sets = ", ".join(f"{q(model._meta.get_field(name).column)} = %s" for name in names)
        parts.append(f"u{index} AS (UPDATE {table(model)} SET {sets} WHERE {q(model._meta.pk.column)} = %s)")
    if then is None:
        return f"WITH {', '.join(parts)} SELECT f.id, NULL FROM f"
    field, then_fields = then._meta.get_field(link), _new_row_fields(vendor, then, skip=link)
    parts.append(f"t AS (INSERT INTO {table(then)} ({columns(then_fields)}, {q(field.column)}) "
                 f"SELECT {', '.join(['%s'] * len(then_fields))}, CAST(f.id AS {field.cast_db_type(connection)}) "
                 f"FROM f RETURNING {q(then._meta.pk.column)} AS id)")
    return f"WITH {', '.join(parts)} SELECT f.id, t.id FROM f CROSS JOIN t"


def _saved(instance, pk, conn) -> None:
    instance.pk = pk
    instance._state.adding = False
    instance._state.db = conn.alias


def insert_with(first, *, updates=(), then=None, link: str = ""):
    """Several writes as one: ``insert(first)``; ``update(obj, **values)`` for each ``(obj, values)``
    of ``updates``; and ``insert(then)`` with its field ``link`` set to ``first``'s new primary key.

    On PostgreSQL this is one statement (data-modifying ``WITH`` queries, returning both keys): all
    of it or none, in one round trip, where separate statements would cost one round trip each plus
    the server's work per statement (the judgement writes four rows on every call; see the module
    docstring). Elsewhere the same writes run as those statements in that order. Returns ``first``."""
    conn = db()
    link_field = type(then)._meta.get_field(link) if then is not None else None
    if conn.vendor != "postgresql":
        insert(first)
        for obj, values in updates:
            update(obj, **values)
        if then is not None:
            setattr(then, link_field.attname, link_field.to_python(first.pk))
            insert(then)
        return first
    params = [f.get_db_prep_save(f.pre_save(first, True), conn) for f in _new_row_fields(conn.vendor, type(first))]
    shapes = []
    for obj, values in updates:
        meta = type(obj)._meta
        for name, value in values.items():
            setattr(obj, name, value)
            params.append(meta.get_field(name).get_db_prep_save(value, conn))
        params.append(obj.pk)
        shapes.append((type(obj), tuple(values)))
    if then is not None:
        params += [f.get_db_prep_save(f.pre_save(then, True), conn)
                   for f in _new_row_fields(conn.vendor, type(then), skip=link)]
    sql = _insert_with_sql(conn.vendor, type(first), tuple(shapes), type(then) if then is not None else None, link)
    with cursor() as cur:
        cur.execute(sql, params)
        first_pk, then_pk = cur.fetchone()
    _saved(first, first_pk, conn)
    if then is not None:
        setattr(then, link_field.attname, link_field.to_python(first_pk))
        _saved(then, then_pk, conn)
    return first
