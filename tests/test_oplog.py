"""One JSON log line per operation (bot.oplog), with stable keys at the top level: a scripted
flow over HTTP (request, refused and accepted approvals, a 2-step run, an incident opened and
updated, a rejected alert, an outbox item given up), and the logging set-up of ``drbot``."""
from __future__ import annotations

import io
import json
import logging

import httpx
import pytest

from bot import oplog
from bot.config import parse_config
from bot.incidents import open_by_hand, update_from_form
from bot.store.models import ChangeRequest, RequestState
from bot.wiring import build_services
from tests.app_server import running_app
from tests.helpers import ALICE, BOB, CAROL, TWO_STEP_CONFIG, answered, delivered, request_row, rows, wait_until
from transports.cli import main

CHANNEL = "C_INC"
AM_TOKEN = "am-token-for-oplog-0123456789"
CONFIG = TWO_STEP_CONFIG + f"""
alerts:
  alertmanager_token: {AM_TOKEN}
"""


@pytest.fixture
def lines():
    """The JSON lines drbot.ops writes during the test."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(oplog.JsonFormatter())
    ops = logging.getLogger("drbot.ops")
    before = ops.level
    ops.addHandler(handler)
    ops.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in out.getvalue().splitlines()]
    ops.removeHandler(handler)
    ops.setLevel(before)


def test_every_operation_logs_one_json_line_with_stable_keys(tmp_path, fake_slack, lines):
    services = build_services(parse_config(CONFIG, "oplog.yaml", {}), db_url=f"sqlite:///{tmp_path}/o.db")
    try:
        with running_app(services, fake_slack) as app:
            app.sender.slash_command("failover orders to us-west-2 region degraded", user_id=ALICE.id,
                                     user_name="alice", channel_id=CHANNEL, response_url=fake_slack.response_url("a"))
            req = wait_until("the request's message", lambda: (q := rows(services, ChangeRequest)) and q[0].message_ts
                             and q[0])
            for who in (CAROL, BOB):
                app.sender.block_action("cr_approve", str(req.id), user_id=who.id, user_name=who.name,
                                        message=fake_slack.message(CHANNEL, req.message_ts),
                                        response_url=fake_slack.response_url(who.id))
                if who is CAROL:
                    answered(fake_slack, who.id)  # refused before Bob's click decides it
            wait_until("the run to end", lambda: request_row(services, req.id).state is RequestState.SUCCEEDED)
            r = httpx.post(app.url + "/alerts/alertmanager", content=b"{}", timeout=10,
                           headers={"Authorization": "Bearer nope", "Content-Type": "application/json"})
            assert r.status_code == 401
            fake_slack.outage("conversations.create", status=200, error="restricted_action")
            inc = open_by_hand(services, BOB, "orders database on fire", "sev2", ["orders"])
            update_from_form(services, BOB, inc.id, "identified", "a bad deploy")
            wait_until("the incident channel given up", lambda: any(x["event"] == "outbox.given_up" for x in lines()
                                                                   if "event" in x))
            fake_slack.heal()
            delivered(services)
    finally:
        services.engine.dispose()

    ops = [x for x in lines() if "event" in x]
    by_event: dict[str, list[dict]] = {}
    for x in ops:
        assert x["logger"] == "drbot.ops" and x["level"] in ("INFO", "ERROR") and x["ts"]
        by_event.setdefault(x["event"], []).append(x)

    [created] = by_event["request.created"]
    assert (created["request_id"], created["kind"], created["service"], created["user"]) == (
        req.id, "failover", "orders", ALICE.id)
    refused, approved = by_event["request.approve"]
    assert (refused["user"], refused["outcome"], refused["request_id"], refused["service"]) == (
        CAROL.id, "not_approver", req.id, "orders")
    assert (approved["user"], approved["outcome"]) == (BOB.id, "approved")
    [started] = by_event["run.started"]
    assert (started["request_id"], started["service"], started["kind"]) == (req.id, "orders", "failover")
    steps = by_event["run.step"]
    assert [(s["step"], s["action"], s["outcome"]) for s in steps] == [
        (1, "database.switchover", "succeeded"), (2, "traffic.shift", "succeeded")]
    assert all(s["run_id"] == started["run_id"] and s["seconds"] >= 0 for s in steps)
    [finished] = by_event["run.finished"]
    assert (finished["outcome"], finished["request_id"], finished["run_id"]) == ("succeeded", req.id, started["run_id"])
    assert "rto_s" in finished
    [rejected] = by_event["alert.rejected"]
    assert (rejected["endpoint"], rejected["status"]) == ("/alerts/alertmanager", 401)
    assert rejected["reason"] == "missing or wrong bearer token"
    [opened] = by_event["incident.opened"]
    assert (opened["incident_id"], opened["service"], opened["severity"], opened["user"]) == (
        inc.id, "orders", "sev2", BOB.id)
    [status] = by_event["incident.status"]
    assert (status["incident_id"], status["outcome"], status["previous"]) == (inc.id, "identified", "investigating")
    given_up = by_event["outbox.given_up"]
    assert given_up[0]["level"] == "ERROR" and given_up[0]["kind"] == "incident.channel"
    assert "restricted_action" in given_up[0]["reason"]
    # one line per operation: nothing logged twice
    assert len(by_event["request.created"]) == 1 and len(by_event["alert.rejected"]) == 1


def test_cli_logs_json_with_quiet_libraries_and_warnings_only_outside_run(tmp_path, monkeypatch, capsys):
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, {n: logging.getLogger(n).level for n in oplog.QUIET})
    try:
        config = tmp_path / "drbot.yaml"
        config.write_text(TWO_STEP_CONFIG)
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/c.db")
        monkeypatch.setenv("DRBOT_LOG_FORMAT", "json")
        monkeypatch.delenv("DRBOT_LOG_LEVEL", raising=False)
        main(["status", "--config", str(config)])
        assert root.level == logging.WARNING  # status, check-config, ...: warnings only
        assert all(logging.getLogger(n).level == logging.WARNING for n in ("apscheduler", "httpx", "botocore"))
        assert isinstance(root.handlers[-1].formatter, oplog.JsonFormatter)
        oplog.op("request.created", request_id=1)  # INFO: not shown outside `drbot run`
        logging.getLogger("drbot.ops").warning("shown")
        shown = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines() if line.startswith("{")]
        assert [x["message"] for x in shown if x["logger"] == "drbot.ops"] == ["shown"]

        monkeypatch.setenv("DRBOT_LOG_FORMAT", "yaml")
        assert main(["status", "--config", str(config)]) == 2
        assert "DRBOT_LOG_FORMAT must be 'json' or 'text', not 'yaml'" in capsys.readouterr().err
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)
