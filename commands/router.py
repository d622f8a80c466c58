"""Turns ``/dr SUBCOMMAND ARGS...`` into a call of the subcommand's module. Nothing is
ignored silently: an unknown subcommand or a bad argument gets a usage reply saying why."""
from __future__ import annotations

import logging
import shlex
import uuid
from types import ModuleType

from bot.actor import Actor
from bot.render import Reply
from bot.services import Services
from commands import cancel, drill, drills, failback, failover, incident, outbox, plan, requests, status, timeline
from commands import help as help_cmd
from commands.base import Invocation, UsageError

log = logging.getLogger(__name__)

_MODULES: tuple[ModuleType, ...] = (status, failover, failback, drill, drills, plan, requests, cancel, incident,
                                      timeline, outbox, help_cmd)


def names() -> list[str]:
    return [m.NAME for m in _MODULES]


def split(text: str) -> list[str]:
    """Words, honouring quotes; an unbalanced quote falls back to plain splitting."""
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def dispatch(services: Services, actor: Actor, text: str) -> Reply:
    words = split(text.strip())
    name, args = (words[0].lower(), words[1:]) if words else ("help", [])
    rest = text.strip()[len(words[0]):].strip() if words else ""
    inv = Invocation(services=services, actor=actor, args=args, text=rest)
    module = next((m for m in _MODULES if m.NAME == name), None)
    if module is None:
        return help_cmd.usage(inv, error=f"unknown subcommand '{name}'")
    try:
        return module.run(inv)
    except UsageError as e:
        return help_cmd.usage(inv, error=e.message, topic=e.topic)
    except Exception as e:  # never leave a person without an answer
        ref = uuid.uuid4().hex[:8]
        log.exception("command %r by %s failed [%s]", text, actor.id, ref)
        return Reply("error", {"message": f"{type(e).__name__}: {e}", "ref": ref})
