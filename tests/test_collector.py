"""Fan-out: concurrent reads, each cut at its own timeout; errors become readings."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from bot.collector import Collector, Probe
from bot.readings import Status
from integrations.base import (
    HEALTH, LAG, Backend, BackendOptions, ErrorKind, HealthReading, IntegrationError, LagReading, Target,
)


class Scripted(Backend):
    """A backend whose behaviour the test scripts: sleep, raise, or answer."""

    kind = "scripted"
    Options = BackendOptions
    capabilities = frozenset({LAG, HEALTH})

    def __init__(self, name, timeout=1.0, sleep=0.0, error=None, crash=False):
        super().__init__(name, BackendOptions(timeout=timeout))
        self.sleep, self.error, self.crash = sleep, error, crash
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()

    def _work(self):
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(self.sleep)
            if self.error:
                raise IntegrationError(self.error, ErrorKind.TRANSIENT)
            if self.crash:
                raise KeyError("Datapoints")
        finally:
            with self._lock:
                self.active -= 1

    def read_lag(self, target, history=False):
        self._work()
        return LagReading(12.5, datetime.now(timezone.utc))

    def check_health(self, target):
        self._work()
        return HealthReading(True, datetime.now(timezone.utc), detail="200 OK")


def test_reads_run_concurrently():
    backend = Scripted("s", sleep=0.2)
    probes = [Probe((i,), "s", "lag", Target(f"svc{i}")) for i in range(10)]
    out = Collector({"s": backend}).read(probes)
    assert backend.peak == 10
    assert all(r.status is Status.OK and r.lag_seconds == 12.5 for r in out.values())


def test_hanging_source_is_cut_at_its_timeout_and_others_are_not_delayed():
    hang, fast = Scripted("hang", timeout=0.3, sleep=5), Scripted("fast", timeout=2.0)
    t0 = time.monotonic()
    out = Collector({"hang": hang, "fast": fast}).read([
        Probe(("a",), "hang", "lag", Target("a")), Probe(("b",), "fast", "health", Target("b", "r1"))])
    took = time.monotonic() - t0
    assert out[("a",)].status is Status.TIMEOUT and out[("a",)].error == "no answer within 0.3s"
    assert out[("b",)].status is Status.OK and out[("b",)].healthy is True
    assert took < 2.0  # bounded by the hanging source's timeout, not its 5 s hang


def test_errors_become_failed_readings_with_the_reason():
    out = Collector({"err": Scripted("err", error="throttled by CloudWatch"),
                     "bug": Scripted("bug", crash=True)}).read([
        Probe(("e",), "err", "lag", Target("x")), Probe(("b",), "bug", "health", Target("x", "r"))])
    assert out[("e",)].status is Status.FAILED and out[("e",)].error == "throttled by CloudWatch"
    assert out[("b",)].status is Status.FAILED and "KeyError" in out[("b",)].error


def test_unknown_source_is_missing_not_healthy():
    out = Collector({}).read([Probe(("m",), "ghost", "health", Target("x", "r"))])
    assert out[("m",)].status is Status.MISSING and out[("m",)].healthy is None
