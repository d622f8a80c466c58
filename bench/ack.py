"""Slack ack latency: signed ``/dr status`` over real HTTP to the running app (HTTP mode),
time from sending the request to the 200, and until the summary reaches the fake Slack."""
from __future__ import annotations

import statistics
import time

from bot.config import parse_config
from bot.wiring import build_services
from tests.app_server import running_app
from tests.conftest import SANDBOX_CONFIG
from tests.fakes.slack_api import FakeSlack


def run(tmp: str, requests: int = 200) -> dict:
    services = build_services(parse_config(SANDBOX_CONFIG, "bench.yaml", {}), db_url=f"sqlite:///{tmp}/ack.db")
    acks, replies = [], []
    with FakeSlack() as fake, running_app(services, fake) as app:
        for i in range(requests):
            fake.clear()
            t0 = time.perf_counter()
            r = app.sender.slash_command("status", response_url=fake.response_url(f"b{i}"))
            acks.append(time.perf_counter() - t0)
            assert r.status_code == 200
            fake.wait_for("response_url", 1)
            replies.append(time.perf_counter() - t0)
    services.engine.dispose()
    q = statistics.quantiles
    return {"requests": requests,
            "ack_p50_ms": q(acks, n=100)[49] * 1000, "ack_p95_ms": q(acks, n=100)[94] * 1000,
            "ack_max_ms": max(acks) * 1000, "reply_p50_ms": q(replies, n=100)[49] * 1000}
