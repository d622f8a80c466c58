"""Global Accelerator traffic dials. moto has no Global Accelerator, so these run a real
boto3 client with botocore's Stubber, which checks every parameter against the AWS model.

Through the app (real HTTP, signed Slack payloads): a small fake of the API's JSON protocol
over HTTP (``FakeGlobalAccelerator`` below), reached through ``endpoint_url``."""
from __future__ import annotations

import json
import socket

import pydantic
import pytest
from botocore.stub import Stubber

from bot.config import parse_config
from bot.store.models import RequestState, Run, RunStep, StepState
from bot.wiring import build_services
from integrations.aws.global_accelerator import GlobalAccelerator
from integrations.base import TRAFFIC, WEIGHTS, ErrorKind, IntegrationError, Target
from tests.app_server import running_app
from tests.estates import estate
from tests.fakes.json_server import Answer, JsonServer, Request
from tests.helpers import rows
from tests.test_approval_http import ALICE, BOB, CHANNEL, ask, click, response, shutdown, texts, wait_final

TARGET = Target(service="orders")
LISTENER = "arn:aws:globalaccelerator::123456789012:accelerator/1234abcd/listener/0123abcd"
EAST = f"{LISTENER}/endpoint-group/aaaa1111"
WEST = f"{LISTENER}/endpoint-group/bbbb2222"
GROUPS = {"us-east-1": EAST, "us-west-2": WEST}


def group(arn: str, dial: float, health: str = "HEALTHY") -> dict:
    region = "us-east-1" if arn == EAST else "us-west-2"
    return {"EndpointGroup": {
        "EndpointGroupArn": arn, "EndpointGroupRegion": region, "TrafficDialPercentage": dial,
        "HealthCheckPort": 443, "HealthCheckProtocol": "HTTPS", "HealthCheckPath": "/health",
        "EndpointDescriptions": [{"EndpointId": f"arn:aws:elasticloadbalancing:{region}:123456789012:"
                                                f"loadbalancer/app/orders/{arn[-4:]}",
                                  "Weight": 128, "HealthState": health}]}}


def dials(stubber: Stubber, east: float, west: float, west_health: str = "HEALTHY") -> None:
    stubber.add_response("describe_endpoint_group", group(EAST, east), {"EndpointGroupArn": EAST})
    stubber.add_response("describe_endpoint_group", group(WEST, west, west_health), {"EndpointGroupArn": WEST})


def make(**extra):
    options = GlobalAccelerator.Options.model_validate(
        {"endpoint_groups": GROUPS, "poll_interval": 5, **extra})
    ga = GlobalAccelerator("orders-ga", options)
    slept: list[float] = []
    ga._sleep = slept.append
    client = ga._new_client(options.region)  # the client drbot itself would build
    ga._client = client
    sent: list[str] = []
    client.meta.events.register("before-parameter-build.global-accelerator.*",
                                lambda model, **_: sent.append(model.name))
    return ga, Stubber(client), slept, sent


def test_the_api_region_is_us_west_2_whatever_the_regions():
    ga, _, _, _ = make()
    assert ga.client.meta.region_name == "us-west-2"
    assert GlobalAccelerator.capabilities == frozenset({TRAFFIC, WEIGHTS})
    for bad in ({"endpoint_groups": {"us-east-1": EAST}},
                {"endpoint_groups": {"us-east-1": EAST, "us-west-2": "arn:aws:s3:::x"}},
                {"endpoint_groups": GROUPS, "region": "eu-west-1"}):
        with pytest.raises(pydantic.ValidationError):
            GlobalAccelerator.Options.model_validate(bad)


def test_shift_raises_the_target_first_then_drains_and_reads_back():
    ga, stubber, slept, sent = make()
    dials(stubber, 100, 0)                                       # active_region
    dials(stubber, 100, 0)                                       # shift: before
    stubber.add_response("update_endpoint_group", group(WEST, 100),
                         {"EndpointGroupArn": WEST, "TrafficDialPercentage": 100.0})
    stubber.add_response("update_endpoint_group", group(EAST, 0),
                         {"EndpointGroupArn": EAST, "TrafficDialPercentage": 0.0})
    dials(stubber, 0, 100)                                       # read back
    with stubber:
        assert ga.active_region(TARGET) == "us-east-1"
        result = ga.shift(TARGET, "us-west-2")
        stubber.assert_no_pending_responses()
    assert result.changed is True
    assert result.summary == ("set traffic dials us-west-2 100%, us-east-1 0% "
                              "(was us-east-1=100%, us-west-2=0%)")
    assert sent.index("UpdateEndpointGroup") > 0 and sent.count("UpdateEndpointGroup") == 2
    assert result.details["after"] == {"us-east-1": 0.0, "us-west-2": 100.0}
    json.dumps(result.details)
    assert slept == []


def test_dry_run_says_the_plan_with_live_dials_and_health_and_changes_nothing():
    ga, stubber, _, sent = make()
    dials(stubber, 100, 0, west_health="UNHEALTHY")
    dials(stubber, 0, 100)
    with stubber:
        plan = ga.shift(TARGET, "us-west-2", dry_run=True)
        already = ga.shift(TARGET, "us-west-2")
    assert plan.dry_run is True and plan.changed is False
    assert plan.summary == ("would set traffic dials us-west-2 100%, us-east-1 0% (now us-east-1=100%, "
                            "us-west-2=0%; 0/1 endpoints healthy in us-west-2)")
    assert already.changed is False and already.summary == "already: traffic dials us-west-2 100%, us-east-1 0%"
    assert "UpdateEndpointGroup" not in sent


def test_throttling_is_retried_with_backoff():
    ga, stubber, slept, _ = make()
    stubber.add_client_error("describe_endpoint_group", "ThrottlingException", "Rate exceeded", 400,
                             expected_params={"EndpointGroupArn": EAST})
    stubber.add_client_error("describe_endpoint_group", "ThrottlingException", "Rate exceeded", 400,
                             expected_params={"EndpointGroupArn": EAST})
    dials(stubber, 0, 100)
    with stubber:
        assert ga.active_region(TARGET) == "us-west-2"
    assert slept == [0.5, 1.0]


def test_a_failed_drain_says_the_dials_are_split():
    ga, stubber, _, _ = make()
    dials(stubber, 100, 0)
    stubber.add_response("update_endpoint_group", group(WEST, 100),
                         {"EndpointGroupArn": WEST, "TrafficDialPercentage": 100.0})
    stubber.add_client_error("update_endpoint_group", "AccessDeniedException", "not allowed", 403,
                             expected_params={"EndpointGroupArn": EAST, "TrafficDialPercentage": 0.0})
    with stubber, pytest.raises(IntegrationError) as err:
        ga.shift(TARGET, "us-west-2")
    assert err.value.kind is ErrorKind.NOT_PERMITTED
    assert "The dials are now split: us-west-2=100% set, us-east-1 not" in str(err.value)


def test_missing_group_is_permanent_and_split_dials_have_no_active_region():
    ga, stubber, _, _ = make()
    stubber.add_client_error("describe_endpoint_group", "EndpointGroupNotFoundException", "no", 400,
                             expected_params={"EndpointGroupArn": EAST})
    dials(stubber, 100, 100)
    with stubber:
        with pytest.raises(IntegrationError) as missing:
            ga.active_region(TARGET)
        with pytest.raises(IntegrationError) as split:
            ga.active_region(TARGET)
    assert missing.value.kind is ErrorKind.PERMANENT and f"endpoint group {EAST} does not exist" in str(missing.value)
    assert split.value.kind is ErrorKind.PERMANENT and "traffic is split" in str(split.value)


def test_dials_not_read_back_in_time_is_transient():
    ga, stubber, slept, _ = make(settle_timeout=5)
    dials(stubber, 100, 0)
    stubber.add_response("update_endpoint_group", group(WEST, 100),
                         {"EndpointGroupArn": WEST, "TrafficDialPercentage": 100.0})
    stubber.add_response("update_endpoint_group", group(EAST, 0),
                         {"EndpointGroupArn": EAST, "TrafficDialPercentage": 0.0})
    dials(stubber, 100, 100)
    dials(stubber, 100, 100)
    with stubber, pytest.raises(IntegrationError) as err:
        ga.shift(TARGET, "us-west-2")
    assert err.value.kind is ErrorKind.TRANSIENT and "after 5s" in str(err.value)
    assert slept == [5]


def test_an_api_that_never_answers_is_transient(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers
    try:
        options = GlobalAccelerator.Options.model_validate(
            {"endpoint_groups": GROUPS, "timeout": 0.3, "endpoint_url": f"http://127.0.0.1:{silent.getsockname()[1]}"})
        with pytest.raises(IntegrationError) as err:
            GlobalAccelerator("orders-ga", options).active_region(TARGET)
    finally:
        silent.close()
    assert err.value.kind is ErrorKind.TRANSIENT and "could not reach AWS in time" in str(err.value)


def test_check_reads_every_group():
    ga, stubber, _, _ = make()
    dials(stubber, 100, 0)
    stubber.add_client_error("describe_endpoint_group", "InternalServiceErrorException", "oops", 500,
                             expected_params={"EndpointGroupArn": EAST})
    with stubber:
        ok = ga.check()
        bad = ga.check()
    assert ok.ok and ok.message == ("orders-ga: endpoint groups exist (us-east-1=100%, us-west-2=0%); "
                                    "us-east-1 is active.")
    assert not bad.ok and "try again shortly" in bad.message


# -- through the app: /dr plan, then a failover that dials the standby to 100 ----------------

class FakeGlobalAccelerator(JsonServer):
    """Global Accelerator as botocore speaks to it (JSON 1.1, ``X-Amz-Target:
    GlobalAccelerator_V20180706.<Operation>``): endpoint groups and their dials."""

    def __init__(self, dials: dict[str, float]):
        super().__init__()
        self.dials = dict(dials)

    def handle(self, req: Request) -> Answer:
        operation = req.headers.get("x-amz-target", "").rpartition(".")[2]
        arn = (req.json or {}).get("EndpointGroupArn")
        with self.lock:
            if arn not in self.dials:
                return Answer(400, {"__type": "EndpointGroupNotFoundException", "Message": "not found"})
            if operation == "UpdateEndpointGroup":
                self.dials[arn] = float(req.json["TrafficDialPercentage"])
            elif operation != "DescribeEndpointGroup":
                return Answer(400, {"__type": "InvalidArgumentException", "Message": operation})
            return Answer(200, group(arn, self.dials[arn]))


GA_CONFIG = estate("""
orders-ga:
  kind: global_accelerator
  endpoint_url: ${GA_URL}
  endpoint_groups: {us-east-1: "${EAST}", us-west-2: "${WEST}"}
  poll_interval: 0.05
""", """
- name: Dial traffic to the standby
  action: traffic.shift
  timeout: 20s
  verify: {traffic_in: target, within: 5s, interval: 100ms}
""", traffic="orders-ga", database=None)


@pytest.fixture
def ga_estate(fake_slack, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with FakeGlobalAccelerator({EAST: 100.0, WEST: 0.0}) as ga:
        env = {"GA_URL": ga.url, "EAST": EAST, "WEST": WEST}
        services = build_services(parse_config(GA_CONFIG, "ga.yaml", env), db_url=f"sqlite:///{tmp_path}/drbot.db")
        try:
            with running_app(services, fake_slack) as app:
                yield {"services": services, "app": app, "fake": fake_slack, "ga": ga}
        finally:
            shutdown(services)


def test_plan_then_failover_through_the_app_dials_the_standby_to_100(ga_estate):
    services, fake, ga = ga_estate["services"], ga_estate["fake"], ga_estate["ga"]
    ga_estate["app"].sender.slash_command("plan orders", user_id=ALICE, user_name="alice", channel_id=CHANNEL,
                                          response_url=fake.response_url("plan"))
    assert ("would set traffic dials us-west-2 100%, us-east-1 0% (now us-east-1=100%, us-west-2=0%; "
            "1/1 endpoints healthy in us-west-2)") in texts(response(fake, "plan").blocks)
    assert ga.dials == {EAST: 100.0, WEST: 0.0}

    req, _ = ask(ga_estate, "failover orders us-east-1 impaired")
    click(ga_estate, BOB, req, "bob")
    done = wait_final(services, req.id)
    assert done.state is RequestState.SUCCEEDED, done.state_reason
    assert ga.dials == {EAST: 0.0, WEST: 100.0}
    updates = [r.json for r in ga.requests if r.headers.get("x-amz-target", "").endswith("UpdateEndpointGroup")]
    assert updates == [{"EndpointGroupArn": WEST, "TrafficDialPercentage": 100.0},
                       {"EndpointGroupArn": EAST, "TrafficDialPercentage": 0.0}]
    assert all(r.headers["host"] == ga.url.split("//")[1] for r in ga.requests)
    assert all("/us-west-2/globalaccelerator/" in r.headers["authorization"] for r in ga.requests)
    (step,) = rows(services, RunStep, RunStep.run_id == rows(services, Run, Run.request_id == req.id)[0].id)
    assert step.state is StepState.SUCCEEDED and json.loads(step.output)["verify"] == {"verified": ["traffic"]}
