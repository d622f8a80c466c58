"""Approval to execution over real HTTP: time from sending the deciding (signed) Approve
click to the first runbook step starting, and the engine's own overhead per step
(steps whose actions are instant sandbox calls, so what remains is drbot: persisting
each step before and after, verify reads, progress updates at the fake Slack)."""
from __future__ import annotations

import statistics
import time
from datetime import datetime, timezone

from sqlmodel import select

from bot.actor import Actor
from bot.config import parse_config
from bot.store import session_scope
from bot.store.models import ChangeRequest, RequestState, Run, RunStep
from bot.wiring import build_services
from commands.router import dispatch
from tests.app_server import running_app
from tests.fakes.slack_api import FakeSlack

STEPS = 10
CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim: {kind: sandbox, timeout: 1.0}
services:
  - name: orders
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
    traffic: {source: sim}
    database: {source: sim}
    runbooks:
      failover:
        - {name: switch writer, action: database.switchover, verify: {writer_in: target, interval: 50ms}}
        - {name: shift traffic, action: traffic.shift, verify: {traffic_in: target, interval: 50ms}}
%s
approvals:
  required_approvals: 1
  approvers: [UBOB]
""" % "\n".join(f"        - {{name: check {i}, action: check, verify: {{healthy: target, interval: 50ms}}}}"
                for i in range(STEPS - 2))


def _wait_done(services, request_id: int, timeout: float = 30.0) -> ChangeRequest:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(services.engine) as s:
            req = s.get(ChangeRequest, request_id)
            if req.state in (RequestState.SUCCEEDED, RequestState.FAILED):
                return req
        time.sleep(0.01)
    raise TimeoutError(f"request {request_id} did not finish")


def posted(services, timeout: float = 10.0) -> ChangeRequest:
    """The newest request, once the outbox has posted its message (the click needs it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(services.engine) as s:
            req = s.exec(select(ChangeRequest).order_by(ChangeRequest.id.desc())).first()
        if req.message_ts:
            return req
        time.sleep(0.01)
    raise TimeoutError(f"the message of request {req.id} was not posted")


def run(tmp: str, rounds: int = 20) -> dict:
    services = build_services(parse_config(CONFIG, "bench.yaml", {}), db_url=f"sqlite:///{tmp}/approval.db")
    to_first, per_step = [], []
    alice = Actor("UALICE", "alice", "slack", channel="C_BENCH")
    with FakeSlack() as fake, running_app(services, fake) as app:
        for i in range(rounds):
            target = "failover" if i % 2 == 0 else "failback"
            dispatch(services, alice, f"{target} orders bench round {i}")
            req = posted(services)
            sent = datetime.now(timezone.utc)
            r = app.sender.block_action("cr_approve", str(req.id), user_id="UBOB", channel_id="C_BENCH",
                                        message=fake.message("C_BENCH", req.message_ts))
            assert r.status_code == 200
            done = _wait_done(services, req.id)
            assert done.state is RequestState.SUCCEEDED, done.state_reason
            with session_scope(services.engine) as s:
                run_ = s.exec(select(Run).where(Run.request_id == req.id)).one()
                steps = s.exec(select(RunStep).where(RunStep.run_id == run_.id).order_by(RunStep.position)).all()
            to_first.append((steps[0].started_at - sent).total_seconds())
            # from the end of step 1, as before the outbox redesign (comparable numbers)
            per_step.append((steps[-1].ended_at - steps[0].ended_at).total_seconds() / (len(steps) - 1))
    services.engine.dispose()
    q = statistics.quantiles
    return {"rounds": rounds, "steps": STEPS,
            "click_to_first_step_p50_ms": q(to_first, n=100)[49] * 1000,
            "click_to_first_step_max_ms": max(to_first) * 1000,
            "per_step_p50_ms": q(per_step, n=100)[49] * 1000, "per_step_max_ms": max(per_step) * 1000}
