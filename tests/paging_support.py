"""What the paging tests share (tests/test_paging.py over HTTP, tests/test_paging_policy.py
against the core and the backends): the configs, the people, a clock the test moves, the
fakes of PagerDuty and Opsgenie as fixtures, and helpers that read back what happened."""
from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from bot.actor import Actor
from bot.config import parse_config
from bot.store.incident_tables import Incident
from bot.store.models import TimelineEvent
from bot.wiring import build_services
from tests.app_server import running_app
from tests.fakes.opsgenie_api import FakeOpsgenie
from tests.fakes.pagerduty_api import FakePagerDuty
from tests.helpers import rows, wait_until

PD_DEFAULT = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
PD_PAYMENTS = "0123456789abcdef0123456789abcdef"
PD_DBA = "dbadbadbadbadbadbadbadbadbadba00"
PD_SECRET = "pd-webhook-secret-7f3e"
AM_TOKEN = "am-token-paging"
OG_KEY = "og-key-5d1c0a"
OG_TOKEN = "og-hook-token-93b2"

SERVICES = """
regions: [us-east-1, us-west-2]
services:
  - name: orders
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
  - name: payments
    rpo: 5m
    rto: 30m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
alerts:
  alertmanager_token: ${AM_TOKEN}
permissions:
  incident_open: [UALICE]
  incident_update: [UALICE]
  outbox_retry: [UALICE]
"""

PD_CONFIG = SERVICES + """
sources:
  sim: {kind: sandbox, timeout: 1.0, profiles: {orders: {lag: 20, jitter: 0}, payments: {lag: 20, jitter: 0}}}
  pd:
    kind: pagerduty
    routing_key: ${PD_DEFAULT}
    routing_keys:
      payments: ${PD_PAYMENTS}
    events_url: ${PD_URL}
paging:
  source: pd
  targets:
    dba: {routing_key: "${PD_DBA}", description: the database on-call}
  webhook_secret: ${PD_SECRET}
"""

OG_CONFIG = SERVICES + """
sources:
  sim: {kind: sandbox, timeout: 1.0, profiles: {orders: {lag: 20, jitter: 0}, payments: {lag: 20, jitter: 0}}}
  og:
    kind: opsgenie
    api_key: ${OG_KEY}
    api_url: ${OG_URL}
    responders: [{type: team, name: sre-oncall}]
paging:
  source: og
  opsgenie_webhook_token: ${OG_TOKEN}
"""

ALICE = Actor("UALICE", "alice", "slack")


class Clock:
    """The services' clock, moved forward by the test; never behind real time."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


# -- fixtures and helpers ----------------------------------------------------------------------

@pytest.fixture
def pd():
    with FakePagerDuty() as fake:
        yield fake


@pytest.fixture
def og():
    with FakeOpsgenie(OG_KEY) as fake:
        yield fake


def env(pd: FakePagerDuty | None = None, og: FakeOpsgenie | None = None) -> dict[str, str]:
    return {"AM_TOKEN": AM_TOKEN, "PD_DEFAULT": PD_DEFAULT, "PD_PAYMENTS": PD_PAYMENTS, "PD_DBA": PD_DBA,
            "PD_SECRET": PD_SECRET, "PD_URL": pd.url if pd else "http://127.0.0.1:9", "OG_KEY": OG_KEY,
            "OG_URL": og.url if og else "http://127.0.0.1:9", "OG_TOKEN": OG_TOKEN}


def build(text: str, db_url: str, environ: dict, **kwargs):
    return build_services(parse_config(text, "paging-test.yaml", environ), db_url=db_url, **kwargs)


@pytest.fixture
def pd_app(pd, fake_slack, db_url):
    services = build(PD_CONFIG, db_url, env(pd=pd))
    with running_app(services, fake_slack) as running:
        yield running
    services.engine.dispose()


@pytest.fixture
def http():
    with httpx.Client(timeout=10) as client:
        yield client


def am_alert(name: str, fingerprint: str, service: str, status: str = "firing") -> dict:
    return {"status": status, "labels": {"alertname": name, "service": service, "severity": "critical",
                                         "region": "us-east-1", "instance": fingerprint},
            "annotations": {"summary": f"{name} on {fingerprint}"}, "startsAt": "2024-05-01T12:00:00.000Z",
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus.example:9090/graph",
            "fingerprint": fingerprint}


def storm(http: httpx.Client, app, service: str, count: int, prefix: str) -> None:
    """``count`` critical alerts of ``service`` in Alertmanager webhooks of 10."""
    alerts = [am_alert(f"{service.title()}Down", f"{prefix}{i:04x}", service) for i in range(count)]
    for i in range(0, count, 10):
        part = alerts[i:i + 10]
        body = {"version": "4", "groupKey": f'{{}}:{{service="{service}"}}', "truncatedAlerts": 0,
                "status": "firing", "receiver": "drbot", "groupLabels": {"service": service},
                "commonLabels": {"service": service}, "commonAnnotations": {},
                "externalURL": "http://alertmanager.example:9093", "alerts": part}
        r = http.post(f"{app.url}/alerts/alertmanager", content=json.dumps(body),
                      headers={"Content-Type": "application/json", "Authorization": f"Bearer {AM_TOKEN}"})
        assert r.status_code == 200, r.text
    assert app.services.inbox.drain(timeout=30), app.services.inbox.waiting()


def incident_of(services, service: str) -> Incident:
    return next(i for i in rows(services, Incident) if json.loads(i.services) == [service])


def delivered(services) -> None:
    assert services.outbox.drain(timeout=30), "the outbox did not deliver everything"


def timeline(services, incident_id: int, kind: str) -> list[TimelineEvent]:
    return rows(services, TimelineEvent, TimelineEvent.incident_id == incident_id, TimelineEvent.kind == kind)


def slash(app, fake_slack, text: str, channel: str, name: str, user_id: str = "UALICE") -> dict:
    """A signed slash command; returns the answer it posted to its response_url."""
    r = app.sender.slash_command(text, user_id=user_id, channel_id=channel, response_url=fake_slack.response_url(name))
    assert r.status_code == 200, r.text
    [answer] = wait_until(f"the answer to /dr {text}", lambda: [
        c for c in fake_slack.calls("response_url") if c.params["_path"] == f"/response/{name}"])
    return answer.params


def posts(fake_slack, channel: str) -> list[str]:
    return [c.params.get("text", "") for c in fake_slack.calls("chat.postMessage")
            if c.params.get("channel") == channel]


def pd_webhook(http: httpx.Client, app, event_type: str, incident_key: str, agent: str, event_id: str,
               secret: str = PD_SECRET, extra_signatures: tuple[str, ...] = ()) -> httpx.Response:
    """A PagerDuty v3 webhook as PagerDuty sends it, signed with ``secret``."""
    body = json.dumps({"event": {
        "id": event_id, "event_type": event_type, "resource_type": "incident", "occurred_at": "2024-05-01T12:05:00Z",
        "agent": {"html_url": "https://acme.pagerduty.com/users/PJANE01", "id": "PJANE01",
                  "self": "https://api.pagerduty.com/users/PJANE01", "summary": agent, "type": "user_reference"},
        "client": None,
        "data": {"id": "Q0RIJJZL24RC6W", "type": "incident",
                 "self": "https://api.pagerduty.com/incidents/Q0RIJJZL24RC6W",
                 "html_url": "https://acme.pagerduty.com/incidents/Q0RIJJZL24RC6W", "number": 412,
                 "status": event_type.split(".")[1], "incident_key": incident_key, "title": "drbot incident",
                 "service": {"id": "PSVC01", "summary": "orders", "type": "service_reference"}}}}).encode()
    signature = "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    header = ",".join((*extra_signatures, signature))
    return http.post(f"{app.url}/pager/pagerduty", content=body,
                     headers={"Content-Type": "application/json", "X-PagerDuty-Signature": header})
