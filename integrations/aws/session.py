"""Shared boto3 plumbing for the AWS backends: client creation and error translation.

Clients are created only when a backend first needs one (never at import time), each
from its own ``boto3.session.Session`` (the default session is not thread-safe), with
connect and read timeouts equal to the backend's ``timeout`` option and botocore's
"standard" retry mode capped at 2 attempts (the first call and one retry), so no AWS
call can block without a bound.

``translate_error`` turns botocore exceptions into ``IntegrationError`` with a kind:
throttling, 5xx, timeouts and connection failures are TRANSIENT; access-denied and
credential problems are NOT_PERMITTED; everything else (missing target, bad parameter)
is PERMANENT.
"""
from __future__ import annotations

from typing import Any

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

from integrations.base import ErrorKind, IntegrationError

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
