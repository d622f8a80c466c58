"""Shared boto3 plumbing for the AWS backends: client creation, error translation, the
``AwsBackend`` base class and bounded polling.

Clients are created only when a backend first needs one (never at import time), each
from its own ``boto3.session.Session`` (the default session is not thread-safe), with
connect and read timeouts equal to the backend's ``timeout`` option and botocore's
"standard" retry mode capped at 2 attempts (the first call and one retry), so no AWS
call can block without a bound.

``translate_error`` turns botocore exceptions into ``IntegrationError`` with a kind:
throttling, 5xx, timeouts and connection failures are TRANSIENT; access-denied and
credential problems are NOT_PERMITTED; everything else (missing target, bad parameter)
is PERMANENT.

``AwsBackend`` holds what every boto3 backend shares: the lazily created, lock-guarded
``client`` (from ``options.region``, ``options.timeout`` and ``options.endpoint_url``; an
injected client is used as given) and ``_polls``, the bounded wait loop with an
injectable ``_sleep`` and ``_clock``.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError as BotoConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ParamValidationError,
)

from integrations.base import Backend, BackendOptions, ErrorKind, IntegrationError

MAX_ATTEMPTS = 2

TRANSIENT_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
    "TooManyRequestsException", "RequestThrottled", "RequestThrottledException",
    "SlowDown", "PriorRequestNotComplete", "ServiceUnavailable", "InternalFailure",
    "InternalError", "InternalServiceError", "RequestTimeout", "RequestTimeoutException",
})
NOT_PERMITTED_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
    "AuthorizationError", "NotAuthorized", "InvalidClientTokenId",
    "UnrecognizedClientException", "SignatureDoesNotMatch", "ExpiredToken",
    "ExpiredTokenException", "InvalidAccessKeyId", "MissingAuthenticationToken",
})


def client_config(timeout: float) -> Config:
    """botocore settings: ``timeout`` seconds to connect and per read, 2 attempts."""
    return Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
    )


def make_client(service: str, *, region: str, timeout: float,
                endpoint_url: str | None = None) -> Any:
    """Create a boto3 client for ``service`` in ``region`` (credentials from the usual
    chain: environment, profile, instance/task role). ``endpoint_url`` points it at a
    private endpoint or a local moto server."""
    session = boto3.session.Session()
    return session.client(
        service,
        region_name=region,
        endpoint_url=endpoint_url,
        config=client_config(timeout),
    )


def translate_error(exc: Exception, source: str) -> IntegrationError:
    """Map a botocore/boto3 exception to an ``IntegrationError``.

    ``source`` names what was being read, e.g. "CloudWatch AWS/RDS ReplicaLag in
    eu-west-1"; it starts every message so a person knows where to look.
    """
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message") or "").strip()
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        said = f"{code}: {message}" if message else code
        if code in NOT_PERMITTED_CODES or status == 403:
            return IntegrationError(
                f"{source}: AWS refused the request ({said}). Grant the credentials "
                f"drbot runs with the permission for this call.",
                ErrorKind.NOT_PERMITTED)
        if code in TRANSIENT_CODES or status >= 500 or status == 429:
            return IntegrationError(
                f"{source}: AWS is throttling or failing ({said}); try again shortly.",
                ErrorKind.TRANSIENT)
        return IntegrationError(f"{source}: AWS rejected the request ({said}).",
                                ErrorKind.PERMANENT)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return IntegrationError(
            f"{source}: no usable AWS credentials were found. Set AWS_ACCESS_KEY_ID/"
            f"AWS_SECRET_ACCESS_KEY, a profile, or an instance/task role.",
            ErrorKind.NOT_PERMITTED)
    if isinstance(exc, (NoRegionError, ParamValidationError)):
        return IntegrationError(f"{source}: the request is invalid ({exc}); check the "
                                f"source's options.", ErrorKind.PERMANENT)
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return IntegrationError(
            f"{source}: could not reach AWS in time ({exc}); try again shortly, or "
            f"check the network and endpoint_url.", ErrorKind.TRANSIENT)
    if isinstance(exc, BotoCoreError):
        return IntegrationError(f"{source}: {exc}.", ErrorKind.PERMANENT)
    return IntegrationError(f"{source}: unexpected error {type(exc).__name__}: {exc}.",
                            ErrorKind.PERMANENT)


def error_code(exc: Exception) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (e.g. "NoSuchHealthCheck"), else
    None; for a backend's own mapping of codes it knows before ``translate_error``."""
    return (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")  # ReadTimeoutError: response None


class AwsBackend(Backend):
    """Base of the boto3 backends. Subclasses set ``boto3_service`` (e.g. "route53") and
    have options with ``region`` and ``endpoint_url``."""

    boto3_service: ClassVar[str]

    def __init__(self, name: str, options: BackendOptions, client: Any = None):
        super().__init__(name, options, client)
        self._lock = threading.Lock()
        self._sleep: Callable[[float], None] = time.sleep
        self._clock: Callable[[], float] = time.monotonic

    @property
    def client(self) -> Any:
        """The injected boto3 client, or one created on first use."""
        with self._lock:
            if self._client is None:
                o: Any = self.options
                self._client = self._new_client(o.region)
            return self._client

    def _new_client(self, region: str) -> Any:
        """A new boto3 client for ``boto3_service`` in ``region``, per the options."""
        o: Any = self.options
        return make_client(self.boto3_service, region=region, timeout=o.timeout,
                           endpoint_url=o.endpoint_url)

    def _polls(self, timeout: float, interval: float, *,
               wait_first: bool = False) -> Iterator[None]:
        """Bounded polling: yields when it is time to poll, at once (unless
        ``wait_first``) and after each ``_sleep(interval)`` (the last one cut so that
        the sleeps add up to ``timeout``). Ends, instead of sleeping again, once the
        sleeps add up to ``timeout`` or ``_clock`` passes the deadline (``timeout`` after
        the first poll was asked for); the caller then raises its own timeout error."""
        waited, deadline = 0.0, self._clock() + timeout
        if not wait_first:
            yield
        while True:
            if waited >= timeout or self._clock() >= deadline:
                return
            step = min(interval, timeout - waited)
            self._sleep(step)
            waited += step
            yield
