"""Delivery of a region evacuation's board (posted once in the request's thread, then
updated in place with the store's state at delivery) and of the notes in its thread."""
from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session

from bot.delivery.requests import Post, _post_or_update
from bot.events import EvacuationBoard, EvacuationNote
from bot.evacuation_view import board_context, drill_report
from bot.outbox.kinds import Outcome
from bot.render import Reply
from bot.services import Services
from bot.store.evacuation_tables import Evacuation
from bot.store.models import ChangeRequest


def prepare_board(services: Services, s: Session, ev: EvacuationBoard) -> Post | None:
    ctx = board_context(services, s, ev.request_id)
    if ctx is None:
        return None
    req = ctx["req"]
    return Post(ev.channel, Reply("evacuation_board", ctx, ephemeral=False), ts=ctx["ev"].board_ts,
                thread_ts=req.message_ts or None)


def deliver_board(services: Services, ev: EvacuationBoard, post: Post | None, _item: int) -> Outcome:
    def saved(s: Session, ts: str) -> None:
        s.execute(update(Evacuation).where(Evacuation.request_id == ev.request_id, Evacuation.board_ts == "")
                  .values(board_ts=ts).execution_options(synchronize_session=False))

    return _post_or_update(services, post, saved)


def prepare_note(services: Services, s: Session, ev: EvacuationNote) -> Post | None:
    if ev.what == "report":  # a region drill ended: its report
        ctx = drill_report(services, s, ev.request_id)
        if ctx is None:
            return None
        return Post(ev.channel, Reply("evacuation_drill_report", ctx, ephemeral=False),
                    thread_ts=ctx["req"].message_ts or None)
    ctx = board_context(services, s, ev.request_id)
    if ctx is None:
        return None
    req: ChangeRequest = ctx["req"]
    line = next((x for x in ctx["lines"] if x.service == ev.service), None)
    wave = [x for x in ctx["lines"] if x.wave == ev.wave]
    reply = Reply("evacuation_note", ctx | {"what": ev.what, "wave_no": ev.wave, "wave": wave, "line": line},
                  ephemeral=False)
    return Post(ev.channel, reply, thread_ts=req.message_ts or None)
