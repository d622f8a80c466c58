"""kill -9 in the middle of a region evacuation, then restart (issue 16, crash-safe).

The real bot runs as a subprocess (``python -m transports run --mode http``) against the fake
Slack Web API; Slack's requests are signed and sent to it over HTTP. 20 sandbox services in
4 dependency levels; the process is killed while wave 3 runs. The next process finds the
wave-3 runs left 'running' by a dead owner: they become interrupted and so does the
evacuation, announced in its thread with Resume and Abort on its message. Nothing runs until
a Resume is approved by someone other than the person who asked for it; then only the
services that did not finish run (wave 3 from the step that did not finish, then wave 4):
what succeeded never runs again.
"""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Callable

from sqlmodel import col, select

from bot.store import make_engine, session_scope
from bot.store.evacuation_tables import Evacuation, EvacuationMember
from bot.store.incident_tables import OutboxItem, OutboxState
from bot.store.models import ChangeRequest, RequestKind, RequestState, Run, RunStep, StepState
from tests import helpers
from tests.fakes.slack_api import FakeSlack
from tests.helpers import BotProcess, bot_logs
from tests.test_evacuation import config_text, name

SECRET = "5b1f0e7a2c9d48e1b3a6f0c2d4e8a1b7"
CHANNEL = "C_INC"


def start_bot(tmp_path: Path, label: str, config: Path, db_url: str, fake: FakeSlack) -> BotProcess:
    return BotProcess(tmp_path, label, config, db_url, fake, SECRET)


def wait_until(what: str, check: Callable[[], object], bots: list[BotProcess], timeout: float = 30.0):
    return helpers.wait_until(what, check, timeout, details=lambda: bot_logs(bots))


def action_ids(blocks: list[dict]) -> list[str]:
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


def test_an_evacuation_killed_in_wave_3_is_interrupted_and_resume_finishes_only_what_did_not(
        tmp_path, fake_slack, db_url):
    config = tmp_path / "drbot.yaml"
    config.write_text(config_text(per_level=5, wait="1500ms", parallelism=5)
                      + "slack: {messages_per_second: 10, burst: 20}\n")
    engine = make_engine(db_url)  # the test reads the same database the bots write
    bots: list[BotProcess] = []

    def db(fn):
        with session_scope(engine) as s:
            return fn(s)

    def request(rid: int) -> ChangeRequest | None:
        return db(lambda s: s.get(ChangeRequest, rid))

    def member_states() -> dict[str, str]:
        return db(lambda s: {m.service: m.state for m in s.exec(select(EvacuationMember))})

    def attempts() -> Counter:
        """(service, step position) -> attempts recorded."""
        def read(s):
            service_of = {r.id: r.service for r in s.exec(select(Run))}
            return Counter((service_of[st.run_id], st.position) for st in s.exec(select(RunStep)))
        return db(read)

    try:
        first = start_bot(tmp_path, "first", config, db_url, fake_slack)
        bots.append(first)
        first.wait_healthy()
        r = first.sender.slash_command("evacuate us-east-1 us-east-1 is down", user_id="UALICE", user_name="alice",
                                       channel_id=CHANNEL, response_url=fake_slack.response_url("ask"))
        assert r.status_code == 200, r.text
        req = wait_until("evacuation #1 posted", lambda: (q := request(1)) is not None and q.message_ts and q, bots)
        assert req.kind is RequestKind.EVACUATE
        posted = fake_slack.message(CHANNEL, req.message_ts)
        first.sender.block_action("cr_approve", "1", user_id="UBOB", user_name="bob", channel_id=CHANNEL,
                                  message=posted, response_url=fake_slack.response_url("approve"))
        wait_until("wave 3 waiting in its second step", lambda: db(lambda s: s.exec(
            select(RunStep).join(Run, Run.id == RunStep.run_id).where(
                col(Run.service).in_([name(3, i) for i in range(5)]), RunStep.position == 1,
                RunStep.state == StepState.RUNNING)).all()), bots, timeout=60)
        # killed once its posts are out: an outbox claim of a dead process holds its stream for the
        # claim's lease (2 minutes), which is the outbox's business, not this test's
        wait_until("the outbox idle", lambda: not db(lambda s: s.exec(select(OutboxItem).where(
            OutboxItem.state == OutboxState.PENDING)).all()), bots, timeout=20)
        first.kill9()
        states = member_states()
        assert all(states[name(w, i)] == "succeeded" for w in (1, 2) for i in range(5)), states
        assert all(states[name(4, i)] == "pending" for i in range(5)), states
        before = attempts()
        at_kill = db(lambda s: {(r.service, st.position): st.state for st, r in s.exec(
            select(RunStep, Run).join(Run, Run.id == RunStep.run_id))})

        second = start_bot(tmp_path, "second", config, db_url, fake_slack)
        bots.append(second)
        second.wait_healthy()  # interrupted runs are marked before the server listens
        wait_until("the evacuation interrupted", lambda: request(1).state is RequestState.INTERRUPTED, bots)
        states = member_states()
        interrupted = sorted(s for s, v in states.items() if v == "interrupted")
        assert interrupted and set(interrupted) <= {name(3, i) for i in range(5)}, states
        assert "interrupted: the process running" in request(1).state_reason
        msg = wait_until("the message offers Resume", lambda: (m := fake_slack.message(CHANNEL, req.message_ts))
                         and "evac_resume" in action_ids(m["blocks"]) and m, bots, timeout=15)
        assert action_ids(msg["blocks"]) == ["evac_resume", "evac_abort"]
        wait_until("the interruption announced in the thread", lambda: [
            c for c in fake_slack.calls("chat.postMessage") if c.params.get("thread_ts") == req.message_ts
            and "INTERRUPTED" in c.params.get("text", "")], bots, timeout=15)
        time.sleep(1.0)  # give a wrongly eager restart the chance to run something
        assert attempts() == before, "nothing may run again without a new approval"

        second.sender.block_action("evac_resume", "1", user_id="UALICE", user_name="alice", channel_id=CHANNEL,
                                   message=msg, response_url=fake_slack.response_url("resume"))
        resume = wait_until("the resume posted", lambda: next((q for q in db(lambda s: list(s.exec(
            select(ChangeRequest).where(ChangeRequest.kind == RequestKind.RESUME, ChangeRequest.parent_id == 1))))
            if q.message_ts), None), bots)
        resume_msg = fake_slack.message(CHANNEL, resume.message_ts)
        assert action_ids(resume_msg["blocks"]) == ["cr_approve", "cr_deny", "cr_cancel"]
        second.sender.block_action("cr_approve", str(resume.id), user_id="UCAROL", user_name="carol",
                                   channel_id=CHANNEL, message=resume_msg, response_url=fake_slack.response_url("ok"))
        wait_until("the evacuation ended", lambda: request(1).state not in (
            RequestState.INTERRUPTED, RequestState.RUNNING), bots, timeout=60)
        assert request(1).state is RequestState.SUCCEEDED, request(1).state_reason
        assert request(resume.id).state is RequestState.SUCCEEDED
        assert set(member_states().values()) == {"succeeded"}

        after = attempts()
        for w in (1, 2):  # what succeeded never ran again
            for i in range(5):
                assert after[(name(w, i), 0)] == after[(name(w, i), 1)] == 1, (name(w, i), after)
        for (svc, position), state in at_kill.items():  # a step that ended never ran again; the one cut runs again
            assert after[(svc, position)] == (2 if state is StepState.RUNNING else 1), (svc, position, state, after)
        # every service cut mid-step was interrupted; so may be one killed between two of its steps
        # (no step running, its run still running) or whose run had not started yet
        assert {svc for (svc, _p), state in at_kill.items() if state is StepState.RUNNING} <= set(interrupted)
        for i in range(5):
            assert after[(name(4, i), 0)] == after[(name(4, i), 1)] == 1
        children = db(lambda s: list(s.exec(select(ChangeRequest).where(ChangeRequest.parent_id == 1,
                                                                        ChangeRequest.kind == RequestKind.FAILOVER))))
        moved = [c.service for c in children if c.state is RequestState.SUCCEEDED]
        assert sorted(moved) == sorted(set(moved)) and len(moved) == 20  # each service moved once
        # a child started but not yet claimed when the process died is withdrawn, started again after Resume
        assert all(c.state is RequestState.CANCELLED and "was interrupted" in c.state_reason
                   for c in children if c.state is not RequestState.SUCCEEDED)
        assert db(lambda s: s.get(Evacuation, 1)).ended_at is not None
    finally:
        for bot in bots:
            bot.stop()
        engine.dispose()
