"""ElastiCache Global Datastore promotion and lag. moto has no global datastores, so the
ElastiCache calls run a real boto3 client with botocore's Stubber (every parameter checked
against the AWS model); the lag is read from a real moto server's CloudWatch."""
from __future__ import annotations

import json
import socket
from datetime import datetime, timedelta, timezone

import boto3
import pydantic
import pytest
from botocore.stub import Stubber

from integrations.aws.elasticache_global import ElastiCacheGlobal
from integrations.aws.session import make_client
from integrations.base import DATABASE, LAG, DbRole, ErrorKind, IntegrationError, Target
from tests.moto_fixture import moto_endpoint, reset_moto  # noqa: F401

TARGET = Target(service="sessions")
GID = "ldgnf-sessions-global"
MEMBERS = {"primary": "sessions-use1", "standby": "sessions-usw2"}
AWS = {"sessions-use1": "us-east-1", "sessions-usw2": "us-west-2"}
DESCRIBE = {"GlobalReplicationGroupId": GID, "ShowMemberInfo": True}
TO_STANDBY = {"GlobalReplicationGroupId": GID, "PrimaryRegion": "us-west-2",
              "PrimaryReplicationGroupId": "sessions-usw2"}


def described(primary="sessions-use1", status="available", member_status="associated", members=tuple(AWS)):
    return {"GlobalReplicationGroups": [{
        "GlobalReplicationGroupId": GID, "Status": status, "Engine": "redis", "EngineVersion": "7.1",
        "CacheNodeType": "cache.r7g.large", "ClusterEnabled": False,
        "Members": [{"ReplicationGroupId": rg, "ReplicationGroupRegion": AWS[rg],
                     "Role": "PRIMARY" if rg == primary else "SECONDARY", "AutomaticFailover": "enabled",
                     "Status": member_status} for rg in members]}]}


def make(cloudwatch=None, **extra):
    client = boto3.session.Session().client("elasticache", region_name="us-east-1",
                                            aws_access_key_id="k", aws_secret_access_key="s")
    options = ElastiCacheGlobal.Options.model_validate(
        {"global_replication_group_id": GID, "region": "us-east-1", "members": MEMBERS,
         "poll_interval": 15, **extra})
    backend = ElastiCacheGlobal("sessions-cache", options, client=client, cloudwatch=cloudwatch)
    slept: list[float] = []
    backend._sleep = slept.append
    sent: list[str] = []
    client.meta.events.register("before-parameter-build.elasticache.*",
                                lambda model, **_: sent.append(model.name))
    return backend, Stubber(client), slept, sent


def test_options_and_capabilities():
    assert ElastiCacheGlobal.capabilities == frozenset({DATABASE, LAG})
    base = {"global_replication_group_id": GID, "region": "us-east-1"}
    for bad in ({"members": {"a": "x"}}, {"members": {"a": "x", "b": "x"}},
                {"members": MEMBERS, "lag_dimensions": {"elsewhere": {"CacheClusterId": "c"}}},
                {"members": MEMBERS, "mode": "switchover"}):
        with pytest.raises(pydantic.ValidationError):
            ElastiCacheGlobal.Options.model_validate({**base, **bad})


def test_promote_sends_exact_parameters_and_waits_until_the_target_is_primary():
    backend, stubber, slept, sent = make()
    stubber.add_response("describe_global_replication_groups", described(), DESCRIBE)   # writer_region
    stubber.add_response("describe_global_replication_groups", described(), DESCRIBE)   # promote
    stubber.add_response("failover_global_replication_group",
                         {"GlobalReplicationGroup": described(status="modifying")["GlobalReplicationGroups"][0]},
                         TO_STANDBY)
    stubber.add_response("describe_global_replication_groups", described(status="modifying"), DESCRIBE)
    stubber.add_response("describe_global_replication_groups",
                         described(primary="sessions-usw2", member_status="associating"), DESCRIBE)
    stubber.add_response("describe_global_replication_groups", described(primary="sessions-usw2"), DESCRIBE)
    stubber.add_response("describe_global_replication_groups", described(primary="sessions-usw2"), DESCRIBE)
    with stubber:
        assert backend.writer_region(TARGET) == "primary"
        result = backend.promote(TARGET, "standby")
        assert backend.writer_region(TARGET) == "standby"
        stubber.assert_no_pending_responses()
    assert result.changed is True
    assert result.summary == ("promoted sessions-usw2 (us-west-2): standby is now the primary of ElastiCache "
                              "global datastore ldgnf-sessions-global (was primary)")
    assert result.details["members"] == {"primary": {"role": "SECONDARY", "status": "associated"},
                                         "standby": {"role": "PRIMARY", "status": "associated"}}
    json.dumps(result.details)
    assert slept == [15, 15, 15] and sent.count("FailoverGlobalReplicationGroup") == 1


def test_dry_run_and_already_primary_only_read():
    backend, stubber, slept, sent = make()
    stubber.add_response("describe_global_replication_groups", described(), DESCRIBE)
    stubber.add_response("describe_global_replication_groups", described(), DESCRIBE)
    with stubber:
        plan = backend.promote(TARGET, "standby", dry_run=True)
        already = backend.promote(TARGET, "primary")
    assert plan.dry_run is True and plan.changed is False
    assert plan.summary == ("would promote sessions-usw2 (us-west-2) to primary of ElastiCache global datastore "
                            "ldgnf-sessions-global, from primary to standby; writes not yet replicated may be lost")
    assert already.changed is False and already.summary.startswith("already the primary: primary writes")
    assert "FailoverGlobalReplicationGroup" not in sent and slept == []


def test_switchover_is_refused_and_failover_needs_allow_data_loss():
    backend, stubber, _, sent = make()
    with stubber:
        with pytest.raises(IntegrationError) as switchover:
            backend.promote(TARGET, "standby", mode="switchover")
        with pytest.raises(IntegrationError) as failover:
            backend.promote(TARGET, "standby", mode="failover", dry_run=True)
    assert switchover.value.kind is ErrorKind.PERMANENT
    assert "cannot switch over without possible data loss" in str(switchover.value)
    assert "use database.promote" in str(switchover.value)
    assert "refused unless data loss is explicitly allowed" in str(failover.value)
    assert sent == []


def test_failover_with_allow_data_loss_makes_the_same_call():
    backend, stubber, _, sent = make()
    stubber.add_response("describe_global_replication_groups", described(), DESCRIBE)
    stubber.add_response("failover_global_replication_group",
                         {"GlobalReplicationGroup": described()["GlobalReplicationGroups"][0]}, TO_STANDBY)
    stubber.add_response("describe_global_replication_groups", described(primary="sessions-usw2"), DESCRIBE)
    with stubber:
        result = backend.promote(TARGET, "standby", mode="failover", allow_data_loss=True)
    assert result.changed is True and result.details["mode"] == "failover"
    assert sent == ["DescribeGlobalReplicationGroups", "FailoverGlobalReplicationGroup",
                    "DescribeGlobalReplicationGroups"]


def test_refused_state_is_transient_and_throttling_is_retried():
    backend, stubber, slept, _ = make()
    stubber.add_client_error("describe_global_replication_groups", "Throttling", "Rate exceeded", 400,
                             expected_params=DESCRIBE)
    stubber.add_response("describe_global_replication_groups", described(), DESCRIBE)
    stubber.add_client_error("failover_global_replication_group", "InvalidGlobalReplicationGroupStateFault",
                             "not available", 400, expected_params=TO_STANDBY)
    with stubber, pytest.raises(IntegrationError) as err:
        backend.promote(TARGET, "standby")
    assert err.value.kind is ErrorKind.TRANSIENT and "ElastiCache refused" in str(err.value)
    assert slept == [0.5]


def test_busy_datastore_is_transient_and_not_settling_times_out():
    backend, stubber, slept, sent = make(wait_timeout=30)
    stubber.add_response("describe_global_replication_groups", described(status="modifying"), DESCRIBE)
    stubber.add_response("describe_global_replication_groups", described(), DESCRIBE)
    stubber.add_response("failover_global_replication_group",
                         {"GlobalReplicationGroup": described()["GlobalReplicationGroups"][0]}, TO_STANDBY)
    stubber.add_response("describe_global_replication_groups", described(status="modifying"), DESCRIBE)
    stubber.add_response("describe_global_replication_groups", described(status="modifying"), DESCRIBE)
    with stubber:
        with pytest.raises(IntegrationError) as busy:
            backend.promote(TARGET, "standby")
        with pytest.raises(IntegrationError) as late:
            backend.promote(TARGET, "standby")
    assert busy.value.kind is ErrorKind.TRANSIENT and "is modifying" in str(busy.value)
    assert late.value.kind is ErrorKind.TRANSIENT and "after 30s" in str(late.value)
    assert slept == [15, 15]


def test_promotion_ending_with_another_primary_is_permanent():
    backend, stubber, _, _ = make()
    stubber.add_response("describe_global_replication_groups", described(), DESCRIBE)
    stubber.add_response("failover_global_replication_group",
                         {"GlobalReplicationGroup": described()["GlobalReplicationGroups"][0]}, TO_STANDBY)
    stubber.add_response("describe_global_replication_groups", described(status="modifying"), DESCRIBE)
    stubber.add_response("describe_global_replication_groups", described(), DESCRIBE)
    with stubber, pytest.raises(IntegrationError) as err:
        backend.promote(TARGET, "standby")
    assert err.value.kind is ErrorKind.PERMANENT and "ended with primary primary instead" in str(err.value)


def test_an_api_that_never_answers_is_transient(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers
    try:
        options = ElastiCacheGlobal.Options.model_validate(
            {"global_replication_group_id": GID, "region": "us-east-1", "members": MEMBERS, "timeout": 0.3,
             "endpoint_url": f"http://127.0.0.1:{silent.getsockname()[1]}"})
        with pytest.raises(IntegrationError) as err:
            ElastiCacheGlobal("sessions-cache", options).writer_region(TARGET)
    finally:
        silent.close()
    assert err.value.kind is ErrorKind.TRANSIENT and "could not reach AWS in time" in str(err.value)


def test_replication_roles():
    backend, stubber, _, _ = make()
    stubber.add_response("describe_global_replication_groups", described(), DESCRIBE)
    stubber.add_response("describe_global_replication_groups", described(members=("sessions-use1",)), DESCRIBE)
    stubber.add_response("describe_global_replication_groups", described(status="modifying"), DESCRIBE)
    with stubber:
        both = backend.replication(TARGET)
        alone = backend.replication(TARGET)
        with pytest.raises(IntegrationError) as busy:
            backend.replication(TARGET)
    assert both.of("primary").role is DbRole.WRITER and both.replicates_from("standby", "primary")
    assert alone.of("standby").role is DbRole.OUTSIDE
    assert busy.value.kind is ErrorKind.TRANSIENT


def test_lag_is_read_from_cloudwatch_in_the_secondary_region(moto_endpoint):  # noqa: F811
    reset_moto(moto_endpoint)
    cw = make_client("cloudwatch", region="us-west-2", timeout=5, endpoint_url=moto_endpoint)
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    cw.put_metric_data(Namespace="AWS/ElastiCache", MetricData=[
        {"MetricName": "GlobalDatastoreReplicationLag", "Timestamp": now - timedelta(minutes=m), "Value": v,
         "Unit": "Seconds", "Dimensions": [{"Name": "CacheClusterId", "Value": "sessions-usw2-001"}]}
        for m, v in ((6, 0.4), (3, 1.5))])
    backend, stubber, _, _ = make(cloudwatch=cw)
    stubber.add_response("describe_global_replication_groups", described(), DESCRIBE)
    stubber.add_response("describe_global_replication_groups", described(primary="sessions-usw2"), DESCRIBE)
    with stubber:
        reading = backend.read_lag(TARGET, history=True)
        with pytest.raises(IntegrationError) as none:  # us-east-1 (now secondary) has no datapoints
            backend.read_lag(TARGET)
    assert reading.seconds == pytest.approx(1.5) and reading.observed_at == now - timedelta(minutes=3)
    assert [s.seconds for s in reading.history] == [pytest.approx(0.4), pytest.approx(1.5)]
    assert reading.detail.startswith("standby: Maximum of GlobalDatastoreReplicationLag")
    assert none.value.kind is ErrorKind.PERMANENT and "{CacheClusterId=sessions-use1-001}" in str(none.value)


def test_check_reports_missing_members_and_never_raises():
    backend, stubber, _, _ = make()
    stubber.add_response("describe_global_replication_groups", described(), DESCRIBE)
    stubber.add_response("describe_global_replication_groups", described(members=("sessions-use1",)), DESCRIBE)
    stubber.add_client_error("describe_global_replication_groups", "GlobalReplicationGroupNotFoundFault",
                             "no", 404, expected_params=DESCRIBE)
    with stubber:
        ok, missing, gone = backend.check(), backend.check(), backend.check()
    assert ok.ok and ok.message.endswith("has members primary, standby; primary is the primary.")
    assert not missing.ok and "not members: standby (sessions-usw2)" in missing.message
    assert not gone.ok and "does not exist" in gone.message
