"""Follow-ups over real HTTP (signed like Slack signs, the real outbox worker, the fake
Slack Web API and a fake Jira Cloud API): added with an owner and a due date in the
incident channel, filed in Jira once (a retry after a lost answer finds the issue by its
label instead of opening a second), listed, marked done only by who may, in the
postmortem draft with owners, dates and issue keys; the review reminder once, 48 hours
after resolve; overdue owners reminded once per interval (the services' clock)."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from bot.config import ConfigError, parse_config
from bot.incident_followups import remind
from bot.store.command_tables import FollowUp
from bot.wiring import build_services
from tests.app_server import running_app
from tests.fakes.jira_api import FakeJira
from tests.helpers import SANDBOX_CONFIG, delivered, rows, wait_until
from tests.test_incident_command import _channel, answer
from tests.test_incident_slack import Clock, events, open_incident_by_slash

JIRA = SANDBOX_CONFIG.replace("services:\n", """  jira:
    kind: jira
    base_url: ${JIRA_URL}
    email: drbot@example.com
    api_token: ${JIRA_TOKEN}
    project: OPS
services:
""", 1) + """
permissions:
  incident_open: [everyone]
  incident_update: [UBOB]
incidents:
  followups: {tracker: jira}
"""


@pytest.fixture
def jira():
    with FakeJira() as fake:
        yield fake


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def tracked(tmp_path, jira, clock):
    config = parse_config(JIRA, "fu.yaml", {"JIRA_URL": jira.url, "JIRA_TOKEN": "jira-token"})
    services = build_services(config, db_url=f"sqlite:///{tmp_path}/f.db", clock=clock)
    yield services
    services.engine.dispose()


def say(app, fake_slack, channel: str, user: str, text: str, name: str) -> str:
    app.sender.slash_command(text, user_id=user, channel_id=channel, response_url=fake_slack.response_url(name))
    return answer(fake_slack, name)


def test_followups_are_filed_once_listed_closed_by_who_may_and_in_the_postmortem(tracked, jira, fake_slack, clock):
    due = (clock() + timedelta(days=20)).date().isoformat()
    with running_app(tracked, fake_slack) as app:
        number = open_incident_by_slash(app, fake_slack, "replica lag sev2 orders", "open")
        channel = _channel(tracked, number)
        added = say(app, fake_slack, channel, "UALICE",
                    f"followup add rotate the replica certificates <@UCAROL|carol> due {due}", "add1")
        assert f"Follow-up added to incident #{number}" in added and "<@UCAROL>" in added and "Jira" in added
        delivered(tracked)
        [first] = rows(tracked, FollowUp)
        assert (first.owner, first.owner_name, first.due_at.date().isoformat()) == ("UCAROL", "carol", due)
        assert first.tracker_key == "OPS-1"
        fields = jira.issues["OPS-1"]
        assert fields["summary"] == "rotate the replica certificates" and fields["duedate"] == due
        assert f"drbot-followup-{first.id}" in fields["labels"] and "postmortem" in fields["labels"]
        assert f"incident #{number}" in json.dumps(fields["description"])

        # the create succeeds but its answer is lost (500): the retry finds the issue by its label
        jira.fail_next(500, after=True)
        say(app, fake_slack, channel, "UALICE", "followup add alert on replica lag before the RPO due in 3d", "add2")
        wait_until("the first attempt", lambda: jira.calls("POST", "/rest/api/3/issue"))
        clock.advance(120)  # past the outbox's backoff
        delivered(tracked)
        second = rows(tracked, FollowUp, FollowUp.id != first.id)[0]
        assert second.tracker_key == "OPS-2" and second.owner == ""
        assert len(jira.issues) == 2 and len(jira.calls("POST", "/rest/api/3/issue")) == 2

        listed = say(app, fake_slack, channel, "UDAVE", "followup list", "list")
        assert f"#{first.id} rotate the replica certificates" in listed and "OPS-1" in listed and "OPS-2" in listed
        refused = say(app, fake_slack, channel, "UDAVE", f"followup done {first.id}", "dave")
        assert "Not done: you may not change incidents" in refused
        assert f"#{first.id} rotate the replica certificates" in say(app, fake_slack, channel, "UCAROL",
                                                                     f"followup done {first.id}", "carol")
        say(app, fake_slack, channel, "UCAROL", f"followup done {first.id}", "again")  # once
        assert len(events(tracked, number, "followup.done")) == 1
        assert "there is no follow-up #999" in say(app, fake_slack, channel, "UBOB", "followup done 999", "nope")
        for i, (text, expected) in enumerate((("followup add", "say what to do"),
                                              ("followup add fix it due 2001-01-01", "2001-01-01 has passed"),
                                              ("followup add fix it due tomorrow", "'tomorrow' is not a due date"),
                                              ("followup done one", "say which follow-up"))):
            assert expected in say(app, fake_slack, channel, "UBOB", text, f"bad{i}"), text

        say(app, fake_slack, channel, "UBOB", "incident status resolved certificates rotated", "resolve")
        delivered(tracked)
    uploads = [c for c in fake_slack.calls("files.getUploadURLExternal")]
    assert uploads and uploads[-1].params["filename"] == f"postmortem-incident-{number}.md"
    draft = next(v.decode() for v in fake_slack.uploads.values() if b"Postmortem draft" in v)
    assert f"- [x] #{first.id} rotate the replica certificates · owner: carol · due {due} · OPS-1 {jira.url}/browse/OPS-1" in draft
    assert f"- [ ] #{second.id} alert on replica lag before the RPO · owner: nobody yet · due " in draft


def test_review_and_overdue_reminders_follow_the_clock(tracked, fake_slack, clock):
    with running_app(tracked, fake_slack) as app:
        number = open_incident_by_slash(app, fake_slack, "replica lag sev2 orders", "open")
        channel = _channel(tracked, number)
        early = say(app, fake_slack, channel, "UBOB", "followup reviewed", "early")
        assert f"incident #{number} is still investigating: its review comes after it is resolved" in early
        say(app, fake_slack, channel, "UALICE", "followup add add a lag alert <@UCAROL|carol> due in 2d", "add")
        say(app, fake_slack, channel, "UBOB", "incident status resolved", "resolve")
        delivered(tracked)
        assert remind(tracked) == {"reviews": [], "overdue": []}
        clock.advance(timedelta(days=2, minutes=1).total_seconds())  # overdue, review due (48 h)
        assert remind(tracked)["reviews"] == [number]
        assert remind(tracked) == {"reviews": [], "overdue": []}  # each once (the overdue one for 24 h)
        clock.advance(timedelta(hours=24).total_seconds())
        assert len(remind(tracked)["overdue"]) == 1
        delivered(tracked)
        assert "postmortem review is recorded as held" in say(app, fake_slack, channel, "UBOB", "followup reviewed", "r")
    posts = [json.dumps(c.params, ensure_ascii=False) for c in fake_slack.calls("chat.postMessage")
             if c.params.get("channel") == channel]
    assert sum("The postmortem review of incident #%d is due" % number in p for p in posts) == 1
    overdue = [p for p in posts if "Overdue follow-ups of incident" in p]
    assert len(overdue) == 2 and all("<@UCAROL>" in p for p in overdue)
    assert len(events(tracked, number, "incident.reviewed")) == 1


def test_the_tracker_must_be_a_jira_source():
    text = JIRA.replace("tracker: jira", "tracker: sim")
    with pytest.raises(ConfigError) as e:
        parse_config(text, "fu.yaml", {"JIRA_URL": "http://127.0.0.1:9", "JIRA_TOKEN": "t"})
    assert "incidents.followups.tracker" in str(e.value) and "cannot serve as a tracker source" in str(e.value)
