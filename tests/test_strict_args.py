"""Strict arguments (issue 9, "Typos become real change requests"), over real HTTP into the
app (signed slash commands, replies at the fake Slack's response_url):

1. every typo (an unknown scenario, region, severity, service, option, a dangling ``to``)
   is answered with a usage error that names the bad word and the allowed values, and
   nothing is stored or posted: no request, incident, drill, outbox item or Slack post;
2. a second open change of a service is refused naming the first (request number, state),
   also when two ``/dr failover`` commands race past the early check at the same moment:
   the database's partial unique index lets exactly one in, on SQLite and PostgreSQL; the
   policy's ``allow_parallel`` (global, or per service) lets both in; a follow-up (a
   rollback) continues a change and is not held back by it;
3. a reason longer than a Block Kit section allows is posted with a visible "…" and kept
   whole in the request and its audit entry: the request is never left without its message.
"""
from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic import command
from slack_sdk.models.blocks import Block
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from bot import followups
from bot.config import parse_config
from bot.store import make_engine, session_scope
from bot.store.drill_tables import DrillOccurrence
from bot.store.incident_tables import Incident, OutboxItem
from bot.store.models import AuditEntry, ChangeRequest, RequestKind, RequestState
from bot.store.schema import BASELINE, _config, upgrade
from bot.wiring import build_services
from commands.router import click, dispatch
from tests.app_server import SIGNING_SECRET, running_app
from tests.helpers import ALICE, BOB, CAROL, rows, wait_until
from tests.slack_client import SlackSender

CHANNEL = "C0INC1"

CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim:
    kind: sandbox
    timeout: 2.0
    profiles:
      orders: {lag: 20, jitter: 0}
      payments: {lag: 20, jitter: 0}
  edge:
    kind: sandbox
    timeout: 2.0
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
        - {name: Switch the writer, action: database.switchover}
        - {name: Shift traffic, action: traffic.shift}
      drill:
        default:
          - {name: Standby healthy, action: check, verify: {healthy: target, within: 1s}}
        region-loss:
          - {name: Standby healthy, action: check, verify: {healthy: target, within: 1s}}
  - name: payments
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
          rollback: {action: database.switchover, to: source}
        - name: Shift traffic at the edge
          action: traffic.shift
          source: edge
          rollback: {action: traffic.shift, to: source}
approvals:
  required_approvals: 1
  approvers: [UBOB, UCAROL]
  expires: 30m
"""
"""orders: a two-step failover and two drill scenarios; payments: a failover whose second
step goes through the 'edge' sandbox (made to fail for the rollback case). UBOB and UCAROL
approve (and, by default, hold the incident and drill-calendar roles)."""


def build(db_url: str, config: str = CONFIG, **kwargs):
    return build_services(parse_config(config, "strict-args.yaml", {}), db_url=db_url, **kwargs)


@pytest.fixture
def app(fake_slack, tmp_path):
    services = build(f"sqlite:///{tmp_path}/d.db")
    try:
        with running_app(services, fake_slack) as running:
            yield running
    finally:
        services.runner.executor.shutdown(wait=True)
        services.engine.dispose()


def slash(app, fake, text: str, name: str, user: str = "UBOB", sender: SlackSender | None = None) -> dict:
    """``/dr TEXT`` as Slack sends it; returns the reply posted to its response_url."""
    r = (sender or app.sender).slash_command(text, user_id=user, user_name=user[1:].lower(), channel_id=CHANNEL,
                                             response_url=fake.response_url(name))
    assert r.status_code == 200, r.text
    [reply] = wait_until(f"the answer to /dr {text}", lambda: [
        c for c in fake.calls("response_url") if c.params["_path"] == f"/response/{name}"])
    return reply.params


def stored(services) -> dict[str, int]:
    return {"requests": len(rows(services, ChangeRequest)), "incidents": len(rows(services, Incident)),
            "drills": len(rows(services, DrillOccurrence)), "outbox": len(rows(services, OutboxItem))}


NOTHING = {"requests": 0, "incidents": 0, "drills": 0, "outbox": 0}


# -- 1. typos ------------------------------------------------------------------------------

TYPOS = [
    # /dr TEXT, what the answer must say: the bad word (and a guess), the allowed values
    ("drill orders nosuch", ["'nosuch' is not a drill scenario of orders", "Scenarios: default, region-loss",
                             "drill orders default quarterly practice"]),
    ("drill orders defualt quarterly practice", ["'defualt' is not a drill scenario of orders",
                                                 "did you mean 'default'?", "Scenarios: default, region-loss"]),
    ("drill orders to us-west-2", ["leave out `to`"]),
    ("drill schedule orders in 2h nosuch", ["'nosuch' is not a drill scenario of orders",
                                            "Scenarios: default, region-loss"]),
    ("drill schedul orders in 2h", ["'schedul' is not a service or a calendar change", "did you mean 'schedule'?",
                                    "orders, payments, schedule, postpone, skip"]),
    ("failover orders to", ["`to` needs a region after it", "us-east-1, us-west-2"]),
    ("failover orders to --break-glass the region is on fire right now", ["`to` needs a region after it",
                                                                          "us-east-1, us-west-2"]),
    ("failover orders to us-west-3 db down", ["'us-west-3' is not a region", "did you mean 'us-west-2'?",
                                              "Regions: us-east-1, us-west-2"]),
    ("failover orders us-west-2", ["'us-west-2' is a region, not a reason", "`to us-west-2`"]),
    ("failover ordrs db down", ["no service named 'ordrs'", "did you mean 'orders'?", "orders, payments"]),
    ("failover orders db down --brek-glass it is on fire now", ["'--brek-glass' is not an option",
                                                                "did you mean '--break-glass'?"]),
    ("failback orders to us-west-2 back home", ["home region of orders, us-east-1", "not to us-west-2"]),
    ("plan orders failovr", ["'failovr' is not a kind of change", "did you mean 'failover'?",
                             "failover, failback, drill"]),
    ("plan orders drill nosuch", ["'nosuch' is not a drill scenario of orders", "default, region-loss"]),
    ("incident open x sev9", ["'sev9' is not a severity", "Severities: sev1, sev2, sev3, sev4"]),
    ("incident open Checkout down SEV-1 orders", ["'SEV-1' is not a severity", "did you mean 'sev1'?"]),
    ("incident open Checkout down sev1 ordrs", ["'ordrs' is not a service", "did you mean 'orders'?",
                                                "Services: orders, payments"]),
    ("incident open Checkout down sev1 sev2", ["give one severity", "sev1, sev2"]),
]


@pytest.mark.parametrize("typed, says", TYPOS, ids=[t for t, _ in TYPOS])
def test_a_typo_is_a_usage_error_naming_the_word_and_the_choices_and_nothing_is_stored_or_posted(
        app, fake_slack, typed, says):
    reply = slash(app, fake_slack, typed, "typo", user="UBOB")  # an approver: would be allowed all of it
    assert reply["response_type"] == "ephemeral"
    shown = reply["text"] + "\n" + json.dumps(reply.get("blocks"), ensure_ascii=False)
    for part in says:
        assert part in shown, f"/dr {typed} answered {reply['text']!r}, without {part!r}"
    assert "Usage:" in reply["text"]
    app.services.outbox.drain(timeout=5)
    assert stored(app.services) == NOTHING
    assert fake_slack.calls("chat.postMessage") == [] and fake_slack.calls("conversations.create") == []


def test_the_same_commands_without_the_typo_are_accepted(app, fake_slack):
    """The rules refuse the typo, not the command: the corrected forms go through."""
    said = slash(app, fake_slack, "drill orders region-loss quarterly practice", "d")
    assert "posted for approval" in said["text"], said["text"]
    [drill] = rows(app.services, ChangeRequest)
    assert (drill.kind, drill.scenario, drill.reason) == (RequestKind.DRILL, "region-loss", "quarterly practice")
    said = slash(app, fake_slack, "incident open Checkout down sev1 orders payments", "i")
    [inc] = wait_until("the incident", lambda: rows(app.services, Incident))
    assert (inc.title, inc.severity) == ("Checkout down", "sev1"), said["text"]
    said = slash(app, fake_slack, "failover payments to us-west-2 card declines in us-east-1", "f")
    assert "posted for approval" in said["text"], said["text"]
    failover = rows(app.services, ChangeRequest, ChangeRequest.service == "payments")[0]
    assert (failover.to_region, failover.reason) == ("us-west-2", "card declines in us-east-1")


# -- 2. one open change per service ----------------------------------------------------------

class HeldReadings:
    """The services' collector, holding the first ``n`` pre-flight reads until all ``n``
    arrived: both commands have passed the early check before either inserts."""

    def __init__(self, collector, n: int = 2):
        self.collector = collector
        self.barrier = threading.Barrier(n, timeout=15)
        self.held = n
        self.lock = threading.Lock()

    def read(self, probes):
        with self.lock:
            wait, self.held = self.held > 0, self.held - 1
        if wait:
            self.barrier.wait()
        return self.collector.read(probes)

    def __getattr__(self, name):
        return getattr(self.collector, name)


def test_two_failovers_at_once_make_one_request_and_the_other_is_told_which(db_url, fake_slack):
    services = build(db_url)
    services.collector = HeldReadings(services.collector)
    texts = ["failover orders 5xx at 40% in us-east-1", "failover orders replica lag is fine, east is down"]
    try:
        with running_app(services, fake_slack) as app:
            senders = [SlackSender(app.url, SIGNING_SECRET) for _ in texts]
            with ThreadPoolExecutor(len(texts)) as pool:
                replies = list(pool.map(lambda i: slash(app, fake_slack, texts[i], f"r{i}", user="UALICE",
                                                        sender=senders[i]), range(len(texts))))
            for s in senders:
                s.close()
            assert services.outbox.drain(timeout=15)
            [req] = rows(services, ChangeRequest)
            wait_until("the request's message", lambda: rows(services, ChangeRequest)[0].message_ts)
    finally:
        services.runner.executor.shutdown(wait=True)
        services.engine.dispose()
    said = sorted((r["text"] for r in replies), key=lambda t: "Not done" in t)
    assert f"Request #{req.id} is posted for approval" in said[0], said
    assert said[1].startswith("Not done: orders already has an open change"), said
    assert f"failover request #{req.id}, pending, asked by <@UALICE> in <#{CHANNEL}>" in said[1], said
    assert req.state is RequestState.PENDING and req.reason in {t.removeprefix("failover orders ") for t in texts}
    posts = fake_slack.calls("chat.postMessage")
    assert len(posts) == 1 and f"#{req.id}" in posts[0].params["text"], [p.params["text"] for p in posts]


def test_the_database_refuses_a_second_open_change_of_a_service(db_url):
    """The guarantee is the partial unique index, not the early check: written directly, a
    second open failover of a service cannot be stored; a closed one, a parallel one, a
    rollback and a scheduled drill waiting for its time can."""
    services = build(db_url)
    try:
        def add(**fields):
            base = dict(kind=RequestKind.FAILOVER, service="orders", requester="UALICE",
                        expires_at=services.clock())
            with session_scope(services.engine) as s:
                s.add(ChangeRequest(**(base | fields)))

        add(state=RequestState.APPROVED)
        for state in (RequestState.PENDING, RequestState.RUNNING, RequestState.INTERRUPTED):
            with pytest.raises(IntegrityError):
                add(state=state, kind=RequestKind.DRILL)
        add(state=RequestState.SUCCEEDED)
        add(state=RequestState.PENDING, parallel=True)
        add(state=RequestState.PENDING, kind=RequestKind.ROLLBACK)
        add(state=RequestState.APPROVED, kind=RequestKind.DRILL, not_before=services.clock())
        add(state=RequestState.PENDING, service="payments")
        assert len(rows(services, ChangeRequest)) == 6
    finally:
        services.engine.dispose()


def test_allow_parallel_lets_a_second_request_in_globally_or_for_one_service(tmp_path):
    per_service = CONFIG.replace("  - name: payments\n", "  - name: payments\n    approvals: {allow_parallel: true}\n")
    services = build(f"sqlite:///{tmp_path}/a.db", per_service, inline_runs=True)
    try:
        for _ in range(2):
            assert dispatch(services, ALICE, "failover payments card declines").template == "request_created"
        assert dispatch(services, ALICE, "failover orders 5xx at 40%").template == "request_created"
        refused = dispatch(services, CAROL, "drill orders region-loss")
        assert (refused.template, refused.context["code"]) == ("refused", "change_open")
        assert refused.context["p"]["id"] == rows(services, ChangeRequest, ChangeRequest.service == "orders")[0].id
        assert [r.parallel for r in rows(services, ChangeRequest)] == [True, True, False]
    finally:
        services.engine.dispose()
    everywhere = CONFIG.replace("  expires: 30m\n", "  expires: 30m\n  allow_parallel: true\n")
    services = build(f"sqlite:///{tmp_path}/b.db", everywhere, inline_runs=True)
    try:
        for text in ("failover orders 5xx at 40%", "drill orders region-loss", "failover orders again"):
            assert dispatch(services, ALICE, text).template == "request_created", text
        assert len(rows(services, ChangeRequest, ChangeRequest.service == "orders")) == 3
    finally:
        services.engine.dispose()


def test_a_closed_request_frees_the_service_and_a_rollback_continues_a_change(tmp_path):
    services = build(f"sqlite:///{tmp_path}/c.db", inline_runs=True)
    try:
        first = dispatch(services, ALICE, "failover orders 5xx at 40%").context["req"].id
        assert dispatch(services, ALICE, f"cancel {first}").template == "request_cancelled"
        assert dispatch(services, ALICE, "failover orders 5xx at 40%").template == "request_created"

        edge = services.backends["edge"].estate  # payments' second step fails: a failed run
        edge.seed("payments", "us-east-1")
        edge.inject("payments", "action_fails")
        failed = dispatch(services, ALICE, "failover payments card declines").context["req"].id
        click(services, BOB, "cr_approve", str(failed))  # runs inline, fails at the edge
        assert rows(services, ChangeRequest, ChangeRequest.id == failed)[0].state is RequestState.FAILED
        rollback = followups.request_rollback(services, ALICE, failed)  # not "a second change"
        assert rollback.kind is RequestKind.ROLLBACK and rollback.parent_id == failed
        refused = dispatch(services, CAROL, "failover payments again")  # but a new change waits for it
        assert (refused.template, refused.context["code"]) == ("refused", "change_open")
        assert (refused.context["p"]["id"], refused.context["p"]["kind"]) == (rollback.id, "rollback")
    finally:
        services.engine.dispose()


def test_requests_already_open_side_by_side_survive_the_upgrade_marked_parallel(db_url):
    """A database of the first release may hold two pending failovers of one service: the
    revision that adds the index marks the younger one parallel instead of failing."""
    engine = make_engine(db_url)
    with engine.begin() as conn:
        command.upgrade(_config(conn), BASELINE)
        conn.execute(text("DROP TABLE alembic_version"))
        for reason in ("first", "second"):
            conn.execute(text(
                "INSERT INTO change_request (kind, service, from_region, to_region, scenario, reason, requester,"
                " requester_name, state, required_approvals, break_glass, justification, created_at, expires_at,"
                " state_reason, preflight, channel, message_ts, origin) VALUES ('FAILOVER', 'orders', 'us-east-1',"
                " 'us-west-2', '', :reason, 'UALICE', 'alice', 'PENDING', 1, false, '', :t, :t, '', '', '', '', '')"),
                {"reason": reason, "t": "2026-11-01 09:00:00+00:00"})
    upgrade(engine)
    with Session(engine) as s:
        assert list(s.exec(select(ChangeRequest.reason, ChangeRequest.parallel).order_by(ChangeRequest.id))) == [
            ("first", False), ("second", True)]
    engine.dispose()


# -- 3. Slack's limits ------------------------------------------------------------------------

def test_a_3500_character_reason_is_posted_clipped_with_an_ellipsis_and_kept_whole_in_the_audit_log(
        app, fake_slack):
    services = app.services
    reason = ("the primary region answers 5xx for checkout & payments; " * 80)[:3500].strip()
    said = slash(app, fake_slack, f"failover orders {reason}", "long", user="UALICE")
    assert "posted for approval" in said["text"], said["text"]
    req = wait_until("the request's message", lambda: (r := rows(services, ChangeRequest)[0]).message_ts and r)
    assert req.reason == reason
    message = fake_slack.message(CHANNEL, req.message_ts)
    blocks = message["blocks"]
    assert 0 < len(blocks) <= 50
    for b in blocks:
        Block.parse(b).validate_json()  # slack_sdk's own checks of Slack's limits
    why = next(b["text"]["text"] for b in blocks if b["type"] == "section" and "*Why:*" in b["text"]["text"])
    assert len(why) == 3000 and why.endswith("…")
    shown = why.split("*Why:* ", 1)[1][:-1]
    assert len(shown) > 2500 and reason.replace("&", "&amp;").startswith(shown)  # cut, not rewritten
    header = next(b for b in blocks if b["type"] == "header")["text"]["text"]
    assert len(header) <= 150 and f"#{req.id}" in header
    [entry] = rows(services, AuditEntry, AuditEntry.action == "request.failover")
    assert json.loads(entry.detail)["reason"] == reason
