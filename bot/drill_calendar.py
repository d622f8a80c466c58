"""Changes to the drill calendar (skip, postpone), applied when their request is approved.
Nothing in the estate changes, so no runbook runs: the change is made in the transaction
of the deciding approval. The status page follows in that transaction too: a drill whose
scheduled maintenance was queued for publishing has it moved (postponed) or cancelled
(skipped), in the maintenance's own stream, so never before it is created."""
from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from bot.actor import Actor
from bot.audit import record
from bot.events import DrillMaintenance, DrillMaintenanceCancelled, DrillMaintenanceMoved
from bot.outbox.queue import enqueue
from bot.request_events import queue_message
from bot.services import Services
from bot.store.drill_tables import DrillOccurrence, OccurrenceState
from bot.store.incident_tables import OutboxItem
from bot.store.models import ChangeRequest, RequestKind, RequestState
from bot.store.transitions import move_request

SCHEDULER = Actor(id="drbot", name="drill scheduler", origin="scheduler")


def apply(services: Services, s: Session, req: ChangeRequest, now: datetime) -> str:
    """Skip or postpone the occurrence ``req`` names; returns what happened, for the record."""
    occ = s.get(DrillOccurrence, req.occurrence_id)
    if occ is None or occ.state is not OccurrenceState.PLANNED:
        return "the drill is no longer planned; nothing changed"
    drill = s.get(ChangeRequest, occ.request_id)
    if req.kind is RequestKind.DRILL_SKIP:
        occ.state, occ.note = OccurrenceState.SKIPPED, req.reason
        move_request(s, drill.id, [RequestState.PENDING, RequestState.APPROVED], RequestState.CANCELLED,
                     closed_at=now, state_reason=f"skipped: {req.reason}")
        what = f"skipped: {req.reason}"
    else:
        occ.starts_at, occ.announced = req.postpone_to, ""
        drill.not_before = req.postpone_to
        drill.expires_at = req.postpone_to
        what = f"postponed to {req.postpone_to.isoformat(timespec='minutes')}"
    record(s, SCHEDULER, f"drill.{'skipped' if req.kind is RequestKind.DRILL_SKIP else 'postponed'}",
           target=occ.service, request_id=drill.id, service=occ.service, text=req.reason,
           detail={"occurrence": occ.id, "by_request": req.id, "to": str(req.postpone_to)})
    _follow_on_status_page(services, s, occ, skipped=req.kind is RequestKind.DRILL_SKIP)
    s.flush()
    s.refresh(drill)
    queue_message(services, s, drill)
    return what


def _follow_on_status_page(services: Services, s: Session, occ: DrillOccurrence, skipped: bool) -> None:
    """Move or cancel the drill's scheduled maintenance, if one was queued for the page."""
    if services.config.statuspage is None:
        return
    created = DrillMaintenance(occurrence_id=occ.id).key()
    if s.exec(select(OutboxItem.id).where(OutboxItem.idempotency_key == created)).first() is None:
        return  # none published yet: when it is, it is published for the window as it is then
    if skipped:
        enqueue(s, DrillMaintenanceCancelled(occurrence_id=occ.id), services.clock())
    else:
        enqueue(s, DrillMaintenanceMoved(occurrence_id=occ.id, starts_at=occ.starts_at.isoformat()),
                services.clock())
