"""The outbox worker: delivers due items, the oldest of each stream first.

One pass claims the due heads of the streams in one transaction (each claim a conditional
update, so another replica or thread never delivers the same item; each paced destination
takes its turn through ``bot.outbox.pacing``), then delivers them one by one outside any
transaction and records each result (and the state its handler wants saved) in one
transaction. Failures are retried with exponential backoff or the server's Retry-After.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import timedelta
from typing import Any, Callable

from sqlalchemy import func, update
from sqlmodel import col, select

from bot.identity import OWNER
from bot.messenger import DeliveryFailed
from bot.outbox.kinds import Kind, Outcome
from bot.outbox.pacing import Limit, take
from bot.outbox.queue import parse
from bot.services import Services
from bot.store import session_scope
from bot.store.incident_tables import OutboxItem, OutboxState
from integrations.base import IntegrationError

log = logging.getLogger(__name__)
CLAIM = timedelta(seconds=120)
MAX_BACKOFF = 300.0
WAITING = (OutboxState.PENDING, OutboxState.DEAD)


class Worker:
    def __init__(self, services: Services, kinds: dict[str, Kind], limits: dict[str, Limit] | None = None,
                 sleep: Callable[[float], None] = time.sleep, linger: float = 0.05, inline: bool = False):
        self.services = services
        self.inline = inline
        """Deliver in the poking thread, unpaced (the shell, tests of the core)."""
        self.kinds = kinds
        self.limits = dict(limits or {})
        """Pacing per destination family: the part of the pace key before the first ':'."""
        self.sleep = sleep
        self.linger = linger
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.pace_wait: float | None = None
        """After a pass: seconds until a destination that made an item wait is free again."""

    # -- one pass --------------------------------------------------------------------------
    def run_once(self) -> int:
        """Deliver what is due now; returns how many items were attempted."""
        claimed = self._claim_heads()
        for item, kind, event, prepared in claimed:
            self._deliver(item, kind, event, prepared)
        return len(claimed)

    def _limit(self, pace_key: str) -> Limit | None:
        if self.inline or not pace_key:
            return None
        return self.limits.get(pace_key.split(":", 1)[0])

    def _claim_heads(self) -> list[tuple[OutboxItem, Kind, Any, Any]]:
        sv = self.services
        now = sv.clock()
        claimed: list[tuple[OutboxItem, Kind, Any, Any]] = []
        self.pace_wait = None
        with session_scope(sv.engine) as s:
            heads = s.exec(select(OutboxItem).where(col(OutboxItem.id).in_(
                select(func.min(OutboxItem.id)).where(col(OutboxItem.state).in_(WAITING))
                .group_by(OutboxItem.stream))).order_by(col(OutboxItem.id))).all()
            for item in heads:
                # a dead head blocks its stream: nothing overtakes it until it is retried
                if item.state is not OutboxState.PENDING or item.next_attempt_at > now:
                    continue
                if item.claimed_until is not None and item.claimed_until > now:
                    continue
                kind = self.kinds.get(item.kind)
                if kind is None:
                    continue  # a kind this process does not deliver (e.g. statuspage not configured)
                limit = self._limit(item.pace_key)
                if limit is not None and (wait := take(s, item.pace_key, limit)) > 0:
                    self.pace_wait = min(wait, self.pace_wait or wait)
                    continue
                owner = f"{OWNER}:{uuid.uuid4().hex[:8]}"
                won = s.execute(update(OutboxItem).where(
                    OutboxItem.id == item.id, OutboxItem.state == OutboxState.PENDING,
                    col(OutboxItem.claimed_until).is_(None) | (OutboxItem.claimed_until <= now))
                    .values(claimed_by=owner, claimed_until=now + CLAIM)
                    .execution_options(synchronize_session=False)).rowcount == 1
                if not won:
                    continue
                try:
                    event = parse(item)
                    with s.begin_nested():
                        prepared = kind.prepare(sv, s, event) if kind.prepare else None
                except Exception as e:  # a bad payload or a handler bug: recorded on the item
                    log.exception("outbox item %s (%s) could not be prepared", item.id, item.kind)
                    claimed.append((item, kind, None, Outcome(delivered=False, error=f"{type(e).__name__}: {e}")))
                    continue
                claimed.append((item, kind, event, prepared))
        return claimed

    def _deliver(self, item: OutboxItem, kind: Kind, event: Any, prepared: Any) -> None:
        sv = self.services
        if event is None:
            outcome = prepared
        else:
            try:
                outcome = kind.deliver(sv, event, prepared, item.id)
            except DeliveryFailed as e:
                outcome = Outcome(delivered=False, retry_after=e.retry_after, error=str(e), dead=not e.transient)
            except IntegrationError as e:
                outcome = Outcome(delivered=False, retry_after=getattr(e, "retry_after", None), error=str(e),
                                  dead=not e.transient)
            except Exception as e:  # a handler bug must not kill the worker; retried with backoff
                log.exception("outbox item %s (%s) failed", item.id, item.kind)
                outcome = Outcome(delivered=False, error=f"{type(e).__name__}: {e}")
        attempts = item.attempts + 1
        dead = not outcome.delivered and (outcome.dead or (kind.max_attempts is not None
                                                           and attempts >= kind.max_attempts))
        with session_scope(sv.engine) as s:
            now = sv.clock()
            values: dict[str, Any] = {"attempts": attempts, "claimed_until": None}
            if outcome.delivered:
                values |= {"state": OutboxState.DELIVERED, "delivered_at": now, "last_error": "",
                           "result": json.dumps(outcome.result, default=str)}
                if outcome.apply is not None:
                    outcome.apply(s)
            elif dead:
                values |= {"state": OutboxState.DEAD, "last_error": outcome.error}
                if kind.give_up is not None and event is not None:
                    kind.give_up(sv, s, event, outcome.error)
            else:
                delay = outcome.retry_after if outcome.retry_after is not None else min(2.0 ** attempts, MAX_BACKOFF)
                values |= {"next_attempt_at": now + timedelta(seconds=delay), "last_error": outcome.error}
            s.execute(update(OutboxItem).where(OutboxItem.id == item.id).values(**values)
                      .execution_options(synchronize_session=False))
        if dead:
            log.error("outbox item %s (%s) given up after %s attempt(s): %s", item.id, item.kind, attempts,
                      outcome.error)
        elif not outcome.delivered:
            log.warning("outbox item %s (%s) not delivered (attempt %s): %s", item.id, item.kind, attempts,
                        outcome.error)

    # -- running ---------------------------------------------------------------------------
    def pending(self) -> int:
        with session_scope(self.services.engine) as s:
            return s.exec(select(func.count()).select_from(OutboxItem)
                          .where(OutboxItem.state == OutboxState.PENDING)).one()

    def drain(self, timeout: float = 30.0) -> bool:
        """Deliver until nothing is pending or ``timeout`` passes (tests, the shell)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run_once() == 0:
                if self.pending() == 0:
                    return True
                self.sleep(min(self.pace_wait or 0.05, max(deadline - time.monotonic(), 0.0)))
        return False

    def poke(self) -> None:
        """Something was queued: deliver it soon (after ``linger``, so that a burst of
        updates of one message is delivered as one); inline: now."""
        if self.inline:
            self.drain(timeout=5.0)
        else:
            self._wake.set()

    def start(self, interval: float = 1.0) -> None:
        if self._thread is not None and self._thread.is_alive():
            return

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    worked = self.run_once()
                except Exception:
                    log.exception("outbox worker pass failed")
                    worked = 0
                if worked:
                    continue
                woken = self._wake.wait(min(self.pace_wait, interval) if self.pace_wait else interval)
                self._wake.clear()
                if woken and self.linger:
                    time.sleep(self.linger)

        self._stop.clear()
        self._thread = threading.Thread(target=loop, name="drbot-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
