"""``/dr help [COMMAND]``: usage of every subcommand, or of one."""
from __future__ import annotations

from bot.render import Reply
from commands.base import Invocation

NAME = "help"


def run(inv: Invocation) -> Reply:
    topic = inv.args[0] if inv.args else None
    return usage(inv, topic=topic)


def usage(inv: Invocation, error: str | None = None, topic: str | None = None) -> Reply:
    from commands.router import names

    known = names()
    if topic not in known:
        topic = None
    return Reply("usage", {"command": inv.services.command, "error": error, "topic": topic, "commands": known})
