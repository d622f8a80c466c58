"""Shared pieces for the httpx-based backends.

Building an ``httpx.Client`` with TLS verification loads the CA bundle into a new
SSLContext, which costs tens of milliseconds; with dozens of sources that delayed the
first report by seconds. The context is built once, on first use, and shared.
"""
from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def _verifying_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def make_client(timeout: float, verify_tls: bool = True, **kwargs) -> httpx.Client:
    return httpx.Client(timeout=timeout, verify=_verifying_context() if verify_tls else False, **kwargs)
