"""Pre-flight checks of a change: run when it is requested (shown to the approvers), and
again just before execution, when a plan that has gone stale is not executed.

A check that cannot be answered (a failed, timed-out or stale reading) blocks like a
failed one: nothing unknown is taken as safe.

A move to a region whose database does not replicate from the writer (a former writer
left standalone by a replica promotion, a member removed from a global database) fails
with the reason and what to do (``bot.replication``), unless the requester explicitly
allowed data loss (``allow_data_loss``, recorded on the request and in the audit log).
The data-loss risk the plan states comes from that live replication state and a fresh
lag reading, never from a stale metric.

A service with ``replication:`` streams has every stream checked ("stream"): one at or past
its critical level (in its own unit) refuses the change and is named; its first seconds
stream is also the "lag" checked against the RPO.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlmodel import col, select

from bot.collector import Probe
from bot.config import ServiceConfig
from bot.config.models import StreamConfig
from bot.config.runbooks import Step
from bot.replication import judge_move
from bot.services import Services
from bot.store import read_scope
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
    """'none' (switchover), 'accepted' (runbook allows it), 'possible' (replica promotion),
    'diverged' (the target does not replicate from the writer: everything written since
    the split would be lost)."""
    at: str
    allow_data_loss: bool = False
    """The requester explicitly accepted data loss."""

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
                   data_loss=data["data_loss"], at=data["at"], allow_data_loss=data.get("allow_data_loss", False))


def data_loss_of(steps: list[Step]) -> str:
    db = [s.action for s in steps if s.capability == "database"]
    if any(a == "database.failover" for a in db):
        return "accepted"
    if any(a == "database.promote" for a in db):
        return "possible"
    return "none"


def run_preflight(services: Services, svc: ServiceConfig, from_region: str, to_region: str,
                  steps: list[Step], exclude_request: int | None = None, resuming: bool = False,
                  allow_data_loss: bool = False) -> Preflight:
    """``resuming``: the run is half done, so where traffic goes now is not checked (and the
    target may already write). ``allow_data_loss``: the requester accepts losing what the
    target's database lacks."""
    probes = [Probe(("health",), svc.health[to_region], "health", Target(svc.name, to_region))] \
        if to_region in svc.health else []
    if svc.lag:
        probes.append(Probe(("lag",), svc.lag.source, "lag", svc.lag.target_of(svc.name)))
    probes += [Probe(("stream", st.name), st.source, "lag", st.target_of(svc.name)) for st in svc.replication]
    if svc.traffic:
        probes.append(Probe(("traffic",), svc.traffic.source, "traffic", Target(svc.name)))
    if svc.database:
        probes.append(Probe(("replication",), svc.database.source, "replication", Target(svc.name)))
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
    age = lag.age(services.clock()) if lag is not None and lag.ok else None
    stale = age is not None and svc.lag is not None and age > svc.lag.stale_after
    lag_seconds = lag.lag_seconds if lag is not None and lag.ok and not stale else None
    rpo = svc.rpo.total_seconds()
    if lag is None:  # nothing replicates (a stateless service): no data to lose
        checks.append(Check("lag", True, {"why": "no lag source configured", "rpo": rpo, "na": True}))
    elif not lag.ok:
        checks.append(Check("lag", None, {"why": lag.error or lag.status.value, "rpo": rpo}))
    elif stale:  # a metric that stopped updating says nothing about the data at risk now
        checks.append(Check("lag", None, {"stale": True, "age": age.total_seconds(), "rpo": rpo,
                                          "limit": svc.lag.stale_after.total_seconds(), "source": lag.source}))
    elif lag.replicating is False or lag_seconds is None:
        checks.append(Check("lag", loss == "accepted", {"stopped": True, "rpo": rpo, "loss": loss}))
    else:
        checks.append(Check("lag", lag_seconds <= rpo or loss == "accepted",
                            {"lag": lag_seconds, "rpo": rpo, "loss": loss}))
    if allow_data_loss and checks[-1].ok is not True:  # the requester accepts whatever the lag means
        checks[-1] = Check("lag", True, checks[-1].params | {"overridden": True})
    checks += [_stream_check(svc, st, readings[("stream", st.name)], services.clock(), loss, allow_data_loss)
               for st in svc.replication]

    replication = readings.get(("replication",))
    if replication is not None:
        check = _replication_check(replication, from_region, to_region, resuming, allow_data_loss)
        checks.append(check)
        if check.params.get("diverged"):
            loss = "diverged"

    with read_scope(services.engine) as s:  # one read for both: where it runs, what else runs
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
    return Preflight(tuple(checks), lag_seconds, loss, services.clock().isoformat(), allow_data_loss)


def _stream_check(svc: ServiceConfig, stream: StreamConfig, reading, now, loss: str, allow_data_loss: bool) -> Check:
    """One replication stream: at or past its critical level (in its unit) the change is
    refused, naming the stream; unknown (failed, stale) blocks like a failure."""
    warning, critical = stream.limits(svc.rpo)
    base = {"stream": stream.name, "unit": stream.unit, "source": reading.source, "critical": critical,
            "rpo": svc.rpo.total_seconds()}
    age = reading.age(now) if reading.ok else None
    if not reading.ok:
        check = Check("stream", None, base | {"why": reading.error or reading.status.value})
    elif age is not None and age > stream.stale_after:
        check = Check("stream", None, base | {"why": f"the reading is {age.total_seconds():g}s old (stale after "
                                                     f"{stream.stale_after.total_seconds():g}s)"})
    elif reading.replicating is False or reading.lag_seconds is None:
        check = Check("stream", loss == "accepted", base | {"stopped": True, "loss": loss})
    else:
        value = reading.lag_seconds
        past_rpo = stream.unit == "seconds" and value > svc.rpo.total_seconds()
        check = Check("stream", value < critical or loss == "accepted",
                      base | {"value": value, "past_rpo": past_rpo, "loss": loss})
    if allow_data_loss and check.ok is not True:
        return Check("stream", True, check.params | {"overridden": True})
    return check


def _replication_check(reading, from_region: str, to_region: str, resuming: bool, allow_data_loss: bool) -> Check:
    """Does the target's database replicate from the writer? Live, from the database source."""
    base = {"source": reading.source, "via": reading.detail, "from": from_region, "to": to_region}
    if not reading.ok or reading.replication is None:
        return Check("replication", None, base | {"why": reading.error or reading.status.value})
    j = judge_move(reading.replication, from_region, to_region, moved_already=resuming)
    params = base | j.params | {"why": j.code}
    if j.ok is True:
        return Check("replication", True, params)
    if j.ok is False:
        params["diverged"] = True  # everything the target lacks is lost: the risk the plan states
    if allow_data_loss:
        return Check("replication", True, params | {"overridden": True})
    return Check("replication", j.ok, params)
