"""The set-based statements ingestion runs, prepared once per connection.

Every statement takes whole columns: a list of values is sent as one array
literal (:class:`~convdb.sqlarray.Array`) and the SQL reads it with
``unnest(%s::bigint[], %s::text[], ...)``. So the text of each statement is
fixed, whatever the number of rows, and :func:`run` PREPAREs it once per
connection and EXECUTEs it from then on: a batch of one message costs no
planning, a batch of a thousand none either.

The rule shared by every kind of row lives here too: :func:`create`
creates what a lookup did not find with ``ON CONFLICT DO NOTHING`` and finds
again what a concurrent transaction created meanwhile (the dedup tables
follow the same rule in :func:`convdb.dedup.intern_values`).
"""

from __future__ import annotations

import functools
import hashlib
import weakref
from collections.abc import Iterable, Sequence

import peewee

from .. import dedup
from ..exceptions import TransientError
from ..sqlarray import Array

__all__ = ["columns", "create", "first", "intern", "refresh_plans", "run", "unnest"]

# Connection -> (backend pid, names prepared on it). Prepared statements
# belong to the server session and survive a rolled-back transaction; a
# reconnect (new connection, or new backend pid) prepares again.
_PREPARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def run(db: peewee.Database, sql: str, params: Sequence = ()) -> list[tuple]:
    """Execute ``sql`` (``%s`` placeholders) as a prepared statement; its rows.

    A ``list`` in ``params`` is sent as one array literal: cast it in the SQL.
    """
    conn = db.connection()
    pid = conn.info.backend_pid
    state = _PREPARED.get(conn)
    if state is None or state[0] != pid:
        state = _PREPARED[conn] = (pid, set())
    name = _name(sql)
    if name not in state[1]:
        parts = sql.split("%s")
        numbered = "".join(f"{part}${i}" for i, part in enumerate(parts[:-1], 1)) + parts[-1]
        db.execute_sql(f"PREPARE {name} AS {numbered}")
        state[1].add(name)
    args = tuple(Array(p) if type(p) is list else p for p in params)
    marks = f" ({', '.join(['%s'] * len(args))})" if args else ""
    cursor = db.execute_sql(f"EXECUTE {name}{marks}", args)
    return cursor.fetchall() if cursor.description else []


@functools.cache
def _name(sql: str) -> str:
    return "convdb_ingest_" + hashlib.md5(sql.encode()).hexdigest()[:16]


def unnest(types: Sequence[str]) -> str:
    """``unnest(%s::T1[], %s::T2[], ...)``: rows from one array per column."""
    return "unnest(" + ", ".join(f"%s::{t}[]" for t in types) + ")"


def columns(rows: Iterable[tuple], width: int) -> list[list]:
    """Rows -> one list per column (what :func:`unnest` takes)."""
    out = [list(column) for column in zip(*rows, strict=True)]
    return out or [[] for _ in range(width)]


# Connection -> (backend pid, events ingested, count at which plans are dropped next).
_GROWTH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
FIRST_REPLAN = 200


def refresh_plans(db: peewee.Database, count: int) -> None:
    """Drop this session's cached plans each time its ingested events double.

    The prepared statements, foreign-key checks and counter triggers run
    cached plans. A generic plan made while a table was small is a
    sequential scan, and it stays one as the table grows (seen: a seq scan of
    ``contacts`` per inserted participant, a worker slowing from 450 to 120
    events/s over 20,000 events started on an empty database). ``DISCARD
    PLANS`` makes them replan at the current sizes (the prepared statements
    stay prepared); doubling keeps that to a handful of times per session.
    """
    conn = db.connection()
    pid = conn.info.backend_pid
    state = _GROWTH.get(conn)
    if state is None or state[0] != pid:
        state = (pid, 0, FIRST_REPLAN)
    seen, threshold = state[1] + count, state[2]
    if seen >= threshold:
        db.execute_sql("DISCARD PLANS")
        threshold = seen * 2
    _GROWTH[conn] = (pid, seen, threshold)


def create(
    db: peewee.Database,
    table: str,
    keys: Sequence[tuple[str, str]],
    extra: Sequence[tuple[str, str]],
    rows: dict[tuple, tuple],
) -> dict[tuple, int]:
    """Ids of the rows of ``table`` created for ``rows`` (key tuple -> ``extra`` values),
    or found under those keys when a concurrent transaction created them first.

    For keys a lookup did not find. ``keys``/``extra``: (column, SQL type)
    pairs; the key columns carry a unique constraint. The rows are inserted
    in key order (two batches lock the same new keys in the same order) with
    ``ON CONFLICT DO NOTHING``: a row a concurrent transaction created first
    returns nothing (after waiting for that transaction) and is found by a
    second look in a fresh snapshot.
    """
    if not rows:
        return {}
    names = [k for k, _ in keys]
    all_names = names + [c for c, _ in extra]
    insert = (
        f"INSERT INTO {table} ({', '.join(all_names)}) "
        f"SELECT * FROM {unnest([t for _, t in (*keys, *extra)])} AS u({', '.join(all_names)}) "
        f"ORDER BY {', '.join(names)} "
        f"ON CONFLICT ({', '.join(names)}) DO NOTHING "
        f"RETURNING id, {', '.join(names)}"
    )
    wanted = sorted(rows)
    params = columns(((*k, *rows[k]) for k in wanted), len(all_names))
    found = {tuple(r[1:]): r[0] for r in run(db, insert, params)}
    lost = [k for k in wanted if k not in found]
    if lost:
        select = (
            f"SELECT t.id, {', '.join(f't.{k}' for k in names)} FROM {table} t "
            f"JOIN {unnest([t for _, t in keys])} AS u({', '.join(names)}) "
            f"ON {' AND '.join(f't.{k} = u.{k}' for k in names)}"
        )
        found.update({tuple(r[1:]): r[0] for r in run(db, select, columns(lost, len(names)))})
    if len(found) < len(wanted):
        # Deleted by another transaction between our conflict and the second
        # look: a race, not a bad event, so the event is retried.
        raise TransientError(f"{table}: rows deleted while this batch was creating them")
    return found


def first(pairs: Iterable[tuple]) -> dict:
    """key -> value of the first pair with that key."""
    out: dict = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


def intern(
    db: peewee.Database,
    table: dedup.DedupTable,
    values: dict[str, str],
    stored: Iterable[tuple[int, int, str]] | None = None,
) -> dict[str, int]:
    """:func:`convdb.dedup.intern_values` through :func:`run`'s prepared statements."""
    return dedup.intern_values(db, table, values, stored=stored, execute=run)
