"""Slack ack latency under load, side by side with the limit of the same stack in the same run.

drbot (HTTP mode, the sandbox config) and a bare Bolt app served by the same adapter
(``transports.http``, uvicorn, a ``SlackApp`` whose listeners only ack) run in this
process. A load process (``python -m bench.ack``) hosts the fake Slack Web API (drbot's
replies land there) and plays ``CLIENTS`` concurrent clients, each sending ``EACH``
signed requests one after the other: ``/dr status`` commands, then Refresh clicks. Per
round, drbot then the bare app; ``ROUNDS`` rounds; medians of the rounds' p50 and p99.
After each drbot round the load waits until every reply has reached the fake Slack, so
a round starts with no work left over.

RSS of this process (both servers) is read idle (after a warm-up of a few requests of
each kind) and after the status rounds (``CLIENTS * EACH * ROUNDS`` = 2,100 commands).
"""
from __future__ import annotations

import asyncio
import json
import re
import statistics
import subprocess
import sys
import time
from types import SimpleNamespace

import httpx

from bot.config import parse_config
from bot.wiring import build_services
from tests.app_server import SIGNING_SECRET, running_app, serving
from tests.fakes.slack_api import FakeSlack
from tests.helpers import SANDBOX_CONFIG
from tests.slack_client import SlackSender
from transports.http import build_http_app, freeze_startup_heap
from transports.slack.app import SlackApp, SlackSettings, make_client

CLIENTS, EACH, ROUNDS = 50, 14, 3
KINDS = ("status", "click")


def bare_app(base_url: str) -> SlackApp:
    """The limit: Bolt with drbot's settings, listeners that only ack."""
    app = SlackApp(signing_secret=SIGNING_SECRET,
                   client=make_client(SlackSettings(bot_token="xoxb-bench", api_url=base_url)))
    app.command("/dr")(lambda ack: ack())
    app.action(re.compile(".*"))(lambda ack: ack())
    return app


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


def _quantile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000


class Load:
    """The load process: one JSON line per request, one back per answer."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.ack"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.fake = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the load process ended")
        return json.loads(line)

    def run(self, url: str, kind: str, clients: int, each: int, replies: bool) -> dict:
        self.proc.stdin.write(json.dumps({"url": url, "kind": kind, "clients": clients, "each": each,
                                          "replies": replies}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def run(tmp: str) -> dict:
    services = build_services(parse_config(SANDBOX_CONFIG, "bench.yaml", {}), db_url=f"sqlite:///{tmp}/ack.db")
    load = Load()
    fake = SimpleNamespace(base_url=load.fake["base_url"])
    bare = bare_app(fake.base_url)
    samples: dict[tuple[str, str], list[dict]] = {}
    try:
        with running_app(services, fake) as drbot, serving(build_http_app(services, bare)) as bare_url:
            for kind in KINDS:  # warm-up: templates compiled, connections made, time zones known
                load.run(drbot.url, kind, CLIENTS, 1, True)
                load.run(bare_url, kind, CLIENTS, 1, False)
            freeze_startup_heap()  # the start-up heap out of the collector's sight, as before serving
            idle = rss_mb()
            reads_before, reports_before = services.collector.calls, services.status.shared.runs
            for kind in KINDS:
                for _ in range(ROUNDS):
                    samples.setdefault(("drbot", kind), []).append(load.run(drbot.url, kind, CLIENTS, EACH, True))
                    samples.setdefault(("bare", kind), []).append(load.run(bare_url, kind, CLIENTS, EACH, False))
                if kind == "status":
                    after_status = rss_mb()
            reads = services.collector.calls - reads_before
            reports = services.status.shared.runs - reports_before
    finally:
        load.close()
        bare.stop(wait=False)
        services.engine.dispose()
    out = {"clients": CLIENTS, "each": EACH, "rounds": ROUNDS, "rss_idle_mb": idle,
           "rss_after_status_mb": after_status, "status_commands": CLIENTS * EACH * ROUNDS,
           "source_reads": reads, "reports": reports}
    for (app, kind), rounds in samples.items():
        for q in (50, 99):
            out[f"{app}_{kind}_p{q}_ms"] = statistics.median(_quantile(r["acks"], q) for r in rounds)
        if app == "drbot":
            out[f"{app}_{kind}_replies_s"] = statistics.median(r["replies_s"] for r in rounds)
    for kind in KINDS:
        out[f"{kind}_ratio"] = out[f"drbot_{kind}_p99_ms"] / out[f"bare_{kind}_p99_ms"]
    out["rss_ratio"] = after_status / idle
    return out


# -- the load process -----------------------------------------------------------------------

class _Prepared:
    """Stands in for SlackSender's HTTP client: keeps the signed request instead of sending it."""

    def post(self, url: str, content: bytes, headers: dict) -> tuple[str, bytes, dict]:
        return url, content, headers


def _requests(url: str, kind: str, fake: FakeSlack, tag: str, client: int, each: int) -> list[tuple]:
    sender = SlackSender(url, SIGNING_SECRET)
    sender.http.close()
    sender.http = _Prepared()
    user = dict(user_id=f"UB{client:03d}", user_name=f"bench{client}")
    out = []
    for i in range(each):
        response_url = fake.response_url(f"{tag}-{client}-{i}")
        if kind == "status":
            out.append(sender.slash_command("status", response_url=response_url, **user))
        else:
            out.append(sender.block_action("status_refresh", "*", response_url=response_url, **user))
    return out


async def _client(url: str, requests: list[tuple], acks: list[float]) -> None:
    """One client: one keep-alive connection, its requests one after the other. Plain
    asyncio streams, not an HTTP library, so the load process measures the server, not itself."""
    target = httpx.URL(requests[0][0])  # SlackSender's URL: the app's /slack/events
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        for _, content, headers in requests:
            head = [f"POST {target.raw_path.decode()} HTTP/1.1", f"Host: {target.host}:{target.port}",
                    f"Content-Length: {len(content)}", *(f"{k}: {v}" for k, v in headers.items())]
            t0 = time.perf_counter()
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + content)
            await writer.drain()
            status = await _response(reader)
            acks.append(time.perf_counter() - t0)
            if status != 200:
                raise RuntimeError(f"HTTP {status} from {url}")
    finally:
        writer.close()


async def _response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (with a Content-Length); its status."""
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    length = next((int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")), 0)
    if length:
        await reader.readexactly(length)
    return int(lines[0].split()[1])


async def _round(job: dict, fake: FakeSlack, tag: str) -> dict:
    batches = [_requests(job["url"], job["kind"], fake, tag, c, job["each"]) for c in range(job["clients"])]
    acks: list[float] = []
    t0 = time.perf_counter()
    await asyncio.gather(*(_client(job["url"], b, acks) for b in batches))
    out: dict = {"acks": acks}
    if job["replies"]:
        expected = job["clients"] * job["each"]
        deadline = time.monotonic() + 300
        while len([c for c in fake.calls("response_url") if c.params["_path"].startswith(f"/response/{tag}-")]) \
                < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not every reply of round {tag} arrived")
            await asyncio.sleep(0.05)
        out["replies_s"] = time.perf_counter() - t0
    fake.clear()
    return out


def _serve_load() -> int:
    with FakeSlack() as fake:
        print(json.dumps({"base_url": fake.base_url}), flush=True)
        for n, line in enumerate(sys.stdin):
            print(json.dumps(asyncio.run(_round(json.loads(line), fake, f"r{n}"))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_serve_load())
