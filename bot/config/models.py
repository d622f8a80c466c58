"""Typed config models. Unknown keys are errors everywhere: a typo must not silently
disable a check. Backend options are validated separately, by each backend's own
``Options`` model (see ``loader.py``)."""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from bot.config.incidents import AlertsConfig, IncidentsConfig, IncidentSeverity, StatuspageConfig
from bot.config.models_base import Duration, Name, SlackId, Strict
from bot.config.paging import PagingConfig
from bot.config.permissions import Permissions
from bot.config.runbooks import Runbooks
from bot.config.schedules import DigestConfig, DrillSchedule, RegionDrillSchedule, SchedulerConfig, WatchConfig
from bot.durations import parse_duration
from integrations.base import Target

Tier = Literal["critical", "high", "medium", "low"]


class SourceSpec(BaseModel):
    """A named source as written: ``kind`` plus that backend's options (checked later)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LagConfig(Strict):
    source: str
    target: str | None = None
    """What the source reads (a PromQL query, a CloudWatch metric name, a JSON path); unset:
    the source's own option."""
    warning: Duration | None = None
    """Lag at or past this is AT_RISK. Default: 40% of the service's RPO."""
    critical: Duration | None = None
    """Lag at or past this is NOT_READY. Default: 80% of the service's RPO."""
    stale_after: Duration = timedelta(minutes=10)
    """A reading older than this is stale: UNKNOWN, never healthy."""

    def target_of(self, service: str) -> Target:
        """The capability target of a lag read of ``service`` (in seconds)."""
        return Target(service, query=self.target)


StreamUnit = Literal["seconds", "messages", "objects", "bytes"]
LAG_STREAM = "lag"
"""The name of the one stream the ``lag:`` shorthand stands for."""


class StreamConfig(Strict):
    """One replication stream of a service (``services[].replication[]``)."""

    name: Name
    source: str
    target: str | None = None
    """What the source reads (a PromQL query, a CloudWatch metric name, a JSON path, a
    sandbox stream); unset: the source's own option."""
    unit: StreamUnit = "seconds"
    warning: timedelta | float | None = None
    """AT_RISK at or past this, in ``unit`` (a duration for seconds). Default for seconds:
    40% of the RPO; required for other units."""
    critical: timedelta | float | None = None
    """NOT_READY at or past this, in ``unit``. Default for seconds: 80% of the RPO; required
    for other units."""
    stale_after: Duration = timedelta(minutes=10)

    @field_validator("warning", "critical", mode="before")
    @classmethod
    def _in_unit(cls, value, info: ValidationInfo):
        if value is None:
            return None
        unit = info.data.get("unit", "seconds")
        if unit == "seconds":
            return parse_duration(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{value!r} is not a number of {unit} (write e.g. 1000: thresholds "
                             f"are in the stream's unit)")
        if value < 0:
            raise ValueError(f"{value!r} is below 0")
        return float(value)

    def target_of(self, service: str) -> Target:
        """The capability target of a read of this stream of ``service``."""
        return Target(service, query=self.target, unit=self.unit)

    def limits(self, rpo: timedelta) -> tuple[float | None, float | None]:
        """(warning, critical) as numbers in ``unit`` (seconds for a seconds stream), the
        seconds defaults applied; None where a non-seconds stream left one unset."""
        if self.unit == "seconds":
            warning = self.warning if self.warning is not None else rpo * 0.4
            critical = self.critical if self.critical is not None else rpo * 0.8
            return warning.total_seconds(), critical.total_seconds()
        return self.warning, self.critical


class BackupConfig(Strict):
    """One backup of a service (``services[].backups[]``): how old its newest copy may be,
    and how often a drill must prove it restores (bot/backups.py)."""

    name: Name
    source: str
    """A source with the backup capability: rds_snapshots, aws_backup, s3_newest, prometheus_backup."""
    target: str = Field(min_length=1)
    """What the source reads: instance/ID or cluster/ID (rds_snapshots), a resource ARN or
    vault/NAME (aws_backup), BUCKET/PREFIX (s3_newest), a PromQL query (prometheus_backup)."""
    max_age: Duration
    """The newest backup older than this: AT_RISK."""
    restore_test_max_age: Duration | None = None
    """Set: the newest passed restore test (a drill scenario with a ``restore:`` step naming
    this backup) older than this, failed, or none: AT_RISK."""


class BreakGlass(Strict):
    enabled: bool = False
    group: list[SlackId] = []
    """Slack user or user-group IDs allowed to execute with zero approvals."""


class ApprovalSlot(Strict):
    """One approval a request needs: from a member of ``from`` or from whoever is on call
    now in schedule ``on_call`` (``paging.schedules``). Each slot needs a distinct person."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    name: str = Field(min_length=1, max_length=40)
    members: list[SlackId] = Field(default=[], alias="from")
    """Slack users and user groups who may fill this slot."""
    on_call: Name | None = None
    """A schedule of ``paging.schedules``: the person on call there now may fill this slot."""

    @model_validator(mode="after")
    def _one_way(self) -> "ApprovalSlot":
        if bool(self.members) == (self.on_call is not None):
            raise ValueError(f"slot {self.name!r} needs exactly one of 'from' (Slack users or groups) "
                             "or 'on_call' (a schedule name)")
        return self


class RelaxationWhen(Strict):
    severity: list[IncidentSeverity] = Field(min_length=1)
    """An open incident of the service has one of these severities."""
    rto_breach_within: Duration | None = None
    """And the incident's RTO (from its detection) runs out within this long (or has already)."""

    @field_validator("severity", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        return [value] if isinstance(value, str) else value


class Relaxation(Strict):
    """Fewer approvals while a severe incident burns: announced in the request and the incident channel."""

    when: RelaxationWhen
    required: int = Field(ge=1, le=10)
    """Approvals (with slots: filled slots, any of them) a request created then needs."""


class ApprovalPolicy(Strict):
    required_approvals: int = Field(default=1, ge=1, le=10)
    """Approvals besides the requester's. At least 1: only break-glass runs with none."""
    critical_required_approvals: int | None = Field(default=None, ge=1, le=10)
    """Approvals needed for services of tier ``critical``, when set."""
    approvers: list[SlackId] = []
    """Slack user IDs (U...) and user-group IDs (S...). Empty: nobody may approve."""
    requesters: list[SlackId] = []
    """Who may request changes. Empty: anyone in the workspace."""
    expires: Duration = timedelta(minutes=30)
    break_glass: BreakGlass = BreakGlass()
    allow_parallel: bool = False
    """False: a service has at most one open failover, failback or drill request (pending,
    approved, running or interrupted); a second is refused naming the first."""
    slots: list[ApprovalSlot] = []
    """Approval as a combination (e.g. one SRE and the person on call): every slot filled by a
    distinct person. Set: replaces ``required_approvals`` and ``approvers``."""
    relaxations: list[Relaxation] = []
    """Severity-gated relaxations, the first that applies wins."""


class ServiceApprovals(Strict):
    """Per-service overrides of the global approval policy; unset fields inherit."""

    required_approvals: int | None = Field(default=None, ge=1, le=10)
    approvers: list[SlackId] | None = None
    requesters: list[SlackId] | None = None
    expires: Duration | None = None
    break_glass: BreakGlass | None = None
    allow_parallel: bool | None = None
    slots: list[ApprovalSlot] | None = None
    relaxations: list[Relaxation] | None = None


class Control(Strict):
    """A traffic switch or database promoter of a service: the named source to use."""

    source: str


class ServiceConfig(Strict):
    name: Name
    description: str = ""
    tier: Tier = "medium"
    rpo: Duration
    rto: Duration
    active: str
    """The region that takes traffic and writes, as deployed. drbot tracks changes."""
    standby: str
    lag: LagConfig | None = None
    """One replication stream in seconds (shorthand). With ``replication`` set, this is
    derived: its first seconds stream (what measurements, the watch and the digest read)."""
    replication: list[StreamConfig] = []
    """The service's replication streams, each with its own unit and thresholds."""
    health: dict[str, str] = {}
    """Region -> name of a health source."""
    drill_max_age: Duration = timedelta(days=30)
    channel: str | None = None
    approvals: ServiceApprovals | None = None
    traffic: Control | None = None
    """Where traffic goes: a traffic-switch source (route53_failover, sandbox...)."""
    database: Control | None = None
    """Which region writes: a database-promoter source (aurora_global, rds, sandbox...)."""
    runbooks: Runbooks = Runbooks()
    drills: list[DrillSchedule] = []
    """Scheduled drills: announced ahead, approved ahead, run at their time."""
    depends_on: list[Name] = []
    """Services this one needs in its region: in a region evacuation it moves after them
    (its database before it, the edge after it)."""
    backups: list[BackupConfig] = []
    """The service's backups: their age against ``max_age`` in ``/dr status``, and restore tests."""

    @model_validator(mode="after")
    def _restores_name_backups(self) -> "ServiceConfig":
        names = [b.name for b in self.backups]
        if len(set(names)) != len(names):
            raise ValueError(f"backups: each name once ({', '.join(sorted({n for n in names if names.count(n) > 1}))} "
                             "is there twice)")
        books = self.runbooks
        for where, steps in [("failover", books.failover), ("failback", books.failback)] + \
                [(f"drill.{name}", steps) for name, steps in books.drill.items()]:
            marked = [st for st in steps if st.restore is not None]
            if marked and not where.startswith("drill."):
                raise ValueError(f"runbooks.{where}: restore marks a restore test; only drill scenarios are "
                                 f"restore tests (move step {marked[0].name!r} into a drill scenario)")
            if len(marked) > 1:
                raise ValueError(f"runbooks.{where}: one step restores a backup per scenario, not "
                                 f"{len(marked)} ({', '.join(repr(st.name) for st in marked)})")
            for st in marked:
                if st.restore.backup not in names:
                    raise ValueError(f"runbooks.{where}: step {st.name!r} restores backup {st.restore.backup!r}, "
                                     f"which is not in this service's backups "
                                     f"({', '.join(names) or 'none: add a backups: entry'})")
        return self

    def backup(self, name: str) -> BackupConfig | None:
        return next((b for b in self.backups if b.name == name), None)

    def restore_scenarios(self) -> dict[str, str]:
        """Drill scenario -> the backup its restore step restores."""
        return {name: st.restore.backup for name, steps in self.runbooks.drill.items()
                for st in steps if st.restore is not None}

    @model_validator(mode="before")
    @classmethod
    def _lag_or_replication(cls, data):
        if isinstance(data, dict) and data.get("lag") is not None and data.get("replication"):
            raise ValueError("both lag and replication are set: lag is the one-stream shorthand of "
                             "replication; keep one (move the lag source into replication as a "
                             "stream with unit: seconds)")
        return data

    @model_validator(mode="after")
    def _seconds_stream_is_lag(self) -> "ServiceConfig":
        if self.replication and self.lag is None:
            first = next((s for s in self.replication if s.unit == "seconds"), None)
            if first is not None:  # derived once, on a frozen model: what readers of ``lag`` use
                object.__setattr__(self, "lag", LagConfig(
                    source=first.source, target=first.target, warning=first.warning,
                    critical=first.critical, stale_after=first.stale_after))
        return self

    def streams(self) -> list[StreamConfig]:
        """Every replication stream: ``replication``, or the ``lag:`` shorthand as one
        seconds stream named ``lag``; [] when the service has neither."""
        if self.replication:
            return list(self.replication)
        if self.lag is None:
            return []
        return [StreamConfig(name=LAG_STREAM, source=self.lag.source, target=self.lag.target,
                             warning=self.lag.warning, critical=self.lag.critical,
                             stale_after=self.lag.stale_after)]

    def seconds_stream(self) -> StreamConfig | None:
        """The stream measurements use (RPO at cutover): the first seconds stream."""
        return next((s for s in self.streams() if s.unit == "seconds"), None)

    def drill_schedule(self, name: str | None) -> DrillSchedule | None:
        """The scheduled drill called ``name`` (None for ad-hoc drills)."""
        return next((d for d in self.drills if d.name == name), None)

    def thresholds(self) -> tuple[timedelta, timedelta]:
        """(warning, critical) lag thresholds, defaulting to 40% and 80% of the RPO."""
        lag = self.lag or LagConfig(source="")
        warning = lag.warning if lag.warning is not None else self.rpo * 0.4
        critical = lag.critical if lag.critical is not None else self.rpo * 0.8
        return warning, critical


class EvacuationConfig(Strict):
    """How ``/dr evacuate REGION`` moves every service active in a region, wave by wave."""

    parallelism: int = Field(default=4, ge=1, le=50)
    """Services of one wave that run at once."""
    on_failure: Literal["stop", "continue"] = "stop"
    """'stop': no later wave starts once a service fails; 'continue': the rest go on, except
    the services that depend, directly or not, on the one that failed."""
    exclude: list[Name] = []
    """Services never moved by an evacuation (they fail over on their own, or stay)."""
    approvals: ServiceApprovals | None = None
    """The evacuation's approval policy; unset: the strictest policy among the services involved."""
    drills: list[RegionDrillSchedule] = []
    """Scheduled region drills: on the drill calendar like a service's ``drills``."""


class SlackChannels(Strict):
    announcements: str | None = None
    incidents: str | None = None


class SlackSettings(Strict):
    command: str = Field(default="/dr", pattern=r"^/[a-z0-9_-]+$")
    channels: SlackChannels = SlackChannels()
    messages_per_second: float = Field(default=1.0, gt=0, le=10)
    """Posts and updates per channel, shared by every replica (Slack allows about one per second)."""
    burst: int = Field(default=4, ge=1, le=20)
    """Messages a quiet channel may take at once before the pace applies."""


class Config(Strict):
    regions: list[Name] = Field(min_length=2)
    sources: dict[Name, SourceSpec] = {}
    services: list[ServiceConfig] = Field(min_length=1)
    slack: SlackSettings = SlackSettings()
    approvals: ApprovalPolicy = ApprovalPolicy()
    permissions: Permissions = Permissions()
    """Who may declare incidents, change them, publish, retry, change the drill calendar."""
    alerts: AlertsConfig = AlertsConfig()
    incidents: IncidentsConfig = IncidentsConfig()
    statuspage: StatuspageConfig | None = None
    paging: PagingConfig | None = None
    """Paging through PagerDuty or Opsgenie (bot/config/paging.py); unset: nobody is paged."""
    watch: WatchConfig = WatchConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    digest: DigestConfig = DigestConfig()
    archive: Control | None = None
    """Where postmortem drafts and evidence are archived (a source of kind s3_archive)."""
    evacuation: EvacuationConfig = EvacuationConfig()
    timezone: str = "UTC"
    """Times shown to people are in this zone (IANA name, e.g. Europe/Berlin)."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone (use an IANA name such as UTC or Europe/Berlin)")
        return value

    def service(self, name: str) -> ServiceConfig | None:
        return next((s for s in self.services if s.name == name), None)

    @property
    def service_names(self) -> list[str]:
        return [s.name for s in self.services]
