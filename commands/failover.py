"""``/dr failover SERVICE [to REGION] REASON... [--break-glass JUSTIFICATION...]``:
ask for a failover; it runs only after approval."""
from __future__ import annotations

from bot.render import Reply
from bot.store.models import RequestKind
from commands.base import Invocation
from commands.change_args import parse, reason_of
from commands.requesting import request

NAME = "failover"


def run(inv: Invocation) -> Reply:
    args = parse(inv, NAME, allow_to=True)
    return request(inv, RequestKind.FAILOVER, args, reason_of(inv, args, NAME))
