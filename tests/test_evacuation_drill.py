"""Region drills (issue 16): `/dr drill evacuate REGION [REASON]` over real HTTP signed like
Slack signs, on SQLite and PostgreSQL. The drill is an evacuation request marked as a drill:
the requester cannot approve it, a second approver starts it; each service runs its drill
scenario 'evacuate' when it has one, else its failover on the sandbox; the status page is
never touched; its thread gets a drill report with the total RTO, each service's RTO and
RPO and the critical path, matching the store. A service whose failover is not all
sandbox and that has no drill scenario 'evacuate' is refused, and so is what depends on it."""
from __future__ import annotations

import json
import re
from datetime import timedelta

from sqlmodel import col

from bot import drills
from bot.changes import expire_due
from bot.config import parse_config
from bot.evacuation import drillable, members_for_drill
from bot.evacuation_plan import plan_evacuation
from bot.evacuation_view import drill_report
from bot.store import read_scope
from bot.store.evacuation_tables import Evacuation, EvacuationMember
from bot.store.incident_tables import OutboxItem
from bot.store.models import AuditEntry, ChangeRequest, RequestKind, RequestState, Run, aware
from bot.wiring import build_services
from commands.router import click, dispatch
from tests.app_server import running_app
from tests.helpers import ALICE, BOB, CAROL, answered, rows, wait_until
from tests.paging_support import Clock

CHANNEL = "C_DRILL"


def service(name: str, deps: str = "[]", drill: bool = False, lag: str = "sim") -> str:
    scenario = """
      drill:
        evacuate:
          - {name: shift traffic, action: traffic.shift, verify: {traffic_in: target, within: 5s, interval: 50ms}}
          - {name: hold, action: wait, wait: {duration: 100ms}}""" if drill else ""
    return f"""  - name: {name}
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {{source: {lag}}}
    health: {{us-east-1: sim, us-west-2: sim}}
    traffic: {{source: sim}}
    depends_on: {deps}
    runbooks:
      failover:
        - {{name: shift traffic, action: traffic.shift, verify: {{traffic_in: target, within: 5s, interval: 50ms}}}}
        - {{name: settle, action: wait, wait: {{duration: 150ms}}}}{scenario}
"""


def config_text(extra_services: str = "", sources: str = "") -> str:
    return f"""regions: [us-east-1, us-west-2]
sources:
  sim: {{kind: sandbox, timeout: 10.0}}
{sources}approvals: {{required_approvals: 1, approvers: [UBOB, UCAROL], expires: 30m}}
evacuation: {{parallelism: 4, on_failure: stop}}
services:
{service("db1")}{service("db2")}{service("api1", "[db1]", drill=True)}{service("api2", "[db2]")}{service("edge", "[api1, api2]")}{extra_services}"""


def test_a_region_drill_runs_its_services_as_drills_and_reports_rto_rpo_and_the_critical_path(db_url, fake_slack):
    sv = build_services(parse_config(config_text(), "drill.yaml", {}), db_url=db_url)
    try:
        with running_app(sv, fake_slack) as app:
            r = app.sender.slash_command("drill evacuate us-east-1 quarterly game day", user_id="UALICE",
                                         user_name="alice", channel_id=CHANNEL,
                                         response_url=fake_slack.response_url("ask"))
            assert r.status_code == 200, r.text
            assert "region drill of us-east-1" in answered(fake_slack, "ask").params["text"]
            req = wait_until("the drill posted", lambda: next(
                (q for q in rows(sv, ChangeRequest, ChangeRequest.kind == RequestKind.EVACUATE) if q.message_ts),
                None))
            assert req.scenario == "evacuate" and req.reason == "quarterly game day"
            posted = fake_slack.message(CHANNEL, req.message_ts)
            assert "Region drill" in posted["text"] or "drill an evacuation of" in str(posted["blocks"])
            [approve] = [e for b in posted["blocks"] if b["type"] == "actions" for e in b["elements"]
                         if e["action_id"] == "cr_approve"]
            confirm = approve["confirm"]  # a drill is never announced to its approver as a production change
            assert confirm["title"]["text"] == f"Approve region drill #{req.id} of us-east-1?", confirm
            assert "in production" not in confirm["text"]["text"] and "sandbox" in confirm["text"]["text"], confirm
            # the requester cannot approve her own drill; a second approver starts it
            app.sender.block_action("cr_approve", str(req.id), user_id="UALICE", user_name="alice",
                                    channel_id=CHANNEL, message=posted, response_url=fake_slack.response_url("self"))
            assert "someone else has to approve" in answered(fake_slack, "self").params["text"]
            app.sender.block_action("cr_approve", str(req.id), user_id="UBOB", user_name="bob", channel_id=CHANNEL,
                                    message=posted, response_url=fake_slack.response_url("bob"))
            done = wait_until("the drill ended", lambda: (lambda q: q if q.state not in (
                RequestState.PENDING, RequestState.APPROVED, RequestState.RUNNING) else None)(
                rows(sv, ChangeRequest, ChangeRequest.id == req.id)[0]), timeout=60)
            assert done.state is RequestState.SUCCEEDED, done.state_reason
            call = wait_until("the drill report", lambda: next(
                (c for c in fake_slack.calls("chat.postMessage") if c.params.get("thread_ts") == req.message_ts
                 and "Region drill report" in c.params.get("text", "")), None))
            blocks = call.params["blocks"]
            report = {"text": call.params["text"], "blocks": json.loads(blocks) if isinstance(blocks, str) else blocks}
        children = {c.service: c for c in rows(sv, ChangeRequest, ChangeRequest.parent_id == req.id)}
        assert {s: c.kind for s, c in children.items()} == {
            "db1": RequestKind.FAILOVER, "db2": RequestKind.FAILOVER, "api1": RequestKind.DRILL,
            "api2": RequestKind.FAILOVER, "edge": RequestKind.FAILOVER}
        assert children["api1"].scenario == "evacuate"
        runs = {children_by_id[r.request_id]: r for children_by_id in [{c.id: s for s, c in children.items()}]
                for r in rows(sv, Run, col(Run.request_id).in_([c.id for c in children.values()]))}
        assert all(r.sandbox and r.state is RequestState.SUCCEEDED for r in runs.values())
        # waves in order: the databases, then the APIs, then the edge
        assert max(aware(runs[s].ended_at) for s in ("db1", "db2")) <= min(
            aware(runs[s].started_at) for s in ("api1", "api2"))
        assert max(aware(runs[s].ended_at) for s in ("api1", "api2")) <= aware(runs["edge"].started_at)
        # the report matches the store
        ev = rows(sv, Evacuation, Evacuation.request_id == req.id, order=col(Evacuation.request_id))[0]
        text = "\n".join(b["text"]["text"] for b in report["blocks"] if b["type"] == "section")
        assert "PASSED" in report["text"] and "SANDBOX" in report["text"], report["text"]
        secs = sv.renderer.text_env.filters["secs"]
        ready = {s: (aware(r.verified_at or r.ended_at) - aware(ev.started_at)).total_seconds()
                 for s, r in runs.items()}
        total = re.search(r"Total RTO ([^ ]+)", text).group(1)
        assert total == secs(max(ready.values())), (total, ready)
        for name, run in runs.items():
            line = next(x for x in text.splitlines() if x.startswith(f"{name} (wave"))
            assert f"RTO {secs(ready[name])} of 15m" in line, line
            assert "RPO " in line and "pass" in line, line
            assert run.measured_rpo_s is not None or "not measured" in line
        assert "critical path" in text
        slowest = [max(group, key=lambda s: (aware(runs[s].ended_at) - aware(runs[s].started_at)))
                   for group in (("db1", "db2"), ("api1", "api2"), ("edge",))]
        path = re.search(r"critical path [^:]+: (.*) \(the slowest", text).group(1)
        assert [p.split(" ")[0] for p in path.split(" → ")] == slowest, path
        # a drill never touches the status page; the audit names it a drill
        created = rows(sv, AuditEntry, AuditEntry.action == "request.evacuate")[0]
        assert '"drill": true' in created.detail
    finally:
        sv.runner.shutdown(5)
        sv.engine.dispose()


def test_a_service_that_is_not_all_sandbox_and_has_no_drill_scenario_is_refused_with_what_depends_on_it(tmp_path):
    extra = service("real", lag="prom") + service("behind", "[real]")
    sources = "  prom: {kind: prometheus, url: 'http://127.0.0.1:9', query: 'lag', timeout: 0.5}\n"
    sv = build_services(parse_config(config_text(extra, sources), "drill.yaml", {}),
                        db_url=f"sqlite:///{tmp_path}/d.db")
    try:
        assert drillable(sv, "db1") and drillable(sv, "api1")
        assert not drillable(sv, "real")
        members = {m.service: m for m in members_for_drill(sv, plan_evacuation(sv, "us-east-1"))}
        assert members["real"].state == "refused"
        assert members["behind"].state == "refused"
        assert "depends on real" in members["behind"].note
        assert members["db1"].state == members["edge"].state == "pending"
        # a drill takes no option, and names a region
        said = [sv.renderer.text(dispatch(sv, ALICE, text)) for text in (
            "drill evacuate us-east-1 --break-glass now", "drill evacuate mars game day", "drill evacuate")]
        assert "takes no option (--break-glass)" in said[0], said[0]
        assert "mars" in said[1] and "us-east-1" in said[1], said[1]
        assert "say which region to drill" in said[2], said[2]
    finally:
        sv.engine.dispose()


def test_the_drill_report_of_a_drill_that_never_started_says_so(tmp_path):
    sv = build_services(parse_config(config_text(), "drill.yaml", {}), db_url=f"sqlite:///{tmp_path}/d.db")
    try:
        reply = dispatch(sv, ALICE, "drill evacuate us-east-1")
        req = reply.context["req"]
        assert req.reason == "region drill"
        with read_scope(sv.engine) as s:
            ctx = drill_report(sv, s, req.id)
            assert "rows" not in ctx  # not started: no report yet
            assert len(rows(sv, EvacuationMember, EvacuationMember.evacuation_id == req.id)) == 5
    finally:
        sv.engine.dispose()


def test_a_scheduled_region_drill_is_approved_ahead_and_starts_at_its_time_only(tmp_path):
    clock = Clock()
    clock.advance(-2 * 3600)  # the drill is asked for two hours "ago": at its time the clock is the wall clock
    sv = build_services(parse_config(config_text(), "drill.yaml", {}), db_url=f"sqlite:///{tmp_path}/d.db",
                        clock=clock, inline_runs=True)
    try:
        refused = dispatch(sv, ALICE, "drill schedule evacuate us-east-1 in 2h quarterly game day")
        assert refused.context["code"] == "not_permitted" and refused.context["p"]["role"] == "drill_calendar"
        reply = dispatch(sv, BOB, "drill schedule evacuate us-east-1 in 2h quarterly game day")
        assert reply.template == "evacuation_created", sv.renderer.text(reply)
        assert "it starts at" in sv.renderer.text(reply)
        rid = reply.context["req"].id
        req = rows(sv, ChangeRequest, ChangeRequest.id == rid)[0]
        assert req.scenario == "evacuate" and req.reason == "quarterly game day"
        assert aware(req.not_before) == aware(req.expires_at) and aware(req.not_before) > clock() + timedelta(
            minutes=119)
        # a region drill waiting for its time never blocks a real evacuation
        real = dispatch(sv, ALICE, "evacuate us-east-1 the region is down")
        assert real.template == "evacuation_created", sv.renderer.text(real)
        dispatch(sv, ALICE, f"cancel {real.context['req'].id}")
        # approved ahead: nothing starts before its time
        assert click(sv, CAROL, "cr_approve", str(rid)) is None
        sv.runner.sweep()
        assert rows(sv, ChangeRequest, ChangeRequest.id == rid)[0].state is RequestState.APPROVED
        assert rows(sv, ChangeRequest, ChangeRequest.parent_id == rid) == []
        clock.advance(2 * 3600 + 1)
        sv.runner.sweep()  # its time has come, but it is on the drill calendar: the scheduler starts it
        assert rows(sv, ChangeRequest, ChangeRequest.id == rid)[0].state is RequestState.APPROVED
        assert drills.tick(sv)["started"] == [req.occurrence_id]
        done = rows(sv, ChangeRequest, ChangeRequest.id == rid)[0]
        assert done.state is RequestState.SUCCEEDED, [(c.service, c.state_reason) for c in rows(
            sv, ChangeRequest, ChangeRequest.parent_id == rid)] + [r.error for r in rows(sv, Run)]
        assert len(rows(sv, ChangeRequest, ChangeRequest.parent_id == rid)) == 5
        reports = [i for i in rows(sv, OutboxItem, OutboxItem.kind == "evacuation.note") if '"report"' in i.payload]
        assert len(reports) == 1 and f'"request_id":{rid}' in reports[0].payload.replace(" ", "")
        # one nobody approves by its time expires, and nothing runs
        late = dispatch(sv, BOB, "drill schedule evacuate us-west-2 in 1h").context["req"].id  # they run there now
        clock.advance(3601)
        assert expire_due(sv) == [late]
        assert drills.tick(sv)["missed"] == [rows(sv, ChangeRequest, ChangeRequest.id == late)[0].occurrence_id]
        sv.runner.sweep()
        assert rows(sv, ChangeRequest, ChangeRequest.parent_id == late) == []
    finally:
        sv.engine.dispose()
