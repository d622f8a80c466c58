"""``/dr outbox [retry ID]``: side effects waiting for delivery or given up on; retry one."""
from __future__ import annotations

from bot.outbox.admin import retry, waiting
from bot.render import Reply
from commands.base import Invocation, UsageError, parse_id

NAME = "outbox"


def run(inv: Invocation) -> Reply:
    if inv.args:
        item = parse_id(inv.args[1]) if len(inv.args) == 2 and inv.args[0] == "retry" else None
        if item is None:
            raise UsageError("`outbox` alone lists; `outbox retry ID` retries one", NAME)
        if not retry(inv.services, inv.actor, item):
            raise UsageError(f"item {inv.args[1]} is not one that gave up", NAME)
    return Reply("outbox", {"items": waiting(inv.services), "now": inv.services.clock(),
                            "command": inv.services.command})
