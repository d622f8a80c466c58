"""Pool weights of a Cloudflare load balancer (``cloudflare_lb`` with ``mode: weights``):
capability WEIGHTS, what a staged traffic ramp (bot/ramp.py) moves, and the traffic reading
of that mode. A mixin of ``integrations.cloudflare_lb.CloudflareLb``, which supplies the
options, the HTTP envelope (``_request``), ``_lb``/``_lb_path``, ``_settle``, ``describe``
and ``_region_of``.

The load balancer steers ``random`` and each pool's weight
(``random_steering.pool_weights``, 0-1) is its share of the traffic: a region's share is
its pool's weight over the sum. Setting weights PATCHes ``steering_policy: random`` and the
pool weights (percent / 100) in one request, then reads them back; every configured pool
must be a default pool of the load balancer (random steering sends nothing to the others).
"""
from __future__ import annotations

from typing import Any

from integrations.base import ActionResult, ErrorKind, IntegrationError, Target


class CloudflareWeights:
    """The WEIGHTS capability over the load balancer's random steering pool weights."""

    name: str
    options: Any


    def weights(self, target: Target) -> dict[str, float]:
        """region -> its pool's share of the traffic (%): its weight over the sum."""
        return shares(self._pool_weights(self._weighted_lb()))

    def set_weights(self, target: Target, weights: dict[str, float], dry_run: bool = False) -> ActionResult:
        """Random steering with each region's pool weighted ``weights[region]`` / 100, in one PATCH."""
        o = self.options
        if set(weights) - set(o.pools) or round(sum(weights.values())) != 100:
            raise IntegrationError(f"{self.name}: cannot set weights {fmt(weights)}: they must name regions of "
                                   f"pools ({', '.join(o.pools)}) and sum to 100.", ErrorKind.PERMANENT)
        lb = self._weighted_lb()
        missing = [r for r, p in o.pools.items() if p not in (lb.get("default_pools") or [])]
        if missing:
            raise IntegrationError(f"{self.name}: the pools of {', '.join(missing)} are not default pools of "
                                   f"{self.describe(lb)}, so random steering sends them nothing; add them to "
                                   f"default_pools first.", ErrorKind.PERMANENT)
        current = self._pool_weights(lb)
        want = {p: round(weights.get(r, 0.0) / 100, 2) for r, p in o.pools.items()}
        before, after = shares(current), shares({r: want[p] for r, p in o.pools.items()})
        details: dict[str, Any] = {"before": before, "after": after, "pool_weights": want}
        text = f"pool weights of {self.describe(lb)} {pct(after)}"
        steering = (lb.get("steering_policy") or "") == "random"
        if steering and all(current[r] == want[p] for r, p in o.pools.items()):
            return ActionResult(f"already: {text}", dry_run=dry_run, changed=False, details=details)
        if dry_run:
            return ActionResult(f"would set {text} (now {pct(before)})", dry_run=True, changed=False,
                                details=details)
        steering_now = dict(lb.get("random_steering") or {})
        kept = dict(steering_now.get("pool_weights") or {}) if steering else \
            {p: 0.0 for p in lb.get("default_pools") or []}  # from another policy: other pools take nothing
        body = {"steering_policy": "random", "random_steering": steering_now | {"pool_weights": kept | want}}
        self._request("PATCH", self._lb_path(), json=body)
        self._settle(lambda: {p: w for p, w in ((self._lb().get("random_steering") or {}).get("pool_weights") or {})
                              .items() if p in want} == want, f"the pool weights do not read back as {pct(after)}")
        return ActionResult(f"set {text} (was {pct(before)})", dry_run=False, changed=True, details=details)

    def _weighted_lb(self) -> dict[str, Any]:
        if self.options.mode != "weights":
            raise IntegrationError(f"{self.name}: pool weights need mode: weights (random steering); this "
                                   f"source uses mode {self.options.mode}.", ErrorKind.PERMANENT)
        return self._lb()

    def _pool_weights(self, lb: dict[str, Any]) -> dict[str, float]:
        """region -> its pool's weight (0-1); 0 unless the load balancer steers ``random``."""
        rs = lb.get("random_steering") or {}
        if (lb.get("steering_policy") or "") != "random":
            first = self._region_of((lb.get("default_pools") or [None])[0])
            return {r: 1.0 if r == first else 0.0 for r in self.options.pools}
        default = float(rs.get("default_weight", 1.0))
        return {r: float((rs.get("pool_weights") or {}).get(p, default)) for r, p in self.options.pools.items()}

    def _only_weighted(self, shares: dict[str, float]) -> str:
        on = [region for region, share in shares.items() if share > 0]
        if len(on) == 1:
            return on[0]
        raise IntegrationError(f"{self.name}: the pool weights are {pct(shares)}: traffic is split. Shift to "
                               f"one region to fix it.", ErrorKind.PERMANENT)


def fmt(mapping: dict[str, Any]) -> str:
    """``a=1, b=2``."""
    return ", ".join(f"{k}={v}" for k, v in mapping.items())


def shares(weights: dict[str, float]) -> dict[str, float]:
    """Weights as percentages of their sum (all 0 when the sum is 0)."""
    total = sum(weights.values())
    return {r: round(100 * w / total, 2) if total else 0.0 for r, w in weights.items()}


def pct(shares: dict[str, float]) -> str:
    return ", ".join(f"{r}={s:g}%" for r, s in shares.items())
