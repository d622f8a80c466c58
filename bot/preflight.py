"""Pre-flight checks of a change: run when it is requested (shown to the approvers), and
again just before execution, when a plan that has gone stale is not executed.

A check that cannot be answered (a failed or timed-out reading) blocks like a failed one:
nothing unknown is taken as safe.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlmodel import col, select

from bot.collector import Probe
from bot.config import ServiceConfig
from bot.config.runbooks import Step
from bot.services import Services
from bot.store import session_scope
from bot.store.queries import current_regions
from bot.store.models import RequestState, Run
from integrations.base import Target


@dataclass(frozen=True)
class Check:
    code: str
    ok: bool | None
    """True passes; False fails; None could not be answered (blocks, like a failure)."""
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Preflight:
    checks: tuple[Check, ...]
    lag_seconds: float | None
    data_loss: str
    """'none' (switchover), 'accepted' (runbook allows it), 'possible' (replica promotion)."""
    at: str

    @property
    def ok(self) -> bool:
        return all(c.ok is True for c in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.ok is not True)

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> "Preflight | None":
        if not text:
            return None
        data = json.loads(text)
        return cls(checks=tuple(Check(**c) for c in data["checks"]), lag_seconds=data["lag_seconds"],
                   data_loss=data["data_loss"], at=data["at"])


def data_loss_of(steps: list[Step]) -> str:
    db = [s.action for s in steps if s.capability == "database"]
    if any(a == "database.failover" for a in db):
        return "accepted"
    if any(a == "database.promote" for a in db):
        return "possible"
    return "none"


def run_preflight(services: Services, svc: ServiceConfig, from_region: str, to_region: str,
                  steps: list[Step], exclude_request: int | None = None, resuming: bool = False) -> Preflight:
    """``resuming``: the run is half done, so where traffic goes now is not checked."""
    probes = [Probe(("health",), svc.health[to_region], "health", Target(svc.name, to_region))] \
        if to_region in svc.health else []
    if svc.lag:
        probes.append(Probe(("lag",), svc.lag.source, "lag", Target(svc.name)))
    if svc.traffic:
        probes.append(Probe(("traffic",), svc.traffic.source, "traffic", Target(svc.name)))
    readings = services.collector.read(probes)
    checks: list[Check] = []

    health = readings.get(("health",))
    if health is None:
        checks.append(Check("target_health", None, {"region": to_region, "why": "no health source configured"}))
    elif not health.ok:
        checks.append(Check("target_health", None, {"region": to_region, "why": health.error or health.status.value}))
    else:
        checks.append(Check("target_health", bool(health.healthy), {"region": to_region, "detail": health.detail}))

    loss = data_loss_of(steps)
    lag = readings.get(("lag",))
    lag_seconds = lag.lag_seconds if lag is not None and lag.ok else None
    rpo = svc.rpo.total_seconds()
    if lag is None:  # nothing replicates (a stateless service): no data to lose
        checks.append(Check("lag", True, {"why": "no lag source configured", "rpo": rpo, "na": True}))
    elif not lag.ok:
        checks.append(Check("lag", None, {"why": lag.error or lag.status.value, "rpo": rpo}))
    elif lag.replicating is False or lag_seconds is None:
        checks.append(Check("lag", loss == "accepted", {"stopped": True, "rpo": rpo, "loss": loss}))
    else:
        checks.append(Check("lag", lag_seconds <= rpo or loss == "accepted",
                            {"lag": lag_seconds, "rpo": rpo, "loss": loss}))

    with session_scope(services.engine) as s:  # one read for both: where it runs, what else runs
        recorded = current_regions(s).get(svc.name, (svc.active, svc.standby))[0]
        busy = s.exec(select(Run).where(Run.service == svc.name, col(Run.state).in_(
            [RequestState.RUNNING, RequestState.INTERRUPTED]), Run.request_id != (exclude_request or -1))).first()
    if not resuming:
        checks.append(Check("active_recorded", recorded == from_region,
                            {"expected": from_region, "actual": recorded}))
    traffic = readings.get(("traffic",))
    if traffic is not None and not resuming:
        if traffic.ok:
            checks.append(Check("traffic_source", traffic.region == from_region,
                                {"expected": from_region, "actual": traffic.region, "source": traffic.source}))
        else:
            checks.append(Check("traffic_source", None, {"why": traffic.error, "source": traffic.source}))

    checks.append(Check("no_other_run", busy is None, {"request_id": busy.request_id if busy else None}))
    return Preflight(tuple(checks), lag_seconds, loss, services.clock().isoformat())
