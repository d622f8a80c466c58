"""``/dr drill SERVICE [SCENARIO [REASON...]]``: ask for a drill now; and changes to the
drill calendar, each approved like any change:
``/dr drill schedule SERVICE WHEN [SCENARIO [REASON...]]``,
``/dr drill postpone SERVICE to WHEN [REASON...]``, ``/dr drill skip SERVICE REASON...``.
``/dr drill evacuate REGION [REASON...]``, ``/dr drill schedule evacuate REGION WHEN
[REASON...]``: a region drill, now or at WHEN (``commands.evacuate``); postponed and
skipped like any drill on the calendar: ``/dr drill postpone evacuate REGION to WHEN
[REASON...]``, ``/dr drill skip evacuate REGION REASON...``."""
from __future__ import annotations

import difflib
from datetime import datetime

from bot import drills
from bot.changes import Refused
from bot.drill_schedules import ADHOC
from bot.render import Reply
from bot.store.evacuation_tables import REGION_PREFIX
from bot.store.models import RequestKind
from commands.base import Invocation, UsageError, pick_service
from commands.change_args import not_one_of, parse, parse_when, pick_scenario
from commands import evacuate
from commands.requesting import request

NAME = "drill"
CALENDAR = ("schedule", "postpone", "skip")


def run(inv: Invocation) -> Reply:
    if evacuate.asks_for_drill(inv):  # a region drill: every service active in REGION
        return evacuate.run_drill(inv)
    if inv.args and inv.args[0] in CALENDAR:
        return _calendar(inv, inv.args[0], list(inv.args[1:]))
    if inv.args and inv.args[0] not in inv.services.config.service_names:
        verb = difflib.get_close_matches(inv.args[0].lower(), CALENDAR, n=1)
        if verb:  # a typo of schedule/postpone/skip, not of a service
            raise not_one_of(inv.args[0], inv.services.config.service_names + list(CALENDAR),
                             "a service or a calendar change", "Choices", NAME)
    args = parse(inv, NAME, allow_to=False)
    words = list(args.rest)
    # the first word after the service names the scenario, always: a typo never becomes a reason
    scenario = pick_scenario(inv, args.service, words.pop(0), NAME,
                             f"{inv.services.command} drill {args.service}") if words else ""
    return request(inv, RequestKind.DRILL, args, " ".join(words) or "practice", scenario=scenario)


def _calendar(inv: Invocation, verb: str, words: list[str]) -> Reply:
    sv = inv.services
    if not words:
        raise UsageError(f"name the service: `{sv.command} drill {verb} SERVICE ...`", NAME)
    now = sv.clock()
    if words[0] == evacuate.WORD and sv.config.service(evacuate.WORD) is None:  # a region drill
        if verb == "schedule":
            return evacuate.run_drill(inv, words[1:], scheduled=True)
        region = evacuate.drill_region(inv, words[1:], f"drill {verb} evacuate")
        return _change(inv, verb, f"{REGION_PREFIX}{region}", f"region {region}", words[2:], now)
    service = pick_service(inv, words.pop(0), NAME)
    svc = sv.config.service(service)
    if verb == "schedule":
        at, rest = parse_when(words, sv.config.timezone, now, NAME)
        scenario = pick_scenario(inv, service, rest.pop(0), NAME,
                                 f"{sv.command} drill schedule {service} in 2h") if rest else "default"
        if not svc.runbooks.steps("drill", scenario):
            raise UsageError(f"{service} has no drill scenario '{scenario}'", NAME)
        occ_id = drills.create_occurrence(sv, svc, ADHOC, at, scenario, requester=inv.actor,
                                          reason=" ".join(rest) or "ad-hoc drill")
        if occ_id is None:
            raise UsageError(f"a drill of {service} is already planned for that time", NAME)
        drills.tick(sv)  # announce it now if it is due
        return Reply("drill_planned", {"service": service, "at": at, "command": sv.command})
    return _change(inv, verb, service, service, words, now)


def _change(inv: Invocation, verb: str, service: str, label: str, words: list[str], now: datetime) -> Reply:
    """Postpone or skip the next planned drill of ``service`` (a service or ``region:REGION``)."""
    sv = inv.services
    occ = drills.next_open(sv, service)
    if occ is None:
        raise UsageError(f"{label} has no planned drill to {verb}", NAME)
    if verb == "postpone":
        if words and words[0] == "to":
            words = words[1:]
        at, rest = parse_when(words, sv.config.timezone, now, NAME)
        kind, reason, to = RequestKind.DRILL_POSTPONE, " ".join(rest) or "postponed", at
    else:
        if not words:
            raise UsageError("say why the drill is skipped", NAME)
        kind, reason, to = RequestKind.DRILL_SKIP, " ".join(words), None
    try:
        req = drills.request_calendar_change(sv, inv.actor, occ.id, kind is RequestKind.DRILL_SKIP, reason, to)
    except Refused as r:
        return r.reply()
    return Reply("request_created", {"req": req, "command": sv.command})
