"""Kubernetes as runbook steps (kind ``kubernetes``, capability ``kubernetes``), through the
official ``kubernetes`` client: scale a Deployment or StatefulSet (to N replicas or by a
factor, through the ``scale`` subresource), patch an object (strategic or JSON merge
patch), restart a rollout (the ``kubectl.kubernetes.io/restartedAt`` annotation, as
``kubectl rollout restart`` does), and wait until the rollout is available.

One cluster per drbot region: a kubeconfig context per region (``contexts``), or the
pod's own service account (``in_cluster``) when drbot runs in the one cluster it acts on.
A scale records the replicas read before it (``notes['replicas_before']``), so Rollback
can scale back to them.

Available means what ``kubectl rollout status`` waits for: the controller has seen the
latest spec (``observedGeneration`` ≥ ``generation``) and updated, ready and available
replicas all equal the wanted replicas.
"""
from __future__ import annotations

import math
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

import kubernetes.client as k8s
import kubernetes.config as k8s_config
import urllib3
from pydantic import Field, model_validator

from integrations.base import ActionResult, Backend, BackendOptions, CheckResult, ErrorKind, IntegrationError
from integrations.steps import KUBERNETES
from integrations.steps.calls import ObjectRef
from integrations.steps.polling import Overdue, follow

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
PATCH_TYPES = {"strategic": "application/strategic-merge-patch+json", "merge": "application/merge-patch+json"}
_APIS = {"Deployment": ("AppsV1Api", "deployment"), "StatefulSet": ("AppsV1Api", "stateful_set"),
         "Ingress": ("NetworkingV1Api", "ingress"), "Service": ("CoreV1Api", "service"),
         "ConfigMap": ("CoreV1Api", "config_map")}


class KubernetesOptions(BackendOptions):
    contexts: dict[str, str] = {}
    """drbot region -> kubeconfig context of that region's cluster."""
    kubeconfig: str | None = None
    """Path of the kubeconfig; default: $KUBECONFIG or ~/.kube/config."""
    in_cluster: bool = False
    """Use the pod's service account (one cluster for every region) instead of contexts."""
    poll_interval: float = Field(default=2.0, gt=0)
    """Seconds between reads while waiting for a rollout."""
    timeout: float = 10.0

    @model_validator(mode="after")
    def _one_way(self) -> "KubernetesOptions":
        if self.in_cluster == bool(self.contexts):
            raise ValueError("set contexts (a kubeconfig context per region) or in_cluster: true, not both")
        return self


class Kubernetes(Backend):
    """Acts on one cluster per region through the kubernetes client."""

    kind = KUBERNETES
    title = "Kubernetes"
    Options = KubernetesOptions
    capabilities = frozenset({KUBERNETES})
    options: KubernetesOptions

    def __init__(self, name: str, options: KubernetesOptions, client: Any = None):
        super().__init__(name, options, client)
        self._clients: dict[str, k8s.ApiClient] = dict(client or {})
        self._lock = threading.Lock()
        self._sleep: Callable[[float], None] = time.sleep
        self._clock: Callable[[], float] = time.monotonic

    # -- clients ------------------------------------------------------------------------
    def api_client(self, region: str) -> k8s.ApiClient:
        with self._lock:
            key = "*" if self.options.in_cluster else region
            if key not in self._clients:
                self._clients[key] = self._new_client(region)
            return self._clients[key]

    def _new_client(self, region: str) -> k8s.ApiClient:
        o = self.options
        try:
            if o.in_cluster:
                cfg = k8s.Configuration()
                k8s_config.load_incluster_config(client_configuration=cfg)
                return k8s.ApiClient(cfg)
            if region not in o.contexts:
                raise IntegrationError(f"{self.name}: no kubeconfig context for region {region} "
                                       f"(add it to contexts)", ErrorKind.PERMANENT)
            return k8s_config.new_client_from_config(o.kubeconfig, o.contexts[region], persist_config=False)
        except k8s_config.ConfigException as exc:
            raise IntegrationError(f"{self.name}: cannot load the cluster config for {region}: {exc}",
                                   ErrorKind.PERMANENT) from exc

    def _api(self, region: str, kind: str) -> tuple[Any, str]:
        api, noun = _APIS[kind]
        return getattr(k8s, api)(self.api_client(region)), noun

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except k8s.ApiException as exc:
            raise _translate(exc, f"{self.name}: {what}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise IntegrationError(f"{self.name}: {what}: the API server does not answer ({exc})",
                                   ErrorKind.TRANSIENT) from exc
        except ValueError as exc:  # an answer the client cannot read as the object it asked for
            raise IntegrationError(f"{self.name}: {what}: unexpected answer ({str(exc)[:200]})",
                                   ErrorKind.PERMANENT) from exc

    # -- actions ------------------------------------------------------------------------
    def replicas(self, region: str, ref: ObjectRef) -> int:
        api, noun = self._api(region, ref.kind)
        scale = self._call(f"read the scale of {ref} in {region}", lambda: getattr(
            api, f"read_namespaced_{noun}_scale")(ref.name, ref.namespace, _request_timeout=self.options.timeout))
        return int(scale.spec.replicas or 0)

    def scale(self, region: str, ref: ObjectRef, replicas: int | None = None, factor: float | None = None,
              wait: bool = True, budget: float = 600.0, notes: dict | None = None,
              stop: threading.Event | None = None, dry_run: bool = False) -> ActionResult:
        notes = {} if notes is None else notes
        if replicas is None and factor is None:
            raise IntegrationError(f"{self.name}: the replicas of {ref} before the step were not recorded, "
                                   "so there is nothing to scale back to", ErrorKind.PERMANENT)
        before = self.replicas(region, ref)
        wanted = replicas if replicas is not None else math.ceil(before * factor)
        notes |= {"replicas_before": before, "replicas_wanted": wanted}
        text = f"scale {ref} in {region} from {before} to {wanted} replicas"
        details = {"region": region, "object": str(ref), "replicas_before": before, "replicas_after": wanted}
        if dry_run:
            return ActionResult(f"would {text}", True, False, details)
        api, noun = self._api(region, ref.kind)
        self._call(f"scale {ref} in {region}", lambda: getattr(api, f"patch_namespaced_{noun}_scale")(
            ref.name, ref.namespace, {"spec": {"replicas": wanted}}, _content_type=PATCH_TYPES["merge"],
            _request_timeout=self.options.timeout))
        notes["replicas_after"] = wanted
        if wait:
            details["rollout"] = self.wait_available(region, ref, budget, stop)
        return ActionResult(f"Scaled {ref} in {region} from {before} to {wanted} replicas", False,
                            wanted != before, details)

    def patch(self, region: str, ref: ObjectRef, patch: dict, patch_type: str = "strategic",
              notes: dict | None = None, dry_run: bool = False) -> ActionResult:
        api, noun = self._api(region, ref.kind)
        if patch_type == "strategic" and ref.kind in ("ConfigMap",):
            patch_type = "merge"
        details = {"region": region, "object": str(ref), "patch": patch, "patch_type": patch_type}
        if dry_run:
            found = self._call(f"read {ref} in {region}", lambda: getattr(api, f"read_namespaced_{noun}")(
                ref.name, ref.namespace, _request_timeout=self.options.timeout))
            generation = getattr(found.metadata, "generation", None)
            return ActionResult(f"would patch {ref} in {region} ({patch_type} patch, now at generation "
                                f"{generation})", True, False, details)
        self._call(f"patch {ref} in {region}", lambda: getattr(api, f"patch_namespaced_{noun}")(
            ref.name, ref.namespace, patch, _content_type=PATCH_TYPES[patch_type],
            _request_timeout=self.options.timeout))
        if notes is not None:
            notes["patched"] = patch
        return ActionResult(f"Patched {ref} in {region}", False, True, details)

    def restart(self, region: str, ref: ObjectRef, wait: bool = True, budget: float = 600.0,
                notes: dict | None = None, stop: threading.Event | None = None,
                dry_run: bool = False) -> ActionResult:
        if dry_run:
            before = self.replicas(region, ref)
            return ActionResult(f"would restart the rollout of {ref} in {region} ({before} replicas)", True, False,
                                {"region": region, "object": str(ref), "replicas": before})
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
        result = self.patch(region, ref, patch, "strategic", notes)
        details = result.details | {"restarted_at": now}
        if wait:
            details["rollout"] = self.wait_available(region, ref, budget, stop)
        return ActionResult(f"Restarted the rollout of {ref} in {region}", False, True, details)

    def wait_available(self, region: str, ref: ObjectRef, budget: float,
                       stop: threading.Event | None = None) -> str:
        """Poll the status until the rollout is available; IntegrationError past ``budget``."""
        api, noun = self._api(region, ref.kind)

        def read() -> tuple[bool, str]:
            return _available(self._call(f"read the status of {ref} in {region}", lambda: getattr(
                api, f"read_namespaced_{noun}_status")(ref.name, ref.namespace, _request_timeout=self.options.timeout)))
        try:
            return follow(read, lambda seen: seen[0], budget=budget, interval=self.options.poll_interval,
                          clock=self._clock, sleep=self._sleep, stop=stop)[1]
        except Overdue as late:
            why = "stopped" if late.stopped else f"not available within {budget:g}s"
            raise IntegrationError(f"{self.name}: {ref} in {region} {why}: {late.last[1]}",
                                   ErrorKind.TRANSIENT) from None

    def check(self) -> CheckResult:
        problems = []
        for region in (["*"] if self.options.in_cluster else list(self.options.contexts)):
            try:
                self._call(f"reach the API server of {region}", lambda: k8s.VersionApi(
                    self.api_client(region)).get_code(_request_timeout=self.options.timeout))
            except IntegrationError as exc:
                problems.append(str(exc))
        return CheckResult(not problems, "; ".join(problems) or f"{self.name}: every cluster answers.")


def _available(obj: Any) -> tuple[bool, str]:
    wanted = int(obj.spec.replicas if obj.spec and obj.spec.replicas is not None else 1)
    st = obj.status
    generation = obj.metadata.generation or 0
    observed = (st.observed_generation or 0) if st else 0
    ready, updated = (st.ready_replicas or 0) if st else 0, (st.updated_replicas or 0) if st else 0
    available = (st.available_replicas or 0) if st else 0
    seen = f"{ready}/{wanted} ready, {updated} updated, {available} available"
    if observed < generation:
        return False, seen + f" (generation {generation} not yet observed)"
    return ready == updated == available == wanted, seen


def _translate(exc: k8s.ApiException, what: str) -> IntegrationError:
    status = exc.status or 0
    said = f"HTTP {status} {exc.reason or ''}".strip()
    if status in (401, 403):
        return IntegrationError(f"{what}: refused ({said}); grant drbot's service account or user this "
                                "verb on this resource", ErrorKind.NOT_PERMITTED)
    if status == 404:
        return IntegrationError(f"{what}: not found ({said}); check the kind, name and namespace",
                                ErrorKind.PERMANENT)
    if status in (409, 429) or status >= 500:
        return IntegrationError(f"{what}: {said}; try again shortly", ErrorKind.TRANSIENT)
    return IntegrationError(f"{what}: rejected ({said})", ErrorKind.PERMANENT)
