"""What the pager backends share: one JSON request with the errors mapped to
``IntegrationError`` kinds, and the Retry-After of a rate limit kept for the outbox.

The backends never retry or sleep: 429 raises ``PagerRateLimited`` (TRANSIENT, with
``retry_after`` from the Retry-After header, which the outbox worker honours); 5xx,
timeouts and connection failures are TRANSIENT; 401/403 NOT_PERMITTED; other 4xx
PERMANENT with the pager's own message."""
from __future__ import annotations

from typing import Any

import httpx

from integrations.base import ErrorKind, IntegrationError
from integrations.http_client import retry_after


class PagerRateLimited(IntegrationError):
    """The pager answered 429. ``retry_after``: seconds to wait, when it said."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message, ErrorKind.TRANSIENT)
        self.retry_after = retry_after


def said(response: httpx.Response) -> str:
    """The pager's own words about a refused request (message and errors), at most 300 characters."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if not isinstance(body, dict):
        return ""
    parts = [str(body.get("message") or "")]
    errors = body.get("errors")
    if isinstance(errors, list):
        parts += [str(e) for e in errors]
    elif isinstance(errors, dict):
        parts += [f"{k}: {v}" for k, v in errors.items()]
    return "; ".join(p for p in parts if p)[:300]


def send(client: httpx.Client, name: str, where: str, method: str, url: str, timeout: float,
         auth_hint: str, **kwargs: Any) -> Any:
    """One request; the JSON answer, or the IntegrationError its failure means.
    ``where``: the pager and its base URL, for messages; ``auth_hint``: what to check on 401/403."""
    try:
        response = client.request(method, url, timeout=timeout, **kwargs)
    except httpx.TimeoutException as exc:
        raise IntegrationError(f"{name}: {where} did not answer within {timeout:g} s (the page may have "
                               f"been sent; the dedup key makes sending it again safe).",
                               ErrorKind.TRANSIENT) from exc
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise IntegrationError(f"{name}: the URL {url} is not usable ({exc}).") from exc
    except httpx.TransportError as exc:
        raise IntegrationError(f"{name}: cannot connect to {where} ({exc}).", ErrorKind.TRANSIENT) from exc
    status = response.status_code
    if status == 429:
        wait = retry_after(response.headers.get("Retry-After"))
        later = f"; retry after {wait:g} s" if wait is not None else ""
        raise PagerRateLimited(f"{name}: {where} is rate limiting (HTTP 429){later}.", wait)
    if status >= 400:
        text = said(response)
        text = f"HTTP {status}: {text}" if text else f"HTTP {status}"
        if status in (401, 403):
            raise IntegrationError(f"{name}: {where} refused the credentials ({text}); check {auth_hint}.",
                                   ErrorKind.NOT_PERMITTED)
        if status >= 500:
            raise IntegrationError(f"{name}: {where} failed ({text}); it is tried again.", ErrorKind.TRANSIENT)
        raise IntegrationError(f"{name}: {where} rejected {method} {url.split('?')[0]} ({text}).")
    try:
        return response.json() if response.content else {}
    except ValueError as exc:
        raise IntegrationError(f"{name}: {where} did not answer with JSON (HTTP {status}); check the URL.") from exc


def masked(secret: str) -> str:
    """The last four characters of a key, for people telling keys apart ("...3f2a")."""
    return f"...{secret[-4:]}" if len(secret) > 8 else "..."
