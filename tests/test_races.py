"""Exactly once under concurrency, on SQLite and PostgreSQL alike (issue 9, found 2-4):

- 10 critical alerts for one service at once open one incident: a service's open incident
  is a primary key claimed with INSERT ... ON CONFLICT, the losers join the winner's;
- the same Alertmanager notification sent 20 times at once (an HA pair) gets 20 answers of
  2xx and is one alert, seen 20 times: INSERT ... ON CONFLICT (fingerprint), never a 500;
- one decision per person on a request: approve then deny, deny then approve, or both at
  once on two replicas get a reply, never an error, and the request keeps one decision;
- a request approved while nothing could run it is started by the next process, and while
  it waits its requester can cancel it; the cancel and the runner's claim race, one wins.

Alerts go over real HTTP to the running app, clicks are signed block actions, the restart
is a real ``python -m transports run`` process; nothing of drbot is mocked.
"""
from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Callable

import httpx
import pytest
from alembic import command
from sqlalchemy import text
from sqlmodel import Session, select

from bot import changes
from bot.changes import Refused
from bot.config import parse_config
from bot.incidents import open_by_hand, set_status
from bot.store import make_engine, session_scope
from bot.store.incident_tables import Alert, Incident, IncidentStatus, OpenIncidentService
from bot.store.models import Approval, ChangeRequest, RequestState, TimelineEvent
from bot.store.schema import _config
from bot.wiring import build_services
from commands import router
from commands.router import dispatch
from tests.app_server import running_app
from tests.helpers import (ALICE, BOB, CAROL, BotProcess, alerts_processed, incident_of_alert, request_row, rows,
                           runs_of, wait_until)

AM_TOKEN = "am-token-races-7c2d"
SECRET = "0b9a8c7d6e5f40312233445566778899"
CHANNEL = "C_INC"
ASK = "failover orders 5xx at 40% in us-east-1"

CONFIG = f"""
regions: [us-east-1, us-west-2]
sources:
  sim:
    kind: sandbox
    timeout: 1.0
    profiles:
      orders: {{lag: 20, jitter: 0}}
      payments: {{lag: 20, jitter: 0}}
services:
  - name: orders
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {{source: sim}}
    health: {{us-east-1: sim, us-west-2: sim}}
    traffic: {{source: sim}}
    database: {{source: sim}}
    runbooks:
      failover:
        - {{name: Shift traffic, action: traffic.shift, timeout: 5s}}
        - {{name: Switch the database over, action: database.switchover, timeout: 5s}}
  - name: payments
    rpo: 5m
    rto: 30m
    active: us-east-1
    standby: us-west-2
    lag: {{source: sim}}
    health: {{us-east-1: sim, us-west-2: sim}}
alerts:
  alertmanager_token: {AM_TOKEN}
approvals:
  required_approvals: {{required}}
  approvers: [UBOB, UCAROL]
  expires: 30m
"""
FINAL = {RequestState.SUCCEEDED, RequestState.FAILED, RequestState.CANCELLED, RequestState.DENIED}


def build(db_url: str, required: int = 1):
    return build_services(parse_config(CONFIG.replace("{required}", str(required)), "races.yaml", {}),
                          db_url=db_url)


def shut(*services) -> None:
    for sv in services:
        if sv.runner is not None:
            sv.runner.executor.shutdown(wait=True)
        sv.engine.dispose()


def at_once(fn: Callable, args: list) -> list:
    """``fn(arg)`` for every arg, in as many threads released together; results in order."""
    barrier = threading.Barrier(len(args))

    def go(arg):
        barrier.wait(timeout=30)
        return fn(arg)

    with ThreadPoolExecutor(max_workers=len(args)) as pool:
        return list(pool.map(go, args))


def errors_logged(caplog) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


# -- alerts -------------------------------------------------------------------------------

def am_alert(alertname: str, fingerprint: str, service: str = "orders", severity: str = "critical") -> dict:
    return {
        "status": "firing",
        "labels": {"alertname": alertname, "service": service, "severity": severity, "region": "us-east-1",
                   "instance": f"{service}-api-1", "job": "api"},
        "annotations": {"summary": f"{alertname} on {service}-api-1"},
        "startsAt": "2024-05-01T12:00:00.000Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": f"http://prometheus.example:9090/graph?g0.expr={alertname}",
        "fingerprint": fingerprint,
    }


def notification(*alerts: dict) -> dict:
    """An Alertmanager v4 webhook around ``alerts``."""
    service = alerts[0]["labels"]["service"]
    return {"version": "4", "groupKey": f'{{}}:{{service="{service}"}}', "truncatedAlerts": 0, "status": "firing",
            "receiver": "drbot", "groupLabels": {"service": service}, "commonLabels": {"service": service},
            "commonAnnotations": {}, "externalURL": "http://alertmanager.example:9093", "alerts": list(alerts)}


def post_alerts(app, payload: dict) -> httpx.Response:
    return httpx.post(f"{app.url}/alerts/alertmanager", content=json.dumps(payload), timeout=60,
                      headers={"Content-Type": "application/json", "Authorization": f"Bearer {AM_TOKEN}"})


def test_ten_concurrent_critical_alerts_for_one_service_open_one_incident(db_url, fake_slack, caplog):
    services = build(db_url)
    try:
        with running_app(services, fake_slack) as app:
            payloads = [notification(am_alert(f"OrdersDown{i}", f"f{i:02d}")) for i in range(10)]
            answers = at_once(lambda p: post_alerts(app, p), payloads)
            assert [r.status_code for r in answers] == [200] * 10, [r.text for r in answers]
            assert all(r.json()["accepted"] == 1 for r in answers)  # stored; processed by the drain
            alerts_processed(services)
            [inc] = rows(services, Incident)  # one opened it, the nine others joined it
            alerts = rows(services, Alert)
            assert len(alerts) == 10 and {a.incident_id for a in alerts} == {inc.id}
            assert [(c.service, c.incident_id) for c in rows(services, OpenIncidentService,
                                                             order=OpenIncidentService.service)] == [("orders", inc.id)]
            assert len(rows(services, TimelineEvent, TimelineEvent.kind == "incident.opened")) == 1
            assert services.outbox.drain(timeout=30)
            assert len(fake_slack.calls("conversations.create")) == 1  # one incident channel
        assert errors_logged(caplog) == []
    finally:
        shut(services)


def test_twenty_identical_notifications_at_once_are_one_alert_seen_twenty_times(db_url, fake_slack, caplog):
    services = build(db_url)
    try:
        with running_app(services, fake_slack) as app:
            payload = notification(am_alert("OrdersDown", "ha-pair-1"))
            answers = at_once(lambda p: post_alerts(app, p), [payload] * 20)
            assert all(200 <= r.status_code < 300 for r in answers), [(r.status_code, r.text) for r in answers]
            alerts_processed(services)
            [alert] = rows(services, Alert)
            assert alert.fingerprint == "am:ha-pair-1" and alert.times_seen == 20  # new once, 19 repeats
            [inc] = rows(services, Incident)
            assert alert.incident_id == inc.id
            assert len(rows(services, TimelineEvent, TimelineEvent.kind == "incident.opened")) == 1
            assert len(rows(services, TimelineEvent, TimelineEvent.kind == "alert.firing")) == 1
        assert errors_logged(caplog) == []
    finally:
        shut(services)


def test_one_open_incident_per_service_by_alert_or_by_hand_until_it_resolves(db_url, fake_slack, caplog):
    services = build(db_url)
    try:
        with running_app(services, fake_slack) as app:
            # people declaring it and alerts arriving, all at once: one incident
            work = [("hand", i) for i in range(4)] + [("alert", i) for i in range(6)]

            def one(item):
                how, i = item
                if how == "alert":
                    return post_alerts(app, notification(am_alert(f"OrdersSlow{i}", f"s{i}"))).status_code
                try:
                    return open_by_hand(services, BOB, f"orders is down ({i})", "sev1", ["orders"]).id
                except Refused as r:
                    return r

            outcome = at_once(one, work)
            alerts_processed(services)
            [inc] = rows(services, Incident)
            assert outcome[4:] == [200] * 6
            by_hand = outcome[:4]
            assert all(o == inc.id or (isinstance(o, Refused) and o.code == "incident_open"
                                       and o.params["id"] == inc.id) for o in by_hand), by_hand
            assert {a.incident_id for a in rows(services, Alert)} == {inc.id}

            # by hand again, for it and another service: refused, naming it; nothing half-done
            with pytest.raises(Refused) as refused:
                open_by_hand(services, CAROL, "orders and payments down", "sev1", ["payments", "orders"])
            assert refused.value.code == "incident_open" and refused.value.params["services"] == ["orders"]
            said = services.renderer.text(refused.value.reply())
            assert f"orders already has an open incident: #{inc.id}" in said and "Nothing new was opened" in said
            assert len(rows(services, Incident)) == 1
            assert [c.service for c in rows(services, OpenIncidentService, order=OpenIncidentService.service)] \
                == ["orders"]
            # another service is free
            other = open_by_hand(services, BOB, "payments slow", "sev3", ["payments"])
            assert other.id != inc.id

            # resolved: the service is free again, and the next critical alert opens a new incident
            with session_scope(services.engine) as s:
                set_status(services, s, BOB, s.get(Incident, inc.id), "resolved", "fixed")
            assert [c.service for c in rows(services, OpenIncidentService, order=OpenIncidentService.service)] \
                == ["payments"]
            r = post_alerts(app, notification(am_alert("OrdersDownAgain", "again-1")))
            assert r.status_code == 200
            new_id = incident_of_alert(services, "am:again-1")
            assert new_id not in (None, inc.id, other.id)
            r = post_alerts(app, notification(am_alert("OrdersDownAgain2", "again-2")))
            assert r.status_code == 200 and incident_of_alert(services, "am:again-2") == new_id
            assert len(rows(services, Incident)) == 3  # the second joined the new one
            assert rows(services, Incident, Incident.id == inc.id)[0].status is IncidentStatus.RESOLVED
        assert errors_logged(caplog) == []
    finally:
        shut(services)


def test_incidents_open_before_the_upgrade_claim_their_services(db_url):
    """A database of an earlier drbot: its open incidents claim their services when the
    revision runs (the newest one, where an earlier race left two), resolved ones do not."""
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            command.upgrade(_config(conn), "0004_run_facts")
            for status, names in (("RESOLVED", ["orders"]), ("INVESTIGATING", ["orders", "payments"]),
                                  ("IDENTIFIED", ["orders"])):
                conn.execute(text(
                    "INSERT INTO incident (title, severity, status, services, channel_id, channel_name, opened_by,"
                    " opened_at, statuspage_id, failover_suggested, alerts_ts) VALUES ('down', 'sev2', :status,"
                    " :services, '', '', 'alerts', :at, '', false, '')"),
                    {"status": status, "services": json.dumps(names), "at": datetime.now(timezone.utc)})
            command.upgrade(_config(conn), "0005_open_incident_service")
        with Session(engine) as s:
            claims = s.exec(select(OpenIncidentService).order_by(OpenIncidentService.service)).all()
            assert [(c.service, c.incident_id) for c in claims] == [("orders", 3), ("payments", 2)]
    finally:
        engine.dispose()


# -- one decision per person --------------------------------------------------------------

def posted_request(services, app, fake_slack, name: str) -> tuple[ChangeRequest, dict]:
    """``/dr failover ...`` by Alice, signed; the request once its message is posted."""
    r = app.sender.slash_command(ASK, user_id=ALICE.id, user_name="alice", channel_id=CHANNEL,
                                 response_url=fake_slack.response_url(name))
    assert r.status_code == 200, r.text
    req = wait_until("the request's message posted", lambda: (q := rows(services, ChangeRequest)) and
                     q[-1].message_ts and q[-1].state is RequestState.PENDING and q[-1])
    return req, fake_slack.message(CHANNEL, req.message_ts)


def click(app, fake_slack, action: str, req: ChangeRequest, user, name: str) -> None:
    r = app.sender.block_action(action, str(req.id), user_id=user.id, user_name=user.name, channel_id=CHANNEL,
                                response_url=fake_slack.response_url(name),
                                message=fake_slack.message(CHANNEL, req.message_ts))
    assert r.status_code == 200, r.text


def told(fake_slack, name: str) -> str:
    [answer] = wait_until(f"the answer to {name}", lambda: [
        c for c in fake_slack.calls("response_url") if c.params["_path"] == f"/response/{name}"])
    assert answer.params["response_type"] == "ephemeral"
    return answer.params["text"]


def test_approve_then_deny_by_the_same_person_gets_a_reply_and_changes_nothing(db_url, fake_slack, caplog):
    services = build(db_url, required=2)
    try:
        with running_app(services, fake_slack) as app:
            req, _ = posted_request(services, app, fake_slack, "ask")
            click(app, fake_slack, "cr_approve", req, BOB, "bob-approves")
            wait_until("bob's approval", lambda: rows(services, Approval))

            click(app, fake_slack, "cr_deny", req, BOB, "bob-denies")
            said = told(fake_slack, "bob-denies")
            assert f"you have already approved request #{req.id}, so you cannot deny it too" in said
            assert request_row(services, req.id).state is RequestState.PENDING
            assert [(a.approver, a.approve) for a in rows(services, Approval)] == [(BOB.id, True)]

            click(app, fake_slack, "cr_approve", req, BOB, "bob-again")
            assert f"you have already approved request #{req.id}" in told(fake_slack, "bob-again")

            # deny then approve: the deny decided it; the approval after it is told so
            click(app, fake_slack, "cr_deny", req, CAROL, "carol-denies")
            wait_until("the request denied", lambda: request_row(services, req.id).state is RequestState.DENIED)
            click(app, fake_slack, "cr_approve", req, CAROL, "carol-approves")
            assert f"request #{req.id} is denied" in told(fake_slack, "carol-approves")
            assert sorted((a.approver, a.approve) for a in rows(services, Approval)) == [
                (BOB.id, True), (CAROL.id, False)]
            assert runs_of(services, req.id) == []
            for name in ("bob-approves", "carol-denies"):  # a decision that counted needs no answer
                assert not [c for c in fake_slack.calls("response_url") if c.params["_path"] == f"/response/{name}"]
        assert errors_logged(caplog) == []
    finally:
        shut(services)


def test_approve_and_deny_at_once_by_one_person_on_two_replicas_is_one_decision(db_url, caplog):
    one, two = build(db_url, required=2), build(db_url, required=2)
    try:
        for round_ in range(4):
            created = dispatch(one, ALICE, ASK)
            assert created.template == "request_created", created.context
            req_id = created.context["req"].id
            clicks = [(one, "cr_approve"), (two, "cr_deny")][::1 if round_ % 2 else -1]
            replies = at_once(lambda c: router.click(c[0], BOB, c[1], str(req_id)), clicks)
            decided = [r for r in replies if r is None]
            told_ = [r for r in replies if r is not None]
            assert len(decided) == 1 and len(told_) == 1, replies
            assert told_[0].template == "refused", told_[0].context
            assert told_[0].context["code"] in ("already_decided", "not_pending"), told_[0].context
            [mine] = rows(one, Approval, Approval.request_id == req_id, Approval.approver == BOB.id)
            state = request_row(one, req_id).state
            assert state is (RequestState.PENDING if mine.approve else RequestState.DENIED)
            if state is RequestState.PENDING:  # close it, for the next round
                assert changes.decide(one, CAROL, req_id, "deny").reply is None
        assert errors_logged(caplog) == []
    finally:
        shut(one, two)


# -- approved, waiting: started after a restart, or cancelled ------------------------------

def approved_with_no_runner(services) -> int:
    """A request approved by a process that stopped before its runner started the run."""
    runner, services.runner = services.runner, None
    try:
        created = dispatch(services, ALICE, ASK)
        assert created.template == "request_created", created.context
        req_id = created.context["req"].id
        assert changes.decide(services, BOB, req_id, "approve").reply is None
    finally:
        services.runner = runner
    assert request_row(services, req_id).state is RequestState.APPROVED and runs_of(services, req_id) == []
    return req_id


def test_a_request_approved_before_a_restart_runs_in_the_next_process(tmp_path, fake_slack, db_url):
    config = tmp_path / "drbot.yaml"
    config.write_text(CONFIG.replace("{required}", "1"))
    services = build(db_url)
    try:
        req_id = approved_with_no_runner(services)
        with BotProcess(tmp_path, "restarted", config, db_url, fake_slack, SECRET) as bot:
            bot.wait_healthy()
            done = wait_until("the approved request to run", lambda: (
                q := request_row(services, req_id)).state in FINAL and q, timeout=30, details=bot.output)
            assert done.state is RequestState.SUCCEEDED, (done.state_reason, bot.output())
            [run] = runs_of(services, req_id)
            assert run.state is RequestState.SUCCEEDED
    finally:
        shut(services)


def test_a_request_left_approved_shows_cancel_and_its_requester_can_cancel_it(db_url, fake_slack, caplog):
    services = build(db_url)
    runner = services.runner
    try:
        with running_app(services, fake_slack) as app:
            services.runner = None  # nothing runs it in this process: it waits, approved
            req, _ = posted_request(services, app, fake_slack, "ask")
            click(app, fake_slack, "cr_approve", req, BOB, "bob-approves")
            wait_until("the request approved", lambda: request_row(services, req.id).state is RequestState.APPROVED)

            def cancel_offered():
                message = fake_slack.message(CHANNEL, req.message_ts)
                return [e["action_id"] for b in message["blocks"] if b["type"] == "actions"
                        for e in b["elements"]] == ["cr_cancel"] and message
            message = wait_until("the message showing it approved and waiting, with Cancel", cancel_offered)
            assert "waiting for its run to start" in json.dumps(message["blocks"])

            click(app, fake_slack, "cr_cancel", req, CAROL, "carol-cancels")
            assert f"only the requester (<@{ALICE.id}>) can cancel request #{req.id}" in told(fake_slack,
                                                                                                "carol-cancels")
            assert request_row(services, req.id).state is RequestState.APPROVED

            click(app, fake_slack, "cr_cancel", req, ALICE, "alice-cancels")
            wait_until("the request cancelled", lambda: request_row(services, req.id).state is RequestState.CANCELLED)
            assert "cancelled by alice" in request_row(services, req.id).state_reason
        services.runner = runner
        assert runner.sweep() == [] and runs_of(services, req.id) == []
        assert errors_logged(caplog) == []
    finally:
        services.runner = runner
        shut(services)


def test_cancel_and_the_runners_claim_race_and_exactly_one_wins(db_url, caplog):
    services = build(db_url)
    try:
        outcomes = []
        for _ in range(6):
            req_id = approved_with_no_runner(services)

            def act(who: str):
                if who == "requester":
                    return changes.decide(services, ALICE, req_id, "cancel").reply
                services.runner.execute(req_id)  # the claim, then the run, in this thread
                return None

            cancel_reply, _ = at_once(act, ["requester", "runner"])
            final = request_row(services, req_id)
            runs = runs_of(services, req_id)
            if cancel_reply is None:
                assert final.state is RequestState.CANCELLED and runs == []
                outcomes.append("cancelled")
            else:
                # told while the run runs, or after it (then the request is closed)
                assert cancel_reply.context["code"] in ("not_cancellable", "not_pending"), cancel_reply.context
                assert final.state is RequestState.SUCCEEDED and len(runs) == 1, final.state_reason
                outcomes.append("ran")
        assert len(outcomes) == 6
        events = rows(services, TimelineEvent, TimelineEvent.kind.in_(["request.cancelled", "run.started"]))
        assert len(events) == 6  # per request, one of the two
        assert errors_logged(caplog) == []
    finally:
        shut(services)
