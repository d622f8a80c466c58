"""What a run writes: its step rows (the end of one step and the start of the next in one
transaction that reads nothing back), its heartbeat, its audit entries, where the service
runs now, and its end with its measurements. ``bot.engine`` decides what runs when; this
module records it."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func
from sqlmodel import Session, col, select

from bot.audit import SYSTEM, record_in
from bot.drill_proof import drill_values
from bot.evacuation_events import board_in
from bot.measurements import measure
from bot.oplog import op
from bot.plans import Planned
from bot.preflight import Preflight
from bot.request_events import message_in, progress_in, queue_report
from bot.services import Services
from bot.store import read_scope, session_scope
from bot.store.batch import Write, Writes, apply, commit
from bot.store.models import ChangeRequest, RequestKind, RequestState, Run, RunStep, ServiceState, StepState, aware
from bot.store.transitions import move_in

_STEPS, _RUNS = RunStep.__table__, Run.__table__
_STATES = ServiceState.__table__
_BEAT = _RUNS.update().where(_RUNS.c.id == bindparam("run_id"))


def _by_id(table, bind):
    return table.c.id == bind("id")

HEARTBEAT_EVERY = 20.0
"""Seconds between writes of a run's heartbeat (at a step boundary, or by the heartbeat
thread during a long step); bot.followups takes a run silent for 2 minutes for dead."""


@dataclass
class Ended:
    """A step that ended and is not yet persisted (it is, with the next transaction)."""

    step_id: int
    planned: Planned
    state: StepState
    error: str
    output: dict
    started_at: datetime
    ended_at: datetime


@dataclass
class RunState:
    """What a run's worker keeps between its transactions, so a step boundary reads nothing."""

    req: ChangeRequest
    run: Run
    planned: list[Planned]
    first: int
    reason: str
    progress: ChangeRequest
    """The request whose thread shows the progress: the original one for a resume."""
    attempts: dict[tuple[int, bool], int]
    """(position, rollback) -> attempts recorded so far (a resume continues the count)."""
    beat_at: datetime
    """The last heartbeat written, by the services' clock (the one bot.followups reads it by)."""
    board: ChangeRequest | None = None
    """The evacuation whose live board shows this run (a service it moves), else None: its
    step boundaries and its end update the board too."""


def attempts_of(s: Session, run: Run) -> tuple[dict[tuple[int, bool], int], int]:
    """The attempts recorded per (position, rollback), and the first position to run: a
    resume continues after the last step that succeeded, counting attempts on."""
    rows = s.execute(select(RunStep.position, RunStep.rollback, RunStep.state, func.count())
                     .where(RunStep.run_id == run.id)
                     .group_by(RunStep.position, RunStep.rollback, RunStep.state)).all()
    attempts: dict[tuple[int, bool], int] = {}
    for position, rollback, _state, n in rows:
        attempts[(position, bool(rollback))] = attempts.get((position, bool(rollback)), 0) + n
    done = [position for position, rollback, state, _n in rows if not rollback and state is StepState.SUCCEEDED]
    return attempts, max(done, default=-1) + 1


def write_heartbeat(sv: Services, run_id: int, now: datetime) -> None:
    """The run is alive (the heartbeat thread, during a long step)."""
    with session_scope(sv.engine) as s:
        s.execute(_BEAT, {"run_id": run_id, "heartbeat_at": now})


def step_started(sv: Services, r: RunState, p: Planned, ended: Ended | None) -> tuple[int, datetime, bool]:
    """One transaction that reads nothing back (on PostgreSQL one statement: bot.store.batch):
    the previous step's end, this step's start, the heartbeat when due, and the progress
    update queued (folded into an undelivered one). Also: whether the progress was queued
    anew (False: folded into one the outbox has yet to deliver, so it needs no wake-up)."""
    key = (p.position, p.rollback)
    attempt = r.attempts.get(key, 0) + 1
    now = sv.clock()
    writes = Writes()
    if ended is not None:
        _end_in(writes, sv, r, ended)
    beat = (now - r.beat_at).total_seconds() >= HEARTBEAT_EVERY
    if beat:  # fast steps do not rewrite it at every boundary
        writes.add(Write(_RUNS, {"heartbeat_at": now}, where=_by_id, params={"id": r.run.id}))
    progress_in(sv, writes, r.progress)
    if r.board is not None:
        board_in(sv, writes, r.board)
    step_id, queued = commit(sv.engine, writes, Write(_STEPS, {
        "run_id": r.run.id, "position": p.position, "attempt": attempt, "name": p.step.name, "action": p.step.action,
        "rollback": p.rollback, "state": StepState.RUNNING, "started_at": now, "output": "", "error": ""}), "id")
    if ended is not None:
        _ended(sv, r, ended)
    r.attempts[key] = attempt
    if beat:
        r.beat_at = now
    return step_id, now, queued > 0


def persist_end(s: Session, sv: Services, r: RunState, ended: Ended) -> None:
    """The end of a step in the caller's transaction (a run's last step, a hand-over)."""
    writes = Writes()
    _end_in(writes, sv, r, ended)
    writes.run(s)
    _ended(sv, r, ended)


def _end_in(writes: Writes, sv: Services, r: RunState, ended: Ended, region: bool = True) -> None:
    """The writes of a step's end; ``region``: a traffic shift's end records where the
    service runs now (False: the run's end records it)."""
    req, p = r.req, ended.planned
    writes.add(Write(_STEPS, {"state": ended.state, "ended_at": ended.ended_at, "error": ended.error,
                              "output": _output_of(ended)}, where=_by_id, params={"id": ended.step_id}))
    if region and ended.state is StepState.SUCCEEDED and p.step.action == "traffic.shift" \
            and not ended.output.get("dry_run"):
        writes.add(region_write(sv, req.service, p.region, req.id))
    record_in(writes, SYSTEM, f"step.{ended.state.value}", target=req.service, request_id=req.id,
              service=req.service, text=p.step.name,
              detail={"run": r.run.id, "position": p.position, "error": ended.error,
                      "seconds": (ended.ended_at - ended.started_at).total_seconds()})


def _ended(sv: Services, r: RunState, ended: Ended) -> None:
    """What follows a step's end outside the database: its metric and log line."""
    req, p = r.req, ended.planned
    seconds = (ended.ended_at - ended.started_at).total_seconds()
    sv.metrics.steps.labels(p.step.action, ended.state.value).observe(seconds)
    op("run.step", request_id=req.id, run_id=r.run.id, service=req.service, step=p.position + 1,
       action=p.step.action, outcome=ended.state.value, seconds=round(seconds, 3), error=ended.error or None)


def finish(sv: Services, r: RunState, ended: Ended | None, state: RequestState, why: str,
           diverged: bool = False, succeeded: bool = False, stale: Preflight | None = None) -> None:
    """The run's end: the last step, measurements, the request's and run's final state, the
    region record, the audit entry, the messages queued. What it measures is read first (the
    run's steps, with the last as it ends); the writes, which read nothing back, are one
    transaction: on PostgreSQL one statement (``bot.store.batch``), so that the services of
    an evacuation's wave ending together do not queue behind each other's round trips."""
    req, run = r.req, r.run
    now = sv.clock()
    svc = sv.config.service(req.service)
    values: dict = {"ended_at": now, "error": why}
    kept = None
    with read_scope(sv.engine) as s:
        rows = _steps_at_end(s, run.id, ended)
        if succeeded:  # RTO from detection, decision and run start; RPO with its method
            values |= measure(s, req, run, now, svc, rows, diverged=diverged)
        else:
            values["passed"] = False
        if run.kind is RequestKind.DRILL:  # passes only if it moved something and read it back
            proof, kept = drill_values(sv, s, run.request_id, rows, values.get("passed"))
            values |= proof
        parent = s.get(ChangeRequest, req.parent_id) if req.parent_id and r.board is None else None
    writes = Writes()
    moved = succeeded and req.kind in (RequestKind.FAILOVER, RequestKind.FAILBACK)
    if ended is not None:  # a moved service's region is written once, below (a row once per statement)
        _end_in(writes, sv, r, ended, region=not moved)
    running, closed = RequestState.RUNNING, {"closed_at": now, "state_reason": why}
    move_in(writes, Run, run.id, running, state, **values)
    move_in(writes, ChangeRequest, req.id, running, state, **closed,
            **({"preflight": stale.to_json()} if stale is not None else {}))
    if req.kind is RequestKind.RESUME:
        move_in(writes, ChangeRequest, req.parent_id, running, state, **closed)
    if req.kind is RequestKind.ROLLBACK and succeeded:
        move_in(writes, ChangeRequest, req.parent_id, RequestState.FAILED, RequestState.ROLLED_BACK, closed_at=now,
                state_reason=f"rolled back by #{req.id}")
        record_in(writes, SYSTEM, "request.rolled_back", target=req.service, request_id=req.parent_id,
                  service=req.service, detail={"rollback": req.id})
    if moved:
        writes.add(region_write(sv, req.service, req.to_region, req.id))
    record_in(writes, SYSTEM, f"run.{state.value}", target=req.service, request_id=req.id, service=req.service,
              text=why, detail={"run": run.id, **{k: v for k, v in values.items() if k != "ended_at"}})
    message_in(sv, writes, req)  # the event names the request; its delivery reads the state then
    progress_in(sv, writes, r.progress)
    if r.board is not None:  # a service of an evacuation: its board (the coordinator updates its message)
        board_in(sv, writes, r.board)  # one row other runs' ends fold into too: never two (a lock cycle)
    elif parent is not None:
        message_in(sv, writes, parent)
    if kept is not None:  # a restore test's summary, kept in its step's row
        writes.add(Write(_STEPS, {"output": kept[1]}, where=_by_id, params={"id": kept[0]}))
    if run.kind is RequestKind.DRILL:
        # its report is queued once under its key, which a batch cannot check; and the summary may
        # rewrite the row the last step's end writes (one statement may not change a row twice)
        with session_scope(sv.engine) as s:
            writes.run(s)
            queue_report(sv, s, req)
    else:
        apply(sv.engine, writes)
    if ended is not None:
        _ended(sv, r, ended)
    seconds = (now - aware(run.started_at)).total_seconds()
    sv.metrics.run_finished(req.kind.value, req.service, state.value, seconds, values)
    op("run.finished", request_id=req.id, run_id=run.id, kind=req.kind.value, service=req.service,
       outcome=state.value, reason=why or None, seconds=round(seconds, 3),
       rto_s=values.get("measured_rto_s"), rpo_s=values.get("measured_rpo_s"))


def _steps_at_end(s: Session, run_id: int, ended: Ended | None) -> list[RunStep]:
    """The run's steps as they are once ``ended`` (not yet written) is: read, with the last
    one's end applied to a copy."""
    rows = list(s.exec(select(RunStep).where(RunStep.run_id == run_id).order_by(col(RunStep.id))))
    if ended is None:
        return rows
    end = {"state": ended.state, "ended_at": ended.ended_at, "error": ended.error, "output": _output_of(ended)}
    return [RunStep(**(row.model_dump() | end)) if row.id == ended.step_id else row for row in rows]


def _output_of(ended: Ended) -> str:
    return json.dumps(ended.output, default=str)


def region_write(sv: Services, service: str, active: str, request_id: int) -> Write:
    """Where ``service`` runs now: ``active`` (and the other region as standby)."""
    svc = sv.config.service(service)
    return Write(_STATES, {"service": service, "active_region": active,
                           "standby_region": svc.standby if active == svc.active else svc.active,
                           "updated_at": sv.clock(), "changed_by_request": request_id}, upsert_on=("service",))
