"""Automatic "no change since HH:MM" updates (``incidents.no_change_updates``): posted in the
incident channel by the scheduler's minute job once nothing happened for the cadence, again
a cadence later, never while something else happened; driven by the services' clock, the
incident opened and noted over real HTTP, the posts read at the fake Slack."""
from __future__ import annotations

from bot import jobs
from bot.config import parse_config
from bot.no_change import post_due
from bot.store.incident_tables import Incident
from bot.store.models import TimelineEvent
from bot.wiring import build_services
from tests.app_server import running_app
from tests.fakes.statuspage_api import FakeStatuspage
from tests.helpers import answered, delivered, rows, wait_until
from tests.paging_support import Clock

CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim: {kind: sandbox, timeout: 1.0, profiles: {orders: {lag: 20, jitter: 0}}}
services:
  - name: orders
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
permissions:
  incident_open: [UALICE]
  incident_update: [UALICE]
incidents:
  reminder: 2h
  commander_within: null
  no_change_updates: 15m
"""


def no_change_posts(fake_slack, channel: str) -> list[str]:
    return [c.params["text"] for c in fake_slack.calls("chat.postMessage")
            if c.params.get("channel") == channel and "no change since" in c.params.get("text", "")]


def test_no_change_update_at_the_cadence_and_not_after_a_change(fake_slack, tmp_path):
    clock = Clock()
    services = build_services(parse_config(CONFIG, "no-change.yaml", {}), db_url=f"sqlite:///{tmp_path}/drbot.db",
                              clock=clock)
    try:
        with running_app(services, fake_slack) as app:
            r = app.sender.slash_command("incident open Orders slow sev2 orders", user_id="UALICE",
                                         channel_id="C_WAR", response_url=fake_slack.response_url("open"))
            assert r.status_code == 200
            answered(fake_slack, "open")
            [inc] = rows(services, Incident)
            delivered(services)
            channel = wait_until("the incident channel", lambda: rows(services, Incident)[0].channel_id)

            assert post_due(services) == []  # just opened
            clock.advance(14 * 60)
            assert post_due(services) == []
            clock.advance(61)  # 15 min without anything on the timeline: the scheduler's job posts
            jobs.run("incident_reminders")
            delivered(services)
            [first] = no_change_posts(fake_slack, channel)
            assert first.startswith(f"Incident #{inc.id}: no change since ")
            assert post_due(services) == []  # once per cadence
            clock.advance(10 * 60)
            assert post_due(services) == []

            # A status update 10 minutes after it is a change: the next waits 15 min from that.
            r = app.sender.slash_command("incident status monitoring replica caught up", user_id="UALICE",
                                         channel_id=channel, response_url=fake_slack.response_url("status"))
            assert r.status_code == 200
            answered(fake_slack, "status")
            wait_until("the status update", lambda: rows(services, Incident)[0].last_update_at)
            clock.advance(10 * 60)
            assert post_due(services) == []  # 20 min after the first update, 10 after the status update
            clock.advance(6 * 60)
            assert post_due(services) == [inc.id]
            delivered(services)
            assert len(no_change_posts(fake_slack, channel)) == 2
            marks = rows(services, TimelineEvent, TimelineEvent.incident_id == inc.id,
                         TimelineEvent.kind == "incident.no_change")
            assert len(marks) == 2
    finally:
        services.runner.executor.shutdown(wait=True)
        services.engine.dispose()


def test_off_by_default(fake_slack, tmp_path):
    text = CONFIG.replace("  no_change_updates: 15m\n", "")
    services = build_services(parse_config(text, "no-change.yaml", {}), db_url=f"sqlite:///{tmp_path}/drbot.db")
    try:
        assert services.config.incidents.no_change_updates is None
        assert post_due(services) == []
    finally:
        services.runner.executor.shutdown(wait=True)
        services.engine.dispose()


SP_KEY = "sp-key-no-change"
SP_CONFIG = CONFIG.replace("sources:\n", """sources:
  sp: {kind: statuspage, page_id: pg1, api_key: "${SP_KEY}", base_url: "${SP_URL}", timeout: 2}
""", 1) + """statuspage:
  source: sp
  publish: {sev1: auto, sev2: auto, sev3: preview, sev4: skip}
  publish_typed_text: {sev2: auto}
"""


def test_the_published_incident_gets_the_no_change_update_on_the_status_page(fake_slack, tmp_path):
    clock = Clock()
    with FakeStatuspage(page_id="pg1", api_key=SP_KEY) as page:
        services = build_services(parse_config(SP_CONFIG, "no-change.yaml", {"SP_KEY": SP_KEY, "SP_URL": page.url}),
                                  db_url=f"sqlite:///{tmp_path}/drbot.db", clock=clock)
        try:
            with running_app(services, fake_slack) as app:
                r = app.sender.slash_command("incident open Orders slow sev2 orders", user_id="UALICE",
                                             channel_id="C_WAR", response_url=fake_slack.response_url("open"))
                assert r.status_code == 200
                answered(fake_slack, "open")
                delivered(services)
                [inc] = wait_until("published", lambda: [i for i in rows(services, Incident) if i.statuspage_id])
                clock.advance(16 * 60)
                assert post_due(services) == [inc.id]
                delivered(services)
                [public] = page.incidents.values()
                newest = public["incident_updates"][0]["body"]
                assert newest.startswith("No change since ") and "still working on it" in newest
                assert len(public["incident_updates"]) == 2
                # the publish is a post, not a change: the next update still says the first time
                clock.advance(16 * 60)
                assert post_due(services) == [inc.id]
                delivered(services)
                [first, second] = no_change_posts(fake_slack, inc.channel_id)
                assert first.split("since ")[1] == second.split("since ")[1]
        finally:
            services.runner.executor.shutdown(wait=True)
            services.engine.dispose()
