"""RDS replica promotion: moto's server with a source in us-east-1 and a cross-region
replica in us-west-2 (clusters and instances); Stubber for the in-between states moto
skips (it promotes instantly) and for instance promotion, whose effect moto's describe
does not show (it keeps reporting ReadReplicaSourceDBInstanceIdentifier)."""
from __future__ import annotations

import json
from collections import Counter

import boto3
import pydantic
import pytest
from botocore.stub import Stubber

from integrations.aws.rds import RdsPromoter
from integrations.aws.session import make_client
from integrations.base import DATABASE, ErrorKind, IntegrationError, Target
from tests.moto_fixture import moto_endpoint, reset_moto  # noqa: F401

TARGET = Target(service="orders")
CLUSTERS = {"us-east-1": {"cluster": "orders-east"}, "us-west-2": {"cluster": "orders-west"}}
INSTANCES = {"us-east-1": {"instance": "pay-east"}, "us-west-2": {"instance": "pay-west"}}
LOGIN = {"MasterUsername": "admin", "MasterUserPassword": "correct-horse-9"}


@pytest.fixture
def rds(moto_endpoint):  # noqa: F811
    reset_moto(moto_endpoint)
    return {region: make_client("rds", region=region, timeout=5, endpoint_url=moto_endpoint)
            for region in ("us-east-1", "us-west-2")}


def make_clusters(rds) -> str:
    source = rds["us-east-1"].create_db_cluster(
        DBClusterIdentifier="orders-east", Engine="aurora-postgresql", **LOGIN)["DBCluster"]
    # moto requires master credentials on a replica cluster; AWS does not.
    rds["us-west-2"].create_db_cluster(
        DBClusterIdentifier="orders-west", Engine="aurora-postgresql",
        ReplicationSourceIdentifier=source["DBClusterArn"], **LOGIN)
    return source["DBClusterArn"]


def make_instances(rds) -> str:
    source = rds["us-east-1"].create_db_instance(
        DBInstanceIdentifier="pay-east", Engine="postgres", DBInstanceClass="db.t3.micro",
        AllocatedStorage=20, **LOGIN)["DBInstance"]
    rds["us-west-2"].create_db_instance_read_replica(
        DBInstanceIdentifier="pay-west", SourceDBInstanceIdentifier=source["DBInstanceArn"])
    return source["DBInstanceArn"]


def backend(regions, endpoint=None, client=None, **extra) -> RdsPromoter:
    options = RdsPromoter.Options.model_validate(
        {"regions": regions, "endpoint_url": endpoint, **extra})
    promoter = RdsPromoter("orders-db", options, client=client)
    promoter._sleep = lambda seconds: None
    return promoter


def record_calls(promoter, regions=("us-east-1", "us-west-2")) -> Counter:
    seen: Counter = Counter()
    for region in regions:
        promoter.client(region).meta.events.register(
            "before-call.rds.*", lambda model, **_: seen.update([model.name]))
    return seen


def test_cluster_replica_promotion(rds, moto_endpoint):  # noqa: F811
    source_arn = make_clusters(rds)
    promoter = backend(CLUSTERS, moto_endpoint)
    assert promoter.writer_region(TARGET) == "us-east-1"
    assert promoter.state("us-west-2").source == source_arn

    result = promoter.promote(TARGET, "us-west-2")

    assert result.changed is True and result.dry_run is False
    assert result.summary == (f"promoted RDS cluster orders-west in us-west-2: now a "
                              f"standalone writer (available), no longer a replica of "
                              f"{source_arn}")
    assert result.details["source"] == source_arn and result.details["status"] == "available"
    json.dumps(result.details)
    west = rds["us-west-2"].describe_db_clusters(DBClusterIdentifier="orders-west")
    assert "ReplicationSourceIdentifier" not in west["DBClusters"][0]
    east = rds["us-east-1"].describe_db_clusters(DBClusterIdentifier="orders-east")
    assert not east["DBClusters"][0].get("ReadReplicaIdentifiers")
    assert promoter.state("us-west-2").replica is False
    # The old source was not demoted: both are standalone writers, the first is reported.
    assert promoter.writer_region(TARGET) == "us-east-1"
    again = promoter.promote(TARGET, "us-west-2")
    assert again.changed is False and again.summary.startswith("already the writer: ")


def test_clients_are_per_region(rds, moto_endpoint):  # noqa: F811
    make_clusters(rds)
    promoter = backend(CLUSTERS, moto_endpoint)
    east, west = promoter.client("us-east-1"), promoter.client("us-west-2")
    assert east is not west and promoter.client("us-west-2") is west
    assert (east.meta.region_name, west.meta.region_name) == ("us-east-1", "us-west-2")
    # The replica exists only in us-west-2: asking us-east-1 for it fails.
    with pytest.raises(Exception):
        east.describe_db_clusters(DBClusterIdentifier="orders-west")


def test_dry_run_changes_nothing(rds, moto_endpoint):  # noqa: F811
    source_arn = make_clusters(rds)
    promoter = backend(CLUSTERS, moto_endpoint)
    calls = record_calls(promoter)
    result = promoter.promote(TARGET, "us-west-2", dry_run=True)
    assert result.dry_run is True and result.changed is False
    assert result.summary == (f"would promote RDS cluster orders-west in us-west-2 "
                              f"(replica of {source_arn}, available) to a standalone "
                              f"writer; it stops replicating from {source_arn}")
    assert set(calls) == {"DescribeDBClusters"}
    west = rds["us-west-2"].describe_db_clusters(DBClusterIdentifier="orders-west")
    assert west["DBClusters"][0]["ReplicationSourceIdentifier"] == source_arn


def test_promoting_the_writer_is_a_no_op(rds, moto_endpoint):  # noqa: F811
    make_clusters(rds)
    promoter = backend(CLUSTERS, moto_endpoint)
    calls = record_calls(promoter)
    result = promoter.promote(TARGET, "us-east-1")
    assert result.changed is False
    assert result.summary == "already the writer: RDS cluster orders-east in us-east-1 " \
                             "(writer, available)"
    assert set(calls) == {"DescribeDBClusters"}


def test_instance_replica_promotion(rds, moto_endpoint):  # noqa: F811
    source_arn = make_instances(rds)
    promoter = backend(INSTANCES, moto_endpoint, wait=False)
    west = promoter.state("us-west-2")
    assert west.replica is True and west.source == source_arn
    assert promoter.state("us-east-1").replica is False
    assert promoter.writer_region(TARGET) == "us-east-1"
    with pytest.raises(Exception):  # moto refuses to stop a read replica
        rds["us-west-2"].stop_db_instance(DBInstanceIdentifier="pay-west")
    calls = record_calls(promoter)

    result = promoter.promote(TARGET, "us-west-2")

    assert result.changed is True
    assert result.summary == (f"started promoting RDS instance pay-west in us-west-2 "
                              f"(replica of {source_arn}, available)")
    assert calls["PromoteReadReplica"] == 1
    # moto keeps ReadReplicaSourceDBInstanceIdentifier after promotion, but it now lets
    # the instance be stopped, which it refuses for a replica: it is standalone.
    stopped = rds["us-west-2"].stop_db_instance(DBInstanceIdentifier="pay-west")
    assert stopped["DBInstance"]["DBInstanceStatus"] == "stopped"


def test_mode_other_than_promote_is_refused_without_calls(rds, moto_endpoint):  # noqa: F811
    promoter = backend(CLUSTERS, moto_endpoint)
    calls = record_calls(promoter)
    for mode in ("switchover", "failover"):
        with pytest.raises(IntegrationError) as err:
            promoter.promote(TARGET, "us-west-2", mode=mode, allow_data_loss=True)
        assert err.value.kind is ErrorKind.PERMANENT
        assert "rds supports promote" in str(err.value) and "aurora_global" in str(err.value)
    assert not calls


def test_missing_target_and_unknown_region(rds, moto_endpoint):  # noqa: F811
    promoter = backend(CLUSTERS, moto_endpoint)
    with pytest.raises(IntegrationError) as err:
        promoter.promote(TARGET, "us-west-2")
    assert err.value.kind is ErrorKind.PERMANENT and "does not exist" in str(err.value)
    assert "orders-west in us-west-2" in str(err.value)
    with pytest.raises(IntegrationError) as err:
        promoter.promote(TARGET, "eu-west-1")
    assert err.value.kind is ErrorKind.PERMANENT and "eu-west-1" in str(err.value)
    with pytest.raises(IntegrationError) as err:
        promoter.writer_region(TARGET)
    assert err.value.kind is ErrorKind.PERMANENT


def test_check_reports_existence_and_roles(rds, moto_endpoint):  # noqa: F811
    promoter = backend(CLUSTERS, moto_endpoint)
    missing = promoter.check()
    assert missing.ok is False and "does not exist" in missing.message
    source_arn = make_clusters(rds)
    result = promoter.check()
    assert result.ok is True, result.message
    assert "orders-east in us-east-1 (writer, available)" in result.message
    assert f"orders-west in us-west-2 (replica of {source_arn}, available)" in result.message
    promoter.promote(TARGET, "us-west-2")
    split = promoter.check()
    assert split.ok is False and "found 2 (us-east-1, us-west-2)" in split.message


# -- Stubber: the states moto skips ---------------------------------------------------

SOURCE = "arn:aws:rds:us-east-1:123456789012:cluster:orders-east"


def cluster(status, source=SOURCE):
    db = {"DBClusterIdentifier": "orders-west", "Status": status}
    if source:
        db["ReplicationSourceIdentifier"] = source
    return {"DBClusters": [db]}


def stubbed(**extra):
    client = boto3.session.Session().client(
        "rds", region_name="us-west-2", aws_access_key_id="k", aws_secret_access_key="s")
    promoter = backend(CLUSTERS, client=client, poll_interval=15, **extra)
    slept: list[float] = []
    promoter._sleep = slept.append
    return promoter, Stubber(client), slept


WEST = {"DBClusterIdentifier": "orders-west"}


def test_waits_until_available_and_not_a_replica():
    promoter, stubber, slept = stubbed()
    stubber.add_response("describe_db_clusters", cluster("available"), WEST)
    stubber.add_response("promote_read_replica_db_cluster",
                         {"DBCluster": cluster("promoting")["DBClusters"][0]}, WEST)
    stubber.add_response("describe_db_clusters", cluster("promoting"), WEST)
    stubber.add_response("describe_db_clusters", cluster("modifying", source=None), WEST)
    stubber.add_response("describe_db_clusters", cluster("available", source=None), WEST)
    with stubber:
        result = promoter.promote(TARGET, "us-west-2")
        stubber.assert_no_pending_responses()
    assert result.changed is True and result.details["status"] == "available"
    assert slept == [15, 15]


def test_wait_is_bounded_and_transient():
    promoter, stubber, slept = stubbed(wait_timeout=40)
    stubber.add_response("describe_db_clusters", cluster("available"), WEST)
    stubber.add_response("promote_read_replica_db_cluster",
                         {"DBCluster": cluster("promoting")["DBClusters"][0]}, WEST)
    for _ in range(4):
        stubber.add_response("describe_db_clusters", cluster("promoting"), WEST)
    with stubber, pytest.raises(IntegrationError) as err:
        promoter.promote(TARGET, "us-west-2")
    assert err.value.kind is ErrorKind.TRANSIENT
    assert "promoting" in str(err.value) and "40s" in str(err.value)
    assert slept == [15, 15, 10]


def test_instance_promotion_waits_for_the_source_to_disappear():
    client = boto3.session.Session().client(
        "rds", region_name="us-west-2", aws_access_key_id="k", aws_secret_access_key="s")
    promoter = backend(INSTANCES, client=client)
    pay = {"DBInstanceIdentifier": "pay-west"}
    source = "arn:aws:rds:us-east-1:123456789012:db:pay-east"
    replica = {"DBInstances": [{**pay, "DBInstanceStatus": "available",
                                "ReadReplicaSourceDBInstanceIdentifier": source}]}
    with Stubber(client) as stubber:
        stubber.add_response("describe_db_instances", replica, pay)
        stubber.add_response("promote_read_replica",
                             {"DBInstance": {**pay, "DBInstanceStatus": "modifying"}}, pay)
        stubber.add_response("describe_db_instances",
                             {"DBInstances": [{**pay, "DBInstanceStatus": "rebooting",
                                               "ReadReplicaSourceDBInstanceIdentifier": source}]},
                             pay)
        stubber.add_response("describe_db_instances",
                             {"DBInstances": [{**pay, "DBInstanceStatus": "available"}]}, pay)
        result = promoter.promote(TARGET, "us-west-2")
        stubber.assert_no_pending_responses()
    assert result.changed is True and f"no longer a replica of {source}" in result.summary


@pytest.mark.parametrize("code,status,kind", [
    ("AccessDenied", 403, ErrorKind.NOT_PERMITTED),
    ("Throttling", 400, ErrorKind.TRANSIENT),
    ("InvalidDBClusterStateFault", 400, ErrorKind.PERMANENT),
])
def test_promote_errors_map_to_kinds(code, status, kind):
    promoter, stubber, _ = stubbed()
    stubber.add_response("describe_db_clusters", cluster("available"), WEST)
    stubber.add_client_error("promote_read_replica_db_cluster", service_error_code=code,
                             service_message="nope", http_status_code=status)
    with stubber, pytest.raises(IntegrationError) as err:
        promoter.promote(TARGET, "us-west-2")
    assert err.value.kind is kind and "orders-db" in str(err.value)


def test_options_and_lazy_clients():
    promoter = backend(CLUSTERS)
    o = promoter.options
    assert o.wait is True and o.wait_timeout == 1800 and o.poll_interval == 15
    assert o.regions["us-west-2"].cluster == "orders-west"
    assert promoter.kind == "rds" and promoter.capabilities == frozenset({DATABASE})
    assert promoter._clients == {}
    assert promoter.client("eu-west-1").meta.region_name == "eu-west-1"
    assert list(promoter._clients) == ["eu-west-1"]
    for regions in ({"us-east-1": {}}, {"us-east-1": {"cluster": "a", "instance": "b"}},
                    {}, {"us-east-1": {"cluster": "a", "arn": "x"}}):
        with pytest.raises(pydantic.ValidationError):
            RdsPromoter.Options.model_validate({"regions": regions})
