"""Signature verification of Amazon SNS messages posted to an HTTP(S) endpoint.

Follows AWS's "Verifying the signatures of Amazon SNS messages":

1. ``SigningCertURL`` must be ``https://`` on an SNS host (``sns.<region>.amazonaws.com``,
   or ``.amazonaws.com.cn``), no user info, no port other than 443, a ``.pem`` path.
   Anything else is rejected before any request is made.
2. The string to sign is built from the message's fields, in this order, each as
   ``"Name\\nvalue\\n"``: for ``Notification`` Message, MessageId, Subject (only if
   present), Timestamp, TopicArn, Type; for ``SubscriptionConfirmation`` and
   ``UnsubscribeConfirmation`` Message, MessageId, SubscribeURL, Timestamp, Token,
   TopicArn, Type.
3. ``Signature`` (base64) is checked with the certificate's RSA public key: PKCS#1 v1.5
   with SHA1 for ``SignatureVersion`` "1", SHA256 for "2".

The certificate is fetched over HTTPS with TLS verification (so it is served by AWS's
SNS host), cached by URL (LRU), and must be valid at the time of verification. The
caller should still check ``TopicArn`` against the topics it expects, and may use
``MessageId`` to drop redelivered messages.
"""
from __future__ import annotations

import base64
import binascii
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from integrations.http_client import make_client

DEFAULT_HOST_PATTERN = r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$"
MAX_PEM_BYTES = 64 * 1024
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                       "TopicArn", "Type")
FIELDS_BY_TYPE = {
    "Notification": NOTIFICATION_FIELDS,
    "SubscriptionConfirmation": CONFIRMATION_FIELDS,
    "UnsubscribeConfirmation": CONFIRMATION_FIELDS,
}
HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}


class SignatureInvalid(Exception):
    """The message cannot be trusted; ``reason`` says why, for logs and the 4xx answer."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class CertificateUnavailable(SignatureInvalid):
    """The signing certificate could not be fetched (network, HTTP error). Unlike other
    rejections this may pass later: an endpoint can answer 5xx so that SNS retries."""


def canonical_string(message: dict[str, Any]) -> bytes:
    """The bytes SNS signed for ``message`` (see the module docstring), UTF-8."""
    kind = message.get("Type")
    fields = FIELDS_BY_TYPE.get(kind) if isinstance(kind, str) else None
    if fields is None:
        raise SignatureInvalid(f"the message Type {kind!r} is not one SNS signs "
                               f"({', '.join(FIELDS_BY_TYPE)}).")
    parts = []
    for name in fields:
        value = message.get(name)
        if value is None and name == "Subject":
            continue
        if not isinstance(value, str):
            raise SignatureInvalid(f"the {kind} message has no {name} text "
                                   f"(got {type(value).__name__}).")
        parts.append(f"{name}\n{value}\n")
    return "".join(parts).encode("utf-8")


class SnsVerifier:
    """Verifies SNS message signatures; safe to share between threads.

    ``fetch_pem(url) -> bytes`` downloads a certificate (tests inject one); by default an
    ``httpx`` client with ``timeout`` is created on first use. Up to ``cache_size``
    certificates are kept, least recently used dropped first.
    """

    def __init__(self, fetch_pem: Callable[[str], bytes] | None = None,
                 allowed_host_pattern: str = DEFAULT_HOST_PATTERN, cache_size: int = 32,
                 timeout: float = 5.0):
        self._fetch_pem = fetch_pem
        self._host = re.compile(allowed_host_pattern)
        self._cache_size = max(int(cache_size), 1)
        self._timeout = timeout
        self._cache: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._lock = threading.Lock()
        self._http: Any = None

    def verify(self, message: dict[str, Any]) -> None:
        """Return if ``message`` (the decoded JSON body) is signed by SNS, else raise
        ``SignatureInvalid`` with the reason."""
        if not isinstance(message, dict):
            raise SignatureInvalid("the body is not a JSON object.")
        version = message.get("SignatureVersion")
        if version not in HASHES:
            raise SignatureInvalid(f"SignatureVersion {version!r} is not supported "
                                   f"(only \"1\" and \"2\").")
        url = message.get("SigningCertURL")
        self.check_cert_url(url)
        try:
            signature = base64.b64decode(str(message.get("Signature") or ""), validate=True)
        except (binascii.Error, ValueError):
            raise SignatureInvalid("the Signature is not valid base64.") from None
        if not signature:
            raise SignatureInvalid("the message has no Signature.")
        signed = canonical_string(message)
        certificate = self._certificate(url)
        now = datetime.now(timezone.utc)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            with self._lock:
                self._cache.pop(url, None)
            raise SignatureInvalid(
                f"the signing certificate {url} is not valid now (valid from "
                f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} to "
                f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC).")
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SignatureInvalid(f"the signing certificate {url} has no RSA key.")
        try:
            key.verify(signature, signed, padding.PKCS1v15(), HASHES[version]())
        except InvalidSignature:
            raise SignatureInvalid(
                f"the signature does not match the message (SignatureVersion {version}); "
                f"it was altered or not sent by SNS.") from None

    def check_cert_url(self, url: Any) -> None:
        """Raise ``SignatureInvalid`` unless ``url`` is an https URL on an SNS host."""
        if not isinstance(url, str) or not url:
            raise SignatureInvalid("the message has no SigningCertURL.")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise SignatureInvalid(f"the SigningCertURL {url!r} is not a valid URL.") from None
        if parts.scheme != "https":
            raise SignatureInvalid(f"the SigningCertURL {url} is not https.")
        host = parts.hostname or ""
        if parts.username or parts.password or port not in (None, 443) \
                or not self._host.fullmatch(host):
            raise SignatureInvalid(f"the SigningCertURL {url} is not on an Amazon SNS host.")
        if not parts.path.endswith(".pem"):
            raise SignatureInvalid(f"the SigningCertURL {url} is not a .pem certificate.")

    def close(self) -> None:
        """Close the HTTP client if one was created."""
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    # -- certificates -------------------------------------------------------------------

    def _certificate(self, url: str) -> x509.Certificate:
        with self._lock:
            cached = self._cache.get(url)
            if cached is not None:
                self._cache.move_to_end(url)
                return cached
        try:
            pem = (self._fetch_pem or self._download)(url)
        except SignatureInvalid:
            raise
        except Exception as exc:
            raise CertificateUnavailable(f"the signing certificate {url} could not be "
                                         f"fetched ({type(exc).__name__}: {exc}).") from exc
        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except (ValueError, TypeError) as exc:
            raise SignatureInvalid(f"{url} is not a PEM certificate ({exc}).") from exc
        with self._lock:
            self._cache[url] = certificate
            self._cache.move_to_end(url)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return certificate

    def _download(self, url: str) -> bytes:
        with self._lock:
            if self._http is None:
                self._http = make_client(self._timeout)
            client = self._http
        response = client.get(url, follow_redirects=False)
        if response.status_code != 200:
            raise CertificateUnavailable(f"the signing certificate {url} could not be "
                                         f"fetched (HTTP {response.status_code}).")
        if len(response.content) > MAX_PEM_BYTES:
            raise SignatureInvalid(f"{url} is too large to be a certificate.")
        return response.content
