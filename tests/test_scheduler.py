"""One scheduler per deployment: leader election, jobs run once, missed runs recovered or
reported. PostgreSQL tests use a throwaway schema (tests/postgres.py); they are skipped
locally without PostgreSQL and fail in CI (CI=true)."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import pytest
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from bot import jobs
from bot.scheduler import LeaderLock, Scheduler
from bot.store import create_schema, make_engine
from bot.store.models import AuditEntry
from tests.postgres import temporary_schema
from tests.scheduler_child import runs_table

ROOT = Path(__file__).resolve().parent.parent


# -- helpers ---------------------------------------------------------------------------------

def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Run:
    scheduler: str
    job_id: str
    scheduled: datetime
    at: float


class Runs:
    """A thread-safe record of handler runs, keyed by the scheduler instance that ran them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._runs: list[Run] = []

    def handler(self, **_kwargs) -> None:
        ctx = jobs.current()
        with self._lock:
            self._runs.append(Run(ctx.scheduler, ctx.job_id, ctx.scheduled_run_time, time.time()))

    def all(self) -> list[Run]:
        with self._lock:
            return list(self._runs)

    def by(self, name: str) -> list[Run]:
        return [r for r in self.all() if r.scheduler == name]

    def __len__(self) -> int:
        return len(self.all())


def assert_once_each(scheduled: list[datetime]) -> None:
    dupes = sorted({t for t in scheduled if scheduled.count(t) > 1})
    assert not dupes, f"scheduled times run more than once: {dupes}"


def assert_on_grid(scheduled: list[datetime], step: float, max_gap: float) -> None:
    """Consecutive scheduled times lie on one grid of ``step`` and never skip more than ``max_gap``."""
    ordered = sorted(scheduled)
    for a, b in zip(ordered, ordered[1:]):
        d = (b - a).total_seconds()
        assert abs(d / step - round(d / step)) < 0.02, f"{a} -> {b}: off the {step}s grid"
        assert 0 < d <= max_gap, f"{a} -> {b}: gap of {d}s"


class Factory:
    """Schedulers and engines on one database, all stopped and disposed at teardown."""

    def __init__(self, url: str, base_url: str = "", schema: str = "-"):
        self.url = url
        self.base_url = base_url  # PostgreSQL: the database URL without the schema
        self.schema = schema
        self.engine = make_engine(url)
        self._engines = [self.engine]
        self._schedulers: list[Scheduler] = []

    def make(self, name: str, **options) -> Scheduler:
        engine = make_engine(self.url)  # each scheduler its own engine, as in separate replicas
        self._engines.append(engine)
        scheduler = Scheduler(SimpleNamespace(engine=engine), name=name, **{"poll_interval": 0.2, **options})
        self._schedulers.append(scheduler)
        return scheduler

    def close(self) -> None:
        for scheduler in self._schedulers:
            scheduler.stop(timeout=10)
        for engine in self._engines:
            engine.dispose()


@pytest.fixture(autouse=True)
def _no_handlers_left():
    jobs.clear()
    yield
    jobs.clear()


@pytest.fixture
def pg(pg_url):
    with temporary_schema(pg_url) as url:
        factory = Factory(url, pg_url, make_url(url).query["options"].split("search_path=")[-1])
        try:
            yield factory
        finally:
            factory.close()


@pytest.fixture
def sqlite(tmp_path):
    factory = Factory(f"sqlite:///{tmp_path}/drbot.db")
    try:
        yield factory
    finally:
        factory.close()


class Children:
    """``python -m tests.scheduler_child`` processes; always killed at teardown."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, url: str, schema: str, name: str, *extra: str) -> subprocess.Popen:
        log = open(self.tmp_path / f"{name}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "tests.scheduler_child", url, schema, name, *extra],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.tmp_path.glob("*.log")))

    def close(self) -> None:
        for name in list(self.procs):
            self.kill(name)


@pytest.fixture
def children(tmp_path):
    kids = Children(tmp_path)
    try:
        yield kids
    finally:
        kids.close()


def db_runs(engine) -> list[tuple[str, datetime, str, float]]:
    with engine.connect() as conn:
        rows = conn.execute(select(runs_table.c.job, runs_table.c.scheduled_at, runs_table.c.process,
                                   runs_table.c.ran_at).order_by(runs_table.c.id)).all()
    return [(job, datetime.fromisoformat(at), process, ran) for job, at, process, ran in rows]


# -- bot.jobs -------------------------------------------------------------------------------

def test_run_dispatches_to_registered_handler_and_logs_unknown_names(caplog):
    got = []
    jobs.register("echo", lambda **kw: got.append(kw) or "done")
    assert jobs.run("echo", a=1) == "done"
    assert got == [{"a": 1}]
    with caplog.at_level(logging.ERROR, logger="bot.jobs"):
        assert jobs.run("nobody-registered-me", a=1) is None
    assert "has no handler in this process" in caplog.text
    assert jobs.current() is None


def test_in_memory_sqlite_is_always_leader():
    engine = make_engine("sqlite://")
    try:
        a, b = LeaderLock(engine), LeaderLock(engine)
        assert a.acquire() and b.acquire() and a.is_held()
        a.release()
        assert not a.is_held()
    finally:
        engine.dispose()


# -- PostgreSQL: one process ------------------------------------------------------------------

def start_pair(factory: Factory, runs: Runs, every: float = 0.5, **options) -> tuple[Scheduler, Scheduler]:
    jobs.register("count", runs.handler)
    pair = factory.make("a", **options), factory.make("b", **options)
    for s in pair:
        s.add_job("tick", IntervalTrigger(seconds=every), kwargs={"name": "count"})
        s.start()
    assert wait_for(lambda: any(s.is_leader for s in pair), 5), "nobody became leader"
    return pair if pair[0].is_leader else (pair[1], pair[0])


@pytest.mark.postgres
def test_two_schedulers_one_schema_only_the_leader_runs_jobs(pg):
    runs = Runs()
    leader, other = start_pair(pg, runs)
    assert wait_for(lambda: len(runs) >= 4, 6), runs.all()
    assert not other.is_leader
    assert {r.scheduler for r in runs.all()} == {leader.name}
    assert set(leader.stored_jobs()) == {"tick"}

    leader.stop()  # clean hand-over: the other takes the lock and continues the same schedule
    assert wait_for(lambda: other.is_leader, 3)
    assert wait_for(lambda: len(runs.by("b" if leader.name == "a" else "a")) >= 3, 6), runs.all()
    scheduled = [r.scheduled for r in runs.all()]
    assert_once_each(scheduled)
    assert_on_grid(scheduled, 0.5, max_gap=2.0)


@pytest.mark.postgres
def test_leader_whose_lock_connection_dies_steps_down_at_once(pg):
    runs = Runs()
    leader, other = start_pair(pg, runs)
    assert wait_for(lambda: len(runs) >= 2, 5)
    term = leader.leader_since
    with pg.engine.begin() as conn:
        pid = leader.lock.backend_pid
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    killed = time.time()
    # The old term ends at once; a new one starts (either instance may win the free lock).
    assert wait_for(lambda: leader.leader_since != term, 2), "leader kept leading without its lock"
    assert wait_for(lambda: other.is_leader or leader.leader_since not in (None, term), 3)
    new = other if other.is_leader else leader
    assert not (other.is_leader and leader.is_leader)
    assert wait_for(lambda: len([r for r in runs.by(new.name) if r.at > killed + 0.5]) >= 3, 5), runs.all()
    assert {r.scheduler for r in runs.all() if r.at > killed + 0.5} == {new.name}
    assert_once_each([r.scheduled for r in runs.all()])


@pytest.mark.postgres
def test_due_job_recovered_within_grace_and_reported_missed_beyond_it(pg):
    runs = Runs()
    jobs.register("once", runs.handler)
    # Place two date jobs in the store, each by a scheduler that stops before they are due.
    on_time = utcnow() + timedelta(seconds=1.5)
    s1 = pg.make("s1", misfire_grace=60)
    s1.add_job("recover-me", DateTrigger(on_time), kwargs={"name": "once"})
    s1.start()
    assert wait_for(lambda: "recover-me" in s1.stored_jobs(), 5)
    s1.stop()
    late = utcnow() + timedelta(seconds=1.5)
    s2 = pg.make("s2", misfire_grace=1)
    s2.add_job("miss-me", DateTrigger(late), kwargs={"name": "once"})
    s2.start()
    assert wait_for(lambda: "miss-me" in s2.stored_jobs(), 5)
    s2.stop()
    assert utcnow() < on_time, "setup too slow: the job came due while a scheduler ran"
    assert not runs.all()

    # No scheduler runs while both come due; recover when on_time is >2 s and late >2.5 s past.
    time.sleep(max(0.0, (late + timedelta(seconds=2.6) - utcnow()).total_seconds()))
    missed = []
    s3 = pg.make("s3", on_missed=lambda job_id, at: missed.append((job_id, at)))  # declares no jobs
    s3.start()
    assert wait_for(lambda: len(runs) == 1 and len(missed) == 1, 5), (runs.all(), missed)
    time.sleep(0.5)
    [run] = runs.all()
    assert run.job_id == "recover-me" and run.scheduler == "s3"
    assert abs((run.scheduled - on_time).total_seconds()) < 0.001
    [(job_id, at)] = missed
    assert job_id == "miss-me" and abs((at - late).total_seconds()) < 0.001
    assert s3.stored_jobs() == {}  # one-shot jobs are gone from the store either way


@pytest.mark.postgres
def test_missed_run_is_audited_by_default_and_not_run(pg):
    create_schema(pg.engine)
    runs = Runs()
    jobs.register("once", runs.handler)
    s = pg.make("s", misfire_grace=1)
    s.add_job("stale", DateTrigger(utcnow() - timedelta(seconds=5)), kwargs={"name": "once"})
    s.start()

    def audited():
        with pg.engine.connect() as conn:
            return conn.execute(select(AuditEntry.actor, AuditEntry.target, AuditEntry.detail)
                                .where(AuditEntry.action == "job.missed")).all()

    assert wait_for(audited, 5)
    [(actor, target, detail)] = audited()
    assert (actor, target) == ("drbot", "stale") and "scheduled_run_time" in detail
    time.sleep(0.3)
    assert not runs.all()


@pytest.mark.postgres
def test_recurring_job_due_while_down_runs_once_on_recovery(pg):
    runs = Runs()
    jobs.register("count", runs.handler)
    s1 = pg.make("s1")
    s1.add_job("tick", IntervalTrigger(seconds=1), kwargs={"name": "count"})
    s1.start()
    assert wait_for(lambda: len(runs) >= 2, 5)
    s1.stop()
    time.sleep(3.2)  # three runs come due with no scheduler

    s2 = pg.make("s2")  # declares the same job again, with a fresh trigger
    s2.add_job("tick", IntervalTrigger(seconds=1), kwargs={"name": "count"})
    s2.start()
    started = utcnow()
    assert wait_for(lambda: len(runs.by("s2")) >= 3, 5), runs.all()
    recovered = [r for r in runs.by("s2") if r.scheduled < started]
    assert len(recovered) == 1, f"due runs should coalesce into one: {recovered}"
    assert started - timedelta(seconds=1) < recovered[0].scheduled  # the latest due time
    scheduled = [r.scheduled for r in runs.all()]
    assert_once_each(scheduled)
    assert_on_grid(scheduled, 1.0, max_gap=5.0)  # the stored schedule continued, not restarted


# -- PostgreSQL: real processes ---------------------------------------------------------------

@pytest.mark.postgres
def test_processes_only_leader_runs_and_survivor_takes_over_after_kill_9(pg, children):
    runs_table.create(pg.engine)
    for name in ("p1", "p2"):
        children.start(pg.base_url, pg.schema, name, "--interval", "1", "--poll", "0.5")
    assert wait_for(lambda: len(db_runs(pg.engine)) >= 3, 15, 0.2), children.logs()
    time.sleep(1.0)
    before = db_runs(pg.engine)
    leaders = {process for _, _, process, _ in before}
    assert len(leaders) == 1, (before, children.logs())
    [leader] = leaders
    survivor = "p2" if leader == "p1" else "p1"
    assert children.procs[survivor].poll() is None, children.logs()

    children.kill(leader)
    killed = time.time()
    assert wait_for(lambda: any(p == survivor for _, _, p, _ in db_runs(pg.engine)), 8, 0.1), children.logs()
    first = min(ran for _, _, p, ran in db_runs(pg.engine) if p == survivor)
    assert first - killed < 5, f"takeover took {first - killed:.1f}s"
    print(f"kill -9 of {leader} -> first run by {survivor}: {first - killed:.2f}s")
    assert wait_for(lambda: sum(p == survivor for _, _, p, _ in db_runs(pg.engine)) >= 3, 6, 0.2)

    rows = db_runs(pg.engine)
    assert {p for _, _, p, ran in rows if ran > killed} == {survivor}
    assert {p for _, _, p, ran in rows if ran <= killed} == {leader}
    scheduled = [at for _, at, _, _ in rows]
    assert_once_each(scheduled)
    assert_on_grid(scheduled, 1.0, max_gap=5.0)


# -- SQLite -----------------------------------------------------------------------------------

def test_sqlite_two_schedulers_one_file_only_one_leads(sqlite, caplog):
    runs = Runs()
    leader, other = start_pair(sqlite, runs)
    leader.add_job("ghost", DateTrigger(utcnow()), kwargs={"name": "no-such-handler"})
    assert wait_for(lambda: len(runs) >= 3, 5), runs.all()
    assert not other.is_leader
    assert {r.scheduler for r in runs.all()} == {leader.name}
    assert "no-such-handler" in caplog.text  # logged, and the scheduler carried on

    leader.stop()
    assert wait_for(lambda: other.is_leader, 3)
    assert wait_for(lambda: len(runs.by(other.name)) >= 2, 5), runs.all()
    assert_once_each([r.scheduled for r in runs.all()])


def test_sqlite_second_process_never_leads_until_the_first_dies(sqlite, children, tmp_path):
    runs_table.create(sqlite.engine)
    children.start(sqlite.url, "-", "p1", "--interval", "0.5", "--poll", "0.5")
    assert wait_for(lambda: len(db_runs(sqlite.engine)) >= 1, 15, 0.2), children.logs()
    me = sqlite.make("parent")
    me.start()
    assert not wait_for(lambda: me.is_leader, 1.5), "two processes lead on one SQLite file"
    children.kill("p1")
    assert wait_for(lambda: me.is_leader, 3)
    assert Path(f"{tmp_path}/drbot.db.leader").exists()
