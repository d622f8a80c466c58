"""What every command shares: the invocation it receives, the errors it raises, and the
shape of the declarations in ``commands.table``."""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping

from bot.actor import Actor
from bot.permissions import ANYONE
from bot.render import Reply
from bot.services import Services


@dataclass(frozen=True)
class Invocation:
    services: Services
    actor: Actor
    args: list[str]
    text: str
    """The whole text after the command name, as typed."""


class UsageError(Exception):
    """Bad input: answered with an ephemeral usage message that says what was wrong.
    ``message`` None: just the usage (``/dr help``)."""

    def __init__(self, message: str | None, topic: str | None = None):
        super().__init__(message or "")
        self.message = message
        self.topic = topic


class FormError(Exception):
    """A form value that is not acceptable: shown next to the field (Slack) or as a line."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Subcommand:
    """``/dr NAME ...``: declared once; the router, ``/dr help`` and the usage template read it."""

    name: str
    usage: str
    """The synopsis after the command, e.g. ``status [SERVICE] [public]``."""
    help: str
    run: Callable[[Invocation], Reply]
    roles: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    """Who may, per first word (``open`` of ``incident open``); ``""``: any other use. A role of
    ``bot.permissions.ROLES`` is checked by the core function that makes the change (other
    transports and the scheduler call it too); ANYONE: reading; APPROVAL_POLICY: the
    approval policy decides."""


@dataclass(frozen=True)
class Button:
    """A button: Slack matches its ``action_id``, the shell its ``verb`` (``click VERB ID``)."""

    action_id: str
    verb: str
    run: Callable[[Services, Actor, str], Reply | None]
    """(services, who clicked, the button's value) -> what only the clicker sees, or None."""
    role: str = ANYONE
    """Checked by the router before ``run`` (a role of ``bot.permissions.ROLES``), or ANYONE,
    or APPROVAL_POLICY (decided in the core)."""


@dataclass(frozen=True)
class Form:
    """A modal's submission, by its ``callback_id``."""

    callback_id: str
    validate: Callable[[Services, dict[str, str]], None]
    """Cheap checks, fast enough for Slack's 3-second ack; raises FormError."""
    submit: Callable[[Services, Actor, int, dict[str, str]], Reply | None]
    role: str = ANYONE
    """Checked by the router before ``submit``, like a button's."""


def pick_service(inv: Invocation, name: str, topic: str) -> str:
    """The service called ``name``, or a UsageError naming the close match and the choices."""
    names = inv.services.config.service_names
    if name in names:
        return name
    hint = difflib.get_close_matches(name, names, n=1)
    raise UsageError(f"no service named '{name}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                     + f". Services: {', '.join(names)}", topic)


_ID = re.compile(r"[0-9]{1,10}")
MAX_ID = 2**31 - 1
"""Row ids are 32-bit integers in the database."""


def parse_id(value: str) -> int | None:
    """A row id written in ASCII digits (``str.isdigit`` also accepts '²' and '١'), or None."""
    if not _ID.fullmatch(value) or int(value) > MAX_ID:
        return None
    return int(value)


def request_id(action: str, value: str) -> int:
    """The request number a button carries; UsageError when it carries none."""
    number = parse_id(value)
    if number is None:
        raise UsageError(f"the {action} button carries no request number")
    return number
