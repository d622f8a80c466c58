"""``/dr incident [open TITLE... [sev1..sev4] [SERVICE...] | status STATUS [MESSAGE...] | note TEXT... |
role ROLE @person|me | severity sevN REASON...]``."""
from __future__ import annotations

import re

from bot.incident_command import set_role, set_severity
from bot.incident_view import channel_view, context_of
from bot.incidents import STATUSES, NoIncident, note_in_channel, open_by_hand, status_in_channel
from bot.render import Reply
from commands.base import Invocation, UsageError
from commands.change_args import not_one_of

NAME = "incident"
SEVERITIES = ("sev1", "sev2", "sev3", "sev4")
SEVERITY_LIKE = re.compile(r"sev\W?\d+", re.IGNORECASE)
MENTION = re.compile(r"<@([UW][A-Z0-9]{2,})(?:\|([^>]*))?>|([UW][A-Z0-9]{2,})")
"""A word meant as a severity: it must then be one of SEVERITIES (``sev9`` is an error, not a title)."""


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
        if verb == "role":
            return _role(inv, words)
        if verb == "severity":
            return _severity(inv, words)
    except NoIncident:
        raise nowhere from None
    raise UsageError(f"unknown incident action '{verb}' (open, status, note, role, severity)", NAME)


def _role(inv: Invocation, words: list[str]) -> Reply:
    roles = inv.services.config.incidents.roles
    if len(words) != 2:
        raise UsageError(f"say the role and the person: `{inv.services.command} incident role ROLE @person` "
                         f"(or `me`). Roles: {', '.join(roles)}", NAME)
    role = words[0].lower()
    if role not in roles:
        raise not_one_of(words[0], roles, "a role of an incident", "Roles", NAME)
    user, name = person(inv, words[1])
    inc, previous = set_role(inv.services, inv.actor, inv.actor.channel, role, user, name)
    return Reply("incident_role_set", {"inc": inc, "role": role, "user": user, "previous": previous},
                 ephemeral=False)


def person(inv: Invocation, word: str) -> tuple[str, str]:
    """(user ID, name as typed) from ``me``, a mention as Slack escapes it (``<@U123|alice>``)
    or a user ID."""
    if word.lower() == "me":
        return inv.actor.id, inv.actor.name
    m = MENTION.fullmatch(word)
    if m:
        return m.group(1) or m.group(3), m.group(2) or ""
    raise UsageError(f"'{word}' is not a person drbot can tell: mention them (@name, which Slack sends as "
                     "<@U…>), give their user ID (U0123ABCD), or say `me`", NAME)


def _severity(inv: Invocation, words: list[str]) -> Reply:
    if not words or words[0].lower() not in SEVERITIES:
        raise not_one_of(words[0] if words else "", SEVERITIES, "a severity", "Severities", NAME)
    if len(words) < 2:
        raise UsageError(f"say why after the severity: `{inv.services.command} incident severity "
                         f"{words[0].lower()} REASON...`", NAME)
    reason = inv.text.split(None, 2)[2]
    inc, previous = set_severity(inv.services, inv.actor, inv.actor.channel, words[0].lower(), reason)
    return Reply("incident_severity_set", {"inc": inc, "previous": previous, "reason": reason}, ephemeral=False)


def _open(inv: Invocation, words: list[str]) -> Reply:
    title, severity, services = _open_args(inv, words)
    inc = open_by_hand(inv.services, inv.actor, title, severity, services)
    return Reply("incident_opened_ack", {"inc": inc, "services": services})


def _open_args(inv: Invocation, words: list[str]) -> tuple[str, str, list[str]]:
    """``TITLE... [SEVERITY] [SERVICE...]`` (the severity may also come first). A word that
    looks like a severity must be one; after a severity in the middle, every word must be a
    service; without one, service names at the end are the services. Default sev2."""
    names = inv.services.config.service_names
    at = [i for i, w in enumerate(words) if SEVERITY_LIKE.fullmatch(w)]
    for i in at:
        if words[i].lower() not in SEVERITIES:
            raise not_one_of(words[i], SEVERITIES, "a severity", "Severities", NAME)
    if len(at) > 1:
        raise UsageError(f"give one severity, not {len(at)}: {', '.join(words[i] for i in at)}", NAME)
    severity, services = (words[at[0]].lower() if at else "sev2"), []
    if at and at[0] > 0:
        title_words, after = words[:at[0]], words[at[0] + 1:]
        for w in after:
            if w not in names:
                raise not_one_of(w, names, "a service", "Services", NAME,
                                 "After the severity come only service names; the title goes before it")
        services = after
    else:
        title_words = words[1:] if at else list(words)
        while title_words and title_words[-1] in names:
            services.insert(0, title_words.pop())
    title = " ".join(title_words).strip()
    if not title:
        raise UsageError(f"give the incident a title: `{inv.services.command} incident open TITLE... "
                         f"[sev1..sev4] [SERVICE...]`", NAME)
    return title, severity, list(dict.fromkeys(services))

