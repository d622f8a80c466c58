"""Route 53 failover/weighted traffic switch: moto's server for records that really change,
botocore Stubber for what moto cannot vary (PENDING changes, PriorRequestNotComplete)."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import boto3
import pydantic
import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.stub import Stubber

from integrations.aws.route53_failover import Route53Failover
from integrations.aws.session import error_code, make_client
from integrations.base import TRAFFIC, WEIGHTS, ErrorKind, IntegrationError, Target
from tests.moto_fixture import moto_endpoint, reset_moto  # noqa: F401

TARGET = Target(service="orders")
RECORDS = {"us-east-1": "orders-east", "us-west-2": "orders-west"}
NAME = "api.example.com."


@pytest.fixture
def r53(moto_endpoint):  # noqa: F811
    reset_moto(moto_endpoint)
    return make_client("route53", region="us-east-1", timeout=5, endpoint_url=moto_endpoint)


def calls(client) -> list[str]:
    """Names of the API operations ``client`` sends, in order."""
    seen: list[str] = []
    client.meta.events.register("before-call.route53.*",
                                lambda model, **_: seen.append(model.name))
    return seen


def make_zone(r53) -> str:
    return r53.create_hosted_zone(Name="example.com",
                                  CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"]


def failover_zone(r53) -> tuple[str, str]:
    zone = make_zone(r53)
    hc = r53.create_health_check(CallerReference=str(uuid.uuid4()), HealthCheckConfig={
        "Type": "HTTPS", "FullyQualifiedDomainName": "east.example.com", "Port": 443,
        "ResourcePath": "/health"})["HealthCheck"]["Id"]
    changes = [
        {"Action": "CREATE", "ResourceRecordSet": {
            "Name": NAME, "Type": "A", "TTL": 60, "SetIdentifier": "orders-east",
            "Failover": "PRIMARY", "HealthCheckId": hc,
            "ResourceRecords": [{"Value": "192.0.2.10"}, {"Value": "192.0.2.11"}]}},
        {"Action": "CREATE", "ResourceRecordSet": {
            "Name": NAME, "Type": "A", "TTL": 30, "SetIdentifier": "orders-west",
            "Failover": "SECONDARY", "ResourceRecords": [{"Value": "198.51.100.20"}]}},
        {"Action": "CREATE", "ResourceRecordSet": {
            "Name": "www.example.com.", "Type": "A", "TTL": 300,
            "ResourceRecords": [{"Value": "203.0.113.1"}]}},
    ]
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": changes})
    return zone, hc


def weighted_zone(r53, east: int, west: int) -> str:
    zone = make_zone(r53)
    changes = [{"Action": "CREATE", "ResourceRecordSet": {
        "Name": NAME, "Type": "CNAME", "TTL": 60, "SetIdentifier": sid, "Weight": weight,
        "ResourceRecords": [{"Value": f"{sid}.lb.example.net"}]}}
        for sid, weight in (("orders-east", east), ("orders-west", west))]
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": changes})
    return zone


def backend(zone, endpoint=None, client=None, **extra) -> Route53Failover:
    options = Route53Failover.Options.model_validate(
        {"hosted_zone_id": zone, "record_name": "api.example.com", "records": RECORDS,
         "endpoint_url": endpoint, **extra})
    switch = Route53Failover("orders-dns", options, client=client)
    switch._sleep = lambda seconds: None
    return switch


def records(r53, zone) -> dict[str, dict]:
    listed = r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    return {rr["SetIdentifier"]: rr for rr in listed if rr.get("SetIdentifier")}


def test_shift_flips_failover_roles_and_keeps_everything_else(r53, moto_endpoint):  # noqa: F811
    zone, hc = failover_zone(r53)
    before = records(r53, zone)
    switch = backend(zone, moto_endpoint)
    assert switch.active_region(TARGET) == "us-east-1"

    result = switch.shift(TARGET, "us-west-2")

    assert result.changed is True and result.dry_run is False
    assert result.summary.startswith(
        "made api.example.com. A PRIMARY in us-west-2 (was us-east-1); change ")
    assert result.details["before"] == {"us-east-1": "PRIMARY", "us-west-2": "SECONDARY"}
    assert result.details["after"] == {"us-east-1": "SECONDARY", "us-west-2": "PRIMARY"}
    assert result.details["status"] == "INSYNC"
    json.dumps(result.details)  # JSON-serialisable
    after = records(r53, zone)
    assert after["orders-west"]["Failover"] == "PRIMARY"
    assert after["orders-east"]["Failover"] == "SECONDARY"
    for sid in after:  # only the role changed
        assert {k: v for k, v in after[sid].items() if k != "Failover"} == \
               {k: v for k, v in before[sid].items() if k != "Failover"}
    assert after["orders-east"]["HealthCheckId"] == hc
    assert after["orders-east"]["ResourceRecords"] == [{"Value": "192.0.2.10"},
                                                       {"Value": "192.0.2.11"}]
    assert after["orders-west"]["TTL"] == 30
    assert r53.get_change(Id=result.details["change_id"])["ChangeInfo"]["Status"] == "INSYNC"
    assert switch.active_region(TARGET) == "us-west-2"
    www = [rr for rr in r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
           if rr["Name"] == "www.example.com."]
    assert www[0]["ResourceRecords"] == [{"Value": "203.0.113.1"}]


def test_dry_run_changes_nothing(r53, moto_endpoint):  # noqa: F811
    zone, _ = failover_zone(r53)
    before = records(r53, zone)
    switch = backend(zone, moto_endpoint)
    sent = calls(switch.client)

    result = switch.shift(TARGET, "us-west-2", dry_run=True)

    assert result.dry_run is True and result.changed is False
    assert result.summary == "would make api.example.com. A PRIMARY in us-west-2 (was us-east-1)"
    batch = result.details["change_batch"]
    assert "drbot" in batch["Comment"]
    assert [(c["Action"], c["ResourceRecordSet"]["SetIdentifier"],
             c["ResourceRecordSet"]["Failover"]) for c in batch["Changes"]] == [
        ("UPSERT", "orders-west", "PRIMARY"), ("UPSERT", "orders-east", "SECONDARY")]
    assert "ChangeResourceRecordSets" not in sent and sent == ["ListResourceRecordSets"]
    assert records(r53, zone) == before


def test_already_active_is_a_no_op(r53, moto_endpoint):  # noqa: F811
    zone, _ = failover_zone(r53)
    switch = backend(zone, moto_endpoint)
    sent = calls(switch.client)
    result = switch.shift(TARGET, "us-east-1")
    assert result.changed is False
    assert result.summary == "already: api.example.com. A is PRIMARY in us-east-1"
    assert result.details["change_batch"]["Changes"] == []
    assert sent == ["ListResourceRecordSets"]


def test_weighted_policy(r53, moto_endpoint):  # noqa: F811
    zone = weighted_zone(r53, east=100, west=0)
    switch = backend(zone, moto_endpoint, policy="weighted", record_type="CNAME")
    assert switch.active_region(TARGET) == "us-east-1"

    result = switch.shift(TARGET, "us-west-2")

    assert result.changed is True
    assert result.details["before"] == {"us-east-1": 100, "us-west-2": 0}
    assert result.details["after"] == {"us-east-1": 0, "us-west-2": 100}
    after = records(r53, zone)
    assert after["orders-west"]["Weight"] == 100 and after["orders-east"]["Weight"] == 0
    assert after["orders-west"]["ResourceRecords"] == [{"Value": "orders-west.lb.example.net"}]
    assert switch.active_region(TARGET) == "us-west-2"
    assert switch.shift(TARGET, "us-west-2").changed is False


@pytest.mark.parametrize("east,west", [(50, 50), (0, 0)])
def test_weighted_split_has_no_active_region_but_can_be_shifted(r53, moto_endpoint,  # noqa: F811
                                                                 east, west):
    zone = weighted_zone(r53, east=east, west=west)
    switch = backend(zone, moto_endpoint, policy="weighted", record_type="CNAME")
    with pytest.raises(IntegrationError) as err:
        switch.active_region(TARGET)
    assert err.value.kind is ErrorKind.PERMANENT and "split" in str(err.value)
    check = switch.check()
    assert check.ok is True and "no single region is active" in check.message
    switch.shift(TARGET, "us-east-1")
    assert switch.active_region(TARGET) == "us-east-1"


def test_missing_record_is_permanent(r53, moto_endpoint):  # noqa: F811
    zone, _ = failover_zone(r53)
    switch = backend(zone, moto_endpoint,
                     records={"us-east-1": "orders-east", "eu-west-1": "orders-eu"})
    with pytest.raises(IntegrationError) as err:
        switch.shift(TARGET, "eu-west-1")
    assert err.value.kind is ErrorKind.PERMANENT
    assert "eu-west-1 (SetIdentifier orders-eu)" in str(err.value)
    check = switch.check()
    assert check.ok is False and "orders-eu" in check.message


def test_wrong_policy_and_unknown_region_are_permanent(r53, moto_endpoint):  # noqa: F811
    zone, _ = failover_zone(r53)
    with pytest.raises(IntegrationError) as err:
        backend(zone, moto_endpoint, policy="weighted").active_region(TARGET)
    assert err.value.kind is ErrorKind.PERMANENT and "has no Weight" in str(err.value)
    with pytest.raises(IntegrationError) as err:
        backend(zone, moto_endpoint).shift(TARGET, "ap-south-1")
    assert err.value.kind is ErrorKind.PERMANENT and "ap-south-1" in str(err.value)


def test_missing_zone_is_permanent(r53, moto_endpoint):  # noqa: F811
    with pytest.raises(IntegrationError) as err:
        backend("Z0000000000000000000", moto_endpoint).active_region(TARGET)
    assert err.value.kind is ErrorKind.PERMANENT and "does not exist" in str(err.value)


def test_check_reports_records_and_active_region(r53, moto_endpoint):  # noqa: F811
    zone, _ = failover_zone(r53)
    result = backend(zone, moto_endpoint).check()
    assert result.ok is True, result.message
    assert "us-east-1=PRIMARY, us-west-2=SECONDARY" in result.message
    assert "us-east-1 is active" in result.message


# -- Stubber: sequences moto cannot produce ---------------------------------------------

ZONE = "Z1D633PJN98FT9"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
ALIAS_EAST = {"Name": NAME, "Type": "A", "SetIdentifier": "orders-east", "Failover": "PRIMARY",
              "AliasTarget": {"HostedZoneId": "Z35SXDOTRQ7X7K", "EvaluateTargetHealth": True,
                              "DNSName": "east-lb-1.us-east-1.elb.amazonaws.com."}}
ALIAS_WEST = {"Name": NAME, "Type": "A", "SetIdentifier": "orders-west",
              "Failover": "SECONDARY", "HealthCheckId": "abcdef12-3456-7890-abcd-ef1234567890",
              "AliasTarget": {"HostedZoneId": "Z1H1FL5HABSF5", "EvaluateTargetHealth": False,
                              "DNSName": "west-lb-1.us-west-2.elb.amazonaws.com."}}
LIST_PARAMS = {"HostedZoneId": ZONE, "StartRecordName": NAME, "StartRecordType": "A"}
CHANGE_PARAMS = {"HostedZoneId": ZONE, "ChangeBatch": {
    "Comment": "drbot orders-dns: shift api.example.com. A to us-west-2",
    "Changes": [{"Action": "UPSERT", "ResourceRecordSet": {**ALIAS_WEST, "Failover": "PRIMARY"}},
                {"Action": "UPSERT", "ResourceRecordSet": {**ALIAS_EAST, "Failover": "SECONDARY"}}]}}


def change_info(status):
    return {"ChangeInfo": {"Id": "/change/C2682N5HXP0BZ4", "Status": status, "SubmittedAt": T0}}


def stubbed(**extra):
    client = boto3.session.Session().client(
        "route53", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    stubber = Stubber(client)
    stubber.add_response("list_resource_record_sets", {
        "ResourceRecordSets": [ALIAS_EAST, ALIAS_WEST], "IsTruncated": False,
        "MaxItems": "300"}, LIST_PARAMS)
    switch = backend(ZONE, client=client, **extra)
    slept: list[float] = []
    switch._sleep = slept.append
    return switch, stubber, slept


def test_prior_request_not_complete_is_retried_then_waits_for_insync():
    switch, stubber, slept = stubbed()
    stubber.add_client_error("change_resource_record_sets",
                             service_error_code="PriorRequestNotComplete",
                             service_message="The request was rejected because Route 53 "
                                             "was still processing a prior request.",
                             http_status_code=400, expected_params=CHANGE_PARAMS)
    stubber.add_response("change_resource_record_sets", change_info("PENDING"), CHANGE_PARAMS)
    stubber.add_response("get_change", change_info("PENDING"), {"Id": "/change/C2682N5HXP0BZ4"})
    stubber.add_response("get_change", change_info("INSYNC"), {"Id": "/change/C2682N5HXP0BZ4"})
    with stubber:
        result = switch.shift(TARGET, "us-west-2")
        stubber.assert_no_pending_responses()
    assert result.changed is True
    assert result.details["status"] == "INSYNC"
    assert result.details["change_id"] == "/change/C2682N5HXP0BZ4"
    assert slept == [0.5, 5, 5]  # one backoff, then two polls


def test_pending_past_insync_timeout_is_transient_naming_the_change():
    switch, stubber, slept = stubbed(insync_timeout=12, poll_interval=5)
    stubber.add_response("change_resource_record_sets", change_info("PENDING"), CHANGE_PARAMS)
    for _ in range(3):
        stubber.add_response("get_change", change_info("PENDING"), {"Id": "/change/C2682N5HXP0BZ4"})
    with stubber, pytest.raises(IntegrationError) as err:
        switch.shift(TARGET, "us-west-2")
    assert err.value.kind is ErrorKind.TRANSIENT
    assert "/change/C2682N5HXP0BZ4" in str(err.value) and "PENDING" in str(err.value)
    assert slept == [5, 5, 2]


def test_throttling_gives_up_after_bounded_tries_as_transient():
    switch, stubber, slept = stubbed(wait_insync=False)
    for _ in range(5):
        stubber.add_client_error("change_resource_record_sets",
                                 service_error_code="Throttling", service_message="Rate exceeded",
                                 http_status_code=400, expected_params=CHANGE_PARAMS)
    with stubber, pytest.raises(IntegrationError) as err:
        switch.shift(TARGET, "us-west-2")
    stubber.assert_no_pending_responses()
    assert err.value.kind is ErrorKind.TRANSIENT and "Throttling" in str(err.value)
    assert slept == [0.5, 1.0, 2.0, 4.0]


def test_no_wait_returns_pending_status():
    switch, stubber, slept = stubbed(wait_insync=False)
    stubber.add_response("change_resource_record_sets", change_info("PENDING"), CHANGE_PARAMS)
    with stubber:
        result = switch.shift(TARGET, "us-west-2")
    assert result.details["status"] == "PENDING" and slept == []


def test_options_and_lazy_client():
    switch = backend(ZONE)
    o = switch.options
    assert o.record_name == NAME and o.record_type == "A" and o.policy == "failover"
    assert o.region == "us-east-1" and o.wait_insync is True and o.insync_timeout == 300
    assert switch.kind == "route53_failover" and switch.capabilities == frozenset({TRAFFIC, WEIGHTS})
    assert switch._client is None
    assert switch.client.meta.config.read_timeout == 5.0
    assert Route53Failover.Options.model_validate(
        {"hosted_zone_id": ZONE, "record_name": "API.Example.com.",
         "records": RECORDS}).record_name == NAME
    bad = [
        {"records": {"us-east-1": "a"}},
        {"records": {"us-east-1": "a", "us-west-2": "a"}},
        {"records": {"a": "1", "b": "2", "c": "3"}},
        {"records": RECORDS, "record_type": "MX"},
        {"records": RECORDS, "zone": "x"},
    ]
    for extra in bad:
        with pytest.raises(pydantic.ValidationError):
            Route53Failover.Options.model_validate(
                {"hosted_zone_id": ZONE, "record_name": NAME, **extra})
    assert Route53Failover.Options.model_validate(
        {"hosted_zone_id": ZONE, "record_name": NAME, "policy": "weighted",
         "records": {"a": "1", "b": "2", "c": "3"}}).policy == "weighted"


def test_an_aws_timeout_has_no_error_code_instead_of_crashing_the_mapping():
    """botocore's ReadTimeoutError carries ``response = None``: the code lookup must say
    None (then the timeout is mapped as transient), not raise AttributeError."""
    assert error_code(ReadTimeoutError(endpoint_url="https://route53.amazonaws.com")) is None
