"""Conditions read from a service's own sources (health, lag, traffic, writer), judged in
one read: what a step's ``verify`` polls and what a ``wait`` step waits for. A ramp's
verify may also call an HTTP check (``http``) through an ``http`` source."""
from __future__ import annotations

from typing import Any

from bot.collector import Probe
from bot.config import ServiceConfig
from bot.config.step_specs import Condition, HttpCheck, fill
from bot.services import Services
from integrations.base import IntegrationError, Target
from integrations.steps.calls import HttpRequest


def side(req: Any, which: str) -> str:
    """The request's region on that side: 'target' (to) or 'source' (from)."""
    return req.to_region if which == "target" else req.from_region


def unmet(services: Services, svc: ServiceConfig, req: Any, c: Condition,
          variables: dict[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """One read of every part of ``c``: (what does not hold, by part; the parts read).
    ``variables``: the run variables an ``http`` check's text is filled with."""
    probes = []
    if c.healthy:
        region = side(req, c.healthy)
        probes.append(Probe(("healthy",), svc.health.get(region, ""), "health", Target(svc.name, region)))
    if c.lag_below is not None and svc.lag:
        probes.append(Probe(("lag",), svc.lag.source, "lag", svc.lag.target_of(svc.name)))
    if c.traffic_in and svc.traffic:
        probes.append(Probe(("traffic",), svc.traffic.source, "traffic", Target(svc.name)))
    if c.writer_in and svc.database:
        probes.append(Probe(("writer",), svc.database.source, "writer", Target(svc.name)))
    readings = services.collector.read(probes) if probes else {}
    failing: dict[str, str] = {}
    for key, r in readings.items():
        name = key[0]
        if not r.ok:
            failing[name] = f"{r.status.value}: {r.error}"
        elif name == "healthy" and not r.healthy:
            failing[name] = f"{side(req, c.healthy)} unhealthy ({r.detail})"
        elif name == "lag" and (r.lag_seconds is None or r.lag_seconds >= c.lag_below.total_seconds()):
            failing[name] = f"lag {r.lag_seconds}s, want below {c.lag_below.total_seconds():g}s"
        elif name == "traffic" and r.region != side(req, c.traffic_in):
            failing[name] = f"traffic goes to {r.region}, want {side(req, c.traffic_in)}"
        elif name == "writer" and r.region != side(req, c.writer_in):
            failing[name] = f"{r.region} writes, want {side(req, c.writer_in)}"
    check: HttpCheck | None = getattr(c, "http", None)
    if check is not None and (why := http_fails(services, check, variables or {})):
        failing["http"] = why
    if not probes and check is None:
        failing["verify"] = "nothing to verify with: the service has no matching source"
    return failing, sorted([k[0] for k in readings] + (["http"] if check is not None else []))


def http_fails(services: Services, check: HttpCheck, variables: dict[str, str]) -> str:
    """One call of ``check`` through its ``http`` source, no retry (the condition is read
    again): what is wrong with the answer, or "" when it is as expected."""
    backend = services.backends.get(check.source)
    if backend is None:
        return f"no source named {check.source!r}"
    req = HttpRequest(check.method, fill(check.url, variables), fill(check.headers, variables), None,
                      tuple(check.expect_status), check.expect, retries=0)
    try:
        backend.call(req, float(backend.options.timeout))
    except IntegrationError as exc:
        return str(exc)
    return ""
