"""The drill calendar's schedules: a service's (``services[].drills``) or a region's
(``evacuation.drills``; its occurrences have the service ``region:REGION``). Which
schedule an occurrence follows, when it fires, when it is announced and where. Pure
lookups over the config; nothing here assumes a service exists for ``region:...``."""
from __future__ import annotations

from datetime import datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

from bot.config import Config
from bot.config.schedules import CalendarSchedule, DrillSchedule
from bot.store.evacuation_tables import REGION_PREFIX

ADHOC = "adhoc"
"""The schedule name of a drill planned by hand (``/dr drill schedule``)."""


def region_of(service: str) -> str | None:
    """The region a region drill's occurrence (or request) names; None for a service."""
    return service[len(REGION_PREFIX):] if service.startswith(REGION_PREFIX) else None


def schedule_for(config: Config, service: str, name: str | None) -> CalendarSchedule | None:
    """The schedule called ``name`` of ``service`` (a service or ``region:REGION``); None for
    an ad-hoc drill, or a schedule no longer in the config."""
    region = region_of(service)
    if region is not None:
        return next((d for d in config.evacuation.drills if d.name == name and d.region == region), None)
    svc = config.service(service)
    return svc.drill_schedule(name) if svc else None


def fire_times(schedule: CalendarSchedule, after: datetime, until: datetime) -> list[datetime]:
    trigger = CronTrigger.from_crontab(schedule.cron, timezone=schedule.timezone)
    out, previous, t = [], None, after
    while len(out) < 50:
        t = trigger.get_next_fire_time(previous, t)
        if t is None or t > until:
            break
        out.append(t)
        previous = t
        t = t + timedelta(seconds=1)
    return out


def lead_times(schedule: CalendarSchedule | None) -> list[int]:
    """Announcement lead times in seconds, largest first, ending with 0 (the start).
    An ad-hoc drill (no schedule) uses the defaults."""
    announce = schedule.announce if schedule else DrillSchedule.model_fields["announce"].default
    return sorted({int(x.total_seconds()) for x in announce}, reverse=True) + [0]


def grace_of(schedule: CalendarSchedule | None) -> timedelta:
    return schedule.grace if schedule else DrillSchedule.model_fields["grace"].default


def channel_for(config: Config, service: str, schedule: CalendarSchedule | None) -> str:
    """The schedule's channel, then the service's (a region has none), then
    ``slack.channels.announcements``."""
    svc = config.service(service)
    return ((schedule.channel if schedule else None) or (svc.channel if svc else None)
            or config.slack.channels.announcements or "")
