"""Staged traffic ramps (``traffic.shift`` with ``ramp:``) on the sandbox: the config's
rules, the stages and their holds driven by an injected clock, a verify that fails
mid-ramp (the traffic stays split, the step fails with the stage), the live progress in
the step's row, ``/dr plan`` with the live weights, and a whole run with its Rollback."""
from __future__ import annotations

import json
import re
import threading

import pytest
from sqlmodel import select

from bot import ramp
from bot.config import ConfigError, parse_config
from bot.render import Reply
from bot.request_view import context
from bot.steps import StepFailed, execute_step
from bot.store import read_scope
from bot.store.models import ChangeRequest, RequestState, Run, RunStep, StepState
from bot.wiring import build_services
from commands.router import click, dispatch
from integrations.base import IntegrationError
from tests.helpers import ALICE, BOB, CAROL, request_row, rows
from tests.step_support import FakeTime, a_request, config_text, plan_text, services_for

STEPS = """
- name: Ramp traffic to the target
  action: traffic.shift
  timeout: 5m
  ramp:
    stages: [5, {percent: 50, hold: 2m}, 100]
    hold: 1m
    interval: 20s
    verify: {healthy: target, lag_below: 1m}
  verify: {traffic_in: target, within: 5s, interval: 100ms}
"""


@pytest.fixture
def sv(tmp_path):
    services = services_for("", STEPS, tmp_path)
    yield services
    services.engine.dispose()


def the_step(sv):
    return sv.config.service("orders").runbooks.failover[0]


def estate(sv):
    return sv.backends["sim"].estate


# -- config -------------------------------------------------------------------------------

def test_a_ramp_loads_with_its_stages_and_a_default_rollback_of_all_the_traffic(sv):
    step = the_step(sv)
    assert [s.percent for s in step.ramp.stages] == [5, 50, 100]
    assert [step.ramp.hold_of(s).total_seconds() for s in step.ramp.stages] == [60, 120, 60]
    assert step.ramp.held.total_seconds() == 180  # the last stage is not held
    assert step.rollback is not None and step.rollback.action == "traffic.shift" and step.rollback.to is None


@pytest.mark.parametrize("ramp, where, message", [
    ("{stages: [5, 50, 40, 100]}", ".ramp", "stages must rise: 5, 50, 40, 100"),
    ("{stages: [5, 50]}", ".ramp", "the last stage must be 100 (all the traffic), not 50"),
    ("{stages: [0, 100]}", ".ramp.stages[0].percent", "0 is too small: it must be above 0"),
    ("{stages: [5, 100], verify: {traffic_in: target}}", ".ramp", "a ramp's verify cannot read traffic_in"),
    ("{stages: [5, 50, 100], hold: 6m}", "",
     "the ramp holds its stages for 12m in all, not less than the step's timeout (10m): raise timeout"),
])
def test_a_bad_ramp_is_refused_at_load_time_with_its_path(ramp, where, message):
    with pytest.raises(ConfigError) as e:
        parse_config(config_text("", f"- {{name: r, action: traffic.shift, ramp: {ramp}}}"), "drbot.yaml", {})
    assert message in str(e.value), str(e.value)
    assert f"services[0].runbooks.failover[0]{where}: " in str(e.value), str(e.value)


def test_a_ramp_on_another_action_is_refused():
    with pytest.raises(ConfigError) as e:
        parse_config(config_text("", "- {name: r, action: database.promote, ramp: {stages: [100]}}"),
                     "drbot.yaml", {})
    assert "ramp only applies to traffic.shift, not database.promote" in str(e.value)


# -- the ramp itself, time driven ------------------------------------------------------------

def test_each_stage_is_set_then_held_with_its_verify_read_and_the_last_is_not_held(sv):
    clock, seen = FakeTime(), []

    def sleep(seconds):
        seen.append((clock.now - 1000.0, estate(sv).weights("orders")["us-west-2"]))
        clock.sleep(seconds)

    result = ramp.run(sv, sv.config.service("orders"), a_request(), the_step(sv), "us-west-2", sleep=sleep,
                      clock=clock)
    assert clock.slept == [20.0, 20.0, 20.0, 20.0, 20.0, 20.0, 20.0, 20.0, 20.0]  # 1m at 5 %, then 2m at 50 %
    assert seen[0] == (0.0, 5.0) and seen[2] == (40.0, 5.0) and seen[3] == (60.0, 50.0) and seen[-1][1] == 50.0
    assert estate(sv).weights("orders") == {"us-east-1": 0.0, "us-west-2": 100.0}
    assert estate(sv).active("orders") == "us-west-2"
    assert result.changed and result.details["before"] == {"us-east-1": 100.0, "us-west-2": 0.0}
    assert [s["percent"] for s in result.details["stages"]] == [5, 50, 100]
    assert result.summary == ("ramped traffic to us-west-2: 5% (held 1m) → 50% (held 2m) → 100%; "
                              "now us-east-1=0%, us-west-2=100%")


def test_a_verify_that_fails_mid_ramp_stops_it_with_the_traffic_split_and_says_where(sv):
    clock, notes = FakeTime(), {}

    def sleep(seconds):
        clock.sleep(seconds)
        if estate(sv).weights("orders")["us-west-2"] == 50 and clock.now >= 1100:
            estate(sv).inject("orders", "region_down", "us-west-2")  # 40 s into the 50 % stage

    with pytest.raises(IntegrationError) as e:
        ramp.run(sv, sv.config.service("orders"), a_request(), the_step(sv), "us-west-2", notes=notes,
                 sleep=sleep, clock=clock)
    assert str(e.value) == (
        "verify failed at stage 2 of 3 (50% to us-west-2) after 40s held: us-west-2 unhealthy "
        "(SANDBOX: us-west-2 down (injected fault)). The traffic stays split (us-east-1=50%, us-west-2=50%): "
        "Rollback moves all of it back to us-east-1.")
    assert estate(sv).weights("orders") == {"us-east-1": 50.0, "us-west-2": 50.0}
    assert notes["verify_failing"] == {"healthy": "us-west-2 unhealthy (SANDBOX: us-west-2 down (injected fault))"}
    assert [s["percent"] for s in notes["ramp"]["stages"]] == [5, 50]


def test_a_resumed_ramp_skips_the_stages_already_reached(sv):
    estate(sv).set_weights("orders", {"us-east-1": 50.0, "us-west-2": 50.0})
    clock = FakeTime()
    result = ramp.run(sv, sv.config.service("orders"), a_request(), the_step(sv), "us-west-2", sleep=clock.sleep,
                      clock=clock)
    assert [(s["percent"], s.get("skipped", False)) for s in result.details["stages"]] == [
        (5, True), (50, False), (100, False)]
    assert sum(clock.slept) == 120.0  # only the 50 % stage's hold (already at 50 %: set again, held)
    assert "5% (already) → 50% (held 2m) → 100%" in result.summary


R53 = """
r53:
  kind: route53_failover
  hosted_zone_id: Z1
  record_name: api.example.com
  records: {us-east-1: east, us-west-2: west}
"""
CF = """
cf:
  kind: cloudflare_lb
  api_token: t0ken
  account_id: acc
  zone_id: zone
  load_balancer_id: lb
  pools: {us-east-1: pool-east, us-west-2: pool-west}
"""
ARC = """
arc:
  kind: route53_arc
  cluster_endpoints: [{endpoint: "https://host-aaaaaa.us-east-1.example.com/v1", region: us-east-1}]
  routing_controls:
    us-east-1: arn:aws:route53-recovery-control::111122223333:controlpanel/p/routingcontrol/east
    us-west-2: arn:aws:route53-recovery-control::111122223333:controlpanel/p/routingcontrol/west
"""


@pytest.mark.parametrize("sources, source, message", [
    (R53, "r53", "source 'r53' (kind route53_failover) has policy: failover, which moves traffic all at once; "
                 "a ramp needs policy: weighted on it"),
    (CF, "cf", "source 'cf' (kind cloudflare_lb) has mode: default_pools, which moves traffic all at once; "
               "a ramp needs mode: weights on it"),
    (ARC, "arc", "source 'arc' (kind route53_arc) cannot serve as a weights source: a ramp needs a source that "
                 "splits traffic by weight (route53_failover with policy: weighted"),
])
def test_a_ramp_on_a_source_that_cannot_split_traffic_is_a_config_error_with_its_line(sources, source, message):
    steps = STEPS.replace("action: traffic.shift", f"action: traffic.shift\n  source: {source}")
    text = config_text(sources, steps)
    with pytest.raises(ConfigError) as e:
        parse_config(text, "drbot.yaml", {})
    ramp_line = next(n for n, line in enumerate(text.splitlines(), 1) if line.strip() == "ramp:")
    assert f"drbot.yaml:{ramp_line}: services[0].runbooks.failover[0].ramp: {message}" in str(e.value), str(e.value)
    assert len(e.value.problems) == 1


def test_a_ramp_through_the_services_own_traffic_source_is_checked_too():
    text = config_text(CF, STEPS).replace("traffic: {source: sim}", "traffic: {source: cf}")
    with pytest.raises(ConfigError, match=r"failover\[0\]\.ramp: source 'cf' \(kind cloudflare_lb\) has mode: "
                                          r"default_pools"):
        parse_config(text, "drbot.yaml", {})
    weighted = CF.replace("pools: {", "mode: weights\n  pools: {") + R53.replace("records:", "policy: weighted\n  records:")
    loaded = parse_config(config_text(weighted, STEPS).replace("traffic: {source: sim}", "traffic: {source: cf}"),
                          "drbot.yaml", {})
    assert loaded.config.service("orders").runbooks.failover[0].ramp is not None
    loaded = parse_config(config_text(weighted, STEPS.replace("action: traffic.shift", "action: traffic.shift\n  source: r53")),
                          "drbot.yaml", {})
    assert loaded.options["r53"].policy == "weighted"


def test_plan_shows_the_stages_their_holds_the_verify_and_the_live_weights(sv):
    estate(sv).set_weights("orders", {"us-east-1": 95.0, "us-west-2": 5.0})
    text = plan_text(sv)
    assert ("would ramp traffic to us-west-2: 5% (hold 1m) → 50% (hold 2m) → 100%, reading us-west-2 healthy "
            "and lag below 1m every 20s through each hold; weights now us-east-1=95%, us-west-2=5%") in text
    assert "rollback: traffic.shift to source" in text
    blocks, _ = sv.renderer.blocks(dispatch(sv, ALICE, "plan orders"))  # the Slack form: valid Block Kit
    assert "5% (hold 1m) → 50% (hold 2m) → 100%" in json.dumps(blocks, ensure_ascii=False)


# -- a whole run: live progress, failure, rollback -----------------------------------------

FAST = """
- name: Ramp traffic to the target
  action: traffic.shift
  timeout: 1m
  ramp:
    stages: [5, 50, 100]
    hold: 400ms
    interval: 50ms
    verify: {healthy: target}
  verify: {traffic_in: target, within: 5s, interval: 50ms}
"""


def watch_progress(services, request_id: int, stop: threading.Event, seen: list[str]) -> threading.Thread:
    """Renders the run's progress message as the outbox would, while the run goes on."""
    def loop():
        while not stop.wait(0.01):
            with read_scope(services.engine) as s:
                req = s.get(ChangeRequest, request_id)
                if req is None or s.exec(select(Run).where(Run.request_id == request_id)).first() is None:
                    continue
                text = services.renderer.text(Reply("run_progress", context(services, s, req), ephemeral=False))
            if not seen or seen[-1] != text:
                seen.append(text)
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def test_a_run_shows_the_ramp_live_in_its_progress_message(tmp_path):
    sv = build_services(parse_config(config_text("", FAST), "ramp.yaml", {}), db_url=f"sqlite:///{tmp_path}/r.db",
                        inline_runs=True)
    try:
        west = estate(sv)
        dispatch(sv, ALICE, "failover orders east degraded")
        (req,) = rows(sv, ChangeRequest)
        stop, seen = threading.Event(), []
        thread = watch_progress(sv, req.id, stop, seen)
        click(sv, BOB, "cr_approve", str(req.id))  # inline: returns when the run ends
        stop.set()
        thread.join(5)
        assert request_row(sv, req.id).state is RequestState.SUCCEEDED
        assert west.weights("orders") == {"us-east-1": 0.0, "us-west-2": 100.0}
        live = "\n".join(seen)
        assert "▶ 1. Ramp traffic to the target: running: stage 1 of 3: 5% to us-west-2 (us-east-1=95%, " \
               "us-west-2=5%), held 0s of 0.4s" in live
        assert "stage 2 of 3: 50% to us-west-2 (us-east-1=50%, us-west-2=50%), held 0.4s of 0.4s" in live
        assert "of 0.4s" in live and not re.search(r"held 0\.[5-9]s of 0\.4s", live)  # never past the hold
        (run,) = rows(sv, Run, Run.request_id == req.id)
        (step,) = rows(sv, RunStep, RunStep.run_id == run.id)
        out = json.loads(step.output)
        assert re.fullmatch(r"ramped traffic to us-west-2: 5% \(held 0\.\ds\) → 50% \(held 0\.\ds\) → 100%; "
                            r"now us-east-1=0%, us-west-2=100%", out["summary"]), out["summary"]
        assert out["verify"]["verified"] == ["traffic"]
        assert sv.status.regions()["orders"][0] == "us-west-2"
    finally:
        sv.engine.dispose()


def test_a_failed_ramp_offers_rollback_which_returns_all_the_traffic(tmp_path):
    sv = build_services(parse_config(config_text("", FAST.replace("400ms", "3s")), "ramp.yaml", {}),
                        db_url=f"sqlite:///{tmp_path}/r.db", inline_runs=True)
    try:
        west = estate(sv)
        stop = threading.Event()

        def fault_at_50():
            while not stop.wait(0.005):
                if west.weights("orders").get("us-west-2") == 50.0:
                    west.inject("orders", "region_down", "us-west-2")
                    return
        threading.Thread(target=fault_at_50, daemon=True).start()
        dispatch(sv, ALICE, "failover orders east degraded")
        (req,) = rows(sv, ChangeRequest)
        click(sv, BOB, "cr_approve", str(req.id))
        stop.set()
        done = request_row(sv, req.id)
        assert done.state is RequestState.FAILED and done.state_reason == "step 1 failed"
        (run,) = rows(sv, Run, Run.request_id == req.id)
        (step,) = rows(sv, RunStep, RunStep.run_id == run.id)
        assert step.state is StepState.FAILED
        assert re.match(r"verify failed at stage 2 of 3 \(50% to us-west-2\) after [\d.]+m?s held: us-west-2 "
                        r"unhealthy \(SANDBOX: us-west-2 down \(injected fault\)\)\. The traffic stays split "
                        r"\(us-east-1=50%, us-west-2=50%\): Rollback moves all of it back to us-east-1\.$", step.error), \
            step.error
        assert json.loads(step.output)["ramp"]["weights"] == {"us-east-1": 50.0, "us-west-2": 50.0}
        assert west.weights("orders") == {"us-east-1": 50.0, "us-west-2": 50.0}

        west.clear("orders")
        click(sv, ALICE, "run_rollback", str(req.id))
        rb = rows(sv, ChangeRequest, ChangeRequest.parent_id == req.id)[0]
        click(sv, CAROL, "cr_approve", str(rb.id))
        assert request_row(sv, rb.id).state is RequestState.ROLLED_BACK
        assert west.weights("orders") == {"us-east-1": 100.0, "us-west-2": 0.0}
        assert west.active("orders") == "us-east-1"
    finally:
        sv.engine.dispose()


def test_execute_step_fails_the_step_with_the_ramps_notes(sv):
    estate(sv).inject("orders", "region_down", "us-west-2")
    quick = the_step(sv).ramp.model_copy(update={"hold": the_step(sv).ramp.hold * 0, "stages": [
        st.model_copy(update={"hold": None}) for st in the_step(sv).ramp.stages]})
    step = the_step(sv).model_copy(update={"ramp": quick})
    with pytest.raises(StepFailed) as e:
        execute_step(sv, a_request(), step, "us-west-2")
    assert e.value.output["error_kind"] == "permanent"
    assert e.value.output["ramp"]["weights"] == {"us-east-1": 95.0, "us-west-2": 5.0}
    assert "verify failed at stage 1 of 3 (5% to us-west-2)" in str(e.value)


def test_a_shutdown_stops_the_ramp_during_a_hold_as_transient(sv):
    clock, stop = FakeTime(), threading.Event()

    def sleep(seconds):
        clock.sleep(seconds)
        stop.set()  # drbot is stopping past its grace period

    with pytest.raises(IntegrationError) as e:
        ramp.run(sv, sv.config.service("orders"), a_request(), the_step(sv), "us-west-2", stop=stop, sleep=sleep,
                 clock=clock)
    assert e.value.transient
    assert str(e.value) == ("stopped at stage 1 of 3 (5% to us-west-2): drbot is stopping. The traffic stays split "
                            "(us-east-1=95%, us-west-2=5%): Rollback moves all of it back to us-east-1.")
    assert clock.slept == [20.0]


def test_status_of_a_sandbox_service_left_mid_ramp_shows_the_split(sv):
    estate(sv).set_weights("orders", {"us-east-1": 30.0, "us-west-2": 70.0})
    text = sv.renderer.text(dispatch(sv, ALICE, "status orders"))
    assert "live: traffic split us-east-1 30% / us-west-2 70% (sim)" in text, text
    assert "traffic is split: us-east-1 30%, us-west-2 70% (sim); records say us-east-1: a staged ramp" in text
    assert "drift" not in text  # the largest share is not taken for the active region
    estate(sv).set_weights("orders", {"us-east-1": 100.0, "us-west-2": 0.0})
    sv.status.live.clear()
    assert "live: traffic → us-east-1 (" in sv.renderer.text(dispatch(sv, ALICE, "status orders"))
    (a,) = sv.status.report("orders", fresh=True).assessments
    assert [f.code for f in a.findings if f.code.startswith("traffic")] == ["traffic_ok"]
