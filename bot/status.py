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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Callable, Hashable, TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from bot import backups
from bot.collector import Collector, Probe
from bot.config import LoadedConfig, ServiceConfig
from bot.config.models import LagConfig, StreamConfig
from bot.config.runbooks import splits_by_weight
from bot.readiness import Assessment, Finding, StreamSpec, Targets, Verdict, assess, order_worst_first, worst
from bot.readings import Reading, Status
from bot.store import read_scope
from bot.store.models import RequestState, Run
from bot.store.queries import latest_drills, latest_missed_drills, regions_now
from integrations.base import WEIGHTS, Backend, Target


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


def stream_spec(svc: ServiceConfig, stream: StreamConfig) -> StreamSpec:
    """How readiness judges ``stream`` of ``svc``: its limits in its unit; the first
    seconds stream is the service's lag."""
    warning, critical = stream.limits(svc.rpo)
    first = svc.seconds_stream()
    return StreamSpec(stream.name, stream.unit, warning or 0.0, critical or 0.0, stream.stale_after,
                      lag=first is not None and first.name == stream.name)


TRAFFIC_PART = "where traffic goes"
"""The ``part`` of the finding for a traffic reading that failed (bot/readiness.py)."""


def split_probes(backends: dict[str, Backend], wanted: dict[str, str]) -> list[Probe]:
    """Reads of the traffic split for each service in ``wanted`` (service -> traffic source)
    whose source splits traffic by weight (capability WEIGHTS): asked only for a service whose
    traffic reading failed (a real source cannot name one active region then), that a run
    moves, or on the sandbox, as control-plane APIs have low rate limits."""
    probes = []
    for service, source in wanted.items():
        backend = backends.get(source)
        if backend is None or WEIGHTS not in backend.capabilities:
            continue
        if not splits_by_weight(backend.kind, backend.options):
            continue  # e.g. Route 53 failover records: never split
        probes.append(Probe((service, "weights"), source, "weights", Target(service)))
    return probes


def split_of(r: Reading | None) -> dict[str, float] | None:
    """The split a weights read found, when traffic goes to more than one region; a read
    that failed is left out (the failed traffic reading already says why)."""
    if r is None or not r.ok or not r.weights or sum(1 for share in r.weights.values() if share > 0) < 2:
        return None
    return r.weights


def with_split(a: Assessment, weights: dict[str, float] | None, moving: int | None) -> Assessment:
    """``a`` with its traffic finding (failed: no single active region; or the region with
    the largest share) replaced by the split the traffic source reads (``weights``):
    AT_RISK while a run moves the service, NOT_READY when none does."""
    if not weights:
        return a
    verdict = Verdict.AT_RISK if moving else Verdict.NOT_READY
    source = a.traffic.source if a.traffic is not None else ""
    split = Finding(verdict, "traffic_split", {"weights": weights, "recorded": a.active, "source": source,
                                               "moving": moving})
    findings = tuple(split if f.code in ("traffic_ok", "traffic_drift") or f.params.get("part") == TRAFFIC_PART
                     else f for f in a.findings)
    if split not in findings:
        return a
    return replace(a, findings=findings, verdict=worst(f.verdict for f in findings))


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
            if svc.replication:  # each stream read on its own (the lag: the first seconds one)
                probes += [Probe((svc.name, "stream", st.name), st.source, "lag", st.target_of(svc.name),
                                 history, st.stale_after.total_seconds(), where) for st in svc.replication]
            elif svc.lag:
                probes.append(Probe((svc.name, "lag"), svc.lag.source, "lag", svc.lag.target_of(svc.name),
                                    history, stale_after, where))
            for region, source in svc.health.items():
                probes.append(Probe((svc.name, "health", region), source, "health", Target(svc.name, region),
                                    stale_after=stale_after, context=where))
            probes += backups.probes(svc)
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
            restore_tests = backups.restore_tests(s, services)
            moving = {r.service: r.request_id for r in s.exec(select(Run).where(
                col(Run.service).in_([svc.name for svc in services]), Run.state == RequestState.RUNNING))}
        now = self.clock()
        probes = split_probes(self.collector.backends, {  # mid-ramp: the percentages, not an error
            svc.name: svc.traffic.source for svc in services if svc.traffic is not None and (
                svc.name in moving or (r := readings.get((svc.name, "traffic"))) is None
                or r.status is Status.FAILED or r.sandbox)})
        splits = self.collector.read(probes) if probes else {}
        out = []
        for svc in services:
            active, standby = regions[svc.name]
            first = svc.seconds_stream() if svc.replication else None
            lag = readings.get((svc.name, "stream", first.name) if first else (svc.name, "lag")) \
                or Reading.missing("lag", "no lag source configured")
            streams = [(stream_spec(svc, st), readings[(svc.name, "stream", st.name)])
                       for st in svc.replication] or None
            health = {r: readings[(svc.name, "health", r)] for r in svc.health}
            out.append(assess(svc.name, svc.tier, active, standby, targets_of(svc), lag, health,
                              drills.get(svc.name), now, missed.get(svc.name),
                              traffic=readings.get((svc.name, "traffic")),
                              database=readings.get((svc.name, "replication")), moving=moving.get(svc.name),
                              streams=streams))
            out[-1] = backups.judged(out[-1], svc, readings, restore_tests, now)  # backup age, restore tests
            out[-1] = with_split(out[-1], split_of(splits.get((svc.name, "weights"))), moving.get(svc.name))
        elapsed = (self.clock() - started).total_seconds() * 1000
        return Report(order_worst_first(out), now, elapsed)
