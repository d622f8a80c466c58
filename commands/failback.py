"""``/dr failback SERVICE [to REGION] REASON... [--break-glass JUSTIFICATION...]``:
ask for a failback (REGION, if named, must be the home region); it runs only after approval."""
from __future__ import annotations

from bot.render import Reply
from bot.store.models import RequestKind
from commands.base import Invocation
from commands.change_args import parse, reason_of
from commands.requesting import request

NAME = "failback"


def run(inv: Invocation) -> Reply:
    args = parse(inv, NAME)
    return request(inv, RequestKind.FAILBACK, args, reason_of(inv, args, NAME))
