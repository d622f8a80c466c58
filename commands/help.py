"""``/dr help [COMMAND]``: usage of every subcommand, or of one (rendered by the router
from the table)."""
from __future__ import annotations

from bot.render import Reply
from commands.base import Invocation, UsageError

NAME = "help"


def run(inv: Invocation) -> Reply:
    raise UsageError(None, inv.args[0].lower() if inv.args else None)
