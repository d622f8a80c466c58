"""``kubernetes.*`` runbook steps through the real ``kubernetes`` client, with a kubeconfig
pointing at a fake Kubernetes API server per region (tests/fakes/kubernetes_api.py):
scale (to N, by a factor), patch, restart, waiting for the rollout, failures, the time
budget, abort, rollback to the replicas read before, and what ``/dr plan`` shows."""
from __future__ import annotations

import threading

import pytest

from bot.config import ConfigError, parse_config
from bot.steps import StepFailed, execute_step
from integrations.steps.kubernetes import Kubernetes
from tests.fakes.kubernetes_api import FakeKubernetes, kubeconfig
from tests.step_support import FakeTime, a_request, config_text, plan_text, services_for

SOURCES = """
k8s:
  kind: kubernetes
  kubeconfig: ${KUBECONFIG_PATH}
  contexts: {us-east-1: ctx-us-east-1, us-west-2: ctx-us-west-2}
  poll_interval: 0.01
"""
STEPS = """
- name: Scale the standby up
  action: kubernetes.scale
  source: k8s
  timeout: 2m
  kubernetes: {name: api, namespace: prod, replicas: 6}
  rollback: {action: kubernetes.scale, kubernetes: {name: api, namespace: prod}}
- name: Drain the old region's ingress
  action: kubernetes.patch
  source: k8s
  to: source
  kubernetes:
    kind: Ingress
    name: web
    namespace: prod
    patch_type: merge
    patch: {metadata: {annotations: {drbot/weight: "0", drbot/moved-by: "{request_id}"}}}
  rollback:
    action: kubernetes.patch
    kubernetes: {kind: Ingress, name: web, namespace: prod, patch: {metadata: {annotations: {drbot/weight: "100"}}}}
- name: Restart the connectors
  action: kubernetes.restart
  source: k8s
  kubernetes: {kind: StatefulSet, name: connect, namespace: prod}
- name: Scale workers by half again
  action: kubernetes.scale
  source: k8s
  kubernetes: {name: workers, namespace: prod, factor: 1.5, wait: false}
"""


@pytest.fixture
def clusters(tmp_path):
    with FakeKubernetes() as east, FakeKubernetes() as west:
        for fake in (east, west):
            fake.add_workload("api", 2, "prod")
            fake.add_workload("workers", 3, "prod")
            fake.add_workload("connect", 2, "prod", plural="statefulsets")
            fake.add("ingresses", "web", {"metadata": {"name": "web", "namespace": "prod", "generation": 1,
                                                       "annotations": {"drbot/weight": "100"}}}, "prod")
            fake.rollout_reads = 2
        yield {"us-east-1": east, "us-west-2": west}


@pytest.fixture
def sv(clusters, tmp_path):
    path = kubeconfig(tmp_path / "kubeconfig", clusters)
    services = services_for(SOURCES, STEPS, tmp_path, {"KUBECONFIG_PATH": str(path)})
    yield services
    services.engine.dispose()


def step(sv, i):
    return sv.config.service("orders").runbooks.failover[i]


def test_scale_sets_the_replicas_waits_for_the_rollout_and_records_before_and_after(sv, clusters):
    out = execute_step(sv, a_request(), step(sv, 0), "us-west-2")
    west, east = clusters["us-west-2"], clusters["us-east-1"]
    assert west.get("deployments", "api", "prod")["spec"]["replicas"] == 6
    assert east.get("deployments", "api", "prod")["spec"]["replicas"] == 2  # the other region's cluster
    assert out["details"]["replicas_before"] == 2 and out["details"]["replicas_after"] == 6
    assert out["details"]["rollout"] == "6/6 ready, 6 updated, 6 available"
    assert out["summary"] == "Scaled deployment api (namespace prod) in us-west-2 from 2 to 6 replicas"
    [patch] = west.calls("PATCH")
    assert patch.path == "/apis/apps/v1/namespaces/prod/deployments/api/scale"
    assert patch.json == {"spec": {"replicas": 6}} and patch.headers["content-type"] == "application/merge-patch+json"
    assert len(west.calls("GET", "/apis/apps/v1/namespaces/prod/deployments/api/status")) == 2  # polled until ready


def test_a_factor_multiplies_the_current_replicas_rounding_up(sv, clusters):
    out = execute_step(sv, a_request(), step(sv, 3), "us-west-2")
    assert clusters["us-west-2"].get("deployments", "workers", "prod")["spec"]["replicas"] == 5
    assert "rollout" not in out["details"]  # wait: false


def test_rollback_scales_back_to_the_replicas_read_before_even_after_a_timeout(sv, clusters):
    clusters["us-west-2"].stuck = True
    clock = FakeTime()
    k8s = sv.backends["k8s"]
    sv.backends["k8s"] = Kubernetes("k8s", k8s.options.model_copy(update={"poll_interval": 10.0}))
    sv.backends["k8s"]._clock, sv.backends["k8s"]._sleep = clock, clock.sleep
    with pytest.raises(StepFailed) as e:
        execute_step(sv, a_request(), step(sv, 0), "us-west-2")
    assert "not available within 120s: 2/6 ready" in str(e.value)
    assert e.value.output["replicas_before"] == 2 and e.value.output["error_kind"] == "transient"
    assert clock.slept == [10.0] * 12
    clusters["us-west-2"].stuck = False
    undo = step(sv, 0).rollback.as_step(step(sv, 0), e.value.output)
    out = execute_step(sv, a_request(), undo, "us-west-2")
    assert clusters["us-west-2"].get("deployments", "api", "prod")["spec"]["replicas"] == 2
    assert out["summary"] == "Scaled deployment api (namespace prod) in us-west-2 from 6 to 2 replicas"


def test_a_rollback_with_no_recorded_replicas_says_there_is_nothing_to_scale_back_to(sv):
    undo = step(sv, 0).rollback.as_step(step(sv, 0), {"region": "us-west-2"})
    with pytest.raises(StepFailed, match="were not recorded, so there is nothing to scale back to"):
        execute_step(sv, a_request(), undo, "us-west-2")


def test_a_stopped_run_stops_waiting_for_the_rollout(sv, clusters):
    clusters["us-west-2"].stuck = True
    stop = threading.Event()
    stop.set()
    with pytest.raises(StepFailed, match="in us-west-2 stopped: 2/6 ready"):
        execute_step(sv, a_request(), step(sv, 0), "us-west-2", stop=stop)


def test_patch_acts_in_the_source_region_fills_run_variables_and_its_rollback_restores(sv, clusters):
    out = execute_step(sv, a_request(request_id=77), step(sv, 1), "us-east-1")
    ingress = clusters["us-east-1"].get("ingresses", "web", "prod")
    assert ingress["metadata"]["annotations"] == {"drbot/weight": "0", "drbot/moved-by": "77"}
    assert clusters["us-east-1"].calls("PATCH")[0].headers["content-type"] == "application/merge-patch+json"
    assert out["changed"] is True
    undo = step(sv, 1).rollback.as_step(step(sv, 1), out)
    execute_step(sv, a_request(), undo, "us-east-1")
    assert ingress["metadata"]["annotations"]["drbot/weight"] == "100"


def test_restart_sets_the_restarted_at_annotation_and_waits(sv, clusters):
    out = execute_step(sv, a_request(), step(sv, 2), "us-west-2")
    sts = clusters["us-west-2"].get("statefulsets", "connect", "prod")
    stamp = sts["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
    assert stamp == out["details"]["restarted_at"] and sts["metadata"]["generation"] == 2
    assert clusters["us-west-2"].calls("PATCH")[0].headers["content-type"] == \
        "application/strategic-merge-patch+json"


def test_failures_name_the_object_and_say_whether_retrying_helps(sv, clusters):
    clusters["us-west-2"].objects.pop(("deployments", "prod", "api"))
    with pytest.raises(StepFailed) as e:
        execute_step(sv, a_request(), step(sv, 0), "us-west-2")
    assert "deployment api (namespace prod) in us-west-2: not found" in str(e.value)
    assert e.value.output["error_kind"] == "permanent"
    clusters["us-east-1"].token = "rotated"
    with pytest.raises(StepFailed) as e:
        execute_step(sv, a_request(), step(sv, 1), "us-east-1")
    assert e.value.output["error_kind"] == "not_permitted" and "refused (HTTP 401" in str(e.value)


def test_the_plan_reads_live_replicas_and_changes_nothing(sv, clusters):
    text = plan_text(sv)
    assert "would scale deployment api (namespace prod) in us-west-2 from 2 to 6 replicas" in text
    assert "would patch ingress web (namespace prod) in us-east-1 (merge patch, now at generation 1)" in text
    assert "would restart the rollout of statefulset connect (namespace prod) in us-west-2 (2 replicas)" in text
    assert "would scale deployment workers (namespace prod) in us-west-2 from 3 to 5 replicas" in text
    assert "rollback: kubernetes.scale Deployment api back to the replicas read before the step" in text
    assert not clusters["us-west-2"].calls("PATCH") and not clusters["us-east-1"].calls("PATCH")


def test_check_config_reaches_every_cluster(sv):
    result = sv.backends["k8s"].check()
    assert result.ok, result.message


@pytest.mark.parametrize("spec, message", [
    ("{action: kubernetes.scale, kubernetes: {name: api}}", "kubernetes.scale needs replicas (a count) or factor"),
    ("{action: kubernetes.scale, kubernetes: {name: api, replicas: 2, factor: 2}}", "set replicas or factor, not both"),
    ("{action: kubernetes.restart, kubernetes: {kind: Ingress, name: web}}", "works on a Deployment or StatefulSet"),
    ("{action: kubernetes.patch, kubernetes: {name: api}}", "kubernetes.patch needs a patch"),
    ("{action: kubernetes.scale, kubernetes: {name: api, replicas: -1}}", "-1 is below the minimum, 0"),
    ("{action: kubernetes.scale, kubernetes: {name: api, kind: Pod, replicas: 1}}", "'Pod' is not one of"),
])
def test_bad_kubernetes_steps_are_config_errors(spec, message):
    text = config_text(SOURCES, "- {name: k, source: k8s, " + spec[1:])
    with pytest.raises(ConfigError) as e:
        parse_config(text, "drbot.yaml", {"KUBECONFIG_PATH": "/nonexistent"})
    assert message in str(e.value) and "services[0].runbooks.failover[0]" in str(e.value)


def test_a_source_needs_contexts_or_in_cluster_not_both():
    sources = SOURCES.replace("poll_interval: 0.01", "in_cluster: true")
    with pytest.raises(ConfigError, match="sources.k8s: set contexts .* or in_cluster: true, not both"):
        parse_config(config_text(sources, "- {name: w, action: wait, wait: {duration: 1s}}"), "drbot.yaml",
                     {"KUBECONFIG_PATH": "/x"})
