"""``wait`` runbook steps: a duration, or a condition (read from the service's own sources,
here the sandbox) that must hold without a break for ``hold``, within the step's timeout.
Time is driven by an injected clock and sleep; the stop event aborts a wait."""
from __future__ import annotations

import threading

import pytest

from bot.config import ConfigError, parse_config
from bot.steps import StepFailed, execute_step, wait
from tests.step_support import FakeTime, a_request, config_text, plan_text, services_for

STEPS = """
- name: Let caches warm
  action: wait
  timeout: 1m
  wait: {duration: 10ms}
- name: Standby healthy for a while
  action: wait
  timeout: 5m
  wait:
    until: {healthy: target, lag_below: 1m}
    hold: 1m
    interval: 10s
"""


@pytest.fixture
def sv(tmp_path):
    services = services_for("", STEPS, tmp_path)
    yield services
    services.engine.dispose()


def step(sv, i):
    return sv.config.service("orders").runbooks.failover[i]


def estate(sv):
    return sv.backends["sim"].estate


def test_a_duration_wait_waits_that_long(sv):
    out = execute_step(sv, a_request(), step(sv, 0), "us-west-2")
    assert out["summary"] == "waited 0s" and 0.01 <= out["waited_s"] < 5
    clock = FakeTime()
    w = step(sv, 0).wait.model_copy(update={"duration": step(sv, 0).wait.duration * 3000})  # 30 s
    out = wait(sv, sv.config.service("orders"), a_request(), w, 60, sleep=clock.sleep, clock=clock)
    assert clock.slept == [30.0] and out["waited_s"] == 30.0


def test_a_duration_longer_than_the_timeout_fails_at_once(sv):
    clock = FakeTime()
    w = step(sv, 0).wait.model_copy(update={"duration": step(sv, 0).wait.duration * 12000})  # 2 min
    with pytest.raises(StepFailed, match="longer than the step's timeout"):
        wait(sv, sv.config.service("orders"), a_request(), w, 60, sleep=clock.sleep, clock=clock)
    assert clock.slept == []


def test_until_must_hold_for_the_whole_hold_and_a_break_starts_it_again(sv):
    estate(sv).inject("orders", "region_down", "us-west-2")
    clock = FakeTime()
    events = {1020.0: lambda: estate(sv).clear("orders"),            # healthy from t+20s
              1050.0: lambda: estate(sv).inject("orders", "region_down", "us-west-2"),  # one bad read
              1060.0: lambda: estate(sv).clear("orders")}

    def sleep(seconds):
        clock.sleep(seconds)
        if clock.now in events:
            events.pop(clock.now)()

    out = wait(sv, sv.config.service("orders"), a_request(), step(sv, 1).wait, 300, sleep=sleep, clock=clock)
    assert out["waited_s"] == 120.0  # held from t+60s (after the break at t+50s) to t+120s
    assert out["summary"] == "us-west-2 healthy and lag below 1m held for 1m"
    assert sorted(out["verified"]) == ["healthy", "lag"]


def test_until_that_never_holds_fails_at_the_timeout_with_the_last_reading(sv):
    estate(sv).inject("orders", "region_down", "us-west-2")
    clock = FakeTime()
    with pytest.raises(StepFailed) as e:
        wait(sv, sv.config.service("orders"), a_request(), step(sv, 1).wait, 300, sleep=clock.sleep, clock=clock)
    assert "did not hold for 1m within 300s" in str(e.value) and "us-west-2 unhealthy" in str(e.value)
    assert e.value.output["waited_s"] == 300.0 and sum(clock.slept) == 300.0


def test_a_stopped_run_ends_the_wait(sv):
    estate(sv).inject("orders", "region_down", "us-west-2")
    stop = threading.Event()
    clock = FakeTime()

    def sleep(seconds):
        clock.sleep(seconds)
        stop.set()

    with pytest.raises(StepFailed, match="did not hold"):
        wait(sv, sv.config.service("orders"), a_request(), step(sv, 1).wait, 300, stop=stop, sleep=sleep,
             clock=clock)
    assert clock.slept == [10.0]


def test_the_plan_says_what_each_wait_waits_for(sv):
    text = plan_text(sv)
    assert "1. Let caches warm · wait, timeout 1m\n       would wait 0s" in text
    assert "would wait until us-west-2 healthy and lag below 1m for 1m, reading every 10s" in text


@pytest.mark.parametrize("spec, message", [
    ("{}", "a wait needs exactly one of duration"),
    ("{duration: 1m, until: {healthy: target}}", "a wait needs exactly one of duration"),
    ("{duration: 1m, hold: 1m}", "hold only applies with until"),
    ("{until: {}}", "a condition needs at least one of healthy"),
    ("{until: {healty: target}}", "unknown key (did you mean 'healthy'?)"),
])
def test_bad_waits_are_config_errors(spec, message):
    with pytest.raises(ConfigError) as e:
        parse_config(config_text("", f"- {{name: w, action: wait, wait: {spec}}}"), "drbot.yaml", {})
    assert message in str(e.value) and "services[0].runbooks.failover[0].wait" in str(e.value)
