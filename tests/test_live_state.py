"""What drbot shows and records is true (issue 10): live routing state, failback safety,
honest RTO/RPO.

- Route 53 records flipped behind drbot's back (moto's server) show as drift in `/dr status`,
  asked over real HTTP with a signed slash command; the live reading is cached briefly.
- After an RDS replica promotion (moto's server), a failback is refused in pre-flight with
  the reason and what to do; with an explicit, audited `--allow-data-loss` it runs and its
  RPO is recorded as unknown, not as a lag.
- A switchover run reports RPO 0 with its method, and RTO from detection (the first alert),
  decision and run start.
- The pure rules: who replicates from whom (bot.replication), live findings (bot.readiness).
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.stub import Stubber
from sqlmodel import select

from bot.alerts.intake import ingest
from bot.alerts.normalise import NormalisedAlert
from bot.config import parse_config
from bot.durations import format_duration
from bot.measurements import rpo_of
from bot.messenger import RecordingMessenger
from bot.preflight import Check, Preflight
from bot.readiness import Targets, Verdict, assess_live
from bot.readings import Reading, Status
from bot.replication import judge_move
from bot.render import Reply
from bot.report_json import report_to_dict
from bot.status import LiveCache
from bot.store import session_scope
from bot.store.models import AuditEntry, ChangeRequest, RequestState, Run, RunStep
from bot.wiring import build_services
from commands.router import click, dispatch
from integrations.aws.aurora_global import AuroraGlobal
from integrations.aws.rds import RdsPromoter
from integrations.aws.session import make_client
from integrations.base import DbRole, ErrorKind, IntegrationError, RegionDb, Replication, Target
from tests.app_server import running_app
from tests.helpers import ALICE, BOB, wait_until
from tests.moto_fixture import moto_endpoint, reset_moto  # noqa: F401

RECORD = "api.example.com."
LOGIN = {"MasterUsername": "admin", "MasterUserPassword": "correct-horse-9"}
EAST, WEST = "us-east-1", "us-west-2"

AWS_CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim:
    kind: sandbox
    timeout: 1.0
    profiles:
      orders: {lag: 20, jitter: 0}
  orders-dns:
    kind: route53_failover
    endpoint_url: ${MOTO_URL}
    timeout: 5
    hosted_zone_id: ${ORDERS_ZONE}
    record_name: api.example.com
    records: {us-east-1: orders-east, us-west-2: orders-west}
    insync_timeout: 5
    poll_interval: 0.05
  orders-db:
    kind: rds
    endpoint_url: ${MOTO_URL}
    timeout: 5
    regions:
      us-east-1: {cluster: "${EAST_DB}"}
      us-west-2: {cluster: "${WEST_DB}"}
    wait_timeout: 5
    poll_interval: 0.05
approvals:
  required_approvals: 1
  approvers: [UBOB]
  expires: 30m
services:
  - name: orders
    tier: high
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
    traffic: {source: orders-dns}
    database: {source: orders-db}
    runbooks:
      failover:
        - name: Shift traffic
          action: traffic.shift
          timeout: 20s
          verify: {traffic_in: target, within: 5s, interval: 100ms}
        - name: Promote the database
          action: database.promote
          timeout: 20s
          verify: {healthy: target, within: 5s, interval: 100ms}
"""

SWITCHOVER_CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim:
    kind: sandbox
    timeout: 1.0
    profiles:
      orders: {lag: 100, jitter: 0}
approvals:
  required_approvals: 1
  approvers: [UBOB]
  expires: 30m
services:
  - name: orders
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
    traffic: {source: sim}
    database: {source: sim}
    runbooks:
      failover:
        - name: Switch the writer
          action: database.switchover
          timeout: 10s
          verify: {writer_in: target, within: 5s, interval: 100ms}
        - name: Shift traffic
          action: traffic.shift
          timeout: 10s
          verify: {traffic_in: target, within: 5s, interval: 100ms}
      drill:
        promote:
          - name: Promote the standby database
            action: database.promote
            timeout: 10s
            verify: {writer_in: target, within: 5s, interval: 100ms}
"""


# -- helpers ---------------------------------------------------------------------------------

class Monotonic:
    """The status cache's clock, moved by the test."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Clock:
    """The services' clock: real time plus an offset the test moves forward."""

    def __init__(self):
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset

    def advance(self, **kw) -> None:
        self.offset += timedelta(**kw)


def text_of(sv, reply: Reply) -> str:
    return sv.renderer.text(reply)


def ask(sv, text: str) -> int:
    reply = dispatch(sv, ALICE, text)
    assert reply.template == "request_created", text_of(sv, reply)
    return reply.context["req"].id


def request(sv, request_id: int) -> ChangeRequest:
    with session_scope(sv.engine) as s:
        return s.get(ChangeRequest, request_id)


def run_of(sv, request_id: int) -> Run:
    with session_scope(sv.engine) as s:
        return s.exec(select(Run).where(Run.request_id == request_id)).one()


def message_text(sv, request_id: int) -> str:
    """The request's message as it stands now, as text and as Block Kit text."""
    reply = sv.messenger.messages[request(sv, request_id).message_ts]
    blocks, _ = sv.renderer.blocks(reply)
    return sv.renderer.text(reply) + "\n" + json.dumps(blocks, ensure_ascii=False)


def roles(aws) -> dict[str, str]:
    listed = aws["r53"].list_resource_record_sets(HostedZoneId=aws["zone"])["ResourceRecordSets"]
    return {rr["SetIdentifier"]: rr["Failover"] for rr in listed if rr.get("SetIdentifier")}


def cluster(aws, region: str) -> dict:
    return aws["rds"][region].describe_db_clusters(DBClusterIdentifier=aws["db"][region])["DBClusters"][0]


def env(aws) -> dict[str, str]:
    return {"MOTO_URL": aws["endpoint"], "ORDERS_ZONE": aws["zone"], "EAST_DB": aws["db"][EAST],
            "WEST_DB": aws["db"][WEST]}


def flip_by_hand(aws, primary: str) -> None:
    """What someone does in the console: make ``primary``'s record PRIMARY, the other SECONDARY."""
    values = {"orders-east": "192.0.2.10", "orders-west": "198.51.100.20"}
    aws["r53"].change_resource_record_sets(HostedZoneId=aws["zone"], ChangeBatch={"Changes": [
        {"Action": "UPSERT", "ResourceRecordSet": {
            "Name": RECORD, "Type": "A", "TTL": 60, "SetIdentifier": sid,
            "Failover": "PRIMARY" if sid == primary else "SECONDARY", "ResourceRecords": [{"Value": ip}]}}
        for sid, ip in values.items()]})


@pytest.fixture
def aws(moto_endpoint):  # noqa: F811
    """moto: failover A records (PRIMARY in us-east-1) and an RDS cluster in us-east-1 with
    a cross-region replica in us-west-2."""
    reset_moto(moto_endpoint)
    r53 = make_client("route53", region=EAST, timeout=30, endpoint_url=moto_endpoint)
    zone = r53.create_hosted_zone(Name="example.com", CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"]
    rds = {region: make_client("rds", region=region, timeout=30, endpoint_url=moto_endpoint) for region in (EAST, WEST)}
    # unique names: moto keeps the automated snapshot names of a reset server's clusters
    names = {EAST: f"orders-east-{uuid.uuid4().hex[:8]}", WEST: f"orders-west-{uuid.uuid4().hex[:8]}"}
    source = rds[EAST].create_db_cluster(DBClusterIdentifier=names[EAST], Engine="aurora-postgresql",
                                         **LOGIN)["DBCluster"]
    rds[WEST].create_db_cluster(DBClusterIdentifier=names[WEST], Engine="aurora-postgresql",
                                ReplicationSourceIdentifier=source["DBClusterArn"], **LOGIN)
    out = {"endpoint": moto_endpoint, "zone": zone, "r53": r53, "rds": rds, "db": names}
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
        {"Action": "CREATE", "ResourceRecordSet": {
            "Name": RECORD, "Type": "A", "TTL": 60, "SetIdentifier": sid, "Failover": role,
            "ResourceRecords": [{"Value": ip}]}}
        for sid, role, ip in (("orders-east", "PRIMARY", "192.0.2.10"), ("orders-west", "SECONDARY", "198.51.100.20"))]})
    return out


@pytest.fixture
def aws_services(aws, tmp_path):
    loaded = parse_config(AWS_CONFIG, "live-state.yaml", env(aws))
    sv = build_services(loaded, db_url=f"sqlite:///{tmp_path}/drbot.db", inline_runs=True)
    sv.messenger = RecordingMessenger()
    yield sv
    sv.engine.dispose()


# -- 1: live state in /dr status -------------------------------------------------------------

def test_route53_records_flipped_behind_drbots_back_show_as_drift_in_status(aws, tmp_path, fake_slack):
    loaded = parse_config(AWS_CONFIG, "live-state.yaml", env(aws))
    sv = build_services(loaded, db_url=f"sqlite:///{tmp_path}/drbot.db")
    mono = Monotonic()
    sv.status.live.monotonic = mono
    reads = []
    sv.backends["orders-dns"].client.meta.events.register(
        "before-call.route53.ListResourceRecordSets", lambda **_: reads.append(1))

    def status(name: str) -> str:
        r = app.sender.slash_command("status orders", user_id=ALICE.id, user_name="alice", channel_id="C_INC",
                                     response_url=fake_slack.response_url(name))
        assert r.status_code == 200, r.text
        found = wait_until(f"the status reply {name}", lambda: [
            c for c in fake_slack.calls("response_url") if c.params["_path"] == f"/response/{name}"])
        (reply,) = found
        return json.dumps(reply.params, ensure_ascii=False)

    try:
        with running_app(sv, fake_slack) as app:
            before = status("before")
            assert "traffic → us-east-1 (Route 53)" in before and "drift" not in before
            assert "writer us-east-1 (RDS)" in before
            assert len(reads) == 1

            flip_by_hand(aws, "orders-west")  # someone moves traffic in the console
            cached = status("cached")
            assert "drift" not in cached and len(reads) == 1, "read again within the cache's 15s"

            mono.now += 16
            after = status("after")
            assert len(reads) == 2
            assert "NOT READY" in after
            assert ("drift: records say us-east-1, Route 53 (orders-dns) routes traffic to us-west-2: it was "
                    "moved outside drbot") in after
            assert "traffic → us-west-2 (Route 53)" in after
    finally:
        sv.runner.executor.shutdown(wait=True)
        sv.engine.dispose()
    (a,) = sv.status.report("orders").assessments
    assert a.verdict is Verdict.NOT_READY and a.reasons[0].code == "traffic_drift"
    assert a.active == EAST and a.traffic.region == WEST  # the record is shown as what it is: a record


# -- 2: failback safety ------------------------------------------------------------------------

def test_failback_after_an_rds_promotion_is_refused_in_preflight_with_the_reason(aws, aws_services):
    sv = aws_services
    plan = dispatch(sv, ALICE, "plan orders")
    assert plan.context["preflight"].ok, text_of(sv, plan)
    assert "✓ us-west-2's database replicates from us-east-1" in text_of(sv, plan)

    failover = ask(sv, "failover orders us-east-1 is down")
    assert click(sv, BOB, "cr_approve", str(failover)) is None
    assert request(sv, failover).state is RequestState.SUCCEEDED, request(sv, failover).state_reason
    assert "ReplicationSourceIdentifier" not in cluster(aws, WEST)  # promoted, for good
    run = run_of(sv, failover)
    assert (run.measured_rpo_s, run.rpo_method) == (20.0, "lag_before_cutover")

    # us-east-1 is a former writer left standalone: status says so
    (a,) = sv.status.report("orders").assessments
    assert a.active == WEST and a.verdict is Verdict.NOT_READY
    assert [f.code for f in a.reasons][:1] == ["db_diverged"]
    assert sv.renderer.reason(a.reasons[0]).startswith(
        f"us-east-1's database is a standalone writer, not a replica of us-west-2 (RDS cluster {aws['db'][EAST]} "
        "in us-east-1 (writer, available)): moving to us-east-1 would lose everything written in us-west-2")

    # the plan of a failback is refused, with the reason and what to do
    plan = dispatch(sv, ALICE, "plan orders failback")
    pre = plan.context["preflight"]
    assert not pre.ok and pre.data_loss == "diverged"
    (check,) = [c for c in pre.failures]
    assert (check.code, check.ok, check.params["why"]) == ("replication", False, "db_diverged")
    shown = text_of(sv, plan)
    assert "(a run would not start now)" in shown
    assert ("✗ us-east-1's database is a standalone writer, not a replica of us-west-2" in shown
            and "To fix it, re-create us-east-1's database as a replica of us-west-2 and let it catch up (or "
                "reverse the replication so that it follows us-west-2), then plan again; to accept the loss, ask "
                "again with --allow-data-loss" in shown)
    assert ("data-loss risk: EVERYTHING written in us-west-2 that us-east-1's database lacks (it does not "
            "replicate from us-west-2): the run will not start") in shown
    assert "writes of the last 20s" not in shown  # not the stale story of a lag metric
    blocks, _ = sv.renderer.blocks(plan)
    assert "*Data-loss risk:* EVERYTHING written in us-west-2 that us-east-1's database lacks" in json.dumps(
        blocks, ensure_ascii=False)

    # asked and approved anyway: the run does not start, nothing is touched
    failback = ask(sv, "failback orders us-east-1 is back")
    assert "✗ us-east-1's database is a standalone writer" in message_text(sv, failback)
    assert click(sv, BOB, "cr_approve", str(failback)) is None
    refused = request(sv, failback)
    assert (refused.state, refused.state_reason) == (RequestState.FAILED, "pre-flight failed: the plan went stale")
    with session_scope(sv.engine) as s:
        assert s.exec(select(RunStep).where(RunStep.run_id == run_of(sv, failback).id)).all() == []
    assert roles(aws) == {"orders-east": "SECONDARY", "orders-west": "PRIMARY"}
    assert "ReplicationSourceIdentifier" not in cluster(aws, EAST)


def test_allow_data_loss_is_explicit_audited_and_its_rpo_is_unknown_not_a_lag(aws, aws_services):
    sv = aws_services
    failover = ask(sv, "failover orders us-east-1 is down")
    assert click(sv, BOB, "cr_approve", str(failover)) is None
    assert request(sv, failover).state is RequestState.SUCCEEDED

    previewed = text_of(sv, dispatch(sv, ALICE, "plan orders failback --allow-data-loss"))
    assert "data loss ALLOWED explicitly by the requester (--allow-data-loss)" in previewed
    assert "ACCEPTED explicitly by the requester" in previewed and "(a run would not start now)" not in previewed

    unnamed = dispatch(sv, ALICE, "failback orders us-east-1 is back --allow-data-loss")
    assert unnamed.template != "request_created"
    assert "--allow-data-loss accepts losing what the target's database lacks: the reason must name the data " \
           "loss you accept" in text_of(sv, unnamed)

    failback = ask(sv, "failback orders back home, accept data loss since the failover --allow-data-loss")
    req = request(sv, failback)
    assert req.allow_data_loss is True
    with session_scope(sv.engine) as s:
        (entry,) = s.exec(select(AuditEntry).where(AuditEntry.action == "request.allow_data_loss")).all()
    assert (entry.actor, json.loads(entry.detail)) == (ALICE.id, {"checks": ["replication"]})
    assert "data loss ALLOWED explicitly by the requester" in message_text(sv, failback)

    assert click(sv, BOB, "cr_approve", str(failback)) is None
    assert request(sv, failback).state is RequestState.SUCCEEDED, request(sv, failback).state_reason
    assert roles(aws) == {"orders-east": "PRIMARY", "orders-west": "SECONDARY"}
    run = run_of(sv, failback)
    assert run.measured_rpo_s is None and run.rpo_method == "unknown" and run.passed is False
    assert "did not replicate from the writer" in run.rpo_detail
    assert "RPO UNKNOWN" in message_text(sv, failback)


def test_a_sandbox_promotion_detaches_the_old_writer_until_it_is_recreated(tmp_path):
    sv = build_services(parse_config(SWITCHOVER_CONFIG, "sw.yaml", {}), db_url=f"sqlite:///{tmp_path}/d.db",
                        inline_runs=True)
    sv.messenger = RecordingMessenger()
    estate = sv.backends["sim"].estate
    drill = ask(sv, "drill orders promote practice")
    assert click(sv, BOB, "cr_approve", str(drill)) is None
    assert request(sv, drill).state is RequestState.SUCCEEDED, request(sv, drill).state_reason
    run = run_of(sv, drill)
    assert run.rpo_method == "lag_before_cutover" and run.measured_rpo_s == 100.0

    # the drill promoted us-west-2 and left us-east-1 standalone: two writers, split
    (a,) = sv.status.report("orders").assessments
    assert [f.code for f in a.reasons][:2] == ["replication_stopped", "db_diverged"], \
        [sv.renderer.reason(f) for f in a.reasons]
    assert sv.renderer.reason(a.reasons[1]).startswith(
        "us-west-2's database is a standalone writer, not a replica of us-east-1")
    (as_json,) = report_to_dict(sv.status.report("orders"), sv.renderer)["services"]  # drbot status --json
    assert [(d["region"], d["role"]) for d in as_json["database"]["replication"]] == [(EAST, "writer"), (WEST, "writer")]
    assert as_json["traffic"]["region"] == EAST

    estate.move("orders", writer=EAST)  # someone switches it back by hand
    estate.inject("orders", "replica_detached", WEST)
    pre = dispatch(sv, ALICE, "plan orders").context["preflight"]
    assert [c.code for c in pre.failures] == ["lag", "replication"]  # not replicating: nothing is taken as safe
    allowed = dispatch(sv, ALICE, "plan orders --allow-data-loss")
    assert allowed.context["preflight"].ok
    shown = text_of(sv, allowed)
    assert "✓ replication is not running; data loss ALLOWED explicitly by the requester" in shown
    assert "✓ us-west-2's database is a standalone writer, not a replica of us-east-1" in shown
    estate.clear("orders", "replica_detached")  # the replica is re-created
    pre = dispatch(sv, ALICE, "plan orders").context["preflight"]
    assert pre.ok, [c for c in pre.failures]
    sv.engine.dispose()


# -- 3: honest measurements --------------------------------------------------------------------

def test_a_switchover_run_reports_rpo_0_with_its_method_and_rto_from_detection(tmp_path):
    clock = Clock()
    sv = build_services(parse_config(SWITCHOVER_CONFIG, "sw.yaml", {}), db_url=f"sqlite:///{tmp_path}/d.db",
                        clock=clock, inline_runs=True)
    sv.messenger = RecordingMessenger()
    fired = clock() - timedelta(minutes=2)  # the exporter saw it two minutes before it reached drbot
    ingest(sv, [NormalisedAlert(fingerprint="f1", source="alertmanager", service="orders", service_hint="orders",
                                region=EAST, severity="critical", signal="health", status="firing",
                                summary="orders 5xx", starts_at=fired)])
    clock.advance(minutes=3)
    rid = ask(sv, "failover orders 5xx in us-east-1")
    assert "data-loss risk: none expected" in message_text(sv, rid)
    clock.advance(minutes=1)
    assert click(sv, BOB, "cr_approve", str(rid)) is None
    assert request(sv, rid).state is RequestState.SUCCEEDED

    run = run_of(sv, rid)
    assert (run.measured_rpo_s, run.rpo_method) == (0.0, "switchover")  # the lag was 100s: not what was lost
    assert run.passed is True and run.rto_end == "verify"
    assert run.detection == "alert" and abs((run.detected_at - fired).total_seconds()) < 1
    assert 0 <= run.rto_from_run_start_s <= run.measured_rto_s < 30
    assert 6 * 60 <= run.rto_from_detection_s < 6 * 60 + 30  # 2m before + 3m + 1m, then the run
    shown = message_text(sv, rid)
    assert f"RTO {format_duration(timedelta(seconds=run.measured_rto_s))} (target 15m ✓) · RPO 0s (target 5m ✓)" \
        in shown
    assert (f"RTO to the last verify: {format_duration(timedelta(seconds=run.measured_rto_s))} from approval, "
            f"{format_duration(timedelta(seconds=run.rto_from_detection_s))} from detection (first alert)") in shown
    assert "RPO 0: the switchover waited for the standby to catch up" in shown
    sv.engine.dispose()


def test_rpo_methods_from_the_steps_that_ran():
    def step(action: str, output: dict) -> RunStep:
        return RunStep(run_id=1, position=0, name=action, action=action, output=json.dumps(output))

    lag = {"status": "ok", "seconds": 7.5, "source": "cw", "age_s": 3.0}
    assert rpo_of([step("database.promote", {"changed": True, "lag_at_cutover": lag})]) == \
        (7.5, "lag_before_cutover", "read from cw 3s before")
    stale = {"status": "stale", "why": "the reading was 150s old (stale after 60s)"}
    assert rpo_of([step("database.failover", {"changed": True, "lag_at_cutover": stale})]) == \
        (None, "unknown", "the reading was 150s old (stale after 60s)")
    assert rpo_of([step("database.switchover", {"changed": True})]) == \
        (0.0, "switchover", "the switchover waited for the standby to catch up")
    assert rpo_of([step("traffic.shift", {"changed": True})])[:2] == (None, "no_database_move")
    assert rpo_of([step("database.promote", {"changed": False, "lag_at_cutover": lag})])[:2] == \
        (None, "no_database_move")  # it was already the writer: nothing was cut over
    assert rpo_of([step("database.switchover", {"changed": True})], diverged=True)[:2] == (None, "unknown")


# -- 4: the pure rules -------------------------------------------------------------------------

def rep(*dbs: RegionDb) -> Replication:
    return Replication(tuple(dbs), datetime(2026, 1, 1, tzinfo=timezone.utc))


@pytest.mark.parametrize("dbs, resuming, expected", [
    ((RegionDb(EAST, DbRole.WRITER), RegionDb(WEST, DbRole.REPLICA, EAST)), False, (True, "db_replica")),
    ((RegionDb(EAST, DbRole.WRITER), RegionDb(WEST, DbRole.WRITER)), False, (False, "db_diverged")),
    ((RegionDb(EAST, DbRole.WRITER), RegionDb(WEST, DbRole.WRITER)), True, (True, "db_already_writer")),
    ((RegionDb(EAST, DbRole.REPLICA, WEST), RegionDb(WEST, DbRole.WRITER)), False, (True, "db_already_writer")),
    ((RegionDb(EAST, DbRole.WRITER), RegionDb(WEST, DbRole.REPLICA, None)), False,
     (False, "db_replicates_elsewhere")),
    ((RegionDb(EAST, DbRole.WRITER), RegionDb(WEST, DbRole.OUTSIDE)), False, (False, "db_outside")),
    ((RegionDb(EAST, DbRole.WRITER), RegionDb(WEST, DbRole.UNKNOWN, detail="timeout")), False,
     (None, "db_unknown")),
    ((RegionDb(EAST, DbRole.UNKNOWN), RegionDb(WEST, DbRole.REPLICA, EAST)), False, (True, "db_replica")),
    ((RegionDb(EAST, DbRole.UNKNOWN), RegionDb(WEST, DbRole.WRITER)), False, (None, "db_unknown")),
])
def test_moving_the_writer_east_to_west_is_safe_only_onto_a_replica_of_the_writer(dbs, resuming, expected):
    j = judge_move(rep(*dbs), EAST, WEST, moved_already=resuming)
    assert (j.ok, j.code) == expected


NOW = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
TARGETS = Targets(rpo=timedelta(minutes=5), rto=timedelta(minutes=15), warning=timedelta(minutes=2),
                  critical=timedelta(minutes=4), stale_after=timedelta(minutes=1), drill_max_age=timedelta(days=30))


def traffic(region: str | None, status: Status = Status.OK, age: float = 5) -> Reading:
    return Reading("traffic", "dns", status, observed_at=NOW - timedelta(seconds=age), region=region,
                   detail="Route 53", error="" if status is Status.OK else "throttled")


def database(*dbs: RegionDb) -> Reading:
    r = rep(*dbs)
    return Reading("replication", "db", Status.OK, observed_at=NOW, replication=r, detail="RDS")


def test_live_findings_drift_moving_unknown_and_the_standby_database():
    ok = assess_live(EAST, WEST, traffic(EAST), database(RegionDb(EAST, DbRole.WRITER),
                                                         RegionDb(WEST, DbRole.REPLICA, EAST)), TARGETS, NOW)
    assert [(f.verdict, f.code) for f in ok] == [(Verdict.READY, "traffic_ok"), (Verdict.READY, "writer_ok")]

    drift = assess_live(EAST, WEST, traffic(WEST), None, TARGETS, NOW)
    assert [(f.verdict, f.code, f.params["actual"]) for f in drift] == [(Verdict.NOT_READY, "traffic_drift", WEST)]
    moving = assess_live(EAST, WEST, traffic(WEST), None, TARGETS, NOW, moving=12)
    assert [(f.verdict, f.params["moving"]) for f in moving] == [(Verdict.AT_RISK, 12)]

    unknown = assess_live(EAST, WEST, traffic(None, Status.FAILED), None, TARGETS, NOW)
    assert [(f.verdict, f.code, f.params["part"]) for f in unknown] == [
        (Verdict.UNKNOWN, "failed", "where traffic goes")]
    stale = assess_live(EAST, WEST, traffic(EAST, age=90), None, TARGETS, NOW)
    assert [(f.verdict, f.code) for f in stale] == [(Verdict.UNKNOWN, "stale")]

    split = assess_live(EAST, WEST, None, database(RegionDb(EAST, DbRole.WRITER), RegionDb(WEST, DbRole.WRITER)),
                        TARGETS, NOW)
    assert [(f.verdict, f.code) for f in split] == [(Verdict.NOT_READY, "db_diverged")]
    elsewhere = assess_live(EAST, WEST, None, database(RegionDb(EAST, DbRole.REPLICA, WEST),
                                                       RegionDb(WEST, DbRole.WRITER)), TARGETS, NOW)
    assert [(f.verdict, f.code, f.params["actual"]) for f in elsewhere] == [
        (Verdict.NOT_READY, "writer_drift", [WEST])]


def test_the_live_cache_keeps_good_readings_for_its_ttl_only():
    mono = Monotonic()
    cache = LiveCache(timedelta(seconds=15), mono)
    good, bad = traffic(EAST), traffic(None, Status.TIMEOUT)
    cache.put(("orders", "traffic"), good)
    cache.put(("orders", "bad"), bad)
    assert cache.get(("orders", "traffic")) is good and cache.get(("orders", "bad")) is None
    mono.now += 14.9
    assert cache.get(("orders", "traffic")) is good
    mono.now += 0.2
    assert cache.get(("orders", "traffic")) is None


def test_a_preflight_recorded_before_failback_safety_still_reads():
    old = json.dumps({"checks": [{"code": "lag", "ok": True, "params": {"lag": 3, "rpo": 300, "loss": "none"}}],
                      "lag_seconds": 3, "data_loss": "none", "at": "2026-01-01T00:00:00+00:00"})
    pre = Preflight.from_json(old)
    assert pre.allow_data_loss is False and pre.checks == (Check("lag", True, {"lag": 3, "rpo": 300, "loss": "none"}),)


# -- 5: the backends' replication, and a stale lag in the pre-flight ---------------------------

GID = "orders-global"
EAST_ARN = "arn:aws:rds:us-east-1:123456789012:cluster:orders-east"
WEST_ARN = "arn:aws:rds:us-west-2:123456789012:cluster:orders-west"


def global_cluster(members: list[tuple[str, bool, str]], failover: str | None = None) -> dict:
    gc = {"GlobalClusterIdentifier": GID, "Status": "available", "Engine": "aurora-postgresql",
          "GlobalClusterMembers": [{"DBClusterArn": arn, "IsWriter": writer, "SynchronizationStatus": sync}
                                   for arn, writer, sync in members]}
    if failover:
        gc["FailoverState"] = {"Status": failover, "FromDbClusterArn": EAST_ARN, "ToDbClusterArn": WEST_ARN,
                               "IsDataLossAllowed": False}
    return {"GlobalClusters": [gc]}


def test_aurora_global_replication_from_describe_global_clusters():
    client = boto3.session.Session().client("rds", region_name=EAST, aws_access_key_id="k",
                                            aws_secret_access_key="s")
    options = AuroraGlobal.Options.model_validate({"global_cluster_id": GID, "region": EAST,
                                                   "members": {EAST: EAST_ARN, WEST: WEST_ARN}})
    backend = AuroraGlobal("orders-db", options, client=client)
    describe = {"GlobalClusterIdentifier": GID}
    with Stubber(client) as stub:
        stub.add_response("describe_global_clusters", global_cluster(
            [(EAST_ARN, True, "connected"), (WEST_ARN, False, "connected")]), describe)
        stub.add_response("describe_global_clusters", global_cluster(
            [(EAST_ARN, True, "connected"), (WEST_ARN, False, "pending-resync")]), describe)
        stub.add_response("describe_global_clusters", global_cluster([(EAST_ARN, True, "connected")]), describe)
        stub.add_response("describe_global_clusters", global_cluster(
            [(EAST_ARN, True, "connected"), (WEST_ARN, False, "connected")], failover="switching-over"), describe)

        r = backend.replication(Target("orders"))
        assert [(d.region, d.role, d.source_region) for d in r.regions] == [
            (EAST, DbRole.WRITER, None), (WEST, DbRole.REPLICA, EAST)]
        assert judge_move(r, EAST, WEST).ok is True
        resync = backend.replication(Target("orders"))
        assert resync.of(WEST).role is DbRole.OUTSIDE and "pending-resync" in resync.of(WEST).detail
        removed = backend.replication(Target("orders"))
        assert removed.of(WEST).role is DbRole.OUTSIDE and judge_move(removed, EAST, WEST).code == "db_outside"
        with pytest.raises(IntegrationError) as busy:
            backend.replication(Target("orders"))
        assert busy.value.kind is ErrorKind.TRANSIENT and "switchover" in str(busy.value)


def test_rds_names_a_replicas_source_region_by_arn_or_identifier():
    options = RdsPromoter.Options.model_validate({"regions": {EAST: {"cluster": "orders-east"},
                                                              WEST: {"instance": "orders-west"}}})
    rds = RdsPromoter("orders-db", options)
    assert rds._region_of_source(EAST_ARN) == EAST
    assert rds._region_of_source("arn:aws:rds:eu-west-1:123456789012:cluster:orders-east") is None
    assert rds._region_of_source("orders-west") == WEST
    assert rds._region_of_source("someone-else") is None


def test_a_stale_lag_reading_cannot_answer_the_preflight(tmp_path):
    clock = Clock()
    sv = build_services(parse_config(SWITCHOVER_CONFIG, "sw.yaml", {}), db_url=f"sqlite:///{tmp_path}/d.db",
                        clock=clock, inline_runs=True)
    assert dispatch(sv, ALICE, "plan orders").context["preflight"].ok
    clock.advance(minutes=11)  # every reading is now 11 minutes old by the services' clock (stale after 10m)
    plan = dispatch(sv, ALICE, "plan orders")
    (lag,) = [c for c in plan.context["preflight"].failures]
    assert (lag.code, lag.ok, lag.params["stale"]) == ("lag", None, True)
    assert plan.context["preflight"].lag_seconds is None
    assert "? replication lag unknown: the reading is 11m old, stale after 10m (sim)" in text_of(sv, plan)
    sv.engine.dispose()
