"""Incidents driven from Slack, end to end over real HTTP: the app under uvicorn, every
inbound request signed as Slack signs it (Events API callbacks, block actions, view
submissions), the Web API answered by the FakeSlack, the status page by a
FakeStatuspage, side effects delivered by the real outbox worker (``drain``).

What is proven:
- alert channel rules: another bot's message in a configured alert channel becomes an
  alert, opens an incident and lands on its timeline; its RESOLVED message resolves the
  same alert; other channels and other texts are ignored;
- the pin reaction puts the reacted-to message (fetched with conversations.history) on the
  incident's timeline, with its author; other reactions and other channels add nothing;
- the status-page preview policy: a previewed update waits for Publish / Skip / Edit, and
  an edited text is published exactly as submitted; an empty one is refused on its field;
- the reminder: one per interval in a quiet incident's channel, with a button that opens
  the update form; an update changes the status and quiets the reminder for an interval.

Nothing of drbot is mocked; the sandbox only supplies readings for the channel summary.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from slack_sdk import WebClient
from sqlmodel import Session

from bot.config import parse_config
from bot.store.incident_tables import Alert, AlertInbox, Incident, IncidentStatus
from bot.store.models import TimelineEvent
from bot.wiring import build_services
from tests.app_server import running_app
from tests.helpers import SANDBOX_CONFIG, rows, wait_until
from tests.fakes.statuspage_api import FakeStatuspage

SP_KEY = "sp-key-77c1e0"
COMPONENT = "cmp0orders01"
ALERTS_CHANNEL = "C_ALERTS"

BASE = SANDBOX_CONFIG + """
permissions:  # anyone here: tests/test_permissions.py proves the roles
  incident_open: [everyone]
  incident_update: [everyone]
  statuspage_publish: [everyone]
"""

SLACK_RULES = BASE + r"""
alerts:
  slack_rules:
    - channel: C_ALERTS
      match: '(?P<service>orders) (?P<summary>replica lag .*) FIRING'
      resolved: 'RESOLVED'
      severity: critical
      signal: lag
"""

STATUSPAGE = BASE.replace("services:\n", """  sp:
    kind: statuspage
    page_id: pg1
    api_key: ${SP_KEY}
    base_url: ${SP_URL}
    timeout: 5
    components:
      orders: ${SP_COMPONENT}
services:
""", 1) + """
statuspage:
  source: sp
  publish: {sev3: preview}
"""

REMINDER = BASE + """
incidents:
  reminder: 1m
"""


class Clock:
    """A clock the test moves forward; never behind real time (the outbox compares an
    item's next_attempt_at, stamped with real time, to this clock)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


# -- helpers -------------------------------------------------------------------------------

def events(services, incident_id: int | None = None, kind: str | None = None) -> list[TimelineEvent]:
    where = []
    if incident_id is not None:
        where.append(TimelineEvent.incident_id == incident_id)
    if kind is not None:
        where.append(TimelineEvent.kind == kind)
    return rows(services, TimelineEvent, *where)


def the_incident(services, incident_id: int) -> Incident:
    with Session(services.engine) as s:
        return s.get(Incident, incident_id)


def settle() -> None:
    """Give lazy listeners of events already acked a moment, before asserting nothing happened."""
    time.sleep(0.5)


def posts_in(fake_slack, channel: str) -> list:
    return [c for c in fake_slack.calls("chat.postMessage") if c.params.get("channel") == channel]


def buttons(blocks: list[dict]) -> dict[str, str]:
    """action_id -> button text of every button in ``blocks``."""
    return {e["action_id"]: e["text"]["text"] for b in blocks for e in b.get("elements", [])
            if e.get("type") == "button"}


def messages_with(fake_slack, channel: str, action_id: str) -> list[dict]:
    """Messages in ``channel`` (as they stand at the fake) carrying button ``action_id``, oldest first."""
    with fake_slack._lock:
        found = [m for (ch, _), m in fake_slack.messages.items()
                 if ch == channel and action_id in buttons(m.get("blocks") or [])]
    return sorted(found, key=lambda m: float(m["ts"]))


def button_value(message: dict, action_id: str) -> str:
    return next(e["value"] for b in message["blocks"] for e in b.get("elements", []) if e.get("action_id") == action_id)


def open_incident_by_slash(app, fake_slack, text: str, name: str, user_id: str = "U_ALICE") -> int:
    """``/dr incident open ...`` signed, as Slack sends it; returns the new incident's id."""
    before = {i.id for i in rows(app.services, Incident)}
    r = app.sender.slash_command(f"incident open {text}", user_id=user_id, channel_id="C_WAR",
                                 response_url=fake_slack.response_url(name))
    assert r.status_code == 200, r.text
    wait_until(f"the answer to /dr incident open {text}",
               lambda: [c for c in fake_slack.calls("response_url") if c.params["_path"] == f"/response/{name}"])
    [new] = [i for i in rows(app.services, Incident) if i.id not in before]
    return new.id


def slash_in(app, fake_slack, channel: str, text: str, name: str, user_id: str = "U_ALICE") -> dict:
    r = app.sender.slash_command(text, user_id=user_id, channel_id=channel,
                                 response_url=fake_slack.response_url(name))
    assert r.status_code == 200, r.text
    [answer] = wait_until(f"the answer to /dr {text}", lambda: [
        c for c in fake_slack.calls("response_url") if c.params["_path"] == f"/response/{name}"])
    return answer.params


def drain(services) -> None:
    assert services.outbox.drain(timeout=30), "the outbox did not empty"


def bot_message(text: str, channel: str, ts: str) -> dict:
    """Another bot's post (a classic bot_message), as the Events API delivers it."""
    return {"type": "message", "subtype": "bot_message", "text": text, "ts": ts, "event_ts": ts,
            "username": "Grafana", "bot_id": "B0GRAFANA", "channel": channel, "channel_type": "channel"}


def reaction(reaction_name: str, channel: str, ts: str, item_user: str, user: str = "U_BOB") -> dict:
    return {"type": "reaction_added", "user": user, "reaction": reaction_name, "item_user": item_user,
            "item": {"type": "message", "channel": channel, "ts": ts}, "event_ts": f"{time.time():.6f}"}


def view_opened(fake_slack, count: int) -> dict:
    call = fake_slack.wait_for("views.open", count, timeout=10)[count - 1]
    assert call.params.get("trigger_id")
    return call.parsed("view")


def submit(app, callback_id: str, values: dict, private_metadata: str, user_id: str):
    r = app.sender.view_submission(callback_id, values, user_id=user_id, private_metadata=private_metadata)
    assert r.status_code == 200, r.text
    return r.json() if r.content else None


def build(text: str, tmp_path, env: dict | None = None, **kwargs):
    return build_services(parse_config(text, "incident-slack-test.yaml", env or {}),
                          db_url=f"sqlite:///{tmp_path}/drbot.db", **kwargs)


# -- 1. alert channel rules ------------------------------------------------------------------

@pytest.fixture
def rules_app(tmp_path, fake_slack):
    services = build(SLACK_RULES, tmp_path)
    with running_app(services, fake_slack) as running:
        yield running
    services.engine.dispose()


def test_bot_messages_in_the_alert_channel_open_and_resolve_an_incident(rules_app, fake_slack):
    app, services = rules_app, rules_app.services

    # ignored: the right text in another channel, another text in the alert channel
    for event in (bot_message("orders replica lag above 30s FIRING", "C_OTHER", "1714564700.000100"),
                  bot_message("orders deploy 2024.05.01-3 finished", ALERTS_CHANNEL, "1714564750.000100")):
        assert app.sender.event(event).status_code == 200
    settle()
    assert rows(services, Alert) == [] and rows(services, Incident) == []

    firing = bot_message("orders replica lag above 30s FIRING", ALERTS_CHANNEL, "1714564800.000100")
    r = app.sender.event(firing)
    assert r.status_code == 200
    [alert] = wait_until("the alert from the Slack message", lambda: rows(services, Alert))
    assert (alert.source, alert.service, alert.severity, alert.signal, alert.status) == (
        "slack", "orders", "critical", "lag", "firing")
    assert alert.fingerprint.startswith("slack:") and alert.summary == "replica lag above 30s"
    assert json.loads(alert.labels) == {"channel": ALERTS_CHANNEL, "ts": "1714564800.000100"}

    [inc] = wait_until("the incident", lambda: rows(services, Incident))
    assert alert.incident_id == inc.id
    assert inc.severity == "sev2"  # critical -> sev2 (incidents.severity_for)
    assert json.loads(inc.services) == ["orders"] and inc.status is IncidentStatus.INVESTIGATING
    [fired] = events(services, inc.id, "alert.firing")
    assert fired.service == "orders" and fired.text == "replica lag above 30s"
    assert json.loads(fired.data)["fingerprint"] == alert.fingerprint
    assert json.loads(fired.data)["source"] == "slack"

    # the incident gets its channel and the alert digest
    drain(services)
    [create] = fake_slack.calls("conversations.create")
    channel = the_incident(services, inc.id).channel_id
    assert channel and create.params["name"].endswith("-orders")
    assert any("replica lag above 30s" in json.dumps(c.blocks) for c in posts_in(fake_slack, channel))

    # the same alert, resolved
    resolved = bot_message("orders replica lag above 30s FIRING -> RESOLVED (lag 2s)", ALERTS_CHANNEL,
                           "1714565400.000100")
    assert app.sender.event(resolved).status_code == 200
    [gone] = wait_until("the resolved alert", lambda: [a for a in rows(services, Alert) if a.status == "resolved"])
    assert gone.id == alert.id and gone.fingerprint == alert.fingerprint
    [ended] = wait_until("alert.resolved on the timeline", lambda: events(services, inc.id, "alert.resolved"))
    assert json.loads(ended.data)["fingerprint"] == alert.fingerprint

    # and again nothing for the ignored kinds, now that an incident is open
    for event in (bot_message("orders replica lag above 30s FIRING", "C_OTHER", "1714565500.000100"),
                  bot_message("orders replica lag high", ALERTS_CHANNEL, "1714565600.000100")):
        assert app.sender.event(event).status_code == 200
    settle()
    assert [a.id for a in rows(services, Alert)] == [alert.id]
    assert len(rows(services, Incident)) == 1
    assert len(events(services, inc.id, "alert.firing")) == 1


def test_an_alert_message_is_stored_before_it_is_processed_and_survives_a_restart(tmp_path, fake_slack):
    """Like a webhook's payload (bot.alerts.drain): the message is in the inbox before
    anything is done with it, and a process that stops before its drain runs loses nothing."""
    first = build(SLACK_RULES, tmp_path)
    with running_app(first, fake_slack) as app:
        first.inbox.stop()  # the process dies before its drain takes anything
        firing = bot_message("orders replica lag above 30s FIRING", ALERTS_CHANNEL, "1714564800.000100")
        assert app.sender.event(firing).status_code == 200
        [stored] = wait_until("the message stored", lambda: rows(first, AlertInbox))
        unmatched = bot_message("orders deploy finished", ALERTS_CHANNEL, "1714564801.000100")
        assert app.sender.event(unmatched).status_code == 200
        settle()
    assert stored.endpoint == "slack" and json.loads(stored.body)["ts"] == "1714564800.000100"
    assert len(rows(first, AlertInbox)) == 1 and rows(first, Alert) == []  # a message no rule matches is not kept
    first.engine.dispose()

    second = build(SLACK_RULES, tmp_path)  # the restart: read again from the stored message
    try:
        second.inbox.start(interval=0.05)
        wait_until("the stored message processed", lambda: not rows(second, AlertInbox), timeout=30)
        second.inbox.stop()
        [alert] = rows(second, Alert)
        assert (alert.source, alert.service, alert.status, alert.summary) == (
            "slack", "orders", "firing", "replica lag above 30s")
        assert len(rows(second, Incident)) == 1
    finally:
        second.engine.dispose()


# -- 2. the pin reaction ----------------------------------------------------------------------

@pytest.fixture
def plain_app(tmp_path, fake_slack):
    services = build(BASE, tmp_path)
    with running_app(services, fake_slack) as running:
        yield running
    services.engine.dispose()


def test_pin_reaction_puts_the_message_on_the_incident_timeline(plain_app, fake_slack):
    app, services = plain_app, plain_app.services
    inc_id = open_incident_by_slash(app, fake_slack, "Orders checkout slow sev2 orders", "open")
    drain(services)
    channel = the_incident(services, inc_id).channel_id
    assert channel

    people = WebClient(token="xoxb-test-token", base_url=fake_slack.base_url)
    said = "Root cause: the orders-db replica in us-west-2 lost its network path"
    ts = people.chat_postMessage(channel=channel, text=said)["ts"]
    author = fake_slack.message(channel, ts)["user"]
    other_ts = people.chat_postMessage(channel="C_RANDOM", text="lunch at noon?")["ts"]

    # not the pin reaction, and a pin in a channel that has no incident: nothing
    assert app.sender.event(reaction("thumbsup", channel, ts, author)).status_code == 200
    assert app.sender.event(reaction("pushpin", "C_RANDOM", other_ts, author)).status_code == 200
    wait_until("the history lookup of the pin outside incidents",
               lambda: [c for c in fake_slack.calls("conversations.history") if c.params["channel"] == "C_RANDOM"])
    settle()
    assert events(services, kind="incident.pinned") == []

    # the pin reaction in the incident's channel
    assert app.sender.event(reaction("pushpin", channel, ts, author, user="U_BOB")).status_code == 200
    [pinned] = wait_until("the pinned message on the timeline", lambda: events(services, kind="incident.pinned"))
    assert pinned.incident_id == inc_id
    assert pinned.text == said
    assert pinned.actor == "U_BOB"
    assert json.loads(pinned.data) == {"author": author, "ts": ts}
    lookups = fake_slack.calls("conversations.history")
    assert {c.params["channel"] for c in lookups} == {channel, "C_RANDOM"}  # thumbsup looked nothing up
    mine = [c for c in lookups if c.params["channel"] == channel]
    assert len(mine) == 1 and mine[0].params["latest"] == ts
    settle()
    assert len(events(services, kind="incident.pinned")) == 1


# -- 3. the status-page preview policy -------------------------------------------------------------

@pytest.fixture
def fake_page():
    with FakeStatuspage(page_id="pg1", api_key=SP_KEY) as fake:
        fake.add_component(COMPONENT, "Orders API")
        yield fake


@pytest.fixture
def sp_app(tmp_path, fake_slack, fake_page):
    env = {"SP_KEY": SP_KEY, "SP_URL": fake_page.url, "SP_COMPONENT": COMPONENT}
    services = build(STATUSPAGE, tmp_path, env)
    with running_app(services, fake_slack) as running:
        yield running
    services.backends["sp"].close()
    services.engine.dispose()


def page_writes(fake_page) -> list:
    return [r for r in fake_page.requests if r.method in ("POST", "PATCH", "PUT")]


def previews(fake_slack, channel: str) -> list[dict]:
    return messages_with(fake_slack, channel, "sp_publish")


def test_previewed_status_updates_wait_for_publish_skip_or_edit(sp_app, fake_slack, fake_page):
    app, services = sp_app, sp_app.services
    inc_id = open_incident_by_slash(app, fake_slack, "Orders checkout slow sev3 orders", "open")
    drain(services)
    channel = the_incident(services, inc_id).channel_id
    assert channel

    # the preview, in the incident channel, and nothing on the page
    [first] = previews(fake_slack, channel)
    assert buttons(first["blocks"]) == {"sp_publish": "Publish", "sp_edit": "Edit", "sp_skip": "Skip"}
    text = json.dumps(first["blocks"])
    assert "investigating" in text and "We are investigating degraded service of orders." in text
    assert fake_page.requests == []

    # Publish (clicked twice: published once, the second click is told it was)
    item = button_value(first, "sp_publish")
    for n in (1, 2):
        r = app.sender.block_action("sp_publish", item, user_id="U_ALICE", channel_id=channel, message=first,
                                    response_url=fake_slack.response_url(f"publish{n}"))
        assert r.status_code == 200
    answers = fake_slack.wait_for("response_url", 2)  # the two clicks are answered in either order
    assert sum("already published" in c.params["text"] for c in answers) == 1, [c.params for c in answers]
    approved = events(services, inc_id, "statuspage.approved")
    assert [json.loads(e.data)["preview"] for e in approved] == [int(item)]
    drain(services)
    [incident] = fake_page.incidents.values()
    assert incident["name"] == "Orders checkout slow" and incident["status"] == "investigating"
    assert incident["incident_updates"][0]["body"] == ("We are investigating degraded service of orders.\n"
                                                       "Affected region: us-east-1.")
    assert fake_page.components[COMPONENT]["status"] == "degraded_performance"  # sev3
    assert [r.method for r in page_writes(fake_page)] == ["POST"]
    assert the_incident(services, inc_id).statuspage_id == incident["id"]
    assert len(fake_slack.calls("response_url")) == 2  # the /dr answer and the second click's refusal

    # Skip: nothing is published, the timeline says so
    slash_in(app, fake_slack, channel, "incident status identified A bad deploy of the orders API", "identified")
    drain(services)
    second = previews(fake_slack, channel)[1]
    assert "A bad deploy of the orders API" in json.dumps(second["blocks"])
    assert len(page_writes(fake_page)) == 1  # a preview again, not a publish
    r = app.sender.block_action("sp_skip", button_value(second, "sp_skip"), user_id="U_ALICE", channel_id=channel,
                                message=second, response_url=fake_slack.response_url("skip"))
    assert r.status_code == 200
    [skipped] = wait_until("statuspage.skipped", lambda: events(services, inc_id, "statuspage.skipped"))
    assert skipped.actor == "U_ALICE"
    assert json.loads(skipped.data) == {"status": "identified", "preview": int(button_value(second, "sp_skip"))}
    drain(services)
    assert len(page_writes(fake_page)) == 1
    assert [u["status"] for u in fake_page.incidents[incident["id"]]["incident_updates"]] == ["investigating"]

    # Edit: a modal with the rendered body; an empty body is refused on its field
    slash_in(app, fake_slack, channel, "incident status monitoring Rolled back the deploy; error rate falling",
             "monitoring")
    drain(services)
    third = previews(fake_slack, channel)[2]
    item = button_value(third, "sp_edit")
    r = app.sender.block_action("sp_edit", item, user_id="U_ALICE", channel_id=channel, message=third,
                                response_url=fake_slack.response_url("edit"))
    assert r.status_code == 200
    view = view_opened(fake_slack, 1)
    assert view["type"] == "modal" and view["callback_id"] == "sp_edit" and view["private_metadata"] == item
    [field] = [b for b in view["blocks"] if b.get("block_id") == "body"]
    assert field["element"]["action_id"] == "body"
    assert field["element"]["initial_value"] == "Rolled back the deploy; error rate falling\nAffected region: us-east-1."

    answer = submit(app, "sp_edit", {"body": {"body": "   "}}, item, "U_ALICE")
    assert answer["response_action"] == "errors" and list(answer["errors"]) == ["body"]
    assert answer["errors"]["body"]
    settle()
    assert len(events(services, inc_id, "statuspage.approved")) == 1  # the refused form decided nothing

    edited = "We rolled back a faulty deploy of the orders API. Error rates are falling; we are watching."
    assert submit(app, "sp_edit", {"body": {"body": edited}}, item, "U_ALICE") is None
    wait_until("the edited publish", lambda: len(events(services, inc_id, "statuspage.approved")) == 2)
    drain(services)
    writes = page_writes(fake_page)
    assert [r.method for r in writes] == ["POST", "PATCH"]
    assert writes[1].json["incident"]["status"] == "monitoring"
    assert writes[1].json["incident"]["body"] == edited
    newest = fake_page.incidents[incident["id"]]["incident_updates"][0]
    assert (newest["status"], newest["body"]) == ("monitoring", edited)
    [published] = events(services, inc_id, "statuspage.published")[-1:]
    assert published.text == edited
    # the form answered in the modal, not with a DM
    assert [c for c in fake_slack.calls("chat.postMessage") if c.params.get("channel") == "U_ALICE"] == []


# -- 4. the reminder ------------------------------------------------------------------------------

@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def reminder_app(tmp_path, fake_slack, clock):
    services = build(REMINDER, tmp_path, clock=clock)
    with running_app(services, fake_slack) as running:
        yield running
    services.engine.dispose()


def test_reminder_once_per_interval_and_the_update_form_quiets_it(reminder_app, fake_slack, clock):
    from bot.incidents import remind_due

    app, services = reminder_app, reminder_app.services
    inc_id = open_incident_by_slash(app, fake_slack, "Orders replica lagging sev2 orders", "open")
    drain(services)
    channel = the_incident(services, inc_id).channel_id
    assert channel

    assert remind_due(services) == []  # just opened
    clock.advance(59)
    assert remind_due(services) == []
    clock.advance(2)  # 61 s without an update
    assert remind_due(services) == [inc_id]
    assert remind_due(services) == []  # once per interval
    drain(services)
    [reminder] = messages_with(fake_slack, channel, "inc_update")
    assert buttons(reminder["blocks"]) == {"inc_update": "Post update"}
    assert reminder["text"].startswith(f"No update for incident #{inc_id} in")
    assert button_value(reminder, "inc_update") == str(inc_id)
    clock.advance(30)
    assert remind_due(services) == []  # 30 s after the reminder

    # Post update opens the form
    clock.advance(10)  # 40 s after the reminder
    r = app.sender.block_action("inc_update", str(inc_id), user_id="U_CAROL", channel_id=channel, message=reminder,
                                response_url=fake_slack.response_url("update"))
    assert r.status_code == 200
    view = view_opened(fake_slack, 1)
    assert view["callback_id"] == "inc_update" and view["private_metadata"] == str(inc_id)
    [status_field] = [b for b in view["blocks"] if b.get("block_id") == "status"]
    assert [o["value"] for o in status_field["element"]["options"]] == [s.value for s in IncidentStatus]

    def select(value: str) -> dict:
        return {"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": value},
                                                             "value": value}}

    # an invalid status is refused on its field; nothing changes
    answer = submit(app, "inc_update", {"status": {"status": select("exploded")},
                                        "message": {"message": "?"}}, str(inc_id), "U_CAROL")
    assert answer["response_action"] == "errors" and list(answer["errors"]) == ["status"]
    settle()
    assert the_incident(services, inc_id).status is IncidentStatus.INVESTIGATING
    assert events(services, inc_id, "incident.status") == []

    updated_at = clock()
    assert submit(app, "inc_update", {"status": {"status": select("monitoring")},
                                      "message": {"message": "Replica caught up; watching it"}},
                  str(inc_id), "U_CAROL") is None
    [change] = wait_until("the status change", lambda: events(services, inc_id, "incident.status"))
    assert change.actor == "U_CAROL" and change.text == "Replica caught up; watching it"
    assert json.loads(change.data) == {"from": "investigating", "to": "monitoring"}
    inc = the_incident(services, inc_id)
    assert inc.status is IncidentStatus.MONITORING
    assert updated_at <= inc.last_update_at.replace(tzinfo=inc.last_update_at.tzinfo or timezone.utc) <= clock()

    # quiet for another interval from the update, not from the reminder
    assert remind_due(services) == []
    clock.advance(21)  # 61 s after the reminder, 21 s after the update
    assert remind_due(services) == []
    clock.advance(40)  # 61 s after the update
    assert remind_due(services) == [inc_id]
    assert remind_due(services) == []
    drain(services)
    assert len(messages_with(fake_slack, channel, "inc_update")) == 2
    assert "(monitoring)" in json.dumps(messages_with(fake_slack, channel, "inc_update")[1]["blocks"])


# -- 3b. an edited text is published as written, also after a failover ----------------------------

FAILOVER_SP = STATUSPAGE.replace("""    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
  - name: payments""", """    lag: {source: sim}
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
  - name: payments""", 1) + """
approvals:
  required_approvals: 1
  approvers: [UBOB]
"""


@pytest.fixture
def failover_sp_app(tmp_path, fake_slack, fake_page):
    env = {"SP_KEY": SP_KEY, "SP_URL": fake_page.url, "SP_COMPONENT": COMPONENT}
    services = build(FAILOVER_SP, tmp_path, env)
    with running_app(services, fake_slack) as running:
        yield running
    services.backends["sp"].close()
    services.engine.dispose()


def test_edited_text_is_published_as_written_after_a_failover(failover_sp_app, fake_slack, fake_page):
    from bot.store.models import ChangeRequest, RequestState, Run

    app, services = failover_sp_app, failover_sp_app.services
    inc_id = open_incident_by_slash(app, fake_slack, "Orders region degraded sev3 orders", "open")
    drain(services)
    channel = the_incident(services, inc_id).channel_id

    # a failover of orders during the incident, approved by a second person, run to the end
    slash_in(app, fake_slack, channel, "failover orders us-east-1 degraded", "failover", user_id="UALICE")
    # the request's message is posted by the outbox after the request is stored
    [req] = wait_until("the request's message posted",
                       lambda: [q for q in rows(services, ChangeRequest) if q.message_ts])
    r = app.sender.block_action("cr_approve", str(req.id), user_id="UBOB", channel_id=channel,
                                message=fake_slack.message(channel, req.message_ts),
                                response_url=fake_slack.response_url("approve"))
    assert r.status_code == 200
    [run] = wait_until("the finished run", lambda: [x for x in rows(services, Run)
                                                    if x.state is RequestState.SUCCEEDED], timeout=30)
    assert run.measured_rto_s is not None
    assert services.runner.done.wait(10)

    slash_in(app, fake_slack, channel, "incident status monitoring Traffic now served from us-west-2",
             "monitoring")
    drain(services)
    preview = [m for m in previews(fake_slack, channel) if "(monitoring)" in m["text"]][-1]
    item = button_value(preview, "sp_edit")
    r = app.sender.block_action("sp_edit", item, user_id="UALICE", channel_id=channel, message=preview,
                                response_url=fake_slack.response_url("edit"))
    assert r.status_code == 200
    view = view_opened(fake_slack, 1)
    initial = view["blocks"][0]["element"]["initial_value"]
    assert initial.startswith("Traffic now served from us-west-2")
    # the evidence sentences, editable: the region affected, the move, RTO and RPO against their objectives
    assert "Affected region: us-east-1." in initial
    assert "orders was moved from us-east-1 to us-west-2; service was restored " in initial
    assert "(recovery time objective 15m: met)" in initial and "(recovery point objective 5m: met)" in initial

    edited = initial.replace("Traffic now served from us-west-2", "Orders is served from our second region")
    assert submit(app, "sp_edit", {"body": {"body": edited}}, item, "UALICE") is None
    wait_until("the edited publish", lambda: events(services, inc_id, "statuspage.approved"))
    drain(services)
    [write] = page_writes(fake_page)
    assert write.json["incident"]["status"] == "monitoring"
    assert write.json["incident"]["body"] == edited  # as written: the run sentence once, not appended again
