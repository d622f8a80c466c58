"""Alert storm: 20,000 Alertmanager alerts for 20 services, in grouped payloads POSTed over
HTTP by 50 concurrent clients (asyncio in a process of their own, so that they do not
share the server's interpreter), on SQLite and on PostgreSQL (a throwaway schema).

Measured on drbot: accepted/s (every 200 arrived: each payload stored), processed/s (until
every alert is stored, grouped into its incident, on the timeline), the processing rate
of the first and of the last 1,000 alerts (from the start of the drain's batch holding the
first of them to the end of the batch holding the last), none lost, and the server
process's RSS idle and after the storm. In the same run, the limit of the same stack: a
bare Starlette endpoint on uvicorn that parses the JSON and INSERTs its alerts (one INSERT
per alert, one transaction per payload) into the same database, under the same load."""
from __future__ import annotations

import asyncio
import gc
import json
import multiprocessing
import os
import queue
import socket
import statistics
import threading
import time
from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator

import uvicorn
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, insert
from sqlmodel import func, select
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.config import parse_config
from bot.store import make_engine, session_scope
from bot.store.incident_tables import Alert, AlertInbox, Incident
from bot.store.models import TimelineEvent
from bot.wiring import build_services
from tests.app_server import running_app
from tests.fakes.slack_api import FakeSlack
from tests.postgres import DEFAULT_URL as PG_URL, postgres_error, temporary_schema

SERVICES = 20
TOKEN = "bench-token"
NAMES = ("ReplicaLagHigh", "EndpointDown", "HighErrorRate")


def config_text() -> str:
    lines = ["regions: [us-east-1, us-west-2]", "sources:", "  sim: {kind: sandbox}", "services:"]
    for i in range(SERVICES):
        lines += [f"  - {{name: svc-{i:02d}, rpo: 5m, rto: 15m, active: us-east-1, standby: us-west-2, "
                  "lag: {source: sim}, health: {us-east-1: sim, us-west-2: sim}}"]
    lines += ["alerts:", f"  alertmanager_token: {TOKEN}", "incidents:", "  responders: [UONCALL]"]
    return "\n".join(lines) + "\n"


def payload(batch: int, size: int) -> dict:
    now = datetime.now(timezone.utc).isoformat()
    alerts = []
    for k in range(size):
        n = batch * size + k
        svc = f"svc-{n % SERVICES:02d}"
        alerts.append({"status": "firing", "fingerprint": f"fp{n:06d}",
                       "labels": {"alertname": NAMES[n // SERVICES % len(NAMES)], "service": svc,
                                  "severity": "critical", "instance": f"i-{n}"},
                       "annotations": {"summary": f"alert {n} on {svc}"}, "startsAt": now,
                       "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph"})
    return {"version": "4", "groupKey": f"{{}}:{{batch=\"{batch}\"}}", "status": "firing", "receiver": "drbot",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
            "truncatedAlerts": 0, "alerts": alerts}


# -- the clients: a process of their own -------------------------------------------------------

def _clients(url: str, payloads: int, size: int, clients: int, out) -> None:
    import httpx  # the child's own import: nothing of it is loaded in the server's process

    bodies = [json.dumps(payload(b, size)).encode() for b in range(payloads)]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    async def main() -> dict:
        todo: asyncio.Queue = asyncio.Queue()
        for body in bodies:
            todo.put_nowait(body)
        codes: Counter = Counter()
        latencies: list[float] = []
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(timeout=120, limits=limits) as http:
            async def client() -> None:
                while not todo.empty():
                    body = todo.get_nowait()
                    t = time.monotonic()
                    for attempt in range(3):  # as Alertmanager does: a connection reset is sent again
                        try:
                            r = await http.post(url, content=body, headers=headers)
                            break
                        except httpx.TransportError:
                            codes["retried"] += 1
                    latencies.append(time.monotonic() - t)
                    codes[r.status_code] += 1
            t0 = time.monotonic()
            await asyncio.gather(*(client() for _ in range(clients)))
            return {"t0": t0, "t1": time.monotonic(), "codes": dict(codes),
                    "median_ms": statistics.median(latencies) * 1000,
                    "p99_ms": statistics.quantiles(latencies, n=100)[98] * 1000}

    out.put(asyncio.run(main()))


def load(url: str, total: int, size: int, clients: int) -> dict:
    """POST ``total`` alerts in payloads of ``size`` from ``clients`` concurrent clients."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=_clients, args=(url, total // size, size, clients, out), daemon=True)
    child.start()
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                return out.get(timeout=1)
            except queue.Empty:
                if not child.is_alive():
                    raise RuntimeError(f"the load clients exited ({child.exitcode}) without a result") from None
        raise RuntimeError("the load clients did not finish in 300 s")
    finally:
        child.join(10)


# -- the limit: a bare endpoint on the same stack ----------------------------------------------

@contextmanager
def serving(app) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def bare(db_url: str, total: int, size: int, clients: int) -> dict:
    """Parse, and one INSERT per alert in one transaction per payload: nothing else."""
    engine = make_engine(db_url)
    table = Table("bench_bare_alert", MetaData(), Column("id", Integer, primary_key=True),
                  Column("fingerprint", String), Column("status", String), Column("summary", Text),
                  Column("labels", Text), Column("received_at", DateTime(timezone=True)))
    table.metadata.create_all(engine)

    def store(rows: list[dict]) -> None:
        with engine.begin() as conn:
            conn.execute(insert(table), rows)

    async def endpoint(request: Request) -> JSONResponse:
        data = json.loads(await request.body())
        now = datetime.now(timezone.utc)
        await run_in_threadpool(store, [{"fingerprint": a["fingerprint"], "status": a["status"],
                                         "summary": a["annotations"]["summary"], "labels": json.dumps(a["labels"]),
                                         "received_at": now} for a in data["alerts"]])
        return JSONResponse({"ok": True})

    with serving(Starlette(routes=[Route("/bare", endpoint, methods=["POST"])])) as url:
        cpu = time.process_time()
        r = load(f"{url}/bare", total, size, clients)
        cpu = time.process_time() - cpu
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(table)).scalar_one()
    engine.dispose()
    return {"per_second": total / (r["t1"] - r["t0"]), "stored": stored, "cpu_ms_per_1000": cpu / total * 1e6, **r}


# -- drbot ------------------------------------------------------------------------------------

def rss_mb() -> float:
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's live threads, by kind (Linux: /proc/self/task)."""
    kinds = {"alert-drain": "drain", "drbot-outbox": "outbox", "AnyIO worker thread": "http workers"}
    out: dict[str, float] = Counter()
    tick = os.sysconf("SC_CLK_TCK")
    for t in threading.enumerate():
        try:
            with open(f"/proc/self/task/{t.native_id}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        out[kinds.get(t.name, "http loop" if t.name.endswith("(run)") else "other")] += \
            (int(fields[11]) + int(fields[12])) / tick
    return out


def rates(batches: list[tuple[float, int, float]], total: int, n: int = 1000) -> tuple[float, float]:
    """Alerts per second of processing (the drain's busy time, not its waits for arrivals)
    of the batches holding the first and the last ``n`` alerts, from (end, alerts, seconds)."""
    def rate(chosen: list[tuple[float, int, float]]) -> float:
        return sum(c for _, c, _ in chosen) / max(sum(secs for _, _, secs in chosen), 1e-9)

    first, done = [], 0
    for b in batches:
        first.append(b)
        done += b[1]
        if done >= n:
            break
    last, done = [], 0
    for b in reversed(batches):
        last.insert(0, b)
        done += b[1]
        if done >= n:
            break
    return rate(first), rate(last)


def drbot(db_url: str, total: int, size: int, clients: int) -> dict:
    services = build_services(parse_config(config_text(), "storm.yaml", {}), db_url=db_url)
    batches: list[tuple[float, int, float]] = []
    services.inbox.listeners.append(lambda n, secs: batches.append((time.monotonic(), n, secs)))
    with FakeSlack() as fake, running_app(services, fake) as app:
        gc.collect()
        idle = rss_mb()
        cpu, threads = time.process_time(), thread_cpu()
        r = load(f"{app.url}/alerts/alertmanager", total, size, clients)
        deadline = time.monotonic() + 120
        while sum(n for _, n, _ in batches) < total and time.monotonic() < deadline:
            time.sleep(0.01)
        done = batches[-1][0] if batches else time.monotonic()
        cpu = time.process_time() - cpu
        threads = {k: (v - threads.get(k, 0.0)) / total * 1e6 for k, v in thread_cpu().items()}
        services.inbox.stop()
        with session_scope(services.engine) as s:
            stored = s.exec(select(func.count()).select_from(Alert)).one()
            incidents = s.exec(select(func.count()).select_from(Incident)).one()
            events = s.exec(select(func.count()).select_from(TimelineEvent)).one()
            left = s.exec(select(func.count()).select_from(AlertInbox)).one()
        slack = Counter(c.method for c in fake.calls())
        gc.collect()
        after = rss_mb()
    services.engine.dispose()
    first, last = rates(batches, total)
    return {"accepted_per_second": total / (r["t1"] - r["t0"]), "processed_per_second": total / (done - r["t0"]),
            "first_1000": first, "last_1000": last, "stored": stored, "incidents": incidents,
            "timeline_events": events, "inbox_left": left, "batches": len(batches), "rss_idle_mb": idle,
            "rss_after_mb": after, "cpu_ms_per_1000": cpu / total * 1e6, "cpu_by_thread": threads, "slack_calls": dict(slack), **r}


def run(tmp: str, total: int = 20_000, size: int = 25, clients: int = 50) -> dict:
    """Both databases; PostgreSQL is skipped (said so) when it is not reachable."""
    out = {}
    for name in ("sqlite", "postgresql"):
        if name == "sqlite":
            out[name] = _side_by_side(f"sqlite:///{tmp}/storm.db", f"sqlite:///{tmp}/bare.db", total, size, clients)
            continue
        error = postgres_error(PG_URL)
        if error:
            out[name] = {"skipped": error}
            continue
        with temporary_schema(PG_URL) as url, temporary_schema(PG_URL) as bare_url:
            out[name] = _side_by_side(url, bare_url, total, size, clients)
    return out


def _side_by_side(db_url: str, bare_url: str, total: int, size: int, clients: int) -> dict:
    limit = bare(bare_url, total, size, clients)
    mine = drbot(db_url, total, size, clients)
    return {"drbot": mine, "bare": limit, "total": total, "size": size, "clients": clients,
            "accepted_ratio": mine["accepted_per_second"] / limit["per_second"],
            "processed_ratio": mine["processed_per_second"] / limit["per_second"]}


def lines(result: dict) -> list[str]:
    """What ``make bench`` prints: per database, drbot and the bare endpoint side by side."""
    out = []
    for name, r in result.items():
        if "skipped" in r:
            out.append(f"storm ({name}): skipped, {r['skipped']}")
            continue
        d, b = r["drbot"], r["bare"]
        split = ", ".join(f"{k} {v:.0f}" for k, v in sorted(d["cpu_by_thread"].items()))
        out.append(
            f"storm ({name}): {r['total']:,} Alertmanager alerts, {r['size']} per payload, {r['clients']} concurrent "
            f"clients: accepted {d['accepted_per_second']:,.0f}/s (HTTP {d['codes']}), fully processed "
            f"{d['processed_per_second']:,.0f}/s (targets >= 2,000/s); bare endpoint, same stack, same run: "
            f"{b['per_second']:,.0f}/s (HTTP {b['codes']}); ratios {r['accepted_ratio']:.2f} accepted, "
            f"{r['processed_ratio']:.2f} processed")
        out.append(
            f"storm ({name}): request median {d['median_ms']:.0f} ms, p99 {d['p99_ms']:.0f} ms (bare {b['median_ms']:.0f} "
            f"ms, {b['p99_ms']:.0f} ms); server CPU per 1,000 alerts {d['cpu_ms_per_1000']:.0f} ms (bare "
            f"{b['cpu_ms_per_1000']:.0f} ms; drbot's by thread: {split}); processing rate of the first 1,000 alerts {d['first_1000']:,.0f}/s, "
            f"of the last 1,000 {d['last_1000']:,.0f}/s ({d['batches']} batches)")
        out.append(
            f"storm ({name}): stored {d['stored']:,} of {r['total']:,} (none lost: {d['stored'] == r['total']}), "
            f"{d['incidents']} incidents, {d['timeline_events']} timeline events, inbox left {d['inbox_left']}; "
            f"RSS idle {d['rss_idle_mb']:.0f} MB, after {d['rss_after_mb']:.0f} MB "
            f"({d['rss_after_mb'] / d['rss_idle_mb']:.2f}x, target <= 1.5x); Slack calls {d['slack_calls']}")
    return out
