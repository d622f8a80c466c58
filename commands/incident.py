"""``/dr incident [open TITLE... [sev1..sev4] [SERVICE...] | status STATUS [MESSAGE...] | note TEXT...]``."""
from __future__ import annotations

from bot.incidents import STATUSES, add_note, for_channel, open_incident, open_incidents, set_status
from bot.outbox_handlers import incident_context
from bot.render import Reply
from bot.store import session_scope
from commands.base import Invocation, UsageError

NAME = "incident"
SEVERITIES = ("sev1", "sev2", "sev3", "sev4")


def run(inv: Invocation) -> Reply:
    words = list(inv.args)
    verb = words.pop(0).lower() if words else ""
    if verb == "open":
        return _open(inv, words)
    with session_scope(inv.services.engine) as s:
        inc = for_channel(s, inv.actor.channel)
        if verb == "":
            if inc is None:
                return Reply("incident_list", {"incidents": open_incidents(s), "command": inv.services.command})
            return Reply("incident_summary", incident_context(inv.services, s, inc))
        if inc is None:
            raise UsageError("no incident here: run this in an incident channel, or open one with "
                             f"`{inv.services.command} incident open TITLE`", NAME)
        if verb == "status":
            if not words or words[0].lower() not in STATUSES:
                raise UsageError(f"give the status: one of {', '.join(STATUSES)}", NAME)
            status = words[0].lower()
            if inc.status.value == "resolved":
                raise UsageError(f"incident #{inc.id} is already resolved", NAME)
            set_status(inv.services, s, inv.actor, inc, status, " ".join(words[1:]))
            reply = Reply("incident_summary", incident_context(inv.services, s, inc), ephemeral=False)
        elif verb == "note":
            if not words:
                raise UsageError("write the note after `note`", NAME)
            add_note(s, inv.actor, inc, inv.text.split(None, 1)[1])
            reply = Reply("incident_noted", {"inc": inc})
        else:
            raise UsageError(f"unknown incident action '{verb}' (open, status, note)", NAME)
    inv.services.outbox.poke()
    return reply


def _open(inv: Invocation, words: list[str]) -> Reply:
    names = set(inv.services.config.service_names)
    severity = next((w.lower() for w in words if w.lower() in SEVERITIES), "sev2")
    services = [w for w in words if w in names]
    title = " ".join(w for w in words if w.lower() not in SEVERITIES and w not in names).strip()
    if not title:
        raise UsageError("give the incident a title", NAME)
    with session_scope(inv.services.engine) as s:
        inc = open_incident(inv.services, s, inv.actor, title, severity, services)
    inv.services.outbox.poke()
    return Reply("incident_opened_ack", {"inc": inc, "services": services})
