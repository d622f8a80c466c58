"""A runbook with the new step kinds, end to end over real HTTP: the app (uvicorn) takes
signed Slack requests, a request and its approval by two other people run a runbook that
scales a deployment in a fake Kubernetes API server (through the real client), turns a
read-only flag on at a fake flag service, shifts traffic (sandbox), asks a person to check
the dashboards (a manual step one of the approvers answers Done in the run's thread) and
runs a smoke test that fails; the Rollback button asks for a rollback, two people approve
it, and it undoes the steps newest first: traffic back, flag off, deployment scaled back."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from bot.config import parse_config
from bot.evidence import collect
from bot.store.manual_tables import ManualAnswer
from bot.store.models import ChangeRequest, RequestKind, RequestState, Run, RunStep, StepState, TimelineEvent
from bot.wiring import build_services
from tests.app_server import running_app
from tests.fakes.flags_api import FakeFlags
from tests.fakes.kubernetes_api import FakeKubernetes, kubeconfig
from tests.helpers import delivered, request_row, rows, the_request, wait_until
from tests.estates import estate as estate_text

ALICE, BOB, CAROL, DAVE = "UALICE", "UBOB", "UCAROL", "UDAVE"
CHANNEL = "C_INC"
SOURCES = """
k8s:
  kind: kubernetes
  kubeconfig: ${KUBECONFIG_PATH}
  contexts: {us-east-1: ctx-us-east-1, us-west-2: ctx-us-west-2}
  poll_interval: 0.02
flags:
  kind: http
  base_url: ${FLAGS_URL}
  headers: {Authorization: "Bearer ${FLAGS_TOKEN}"}
"""
STEPS = """
- name: Scale the standby up
  action: kubernetes.scale
  source: k8s
  timeout: 30s
  kubernetes: {name: orders-api, namespace: orders, replicas: 6}
  rollback: {action: kubernetes.scale, kubernetes: {name: orders-api, namespace: orders}}
- name: Read-only mode on
  action: http
  source: flags
  timeout: 10s
  http: {method: PUT, url: "/flags/{service}-read-only", body: {enabled: true}, expect: data.state == "on"}
  rollback:
    action: http
    http: {method: PUT, url: "/flags/{service}-read-only", body: {enabled: false}, expect: data.state == "off"}
- name: Shift traffic
  action: traffic.shift
  timeout: 10s
  verify: {traffic_in: target, within: 5s, interval: 100ms}
  rollback: {action: traffic.shift}
- name: Check the dashboards
  action: manual
  timeout: 5m
  manual: {text: "Open the {service} dashboard in {to_region}: is the error rate under 1%?"}
- name: Smoke test the new region
  action: http
  source: flags
  timeout: 10s
  http: {url: "/smoke/{service}", expect: 'checks[0].state == "passing"', retries: 0}
- name: Read-only mode off
  action: http
  source: flags
  timeout: 10s
  http: {method: PUT, url: "/flags/{service}-read-only", body: {enabled: false}}
"""


@pytest.fixture
def estate(fake_slack, tmp_path):
    with FakeKubernetes() as east, FakeKubernetes() as west, FakeFlags() as flags:
        for cluster in (east, west):
            cluster.add_workload("orders-api", 2, "orders")
            cluster.rollout_reads = 2
        path = kubeconfig(tmp_path / "kubeconfig", {"us-east-1": east, "us-west-2": west})
        loaded = parse_config(estate_text(SOURCES, STEPS, approvers=(BOB, CAROL, DAVE), required=2), "scenario.yaml",
                              {"KUBECONFIG_PATH": str(path), "FLAGS_URL": flags.url, "FLAGS_TOKEN": "t0ken"})
        services = build_services(loaded, db_url=f"sqlite:///{tmp_path}/drbot.db")
        try:
            with running_app(services, fake_slack) as app:
                yield {"services": services, "app": app, "fake": fake_slack, "west": west, "east": east,
                       "flags": flags}
        finally:
            services.runner.executor.shutdown(wait=True)
            services.engine.dispose()


def final(services, request_id: int) -> ChangeRequest:
    done = wait_until(f"request #{request_id} to end", lambda: (r := request_row(services, request_id)) and r.state in (
        RequestState.SUCCEEDED, RequestState.FAILED, RequestState.ROLLED_BACK) and r, 30)
    delivered(services)
    return done


def click(estate, user: str, action: str, value: str, ts: str) -> None:
    fake = estate["fake"]
    r = estate["app"].sender.block_action(action, value, user_id=user, user_name=user[1:].lower(),
                                          channel_id=CHANNEL, response_url=fake.response_url(user),
                                          message=fake.message(CHANNEL, ts))
    assert r.status_code == 200


def texts(message: dict) -> str:
    out = []
    for b in message.get("blocks", []):
        if isinstance(b.get("text"), dict):
            out.append(b["text"]["text"])
        out += [e["text"] for e in b.get("elements", []) if isinstance(e, dict) and isinstance(e.get("text"), str)]
    return "\n".join(out)


def steps_of(services, request_id: int) -> list[RunStep]:
    (run,) = rows(services, Run, Run.request_id == request_id)
    return rows(services, RunStep, RunStep.run_id == run.id, order=RunStep.id)


def test_a_failed_smoke_test_is_rolled_back_newest_first_scale_back_and_flag_off(estate):
    services, fake, west, flags = estate["services"], estate["fake"], estate["west"], estate["flags"]
    flags.smoke_failing = True

    r = estate["app"].sender.slash_command("failover orders us-east-1 is degraded", user_id=ALICE,
                                           user_name="alice", channel_id=CHANNEL, response_url=fake.response_url("a"))
    assert r.status_code == 200
    said = wait_until("the reply", lambda: [c for c in fake.calls("response_url") if c.params["_path"] == "/response/a"])
    assert "is posted for approval" in said[0].params["text"], said[0].params
    req = wait_until("the request posted", lambda: (q := the_request(services, "orders")).message_ts and q)
    click(estate, BOB, "cr_approve", str(req.id), req.message_ts)
    delivered(services)
    assert request_row(services, req.id).state is RequestState.PENDING  # two approvals: one is not enough
    click(estate, CAROL, "cr_approve", str(req.id), req.message_ts)

    # the manual step waits in the run's thread for one of the approvers
    asked = wait_until("the manual step posted", lambda: next(iter(rows(services, ManualAnswer, order=ManualAnswer.run_step_id)), None))
    posted = wait_until("its message", lambda: (a := rows(services, ManualAnswer, order=ManualAnswer.run_step_id)[0]).message_ts and a)
    assert "Open the orders dashboard in us-west-2" in asked.text
    click(estate, DAVE, "manual_done", str(posted.run_step_id), posted.message_ts)  # not an approver of this run
    assert "you may not answer" in wait_until("dave refused", lambda: [
        c for c in fake.calls("response_url") if c.params["_path"] == f"/response/{DAVE}"])[-1].params["text"]
    click(estate, CAROL, "manual_done", str(posted.run_step_id), posted.message_ts)

    done = final(services, req.id)
    assert done.state is RequestState.FAILED and done.state_reason == "step 5 failed"

    ran = steps_of(services, req.id)
    assert [(s.position, s.action, s.state) for s in ran] == [
        (0, "kubernetes.scale", StepState.SUCCEEDED), (1, "http", StepState.SUCCEEDED),
        (2, "traffic.shift", StepState.SUCCEEDED), (3, "manual", StepState.SUCCEEDED),
        (4, "http", StepState.FAILED)]
    assert json.loads(ran[3].output)["by"] == CAROL and json.loads(ran[3].output)["answer"] == "done"
    assert west.get("deployments", "orders-api", "orders")["spec"]["replicas"] == 6
    assert flags.flags["orders-read-only"]["state"] == "on"
    assert flags.flags["orders-read-only"]["by"] == f"drbot-{req.id}-1-1"  # the idempotency key
    scaled = json.loads(ran[0].output)
    assert scaled["details"]["replicas_before"] == 2 and scaled["details"]["rollout"].startswith("6/6 ready")
    smoke = json.loads(ran[4].output)
    assert smoke["status"] == 200 and "failing" in smoke["body"]
    assert 'checks[0].state == "passing": found "failing"' in ran[4].error

    run = rows(services, Run, Run.request_id == req.id)[0]
    progress = fake.message(CHANNEL, run.progress_ts)
    shown = texts(progress)
    assert "✓ 1. Scale the standby up: done in" in shown
    assert "Scaled deployment orders-api (namespace orders) in us-west-2 from 2 to 6 replicas" in shown
    assert "✓ 4. Check the dashboards: done" in shown
    assert "✗ 5. Smoke test the new region: failed" in shown
    assert {e["action_id"] for b in progress["blocks"] if b["type"] == "actions" for e in b["elements"]} >= \
        {"run_rollback"}

    click(estate, ALICE, "run_rollback", str(req.id), run.progress_ts)
    rb = wait_until("the rollback request", lambda: next(iter(rows(
        services, ChangeRequest, ChangeRequest.parent_id == req.id)), None))
    assert rb.kind is RequestKind.ROLLBACK
    rb = wait_until("the rollback posted", lambda: (q := request_row(services, rb.id)).message_ts and q)
    asked = texts(fake.message(CHANNEL, rb.message_ts))
    assert "Undo: Shift traffic" in asked and "Undo: Scale the standby up" in asked
    click(estate, CAROL, "cr_approve", str(rb.id), rb.message_ts)
    click(estate, BOB, "cr_approve", str(rb.id), rb.message_ts)
    undone = final(services, rb.id)
    assert undone.state is RequestState.ROLLED_BACK, undone.state_reason
    assert request_row(services, req.id).state is RequestState.ROLLED_BACK

    undo = steps_of(services, rb.id)
    assert [(s.position, s.name, s.state) for s in undo] == [  # the smoke test and the manual check undo nothing
        (2, "Undo: Shift traffic", StepState.SUCCEEDED),
        (1, "Undo: Read-only mode on", StepState.SUCCEEDED),
        (0, "Undo: Scale the standby up", StepState.SUCCEEDED)]
    assert flags.flags["orders-read-only"]["state"] == "off"
    assert west.get("deployments", "orders-api", "orders")["spec"]["replicas"] == 2
    assert json.loads(undo[2].output)["summary"] == \
        "Scaled deployment orders-api (namespace orders) in us-west-2 from 6 to 2 replicas"
    assert [json.loads(s.output)["region"] for s in undo] == ["us-east-1", "us-west-2", "us-west-2"]
    assert services.status.regions()["orders"][0] == "us-east-1"

    events = [e.kind for e in rows(services, TimelineEvent, TimelineEvent.request_id == rb.id, order=TimelineEvent.id)]
    assert events.count("step.succeeded") == 3

    # The evidence pack carries each step's output: what was scaled from what, the smoke answer.
    records = {r["request"]["id"]: r
               for r in collect(services.engine, datetime(2000, 1, 1, tzinfo=timezone.utc), config=services.config)}
    forward = records[req.id]["steps"]
    assert forward[0]["output"]["details"]["replicas_before"] == 2
    assert forward[3]["output"]["by"] == CAROL  # who answered the manual step, in the evidence
    assert forward[4]["output"]["status"] == 200 and forward[4]["state"] == "failed"
    assert records[rb.id]["steps"][2]["output"]["details"]["replicas_after"] == 2
