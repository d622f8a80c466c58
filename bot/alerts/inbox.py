"""The first half of alert intake: a validated notification is stored as it came (table
``alert_inbox``) before the endpoint answers 200.

Group commit: requests that arrive while another group is being written join the next
group, written by its first request in one transaction (one multi-row INSERT, one commit,
one disk flush) while the others wait for it. Each request still gets its 200 only once
its own row is committed; under a storm the commits per second, not the rows, are what
the disk limits (SQLite flushes its log at each commit).

The alerts each request was validated into are kept in memory, by inbox id, until the
drain processes them (not read twice): the oldest are forgotten past ``FRESH`` alerts,
and then read again from the stored body, as after a restart or on another replica."""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from sqlalchemy import insert

from bot.alerts.normalise import NormalisedAlert
from bot.services import Services
from bot.store.incident_tables import AlertInbox

FRESH = 50_000
"""Alerts kept in memory between their acceptance and their processing, at most."""
PENDING = "pending"


@dataclass
class _Group:
    rows: list[dict] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    error: BaseException | None = None
    written: threading.Event = field(default_factory=threading.Event)


class Inbox:
    def __init__(self, services: Services):
        self.services = services
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._open: _Group | None = None
        self._fresh: OrderedDict[int, list[NormalisedAlert]] = OrderedDict()
        self._fresh_count = 0

    def store(self, endpoint: str, body: str, alerts: list[NormalisedAlert]) -> int:
        """Store a payload, validated into ``alerts``; returns its inbox id once committed."""
        row = {"endpoint": endpoint, "received_at": self.services.clock(), "body": body, "alerts": len(alerts),
               "done": 0, "state": PENDING, "attempts": 0, "error": ""}
        with self._lock:
            group = self._open
            leader = group is None
            if leader:
                group = self._open = _Group()
            index = len(group.rows)
            group.rows.append(row)
        if leader:
            self._write(group)
        group.written.wait()
        if group.error is not None:
            raise group.error
        inbox_id = group.ids[index]
        self.remember(inbox_id, alerts)
        return inbox_id

    def _write(self, group: _Group) -> None:
        """Wait for the group before, close this one (later requests open the next), write it."""
        table = AlertInbox.__table__
        with self._writing:
            with self._lock:
                self._open = None
            try:
                with self.services.engine.begin() as conn:
                    group.ids = list(conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True),
                                                  group.rows).scalars())
            except BaseException as e:  # every request of the group fails with it (HTTP 500)
                group.error = e
            finally:
                group.written.set()

    def remember(self, inbox_id: int, alerts: list[NormalisedAlert]) -> None:
        with self._lock:
            earlier = self._fresh.pop(inbox_id, None)
            self._fresh[inbox_id] = alerts
            self._fresh_count += len(alerts) - (len(earlier) if earlier is not None else 0)
            while self._fresh_count > FRESH and self._fresh:
                self._fresh_count -= len(self._fresh.popitem(last=False)[1])

    def recall(self, inbox_id: int, last: bool) -> list[NormalisedAlert] | None:
        """The alerts remembered for ``inbox_id``; ``last``: forgotten now (this batch
        processes the rest of them)."""
        with self._lock:
            alerts = self._fresh.pop(inbox_id, None) if last else self._fresh.get(inbox_id)
            if alerts is not None and last:
                self._fresh_count -= len(alerts)
            return alerts
