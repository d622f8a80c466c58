"""State changes as conditional updates: ``UPDATE ... WHERE id = :id AND state IN (...)``.
Two clicks, two threads or two replicas can never both win: the loser updates no row."""
from __future__ import annotations

from typing import Iterable

from sqlalchemy import update
from sqlmodel import Session, col

from bot.store.batch import Write, Writes
from bot.store.models import ChangeRequest, RequestState, Run


def _move(session: Session, model, row_id: int, expected: Iterable[RequestState], new: RequestState,
          **values) -> bool:
    stmt = (update(model).where(model.id == row_id, col(model.state).in_(list(expected)))
            .values(state=new, **values))
    return session.execute(stmt).rowcount == 1


def move_request(session: Session, request_id: int, expected: Iterable[RequestState], new: RequestState,
                 **values) -> bool:
    return _move(session, ChangeRequest, request_id, expected, new, **values)


def move_run(session: Session, run_id: int, expected: Iterable[RequestState], new: RequestState, **values) -> bool:
    return _move(session, Run, run_id, expected, new, **values)


def _in_state(table, bind):
    return (table.c.id == bind("id")) & (table.c.state == bind("was"))


def move_in(writes: Writes, model, row_id: int, was: RequestState, new: RequestState, **values) -> None:
    """``move_request`` / ``move_run`` (``model``: ChangeRequest or Run) from one expected
    state, as a write of a batch (``bot.store.batch``): the same conditional update, sent with
    the batch's other writes; nobody reads whether it won."""
    writes.add(Write(model.__table__, {"state": new, **values}, where=_in_state, params={"id": row_id, "was": was}))
