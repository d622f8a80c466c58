"""Incident command end to end (issue 15, "Done when"): one regional outage of orders, from
the first alert to the postmortem review reminder, over real HTTP.

The real app runs under uvicorn: the alert arrives as an Alertmanager webhook (bearer
token), every person's action as a slash command or button click signed as Slack signs
them; the outbox worker delivers to the fake Slack Web API and to local HTTP fakes of
PagerDuty (Events API v2 and REST ``GET /oncalls``), Statuspage and Jira. The services'
clock is moved by the test (tests/paging_support.py Clock); nothing waits real time for it.
The whole story runs on SQLite and on PostgreSQL (``db_url``).

The story, each step asserted at the fakes and in the rows:
1. a critical alert opens a sev2; the on-call is paged once (one trigger, dedup key
   ``drbot-incident-N``), also when Alertmanager sends the alert again;
2. ``/dr incident severity sev1 REASON`` by a permitted person: per the severity policy
   (``paging.severities`` holds sev1) the same PagerDuty alert is re-triggered at
   ``critical``, and the status page (``statuspage.publish.sev1: auto``) shows a major outage;
3. a commander claims the role with the pinned summary's Claim button;
4. a failover needs SRE + on-call (``approvals.slots``; the on-call person read from the
   PagerDuty schedule): after the SRE approves, the message shows the on-call slot open and
   no run starts; the on-call person's approval starts it;
5. the ops channel and the status page carry RTO/RPO and the affected region; the status
   page's link is posted in the incident channel;
6. follow-ups with owners are filed in Jira (with the way back to the incident);
7. ``/dr incident status resolved`` resolves the page (Events v2 resolve, same dedup key),
   and the postmortem draft uploaded at resolve lists the follow-ups with owners and issues;
8. the scheduler's reminder job posts the review reminder once the clock passes 48 h after
   resolve, once.

Beside it, the Jira backend on its own: a URL in a description is an ADF link.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta

import httpx
import pytest

from bot import jobs
from bot.config import parse_config
from bot.store.command_tables import FollowUp, IncidentRole
from bot.store.incident_tables import Incident, IncidentStatus
from bot.store.models import Approval, ChangeRequest, RequestState, Run, TimelineEvent
from bot.wiring import build_services
from integrations.jira import Jira, JiraOptions
from tests.app_server import running_app
from tests.fakes.jira_api import FakeJira
from tests.fakes.pagerduty_api import FakePagerDuty
from tests.fakes.statuspage_api import FakeStatuspage
from tests.helpers import answered, delivered, request_row, rows, wait_until
from tests.paging_support import Clock

AM_TOKEN = "am-token-scenario"
PD_KEY = "5c3e1a9b7d2f4e6a8c0b1d3f5e7a9c2b"
PD_TOKEN = "pd-rest-token-scenario"
SP_KEY = "sp-key-scenario"
COMPONENT = "cmp0orders01"
OPS = "C0OPSDR01"
SRE = "SSRE"
ALICE, BOB, CAROL, DAVE = "UALICE", "UBOB", "UCAROL", "UDAVE"
"""alice: incident_update; bob: in the SRE group; carol: on call (PagerDuty); dave: the commander."""

CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim: {kind: sandbox, timeout: 1.0, profiles: {orders: {lag: 20, jitter: 0}}}
  pd:
    kind: pagerduty
    routing_key: ${PD_KEY}
    events_url: ${PD_URL}
    api_url: ${PD_URL}
    api_token: ${PD_TOKEN}
    timeout: 2
  sp:
    kind: statuspage
    page_id: pg1
    api_key: ${SP_KEY}
    base_url: ${SP_URL}
    timeout: 5
    components:
      orders: ${SP_COMPONENT}
  jira:
    kind: jira
    base_url: ${JIRA_URL}
    email: drbot@example.com
    api_token: ${JIRA_TOKEN}
    project: OPS
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
        - name: Shift traffic
          action: traffic.shift
          timeout: 5s
          verify: {traffic_in: target, within: 5s, interval: 100ms}
        - name: Switch the database over
          action: database.switchover
          timeout: 5s
          verify: {writer_in: target, within: 5s, interval: 100ms}
alerts:
  alertmanager_token: ${AM_TOKEN}
paging:
  source: pd
  severities: [sev1, sev2]
  schedules:
    orders-primary: {schedule: PORDERS, description: the orders primary on-call}
  people:
    carol@example.com: UCAROL
approvals:
  expires: 30m
  slots:
    - {name: sre, from: [SSRE]}
    - {name: on-call, on_call: orders-primary}
statuspage:
  source: sp
  publish: {sev1: auto, sev2: auto, sev3: preview, sev4: skip}
incidents:
  ops_channel: C0OPSDR01
  commander_within: 10m
  review_within: 48h
  followups: {tracker: jira}
permissions:
  incident_open: [UALICE]
  incident_update: [UALICE]
"""


@pytest.fixture
def pd():
    with FakePagerDuty(api_token=PD_TOKEN) as fake:
        fake.on_call["PORDERS"] = [("PCAROL1", "Carol", "carol@example.com")]
        yield fake


@pytest.fixture
def page():
    with FakeStatuspage(page_id="pg1", api_key=SP_KEY) as fake:
        fake.add_component(COMPONENT, "Orders API")
        yield fake


@pytest.fixture
def jira():
    with FakeJira() as fake:
        yield fake


# -- helpers -------------------------------------------------------------------------------------

def alertmanager(http: httpx.Client, url: str, starts_at: datetime) -> None:
    """One firing critical alert of orders, as Alertmanager's webhook sends it."""
    alert = {"status": "firing", "labels": {"alertname": "OrdersDown", "service": "orders", "severity": "critical",
                                            "region": "us-east-1", "instance": "orders-api-1"},
             "annotations": {"summary": "orders API down in us-east-1"},
             "startsAt": starts_at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
             "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus.example:9090/graph",
             "fingerprint": "c0ffee0rders01"}
    body = {"version": "4", "groupKey": '{}:{service="orders"}', "truncatedAlerts": 0, "status": "firing",
            "receiver": "drbot", "groupLabels": {"service": "orders"}, "commonLabels": {"service": "orders"},
            "commonAnnotations": {}, "externalURL": "http://alertmanager.example:9093", "alerts": [alert]}
    r = http.post(f"{url}/alerts/alertmanager", content=json.dumps(body),
                  headers={"Content-Type": "application/json", "Authorization": f"Bearer {AM_TOKEN}"})
    assert r.status_code == 200, r.text


def say(app, fake_slack, channel: str, user: str, text: str, name: str) -> str:
    """A signed ``/dr TEXT`` by ``user`` in ``channel``; the answer's JSON text."""
    r = app.sender.slash_command(text, user_id=user, user_name=user[1:].lower(), channel_id=channel,
                                 response_url=fake_slack.response_url(name))
    assert r.status_code == 200, r.text
    return json.dumps(answered(fake_slack, name).params, ensure_ascii=False)


def texts(message: dict) -> str:
    out = []
    for b in message.get("blocks", []):
        if isinstance(b.get("text"), dict):
            out.append(b["text"]["text"])
        for e in b.get("elements", []):
            if isinstance(e, dict) and isinstance(e.get("text"), str):
                out.append(e["text"])
    return "\n".join(out)


def posts(fake_slack, channel: str) -> list[str]:
    return [json.dumps(c.params, ensure_ascii=False) for c in fake_slack.calls("chat.postMessage")
            if c.params.get("channel") == channel]


def events(services, incident_id: int, kind: str) -> list[TimelineEvent]:
    return rows(services, TimelineEvent, TimelineEvent.incident_id == incident_id, TimelineEvent.kind == kind)


def the_incident(services) -> Incident:
    [inc] = rows(services, Incident)
    return inc


def slots_of(services, request_id: int) -> dict[str, str]:
    return {a.slot: a.approver for a in rows(services, Approval, Approval.request_id == request_id) if a.approve}


def page_writes(page: FakeStatuspage) -> list:
    return [r for r in page.requests if r.method in ("POST", "PATCH", "PUT") and r.status < 300]


# -- the scenario --------------------------------------------------------------------------------

def test_a_regional_outage_from_alert_to_postmortem_review(pd, page, jira, fake_slack, db_url):
    clock = Clock()
    env = {"AM_TOKEN": AM_TOKEN, "PD_KEY": PD_KEY, "PD_URL": pd.url, "PD_TOKEN": PD_TOKEN, "SP_KEY": SP_KEY,
           "SP_URL": page.url, "SP_COMPONENT": COMPONENT, "JIRA_URL": jira.url, "JIRA_TOKEN": "jira-token"}
    services = build_services(parse_config(CONFIG, "scenario.yaml", env), db_url=db_url, clock=clock)
    fake_slack.usergroups[SRE] = [BOB]
    try:
        with running_app(services, fake_slack) as app, httpx.Client(timeout=10) as http:
            # 1. an alert opens a sev2; the on-call is paged once, also when the alert comes again
            started = clock()
            alertmanager(http, app.url, started)
            assert services.inbox.drain(timeout=30), services.inbox.waiting()
            delivered(services, timeout=30)
            inc = the_incident(services)
            assert (inc.severity, inc.status) == ("sev2", IncidentStatus.INVESTIGATING)
            channel = wait_until("the incident channel", lambda: the_incident(services).channel_id)
            key = f"drbot-incident-{inc.id}"
            [alert] = pd.alerts
            assert (alert.routing_key, alert.dedup_key, alert.severity, alert.triggers) == (PD_KEY, key, "error", 1)
            alertmanager(http, app.url, started)  # Alertmanager repeats the group: the same alert, no second page
            assert services.inbox.drain(timeout=30), services.inbox.waiting()
            delivered(services, timeout=30)
            assert [t.json["dedup_key"] for t in pd.enqueued("trigger")] == [key]
            assert pd.alerts == [alert] and alert.triggers == 1
            assert len(rows(services, Incident)) == 1
            [created] = wait_until("the status-page incident", lambda: page_writes(page))
            assert created.method == "POST" and created.json["incident"]["components"] == {COMPONENT: "partial_outage"}

            # 2. sev1 by a permitted person: the policy pages sev1 (the same alert, re-triggered at
            #    critical) and publishes sev1 automatically (the component now a major outage)
            refused = say(app, fake_slack, channel, "UMALLORY", "incident severity sev1 it is bad", "mallory")
            assert "Not done: you may not change incidents" in refused
            answer = say(app, fake_slack, channel, ALICE, "incident severity sev1 orders down for every customer",
                         "sev1")
            assert "severity *sev2 → sev1*: orders down for every customer" in answer
            delivered(services, timeout=30)
            assert the_incident(services).severity == "sev1"
            assert pd.alerts == [alert]  # one alert, re-triggered
            assert (alert.severity, alert.triggers, alert.status) == ("critical", 2, "triggered")
            first_trigger, sev1_trigger = pd.enqueued("trigger")
            assert (first_trigger.json["dedup_key"], sev1_trigger.json["dedup_key"]) == (key, key)
            assert sev1_trigger.json["payload"]["severity"] == "critical"
            assert sev1_trigger.json["payload"]["summary"].startswith(f"[sev1] drbot incident #{inc.id}")
            assert [e.text.endswith(f"({sev})") for e, sev in zip(events(services, inc.id, "page.sent"),
                                                                    ("sev2", "sev1"))] == [True, True]
            wait_until("the sev1 status-page update", lambda: len(page_writes(page)) >= 2)
            assert page_writes(page)[-1].json["incident"]["components"] == {COMPONENT: "major_outage"}

            # 3. a commander claims the role with the pinned summary's Claim button
            inc = the_incident(services)
            pinned = fake_slack.message(channel, inc.summary_ts)
            r = app.sender.block_action("inc_claim", f"{inc.id}:commander", user_id=DAVE, user_name="dave",
                                        channel_id=channel, message=pinned)
            assert r.status_code == 200
            wait_until("dave holds the commander role", lambda: {
                x.role: x.user_id for x in rows(services, IncidentRole, order=IncidentRole.role)} == {"commander": DAVE})
            delivered(services, timeout=30)
            assert "<@UDAVE>" in texts(fake_slack.message(channel, inc.summary_ts))
            assert fake_slack.topics[channel].startswith("SEV1 · investigating · commander dave")
            assert [e.actor for e in events(services, inc.id, "incident.role")] == [DAVE]

            # 4. a failover needs SRE + on-call: the on-call slot stays open until the on-call approves
            say(app, fake_slack, channel, DAVE, "failover orders region us-east-1 down for every customer", "ask")
            req = wait_until("the request's message", lambda: (q := rows(services, ChangeRequest)) and q[0].message_ts
                             and q[0])
            assert req.required_approvals == 2  # no relaxation is configured: sev1 changes nothing here
            delivered(services, timeout=30)
            text = texts(fake_slack.message(channel, req.message_ts))
            assert "○ sre: OPEN" in text
            assert "○ on-call: OPEN, for the person on call in orders-primary (now <@UCAROL>)" in text

            r = app.sender.block_action("cr_approve", str(req.id), user_id=BOB, user_name="bob", channel_id=channel,
                                        response_url=fake_slack.response_url("bob"),
                                        message=fake_slack.message(channel, req.message_ts))
            assert r.status_code == 200
            wait_until("bob's approval", lambda: slots_of(services, req.id) == {"sre": BOB})
            delivered(services, timeout=30)
            text = texts(fake_slack.message(channel, req.message_ts))
            assert "✓ sre: <@UBOB>" in text and "○ on-call: OPEN" in text
            assert request_row(services, req.id).state is RequestState.PENDING
            assert rows(services, Run, Run.request_id == req.id) == []

            r = app.sender.block_action("cr_approve", str(req.id), user_id=CAROL, user_name="carol",
                                        channel_id=channel, response_url=fake_slack.response_url("carol"),
                                        message=fake_slack.message(channel, req.message_ts))
            assert r.status_code == 200
            [run] = wait_until("the finished run", lambda: [x for x in rows(services, Run, Run.request_id == req.id)
                                                            if x.state is RequestState.SUCCEEDED], timeout=30)
            assert slots_of(services, req.id) == {"sre": BOB, "on-call": CAROL}
            assert run.measured_rto_s is not None and run.measured_rpo_s is not None
            assert services.runner.done.wait(10)
            assert pd.oncall_reads() and pd.oncall_reads()[0].query["schedule_ids[]"] == ["PORDERS"]

            # 5. the ops channel and the status page carry RTO/RPO and the affected region
            say(app, fake_slack, channel, ALICE, "incident status monitoring", "monitoring")
            delivered(services, timeout=30)
            ops = posts(fake_slack, OPS)
            assert [("opened" in p, "severity now *sev1*" in p, "commander now <@UDAVE>" in p) for p in ops[:3]] == [
                (True, False, False), (False, True, False), (False, False, True)], ops
            last = ops[-1]
            assert "status now *monitoring* (by <@UALICE>)" in last and f"<#{channel}>" in last
            assert "RTO so far" in last and "(target 15m)" in last
            assert ", RPO 0s (RPO target 5m)" in last, last
            assert "orders: " in last and "moved from us-east-1 to us-west-2, measured RTO" in last, last
            assert "not moved (active us-east-1) · lag 20s" in ops[0], ops[0]  # before the move: where it runs
            monitoring = wait_until("the monitoring update on the status page", lambda: [
                w for w in page_writes(page) if w.json["incident"]["status"] == "monitoring"], timeout=30)
            body = monitoring[-1].json["incident"]["body"]
            assert "Affected region: us-east-1." in body
            assert "orders was moved from us-east-1 to us-west-2; service was restored " in body
            assert "(recovery time objective 15m: met)" in body and "(recovery point objective 5m: met)" in body
            [sp_incident] = page.incidents.values()
            link = sp_incident["shortlink"]
            assert any(f"is on the public status page: {link}" in p for p in posts(fake_slack, channel))

            # 6. follow-ups with owners, filed in Jira with the way back to the incident
            due = (clock() + timedelta(days=14)).date().isoformat()
            added = say(app, fake_slack, channel, DAVE,
                        f"followup add alert on replica lag before the RPO <@UCAROL|carol> due {due}", "fu1")
            assert f"Follow-up added to incident #{inc.id}" in added and "<@UCAROL>" in added
            say(app, fake_slack, channel, ALICE, "followup add automate the traffic shift check <@UBOB|bob> due in 7d",
                "fu2")
            delivered(services, timeout=30)
            first, second = rows(services, FollowUp)
            assert (first.owner, second.owner) == (CAROL, BOB)
            assert (first.tracker_key, second.tracker_key) == ("OPS-1", "OPS-2")
            assert first.tracker_url == f"{jira.url}/browse/OPS-1"
            issue = jira.issues["OPS-1"]
            assert issue["summary"] == "alert on replica lag before the RPO" and issue["duedate"] == due
            assert f"drbot-followup-{first.id}" in issue["labels"]
            described = json.dumps(issue["description"])
            assert f"incident #{inc.id}" in described and "owner in Slack: carol" in described
            back = f"https://slack.com/app_redirect?channel={channel}"  # the way back: a link to the incident channel
            marks = [m for p in issue["description"]["content"] for n in p["content"] for m in n.get("marks", [])]
            assert {"type": "link", "attrs": {"href": back}} in marks, described

            # 7. resolve resolves the page (same dedup key); the postmortem lists the follow-ups
            say(app, fake_slack, channel, ALICE, "incident status resolved", "resolve")
            delivered(services, timeout=30)
            resolved = the_incident(services)
            assert resolved.status is IncidentStatus.RESOLVED and resolved.resolved_at is not None
            [resolve] = pd.enqueued("resolve")
            assert resolve.json == {"routing_key": PD_KEY, "event_action": "resolve", "dedup_key": key}
            assert alert.status == "resolved" and pd.open_alert(PD_KEY, key) is None
            assert events(services, inc.id, "page.resolved")
            draft = wait_until("the postmortem draft", lambda: next(
                (v.decode() for v in fake_slack.uploads.values() if b"Postmortem draft" in v), None))
            assert f"#{first.id} alert on replica lag before the RPO · owner: carol · due {due} · OPS-1 " \
                   f"{jira.url}/browse/OPS-1" in draft
            assert f"#{second.id} automate the traffic shift check · owner: bob · due " in draft and "OPS-2" in draft
            wait_until("the resolved status-page update", timeout=30,
                       predicate=lambda: [i["status"] for i in page.incidents.values()] == ["resolved"])

            # 8. the review reminder: the scheduler's job, 48 h of the clock after resolve, once
            clock.advance(timedelta(hours=47, minutes=59).total_seconds())
            jobs.run("incident_reminders")
            delivered(services, timeout=30)
            reminder = f"The postmortem review of incident #{inc.id} is due"
            assert not [p for p in posts(fake_slack, channel) if reminder in p]
            clock.advance(120)
            jobs.run("incident_reminders")
            jobs.run("incident_reminders")  # the next minute's run: reminded already
            delivered(services, timeout=30)
            said = [p for p in posts(fake_slack, channel) if reminder in p]
            assert len(said) == 1 and "2 follow-ups are still open" in said[0], said
            assert the_incident(services).review_reminded_at is not None
    finally:
        services.runner.executor.shutdown(wait=True)
        services.engine.dispose()


def test_jira_descriptions_carry_urls_as_links(jira):
    """The way back from a follow-up's Jira issue is a link (an ADF ``link`` mark), wherever
    the URL stands in its line; the text around it is kept as written."""
    tracker = Jira("jira", JiraOptions(base_url=jira.url, email="drbot@example.com", api_token="jira-token",
                                       project="OPS"))
    try:
        issue = tracker.create_issue("drbot-followup-7", "fix it", "see https://a.example/x?y=1 and http://b.example\n"
                                     "https://c.example/only\nno link here")
    finally:
        tracker.close()
    [first, second, third] = [p["content"] for p in jira.issues[issue.key]["description"]["content"]]
    assert first == [{"type": "text", "text": "see "},
                     {"type": "text", "text": "https://a.example/x?y=1",
                      "marks": [{"type": "link", "attrs": {"href": "https://a.example/x?y=1"}}]},
                     {"type": "text", "text": " and "},
                     {"type": "text", "text": "http://b.example",
                      "marks": [{"type": "link", "attrs": {"href": "http://b.example"}}]}]
    assert second == [{"type": "text", "text": "https://c.example/only",
                       "marks": [{"type": "link", "attrs": {"href": "https://c.example/only"}}]}]
    assert third == [{"type": "text", "text": "no link here"}]
