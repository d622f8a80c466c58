"""Permissions for every command and button (issue 9, "Anyone can speak on the public status
page"), over real HTTP: the app under uvicorn, slash commands, clicks and form submissions
signed as Slack signs them, replies and posts at the FakeSlack, the status page a
FakeStatuspage, side effects delivered by the real outbox worker. SQLite and PostgreSQL.

One test per row of the permission matrix in docs/config.md ("Permissions"): a person in no
list is refused with a reply naming who may, and nothing is stored, queued or published
(every row of the tables the command would touch is compared before and after, and the
status page saw no request); a permitted person succeeds. Then: the defaults (the
approvers, never anyone), user groups and ``everyone``, a DM never standing for an
incident, typed text reaching the page only through a preview, located config errors, and
the matrix in the docs matching commands/table.py.
"""
from __future__ import annotations

import json
import re
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml
from sqlmodel import Session, col, select

from bot.alerts.intake import ALERTS
from bot.config import ConfigError, parse_config
from bot.config.incidents import StatuspageConfig
from bot.incidents import MACHINE_OPENERS
from bot.permissions import ANYONE, APPROVAL_POLICY, ROLES
from bot.store.drill_tables import DrillOccurrence
from bot.store.incident_tables import Incident, IncidentStatus, OutboxItem, OutboxState, PreviewDecision
from bot.store.models import Approval, ChangeRequest, RequestState, TimelineEvent
from bot.wiring import build_services
from commands.table import BUTTONS, FORMS, SHORTCUTS, SUBCOMMANDS
from tests import test_evacuation as evacuation_tests
from tests import test_followups as followup_tests
from tests import test_incident_command as incident_command_tests
from tests import test_step_manual as manual_step_tests
from tests.app_server import running_app
from tests.fakes.statuspage_api import FakeStatuspage
from tests.helpers import ROOT, incident_of_alert, rows, wait_until

SP_KEY = "sp-key-5e1d70"
COMPONENT = "cmp0orders01"
BOB, CAROL, DAVE, MALLORY = "UBOB", "UCAROL", "UDAVE", "UMALLORY"
"""Bob and Carol are the approvers; Mallory is in no list at all."""
WAR_ROOM, DM = "C_WAR", "D_MALLORY"
CALENDAR = "C_ORDERS"

CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim:
    kind: sandbox
    timeout: 1.0
    profiles:
      orders: {lag: 20, jitter: 0}
  sp:
    kind: statuspage
    page_id: pg1
    api_key: ${SP_KEY}
    base_url: ${SP_URL}
    timeout: 5
    components:
      orders: ${SP_COMPONENT}
services:
  - name: orders
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    channel: C_ORDERS
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
    traffic: {source: sim}
    runbooks:
      failover:
        - {name: shift traffic, action: traffic.shift}
      drill:
        default:
          - {name: shift traffic, action: traffic.shift}
approvals:
  required_approvals: 1
  approvers: [UBOB, UCAROL]
statuspage:
  source: sp
  publish: {sev1: auto, sev2: auto, sev3: preview, sev4: skip}
alerts:
  alertmanager_token: am-token
watch: {enabled: false}
digest: {enabled: false}
"""
"""No ``permissions:``: every role is held by the approvers, Bob and Carol."""

NOT_BOB_OR_CAROL = "only <@UBOB>, <@UCAROL> may"


# -- harness -----------------------------------------------------------------------------------

@pytest.fixture
def page():
    with FakeStatuspage(page_id="pg1", api_key=SP_KEY) as fake:
        fake.add_component(COMPONENT, "Orders API")
        yield fake


def build(db_url: str, page: FakeStatuspage, config: str = CONFIG):
    env = {"SP_KEY": SP_KEY, "SP_URL": page.url, "SP_COMPONENT": COMPONENT}
    return build_services(parse_config(config, "permissions-test.yaml", env), db_url=db_url)


def start(db_url, fake_slack, page, config: str = CONFIG):
    services = build(db_url, page, config)
    return services, running_app(services, fake_slack)


@pytest.fixture
def dr(db_url, fake_slack, page):
    """The app on SQLite or PostgreSQL, with the default permissions."""
    services, app = start(db_url, fake_slack, page)
    with app as running:
        yield running
    services.backends["sp"].close()
    services.engine.dispose()


@pytest.fixture
def sqlite_app(tmp_path, fake_slack, page):
    """``sqlite_app(config)``: the app on SQLite, with that config (default: CONFIG)."""
    with ExitStack() as stack:
        def make(config: str = CONFIG):
            services, app = start(f"sqlite:///{tmp_path}/drbot.db", fake_slack, page, config)
            stack.callback(services.engine.dispose)
            stack.callback(services.backends["sp"].close)
            return stack.enter_context(app)
        yield make


def answer_to(app, fake_slack, send) -> str:
    """What only the sender sees (the response_url answer): its fallback text and blocks."""
    name = uuid.uuid4().hex[:10]
    r = send(fake_slack.response_url(name))
    assert r.status_code == 200, r.text
    [call] = wait_until(f"the answer {name}", lambda: [
        c for c in fake_slack.calls("response_url") if c.params["_path"] == f"/response/{name}"])
    return call.params.get("text", "") + "\n" + json.dumps(call.blocks)


def slash(app, fake_slack, text: str, user: str, channel: str = WAR_ROOM) -> str:
    return answer_to(app, fake_slack, lambda url: app.sender.slash_command(
        text, user_id=user, user_name=user[1:].lower(), channel_id=channel, response_url=url))


def click_refused(app, fake_slack, action_id: str, value: str, user: str, channel: str) -> str:
    return answer_to(app, fake_slack, lambda url: app.sender.block_action(
        action_id, value, user_id=user, channel_id=channel, response_url=url))


def click(app, action_id: str, value: str, user: str, channel: str, message: dict | None = None) -> None:
    r = app.sender.block_action(action_id, value, user_id=user, channel_id=channel, message=message)
    assert r.status_code == 200, r.text


def submit(app, callback_id: str, values: dict, metadata: str, user: str) -> None:
    r = app.sender.view_submission(callback_id, values, user_id=user, private_metadata=metadata)
    assert r.status_code == 200, r.text
    assert not r.content or r.json().get("response_action") != "errors", r.text  # a refusal is no field error


def dm_to(fake_slack, user: str, count: int) -> str:
    """The ``count``-th direct message to ``user`` (a form's answer goes there)."""
    def mine():
        return [c for c in fake_slack.calls("chat.postMessage") if c.params.get("channel") == user]
    calls = wait_until(f"DM {count} to {user}", lambda: len(mine()) >= count and mine())
    return calls[count - 1].params.get("text", "") + "\n" + json.dumps(calls[count - 1].blocks)


def views_opened(fake_slack) -> int:
    return len(fake_slack.calls("views.open"))


TABLES = (Incident, OutboxItem, PreviewDecision, ChangeRequest, Approval, DrillOccurrence, TimelineEvent)


def snapshot(services) -> dict[str, list[dict]]:
    """Every row of every table a command could change, as it stands."""
    with Session(services.engine) as s:
        return {t.__tablename__: [r.model_dump() for r in s.exec(select(t).order_by(
            *t.__table__.primary_key.columns))] for t in TABLES}


def drain(services) -> None:
    assert services.outbox.drain(timeout=30), "the outbox did not empty"


class Unchanged:
    """``with Unchanged(app, page):`` nothing stored, queued or published inside; except
    timeline entries of the ``audited`` kinds (a refused approval is recorded, by design)."""

    def __init__(self, app, page: FakeStatuspage, audited: tuple[str, ...] = ()):
        self.services, self.page, self.audited = app.services, page, audited

    def __enter__(self):
        drain(self.services)
        self.before, self.calls = snapshot(self.services), len(self.page.requests)
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            drain(self.services)
            after = snapshot(self.services)
            added = [e for e in after["timeline_event"] if e not in self.before["timeline_event"]]
            assert [e["kind"] for e in added if e["kind"] not in self.audited] == []
            after["timeline_event"] = [e for e in after["timeline_event"] if e not in added]
            assert after == self.before
            assert len(self.page.requests) == self.calls, "the status page was called"


def refused(text: str, what: str, who: str = NOT_BOB_OR_CAROL) -> None:
    assert f"you may not {what}" in text, text
    assert who in text, text
    assert "nothing was changed" in text


def incident(services, inc_id: int) -> Incident:
    with Session(services.engine) as s:
        return s.get(Incident, inc_id)


def open_by(app, fake_slack, user: str, text: str = "Orders checkout failing sev2 orders") -> Incident:
    """``/dr incident open`` by a permitted person; waits for its channel."""
    before = {i.id for i in rows(app.services, Incident)}
    answer = slash(app, fake_slack, f"incident open {text}", user)
    assert "you may not" not in answer, answer
    [new] = [i for i in rows(app.services, Incident) if i.id not in before]
    drain(app.services)
    inc = incident(app.services, new.id)
    assert inc.channel_id
    return inc


def outbox(services, kind: str) -> list[OutboxItem]:
    return rows(services, OutboxItem, OutboxItem.kind == kind)


def previews_in(fake_slack, channel: str) -> list[dict]:
    with fake_slack._lock:
        found = [m for (ch, _), m in fake_slack.messages.items()
                 if ch == channel and "sp_publish" in json.dumps(m.get("blocks") or [])]
    return sorted(found, key=lambda m: float(m["ts"]))


def value_of(message: dict, action_id: str) -> str:
    return next(e["value"] for b in message["blocks"] for e in b.get("elements", []) if e.get("action_id") == action_id)


# -- the matrix, row by row --------------------------------------------------------------------

def test_declaring_an_incident(dr, fake_slack, page):
    """Found 1: a person in no list opened a sev1 from a random channel and it was on the
    public page at once. Now she is told who may, and nothing exists; an approver's
    incident waits for a preview (the title was typed), the page untouched."""
    with Unchanged(dr, page):
        answer = slash(dr, fake_slack, "incident open Fake outage everything is down sev1 orders", MALLORY,
                       channel="C_RANDOM")
        refused(answer, "declare incidents")
    assert rows(dr.services, Incident) == [] and fake_slack.calls("conversations.create") == []

    inc = open_by(dr, fake_slack, BOB, "Orders checkout failing sev1 orders")
    assert (inc.title, inc.severity, inc.opened_by) == ("Orders checkout failing", "sev1", BOB)
    assert outbox(dr.services, "statuspage.publish") == [] and page.requests == []
    [preview] = previews_in(fake_slack, inc.channel_id)
    assert "Title on the page: *Orders checkout failing*" in json.dumps(preview["blocks"])


def test_changing_an_incidents_status(dr, fake_slack, page):
    """Found 1: ``/dr incident status`` by anyone, from anywhere. Now: only the holders of
    incident_update, and only in the incident's channel."""
    inc = open_by(dr, fake_slack, BOB)
    for channel in (inc.channel_id, DM):
        with Unchanged(dr, page):
            answer = slash(dr, fake_slack, "incident status resolved all fine, nothing to see", MALLORY, channel)
            refused(answer, "change incidents (status, severity, who holds a role)")

    with Unchanged(dr, page):  # nor the Resolve button of the 'every alert resolved' notice
        refused(click_refused(dr, fake_slack, "inc_resolve", str(inc.id), MALLORY, inc.channel_id),
                "change incidents (status, severity, who holds a role)")

    answer = slash(dr, fake_slack, "incident status identified A bad deploy of the orders API", CAROL,
                   inc.channel_id)
    assert "you may not" not in answer
    assert incident(dr.services, inc.id).status is IncidentStatus.IDENTIFIED


def test_the_post_update_button_and_form(dr, fake_slack, page):
    inc = open_by(dr, fake_slack, BOB)
    with Unchanged(dr, page):
        refused(click_refused(dr, fake_slack, "inc_update", str(inc.id), MALLORY, inc.channel_id),
                "change incidents (status, severity, who holds a role)")
        # a forged submission, without the button: answered by DM, nothing changes
        submit(dr, "inc_update", {"status": {"status": {"type": "static_select", "selected_option": {
            "value": "resolved", "text": {"type": "plain_text", "text": "resolved"}}}}}, str(inc.id), MALLORY)
        refused(dm_to(fake_slack, MALLORY, 1), "change incidents (status, severity, who holds a role)")
    assert views_opened(fake_slack) == 0

    click(dr, "inc_update", str(inc.id), CAROL, inc.channel_id)
    wait_until("the update form", lambda: views_opened(fake_slack) == 1)
    submit(dr, "inc_update", {"status": {"status": {"type": "static_select", "selected_option": {
        "value": "monitoring", "text": {"type": "plain_text", "text": "monitoring"}}}}}, str(inc.id), CAROL)
    wait_until("the status change", lambda: incident(dr.services, inc.id).status is IncidentStatus.MONITORING)


def test_publish_edit_and_skip_on_a_preview(dr, fake_slack, page):
    """Found 1: her click on Publish published a preview. Now Publish, Skip, Edit and the
    Edit form are refused to her; an approver's Publish creates the page incident."""
    inc = open_by(dr, fake_slack, BOB, "Orders checkout slow sev3 orders")
    [preview] = previews_in(fake_slack, inc.channel_id)
    item = value_of(preview, "sp_publish")
    with Unchanged(dr, page):
        for action in ("sp_publish", "sp_skip", "sp_edit"):
            refused(click_refused(dr, fake_slack, action, item, MALLORY, inc.channel_id),
                    "publish to the status page")
        submit(dr, "sp_edit", {"body": {"body": "We have been hacked, send bitcoin"}}, item, MALLORY)
        refused(dm_to(fake_slack, MALLORY, 1), "publish to the status page")
    assert views_opened(fake_slack) == 0 and rows(dr.services, PreviewDecision, order=PreviewDecision.item_id) == []

    click(dr, "sp_publish", item, CAROL, inc.channel_id, message=preview)
    wait_until("the page incident", lambda: page.incidents)
    [published] = page.incidents.values()
    assert published["name"] == "Orders checkout slow"
    [decision] = rows(dr.services, PreviewDecision, order=PreviewDecision.item_id)
    assert (decision.decision, decision.decided_by) == ("approved", CAROL)


def test_retrying_an_outbox_item(dr, fake_slack, page):
    inc = open_by(dr, fake_slack, BOB, "Orders checkout slow sev3 orders")
    [preview] = previews_in(fake_slack, inc.channel_id)
    page.fail_next(422)  # the page refuses for good: the item gives up
    click(dr, "sp_publish", value_of(preview, "sp_publish"), BOB, inc.channel_id, message=preview)
    [dead] = wait_until("the dead publish", lambda: [i for i in outbox(dr.services, "statuspage.publish")
                                                    if i.state is OutboxState.DEAD])
    with Unchanged(dr, page):
        refused(slash(dr, fake_slack, f"outbox retry {dead.id}", MALLORY), "retry outbox items")
    listing = slash(dr, fake_slack, "outbox", MALLORY)  # looking is open to all
    assert "statuspage.publish" in listing and "you may not" not in listing

    assert "you may not" not in slash(dr, fake_slack, f"outbox retry {dead.id}", CAROL)
    drain(dr.services)
    assert [i.state for i in outbox(dr.services, "statuspage.publish")] == [OutboxState.DELIVERED]
    assert len(page.incidents) == 1


def test_scheduling_a_drill(dr, fake_slack, page):
    with Unchanged(dr, page):
        refused(slash(dr, fake_slack, "drill schedule orders in 3h default practice", MALLORY), "change the drill calendar")
    assert "you may not" not in slash(dr, fake_slack, "drill schedule orders in 3h default practice", BOB)
    [occ] = rows(dr.services, DrillOccurrence)
    [req] = rows(dr.services, ChangeRequest)
    assert (occ.service, req.requester, req.occurrence_id) == ("orders", BOB, occ.id)


def test_postponing_or_skipping_a_drill(dr, fake_slack, page):
    """The commands, the Postpone and Skip buttons of the drill's message, and their forms."""
    assert "you may not" not in slash(dr, fake_slack, "drill schedule orders in 3h default practice", BOB)
    [occ] = rows(dr.services, DrillOccurrence)
    with Unchanged(dr, page):
        refused(slash(dr, fake_slack, "drill postpone orders to in 5h the team is away", MALLORY),
                "change the drill calendar")
        refused(slash(dr, fake_slack, "drill skip orders not needed this month", MALLORY),
                "change the drill calendar")
        for action in ("drill_postpone", "drill_skip"):
            refused(click_refused(dr, fake_slack, action, str(occ.id), MALLORY, CALENDAR), "change the drill calendar")
        submit(dr, "drill_skip", {"reason": {"reason": "not needed"}}, str(occ.id), MALLORY)
        refused(dm_to(fake_slack, MALLORY, 1), "change the drill calendar")
        later = int(occ.starts_at.timestamp()) + 7200
        submit(dr, "drill_postpone", {"when": {"when": {"type": "datetimepicker", "selected_date_time": later}},
                                      "reason": {"reason": "later"}}, str(occ.id), MALLORY)
        refused(dm_to(fake_slack, MALLORY, 2), "change the drill calendar")
    assert views_opened(fake_slack) == 0

    assert "you may not" not in slash(dr, fake_slack, "drill skip orders the estate is being migrated", CAROL)
    skip = [r for r in rows(dr.services, ChangeRequest) if r.kind.value == "drill_skip"]
    assert [(r.requester, r.occurrence_id, r.state) for r in skip] == [(CAROL, occ.id, RequestState.PENDING)]


def test_change_requests_and_their_buttons_follow_the_approval_policy(tmp_path, fake_slack, page):
    """failover, failback, drill, cancel; Approve, Deny, Cancel; Rollback, Resume, Abort:
    the approval policy decides (requesters, approvers, the requester), in bot/changes.py."""
    services, running = start(f"sqlite:///{tmp_path}/d.db", fake_slack, page, CONFIG.replace(
        "  approvers: [UBOB, UCAROL]\n", "  approvers: [UBOB, UCAROL]\n  requesters: [UBOB, UDAVE]\n"))
    try:
        with running as app:
            for what in ("failover orders region is down", "drill orders default practice"):
                with Unchanged(app, page):
                    answer = slash(app, fake_slack, what, MALLORY)
                assert "you may not request changes of orders (requesters: <@UBOB>, <@UDAVE>)" in answer, answer
            assert "you may not" not in slash(app, fake_slack, "failover orders region is down", DAVE)
            [req] = rows(services, ChangeRequest)
            with Unchanged(app, page, audited=("approval.refused",)):
                for action in ("cr_approve", "cr_deny"):
                    assert "you are not an approver for orders (approvers: <@UBOB>, <@UCAROL>)" in click_refused(
                        app, fake_slack, action, str(req.id), MALLORY, WAR_ROOM)
                assert "only the requester (<@UDAVE>) can cancel" in click_refused(
                    app, fake_slack, "cr_cancel", str(req.id), MALLORY, WAR_ROOM)
                assert "only the requester" in slash(app, fake_slack, f"cancel {req.id}", MALLORY)

            # its run fails; Mallory may not follow it up (Resume is the same check, on an interrupted run)
            services.backends["sim"].estate.inject("orders", "action_fails")
            click(app, "cr_approve", str(req.id), BOB, WAR_ROOM)
            wait_until("the failed run", lambda: rows(services, ChangeRequest)[0].state is RequestState.FAILED,
                       timeout=30)
            with Unchanged(app, page):
                for action in ("run_rollback", "run_abort"):
                    assert "you are not an approver for orders" in click_refused(
                        app, fake_slack, action, str(req.id), MALLORY, WAR_ROOM)
            click(app, "run_abort", str(req.id), CAROL, WAR_ROOM)
            wait_until("the abort", lambda: rows(services, ChangeRequest)[0].state is RequestState.ABORTED)
    finally:
        services.backends["sp"].close()
        services.engine.dispose()


def test_reading_is_open_to_all_and_a_note_needs_the_channel(dr, fake_slack, page):
    """status, plan, requests, drills, timeline, help, incident, outbox, Refresh and Plan:
    a person in no list reads them all. A note goes on the timeline of the channel's
    incident; from a DM it goes nowhere."""
    inc = open_by(dr, fake_slack, BOB)
    with Unchanged(dr, page):
        for text, channel in (("status", DM), ("status orders", DM), ("plan orders", DM), ("requests", DM),
                              ("drills", DM), ("drills history", DM), ("help", DM), ("help incident", DM),
                              ("outbox", DM), ("incident", inc.channel_id), ("timeline", inc.channel_id)):
            answer = slash(dr, fake_slack, text, MALLORY, channel)
            assert "Not done" not in answer and "you may not" not in answer, (text, answer)
        for action, value in (("status_refresh", "orders"), ("plan_failover", "orders")):
            r = dr.sender.block_action(action, value, user_id=MALLORY, channel_id=DM,
                                       response_url=fake_slack.response_url(action))
            assert r.status_code == 200
            [c] = wait_until(action, lambda: [c for c in fake_slack.calls("response_url")
                                              if c.params["_path"] == f"/response/{action}"])
            assert "Not done" not in c.params.get("text", "")
        # from a DM, the summary lists the open incidents instead of guessing one
        listing = slash(dr, fake_slack, "incident", MALLORY, DM)
        assert f"#{inc.id}" in listing
        answer = slash(dr, fake_slack, "incident note the replica lagged first", MALLORY, DM)
        assert "no open incident here" in answer

    slash(dr, fake_slack, "incident note the replica lagged first", MALLORY, inc.channel_id)
    [note] = rows(dr.services, TimelineEvent, TimelineEvent.kind == "incident.note")
    assert (note.incident_id, note.actor, note.text) == (inc.id, MALLORY, "the replica lagged first")


# -- a DM never stands for an incident ------------------------------------------------------------

def test_a_dm_never_guesses_the_incident(dr, fake_slack, page):
    """Found 1: from a DM, ``incident status`` fell back to the only open incident. Now even
    an approver is told to use the incident's channel, and nothing changes."""
    inc = open_by(dr, fake_slack, BOB)
    with Unchanged(dr, page):
        for channel in (DM, "C_RANDOM"):
            answer = slash(dr, fake_slack, "incident status resolved Replica caught up", BOB, channel)
            assert "no open incident here: run this in an incident channel" in answer, answer
    assert incident(dr.services, inc.id).status is IncidentStatus.INVESTIGATING


# -- who holds a role -------------------------------------------------------------------------------

def test_user_groups_everyone_nobody_and_a_directory_failure(sqlite_app, fake_slack, page):
    app = sqlite_app(CONFIG + """
permissions:
  incident_open: [S0ONCALL]
  incident_update: [everyone]
  statuspage_publish: []
  outbox_retry: [S0NOSUCHGRP]
""")
    fake_slack.usergroups["S0ONCALL"] = [DAVE]
    with Unchanged(app, page):
        answer = slash(app, fake_slack, "incident open Orders down sev2 orders", BOB)  # an approver, not on call
        refused(answer, "declare incidents", "only <!subteam^S0ONCALL> may (`permissions.incident_open`)")
    inc = open_by(app, fake_slack, DAVE, "Orders down sev3 orders")  # through the user group

    # everyone: a person in no list changes the status
    assert "you may not" not in slash(app, fake_slack, "incident status identified bad deploy", MALLORY,
                                      inc.channel_id)
    assert incident(app.services, inc.id).status is IncidentStatus.IDENTIFIED

    # []: nobody, not even an approver; the refusal says how to change that
    [preview, *_] = previews_in(fake_slack, inc.channel_id)
    with Unchanged(app, page):
        answer = click_refused(app, fake_slack, "sp_publish", value_of(preview, "sp_publish"), BOB, inc.channel_id)
        refused(answer, "publish to the status page",
                "nobody may until someone is listed in `permissions.statuspage_publish`")

    # a user group Slack cannot list: refused, never allowed on a doubt
    with Unchanged(app, page):
        answer = slash(app, fake_slack, "outbox retry 1", BOB)
        assert "could not check user-group membership" in answer and "nothing was changed" in answer


# -- typed text reaches the page only through a preview ------------------------------------------

def alert(app, fingerprint: str, severity: str = "critical") -> int:
    payload = {"version": "4", "status": "firing", "receiver": "drbot", "alerts": [{
        "status": "firing", "fingerprint": fingerprint, "startsAt": "2024-05-01T12:00:00Z",
        "labels": {"alertname": "OrdersDown", "service": "orders", "severity": severity},
        "annotations": {"summary": "orders 5xx above 20%"}}]}
    r = app.sender.http.post(f"{app.url}/alerts/alertmanager", json=payload,
                             headers={"Authorization": "Bearer am-token"})
    assert r.status_code == 200, r.text
    return incident_of_alert(app.services, f"am:{fingerprint}")


def kinds_queued(services, inc_id: int) -> list[tuple[str, str]]:
    """(kind, status) of the status-page items of ``inc_id``, in order."""
    found = []
    for item in rows(services, OutboxItem, col(OutboxItem.kind).in_(["statuspage.publish",
                                                                      "incident.statuspage_preview"])):
        payload = json.loads(item.payload)
        if payload["incident_id"] == inc_id:
            found.append(("publish" if item.kind == "statuspage.publish" else "preview", payload["status"]))
    return found


def test_typed_text_waits_for_a_preview_and_alerts_keep_their_policy(sqlite_app, fake_slack, page):
    app = sqlite_app()
    services = app.services
    # an alert's incident (sev2: auto) is published at once, with no person's text
    auto = alert(app, "f00d")
    assert kinds_queued(services, auto) == [("publish", "investigating")]
    drain(services)
    channel = incident(services, auto).channel_id
    # a status change without a message: still automatic; with a typed message: a preview
    slash(app, fake_slack, "incident status identified", BOB, channel)
    slash(app, fake_slack, "incident status monitoring We rolled back, call 555-0100 for refunds", BOB, channel)
    assert kinds_queued(services, auto) == [("publish", "investigating"), ("publish", "identified"),
                                            ("preview", "monitoring")]

    # by hand (sev1: auto): the typed title waits; skipped, it still waits on the next change
    inc = open_by(app, fake_slack, BOB, "Orders checkout failing sev1")
    assert kinds_queued(services, inc.id) == [("preview", "investigating")]
    [preview] = previews_in(fake_slack, inc.channel_id)
    click(app, "sp_skip", value_of(preview, "sp_skip"), CAROL, inc.channel_id, message=preview)
    wait_until("the skip", lambda: rows(services, PreviewDecision, order=PreviewDecision.item_id))
    slash(app, fake_slack, "incident status identified", BOB, inc.channel_id)
    assert kinds_queued(services, inc.id) == [("preview", "investigating"), ("preview", "identified")]
    # once a person published it, changes without a message follow the severity's policy again
    drain(services)
    second = previews_in(fake_slack, inc.channel_id)[1]
    click(app, "sp_publish", value_of(second, "sp_publish"), CAROL, inc.channel_id, message=second)
    wait_until("the publish", lambda: len(rows(services, PreviewDecision, order=PreviewDecision.item_id)) == 2)
    slash(app, fake_slack, "incident status monitoring", BOB, inc.channel_id)
    assert kinds_queued(services, inc.id)[2:] == [("publish", "identified"), ("publish", "monitoring")]
    drain(services)
    assert sorted(i["name"] for i in page.incidents.values()) == ["Orders checkout failing", "orders: orders 5xx above 20%"]
    assert ALERTS.id in MACHINE_OPENERS  # what tells an alert's title from a typed one


def test_publish_typed_text_auto_publishes_a_typed_title_at_once(sqlite_app, fake_slack, page):
    app = sqlite_app(CONFIG.replace("  publish: {sev1: auto, sev2: auto, sev3: preview, sev4: skip}\n",
                                    "  publish: {sev1: auto, sev2: auto, sev3: preview, sev4: skip}\n"
                                    "  publish_typed_text: {sev1: auto}\n"))
    services = app.services
    assert services.config.statuspage.publish_typed_text == {"sev1": "auto"}
    inc = open_by(app, fake_slack, BOB, "Orders checkout failing sev1")
    assert kinds_queued(services, inc.id) == [("publish", "investigating")]
    wait_until("the page incident", lambda: page.incidents)
    other = open_by(app, fake_slack, BOB, "Search degraded sev2")  # sev2 is not listed: preview
    assert kinds_queued(services, other.id) == [("preview", "investigating")]


# -- config -------------------------------------------------------------------------------------

MINIMAL = """
regions: [us-east-1, us-west-2]
services:
  - {name: orders, rpo: 5m, rto: 15m, active: us-east-1, standby: us-west-2}
"""


def problems(text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as e:
        parse_config(MINIMAL + text, "drbot.yaml", {})
    return {p.path: p.message for p in e.value.problems}


def test_config_errors_are_located_and_say_how_to_fix():
    assert problems("permissions:\n  incident_open: [U0ALICE01, alice]\n  drill_calendar: [everybody]\n") == {
        "permissions.incident_open[1]": "'alice' is not a Slack user or user-group ID (use U0123ABCD for a person, "
                                        "S0123ABCD for a user group, or the word everyone for anyone in the workspace)",
        "permissions.drill_calendar[0]": "'everybody' is not a Slack user or user-group ID (use U0123ABCD for a "
                                         "person, S0123ABCD for a user group, or the word everyone for anyone in "
                                         "the workspace)"}
    assert problems("permissions:\n  incident_opne: [U0ALICE01]\n") == {
        "permissions.incident_opne": "unknown key (did you mean 'incident_open'?)"}
    bad = problems("sources: {sp: {kind: statuspage, page_id: p, api_key: k}}\n"
                   "statuspage: {source: sp, publish_typed_text: {sev1: skip}}\n")
    assert list(bad) == ["statuspage.publish_typed_text.sev1"] and "'skip' is not one of" in bad[
        "statuspage.publish_typed_text.sev1"]
    config = parse_config(MINIMAL + "permissions: {incident_open: [everyone, S0ONCALL], outbox_retry: []}\n").config
    assert config.permissions.incident_open == ["everyone", "S0ONCALL"]
    assert config.permissions.outbox_retry == [] and config.permissions.drill_calendar is None


def test_the_commented_example_in_drbot_example_yaml_is_valid():
    """Its commented ``permissions:`` (and ``statuspage:``) example, uncommented, loads."""
    text = (ROOT / "deploy" / "drbot.example.yaml").read_text()
    permissions, statuspage = text.split("# permissions:\n", 1)[1].split("# statuspage:\n", 1)
    block = "permissions:\n" + "\n".join(line[2:] for line in permissions.splitlines() if line.startswith("#   "))
    loaded = parse_config(text + block + "\n", "drbot.example.yaml", {"PROMETHEUS_TOKEN": "x"})
    assert loaded.config.permissions.incident_open == ["everyone"]
    assert loaded.config.permissions.statuspage_publish == ["S0INCIDENTCMD"]
    page = StatuspageConfig.model_validate(yaml.safe_load("\n".join(
        line[2:] for line in statuspage.splitlines() if line.startswith("#   "))))
    assert page.publish_typed_text == {"sev1": "preview", "sev2": "preview"}


# -- the matrix in the docs is the table, and every row has its test here ------------------------

MATRIX_TESTS = {
    "Declare an incident": test_declaring_an_incident,
    "Change an incident's status": test_changing_an_incidents_status,
    "Post update (the reminder's button and form)": test_the_post_update_button_and_form,
    "Publish, Edit, Skip a status-page preview": test_publish_edit_and_skip_on_a_preview,
    "Retry an outbox item": test_retrying_an_outbox_item,
    "Schedule a drill": test_scheduling_a_drill,
    "Postpone or skip a drill": test_postponing_or_skipping_a_drill,
    "Request a change, decide it, follow it up": test_change_requests_and_their_buttons_follow_the_approval_policy,
    "Read; add a note": test_reading_is_open_to_all_and_a_note_needs_the_channel,
    # the core decides these (a free role, one's own follow-up): their own scenario tests
    "Give an incident role, change the severity": incident_command_tests.test_who_may_change_what,
    "Evacuate a region, return, follow it up": evacuation_tests.test_who_may_ask_approve_abort_and_resume_an_evacuation,
    "Answer a manual runbook step":
        manual_step_tests.test_posted_in_the_thread_a_non_approver_is_refused_and_the_approvers_done_goes_on,
    "Follow-ups: add, list, mark done, review held":
        followup_tests.test_followups_are_filed_once_listed_closed_by_who_may_and_in_the_postmortem,
}


def matrix_rows() -> list[tuple[str, set[str], str]]:
    """(what, the commands/buttons/forms named, the role) of each row of the docs' matrix."""
    text = (ROOT / "docs" / "config.md").read_text()
    section = text.split("### Permission matrix", 1)[1].split("\n#", 1)[0]
    out = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not line.startswith("|") or set(cells[0]) <= {"-"} or cells[0] == "What":
            continue
        named = set(re.findall(r"`([^`]+)`", cells[1]))
        role = re.findall(r"`([^`]+)`", cells[2])
        out.append((cells[0], named, role[0] if role else cells[2].split()[0].lower()))
    return out


def declared() -> dict[str, str]:
    """What commands/table.py declares: ``/dr incident open`` -> role, ``sp_publish`` -> role..."""
    out = {}
    for sub in SUBCOMMANDS:
        for verb, role in sub.roles.items():
            out[f"/dr {sub.name} {verb}".strip() if verb else f"/dr {sub.name}"] = role
    out.update({b.action_id: b.role for b in BUTTONS})
    out.update({f"form {f.callback_id}": f.role for f in FORMS})
    out.update({s.action_id: s.role for s in SHORTCUTS})
    return out


def test_the_matrix_in_the_docs_is_the_table_and_each_row_has_a_test():
    names = {ANYONE: "anyone", APPROVAL_POLICY: "approval"}
    in_docs: dict[str, str] = {}
    for what, named, role in matrix_rows():
        assert what in MATRIX_TESTS, f"row {what!r} of the matrix has no test in MATRIX_TESTS"
        for name in named:
            assert name not in in_docs, f"{name} is in two rows of the matrix"
            in_docs[name] = role
    assert set(MATRIX_TESTS) == {what for what, _, _ in matrix_rows()}
    expected = {name: names.get(role, role) for name, role in declared().items()}
    assert in_docs == expected
    assert {r for r in declared().values()} == {ANYONE, APPROVAL_POLICY, *ROLES}
