"""kill -9 in the middle of a run, then restart.

The real bot runs as a subprocess (``python -m transports run --mode http``) against the fake
Slack Web API; Slack's requests are signed and sent to it over HTTP. Step 2 of the
failover is running (the sandbox takes 3 s per action) when the process is killed. The
next process finds the run left 'running' by a dead owner: it becomes interrupted and is
announced in the request's thread with Resume / Abort. Nothing runs again until a Resume
is approved by someone other than the person who asked for it; then the run continues
from step 2, attempt 2.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from sqlmodel import col, select

from bot.store import make_engine, session_scope
from bot.store.models import (
    AuditEntry, ChangeRequest, RequestKind, RequestState, Run, RunStep, StepState, TimelineEvent,
)
from tests.fakes.slack_api import FakeSlack
from tests import helpers
from tests.helpers import BotProcess, bot_logs

SECRET = "e4c1f0a7b2d94e0f8a6b5c3d2e1f0a9b"
CHANNEL = "C_INC"

CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim:
    kind: sandbox
    timeout: 2.0
    action_delay: 3.0
    profiles:
      orders: {lag: 20, jitter: 0}
services:
  - name: orders
    tier: high
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
        - name: Switch the writer to the target region
          action: database.switchover
          timeout: 30s
          verify: {writer_in: target, within: 10s, interval: 200ms}
        - name: Shift traffic to the target region
          action: traffic.shift
          timeout: 30s
          verify: {traffic_in: target, within: 10s, interval: 200ms}
approvals:
  required_approvals: 1
  approvers: [UBOB, UCAROL]
  expires: 30m
"""


def start_bot(tmp_path: Path, name: str, config: Path, db_url: str, fake: FakeSlack) -> BotProcess:
    return BotProcess(tmp_path, name, config, db_url, fake, SECRET)


def wait_until(what: str, check: Callable[[], object], bots: list[BotProcess], timeout: float = 30.0):
    return helpers.wait_until(what, check, timeout, details=lambda: bot_logs(bots))


def test_a_run_killed_during_step_2_is_interrupted_on_restart_and_resumes_only_after_approval(
        tmp_path, fake_slack, db_url):
    config = tmp_path / "drbot.yaml"
    config.write_text(CONFIG)
    engine = make_engine(db_url)  # the test reads the same database the bots write
    bots: list[BotProcess] = []

    def db(fn):
        with session_scope(engine) as s:
            return fn(s)

    def request(rid: int) -> ChangeRequest | None:
        return db(lambda s: s.get(ChangeRequest, rid))

    def step_rows() -> list[tuple[int, int, StepState]]:
        return db(lambda s: [(r.position, r.attempt, r.state) for r in s.exec(select(RunStep).order_by(RunStep.id))])

    def posts_in_thread(ts: str) -> list:
        return [c for c in fake_slack.calls("chat.postMessage") if c.params.get("thread_ts") == ts]

    def action_ids(blocks: list[dict]) -> list[str]:
        return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]

    def responses(name: str) -> list:
        return [c for c in fake_slack.calls("response_url") if c.params["_path"] == f"/response/{name}"]

    try:
        first = start_bot(tmp_path, "first", config, db_url, fake_slack)
        bots.append(first)
        first.wait_healthy()

        # alice asks, bob approves: both signed exactly as Slack signs them
        r = first.sender.slash_command("failover orders 5xx at 40% in us-east-1", user_id="UALICE",
                                       user_name="alice", channel_id=CHANNEL,
                                       response_url=fake_slack.response_url("failover"))
        assert r.status_code == 200, r.text
        req = wait_until("request #1 posted", lambda: (q := request(1)) is not None and q.message_ts and q, bots)
        assert (req.kind, req.state, req.requester) == (RequestKind.FAILOVER, RequestState.PENDING, "UALICE")
        posted = fake_slack.message(CHANNEL, req.message_ts)
        assert action_ids(posted["blocks"]) == ["cr_approve", "cr_deny", "cr_cancel"]

        r = first.sender.block_action("cr_approve", "1", user_id="UBOB", user_name="bob", channel_id=CHANNEL,
                                      message=posted, response_url=fake_slack.response_url("approve"))
        assert r.status_code == 200, r.text
        wait_until("step 2 running", lambda: step_rows() == [(0, 1, StepState.SUCCEEDED),
                                                                (1, 1, StepState.RUNNING)], bots)
        first.kill9()

        # the record a dead process leaves behind
        assert request(1).state is RequestState.RUNNING
        run = db(lambda s: s.exec(select(Run).where(Run.request_id == 1)).one())
        assert run.state is RequestState.RUNNING and run.owner.endswith(f":{first.pid}")

        second = start_bot(tmp_path, "second", config, db_url, fake_slack)
        bots.append(second)
        second.wait_healthy()  # recover_interrupted runs before the server listens

        assert request(1).state is RequestState.INTERRUPTED
        assert "stopped" in request(1).state_reason and str(first.pid) in request(1).state_reason
        run = db(lambda s: s.get(Run, run.id))
        assert run.state is RequestState.INTERRUPTED
        notice = wait_until("the interruption announced in the thread", lambda: [
            c for c in posts_in_thread(req.message_ts) if "run_resume" in action_ids(c.blocks)], bots, timeout=10)
        assert len(notice) == 1 and notice[0].params["channel"] == CHANNEL
        assert action_ids(notice[0].blocks) == ["run_resume", "run_abort"]
        assert all(b["elements"][0]["value"] == "1" for b in notice[0].blocks if b["type"] == "actions")
        assert "interrupted" in notice[0].params["text"]
        assert "during step 2" in notice[0].blocks[0]["text"]["text"]
        time.sleep(1.0)  # give a wrongly eager restart the chance to run something
        assert step_rows() == [(0, 1, StepState.SUCCEEDED), (1, 1, StepState.RUNNING)], \
            "nothing may run again without a new approval"

        # Resume is a new request that needs approval again, by someone other than its requester.
        # The notice offers it; so may the run's progress message, when the update the killed
        # process had queued is delivered by the new one (it renders the run as it is now)
        offering = [m for m in list(fake_slack.messages.values())
                    if m.get("thread_ts") == req.message_ts and "run_resume" in action_ids(m["blocks"])]
        (notice_msg,) = [m for m in offering if m["text"] == notice[0].params["text"]]
        assert all(m is notice_msg or m["text"].endswith(": INTERRUPTED") for m in offering), offering
        r = second.sender.block_action("run_resume", "1", user_id="UALICE", user_name="alice", channel_id=CHANNEL,
                                       message=notice_msg, response_url=fake_slack.response_url("resume"))
        assert r.status_code == 200, r.text
        resume = wait_until("resume request #2 posted",
                            lambda: (q := request(2)) is not None and q.message_ts and q, bots)
        assert (resume.kind, resume.state, resume.parent_id, resume.requester) == \
            (RequestKind.RESUME, RequestState.PENDING, 1, "UALICE")
        assert request(1).state is RequestState.INTERRUPTED
        resume_msg = fake_slack.message(CHANNEL, resume.message_ts)
        assert action_ids(resume_msg["blocks"]) == ["cr_approve", "cr_deny", "cr_cancel"]

        second.sender.block_action("cr_approve", "2", user_id="UALICE", user_name="alice", channel_id=CHANNEL,
                                   message=resume_msg, response_url=fake_slack.response_url("own"))
        (own,) = wait_until("alice's refusal", lambda: responses("own"), bots, timeout=10)
        assert own.params["response_type"] == "ephemeral"
        assert "you asked for request #2: someone else has to approve" in own.params["text"]
        assert request(2).state is RequestState.PENDING
        assert step_rows() == [(0, 1, StepState.SUCCEEDED), (1, 1, StepState.RUNNING)]

        second.sender.block_action("cr_approve", "2", user_id="UCAROL", user_name="carol", channel_id=CHANNEL,
                                   message=resume_msg, response_url=fake_slack.response_url("carol"))
        finished = (RequestState.SUCCEEDED, RequestState.FAILED, RequestState.INTERRUPTED)
        wait_until("the resumed run to end", lambda: request(2).state in finished, bots)
        assert request(1).state is RequestState.SUCCEEDED, request(1).state_reason
        assert request(2).state is RequestState.SUCCEEDED
        assert responses("carol") == []  # nothing to tell carol: the messages show it

        # step 1 ran once; step 2's first attempt stays 'running' as the record of the
        # interruption; its second attempt ran after the approval
        assert step_rows() == [(0, 1, StepState.SUCCEEDED), (1, 1, StepState.RUNNING), (1, 2, StepState.SUCCEEDED)]
        run = db(lambda s: s.get(Run, run.id))
        assert run.state is RequestState.SUCCEEDED and run.owner.endswith(f":{second.pid}")
        assert run.measured_rto_s is not None and run.passed is True
        assert db(lambda s: len(s.exec(select(Run)).all())) == 1  # the resume continued the same run

        audit = db(lambda s: [(a.actor, a.action) for a in s.exec(select(AuditEntry).order_by(AuditEntry.id))])
        assert audit == [("UALICE", "request.failover"), ("UBOB", "request.approved"), ("drbot", "run.started"),
                         ("drbot", "step.succeeded"), ("drbot", "run.interrupted"),
                         ("UALICE", "request.resume"), ("UCAROL", "request.approved"), ("drbot", "run.started"),
                         ("drbot", "step.succeeded"), ("drbot", "run.succeeded")]
        events = db(lambda s: [(e.request_id, e.kind) for e in s.exec(
            select(TimelineEvent).where(col(TimelineEvent.request_id).in_([1, 2])).order_by(TimelineEvent.id))])
        assert events == [(1, "request.failover"), (1, "request.approved"), (1, "run.started"),
                          (1, "step.succeeded"), (1, "run.interrupted"),
                          (2, "request.resume"), (2, "request.approved"), (2, "run.started"),
                          (2, "step.succeeded"), (2, "run.succeeded")]

        # what the channel shows in the end
        final = wait_until("the request message to show success",
                           lambda: "succeeded" in fake_slack.message(CHANNEL, req.message_ts)["text"] and
                           fake_slack.message(CHANNEL, req.message_ts), bots, timeout=10)
        assert action_ids(final["blocks"]) == []
        assert len(posts_in_thread(req.message_ts)) >= 2  # the notice and the live progress
    except AssertionError as e:  # say what the bots said
        raise AssertionError(f"{e}\n{bot_logs(bots)}") from e
    finally:
        for b in bots:
            b.stop()
        engine.dispose()

