"""What every command shares: the invocation it receives and the errors it raises."""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from bot.actor import Actor
from bot.services import Services


@dataclass(frozen=True)
class Invocation:
    services: Services
    actor: Actor
    args: list[str]
    text: str
    """The whole text after the command name, as typed."""


class UsageError(Exception):
    """Bad input: answered with an ephemeral usage message that says what was wrong."""

    def __init__(self, message: str, topic: str | None = None):
        super().__init__(message)
        self.message = message
        self.topic = topic


def pick_service(inv: Invocation, name: str, topic: str) -> str:
    """The service called ``name``, or a UsageError naming the close match and the choices."""
    names = inv.services.config.service_names
    if name in names:
        return name
    hint = difflib.get_close_matches(name, names, n=1)
    raise UsageError(f"no service named '{name}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                     + f". Services: {', '.join(names)}", topic)
