"""Drill posts (announcements, 'starting now', missed, a region drill that could not be
planned), queued in the transaction that decided them: delivered through the outbox in the
occurrence's own stream (in order, paced, retried) even if Slack is down right now, and
never twice. ``bot.delivery.drills`` renders and posts them."""
from __future__ import annotations

from bot.events import DrillPost
from bot.outbox.queue import enqueue
from bot.services import Services
from bot.store.drill_tables import DrillOccurrence


def post(services: Services, s, occ: DrillOccurrence, what: str, lead: int = 0, why: str = "") -> None:
    """Queue the post ``what`` of ``occ`` in ``s``; nothing when the occurrence has no
    channel (none configured, nobody asked by hand)."""
    if occ.channel:
        enqueue(s, DrillPost(occurrence_id=occ.id, channel=occ.channel, what=what, lead=lead, why=why,
                             starts_at=occ.starts_at.isoformat()), services.clock())


def poke(services: Services) -> None:
    """After the transaction: deliver what it queued soon."""
    if services.outbox is not None:
        services.outbox.poke()
