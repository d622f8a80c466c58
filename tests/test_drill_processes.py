"""Scheduled drills across real processes: two ``python -m bot run --mode http`` replicas on
one PostgreSQL schema, against the fake Slack Web API, with a 1 s drill tick.

An ad-hoc drill is planned a few seconds ahead with a signed ``/dr drill schedule`` and
approved by two people before its time. Only the leader's scheduler starts it, exactly
once. Then the leader is killed with SIGKILL; the survivor takes the leader lock within
seconds, and a second drill, planned and approved the same way, fires exactly once, run
by the survivor.

Needs PostgreSQL: skipped locally without it, failed in CI (CI=true) by ``pg_url``.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import select

from bot.leader import derive_key
from bot.store import make_engine, session_scope
from bot.store.drill_tables import DrillOccurrence, OccurrenceState
from bot.store.models import ChangeRequest, RequestKind, RequestState, Run
from tests.fakes.slack_api import FakeSlack
from tests.postgres import temporary_schema
from tests.slack_client import SlackSender

ROOT = Path(__file__).resolve().parent.parent
SECRET = "0b7c4e2f9a1d8e6c5b3a2f1e0d9c8b7a"
CHANNEL = "C_DRILL"
STARTED = "Drill of orders is starting now"
LEAD = 8  # seconds between planning a drill and its start

CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim:
    kind: sandbox
    timeout: 2.0
    profiles:
      orders: {lag: 20, jitter: 0}
approvals:
  required_approvals: 2
  approvers: [UBOB, UCAROL, UDAVE]
  expires: 30m
scheduler: {drill_tick: 1s, leader_poll: 1s}
watch: {enabled: false}
digest: {enabled: false}
services:
  - name: orders
    tier: high
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    channel: C_DRILL
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
    runbooks:
      drill:
        default:
          - name: Check the standby could take over
            action: check
            timeout: 10s
            verify: {healthy: target, lag_below: 1m, within: 5s, interval: 100ms}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bot:
    """One ``drbot run`` process; its output goes to a file, shown when a test fails."""

    def __init__(self, tmp_path: Path, name: str, config: Path, db_url: str, fake: FakeSlack):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DRBOT_"))}
        env |= {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": fake.base_url,
                "DATABASE_URL": db_url, "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "run", "--mode", "http", "--port", str(self.port), "--config", str(config)],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        self.sender = SlackSender(self.url, SECRET)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not answer /healthz within {timeout}s")
            time.sleep(0.1)

    def kill9(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        self.sender.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


def wait_until(what: str, check: Callable[[], object], timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@pytest.mark.postgres
def test_two_replicas_fire_a_scheduled_drill_once_and_the_survivor_of_a_kill_9_fires_the_next(
        tmp_path, fake_slack, pg_url):
    config = tmp_path / "drbot.yaml"
    config.write_text(CONFIG)
    bots: list[Bot] = []
    with temporary_schema(pg_url) as url:
        engine = make_engine(url)  # the test reads the database the bots share

        def db(fn):
            with session_scope(engine) as s:
                return fn(s)

        def lock_key() -> int:
            with engine.connect() as conn:
                database, schema = conn.execute(text("SELECT current_database(), current_schema()")).one()
            return derive_key(f"drbot.scheduler:{database}:{schema}") & 0xFFFFFFFFFFFFFFFF

        def lock_holder(key: int) -> int | None:
            """The PostgreSQL backend holding the replicas' leader lock (bot.leader), if any."""
            with engine.connect() as conn:
                return conn.execute(text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
                    " AND classid::text::bigint = :hi AND objid::text::bigint = :lo"),
                    {"hi": key >> 32, "lo": key & 0xFFFFFFFF}).scalar()

        def drill_requests() -> list[ChangeRequest]:
            return db(lambda s: list(s.exec(select(ChangeRequest).where(ChangeRequest.kind == RequestKind.DRILL)
                                            .order_by(ChangeRequest.id))))

        def runs_of(request_id: int) -> list[Run]:
            return db(lambda s: list(s.exec(select(Run).where(Run.request_id == request_id))))

        def started_posts(root_ts: str) -> list:
            return [c for c in fake_slack.calls("chat.postMessage")
                    if c.params.get("thread_ts") == root_ts and c.params.get("text") == STARTED]

        def roots() -> list:
            return [c for c in fake_slack.calls("chat.postMessage")
                    if c.params.get("channel") == CHANNEL and not c.params.get("thread_ts")]

        def plan_and_approve(via: list[Bot], approvers: list[str], n: int) -> tuple[ChangeRequest, DrillOccurrence]:
            """``/dr drill schedule orders in 8s`` by alice, then two approvals, all before its time."""
            name = f"schedule{n}"
            r = via[0].sender.slash_command(f"drill schedule orders in {LEAD}s", user_id="UALICE", user_name="alice",
                                            channel_id="C_INC", response_url=fake_slack.response_url(name))
            assert r.status_code == 200, r.text
            (reply,) = wait_until(f"the reply to {name}", lambda: [
                c for c in fake_slack.calls("response_url") if c.params["_path"] == f"/response/{name}"], 15)
            assert reply.params["text"].startswith("Drill of orders planned for"), reply.params
            req = wait_until(f"drill #{n} announced", lambda: len(reqs := drill_requests()) == n
                             and reqs[-1].message_ts and reqs[-1], 10)
            occ = db(lambda s: s.get(DrillOccurrence, req.occurrence_id))
            assert (req.requester, req.required_approvals, req.state) == ("UALICE", 2, RequestState.PENDING)
            assert occ.thread_ts == req.message_ts and occ.schedule == "adhoc"
            announcement = fake_slack.message(CHANNEL, req.message_ts)
            for bot, user in zip(via, approvers):
                r = bot.sender.block_action("cr_approve", str(req.id), user_id=user, channel_id=CHANNEL,
                                            message=announcement,
                                            response_url=fake_slack.response_url(f"{name}-{user}"))
                assert r.status_code == 200, r.text
            wait_until(f"drill #{n} approved", lambda: db(lambda s: s.get(ChangeRequest, req.id)).state
                       is not RequestState.PENDING, 10)
            req = db(lambda s: s.get(ChangeRequest, req.id))
            assert req.state is RequestState.APPROVED, (req.state, req.state_reason)
            assert time.time() < occ.starts_at.timestamp() - 1, "setup too slow: approved too close to the start"
            assert runs_of(req.id) == [], "the approving click must not start a scheduled drill"
            return req, occ

        def fired_once(req: ChangeRequest, occ: DrillOccurrence) -> Run:
            wait_until(f"drill #{req.id} to run and finish", lambda: (runs := runs_of(req.id)) and
                       runs[0].state is not RequestState.RUNNING, occ.starts_at.timestamp() - time.time() + 20)
            time.sleep(2.5)  # two more ticks on every replica: nothing may fire again
            (run,) = runs_of(req.id)
            assert run.state is RequestState.SUCCEEDED and run.passed is True, (run.state, run.error)
            assert run.started_at >= occ.starts_at, "started before its time"
            assert db(lambda s: s.get(DrillOccurrence, occ.id)).state is OccurrenceState.STARTED
            assert len(started_posts(req.message_ts)) == 1, [c.params for c in started_posts(req.message_ts)]
            reports = [c for c in fake_slack.calls("chat.postMessage") if c.params.get("thread_ts") == req.message_ts
                       and c.params.get("text") == "Drill report: orders default PASSED"]
            assert len(reports) == 1
            return run

        try:
            bots = [Bot(tmp_path, "a", config, url, fake_slack), Bot(tmp_path, "b", config, url, fake_slack)]
            for bot in bots:
                bot.wait_healthy()
            key = lock_key()
            first_holder = wait_until("a leader", lambda: lock_holder(key), 15)

            # drill 1: planned through a, approved through a and b; only the leader starts it
            req1, occ1 = plan_and_approve(bots, ["UBOB", "UCAROL"], 1)
            run1 = fired_once(req1, occ1)
            assert len(roots()) == 1  # announced once, though both the command and the leader's tick could
            leader = next(b for b in bots if run1.owner.endswith(f":{b.pid}"))
            survivor = next(b for b in bots if b is not leader)
            assert lock_holder(key) == first_holder, "leadership changed hands without a failure"
            print(f"drill 1 fired by {leader.name} (pid {leader.pid}) at "
                  f"+{(run1.started_at - occ1.starts_at).total_seconds():.2f}s")

            # the leader dies without a word; the survivor takes the lock
            killed = time.monotonic()
            leader.kill9()
            holder = wait_until("the survivor to take the leader lock",
                                lambda: (h := lock_holder(key)) not in (None, first_holder) and h, 10)
            print(f"kill -9 of {leader.name} -> {survivor.name} leads after {time.monotonic() - killed:.2f}s")

            # drill 2: planned and approved through the survivor; it fires once, run by the survivor
            req2, occ2 = plan_and_approve([survivor, survivor], ["UBOB", "UDAVE"], 2)
            run2 = fired_once(req2, occ2)
            assert run2.owner.endswith(f":{survivor.pid}")
            assert lock_holder(key) == holder
            print(f"drill 2 fired by {survivor.name} at +{(run2.started_at - occ2.starts_at).total_seconds():.2f}s")
            assert len(roots()) == 2
            assert len(db(lambda s: s.exec(select(Run)).all())) == 2
            assert survivor.proc.poll() is None, "the survivor died"
        except AssertionError as e:
            logs = "\n".join(f"--- {b.name} (pid {b.pid}):\n{b.output()}" for b in bots)
            raise AssertionError(f"{e}\n{logs}") from e
        finally:
            for b in bots:
                b.stop()
            engine.dispose()
