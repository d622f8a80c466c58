"""``manual`` runbook steps: a step a person does.

When the run reaches one, a row in ``manual_answer`` is written and the step is posted in
the run's thread (through the outbox) with Done and Failed buttons. The run waits without
holding a transaction: it reads the row every ``POLL_EVERY`` seconds. The first answer wins
by a conditional update (``... WHERE answer = ''``): a click (Done, or Failed with a
reason), the step's ``timeout`` by the services' clock, or a stopping drbot. Only the run's
approvers (who approved the request; of the original request too, for a resume) and the
step's ``approvers`` may answer; nobody else, and never after the step stopped waiting.

Who answered, when and why goes into the step's output (``RunStep.output``), the audit
log and the request's timeline; the message is updated in place to show it.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, update
from sqlmodel import Session, col, select

from bot.actor import Actor
from bot.audit import SYSTEM, record
from bot.config.runbooks import Step
from bot.config.step_specs import fill
from bot.directory import DirectoryError
from bot.durations import format_duration
from bot.events import ManualStepMessage
from bot.outbox.queue import enqueue
from bot.plans import steps_for
from bot.policy import policy_for
from bot.render import Reply
from bot.request_events import queue_progress, topic_of
from bot.services import Services
from bot.store import read_scope, session_scope
from bot.store.manual_tables import DONE, FAILED, STOPPED, TIMEOUT, WAITING, ManualAnswer
from bot.store.models import Approval, ChangeRequest, RequestKind, RequestState, Run, RunStep, StepState, aware

POLL_EVERY = 0.5
"""Seconds between reads of a waiting step's row (an answer is seen within this)."""
MAX_REASON = 500
"""Characters of a Failed reason kept (Slack's input is limited to this too)."""


class ManualStepFailed(Exception):
    """The step did not get a Done: ``message`` says why, ``output`` what is known."""

    def __init__(self, message: str, output: dict[str, Any]):
        super().__init__(message)
        self.output = output


def run_request_of(req: ChangeRequest) -> int:
    """The request whose run holds the step rows (the original one for a resume)."""
    return req.parent_id if req.kind is RequestKind.RESUME and req.parent_id else req.id


def allowed_for(services: Services, s: Session, req: ChangeRequest, step: Step) -> list[str]:
    """Who may answer: the people who approved the request (and the original one, for a
    resume), then the step's ``approvers``; with neither (a break-glass run of a step without
    approvers), the approvers of the service's policy."""
    ids = [req.id] + ([req.parent_id] if req.kind is RequestKind.RESUME and req.parent_id else [])
    approved = s.exec(select(Approval.approver).where(col(Approval.request_id).in_(ids),
                                                      Approval.approve == True)  # noqa: E712
                      .order_by(col(Approval.id))).all()
    out = list(dict.fromkeys([*approved, *step.manual.approvers]))
    return out or list(policy_for(services.config, req.service).approvers)


def plan_text(step: Step, variables: dict[str, str]) -> str:
    """What ``/dr plan`` shows for a manual step: what it will ask and who may answer."""
    extra = ", ".join(step.manual.approvers)
    who = "the run's approvers" + (f" or {extra}" if extra else "")
    return (f"would ask in the run's thread: \"{fill(step.manual.text, variables)}\"; {who} answer Done or Failed "
            f"within {format_duration(step.timeout)}")


def asks_people(services: Services, request_id: int) -> bool:
    """Does the request's run reach a manual step? An inline runner (``drbot shell``) runs
    such a run on its pool, so the console stays free for someone to click Done."""
    with read_scope(services.engine) as s:
        req = s.get(ChangeRequest, request_id)
        return req is not None and any(p.step.action == "manual" for p in steps_for(services, s, req))


# -- the waiting step -----------------------------------------------------------------------

def _step_row(s: Session, run_request: int, position: int, attempt: int) -> int | None:
    return s.exec(select(RunStep.id).join(Run, col(Run.id) == col(RunStep.run_id))
                  .where(Run.request_id == run_request, RunStep.position == position, RunStep.attempt == attempt,
                         RunStep.rollback == False)  # noqa: E712
                  .order_by(col(RunStep.id).desc())).first()


def _queue_message(services: Services, s: Session, row: ManualAnswer, now: datetime) -> None:
    if row.channel:
        thread = s.get(ChangeRequest, row.request_id)
        enqueue(s, ManualStepMessage(request_id=row.request_id, channel=row.channel, topic=topic_of(thread),
                                     run_step_id=row.run_step_id), now)


def _poke(services: Services) -> None:
    if services.outbox is not None:
        services.outbox.poke()


def post(services: Services, req: ChangeRequest, step: Step, variables: dict[str, str], position: int,
         attempt: int) -> ManualAnswer:
    """Write the waiting row and queue the step's message, in one transaction. An older row
    of the same step still waiting (a run interrupted there, now resumed) stops waiting:
    only the newest message can be answered."""
    now = services.clock()
    run_request = run_request_of(req)
    with session_scope(services.engine) as s:
        step_id = _step_row(s, run_request, position, attempt)
        if step_id is None:
            raise ManualStepFailed("this step's record was not found, so no answer could be asked for", {})
        thread = s.get(ChangeRequest, run_request)
        allowed = allowed_for(services, s, req, step)
        older = s.exec(select(ManualAnswer).where(ManualAnswer.request_id == run_request,
                                                  ManualAnswer.position == position,
                                                  ManualAnswer.answer == WAITING)).all()
        for old in older:
            if _settle(s, old.run_step_id, STOPPED, SYSTEM, now, "posted again"):
                _queue_message(services, s, old, now)
        row = ManualAnswer(run_step_id=step_id, request_id=run_request, run_request_id=req.id, service=req.service,
                           position=position, name=step.name, text=fill(step.manual.text, variables),
                           allowed=json.dumps(allowed), channel=thread.channel if thread else "",
                           posted_at=now, deadline=now + step.timeout)
        s.add(row)
        s.flush()
        waiting = services.renderer.text(Reply("manual_step_waiting", {"deadline": row.deadline})).strip()
        s.execute(update(RunStep).where(RunStep.id == step_id, RunStep.state == StepState.RUNNING)
                  .values(output=json.dumps({"summary": waiting}))  # the progress line says what it waits for
                  .execution_options(synchronize_session=False))
        if thread is not None:
            queue_progress(services, s, thread)
        record(s, SYSTEM, "step.manual_asked", target=req.service, request_id=req.id, service=req.service,
               text=step.name, detail={"run_step": step_id, "position": position, "allowed": allowed,
                                       "timeout_s": step.timeout.total_seconds()})
        _queue_message(services, s, row, now)
        s.expunge(row)
    _poke(services)
    return row


def wait_for_answer(services: Services, req: ChangeRequest, step: Step, variables: dict[str, str],
                    position: int | None, attempt: int, stop: threading.Event | None = None) -> dict[str, Any]:
    """Post the step and wait for its answer: its output on Done; ManualStepFailed on
    Failed, on the timeout (by the services' clock) or when ``stop`` is set."""
    if position is None:
        raise ManualStepFailed("a manual step only runs inside a run", {})
    row = post(services, req, step, variables, position, attempt)
    step_id, deadline = row.run_step_id, aware(row.deadline)
    pause = stop.wait if stop is not None else time.sleep
    while True:
        with read_scope(services.engine) as s:
            now_row = s.get(ManualAnswer, step_id)
            answer = _answered(now_row) if now_row is not None and now_row.answer else None
        if answer is not None:
            return _outcome(answer, step)
        if stop is not None and stop.is_set():
            _close(services, step_id, STOPPED, "drbot is stopping")
        elif services.clock() >= deadline:
            _close(services, step_id, TIMEOUT, f"no one answered in {format_duration(step.timeout)}")
        else:
            pause(POLL_EVERY)


@dataclass(frozen=True)
class Answered:
    answer: str
    by: str
    by_name: str
    at: datetime | None
    reason: str


def _answered(row: ManualAnswer) -> Answered:
    return Answered(row.answer, row.answered_by, row.answered_by_name,
                    aware(row.answered_at) if row.answered_at else None, row.reason)


def _outcome(a: Answered, step: Step) -> dict[str, Any]:
    output = {"answer": a.answer, "by": a.by, "by_name": a.by_name, "at": a.at.isoformat() if a.at else None,
              "reason": a.reason}
    who = a.by_name or a.by
    if a.answer == DONE:
        return output | {"summary": f"done, answered by {who} at {a.at:%H:%M:%S %Z}" if a.at else "done"}
    if a.answer == FAILED:
        raise ManualStepFailed(f"marked failed by {who}: {a.reason}", output)
    if a.answer == TIMEOUT:
        raise ManualStepFailed(f"no one answered in {format_duration(step.timeout)}", output)
    raise ManualStepFailed("stopped waiting for an answer: drbot is stopping (Resume posts the step again)", output)


def _settle(s: Session, step_id: int, answer: str, actor: Actor, now: datetime, reason: str,
            live_only: bool = False) -> bool:
    """The one conditional update that answers a step: True for the one that wins."""
    stmt = update(ManualAnswer).where(ManualAnswer.run_step_id == step_id, ManualAnswer.answer == WAITING)
    if live_only:  # a click: only while the step's run is running it
        live = (select(RunStep.id).join(Run, col(Run.id) == col(RunStep.run_id))
                .where(RunStep.id == step_id, RunStep.state == StepState.RUNNING, Run.state == RequestState.RUNNING))
        stmt = stmt.where(exists(live))
    result = s.execute(stmt.values(answer=answer, answered_by=actor.id, answered_by_name=actor.name, answered_at=now,
                                   reason=reason).execution_options(synchronize_session=False))
    return result.rowcount == 1


def _close(services: Services, step_id: int, answer: str, why: str) -> None:
    """Timeout or stop, by drbot: loses to an answer that came first."""
    now = services.clock()
    with session_scope(services.engine) as s:
        if _settle(s, step_id, answer, SYSTEM, now, why):
            row = s.get(ManualAnswer, step_id)
            record(s, SYSTEM, f"step.manual_{answer}", target=row.service, request_id=row.run_request_id,
                   service=row.service, text=f"{row.name}: {why}", detail={"run_step": step_id, "position": row.position})
            _queue_message(services, s, row, now)
    _poke(services)


# -- the clicks ---------------------------------------------------------------------------

def _refused(code: str, **p: Any) -> Reply:
    return Reply("manual_step_refused", {"code": code, "p": p})


def check(services: Services, actor: Actor, step_id: int) -> Reply | None:
    """Why ``actor`` may not answer this step now (a refusal naming who may), or None."""
    with read_scope(services.engine) as s:
        row = s.get(ManualAnswer, step_id)
        if row is not None:
            s.expunge(row)
    if row is None:
        return _refused("unknown", id=step_id)
    if row.answer:
        return _refused("answered", name=row.name, a=_answered(row))
    allowed = json.loads(row.allowed)
    try:
        if not services.directory.includes(actor.id, allowed):
            return _refused("not_allowed", name=row.name, who=allowed)
    except DirectoryError as e:
        return _refused("directory_error", error=str(e))
    return None


def answer(services: Services, actor: Actor, step_id: int, what: str, reason: str = "") -> Reply | None:
    """Done or Failed (with a reason) on a waiting step, by someone who may. None when this
    answer won (the message shows it); else a refusal saying why nothing changed."""
    if what not in (DONE, FAILED):
        raise ValueError(what)
    reason = reason.strip()[:MAX_REASON]
    if what == FAILED and not reason:
        return _refused("no_reason")
    refusal = check(services, actor, step_id)
    if refusal is not None:
        return refusal
    now = services.clock()
    with session_scope(services.engine) as s:
        won = _settle(s, step_id, what, actor, now, reason, live_only=True)
        row = s.get(ManualAnswer, step_id)
        if won:
            said = f"{row.name}, answered by {actor.name or actor.id}" + (f": {reason}" if reason else "")
            record(s, actor, f"step.manual_{what}", target=row.service, request_id=row.run_request_id,
                   service=row.service, text=said, detail={"run_step": step_id, "position": row.position,
                                                           "answer": what, "reason": reason, "at": now.isoformat()})
            _queue_message(services, s, row, now)
        else:
            s.refresh(row)
            late = _refused("answered", name=row.name, a=_answered(row)) if row.answer else \
                _refused("not_waiting", name=row.name)
    if not won:
        return late
    _poke(services)
    return None


def form_context(services: Services, step_id: int) -> dict[str, Any]:
    """What the Failed form shows: the step it is about."""
    with read_scope(services.engine) as s:
        row = s.get(ManualAnswer, step_id)
        return {"step_id": step_id, "name": row.name if row else "", "command": services.command}
