"""Issue 14's scenario, end to end over real HTTP (the app under uvicorn, signed Slack
requests, the fake Slack Web API), on SQLite and PostgreSQL: a service with three
replication streams (seconds, messages, objects) whose Kafka stream is over its critical
level is refused at pre-flight, naming that stream; once it recovers, a staged ramp
failover runs 5 % -> 50 % -> 100 % with a verify at each stage, shown live in the run's
progress message; and a second run whose verify fails at 50 % is rolled back to 0 %.

Nothing of drbot is mocked: the sandbox estate supplies the readings (the streams' lag
pinned in their units, health) and takes the weights."""
from __future__ import annotations

import json
import re
import threading

import pytest

from bot.config import parse_config
from bot.store.models import ChangeRequest, RequestKind, RequestState, Run, RunStep, StepState
from bot.wiring import build_services
from tests.app_server import running_app
from tests.helpers import delivered, request_row, rows, wait_until

ALICE, BOB, CAROL = "UALICE", "UBOB", "UCAROL"
CHANNEL = "C_INC"
CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim:
    kind: sandbox
    timeout: 1.0
    profiles:
      orders: {lag: 2, jitter: 0}
approvals:
  required_approvals: 1
  approvers: [UBOB, UCAROL]
slack:
  messages_per_second: 10
  burst: 20
services:
  - name: orders
    tier: critical
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    replication:
      - {name: orders-db, source: sim, target: db, unit: seconds, warning: 10s, critical: 30s}
      - {name: orders-events, source: sim, target: events, unit: messages, warning: 1000, critical: 5000}
      - {name: orders-media, source: sim, target: media, unit: objects, warning: 500, critical: 2000}
    health: {us-east-1: sim, us-west-2: sim}
    traffic: {source: sim}
    database: {source: sim}
    runbooks:
      failover:
        - name: Switch the database over
          action: database.switchover
          timeout: 30s
          verify: {writer_in: target, within: 5s, interval: 50ms}
          rollback: {action: database.switchover}
        - name: Ramp traffic to the target
          action: traffic.shift
          timeout: 1m
          ramp:
            stages: [5, 50, 100]
            hold: HOLD
            interval: 50ms
            verify: {healthy: target, lag_below: 30s}
          verify: {traffic_in: target, within: 5s, interval: 50ms}
"""


@pytest.fixture
def scenario(fake_slack, db_url, request):
    hold = getattr(request, "param", "600ms")
    services = build_services(parse_config(CONFIG.replace("HOLD", hold), "scenario.yaml", {}), db_url=db_url)
    sim = services.backends["sim"].estate
    sim.set_lag("orders", 3, "db")
    sim.set_lag("orders", 120, "events")
    sim.set_lag("orders", 40, "media")
    try:
        with running_app(services, fake_slack) as app:
            yield {"services": services, "app": app, "fake": fake_slack, "sim": sim}
    finally:
        services.runner.executor.shutdown(wait=True)
        services.engine.dispose()


def text_of(message: dict) -> str:
    out = []
    for b in message.get("blocks", []):
        if isinstance(b.get("text"), dict):
            out.append(b["text"]["text"])
        out += [e["text"] for e in b.get("elements", []) if isinstance(e, dict) and isinstance(e.get("text"), str)]
    return "\n".join(out)


def ask(sc, words: str, name: str) -> ChangeRequest:
    fake, services = sc["fake"], sc["services"]
    before = {r.id for r in rows(services, ChangeRequest)}
    r = sc["app"].sender.slash_command(words, user_id=ALICE, user_name="alice", channel_id=CHANNEL,
                                       response_url=fake.response_url(name))
    assert r.status_code == 200
    said = wait_until("the reply", lambda: [c for c in fake.calls("response_url") if c.params["_path"] == f"/response/{name}"])
    assert "is posted for approval" in said[0].params["text"], said[0].params
    return wait_until("the request posted", lambda: next(
        (q for q in rows(services, ChangeRequest) if q.id not in before and q.message_ts), None))


def click(sc, user: str, action: str, value: int, ts: str) -> None:
    fake = sc["fake"]
    r = sc["app"].sender.block_action(action, str(value), user_id=user, user_name=user[1:].lower(),
                                      channel_id=CHANNEL, response_url=fake.response_url(user),
                                      message=fake.message(CHANNEL, ts))
    assert r.status_code == 200


def final(services, request_id: int) -> ChangeRequest:
    done = wait_until(f"request #{request_id} to end", lambda: (q := request_row(services, request_id)) and q.state in (
        RequestState.SUCCEEDED, RequestState.FAILED, RequestState.ROLLED_BACK) and q, 30)
    delivered(services)
    return done


def progress_texts(sc, run: Run) -> list[str]:
    """Every version of the run's progress message Slack received (posted, then updated)."""
    calls = sc["fake"].calls()
    return [text_of(c.params) for c in calls
            if (c.method == "chat.update" and c.params.get("ts") == run.progress_ts)
            or (c.method == "chat.postMessage" and "Run of" in json.dumps(c.params.get("blocks", "")))]


def steps_of(services, request_id: int) -> list[RunStep]:
    (run,) = rows(services, Run, Run.request_id == request_id)
    return rows(services, RunStep, RunStep.run_id == run.id, order=RunStep.id)


def test_kafka_over_critical_is_refused_then_a_ramp_moves_the_traffic_5_50_100(scenario):
    sc = scenario
    services, fake, sim = sc["services"], sc["fake"], sc["sim"]

    # the Kafka stream is over its critical level: the request says so and a run is refused
    sim.set_lag("orders", 7200, "events")
    req = ask(sc, "failover orders us-east-1 is degraded", "first")
    shown = text_of(fake.message(CHANNEL, req.message_ts))
    assert "✗ stream orders-events: 7,200 messages against critical 5,000 messages: over critical" in shown, shown
    assert "✓ stream orders-db" in shown and "✓ stream orders-media" in shown
    click(sc, BOB, "cr_approve", req.id, req.message_ts)
    refused = final(services, req.id)
    assert refused.state is RequestState.FAILED and refused.state_reason == "pre-flight failed: the plan went stale"
    stale = json.loads(refused.preflight)
    (kafka,) = [c for c in stale["checks"] if c["code"] == "stream" and c["ok"] is False]
    assert kafka["params"]["stream"] == "orders-events" and kafka["params"]["value"] == 7200
    assert rows(services, RunStep) == []
    assert sim.weights("orders") == {"us-east-1": 100.0, "us-west-2": 0.0}

    # it recovers: the ramp runs, every stage held and verified, shown live
    sim.set_lag("orders", 300, "events")
    req = ask(sc, "failover orders us-east-1 is degraded, kafka caught up", "second")
    assert "✓ stream orders-events: 300 messages against critical 5,000 messages" in \
        text_of(fake.message(CHANNEL, req.message_ts))
    seen: list[dict] = []
    stop = threading.Event()

    def watch():
        while not stop.wait(0.01):
            w = sim.weights("orders")
            if not seen or seen[-1] != w:
                seen.append(w)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    click(sc, CAROL, "cr_approve", req.id, req.message_ts)
    done = final(services, req.id)
    stop.set()
    watcher.join(5)
    assert done.state is RequestState.SUCCEEDED, done.state_reason
    assert [w["us-west-2"] for w in seen] == [0.0, 5.0, 50.0, 100.0]
    assert sim.weights("orders") == {"us-east-1": 0.0, "us-west-2": 100.0} and sim.writer("orders") == "us-west-2"

    ran = steps_of(services, req.id)
    assert [(s.action, s.state) for s in ran] == [("database.switchover", StepState.SUCCEEDED),
                                                 ("traffic.shift", StepState.SUCCEEDED)]
    out = json.loads(ran[1].output)
    assert [s["percent"] for s in out["details"]["stages"]] == [5, 50, 100]
    assert all(s["held_s"] >= 0.6 for s in out["details"]["stages"][:2])
    assert out["verify"]["verified"] == ["traffic"]

    (run,) = rows(services, Run, Run.request_id == req.id)
    versions = progress_texts(sc, run)
    live = "\n".join(versions)
    assert re.search(r"▶ 2\. Ramp traffic to the target: running: stage 1 of 3: 5% to us-west-2 "
                     r"\(us-east-1=95%, us-west-2=5%\), held [\d.]+m?s of 0\.6s", live), live
    assert "stage 2 of 3: 50% to us-west-2 (us-east-1=50%, us-west-2=50%)" in live, live
    last = text_of(fake.message(CHANNEL, run.progress_ts))
    assert "✓ 2. Ramp traffic to the target: done in" in last
    assert "ramped traffic to us-west-2: 5% (held" in last and "now us-east-1=0%, us-west-2=100%" in last
    assert services.status.regions()["orders"][0] == "us-west-2"


@pytest.mark.parametrize("scenario", ["3s"], indirect=True)
def test_a_verify_failing_at_50_stops_the_ramp_and_rollback_returns_the_target_to_0(scenario):
    sc = scenario
    services, fake, sim = sc["services"], sc["fake"], sc["sim"]
    stop = threading.Event()

    def fault_at_50():  # the new region starts failing once it takes half the traffic
        while not stop.wait(0.005):
            if sim.weights("orders").get("us-west-2") == 50.0:
                sim.inject("orders", "region_down", "us-west-2")
                return
    threading.Thread(target=fault_at_50, daemon=True).start()

    req = ask(sc, "failover orders us-east-1 is degraded", "first")
    click(sc, BOB, "cr_approve", req.id, req.message_ts)
    failed = final(services, req.id)
    stop.set()
    assert failed.state is RequestState.FAILED and failed.state_reason == "step 2 failed"
    ramp_step = steps_of(services, req.id)[1]
    assert ramp_step.state is StepState.FAILED
    assert re.match(r"verify failed at stage 2 of 3 \(50% to us-west-2\) after [\d.]+m?s held: us-west-2 unhealthy "
                    r"\(SANDBOX: us-west-2 down \(injected fault\)\)\. The traffic stays split \(us-east-1=50%, "
                    r"us-west-2=50%\): Rollback moves all of it back to us-east-1\.$", ramp_step.error), ramp_step.error
    assert sim.weights("orders") == {"us-east-1": 50.0, "us-west-2": 50.0}

    (run,) = rows(services, Run, Run.request_id == req.id)
    progress = fake.message(CHANNEL, run.progress_ts)
    assert "✗ 2. Ramp traffic to the target: failed" in text_of(progress)
    assert "run_rollback" in {e["action_id"] for b in progress["blocks"] if b["type"] == "actions"
                              for e in b["elements"]}

    sim.clear("orders")
    click(sc, ALICE, "run_rollback", req.id, run.progress_ts)
    rb = wait_until("the rollback request", lambda: next(iter(rows(
        services, ChangeRequest, ChangeRequest.parent_id == req.id)), None))
    assert rb.kind is RequestKind.ROLLBACK
    rb = wait_until("the rollback posted", lambda: (q := request_row(services, rb.id)).message_ts and q)
    asked = text_of(fake.message(CHANNEL, rb.message_ts))
    assert "Undo: Ramp traffic to the target" in asked and "Undo: Switch the database over" in asked
    click(sc, CAROL, "cr_approve", rb.id, rb.message_ts)
    undone = final(services, rb.id)
    assert undone.state is RequestState.ROLLED_BACK, undone.state_reason
    assert request_row(services, req.id).state is RequestState.ROLLED_BACK
    assert sim.weights("orders") == {"us-east-1": 100.0, "us-west-2": 0.0}  # the target back at 0 %
    assert sim.active("orders") == "us-east-1" and sim.writer("orders") == "us-east-1"
    undo = steps_of(services, rb.id)
    assert [(s.name, s.state) for s in undo] == [("Undo: Ramp traffic to the target", StepState.SUCCEEDED),
                                                 ("Undo: Switch the database over", StepState.SUCCEEDED)]
