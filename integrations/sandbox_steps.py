"""The sandbox's simulated ``http`` and ``kubernetes`` step actions, so a demo runbook can
scale the standby up, flip a read-only flag and run a smoke test without any real peer.

HTTP: the real ``HttpCall`` logic (statuses, ``expect``, retries, the idempotency key)
against an in-process fake service: a write (POST/PUT/PATCH) stores its JSON body under its
path and answers ``{"sandbox": true, "path": ..., "data": BODY}``; a GET answers what is
stored there (``data`` empty when nothing is); with the ``http_fails`` fault injected for a
service, every call whose URL names that service (and the fault's region, when it names
one) answers HTTP 500.

Kubernetes: workloads per region start at ``replicas`` 2 and roll out at once; patches and
restarts are recorded. Every summary says SANDBOX.
"""
from __future__ import annotations

import json
import math
import threading
from dataclasses import replace
from typing import Any

import httpx

from integrations.base import ActionResult
from integrations.steps.calls import HttpRequest
from integrations.steps.http_call import HttpCall, HttpCallOptions

BASE = "http://sandbox.invalid"
START_REPLICAS = 2


class StepWorld:
    """The simulated services behind http and kubernetes steps (one per estate)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.documents: dict[str, Any] = {}
        self.replicas: dict[tuple[str, str, str, str], int] = {}
        self.patches: list[tuple[str, str, dict]] = []


class SandboxSteps:
    """Mixed into ``SandboxBackend``: ``estate`` (with ``world`` and ``faults``) comes from it."""

    estate: Any
    name: str

    def _http(self) -> HttpCall:
        client = httpx.Client(transport=httpx.MockTransport(self._answer), base_url=BASE)
        return HttpCall(self.name, HttpCallOptions(base_url=BASE), client=client)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        url = str(request.url)
        failing = [s for s in self.estate.services() if s in url and "http_fails" in (f := self.estate.faults(s))
                   and (f["http_fails"] is None or f["http_fails"] in url)]
        if failing:
            return httpx.Response(500, json={"sandbox": True, "error": f"http_fails injected for {failing[0]}"})
        world = self.estate.world
        with world.lock:
            if request.method in ("POST", "PUT", "PATCH"):
                world.documents[path] = json.loads(request.content or b"null")
            return httpx.Response(200, json={"sandbox": True, "path": path, "data": world.documents.get(path, {})})

    def call(self, req: HttpRequest, budget: float, notes: dict | None = None, dry_run: bool = False,
             stop: threading.Event | None = None) -> ActionResult:
        result = self._http().call(req, budget, notes, dry_run=dry_run, stop=stop)
        return replace(result, summary=f"SANDBOX: {result.summary}")

    # -- kubernetes -----------------------------------------------------------------------
    def _key(self, region: str, ref: Any) -> tuple[str, str, str, str]:
        return region, ref.kind, ref.namespace, ref.name

    def scale(self, region: str, ref: Any, replicas: int | None = None, factor: float | None = None,
              wait: bool = True, budget: float = 600.0, notes: dict | None = None,
              stop: threading.Event | None = None, dry_run: bool = False) -> ActionResult:
        notes = {} if notes is None else notes
        world = self.estate.world
        with world.lock:
            before = world.replicas.get(self._key(region, ref), START_REPLICAS)
            wanted = replicas if replicas is not None else math.ceil(before * (factor or 1))
            notes |= {"replicas_before": before, "replicas_wanted": wanted}
            details = {"region": region, "object": str(ref), "replicas_before": before, "replicas_after": wanted}
            if dry_run:
                return ActionResult(f"SANDBOX: would scale {ref} in {region} from {before} to {wanted} replicas",
                                    True, False, details)
            world.replicas[self._key(region, ref)] = wanted
        return ActionResult(f"SANDBOX: scaled {ref} in {region} from {before} to {wanted} replicas",
                            False, wanted != before, details | {"rollout": f"{wanted}/{wanted} ready (simulated)"})

    def patch(self, region: str, ref: Any, patch: dict, patch_type: str = "strategic",
              notes: dict | None = None, dry_run: bool = False) -> ActionResult:
        details = {"region": region, "object": str(ref), "patch": patch, "patch_type": patch_type}
        if dry_run:
            return ActionResult(f"SANDBOX: would patch {ref} in {region} ({patch_type} patch)", True, False, details)
        with self.estate.world.lock:
            self.estate.world.patches.append((region, str(ref), patch))
        return ActionResult(f"SANDBOX: patched {ref} in {region}", False, True, details)

    def restart(self, region: str, ref: Any, wait: bool = True, budget: float = 600.0,
                notes: dict | None = None, stop: threading.Event | None = None,
                dry_run: bool = False) -> ActionResult:
        verb = "would restart" if dry_run else "restarted"
        return ActionResult(f"SANDBOX: {verb} the rollout of {ref} in {region}", dry_run, not dry_run,
                            {"region": region, "object": str(ref)})
