"""Replication lag from a CloudWatch metric (kind ``cloudwatch``, capability LAG).

Typical metrics and their units (set ``unit`` to what the metric publishes):

- ``AWS/RDS AuroraGlobalDBReplicationLag`` {DBClusterIdentifier}: milliseconds (``ms``)
- ``AWS/RDS ReplicaLag`` {DBInstanceIdentifier}: seconds; -1 when replication is not
  running (set ``stopped_value: -1``)
- S3 Cross-Region Replication, ``AWS/S3`` {SourceBucket, DestinationBucket, RuleId}:
  ``ReplicationLatency`` (seconds), ``OperationsPendingReplication`` (objects),
  ``BytesPendingReplication`` (bytes). One source can serve all three: each replication
  stream names its metric as ``target`` and declares its unit.

A replication stream's ``target`` replaces ``metric``; a stream in a unit other than
seconds reads the value as it is (``unit: ms`` converts seconds streams only).

The reading is the newest datapoint of ``statistic`` per ``period`` within the last
``window`` seconds, converted to seconds. ``observed_at`` is that datapoint's timestamp
(CloudWatch stamps a datapoint with the start of its period), so callers can judge
staleness themselves. No datapoint in the window raises a PERMANENT ``IntegrationError``:
retrying in a few seconds will not make data appear; either the namespace, metric name or
dimensions are wrong, or the metric is no longer published, and a person must look.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import Field, field_validator

from integrations.aws.session import AwsBackend, translate_error
from integrations.base import (
    LAG, BackendOptions, CheckResult, ErrorKind, IntegrationError, LagReading,
    LagSample, Target, utcnow,
)

MAX_PAGES = 10


def format_span(seconds: int) -> str:
    """900 -> "15m", 3600 -> "1h", 90 -> "90s"."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


class CloudWatchOptions(BackendOptions):
    region: str
    endpoint_url: str | None = None
    namespace: str
    metric: str | None = None
    """The metric name; a replication stream's ``target`` replaces it. Required unless every
    stream reading the source has a ``target``."""
    dimensions: dict[str, str] = {}
    statistic: Literal["Average", "Maximum", "Minimum", "Sum", "SampleCount"] = "Maximum"
    unit: Literal["ms", "s"] = "s"
    """Unit of the metric's values as CloudWatch stores them."""
    period: int = Field(60, gt=0)
    """Seconds per datapoint: 1, 5, 10, 20, 30 (high resolution) or a multiple of 60."""
    window: int = Field(900, gt=0)
    """Seconds to look back for the newest datapoint (and the span of ``history``)."""
    stopped_value: float | None = None
    """Raw metric value meaning "replication not running" (e.g. -1 for ReplicaLag)."""

    @field_validator("period")
    @classmethod
    def _period_allowed(cls, value: int) -> int:
        if value not in (1, 5, 10, 20, 30) and value % 60:
            raise ValueError("period must be 1, 5, 10, 20, 30 or a multiple of 60 seconds")
        return value


class CloudWatchLag(AwsBackend):
    """Reads replication lag (seconds) from one CloudWatch metric. ``client``: the
    injected boto3 CloudWatch client, or one created on first use."""

    kind = "cloudwatch"
    Options = CloudWatchOptions
    capabilities = frozenset({LAG})
    boto3_service = "cloudwatch"
    options: CloudWatchOptions

    # -- descriptions used in messages ------------------------------------------------

    def _dims_text(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.options.dimensions.items())
        return "{" + inner + "}"

    def describe(self, metric: str | None = None) -> str:
        o = self.options
        return f"CloudWatch {o.namespace} {metric or o.metric or '(every metric)'} {self._dims_text()} in {o.region}"

    @classmethod
    def lag_target_problem(cls, options: CloudWatchOptions, target: str | None, unit: str) -> str | None:
        if target is None and options.metric is None:
            return "the cloudwatch source has no metric: set target to this stream's metric name (or metric on the source)"
        return None

    def _dimensions(self) -> list[dict[str, str]]:
        return [{"Name": k, "Value": v} for k, v in self.options.dimensions.items()]

    def _to_seconds(self, raw: float) -> float:
        return raw / 1000.0 if self.options.unit == "ms" else float(raw)

    # -- capability -------------------------------------------------------------------

    def read_lag(self, target: Target, history: bool = False) -> LagReading:
        """Newest datapoint in the window, in seconds; ``history`` adds the window's
        datapoints oldest first (datapoints equal to ``stopped_value`` are left out of
        the history, since they are not a lag)."""
        o = self.options
        metric = target.query or o.metric
        if not metric:
            raise IntegrationError(f"{self.name}: no metric to read: set metric on the source or target on "
                                   f"the stream.", ErrorKind.PERMANENT)
        scale = self._to_seconds if target.unit == "seconds" else float
        unit = o.unit if target.unit == "seconds" else target.unit
        points = self._datapoints(metric)
        if not points:
            raise IntegrationError(
                f"{self.name}: no data points for {o.namespace} {metric} "
                f"{self._dims_text()} in {o.region} in the last {format_span(o.window)}. "
                f"Check the namespace, metric name and dimensions (drbot check-config "
                f"tells whether the metric exists), and that it is still published.",
                ErrorKind.PERMANENT)
        at, raw = points[-1]
        samples: tuple[LagSample, ...] = ()
        if history:
            samples = tuple(LagSample(t, scale(v)) for t, v in points
                            if o.stopped_value is None or v != o.stopped_value)
        where = f"{o.statistic} of {metric} per {format_span(o.period)}"
        if o.stopped_value is not None and raw == o.stopped_value:
            return LagReading(seconds=None, observed_at=at, replicating=False,
                              history=samples, unit=target.unit,
                              detail=f"{where} is {raw:g}: replication is not running")
        return LagReading(seconds=scale(raw), observed_at=at, history=samples,
                          detail=f"{where}: {raw:g} {unit}", unit=target.unit)

    def _datapoints(self, metric: str) -> list[tuple[datetime, float]]:
        """(timestamp UTC, raw value) for the window, oldest first."""
        o = self.options
        end = utcnow()
        # Align the start to the period so datapoints fall on period boundaries, as
        # CloudWatch recommends.
        start_epoch = (int(end.timestamp()) - o.window) // o.period * o.period
        start = datetime.fromtimestamp(start_epoch, timezone.utc)
        query = {
            "Id": "lag",
            "MetricStat": {
                "Metric": {"Namespace": o.namespace, "MetricName": metric,
                           "Dimensions": self._dimensions()},
                "Period": o.period,
                "Stat": o.statistic,
            },
            "ReturnData": True,
        }
        kwargs: dict[str, Any] = {"MetricDataQueries": [query], "StartTime": start,
                                  "EndTime": end, "ScanBy": "TimestampAscending"}
        points: dict[datetime, float] = {}
        try:
            for _ in range(MAX_PAGES):
                response = self.client.get_metric_data(**kwargs)
                for result in response.get("MetricDataResults", []):
                    self._raise_for_status(result, metric)
                    for t, v in zip(result.get("Timestamps", []), result.get("Values", [])):
                        points[t.astimezone(timezone.utc)] = float(v)
                token = response.get("NextToken")
                if not token:
                    break
                kwargs["NextToken"] = token
        except IntegrationError:
            raise
        except Exception as exc:  # botocore errors of every kind
            raise translate_error(exc, f"{self.name}: reading {self.describe(metric)}") from exc
        return sorted(points.items())

    def _raise_for_status(self, result: dict[str, Any], metric: str) -> None:
        status = result.get("StatusCode", "Complete")
        if status == "Forbidden":
            raise IntegrationError(
                f"{self.name}: CloudWatch refused to return {self.describe(metric)} "
                f"(Forbidden). Grant cloudwatch:GetMetricData on it.",
                ErrorKind.NOT_PERMITTED)
        if status == "InternalError" and not result.get("Values"):
            raise IntegrationError(
                f"{self.name}: CloudWatch had an internal error reading "
                f"{self.describe(metric)}; try again shortly.", ErrorKind.TRANSIENT)

    # -- check-config -----------------------------------------------------------------

    def check(self) -> CheckResult:
        """Lists the metric (proves credentials, region and names) and says whether a
        metric with exactly these dimensions exists. Never raises."""
        o = self.options
        wanted = dict(o.dimensions)
        seen: list[dict[str, str]] = []
        kwargs: dict[str, Any] = {"Namespace": o.namespace}
        if o.metric:
            kwargs["MetricName"] = o.metric
        if o.dimensions:
            kwargs["Dimensions"] = self._dimensions()
        try:
            for _ in range(MAX_PAGES):
                response = self.client.list_metrics(**kwargs)
                for metric in response.get("Metrics", []):
                    seen.append({d["Name"]: d["Value"] for d in metric.get("Dimensions", [])})
                token = response.get("NextToken")
                if not token or wanted in seen:
                    break
                kwargs["NextToken"] = token
        except Exception as exc:
            return CheckResult(False, str(translate_error(exc, f"{self.name}: listing "
                                                          f"{self.describe()}")))
        if wanted in seen:
            return CheckResult(True, f"{self.name}: {self.describe()} exists.")
        if seen:
            return CheckResult(False, (
                f"{self.name}: {o.namespace} {o.metric} exists in {o.region}, but not "
                f"with exactly the dimensions {self._dims_text()} ({len(seen)} other "
                f"combination(s) found). Fix the dimensions in the source's options."))
        return CheckResult(False, (
            f"{self.name}: {self.describe()} was not found (CloudWatch lists metrics "
            f"with data in the last two weeks). Check the region, namespace, metric "
            f"name and dimensions."))
