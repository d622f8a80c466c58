"""``drbot evidence``: the audit pack, checked against runs recorded for real.

The runs are recorded once per module through the same path people use: commands through
``commands.router.dispatch``, buttons through ``commands.actions.click``, the sandbox
backend, the real store (SQLite) and runs executed inline. Then ``bot.cli.main`` exports
them, and every file is compared with the rows in the database.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path

import jinja2
import pytest
from sqlmodel import select

from bot.actor import Actor
from transports.cli import main
from bot.render import BUNDLED_TEMPLATES
from bot.store import make_engine, session_scope
from bot.store.models import Approval, ChangeRequest, RequestState, Run, RunStep, TimelineEvent
from bot.wiring import build_services
from commands.router import click
from commands.router import dispatch
from tests.helpers import ALICE, BOB, CAROL

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
    tier: critical
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
      drill:
        standby-check:
          - name: Check the standby
            action: check
            verify: {healthy: target, lag_below: 5m, within: 5s, interval: 100ms}
  - name: payments
    tier: high
    rpo: 5m
    rto: 30m
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
approvals:
  required_approvals: 1
  approvers: [UBOB, UCAROL]
  expires: 30m
"""

PACK_FILES = {"index.json", "index.md", "manifest.json"}


@dataclass(frozen=True)
class Recorded:
    config: str
    db_url: str
    failover: int
    drill: int
    failed: int
    rollback: int
    since: str


def _ask(sv, actor: Actor, text: str) -> int:
    reply = dispatch(sv, actor, text)
    assert reply.template == "request_created", reply
    return reply.context["req"].id


def _state(sv, rid: int) -> RequestState:
    with session_scope(sv.engine) as s:
        return s.get(ChangeRequest, rid).state


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Recorded:
    base = tmp_path_factory.mktemp("recorded")
    cfg = base / "drbot.yaml"
    cfg.write_text(CONFIG)
    db_url = f"sqlite:///{base}/evidence.db"
    since = (datetime.now(timezone.utc) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sv = build_services(str(cfg), db_url=db_url, inline_runs=True)
    try:
        failover = _ask(sv, ALICE, "failover orders 5xx at 40% | <!here> in us-east-1")
        assert click(sv, BOB, "cr_approve", str(failover)) is None
        assert _state(sv, failover) is RequestState.SUCCEEDED

        drill = _ask(sv, ALICE, "drill orders standby-check quarterly game day")
        assert click(sv, CAROL, "cr_approve", str(drill)) is None
        assert _state(sv, drill) is RequestState.SUCCEEDED

        edge = sv.backends["edge"].estate  # step 2 of payments fails at the edge
        edge.seed("payments", "us-east-1")
        edge.inject("payments", "action_fails")
        failed = _ask(sv, ALICE, "failover payments card declines in us-east-1")
        assert click(sv, BOB, "cr_approve", str(failed)) is None
        assert _state(sv, failed) is RequestState.FAILED
        assert click(sv, ALICE, "run_rollback", str(failed)) is None
        with session_scope(sv.engine) as s:
            rollback = s.exec(select(ChangeRequest).where(ChangeRequest.parent_id == failed)).one().id
        assert click(sv, CAROL, "cr_approve", str(rollback)) is None
        assert _state(sv, rollback) is RequestState.ROLLED_BACK
        assert _state(sv, failed) is RequestState.ROLLED_BACK
    finally:
        sv.engine.dispose()
    return Recorded(str(cfg), db_url, failover, drill, failed, rollback, since)


def export(monkeypatch, rec: Recorded, *args: str, config: str | None = None) -> int:
    monkeypatch.setenv("DATABASE_URL", rec.db_url)
    return main(["evidence", "--config", config or rec.config, *args])


def files(out: Path) -> set[str]:
    return {p.name for p in out.iterdir()}


def load(out: Path, name: str):
    return json.loads((out / name).read_text())


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(timezone.utc).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def rows(rec: Recorded, rid: int) -> dict:
    """What the database holds for the run of request ``rid``."""
    engine = make_engine(rec.db_url)
    try:
        with session_scope(engine) as s:
            req = s.get(ChangeRequest, rid)
            run = s.exec(select(Run).where(Run.request_id == rid)).one()
            kids = [c.id for c in s.exec(select(ChangeRequest).where(ChangeRequest.parent_id == rid))]
            return {
                "req": req, "run": run,
                "approvals": list(s.exec(select(Approval).where(Approval.request_id == rid).order_by(Approval.id))),
                "steps": list(s.exec(select(RunStep).where(RunStep.run_id == run.id).order_by(RunStep.id))),
                "timeline": list(s.exec(select(TimelineEvent)
                                        .where(TimelineEvent.request_id.in_([rid] + kids))  # type: ignore[union-attr]
                                        .order_by(TimelineEvent.at, TimelineEvent.id))),
            }
    finally:
        engine.dispose()


def stems(rec: Recorded) -> dict[int, str]:
    return {rec.failover: f"run-{rec.failover}-failover-orders", rec.drill: f"run-{rec.drill}-drill-orders",
            rec.failed: f"run-{rec.failed}-failover-payments",
            rec.rollback: f"run-{rec.rollback}-rollback-payments"}


@pytest.fixture
def pack(recorded, monkeypatch, tmp_path, capsys) -> Path:
    out = tmp_path / "pack"
    assert export(monkeypatch, recorded, "--since", recorded.since, "--out", str(out)) == 0
    assert capsys.readouterr().out.strip() == str(out)
    return out


# -- the files and their records ------------------------------------------------------------

def test_the_pack_holds_exactly_one_json_and_one_markdown_per_run_plus_index_and_manifest(recorded, pack):
    names = {f"{stem}.{ext}" for stem in stems(recorded).values() for ext in ("json", "md")}
    assert files(pack) == names | PACK_FILES
    assert not [p for p in pack.parent.iterdir() if p.name.startswith(".pack")], "no temporary directory left"


def test_each_run_record_equals_the_rows_in_the_database(recorded, pack):
    approvers = {recorded.failover: ["UBOB"], recorded.drill: ["UCAROL"], recorded.failed: ["UBOB"],
                 recorded.rollback: ["UCAROL"]}
    for rid, stem in stems(recorded).items():
        got, db = load(pack, f"{stem}.json"), rows(recorded, rid)
        req, run = db["req"], db["run"]
        assert got["request"] == {
            "id": rid, "kind": req.kind.value, "service": req.service, "from_region": req.from_region,
            "to_region": req.to_region, "scenario": req.scenario, "reason": req.reason,
            "requester": "UALICE", "requester_name": "alice", "state": req.state.value,
            "state_reason": req.state_reason, "required_approvals": 1, "break_glass": False, "justification": "",
            "parent_id": req.parent_id, "created_at": iso(req.created_at), "expires_at": iso(req.expires_at),
            "decided_at": iso(req.decided_at), "closed_at": iso(req.closed_at)}
        assert [a["approver"] for a in got["approvals"]] == [a.approver for a in db["approvals"]] == approvers[rid]
        assert [(a["decision"], a["at"]) for a in got["approvals"]] == [("approve", iso(a.at)) for a in db["approvals"]]
        assert got["run"] == {
            "id": run.id, "state": run.state.value, "approved_at": iso(run.approved_at),
            "started_at": iso(run.started_at), "ended_at": iso(run.ended_at), "verified_at": iso(run.verified_at),
            "measured_rto_s": run.measured_rto_s, "measured_rpo_s": run.measured_rpo_s, "passed": run.passed,
            "error": run.error, "owner": run.owner}
        assert [(s["position"], s["attempt"], s["name"], s["action"], s["rollback"], s["state"], s["error"])
                for s in got["steps"]] == [(s.position, s.attempt, s.name, s.action, s.rollback, s.state.value,
                                            s.error) for s in db["steps"]]
        assert [s["output"] for s in got["steps"]] == [json.loads(s.output) for s in db["steps"]]
        assert [s["duration_s"] for s in got["steps"]] == [(s.ended_at - s.started_at).total_seconds()
                                                          for s in db["steps"]]
        assert [(e["kind"], e["at"], e["actor"], e["data"]) for e in got["timeline"]] == \
            [(e.kind, iso(e.at), e.actor, json.loads(e.data)) for e in db["timeline"]]
        for at in [got["run"]["started_at"]] + [e["at"] for e in got["timeline"]]:
            assert at.endswith("Z") and datetime.fromisoformat(at).utcoffset() == timedelta(0)

    ok = load(pack, f"{stems(recorded)[recorded.failover]}.json")
    assert ok["run"]["state"] == "succeeded" and ok["run"]["passed"] is True
    assert ok["run"]["measured_rpo_s"] == 20.0 and 0 < ok["run"]["measured_rto_s"] < 900
    assert ok["targets"] == {"tier": "critical", "rto_s": 900.0, "rpo_s": 300.0, "rto_ok": True, "rpo_ok": True}
    assert [(s["name"], s["state"]) for s in ok["steps"]] == [("Switch the writer", "succeeded"),
                                                              ("Shift traffic", "succeeded")]
    assert [e["kind"] for e in ok["timeline"]] == ["request.failover", "request.approved", "run.started",
                                                   "step.succeeded", "step.succeeded", "run.succeeded"]

    drill = load(pack, f"{stems(recorded)[recorded.drill]}.json")
    assert (drill["request"]["scenario"], drill["request"]["reason"]) == ("standby-check", "quarterly game day")
    assert [(s["action"], s["output"]["verify"]) for s in drill["steps"]] == [("check", {"verified": ["healthy", "lag"]})]

    failed = load(pack, f"{stems(recorded)[recorded.failed]}.json")
    assert (failed["request"]["state"], failed["run"]["state"]) == ("rolled_back", "failed")
    assert failed["run"]["measured_rto_s"] is None and failed["run"]["passed"] is False
    assert failed["targets"] == {"tier": "high", "rto_s": 1800.0, "rpo_s": 300.0, "rto_ok": None, "rpo_ok": None}
    assert [(s["position"], s["attempt"], s["state"]) for s in failed["steps"]] == [(0, 1, "succeeded"),
                                                                                  (1, 1, "failed")]
    assert "SANDBOX: injected action failure for payments" in failed["steps"][1]["error"]
    # the rollback's events are on the failed request's timeline, in the order they happened
    assert [(e["request_id"] == recorded.failed, e["kind"]) for e in failed["timeline"]] == [
        (True, "request.failover"), (True, "request.approved"), (True, "run.started"), (True, "step.succeeded"),
        (True, "step.failed"), (True, "run.failed"), (False, "request.rollback"), (False, "request.approved"),
        (False, "run.started"), (False, "step.succeeded"), (False, "step.succeeded"),
        (True, "request.rolled_back"), (False, "run.rolled_back")]

    rb = load(pack, f"{stems(recorded)[recorded.rollback]}.json")
    assert rb["request"]["parent_id"] == recorded.failed and rb["run"]["state"] == "rolled_back"
    assert [(s["position"], s["rollback"], s["name"]) for s in rb["steps"]] == [
        (1, True, "Undo: Shift traffic at the edge"), (0, True, "Undo: Switch the writer")]


def test_json_is_sorted_indented_and_the_same_on_a_second_export(recorded, pack, monkeypatch, tmp_path):
    again = tmp_path / "again"
    assert export(monkeypatch, recorded, "--since", recorded.since, "--out", str(again)) == 0
    for stem in stems(recorded).values():
        text = (pack / f"{stem}.json").read_text()
        assert text == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
        assert text == (again / f"{stem}.json").read_text()
        assert (pack / f"{stem}.md").read_text() == (again / f"{stem}.md").read_text()


# -- readable reports ---------------------------------------------------------------------------

def test_markdown_names_every_step_and_the_verdict_per_target(recorded, pack):
    for rid, stem in stems(recorded).items():
        md = (pack / f"{stem}.md").read_text()
        assert f"request #{rid}" in md
        for step in load(pack, f"{stem}.json")["steps"]:
            assert f"| {step['position'] + 1} | {step['name']}" in md
    ok = (pack / f"{stems(recorded)[recorded.failover]}.md").read_text()
    assert "# Failover of orders" in ok and "approved by bob (UBOB)" in ok
    assert "| Reason | 5xx at 40% \\| \\<!here> in us-east-1 |" in ok  # no raw HTML, no broken table
    assert f"request #{recorded.failover} failover by UALICE: 5xx at 40% | \\<!here> in us-east-1" in ok
    assert "| RTO | 15m |" in ok and "| RPO | 5m | 20s | PASS |" in ok
    assert ok.count("| PASS |") == 2
    assert "step 1 succeeded" in ok and "run succeeded: RTO" in ok  # the timeline, one line per event
    failed = (pack / f"{stems(recorded)[recorded.failed]}.md").read_text()
    assert "| RTO | 30m | - | not measured |" in failed and "| RPO | 5m | - | not measured |" in failed
    assert "SANDBOX: injected action failure for payments" in failed
    assert f"request #{recorded.rollback} rollback by UALICE" in failed


def test_index_has_one_row_per_run_and_the_counts(recorded, pack):
    idx = load(pack, "index.json")
    assert [r["request_id"] for r in idx["runs"]] == [recorded.failover, recorded.drill, recorded.failed,
                                                     recorded.rollback]
    first = idx["runs"][0]
    db = rows(recorded, recorded.failover)["run"]
    assert first["date"] == db.started_at.strftime("%Y-%m-%d") and first["approvers"] == ["UBOB"]
    assert first["rto"] == {"measured_s": db.measured_rto_s, "target_s": 900.0, "ok": True}
    assert first["rpo"] == {"measured_s": 20.0, "target_s": 300.0, "ok": True}
    assert idx["summary"] == {"runs": 4, "passed": 3, "not_passed": 1,
                              "by_kind": {"failover": 2, "drill": 1, "rollback": 1},
                              "by_state": {"succeeded": 2, "failed": 1, "rolled_back": 1}}
    md = (pack / "index.md").read_text()
    assert "4 runs: 3 passed, 1 did not pass." in md
    for stem in stems(recorded).values():
        assert f"[{stem}.md]({stem}.md)" in md
    assert "| orders | failover | succeeded |" in md and "| bob |" in md and "| carol |" in md


def test_manifest_hashes_every_file_and_names_the_parameters(recorded, pack):
    manifest = load(pack, "manifest.json")
    assert set(manifest["files"]) == files(pack) - {"manifest.json"}
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((pack / name).read_bytes()).hexdigest() == digest
    assert manifest["drbot_version"] == metadata.version("drbot")
    assert manifest["parameters"] == {"since": recorded.since.replace("Z", ".000000Z"), "until": None,
                                      "service": None, "out": str(pack), "force": False, "config": recorded.config}
    generated = datetime.fromisoformat(manifest["generated_at"])
    assert abs(datetime.now(timezone.utc) - generated) < timedelta(minutes=5)


# -- the window and the filters -----------------------------------------------------------------

def test_since_in_the_future_writes_an_index_with_zero_runs(recorded, monkeypatch, tmp_path):
    out = tmp_path / "empty"
    assert export(monkeypatch, recorded, "--since", "2999-01-01", "--out", str(out)) == 0
    assert files(out) == PACK_FILES
    idx = load(out, "index.json")
    assert idx["runs"] == [] and idx["summary"]["runs"] == 0
    assert "No runs in this window." in (out / "index.md").read_text()
    assert set(load(out, "manifest.json")["files"]) == {"index.json", "index.md"}


def test_service_and_until_narrow_the_window(recorded, monkeypatch, tmp_path):
    out = tmp_path / "payments"
    assert export(monkeypatch, recorded, "--since", recorded.since, "--service", "payments", "--out", str(out)) == 0
    assert [r["request_id"] for r in load(out, "index.json")["runs"]] == [recorded.failed, recorded.rollback]
    drill_started = rows(recorded, recorded.drill)["run"].started_at
    out = tmp_path / "before-drill"
    assert export(monkeypatch, recorded, "--since", recorded.since, "--until", iso(drill_started),
                  "--out", str(out)) == 0
    assert [r["request_id"] for r in load(out, "index.json")["runs"]] == [recorded.failover]


def test_default_window_and_directory(recorded, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert export(monkeypatch, recorded) == 0
    (out,) = [p for p in tmp_path.iterdir() if p.name.startswith("evidence-")]
    assert out.name == f"evidence-{datetime.now(timezone.utc):%Y%m%d}"
    assert len(load(out, "index.json")["runs"]) == 4  # all within the last 90 days


def test_targets_are_judged_as_configured_at_export_time(recorded, monkeypatch, tmp_path):
    tighter = tmp_path / "tighter.yaml"
    tighter.write_text(CONFIG.replace("    rpo: 5m\n    rto: 15m\n", "    rpo: 10s\n    rto: 15m\n", 1))
    out = tmp_path / "tighter"
    assert export(monkeypatch, recorded, "--since", recorded.since, "--out", str(out), config=str(tighter)) == 0
    rec = load(out, f"{stems(recorded)[recorded.failover]}.json")
    assert rec["run"]["passed"] is True  # as judged when it ran
    assert (rec["targets"]["rpo_s"], rec["targets"]["rpo_ok"], rec["targets"]["rto_ok"]) == (10.0, False, True)
    assert "| RPO | 10s | 20s | FAIL |" in (out / f"{stems(recorded)[recorded.failover]}.md").read_text()


# -- refusals -----------------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--since", "--until"])
def test_an_unparseable_date_exits_2_naming_the_flag_and_an_example(recorded, monkeypatch, tmp_path, capsys, flag):
    out = tmp_path / "bad"
    assert export(monkeypatch, recorded, flag, "last tuesday", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert f"{flag} 'last tuesday' is not a date" in err and f"e.g. {flag} 2024-05-01" in err
    assert not out.exists()


def test_until_before_since_and_an_unknown_service_exit_2(recorded, monkeypatch, tmp_path, capsys):
    out = tmp_path / "bad"
    # a date as --until includes its day: since and until 2024-05-01 is that whole day, not a bad window
    assert export(monkeypatch, recorded, "--since", "2024-05-01", "--until", "2024-05-01", "--out", str(out)) == 0
    assert load(out, "index.json")["parameters"]["until"] == "2024-05-02T00:00:00.000000Z"
    capsys.readouterr()
    assert export(monkeypatch, recorded, "--since", "2024-05-03", "--until", "2024-05-01", "--out",
                  str(tmp_path / "x")) == 2
    assert "--until 2024-05-01 is not after --since 2024-05-03" in capsys.readouterr().err
    assert export(monkeypatch, recorded, "--service", "ordres", "--out", str(tmp_path / "y")) == 2
    assert "--service 'ordres'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_non_empty_directory_is_refused_without_force_and_replaced_with_it(recorded, monkeypatch, tmp_path,
                                                                             capsys):
    out = tmp_path / "pack"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert export(monkeypatch, recorded, "--since", recorded.since, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert f"--out {out} is not empty" in err and "--force" in err
    assert files(out) == {"notes.txt"}, "nothing was written"
    assert export(monkeypatch, recorded, "--since", recorded.since, "--out", str(out), "--force") == 0
    assert "notes.txt" not in files(out) and PACK_FILES <= files(out)
    assert set(load(out, "manifest.json")["files"]) == files(out) - {"manifest.json"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pack"], "no temporary or old directory left"

    empty = tmp_path / "empty"
    empty.mkdir()
    assert export(monkeypatch, recorded, "--since", recorded.since, "--out", str(empty)) == 0
    assert PACK_FILES <= files(empty)


def test_a_failure_while_writing_leaves_nothing_behind(recorded, monkeypatch, tmp_path):
    broken = tmp_path / "templates"
    shutil.copytree(BUNDLED_TEMPLATES, broken)
    (broken / "text" / "evidence_index.txt.j2").write_text("{{ no_such_value }}\n")
    monkeypatch.setenv("DRBOT_TEMPLATES", str(broken))
    out = tmp_path / "pack"
    with pytest.raises(jinja2.UndefinedError):
        export(monkeypatch, recorded, "--since", recorded.since, "--out", str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["templates"]
