"""Delivery of the readiness watch's changes and the weekly digest: one post each, rendered
from the data the job gathered when it decided to post."""
from __future__ import annotations

from bot.digest import digest_context
from bot.events import ReadinessChange, WeeklyDigest
from bot.outbox.kinds import Outcome
from bot.render import Reply
from bot.services import Services
from bot.watch import change_context


def deliver_readiness(services: Services, ev: ReadinessChange, _prepared, _item: int) -> Outcome:
    ts = services.messenger.post(ev.channel, Reply("readiness_change", change_context(services, ev.change),
                                                   ephemeral=False))
    return Outcome(result={"channel": ev.channel, "ts": ts})


def deliver_digest(services: Services, ev: WeeklyDigest, _prepared, _item: int) -> Outcome:
    ts = services.messenger.post(ev.channel, Reply("weekly_digest", digest_context(services, ev.digest),
                                                   ephemeral=False))
    return Outcome(result={"channel": ev.channel, "ts": ts})
