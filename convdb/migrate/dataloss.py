"""What a rollback would destroy: the tables and columns it drops that hold data.

:func:`trial` runs some rollbacks inside a transaction that is always rolled
back, and compares the catalog before and after: a table whose OID is gone
(dropped, or dropped and created again) and a column whose table stays but
which is gone are losses. Their rows are counted once the trial is undone: a
table's rows, a column's non-NULL values (a generated column is derived, not
stored data, and is left out; so is a table whose comment starts with
``derived:``, rebuilt from other tables, like the search documents). Counting
stops past :data:`COUNT_LIMIT` so a refusal on a huge table stays quick.

Only catalog objects are compared: a rollback that ``DELETE``s rows, or that
runs outside a transaction (``TRANSACTIONAL = False``), is not seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import peewee

COUNT_LIMIT = 1_000_000

_TABLES = """
SELECT c.oid, c.oid::regclass::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND coalesce(obj_description(c.oid, 'pg_class'), '') NOT LIKE 'derived:%%'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
   AND n.nspname !~ '^pg_(toast_)?temp_'
"""

_COLUMNS = """
SELECT a.attrelid, a.attnum, quote_ident(a.attname), a.attgenerated <> ''
  FROM pg_attribute a
 WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
"""


@dataclass(frozen=True)
class Loss:
    """A table (``column`` None) or column that a rollback drops, and what it holds."""

    table: str
    column: str | None
    rows: int

    def describe(self) -> str:
        count = f"over {COUNT_LIMIT:,}" if self.rows > COUNT_LIMIT else f"{self.rows:,}"
        if self.column is None:
            return f"table {self.table} ({count} row{'s' if self.rows != 1 else ''})"
        plural = "s" if self.rows != 1 else ""
        return f"column {self.table}.{self.column} ({count} non-NULL value{plural})"


def _catalog(db: peewee.Database) -> tuple[dict[int, str], dict[tuple[int, int], tuple]]:
    tables = dict(db.execute_sql(_TABLES).fetchall())
    columns = {
        (rel, num): (name, generated)
        for rel, num, name, generated in db.execute_sql(_COLUMNS, (list(tables),)).fetchall()
    }
    return tables, columns


def _count(db: peewee.Database, table: str, column: str | None) -> int:
    where = f"WHERE {column} IS NOT NULL" if column else ""
    sql = f"SELECT count(*) FROM (SELECT 1 FROM {table} {where} LIMIT {COUNT_LIMIT + 1}) s"
    return db.execute_sql(sql).fetchone()[0]


class _Undo(Exception):
    pass


def trial(db: peewee.Database, steps: Callable[[], None]) -> list[Loss]:
    """Run ``steps`` in a transaction that is rolled back; the data they would drop.

    An exception from ``steps`` propagates (nothing stays done either way).
    """
    losses: list[Loss] = []
    try:
        with db.atomic():
            tables, columns = _catalog(db)
            with db.atomic() as savepoint:
                steps()
                tables_after, columns_after = _catalog(db)
                savepoint.rollback()
            for oid, name in sorted(tables.items(), key=lambda item: item[1]):
                if oid not in tables_after:
                    losses.append(Loss(name, None, _count(db, name, None)))
            for (rel, num), (column, generated) in sorted(columns.items()):
                if rel in tables_after and (rel, num) not in columns_after and not generated:
                    losses.append(Loss(tables[rel], column, _count(db, tables[rel], column)))
            raise _Undo
    except _Undo:
        pass
    return [loss for loss in losses if loss.rows]
