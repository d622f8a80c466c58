"""A local fake of the Kubernetes API server for the endpoints runbook steps use, with the
object shapes of the API reference, served over HTTP so the real ``kubernetes`` client
talks to it through a kubeconfig (``kubeconfig(...)`` writes one).

    GET   /version
    GET   /apis/apps/v1/namespaces/{ns}/{deployments|statefulsets}/{name}[/status|/scale]
    PATCH /apis/apps/v1/namespaces/{ns}/{deployments|statefulsets}/{name}[/scale]
    GET|PATCH /apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/{name}
    GET|PATCH /api/v1/namespaces/{ns}/{configmaps|services}/{name}

A PATCH needs the Content-Type of a strategic merge or JSON merge patch (else 415) and a
bearer token equal to ``token`` (else 401). A change of ``spec`` bumps
``metadata.generation``; the rollout then converges after ``rollout_reads`` reads of the
status (observedGeneration first lags, then ready/updated/available reach the replicas),
or never while ``stuck`` is set. An unknown object answers 404 with a ``Status``.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from tests.fakes.json_server import Answer, JsonServer, Request

PATCH_TYPES = ("application/strategic-merge-patch+json", "application/merge-patch+json")
_GROUPS = {"deployments": ("apps/v1", "Deployment"), "statefulsets": ("apps/v1", "StatefulSet"),
           "ingresses": ("networking.k8s.io/v1", "Ingress"), "configmaps": ("v1", "ConfigMap"),
           "services": ("v1", "Service")}


def merge(into: dict, patch: dict) -> dict:
    """A JSON merge patch (RFC 7386); strategic merge behaves the same for these shapes."""
    for key, value in patch.items():
        if value is None:
            into.pop(key, None)
        elif isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
    return into


class FakeKubernetes(JsonServer):
    def __init__(self, token: str = "kube-token"):
        super().__init__()
        self.token = token
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.rollout_reads = 1
        self.stuck = False

    # -- objects ------------------------------------------------------------------------
    def add_workload(self, name: str, replicas: int, namespace: str = "default", plural: str = "deployments") -> dict:
        api, kind = _GROUPS[plural]
        obj = {"apiVersion": api, "kind": kind,
               "metadata": {"name": name, "namespace": namespace, "generation": 1, "uid": f"uid-{name}",
                            "annotations": {}},
               "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                        "template": {"metadata": {"labels": {"app": name}},
                                     "spec": {"containers": [{"name": name, "image": f"{name}:1"}]}}},
               "status": {}, "_pending": 0}
        if plural == "statefulsets":
            obj["spec"]["serviceName"] = name
        self._settle(obj)
        self.objects[(plural, namespace, name)] = obj
        return obj

    def add(self, plural: str, name: str, body: dict, namespace: str = "default") -> dict:
        api, kind = _GROUPS[plural]
        obj = {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": namespace, "generation": 1}}
        obj |= copy.deepcopy(body)
        self.objects[(plural, namespace, name)] = obj
        return obj

    def get(self, plural: str, name: str, namespace: str = "default") -> dict:
        return self.objects[(plural, namespace, name)]

    @staticmethod
    def _settle(obj: dict) -> None:
        n = obj["spec"].get("replicas", 1)
        obj["status"] = {"observedGeneration": obj["metadata"]["generation"], "replicas": n, "readyReplicas": n,
                         "updatedReplicas": n, "availableReplicas": n}

    def _status_read(self, obj: dict) -> None:
        if "_pending" not in obj or obj["_pending"] <= 0 or self.stuck:
            return
        obj["_pending"] -= 1
        if obj["_pending"] <= 0:
            self._settle(obj)
        else:
            obj["status"]["observedGeneration"] = obj["metadata"]["generation"]

    # -- HTTP ---------------------------------------------------------------------------
    def handle(self, req: Request) -> Answer:
        with self.lock:
            if req.path.rstrip("/") == "/version":
                return Answer(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0", "gitCommit": "0" * 40,
                                    "gitTreeState": "clean", "buildDate": "2024-04-17T17:27:03Z",
                                    "goVersion": "go1.22.2", "compiler": "gc", "platform": "linux/amd64"})
            if req.headers.get("authorization") != f"Bearer {self.token}":
                return _status(401, "Unauthorized", "Unauthorized")
            parts = req.path.strip("/").split("/")
            base = 3 if parts[0] == "api" else 4  # api/v1/namespaces/NS/... | apis/GROUP/V/namespaces/NS/...
            if len(parts) < base + 3 or parts[base - 1] != "namespaces":
                return _status(404, "NotFound", f"no route {req.path}")
            ns, plural, name = parts[base], parts[base + 1], parts[base + 2]
            sub = parts[base + 3] if len(parts) > base + 3 else ""
            obj = self.objects.get((plural, ns, name))
            if obj is None:
                return _status(404, "NotFound", f'{plural} "{name}" not found')
            if req.method == "PATCH":
                if req.headers.get("content-type") not in PATCH_TYPES:
                    return _status(415, "UnsupportedMediaType",
                                   f"the body of the request was in an unknown format - accepted media types "
                                   f"include: {', '.join(PATCH_TYPES)}")
                patch = {"spec": {"replicas": req.json["spec"]["replicas"]}} if sub == "scale" else req.json
                before = copy.deepcopy(obj.get("spec"))
                merge(obj, patch)
                if obj.get("spec") != before and "status" in obj:
                    obj["metadata"]["generation"] += 1
                    obj["_pending"] = self.rollout_reads
                    obj["status"]["observedGeneration"] = obj["metadata"]["generation"] - 1
            elif req.method != "GET":
                return _status(405, "MethodNotAllowed", req.method)
            if sub == "status" and req.method == "GET":
                self._status_read(obj)
            if sub == "scale":
                return Answer(200, {"apiVersion": "autoscaling/v1", "kind": "Scale",
                                    "metadata": {"name": name, "namespace": ns},
                                    "spec": {"replicas": obj["spec"]["replicas"]},
                                    "status": {"replicas": obj["status"].get("replicas", 0),
                                               "selector": f"app={name}"}})
            return Answer(200, {k: v for k, v in obj.items() if not k.startswith("_")})


def _status(code: int, reason: str, message: str) -> Answer:
    return Answer(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                         "message": message, "reason": reason, "code": code})


def kubeconfig(path: Path, clusters: dict[str, FakeKubernetes]) -> Path:
    """A kubeconfig with one context per region (``ctx-REGION``) at that region's fake."""
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "current-context": "",
                           "clusters": [], "users": [], "contexts": []}
    for region, fake in clusters.items():
        doc["clusters"].append({"name": f"cl-{region}", "cluster": {"server": fake.url}})
        doc["users"].append({"name": f"drbot-{region}", "user": {"token": fake.token}})
        doc["contexts"].append({"name": f"ctx-{region}", "context": {"cluster": f"cl-{region}",
                                                                      "user": f"drbot-{region}"}})
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path
