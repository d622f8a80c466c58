"""Parsing shared by the commands that create change requests (and the words they share
with others: regions, drill scenarios, a choice among known words).

The rules, so that a typo is never taken for a reason: the service comes first and must
exist; ``to`` right after it always introduces a region, which must exist (a reason may
not start with the word ``to``); a word starting with ``--`` must be ``--break-glass`` or
``--allow-data-loss``; a drill's first word after the service must name one of its
scenarios (``default`` too, when a reason follows). Each violation is a usage error that
names the word and what is allowed.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from bot.durations import DurationError, parse_duration

from commands.base import Invocation, UsageError, pick_service

BREAK_GLASS = "--break-glass"
ALLOW_DATA_LOSS = "--allow-data-loss"
"""Accept moving to a database that does not replicate from the writer (audited)."""


@dataclass(frozen=True)
class ChangeArgs:
    service: str
    to_region: str | None
    rest: list[str]
    """Words after the service and ``to REGION``: the scenario (drills) and the reason."""
    justification: str | None
    """Words after ``--break-glass``; None when the flag is absent."""
    allow_data_loss: bool = False
    """``--allow-data-loss`` was given (before ``--break-glass``, anywhere after the service)."""


def not_one_of(word: str, allowed, what: str, label: str, topic: str, hint: str = "") -> UsageError:
    """The usage error for ``word`` that is not ``what`` (e.g. "a region"): names the word,
    the closest allowed one, and all of them after ``label`` (e.g. "Regions")."""
    allowed = list(allowed)
    close = difflib.get_close_matches(word.lower(), [a.lower() for a in allowed], n=1)
    guess = next((a for a in allowed if close and a.lower() == close[0]), None)
    return UsageError(f"'{word}' is not {what}" + (f" (did you mean '{guess}'?)" if guess else "")
                      + f". {label}: {', '.join(allowed) or 'none'}" + (f". {hint}" if hint else ""), topic)


def pick_region(inv: Invocation, word: str, topic: str) -> str:
    regions = inv.services.config.regions
    if word in regions:
        return word
    raise not_one_of(word, regions, "a region", "Regions", topic)


def pick_scenario(inv: Invocation, service: str, word: str, topic: str, before_reason: str = "") -> str:
    """One of the drill scenarios of ``service``. ``before_reason``: the command up to the
    scenario, for the hint that a reason comes after the scenario."""
    scenarios = list(inv.services.config.service(service).runbooks.drill)
    if word in scenarios:
        return word
    if not scenarios:
        raise UsageError(f"{service} has no drill scenarios: add runbooks.drill.default to its config", topic)
    example = "default" if "default" in scenarios else scenarios[0]
    hint = f"Name the scenario before a reason, e.g. `{before_reason} {example} quarterly practice`" \
        if before_reason else ""
    raise not_one_of(word, scenarios, f"a drill scenario of {service}", "Scenarios", topic, hint)


def parse(inv: Invocation, topic: str, allow_to: bool = True) -> ChangeArgs:
    words = list(inv.args)
    justification = None
    if BREAK_GLASS in words:
        i = words.index(BREAK_GLASS)
        justification = " ".join(words[i + 1:])
        words = words[:i]
    allow_data_loss = ALLOW_DATA_LOSS in words
    words = [w for w in words if w != ALLOW_DATA_LOSS]
    option = next((w for w in words if w.startswith("--") and len(w) > 2 and w[2].isalpha()), None)
    if option is not None:
        raise not_one_of(option, [BREAK_GLASS, ALLOW_DATA_LOSS], "an option", "Options", topic)
    if not words:
        raise UsageError(f"name the service: one of {', '.join(inv.services.config.service_names)}", topic)
    service = pick_service(inv, words[0], topic)
    words = words[1:]
    to_region = None
    if words and words[0].lower() == "to":
        regions = ", ".join(inv.services.config.regions)
        if not allow_to:
            raise UsageError(f"a {topic} runs in the service's standby region: leave out `to` "
                             f"(it takes no region)", topic)
        if len(words) < 2:
            raise UsageError(f"`to` needs a region after it: one of {regions}", topic)
        to_region = pick_region(inv, words[1], topic)
        words = words[2:]
    return ChangeArgs(service, to_region, words, justification, allow_data_loss)


def reason_of(inv: Invocation, args: ChangeArgs, topic: str) -> str:
    """The reason: the words left. A lone region name is a forgotten ``to``, not a reason."""
    if len(args.rest) == 1 and args.rest[0] in inv.services.config.regions:
        raise UsageError(f"'{args.rest[0]}' is a region, not a reason: write `to {args.rest[0]}` and then "
                         "the reason", topic)
    return " ".join(args.rest)


def regions_for(inv: Invocation, service: str, kind: str, to_region: str | None, topic: str) -> tuple[str, str]:
    """(from, to) for a change of ``kind``, from where the service runs now."""
    active, standby = inv.services.status.regions()[service]
    svc = inv.services.config.service(service)
    if kind == "failback":
        if to_region is not None and to_region != svc.active:
            raise UsageError(f"a failback goes back to the home region of {service}, {svc.active}, not to {to_region}: "
                             f"leave out `to {to_region}` (or ask for a failover to it)", topic)
        if active == svc.active:
            raise UsageError(f"{service} already runs in its home region {svc.active}: nothing to fail back", topic)
        return active, svc.active
    to = to_region or standby
    if to == active:
        raise UsageError(f"{service} already runs in {active}", topic)
    if to not in (svc.active, svc.standby):
        raise UsageError(f"{service} runs only in {svc.active} and {svc.standby}", topic)
    return active, to


def parse_when(words: list[str], tz: str, now, topic: str):
    """A time people type: '2026-12-03 10:00' or '2026-12-03T10:00' (in ``tz`` unless it
    carries an offset), or 'in 2h' / '+2h'. Returns (aware UTC datetime, words left)."""
    if not words:
        raise UsageError("say when, e.g. `2026-12-03 10:00` or `in 2h`", topic)
    if words[0] in ("in", "+") and len(words) > 1 or words[0].startswith("+"):
        text = words[1] if words[0] in ("in", "+") else words[0][1:]
        rest = words[2:] if words[0] in ("in", "+") else words[1:]
        try:
            return now + parse_duration(text), rest
        except DurationError:
            raise UsageError(f"'{text}' is not a duration (use 2h or 3d)", topic) from None
    text, rest = words[0], words[1:]
    if rest and len(rest[0]) in (4, 5) and ":" in rest[0]:
        text, rest = f"{text}T{rest[0]}", rest[1:]
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"'{text}' is not a time (use 2026-12-03 10:00, or in 2h)", topic) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=ZoneInfo(tz))
    at = at.astimezone(timezone.utc)
    if at <= now:
        raise UsageError(f"{text} is in the past", topic)
    return at, rest
