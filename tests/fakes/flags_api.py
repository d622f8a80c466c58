"""A local fake of an internal feature-flag service and a smoke-test endpoint, for ``http``
runbook steps.

    PUT  /flags/{name}     body {"enabled": bool, ...}; answers {"data": {"name", "state": "on"|"off"}}
    GET  /flags/{name}     the flag, same shape (404 when never set)
    GET  /smoke/{service}  {"checks": [{"name", "state"}]}: state "passing", or "failing" when
                           ``fake.smoke_failing`` is set (status ``fake.smoke_status``)

Failure injection: ``fake.fail_next(503, times=2, retry_after="0")`` answers the next
requests with that status (and Retry-After) without changing anything.
"""
from __future__ import annotations

from tests.fakes.json_server import Answer, JsonServer, Request


class FakeFlags(JsonServer):
    def __init__(self):
        super().__init__()
        self.flags: dict[str, dict] = {}
        self.smoke_failing = False
        self.smoke_status = 200
        self._fail: list[tuple[int, str | None]] = []

    def fail_next(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        with self.lock:
            self._fail += [(status, retry_after)] * times

    def handle(self, req: Request) -> Answer:
        with self.lock:
            if self._fail:
                status, after = self._fail.pop(0)
                return Answer(status, {"error": "injected"}, {"Retry-After": after} if after is not None else {})
            parts = req.path.strip("/").split("/")
            if parts[0] == "flags" and len(parts) == 2:
                name = parts[1]
                if req.method == "PUT":
                    enabled = bool((req.json or {}).get("enabled"))
                    self.flags[name] = {"name": name, "state": "on" if enabled else "off",
                                        "by": req.headers.get("idempotency-key", "")}
                if name not in self.flags:
                    return Answer(404, {"error": f"no flag {name}"})
                return Answer(200, {"data": self.flags[name]})
            if parts[0] == "smoke" and len(parts) == 2:
                state = "failing" if self.smoke_failing else "passing"
                return Answer(self.smoke_status, {"checks": [{"name": f"{parts[1]}-checkout", "state": state}]})
        return Answer(404, {"error": "not found"})
