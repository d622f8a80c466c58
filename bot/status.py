"""The readiness report: which sources to read for which services, then assess."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from sqlalchemy.engine import Engine

from bot.collector import Collector, Probe
from bot.config import LoadedConfig, ServiceConfig
from bot.config.models import LagConfig
from bot.readiness import Assessment, Targets, assess, order_worst_first
from bot.readings import Reading
from bot.store import session_scope
from bot.store.queries import current_regions, latest_drills, latest_missed_drills
from integrations.base import Target


@dataclass(frozen=True)
class Report:
    assessments: list[Assessment]
    generated_at: datetime
    elapsed_ms: float

    @property
    def sandbox(self) -> bool:
        return any(a.sandbox for a in self.assessments)

    @property
    def all_ready(self) -> bool:
        return all(a.verdict.value == "READY" for a in self.assessments)


def targets_of(svc: ServiceConfig) -> Targets:
    warning, critical = svc.thresholds()
    stale_after = svc.lag.stale_after if svc.lag else LagConfig.model_fields["stale_after"].default
    return Targets(rpo=svc.rpo, rto=svc.rto, warning=warning, critical=critical,
                   stale_after=stale_after, drill_max_age=svc.drill_max_age)


class StatusService:
    def __init__(self, loaded: LoadedConfig, collector: Collector, engine: Engine,
                 clock: Callable[[], datetime]):
        self.loaded = loaded
        self.collector = collector
        self.engine = engine
        self.clock = clock

    @property
    def config(self):
        return self.loaded.config

    def regions(self) -> dict[str, tuple[str, str]]:
        with session_scope(self.engine) as s:
            moved = current_regions(s)
        return {svc.name: moved.get(svc.name, (svc.active, svc.standby)) for svc in self.config.services}

    def report(self, service: str | None = None, history: bool = False) -> Report:
        started = self.clock()
        services = [self.config.service(service)] if service else list(self.config.services)
        services = [s for s in services if s is not None]
        regions = self.regions()
        probes = []
        for svc in services:
            if svc.lag:
                probes.append(Probe((svc.name, "lag"), svc.lag.source, "lag", Target(svc.name), history))
            for region, source in svc.health.items():
                probes.append(Probe((svc.name, "health", region), source, "health", Target(svc.name, region)))
        readings = self.collector.read(probes)
        with session_scope(self.engine) as s:
            drills = latest_drills(s, [svc.name for svc in services])
            missed = latest_missed_drills(s, [svc.name for svc in services])
        now = self.clock()
        out = []
        for svc in services:
            active, standby = regions[svc.name]
            lag = readings.get((svc.name, "lag")) or Reading.missing("lag", "no lag source configured")
            health = {r: readings[(svc.name, "health", r)] for r in svc.health}
            out.append(assess(svc.name, svc.tier, active, standby, targets_of(svc), lag, health,
                              drills.get(svc.name), now, missed.get(svc.name)))
        elapsed = (self.clock() - started).total_seconds() * 1000
        return Report(order_worst_first(out), now, elapsed)
