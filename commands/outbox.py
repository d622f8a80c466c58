"""``/dr outbox [retry ID]``: side effects waiting for delivery or given up on; retry one."""
from __future__ import annotations

from bot.outbox.admin import retry, waiting
from bot.render import Reply
from commands.base import Invocation, UsageError

NAME = "outbox"


def run(inv: Invocation) -> Reply:
    if inv.args:
        if len(inv.args) != 2 or inv.args[0] != "retry" or not inv.args[1].isdigit():
            raise UsageError("`outbox` alone lists; `outbox retry ID` retries one", NAME)
        if not retry(inv.services, int(inv.args[1])):
            raise UsageError(f"item {inv.args[1]} is not one that gave up", NAME)
    return Reply("outbox", {"items": waiting(inv.services), "now": inv.services.clock(),
                            "command": inv.services.command})
