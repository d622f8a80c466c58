"""Shared pieces for the httpx-based backends.

Building an ``httpx.Client`` with TLS verification loads the CA bundle into a new
SSLContext, which costs tens of milliseconds; with dozens of sources that delayed the
first report by seconds. The context is built once, under a lock (``functools.cache`` is
not one: on a cold start 34-45 reader threads each built their own), when the first
httpx backend is built, i.e. at wiring, and shared.

``HttpBackend`` holds what every httpx backend shares: the lazily created, lock-guarded
``client`` (built by ``_make_client``; an injected client is used as given) and
``close()``, which closes only a client the backend created itself. ``check_http_url`` is
their options' URL check.
"""
from __future__ import annotations

import ssl
import threading
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from integrations.base import Backend, BackendOptions, ErrorKind, IntegrationError


class _SharedContext:
    """The one verifying SSLContext of the process, built by the first caller only."""

    def __init__(self):
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        self.builds = 0

    def get(self) -> ssl.SSLContext:
        context = self._context
        if context is not None:
            return context
        with self._lock:
            if self._context is None:
                self._context = httpx.create_ssl_context()
                self.builds += 1
            return self._context


TLS = _SharedContext()
"""Built lazily (nothing happens at import time); ``TLS.builds`` counts builds (at most 1)."""


def make_client(timeout: float, verify_tls: bool = True, **kwargs) -> httpx.Client:
    return httpx.Client(timeout=timeout, verify=TLS.get() if verify_tls else False, **kwargs)


def check_http_url(value: str, field: str = "url") -> str:
    """``value`` when it is an http:// or https:// URL with a host; otherwise a
    ``ValueError`` naming ``field`` (for an options validator)."""
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ValueError(f"{field} is not a valid URL ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{field} must be http:// or https:// followed by a host")
    return value


class HttpBackend(Backend):
    """Base of the httpx backends. Override ``_make_client`` to build the client with
    other settings."""

    def __init__(self, name: str, options: BackendOptions, client: Any = None):
        super().__init__(name, options, client)
        self._owns_client = client is None
        self._lock = threading.Lock()
        if client is None and getattr(options, "verify_tls", True):
            TLS.get()  # at wiring, once: not in the reader threads of the first report

    def _make_client(self) -> httpx.Client:
        """A new client for this backend: ``options.timeout``, TLS verified."""
        return make_client(self.options.timeout)

    @property
    def client(self) -> httpx.Client:
        """The injected ``httpx.Client``, or one created on first use."""
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def close(self) -> None:
        """Close the HTTP client if this backend created it."""
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None


class RateLimited(IntegrationError):
    """The service answered 429 (Statuspage: 420). TRANSIENT; ``retry_after``: seconds to
    wait, when it said (the outbox waits that long before the next attempt)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message, ErrorKind.TRANSIENT)
        self.retry_after = retry_after


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds, or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, said without a zone
        when = when.replace(tzinfo=timezone.utc)
    return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)
