"""``/dr requests``: open and recent change requests with their state."""
from __future__ import annotations

from sqlmodel import col, select

from bot.render import Reply
from bot.store import session_scope
from bot.store.models import OPEN_STATES, ChangeRequest
from commands.base import Invocation, UsageError

NAME = "requests"
RECENT = 10


def run(inv: Invocation) -> Reply:
    if inv.args:
        raise UsageError(f"'{NAME}' takes no arguments", NAME)
    with session_scope(inv.services.engine) as s:
        open_ = s.exec(select(ChangeRequest).where(col(ChangeRequest.state).in_(OPEN_STATES))
                       .order_by(col(ChangeRequest.id).desc())).all()
        recent = s.exec(select(ChangeRequest).where(col(ChangeRequest.state).not_in(OPEN_STATES))
                        .order_by(col(ChangeRequest.id).desc()).limit(RECENT)).all()
    return Reply("requests", {"open": open_, "recent": recent, "now": inv.services.clock(),
                              "command": inv.services.command})
