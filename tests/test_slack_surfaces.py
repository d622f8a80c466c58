"""Slack surfaces of incident command (issue 15), over real HTTP signed like Slack into the
running app, with the fake Slack Web API and the real outbox worker: the App Home tab
(views.publish), the "Declare incident" global shortcut and its modal, the "Add to
incident timeline" message shortcut, the pinned summary's severity and role modals, and
private incident channels. Payload shapes follow Slack's documentation (shortcut,
message_action, view_submission, app_home_opened)."""
from __future__ import annotations

import io
import json
import secrets
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

import pytest
from sqlmodel import Session

from bot.config import parse_config
from bot.store.command_tables import IncidentRole
from bot.store.evacuation_tables import Evacuation, EvacuationMember
from bot.store.incident_tables import Incident
from bot.store.models import Approval, ChangeRequest, RequestKind, RequestState
from bot.wiring import build_services
from commands.router import dispatch
from transports.shell import Shell
from tests.app_server import running_app
from tests.helpers import SANDBOX_CONFIG, answered, delivered, rows, wait_until
from tests.slack_client import API_APP_ID, TEAM_DOMAIN, TEAM_ID, VERIFICATION_TOKEN
from tests.test_incident_slack import events

BOB, CAROL, DAVE, MALLORY = "UBOB", "UCAROL", "UDAVE", "UMALLORY"
"""Bob may open and change incidents; Carol and Dave approve (Dave alone for payments);
Mallory is in no list."""

CONFIG = SANDBOX_CONFIG.replace("""  - name: payments
    rpo: 5m""", """  - name: payments
    approvals: {approvers: [UDAVE]}
    rpo: 5m""") + """
approvals:
  approvers: [UCAROL, UDAVE]
permissions:
  incident_open: [UBOB]
  incident_update: [UBOB]
"""


def build(db_url: str, extra: str = ""):
    return build_services(parse_config(CONFIG + extra, "surfaces-test.yaml", {}), db_url=db_url)


@pytest.fixture
def app(tmp_path, fake_slack):
    services = build(f"sqlite:///{tmp_path}/s.db")
    with running_app(services, fake_slack) as running:
        yield running
    services.engine.dispose()


# -- what Slack sends (api.slack.com: shortcuts, message_action, app_home_opened) ------------------

def _user(user_id: str) -> dict:
    name = user_id.removeprefix("U").lower()
    return {"id": user_id, "username": name, "name": name, "team_id": TEAM_ID}


def _interaction(app, payload: dict):
    r = app.sender.post(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")
    assert r.status_code == 200, r.text
    return r


def global_shortcut(app, user: str, callback_id: str = "dr_declare"):
    return _interaction(app, {
        "type": "shortcut", "token": VERIFICATION_TOKEN, "action_ts": f"{time.time():.6f}",
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN}, "user": _user(user), "api_app_id": API_APP_ID,
        "is_enterprise_install": False, "enterprise": None, "callback_id": callback_id,
        "trigger_id": f"{secrets.randbelow(10**10)}.{secrets.token_hex(8)}"})


def message_shortcut(app, user: str, channel: str, text: str, author: str, ts: str, response_url: str):
    return _interaction(app, {
        "type": "message_action", "token": VERIFICATION_TOKEN, "action_ts": f"{time.time():.6f}",
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN}, "user": _user(user), "api_app_id": API_APP_ID,
        "channel": {"id": channel, "name": "inc-test"}, "is_enterprise_install": False, "enterprise": None,
        "callback_id": "dr_add_timeline", "trigger_id": f"{secrets.randbelow(10**10)}.{secrets.token_hex(8)}",
        "response_url": response_url, "message_ts": ts,
        "message": {"type": "message", "user": author, "ts": ts, "text": text}})


def home_opened(app, user: str, tab: str = "home"):
    r = app.sender.event({"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": tab,
                          "event_ts": f"{time.time():.6f}"})
    assert r.status_code == 200, r.text


def select(value: str) -> dict:
    return {"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": value},
                                                         "value": value}}


def submit(app, callback_id: str, values: dict, user: str, metadata: str = "0") -> dict | None:
    r = app.sender.view_submission(callback_id, values, user_id=user, private_metadata=metadata)
    assert r.status_code == 200, r.text
    return r.json() if r.content else None


def declare_values(title: str, severity: str = "sev1", services: list[str] = (), commander: str | None = None):
    return {"title": {"title": title}, "severity": {"severity": select(severity)},
            "services": {"services": {"type": "multi_static_select", "selected_options": [
                {"text": {"type": "plain_text", "text": s}, "value": s} for s in services]}},
            "commander": {"commander": {"type": "users_select", "selected_user": commander}}}


def dms(fake_slack, user: str) -> list[str]:
    return [c.params.get("text", "") + json.dumps(c.blocks) for c in fake_slack.calls("chat.postMessage")
            if c.params.get("channel") == user]


def published(fake_slack, user: str, count: int = 1) -> dict:
    calls = wait_until(f"views.publish {count} for {user}", lambda: len(
        found := [c for c in fake_slack.calls("views.publish") if c.params.get("user_id") == user]) >= count and found)
    return calls[count - 1].parsed("view")


def opened_view(fake_slack, count: int) -> dict:
    return fake_slack.wait_for("views.open", count, timeout=10)[count - 1].parsed("view")


def open_incident(app, fake_slack, text: str = "checkout errors sev2 orders") -> Incident:
    r = app.sender.slash_command(f"incident open {text}", user_id=BOB, channel_id="C_WAR",
                                 response_url=fake_slack.response_url("open-" + secrets.token_hex(3)))
    assert r.status_code == 200
    [inc] = wait_until("the incident", lambda: rows(app.services, Incident))
    delivered(app.services)
    return rows(app.services, Incident, Incident.id == inc.id)[0]


def pending_request(services, service: str, requester: str, parallel: bool = False) -> int:
    now = datetime.now(timezone.utc)
    with Session(services.engine) as s:
        req = ChangeRequest(kind=RequestKind.FAILOVER, service=service, from_region="us-east-1",
                            to_region="us-west-2", reason=f"move {service} away", requester=requester,
                            state=RequestState.PENDING, created_at=now, expires_at=now + timedelta(minutes=30),
                            parallel=parallel)
        s.add(req)
        s.commit()
        return req.id


def section(view: dict, heading: str) -> str:
    """The text of the view's section that starts with ``*heading*``."""
    texts = [b.get("text", {}).get("text", "") for b in view["blocks"]]
    return next(t for t in texts if t.startswith(f"*{heading}*"))


def holders(services) -> list[tuple[str, str]]:
    return [(r.role, r.user_id) for r in rows(services, IncidentRole, order=IncidentRole.role)]


def text_of(view: dict) -> str:
    return json.dumps(view, ensure_ascii=False)


# -- App Home -----------------------------------------------------------------------------------

def test_app_home_lists_open_incidents_and_only_the_requests_this_person_may_approve(app, fake_slack):
    inc = open_incident(app, fake_slack)
    orders = pending_request(app.services, "orders", BOB)  # carol and dave approve orders
    payments = pending_request(app.services, "payments", BOB)  # only dave approves payments
    own = pending_request(app.services, "payments", DAVE, parallel=True)  # ... but never his own request
    report = app.services.status.report()

    home_opened(app, CAROL)
    view = published(fake_slack, CAROL)
    assert view["type"] == "home"
    text = text_of(view)
    assert f"*#{inc.id}* checkout errors · *sev2* · investigating · no commander yet · <#{inc.channel_id}>" in text
    waiting = section(view, "Waiting for your approval")
    assert f"*#{orders}* failover orders" in waiting
    assert f"#{payments}* failover" not in waiting and f"#{own}* failover" not in waiting
    not_ready = [a.service for a in report.assessments if a.verdict.value != "READY"]
    ready_block = section(view, "Services not READY")
    for name in not_ready:
        assert f"*{name}*" in ready_block
    if not not_ready:
        assert "every service is READY" in ready_block

    home_opened(app, DAVE)
    waiting = text_of(published(fake_slack, DAVE))
    assert f"*#{orders}* failover orders" in waiting and f"*#{payments}* failover payments" in waiting
    assert f"*#{own}* failover" not in waiting

    home_opened(app, MALLORY)  # no approver: nothing waits for her, the incidents are there
    text = text_of(published(fake_slack, MALLORY))
    assert f"*#{inc.id}* checkout errors" in text and "approval*\\nnothing" in text and "failover" not in text

    # the commander shows once claimed; the Messages tab draws nothing
    app.sender.slash_command("incident role commander me", user_id=BOB, channel_id=inc.channel_id,
                             response_url=fake_slack.response_url("claim"))
    answered(fake_slack, "claim")
    home_opened(app, CAROL, tab="messages")
    home_opened(app, CAROL)
    assert "commander <@UBOB>" in text_of(published(fake_slack, CAROL, 2))
    assert len([c for c in fake_slack.calls("views.publish") if c.params.get("user_id") == CAROL]) == 2

    # a request Carol has approved (it waits for a second approver) no longer waits for her
    with Session(app.services.engine) as s:
        s.add(Approval(request_id=orders, approver=CAROL, approver_name="carol"))
        s.commit()
    home_opened(app, CAROL)
    assert f"*#{orders}* failover orders" not in text_of(published(fake_slack, CAROL, 3))
    home_opened(app, DAVE)
    assert f"*#{orders}* failover orders" in text_of(published(fake_slack, DAVE, 2))


# -- the Declare incident shortcut and modal --------------------------------------------------------

def test_the_declare_shortcut_opens_a_modal_whose_submission_opens_the_incident(db_url, fake_slack):
    services = build(db_url)
    try:
        with running_app(services, fake_slack) as app:
            global_shortcut(app, BOB)
            view = opened_view(fake_slack, 1)
            assert view["callback_id"] == "inc_declare" and view["type"] == "modal"
            blocks = {b["block_id"]: b["element"] for b in view["blocks"] if b["type"] == "input"}
            assert blocks["title"]["type"] == "plain_text_input"
            assert [o["value"] for o in blocks["severity"]["options"]] == ["sev1", "sev2", "sev3", "sev4"]
            assert [o["value"] for o in blocks["services"]["options"]] == ["orders", "payments"]
            assert blocks["commander"]["type"] == "users_select"

            # bad fields are refused next to the field, in Slack's 3-second answer
            answer = submit(app, "inc_declare", declare_values("  "), BOB)
            assert answer["response_action"] == "errors" and "give the incident a title" in answer["errors"]["title"]
            answer = submit(app, "inc_declare", declare_values("db down", "sev9"), BOB)
            assert list(answer["errors"]) == ["severity"]
            answer = submit(app, "inc_declare", declare_values("db down", services=["ordrs"]), BOB)
            assert "ordrs" in answer["errors"]["services"]
            # so is a submission by someone who may not declare incidents (a forged one: no shortcut needed)
            answer = submit(app, "inc_declare", declare_values("Fake outage", services=["orders"]), MALLORY)
            assert "you may not declare incidents" in answer["errors"]["title"] and "UBOB" in answer["errors"]["title"]
            # and the shortcut itself: told in a DM, no modal
            global_shortcut(app, MALLORY)
            refusal = wait_until("the refusal DM", lambda: dms(fake_slack, MALLORY))
            assert "you may not declare incidents" in refusal[0]
            assert len(fake_slack.calls("views.open")) == 1
            assert rows(services, Incident) == []

            values = declare_values("Checkout <fails> & more", "sev1", ["orders"], CAROL)
            answer = submit(app, "inc_declare", values, BOB)
            assert answer is None  # Slack closes the modal
            [inc] = wait_until("the declared incident", lambda: rows(services, Incident))
            assert (inc.title, inc.severity, json.loads(inc.services), inc.opened_by) == (
                "Checkout <fails> & more", "sev1", ["orders"], BOB)
            wait_until("the commander", lambda: rows(services, IncidentRole, order=IncidentRole.role))
            assert holders(services) == [("commander", CAROL)]
            told = wait_until("the DM to the declarer", lambda: dms(fake_slack, BOB))
            assert f"Incident *#{inc.id}* (sev1) opened: Checkout &lt;fails&gt; &amp; more" in told[0]
            delivered(services)
            inc = rows(services, Incident)[0]
            assert inc.channel_id and fake_slack.calls("conversations.create")

            # one open incident per service, as with /dr incident open
            submit(app, "inc_declare", declare_values("again", "sev2", ["orders"]), BOB)
            again = wait_until("the second DM", lambda: len(dms(fake_slack, BOB)) >= 2 and dms(fake_slack, BOB))
            assert "already has an open incident" in again[1]
            assert len(rows(services, Incident)) == 1
    finally:
        services.engine.dispose()


# -- Add to incident timeline ---------------------------------------------------------------------

def test_the_message_shortcut_adds_the_message_to_the_incident_timeline(app, fake_slack):
    inc = open_incident(app, fake_slack)
    message_shortcut(app, MALLORY, inc.channel_id, "<!channel> db is back & <http://evil|click>", CAROL,
                     "1700000000.000100", fake_slack.response_url("added"))
    added = answered(fake_slack, "added").params
    assert added["response_type"] == "ephemeral" and f"timeline of incident #{inc.id}" in json.dumps(added)
    [event] = events(app.services, inc.id, "incident.pinned")
    detail = json.loads(event.data)
    assert event.text == "<!channel> db is back & <http://evil|click>" and event.actor == MALLORY
    assert detail["author"] == CAROL and detail["link"].endswith(f"/archives/{inc.channel_id}/p1700000000000100")

    # on the timeline, the text is escaped: it pings nobody and links nowhere
    app.sender.slash_command("timeline", user_id=BOB, channel_id=inc.channel_id,
                             response_url=fake_slack.response_url("timeline"))
    shown = json.dumps(answered(fake_slack, "timeline").params, ensure_ascii=False)
    assert "&lt;!channel&gt; db is back &amp; &lt;http://evil|click&gt;" in shown and "<!channel>" not in shown
    assert "p1700000000000100" in shown

    # outside an incident channel: an ephemeral error that says so, nothing recorded
    message_shortcut(app, MALLORY, "C_RANDOM", "hello", CAROL, "1700000000.000200", fake_slack.response_url("nowhere"))
    nowhere = answered(fake_slack, "nowhere").params
    assert nowhere["response_type"] == "ephemeral" and "has no open incident" in json.dumps(nowhere)
    assert len(events(app.services, inc.id, "incident.pinned")) == 1


# -- the pinned summary's severity and role modals -----------------------------------------------

def test_the_severity_and_role_modals_change_the_incident_like_the_commands(app, fake_slack):
    inc = open_incident(app, fake_slack)
    pinned = fake_slack.message(inc.channel_id, inc.summary_ts)
    buttons = {e["action_id"]: e["value"] for b in pinned["blocks"] if b["type"] == "actions" for e in b["elements"]}
    assert buttons == {"inc_severity": str(inc.id), "inc_role": str(inc.id)}

    app.sender.block_action("inc_severity", str(inc.id), user_id=BOB, channel_id=inc.channel_id, message=pinned)
    view = opened_view(fake_slack, 1)
    assert (view["callback_id"], view["private_metadata"]) == ("inc_severity", str(inc.id))

    answer = submit(app, "inc_severity", {"severity": {"severity": select("sev1")}, "reason": {"reason": " "}},
                    BOB, str(inc.id))
    assert "say why" in answer["errors"]["reason"]
    # Mallory is neither the commander nor allowed incident_update: refused in a DM, nothing changes
    submit(app, "inc_severity", {"severity": {"severity": select("sev1")}, "reason": {"reason": "looks bad"}},
           MALLORY, str(inc.id))
    assert "you may not change incidents" in wait_until("the refusal", lambda: dms(fake_slack, MALLORY))[0]
    assert rows(app.services, Incident)[0].severity == "sev2"

    submit(app, "inc_severity", {"severity": {"severity": select("sev1")}, "reason": {"reason": "two regions down"}},
           BOB, str(inc.id))
    wait_until("sev1", lambda: rows(app.services, Incident)[0].severity == "sev1")
    [event] = events(app.services, inc.id, "incident.severity")
    assert (json.loads(event.data), event.text, event.actor) == (
        {"from": "sev2", "to": "sev1"}, "two regions down", BOB)
    delivered(app.services)
    summary = fake_slack.message(inc.channel_id, inc.summary_ts)
    assert "Incident #%d · sev1" % inc.id in json.dumps(summary, ensure_ascii=False)

    app.sender.block_action("inc_role", str(inc.id), user_id=BOB, channel_id=inc.channel_id, message=pinned)
    view = opened_view(fake_slack, 2)
    assert view["callback_id"] == "inc_role"
    assert [o["value"] for o in view["blocks"][0]["element"]["options"]] == ["commander", "communications", "scribe"]
    role = {"role": {"role": select("commander")}, "user": {"user": {"type": "users_select", "selected_user": DAVE}}}
    submit(app, "inc_role", role, MALLORY, str(inc.id))  # giving a role away needs incident_update
    wait_until("the second refusal", lambda: len(dms(fake_slack, MALLORY)) >= 2)
    assert rows(app.services, IncidentRole, order=IncidentRole.role) == []
    submit(app, "inc_role", role, BOB, str(inc.id))
    wait_until("the commander", lambda: rows(app.services, IncidentRole, order=IncidentRole.role))
    assert holders(app.services) == [("commander", DAVE)]
    assert [json.loads(e.data)["user"] for e in events(app.services, inc.id, "incident.role")] == [DAVE]


# -- private incident channels ------------------------------------------------------------------

def test_private_channels_are_created_private(tmp_path, fake_slack):
    services = build(f"sqlite:///{tmp_path}/p.db", "incidents:\n  private_channels: true\n")
    try:
        with running_app(services, fake_slack) as app:
            inc = open_incident(app, fake_slack)
        [create] = fake_slack.calls("conversations.create")
        assert create.params["is_private"] in ("1", "true")
        assert inc.channel_id and create.params["name"] == inc.channel_name
    finally:
        services.engine.dispose()


def test_public_channels_by_default(app, fake_slack):
    open_incident(app, fake_slack)
    [create] = fake_slack.calls("conversations.create")
    assert create.params.get("is_private") in ("0", "false", None)


# -- the shell's `home` ------------------------------------------------------------------------

def test_the_shell_prints_the_home_view_as_text(tmp_path):
    services = build(f"sqlite:///{tmp_path}/sh.db")
    try:
        out = io.StringIO()
        orders = pending_request(services, "orders", BOB)
        Shell(services, dispatch, user="bob", out=out).loop(io.StringIO(
            "/dr incident open checkout errors sev2 orders\nas carol\nhome\n"))
        text = out.getvalue().split("carol> home", 1)[1]
        assert "Open incidents:\n  #1 checkout errors · sev2 · investigating · no commander yet" in text
        assert f"Waiting for your approval:\n  #{orders} failover orders -> us-west-2 · asked by @UBOB" in text
        assert "Services not READY:" in text and "Upcoming drills:\n  none scheduled" in text
    finally:
        services.engine.dispose()


def test_app_home_lists_an_evacuation_to_whoever_its_policy_names(app, fake_slack):
    """An evacuation is decided by the strictest policy of the services it moves (approvers
    named by every one of them): only they see it waiting in their App Home."""
    now = datetime.now(timezone.utc)
    with Session(app.services.engine) as s:  # as /dr evacuate stores one (bot.evacuation)
        evac = ChangeRequest(kind=RequestKind.EVACUATE, service="region:us-east-1", from_region="us-east-1",
                             to_region="", reason="region degraded", requester=BOB, state=RequestState.PENDING,
                             created_at=now, expires_at=now + timedelta(minutes=30))
        s.add(evac)
        s.flush()
        s.add(Evacuation(request_id=evac.id, region="us-east-1"))
        for n, name in enumerate(("orders", "payments")):
            s.add(EvacuationMember(evacuation_id=evac.id, service=name, wave=1, position=n,
                                   from_region="us-east-1", to_region="us-west-2"))
        s.commit()
        s.refresh(evac)

    home_opened(app, DAVE)  # approves orders and payments
    assert f"*#{evac.id}* evacuate region:us-east-1" in section(published(fake_slack, DAVE), "Waiting for your approval")
    home_opened(app, CAROL)  # approves orders only: not every service the evacuation moves
    assert f"#{evac.id}*" not in section(published(fake_slack, CAROL), "Waiting for your approval")
