"""One runbook step: the integration action, cut at the step's timeout, then its verify,
polled until it holds or its time is up."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from bot.collector import Probe
from bot.config import ServiceConfig
from bot.config.runbooks import Step, Verify
from bot.services import Services
from bot.store.models import ChangeRequest
from integrations.base import ActionResult, IntegrationError, Target


class StepFailed(Exception):
    def __init__(self, message: str, output: dict[str, Any] | None = None):
        super().__init__(message)
        self.output = output or {}


def source_of(svc: ServiceConfig, action: str, explicit: str | None) -> str:
    if explicit:
        return explicit
    control = getattr(svc, action.split(".")[0])
    return control.source


def act(services: Services, svc: ServiceConfig, step_action: str, source: str | None, region: str,
        allow_data_loss: bool = False, dry_run: bool = False) -> ActionResult:
    backend = services.backends[source_of(svc, step_action, source)]
    target = Target(svc.name, region)
    if step_action == "traffic.shift":
        return backend.shift(target, region, dry_run=dry_run)
    mode = step_action.split(".")[1]
    return backend.promote(target, region, mode=mode, allow_data_loss=allow_data_loss, dry_run=dry_run)


def _with_timeout(fn, seconds: float):
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drbot-step")
    try:
        return pool.submit(fn).result(timeout=seconds)
    finally:
        pool.shutdown(wait=False)


def execute_step(services: Services, req: ChangeRequest, step: Step, region: str,
                 reason: str | None = None) -> dict[str, Any]:
    svc = services.config.service(req.service)
    output: dict[str, Any] = {"region": region}
    if step.action == "database.failover" and "data loss" not in (reason or req.reason).lower():
        raise StepFailed("database.failover needs a reason that names the data loss it accepts", output)
    if step.action != "check":
        try:
            result = _with_timeout(lambda: act(services, svc, step.action, step.source, region,
                                               allow_data_loss=step.allow_data_loss), step.timeout.total_seconds())
        except FutureTimeout:
            raise StepFailed(f"no result within {step.timeout.total_seconds():g}s; the change may still "
                             "complete: check before rolling back", output) from None
        except IntegrationError as e:
            raise StepFailed(str(e), output | {"error_kind": e.kind.value}) from None
        except Exception as e:
            raise StepFailed(f"{type(e).__name__}: {e}", output) from None
        output |= {"summary": result.summary, "changed": result.changed, "details": result.details}
    if step.verify is not None:
        output["verify"] = verify(services, svc, req, step.verify)
    return output


def _side(req: ChangeRequest, side: str) -> str:
    return req.to_region if side == "target" else req.from_region


def verify(services: Services, svc: ServiceConfig, req: ChangeRequest, v: Verify,
           sleep=time.sleep) -> dict[str, Any]:
    """Poll until every condition holds; StepFailed with the last values when time is up."""
    deadline = time.monotonic() + v.within.total_seconds()
    probes = []
    if v.healthy:
        region = _side(req, v.healthy)
        probes.append(Probe(("healthy",), svc.health.get(region, ""), "health", Target(svc.name, region)))
    if v.lag_below is not None and svc.lag:
        probes.append(Probe(("lag",), svc.lag.source, "lag", Target(svc.name)))
    if v.traffic_in and svc.traffic:
        probes.append(Probe(("traffic",), svc.traffic.source, "traffic", Target(svc.name)))
    if v.writer_in and svc.database:
        probes.append(Probe(("writer",), svc.database.source, "writer", Target(svc.name)))
    while True:
        readings = services.collector.read(probes)
        failing = {}
        for key, r in readings.items():
            name = key[0]
            if not r.ok:
                failing[name] = f"{r.status.value}: {r.error}"
            elif name == "healthy" and not r.healthy:
                failing[name] = f"{_side(req, v.healthy)} unhealthy ({r.detail})"
            elif name == "lag" and (r.lag_seconds is None or r.lag_seconds >= v.lag_below.total_seconds()):
                failing[name] = f"lag {r.lag_seconds}s, want below {v.lag_below.total_seconds():g}s"
            elif name == "traffic" and r.region != _side(req, v.traffic_in):
                failing[name] = f"traffic goes to {r.region}, want {_side(req, v.traffic_in)}"
            elif name == "writer" and r.region != _side(req, v.writer_in):
                failing[name] = f"{r.region} writes, want {_side(req, v.writer_in)}"
        if not probes:
            failing["verify"] = "nothing to verify with: the service has no matching source"
        if not failing:
            return {"verified": sorted(k[0] for k in readings)}
        if time.monotonic() >= deadline:
            raise StepFailed("verify failed after " f"{v.within.total_seconds():g}s: " + "; ".join(failing.values()),
                             {"verify_failing": failing})
        sleep(min(v.interval.total_seconds(), max(0.0, deadline - time.monotonic())))
