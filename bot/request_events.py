"""Queue the outbox events of a change request, in the caller's transaction: its message
(posted once, then updated to show its state), its run's progress, its drill report."""
from __future__ import annotations

from sqlmodel import Session

from bot.events import BreakGlassNotice, DrillReport, RequestMessage, RunInterrupted, RunProgress
from bot.outbox.queue import enqueue, enqueue_in
from bot.services import Services
from bot.store.batch import Writes
from bot.store.models import ChangeRequest, RequestKind


def topic_of(req: ChangeRequest) -> str:
    """A scheduled drill shares its occurrence's thread (announcements, then the run)."""
    if req.occurrence_id is not None and req.kind is RequestKind.DRILL:
        return f"drill:{req.occurrence_id}"
    return f"request:{req.id}"


def _fields(req: ChangeRequest) -> dict:
    return {"request_id": req.id, "channel": req.channel, "topic": topic_of(req)}


def queue_message(services: Services, s: Session, req: ChangeRequest) -> None:
    """Show the request's current state in its message (posted first if it was not)."""
    if req.channel:
        enqueue(s, RequestMessage(**_fields(req)), services.clock())


def queue_progress(services: Services, s: Session, req: ChangeRequest) -> None:
    if req.channel:
        enqueue(s, RunProgress(**_fields(req)), services.clock())


def message_in(services: Services, writes: Writes, req: ChangeRequest) -> None:
    """``queue_message`` as writes of a batch (a run's end: ``bot.run_records``)."""
    if req.channel:
        enqueue_in(writes, RequestMessage(**_fields(req)), services.clock())


def progress_in(services: Services, writes: Writes, req: ChangeRequest) -> None:
    """``queue_progress`` as writes of a batch (a step boundary: ``bot.run_records``)."""
    if req.channel:
        enqueue_in(writes, RunProgress(**_fields(req)), services.clock())


def queue_report(services: Services, s: Session, req: ChangeRequest) -> None:
    if req.channel:
        enqueue(s, DrillReport(**_fields(req)), services.clock())


def queue_break_glass(services: Services, s: Session, req: ChangeRequest) -> None:
    if req.channel:
        enqueue(s, BreakGlassNotice(**_fields(req)), services.clock())


def queue_interrupted(services: Services, s: Session, req: ChangeRequest, run_id: int) -> None:
    if req.channel:
        now = services.clock()
        enqueue(s, RunInterrupted(**_fields(req), run_id=run_id, at=now.isoformat()), now)
