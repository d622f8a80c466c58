"""``manual`` runbook steps over real HTTP: the app (uvicorn) takes signed Slack requests
against the fake Slack Web API. A failover approved by Bob reaches a step a person does; it
is posted in the request's thread with Done and Failed; someone who did not approve the run
is refused (ephemeral, naming who may); Bob's Done lets the run go on, and who answered and
when is in the step's output, the audit log and the timeline; Failed asks for a reason and
fails the run (Rollback offered); no answer within the timeout (the services' clock) fails
it; concurrent answers, on SQLite and PostgreSQL: exactly one counts."""
from __future__ import annotations

import io
import json
import re
import threading
from datetime import datetime, timedelta, timezone

import pytest

from bot.config import parse_config
from bot.config.runbooks import Step
from bot.engine import Runner
from bot.followups import recover_interrupted
from bot.store.manual_tables import ManualAnswer
from bot.store.models import AuditEntry, ChangeRequest, RequestState, Run, RunStep, StepState, TimelineEvent
from bot.wiring import build_services
from commands.router import click as router_click
from commands.router import dispatch
from transports.shell import Shell
from tests.app_server import running_app
from tests.helpers import answered, delivered, request_row, rows, the_request, wait_until
from tests.step_support import config_text, plan_text

ALICE, BOB, CAROL, OPS = "UALICE", "UBOB", "UCAROL", "UOPS"
CHANNEL = "C_INC"
STEPS = """
- name: Shift traffic
  action: traffic.shift
  timeout: 10s
  rollback: {action: traffic.shift}
- name: Check the dashboards
  action: manual
  timeout: 30m
  manual: {text: "Open the {service} dashboard in {to_region}: is the error rate under 1%?", approvers: [UOPS]}
- name: Switch the database over
  action: database.switchover
  timeout: 10s
"""


class Clock:
    """The services' clock: real time, moved ahead by the test."""

    def __init__(self):
        self.ahead = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.ahead


def _estate(fake_slack, db_url: str):
    loaded = parse_config(config_text("", STEPS), "manual.yaml", {})
    clock = Clock()
    services = build_services(loaded, db_url=db_url, clock=clock)
    return services, clock


@pytest.fixture
def estate(fake_slack, tmp_path):
    services, clock = _estate(fake_slack, f"sqlite:///{tmp_path}/drbot.db")
    try:
        with running_app(services, fake_slack) as app:
            yield {"services": services, "app": app, "fake": fake_slack, "clock": clock}
    finally:
        services.runner.shutdown(0.1)  # a step still waiting for an answer stops waiting
        services.runner.executor.shutdown(wait=True)
        services.engine.dispose()


def click(estate, user: str, action: str, value: str, ts: str, answer_to: str | None = None) -> None:
    fake = estate["fake"]
    r = estate["app"].sender.block_action(action, value, user_id=user, user_name=user[1:].lower(), channel_id=CHANNEL,
                                          response_url=fake.response_url(answer_to or user),
                                          message=fake.message(CHANNEL, ts))
    assert r.status_code == 200


def texts(message: dict) -> str:
    out = []
    for b in message.get("blocks", []):
        if isinstance(b.get("text"), dict):
            out.append(b["text"]["text"])
        out += [e["text"] for e in b.get("elements", []) if isinstance(e, dict) and isinstance(e.get("text"), str)]
    return "\n".join(out)


def buttons(message: dict) -> set[str]:
    return {e["action_id"] for b in message.get("blocks", []) if b["type"] == "actions" for e in b["elements"]}


def approved_run(estate):
    """Alice asks for a failover, Bob approves; returns (request, the manual step's row, its message)."""
    services, fake = estate["services"], estate["fake"]
    r = estate["app"].sender.slash_command("failover orders us-east-1 is degraded", user_id=ALICE, user_name="alice",
                                           channel_id=CHANNEL, response_url=fake.response_url("a"))
    assert r.status_code == 200
    assert "is posted for approval" in answered(fake, "a").params["text"]
    req = wait_until("the request posted", lambda: (q := the_request(services, "orders")).message_ts and q)
    click(estate, BOB, "cr_approve", str(req.id), req.message_ts)
    row = wait_until("the manual step posted", lambda: next(
        (a for a in rows(services, ManualAnswer, order=ManualAnswer.run_step_id) if a.message_ts), None))
    return req, row, fake.message(CHANNEL, row.message_ts)


def final(services, request_id: int):
    done = wait_until(f"request #{request_id} to end", lambda: (r := request_row(services, request_id)) and r.state in (
        RequestState.SUCCEEDED, RequestState.FAILED, RequestState.ROLLED_BACK) and r, 30)
    delivered(services)
    return done


def steps_of(services, request_id: int) -> list[RunStep]:
    (run,) = rows(services, Run, Run.request_id == request_id)
    return rows(services, RunStep, RunStep.run_id == run.id, order=RunStep.id)


def test_posted_in_the_thread_a_non_approver_is_refused_and_the_approvers_done_goes_on(estate):
    services, fake = estate["services"], estate["fake"]
    req, row, message = approved_run(estate)

    posts = [c for c in fake.calls("chat.postMessage") if c.params.get("ts") == row.message_ts
             or c.params.get("thread_ts") == req.message_ts]
    assert any(c.params.get("thread_ts") == req.message_ts for c in posts)  # in the request's thread
    shown = texts(message)
    assert "Step 2: Check the dashboards" in shown
    assert "Open the orders dashboard in us-west-2: is the error rate under 1%?" in shown
    assert "<@UBOB>, <@UOPS>" in shown  # who approved the run, then the step's approvers
    assert buttons(message) == {"manual_done", "manual_failed"}
    assert [s.state for s in steps_of(services, req.id)] == [StepState.SUCCEEDED, StepState.RUNNING]
    waiting = steps_of(services, req.id)[1]  # the live progress says what the run waits for
    assert json.loads(waiting.output)["summary"].startswith("waiting for Done or Failed in the thread, until ")
    wait_until("the progress showing the wait", lambda: any(
        "waiting for Done or Failed" in json.dumps(c.params) for c in fake.calls("chat.update")
        + fake.calls("chat.postMessage") if c.params.get("thread_ts") == req.message_ts or c.params.get("ts")))

    # Carol may approve changes, but did not approve this run and is not in the step's approvers.
    click(estate, CAROL, "manual_done", str(row.run_step_id), row.message_ts)
    refusal = answered(fake, CAROL).params
    assert refusal["response_type"] == "ephemeral"
    assert "you may not answer" in refusal["text"] and "<@UBOB>" in refusal["text"] and "<@UOPS>" in refusal["text"]
    assert rows(services, ManualAnswer, order=ManualAnswer.run_step_id)[0].answer == ""
    # counted as a refusal (drbot_refusals_total), like any other
    assert wait_until("the refusal counted", lambda: sum(
        m.value for metric in services.metrics.registry.collect() if metric.name == "drbot_refusals"
        for m in metric.samples if m.name == "drbot_refusals_total") >= 1)

    click(estate, BOB, "manual_done", str(row.run_step_id), row.message_ts)
    done = final(services, req.id)
    assert done.state is RequestState.SUCCEEDED, done.state_reason
    ran = steps_of(services, req.id)
    assert [(s.action, s.state) for s in ran] == [("traffic.shift", StepState.SUCCEEDED),
                                                  ("manual", StepState.SUCCEEDED),
                                                  ("database.switchover", StepState.SUCCEEDED)]
    out = json.loads(ran[1].output)
    assert out["answer"] == "done" and out["by"] == BOB and out["by_name"] == "bob"
    at = datetime.fromisoformat(out["at"])
    assert abs((at - services.clock()).total_seconds()) < 30

    updated = fake.message(CHANNEL, row.message_ts)  # in place: the answer, no buttons any more
    assert "Done: <@UBOB> at" in texts(updated) and buttons(updated) == set()
    timeline = rows(services, TimelineEvent, TimelineEvent.request_id == req.id, order=TimelineEvent.id)
    assert [e.actor for e in timeline if e.kind == "step.manual_done"] == [BOB]
    assert [e.action for e in rows(services, AuditEntry, AuditEntry.actor == BOB)][-1] == "step.manual_done"

    # A second answer after the first counts for nothing and says so.
    click(estate, OPS, "manual_failed", f"{row.run_step_id}-too-late", row.message_ts)
    assert "already answered: done by <@UBOB>" in answered(fake, OPS).params["text"]


def test_failed_asks_for_a_reason_and_fails_the_run_with_rollback_offered(estate):
    services, fake = estate["services"], estate["fake"]
    req, row, _ = approved_run(estate)

    click(estate, OPS, "manual_failed", str(row.run_step_id), row.message_ts)  # in the step's approvers
    (opened,) = fake.wait_for("views.open")
    view = json.loads(opened.params["view"]) if isinstance(opened.params["view"], str) else opened.params["view"]
    assert view["callback_id"] == "manual_failed" and view["private_metadata"] == str(row.run_step_id)

    empty = estate["app"].sender.view_submission("manual_failed", {"reason": {"reason": "  "}}, user_id=OPS,
                                                 private_metadata=str(row.run_step_id))
    assert empty.status_code == 200 and empty.json()["response_action"] == "errors"
    assert "say what went wrong" in empty.json()["errors"]["reason"]

    r = estate["app"].sender.view_submission("manual_failed", {"reason": {"reason": "<!channel> error rate 7%"}},
                                             user_id=OPS, user_name="ops", private_metadata=str(row.run_step_id))
    assert r.status_code == 200
    done = final(services, req.id)
    assert done.state is RequestState.FAILED and done.state_reason == "step 2 failed"
    ran = steps_of(services, req.id)
    assert [s.state for s in ran] == [StepState.SUCCEEDED, StepState.FAILED]  # the database did not move
    assert ran[1].error == "marked failed by ops: <!channel> error rate 7%"
    out = json.loads(ran[1].output)
    assert out["answer"] == "failed" and out["by"] == OPS and out["reason"] == "<!channel> error rate 7%"

    shown = texts(fake.message(CHANNEL, row.message_ts))
    assert "Failed: <@UOPS> at" in shown and "&lt;!channel&gt; error rate 7%" in shown  # escaped: pings nobody
    (run,) = rows(services, Run, Run.request_id == req.id)
    assert "run_rollback" in buttons(fake.message(CHANNEL, run.progress_ts))
    timeline = rows(services, TimelineEvent, TimelineEvent.request_id == req.id, order=TimelineEvent.id)
    assert [(e.actor, e.text) for e in timeline if e.kind == "step.manual_failed"] == [
        (OPS, "Check the dashboards, answered by ops: <!channel> error rate 7%")]


def test_no_answer_within_the_timeout_fails_the_step_by_the_services_clock(estate):
    services, fake, clock = estate["services"], estate["fake"], estate["clock"]
    req, row, _ = approved_run(estate)
    assert (row.deadline - row.posted_at) == timedelta(minutes=30)

    clock.ahead = timedelta(minutes=31)
    done = final(services, req.id)
    assert done.state is RequestState.FAILED
    ran = steps_of(services, req.id)
    assert ran[1].state is StepState.FAILED and ran[1].error == "no one answered in 30m"
    assert json.loads(ran[1].output)["answer"] == "timeout"
    assert "No one answered in 30m" in texts(fake.message(CHANNEL, row.message_ts))

    click(estate, BOB, "manual_done", str(row.run_step_id), row.message_ts)  # too late
    assert "already answered: timeout" in answered(fake, BOB).params["text"]
    assert rows(services, ManualAnswer, order=ManualAnswer.run_step_id)[0].answered_by == "drbot"


def test_the_plan_shows_what_the_step_will_ask_and_who_may_answer(tmp_path):
    services = build_services(parse_config(config_text("", STEPS), "manual.yaml", {}),
                              db_url=f"sqlite:///{tmp_path}/drbot.db")
    shown = plan_text(services)
    assert ("would ask in the run's thread: \"Open the orders dashboard in us-west-2: is the error rate under 1%?\"; "
            "the run's approvers or UOPS answer Done or Failed within 30m") in shown


def test_a_manual_step_without_a_timeout_waits_an_hour_and_needs_text():
    assert Step.model_validate({"name": "x", "action": "manual", "manual": {"text": "do it"}}).timeout == \
        timedelta(hours=1)
    with pytest.raises(Exception, match="needs its options under manual"):
        Step.model_validate({"name": "x", "action": "manual"})
    with pytest.raises(Exception, match="is not a run variable"):
        Step.model_validate({"name": "x", "action": "manual", "manual": {"text": "check {servce}"}})


def test_concurrent_answers_one_counts(fake_slack, db_url):
    """Done and Failed by two people at once, each twice: one answer is stored and acted on."""
    services, _ = _estate(fake_slack, db_url)
    try:
        with running_app(services, fake_slack) as app:
            estate = {"services": services, "app": app, "fake": fake_slack}
            req, row, _ = approved_run(estate)
            step = str(row.run_step_id)
            barrier = threading.Barrier(4)

            def send(what):
                barrier.wait()
                if what[0] == "form":
                    app.sender.view_submission("manual_failed", {"reason": {"reason": "red dashboards"}},
                                               user_id=what[1], private_metadata=step)
                else:
                    click(estate, what[1], what[0], what[2], row.message_ts, answer_to=f"{what[1]}-{what[0]}")

            tries = [("manual_done", BOB, step), ("form", OPS), ("manual_failed", BOB, f"{step}-lag-too-high"),
                     ("manual_done", OPS, step)]
            threads = [threading.Thread(target=send, args=(t,)) for t in tries]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            done = final(services, req.id)
            (answer,) = rows(services, ManualAnswer, order=ManualAnswer.run_step_id)
            assert answer.answer in ("done", "failed") and answer.answered_by in (BOB, OPS)
            acted = [e for e in rows(services, AuditEntry, AuditEntry.action.in_(("step.manual_done",
                                                                                  "step.manual_failed")))]
            assert [(e.actor, e.action) for e in acted] == [(answer.answered_by, f"step.manual_{answer.answer}")]
            expected = RequestState.SUCCEEDED if answer.answer == "done" else RequestState.FAILED
            assert done.state is expected, done.state_reason
            assert json.loads(steps_of(services, req.id)[1].output)["by"] == answer.answered_by
            won = {("UBOB", "done"): "UBOB-manual_done", ("UBOB", "failed"): "UBOB-manual_failed",
                   ("UOPS", "done"): "UOPS-manual_done", ("UOPS", "failed"): "form"}[(answer.answered_by, answer.answer)]
            for lost in {f"{t[1]}-{t[0]}" for t in tries if t[0] != "form"} - {won}:  # each told who answered first
                assert "already answered" in answered(fake_slack, lost).params["text"]
    finally:
        services.runner.shutdown(0.1)  # a step still waiting for an answer stops waiting
        services.runner.executor.shutdown(wait=True)
        services.engine.dispose()


def test_a_shutdown_ends_the_wait_and_resume_posts_the_step_again(estate):
    services, fake = estate["services"], estate["fake"]
    req, old, _ = approved_run(estate)

    stopping = services.runner
    assert stopping.shutdown(0.5)  # past the grace period the wait ends (engine's _cancel_steps), the run is handed over
    assert recover_interrupted(services, own=True) == [req.id]
    stopping.executor.shutdown(wait=True)
    delivered(services)
    assert request_row(services, req.id).state is RequestState.INTERRUPTED
    assert "No longer waiting here (drbot is stopping)" in texts(fake.message(CHANNEL, old.message_ts))

    services.runner = Runner(services)  # drbot started again
    (run,) = rows(services, Run, Run.request_id == req.id)
    click(estate, ALICE, "run_resume", str(req.id), run.progress_ts)
    resume = wait_until("the resume request posted", lambda: next(
        (q for q in rows(services, ChangeRequest, ChangeRequest.parent_id == req.id) if q.message_ts), None))
    click(estate, CAROL, "cr_approve", str(resume.id), resume.message_ts)
    again = wait_until("the step posted again", lambda: next(
        (a for a in rows(services, ManualAnswer, order=ManualAnswer.run_step_id)
         if a.run_step_id != old.run_step_id and a.message_ts), None))
    shown = texts(fake.message(CHANNEL, again.message_ts))
    assert "Check the dashboards" in shown and "<@UBOB>, <@UCAROL>, <@UOPS>" in shown  # approvers of both

    click(estate, BOB, "manual_done", str(old.run_step_id), old.message_ts)  # the old message counts no more
    assert "already answered: stopped" in answered(fake, BOB).params["text"]
    click(estate, CAROL, "manual_done", str(again.run_step_id), again.message_ts)
    assert final(services, resume.id).state is RequestState.SUCCEEDED
    assert [(s.attempt, s.state) for s in steps_of(services, req.id) if s.position == 1] == [
        (1, StepState.FAILED), (2, StepState.SUCCEEDED)]


def test_in_the_shell_the_buttons_are_clickable_and_the_console_stays_free(tmp_path):
    """``drbot shell`` runs runs inline, except one that waits on a person: it runs on the
    pool, so the console can still take ``click done`` / ``click failed ID-REASON``."""
    services = build_services(parse_config(config_text("", STEPS), "manual.yaml", {}),
                              db_url=f"sqlite:///{tmp_path}/drbot.db", inline_runs=True)
    out = io.StringIO()
    shell = Shell(services, dispatch, out=out, click=router_click)
    try:
        shell.handle("/dr failover orders us-east-1 is degraded")
        shell.handle("as bob")
        shell.handle("click approve 1")  # returns while the run waits on the manual step
        step = wait_until("the step printed", lambda: re.search(r"\[Done\] click done (\d+)", out.getvalue()))
        assert "Open the orders dashboard in us-west-2" in out.getvalue()
        assert "who may answer: @UBOB, @UOPS" in out.getvalue()
        shell.handle("as carol")
        shell.handle(f"click done {step.group(1)}")
        assert "! not done: you may not answer _Check the dashboards_: only @UBOB, @UOPS may" in out.getvalue()
        shell.handle("as bob")
        shell.handle(f"click failed {step.group(1)}")  # a form in Slack: the shell says how to give the reason
        assert f"in the shell: `click failed {step.group(1)}-REASON-IN-WORDS`" in out.getvalue()
        shell.handle(f"click failed {step.group(1)}-error-rate-high")
        done = wait_until("the run to fail", lambda: (r := request_row(services, 1)).state is RequestState.FAILED and r)
        assert done.state_reason == "step 2 failed"
        assert steps_of(services, 1)[1].error == "marked failed by bob: error rate high"
    finally:
        services.runner.shutdown(0.1)
        services.runner.executor.shutdown(wait=True)
        services.engine.dispose()
