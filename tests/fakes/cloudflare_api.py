"""A local fake of Cloudflare's v4 Load Balancing API (the part ``cloudflare_lb`` uses).

    GET   /zones/{zone}/load_balancers/{lb}                 the load balancer
    PATCH /zones/{zone}/load_balancers/{lb}                 body: any of default_pools, fallback_pool,
                                                            steering_policy, random_steering
                                                            ({default_weight, pool_weights: {pool: 0..1}});
                                                            pools must exist
    GET   /accounts/{account}/load_balancers/pools/{pool}   the pool
    PATCH /accounts/{account}/load_balancers/pools/{pool}   body: any of enabled, name
    GET   /accounts/{account}/load_balancers/pools/{pool}/health
                                                            {pool_id, pop_health: {PoP: {healthy, origins}}}

Every answer is Cloudflare's envelope: ``{"success", "errors": [{code, message}],
"messages", "result"}``. A request without ``Authorization: Bearer <token>`` gets 403 with
code 10000 ("Authentication error"); unknown ids 404 with code 1002/1003.

Failure injection: ``fake.fail_next(429, times=2, retry_after="1")`` answers the next requests
with that status (and Retry-After) without changing anything; ``fake.pop_health[pool] =
{"Ashburn, VA, US": False, ...}`` sets what each data centre sees (default: three data
centres agreeing with the pool's ``healthy`` flag).
"""
from __future__ import annotations

import copy

from tests.fakes.json_server import Answer, JsonServer, Request

POPS = ("Ashburn, VA, US", "Frankfurt, DE", "Singapore, SG")


def envelope(result=None, status: int = 200, errors: list[dict] | None = None) -> Answer:
    return Answer(status, {"success": not errors, "errors": errors or [], "messages": [], "result": result})


class FakeCloudflare(JsonServer):
    def __init__(self, token: str = "cf-test-token", account: str = "acc123", zone: str = "zone123"):
        super().__init__()
        self.token = token
        self.account = account
        self.zone = zone
        self.pools: dict[str, dict] = {}
        self.load_balancers: dict[str, dict] = {}
        self.pop_health: dict[str, dict[str, bool]] = {}
        self._fail: list[tuple[int, str | None]] = []

    # -- set-up -------------------------------------------------------------------------

    def add_pool(self, pool_id: str, name: str, enabled: bool = True, healthy: bool = True) -> None:
        with self.lock:
            self.pools[pool_id] = {"id": pool_id, "name": name, "enabled": enabled, "healthy": healthy,
                                   "minimum_origins": 1, "monitor": "mon1",
                                   "origins": [{"name": f"{name}-origin", "address": f"{name}.example.net",
                                                "enabled": True, "weight": 1}]}

    def add_load_balancer(self, lb_id: str, name: str, default_pools: list[str], fallback_pool: str,
                          steering_policy: str = "off", pool_weights: dict[str, float] | None = None) -> None:
        with self.lock:
            self.load_balancers[lb_id] = {"id": lb_id, "name": name, "enabled": True, "proxied": True, "ttl": 30,
                                          "default_pools": list(default_pools), "fallback_pool": fallback_pool,
                                          "steering_policy": steering_policy}
            if pool_weights is not None:
                self.load_balancers[lb_id]["random_steering"] = {"default_weight": 1,
                                                                 "pool_weights": dict(pool_weights)}

    def fail_next(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        with self.lock:
            self._fail += [(status, retry_after)] * times

    def lb(self, lb_id: str) -> dict:
        with self.lock:
            return copy.deepcopy(self.load_balancers[lb_id])

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method != "GET"]

    # -- serving ------------------------------------------------------------------------

    def handle(self, req: Request) -> Answer:
        with self.lock:
            if self._fail:
                status, after = self._fail.pop(0)
                answer = envelope(status=status, errors=[{"code": 10429 if status == 429 else 10500,
                                                          "message": "injected failure"}])
                if after is not None:
                    answer.headers["Retry-After"] = after
                return answer
            if req.headers.get("authorization") != f"Bearer {self.token}":
                return envelope(status=403, errors=[{"code": 10000, "message": "Authentication error"}])
            parts = req.path.strip("/").split("/")
            if parts[:1] == ["client"]:
                parts = parts[2:]  # /client/v4/... as on api.cloudflare.com
            if len(parts) == 4 and parts[0] == "zones" and parts[2] == "load_balancers":
                return self._load_balancer(req, parts[1], parts[3])
            if len(parts) in (5, 6) and parts[0] == "accounts" and parts[2:4] == ["load_balancers", "pools"]:
                return self._pool(req, parts[1], parts[4], health=len(parts) == 6 and parts[5] == "health")
        return envelope(status=404, errors=[{"code": 7003, "message": "Could not route to " + req.path}])

    def _load_balancer(self, req: Request, zone: str, lb_id: str) -> Answer:
        lb = self.load_balancers.get(lb_id) if zone == self.zone else None
        if lb is None:
            return envelope(status=404, errors=[{"code": 1003, "message": "load balancer not found"}])
        if req.method == "PATCH":
            body = req.json or {}
            unknown = [p for p in [*body.get("default_pools", []), body.get("fallback_pool")]
                       if p is not None and p not in self.pools]
            weights = (body.get("random_steering") or {}).get("pool_weights") or {}
            unknown += [p for p in weights if p not in self.pools]
            if unknown:
                return envelope(status=400, errors=[{"code": 1002, "message": f"pool {unknown[0]} not found"}])
            if any(not isinstance(w, (int, float)) or not 0 <= w <= 1 for w in weights.values()):
                return envelope(status=400, errors=[{"code": 1005, "message": "pool weights must be between 0 and 1"}])
            for key in ("default_pools", "fallback_pool", "steering_policy", "random_steering"):
                if key in body:
                    lb[key] = copy.deepcopy(body[key])
        return envelope(copy.deepcopy(lb))

    def _pool(self, req: Request, account: str, pool_id: str, health: bool) -> Answer:
        pool = self.pools.get(pool_id) if account == self.account else None
        if pool is None:
            return envelope(status=404, errors=[{"code": 1002, "message": "pool not found"}])
        if health:
            seen = self.pop_health.get(pool_id) or {pop: pool["healthy"] for pop in POPS}
            return envelope({"pool_id": pool_id, "pop_health": {
                pop: {"healthy": ok, "origins": [{pool["origins"][0]["address"]: {
                    "healthy": ok, "rtt": "12.5ms", "failure_reason": "" if ok else "HTTP timeout occurred",
                    "response_code": 200 if ok else 0}}]} for pop, ok in seen.items()}})
        if req.method == "PATCH":
            for key in ("enabled", "name"):
                if key in (req.json or {}):
                    pool[key] = req.json[key]
        return envelope(copy.deepcopy(pool))
