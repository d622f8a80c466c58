"""Shared pieces for the httpx-based backends.

Building an ``httpx.Client`` with TLS verification loads the CA bundle into a new
SSLContext, which costs tens of milliseconds; with dozens of sources that delayed the
first report by seconds. The context is built once, on first use, and shared.

``HttpBackend`` holds what every httpx backend shares: the lazily created, lock-guarded
``client`` (built by ``_make_client``; an injected client is used as given) and
``close()``, which closes only a client the backend created itself. ``check_http_url`` is
their options' URL check.
"""
from __future__ import annotations

import functools
import ssl
import threading
from typing import Any

import httpx

from integrations.base import Backend, BackendOptions


@functools.cache
def _verifying_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def make_client(timeout: float, verify_tls: bool = True, **kwargs) -> httpx.Client:
    return httpx.Client(timeout=timeout, verify=_verifying_context() if verify_tls else False, **kwargs)


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
