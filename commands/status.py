"""``/dr status [SERVICE] [public]``: DR readiness, every service worst first, or one in detail."""
from __future__ import annotations

from bot.render import Reply
from commands.base import Invocation, UsageError, pick_service

NAME = "status"


def run(inv: Invocation) -> Reply:
    args = list(inv.args)
    public = "public" in args
    args = [a for a in args if a != "public"]
    if len(args) > 1:
        raise UsageError(f"too many arguments: {' '.join(args)} (give one service, or none for all)", NAME)
    service = pick_service(inv, args[0], NAME) if args else None
    return reply_for(inv, service, ephemeral=not public)


def reply_for(inv: Invocation, service: str | None, ephemeral: bool = True, replace: bool = False) -> Reply:
    report = inv.services.status.report(service, history=service is not None)
    template = "status_detail" if service else "status_summary"
    return Reply(template, {"report": report, "command": inv.services.command},
                 ephemeral=ephemeral, replace_original=replace)
