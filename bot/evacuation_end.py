"""How a region evacuation stops: interrupted (a service's process died; Resume continues
it) or ended (succeeded, failed, aborted or rolled back), with its audit entries, board,
notes, status page and, for a region drill, its report. Called by the coordinator
(``bot.evacuation_run``) inside its decision's transaction."""
from __future__ import annotations

from sqlmodel import Session, select

from bot.audit import SYSTEM, record
from bot.evacuation_events import queue_board, queue_note, queue_statuspage, timeline_incident
from bot.oplog import op
from bot.request_events import queue_message
from bot.services import Services
from bot.store.evacuation_tables import Evacuation, EvacuationMember
from bot.store.models import ChangeRequest, RequestKind, RequestState, aware
from bot.store.transitions import move_request

ACTIVE = ("running",)


def public(ev: Evacuation) -> bool:
    """Its start, waves and end go to the status page: never for a rollback or a drill."""
    return ev.direction not in ("rollback", "drill")


def done_state(ev: Evacuation) -> str:
    """What a member that did its part is: moved, or (a rollback) rolled back."""
    return "rolled_back" if ev.direction == "rollback" else "succeeded"


def interrupt(services: Services, s: Session, req: ChangeRequest, members: list[EvacuationMember]) -> None:
    """A service's run was interrupted (its process died): so is the evacuation; the others
    that still run finish. Resume (approved again) continues; Abort closes it."""
    now = services.clock()
    for m in members:  # started but not yet claimed by a runner: withdrawn, started again after Resume
        if m.state in ACTIVE and m.child_id is not None and move_request(
                s, m.child_id, [RequestState.APPROVED], RequestState.CANCELLED, closed_at=now,
                state_reason=f"not started: evacuation #{req.id} was interrupted"):
            m.state, m.child_id = "pending", None
    if any(m.state in ACTIVE for m in members):
        return  # wait for the others to end before handing the evacuation over
    names = [m.service for m in members if m.state == "interrupted"]
    if move_request(s, req.id, [RequestState.RUNNING], RequestState.INTERRUPTED,
                    state_reason=f"interrupted: the process running {', '.join(names)} stopped"):
        record(s, SYSTEM, "evacuation.interrupted", target=req.service, request_id=req.id, service=req.service,
               incident_id=timeline_incident(s, req.channel), detail={"services": names})
        s.refresh(req)
        queue_message(services, s, req)
        queue_board(services, s, req)
        queue_note(services, s, req, "interrupted", at=services.clock().isoformat())


def end(services: Services, s: Session, req: ChangeRequest, ev: Evacuation, members: list[EvacuationMember]) -> None:
    now = services.clock()
    for m in members:
        if m.state == "pending":
            m.state = "skipped"
            m.note = f"aborted by {ev.aborted_by}" if ev.aborted_by else "a service failed (on_failure: stop)"
    failed = [m.service for m in members if m.state == "failed"]
    skipped = [m.service for m in members if m.state == "skipped"]
    moved = [m.service for m in members if m.state == done_state(ev)]
    verb = "rolled back" if ev.direction == "rollback" else "moved"
    refused = [m.service for m in members if m.state == "refused"]
    members = [m for m in members if m.state != "refused"]  # never part of it: listed, not counted
    if ev.aborted_by:
        state, why = RequestState.ABORTED, f"aborted by {ev.aborted_by}: {len(moved)} of {len(members)} {verb}"
    elif failed or skipped:
        state = RequestState.FAILED
        why = f"{len(moved)} of {len(members)} {verb}; failed: {', '.join(failed) or 'none'}" + (
            f"; not {verb}: {', '.join(skipped)}" if skipped else "")
    elif ev.direction == "rollback":
        state, why = RequestState.ROLLED_BACK, f"all {len(members)} services rolled back"
        root = s.get(ChangeRequest, req.parent_id)
        if root is not None and move_request(s, root.id, [RequestState.FAILED, RequestState.ABORTED],
                                             RequestState.ROLLED_BACK, state_reason=f"rolled back by #{req.id}"):
            s.refresh(root)
            queue_message(services, s, root)
    else:
        state, why = RequestState.SUCCEEDED, f"all {len(members)} services moved"
    if refused:  # an end that reads "all moved" must not hide what stayed behind
        why += f"; refused before it started, still in place: {', '.join(refused)}"
    if not move_request(s, req.id, [RequestState.RUNNING], state, closed_at=now, state_reason=why):
        return
    ev.ended_at = now
    for follow in s.exec(select(ChangeRequest).where(ChangeRequest.parent_id == req.id,
                                                     ChangeRequest.kind == RequestKind.RESUME,
                                                     ChangeRequest.state == RequestState.RUNNING)):
        move_request(s, follow.id, [RequestState.RUNNING], state, closed_at=now, state_reason=why)
        queue_message(services, s, follow)
    seconds = (now - aware(ev.started_at)).total_seconds() if ev.started_at else None
    record(s, SYSTEM, f"evacuation.{state.value}", target=req.service, request_id=req.id, service=req.service,
           incident_id=timeline_incident(s, req.channel), text=why,
           detail={"moved": moved, "failed": failed, "skipped": skipped, "seconds": seconds})
    s.refresh(req)
    queue_message(services, s, req)
    queue_board(services, s, req)
    queue_note(services, s, req, "ended")
    if public(ev):
        queue_statuspage(services, s, req, "ended", context={"state": state.value, "moved": len(moved),
                                                             "total": len(members)})
    if ev.direction == "drill":
        queue_note(services, s, req, "report")
    op("evacuation.ended", request_id=req.id, outcome=state.value, moved=len(moved), failed=len(failed),
       skipped=len(skipped), seconds=round(seconds, 3) if seconds is not None else None)
