"""Traffic switch over Route 53 Application Recovery Controller routing controls (kind
``route53_arc``, capability TRAFFIC).

Each drbot region has one routing control (``routing_controls`` maps region -> ARN); the
active region is the one whose control is ``On``. Exactly one control On is the only
state drbot calls active: none On, or several, is reported as PERMANENT with the states.

Every call goes to the cluster's **data plane** (the control plane is not for failover):
``cluster_endpoints`` lists the cluster's regional endpoints (ARC gives five), each with
its AWS region. As AWS advises, a call that cannot be served by one endpoint (no answer
within ``endpoint_timeout``, connection failure, HTTP 5xx,
``EndpointTemporarilyUnavailableException``, throttling) is tried on the next one; each endpoint gets one attempt per pass (no botocore retry: the
next endpoint is the retry), and ``passes`` passes are made, with a backoff between them,
before the call fails as TRANSIENT listing what every endpoint said. The endpoint that
last answered is tried first next time, so one dead endpoint costs its timeout once.
``timeout`` (the budget of a whole read, cut by the caller) must leave room for at least
two endpoints.

A shift turns the target's control On and every other configured control Off in ONE
``UpdateRoutingControlStates`` call, so ARC's safety rules judge the whole change at once
(an assertion rule such as "at least one On" would refuse two separate calls). A safety
rule that refuses it (``ConflictException``) is PERMANENT, in words naming the rule, and
nothing changes; drbot never overrides safety rules. After the update drbot reads the
states back until they are what it set (``settle_timeout``): the change is then in effect
(ARC's data plane is strongly consistent; DNS follows through the Route 53 health checks
bound to the controls).
"""
from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError, HTTPClientError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from integrations.aws.backoff import FIRST_DELAY, MAX_DELAY, THROTTLE_CODES
from integrations.aws.session import AwsBackend, client_config, error_code, translate_error
from integrations.base import (
    TRAFFIC, ActionResult, BackendOptions, CheckResult, ErrorKind, IntegrationError, Target,
)
from integrations.http_client import check_http_url

NEXT_ENDPOINT_CODES = THROTTLE_CODES | {"EndpointTemporarilyUnavailableException",
                                        "InternalServerException", "ServiceUnavailable"}
ON, OFF = "On", "Off"


class ClusterEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    endpoint: str
    """The data-plane URL, e.g. https://host-aaaaaa.us-east-1.example.aws/v1."""
    region: str
    """The AWS region of that endpoint (requests are signed for it)."""

    @field_validator("endpoint")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value, "endpoint")


class Route53ArcOptions(BackendOptions):
    cluster_endpoints: list[ClusterEndpoint] = Field(min_length=1)
    """The cluster's regional data-plane endpoints (aws route53-recovery-control-config
    describe-cluster), tried in turn."""
    routing_controls: dict[str, str]
    """drbot region -> the ARN of that region's routing control."""
    endpoint_timeout: float = Field(2, gt=0)
    """Seconds one call to one endpoint may take (connect and read) before the next is tried."""
    passes: int = Field(3, ge=1, le=10)
    """Passes over all endpoints before a call fails."""
    settle_timeout: float = Field(30, gt=0)
    poll_interval: float = Field(2, gt=0)

    @field_validator("routing_controls")
    @classmethod
    def _arns(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) < 2:
            raise ValueError("routing_controls must map at least two regions to routing control ARNs")
        for region, arn in value.items():
            if not arn.startswith("arn:") or "/routingcontrol/" not in arn:
                raise ValueError(f"{region}: {arn!r} is not a routing control ARN (arn:aws:route53-recovery-"
                                 f"control::ACCOUNT:controlpanel/ID/routingcontrol/ID)")
        if len(set(value.values())) != len(value):
            raise ValueError("each region needs its own routing control")
        return value

    @model_validator(mode="after")
    def _time_for_a_second_endpoint(self) -> "Route53ArcOptions":
        if self.timeout < 2 * self.endpoint_timeout:
            raise ValueError(f"timeout ({self.timeout:g}s, a whole read) must be at least twice endpoint_timeout "
                             f"({self.endpoint_timeout:g}s), or a read is cut before a second endpoint is tried")
        return self


class Route53Arc(AwsBackend):
    """Moves traffic by flipping ARC routing controls through the cluster's data plane.
    ``client``: one injected boto3 ``route53-recovery-cluster`` client for every endpoint,
    or a mapping endpoint URL -> client (one per endpoint); an endpoint without an
    injected client gets its own, created on first use."""

    kind = "route53_arc"
    title = "Route 53 ARC"
    Options = Route53ArcOptions
    capabilities = frozenset({TRAFFIC})
    boto3_service = "route53-recovery-cluster"
    options: Route53ArcOptions

    def __init__(self, name: str, options: BackendOptions, client: Any = None):
        super().__init__(name, options, client)
        self._clients: dict[str, Any] = {}
        self._first = 0  # index of the endpoint that answered last
        self._ep_lock = threading.Lock()

    def describe(self) -> str:
        return "ARC routing controls"

    # -- capability -------------------------------------------------------------------

    def active_region(self, target: Target) -> str:
        return self._active(self._states())

    def shift(self, target: Target, to_region: str, dry_run: bool = False) -> ActionResult:
        """Turn ``to_region``'s control On and the others Off, in one update (see the
        module docstring). Details: ``before``/``after`` (region -> On/Off) and the
        ``entries`` sent."""
        o = self.options
        if to_region not in o.routing_controls:
            raise IntegrationError(
                f"{self.name}: {to_region} has no routing control configured (routing_controls has "
                f"{', '.join(o.routing_controls)}).", ErrorKind.PERMANENT)
        before = self._states()
        after = {region: ON if region == to_region else OFF for region in o.routing_controls}
        entries = [{"RoutingControlArn": arn, "RoutingControlState": after[region]}
                   for region, arn in o.routing_controls.items()]
        details: dict[str, Any] = {"before": before, "after": after, "entries": entries}
        plan = f"{to_region} On, {_others(after, to_region)} Off"
        if before == after:
            return ActionResult(f"already: routing controls {plan}", dry_run=dry_run, changed=False,
                                details=details)
        if dry_run:
            return ActionResult(f"would set routing controls {plan} in one update (now {_fmt(before)})",
                                dry_run=True, changed=False, details=details)
        endpoint = self._call("updating", "update_routing_control_states",
                              UpdateRoutingControlStateEntries=entries)
        self._wait(after)
        details["endpoint"] = endpoint
        return ActionResult(f"set routing controls {plan} (was {_fmt(before)}) via {endpoint}",
                            dry_run=False, changed=True, details=details)

    # -- reading ----------------------------------------------------------------------

    def _states(self) -> dict[str, str]:
        """region -> "On"/"Off", each read from the data plane."""
        states = {}
        for region, arn in self.options.routing_controls.items():
            response, _ = self._request("reading", "get_routing_control_state", RoutingControlArn=arn)
            states[region] = str(response.get("RoutingControlState", "?"))
        return states

    def _active(self, states: dict[str, str]) -> str:
        on = [region for region, state in states.items() if state == ON]
        if len(on) == 1:
            return on[0]
        raise IntegrationError(
            f"{self.name}: routing controls are {_fmt(states)}: "
            + ("none is On, so no region takes traffic." if not on else
               f"{len(on)} are On, so traffic is split.") + " Shift to one region to fix it.",
            ErrorKind.PERMANENT)

    def _wait(self, want: dict[str, str]) -> None:
        o = self.options
        states: dict[str, str] = {}
        for _ in self._polls(o.settle_timeout, o.poll_interval):
            states = self._states()
            if states == want:
                return
        raise IntegrationError(
            f"{self.name}: the update was accepted but the routing controls still read {_fmt(states)} after "
            f"{o.settle_timeout:g}s; read them again before acting further.", ErrorKind.TRANSIENT)

    # -- calls across the cluster endpoints -------------------------------------------

    def _call(self, doing: str, operation: str, **kwargs: Any) -> str:
        """Run ``operation``; the URL of the endpoint that served it."""
        return self._request(doing, operation, **kwargs)[1]

    def _request(self, doing: str, operation: str, **kwargs: Any) -> tuple[dict[str, Any], str]:
        o = self.options
        endpoints = o.cluster_endpoints
        failures: list[str] = []
        delay = FIRST_DELAY
        for n in range(o.passes):
            if n:
                self._sleep(delay)
                delay = min(delay * 2, MAX_DELAY)
            start = self._first
            for i in [*range(start, len(endpoints)), *range(start)]:
                endpoint = endpoints[i]
                try:
                    response = getattr(self._client_for(endpoint), operation)(**kwargs)
                except Exception as exc:
                    if not _try_next(exc):
                        raise self._error(exc, doing, kwargs) from exc
                    failures.append(f"{endpoint.region}: {_short(exc)}")
                    continue
                self._first = i
                return response, endpoint.endpoint
        tried = "; ".join(failures[-len(endpoints):])
        raise IntegrationError(
            f"{self.name}: {doing} {self.describe()}: none of the {len(endpoints)} cluster endpoints answered "
            f"in {o.passes} pass(es) (last: {tried}); try again shortly.", ErrorKind.TRANSIENT)

    def _client_for(self, endpoint: ClusterEndpoint) -> Any:
        injected = self._client
        if isinstance(injected, Mapping):
            if endpoint.endpoint in injected:
                return injected[endpoint.endpoint]
        elif injected is not None:
            return injected
        with self._ep_lock:
            if endpoint.endpoint not in self._clients:
                # One attempt per endpoint: trying the next endpoint is the retry.
                config = client_config(self.options.endpoint_timeout).merge(
                    Config(retries={"total_max_attempts": 1, "mode": "standard"}))
                self._clients[endpoint.endpoint] = boto3.session.Session().client(
                    self.boto3_service, region_name=endpoint.region, endpoint_url=endpoint.endpoint,
                    config=config)
            return self._clients[endpoint.endpoint]

    def _error(self, exc: Exception, doing: str, kwargs: dict[str, Any]) -> IntegrationError:
        code = error_code(exc) if isinstance(exc, ClientError) else None  # a timeout's .response is None
        if code == "ConflictException":
            said = str(exc.response.get("Error", {}).get("Message") or "").strip()
            rule = exc.response.get("resourceId") or exc.response.get("Error", {}).get("resourceId")
            named = f"safety rule {rule}" if rule else "a safety rule"
            return IntegrationError(
                f"{self.name}: ARC refused the change: {named} does not allow it"
                + (f" ({said})" if said else "") + ". Nothing was changed; the rule protects the "
                f"estate (e.g. at least one region On), so check the other routing controls.",
                ErrorKind.PERMANENT)
        if code == "ResourceNotFoundException":
            arn = kwargs.get("RoutingControlArn") or "a routing control"
            return IntegrationError(
                f"{self.name}: {arn} does not exist in this cluster; check routing_controls and "
                f"cluster_endpoints.", ErrorKind.PERMANENT)
        return translate_error(exc, f"{self.name}: {doing} {self.describe()}")

    # -- check-config -----------------------------------------------------------------

    def check(self) -> CheckResult:
        """Reads every routing control through the data plane. Never raises."""
        try:
            states = self._states()
        except IntegrationError as exc:
            return CheckResult(False, str(exc))
        except Exception as exc:  # pragma: no cover - defensive: check never raises
            return CheckResult(False, f"{self.name}: unexpected error {exc!r}")
        try:
            active = f"{self._active(states)} is active"
        except IntegrationError:
            active = "no single region is active"
        endpoint = self.options.cluster_endpoints[self._first]
        return CheckResult(True, f"{self.name}: routing controls read via {endpoint.region} "
                                 f"({_fmt(states)}); {active}.")


def _try_next(exc: Exception) -> bool:
    """True when another cluster endpoint may serve what this one could not."""
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return error_code(exc) in NEXT_ENDPOINT_CODES or status >= 500
    return False


def _short(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(error_code(exc))
    return f"{type(exc).__name__}: {exc}"[:160]


def _fmt(states: dict[str, str]) -> str:
    return ", ".join(f"{region}={state}" for region, state in states.items())


def _others(after: dict[str, str], to_region: str) -> str:
    return ", ".join(r for r in after if r != to_region)
