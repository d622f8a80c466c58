"""The outbox: side effects that must not be lost (a status-page update, a Slack post of a
timeline) are written in the same transaction as the state change that causes them, then
delivered by a worker: in order per stream, paced per destination, retried with backoff
or the server's Retry-After, each at most once (idempotency key). Items still pending
when the process stops are delivered after the restart; items that cannot be delivered
stay visible in ``/dr outbox``.
"""
from __future__ import annotations

import json
import logging
import threading
import uuid
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Protocol

from sqlalchemy import update
from sqlmodel import Session, col, select

from bot.engine import OWNER
from bot.services import Services
from bot.store import session_scope
from bot.store.incident_tables import OutboxItem, OutboxState

log = logging.getLogger(__name__)
CLAIM = timedelta(seconds=120)
MAX_BACKOFF = 300.0


def enqueue(session: Session, kind: str, stream: str, key: str, payload: dict[str, Any],
            now: datetime | None = None) -> bool:
    """Add an item in the caller's transaction; False when ``key`` was enqueued before.
    ``now``: the services' clock, so an item is due at once under a test clock too."""
    if session.exec(select(OutboxItem.id).where(OutboxItem.idempotency_key == key)).first() is not None:
        return False
    item = OutboxItem(kind=kind, stream=stream, idempotency_key=key, payload=json.dumps(payload, default=str))
    if now is not None:
        item.created_at = item.next_attempt_at = now
    session.add(item)
    return True


@dataclass
class Outcome:
    """What a handler says: delivered (with a result), retry later, or give up."""

    delivered: bool = True
    result: dict[str, Any] = field(default_factory=dict)
    retry_after: float | None = None
    error: str = ""
    dead: bool = False


class Handler(Protocol):
    """Delivers one kind of item. ``deliver`` runs outside any transaction (it may call
    slow services) and opens its own short sessions to read or record state."""

    def pace_key(self, payload: dict) -> str | None: ...
    def interval(self) -> float: ...
    def deliver(self, services: Services, item: OutboxItem, payload: dict) -> Outcome: ...


class Worker:
    def __init__(self, services: Services, handlers: dict[str, Handler], sleep: Callable[[float], None] = time.sleep):
        self.services = services
        self.handlers = handlers
        self.sleep = sleep
        self._last_sent: dict[str, float] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()

    # -- picking -------------------------------------------------------------------------
    def run_kinds(self, kinds: tuple[str, ...], passes: int = 20) -> int:
        """Deliver the due items of these kinds now, in their streams' order (a job that
        wants its posts out before it goes on, e.g. 'starting now' before the run)."""
        done = 0
        for _ in range(passes):
            heads = [h for h in self._heads() if h.kind in kinds]
            if not heads:
                break
            for item in heads:
                handler = self.handlers.get(item.kind)
                if handler is not None and self._claim(item):
                    payload = json.loads(item.payload)
                    self._pace(handler, payload)
                    self._deliver(handler, item, payload)
                    done += 1
        return done

    def _heads(self) -> list[OutboxItem]:
        """The oldest undelivered item of each stream, if it is due. An item that gave up
        (dead) blocks its stream, so nothing after it overtakes it: order is kept until
        someone retries it (``/dr outbox retry ID``)."""
        now = self.services.clock()
        with session_scope(self.services.engine) as s:
            pending = s.exec(select(OutboxItem).where(col(OutboxItem.state).in_([OutboxState.PENDING,
                                                                                 OutboxState.DEAD]))
                             .order_by(OutboxItem.id)).all()
        heads, seen = [], set()
        for item in pending:
            if item.stream in seen:
                continue
            seen.add(item.stream)
            if item.state is OutboxState.DEAD:
                continue
            claimed = item.claimed_until is not None and item.claimed_until > now
            if item.next_attempt_at <= now and not claimed:
                heads.append(item)
        return heads

    def _claim(self, item: OutboxItem) -> bool:
        """Exclusive, whoever else tries: another replica, or another worker of this process
        (the background thread and a job delivering its own posts)."""
        now = self.services.clock()
        with session_scope(self.services.engine) as s:
            stmt = (update(OutboxItem).where(OutboxItem.id == item.id, OutboxItem.state == OutboxState.PENDING,
                                             (col(OutboxItem.claimed_until).is_(None))
                                             | (OutboxItem.claimed_until <= now))
                    .values(claimed_by=f"{OWNER}:{uuid.uuid4().hex[:8]}", claimed_until=now + CLAIM))
            return s.execute(stmt).rowcount == 1

    # -- delivering ----------------------------------------------------------------------
    def run_once(self) -> int:
        """Deliver what is due now; returns how many items were attempted."""
        done = 0
        for item in self._heads():
            handler = self.handlers.get(item.kind)
            if handler is None or not self._claim(item):
                continue
            payload = json.loads(item.payload)
            self._pace(handler, payload)
            done += 1
            self._deliver(handler, item, payload)
        return done

    def _pace(self, handler: Handler, payload: dict) -> None:
        key = handler.pace_key(payload)
        if key is None:
            return
        wait = self._last_sent.get(key, 0.0) + handler.interval() - time.monotonic()
        if wait > 0:
            self.sleep(wait)
        self._last_sent[key] = time.monotonic()

    def _deliver(self, handler: Handler, item: OutboxItem, payload: dict) -> None:
        sv = self.services
        try:
            outcome = handler.deliver(sv, item, payload)
        except Exception as e:  # a handler bug or an API error must not kill the worker
            log.exception("outbox item %s (%s) failed", item.id, item.kind)
            outcome = Outcome(delivered=False, error=f"{type(e).__name__}: {e}")
        with session_scope(sv.engine) as s:
            row = s.get(OutboxItem, item.id)
            now = sv.clock()
            row.attempts += 1
            row.claimed_until = None
            if outcome.delivered:
                row.state, row.delivered_at = OutboxState.DELIVERED, now
                row.result = json.dumps(outcome.result, default=str)
                row.last_error = ""
            elif outcome.dead:
                row.state, row.last_error = OutboxState.DEAD, outcome.error
            else:
                delay = outcome.retry_after if outcome.retry_after is not None else min(2.0 ** row.attempts, MAX_BACKOFF)
                row.next_attempt_at = now + timedelta(seconds=delay)
                row.last_error = outcome.error
        if not outcome.delivered:
            log.warning("outbox item %s (%s) not delivered (attempt %s): %s", item.id, item.kind,
                        item.attempts + 1, outcome.error)

    # -- running -------------------------------------------------------------------------
    def drain(self, timeout: float = 30.0) -> bool:
        """Deliver until nothing is pending or ``timeout`` passes (tests, the shell)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run_once() == 0:
                with session_scope(self.services.engine) as s:
                    if s.exec(select(OutboxItem.id).where(OutboxItem.state == OutboxState.PENDING)).first() is None:
                        return True
                time.sleep(0.05)
        return False

    def poke(self) -> None:
        self._wake.set()

    def start(self, interval: float = 0.5) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                try:
                    worked = self.run_once()
                except Exception:
                    log.exception("outbox worker pass failed")
                    worked = 0
                if not worked:
                    self._wake.wait(interval)
                    self._wake.clear()

        threading.Thread(target=loop, name="drbot-outbox", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
