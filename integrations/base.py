"""Capability interfaces shared by every backend.

A backend is a class with a ``kind`` (the ``kind:`` a config source uses), an ``Options``
model (validated config, unknown keys rejected) and a ``check()`` used by
``drbot check-config``. It takes its options and an optional injected client and creates
the real client only when none is given, and only when first used.

Backends return the small frozen result types below, never raw SDK dicts, and raise
``IntegrationError`` (transient / permanent / not permitted). This package imports nothing
from ``bot`` or ``commands``.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ErrorKind(str, enum.Enum):
    TRANSIENT = "transient"        # worth retrying: throttling, 5xx, timeouts
    PERMANENT = "permanent"        # retrying will not help: bad target, bad request
    NOT_PERMITTED = "not_permitted"  # credentials lack the permission


class IntegrationError(Exception):
    """What a backend raises. ``kind`` says whether retrying can help."""

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.PERMANENT):
        super().__init__(message)
        self.kind = kind

    @property
    def transient(self) -> bool:
        return self.kind is ErrorKind.TRANSIENT


class BackendOptions(BaseModel):
    """Base of every backend's options: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: float = 5.0
    """Seconds a single read may take before it is cut and reported as timed out."""


@dataclass(frozen=True)
class Target:
    """What a capability call is about: the service and, for health, the region.

    Backends whose options already name one endpoint (a CloudWatch metric, a URL) ignore
    it; the sandbox uses it to pick the simulated service and region.
    """

    service: str
    region: str | None = None


@dataclass(frozen=True)
class LagSample:
    at: datetime
    seconds: float


@dataclass(frozen=True)
class LagReading:
    """Replication lag in seconds, as the source last observed it.

    ``replicating`` is False when the source says replication is not running
    (e.g. RDS ``ReplicaLag`` of -1); ``seconds`` is then None.
    """

    seconds: float | None
    observed_at: datetime
    replicating: bool = True
    history: tuple[LagSample, ...] = ()
    detail: str = ""


@dataclass(frozen=True)
class HealthReading:
    healthy: bool
    observed_at: datetime
    detail: str = ""
    latency_ms: float | None = None


@dataclass(frozen=True)
class CheckResult:
    """Outcome of a backend's ``check()`` for ``drbot check-config``."""

    ok: bool
    message: str


@dataclass(frozen=True)
class ActionResult:
    """What an action did, or with ``dry_run`` would do."""

    summary: str
    dry_run: bool
    changed: bool
    details: dict[str, Any] = field(default_factory=dict)


class DbRole(str, enum.Enum):
    """What one region's database is, as the database backend sees it now."""

    WRITER = "writer"      # standalone: accepts writes and replicates from nothing
    REPLICA = "replica"    # replicates from another database (``RegionDb.source_region``)
    OUTSIDE = "outside"    # exists but takes no part in the replication (e.g. removed from a global database)
    UNKNOWN = "unknown"    # could not be read


@dataclass(frozen=True)
class RegionDb:
    region: str
    role: DbRole
    source_region: str | None = None
    """For a replica: the configured region it replicates from; None when its source is not one of them."""
    detail: str = ""
    """What the backend saw, for people (e.g. "RDS cluster orders-east in us-east-1 (writer, available)")."""


@dataclass(frozen=True)
class Replication:
    """Every configured region's database and who replicates from whom, read live. Tells a
    replica of the writer (safe to move to) from a former writer left standalone after a
    promotion (moving to it loses everything written since the split)."""

    regions: tuple[RegionDb, ...]
    observed_at: datetime

    def of(self, region: str) -> RegionDb:
        found = next((r for r in self.regions if r.region == region), None)
        return found or RegionDb(region, DbRole.UNKNOWN, detail=f"{region} is not configured for this source")

    @property
    def writers(self) -> tuple[str, ...]:
        return tuple(r.region for r in self.regions if r.role is DbRole.WRITER)

    def replicates_from(self, region: str, writer: str) -> bool:
        db = self.of(region)
        return db.role is DbRole.REPLICA and db.source_region == writer


class Backend:
    """Common base: subclasses set ``kind``, ``Options`` and ``capabilities``."""

    kind: ClassVar[str]
    title: ClassVar[str] = ""
    """What people call the thing behind it ("Route 53", "RDS"); empty: the kind is used."""
    Options: ClassVar[type[BackendOptions]]
    capabilities: ClassVar[frozenset[str]] = frozenset()
    sandbox: ClassVar[bool] = False

    def __init__(self, name: str, options: BackendOptions, client: Any = None):
        self.name = name
        self.options = options
        self._client = client

    def check(self) -> CheckResult:  # pragma: no cover - overridden by every backend
        return CheckResult(True, "no check defined")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


# Capability names, as used in ``Backend.capabilities`` and config validation.
LAG = "lag"
HEALTH = "health"
TRAFFIC = "traffic"
DATABASE = "database"
STATUS = "status"
ARCHIVE = "archive"
PAGER = "pager"
TRACKER = "tracker"


@runtime_checkable
class LagSource(Protocol):
    def read_lag(self, target: Target, history: bool = False) -> LagReading: ...


@runtime_checkable
class HealthSource(Protocol):
    def check_health(self, target: Target) -> HealthReading: ...


@runtime_checkable
class TrafficSwitch(Protocol):
    """Which region takes traffic, and shifting it (Route 53 records, ARC routing controls...)."""

    def active_region(self, target: Target) -> str:
        """The region that takes traffic now, as the backend sees it."""
        ...

    def shift(self, target: Target, to_region: str, dry_run: bool = False) -> ActionResult:
        """Send traffic to ``to_region``; return once the change is in effect (e.g. Route 53
        INSYNC) or raise. With ``dry_run`` change nothing and say what would change."""
        ...


@runtime_checkable
class DatabasePromoter(Protocol):
    """Which region writes, and moving the writer (replica promotion, global switchover)."""

    def writer_region(self, target: Target) -> str:
        ...

    def replication(self, target: Target) -> Replication:
        """Every configured region's database: writer, replica of which region, outside
        the replication, or unknown (a region that cannot be read; raise only when none
        can be)."""
        ...

    def promote(self, target: Target, to_region: str, mode: str = "promote", allow_data_loss: bool = False,
                dry_run: bool = False) -> ActionResult:
        """Make ``to_region`` the writer. ``mode``: 'promote' (detach a replica),
        'switchover' (planned, no data loss) or 'failover' (unplanned; refused unless
        ``allow_data_loss``). Returns once the backend reports the new writer, or raises."""
        ...


@dataclass(frozen=True)
class Page:
    """One page as drbot means it; each pager maps it onto its own API. ``dedup_key``
    makes it one alert however often it is sent (trigger, re-trigger, resolve)."""

    dedup_key: str
    summary: str
    severity: str = "sev2"
    """drbot's incident severity (sev1..sev4); each pager maps it to its own scale."""
    service: str | None = None
    """The drbot service it is about: picks the pager's route for that service, if any."""
    details: dict[str, Any] = field(default_factory=dict)
    routing_key: str | None = None
    """A route of its own (a configured target's PagerDuty routing key), overriding the service's."""
    responders: tuple[dict[str, str], ...] = ()
    """Responders of its own (a configured target's Opsgenie teams or users)."""
    raised: bool = False
    """A re-trigger at a new severity: a pager that keeps the first severity of a merged
    trigger (Opsgenie's priority) is told to change it."""


@dataclass(frozen=True)
class PageResult:
    """What a pager did with a page, or with ``dry_run`` would do."""

    action: str
    """trigger, acknowledge or resolve."""
    dedup_key: str
    to: str
    """Where it went, for people ("PagerDuty routing key for orders (...3f2a)"); never a secret."""
    dry_run: bool
    message: str = ""
    """What the pager answered."""


@runtime_checkable
class Pager(Protocol):
    """Trigger, acknowledge and resolve pages (PagerDuty Events v2, Opsgenie alerts)."""

    def route(self, page: Page) -> str:
        """A name of where ``page`` would go, the same for pages that reach the same people
        (never a secret); raises IntegrationError when it has nowhere to go."""
        ...

    def trigger(self, page: Page, dry_run: bool = False) -> PageResult: ...

    def acknowledge(self, page: Page, dry_run: bool = False) -> PageResult: ...

    def resolve(self, page: Page, dry_run: bool = False) -> PageResult: ...
