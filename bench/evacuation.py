"""A region evacuation of 30 sandbox services in 4 waves over real HTTP, on SQLite and
PostgreSQL (issue 16): each service's runbook is two steps of 200 ms (a sandbox traffic
shift that takes 200 ms, then a wait of 200 ms), with ``parallelism`` enough for a whole
wave. Measured: from the evacuation's start (its claim after the approving click) to its
end, against the critical path measured in the same run, the sum over waves of the
slowest service's run (claim to end, pre-flight included). Target: at most 1.2x. What is
left between them is each wave's hand-over: the wave's ends committed (each one statement on
PostgreSQL, ``bot.run_records.finish``; they share the interpreter with each other and with
the board's updates), the last one's check that the wave is over (one query), the
coordinator's decision (one thread per evacuation decides: ``bot.evacuation_gate``), the
next wave's children launched and claimed.
"""
from __future__ import annotations

import os
import time

from sqlmodel import col, select

from bot.actor import Actor
from bot.config import parse_config
from bot.store import read_scope
from bot.store.evacuation_tables import Evacuation, EvacuationMember
from bot.store.models import ChangeRequest, RequestState, Run, aware
from bot.wiring import build_services
from commands.router import dispatch
from tests.app_server import running_app
from tests.fakes.slack_api import FakeSlack
from tests.postgres import DEFAULT_URL as PG_URL, postgres_error, temporary_schema

WAVES = (8, 8, 7, 7)
STEP_S = 0.2


def _name(wave: int, i: int) -> str:
    return f"w{wave}s{i}"


def config_text() -> str:
    out = [f"""regions: [us-east-1, us-west-2]
sources:
  sim: {{kind: sandbox, timeout: 1.0, action_delay: {STEP_S:g}}}
approvals: {{required_approvals: 1, approvers: [UBOB]}}
slack: {{messages_per_second: 10, burst: 20}}
evacuation: {{parallelism: {max(WAVES)}, on_failure: stop}}
services:
"""]
    for wave, count in enumerate(WAVES, start=1):
        for i in range(count):
            deps = f"[{_name(wave - 1, i % WAVES[wave - 2])}]" if wave > 1 else "[]"
            out.append(f"""  - name: {_name(wave, i)}
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {{source: sim}}
    health: {{us-east-1: sim, us-west-2: sim}}
    traffic: {{source: sim}}
    depends_on: {deps}
    runbooks:
      failover:
        - {{name: shift traffic, action: traffic.shift}}
        - {{name: settle, action: wait, wait: {{duration: {int(STEP_S * 1000)}ms}}}}
""")
    return "".join(out)


def _poll(what: str, read, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = read()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(what)


def once(db_url: str) -> dict:
    load = os.getloadavg()[0]
    services = build_services(parse_config(config_text(), "bench-evacuation.yaml", {}), db_url=db_url)
    with FakeSlack() as fake, running_app(services, fake) as app:
        reply = dispatch(services, _alice(), "evacuate us-east-1 bench: the region is down")
        assert reply.template == "evacuation_created", reply
        rid = reply.context["req"].id

        def posted():
            with read_scope(services.engine) as s:
                req = s.get(ChangeRequest, rid)
                return req if req.message_ts else None
        req = _poll("the evacuation posted", posted)
        r = app.sender.block_action("cr_approve", str(rid), user_id="UBOB", channel_id=req.channel,
                                    message=fake.message(req.channel, req.message_ts))
        assert r.status_code == 200, r.text

        def ended():
            with read_scope(services.engine) as s:
                req = s.get(ChangeRequest, rid)
                return req if req.state not in (RequestState.PENDING, RequestState.APPROVED,
                                                RequestState.RUNNING) else None
        req = _poll("the evacuation ended", ended)
        assert req.state is RequestState.SUCCEEDED, req.state_reason
        with read_scope(services.engine) as s:
            ev = s.get(Evacuation, rid)
            wave_of = {m.child_id: m.wave for m in s.exec(select(EvacuationMember)
                                                          .where(EvacuationMember.evacuation_id == rid))}
            runs = list(s.exec(select(Run).where(col(Run.request_id).in_(list(wave_of)))))
    services.engine.dispose()
    slowest: dict[int, float] = {}
    first: dict[int, object] = {}
    last: dict[int, object] = {}
    for run in runs:
        wave = wave_of[run.request_id]
        took = (aware(run.ended_at) - aware(run.started_at)).total_seconds()
        slowest[wave] = max(slowest.get(wave, 0.0), took)
        first[wave] = min(first.get(wave, aware(run.started_at)), aware(run.started_at))
        last[wave] = max(last.get(wave, aware(run.ended_at)), aware(run.ended_at))
    total = (aware(ev.ended_at) - aware(ev.started_at)).total_seconds()
    critical = sum(slowest.values())
    marks = [aware(ev.started_at)] + [x for w in sorted(first) for x in (first[w], last[w])] + [aware(ev.ended_at)]
    gaps = [(marks[i + 1] - marks[i]).total_seconds() * 1000 for i in range(0, len(marks), 2)]
    return {"services": len(runs), "waves": len(slowest), "total_s": total, "critical_s": critical,
            "nominal_s": len(WAVES) * 2 * STEP_S, "ratio": total / critical, "gaps_ms": gaps,
            "load": (load, os.getloadavg()[0])}


def _alice() -> Actor:
    return Actor("UALICE", "alice", "slack", channel="C_EVAC")


def run(tmp: str) -> dict[str, dict]:
    out = {"sqlite": once(f"sqlite:///{tmp}/bench-evacuation.db")}
    error = postgres_error(PG_URL)
    if error is not None:
        out["postgresql"] = {"skipped": error}
    else:
        with temporary_schema(PG_URL) as url:
            out["postgresql"] = once(url)
    return out


def lines(results: dict[str, dict]) -> list[str]:
    out = []
    for db, r in results.items():
        if "skipped" in r:
            out.append(f"evacuation ({db}): skipped: {r['skipped']}")
            continue
        out.append(f"evacuation ({db}): {r['services']} sandbox services in {r['waves']} waves, 2 steps of "
                   f"{STEP_S * 1000:.0f} ms each: start to end {r['total_s']:.2f} s; critical path (sum of the "
                   f"slowest service per wave, same run) {r['critical_s']:.2f} s (nominal {r['nominal_s']:.1f} s); "
                   f"ratio {r['ratio']:.2f}x (target <= 1.2x); between the start, the waves and the end (coordinator, "
                   f"claims): {', '.join(f'{g:.0f}' for g in r['gaps_ms'])} ms; load average {r['load'][0]:.1f} -> "
                   f"{r['load'][1]:.1f}")
    return out
