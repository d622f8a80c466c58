"""``http`` runbook steps against a real local HTTP server (tests/fakes/flags_api.py):
config checks, success, an unexpected answer, retries with Retry-After and one
Idempotency-Key, the time budget, rollback and what ``/dr plan`` shows."""
from __future__ import annotations

import threading

import pytest

from bot.config import ConfigError, parse_config
from bot.steps import StepFailed, execute_step
from integrations.http_client import retry_after
from tests.fakes.flags_api import FakeFlags
from tests.step_support import FakeTime, a_request, config_text, plan_text, services_for

SOURCES = """
flags:
  kind: http
  base_url: ${FLAGS_URL}
  headers: {Authorization: "Bearer ${FLAGS_TOKEN}"}
  timeout: 2
"""
STEPS = """
- name: Read-only flag on
  action: http
  source: flags
  timeout: 10s
  http:
    method: PUT
    url: /flags/{service}-read-only
    body: {enabled: true, region: "{to_region}"}
    expect_status: [200]
    expect: data.state == "on"
    backoff: 10ms
  rollback:
    action: http
    http: {method: PUT, url: "/flags/{service}-read-only", body: {enabled: false}, expect: data.state == "off"}
- name: Smoke test
  action: http
  source: flags
  timeout: 5s
  http: {url: "/smoke/{service}", expect: 'checks[0].state == "passing"', retries: 0}
"""


@pytest.fixture
def fake():
    with FakeFlags() as f:
        yield f


@pytest.fixture
def sv(fake, tmp_path):
    services = services_for(SOURCES, STEPS, tmp_path, {"FLAGS_URL": fake.url, "FLAGS_TOKEN": "s3cret"})
    yield services
    services.engine.dispose()


def steps(sv):
    return sv.config.service("orders").runbooks.failover


def test_a_flag_call_fills_run_variables_sends_the_secret_and_records_the_answer(sv, fake):
    out = execute_step(sv, a_request(), steps(sv)[0], "us-west-2", position=0)
    assert fake.flags["orders-read-only"]["state"] == "on"
    [put] = fake.calls("PUT")
    assert put.json == {"enabled": True, "region": "us-west-2"}
    assert put.headers["authorization"] == "Bearer s3cret"
    assert put.headers["idempotency-key"] == "drbot-41-0-1"
    assert out["changed"] is True and out["details"]["status"] == 200
    assert 'data.state == "on": found "on"' == out["details"]["assertion"]
    assert out["summary"].startswith(f"PUT {fake.url}/flags/orders-read-only answered HTTP 200")


def test_a_failing_smoke_test_fails_the_step_with_what_it_found(sv, fake):
    fake.smoke_failing = True
    with pytest.raises(StepFailed) as e:
        execute_step(sv, a_request(), steps(sv)[1], "us-west-2")
    assert 'checks[0].state == "passing": found "failing"' in str(e.value)
    assert e.value.output["status"] == 200 and "failing" in e.value.output["body"]
    fake.smoke_failing, fake.smoke_status = False, 404
    with pytest.raises(StepFailed, match="answered HTTP 404, expected 200"):
        execute_step(sv, a_request(), steps(sv)[1], "us-west-2")


def test_5xx_and_429_are_tried_again_with_the_same_idempotency_key(sv, fake):
    fake.fail_next(503, times=1)
    fake.fail_next(429, times=1, retry_after="0")
    out = execute_step(sv, a_request(), steps(sv)[0], "us-west-2", position=0)
    assert out["details"]["tries"] == 3 and "after 3 tries" in out["summary"]
    keys = {r.headers["idempotency-key"] for r in fake.calls("PUT")}
    assert keys == {"drbot-41-0-1"} and len(fake.calls("PUT")) == 3


def test_retries_stop_at_the_step_budget_and_honour_retry_after(sv, fake):
    backend = sv.backends["flags"]
    clock = FakeTime()
    backend._clock, backend._sleep = clock, clock.sleep
    fake.fail_next(503, times=10, retry_after="4")
    with pytest.raises(StepFailed, match="HTTP 503 after 3 tries") as e:
        execute_step(sv, a_request(), steps(sv)[0], "us-west-2")  # 10s budget: 4s + 4s, not a third pause
    assert clock.slept == [4.0, 4.0]
    assert e.value.output["tries"] == 3 and e.value.output["error_kind"] == "transient"
    assert "orders-read-only" not in fake.flags


def test_a_stopped_run_ends_the_retries(sv, fake):
    stop = threading.Event()
    fake.fail_next(503, times=5, retry_after="2")
    waited = []
    stop.wait = lambda seconds: waited.append(seconds) or stop.set() or True  # the run stops during the pause
    with pytest.raises(StepFailed, match="stopped: the run was stopped after 1 tries"):
        execute_step(sv, a_request(), steps(sv)[0], "us-west-2", stop=stop)
    assert waited == [2.0] and len(fake.calls("PUT")) == 1


def test_retry_after_reads_seconds_and_dates():
    assert retry_after("3") == 3.0 and retry_after(None) is None and retry_after("soon") is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_rollback_turns_the_flag_off_through_the_same_source(sv, fake):
    step = steps(sv)[0]
    execute_step(sv, a_request(), step, "us-west-2", position=0)
    undo = step.rollback.as_step(step)
    assert undo.source == "flags" and undo.name == "Undo: Read-only flag on"
    out = execute_step(sv, a_request(), undo, "us-east-1")
    assert fake.flags["orders-read-only"]["state"] == "off" and out["details"]["status"] == 200


def test_the_plan_says_what_each_call_would_send_and_calls_nothing(sv, fake):
    text = plan_text(sv)
    assert f'would PUT {fake.url}/flags/orders-read-only expecting 200 and data.state == "on"' in text
    assert f"would GET {fake.url}/smoke/orders expecting 200" in text
    assert "rollback: http PUT /flags/{service}-read-only" in text
    assert not fake.calls("PUT") and not fake.calls("GET")


@pytest.mark.parametrize("step, message", [
    ("{name: x, action: http, source: flags, http: {url: /a, expekt: 1}}", "http.expekt: unknown key (did you mean 'expect'?)"),
    ("{name: x, action: http, source: flags, http: {url: '/a/{servce}'}}", "{servce} is not a run variable"),
    ("{name: x, action: http, source: flags, http: {url: /a, expect: 'a.b == RUN'}}", "'RUN' is not a JSON literal"),
    ("{name: x, action: http, source: flags}", "action http needs its options under http:"),
    ("{name: x, action: http, http: {url: /a}}", "http needs a source: name a source of kind http here"),
    ("{name: x, action: kubernetes.restart, source: flags, kubernetes: {name: a}}",
     "source 'flags' (kind http) cannot serve as a kubernetes source"),
    ("{name: x, action: traffic.shift, http: {url: /a}}", "http options do not apply to action traffic.shift"),
])
def test_bad_http_steps_are_config_errors_with_path_and_line(step, message):
    with pytest.raises(ConfigError) as e:
        parse_config(config_text(SOURCES, "- " + step), "drbot.yaml", {"FLAGS_URL": "http://x", "FLAGS_TOKEN": "t"})
    assert message in str(e.value)
    assert "drbot.yaml:" in str(e.value) and "services[0].runbooks.failover[0]" in str(e.value)


def test_check_config_asks_the_base_url_and_says_when_it_does_not_answer(sv, fake):
    result = sv.backends["flags"].check()
    assert result.ok and "answers HTTP 404" in result.message  # the fake has no root page: still an answer
    assert fake.calls("HEAD")[0].headers["authorization"] == "Bearer s3cret"
    fake.__exit__(None, None, None)  # the service goes away
    result = sv.backends["flags"].check()
    assert not result.ok and "does not answer" in result.message
