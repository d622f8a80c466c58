"""The router of Slack's own surfaces (the table's SHORTCUTS, the App Home, and the modals
whose permission is shown next to a field): the same checks as ``commands.router`` for
buttons, so a shortcut is refused exactly like the command it stands for."""
from __future__ import annotations

import logging
import re

from bot.actor import Actor
from bot.changes import Refused
from bot.home_view import home_context
from bot.oplog import op
from bot.permissions import check as check_permission
from bot.render import Reply
from bot.services import Services
from commands.base import FormError
from commands.router import guarded, validate
from commands.table import FORMS, SHORTCUTS

log = logging.getLogger(__name__)

_BY_CALLBACK = {s.action_id: s for s in SHORTCUTS}
_FORMS = {f.callback_id: f for f in FORMS}
PERMISSION_FIELD = {"inc_declare": "title"}
"""Modals whose declared role is checked when Slack asks to close them: the refusal is shown
next to this field instead of arriving as a message later."""


def shortcut_pattern() -> re.Pattern:
    return re.compile("^(" + "|".join(re.escape(s.action_id) for s in SHORTCUTS) + ")$")


def shortcut(services: Services, actor: Actor, callback_id: str, value: str = "") -> Reply | None:
    """A shortcut: a modal to open (``Reply.modal``) or what only the person sees."""
    reply = _shortcut(services, actor, callback_id, value)
    outcome, reason = services.metrics.handled("shortcut", callback_id if callback_id in _BY_CALLBACK else "unknown",
                                               reply)
    if reason:
        op("shortcut.refused", action=callback_id, user=actor.id, outcome=outcome, reason=reason)
    return reply


def _shortcut(services: Services, actor: Actor, callback_id: str, value: str) -> Reply | None:
    found = _BY_CALLBACK.get(callback_id)
    if found is None:
        return Reply("refused", {"code": "unknown_action", "p": {"action": callback_id}})
    return guarded(services, actor, found.role, lambda: found.run(services, actor, value), f"shortcut {callback_id}")


def check_form(services: Services, actor: Actor, callback_id: str, fields: dict[str, str]) -> None:
    """What Slack's 3-second answer to a submission checks: the declared role (refused next
    to ``PERMISSION_FIELD``), then the fields. Raises FormError."""
    form = _FORMS.get(callback_id)
    if form is not None and callback_id in PERMISSION_FIELD:
        try:
            check_permission(services, actor, form.role)
        except Refused as r:
            raise FormError(PERMISSION_FIELD[callback_id], services.renderer.text(r.reply()).strip()) from None
    validate(services, callback_id, fields)


def home(services: Services, actor: Actor) -> Reply:
    """The App Home tab of ``actor``."""
    return Reply("home", home_context(services, actor))
