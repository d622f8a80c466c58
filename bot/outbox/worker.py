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
from bot.oplog import op
from bot.outbox.kinds import Kind, Outcome
from bot.outbox.pacing import Limit, take
from bot.outbox.queue import parse
from bot.services import Services
from bot.store import session_scope
from bot.store.db import again_if_aborted
from bot.store.incident_tables import OutboxItem, OutboxState
from integrations.base import IntegrationError

log = logging.getLogger(__name__)
CLAIM = timedelta(seconds=120)
MAX_BACKOFF = 300.0
BATCH = 10
"""Items of one stream claimed in a row by one pass (delivered in order, stopping at a failure)."""
WAITING = (OutboxState.PENDING, OutboxState.DEAD)
RETRY_SOON = 0.05
"""Seconds before the next pass when an item could not be claimed (held by a transaction
or another worker at that moment): its state change is about to commit."""


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
        """After a pass: seconds until a destination that made an item wait is free again, or
        ``RETRY_SOON`` when an item could not be claimed; None: nothing to wait for."""

    # -- one pass --------------------------------------------------------------------------
    def run_once(self) -> int:
        """Deliver what is due now; returns how many items were attempted."""
        done = 0
        for batch in self._claim_heads():
            done += self._deliver_batch(batch)
        return done

    def _limit(self, pace_key: str) -> Limit | None:
        if self.inline or not pace_key:
            return None
        return self.limits.get(pace_key.split(":", 1)[0])

    def _claim_heads(self) -> list[list[tuple[OutboxItem, Kind, Any, Any]]]:
        """Claim, per stream, the due items at its head (up to ``BATCH`` in a row) in one
        transaction, and prepare the first of each (the others are prepared when the one
        before them is recorded, so they see what it saved, e.g. the ts of a message)."""
        sv = self.services
        now = sv.clock()
        batches: list[list[tuple[OutboxItem, Kind, Any, Any]]] = []
        self.pace_wait = None
        with session_scope(sv.engine) as s:
            heads = s.exec(select(OutboxItem).where(col(OutboxItem.id).in_(
                select(func.min(OutboxItem.id)).where(col(OutboxItem.state).in_(WAITING))
                .group_by(OutboxItem.stream))).order_by(col(OutboxItem.id))).all()
            for head in heads:
                # a dead head blocks its stream: nothing overtakes it until it is retried
                if head.state is not OutboxState.PENDING:
                    continue
                row = [head]
                if BATCH > 1:
                    row += s.exec(select(OutboxItem).where(OutboxItem.stream == head.stream, OutboxItem.id > head.id,
                                                           col(OutboxItem.state).in_(WAITING))
                                  .order_by(col(OutboxItem.id)).limit(BATCH - 1)).all()
                batch = []
                for item in row:
                    if not self._claimable(item, now) or not self._paced(s, item):
                        break
                    if not self._claim(s, item, now):
                        break
                    batch.append((item, self.kinds[item.kind]))
                if not batch:
                    continue
                first, kind = batch[0]
                event, prepared = self._prepare(s, first, kind)
                batches.append([(first, kind, event, prepared)] + [(i, k, None, None) for i, k in batch[1:]])
        return batches

    def _claimable(self, item: OutboxItem, now) -> bool:
        if item.state is not OutboxState.PENDING or item.next_attempt_at > now:
            return False
        if item.claimed_until is not None and item.claimed_until > now:
            return False
        return item.kind in self.kinds  # else a kind this process does not deliver (e.g. no status page)

    def _paced(self, s, item: OutboxItem) -> bool:
        limit = self._limit(item.pace_key)
        if limit is None:
            return True
        wait = take(s, item.pace_key, limit)
        if wait > 0:
            self.pace_wait = min(wait, self.pace_wait or wait)
            return False
        return True

    def _claim(self, s, item: OutboxItem, now) -> bool:
        """Exclusive, whoever else tries: another replica, or another thread of this one.
        An item whose row a transaction holds (on PostgreSQL: a state change folding a newer
        payload into it) is skipped, never waited for: a claim that waited, holding the
        items it claimed before, could close a deadlock with a transaction folding into two
        of them in another order. A pass ``RETRY_SOON`` seconds later takes it."""
        free = select(OutboxItem.id).where(
            OutboxItem.id == item.id, OutboxItem.state == OutboxState.PENDING,
            col(OutboxItem.claimed_until).is_(None) | (OutboxItem.claimed_until <= now)
        ).with_for_update(skip_locked=True).scalar_subquery()
        claimed = s.execute(update(OutboxItem).where(OutboxItem.id == free)
                            .values(claimed_by=f"{OWNER}:{uuid.uuid4().hex[:8]}", claimed_until=now + CLAIM)
                            .execution_options(synchronize_session=False)).rowcount == 1
        if not claimed:
            self.pace_wait = min(self.pace_wait or RETRY_SOON, RETRY_SOON)
        return claimed

    def _prepare(self, s, item: OutboxItem, kind: Kind) -> tuple[Any, Any]:
        """(event, what its handler prepared), or (None, a failed Outcome) on a bad payload
        or a handler bug: recorded on the item and retried like a failed delivery."""
        try:
            event = parse(item)
            with s.begin_nested():
                return event, (kind.prepare(self.services, s, event) if kind.prepare else None)
        except Exception as e:
            log.exception("outbox item %s (%s) could not be prepared", item.id, item.kind)
            return None, Outcome(delivered=False, error=f"{type(e).__name__}: {e}")

    def _deliver_batch(self, batch: list[tuple[OutboxItem, Kind, Any, Any]]) -> int:
        """Deliver a stream's claimed items in order; stop (releasing the rest) at a failure."""
        item, kind, event, prepared = batch[0]
        for n, (item, kind, _e, _p) in enumerate(batch):
            outcome = self._attempt(item, kind, event, prepared)
            following = batch[n + 1:]
            event, prepared = self._record(item, kind, event, outcome, following)
            if not outcome.delivered:
                return n + 1
        return len(batch)

    def _attempt(self, item: OutboxItem, kind: Kind, event: Any, prepared: Any) -> Outcome:
        if event is None:
            return prepared  # the failure of _prepare
        try:
            return kind.deliver(self.services, event, prepared, item.id)
        except DeliveryFailed as e:
            return Outcome(delivered=False, retry_after=e.retry_after, error=str(e), dead=not e.transient)
        except IntegrationError as e:
            return Outcome(delivered=False, retry_after=getattr(e, "retry_after", None), error=str(e),
                           dead=not e.transient)
        except Exception as e:  # a handler bug must not kill the worker; retried with backoff
            log.exception("outbox item %s (%s) failed", item.id, item.kind)
            return Outcome(delivered=False, error=f"{type(e).__name__}: {e}")

    def _record(self, item: OutboxItem, kind: Kind, event: Any, outcome: Outcome,
                following: list[tuple[OutboxItem, Kind, Any, Any]]) -> tuple[Any, Any]:
        """One transaction: the item's result and its handler's state; then either the next
        item of the batch is prepared (it sees that state) or, after a failure, the rest of
        the batch is released for a later pass."""
        sv = self.services
        attempts = item.attempts + 1
        dead = not outcome.delivered and (outcome.dead or (kind.max_attempts is not None
                                                           and attempts >= kind.max_attempts))
        # the delivery happened: its record is run again if the database aborts it (a
        # deadlock with a writer folding into the same items); lost, the item would be
        # delivered a second time once its claim ran out
        nxt = again_if_aborted(f"outbox item {item.id} record",
                               lambda: self._record_once(item, kind, event, outcome, following, attempts, dead))
        if dead:
            sv.metrics.outbox_given_up.labels(item.kind).inc()
            op("outbox.given_up", logging.ERROR, item_id=item.id, kind=item.kind, stream=item.stream, attempts=attempts,
               reason=outcome.error)
        elif not outcome.delivered:
            log.warning("outbox item %s (%s) not delivered (attempt %s): %s", item.id, item.kind, attempts,
                        outcome.error)
        return nxt

    def _record_once(self, item: OutboxItem, kind: Kind, event: Any, outcome: Outcome,
                     following: list[tuple[OutboxItem, Kind, Any, Any]], attempts: int, dead: bool) -> tuple[Any, Any]:
        sv = self.services
        nxt: tuple[Any, Any] = (None, None)
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
            if following and outcome.delivered:
                nxt = self._prepare(s, following[0][0], following[0][1])
            elif following:
                s.execute(update(OutboxItem).where(col(OutboxItem.id).in_([f[0].id for f in following]))
                          .values(claimed_until=None).execution_options(synchronize_session=False))
        return nxt

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
                    self.run_once()
                except Exception:
                    log.exception("outbox worker pass failed")
                # what was queued meanwhile poked us (the wait returns at once); items waiting
                # for their destination's turn are due after pace_wait; retries after interval
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
