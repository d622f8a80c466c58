"""What can follow a run that did not end well: Rollback (a new change, approved again),
Resume of an interrupted run (approved again), Abort (closes it, changes nothing), and
the start-up sweep that marks runs left 'running' by a dead process as interrupted."""
from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta

from sqlmodel import select

from bot import changes
from bot.actor import Actor
from bot.audit import SYSTEM, record
from bot.changes import Refused
from bot.identity import OWNER
from bot.plans import steps_for
from bot.policy import policy_for
from bot.request_events import queue_interrupted, queue_message, queue_progress
from bot.services import Services
from bot.store import session_scope
from bot.store.models import ChangeRequest, RequestKind, RequestState, Run
from bot.store.transitions import move_request, move_run

log = logging.getLogger(__name__)
HEARTBEAT_LIMIT = timedelta(minutes=2)


def _load_failed_or_interrupted(services: Services, request_id: int, wanted: RequestState) -> ChangeRequest:
    with session_scope(services.engine) as s:
        req = changes.load(s, request_id)
        open_child = s.exec(select(ChangeRequest).where(ChangeRequest.parent_id == request_id,
                                                        ChangeRequest.state.in_([RequestState.PENDING,
                                                                                 RequestState.APPROVED,
                                                                                 RequestState.RUNNING]))).first()
    if req.state is not wanted:
        raise Refused("not_in_state", id=request_id, state=req.state.value, wanted=wanted.value)
    if open_child is not None:
        raise Refused("followup_open", id=request_id, child=open_child.id)
    return req


def _may_follow_up(services: Services, actor: Actor, req: ChangeRequest) -> None:
    policy = policy_for(services.config, req.service)
    if actor.id != req.requester and not changes.may_approve(services, policy, actor):
        raise Refused("not_approver", service=req.service, approvers=list(policy.approvers))


def request_rollback(services: Services, actor: Actor, request_id: int) -> ChangeRequest:
    req = _load_failed_or_interrupted(services, request_id, RequestState.FAILED)
    _may_follow_up(services, actor, req)
    child = ChangeRequest(kind=RequestKind.ROLLBACK, service=req.service, from_region=req.from_region,
                          to_region=req.to_region, parent_id=req.id)
    with session_scope(services.engine) as s:
        undo = steps_for(services, s, child)
    if not undo:
        raise Refused("nothing_to_roll_back", id=request_id)
    return changes.create(services, _in_channel(actor, req), RequestKind.ROLLBACK, req.service, req.from_region,
                          req.to_region, [], f"roll back #{req.id}", parent_id=req.id)


def request_resume(services: Services, actor: Actor, request_id: int) -> ChangeRequest:
    req = _load_failed_or_interrupted(services, request_id, RequestState.INTERRUPTED)
    _may_follow_up(services, actor, req)
    with session_scope(services.engine) as s:
        steps = [p.step for p in steps_for(services, s, req)]
    return changes.create(services, _in_channel(actor, req), RequestKind.RESUME, req.service, req.from_region,
                          req.to_region, steps, f"resume #{req.id}",
                          parent_id=req.id)


def abort(services: Services, actor: Actor, request_id: int) -> None:
    with session_scope(services.engine) as s:
        req = changes.load(s, request_id, lock=True)
        if req.state not in (RequestState.FAILED, RequestState.INTERRUPTED):
            raise Refused("not_in_state", id=request_id, state=req.state.value, wanted="failed or interrupted")
        _may_follow_up(services, actor, req)
        now = services.clock()
        move_request(s, req.id, [req.state], RequestState.ABORTED, closed_at=now,
                     state_reason=f"aborted by {actor.name or actor.id}")
        run = s.exec(select(Run).where(Run.request_id == req.id)).first()
        if run is not None:
            move_run(s, run.id, [RequestState.FAILED, RequestState.INTERRUPTED], RequestState.ABORTED, ended_at=now)
        record(s, actor, "request.aborted", target=req.service, request_id=req.id, service=req.service)
        s.refresh(req)
        queue_message(services, s, req)
    if services.outbox is not None:
        services.outbox.poke()


def _in_channel(actor: Actor, req: ChangeRequest) -> Actor:
    """Follow-ups are posted where the original request was."""
    return Actor(id=actor.id, name=actor.name, origin=actor.origin, channel=req.channel or actor.channel)


def _owner_dead(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if owner == OWNER:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def recover_interrupted(services: Services, own: bool = False) -> list[int]:
    """Runs left 'running' by a process that died become 'interrupted' and are announced
    in their thread; they continue only through Resume (approved again) or Abort.
    ``own``: this process is stopping and its runs did not finish within the grace period."""
    now = services.clock()
    found = []
    with session_scope(services.engine) as s:
        for run in s.exec(select(Run).where(Run.state == RequestState.RUNNING)).all():
            stale = run.heartbeat_at is None or now - run.heartbeat_at > HEARTBEAT_LIMIT
            if not ((own and run.owner == OWNER) or (not own and (_owner_dead(run.owner) or stale))):
                continue
            if move_run(s, run.id, [RequestState.RUNNING], RequestState.INTERRUPTED):
                move_request(s, run.request_id, [RequestState.RUNNING], RequestState.INTERRUPTED,
                             state_reason=f"the process running it ({run.owner}) stopped")
                for child in s.exec(select(ChangeRequest).where(ChangeRequest.parent_id == run.request_id,
                                                                ChangeRequest.state == RequestState.RUNNING)):
                    move_request(s, child.id, [RequestState.RUNNING], RequestState.INTERRUPTED,
                                 state_reason="the process running it stopped")
                    queue_message(services, s, s.get(ChangeRequest, child.id, populate_existing=True))
                record(s, SYSTEM, "run.interrupted", target=run.service, request_id=run.request_id,
                       service=run.service, detail={"run": run.id, "owner": run.owner})
                req = s.get(ChangeRequest, run.request_id, populate_existing=True)
                queue_message(services, s, req)
                queue_progress(services, s, req)  # the progress shows the interruption, not 'running'
                queue_interrupted(services, s, req, run.id)
                found.append(run.request_id)
    if found and services.outbox is not None:
        services.outbox.poke()
    return found
