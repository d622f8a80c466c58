"""``argo_workflow`` runbook steps against a fake Argo Server over HTTP
(tests/fakes/argo_server.py): submit from a WorkflowTemplate with parameters, follow the
phase, record outputs and a link; a failed workflow; the time budget and a stopped run
stop the workflow; rollback submits its own template; what ``/dr plan`` shows."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from bot.config import ConfigError, parse_config
from bot.steps import StepFailed, execute_step
from integrations.steps.argo import ArgoWorkflows
from tests.fakes.argo_server import FakeArgo
from tests.step_support import FakeTime, a_request, config_text, plan_text, services_for

SOURCES = """
argo:
  kind: argo_workflow
  url: ${ARGO_URL}
  ui_url: https://argo.example.com
  token: ${ARGO_TOKEN}
  namespace: argo
"""
STEPS = """
- name: Restore last night's backup into the standby
  action: argo_workflow
  source: argo
  timeout: 10m
  argo_workflow:
    template: restore-db
    parameters: {service: "{service}", region: "{region}", snapshot: latest}
    interval: 10ms
  rollback:
    action: argo_workflow
    argo_workflow: {template: drop-restored-db, parameters: {region: "{region}"}, interval: 10ms}
"""


@pytest.fixture
def fake():
    with FakeArgo() as f:
        f.templates["argo"] |= {"restore-db", "drop-restored-db"}
        yield f


@pytest.fixture
def sv(fake, tmp_path):
    services = services_for(SOURCES, STEPS, tmp_path, {"ARGO_URL": fake.url, "ARGO_TOKEN": "argo-token"})
    yield services
    services.engine.dispose()


def step(sv):
    return sv.config.service("orders").runbooks.failover[0]


def test_a_workflow_is_submitted_from_its_template_followed_and_its_outputs_recorded(sv, fake):
    out = execute_step(sv, a_request(request_id=12), step(sv), "us-west-2")
    [submit] = fake.calls("POST")
    assert submit.path == "/api/v1/workflows/argo/submit"
    assert submit.json == {"namespace": "argo", "resourceKind": "WorkflowTemplate", "resourceName": "restore-db",
                           "submitOptions": {"parameters": ["service=orders", "region=us-west-2", "snapshot=latest"],
                                             "labels": "drbot/request=12,drbot/service=orders"}}
    d = out["details"]
    assert d["workflow"] == "restore-db-00001" and d["phase"] == "Succeeded"
    assert d["link"] == "https://argo.example.com/workflows/argo/restore-db-00001"
    assert d["outputs"] == {"snapshot": "orders-2026-11-29", "rows-checked": "1204331"}
    assert out["summary"] == ("Workflow restore-db-00001 from restore-db succeeded: "
                              "https://argo.example.com/workflows/argo/restore-db-00001")
    assert len(fake.calls("GET")) == 2 and not fake.calls("PUT")


def test_node_outputs_are_recorded_when_the_workflow_exports_none(sv, fake):
    fake.outputs = {}
    out = execute_step(sv, a_request(), step(sv), "us-west-2")
    assert out["details"]["outputs"] == {"restore.restored-rows": "1204331"}


def test_a_failed_workflow_fails_the_step_with_the_failing_node(sv, fake):
    fake.outcome = "Failed"
    with pytest.raises(StepFailed) as e:
        execute_step(sv, a_request(), step(sv), "us-west-2")
    assert "workflow restore-db-00001 ended Failed: restore: Error (exit code 3): checksum mismatch" in str(e.value)
    assert e.value.output["workflow"] == "restore-db-00001" and e.value.output["phase"] == "Failed"
    assert e.value.output["link"].endswith("/workflows/argo/restore-db-00001")


def test_past_the_timeout_the_workflow_is_stopped(sv, fake):
    fake.hang = True
    clock = FakeTime()
    argo = sv.backends["argo"]
    argo._clock, argo._sleep = clock, clock.sleep
    with pytest.raises(StepFailed) as e:
        execute_step(sv, a_request(), every_minute(step(sv)), "us-west-2")
    assert clock.slept == [60.0] * 10
    assert "workflow restore-db-00001 stopped: it did not end within 600s (phase Running)" in str(e.value)
    [stop] = fake.calls("PUT")
    assert stop.path == "/api/v1/workflows/argo/restore-db-00001/stop"
    assert stop.json["name"] == "restore-db-00001" and stop.json["namespace"] == "argo"
    assert fake.workflows[("argo", "restore-db-00001")]["_stopped"]
    assert e.value.output["workflow"] == "restore-db-00001"  # what rollback and people need


def every_minute(st):
    return st.model_copy(update={"argo_workflow": st.argo_workflow.model_copy(update={"interval": timedelta(minutes=1)})})


def test_a_stopped_run_stops_the_workflow(sv, fake):
    fake.hang = True
    stop = threading.Event()
    stop.set()
    with pytest.raises(StepFailed, match="stopped: the run was stopped"):
        execute_step(sv, a_request(), step(sv), "us-west-2", stop=stop)
    assert len(fake.calls("PUT")) == 1


def test_rollback_submits_its_own_template_through_the_same_source(sv, fake):
    undo = step(sv).rollback.as_step(step(sv))
    out = execute_step(sv, a_request(), undo, "us-west-2")
    assert fake.calls("POST")[0].json["resourceName"] == "drop-restored-db"
    assert out["details"]["phase"] == "Succeeded"


def test_the_plan_reads_the_template_and_submits_nothing(sv, fake):
    text = plan_text(sv)
    assert ("would submit a workflow from WorkflowTemplate restore-db in namespace argo (service=orders, "
            "region=us-west-2, snapshot=latest) and wait for it") in text
    assert "rollback: argo_workflow from drop-restored-db" in text
    assert not fake.calls("POST")
    fake.templates["argo"].discard("restore-db")
    assert 'cannot tell: argo: read WorkflowTemplate restore-db: HTTP 404' in plan_text(sv)


def test_a_refused_token_is_not_permitted_and_check_says_so(sv, fake):
    fake.token = "rotated"
    with pytest.raises(StepFailed) as e:
        execute_step(sv, a_request(), step(sv), "us-west-2")
    assert e.value.output["error_kind"] == "not_permitted" and "HTTP 401" in str(e.value)
    assert not sv.backends["argo"].check().ok


def test_the_token_gets_its_bearer_prefix_once(fake):
    for token in ("argo-token", "Bearer argo-token"):
        argo = ArgoWorkflows("a", ArgoWorkflows.Options(url=fake.url, token=token))
        assert argo.check().ok
    assert {r.headers["authorization"] for r in fake.requests} == {"Bearer argo-token"}


def test_bad_argo_steps_are_config_errors():
    with pytest.raises(ConfigError) as e:
        parse_config(config_text(SOURCES, "- {name: a, action: argo_workflow, source: argo, argo_workflow: "
                                          "{template: x, parameter: {a: b}}}"), "drbot.yaml",
                     {"ARGO_URL": "http://x", "ARGO_TOKEN": "t"})
    assert "argo_workflow.parameter: unknown key (did you mean 'parameters'?)" in str(e.value)
