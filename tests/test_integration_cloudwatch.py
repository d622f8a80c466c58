"""CloudWatch lag backend against a real moto server (and Stubber for refusals)."""
from __future__ import annotations

import socket
import time
from datetime import datetime, timedelta, timezone

import boto3
import pydantic
import pytest
from botocore.stub import Stubber

from integrations.aws.cloudwatch import CloudWatchLag
from integrations.aws.session import make_client
from integrations.base import LAG, ErrorKind, IntegrationError, LagSample, Target
from tests.moto_fixture import moto_endpoint, reset_moto  # noqa: F401

REGION = "us-east-1"
TARGET = Target(service="orders")


@pytest.fixture
def cw(moto_endpoint):  # noqa: F811
    reset_moto(moto_endpoint)
    return make_client("cloudwatch", region=REGION, timeout=5, endpoint_url=moto_endpoint)


def minute(ago: int) -> datetime:
    """The start of the minute ``ago`` minutes before now, UTC."""
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    return now - timedelta(minutes=ago)


def put(cw, namespace, metric, dims, points, unit="Seconds"):
    cw.put_metric_data(Namespace=namespace, MetricData=[
        {"MetricName": metric, "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
         "Timestamp": at, "Value": value, "Unit": unit} for at, value in points])


def backend(endpoint, **opts):
    options = {"region": REGION, "endpoint_url": endpoint, "namespace": "AWS/RDS",
               "metric": "AuroraGlobalDBReplicationLag",
               "dimensions": {"DBClusterIdentifier": "orders-eu"}, "unit": "ms", **opts}
    return CloudWatchLag("orders-lag", CloudWatchLag.Options.model_validate(options))


AURORA = ("AWS/RDS", "AuroraGlobalDBReplicationLag", {"DBClusterIdentifier": "orders-eu"})


def test_newest_datapoint_in_ms_is_converted_to_seconds(cw, moto_endpoint):  # noqa: F811
    put(cw, *AURORA, [(minute(10), 1200.0), (minute(5), 800.0), (minute(2), 2500.0)],
        unit="Milliseconds")
    reading = backend(moto_endpoint).read_lag(TARGET)
    assert reading.seconds == pytest.approx(2.5)
    assert reading.replicating is True
    assert reading.observed_at == minute(2)
    assert reading.observed_at.tzinfo is not None
    assert reading.history == ()
    assert "2500 ms" in reading.detail


def test_history_is_oldest_first_in_seconds(cw, moto_endpoint):  # noqa: F811
    put(cw, *AURORA, [(minute(2), 2500.0), (minute(10), 1200.0), (minute(5), 800.0)])
    reading = backend(moto_endpoint).read_lag(TARGET, history=True)
    assert reading.history == (LagSample(minute(10), 1.2), LagSample(minute(5), 0.8),
                               LagSample(minute(2), 2.5))


def test_statistic_is_applied_per_period(cw, moto_endpoint):  # noqa: F811
    at = minute(3) + timedelta(seconds=10)
    put(cw, *AURORA, [(at, 1000.0), (at + timedelta(seconds=20), 3000.0)])
    assert backend(moto_endpoint).read_lag(TARGET).seconds == pytest.approx(3.0)
    average = backend(moto_endpoint, statistic="Average").read_lag(TARGET)
    assert average.seconds == pytest.approx(2.0)


def test_other_dimensions_are_not_read(cw, moto_endpoint):  # noqa: F811
    put(cw, "AWS/RDS", "AuroraGlobalDBReplicationLag", {"DBClusterIdentifier": "other"},
        [(minute(1), 99000.0)])
    put(cw, *AURORA, [(minute(1), 100.0)])
    assert backend(moto_endpoint).read_lag(TARGET).seconds == pytest.approx(0.1)


def test_replica_lag_minus_one_means_not_replicating(cw, moto_endpoint):  # noqa: F811
    dims = {"DBInstanceIdentifier": "orders-replica"}
    put(cw, "AWS/RDS", "ReplicaLag", dims,
        [(minute(6), 4.0), (minute(4), -1.0), (minute(3), 7.0), (minute(1), -1.0)])
    lag = backend(moto_endpoint, metric="ReplicaLag", dimensions=dims, unit="s",
                  stopped_value=-1)
    reading = lag.read_lag(TARGET, history=True)
    assert reading.replicating is False
    assert reading.seconds is None
    assert reading.observed_at == minute(1)
    assert "not running" in reading.detail
    assert [s.seconds for s in reading.history] == [4.0, 7.0]


def test_replica_lag_running_reads_seconds(cw, moto_endpoint):  # noqa: F811
    dims = {"DBInstanceIdentifier": "orders-replica"}
    put(cw, "AWS/RDS", "ReplicaLag", dims, [(minute(4), -1.0), (minute(1), 7.0)])
    reading = backend(moto_endpoint, metric="ReplicaLag", dimensions=dims, unit="s",
                      stopped_value=-1).read_lag(TARGET)
    assert (reading.seconds, reading.replicating) == (7.0, True)


def test_no_data_points_is_a_permanent_error_naming_the_metric(cw, moto_endpoint):  # noqa: F811
    put(cw, *AURORA, [(minute(30), 500.0)])  # older than the 15 minute window
    with pytest.raises(IntegrationError) as err:
        backend(moto_endpoint).read_lag(TARGET)
    assert err.value.kind is ErrorKind.PERMANENT
    assert ("no data points for AWS/RDS AuroraGlobalDBReplicationLag "
            "{DBClusterIdentifier=orders-eu} in us-east-1 in the last 15m") in str(err.value)


def test_check_reports_whether_the_metric_exists(cw, moto_endpoint):  # noqa: F811
    assert backend(moto_endpoint).check().ok is False
    put(cw, *AURORA, [(minute(1), 10.0)])
    result = backend(moto_endpoint).check()
    assert result.ok is True, result.message
    assert "exists" in result.message
    wrong = backend(moto_endpoint, dimensions={"DBClusterIdentifier": "orders-us"}).check()
    assert wrong.ok is False
    assert "not found" in wrong.message


def test_check_flags_extra_dimensions(cw, moto_endpoint):  # noqa: F811
    dims = {"SourceBucket": "a", "DestinationBucket": "b", "RuleId": "r1"}
    put(cw, "AWS/S3", "ReplicationLatency", dims, [(minute(1), 10.0)])
    partial = backend(moto_endpoint, namespace="AWS/S3", metric="ReplicationLatency",
                      dimensions={"SourceBucket": "a"}, unit="s").check()
    assert partial.ok is False
    assert "exactly the dimensions" in partial.message


def test_options_are_validated():
    good = {"region": REGION, "namespace": "AWS/RDS", "metric": "ReplicaLag"}
    options = CloudWatchLag.Options.model_validate(good)
    assert (options.statistic, options.unit, options.period, options.window) == \
        ("Maximum", "s", 60, 900)
    for bad in ({"colour": "red"}, {"period": 45}, {"unit": "min"}, {"statistic": "p99"}):
        with pytest.raises(pydantic.ValidationError):
            CloudWatchLag.Options.model_validate({**good, **bad})
    with pytest.raises(pydantic.ValidationError):
        CloudWatchLag.Options.model_validate({"namespace": "AWS/RDS", "metric": "ReplicaLag"})


def test_client_is_created_lazily_with_timeouts_and_two_attempts(moto_endpoint):  # noqa: F811
    lag = CloudWatchLag("x", CloudWatchLag.Options(region="eu-west-1", namespace="AWS/RDS",
                                                   metric="ReplicaLag", timeout=2.5))
    assert lag.capabilities == frozenset({LAG}) and lag.kind == "cloudwatch"
    assert lag._client is None
    config = lag.client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (2.5, 2.5)
    assert config.retries["total_max_attempts"] == 2  # the first call and one retry
    assert lag.client.meta.region_name == "eu-west-1"


def test_unreachable_endpoint_is_transient_and_bounded(moto_endpoint):  # noqa: F811
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: refused
    lag = backend(f"http://127.0.0.1:{port}", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(IntegrationError) as err:
        lag.read_lag(TARGET)
    assert err.value.kind is ErrorKind.TRANSIENT
    assert time.monotonic() - started < 5
    assert lag.check().ok is False


def test_silent_endpoint_times_out_as_transient(moto_endpoint):  # noqa: F811
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        lag = backend(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(IntegrationError) as err:
            lag.read_lag(TARGET)
        elapsed = time.monotonic() - started
        silent.settimeout(0.2)
        attempts = 0
        try:
            while True:
                silent.accept()[0].close()
                attempts += 1
        except TimeoutError:
            pass
    assert err.value.kind is ErrorKind.TRANSIENT
    assert attempts == 2  # the first call and one retry
    assert 1.0 <= elapsed < 5  # two reads of 0.5 s each plus a backoff under 1 s


def stubbed(code: str, status: int):
    client = boto3.session.Session().client(
        "cloudwatch", region_name=REGION, aws_access_key_id="k", aws_secret_access_key="s")
    stubber = Stubber(client)
    stubber.add_client_error("get_metric_data", service_error_code=code,
                             service_message="nope", http_status_code=status)
    stubber.add_client_error("list_metrics", service_error_code=code,
                             service_message="nope", http_status_code=status)
    stubber.activate()
    options = CloudWatchLag.Options(region=REGION, namespace="AWS/RDS", metric="ReplicaLag")
    return CloudWatchLag("orders-lag", options, client=client), stubber


@pytest.mark.parametrize("code,status,kind", [
    ("AccessDenied", 403, ErrorKind.NOT_PERMITTED),
    ("Throttling", 400, ErrorKind.TRANSIENT),
    ("InternalServiceError", 500, ErrorKind.TRANSIENT),
    ("InvalidParameterValue", 400, ErrorKind.PERMANENT),
])
def test_aws_errors_map_to_kinds(code, status, kind):
    lag, stubber = stubbed(code, status)
    with pytest.raises(IntegrationError) as err:
        lag.read_lag(TARGET)
    assert err.value.kind is kind
    assert "orders-lag" in str(err.value) and code in str(err.value)
    result = lag.check()
    assert result.ok is False and code in result.message
    stubber.assert_no_pending_responses()
