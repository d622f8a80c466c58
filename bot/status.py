"""The readiness report: which sources to read for which services, then assess.

Besides lag and health, the report reads the live state: where the traffic switch routes
and which region writes (and who replicates from whom) from the database source, so that
drift from drbot's record is a finding of its own. Those reads go to control-plane APIs
with low rate limits (Route 53: five per second per account), so a good one is kept for
``live_ttl`` (default 15 s) per service, source and recorded region: a move drbot makes
changes the recorded region and so is never hidden behind an old reading.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from bot.collector import Collector, Probe
from bot.config import LoadedConfig, ServiceConfig
from bot.config.models import LagConfig
from bot.readiness import Assessment, Targets, assess, order_worst_first
from bot.readings import Reading
from bot.store import session_scope
from bot.store.models import RequestState, Run
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


class LiveCache:
    """Good live-state readings (traffic, replication) for ``ttl`` of real time (monotonic,
    whatever clock the services run on), thread-safe. Failed reads are not kept."""

    def __init__(self, ttl: timedelta, monotonic: Callable[[], float] = time.monotonic):
        self.ttl = ttl.total_seconds()
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._items: dict[tuple, tuple[float, Reading]] = {}

    def get(self, key: tuple) -> Reading | None:
        with self._lock:
            hit = self._items.get(key)
        if hit is None:
            return None
        at, reading = hit
        return reading if 0 <= self.monotonic() - at < self.ttl else None

    def put(self, key: tuple, reading: Reading) -> None:
        if reading.ok:
            with self._lock:
                self._items[key] = (self.monotonic(), reading)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class StatusService:
    def __init__(self, loaded: LoadedConfig, collector: Collector, engine: Engine,
                 clock: Callable[[], datetime], live_ttl: timedelta = timedelta(seconds=15)):
        self.loaded = loaded
        self.collector = collector
        self.engine = engine
        self.clock = clock
        self.live = LiveCache(live_ttl)

    @property
    def config(self):
        return self.loaded.config

    def regions(self) -> dict[str, tuple[str, str]]:
        with session_scope(self.engine) as s:
            moved = current_regions(s)
        return {svc.name: moved.get(svc.name, (svc.active, svc.standby)) for svc in self.config.services}

    @staticmethod
    def _live_probes(services: list[ServiceConfig], regions: dict[str, tuple[str, str]]) -> list[tuple[Probe, tuple]]:
        """(probe, cache key) for where traffic goes and who writes, per service with the control."""
        out = []
        for svc in services:
            for control, kind in ((svc.traffic, "traffic"), (svc.database, "replication")):
                if control is not None:
                    probe = Probe((svc.name, kind), control.source, kind, Target(svc.name))
                    out.append((probe, (svc.name, kind, control.source, regions[svc.name][0])))
        return out

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
        live = self._live_probes(services, regions)
        cached = {p.key: r for p, ck in live if (r := self.live.get(ck)) is not None}
        readings = self.collector.read(probes + [p for p, _ in live if p.key not in cached])
        for p, ck in live:
            if p.key not in cached:
                self.live.put(ck, readings[p.key])
        readings |= cached
        with session_scope(self.engine) as s:
            drills = latest_drills(s, [svc.name for svc in services])
            missed = latest_missed_drills(s, [svc.name for svc in services])
            moving = {r.service: r.request_id for r in s.exec(select(Run).where(
                col(Run.service).in_([svc.name for svc in services]), Run.state == RequestState.RUNNING))}
        now = self.clock()
        out = []
        for svc in services:
            active, standby = regions[svc.name]
            lag = readings.get((svc.name, "lag")) or Reading.missing("lag", "no lag source configured")
            health = {r: readings[(svc.name, "health", r)] for r in svc.health}
            out.append(assess(svc.name, svc.tier, active, standby, targets_of(svc), lag, health,
                              drills.get(svc.name), now, missed.get(svc.name),
                              traffic=readings.get((svc.name, "traffic")),
                              database=readings.get((svc.name, "replication")), moving=moving.get(svc.name)))
        elapsed = (self.clock() - started).total_seconds() * 1000
        return Report(order_worst_first(out), now, elapsed)
