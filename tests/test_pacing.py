"""The shared rate limiter (bot.outbox.pacing) on SQLite and PostgreSQL: the generic cell
rate algorithm with explicit times, and a taker that waited for another's lock judging by
the time it got the lock, not the time it asked."""
from __future__ import annotations

import threading
import time

from sqlalchemy import select

from bot.outbox.pacing import Limit, take
from bot.store import session_scope
from bot.store.db import make_engine
from bot.store.incident_tables import PaceSlot
from bot.store.schema import create_schema

KEY = "statuspage:pg1"


def engine_of(db_url: str):
    engine = make_engine(db_url)
    create_schema(engine)
    return engine


def taken(engine, limit: Limit, now: float | None = None) -> float:
    """``take`` in a transaction of its own; ``now`` None: the wall clock, read by ``take``."""
    with session_scope(engine) as s:
        return take(s, KEY, limit, now=now)


def tat(engine) -> float:
    with session_scope(engine) as s:
        return s.execute(select(PaceSlot.tat).where(PaceSlot.key == KEY)).scalar_one()


def test_one_request_per_interval_and_a_burst_after_a_quiet_spell(db_url):
    engine = engine_of(db_url)
    try:
        one = Limit(interval=1.0)
        assert taken(engine, one, 100.0) == 0.0
        assert abs(taken(engine, one, 100.25) - 0.75) < 1e-9  # wait for the next slot, not counted
        assert taken(engine, one, 101.0) == 0.0
        assert taken(engine, one, 105.0) == 0.0 and tat(engine) == 106.0  # a quiet spell saves nothing up

        burst = Limit(interval=1.0, burst=3)
        assert [taken(engine, burst, 200.0) for _ in range(3)] == [0.0, 0.0, 0.0]
        assert abs(taken(engine, burst, 200.0) - 1.0) < 1e-9
        assert taken(engine, burst, 201.0) == 0.0
    finally:
        engine.dispose()


def test_a_taker_that_waited_for_the_lock_takes_its_slot_from_when_it_got_it(db_url):
    """Another transaction holds the slot's row (PostgreSQL) or the write lock (SQLite) for
    0.5 s. The taker asks meanwhile; its slot must start when it got the lock: judged by
    the time it asked, the next request could go 0.5 s early."""
    engine = engine_of(db_url)
    limit = Limit(interval=1.0)
    try:
        assert taken(engine, limit, 0.0) == 0.0  # the row exists, long free
        result: list[float] = []
        with session_scope(engine) as holder:
            holder.execute(select(PaceSlot).where(PaceSlot.key == KEY).with_for_update()).all()
            asker = threading.Thread(target=lambda: result.append(taken(engine, limit)))
            asked = time.time()
            asker.start()
            time.sleep(0.5)  # the lock is held this long whatever the asker does
            released = time.time()
        asker.join(timeout=30)
        assert result == [0.0]
        assert tat(engine) >= released + limit.interval, (
            f"slot taken from {tat(engine) - limit.interval - asked:.3f} s after asking, "
            f"the lock was free {released - asked:.3f} s after")
    finally:
        engine.dispose()

