"""Approval to execution over real HTTP, on SQLite and PostgreSQL, side by side with the
limit in the same run.

- Click to first step: 10 services' failovers approved in a row (signed Approve clicks, each
  sent once the previous run has ended, as in issue 11), time from sending each click to its
  run's first step starting (p50/p90/max). The limit: the click's own HTTP acknowledgement
  by the same app in the same run (p50/p90).
- Engine time per step, from the same 10-step runs: per step wall time (end of step 1 to end
  of step 10, over 9 steps) minus the step's own work, measured in the same run by a bare
  loop calling the same steps (``bot.steps.execute_step``: the backend action and its
  verify) without the engine. What remains is drbot: each step's start and end persisted,
  its audit entry, the progress update queued, and sharing the process with the outbox
  worker that delivers that progress meanwhile.
"""
from __future__ import annotations

import math
import os
import statistics
import time
from datetime import datetime, timezone

from sqlmodel import col, select

from bot.actor import Actor
from bot.config import parse_config
from bot.plans import steps_for
from bot.steps import execute_step
from bot.store import read_scope
from bot.store.models import ChangeRequest, RequestKind, RequestState, Run, RunStep
from bot.store.queries import current_regions
from bot.wiring import build_services
from commands.router import dispatch
from tests.app_server import running_app
from tests.fakes.slack_api import FakeSlack
from tests.postgres import DEFAULT_URL as PG_URL, postgres_error, temporary_schema

STEPS = 10
SERVICES = 10


def _service(i: int) -> str:
    checks = "\n".join(f"        - {{name: check {n}, action: check, verify: {{healthy: target, interval: 50ms}}}}"
                       for n in range(STEPS - 2))
    return f"""
  - name: orders{i}
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {{source: sim}}
    health: {{us-east-1: sim, us-west-2: sim}}
    traffic: {{source: sim}}
    database: {{source: sim}}
    runbooks:
      failover:
        - {{name: switch writer, action: database.switchover, verify: {{writer_in: target, interval: 50ms}}}}
        - {{name: shift traffic, action: traffic.shift, verify: {{traffic_in: target, interval: 50ms}}}}
{checks}"""


CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim: {kind: sandbox, timeout: 1.0}
services:%s
approvals:
  required_approvals: 1
  approvers: [UBOB]
""" % "".join(_service(i) for i in range(SERVICES))


def _alice(channel: str) -> Actor:
    """The requester, in one channel per service: Slack paces posts per channel (about one a
    second), so ten requests in one channel would measure the pacing."""
    return Actor("UALICE", "alice", "slack", channel=channel)


def _poll(what: str, read, timeout: float = 30.0):
    """``read()`` (in a read-only transaction: the polling takes no write lock) until truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = read()
        if value:
            return value
        time.sleep(0.01)
    raise TimeoutError(what)


def _request(services, request_id: int) -> ChangeRequest:
    with read_scope(services.engine) as s:
        return s.get(ChangeRequest, request_id)


def posted(services, request_id: int | None = None, timeout: float = 10.0) -> ChangeRequest:
    """The request (default: the newest), once the outbox has posted its message (the click needs it)."""
    def read():
        with read_scope(services.engine) as s:
            req = s.get(ChangeRequest, request_id) if request_id is not None else \
                s.exec(select(ChangeRequest).order_by(col(ChangeRequest.id).desc())).first()
        return req if req is not None and req.message_ts else None
    return _poll(f"the message of request {request_id or 'newest'} posted", read, timeout)


def finished(services, request_id: int, timeout: float = 30.0) -> ChangeRequest:
    def read():
        req = _request(services, request_id)
        return req if req.state in (RequestState.SUCCEEDED, RequestState.FAILED) else None
    req = _poll(f"request {request_id} finished", read, timeout)
    assert req.state is RequestState.SUCCEEDED, req.state_reason
    return req


def _steps(services, request_id: int) -> list[RunStep]:
    with read_scope(services.engine) as s:
        run = s.exec(select(Run).where(Run.request_id == request_id)).one()
        return list(s.exec(select(RunStep).where(RunStep.run_id == run.id).order_by(col(RunStep.position))))


def _open(services, service: str, kind: str, why: str) -> ChangeRequest:
    dispatch(services, _alice(f"C_{service.upper()}"), f"{kind} {service} {why}")
    with read_scope(services.engine) as s:
        newest = s.exec(select(ChangeRequest).order_by(col(ChangeRequest.id).desc())).first()
    assert newest.service == service and newest.state is RequestState.PENDING, newest.state_reason
    return posted(services, newest.id)


def _click(app, fake, req: ChangeRequest) -> tuple[datetime, float]:
    sent, t0 = datetime.now(timezone.utc), time.perf_counter()
    r = app.sender.block_action("cr_approve", str(req.id), user_id="UBOB", channel_id=req.channel,
                                message=fake.message(req.channel, req.message_ts))
    assert r.status_code == 200, r.text
    return sent, time.perf_counter() - t0


def in_a_row(services, app, fake) -> dict:
    """Each service's failover requested and approved, one after the other: each click is
    sent once the previous run has ended (as an on-call pair works through a region's services)."""
    to_first, acks, per_step = [], [], []
    for i in range(SERVICES):
        req = _open(services, f"orders{i}", "failover", "bench: a region is down")
        sent, ack = _click(app, fake, req)
        finished(services, req.id)
        steps = _steps(services, req.id)
        to_first.append((steps[0].started_at - sent).total_seconds())
        acks.append(ack)
        # from the end of step 1 to the end of step 10: 9 steps, each with its boundary
        per_step.append((steps[-1].ended_at - steps[0].ended_at).total_seconds() / (len(steps) - 1))
    return {"to_first": to_first, "acks": acks, "per_step": per_step}


def own_work(services, rounds: int) -> list[float]:
    """The same steps without the engine: per step time of steps 2..10, like ``sequential``."""
    per_step = []
    svc = services.config.service("orders0")
    for i in range(rounds):
        with read_scope(services.engine) as s:
            active, standby = current_regions(s).get(svc.name, (svc.active, svc.standby))
        kind = RequestKind.FAILBACK if active != svc.active else RequestKind.FAILOVER
        req = ChangeRequest(id=-1 - i, kind=kind, service=svc.name, from_region=active, to_region=standby,
                            reason="bench: the steps alone", requester="UALICE")
        planned = steps_for(services, None, req)
        took = []
        for p in planned:
            t0 = time.perf_counter()
            execute_step(services, req, p.step, p.region, reason=req.reason)
            took.append(time.perf_counter() - t0)
        per_step.append(sum(took[1:]) / (len(took) - 1))
    return per_step


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile: of 10 values, p90 is the 9th smallest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _measure(db_url: str, rounds: int) -> dict:
    services = build_services(parse_config(CONFIG, "bench.yaml", {}), db_url=db_url)
    load = os.getloadavg()[0]
    try:
        with FakeSlack() as fake, running_app(services, fake) as app:
            row = in_a_row(services, app, fake)
            own = own_work(services, rounds)
    finally:
        services.runner.executor.shutdown(wait=True)
        services.engine.dispose()
    ms = 1000.0
    first, acks, per_step = row["to_first"], row["acks"], row["per_step"]
    wall, work = statistics.median(per_step) * ms, statistics.median(own) * ms
    return {"approvals": len(first), "first_p50_ms": pct(first, 50) * ms, "first_p90_ms": pct(first, 90) * ms,
            "first_max_ms": max(first) * ms, "ack_p50_ms": pct(acks, 50) * ms, "ack_p90_ms": pct(acks, 90) * ms,
            "first_ratio": pct(first, 90) / pct(acks, 90), "rounds": len(per_step), "steps": STEPS,
            "step_wall_p50_ms": wall, "step_own_p50_ms": work, "engine_per_step_ms": wall - work,
            "step_wall_max_ms": max(per_step) * ms, "load": (load, os.getloadavg()[0])}


def run(tmp: str, rounds: int = 10) -> dict:
    """Both databases; PostgreSQL is skipped (said so) when it is not reachable."""
    out = {"sqlite": _measure(f"sqlite:///{tmp}/approval.db", rounds)}
    error = postgres_error(PG_URL)
    if error:
        out["postgresql"] = {"skipped": error}
    else:
        with temporary_schema(PG_URL) as url:
            out["postgresql"] = _measure(url, rounds)
    return out
