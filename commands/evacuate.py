"""Region evacuations. ``/dr plan evacuate REGION``: the dry run (``bot.evacuation_plan``):
waves by dependency, each service's pre-flight with live values, the data-loss risk, the
RTO its past runs measured, what would be refused and why. Changes nothing.

``/dr evacuate REGION REASON... [--break-glass JUSTIFICATION...]``: one request moving
every service active in REGION, wave by wave, once approved (``bot.evacuation``).
``/dr return REGION REASON... [--break-glass ...]``: the services whose home is REGION and
that run elsewhere come back, in reverse dependency order. The Abort and Resume buttons of
an evacuation are here too.

``/dr drill evacuate REGION [REASON...]`` (from ``commands.drill``): a region drill, the
same request marked as a drill (``bot.evacuation``), with a drill report at its end;
``/dr drill schedule evacuate REGION WHEN [REASON...]``: one on the drill calendar
(``bot.region_drills``)."""
from __future__ import annotations

from bot import drills, evacuation, region_drills
from bot.actor import Actor
from bot.changes import Refused
from bot.drill_schedules import ADHOC
from bot.evacuation_plan import plan_evacuation
from bot.render import Reply
from bot.services import Services
from commands.base import Invocation, UsageError, request_id
from commands.change_args import BREAK_GLASS, not_one_of, parse_when

WORD = "evacuate"
TOPIC = "plan"
RETURN = "return"


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


def _ask(inv: Invocation, direction: str) -> Reply:
    topic = RETURN if direction == "return" else WORD
    words = list(inv.args)
    justification = None
    if BREAK_GLASS in words:
        i = words.index(BREAK_GLASS)
        justification = " ".join(words[i + 1:])
        words = words[:i]
        if not justification.strip():
            raise UsageError("--break-glass needs a written justification after it", topic)
    option = next((w for w in words if w.startswith("--") and len(w) > 2), None)
    if option is not None:
        raise not_one_of(option, [BREAK_GLASS], "an option", "Options", topic)
    regions = inv.services.config.regions
    example = f"`{inv.services.command} {topic} {regions[0]} the region is down since 09:40`"
    if not words:
        raise UsageError(f"say which region, then why, e.g. {example}", topic)
    region = words[0]
    if region not in regions:
        raise not_one_of(region, regions, "a region", "Regions", topic)
    reason = " ".join(words[1:])
    if not reason:
        raise UsageError(f"{'a return' if direction == 'return' else 'an evacuation'} needs a reason, e.g. {example}",
                         topic)
    try:
        req = evacuation.create(inv.services, inv.actor, region, reason, direction=direction,
                                break_glass=justification is not None, justification=justification or "")
    except Refused as r:
        return r.reply()
    return Reply("evacuation_created", {"req": req, "command": inv.services.command})


def run(inv: Invocation) -> Reply:
    return _ask(inv, "evacuate")


def asks_for_drill(inv: Invocation) -> bool:
    """``drill evacuate ...``, unless a service is called 'evacuate' (then it is that service)."""
    return asks_for_evacuation(inv)


def run_drill(inv: Invocation, words: list[str] | None = None, scheduled: bool = False) -> Reply:
    """``/dr drill evacuate REGION [REASON...]``: a region drill, asked for now; with
    ``scheduled`` (``/dr drill schedule evacuate REGION WHEN [REASON...]``), at WHEN."""
    topic = "drill"
    words = list(inv.args[1:]) if words is None else words
    option = next((w for w in words if w.startswith("--") and len(w) > 2), None)
    if option is not None:  # a drill never needs break-glass or an accepted data loss
        raise UsageError(f"a region drill takes no option ({option}): "
                         f"`{inv.services.command} drill evacuate REGION [REASON...]`", topic)
    region = drill_region(inv, words, "drill schedule evacuate" if scheduled else "drill evacuate")
    sv = inv.services
    try:
        if not scheduled:
            req = evacuation.create(sv, inv.actor, region, " ".join(words[1:]) or "region drill", direction="drill")
        else:
            at, rest = parse_when(words[1:], sv.config.timezone, sv.clock(), topic)
            req = region_drills.create(sv, region, ADHOC, at, requester=inv.actor,
                                       reason=" ".join(rest) or "scheduled region drill")
            if req is None:
                raise UsageError(f"a region drill of {region} is already planned for that time", topic)
            drills.tick(sv)  # announce it now if it is due
    except Refused as r:
        return r.reply()
    return Reply("evacuation_created", {"req": req, "command": sv.command})


EXAMPLES = {"drill evacuate": "quarterly game day", "drill schedule evacuate": "in 2h quarterly game day",
            "drill postpone evacuate": "to 2026-12-03 10:00 a change freeze",
            "drill skip evacuate": "the region is being rebuilt"}


def drill_region(inv: Invocation, words: list[str], verb: str) -> str:
    """The region of ``/dr drill [schedule|postpone|skip] evacuate REGION ...``: ``words[0]``."""
    regions = inv.services.config.regions
    if not words:
        raise UsageError(f"say which region to drill, e.g. `{inv.services.command} {verb} {regions[0]} "
                         f"{EXAMPLES[verb]}`", "drill")
    if words[0] not in regions:
        raise not_one_of(words[0], regions, "a region", "Regions", "drill")
    return words[0]


def run_return(inv: Invocation) -> Reply:
    return _ask(inv, "return")


def _button(verb: str, act):
    """A button of an evacuation's message: ``act`` on the evacuation its value names (a
    refusal is answered by the router, like any click's)."""
    def run(services: Services, actor: Actor, value: str) -> Reply | None:
        act(services, actor, request_id(verb, value))
        return None
    return run


abort = _button("abort", evacuation.abort)
resume = _button("resume", evacuation.request_resume)
rollback = _button("rollback", evacuation.request_rollback)
