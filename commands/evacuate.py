"""``/dr plan evacuate REGION``: the dry run of a region evacuation (``bot.evacuation_plan``):
waves by dependency, each service's pre-flight with live values, the data-loss risk, the RTO
its past runs measured, what would be refused and why. Changes nothing."""
from __future__ import annotations

from bot.evacuation_plan import plan_evacuation
from bot.render import Reply
from commands.base import Invocation, UsageError
from commands.change_args import not_one_of

WORD = "evacuate"
TOPIC = "plan"


def asks_for_evacuation(inv: Invocation) -> bool:
    """``plan evacuate ...``, unless a service is called 'evacuate' (then it is that service)."""
    return bool(inv.args) and inv.args[0].lower() == WORD and inv.services.config.service(WORD) is None


def plan(inv: Invocation) -> Reply:
    words = inv.args[1:]
    regions = inv.services.config.regions
    if not words:
        raise UsageError(f"say which region to evacuate, e.g. `{inv.services.command} plan evacuate {regions[0]}`",
                         TOPIC)
    region = words[0]
    if region not in regions:
        raise not_one_of(region, regions, "a region", "Regions", TOPIC)
    if len(words) > 1:
        raise UsageError(f"unexpected words after the region: {' '.join(words[1:])}", TOPIC)
    return Reply("evacuation_plan", {"plan": plan_evacuation(inv.services, region), "command": inv.services.command})
