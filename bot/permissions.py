"""Who may do what: the roles of ``permissions:`` in the config, checked by the core before
anything is stored or queued, and by the router for every button and form. Reading is
open to all; a role nobody configured is held by the approvers of the approval policy,
never by anyone. A refusal names who may."""
from __future__ import annotations

from bot.actor import Actor
from bot.changes import Refused
from bot.config.permissions import EVERYONE
from bot.directory import DirectoryError
from bot.services import Services

ANYONE = "anyone"
"""Declared by reading commands and buttons: no check."""
APPROVAL_POLICY = "approval_policy"
"""Declared by change requests and their buttons: the approval policy of the service decides
(``approvals.requesters``, ``approvals.approvers``, the requester), in bot/changes.py."""
ROLES = ("incident_open", "incident_update", "statuspage_publish", "outbox_retry", "drill_calendar")
"""The roles of ``permissions:``, checked by ``require``."""


def holders(services: Services, role: str) -> tuple[tuple[str, ...], bool]:
    """(who holds ``role``, whether that is the default: the approvers)."""
    if role not in ROLES:
        raise KeyError(role)
    listed = getattr(services.config.permissions, role)
    if listed is None:
        return tuple(services.config.approvals.approvers), True
    return tuple(listed), False


def may(services: Services, actor: Actor, role: str) -> bool:
    """Does ``actor`` hold ``role``, directly, through a user group, or as everyone? Raises
    Refused(directory_error) when a user group cannot be read: never allowed on a doubt."""
    who, _ = holders(services, role)
    if EVERYONE in who:
        return True
    try:
        return services.directory.includes(actor.id, who)
    except DirectoryError as e:
        raise Refused("directory_error", error=str(e)) from e


def require(services: Services, actor: Actor, role: str) -> None:
    """Raise Refused("not_permitted", role=..., who=[...]) unless ``actor`` holds ``role``."""
    if not may(services, actor, role):
        who, default = holders(services, role)
        raise Refused("not_permitted", role=role, who=list(who), default=default)


def check(services: Services, actor: Actor, declared: str | None) -> None:
    """What the router does with a declared role: ``require`` for a role of ``permissions:``;
    nothing for reading (ANYONE) or for what the approval policy decides in the core."""
    if declared in ROLES:
        require(services, actor, declared)
