"""A number at a JSON path of an HTTP endpoint (kind ``http_json``, capability LAG).

For home-grown replication jobs that report their own state (a dual-bucket R2 copier's
queue depth, a sync job's seconds behind): ``GET url`` with ``headers`` (secrets as
``${ENV}`` in the config), then the number at ``path`` of the JSON answer is the reading,
in the unit the replication stream declares (seconds, messages, objects, bytes). A
stream's ``target`` replaces ``path``, so one endpoint can serve several streams.

Paths: ``queue.depth``, ``jobs[0].lag_seconds``, ``stats["objects.pending"]``; a leading
``$.`` is allowed. The value must be a finite number (or a string holding one); ``true``/
``false``, null, text or a missing key are errors, never a zero.

``observed_at`` is the value at ``timestamp_path`` when set (Unix seconds, or an ISO 8601
time), so a job that stopped updating its report reads stale; otherwise the time of the
answer. For a seconds stream, ``time_unit: ms`` converts milliseconds.

Errors: a timeout, a connection failure, HTTP 429 or 5xx are TRANSIENT; 401/403
NOT_PERMITTED (check the headers); any other HTTP error, an answer that is not JSON, or a
path that leads to no number are PERMANENT. Every error is raised, so the collector makes
it a failed reading: UNKNOWN, never healthy.
"""
from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any, Literal

import httpx
from pydantic import Field, field_validator

from integrations.base import (
    LAG, BackendOptions, CheckResult, ErrorKind, IntegrationError, LagReading, Target, utcnow,
)
from integrations.http_client import HttpBackend, check_http_url, make_client

_STEP = re.compile(r"""\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[["']([^"']+)["']\]""")


def parse_path(path: str) -> tuple[str | int, ...]:
    """``a.b[0]["c.d"]`` -> ('a', 'b', 0, 'c.d'); ValueError naming what is wrong."""
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    steps: list[str | int] = []
    at = 0
    while at < len(text):
        m = _STEP.match(text, at)
        if m is None or m.end() == at:
            raise ValueError(f"{path!r} is not a JSON path: cannot read {text[at:]!r} (write e.g. "
                             f"queue.depth, jobs[0].lag or stats[\"objects.pending\"])")
        key, index, quoted = m.groups()
        steps.append(int(index) if index is not None else key if key is not None else quoted)
        at = m.end()
    if not steps:
        raise ValueError(f"{path!r} is not a JSON path: it names nothing (write e.g. queue.depth)")
    return tuple(steps)


def _check_path(value: str | None, field: str = "path") -> str | None:
    if value is not None:
        try:
            parse_path(value)
        except ValueError as exc:
            raise ValueError(f"{field}: {exc}") from None
    return value


class HttpJsonOptions(BackendOptions):
    url: str
    """The endpoint that reports the replication job's state (GET)."""
    headers: dict[str, str] = {}
    """Sent with the request, e.g. {"Authorization": "Bearer ${COPIER_TOKEN}"}."""
    path: str | None = None
    """Where the number is in the JSON answer; a stream's ``target`` replaces it."""
    timestamp_path: str | None = None
    """Where the time the job measured it is (Unix seconds or ISO 8601); unset: the answer's time."""
    time_unit: Literal["s", "ms"] = "s"
    """For streams in seconds: the unit of the number."""
    stopped_path: str | None = None
    """A boolean in the answer that is false when the job is not running: "not replicating"."""
    verify_tls: bool = True
    timeout: float = Field(5.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value)

    @field_validator("path", "timestamp_path", "stopped_path")
    @classmethod
    def _json_path(cls, value: str | None) -> str | None:
        return _check_path(value)


def _at(doc: Any, steps: tuple[str | int, ...]) -> tuple[bool, Any]:
    """(found, value) at ``steps`` of ``doc``."""
    for step in steps:
        if isinstance(step, int) and isinstance(doc, list) and step < len(doc):
            doc = doc[step]
        elif isinstance(step, str) and isinstance(doc, dict) and step in doc:
            doc = doc[step]
        else:
            return False, None
    return True, doc


def _near(doc: Any, steps: tuple[str | int, ...]) -> str:
    """What is there where the path stops leading anywhere, for the error."""
    for n in range(len(steps), -1, -1):
        found, there = _at(doc, steps[:n])
        if found:
            where = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps[:n]).lstrip(".") or "the top"
            if isinstance(there, dict):
                return f"keys at {where}: {', '.join(sorted(map(str, there))) or 'none'}"
            return f"at {where} is {type(there).__name__ if isinstance(there, (dict, list)) else repr(there)}"
    return "nothing matches"


class HttpJson(HttpBackend):
    """Reads a number at a JSON path of an HTTP endpoint, as a lag in the stream's unit."""

    kind = "http_json"
    title = "HTTP JSON"
    Options = HttpJsonOptions
    capabilities = frozenset({LAG})
    options: HttpJsonOptions

    def _make_client(self) -> httpx.Client:
        return make_client(self.options.timeout, self.options.verify_tls)

    @classmethod
    def lag_target_problem(cls, options: HttpJsonOptions, target: str | None, unit: str) -> str | None:
        if target is None and options.path is None:
            return "the http_json source has no path: set target to the JSON path of this stream's number " \
                   "(or path on the source)"
        if target is not None:
            try:
                parse_path(target)
            except ValueError as exc:
                return str(exc)
        return None

    def read_lag(self, target: Target, history: bool = False) -> LagReading:
        o = self.options
        path = target.query or o.path
        if not path:
            raise IntegrationError(f"{self.name}: no JSON path to read: set path on the source or target on "
                                   f"the stream.", ErrorKind.PERMANENT)
        doc = self._get()
        observed = self._observed(doc)
        where = f"{path} of {o.url}"
        if o.stopped_path is not None:
            found, running = _at(doc, parse_path(o.stopped_path))
            if found and running is False:
                return LagReading(None, observed, replicating=False, unit=target.unit,
                                  detail=f"{o.stopped_path} of {o.url} is false: the job is not running")
        steps = parse_path(path)
        found, raw = _at(doc, steps)
        if not found:
            raise IntegrationError(f"{self.name}: the answer of {o.url} has nothing at {path}; check the path "
                                   f"({_near(doc, steps)}).", ErrorKind.PERMANENT)
        value = self._number(raw, where)
        if target.unit == "seconds" and o.time_unit == "ms":
            value /= 1000.0
        unit = o.time_unit if target.unit == "seconds" else target.unit
        return LagReading(value, observed, detail=f"{where}: {raw} {unit}", unit=target.unit)

    def _number(self, raw: Any, where: str) -> float:
        value: float | None = None
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            value = float(raw)
        elif isinstance(raw, str):
            try:
                value = float(raw)
            except ValueError:
                value = None
        if value is None or not math.isfinite(value):
            raise IntegrationError(f"{self.name}: {where} is {raw!r}, not a number; point the path at the "
                                   f"number the job reports.", ErrorKind.PERMANENT)
        return value

    def _observed(self, doc: Any) -> datetime:
        o = self.options
        if o.timestamp_path is None:
            return utcnow()
        found, raw = _at(doc, parse_path(o.timestamp_path))
        when: datetime | None = None
        if isinstance(raw, (int, float)) and not isinstance(raw, bool) and math.isfinite(raw):
            when = datetime.fromtimestamp(raw / 1000.0 if raw > 1e11 else raw, timezone.utc)
        elif isinstance(raw, str):
            try:
                when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                when = None
        if not found or when is None:
            raise IntegrationError(f"{self.name}: {o.timestamp_path} of {o.url} is {raw!r}, not a time (Unix "
                                   f"seconds or ISO 8601); fix timestamp_path.", ErrorKind.PERMANENT)
        return when if when.tzinfo else when.replace(tzinfo=timezone.utc)

    def _get(self) -> Any:
        o = self.options
        try:
            response = self.client.get(o.url, headers=o.headers, timeout=o.timeout)
        except httpx.TimeoutException as exc:
            raise IntegrationError(f"{self.name}: {o.url} did not answer within {o.timeout:g} s.",
                                   ErrorKind.TRANSIENT) from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise IntegrationError(f"{self.name}: the url {o.url} is not usable ({exc}).",
                                   ErrorKind.PERMANENT) from exc
        except httpx.TransportError as exc:
            raise IntegrationError(f"{self.name}: cannot connect to {o.url} ({type(exc).__name__}: {exc}); "
                                   f"check the url and that the job is up.", ErrorKind.TRANSIENT) from exc
        status = response.status_code
        if status in (401, 403):
            raise IntegrationError(f"{self.name}: {o.url} refused the request (HTTP {status}); check the "
                                   f"Authorization in headers.", ErrorKind.NOT_PERMITTED)
        if status == 429 or status >= 500:
            raise IntegrationError(f"{self.name}: {o.url} failed (HTTP {status}); try again shortly.",
                                   ErrorKind.TRANSIENT)
        if status >= 400:
            raise IntegrationError(f"{self.name}: {o.url} answered HTTP {status}; check the url.",
                                   ErrorKind.PERMANENT)
        try:
            return response.json()
        except ValueError:
            raise IntegrationError(f"{self.name}: {o.url} did not answer with JSON (HTTP {status}, "
                                   f"{response.headers.get('content-type', 'no content type')}); check the url.",
                                   ErrorKind.PERMANENT) from None

    def check(self) -> CheckResult:
        """GETs the URL once: proves the URL, the headers and (when set) the path. Never raises."""
        o = self.options
        try:
            if o.path is None:
                self._get()
                return CheckResult(True, f"{self.name}: {o.url} answers with JSON (the paths are the streams' "
                                         f"targets).")
            reading = self.read_lag(Target(service=self.name))
        except IntegrationError as exc:
            return CheckResult(False, str(exc))
        except Exception as exc:  # check() never raises
            return CheckResult(False, f"{self.name}: unexpected error reading {o.url}: {type(exc).__name__}: {exc}")
        return CheckResult(True, f"{self.name}: {o.url} answers ({reading.detail}).")
