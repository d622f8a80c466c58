"""Opsgenie through the Alert API (kind ``opsgenie``, capability PAGER).

``POST {api_url}/v2/alerts`` with ``Authorization: GenieKey KEY`` creates an alert; its
``alias`` is drbot's dedup key, so creating it again while it is open adds to the same
alert (Opsgenie's de-duplication) instead of paging twice. Acknowledge and close:
``POST /v2/alerts/{alias}/acknowledge|close?identifierType=alias``. Opsgenie answers 202
``{result, took, requestId}`` and processes the request asynchronously.

A de-duplicated create keeps the alert's first priority, so a re-trigger at a new
severity (``Page.raised``) also sets it: ``PUT /v2/alerts/{alias}/priority``.

Responders: a page's own (a configured target), else ``responders``; none means
the API integration's own team. Priority by drbot severity: ``priorities`` (default
sev1 P1 .. sev4 P4). EU accounts use ``api_url: https://api.eu.opsgenie.com``.

Errors: 422 and other 4xx PERMANENT with Opsgenie's message, 401/403 NOT_PERMITTED,
429 and 5xx TRANSIENT (the outbox retries, after Retry-After when given).
``check()`` lists one alert (``GET /v2/alerts?limit=1``): it proves the URL and the key,
and needs the integration's read access.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator

from integrations.base import PAGER, BackendOptions, CheckResult, ErrorKind, IntegrationError, Page, PageResult
from integrations.http_client import HttpBackend, check_http_url
from integrations.pager.common import send
from integrations.pager.schedules import OnCallNow, opsgenie_on_call

MESSAGE_MAX = 130
ALIAS_MAX = 512
DESCRIPTION_MAX = 15000
Priority = Literal["P1", "P2", "P3", "P4", "P5"]


class Responder(BaseModel):
    """An Opsgenie responder: a team or escalation or schedule by ``name`` or ``id``, a user
    by ``username`` (their e-mail) or ``id``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["team", "user", "escalation", "schedule"]
    name: str | None = None
    id: str | None = None
    username: str | None = None

    @model_validator(mode="after")
    def _one_identifier(self) -> "Responder":
        given = [k for k in ("name", "id", "username") if getattr(self, k)]
        allowed = ("username", "id") if self.type == "user" else ("name", "id")
        if len(given) != 1 or given[0] not in allowed:
            raise ValueError(f"a {self.type} responder needs exactly one of {' or '.join(allowed)}")
        return self

    def label(self) -> str:
        return f"{self.type} {self.name or self.username or self.id}"

    def api(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v}


class OpsgenieOptions(BackendOptions):
    api_key: SecretStr
    """``${OPSGENIE_API_KEY}``: the key of an API integration (create and update access)."""
    api_url: str = "https://api.opsgenie.com"
    responders: list[Responder] = []
    priorities: dict[Literal["sev1", "sev2", "sev3", "sev4"], Priority] = {
        "sev1": "P1", "sev2": "P2", "sev3": "P3", "sev4": "P4"}

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value, "api_url").rstrip("/")


def _text_details(details: dict[str, Any]) -> dict[str, str]:
    """Opsgenie's details are a map of strings."""
    return {str(k): (", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)) for k, v in details.items()}


class Opsgenie(HttpBackend):
    kind = "opsgenie"
    title = "Opsgenie"
    Options = OpsgenieOptions
    capabilities = frozenset({PAGER})
    options: OpsgenieOptions

    def _responders(self, page: Page) -> list[dict[str, str]]:
        if page.responders:
            return [Responder.model_validate(r).api() for r in page.responders]
        return [r.api() for r in self.options.responders]

    def route(self, page: Page) -> str:
        who = self._responders(page)
        if not who:
            return "Opsgenie (the API integration's team)"
        return "Opsgenie " + ", ".join(Responder.model_validate(r).label() for r in who)

    def trigger(self, page: Page, dry_run: bool = False) -> PageResult:
        if not page.summary.strip():
            raise IntegrationError(f"{self.name}: a page needs a summary.")
        description = str(page.details.get("description", ""))[:DESCRIPTION_MAX]
        body = {"message": page.summary[:MESSAGE_MAX], "alias": self._alias(page), "description": description,
                "responders": self._responders(page), "priority": self.options.priorities.get(page.severity, "P3"),
                "tags": ["drbot", page.severity] + ([page.service] if page.service else []),
                "details": _text_details({k: v for k, v in page.details.items() if k != "description"}),
                "entity": page.service or "drbot", "source": "drbot"}
        result = self._post("trigger", page, "/v2/alerts", body, dry_run)
        if page.raised and not dry_run:
            return self._set_priority(page, body["priority"], result)
        return result

    def _set_priority(self, page: Page, priority: str, sent: PageResult) -> PageResult:
        """The priority of the (merged) alert; the page itself is sent already, so a refusal
        (e.g. an alert Opsgenie has not created yet) is said, not raised. Transient errors
        are raised: the retry sends the page again (merged) and then the priority."""
        try:
            self._request("PUT", f"/v2/alerts/{quote(self._alias(page), safe='')}/priority?identifierType=alias",
                          json={"priority": priority})
        except IntegrationError as exc:
            if exc.transient:
                raise
            return replace(sent, message=f"{sent.message}; priority not changed to {priority}: {exc}")
        return replace(sent, message=f"{sent.message}; priority {priority}")

    def acknowledge(self, page: Page, dry_run: bool = False) -> PageResult:
        return self._post("acknowledge", page, f"/v2/alerts/{quote(self._alias(page), safe='')}/acknowledge"
                                                 "?identifierType=alias", {"source": "drbot", "user": "drbot"},
                          dry_run)

    def resolve(self, page: Page, dry_run: bool = False) -> PageResult:
        return self._post("resolve", page, f"/v2/alerts/{quote(self._alias(page), safe='')}/close"
                                             "?identifierType=alias", {"source": "drbot", "user": "drbot"}, dry_run)

    def _alias(self, page: Page) -> str:
        if not page.dedup_key or len(page.dedup_key) > ALIAS_MAX:
            raise IntegrationError(f"{self.name}: a dedup key (Opsgenie alias) is 1 to {ALIAS_MAX} characters.")
        return page.dedup_key

    def _post(self, action: str, page: Page, path: str, body: dict[str, Any], dry_run: bool) -> PageResult:
        to = self.route(page)
        if dry_run:
            return PageResult(action, page.dedup_key, to, True, f"would send {action} to {to}")
        answer = self._request("POST", path, json=body)
        return PageResult(action, page.dedup_key, to, False, str(answer.get("result", "")) if isinstance(answer, dict)
                          else "")

    def on_call(self, schedule: str) -> OnCallNow:
        """Who is on call now in schedule ``schedule`` (its name or id; Who Is On Call API)."""
        return opsgenie_on_call(self, schedule)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        o = self.options
        headers = {"Authorization": f"GenieKey {o.api_key.get_secret_value()}", "Accept": "application/json"}
        return send(self.client, self.name, f"Opsgenie at {o.api_url}", method, o.api_url + path, o.timeout,
                    "api_key (an API integration's key) and api_url (EU accounts: https://api.eu.opsgenie.com)",
                    headers=headers, **kwargs)

    def check(self) -> CheckResult:
        """Lists one alert: proves api_url and the key (with read access). Never raises."""
        try:
            self._request("GET", "/v2/alerts?limit=1")
        except IntegrationError as exc:
            hint = (" drbot reads alerts only for this check (the integration's read access); paging needs create "
                    "and update access.") if exc.kind is ErrorKind.NOT_PERMITTED else ""
            return CheckResult(False, f"{exc}{hint}")
        except Exception as exc:  # check() never raises
            return CheckResult(False, f"{self.name}: unexpected error reading {self.options.api_url}: "
                                      f"{type(exc).__name__}: {exc}")
        return CheckResult(True, f"{self.name}: Opsgenie at {self.options.api_url} accepts the API key.")
