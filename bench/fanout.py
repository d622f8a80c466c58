"""Fan-out: N services whose sources each take D seconds (real HTTP, Prometheus and
http_probe backends against a slow local server). Reports the concurrent total next to
the serial time the same reads would take one after another."""
from __future__ import annotations

import time

from bot.config import parse_config
from bot.wiring import build_services
from bench.slow_server import SlowServer


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


def run(tmp: str, services: int = 30, delay: float = 0.3, rounds: int = 5) -> dict:
    with SlowServer(delay) as server:
        loaded = parse_config(config_text(server.url, services), "bench.yaml", {})
        svc = build_services(loaded, db_url=f"sqlite:///{tmp}/fanout.db")
        reads = services * 3
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            report = svc.status.report()
            times.append(time.perf_counter() - t0)
            assert len(report.assessments) == services
            assert all(a.lag.ok and all(h.ok for h in a.health.values()) for a in report.assessments), \
                "a read failed: the benchmark would measure errors, not reads"
        svc.engine.dispose()
    times.sort()
    return {"services": services, "reads": reads, "delay_s": delay, "rounds": rounds,
            "median_s": times[len(times) // 2], "max_s": times[-1], "serial_s": reads * delay}
