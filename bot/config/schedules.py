"""Config of scheduled drills, the readiness watch (with its failback assistant) and the weekly digest."""
from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from pydantic import Field, field_validator, model_validator

from bot.config.models_base import Duration, Name, Strict


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a time zone (use an IANA name such as UTC or Europe/Berlin)")
    return value


def _cron(value: str) -> str:
    try:
        CronTrigger.from_crontab(value, timezone="UTC")
    except ValueError as e:
        raise ValueError(f"{value!r} is not a cron expression ({e}); use five fields, "
                         "e.g. '0 10 1-7 * tue' for the first Tuesday of the month at 10:00")
    return value


class CalendarSchedule(Strict):
    """What every drill on the calendar has, a service's (``services[].drills``) or a
    region's (``evacuation.drills``): when, where it is announced, who is on point."""

    name: Name
    cron: str
    """Five-field crontab in ``timezone``: minute hour day-of-month month day-of-week.
    The first Tuesday of every month at 10:00 is '0 10 1-7 * tue'."""
    timezone: str = "UTC"
    environment: str = "production"
    """The target environment, as people call it; shown in announcements and reports."""
    channel: str | None = None
    """Where it is announced; default: the service's channel (a service drill), then
    slack.channels.announcements."""
    announce: list[Duration] = [timedelta(hours=24), timedelta(hours=1)]
    """Lead times of the announcements before the start; one more is posted at the start."""
    grace: Duration = timedelta(minutes=15)
    """How late a drill may still start when drbot was down at its time; later, it is missed."""
    on_point: list[str] = []
    """Slack user IDs of the people running it."""
    impact: str = "none expected"

    _tz = field_validator("timezone")(classmethod(lambda cls, v: _zone(v)))
    _cr = field_validator("cron")(classmethod(lambda cls, v: _cron(v)))

    @model_validator(mode="after")
    def _leads(self) -> "CalendarSchedule":
        if any(lead <= timedelta(0) for lead in self.announce):
            raise ValueError("announce lead times must be positive (the start is always announced)")
        return self


class DrillSchedule(CalendarSchedule):
    """A service's scheduled drill (``services[].drills``)."""

    scenario: str = "default"
    """The drill runbook (services[].runbooks.drill.NAME) to run."""
    maintenance: bool = False
    """Publish a scheduled maintenance on the status page for the drill's window."""
    duration: Duration = timedelta(hours=1)
    """Expected length, for the maintenance window and the announcement."""


class RegionDrillSchedule(CalendarSchedule):
    """A scheduled region drill (``evacuation.drills``): every service active in ``region``
    drilled as one evacuation marked as a drill (``bot.evacuation``). It never touches the
    status page, so it has no ``maintenance``, and no ``scenario`` (each service runs its
    drill scenario 'evacuate', or its failover on the sandbox)."""

    region: Name
    """One of ``regions``."""


class FailbackConfig(Strict):
    """The failback assistant (``bot.failback_assistant``): once a service failed over away
    from its home region (``services[].active``), suggest planning the failback when the home
    region has been healthy, and lag under ``lag_below``, for ``after`` without a break."""

    enabled: bool = True
    after: Duration = timedelta(minutes=10)
    """How long health and lag must hold, without a break, before the suggestion."""
    lag_below: Duration | None = None
    """Default: the service's lag warning threshold."""

    @model_validator(mode="after")
    def _positive(self) -> "FailbackConfig":
        if self.after <= timedelta(0):
            raise ValueError("after must be a positive duration, e.g. 10m")
        if self.lag_below is not None and self.lag_below <= timedelta(0):
            raise ValueError("lag_below must be a positive duration, e.g. 2m (or left out: the warning threshold)")
        return self


class WatchConfig(Strict):
    enabled: bool = True
    interval: Duration = timedelta(minutes=1)
    hysteresis: float = Field(default=0.1, ge=0, lt=0.5)
    """A verdict caused by lag is left only when lag is this fraction beyond the threshold
    on the better side, so lag hovering at a threshold does not flap."""
    channel: str | None = None
    """Default: the service's channel, then slack.channels.announcements."""
    failback: FailbackConfig = FailbackConfig()


class DigestConfig(Strict):
    enabled: bool = True
    cron: str = "0 9 * * mon"
    timezone: str = "UTC"
    channel: str | None = None
    """Default: slack.channels.announcements."""

    _tz = field_validator("timezone")(classmethod(lambda cls, v: _zone(v)))
    _cr = field_validator("cron")(classmethod(lambda cls, v: _cron(v)))


class SchedulerConfig(Strict):
    drill_tick: Duration = timedelta(seconds=30)
    """How often the leader plans, announces and starts scheduled drills."""
    leader_poll: Duration = timedelta(seconds=2)
    """How often a replica that is not the leader tries to become it (take-over time)."""
    misfire_grace: Duration = timedelta(minutes=5)
    """A periodic job due while no scheduler ran runs once on recovery within this time,
    and is reported missed after it."""
