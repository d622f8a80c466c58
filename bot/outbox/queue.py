"""Queue a typed event in the caller's transaction."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import bindparam, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from bot.events import BY_KIND, Event
from bot.store.incident_tables import OutboxItem, OutboxState


_ITEMS = OutboxItem.__table__
_FOLD = _ITEMS.update().where(_ITEMS.c.coalesce_key == bindparam("coalesce"),
                              _ITEMS.c.state == OutboxState.PENDING,
                              or_(_ITEMS.c.claimed_until.is_(None), _ITEMS.c.claimed_until <= bindparam("now")))
"""Fold a newer payload into an undelivered item no worker holds: built once (a run queues
its progress at every step boundary)."""


def enqueue(session: Session, event: Event, now: datetime) -> bool:
    """Add ``event`` to the outbox in the caller's transaction. False when it was queued
    before (same idempotency key) or folded into an undelivered item with the same
    coalescing key. ``now``: the services' clock, so the item is due at once under a test
    clock too."""
    if BY_KIND.get(event.KIND) is not type(event):
        raise TypeError(f"{type(event).__name__} is not a registered event kind")
    payload = event.model_dump_json()
    coalesce = event.coalesce()
    if coalesce is not None:
        # an item no worker holds takes the newer payload in place: it keeps its position in
        # its stream, and its delivery (which renders the state then) shows the newest state
        folded = session.execute(_FOLD, {"coalesce": coalesce, "now": now, "payload": payload}).rowcount
        if folded:
            return False
    key = event.key()
    if key is not None and session.exec(select(OutboxItem.id).where(OutboxItem.idempotency_key == key)).first():
        return False
    item = OutboxItem(kind=event.KIND, stream=event.stream(), idempotency_key=key or f"{event.KIND}:{uuid.uuid4().hex}",
                      payload=payload, pace_key=event.pace() or "", coalesce_key=coalesce,
                      created_at=now, next_attempt_at=now)
    if key is None:
        session.add(item)
        return True
    try:  # the same key queued at the same moment by another replica: one wins
        with session.begin_nested():
            session.add(item)
    except IntegrityError:
        return False
    return True


def parse(item: OutboxItem) -> Event:
    """The typed event of a stored item, validated again (raises on a bad payload)."""
    return BY_KIND[item.kind].model_validate_json(item.payload)
