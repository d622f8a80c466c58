"""Follow-up issues in Jira Cloud (kind ``jira``, capability TRACKER).

REST API v3 with basic auth (an Atlassian account's email and an API token). An issue is
created with a label naming drbot's follow-up (``drbot-followup-<id>``); before creating,
that label is searched (JQL), so a retry after a timeout whose first POST succeeded finds
the issue instead of opening a second one. The description is an Atlassian Document
Format paragraph per line of text; a URL in it is a link (ADF ``link`` mark), so the way
back to the incident's Slack channel is one click.

Errors: 429 and 5xx, timeouts and connection failures are TRANSIENT (with Retry-After when
Jira says); 401/403 NOT_PERMITTED; other 4xx PERMANENT with Jira's own messages
(``errorMessages`` and ``errors`` by field). The backend never sleeps or retries: the
outbox does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
from pydantic import Field, SecretStr, field_validator

from integrations.base import TRACKER, BackendOptions, CheckResult, ErrorKind, IntegrationError
from integrations.http_client import HttpBackend, RateLimited, check_http_url, make_client, retry_after


_URL = re.compile(r"https?://[^\s<>\"]+")


def _inline(line: str) -> list[dict]:
    """ADF text nodes of one line; each URL in it a text node with a ``link`` mark."""
    out: list[dict] = []
    at = 0
    for m in _URL.finditer(line):
        if m.start() > at:
            out.append({"type": "text", "text": line[at:m.start()]})
        out.append({"type": "text", "text": m.group(), "marks": [{"type": "link", "attrs": {"href": m.group()}}]})
        at = m.end()
    if at < len(line):
        out.append({"type": "text", "text": line[at:]})
    return out


@dataclass(frozen=True)
class TrackedIssue:
    key: str
    url: str
    created: bool
    """False: it existed already (found by its label), or dry run."""


class JiraOptions(BackendOptions):
    base_url: str
    """Your site, e.g. https://example.atlassian.net"""
    email: str = Field(min_length=3)
    api_token: SecretStr
    """Use ``${JIRA_API_TOKEN}`` in the config; never write the token itself."""
    project: str = Field(pattern=r"^[A-Z][A-Z0-9_]{1,19}$")
    """The project key, e.g. OPS."""
    issue_type: str = "Task"
    labels: list[str] = ["drbot", "postmortem"]

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value, "base_url").rstrip("/")


class Jira(HttpBackend):
    kind = "jira"
    title = "Jira"
    Options = JiraOptions
    capabilities = frozenset({TRACKER})
    options: JiraOptions

    def _make_client(self) -> httpx.Client:
        o = self.options
        return make_client(o.timeout, base_url=o.base_url, auth=(o.email, o.api_token.get_secret_value()),
                           headers={"Accept": "application/json"})

    def create_issue(self, marker: str, summary: str, description: str, due: date | None = None,
                     dry_run: bool = False) -> TrackedIssue:
        """The issue labelled ``marker`` (created unless it exists); ``summary`` cut to Jira's 255."""
        found = self._find(marker)
        if found is not None:
            return found
        if dry_run:
            return TrackedIssue("", "", created=False)
        fields: dict[str, Any] = {
            "project": {"key": self.options.project}, "issuetype": {"name": self.options.issue_type},
            "summary": " ".join(summary.split())[:255], "labels": [*self.options.labels, marker],
            "description": {"type": "doc", "version": 1, "content": [
                {"type": "paragraph", "content": _inline(line)} for line in description.splitlines() if line.strip()]},
        }
        if due is not None:
            fields["duedate"] = due.isoformat()
        body = self._call("POST", "/rest/api/3/issue", "creating the issue", json={"fields": fields})
        return TrackedIssue(body["key"], self._browse(body["key"]), created=True)

    def _find(self, marker: str) -> TrackedIssue | None:
        body = self._call("GET", "/rest/api/3/search/jql", "looking the issue up",
                          params={"jql": f'project = "{self.options.project}" AND labels = "{marker}"',
                                  "fields": "summary", "maxResults": "1"})
        issues = body.get("issues") or []
        return TrackedIssue(issues[0]["key"], self._browse(issues[0]["key"]), created=False) if issues else None

    def _browse(self, key: str) -> str:
        return f"{self.options.base_url}/browse/{key}"

    def _call(self, method: str, path: str, doing: str, **kwargs) -> dict:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise IntegrationError(f"Jira did not answer in time ({doing})", ErrorKind.TRANSIENT) from None
        except httpx.HTTPError as e:
            raise IntegrationError(f"cannot reach Jira at {self.options.base_url} ({doing}): {e}",
                                   ErrorKind.TRANSIENT) from None
        if response.status_code == 429:
            raise RateLimited(f"Jira is rate limiting ({doing})", retry_after(response.headers.get("Retry-After")))
        if response.status_code >= 500:
            raise IntegrationError(f"Jira failed with HTTP {response.status_code} ({doing})", ErrorKind.TRANSIENT)
        if response.status_code in (401, 403):
            raise IntegrationError(f"Jira refused the credentials of {self.options.email} ({doing}: HTTP "
                                   f"{response.status_code}); check the API token and the project permissions",
                                   ErrorKind.NOT_PERMITTED)
        if response.status_code >= 400:
            raise IntegrationError(f"Jira refused {doing}: {_messages(response)}", ErrorKind.PERMANENT)
        return response.json() if response.content else {}

    def check(self) -> CheckResult:
        try:
            project = self._call("GET", f"/rest/api/3/project/{self.options.project}", "reading the project")
        except IntegrationError as e:
            return CheckResult(False, str(e))
        return CheckResult(True, f"Jira project {project.get('key')} ({project.get('name', '?')}) readable as "
                                 f"{self.options.email}; issues of type {self.options.issue_type}")


def _messages(response: httpx.Response) -> str:
    """Jira's ``errorMessages`` and ``errors`` (by field), in one line."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text.strip()[:200]}"
    said = list(body.get("errorMessages") or []) + [f"{k}: {v}" for k, v in (body.get("errors") or {}).items()]
    return "; ".join(said) or f"HTTP {response.status_code}"
