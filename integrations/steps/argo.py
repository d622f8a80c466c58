"""Argo Workflows as runbook steps (kind ``argo_workflow``, capability ``argo_workflow``),
through the Argo Server REST API:

- ``POST /api/v1/workflows/{namespace}/submit`` with ``resourceKind`` WorkflowTemplate (or
  ClusterWorkflowTemplate), ``resourceName`` and ``submitOptions`` (``parameters`` as
  ``name=value``, ``labels`` naming the drbot request);
- ``GET /api/v1/workflows/{namespace}/{name}`` until ``status.phase`` is Succeeded, Failed or
  Error; the answer's ``status.outputs`` and its nodes' outputs are recorded;
- ``PUT /api/v1/workflows/{namespace}/{name}/stop`` when the step's time runs out or the run
  is stopped: the workflow does not go on after drbot stopped waiting for it.

A dry run reads the template (``GET /api/v1/workflow-templates/{namespace}/{name}`` or
``/api/v1/cluster-workflow-templates/{name}``) so ``/dr plan`` shows it exists.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

import httpx
from pydantic import Field, field_validator

from integrations.base import ActionResult, BackendOptions, CheckResult, ErrorKind, IntegrationError
from integrations.http_client import HttpBackend, check_http_url, make_client
from integrations.steps import ARGO
from integrations.steps.calls import ArgoCall
from integrations.steps.polling import Overdue, follow

FINAL = {"Succeeded", "Failed", "Error"}
OUTPUTS_KEPT = 20
"""Parameters of the outputs recorded, at most (each value cut to 200 characters)."""


class ArgoOptions(BackendOptions):
    url: str
    """The Argo Server, e.g. https://argo.example.com:2746."""
    namespace: str = Field(default="argo", min_length=1)
    token: str | None = None
    """Sent as the Authorization header (write ${ARGO_TOKEN}); "Bearer " is added when missing."""
    ui_url: str | None = None
    """Where people open workflows; default: url."""
    verify_tls: bool = True
    timeout: float = 10.0

    @field_validator("url", "ui_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)


class ArgoWorkflows(HttpBackend):
    """Submits workflows from templates and follows them to their end."""

    kind = ARGO
    title = "Argo Workflows"
    Options = ArgoOptions
    capabilities = frozenset({ARGO})
    options: ArgoOptions

    def __init__(self, name: str, options: ArgoOptions, client: Any = None):
        super().__init__(name, options, client)
        self._sleep: Callable[[float], None] = time.sleep
        self._clock: Callable[[], float] = time.monotonic

    def _make_client(self) -> httpx.Client:
        return make_client(self.options.timeout, self.options.verify_tls)

    def _request(self, method: str, path: str, what: str, body: Any = None) -> dict[str, Any]:
        o = self.options
        headers = {}
        if o.token:
            headers["Authorization"] = o.token if o.token.lower().startswith("bearer ") else f"Bearer {o.token}"
        try:
            answer = self.client.request(method, o.url.rstrip("/") + path, headers=headers, json=body,
                                         timeout=o.timeout)
        except httpx.HTTPError as exc:
            raise IntegrationError(f"{self.name}: {what}: the Argo Server does not answer ({exc})",
                                   ErrorKind.TRANSIENT) from exc
        if answer.status_code >= 400:
            said = f"HTTP {answer.status_code}: {_message(answer)}"
            kind = ErrorKind.NOT_PERMITTED if answer.status_code in (401, 403) else \
                ErrorKind.TRANSIENT if answer.status_code >= 500 or answer.status_code == 429 else ErrorKind.PERMANENT
            raise IntegrationError(f"{self.name}: {what}: {said}", kind)
        return answer.json() if answer.content else {}

    def link(self, name: str) -> str:
        return f"{(self.options.ui_url or self.options.url).rstrip('/')}/workflows/{self.options.namespace}/{name}"

    def run(self, call: ArgoCall, budget: float, interval: float = 5.0, notes: dict | None = None,
            stop: threading.Event | None = None, dry_run: bool = False) -> ActionResult:
        notes = {} if notes is None else notes
        ns = self.options.namespace
        kind = "ClusterWorkflowTemplate" if call.cluster_scope else "WorkflowTemplate"
        params = [f"{k}={v}" for k, v in call.parameters.items()]
        shown = ", ".join(params) or "no parameters"
        if dry_run:
            path = f"/api/v1/cluster-workflow-templates/{call.template}" if call.cluster_scope else \
                f"/api/v1/workflow-templates/{ns}/{call.template}"
            self._request("GET", path, f"read {kind} {call.template}")
            return ActionResult(f"would submit a workflow from {kind} {call.template} in namespace {ns} "
                                f"({shown}) and wait for it", True, False, {"template": call.template})
        body = {"namespace": ns, "resourceKind": kind, "resourceName": call.template,
                "submitOptions": {"parameters": params,
                                  "labels": ",".join(f"{k}={v}" for k, v in call.labels.items())}}
        made = self._request("POST", f"/api/v1/workflows/{ns}/submit", f"submit {kind} {call.template}", body)
        name = made.get("metadata", {}).get("name") or ""
        notes |= {"workflow": name, "link": self.link(name), "template": call.template}
        wf = self._follow(name, budget, interval, stop)
        status = wf.get("status", {})
        phase = status.get("phase", "")
        details = {"workflow": name, "link": self.link(name), "phase": phase, "outputs": outputs_of(status),
                   "started_at": status.get("startedAt"), "finished_at": status.get("finishedAt")}
        notes |= {"phase": phase, "outputs": details["outputs"]}
        if phase != "Succeeded":
            raise IntegrationError(f"{self.name}: workflow {name} ended {phase}: "
                                   f"{status.get('message') or failed_nodes(status) or 'no message'}",
                                   ErrorKind.PERMANENT)
        return ActionResult(f"Workflow {name} from {call.template} succeeded: {self.link(name)}", False, True,
                            details)

    def _follow(self, name: str, budget: float, interval: float, stop: threading.Event | None) -> dict:
        ns = self.options.namespace
        try:
            return follow(lambda: self._request("GET", f"/api/v1/workflows/{ns}/{name}", f"read workflow {name}"),
                          lambda wf: wf.get("status", {}).get("phase") in FINAL, budget=budget, interval=interval,
                          clock=self._clock, sleep=self._sleep, stop=stop)
        except Overdue as late:
            self.stop(name)
            why = "the run was stopped" if late.stopped else f"it did not end within {budget:g}s"
            raise IntegrationError(f"{self.name}: workflow {name} stopped: {why} (phase "
                                   f"{late.last.get('status', {}).get('phase') or 'Pending'})",
                                   ErrorKind.TRANSIENT) from None

    def stop(self, name: str) -> None:
        ns = self.options.namespace
        self._request("PUT", f"/api/v1/workflows/{ns}/{name}/stop", f"stop workflow {name}",
                      {"name": name, "namespace": ns, "message": "stopped by drbot: the runbook step ended"})

    def check(self) -> CheckResult:
        ns = self.options.namespace
        try:
            self._request("GET", f"/api/v1/workflow-templates/{ns}", "list the workflow templates")
        except IntegrationError as exc:
            return CheckResult(False, str(exc))
        return CheckResult(True, f"{self.name}: the Argo Server answers for namespace {ns}.")


def outputs_of(status: dict) -> dict[str, str]:
    """The workflow's output parameters, else those of its nodes (name: value, cut)."""
    found = [(p.get("name"), p.get("value")) for p in (status.get("outputs") or {}).get("parameters") or []]
    if not found:
        for node in (status.get("nodes") or {}).values():
            for p in (node.get("outputs") or {}).get("parameters") or []:
                found.append((f"{node.get('displayName') or node.get('name')}.{p.get('name')}", p.get("value")))
    return {str(k): str(v)[:200] for k, v in found[:OUTPUTS_KEPT]}


def failed_nodes(status: dict) -> str:
    bad = [f"{n.get('displayName') or n.get('name')}: {n.get('message') or n.get('phase')}"
           for n in (status.get("nodes") or {}).values() if n.get("phase") in ("Failed", "Error")]
    return "; ".join(bad[:3])


def _message(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("message", ""))[:300] or answer.reason_phrase
    except ValueError:
        return answer.text[:300]
