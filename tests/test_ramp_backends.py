"""The weights a staged ramp moves, per backend: Route 53 weighted records on moto's server,
Global Accelerator traffic dials with botocore's Stubber (every parameter checked against
the AWS model), Cloudflare pool weights (random steering) against the local fake of the v4
API. Each also runs a whole ramp (bot.ramp) through drbot's services, time driven."""
from __future__ import annotations

import json

import pytest
from botocore.stub import Stubber

from bot import ramp
from bot.config import parse_config
from bot.readiness import Assessment, Finding, Verdict
from bot.status import with_split
from bot.wiring import build_services
from integrations.base import ErrorKind, IntegrationError, Target
from commands.router import dispatch
from tests.estates import estate
from tests.helpers import ALICE
from tests.fakes.cloudflare_api import FakeCloudflare
from tests.moto_fixture import moto_endpoint  # noqa: F401
from tests.step_support import FakeTime, a_request
from tests.test_integration_cloudflare_lb import POOLS, make as make_cf
from tests.test_integration_global_accelerator import EAST, GROUPS, WEST, dials, group, make as make_ga
from tests.test_integration_route53_failover import NAME, backend as r53_backend, r53, records, weighted_zone  # noqa: F401

TARGET = Target(service="orders")
RAMP = """
- name: Ramp traffic
  action: traffic.shift
  timeout: 5m
  ramp: {stages: [5, 50, 100], hold: 1m, interval: 30s, verify: {healthy: target}}
"""


def services_with(tmp_path, sources: str, clients: dict | None = None, env: dict | None = None):
    text = estate(sources, RAMP, traffic="edge")
    return build_services(parse_config(text, "ramp.yaml", env or {}), db_url=f"sqlite:///{tmp_path}/d.db",
                          clients=clients)


def run_ramp(services):
    clock = FakeTime()
    step = services.config.service("orders").runbooks.failover[0]
    result = ramp.run(services, services.config.service("orders"), a_request(), step, "us-west-2",
                      sleep=clock.sleep, clock=clock)
    return result, clock


# -- Route 53 weighted records (moto) ----------------------------------------------------------

def test_route53_weights_are_each_records_share_and_set_in_one_batch(r53, moto_endpoint):  # noqa: F811
    zone = weighted_zone(r53, east=100, west=0)
    switch = r53_backend(zone, moto_endpoint, policy="weighted", record_type="CNAME")
    assert switch.weights(TARGET) == {"us-east-1": 100.0, "us-west-2": 0.0}

    plan = switch.set_weights(TARGET, {"us-east-1": 95, "us-west-2": 5}, dry_run=True)
    assert plan.dry_run and not plan.changed
    assert plan.summary == ("would set weights of api.example.com. CNAME us-east-1=95%, us-west-2=5% "
                            "(now us-east-1=100%, us-west-2=0%)")
    assert records(r53, zone)["orders-west"]["Weight"] == 0

    done = switch.set_weights(TARGET, {"us-east-1": 95, "us-west-2": 5})
    assert done.changed and len(done.details["change_batch"]["Changes"]) == 2
    after = records(r53, zone)
    assert (after["orders-east"]["Weight"], after["orders-west"]["Weight"]) == (95, 5)
    assert after["orders-west"]["ResourceRecords"] == [{"Value": "orders-west.lb.example.net"}]  # the rest kept
    assert after["orders-west"]["TTL"] == 60 and after["orders-west"]["Name"] == NAME
    assert switch.weights(TARGET) == {"us-east-1": 95.0, "us-west-2": 5.0}
    assert switch.set_weights(TARGET, {"us-east-1": 95, "us-west-2": 5}).changed is False
    assert switch.active_region(TARGET) == "us-east-1"  # the single highest weight

    with pytest.raises(IntegrationError, match="must name regions of .* and sum to 100") as err:
        switch.set_weights(TARGET, {"us-east-1": 50, "us-west-2": 5})
    assert err.value.kind is ErrorKind.PERMANENT


def test_route53_failover_records_cannot_ramp(r53, moto_endpoint):  # noqa: F811
    zone = weighted_zone(r53, east=100, west=0)
    switch = r53_backend(zone, moto_endpoint, policy="failover", record_type="CNAME")
    with pytest.raises(IntegrationError, match="a staged ramp needs weighted records"):
        switch.weights(TARGET)


def test_a_ramp_over_route53_weighted_records(r53, moto_endpoint, tmp_path):  # noqa: F811
    zone = weighted_zone(r53, east=100, west=0)
    sources = f"""
edge:
  kind: route53_failover
  endpoint_url: {moto_endpoint}
  hosted_zone_id: {zone}
  record_name: api.example.com
  record_type: CNAME
  policy: weighted
  records: {{us-east-1: orders-east, us-west-2: orders-west}}
  poll_interval: 0.05
"""
    services = services_with(tmp_path, sources)
    try:
        seen = []
        clock = FakeTime()

        def sleep(seconds):
            got = records(r53, zone)
            seen.append((got["orders-east"]["Weight"], got["orders-west"]["Weight"]))
            clock.sleep(seconds)

        step = services.config.service("orders").runbooks.failover[0]
        result = ramp.run(services, services.config.service("orders"), a_request(), step, "us-west-2",
                          sleep=sleep, clock=clock)
        assert seen == [(95, 5), (95, 5), (50, 50), (50, 50)]  # read at 0s and 30s of each 1m hold
        got = records(r53, zone)
        assert (got["orders-east"]["Weight"], got["orders-west"]["Weight"]) == (0, 100)
        assert result.details["after"] == {"us-east-1": 0.0, "us-west-2": 100.0}
        assert services.backends["edge"].active_region(TARGET) == "us-west-2"
        # the default rollback: all the traffic back in one move
        services.backends["edge"].shift(TARGET, "us-east-1")
        got = records(r53, zone)
        assert (got["orders-east"]["Weight"], got["orders-west"]["Weight"]) == (100, 0)
    finally:
        services.engine.dispose()


# -- Global Accelerator traffic dials (Stubber) ---------------------------------------------

def update(stubber: Stubber, arn: str, dial: float) -> None:
    stubber.add_response("update_endpoint_group", group(arn, dial),
                         {"EndpointGroupArn": arn, "TrafficDialPercentage": dial})


def test_global_accelerator_dials_are_set_raised_first_then_read_back():
    ga, stubber, slept, sent = make_ga()
    dials(stubber, 100, 0)            # weights()
    dials(stubber, 100, 0)            # set_weights: before
    update(stubber, WEST, 5.0)        # the dial going up first
    update(stubber, EAST, 95.0)
    dials(stubber, 95, 5)             # read back
    with stubber:
        assert ga.weights(TARGET) == {"us-east-1": 100.0, "us-west-2": 0.0}
        result = ga.set_weights(TARGET, {"us-east-1": 95, "us-west-2": 5})
        stubber.assert_no_pending_responses()
    assert result.changed and result.summary == ("set traffic dials us-east-1=95%, us-west-2=5% "
                                                 "(was us-east-1=100%, us-west-2=0%)")
    assert [n for n in sent if n == "UpdateEndpointGroup"] == ["UpdateEndpointGroup"] * 2
    json.dumps(result.details)


def test_global_accelerator_dry_run_and_nothing_to_change_call_no_update():
    ga, stubber, _, sent = make_ga()
    dials(stubber, 50, 50)
    dials(stubber, 50, 50)
    with stubber:
        plan = ga.set_weights(TARGET, {"us-east-1": 5, "us-west-2": 95}, dry_run=True)
        same = ga.set_weights(TARGET, {"us-east-1": 50, "us-west-2": 50})
    assert plan.summary == "would set traffic dials us-east-1=5%, us-west-2=95% (now us-east-1=50%, us-west-2=50%)"
    assert same.changed is False and "UpdateEndpointGroup" not in sent


def test_a_ramp_over_global_accelerator_dials(tmp_path):
    ga, stubber, _, _ = make_ga()
    dials(stubber, 100, 0)                                            # the ramp reads where it starts
    for east, west in ((95.0, 5.0), (50.0, 50.0), (0.0, 100.0)):      # each stage
        before = {95.0: (100, 0), 50.0: (95, 5), 0.0: (50, 50)}[east]
        dials(stubber, *before)
        update(stubber, WEST, west)
        update(stubber, EAST, east)
        dials(stubber, east, west)
    dials(stubber, 0, 100)                                            # the weights at the end
    sources = f"""
edge:
  kind: global_accelerator
  endpoint_groups: {{us-east-1: "{EAST}", us-west-2: "{WEST}"}}
"""
    services = services_with(tmp_path, sources, clients={"edge": ga.client})
    try:
        with stubber:
            result, clock = run_ramp(services)
            stubber.assert_no_pending_responses()
        assert sum(clock.slept) == 120.0
        assert result.details["after"] == {"us-east-1": 0.0, "us-west-2": 100.0}
        assert GROUPS == {"us-east-1": EAST, "us-west-2": WEST}
    finally:
        services.engine.dispose()


# -- Cloudflare pool weights (the fake v4 API) ------------------------------------------------

@pytest.fixture
def cf():
    with FakeCloudflare() as fake:
        fake.add_pool("pool-east", "web-east")
        fake.add_pool("pool-west", "web-west")
        fake.add_load_balancer("lb1", "www.example.com", ["pool-east", "pool-west"], "pool-east",
                               steering_policy="random", pool_weights={"pool-east": 1, "pool-west": 0})
        yield fake


def test_cloudflare_pool_weights_are_patched_with_random_steering_and_read_back(cf):
    lb, slept = make_cf(cf.url, mode="weights")
    assert lb.weights(TARGET) == {"us-east-1": 100.0, "us-west-2": 0.0}
    assert lb.active_region(TARGET) == "us-east-1"

    result = lb.set_weights(TARGET, {"us-east-1": 95, "us-west-2": 5})
    assert result.changed and result.summary == ("set pool weights of load balancer www.example.com "
                                                 "us-east-1=95%, us-west-2=5% (was us-east-1=100%, us-west-2=0%)")
    (patch,) = cf.writes()
    assert patch.method == "PATCH" and patch.path.endswith("/zones/zone123/load_balancers/lb1")
    assert patch.json == {"steering_policy": "random", "random_steering": {
        "default_weight": 1, "pool_weights": {"pool-east": 0.95, "pool-west": 0.05}}}
    assert cf.lb("lb1")["random_steering"]["pool_weights"] == {"pool-east": 0.95, "pool-west": 0.05}
    with pytest.raises(IntegrationError, match="traffic is split"):
        lb.active_region(TARGET)

    shifted = lb.shift(TARGET, "us-west-2")  # mode weights: a shift is 100/0
    assert shifted.changed and lb.active_region(TARGET) == "us-west-2"
    assert cf.lb("lb1")["random_steering"]["pool_weights"] == {"pool-east": 0.0, "pool-west": 1.0}
    assert lb.set_weights(TARGET, {"us-east-1": 0, "us-west-2": 100}).changed is False
    assert len(cf.writes()) == 2 and slept == []


def test_cloudflare_weights_need_mode_weights_and_every_pool_in_default_pools(cf):
    lb, _ = make_cf(cf.url)
    with pytest.raises(IntegrationError, match="pool weights need mode: weights"):
        lb.weights(TARGET)
    cf.add_load_balancer("lb1", "www.example.com", ["pool-east"], "pool-east", steering_policy="random")
    lb, _ = make_cf(cf.url, mode="weights")
    with pytest.raises(IntegrationError, match="the pools of us-west-2 are not default pools") as err:
        lb.set_weights(TARGET, {"us-east-1": 95, "us-west-2": 5})
    assert err.value.kind is ErrorKind.PERMANENT and cf.writes() == []


def test_cloudflare_from_failover_steering_other_default_pools_get_no_weight(cf):
    cf.add_pool("pool-static", "web-static")
    cf.add_load_balancer("lb1", "www.example.com", ["pool-east", "pool-static", "pool-west"], "pool-east")
    lb, _ = make_cf(cf.url, mode="weights")
    assert lb.weights(TARGET) == {"us-east-1": 100.0, "us-west-2": 0.0}  # steering off: the first pool
    lb.set_weights(TARGET, {"us-east-1": 95, "us-west-2": 5})
    assert cf.lb("lb1")["steering_policy"] == "random"
    assert cf.lb("lb1")["random_steering"]["pool_weights"] == {"pool-east": 0.95, "pool-static": 0.0,
                                                               "pool-west": 0.05}


def test_cloudflare_a_429_during_a_stage_waits_retry_after(cf):
    lb, slept = make_cf(cf.url, mode="weights")
    cf.fail_next(429, retry_after="2")
    lb.set_weights(TARGET, {"us-east-1": 50, "us-west-2": 50})
    assert slept == [2.0]
    assert cf.lb("lb1")["random_steering"]["pool_weights"] == {"pool-east": 0.5, "pool-west": 0.5}


def test_a_ramp_over_cloudflare_pool_weights(cf, tmp_path):
    sources = """
edge:
  kind: cloudflare_lb
  api_token: ${CF_TOKEN}
  account_id: acc123
  zone_id: zone123
  load_balancer_id: lb1
  pools: {us-east-1: pool-east, us-west-2: pool-west}
  mode: weights
  base_url: ${CF_URL}
"""
    services = services_with(tmp_path, sources, env={"CF_TOKEN": "cf-test-token", "CF_URL": cf.url + "/client/v4"})
    try:
        result, clock = run_ramp(services)
        weights = [r.json["random_steering"]["pool_weights"] for r in cf.writes()]
        assert weights == [{"pool-east": 0.95, "pool-west": 0.05}, {"pool-east": 0.5, "pool-west": 0.5},
                           {"pool-east": 0.0, "pool-west": 1.0}]
        assert result.details["after"] == {"us-east-1": 0.0, "us-west-2": 100.0} and sum(clock.slept) == 120.0
        assert POOLS == {"us-east-1": "pool-east", "us-west-2": "pool-west"}
    finally:
        services.engine.dispose()


CF_EDGE = """
edge:
  kind: cloudflare_lb
  api_token: cf-test-token
  account_id: acc123
  zone_id: zone123
  load_balancer_id: lb1
  pools: {us-east-1: pool-east, us-west-2: pool-west}
  mode: weights
  base_url: ${CF_URL}
"""


def test_status_of_a_service_left_mid_ramp_shows_the_percentages_per_region(cf, tmp_path):
    cf.add_load_balancer("lb1", "www.example.com", ["pool-east", "pool-west"], "pool-east",
                         steering_policy="random", pool_weights={"pool-east": 0.5, "pool-west": 0.5})
    services = services_with(tmp_path, CF_EDGE, env={"CF_URL": cf.url + "/client/v4"})
    try:
        report = services.status.report("orders", fresh=True)
        (a,) = report.assessments
        (split,) = [f for f in a.findings if f.code == "traffic_split"]
        assert split.params["weights"] == {"us-east-1": 50.0, "us-west-2": 50.0}
        assert split.verdict is Verdict.NOT_READY and a.verdict is Verdict.NOT_READY
        assert not [f for f in a.findings if f.params.get("part") == "where traffic goes"]  # no generic error
        text = services.renderer.text(dispatch(services, ALICE, "status orders"))
        assert "traffic split us-east-1 50% / us-west-2 50% (edge)" in text, text
        assert ("traffic is split: us-east-1 50%, us-west-2 50% (edge); records say us-east-1: a staged ramp "
                "stopped half-way. Resume its run to go on, or roll it back") in text, text
        assert "Shift to one region to fix it" not in text

        services.status.live.clear()
        cf.add_load_balancer("lb1", "www.example.com", ["pool-east", "pool-west"], "pool-east",
                             steering_policy="random", pool_weights={"pool-east": 0.0, "pool-west": 0.0})
        (a,) = services.status.report("orders", fresh=True).assessments  # not a split: the error stays
        assert not [f for f in a.findings if f.code == "traffic_split"]
        (failed,) = [f for f in a.findings if f.params.get("part") == "where traffic goes"]
        assert failed.code == "failed" and failed.verdict is Verdict.UNKNOWN
    finally:
        services.engine.dispose()


def test_a_split_while_a_run_moves_the_service_is_at_risk_and_names_the_request():
    a = Assessment("orders", "high", "us-east-1", "us-west-2", Verdict.UNKNOWN,
                   (Finding(Verdict.UNKNOWN, "failed", {"part": "where traffic goes", "source": "edge", "error": "x"}),
                    Finding(Verdict.READY, "lag_ok", {})), None, None, {}, None, None)
    moved = with_split(a, {"us-east-1": 95.0, "us-west-2": 5.0}, moving=7)
    assert [f.code for f in moved.findings] == ["traffic_split", "lag_ok"]
    assert moved.verdict is Verdict.AT_RISK and moved.findings[0].params["moving"] == 7
    assert with_split(a, None, moving=7) is a
