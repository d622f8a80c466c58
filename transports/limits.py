"""What every HTTP endpoint checks before it looks at a request: the body's size, its
encoding, its JSON shape and depth, and the form of numeric headers. A request that fails
gets ``Rejected(status, reason)``; the endpoint answers it as JSON and logs the reason
and the body's size, never the body.

The limits (also in docs/config.md, "HTTP limits"):

- ``POST /slack/events``: 1 MiB. Slack's largest requests (a modal's submission with its
  blocks and state) are tens of kilobytes.
- ``POST /alerts/alertmanager`` and ``/alerts/webhook``: 16 MiB, and at most
  ``MAX_ALERTS`` alerts in one request (Alertmanager's ``max_alerts`` caps a
  notification); 10,000 Alertmanager alerts are about 6 MB.
- ``POST /alerts/sns``: 512 KiB (an SNS message is at most 256 KB; the envelope escapes it).
- JSON nested deeper than ``MAX_DEPTH`` levels is refused (Slack's payloads nest about 12).
"""
from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import ClientDisconnect, Request

KiB = 1024
MiB = 1024 * KiB
SLACK_BODY = 1 * MiB
ALERTS_BODY = 16 * MiB
SNS_BODY = 512 * KiB
MAX_DEPTH = 64
MAX_ALERTS = 20_000

UNIX_TIME = re.compile(r"[0-9]{1,12}")
"""A Unix time in seconds: ASCII digits only (``str.isdigit`` accepts '²' and '١')."""


class Rejected(Exception):
    """A request answered with ``status`` and ``reason`` (a sentence saying what was wrong)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n % MiB == 0 else f"{n // KiB} KiB"


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or Rejected(413) as soon as it is known to be longer than ``limit``."""
    declared = request.headers.get("content-length", "")
    if re.fullmatch(r"[0-9]{1,20}", declared) and int(declared) > limit:
        raise Rejected(413, f"the body is {declared} bytes; this endpoint takes at most {_size(limit)}")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Rejected(413, f"the body is longer than {_size(limit)}, the most this endpoint takes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise Rejected(400, "the client closed the connection before sending the whole body") from None
    return b"".join(chunks)


def utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Rejected(400, f"the body is not UTF-8 text (byte 0x{body[e.start]:02x} at offset {e.start})") from None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str | bytes, what: str = "the body") -> Any:
    """JSON of at most ``MAX_DEPTH`` levels, or Rejected(400) saying why not."""
    if isinstance(text, bytes):
        text = utf8(text)
    try:
        data = json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise Rejected(400, f"{what} is nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as e:
        raise Rejected(400, f"{what} is not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except ValueError as e:  # a number too long to convert, NaN, Infinity
        raise Rejected(400, f"{what} is not acceptable JSON ({e})") from None
    check_depth(data, what)
    return data


def check_depth(data: Any, what: str = "the body") -> None:
    """Rejected(400) when ``data`` nests deeper than ``MAX_DEPTH``; level by level, so no
    recursion limit is ever reached."""
    level = [data] if isinstance(data, (dict, list)) else []
    depth = 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise Rejected(400, f"{what} is nested deeper than {MAX_DEPTH} levels")
        below: list = []
        for value in level:
            below.extend(c for c in (value.values() if isinstance(value, dict) else value)
                         if isinstance(c, (dict, list)))
        level = below


def problem(e: Rejected) -> dict:
    return {"ok": False, "error": e.reason}
