"""Route 53 health backend: moto for health checks that exist or not, Stubber for the
checker observations moto cannot vary (it always reports one "Success")."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import boto3
import pydantic
import pytest
from botocore.stub import Stubber

from integrations.aws.route53_health import Route53Health
from integrations.aws.session import make_client
from integrations.base import HEALTH, ErrorKind, IntegrationError, Target
from tests.moto_fixture import moto_endpoint, reset_moto  # noqa: F401

TARGET = Target(service="orders", region="eu-west-1")
HC_ID = "abcdef12-3456-7890-abcd-ef1234567890"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def r53(moto_endpoint):  # noqa: F811
    reset_moto(moto_endpoint)
    return make_client("route53", region="us-east-1", timeout=5, endpoint_url=moto_endpoint)


def create(r53, **config) -> str:
    if not config:
        config = {"Type": "HTTPS", "FullyQualifiedDomainName": "orders.eu.example.com",
                  "Port": 443, "ResourcePath": "/health"}
    response = r53.create_health_check(CallerReference=str(uuid.uuid4()),
                                       HealthCheckConfig=config)
    return response["HealthCheck"]["Id"]


def backend(health_check_id, endpoint=None, client=None):
    options = Route53Health.Options.model_validate(
        {"health_check_id": health_check_id, "endpoint_url": endpoint})
    return Route53Health("orders-eu-health", options, client=client)


def test_moto_health_check_reads_healthy(r53, moto_endpoint):  # noqa: F811
    reading = backend(create(r53), moto_endpoint).check_health(TARGET)
    assert reading.healthy is True
    assert reading.detail == "1/1 checkers report Success"
    assert reading.observed_at.tzinfo is not None


def test_missing_health_check_is_permanent(r53, moto_endpoint):  # noqa: F811
    with pytest.raises(IntegrationError) as err:
        backend(HC_ID, moto_endpoint).check_health(TARGET)
    assert err.value.kind is ErrorKind.PERMANENT
    assert HC_ID in str(err.value) and "does not exist" in str(err.value)


def test_check_proves_the_health_check_exists(r53, moto_endpoint):  # noqa: F811
    hc_id = create(r53)
    result = backend(hc_id, moto_endpoint).check()
    assert result.ok is True, result.message
    assert hc_id in result.message and "orders.eu.example.com:443/health" in result.message
    missing = backend(HC_ID, moto_endpoint).check()
    assert missing.ok is False and "does not exist" in missing.message


def test_check_rejects_a_calculated_health_check(r53, moto_endpoint):  # noqa: F811
    child = create(r53)
    calculated = create(r53, Type="CALCULATED", ChildHealthChecks=[child],
                        HealthThreshold=1)
    result = backend(calculated, moto_endpoint).check()
    assert result.ok is False and "CALCULATED" in result.message


def observation(region, status, minutes):
    return {"Region": region, "IPAddress": "15.177.0.1",
            "StatusReport": {"Status": status, "CheckedTime": T0 + timedelta(minutes=minutes)}}


OK = "Success: HTTP Status Code 200, OK"
BAD = "Failure: Connection timed out. The endpoint or the internet connection is down."


def stubbed_status(observations):
    client = boto3.session.Session().client(
        "route53", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    stubber = Stubber(client)
    stubber.add_response("get_health_check_status",
                         {"HealthCheckObservations": observations}, {"HealthCheckId": HC_ID})
    stubber.activate()
    return backend(HC_ID, client=client), stubber


def test_majority_success_is_healthy():
    health, stubber = stubbed_status([observation("us-east-1", OK, 0),
                                      observation("eu-west-1", BAD, 2),
                                      observation("ap-southeast-1", OK, 1)])
    reading = health.check_health(TARGET)
    stubber.assert_no_pending_responses()
    assert reading.healthy is True
    assert reading.detail.startswith("2/3 checkers report Success")
    assert "eu-west-1: Failure: Connection timed out" in reading.detail
    assert reading.observed_at == T0 + timedelta(minutes=2)


@pytest.mark.parametrize("statuses", [(OK, BAD, BAD), (OK, BAD), (BAD, BAD, BAD)])
def test_half_or_fewer_successes_is_unhealthy(statuses):
    health, _ = stubbed_status([observation(f"r{i}", s, i) for i, s in enumerate(statuses)])
    reading = health.check_health(TARGET)
    successes = statuses.count(OK)
    assert reading.healthy is False
    assert reading.detail.startswith(f"{successes}/{len(statuses)} checkers report Success")


def test_no_observations_is_transient_not_healthy():
    health, _ = stubbed_status([])
    with pytest.raises(IntegrationError) as err:
        health.check_health(TARGET)
    assert err.value.kind is ErrorKind.TRANSIENT


@pytest.mark.parametrize("code,status,kind", [
    ("AccessDenied", 403, ErrorKind.NOT_PERMITTED),
    ("Throttling", 400, ErrorKind.TRANSIENT),
    ("NoSuchHealthCheck", 404, ErrorKind.PERMANENT),
    ("InvalidInput", 400, ErrorKind.PERMANENT),
])
def test_errors_map_to_kinds(code, status, kind):
    client = boto3.session.Session().client(
        "route53", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    with Stubber(client) as stubber:
        stubber.add_client_error("get_health_check_status", service_error_code=code,
                                 service_message="nope", http_status_code=status)
        with pytest.raises(IntegrationError) as err:
            backend(HC_ID, client=client).check_health(TARGET)
    assert err.value.kind is kind
    assert "orders-eu-health" in str(err.value)


def test_options_and_lazy_client():
    health = backend(HC_ID)
    assert health.options.region == "us-east-1" and health.options.timeout == 5.0
    assert health.kind == "route53_health" and health.capabilities == frozenset({HEALTH})
    assert health._client is None
    assert health.client.meta.config.read_timeout == 5.0
    with pytest.raises(pydantic.ValidationError):
        Route53Health.Options.model_validate({"health_check_id": HC_ID, "zone": "x"})
    with pytest.raises(pydantic.ValidationError):
        Route53Health.Options.model_validate({})
