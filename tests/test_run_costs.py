"""What a run costs the database, and what it waits for (issue 11, runs).

Cost tests, not timing tests: transactions and statements are counted with SQLAlchemy
event listeners in the run's own worker thread. A step boundary (the end of one step and
the start of the next) is one write transaction that reads nothing; reads take no write
lock; a run's worker waits only for its steps, so five slow runs never hold up a sixth.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, func, insert
from sqlalchemy.exc import DBAPIError
from sqlmodel import select

from bot.audit import SYSTEM, record
from bot.changes import decide
from bot.config import parse_config
from bot.store import read_scope, session_scope
from bot.store.models import AuditEntry, ChangeRequest, RequestState, RunStep, StepState
from bot.wiring import build_services
from commands.router import dispatch
from tests.helpers import ALICE, BOB, request_row, rows, runs_of, the_request, wait_until

CHECKS = "\n".join("        - {name: check %d, action: check, verify: {healthy: target}}" % i for i in range(6))
COST_CONFIG = f"""
regions: [us-east-1, us-west-2]
sources:
  sim: {{kind: sandbox, timeout: 1.0}}
services:
  - name: short
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    health: {{us-east-1: sim, us-west-2: sim}}
    runbooks:
      failover:
        - {{name: check 0, action: check, verify: {{healthy: target}}}}
        - {{name: check 1, action: check, verify: {{healthy: target}}}}
  - name: long
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    health: {{us-east-1: sim, us-west-2: sim}}
    runbooks:
      failover:
{CHECKS}
approvals:
  required_approvals: 1
  approvers: [UBOB]
"""
"""Two services whose failovers differ only in their number of steps (2 and 6 checks)."""

WRITES = ("INSERT", "UPDATE", "DELETE")


@dataclass
class Txn:
    statements: list[str] = field(default_factory=list)

    @property
    def writes(self) -> bool:
        """A write, or a statement whose CTEs write (PostgreSQL's step boundary: bot.store.batch)."""
        return any(st.startswith(WRITES) or st.startswith("WITH") and any(f" {w} " in st for w in WRITES)
                   for st in self.statements)

    @property
    def work(self) -> int:
        """Statements, leaving out SQLite's per-connection PRAGMA query_only switch."""
        return sum(not st.startswith("PRAGMA") for st in self.statements)

    @property
    def selects(self) -> int:
        return sum(st.startswith("SELECT") for st in self.statements)


class RunThreadTransactions:
    """The transactions of the runner's worker threads (``drbot-run-*``, or the thread that
    runs inline), with their SQL."""

    def __init__(self, engine, thread: str = "drbot-run"):
        self.thread = thread
        self.done: list[Txn] = []
        self._open: dict[int, Txn] = {}
        self._lock = threading.Lock()
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._end)
        event.listen(engine, "rollback", self._end)

    def _mine(self) -> bool:
        return threading.current_thread().name.startswith(self.thread)

    def _statement(self, _conn, _cursor, statement, *_args) -> None:
        """A transaction opens with its first statement (SQLite: the BEGIN of bot.store.db)."""
        if self._mine():
            txn = self._open.setdefault(threading.get_ident(), Txn())
            txn.statements.append(" ".join(statement.split()).upper())

    def _end(self, _conn) -> None:
        txn = self._open.pop(threading.get_ident(), None) if self._mine() else None
        if txn is not None:
            with self._lock:
                self.done.append(txn)

    def take(self) -> list[Txn]:
        with self._lock:
            out, self.done = self.done, []
        return out


def _run(services, service: str) -> ChangeRequest:
    dispatch(services, ALICE, f"failover {service} costs of a step")
    req = the_request(services, service)
    assert decide(services, BOB, req.id, "approve").approved
    return wait_until(f"the failover of {service} to succeed", lambda: _finished(services, req.id), timeout=30)


def _finished(services, request_id: int) -> ChangeRequest | None:
    with read_scope(services.engine) as s:
        req = s.get(ChangeRequest, request_id)
        return req if req.state in (RequestState.SUCCEEDED, RequestState.FAILED) else None


@pytest.fixture
def cost_services(db_url):
    services = build_services(parse_config(COST_CONFIG, "costs.yaml", {}), db_url=db_url)
    yield services
    services.runner.executor.shutdown(wait=True)
    services.engine.dispose()


def test_each_step_boundary_is_one_write_transaction_that_reads_nothing(cost_services):
    sv = cost_services
    seen = RunThreadTransactions(sv.engine)
    assert _run(sv, "short").state is RequestState.SUCCEEDED
    short = seen.take()
    assert _run(sv, "long").state is RequestState.SUCCEEDED
    long = seen.take()

    extra = 6 - 2  # steps
    written = [t for t in long if t.writes]
    assert len(written) - len([t for t in short if t.writes]) == extra  # one transaction per step boundary
    assert len(long) - len(short) == extra  # and nothing else: no heartbeat, progress or audit of its own
    per_boundary = sum(t.work for t in written) - sum(t.work for t in short if t.writes)
    # the previous step's end, its audit entry and timeline event, the next step's row, the
    # progress folded into the pending update (+ BEGIN on SQLite); the heartbeat is written
    # by a boundary only when 20 s have passed since the last one
    assert per_boundary / extra <= 6, written
    if sv.engine.dialect.name == "postgresql":  # one round trip: the writes are CTEs of the step's INSERT
        assert per_boundary == extra, written
    assert sum(t.selects for t in long) == sum(t.selects for t in short)  # a boundary reads nothing back
    # every step persisted once, with its attempt, start and end
    (run,) = runs_of(sv, the_request(sv, "long").id)
    steps = rows(sv, RunStep, RunStep.run_id == run.id)
    assert [(st.position, st.attempt, st.state) for st in steps] == [(i, 1, StepState.SUCCEEDED) for i in range(6)]
    assert all(st.started_at <= st.ended_at for st in steps)
    assert all(a.ended_at <= b.started_at for a, b in zip(steps, steps[1:]))


class SteppingClock:
    """The services' clock: real time, plus ``step`` seconds more at each reading once armed."""

    def __init__(self):
        self.offset = timedelta(0)
        self.step = timedelta(0)

    def __call__(self) -> datetime:
        self.offset += self.step
        return datetime.now(timezone.utc) + self.offset


@pytest.mark.parametrize("seconds_per_reading, beats", [(0, 0), (30, 6)])
def test_a_step_boundary_writes_the_heartbeat_only_when_it_is_due(tmp_path, seconds_per_reading, beats):
    """Fast steps: no heartbeat write at their boundaries. Time passing (the services' clock):
    each boundary 20 s or more after the last heartbeat writes it, in its one transaction."""
    clock = SteppingClock()
    sv = build_services(parse_config(COST_CONFIG, "costs.yaml", {}), db_url=f"sqlite:///{tmp_path}/drbot.db",
                        clock=clock, inline_runs=True)
    try:
        seen = RunThreadTransactions(sv.engine, thread=threading.current_thread().name)
        dispatch(sv, ALICE, "failover long the heartbeat")
        req = the_request(sv, "long")
        clock.step = timedelta(seconds=seconds_per_reading)
        assert decide(sv, BOB, req.id, "approve").approved  # inline: the run ends before it returns
        assert request_row(sv, req.id).state is RequestState.SUCCEEDED
        written = [st for txn in seen.take() for st in txn.statements if st.startswith("UPDATE RUN SET HEARTBEAT_AT")]
        assert len(written) == beats
    finally:
        sv.engine.dispose()


def test_the_runs_reads_take_no_write_lock(tmp_path):
    """On SQLite the pre-flight's and the sweep's reads begin a plain (deferred) transaction."""
    sv = build_services(parse_config(COST_CONFIG, "costs.yaml", {}), db_url=f"sqlite:///{tmp_path}/drbot.db")
    try:
        seen = RunThreadTransactions(sv.engine)
        assert _run(sv, "short").state is RequestState.SUCCEEDED
        txns = seen.take()
        reads = [t for t in txns if not t.writes]
        assert reads, "the pre-flight reads the database"
        assert all(t.statements[0] in ("BEGIN", "PRAGMA QUERY_ONLY=1") for t in reads), reads
        assert all("BEGIN IMMEDIATE" not in t.statements for t in reads)
        assert all("BEGIN IMMEDIATE" in t.statements for t in txns if t.writes)
    finally:
        sv.runner.executor.shutdown(wait=True)
        sv.engine.dispose()


def test_a_writer_commits_while_a_read_scope_is_open(tmp_path, cost_services):
    """Were the reader holding SQLite's write lock, the writer would wait out the 30 s busy timeout."""
    sv = cost_services
    committed = threading.Event()

    def write() -> None:
        with session_scope(sv.engine) as s:
            record(s, SYSTEM, "test.written")
        committed.set()

    with read_scope(sv.engine) as s:
        before = s.exec(select(func.count()).select_from(AuditEntry)).one()
        writer = threading.Thread(target=write)
        writer.start()
        wait_until("the writer to commit while the reader is open", committed.is_set, timeout=10)
        # the reader keeps its snapshot on SQLite; PostgreSQL's read committed sees the new row
        assert s.exec(select(func.count()).select_from(AuditEntry)).one() in (before, before + 1)
    writer.join(timeout=10)
    with read_scope(sv.engine) as s:
        assert s.exec(select(func.count()).select_from(AuditEntry)).one() == before + 1


def test_a_read_scope_refuses_writes_and_leaves_its_connection_writable(cost_services):
    sv = cost_services
    with session_scope(sv.engine) as s:
        record(s, SYSTEM, "test.first")
    with pytest.raises(DBAPIError):  # the database itself refuses: query_only / READ ONLY
        with read_scope(sv.engine) as s:
            s.execute(insert(AuditEntry).values(actor="x", action="test.sneaked"))
    with pytest.raises(RuntimeError, match="read_scope holds unsaved changes"):
        with read_scope(sv.engine) as s:
            s.add(AuditEntry(actor="x", action="test.added"))
    with read_scope(sv.engine) as s:
        first = s.exec(select(AuditEntry).where(AuditEntry.action == "test.first")).one()
    assert first.actor == SYSTEM.id  # what was read stays loaded after the scope closes
    for _ in range(3):  # every pooled connection is writable again
        with session_scope(sv.engine) as s:
            record(s, SYSTEM, "test.after")
    assert [a.action for a in rows(sv, AuditEntry, AuditEntry.action.like("test.%"))] == \
        ["test.first", "test.after", "test.after", "test.after"]


SLOW = 4.0
"""Seconds each change of the slow source takes: longer than starting six runs."""
FLEET = "\n".join(f"""  - name: slow{i}
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    health: {{us-east-1: slow, us-west-2: slow}}
    traffic: {{source: slow}}
    runbooks:
      failover:
        - {{name: shift, action: traffic.shift}}""" for i in range(5))
FLEET_CONFIG = f"""
regions: [us-east-1, us-west-2]
sources:
  slow: {{kind: sandbox, timeout: 10.0, action_delay: {SLOW}}}
  fast: {{kind: sandbox, timeout: 1.0}}
services:
{FLEET}
  - name: fast
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    health: {{us-east-1: fast, us-west-2: fast}}
    traffic: {{source: fast}}
    runbooks:
      failover:
        - {{name: shift, action: traffic.shift}}
approvals:
  required_approvals: 1
  approvers: [UBOB]
"""


def test_a_sixth_approval_starts_while_five_runs_are_in_slow_steps(tmp_path):
    """A regional failover approves every service in a row: none waits for a worker."""
    sv = build_services(parse_config(FLEET_CONFIG, "fleet.yaml", {}), db_url=f"sqlite:///{tmp_path}/drbot.db")
    names = [f"slow{i}" for i in range(5)] + ["fast"]
    try:
        for name in names:
            dispatch(sv, ALICE, f"failover {name} the region is down")
        for name in names:
            assert decide(sv, BOB, the_request(sv, name).id, "approve").approved
        fast = wait_until("the fast failover to succeed", lambda: _finished(sv, the_request(sv, "fast").id),
                          timeout=30)
        assert fast.state is RequestState.SUCCEEDED, fast.state_reason
        sv.runner.executor.shutdown(wait=True)  # the slow runs end too
        (fast_step,) = rows(sv, RunStep, RunStep.run_id == runs_of(sv, fast.id)[0].id)
        for name in names[:-1]:
            req = the_request(sv, name)
            assert req.state is RequestState.SUCCEEDED, (name, req.state_reason)
            (step,) = rows(sv, RunStep, RunStep.run_id == runs_of(sv, req.id)[0].id)
            # a worker freed by a slow run could only have started the fast one after its step ended
            assert step.ended_at > fast_step.started_at, name
    finally:
        sv.runner.executor.shutdown(wait=True)
        sv.engine.dispose()
