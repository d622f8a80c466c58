"""Queue a typed event in the caller's transaction."""
from __future__ import annotations

import uuid
from datetime import datetime
from functools import cache

from sqlalchemy import and_, bindparam, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from bot.events import BY_KIND, Event
from bot.store.batch import Write, Writes
from bot.store.incident_tables import OutboxItem, OutboxState


_ITEMS = OutboxItem.__table__


def _undelivered(t, bind):
    """An item with this coalescing key that no worker holds: a newer payload folds into it."""
    return and_(t.c.coalesce_key == bind("coalesce"), t.c.state == OutboxState.PENDING,
                or_(t.c.claimed_until.is_(None), t.c.claimed_until <= bind("now")))


_FOLD = _ITEMS.update().where(_undelivered(_ITEMS, bindparam))
"""Fold a newer payload into an undelivered item no worker holds: built once (a run queues
its progress at every step boundary)."""


def _checked(event: Event) -> str:
    if BY_KIND.get(event.KIND) is not type(event):
        raise TypeError(f"{type(event).__name__} is not a registered event kind")
    return event.model_dump_json()


_GIVEN = ("kind", "stream", "idempotency_key", "payload", "pace_key", "coalesce_key", "created_at", "next_attempt_at")


def _values(event: Event, payload: str, key: str | None, now: datetime) -> dict:
    """The columns ``_GIVEN`` of a new item."""
    return dict(zip(_GIVEN, (event.KIND, event.stream(), key or f"{event.KIND}:{uuid.uuid4().hex}", payload,
                             event.pace() or "", event.coalesce(), now, now)))


@cache
def _defaults() -> dict:
    """The other columns of a new item, as the model defaults them (taken from the model
    once: building a model object costs more than the rest of a step boundary)."""
    return OutboxItem().model_dump(exclude={"id", *_GIVEN})


def enqueue_in(writes: Writes, event: Event, now: datetime) -> None:
    """``enqueue`` of a coalescing event without an idempotency key (run progress) as a
    write of a batch (``bot.store.batch``): folded into the undelivered item, else queued."""
    payload, coalesce = _checked(event), event.coalesce()
    if coalesce is None or event.key() is not None:
        raise TypeError(f"{event.KIND}: only coalescing events without an idempotency key are queued in a batch")
    writes.add(Write(_ITEMS, {"payload": payload}, where=_undelivered, params={"coalesce": coalesce, "now": now},
                     otherwise=_defaults() | _values(event, payload, None, now)))


def enqueue(session: Session, event: Event, now: datetime) -> bool:
    """Add ``event`` to the outbox in the caller's transaction. False when it was queued
    before (same idempotency key) or folded into an undelivered item with the same
    coalescing key. ``now``: the services' clock, so the item is due at once under a test
    clock too."""
    payload = _checked(event)
    coalesce = event.coalesce()
    if coalesce is not None:
        # an item no worker holds takes the newer payload in place: it keeps its position in
        # its stream, and its delivery (which renders the state then) shows the newest state
        folded = session.execute(_FOLD, {"coalesce": coalesce, "now": now, "payload": payload}).rowcount
        if folded:
            return False
    key = event.key()
    if key is None:
        session.add(OutboxItem(**_values(event, payload, key, now)))
        return True
    # queued before, or at the same moment by another replica: one wins, in one round trip
    session.flush()  # what was added before keeps its place in the stream (ids in order)
    insert_once = _insert_once(session.get_bind().dialect.name)
    return session.execute(insert_once, _defaults() | _values(event, payload, key, now)).first() is not None


@cache
def _insert_once(dialect: str):
    """INSERT of a new item unless one with its idempotency key exists (both databases)."""
    stmt = (postgresql if dialect == "postgresql" else sqlite).insert(_ITEMS)
    return stmt.on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(_ITEMS.c.id)


def parse(item: OutboxItem) -> Event:
    """The typed event of a stored item, validated again (raises on a bad payload)."""
    return BY_KIND[item.kind].model_validate_json(item.payload)
