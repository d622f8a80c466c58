"""Backup age from a Prometheus gauge (kind ``prometheus_backup``, capability BACKUP).

A backup entry's ``target`` is a PromQL query. With ``value: timestamp`` (the default) it
returns when the last backup finished, in Unix seconds (e.g. a backup job's
``backup_last_success_timestamp_seconds{job="orders-db"}``, or
``kube_cronjob_status_last_successful_time``); with ``value: age`` it returns the backup's
age in seconds at the query's evaluation time. With several series the oldest backup is the
reading (the detail names it). No series, or a value that is not a finite number, raises an
error: an absent gauge is never read as a fresh backup.

Prefer a timestamp: an age gauge that stopped being updated keeps reporting the age it had
when it stopped, while a timestamp keeps getting older as it should. The Prometheus HTTP
API's errors map like the ``prometheus`` lag source's: 401/403 NOT_PERMITTED, 429/5xx and
connection failures TRANSIENT, a rejected query PERMANENT.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Literal

import httpx
from pydantic import field_validator

from integrations.base import BACKUP, BackendOptions, BackupPoint, CheckResult, ErrorKind, IntegrationError
from integrations.http_client import HttpBackend, check_http_url
from integrations.prometheus import instant_series, labels_text


class PrometheusBackupOptions(BackendOptions):
    url: str
    """Base URL of the Prometheus HTTP API, e.g. http://prometheus:9090."""
    headers: dict[str, str] = {}
    """Sent with every request, e.g. {"Authorization": "Bearer ${PROM_TOKEN}"}."""
    value: Literal["timestamp", "age"] = "timestamp"
    """What the queries return: when the backup was taken (Unix seconds), or its age in seconds."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value).rstrip("/")


class PrometheusBackup(HttpBackend):
    """Reads when the newest backup was taken from a Prometheus gauge."""

    kind = "prometheus_backup"
    title = "Prometheus"
    Options = PrometheusBackupOptions
    capabilities = frozenset({BACKUP})
    options: PrometheusBackupOptions

    @classmethod
    def check_target(cls, target: str) -> str | None:
        return None if target.strip() else "the target must be a PromQL query"

    def newest_backup(self, target: str) -> BackupPoint | None:
        series = self._query(target)
        if not series:
            raise IntegrationError(f"{self.name}: the query `{target}` returned no series at {self.options.url}: "
                                   "check the metric name and labels, and that the backup job exports it",
                                   ErrorKind.PERMANENT)
        taken = []
        for labels, at, raw in series:
            if not math.isfinite(raw):
                raise IntegrationError(f"{self.name}: the query `{target}` returned {raw} for {labels_text(labels)}, "
                                       "which is not a time", ErrorKind.PERMANENT)
            taken.append((raw if self.options.value == "timestamp" else at - raw, labels))
        when, labels = min(taken, key=lambda t: t[0])
        detail = f"`{target}`" + (f", the oldest of {len(series)} series ({labels_text(labels)})" if len(series) > 1 else "")
        return BackupPoint(id=labels_text(labels) if labels else target,
                           created_at=datetime.fromtimestamp(when, timezone.utc), detail=detail)

    def _query(self, query: str) -> list[tuple[dict[str, str], float, float]]:
        o = self.options
        try:
            answer = self.client.get(o.url + "/api/v1/query", params={"query": query, "timeout": f"{o.timeout:g}"},
                                     headers=o.headers, timeout=o.timeout)
        except httpx.TimeoutException as e:
            raise IntegrationError(f"{self.name}: Prometheus at {o.url} did not answer within {o.timeout:g} s",
                                   ErrorKind.TRANSIENT) from e
        except httpx.HTTPError as e:
            raise IntegrationError(f"{self.name}: cannot reach Prometheus at {o.url} ({e})",
                                   ErrorKind.TRANSIENT) from e
        try:
            body: Any = answer.json()
        except ValueError:
            body = None
        ok = isinstance(body, dict) and body.get("status") == "success" and isinstance(body.get("data"), dict)
        if answer.status_code >= 400 or not ok:
            said = f"HTTP {answer.status_code}"
            if isinstance(body, dict) and body.get("errorType"):
                said += f", {body['errorType']}: {body.get('error', '')}"
            kind = ErrorKind.NOT_PERMITTED if answer.status_code in (401, 403) else \
                ErrorKind.TRANSIENT if answer.status_code == 429 or answer.status_code >= 500 else ErrorKind.PERMANENT
            raise IntegrationError(f"{self.name}: Prometheus at {o.url} refused the query `{query}` ({said})", kind)
        data = body["data"]
        try:
            series = instant_series(data)
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise IntegrationError(f"{self.name}: the answer from {o.url} is not in the Prometheus API format ({e})",
                                   ErrorKind.PERMANENT) from e
        if series is not None:
            return series
        raise IntegrationError(f"{self.name}: the query `{query}` returned a {data.get('resultType')}; it must "
                               "return an instant vector or a scalar", ErrorKind.PERMANENT)

    def check(self) -> CheckResult:
        try:
            self._query("time()")
        except IntegrationError as e:
            return CheckResult(False, str(e))
        return CheckResult(True, f"{self.name}: Prometheus at {self.options.url} answers queries.")
