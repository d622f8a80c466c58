"""PagerDuty through the Events API v2 (kind ``pagerduty``, capability PAGER).

``POST {events_url}/v2/enqueue`` with ``{routing_key, event_action, dedup_key, payload}``;
PagerDuty answers 202 ``{status: "success", message, dedup_key}``. A trigger with a
dedup key that is already open is merged into that alert (a re-trigger updates its
severity and details), so sending a page twice never pages twice; acknowledge and
resolve find the alert by the dedup key, through the same routing key as its trigger
(PagerDuty drops them otherwise: the route is chosen the same way every time).

Routing: a page's own ``routing_key`` (a configured target), else ``routing_keys`` of its
service, else ``routing_key``. Severity: sev1 critical, sev2 error, sev3 warning, sev4 info.

Errors: 400 (invalid event) is PERMANENT with PagerDuty's message; 429 and 5xx are
TRANSIENT (the outbox retries, after Retry-After when given). The Events API has no read
call, so ``check()`` can only check that every routing key has PagerDuty's form (32
letters and digits); whether PagerDuty knows a key shows at the first page.
"""
from __future__ import annotations

import re
from typing import Any

from pydantic import SecretStr, field_validator

from integrations.base import PAGER, BackendOptions, CheckResult, ErrorKind, IntegrationError, Page, PageResult
from integrations.http_client import HttpBackend, check_http_url
from integrations.pager.common import masked, send
from integrations.pager.schedules import OnCallNow, pagerduty_on_call

ROUTING_KEY = re.compile(r"[A-Za-z0-9]{32}")
SEVERITY = {"sev1": "critical", "sev2": "error", "sev3": "warning", "sev4": "info"}
SUMMARY_MAX = 1024
DEDUP_MAX = 255


def check_routing_key(value: str) -> str:
    """``value`` when it has the form of a PagerDuty integration key; else a ValueError saying so."""
    if not ROUTING_KEY.fullmatch(value):
        raise ValueError(f"a PagerDuty routing key is 32 letters and digits (this one has {len(value)} "
                         "characters); copy the Integration Key of the service's Events API v2 integration")
    return value


class PagerDutyOptions(BackendOptions):
    routing_key: SecretStr | None = None
    """The default route: ``${PAGERDUTY_ROUTING_KEY}``, never the key itself."""
    routing_keys: dict[str, SecretStr] = {}
    """drbot service name -> routing key of that service's PagerDuty service."""
    events_url: str = "https://events.pagerduty.com"
    api_token: SecretStr | None = None
    """A REST API key (read access) for reading schedules (on-call approval slots): ``${PAGERDUTY_API_TOKEN}``."""
    api_url: str = "https://api.pagerduty.com"
    """The REST API (schedules, on-calls)."""

    @field_validator("events_url", "api_url")
    @classmethod
    def _http_url(cls, value: str, info) -> str:
        return check_http_url(value, info.field_name).rstrip("/")

    @field_validator("routing_key")
    @classmethod
    def _key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_routing_key(value.get_secret_value())
        return value

    @field_validator("routing_keys")
    @classmethod
    def _keys(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for service, key in value.items():
            try:
                check_routing_key(key.get_secret_value())
            except ValueError as e:
                raise ValueError(f"routing_keys.{service}: {e}") from None
        return value


class PagerDuty(HttpBackend):
    kind = "pagerduty"
    title = "PagerDuty"
    Options = PagerDutyOptions
    capabilities = frozenset({PAGER})
    options: PagerDutyOptions

    def _key(self, page: Page) -> tuple[str, str]:
        """(routing key, where it goes in words)."""
        o = self.options
        if page.routing_key:
            return page.routing_key, f"PagerDuty routing key {masked(page.routing_key)}"
        if page.service and page.service in o.routing_keys:
            key = o.routing_keys[page.service].get_secret_value()
            return key, f"PagerDuty routing key for {page.service} ({masked(key)})"
        if o.routing_key is not None:
            key = o.routing_key.get_secret_value()
            return key, f"PagerDuty default routing key ({masked(key)})"
        about = f" for {page.service}" if page.service else ""
        raise IntegrationError(f"{self.name}: no routing key{about}: set routing_keys.{page.service or 'SERVICE'} "
                               f"or routing_key on the source.", ErrorKind.PERMANENT)

    def route(self, page: Page) -> str:
        return self._key(page)[1]

    def trigger(self, page: Page, dry_run: bool = False) -> PageResult:
        if not page.summary.strip():
            raise IntegrationError(f"{self.name}: a page needs a summary.")
        return self._enqueue("trigger", page, dry_run, payload={
            "summary": page.summary[:SUMMARY_MAX], "source": page.service or "drbot",
            "severity": SEVERITY.get(page.severity, "error"), "component": page.service or "drbot",
            "group": "drbot", "class": "disaster recovery", "custom_details": page.details})

    def acknowledge(self, page: Page, dry_run: bool = False) -> PageResult:
        return self._enqueue("acknowledge", page, dry_run)

    def resolve(self, page: Page, dry_run: bool = False) -> PageResult:
        return self._enqueue("resolve", page, dry_run)

    def _enqueue(self, action: str, page: Page, dry_run: bool, **extra: Any) -> PageResult:
        if not page.dedup_key or len(page.dedup_key) > DEDUP_MAX:
            raise IntegrationError(f"{self.name}: a dedup key is 1 to {DEDUP_MAX} characters.")
        key, to = self._key(page)
        if dry_run:
            return PageResult(action, page.dedup_key, to, True, f"would send {action} to {to}")
        o = self.options
        answer = send(self.client, self.name, f"PagerDuty Events API at {o.events_url}", "POST",
                      f"{o.events_url}/v2/enqueue", o.timeout, "the routing key",
                      json={"routing_key": key, "event_action": action, "dedup_key": page.dedup_key, **extra})
        if not isinstance(answer, dict) or answer.get("status") != "success":
            raise IntegrationError(f"{self.name}: PagerDuty did not accept the {action} ({answer!r:.200}).")
        return PageResult(action, str(answer.get("dedup_key") or page.dedup_key), to, False,
                          str(answer.get("message") or ""))

    def on_call(self, schedule: str) -> OnCallNow:
        """Who is on call now in schedule ``schedule`` (REST API v2, ``api_token``)."""
        return pagerduty_on_call(self, schedule)

    def check(self) -> CheckResult:
        """The form of every routing key (the options did that already); the Events API
        has no read call, so PagerDuty's acceptance is not checked. Never raises."""
        o = self.options
        count = len(o.routing_keys) + (o.routing_key is not None)
        if count == 0:
            return CheckResult(False, f"{self.name}: no routing key: set routing_key or routing_keys "
                                      "(or give every paging target its own routing_key).")
        return CheckResult(True, f"{self.name}: {count} routing key(s) of PagerDuty's form; the Events API "
                                 "has no read call, so whether PagerDuty accepts them shows at the first page.")
