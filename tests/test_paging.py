"""Paging through PagerDuty (Events API v2) and Opsgenie (Alert API), end to end over HTTP.

The real app runs under uvicorn: alerts arrive as Alertmanager webhooks, commands as
slash commands signed as Slack signs them, the pagers' webhooks signed as PagerDuty signs
them; the outbox worker delivers to local HTTP fakes of PagerDuty and Opsgenie
(tests/fakes/pagerduty_api.py, opsgenie_api.py) and to the FakeSlack.

What is proven: an alert storm opening a sev2 pages the on-call once (one dedup key,
one trigger); a second incident pages separately (its service's own routing key);
resolving the incident resolves its pages, a /dr page of a target included; Opsgenie
the same way (a 500 retried); a refused page gives up with a notice in the channel; a
signed acknowledgement shows "acknowledged by NAME" in the channel and on the timeline,
once per webhook event; a bad signature is 401; /dr page pages a target and refuses an
unknown one with did-you-mean. The policy without HTTP (severity changes, a 429 retried
on the services' clock, config mistakes) is in tests/test_paging_policy.py."""
from __future__ import annotations

import json

from bot.events import PageSend
from bot.store.incident_tables import Incident, OutboxItem, OutboxState
from bot.store.models import TimelineEvent
from commands.router import dispatch
from tests.app_server import running_app
from tests.helpers import rows
from tests.paging_support import (  # noqa: F401 (fixtures)
    ALICE, OG_CONFIG, OG_KEY, OG_TOKEN, PD_CONFIG, PD_DBA, PD_DEFAULT, PD_PAYMENTS, build, delivered, env, http,
    incident_of, og, pd, pd_app, pd_webhook, posts, slash, storm, timeline,
)

# -- PagerDuty: alert storms, one page per incident, resolve -------------------------------------

def test_an_alert_storm_pages_once_a_second_incident_separately_and_resolve_resolves(pd_app, pd, fake_slack, http):
    app, services = pd_app, pd_app.services
    storm(http, app, "orders", 60, "ord")
    delivered(services)
    orders = incident_of(services, "orders")
    assert orders.severity == "sev2"
    key = f"drbot-incident-{orders.id}"
    [alert] = pd.alerts_for(key)  # sixty alerts, one page
    assert (alert.routing_key, alert.status, alert.triggers, alert.severity) == (PD_DEFAULT, "triggered", 1, "error")
    assert alert.summary.startswith(f"[sev2] drbot incident #{orders.id}") and "(orders)" in alert.summary
    [trigger] = pd.enqueued("trigger")
    assert trigger.json["dedup_key"] == key and trigger.json["payload"]["source"] == "orders"
    assert trigger.json["payload"]["custom_details"]["drbot_incident"] == orders.id

    storm(http, app, "orders", 20, "more")  # the storm goes on: still one page
    delivered(services)
    assert len(pd.enqueued("trigger")) == 1 and len(pd.alerts_for(key)) == 1

    storm(http, app, "payments", 5, "pay")  # another service, its own incident and routing key
    delivered(services)
    payments = incident_of(services, "payments")
    [paid] = pd.alerts_for(f"drbot-incident-{payments.id}")
    assert paid.routing_key == PD_PAYMENTS and paid.status == "triggered"
    [sent] = timeline(services, orders.id, "page.sent")
    assert "PagerDuty default routing key" in sent.text and PD_DEFAULT not in sent.text  # never the key itself

    answer = slash(app, fake_slack, "incident status resolved fixed the primary", orders.channel_id, "resolve")
    assert "resolved" in json.dumps(answer)
    delivered(services)
    assert pd.open_alert(PD_DEFAULT, key) is None and alert.status == "resolved"
    [resolve] = pd.enqueued("resolve")
    assert resolve.json == {"routing_key": PD_DEFAULT, "event_action": "resolve", "dedup_key": key}
    assert timeline(services, orders.id, "page.resolved")
    assert paid.status == "triggered"  # the other incident's page is untouched


def test_a_signed_acknowledgement_shows_in_the_channel_and_on_the_timeline(pd_app, pd, fake_slack, http):
    app, services = pd_app, pd_app.services
    storm(http, app, "orders", 3, "ack")
    delivered(services)
    inc = incident_of(services, "orders")
    key = f"drbot-incident-{inc.id}"

    # a rotation: two signatures, one made with an old secret; one valid is enough
    old = "v1=" + "0" * 64
    r = pd_webhook(http, app, "incident.acknowledged", key, "Jane Doe", "01EVT0ACK", extra_signatures=(old,))
    assert r.status_code == 200 and r.json() == {"ok": True, "incident": inc.id, "what": "acknowledged"}, r.text
    assert pd_webhook(http, app, "incident.acknowledged", key, "Jane Doe", "01EVT0ACK").status_code == 200  # again
    delivered(services)
    said = [t for t in posts(fake_slack, inc.channel_id) if "acknowledged by Jane Doe" in t]
    assert len(said) == 1, posts(fake_slack, inc.channel_id)  # PagerDuty delivered it twice: told once
    [event] = timeline(services, inc.id, "page.acknowledged")
    assert event.text == "acknowledged by Jane Doe in PagerDuty"

    # the timeline command shows it too
    answer = slash(app, fake_slack, "timeline", inc.channel_id, "timeline")
    delivered(services)
    shown = json.dumps(answer) + json.dumps([c.params for c in fake_slack.calls("chat.postMessage")])
    assert "acknowledged by Jane Doe" in shown

    bad = pd_webhook(http, app, "incident.acknowledged", key, "Mallory", "01EVT0BAD", secret="not-the-secret")
    assert bad.status_code == 401 and "X-PagerDuty-Signature" in bad.json()["error"]
    unsigned = http.post(f"{app.url}/pager/pagerduty", content=b'{"event": {}}',
                         headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    unknown = pd_webhook(http, app, "incident.acknowledged", "someone-elses-key", "Bob", "01EVT0UNK")
    assert unknown.status_code == 202 and unknown.json()["ignored"] == "not a drbot incident"
    other = pd_webhook(http, app, "incident.priority_updated", key, "Bob", "01EVT0PRI")
    assert other.status_code == 202
    assert len(timeline(services, inc.id, "page.acknowledged")) == 1
    off = http.post(f"{app.url}/pager/opsgenie", content=b"{}", headers={"X-Drbot-Token": "x"})
    assert off.status_code == 404  # not configured: off, and says which key turns it on
    assert "opsgenie_webhook_token" in off.json()["error"]


# -- /dr page ------------------------------------------------------------------------------------

def test_dr_page_pages_a_target_about_the_incident_and_refuses_an_unknown_one(pd_app, pd, fake_slack, http):
    app, services = pd_app, pd_app.services
    storm(http, app, "orders", 2, "pg")
    delivered(services)
    inc = incident_of(services, "orders")

    answer = slash(app, fake_slack, "page dba replica lag is 40 minutes", inc.channel_id, "page")
    assert "Paging *dba* through PagerDuty" in json.dumps(answer), answer
    assert f"incident #{inc.id}" in answer["text"] or f"incident #{inc.id}" in json.dumps(answer)
    delivered(services)
    [dba] = [a for a in pd.alerts if a.routing_key == PD_DBA]
    assert dba.dedup_key == f"drbot-incident-{inc.id}" and "replica lag is 40 minutes" in dba.summary
    [asked] = timeline(services, inc.id, "page.requested")
    assert asked.actor == "UALICE" and asked.text == "replica lag is 40 minutes"
    assert len(timeline(services, inc.id, "page.sent")) == 2  # the on-call, then the dba
    stored = " ".join(i.payload for i in rows(services, OutboxItem)) + " ".join(
        e.text + e.data for e in rows(services, TimelineEvent))
    assert PD_DBA not in stored and PD_DEFAULT not in stored  # no routing key is ever stored

    typo = slash(app, fake_slack, "page dbx help", inc.channel_id, "typo")
    assert "'dbx' is not a paging target or a service (did you mean 'dba'?)" in json.dumps(typo), typo
    listing = slash(app, fake_slack, "page", inc.channel_id, "list")
    assert "the database on-call" in json.dumps(listing) and "payments" in json.dumps(listing)
    refused = slash(app, fake_slack, "page dba wake up", inc.channel_id, "refused", user_id="UMALLORY")
    assert "incident_update" in json.dumps(refused) or "may not" in json.dumps(refused), refused
    assert len([a for a in pd.enqueued("trigger") if a.json["routing_key"] == PD_DBA]) == 1  # nothing more sent

    slash(app, fake_slack, "incident status resolved", inc.channel_id, "resolve")
    delivered(services)
    assert {a.routing_key: a.status for a in pd.alerts_for(f"drbot-incident-{inc.id}")} == {
        PD_DEFAULT: "resolved", PD_DBA: "resolved"}  # the target's page is resolved with the incident


def test_a_page_the_pager_refuses_gives_up_and_the_channel_is_told(tmp_path, pd, fake_slack):
    services = build(PD_CONFIG, f"sqlite:///{tmp_path}/drbot.db", env(pd=pd))
    pd.faults.fail(400, body={"status": "invalid event", "message": "Event object is invalid",
                              "errors": ["'payload.summary' is missing or blank"]})
    with running_app(services, fake_slack):
        dispatch(services, ALICE, "incident open Payments down sev2 payments")
        delivered(services)
        [item] = rows(services, OutboxItem, OutboxItem.kind == PageSend.KIND)
        assert item.state is OutboxState.DEAD and "payload.summary" in item.last_error
        [inc] = rows(services, Incident)
        told = [t for t in posts(fake_slack, inc.channel_id) if "failed" in t]
        assert told and "PagerDuty" in told[0], posts(fake_slack, inc.channel_id)
        [failed] = timeline(services, inc.id, "page.failed")
        assert "Event object is invalid" in failed.text
    services.engine.dispose()


# -- Opsgenie -----------------------------------------------------------------------------------------

def test_opsgenie_pages_once_resolves_and_reflects_an_acknowledgement(og, fake_slack, http, tmp_path):
    services = build(OG_CONFIG, f"sqlite:///{tmp_path}/drbot.db", env(og=og))
    og.faults.fail(500)  # Opsgenie fails the first create: retried with backoff
    with running_app(services, fake_slack) as app:
        storm(http, app, "orders", 30, "og")
        delivered(services)
        inc = incident_of(services, "orders")
        alias = f"drbot-incident-{inc.id}"
        [alert] = og.alerts
        assert (alert.alias, alert.priority, alert.count, alert.status) == (alias, "P2", 1, "open")
        assert [c.status for c in og.calls("POST", "/v2/alerts")] == [500, 202]
        assert og.calls("POST", "/v2/alerts")[1].headers["authorization"] == f"GenieKey {OG_KEY}"
        assert alert.responders == [{"type": "team", "name": "sre-oncall"}]
        assert alert.details["drbot_incident"] == str(inc.id)

        hook = {"action": "Acknowledge", "alert": {"alertId": "8418d193-2dab-4490-b331-8c02cdd196b7",
                                                   "alias": alias, "message": alert.message,
                                                   "username": "jane@example.com", "updatedAt": 1714565100000},
                "source": {"name": "", "type": "mobile"}, "integrationName": "drbot", "integrationType": "Webhook"}
        wrong = http.post(f"{app.url}/pager/opsgenie", json=hook, headers={"X-Drbot-Token": "guess"})
        assert wrong.status_code == 401
        r = http.post(f"{app.url}/pager/opsgenie", json=hook, headers={"X-Drbot-Token": OG_TOKEN})
        assert r.status_code == 200, r.text
        delivered(services)
        assert any("acknowledged by jane@example.com" in t for t in posts(fake_slack, inc.channel_id))
        assert timeline(services, inc.id, "page.acknowledged")[0].text == "acknowledged by jane@example.com in Opsgenie"

        slash(app, fake_slack, "incident status resolved", inc.channel_id, "resolve")
        delivered(services)
        assert alert.status == "closed"
        [close] = [w for w in og.writes() if w.path.endswith("/close")]
        assert close.path == f"/v2/alerts/{alias}/close" and close.query == {"identifierType": ["alias"]}
    services.engine.dispose()
