"""/metrics scraped over HTTP and parsed as Prometheus parses it, after a scripted failover
(signed slash command, approve click, 2-step run), an alert storm and refused clicks;
/healthz (liveness) and /readyz (readiness) with the database up, unreachable or behind."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from datetime import timedelta

import httpx
import pytest
import uvicorn
import yaml
from prometheus_client.parser import text_string_to_metric_families
from slack_bolt.adapter.socket_mode import SocketModeHandler
from sqlalchemy import text
from sqlmodel import Session

from bot.config import parse_config
from bot.store import make_engine
from bot.store.models import ChangeRequest, RequestKind, RequestState, Run
from bot.watch import watch_once
from bot.wiring import build_services
from commands.router import dispatch
from tests.app_server import running_app
from tests.postgres import temporary_schema
from tests.helpers import (ALICE, BOB, CAROL, ROOT, TWO_STEP_CONFIG, answered, delivered, free_port, request_row,
                           rows, wait_until)
from tests.test_alerts_http import am_alert, am_payload
from transports.http import build_http_app
from transports.slack.app import SlackSettings, build_app

CHANNEL = "C_INC"
AM_TOKEN = "am-token-for-metrics-0123456789"
CONFIG = TWO_STEP_CONFIG + f"""
alerts:
  alertmanager_token: {AM_TOKEN}
"""


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics: (name, labels) -> value, parsed by prometheus_client."""
    r = httpx.get(url + "/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def metered(tmp_path):
    services = build_services(parse_config(CONFIG, "metrics.yaml", {}), db_url=f"sqlite:///{tmp_path}/m.db")
    yield services
    services.engine.dispose()


def test_metrics_count_a_failover_an_alert_storm_and_refused_clicks(metered, fake_slack):
    services = metered
    with running_app(services, fake_slack) as app:
        assert app.sender.slash_command("failover orders to us-west-2 region degraded", user_id=ALICE.id,
                                        user_name="alice", channel_id=CHANNEL,
                                        response_url=fake_slack.response_url("ask")).status_code == 200
        req = wait_until("the request's message", lambda: (q := rows(services, ChangeRequest)) and q[0].message_ts
                         and q[0])
        message = fake_slack.message(CHANNEL, req.message_ts)
        # refused: Carol approves nothing (not an approver), Alice may not approve her own request
        for who in (CAROL, ALICE):
            assert app.sender.block_action("cr_approve", str(req.id), user_id=who.id, user_name=who.name,
                                           message=message, response_url=fake_slack.response_url(who.id)
                                           ).status_code == 200
            answered(fake_slack, who.id)  # decided (refused) before Bob approves
        assert app.sender.block_action("cr_approve", str(req.id), user_id=BOB.id, user_name="bob", message=message,
                                       response_url=fake_slack.response_url("bob")).status_code == 200
        done = wait_until("the run to end", lambda: request_row(services, req.id).state in (
            RequestState.SUCCEEDED, RequestState.FAILED) and request_row(services, req.id))
        assert done.state is RequestState.SUCCEEDED, done.state_reason

        # the storm: 300 alerts in 3 notifications, and 2 with a wrong token
        headers = {"Authorization": f"Bearer {AM_TOKEN}", "Content-Type": "application/json"}
        for part in range(3):
            payload = am_payload([am_alert("OrdersReplicaLagHigh", f"{part:02d}{i:014x}", severity="warning")
                                  for i in range(100)])
            r = httpx.post(app.url + "/alerts/alertmanager", content=json.dumps(payload), headers=headers, timeout=30)
            assert r.status_code in (200, 202), r.text
        for token in ("wrong", AM_TOKEN + "x"):
            r = httpx.post(app.url + "/alerts/alertmanager", content=json.dumps(am_payload([am_alert("X", "ff")])),
                           headers={**headers, "Authorization": f"Bearer {token}"}, timeout=10)
            assert r.status_code == 401
        delivered(services)
        watch_once(services)  # the readiness watch's verdicts, read back at scrape time
        m = scrape(app.url)

    assert value(m, "drbot_requests_total", channel="command", kind="failover", outcome="ok") == 1
    assert value(m, "drbot_change_requests_created_total", kind="failover") == 1
    assert value(m, "drbot_requests_total", channel="click", kind="cr_approve", outcome="refused") == 2
    assert value(m, "drbot_requests_total", channel="click", kind="cr_approve", outcome="ok") == 1
    assert value(m, "drbot_refusals_total", reason="not_approver") == 1
    assert value(m, "drbot_refusals_total", reason="own_request") == 1
    assert value(m, "drbot_decisions_total", verb="approve", outcome="approved") == 1
    assert value(m, "drbot_decisions_total", verb="approve", outcome="not_approver") == 1
    assert value(m, "drbot_runs_started_total", kind="failover") == 1
    assert value(m, "drbot_run_duration_seconds_count", kind="failover", outcome="succeeded") == 1
    for action in ("database.switchover", "traffic.shift"):
        assert value(m, "drbot_step_duration_seconds_count", action=action, outcome="succeeded") == 1
    assert value(m, "drbot_last_run_rto_seconds", service="orders") is not None
    assert value(m, "drbot_last_run_rpo_seconds", service="orders") is not None
    assert value(m, "drbot_alerts_received_total", endpoint="alertmanager") == 300
    assert value(m, "drbot_alerts_rejected_total", endpoint="alertmanager", reason="unauthenticated") == 2
    assert value(m, "drbot_slack_api_calls_total", method="chat.postMessage", outcome="ok") >= 1
    assert value(m, "drbot_slack_rate_limited_total", method="chat.postMessage") is None
    assert value(m, "drbot_service_ready", service="orders") in (0.0, 1.0)
    assert sum(v for (name, labels), v in m.items()
               if name == "drbot_service_verdict" and ("service", "orders") in labels) == 1
    assert value(m, "drbot_scheduler_leader") == 0  # `drbot run` starts the scheduler; this app did not
    assert value(m, "drbot_database_up") == 1


def test_outbox_depth_and_age_and_slack_429s(metered, fake_slack):
    services = metered
    fake_slack.outage("chat.", status=429, error="ratelimited", retry_after=1)
    with running_app(services, fake_slack) as app:
        dispatch(services, ALICE, "failover orders to us-west-2 region degraded")
        wait_until("a rate-limited post", lambda: any(c.status == 429 for c in fake_slack.calls()))
        m = scrape(app.url)
        fake_slack.heal()
    assert value(m, "drbot_slack_rate_limited_total", method="chat.postMessage") >= 1
    assert value(m, "drbot_slack_api_calls_total", method="chat.postMessage", outcome="rate_limited") >= 1
    depth = {dict(labels)["kind"]: v for (name, labels), v in m.items() if name == "drbot_outbox_depth"}
    assert sum(depth.values()) >= 1, m
    ages = [v for (name, _), v in m.items() if name == "drbot_outbox_oldest_age_seconds"]
    assert ages and all(a >= 0 for a in ages)


def test_healthz_is_alive_while_readyz_says_the_database_is_unreachable(services, fake_slack):
    with running_app(services, fake_slack) as app:
        assert httpx.get(app.url + "/readyz").status_code == 200
        working = services.engine
        services.engine = make_engine(f"postgresql+psycopg://drbot@127.0.0.1:{free_port()}/drbot")
        try:
            r = httpx.get(app.url + "/readyz", timeout=10)
            assert r.status_code == 503
            assert r.json() == {"ok": False, "reason": "database unreachable: OperationalError"}
            assert httpx.get(app.url + "/healthz").status_code == 200
            m = scrape(app.url)  # still answers, saying the database is down
            assert value(m, "drbot_database_up") == 0
        finally:
            services.engine.dispose()
            services.engine = working
        assert httpx.get(app.url + "/readyz").status_code == 200


def test_readyz_503_when_postgresql_stops_answering(pg_url, fake_slack, sandbox_config):
    """Ready on PostgreSQL; then the same database behind a port where nothing listens (as
    when the server is stopped): 503, while /healthz stays 200 (no restart by liveness)."""
    with temporary_schema(pg_url) as url:  # never the database's public schema: other runs share it
        _readyz_follows_the_database(build_services(sandbox_config, db_url=url), fake_slack)


def _readyz_follows_the_database(services, fake_slack) -> None:
    try:
        with running_app(services, fake_slack) as app:
            assert httpx.get(app.url + "/readyz").json()["database"] == "ok"
            working = services.engine
            services.engine = make_engine(working.url.set(port=free_port()).render_as_string(hide_password=False))
            try:
                r = httpx.get(app.url + "/readyz", timeout=10)
                assert r.status_code == 503 and r.json()["reason"].startswith("database unreachable")
                assert httpx.get(app.url + "/healthz").json() == {"ok": True}
            finally:
                services.engine.dispose()
                services.engine = working
            assert httpx.get(app.url + "/readyz").status_code == 200
    finally:
        services.engine.dispose()


def test_readyz_503_while_the_schema_is_behind(services, fake_slack):
    with running_app(services, fake_slack) as app:
        with services.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0001_baseline'"))
        r = httpx.get(app.url + "/readyz", timeout=10)
        assert r.status_code == 503 and "drbot db upgrade" in r.json()["reason"]
        assert httpx.get(app.url + "/healthz").status_code == 200


RULES = ROOT / "deploy" / "prometheus-rules.yaml"


def test_example_alert_rules_parse_and_name_only_metrics_drbot_serves(services, fake_slack):
    rules = yaml.safe_load(RULES.read_text())
    [group] = rules["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert {"DrbotOutboxStuck", "DrbotSchedulerLeaderAbsent", "DrbotServiceNotReady"} <= set(alerts)
    for rule in alerts.values():
        assert rule["expr"] and rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]
    with running_app(services, fake_slack) as app:
        text_format = httpx.get(app.url + "/metrics").text
    served = set()
    for family in text_string_to_metric_families(text_format):
        served |= {family.name, family.name + "_total"} | {s.name for s in family.samples}
    named = {n for rule in alerts.values() for n in re.findall(r"\bdrbot_[a-z_]+", rule["expr"])}
    assert named and named <= served, named - served
    promtool = shutil.which("promtool")
    if promtool:  # Debian's prometheus package
        done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


def test_scheduler_leadership_is_a_gauge(services, fake_slack):
    with running_app(services, fake_slack) as app:
        assert value(scrape(app.url), "drbot_scheduler_leader") == 0
        services.scheduler.start()
        try:
            wait_until("leadership", lambda: services.scheduler.is_leader)
            assert value(scrape(app.url), "drbot_scheduler_leader") == 1
        finally:
            services.scheduler.stop(wait=False)
        assert value(scrape(app.url), "drbot_scheduler_leader") == 0


def test_readyz_503_while_socket_mode_is_not_connected(services, fake_slack):
    """Socket Mode: the handler `drbot run` builds, before it connects (or after Slack
    dropped it): not ready, alive."""
    app = build_app(services, SlackSettings(bot_token="xoxb-test-token", signing_secret=None,
                                            api_url=fake_slack.base_url))
    handler = SocketModeHandler(app, "xapp-1-A0-1-notconnected")
    server = uvicorn.Server(uvicorn.Config(build_http_app(services, None, socket_handler=handler),
                                           host="127.0.0.1", port=free_port(), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until("the server", lambda: server.started)
        url = f"http://127.0.0.1:{server.config.port}"
        r = httpx.get(url + "/readyz", timeout=10)
        assert r.status_code == 503 and r.json()["reason"] == "not connected to Slack (Socket Mode)"
        assert httpx.get(url + "/healthz").status_code == 200
        assert httpx.post(url + "/slack/events", content=b"{}").status_code == 404  # not served in Socket Mode
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        handler.close()


def test_last_measured_rto_and_rpo_come_from_the_database_for_every_replica(tmp_path):
    """Two replicas on one database: the one that did not run anything reports the same last
    RTO/RPO as the one that did, and the newest measured run per service wins."""
    url = f"sqlite:///{tmp_path}/m.db"
    ran, other = (build_services(parse_config(CONFIG, "metrics.yaml", {}), db_url=url) for _ in range(2))
    with Session(ran.engine) as s:
        for minutes, rto, rpo, state in ((30, 400.0, 9.0, RequestState.SUCCEEDED), (10, 250.0, None, RequestState.SUCCEEDED),
                                         (20, 300.0, 4.0, RequestState.SUCCEEDED), (1, None, None, RequestState.FAILED)):
            at = ran.clock() - timedelta(minutes=minutes)
            req = ChangeRequest(kind=RequestKind.FAILOVER, service="orders", requester="UALICE", state=state,
                                expires_at=at)
            s.add(req)
            s.flush()
            s.add(Run(request_id=req.id, kind=RequestKind.FAILOVER, service="orders", state=state,
                      approved_at=at, started_at=at, ended_at=at, measured_rto_s=rto, measured_rpo_s=rpo))
        s.commit()  # the newest run failed and measured nothing: the one 10 minutes ago is the last measured
    for replica in (ran, other):
        samples = {(s.name, frozenset(s.labels.items())): s.value for f in
                   text_string_to_metric_families(replica.metrics.exposition().decode()) for s in f.samples}
        assert value(samples, "drbot_last_run_rto_seconds", service="orders") == 250.0
        assert value(samples, "drbot_last_run_rpo_seconds", service="orders") is None  # that run could not measure it
        replica.engine.dispose()
