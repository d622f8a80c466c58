"""One rate limiter for every destination, shared by all replicas through the database.

Each destination (``slack:C123``, ``statuspage:PAGE``) has a row holding its theoretical
arrival time (the generic cell rate algorithm): a request may go when that time is at most
``(burst - 1) * interval`` ahead of now, and moves it ``interval`` on. The check and the
move are one conditional UPDATE, so two processes can never both take the last slot.
Times are wall-clock epoch seconds: the rates are the outside world's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import case, update
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
    wait before asking again."""
    now = time.time() if now is None else now
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(PaceSlot).values(key=key, tat=0.0).on_conflict_do_nothing())
    tolerance = (limit.burst - 1) * limit.interval
    moved = session.execute(
        update(PaceSlot).where(PaceSlot.key == key, PaceSlot.tat <= now + tolerance)
        .values(tat=case((PaceSlot.tat > now, PaceSlot.tat), else_=now) + limit.interval)
        .execution_options(synchronize_session=False)).rowcount
    if moved:
        return 0.0
    tat = session.get(PaceSlot, key, populate_existing=True).tat
    return max(tat - tolerance - now, 0.001)


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
