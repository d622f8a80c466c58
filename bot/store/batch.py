"""Writes that read nothing back, sent with the one statement whose result is wanted.

A runbook step boundary writes five rows (the step that ended, its audit entry and timeline
event, the step that starts, the progress update queued) and reads back one value (the new
step's id). On PostgreSQL every statement is a network round trip, and BEGIN and COMMIT are
two more: eight in all. ``commit`` sends the writes as data-modifying CTEs of the final
statement: one statement, run in autocommit, is one round trip and one atomic transaction
(PostgreSQL runs every CTE of a statement exactly once, in the statement's snapshot).
SQLite, in-process with no round trips and no DML in CTEs, runs them one by one in one
transaction.

A write names its table, columns and condition, never a statement: statements are built
once per shape (which writes, on which columns) with bound parameters and kept, so a
boundary costs a dict of values, not a statement to build and compile. A write may be
conditional: an INSERT made only when the UPDATE before it changed no row (the outbox's
coalescing: a newer progress update folds into the undelivered one, else it is queued).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import Engine, Table, bindparam, exists, func, insert, literal, select, union_all
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session

from bot.store.db import again_if_aborted, session_scope

Where = Callable[[Table, Callable[[str], Any]], ColumnElement]
"""The condition of an UPDATE, from the table and a function naming a bound parameter: a
module-level function (its identity is part of the statement's shape)."""


@dataclass(frozen=True)
class Write:
    table: Table
    values: dict[str, Any]
    """Columns set (INSERT, UPDATE)."""
    where: Where | None = None
    """An UPDATE's condition (None: an INSERT)."""
    params: dict[str, Any] = field(default_factory=dict)
    """The values of the parameters ``where`` names."""
    upsert_on: tuple[str, ...] = ()
    """An INSERT that updates the row with these key columns when it exists."""
    otherwise: dict[str, Any] | None = None
    """An UPDATE that changed no row inserts these values instead."""

    def shape(self) -> tuple:
        """What the statement depends on (not the values): the key of the statements built."""
        return (self.table.name, *self.values, self.where, *self.params, self.upsert_on, *(self.otherwise or ()))


def _bind(table: Table, prefix: str, column: str) -> Any:
    return bindparam(f"{prefix}{column}", type_=table.c[column].type)


def _statements(w: Write, prefix: str, dialect: str) -> list:
    """The statement(s) of a write with parameters named ``prefix`` + column."""
    t = w.table
    sets = {c: _bind(t, prefix, c) for c in w.values}
    if w.where is None:
        if not w.upsert_on:
            return [insert(t).values(sets)]
        stmt = (postgresql if dialect == "postgresql" else sqlite).insert(t).values(sets)
        return [stmt.on_conflict_do_update(index_elements=list(w.upsert_on),
                                           set_={c: stmt.excluded[c] for c in w.values if c not in w.upsert_on})]
    update = t.update().where(w.where(t, lambda name: bindparam(f"{prefix}p_{name}"))).values(sets)
    if w.otherwise is None:
        return [update]
    return [update, insert(t).values({c: _bind(t, f"{prefix}i_", c) for c in w.otherwise})]


def _params(w: Write, prefix: str) -> dict[str, Any]:
    out = {f"{prefix}{c}": v for c, v in w.values.items()}
    out.update({f"{prefix}p_{k}": v for k, v in w.params.items()})
    out.update({f"{prefix}i_{c}": v for c, v in (w.otherwise or {}).items()})
    return out


_BUILT: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def _built(key: tuple, build: Callable[[], Any]) -> Any:
    statement = _BUILT.get(key)
    if statement is None:
        with _LOCK:
            statement = _BUILT.setdefault(key, build())
    return statement


@dataclass
class Writes:
    """Writes of one transaction whose results nobody reads, in order."""

    items: list[Write] = field(default_factory=list)

    def add(self, write: Write) -> None:
        self.items.append(write)

    def run(self, session: Session) -> int:
        """One by one in the caller's transaction (any database); how many rows the
        ``otherwise`` of a write inserted (an UPDATE that changed none)."""
        dialect, inserted = session.get_bind().dialect.name, 0
        for w in self.items:
            key = ("one", dialect, *w.shape())
            statements = _built(key, lambda: _statements(w, "", dialect))
            params = w.values if not (w.params or w.otherwise) else _params(w, "")
            changed = session.execute(statements[0], params).rowcount
            if len(statements) == 2 and not changed:
                inserted += session.execute(statements[1], params).rowcount
        return inserted

    def _joined(self, final: Write | None, returning: str):
        """The writes as CTEs of ``final`` (an INSERT) returning ``returning``, or of a SELECT
        of the count alone when there is no final INSERT (PostgreSQL runs a data-modifying
        CTE whether or not the statement reads it)."""
        def build():
            ctes, queued = [], []
            rows: dict[tuple, list[int]] = {}  # plain INSERTs of one table and columns: one multi-row INSERT
            for n, w in enumerate(self.items):
                if w.where is None and not w.upsert_on:
                    rows.setdefault((w.table.name, *w.values), []).append(n)
            for group in rows.values():
                t, columns = self.items[group[0]].table, list(self.items[group[0]].values)
                # one INSERT gives the rows their ids in order (separate CTEs run in no set order);
                # from a UNION ALL, not a multi-row VALUES, which SQLAlchemy cannot cache compiled
                found = [select(*(_bind(t, f"w{n}_", c) for c in columns)) for n in group]
                ctes.append(insert(t).from_select(columns, union_all(*found) if len(found) > 1 else found[0])
                            .cte(f"w{group[0]}"))
            for n, w in enumerate(self.items):
                if w.where is None and not w.upsert_on:
                    continue
                statements = _statements(w, f"w{n}_", "postgresql")
                if len(statements) == 1:
                    ctes.append(statements[0].cte(f"w{n}"))
                    continue
                update, fallback = statements
                key = next(iter(w.table.primary_key.columns))
                folded = update.returning(key).cte(f"w{n}_folded")
                row = select(*(_bind(w.table, f"w{n}_i_", c) for c in w.otherwise))
                queued.append(insert(w.table).from_select(list(w.otherwise), row.where(~exists(folded.select())))
                              .returning(key).cte(f"w{n}_queued"))
                ctes += [folded, queued[-1]]
            inserted = sum((select(func.count()).select_from(q).scalar_subquery() for q in queued), literal(0))
            if final is None:
                return select(inserted).add_cte(*ctes)
            last = _statements(final, "f_", "postgresql")[0]
            return last.returning(final.table.c[returning], inserted).add_cte(*ctes)
        return _built(("joined", *(w.shape() for w in self.items), final.shape() if final else None, returning),
                      build)

    def _params(self) -> dict[str, Any]:
        return {k: v for n, w in enumerate(self.items) for k, v in _params(w, f"w{n}_").items()}


def _on_postgresql(engine: Engine, statement, params: dict[str, Any]):
    """Run again if PostgreSQL aborts it to break a deadlock: its CTEs lock rows in no set
    order (two runs ending together fold into the same outbox items), and being one
    autocommit statement, it either happened whole or not at all."""
    def once():
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            return conn.execute(statement, params).one()
    return again_if_aborted("batch statement", once)


def commit(engine: Engine, writes: Writes, final: Write, returning: str) -> tuple[Any, int]:
    """``writes`` and the INSERT ``final`` in one transaction: the value of the column
    ``returning`` of the row ``final`` inserted, and how many rows the writes' ``otherwise``
    inserted (e.g. an outbox item queued, not folded into an undelivered one)."""
    if engine.dialect.name == "postgresql":
        params = writes._params()
        params.update(_params(final, "f_"))
        value, inserted = _on_postgresql(engine, writes._joined(final, returning), params)
        return value, int(inserted)
    with session_scope(engine) as s:
        inserted = writes.run(s)
        last = _built(("final", final.shape(), returning),
                      lambda: _statements(final, "", "sqlite")[0].returning(final.table.c[returning]))
        return s.execute(last, _params(final, "")).scalar_one(), inserted


def apply(engine: Engine, writes: Writes) -> int:
    """``writes`` in one transaction (on PostgreSQL one statement in autocommit): how many
    rows their ``otherwise`` inserted. Two writes of one statement must not change the same
    row (PostgreSQL would apply only one of them): run those with ``Writes.run`` instead."""
    if engine.dialect.name == "postgresql":
        return int(_on_postgresql(engine, writes._joined(None, ""), writes._params())[0])
    with session_scope(engine) as s:
        return writes.run(s)
