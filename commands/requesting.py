"""What failover, failback and drill share: turn parsed words into a change request."""
from __future__ import annotations

from bot import changes
from bot.changes import Refused
from bot.render import Reply
from bot.store.models import RequestKind
from commands.base import Invocation, UsageError
from commands.change_args import ChangeArgs, regions_for


def request(inv: Invocation, kind: RequestKind, args: ChangeArgs, reason: str, scenario: str = "") -> Reply:
    svc = inv.services.config.service(args.service)
    steps = svc.runbooks.steps(kind.value, scenario or None)
    if not steps:
        where = f"runbooks.drill.{scenario or 'default'}" if kind is RequestKind.DRILL else f"runbooks.{kind.value}"
        raise UsageError(f"{args.service} has no {kind.value} runbook: add {where} to its config", kind.value)
    if kind is not RequestKind.DRILL and not reason:
        raise UsageError(f"a {kind.value} needs a reason, e.g. `{inv.services.command} {kind.value} "
                         f"{args.service} 5xx at 40% in the active region`", kind.value)
    if any(st.action == "database.failover" for st in steps) and "data loss" not in reason.lower():
        raise UsageError("this runbook fails the database over with allow_data_loss: the reason must name "
                         "the data loss you accept, e.g. '... accept data loss of up to 1m'", kind.value)
    if args.allow_data_loss and "data loss" not in reason.lower():
        raise UsageError("--allow-data-loss accepts losing what the target's database lacks: the reason must "
                         "name the data loss you accept, e.g. '... accept data loss since the failover'", kind.value)
    if args.justification is not None and not args.justification.strip():
        raise UsageError("--break-glass needs a written justification after it", kind.value)
    from_region, to_region = regions_for(inv, args.service, kind.value, args.to_region, kind.value)
    try:
        req = changes.create(inv.services, inv.actor, kind, args.service, from_region, to_region, steps, reason,
                             scenario=scenario, break_glass=args.justification is not None,
                             justification=args.justification or "", allow_data_loss=args.allow_data_loss)
    except Refused as r:
        return r.reply()
    return Reply("request_created", {"req": req, "command": inv.services.command})
