"""The two-person approval flow end to end: the app over real HTTP (uvicorn), signed Slack
payloads, replies at the FakeSlack, and the real AWS backends (moto's server for Route 53
and RDS, botocore's Stubber for the Aurora Global switchover moto lacks). Exactly-once
approval under concurrent clicks runs on SQLite and PostgreSQL.

Nothing of drbot is mocked: the sandbox only supplies lag and health readings, the parts
under test are the approval rules, the runbook engine and the AWS backends.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter

import boto3
import pytest
from botocore.stub import Stubber
from sqlmodel import Session, func, select

from bot.actor import Actor
from bot.config import parse_config
from bot.durations import format_duration
from bot.store.models import (
    Approval, AuditEntry, ChangeRequest, RequestState, Run, RunStep, StepState, TimelineEvent,
)
from bot.wiring import build_services
from commands import router as actions
from commands.router import dispatch
from integrations.aws.session import make_client
from tests.app_server import running_app
from tests.helpers import delivered, request_row, rows, the_request, wait_until
from tests.moto_fixture import moto_endpoint, reset_moto  # noqa: F401

CHANNEL = "C_INC"
RECORD = "api.example.com."
BILLING_GID = "billing-global"
BILLING_EAST = "arn:aws:rds:us-east-1:123456789012:cluster:billing-east"
BILLING_WEST = "arn:aws:rds:us-west-2:123456789012:cluster:billing-west"
LOGIN = {"MasterUsername": "admin", "MasterUserPassword": "correct-horse-9"}
FINAL = {RequestState.SUCCEEDED, RequestState.FAILED, RequestState.ROLLED_BACK, RequestState.DENIED,
         RequestState.EXPIRED, RequestState.CANCELLED, RequestState.ABORTED}

# Slack IDs as the config accepts them: U... people, S... a user group (no underscores).
ALICE, BOB, CAROL, DAVE, ERIN, MALLORY = "UALICE", "UBOB", "UCAROL", "UDAVE", "UERIN", "UMALLORY"
RELEASE_GROUP = "SREL"

CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim:
    kind: sandbox
    timeout: 1.0
    profiles:
      orders: {lag: 20, jitter: 0}
      billing: {lag: 4, jitter: 0}
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
      us-east-1: {cluster: orders-east}
      us-west-2: {cluster: orders-west}
    wait_timeout: 5
    poll_interval: 0.05
  billing-db:
    kind: aurora_global
    timeout: 5
    global_cluster_id: billing-global
    region: us-east-1
    members:
      us-east-1: arn:aws:rds:us-east-1:123456789012:cluster:billing-east
      us-west-2: arn:aws:rds:us-west-2:123456789012:cluster:billing-west
    wait_timeout: 5
    poll_interval: 0.05
approvals:
  required_approvals: 1
  approvers: [UBOB, SREL]
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
        - name: Shift traffic to the standby
          action: traffic.shift
          timeout: 20s
          verify: {traffic_in: target, within: 5s, interval: 100ms}
        - name: Promote the standby database
          action: database.promote
          timeout: 20s
          verify: {healthy: target, within: 5s, interval: 100ms}
  - name: billing
    tier: high
    rpo: 1m
    rto: 10m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
    database: {source: billing-db}
    runbooks:
      failover:
        - name: Switch the global database over
          action: database.switchover
          timeout: 20s
          verify: {writer_in: target, within: 5s, interval: 100ms}
"""

SANDBOX_CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim:
    kind: sandbox
    timeout: 10.0
    profiles:
      orders: {lag: 20, jitter: 0}
approvals:
  required_approvals: {required}
  approvers: [UBOB, UCAROL, UDAVE, UERIN, SREL]
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
        - name: Shift traffic
          action: traffic.shift
          timeout: 5s
          verify: {traffic_in: target, within: 5s, interval: 100ms}
        - name: Switch the database over
          action: database.switchover
          timeout: 5s
          verify: {writer_in: target, within: 5s, interval: 100ms}
        - name: Check the new region
          action: check
          timeout: 5s
          verify: {healthy: target, lag_below: 1m, within: 5s, interval: 100ms}
"""


# -- helpers -----------------------------------------------------------------------------

def wait_final(services, request_id: int, timeout: float = 30.0) -> ChangeRequest:
    """The request once it has reached a final state (bounded; the run is in a thread)."""
    req = wait_until(f"request #{request_id} to finish",
                     lambda: (r := request_row(services, request_id)) is not None and r.state in FINAL and r,
                     timeout)
    # _finish queues the Slack messages' updates with the state change; let the run end fully
    # and the outbox deliver them.
    assert services.runner.done.wait(10), "the runner did not signal the end of the run"
    delivered(services)
    return req


def response(fake, name: str, timeout: float = 10.0):
    """The one response_url post the app made to fake.response_url(name)."""
    path = f"/response/{name}"
    found = wait_until(f"a response at {path}",
                       lambda: [c for c in fake.calls("response_url") if c.params["_path"] == path], timeout)
    assert len(found) == 1, found
    return found[0]


def responses_at(fake, name: str) -> list:
    return [c for c in fake.calls("response_url") if c.params["_path"] == f"/response/{name}"]


def texts(blocks: list[dict]) -> str:
    out = []
    for b in blocks:
        if isinstance(b.get("text"), dict):
            out.append(b["text"]["text"])
        for e in b.get("elements", []):
            if isinstance(e, dict) and isinstance(e.get("text"), str):
                out.append(e["text"])
    return "\n".join(out)


def buttons(message: dict) -> dict[str, str]:
    """action_id -> value of the buttons in a message."""
    return {e["action_id"]: e["value"] for b in message.get("blocks", []) if b["type"] == "actions"
            for e in b["elements"]}


def shutdown(services) -> None:
    services.runner.executor.shutdown(wait=True)
    services.engine.dispose()


# -- AWS estate --------------------------------------------------------------------------

@pytest.fixture
def aws(moto_endpoint):  # noqa: F811
    """moto: a hosted zone with PRIMARY (us-east-1) / SECONDARY (us-west-2) failover A
    records, and an RDS cluster in us-east-1 with a cross-region replica in us-west-2."""
    reset_moto(moto_endpoint)
    r53 = make_client("route53", region="us-east-1", timeout=5, endpoint_url=moto_endpoint)
    zone = r53.create_hosted_zone(Name="example.com", CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"]
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
        {"Action": "CREATE", "ResourceRecordSet": {
            "Name": RECORD, "Type": "A", "TTL": 60, "SetIdentifier": "orders-east", "Failover": "PRIMARY",
            "ResourceRecords": [{"Value": "192.0.2.10"}]}},
        {"Action": "CREATE", "ResourceRecordSet": {
            "Name": RECORD, "Type": "A", "TTL": 60, "SetIdentifier": "orders-west", "Failover": "SECONDARY",
            "ResourceRecords": [{"Value": "198.51.100.20"}]}},
    ]})
    rds = {region: make_client("rds", region=region, timeout=5, endpoint_url=moto_endpoint)
           for region in ("us-east-1", "us-west-2")}
    source = rds["us-east-1"].create_db_cluster(
        DBClusterIdentifier="orders-east", Engine="aurora-postgresql", **LOGIN)["DBCluster"]
    rds["us-west-2"].create_db_cluster(
        DBClusterIdentifier="orders-west", Engine="aurora-postgresql",
        ReplicationSourceIdentifier=source["DBClusterArn"], **LOGIN)
    return {"endpoint": moto_endpoint, "zone": zone, "r53": r53, "rds": rds, "source_arn": source["DBClusterArn"]}


def failover_roles(aws) -> dict[str, str]:
    listed = aws["r53"].list_resource_record_sets(HostedZoneId=aws["zone"])["ResourceRecordSets"]
    return {rr["SetIdentifier"]: rr["Failover"] for rr in listed if rr.get("SetIdentifier")}


def cluster(aws, region: str, name: str) -> dict:
    return aws["rds"][region].describe_db_clusters(DBClusterIdentifier=name)["DBClusters"][0]


def global_cluster(writer: str, status: str = "available", failover: str | None = None) -> dict:
    gc = {"GlobalClusterIdentifier": BILLING_GID,
          "GlobalClusterArn": f"arn:aws:rds::123456789012:global-cluster:{BILLING_GID}",
          "Status": status, "Engine": "aurora-postgresql", "EngineVersion": "15.4",
          "GlobalClusterMembers": [
              {"DBClusterArn": arn, "IsWriter": arn == writer,
               "Readers": [a for a in (BILLING_EAST, BILLING_WEST) if a != arn] if arn == writer else [],
               "SynchronizationStatus": "connected"}
              for arn in (BILLING_EAST, BILLING_WEST)]}
    if failover:
        gc["FailoverState"] = {"Status": failover, "FromDbClusterArn": BILLING_EAST,
                               "ToDbClusterArn": BILLING_WEST, "IsDataLossAllowed": False}
    return gc


@pytest.fixture
def billing_rds():
    """A real boto3 RDS client (never sent anywhere) behind a Stubber that checks every
    parameter against the AWS model."""
    client = boto3.session.Session().client("rds", region_name="us-east-1",
                                            aws_access_key_id="k", aws_secret_access_key="s")
    stubber = Stubber(client)
    stubber.activate()
    yield client, stubber
    stubber.deactivate()


@pytest.fixture
def estate(aws, billing_rds, fake_slack, tmp_path):
    """The full config, services on SQLite with the stubbed billing client, the app over HTTP."""
    loaded = parse_config(CONFIG, "approval-http.yaml", {"MOTO_URL": aws["endpoint"], "ORDERS_ZONE": aws["zone"]})
    client, stubber = billing_rds
    services = build_services(loaded, db_url=f"sqlite:///{tmp_path}/drbot.db", clients={"billing-db": client})
    fake_slack.usergroups[RELEASE_GROUP] = [CAROL, DAVE]
    try:
        with running_app(services, fake_slack) as app:
            yield {"services": services, "app": app, "fake": fake_slack, "aws": aws, "stubber": stubber}
    finally:
        shutdown(services)


def ask(estate, text: str, name: str = "cmd") -> tuple[ChangeRequest, dict]:
    """``/dr TEXT`` by Alice; returns the request row and its message as posted."""
    app, fake, services = estate["app"], estate["fake"], estate["services"]
    r = app.sender.slash_command(text, user_id=ALICE, user_name="alice", channel_id=CHANNEL,
                                 response_url=fake.response_url(name))
    assert r.status_code == 200
    created = response(fake, name)
    (post,) = fake.wait_for("chat.postMessage", 1)
    assert post.params["channel"] == CHANNEL and not post.params.get("thread_ts")
    service = text.split()[1]
    # the outbox records the message's ts with the request once Slack has answered the post
    req = wait_until("the request's message recorded",
                     lambda: (q := the_request(services, service)).message_ts and q)
    assert created.params["response_type"] == "ephemeral"
    assert f"Request #{req.id} is posted for approval" in created.params["text"]
    assert req.state is RequestState.PENDING and req.message_ts
    return req, fake.message(CHANNEL, req.message_ts)


def click(estate, user: str, req: ChangeRequest, name: str, action: str = "cr_approve"):
    fake = estate["fake"]
    r = estate["app"].sender.block_action(action, str(req.id), user_id=user, user_name=user[1:].lower(),
                                          channel_id=CHANNEL, response_url=fake.response_url(name),
                                          message=fake.message(CHANNEL, req.message_ts))
    assert r.status_code == 200
    return r


# -- 1-2: orders over Route 53 (moto) and RDS (moto) ---------------------------------------

def test_failover_needs_another_authorised_person_then_runs_against_route53_and_rds(estate):
    services, fake, aws = estate["services"], estate["fake"], estate["aws"]
    assert failover_roles(aws) == {"orders-east": "PRIMARY", "orders-west": "SECONDARY"}

    req, message = ask(estate, "failover orders 5xx at 40% in us-east-1")

    # The approval message: Approve / Deny / Cancel, each carrying the request id.
    assert buttons(message) == {"cr_approve": str(req.id), "cr_deny": str(req.id), "cr_cancel": str(req.id)}
    shown = texts(message["blocks"])
    assert "<@UALICE> asks to failover *orders* from us-east-1 to us-west-2" in shown
    assert "5xx at 40% in us-east-1" in shown
    assert "traffic goes to us-east-1 (orders-dns)" in shown  # the pre-flight read Route 53
    assert "approvers: <@UBOB>, <!subteam^SREL>" in shown

    # The requester cannot approve her own request.
    click(estate, ALICE, req, "alice")
    refused = response(fake, "alice")
    assert refused.params["response_type"] == "ephemeral" and refused.params["replace_original"] is False
    assert "someone else has to approve or deny it" in refused.params["text"]
    # Someone who is neither listed nor in the user group cannot either.
    click(estate, MALLORY, req, "mallory")
    refused = response(fake, "mallory")
    assert refused.params["response_type"] == "ephemeral"
    assert "you are not an approver for orders (approvers: <@UBOB>, <!subteam^SREL>)" in refused.params["text"]
    assert [c.params["usergroup"] for c in fake.calls("usergroups.users.list")] == [RELEASE_GROUP]
    # Nothing ran, nothing changed.
    assert request_row(services, req.id).state is RequestState.PENDING
    assert rows(services, Run) == [] and rows(services, Approval) == []
    assert failover_roles(aws)["orders-east"] == "PRIMARY"

    click(estate, BOB, req, "bob")
    done = wait_final(services, req.id)
    assert done.state is RequestState.SUCCEEDED, done.state_reason
    assert responses_at(fake, "bob") == []  # the winner is told through the message itself

    # Route 53: the roles flipped, and the change is INSYNC.
    assert failover_roles(aws) == {"orders-east": "SECONDARY", "orders-west": "PRIMARY"}
    (run,) = rows(services, Run, Run.request_id == req.id)
    steps = rows(services, RunStep, RunStep.run_id == run.id, order=RunStep.position)
    assert [(st.position, st.attempt, st.state, st.action) for st in steps] == [
        (0, 1, StepState.SUCCEEDED, "traffic.shift"), (1, 1, StepState.SUCCEEDED, "database.promote")]
    shift = json.loads(steps[0].output)
    assert shift["details"]["after"] == {"us-east-1": "SECONDARY", "us-west-2": "PRIMARY"}
    assert shift["verify"] == {"verified": ["traffic"]}
    assert aws["r53"].get_change(Id=shift["details"]["change_id"])["ChangeInfo"]["Status"] == "INSYNC"
    # RDS: the replica in us-west-2 is promoted to a standalone writer.
    west = cluster(aws, "us-west-2", "orders-west")
    assert "ReplicationSourceIdentifier" not in west and west["Status"] == "available"
    promote = json.loads(steps[1].output)
    assert promote["details"]["source"] == aws["source_arn"]
    assert promote["summary"].startswith("promoted RDS cluster orders-west in us-west-2")

    # Measured RTO (approval to verified) and RPO (lag at cutover), stored and shown.
    assert run.state is RequestState.SUCCEEDED and run.passed is True
    assert 0 < run.measured_rto_s < 60 and run.measured_rpo_s == 20.0
    assert run.rpo_method == "lag_before_cutover"  # read just before the replica was promoted
    assert services.status.regions()["orders"] == ("us-west-2", "us-east-1")
    final = fake.message(CHANNEL, req.message_ts)
    assert buttons(final) == {}
    assert final["text"].endswith(": succeeded")
    final_text = texts(final["blocks"])
    assert (f"*succeeded* · RTO {format_duration(run.measured_rto_s)} (target 15m ✓) · "
            f"RPO 20s (target 5m ✓)") in final_text
    updates = [c for c in fake.calls("chat.update") if c.params["ts"] == req.message_ts]
    assert "succeeded" in updates[-1].params["text"]
    assert "RTO" in texts(updates[-1].blocks) and "RPO 20s" in texts(updates[-1].blocks)

    # One progress message, in the request's thread, updated in place (updates coalesce when
    # they come faster than Slack's one message per second per channel).
    assert run.progress_ts
    threaded = [c for c in fake.calls("chat.postMessage") if c.params.get("thread_ts")]
    assert len(threaded) == 1 and threaded[0].params["thread_ts"] == req.message_ts
    progress = fake.message(CHANNEL, run.progress_ts)
    assert progress["thread_ts"] == req.message_ts and "edited" in progress
    progress_updates = [c for c in fake.calls("chat.update") if c.params["ts"] == run.progress_ts]
    assert 1 <= len(progress_updates) <= 7  # at most one per step start/end and the end
    lines = texts(progress["blocks"])
    assert "✓ 1. Shift traffic to the standby: done in" in lines
    assert "made api.example.com. A PRIMARY in us-west-2" in lines
    assert "✓ 2. Promote the standby database: done in" in lines
    assert "*Measured* RTO" in lines

    # Audit trail and timeline: requested, refused, approved, run, steps, succeeded.
    events = rows(services, TimelineEvent, TimelineEvent.request_id == req.id, order=TimelineEvent.id)
    assert [(e.kind, e.actor) for e in events] == [
        ("request.failover", ALICE), ("approval.refused", MALLORY), ("request.approved", BOB),
        ("run.started", "drbot"), ("step.succeeded", "drbot"), ("step.succeeded", "drbot"),
        ("run.succeeded", "drbot")]
    assert [e.text for e in events if e.kind == "step.succeeded"] == [
        "Shift traffic to the standby", "Promote the standby database"]
    audit = rows(services, AuditEntry, AuditEntry.target == "orders", order=AuditEntry.id)
    assert [(a.action, a.actor, a.origin) for a in audit] == [
        ("request.failover", ALICE, "slack"), ("approval.refused", MALLORY, "slack"),
        ("request.approved", BOB, "slack"), ("run.started", "drbot", "system"),
        ("step.succeeded", "drbot", "system"), ("step.succeeded", "drbot", "system"),
        ("run.succeeded", "drbot", "system")]
    assert json.loads(audit[1].detail) == {"why": "not an approver"}
    assert json.loads(audit[2].detail) == {"count": 1, "required": 1}
    (approval,) = rows(services, Approval)
    assert (approval.request_id, approval.approver, approval.approve) == (req.id, BOB, True)


# -- 3: billing over Aurora Global (Stubber) ---------------------------------------------

def test_billing_switchover_sends_exact_parameters_to_aurora_global(estate):
    services, fake, stubber = estate["services"], estate["fake"], estate["stubber"]
    describe = {"GlobalClusterIdentifier": BILLING_GID}
    # the pre-flight reads the replication live, when asked and again when the run starts
    for _ in range(2):
        stubber.add_response("describe_global_clusters", {"GlobalClusters": [global_cluster(BILLING_EAST)]}, describe)
    # promote: read, switch over, poll until settled; then the step's verify reads the writer.
    stubber.add_response("describe_global_clusters", {"GlobalClusters": [global_cluster(BILLING_EAST)]}, describe)
    stubber.add_response("switchover_global_cluster",
                         {"GlobalCluster": global_cluster(BILLING_EAST, failover="pending")},
                         {"GlobalClusterIdentifier": BILLING_GID, "TargetDbClusterIdentifier": BILLING_WEST})
    stubber.add_response("describe_global_clusters", {"GlobalClusters": [global_cluster(
        BILLING_EAST, status="switching-over", failover="switching-over")]}, describe)
    stubber.add_response("describe_global_clusters", {"GlobalClusters": [global_cluster(BILLING_WEST)]}, describe)
    stubber.add_response("describe_global_clusters", {"GlobalClusters": [global_cluster(BILLING_WEST)]}, describe)

    req, message = ask(estate, "failover billing planned move off us-east-1")
    assert buttons(message)["cr_approve"] == str(req.id)
    assert "*Data-loss risk:* none expected" in texts(message["blocks"])
    assert "us-west-2's database replicates from us-east-1" in texts(message["blocks"])

    click(estate, CAROL, req, "carol")  # an approver through the SREL user group
    done = wait_final(services, req.id)
    assert done.state is RequestState.SUCCEEDED, done.state_reason
    stubber.assert_no_pending_responses()
    assert [c.params["usergroup"] for c in fake.calls("usergroups.users.list")] == [RELEASE_GROUP]

    (run,) = rows(services, Run, Run.request_id == req.id)
    (step,) = rows(services, RunStep, RunStep.run_id == run.id)
    output = json.loads(step.output)
    assert (step.action, step.attempt, step.state) == ("database.switchover", 1, StepState.SUCCEEDED)
    assert output["summary"] == ("switched over Aurora global database billing-global: us-west-2 is now "
                                 "the writer (was us-east-1)")
    assert output["verify"] == {"verified": ["writer"]}
    # a switchover waits for the standby: nothing is at risk, whatever the lag was (4s here)
    assert (run.measured_rpo_s, run.rpo_method, run.passed) == (0.0, "switchover", True)
    assert services.status.regions()["billing"] == ("us-west-2", "us-east-1")
    final = texts(fake.message(CHANNEL, req.message_ts)["blocks"])
    assert "*succeeded* · RTO" in final and "RPO 0s (target 1m ✓)" in final
    assert "RPO 0: the switchover waited for the standby to catch up" in final
    (approval,) = rows(services, Approval)
    assert approval.approver == CAROL
    kinds = [e.kind for e in rows(services, TimelineEvent, TimelineEvent.request_id == req.id,
                                  order=TimelineEvent.id)]
    assert kinds == ["request.failover", "request.approved", "run.started", "step.succeeded", "run.succeeded"]


# -- 4: exactly once ----------------------------------------------------------------------

def sandbox_services(db_url: str, required: int):
    loaded = parse_config(SANDBOX_CONFIG.replace("{required}", str(required)), "exactly-once.yaml", {})
    return build_services(loaded, db_url=db_url)


def assert_ran_once(services, req_id: int, approvers: set[str], required: int) -> None:
    done = wait_final(services, req_id)
    assert done.state is RequestState.SUCCEEDED, done.state_reason
    runs = rows(services, Run, Run.request_id == req_id)
    assert len(runs) == 1, runs
    assert rows(services, Run) == runs
    steps = rows(services, RunStep, RunStep.run_id == runs[0].id, order=RunStep.position)
    assert [(st.position, st.attempt, st.state) for st in steps] == [
        (i, 1, StepState.SUCCEEDED) for i in range(3)]
    approvals = rows(services, Approval, Approval.request_id == req_id)
    per_person = Counter(a.approver for a in approvals)
    assert all(n == 1 for n in per_person.values()), per_person
    assert set(per_person) <= approvers and len(approvals) == required
    with Session(services.engine) as s:
        started = s.exec(select(func.count()).select_from(TimelineEvent).where(
            TimelineEvent.request_id == req_id, TimelineEvent.kind == "run.started")).one()
        approved = s.exec(select(func.count()).select_from(TimelineEvent).where(
            TimelineEvent.request_id == req_id, TimelineEvent.kind == "request.approved")).one()
    assert (started, approved) == (1, required)
    assert services.backends["sim"].estate.active("orders") == "us-west-2"
    assert services.backends["sim"].estate.writer("orders") == "us-west-2"


@pytest.mark.parametrize("required", [1, 2])
def test_fifty_concurrent_approvals_start_exactly_one_run(db_url, required):
    services = sandbox_services(db_url, required)
    try:
        alice = Actor(id=ALICE, name="alice", origin="slack", channel=CHANNEL)
        created = dispatch(services, alice, "failover orders region us-east-1 degraded")
        assert created.template == "request_created", created
        req_id = created.context["req"].id
        approvers = [BOB, CAROL, DAVE, ERIN]
        barrier = threading.Barrier(50)
        replies: list = [None] * 50
        errors: list[BaseException] = []

        def approve(i: int) -> None:
            user = approvers[i % len(approvers)]  # each approver clicks 12-13 times
            try:
                barrier.wait(timeout=30)
                replies[i] = actions.click(services, Actor(id=user, name=user.lower(), origin="slack",
                                                           channel=CHANNEL), "cr_approve", str(req_id))
            except BaseException as e:  # surfaced below
                errors.append(e)

        threads = [threading.Thread(target=approve, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        # Only the clicks that counted get no reply; every other one is told why not.
        assert sum(r is None for r in replies) == required
        codes = Counter(r.context["code"] for r in replies if r is not None)
        assert set(codes) <= {"not_pending", "already_approved"} and sum(codes.values()) == 50 - required
        assert_ran_once(services, req_id, set(approvers), required)
    finally:
        shutdown(services)


def test_twenty_concurrent_signed_clicks_over_http_start_exactly_one_run(fake_slack, tmp_path):
    services = sandbox_services(f"sqlite:///{tmp_path}/drbot.db", 1)
    fake_slack.usergroups[RELEASE_GROUP] = ["UFRANK"]
    try:
        with running_app(services, fake_slack) as app:
            req, message = ask({"services": services, "app": app, "fake": fake_slack}, "failover orders region us-east-1 degraded")
            approvers = [BOB, CAROL, DAVE, "UFRANK"]  # UFRANK only through the user group
            barrier = threading.Barrier(20)
            statuses: list[int] = []
            errors: list[BaseException] = []

            def approve(i: int) -> None:
                user = approvers[i % len(approvers)]
                try:
                    barrier.wait(timeout=30)
                    r = app.sender.block_action("cr_approve", str(req.id), user_id=user,
                                                user_name=user[1:].lower(), channel_id=CHANNEL,
                                                response_url=fake_slack.response_url(f"click{i}"),
                                                message=message)
                    statuses.append(r.status_code)
                except BaseException as e:
                    errors.append(e)

            threads = [threading.Thread(target=approve, args=(i,)) for i in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            assert errors == [] and statuses == [200] * 20
            assert_ran_once(services, req.id, set(approvers), 1)
            # 19 clickers are told, each once and only them, that there is nothing to decide.
            fake_slack.wait_for("response_url", 1 + 19, timeout=20)  # the /dr reply and 19 refusals
            time.sleep(0.3)  # and no 20th
            told = [c for c in fake_slack.calls("response_url") if c.params["_path"].startswith("/response/click")]
            assert len(told) == 19 and len({c.params["_path"] for c in told}) == 19
            assert all(c.params["response_type"] == "ephemeral" for c in told)
            assert all(("nothing to decide any more" in c.params["text"]
                        or "you have already approved" in c.params["text"]) for c in told)
            final = fake_slack.message(CHANNEL, req.message_ts)
            assert buttons(final) == {} and final["text"].endswith(": succeeded")
    finally:
        shutdown(services)
