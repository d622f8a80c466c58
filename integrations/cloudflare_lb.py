"""Traffic switch and health source over a Cloudflare load balancer (kind ``cloudflare_lb``,
capabilities TRAFFIC, HEALTH and WEIGHTS).

One load balancer (``zone_id``, ``load_balancer_id``) with one origin pool per drbot region
(``pools`` maps region -> pool id; pools belong to the account, ``account_id``). Two ways
to say where traffic goes (``mode``):

- ``default_pools``: the active region is the pool first in the load balancer's
  ``default_pools`` (Cloudflare sends traffic to the first healthy pool when
  ``steering_policy`` is ``off``, the failover order; another steering policy spreads
  traffic over the pools, so there is no single active region and that is an error). A
  shift moves the target's pool to the front (the others keep their order) and makes it
  the ``fallback_pool``, in one PATCH of the load balancer.
- ``enable_disable``: the active region is the only enabled pool of ``pools``. A shift
  enables the target's pool first, then disables the others (so some pool always takes
  traffic); a failure in between says the pools are both enabled. A target pool that is
  not among the load balancer's default or fallback pools is refused (enabling it would
  move nothing).
- ``weights``: the load balancer steers ``random`` and each pool's weight
  (``random_steering.pool_weights``) is its share of the traffic. The active region is the
  only pool with a weight above 0. A shift, and each stage of a staged ramp (capability
  WEIGHTS), PATCHes ``steering_policy: random`` and the pool weights (percent / 100) in one
  request; every configured pool must be a default pool (integrations/cloudflare_weights.py).

After a change drbot reads it back until it holds (``settle_timeout``). Health of a
region: the pool health Cloudflare's monitors report
(``GET /accounts/{account}/load_balancers/pools/{id}/health``): healthy when more than half
of the data centres that probe it see it healthy; a pool without a monitor falls back to
its ``healthy`` field, or is an error.

The API token comes from the environment (``api_token: ${CLOUDFLARE_API_TOKEN}``): Load
Balancers Edit on the zone and Load Balancing: Monitors and Pools Edit on the account.
Errors arrive in Cloudflare's v4 envelope (``success: false, errors: [{code, message}]``)
and are reported with their codes and messages: 401/403 NOT_PERMITTED, other 4xx
PERMANENT. HTTP 429 waits ``Retry-After`` (at most ``max_retry_after`` seconds, else it
fails at once as TRANSIENT) and 5xx, timeouts and connection failures back off; both are
retried ``retries`` times, then fail as TRANSIENT. Every request is idempotent (GET, or a
PATCH setting values), so a retry after a lost answer is safe.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

import httpx
from pydantic import Field, SecretStr, field_validator, model_validator

from integrations.base import (
    HEALTH, TRAFFIC, WEIGHTS, ActionResult, BackendOptions, CheckResult, ErrorKind, HealthReading,
    IntegrationError, Target, utcnow,
)
from integrations.cloudflare_weights import CloudflareWeights, fmt, shares
from integrations.http_client import HttpBackend, check_http_url, make_client, retry_after

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 8.0
FAILOVER_STEERING = ("off", "")


class CloudflareLbOptions(BackendOptions):
    api_token: SecretStr
    """Write ``${CLOUDFLARE_API_TOKEN}``; never the token itself."""
    account_id: str = Field(min_length=1)
    zone_id: str = Field(min_length=1)
    load_balancer_id: str = Field(min_length=1)
    pools: dict[str, str]
    """drbot region -> that region's origin pool id."""
    mode: Literal["default_pools", "enable_disable", "weights"] = "default_pools"
    base_url: str = "https://api.cloudflare.com/client/v4"
    retries: int = Field(3, ge=0, le=10)
    max_retry_after: float = Field(30, gt=0)
    settle_timeout: float = Field(30, gt=0)
    poll_interval: float = Field(2, gt=0)
    verify_tls: bool = True

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value, "base_url").rstrip("/")

    @model_validator(mode="after")
    def _pools(self) -> "CloudflareLbOptions":
        ids = list(self.pools.values())
        if len(ids) < 2:
            raise ValueError("pools must map at least two regions to pool ids")
        if any(not i for i in ids) or len(set(ids)) != len(ids):
            raise ValueError("each region needs its own, non-empty pool id")
        return self


class CloudflareLb(CloudflareWeights, HttpBackend):
    """Moves traffic between regions' pools of one Cloudflare load balancer and reads pool
    health. ``client``: an injected ``httpx.Client``, or one created on first use."""

    kind = "cloudflare_lb"
    title = "Cloudflare Load Balancing"
    Options = CloudflareLbOptions
    capabilities = frozenset({TRAFFIC, HEALTH, WEIGHTS})
    options: CloudflareLbOptions

    def __init__(self, name: str, options: BackendOptions, client: Any = None):
        super().__init__(name, options, client)
        self._sleep: Callable[[float], None] = time.sleep

    def _make_client(self) -> httpx.Client:
        return make_client(self.options.timeout, self.options.verify_tls)

    # -- traffic ----------------------------------------------------------------------

    def active_region(self, target: Target) -> str:
        if self.options.mode == "enable_disable":
            return self._only_enabled(self._enabled())
        if self.options.mode == "weights":
            return self._only_weighted(self.weights(target))
        return self._first_pool(self._lb())

    def shift(self, target: Target, to_region: str, dry_run: bool = False) -> ActionResult:
        """Send traffic to ``to_region``'s pool (see the module docstring)."""
        pool = self._pool_of(to_region)
        if self.options.mode == "enable_disable":
            return self._shift_enabled(to_region, pool, dry_run)
        if self.options.mode == "weights":
            return self.set_weights(target, {r: 100.0 if r == to_region else 0.0 for r in self.options.pools}, dry_run)
        return self._shift_order(to_region, pool, dry_run)

    def _shift_order(self, to_region: str, pool: str, dry_run: bool) -> ActionResult:
        lb = self._lb()
        before = {"default_pools": list(lb.get("default_pools") or []), "fallback_pool": lb.get("fallback_pool")}
        after = {"default_pools": [pool] + [p for p in before["default_pools"] if p != pool], "fallback_pool": pool}
        details: dict[str, Any] = {"before": before, "after": after, "load_balancer": lb.get("name", "")}
        what = f"{to_region}'s pool first in default_pools and the fallback of {self.describe(lb)}"
        now = (f"first {self._named(before['default_pools'][:1])}, "
               f"fallback {self._named([before['fallback_pool']] if before['fallback_pool'] else [])}")
        if before == after:
            return ActionResult(f"already: {what}", dry_run=dry_run, changed=False, details=details)
        if dry_run:
            return ActionResult(f"would put {what} (now {now})", dry_run=True, changed=False, details=details)
        self._request("PATCH", self._lb_path(), json=after)
        self._settle(lambda: {k: self._lb().get(k) for k in after} == after,
                     f"{self.describe(lb)} still does not list {to_region}'s pool first")
        return ActionResult(f"put {what} (was {now})", dry_run=False, changed=True, details=details)

    def _shift_enabled(self, to_region: str, pool: str, dry_run: bool) -> ActionResult:
        lb = self._lb()
        if pool not in (lb.get("default_pools") or []) and pool != lb.get("fallback_pool"):
            raise IntegrationError(f"{self.name}: {to_region}'s pool {pool} is not a default or fallback pool of "
                                   f"{self.describe(lb)}, so enabling it would send no traffic there; add it to "
                                   f"the load balancer first.", ErrorKind.PERMANENT)
        before = self._enabled()
        after = {region: region == to_region for region in self.options.pools}
        details: dict[str, Any] = {"before": before, "after": after}
        others = ", ".join(r for r in after if r != to_region)
        what = f"pool of {to_region} enabled, pools of {others} disabled"
        if before == after:
            return ActionResult(f"already: {what}", dry_run=dry_run, changed=False, details=details)
        if dry_run:
            return ActionResult(f"would leave the {what} (now {fmt(before)})", dry_run=True, changed=False,
                                details=details)
        done: list[str] = []
        for region in [to_region] + [r for r in after if r != to_region]:
            if before[region] == after[region]:
                continue
            try:
                self._request("PATCH", self._pool_path(self.options.pools[region]), json={"enabled": after[region]})
            except IntegrationError as exc:
                if not done:
                    raise
                raise IntegrationError(f"{exc} Done before it failed: {', '.join(done)}; more than one pool may "
                                       f"take traffic. Run the shift again, or shift back.", exc.kind) from exc
            done.append(f"{region} {'enabled' if after[region] else 'disabled'}")
        self._settle(lambda: self._enabled() == after, f"the pools do not read back as {fmt(after)}")
        return ActionResult(f"left the {what} (was {fmt(before)})", dry_run=False, changed=True, details=details)

    # -- health -----------------------------------------------------------------------

    def check_health(self, target: Target) -> HealthReading:
        """Healthy when more than half of the probing data centres see the pool healthy."""
        if target.region is None:
            raise IntegrationError(f"{self.name}: a health read needs a region (one of "
                                   f"{', '.join(self.options.pools)}).", ErrorKind.PERMANENT)
        pool = self._pool_of(target.region)
        result = self._request("GET", self._pool_path(pool) + "/health") or {}
        pops = {name: bool((seen or {}).get("healthy")) for name, seen in (result.get("pop_health") or {}).items()}
        if pops:
            up = [name for name, ok in pops.items() if ok]
            down = sorted(name for name, ok in pops.items() if not ok)
            healthy = len(up) * 2 > len(pops)
            detail = f"pool {pool} healthy from {len(up)}/{len(pops)} data centres"
            return HealthReading(healthy, utcnow(), detail + (f" (unhealthy: {', '.join(down[:5])})" if down else ""))
        info = self._request("GET", self._pool_path(pool)) or {}
        if info.get("healthy") is None:
            raise IntegrationError(f"{self.name}: pool {pool} ({target.region}) reports no health: attach a "
                                   f"monitor to it in Cloudflare.", ErrorKind.PERMANENT)
        enabled = "" if info.get("enabled", True) else ", disabled"
        return HealthReading(bool(info["healthy"]), utcnow(),
                             f"pool {info.get('name') or pool} {'healthy' if info['healthy'] else 'unhealthy'}{enabled}")

    # -- reading ----------------------------------------------------------------------

    def describe(self, lb: dict[str, Any] | None = None) -> str:
        return f"load balancer {(lb or {}).get('name') or self.options.load_balancer_id}"

    def _lb_path(self) -> str:
        return f"/zones/{self.options.zone_id}/load_balancers/{self.options.load_balancer_id}"

    def _pool_path(self, pool: str) -> str:
        return f"/accounts/{self.options.account_id}/load_balancers/pools/{pool}"

    def _lb(self) -> dict[str, Any]:
        return self._request("GET", self._lb_path()) or {}

    def _enabled(self) -> dict[str, bool]:
        """region -> whether its pool is enabled."""
        return {region: bool((self._request("GET", self._pool_path(pool)) or {}).get("enabled"))
                for region, pool in self.options.pools.items()}

    def _first_pool(self, lb: dict[str, Any]) -> str:
        steering = lb.get("steering_policy") or ""
        if steering not in FAILOVER_STEERING:
            raise IntegrationError(
                f"{self.name}: {self.describe(lb)} steers with {steering!r}, which spreads traffic over its "
                f"default pools, so no single region is active. Use steering 'off' (failover order) or mode "
                f"enable_disable.", ErrorKind.PERMANENT)
        first = (lb.get("default_pools") or [None])[0]
        region = self._region_of(first)
        if region is None:
            raise IntegrationError(f"{self.name}: the first default pool of {self.describe(lb)} is {first}, "
                                   f"which is not one of the configured pools ({fmt(self.options.pools)}).",
                                   ErrorKind.PERMANENT)
        return region

    def _only_enabled(self, enabled: dict[str, bool]) -> str:
        on = [region for region, yes in enabled.items() if yes]
        if len(on) == 1:
            return on[0]
        raise IntegrationError(
            f"{self.name}: the pools read {fmt(enabled)}: "
            + ("none is enabled, so no region takes traffic." if not on else "traffic is split.")
            + " Shift to one region to fix it.", ErrorKind.PERMANENT)

    def _pool_of(self, region: str) -> str:
        try:
            return self.options.pools[region]
        except KeyError:
            raise IntegrationError(f"{self.name}: {region} has no pool configured (pools has "
                                   f"{', '.join(self.options.pools)}).", ErrorKind.PERMANENT) from None

    def _region_of(self, pool: str | None) -> str | None:
        return next((region for region, p in self.options.pools.items() if p == pool), None)

    def _named(self, pools: list[str]) -> str:
        return ", ".join(self._region_of(p) or p for p in pools) or "none"

    def _settle(self, holds: Callable[[], bool], still: str) -> None:
        """Poll ``holds`` every ``poll_interval`` until it is true, for ``settle_timeout``."""
        o = self.options
        waited, deadline = 0.0, time.monotonic() + o.settle_timeout
        while not holds():
            if waited >= o.settle_timeout or time.monotonic() >= deadline:
                raise IntegrationError(f"{self.name}: the change was accepted but {still} after "
                                       f"{o.settle_timeout:g}s; read it again before acting further.",
                                       ErrorKind.TRANSIENT)
            step = min(o.poll_interval, o.settle_timeout - waited)
            self._sleep(step)
            waited += step

    # -- HTTP -------------------------------------------------------------------------

    def _request(self, method: str, path: str, json: Any = None) -> Any:
        """The envelope's ``result``; retries 429 (Retry-After), 5xx and transport errors."""
        o = self.options
        headers = {"Authorization": f"Bearer {o.api_token.get_secret_value()}"}
        backoff, pause, failure = BACKOFF_FIRST, 0.0, ""
        for attempt in range(o.retries + 1):
            if attempt:
                self._sleep(pause)
            try:
                response = self.client.request(method, o.base_url + path, json=json, headers=headers,
                                               timeout=o.timeout)
            except httpx.TimeoutException:
                response, failure = None, f"no answer within {o.timeout:g}s"
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                raise IntegrationError(f"{self.name}: base_url {o.base_url} is not usable ({exc}).",
                                       ErrorKind.PERMANENT) from exc
            except httpx.TransportError as exc:
                response, failure = None, f"cannot connect ({exc or type(exc).__name__})"
            if response is not None and response.status_code < 500 and response.status_code != 429:
                return self._result(method, path, response)
            pause, backoff = backoff, min(backoff * 2, BACKOFF_MAX)
            if response is not None and response.status_code == 429:
                said = response.headers.get("Retry-After")
                failure = f"rate limited (HTTP 429, Retry-After {said or 'not given'})"
                wait = retry_after(said)
                if wait is not None and wait > o.max_retry_after:
                    break
                pause = pause if wait is None else wait
            elif response is not None:
                failure = f"HTTP {response.status_code}: {_errors(response)}"
        raise IntegrationError(f"{self.name}: Cloudflare {method} {path}: {failure}; try again shortly.",
                               ErrorKind.TRANSIENT)

    def _result(self, method: str, path: str, response: httpx.Response) -> Any:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise IntegrationError(f"{self.name}: Cloudflare {method} {path} answered HTTP {status} without a "
                                   f"JSON envelope; check base_url.", ErrorKind.PERMANENT)
        if status < 400 and body.get("success", True):
            return body.get("result")
        said = _errors(response)
        if status in (401, 403):
            raise IntegrationError(f"{self.name}: Cloudflare refused {method} {path} ({said}). Give the API token "
                                   f"Load Balancers Edit on the zone and Load Balancing: Monitors and Pools Edit "
                                   f"on the account.", ErrorKind.NOT_PERMITTED)
        if status == 404:
            raise IntegrationError(f"{self.name}: Cloudflare has no {path} ({said}); check account_id, zone_id, "
                                   f"load_balancer_id and pools.", ErrorKind.PERMANENT)
        raise IntegrationError(f"{self.name}: Cloudflare rejected {method} {path} ({said}).", ErrorKind.PERMANENT)

    # -- check-config -----------------------------------------------------------------

    def check(self) -> CheckResult:
        """Reads the load balancer and every pool (proves the token and the ids). Never raises."""
        try:
            lb = self._lb()
            enabled = self._enabled()
        except IntegrationError as exc:
            return CheckResult(False, str(exc))
        except Exception as exc:  # pragma: no cover - defensive: check never raises
            return CheckResult(False, f"{self.name}: unexpected error {exc!r}")
        try:
            active = (self._only_enabled(enabled) if self.options.mode == "enable_disable"
                      else self._only_weighted(shares(self._pool_weights(lb))) if self.options.mode == "weights"
                      else self._first_pool(lb))
            active = f"{active} is active"
        except IntegrationError as exc:
            active = f"no single region is active ({exc})"
        return CheckResult(True, f"{self.name}: {self.describe(lb)} and its pools exist (enabled: "
                                 f"{fmt(enabled)}); {active}.")


def _errors(response: httpx.Response) -> str:
    """Cloudflare's ``errors`` as "code 1000: message; ...", or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or f"HTTP {response.status_code}"
    errors = body.get("errors") if isinstance(body, dict) else None
    if not errors:
        return f"HTTP {response.status_code}"
    return "; ".join(f"code {e.get('code', '?')}: {e.get('message', '')}" if isinstance(e, dict) else str(e)
                     for e in errors)[:400]

