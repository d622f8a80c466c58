"""Traffic switch over AWS Global Accelerator traffic dials (kind ``global_accelerator``,
capability TRAFFIC).

Each drbot region has one endpoint group of the accelerator's listener
(``endpoint_groups`` maps region -> endpoint group ARN). An endpoint group's traffic dial
(0-100 %) is the share of the traffic Global Accelerator would send to that region that
it lets through; the rest goes to the other groups. The active region is the only group
with a dial above 0; several (the default: every dial at 100, traffic by proximity) or
none is reported as PERMANENT with the dials.

A shift sets the target's dial to 100 first, then every other group's to 0 (in that
order, so traffic always has somewhere to go; if the second part fails the error says the
dials are split), touching only the groups whose dial changes, then reads every group back
(``DescribeEndpointGroup``) until the dials are what it set (``settle_timeout``). Every
other setting of a group (endpoints, health checks, port overrides) is left as it is.
Throttling is retried with backoff.

A staged ramp (capability WEIGHTS) sets each group's dial to the region's percentage: p %
to the target and 100 - p % to the source. A dial applies to the traffic Global
Accelerator sends to that group by proximity, so the split is p % of all traffic when the
two regions draw about the same traffic; the end states (0/100) are exact. Dials going up
are set before dials going down, then read back.

Global Accelerator's API lives in us-west-2 whatever the accelerator's regions, so every
call goes there (``endpoint_url`` may still point at a VPC endpoint or a test server).
"""
from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError
from pydantic import Field, field_validator

from integrations.aws.backoff import with_backoff
from integrations.aws.session import AwsBackend, error_code, translate_error
from integrations.base import (
    TRAFFIC, WEIGHTS, ActionResult, BackendOptions, CheckResult, ErrorKind, IntegrationError, Target,
)

API_REGION = "us-west-2"


class GlobalAcceleratorOptions(BackendOptions):
    endpoint_groups: dict[str, str]
    """drbot region -> the ARN of that region's endpoint group."""
    endpoint_url: str | None = None
    settle_timeout: float = Field(60, gt=0)
    poll_interval: float = Field(5, gt=0)

    @property
    def region(self) -> str:
        """The API's region: always us-west-2."""
        return API_REGION

    @field_validator("endpoint_groups")
    @classmethod
    def _arns(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) < 2:
            raise ValueError("endpoint_groups must map at least two regions to endpoint group ARNs")
        for region, arn in value.items():
            if not arn.startswith("arn:") or "/endpoint-group/" not in arn:
                raise ValueError(f"{region}: {arn!r} is not an endpoint group ARN (arn:aws:globalaccelerator::"
                                 f"ACCOUNT:accelerator/ID/listener/ID/endpoint-group/ID)")
        if len(set(value.values())) != len(value):
            raise ValueError("each region needs its own endpoint group")
        return value


class GlobalAccelerator(AwsBackend):
    """Moves traffic between regions with Global Accelerator traffic dials. ``client``:
    the injected boto3 ``globalaccelerator`` client, or one created on first use."""

    kind = "global_accelerator"
    title = "Global Accelerator"
    Options = GlobalAcceleratorOptions
    capabilities = frozenset({TRAFFIC, WEIGHTS})
    boto3_service = "globalaccelerator"
    options: GlobalAcceleratorOptions

    def describe(self) -> str:
        return "Global Accelerator traffic dials"

    # -- capability -------------------------------------------------------------------

    def active_region(self, target: Target) -> str:
        return self._active(_dials(self._groups()))

    def shift(self, target: Target, to_region: str, dry_run: bool = False) -> ActionResult:
        """Dial ``to_region`` to 100 and the others to 0 (see the module docstring).
        Details: ``before``/``after`` (region -> %) and the target's ``endpoints``
        (endpoint id -> health state)."""
        o = self.options
        if to_region not in o.endpoint_groups:
            raise IntegrationError(
                f"{self.name}: {to_region} has no endpoint group configured (endpoint_groups has "
                f"{', '.join(o.endpoint_groups)}).", ErrorKind.PERMANENT)
        groups = self._groups()
        before = _dials(groups)
        after = {region: 100.0 if region == to_region else 0.0 for region in o.endpoint_groups}
        endpoints = {e.get("EndpointId", "?"): e.get("HealthState", "UNKNOWN")
                     for e in groups[to_region].get("EndpointDescriptions", [])}
        healthy = sum(1 for s in endpoints.values() if s == "HEALTHY")
        health = f"{healthy}/{len(endpoints)} endpoints healthy in {to_region}"
        details: dict[str, Any] = {"before": before, "after": after, "endpoints": endpoints}
        plan = f"{to_region} 100%, {_others(after, to_region)} 0%"
        if before == after:
            return ActionResult(f"already: traffic dials {plan}", dry_run=dry_run, changed=False, details=details)
        if dry_run:
            return ActionResult(f"would set traffic dials {plan} (now {_fmt(before)}; {health})",
                                dry_run=True, changed=False, details=details)
        order = [to_region] + [r for r in o.endpoint_groups if r != to_region]
        done: list[str] = []
        for region in order:
            if before[region] == after[region]:
                continue
            try:
                self._set(region, after[region])
            except IntegrationError as exc:
                if not done:
                    raise
                raise IntegrationError(
                    f"{exc} The dials are now split: {', '.join(done)} set, {region} not; traffic goes to "
                    f"both. Run the shift again, or shift back.", exc.kind) from exc
            done.append(f"{region}={after[region]:g}%")
        self._wait(after)
        return ActionResult(f"set traffic dials {plan} (was {_fmt(before)})", dry_run=False, changed=True,
                            details=details)

    # -- weights (a staged ramp) -------------------------------------------------------

    def weights(self, target: Target) -> dict[str, float]:
        """region -> its endpoint group's traffic dial (%)."""
        return _dials(self._groups())

    def set_weights(self, target: Target, weights: dict[str, float], dry_run: bool = False) -> ActionResult:
        """Set every group's dial to ``weights[region]`` (regions not named: 0), raised
        dials first, then read them back."""
        o = self.options
        unknown = sorted(set(weights) - set(o.endpoint_groups))
        if unknown or round(sum(weights.values())) != 100:
            raise IntegrationError(f"{self.name}: cannot set dials {_fmt(weights)}: they must name regions of "
                                   f"endpoint_groups ({', '.join(o.endpoint_groups)}) and sum to 100.",
                                   ErrorKind.PERMANENT)
        before = _dials(self._groups())
        after = {region: float(round(weights.get(region, 0.0), 2)) for region in o.endpoint_groups}
        details: dict[str, Any] = {"before": before, "after": after}
        if before == after:
            return ActionResult(f"already: traffic dials {_fmt(after)}", dry_run=dry_run, changed=False,
                                details=details)
        if dry_run:
            return ActionResult(f"would set traffic dials {_fmt(after)} (now {_fmt(before)})", dry_run=True,
                                changed=False, details=details)
        order = sorted((r for r in after if after[r] != before[r]), key=lambda r: after[r] < before[r])
        done: list[str] = []
        for region in order:
            try:
                self._set(region, after[region])
            except IntegrationError as exc:
                if not done:
                    raise
                raise IntegrationError(f"{exc} Set before it failed: {', '.join(done)}; read the dials before "
                                       f"acting further.", exc.kind) from exc
            done.append(f"{region}={after[region]:g}%")
        self._wait(after)
        return ActionResult(f"set traffic dials {_fmt(after)} (was {_fmt(before)})", dry_run=False, changed=True,
                            details=details)

    # -- reading and writing ----------------------------------------------------------

    def _groups(self) -> dict[str, dict[str, Any]]:
        """region -> the endpoint group as DescribeEndpointGroup returns it."""
        out = {}
        for region, arn in self.options.endpoint_groups.items():
            response = self._call("reading", arn, self.client.describe_endpoint_group, EndpointGroupArn=arn)
            out[region] = response.get("EndpointGroup", {})
        return out

    def _set(self, region: str, percent: float) -> None:
        arn = self.options.endpoint_groups[region]
        self._call(f"setting the dial of {region} to {percent:g}% in", arn, self.client.update_endpoint_group,
                   EndpointGroupArn=arn, TrafficDialPercentage=percent)

    def _active(self, dials: dict[str, float]) -> str:
        live = [region for region, pct in dials.items() if pct > 0]
        if len(live) == 1:
            return live[0]
        raise IntegrationError(
            f"{self.name}: traffic dials are {_fmt(dials)}: "
            + ("every dial is 0, so no region takes traffic." if not live else "traffic is split.")
            + " Shift to one region to fix it.", ErrorKind.PERMANENT)

    def _wait(self, want: dict[str, float]) -> None:
        o = self.options
        dials: dict[str, float] = {}
        for _ in self._polls(o.settle_timeout, o.poll_interval):
            dials = _dials(self._groups())
            if dials == want:
                return
        raise IntegrationError(
            f"{self.name}: the dials were set but read back as {_fmt(dials)} after {o.settle_timeout:g}s; "
            f"read them again before acting further.", ErrorKind.TRANSIENT)

    def _call(self, doing: str, arn: str, method: Any, **kwargs: Any) -> Any:
        try:
            return with_backoff(lambda: method(**kwargs), self._sleep)
        except Exception as exc:
            if isinstance(exc, ClientError) and error_code(exc) == "EndpointGroupNotFoundException":
                raise IntegrationError(f"{self.name}: endpoint group {arn} does not exist; check "
                                       f"endpoint_groups.", ErrorKind.PERMANENT) from exc
            raise translate_error(exc, f"{self.name}: {doing} {self.describe()}") from exc

    # -- check-config -----------------------------------------------------------------

    def check(self) -> CheckResult:
        """Reads every endpoint group. Never raises."""
        try:
            dials = _dials(self._groups())
        except IntegrationError as exc:
            return CheckResult(False, str(exc))
        except Exception as exc:  # pragma: no cover - defensive: check never raises
            return CheckResult(False, f"{self.name}: unexpected error {exc!r}")
        try:
            active = f"{self._active(dials)} is active"
        except IntegrationError:
            active = "no single region is active"
        return CheckResult(True, f"{self.name}: endpoint groups exist ({_fmt(dials)}); {active}.")


def _dials(groups: dict[str, dict[str, Any]]) -> dict[str, float]:
    return {region: float(g.get("TrafficDialPercentage", 100.0)) for region, g in groups.items()}


def _fmt(dials: dict[str, float]) -> str:
    return ", ".join(f"{region}={pct:g}%" for region, pct in dials.items())


def _others(after: dict[str, float], to_region: str) -> str:
    return ", ".join(r for r in after if r != to_region)
