"""A local fake of the Argo Server REST API (the endpoints runbook steps use), with the
shapes of its API reference, over HTTP:

    POST /api/v1/workflows/{ns}/submit             {namespace, resourceKind, resourceName, submitOptions}
    GET  /api/v1/workflows/{ns}/{name}             the Workflow, status.phase moving on
    PUT  /api/v1/workflows/{ns}/{name}/stop        {name, namespace, message}
    GET  /api/v1/workflow-templates/{ns}[/{name}]  and /api/v1/cluster-workflow-templates/{name}

Every request needs ``Authorization: Bearer <token>`` (else 401, gRPC-gateway error body).
A submitted workflow is Pending, then Running, and ends with ``outcome`` (Succeeded, Failed,
Error) after ``reads_to_finish`` reads; never while ``hang`` is set. Outputs are those in
``outputs`` (global) and one node's.
"""
from __future__ import annotations

import itertools

from tests.fakes.json_server import Answer, JsonServer, Request


class FakeArgo(JsonServer):
    def __init__(self, token: str = "argo-token", namespace: str = "argo"):
        super().__init__()
        self.token = token
        self.templates: dict[str, set[str]] = {namespace: set()}
        self.cluster_templates: set[str] = set()
        self.workflows: dict[tuple[str, str], dict] = {}
        self.outcome = "Succeeded"
        self.reads_to_finish = 2
        self.hang = False
        self.outputs = {"snapshot": "orders-2026-11-29", "rows-checked": "1204331"}
        self._ids = itertools.count(1)

    def handle(self, req: Request) -> Answer:
        with self.lock:
            if req.headers.get("authorization") != f"Bearer {self.token}":
                return _error(401, 16, "token not valid for running mode")
            parts = req.path.strip("/").split("/")[2:]  # after api/v1
            if parts[0] == "workflow-templates" and len(parts) in (2, 3):
                names = self.templates.get(parts[1], set())
                if len(parts) == 2:
                    return Answer(200, {"metadata": {}, "items": [{"metadata": {"name": n}} for n in sorted(names)]})
                return self._template(parts[2], parts[2] in names, "workflowtemplates")
            if parts[0] == "cluster-workflow-templates" and len(parts) == 2:
                return self._template(parts[1], parts[1] in self.cluster_templates, "clusterworkflowtemplates")
            if parts[0] == "workflows" and len(parts) == 3 and parts[2] == "submit" and req.method == "POST":
                return self._submit(parts[1], req.json or {})
            if parts[0] == "workflows" and len(parts) >= 3:
                wf = self.workflows.get((parts[1], parts[2]))
                if wf is None:
                    return _error(404, 5, f'workflows.argoproj.io "{parts[2]}" not found')
                if len(parts) == 4 and parts[3] == "stop" and req.method == "PUT":
                    wf["status"] |= {"phase": "Failed", "message": f"Stopped with strategy 'Stop': "
                                                                   f"{(req.json or {}).get('message', '')}"}
                    wf["_stopped"] = True
                    return Answer(200, self._shown(wf))
                if len(parts) == 3 and req.method == "GET":
                    self._advance(wf)
                    return Answer(200, self._shown(wf))
            return _error(404, 5, f"no route {req.method} {req.path}")

    def _template(self, name: str, found: bool, plural: str) -> Answer:
        if not found:
            return _error(404, 5, f'{plural}.argoproj.io "{name}" not found')
        return Answer(200, {"metadata": {"name": name}, "spec": {"entrypoint": "main"}})

    def _submit(self, ns: str, body: dict) -> Answer:
        kind, name = body.get("resourceKind"), body.get("resourceName")
        if kind not in ("WorkflowTemplate", "ClusterWorkflowTemplate"):
            return _error(400, 3, f"resourceKind {kind!r} is not supported")
        known = self.cluster_templates if kind == "ClusterWorkflowTemplate" else self.templates.get(ns, set())
        if name not in known:
            return _error(404, 5, f'{kind.lower()}s.argoproj.io "{name}" not found')
        opts = body.get("submitOptions") or {}
        labels = dict(p.split("=", 1) for p in (opts.get("labels") or "").split(",") if p)
        params = [dict(zip(("name", "value"), p.split("=", 1))) for p in opts.get("parameters") or []]
        wf_name = f"{name}-{next(self._ids):05d}"
        wf = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
              "metadata": {"name": wf_name, "namespace": ns, "labels": labels},
              "spec": {"workflowTemplateRef": {"name": name, "clusterScope": kind == "ClusterWorkflowTemplate"},
                       "arguments": {"parameters": params}},
              "status": {"phase": "Pending", "startedAt": "2026-11-29T14:00:00Z"}, "_reads": 0}
        self.workflows[(ns, wf_name)] = wf
        return Answer(200, self._shown(wf))

    def _advance(self, wf: dict) -> None:
        if wf["status"]["phase"] in ("Succeeded", "Failed", "Error"):
            return
        wf["_reads"] += 1
        wf["status"]["phase"] = "Running"
        if self.hang or wf["_reads"] < self.reads_to_finish:
            return
        node = {"id": f"{wf['metadata']['name']}-1", "name": wf["metadata"]["name"], "displayName": "restore",
                "type": "Pod", "phase": self.outcome}
        if self.outcome == "Succeeded":
            wf["status"]["outputs"] = {"parameters": [{"name": k, "value": v} for k, v in self.outputs.items()]}
            node["outputs"] = {"parameters": [{"name": "restored-rows", "value": "1204331"}]}
        else:
            node["message"] = "Error (exit code 3): checksum mismatch"
        wf["status"] |= {"phase": self.outcome, "finishedAt": "2026-11-29T14:07:00Z", "nodes": {node["id"]: node}}

    @staticmethod
    def _shown(wf: dict) -> dict:
        return {k: v for k, v in wf.items() if not k.startswith("_")}


def _error(http: int, code: int, message: str) -> Answer:
    return Answer(http, {"code": code, "message": message})
