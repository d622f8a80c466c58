"""Readings: a value with its unit, the source it came from and when it was observed.

A reading that is missing, failed, timed out or stale carries that status and is never
treated as healthy by ``bot.readiness``.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from integrations.base import LagSample, Replication


class Status(str, enum.Enum):
    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"
    STALE = "stale"
    MISSING = "missing"


@dataclass(frozen=True)
class Reading:
    kind: str
    """'lag', 'health', 'traffic' (which region takes traffic), 'writer' (which region writes) or
    'replication' (every region's database and whom it replicates from)"""
    source: str
    status: Status
    observed_at: datetime | None = None
    lag_seconds: float | None = None
    """The lag in ``unit``: seconds, or a backlog (messages, objects, bytes) for such a stream."""
    unit: str = "seconds"
    replicating: bool | None = None
    healthy: bool | None = None
    region: str | None = None
    """For 'traffic' and 'writer' readings: the region the backend reports."""
    detail: str = ""
    error: str = ""
    history: tuple[LagSample, ...] = ()
    sandbox: bool = False
    elapsed_ms: float | None = None
    """How long the read took."""
    replication: Replication | None = None
    weights: dict[str, float] | None = None
    """A weights read (``kind`` "weights"): region -> % of the traffic (a staged ramp)."""
    """For 'replication' readings: what the database backend reported."""

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def age(self, now: datetime) -> timedelta | None:
        return None if self.observed_at is None else max(now - self.observed_at, timedelta(0))

    @classmethod
    def missing(cls, kind: str, why: str) -> "Reading":
        return cls(kind=kind, source="", status=Status.MISSING, error=why)
