"""The readiness report: which sources to read for which services, then assess.

Besides lag and health, the report reads the live state: where the traffic switch routes
and which region writes (and who replicates from whom) from the database source, so that
drift from drbot's record is a finding of its own. Those reads go to control-plane APIs
with low rate limits (Route 53: five per second per account), so a good one is kept for
``live_ttl`` (default 15 s) per service, source and recorded region: a move drbot makes
changes the recorded region and so is never hidden behind an old reading.

Concurrent requests for the same report share one (``SharedCall``): fifty people typing
``/dr status`` at once cost one round of reads and one assessment. With ``share_ttl`` set,
a report made shortly after another also reuses its good lag and health readings (never
one older than the service's ``stale_after``, and each with its real age); ``fresh=True``
(Refresh) reads every source again, and concurrent fresh requests still share one flight.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Hashable, TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from bot.collector import Collector, Probe
from bot.config import LoadedConfig, ServiceConfig
from bot.config.models import LagConfig
from bot.readiness import Assessment, Targets, assess, order_worst_first
from bot.readings import Reading
from bot.store import read_scope
from bot.store.models import RequestState, Run
from bot.store.queries import latest_drills, latest_missed_drills, regions_now
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


T = TypeVar("T")


class SharedCall:
    """Concurrent calls with one key run once: the first caller runs it, the ones arriving
    while it runs get its result (or its exception). A call after it ends runs again."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: dict[Hashable, Future] = {}
        self.runs = 0
        """Calls that ran."""
        self.joined = 0
        """Calls that got the result of one already running."""

    def __call__(self, key: Hashable, fn: Callable[[], T]) -> T:
        with self._lock:
            future = self._running.get(key)
            first = future is None
            if first:
                future = self._running[key] = Future()
                self.runs += 1
            else:
                self.joined += 1
        if not first:
            return future.result()  # bounded: the first caller's work has its own timeouts
        try:
            result = fn()
        except BaseException as e:
            self._done(key)
            future.set_exception(e)
            raise
        self._done(key)  # before the result is out: a call arriving now runs anew
        future.set_result(result)
        return result

    def _done(self, key: Hashable) -> None:
        with self._lock:
            del self._running[key]


class StatusService:
    def __init__(self, loaded: LoadedConfig, collector: Collector, engine: Engine,
                 clock: Callable[[], datetime], live_ttl: timedelta = timedelta(seconds=15),
                 share_ttl: timedelta = timedelta(0)):
        self.loaded = loaded
        self.collector = collector
        self.engine = engine
        self.clock = clock
        self.live = LiveCache(live_ttl)
        self.share_ttl = share_ttl
        """How long a good lag or health reading may serve later reports (0: read each time)."""
        self.shared = SharedCall()

    @property
    def config(self):
        return self.loaded.config

    def regions(self) -> dict[str, tuple[str, str]]:
        with read_scope(self.engine) as s:
            return regions_now(s, self.config.services)

    @staticmethod
    def _live_probes(services: list[ServiceConfig], regions: dict[str, tuple[str, str]]) -> list[tuple[Probe, tuple]]:
        """(probe, cache key) for where traffic goes and who writes, per service with the control."""
        out = []
        for svc in services:
            for control, kind in ((svc.traffic, "traffic"), (svc.database, "replication")):
                if control is not None:
                    probe = Probe((svc.name, kind), control.source, kind, Target(svc.name),
                                  context=regions[svc.name])
                    out.append((probe, (svc.name, kind, control.source, regions[svc.name][0])))
        return out

    def report(self, service: str | None = None, history: bool = False, fresh: bool = False) -> Report:
        """The readiness report (of one service, or all); ``fresh``: read every source now."""
        reuse = 0.0 if fresh else self.share_ttl.total_seconds()
        return self.shared((service, history, reuse), lambda: self._report(service, history, reuse))

    def _report(self, service: str | None, history: bool, reuse: float) -> Report:
        started = self.clock()
        services = [self.config.service(service)] if service else list(self.config.services)
        services = [s for s in services if s is not None]
        regions = self.regions()
        probes = []
        for svc in services:
            stale_after, where = targets_of(svc).stale_after.total_seconds(), regions[svc.name]
            if svc.lag:
                probes.append(Probe((svc.name, "lag"), svc.lag.source, "lag", Target(svc.name), history,
                                    stale_after, where))
            for region, source in svc.health.items():
                probes.append(Probe((svc.name, "health", region), source, "health", Target(svc.name, region),
                                    stale_after=stale_after, context=where))
        live = self._live_probes(services, regions)
        cached = {p.key: r for p, ck in live if (r := self.live.get(ck)) is not None}
        readings = self.collector.read(probes + [p for p, _ in live if p.key not in cached], reuse, started)
        for p, ck in live:
            if p.key not in cached:
                self.live.put(ck, readings[p.key])
        readings |= cached
        with read_scope(self.engine) as s:
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
