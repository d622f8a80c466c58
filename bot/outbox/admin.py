"""What people see of the outbox (``/dr outbox``) and the one thing they may do: retry an
item that gave up."""
from __future__ import annotations

from sqlmodel import col, select

from bot.actor import Actor
from bot.audit import record
from bot.permissions import require
from bot.services import Services
from bot.store import session_scope
from bot.store.incident_tables import OutboxItem, OutboxState


def waiting(services: Services, limit: int = 50) -> list[OutboxItem]:
    """Items not delivered yet, and those given up on, oldest first."""
    with session_scope(services.engine) as s:
        return list(s.exec(select(OutboxItem).where(col(OutboxItem.state).in_([OutboxState.PENDING, OutboxState.DEAD]))
                           .order_by(col(OutboxItem.id)).limit(limit)))


def retry(services: Services, actor: Actor, item_id: int) -> bool:
    """Make a dead item due again (its stream resumes behind it); False if it is not dead.
    Only a holder of ``outbox_retry`` may: a retry can publish to the status page."""
    require(services, actor, "outbox_retry")
    with session_scope(services.engine) as s:
        item = s.get(OutboxItem, item_id)
        if item is None or item.state is not OutboxState.DEAD:
            return False
        item.state, item.next_attempt_at, item.attempts = OutboxState.PENDING, services.clock(), 0
        record(s, actor, "outbox.retry", target=item.kind, detail={"item": item.id, "stream": item.stream})
    if services.outbox is not None:
        services.outbox.poke()
    return True
