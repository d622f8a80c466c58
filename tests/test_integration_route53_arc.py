"""Route 53 ARC routing controls through the cluster's data plane. moto has no ARC, so each
cluster endpoint gets its own real boto3 client wrapped in botocore's Stubber (which checks
every parameter against the AWS model); the timeout test points the first endpoint at a
real local socket that accepts connections and never answers.

Through the app (real HTTP, signed Slack payloads): a small fake of the data plane's JSON
protocol over HTTP (``FakeArcDataPlane`` below) behind a first endpoint that never answers."""
from __future__ import annotations

import json
import socket

import boto3
import pydantic
import pytest
from botocore.stub import Stubber

from bot.config import parse_config
from bot.store.models import RequestState, Run, RunStep, StepState
from bot.wiring import build_services
from integrations.aws.route53_arc import Route53Arc
from integrations.base import TRAFFIC, ErrorKind, IntegrationError, Target
from tests.app_server import running_app
from tests.estates import estate
from tests.fakes.json_server import Answer, JsonServer, Request
from tests.helpers import rows
from tests.test_approval_http import BOB, ask, click, shutdown, texts, wait_final

TARGET = Target(service="orders")
PANEL = "arn:aws:route53-recovery-control::123456789012:controlpanel/0123456789abcdef"
EAST = f"{PANEL}/routingcontrol/aaaaaaaaaaaaaaaa"
WEST = f"{PANEL}/routingcontrol/bbbbbbbbbbbbbbbb"
CONTROLS = {"us-east-1": EAST, "us-west-2": WEST}
ENDPOINTS = [("https://host-aaa.us-east-1.example.aws/v1", "us-east-1"),
             ("https://host-bbb.ap-northeast-1.example.aws/v1", "ap-northeast-1"),
             ("https://host-ccc.eu-west-1.example.aws/v1", "eu-west-1")]
TO_WEST = {"UpdateRoutingControlStateEntries": [
    {"RoutingControlArn": EAST, "RoutingControlState": "Off"},
    {"RoutingControlArn": WEST, "RoutingControlState": "On"}]}


def arc_client(region: str, endpoint: str):
    return boto3.session.Session().client(
        "route53-recovery-cluster", region_name=region, endpoint_url=endpoint,
        aws_access_key_id="k", aws_secret_access_key="s")


def make(endpoints=ENDPOINTS, clients=None, **extra):
    """The backend with one stubbed client per endpoint (unless ``clients`` says otherwise);
    returns (backend, {endpoint: Stubber}, slept)."""
    if clients is None:
        clients = {url: arc_client(region, url) for url, region in endpoints}
    options = Route53Arc.Options.model_validate(
        {"cluster_endpoints": [{"endpoint": url, "region": region} for url, region in endpoints],
         "routing_controls": CONTROLS, "poll_interval": 2, "endpoint_timeout": 0.3, **extra})
    arc = Route53Arc("orders-arc", options, client=clients)
    slept: list[float] = []
    arc._sleep = slept.append
    return arc, {url: Stubber(c) for url, c in clients.items()}, slept


def state(stubber: Stubber, arn: str, value: str) -> None:
    stubber.add_response("get_routing_control_state",
                         {"RoutingControlArn": arn, "RoutingControlState": value,
                          "RoutingControlName": arn.rsplit("/", 1)[1][:8]},
                         {"RoutingControlArn": arn})


def states(stubber: Stubber, east: str, west: str) -> None:
    state(stubber, EAST, east)
    state(stubber, WEST, west)


def test_options_are_checked():
    assert Route53Arc.capabilities == frozenset({TRAFFIC})
    base = {"cluster_endpoints": [{"endpoint": "https://x.example.aws/v1", "region": "us-east-1"}]}
    for bad in ({"routing_controls": {"us-east-1": EAST}},
                {"routing_controls": {"us-east-1": EAST, "us-west-2": "arn:aws:s3:::bucket"}},
                {"routing_controls": {"us-east-1": EAST, "us-west-2": EAST}},
                {"routing_controls": CONTROLS, "cluster_endpoints": []},
                {"routing_controls": CONTROLS, "cluster_endpoints": [{"endpoint": "x", "region": "r"}]},
                {"routing_controls": CONTROLS, "timeout": 3, "endpoint_timeout": 2},
                {"routing_controls": CONTROLS, "safety_override": True}):
        with pytest.raises(pydantic.ValidationError):
            Route53Arc.Options.model_validate({**base, **bad})


def test_shift_sends_one_update_with_every_control_and_reads_it_back():
    arc, stubs, slept = make()
    first = stubs[ENDPOINTS[0][0]]
    states(first, "On", "Off")          # active_region
    states(first, "On", "Off")          # shift: before
    first.add_response("update_routing_control_states", {}, TO_WEST)
    states(first, "Off", "On")          # read back
    states(first, "Off", "On")          # active_region again
    with first:
        assert arc.active_region(TARGET) == "us-east-1"
        result = arc.shift(TARGET, "us-west-2")
        assert arc.active_region(TARGET) == "us-west-2"
        first.assert_no_pending_responses()
    assert result.changed is True and result.dry_run is False
    assert result.summary == ("set routing controls us-west-2 On, us-east-1 Off (was us-east-1=On, "
                              "us-west-2=Off) via https://host-aaa.us-east-1.example.aws/v1")
    assert result.details["before"] == {"us-east-1": "On", "us-west-2": "Off"}
    assert result.details["after"] == {"us-east-1": "Off", "us-west-2": "On"}
    json.dumps(result.details)
    assert slept == []


def test_dry_run_and_already_there_read_only():
    arc, stubs, _ = make()
    first = stubs[ENDPOINTS[0][0]]
    states(first, "On", "Off")
    states(first, "On", "Off")
    with first:  # no update queued: an update call would fail the Stubber
        plan = arc.shift(TARGET, "us-west-2", dry_run=True)
        already = arc.shift(TARGET, "us-east-1")
        first.assert_no_pending_responses()
    assert plan.dry_run is True and plan.changed is False
    assert plan.summary == ("would set routing controls us-west-2 On, us-east-1 Off in one update "
                            "(now us-east-1=On, us-west-2=Off)")
    assert already.changed is False and already.summary == "already: routing controls us-east-1 On, us-west-2 Off"


def test_an_endpoint_that_times_out_is_skipped_for_the_next(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel accepts connections; nobody ever answers
    try:
        dead = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        endpoints = [(dead, "us-east-1"), ENDPOINTS[1]]
        second = arc_client(ENDPOINTS[1][1], ENDPOINTS[1][0])
        arc, stubs, _ = make(endpoints, clients={ENDPOINTS[1][0]: second})
        stub = stubs[ENDPOINTS[1][0]]
        states(stub, "On", "Off")      # shift: before (the first read timed out on the dead one)
        stub.add_response("update_routing_control_states", {}, TO_WEST)
        states(stub, "Off", "On")      # read back
        with stub:
            result = arc.shift(TARGET, "us-west-2")
            stub.assert_no_pending_responses()
    finally:
        silent.close()
    assert result.changed is True and result.details["endpoint"] == ENDPOINTS[1][0]
    assert arc._first == 1  # the next call starts at the endpoint that answered


def test_5xx_and_unavailable_endpoints_are_skipped_and_all_failing_is_transient():
    arc, stubs, slept = make(passes=2)
    a, b, c = (stubs[url] for url, _ in ENDPOINTS)
    for stub in (a, b, c):
        stub.add_client_error("get_routing_control_state", "EndpointTemporarilyUnavailableException",
                              "try another endpoint", 503, expected_params={"RoutingControlArn": EAST})
    a.add_client_error("get_routing_control_state", "InternalServerException", "boom", 500,
                       expected_params={"RoutingControlArn": EAST})
    b.add_client_error("get_routing_control_state", "ThrottlingException", "slow down", 429,
                       expected_params={"RoutingControlArn": EAST})
    c.add_client_error("get_routing_control_state", "InternalServerException", "boom", 500,
                       expected_params={"RoutingControlArn": EAST})
    with a, b, c, pytest.raises(IntegrationError) as err:
        arc.active_region(TARGET)
    assert err.value.kind is ErrorKind.TRANSIENT
    assert "none of the 3 cluster endpoints answered in 2 pass(es)" in str(err.value)
    assert "eu-west-1: InternalServerException" in str(err.value)
    assert slept == [0.5]


def test_throttled_endpoint_then_next_answers():
    arc, stubs, _ = make()
    a, b = stubs[ENDPOINTS[0][0]], stubs[ENDPOINTS[1][0]]
    a.add_client_error("get_routing_control_state", "ThrottlingException", "slow down", 429,
                       expected_params={"RoutingControlArn": EAST})
    states(b, "Off", "On")
    with a, b:
        assert arc.active_region(TARGET) == "us-west-2"


def test_safety_rule_refusal_is_permanent_and_names_the_rule():
    arc, stubs, _ = make()
    first = stubs[ENDPOINTS[0][0]]
    rule = "arn:aws:route53-recovery-control::123456789012:controlpanel/0123456789abcdef/safetyrule/min-one-on"
    states(first, "On", "Off")
    said = "Cannot update routing control states: safety rule min-one-on would be violated"
    first.add_client_error("update_routing_control_states", "ConflictException", said, 409,
                           expected_params=TO_WEST,
                           modeled_fields={"message": said, "resourceId": rule, "resourceType": "SafetyRule"})
    with first, pytest.raises(IntegrationError) as err:
        arc.shift(TARGET, "us-west-2")
    assert err.value.kind is ErrorKind.PERMANENT
    assert f"safety rule {rule} does not allow it" in str(err.value)
    assert "min-one-on would be violated" in str(err.value) and "Nothing was changed" in str(err.value)


def test_split_or_dark_states_have_no_active_region():
    arc, stubs, _ = make()
    first = stubs[ENDPOINTS[0][0]]
    states(first, "On", "On")
    states(first, "Off", "Off")
    with first:
        with pytest.raises(IntegrationError) as split:
            arc.active_region(TARGET)
        with pytest.raises(IntegrationError) as dark:
            arc.active_region(TARGET)
    assert split.value.kind is ErrorKind.PERMANENT and "2 are On" in str(split.value)
    assert "none is On" in str(dark.value)


def test_update_not_read_back_in_time_is_transient():
    arc, stubs, slept = make(settle_timeout=4)
    first = stubs[ENDPOINTS[0][0]]
    states(first, "On", "Off")
    first.add_response("update_routing_control_states", {}, TO_WEST)
    for _ in range(3):
        states(first, "On", "Off")
    with first, pytest.raises(IntegrationError) as err:
        arc.shift(TARGET, "us-west-2")
    assert err.value.kind is ErrorKind.TRANSIENT and "after 4s" in str(err.value)
    assert slept == [2, 2]


def test_unknown_region_access_denied_and_missing_control():
    arc, stubs, _ = make()
    first = stubs[ENDPOINTS[0][0]]
    with pytest.raises(IntegrationError) as unknown:
        arc.shift(TARGET, "eu-central-1")
    assert unknown.value.kind is ErrorKind.PERMANENT and "eu-central-1 has no routing control" in str(unknown.value)
    first.add_client_error("get_routing_control_state", "AccessDeniedException", "no", 403,
                           expected_params={"RoutingControlArn": EAST})
    first.add_client_error("get_routing_control_state", "ResourceNotFoundException", "gone", 404,
                           expected_params={"RoutingControlArn": EAST})
    with first:
        with pytest.raises(IntegrationError) as denied:
            arc.active_region(TARGET)
        with pytest.raises(IntegrationError) as missing:
            arc.active_region(TARGET)
    assert denied.value.kind is ErrorKind.NOT_PERMITTED
    assert missing.value.kind is ErrorKind.PERMANENT and f"{EAST} does not exist" in str(missing.value)


def test_check_reads_every_control_and_never_raises():
    arc, stubs, _ = make()
    first = stubs[ENDPOINTS[0][0]]
    states(first, "Off", "On")
    first.add_client_error("get_routing_control_state", "AccessDeniedException", "no", 403,
                           expected_params={"RoutingControlArn": EAST})
    with first:
        ok = arc.check()
        bad = arc.check()
    assert ok.ok is True
    assert ok.message == ("orders-arc: routing controls read via us-east-1 (us-east-1=Off, us-west-2=On); "
                          "us-west-2 is active.")
    assert bad.ok is False and "AccessDeniedException" in bad.message


# -- through the app: a dead endpoint skipped, a shift, a safety-rule refusal ---------------

class FakeArcDataPlane(JsonServer):
    """ARC's data plane as botocore speaks to it (JSON 1.0, ``X-Amz-Target:
    ToggleCustomerAPI.<Operation>``): routing control states, and a safety rule that refuses
    every update while ``refuse_with`` names it."""

    def __init__(self, states: dict[str, str]):
        super().__init__()
        self.states = dict(states)
        self.refuse_with: str | None = None

    def handle(self, req: Request) -> Answer:
        operation = req.headers.get("x-amz-target", "").rpartition(".")[2]
        body = req.json or {}
        with self.lock:
            if operation == "GetRoutingControlState":
                arn = body.get("RoutingControlArn")
                if arn not in self.states:
                    return Answer(404, {"__type": "ResourceNotFoundException", "message": "not found",
                                        "resourceId": arn, "resourceType": "RoutingControl"})
                return Answer(200, {"RoutingControlArn": arn, "RoutingControlState": self.states[arn],
                                    "RoutingControlName": arn.rsplit("/", 1)[1][:8]})
            if operation == "UpdateRoutingControlStates":
                if self.refuse_with:
                    return Answer(409, {"__type": "ConflictException", "resourceId": self.refuse_with,
                                        "resourceType": "SafetyRule",
                                        "message": "Cannot update routing control states: the update would "
                                                   "violate safety rule orders-gate"})
                for entry in body.get("UpdateRoutingControlStateEntries", []):
                    self.states[entry["RoutingControlArn"]] = entry["RoutingControlState"]
                return Answer(200, {})
        return Answer(400, {"__type": "ValidationException", "message": f"unknown operation {operation}"})


ARC_CONFIG = estate("""
orders-arc:
  kind: route53_arc
  timeout: 3
  endpoint_timeout: 0.3
  cluster_endpoints:
    - {endpoint: "${DEAD_URL}", region: us-east-1}
    - {endpoint: "${ARC_URL}", region: us-west-2}
  routing_controls: {us-east-1: "${EAST}", us-west-2: "${WEST}"}
  poll_interval: 0.05
""", """
- name: Flip the routing controls
  action: traffic.shift
  timeout: 20s
  verify: {traffic_in: target, within: 5s, interval: 100ms}
""", traffic="orders-arc", database=None)


@pytest.fixture
def arc_estate(fake_slack, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections, never answers: the first endpoint times out
    with FakeArcDataPlane({EAST: "On", WEST: "Off"}) as arc:
        env = {"DEAD_URL": f"http://127.0.0.1:{silent.getsockname()[1]}/v1", "ARC_URL": arc.url + "/v1",
               "EAST": EAST, "WEST": WEST}
        services = build_services(parse_config(ARC_CONFIG, "arc.yaml", env), db_url=f"sqlite:///{tmp_path}/drbot.db")
        try:
            with running_app(services, fake_slack) as app:
                yield {"services": services, "app": app, "fake": fake_slack, "arc": arc}
        finally:
            shutdown(services)
            silent.close()


def test_failover_through_the_app_skips_the_dead_endpoint_and_flips_the_controls(arc_estate):
    services, arc = arc_estate["services"], arc_estate["arc"]
    req, message = ask(arc_estate, "failover orders us-east-1 impaired")
    assert "traffic goes to us-east-1 (orders-arc)" in texts(message["blocks"])
    click(arc_estate, BOB, req, "bob")
    done = wait_final(services, req.id)
    assert done.state is RequestState.SUCCEEDED, done.state_reason
    assert arc.states == {EAST: "Off", WEST: "On"}
    updates = [r for r in arc.requests if r.headers.get("x-amz-target", "").endswith("UpdateRoutingControlStates")]
    assert [u.json for u in updates] == [TO_WEST]  # one call with both controls
    (step,) = rows(services, RunStep, RunStep.run_id == rows(services, Run, Run.request_id == req.id)[0].id)
    output = json.loads(step.output)
    assert output["details"]["endpoint"] == arc.url + "/v1" and output["verify"] == {"verified": ["traffic"]}


def test_a_safety_rule_refusal_stops_the_run_with_the_rule_named(arc_estate):
    services, arc = arc_estate["services"], arc_estate["arc"]
    rule = f"{PANEL}/safetyrule/orders-gate"
    arc.refuse_with = rule
    req, _ = ask(arc_estate, "failover orders us-east-1 impaired")
    click(arc_estate, BOB, req, "bob")
    done = wait_final(services, req.id)
    assert done.state is RequestState.FAILED
    assert arc.states == {EAST: "On", WEST: "Off"}  # nothing changed
    (step,) = rows(services, RunStep, RunStep.run_id == rows(services, Run, Run.request_id == req.id)[0].id)
    assert step.state is StepState.FAILED
    assert f"safety rule {rule} does not allow it" in step.error
    assert "violate safety rule orders-gate" in step.error
    assert json.loads(step.output)["error_kind"] == "permanent"
