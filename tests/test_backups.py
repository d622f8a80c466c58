"""Backup age (``services[].backups``): each backend against a real or faithfully faked
peer -- RDS/Aurora snapshots and S3 prefixes on moto's server, AWS Backup recovery points
through botocore's Stubber (exact parameters), a Prometheus gauge from a local fake of the
HTTP API -- and what ``/dr status`` makes of them: the age against ``max_age`` in the
summary and the SERVICE detail, AT RISK naming the backup when it is too old, UNKNOWN
(never healthy) when it cannot be read, and the restore-test rules."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from botocore.stub import Stubber

from bot.backups import RestoreTest, assess_restore, restore_tests
from bot.config import ConfigError, parse_config
from bot.config.models import BackupConfig
from bot.readiness import Verdict
from bot.render import Renderer
from bot.store import read_scope, session_scope
from bot.store.models import ChangeRequest, RequestKind, RequestState, Run
from bot.wiring import build_services
from commands.router import dispatch
from integrations.aws.backup_points import AwsBackupPoints
from integrations.aws.rds_snapshots import RdsSnapshots
from integrations.aws.s3_newest import S3Newest
from integrations.aws.session import make_client
from integrations.base import ErrorKind, IntegrationError
from integrations.prometheus_backup import PrometheusBackup
from tests.estates import estate
from tests.fakes.json_server import Answer, JsonServer, Request
from tests.helpers import ALICE
from tests.moto_fixture import moto_endpoint, reset_moto  # noqa: F401

LOGIN = {"MasterUsername": "admin", "MasterUserPassword": "correct-horse-9"}
NOW = datetime.now(timezone.utc)
RESOURCE = "arn:aws:rds:us-east-1:123456789012:cluster:orders"


class FakePrometheus(JsonServer):
    """``GET /api/v1/query``: answers ``series[query]`` (a list of (labels, value)) as an
    instant vector evaluated at ``at``; 401 when ``token`` is set and not sent."""

    def __init__(self):
        super().__init__()
        self.series: dict[str, list[tuple[dict, float]]] = {}
        self.at = NOW.timestamp()
        self.token: str | None = None

    def handle(self, req: Request) -> Answer:
        if req.path != "/api/v1/query":
            return Answer(404, {"status": "error", "errorType": "not_found", "error": "no such path"})
        if self.token and req.headers.get("authorization") != f"Bearer {self.token}":
            return Answer(401, {"status": "error", "errorType": "unauthorized", "error": "bad token"})
        query = req.query["query"][0]
        result = [{"metric": labels, "value": [self.at, repr(value)]} for labels, value in self.series.get(query, [])]
        return Answer(200, {"status": "success", "data": {"resultType": "vector", "result": result}})


@pytest.fixture
def prom():
    with FakePrometheus() as fake:
        yield fake


@pytest.fixture
def aws(moto_endpoint):  # noqa: F811
    reset_moto(moto_endpoint)
    return {name: make_client(name, region="us-east-1", timeout=5, endpoint_url=moto_endpoint)
            for name in ("rds", "s3")}


def rds_backend(endpoint: str, **extra) -> RdsSnapshots:
    return RdsSnapshots("snaps", RdsSnapshots.Options.model_validate(
        {"region": "us-east-1", "endpoint_url": endpoint, **extra}))


# -- RDS and Aurora snapshots (moto server) -----------------------------------------------

def test_the_newest_available_instance_snapshot_is_the_reading(aws, moto_endpoint):  # noqa: F811
    aws["rds"].create_db_instance(DBInstanceIdentifier="pay-db", Engine="postgres", DBInstanceClass="db.t3.micro",
                                  AllocatedStorage=20, **LOGIN)
    made = [aws["rds"].create_db_snapshot(DBSnapshotIdentifier=f"pay-db-{n}", DBInstanceIdentifier="pay-db")
            ["DBSnapshot"] for n in (1, 2, 3)]
    listed = aws["rds"].describe_db_snapshots(DBInstanceIdentifier="pay-db")["DBSnapshots"]
    newest_time = max(s["SnapshotCreateTime"] for s in listed)

    point = rds_backend(moto_endpoint).newest_backup("instance/pay-db")

    assert point.created_at == newest_time and point.created_at.tzinfo is not None
    assert point.id in {s["DBSnapshotIdentifier"] for s in listed if s["SnapshotCreateTime"] == newest_time}
    assert point.id in {m["DBSnapshotIdentifier"] for m in made} | {s["DBSnapshotIdentifier"] for s in listed}
    assert "snapshot of RDS instance pay-db in us-east-1" in point.detail


def test_the_newest_aurora_cluster_snapshot_is_the_reading(aws, moto_endpoint):  # noqa: F811
    aws["rds"].create_db_cluster(DBClusterIdentifier="orders", Engine="aurora-postgresql", **LOGIN)
    aws["rds"].create_db_cluster_snapshot(DBClusterSnapshotIdentifier="orders-nightly", DBClusterIdentifier="orders")
    listed = aws["rds"].describe_db_cluster_snapshots(DBClusterIdentifier="orders")["DBClusterSnapshots"]

    point = rds_backend(moto_endpoint).newest_backup("cluster/orders")

    assert point.created_at == max(s["SnapshotCreateTime"] for s in listed)
    assert "Aurora cluster orders" in point.detail
    assert rds_backend(moto_endpoint).newest_backup("cluster/no-such-cluster") is None


def test_an_rds_target_must_say_instance_or_cluster(moto_endpoint):  # noqa: F811
    backend = rds_backend(moto_endpoint)
    assert "write instance/DB_INSTANCE_ID or cluster/DB_CLUSTER_ID" in backend.check_target("orders")
    with pytest.raises(IntegrationError) as e:
        backend.newest_backup("db/orders")
    assert e.value.kind is ErrorKind.PERMANENT


def test_only_available_snapshots_count_and_pages_are_followed():
    client = make_client("rds", region="us-east-1", timeout=5)
    backend = RdsSnapshots("snaps", RdsSnapshots.Options(region="us-east-1", snapshot_type="automated"),
                           client=client)
    old, newer, creating = NOW - timedelta(days=2), NOW - timedelta(hours=5), NOW - timedelta(minutes=3)
    with Stubber(client) as stub:
        stub.add_response("describe_db_cluster_snapshots", {
            "DBClusterSnapshots": [{"DBClusterSnapshotIdentifier": "rds:orders-old", "SnapshotCreateTime": old,
                                    "Status": "available", "SnapshotType": "automated"}],
            "Marker": "page-2"},
            {"DBClusterIdentifier": "orders", "MaxRecords": 100, "SnapshotType": "automated"})
        stub.add_response("describe_db_cluster_snapshots", {
            "DBClusterSnapshots": [
                {"DBClusterSnapshotIdentifier": "rds:orders-newer", "SnapshotCreateTime": newer,
                 "Status": "available", "SnapshotType": "automated"},
                {"DBClusterSnapshotIdentifier": "rds:orders-creating", "SnapshotCreateTime": creating,
                 "Status": "creating", "SnapshotType": "automated"}]},
            {"DBClusterIdentifier": "orders", "MaxRecords": 100, "SnapshotType": "automated", "Marker": "page-2"})
        point = backend.newest_backup("cluster/orders")
        stub.assert_no_pending_responses()
    assert point.id == "rds:orders-newer" and point.created_at == newer


# -- AWS Backup recovery points (Stubber: moto lacks them) ----------------------------------

def backup_backend() -> tuple[AwsBackupPoints, object]:
    client = make_client("backup", region="us-east-1", timeout=5)
    return AwsBackupPoints("vault", AwsBackupPoints.Options(region="us-east-1"), client=client), client


def test_the_newest_completed_recovery_point_of_a_resource_is_the_reading():
    backend, client = backup_backend()
    t1, t2, t3 = NOW - timedelta(days=3), NOW - timedelta(hours=20), NOW - timedelta(hours=1)
    with Stubber(client) as stub:
        stub.add_response("list_recovery_points_by_resource", {
            "RecoveryPoints": [
                {"RecoveryPointArn": "arn:aws:backup:us-east-1:123456789012:recovery-point:rp-1", "CreationDate": t1,
                 "Status": "COMPLETED", "BackupVaultName": "dr-vault"},
                {"RecoveryPointArn": "arn:aws:backup:us-east-1:123456789012:recovery-point:rp-3", "CreationDate": t3,
                 "Status": "PARTIAL", "BackupVaultName": "dr-vault"}],
            "NextToken": "more"}, {"ResourceArn": RESOURCE, "MaxResults": 100})
        stub.add_response("list_recovery_points_by_resource", {
            "RecoveryPoints": [
                {"RecoveryPointArn": "arn:aws:backup:us-east-1:123456789012:recovery-point:rp-2", "CreationDate": t2,
                 "Status": "COMPLETED", "BackupVaultName": "dr-vault"}]},
            {"ResourceArn": RESOURCE, "MaxResults": 100, "NextToken": "more"})
        point = backend.newest_backup(RESOURCE)
        stub.assert_no_pending_responses()
    assert point.id.endswith("rp-2") and point.created_at == t2  # the PARTIAL one is no backup
    assert point.detail == "AWS Backup recovery point in vault dr-vault (us-east-1)"


def test_a_vault_target_lists_the_vault_and_an_empty_vault_has_no_backup():
    backend, client = backup_backend()
    with Stubber(client) as stub:
        stub.add_response("list_recovery_points_by_backup_vault", {"RecoveryPoints": []},
                          {"BackupVaultName": "dr-vault", "MaxResults": 100})
        assert backend.newest_backup("vault/dr-vault") is None
        stub.add_client_error("list_recovery_points_by_backup_vault", "AccessDeniedException", "not allowed",
                              expected_params={"BackupVaultName": "dr-vault", "MaxResults": 100})
        with pytest.raises(IntegrationError) as e:
            backend.newest_backup("vault/dr-vault")
    assert e.value.kind is ErrorKind.NOT_PERMITTED
    assert "resource's ARN" in backend.check_target("dr-vault")


# -- the newest object under an S3 prefix (moto server) ----------------------------------

def test_the_newest_object_under_the_prefix_is_the_reading_and_empty_objects_do_not_count(aws, moto_endpoint):  # noqa: F811
    s3 = aws["s3"]
    s3.create_bucket(Bucket="dumps")
    for key in ("orders/2026-11-27.sql.gz", "orders/2026-11-28.sql.gz", "other/2026-11-29.sql.gz"):
        s3.put_object(Bucket="dumps", Key=key, Body=b"-- dump --")
    s3.put_object(Bucket="dumps", Key="orders/0-partial.sql.gz", Body=b"")  # last, and first in key order
    listed = s3.list_objects_v2(Bucket="dumps", Prefix="orders/")["Contents"]
    full = [o for o in listed if o["Size"] > 0]

    backend = S3Newest("dumps", S3Newest.Options(region="us-east-1", endpoint_url=moto_endpoint))
    point = backend.newest_backup("s3://dumps/orders/")

    assert point.id != "s3://dumps/orders/0-partial.sql.gz"
    assert point.id.startswith("s3://dumps/orders/2026-11-2")
    assert point.created_at == max(o["LastModified"] for o in full)
    assert "of 3 object(s) under s3://dumps/orders/" in point.detail
    assert backend.newest_backup("dumps/nothing-here/") is None


def test_pages_are_followed_and_too_many_objects_is_an_error_naming_the_fix():
    client = make_client("s3", region="us-east-1", timeout=5)
    page1 = {"IsTruncated": True, "NextContinuationToken": "tok-2", "KeyCount": 2, "Contents": [
        {"Key": "orders/a.sql.gz", "LastModified": NOW - timedelta(days=2), "Size": 10},
        {"Key": "orders/b.sql.gz", "LastModified": NOW - timedelta(hours=3), "Size": 10}]}
    page2 = {"IsTruncated": False, "KeyCount": 1, "Contents": [
        {"Key": "orders/c.sql.gz", "LastModified": NOW - timedelta(days=1), "Size": 10}]}
    first = {"Bucket": "dumps", "Prefix": "orders/", "MaxKeys": 1000}
    roomy = S3Newest("dumps", S3Newest.Options(region="us-east-1"), client=client)
    tight = S3Newest("dumps", S3Newest.Options(region="us-east-1", max_objects=2), client=client)
    with Stubber(client) as stub:
        stub.add_response("list_objects_v2", page1, first)
        stub.add_response("list_objects_v2", page2, first | {"ContinuationToken": "tok-2"})
        point = roomy.newest_backup("dumps/orders/")
        stub.add_response("list_objects_v2", page1, first)
        with pytest.raises(IntegrationError, match="more than 2 objects under s3://dumps/orders/: narrow the prefix"):
            tight.newest_backup("dumps/orders/")
        stub.assert_no_pending_responses()
    assert point.id == "s3://dumps/orders/b.sql.gz" and point.detail.startswith("newest of 3 object(s)")


# -- a Prometheus gauge ---------------------------------------------------------------------

def prom_backend(fake: FakePrometheus, **extra) -> PrometheusBackup:
    return PrometheusBackup("prom", PrometheusBackup.Options.model_validate({"url": fake.url, **extra}))


def test_a_timestamp_gauge_gives_when_the_backup_was_taken_and_the_oldest_series_wins(prom):
    q = 'backup_last_success_timestamp_seconds{job="orders-db"}'
    taken = NOW - timedelta(hours=30)
    prom.series[q] = [({"__name__": "backup_last_success_timestamp_seconds", "job": "orders-db", "db": "a"},
                       (NOW - timedelta(hours=2)).timestamp()),
                      ({"__name__": "backup_last_success_timestamp_seconds", "job": "orders-db", "db": "b"},
                       taken.timestamp())]
    point = prom_backend(prom).newest_backup(q)
    assert abs((point.created_at - taken).total_seconds()) < 0.01
    assert 'db="b"' in point.id and "the oldest of 2 series" in point.detail
    [call] = prom.calls("GET")
    assert call.query["query"] == [q]


def test_an_age_gauge_is_counted_back_from_the_evaluation_time(prom):
    prom.series["backup_age_seconds"] = [({}, 7200.0)]
    point = prom_backend(prom, value="age").newest_backup("backup_age_seconds")
    assert abs((point.created_at - (NOW - timedelta(hours=2))).total_seconds()) < 0.01


def test_an_absent_gauge_or_a_refused_request_is_an_error_never_a_fresh_backup(prom):
    with pytest.raises(IntegrationError, match="returned no series") as e:
        prom_backend(prom).newest_backup("backup_last_success_timestamp_seconds")
    assert e.value.kind is ErrorKind.PERMANENT
    prom.token = "s3cret"
    with pytest.raises(IntegrationError, match="HTTP 401") as e:
        prom_backend(prom).newest_backup("up")
    assert e.value.kind is ErrorKind.NOT_PERMITTED
    prom.series["up"] = [({}, 1.0)]
    assert prom_backend(prom, headers={"Authorization": "Bearer s3cret"}).newest_backup("up") is not None


# -- /dr status ---------------------------------------------------------------------------

SOURCES = """
snaps:
  kind: rds_snapshots
  region: us-east-1
  endpoint_url: ${MOTO}
dumps:
  kind: s3_newest
  region: us-east-1
  endpoint_url: ${MOTO}
prom:
  kind: prometheus_backup
  url: ${PROM}
  timeout: 2
"""
BACKUPS = """    backups:
      - {name: orders-db, source: snaps, target: cluster/orders, max_age: 1d}
      - {name: exports, source: dumps, target: dumps/orders/, max_age: 26h}
      - {name: etcd, source: prom, target: 'etcd_backup_last_success_timestamp_seconds', max_age: 2h}
"""


class Clock:
    def __init__(self):
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def status_estate(aws, moto_endpoint, prom, tmp_path):  # noqa: F811
    aws["rds"].create_db_cluster(DBClusterIdentifier="orders", Engine="aurora-postgresql", **LOGIN)
    aws["rds"].create_db_cluster_snapshot(DBClusterSnapshotIdentifier="orders-nightly", DBClusterIdentifier="orders")
    aws["s3"].create_bucket(Bucket="dumps")
    aws["s3"].put_object(Bucket="dumps", Key="orders/export.json.gz", Body=b"{}")
    clock = Clock()  # the gauge's times count from the service's clock, not from the module's import
    prom.series["etcd_backup_last_success_timestamp_seconds"] = [({"cluster": "main"}, clock.now.timestamp() - 600)]
    loaded = parse_config(estate(SOURCES, extra=BACKUPS), "backups.yaml", {"MOTO": moto_endpoint, "PROM": prom.url})
    services = build_services(loaded, db_url=f"sqlite:///{tmp_path}/drbot.db", clock=clock)
    yield services, clock
    services.engine.dispose()


def status(services, words: str = "status") -> str:
    return services.renderer.text(dispatch(services, ALICE, words))


def fresh(services, words: str = "status") -> str:
    services.collector.forget()
    return status(services, words)


def test_status_shows_each_backup_against_its_max_age(status_estate):
    services, _ = status_estate
    summary = status(services)
    line = next(x for x in summary.splitlines() if "backups:" in x)
    assert "orders-db " in line and "old / max 1d · exports " in line and "· etcd 10m" in line and "/ max 2h" in line
    assert "TOO OLD" not in line
    detail = status(services, "status orders")
    assert "backups: orders-db" in detail
    for words in ("status", "status orders"):  # Slack: the same line in the summary and the detail
        blocks, _ = services.renderer.blocks(dispatch(services, ALICE, words))
        shown = json.dumps(blocks, ensure_ascii=False)
        assert "orders-db " in shown and "/ max 1d" in shown and "etcd 10m" in shown
    [report] = [services.status.report("orders")]
    [a] = report.assessments
    assert {f.code for f in a.findings} >= {"backup_ok"}
    assert [f.params["backup"] for f in a.findings if f.code == "backup_ok"] == ["orders-db", "exports", "etcd"]
    assert not any(f.code.startswith("restore_test") for f in a.findings)  # no restore_test_max_age set


def test_an_old_backup_makes_the_service_at_risk_naming_the_backup(status_estate, prom):
    services, clock = status_estate
    taken = clock.now.timestamp() - 3 * 3600
    prom.series["etcd_backup_last_success_timestamp_seconds"] = [({"cluster": "main"}, taken)]
    text = fresh(services, "status orders")
    assert text.splitlines()[0].startswith("orders · AT RISK")
    assert "backup etcd is 3h old, max 2h: the newest ({cluster=\"main\"}, prom) was taken" in text
    assert "etcd 3h old / max 2h TOO OLD" in text
    summary = fresh(services)
    assert "AT RISK" in summary and "- backup etcd is 3h old, max 2h" in summary


def test_each_backup_is_judged_against_its_own_max_age(status_estate):
    services, clock = status_estate
    clock.now += timedelta(hours=25)  # past orders-db's 1d and etcd's 2h, within the exports' 26h
    services.collector.forget()
    [a] = services.status.report("orders", fresh=True).assessments
    old = {f.params["backup"]: f for f in a.findings if f.code == "backup_old"}
    assert set(old) == {"orders-db", "etcd"} and all(f.verdict is Verdict.AT_RISK for f in old.values())
    assert [f.params["backup"] for f in a.findings if f.code == "backup_ok"] == ["exports"]
    text = services.renderer.reason(old["orders-db"])
    assert text.startswith("backup orders-db is 1d 1h old, max 1d: the newest (orders-nightly, snaps) was taken")


def test_an_unreadable_backup_is_unknown_never_healthy(status_estate, prom):
    services, _ = status_estate
    prom.series.clear()
    text = fresh(services, "status orders")
    assert "UNKNOWN" in text.splitlines()[0]
    assert "backup etcd unknown: prom failed: prom: the query `etcd_backup_last_success_timestamp_seconds` " \
           "returned no series" in text
    [a] = services.status.report("orders", fresh=True).assessments
    assert a.verdict is Verdict.UNKNOWN


def test_a_backup_that_does_not_exist_is_at_risk(status_estate, aws):
    services, _ = status_estate
    aws["s3"].delete_object(Bucket="dumps", Key="orders/export.json.gz")
    text = fresh(services, "status orders")
    assert "backup exports: dumps found no backup of dumps/orders/ at all (max age 1d 2h)" in text
    assert "exports NONE FOUND" in text


def test_a_backup_source_and_target_are_checked_when_the_config_loads():
    """A source that cannot read backups, or a target in the wrong form, stops the start with
    the path and line (never an UNKNOWN found later in /dr status)."""
    env = {"MOTO": "http://127.0.0.1:9", "PROM": "http://127.0.0.1:9"}
    for entry, path, message in (
            ("{name: orders-db, source: sim-other, target: cluster/orders, max_age: 1d}", "source",
             "source 'sim-other' (kind http_probe) cannot serve as a backup source"),
            ("{name: orders-db, source: snpas, target: cluster/orders, max_age: 1d}", "source",
             "no source named 'snpas' (did you mean 'snaps'?)"),
            ("{name: orders-db, source: snaps, target: orders, max_age: 1d}", "target",
             "write instance/DB_INSTANCE_ID or cluster/DB_CLUSTER_ID")):
        text = estate(SOURCES + "sim-other: {kind: http_probe, url: 'http://127.0.0.1:9/health'}\n",
                      extra=f"    backups:\n      - {entry}\n")
        with pytest.raises(ConfigError) as e:
            parse_config(text, "backups.yaml", env)
        [problem] = e.value.problems
        assert problem.path == f"services[0].backups[0].{path}" and message in problem.message, problem
        assert problem.line == next(n for n, line in enumerate(text.splitlines(), 1) if entry in line)


# -- restore-test rules and config ---------------------------------------------------------

def test_restore_tests_none_failed_overdue_and_ok():
    b = BackupConfig(name="orders-db", source="snaps", target="cluster/orders", max_age=timedelta(days=1),
                     restore_test_max_age=timedelta(days=30))
    assert assess_restore(b.model_copy(update={"restore_test_max_age": None}), None, [], NOW) is None
    none = assess_restore(b, None, ["restore-orders"], NOW)
    assert (none.verdict, none.code) == (Verdict.AT_RISK, "restore_test_none")
    old = RestoreTest(NOW - timedelta(days=45), True, 7)
    overdue = assess_restore(b, old, ["restore-orders"], NOW)
    assert (overdue.verdict, overdue.code, overdue.params["age"]) == (Verdict.AT_RISK, "restore_test_overdue",
                                                                      timedelta(days=45))
    failed = assess_restore(b, RestoreTest(NOW - timedelta(days=1), False, 8), [], NOW)
    assert (failed.verdict, failed.code) == (Verdict.AT_RISK, "restore_test_failed")
    ok = assess_restore(b, RestoreTest(NOW - timedelta(days=3), True, 9), [], NOW)
    assert ok.verdict is Verdict.READY
    r = Renderer()
    assert r.reason(overdue) == "last restore test of backup orders-db 45d ago, max 30d (request #7)"
    assert "no drill scenario restores it" in r.reason(assess_restore(b, None, [], NOW))


RESTORE_STEP = """
      drill:
        restore-orders:
          - name: Restore the snapshot
            action: argo_workflow
            source: argo
            argo_workflow: {template: restore-db}
            restore: {backup: %s}
"""


def config_with(backups: str, runbooks: str) -> str:
    text = estate("argo: {kind: argo_workflow, url: 'http://127.0.0.1:9'}\n",
                  extra=backups + "    runbooks:" + runbooks)
    return text


def test_a_restore_step_must_name_one_of_the_services_backups():
    backups = "    backups:\n      - {name: orders-db, source: sim, target: x, max_age: 1d}\n"
    parse_config(config_with(backups, RESTORE_STEP % "orders-db"), "ok.yaml", {})
    with pytest.raises(ConfigError) as e:
        parse_config(config_with(backups, RESTORE_STEP % "ordres-db"), "bad.yaml", {})
    assert "step 'Restore the snapshot' restores backup 'ordres-db', which is not in this service's backups " \
           "(orders-db)" in str(e.value)
    wrong_kind = (RESTORE_STEP % "orders-db").replace("action: argo_workflow", "action: check\n"
                                                      "            verify: {healthy: target}").replace(
        "            source: argo\n            argo_workflow: {template: restore-db}\n", "")
    with pytest.raises(ConfigError, match="restore marks a step that restores a backup .* not check"):
        parse_config(config_with(backups, wrong_kind), "bad.yaml", {})


def test_a_restore_scenario_is_noted_as_a_restore_test():
    backups = "    backups:\n      - {name: orders-db, source: sim, target: x, max_age: 1d}\n"
    loaded = parse_config(config_with(backups, RESTORE_STEP % "orders-db"), "ok.yaml", {})
    assert any("is a restore test" in n.message for n in loaded.notes)


def test_backup_names_are_unique_per_service():
    backups = ("    backups:\n      - {name: orders-db, source: sim, target: x, max_age: 1d}\n"
               "      - {name: orders-db, source: sim, target: y, max_age: 2d}\n")
    with pytest.raises(ConfigError, match="backups: each name once"):
        parse_config(estate(extra=backups), "bad.yaml", {})



def test_restore_tests_are_found_by_scenario_newest_first_on_both_databases(db_url):
    backups = "    backups:\n      - {name: orders-db, source: sim, target: x, max_age: 1d}\n"
    runbooks = (RESTORE_STEP % "orders-db") + """        look:
          - {name: Look, action: check, verify: {healthy: target}}
"""
    loaded = parse_config(config_with(backups, runbooks), "ok.yaml", {})
    services = build_services(loaded, db_url=db_url)
    try:
        def drill(scenario: str, state: RequestState, days_ago: int) -> int:
            at = NOW - timedelta(days=days_ago)
            with session_scope(services.engine) as s:
                req = ChangeRequest(kind=RequestKind.DRILL, service="orders", scenario=scenario, requester="UALICE",
                                    state=state, expires_at=at)
                s.add(req)
                s.flush()
                s.add(Run(request_id=req.id, kind=RequestKind.DRILL, service="orders", state=state, approved_at=at,
                          started_at=at, ended_at=at, proof="check"))
                return req.id

        passed_long_ago = drill("restore-orders", RequestState.SUCCEEDED, 40)
        drill("look", RequestState.SUCCEEDED, 1)  # not a restore test
        failed_lately = drill("restore-orders", RequestState.FAILED, 2)
        with read_scope(services.engine) as s:
            found = restore_tests(s, services.config.services)
    finally:
        services.engine.dispose()
    test = found[("orders", "orders-db")]
    assert (test.request_id, test.passed) == (failed_lately, False)
    assert abs((test.last_passed_at - (NOW - timedelta(days=40))).total_seconds()) < 1
    assert passed_long_ago != failed_lately and list(found) == [("orders", "orders-db")]


def test_the_sandbox_takes_simulated_backups_and_a_stale_one_is_at_risk(tmp_path):
    """The demo estate shows backup age too: the sandbox's newest backup is at most
    `backup_every` old; the `backup_stale` fault makes it 3 days older than that."""
    text = estate("", extra="    backups:\n      - {name: orders-db, source: sim, target: orders-db, max_age: 1d}\n")
    services = build_services(parse_config(text, "sandbox-backups.yaml", {}), db_url=f"sqlite:///{tmp_path}/d.db")
    try:
        line = next(x for x in status(services, "status orders").splitlines() if "backups:" in x)
        assert line.strip().startswith("backups: orders-db ") and line.endswith("old / max 1d")  # at most 6h old
        services.backends["sim"].estate.inject("orders-db", "backup_stale")
        stale = fresh(services, "status orders")
        assert "backups: orders-db 3d" in stale and "TOO OLD" in stale
        assert "- backup orders-db is 3d" in stale and "(sandbox-orders-db-" in stale
    finally:
        services.engine.dispose()
