"""Follow-ups filed as GitHub issues (kind ``github_issues``), beside Jira: over real HTTP
with the fake Slack and a local fake of GitHub's REST API. Filed once (a retry after a lost
answer finds the issue by its label), with the owner's due date in the body; GitHub's errors
become the right IntegrationError kinds."""
from __future__ import annotations

from datetime import timedelta

import pytest

from bot.config import parse_config
from bot.store.command_tables import FollowUp
from bot.wiring import build_services
from integrations.base import ErrorKind, IntegrationError
from integrations.github_issues import GithubIssues, GithubIssuesOptions
from integrations.http_client import RateLimited
from tests.app_server import running_app
from tests.fakes.github_api import FakeGithub
from tests.helpers import SANDBOX_CONFIG, delivered, rows, wait_until
from tests.test_incident_command import _channel, answer
from tests.test_incident_slack import Clock, open_incident_by_slash

TOKEN = "ghp-test-token"
GITHUB = SANDBOX_CONFIG.replace("services:\n", """  issues:
    kind: github_issues
    repository: acme/dr-followups
    token: ${GITHUB_TOKEN}
    api_url: ${GITHUB_URL}
    timeout: 2
services:
""", 1) + """
permissions:
  incident_open: [everyone]
  incident_update: [UBOB]
incidents:
  followups: {tracker: issues}
"""


@pytest.fixture
def github():
    with FakeGithub(TOKEN) as fake:
        yield fake


def say(app, fake_slack, channel: str, user: str, text: str, name: str) -> str:
    app.sender.slash_command(text, user_id=user, channel_id=channel, response_url=fake_slack.response_url(name))
    return answer(fake_slack, name)


def test_followups_become_github_issues_once(github, fake_slack, tmp_path):
    clock = Clock()
    config = parse_config(GITHUB, "gh.yaml", {"GITHUB_URL": github.url, "GITHUB_TOKEN": TOKEN})
    services = build_services(config, db_url=f"sqlite:///{tmp_path}/gh.db", clock=clock)
    due = (clock() + timedelta(days=14)).date().isoformat()
    try:
        with running_app(services, fake_slack) as app:
            number = open_incident_by_slash(app, fake_slack, "replica lag sev2 orders", "open")
            channel = _channel(services, number)
            added = say(app, fake_slack, channel, "UALICE",
                        f"followup add rotate the replica certificates <@UCAROL|carol> due {due}", "add1")
            assert "GitHub Issues" in added
            delivered(services)
            [first] = rows(services, FollowUp)
            assert (first.tracker_key, first.tracker_url) == ("#1", "https://github.com/acme/dr-followups/issues/1")
            issue = github.issues[1]
            assert issue["title"] == "rotate the replica certificates"
            assert f"drbot-followup-{first.id}" in issue["labels"] and "postmortem" in issue["labels"]
            assert f"incident #{number}" in issue["body"] and f"Due: {due}" in issue["body"]
            [post] = github.calls("POST", "/repos/acme/dr-followups/issues")
            assert post.headers["x-github-api-version"] == "2022-11-28"
            assert post.headers["accept"] == "application/vnd.github+json"

            # the create succeeds but its answer is lost (502): the retry finds it by its label
            github.fail_next(502, after=True)
            say(app, fake_slack, channel, "UALICE", "followup add alert on replica lag before the RPO", "add2")
            wait_until("the first attempt", lambda: github.calls("POST", "/repos/acme/dr-followups/issues")[1:])
            clock.advance(120)  # past the outbox's backoff
            delivered(services)
            second = rows(services, FollowUp, FollowUp.id != first.id)[0]
            assert second.tracker_key == "#2"
            assert len(github.issues) == 2 and len(github.calls("POST", "/repos/acme/dr-followups/issues")) == 2
    finally:
        services.runner.executor.shutdown(wait=True)
        services.engine.dispose()


def backend(github: FakeGithub, **over) -> GithubIssues:
    options = GithubIssuesOptions(**({"repository": "acme/dr-followups", "token": TOKEN, "api_url": github.url,
                                       "timeout": 2} | over))
    return GithubIssues("issues", options)


def test_github_errors_are_said_and_classified(github):
    with pytest.raises(IntegrationError) as e:
        backend(github, token="wrong").create_issue("drbot-followup-1", "x", "y")
    assert e.value.kind is ErrorKind.NOT_PERMITTED and "Bad credentials" in str(e.value)
    with pytest.raises(IntegrationError) as e:
        backend(github, repository="acme/other").create_issue("drbot-followup-1", "x", "y")
    assert e.value.kind is ErrorKind.PERMANENT and "repository acme/other not found" in str(e.value)
    github.fail_next(403, headers={"x-ratelimit-remaining": "0", "retry-after": "30"})
    with pytest.raises(RateLimited) as e:
        backend(github).create_issue("drbot-followup-1", "x", "y")
    assert e.value.transient and e.value.retry_after == 30
    with pytest.raises(IntegrationError) as e:
        backend(github).create_issue("drbot-followup-1", "   ", "y")
    assert e.value.kind is ErrorKind.PERMANENT and "Validation Failed" in str(e.value) and "title" in str(e.value)
    assert github.issues == {}
    assert backend(github).check().ok
    assert not backend(github, repository="acme/other").check().ok


def test_a_token_is_required():
    with pytest.raises(Exception) as e:
        parse_config(GITHUB.replace("${GITHUB_TOKEN}", ""), "gh.yaml", {"GITHUB_URL": "http://127.0.0.1:9"})
    assert "token" in str(e.value)
