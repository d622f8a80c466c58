"""Delivery of a manual step's message: posted once in the request's thread with Done and
Failed, then updated in place to show the answer (``bot.manual_steps``)."""
from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import Session

from bot.events import ManualStepMessage
from bot.outbox.kinds import Outcome
from bot.render import Reply
from bot.services import Services
from bot.store.manual_tables import ManualAnswer
from bot.store.models import ChangeRequest, aware


@dataclass(frozen=True)
class StepPost:
    channel: str
    reply: Reply
    ts: str
    thread_ts: str | None


def context(services: Services, row: ManualAnswer) -> dict:
    return {"row": row.model_dump(), "allowed": json.loads(row.allowed), "deadline": aware(row.deadline),
            "at": aware(row.answered_at) if row.answered_at else None, "command": services.command,
            "timeout_s": (aware(row.deadline) - aware(row.posted_at)).total_seconds()}


def prepare(services: Services, s: Session, ev: ManualStepMessage) -> StepPost | None:
    row = s.get(ManualAnswer, ev.run_step_id)
    req = s.get(ChangeRequest, ev.request_id)
    if row is None or req is None:
        return None
    reply = Reply("manual_step", context(services, row), ephemeral=False)
    return StepPost(ev.channel, reply, row.message_ts, req.message_ts or None)


def deliver(services: Services, ev: ManualStepMessage, post: StepPost | None, _item: int) -> Outcome:
    if post is None:
        return Outcome(result={"skipped": "nothing to show"})
    if post.ts:
        services.messenger.update(post.channel, post.ts, post.reply)
        return Outcome(result={"updated": post.ts})
    ts = services.messenger.post(post.channel, post.reply, thread_ts=post.thread_ts)

    def saved(s: Session) -> None:
        s.execute(update(ManualAnswer).where(ManualAnswer.run_step_id == ev.run_step_id, ManualAnswer.message_ts == "")
                  .values(message_ts=ts).execution_options(synchronize_session=False))

    return Outcome(result={"posted": ts}, apply=saved)
