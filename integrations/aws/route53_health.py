"""Endpoint health from a Route 53 health check (kind ``route53_health``, capability HEALTH).

Route 53 probes the endpoint from several checker regions; ``GetHealthCheckStatus``
returns each checker's latest report, whose ``Status`` starts with "Success" or
"Failure". drbot calls the endpoint healthy when MORE THAN HALF of the checkers report
Success. This is deliberately stricter than Route 53's own DNS failover rule (healthy
when more than 18% of checkers agree): for DR readiness, an endpoint most of the world
cannot reach is not a region to count on. ``observed_at`` is the newest report's time.

Calculated and CloudWatch-alarm health checks have no checkers; Route 53 refuses
``GetHealthCheckStatus`` for them, which surfaces as a PERMANENT error. An answer with no
observations at all (a health check created moments ago) raises a TRANSIENT error: there
is no evidence yet either way, and it is never reported as healthy.
"""
from __future__ import annotations

from datetime import timezone
from typing import Any

from pydantic import Field

from integrations.aws.session import AwsBackend, error_code, translate_error
from integrations.base import (
    HEALTH, BackendOptions, CheckResult, ErrorKind, HealthReading,
    IntegrationError, Target, utcnow,
)


class Route53HealthOptions(BackendOptions):
    region: str = "us-east-1"
    """Route 53 is global; its API lives in us-east-1."""
    endpoint_url: str | None = None
    health_check_id: str = Field(min_length=1, max_length=64)


class Route53Health(AwsBackend):
    """Health of one endpoint as seen by a Route 53 health check's checkers. ``client``:
    the injected boto3 Route 53 client, or one created on first use."""

    kind = "route53_health"
    Options = Route53HealthOptions
    capabilities = frozenset({HEALTH})
    boto3_service = "route53"
    options: Route53HealthOptions

    def describe(self) -> str:
        return f"Route 53 health check {self.options.health_check_id}"

    def check_health(self, target: Target) -> HealthReading:
        hc_id = self.options.health_check_id
        try:
            response = self.client.get_health_check_status(HealthCheckId=hc_id)
        except Exception as exc:
            raise self._error(exc, "reading the status of") from exc
        observations = response.get("HealthCheckObservations", [])
        if not observations:
            raise IntegrationError(
                f"{self.name}: {self.describe()} has no checker reports yet; "
                f"try again in a minute.", ErrorKind.TRANSIENT)
        total = len(observations)
        failures = [o for o in observations
                    if not _status(o).startswith("Success")]
        ok = total - len(failures)
        detail = f"{ok}/{total} checkers report Success"
        if failures:
            first = failures[0]
            detail += f"; {first.get('Region', '?')}: {_status(first)[:160]}"
        times = [o["StatusReport"]["CheckedTime"] for o in observations
                 if o.get("StatusReport", {}).get("CheckedTime")]
        observed_at = max(times).astimezone(timezone.utc) if times else utcnow()
        return HealthReading(healthy=ok * 2 > total, observed_at=observed_at,
                             detail=detail)

    def check(self) -> CheckResult:
        """Fetches the health check's configuration (proves it exists and that the
        credentials may read it). Never raises."""
        try:
            response = self.client.get_health_check(
                HealthCheckId=self.options.health_check_id)
        except Exception as exc:
            return CheckResult(False, str(self._error(exc, "fetching")))
        config = response.get("HealthCheck", {}).get("HealthCheckConfig", {})
        kind = config.get("Type", "?")
        where = config.get("FullyQualifiedDomainName") or config.get("IPAddress") or ""
        if config.get("Port"):
            where += f":{config['Port']}"
        where += config.get("ResourcePath", "")
        what = f"{kind} {where}".strip()
        if kind in ("CALCULATED", "CLOUDWATCH_METRIC", "RECOVERY_CONTROL"):
            return CheckResult(False, (
                f"{self.name}: {self.describe()} is a {kind} health check, which has no "
                f"checkers to report status; point the source at an endpoint check."))
        return CheckResult(True, f"{self.name}: {self.describe()} exists ({what}).")

    def _error(self, exc: Exception, doing: str) -> IntegrationError:
        error = translate_error(exc, f"{self.name}: {doing} {self.describe()}")
        if error_code(exc) == "NoSuchHealthCheck":
            return IntegrationError(
                f"{self.name}: {self.describe()} does not exist. Check health_check_id "
                f"(aws route53 list-health-checks).", ErrorKind.PERMANENT)
        return error


def _status(observation: dict[str, Any]) -> str:
    return str(observation.get("StatusReport", {}).get("Status", ""))
