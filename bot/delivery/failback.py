"""Delivery of the failback assistant's suggestion: one post with the Plan failback button,
in the service's open incident's channel (waiting until that channel exists) or in the
channel the watch posts to."""
from __future__ import annotations

from datetime import datetime

from bot.delivery.incidents import channel_of
from bot.events import FailbackSuggestion
from bot.messenger import DeliveryFailed
from bot.outbox.kinds import Outcome
from bot.render import Reply
from bot.services import Services
from bot.store import session_scope
from bot.store.incident_tables import Incident


def _channel(services: Services, ev: FailbackSuggestion) -> str:
    if ev.incident_id is None:
        return ev.channel
    with session_scope(services.engine) as s:
        inc = s.get(Incident, ev.incident_id)
    if inc is None:  # as for a channel not created yet: retried, then given up
        raise DeliveryFailed("the incident channel does not exist yet", transient=True, retry_after=2.0)
    return channel_of(inc)


def deliver_suggestion(services: Services, ev: FailbackSuggestion, _prepared, _item: int) -> Outcome:
    channel = _channel(services, ev)
    context = {"s": ev.suggestion, "at": datetime.fromisoformat(ev.suggestion["at"]),
               "moved_at": datetime.fromisoformat(ev.suggestion["moved_at"]), "command": services.command}
    ts = services.messenger.post(channel, Reply("failback_suggestion", context, ephemeral=False))
    return Outcome(result={"channel": channel, "ts": ts})
