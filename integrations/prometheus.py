"""Replication lag from a PromQL query (kind ``prometheus``, capability LAG).

``query`` (or the ``target`` of a replication stream reading the source, which replaces it)
must return one series (an instant vector or a scalar) whose value is the lag in ``unit``
(seconds by default); for a stream in another unit (messages: Kafka consumer-group lag as
kafka-exporter or Burrow export it) the value is read as it is and the reading carries
that unit. If it returns several series, the largest value is the
reading and the detail says so; if any series equals ``stopped_value`` (compared in the
query's own unit), the reading is "not replicating". Values that are not finite numbers
(NaN, ±Inf) raise an error: such a reading is never shown as a lag.

``observed_at`` is when the exporter sampled the lag, not when Prometheus evaluated the
query (an instant query stamps every result with its evaluation time, so a sample scraped
or pushed minutes ago would look fresh and ``stale_after`` would mean nothing). It is read
with a second instant query, ``timestamp_query``, sent at the same time as the first and
pinned to the same evaluation time (``time=``, drbot's clock when the reading starts), so a
reading costs one round trip, not two: by default
``timestamp(<query>)``, which gives each series' sample time when ``query`` is a plain
series selector. With several series the oldest sample time dates the reading (a reading
is only as fresh as its oldest part). For a query that computes (``max(...)``,
``rate(...)``, a scalar), ``timestamp()`` of it gives the evaluation time again: such an
answer is refused with an error saying to set ``timestamp_query``, e.g.
``min(timestamp(pg_replication_lag_seconds{cluster="orders"}))``.

``history`` uses ``/api/v1/query_range`` over the ``history_window`` seconds up to that
evaluation time at ``history_step`` (sent alongside the two instant queries); per timestamp
it keeps the largest finite value, skipping stopped ones.

Errors: timeouts, connection failures, HTTP 429/5xx and Prometheus ``timeout``/
``canceled``/``unavailable`` errors are TRANSIENT; 401/403 are NOT_PERMITTED (check the
``headers``); a rejected query (400 ``bad_data``, 422 ``execution``), a wrong URL, or a
query with no series or a non-numeric value are PERMANENT. The requests of one reading
share one deadline of ``timeout`` seconds.
"""
from __future__ import annotations

import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime, timezone
from typing import Any, Literal

import httpx
from pydantic import Field, field_validator, model_validator

from integrations.base import (
    LAG, BackendOptions, CheckResult, ErrorKind, IntegrationError, LagReading,
    LagSample, Target,
)
from integrations.http_client import HttpBackend, check_http_url

Series = tuple[dict[str, str], float, float]  # labels, unix time, raw value
TRANSIENT_ERROR_TYPES = frozenset({"timeout", "canceled", "unavailable"})
SIDE_REQUESTS = 4
"""Threads per source for the requests sent alongside a reading's main query."""


class PrometheusOptions(BackendOptions):
    url: str
    """Base URL of the Prometheus HTTP API, e.g. http://prometheus:9090."""
    query: str | None = Field(None, min_length=1)
    """The PromQL; a replication stream's ``target`` replaces it (one source, several
    streams). Required unless every stream reading the source has a ``target``."""
    unit: Literal["s", "ms"] = "s"
    """Time unit of the values, for streams in seconds; other streams (messages, e.g.
    ``kafka_consumergroup_lag``) read the value as it is."""
    headers: dict[str, str] = {}
    """Sent with every request, e.g. {"Authorization": "Bearer ${PROM_TOKEN}"}."""
    history_window: int = Field(3600, gt=0)
    history_step: int = Field(60, gt=0)
    stopped_value: float | None = None
    timestamp_query: str | None = Field(None, min_length=1)
    """PromQL giving the Unix time the lag was sampled; default ``timestamp(<query>)``,
    which works when ``query`` is a plain series selector."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value).rstrip("/")

    @model_validator(mode="after")
    def _few_points(self) -> "PrometheusOptions":
        if self.history_window // self.history_step > 11000:
            raise ValueError("history_window / history_step must be at most 11000 points")
        return self


def labels_text(labels: dict[str, str]) -> str:
    """A series as PromQL writes it: ``name{k="v", ...}``."""
    name = labels.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}"


def instant_series(data: dict[str, Any]) -> list[Series] | None:
    """The series of an instant query's ``data`` (a vector or a scalar); None for another
    result type. Raises KeyError, IndexError, TypeError or ValueError when malformed."""
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return [({}, float(result[0]), float(result[1]))]
    if kind == "vector":
        return [(s.get("metric", {}), float(s["value"][0]), float(s["value"][1])) for s in result]
    return None


class PrometheusLag(HttpBackend):
    """Reads replication lag (seconds) from a Prometheus-compatible query API."""

    kind = "prometheus"
    Options = PrometheusOptions
    capabilities = frozenset({LAG})
    options: PrometheusOptions

    # -- capability -------------------------------------------------------------------

    def __init__(self, name: str, options: PrometheusOptions, client: Any = None):
        super().__init__(name, options, client)
        self._side: ThreadPoolExecutor | None = None
        self._side_lock = threading.Lock()
        # its first thread now (at wiring): started in the first report's rush of reads,
        # creating it cost that reading more than 100 ms under load
        self._side_pool().submit(int)

    @classmethod
    def lag_target_problem(cls, options: PrometheusOptions, target: str | None, unit: str) -> str | None:
        if target is None and options.query is None:
            return "the prometheus source has no query: set target to the PromQL of this stream (or query on the source)"
        return None

    def read_lag(self, target: Target, history: bool = False) -> LagReading:
        o = self.options
        query = target.query or o.query
        if not query:
            raise IntegrationError(f"{self.name}: no query to run: set query on the source or target on the "
                                   f"stream.", ErrorKind.PERMANENT)
        scale = self._to_seconds if target.unit == "seconds" else float
        deadline = time.monotonic() + o.timeout
        at = round(time.time(), 3)  # one evaluation time for every request of this reading
        stamps = self._alongside(self._instant, self._timestamp_query(query), deadline, at)
        past = self._alongside(self._history, at, deadline, query, scale) if history else None
        series = self._instant(query, deadline, at=at)
        if not series:
            raise IntegrationError(
                f"{self.name}: the query `{query}` returned no series at {o.url}. "
                f"Check the query (labels, metric name) and that the exporter is scraped.",
                ErrorKind.PERMANENT)
        for labels, _, raw in series:
            if not math.isfinite(raw):
                raise IntegrationError(
                    f"{self.name}: the query `{query}` returned {raw} for "
                    f"{labels_text(labels)}, which is not a lag. Fix the query so it "
                    f"yields a number.", ErrorKind.PERMANENT)
        at_sample = datetime.fromtimestamp(self._sampled(self._outcome(stamps, deadline), query), timezone.utc)
        samples = self._outcome(past, deadline) if past is not None else ()
        if o.stopped_value is not None:
            stopped = [s for s in series if s[2] == o.stopped_value]
            if stopped:
                return LagReading(
                    seconds=None, observed_at=at_sample, replicating=False, history=samples,
                    detail=f"{labels_text(stopped[0][0])} is {o.stopped_value:g}: "
                           f"replication is not running", unit=target.unit)
        labels, _, raw = max(series, key=lambda s: s[2])
        detail = f"{raw:g} {o.unit if target.unit == 'seconds' else target.unit}"
        if len(series) > 1:
            detail += f"; the largest of {len(series)} series ({labels_text(labels)})"
        return LagReading(seconds=scale(raw), observed_at=at_sample,
                          history=samples, detail=detail, unit=target.unit)

    def _alongside(self, fn, *args) -> Future:
        """``fn(*args)`` on this source's side threads, while the caller sends the main query."""
        return self._side_pool().submit(fn, *args)

    def _side_pool(self) -> ThreadPoolExecutor:
        with self._side_lock:
            if self._side is None:
                self._side = ThreadPoolExecutor(SIDE_REQUESTS, thread_name_prefix=f"drbot-{self.name}")
            return self._side

    def _outcome(self, future: Future, deadline: float):
        """The side request's result (or its error); its HTTP call is bounded by the same
        deadline, so this waits at most a moment past it."""
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()) + 1.0)
        except FutureTimeout:
            future.cancel()
            raise IntegrationError(
                f"{self.name}: Prometheus at {self.options.url} did not answer within "
                f"{self.options.timeout:g} s.", ErrorKind.TRANSIENT) from None

    def close(self) -> None:
        """Close the HTTP client (if this backend created it) and the side threads."""
        with self._side_lock:
            side, self._side = self._side, None
        if side is not None:
            side.shutdown(wait=False, cancel_futures=True)
        super().close()

    def _to_seconds(self, raw: float) -> float:
        return raw / 1000.0 if self.options.unit == "ms" else raw

    def _timestamp_query(self, query: str | None = None) -> str:
        """``timestamp_query``, for the source's own query; ``timestamp(<query>)`` otherwise
        (a stream's ``target`` must then be a plain series selector)."""
        query = query or self.options.query
        if self.options.timestamp_query and query == self.options.query:
            return self.options.timestamp_query
        return f"timestamp({query})"

    def _sampled(self, stamps: list[Series], main: str | None = None) -> float:
        """When the oldest series of the answer was sampled, from ``timestamp_query``'s
        answer at the reading's evaluation time."""
        o = self.options
        main = main or o.query
        query = self._timestamp_query(main)
        hint = ("set timestamp_query to a query that returns when the lag was sampled, e.g. "
                "`min(timestamp(<the series selector>))`")
        if not stamps:
            raise IntegrationError(
                f"{self.name}: the query `{query}` returned no series at {o.url}, so when the "
                f"lag was sampled is unknown; {hint}.", ErrorKind.PERMANENT)
        for labels, t, value in stamps:
            if not math.isfinite(value):
                raise IntegrationError(
                    f"{self.name}: the query `{query}` returned {value} for {labels_text(labels)}, "
                    f"which is not a time; {hint}.", ErrorKind.PERMANENT)
            if abs(value - t) < 0.0005:
                # timestamp() of anything but a series selector is the evaluation time
                why = "" if query == o.timestamp_query else f" (`{main}` is not a plain series selector)"
                raise IntegrationError(
                    f"{self.name}: `{query}` gives the time the query was evaluated, not when "
                    f"the lag was sampled{why}, so the reading's age cannot be told; {hint}.",
                    ErrorKind.PERMANENT)
        return min(value for _, _, value in stamps)

    def _instant(self, query: str, deadline: float, at: float | None = None) -> list[Series]:
        params = {"query": query} if at is None else {"query": query, "time": f"{at:.3f}"}
        data = self._get("/api/v1/query", params, deadline)
        try:
            series = instant_series(data)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise self._malformed(exc) from exc
        if series is None:
            raise IntegrationError(
                f"{self.name}: the query `{query}` returned a {data.get('resultType')}; it must "
                f"return an instant vector or a scalar.", ErrorKind.PERMANENT)
        return series

    def _history(self, end: float, deadline: float | None = None, query: str | None = None,
                 scale=None) -> tuple[LagSample, ...]:
        o = self.options
        query = query or o.query
        scale = scale or self._to_seconds
        data = self._get("/api/v1/query_range", {
            "query": query, "start": f"{end - o.history_window:.3f}",
            "end": f"{end:.3f}", "step": str(o.history_step)}, deadline)
        if data.get("resultType") != "matrix":
            raise IntegrationError(
                f"{self.name}: the range query `{query}` returned a "
                f"{data.get('resultType')} instead of a matrix.", ErrorKind.PERMANENT)
        largest: dict[float, float] = {}
        try:
            for series in data.get("result", []):
                for t, v in series["values"]:
                    value = float(v)
                    if math.isfinite(value) and value != o.stopped_value:
                        largest[float(t)] = max(value, largest.get(float(t), value))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise self._malformed(exc) from exc
        return tuple(LagSample(datetime.fromtimestamp(t, timezone.utc),
                               scale(v)) for t, v in sorted(largest.items()))

    def _malformed(self, exc: Exception) -> IntegrationError:
        return IntegrationError(
            f"{self.name}: the answer from {self.options.url} is not in the Prometheus "
            f"API format ({type(exc).__name__}: {exc}); check the url.",
            ErrorKind.PERMANENT)

    # -- HTTP -------------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, str],
             deadline: float | None = None) -> dict[str, Any]:
        """``deadline`` (monotonic): shared by the requests of one reading."""
        o = self.options
        # plain seconds: Prometheus reads a number or an integer duration ("0.5s" is refused)
        params = {**params, "timeout": f"{o.timeout:g}"}
        left = o.timeout if deadline is None else deadline - time.monotonic()
        try:
            if left <= 0:
                raise httpx.ReadTimeout("no time left of the reading's timeout")
            response = self.client.get(o.url + path, params=params, headers=o.headers,
                                       timeout=left)
        except httpx.TimeoutException as exc:
            raise IntegrationError(
                f"{self.name}: Prometheus at {o.url} did not answer within "
                f"{o.timeout:g} s.", ErrorKind.TRANSIENT) from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise IntegrationError(f"{self.name}: the url {o.url} is not usable ({exc}).",
                                   ErrorKind.PERMANENT) from exc
        except httpx.TransportError as exc:
            raise IntegrationError(
                f"{self.name}: cannot connect to Prometheus at {o.url} ({exc}); check "
                f"the url and that Prometheus is up.", ErrorKind.TRANSIENT) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400 or not isinstance(body, dict) \
                or body.get("status") != "success" or not isinstance(body.get("data"), dict):
            raise self._http_error(response.status_code, body, params.get("query", o.query))
        return body["data"]

    def _http_error(self, status: int, body: Any, query: str) -> IntegrationError:
        o = self.options
        error_type = body.get("errorType", "") if isinstance(body, dict) else ""
        said = f"HTTP {status}"
        if error_type:
            said += f", {error_type}: {body.get('error', '')}"
        if status in (401, 403):
            return IntegrationError(
                f"{self.name}: Prometheus at {o.url} refused the request ({said}); "
                f"check the Authorization in headers.", ErrorKind.NOT_PERMITTED)
        if status == 429 or status >= 500 or error_type in TRANSIENT_ERROR_TYPES:
            return IntegrationError(
                f"{self.name}: Prometheus at {o.url} failed ({said}); try again shortly.",
                ErrorKind.TRANSIENT)
        if status == 404:
            return IntegrationError(
                f"{self.name}: no Prometheus API at {o.url} (HTTP 404); check the url.",
                ErrorKind.PERMANENT)
        if status >= 400:
            if query == o.query:
                fix = "the query in the source's options"
            elif query == o.timestamp_query or query.startswith("timestamp("):
                fix = "timestamp_query: it must return when the lag was sampled (Unix seconds)"
            else:
                fix = "the stream's target (its PromQL)"
            return IntegrationError(
                f"{self.name}: Prometheus rejected the query `{query}` ({said}); fix "
                f"{fix}.", ErrorKind.PERMANENT)
        return IntegrationError(
            f"{self.name}: {o.url} did not answer with Prometheus API JSON (HTTP "
            f"{status}); check the url.", ErrorKind.PERMANENT)

    # -- check-config -----------------------------------------------------------------

    def check(self) -> CheckResult:
        """Runs the query once: proves the URL, the headers and the query. Never raises."""
        if self.options.query is None:  # every stream brings its query: prove the URL and headers
            try:
                self._instant("1", time.monotonic() + self.options.timeout)
            except IntegrationError as exc:
                return CheckResult(False, str(exc))
            return CheckResult(True, f"{self.name}: Prometheus at {self.options.url} answers "
                                     f"(the queries are the streams' targets).")
        try:
            reading = self.read_lag(Target(service=self.name))
        except IntegrationError as exc:
            return CheckResult(False, str(exc))
        except Exception as exc:  # check() never raises
            return CheckResult(False, f"{self.name}: unexpected error reading "
                                      f"{self.options.url}: {type(exc).__name__}: {exc}")
        return CheckResult(True, f"{self.name}: Prometheus at {self.options.url} answers "
                                 f"the query ({reading.detail}).")
