"""Drill noise (``alerts.drill_noise_window``): critical alerts of a service arriving over
HTTP (Alertmanager webhook) while a drill of it runs, or within the window after it ended,
are stored and put on the drill's timeline, and open no incident (so nobody is paged); once
the window has passed (the services' clock), the same kind of alert opens one again."""
from __future__ import annotations

import json

import httpx

from bot.actor import Actor
from bot.config import parse_config
from bot.store.incident_tables import Alert, Incident
from bot.store.models import ChangeRequest, RequestState, TimelineEvent
from bot.wiring import build_services
from commands import router as actions
from commands.router import dispatch
from tests.app_server import running_app
from tests.helpers import delivered, request_row, rows, wait_until
from tests.paging_support import Clock, am_alert

TOKEN = "am-token-drill"
CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim: {kind: sandbox, timeout: 1.0, profiles: {orders: {lag: 20, jitter: 0}}}
approvals:
  approvers: [UBOB]
alerts:
  alertmanager_token: ${AM_TOKEN}
  drill_noise_window: 10m
services:
  - name: orders
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
    runbooks:
      drill:
        default:
          - name: Hold the standby under test
            action: wait
            timeout: 30s
            wait: {duration: 2s}
"""


def stored(services, fingerprint: str) -> list[Alert]:
    return rows(services, Alert, Alert.fingerprint == f"am:{fingerprint}")


def send(http: httpx.Client, app, fingerprint: str) -> None:
    body = {"version": "4", "groupKey": '{}:{service="orders"}', "truncatedAlerts": 0, "status": "firing",
            "receiver": "drbot", "groupLabels": {"service": "orders"}, "commonLabels": {"service": "orders"},
            "commonAnnotations": {}, "externalURL": "http://alertmanager.example:9093",
            "alerts": [am_alert("OrdersDown", fingerprint, "orders")]}
    r = http.post(f"{app.url}/alerts/alertmanager", content=json.dumps(body),
                  headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    assert app.services.inbox.drain(timeout=30), app.services.inbox.waiting()
    wait_until(f"alert {fingerprint} stored", lambda: stored(app.services, fingerprint))
    delivered(app.services)


def test_alerts_during_and_just_after_a_drill_are_noise_then_open_again(fake_slack, tmp_path):
    clock = Clock()
    services = build_services(parse_config(CONFIG, "drill-noise.yaml", {"AM_TOKEN": TOKEN}),
                              db_url=f"sqlite:///{tmp_path}/drbot.db", clock=clock)
    try:
        with running_app(services, fake_slack) as app, httpx.Client(timeout=10) as http:
            created = dispatch(services, Actor("UALICE", "alice", "slack", "C_OPS"), "drill orders default game day")
            assert created.template == "request_created", created
            drill_id = created.context["req"].id
            assert actions.click(services, Actor("UBOB", "bob", "slack", "C_OPS"), "cr_approve", str(drill_id)) is None
            wait_until("the drill running", lambda: request_row(services, drill_id).state is RequestState.RUNNING)

            send(http, app, "drill0001")  # during the drill
            assert rows(services, Incident) == []
            [alert] = stored(services, "drill0001")
            assert alert.incident_id is None and alert.status == "firing"
            [noise] = rows(services, TimelineEvent, TimelineEvent.kind == "alert.drill_noise")
            assert noise.request_id == drill_id and json.loads(noise.data)["fingerprint"] == "am:drill0001"

            wait_until("the drill over", lambda: request_row(services, drill_id).state is RequestState.SUCCEEDED, 20)
            clock.advance(9 * 60)  # 9 min after it ended: inside the window
            send(http, app, "drill0002")
            assert rows(services, Incident) == []
            assert len(rows(services, TimelineEvent, TimelineEvent.kind == "alert.drill_noise")) == 2

            clock.advance(2 * 60)  # 11 min after: a real alert again
            send(http, app, "real0003")
            [inc] = wait_until("an incident", lambda: rows(services, Incident))
            assert json.loads(inc.services) == ["orders"]
            assert stored(services, "real0003")[0].incident_id == inc.id
            assert len(rows(services, ChangeRequest)) == 1
    finally:
        services.runner.executor.shutdown(wait=True)
        services.engine.dispose()
