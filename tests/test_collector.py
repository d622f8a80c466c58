"""Fan-out: concurrent reads, each cut at its own timeout; errors become readings."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

from bot.collector import Collector, Probe
from bot.readings import Status
from integrations import http_client
from integrations.base import (
    HEALTH, LAG, Backend, BackendOptions, ErrorKind, HealthReading, IntegrationError, LagReading, Target,
)
from integrations.http_probe import HttpProbe
from tests.helpers import wait_until


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


# -- one persistent pool, shared flights, kept readings ------------------------------------

class Gated(Scripted):
    """A backend whose reads wait at a gate the test opens, counting calls and threads."""

    def __init__(self, name, timeout=5.0):
        super().__init__(name, timeout=timeout)
        self.gate = threading.Event()
        self.calls = 0
        self.threads = []

    def _work(self):
        with self._lock:
            self.calls += 1
            self.threads.append(threading.current_thread())
        assert self.gate.wait(10)


def test_reads_reuse_one_pool_of_reader_threads():
    backend = Gated("s")
    backend.gate.set()
    collector = Collector({"s": backend}, max_workers=4)
    try:
        for _ in range(5):
            collector.read([Probe((i,), "s", "health", Target("svc", f"r{i}")) for i in range(3)])
        assert backend.calls == 15
        assert len(set(backend.threads)) <= 4, "a new pool of threads per read"
    finally:
        collector.close()


def test_concurrent_reads_of_one_probe_call_the_source_once():
    backend = Gated("s", timeout=60.0)  # the flight stays young however slowly the threads start
    collector = Collector({"s": backend})
    probe = Probe(("lag",), "s", "lag", Target("orders"))
    results = []
    threads = [threading.Thread(target=lambda: results.append(collector.read([probe])[("lag",)]))
               for _ in range(4)]
    for t in threads:
        t.start()
    wait_until("the first read to reach the source", lambda: backend.calls == 1)
    # the gate opens only once every other read has joined the flight: opened earlier, a
    # read that had not yet reached the collector would find the flight landed and read again
    wait_until("the three other reads to join the first", lambda: collector.joined == 3)
    backend.gate.set()
    for t in threads:
        t.join(timeout=10)
    assert backend.calls == 1 and collector.calls == 1
    assert len(results) == 4 and all(r.ok and r.lag_seconds == 12.5 for r in results)
    collector.read([probe])  # the flight has landed: a later read calls the source again
    assert backend.calls == 2
    collector.close()


def test_a_kept_reading_is_served_within_reuse_and_never_past_stale_after():
    backend = Gated("s")
    backend.gate.set()
    collector = Collector({"s": backend})
    probe = Probe(("lag",), "s", "lag", Target("orders"), stale_after=60)
    first = collector.read([probe])[("lag",)]
    at = first.observed_at
    assert collector.read([probe], reuse=30, now=at + timedelta(seconds=10))[("lag",)] is first
    assert backend.calls == 1
    assert collector.read([probe], reuse=30, now=at + timedelta(seconds=61))[("lag",)] is not first
    assert backend.calls == 2, "a reading older than stale_after is read again"
    assert collector.read([probe])[("lag",)] is not None and backend.calls == 3, "reuse=0 reads again"
    moved = Probe(("lag",), "s", "lag", Target("orders"), stale_after=60, context=("us-west-2", "us-east-1"))
    collector.read([moved], reuse=30)
    assert backend.calls == 4, "after a move, readings from before it do not apply"
    collector.close()


def test_failed_readings_are_not_kept():
    err = Scripted("err", error="throttled")
    collector = Collector({"err": err})
    probe = Probe(("e",), "err", "lag", Target("x"))
    assert collector.read([probe])[("e",)].status is Status.FAILED
    assert collector.read([probe], reuse=60)[("e",)].status is Status.FAILED
    assert collector.calls == 2
    collector.close()


def test_a_closed_collector_answers_at_once_that_it_did_not_read():
    backend = Gated("s")
    collector = Collector({"s": backend})
    collector.close()
    out = collector.read([Probe(("a",), "s", "lag", Target("a"))])
    assert out[("a",)].status is Status.FAILED and "stopping" in out[("a",)].error
    assert backend.calls == 0


def test_the_tls_context_is_built_once_for_many_http_sources_read_at_once():
    backends = {f"p{i}": HttpProbe(f"p{i}", HttpProbe.Options(url="https://127.0.0.1:9/", timeout=0.5))
                for i in range(20)}
    assert http_client.TLS.builds == 1, "built when the backends were built, once"
    collector = Collector(backends)
    try:
        collector.read([Probe((n,), n, "health", Target("x", "r")) for n in backends])
    finally:
        collector.close()
    assert http_client.TLS.builds == 1


def test_prepare_makes_the_http_clients_before_the_first_read():
    backends = {f"p{i}": HttpProbe(f"p{i}", HttpProbe.Options(url="http://127.0.0.1:9/", timeout=0.5))
                for i in range(3)}
    collector = Collector(backends)
    try:
        assert all(b._client is None for b in backends.values())
        collector.prepare()
        assert all(b._client is not None for b in backends.values())
    finally:
        collector.close()
        for b in backends.values():
            b.close()
