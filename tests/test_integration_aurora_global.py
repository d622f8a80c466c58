"""Aurora global database switchover/failover. moto implements none of the global
switchover/failover calls, so these run against a real boto3 RDS client with botocore's
Stubber, which checks every request parameter and every response against the AWS model."""
from __future__ import annotations

import json

import boto3
import pydantic
import pytest
from botocore.stub import Stubber

from integrations.aws.aurora_global import AuroraGlobal
from integrations.base import DATABASE, ErrorKind, IntegrationError, Target

TARGET = Target(service="orders")
GID = "orders-global"
EAST = "arn:aws:rds:us-east-1:123456789012:cluster:orders-east"
WEST = "arn:aws:rds:us-west-2:123456789012:cluster:orders-west"
MEMBERS = {"us-east-1": EAST, "us-west-2": WEST}
DESCRIBE = {"GlobalClusterIdentifier": GID}
TO_WEST = {"GlobalClusterIdentifier": GID, "TargetDbClusterIdentifier": WEST}


def global_cluster(writer=EAST, status="available", failover=None, members=(EAST, WEST)):
    gc = {
        "GlobalClusterIdentifier": GID,
        "GlobalClusterArn": f"arn:aws:rds::123456789012:global-cluster:{GID}",
        "Status": status, "Engine": "aurora-postgresql", "EngineVersion": "15.4",
        "GlobalClusterMembers": [
            {"DBClusterArn": arn, "IsWriter": arn == writer,
             "Readers": [a for a in members if a != arn] if arn == writer else [],
             "SynchronizationStatus": "connected"}
            for arn in members],
    }
    if failover:
        status_, data_loss = failover
        gc["FailoverState"] = {"Status": status_, "FromDbClusterArn": EAST,
                               "ToDbClusterArn": WEST, "IsDataLossAllowed": data_loss}
    return gc


def described(**kwargs):
    return {"GlobalClusters": [global_cluster(**kwargs)]}


def stubbed(**extra):
    client = boto3.session.Session().client(
        "rds", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    options = AuroraGlobal.Options.model_validate(
        {"global_cluster_id": GID, "region": "us-east-1", "members": MEMBERS,
         "poll_interval": 15, **extra})
    backend = AuroraGlobal("orders-global-db", options, client=client)
    slept: list[float] = []
    backend._sleep = slept.append
    sent: list[str] = []
    client.meta.events.register("before-parameter-build.rds.*",
                                lambda model, **_: sent.append(model.name))
    return backend, Stubber(client), slept, sent


def test_switchover_sends_exact_parameters_and_polls_until_target_writes():
    backend, stubber, slept, sent = stubbed()
    stubber.add_response("describe_global_clusters", described(), DESCRIBE)  # writer_region
    stubber.add_response("describe_global_clusters", described(), DESCRIBE)  # promote
    stubber.add_response("switchover_global_cluster",
                         {"GlobalCluster": global_cluster(failover=("pending", False))},
                         TO_WEST)
    stubber.add_response("describe_global_clusters",
                         described(status="switching-over",
                                   failover=("switching-over", False)), DESCRIBE)
    stubber.add_response("describe_global_clusters", described(writer=WEST), DESCRIBE)
    stubber.add_response("describe_global_clusters", described(writer=WEST), DESCRIBE)
    with stubber:
        assert backend.writer_region(TARGET) == "us-east-1"
        result = backend.promote(TARGET, "us-west-2", mode="switchover")
        assert backend.writer_region(TARGET) == "us-west-2"
        stubber.assert_no_pending_responses()
    assert result.changed is True and result.dry_run is False
    assert result.summary == ("switched over Aurora global database orders-global: "
                              "us-west-2 is now the writer (was us-east-1)")
    assert result.details["members"] == {
        "us-east-1": {"writer": False, "sync": "connected"},
        "us-west-2": {"writer": True, "sync": "connected"}}
    assert result.details["target_arn"] == WEST and result.details["status"] == "available"
    json.dumps(result.details)
    assert slept == [15, 15]
    assert sent.count("SwitchoverGlobalCluster") == 1
    assert "FailoverGlobalCluster" not in sent


def test_failover_is_refused_without_allow_data_loss_and_calls_nothing():
    backend, stubber, _, sent = stubbed()
    with stubber:  # nothing queued: any call at all would fail the Stubber
        with pytest.raises(IntegrationError) as err:
            backend.promote(TARGET, "us-west-2", mode="failover")
        with pytest.raises(IntegrationError) as dry:
            backend.promote(TARGET, "us-west-2", mode="failover", dry_run=True)
    assert err.value.kind is ErrorKind.PERMANENT and dry.value.kind is ErrorKind.PERMANENT
    assert "refused unless data loss is explicitly allowed" in str(err.value)
    assert sent == []


def test_failover_with_allow_data_loss_sends_allow_data_loss_true():
    backend, stubber, slept, sent = stubbed()
    stubber.add_response("describe_global_clusters", described(), DESCRIBE)
    stubber.add_response("failover_global_cluster",
                         {"GlobalCluster": global_cluster(failover=("pending", True))},
                         {**TO_WEST, "AllowDataLoss": True})
    stubber.add_response("describe_global_clusters",
                         described(status="failing-over", failover=("failing-over", True)),
                         DESCRIBE)
    stubber.add_response("describe_global_clusters", described(writer=WEST), DESCRIBE)
    with stubber:
        result = backend.promote(TARGET, "us-west-2", mode="failover", allow_data_loss=True)
        stubber.assert_no_pending_responses()
    assert result.changed is True
    assert result.summary.startswith("failed over Aurora global database orders-global")
    assert result.details["mode"] == "failover"
    assert sent == ["DescribeGlobalClusters", "FailoverGlobalCluster",
                    "DescribeGlobalClusters", "DescribeGlobalClusters"]


def test_already_the_writer_makes_no_call():
    backend, stubber, _, sent = stubbed()
    stubber.add_response("describe_global_clusters", described(), DESCRIBE)
    with stubber:
        result = backend.promote(TARGET, "us-east-1", mode="switchover")
    assert result.changed is False
    assert result.summary == ("already the writer: us-east-1 writes for Aurora global "
                              "database orders-global")
    assert sent == ["DescribeGlobalClusters"]


@pytest.mark.parametrize("mode,verb", [("switchover", "switch over"),
                                       ("failover", "fail over (allowing data loss)")])
def test_dry_run_only_describes(mode, verb):
    backend, stubber, slept, sent = stubbed()
    stubber.add_response("describe_global_clusters", described(), DESCRIBE)
    with stubber:
        result = backend.promote(TARGET, "us-west-2", mode=mode, allow_data_loss=True,
                                 dry_run=True)
        stubber.assert_no_pending_responses()
    assert result.dry_run is True and result.changed is False
    assert result.summary == (f"would {verb} Aurora global database orders-global from "
                              f"us-east-1 to us-west-2")
    assert sent == ["DescribeGlobalClusters"] and slept == []


def test_promote_mode_and_unknown_modes_are_refused_with_a_hint():
    backend, stubber, _, sent = stubbed()
    with stubber:
        for mode in ("promote", "detach"):
            with pytest.raises(IntegrationError) as err:
                backend.promote(TARGET, "us-west-2", mode=mode, allow_data_loss=True)
            assert err.value.kind is ErrorKind.PERMANENT
            assert "'switchover'" in str(err.value)
    assert sent == []


def test_cancelled_switchover_is_permanent():
    backend, stubber, _, _ = stubbed()
    stubber.add_response("describe_global_clusters", described(), DESCRIBE)
    stubber.add_response("switchover_global_cluster",
                         {"GlobalCluster": global_cluster(failover=("pending", False))},
                         TO_WEST)
    stubber.add_response("describe_global_clusters",
                         described(failover=("cancelling", False)), DESCRIBE)
    stubber.add_response("describe_global_clusters", described(), DESCRIBE)
    with stubber, pytest.raises(IntegrationError) as err:
        backend.promote(TARGET, "us-west-2", mode="switchover")
    assert err.value.kind is ErrorKind.PERMANENT
    assert "cancelled" in str(err.value) and "us-east-1 writer" in str(err.value)


def test_not_settled_within_wait_timeout_is_transient():
    backend, stubber, slept, _ = stubbed(wait_timeout=40)
    stubber.add_response("describe_global_clusters", described(), DESCRIBE)
    stubber.add_response("switchover_global_cluster", {"GlobalCluster": global_cluster()},
                         TO_WEST)
    for _ in range(3):
        stubber.add_response("describe_global_clusters",
                             described(status="switching-over",
                                       failover=("switching-over", False)), DESCRIBE)
    with stubber, pytest.raises(IntegrationError) as err:
        backend.promote(TARGET, "us-west-2", mode="switchover")
    assert err.value.kind is ErrorKind.TRANSIENT and "40s" in str(err.value)
    assert slept == [15, 15, 10]


def test_operation_in_progress_is_transient_and_not_repeated():
    backend, stubber, _, sent = stubbed()
    stubber.add_response("describe_global_clusters",
                         described(failover=("switching-over", False)), DESCRIBE)
    stubber.add_response("describe_global_clusters",
                         described(writer=None, failover=("failing-over", True)), DESCRIBE)
    with stubber:
        with pytest.raises(IntegrationError) as err:
            backend.promote(TARGET, "us-west-2", mode="switchover")
        with pytest.raises(IntegrationError) as no_writer:
            backend.writer_region(TARGET)
    assert err.value.kind is ErrorKind.TRANSIENT and "switching-over" in str(err.value)
    assert no_writer.value.kind is ErrorKind.TRANSIENT
    assert "a failover from" in str(no_writer.value)
    assert "SwitchoverGlobalCluster" not in sent


def test_unconfigured_writer_and_non_member_target_are_permanent():
    stranger = "arn:aws:rds:eu-west-1:123456789012:cluster:orders-eu"
    backend, stubber, _, sent = stubbed()
    stubber.add_response("describe_global_clusters",
                         described(writer=stranger, members=(stranger, EAST)), DESCRIBE)
    stubber.add_response("describe_global_clusters",
                         described(writer=stranger, members=(stranger, EAST)), DESCRIBE)
    with stubber:
        with pytest.raises(IntegrationError) as err:
            backend.writer_region(TARGET)
        assert err.value.kind is ErrorKind.PERMANENT and stranger in str(err.value)
        with pytest.raises(IntegrationError) as err:
            backend.promote(TARGET, "us-west-2", mode="switchover")
    assert err.value.kind is ErrorKind.PERMANENT and "not a member" in str(err.value)
    assert "SwitchoverGlobalCluster" not in sent


@pytest.mark.parametrize("code,status,kind", [
    ("GlobalClusterNotFoundFault", 404, ErrorKind.PERMANENT),
    ("AccessDenied", 403, ErrorKind.NOT_PERMITTED),
    ("Throttling", 400, ErrorKind.TRANSIENT),
])
def test_errors_map_to_kinds(code, status, kind):
    backend, stubber, _, _ = stubbed()
    stubber.add_client_error("describe_global_clusters", service_error_code=code,
                             service_message="nope", http_status_code=status)
    with stubber, pytest.raises(IntegrationError) as err:
        backend.writer_region(TARGET)
    assert err.value.kind is kind and "orders-global-db" in str(err.value)


def test_invalid_state_on_switchover_is_permanent():
    backend, stubber, _, _ = stubbed()
    stubber.add_response("describe_global_clusters", described(), DESCRIBE)
    stubber.add_client_error("switchover_global_cluster",
                             service_error_code="InvalidGlobalClusterStateFault",
                             service_message="The global cluster is not available",
                             http_status_code=400, expected_params=TO_WEST)
    with stubber, pytest.raises(IntegrationError) as err:
        backend.promote(TARGET, "us-west-2", mode="switchover")
    assert err.value.kind is ErrorKind.PERMANENT
    assert "InvalidGlobalClusterStateFault" in str(err.value)


def test_check_reports_members_and_writer():
    backend, stubber, _, _ = stubbed()
    stubber.add_response("describe_global_clusters", described(), DESCRIBE)
    stubber.add_response("describe_global_clusters", described(members=(EAST,)), DESCRIBE)
    stubber.add_client_error("describe_global_clusters",
                             service_error_code="GlobalClusterNotFoundFault",
                             service_message="nope", http_status_code=404)
    with stubber:
        ok = backend.check()
        partial = backend.check()
        missing = backend.check()
    assert ok.ok is True and "us-east-1 writes" in ok.message, ok.message
    assert partial.ok is False and f"not members: us-west-2 ({WEST})" in partial.message
    assert missing.ok is False and "does not exist" in missing.message


def test_options_and_lazy_client():
    backend, _, _, _ = stubbed()
    o = backend.options
    assert o.wait_timeout == 1800 and o.timeout == 5.0
    assert backend.kind == "aurora_global" and backend.capabilities == frozenset({DATABASE})
    fresh = AuroraGlobal("g", o)
    assert fresh._client is None
    assert fresh.client.meta.region_name == "us-east-1"
    base = {"global_cluster_id": GID, "region": "us-east-1"}
    for members in ({"us-east-1": EAST}, {"us-east-1": EAST, "us-west-2": "orders-west"},
                    {"us-east-1": EAST, "us-west-2": EAST}):
        with pytest.raises(pydantic.ValidationError):
            AuroraGlobal.Options.model_validate({**base, "members": members})
    with pytest.raises(pydantic.ValidationError):
        AuroraGlobal.Options.model_validate({**base, "members": MEMBERS, "wait": False})
