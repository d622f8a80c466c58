"""Confirming an SNS HTTP(S) subscription: GET the SubscribeURL from a verified
SubscriptionConfirmation message. Only SNS hosts over https are ever called."""
from __future__ import annotations

import re
from urllib.parse import urlparse

import httpx

from integrations.base import ErrorKind, IntegrationError

SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")


def confirm_subscription(url: str, client: httpx.Client | None = None, timeout: float = 5.0) -> None:
    parsed = urlparse(url)
    if parsed.scheme != "https" or not SNS_HOST.match(parsed.hostname or ""):
        raise IntegrationError(f"refusing to confirm through {url!r}: not an https SNS URL", ErrorKind.PERMANENT)
    own = client is None
    client = client or httpx.Client(timeout=timeout)
    try:
        resp = client.get(url)
    except httpx.HTTPError as e:
        raise IntegrationError(f"confirming the SNS subscription failed: {e}", ErrorKind.TRANSIENT) from e
    finally:
        if own:
            client.close()
    if resp.status_code >= 400:
        kind = ErrorKind.TRANSIENT if resp.status_code >= 500 else ErrorKind.PERMANENT
        raise IntegrationError(f"SNS answered {resp.status_code} to the subscription confirmation", kind)
