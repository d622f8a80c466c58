"""``/dr cancel ID``: the requester withdraws a pending request."""
from __future__ import annotations

from bot import changes
from bot.render import Reply
from commands.base import Invocation, UsageError

NAME = "cancel"


def request_id(inv: Invocation, topic: str) -> int:
    if len(inv.args) != 1 or not inv.args[0].lstrip("#").isdigit():
        raise UsageError("give the request number, e.g. 12 or #12", topic)
    return int(inv.args[0].lstrip("#"))


def run(inv: Invocation) -> Reply:
    decision = changes.decide(inv.services, inv.actor, request_id(inv, NAME), "cancel")
    return decision.reply or Reply("request_cancelled", {"id": decision.request_id})
