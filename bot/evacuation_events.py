"""Queue the outbox events of a region evacuation in the caller's transaction: its board
and the notes of its thread. The incident of the request's channel (if any) gets the
evacuation's start, each wave and its end on its timeline (``timeline_incident``) and on
the status page (``queue_statuspage``): in drbot's own words (never the reason a person
typed), published at once when the incident is already on the page and its severity
publishes automatically; otherwise the start and the end come as a preview that a
permitted person publishes, edits or skips."""
from __future__ import annotations

from sqlmodel import Session, select

from bot.events import EvacuationBoard, EvacuationNote, StatuspagePreview, StatuspagePublish
from bot.incidents import for_channel
from bot.outbox.queue import enqueue, enqueue_in
from bot.render import Reply
from bot.request_events import topic_of
from bot.services import Services
from bot.store.batch import Writes
from bot.store.evacuation_tables import EvacuationMember
from bot.store.models import ChangeRequest, RequestKind


def _fields(req: ChangeRequest) -> dict:
    return {"request_id": req.id, "channel": req.channel, "topic": topic_of(req)}


def queue_board(services: Services, s: Session, req: ChangeRequest) -> None:
    """Show the store now on the evacuation's board (folded into an undelivered update)."""
    if req.channel:
        enqueue(s, EvacuationBoard(**_fields(req)), services.clock())


def board_in(services: Services, writes: Writes, req: ChangeRequest) -> None:
    """``queue_board`` as writes of a batch: a step boundary or the end of a service's run
    (``bot.run_records``) shows on the board at once, not only at the coordinator's next
    decision."""
    if req.channel:
        enqueue_in(writes, EvacuationBoard(**_fields(req)), services.clock())


def board_of(s: Session, req: ChangeRequest) -> ChangeRequest | None:
    """The evacuation whose board shows the run of ``req`` (a service it moves, or the
    resume of one), else None."""
    if req.parent_id is None:
        return None
    child = req.parent_id if req.kind is RequestKind.RESUME else req.id
    found = s.exec(select(EvacuationMember.evacuation_id).where(EvacuationMember.child_id == child)).first()
    return s.get(ChangeRequest, found) if found is not None else None


def queue_note(services: Services, s: Session, req: ChangeRequest, what: str, wave: int = 0, service: str = "",
               at: str = "") -> None:
    if req.channel:
        enqueue(s, EvacuationNote(**_fields(req), what=what, wave=wave, service=service, at=at), services.clock())


def timeline_incident(s: Session, channel: str) -> int | None:
    """The incident of the evacuation's channel, whose timeline gets its start, waves and end."""
    inc = for_channel(s, channel)
    return inc.id if inc is not None else None


def queue_statuspage(services: Services, s: Session, req: ChangeRequest, what: str, wave: int = 0,
                     waves: int = 0, context: dict | None = None) -> None:
    """``what``: 'started', 'wave' or 'ended' (``context``: its state and counts)."""
    sp = services.config.statuspage
    inc = for_channel(s, req.channel) if sp is not None else None
    if sp is None or inc is None or inc.status.value == "resolved":
        return
    auto = bool(inc.statuspage_id) and sp.publish.get(inc.severity, "preview") == "auto"
    if sp.publish.get(inc.severity, "preview") == "skip" or (not auto and what == "wave"):
        return
    body = services.renderer.text(Reply("evacuation_statuspage", {
        "what": what, "region": req.from_region, "wave": wave, "waves": waves, "kind": req.kind.value,
        **(context or {})})).strip()
    now = services.clock()
    if auto:
        enqueue(s, StatuspagePublish(incident_id=inc.id, status=inc.status.value, body=body), now)
    else:
        enqueue(s, StatuspagePreview(incident_id=inc.id, status=inc.status.value, message=body), now)
