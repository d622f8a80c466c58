"""``/dr outbox [retry ID]``: side effects waiting for delivery or given up on; retry one."""
from __future__ import annotations

from sqlmodel import col, select

from bot.render import Reply
from bot.store import session_scope
from bot.store.incident_tables import OutboxItem, OutboxState
from commands.base import Invocation, UsageError

NAME = "outbox"


def run(inv: Invocation) -> Reply:
    if inv.args:
        if len(inv.args) != 2 or inv.args[0] != "retry" or not inv.args[1].isdigit():
            raise UsageError("`outbox` alone lists; `outbox retry ID` retries one", NAME)
        with session_scope(inv.services.engine) as s:
            item = s.get(OutboxItem, int(inv.args[1]))
            if item is None or item.state is not OutboxState.DEAD:
                raise UsageError(f"item {inv.args[1]} is not one that gave up", NAME)
            item.state, item.next_attempt_at = OutboxState.PENDING, inv.services.clock()
        inv.services.outbox.poke()
    with session_scope(inv.services.engine) as s:
        items = s.exec(select(OutboxItem).where(col(OutboxItem.state).in_([OutboxState.PENDING, OutboxState.DEAD]))
                       .order_by(col(OutboxItem.id)).limit(50)).all()
    return Reply("outbox", {"items": items, "now": inv.services.clock(), "command": inv.services.command})
