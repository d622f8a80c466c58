"""Parsing shared by the commands that create change requests."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from bot.durations import DurationError, parse_duration

from commands.base import Invocation, UsageError, pick_service

BREAK_GLASS = "--break-glass"


@dataclass(frozen=True)
class ChangeArgs:
    service: str
    to_region: str | None
    rest: list[str]
    """Words after the service and ``to REGION``: the scenario (drills) and the reason."""
    justification: str | None
    """Words after ``--break-glass``; None when the flag is absent."""


def parse(inv: Invocation, topic: str, allow_to: bool = True) -> ChangeArgs:
    words = list(inv.args)
    justification = None
    if BREAK_GLASS in words:
        i = words.index(BREAK_GLASS)
        justification = " ".join(words[i + 1:])
        words = words[:i]
    if not words:
        raise UsageError("name the service", topic)
    service = pick_service(inv, words[0], topic)
    words = words[1:]
    to_region = None
    if allow_to and len(words) >= 2 and words[0].lower() == "to":
        to_region = words[1]
        regions = inv.services.config.regions
        if to_region not in regions:
            raise UsageError(f"'{to_region}' is not a region ({', '.join(regions)})", topic)
        words = words[2:]
    return ChangeArgs(service, to_region, words, justification)


def regions_for(inv: Invocation, service: str, kind: str, to_region: str | None, topic: str) -> tuple[str, str]:
    """(from, to) for a change of ``kind``, from where the service runs now."""
    active, standby = inv.services.status.regions()[service]
    svc = inv.services.config.service(service)
    if kind == "failback":
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
