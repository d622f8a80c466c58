"""``drbot evidence``: the audit pack, checked against requests recorded for real, and
``drbot evidence verify``, which finds any byte changed after export.

The requests are recorded once per module through the same path people use: commands
through ``commands.router.dispatch``, buttons through ``commands.router.click``, the
sandbox backend, the real store (SQLite) and runs executed inline. They end every way a
request can: succeeded, failed and rolled back, a drill that moved traffic, a check-only
drill, denied, expired, cancelled. Then ``transports.cli.main`` exports them, and every
file is compared with the rows in the database.
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

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bot.actor import Actor
from bot.changes import expire_due
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
      drill:
        roundtrip:
          - name: Shift traffic to the standby
            action: traffic.shift
            verify: {traffic_in: target, within: 5s, interval: 100ms}
          - name: Shift traffic back
            action: traffic.shift
            to: source
            verify: {traffic_in: source, within: 5s, interval: 100ms}
approvals:
  required_approvals: 1
  approvers: [UBOB, UCAROL]
  expires: 30m
"""

PACK_FILES = {"index.json", "index.md", "manifest.json", "manifest.sig"}
SECRET = "4f1c0a9e7b2d8c3f6a5e0b1d9c8f7e6a"  # an HMAC-SHA256 key, as DRBOT_EVIDENCE_KEY


@dataclass(frozen=True)
class Recorded:
    config: str
    db_url: str
    failover: int
    drill: int
    failed: int
    rollback: int
    moved: int
    denied: int
    expired: int
    cancelled: int
    since: str

    @property
    def ran(self) -> list[int]:
        return [self.failover, self.drill, self.failed, self.rollback, self.moved]

    @property
    def never_ran(self) -> list[int]:
        return [self.denied, self.expired, self.cancelled]


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
    later = build_services(str(cfg), db_url=db_url, inline_runs=True,
                           clock=lambda: datetime.now(timezone.utc) + timedelta(minutes=31))
    try:
        failover = _ask(sv, ALICE, "failover orders 5xx at 40% | <!here> in us-east-1")
        assert click(sv, BOB, "cr_approve", str(failover)) is None
        assert _state(sv, failover) is RequestState.SUCCEEDED

        drill = _ask(sv, ALICE, "drill orders standby-check quarterly game day")  # check steps only
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

        moved = _ask(sv, ALICE, "drill payments roundtrip game day")  # moves traffic and back
        assert click(sv, BOB, "cr_approve", str(moved)) is None
        assert _state(sv, moved) is RequestState.SUCCEEDED

        denied = _ask(sv, ALICE, "failover payments latency in us-east-1")
        assert click(sv, BOB, "cr_deny", str(denied)) is None
        assert _state(sv, denied) is RequestState.DENIED

        expired = _ask(sv, ALICE, "failover payments errors in us-east-1")
        assert expire_due(later) == [expired]  # nobody approved it within 30m

        cancelled = _ask(sv, ALICE, "drill orders standby-check asked by mistake")
        assert dispatch(sv, ALICE, f"cancel {cancelled}").template != "refused"
        assert _state(sv, cancelled) is RequestState.CANCELLED
    finally:
        sv.engine.dispose()
        later.engine.dispose()
    return Recorded(str(cfg), db_url, failover, drill, failed, rollback, moved, denied, expired, cancelled, since)


def export(monkeypatch, rec: Recorded, *args: str, config: str | None = None, key: str | None = SECRET) -> int:
    monkeypatch.setenv("DATABASE_URL", rec.db_url)
    if key is None:
        monkeypatch.delenv("DRBOT_EVIDENCE_KEY", raising=False)
    else:
        monkeypatch.setenv("DRBOT_EVIDENCE_KEY", key)
    return main(["evidence", "--config", config or rec.config, *args])


def verify(monkeypatch, out: Path, key: str | None = SECRET) -> int:
    if key is None:
        monkeypatch.delenv("DRBOT_EVIDENCE_KEY", raising=False)
    else:
        monkeypatch.setenv("DRBOT_EVIDENCE_KEY", key)
    monkeypatch.setenv("DRBOT_CONFIG", "/nonexistent/drbot.yaml")  # an auditor has the pack and the key only
    return main(["evidence", "verify", str(out)])


def files(out: Path) -> set[str]:
    return {p.name for p in out.iterdir()}


def load(out: Path, name: str):
    return json.loads((out / name).read_text())


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(timezone.utc).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def rows(rec: Recorded, rid: int) -> dict:
    """What the database holds for request ``rid`` and its run."""
    engine = make_engine(rec.db_url)
    try:
        with session_scope(engine) as s:
            req = s.get(ChangeRequest, rid)
            run = s.exec(select(Run).where(Run.request_id == rid)).first()
            kids = [c.id for c in s.exec(select(ChangeRequest).where(ChangeRequest.parent_id == rid))]
            return {
                "req": req, "run": run,
                "approvals": list(s.exec(select(Approval).where(Approval.request_id == rid).order_by(Approval.id))),
                "steps": list(s.exec(select(RunStep).where(RunStep.run_id == run.id).order_by(RunStep.id)))
                if run else [],
                "timeline": list(s.exec(select(TimelineEvent)
                                        .where(TimelineEvent.request_id.in_([rid] + kids))  # type: ignore[union-attr]
                                        .order_by(TimelineEvent.at, TimelineEvent.id))),
            }
    finally:
        engine.dispose()


def stems(rec: Recorded) -> dict[int, str]:
    return {rec.failover: f"request-{rec.failover}-failover-orders", rec.drill: f"request-{rec.drill}-drill-orders",
            rec.failed: f"request-{rec.failed}-failover-payments",
            rec.rollback: f"request-{rec.rollback}-rollback-payments",
            rec.moved: f"request-{rec.moved}-drill-payments",
            rec.denied: f"request-{rec.denied}-failover-payments",
            rec.expired: f"request-{rec.expired}-failover-payments",
            rec.cancelled: f"request-{rec.cancelled}-drill-orders"}


@pytest.fixture
def pack(recorded, monkeypatch, tmp_path, capsys) -> Path:
    out = tmp_path / "pack"
    assert export(monkeypatch, recorded, "--since", recorded.since, "--out", str(out)) == 0
    assert capsys.readouterr().out.strip() == str(out)
    return out


# -- the files and their records ------------------------------------------------------------

def test_the_pack_holds_one_json_and_one_markdown_per_request_plus_index_manifest_and_signature(recorded, pack):
    names = {f"{stem}.{ext}" for stem in stems(recorded).values() for ext in ("json", "md")}
    assert files(pack) == names | PACK_FILES
    assert not [p for p in pack.parent.iterdir() if p.name.startswith(".pack")], "no temporary directory left"


def test_each_record_equals_the_rows_in_the_database(recorded, pack):
    approvers = {recorded.failover: [("UBOB", "approve")], recorded.drill: [("UCAROL", "approve")],
                 recorded.failed: [("UBOB", "approve")], recorded.rollback: [("UCAROL", "approve")],
                 recorded.moved: [("UBOB", "approve")], recorded.denied: [("UBOB", "deny")],
                 recorded.expired: [], recorded.cancelled: []}
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
        assert got["preflight"] == json.loads(req.preflight), "the pre-flight values as they were read"
        assert [(a["approver"], a["decision"]) for a in got["approvals"]] == approvers[rid] == \
            [(a.approver, "approve" if a.approve else "deny") for a in db["approvals"]]
        assert [a["at"] for a in got["approvals"]] == [iso(a.at) for a in db["approvals"]]
        assert (run is None) == (rid in recorded.never_ran)
        assert got["run"] == (None if run is None else {
            "id": run.id, "state": run.state.value, "approved_at": iso(run.approved_at),
            "started_at": iso(run.started_at), "ended_at": iso(run.ended_at), "verified_at": iso(run.verified_at),
            "measured_rto_s": run.measured_rto_s, "measured_rpo_s": run.measured_rpo_s, "passed": run.passed,
            "proof": run.proof or None, "sandbox": True, "error": run.error, "owner": run.owner})
        assert got["sandbox"] is True  # every source of this config is a sandbox
        assert [(s["position"], s["attempt"], s["name"], s["action"], s["rollback"], s["state"], s["error"])
                for s in got["steps"]] == [(s.position, s.attempt, s.name, s.action, s.rollback, s.state.value,
                                            s.error) for s in db["steps"]]
        assert [s["output"] for s in got["steps"]] == [json.loads(s.output) for s in db["steps"]]
        assert [s["duration_s"] for s in got["steps"]] == [(s.ended_at - s.started_at).total_seconds()
                                                          for s in db["steps"]]
        assert [(e["kind"], e["at"], e["actor"], e["data"]) for e in got["timeline"]] == \
            [(e.kind, iso(e.at), e.actor, json.loads(e.data)) for e in db["timeline"]]
        for at in [got["request"]["created_at"]] + [e["at"] for e in got["timeline"]]:
            assert at.endswith("Z") and datetime.fromisoformat(at).utcoffset() == timedelta(0)

    ok = load(pack, f"{stems(recorded)[recorded.failover]}.json")
    db = rows(recorded, recorded.failover)["run"]
    assert ok["run"]["state"] == "succeeded" and ok["run"]["passed"] is True and ok["run"]["proof"] is None
    assert 0 <= ok["run"]["measured_rto_s"] < 900
    assert ok["targets"] == {"recorded": True, "tier": "critical", "rto_s": 900.0, "rpo_s": 300.0,
                             "rto_ok": True,
                             "rpo_ok": None if db.measured_rpo_s is None else db.measured_rpo_s <= 300}
    assert [(s["name"], s["state"]) for s in ok["steps"]] == [("Switch the writer", "succeeded"),
                                                              ("Shift traffic", "succeeded")]
    assert [e["kind"] for e in ok["timeline"]] == ["request.failover", "request.approved", "run.started",
                                                   "step.succeeded", "step.succeeded", "run.succeeded"]

    failed = load(pack, f"{stems(recorded)[recorded.failed]}.json")
    assert (failed["request"]["state"], failed["run"]["state"]) == ("rolled_back", "failed")
    assert failed["run"]["measured_rto_s"] is None and failed["run"]["passed"] is False
    assert failed["targets"] == {"recorded": True, "tier": "high", "rto_s": 1800.0, "rpo_s": 300.0,
                                 "rto_ok": None, "rpo_ok": None}
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


def test_denied_expired_and_succeeded_requests_are_all_there_with_their_pre_flight_values(recorded, pack):
    """The issue's case: a period with a denied, an expired and a succeeded request."""
    denied = load(pack, f"{stems(recorded)[recorded.denied]}.json")
    expired = load(pack, f"{stems(recorded)[recorded.expired]}.json")
    ok = load(pack, f"{stems(recorded)[recorded.failover]}.json")
    assert [r["request"]["state"] for r in (denied, expired, ok)] == ["denied", "expired", "succeeded"]
    for r in (denied, expired, ok):
        pre = r["preflight"]
        lag = next(c for c in pre["checks"] if c["code"] == "lag")
        assert lag["ok"] is True and lag["params"]["lag"] == 20.0 and lag["params"]["rpo"] == 300.0
        assert pre["lag_seconds"] == 20.0 and pre["at"] <= r["request"]["created_at"].replace("Z", "+00:00")
        assert {c["code"] for c in pre["checks"]} >= {"target_health", "lag", "active_recorded", "no_other_run"}
    # who decided, and when
    (no,) = denied["approvals"]
    assert (no["approver"], no["approver_name"], no["decision"]) == ("UBOB", "bob", "deny")
    assert no["at"] == denied["request"]["decided_at"] or no["at"] <= denied["request"]["closed_at"]
    assert denied["run"] is None and denied["steps"] == [] and denied["targets"]["recorded"] is False
    assert [e["kind"] for e in denied["timeline"]] == ["request.failover", "request.denied"]
    assert expired["approvals"] == [] and expired["run"] is None
    assert expired["request"]["state_reason"] == "expired before enough approvals"
    assert [e["kind"] for e in expired["timeline"]] == ["request.failover", "request.expired"]
    cancelled = load(pack, f"{stems(recorded)[recorded.cancelled]}.json")
    assert cancelled["request"]["state"] == "cancelled" and cancelled["run"] is None
    assert ok["approvals"][0]["decision"] == "approve" and ok["approvals"][0]["approver"] == "UBOB"

    md = (pack / f"{stems(recorded)[recorded.denied]}.md").read_text()
    assert "DENIED by bob (UBOB) at " in md and "It never ran: the request was denied" in md
    assert "| lag | PASS | lag=20.0; loss=\"none\"; rpo=300.0 |" in md
    assert "| no_other_run | PASS |" in md
    md = (pack / f"{stems(recorded)[recorded.expired]}.md").read_text()
    assert "It never ran: the request was expired (expired before enough approvals)" in md
    assert f"request #{recorded.expired} expired by drbot" in md


def test_a_drill_passes_only_if_it_moved_something_and_a_check_is_recorded_as_a_check(recorded, pack):
    check = load(pack, f"{stems(recorded)[recorded.drill]}.json")
    assert (check["request"]["scenario"], check["request"]["reason"]) == ("standby-check", "quarterly game day")
    assert [(s["action"], s["output"]["verify"]) for s in check["steps"]] == [
        ("check", {"verified": ["healthy", "lag"]})]
    assert (check["run"]["state"], check["run"]["proof"], check["run"]["passed"]) == ("succeeded", "check", None)
    md = (pack / f"{stems(recorded)[recorded.drill]}.md").read_text()
    assert "| Drill proof | CHECK ONLY: no step moves traffic or the writer; recorded as a check, not a drill |" in md
    assert "| Passed (judged at the time) | - |" in md

    moved = load(pack, f"{stems(recorded)[recorded.moved]}.json")
    assert (moved["run"]["state"], moved["run"]["proof"], moved["run"]["passed"]) == ("succeeded", "moved", True)
    assert [(s["name"], s["output"]["changed"]) for s in moved["steps"]] == [
        ("Shift traffic to the standby", True), ("Shift traffic back", True)]
    assert "| Drill proof | moved traffic or the writer and a verify read it back |" in \
        (pack / f"{stems(recorded)[recorded.moved]}.md").read_text()


def test_sandbox_requests_are_marked_sandbox_in_every_record(recorded, pack):
    for rid, stem in stems(recorded).items():
        assert load(pack, f"{stem}.json")["sandbox"] is True
        md = (pack / f"{stem}.md").read_text()
        assert md.splitlines()[0].endswith("(SANDBOX)") and "**SANDBOX**: " in md
    idx = load(pack, "index.json")
    assert all(r["sandbox"] is True for r in idx["requests"]) and idx["summary"]["sandbox"] == 8
    index_md = (pack / "index.md").read_text()
    assert index_md.count("; **SANDBOX** |") == 8 and "8 of them ran on or use the **SANDBOX**" in index_md


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
    run = rows(recorded, recorded.failover)["run"]
    assert "# Failover of orders" in ok and "approved by bob (UBOB)" in ok
    assert "| Reason | 5xx at 40% \\| \\<!here> in us-east-1 |" in ok  # no raw HTML, no broken table
    assert f"request #{recorded.failover} failover by UALICE: 5xx at 40% | \\<!here> in us-east-1" in ok
    assert "Targets as configured when the run started (tier critical)" in ok
    assert "| RTO | 15m |" in ok and "| RPO | 5m |" in ok and ok.count("| PASS |") >= 2
    assert "step 1 succeeded" in ok and "run succeeded" in ok  # the timeline, one line per event
    assert run.measured_rto_s is not None
    failed = (pack / f"{stems(recorded)[recorded.failed]}.md").read_text()
    assert "| RTO | 30m | - | not measured |" in failed and "| RPO | 5m | - | not measured |" in failed
    assert "SANDBOX: injected action failure for payments" in failed
    assert f"request #{recorded.rollback} rollback by UALICE" in failed


def test_index_has_one_row_per_request_and_the_counts(recorded, pack):
    idx = load(pack, "index.json")
    assert [r["request_id"] for r in idx["requests"]] == recorded.ran + recorded.never_ran
    first = idx["requests"][0]
    db = rows(recorded, recorded.failover)["run"]
    assert first["date"] == db.started_at.strftime("%Y-%m-%d") and first["approvers"] == ["UBOB"]
    assert first["rto"] == {"measured_s": db.measured_rto_s, "target_s": 900.0, "ok": True}
    assert first["rpo"]["measured_s"] == db.measured_rpo_s and first["rpo"]["target_s"] == 300.0
    denied = idx["requests"][5]
    assert (denied["state"], denied["run_state"], denied["deniers"], denied["approvers"]) == \
        ("denied", None, ["bob"], [])
    assert idx["summary"] == {"requests": 8, "runs": 5, "not_run": 3, "passed": 3, "not_passed": 1, "checks": 1,
                              "sandbox": 8, "by_kind": {"failover": 4, "drill": 3, "rollback": 1},
                              "by_state": {"succeeded": 3, "rolled_back": 2, "denied": 1, "expired": 1,
                                           "cancelled": 1}}
    md = (pack / "index.md").read_text()
    assert "8 requests, 5 of which ran: 3 passed, 1 did not pass, 1 was a check (not a drill); 3 never ran." in md
    for stem in stems(recorded).values():
        assert f"[{stem}.md]({stem}.md)" in md
    assert "| orders | failover | succeeded; PASSED; **SANDBOX** |" in md
    assert "| orders | drill | succeeded; CHECK, not a drill; **SANDBOX** |" in md
    assert "| payments | failover | denied, never ran; **SANDBOX** |" in md and "denied by bob" in md
    assert "| bob |" in md and "| carol |" in md


def test_manifest_hashes_every_file_names_the_parameters_and_the_signing_key(recorded, pack):
    manifest = load(pack, "manifest.json")
    assert set(manifest["files"]) == files(pack) - {"manifest.json", "manifest.sig"}
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((pack / name).read_bytes()).hexdigest() == digest
    assert manifest["drbot_version"] == metadata.version("drbot")
    assert manifest["parameters"] == {"since": recorded.since.replace("Z", ".000000Z"), "until": None,
                                      "service": None, "out": str(pack), "force": False, "config": recorded.config}
    key_id = "hmac:" + hashlib.sha256(b"drbot evidence key id\n" + SECRET.encode()).hexdigest()[:16]
    assert manifest["signing"] == {"algorithm": "hmac-sha256", "key_id": key_id}
    sig = load(pack, "manifest.sig")
    assert (sig["algorithm"], sig["key_id"], sig["signed_file"]) == ("hmac-sha256", key_id, "manifest.json")
    generated = datetime.fromisoformat(manifest["generated_at"])
    assert abs(datetime.now(timezone.utc) - generated) < timedelta(minutes=5)
    assert f"is signed in `manifest.sig` (hmac-sha256, key {key_id})" in (pack / "index.md").read_text()


# -- verify: hashes and signature ---------------------------------------------------------------

def test_verify_accepts_the_pack_as_exported(recorded, pack, monkeypatch, capsys):
    assert verify(monkeypatch, pack) == 0
    out = capsys.readouterr().out
    assert f"{pack}: OK, {len(files(pack)) - 2} files match manifest.json, signed by hmac:" in out


def _flip_one_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("which", ["record json", "record md", "index.json", "index.md", "manifest.json",
                                   "manifest.sig"])
def test_verify_fails_after_one_byte_of_any_file_is_changed(recorded, pack, monkeypatch, capsys, which):
    stem = stems(recorded)[recorded.denied]
    name = {"record json": f"{stem}.json", "record md": f"{stem}.md"}.get(which, which)
    size = (pack / name).stat().st_size
    _flip_one_byte(pack / name, size // 2)
    assert verify(monkeypatch, pack) == 1
    err = capsys.readouterr().err
    assert f"{pack}: FAILED, the pack is not as exported" in err
    if name == "manifest.json":
        assert "does not match manifest.json" in err or "is not a manifest" in err or "names key" in err
    elif name == "manifest.sig":
        assert "manifest.sig" in err
    else:
        assert f"{name} was changed after export" in err


def test_verify_fails_on_a_file_added_removed_or_a_pack_resigned_with_another_key(recorded, pack, monkeypatch,
                                                                                   capsys, tmp_path):
    (pack / "notes.md").write_text("looks fine\n")
    assert verify(monkeypatch, pack) == 1
    assert "notes.md is not in manifest.json: it was added after export" in capsys.readouterr().err
    (pack / "notes.md").unlink()
    (pack / "index.md").unlink()
    assert verify(monkeypatch, pack) == 1
    assert "index.md is listed in manifest.json but missing" in capsys.readouterr().err

    other = tmp_path / "other"
    assert export(monkeypatch, recorded, "--since", recorded.since, "--out", str(other), key="x" * 40) == 0
    capsys.readouterr()
    assert verify(monkeypatch, other) == 1
    assert "the pack is signed with key hmac:" in capsys.readouterr().err
    # a forger who edits a record and rewrites the manifest's hashes still lacks the key
    record = other / f"{stems(recorded)[recorded.denied]}.json"
    record.write_text(record.read_text().replace('"denied"', '"approved"'))
    manifest = load(other, "manifest.json")
    manifest["files"][record.name] = hashlib.sha256(record.read_bytes()).hexdigest()
    (other / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=2) + "\n")
    assert verify(monkeypatch, other, key="x" * 40) == 1
    assert "does not match manifest.json" in capsys.readouterr().err


def test_an_unsigned_pack_is_refused_by_verify_and_export_needs_a_key_or_unsigned(recorded, monkeypatch, capsys,
                                                                                   tmp_path):
    out = tmp_path / "unsigned"
    assert export(monkeypatch, recorded, "--since", recorded.since, "--out", str(out), key=None) == 2
    err = capsys.readouterr().err
    assert "no signing key: set DRBOT_EVIDENCE_KEY" in err and "--unsigned" in err and not out.exists()
    assert export(monkeypatch, recorded, "--since", recorded.since, "--out", str(out), key="short") == 2
    assert "DRBOT_EVIDENCE_KEY is 5 bytes: an HMAC secret needs at least 32" in capsys.readouterr().err
    assert export(monkeypatch, recorded, "--since", recorded.since, "--out", str(out), "--unsigned", key=None) == 0
    assert "manifest.sig" not in files(out) and load(out, "manifest.json")["signing"] is None
    assert "**Not signed**" in (out / "index.md").read_text()
    capsys.readouterr()
    assert verify(monkeypatch, out) == 1
    assert "manifest.sig is missing: the pack is not signed" in capsys.readouterr().err
    assert verify(monkeypatch, out, key=None) == 2
    assert "no key to verify with" in capsys.readouterr().err


def test_ed25519_signs_with_the_private_key_and_verifies_with_the_public_key_alone(recorded, monkeypatch, capsys,
                                                                                    tmp_path):
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    out = tmp_path / "ed"
    assert export(monkeypatch, recorded, "--since", recorded.since, "--out", str(out), key=private_pem) == 0
    assert load(out, "manifest.json")["signing"]["algorithm"] == "ed25519"
    assert verify(monkeypatch, out, key=public_pem) == 0
    assert "signed by ed25519:" in capsys.readouterr().out
    assert export(monkeypatch, recorded, "--out", str(tmp_path / "x"), key=public_pem) == 2
    assert "verifies but cannot sign" in capsys.readouterr().err
    _flip_one_byte(out / "manifest.json", 40)
    assert verify(monkeypatch, out, key=public_pem) == 1
    other = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    assert verify(monkeypatch, out, key=other) == 1


# -- the window and the filters -----------------------------------------------------------------

def test_since_in_the_future_writes_an_index_with_zero_requests(recorded, monkeypatch, tmp_path):
    out = tmp_path / "empty"
    assert export(monkeypatch, recorded, "--since", "2999-01-01", "--out", str(out)) == 0
    assert files(out) == PACK_FILES
    idx = load(out, "index.json")
    assert idx["requests"] == [] and idx["summary"]["requests"] == 0
    assert "No requests in this window." in (out / "index.md").read_text()
    assert set(load(out, "manifest.json")["files"]) == {"index.json", "index.md"}


def test_service_and_until_narrow_the_window(recorded, monkeypatch, tmp_path):
    out = tmp_path / "payments"
    assert export(monkeypatch, recorded, "--since", recorded.since, "--service", "payments", "--out", str(out)) == 0
    assert [r["request_id"] for r in load(out, "index.json")["requests"]] == [
        recorded.failed, recorded.rollback, recorded.moved, recorded.denied, recorded.expired]
    drill_started = rows(recorded, recorded.drill)["run"].started_at
    out = tmp_path / "before-drill"
    assert export(monkeypatch, recorded, "--since", recorded.since, "--until", iso(drill_started),
                  "--out", str(out)) == 0
    assert [r["request_id"] for r in load(out, "index.json")["requests"]] == [recorded.failover]


def test_default_window_and_directory(recorded, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert export(monkeypatch, recorded) == 0
    (out,) = [p for p in tmp_path.iterdir() if p.name.startswith("evidence-")]
    assert out.name == f"evidence-{datetime.now(timezone.utc):%Y%m%d}"
    assert len(load(out, "index.json")["requests"]) == 8  # all within the last 90 days


def test_targets_are_those_recorded_when_the_run_started_not_the_config_of_the_export(recorded, monkeypatch,
                                                                                      tmp_path):
    tighter = tmp_path / "tighter.yaml"
    tighter.write_text(CONFIG.replace("    rpo: 5m\n    rto: 15m\n", "    rpo: 10s\n    rto: 1s\n", 1))
    out = tmp_path / "tighter"
    assert export(monkeypatch, recorded, "--since", recorded.since, "--out", str(out), config=str(tighter)) == 0
    rec = load(out, f"{stems(recorded)[recorded.failover]}.json")
    assert rec["run"]["passed"] is True
    assert (rec["targets"]["rto_s"], rec["targets"]["rpo_s"], rec["targets"]["rto_ok"]) == (900.0, 300.0, True)
    assert "| RTO | 15m |" in (out / f"{stems(recorded)[recorded.failover]}.md").read_text()


def test_a_run_recorded_before_targets_were_kept_is_not_judged(recorded, monkeypatch, tmp_path):
    copy = tmp_path / "old.db"
    shutil.copy(recorded.db_url.removeprefix("sqlite:///"), copy)
    engine = make_engine(f"sqlite:///{copy}")
    with session_scope(engine) as s:
        s.exec(select(Run).where(Run.request_id == recorded.failover)).one().targets = ""
    engine.dispose()
    out = tmp_path / "old"
    old = Recorded(**{**recorded.__dict__, "db_url": f"sqlite:///{copy}"})
    assert export(monkeypatch, old, "--since", recorded.since, "--out", str(out)) == 0
    rec = load(out, f"{stems(recorded)[recorded.failover]}.json")
    assert rec["targets"] == {"recorded": False, "tier": None, "rto_s": None, "rpo_s": None, "rto_ok": None,
                              "rpo_ok": None}
    assert "were not recorded" in (out / f"{stems(recorded)[recorded.failover]}.md").read_text()


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
    assert set(load(out, "manifest.json")["files"]) == files(out) - {"manifest.json", "manifest.sig"}
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
