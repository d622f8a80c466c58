"""HTTP calls as runbook steps (kind ``http``, capability ``http``): feature flags, smoke
tests, internal tools, Kafka Connect / MirrorMaker connector restarts.

The source holds what every call through it shares (``base_url``, headers with
``${ENV}`` secrets, TLS); the step says the method, URL, body, the statuses it expects and
an optional assertion on the JSON answer (``integrations.steps.json_check``).

Retries: an answer 5xx or 429, or no answer at all, is tried again up to ``retries``
times, pausing ``backoff`` doubled each time, or what ``Retry-After`` says, never past
the step's time ``budget``. Every try of a call that changes something (not GET/HEAD)
carries the same ``Idempotency-Key``, so a service that saw the first try can ignore the
second. An unexpected status or a failed assertion is not retried: it is an answer.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable

import httpx
from pydantic import field_validator

from integrations.base import ActionResult, BackendOptions, CheckResult, ErrorKind, IntegrationError
from integrations.http_client import HttpBackend, check_http_url, make_client, retry_after
from integrations.steps import HTTP_CALL, json_check
from integrations.steps.calls import HttpRequest

BODY_KEPT = 500
"""Characters of an answer's body kept in the step's record."""
SAFE = ("GET", "HEAD")


class HttpCallOptions(BackendOptions):
    base_url: str | None = None
    """Joined to a step's url when that is a path (/flags/x)."""
    headers: dict[str, str] = {}
    """Sent with every call (e.g. Authorization: Bearer ${FLAGS_TOKEN}); a step's own win."""
    verify_tls: bool = True
    timeout: float = 10.0

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value, "base_url")


class HttpCall(HttpBackend):
    """Calls the URL a step names and judges the answer."""

    kind = HTTP_CALL
    title = "HTTP"
    Options = HttpCallOptions
    capabilities = frozenset({HTTP_CALL})
    options: HttpCallOptions

    def __init__(self, name: str, options: HttpCallOptions, client: Any = None):
        super().__init__(name, options, client)
        self._sleep: Callable[[float], None] = time.sleep
        self._clock: Callable[[], float] = time.monotonic

    def _make_client(self) -> httpx.Client:
        return make_client(self.options.timeout, self.options.verify_tls, follow_redirects=False)

    def url_for(self, url: str) -> str:
        if url.startswith(("http://", "https://")):
            return url
        if not self.options.base_url:
            raise IntegrationError(f"{self.name}: {url!r} is a path but the source has no base_url; "
                                   "set base_url on the source or write the full URL", ErrorKind.PERMANENT)
        return self.options.base_url.rstrip("/") + "/" + url.lstrip("/")

    def call(self, req: HttpRequest, budget: float, notes: dict[str, Any] | None = None,
             dry_run: bool = False, stop: threading.Event | None = None) -> ActionResult:
        """Send ``req`` (tries within ``budget`` seconds); the answer must have an expected
        status and pass the assertion. ``notes`` gets status, body and tries as they come."""
        notes = {} if notes is None else notes
        url = self.url_for(req.url)
        wanted = HttpRequest(**{**req.__dict__, "url": url})
        if dry_run:
            return ActionResult(f"would {wanted.describe()}", True, False, {"method": req.method, "url": url})
        headers = self.options.headers | req.headers
        if req.method not in SAFE and req.idempotency_key:
            headers = headers | {"Idempotency-Key": req.idempotency_key}
        content = {"json": req.body} if isinstance(req.body, (dict, list)) else \
            {"content": req.body.encode()} if isinstance(req.body, str) else {}
        deadline = self._clock() + budget
        notes.update(method=req.method, url=url, tries=0)
        for tried in range(req.retries + 1):
            left = deadline - self._clock()
            if left <= 0 or (stop is not None and stop.is_set()):
                break
            notes["tries"] = tried + 1
            pause, why = self._try(req, url, headers, content, min(self.options.timeout, left), notes)
            if pause is None:
                return self._judge(req, url, notes)
            pause = req.backoff * 2 ** tried if pause < 0 else pause
            if tried == req.retries or self._clock() + pause >= deadline:
                raise IntegrationError(f"{req.method} {url}: {why} after {tried + 1} tries", ErrorKind.TRANSIENT)
            if stop is not None and stop.wait(pause):
                break
            if stop is None:
                self._sleep(pause)
        if stop is not None and stop.is_set():
            raise IntegrationError(f"{req.method} {url}: stopped: the run was stopped after {notes['tries']} "
                                   "tries", ErrorKind.TRANSIENT)
        raise IntegrationError(f"{req.method} {url}: no expected answer within {budget:g}s "
                               f"({notes['tries']} tries)", ErrorKind.TRANSIENT)

    def _try(self, req: HttpRequest, url: str, headers: dict, content: dict, timeout: float,
             notes: dict) -> tuple[float | None, str]:
        """One try: (None, '') when an answer to judge came; else (pause, why), pause -1
        meaning 'the backoff'."""
        try:
            answer = self.client.request(req.method, url, headers=headers, timeout=timeout, **content)
        except httpx.TimeoutException:
            return -1, f"no answer within {timeout:g}s"
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise IntegrationError(f"{self.name}: cannot request {url} ({exc})", ErrorKind.PERMANENT) from exc
        except httpx.TransportError as exc:
            return -1, f"cannot connect ({str(exc)[:200] or type(exc).__name__})"
        notes["status"] = answer.status_code
        notes["body"] = answer.text[:BODY_KEPT]
        if answer.status_code >= 500 or answer.status_code == 429:
            after = retry_after(answer.headers.get("retry-after"))
            return (after if after is not None else -1), f"HTTP {answer.status_code}"
        return None, ""

    def _judge(self, req: HttpRequest, url: str, notes: dict) -> ActionResult:
        status = notes["status"]
        where = f"{req.method} {url}"
        if status not in req.expect_status:
            raise IntegrationError(f"{where} answered HTTP {status}, expected "
                                   f"{' or '.join(map(str, req.expect_status))}", ErrorKind.PERMANENT)
        details = {"method": req.method, "url": url, "status": status, "body": notes["body"], "tries": notes["tries"]}
        if req.expect:
            try:
                data = json.loads(notes["body"]) if notes["body"] else None
            except json.JSONDecodeError:
                raise IntegrationError(f"{where}: the answer is not JSON, so {req.expect} cannot be checked",
                                       ErrorKind.PERMANENT) from None
            ok, seen = json_check.holds(json_check.parse(req.expect), data)
            notes["assertion"] = details["assertion"] = seen
            if not ok:
                raise IntegrationError(f"{where}: HTTP {status} but {seen}", ErrorKind.PERMANENT)
        tries = f" after {notes['tries']} tries" if notes["tries"] > 1 else ""
        return ActionResult(f"{where} answered HTTP {status}{tries}", False, req.method not in SAFE, details)

    def check(self) -> CheckResult:
        if not self.options.base_url:
            return CheckResult(True, f"{self.name}: no base_url; each step's URL is called when it runs.")
        try:
            answer = self.client.request("HEAD", self.options.base_url, headers=self.options.headers)
        except httpx.HTTPError as exc:
            return CheckResult(False, f"{self.name}: {self.options.base_url} does not answer ({exc}).")
        return CheckResult(answer.status_code < 500, f"{self.name}: {self.options.base_url} answers "
                                                     f"HTTP {answer.status_code}.")
