"""Alert intake in two halves. The endpoint validates a notification and stores its raw
body (``Drain.accept``: ``bot.alerts.inbox``, table ``alert_inbox``) before it answers
200, so a 200 means the alerts will be processed. This worker then processes what is
stored, in batches of up to ``BATCH`` alerts, one transaction each
(``bot.alerts.intake.store``).

Exactly once, across crashes and replicas: a batch's inbox rows are read FOR UPDATE SKIP
LOCKED (PostgreSQL: replicas take different rows; SQLite: one writer at a time) and are
deleted, or moved on (``done``, for a payload larger than a batch), in the transaction
that stores their alerts. A crash rolls the whole batch back; the next pass, here or on
another replica, takes it again.

A payload that cannot be processed never blocks the others: the batch is retried one
payload at a time, and the one that fails keeps its error (``alert_inbox.error``), is
tried again on the next passes and after ``MAX_ATTEMPTS`` is marked ``failed``, logged
(``alert.payload_failed``) and counted (``drbot_alert_payloads_failed_total``,
``drbot_alert_inbox_failed``). A payload that no longer reads as valid fails at once."""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable

from sqlalchemy import delete, func, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlmodel import Session, col, select

from bot.alerts.inbox import PENDING, Inbox
from bot.alerts.intake import store
from bot.alerts.normalise import BadPayload, NormalisedAlert, read
from bot.oplog import op
from bot.services import Services
from bot.store import read_scope, session_scope
from bot.store.db import aborted, again_if_aborted
from bot.store.incident_tables import AlertInbox

log = logging.getLogger(__name__)
BATCH = 2000
"""Alerts stored in one transaction (a second or less of the database's time)."""
HEADS = 200
"""Inbox rows a pass locks to choose its batch from."""
MAX_ATTEMPTS = 5
LINGER = 0.1
"""Seconds the worker waits after a batch smaller than half of ``BATCH`` before the next:
in a storm, what arrives meanwhile joins one larger batch (each batch's per-incident work
is paid once for it) rather than many small ones."""
FAILED = "failed"


def _transient(e: DBAPIError) -> bool:
    """A failure of the database, not of a payload (deadlock, lost connection, lock wait):
    the whole pass is rolled back and runs again; no payload is charged an attempt."""
    return aborted(e) or isinstance(e, (OperationalError, InterfaceError))


class Drain:
    def __init__(self, services: Services, inline: bool = False, batch: int = BATCH, linger: float = LINGER):
        self.services = services
        self.linger = linger
        self.inline = inline
        """Process in the accepting thread (the shell, the CLI, tests of the core)."""
        self.batch = batch
        self.listeners: list[Callable[[int, float], None]] = []
        """Called after each batch with (alerts stored, seconds it took): bench/storm.py."""
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.inbox = Inbox(services)
        self.last = 0
        """Alerts stored by the last batch."""

    # -- the first half: accept -------------------------------------------------------------
    def accept(self, endpoint: str, body: str, alerts: list[NormalisedAlert]) -> int:
        """Store a payload, validated into ``alerts`` (``bot.alerts.inbox``); returns its
        inbox id once committed. Inline: processed before this returns."""
        inbox_id = self.inbox.store(endpoint, body, alerts)
        if self.inline:
            self.run_until_empty()
        else:
            self._wake.set()
        return inbox_id

    # -- the second half: process -----------------------------------------------------------
    def run_until_empty(self) -> int:
        total = 0
        while (n := self.run_once()) > 0:
            total += n
        return total

    def run_once(self) -> int:
        """Process one batch; returns the payloads it took (0: nothing was waiting)."""
        return again_if_aborted("alert batch", self._pass)

    def _pass(self) -> int:
        sv = self.services
        started = time.perf_counter()
        with session_scope(sv.engine) as s:
            rows = self._claim(s)
            if not rows:
                return 0
            parts = []
            for row in rows:
                alerts = self._read(s, row)
                if alerts is not None:
                    parts.append((row, alerts[row.done:row.done + self.batch]))
            stored, queued = self._store(s, parts)
            finished = [row.id for row, part in stored if row.done + len(part) >= row.alerts]
            if finished:
                s.execute(delete(AlertInbox).where(col(AlertInbox.id).in_(finished))
                          .execution_options(synchronize_session=False))
            for row, part in stored:
                if row.id not in finished:  # a part of a payload larger than a batch
                    s.execute(update(AlertInbox).where(AlertInbox.id == row.id).values(done=row.done + len(part))
                              .execution_options(synchronize_session=False))
        count = self.last = sum(len(part) for _, part in stored)
        sv.metrics.alerts_processed.inc(count)
        for listener in self.listeners:
            listener(count, time.perf_counter() - started)
        if sv.outbox is not None and queued:
            sv.outbox.poke()  # the posts this batch queued (a digest already waiting is delivered as paced)
        return len(rows)

    def _claim(self, s: Session) -> list[AlertInbox]:
        """The oldest waiting payloads, up to ``batch`` alerts (at least one payload),
        locked by this transaction; rows another replica holds are skipped."""
        heads = s.exec(select(AlertInbox.id, AlertInbox.alerts, AlertInbox.done).where(AlertInbox.state == PENDING)
                       .order_by(col(AlertInbox.id)).limit(HEADS).with_for_update(skip_locked=True)).all()
        chosen, total = [], 0
        for inbox_id, alerts, done in heads:
            if chosen and total + alerts - done > self.batch:
                break
            chosen.append(inbox_id)
            total += alerts - done
        if not chosen:
            return []
        return list(s.exec(select(AlertInbox).where(col(AlertInbox.id).in_(chosen)).order_by(col(AlertInbox.id))))

    def _read(self, s: Session, row: AlertInbox) -> list[NormalisedAlert] | None:
        """The payload's alerts: as accepted here, else read again from its stored body."""
        alerts = self.inbox.recall(row.id, last=row.alerts - row.done <= self.batch)
        if alerts is not None:
            return alerts
        try:
            alerts = read(row.endpoint, json.loads(row.body), self.services.config)
        except (BadPayload, ValueError, RecursionError, KeyError) as e:
            self._fail(s, row, f"{type(e).__name__}: {e}", permanent=True)
            return None
        if len(alerts) - row.done > self.batch:
            self.inbox.remember(row.id, alerts)  # processed in parts: read once
        return alerts

    def _store(self, s: Session, parts: list[tuple[AlertInbox, list[NormalisedAlert]]]) -> tuple[list, bool]:
        """Store the batch; if it fails, each payload alone, keeping the failure on its row.
        (What was stored, whether something new waits in the outbox.)"""
        try:
            with s.begin_nested():
                result = store(self.services, s, [a for _, part in parts for a in part],
                               [row.id for row, part in parts for _ in part])
            return parts, result.queued
        except DBAPIError as e:
            if _transient(e):
                raise
            log.warning("alert batch of %d payloads failed (%s); storing them one at a time", len(parts), e)
        except Exception as e:  # a bug or a poison payload: find which
            log.warning("alert batch of %d payloads failed (%s); storing them one at a time", len(parts), e)
        stored, queued = [], False
        for row, part in parts:
            try:
                with s.begin_nested():
                    queued |= store(self.services, s, part, [row.id] * len(part)).queued
                stored.append((row, part))
            except DBAPIError as e:
                if _transient(e):
                    raise
                self._fail(s, row, f"{type(e).__name__}: {e}")
            except Exception as e:
                log.exception("alert payload %s (%s) failed", row.id, row.endpoint)
                self._fail(s, row, f"{type(e).__name__}: {e}")
        return stored, queued

    def _fail(self, s: Session, row: AlertInbox, error: str, permanent: bool = False) -> None:
        attempts = row.attempts + 1
        failed = permanent or attempts >= MAX_ATTEMPTS
        s.execute(update(AlertInbox).where(AlertInbox.id == row.id).values(
            attempts=attempts, error=error[:2000], state=FAILED if failed else PENDING)
            .execution_options(synchronize_session=False))
        if failed:
            self.services.metrics.alert_payloads_failed.labels(row.endpoint).inc()
            op("alert.payload_failed", level=logging.WARNING, inbox_id=row.id, endpoint=row.endpoint,
               alerts=row.alerts, attempts=attempts, reason=error[:300])

    # -- the worker thread ------------------------------------------------------------------
    def start(self, interval: float = 1.0) -> None:
        """Process what is waiting (what a previous process left too), then whatever comes."""
        if self.inline or (self._thread is not None and self._thread.is_alive()):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(interval,), name="alert-drain", daemon=True)
        self._thread.start()

    def _loop(self, interval: float) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                while not self._stop.is_set() and self.run_once():
                    if self.last < self.batch // 2:
                        self._stop.wait(self.linger)
            except Exception:
                log.exception("alert drain pass failed; trying again in %.1f s", interval)
            self._wake.wait(interval)

    def poke(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the batch in progress (it commits or rolls back whole)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def waiting(self) -> dict[str, Any]:
        """Payloads waiting and failed, and the oldest waiting one's time (metrics, tests)."""
        with self.services.engine.connect() as conn:
            rows = conn.execute(select(AlertInbox.state, func.count(), func.min(AlertInbox.received_at))
                                .group_by(AlertInbox.state)).all()
        found = {state: (count, oldest) for state, count, oldest in rows}
        return {"pending": found.get(PENDING, (0, None))[0], "oldest": found.get(PENDING, (0, None))[1],
                "failed": found.get(FAILED, (0, None))[0]}

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is waiting (processing here if the worker is not running)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._thread is None or not self._thread.is_alive():
                self.run_until_empty()
            else:
                self.poke()
            if self.waiting()["pending"] == 0:
                return True
            time.sleep(0.02)
        return False


# -- operators: what was given up, and trying it again ----------------------------------------

def failed_payloads(services: Services, limit: int = 50) -> list[AlertInbox]:
    """Stored notifications given up after ``MAX_ATTEMPTS`` (or unreadable), newest first."""
    with read_scope(services.engine) as s:
        return list(s.exec(select(AlertInbox).where(AlertInbox.state == FAILED)
                           .order_by(col(AlertInbox.id).desc()).limit(limit)))


def retry_failed(services: Services, ids: list[int] | None) -> list[int]:
    """Given-up notifications (``ids``, or all) back to waiting with their attempts reset,
    for the drain to try again once their cause is fixed; the IDs moved (only failed ones
    move: one that is waiting or done is left as it is)."""
    with session_scope(services.engine) as s:
        query = update(AlertInbox).where(AlertInbox.state == FAILED)
        if ids is not None:
            query = query.where(col(AlertInbox.id).in_(ids))
        moved = list(s.scalars(query.values(state=PENDING, attempts=0, error="").returning(AlertInbox.id)))
    for inbox_id in moved:
        op("alert.payload_retried", inbox_id=inbox_id)
    return sorted(moved)
