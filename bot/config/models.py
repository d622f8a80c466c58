"""Typed config models. Unknown keys are errors everywhere: a typo must not silently
disable a check. Backend options are validated separately, by each backend's own
``Options`` model (see ``loader.py``)."""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.config.incidents import AlertsConfig, IncidentsConfig, StatuspageConfig
from bot.config.models_base import Duration, Name, SlackId, Strict
from bot.config.paging import PagingConfig
from bot.config.permissions import Permissions
from bot.config.runbooks import Runbooks
from bot.config.schedules import DigestConfig, DrillSchedule, SchedulerConfig, WatchConfig

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
    warning: Duration | None = None
    """Lag at or past this is AT_RISK. Default: 40% of the service's RPO."""
    critical: Duration | None = None
    """Lag at or past this is NOT_READY. Default: 80% of the service's RPO."""
    stale_after: Duration = timedelta(minutes=10)
    """A reading older than this is stale: UNKNOWN, never healthy."""


class BreakGlass(Strict):
    enabled: bool = False
    group: list[SlackId] = []
    """Slack user or user-group IDs allowed to execute with zero approvals."""


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


class ServiceApprovals(Strict):
    """Per-service overrides of the global approval policy; unset fields inherit."""

    required_approvals: int | None = Field(default=None, ge=1, le=10)
    approvers: list[SlackId] | None = None
    requesters: list[SlackId] | None = None
    expires: Duration | None = None
    break_glass: BreakGlass | None = None
    allow_parallel: bool | None = None


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
