"""Delivery of a change request's messages: the message itself (posted once with its
buttons, then updated), the run's live progress in its thread, the drill report, the
notice of an interrupted run, the break-glass notice, and the direct message that tells a
requester their request was withdrawn because its message could never be posted."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import Session, col, select

from bot.audit import SYSTEM, record
from bot.events import (
    BreakGlassNotice, DrillReport, RequestMessage, RequestWithdrawn, RunInterrupted, RunProgress,
)
from bot.outbox.kinds import Outcome
from bot.outbox.queue import enqueue
from bot.render import Reply
from bot.request_view import context, message
from bot.services import Services
from bot.store.models import ChangeRequest, RequestKind, RequestState, Run, StepState
from bot.store.transitions import move_request

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Post:
    """A message to post (``ts`` empty) or to update."""

    channel: str
    reply: Reply
    ts: str = ""
    thread_ts: str | None = None


def _post_or_update(services: Services, post: Post | None, saved) -> Outcome:
    if post is None:
        return Outcome(result={"skipped": "nothing to show"})
    m = services.messenger
    if post.ts:
        m.update(post.channel, post.ts, post.reply)
        return Outcome(result={"updated": post.ts})
    ts = m.post(post.channel, post.reply, thread_ts=post.thread_ts)
    return Outcome(result={"posted": ts}, apply=lambda s: saved(s, ts))


# -- the request's message ----------------------------------------------------------------

def prepare_message(services: Services, s: Session, ev: RequestMessage) -> Post | None:
    req = s.get(ChangeRequest, ev.request_id)
    if req is None:
        return None
    if not req.message_ts and req.occurrence_id is not None and req.kind is RequestKind.DRILL:
        return None  # a scheduled drill's message is posted by its first announcement
    return Post(ev.channel, message(services, s, req.id), ts=req.message_ts)


def deliver_message(services: Services, ev: RequestMessage, post: Post | None, _item: int) -> Outcome:
    def saved(s: Session, ts: str) -> None:
        s.execute(update(ChangeRequest).where(ChangeRequest.id == ev.request_id, ChangeRequest.message_ts == "")
                  .values(message_ts=ts).execution_options(synchronize_session=False))

    return _post_or_update(services, post, saved)


def message_given_up(services: Services, s: Session, ev: RequestMessage, error: str) -> None:
    """A request nobody can see cannot be approved: withdraw it (if still pending) and tell
    the requester directly, visibly in the audit log."""
    req = s.get(ChangeRequest, ev.request_id)
    if req is None or req.message_ts:
        record(s, SYSTEM, "request.message_lost", target=req.service if req else "", request_id=ev.request_id,
               detail={"error": error})
        return
    now = services.clock()
    withdrawn = move_request(s, req.id, [RequestState.PENDING], RequestState.CANCELLED, closed_at=now,
                             state_reason=f"withdrawn: its message could not be posted ({error})")
    record(s, SYSTEM, "request.withdrawn" if withdrawn else "request.message_lost", target=req.service,
           request_id=req.id, service=req.service, text=error, detail={"channel": ev.channel, "error": error})
    if withdrawn:
        enqueue(s, RequestWithdrawn(request_id=req.id, user=req.requester, channel=ev.channel, error=error), now)


def deliver_withdrawn(services: Services, ev: RequestWithdrawn, _prepared, _item: int) -> Outcome:
    ts = services.messenger.post(ev.user, Reply("request_withdrawn", {
        "id": ev.request_id, "channel": ev.channel, "error": ev.error, "command": services.command}, ephemeral=False))
    return Outcome(result={"posted": ts})


# -- the run's progress, report and interruption ------------------------------------------

def prepare_progress(services: Services, s: Session, ev: RunProgress) -> Post | None:
    req = s.get(ChangeRequest, ev.request_id)
    run = s.exec(select(Run).where(Run.request_id == ev.request_id)).first()
    if req is None or run is None:
        return None
    reply = Reply("run_progress", context(services, s, req), ephemeral=False)
    return Post(ev.channel, reply, ts=run.progress_ts, thread_ts=req.message_ts or None)


def deliver_progress(services: Services, ev: RunProgress, post: Post | None, _item: int) -> Outcome:
    def saved(s: Session, ts: str) -> None:
        s.execute(update(Run).where(Run.request_id == ev.request_id, Run.progress_ts == "")
                  .values(progress_ts=ts).execution_options(synchronize_session=False))

    return _post_or_update(services, post, saved)


def prepare_report(services: Services, s: Session, ev: DrillReport) -> Post | None:
    """The drill report: steps, measured RTO/RPO against the targets, what broke, and the
    RTO trend of the service's drills."""
    req = s.get(ChangeRequest, ev.request_id)
    history = s.exec(select(Run).where(Run.service == req.service, Run.kind == RequestKind.DRILL,
                                       col(Run.measured_rto_s).is_not(None))
                     .order_by(col(Run.started_at).desc()).limit(12)).all()
    trend = [r.measured_rto_s for r in reversed(history)]
    reply = Reply("drill_report", context(services, s, req) | {"trend": trend}, ephemeral=False)
    return Post(ev.channel, reply, thread_ts=req.message_ts or None)


def prepare_interrupted(services: Services, s: Session, ev: RunInterrupted) -> Post | None:
    req = s.get(ChangeRequest, ev.request_id)
    ctx = context(services, s, req)
    running = [st for st in ctx["steps"] if st.state is StepState.RUNNING]
    return Post(ev.channel, Reply("run_interrupted", ctx | {"running": running}, ephemeral=False),
                thread_ts=req.message_ts or None)


def prepare_break_glass(services: Services, s: Session, ev: BreakGlassNotice) -> Post | None:
    return Post(ev.channel, Reply("break_glass", {"req": s.get(ChangeRequest, ev.request_id)}, ephemeral=False))


def deliver_post(services: Services, ev, post: Post | None, _item: int) -> Outcome:
    """A message posted once (no state to keep)."""
    return _post_or_update(services, post, lambda s, ts: None)
