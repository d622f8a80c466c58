"""Fan-out, cold: N services whose sources each take D seconds (real HTTP, Prometheus and
http_probe backends against a slow local server in a process of its own, as sources are
on other hosts), and the first ``/dr status`` report after start (services just built:
no reader thread, no HTTP connection yet), next to the limit measured in the same run:
one request to the slowest source on a new connection (the client made beforehand).
Each round builds the services anew; medians over the rounds. Also the next (warm)
report of each round."""
from __future__ import annotations

import statistics
import subprocess
import sys
import time

import httpx

from bot.config import parse_config
from bot.wiring import build_services


def config_text(url: str, services: int) -> str:
    lines = ["regions: [us-east-1, us-west-2]", "sources:"]
    for i in range(services):
        lines += [f"  lag-{i}:", "    kind: prometheus", f"    url: {url}",
                  f"    query: 'aurora_replica_lag_seconds{{cluster=\"svc-{i}\"}}'",
                  f"  health-east-{i}: {{kind: http_probe, url: '{url}/health/east/{i}'}}",
                  f"  health-west-{i}: {{kind: http_probe, url: '{url}/health/west/{i}'}}"]
    lines.append("services:")
    for i in range(services):
        lines += [f"  - name: svc-{i}", "    rpo: 5m", "    rto: 15m", "    active: us-east-1",
                  "    standby: us-west-2", f"    lag: {{source: lag-{i}}}",
                  f"    health: {{us-east-1: health-east-{i}, us-west-2: health-west-{i}}}"]
    return "\n".join(lines) + "\n"


def _timed(fn) -> tuple[float, object, float]:
    """Wall time, result, and CPU time of this process (every thread) while it ran: the
    CPU it cost, whatever else the machine was running."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - t0, result, time.process_time() - c0


class _SourcesProcess:
    """bench/slow_server.py in a process of its own: the sources' threads are not drbot's."""

    def __init__(self, delay: float):
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.slow_server", str(delay)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()

    def __enter__(self) -> "_SourcesProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def run(tmp: str, services: int = 30, delay: float = 0.3, rounds: int = 3) -> dict:
    first, warm, limit, cpu = [], [], [], {"first": [], "warm": []}
    with _SourcesProcess(delay) as server:
        loaded = parse_config(config_text(server.url, services), "bench.yaml", {})
        for n in range(rounds):
            with httpx.Client(timeout=10) as client:  # made first: the limit is the request, on a new connection
                limit.append(_timed(lambda: client.get(f"{server.url}/health/east/0"))[0])
            svc = build_services(loaded, db_url=f"sqlite:///{tmp}/fanout-{n}.db")
            try:
                for times, which in ((first, "first"), (warm, "warm")):
                    took, report, used = _timed(svc.status.report)
                    times.append(took)
                    cpu[which].append(used)
                    assert len(report.assessments) == services
                    assert all(a.lag.ok and all(h.ok for h in a.health.values()) for a in report.assessments), \
                        "a read failed: the benchmark would measure errors, not reads"
                    assert not [f for a in report.assessments for f in a.reasons if f.code == "stale"], \
                        "readings read as stale: the server's sample times are wrong"
            finally:
                svc.collector.close()
                for backend in svc.backends.values():
                    getattr(backend, "close", lambda: None)()  # the httpx backends' clients
                svc.engine.dispose()
    first_s, limit_s = statistics.median(first), statistics.median(limit)
    return {"services": services, "reads": services * 3, "delay_s": delay, "rounds": rounds,
            "first_s": first_s, "first_max_s": max(first), "warm_s": statistics.median(warm),
            "limit_s": limit_s, "ratio": first_s / limit_s, "serial_s": services * 3 * delay,
            "first_cpu_s": statistics.median(cpu["first"]), "warm_cpu_s": statistics.median(cpu["warm"])}
