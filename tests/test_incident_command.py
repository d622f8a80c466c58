"""Incident command over real HTTP (signed like Slack signs, the real outbox worker, the
fake Slack Web API): roles claimed with the pinned summary's Claim buttons or given with
`/dr incident role`, shown in the pinned summary (updated in place), the channel topic and
the timeline; who may change what; `/dr incident severity`; the call-out of an incident
without a commander, once; and, on PostgreSQL, ten people claiming the same free role at
once: one holder, one timeline event."""
from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest

from bot.actor import Actor
from bot.config import parse_config
from bot.incident_command import call_out_missing_commanders, claim
from bot.store.command_tables import IncidentRole
from bot.store.incident_tables import Incident
from bot.wiring import build_services
from tests.app_server import running_app
from tests.helpers import SANDBOX_CONFIG, answered, delivered, rows, wait_until
from tests.postgres import temporary_schema
from tests.test_incident_slack import Clock, events, open_incident_by_slash

CONFIG = SANDBOX_CONFIG + """
permissions:
  incident_open: [everyone]
  incident_update: [UBOB]
incidents:
  commander_within: 10m
"""


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def command(tmp_path, clock):
    services = build_services(parse_config(CONFIG, "cmd.yaml", {}), db_url=f"sqlite:///{tmp_path}/c.db", clock=clock)
    yield services
    services.engine.dispose()


def _channel(services, incident_id: int) -> str:
    return wait_until("the incident channel", lambda: rows(services, Incident, Incident.id == incident_id)[0].channel_id)


def _summary(fake_slack, services, incident_id: int) -> tuple[str, dict]:
    inc = rows(services, Incident, Incident.id == incident_id)[0]
    return inc.summary_ts, fake_slack.message(inc.channel_id, inc.summary_ts)


def answer(fake_slack, name: str) -> str:
    """What the app answered at response_url ``name``, as JSON text."""
    return json.dumps(answered(fake_slack, name).params, ensure_ascii=False)


def _role_lines(message: dict) -> dict[str, tuple[str, str | None]]:
    """role -> (the line's text, the Claim button's value or None)."""
    out = {}
    for b in message["blocks"]:
        text = b.get("text", {}).get("text", "")
        if b["type"] == "section" and text.startswith("*") and "*: " in text:
            role = text[1:text.index("*: ")]
            out[role] = (text, (b.get("accessory") or {}).get("value"))
    return out


def test_roles_claimed_and_given_show_in_the_summary_the_topic_and_the_timeline(command, fake_slack):
    with running_app(command, fake_slack) as app:
        number = open_incident_by_slash(app, fake_slack, "checkout errors sev2 orders", "open")
        channel = _channel(command, number)
        delivered(command)
        ts, pinned = _summary(fake_slack, command, number)
        assert (channel, ts) in {(c.params["channel"], c.params["timestamp"])
                                                    for c in fake_slack.calls("pins.add")}
        lines = _role_lines(pinned)
        assert list(lines) == ["commander", "communications", "scribe"]
        assert lines["commander"] == ("*commander*: nobody yet", f"{number}:commander")
        assert fake_slack.topics[channel] == f"SEV2 · investigating · no commander yet · #{number} checkout errors"

        # anyone claims a free role for themselves: alice has no incident permission
        r = app.sender.block_action("inc_claim", f"{number}:commander", user_id="UALICE", user_name="alice",
                                    channel_id=channel, message=pinned)
        assert r.status_code == 200
        wait_until("the summary updated", lambda: "<@UALICE>" in json.dumps(fake_slack.message(channel, ts)))
        delivered(command)
        updated = _role_lines(fake_slack.message(channel, ts))
        assert updated["commander"] == ("*commander*: <@UALICE>", None)  # held: no Claim button
        assert updated["scribe"][1] == f"{number}:scribe"
        assert fake_slack.topics[channel] == f"SEV2 · investigating · commander alice · #{number} checkout errors"

        # the commander hands out roles; a mention as Slack escapes it
        r = app.sender.slash_command("incident role scribe <@UCAROL|carol>", user_id="UALICE", channel_id=channel,
                                     response_url=fake_slack.response_url("role"))
        assert r.status_code == 200
        assert "<@UCAROL> is now *scribe* of incident" in answer(fake_slack, "role")
        delivered(command)
        assert "scribe carol" in fake_slack.topics[channel]

        # carol (scribe, no permission) cannot take the held commander role
        app.sender.slash_command("incident role commander me", user_id="UCAROL", channel_id=channel,
                                 response_url=fake_slack.response_url("take"))
        refused = answer(fake_slack, "take")
        assert "Not done: you may not change incidents" in refused and "UBOB" in refused

        # the commander raises the severity; the summary and topic follow
        app.sender.slash_command("incident severity sev1 payments down in two regions", user_id="UALICE",
                                 channel_id=channel, response_url=fake_slack.response_url("sev"))
        assert "severity *sev2 → sev1*: payments down in two regions" in answer(fake_slack, "sev")
        delivered(command)
        assert fake_slack.topics[channel].startswith("SEV1 · investigating · commander alice")
        assert "Incident #%d · sev1" % number in json.dumps(fake_slack.message(channel, ts), ensure_ascii=False)

    holders = {r.role: r.user_id for r in rows(command, IncidentRole, order=IncidentRole.role)}
    assert holders == {"commander": "UALICE", "scribe": "UCAROL"}
    kinds = [(e.kind, json.loads(e.data).get("role") or json.loads(e.data).get("to")) for e in events(command, number)
             if e.kind in ("incident.role", "incident.severity")]
    assert kinds == [("incident.role", "commander"), ("incident.role", "scribe"), ("incident.severity", "sev1")]


def test_who_may_change_what(command, fake_slack):
    with running_app(command, fake_slack) as app:
        number = open_incident_by_slash(app, fake_slack, "checkout errors sev2 orders", "open")
        channel = _channel(command, number)
        for name, text in (("sev", "incident severity sev1 it looks bad"),  # no permission, not commander
                           ("give", "incident role commander <@UERIN|erin>")):  # giving a free role away
            app.sender.slash_command(text, user_id="UDAVE", channel_id=channel, response_url=fake_slack.response_url(name))
            reply = answer(fake_slack, name)
            assert "Not done: you may not change incidents" in reply and "UBOB" in reply, reply
        app.sender.slash_command("incident role commander <@UERIN|erin>", user_id="UBOB", channel_id=channel,
                                 response_url=fake_slack.response_url("bob"))  # incident_update may
        assert "<@UERIN> is now *commander*" in answer(fake_slack, "bob")
        for i, (text, expected) in enumerate((
                ("incident role comander me", "'comander' is not a role of an incident (did you mean 'commander'?)"),
                ("incident role scribe alice", "'alice' is not a person drbot can tell"),
                ("incident severity sev9 oops", "'sev9' is not a severity"),
                ("incident severity sev3", "say why after the severity"))):
            app.sender.slash_command(text, user_id="UBOB", channel_id=channel, response_url=fake_slack.response_url(f"u{i}"))
            assert expected in answer(fake_slack, f"u{i}"), text
    assert {r.role: r.user_id for r in rows(command, IncidentRole, order=IncidentRole.role)} == {"commander": "UERIN"}
    assert [e for e in events(command, number) if e.kind == "incident.severity"] == []


def test_an_incident_without_a_commander_is_called_out_once(command, fake_slack, clock):
    with running_app(command, fake_slack) as app:
        lonely = open_incident_by_slash(app, fake_slack, "checkout errors sev2 orders", "a")
        led = open_incident_by_slash(app, fake_slack, "payments slow sev3 payments", "b")
        channel = _channel(command, lonely)
        _channel(command, led)
        delivered(command)
        claim(command, Actor("UALICE", "alice"), led, "commander")
        assert call_out_missing_commanders(command) == []  # not yet 10 minutes
        clock.advance(601)
        assert call_out_missing_commanders(command) == [lonely]
        assert call_out_missing_commanders(command) == []  # once
        delivered(command)
    posts = [c for c in fake_slack.calls("chat.postMessage") if c.params["channel"] == channel
             and "has had no commander" in json.dumps(c.params)]
    assert len(posts) == 1 and "10m" in json.dumps(posts[0].params)
    assert [b for b in posts[0].blocks if b.get("accessory", {}).get("value") == f"{lonely}:commander"]
    assert len(events(command, lonely, "incident.no_commander")) == 1


@pytest.mark.postgres
def test_ten_people_claiming_one_free_role_at_once_leave_one_holder(pg_url, fake_slack):
    with temporary_schema(pg_url) as url:
        services = build_services(parse_config(CONFIG, "cmd.yaml", {}), db_url=url)
        try:
            with running_app(services, fake_slack) as app:
                number = open_incident_by_slash(app, fake_slack, "checkout errors sev2 orders", "open")
                channel = _channel(services, number)
                start = threading.Barrier(10)

                def click(i: int) -> None:
                    start.wait()
                    app.sender.block_action("inc_claim", f"{number}:commander", user_id=f"UP{i}",
                                            user_name=f"p{i}", channel_id=channel)

                threads = [threading.Thread(target=click, args=(i,)) for i in range(10)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                wait_until("every click handled", lambda: services.metrics.requests.labels(
                    "click", "inc_claim", "refused")._value.get() + services.metrics.requests.labels(
                    "click", "inc_claim", "ok")._value.get() >= 10, timeout=20)
            holders = rows(services, IncidentRole, order=IncidentRole.role)
            assert len(holders) == 1 and holders[0].user_id.startswith("UP")
            assert len(events(services, number, "incident.role")) == 1
            assert services.metrics.requests.labels("click", "inc_claim", "refused")._value.get() == 9
        finally:
            services.engine.dispose()


OPS = CONFIG + """  ops_channel: C0OPSDR01
"""


def test_the_ops_channel_hears_opening_status_severity_and_commander(tmp_path, fake_slack, clock):
    services = build_services(parse_config(OPS, "ops.yaml", {}), db_url=f"sqlite:///{tmp_path}/o.db", clock=clock)
    try:
        with running_app(services, fake_slack) as app:
            number = open_incident_by_slash(app, fake_slack, "checkout errors sev2 orders", "open")
            channel = _channel(services, number)
            claim(services, Actor("UALICE", "alice"), number, "commander")
            for name, user, text in (("sev", "UALICE", "incident severity sev1 both regions degraded"),
                                     ("status", "UBOB", "incident status identified replica lag")):
                app.sender.slash_command(text, user_id=user, channel_id=channel,
                                         response_url=fake_slack.response_url(name))
                answer(fake_slack, name)
            delivered(services)
    finally:
        services.engine.dispose()
    ops = [json.dumps(c.params, ensure_ascii=False) for c in fake_slack.calls("chat.postMessage")
           if c.params["channel"] == "C0OPSDR01"]
    assert len(ops) == 4, ops
    assert "opened by U_ALICE" in ops[0], ops[0]  # not a valid user ID: never written as a mention
    assert "commander now <@UALICE>" in ops[1]
    assert "severity now *sev1* (by <@UALICE>)" in ops[2] and "Incident #%d · sev1" % number in ops[2]
    assert "status now *identified* (by <@UBOB>)" in ops[3]
    for post in ops:
        assert f"<#{channel}>" in post and "RTO so far" in post and "(target 15m)" in post
        assert "orders: " in post and "(RPO target 5m)" in post and "lag 20s" in post
