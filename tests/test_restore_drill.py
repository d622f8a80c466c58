"""Restore tests as drills, end to end over real HTTP: the app (uvicorn) takes signed Slack
requests; ``/dr drill orders restore-orders-db`` asks for a drill whose first step restores
last night's snapshot through a fake Argo Server (tests/fakes/argo_server.py) and whose
other steps check the restored copy (an ``http`` smoke test at a local fake, a ``check``);
a second person approves it with the button. Its drill report in Slack and its evidence
record say what was restored, from which backup, how long the restore took and whether the
checks passed; ``/dr status`` then judges the restore test against ``restore_test_max_age``
(AT RISK once it is older, or when it failed)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from slack_sdk import WebClient

from bot import drills
from bot.actor import Actor
from bot.config import parse_config
from bot.digest import build_digest, digest_context
from bot.evidence import collect, index
from bot.render import Reply
from bot.store.drill_tables import DrillOccurrence
from bot.store.models import ChangeRequest, RequestState, Run, RunStep, StepState
from bot.wiring import build_services
from commands import router as actions
from tests.app_server import running_app
from tests.fakes.argo_server import FakeArgo
from tests.fakes.flags_api import FakeFlags
from tests.helpers import delivered, request_row, rows, wait_until
from tests.step_support import config_text
from tests.test_backups import FakePrometheus
from transports.slack.messenger import SlackMessenger

ALICE, BOB = "UALICE", "UBOB"
CHANNEL = "C_INC"
SNAPSHOT_TAKEN = datetime(2026, 11, 29, 3, 0, tzinfo=timezone.utc)
SOURCES = """
argo:
  kind: argo_workflow
  url: ${ARGO_URL}
  ui_url: https://argo.example.com
  token: argo-token
checks:
  kind: http
  base_url: ${CHECKS_URL}
prom:
  kind: prometheus_backup
  url: ${PROM_URL}
  timeout: 2
"""
EXTRA = """    backups:
      - name: orders-db
        source: prom
        target: orders_db_snapshot_timestamp_seconds
        max_age: 1d
        restore_test_max_age: 30d
    runbooks:
      drill:
        restore-orders-db:
          - name: Restore last night's snapshot into a scratch cluster
            action: argo_workflow
            source: argo
            timeout: 5m
            argo_workflow: {template: restore-db, parameters: {snapshot: latest}, interval: 10ms}
            restore: {backup: orders-db, backup_id: snapshot, backup_time: snapshot-time}
          - name: Row counts match production
            action: http
            source: checks
            timeout: 10s
            http: {url: "/smoke/{service}", expect: 'checks[0].state == "passing"', retries: 0}
          - name: Standby healthy
            action: check
            verify: {healthy: target, within: 2s, interval: 100ms}
"""


class Clock:
    def __init__(self):
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def estate(fake_slack, tmp_path):
    with FakeArgo() as argo, FakeFlags() as checks, FakePrometheus() as prom:
        argo.templates["argo"].add("restore-db")
        argo.outputs = {"snapshot": "orders-2026-11-29", "snapshot-time": SNAPSHOT_TAKEN.isoformat()}
        prom.series["orders_db_snapshot_timestamp_seconds"] = [({}, datetime.now(timezone.utc).timestamp() - 3600)]
        text = config_text(SOURCES, "").replace("    runbooks:\n", "") + EXTRA
        loaded = parse_config(text, "restore.yaml", {"ARGO_URL": argo.url, "CHECKS_URL": checks.url,
                                                     "PROM_URL": prom.url})
        clock = Clock()
        services = build_services(loaded, db_url=f"sqlite:///{tmp_path}/drbot.db", clock=clock)
        try:
            with running_app(services, fake_slack) as app:
                yield {"services": services, "app": app, "fake": fake_slack, "argo": argo, "checks": checks,
                       "clock": clock}
        finally:
            services.runner.executor.shutdown(wait=True)
            services.engine.dispose()


def slash(estate, user: str, words: str, tag: str) -> str:
    fake = estate["fake"]
    r = estate["app"].sender.slash_command(words, user_id=user, user_name=user[1:].lower(), channel_id=CHANNEL,
                                           response_url=fake.response_url(tag))
    assert r.status_code == 200
    said = wait_until(f"the reply to {words!r}", lambda: [c for c in fake.calls("response_url")
                                                           if c.params["_path"] == f"/response/{tag}"])
    return json.dumps(said[-1].params)


def run_the_drill(estate) -> ChangeRequest:
    services, fake = estate["services"], estate["fake"]
    said = slash(estate, ALICE, "drill orders restore-orders-db nightly restore test", "drill")
    assert "is posted for approval" in said, said
    req = wait_until("the drill posted", lambda: next((q for q in rows(services, ChangeRequest) if q.message_ts),
                                                      None))
    r = estate["app"].sender.block_action("cr_approve", str(req.id), user_id=BOB, user_name="bob",
                                          channel_id=CHANNEL, response_url=fake.response_url("bob"),
                                          message=fake.message(CHANNEL, req.message_ts))
    assert r.status_code == 200
    done = wait_until(f"drill #{req.id} to end", lambda: (q := request_row(services, req.id)) and q.state in (
        RequestState.SUCCEEDED, RequestState.FAILED) and q, 30)
    delivered(services)
    return done


def report_of(estate, req: ChangeRequest) -> tuple[str, str]:
    posts = [c.params for c in estate["fake"].calls("chat.postMessage")
             if str(c.params.get("text", "")).startswith("Drill report:")
             and c.params.get("thread_ts") == req.message_ts]
    assert len(posts) == 1, posts
    blocks = posts[0]["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    return posts[0]["text"], "\n".join(b["text"]["text"] for b in blocks if isinstance(b.get("text"), dict))


def restore_output(services, req: ChangeRequest) -> dict:
    (run,) = rows(services, Run, Run.request_id == req.id)
    steps = rows(services, RunStep, RunStep.run_id == run.id, order=RunStep.id)
    return json.loads(steps[0].output)["restore"]


def test_a_restore_drill_reports_the_backup_the_duration_and_the_checks(estate):
    services = estate["services"]
    req = run_the_drill(estate)
    assert req.state is RequestState.SUCCEEDED, req.state_reason
    (run,) = rows(services, Run, Run.request_id == req.id)
    assert run.proof == "check" and run.passed is None  # a restore test is no failover drill

    restore = restore_output(services, req)
    assert restore["backup"] == "orders-db" and restore["source"] == "prom"
    assert restore["backup_id"] == "orders-2026-11-29"
    assert restore["backup_time"] == "2026-11-29T03:00:00+00:00"
    assert restore["restored"] is True and restore["passed"] is True and restore["restore_s"] >= 0
    assert restore["step"]["link"] == "https://argo.example.com/workflows/argo/restore-db-00001"
    assert [c["state"] for c in restore["checks"]] == ["succeeded", "succeeded"]
    [submit] = estate["argo"].calls("POST")
    assert submit.json["submitOptions"]["parameters"] == ["snapshot=latest"]

    fallback, shown = report_of(estate, req)
    assert fallback.startswith("Drill report: orders restore-orders-db RESTORE TEST PASSED")
    assert "Restore test of backup orders-db (orders_db_snapshot_timestamp_seconds via prom): PASSED" in shown
    assert "restored from orders-2026-11-29, taken 2026-11-29T03:00:00+00:00" in shown
    assert "restore: step 1, Restore last night's snapshot into a scratch cluster, took" in shown
    assert "https://argo.example.com/workflows/argo/restore-db-00001" in shown
    assert "checks: 2 of 2 passed" in shown
    assert "does not refresh the drill due every 30d" in shown

    # the evidence pack carries the restore, as JSON and as Markdown
    [record] = [r for r in collect(services.engine, datetime(2000, 1, 1, tzinfo=timezone.utc), config=services.config)
                if r["request"]["id"] == req.id]
    assert record["restore"]["backup_id"] == "orders-2026-11-29" and record["restore"]["passed"] is True
    markdown = services.renderer.text(Reply("evidence_run", {"r": record, "stem": "x"}))
    assert "## Restore test" in markdown and "| Restored from | orders-2026-11-29 |" in markdown
    [row] = index([record])["requests"]
    assert row["restore_test"] == {"backup": "orders-db", "passed": True}
    listing = services.renderer.text(Reply("evidence_index", index([record]) | {
        "generated_at": "2026-11-29T00:00:00Z", "parameters": {"since": None, "until": None, "service": None},
        "drbot_version": "test", "signing": None}))
    assert "succeeded; RESTORE TEST PASSED (backup orders-db); **SANDBOX**" in listing

    # /dr status: the restore test is fresh ...
    status = slash(estate, ALICE, "status orders", "status-1")
    assert "restore test passed" in status and "/ max 30d" in status
    # ... and 45 days later it is overdue: AT RISK, naming the backup and the limit
    estate["clock"].now += timedelta(days=45)
    services.collector.forget()
    [a] = services.status.report("orders", fresh=True).assessments
    [overdue] = [f for f in a.findings if f.code == "restore_test_overdue"]
    assert overdue.verdict.value == "AT_RISK" and overdue.params["request_id"] == req.id
    assert services.renderer.reason(overdue) == \
        f"last restore test of backup orders-db 45d ago, max 30d (request #{req.id}) (SANDBOX: simulated estate)"
    later = slash(estate, ALICE, "status orders", "status-2")
    assert "last restore test of backup orders-db 45d ago, max 30d" in later

    # /dr drills history names it a restore test, not a mere check
    history = slash(estate, ALICE, "drills history orders", "history")
    assert "restore test of backup orders-db" in history and "check only, not a drill" not in history
    # ... and so does the weekly digest
    payload = build_digest(services, req.created_at + timedelta(days=1))
    [done] = payload["drills_done"]
    assert done["restore"] == "orders-db"
    digest_text = services.renderer.text(Reply("weekly_digest", digest_context(services, payload)))
    assert "restore test of backup orders-db, succeeded" in digest_text and "check, not a drill" not in digest_text


def test_a_failed_check_fails_the_restore_test_and_status_says_so(estate):
    services = estate["services"]
    estate["checks"].smoke_failing = True
    req = run_the_drill(estate)
    assert req.state is RequestState.FAILED and req.state_reason == "step 2 failed"

    restore = restore_output(services, req)
    assert restore["restored"] is True and restore["passed"] is False
    assert [(c["name"], c["state"]) for c in restore["checks"]] == [
        ("Row counts match production", "failed"), ("Standby healthy", "not_run")]

    fallback, shown = report_of(estate, req)
    assert "RESTORE TEST FAILED" in fallback
    assert "Restore test of backup orders-db (orders_db_snapshot_timestamp_seconds via prom): FAILED" in shown
    assert "checks: 0 of 2 passed; 2. Row counts match production: failed; 3. Standby healthy: not run" in shown

    status = slash(estate, ALICE, "status orders", "status")
    assert f"the last restore test of backup orders-db, 0s ago, FAILED (request #{req.id})" in status
    assert "AT RISK" in status


def test_a_failed_restore_says_so_and_names_no_backup(estate):
    services = estate["services"]
    estate["argo"].outcome = "Failed"
    req = run_the_drill(estate)
    assert req.state is RequestState.FAILED and req.state_reason == "step 1 failed"
    restore = restore_output(services, req)
    assert restore["restored"] is False and restore["passed"] is False
    assert restore["step"]["state"] == StepState.FAILED.value and "ended Failed" in restore["step"]["error"]
    _, shown = report_of(estate, req)
    assert "restore: step 1, Restore last night's snapshot into a scratch cluster, FAILED after" in shown
    assert "restored from an unnamed backup (the step's outputs have no 'snapshot')" in shown
    assert "checks: 0 of 2 passed" in shown


# -- a scheduled restore test --------------------------------------------------------------

T = datetime(2024, 6, 4, 4, 30, tzinfo=timezone.utc)
"""Its nightly time (in the past: sandbox readings carry the real time and are never stale then)."""


def test_a_scheduled_restore_test_runs_at_its_time_and_its_report_shows_the_restore(fake_slack, tmp_path):
    schedule = '    drills:\n      - {name: nightly-restore, scenario: restore-orders-db, cron: "30 4 * * *", ' \
               'channel: C_DR}\n'
    with FakeArgo() as argo, FakeFlags() as checks, FakePrometheus() as prom:
        argo.templates["argo"].add("restore-db")
        argo.outputs = {"snapshot": "orders-2024-06-04", "snapshot-time": "1717468200"}
        prom.series["orders_db_snapshot_timestamp_seconds"] = [({}, T.timestamp() - 3600)]
        text = config_text(SOURCES, "").replace("    runbooks:\n", "") + EXTRA + schedule
        loaded = parse_config(text, "restore.yaml", {"ARGO_URL": argo.url, "CHECKS_URL": checks.url,
                                                     "PROM_URL": prom.url})
        now = [T - timedelta(hours=23)]
        sv = build_services(loaded, db_url=f"sqlite:///{tmp_path}/drbot.db", clock=lambda: now[0], inline_runs=True)
        sv.messenger = SlackMessenger(WebClient(base_url=fake_slack.base_url, token="xoxb-t"), sv.renderer)
        try:
            done = drills.tick(sv)
            [occ] = rows(sv, DrillOccurrence)
            assert done["planned"] == [occ.id] and occ.starts_at == T
            req = request_row(sv, occ.request_id)
            assert req.scenario == "restore-orders-db" and req.required_approvals == 2
            now[0] = T - timedelta(hours=2)
            for who in (Actor(id="UBOB", name="bob"), Actor(id="UCAROL", name="carol")):
                assert actions.click(sv, who, "cr_approve", str(req.id)) is None
            assert request_row(sv, req.id).state is RequestState.APPROVED
            now[0] = T
            assert drills.tick(sv)["started"] == [occ.id]
            delivered(sv)

            done_req = request_row(sv, req.id)
            assert done_req.state is RequestState.SUCCEEDED, done_req.state_reason
            restore = restore_output(sv, done_req)
            assert restore["backup_id"] == "orders-2024-06-04"
            assert restore["backup_time"] == "2024-06-04T02:30:00+00:00"  # Unix seconds, read as UTC
            reports = [c.params for c in fake_slack.calls("chat.postMessage")
                       if str(c.params.get("text", "")).startswith("Drill report:")]
            assert [r["text"] for r in reports] == ["Drill report: orders restore-orders-db RESTORE TEST PASSED "
                                                    "(SANDBOX)"]
            assert reports[0]["thread_ts"] == done_req.message_ts  # in the drill's thread
            assert "restored from orders-2024-06-04, taken 2024-06-04T02:30:00+00:00" in json.dumps(
                reports[0]["blocks"], ensure_ascii=False)

            [record] = [r for r in collect(sv.engine, T - timedelta(days=1), config=sv.config)
                        if r["request"]["id"] == req.id]
            assert record["restore"]["passed"] is True and record["request"]["scenario"] == "restore-orders-db"

            [a] = sv.status.report("orders", fresh=True).assessments
            assert [f.code for f in a.findings if f.code.startswith("restore_test")] == ["restore_test_ok"]
            now[0] = T + timedelta(days=31)
            sv.collector.forget()
            [a] = sv.status.report("orders", fresh=True).assessments
            assert [f.code for f in a.findings if f.code.startswith("restore_test")] == ["restore_test_overdue"]
        finally:
            sv.outbox.drain(timeout=10)
            sv.runner.executor.shutdown(wait=True)
            sv.engine.dispose()
