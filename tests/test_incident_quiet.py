"""An incident whose alerts have all resolved is told so in its channel and offered a
Resolve button; it is never resolved by itself. And a finished request's message drops
its expiry.

Alerts arrive as Alertmanager sends them, over HTTP into the running app; the channel, the
notice and the timeline are posted by the outbox worker to the fake Slack Web API; the
Resolve button is clicked with a signed block action, as Slack sends it. Nothing of drbot
is mocked.
"""
from __future__ import annotations

import json

import httpx
import pytest

from sqlmodel import select

from bot.actor import Actor
from bot.alerts.intake import ingest
from bot.alerts.normalise import NormalisedAlert
from bot.config import parse_config
from bot.delivery.quiet import deliver_alerts_resolved
from bot.outbox.queue import parse
from bot.request_view import message
from bot.store import session_scope
from bot.store.incident_tables import Incident, IncidentStatus, OutboxItem
from bot.store.models import RequestState, TimelineEvent
from bot.wiring import build_services
from commands.router import click, dispatch
from tests.app_server import running_app
from tests.helpers import request_row, rows, wait_until

AM_TOKEN = "am-token-quiet"
LAG_1, LAG_2 = "1a2b3c4d5e6f7081", "92a3b4c5d6e7f809"
RESPONDER, OBSERVER = "UBOB", "UEVE"

CONFIG = f"""
regions: [us-east-1, us-west-2]
sources:
  sim:
    kind: sandbox
    timeout: 1.0
    profiles:
      orders: {{lag: 2, jitter: 0}}
services:
  - name: orders
    tier: critical
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
        - name: Shift traffic
          action: traffic.shift
          timeout: 5s
          verify: {{traffic_in: target, within: 5s, interval: 100ms}}
approvals:
  required_approvals: 1
  approvers: [UALICE, UBOB]
alerts:
  alertmanager_token: {AM_TOKEN}
incidents:
  responders: [UALICE, UBOB]
permissions:
  incident_update: [{RESPONDER}]
"""


@pytest.fixture
def services(db_url):
    svc = build_services(parse_config(CONFIG, "quiet-test.yaml", {}), db_url=db_url)
    yield svc
    svc.engine.dispose()


@pytest.fixture
def app(services, fake_slack):
    with running_app(services, fake_slack) as running:
        yield running


def am_alert(fingerprint: str, status: str, instance: str) -> dict:
    return {"status": status,
            "labels": {"alertname": "OrdersReplicaLagHigh", "service": "orders", "severity": "critical",
                       "region": "us-west-2", "instance": instance},
            "annotations": {"summary": f"replica lag high on {instance}"},
            "startsAt": "2024-05-01T12:00:00.000Z",
            "endsAt": "2024-05-01T12:20:00.000Z" if status == "resolved" else "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example:9090/graph", "fingerprint": fingerprint}


def send(app, *alerts: dict) -> None:
    """Post a notification, wait until it is processed and its posts are delivered."""
    payload = {"version": "4", "groupKey": '{}:{service="orders"}', "truncatedAlerts": 0,
               "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
               "receiver": "drbot", "groupLabels": {"service": "orders"}, "commonLabels": {"service": "orders"},
               "commonAnnotations": {}, "externalURL": "http://alertmanager.example:9093", "alerts": list(alerts)}
    r = httpx.post(f"{app.url}/alerts/alertmanager", json=payload, headers={"Authorization": f"Bearer {AM_TOKEN}"},
                   timeout=10)
    assert r.status_code == 200 and r.json()["accepted"] == len(alerts), r.text
    assert app.services.inbox.drain(timeout=30)
    assert app.services.outbox.drain(timeout=30)


def notices(fake_slack, channel: str) -> list:
    return [c for c in fake_slack.calls("chat.postMessage") if c.params.get("channel") == channel
            and any(e.get("action_id") == "inc_resolve" for b in c.blocks for e in b.get("elements", []))]


def incident(services) -> Incident:
    [inc] = rows(services, Incident)
    return inc


def first_notice(fake_slack, channel: str) -> dict:
    """The first notice in the channel, as the channel shows it now (ts, blocks)."""
    found = sorted((m for (c, _), m in list(fake_slack.messages.items()) if c == channel
                    and any(e.get("action_id") == "inc_resolve" for b in m.get("blocks") or []
                            for e in b.get("elements", []))), key=lambda m: float(m["ts"]))
    return found[0]


def click_resolve(app, fake_slack, channel: str, user: str, name: str, answered: bool = True):
    """Click the first notice's Resolve button as ``user``; returns what only the clicker saw
    (``answered``: a refusal; a click that resolves says nothing, the channel shows it)."""
    msg = first_notice(fake_slack, channel)
    before = len(fake_slack.calls("response_url"))
    r = app.sender.block_action("inc_resolve", str(incident(app.services).id), user_id=user, channel_id=channel,
                                message=msg, response_url=fake_slack.response_url(name))
    assert r.status_code == 200
    if not answered:
        return None
    return wait_until(f"the answer to {user}'s click", lambda: fake_slack.calls("response_url")[before:], 10)


def test_all_alerts_resolved_tells_the_channel_and_only_a_person_resolves(app, services, fake_slack):
    send(app, am_alert(LAG_1, "firing", "replica-1"), am_alert(LAG_2, "firing", "replica-2"))
    inc_id = incident(services).id
    channel = incident(services).channel_id
    assert channel

    # one of two resolves: nothing to say yet
    send(app, am_alert(LAG_1, "resolved", "replica-1"))
    assert notices(fake_slack, channel) == []

    # the last one resolves: the channel is told, with a Resolve button; the incident stays open
    send(app, am_alert(LAG_2, "resolved", "replica-2"))
    [notice] = notices(fake_slack, channel)
    shown = json.dumps(notice.blocks)
    assert "All 2 alerts of incident" in shown and "stays *investigating*" in shown
    [button] = [e for b in notice.blocks for e in b.get("elements", []) if e.get("action_id") == "inc_resolve"]
    assert button["value"] == str(inc_id) and button["confirm"]["confirm"]["text"] == "Resolve"
    assert incident(services).status is IncidentStatus.INVESTIGATING
    assert [e.kind for e in rows(services, TimelineEvent, TimelineEvent.incident_id == inc_id)
            if e.kind == "incident.alerts_resolved"] == ["incident.alerts_resolved"]
    # Alertmanager repeats the resolved group: no second notice
    send(app, am_alert(LAG_1, "resolved", "replica-1"), am_alert(LAG_2, "resolved", "replica-2"))
    assert len(notices(fake_slack, channel)) == 1

    # someone who may not change incidents is refused, and nothing changes
    [answer] = click_resolve(app, fake_slack, channel, OBSERVER, "eve")
    assert "you may not change incidents (status, severity, who holds a role)" in answer.params["text"]
    assert incident(services).status is IncidentStatus.INVESTIGATING

    # an alert fires again: the button refuses, saying which
    send(app, am_alert(LAG_1, "firing", "replica-1"))
    [answer] = click_resolve(app, fake_slack, channel, RESPONDER, "bob-early")
    assert "was not resolved: 1 of its alerts fires again (replica lag high on replica-1)" in answer.params["text"]
    assert incident(services).status is IncidentStatus.INVESTIGATING

    # it resolves again: a second notice; the responder resolves the incident with a click
    send(app, am_alert(LAG_1, "resolved", "replica-1"))
    assert len(notices(fake_slack, channel)) == 2
    click_resolve(app, fake_slack, channel, RESPONDER, "bob", answered=False)
    wait_until("the incident to be resolved", lambda: incident(services).status is IncidentStatus.RESOLVED, 10)
    assert services.outbox.drain(timeout=30)
    [status] = rows(services, TimelineEvent, TimelineEvent.incident_id == inc_id,
                    TimelineEvent.kind == "incident.status")
    assert status.actor == RESPONDER and json.loads(status.data)["to"] == "resolved"
    timeline = [c for c in fake_slack.calls("chat.postMessage") if c.params.get("channel") == channel
                and c.params["text"].startswith(f"Timeline of incident #{inc_id}")]
    assert len(timeline) == 1
    assert "the incident stays open until someone resolves it" in json.dumps(timeline[0].blocks)

    # a late click on the old notice changes nothing
    [answer] = click_resolve(app, fake_slack, channel, RESPONDER, "bob-late")
    assert f"incident #{inc_id} is not open any more" in answer.params["text"]
    assert len(rows(services, TimelineEvent, TimelineEvent.incident_id == inc_id,
                    TimelineEvent.kind == "incident.status")) == 1


def test_a_notice_gone_stale_before_delivery_is_not_posted(services, fake_slack):
    """Queued when the last alert resolved, delivered after an alert fired again: not posted."""
    def alert(fp: str, status: str) -> NormalisedAlert:
        return NormalisedAlert(fingerprint=fp, source="alertmanager", service="orders", service_hint="orders",
                               region="us-west-2", severity="critical", signal="lag", status=status,
                               summary=f"lag {fp}", labels={}, links=())

    [inc_id] = ingest(services, [alert("a", "firing")]).incidents_opened
    ingest(services, [alert("a", "resolved")])
    ingest(services, [alert("a", "firing")])
    with session_scope(services.engine) as s:
        [item] = s.exec(select(OutboxItem).where(OutboxItem.kind == "incident.alerts_resolved")).all()
        s.get(Incident, inc_id).channel_id = "C_INC"
        event = parse(item)
    outcome = deliver_alerts_resolved(services, event, None, item.id)
    assert outcome.delivered and outcome.result == {"posted": False, "why": "an alert fires again"}


def test_a_finished_requests_message_drops_its_expiry(services):
    alice, bob = Actor(id="UALICE", name="alice"), Actor(id="UBOB", name="bob")
    reply = dispatch(services, alice, "failover orders us-east-1 is down")
    assert reply.template not in ("usage", "error", "refused"), reply.context
    req_id = reply.context["req"].id

    def shown() -> tuple[str, str]:
        with session_scope(services.engine) as s:
            msg = message(services, s, req_id)
        blocks, _ = services.renderer.blocks(msg)
        return json.dumps(blocks, ensure_ascii=False), services.renderer.text(msg)

    blocks, text = shown()
    assert " · expires " in blocks and "; expires " in text  # pending: when it expires
    assert click(services, bob, "cr_approve", str(req_id)) is None  # approved: the run starts
    wait_until("the failover to finish", lambda: request_row(services, req_id).state is RequestState.SUCCEEDED, 30)
    blocks, text = shown()
    assert "expires" not in blocks and "expires" not in text
    assert "succeeded" in text
