"""``/dr failback SERVICE REASON... [--break-glass JUSTIFICATION...]``:
ask for a failback; it runs only after approval."""
from __future__ import annotations

from bot.render import Reply
from bot.store.models import RequestKind
from commands.base import Invocation
from commands.change_args import parse
from commands.requesting import request

NAME = "failback"


def run(inv: Invocation) -> Reply:
    args = parse(inv, NAME, allow_to=False)
    return request(inv, RequestKind.FAILBACK, args, " ".join(args.rest))
