"""A drill proves something or it does not pass: it must move traffic or the writer and a
verify must read the move back. A scenario of ``check`` steps only is recorded as a check,
does not refresh ``drill_max_age``, and the config says so when it is loaded. Runs on a
sandbox backend say SANDBOX in the report, the status line and the history.

The drills run through the commands people use (``commands.router.dispatch`` and
``click``), on the sandbox, with the real store and engine, inline. The clock is set in the
past (June 2024): sandbox readings carry the real time they were observed, so they are
never stale for the test's "now".
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from bot.config import parse_config
from bot.config.runbooks import Step
from bot.drill_proof import proof_of
from bot.readiness import Verdict
from bot.run_facts import at_start
from bot.store.models import RequestState, RunStep, StepState
from bot.wiring import build_services
from commands.router import click, dispatch
from tests.helpers import ALICE, BOB, delivered, runs_of
from transports.cli import main

T0 = datetime(2024, 6, 3, 9, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)

CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim:
    kind: sandbox
    timeout: 1.0
    profiles:
      orders: {lag: 20, jitter: 0}
services:
  - name: orders
    tier: critical
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    drill_max_age: 7d
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
    traffic: {source: sim}
    database: {source: sim}
    runbooks:
      drill:
        roundtrip:
          - name: Shift traffic to the standby
            action: traffic.shift
            verify: {traffic_in: target, healthy: target, within: 5s, interval: 100ms}
          - name: Shift traffic back
            action: traffic.shift
            to: source
            verify: {traffic_in: source, within: 5s, interval: 100ms}
        look:
          - name: Standby answers health checks
            action: check
            verify: {healthy: target, lag_below: 4m, within: 5s, interval: 100ms}
        strict:
          - name: Lag below one second (cannot pass)
            action: check
            verify: {lag_below: 1s, within: 300ms, interval: 100ms}
        unread:
          - name: Shift traffic to the standby, unchecked
            action: traffic.shift
          - name: Shift traffic back, unchecked
            action: traffic.shift
            to: source
            verify: {healthy: source, within: 5s, interval: 100ms}
approvals:
  required_approvals: 1
  approvers: [UBOB]
  expires: 30m
watch: {enabled: false}
digest: {enabled: false}
"""


# -- what a run of steps proves ---------------------------------------------------------------

def steps(*specs: dict) -> list[Step]:
    return [Step.model_validate({"name": f"step {i + 1}"} | s) for i, s in enumerate(specs)]


def row(position: int, changed: bool | None = None, state: StepState = StepState.SUCCEEDED,
        attempt: int = 1) -> RunStep:
    out = {"region": "us-west-2"} | ({} if changed is None else {"changed": changed})
    return RunStep(id=position * 10 + attempt, run_id=1, position=position, attempt=attempt, name="s",
                   action="x", state=state, output=json.dumps(out))


SHIFT = {"action": "traffic.shift", "verify": {"traffic_in": "target"}}
BACK = {"action": "traffic.shift", "to": "source", "verify": {"traffic_in": "source"}}
CHECK = {"action": "check", "verify": {"healthy": "target"}}


def test_only_checks_is_a_check_whatever_happened():
    assert proof_of(steps(CHECK, CHECK), [row(0), row(1)]) == "check"
    assert proof_of(steps(CHECK), [row(0, state=StepState.FAILED)]) == "check"


def test_a_move_that_changed_something_and_was_read_back_is_proven():
    assert proof_of(steps(SHIFT, BACK), [row(0, True), row(1, True)]) == "moved"
    # read back by a later step's verify, in the region it moved to
    later = steps({"action": "database.switchover"}, {"action": "check", "verify": {"writer_in": "target"}})
    assert proof_of(later, [row(0, True), row(1)]) == "moved"


@pytest.mark.parametrize("case, book, ran", [
    ("already there: nothing changed", [SHIFT], [row(0, False)]),
    ("no verify reads the move back", [{"action": "traffic.shift"}, CHECK], [row(0, True), row(1)]),
    ("read back in the other region",
     [{"action": "traffic.shift"}, {"action": "check", "verify": {"traffic_in": "source"}}], [row(0, True), row(1)]),
    ("the move failed", [SHIFT], [row(0, None, StepState.FAILED)]),
    ("the read-back failed", [{"action": "traffic.shift"}, {"action": "check", "verify": {"traffic_in": "target"}}],
     [row(0, True), row(1, None, StepState.FAILED)]),
    ("a retried move that then changed nothing", [SHIFT], [row(0, True, StepState.FAILED), row(0, False, attempt=2)]),
])
def test_a_move_not_made_or_not_read_back_is_not_proven(case, book, ran):
    assert proof_of(steps(*book), ran) == "not_moved", case


# -- the config says so when it is loaded -----------------------------------------------------

def test_loading_notes_a_check_only_scenario_and_an_unread_move_with_their_lines():
    loaded = parse_config(CONFIG, "drills.yaml")
    notes = {n.path: (n.line, n.message) for n in loaded.notes}
    assert set(notes) == {"services[0].runbooks.drill.look", "services[0].runbooks.drill.strict",
                          "services[0].runbooks.drill.unread[0]", "services[0].runbooks.drill.unread[1]"}
    line, message = notes["services[0].runbooks.drill.look"]
    assert line == CONFIG.splitlines().index("        look:") + 1  # the scenario's own line
    assert "drill scenario 'look' has only check steps: its runs are recorded as checks, never pass as a " \
           "drill and do not refresh drill_max_age" in message
    assert "traffic.shift to target is not read back by any verify (traffic_in: target" in \
        notes["services[0].runbooks.drill.unread[0]"][1]
    assert parse_config(CONFIG.split("        look:")[0] + "approvals: {approvers: [UBOB]}\n").notes == ()


def test_check_config_prints_the_notes_and_still_passes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    path = tmp_path / "drills.yaml"
    path.write_text(CONFIG)
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"  note: {path}:" in out and "services[0].runbooks.drill.look: drill scenario 'look' has only " \
                                         "check steps" in out
    assert "services[0].runbooks.drill.unread[0]: traffic.shift to target is not read back" in out
    assert "all sources answered" in out


# -- end to end: what passes, what is a check, what readiness makes of it ---------------------

@pytest.fixture
def drbot(tmp_path):
    now = [T0]
    sv = build_services(parse_config(CONFIG, "drills.yaml"), db_url=f"sqlite:///{tmp_path}/drbot.db",
                        clock=lambda: now[0], inline_runs=True)
    try:
        yield sv, now
    finally:
        sv.outbox.drain(timeout=10)
        sv.engine.dispose()


def drill(sv, scenario: str):
    reply = dispatch(sv, ALICE, f"drill orders {scenario} game day")
    assert reply.template == "request_created", sv.renderer.text(reply)
    rid = reply.context["req"].id
    assert click(sv, BOB, "cr_approve", str(rid)) is None
    delivered(sv)
    (run,) = runs_of(sv, rid)
    reports = [r for kind, _, r in sv.messenger.log if kind == "post" and r.template == "drill_report"
               and r.context["req"].id == rid]
    assert len(reports) == 1
    blocks, fallback = sv.renderer.blocks(reports[0])
    return run, fallback, json.dumps(blocks, ensure_ascii=False), sv.renderer.text(reports[0])


def drill_finding(sv):
    (a,) = sv.status.report("orders").assessments
    finding = next(f for f in a.findings if f.code.startswith("drill") or f.code == "no_drill")
    return a.verdict, finding.code, sv.renderer.reason(finding)


def test_a_check_only_drill_does_not_pass_and_does_not_refresh_drill_max_age(drbot):
    sv, now = drbot
    run, fallback, blocks, text = drill(sv, "roundtrip")
    assert (run.state, run.proof, run.passed, run.sandbox) == (RequestState.SUCCEEDED, "moved", True, True)
    assert fallback == "Drill report: orders roundtrip PASSED (SANDBOX)"
    assert "Drill report · orders · PASSED · SANDBOX" in blocks and ":test_tube: *SANDBOX*" in blocks
    assert drill_finding(sv) == (Verdict.READY, "drill_ok",
                                 "last drill passed 0s ago (RTO 0s) (SANDBOX: simulated estate)")

    now[0] = T0 + 8 * DAY  # the passed drill is now too old ...
    assert drill_finding(sv)[:2] == (Verdict.AT_RISK, "drill_overdue")
    run, fallback, blocks, text = drill(sv, "look")  # ... and a check does not make up for it
    assert (run.state, run.proof, run.passed, run.sandbox) == (RequestState.SUCCEEDED, "check", None, True)
    assert fallback == "Drill report: orders look CHECK PASSED, NOT A DRILL (SANDBOX)"
    assert "Recorded as a check, not a drill: only check steps ran" in blocks
    assert "does not refresh the drill due every 7d" in text and "CHECK PASSED, NOT A DRILL · SANDBOX" in text
    verdict, code, reason = drill_finding(sv)
    assert (verdict, code) == (Verdict.AT_RISK, "drill_overdue") and "the last drill was 8d ago" in reason
    status = sv.renderer.text(dispatch(sv, ALICE, "status orders"))
    assert "last drill: passed 8d ago, RTO 0s (SANDBOX)" in status  # the round trip, not the check
    history = sv.renderer.text(dispatch(sv, ALICE, "drills history orders"))
    assert "check only, not a drill SANDBOX" in history and history.count("SANDBOX") == 2

    run, fallback, _, _ = drill(sv, "roundtrip")
    assert run.passed is True and drill_finding(sv)[:2] == (Verdict.READY, "drill_ok")


def test_a_drill_that_moved_nothing_it_read_back_is_not_proven_and_puts_readiness_at_risk(drbot):
    sv, now = drbot
    run, fallback, blocks, text = drill(sv, "unread")
    assert (run.state, run.proof, run.passed) == (RequestState.SUCCEEDED, "not_moved", False)
    assert fallback == "Drill report: orders unread NOT PROVEN: NOTHING MOVED (SANDBOX)"
    assert "no step moved traffic or the writer and had a verify read it back" in blocks
    verdict, code, reason = drill_finding(sv)
    assert (verdict, code) == (Verdict.AT_RISK, "drill_unproven")
    assert reason == ("the last drill, 0s ago, moved neither traffic nor the writer (or no verify read the move "
                      "back): it proves nothing (SANDBOX: simulated estate)")
    assert "last drill: MOVED NOTHING 0s ago" in sv.renderer.text(dispatch(sv, ALICE, "status orders"))
    assert "unproven " in sv.renderer.text(dispatch(sv, ALICE, "drills history orders"))


def test_a_failed_check_is_still_a_check_and_no_failed_drill(drbot):
    sv, now = drbot
    run, fallback, blocks, _ = drill(sv, "strict")
    assert (run.state, run.proof, run.passed) == (RequestState.FAILED, "check", None)
    assert fallback == "Drill report: orders strict CHECK FAILED, NOT A DRILL (SANDBOX)"
    assert "lag 20.0s, want below 1s" in blocks
    assert drill_finding(sv)[:2] == (Verdict.AT_RISK, "no_drill")  # a check neither refreshes nor fails a drill


# -- what a run records when it starts ----------------------------------------------------------

REAL = """
regions: [us-east-1, us-west-2]
sources:
  dns:
    kind: route53_failover
    endpoint_url: http://127.0.0.1:9
    hosted_zone_id: Z1
    record_name: api.example.com
    records: {us-east-1: east, us-west-2: west}
  probe-east: {kind: http_probe, url: "http://127.0.0.1:9/east"}
  probe-west: {kind: http_probe, url: "http://127.0.0.1:9/west"}
  sim: {kind: sandbox}
services:
  - name: orders
    tier: high
    rpo: 1m
    rto: 10m
    drill_max_age: 14d
    active: us-east-1
    standby: us-west-2
    health: {us-east-1: probe-east, us-west-2: probe-west}
    traffic: {source: dns}
approvals: {approvers: [UBOB]}
"""


def test_a_run_is_sandbox_only_if_a_source_it_uses_is_and_records_its_targets(tmp_path):
    sv = build_services(parse_config(REAL, "real.yaml"), db_url=f"sqlite:///{tmp_path}/r.db")
    try:
        real = steps({"action": "traffic.shift", "verify": {"traffic_in": "target"}})
        facts = at_start(sv, "orders", real)
        assert facts["sandbox"] is False
        assert json.loads(facts["targets"]) == {"tier": "high", "rto_s": 600.0, "rpo_s": 60.0,
                                                "drill_max_age_s": 14 * 86400.0}
        one_simulated = steps({"action": "traffic.shift", "source": "sim"})
        assert at_start(sv, "orders", one_simulated)["sandbox"] is True
        assert at_start(sv, "orders", steps(CHECK))["sandbox"] is False
    finally:
        sv.engine.dispose()
