"""One rate limiter for every destination, shared by all replicas through the database.

Each destination (``slack:C123``, ``statuspage:PAGE``) has a row holding its theoretical
arrival time (the generic cell rate algorithm): a request may go when that time is at most
``(burst - 1) * interval`` ahead of now, and moves it ``interval`` on. The check and the
move hold the row's lock (``SELECT ... FOR UPDATE``; on SQLite the write lock), so two
processes can never both take the last slot.
Times are wall-clock epoch seconds: the rates are the outside world's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.store import session_scope
from bot.store.incident_tables import PaceSlot


@dataclass(frozen=True)
class Limit:
    interval: float
    """Seconds between requests, on average."""
    burst: int = 1
    """Requests that may go at once after a quiet spell."""


def take(session: Session, key: str, limit: Limit, now: float | None = None) -> float:
    """0.0 when a request to ``key`` may go now (and it is counted), else the seconds to
    wait before asking again. The slot's row is locked before the time is read: a taker
    that waited for another's lock (or, on SQLite, for the write lock) judges by the time
    it got it, not by the time it asked, so two requests never go closer than the limit
    because one waited between reading the clock and taking the slot."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(PaceSlot).values(key=key, tat=0.0).on_conflict_do_nothing())
    tat = session.execute(select(PaceSlot.tat).where(PaceSlot.key == key).with_for_update()).scalar_one()
    now = time.time() if now is None else now
    tolerance = (limit.burst - 1) * limit.interval
    if tat > now + tolerance:
        return max(tat - tolerance - now, 0.001)
    session.execute(update(PaceSlot).where(PaceSlot.key == key).values(tat=max(tat, now) + limit.interval)
                    .execution_options(synchronize_session=False))
    return 0.0


def gate(engine: Engine, key: str, limit: Limit, sleep: Callable[[float], None] = time.sleep) -> Callable[[], None]:
    """A callable that blocks until one request to ``key`` may go: for a backend that makes
    several requests per delivery (each is paced, not only the first)."""

    def wait_turn() -> None:
        while True:
            with session_scope(engine) as s:
                wait = take(s, key, limit)
            if wait <= 0:
                return
            sleep(wait)

    return wait_turn
