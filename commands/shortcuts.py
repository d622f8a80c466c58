"""The Slack surfaces of incident command beyond ``/dr``: the "Declare incident" global
shortcut and its modal, the "Add to incident timeline" message shortcut, and the severity
and role modals opened from an incident's pinned summary. Each calls the same core
function, with the same permission rules, as the slash command it stands for."""
from __future__ import annotations

import json
import re

from bot.actor import Actor
from bot.incident_command import declare, set_role_of, set_severity_of
from bot.incidents import NoIncident, add_message
from bot.render import Reply
from bot.services import Services
from commands.base import FormError, UsageError, parse_id
from commands.incident import SEVERITIES

USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
MAX_TITLE = 150
"""Longer than a Slack header can show; the slash command's title is one line too."""


# -- the global shortcut: declare an incident --------------------------------------------

def declare_form(services: Services, actor: Actor, value: str) -> Reply:
    """The "Declare incident" shortcut: the modal (title, severity, services, commander)."""
    return Reply("modal_inc_declare", {"value": "0", "severities": SEVERITIES, "default_severity": "sev2",
                                       "services": services.config.service_names, "command": services.command,
                                       "commander": "commander" in services.config.incidents.roles},
                 modal=True)


def _services_of(fields: dict[str, str]) -> list[str]:
    return [n for n in (fields.get("services") or "").split(",") if n]


def validate_declare(services: Services, fields: dict[str, str]) -> None:
    title = " ".join((fields.get("title") or "").split())
    if not title:
        raise FormError("title", "give the incident a title: what is broken, for whom")
    if len(title) > MAX_TITLE:
        raise FormError("title", f"keep the title under {MAX_TITLE} characters (it is {len(title)})")
    if fields.get("severity", "") not in SEVERITIES:
        raise FormError("severity", f"pick a severity: {', '.join(SEVERITIES)}")
    unknown = [n for n in _services_of(fields) if n not in services.config.service_names]
    if unknown:
        raise FormError("services", f"not a service drbot knows: {', '.join(unknown)}")
    commander = fields.get("commander") or ""
    if commander and not USER_ID.fullmatch(commander):
        raise FormError("commander", "pick a person from the list")


def submit_declare(services: Services, actor: Actor, _: int, fields: dict[str, str]) -> Reply:
    title = " ".join(fields["title"].split())
    names = list(dict.fromkeys(_services_of(fields)))
    inc = declare(services, actor, title, fields["severity"], names, fields.get("commander") or None)
    return Reply("incident_opened_ack", {"inc": inc, "services": names})


# -- the message shortcut: add to the incident's timeline ---------------------------------

def message_value(ts: str, author: str, text: str, link: str) -> str:
    """What the transport hands ``add_to_timeline``: the message, as JSON."""
    return json.dumps({"ts": ts, "author": author, "text": text, "link": link})


def add_to_timeline(services: Services, actor: Actor, value: str) -> Reply:
    """The message (``message_value``) joins the timeline of the incident of ``actor.channel``."""
    try:
        message = json.loads(value)
    except ValueError:
        raise UsageError("the shortcut carried no message") from None
    text = (message.get("text") or "").strip()
    if not text:
        return Reply("shortcut_not_here", {"why": "empty", "command": services.command})
    try:
        inc = add_message(services, actor, actor.channel, message.get("author") or "", text,
                          message.get("ts") or "", message.get("link") or "")
    except NoIncident:
        return Reply("shortcut_not_here", {"why": "no_incident", "command": services.command})
    return Reply("incident_noted", {"inc": inc})


# -- the pinned summary's Change severity and Assign role ---------------------------------

def _incident_id(value: str, what: str) -> int:
    number = parse_id(value)
    if number is None:
        raise UsageError(f"the {what} button carries no incident number")
    return number


def severity_form(services: Services, actor: Actor, value: str) -> Reply:
    return Reply("modal_inc_severity", {"value": _incident_id(value, "Change severity"), "severities": SEVERITIES},
                 modal=True)


def role_form(services: Services, actor: Actor, value: str) -> Reply:
    return Reply("modal_inc_role", {"value": _incident_id(value, "Assign role"),
                                    "roles": services.config.incidents.roles}, modal=True)


def validate_severity(services: Services, fields: dict[str, str]) -> None:
    if fields.get("severity", "") not in SEVERITIES:
        raise FormError("severity", f"pick a severity: {', '.join(SEVERITIES)}")
    if not (fields.get("reason") or "").strip():
        raise FormError("reason", "say why the severity changes (it goes on the timeline)")


def validate_role(services: Services, fields: dict[str, str]) -> None:
    if fields.get("role", "") not in services.config.incidents.roles:
        raise FormError("role", f"pick a role: {', '.join(services.config.incidents.roles)}")
    if not USER_ID.fullmatch(fields.get("user") or ""):
        raise FormError("user", "pick the person who takes the role")


def submit_severity(services: Services, actor: Actor, incident_id: int, fields: dict[str, str]) -> Reply:
    reason = fields["reason"].strip()
    try:
        inc, previous = set_severity_of(services, actor, incident_id, fields["severity"], reason)
    except NoIncident:
        return Reply("refused", {"code": "incident_not_open", "p": {"id": incident_id}})
    return Reply("incident_severity_set", {"inc": inc, "previous": previous, "reason": reason})


def submit_role(services: Services, actor: Actor, incident_id: int, fields: dict[str, str]) -> Reply:
    role, user = fields["role"], fields["user"]
    try:
        inc, previous = set_role_of(services, actor, incident_id, role, user)
    except NoIncident:
        return Reply("refused", {"code": "incident_resolved", "p": {"id": incident_id}})
    return Reply("incident_role_set", {"inc": inc, "role": role, "user": user, "previous": previous})
