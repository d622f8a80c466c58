"""Follow-up issues in GitHub Issues (kind ``github_issues``, capability TRACKER).

REST API: ``POST {api_url}/repos/{owner}/{repo}/issues`` with ``{title, body, labels}``
(201 ``{number, html_url}``), ``Authorization: Bearer TOKEN`` (a fine-grained token with
Issues read and write on the repository), ``Accept: application/vnd.github+json`` and
``X-GitHub-Api-Version: 2022-11-28``. Each issue carries a label naming drbot's follow-up
(``drbot-followup-<id>``); before creating, ``GET .../issues?labels=MARKER&state=all`` looks
for it, so a retry after a timeout whose first POST succeeded finds the issue instead of
opening a second one. GitHub issues have no due date: it is written in the body.

Errors: 429, 403 with ``x-ratelimit-remaining: 0`` (or ``retry-after``) and 5xx, timeouts and
connection failures are TRANSIENT; 401 and other 403 NOT_PERMITTED; 404 (no such repository,
or the token cannot see it), 410 (issues disabled) and 422 PERMANENT with GitHub's message.
The backend never sleeps or retries: the outbox does.
"""
from __future__ import annotations

from datetime import date
from typing import Any

import httpx
from pydantic import Field, SecretStr, field_validator

from integrations.base import TRACKER, BackendOptions, CheckResult, ErrorKind, IntegrationError
from integrations.http_client import HttpBackend, RateLimited, check_http_url, make_client, retry_after
from integrations.jira import TrackedIssue

TITLE_MAX = 256
BODY_MAX = 65536
API_VERSION = "2022-11-28"


class GithubIssuesOptions(BackendOptions):
    repository: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    """``owner/repo``, e.g. ``acme/dr-followups``."""
    token: SecretStr
    """``${GITHUB_TOKEN}``: a token with Issues read and write on the repository; never the token itself."""
    api_url: str = "https://api.github.com"
    """GitHub Enterprise Server: ``https://HOST/api/v3``."""
    labels: list[str] = ["drbot", "postmortem"]

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value, "api_url").rstrip("/")


class GithubIssues(HttpBackend):
    kind = "github_issues"
    title = "GitHub Issues"
    Options = GithubIssuesOptions
    capabilities = frozenset({TRACKER})
    options: GithubIssuesOptions

    def _make_client(self) -> httpx.Client:
        o = self.options
        return make_client(o.timeout, base_url=o.api_url, headers={
            "Authorization": f"Bearer {o.token.get_secret_value()}", "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION, "User-Agent": "drbot"})

    @property
    def _repo(self) -> str:
        return f"/repos/{self.options.repository}"

    def create_issue(self, marker: str, summary: str, description: str, due: date | None = None,
                     dry_run: bool = False) -> TrackedIssue:
        """The issue labelled ``marker`` (created unless it exists); ``summary`` cut to 256."""
        found = self._find(marker)
        if found is not None:
            return found
        if dry_run:
            return TrackedIssue("", "", created=False)
        body = description + (f"\n\nDue: {due.isoformat()}" if due is not None else "")
        answer = self._call("POST", f"{self._repo}/issues", "creating the issue", json={
            "title": " ".join(summary.split())[:TITLE_MAX], "body": body[:BODY_MAX],
            "labels": [*self.options.labels, marker]})
        return TrackedIssue(f"#{answer['number']}", str(answer.get("html_url", "")), created=True)

    def _find(self, marker: str) -> TrackedIssue | None:
        found = self._call("GET", f"{self._repo}/issues", "looking the issue up",
                           params={"labels": marker, "state": "all", "per_page": "1"})
        if isinstance(found, list) and found:
            return TrackedIssue(f"#{found[0]['number']}", str(found[0].get("html_url", "")), created=False)
        return None

    def _call(self, method: str, path: str, doing: str, **kwargs: Any) -> Any:
        where = f"GitHub at {self.options.api_url}"
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise IntegrationError(f"{self.name}: {where} did not answer in time ({doing})",
                                   ErrorKind.TRANSIENT) from None
        except httpx.HTTPError as e:
            raise IntegrationError(f"{self.name}: cannot reach {where} ({doing}): {e}", ErrorKind.TRANSIENT) from None
        status, headers = response.status_code, response.headers
        limited = status == 429 or (status == 403 and (headers.get("x-ratelimit-remaining") == "0"
                                                        or headers.get("retry-after")))
        if limited:
            raise RateLimited(f"{self.name}: GitHub is rate limiting ({doing})", retry_after(headers.get("retry-after")))
        if status >= 500:
            raise IntegrationError(f"{self.name}: GitHub failed with HTTP {status} ({doing})", ErrorKind.TRANSIENT)
        if status in (401, 403):
            raise IntegrationError(f"{self.name}: GitHub refused the token ({doing}: HTTP {status}: "
                                   f"{_message(response)}); it needs Issues read and write on "
                                   f"{self.options.repository}", ErrorKind.NOT_PERMITTED)
        if status == 404:
            raise IntegrationError(f"{self.name}: repository {self.options.repository} not found ({doing}); check "
                                   "'repository' and that the token can see it", ErrorKind.PERMANENT)
        if status >= 400:
            raise IntegrationError(f"{self.name}: GitHub refused {doing} (HTTP {status}: {_message(response)})",
                                   ErrorKind.PERMANENT)
        return response.json() if response.content else {}

    def check(self) -> CheckResult:
        try:
            repo = self._call("GET", self._repo, "reading the repository")
        except IntegrationError as e:
            return CheckResult(False, str(e))
        if not repo.get("has_issues", True):
            return CheckResult(False, f"{self.name}: issues are disabled in {self.options.repository}")
        return CheckResult(True, f"{self.name}: GitHub repository {repo.get('full_name', self.options.repository)} "
                                 "readable; follow-ups become its issues")


def _message(response: httpx.Response) -> str:
    """GitHub's ``message`` and each ``errors[]`` entry, in one line."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200]
    if not isinstance(body, dict):
        return ""
    errors = [e.get("message") or f"{e.get('field', '?')} {e.get('code', '')}".strip() if isinstance(e, dict) else str(e)
              for e in body.get("errors") or []]
    return "; ".join([str(body.get("message") or "")] + errors).strip("; ")[:300]
