"""Retrying an AWS call that was throttled, with bounded exponential backoff.

botocore itself makes at most 2 attempts (``session.client_config``); an action that must
get through a burst of throttling (a failover step) wraps its call in ``with_backoff``,
which retries only the error codes that say "slow down" and re-raises everything else
unchanged for the backend to translate.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from integrations.aws.session import error_code

T = TypeVar("T")

THROTTLE_CODES = frozenset({"Throttling", "ThrottlingException", "ThrottledException",
                            "TooManyRequestsException", "RequestLimitExceeded",
                            "RequestThrottled", "RequestThrottledException"})
ATTEMPTS = 5
FIRST_DELAY = 0.5
MAX_DELAY = 8.0


def with_backoff(call: Callable[[], T], sleep: Callable[[float], Any], *,
                 codes: frozenset[str] = THROTTLE_CODES, attempts: int = ATTEMPTS) -> T:
    """``call()``, tried up to ``attempts`` times while it fails with one of ``codes``,
    sleeping 0.5 s, 1 s, 2 s ... (at most 8 s) between tries. The last error, or any
    other error, propagates as raised."""
    delay = FIRST_DELAY
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except ClientError as exc:
            if error_code(exc) not in codes or attempt == attempts:
                raise
        sleep(delay)
        delay = min(delay * 2, MAX_DELAY)
    raise AssertionError("unreachable")  # pragma: no cover
