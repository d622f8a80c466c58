"""Cloudflare load balancer traffic switch and pool health, against a local fake of the v4
API over real HTTP (tests/fakes/cloudflare_api.py): envelopes, errors, 429 with Retry-After."""
from __future__ import annotations

import json
import socket

import pydantic
import pytest

from bot.config import parse_config
from bot.store.models import Approval, ChangeRequest, RequestState, Run, RunStep, StepState
from bot.wiring import build_services
from integrations.base import HEALTH, TRAFFIC, WEIGHTS, ErrorKind, IntegrationError, Target
from integrations.cloudflare_lb import CloudflareLb
from tests.app_server import running_app
from tests.estates import estate
from tests.fakes.cloudflare_api import FakeCloudflare
from tests.helpers import request_row, rows, wait_until
from tests.test_approval_http import (
    ALICE, BOB, CAROL, CHANNEL, ask, click, response, shutdown, texts, wait_final,
)

TARGET = Target(service="web")
POOLS = {"us-east-1": "pool-east", "us-west-2": "pool-west"}


@pytest.fixture
def cf():
    with FakeCloudflare() as fake:
        fake.add_pool("pool-east", "web-east")
        fake.add_pool("pool-west", "web-west")
        fake.add_pool("pool-static", "web-static")
        fake.add_load_balancer("lb1", "www.example.com", ["pool-east", "pool-static", "pool-west"], "pool-east")
        yield fake


def make(url: str, **extra) -> tuple[CloudflareLb, list[float]]:
    options = CloudflareLb.Options.model_validate(
        {"api_token": "cf-test-token", "account_id": "acc123", "zone_id": "zone123", "load_balancer_id": "lb1",
         "pools": POOLS, "base_url": url + "/client/v4", "timeout": 2, **extra})
    backend = CloudflareLb("web-lb", options)
    slept: list[float] = []
    backend._sleep = slept.append
    return backend, slept


def test_options_and_capabilities():
    assert CloudflareLb.capabilities == frozenset({TRAFFIC, HEALTH, WEIGHTS})
    base = {"api_token": "t", "account_id": "a", "zone_id": "z", "load_balancer_id": "l"}
    for bad in ({"pools": {"us-east-1": "p"}}, {"pools": {"a": "p", "b": "p"}},
                {"pools": POOLS, "mode": "random"}, {"pools": POOLS, "base_url": "ftp://x"},
                {"pools": POOLS, "region_pools": {}}):
        with pytest.raises(pydantic.ValidationError):
            CloudflareLb.Options.model_validate({**base, **bad})
    assert "cf-test" not in repr(CloudflareLb.Options.model_validate({**base, "pools": POOLS, "api_token": "cf-test"}))


def test_default_pools_shift_puts_the_target_first_and_makes_it_the_fallback(cf):
    lb, slept = make(cf.url)
    assert lb.active_region(TARGET) == "us-east-1"
    result = lb.shift(TARGET, "us-west-2")
    assert lb.active_region(TARGET) == "us-west-2"
    (patch,) = cf.writes()
    assert patch.method == "PATCH" and patch.path == "/client/v4/zones/zone123/load_balancers/lb1"
    assert patch.json == {"default_pools": ["pool-west", "pool-east", "pool-static"], "fallback_pool": "pool-west"}
    assert patch.headers["authorization"] == "Bearer cf-test-token"
    assert cf.lb("lb1")["fallback_pool"] == "pool-west"
    assert result.changed is True
    assert result.summary == ("put us-west-2's pool first in default_pools and the fallback of load balancer "
                              "www.example.com (was first us-east-1, fallback us-east-1)")
    json.dumps(result.details)
    assert slept == []


def test_dry_run_and_already_there_change_nothing(cf):
    lb, _ = make(cf.url)
    plan = lb.shift(TARGET, "us-west-2", dry_run=True)
    already = lb.shift(TARGET, "us-east-1")
    assert cf.writes() == []
    assert plan.dry_run is True and plan.changed is False
    assert plan.summary == ("would put us-west-2's pool first in default_pools and the fallback of load balancer "
                            "www.example.com (now first us-east-1, fallback us-east-1)")
    assert already.changed is False and already.summary.startswith("already: us-east-1's pool first")


def test_enable_disable_enables_the_target_before_disabling_the_others(cf):
    cf.pools["pool-west"]["enabled"] = False
    lb, _ = make(cf.url, mode="enable_disable")
    assert lb.active_region(TARGET) == "us-east-1"
    plan = lb.shift(TARGET, "us-west-2", dry_run=True)
    assert cf.writes() == []
    assert plan.summary == ("would leave the pool of us-west-2 enabled, pools of us-east-1 disabled "
                            "(now us-east-1=True, us-west-2=False)")
    result = lb.shift(TARGET, "us-west-2")
    assert [(r.path.rsplit("/", 1)[1], r.json) for r in cf.writes()] == [
        ("pool-west", {"enabled": True}), ("pool-east", {"enabled": False})]
    assert lb.active_region(TARGET) == "us-west-2" and result.changed is True
    cf.pools["pool-east"]["enabled"] = True
    with pytest.raises(IntegrationError) as split:
        lb.active_region(TARGET)
    assert split.value.kind is ErrorKind.PERMANENT and "traffic is split" in str(split.value)
    cf.load_balancers["lb1"]["default_pools"] = ["pool-west"]
    cf.load_balancers["lb1"]["fallback_pool"] = "pool-west"
    with pytest.raises(IntegrationError) as unused:
        lb.shift(TARGET, "us-east-1")
    assert unused.value.kind is ErrorKind.PERMANENT and "would send no traffic there" in str(unused.value)


def test_429_waits_retry_after_and_5xx_backs_off(cf):
    lb, slept = make(cf.url)
    cf.fail_next(429, retry_after="2")
    cf.fail_next(503)
    assert lb.active_region(TARGET) == "us-east-1"
    assert slept == [2.0, 1.0]  # Retry-After, then the backoff's second step
    cf.fail_next(502, times=4)
    with pytest.raises(IntegrationError) as err:
        lb.active_region(TARGET)
    assert err.value.kind is ErrorKind.TRANSIENT
    assert "HTTP 502: code 10500: injected failure; try again shortly" in str(err.value)


def test_a_retry_after_beyond_the_limit_fails_at_once(cf):
    lb, slept = make(cf.url, max_retry_after=10)
    cf.fail_next(429, retry_after="120")
    with pytest.raises(IntegrationError) as err:
        lb.shift(TARGET, "us-west-2")
    assert err.value.kind is ErrorKind.TRANSIENT and "Retry-After 120" in str(err.value)
    assert slept == [] and cf.writes() == []


def test_error_envelopes_are_reported_with_their_codes(cf):
    lb, _ = make(cf.url, api_token="wrong")
    with pytest.raises(IntegrationError) as denied:
        lb.active_region(TARGET)
    assert denied.value.kind is ErrorKind.NOT_PERMITTED
    assert "code 10000: Authentication error" in str(denied.value) and "Load Balancers Edit" in str(denied.value)
    gone, _ = make(cf.url, load_balancer_id="nope")
    with pytest.raises(IntegrationError) as missing:
        gone.active_region(TARGET)
    assert missing.value.kind is ErrorKind.PERMANENT and "code 1003: load balancer not found" in str(missing.value)
    bad, _ = make(cf.url, pools={"us-east-1": "pool-east", "us-west-2": "pool-typo"})
    with pytest.raises(IntegrationError) as rejected:
        bad.shift(TARGET, "us-west-2")
    assert rejected.value.kind is ErrorKind.PERMANENT
    assert "rejected PATCH" in str(rejected.value) and "code 1002: pool pool-typo not found" in str(rejected.value)
    with pytest.raises(IntegrationError) as unknown:
        lb.shift(TARGET, "eu-west-1")
    assert "eu-west-1 has no pool configured" in str(unknown.value)


def test_a_server_that_never_answers_is_transient():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        lb, slept = make(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.2, retries=1)
        with pytest.raises(IntegrationError) as err:
            lb.active_region(TARGET)
    finally:
        silent.close()
    assert err.value.kind is ErrorKind.TRANSIENT and "no answer within 0.2s" in str(err.value)
    assert slept == [0.5]


def test_steering_that_spreads_traffic_has_no_active_region(cf):
    cf.load_balancers["lb1"]["steering_policy"] = "random"
    lb, _ = make(cf.url)
    with pytest.raises(IntegrationError) as err:
        lb.active_region(TARGET)
    assert err.value.kind is ErrorKind.PERMANENT and "steers with 'random'" in str(err.value)


def test_pool_health_is_the_majority_of_data_centres(cf):
    lb, _ = make(cf.url)
    cf.pop_health["pool-west"] = {"Ashburn, VA, US": False, "Frankfurt, DE": False, "Singapore, SG": True}
    east = lb.check_health(Target("web", "us-east-1"))
    west = lb.check_health(Target("web", "us-west-2"))
    assert east.healthy is True and east.detail == "pool pool-east healthy from 3/3 data centres"
    assert west.healthy is False
    assert west.detail == ("pool pool-west healthy from 1/3 data centres "
                           "(unhealthy: Ashburn, VA, US, Frankfurt, DE)")
    assert cf.calls("GET", "/client/v4/accounts/acc123/load_balancers/pools/pool-west/health")
    with pytest.raises(IntegrationError) as no_region:
        lb.check_health(Target("web"))
    assert no_region.value.kind is ErrorKind.PERMANENT


def test_check_proves_token_and_ids_and_never_raises(cf):
    ok = make(cf.url)[0].check()
    assert ok.ok and ok.message == ("web-lb: load balancer www.example.com and its pools exist (enabled: "
                                    "us-east-1=True, us-west-2=True); us-east-1 is active.")
    bad = make(cf.url, account_id="other")[0].check()
    assert not bad.ok and "code 1002: pool not found" in bad.message


# -- through the app: /dr plan, then a failover approved by two people ---------------------

SCENARIO = estate("""
web-lb:
  kind: cloudflare_lb
  api_token: ${CLOUDFLARE_API_TOKEN}
  account_id: acc123
  zone_id: zone123
  load_balancer_id: lb1
  pools: {us-east-1: pool-east, us-west-2: pool-west}
  base_url: ${CF_URL}
  poll_interval: 0.05
""", """
- name: Move the load balancer to the standby
  action: traffic.shift
  timeout: 20s
  verify: {traffic_in: target, healthy: target, within: 5s, interval: 100ms}
  rollback: {action: traffic.shift, to: source}
- name: Check the replication caught up
  action: check
  timeout: 5s
  verify: {lag_below: LAG_BELOW, within: 300ms, interval: 100ms}
""", service="web", traffic="web-lb", database=None, health="web-lb", approvers=("UBOB", "UCAROL"), required=2,
    tier="high")


@pytest.fixture
def lag_below() -> str:
    return "1m"


@pytest.fixture
def web_estate(cf, fake_slack, tmp_path, lag_below):
    loaded = parse_config(SCENARIO.replace("LAG_BELOW", lag_below), "cloudflare.yaml",
                          {"CLOUDFLARE_API_TOKEN": "cf-test-token", "CF_URL": cf.url + "/client/v4"})
    services = build_services(loaded, db_url=f"sqlite:///{tmp_path}/drbot.db")
    try:
        with running_app(services, fake_slack) as app:
            yield {"services": services, "app": app, "fake": fake_slack, "cf": cf}
    finally:
        shutdown(services)


def test_failover_approved_by_two_people_moves_the_cloudflare_load_balancer(web_estate):
    services, fake, cf = web_estate["services"], web_estate["fake"], web_estate["cf"]
    r = web_estate["app"].sender.slash_command("plan web", user_id=ALICE, user_name="alice", channel_id=CHANNEL,
                                               response_url=fake.response_url("plan"))
    assert r.status_code == 200
    plan = texts(response(fake, "plan").blocks)
    assert ("would put us-west-2's pool first in default_pools and the fallback of load balancer "
            "www.example.com (now first us-east-1, fallback us-east-1)") in plan
    assert cf.writes() == []

    req, _ = ask(web_estate, "failover web origin 5xx in us-east-1")
    click(web_estate, BOB, req, "bob")
    wait_until("Bob's approval recorded", lambda: rows(services, Approval, Approval.request_id == req.id))
    assert request_row(services, req.id).state is RequestState.PENDING  # one of two approvals
    assert cf.writes() == []
    click(web_estate, CAROL, req, "carol")
    done = wait_final(services, req.id)
    assert done.state is RequestState.SUCCEEDED, done.state_reason

    assert cf.lb("lb1")["default_pools"][0] == "pool-west" and cf.lb("lb1")["fallback_pool"] == "pool-west"
    (patch,) = cf.writes()
    assert patch.json == {"default_pools": ["pool-west", "pool-east", "pool-static"], "fallback_pool": "pool-west"}
    (run,) = rows(services, Run, Run.request_id == req.id)
    step, _ = rows(services, RunStep, RunStep.run_id == run.id, order=RunStep.position)
    assert step.state is StepState.SUCCEEDED
    output = json.loads(step.output)
    assert output["verify"] == {"verified": ["healthy", "traffic"]}
    assert output["summary"].startswith("put us-west-2's pool first in default_pools")
    assert cf.calls("GET", "/client/v4/accounts/acc123/load_balancers/pools/pool-west/health")
    assert request_row(services, req.id).state is RequestState.SUCCEEDED



@pytest.mark.parametrize("lag_below", ["1s"])  # the sandbox's lag is 5 s: the check step fails
def test_a_failed_run_is_rolled_back_to_the_first_pool_after_two_approvals(web_estate):
    services, fake, cf = web_estate["services"], web_estate["fake"], web_estate["cf"]
    req, _ = ask(web_estate, "failover web origin 5xx in us-east-1")
    click(web_estate, BOB, req, "bob")
    click(web_estate, CAROL, req, "carol")
    failed = wait_final(services, req.id)
    assert failed.state is RequestState.FAILED
    assert cf.lb("lb1")["default_pools"][0] == "pool-west"  # the shift happened, then the check failed

    click(web_estate, ALICE, req, "rollback", action="run_rollback")
    rollback = wait_until("the rollback request posted", lambda: next(
        (r for r in rows(services, ChangeRequest, ChangeRequest.parent_id == req.id) if r.message_ts), None))
    assert rollback.state is RequestState.PENDING and rollback.required_approvals == 2
    assert len(cf.writes()) == 1
    click(web_estate, BOB, rollback, "bob2")
    click(web_estate, CAROL, rollback, "carol2")
    done = wait_final(services, rollback.id)
    assert done.state is RequestState.ROLLED_BACK, done.state_reason
    assert request_row(services, req.id).state is RequestState.ROLLED_BACK
    lb = cf.lb("lb1")
    assert lb["default_pools"] == ["pool-east", "pool-west", "pool-static"] and lb["fallback_pool"] == "pool-east"
    (undo,) = rows(services, RunStep, RunStep.run_id == rows(services, Run, Run.request_id == rollback.id)[0].id)
    assert undo.name == "Undo: Move the load balancer to the standby" and undo.state is StepState.SUCCEEDED
