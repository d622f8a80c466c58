"""``/dr drill SERVICE [SCENARIO] [REASON...]``: ask for a drill of a runbook scenario."""
from __future__ import annotations

from bot.render import Reply
from bot.store.models import RequestKind
from commands.base import Invocation
from commands.change_args import parse
from commands.requesting import request

NAME = "drill"


def run(inv: Invocation) -> Reply:
    args = parse(inv, NAME, allow_to=False)
    scenarios = inv.services.config.service(args.service).runbooks.drill
    words = list(args.rest)
    scenario = words.pop(0) if words and words[0] in scenarios else ""
    return request(inv, RequestKind.DRILL, args, " ".join(words) or "scheduled practice", scenario=scenario)
