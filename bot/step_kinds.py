"""The step kinds that act through a named source beyond traffic and the database:
``http``, ``kubernetes.*``, ``argo_workflow`` and ``aws_ssm``. Fills the run variables
into the step's options and calls its backend, for real or as a dry run (``/dr plan``).

The backend gets the step's timeout as its time budget: it polls within it and, on running
out, cancels what it started (a workflow, an automation execution) before failing.
"""
from __future__ import annotations

import hashlib
import threading
from typing import Any

from bot.config.runbooks import Step
from bot.config.step_specs import fill
from bot.services import Services
from integrations.base import ActionResult
from integrations.steps.calls import ArgoCall, HttpRequest, ObjectRef, SsmCall

KINDS = ("http", "kubernetes", "argo_workflow", "aws_ssm")


def run_vars(service: str, kind: str, from_region: str, to_region: str, region: str,
             request_id: int | str) -> dict[str, str]:
    return {"service": service, "kind": kind, "from_region": from_region, "to_region": to_region,
            "region": region, "request_id": str(request_id)}


def idempotency_key(variables: dict[str, str], step: Step, position: int | None, attempt: int) -> str:
    """The same for every try of one attempt of one step of one request."""
    where = str(position) if position is not None else \
        hashlib.sha256(f"{step.name}|{variables['region']}".encode()).hexdigest()[:12]
    return f"drbot-{variables['request_id']}-{where}-{attempt}"


def perform(services: Services, step: Step, variables: dict[str, str], *, key: str = "",
            notes: dict[str, Any] | None = None, stop: threading.Event | None = None,
            dry_run: bool = False) -> ActionResult:
    backend = services.backends[step.source]
    spec = step.spec()
    budget = step.timeout.total_seconds()
    region = variables["region"]
    notes = {} if notes is None else notes
    if step.action == "http":
        h = spec
        req = HttpRequest(h.method, fill(h.url, variables), fill(h.headers, variables), fill(h.body, variables),
                          tuple(h.expect_status), h.expect, h.retries, h.backoff.total_seconds(), key)
        return backend.call(req, budget, notes, dry_run=dry_run, stop=stop)
    if step.action.startswith("kubernetes."):
        k = spec
        ref = ObjectRef(k.kind, fill(k.namespace, variables), fill(k.name, variables))
        verb = step.action.split(".")[1]
        if verb == "scale":
            return backend.scale(region, ref, replicas=k.replicas, factor=k.factor, wait=k.wait, budget=budget,
                                 notes=notes, stop=stop, dry_run=dry_run)
        if verb == "patch":
            return backend.patch(region, ref, fill(k.patch, variables), k.patch_type, notes=notes, dry_run=dry_run)
        return backend.restart(region, ref, wait=k.wait, budget=budget, notes=notes, stop=stop, dry_run=dry_run)
    if step.action == "argo_workflow":
        a = spec
        call = ArgoCall(fill(a.template, variables), fill(a.parameters, variables), a.cluster_scope,
                        {"drbot/request": variables["request_id"], "drbot/service": variables["service"]})
        return backend.run(call, budget, a.interval.total_seconds(), notes=notes, stop=stop, dry_run=dry_run)
    s = spec
    call = SsmCall(fill(s.document, variables), fill(s.parameters, variables), s.document_version, key)
    return backend.run(region, call, budget, s.interval.total_seconds(), notes=notes, stop=stop, dry_run=dry_run)
