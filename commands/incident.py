"""``/dr incident [open TITLE... [sev1..sev4] [SERVICE...] | status STATUS [MESSAGE...] | note TEXT...]``."""
from __future__ import annotations

from bot.incident_view import channel_view, context_of
from bot.incidents import STATUSES, NoIncident, note_in_channel, open_by_hand, status_in_channel
from bot.render import Reply
from commands.base import Invocation, UsageError

NAME = "incident"
SEVERITIES = ("sev1", "sev2", "sev3", "sev4")


def run(inv: Invocation) -> Reply:
    words = list(inv.args)
    verb = words.pop(0).lower() if words else ""
    sv = inv.services
    if verb == "open":
        return _open(inv, words)
    if verb == "":
        context, open_ = channel_view(sv, inv.actor.channel)
        if context is None:
            return Reply("incident_list", {"incidents": open_, "command": sv.command})
        return Reply("incident_summary", context)
    nowhere = UsageError("no open incident here: run this in an incident channel, or open one with "
                         f"`{sv.command} incident open TITLE`", NAME)
    try:
        if verb == "status":
            if not words or words[0].lower() not in STATUSES:
                raise UsageError(f"give the status: one of {', '.join(STATUSES)}", NAME)
            inc = status_in_channel(sv, inv.actor, inv.actor.channel, words[0].lower(), " ".join(words[1:]))
            return Reply("incident_summary", context_of(sv, inc.id), ephemeral=False)
        if verb == "note":
            if not words:
                raise UsageError("write the note after `note`", NAME)
            inc = note_in_channel(sv, inv.actor, inv.actor.channel, inv.text.split(None, 1)[1])
            return Reply("incident_noted", {"inc": inc})
    except NoIncident:
        raise nowhere from None
    raise UsageError(f"unknown incident action '{verb}' (open, status, note)", NAME)


def _open(inv: Invocation, words: list[str]) -> Reply:
    names = set(inv.services.config.service_names)
    severity = next((w.lower() for w in words if w.lower() in SEVERITIES), "sev2")
    services = [w for w in words if w in names]
    title = " ".join(w for w in words if w.lower() not in SEVERITIES and w not in names).strip()
    if not title:
        raise UsageError("give the incident a title", NAME)
    inc = open_by_hand(inv.services, inv.actor, title, severity, services)
    return Reply("incident_opened_ack", {"inc": inc, "services": services})
