"""The life of a change request at core level: expiry, deny, cancel, a plan gone stale,
a failed step with rollback or abort, break-glass, user-group approvers and the
one-person-counts-once rule.

Real parts only: the sandbox backend (faults injected into its estate), the real store
(SQLite and PostgreSQL), the real renderer (every message checked as Block Kit with
slack_sdk's models), commands through ``commands.router.dispatch`` and
``commands.actions.click``. Runs execute inline, so each click returns when its run ended.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from slack_sdk.models.blocks import Block
from sqlmodel import select

from bot.actor import Actor
from bot.changes import expire_due
from bot.config import parse_config
from bot.directory import Directory
from bot.messenger import RecordingMessenger
from bot.render import Reply
from bot.store import session_scope
from bot.store.models import (
    Approval, AuditEntry, ChangeRequest, RequestKind, RequestState, Run, RunStep, StepState, TimelineEvent,
)
from bot.wiring import build_services
from commands.router import click
from commands.router import dispatch
from tests.helpers import ALICE, BOB, CAROL, DAVE, ERIN, MALLORY

CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim:
    kind: sandbox
    timeout: 2.0
    profiles:
      orders: {lag: 20, jitter: 0}
      payments: {lag: 20, jitter: 0}
      ledger: {lag: 20, jitter: 0}
  edge:
    kind: sandbox
    timeout: 2.0
services:
  - name: orders
    tier: high
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
          rollback: {action: database.switchover, to: source}
        - name: Shift traffic
          action: traffic.shift
          timeout: 10s
          verify: {traffic_in: target, healthy: target, within: 5s, interval: 100ms}
          rollback: {action: traffic.shift, to: source}
  - name: payments
    tier: high
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
          rollback: {action: database.switchover, to: source}
        - name: Shift traffic at the edge
          action: traffic.shift
          source: edge
          timeout: 10s
          rollback: {action: traffic.shift, to: source}
  - name: ledger
    tier: critical
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
    traffic: {source: sim}
    database: {source: sim}
    approvals:
      required_approvals: 2
      break_glass: {enabled: true, group: [SONCALL]}
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
approvals:
  required_approvals: 1
  approvers: [UBOB, UCAROL, SAPPROVERS]
  expires: 30m
"""

# DAVE is in the break-glass group SONCALL, ERIN an approver only through the group
# SAPPROVERS, MALLORY in no group and on no list.


class Clock:
    """The services' clock: real time plus an offset the test moves forward."""

    def __init__(self):
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset

    def advance(self, **kw) -> None:
        self.offset += timedelta(**kw)


class Monotonic:
    """The directory's TTL clock."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sv(db_url, clock):
    parsed = parse_config(CONFIG, "approval-lifecycle.yaml", {})
    services = build_services(parsed, db_url=db_url, clock=clock, inline_runs=True)
    services.messenger = RecordingMessenger()
    yield services
    services.engine.dispose()


# -- helpers -------------------------------------------------------------------------------

def kit(sv, reply: Reply) -> tuple[list[dict], str]:
    """Render as Block Kit and check it the way Slack would: every block a known type that
    slack_sdk's models accept within Slack's limits, unique block and action IDs."""
    blocks, text = sv.renderer.blocks(reply)
    assert text, reply.template
    assert 0 < len(blocks) <= 50
    for b in blocks:
        parsed = Block.parse(b)
        assert parsed is not None, f"not a Block Kit block: {b}"
        parsed.validate_json()
    block_ids = [b["block_id"] for b in blocks if "block_id" in b]
    assert len(block_ids) == len(set(block_ids))
    assert len(action_ids(blocks)) == len(set(action_ids(blocks)))
    return blocks, text


def texts(node) -> str:
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "text" and isinstance(value, str):
                out.append(value)
            else:
                out.append(texts(value))
    elif isinstance(node, list):
        out += [texts(n) for n in node]
    return "\n".join(t for t in out if t)


def action_ids(blocks: list[dict]) -> list[str]:
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


def shown(sv, reply: Reply | None) -> str:
    """What the clicker reads (Block Kit text); '' when nothing was said."""
    if reply is None:
        return ""
    blocks, text = kit(sv, reply)
    return texts(blocks)


def ask(sv, actor: Actor, text: str) -> int:
    reply = dispatch(sv, actor, text)
    assert reply.template == "request_created", shown(sv, reply)
    kit(sv, reply)
    return reply.context["req"].id


def request(sv, request_id: int) -> ChangeRequest:
    with session_scope(sv.engine) as s:
        return s.get(ChangeRequest, request_id)


def state(sv, request_id: int) -> RequestState:
    return request(sv, request_id).state


def message(sv, request_id: int) -> tuple[list[dict], str]:
    """The request's message as it stands in the channel now: blocks and all their text."""
    req = request(sv, request_id)
    assert req.channel == "C_INC" and req.message_ts
    reply = sv.messenger.messages[req.message_ts]
    assert reply.template == "change_request" and reply.context["req"].id == request_id
    blocks, _ = kit(sv, reply)
    return blocks, texts(blocks)


def progress(sv, request_id: int) -> tuple[list[dict], str]:
    """The run's live progress message (posted once, then updated)."""
    with session_scope(sv.engine) as s:
        run = s.exec(select(Run).where(Run.request_id == request_id)).one()
    assert run.progress_ts
    reply = sv.messenger.messages[run.progress_ts]
    assert reply.template == "run_progress"
    blocks, _ = kit(sv, reply)
    return blocks, texts(blocks)


def audit(sv) -> list[str]:
    with session_scope(sv.engine) as s:
        return [a.action for a in s.exec(select(AuditEntry).order_by(AuditEntry.id))]


def audit_rows(sv) -> list[AuditEntry]:
    with session_scope(sv.engine) as s:
        return list(s.exec(select(AuditEntry).order_by(AuditEntry.id)))


def timeline(sv, request_id: int) -> list[str]:
    with session_scope(sv.engine) as s:
        return [e.kind for e in s.exec(select(TimelineEvent).where(TimelineEvent.request_id == request_id)
                                       .order_by(TimelineEvent.id))]


def runs(sv) -> list[Run]:
    with session_scope(sv.engine) as s:
        return list(s.exec(select(Run).order_by(Run.id)))


def steps(sv, request_id: int) -> list[RunStep]:
    with session_scope(sv.engine) as s:
        run = s.exec(select(Run).where(Run.request_id == request_id)).first()
        if run is None:
            return []
        return list(s.exec(select(RunStep).where(RunStep.run_id == run.id).order_by(RunStep.id)))


def approvals(sv, request_id: int) -> list[Approval]:
    with session_scope(sv.engine) as s:
        return list(s.exec(select(Approval).where(Approval.request_id == request_id).order_by(Approval.id)))


RAN_OK = ["run.started", "step.succeeded", "step.succeeded", "run.succeeded"]


# -- expiry ----------------------------------------------------------------------------------

def test_a_click_after_expiry_says_expired_and_expire_due_closes_the_other_pending_request(sv, clock):
    first = ask(sv, ALICE, "failover orders 5xx at 40% in us-east-1")
    second = ask(sv, ALICE, "failover payments card declines in us-east-1")
    assert "cr_approve" in action_ids(message(sv, second)[0])

    clock.advance(minutes=31)  # the policy says 30m
    said = shown(sv, click(sv, BOB, "cr_approve", str(first)))
    assert f"request #{first} expired at" in said and "ask again if it is still needed" in said
    assert state(sv, first) is RequestState.EXPIRED
    assert request(sv, first).state_reason == "expired before enough approvals"
    assert approvals(sv, first) == [] and runs(sv) == []  # nothing ran, the late click counted for nothing
    blocks, text = message(sv, first)
    assert action_ids(blocks) == [] and "*expired*" in text

    before = len(sv.messenger.log)
    assert expire_due(sv) == [second]
    assert state(sv, second) is RequestState.EXPIRED
    kind, channel, reply = sv.messenger.log[before]
    assert (kind, channel, reply.context["req"].id) == ("update", "C_INC", second)
    blocks, text = message(sv, second)
    assert action_ids(blocks) == [], "an expired request must not offer buttons"
    assert "expired before enough approvals" in text
    assert expire_due(sv) == []  # once only
    said = shown(sv, click(sv, CAROL, "cr_approve", str(second)))
    assert f"request #{second} is expired" in said

    assert runs(sv) == []
    assert audit(sv) == ["request.failover", "request.failover", "request.expired", "request.expired"]
    assert timeline(sv, first) == ["request.failover", "request.expired"]
    assert timeline(sv, second) == ["request.failover", "request.expired"]


# -- deny ------------------------------------------------------------------------------------

def test_a_denied_request_cannot_be_approved_later_and_says_who_denied_it(sv):
    rid = ask(sv, ALICE, "failover orders 5xx at 40% in us-east-1")
    assert "you asked for request" in shown(sv, click(sv, ALICE, "cr_deny", str(rid)))
    assert click(sv, BOB, "cr_deny", str(rid)) is None  # the message itself shows the new state
    assert state(sv, rid) is RequestState.DENIED
    assert request(sv, rid).state_reason == "denied by bob"

    said = shown(sv, click(sv, CAROL, "cr_approve", str(rid)))
    assert said == f":no_entry: request #{rid} is denied (denied by bob): nothing to decide any more"
    assert state(sv, rid) is RequestState.DENIED
    assert [(a.approver, a.approve) for a in approvals(sv, rid)] == [("UBOB", False)]
    assert runs(sv) == []

    blocks, text = message(sv, rid)
    assert action_ids(blocks) == []
    assert "✗ <@UBOB> denied at" in text and "*denied*: denied by bob" in text
    assert audit(sv) == ["request.failover", "request.denied"]
    assert timeline(sv, rid) == ["request.failover", "request.denied"]


# -- cancel ----------------------------------------------------------------------------------

def test_only_the_requester_can_cancel_by_button_or_command(sv):
    by_button = ask(sv, ALICE, "failover orders 5xx at 40% in us-east-1")
    said = shown(sv, click(sv, BOB, "cr_cancel", str(by_button)))
    assert said == f":no_entry: only the requester (<@UALICE>) can cancel request #{by_button}"
    assert state(sv, by_button) is RequestState.PENDING
    assert click(sv, ALICE, "cr_cancel", str(by_button)) is None
    assert state(sv, by_button) is RequestState.CANCELLED
    assert request(sv, by_button).state_reason == "cancelled by alice"
    blocks, text = message(sv, by_button)
    assert action_ids(blocks) == [] and "*cancelled*: cancelled by alice" in text

    by_command = ask(sv, ALICE, "failover payments card declines in us-east-1")
    refused = dispatch(sv, CAROL, f"cancel {by_command}")
    assert "only the requester" in shown(sv, refused)
    assert state(sv, by_command) is RequestState.PENDING
    done = dispatch(sv, ALICE, f"cancel #{by_command}")
    assert done.template == "request_cancelled" and shown(sv, done) == f"Request #{by_command} is cancelled."
    assert state(sv, by_command) is RequestState.CANCELLED
    again = dispatch(sv, ALICE, f"cancel {by_command}")
    assert "is cancelled (cancelled by alice): nothing to decide" in shown(sv, again)
    assert "approve" not in " ".join(action_ids(message(sv, by_command)[0]))

    assert runs(sv) == [] and approvals(sv, by_button) == approvals(sv, by_command) == []
    assert audit(sv) == ["request.failover", "request.cancelled", "request.failover", "request.cancelled"]
    assert timeline(sv, by_button) == timeline(sv, by_command) == ["request.failover", "request.cancelled"]


# -- a plan gone stale between request and approval ------------------------------------------

def test_a_plan_gone_stale_before_the_run_starts_runs_no_step(sv):
    rid = ask(sv, ALICE, "failover orders 5xx at 40% in us-east-1")
    _, text = message(sv, rid)
    assert "✓ us-west-2 is healthy" in text and "not all checks pass" not in text

    estate = sv.backends["sim"].estate
    estate.inject("orders", "region_down", "us-west-2")  # the target fell over while we waited
    assert click(sv, BOB, "cr_approve", str(rid)) is None

    req = request(sv, rid)
    assert req.state is RequestState.FAILED
    assert req.state_reason == "pre-flight failed: the plan went stale"
    assert [c["code"] for c in json.loads(req.preflight)["checks"] if c["ok"] is not True] == ["target_health"]
    assert steps(sv, rid) == [], "no step may start on a stale plan"
    (run,) = runs(sv)
    assert run.state is RequestState.FAILED and run.error == "pre-flight failed: the plan went stale"
    assert run.passed is False and run.measured_rto_s is None
    assert (estate.writer("orders"), estate.active("orders")) == ("us-east-1", "us-east-1")
    assert sv.status.regions()["orders"] == ("us-east-1", "us-west-2")

    blocks, text = message(sv, rid)
    assert action_ids(blocks) == []
    assert "not all checks pass" in text
    assert "✗ us-west-2 is UNHEALTHY (SANDBOX: us-west-2 down (injected fault))" in text
    assert "*FAILED*" in text
    _, ptext = progress(sv, rid)
    assert "pre-flight failed: the plan went stale" in ptext
    assert "▶" not in ptext and "✓ 1." not in ptext

    assert audit(sv) == ["request.failover", "request.approved", "run.started", "run.failed"]
    assert timeline(sv, rid) == ["request.failover", "request.approved", "run.started", "run.failed"]


# -- a failed step: rollback (approved again) or abort ---------------------------------------

def _failing_edge(sv) -> None:
    """Step 2 of payments shifts traffic through the 'edge' sandbox, whose actions fail."""
    edge = sv.backends["edge"].estate
    edge.seed("payments", "us-east-1")
    edge.inject("payments", "action_fails")


def _failed_run(sv) -> int:
    rid = ask(sv, ALICE, "failover payments card declines in us-east-1")
    assert click(sv, BOB, "cr_approve", str(rid)) is None
    assert state(sv, rid) is RequestState.FAILED
    return rid


def test_a_failed_step_shows_the_error_and_rollback_undoes_the_steps_that_ran_newest_first(sv):
    _failing_edge(sv)
    sim = sv.backends["sim"].estate
    rid = _failed_run(sv)

    req = request(sv, rid)
    assert req.state_reason == "step 2 failed"
    rows = [(r.position, r.attempt, r.rollback, r.state) for r in steps(sv, rid)]
    assert rows == [(0, 1, False, StepState.SUCCEEDED), (1, 1, False, StepState.FAILED)]
    assert "SANDBOX: injected action failure for payments" in steps(sv, rid)[1].error
    assert sim.writer("payments") == "us-west-2"  # step 1 did happen

    blocks, text = progress(sv, rid)
    assert "✓ 1. Switch the writer: done in" in text
    assert "✗ 2. Shift traffic at the edge: failed after" in text
    assert "SANDBOX: injected action failure for payments" in text
    assert action_ids(blocks) == ["run_rollback", "run_abort"]

    assert click(sv, ALICE, "run_rollback", str(rid)) is None
    with session_scope(sv.engine) as s:
        rb = s.exec(select(ChangeRequest).where(ChangeRequest.parent_id == rid)).one()
    assert (rb.kind, rb.state, rb.requester, rb.required_approvals) == \
        (RequestKind.ROLLBACK, RequestState.PENDING, "UALICE", 1)
    assert "already follows up" in shown(sv, click(sv, BOB, "run_rollback", str(rid)))
    blocks, text = message(sv, rb.id)
    assert action_ids(blocks) == ["cr_approve", "cr_deny", "cr_cancel"]
    assert "Undo: Shift traffic at the edge" in text and "Undo: Switch the writer" in text, text

    said = shown(sv, click(sv, ALICE, "cr_approve", str(rb.id)))
    assert "someone else has to approve" in said
    assert state(sv, rb.id) is RequestState.PENDING and runs(sv)[-1].request_id == rid
    assert click(sv, CAROL, "cr_approve", str(rb.id)) is None

    assert state(sv, rb.id) is RequestState.ROLLED_BACK
    assert state(sv, rid) is RequestState.ROLLED_BACK
    undo = [(r.position, r.rollback, r.name, r.action, r.state) for r in steps(sv, rb.id)]
    assert undo == [(1, True, "Undo: Shift traffic at the edge", "traffic.shift", StepState.SUCCEEDED),
                    (0, True, "Undo: Switch the writer", "database.switchover", StepState.SUCCEEDED)]
    assert (sim.writer("payments"), sim.active("payments")) == ("us-east-1", "us-east-1")
    assert sv.status.regions()["payments"] == ("us-east-1", "us-west-2")
    assert "*rolled back*" in message(sv, rid)[1]
    assert "*rolled back*" in message(sv, rb.id)[1]
    _, text = progress(sv, rb.id)
    assert "✓ 1. Undo: Shift traffic at the edge" in text and "✓ 2. Undo: Switch the writer" in text

    assert audit(sv) == ["request.failover", "request.approved", "run.started", "step.succeeded",
                         "step.failed", "run.failed",
                         "request.rollback", "request.approved", "run.started", "step.succeeded",
                         "step.succeeded", "request.rolled_back", "run.rolled_back"]
    assert timeline(sv, rid) == ["request.failover", "request.approved", "run.started", "step.succeeded",
                                 "step.failed", "run.failed", "request.rolled_back"]
    assert timeline(sv, rb.id) == ["request.rollback", "request.approved", "run.started", "step.succeeded",
                                   "step.succeeded", "run.rolled_back"]


def test_abort_closes_a_failed_run_and_changes_nothing(sv):
    _failing_edge(sv)
    rid = _failed_run(sv)
    assert "you are not an approver for payments" in shown(sv, click(sv, MALLORY, "run_abort", str(rid)))
    assert state(sv, rid) is RequestState.FAILED
    assert click(sv, CAROL, "run_abort", str(rid)) is None
    req = request(sv, rid)
    assert req.state is RequestState.ABORTED and req.state_reason == "aborted by carol"
    (run,) = runs(sv)
    assert run.state is RequestState.ABORTED
    assert len(steps(sv, rid)) == 2  # nothing more ran
    assert "is aborted, not failed" in shown(sv, click(sv, ALICE, "run_rollback", str(rid)))
    blocks, text = message(sv, rid)
    assert action_ids(blocks) == [] and "*aborted*: aborted by carol" in text

    assert audit(sv) == ["request.failover", "request.approved", "run.started", "step.succeeded",
                         "step.failed", "run.failed", "request.aborted"]
    assert timeline(sv, rid) == ["request.failover", "request.approved", "run.started", "step.succeeded",
                                 "step.failed", "run.failed", "request.aborted"]


# -- break-glass -----------------------------------------------------------------------------

def test_break_glass_is_off_by_default_and_for_its_group_executes_with_zero_approvals_loudly(sv):
    groups = {"SONCALL": ["UDAVE"], "SAPPROVERS": []}
    sv.directory = Directory(lambda g: groups[g], ttl=60)
    why = "us-east-1 is down and no approver answers the page"

    off = dispatch(sv, DAVE, f"failover orders region down --break-glass {why}")
    assert shown(sv, off) == ":no_entry: break-glass is not enabled for orders; the request needs approval"
    outsider = dispatch(sv, MALLORY, f"failover ledger region down --break-glass {why}")
    assert shown(sv, outsider) == ":no_entry: you are not in the break-glass group of ledger"
    short = dispatch(sv, DAVE, "failover ledger region down --break-glass it is down")
    assert "at least five words" in shown(sv, short)
    empty = dispatch(sv, DAVE, "failover ledger region down --break-glass")
    assert empty.template == "usage" and "written justification" in shown(sv, empty)
    with session_scope(sv.engine) as s:
        assert s.exec(select(ChangeRequest)).all() == []
    assert sv.messenger.log == [] and audit(sv) == []

    before = len(sv.messenger.log)
    rid = ask(sv, DAVE, f"failover ledger region down --break-glass {why}")
    req = request(sv, rid)
    assert req.state is RequestState.SUCCEEDED
    assert (req.break_glass, req.required_approvals, req.justification) == (True, 0, why)
    assert approvals(sv, rid) == []
    assert sv.status.regions()["ledger"] == ("us-west-2", "us-east-1")

    loud = [r for kind, _, r in sv.messenger.log[before:] if kind == "post" and r.template == "break_glass"]
    assert len(loud) == 1
    blocks, text = kit(sv, loud[0])
    body = texts(blocks)
    assert "BREAK-GLASS" in text and "without approval" in text
    assert "<!here>" in body and "*with zero approvals*" in body and why in body
    _, mtext = message(sv, rid)
    assert ":rotating_light: *BREAK-GLASS*" in mtext and "*succeeded*" in mtext

    assert audit(sv) == ["request.failover", "break_glass"] + RAN_OK
    entry = next(a for a in audit_rows(sv) if a.action == "break_glass")
    assert (entry.actor, entry.target, json.loads(entry.detail)) == ("UDAVE", "ledger", {"zero_approvals": True})
    assert timeline(sv, rid) == ["request.failover", "break_glass"] + RAN_OK


# -- user-group approvers --------------------------------------------------------------------

def test_usergroup_approvers_are_cached_within_the_ttl_and_a_directory_error_fails_closed(sv):
    calls: list[str] = []
    failing = {"on": False}

    def fetch(group: str):
        calls.append(group)
        if failing["on"]:
            raise ConnectionError("usergroups.users.list timed out")
        return {"SAPPROVERS": ["UERIN"], "SONCALL": []}[group]

    ttl_clock = Monotonic()
    sv.directory = Directory(fetch, ttl=60, clock=ttl_clock)
    ok = ask(sv, ALICE, "failover orders 5xx at 40% in us-east-1")
    held = ask(sv, ALICE, "failover ledger 5xx at 40% in us-east-1")

    assert click(sv, ERIN, "cr_approve", str(ok)) is None  # erin approves through SAPPROVERS
    assert calls == ["SAPPROVERS"]
    assert state(sv, ok) is RequestState.SUCCEEDED
    assert [a.approver for a in approvals(sv, ok)] == ["UERIN"]

    said = shown(sv, click(sv, MALLORY, "cr_approve", str(held)))
    assert "you are not an approver for ledger" in said and "<!subteam^SAPPROVERS>" in said
    assert calls == ["SAPPROVERS"], "a second look within the TTL is served from the cache"
    assert click(sv, BOB, "cr_approve", str(held)) is None  # listed by ID: no group lookup needed
    assert calls == ["SAPPROVERS"]

    ttl_clock.now += 61
    shown(sv, click(sv, MALLORY, "cr_approve", str(held)))
    assert calls == ["SAPPROVERS", "SAPPROVERS"], "past the TTL the group is read again"

    ttl_clock.now += 61
    failing["on"] = True
    said = shown(sv, click(sv, ERIN, "cr_approve", str(held)))
    assert said == (":no_entry: could not check user-group membership (could not read the members of user "
                    "group SAPPROVERS: usergroups.users.list timed out); nothing was changed, try again")
    assert state(sv, held) is RequestState.PENDING, "an unreadable group must not count as a member"
    assert [a.approver for a in approvals(sv, held)] == ["UBOB"]
    assert len(runs(sv)) == 1

    refused = [a for a in audit_rows(sv) if a.action == "approval.refused"]
    assert [a.actor for a in refused] == ["UMALLORY", "UMALLORY"]
    assert audit(sv) == ["request.failover", "request.failover", "request.approved"] + RAN_OK + \
        ["approval.refused", "request.approved", "approval.refused"]
    assert timeline(sv, ok) == ["request.failover", "request.approved"] + RAN_OK
    assert timeline(sv, held) == ["request.failover", "approval.refused", "request.approved", "approval.refused"]


# -- one person counts once ------------------------------------------------------------------

def test_one_person_counts_once_towards_the_required_approvals(sv):
    rid = ask(sv, ALICE, "failover ledger 5xx at 40% in us-east-1")
    assert request(sv, rid).required_approvals == 2
    assert "someone else has to approve" in shown(sv, click(sv, ALICE, "cr_approve", str(rid)))

    assert click(sv, BOB, "cr_approve", str(rid)) is None
    assert state(sv, rid) is RequestState.PENDING
    said = shown(sv, click(sv, BOB, "cr_approve", str(rid)))
    assert said == f":no_entry: you have already approved request #{rid}; one person counts once"
    assert state(sv, rid) is RequestState.PENDING and runs(sv) == []
    blocks, text = message(sv, rid)
    assert "cr_approve" in action_ids(blocks) and text.count("✓ <@UBOB> approved") == 1
    assert "Needs 2 approvals" in text

    assert click(sv, CAROL, "cr_approve", str(rid)) is None
    assert state(sv, rid) is RequestState.SUCCEEDED
    assert [a.approver for a in approvals(sv, rid)] == ["UBOB", "UCAROL"]
    blocks, text = message(sv, rid)
    assert action_ids(blocks) == [] and "*succeeded*" in text

    assert audit(sv) == ["request.failover", "request.approved", "request.approved"] + RAN_OK
    counts = [json.loads(a.detail) for a in audit_rows(sv) if a.action == "request.approved"]
    assert counts == [{"count": 1, "required": 2}, {"count": 2, "required": 2}]
    assert timeline(sv, rid) == ["request.failover", "request.approved", "request.approved"] + RAN_OK
