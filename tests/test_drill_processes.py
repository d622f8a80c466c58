"""Scheduled drills across real processes: two ``python -m transports run --mode http`` replicas on
one PostgreSQL schema, against the fake Slack Web API, with a 1 s drill tick.

An ad-hoc drill is planned a few seconds ahead with a signed ``/dr drill schedule`` and
approved by two people before its time. Only the leader's scheduler starts it, exactly
once. Then the leader is killed with SIGKILL; the survivor takes the leader lock within
seconds, and a second drill, planned and approved the same way, fires exactly once, run
by the survivor.

Needs PostgreSQL: skipped locally without it, failed in CI (CI=true) by ``pg_url``.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import select

from bot.leader import derive_key
from bot.store import make_engine, session_scope
from bot.store.drill_tables import DrillOccurrence, OccurrenceState
from bot.store.models import ChangeRequest, RequestKind, RequestState, Run
from tests.fakes.slack_api import FakeSlack
from tests.postgres import temporary_schema
from tests.helpers import BotProcess, bot_logs, wait_until

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
permissions:
  drill_calendar: [UALICE]  # she plans the drill; the approvers approve it
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
    traffic: {source: sim}
    runbooks:
      drill:
        default:  # moves traffic and back: a drill that proves something, and leaves it as it found it
          - name: Shift traffic to the standby
            action: traffic.shift
            timeout: 10s
            verify: {traffic_in: target, healthy: target, lag_below: 1m, within: 5s, interval: 100ms}
          - name: Shift traffic back
            action: traffic.shift
            to: source
            timeout: 10s
            verify: {traffic_in: source, within: 5s, interval: 100ms}
"""


def start_bot(tmp_path: Path, name: str, config: Path, db_url: str, fake: FakeSlack) -> BotProcess:
    return BotProcess(tmp_path, name, config, db_url, fake, SECRET)


@pytest.mark.postgres
def test_two_replicas_fire_a_scheduled_drill_once_and_the_survivor_of_a_kill_9_fires_the_next(
        tmp_path, fake_slack, pg_url):
    config = tmp_path / "drbot.yaml"
    config.write_text(CONFIG)
    bots: list[BotProcess] = []
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

        def plan_and_approve(via: list[BotProcess], approvers: list[str], n: int) -> tuple[ChangeRequest, DrillOccurrence]:
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
                       and c.params.get("text") == "Drill report: orders default PASSED (SANDBOX)"]
            assert len(reports) == 1
            return run

        try:
            bots = [start_bot(tmp_path, "a", config, url, fake_slack), start_bot(tmp_path, "b", config, url, fake_slack)]
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
            raise AssertionError(f"{e}\n{bot_logs(bots)}") from e
        finally:
            for b in bots:
                b.stop()
            engine.dispose()
