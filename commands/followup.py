"""``/dr followup [list] | add TEXT... [@owner|me] [due YYYY-MM-DD|in 3d] | done ID | reviewed``:
what to do after an incident, with owners and due dates (``bot.incident_followups``)."""
from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from bot.durations import DurationError, parse_duration
from bot.incident_followups import add, done, of_channel, reviewed
from bot.incidents import NoIncident
from bot.render import Reply
from commands.base import parse_id
from commands.base import Invocation, UsageError
from commands.incident import MENTION, person

NAME = "followup"


def run(inv: Invocation) -> Reply:
    words = list(inv.args)
    verb = words.pop(0).lower() if words else "list"
    sv = inv.services
    try:
        if verb == "list":
            inc, rows = of_channel(sv, inv.actor.channel)
            return Reply("followup_list", {"inc": inc, "followups": rows, "command": sv.command})
        if verb == "add":
            text, owner, name, due = _add_args(inv, words)
            row = add(sv, inv.actor, inv.actor.channel, text, owner, name, due)
            tracker = sv.config.incidents.followups.tracker
            return Reply("followup_added", {"f": row, "command": sv.command,
                                            "tracker": sv.backends[tracker].title if tracker else ""}, ephemeral=False)
        if verb == "done":
            number = parse_id(words[0]) if len(words) == 1 else None
            if number is None:
                raise UsageError(f"say which follow-up: `{sv.command} followup done ID` (`{sv.command} followup list` "
                                 "shows the IDs)", NAME)
            return Reply("followup_done", {"f": done(sv, inv.actor, number)}, ephemeral=False)
        if verb == "reviewed":
            return Reply("incident_reviewed", {"inc": reviewed(sv, inv.actor, inv.actor.channel)}, ephemeral=False)
    except NoIncident:
        raise UsageError("no incident here: run this in the incident's channel", NAME) from None
    raise UsageError(f"unknown followup action '{verb}' (list, add, done, reviewed)", NAME)


def _add_args(inv: Invocation, words: list[str]) -> tuple[str, str, str, datetime | None]:
    """``TEXT... [@owner|me] [due WHEN]``: the owner and the due date at the end, in either order."""
    due = None
    lowered = [w.lower() for w in words]
    if "due" in lowered:
        at = len(lowered) - 1 - lowered[::-1].index("due")
        due, words = _due(inv, words[at + 1:]), words[:at]
    owner = name = ""
    if words and (words[-1].lower() == "me" or MENTION.fullmatch(words[-1])):
        owner, name = person(inv, words.pop())
    text = " ".join(words).strip()
    if not text:
        raise UsageError(f"say what to do: `{inv.services.command} followup add TEXT... [@owner] "
                         "[due YYYY-MM-DD|in 3d]`", NAME)
    return text, owner, name, due


def _due(inv: Invocation, words: list[str]) -> datetime:
    """``YYYY-MM-DD`` (the end of that day, in the config's time zone) or ``in 3d`` / ``+3d``."""
    now = inv.services.clock()
    spec = " ".join(words).strip().lower()
    if spec.startswith(("in ", "+")):
        try:
            return now + parse_duration(spec.removeprefix("in ").removeprefix("+").strip())
        except DurationError as e:
            raise UsageError(f"due {spec}: {e}", NAME) from None
    try:
        day = datetime.strptime(spec, "%Y-%m-%d").date()
    except ValueError:
        raise UsageError(f"'{spec or '(nothing)'}' is not a due date: use YYYY-MM-DD or `in 3d`", NAME) from None
    end = datetime.combine(day, time(23, 59), ZoneInfo(inv.services.config.timezone))
    if end < now:
        raise UsageError(f"{day.isoformat()} has passed: give a due date from today on", NAME)
    return end
