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
    query: str | None = None
    """For lag: what to read at the source, a replication stream's ``target`` (a PromQL
    query, a CloudWatch metric name, a JSON path, a sandbox stream); None: the source's own."""
    unit: str = "seconds"
    """For lag: the unit the stream is measured in (seconds, messages, objects, bytes). Only a
    seconds stream converts the source's time unit (ms) to seconds; others are read as is."""


UNITS = ("seconds", "messages", "objects", "bytes")
"""Units a replication stream (a lag reading) can be measured in."""


@dataclass(frozen=True)
class LagSample:
    at: datetime
    seconds: float
    """The value, in the reading's unit (seconds unless the reading says otherwise)."""


@dataclass(frozen=True)
class LagReading:
    """Replication lag in seconds, as the source last observed it (or, for a stream in
    another ``unit``, the backlog in that unit: messages, objects, bytes).

    ``replicating`` is False when the source says replication is not running
    (e.g. RDS ``ReplicaLag`` of -1); ``seconds`` is then None.
    """

    seconds: float | None
    """The value, in ``unit`` (seconds unless said otherwise)."""
    observed_at: datetime
    replicating: bool = True
    history: tuple[LagSample, ...] = ()
    detail: str = ""
    unit: str = "seconds"


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

    @classmethod
    def lag_target_problem(cls, options: BackendOptions, target: str | None, unit: str) -> str | None:
        """Why a replication stream reading this lag source with ``target`` (None: the
        source's own) in ``unit`` cannot work, for the config loader; None when it can."""
        return None

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
BACKUP = "backup"
WEIGHTS = "weights"
"""Traffic split by percentage between regions (a staged ramp: bot/ramp.py)."""


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
class WeightedTraffic(Protocol):
    """Traffic split by percentage between regions (Route 53 weighted records, Global
    Accelerator dials, Cloudflare pool weights): what a staged ramp moves."""

    def weights(self, target: Target) -> dict[str, float]:
        """Every configured region -> the percentage of traffic it is set to take now."""
        ...

    def set_weights(self, target: Target, weights: dict[str, float], dry_run: bool = False) -> ActionResult:
        """Set each region's percentage (``weights`` names every configured region, summing
        to 100); return once the backend reads them back, or raise. Details hold
        ``before`` and ``after`` (region -> %)."""
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
class BackupPoint:
    """The newest usable backup a backup source found (a snapshot, a recovery point, an
    object, or the time a Prometheus gauge reports)."""

    id: str
    """What people and restore workflows call it: a snapshot id, a recovery point ARN, an object key."""
    created_at: datetime
    """When it was taken (timezone-aware UTC)."""
    detail: str = ""


@runtime_checkable
class BackupSource(Protocol):
    """How old the newest backup of something is (RDS/Aurora snapshots, AWS Backup
    recovery points, objects under an S3 prefix, a Prometheus gauge)."""

    @classmethod
    def check_target(cls, target: str) -> str | None:
        """Why ``target`` (a backup entry's ``target:``) is not one this source reads; None when it is."""
        ...

    def newest_backup(self, target: str) -> BackupPoint | None:
        """The newest completed backup of ``target``; None when there is none at all.
        Raises IntegrationError when it cannot be read."""
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
