"""Scheduled drills end to end, with a clock the test controls.

The test sets "now" (a list read by the services' clock) and calls ``bot.drills.tick``
itself, as the leader's scheduler would. Messages go through the real Slack messenger to
the fake Slack Web API; clicks and commands go through ``commands.actions`` and
``commands.router``; the ``orders`` drill shifts Route 53 failover records on moto's
server, the ``payments`` drill acts on the sandbox only. Nothing of drbot is mocked.

The clock is set in the past (June 2024): sandbox and Route 53 readings carry the real
time they were observed, and a reading observed "after" the test's now is never stale,
so readiness sees fresh readings whatever time the test picks.
"""
from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from slack_sdk import WebClient
from sqlmodel import col

from bot import drills
from bot.actor import Actor
from bot.config import parse_config
from bot.readiness import Verdict
from bot.render import Reply
from transports.slack.messenger import SlackMessenger
from bot.store.drill_tables import DrillOccurrence, OccurrenceState
from bot.store.models import AuditEntry, ChangeRequest, RequestKind, RequestState, Run
from bot.wiring import build_services
from commands import router as actions
from commands.actions import FormError
from commands.router import dispatch
from integrations.aws.session import make_client
from tests.helpers import delivered, request_row as request, rows, runs_of
from tests.moto_fixture import moto_endpoint, reset_moto  # noqa: F401

BERLIN = ZoneInfo("Europe/Berlin")
T = datetime(2024, 6, 4, 10, 0, tzinfo=BERLIN).astimezone(timezone.utc)
"""A Tuesday, 10:00 in Berlin (08:00 UTC): when both scheduled drills are due."""
H, M = timedelta(hours=1), timedelta(minutes=1)

ALICE = Actor(id="UALICE", name="alice")
BOB = Actor(id="UBOB", name="bob")
CAROL = Actor(id="UCAROL", name="carol")
DAVE = Actor(id="UDAVE", name="dave")
ORDERS_CH, PAY_CH = "C_ORDERS", "C_PAY"
RECORD = "api.example.com."

CONFIG = """
regions: [us-east-1, us-west-2]
timezone: Europe/Berlin
sources:
  sim:
    kind: sandbox
    timeout: 1.0
    profiles:
      orders: {lag: 20, jitter: 0}
      payments: {lag: 4, jitter: 0}
  orders-dns:
    kind: route53_failover
    endpoint_url: ${MOTO_URL}
    timeout: 5
    hosted_zone_id: ${ORDERS_ZONE}
    record_name: api.example.com
    records: {us-east-1: orders-east, us-west-2: orders-west}
    insync_timeout: 5
    poll_interval: 0.05
approvals:
  required_approvals: 1
  approvers: [UBOB, UCAROL, UDAVE, UALICE]
  expires: 30m
watch: {enabled: false}
digest: {enabled: false}
services:
  - name: orders
    tier: high
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    channel: C_ORDERS
    drill_max_age: 7d
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
    traffic: {source: orders-dns}
    runbooks:
      drill:
        failover:
          - name: Shift traffic to the standby
            action: traffic.shift
            timeout: 20s
            verify: {traffic_in: target, within: 5s, interval: 100ms}
          - name: Check the standby serves
            action: check
            timeout: 5s
            verify: {healthy: target, lag_below: 1m, within: 5s, interval: 100ms}
    drills:
      - name: monthly
        cron: "0 10 * * tue"
        timezone: Europe/Berlin
        scenario: failover
        environment: production
        announce: [24h, 1h]
        on_point: [UDAVE]
        impact: api.example.com answers from the standby during the drill
  - name: payments
    tier: high
    rpo: 5m
    rto: 30m
    active: us-east-1
    standby: us-west-2
    channel: C_PAY
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
    traffic: {source: sim}
    database: {source: sim}
    runbooks:
      drill:
        default:
          - name: Shift traffic
            action: traffic.shift
            timeout: 5s
            verify: {traffic_in: target, within: 5s, interval: 100ms}
          - name: Switch the database over
            action: database.switchover
            timeout: 5s
            verify: {writer_in: target, within: 5s, interval: 100ms}
        broken:
          - name: Shift traffic, then lag below one second (cannot pass)
            action: traffic.shift
            timeout: 5s
            verify: {traffic_in: target, lag_below: 1s, within: 300ms, interval: 100ms}
    drills:
      - name: weekly
        cron: "0 10 * * tue"
        timezone: Europe/Berlin
        announce: [24h, 1h]
"""


# -- the estate ----------------------------------------------------------------------------

@pytest.fixture
def zone(moto_endpoint):  # noqa: F811
    """moto: api.example.com failover records, PRIMARY in us-east-1."""
    reset_moto(moto_endpoint)
    r53 = make_client("route53", region="us-east-1", timeout=5, endpoint_url=moto_endpoint)
    zone_id = r53.create_hosted_zone(Name="example.com", CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"]
    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
        {"Action": "CREATE", "ResourceRecordSet": {
            "Name": RECORD, "Type": "A", "TTL": 60, "SetIdentifier": sid, "Failover": role,
            "ResourceRecords": [{"Value": ip}]}}
        for sid, role, ip in (("orders-east", "PRIMARY", "192.0.2.10"), ("orders-west", "SECONDARY", "198.51.100.20"))
    ]})
    return {"endpoint": moto_endpoint, "zone": zone_id, "client": r53}


def roles(zone) -> dict[str, str]:
    listed = zone["client"].list_resource_record_sets(HostedZoneId=zone["zone"])["ResourceRecordSets"]
    return {rr["SetIdentifier"]: rr["Failover"] for rr in listed if rr.get("SetIdentifier")}


class Estate:
    """Services on one database, each with its own controllable clock, posting to the fake Slack."""

    def __init__(self, zone, fake, url: str):
        self.loaded = parse_config(CONFIG, "drills-test.yaml", {"MOTO_URL": zone["endpoint"],
                                                                 "ORDERS_ZONE": zone["zone"]})
        self.fake, self.url = fake, url
        self.built = []

    def services(self, now: list[datetime]):
        sv = build_services(self.loaded, db_url=self.url, clock=lambda: now[0], inline_runs=True)
        sv.messenger = SlackMessenger(WebClient(base_url=self.fake.base_url, token="xoxb-t"), sv.renderer)
        self.built.append(sv)
        return sv

    def stop(self, sv) -> None:
        sv.outbox.drain(timeout=10)
        sv.runner.executor.shutdown(wait=True)
        sv.engine.dispose()

    def close(self) -> None:
        for sv in self.built:
            self.stop(sv)


@pytest.fixture
def estate(zone, fake_slack, tmp_path):
    e = Estate(zone, fake_slack, f"sqlite:///{tmp_path}/drbot.db")
    try:
        yield e
    finally:
        e.close()


# -- reading what happened -----------------------------------------------------------------

def occurrence(sv, service: str) -> DrillOccurrence:
    (occ,) = rows(sv, DrillOccurrence, DrillOccurrence.service == service)
    return occ


def audit(sv, target: str | None = None) -> list[tuple[str, str]]:
    where = [AuditEntry.target == target] if target else []
    return [(a.actor, a.action) for a in rows(sv, AuditEntry, *where)]


def messages(fake, channel: str) -> list[dict]:
    """Every message posted to ``channel``, as it stands now, oldest first."""
    return sorted((m for (c, _), m in list(fake.messages.items()) if c == channel), key=lambda m: float(m["ts"]))


def roots(fake, channel: str) -> list[dict]:
    return [m for m in messages(fake, channel) if not m.get("thread_ts")]


def thread(fake, channel: str, root_ts: str) -> list[dict]:
    return [m for m in messages(fake, channel) if m.get("thread_ts") == root_ts]


def post_count(fake) -> int:
    return len([c for c in fake.calls("chat.postMessage") if c.status == 200])


def buttons(message: dict) -> list[tuple[str, str]]:
    return [(e["action_id"], e["value"]) for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


def text_of(sv, reply: Reply) -> str:
    return sv.renderer.text(reply)


def tick_at(sv, now: list[datetime], at: datetime) -> dict[str, list[int]]:
    now[0] = at
    return drills.tick(sv)


NOTHING = {"planned": [], "announced": [], "started": [], "missed": []}


# -- 1: announced ahead, approved ahead, started at its time, reported -------------------

def test_scheduled_drills_are_announced_in_one_thread_approved_ahead_and_run_at_their_time(estate, zone):
    fake = estate.fake
    now = [T - 25 * H]
    sv = estate.services(now)

    assert drills.tick(sv) == NOTHING  # T-25h: nothing is due for its first announcement yet
    assert post_count(fake) == 0 and rows(sv, DrillOccurrence) == []

    done = tick_at(sv, now, T - 24 * H)
    orders, payments = occurrence(sv, "orders"), occurrence(sv, "payments")
    assert sorted(done["planned"]) == sorted(done["announced"]) == sorted([orders.id, payments.id])
    assert (orders.starts_at, orders.planned_for, orders.state) == (T, T, OccurrenceState.PLANNED)
    assert (orders.schedule, orders.channel, payments.channel) == ("monthly", ORDERS_CH, PAY_CH)

    drill = request(sv, orders.request_id)
    assert (drill.kind, drill.state, drill.scenario) == (RequestKind.DRILL, RequestState.PENDING, "failover")
    assert (drill.requester, drill.required_approvals) == ("drbot", 2)  # the scheduler asks: two people approve
    assert drill.not_before == T and drill.expires_at == T
    assert (drill.from_region, drill.to_region) == ("us-east-1", "us-west-2")

    (root,) = roots(fake, ORDERS_CH)
    assert root["ts"] == orders.thread_ts == drill.message_ts
    assert buttons(root) == [("cr_approve", str(drill.id)), ("drill_postpone", str(orders.id)),
                             ("drill_skip", str(orders.id))]
    assert "Drill of orders (failover) on Tue 04 Jun 10:00 CEST" in root["text"]
    body = json.dumps(root["blocks"])
    assert "Shift traffic to the standby" in body and "in production" in body and "<@UDAVE>" in body
    assert "Needs 2 approvals before 10:00 CEST" in body
    (pay_root,) = roots(fake, PAY_CH)
    pay = request(sv, payments.request_id)

    # approval ahead of time: the requester (the scheduler) is nobody, so two people approve;
    # the second approval makes it approved, but the click does not start it
    assert tick_at(sv, now, T - 3 * H) == NOTHING
    now[0] = T - 2 * H
    assert actions.click(sv, BOB, "cr_approve", str(drill.id)) is None
    assert request(sv, drill.id).state is RequestState.PENDING
    again = actions.click(sv, BOB, "cr_approve", str(drill.id))
    assert "you have already approved request" in text_of(sv, again)
    assert actions.click(sv, CAROL, "cr_approve", str(drill.id)) is None
    for who in (CAROL, DAVE):
        assert actions.click(sv, who, "cr_approve", str(pay.id)) is None
    assert request(sv, drill.id).state is RequestState.APPROVED
    assert request(sv, pay.id).state is RequestState.APPROVED
    assert rows(sv, Run) == [], "an approval ahead of time must not start the drill"
    delivered(sv)
    assert buttons(fake.message(ORDERS_CH, root["ts"])) == [("drill_postpone", str(orders.id)),
                                                            ("drill_skip", str(orders.id))]

    # T-1h: one reminder, in the announcement's thread
    before = post_count(fake)
    assert sorted(tick_at(sv, now, T - H)["announced"]) == sorted([orders.id, payments.id])
    assert post_count(fake) == before + 2
    (reminder,) = thread(fake, ORDERS_CH, root["ts"])
    assert reminder["text"] == "Drill of orders in 1h"
    assert "It is approved and will start on time" in json.dumps(reminder["blocks"])
    assert tick_at(sv, now, T - 30 * M) == NOTHING
    assert tick_at(sv, now, T - timedelta(seconds=1)) == NOTHING
    assert rows(sv, Run) == []

    # T: the tick starts both; each runs and reports in its own thread
    done = tick_at(sv, now, T)
    assert sorted(done["started"]) == sorted([orders.id, payments.id]) and done["missed"] == []
    delivered(sv)
    assert occurrence(sv, "orders").state is OccurrenceState.STARTED

    (run,) = runs_of(sv, drill.id)
    assert run.state is RequestState.SUCCEEDED and run.passed is True, (run.error, run.measured_rto_s)
    assert (run.proof, run.sandbox) == ("moved", True)  # Route 53 moved and read back; lag from the sandbox
    assert run.approved_at == T - 2 * H and run.measured_rto_s == 0.0  # the test's clock stands still during the run
    assert (run.measured_rpo_s, run.rpo_method) == (None, "no_database_move")  # traffic only: no writer moved
    assert request(sv, drill.id).state is RequestState.SUCCEEDED
    assert roles(zone) == {"orders-east": "SECONDARY", "orders-west": "PRIMARY"}  # moto's records moved

    in_thread = thread(fake, ORDERS_CH, root["ts"])
    assert [m["text"] for m in in_thread][:2] == ["Drill of orders in 1h", "Drill of orders is starting now"]
    # lag and health come from the sandbox: the report says so
    assert in_thread[-1]["text"] == "Drill report: orders failover PASSED (SANDBOX)"
    report = json.dumps(in_thread[-1]["blocks"])
    assert "of 15m: pass" in report and "20s of 5m" not in report  # no RPO: nothing was at risk
    assert "Shift traffic to the standby" in report and "Check the standby serves" in report
    assert len(roots(fake, ORDERS_CH)) == 1, "everything about the drill is in one thread"

    (pay_run,) = runs_of(sv, pay.id)
    assert pay_run.passed is True and (pay_run.measured_rpo_s, pay_run.rpo_method) == (0.0, "switchover")
    pay_thread = thread(fake, PAY_CH, pay_root["ts"])
    assert pay_thread[-1]["text"] == "Drill report: payments default PASSED (SANDBOX)"
    assert "of 30m: pass" in json.dumps(pay_thread[-1]["blocks"])
    assert len(roots(fake, PAY_CH)) == 1

    assert audit(sv, "orders") == [("drbot", "drill.planned"), ("UBOB", "request.approved"),
                                   ("UCAROL", "request.approved"), ("drbot", "run.started"),
                                   ("drbot", "step.succeeded"), ("drbot", "step.succeeded"),
                                   ("drbot", "run.succeeded")]
    assert tick_at(sv, now, T + M) == NOTHING

    # what people see afterwards
    history = text_of(sv, dispatch(sv, ALICE, "drills history"))
    assert history.count("pass ") == 2 and "orders succeeded RTO 0s/15m (#" in history
    assert f"(#{drill.id})" in history and "payments succeeded" in history
    assert "orders" in text_of(sv, dispatch(sv, ALICE, "drills history orders"))

    (a,) = sv.status.report("orders").assessments
    assert a.active == "us-west-2" and a.verdict is Verdict.READY, [sv.renderer.reason(f) for f in a.reasons]
    drill_finding = a.findings[-1]
    assert drill_finding.code == "drill_ok" and sv.renderer.reason(drill_finding).startswith("last drill passed")
    status = text_of(sv, dispatch(sv, ALICE, "status orders"))
    assert "last drill: passed 1m ago, RTO 0s" in status and "RPO 20s" not in status and "READY" in status

    # a week and a day later, the passed drill is too old
    now[0] = T + 8 * 24 * H
    (a,) = sv.status.report("orders").assessments
    assert a.verdict is Verdict.AT_RISK and [f.code for f in a.reasons] == ["drill_overdue"]
    assert "one is due every 7d" in sv.renderer.reason(a.reasons[0])


# -- 2: not approved in time: missed; a failed drill -------------------------------------

def test_a_drill_not_approved_by_its_time_is_missed_expired_audited_and_puts_readiness_at_risk(estate):
    fake = estate.fake
    now = [T - 24 * H]
    sv = estate.services(now)
    drills.tick(sv)
    orders = occurrence(sv, "orders")
    (root,) = roots(fake, ORDERS_CH)
    assert actions.click(sv, BOB, "cr_approve", str(orders.request_id)) is None  # one of two: not enough

    done = tick_at(sv, now, T)
    assert sorted(done["missed"]) == sorted(o.id for o in rows(sv, DrillOccurrence)) and done["started"] == []
    delivered(sv)
    orders = occurrence(sv, "orders")
    assert orders.state is OccurrenceState.MISSED
    assert orders.note == "not approved before its start (pending)"
    drill = request(sv, orders.request_id)
    assert drill.state is RequestState.EXPIRED
    assert drill.state_reason == "drill missed: not approved before its start (pending)"
    assert rows(sv, Run) == []

    (missed,) = thread(fake, ORDERS_CH, root["ts"])
    assert missed["text"] == "Drill of orders missed: not approved before its start (pending)"
    assert "did *not* run" in json.dumps(missed["blocks"])
    assert buttons(fake.message(ORDERS_CH, root["ts"])) == []  # the announcement shows it closed
    assert "expired" in fake.message(ORDERS_CH, root["ts"])["text"].lower()

    entries = rows(sv, AuditEntry, AuditEntry.action == "drill.missed", AuditEntry.target == "orders")
    assert len(entries) == 1 and entries[0].actor == "drbot"
    assert json.loads(entries[0].detail)["why"] == "not approved before its start (pending)"

    (a,) = sv.status.report("orders").assessments
    assert a.verdict is Verdict.AT_RISK and [f.code for f in a.reasons] == ["drill_missed"]
    assert "was missed" in sv.renderer.reason(a.reasons[0])
    assert "was missed" in text_of(sv, dispatch(sv, ALICE, "status orders"))

    before = post_count(fake)
    assert tick_at(sv, now, T + M) == NOTHING
    delivered(sv)  # nothing left queued either: no late post
    assert post_count(fake) == before


def test_a_drill_whose_step_cannot_pass_is_reported_failed_and_puts_readiness_at_risk(estate):
    fake = estate.fake
    start = datetime(2024, 6, 6, 12, 0, tzinfo=timezone.utc)  # a Thursday: no scheduled drill near
    now = [start - 3 * H]
    sv = estate.services(now)
    reply = dispatch(sv, Actor(id="UALICE", name="alice", channel="C_INC"), "drill schedule payments in 3h broken")
    assert reply.template == "drill_planned", text_of(sv, reply)
    occ = occurrence(sv, "payments")
    assert (occ.schedule, occ.starts_at) == ("adhoc", start)
    drill = request(sv, occ.request_id)
    assert (drill.requester, drill.required_approvals, drill.scenario) == ("UALICE", 1, "broken")
    (root,) = roots(fake, PAY_CH)
    assert root["ts"] == occ.thread_ts

    own = actions.click(sv, ALICE, "cr_approve", str(drill.id))
    assert "someone else has to approve" in text_of(sv, own)
    assert actions.click(sv, BOB, "cr_approve", str(drill.id)) is None
    assert request(sv, drill.id).state is RequestState.APPROVED and rows(sv, Run) == []

    assert tick_at(sv, now, start - H)["announced"] == [occ.id]
    assert tick_at(sv, now, start)["started"] == [occ.id]
    delivered(sv)
    (run,) = runs_of(sv, drill.id)
    assert run.state is RequestState.FAILED and run.passed is False and run.error == "step 1 failed"
    report = thread(fake, PAY_CH, root["ts"])[-1]
    assert report["text"] == "Drill report: payments broken FAILED (SANDBOX)"
    blocks = json.dumps(report["blocks"])
    assert "What broke" in blocks and "verify failed after 0.3s: lag 4.0s, want below 1s" in blocks

    (a,) = sv.status.report("payments").assessments
    # the step shifted traffic before its verify failed: drbot's record did not follow, the live state shows it
    assert a.verdict is Verdict.NOT_READY and [f.code for f in a.reasons] == ["traffic_drift", "drill_failed"]
    assert sv.renderer.reason(a.reasons[0]).startswith("drift: records say us-east-1, SANDBOX (sim) routes traffic "
                                                      "to us-west-2")
    assert sv.renderer.reason(a.reasons[1]).endswith("failed (SANDBOX: simulated estate)")
    assert ":x:" in json.dumps(sv.renderer.blocks(dispatch(sv, ALICE, "drills history payments"))[0])


# -- 3: postpone and skip, each a change that another person approves --------------------

def test_postpone_and_skip_by_command_need_another_approver_then_move_or_cancel_the_drill(estate):
    fake = estate.fake
    now = [T - 24 * H]
    sv = estate.services(now)
    drills.tick(sv)
    occ = occurrence(sv, "orders")
    (root,) = roots(fake, ORDERS_CH)
    drill_id = occ.request_id

    now[0] = T - 20 * H
    reply = dispatch(sv, ALICE, "drill postpone orders to 2024-06-05 10:00 the team is at the offsite")
    assert reply.template == "request_created", text_of(sv, reply)
    delivered(sv)  # its message is posted by the outbox, which then records its ts on the request
    postpone = request(sv, reply.context["req"].id)
    assert (postpone.kind, postpone.state, postpone.requester) == (RequestKind.DRILL_POSTPONE, RequestState.PENDING,
                                                                    "UALICE")
    assert postpone.postpone_to == T + 24 * H and postpone.occurrence_id == occ.id
    assert postpone.reason == "the team is at the offsite"
    assert postpone.channel == ORDERS_CH and postpone.message_ts  # posted for approval
    assert buttons(fake.message(ORDERS_CH, postpone.message_ts))[0] == ("cr_approve", str(postpone.id))

    refused = actions.click(sv, ALICE, "cr_approve", str(postpone.id))
    assert "someone else has to approve" in text_of(sv, refused)
    assert request(sv, postpone.id).state is RequestState.PENDING and occurrence(sv, "orders").starts_at == T

    assert actions.click(sv, BOB, "cr_approve", str(postpone.id)) is None  # approved: applied at once
    done = request(sv, postpone.id)
    assert done.state is RequestState.SUCCEEDED and done.state_reason == "postponed to 2024-06-05T08:00+00:00"
    occ = occurrence(sv, "orders")
    assert (occ.starts_at, occ.planned_for, occ.announced, occ.state) == (T + 24 * H, T, "", OccurrenceState.PLANNED)
    drill = request(sv, drill_id)
    assert drill.not_before == drill.expires_at == T + 24 * H and drill.state is RequestState.PENDING
    (entry,) = rows(sv, AuditEntry, AuditEntry.action == "drill.postponed")
    assert entry.target == "orders" and json.loads(entry.detail)["by_request"] == postpone.id
    delivered(sv)
    assert "postponed from Tue 04 Jun 10:00" in json.dumps(fake.message(ORDERS_CH, root["ts"])["blocks"])

    # its old time passes quietly; the announcements start again, in the same thread
    before = post_count(fake)
    assert tick_at(sv, now, T - H)["announced"] == [occurrence(sv, "payments").id]  # not orders' 1h reminder
    delivered(sv)
    assert thread(fake, ORDERS_CH, root["ts"]) == [] and post_count(fake) == before + 1
    done = tick_at(sv, now, T)  # the old start: nothing starts; 24h before the new one: announced again
    assert done["missed"] == [occurrence(sv, "payments").id]  # payments was never approved
    assert done["announced"] == [occ.id] and done["started"] == []
    assert occurrence(sv, "orders").state is OccurrenceState.PLANNED
    (again,) = thread(fake, ORDERS_CH, root["ts"])
    assert again["text"] == "Drill of orders in 1d"
    assert "postponed from Tue 04 Jun 10:00" in json.dumps(again["blocks"])
    assert len(roots(fake, ORDERS_CH)) == 2  # the announcement and the postponement request, nothing new
    assert tick_at(sv, now, T + 2 * H) == NOTHING
    assert tick_at(sv, now, T + 23 * H)["announced"] == [occ.id]
    assert [m["text"] for m in thread(fake, ORDERS_CH, root["ts"])] == ["Drill of orders in 1d",
                                                                        "Drill of orders in 1h"]

    # skip it
    reply = dispatch(sv, ALICE, "drill skip orders the estate is being migrated")
    skip = reply.context["req"]
    assert (skip.kind, skip.state, skip.reason) == (RequestKind.DRILL_SKIP, RequestState.PENDING,
                                                    "the estate is being migrated")
    assert "someone else has to approve" in text_of(sv, actions.click(sv, ALICE, "cr_approve", str(skip.id)))
    assert occurrence(sv, "orders").state is OccurrenceState.PLANNED
    assert actions.click(sv, CAROL, "cr_approve", str(skip.id)) is None
    assert request(sv, skip.id).state is RequestState.SUCCEEDED
    occ = occurrence(sv, "orders")
    assert (occ.state, occ.note) == (OccurrenceState.SKIPPED, "the estate is being migrated")
    drill = request(sv, drill_id)
    assert drill.state is RequestState.CANCELLED and drill.state_reason == "skipped: the estate is being migrated"
    assert [a for a in audit(sv, "orders") if a[1].startswith("drill.")] == [
        ("drbot", "drill.planned"), ("drbot", "drill.postponed"), ("drbot", "drill.skipped")]
    delivered(sv)
    assert buttons(fake.message(ORDERS_CH, root["ts"])) == []

    before = post_count(fake)
    assert tick_at(sv, now, T + 23 * H + 30 * M) == NOTHING
    assert tick_at(sv, now, T + 24 * H) == NOTHING
    delivered(sv)
    assert post_count(fake) == before and runs_of(sv, drill_id) == []
    reply = dispatch(sv, ALICE, "drill skip orders again")
    assert "no planned drill to skip" in text_of(sv, reply)


def test_postpone_and_skip_through_the_modals(estate):
    fake = estate.fake
    now = [T - 24 * H]
    sv = estate.services(now)
    drills.tick(sv)
    occ = occurrence(sv, "payments")
    (root,) = roots(fake, PAY_CH)
    assert ("drill_postpone", str(occ.id)) in buttons(root)

    # the Postpone button opens a modal that Slack would accept
    form = actions.click(sv, ALICE, "drill_postpone", str(occ.id))
    assert form.modal and form.template == "modal_drill_postpone"
    view = sv.renderer.view(form)
    assert (view["type"], view["callback_id"], view["private_metadata"]) == ("modal", "drill_postpone", str(occ.id))
    assert [b.get("block_id") for b in view["blocks"] if b["type"] == "input"] == ["when", "reason"]
    assert view["blocks"][0]["element"] == {"type": "datetimepicker", "action_id": "when"}
    assert len(view["title"]["text"]) <= 24 and len(view["submit"]["text"]) <= 24  # Slack's limits
    skip_view = sv.renderer.view(actions.click(sv, ALICE, "drill_skip", str(occ.id)))
    assert skip_view["callback_id"] == "drill_skip" and skip_view["private_metadata"] == str(occ.id)

    # what validate() refuses, field by field
    past, later = int((now[0] - H).timestamp()), int((T + 48 * H).timestamp())
    for form_id, fields, field in [
        ("drill_postpone", {"when": str(past), "reason": "later please"}, "when"),
        ("drill_postpone", {"when": str(int(now[0].timestamp())), "reason": "later please"}, "when"),
        ("drill_postpone", {"when": "", "reason": "later please"}, "when"),
        ("drill_postpone", {"when": str(later), "reason": "   "}, "reason"),
        ("drill_skip", {"reason": ""}, "reason"),
    ]:
        with pytest.raises(FormError) as err:
            actions.validate(sv, form_id, fields)
        assert err.value.field == field, (fields, err.value.message)
        with pytest.raises(FormError):
            actions.submit(sv, ALICE, form_id, str(occ.id), fields)
    assert rows(sv, ChangeRequest, col(ChangeRequest.kind).in_([RequestKind.DRILL_POSTPONE,
                                                                 RequestKind.DRILL_SKIP])) == []

    # a valid postponement: a request that someone else approves
    assert actions.submit(sv, ALICE, "drill_postpone", str(occ.id), {"when": str(later), "reason": "a freeze"}) is None
    (postpone,) = rows(sv, ChangeRequest, ChangeRequest.kind == RequestKind.DRILL_POSTPONE)
    assert postpone.requester == "UALICE" and postpone.postpone_to == T + 48 * H and postpone.reason == "a freeze"
    assert "someone else has to approve" in text_of(sv, actions.click(sv, ALICE, "cr_approve", str(postpone.id)))
    assert occurrence(sv, "payments").starts_at == T
    assert actions.click(sv, DAVE, "cr_approve", str(postpone.id)) is None
    occ = occurrence(sv, "payments")
    assert occ.starts_at == T + 48 * H and occ.announced == ""
    assert len(rows(sv, AuditEntry, AuditEntry.action == "drill.postponed")) == 1

    assert tick_at(sv, now, T + 24 * H)["announced"] == [occ.id]  # again, in the same thread
    (again,) = thread(fake, PAY_CH, root["ts"])
    assert again["text"] == "Drill of payments in 1d"

    # a skip through its modal
    assert actions.submit(sv, ALICE, "drill_skip", str(occ.id), {"reason": "  the region is retired  "}) is None
    (skip,) = rows(sv, ChangeRequest, ChangeRequest.kind == RequestKind.DRILL_SKIP)
    assert skip.reason == "the region is retired" and skip.state is RequestState.PENDING
    assert "someone else has to approve" in text_of(sv, actions.click(sv, ALICE, "cr_approve", str(skip.id)))
    assert occurrence(sv, "payments").state is OccurrenceState.PLANNED
    assert actions.click(sv, BOB, "cr_approve", str(skip.id)) is None
    assert occurrence(sv, "payments").state is OccurrenceState.SKIPPED
    assert request(sv, occ.request_id).state is RequestState.CANCELLED
    assert len(rows(sv, AuditEntry, AuditEntry.action == "drill.skipped")) == 1
    assert tick_at(sv, now, T + 48 * H)["started"] == [] and rows(sv, Run) == []


# -- 4: idempotence, restarts, a start missed while drbot was down ----------------------

@pytest.fixture
def estate_db(zone, fake_slack, db_url):
    e = Estate(zone, fake_slack, db_url)
    try:
        yield e
    finally:
        e.close()


def test_ticks_restarts_and_concurrent_replicas_announce_and_start_once(estate_db):
    e, fake = estate_db, estate_db.fake
    now = [T - 24 * H]
    first = e.services(now)
    assert len(drills.tick(first)["announced"]) == 2
    posted = post_count(fake)
    assert drills.tick(first) == NOTHING  # the same time again: nothing
    delivered(first)
    assert post_count(fake) == posted

    e.stop(first)  # drbot restarts between announcements
    now2 = [T - 23 * H]
    second = e.services(now2)
    assert drills.tick(second) == NOTHING
    delivered(second)
    assert post_count(fake) == posted
    orders = occurrence(second, "orders")
    for who in (BOB, CAROL):
        assert actions.click(second, who, "cr_approve", str(orders.request_id)) is None

    assert len(tick_at(second, now2, T - H)["announced"]) == 2
    e.stop(second)
    now3 = [T - H + 10 * M]
    third = e.services(now3)
    assert drills.tick(third) == NOTHING
    delivered(third)
    (root,) = roots(fake, ORDERS_CH)
    assert [m["text"] for m in thread(fake, ORDERS_CH, root["ts"])] == ["Drill of orders in 1h"]
    assert post_count(fake) == posted + 2

    # drbot is down at T; back at T+5m, within the 15m grace: the approved drill starts, once,
    # even with two replicas ticking at the same moment
    e.stop(third)
    now4 = [T + 5 * M]
    a, b = e.services(now4), e.services(now4)
    results: list[dict] = []
    barrier = threading.Barrier(2)

    def tick(sv) -> None:
        barrier.wait(5)
        results.append(drills.tick(sv))

    threads = [threading.Thread(target=tick, args=(sv,)) for sv in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 2, "a tick did not finish"
    assert drills.tick(a) == NOTHING and drills.tick(b) == NOTHING
    delivered(a), delivered(b)

    assert occurrence(a, "orders").state is OccurrenceState.STARTED
    assert occurrence(a, "payments").state is OccurrenceState.MISSED  # never approved
    (run,) = runs_of(a, orders.request_id)
    assert run.state is RequestState.SUCCEEDED and run.passed is True
    assert run.measured_rto_s == 300.0  # timed from its scheduled start, not from the approvals a day before
    texts = [m["text"] for m in thread(fake, ORDERS_CH, root["ts"])]
    assert texts.count("Drill of orders is starting now") == 1
    assert texts.count("Drill report: orders failover PASSED (SANDBOX)") == 1
    assert len(roots(fake, ORDERS_CH)) == 1
    assert [x for x in audit(a, "orders") if x[1] in ("run.started", "drill.missed")] == [("drbot", "run.started")]


def test_an_approved_drill_found_past_its_grace_is_missed_because_drbot_was_not_running(estate):
    fake = estate.fake
    now = [T - 24 * H]
    sv = estate.services(now)
    drills.tick(sv)
    for occ in rows(sv, DrillOccurrence):
        for who in (BOB, CAROL):
            assert actions.click(sv, who, "cr_approve", str(occ.request_id)) is None
    posted = post_count(fake)

    done = tick_at(sv, now, T + 20 * M)  # drbot was down from T-24h to T+20m; grace is 15m
    assert done["started"] == [] and len(done["missed"]) == 2
    delivered(sv)
    why = "drbot was not running at its time"
    for service, channel in (("orders", ORDERS_CH), ("payments", PAY_CH)):
        occ = occurrence(sv, service)
        assert (occ.state, occ.note) == (OccurrenceState.MISSED, why)
        drill = request(sv, occ.request_id)
        assert drill.state is RequestState.EXPIRED and drill.state_reason == f"drill missed: {why}"
        (root,) = roots(fake, channel)
        (missed,) = thread(fake, channel, root["ts"])  # the 1h reminder never went out
        assert missed["text"] == f"Drill of {service} missed: {why}"
    assert rows(sv, Run) == []
    assert post_count(fake) == posted + 2
    assert [x for x in audit(sv, "orders") if x[1] == "drill.missed"] == [("drbot", "drill.missed")]
    (a,) = sv.status.report("orders").assessments
    assert [f.code for f in a.reasons] == ["drill_missed"]
