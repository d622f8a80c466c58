"""Turns ``/dr SUBCOMMAND ARGS...``, a click or a form into a call of what
``commands.table`` declares. Nothing is ignored silently: an unknown subcommand or a bad
argument gets a usage reply saying why; a refusal says who may."""
from __future__ import annotations

import logging
import re
import shlex
import uuid
from typing import Callable

from bot.actor import Actor
from bot.changes import Refused
from bot.oplog import op
from bot.permissions import check as check_permission
from bot.render import Reply
from bot.services import Services
from commands.base import FormError, Invocation, UsageError, parse_id
from commands.table import BUTTONS, FORMS, SUBCOMMANDS

log = logging.getLogger(__name__)

_BY_NAME = {c.name: c for c in SUBCOMMANDS}
_BY_ACTION = {b.action_id: b for b in BUTTONS}
_BY_VERB = {b.verb: b for b in BUTTONS}
_BY_FORM = {f.callback_id: f for f in FORMS}


def names() -> list[str]:
    return [c.name for c in SUBCOMMANDS]


def action_pattern() -> re.Pattern:
    """Every button's action_id (for Slack's action matching)."""
    return re.compile("^(" + "|".join(re.escape(b.action_id) for b in BUTTONS) + ")$")


def form_pattern() -> re.Pattern:
    return re.compile("^(" + "|".join(re.escape(f.callback_id) for f in FORMS) + ")$")


def action_for_verb(verb: str) -> str:
    """The shell's ``click VERB ID``: the action_id of the button with that verb."""
    return _BY_VERB[verb].action_id if verb in _BY_VERB else verb


def usage(services: Services, error: str | None = None, topic: str | None = None) -> Reply:
    return Reply("usage", {"command": services.command, "error": error,
                           "subcommands": [_BY_NAME[topic]] if topic in _BY_NAME else list(SUBCOMMANDS)})


def split(text: str) -> list[str]:
    """Words, honouring quotes; an unbalanced quote falls back to plain splitting."""
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _failed(what: str, actor: Actor, e: Exception) -> Reply:
    """An internal error: the person sees a reference and a generic sentence, never the
    exception (it can hold SQL, values or a stack); the log has it with the reference."""
    ref = uuid.uuid4().hex[:8]
    log.error("%s by %s failed [%s]: %s", what, actor.id, ref, type(e).__name__, exc_info=e)
    return Reply("internal_error", {"ref": ref})


def dispatch(services: Services, actor: Actor, text: str) -> Reply:
    reply = _dispatch(services, actor, text)
    first = text.strip().split(maxsplit=1)
    kind = first[0].lower() if first and first[0].lower() in _BY_NAME else ("help" if not first else "unknown")
    outcome, reason = services.metrics.handled("command", kind, reply)
    if reason:
        op("command.refused", command=kind, user=actor.id, outcome=outcome, reason=reason)
    return reply


def _dispatch(services: Services, actor: Actor, text: str) -> Reply:
    words = split(text.strip())
    name, args = (words[0].lower(), words[1:]) if words else ("help", [])
    rest = text.strip()[len(words[0]):].strip() if words else ""
    inv = Invocation(services=services, actor=actor, args=args, text=rest)
    sub = _BY_NAME.get(name)
    if sub is None:
        return usage(services, error=f"unknown subcommand '{name}'")
    try:
        return sub.run(inv)
    except UsageError as e:
        return usage(services, error=e.message, topic=e.topic)
    except Refused as r:
        return r.reply()
    except Exception as e:  # never leave a person without an answer
        return _failed(f"command {name!r} ({len(text)} characters)", actor, e)


def click(services: Services, actor: Actor, action_id: str, value: str) -> Reply | None:
    """Handle one click; returns what only the clicker should see (None: nothing to say,
    the message itself shows the new state)."""
    reply = _click(services, actor, action_id, value)
    outcome, reason = services.metrics.handled("click", action_id if action_id in _BY_ACTION else "unknown", reply)
    if reason and action_id not in ("cr_approve", "cr_deny", "cr_cancel"):  # bot.changes.decide logs those
        op("click.refused", action=action_id, value=value[:80], user=actor.id, outcome=outcome, reason=reason)
    return reply


def _click(services: Services, actor: Actor, action_id: str, value: str) -> Reply | None:
    button = _BY_ACTION.get(action_id)
    if button is None:
        return Reply("refused", {"code": "unknown_action", "p": {"action": action_id}})
    return guarded(services, actor, button.role, lambda: button.run(services, actor, value),
                   f"click {action_id}={value!r}")


def guarded(services: Services, actor: Actor, role: str, run: Callable[[], Reply | None], what: str) -> Reply | None:
    """``run()`` once ``actor`` holds ``role``: a refusal, a usage error or an internal error
    (a reference, never the exception) is the answer instead of an exception."""
    try:
        check_permission(services, actor, role)
        return run()
    except UsageError as e:
        return usage(services, error=e.message, topic=e.topic)
    except Refused as r:
        return r.reply()
    except Exception as e:
        return _failed(what, actor, e)


def validate(services: Services, callback_id: str, fields: dict[str, str]) -> None:
    """Raises FormError naming the field to correct."""
    form = _BY_FORM.get(callback_id)
    if form is not None:
        form.validate(services, fields)


def submit(services: Services, actor: Actor, callback_id: str, value: str, fields: dict[str, str]) -> Reply | None:
    """A submitted modal: what only the submitter should see, or None. Raises FormError."""
    form = _BY_FORM.get(callback_id)
    item_id = parse_id(value)
    if form is None or item_id is None:
        return Reply("refused", {"code": "unknown_action", "p": {"action": callback_id}})
    try:
        check_permission(services, actor, form.role)  # a forged submission needs no button
    except Refused as r:
        return r.reply()
    form.validate(services, fields)
    try:
        return form.submit(services, actor, item_id, fields)
    except Refused as r:
        return r.reply()
    except FormError:
        raise
    except Exception as e:
        return _failed(f"form {callback_id}", actor, e)
