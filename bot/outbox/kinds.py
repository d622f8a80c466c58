"""What a kind of outbox event needs to be delivered: its handler, and what happens when
it cannot be."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from sqlmodel import Session

from bot.events import Event


@dataclass
class Outcome:
    """What a handler says: delivered (with a result), retry later, or give up."""

    delivered: bool = True
    result: dict[str, Any] = field(default_factory=dict)
    retry_after: float | None = None
    error: str = ""
    dead: bool = False
    apply: Callable[[Session], None] | None = None
    """State to record with the delivery, in the same transaction (e.g. a message's ts)."""


@dataclass(frozen=True)
class Kind:
    """One kind of event and how it is delivered.

    ``prepare(services, session, event)`` reads what the delivery needs in the transaction
    that claims the item (no transaction of its own); ``deliver(services, event, prepared,
    item_id)``
    runs outside any transaction and may call slow services; it raises
    ``bot.messenger.DeliveryFailed`` or ``integrations.base.IntegrationError`` to be retried
    (transient) or given up (permanent). After ``max_attempts`` failed attempts, or a
    permanent failure, the item is dead: it blocks its stream (order is kept) until someone
    retries it, and ``give_up(services, session, event, error)`` runs in that transaction.
    """

    event: type[Event]
    deliver: Callable[..., Outcome]
    prepare: Callable[..., Any] | None = None
    max_attempts: int | None = None
    give_up: Callable[..., None] | None = None
