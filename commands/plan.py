"""``/dr plan SERVICE [to REGION] [failover|failback|drill [SCENARIO]]``: the dry run.
Pre-flight checks with live values and every step with what it would do; changes nothing."""
from __future__ import annotations

from bot.preflight import run_preflight
from bot.render import Reply
from bot.steps import would_do
from commands import evacuate
from commands.base import Invocation, UsageError
from commands.change_args import not_one_of, parse, pick_scenario, regions_for

NAME = "plan"
KINDS = ("failover", "failback", "drill")


def run(inv: Invocation) -> Reply:
    if evacuate.asks_for_evacuation(inv):
        return evacuate.plan(inv)
    args = parse(inv, NAME)
    if args.justification is not None:
        raise UsageError("a dry run changes nothing: leave out --break-glass", NAME)
    words = list(args.rest)
    kind = words.pop(0).lower() if words else "failover"
    if kind not in KINDS:
        raise not_one_of(kind, KINDS, "a kind of change", "Kinds", NAME)
    svc = inv.services.config.service(args.service)
    scenario = pick_scenario(inv, args.service, words.pop(0), NAME) if kind == "drill" and words else ""
    if words:
        raise UsageError(f"unexpected words after the {kind}{' scenario' if scenario else ''}: "
                         f"{' '.join(words)}", NAME)
    steps = svc.runbooks.steps(kind, scenario or None)
    if not steps:
        raise UsageError(f"{args.service} has no {kind} runbook", NAME)
    from_region, to_region = regions_for(inv, args.service, kind, args.to_region, NAME)
    pre = run_preflight(inv.services, svc, from_region, to_region, steps, allow_data_loss=args.allow_data_loss)
    planned = [(step, would_do(inv.services, svc, step, kind, from_region, to_region)) for step in steps]
    return Reply("plan", {"svc": svc, "kind": kind, "scenario": scenario, "from_region": from_region,
                          "to_region": to_region, "preflight": pre, "planned": planned,
                          "command": inv.services.command})

