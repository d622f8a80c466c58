"""Region evacuation, executed (issue 16), over real HTTP signed like Slack signs, on SQLite
and PostgreSQL: 20 sandbox services in 4 dependency levels. `/dr evacuate REGION REASON`
posts one request; the requester's own approval is refused; a second approver starts it;
waves run in order, services inside a wave in parallel (bounded by ``parallelism``), as
the step start times in the store show; a service failing in wave 2 stops the later waves
(``stop``, rollback offered) or only what depends on it (``continue``); the board's final
state matches the store."""
from __future__ import annotations

import re
import threading
from datetime import datetime

import pytest
from sqlmodel import col

from bot import evacuation_run
from bot.evacuation_gate import Gate
from bot.actor import Actor
from bot.changes import expire_due
from bot.config import parse_config
from bot.store import session_scope
from bot.store.evacuation_tables import Evacuation, EvacuationMember
from bot.store.incident_tables import Incident
from bot.store.models import (
    AuditEntry, ChangeRequest, RequestKind, RequestState, Run, RunStep, ServiceState, TimelineEvent, aware,
)
from bot.wiring import build_services
from bot.store.transitions import move_request
from commands.router import click, dispatch
from tests.app_server import running_app
from tests.fakes.statuspage_api import FakeStatuspage
from tests.helpers import ALICE, BOB, CAROL, MALLORY, answered, delivered, rows, wait_until
from tests.paging_support import Clock

CHANNEL = "C_INC"
SOURCES = """regions: [us-east-1, us-west-2]
sources:
  sim: {kind: sandbox, timeout: 10.0}
approvals: {required_approvals: 1, approvers: [UBOB, UCAROL], expires: 30m}
"""


def name(level: int, i: int) -> str:
    return f"s{level}{chr(ord('a') + i)}"


def config_text(levels: int = 4, per_level: int = 5, wait: str = "300ms", parallelism: int = 4,
                on_failure: str = "stop", extra: str = "") -> str:
    """``levels`` dependency levels of ``per_level`` sandbox services each: service i of a
    level depends on service i of the level before. Each runbook: shift traffic, then wait."""
    out = [SOURCES, "services:\n"]
    for level in range(1, levels + 1):
        for i in range(per_level):
            deps = f"[{name(level - 1, i)}]" if level > 1 else "[]"
            out.append(f"""  - name: {name(level, i)}
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {{source: sim}}
    health: {{us-east-1: sim, us-west-2: sim}}
    traffic: {{source: sim}}
    depends_on: {deps}
    runbooks:
      failover:
        - {{name: shift traffic, action: traffic.shift, rollback: {{action: traffic.shift, to: source}}}}
        - {{name: settle, action: wait, wait: {{duration: {wait}}}}}
""")
    out.append(f"evacuation: {{parallelism: {parallelism}, on_failure: {on_failure}}}\n{extra}")
    return "".join(out)


def make_services(text: str, db_url: str):
    return build_services(parse_config(text, "evacuate.yaml", {}), db_url=db_url)


def request(sv, rid: int) -> ChangeRequest:
    with session_scope(sv.engine) as s:
        return s.get(ChangeRequest, rid)


def evacuation(sv, rid: int) -> Evacuation:
    with session_scope(sv.engine) as s:
        return s.get(Evacuation, rid)


def members(sv, rid: int) -> dict[str, EvacuationMember]:
    return {m.service: m for m in rows(sv, EvacuationMember, EvacuationMember.evacuation_id == rid)}


def runs(sv, rid: int) -> dict[str, Run]:
    """The run of each service moved by evacuation ``rid`` (its child request's run)."""
    children = {c.id: c.service for c in rows(sv, ChangeRequest, ChangeRequest.parent_id == rid)}
    return {children[r.request_id]: r for r in rows(sv, Run, col(Run.request_id).in_(list(children)))}


def action_ids(blocks: list[dict]) -> list[tuple[str, str]]:
    return [(e["action_id"], e["value"]) for b in blocks if b["type"] == "actions" for e in b["elements"]]


def board_lines(fake, sv, rid: int) -> dict[str, str]:
    """The board as Slack shows it now: service -> its line."""
    ev = evacuation(sv, rid)
    assert ev.board_ts, "the board was never posted"
    blocks = fake.message(CHANNEL, ev.board_ts)["blocks"]
    text = "\n".join(b["text"]["text"] for b in blocks if b["type"] == "section")
    out = {}
    for line in text.splitlines():
        m = re.match(r"^\S+ (s\d[a-z]) · (.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


STATE_WORDS = {"succeeded": "moved", "failed": "FAILED", "skipped": "not started", "running": "running",
               "pending": "waiting", "interrupted": "INTERRUPTED"}


def assert_board_matches_store(fake, sv, rid: int) -> None:
    lines = board_lines(fake, sv, rid)
    found = members(sv, rid)
    assert set(lines) == set(found), (lines, found)
    for service, m in found.items():
        assert lines[service].startswith(STATE_WORDS[m.state]), (service, m.state, lines[service])
    head = fake.message(CHANNEL, evacuation(sv, rid).board_ts)["blocks"][0]
    state = request(sv, rid).state
    assert {"succeeded": "· succeeded", "failed": "· FAILED"}[state.value] in head["text"]["text"], head


def ask_and_approve(app, fake, sv, text: str = "evacuate us-east-1 us-east-1 is down since 09:40") -> int:
    r = app.sender.slash_command(text, user_id="UALICE", user_name="alice", channel_id=CHANNEL,
                                 response_url=fake.response_url("ask"))
    assert r.status_code == 200, r.text
    assert "is posted for approval" in answered(fake, "ask").params["text"]
    req = wait_until("the evacuation posted", lambda: next(
        (q for q in rows(sv, ChangeRequest, ChangeRequest.kind == RequestKind.EVACUATE) if q.message_ts), None))
    posted = fake.message(CHANNEL, req.message_ts)
    assert action_ids(posted["blocks"]) == [("cr_approve", str(req.id)), ("cr_deny", str(req.id)),
                                            ("cr_cancel", str(req.id))]
    # the requester cannot approve her own evacuation
    app.sender.block_action("cr_approve", str(req.id), user_id="UALICE", user_name="alice", channel_id=CHANNEL,
                            message=posted, response_url=fake.response_url("self"))
    assert "someone else has to approve" in answered(fake, "self").params["text"]
    assert request(sv, req.id).state is RequestState.PENDING
    app.sender.block_action("cr_approve", str(req.id), user_id="UBOB", user_name="bob", channel_id=CHANNEL,
                            message=posted, response_url=fake.response_url("bob"))
    return req.id


def test_an_evacuation_of_20_services_runs_wave_by_wave_in_parallel_under_one_approval(db_url, fake_slack):
    sv = make_services(config_text(per_level=5, wait="300ms", parallelism=3), db_url)
    try:
        with running_app(sv, fake_slack) as app:
            rid = ask_and_approve(app, fake_slack, sv)
            refused = {m.service: m.note for m in members(sv, rid).values() if m.state == "refused"}
            assert not refused, refused  # a pre-flight that could not read in time refuses its service
            wait_until("the evacuation ended", lambda: request(sv, rid).state not in (
                RequestState.PENDING, RequestState.APPROVED, RequestState.RUNNING), timeout=60)
            req = request(sv, rid)
            assert req.state is RequestState.SUCCEEDED, req.state_reason
            assert req.state_reason == "all 20 services moved"
            wait_until("the board shows the end", lambda: "· succeeded ·" in board_head(fake_slack, sv, rid), timeout=15)
            assert_board_matches_store(fake_slack, sv, rid)

        moved = runs(sv, rid)
        assert len(moved) == 20 and all(r.state is RequestState.SUCCEEDED for r in moved.values())
        first_step = {svc: step_start(sv, r.id) for svc, r in moved.items()}
        ended = {svc: aware(r.ended_at) for svc, r in moved.items()}
        for level in range(1, 4):  # every service of a wave starts after the whole wave before ended
            before = max(ended[name(level, i)] for i in range(5))
            after = min(first_step[name(level + 1, i)] for i in range(5))
            assert after >= before, (level, before, after)
        for level in range(1, 5):  # inside a wave: 3 at once (parallelism), never more
            spans = [(first_step[name(level, i)], ended[name(level, i)]) for i in range(5)]
            assert max_overlap(spans) == 3, (level, spans)
        # each service ran as a child request approved by the evacuation's approval, audited as such
        children = rows(sv, ChangeRequest, ChangeRequest.parent_id == rid)
        assert {c.kind for c in children} == {RequestKind.FAILOVER} and len(children) == 20
        assert all(c.requester == "UALICE" and c.state is RequestState.SUCCEEDED for c in children)
        assert {s.service: s.active_region for s in rows(sv, ServiceState, order=ServiceState.service)} == {
            name(level, i): "us-west-2" for level in range(1, 5) for i in range(5)}
        actions = [a.action for a in rows(sv, AuditEntry, col(AuditEntry.action).like("evacuation.%"))]
        assert actions == ["evacuation.started"] + ["evacuation.wave"] * 4 + ["evacuation.succeeded"]
        approved_by = [a.detail for a in rows(sv, AuditEntry, AuditEntry.action == "request.failover")]
        assert len(approved_by) == 20 and all(f'"approved_by": "evacuation #{rid}"' in d for d in approved_by)
        # the thread carries the detail: the start, each wave, each service, the end
        notes = [c.params["text"] for c in fake_slack.calls("chat.postMessage")
                 if c.params.get("thread_ts") == req.message_ts]
        assert sum(t.startswith("Wave ") for t in notes) == 4, "\n".join(notes)
        assert not any(" · moved to us-west-2" in t for t in notes)  # what moved is on the board only
        (end,) = [t for t in notes if t.startswith(f"Evacuation #{rid} of us-east-1 succeeded")]
        # the report: total, and the critical path (the slowest service of each wave)
        assert "all 20 services moved · total " in end and " · critical path " in end, end
        assert end.count(" → ") == 3 and "(the slowest service of each wave)" in end, end
    finally:
        sv.engine.dispose()


def board_head(fake, sv, rid: int) -> str:
    """The board's first line as Slack shows it now ('' before it is posted)."""
    ev = evacuation(sv, rid)
    return fake.message(CHANNEL, ev.board_ts)["blocks"][0]["text"]["text"].split("\n")[0] if ev.board_ts else ""


def step_start(sv, run_id: int) -> datetime:
    (first,) = rows(sv, RunStep, RunStep.run_id == run_id, RunStep.position == 0)
    return aware(first.started_at)


def max_overlap(spans: list[tuple[datetime, datetime]]) -> int:
    points = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda p: (p[0], p[1]))
    best = now = 0
    for _, d in points:
        now += d
        best = max(best, now)
    return best


@pytest.mark.parametrize("policy", ["stop", "continue"])
def test_a_service_failing_in_wave_2_follows_the_failure_policy(db_url, fake_slack, policy):
    sv = make_services(config_text(per_level=5, wait="100ms", parallelism=5, on_failure=policy), db_url)
    sv.backends["sim"].estate.inject("s2b", "action_fails")
    try:
        with running_app(sv, fake_slack) as app:
            rid = ask_and_approve(app, fake_slack, sv)
            wait_until("the evacuation ended", lambda: request(sv, rid).state not in (
                RequestState.PENDING, RequestState.APPROVED, RequestState.RUNNING), timeout=60)
            wait_until("the board shows the end", lambda: "· FAILED ·" in board_head(fake_slack, sv, rid), timeout=20)
            assert_board_matches_store(fake_slack, sv, rid)
            req = request(sv, rid)
            assert req.state is RequestState.FAILED
            found = {svc: m.state for svc, m in members(sv, rid).items()}
            moved = runs(sv, rid)
            assert found["s2b"] == "failed" and moved["s2b"].state is RequestState.FAILED
            board = board_lines(fake_slack, sv, rid)
            assert board["s2b"].startswith("FAILED at step 1/2 (shift traffic): ") and "SANDBOX" in board["s2b"]
            if policy == "stop":  # the rest of wave 2 finishes; waves 3 and 4 never start
                assert all(found[name(w, i)] == "succeeded" for w in (1, 2) for i in range(5) if (w, i) != (2, 1))
                assert all(found[name(w, i)] == "skipped" for w in (3, 4) for i in range(5))
                assert set(moved) == {name(w, i) for w in (1, 2) for i in range(5)}
                assert req.state_reason == ("9 of 20 moved; failed: s2b; not moved: "
                                            + ", ".join(name(w, i) for w in (3, 4) for i in range(5)))
                assert board["s3a"] == "not started: a service failed (on_failure: stop)"
            else:  # only what depends on s2b is skipped; the rest finish
                assert found["s3b"] == found["s4b"] == "skipped"
                assert members(sv, rid)["s4b"].note == "depends on s2b"
                assert all(state == "succeeded" for svc, state in found.items() if svc not in ("s2b", "s3b", "s4b"))
                assert req.state_reason == "17 of 20 moved; failed: s2b; not moved: s3b, s4b"
            # rollback is offered for the service that failed; asking for it posts a rollback request
            blocks = fake_slack.message(CHANNEL, evacuation(sv, rid).board_ts)["blocks"]
            child = moved["s2b"].request_id
            assert action_ids(blocks) == [("run_rollback", str(child))]
            posted = fake_slack.message(CHANNEL, evacuation(sv, rid).board_ts)
            app.sender.block_action("run_rollback", str(child), user_id="UBOB", user_name="bob", channel_id=CHANNEL,
                                    message=posted, response_url=fake_slack.response_url("rollback"))
            rollback = wait_until("the rollback requested", lambda: rows(
                sv, ChangeRequest, ChangeRequest.kind == RequestKind.ROLLBACK, ChangeRequest.parent_id == child))
            assert rollback[0].service == "s2b" and rollback[0].state is RequestState.PENDING
            if policy == "stop":
                roll_back_all(app, fake_slack, sv, rid)
        notes = [c.params["text"] for c in fake_slack.calls("chat.postMessage")
                 if c.params.get("thread_ts") == req.message_ts]
        assert any(t.startswith("✗ s2b · FAILED") for t in notes), notes
    finally:
        sv.engine.dispose()


# -- who may: the evacuation's policy -----------------------------------------------------

STRICT = """
  - name: pay-db
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
    traffic: {source: sim}
    approvals: {approvers: [UCAROL, UDAVE], required_approvals: 1}
    runbooks:
      failover:
        - {name: hold, action: wait, wait: {duration: 1500ms}}
  - name: pay-api
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
    traffic: {source: sim}
    depends_on: [pay-db]
    runbooks:
      failover:
        - {name: shift traffic, action: traffic.shift}
"""


def test_who_may_ask_approve_abort_and_resume_an_evacuation(tmp_path):
    """The strictest policy of the services: only an approver of every one (carol) may
    approve; not the requester; Abort and Resume: the requester or such an approver."""
    sv = build_services(parse_config(SOURCES + "services:" + STRICT, "strict.yaml", {}),
                        db_url=f"sqlite:///{tmp_path}/strict.db")
    try:
        created = dispatch(sv, ALICE, "evacuate us-east-1 the region is gone")
        assert created.template == "evacuation_created", created
        rid = created.context["req"].id
        assert dispatch(sv, ALICE, "evacuate us-east-1 again").context["code"] == "evacuation_open"
        assert click(sv, ALICE, "cr_approve", str(rid)).context["code"] == "own_request"
        refused = click(sv, BOB, "cr_approve", str(rid))  # bob approves failovers of pay-api, not of pay-db
        assert refused.context["code"] == "not_approver" and refused.context["p"]["approvers"] == ["UCAROL"]
        assert request(sv, rid).state is RequestState.PENDING
        assert click(sv, CAROL, "cr_approve", str(rid)) is None
        wait_until("pay-db moving", lambda: members(sv, rid)["pay-db"].state == "running")
        assert click(sv, MALLORY, "evac_abort", str(rid)).context["code"] == "not_approver"
        assert click(sv, CAROL, "evac_abort", str(rid)) is None  # wave 1 finishes, wave 2 never starts
        wait_until("aborted", lambda: request(sv, rid).state is RequestState.ABORTED, timeout=15)
        found = members(sv, rid)
        assert (found["pay-db"].state, found["pay-api"].state, found["pay-api"].note) == (
            "succeeded", "skipped", "aborted by carol")
        assert request(sv, rid).state_reason == "aborted by carol: 1 of 2 moved"
        # Roll back all: the requester or an approver of the evacuation asks; approved again
        assert click(sv, MALLORY, "evac_rollback", str(rid)).context["code"] == "not_approver"
        assert click(sv, ALICE, "evac_rollback", str(rid)) is None
        (undo,) = rows(sv, ChangeRequest, ChangeRequest.kind == RequestKind.ROLLBACK, ChangeRequest.parent_id == rid)
        assert undo.state is RequestState.PENDING and [m.service for m in members(sv, undo.id).values()] == ["pay-db"]
        assert click(sv, ALICE, "evac_rollback", str(rid)).context["code"] == "followup_open"
        assert click(sv, BOB, "cr_approve", str(undo.id)).context["code"] == "not_approver"
        # Resume: only an interrupted evacuation, asked by the requester or an approver of it
        assert click(sv, CAROL, "evac_resume", str(rid)).context["code"] == "not_in_state"
        with session_scope(sv.engine) as s:  # as a restart finds one whose process died
            move_request(s, rid, [RequestState.ABORTED], RequestState.INTERRUPTED)
        assert click(sv, MALLORY, "evac_resume", str(rid)).context["code"] == "not_approver"
        assert click(sv, ALICE, "evac_resume", str(rid)) is None
        (resume,) = rows(sv, ChangeRequest, ChangeRequest.kind == RequestKind.RESUME, ChangeRequest.parent_id == rid)
        assert resume.state is RequestState.PENDING and resume.required_approvals == 1
        assert click(sv, BOB, "cr_approve", str(resume.id)).context["code"] == "not_approver"
    finally:
        sv.runner.shutdown(5)
        sv.engine.dispose()


def test_the_board_shows_each_service_s_current_step_between_the_coordinator_s_decisions(db_url, fake_slack):
    """The coordinator decides only when a wave ends or a slot frees: the board follows the
    runs themselves (each step boundary and each end queue a board update)."""
    sv = make_services(config_text(levels=1, per_level=2, wait="2s", parallelism=2), db_url)
    try:
        with running_app(sv, fake_slack) as app:
            rid = ask_and_approve(app, fake_slack, sv)
            both = wait_until("the board shows both services in their second step", lambda: (lambda lines: lines if all(
                lines.get(name(1, i), "").startswith("running · step 2/2: settle") for i in range(2)) else None)(
                board_lines(fake_slack, sv, rid) if evacuation(sv, rid).board_ts else {}), timeout=15)
            assert set(both) == {"s1a", "s1b"}
            assert {m.state for m in members(sv, rid).values()} == {"running"}  # no decision since they started
            wait_until("the evacuation ended", lambda: request(sv, rid).state is RequestState.SUCCEEDED, timeout=20)
            wait_until("the board shows the end", lambda: "· succeeded ·" in board_head(fake_slack, sv, rid), timeout=15)
            assert_board_matches_store(fake_slack, sv, rid)
    finally:
        sv.runner.shutdown(5)
        sv.engine.dispose()


def test_an_evacuation_that_ends_well_still_names_the_services_refused_before_it_started(tmp_path):
    sv = make_services(config_text(levels=2, per_level=2, wait="50ms", parallelism=2),
                       f"sqlite:///{tmp_path}/d.db")
    try:
        busy = dispatch(sv, ALICE, "failover s1a its disk is failing")  # an open change refuses s1a
        assert busy.template == "request_created", busy
        rid = dispatch(sv, ALICE, "evacuate us-east-1 the region is down").context["req"].id
        assert {svc: m.state for svc, m in members(sv, rid).items()} == {
            "s1a": "refused", "s2a": "refused", "s1b": "pending", "s2b": "pending"}
        assert click(sv, BOB, "cr_approve", str(rid)) is None
        wait_until("evacuated", lambda: request(sv, rid).state not in (
            RequestState.PENDING, RequestState.APPROVED, RequestState.RUNNING), timeout=30)
        req = request(sv, rid)
        assert req.state is RequestState.SUCCEEDED, req.state_reason
        assert req.state_reason == "all 2 services moved; refused before it started, still in place: s1a, s2a"
    finally:
        sv.runner.shutdown(5)
        sv.engine.dispose()


def test_return_brings_the_evacuated_services_back_in_reverse_dependency_order(db_url):
    sv = make_services(config_text(levels=3, per_level=2, wait="200ms", parallelism=2), db_url)
    try:
        def ended(rid: int) -> bool:
            return request(sv, rid).state not in (RequestState.PENDING, RequestState.APPROVED, RequestState.RUNNING)

        out = dispatch(sv, ALICE, "evacuate us-east-1 the region is down").context["req"].id
        assert click(sv, BOB, "cr_approve", str(out)) is None
        wait_until("evacuated", lambda: ended(out), timeout=30)
        assert request(sv, out).state is RequestState.SUCCEEDED
        assert dispatch(sv, ALICE, "return us-west-2 wrong region").context["code"] == "evacuation_empty"
        asked = dispatch(sv, ALICE, "return us-east-1 the region is healthy again")
        assert asked.template == "evacuation_created", asked
        back = asked.context["req"]
        assert back.kind is RequestKind.RETURN and back.service == "region:us-east-1"
        waves_of = {svc: m.wave for svc, m in members(sv, back.id).items()}
        assert waves_of == {name(level, i): 4 - level for level in (1, 2, 3) for i in range(2)}  # edge first
        assert click(sv, BOB, "cr_approve", str(back.id)) is None
        wait_until("returned", lambda: ended(back.id), timeout=30)
        assert request(sv, back.id).state is RequestState.SUCCEEDED, request(sv, back.id).state_reason
        children = rows(sv, ChangeRequest, ChangeRequest.parent_id == back.id)
        assert {c.kind for c in children} == {RequestKind.FAILBACK} and len(children) == 6
        assert {s.service: s.active_region for s in rows(sv, ServiceState, order=ServiceState.service)} == {
            name(level, i): "us-east-1" for level in (1, 2, 3) for i in range(2)}
        moved = runs(sv, back.id)
        for level in (3, 2):  # what depends on others came back before what it depends on
            assert max(aware(moved[name(level, i)].ended_at) for i in range(2)) <= min(
                step_start(sv, moved[name(level - 1, i)].id) for i in range(2))
        assert dispatch(sv, ALICE, "return us-east-1 again").context["code"] == "evacuation_empty"
    finally:
        sv.runner.shutdown(5)
        sv.engine.dispose()


def roll_back_all(app, fake, sv, rid: int) -> None:
    """Roll back all, on the failed evacuation's message: approved again, the services that
    moved are undone, the newest wave first (s2b has a rollback of its own open: left to it)."""
    sv.backends["sim"].estate.clear("s2b")
    msg = wait_until("the message offers Roll back all", lambda: (m := fake.message(
        CHANNEL, request(sv, rid).message_ts)) and ("evac_rollback", str(rid)) in action_ids(m["blocks"]) and m)
    app.sender.block_action("evac_rollback", str(rid), user_id="UALICE", user_name="alice", channel_id=CHANNEL,
                            message=msg, response_url=fake.response_url("all"))
    undo = wait_until("the rollback posted", lambda: next((q for q in rows(
        sv, ChangeRequest, ChangeRequest.parent_id == rid, ChangeRequest.kind == RequestKind.ROLLBACK)
        if q.message_ts), None))
    assert undo.service == "region:us-east-1"
    waves_of = {svc: m.wave for svc, m in members(sv, undo.id).items()}
    assert waves_of == {**{name(2, i): 1 for i in (0, 2, 3, 4)}, **{name(1, i): 2 for i in range(5)}}
    posted = fake.message(CHANNEL, undo.message_ts)
    app.sender.block_action("cr_approve", str(undo.id), user_id="UBOB", user_name="bob", channel_id=CHANNEL,
                            message=posted, response_url=fake.response_url("undo"))
    wait_until("rolled back", lambda: request(sv, undo.id).state not in (
        RequestState.PENDING, RequestState.APPROVED, RequestState.RUNNING), timeout=30)
    assert request(sv, undo.id).state is RequestState.ROLLED_BACK, request(sv, undo.id).state_reason
    assert request(sv, rid).state is RequestState.ROLLED_BACK
    assert {s.active_region for s in rows(sv, ServiceState, order=ServiceState.service)} == {"us-east-1"}
    undone = {c.service: c for c in rows(sv, ChangeRequest, ChangeRequest.kind == RequestKind.ROLLBACK,
                                         ChangeRequest.service != "region:us-east-1")}
    assert set(undone) == {name(1, i) for i in range(5)} | {name(2, i) for i in range(5)}
    ends = {svc: runs_by_request(sv)[c.id] for svc, c in undone.items() if svc != "s2b"}
    assert max(aware(ends[name(2, i)].ended_at) for i in (0, 2, 3, 4)) <= min(
        step_start(sv, ends[name(1, i)].id) for i in range(5))  # the newest wave first


def runs_by_request(sv) -> dict[int, Run]:
    return {r.request_id: r for r in rows(sv, Run)}


# -- the incident's timeline and the status page ----------------------------------------------

SP_KEY = "sp-key-evacuation"


def test_the_incident_timeline_and_status_page_get_the_start_each_wave_and_the_end(fake_slack, tmp_path):
    text = config_text(levels=2, per_level=2, wait="100ms").replace("sources:\n", """sources:
  sp: {kind: statuspage, page_id: pg1, api_key: "${SP_KEY}", base_url: "${SP_URL}", timeout: 2}
""", 1) + """permissions: {incident_open: [UALICE], incident_update: [UALICE]}
incidents: {commander_within: null}
statuspage: {source: sp, publish: {sev1: auto, sev2: auto}, publish_typed_text: {sev2: auto}}
"""
    with FakeStatuspage(page_id="pg1", api_key=SP_KEY) as page:
        sv = build_services(parse_config(text, "evacuate.yaml", {"SP_KEY": SP_KEY, "SP_URL": page.url}),
                            db_url=f"sqlite:///{tmp_path}/drbot.db")
        try:
            with running_app(sv, fake_slack) as app:
                r = app.sender.slash_command("incident open us-east-1 is down sev2", user_id="UALICE",
                                             channel_id="C_WAR", response_url=fake_slack.response_url("open"))
                assert r.status_code == 200
                answered(fake_slack, "open")
                inc = wait_until("published", lambda: next((i for i in rows(sv, Incident) if i.statuspage_id), None))
                alice = Actor("UALICE", "alice", "slack", inc.channel_id)
                rid = dispatch(sv, alice, "evacuate us-east-1 the region is down <!channel>").context["req"].id
                assert click(sv, BOB, "cr_approve", str(rid)) is None
                wait_until("ended", lambda: request(sv, rid).state is RequestState.SUCCEEDED, timeout=30)
                delivered(sv)
                [public] = page.incidents.values()
                bodies = [u["body"] for u in reversed(public["incident_updates"])]
                ours = [b for b in bodies if "us-east-1 region" in b]
                assert ours == ["We are moving services away from our us-east-1 region, in 2 stages, to restore "
                                "service.",
                                "Stage 1 of 2 of moving services away from our us-east-1 region is under way.",
                                "Stage 2 of 2 of moving services away from our us-east-1 region is under way.",
                                "Every service has been moved away from our us-east-1 region. We are monitoring."]
                assert not any("<!channel>" in b or "region is down" in b for b in bodies)  # never the typed reason
            kinds = [e.kind for e in rows(sv, TimelineEvent, TimelineEvent.incident_id == inc.id)
                     if e.kind.startswith("evacuation.")]
            assert kinds == ["evacuation.started", "evacuation.wave", "evacuation.wave", "evacuation.succeeded"]
        finally:
            sv.runner.shutdown(5)
            sv.engine.dispose()


def test_bad_input_says_what_to_type(tmp_path):
    sv = build_services(parse_config(config_text(levels=1, per_level=1), "e.yaml", {}),
                        db_url=f"sqlite:///{tmp_path}/e.db")
    try:
        def said(text: str) -> str:
            return sv.renderer.text(dispatch(sv, ALICE, text))

        assert "say which region, then why, e.g. `/dr evacuate us-east-1 the region is down" in said("evacuate")
        assert "'us-east' is not a region (did you mean 'us-east-1'?)" in said("evacuate us-east down")
        assert "an evacuation needs a reason" in said("evacuate us-east-1")
        assert "a return needs a reason" in said("return us-east-1")
        assert "'--force' is not an option" in said("evacuate us-east-1 down --force")
        assert "--break-glass needs a written justification" in said("evacuate us-east-1 down --break-glass")
        assert "break-glass is not enabled for region:us-east-1" in said(
            "evacuate us-east-1 down --break-glass the bridge call agreed to move now")
        assert "nothing to evacuate from us-west-2: no service is active there" in said("evacuate us-west-2 down")
        assert rows(sv, ChangeRequest) == []
    finally:
        sv.engine.dispose()


def test_break_glass_runs_at_once_and_an_unapproved_evacuation_expires(tmp_path):
    text = config_text(levels=2, per_level=1, wait="50ms").replace(
        "approvals: {required_approvals: 1, approvers: [UBOB, UCAROL], expires: 30m}",
        "approvals: {required_approvals: 1, approvers: [UBOB, UCAROL], expires: 30m, "
        "break_glass: {enabled: true, group: [UALICE]}}")
    clock = Clock()
    sv = build_services(parse_config(text, "e.yaml", {}), db_url=f"sqlite:///{tmp_path}/e.db", clock=clock,
                        inline_runs=True)
    try:
        short = dispatch(sv, ALICE, "evacuate us-east-1 down --break-glass no time")
        assert short.context["code"] == "justification_short"
        glass = dispatch(sv, ALICE, "evacuate us-east-1 down --break-glass the bridge agreed to move right now")
        assert glass.template == "evacuation_created", glass
        rid = glass.context["req"].id
        req = request(sv, rid)
        assert req.break_glass and req.required_approvals == 0 and req.state is RequestState.SUCCEEDED
        assert [a.action for a in rows(sv, AuditEntry, AuditEntry.action == "break_glass")] == ["break_glass"]
        assert {m.state for m in members(sv, rid).values()} == {"succeeded"}
        # the services came back home; an evacuation nobody approves expires, and nothing runs
        back = dispatch(sv, ALICE, "return us-east-1 home again --break-glass the bridge agreed to move back now")
        assert request(sv, back.context["req"].id).state is RequestState.SUCCEEDED
        waiting = dispatch(sv, ALICE, "evacuate us-east-1 down").context["req"].id
        clock.advance(31 * 60)
        assert expire_due(sv) == [waiting] and request(sv, waiting).state is RequestState.EXPIRED
        assert click(sv, BOB, "cr_approve", str(waiting)).context["code"] == "not_pending"
        assert members(sv, waiting)["s1a"].child_id is None  # nothing ran
    finally:
        sv.engine.dispose()


def test_the_coordinator_starts_each_service_once_however_many_threads_advance_it(db_url):
    """Two replicas' sweeps and every ending run advance the same evacuation at once: one
    child per service, never a service of the next wave early, parallelism held. Inside one
    process one thread decides at a time (the others return at once); between the two
    replicas (two Services on one database, each with its runner) the row lock decides."""
    # steps long enough that two runs of a wave overlap even when six hammering threads and a
    # busy machine (the whole suite on 2 cores) delay a start by more than a second
    text = config_text(levels=2, per_level=3, wait="2500ms", parallelism=2)
    sv = make_services(text, db_url)
    other = make_services(text, db_url)
    stop = threading.Event()
    errors: list[BaseException] = []

    def hammer(replica) -> None:
        while not stop.is_set():
            try:
                evacuation_run.advance(replica, rid)
                evacuation_run.sweep(replica)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
                return

    try:
        rid = dispatch(sv, ALICE, "evacuate us-east-1 the region is down").context["req"].id
        threads = [threading.Thread(target=hammer, args=(sv if n % 2 else other,)) for n in range(6)]
        for t in threads:
            t.start()
        assert click(sv, BOB, "cr_approve", str(rid)) is None
        wait_until("ended", lambda: request(sv, rid).state is RequestState.SUCCEEDED, timeout=60)
        stop.set()
        for t in threads:
            t.join(10)
        assert errors == []
        children = rows(sv, ChangeRequest, ChangeRequest.parent_id == rid)
        assert sorted(c.service for c in children) == sorted(name(level, i) for level in (1, 2) for i in range(3))
        moved = runs(sv, rid)
        for level in (1, 2):
            spans = [(step_start(sv, moved[name(level, i)].id), aware(moved[name(level, i)].ended_at))
                     for i in range(3)]
            assert max_overlap(spans) == 2
        assert max(aware(moved[name(1, i)].ended_at) for i in range(3)) <= min(
            step_start(sv, moved[name(2, i)].id) for i in range(3))
        assert len(rows(sv, AuditEntry, AuditEntry.action == "evacuation.wave")) == 2
    finally:
        stop.set()
        for replica in (sv, other):
            replica.runner.shutdown(5)
            replica.engine.dispose()


def test_one_thread_per_process_decides_and_decides_again_when_something_ended_meanwhile():
    """Several children ending at once: the first decides, the others mark the evacuation
    and return at once; the deciding one decides once more for them all."""
    gate = Gate()
    assert gate.enter(7)
    assert not gate.enter(7) and not gate.enter(7)  # two ended meanwhile: returned at once
    assert gate.enter(8)  # another evacuation is decided on its own
    assert gate.again(7)  # one more decision covers both
    assert not gate.again(7)  # nothing ended since: it leaves
    assert gate.enter(7)
    gate.leave(7)
    assert not gate.nudge(7)  # nobody deciding: the caller reads and decides itself
    assert gate.enter(7)
    assert gate.nudge(7) and gate.again(7)  # a child ended while it decided: once more
