"""What a run records about itself when it starts, so that its evidence does not depend on
the config of the day it is read: the recovery targets it is judged against, and whether
anything it reads or acts on is simulated (a sandbox backend: every report says SANDBOX)."""
from __future__ import annotations

import json
from typing import Any

from bot.config import ServiceConfig
from bot.config.runbooks import Step
from bot.services import Services


def sources_of(svc: ServiceConfig, steps: list[Step]) -> set[str]:
    """Every source the run may read or act on: the service's own (pre-flight, verify,
    measured RPO) and those its steps and their rollbacks name."""
    names = {stream.source for stream in svc.streams()}
    names |= set(svc.health.values())
    names |= {c.source for c in (svc.traffic, svc.database) if c is not None}
    for step in steps:
        names |= {step.source} if step.source else set()
        if step.rollback is not None and step.rollback.source:
            names.add(step.rollback.source)
    return names


def is_sandbox(services: Services, names: set[str]) -> bool:
    return any(getattr(services.backends.get(n), "sandbox", False) for n in names)


def targets_of(svc: ServiceConfig) -> dict[str, Any]:
    return {"tier": svc.tier, "rto_s": svc.rto.total_seconds(), "rpo_s": svc.rpo.total_seconds(),
            "drill_max_age_s": svc.drill_max_age.total_seconds()}


def at_start(services: Services, service: str, steps: list[Step]) -> dict[str, Any]:
    """The Run's ``sandbox`` and ``targets`` columns, as of now."""
    svc = services.config.service(service)
    if svc is None:
        return {}
    return {"sandbox": is_sandbox(services, sources_of(svc, steps)), "targets": json.dumps(targets_of(svc))}


def recorded_targets(text: str) -> dict[str, Any] | None:
    """A Run's ``targets`` column, or None for a run recorded before drbot kept them."""
    return json.loads(text) if text else None
