"""``/dr drills [history [SERVICE]]``: the upcoming drills with their next times in the
reader's terms, or the past drills with their results."""
from __future__ import annotations

from bot import drills
from bot.render import Reply
from commands.base import Invocation, UsageError, pick_service

NAME = "drills"


def run(inv: Invocation) -> Reply:
    words = list(inv.args)
    sv = inv.services
    if words and words[0] == "history":
        service = pick_service(inv, words[1], NAME) if len(words) > 1 else None
        targets = {svc.name: svc for svc in sv.config.services}
        runs, restores = drills.history(sv, service)
        return Reply("drills_history", {"runs": runs, "restores": restores, "targets": targets, "service": service,
                                        "now": sv.clock(), "command": sv.command})
    if words:
        raise UsageError(f"unexpected words: {' '.join(words)} (`drills` or `drills history [SERVICE]`)", NAME)
    return Reply("drills", {"upcoming": drills.upcoming(sv), "now": sv.clock(), "command": sv.command,
                            "tz": inv.actor.tz or sv.config.timezone})
