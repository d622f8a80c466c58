"""The plan of a region evacuation (``/dr plan evacuate REGION``): every service active in
the region, in waves by dependency, each with its pre-flight read live, the data-loss risk,
the RTO its past drills and failovers measured, and what would be refused and why.
Changes nothing.

A service is refused when it has no failover runbook, another change of it is open, or its
pre-flight fails; a service that depends (directly or not) on a refused one is blocked:
with ``on_failure: stop`` no later wave would start, with ``continue`` it would be skipped.
"""
from __future__ import annotations

import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bot.config.dependencies import dependents, moving_deps, waves
from bot.preflight import Preflight, run_preflight
from bot.services import Services
from bot.store import read_scope
from bot.store.queries import measured_rtos, open_changes

PREFLIGHT_WORKERS = 8
"""Pre-flights read live sources; this many services are read at once."""


@dataclass(frozen=True)
class Refusal:
    code: str
    """'no_runbook', 'change_open', 'preflight'"""
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServicePlan:
    service: str
    tier: str
    wave: int
    """1 for the first wave."""
    from_region: str
    to_region: str
    after: tuple[str, ...]
    """The moving services it waits for: its dependencies, looking through services that stay."""
    steps: int
    rto_s: float
    preflight: Preflight | None
    refusals: tuple[Refusal, ...] = ()
    blocked_by: tuple[str, ...] = ()
    """Refused services it depends on, directly or not."""
    past_rtos: tuple[float, ...] = ()
    """Measured RTOs of its last passed drills and successful failovers, newest first."""

    @property
    def expected_rto_s(self) -> float | None:
        return statistics.median(self.past_rtos) if self.past_rtos else None

    @property
    def ok(self) -> bool:
        return not self.refusals and not self.blocked_by


@dataclass(frozen=True)
class EvacuationPlan:
    region: str
    waves: tuple[tuple[ServicePlan, ...], ...]
    excluded: tuple[str, ...]
    """Active in the region but excluded by ``evacuation.exclude``: they stay."""
    elsewhere: int
    """Services active in other regions (not moved)."""
    parallelism: int
    on_failure: str
    at: str

    @property
    def services(self) -> tuple[ServicePlan, ...]:
        return tuple(p for wave in self.waves for p in wave)

    @property
    def ok(self) -> bool:
        return bool(self.services) and all(p.ok for p in self.services)

    @property
    def expected_rto_s(self) -> float | None:
        """Sum over waves of the slowest expected RTO in the wave (services of a wave run in
        parallel, ``parallelism`` at a time); None when a moving service was never measured."""
        total = 0.0
        for wave in self.waves:
            expected = [p.expected_rto_s for p in wave]
            if any(e is None for e in expected):
                return None
            batches = -(-len(wave) // self.parallelism)
            total += max(expected) * batches
        return total


def plan_evacuation(services: Services, region: str) -> EvacuationPlan:
    config = services.config
    settings = config.evacuation
    regions = services.status.regions()  # service -> (active, standby), as drbot recorded them
    in_region = [n for n in config.service_names if regions[n][0] == region]
    moving = [n for n in in_region if n not in settings.exclude]
    with read_scope(services.engine) as s:
        busy = open_changes(s, moving)
        past = measured_rtos(s, moving)
    with ThreadPoolExecutor(max_workers=max(1, min(PREFLIGHT_WORKERS, len(moving))),
                            thread_name_prefix="drbot-evac-plan") as pool:
        preflights = dict(zip(moving, pool.map(lambda n: _preflight(services, n, regions[n]), moving)))
    refused: dict[str, tuple[Refusal, ...]] = {}
    for name in moving:
        refusals = []
        if not config.service(name).runbooks.failover:
            refusals.append(Refusal("no_runbook"))
        if name in busy:
            req = busy[name]
            refusals.append(Refusal("change_open", {"id": req.id, "kind": req.kind.value, "state": req.state.value}))
        pre = preflights[name]
        if pre is not None and not pre.ok:
            refusals.append(Refusal("preflight", {"failures": len(pre.failures)}))
        refused[name] = tuple(refusals)
    behind = {n: dependents(config, n) for n in moving if refused[n]}  # refused -> what depends on it
    blocked = {name: tuple(sorted(n for n, deps in behind.items() if name in deps)) for name in moving}
    plans = []
    for number, wave in enumerate(waves(config, moving), start=1):
        plans.append(tuple(_service_plan(services, name, number, regions[name], set(moving), preflights[name],
                                         refused[name], blocked[name], past.get(name, []))
                           for name in wave))
    return EvacuationPlan(region=region, waves=tuple(plans), excluded=tuple(n for n in in_region if n not in moving),
                          elsewhere=len(config.services) - len(in_region), parallelism=settings.parallelism,
                          on_failure=settings.on_failure, at=services.clock().isoformat())


def _preflight(services: Services, name: str, regions: tuple[str, str]) -> Preflight | None:
    svc = services.config.service(name)
    steps = svc.runbooks.failover
    if not steps:
        return None
    active, standby = regions
    return run_preflight(services, svc, active, standby, steps)


def _service_plan(services: Services, name: str, number: int, regions: tuple[str, str],
                  moving: set[str], pre: Preflight | None, refusals: tuple[Refusal, ...],
                  blocked_by: tuple[str, ...], past: list[float]) -> ServicePlan:
    svc = services.config.service(name)
    after = tuple(n for n in services.config.service_names if n in moving_deps(services.config, name, moving))
    return ServicePlan(service=name, tier=svc.tier, wave=number, from_region=regions[0], to_region=regions[1],
                       after=after, steps=len(svc.runbooks.failover), rto_s=svc.rto.total_seconds(),
                       preflight=pre, refusals=refusals, blocked_by=blocked_by, past_rtos=tuple(past))
