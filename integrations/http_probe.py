"""Endpoint health from one HTTP request (kind ``http_probe``, capability HEALTH).

Healthy iff the answer's status is in ``expect_status`` and, when ``max_latency_ms`` is
set, the whole exchange (request sent, full answer read) took at most that many
milliseconds. Redirects are not followed, so a 301/302 is judged like any other status.

Choice: a probe that gets no answer is evidence the endpoint is down, as it is for
Route 53 or a load balancer. Connection refused, a DNS failure, a TLS failure and a
timeout (no answer within ``timeout`` seconds) all return ``healthy=False`` with the
reason in ``detail`` (e.g. "no answer within 5 s"); they do not raise. The trade-off: if
drbot's own network is broken, every probed endpoint reads unhealthy, so a person sees
it rather than a false "healthy". Only a URL that cannot be requested at all (a
configuration error) raises a PERMANENT ``IntegrationError``.

An injected ``httpx.Client`` is used as given (its TLS verification and redirect
settings win over ``verify_tls``), except that every request carries ``timeout``.
"""
from __future__ import annotations

import time
from typing import Literal

import httpx
from pydantic import Field, field_validator

from integrations.base import (
    HEALTH, BackendOptions, CheckResult, ErrorKind, HealthReading,
    IntegrationError, Target, utcnow,
)
from integrations.http_client import HttpBackend, check_http_url, make_client


class HttpProbeOptions(BackendOptions):
    url: str
    method: Literal["GET", "HEAD"] = "GET"
    expect_status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    max_latency_ms: float | None = Field(None, gt=0)
    headers: dict[str, str] = {}
    verify_tls: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value)


class HttpProbe(HttpBackend):
    """Probes one URL and judges the answer's status and latency."""

    kind = "http_probe"
    Options = HttpProbeOptions
    capabilities = frozenset({HEALTH})
    options: HttpProbeOptions

    def _make_client(self) -> httpx.Client:
        return make_client(self.options.timeout, self.options.verify_tls,
                           follow_redirects=False)

    def _expected(self) -> str:
        return " or ".join(str(s) for s in self.options.expect_status)

    def check_health(self, target: Target) -> HealthReading:
        return self._probe()[0]

    def _probe(self) -> tuple[HealthReading, int | None]:
        """The reading and the HTTP status (None when no answer came)."""
        o = self.options
        started = time.perf_counter()
        try:
            response = self.client.request(o.method, o.url, headers=o.headers,
                                           timeout=o.timeout)
        except httpx.TimeoutException:
            return HealthReading(False, utcnow(), f"no answer within {o.timeout:g} s"), None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise IntegrationError(f"{self.name}: cannot request {o.url} ({exc}); fix "
                                   f"the url.", ErrorKind.PERMANENT) from exc
        except httpx.TransportError as exc:
            detail = f"cannot connect to {httpx.URL(o.url).netloc.decode()}: {_reason(exc)}"
            return HealthReading(False, utcnow(), detail), None
        latency_ms = (time.perf_counter() - started) * 1000.0
        status = response.status_code
        if status not in o.expect_status:
            healthy, detail = False, f"HTTP {status} (expected {self._expected()})"
        elif o.max_latency_ms is not None and latency_ms > o.max_latency_ms:
            healthy = False
            detail = (f"HTTP {status} in {latency_ms:.0f} ms "
                      f"(limit {o.max_latency_ms:g} ms)")
        else:
            healthy, detail = True, f"HTTP {status} in {latency_ms:.0f} ms"
        return HealthReading(healthy, utcnow(), detail, latency_ms), status

    def check(self) -> CheckResult:
        """Probes once: ok when the URL answers with an expected status (a slow answer
        is still ok here: latency is a health matter, not a configuration one)."""
        try:
            reading, status = self._probe()
        except Exception as exc:  # check() never raises
            return CheckResult(False, str(exc))
        where = f"{self.name}: {self.options.method} {self.options.url}"
        if status in self.options.expect_status:
            return CheckResult(True, f"{where} answers: {reading.detail}.")
        return CheckResult(False, f"{where}: {reading.detail}. Check the url, the "
                                  f"headers and expect_status.")


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused"
    if any(s in lowered for s in ("name or service not known", "name resolution",
                                  "nodename nor servname", "no address associated")):
        return "the name does not resolve (DNS)"
    return text[:200]
